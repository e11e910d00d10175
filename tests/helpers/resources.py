"""Process resource snapshots (threads, file descriptors) for leak checks.

Native threads are read from /proc/self/task, independent of ``threading.enumerate()``: the
engine's shard threads are Rust threads that Python's threading module never sees.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "?"


def thread_table() -> dict[int, str]:
    """Every OS thread of this process: tid -> comm (thread name, at most 15 chars)."""
    table = {}
    for name in os.listdir("/proc/self/task"):
        tid = int(name)
        table[tid] = _read(f"/proc/self/task/{tid}/comm")
    return table


def python_thread_ids() -> set[int]:
    return {t.native_id for t in threading.enumerate() if t.native_id is not None}


def native_only_threads() -> dict[int, str]:
    """Threads that Python's ``threading`` does not know about (Rust, libvpx, ffmpeg...)."""
    py = python_thread_ids()
    return {tid: comm for tid, comm in thread_table().items() if tid not in py}


def fd_table() -> dict[int, str]:
    """Open file descriptors: fd -> readlink target (``socket:[inode]``, ``anon_inode:[...]``)."""
    table = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            table[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the fd used by listdir itself, or closed meanwhile
            continue
    return table


@dataclass
class Snapshot:
    threads: dict[int, str]
    native_threads: dict[int, str]
    fds: dict[int, str]

    @classmethod
    def take(cls) -> Snapshot:
        return cls(threads=thread_table(), native_threads=native_only_threads(), fds=fd_table())


def new_threads(before: Snapshot, after: Snapshot) -> dict[int, str]:
    return {tid: comm for tid, comm in after.native_threads.items() if tid not in before.threads}


def new_fds(before: Snapshot, after: Snapshot) -> dict[int, str]:
    return {fd: t for fd, t in after.fds.items() if before.fds.get(fd) != t}


def still_open(fds: dict[int, str]) -> dict[int, str]:
    """Which of ``fds`` still refer to the same object (same fd number and same target)."""
    now = fd_table()
    return {fd: t for fd, t in fds.items() if now.get(fd) == t}


def still_running(tids: dict[int, str]) -> dict[int, str]:
    now = thread_table()
    return {tid: comm for tid, comm in tids.items() if tid in now}
