//! The `LoadGen` class: argument conversion around `visio_loadgen::LoadGen`, calls that wait
//! on worker threads release the GIL.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use visio_loadgen::{ClientOptions, ClientSnapshot};

use crate::errors::EngineError;

#[pyclass(module = "visio_media._native", frozen)]
pub struct LoadGen {
    inner: std::sync::RwLock<visio_loadgen::LoadGen>,
}

fn to_py(e: visio_loadgen::Error) -> PyErr {
    use visio_loadgen::Error as E;
    let msg = e.to_string();
    match e {
        E::NotFound(_) => PyKeyError::new_err(msg),
        E::NotRunning | E::Timeout => PyRuntimeError::new_err(msg),
        _ => EngineError::new_err(msg),
    }
}

impl LoadGen {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, visio_loadgen::LoadGen> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, visio_loadgen::LoadGen> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn client_dict<'py>(py: Python<'py>, c: &ClientSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("connected", c.connected_at_ns.is_some())?;
    d.set_item("connected_at_ns", c.connected_at_ns)?;
    d.set_item("first_rtp_at_ns", c.first_rtp_at_ns)?;
    d.set_item("sent_rtp", c.sent_rtp)?;
    d.set_item("sent_bytes", c.sent_bytes)?;
    d.set_item("recv_rtp", c.recv_rtp)?;
    d.set_item("recv_bytes", c.recv_bytes)?;
    d.set_item("lost", c.lost)?;
    d.set_item("duplicates", c.duplicates)?;
    d.set_item("keyframes_sent", c.keyframes_sent)?;
    d.set_item("plis_received", c.plis_received)?;
    d.set_item("datagrams_out", c.datagrams_out)?;
    d.set_item("datagram_bytes_out", c.datagram_bytes_out)?;
    d.set_item("datagrams_in", c.datagrams_in)?;
    d.set_item("datagram_bytes_in", c.datagram_bytes_in)?;
    d.set_item("send_failures", c.send_failures)?;
    d.set_item("ice_disconnected", c.ice_disconnected)?;
    d.set_item("foreign_in", c.foreign_in)?;
    // mid → {sender client id (0: untagged): packets}, since the last reset_sources().
    let sources = PyDict::new(py);
    for (mid, sender, packets) in &c.sources {
        let line = match sources.get_item(mid)? {
            Some(line) => line.cast_into::<PyDict>()?,
            None => {
                let line = PyDict::new(py);
                sources.set_item(mid, &line)?;
                line
            }
        };
        line.set_item(sender, packets)?;
    }
    d.set_item("sources", sources)?;
    Ok(d)
}

fn socket_addr(a: &(String, u16)) -> PyResult<SocketAddr> {
    let ip: IpAddr =
        a.0.parse()
            .map_err(|_| PyValueError::new_err(format!("not an IP address: {:?}", a.0)))?;
    Ok(SocketAddr::new(ip, a.1))
}

#[allow(clippy::too_many_arguments)]
fn client_options(
    audio: bool,
    video: bool,
    video_bitrate_bps: u64,
    video_packet_bytes: usize,
    keyframe_interval_s: f64,
    audio_loud: bool,
    dtx: bool,
) -> PyResult<ClientOptions> {
    if !(keyframe_interval_s.is_finite() && keyframe_interval_s > 0.0) {
        return Err(PyValueError::new_err(
            "keyframe_interval_s must be a positive number",
        ));
    }
    if !(100..=1400).contains(&video_packet_bytes) {
        return Err(PyValueError::new_err(
            "video_packet_bytes must be 100..=1400",
        ));
    }
    if !(10_000..=50_000_000).contains(&video_bitrate_bps) {
        return Err(PyValueError::new_err(
            "video_bitrate_bps must be 10000..=50000000",
        ));
    }
    Ok(ClientOptions {
        audio,
        video,
        video_bitrate_bps,
        video_packet_bytes,
        keyframe_interval: Duration::from_secs_f64(keyframe_interval_s),
        audio_loud,
        dtx,
    })
}

#[pymethods]
impl LoadGen {
    #[new]
    #[pyo3(signature = (*, threads, bind_ip))]
    fn new(threads: usize, bind_ip: &str) -> PyResult<Self> {
        let ip: IpAddr = bind_ip.parse().map_err(|_| {
            PyValueError::new_err(format!("bind_ip is not an IP address: {bind_ip:?}"))
        })?;
        let inner = visio_loadgen::LoadGen::new(threads, ip)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(LoadGen {
            inner: std::sync::RwLock::new(inner),
        })
    }

