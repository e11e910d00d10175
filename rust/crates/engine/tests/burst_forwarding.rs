//! Bursts: many RTP packets reaching the shard at one instant. The runner hands the shard a
//! whole recvmmsg batch with one `now`, and a video keyframe is many packets sent together,
//! so every packet of such a batch must reach every subscriber. Virtual time, no sockets.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Pt};
use str0m::rtp::RtpWrite;
use str0m::Event;
use visio_engine::sim::Sim;

const SECOND: Duration = Duration::from_secs(1);

/// The payload of burst packet `i`: a marker byte, the index, then filler up to `len`.
fn payload(tag: u8, i: u16, len: usize) -> Vec<u8> {
    let mut p = vec![tag, (i >> 8) as u8, i as u8];
    p.resize(len, 0xAB);
    p
}

/// One video frame of `n` packets at one instant: sequence numbers from `first_seq`, one RTP
/// timestamp, the marker on the last, each packet's index in its `len`-byte payload (tag 0x10).
fn video_frame(
    pt: Pt,
    first_seq: u64,
    ts: u32,
    now: Instant,
    (n, len): (u16, usize),
) -> Vec<RtpWrite> {
    (0..n)
        .map(|i| {
            RtpWrite::new(
                pt,
                (first_seq + u64::from(i)).into(),
                ts,
                now,
                payload(0x10, i, len),
            )
            .marker(i == n - 1)
            .nackable(true)
        })
        .collect()
}

/// Indices of the packets with `tag` and `len` that `client` received, and their sequence
/// numbers as the client saw them.
fn received(sim: &Sim, client: usize, tag: u8, len: usize) -> (BTreeSet<u16>, Vec<u64>) {
    let mut indices = BTreeSet::new();
    let mut seqs = Vec::new();
    for e in &sim.clients[client].events {
        if let Event::RtpPacket(p) = e {
            if p.payload.len() == len && p.payload[0] == tag {
                indices.insert(u16::from(p.payload[1]) << 8 | u16::from(p.payload[2]));
                seqs.push(*p.seq_no);
            }
        }
    }
    (indices, seqs)
}

fn missing(indices: &BTreeSet<u16>, n: u16) -> Vec<u16> {
    (0..n).filter(|i| !indices.contains(i)).collect()
}

/// A keyframe: 20 packets of one frame (one RTP timestamp, marker on the last) written by
/// the publisher at one instant and delivered to the shard in one batch with one `now`.
/// Each of them reaches the subscriber, at once, in order, with no gap in its sequence.
#[test]
fn a_keyframe_burst_delivered_at_one_instant_reaches_the_subscriber_whole() {
    const N: u16 = 20;
    const LEN: usize = 1000;
    let mut sim = Sim::new();
    let (alice, bob) = sim.two_party_call(&[
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ]);
    let mid = sim
        .send_mid(alice, MediaKind::Video)
        .expect("a video send line");
    let pt = sim.pt_of(alice, Codec::Vp8).expect("clients offer VP8");
    let forwarded_before = sim.core.stats().snapshot().rtp_forwarded;
    let down_before = sim.clients[bob].received_non_stun;
    let now = sim.now;
    let frame = video_frame(pt, 5000, 90_000, now, (N, LEN));
    let batch = sim.send_burst(alice, mid, frame);
    assert!(
        batch >= usize::from(N),
        "one batch holds the frame: {batch}"
    );

    // The shard's side: every packet forwarded and sent towards bob in this same instant.
    let forwarded = sim.core.stats().snapshot().rtp_forwarded - forwarded_before;
    assert_eq!(forwarded, u64::from(N), "the shard forwards each packet");
    let down = sim.clients[bob].received_non_stun - down_before;
    assert!(down >= u64::from(N), "{down} datagrams reached bob");

    // Bob's side: all of them, without time moving (no NACK/RTX needed).
    let (indices, seqs) = received(&sim, bob, 0x10, LEN);
    assert_eq!(
        indices.len(),
        usize::from(N),
        "bob receives the whole keyframe at once; missing: {:?}",
        missing(&indices, N)
    );
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gaps: {seqs:?}"
    );

    // And nothing more turns up later: no duplicates, nothing held back.
    sim.run_until(SECOND, |_| false);
    let (later, seqs) = received(&sim, bob, 0x10, LEN);
    assert_eq!(later.len(), usize::from(N));
    assert_eq!(seqs.len(), usize::from(N), "each packet once: {seqs:?}");
}

/// Audio packets that queued up behind a stall (e.g. a jitter spike) arrive together: every
/// one of them reaches the subscriber.
#[test]
fn an_audio_burst_delivered_at_one_instant_reaches_the_subscriber_whole() {
    const N: u16 = 10;
    const LEN: usize = 80;
    let mut sim = Sim::new();
    let (alice, bob) = sim.two_party_call(&[
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ]);
    let mid = sim
        .send_mid(alice, MediaKind::Audio)
        .expect("an audio send line");
    let pt = sim.pt_of(alice, Codec::Opus).expect("clients offer Opus");
    let now = sim.now;
    let stalled: Vec<RtpWrite> = (0..N)
        .map(|i| {
            RtpWrite::new(
                pt,
                (700 + u64::from(i)).into(),
                960 * u32::from(i),
                now,
                payload(0xF8, i, LEN),
            )
        })
        .collect();
    let batch = sim.send_burst(alice, mid, stalled);
    assert!(
        batch >= usize::from(N),
        "one batch holds the burst: {batch}"
    );
    let (indices, _) = received(&sim, bob, 0xF8, LEN);
    assert_eq!(
        indices.len(),
        usize::from(N),
        "bob receives every audio packet of the burst; missing: {:?}",
        missing(&indices, N)
    );
}

