//! Identifiers shared by the engine and its callers.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A map keyed by one of our own integer ids (`PeerId`, `TrackId`), looked up several times
/// per forwarded packet. It uses Fx (one multiply per key) instead of SipHash: these ids are
/// allocated by the engine from counters, never taken from the network, so nobody outside can
/// choose keys that collide and HashDoS is not a concern. Maps keyed by anything a remote
/// sends (`SocketAddr`, SSRC, ufrag, mid) keep the standard DoS-resistant hasher.
pub type IdMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

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
