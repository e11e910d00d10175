"""Synthetic media for aiortc test peers, and receivers that measure what arrives.

* :class:`SineAudioTrack` sends a pure sine (48 kHz, 20 ms frames, s16 mono), paced in real time.
* :class:`PatternVideoTrack` sends a moving test pattern (default 320x240) at a fixed frame rate.
* :class:`TrackReceiver` consumes one remote track: counts video frames and records their size,
  or keeps the most recent audio as mono samples so that :func:`dominant_frequencies` can check
  the content ("media really flows" means decoded and recognisable, not merely "connected").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import math
import time
from dataclasses import dataclass, field

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from .aio import stop_task

AUDIO_RATE = 48_000
AUDIO_PTIME = 0.020
AUDIO_SAMPLES_PER_FRAME = int(AUDIO_RATE * AUDIO_PTIME)  # 960
VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


class SineAudioTrack(MediaStreamTrack):
    """A live audio track that produces ``amplitude * sin(2*pi*f*t)`` without discontinuities."""

    kind = "audio"

    def __init__(self, frequency: float, *, amplitude: float = 0.3, rate: int = AUDIO_RATE) -> None:
        super().__init__()
        self.frequency = float(frequency)
        self.amplitude = amplitude
        self.rate = rate
        self.samples_per_frame = int(rate * AUDIO_PTIME)
        self._start: float | None = None
        self._timestamp = 0
        self.frames_sent = 0

    def _samples(self, first: int, count: int) -> np.ndarray:
        n = np.arange(first, first + count, dtype=np.float64)
        wave = self.amplitude * np.sin(2.0 * math.pi * self.frequency * n / self.rate)
        return np.round(wave * 32767.0).astype("<i2")

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
            self._timestamp = 0
        else:
            self._timestamp += self.samples_per_frame
            wait = self._start + self._timestamp / self.rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        pcm = self._samples(self._timestamp, self.samples_per_frame)
        frame = AudioFrame(format="s16", layout="mono", samples=self.samples_per_frame)
        frame.planes[0].update(pcm.tobytes())
        frame.pts = self._timestamp
        frame.sample_rate = self.rate
        frame.time_base = fractions.Fraction(1, self.rate)
        self.frames_sent += 1
        return frame


class PatternVideoTrack(MediaStreamTrack):
    """A live video track: a gradient with a moving bright bar, so every frame differs."""

    kind = "video"

    def __init__(
        self, *, width: int = 320, height: int = 240, fps: float = 20.0, seed: int = 0
    ) -> None:
        super().__init__()
        if width % 2 or height % 2:
            raise ValueError("width and height must be even for yuv420p")
        self.width = width
        self.height = height
        self.fps = fps
        self.seed = seed
        self._start: float | None = None
        self._index = 0
        self.frames_sent = 0
        # Pre-computed planes: only the luma bar moves, which keeps the per-frame cost low.
        x = np.arange(width, dtype=np.uint16)
        y = np.arange(height, dtype=np.uint16)[:, None]
        self._luma = ((x + y + seed * 40) % 200 + 16).astype(np.uint8)
        self._u = np.full((height // 2, width // 2), (64 + seed * 50) % 256, dtype=np.uint8)
        self._v = np.full((height // 2, width // 2), (192 - seed * 30) % 256, dtype=np.uint8)

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
            self._index = 0
        else:
            self._index += 1
            wait = self._start + self._index / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        luma = self._luma.copy()
        bar = (self._index * 8) % self.width
        luma[:, bar : bar + 16] = 235
        yuv = np.concatenate([luma.reshape(-1), self._u.reshape(-1), self._v.reshape(-1)])
        frame = VideoFrame.from_ndarray(
            yuv.reshape(self.height * 3 // 2, self.width), format="yuv420p"
        )
        frame.pts = round(self._index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame


def audio_frame_to_mono(frame: AudioFrame) -> np.ndarray:
    """Decoded aiortc audio (48 kHz s16, usually packed stereo) -> float64 mono in [-1, 1]."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        # shape (channels, samples)
        mono = data.astype(np.float64).mean(axis=0)
    else:
        # shape (1, samples * channels), interleaved
        mono = data.reshape(-1, channels).astype(np.float64).mean(axis=1)
    if frame.format.name.startswith("s16"):
        mono /= 32768.0
    return mono


