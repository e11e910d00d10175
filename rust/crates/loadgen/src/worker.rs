//! A worker thread ("visio-load-N"): its clients' sockets in one mio poll, a command channel
//! with a waker, a timer heap of client deadlines; datagrams read with `recvmmsg` and written
//! with `sendmmsg` (the engine's `udp` module).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use visio_engine::udp::{self, RecvBatch};

use crate::client::{Client, ClientOptions, ClientStats};
use crate::recv::Histogram;
use crate::Error;

pub(crate) const WAKER: Token = Token(0);
/// Upper bound on a poll wait, so a lost wake-up costs at most this long.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Batches read from one socket per turn before the others get theirs.
const MAX_BATCHES_PER_SOCKET: usize = 8;

pub(crate) type Reply<T> = Sender<Result<T, Error>>;

pub(crate) enum Command {
    Add {
        id: u64,
        opts: ClientOptions,
        stats: Arc<ClientStats>,
        reply: Reply<String>,
    },
    /// A raw-mode client (the relay baseline); replies with its socket's address.
    AddRaw {
        id: u64,
        opts: ClientOptions,
        stats: Arc<ClientStats>,
        relay: SocketAddr,
        reply: Reply<SocketAddr>,
    },
    Answer {
        id: u64,
        sdp: String,
        reply: Reply<()>,
    },
    Offer {
        id: u64,
        sdp: String,
        reply: Reply<String>,
    },
    Remove {
        id: u64,
    },
    Shutdown,
}

pub(crate) struct Worker {
    pub poll: Poll,
    pub commands: Receiver<Command>,
    pub bind_ip: IpAddr,
    pub sending: Arc<AtomicBool>,
    pub hist: Arc<Histogram>,
    clients: HashMap<u64, Client>,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Clients whose socket may hold more datagrams than their last turn read.
    more: Vec<u64>,
}

fn token(id: u64) -> Token {
    Token(id as usize)
}

