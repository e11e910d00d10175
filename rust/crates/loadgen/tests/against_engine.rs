//! The load generator against the real engine on 127.0.0.1 sockets: ICE, DTLS and SRTP for
//! real; signalling done here by hand (what the Python side does over WebSockets).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use visio_engine::peer::SlotCounts;
use visio_engine::{Engine, EngineConfig, EngineEvent, PeerId};
use visio_loadgen::{ClientOptions, LoadGen, Snapshot};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Enough slots for everyone in these small rooms.
const SLOTS: SlotCounts = SlotCounts { video: 4, audio: 3 };

struct Rig {
    engine: Engine,
    gen: LoadGen,
    /// engine peer → load client
    clients: HashMap<PeerId, u64>,
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
                if let EngineEvent::Offer { peer, sdp } = e {
                    let id = self.clients[&peer];
                    let answer = self.gen.apply_offer(id, sdp).expect("answer");
                    self.engine.apply_answer(peer, answer).expect("applied");
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
