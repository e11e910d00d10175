//! The raw ceiling: a minimal UDP relay (`visio-load-relay` thread). One socket; every datagram
//! from a registered source address goes out unchanged to that source's registered
//! destinations, read with `recvmmsg` and written with `sendmmsg` (the engine's `udp` module).
//! No crypto, no ICE/DTLS, no parsing, no routing logic beyond the fixed fan-out table. It is
//! what a forwarding server could at best do on this machine with the same traffic.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use visio_engine::udp::{self, RecvBatch};

use crate::Error;

const WAKER: Token = Token(0);
const SOCKET: Token = Token(1);
/// Upper bound on a poll wait (a lost wake-up costs at most this long).
const MAX_WAIT: Duration = Duration::from_millis(50);

/// The relay's counters, written by its thread.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams (and their bytes) read from a routed source.
    pub datagrams_in: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Datagrams (and bytes) the kernel took for sending.
    pub datagrams_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Datagrams from a source with no route (dropped; not in `datagrams_in`): e.g. a server
    /// still sending to a port a participant of an earlier run had.
    pub unrouted: AtomicU64,
    /// Datagrams the kernel refused (socket buffer full, unreachable).
    pub send_failures: AtomicU64,
    /// `recvmmsg` calls that returned datagrams, and `sendmmsg` batches written.
    pub recv_batches: AtomicU64,
}

/// The relay's counters at a point in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelaySnapshot {
    pub datagrams_in: u64,
    pub bytes_in: u64,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    pub unrouted: u64,
    pub send_failures: u64,
    pub recv_batches: u64,
}

enum Command {
    Route {
        from: SocketAddr,
        to: Vec<SocketAddr>,
        reply: Sender<()>,
    },
    Shutdown,
}

/// A running relay; stopped (and its thread joined) by `stop` or on drop.
pub struct Relay {
    addr: SocketAddr,
    commands: Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<RelayStats>,
    tid: Arc<AtomicI32>,
}

impl Relay {
    /// Binds a socket on `bind_ip` (any free port) and starts the relay thread.
    pub fn start(bind_ip: IpAddr) -> Result<Relay, Error> {
        let socket = udp::bind(bind_ip, 0, 0, &[]).map_err(|e| Error::Io(e.to_string()))?;
        let addr = socket.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let fd = socket.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), SOCKET, Interest::READABLE)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let stats = Arc::new(RelayStats::default());
        let tid = Arc::new(AtomicI32::new(0));
        let (st, t) = (Arc::clone(&stats), Arc::clone(&tid));
        let thread = std::thread::Builder::new()
            .name("visio-load-relay".into())
            .spawn(move || run(poll, socket, rx, st, t))?;
        Ok(Relay {
            addr,
            commands: tx,
            waker,
            thread: Some(thread),
            stats,
            tid,
        })
    }

    /// Where participants send.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relay thread's kernel thread id (for `/proc/self/task/<tid>/stat`), once it runs.
    pub fn thread_id(&self) -> Option<i32> {
        let t = self.tid.load(Relaxed);
        (t != 0).then_some(t)
    }

    /// From now on, datagrams from `from` go to each of `to` (replacing any earlier route).
    /// Returns once the relay thread has the route.
    pub fn set_route(&self, from: SocketAddr, to: Vec<SocketAddr>) -> Result<(), Error> {
        if self.thread.is_none() {
            return Err(Error::NotRunning);
        }
        let (reply, done) = crossbeam_channel::bounded(1);
        self.commands
            .send(Command::Route { from, to, reply })
            .map_err(|_| Error::NotRunning)?;
        let _ = self.waker.wake();
        done.recv_timeout(crate::COMMAND_TIMEOUT)
            .map_err(|_| Error::Timeout)
    }

    pub fn stats(&self) -> RelaySnapshot {
        let s = &self.stats;
        RelaySnapshot {
            datagrams_in: s.datagrams_in.load(Relaxed),
            bytes_in: s.bytes_in.load(Relaxed),
            datagrams_out: s.datagrams_out.load(Relaxed),
            bytes_out: s.bytes_out.load(Relaxed),
            unrouted: s.unrouted.load(Relaxed),
            send_failures: s.send_failures.load(Relaxed),
            recv_batches: s.recv_batches.load(Relaxed),
        }
    }

    /// Stops and joins the thread; idempotent. Counters stay readable.
    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.commands.send(Command::Shutdown);
            let _ = self.waker.wake();
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    mut poll: Poll,
    socket: UdpSocket,
    commands: Receiver<Command>,
    stats: Arc<RelayStats>,
    tid: Arc<AtomicI32>,
) {
    // SAFETY: gettid has no preconditions.
    tid.store(unsafe { libc::gettid() }, Relaxed);
    let mut routes: HashMap<SocketAddr, Vec<SocketAddr>> = HashMap::new();
    let mut events = Events::with_capacity(8);
    let mut batch = RecvBatch::default();
    loop {
        if let Err(e) = poll.poll(&mut events, Some(MAX_WAIT)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!("relay poll failed: {e}");
                return;
            }
        }
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                Command::Route { from, to, reply } => {
                    routes.insert(from, to);
                    let _ = reply.send(());
                }
                Command::Shutdown => return,
            }
        }
        // Edge-triggered readiness: read until the socket is empty (the poll timeout also
        // lands here, which costs one empty recvmmsg).
        loop {
            match batch.recv(&socket) {
                Ok(0) => break,
                Ok(_) => {
                    stats.recv_batches.fetch_add(1, Relaxed);
                    forward(&socket, &batch, &routes, &stats);
                }
                Err(e) => {
                    // ICMP errors surface here; the socket stays usable.
                    tracing::debug!("relay recvmmsg: {e}");
                }
            }
        }
    }
}

