//! A connected peer's send address moves only to an address that proved it receives.
//!
//! A participant knows its own ICE credentials, so it can sign a nominating STUN check and send
//! it from a forged source. Were the shard to follow it, everything the SFU sends that peer
//! (the fan-out of a whole room) would go to the forged address: a reflection. These tests run
//! the shard with real str0m clients in virtual time.

use std::net::SocketAddr;
use std::time::Duration;

use str0m::format::Codec;
use str0m::ice::{StunMessage, TransId};
use str0m::media::{Direction, MediaKind};
use str0m::rtp::RtpWrite;
use str0m::Event;
use visio_engine::sim::Sim;
use visio_engine::stats::DropReason;
use visio_engine::EngineEvent;

const SECOND: Duration = Duration::from_secs(1);

/// Sends `n` video packets from `client`, 10 ms apart; each payload carries `tag` and its index
/// after a VP8 descriptor and keyframe header (a video slot takes a source on a keyframe).
fn send_video(sim: &mut Sim, client: usize, tag: u8, n: u16) {
    let mid = sim
        .send_mid(client, MediaKind::Video)
        .expect("a video line");
    let pt = sim.pt_of(client, Codec::Vp8).expect("VP8");
    for i in 0..n {
        let mut payload = vec![0x10, 0x00, tag, (i >> 8) as u8, i as u8];
        payload.resize(400, 0xAB);
        let now = sim.now;
        let seq = 1000 + u64::from(tag) * 1000 + u64::from(i);
        let mut api = sim.clients[client].rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("a send stream");
        tx.write_rtp(RtpWrite::new(pt, seq.into(), 3000 * seq as u32, now, payload).marker(true));
        sim.advance(Duration::from_millis(10));
    }
}

fn received_with_tag(sim: &Sim, client: usize, tag: u8) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    for e in &sim.clients[client].events {
        if let Event::RtpPacket(p) = e {
            if p.payload.len() == 400 && p.payload[2] == tag {
                seen.insert((p.payload[3], p.payload[4]));
            }
        }
    }
    seen.len()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    visio_engine::dtls_probe::crypto_provider()
        .sha1_hmac_provider
        .sha1_hmac(key, parts)
}

fn sdp_value<'a>(sdp: &'a str, attr: &str) -> &'a str {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix(attr))
        .expect("the attribute is in the SDP")
}

/// What a participant can build from its own SDP exchange: a correctly signed Binding Request
/// with USE-CANDIDATE and the highest priority, as if from `client`'s ICE agent.
fn forged_nomination(sim: &mut Sim, client: usize) -> Vec<u8> {
    let client_ufrag = sim.clients[client]
        .rtc
        .direct_api()
        .local_ice_credentials()
        .ufrag;
    let answer = &sim.clients[client].answer_sdp;
    let server_ufrag = sdp_value(answer, "a=ice-ufrag:");
    let server_pwd = sdp_value(answer, "a=ice-pwd:");
    let username = format!("{server_ufrag}:{client_ufrag}");
    let msg = StunMessage::binding_request(&username, TransId::new(), true, 7, u32::MAX - 1, true);
    let mut buf = vec![0u8; 1500];
    let n = msg
        .to_bytes(Some(server_pwd.as_bytes()), &mut buf, hmac)
        .expect("a request fits");
    buf.truncate(n);
    buf
}

fn is_stun(d: &[u8]) -> bool {
    matches!(d.first(), Some(0..=3))
}

fn to(sim: &Sim, addr: SocketAddr) -> Vec<&Vec<u8>> {
    sim.elsewhere
        .iter()
        .filter(|(a, _)| *a == addr)
        .map(|(_, d)| d)
        .collect()
}

