//! A shard and real str0m client peers in virtual time: handshake, forwarding under loss,
//! renegotiation on leave, hostile datagrams. No sockets.

use std::collections::BTreeSet;
use std::time::Duration;

use str0m::format::Codec;
use str0m::media::{Direction, MediaKind};
use str0m::rtp::RtpWrite;
use str0m::Event;
use visio_engine::sim::Sim;
use visio_engine::stats::DropReason;
use visio_engine::EngineEvent;

const SECOND: Duration = Duration::from_secs(1);

/// How many of `peer`'s slots carry a source now.
fn carried(sim: &Sim, peer: visio_engine::PeerId) -> usize {
    sim.core
        .slot_states(peer)
        .iter()
        .filter(|(_, _, t)| t.is_some())
        .count()
}

/// Sends `n` video packets from `client`, one every 10 ms, each carrying its index.
fn send_video(sim: &mut Sim, client: usize, n: u16) {
    let mid = sim
        .send_mid(client, MediaKind::Video)
        .expect("a video send line");
    let pt = sim.pt_of(client, Codec::Vp8).expect("clients offer VP8");
    for i in 0..n {
        let mut payload = vec![0x10, (i >> 8) as u8, i as u8];
        payload.resize(600, 0xAB);
        let now = sim.now;
        let rtc = &mut sim.clients[client].rtc;
        let mut api = rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("a send stream");
        tx.write_rtp(
            RtpWrite::new(
                pt,
                (1000 + u64::from(i)).into(),
                3000 * u32::from(i),
                now,
                payload,
            )
            .marker(true)
            .nackable(true),
        );
        sim.advance(Duration::from_millis(10));
    }
}

fn received_video(sim: &Sim, client: usize) -> (BTreeSet<u16>, Vec<u64>) {
    let mut indices = BTreeSet::new();
    let mut seqs = Vec::new();
    for e in &sim.clients[client].events {
        if let Event::RtpPacket(p) = e {
            if p.payload.len() == 600 && p.payload[0] == 0x10 {
                indices.insert(u16::from(p.payload[1]) << 8 | u16::from(p.payload[2]));
                seqs.push(*p.seq_no);
            }
        }
    }
    (indices, seqs)
}

#[test]
fn a_published_video_track_reaches_the_subscriber_and_nack_repairs_loss() {
    let mut sim = Sim::new();
    let (alice, bob) = sim.two_party_call(&[
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ]);
    // From now on, lose every 10th datagram alice sends.
    sim.loss = Some(Box::new(move |client, n| client == alice && n % 10 == 0));
    send_video(&mut sim, alice, 300);
    sim.run_until(2 * SECOND, |_| false);

    let lost = sim.clients[alice].lost;
    assert!(lost >= 25, "the loss model dropped packets: {lost}");
    let (indices, seqs) = received_video(&sim, bob);
    assert_eq!(
        indices.len(),
        300,
        "every packet arrives after NACK/RTX repair; missing: {:?}",
        (0..300)
            .filter(|i| !indices.contains(i))
            .collect::<Vec<_>>()
    );
    // The subscriber sees one continuous sequence number space.
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    let (lo, hi) = (distinct.first().copied(), distinct.last().copied());
    assert_eq!(
        hi.zip(lo).map(|(h, l)| h - l + 1),
        Some(300),
        "no gaps in {lo:?}..{hi:?}"
    );
    let stats = sim.core.stats().snapshot();
    assert!(stats.rtp_forwarded >= 300, "{stats:?}");
    assert!(
        stats.keyframe_requests_out >= 1,
        "a keyframe is requested for the new subscriber"
    );
}

#[test]
fn closing_the_publisher_unpublishes_and_removes_the_subscribers_media() {
    let mut sim = Sim::new();
    let (alice, bob) = sim.two_party_call(&[
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ]);
    let bob_peer = sim.clients[bob].peer;
    assert_eq!(carried(&sim, bob_peer), 1, "bob's audio slot carries alice");
    let alice_peer = sim.clients[alice].peer;
    sim.core
        .close_peer(alice_peer, sim.now)
        .expect("alice is closed");
    sim.pump();
    let unpublished = sim
        .events
        .iter()
        .filter(|e| matches!(e, EngineEvent::TrackUnpublished { peer, .. } if *peer == alice_peer))
        .count();
    assert_eq!(unpublished, 2);
    assert!(sim
        .events
        .iter()
        .any(|e| matches!(e, EngineEvent::PeerClosed { peer, .. } if *peer == alice_peer)));
    assert_eq!(carried(&sim, bob_peer), 0, "bob's slots are empty");
    assert_eq!(
        sim.core.slot_states(bob_peer).len(),
        4,
        "bob keeps his slot lines"
    );
    assert_eq!(sim.core.peer_count(), 1);
    assert_eq!(sim.core.stats().snapshot().tracks, 0);
}

