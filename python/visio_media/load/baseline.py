"""`visio-media load --baseline relay`: the raw ceiling. The same participants and traffic as a
server run (rooms, publishers, sizes, rates, keyframes, latency stamps) go in plain RTP through a
minimal relay thread inside this process (`_native.Relay`: one UDP socket, recvmmsg -> sendmmsg,
a fixed fan-out table: each publisher to every other participant of its room, as the server's
auto-subscribe does). No server, no signalling, no crypto. The relay's out-pps per core of its
own thread, measured now, is the ceiling a server run is compared with."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

from visio_media._native import LoadGen, Relay
from visio_media.load import probe
from visio_media.load.report import generator_figures

if TYPE_CHECKING:
    from visio_media.load.runner import LoadOptions

# Media pauses at each edge of the counter window until nothing is in flight (the relay's and the
# generator's counts meet, or stop moving: a loss) when they are read: they must then agree
# exactly. At least DRAIN_SECONDS, at most DRAIN_LIMIT_SECONDS (a starved thread may lag).
DRAIN_SECONDS = 0.5
DRAIN_LIMIT_SECONDS = 10.0
DRAIN_POLL_SECONDS = 0.1
PROGRESS_INTERVAL_SECONDS = 1.0

# (name, relay counter, generator counter): the same datagrams counted at both ends.
COMPARISONS = (
    ("udp_packets_to_relay", "datagrams_in", "datagrams_out"),
    ("udp_bytes_to_relay", "bytes_in", "datagram_bytes_out"),
    ("udp_packets_from_relay", "datagrams_out", "datagrams_in"),
    ("udp_bytes_from_relay", "bytes_out", "datagram_bytes_in"),
)


def _rnd(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else round(v, digits)


class RelayBaseline:
    """One baseline run: set up, warm up, counter window with a steady window inside, report."""

    def __init__(self, options: LoadOptions, out: TextIO = sys.stderr) -> None:
        self.o = options
        self.out = out

    def _progress(self, gen: LoadGen, relay: Relay, prev: tuple[float, int, int]) -> None:
        t, sent0, out0 = prev
        dt = time.monotonic() - t
        if dt <= 0:
            return
        tot = gen.stats()["totals"]
        rs = relay.stats()
        print(
            f"\rbaseline relay: out {(tot['sent_rtp'] - sent0) / dt:,.0f} pps  "
            f"relay out {(rs['datagrams_out'] - out0) / dt:,.0f} pps  lost {tot['lost']}   ",
            end="",
            file=self.out,
            flush=True,
        )

    async def _watch(self, gen: LoadGen, relay: Relay, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            prev = (time.monotonic(), gen.stats()["totals"]["sent_rtp"],
                    relay.stats()["datagrams_out"])
            await asyncio.sleep(min(PROGRESS_INTERVAL_SECONDS, left))
            if self.o.progress:
                self._progress(gen, relay, prev)

    async def _drain(self, gen: LoadGen, relay: Relay) -> tuple[dict[str, Any], dict[str, int]]:
        """With media paused: waits until the relay and the generator counted the same datagrams
        both ways (or their counts stopped moving for DRAIN_SECONDS: something was lost), and
        returns (generator totals, relay counters) read then."""
        await asyncio.sleep(DRAIN_SECONDS)
        deadline = time.monotonic() + DRAIN_LIMIT_SECONDS
        last: tuple[int, ...] | None = None
        still_since = time.monotonic()
        while True:
            totals, rs = gen.stats()["totals"], relay.stats()
            now = (totals["datagrams_out"], rs["datagrams_in"], rs["datagrams_out"],
                   totals["datagrams_in"])
            if now[0] == now[1] and now[2] == now[3]:
                return totals, rs
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= DRAIN_SECONDS:
                return totals, rs
            if time.monotonic() >= deadline:
                return totals, rs
            await asyncio.sleep(DRAIN_POLL_SECONDS)

    async def run(self) -> dict[str, Any]:
        o = self.o
        relay = Relay(bind_ip=o.bind_ip)
        gen = LoadGen(threads=o.threads, bind_ip=o.bind_ip)
        try:
            gen.start()
            return await self._run(gen, relay)
        finally:
            gen.stop()
            relay.stop()

    async def _run(self, gen: LoadGen, relay: Relay) -> dict[str, Any]:
        o = self.o
        pid = os.getpid()
        tid = relay.thread_id()
        for _ in range(100):  # the thread stores its id as it starts
            if tid is not None:
                break
            await asyncio.sleep(0.01)
            tid = relay.thread_id()
        # Nobody sends until every route is in place.
        gen.set_sending(False)
        setup_start = time.monotonic()
        rooms: list[list[tuple[tuple[str, int], bool]]] = []
        for _ in range(o.rooms):
            members: list[tuple[tuple[str, int], bool]] = []
            for i in range(o.participants):
                audio, video = i < o.audio_publishers, i < o.video_publishers
                _, local = gen.add_raw_client(
                    relay=relay.address(),
                    audio=audio,
                    video=video,
                    video_bitrate_bps=o.video_bitrate_bps,
                    video_packet_bytes=o.video_packet_bytes,
                    keyframe_interval_s=o.keyframe_interval_s,
                    audio_loud=i < o.loud_speakers,
                    dtx=o.dtx,
                )
                members.append((local, audio or video))
            rooms.append(members)
        routes = 0
        for members in rooms:
            for local, publishes in members:
                if publishes:
                    relay.set_route(local, [m for m, _ in members if m != local])
                    routes += 1
        setup_seconds = time.monotonic() - setup_start
        gen.set_sending(True)
        await self._watch(gen, relay, o.warmup_s)

        # Counter window start: paused and drained, then both sides read.
        gen.set_sending(False)
        start, relay_start = await self._drain(gen, relay)
        gen.set_sending(True)
        steady_start, relay_steady_start = gen.stats()["totals"], relay.stats()
        cpu_start = probe.thread_cpu_sample(pid, tid) if tid is not None else None
        own_start = probe.cpu_sample(pid)
        await self._watch(gen, relay, o.duration_s)
        cpu_end = probe.thread_cpu_sample(pid, tid) if tid is not None else None
        own_end = probe.cpu_sample(pid)
        steady_end, relay_steady_end = gen.stats()["totals"], relay.stats()
        seconds = (
            (cpu_end.at - cpu_start.at) if cpu_start is not None and cpu_end is not None
            else o.duration_s
        )
        # Counter window end.
        gen.set_sending(False)
        end, relay_end = await self._drain(gen, relay)
        final = gen.stats()
        if o.progress:
            print(file=self.out)

        relay_cores = (
            probe.cpu_cores(cpu_start, cpu_end)
            if cpu_start is not None and cpu_end is not None else None
        )
        own_cores = (
            probe.cpu_cores(own_start, own_end)
            if own_start is not None and own_end is not None else None
        )
        generator = generator_figures(
            start=start,
            steady_start=steady_start,
            steady_end=steady_end,
            drained_end=end,
            seconds=seconds,
            totals=end,
            # The generator's process less the relay thread: what the server run's generator
            # figure would be.
            cpu=(own_cores - relay_cores)
            if own_cores is not None and relay_cores is not None else own_cores,
        )
        secs = seconds if seconds > 0 else float("nan")
        out_pps = (relay_steady_end["datagrams_out"] - relay_steady_start["datagrams_out"]) / secs
        in_pps = (relay_steady_end["datagrams_in"] - relay_steady_start["datagrams_in"]) / secs
        batches = relay_end["recv_batches"] - relay_start["recv_batches"]
        relay_figures = {
            "thread_id": tid,
            "routes": routes,
            "cpu_cores": _rnd(relay_cores),
            "cpu_percent_of_core": _rnd(relay_cores * 100, 1) if relay_cores is not None else None,
            "in_pps": _rnd(in_pps, 1),
            "out_pps": _rnd(out_pps, 1),
            "out_pps_per_core": _rnd(out_pps / relay_cores, 1) if relay_cores else None,
            "datagrams_in": relay_end["datagrams_in"] - relay_start["datagrams_in"],
            "datagrams_out": relay_end["datagrams_out"] - relay_start["datagrams_out"],
            "unrouted": relay_end["unrouted"] - relay_start["unrouted"],
            "send_failures": relay_end["send_failures"] - relay_start["send_failures"],
            "datagrams_per_recv_batch": _rnd(
                (relay_end["datagrams_in"] - relay_start["datagrams_in"]) / batches, 2
            ) if batches else None,
        }
        counters = []
        for name, rkey, gkey in COMPARISONS:
            rv = relay_end[rkey] - relay_start[rkey]
            gv = int(end[gkey] - start[gkey])
            counters.append({
                "name": name, "relay_counter": rkey, "generator_counter": gkey,
                "relay": rv, "generator": gv, "equal": rv == gv,
            })
        # Over the whole run too (everything drained: nothing is in flight).
        totals = {
            "generator_datagrams_out": end["datagrams_out"],
            "relay_datagrams_in": relay_end["datagrams_in"],
            "relay_datagrams_out": relay_end["datagrams_out"],
            "generator_datagrams_in": end["datagrams_in"],
            "relay_unrouted": relay_end["unrouted"],
            "generator_foreign_in": end["foreign_in"],
        }
        counters_exact = all(c["equal"] for c in counters) and (
            totals["generator_datagrams_out"] == totals["relay_datagrams_in"]
            and totals["relay_datagrams_out"] == totals["generator_datagrams_in"]
        )
        participants = o.rooms * o.participants
        return {
            "mode": "baseline_relay",
            "options": asdict(o) | {"secret": "<hidden>"},
            "participants": participants,
            "setup": {"clients": len(final["clients"]), "routes": routes,
                      "seconds": _rnd(setup_seconds)},
            "window": {"seconds": _rnd(seconds, 3)},
            "generator": generator,
            "relay": relay_figures,
            "counters": counters,
            "totals": totals,
            "counters_exact": counters_exact,
            "baseline": {
                "kind": "relay",
                "relay_out_pps": relay_figures["out_pps"],
                "relay_cpu_cores": relay_figures["cpu_cores"],
                "relay_out_pps_per_core": relay_figures["out_pps_per_core"],
                "relay_loss_ratio": generator["loss_ratio"],
                "relay_latency_p50_ms": generator["latency_p50_ms"],
                "relay_latency_p99_ms": generator["latency_p99_ms"],
            },
            "ok": counters_exact and len(final["clients"]) == participants,
        }


def _f(v: Any, fmt: str = "{:,.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def format_baseline_summary(r: dict[str, Any]) -> str:
    g, rl, w = r["generator"], r["relay"], r["window"]
    lines = [
        f"visio-media load --baseline relay: {r['participants']} participants, "
        f"window {w['seconds']:.1f} s (plain RTP through a recvmmsg/sendmmsg relay thread, "
        "no server)",
        "",
        f"{'sent':<28}{_f(g['sent_pps'])} pps, {_f(g['sent_mbps'], '{:.2f}')} Mbit/s",
        f"{'received':<28}{_f(g['recv_pps'])} pps, {_f(g['recv_mbps'], '{:.2f}')} Mbit/s",
        f"{'loss':<28}{g['lost']} packets ({g['loss_ratio']:.3%}), "
        f"{g['duplicates']} duplicates",
        f"{'latency p50/p99/max':<28}{_f(g['latency_p50_ms'], '{:.2f}')} / "
        f"{_f(g['latency_p99_ms'], '{:.2f}')} / {_f(g['latency_max_ms'], '{:.2f}')} ms",
        f"{'generator cpu':<28}"
        f"{_f(g['cpu_cores'] * 100 if g['cpu_cores'] is not None else None)} % of one core",
        f"{'relay cpu':<28}{_f(rl['cpu_percent_of_core'])} % of one core",
        f"{'relay out pps per core':<28}{_f(rl['out_pps_per_core'])} "
        f"(out {_f(rl['out_pps'])} pps, {_f(rl['datagrams_per_recv_batch'], '{:.1f}')} "
        "datagrams per recvmmsg)",
        "",
        f"{'counter':<28}{'relay':>14}{'generator':>14}",
    ]
    for c in r["counters"]:
        mark = "" if c["equal"] else "  DIFFER"
        lines.append(f"{c['name']:<28}{c['relay']:>14,}{c['generator']:>14,}{mark}")
    lines.append("")
    lines.append("result: " + ("ok" if r["ok"] else "FAILED (counts differ)"))
    return "\n".join(lines)


def attach_baseline(report: dict[str, Any], baseline: dict[str, Any]) -> None:
    """Puts the baseline's figures and the ratio in a server run's report."""
    b = dict(baseline["baseline"])
    server = report["server"].get("out_pps_per_core")
    relay = b.get("relay_out_pps_per_core")
    b["server_out_pps_per_core"] = server
    b["ratio"] = _rnd(server / relay, 4) if server and relay else None
    b["ok"] = baseline["ok"]
    b["counters_exact"] = baseline["counters_exact"]
    report["baseline"] = b