/// Sends every datagram of `batch` to its source's destinations, in one `sendmmsg` sequence.
fn forward(
    socket: &UdpSocket,
    batch: &RecvBatch,
    routes: &HashMap<SocketAddr, Vec<SocketAddr>>,
    stats: &RelayStats,
) {
    let mut out: Vec<(SocketAddr, &[u8])> = Vec::with_capacity(udp::BATCH * 4);
    let (mut n_in, mut bytes_in, mut unrouted) = (0, 0, 0);
    for (source, data, truncated) in batch.iter() {
        let dests = match (source, truncated) {
            (Some(src), false) => routes.get(&src),
            _ => None,
        };
        match dests {
            Some(dests) => {
                n_in += 1;
                bytes_in += data.len() as u64;
                out.extend(dests.iter().map(|d| (*d, data)));
            }
            None => unrouted += 1,
        }
    }
    stats.datagrams_in.fetch_add(n_in, Relaxed);
    stats.bytes_in.fetch_add(bytes_in, Relaxed);
    stats.unrouted.fetch_add(unrouted, Relaxed);
    if out.is_empty() {
        return;
    }
    let sent = udp::send_batch(socket, &out).min(out.len());
    let bytes: usize = out[..sent].iter().map(|(_, d)| d.len()).sum();
    stats.datagrams_out.fetch_add(sent as u64, Relaxed);
    stats.bytes_out.fetch_add(bytes as u64, Relaxed);
    stats
        .send_failures
        .fetch_add((out.len() - sent) as u64, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Instant;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn socket() -> UdpSocket {
        let s = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        s
    }

    fn drain(s: &UdpSocket) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = s.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    }

    #[test]
    fn each_routed_datagram_reaches_every_destination_once_and_is_counted() {
        let mut relay = Relay::start(LOCALHOST).expect("relay");
        let (publ, a, b, stranger) = (socket(), socket(), socket(), socket());
        let to = vec![a.local_addr().expect("addr"), b.local_addr().expect("addr")];
        relay
            .set_route(publ.local_addr().expect("addr"), to)
            .expect("route");
        for i in 0..100u8 {
            publ.send_to(&[i; 100], relay.local_addr()).expect("send");
        }
        stranger
            .send_to(&[7; 50], relay.local_addr())
            .expect("send");
        let deadline = Instant::now() + Duration::from_secs(10);
        while relay.stats().datagrams_in + relay.stats().unrouted < 101 && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (got_a, got_b) = (drain(&a), drain(&b));
        let want: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 100]).collect();
        assert_eq!((got_a.len(), got_b.len()), (100, 100));
        assert!(got_a == want && got_b == want, "contents or order differ");
        assert!(drain(&publ).is_empty() && drain(&stranger).is_empty());
        let s = relay.stats();
        assert_eq!(s.datagrams_in, 100);
        assert_eq!(s.bytes_in, 100 * 100);
        assert_eq!(s.datagrams_out, 200);
        assert_eq!(s.bytes_out, 200 * 100);
        assert_eq!(s.unrouted, 1);
        assert_eq!(s.send_failures, 0);
        assert!(s.recv_batches >= 1);
        assert!(relay.thread_id().is_some_and(|t| t > 0));
        relay.stop();
        assert!(relay.set_route(to_addr(), vec![]).is_err());
        assert_eq!(relay.stats(), s);
    }

    fn to_addr() -> SocketAddr {
        SocketAddr::new(LOCALHOST, 9)
    }
}
