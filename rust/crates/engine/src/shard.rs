//! The state of one shard without any I/O: peers, their rooms, the forwarding between them.
//!
//! Time, datagrams and commands come in as arguments; datagrams to send and events for the
//! caller come out through `take_transmits` and `take_events`. The runner (real sockets) and
//! the tests (virtual time) drive the same code.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket};
use str0m::{Event, IceConnectionState, Input, Output};

use crate::addr_guard::{self, AddressGuard, Check, Creds, ProbeReply};
use crate::demux::{self, Kind};
use crate::dtls_probe;
use crate::error::{Error, Result};
use crate::event::{EngineEvent, MediaKind};
use crate::ids::{IdMap, PeerId, RoomId, TrackId};
use crate::peer::{Forwarded, Lines, Peer, SlotCounts, Source};
use crate::room::{Rooms, Sink, Track};
use crate::slots::stable_assign;
use crate::srtp_probe::{self, SrtcpReplay};
use crate::stats::{DropReason, PeerRegistry, ShardStats};
use crate::timers::Timers;

/// A datagram to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct ShardSettings {
    pub connect_timeout: Duration,
    pub keyframe_request_interval: Duration,
    pub max_datagram: usize,
}

impl Default for ShardSettings {
    fn default() -> Self {
        ShardSettings {
            connect_timeout: Duration::from_secs(30),
            keyframe_request_interval: Duration::from_millis(500),
            max_datagram: 1500,
        }
    }
}

/// Allocates track ids unique across shards.
pub type TrackIds = Arc<std::sync::atomic::AtomicU64>;

pub struct ShardCore {
    /// The socket address peers send to (the announced candidate).
    local: SocketAddr,
    settings: ShardSettings,
    peers: IdMap<PeerId, Peer>,
    by_ufrag: HashMap<String, PeerId>,
    /// Keyed by what the network sends us: keeps the DoS-resistant default hasher.
    by_addr: HashMap<SocketAddr, PeerId>,
    rooms: Rooms,
    timers: Timers,
    track_ids: TrackIds,
    /// str0m events waiting to be acted on, in order.
    work: VecDeque<(PeerId, Event)>,
    transmits: Vec<Transmit>,
    events: Vec<EngineEvent>,
    stats: Arc<ShardStats>,
    registry: PeerRegistry,
    due: Vec<(Instant, PeerId)>,
    next_speaker_tick: Instant,
    /// Reused per forwarded packet: the sinks of its track.
    fanout: Vec<Sink>,
    /// Rooms whose slot sources must be chosen again (tracks, speakers or receivers changed),
    /// and receivers whose layout changed.
    dirty_rooms: Vec<RoomId>,
    dirty_peers: Vec<PeerId>,
    /// Inside a receive batch: forwarded RTP is only queued at the subscribers, who are
    /// listed in `touched` and nudged once each when the batch ends.
    batching: bool,
    touched: Vec<PeerId>,
    /// Reused for a STUN check released by `addr_guard`.
    released: Vec<u8>,
    /// SRTCP replay windows of the peers that sent SRTCP.
    srtcp: IdMap<PeerId, SrtcpReplay>,
}

/// How often active speakers are re-evaluated (and slots refilled from them): a switch of the
/// loud speaker reaches every receiver's slots within one tick plus the level smoothing.
const SPEAKER_TICK: Duration = Duration::from_millis(100);

