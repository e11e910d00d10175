"""Prometheus metrics: engine counters read at scrape time, plus control-plane gauges and the
join-time histogram. One registry per server (tests run several in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# (snapshot key, metric name without _total, help)
_COUNTERS = (
    ("packets_in", "visio_udp_received_packets", "UDP datagrams received by the media engine."),
    ("bytes_in", "visio_udp_received_bytes", "UDP payload bytes received by the media engine."),
    ("packets_out", "visio_udp_sent_packets", "UDP datagrams queued for sending by the engine."),
    ("bytes_out", "visio_udp_sent_bytes", "UDP payload bytes queued for sending by the engine."),
    ("rtp_forwarded", "visio_rtp_forwarded_packets", "RTP packets forwarded to a subscriber."),
    ("stun_responses", "visio_stun_responses", "STUN requests answered from a new address."),
    ("keyframe_requests_in", "visio_keyframe_requests_received",
     "PLI/FIR received from subscribers."),
    ("keyframe_requests_out", "visio_keyframe_requests_sent",
     "Keyframe requests sent to publishers (after throttling)."),
    ("peer_panics", "visio_peer_panics", "Peers dropped because handling them panicked (bugs)."),
    ("events_dropped", "visio_engine_events_dropped",
     "Engine events lost because the event queue was full."),
    ("send_blocked", "visio_udp_send_blocked",
     "Times a shard's socket send buffer was full: the rest of the batch waited for it to drain."),
    ("slot_switches", "visio_slot_switches",
     "Times a receive slot changed source (filled, switched on a keyframe, emptied)."),
)
_GAUGES = (
    ("peers", "visio_engine_peers", "WebRTC peers held by the engine."),
    ("rooms", "visio_engine_rooms", "Rooms with at least one peer in the engine."),
    ("tracks", "visio_engine_tracks", "Published tracks in the engine."),
)


class EngineCollector(Collector):
    """Reads `stats_snapshot()` and the room state at scrape time; nothing per packet."""

    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        control: Callable[[], dict[str, int]],
        evictions: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._control = control
        self._evictions = evictions

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        for key, name, doc in _COUNTERS:
            yield CounterMetricFamily(name, doc, value=float(snap.get(key, 0)))
        drops = CounterMetricFamily(
            "visio_udp_dropped_packets",
            "Datagrams dropped, by reason. peer_rejected: refused from a peer's own address "
            "(SRTP/SRTCP replayed, tampered or for no negotiated stream; STUN/DTLS its stack "
            "refused). unverified_address: held back from, or not sent to, an address that has "
            "not answered our STUN check. rx_queue_overflow: dropped by the kernel, the socket "
            "receive buffer was full. send_buffer_full: too many datagrams waited for a full "
            "send buffer. send_failed: the kernel refused the datagram.",
            labels=["reason"],
        )
        raw_drops = snap.get("drops", {})
        if isinstance(raw_drops, dict):
            for reason, n in sorted(raw_drops.items()):
                drops.add_metric([str(reason)], float(n))
        yield drops
        shards = snap.get("shards", [])
        for key, name, doc in _GAUGES:
            g = GaugeMetricFamily(name, doc, labels=["shard"])
            if isinstance(shards, list):
                for i, shard in enumerate(shards):
                    g.add_metric([str(i)], float(shard.get(key, 0)))
            yield g
        for name, value in sorted(self._control().items()):
            yield GaugeMetricFamily(f"visio_{name}", _CONTROL_HELP.get(name, name), value=value)
        if self._evictions is not None:
            evicted = CounterMetricFamily(
                "visio_connections_evicted",
                "Connections closed to stay within the flood limits, by kind. idle_http: an HTTP "
                "connection with no request in progress (server.max_pending_connections); "
                "unjoined_websocket: a WebSocket that had not joined (signalling.max_unjoined).",
                labels=["kind"],
            )
            for kind, n in sorted(self._evictions().items()):
                evicted.add_metric([kind], float(n))
            yield evicted


_CONTROL_HELP = {
    "rooms": "Rooms held by the signalling server (including empty ones awaiting timeout).",
    "participants": "Participants in rooms, including those in their reconnect grace period.",
    "participants_disconnected": "Participants in their reconnect grace period.",
    "ready": "1 while the server accepts joins, 0 while starting or draining.",
    "http_connections_idle": "HTTP connections open with no request in progress.",
    "websockets_unjoined": "WebSockets upgraded that have not joined yet.",
}


class Metrics:
    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        control: Callable[[], dict[str, int]],
        evictions: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(EngineCollector(snapshot, control, evictions))
        self.join_seconds = Histogram(
            "visio_join_duration_seconds",
            "From a join request to the `joined` reply.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
