"""Measured joiners in a process of their own: `python -m visio_media.load.joiner`, driven over
its stdin/stdout (one JSON object a line) by `JoinerProcess`.

A join is measured from sending `join` to answering the server's slot offer. In the process
that also holds the crowd (every other participant of the room), that time includes the
crowd's work: the load generator's media thread, busy receiving for everyone, serves the
joiner's `add_client` / `apply_offer` calls between packets, and the asyncio loop reads every
crowd socket's frames. Here the joiners have their own generator and loop, so a join time is
the server's (and the machine's), not the harness's. The joiners stay in the room, served (the
server's offers answered, media received), until the process is closed. Before it answers
`ready`, the child joins once in a room of its own (`PREFIX-warmup`) and leaves: the first join
of a fresh process is tens of ms slower (imports, connections, the generator's thread).

Protocol (parent -> child, then child -> parent, one line each):
- first line: the `LoadOptions` fields (JSON); the child answers `{"ready": true}`;
- `{"join": n, "concurrency": c}` -> `{"joined": [participant, ...]}` (`join_more`, identities
  `PREFIX-0-m<i>`);
- `{"snapshot": true}` -> `{"participants": [...], "clients": {identity: generator stats}}`;
- end of input: the joiners leave, the child exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sys
from typing import Any

from visio_media.load.runner import LoadOptions, LoadRun, Participant

log = logging.getLogger(__name__)

# Timeline and outcome fields of a Participant that cross the pipe (the rest stays here).
FIELDS = (
    "room", "identity", "audio", "video", "loud", "client_id", "started_ns", "join_sent_ns",
    "joined_ns", "answered_ns", "slots_answered_ns", "first_offer_bytes", "first_offer_sdp",
    "keep_offer", "close_code", "failure", "disconnected", "server_offers",
    "server_offer_bytes", "video_slots", "audio_slots", "errors",
)
READY_SECONDS = 30.0
# A reply to `join` comes within the joins' own limits (runner.JOIN_TIMEOUT_SECONDS x 2 each).
REPLY_SECONDS = 300.0


class JoinerError(Exception):
    """The joiner process failed or broke the protocol."""


def to_wire(p: Participant) -> dict[str, Any]:
    d = {k: getattr(p, k) for k in FIELDS}
    if p.ws is not None and p.ws.closed and d["close_code"] is None:
        d["close_code"] = p.ws.close_code
        d["disconnected"] = True
    return d


def from_wire(d: dict[str, Any]) -> Participant:
    return Participant(**{k: d[k] for k in FIELDS if k in d})


class JoinerProcess:
    """The child process (see the module doc). `async with JoinerProcess(options) as j:`
    starts it; `await j.join(n)` joins n measured participants there; on exit they leave and
    the process ends (killed if it does not within 10 s)."""

    def __init__(self, options: LoadOptions) -> None:
        self.options = options
        self._proc: asyncio.subprocess.Process | None = None
        self.count = 0

    async def __aenter__(self) -> JoinerProcess:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "visio_media.load.joiner",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            limit=1 << 24,
        )
        options = dataclasses.asdict(self.options) | {"participants": 0, "progress": False}
        reply = await self._call(options, READY_SECONDS)
        if reply.get("ready") is not True:
            raise JoinerError(f"unexpected first reply: {reply}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()  # the process this object started, by its handle
            await proc.wait()

    async def _call(self, message: dict[str, Any], limit: float) -> dict[str, Any]:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise JoinerError("not started")
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        await proc.stdin.drain()
        async with asyncio.timeout(limit):
            line = await proc.stdout.readline()
        if not line:
            raise JoinerError(f"the joiner process exited ({await proc.wait()})")
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise JoinerError(f"unexpected reply: {line[:200]!r}")
        return reply

    async def join(self, n: int, *, concurrency: int = 1) -> list[Participant]:
        """Joins `n` receive-only participants in the child (`join_more`), returns them as they
        were when their joins ended (timeline, failure, first offer)."""
        reply = await self._call({"join": n, "concurrency": concurrency}, REPLY_SECONDS)
        self.count += n
        return [from_wire(d) for d in reply["joined"]]

    async def snapshot(self) -> tuple[list[Participant], dict[str, dict[str, Any]]]:
        """Every joiner now (`close_code`, `disconnected`, offers...), and its generator
        client's stats by identity."""
        reply = await self._call({"snapshot": True}, READY_SECONDS)
        return [from_wire(d) for d in reply["participants"]], reply["clients"]


async def _serve(run: LoadRun, lines: asyncio.StreamReader) -> None:
    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"ready": True})
    while line := await lines.readline():
        msg = json.loads(line)
        if "join" in msg:
            added = await run.join_more(int(msg["join"]), concurrency=int(msg["concurrency"]),
                                        tag="m")
            reply({"joined": [to_wire(p) for p in added]})
        elif "snapshot" in msg:
            clients = run.gen.stats()["clients"]
            reply({
                "participants": [to_wire(p) for p in run.participants],
                "clients": {p.identity: clients[p.client_id] for p in run.participants
                            if p.client_id is not None and p.client_id in clients},
            })
        else:
            raise JoinerError(f"unknown command: {line[:200]!r}")


async def _main() -> None:
    loop = asyncio.get_running_loop()
    lines = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), sys.stdin)
    first = await lines.readline()
    if not first:
        return
    options = LoadOptions(**json.loads(first))
    run = LoadRun(options)
    async with run.connected():
        # A first join in a room of its own, then gone: this process's first join (imports,
        # connection pool, generator thread) costs tens of ms that no measured join should.
        for p in await run.join_more(1, tag="w", room=f"{options.room_prefix}-warmup"):
            if p.failure is not None:
                raise JoinerError(f"the warm-up join failed: {p.failure}")
            await run.leave(p)
        await _serve(run, lines)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())


if __name__ == "__main__":
    main()
