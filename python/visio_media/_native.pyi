"""Typed surface of the Rust extension; checked by `python -m mypy.stubtest visio_media._native`."""

__all__ = ["Engine", "EngineError", "LoadGen", "Relay", "__version__", "inspect_offer"]

from typing import Any, final

__version__: str

class EngineError(Exception):
    """Any failure reported by the Rust engine (bad SDP, unknown peer, wrong state)."""

def inspect_offer(offer_sdp: str) -> list[tuple[str, str | None, str, bool]]:
    """The m-sections of an offer as the engine reads them: (kind, mid, direction, rejected)."""

@final
class Engine:
    """The Rust data plane: N shard threads, each owning one UDP socket and its peers.

    Every method that waits for a shard releases the GIL while it waits.
    """

    def __new__(
        cls,
        *,
        shards: int,
        bind_ip: str,
        announce_ip: str | None,
        port_min: int,
        port_max: int,
        event_queue_capacity: int = 65536,
    ) -> Engine: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def event_fd(self) -> int: ...
    def drain_events(self) -> list[tuple[str, int, dict[str, Any]]]: ...
    def udp_addrs(self) -> list[tuple[str, int]]: ...
    def create_peer(
        self,
        room: str,
        identity: str,
        offer_sdp: str,
        *,
        video_slots: int = 0,
        audio_slots: int = 0,
    ) -> tuple[int, str]: ...
    def apply_offer(self, peer_id: int, offer_sdp: str) -> str: ...
    def apply_answer(self, peer_id: int, answer_sdp: str) -> None: ...
    def set_track_muted(self, peer_id: int, track_id: int, muted: bool) -> None: ...
    def set_layout(self, peer_id: int, track_ids: list[int], *, automatic: bool) -> None: ...
    def close_peer(self, peer_id: int) -> None: ...
    def peer_packets_in(self, peer_id: int) -> int | None: ...
    def stats_snapshot(self) -> dict[str, object]: ...

@final
class LoadGen:
    """The media side of `visio-media load`: simulated participants (client-role str0m peers:
    full ICE agent, controlling; DTLS client; SRTP) in `threads` worker threads, one UDP socket
    per participant on `bind_ip`. Methods that wait for a worker release the GIL."""

    def __new__(cls, *, threads: int, bind_ip: str) -> LoadGen: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def set_sending(self, on: bool) -> None: ...
    def add_client(
        self,
        *,
        audio: bool,
        video: bool,
        video_bitrate_bps: int = 1_500_000,
        video_packet_bytes: int = 1200,
        keyframe_interval_s: float = 2.0,
        audio_loud: bool = True,
        dtx: bool = False,
    ) -> tuple[int, str]: ...
    def add_raw_client(
        self,
        *,
        relay: tuple[str, int],
        audio: bool,
        video: bool,
        video_bitrate_bps: int = 1_500_000,
        video_packet_bytes: int = 1200,
        keyframe_interval_s: float = 2.0,
        audio_loud: bool = True,
        dtx: bool = False,
    ) -> tuple[int, tuple[str, int]]:
        """A raw-mode participant (the relay baseline): the same media as `add_client` in plain
        RTP to `relay`, no handshake. Returns its id and its socket's (ip, port)."""
    def apply_answer(self, client_id: int, sdp: str) -> None: ...
    def apply_offer(self, client_id: int, sdp: str) -> str: ...
    def remove_client(self, client_id: int) -> None: ...
    def reset_sources(self) -> None:
        """Starts a fresh window for every client's `sources` (see `stats`)."""
    def stats(self) -> dict[str, Any]:
        """`{"now_ns", "clients": {client_id: {...}}, "totals": {...}}` (docs/load.md). Each
        client also has `"sources": dict[str, dict[int, int]]`: per receive line (its mid;
        `ssrc-<n>` in raw mode) the sender client ids read from the payloads' tags and the
        packets each sent since the last `reset_sources()`; sender 0 counts packets without a
        sender id (3-byte DTX frames)."""

@final
class Relay:
    """The raw ceiling: a minimal UDP relay thread (recvmmsg -> sendmmsg, no crypto, no
    parsing) forwarding each datagram from a routed source to that source's destinations."""

    def __new__(cls, *, bind_ip: str) -> Relay: ...
    def address(self) -> tuple[str, int]: ...
    def thread_id(self) -> int | None: ...
    def set_route(self, source: tuple[str, int], destinations: list[tuple[str, int]]) -> None: ...
    def stop(self) -> None: ...
    def stats(self) -> dict[str, int]: ...
