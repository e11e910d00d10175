//! The I/O shell around a `ShardCore`: one thread, one UDP socket, a mio poll for
//! readiness, a command channel with a waker, and the timer deadline.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::error::Result;
use crate::ids::{PeerId, RoomId, TrackId};
use crate::notify::EventSink;
use crate::peer::SlotCounts;
use crate::shard::ShardCore;
use crate::stats::DropReason;
use crate::udp::{Outbox, RecvBatch};

pub(crate) const SOCKET: Token = Token(0);
pub(crate) const WAKER: Token = Token(1);

/// Batches read per wake-up before timers and commands get a turn.
const MAX_BATCHES_PER_TURN: usize = 64;
/// Upper bound on a poll wait, so a lost wake-up costs at most this long.
const MAX_WAIT: Duration = Duration::from_millis(100);

pub(crate) type Reply<T> = Sender<Result<T>>;

pub(crate) enum Command {
    CreatePeer {
        id: PeerId,
        room: RoomId,
        identity: String,
        offer: String,
        slots: SlotCounts,
        reply: Reply<String>,
    },
    ApplyOffer {
        id: PeerId,
        sdp: String,
        reply: Reply<String>,
    },
    ApplyAnswer {
        id: PeerId,
        sdp: String,
        reply: Reply<()>,
    },
    SetTrackMuted {
        id: PeerId,
        track: TrackId,
        muted: bool,
        reply: Reply<()>,
    },
    SetLayout {
        id: PeerId,
        tracks: Vec<TrackId>,
        automatic: bool,
        reply: Reply<()>,
    },
    ClosePeer {
        id: PeerId,
        reply: Reply<()>,
    },
    Shutdown,
}

pub(crate) struct Runner {
    pub core: ShardCore,
    pub socket: UdpSocket,
    pub poll: Poll,
    pub commands: Receiver<Command>,
    pub sink: EventSink,
    /// Datagrams on their way out, waiting there while the socket's send buffer is full.
    pub outbox: Outbox,
}

pub(crate) fn new_poll() -> std::io::Result<(Poll, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    Ok((poll, waker))
}

impl Runner {
    pub fn run(mut self) {
        let fd = self.socket.as_raw_fd();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), SOCKET, Interest::READABLE)
        {
            tracing::error!("shard cannot watch its socket: {e}");
            return;
        }
        let mut events = Events::with_capacity(16);
        let mut batch = RecvBatch::default();
        let mut more_to_read = true;
        // Whether the socket is watched for writability too (only while sends wait).
        let mut watching_writes = false;
        loop {
            let now = Instant::now();
            let wait = if more_to_read {
                Duration::ZERO
            } else {
                self.core
                    .next_deadline()
                    .map_or(MAX_WAIT, |d| d.saturating_duration_since(now).min(MAX_WAIT))
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("shard poll failed: {e}");
                    return;
                }
            }
            for ev in events.iter() {
                if ev.token() == SOCKET {
                    if ev.is_readable() || ev.is_error() {
                        more_to_read = true;
                    }
                    if ev.is_writable() || ev.is_error() {
                        self.outbox.writable();
                    }
                }
            }
            if events.is_empty() && !wait.is_zero() && self.outbox.is_blocked() {
                // A missed edge costs at most one wait: try again after it.
                self.outbox.writable();
            }
            if !self.handle_commands() {
                self.core.close_all(Instant::now());
                self.flush();
                return;
            }
            if more_to_read {
                more_to_read = self.read_socket(&mut batch);
            }
            self.core.handle_timeout(Instant::now());
            self.flush();
            if self.outbox.is_blocked() != watching_writes {
                watching_writes = self.outbox.is_blocked();
                let interest = if watching_writes {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if let Err(e) =
                    self.poll
                        .registry()
                        .reregister(&mut SourceFd(&fd), SOCKET, interest)
                {
                    tracing::error!("shard cannot watch its socket: {e}");
                    return;
                }
            }
        }
    }

    /// Returns false on shutdown.
    fn handle_commands(&mut self) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            let now = Instant::now();
            let c = &mut self.core;
            // A caller that gave up waiting has dropped its receiver: nothing to tell it.
            match cmd {
                Command::CreatePeer {
                    id,
                    room,
                    identity,
                    offer,
                    slots,
                    reply,
                } => {
                    let _ = reply.send(c.create_peer(id, room, identity, &offer, slots, now));
                }
                Command::ApplyOffer { id, sdp, reply } => {
                    let _ = reply.send(c.apply_offer(id, &sdp, now));
                }
                Command::ApplyAnswer { id, sdp, reply } => {
                    let _ = reply.send(c.apply_answer(id, &sdp, now));
                }
                Command::SetTrackMuted {
                    id,
                    track,
                    muted,
                    reply,
                } => {
                    let _ = reply.send(c.set_track_muted(id, track, muted, now));
                }
                Command::SetLayout {
                    id,
                    tracks,
                    automatic,
                    reply,
                } => {
                    let _ = reply.send(c.set_layout(id, tracks, automatic, now));
                }
                Command::ClosePeer { id, reply } => {
                    let _ = reply.send(c.close_peer(id, now));
                }
                Command::Shutdown => return false,
            }
            self.flush();
            let stats = self.core.stats();
            stats.commands.fetch_add(1, Relaxed);
            stats
                .command_ns
                .fetch_add(now.elapsed().as_nanos() as u64, Relaxed);
        }
        true
    }

    /// Reads batches until the socket is empty or the turn is over; true if more may wait.
    fn read_socket(&mut self, batch: &mut RecvBatch) -> bool {
        for _ in 0..MAX_BATCHES_PER_TURN {
            match batch.recv(&self.socket) {
                Ok(0) => return false,
                Ok(_) => {
                    let kernel_drops = batch.take_kernel_drops();
                    if kernel_drops > 0 {
                        self.core
                            .stats()
                            .count_drops(DropReason::RxQueueOverflow, kernel_drops);
                    }
                    let now = Instant::now();
                    let stats = Arc::clone(self.core.stats());
                    let datagrams =
                        batch
                            .iter()
                            .filter_map(|(source, data, truncated)| match source {
                                _ if truncated => {
                                    stats.packets_in.fetch_add(1, Relaxed);
                                    stats.count_drop(DropReason::TooLarge);
                                    None
                                }
                                None => {
                                    stats.packets_in.fetch_add(1, Relaxed);
                                    stats.count_drop(DropReason::Malformed);
                                    None
                                }
                                Some(src) => Some((src, data)),
                            });
                    self.core.handle_datagrams(now, datagrams);
                    self.flush();
                }
                Err(e) => {
                    // ICMP errors surface here (e.g. port unreachable); the socket stays usable.
                    tracing::debug!("recvmmsg: {e}");
                    return true;
                }
            }
        }
        true
    }

    /// Sends what the core queued (or queues it behind datagrams still waiting for the socket)
    /// and hands its events to Python.
    fn flush(&mut self) {
        let stats = Arc::clone(self.core.stats());
        for t in self.core.take_transmits() {
            self.outbox.push(t, &stats);
        }
        self.outbox.flush(&self.socket, &stats);
        let mut events = self.core.take_events().peekable();
        if events.peek().is_some() {
            self.sink.send_batch(events, &stats);
        }
    }
}