def dominant_frequencies(samples: np.ndarray, rate: int, n: int = 1) -> list[float]:
    """The ``n`` strongest spectral peaks (Hz), strongest first.

    Hann window, zero mean, parabolic interpolation around each peak bin; neighbouring bins of a
    chosen peak (its main lobe) are excluded before picking the next one.
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size < 16:
        raise ValueError(f"need at least 16 samples, got {x.size}")
    x = x - x.mean()
    window = np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(x * window))
    spectrum[0] = 0.0
    bin_hz = rate / x.size
    mags = spectrum.copy()
    peaks: list[float] = []
    for _ in range(n):
        k = int(np.argmax(mags))
        if mags[k] <= 0:
            break
        offset = 0.0
        if 0 < k < spectrum.size - 1:
            a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
            denom = a - 2 * b + c
            if denom != 0:
                offset = 0.5 * (a - c) / denom
        peaks.append((k + offset) * bin_hz)
        lobe = max(3, round(20.0 / bin_hz))  # suppress +-20 Hz (and at least 3 bins)
        mags[max(0, k - lobe) : k + lobe + 1] = 0.0
    return peaks


def rms(samples: np.ndarray) -> float:
    x = np.asarray(samples, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


@dataclass
class TrackReceiver:
    """Consumes one remote track in a task until it ends.

    Video: ``frames`` counts decoded frames, ``width``/``height`` the last frame's size.
    Audio: ``frames`` counts decoded frames and ``recent_audio()`` returns the last
    ``keep_seconds`` of mono samples.
    """

    track: MediaStreamTrack
    key: tuple[str, str]
    mid: str | None = None
    keep_seconds: float = 3.0
    frames: int = 0
    width: int = 0
    height: int = 0
    sample_rate: int = AUDIO_RATE
    ended: bool = False
    error: BaseException | None = None
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    _audio: collections.deque = field(default_factory=collections.deque)
    _audio_len: int = 0
    _task: asyncio.Task | None = None
    _frame_event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def kind(self) -> str:
        return self.track.kind

    def start(self) -> TrackReceiver:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"receiver-{self.key}"
            )
        return self

    async def _run(self) -> None:
        try:
            while True:
                try:
                    frame = await self.track.recv()
                except MediaStreamError:
                    break
                now = time.monotonic()
                if self.first_frame_at is None:
                    self.first_frame_at = now
                self.last_frame_at = now
                if self.track.kind == "video":
                    self.width, self.height = frame.width, frame.height
                else:
                    self.sample_rate = frame.sample_rate
                    mono = audio_frame_to_mono(frame)
                    self._audio.append(mono)
                    self._audio_len += mono.size
                    limit = int(self.keep_seconds * self.sample_rate)
                    while self._audio and self._audio_len - self._audio[0].size >= limit:
                        self._audio_len -= self._audio.popleft().size
                self.frames += 1
                self._frame_event.set()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # recorded, reported by the test
            self.error = exc
        finally:
            self.ended = True
            self._frame_event.set()

    def recent_audio(self, seconds: float | None = None) -> np.ndarray:
        if not self._audio:
            return np.zeros(0)
        data = np.concatenate(list(self._audio))
        if seconds is not None:
            data = data[-int(seconds * self.sample_rate) :]
        return data

    async def wait_frames(self, count: int, within: float) -> bool:
        """Wait until at least ``count`` frames were received in total; False on timeout/end."""
        deadline = time.monotonic() + within
        while self.frames < count:
            if self.ended:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._frame_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._frame_event.wait(), remaining)
        return True

    async def stop(self) -> None:
        await stop_task(self._task)

    def describe(self) -> str:
        extra = f" {self.width}x{self.height}" if self.kind == "video" else ""
        return f"{self.key} mid={self.mid} frames={self.frames}{extra} ended={self.ended}"
