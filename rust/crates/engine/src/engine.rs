//! The multi-shard controller: starts and stops shard threads, pins rooms to shards, routes
//! commands to the shard that owns a peer, and hands events back in batches.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use mio::Waker;

use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::event::EngineEvent;
use crate::ids::{PeerId, RoomId, TrackId};
use crate::notify::{self, EventSink, EventSource};
use crate::peer::SlotCounts;
use crate::runner::{self, Command, Runner};
use crate::shard::{ShardCore, ShardSettings};
use crate::stats::{PeerRegistry, PeerSnapshot, ShardSnapshot, ShardStats};
use crate::udp;

/// How long a caller waits for a shard to answer a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

struct ShardHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
    stats: Arc<ShardStats>,
}

#[derive(Default)]
struct Placement {
    peers: HashMap<PeerId, (usize, RoomId)>,
    /// Room → (shard, live peers).
    rooms: HashMap<RoomId, (usize, usize)>,
}

pub struct Engine {
    config: EngineConfig,
    shards: Vec<ShardHandle>,
    events: EventSource,
    sink: EventSink,
    registry: PeerRegistry,
    next_peer: AtomicU64,
    track_ids: Arc<AtomicU64>,
    placement: Mutex<Placement>,
}

/// Everything `stats_snapshot` reports.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub shards: Vec<ShardSnapshot>,
    pub peers: Vec<PeerSnapshot>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Result<Engine> {
        config.validate()?;
        let (sink, events) = notify::channel(config.event_queue_capacity)?;
        Ok(Engine {
            config,
            shards: Vec::new(),
            events,
            sink,
            registry: PeerRegistry::default(),
            next_peer: AtomicU64::new(1),
            track_ids: Arc::new(AtomicU64::new(0)),
            placement: Mutex::new(Placement::default()),
        })
    }

    pub fn is_running(&self) -> bool {
        !self.shards.is_empty()
    }

    /// Binds one socket per shard and starts the shard threads.
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            return Err(Error::InvalidState("engine already started".into()));
        }
        let mut taken = Vec::new();
        let mut started = Vec::new();
        for i in 0..self.config.shards {
            let bound = self.start_shard(i, &taken);
            match bound {
                Ok(h) => {
                    taken.push(h.addr.port());
                    started.push(h);
                }
                Err(e) => {
                    self.shards = started;
                    self.stop();
                    return Err(e);
                }
            }
        }
        self.shards = started;
        Ok(())
    }

    fn start_shard(&self, index: usize, taken: &[u16]) -> Result<ShardHandle> {
        let c = &self.config;
        let socket = udp::bind(c.bind_ip, c.port_min, c.port_max, taken)?;
        let bound = socket.local_addr()?;
        let announced = SocketAddr::new(c.announced_ip(), bound.port());
        let stats = Arc::new(ShardStats::default());
        let core = ShardCore::new(
            announced,
            ShardSettings {
                connect_timeout: c.connect_timeout,
                keyframe_request_interval: c.keyframe_request_interval,
                max_datagram: c.max_datagram,
            },
            Arc::clone(&self.track_ids),
            Arc::clone(&stats),
            self.registry.clone(),
        );
        let (poll, waker) = runner::new_poll()?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let runner = Runner {
            core,
            socket,
            poll,
            commands: rx,
            sink: self.sink.clone(),
            outbox: udp::Outbox::default(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("visio-shard-{index}"))
            .spawn(move || runner.run())?;
        Ok(ShardHandle {
            commands: tx,
            waker,
            thread: Some(thread),
            addr: announced,
            stats,
        })
    }

    /// Closes every peer, stops the shard threads and joins them; sockets close with them.
    pub fn stop(&mut self) {
        for s in &self.shards {
            let _ = s.commands.send(Command::Shutdown);
            let _ = s.waker.wake();
        }
        for s in &mut self.shards {
            if let Some(t) = s.thread.take() {
                if t.join().is_err() {
                    tracing::error!("a shard thread panicked");
                }
            }
        }
        self.shards.clear();
        let mut p = self.lock_placement();
        p.peers.clear();
        p.rooms.clear();
    }

    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.shards.iter().map(|s| s.addr).collect()
    }

    pub fn event_fd(&self) -> i32 {
        self.events.fd()
    }

    /// Events queued since the last call. Also forgets peers the shards have removed.
    pub fn drain_events(&self) -> Vec<EngineEvent> {
        let events = self.events.drain();
        let closed: Vec<PeerId> = events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::PeerClosed { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect();
        if !closed.is_empty() {
            let mut p = self.lock_placement();
            for id in closed {
                Self::unplace(&mut p, id);
            }
        }
        events
    }

    pub fn create_peer(
        &self,
        room: &str,
        identity: &str,
        offer: String,
        slots: SlotCounts,
    ) -> Result<(PeerId, String)> {
        if !self.is_running() {
            return Err(Error::NotRunning);
        }
        let room = RoomId::new(room);
        let id = PeerId(self.next_peer.fetch_add(1, Relaxed));
        let shard = {
            let mut p = self.lock_placement();
            let shard = match p.rooms.get_mut(&room) {
                Some((s, n)) => {
                    *n += 1;
                    *s
                }
                None => {
                    let s = self.least_loaded_shard();
                    p.rooms.insert(room.clone(), (s, 1));
                    s
                }
            };
            p.peers.insert(id, (shard, room.clone()));
            shard
        };
        let identity = identity.to_owned();
        let r = self.call(shard, |reply| Command::CreatePeer {
            id,
            room,
            identity,
            offer,
            slots,
            reply,
        });
        match r {
            Ok(answer) => Ok((id, answer)),
            Err(e) => {
                Self::unplace(&mut self.lock_placement(), id);
                Err(e)
            }
        }
    }

    pub fn apply_offer(&self, id: PeerId, sdp: String) -> Result<String> {
        let shard = self.shard_of(id)?;
        self.call(shard, |reply| Command::ApplyOffer { id, sdp, reply })
    }

    pub fn apply_answer(&self, id: PeerId, sdp: String) -> Result<()> {
        let shard = self.shard_of(id)?;
        self.call(shard, |reply| Command::ApplyAnswer { id, sdp, reply })
    }

    /// Marks `track`, published by `id`, muted or not (video slots pass muted video over).
    pub fn set_track_muted(&self, id: PeerId, track: TrackId, muted: bool) -> Result<()> {
        let shard = self.shard_of(id)?;
        self.call(shard, |reply| Command::SetTrackMuted {
            id,
            track,
            muted,
            reply,
        })
    }

    /// The video tracks `id` asks for, in priority order; `automatic`: fill spare video
    /// slots with everyone else's video too.
    pub fn set_layout(&self, id: PeerId, tracks: Vec<TrackId>, automatic: bool) -> Result<()> {
        let shard = self.shard_of(id)?;
        self.call(shard, |reply| Command::SetLayout {
            id,
            tracks,
            automatic,
            reply,
        })
    }

    pub fn close_peer(&self, id: PeerId) -> Result<()> {
        let shard = self.shard_of(id)?;
        let r = self.call(shard, |reply| Command::ClosePeer { id, reply });
        Self::unplace(&mut self.lock_placement(), id);
        r
    }

    /// Datagrams received from one peer so far (its sign of life), without a full snapshot.
    pub fn peer_packets_in(&self, id: PeerId) -> Option<u64> {
        self.registry
            .get(id)
            .map(|s| s.packets_in.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            shards: self.shards.iter().map(|s| s.stats.snapshot()).collect(),
            peers: self
                .registry
                .entries()
                .into_iter()
                .map(|(id, s)| s.snapshot(id))
                .collect(),
        }
    }

    fn least_loaded_shard(&self) -> usize {
        self.shards
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.stats.peers.load(Relaxed))
            .map_or(0, |(i, _)| i)
    }

    fn shard_of(&self, id: PeerId) -> Result<usize> {
        self.lock_placement()
            .peers
            .get(&id)
            .map(|(s, _)| *s)
            .ok_or(Error::UnknownPeer(id))
    }

    fn unplace(p: &mut Placement, id: PeerId) {
        if let Some((_, room)) = p.peers.remove(&id) {
            if let Some((_, n)) = p.rooms.get_mut(&room) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    p.rooms.remove(&room);
                }
            }
        }
    }

    fn call<T>(&self, shard: usize, make: impl FnOnce(runner::Reply<T>) -> Command) -> Result<T> {
        let s = self.shards.get(shard).ok_or(Error::NotRunning)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        s.commands.send(make(tx)).map_err(|_| Error::NotRunning)?;
        s.waker.wake()?;
        rx.recv_timeout(COMMAND_TIMEOUT)
            .map_err(|_| Error::InvalidState("shard did not answer in time".into()))?
    }

    fn lock_placement(&self) -> std::sync::MutexGuard<'_, Placement> {
        // Placement maps stay consistent even if a holder panicked: every update is one insert
        // or remove.
        self.placement.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}
