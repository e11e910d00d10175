//! The `Engine` class: argument conversion around `visio_engine::Engine`, waits without the GIL.

use std::net::IpAddr;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use visio_engine::peer::SlotCounts;
use visio_engine::{EngineConfig, PeerId, TrackId};

use crate::errors::Failure;
use crate::events::{self, PyEvent};

#[pyclass(module = "visio_media._native", frozen)]
pub struct Engine {
    inner: std::sync::RwLock<visio_engine::Engine>,
}

fn parse_ip(what: &str, s: &str) -> PyResult<IpAddr> {
    s.parse()
        .map_err(|_| PyValueError::new_err(format!("{what} is not an IP address: {s:?}")))
}

impl Engine {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, visio_engine::Engine> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, visio_engine::Engine> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (*, shards, bind_ip, announce_ip, port_min, port_max, event_queue_capacity = 65536))]
    fn new(
        shards: usize,
        bind_ip: &str,
        announce_ip: Option<&str>,
        port_min: u16,
        port_max: u16,
        event_queue_capacity: usize,
    ) -> PyResult<Self> {
        let config = EngineConfig {
            shards,
            bind_ip: parse_ip("bind_ip", bind_ip)?,
            announce_ip: announce_ip
                .map(|s| parse_ip("announce_ip", s))
                .transpose()?,
            port_min,
            port_max,
            event_queue_capacity,
            ..EngineConfig::default()
        };
        let inner = visio_engine::Engine::new(config).map_err(Failure)?;
        Ok(Engine {
            inner: std::sync::RwLock::new(inner),
        })
    }

    fn start(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.write().start()).map_err(Failure)?;
        Ok(())
    }

    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.write().stop());
    }

    fn event_fd(&self) -> i32 {
        self.read().event_fd()
    }

    fn drain_events<'py>(&self, py: Python<'py>) -> PyResult<Vec<PyEvent<'py>>> {
        let batch = self.read().drain_events();
        batch.iter().map(|e| events::to_python(py, e)).collect()
    }

    fn udp_addrs(&self) -> Vec<(String, u16)> {
        self.read()
            .udp_addrs()
            .into_iter()
            .map(|a| (a.ip().to_string(), a.port()))
            .collect()
    }

    #[pyo3(signature = (room, identity, offer_sdp, *, video_slots = 0, audio_slots = 0))]
    fn create_peer(
        &self,
        py: Python<'_>,
        room: &str,
        identity: &str,
        offer_sdp: String,
        video_slots: usize,
        audio_slots: usize,
    ) -> PyResult<(u64, String)> {
        let slots = SlotCounts {
            video: video_slots,
            audio: audio_slots,
        };
        let (id, answer) = py
            .detach(|| self.read().create_peer(room, identity, offer_sdp, slots))
            .map_err(Failure)?;
        Ok((id.0, answer))
    }

    fn apply_offer(&self, py: Python<'_>, peer_id: u64, offer_sdp: String) -> PyResult<String> {
        Ok(py
            .detach(|| self.read().apply_offer(PeerId(peer_id), offer_sdp))
            .map_err(Failure)?)
    }

    fn apply_answer(&self, py: Python<'_>, peer_id: u64, answer_sdp: String) -> PyResult<()> {
        py.detach(|| self.read().apply_answer(PeerId(peer_id), answer_sdp))
            .map_err(Failure)?;
        Ok(())
    }

    fn set_track_muted(
        &self,
        py: Python<'_>,
        peer_id: u64,
        track_id: u64,
        muted: bool,
    ) -> PyResult<()> {
        py.detach(|| {
            self.read()
                .set_track_muted(PeerId(peer_id), TrackId(track_id), muted)
        })
        .map_err(Failure)?;
        Ok(())
    }

    #[pyo3(signature = (peer_id, track_ids, *, automatic))]
    fn set_layout(
        &self,
        py: Python<'_>,
        peer_id: u64,
        track_ids: Vec<u64>,
        automatic: bool,
    ) -> PyResult<()> {
        let tracks = track_ids.into_iter().map(TrackId).collect();
        py.detach(|| self.read().set_layout(PeerId(peer_id), tracks, automatic))
            .map_err(Failure)?;
        Ok(())
    }

    fn close_peer(&self, py: Python<'_>, peer_id: u64) -> PyResult<()> {
        py.detach(|| self.read().close_peer(PeerId(peer_id)))
            .map_err(Failure)?;
        Ok(())
    }

    fn peer_packets_in(&self, peer_id: u64) -> Option<u64> {
        self.read().peer_packets_in(PeerId(peer_id))
    }

    fn stats_snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let snap = self.read().snapshot();
        crate::stats::to_python(py, &snap)
    }
}
