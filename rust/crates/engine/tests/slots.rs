//! Receive slots in virtual time: a receiver's SDP is its slots whatever the room, a video
//! slot switches source on a keyframe with continuous numbering, audio slots follow the loudest
//! others and never carry one's own voice, video slots follow layout, speakers and publish order.

use std::collections::BTreeSet;
use std::time::Duration;

use str0m::media::{Direction, MediaKind, Mid};
use str0m::Event;
use visio_engine::peer::SlotCounts;
use visio_engine::sim::Sim;
use visio_engine::{EngineEvent, PeerId, TrackId};

const SECOND: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(20);
const VIDEO_LEN: usize = 300;
const AUDIO_LEN: usize = 80;

const BOTH: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::SendOnly),
    (MediaKind::Video, Direction::SendOnly),
];
const LISTEN: [(MediaKind, Direction); 1] = [(MediaKind::Audio, Direction::RecvOnly)];

/// A VP8 payload naming its sender: descriptor (S=1), payload header (keyframe or not), tag,
/// index.
fn vp8(tag: u8, i: u16, key: bool) -> Vec<u8> {
    let mut p = vec![0x10, u8::from(!key), tag, (i >> 8) as u8, i as u8];
    p.resize(VIDEO_LEN, 0);
    p
}

fn opus(tag: u8, i: u16) -> Vec<u8> {
    let mut p = vec![0xF8, tag, (i >> 8) as u8, i as u8];
    p.resize(AUDIO_LEN, 0);
    p
}

fn video(sim: &mut Sim, client: usize, tag: u8, i: u16, key: bool) {
    let seq = 10_000 * u64::from(tag) + u64::from(i);
    sim.send_rtp(
        client,
        MediaKind::Video,
        (seq, 3000 * u32::from(i)),
        vp8(tag, i, key),
        None,
    );
}

fn audio(sim: &mut Sim, client: usize, tag: u8, i: u16, level: i8) {
    let seq = 10_000 * u64::from(tag) + u64::from(i);
    sim.send_rtp(
        client,
        MediaKind::Audio,
        (seq, 960 * u32::from(i)),
        opus(tag, i),
        Some(level),
    );
}

/// What `client` received, in order: (mid, sender tag, index, sequence number, video).
fn arrivals(sim: &mut Sim, client: usize) -> Vec<(Mid, u8, u16, u64, bool)> {
    let pkts: Vec<_> = sim.clients[client]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::RtpPacket(p) => Some((p.header.ssrc, p.payload.to_vec(), *p.seq_no)),
            _ => None,
        })
        .collect();
    pkts.into_iter()
        .filter_map(|(ssrc, payload, seq)| {
            let mid = sim.mid_of_ssrc(client, ssrc)?;
            match payload.len() {
                VIDEO_LEN => Some((
                    mid,
                    payload[2],
                    u16::from(payload[3]) << 8 | u16::from(payload[4]),
                    seq,
                    true,
                )),
                AUDIO_LEN => Some((
                    mid,
                    payload[1],
                    u16::from(payload[2]) << 8 | u16::from(payload[3]),
                    seq,
                    false,
                )),
                _ => None,
            }
        })
        .collect()
}

fn tracks_of(sim: &Sim, client: usize) -> (TrackId, TrackId) {
    let peer = sim.clients[client].peer;
    let mut audio = None;
    let mut video = None;
    for e in &sim.events {
        if let EngineEvent::TrackPublished {
            peer: p,
            track,
            kind,
            ..
        } = e
        {
            if *p == peer {
                match kind {
                    visio_engine::event::MediaKind::Audio => audio = Some(*track),
                    visio_engine::event::MediaKind::Video => video = Some(*track),
                }
            }
        }
    }
    (
        audio.expect("an audio track"),
        video.expect("a video track"),
    )
}

/// What each slot of `peer` carries now, in slot order.
fn carried(sim: &Sim, peer: PeerId) -> Vec<Option<TrackId>> {
    sim.core
        .slot_states(peer)
        .iter()
        .map(|(_, _, t)| *t)
        .collect()
}

