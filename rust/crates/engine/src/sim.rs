//! A shard and str0m client peers wired together in virtual time, with no sockets.
//!
//! Used by the engine's integration tests and the forwarding benchmark. Clients are ordinary
//! str0m peers (full ICE, DTLS client) in RTP mode; the network between them and the shard
//! delivers instantly, optionally dropping chosen client→shard or shard→client packets.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use crate::event::EngineEvent;
use crate::ids::{PeerId, RoomId, TrackId};
use crate::peer::SlotCounts;
use crate::shard::{ShardCore, ShardSettings};
use crate::stats::{PeerRegistry, ShardStats};

/// The slots a simulated client receives on unless it asks otherwise.
pub const DEFAULT_SLOTS: SlotCounts = SlotCounts { video: 2, audio: 2 };

/// Decides whether a client→shard datagram is lost; gets the client index and a counter.
pub type LossFn = Box<dyn FnMut(usize, u64) -> bool>;

/// Decides whether a shard→client datagram is lost; gets the client index and the datagram.
pub type DownLossFn = Box<dyn FnMut(usize, &[u8]) -> bool>;

pub struct Client {
    pub rtc: Rtc,
    /// Where the shard sees this client's datagrams come from (and sends to).
    pub addr: SocketAddr,
    /// The client's own host candidate: datagrams reach its `Rtc` addressed to this, whatever
    /// `addr` became (a NAT rebinding changes `addr` only).
    pub local: SocketAddr,
    /// The shard's answer to the client's first offer.
    pub answer_sdp: String,
    pub peer: PeerId,
    pub events: Vec<Event>,
    /// The m-lines this client offered, in order.
    pub mids: Vec<(MediaKind, Direction, Mid)>,
    /// Client→shard datagrams generated, and how many were dropped by the loss model.
    pub sent: u64,
    pub lost: u64,
    /// Shard→client datagrams delivered to this client, and how many of them were not STUN.
    pub received: u64,
    pub received_non_stun: u64,
    /// Shard→client datagrams dropped by `Sim::loss_down`.
    pub lost_down: u64,
}

pub struct Sim {
    pub core: ShardCore,
    pub now: Instant,
    pub clients: Vec<Client>,
    pub events: Vec<EngineEvent>,
    pub loss: Option<LossFn>,
    pub loss_down: Option<DownLossFn>,
    /// When false, client datagrams are held in `uplink` instead of reaching the shard.
    pub deliver_uplink: bool,
    pub uplink: Vec<(usize, Vec<u8>)>,
    /// Every server offer answered by `answer_offers`, in order.
    pub offers: Vec<(PeerId, String)>,
    /// Datagrams the shard sent to an address no client has (e.g. a spoofed source).
    pub elsewhere: Vec<(SocketAddr, Vec<u8>)>,
    next_peer: u64,
}

pub fn client_config() -> RtcConfig {
    RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
}

impl Sim {
    pub fn new() -> Sim {
        let now = Instant::now();
        let local: SocketAddr = "10.0.0.1:5000".parse().unwrap_or_else(|_| unreachable!());
        let core = ShardCore::new(
            local,
            ShardSettings::default(),
            Arc::new(AtomicU64::new(0)),
            Arc::new(ShardStats::default()),
            PeerRegistry::default(),
        );
        Sim {
            core,
            now,
            clients: Vec::new(),
            events: Vec::new(),
            loss: None,
            loss_down: None,
            deliver_uplink: true,
            uplink: Vec::new(),
            offers: Vec::new(),
            elsewhere: Vec::new(),
            next_peer: 1,
        }
    }

    /// Adds a client that offers one m-line per entry of `media`, with the default slots
    /// (`DEFAULT_SLOTS`), and returns its index.
    pub fn join(&mut self, room: &str, name: &str, media: &[(MediaKind, Direction)]) -> usize {
        self.join_with_slots(room, name, media, DEFAULT_SLOTS)
    }

    /// Adds a client that offers one m-line per entry of `media` and receives on `slots`.
    pub fn join_with_slots(
        &mut self,
        room: &str,
        name: &str,
        media: &[(MediaKind, Direction)],
        slots: SlotCounts,
    ) -> usize {
        let index = self.clients.len();
        let addr: SocketAddr = SocketAddr::from(([10, 0, 1, index as u8 + 1], 40000));
        let mut rtc = client_config().build(self.now);
        let cand = Candidate::host(addr, "udp").expect("a host candidate");
        rtc.add_local_candidate(cand);
        let mut api = rtc.sdp_api();
        let mut mids = Vec::new();
        for (kind, dir) in media {
            let mid = api.add_media(*kind, *dir, Some(name.to_owned()), None, None);
            mids.push((*kind, *dir, mid));
        }
        let (offer, pending) = api.apply().expect("the client has media to offer");
        let peer = PeerId(self.next_peer);
        self.next_peer += 1;
        let answer = self
            .core
            .create_peer(
                peer,
                RoomId::new(room),
                name.to_owned(),
                &offer.to_sdp_string(),
                slots,
                self.now,
            )
            .expect("the shard accepts the offer");
        let answer_sdp = answer.clone();
        let answer = SdpAnswer::from_sdp_string(&answer).expect("the answer parses");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("the client accepts the answer");
        self.clients.push(Client {
            rtc,
            addr,
            local: addr,
            answer_sdp,
            peer,
            events: Vec::new(),
            mids,
            sent: 0,
            lost: 0,
            received: 0,
            received_non_stun: 0,
            lost_down: 0,
        });
        self.pump();
        index
    }

