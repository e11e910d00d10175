"""One load run: join the simulated participants (paced), warm up, measure a steady window,
compare with the server's counters, leave."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import aiohttp

from visio_media._native import EngineError, LoadGen
from visio_media.auth import mint_token
from visio_media.load import probe
from visio_media.load.baseline import RelayBaseline, attach_baseline, format_baseline_summary
from visio_media.load.report import Window, build_report, format_summary
from visio_media.load.slots import SlotBook, SlotCheck

log = logging.getLogger(__name__)

JOIN_TIMEOUT_SECONDS = 15.0
# After the window, media pauses this long so that packets in flight are counted on both sides.
DRAIN_SECONDS = 0.5
PROGRESS_INTERVAL_SECONDS = 1.0


@dataclass
class LoadOptions:
    url: str
    secret: str
    rooms: int = 1
    participants: int = 10
    audio_publishers: int = 2
    video_publishers: int = 2
    loud_speakers: int = 1
    dtx: bool = False
    video_bitrate_bps: int = 1_500_000
    video_packet_bytes: int = 1200
    keyframe_interval_s: float = 2.0
    join_rate: float = 20.0
    warmup_s: float = 3.0
    duration_s: float = 10.0
    threads: int = 1
    bind_ip: str = "127.0.0.1"
    room_prefix: str = "load"
    server_pid: int | None = None
    metrics_url: str | None = None
    progress: bool = True
    # "relay": run the scenario through the raw relay instead of a server (no server needed).
    baseline: str | None = None
    # After a server run, run the relay baseline too and report the ratio.
    with_baseline: bool = False
    # Receive slots asked in `join` (None: the server's defaults).
    video_slots: int | None = None
    audio_slots: int | None = None
    # Once everyone has joined, each participant sends a `layout` of this many tiles: the video
    # publishers of its room but itself, starting at its own index (0: no layout, automatic).
    layout_tiles: int = 0
    # Largest frame a participant's WebSocket accepts from the server; a larger one closes it
    # with 1009, as the server does with ours (its `signalling.max_message_bytes` is the limit a
    # client may apply both ways: protocol.md, "Frame sizes").
    max_frame_bytes: int = 1 << 22

    def metrics(self) -> str:
        if self.metrics_url:
            return self.metrics_url
        u = urllib.parse.urlsplit(self.url)
        scheme = "https" if u.scheme == "wss" else "http"
        return urllib.parse.urlunsplit((scheme, u.netloc, "/metrics", "", ""))

    def port(self) -> int | None:
        u = urllib.parse.urlsplit(self.url)
        return u.port or (443 if u.scheme == "wss" else 80)


@dataclass
class Participant:
    room: str
    identity: str
    audio: bool
    video: bool
    loud: bool
    client_id: int | None = None
    started_ns: int = 0
    # When `join` was sent, and when the answer to the server's first offer (the receive slots)
    # was sent: from then on the participant can receive. Their difference is its join time.
    join_sent_ns: int | None = None
    joined_ns: int | None = None
    answered_ns: int | None = None
    slots_answered_ns: int | None = None
    # Size (bytes) of the server's first offer (its slot lines plus the participant's own).
    first_offer_bytes: int | None = None
    # That offer itself (kept for participants added by join_more only).
    first_offer_sdp: str | None = None
    # Kept by join_more: the participant's own signalling timeline is in the *_ns fields.
    keep_offer: bool = False
    # The WebSocket's close code once it closed (None while open).
    close_code: int | None = None
    failure: str | None = None
    disconnected: bool = False
    ws: aiohttp.ClientWebSocketResponse | None = None
    server_offers: int = 0
    # Size (bytes) of the largest offer the server sent (its slot lines).
    server_offer_bytes: int | None = None
    # Slot counts granted in `joined`.
    video_slots: int | None = None
    audio_slots: int | None = None
    # The tiles of the `layout` it sent (identities), if any.
    layout: list[str] = field(default_factory=list)
    # What the `slots` frames say: mid -> identity (kept up to date until the participant leaves).
    slots: SlotBook = field(default_factory=SlotBook)
    # At the window's end: `slots` as it was then, and the packets received over the window,
    # mid -> {sender client id (0: untagged): packets} (the generator's).
    window_slots: SlotBook = field(default_factory=SlotBook)
    received: dict[str, dict[int, int]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class _JoinFailed(Exception):
    pass


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        log.warning("a frame from the server is not JSON")
        return None


class LoadRun:
    def __init__(self, options: LoadOptions, out: TextIO = sys.stderr) -> None:
        self.o = options
        self.out = out
        self.gen = LoadGen(threads=options.threads, bind_ip=options.bind_ip)
        self.participants: list[Participant] = []
        for r in range(options.rooms):
            room = f"{options.room_prefix}-{r}"
            for i in range(options.participants):
                self.participants.append(
                    Participant(
                        room=room,
                        identity=f"{room}-p{i}",
                        audio=i < options.audio_publishers,
                        video=i < options.video_publishers,
                        loud=i < options.loud_speakers,
                    )
                )
        # Generator client id -> participant (set when its media client is created).
        self.by_client: dict[int, Participant] = {}
        # When the generator's sources were last reset (the window of `received`).
        self.sources_since_ns: int | None = None
        self.session: aiohttp.ClientSession | None = None
        self.server_pid: int | None = options.server_pid
        # Participants whose join succeeded or failed; the event fires when all have.
        self._settled = 0
        self._all_settled = asyncio.Event()
        # join_more(): identity -> set once its join failed, its slot offer was answered, or its
        # socket closed; and the task group that serves the participants it added.
        self._ready: dict[str, asyncio.Event] = {}
        self._tg: asyncio.TaskGroup | None = None

    # ---- signalling per participant -----------------------------------------------------

    async def _next(self, p: Participant, want: set[str]) -> dict[str, Any]:
        """The next frame of a type in `want`; server offers meanwhile are ignored (glare:
        a fresh one follows our exchange); an error frame fails the join."""
        ws = p.ws
        if ws is None:
            raise _JoinFailed("not connected")
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise _JoinFailed(f"closed ({ws.close_code})")
            data = _parse(msg.data)
            if not isinstance(data, dict):
                continue
            kind = data.get("type")
            if kind in want:
                return data
            if kind == "error":
                raise _JoinFailed(f"error:{data.get('code')}")
            if kind == "slots":
                self._on_slots(p, data)

    async def _join(self, p: Participant) -> None:
        if self.session is None:
            raise RuntimeError("no HTTP session")
        token = mint_token(self.o.secret, identity=p.identity, room=p.room)
        p.started_ns = time.monotonic_ns()
        p.ws = await self.session.ws_connect(
            self.o.url, heartbeat=None, max_msg_size=self.o.max_frame_bytes
        )
        join: dict[str, Any] = {"type": "join", "token": token, "id": "join"}
        if self.o.video_slots is not None:
            join["video_slots"] = self.o.video_slots
        if self.o.audio_slots is not None:
            join["audio_slots"] = self.o.audio_slots
        p.join_sent_ns = time.monotonic_ns()
        await p.ws.send_json(join)
        joined = await self._next(p, {"joined"})
        p.joined_ns = time.monotonic_ns()
        for kind in ("video_slots", "audio_slots"):
            if isinstance(n := joined.get(kind), int):
                setattr(p, kind, n)
        client_id, offer = self.gen.add_client(
            audio=p.audio,
            video=p.video,
            video_bitrate_bps=self.o.video_bitrate_bps,
            video_packet_bytes=self.o.video_packet_bytes,
            keyframe_interval_s=self.o.keyframe_interval_s,
            audio_loud=p.loud,
            dtx=self.o.dtx,
        )
        p.client_id = client_id
        self.by_client[client_id] = p
        await p.ws.send_json({"type": "offer", "sdp": offer, "id": "publish"})
        answer = await self._next(p, {"answer"})
        sdp = answer.get("sdp")
        if not isinstance(sdp, str):
            raise _JoinFailed("answer without sdp")
        try:
            self.gen.apply_answer(client_id, sdp)
        except EngineError as e:
            raise _JoinFailed(f"bad_answer: {e}") from e
        p.answered_ns = time.monotonic_ns()

    async def _serve(self, p: Participant) -> None:
        """After the join: answer the server's offers until the socket closes."""
        ws = p.ws
        if ws is None or p.client_id is None:
            return
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = _parse(msg.data)
            if not isinstance(data, dict):
                continue
            kind = data.get("type")
            if kind == "offer" and isinstance(data.get("sdp"), str):
                sdp = data["sdp"]
                try:
                    answer = self.gen.apply_offer(p.client_id, sdp)
                except EngineError as e:
                    p.error(f"offer_refused:{str(e)[:40]}")
                    continue
                p.server_offers += 1
                size = len(sdp.encode())
                p.server_offer_bytes = max(p.server_offer_bytes or 0, size)
                await ws.send_json({"type": "answer", "sdp": answer})
                if p.slots_answered_ns is None:
                    p.slots_answered_ns = time.monotonic_ns()
                    p.first_offer_bytes = size
                    if p.keep_offer:
                        p.first_offer_sdp = sdp
                    self._settle(p)
            elif kind == "slots":
                self._on_slots(p, data)
            elif kind == "error":
                p.error(f"error:{data.get('code')}")
            elif kind == "left":
                break
        p.close_code = ws.close_code
        if not self._leaving:
            p.disconnected = True
        self._settle(p)

    async def _send_layouts(self) -> None:
        """Each joined participant asks for `layout_tiles` videos: the video publishers of its
        room but itself, in a rotation that starts at its own index."""
        for i, p in enumerate(self.participants):
            if p.ws is None or p.ws.closed or p.answered_ns is None:
                continue
            others = [
                q.identity
                for q in self.participants
                if q.room == p.room and q.video and q is not p and q.answered_ns is not None
            ]
            if not others:
                continue
            n = min(self.o.layout_tiles, len(others))
            p.layout = [others[(i + k) % len(others)] for k in range(n)]
            tiles = [{"identity": t, "source": "camera"} for t in p.layout]
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                await p.ws.send_json({"type": "layout", "tiles": tiles, "pinned": None})

    def _on_slots(self, p: Participant, frame: dict[str, Any]) -> None:
        if not p.slots.apply(frame, time.monotonic_ns()):
            p.error("bad_slots_frame")

    def identity_of(self, client_id: int) -> str | None:
        """The identity of the participant whose media client is `client_id`."""
        p = self.by_client.get(client_id)
        return p.identity if p is not None else None

    def who(self) -> dict[int, str]:
        """Generator client id -> participant identity."""
        return {c: p.identity for c, p in self.by_client.items()}

    def slot_check(self) -> SlotCheck:
        """Every joined participant's slots at the window's end (the `slots` frames) beside the
        senders of the packets it received over the window (`received`)."""
        check = SlotCheck()
        who = self.who()
        since = self.sources_since_ns if self.sources_since_ns is not None else 0
        for p in self.participants:
            if p.client_id is not None and p.answered_ns is not None:
                check.add(p.identity, p.window_slots, p.received, who, since, layout=p.layout)
        return check

    def _take_sources(self, stats: dict[str, Any]) -> None:
        """At the window's end: each participant's received sources and its slots then."""
        clients: dict[int, dict[str, Any]] = stats["clients"]
        for p in self.participants:
            p.window_slots = p.slots.copy()
            c = clients.get(p.client_id) if p.client_id is not None else None
            p.received = (
                {mid: dict(senders) for mid, senders in c["sources"].items()}
                if c is not None
                else {}
            )

    async def _participant(self, p: Participant, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            async with asyncio.timeout(JOIN_TIMEOUT_SECONDS):
                await self._join(p)
        except TimeoutError:
            p.failure = "timeout"
        except _JoinFailed as e:
            p.failure = str(e)
        except (aiohttp.ClientError, OSError) as e:
            p.failure = f"connect:{type(e).__name__}"
        except EngineError as e:
            p.failure = f"generator:{e}"
        self._settled += 1
        if self._settled == len(self.participants):
            self._all_settled.set()
        if p.failure is not None:
            log.debug("%s failed to join: %s", p.identity, p.failure)
            if p.ws is not None:
                await p.ws.close()
                p.close_code = p.ws.close_code
            self._settle(p)
            return
        await self._serve(p)

    def _settle(self, p: Participant) -> None:
        if (ready := self._ready.get(p.identity)) is not None:
            ready.set()

    # ---- a room filled step by step (join_more) -------------------------------------------

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[LoadRun]:
        """Starts the generator and the HTTP session for `join_more`; on exit every participant
        leaves and the generator stops. The participants' signalling tasks run in a task group
        of this context (a failure of one ends the run)."""
        if self.participants:
            raise RuntimeError("join_more adds its own participants: build with participants=0")
        if self.server_pid is None and (port := self.o.port()) is not None:
            u = urllib.parse.urlsplit(self.o.url)
            if u.hostname in ("127.0.0.1", "localhost", "::1"):
                self.server_pid = probe.find_listening_pid(port)
        self.gen.start()
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                self.session = session
                try:
                    async with asyncio.TaskGroup() as tg:
                        self._tg = tg
                        try:
                            yield self
                        finally:
                            self._tg = None
                            await self._leave_all()
                except ExceptionGroup as group:
                    # One failure (the caller's, usually): raise it as it was raised.
                    if len(group.exceptions) == 1:
                        raise group.exceptions[0] from None
                    raise
        finally:
            self.gen.stop()

    async def leave(self, p: Participant) -> None:
        """`p` leaves (from `join_more`): it is no longer one of `participants`."""
        self.participants.remove(p)
        self._ready.pop(p.identity, None)
        if p.ws is not None and not p.ws.closed:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                await p.ws.send_json({"type": "leave"})
            await p.ws.close()
        if p.client_id is not None:
            self.by_client.pop(p.client_id, None)
            self.gen.remove_client(p.client_id)

    async def _leave_all(self) -> None:
        self._leaving = True
        for p in self.participants:
            if p.ws is not None and not p.ws.closed:
                with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                    await p.ws.send_json({"type": "leave"})
                await p.ws.close()

    async def join_more(
        self,
        n: int,
        *,
        audio: int = 0,
        video: int = 0,
        loud: int = 0,
        concurrency: int = 1,
        tag: str = "p",
        room: str | None = None,
    ) -> list[Participant]:
        """Adds `n` participants to room `PREFIX-0` (the first `audio` / `video` / `loud` of them
        publish audio / video / speak loudly; the others only receive) and joins them,
        `concurrency` at a time; each join is over when its answer to the server's slot offer
        is sent, or it failed (`failure`; within JOIN_TIMEOUT_SECONDS). Returns them: their
        join time is `join_seconds(p)`, their first server offer's size `first_offer_bytes`.
        They stay, served, until `connected()` exits. Only inside `connected()`. Their
        identities are `PREFIX-0-<tag><index>` (another `tag` for another process's joiners);
        `room` joins them to another room than `PREFIX-0`."""
        tg = self._tg
        if tg is None:
            raise RuntimeError("join_more runs inside connected()")
        if n < 0 or concurrency < 1:
            raise ValueError("n must be >= 0 and concurrency >= 1")
        room = room if room is not None else f"{self.o.room_prefix}-0"
        start = len(self.participants)
        added = [
            Participant(
                room=room,
                identity=f"{room}-{tag}{start + i}",
                audio=i < audio,
                video=i < video,
                loud=i < loud,
                keep_offer=True,
            )
            for i in range(n)
        ]
        self.participants.extend(added)
        gate = asyncio.Semaphore(concurrency)

        async def one(p: Participant) -> None:
            async with gate:
                ready = self._ready[p.identity] = asyncio.Event()
                tg.create_task(self._participant(p, 0.0), name=f"load {p.identity}")
                try:
                    # The join has its own limit (JOIN_TIMEOUT_SECONDS); the slot offer after.
                    async with asyncio.timeout(JOIN_TIMEOUT_SECONDS * 2):
                        await ready.wait()
                except TimeoutError:
                    if p.failure is None:
                        p.failure = "timeout:slot_offer"
                if p.failure is None and p.slots_answered_ns is None:
                    p.failure = f"closed_before_slot_offer ({p.close_code})"

        async with asyncio.TaskGroup() as batch:
            for p in added:
                batch.create_task(one(p), name=f"join {p.identity}")
        return added

    # ---- the run ---------------------------------------------------------------------------

    _leaving = False

    async def _scrape(self) -> dict[str, float] | None:
        if self.session is None:
            return None
        try:
            return await probe.scrape(self.session, self.o.metrics())
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("cannot read the server's metrics: %s", e)
            return None

    async def _window_edge(self) -> tuple[dict[str, Any], dict[str, float] | None, float]:
        """Generator counters bracketing one scrape of the server's: (midpoint of the two
        generator readings, server counters or None, the bracket's half-width in seconds)."""
        if self.session is None:
            raise RuntimeError("no HTTP session")
        a = self.gen.stats()
        server = await self._scrape()
        b = self.gen.stats()
        mid = {
            k: (a["totals"][k] + b["totals"][k]) / 2
            for k in a["totals"]
            if isinstance(a["totals"][k], int) and not k.startswith("latency")
        }
        return {"totals": mid, "latency": b["totals"]}, server, (b["now_ns"] - a["now_ns"]) / 2e9

    def _progress(self, prev: dict[str, Any], cur: dict[str, Any], dt: float, cpu: str) -> None:
        joined = sum(1 for p in self.participants if p.answered_ns is not None)
        failed = sum(1 for p in self.participants if p.failure is not None)
        t0, t1 = prev["totals"], cur["totals"]
        pps_out = (t1["sent_rtp"] - t0["sent_rtp"]) / dt if dt > 0 else 0.0
        pps_in = (t1["recv_rtp"] - t0["recv_rtp"]) / dt if dt > 0 else 0.0
        recv = t1["recv_rtp"]
        loss = t1["lost"] / (recv + t1["lost"]) if recv + t1["lost"] else 0.0
        print(
            f"\rjoined {joined}/{len(self.participants)}  failed {failed}  "
            f"out {pps_out:,.0f} pps  in {pps_in:,.0f} pps  loss {loss:.2%}  server cpu {cpu}   ",
            end="",
            file=self.out,
            flush=True,
        )

    async def _watch(self, seconds: float) -> None:
        """Sleeps `seconds`, showing progress every second if asked."""
        end = time.monotonic() + seconds
        prev = self.gen.stats()
        prev_cpu = probe.cpu_sample(self.server_pid) if self.server_pid else None
        prev_t = time.monotonic()
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(PROGRESS_INTERVAL_SECONDS, left))
            if not self.o.progress:
                continue
            cur = self.gen.stats()
            now = time.monotonic()
            cpu_now = probe.cpu_sample(self.server_pid) if self.server_pid else None
            cpu = "?"
            if prev_cpu is not None and cpu_now is not None:
                cpu = f"{probe.cpu_cores(prev_cpu, cpu_now):.0%}"
            self._progress(prev, cur, now - prev_t, cpu)
            prev, prev_cpu, prev_t = cur, cpu_now, now

    async def crowd(self, joined: asyncio.Event, leave: asyncio.Event) -> list[Participant]:
        """Holds the participants in their rooms, without measuring: joins them all (paced at
        `join_rate`), sets `joined` once every join has succeeded or failed, keeps them
        publishing and answering the server until `leave` is set, then they leave. For tests
        that need a crowd of cheap, real participants around other clients (a browser meeting
        of 60). Returns the participants (`failure` says why one did not join)."""
        self.gen.start()
        try:
            connector = aiohttp.TCPConnector(limit=0)  # see run()
            async with aiohttp.ClientSession(connector=connector) as session:
                self.session = session
                if not self.participants:
                    self._all_settled.set()
                async with asyncio.TaskGroup() as tg:
                    for i, p in enumerate(self.participants):
                        tg.create_task(
                            self._participant(p, i / self.o.join_rate), name=f"crowd {p.identity}"
                        )
                    join_deadline = (
                        len(self.participants) / self.o.join_rate + JOIN_TIMEOUT_SECONDS + 1
                    )
                    async with asyncio.timeout(join_deadline):
                        await self._all_settled.wait()
                    joined.set()
                    await leave.wait()
                    await self._leave_all()
        finally:
            self.gen.stop()
        return self.participants

    async def run(self) -> dict[str, Any]:
        """The whole run of `visio-media load` (participants as the options say)."""
        if self.server_pid is None and (port := self.o.port()) is not None:
            u = urllib.parse.urlsplit(self.o.url)
            if u.hostname in ("127.0.0.1", "localhost", "::1"):
                self.server_pid = probe.find_listening_pid(port)
        self.gen.start()
        try:
            # No pool limit: aiohttp's default of 100 connections would hold the 101st
            # participant's WebSocket, and every /metrics scrape, until their time ran out.
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                self.session = session
                return await self._run(session)
        finally:
            self.gen.stop()

    async def _run(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        o = self.o
        async with asyncio.TaskGroup() as tg:
            for i, p in enumerate(self.participants):
                tg.create_task(self._participant(p, i / o.join_rate), name=f"load {p.identity}")
            join_deadline = len(self.participants) / o.join_rate + JOIN_TIMEOUT_SECONDS + 1
            async with asyncio.timeout(join_deadline):
                await self._all_settled.wait()
            if o.layout_tiles > 0:
                await self._send_layouts()
            await self._watch(o.warmup_s)
            # Counter window start: media paused and drained, so both sides count the same
            # packets (only STUN/RTCP trickle on while the generator reads the server).
            self.gen.set_sending(False)
            await asyncio.sleep(DRAIN_SECONDS)
            start, server_start, start_bracket = await self._window_edge()
            # Who sends what on which slot: counted afresh from here (media is paused).
            self.gen.reset_sources()
            self.sources_since_ns = time.monotonic_ns()
            self.gen.set_sending(True)
            # Steady window (rates, CPU): from here to the end of the duration.
            steady_start = self.gen.stats()
            cpu_start = probe.cpu_sample(self.server_pid) if self.server_pid else None
            own_start = probe.cpu_sample(os.getpid())
            server_steady_start = await self._scrape()
            t_start = time.monotonic()
            await self._watch(o.duration_s)
            cpu_end = probe.cpu_sample(self.server_pid) if self.server_pid else None
            own_end = probe.cpu_sample(os.getpid())
            t_end = time.monotonic()
            steady = self.gen.stats()
            server_steady = await self._scrape()
            # Counter window end: paused and drained again.
            self.gen.set_sending(False)
            await asyncio.sleep(DRAIN_SECONDS)
            end, server_end, end_bracket = await self._window_edge()
            self._take_sources(self.gen.stats())
            if o.progress:
                print(file=self.out)
            await self._leave_all()
        final = self.gen.stats()
        window = Window(
            seconds=t_end - t_start,
            start=start["totals"],
            steady_start=steady_start["totals"],
            steady_end=steady["totals"],
            drained_end=end["totals"],
            server_start=server_start,
            server_end=server_end,
            server_steady_start=server_steady_start,
            server_steady_end=server_steady,
            bracket_seconds=max(start_bracket, end_bracket),
            cpu_start=cpu_start,
            cpu_end=cpu_end,
            own_cpu_start=own_start,
            own_cpu_end=own_end,
        )
        report = build_report(
            options=asdict(o) | {"secret": "<hidden>"},
            participants=self.participants,
            final=final,
            window=window,
            server_pid=self.server_pid,
        )
        report["slots"] = self._slots_report()
        report["ok"] = report["ok"] and report["slots"]["ok"]
        return report

    def _slots_report(self) -> dict[str, Any]:
        joined = [p for p in self.participants if p.answered_ns is not None]
        sizes = [p.server_offer_bytes for p in joined if p.server_offer_bytes is not None]
        granted_v = sorted({p.video_slots for p in joined if p.video_slots is not None})
        granted_a = sorted({p.audio_slots for p in joined if p.audio_slots is not None})
        return {
            "video_slots_asked": self.o.video_slots,
            "audio_slots_asked": self.o.audio_slots,
            "video_slots_granted": granted_v,
            "audio_slots_granted": granted_a,
            "server_offer_bytes_min": min(sizes) if sizes else None,
            "server_offer_bytes_max": max(sizes) if sizes else None,
            "participants_with_offer": len(sizes),
            "participants_with_slots": sum(1 for p in joined if p.slots.frames > 0),
        } | self.slot_check().report()


def join_seconds(p: Participant) -> float | None:
    """From sending `join` to answering the server's slot offer (the participant can receive);
    None if it did not get that far."""
    if p.join_sent_ns is None or p.slots_answered_ns is None:
        return None
    return (p.slots_answered_ns - p.join_sent_ns) / 1e9


def run_load(options: LoadOptions, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Runs the load (or the relay baseline), prints the summary (or JSON); exit status 0 when
    every participant joined and the counters agree (baseline: the counts are exactly equal), 1
    otherwise."""
    report = asyncio.run(_main(options))
    if as_json:
        json.dump(report, out, indent=2, sort_keys=True)
        print(file=out)
    elif options.baseline == "relay":
        print(format_baseline_summary(report), file=out)
    else:
        print(format_summary(report), file=out)
    return 0 if report["ok"] else 1


async def _main(options: LoadOptions) -> dict[str, Any]:
    if options.baseline == "relay":
        return await RelayBaseline(options).run()
    if options.baseline is not None:
        raise ValueError(f"unknown baseline: {options.baseline!r}")
    report = await LoadRun(options).run()
    if options.with_baseline:
        # After the server run (its participants gone), on the same machine, now.
        attach_baseline(report, await RelayBaseline(options).run())
    return report
