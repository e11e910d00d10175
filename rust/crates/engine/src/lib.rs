//! The visio-media data plane: shards of peers on UDP sockets, rooms pinned to shards,
//! RTP forwarding between publishers and subscribers.
//!
//! Layering inside this crate, bottom up: protocol helpers without I/O (`demux`, `rewrite`,
//! `dtls_probe`), the sans-IO shard state (`peer`, `room`, `shard`), then the I/O shell
//! (`udp`, `notify`, `runner`) and the multi-shard controller (`engine`).

pub mod addr_guard;
pub mod config;
pub mod demux;
pub mod dtls_probe;
pub mod engine;
pub mod error;
pub mod event;
pub mod ids;
pub mod notify;
pub mod offer;
pub mod peer;
pub mod rewrite;
pub mod room;
mod runner;
pub mod sdp_text;
pub mod shard;
pub mod sim;
pub mod slots;
pub mod srtp_probe;
pub mod stats;
pub mod timers;
pub mod udp;
pub mod vp8;

pub use config::EngineConfig;
pub use engine::Engine;
pub use error::Error;
pub use event::EngineEvent;
pub use ids::{PeerId, RoomId, TrackId};
