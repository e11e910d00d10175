//! The load generator against the real engine on 127.0.0.1 sockets: ICE, DTLS and SRTP for
//! real; signalling done here by hand (what the Python side does over WebSockets).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use visio_engine::peer::SlotCounts;
use visio_engine::{Engine, EngineConfig, EngineEvent, PeerId, TrackId};
use visio_loadgen::{ClientOptions, LoadGen, Snapshot};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Enough slots for everyone in these small rooms.
const SLOTS: SlotCounts = SlotCounts { video: 4, audio: 3 };

struct Rig {
    engine: Engine,
    gen: LoadGen,
    /// engine peer → load client
    clients: HashMap<PeerId, u64>,
    /// published track → the load client that publishes it
    publishers: HashMap<TrackId, u64>,
    /// per engine peer: its slot lines' mids, in slot order
    lines: HashMap<PeerId, Vec<String>>,
    /// per engine peer: slot → the track it carries now
    slots: HashMap<PeerId, HashMap<usize, Option<TrackId>>>,
}

impl Rig {
    fn new() -> Rig {
        let mut engine = Engine::new(EngineConfig {
            shards: 1,
            bind_ip: LOCALHOST,
            port_min: 0,
            port_max: 0,
            ..EngineConfig::default()
        })
        .expect("engine config");
        engine.start().expect("engine starts");
        let mut gen = LoadGen::new(1, LOCALHOST).expect("loadgen");
        gen.start().expect("loadgen starts");
        Rig {
            engine,
            gen,
            clients: HashMap::new(),
            publishers: HashMap::new(),
            lines: HashMap::new(),
            slots: HashMap::new(),
        }
    }

    fn join(&mut self, name: &str, opts: ClientOptions) -> u64 {
        let (id, offer) = self.gen.add_client(opts).expect("a client offer");
        let (peer, answer) = self
            .engine
            .create_peer("room", name, offer, SLOTS)
            .expect("the engine accepts the offer");
        self.gen
            .apply_answer(id, answer)
            .expect("the client accepts");
        self.clients.insert(peer, id);
        id
    }