fn ready(sim: &mut Sim) {
    assert!(sim.connect_all(5 * SECOND), "everyone connects");
    let ok = sim.run_until(2 * SECOND, |s| {
        s.clients.iter().all(|c| s.core.slots_open(c.peer))
    });
    assert!(ok, "every receiver's slots are negotiated");
}

#[test]
fn a_receivers_sdp_is_its_slots_whatever_the_room_size_and_history() {
    let mut sim = Sim::new();
    let slots = SlotCounts { video: 3, audio: 2 };
    let bob = sim.join_with_slots("room", "bob", &LISTEN, slots);
    let bob_peer = sim.clients[bob].peer;
    let mut publishers = Vec::new();
    for i in 0..12 {
        let none = SlotCounts::default();
        publishers.push(sim.join_with_slots("room", &format!("p{i}"), &BOTH, none));
    }
    ready(&mut sim);
    for p in publishers.iter().take(6) {
        let peer = sim.clients[*p].peer;
        sim.core
            .close_peer(peer, sim.now)
            .expect("a publisher leaves");
    }
    sim.run_until(SECOND, |_| false);
    let offers: Vec<&String> = sim
        .offers
        .iter()
        .filter(|(p, _)| *p == bob_peer)
        .map(|(_, sdp)| sdp)
        .collect();
    assert_eq!(
        offers.len(),
        1,
        "bob is offered his slots once, never again"
    );
    let lines = offers[0].matches("\nm=").count();
    assert_eq!(lines, 1 + 5, "bob's own line and his 3 + 2 slot lines");
    assert_eq!(offers[0].matches("a=sendonly").count(), 5);
    // Six publishers are left: every slot carries one of them, none twice.
    let audio: Vec<_> = carried(&sim, bob_peer)[3..].to_vec();
    assert!(audio.iter().all(Option::is_some), "{audio:?}");
    assert_ne!(audio[0], audio[1]);
}

#[test]
fn a_video_slot_switches_on_the_new_sources_keyframe_with_continuous_numbering() {
    let mut sim = Sim::new();
    let none = SlotCounts::default();
    let alice = sim.join_with_slots("room", "alice", &BOTH, none);
    let carol = sim.join_with_slots("room", "carol", &BOTH, none);
    let one = SlotCounts { video: 1, audio: 0 };
    let bob = sim.join_with_slots("room", "bob", &LISTEN, one);
    let bob_peer = sim.clients[bob].peer;
    ready(&mut sim);
    let (_, alice_video) = tracks_of(&sim, alice);
    let (_, carol_video) = tracks_of(&sim, carol);
    let carol_peer = sim.clients[carol].peer;
    sim.core
        .set_layout(bob_peer, vec![alice_video], false, sim.now)
        .expect("bob shows alice");
    for i in 0..10 {
        video(&mut sim, alice, 1, i, i == 0);
        video(&mut sim, carol, 2, i, false);
        sim.advance(TICK);
    }
    sim.events.clear();
    sim.core
        .set_layout(bob_peer, vec![carol_video], false, sim.now)
        .expect("bob shows carol");
    sim.pump();
    assert!(
        sim.events.iter().any(
            |e| matches!(e, EngineEvent::KeyframeRequested { peer, .. } if *peer == carol_peer)
        ),
        "a keyframe is asked of carol: {:?}",
        sim.events
    );
    // Until carol's keyframe, bob keeps getting alice.
    for i in 10..20 {
        video(&mut sim, alice, 1, i, false);
        video(&mut sim, carol, 2, i, false);
        sim.advance(TICK);
    }
    for i in 20..30 {
        // Carol's keyframe goes first in its tick: alice's packets from then on are not sent.
        video(&mut sim, carol, 2, i, i == 20);
        if i == 20 {
            sim.advance(TICK);
        }
        video(&mut sim, alice, 1, i, false);
        sim.advance(TICK);
    }
    sim.run_until(SECOND, |_| false);

    let got = arrivals(&mut sim, bob);
    let from = |tag: u8| -> BTreeSet<u16> {
        got.iter()
            .filter(|a| a.1 == tag && a.4)
            .map(|a| a.2)
            .collect()
    };
    assert_eq!(from(1), (0..20).collect(), "alice until carol's keyframe");
    assert_eq!(from(2), (20..30).collect(), "carol from her keyframe on");
    let mids: BTreeSet<Mid> = got.iter().map(|a| a.0).collect();
    assert_eq!(mids.len(), 1, "one slot line");
    let seqs: BTreeSet<u64> = got.iter().map(|a| a.3).collect();
    let (lo, hi) = (seqs.first().copied(), seqs.last().copied());
    assert_eq!(seqs.len(), 30);
    assert_eq!(
        hi.zip(lo).map(|(h, l)| h - l + 1),
        Some(30),
        "no gap at the switch"
    );
    let changes: Vec<Option<TrackId>> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::SlotChanged { peer, track, .. } if *peer == bob_peer => Some(*track),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        vec![Some(carol_video)],
        "the switch is announced once"
    );
}

