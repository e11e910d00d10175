"""The summary of a load run: figures computed from the counters of both sides, as a JSON-able
dict, and the human-readable table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visio_media.load.probe import CpuSample, cpu_cores

if TYPE_CHECKING:
    from visio_media.load.runner import Participant

# Server and generator counters must agree within this relative difference.
AGREEMENT = 0.01

# (name, server counter, generator counter): the server's count and the generator's count of the
# same datagrams, over the same window.
COMPARISONS = (
    ("udp_packets_to_server", "visio_udp_received_packets", "datagrams_out"),
    ("udp_bytes_to_server", "visio_udp_received_bytes", "datagram_bytes_out"),
    ("udp_packets_from_server", "visio_udp_sent_packets", "datagrams_in"),
    ("udp_bytes_from_server", "visio_udp_sent_bytes", "datagram_bytes_in"),
    ("rtp_forwarded_vs_received", "visio_rtp_forwarded_packets", "recv_rtp"),
)


@dataclass
class Window:
    """The measured window. `start` and `drained_end` are read with media paused and drained,
    each as the midpoint of two generator readings around one scrape of the server's counters
    (the comparison with the server, and loss); `steady_start`/`steady_end` bound the steady
    load of `seconds` (rates, CPU)."""

    seconds: float
    start: dict[str, float]
    steady_start: dict[str, Any]
    steady_end: dict[str, Any]
    drained_end: dict[str, float]
    server_start: dict[str, float] | None
    server_end: dict[str, float] | None
    server_steady_start: dict[str, float] | None
    server_steady_end: dict[str, float] | None
    bracket_seconds: float
    cpu_start: CpuSample | None
    cpu_end: CpuSample | None
    # The generator's own process (signalling and media threads).
    own_cpu_start: CpuSample | None = None
    own_cpu_end: CpuSample | None = None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _rnd(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else round(v, digits)


def generator_figures(
    *,
    start: dict[str, float],
    steady_start: dict[str, Any],
    steady_end: dict[str, Any],
    drained_end: dict[str, float],
    seconds: float,
    totals: dict[str, Any],
    cpu: float | None,
) -> dict[str, Any]:
    """The generator's figures: rates over the steady window (`steady_start`..`steady_end`,
    `seconds` long), loss and counts over the counter window (`start`..`drained_end`, read with
    media paused and drained), latency over the run (`totals`), CPU `cpu` (cores)."""
    s, d = start, drained_end
    b, e = steady_start, steady_end
    secs = seconds if seconds > 0 else float("nan")
    sent = e["sent_rtp"] - b["sent_rtp"]
    recv = e["recv_rtp"] - b["recv_rtp"]
    lost = max(0.0, d["lost"] - s["lost"])
    received_drained = d["recv_rtp"] - s["recv_rtp"]
    return {
        "sent_rtp": int(sent),
        "recv_rtp": int(recv),
        "sent_pps": _rnd(sent / secs, 1),
        "recv_pps": _rnd(recv / secs, 1),
        "sent_mbps": _rnd((e["datagram_bytes_out"] - b["datagram_bytes_out"]) * 8 / secs / 1e6, 3),
        "recv_mbps": _rnd((e["datagram_bytes_in"] - b["datagram_bytes_in"]) * 8 / secs / 1e6, 3),
        "lost": int(lost),
        "loss_ratio": _rnd(lost / (received_drained + lost), 6) if received_drained + lost else 0.0,
        "duplicates": int(d["duplicates"] - s["duplicates"]),
        "keyframes_sent": int(d["keyframes_sent"] - s["keyframes_sent"]),
        "plis_received": int(d["plis_received"] - s["plis_received"]),
        "send_failures": int(d["send_failures"] - s["send_failures"]),
        "latency_p50_ms": _ms(totals["latency_p50_us"]),
        "latency_p99_ms": _ms(totals["latency_p99_us"]),
        "latency_max_ms": _ms(totals["latency_max_us"]),
        "latency_samples": totals["latency_samples"],
        "cpu_cores": _rnd(cpu),
    }


def build_report(
    *,
    options: dict[str, Any],
    participants: list[Participant],
    final: dict[str, Any],
    window: Window,
    server_pid: int | None,
) -> dict[str, Any]:
    clients: dict[int, dict[str, Any]] = final["clients"]
    joined = [p for p in participants if p.answered_ns is not None]
    failures: dict[str, int] = {}
    for p in participants:
        if p.failure is not None:
            failures[p.failure] = failures.get(p.failure, 0) + 1
    join_times = [
        (p.joined_ns - p.started_ns) / 1e9 for p in participants if p.joined_ns is not None
    ]
    ready_times = [(p.answered_ns - p.started_ns) / 1e9 for p in joined if p.answered_ns]
    first_media: list[float] = []
    connected = 0
    for p in joined:
        c = clients.get(p.client_id) if p.client_id is not None else None
        if c is None:
            continue
        connected += 1 if c["connected"] else 0
        if c["first_rtp_at_ns"] is not None and p.joined_ns is not None:
            first_media.append((c["first_rtp_at_ns"] - p.joined_ns) / 1e9)
    signalling_errors: dict[str, int] = {}
    for p in participants:
        for code, n in p.errors.items():
            signalling_errors[code] = signalling_errors.get(code, 0) + n

    s, d = window.start, window.drained_end
    secs = window.seconds if window.seconds > 0 else float("nan")
    own = (
        cpu_cores(window.own_cpu_start, window.own_cpu_end)
        if window.own_cpu_start is not None and window.own_cpu_end is not None
        else None
    )
    generator = generator_figures(
        start=s,
        steady_start=window.steady_start,
        steady_end=window.steady_end,
        drained_end=d,
        seconds=window.seconds,
        totals=final["totals"],
        cpu=own,
    )

    server: dict[str, Any] = {"pid": server_pid}
    cores = None
    if window.cpu_start is not None and window.cpu_end is not None:
        cores = cpu_cores(window.cpu_start, window.cpu_end)
        server["rss_bytes"] = window.cpu_end.rss_bytes
    else:
        server["rss_bytes"] = None
    server["cpu_cores"] = _rnd(cores)
    server["cpu_percent_of_core"] = _rnd(cores * 100, 1) if cores is not None else None
    out_pps = None
    if window.server_steady_start is not None and window.server_steady_end is not None:
        key = "visio_udp_sent_packets"
        out_pps = (
            window.server_steady_end.get(key, 0) - window.server_steady_start.get(key, 0)
        ) / secs
    server["out_pps"] = _rnd(out_pps, 1)
    server["out_pps_per_core"] = (
        _rnd(out_pps / cores, 1) if out_pps is not None and cores else None
    )

    counters: list[dict[str, Any]] = []
    if window.server_start is not None and window.server_end is not None:
        for name, skey, gkey in COMPARISONS:
            sv = window.server_end.get(skey, 0.0) - window.server_start.get(skey, 0.0)
            gv = d[gkey] - s[gkey]
            diff = abs(sv - gv) / max(sv, gv) if max(sv, gv) > 0 else 0.0
            counters.append(
                {
                    "name": name,
                    "server_metric": skey,
                    "generator_counter": gkey,
                    "server": int(sv),
                    "generator": round(gv, 1),
                    "relative_difference": round(diff, 6),
                    "agree": diff <= AGREEMENT,
                }
            )
    counters_agree = bool(counters) and all(c["agree"] for c in counters)

    report: dict[str, Any] = {
        "options": options,
        "participants": len(participants),
        "joins": {
            "attempted": len(participants),
            "succeeded": len(joined),
            "failed": len(participants) - len(joined),
            "failures": failures,
            "join_time_p50_s": _rnd(percentile(join_times, 0.5)),
            "join_time_p95_s": _rnd(percentile(join_times, 0.95)),
            "join_time_max_s": _rnd(max(join_times) if join_times else None),
            "ready_time_p50_s": _rnd(percentile(ready_times, 0.5)),
            "connected": connected,
            "disconnected": sum(1 for p in participants if p.disconnected),
            "signalling_errors": signalling_errors,
        },
        "first_media": {
            "participants": len(first_media),
            "p50_s": _rnd(percentile(first_media, 0.5)),
            "p95_s": _rnd(percentile(first_media, 0.95)),
        },
        "window": {
            "seconds": _rnd(window.seconds, 3),
            "edge_uncertainty_seconds": _rnd(window.bracket_seconds, 6),
        },
        "generator": generator,
        "server": server,
        "counters": counters,
        "counters_agree": counters_agree,
    }
    report["ok"] = report["joins"]["failed"] == 0 and counters_agree
    return report


def _ms(us: int | None) -> float | None:
    return None if us is None else round(us / 1000, 3)


def _f(v: Any, fmt: str = "{:,.1f}", none: str = "-") -> str:
    return none if v is None else fmt.format(v)


def format_summary(r: dict[str, Any]) -> str:
    """The human-readable table."""
    j, fm, g, sv, w = r["joins"], r["first_media"], r["generator"], r["server"], r["window"]
    lines = [
        f"visio-media load: {r['participants']} participants, "
        f"window {w['seconds']:.1f} s",
        "",
        f"{'joins':<28}{j['succeeded']}/{j['attempted']} ok, {j['failed']} failed"
        + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(j['failures'].items()))})"
           if j["failures"] else ""),
        f"{'join time p50/p95/max':<28}{_f(j['join_time_p50_s'], '{:.3f}')} / "
        f"{_f(j['join_time_p95_s'], '{:.3f}')} / {_f(j['join_time_max_s'], '{:.3f}')} s",
        f"{'join -> first media p50/p95':<28}{_f(fm['p50_s'], '{:.3f}')} / "
        f"{_f(fm['p95_s'], '{:.3f}')} s ({fm['participants']} participants)",
        f"{'sent':<28}{_f(g['sent_pps'])} pps, {_f(g['sent_mbps'], '{:.2f}')} Mbit/s",
        f"{'received':<28}{_f(g['recv_pps'])} pps, {_f(g['recv_mbps'], '{:.2f}')} Mbit/s",
        f"{'loss':<28}{g['lost']} packets ({g['loss_ratio']:.3%}), "
        f"{g['duplicates']} duplicates",
        f"{'latency p50/p99/max':<28}{_f(g['latency_p50_ms'], '{:.2f}')} / "
        f"{_f(g['latency_p99_ms'], '{:.2f}')} / {_f(g['latency_max_ms'], '{:.2f}')} ms",
        f"{'generator cpu':<28}{_f(g['cpu_cores'] * 100 if g['cpu_cores'] is not None else None)}"
        " % of one core",
        f"{'server cpu':<28}{_f(sv['cpu_percent_of_core'])} % of one core "
        f"(pid {sv['pid'] if sv['pid'] is not None else '?'})",
        f"{'server rss':<28}{_f(sv['rss_bytes'] / 2**20 if sv['rss_bytes'] else None)} MiB",
        f"{'server out pps per core':<28}{_f(sv['out_pps_per_core'])} "
        f"(out {_f(sv['out_pps'])} pps)",
        "",
        f"{'counter':<28}{'server':>14}{'generator':>14}{'diff':>10}",
    ]
    for c in r["counters"]:
        mark = "" if c["agree"] else "  DISAGREE"
        lines.append(
            f"{c['name']:<28}{c['server']:>14,}{c['generator']:>14,.0f}"
            f"{c['relative_difference']:>10.3%}{mark}"
        )
    if not r["counters"]:
        lines.append("(the server's /metrics could not be read)")
    if "slots" in r:
        sl = r["slots"]
        lines.append("")
        lines.append(
            f"{'server offer bytes min/max':<28}{_f(sl['server_offer_bytes_min'], '{:,}')} / "
            f"{_f(sl['server_offer_bytes_max'], '{:,}')} "
            f"({sl['participants_with_offer']} participants)"
        )
        lines.append(
            f"{'slots by source':<28}{sl['slots_checked']} checked, {sl['slots_filled']} filled, "
            f"{sl['mismatches']} wrong, {sl['silent_slots']} silent, "
            f"{sl['changed_in_window']} changed in the window"
        )
        lines.extend(f"  {e}" for e in sl["examples"])
    if "baseline" in r:
        lines.append("")
        lines.append(format_ratio(r["baseline"]))
    lines.append("")
    lines.append(
        "result: "
        + ("ok" if r["ok"] else "FAILED (joins failed, counters disagree or a slot is wrong)")
    )
    return "\n".join(lines)


def format_ratio(b: dict[str, Any]) -> str:
    if b.get("ratio") is None:
        return f"{'raw ceiling':<28}- (the ratio could not be computed)"
    return (
        f"{'raw ceiling':<28}{b['ratio']:.1%} of the raw relay's out pps per core, "
        f"measured now (server {_f(b['server_out_pps_per_core'])}, "
        f"relay {_f(b['relay_out_pps_per_core'])})"
    )
