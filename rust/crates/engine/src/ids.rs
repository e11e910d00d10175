//! Identifiers shared by the engine and its callers.

use std::fmt;
use std::sync::Arc;

/// A peer (one WebRTC transport, one `Rtc`), unique across the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// A published track, unique across the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u64);

/// A room name as given by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomId(pub Arc<str>);

impl RoomId {
    pub fn new(name: &str) -> Self {
        RoomId(Arc::from(name))
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer-{}", self.0)
    }
}

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "track-{}", self.0)
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
