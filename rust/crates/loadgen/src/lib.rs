//! A load generator for visio-media: simulated participants that take the real path (ICE as
//! a full, controlling agent; DTLS client; SRTP), publish synthetic audio and video and count
//! what they receive. Signalling is the caller's job (the Python `visio-media load` command);
//! this crate carries the media of all participants in a few worker threads.
//!
//! Layering, bottom up: `media` (payloads, latency stamp) and `recv` (sequence tracking,
//! histogram), without I/O; `client` (one participant's `Rtc`); `worker` (a thread, its sockets
//! and timers); `LoadGen` here (threads, placement, stats).

pub mod client;
pub mod media;
pub mod recv;
pub mod relay;
mod worker;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use mio::{Poll, Waker};

pub use client::{ClientOptions, ClientStats, SourceTable};
use recv::Histogram;
pub use relay::{Relay, RelaySnapshot};
use worker::{Command, Worker};

/// How long a caller waits for a worker to answer.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("I/O: {0}")]
    Io(String),
    #[error("SDP: {0}")]
    Sdp(String),
    #[error("no such client: {0}")]
    NotFound(u64),
    #[error("{0}")]
    InvalidState(String),
    #[error("the load generator is not running")]
    NotRunning,
    #[error("a worker did not answer in time")]
    Timeout,
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl From<str0m::RtcError> for Error {
    fn from(e: str0m::RtcError) -> Self {
        Error::Sdp(e.to_string())
    }
}

struct WorkerHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// One client's counters, read at a point in time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSnapshot {
    pub id: u64,
    pub connected_at_ns: Option<u64>,
    pub first_rtp_at_ns: Option<u64>,
    pub sent_rtp: u64,
    pub sent_bytes: u64,
    pub recv_rtp: u64,
    pub recv_bytes: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub keyframes_sent: u64,
    pub plis_received: u64,
    pub datagrams_out: u64,
    pub datagram_bytes_out: u64,
    pub datagrams_in: u64,
    pub datagram_bytes_in: u64,
    pub send_failures: u64,
    pub ice_disconnected: u64,
    pub foreign_in: u64,
    /// Since the last `reset_sources`: (receive line = mid, or `ssrc-<n>` in raw mode; sender
    /// client id read from the payloads, 0 = untagged; packets). Empty in the totals.
    pub sources: Vec<(String, u64, u64)>,
}

/// Everything `stats` reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub now_ns: u64,
    pub clients: Vec<ClientSnapshot>,
    /// Sums over `clients` (including removed ones: their counters are kept).
    pub totals: ClientSnapshot,
    pub latency_p50_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
    pub latency_max_us: Option<u64>,
    pub latency_samples: u64,
}

pub struct LoadGen {
    threads: usize,
    bind_ip: IpAddr,
    workers: Vec<WorkerHandle>,
    next_id: AtomicU64,
    sending: Arc<AtomicBool>,
    registry: Mutex<HashMap<u64, Arc<ClientStats>>>,
    /// One per worker ever started; kept after `stop` so the counters stay readable.
    hists: Vec<Arc<Histogram>>,
}

fn snap(id: u64, s: &ClientStats) -> ClientSnapshot {
    let opt = |v: u64| (v != 0).then_some(v);
    ClientSnapshot {
        id,
        connected_at_ns: opt(s.connected_at_ns.load(Relaxed)),
        first_rtp_at_ns: opt(s.first_rtp_at_ns.load(Relaxed)),
        sent_rtp: s.sent_rtp.load(Relaxed),
        sent_bytes: s.sent_bytes.load(Relaxed),
        recv_rtp: s.recv_rtp.load(Relaxed),
        recv_bytes: s.recv_bytes.load(Relaxed),
        lost: s.lost.load(Relaxed),
        duplicates: s.duplicates.load(Relaxed),
        keyframes_sent: s.keyframes_sent.load(Relaxed),
        plis_received: s.plis_received.load(Relaxed),
        datagrams_out: s.datagrams_out.load(Relaxed),
        datagram_bytes_out: s.datagram_bytes_out.load(Relaxed),
        datagrams_in: s.datagrams_in.load(Relaxed),
        datagram_bytes_in: s.datagram_bytes_in.load(Relaxed),
        send_failures: s.send_failures.load(Relaxed),
        ice_disconnected: s.ice_disconnected.load(Relaxed),
        foreign_in: s.foreign_in.load(Relaxed),
        sources: s
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot(),
    }
}

impl LoadGen {
    pub fn new(threads: usize, bind_ip: IpAddr) -> Result<LoadGen, Error> {
        if threads == 0 || threads > 256 {
            return Err(Error::InvalidState(format!(
                "threads must be 1..=256, not {threads}"
            )));
        }
        Ok(LoadGen {
            threads,
            bind_ip,
            workers: Vec::new(),
            next_id: AtomicU64::new(1),
            sending: Arc::new(AtomicBool::new(true)),
            registry: Mutex::new(HashMap::new()),
            hists: Vec::new(),
        })
    }

    pub fn is_running(&self) -> bool {
        !self.workers.is_empty()
    }

