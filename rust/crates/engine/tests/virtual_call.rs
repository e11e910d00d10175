//! A shard and real str0m client peers in virtual time: handshake, forwarding under loss,
//! renegotiation on leave, hostile datagrams. No sockets.

use std::collections::BTreeSet;
use std::time::Duration;

use str0m::format::Codec;
use str0m::media::{Direction, MediaKind};
use str0m::rtp::RtpWrite;
use str0m::Event;
use visio_engine::peer::OutState;
use visio_engine::sim::Sim;
use visio_engine::stats::DropReason;
use visio_engine::EngineEvent;

const SECOND: Duration = Duration::from_secs(1);

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
    assert_eq!(sim.core.subscription_states(bob_peer).len(), 2);
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
    sim.run_until(SECOND, |s| s.core.subscription_states(bob_peer).is_empty());
    assert!(
        sim.core.subscription_states(bob_peer).is_empty(),
        "bob's m-lines are stopped"
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
    sim.run_until(SECOND, |s| s.core.subscription_states(bob_peer).is_empty());
    assert!(sim.core.subscription_states(bob_peer).is_empty());
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

/// A subscriber that answers our offer with garbage gets an error, stays connected, and is
/// offered the same changes again: the refused offer must not block renegotiation for good.
#[test]
fn a_garbage_answer_is_refused_and_the_offer_is_made_again() {
    let mut sim = Sim::new();
    let alice = sim.join("room", "alice", &[(MediaKind::Video, Direction::SendOnly)]);
    let bob = sim.join("room", "bob", &[(MediaKind::Audio, Direction::RecvOnly)]);
    assert!(sim.run_until(5 * SECOND, |s| s
        .clients
        .iter()
        .all(|c| s.core.peer_connected(c.peer))));
    let alice_peer = sim.clients[alice].peer;
    let track = sim
        .events
        .iter()
        .find_map(|e| match e {
            EngineEvent::TrackPublished { peer, track, .. } if *peer == alice_peer => Some(*track),
            _ => None,
        })
        .expect("alice's video is published");
    let bob_peer = sim.clients[bob].peer;
    sim.core
        .subscribe(bob_peer, track, sim.now)
        .expect("bob subscribes");
    sim.pump();
    let offers = |sim: &Sim| {
        sim.events
            .iter()
            .filter(|e| matches!(e, EngineEvent::Offer { peer, .. } if *peer == bob_peer))
            .count()
    };
    assert_eq!(offers(&sim), 1, "bob is offered alice's video");
    sim.events
        .retain(|e| !matches!(e, EngineEvent::Offer { .. }));

    for garbage in ["not sdp at all", "v=0\r\n"] {
        let r = sim.core.apply_answer(bob_peer, garbage, sim.now);
        assert!(r.is_err(), "{garbage:?} is refused");
        sim.pump();
        assert_eq!(offers(&sim), 1, "a fresh offer follows the refused answer");
        if garbage != "v=0\r\n" {
            sim.events
                .retain(|e| !matches!(e, EngineEvent::Offer { .. }));
        }
    }
    assert!(sim.core.peer_connected(bob_peer), "bob's peer survives");
    // Bob answers the last fresh offer properly: alice's video opens.
    let opened = sim.run_until(SECOND, |s| {
        s.core.subscription_states(bob_peer) == vec![(track, OutState::Open(mid_of(s, bob_peer)))]
    });
    assert!(opened, "{:?}", sim.core.subscription_states(bob_peer));
}

/// Exactly `n` subscriptions, all negotiated.
fn all_open(states: &[(visio_engine::TrackId, OutState)], n: usize) -> bool {
    states.len() == n && states.iter().all(|(_, st)| matches!(st, OutState::Open(_)))
}

fn mid_of(sim: &Sim, peer: visio_engine::PeerId) -> str0m::media::Mid {
    match sim.core.subscription_states(peer).first() {
        Some((_, OutState::Open(m))) => *m,
        _ => "none".into(),
    }
}

/// Issue 6, defect 2: every publisher who came and went used to leave a stopped m-line in
/// everyone's SDP for ever; after ~27 of them a participant's answer passed the signalling
/// frame limit. Lines now turn inactive and the next track of their kind takes them over.
#[test]
fn a_subscribers_sdp_does_not_grow_with_publishers_who_came_and_went() {
    let mut sim = Sim::new();
    let bob = sim.join("room", "bob", &[(MediaKind::Audio, Direction::RecvOnly)]);
    let bob_peer = sim.clients[bob].peer;
    let mut publisher = 0;
    for round in 0..30 {
        publisher = sim.join(
            "room",
            &format!("pub{round}"),
            &[
                (MediaKind::Audio, Direction::SendOnly),
                (MediaKind::Video, Direction::SendOnly),
            ],
        );
        let pub_peer = sim.clients[publisher].peer;
        assert!(
            sim.run_until(5 * SECOND, |s| s.core.peer_connected(pub_peer)
                && s.core.peer_connected(bob_peer))
        );
        let tracks = sim.published_tracks(publisher);
        assert_eq!(tracks.len(), 2, "round {round}");
        for t in &tracks {
            sim.core
                .subscribe(bob_peer, *t, sim.now)
                .expect("bob subscribes");
        }
        assert!(sim.run_until(SECOND, |s| {
            let states = s.core.subscription_states(bob_peer);
            all_open(&states, 2)
        }));
        if round == 29 {
            break;
        }
        sim.core
            .close_peer(pub_peer, sim.now)
            .expect("the publisher leaves");
        assert!(sim.run_until(SECOND, |s| s.core.subscription_states(bob_peer).is_empty()));
    }
    let lines_in = |sdp: &str| sdp.matches("\nm=").count();
    let (_, last) = sim
        .offers
        .iter()
        .rev()
        .find(|(p, _)| *p == bob_peer)
        .expect("bob got offers");
    // Bob's own line, one audio and one video line of ours: whoever came before.
    assert_eq!(lines_in(last), 3, "{last}");
    let longest = sim
        .offers
        .iter()
        .filter(|(p, _)| *p == bob_peer)
        .map(|(_, s)| s.len())
        .max()
        .unwrap_or(0);
    assert!(
        longest < 8 * 1024,
        "bob's offers stay small: {longest} bytes"
    );
    assert!(
        !last.contains("m=video 0 ") && !last.contains("m=audio 0 "),
        "no stopped lines pile up: {last}"
    );
    // The last publisher's video reaches bob on the reused line, under its own msid.
    let tracks = sim.core.subscription_states(bob_peer);
    assert!(
        last.contains(&format!("a=msid:pub29 {}", tracks[1].0))
            || last.contains(&format!("a=msid:pub29 {}", tracks[0].0)),
        "{last}"
    );
    send_video(&mut sim, publisher, 50);
    sim.run_until(SECOND, |_| false);
    let (indices, _) = received_video(&sim, bob);
    assert!(
        indices.len() >= 45,
        "bob receives pub29's video: {}",
        indices.len()
    );
}

/// Lines are reused whatever the order: a publisher who arrives while the line of one who left
/// is still being turned inactive (its offer unanswered) gets that line once it is free, and
/// one who arrives before that offer even went out takes the line over directly.
#[test]
fn lines_are_reused_when_a_newcomer_arrives_before_the_leavers_line_is_free() {
    let mut sim = Sim::new();
    let bob = sim.join("room", "bob", &[(MediaKind::Audio, Direction::RecvOnly)]);
    let bob_peer = sim.clients[bob].peer;
    let media = [
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ];
    let first = sim.join("room", "first", &media);
    let first_peer = sim.clients[first].peer;
    assert!(
        sim.run_until(5 * SECOND, |s| s.core.peer_connected(first_peer)
            && s.core.peer_connected(bob_peer))
    );
    for t in sim.published_tracks(first) {
        sim.core
            .subscribe(bob_peer, t, sim.now)
            .expect("bob subscribes");
    }
    assert!(sim.run_until(SECOND, |s| s
        .core
        .subscription_states(bob_peer)
        .iter()
        .all(|(_, st)| matches!(st, OutState::Open(_)))));
    let lines_in = |sim: &Sim| {
        sim.offers
            .iter()
            .rev()
            .find(|(p, _)| *p == bob_peer)
            .map(|(_, s)| s.matches("\nm=").count())
            .unwrap_or(0)
    };
    assert_eq!(lines_in(&sim), 3);

    // `first` leaves: bob's lines go inactive in an offer bob does not answer yet.
    sim.core
        .close_peer(first_peer, sim.now)
        .expect("first leaves");
    sim.pump();
    let second = sim.join("room", "second", &media);
    let second_peer = sim.clients[second].peer;
    for _ in 0..1000 {
        if sim.core.peer_connected(second_peer) && sim.published_tracks(second).len() == 2 {
            break;
        }
        sim.advance(std::time::Duration::from_millis(5)); // no offer is answered meanwhile
    }
    for t in sim.published_tracks(second) {
        sim.core
            .subscribe(bob_peer, t, sim.now)
            .expect("bob subscribes");
    }
    assert!(sim.run_until(2 * SECOND, |s| {
        let st = s.core.subscription_states(bob_peer);
        all_open(&st, 2)
    }));
    assert_eq!(lines_in(&sim), 3, "second took over first's lines");

    // `third` arrives. Bob's offer for third's audio is out (unanswered) when `second` leaves,
    // so second's lines are not offered inactive yet; third's video, subscribed then, takes
    // second's video line over directly in the next offer (only its msid changes).
    let third = sim.join("room", "third", &media);
    let third_peer = sim.clients[third].peer;
    assert!(
        sim.run_until(5 * SECOND, |s| s.core.peer_connected(third_peer)
            && s.published_tracks(third).len() == 2)
    );
    let third_tracks = sim.published_tracks(third); // audio, video: the offer's order
    sim.core
        .subscribe(bob_peer, third_tracks[0], sim.now)
        .expect("bob subscribes to third's audio");
    sim.pump();
    sim.core
        .close_peer(second_peer, sim.now)
        .expect("second leaves");
    sim.pump();
    sim.core
        .subscribe(bob_peer, third_tracks[1], sim.now)
        .expect("bob subscribes to third's video");
    assert!(sim.run_until(2 * SECOND, |s| {
        let st = s.core.subscription_states(bob_peer);
        all_open(&st, 2)
    }));
    // Third's audio had to take a new line (offered before any was free); its video took
    // second's video line.
    assert_eq!(
        lines_in(&sim),
        4,
        "third's video took over second's video line"
    );
    send_video(&mut sim, third, 30);
    sim.run_until(SECOND, |_| false);
    let (indices, _) = received_video(&sim, bob);
    assert!(
        indices.len() >= 25,
        "bob receives third's video: {}",
        indices.len()
    );
}

/// Forwarding finds a subscriber's line for a track through an index, not a scan. Removing
/// an earlier subscription shifts the later ones; the index must follow, or the tracks
/// subscribed after it stop reaching the subscriber.
#[test]
fn dropping_one_subscription_keeps_the_later_ones_forwarding() {
    let mut sim = Sim::new();
    let bob = sim.join("room", "bob", &[(MediaKind::Audio, Direction::RecvOnly)]);
    let carol = sim.join("room", "carol", &[(MediaKind::Video, Direction::SendOnly)]);
    let dave = sim.join("room", "dave", &[(MediaKind::Video, Direction::SendOnly)]);
    let bob_peer = sim.clients[bob].peer;
    assert!(sim.run_until(5 * SECOND, |s| s
        .clients
        .iter()
        .all(|c| s.core.peer_connected(c.peer))));
    let track_of = |sim: &Sim, client: usize| {
        sim.events
            .iter()
            .find_map(|e| match e {
                EngineEvent::TrackPublished { peer, track, .. }
                    if *peer == sim.clients[client].peer =>
                {
                    Some(*track)
                }
                _ => None,
            })
            .expect("a published video track")
    };
    let (carol_track, dave_track) = (track_of(&sim, carol), track_of(&sim, dave));
    for t in [carol_track, dave_track] {
        sim.core
            .subscribe(bob_peer, t, sim.now)
            .expect("bob subscribes");
        assert!(sim.run_until(SECOND, |s| s
            .core
            .subscription_states(bob_peer)
            .iter()
            .all(|(_, st)| matches!(st, OutState::Open(_)))));
    }
    sim.core
        .unsubscribe(bob_peer, carol_track, sim.now)
        .expect("bob drops carol");
    assert!(sim.run_until(SECOND, |s| {
        s.core.subscription_states(bob_peer).len() == 1
    }));
    assert_eq!(sim.core.subscription_states(bob_peer)[0].0, dave_track);
    sim.clients[bob].events.clear();
    send_video(&mut sim, dave, 50);
    sim.run_until(SECOND, |_| false);
    let (indices, _) = received_video(&sim, bob);
    assert!(
        indices.len() >= 45,
        "dave's video still reaches bob: {}",
        indices.len()
    );
    sim.clients[bob].events.clear();
    send_video(&mut sim, carol, 50);
    sim.run_until(SECOND, |_| false);
    let (indices, _) = received_video(&sim, bob);
    assert!(indices.is_empty(), "carol's video no longer reaches bob");
}

/// A take-over (a waiting subscription taking the line of a track going away) removes an
/// entry from the subscriber's list; the lookup index must follow at once, not only when the
/// answer comes: a subscription listed after it is still found (here: unsubscribed) while the
/// take-over's offer is out.
#[test]
fn subscriptions_after_a_taken_over_line_are_still_found_before_the_answer() {
    let mut sim = Sim::new();
    let bob = sim.join("room", "bob", &[(MediaKind::Audio, Direction::RecvOnly)]);
    let bob_peer = sim.clients[bob].peer;
    let video = [(MediaKind::Video, Direction::SendOnly)];
    let (a, b, c) = (
        sim.join("room", "a", &video),
        sim.join("room", "b", &video),
        sim.join("room", "c", &video),
    );
    assert!(sim.connect_all(5 * SECOND));
    let (ta, tb, tc) = (
        sim.published_tracks(a)[0],
        sim.published_tracks(b)[0],
        sim.published_tracks(c)[0],
    );
    for t in [ta, tb] {
        sim.core
            .subscribe(bob_peer, t, sim.now)
            .expect("bob subscribes");
    }
    assert!(sim.run_until(SECOND, |s| all_open(
        &s.core.subscription_states(bob_peer),
        2
    )));
    // An offer of bob's is out (for c, unanswered) when a leaves: a's line waits in ToStop.
    sim.core
        .subscribe(bob_peer, tc, sim.now)
        .expect("bob subscribes to c");
    sim.pump();
    sim.core
        .unsubscribe(bob_peer, ta, sim.now)
        .expect("bob drops a");
    sim.pump();
    // d's video, subscribed now, takes a's line when the next offer is made (after the answer).
    let d = sim.join("room", "d", &video);
    for _ in 0..1000 {
        if sim.core.peer_connected(sim.clients[d].peer) && !sim.published_tracks(d).is_empty() {
            break;
        }
        sim.advance(std::time::Duration::from_millis(5)); // bob's offer stays unanswered
    }
    let td = sim.published_tracks(d)[0];
    sim.core
        .subscribe(bob_peer, td, sim.now)
        .expect("bob subscribes to d");
    sim.pump();
    // Answers c's offer only: the take-over offer that follows stays unanswered.
    assert!(sim.answer_offers_once());
    sim.core
        .unsubscribe(bob_peer, tb, sim.now)
        .expect("b, listed after a's old entry, is still found");
}
