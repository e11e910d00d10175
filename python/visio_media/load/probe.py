"""What the generator reads about the server under test: its process (CPU, RSS, found from the
listening port when no pid is given) and its own Prometheus counters."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import aiohttp

# The server's counters the generator compares with its own (name without `_total`).
SERVER_COUNTERS = (
    "visio_udp_received_packets",
    "visio_udp_received_bytes",
    "visio_udp_sent_packets",
    "visio_udp_sent_bytes",
    "visio_rtp_forwarded_packets",
)


@dataclass(frozen=True)
class CpuSample:
    """Process CPU time (user + system, seconds) at a CLOCK_MONOTONIC instant."""

    at: float
    cpu_seconds: float
    rss_bytes: int


def find_listening_pid(port: int) -> int | None:
    """The pid of the process holding a TCP socket listening on `port` (any local address),
    from /proc/net/tcp{,6} and /proc/*/fd. None if not found or not visible to us."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) < 10:
                        continue
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{inode}]")
        except OSError:
            continue
    if not inodes:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                    return int(entry)
        except OSError:
            continue
    return None


def cpu_sample(pid: int) -> CpuSample | None:
    """utime + stime and RSS of `pid` from /proc/<pid>/stat; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            raw = f.read()
    except OSError:
        return None
    at = time.monotonic()
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    rest = raw[raw.rfind(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    utime, stime, rss_pages = int(rest[11]), int(rest[12]), int(rest[21])
    return CpuSample(at, (utime + stime) / ticks, rss_pages * os.sysconf("SC_PAGE_SIZE"))


def cpu_cores(a: CpuSample, b: CpuSample) -> float:
    """Cores used between two samples (1.0 = one core fully busy)."""
    wall = b.at - a.at
    return (b.cpu_seconds - a.cpu_seconds) / wall if wall > 0 else 0.0


def parse_counters(text: str) -> dict[str, float]:
    """The unlabelled `*_total` samples of a Prometheus text exposition, by name without
    `_total`."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "{" in line:
            continue
        parts = line.split()
        if len(parts) < 2 or not parts[0].endswith("_total"):
            continue
        try:
            out[parts[0][: -len("_total")]] = float(parts[1])
        except ValueError:
            continue
    return out


def parse_samples(text: str) -> dict[str, float]:
    """Every unlabelled sample (counters with their `_total`, gauges) of a Prometheus text
    exposition, by full name."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "{" in line:
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        try:
            out[parts[0]] = float(parts[1])
        except ValueError:
            continue
    return out


async def scrape_samples(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The server's unlabelled samples now (`parse_samples`). Raises aiohttp.ClientError /
    TimeoutError on failure."""
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        resp.raise_for_status()
        return parse_samples(await resp.text())


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The server's counters now. Raises aiohttp.ClientError / TimeoutError on failure."""
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        resp.raise_for_status()
        return parse_counters(await resp.text())


def thread_cpu_sample(pid: int, tid: int) -> CpuSample | None:
    """CPU time of one thread of `pid`, in nanoseconds, from /proc/<pid>/task/<tid>/schedstat
    (its first field: time spent on a CPU; /proc/<pid>/stat counts clock ticks of 10 ms, too
    coarse for a mostly idle thread); RSS of the process. None if not readable."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
            raw = f.read()
    except OSError:
        return None
    at = time.monotonic()
    whole = cpu_sample(pid)
    try:
        ns = int(raw.split()[0])
    except (IndexError, ValueError):
        return None
    return CpuSample(at, ns / 1e9, whole.rss_bytes if whole is not None else 0)
