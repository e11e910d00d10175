//! One error type for everything the engine reports to its callers.

use crate::ids::{PeerId, TrackId};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid config: {0}")]
    Config(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid SDP: {0}")]
    Sdp(String),
    #[error("WebRTC error: {0}")]
    Rtc(String),
    #[error("unknown {0}")]
    UnknownPeer(PeerId),
    #[error("unknown {0}")]
    UnknownTrack(TrackId),
    #[error("invalid state: {0}")]
    InvalidState(String),
    #[error("engine is not running")]
    NotRunning,
    #[error("peer failed: {0}")]
    PeerFailed(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<str0m::RtcError> for Error {
    fn from(e: str0m::RtcError) -> Self {
        Error::Rtc(e.to_string())
    }
}
