//! The forwarding path: one SRTP packet from a publisher into `ShardCore`, out as N protected
//! datagrams queued for N subscribers; next to it, raw AES-GCM seals of the same size.
//!
//! Every input is a real SRTP datagram that a str0m client produced for this shard. SRTP
//! replay protection drops a datagram seen before, so each one is fed exactly once; the pool
//! is refilled outside the timed section when it runs out. Virtual time moves 1 ms per input.
//!
//! Run: `cargo bench -p visio-engine --bench forwarding -- --warm-up-time 1 --measurement-time 3`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::rtp::RtpWrite;
use str0m::Input;
use visio_engine::peer::OutState;
use visio_engine::sim::Sim;
use visio_engine::EngineEvent;

const SUBSCRIBERS: [usize; 3] = [1, 10, 50];
/// RTP payload bytes per packet (a full-size video packet).
const PAYLOAD: usize = 1000;
/// Datagrams generated per refill: one second of media at one packet per `STEP`.
const POOL: usize = 1000;
const STEP: Duration = Duration::from_millis(1);
const TAG: usize = 16;

/// Counts heap allocations while `COUNTING` is set (only during the setup checks).
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            ALLOCS.fetch_add(1, Relaxed);
            ALLOC_BYTES.fetch_add(layout.size() as u64, Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            ALLOCS.fetch_add(1, Relaxed);
            ALLOC_BYTES.fetch_add(new_size as u64, Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// One publisher sending VP8 and `n` subscribers receiving it, with a pool of fresh SRTP.
struct Rig {
    sim: Sim,
    n: usize,
    publisher: usize,
    publisher_addr: SocketAddr,
    mid: Mid,
    pt: Pt,
    next_seq: u64,
    pool: Vec<Vec<u8>>,
    cursor: usize,
    srtp_profile: String,
    // Accounting over everything fed so far.
    fed: u64,
    transmits: u64,
    timeouts: u64,
    timeout_transmits: u64,
}

impl Rig {
    fn new(n: usize) -> Rig {
        let mut sim = Sim::new();
        let publisher = sim.join(
            "bench",
            "publisher",
            &[(MediaKind::Video, Direction::SendOnly)],
        );
        for i in 0..n {
            sim.join(
                "bench",
                &format!("sub{i}"),
                &[(MediaKind::Audio, Direction::RecvOnly)],
            );
        }
        let connected = sim.run_until(Duration::from_secs(10), |s| {
            s.clients.iter().all(|c| s.core.peer_connected(c.peer))
        });
        assert!(connected, "all {} peers connect", n + 1);
        let pub_peer = sim.clients[publisher].peer;
        let track = sim
            .events
            .iter()
            .find_map(|e| match e {
                EngineEvent::TrackPublished { peer, track, .. } if *peer == pub_peer => {
                    Some(*track)
                }
                _ => None,
            })
            .expect("the publisher's video track is published");
        let srtp_profile = sim
            .events
            .iter()
            .find_map(|e| match e {
                EngineEvent::PeerConnected { srtp_profile, .. } => Some(srtp_profile.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let subs: Vec<_> = sim.clients[1..].iter().map(|c| c.peer).collect();
        for &s in &subs {
            sim.core.subscribe(s, track, sim.now).expect("subscribe");
        }
        sim.pump();
        let open = sim.run_until(Duration::from_secs(2), |s| {
            subs.iter().all(|&p| {
                s.core
                    .subscription_states(p)
                    .iter()
                    .any(|(t, st)| *t == track && matches!(st, OutState::Open(_)))
            })
        });
        assert!(open, "every subscription is negotiated");
        sim.run_until(Duration::from_millis(200), |_| false);
        let mid = sim
            .send_mid(publisher, MediaKind::Video)
            .expect("a video send line");
        let pt = sim.clients[publisher]
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt())
            .expect("VP8 is negotiated");
        let publisher_addr = sim.clients[publisher].addr;
        let mut rig = Rig {
            sim,
            n,
            publisher,
            publisher_addr,
            mid,
            pt,
            next_seq: 1000,
            pool: Vec::new(),
            cursor: 0,
            srtp_profile,
            fed: 0,
            transmits: 0,
            timeouts: 0,
            timeout_transmits: 0,
        };
        rig.refill();
        rig.check();
        rig
    }

    /// Lets every client catch up with the shard's clock (ICE consent, RTCP), then has the
    /// publisher encrypt `POOL` new packets and keeps them from the shard.
    fn refill(&mut self) {
        let sim = &mut self.sim;
        sim.deliver_uplink = true;
        sim.advance(STEP);
        sim.answer_offers();
        sim.events.clear();
        for c in &mut sim.clients {
            c.events.clear();
        }

        sim.deliver_uplink = false;
        let now = sim.now;
        for _ in 0..POOL {
            let seq = self.next_seq;
            self.next_seq += 1;
            let mut payload = vec![0x10, (seq >> 8) as u8, seq as u8];
            payload.resize(PAYLOAD, 0xAB);
            let mut api = sim.clients[self.publisher].rtc.direct_api();
            let tx = api.stream_tx_by_mid(self.mid, None).expect("a send stream");
            // 90 kHz clock, one packet per STEP (1 ms).
            tx.write_rtp(
                RtpWrite::new(self.pt, seq.into(), 90 * seq as u32, now, payload)
                    .marker(true)
                    .nackable(true),
            );
        }
        // str0m sends queued RTP when its clock is handled.
        let _ = sim.clients[self.publisher]
            .rtc
            .handle_input(Input::Timeout(now));
        sim.pump();
        let pt = *self.pt;
        let mut keep = Vec::new();
        self.pool.clear();
        self.cursor = 0;
        for (i, d) in std::mem::take(&mut sim.uplink) {
            let media = i == self.publisher
                && d.len() > PAYLOAD
                && (128..=191).contains(&d[0])
                && d[1] & 0x7f == pt;
            if media {
                self.pool.push(d);
            } else {
                keep.push((i, d));
            }
        }
        assert_eq!(
            self.pool.len(),
            POOL,
            "every packet written became one datagram"
        );
        // STUN, RTCP and the rest go through as usual.
        sim.uplink = keep;
        sim.deliver_uplink = true;
        sim.pump();
    }

    /// Feeds the next datagram (one `STEP` later), firing the shard's due timers first.
    /// Returns the time spent in the forwarding path and the datagrams it queued.
    #[inline]
    fn feed_next(&mut self) -> (Duration, usize) {
        if self.cursor == self.pool.len() {
            self.refill();
        }
        self.sim.now += STEP;
        let now = self.sim.now;
        if self.sim.core.next_deadline().is_some_and(|d| d <= now) {
            self.timeouts += 1;
            self.sim.core.handle_timeout(now);
            self.timeout_transmits += self.sim.core.take_transmits().count() as u64;
        }
        let core = &mut self.sim.core;
        let pkt = &self.pool[self.cursor];
        self.cursor += 1;

        let t0 = Instant::now();
        core.handle_datagram(now, self.publisher_addr, black_box(pkt));
        let sent = core.take_transmits().count();
        let spent = t0.elapsed();

        core.take_events().for_each(drop);
        self.fed += 1;
        self.transmits += sent as u64;
        (spent, sent)
    }

    /// Proves the rig measures forwarding, not the drop path, and counts allocations.
    fn check(&mut self) {
        for w in 0..8 {
            ALLOCS.store(0, Relaxed);
            ALLOC_BYTES.store(0, Relaxed);
            let mut big = 0;
            for _ in 0..300 {
                if self.cursor == self.pool.len() { self.refill(); }
                COUNTING.store(true, Relaxed);
                self.feed_next();
                COUNTING.store(false, Relaxed);
                big += 0;
            }
            eprintln!("WIN n={} w={w} allocs/input {:.2} bytes/input {:.0}", self.n, ALLOCS.load(Relaxed) as f64/300.0, ALLOC_BYTES.load(Relaxed) as f64/300.0);
            let _ = big;
        }
        let stats = self.sim.core.stats().clone();
        let count = 300u64;
        let before = stats.snapshot().rtp_forwarded;
        let sent_before = self.transmits;
        ALLOCS.store(0, Relaxed);
        ALLOC_BYTES.store(0, Relaxed);
        let mut spent = Duration::ZERO;
        for _ in 0..count {
            // A refill allocates a lot; keep it out of the per-packet count.
            if self.cursor == self.pool.len() {
                self.refill();
            }
            COUNTING.store(true, Relaxed);
            let (t, sent) = self.feed_next();
            COUNTING.store(false, Relaxed);
            spent += t;
            assert!(
                sent >= self.n,
                "{sent} datagrams for {} subscribers",
                self.n
            );
        }
        let allocs = ALLOCS.load(Relaxed);
        let bytes = ALLOC_BYTES.load(Relaxed);
        let forwarded = stats.snapshot().rtp_forwarded - before;
        assert_eq!(
            forwarded,
            count * self.n as u64,
            "each fresh datagram reaches every subscriber"
        );
        let sent = self.transmits - sent_before;
        assert!(
            sent <= count * self.n as u64 + count / 2,
            "mostly media out: {sent} datagrams"
        );

        // Replay the last datagram: SRTP drops it, nothing is forwarded.
        let last = self.pool[self.cursor - 1].clone();
        let before = stats.snapshot().rtp_forwarded;
        self.sim
            .core
            .handle_datagram(self.sim.now, self.publisher_addr, &last);
        let replay_out = self.sim.core.take_transmits().count();
        assert_eq!(
            stats.snapshot().rtp_forwarded,
            before,
            "a replayed datagram is not forwarded"
        );

        eprintln!(
            "setup N={}: srtp profile {}, input datagram {} bytes; {count} fresh inputs \
             -> {forwarded} forwarded, {sent} datagrams out ({:.1} us/input unbenched); \
             {:.1} allocations and {:.0} bytes allocated per input ({:.1} allocs per \
             subscriber packet); a replayed input forwards 0 and sends {replay_out}",
            self.n,
            self.srtp_profile,
            last.len(),
            spent.as_secs_f64() * 1e6 / count as f64,
            allocs as f64 / count as f64,
            bytes as f64 / count as f64,
            allocs as f64 / (count * self.n as u64) as f64,
        );
    }
}

fn forwarding(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    for n in SUBSCRIBERS {
        let mut rig = Rig::new(n);
        let stats = rig.sim.core.stats().clone();
        let (fed0, tx0, fwd0) = (rig.fed, rig.transmits, stats.snapshot().rtp_forwarded);
        let (to0, tto0) = (rig.timeouts, rig.timeout_transmits);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(
            BenchmarkId::new("srtp_in_to_n_subscribers", n),
            &n,
            |b, _| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += rig.feed_next().0;
                    }
                    total
                })
            },
        );
        let fed = rig.fed - fed0;
        let forwarded = stats.snapshot().rtp_forwarded - fwd0;
        assert_eq!(
            forwarded,
            fed * n as u64,
            "no input was dropped while measuring"
        );
        eprintln!(
            "forward N={n}: {fed} inputs fed while benchmarking, {forwarded} forwarded, \
             {:.4} datagrams out per subscriber packet; {} shard timer runs outside the \
             timing sent {} datagrams; peers still {}",
            (rig.transmits - tx0) as f64 / forwarded as f64,
            rig.timeouts - to0,
            rig.timeout_transmits - tto0,
            rig.sim.core.peer_count(),
        );
    }
    group.finish();
}