#[test]
fn hostile_datagrams_are_dropped_by_reason_and_never_answered() {
    let mut sim = Sim::new();
    let (alice, bob) = sim.two_party_call(&[
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ]);
    let stranger = "10.9.9.9:1234".parse().expect("an address");
    let known_ufrag = sim
        .core
        .peer_ufrag(sim.clients[alice].peer)
        .expect("alice's ufrag")
        .to_owned();
    // Well framed (FINGERPRINT correct) but MESSAGE-INTEGRITY is not keyed with our password.
    let stun_known = stun_binding_request(&format!("{known_ufrag}:x"));
    let hostile: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![0xff; 100],
        vec![0x42; 3000],
        stun_binding_request("nosuchufrag:x"),
        stun_known,
        vec![0x16, 0xfe, 0xfd, 0, 0],    // truncated DTLS record
        vec![0x80, 0x60, 0, 1, 0, 0, 0], // truncated RTP
        {
            let mut rtp = vec![0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
            rtp.extend_from_slice(&[0u8; 100]);
            rtp
        },
    ];
    let out_before = sim.core.stats().snapshot().packets_out;
    for d in &hostile {
        sim.core.handle_datagram(sim.now, stranger, d);
    }
    let answered: Vec<_> = sim
        .core
        .take_transmits()
        .filter(|t| t.destination == stranger)
        .collect();
    assert!(answered.is_empty(), "nothing goes back to the stranger");
    sim.pump();
    let s = sim.core.stats();
    assert_eq!(s.drops(DropReason::StunUnknownUfrag), 1);
    assert_eq!(s.drops(DropReason::StunRejected), 1);
    assert_eq!(s.drops(DropReason::UnknownSource), 3);
    assert_eq!(s.drops(DropReason::TooLarge), 1);
    assert!(s.drops(DropReason::Malformed) >= 3);
    assert!(s.snapshot().packets_out >= out_before);

    // The call still carries media afterwards.
    send_video(&mut sim, alice, 50);
    sim.run_until(SECOND, |_| false);
    let (indices, _) = received_video(&sim, bob);
    assert_eq!(indices.len(), 50);
}