impl ShardCore {
    pub fn new(
        local: SocketAddr,
        settings: ShardSettings,
        track_ids: TrackIds,
        stats: Arc<ShardStats>,
        registry: PeerRegistry,
    ) -> Self {
        ShardCore {
            local,
            settings,
            peers: IdMap::default(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            rooms: Rooms::default(),
            timers: Timers::default(),
            track_ids,
            work: VecDeque::new(),
            transmits: Vec::new(),
            events: Vec::new(),
            stats,
            registry,
            due: Vec::new(),
            next_speaker_tick: Instant::now() + SPEAKER_TICK,
            fanout: Vec::new(),
            dirty_rooms: Vec::new(),
            dirty_peers: Vec::new(),
            batching: false,
            touched: Vec::new(),
            released: Vec::new(),
            srtcp: IdMap::default(),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> &Arc<ShardStats> {
        &self.stats
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn take_transmits(&mut self) -> std::vec::Drain<'_, Transmit> {
        self.transmits.drain(..)
    }

    pub fn take_events(&mut self) -> std::vec::Drain<'_, EngineEvent> {
        self.events.drain(..)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let speakers = (self.rooms.room_count() > 0).then_some(self.next_speaker_tick);
        match (self.timers.next_deadline(), speakers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---------------------------------------------------------------- commands

    pub fn create_peer(
        &mut self,
        id: PeerId,
        room: RoomId,
        identity: String,
        offer_sdp: &str,
        slots: SlotCounts,
        now: Instant,
    ) -> Result<String> {
        if self.peers.contains_key(&id) {
            return Err(Error::InvalidState(format!("{id} exists")));
        }
        let local = self.local;
        let built = catch_unwind(AssertUnwindSafe(|| {
            Peer::from_offer(id, room.clone(), identity, local, offer_sdp, slots, now)
        }));
        let (mut peer, answer) = match built {
            Ok(r) => r?,
            Err(_) => {
                self.stats.peer_panics.fetch_add(1, Relaxed);
                return Err(Error::PeerFailed(
                    "internal error while parsing the offer".into(),
                ));
            }
        };
        let local = peer.rtc.direct_api().local_ice_credentials();
        peer.guard = AddressGuard::new(
            Creds {
                ufrag: local.ufrag,
                pwd: local.pass,
            },
            addr_guard::remote_creds_from_sdp(offer_sdp),
        );
        self.by_ufrag.insert(peer.local_ufrag.clone(), id);
        self.registry.insert(id, Arc::clone(&peer.stats));
        self.peers.insert(id, peer);
        self.rooms.join(&room, id);
        self.timers
            .schedule(now + self.settings.connect_timeout, id);
        self.update_gauges();
        self.drain(id, now);
        self.run_work(now);
        self.renegotiate(id, now);
        self.dirty_peers.push(id);
        self.refill(now);
        Ok(answer)
    }

    /// A refused offer still renegotiates: under glare our own offer was already withdrawn.
    pub fn apply_offer(&mut self, id: PeerId, sdp: &str, now: Instant) -> Result<String> {
        let answer = self.with_peer(id, |p| {
            let answer = p.accept_offer(sdp)?;
            // An ICE restart changes both sides' credentials.
            let local = p.rtc.direct_api().local_ice_credentials();
            p.guard.set_creds(
                Creds {
                    ufrag: local.ufrag,
                    pwd: local.pass,
                },
                addr_guard::remote_creds_from_sdp(sdp),
            );
            Ok(answer)
        });
        self.drain(id, now);
        self.run_work(now);
        self.renegotiate(id, now);
        self.refill(now);
        answer
    }

    /// A refused answer withdraws our offer; its changes go out again in a fresh one.
    pub fn apply_answer(&mut self, id: PeerId, sdp: &str, now: Instant) -> Result<()> {
        let opened = self.with_peer(id, |p| p.accept_answer(sdp));
        self.drain(id, now);
        if opened.is_ok() {
            // The slots' video sources may wait for a keyframe that nobody asked for yet.
            self.request_awaited_keyframes(id, now);
        }
        self.run_work(now);
        self.renegotiate(id, now);
        self.refill(now);
        opened.map(|_| ())
    }

    /// Marks a track of `id` muted or not. A muted video track takes no video slot (it would
    /// fill it with nothing); the slot goes to the next wanted source.
    pub fn set_track_muted(
        &mut self,
        id: PeerId,
        track: TrackId,
        muted: bool,
        now: Instant,
    ) -> Result<()> {
        let t = self
            .rooms
            .track_mut(track)
            .filter(|t| t.publisher == id)
            .ok_or(Error::UnknownTrack(track))?;
        if t.muted != muted {
            t.muted = muted;
            let room = t.room.clone();
            self.dirty_rooms.push(room);
            self.refill(now);
        }
        Ok(())
    }

    /// Sets the video tracks a receiver asks for, in priority order; `automatic` fills spare
    /// slots with everyone else's video too (a client that sent no layout).
    pub fn set_layout(
        &mut self,
        id: PeerId,
        tracks: Vec<TrackId>,
        automatic: bool,
        now: Instant,
    ) -> Result<()> {
        let p = self.peers.get_mut(&id).ok_or(Error::UnknownPeer(id))?;
        p.layout = tracks;
        p.automatic = automatic;
        self.dirty_peers.push(id);
        self.refill(now);
        Ok(())
    }

    pub fn close_peer(&mut self, id: PeerId, now: Instant) -> Result<()> {
        if !self.peers.contains_key(&id) {
            return Err(Error::UnknownPeer(id));
        }
        self.remove_peer(id, "closed");
        self.refill(now);
        Ok(())
    }

    /// Closes every peer (shutdown).
    pub fn close_all(&mut self, _now: Instant) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.remove_peer(id, "shutdown");
        }
    }

    // ---------------------------------------------------------------- network and time

    /// One datagram on its own: a receive batch of one.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        self.batching = true;
        self.receive(now, source, data);
        self.end_batch(now);
    }

    /// A receive batch (one `recvmmsg`), in order, all at the instant `now`.
    ///
    /// Each datagram is handed to its peer's `Rtc` and drained before the next (str0m's
    /// one-slot RTP receive); the RTP it carries is queued at every subscriber. Each
    /// subscriber then gets one str0m timeout pass and one drain for the whole batch instead
    /// of one per packet, and sends its packets in the order they were queued.
    #[inline(never)]
    pub fn handle_datagrams<'a>(
        &mut self,
        now: Instant,
        batch: impl IntoIterator<Item = (SocketAddr, &'a [u8])>,
    ) {
        self.batching = true;
        for (source, data) in batch {
            self.receive(now, source, data);
        }
        self.end_batch(now);
    }

    /// Sends what the batch queued at its subscribers: one nudge and one drain each.
    fn end_batch(&mut self, now: Instant) {
        self.batching = false;
        let mut touched = std::mem::take(&mut self.touched);
        for id in touched.drain(..) {
            // An error here is the Rtc's; the drain reports it (and a gone peer is skipped).
            let _ = self.with_peer(id, |p| p.nudge(now));
            self.drain(id, now);
        }
        self.touched = touched;
        self.run_work(now);
        self.refill(now);
    }

    fn receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        self.stats.packets_in.fetch_add(1, Relaxed);
        self.stats.bytes_in.fetch_add(data.len() as u64, Relaxed);
        if data.len() > self.settings.max_datagram {
            self.stats.count_drop(DropReason::TooLarge);
            return;
        }
        let kind = demux::classify(data);
        if kind == Kind::Other {
            self.stats.count_drop(DropReason::Malformed);
            return;
        }
        let known = self.by_addr.get(&source).copied();
        let id = match (known, kind) {
            (Some(id), _) => id,
            (None, Kind::Stun) => {
                let Some(ufrag) = demux::stun_local_ufrag(data) else {
                    self.stats.count_drop(DropReason::Malformed);
                    return;
                };
                let Some(id) = self.by_ufrag.get(ufrag).copied() else {
                    self.stats.count_drop(DropReason::StunUnknownUfrag);
                    return;
                };
                id
            }
            (None, _) => {
                self.stats.count_drop(DropReason::UnknownSource);
                return;
            }
        };
        if kind == Kind::Stun && self.guard_stun(now, id, source, data, known.is_some()) {
            self.run_work(now);
            return;
        }
        self.deliver(now, id, source, data, known.is_some());
        self.run_work(now);
    }

