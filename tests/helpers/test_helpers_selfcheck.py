"""The test helpers checked on their own (no engine): if these fail, engine tests mean nothing.

A direct aiortc-to-aiortc call proves the sine/pattern tracks, the receivers and the FFT check;
aioice's STUN parser proves our hand-built STUN framing.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aioice import stun

from helpers.hostile import stun_binding_request
from helpers.media import AUDIO_RATE, SineAudioTrack, dominant_frequencies
from helpers.peers import TestPeer, ice_ufrag_of, new_peer_connection, wait_until


def test_dominant_frequency_of_a_pure_sine_is_exact_within_one_hertz() -> None:
    t = np.arange(AUDIO_RATE) / AUDIO_RATE
    for f in (440.0, 660.0, 880.0, 1234.5):
        (peak,) = dominant_frequencies(np.sin(2 * np.pi * f * t), AUDIO_RATE, 1)
        assert abs(peak - f) < 1.0


def test_dominant_frequencies_separates_a_mix_of_two_sines() -> None:
    t = np.arange(AUDIO_RATE) / AUDIO_RATE
    mix = np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 880 * t)
    peaks = dominant_frequencies(mix, AUDIO_RATE, 2)
    assert abs(peaks[0] - 440) < 1 and abs(peaks[1] - 880) < 1


@pytest.mark.asyncio(loop_scope="function")
async def test_sine_track_produces_continuous_paced_20ms_frames() -> None:
    track = SineAudioTrack(660)
    loop = asyncio.get_running_loop()
    start = loop.time()
    frames = [await track.recv() for _ in range(10)]
    elapsed = loop.time() - start
    assert all(f.samples == 960 and f.sample_rate == 48000 for f in frames)
    assert [f.pts for f in frames] == [i * 960 for i in range(10)]
    assert 0.15 <= elapsed <= 0.5  # 9 frame intervals of 20 ms
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(float)
    (peak,) = dominant_frequencies(pcm, 48000, 1)
    assert abs(peak - 660) < 5


def test_stun_binding_request_framing_is_accepted_by_aioice() -> None:
    key = b"server-password-0123456789"
    data = stun_binding_request("srv:cli", integrity_key=key)
    msg = stun.parse_message(data)  # checks length framing and FINGERPRINT
    assert msg.check_message_integrity(key)
    assert msg.message_method == stun.Method.BINDING
    assert msg.message_class == stun.Class.REQUEST
    assert msg.attributes["USERNAME"] == "srv:cli"
    garbage = stun_binding_request("srv:cli")  # garbage MESSAGE-INTEGRITY, valid FINGERPRINT
    assert not stun.parse_message(garbage).check_message_integrity(key)


@pytest.mark.asyncio(loop_scope="function")
async def test_direct_aiortc_call_delivers_video_frames_and_the_right_sine() -> None:
    sender = TestPeer("sender", audio_hz=880, video=True)
    receiver_pc = new_peer_connection()
    receiver = TestPeer("receiver")
    receiver.pc = receiver_pc
    try:
        offer = await sender.make_offer()
        answer = await receiver.answer_offer(offer)
        await sender.accept_answer(answer)
        assert ice_ufrag_of(answer)
        await wait_until(lambda: len(receiver.slot_receivers) == 2, 10, what="two remote tracks")
        # What the engine's slot events do: name who each line carries.
        for mid, r in list(receiver.slot_receivers.items()):
            receiver.set_slot(mid, ("sender", r.track.kind))
        video = receiver.receiver("sender", "video")
        audio = receiver.receiver("sender", "audio")
        assert video is not None and audio is not None, receiver.describe_receivers()
        assert await video.wait_frames(20, 15), video.describe()
        assert await audio.wait_frames(100, 15), audio.describe()
        assert (video.width, video.height) == (320, 240)
        (peak,) = dominant_frequencies(audio.recent_audio(1.0), audio.sample_rate, 1)
        assert abs(peak - 880) <= 5, peak
    finally:
        await sender.close()
        await receiver.close()
    assert video.ended and audio.ended


@pytest.mark.asyncio(loop_scope="function")
async def test_hostile_socket_really_sends_zero_length_datagrams() -> None:
    # asyncio's DatagramTransport.sendto(b"") sends nothing on Python 3.11; ours must.
    from helpers.hostile import HostileSocket

    sender, receiver = HostileSocket(), HostileSocket()
    try:
        addr = receiver.sock.getsockname()
        for payload in (b"", b"x", bytes(2000)):
            sender.sendto(payload, addr)
        await wait_until(lambda: len(receiver.received) == 3, 2, what="three datagrams")
        assert [len(d) for d, _ in receiver.received] == [0, 1, 2000]
    finally:
        sender.close()
        receiver.close()
