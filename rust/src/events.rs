//! Engine events as plain Python tuples: (kind, peer_id, attributes); peer_id 0 for room-wide.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use visio_engine::EngineEvent;

pub type PyEvent<'py> = (&'static str, u64, Bound<'py, PyDict>);

pub fn to_python<'py>(py: Python<'py>, e: &EngineEvent) -> PyResult<PyEvent<'py>> {
    let d = PyDict::new(py);
    let kind = match e {
        EngineEvent::PeerConnected { srtp_profile, .. } => {
            d.set_item("srtp_profile", srtp_profile)?;
            "peer_connected"
        }
        EngineEvent::PeerFailed { reason, .. } => {
            d.set_item("reason", reason)?;
            "peer_failed"
        }
        EngineEvent::PeerClosed { reason, .. } => {
            d.set_item("reason", reason)?;
            "peer_closed"
        }
        EngineEvent::TrackPublished {
            track, kind, mid, ..
        } => {
            d.set_item("track_id", track.0)?;
            d.set_item("kind", kind.as_str())?;
            d.set_item("mid", mid)?;
            "track_published"
        }
        EngineEvent::TrackUnpublished { track, .. } => {
            d.set_item("track_id", track.0)?;
            "track_unpublished"
        }
        EngineEvent::KeyframeRequested { track, .. } => {
            d.set_item("track_id", track.0)?;
            "keyframe_requested"
        }
        EngineEvent::Offer { sdp, .. } => {
            d.set_item("sdp", sdp)?;
            "offer"
        }
        EngineEvent::SlotChanged { slot, track, .. } => {
            d.set_item("slot", slot)?;
            d.set_item("track_id", track.map(|t| t.0))?;
            "slot_changed"
        }
        EngineEvent::SlotLines { lines, .. } => {
            let lines: Vec<(&str, &str)> = lines
                .iter()
                .map(|(m, k)| (m.as_str(), k.as_str()))
                .collect();
            d.set_item("lines", lines)?;
            "slot_lines"
        }
        EngineEvent::ActiveSpeakers { room, tracks } => {
            d.set_item("room", room.to_string())?;
            let ids: Vec<String> = tracks.iter().map(|t| t.0.to_string()).collect();
            d.set_item("track_ids", ids.join(","))?;
            "active_speakers"
        }
    };
    // Room-wide events carry peer id 0, which no peer has.
    Ok((kind, e.peer().map_or(0, |p| p.0), d))
}