    /// Hands a datagram to the peer's `Rtc`. `known`: the source already maps to this peer.
    ///
    /// SRTP and SRTCP that str0m does not authenticate (bad tag, replay, unknown stream, no
    /// keys yet) and SRTCP our replay window refuses count as `peer_rejected`, once each.
    fn deliver(&mut self, now: Instant, id: PeerId, source: SocketAddr, data: &[u8], known: bool) {
        let srtp = matches!(data.first(), Some(128..=191));
        let srtcp = match (srtp && srtp_probe::is_rtcp(data), self.peers.get(&id)) {
            (true, Some(p)) => srtp_probe::srtcp_index(data, p.stats.srtp_profile.load(Relaxed)),
            _ => None,
        };
        if let Some((ssrc, index)) = srtcp {
            if self
                .srtcp
                .get(&id)
                .is_some_and(|r| r.is_replay(ssrc, index))
            {
                self.stats.count_drop(DropReason::PeerRejected);
                return;
            }
        }
        let Ok(contents) = data.try_into() else {
            self.stats.count_drop(DropReason::Malformed);
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        let decrypted = srtp_probe::decrypted();
        let accepted = self.with_peer(id, |p| {
            if !p.rtc.accepts(&input) {
                return Ok(false);
            }
            p.stats.add_in(data.len());
            p.rtc.handle_input(input)?;
            Ok(true)
        });
        let authentic = srtp_probe::decrypted() != decrypted;
        if known && (!matches!(accepted, Ok(true)) || (srtp && !authentic)) {
            self.stats.count_drop(DropReason::PeerRejected);
        }
        if let (Some((ssrc, index)), true) = (srtcp, authentic) {
            self.srtcp.entry(id).or_default().record(ssrc, index);
        }
        let before = self.transmits.len();
        self.drain(id, now);
        if !known {
            // The peer answered this address: its STUN request was authentic, so datagrams
            // from it now belong to this peer.
            let answered = self.transmits[before..]
                .iter()
                .any(|t| t.destination == source);
            if !answered {
                // Unknown address and no answer: bad integrity, wrong role, or not accepted.
                self.stats.count_drop(DropReason::StunRejected);
            } else {
                self.stats.stun_responses.fetch_add(1, Relaxed);
                self.map_addr(id, source);
            }
        }
    }

    /// Datagrams from `source` belong to `id` from now on.
    fn map_addr(&mut self, id: PeerId, source: SocketAddr) {
        self.by_addr.entry(source).or_insert(id);
        if let Some(p) = self.peers.get_mut(&id) {
            if !p.addrs.contains(&source) {
                p.addrs.push(source);
            }
        }
    }

    /// STUN for a connected peer from an address that has not proven it receives: answered
    /// and held back from str0m until it answers a check of ours (see `addr_guard`). Returns
    /// whether the datagram was dealt with here.
    fn guard_stun(
        &mut self,
        now: Instant,
        id: PeerId,
        source: SocketAddr,
        data: &[u8],
        known: bool,
    ) -> bool {
        let Some(p) = self.peers.get_mut(&id) else {
            return false;
        };
        if !p.guard.is_active() {
            return false;
        }
        if p.guard.take_probe_reply(data, source) == ProbeReply::Verified {
            p.stats.add_in(data.len());
            let mut held = std::mem::take(&mut self.released);
            let released = p.guard.take_held(source, &mut held);
            self.map_addr(id, source);
            if released {
                self.deliver(now, id, source, &held, true);
            }
            self.released = held;
            return true;
        }
        if p.guard.is_verified(source) || demux::stun_local_ufrag(data).is_none() {
            return false;
        }
        match p.guard.check_request(data, source) {
            Check::Answer(reply) => {
                p.stats.add_in(data.len());
                self.stats.count_drop(DropReason::UnverifiedAddress);
                self.stats.stun_responses.fetch_add(1, Relaxed);
                self.send_stun(id, source, reply);
                self.map_addr(id, source);
                self.probe(id, source, now);
            }
            Check::Rejected => self.stats.count_drop(if known {
                DropReason::PeerRejected
            } else {
                DropReason::StunRejected
            }),
        }
        true
    }

    /// Sends our own signed check to `to` for peer `id`, if its rate allows.
    fn probe(&mut self, id: PeerId, to: SocketAddr, now: Instant) {
        let probe = self.peers.get_mut(&id).and_then(|p| p.guard.probe(to, now));
        if let Some(bytes) = probe {
            self.send_stun(id, to, bytes);
        }
    }

    fn send_stun(&mut self, id: PeerId, to: SocketAddr, contents: Vec<u8>) {
        if let Some(p) = self.peers.get(&id) {
            p.stats.add_out(contents.len());
        }
        self.stats.packets_out.fetch_add(1, Relaxed);
        self.stats
            .bytes_out
            .fetch_add(contents.len() as u64, Relaxed);
        self.transmits.push(Transmit {
            destination: to,
            contents,
        });
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        self.timers.pop_due(now, &mut due);
        for (at, id) in due.drain(..) {
            let Some(p) = self.peers.get(&id) else {
                continue;
            };
            if !p.connected && now >= p.created + self.settings.connect_timeout {
                self.fail_peer(id, "connect_timeout");
                continue;
            }
            if p.next_timeout != Some(at) {
                continue; // stale
            }
            // This entry is consumed: whatever deadline the drain below reports is armed anew,
            // even one equal to this.
            if let Some(p) = self.peers.get_mut(&id) {
                p.next_timeout = None;
            }
            let r = self.with_peer(id, |p| Ok(p.rtc.handle_input(Input::Timeout(now))?));
            if r.is_ok() {
                self.drain(id, now);
            }
        }
        self.due = due;
        self.run_work(now);
        if now >= self.next_speaker_tick {
            self.next_speaker_tick = now + SPEAKER_TICK;
            let mut reranked = std::mem::take(&mut self.dirty_rooms);
            for (room, tracks) in self.rooms.speaker_changes(now, &mut reranked) {
                self.events
                    .push(EngineEvent::ActiveSpeakers { room, tracks });
            }
            self.dirty_rooms = reranked;
            self.refill(now);
            self.retry_awaited_keyframes(now);
        }
    }

    // ---------------------------------------------------------------- internals

    /// Runs `f` on one peer, dropping the peer if `f` panics.
    fn with_peer<T>(&mut self, id: PeerId, f: impl FnOnce(&mut Peer) -> Result<T>) -> Result<T> {
        let peer = self.peers.get_mut(&id).ok_or(Error::UnknownPeer(id))?;
        match catch_unwind(AssertUnwindSafe(|| f(peer))) {
            Ok(r) => r,
            Err(_) => {
                self.stats.peer_panics.fetch_add(1, Relaxed);
                self.forget_peer(id, "internal_error", true);
                Err(Error::PeerFailed("internal error".into()))
            }
        }
    }

    /// Polls a peer's `Rtc` until it yields a timeout, as str0m requires after every change.
    /// In RTP mode this is also what keeps bursts whole: an `Rtc` holds one received packet
    /// until it is polled out, and the next `Input::Receive` overwrites it.
    fn drain(&mut self, id: PeerId, now: Instant) {
        loop {
            let polled = self.with_peer(id, |p| Ok(p.rtc.poll_output()?));
            // The DTLS handshake, if it just finished, ran inside this peer's call.
            if let Some(profile) = dtls_probe::take_negotiated_profile() {
                if let Some(p) = self.peers.get(&id) {
                    let code = dtls_probe::profile_code(profile);
                    p.stats.srtp_profile.store(code, Relaxed);
                }
            }
            let out = match polled {
                Ok(o) => o,
                Err(Error::UnknownPeer(_)) => return,
                Err(e) => {
                    self.fail_peer(id, &format!("rtc: {e}"));
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    if let Some(p) = self.peers.get_mut(&id) {
                        if p.next_timeout != Some(t) {
                            p.next_timeout = Some(t);
                            self.timers.schedule(t, id);
                        }
                    }
                    return;
                }
                Output::Transmit(t) => {
                    let first = t.contents.first().copied().unwrap_or(0);
                    let allowed = match self.peers.get_mut(&id) {
                        Some(p) => {
                            let ok = p.guard.may_send(t.destination, first);
                            if ok {
                                p.stats.add_out(t.contents.len());
                            }
                            ok
                        }
                        None => true,
                    };
                    if !allowed {
                        // str0m chose an address that has not proven it receives.
                        self.stats.count_drop(DropReason::UnverifiedAddress);
                        self.probe(id, t.destination, now);
                        continue;
                    }
                    self.stats.packets_out.fetch_add(1, Relaxed);
                    self.stats
                        .bytes_out
                        .fetch_add(t.contents.len() as u64, Relaxed);
                    self.transmits.push(Transmit {
                        destination: t.destination,
                        contents: t.contents.into(),
                    });
                }
                Output::Event(e) => self.work.push_back((id, e)),
            }
        }
    }

    fn run_work(&mut self, now: Instant) {
        while let Some((id, e)) = self.work.pop_front() {
            if !self.peers.contains_key(&id) {
                continue;
            }
            self.handle_event(id, e, now);
        }
    }

    fn handle_event(&mut self, id: PeerId, e: Event, now: Instant) {
        match e {
            Event::Connected => {
                let Some(p) = self.peers.get_mut(&id) else {
                    return;
                };
                p.connected = true;
                p.guard.activate();
                p.stats.connected.store(1, Relaxed);
                let profile =
                    crate::stats::srtp_profile_name(p.stats.srtp_profile.load(Relaxed)).to_owned();
                self.events.push(EngineEvent::PeerConnected {
                    peer: id,
                    srtp_profile: profile,
                });
                // Its video slots can take their sources now: ask for the keyframes.
                self.request_awaited_keyframes(id, now);
            }
            // Before the first connection the connect timeout decides; after it, an ICE-lite
            // agent reports this once the client's consent checks stop (15 s).
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if self.peers.get(&id).is_some_and(|p| p.connected) =>
            {
                self.fail_peer(id, "ice_disconnected");
            }
            Event::MediaAdded(m) if m.direction.is_receiving() => {
                self.publish(id, m.mid, m.kind.into());
            }
            Event::MediaChanged(m) => {
                let published = self
                    .peers
                    .get(&id)
                    .and_then(|p| p.published.get(&m.mid).copied());
                match (published, m.direction.is_receiving()) {
                    (Some(track), false) => self.unpublish(id, track),
                    (None, true) => {
                        let kind = self
                            .peers
                            .get(&id)
                            .and_then(|p| p.rtc.media(m.mid))
                            .map(|media| MediaKind::from(media.kind()));
                        if let Some(kind) = kind {
                            self.publish(id, m.mid, kind);
                        }
                    }
                    _ => {}
                }
            }
            Event::RtpPacket(pkt) => self.forward(id, pkt, now),
            Event::KeyframeRequest(req) => {
                self.stats.keyframe_requests_in.fetch_add(1, Relaxed);
                let sources: Vec<TrackId> = self
                    .peers
                    .get_mut(&id)
                    .and_then(|p| {
                        p.stats.plis_in.fetch_add(1, Relaxed);
                        let i = p.slot_by_mid(req.mid)?;
                        Some(p.slots[i].sources().collect())
                    })
                    .unwrap_or_default();
                for track in sources {
                    self.request_keyframe_kind(track, req.kind, now);
                }
            }
            Event::PeerStats(s) => {
                if let Some(p) = self.peers.get(&id) {
                    if let Some(rtt) = s.rtt {
                        p.stats.rtt_us.store(rtt.as_micros() as u64, Relaxed);
                    }
                    if let Some(loss) = s.egress_loss_fraction {
                        let ppm = (f64::from(loss).clamp(0.0, 1.0) * 1e6) as u64;
                        p.stats.loss_ppm.store(ppm, Relaxed);
                    }
                }
            }
            Event::MediaEgressStats(s) => {
                if let Some(p) = self.peers.get(&id) {
                    // Cumulative per mid: keep the largest seen as a lower bound of the total.
                    p.stats.nacks_in.fetch_max(s.nacks, Relaxed);
                }
            }
            _ => {}
        }
    }

    fn publish(&mut self, id: PeerId, mid: Mid, kind: MediaKind) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.published.contains_key(&mid) {
            return;
        }
        let track = TrackId(self.track_ids.fetch_add(1, Relaxed) + 1);
        p.published.insert(mid, track);
        let room = p.room.clone();
        self.rooms
            .add_track(track, Track::new(id, room.clone(), mid, kind.clone()));
        self.dirty_rooms.push(room);
        self.update_gauges();
        self.events.push(EngineEvent::TrackPublished {
            peer: id,
            track,
            kind,
            mid: mid.to_string(),
        });
    }