#[test]
fn audio_slots_carry_the_loudest_others_and_never_ones_own_voice() {
    let mut sim = Sim::new();
    let two = SlotCounts { video: 0, audio: 2 };
    let people: Vec<usize> = (0..5)
        .map(|i| sim.join_with_slots("room", &format!("p{i}"), &BOTH, two))
        .collect();
    ready(&mut sim);
    let level = |loud: &[usize], who: usize| if loud.contains(&who) { -10 } else { -127 };
    let mut i = 0u16;
    let mut speak = |sim: &mut Sim, loud: &[usize], secs: u64| {
        for _ in 0..secs * 50 {
            for (k, c) in people.iter().enumerate() {
                audio(sim, *c, k as u8, i, level(loud, k));
            }
            i += 1;
            sim.advance(TICK);
        }
    };
    speak(&mut sim, &[0, 1], 2);
    let mark = sim.clients[people[4]].events.len();
    speak(&mut sim, &[0, 1], 1);
    let tags = |sim: &mut Sim, who: usize, since: usize| -> BTreeSet<u8> {
        let all = arrivals(sim, people[who]);
        let skip = all.len().saturating_sub(
            sim.clients[people[who]].events[since..]
                .iter()
                .filter(|e| matches!(e, Event::RtpPacket(_)))
                .count(),
        );
        all[skip..].iter().map(|a| a.1).collect()
    };
    assert_eq!(
        tags(&mut sim, 4, mark),
        BTreeSet::from([0, 1]),
        "the two loud ones"
    );
    for (who, &c) in people.iter().enumerate() {
        let heard: BTreeSet<u8> = arrivals(&mut sim, c).iter().map(|a| a.1).collect();
        assert!(
            !heard.contains(&(who as u8)),
            "p{who} never hears itself: {heard:?}"
        );
    }
    // p0 hears p1 and one more, not itself.
    assert!(tags(&mut sim, 0, 0).contains(&1));
    // Steady levels: no slot changes while the same two speak.
    sim.events.clear();
    speak(&mut sim, &[0, 1], 1);
    let changes = sim
        .events
        .iter()
        .filter(|e| matches!(e, EngineEvent::SlotChanged { .. }))
        .count();
    assert_eq!(changes, 0, "no flapping");
    // p3 speaks up while p0 and p1 fall silent: p4 hears p3.
    speak(&mut sim, &[3], 1);
    let mark = sim.clients[people[4]].events.len();
    speak(&mut sim, &[3], 1);
    assert!(
        tags(&mut sim, 4, mark).contains(&3),
        "the new speaker is heard"
    );
}

