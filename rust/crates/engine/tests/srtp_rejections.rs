//! Replayed and tampered SRTP/SRTCP from a peer's own address: refused, never forwarded, and
//! counted as `peer_rejected` exactly once per datagram. Real str0m clients, virtual time.

use std::time::Duration;

use str0m::format::Codec;
use str0m::media::{Direction, MediaKind};
use str0m::rtp::RtpWrite;
use str0m::Event;
use visio_engine::sim::Sim;
use visio_engine::stats::DropReason;

const SECOND: Duration = Duration::from_secs(1);

fn write_video(sim: &mut Sim, client: usize, i: u16) {
    let mid = sim
        .send_mid(client, MediaKind::Video)
        .expect("a video line");
    let pt = sim.pt_of(client, Codec::Vp8).expect("VP8");
    // A VP8 keyframe start (a video slot takes its source on one), then a tag and the index.
    let mut payload = vec![0x10, 0x00, 0x33, (i >> 8) as u8, i as u8];
    payload.resize(300, 0xCD);
    let now = sim.now;
    let mut api = sim.clients[client].rtc.direct_api();
    let tx = api.stream_tx_by_mid(mid, None).expect("a send stream");
    tx.write_rtp(
        RtpWrite::new(
            pt,
            (500 + u64::from(i)).into(),
            3000 * u32::from(i),
            now,
            payload,
        )
        .marker(true),
    );
}

fn video_received(sim: &Sim, client: usize) -> usize {
    sim.clients[client]
        .events
        .iter()
        .filter(
            |e| matches!(e, Event::RtpPacket(p) if p.payload.len() == 300 && p.payload[2] == 0x33),
        )
        .count()
}

fn is_rtcp(d: &[u8]) -> bool {
    d.len() > 2 && (64..96).contains(&(d[1] & 0x7f))
}

fn rejected(sim: &Sim) -> u64 {
    sim.core.stats().drops(DropReason::PeerRejected)
}

#[test]
fn replayed_and_tampered_srtp_and_srtcp_are_refused_and_each_counted_once() {
    let mut sim = Sim::new();
    let (alice, bob) = sim.two_party_call(&[(MediaKind::Video, Direction::SendOnly)]);
    let alice_addr = sim.clients[alice].addr;

    // Hold alice's datagrams back for 1.5 s while she sends four video packets: we get her
    // SRTP packets and at least one SRTCP sender report.
    sim.deliver_uplink = false;
    for i in 0..4 {
        write_video(&mut sim, alice, i);
        sim.advance(Duration::from_millis(10));
    }
    sim.advance(1500 * Duration::from_millis(1));
    let held: Vec<(usize, Vec<u8>)> = std::mem::take(&mut sim.uplink);
    sim.deliver_uplink = true;
    let mut srtp = Vec::new();
    let mut srtcp = Vec::new();
    for (client, d) in held {
        if client != alice {
            sim.core
                .handle_datagram(sim.now, sim.clients[client].addr, &d);
        } else if matches!(d.first(), Some(128..=191)) {
            if is_rtcp(&d) {
                srtcp.push(d);
            } else {
                srtp.push(d);
            }
        } else {
            sim.core.handle_datagram(sim.now, alice_addr, &d);
        }
    }
    sim.pump();
    assert!(srtp.len() >= 4, "alice's video packets: {}", srtp.len());
    assert!(!srtcp.is_empty(), "alice's RTCP");

    // The genuine packets, once each: forwarded, nothing counted.
    let r0 = rejected(&sim);
    let seen0 = video_received(&sim, bob);
    let (first, rest) = srtp.split_at(1);
    sim.core.handle_datagram(sim.now, alice_addr, &first[0]);
    sim.core.handle_datagram(sim.now, alice_addr, &srtcp[0]);
    sim.pump();
    sim.advance(Duration::from_millis(20));
    assert_eq!(rejected(&sim), r0, "authentic packets are not counted");
    assert_eq!(video_received(&sim, bob), seen0 + 1);

    // A replayed SRTP packet.
    sim.core.handle_datagram(sim.now, alice_addr, &first[0]);
    sim.pump();
    assert_eq!(rejected(&sim), r0 + 1, "a replayed SRTP packet");
    // A tampered SRTP packet (one bit of the encrypted payload).
    let mut bad = rest[0].clone();
    let n = bad.len();
    bad[n - 20] ^= 0x01;
    sim.core.handle_datagram(sim.now, alice_addr, &bad);
    sim.pump();
    assert_eq!(rejected(&sim), r0 + 2, "a tampered SRTP packet");
    // A replayed SRTCP packet.
    sim.core.handle_datagram(sim.now, alice_addr, &srtcp[0]);
    sim.pump();
    assert_eq!(rejected(&sim), r0 + 3, "a replayed SRTCP packet");
    // A tampered SRTCP packet (the last byte: the tag or, under GCM, the index).
    let mut bad = srtcp.last().expect("an SRTCP packet").clone();
    let n = bad.len();
    bad[n - 1] ^= 0x01;
    sim.core.handle_datagram(sim.now, alice_addr, &bad);
    sim.pump();
    assert_eq!(rejected(&sim), r0 + 4, "a tampered SRTCP packet");
    assert_eq!(
        video_received(&sim, bob),
        seen0 + 1,
        "nothing refused was forwarded"
    );

    // The rest of alice's packets still go through (a replay window, not a blockade).
    for d in &rest[1..] {
        sim.core.handle_datagram(sim.now, alice_addr, d);
        sim.pump();
    }
    sim.run_until(SECOND, |_| false); // the pacer sends what was queued at one instant
    assert_eq!(video_received(&sim, bob), seen0 + rest.len());
    assert_eq!(rejected(&sim), r0 + 4);
}