#[test]
fn a_nomination_signed_by_a_participant_from_a_new_address_moves_no_media_there() {
    let mut sim = Sim::new();
    let (alice, bob) = sim.two_party_call(&[(MediaKind::Video, Direction::SendOnly)]);
    let victim: SocketAddr = "10.66.0.1:9".parse().expect("an address");
    let rejected_before = sim.core.stats().drops(DropReason::PeerRejected);

    // Bob signs nominations with his own credentials and sends them from the victim's address,
    // five times over two seconds, while alice's video flows to him.
    for round in 0..5u8 {
        let forged = forged_nomination(&mut sim, bob);
        sim.core.handle_datagram(sim.now, victim, &forged);
        sim.pump();
        send_video(&mut sim, alice, round + 1, 40);
    }
    sim.run_until(SECOND, |_| false);

    let reflected = to(&sim, victim);
    let media: Vec<_> = reflected.iter().filter(|d| !is_stun(d)).collect();
    assert!(
        media.is_empty(),
        "{} non-STUN datagrams ({} bytes) went to the forged address",
        media.len(),
        media.iter().map(|d| d.len()).sum::<usize>()
    );
    // One answer per forged check, plus our own checks to the new address: at most one per
    // 500 ms of the 3.3 s the attack lasted.
    let stun = reflected.len();
    assert!(
        stun <= 5 + 8,
        "{stun} STUN datagrams went to the forged address"
    );
    let bytes: usize = reflected.iter().map(|d| d.len()).sum();
    assert!(
        bytes <= 5 * 150 + 8 * 150,
        "{bytes} bytes to the forged address"
    );
    // Bob's media never left his real address.
    for round in 0..5u8 {
        assert_eq!(received_with_tag(&sim, bob, round + 1), 40, "round {round}");
    }
    assert!(
        sim.core.stats().drops(DropReason::UnverifiedAddress) >= 5,
        "the held-back checks are counted"
    );
    assert_eq!(
        sim.core.stats().drops(DropReason::PeerRejected),
        rejected_before
    );
}

#[test]
fn a_new_address_that_answers_our_check_gets_the_media_after_the_nomination() {
    let mut sim = Sim::new();
    let (alice, bob) = sim.two_party_call(&[(MediaKind::Video, Direction::SendOnly)]);
    // This time the new address is really reachable by whoever signs for bob: it answers the
    // check the shard sends it (a second interface of bob's, say).
    let second: SocketAddr = "10.66.0.2:7000".parse().expect("an address");
    let forged = forged_nomination(&mut sim, bob);
    sim.core.handle_datagram(sim.now, second, &forged);
    sim.pump();
    let probe = to(&sim, second)
        .into_iter()
        .find(|d| d.get(..2) == Some(&[0x00, 0x01][..]))
        .cloned()
        .expect("the shard checks the new address with a Binding Request");
    let parsed = StunMessage::parse(&probe).expect("the check parses");
    assert!(parsed.is_binding_request());
    let bob_creds = sim.clients[bob].rtc.direct_api().local_ice_credentials();
    assert!(
        parsed.verify(bob_creds.pass.as_bytes(), hmac),
        "the check is signed with bob's password"
    );
    let answer = |tid: TransId| {
        let mut buf = vec![0u8; 200];
        let n = StunMessage::binding_reply(tid, second)
            .to_bytes(Some(bob_creds.pass.as_bytes()), &mut buf, hmac)
            .expect("a reply fits");
        buf.truncate(n);
        buf
    };
    // A reply with some other transaction id proves nothing.
    sim.core
        .handle_datagram(sim.now, second, &answer(TransId::new()));
    sim.pump();
    send_video(&mut sim, alice, 1, 20);
    assert!(
        to(&sim, second).iter().all(|d| is_stun(d)),
        "no media before the right answer"
    );
    assert_eq!(received_with_tag(&sim, bob, 1), 20);

    sim.core
        .handle_datagram(sim.now, second, &answer(parsed.trans_id()));
    sim.pump();
    send_video(&mut sim, alice, 2, 20);
    let media = to(&sim, second).iter().filter(|d| !is_stun(d)).count();
    assert!(
        media >= 20,
        "after the answer, the nomination takes effect: {media} datagrams"
    );
}

#[test]
fn a_client_behind_a_rebinding_nat_keeps_receiving_from_its_new_address() {
    let mut sim = Sim::new();
    let (alice, bob) = sim.two_party_call(&[(MediaKind::Video, Direction::SendOnly)]);
    send_video(&mut sim, alice, 1, 20);
    assert_eq!(received_with_tag(&sim, bob, 1), 20);
    // The NAT in front of bob picks a new external port: his datagrams now come from there,
    // and only what the shard sends there reaches him.
    sim.clients[bob].addr = "10.0.1.2:40001".parse().expect("an address");
    // Nothing but STUN answers reach him until the shard follows: str0m keeps the old pair
    // until its ICE-lite timeout (15 s without checks) and the new address has to answer our
    // check first.
    let received = sim.clients[bob].received_non_stun;
    let moved = sim.run_until(25 * SECOND, |s| s.clients[bob].received_non_stun > received);
    assert!(
        moved,
        "the shard follows bob's consent checks to the new address"
    );
    send_video(&mut sim, alice, 2, 50);
    sim.run_until(SECOND, |_| false);
    assert_eq!(received_with_tag(&sim, bob, 2), 50);
    let bob_peer = sim.clients[bob].peer;
    assert!(sim.core.peer_connected(bob_peer));
    assert!(!sim
        .events
        .iter()
        .any(|e| matches!(e, EngineEvent::PeerFailed { .. })));
}
