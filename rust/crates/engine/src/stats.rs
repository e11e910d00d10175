//! Counters kept in atomics: written by shard threads, read by `snapshot()` at scrape time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::ids::PeerId;

/// Why a datagram was dropped (on the way in, or, for `UnverifiedAddress`, also on the way out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not STUN, and its source address never completed ICE.
    UnknownSource,
    /// STUN whose USERNAME names no local ufrag.
    StunUnknownUfrag,
    /// STUN for a known ufrag that the peer did not accept (bad integrity, wrong role...).
    StunRejected,
    /// Too short, or a first byte outside RFC 7983's ranges.
    Malformed,
    /// Longer than `max_datagram`.
    TooLarge,
    /// From a peer's own address, refused: SRTP/SRTCP that did not authenticate (bad tag),
    /// was replayed, or names no negotiated stream or payload type (or came before the keys);
    /// STUN or DTLS the peer's stack refused. One count per datagram, never forwarded.
    PeerRejected,
    /// An RTP packet whose payload type the subscriber did not negotiate.
    NoCodec,
    /// A datagram from or to an address that has not yet proven it receives what we send
    /// there (`addr_guard`): a connected peer's STUN check held back, or media not sent.
    UnverifiedAddress,
    /// Dropped by the kernel before we read it: the socket's receive buffer was full
    /// (reported by `SO_RXQ_OVFL`; never counted in `packets_in`).
    RxQueueOverflow,
    /// On the way out: more datagrams waited for a full socket send buffer than
    /// `udp::MAX_WAITING`; the oldest went.
    SendBufferFull,
    /// On the way out: the kernel refused the datagram (e.g. destination unreachable).
    SendFailed,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::UnknownSource,
        DropReason::StunUnknownUfrag,
        DropReason::StunRejected,
        DropReason::Malformed,
        DropReason::TooLarge,
        DropReason::PeerRejected,
        DropReason::NoCodec,
        DropReason::UnverifiedAddress,
        DropReason::RxQueueOverflow,
        DropReason::SendBufferFull,
        DropReason::SendFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownSource => "unknown_source",
            DropReason::StunUnknownUfrag => "stun_unknown_ufrag",
            DropReason::StunRejected => "stun_rejected",
            DropReason::Malformed => "malformed",
            DropReason::TooLarge => "too_large",
            DropReason::PeerRejected => "peer_rejected",
            DropReason::NoCodec => "no_codec",
            DropReason::UnverifiedAddress => "unverified_address",
            DropReason::RxQueueOverflow => "rx_queue_overflow",
            DropReason::SendBufferFull => "send_buffer_full",
            DropReason::SendFailed => "send_failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Per-shard counters.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub rtp_forwarded: AtomicU64,
    pub stun_responses: AtomicU64,
    pub keyframe_requests_in: AtomicU64,
    pub keyframe_requests_out: AtomicU64,
    pub nacks_in: AtomicU64,
    pub peers: AtomicU64,
    pub rooms: AtomicU64,
    pub tracks: AtomicU64,
    pub peer_panics: AtomicU64,
    pub events_dropped: AtomicU64,
    /// Times `sendmmsg` found the socket send buffer full and sending waited for it to drain.
    pub send_blocked: AtomicU64,
    /// Times a receive slot changed source (switched, emptied, filled).
    pub slot_switches: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl ShardStats {
    pub fn count_drop(&self, reason: DropReason) {
        self.count_drops(reason, 1);
    }

    pub fn count_drops(&self, reason: DropReason, n: u64) {
        self.drops[reason.index()].fetch_add(n, Relaxed);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].load(Relaxed)
    }
}

/// Negotiated SRTP profile, stored as a small number in an atomic.
pub fn srtp_profile_name(code: u64) -> &'static str {
    match code {
        1 => "AES128_CM_SHA1_80",
        2 => "AEAD_AES_128_GCM",
        3 => "AEAD_AES_256_GCM",
        _ => "",
    }
}