    pub fn start(&mut self) -> Result<(), Error> {
        if self.is_running() {
            return Err(Error::InvalidState("already started".into()));
        }
        for i in 0..self.threads {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), worker::WAKER)?);
            let (tx, rx) = crossbeam_channel::unbounded();
            let hist = Arc::new(Histogram::default());
            let w = Worker::new(
                poll,
                rx,
                self.bind_ip,
                Arc::clone(&self.sending),
                Arc::clone(&hist),
            );
            let thread = std::thread::Builder::new()
                .name(format!("visio-load-{i}"))
                .spawn(move || w.run());
            match thread {
                Ok(t) => {
                    self.hists.push(hist);
                    self.workers.push(WorkerHandle {
                        commands: tx,
                        waker,
                        thread: Some(t),
                    });
                }
                Err(e) => {
                    self.stop();
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Stops and joins the worker threads; idempotent. Counters stay readable.
    pub fn stop(&mut self) {
        for w in &self.workers {
            let _ = w.commands.send(Command::Shutdown);
            let _ = w.waker.wake();
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        self.workers.clear();
    }

    /// Pauses (false) or resumes (true) sending media; connections stay up.
    pub fn set_sending(&self, on: bool) {
        self.sending.store(on, Relaxed);
    }

    fn worker_of(&self, id: u64) -> Result<&WorkerHandle, Error> {
        if self.workers.is_empty() {
            return Err(Error::NotRunning);
        }
        Ok(&self.workers[(id as usize) % self.workers.len()])
    }

    fn call<T>(&self, id: u64, make: impl FnOnce(worker::Reply<T>) -> Command) -> Result<T, Error> {
        let w = self.worker_of(id)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        w.commands.send(make(tx)).map_err(|_| Error::NotRunning)?;
        let _ = w.waker.wake();
        rx.recv_timeout(COMMAND_TIMEOUT)
            .map_err(|_| Error::Timeout)?
    }

    /// The next client id: 1..=u32::MAX, the range the payloads' sender tag holds.
    fn new_id(&self) -> Result<u64, Error> {
        let id = self.next_id.fetch_add(1, Relaxed);
        if id > u64::from(u32::MAX) {
            return Err(Error::InvalidState(
                "client ids are exhausted (the payload tag holds 32 bits)".into(),
            ));
        }
        Ok(id)
    }

    /// Creates a simulated participant; returns its id and first offer.
    pub fn add_client(&self, opts: ClientOptions) -> Result<(u64, String), Error> {
        let id = self.new_id()?;
        let stats = Arc::new(ClientStats::default());
        let offer = self.call(id, |reply| Command::Add {
            id,
            opts,
            stats: Arc::clone(&stats),
            reply,
        })?;
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, stats);
        Ok((id, offer))
    }

    /// Creates a raw-mode participant (the relay baseline): plain RTP, no handshake, sent to
    /// `relay`; returns its id and its socket's address (for the relay's routes).
    pub fn add_raw_client(
        &self,
        opts: ClientOptions,
        relay: SocketAddr,
    ) -> Result<(u64, SocketAddr), Error> {
        let id = self.new_id()?;
        let stats = Arc::new(ClientStats::default());
        let local = self.call(id, |reply| Command::AddRaw {
            id,
            opts,
            stats: Arc::clone(&stats),
            relay,
            reply,
        })?;
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, stats);
        Ok((id, local))
    }

    pub fn apply_answer(&self, id: u64, sdp: String) -> Result<(), Error> {
        self.call(id, |reply| Command::Answer { id, sdp, reply })
    }

    pub fn apply_offer(&self, id: u64, sdp: String) -> Result<String, Error> {
        self.call(id, |reply| Command::Offer { id, sdp, reply })
    }

    /// Closes the client's connection; its counters stay in the totals.
    pub fn remove_client(&self, id: u64) -> Result<(), Error> {
        let w = self.worker_of(id)?;
        w.commands
            .send(Command::Remove { id })
            .map_err(|_| Error::NotRunning)?;
        let _ = w.waker.wake();
        Ok(())
    }

    /// Starts a fresh window for every client's `sources` (who sent what on which line).
    pub fn reset_sources(&self) {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        for s in registry.values() {
            s.sources.lock().unwrap_or_else(|e| e.into_inner()).reset();
        }
    }

    pub fn stats(&self) -> Snapshot {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut clients: Vec<ClientSnapshot> =
            registry.iter().map(|(id, s)| snap(*id, s)).collect();
        drop(registry);
        clients.sort_by_key(|c| c.id);
        let mut t = ClientSnapshot::default();
        for c in &clients {
            t.sent_rtp += c.sent_rtp;
            t.sent_bytes += c.sent_bytes;
            t.recv_rtp += c.recv_rtp;
            t.recv_bytes += c.recv_bytes;
            t.lost += c.lost;
            t.duplicates += c.duplicates;
            t.keyframes_sent += c.keyframes_sent;
            t.plis_received += c.plis_received;
            t.datagrams_out += c.datagrams_out;
            t.datagram_bytes_out += c.datagram_bytes_out;
            t.datagrams_in += c.datagrams_in;
            t.datagram_bytes_in += c.datagram_bytes_in;
            t.send_failures += c.send_failures;
            t.ice_disconnected += c.ice_disconnected;
            t.foreign_in += c.foreign_in;
        }
        let mut counts = vec![0u64; recv::BUCKETS];
        let mut max = 0;
        for h in &self.hists {
            max = max.max(h.merge_into(&mut counts));
        }
        let samples = counts.iter().sum();
        Snapshot {
            now_ns: media::monotonic_ns(),
            clients,
            totals: t,
            latency_p50_us: recv::percentile(&counts, max, 0.50),
            latency_p99_us: recv::percentile(&counts, max, 0.99),
            latency_max_us: (samples > 0).then_some(max),
            latency_samples: samples,
        }
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        self.stop();
    }
}