/// An RTP header (with extensions) and payload the size the rig's datagrams carry.
fn sample_packet() -> (Vec<u8>, Vec<u8>) {
    // 12-byte fixed header plus the extension block str0m writes; see the setup line for
    // the real datagram size (header + PAYLOAD + 16-byte tag).
    let header = vec![0x90; HEADER];
    let payload = vec![0xAB; PAYLOAD];
    (header, payload)
}

/// Header bytes (AAD) of the rig's datagrams: input datagram length − PAYLOAD − TAG.
const HEADER: usize = 24;

fn nonce(i: u64) -> Nonce {
    let mut iv = [0u8; 12];
    iv[4..].copy_from_slice(&i.to_be_bytes());
    Nonce::assume_unique_for_key(iv)
}

/// Seals like str0m's SRTP does: copy into the output buffer, seal in place, append the tag.
fn seal(key: &LessSafeKey, i: u64, header: &[u8], payload: &[u8], out: &mut [u8]) {
    let len = payload.len();
    out[..len].copy_from_slice(payload);
    let tag = key
        .seal_in_place_separate_tag(nonce(i), Aad::from(header), &mut out[..len])
        .expect("seal");
    out[len..len + TAG].copy_from_slice(tag.as_ref());
}

fn baseline(c: &mut Criterion) {
    let (header, payload) = sample_packet();
    let k128 = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7; 16]).expect("key"));
    let k256 = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).expect("key"));
    let mut out = vec![0u8; PAYLOAD + TAG];
    // One sealed packet to open, as the shard opens the publisher's datagram.
    let mut sealed = vec![0u8; PAYLOAD + TAG];
    seal(&k256, 0, &header, &payload, &mut sealed);
    let mut plain = vec![0u8; PAYLOAD];

    let mut group = c.benchmark_group("baseline");
    for n in SUBSCRIBERS {
        group.throughput(Throughput::Elements(n as u64));
        let mut ctr = 1u64;
        group.bench_with_input(BenchmarkId::new("aes128gcm_seal_x_n", n), &n, |b, &n| {
            b.iter(|| {
                for _ in 0..n {
                    ctr += 1;
                    seal(&k128, ctr, &header, black_box(&payload), &mut out);
                }
                black_box(&out);
            })
        });
        group.bench_with_input(BenchmarkId::new("aes256gcm_seal_x_n", n), &n, |b, &n| {
            b.iter(|| {
                for _ in 0..n {
                    ctr += 1;
                    seal(&k256, ctr, &header, black_box(&payload), &mut out);
                }
                black_box(&out);
            })
        });
        group.bench_with_input(
            BenchmarkId::new("aes256gcm_open_1_seal_x_n", n),
            &n,
            |b, &n| {
                b.iter(|| {
                    let (ct, tag) = sealed.split_at(PAYLOAD);
                    k256.open_separate_gather(
                        nonce(0),
                        Aad::from(&header[..]),
                        black_box(ct),
                        tag,
                        &mut plain,
                    )
                    .expect("open");
                    for _ in 0..n {
                        ctr += 1;
                        seal(&k256, ctr, &header, &plain, &mut out);
                    }
                    black_box(&out);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, forwarding, baseline);
criterion_main!(benches);