/// Bursts back to back at the same instant (several recvmmsg batches in one loop turn), on
/// both tracks at once: nothing is lost between or within them.
#[test]
fn consecutive_bursts_on_both_tracks_at_one_instant_all_arrive() {
    let mut sim = Sim::new();
    let (alice, bob) = sim.two_party_call(&[
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ]);
    let video = sim.send_mid(alice, MediaKind::Video).expect("video line");
    let audio = sim.send_mid(alice, MediaKind::Audio).expect("audio line");
    let vp8 = sim.pt_of(alice, Codec::Vp8).expect("VP8");
    let opus = sim.pt_of(alice, Codec::Opus).expect("Opus");
    let now = sim.now;
    for round in 0..4u16 {
        let v: Vec<RtpWrite> = (0..8u16)
            .map(|k| {
                let i = round * 8 + k;
                RtpWrite::new(
                    vp8,
                    (100 + u64::from(i)).into(),
                    3000 * u32::from(round),
                    now,
                    payload(0x10, i, 700),
                )
                .marker(k == 7)
                .nackable(true)
            })
            .collect();
        sim.send_burst(alice, video, v);
        let a: Vec<RtpWrite> = (0..3u16)
            .map(|k| {
                let i = round * 3 + k;
                RtpWrite::new(
                    opus,
                    (900 + u64::from(i)).into(),
                    960 * u32::from(i),
                    now,
                    payload(0xF8, i, 60),
                )
            })
            .collect();
        sim.send_burst(alice, audio, a);
    }
    let (v, _) = received(&sim, bob, 0x10, 700);
    let (a, _) = received(&sim, bob, 0xF8, 60);
    assert_eq!(v.len(), 32, "video missing: {:?}", missing(&v, 32));
    assert_eq!(a.len(), 12, "audio missing: {:?}", missing(&a, 12));
}

/// A receive batch's fan-out is queued at every subscriber and sent after the batch, one
/// str0m timeout pass per subscriber. A 16-packet keyframe in one batch, three subscribers:
/// each gets every packet at once, in order, no gap; what the downlink lost on the way to one
/// of them is asked for again (NACK) and resent (RTX) from what the shard sent.
#[test]
fn a_batch_reaches_every_subscriber_whole_and_in_order_and_nack_repairs_downlink_loss() {
    const N: u16 = 16;
    const LEN: usize = 900;
    let mut sim = Sim::new();
    let alice = sim.join(
        "room",
        "alice",
        &[
            (MediaKind::Audio, Direction::SendOnly),
            (MediaKind::Video, Direction::SendOnly),
        ],
    );
    let subs: Vec<usize> = ["bob", "carol", "dave"]
        .iter()
        .map(|name| sim.join("room", name, &[(MediaKind::Audio, Direction::RecvOnly)]))
        .collect();
    assert!(sim.connect_all(5 * SECOND), "everyone connects");
    let tracks = sim.published_tracks(alice);
    assert_eq!(tracks.len(), 2, "alice's tracks are published");
    // The subscribers' slots (automatic mode) carry alice's tracks.
    sim.pump();
    sim.run_until(SECOND, |_| false);

    let carol = subs[1];
    // The 3rd and the 7th media datagram of the burst towards carol are lost, once each.
    let mut seen = 0;
    sim.loss_down = Some(Box::new(move |client, d| {
        if client != carol || d.len() < LEN {
            return false;
        }
        seen += 1;
        seen == 3 || seen == 7
    }));

    let mid = sim.send_mid(alice, MediaKind::Video).expect("video line");
    let pt = sim.pt_of(alice, Codec::Vp8).expect("VP8");
    let forwarded_before = sim.core.stats().snapshot().rtp_forwarded;
    let now = sim.now;
    let frame = video_frame(pt, 3000, 180_000, now, (N, LEN));
    let batch = sim.send_burst(alice, mid, frame);
    assert!(
        batch >= usize::from(N),
        "one batch holds the frame: {batch}"
    );
    let forwarded = sim.core.stats().snapshot().rtp_forwarded - forwarded_before;
    assert_eq!(
        forwarded,
        3 * u64::from(N),
        "each packet to each subscriber"
    );

    // At once, before time moves: whole and in order where nothing was lost.
    for &s in &subs {
        let (indices, seqs) = received(&sim, s, 0x10, LEN);
        let expected = if s == carol { N - 2 } else { N };
        assert_eq!(
            indices.len(),
            usize::from(expected),
            "client {s} at once; missing: {:?}",
            missing(&indices, N)
        );
        assert!(seqs.windows(2).all(|w| w[1] > w[0]), "in order: {seqs:?}");
        if s != carol {
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "no gaps: {seqs:?}"
            );
        }
    }
    assert_eq!(sim.clients[carol].lost_down, 2, "the downlink lost two");
    assert_eq!(
        missing(&received(&sim, carol, 0x10, LEN).0, N),
        vec![2, 6],
        "carol misses the 3rd and the 7th"
    );

    // NACK/RTX repairs carol's gap; nobody gets anything twice.
    sim.run_until(2 * SECOND, |_| false);
    for &s in &subs {
        let (indices, seqs) = received(&sim, s, 0x10, LEN);
        assert_eq!(
            indices.len(),
            usize::from(N),
            "client {s} in the end; missing: {:?}",
            missing(&indices, N)
        );
        assert_eq!(seqs.len(), usize::from(N), "each packet once: {seqs:?}");
        let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
        let (lo, hi) = (distinct.first().copied(), distinct.last().copied());
        assert_eq!(
            hi.zip(lo).map(|(h, l)| h - l + 1),
            Some(u64::from(N)),
            "one run of sequence numbers at client {s}: {seqs:?}"
        );
    }
}