/// Per-peer counters, shared with the snapshot registry.
#[derive(Debug, Default)]
pub struct PeerStats {
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub rtp_in: AtomicU64,
    pub rtp_out: AtomicU64,
    pub nacks_in: AtomicU64,
    pub plis_in: AtomicU64,
    /// Round-trip time in microseconds, 0 when unknown.
    pub rtt_us: AtomicU64,
    /// Loss fraction reported by the remote, in parts per million.
    pub loss_ppm: AtomicU64,
    pub srtp_profile: AtomicU64,
    pub connected: AtomicU64,
}

impl PeerStats {
    pub fn add_in(&self, bytes: usize) {
        self.packets_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    pub fn add_out(&self, bytes: usize) {
        self.packets_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }
}

/// The peers whose counters a snapshot reads. Touched on peer creation and removal only.
#[derive(Debug, Default, Clone)]
pub struct PeerRegistry(Arc<Mutex<HashMap<PeerId, Arc<PeerStats>>>>);

impl PeerRegistry {
    pub fn insert(&self, peer: PeerId, stats: Arc<PeerStats>) {
        self.lock().insert(peer, stats);
    }

    pub fn remove(&self, peer: PeerId) {
        self.lock().remove(&peer);
    }

    pub fn get(&self, peer: PeerId) -> Option<Arc<PeerStats>> {
        self.lock().get(&peer).map(Arc::clone)
    }

    pub fn entries(&self) -> Vec<(PeerId, Arc<PeerStats>)> {
        self.lock()
            .iter()
            .map(|(k, v)| (*k, Arc::clone(v)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Arc<PeerStats>>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is still sound.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A point-in-time copy of the counters of one shard.
#[derive(Debug, Default, Clone)]
pub struct ShardSnapshot {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rtp_forwarded: u64,
    pub stun_responses: u64,
    pub keyframe_requests_in: u64,
    pub keyframe_requests_out: u64,
    pub nacks_in: u64,
    pub peers: u64,
    pub rooms: u64,
    pub tracks: u64,
    pub peer_panics: u64,
    pub events_dropped: u64,
    pub send_blocked: u64,
    pub slot_switches: u64,
    pub drops: Vec<(&'static str, u64)>,
}

impl ShardStats {
    pub fn snapshot(&self) -> ShardSnapshot {
        ShardSnapshot {
            packets_in: self.packets_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            packets_out: self.packets_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            rtp_forwarded: self.rtp_forwarded.load(Relaxed),
            stun_responses: self.stun_responses.load(Relaxed),
            keyframe_requests_in: self.keyframe_requests_in.load(Relaxed),
            keyframe_requests_out: self.keyframe_requests_out.load(Relaxed),
            nacks_in: self.nacks_in.load(Relaxed),
            peers: self.peers.load(Relaxed),
            rooms: self.rooms.load(Relaxed),
            tracks: self.tracks.load(Relaxed),
            peer_panics: self.peer_panics.load(Relaxed),
            events_dropped: self.events_dropped.load(Relaxed),
            send_blocked: self.send_blocked.load(Relaxed),
            slot_switches: self.slot_switches.load(Relaxed),
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), self.drops(*r)))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PeerSnapshot {
    pub peer: PeerId,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rtp_in: u64,
    pub rtp_out: u64,
    pub nacks_in: u64,
    pub plis_in: u64,
    pub rtt_seconds: f64,
    pub loss_ratio: f64,
    pub srtp_profile: &'static str,
    pub connected: bool,
}

impl PeerStats {
    pub fn snapshot(&self, peer: PeerId) -> PeerSnapshot {
        PeerSnapshot {
            peer,
            packets_in: self.packets_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            packets_out: self.packets_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            rtp_in: self.rtp_in.load(Relaxed),
            rtp_out: self.rtp_out.load(Relaxed),
            nacks_in: self.nacks_in.load(Relaxed),
            plis_in: self.plis_in.load(Relaxed),
            rtt_seconds: self.rtt_us.load(Relaxed) as f64 / 1e6,
            loss_ratio: self.loss_ppm.load(Relaxed) as f64 / 1e6,
            srtp_profile: srtp_profile_name(self.srtp_profile.load(Relaxed)),
            connected: self.connected.load(Relaxed) != 0,
        }
    }
}