#[test]
fn video_slots_take_the_layout_then_recent_speakers_and_automatic_mode_takes_everyone() {
    let mut sim = Sim::new();
    let none = SlotCounts::default();
    let people: Vec<usize> = (0..4)
        .map(|i| sim.join_with_slots("room", &format!("p{i}"), &BOTH, none))
        .collect();
    let two = SlotCounts { video: 2, audio: 0 };
    let bob = sim.join_with_slots("room", "bob", &LISTEN, two);
    let bob_peer = sim.clients[bob].peer;
    ready(&mut sim);
    let videos: Vec<TrackId> = people.iter().map(|p| tracks_of(&sim, *p).1).collect();
    let mut i = 0u16;
    let mut run = |sim: &mut Sim, loud: Option<usize>, secs: u64| {
        for _ in 0..secs * 50 {
            for (k, c) in people.iter().enumerate() {
                video(sim, *c, k as u8, i, true);
                audio(
                    sim,
                    *c,
                    k as u8,
                    i,
                    if loud == Some(k) { -10 } else { -127 },
                );
            }
            i += 1;
            sim.advance(TICK);
        }
    };
    run(&mut sim, None, 1);
    let set = |v: Vec<Option<TrackId>>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(
        set(carried(&sim, bob_peer)),
        set(vec![Some(videos[0]), Some(videos[1])]),
        "automatic: the first publishers"
    );
    run(&mut sim, Some(3), 2);
    assert!(
        carried(&sim, bob_peer).contains(&Some(videos[3])),
        "the speaker's video comes in: {:?}",
        carried(&sim, bob_peer)
    );
    sim.core
        .set_layout(bob_peer, vec![videos[2]], false, sim.now)
        .expect("layout");
    run(&mut sim, Some(3), 1);
    assert_eq!(
        set(carried(&sim, bob_peer)),
        set(vec![Some(videos[2]), Some(videos[3])]),
        "the layout, then the recent speaker"
    );
}

#[test]
fn a_muted_camera_gives_its_video_slot_to_the_next_publisher() {
    let mut sim = Sim::new();
    let none = SlotCounts::default();
    let people: Vec<usize> = (0..3)
        .map(|i| sim.join_with_slots("room", &format!("p{i}"), &BOTH, none))
        .collect();
    let one = SlotCounts { video: 1, audio: 0 };
    let bob = sim.join_with_slots("room", "bob", &LISTEN, one);
    let bob_peer = sim.clients[bob].peer;
    ready(&mut sim);
    let videos: Vec<TrackId> = people.iter().map(|p| tracks_of(&sim, *p).1).collect();
    let mut i = 0u16;
    let mut run = |sim: &mut Sim| {
        for _ in 0..25 {
            for (k, c) in people.iter().enumerate() {
                video(sim, *c, k as u8, i, true);
            }
            i += 1;
            sim.advance(TICK);
        }
    };
    run(&mut sim);
    assert_eq!(
        carried(&sim, bob_peer),
        vec![Some(videos[0])],
        "publish order"
    );
    let p0 = sim.clients[people[0]].peer;
    sim.core
        .set_track_muted(p0, videos[0], true, sim.now)
        .expect("p0 mutes its camera");
    run(&mut sim);
    assert_eq!(
        carried(&sim, bob_peer),
        vec![Some(videos[1])],
        "the next one"
    );
    // Named in a layout, a muted camera still takes no slot.
    sim.core
        .set_layout(bob_peer, vec![videos[0], videos[2]], false, sim.now)
        .expect("layout");
    run(&mut sim);
    assert_eq!(carried(&sim, bob_peer), vec![Some(videos[2])]);
    sim.core
        .set_track_muted(p0, videos[0], false, sim.now)
        .expect("p0 turns its camera on");
    run(&mut sim);
    assert_eq!(
        carried(&sim, bob_peer),
        vec![Some(videos[0])],
        "back in its tile"
    );
    // Only the publisher may mute its tracks.
    assert!(sim
        .core
        .set_track_muted(bob_peer, videos[1], true, sim.now)
        .is_err());
}
