//! Events the engine reports to its caller, in batches.

use crate::ids::{PeerId, RoomId, TrackId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

impl From<str0m::media::MediaKind> for MediaKind {
    fn from(k: str0m::media::MediaKind) -> Self {
        match k {
            str0m::media::MediaKind::Audio => MediaKind::Audio,
            str0m::media::MediaKind::Video => MediaKind::Video,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// ICE and DTLS completed; SRTP keys are in place.
    PeerConnected {
        peer: PeerId,
        srtp_profile: String,
    },
    /// The peer broke (timeout, ICE loss, internal error) and was removed.
    PeerFailed {
        peer: PeerId,
        reason: String,
    },
    /// The peer was removed (by request or after a failure).
    PeerClosed {
        peer: PeerId,
        reason: String,
    },
    TrackPublished {
        peer: PeerId,
        track: TrackId,
        kind: MediaKind,
        mid: String,
    },
    TrackUnpublished {
        peer: PeerId,
        track: TrackId,
    },
    /// A subscriber asked the publisher of `track` for a keyframe (throttled).
    KeyframeRequested {
        peer: PeerId,
        track: TrackId,
    },
    /// The server has changes for this peer: send it this offer, then apply its answer.
    Offer {
        peer: PeerId,
        sdp: String,
    },
    /// What slot `slot` of `peer` carries changed (`None`: nothing flows on it now).
    SlotChanged {
        peer: PeerId,
        slot: usize,
        track: Option<TrackId>,
    },
    /// The server's offer to `peer` carries its slot lines: (mid, kind) in slot order.
    SlotLines {
        peer: PeerId,
        lines: Vec<(String, MediaKind)>,
    },
    /// The loudest speaking audio tracks of a room changed (loudest first, maybe empty).
    ActiveSpeakers {
        room: RoomId,
        tracks: Vec<TrackId>,
    },
}

impl EngineEvent {
    /// The peer the event is about; `None` for room-wide events.
    pub fn peer(&self) -> Option<PeerId> {
        Some(match self {
            EngineEvent::PeerConnected { peer, .. }
            | EngineEvent::PeerFailed { peer, .. }
            | EngineEvent::PeerClosed { peer, .. }
            | EngineEvent::TrackPublished { peer, .. }
            | EngineEvent::TrackUnpublished { peer, .. }
            | EngineEvent::KeyframeRequested { peer, .. }
            | EngineEvent::Offer { peer, .. }
            | EngineEvent::SlotChanged { peer, .. }
            | EngineEvent::SlotLines { peer, .. } => *peer,
            EngineEvent::ActiveSpeakers { .. } => return None,
        })
    }
}