impl Worker {
    pub fn new(
        poll: Poll,
        commands: Receiver<Command>,
        bind_ip: IpAddr,
        sending: Arc<AtomicBool>,
        hist: Arc<Histogram>,
    ) -> Worker {
        Worker {
            poll,
            commands,
            bind_ip,
            sending,
            hist,
            clients: HashMap::new(),
            heap: BinaryHeap::new(),
            more: Vec::new(),
        }
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut batch = RecvBatch::default();
        let mut ready: Vec<u64> = Vec::new();
        let mut due: Vec<(Instant, u64)> = Vec::new();
        loop {
            let now = Instant::now();
            let wait = if self.more.is_empty() {
                self.heap.peek().map_or(MAX_WAIT, |Reverse((at, _))| {
                    at.saturating_duration_since(now).min(MAX_WAIT)
                })
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("load worker poll failed: {e}");
                    return;
                }
            }
            ready.clear();
            ready.append(&mut self.more);
            for ev in events.iter() {
                if ev.token() != WAKER {
                    ready.push(ev.token().0 as u64);
                }
            }
            if !self.handle_commands() {
                return;
            }
            ready.sort_unstable();
            ready.dedup();
            for &id in &ready {
                self.read_client(id, &mut batch);
            }
            let now = Instant::now();
            due.clear();
            while let Some(Reverse((at, id))) = self.heap.peek().copied() {
                if at > now {
                    break;
                }
                self.heap.pop();
                due.push((at, id));
            }
            let sending = self.sending.load(Relaxed);
            for &(at, id) in &due {
                let Some(c) = self.clients.get_mut(&id) else {
                    continue;
                };
                if c.scheduled != Some(at) {
                    continue; // stale: the client was rescheduled since
                }
                c.scheduled = None;
                c.tick(now, sending, &self.hist);
                self.finish(id);
            }
        }
    }

    /// Returns false on shutdown.
    fn handle_commands(&mut self) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            let now = Instant::now();
            match cmd {
                Command::Add {
                    id,
                    opts,
                    stats,
                    reply,
                } => {
                    let _ = reply.send(self.add(id, opts, stats, now));
                }
                Command::AddRaw {
                    id,
                    opts,
                    stats,
                    relay,
                    reply,
                } => {
                    let _ = reply.send(self.add_raw(id, opts, stats, relay, now));
                }
                Command::Answer { id, sdp, reply } => {
                    let r = match self.clients.get_mut(&id) {
                        Some(c) => c.apply_answer(&sdp),
                        None => Err(Error::NotFound(id)),
                    };
                    self.after_input(id, now);
                    let _ = reply.send(r);
                }
                Command::Offer { id, sdp, reply } => {
                    let r = match self.clients.get_mut(&id) {
                        Some(c) => c.apply_offer(&sdp),
                        None => Err(Error::NotFound(id)),
                    };
                    self.after_input(id, now);
                    let _ = reply.send(r);
                }
                Command::Remove { id } => {
                    if let Some(c) = self.clients.remove(&id) {
                        let fd = c.socket.as_raw_fd();
                        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    }
                }
                Command::Shutdown => return false,
            }
        }
        true
    }

    fn add(
        &mut self,
        id: u64,
        opts: ClientOptions,
        stats: Arc<ClientStats>,
        now: Instant,
    ) -> Result<String, Error> {
        let socket = udp::bind(self.bind_ip, 0, 0, &[]).map_err(|e| Error::Io(e.to_string()))?;
        let fd = socket.as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), token(id), Interest::READABLE)?;
        let (client, offer) = Client::new(id, socket, opts, stats, now)?;
        self.clients.insert(id, client);
        self.after_input(id, now);
        Ok(offer)
    }

    fn add_raw(
        &mut self,
        id: u64,
        opts: ClientOptions,
        stats: Arc<ClientStats>,
        relay: SocketAddr,
        now: Instant,
    ) -> Result<SocketAddr, Error> {
        let socket = udp::bind(self.bind_ip, 0, 0, &[]).map_err(|e| Error::Io(e.to_string()))?;
        let fd = socket.as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), token(id), Interest::READABLE)?;
        let client = Client::new_raw(id, socket, opts, stats, relay, now)?;
        let local = client.local;
        self.clients.insert(id, client);
        self.finish(id);
        Ok(local)
    }

    fn after_input(&mut self, id: u64, now: Instant) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.drain(now, &self.hist);
        }
        self.finish(id);
    }

    fn read_client(&mut self, id: u64, batch: &mut RecvBatch) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let mut drained = false;
        for _ in 0..MAX_BATCHES_PER_SOCKET {
            match batch.recv(&c.socket) {
                Ok(0) => {
                    drained = true;
                    break;
                }
                Ok(_) => {
                    let now = Instant::now();
                    for (source, data, truncated) in batch.iter() {
                        if let (Some(src), false) = (source, truncated) {
                            c.receive(now, src, data, &self.hist);
                            // str0m holds one input's output at a time: drain after each.
                            c.drain(now, &self.hist);
                        }
                    }
                }
                Err(e) => {
                    // ICMP errors surface here; the socket stays usable.
                    tracing::debug!("load client {id}: recvmmsg: {e}");
                }
            }
        }
        if !drained {
            self.more.push(id);
        }
        self.finish(id);
    }

    /// Sends what the client queued and puts its next deadline on the heap.
    fn finish(&mut self, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if !c.out.is_empty() {
            let refs: Vec<_> = c.out.iter().map(|(a, d)| (*a, d.as_slice())).collect();
            let sent = udp::send_batch(&c.socket, &refs);
            let bytes: usize = refs[..sent.min(refs.len())]
                .iter()
                .map(|(_, d)| d.len())
                .sum();
            let s = &c.stats;
            s.datagrams_out.fetch_add(sent as u64, Relaxed);
            s.datagram_bytes_out.fetch_add(bytes as u64, Relaxed);
            s.send_failures
                .fetch_add((refs.len() - sent.min(refs.len())) as u64, Relaxed);
            c.out.clear();
        }
        let next = c.next_deadline();
        if c.scheduled.is_none_or(|s| next < s) {
            c.scheduled = Some(next);
            self.heap.push(Reverse((next, id)));
        }
    }
}