    fn unpublish(&mut self, id: PeerId, track: TrackId) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.published.retain(|_, t| *t != track);
            p.ssrc_tracks.retain(|_, t| *t != track);
        }
        let Some(t) = self.rooms.remove_track(track) else {
            return;
        };
        // Its slots let go of it at once; the refill that follows gives them new sources.
        for sink in t.sinks {
            let Sink::Slot { peer, slot } = sink;
            let emptied = self
                .peers
                .get_mut(&peer)
                .and_then(|p| p.slots.get_mut(slot))
                .is_some_and(|s| s.forget(track));
            if emptied {
                self.slot_changed(peer, slot, None);
            }
        }
        self.dirty_rooms.push(t.room);
        self.update_gauges();
        self.events
            .push(EngineEvent::TrackUnpublished { peer: id, track });
    }

    /// Sends one publisher's RTP packet to every open subscription of its track.
    fn forward(&mut self, id: PeerId, pkt: RtpPacket, now: Instant) {
        let ssrc = pkt.header.ssrc;
        let Some(publisher) = self.peers.get_mut(&id) else {
            return;
        };
        publisher.stats.rtp_in.fetch_add(1, Relaxed);
        let track = match publisher.ssrc_tracks.get(&ssrc) {
            Some(t) => *t,
            None => {
                let mid = publisher.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid());
                let Some(track) = mid.and_then(|m| publisher.published.get(&m).copied()) else {
                    return;
                };
                publisher.ssrc_tracks.insert(ssrc, track);
                track
            }
        };
        let pt_in = pkt.header.payload_type;
        let Some(spec) = publisher.codec_of(pt_in) else {
            self.stats.count_drop(DropReason::NoCodec);
            return;
        };
        let video = spec.codec.is_video();
        let h = &pkt.header;
        if let (false, Some(level)) = (video, h.ext_vals.audio_level) {
            if let Some(t) = self.rooms.track_mut(track) {
                t.hear(level, now);
            }
        }
        let ext = ExtensionValues {
            audio_level: h.ext_vals.audio_level,
            voice_activity: h.ext_vals.voice_activity,
            video_orientation: h.ext_vals.video_orientation,
            video_content_type: h.ext_vals.video_content_type,
            ..Default::default()
        };
        let vp8 = (spec.codec == str0m::format::Codec::Vp8)
            .then(|| crate::vp8::Frame::parse(&pkt.payload));
        let mut fanout = std::mem::take(&mut self.fanout);
        fanout.clear();
        fanout.extend_from_slice(self.rooms.sinks(track));
        let source = Source {
            track,
            pt: pt_in,
            spec: &spec,
            ssrc: *ssrc,
            video,
            vp8: vp8.as_ref(),
            keyframe_start: vp8.is_some_and(|f| f.keyframe_start),
            ext: &ext,
        };
        for sink in fanout.iter().copied() {
            let Sink::Slot { peer: sub, slot } = sink;
            let sent = self.with_peer(sub, |p| {
                let first = !p.nudge_due;
                Ok((p.send_to_slot(slot, &source, &pkt, now), first))
            });
            match sent {
                Ok((forwarded @ (Forwarded::Sent | Forwarded::Switched { .. }), first)) => {
                    self.stats.rtp_forwarded.fetch_add(1, Relaxed);
                    if let Forwarded::Switched { from } = forwarded {
                        self.switched(sub, slot, from, track);
                    }
                    if !self.batching {
                        // Outside a receive batch (nothing does this today): send at once.
                        let _ = self.with_peer(sub, |p| p.nudge(now));
                        self.drain(sub, now);
                    } else if first {
                        self.touched.push(sub);
                    }
                }
                Ok((Forwarded::NotOpen | Forwarded::NotActive, _)) => {}
                Ok((Forwarded::NoCodec, _)) => self.stats.count_drop(DropReason::NoCodec),
                Err(_) => self.drain(sub, now),
            }
        }
        self.fanout = fanout;
    }

    /// A video slot took its new source on a keyframe: the old one no longer feeds it.
    fn switched(&mut self, peer: PeerId, slot: usize, from: Option<TrackId>, to: TrackId) {
        if let Some(old) = from.filter(|t| *t != to) {
            self.rooms.remove_sink(old, Sink::Slot { peer, slot });
        }
        self.slot_changed(peer, slot, Some(to));
    }

    fn slot_changed(&mut self, peer: PeerId, slot: usize, track: Option<TrackId>) {
        self.stats.slot_switches.fetch_add(1, Relaxed);
        self.events
            .push(EngineEvent::SlotChanged { peer, slot, track });
    }

    /// Points slot `slot` of `peer` at `target`, keeping the sinks of the tracks in step.
    fn retarget_slot(&mut self, peer: PeerId, slot: usize, target: Option<TrackId>, now: Instant) {
        let Some(s) = self
            .peers
            .get_mut(&peer)
            .and_then(|p| p.slots.get_mut(slot))
        else {
            return;
        };
        // At most two sources each side: arrays, no allocation per slot per refill.
        let before = s.source_pair();
        let changed = s.retarget(target, now);
        let after = s.source_pair();
        let awaited = s.next.map(|(t, _)| t);
        let sink = Sink::Slot { peer, slot };
        for t in before
            .iter()
            .flatten()
            .filter(|t| !after.contains(&Some(**t)))
        {
            self.rooms.remove_sink(*t, sink);
        }
        for t in after
            .iter()
            .flatten()
            .filter(|t| !before.contains(&Some(**t)))
        {
            self.rooms.add_sink(*t, sink);
        }
        if changed {
            self.slot_changed(peer, slot, target);
        }
        let open = self
            .peers
            .get(&peer)
            .is_some_and(|p| p.lines == Lines::Open);
        if let (Some(t), true) = (awaited, open) {
            if !before.contains(&Some(t)) {
                self.request_keyframe(t, now);
            }
        }
    }

    /// Asks for the keyframes that this peer's video slots wait for.
    fn request_awaited_keyframes(&mut self, peer: PeerId, now: Instant) {
        let awaited: Vec<TrackId> = self
            .peers
            .get(&peer)
            .map(|p| {
                p.slots
                    .iter()
                    .filter_map(|s| s.next.map(|(t, _)| t))
                    .collect()
            })
            .unwrap_or_default();
        for t in awaited {
            self.request_keyframe(t, now);
        }
    }

    /// Video slots still waiting for their new source's keyframe ask again (a request or the
    /// keyframe may have been lost); `request_keyframe` throttles per track.
    fn retry_awaited_keyframes(&mut self, now: Instant) {
        let wait = self.settings.keyframe_request_interval;
        let mut late: Vec<TrackId> = Vec::new();
        for p in self.peers.values() {
            if p.lines != Lines::Open || !p.connected {
                continue;
            }
            for s in &p.slots {
                if let Some((t, since)) = s.next {
                    if now.saturating_duration_since(since) >= wait && !late.contains(&t) {
                        late.push(t);
                    }
                }
            }
        }
        for t in late {
            self.request_keyframe(t, now);
        }
    }

    /// Chooses again the sources of the slots of every dirty room and dirty receiver.
    fn refill(&mut self, now: Instant) {
        if self.dirty_rooms.is_empty() && self.dirty_peers.is_empty() {
            return;
        }
        let mut rooms = std::mem::take(&mut self.dirty_rooms);
        let mut peers = std::mem::take(&mut self.dirty_peers);
        rooms.sort_by(|a, b| a.0.cmp(&b.0));
        rooms.dedup();
        for room in &rooms {
            if let Some(r) = self.rooms.room(room) {
                peers.extend_from_slice(&r.peers);
            }
        }
        peers.sort();
        peers.dedup();
        let mut cache: HashMap<RoomId, RoomOrder> = HashMap::new();
        for id in peers {
            let Some(room) = self.peers.get(&id).map(|p| p.room.clone()) else {
                continue;
            };
            let order = cache
                .entry(room.clone())
                .or_insert_with(|| RoomOrder::of(&self.rooms, &room));
            let plan = self.plan_slots(id, order);
            for (slot, target) in plan {
                self.retarget_slot(id, slot, target, now);
            }
        }
    }

    /// The source each slot of `id` should carry: (slot, target) for every slot.
    fn plan_slots(&self, id: PeerId, order: &RoomOrder) -> Vec<(usize, Option<TrackId>)> {
        let Some(p) = self.peers.get(&id) else {
            return Vec::new();
        };
        let mine = |t: &TrackId| self.rooms.track(*t).is_none_or(|x| x.publisher == id);
        let mut plan = Vec::new();
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let idx: Vec<usize> = (0..p.slots.len())
                .filter(|i| p.slots[*i].kind == kind)
                .collect();
            if idx.is_empty() {
                continue;
            }
            let mut wanted: Vec<TrackId> = Vec::with_capacity(idx.len());
            let candidates: Box<dyn Iterator<Item = TrackId> + '_> = match kind {
                MediaKind::Audio => Box::new(order.audio.iter().copied()),
                MediaKind::Video => {
                    let asked = p.layout.iter().copied().filter(|t| {
                        self.rooms.track(*t).is_some_and(|x| {
                            x.kind == MediaKind::Video && x.room == p.room && !x.muted
                        })
                    });
                    let speakers = order.speaker_video.iter().copied();
                    let everyone = order.video.iter().copied().filter(|_| p.automatic);
                    Box::new(asked.chain(speakers).chain(everyone))
                }
            };
            for t in candidates {
                if wanted.len() == idx.len() {
                    break;
                }
                if !mine(&t) && !wanted.contains(&t) {
                    wanted.push(t);
                }
            }
            let current: Vec<Option<TrackId>> = idx.iter().map(|i| p.slots[*i].target()).collect();
            let next = stable_assign(&current, &wanted);
            plan.extend(idx.iter().copied().zip(next));
        }
        plan
    }

    fn request_keyframe(&mut self, track: TrackId, now: Instant) {
        self.request_keyframe_kind(track, KeyframeRequestKind::Pli, now);
    }

    fn request_keyframe_kind(&mut self, track: TrackId, kind: KeyframeRequestKind, now: Instant) {
        let Some(t) = self.rooms.track(track) else {
            return;
        };
        if t.kind != MediaKind::Video {
            return;
        }
        let (publisher, mid) = (t.publisher, t.mid);
        if !self
            .rooms
            .allow_keyframe_request(track, now, self.settings.keyframe_request_interval)
        {
            return;
        }
        let sent = self.with_peer(publisher, |p| {
            let mut api = p.rtc.direct_api();
            match api.stream_rx_by_mid(mid, None) {
                Some(rx) => {
                    rx.request_keyframe(kind);
                    Ok(true)
                }
                None => Ok(false),
            }
        });
        if let Ok(true) = sent {
            self.stats.keyframe_requests_out.fetch_add(1, Relaxed);
            self.events.push(EngineEvent::KeyframeRequested {
                peer: publisher,
                track,
            });
            self.drain(publisher, now);
        }
    }

    /// Offers queued subscription changes to the peer if nothing is outstanding.
    fn renegotiate(&mut self, id: PeerId, now: Instant) {
        let offer = self.with_peer(id, |p| Ok(p.make_offer()));
        if let Ok(Some(sdp)) = offer {
            self.drain(id, now);
            self.events.push(EngineEvent::Offer { peer: id, sdp });
            let lines = self.peers.get(&id).map(|p| {
                p.slots
                    .iter()
                    .map(|s| {
                        (
                            s.mid.map(|m| m.to_string()).unwrap_or_default(),
                            s.kind.clone(),
                        )
                    })
                    .collect()
            });
            if let Some(lines) = lines {
                self.events.push(EngineEvent::SlotLines { peer: id, lines });
            }
        }
    }

    fn fail_peer(&mut self, id: PeerId, reason: &str) {
        if self.peers.contains_key(&id) {
            self.forget_peer(id, reason, true);
        }
    }

    fn remove_peer(&mut self, id: PeerId, reason: &str) {
        self.forget_peer(id, reason, false);
    }

    /// Removes a peer and everything that points at it. `failed` peers get `PeerFailed` first.
    fn forget_peer(&mut self, id: PeerId, reason: &str, failed: bool) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        self.by_ufrag.remove(&peer.local_ufrag);
        self.srtcp.remove(&id);
        for a in &peer.addrs {
            if self.by_addr.get(a) == Some(&id) {
                self.by_addr.remove(a);
            }
        }
        self.registry.remove(id);
        self.rooms.leave(&peer.room, id);
        for (i, slot) in peer.slots.iter().enumerate() {
            for t in slot.sources() {
                self.rooms.remove_sink(t, Sink::Slot { peer: id, slot: i });
            }
        }
        let published: Vec<TrackId> = peer.published.values().copied().collect();
        if failed {
            self.events.push(EngineEvent::PeerFailed {
                peer: id,
                reason: reason.to_owned(),
            });
        }
        for track in published {
            self.unpublish(id, track);
        }
        // Best effort goodbye (DTLS close_notify); a broken Rtc must not take the shard down.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            peer.rtc.disconnect();
        }));
        self.update_gauges();
        self.events.push(EngineEvent::PeerClosed {
            peer: id,
            reason: reason.to_owned(),
        });
    }

    fn update_gauges(&self) {
        self.stats.peers.store(self.peers.len() as u64, Relaxed);
        self.stats
            .rooms
            .store(self.rooms.room_count() as u64, Relaxed);
        self.stats
            .tracks
            .store(self.rooms.track_count() as u64, Relaxed);
    }

    /// For tests: the peer's local ICE ufrag.
    pub fn peer_ufrag(&self, id: PeerId) -> Option<&str> {
        self.peers.get(&id).map(|p| p.local_ufrag.as_str())
    }

    /// For tests: whether the peer completed ICE and DTLS.
    pub fn peer_connected(&self, id: PeerId) -> bool {
        self.peers.get(&id).is_some_and(|p| p.connected)
    }

    /// For tests and introspection: what each slot of a peer carries now (its mid, kind and
    /// active source) and whether its lines are negotiated.
    pub fn slot_states(&self, id: PeerId) -> Vec<(Option<Mid>, MediaKind, Option<TrackId>)> {
        self.peers
            .get(&id)
            .map(|p| {
                p.slots
                    .iter()
                    .map(|s| (s.mid, s.kind.clone(), s.active))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// For tests: whether the peer's slot lines are negotiated.
    pub fn slots_open(&self, id: PeerId) -> bool {
        self.peers.get(&id).is_some_and(|p| p.lines == Lines::Open)
    }
}

/// What a room offers its receivers' slots, computed once per refill.
struct RoomOrder {
    /// Audio tracks in the order audio slots take them.
    audio: Vec<TrackId>,
    /// The video tracks of recent speakers, most recent first.
    speaker_video: Vec<TrackId>,
    /// Every video track that is not muted, in publish order.
    video: Vec<TrackId>,
}

impl RoomOrder {
    fn of(rooms: &Rooms, room: &RoomId) -> RoomOrder {
        let video: Vec<TrackId> = rooms
            .room(room)
            .map(|r| {
                r.tracks
                    .iter()
                    .copied()
                    .filter(|t| {
                        rooms
                            .track(*t)
                            .is_some_and(|x| x.kind == MediaKind::Video && !x.muted)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let speaker_video = rooms
            .recent_speakers(room)
            .into_iter()
            .flat_map(|p| {
                video
                    .iter()
                    .copied()
                    .filter(move |t| rooms.track(*t).is_some_and(|x| x.publisher == p))
            })
            .collect();
        RoomOrder {
            audio: rooms.audio_ranking(room),
            speaker_video,
            video,
        }
    }
}