    fn start(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.write().start()).map_err(to_py)
    }

    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.write().stop());
    }

    fn set_sending(&self, on: bool) {
        self.read().set_sending(on);
    }

    #[pyo3(signature = (*, audio, video, video_bitrate_bps = 1_500_000, video_packet_bytes = 1200,
                        keyframe_interval_s = 2.0, audio_loud = true, dtx = false))]
    #[allow(clippy::too_many_arguments)]
    fn add_client(
        &self,
        py: Python<'_>,
        audio: bool,
        video: bool,
        video_bitrate_bps: u64,
        video_packet_bytes: usize,
        keyframe_interval_s: f64,
        audio_loud: bool,
        dtx: bool,
    ) -> PyResult<(u64, String)> {
        let opts = client_options(
            audio,
            video,
            video_bitrate_bps,
            video_packet_bytes,
            keyframe_interval_s,
            audio_loud,
            dtx,
        )?;
        py.detach(|| self.read().add_client(opts)).map_err(to_py)
    }

    /// A raw-mode participant (the relay baseline): plain RTP to `relay`, no handshake.
    #[pyo3(signature = (*, relay, audio, video, video_bitrate_bps = 1_500_000,
                        video_packet_bytes = 1200, keyframe_interval_s = 2.0, audio_loud = true,
                        dtx = false))]
    #[allow(clippy::too_many_arguments)]
    fn add_raw_client(
        &self,
        py: Python<'_>,
        relay: (String, u16),
        audio: bool,
        video: bool,
        video_bitrate_bps: u64,
        video_packet_bytes: usize,
        keyframe_interval_s: f64,
        audio_loud: bool,
        dtx: bool,
    ) -> PyResult<(u64, (String, u16))> {
        let relay = socket_addr(&relay)?;
        let opts = client_options(
            audio,
            video,
            video_bitrate_bps,
            video_packet_bytes,
            keyframe_interval_s,
            audio_loud,
            dtx,
        )?;
        let (id, local) = py
            .detach(|| self.read().add_raw_client(opts, relay))
            .map_err(to_py)?;
        Ok((id, (local.ip().to_string(), local.port())))
    }

    fn apply_answer(&self, py: Python<'_>, client_id: u64, sdp: String) -> PyResult<()> {
        py.detach(|| self.read().apply_answer(client_id, sdp))
            .map_err(to_py)
    }

    fn apply_offer(&self, py: Python<'_>, client_id: u64, sdp: String) -> PyResult<String> {
        py.detach(|| self.read().apply_offer(client_id, sdp))
            .map_err(to_py)
    }

    /// Starts a fresh window for every client's `sources`.
    fn reset_sources(&self, py: Python<'_>) {
        py.detach(|| self.read().reset_sources());
    }

    fn remove_client(&self, client_id: u64) -> PyResult<()> {
        self.read().remove_client(client_id).map_err(to_py)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.read().stats());
        let d = PyDict::new(py);
        d.set_item("now_ns", s.now_ns)?;
        let clients = PyDict::new(py);
        for c in &s.clients {
            clients.set_item(c.id, client_dict(py, c)?)?;
        }
        d.set_item("clients", clients)?;
        let totals = client_dict(py, &s.totals)?;
        totals.del_item("connected")?;
        totals.del_item("connected_at_ns")?;
        totals.del_item("first_rtp_at_ns")?;
        totals.del_item("sources")?;
        totals.set_item("latency_p50_us", s.latency_p50_us)?;
        totals.set_item("latency_p99_us", s.latency_p99_us)?;
        totals.set_item("latency_max_us", s.latency_max_us)?;
        totals.set_item("latency_samples", s.latency_samples)?;
        d.set_item("totals", totals)?;
        Ok(d)
    }
}

/// The raw ceiling: `visio_loadgen::Relay`, a minimal recvmmsg -> sendmmsg UDP relay thread.
#[pyclass(module = "visio_media._native", frozen)]
pub struct Relay {
    inner: std::sync::Mutex<visio_loadgen::Relay>,
}

impl Relay {
    fn lock(&self) -> std::sync::MutexGuard<'_, visio_loadgen::Relay> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Relay {
    /// Binds a socket on `bind_ip` (a free port) and starts the relay thread.
    #[new]
    #[pyo3(signature = (*, bind_ip))]
    fn new(py: Python<'_>, bind_ip: &str) -> PyResult<Self> {
        let ip: IpAddr = bind_ip.parse().map_err(|_| {
            PyValueError::new_err(format!("bind_ip is not an IP address: {bind_ip:?}"))
        })?;
        let inner = py
            .detach(|| visio_loadgen::Relay::start(ip))
            .map_err(to_py)?;
        Ok(Relay {
            inner: std::sync::Mutex::new(inner),
        })
    }

    fn address(&self) -> (String, u16) {
        let a = self.lock().local_addr();
        (a.ip().to_string(), a.port())
    }

    fn thread_id(&self) -> Option<i32> {
        self.lock().thread_id()
    }

    fn set_route(
        &self,
        py: Python<'_>,
        source: (String, u16),
        destinations: Vec<(String, u16)>,
    ) -> PyResult<()> {
        let from = socket_addr(&source)?;
        let to = destinations
            .iter()
            .map(socket_addr)
            .collect::<PyResult<Vec<_>>>()?;
        py.detach(|| self.lock().set_route(from, to)).map_err(to_py)
    }

    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.lock().stop());
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.lock().stats();
        let d = PyDict::new(py);
        d.set_item("datagrams_in", s.datagrams_in)?;
        d.set_item("bytes_in", s.bytes_in)?;
        d.set_item("datagrams_out", s.datagrams_out)?;
        d.set_item("bytes_out", s.bytes_out)?;
        d.set_item("unrouted", s.unrouted)?;
        d.set_item("send_failures", s.send_failures)?;
        d.set_item("recv_batches", s.recv_batches)?;
        Ok(d)
    }
}
