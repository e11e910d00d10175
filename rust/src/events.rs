//! Engine events as plain Python tuples: (kind, peer_id, attributes).

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
    };
    Ok((kind, e.peer().0, d))
}