    /// Moves datagrams and events until nothing is in flight.
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.clients.len() {
                self.drain_client(i);
            }
            if self.deliver_uplink {
                // Everything in flight reaches the shard as one receive batch, as a
                // `recvmmsg` hands it over.
                let uplink = std::mem::take(&mut self.uplink);
                moved |= !uplink.is_empty();
                let clients = &self.clients;
                let batch = uplink.iter().map(|(i, d)| (clients[*i].addr, &d[..]));
                self.core.handle_datagrams(self.now, batch);
            }
            let transmits: Vec<_> = self.core.take_transmits().collect();
            for t in transmits {
                moved = true;
                self.deliver_down(t.destination, &t.contents);
            }
            let events: Vec<_> = self.core.take_events().collect();
            self.events.extend(events);
            if !moved {
                return;
            }
        }
    }

    /// Polls client `i`'s `Rtc` until it yields a timeout: its events are kept, its
    /// datagrams queued on the uplink (or dropped by the loss model).
    fn drain_client(&mut self, i: usize) {
        loop {
            let out = match self.clients[i].rtc.poll_output() {
                Ok(o) => o,
                Err(_) => break,
            };
            match out {
                Output::Timeout(_) => break,
                Output::Event(e) => self.clients[i].events.push(e),
                Output::Transmit(t) => {
                    let c = &mut self.clients[i];
                    c.sent += 1;
                    let lost = match &mut self.loss {
                        Some(f) => f(i, c.sent),
                        None => false,
                    };
                    if lost {
                        c.lost += 1;
                    } else {
                        self.uplink.push((i, t.contents.into()));
                    }
                }
            }
        }
    }

    /// Has `client` write `packets` on its send line `mid` at the current instant, then
    /// delivers everything it emits to the shard as one batch with one `now` (as the runner
    /// hands the shard a whole recvmmsg batch), and pumps until nothing moves. Returns how
    /// many datagrams that batch held.
    pub fn send_burst(&mut self, client: usize, mid: Mid, packets: Vec<RtpWrite>) -> usize {
        let now = self.now;
        let c = &mut self.clients[client];
        let mut api = c.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return 0;
        };
        for p in packets {
            tx.write_rtp(p);
        }
        // str0m sends queued RTP when its clock is handled.
        let _ = c.rtc.handle_input(Input::Timeout(now));
        self.drain_client(client);
        let batch = self.uplink.len();
        self.pump();
        batch
    }

    /// Hands one shard datagram to the client it is addressed to, then drains that client.
    ///
    /// The drain must follow each datagram, as str0m requires after every input: in RTP mode
    /// an `Rtc` holds one received packet until `poll_output` hands it out, and the next
    /// `Input::Receive` overwrites it. Feeding a burst without draining in between lost all
    /// but its last packet — at the client, after the shard had sent every one.
    fn deliver_down(&mut self, dest: SocketAddr, data: &[u8]) {
        let server = self.core.local_addr();
        let now = self.now;
        let Some(i) = self.clients.iter().position(|c| c.addr == dest) else {
            self.elsewhere.push((dest, data.to_vec()));
            return;
        };
        if let Some(lose) = &mut self.loss_down {
            if lose(i, data) {
                self.clients[i].lost_down += 1;
                return;
            }
        }
        let c = &mut self.clients[i];
        c.received += 1;
        if data.first().is_some_and(|b| *b > 3) {
            c.received_non_stun += 1;
        }
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: server,
                destination: c.local,
                contents,
            },
        );
        let _ = c.rtc.handle_input(input);
        self.drain_client(i);
    }

    /// Advances virtual time by `dt`, firing every timer that falls due.
    pub fn advance(&mut self, dt: Duration) {
        self.now += dt;
        let now = self.now;
        self.core.handle_timeout(now);
        for c in &mut self.clients {
            let _ = c.rtc.handle_input(Input::Timeout(now));
        }
        self.pump();
    }

    /// Answers every server offer waiting in `events`, as a client would.
    pub fn answer_offers(&mut self) {
        while self.answer_offers_once() {
            self.pump();
        }
    }

    /// Answers the server offers waiting now, not those the answers lead to; false if there
    /// were none.
    pub fn answer_offers_once(&mut self) -> bool {
        {
            let offers: Vec<(PeerId, String)> = self
                .events
                .iter()
                .filter_map(|e| match e {
                    EngineEvent::Offer { peer, sdp } => Some((*peer, sdp.clone())),
                    _ => None,
                })
                .collect();
            if offers.is_empty() {
                return false;
            }
            self.events
                .retain(|e| !matches!(e, EngineEvent::Offer { .. }));
            self.offers.extend(offers.iter().cloned());
            for (peer, sdp) in offers {
                let Some(c) = self.clients.iter_mut().find(|c| c.peer == peer) else {
                    continue;
                };
                let offer = SdpOffer::from_sdp_string(&sdp).expect("server offers parse");
                let answer = c
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .expect("the client accepts the server offer");
                self.core
                    .apply_answer(peer, &answer.to_sdp_string(), self.now)
                    .expect("the shard accepts the answer");
            }
        }
        true
    }

    /// Runs until `done` holds or `limit` of virtual time passes; true if `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Sim) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            self.answer_offers();
            if done(self) {
                return true;
            }
            self.advance(Duration::from_millis(5));
        }
        done(self)
    }

    /// The client's payload type for `codec`.
    pub fn pt_of(&self, client: usize, codec: str0m::format::Codec) -> Option<str0m::media::Pt> {
        self.clients[client]
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }

    /// The tracks `client` has published so far, in the order the shard reported them.
    pub fn published_tracks(&self, client: usize) -> Vec<TrackId> {
        let peer = self.clients[client].peer;
        self.events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::TrackPublished { peer: p, track, .. } if *p == peer => Some(*track),
                _ => None,
            })
            .collect()
    }

    /// Runs until every client has connected (ICE and DTLS), at most `limit`.
    pub fn connect_all(&mut self, limit: Duration) -> bool {
        self.run_until(limit, |s| {
            s.clients.iter().all(|c| s.core.peer_connected(c.peer))
        })
    }

    /// The usual two-party call of the tests: "alice" publishes `media`, "bob" (one
    /// receive-only audio line) connects and subscribes to everything alice published.
    /// Panics (a test set-up failure) if they do not connect within 5 s of virtual time.
    pub fn two_party_call(&mut self, media: &[(MediaKind, Direction)]) -> (usize, usize) {
        let alice = self.join("room", "alice", media);
        let bob = self.join("room", "bob", &[(MediaKind::Audio, Direction::RecvOnly)]);
        assert!(
            self.connect_all(Duration::from_secs(5)),
            "both peers complete ICE and DTLS within 5 s of virtual time"
        );
        let tracks = self.published_tracks(alice);
        assert_eq!(tracks.len(), media.len(), "alice's tracks are published");
        self.pump();
        self.run_until(Duration::from_secs(1), |_| false);
        (alice, bob)
    }

    /// Queues one RTP packet on `client`'s first sending line of `kind` (VP8 or Opus), with an
    /// RFC 6464 audio level if given; it leaves at the next `advance`.
    pub fn send_rtp(
        &mut self,
        client: usize,
        kind: MediaKind,
        (seq, ts): (u64, u32),
        payload: Vec<u8>,
        level: Option<i8>,
    ) {
        let mid = self.send_mid(client, kind).expect("a sending line");
        let codec = match kind {
            MediaKind::Audio => str0m::format::Codec::Opus,
            MediaKind::Video => str0m::format::Codec::Vp8,
        };
        let pt = self.pt_of(client, codec).expect("the codec is negotiated");
        let now = self.now;
        let mut api = self.clients[client].rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("a send stream");
        let ext = str0m::rtp::ExtensionValues {
            audio_level: level,
            // str0m writes the level only with a voice activity flag.
            voice_activity: level.map(|l| l > -127),
            ..Default::default()
        };
        tx.write_rtp(
            RtpWrite::new(pt, seq.into(), ts, now, payload)
                .marker(true)
                .ext_vals(ext)
                .nackable(kind == MediaKind::Video),
        );
    }

    /// The mid of the line `client` received `ssrc` on.
    pub fn mid_of_ssrc(&mut self, client: usize, ssrc: str0m::rtp::Ssrc) -> Option<Mid> {
        self.clients[client]
            .rtc
            .direct_api()
            .stream_rx(&ssrc)
            .map(|s| s.mid())
    }

    /// The client's mid for the first m-line of `kind` it sends on.
    pub fn send_mid(&self, client: usize, kind: MediaKind) -> Option<Mid> {
        self.clients[client]
            .mids
            .iter()
            .find(|(k, d, _)| *k == kind && d.is_sending())
            .map(|(_, _, m)| *m)
    }
}

impl Default for Sim {
    fn default() -> Self {
        Sim::new()
    }
}