/// A STUN Binding Request with USERNAME, a forged MESSAGE-INTEGRITY and a valid FINGERPRINT.
fn stun_binding_request(username: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attrs.extend_from_slice(username.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    attrs.extend_from_slice(&0x0024u16.to_be_bytes()); // PRIORITY
    attrs.extend_from_slice(&4u16.to_be_bytes());
    attrs.extend_from_slice(&0x6e00_1eff_u32.to_be_bytes());
    attrs.extend_from_slice(&0x802Au16.to_be_bytes()); // ICE-CONTROLLING
    attrs.extend_from_slice(&8u16.to_be_bytes());
    attrs.extend_from_slice(&[7; 8]);
    attrs.extend_from_slice(&0x0008u16.to_be_bytes());
    attrs.extend_from_slice(&20u16.to_be_bytes());
    attrs.extend_from_slice(&[0x5a; 20]);
    let mut d = vec![0x00, 0x01];
    d.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    d.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    d.extend_from_slice(&[9; 12]);
    d.extend_from_slice(&attrs);
    // FINGERPRINT covers the message with its own length already counted.
    let len = (d.len() - 20 + 8) as u16;
    d[2..4].copy_from_slice(&len.to_be_bytes());
    let fp = crc32(&d) ^ 0x5354_554e;
    d.extend_from_slice(&0x8028u16.to_be_bytes());
    d.extend_from_slice(&4u16.to_be_bytes());
    d.extend_from_slice(&fp.to_be_bytes());
    d
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_peer_whose_consent_checks_stop_is_failed_and_removed_within_30_seconds() {
    let mut sim = Sim::new();
    let (alice, bob) = sim.two_party_call(&[
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ]);
    let alice_peer = sim.clients[alice].peer;
    let bob_peer = sim.clients[bob].peer;
    // Alice vanishes: nothing she sends arrives any more.
    sim.loss = Some(Box::new(move |client, _| client == alice));
    let gone = sim.run_until(30 * SECOND, |s| {
        s.events.iter().any(
            |e| matches!(e, EngineEvent::PeerFailed { peer, reason } if *peer == alice_peer && reason == "ice_disconnected"),
        )
    });
    assert!(gone, "alice fails on lost consent: {:?}", sim.events);
    assert_eq!(sim.core.peer_count(), 1);
    assert_eq!(carried(&sim, bob_peer), 0, "bob's slots are empty");
}

#[test]
fn a_peer_that_never_connects_fails_at_the_connect_timeout() {
    let mut sim = Sim::new();
    sim.deliver_uplink = false;
    let lonely = sim.join("room", "lonely", &[(MediaKind::Audio, Direction::SendOnly)]);
    let peer = sim.clients[lonely].peer;
    let failed = sim.run_until(35 * SECOND, |s| {
        s.events.iter().any(
            |e| matches!(e, EngineEvent::PeerFailed { peer: p, reason } if *p == peer && reason == "connect_timeout"),
        )
    });
    assert!(failed, "{:?}", sim.events);
    assert_eq!(sim.core.peer_count(), 0);
}

#[test]
fn a_loud_audio_track_becomes_the_active_speaker_and_silence_clears_it() {
    let mut sim = Sim::new();
    let (alice, _bob) = sim.two_party_call(&[
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ]);
    let alice_peer = sim.clients[alice].peer;
    let audio_track = sim
        .events
        .iter()
        .find_map(|e| match e {
            EngineEvent::TrackPublished {
                peer, track, kind, ..
            } if *peer == alice_peer && *kind == visio_engine::event::MediaKind::Audio => {
                Some(*track)
            }
            _ => None,
        })
        .expect("alice's audio track");
    let mid = sim
        .send_mid(alice, MediaKind::Audio)
        .expect("an audio line");
    let pt = sim.pt_of(alice, Codec::Opus).expect("opus");
    sim.events.clear();
    for i in 0..100u32 {
        let now = sim.now;
        let mut api = sim.clients[alice].rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("an audio stream");
        let ext = str0m::rtp::ExtensionValues {
            audio_level: Some(-12),
            voice_activity: Some(true),
            ..Default::default()
        };
        tx.write_rtp(
            RtpWrite::new(pt, u64::from(i).into(), 960 * i, now, vec![0xF8; 80]).ext_vals(ext),
        );
        sim.advance(Duration::from_millis(20));
    }
    let speakers: Vec<_> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::ActiveSpeakers { tracks, .. } => Some(tracks.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(speakers.first(), Some(&vec![audio_track]), "{speakers:?}");
    assert_eq!(
        speakers.len(),
        1,
        "no flapping while the level is steady: {speakers:?}"
    );
    sim.events.clear();
    sim.run_until(2 * SECOND, |_| false);
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, EngineEvent::ActiveSpeakers { tracks, .. } if tracks.is_empty())),
        "silence clears the speaker: {:?}",
        sim.events
    );
}

/// A receiver that answers our slot offer with garbage gets an error, stays, and is offered
/// its slots again: the refused offer must not block negotiation for good.
#[test]
fn a_garbage_answer_is_refused_and_the_offer_is_made_again() {
    let mut sim = Sim::new();
    sim.join("room", "alice", &[(MediaKind::Video, Direction::SendOnly)]);
    let bob = sim.join("room", "bob", &[(MediaKind::Audio, Direction::RecvOnly)]);
    let bob_peer = sim.clients[bob].peer;
    let offers = |sim: &Sim| {
        sim.events
            .iter()
            .filter(|e| matches!(e, EngineEvent::Offer { peer, .. } if *peer == bob_peer))
            .count()
    };
    assert_eq!(offers(&sim), 1, "bob is offered his slots");
    for garbage in ["not sdp at all", "v=0\r\n"] {
        sim.events
            .retain(|e| !matches!(e, EngineEvent::Offer { .. }));
        let r = sim.core.apply_answer(bob_peer, garbage, sim.now);
        assert!(r.is_err(), "{garbage:?} is refused");
        sim.pump();
        assert_eq!(offers(&sim), 1, "a fresh offer follows the refused answer");
    }
    // Bob answers the last fresh offer properly: his slots open and carry alice's video.
    let opened = sim.run_until(5 * SECOND, |s| {
        s.core.slots_open(bob_peer) && s.core.peer_connected(bob_peer)
    });
    assert!(opened, "{:?}", sim.core.slot_states(bob_peer));
    assert_eq!(sim.core.slot_states(bob_peer).len(), 4);
}