    /// Relays engine events for `time`: server offers (the slot lines) are answered by the
    /// clients; the slots (automatic mode) carry everyone else's tracks.
    fn run(&mut self, time: Duration) {
        let end = Instant::now() + time;
        while Instant::now() < end {
            for e in self.engine.drain_events() {
                match e {
                    EngineEvent::Offer { peer, sdp } => {
                        let id = self.clients[&peer];
                        let answer = self.gen.apply_offer(id, sdp).expect("answer");
                        self.engine.apply_answer(peer, answer).expect("applied");
                    }
                    EngineEvent::TrackPublished { peer, track, .. } => {
                        self.publishers.insert(track, self.clients[&peer]);
                    }
                    EngineEvent::SlotLines { peer, lines } => {
                        self.lines
                            .insert(peer, lines.into_iter().map(|(mid, _)| mid).collect());
                    }
                    EngineEvent::SlotChanged { peer, slot, track } => {
                        self.slots.entry(peer).or_default().insert(slot, track);
                    }
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn client(s: &Snapshot, id: u64) -> &visio_loadgen::ClientSnapshot {
    s.clients.iter().find(|c| c.id == id).expect("the client")
}

#[test]
fn a_publisher_reaches_two_subscribers_with_no_loss_and_measured_latency() {
    let mut rig = Rig::new();
    let publisher = rig.join(
        "pub",
        ClientOptions {
            video_bitrate_bps: 300_000,
            ..ClientOptions::default()
        },
    );
    let subs: Vec<u64> = (0..2)
        .map(|i| {
            rig.join(
                &format!("sub{i}"),
                ClientOptions {
                    audio: false,
                    video: false,
                    ..ClientOptions::default()
                },
            )
        })
        .collect();
    rig.run(Duration::from_secs(3));
    let s = rig.gen.stats();
    let p = client(&s, publisher);
    assert!(p.connected_at_ns.is_some(), "{p:?}");
    assert!(p.sent_rtp > 100, "{p:?}");
    // The engine asks for a keyframe when a subscriber joins the video track.
    assert!(p.plis_received >= 1, "{p:?}");
    assert!(p.keyframes_sent >= 2, "{p:?}");
    for id in &subs {
        let c = client(&s, *id);
        assert!(c.connected_at_ns.is_some(), "{c:?}");
        assert!(c.first_rtp_at_ns >= c.connected_at_ns, "{c:?}");
        assert!(c.recv_rtp > 100, "{c:?}");
        assert_eq!((c.lost, c.duplicates), (0, 0), "{c:?}");
        assert_eq!(c.sent_rtp, 0);
    }
    assert!(s.latency_samples > 200, "{s:?}");
    let (p50, p99, max) = (
        s.latency_p50_us.unwrap_or(0),
        s.latency_p99_us.unwrap_or(0),
        s.latency_max_us.unwrap_or(0),
    );
    assert!(
        0 < p50 && p50 <= p99 && p99 <= max && max < 1_000_000,
        "{s:?}"
    );

    // Paused, nothing more is sent; the connections stay.
    rig.gen.set_sending(false);
    rig.run(Duration::from_millis(200));
    let before = rig.gen.stats().totals.sent_rtp;
    rig.run(Duration::from_millis(300));
    let after = rig.gen.stats().totals;
    assert_eq!(after.sent_rtp, before);
    assert_eq!(after.ice_disconnected, 0);
    rig.gen.stop();
    rig.engine.stop();
}

/// mid → the load client whose track the engine says slot `mid` of `peer` carries.
fn slot_senders(rig: &Rig, peer: PeerId) -> HashMap<String, u64> {
    let lines = &rig.lines[&peer];
    let mut out = HashMap::new();
    for (slot, track) in &rig.slots[&peer] {
        if let Some(track) = track {
            out.insert(lines[*slot].clone(), rig.publishers[track]);
        }
    }
    out
}

#[test]
fn each_slot_line_receives_only_the_publisher_the_engine_put_in_it() {
    let mut rig = Rig::new();
    let opts = ClientOptions {
        video_bitrate_bps: 200_000,
        ..ClientOptions::default()
    };
    let a = rig.join("a", opts.clone());
    let b = rig.join("b", opts.clone());
    let sub = rig.join(
        "sub",
        ClientOptions {
            audio: false,
            video: false,
            ..opts
        },
    );
    let peer_of = |rig: &Rig, id: u64| {
        *rig.clients
            .iter()
            .find(|(_, c)| **c == id)
            .expect("a peer")
            .0
    };
    rig.run(Duration::from_secs(3));
    rig.gen.reset_sources();
    rig.run(Duration::from_millis(1500));
    let s = rig.gen.stats();
    for (me, others) in [(a, vec![b]), (b, vec![a]), (sub, vec![a, b])] {
        let want = slot_senders(&rig, peer_of(&rig, me));
        // The others' audio and video, each in a slot of its own; never one's own.
        let mut filled: Vec<u64> = want.values().copied().collect();
        filled.sort_unstable();
        let mut expect: Vec<u64> = others.iter().flat_map(|o| [*o, *o]).collect();
        expect.sort_unstable();
        assert_eq!(filled, expect, "client {me}: slots {want:?}");
        let got = &client(&s, me).sources;
        let mut lines_with_packets = std::collections::HashSet::new();
        for (mid, sender, packets) in got {
            assert_eq!(
                want.get(mid),
                Some(sender),
                "client {me}: {packets} packets from {sender} on {mid}; slots {want:?}"
            );
            lines_with_packets.insert(mid.clone());
        }
        assert_eq!(lines_with_packets.len(), want.len(), "{me}: {got:?}");
    }
    rig.gen.stop();
    rig.engine.stop();
}
