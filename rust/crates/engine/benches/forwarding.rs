//! The forwarding path: one SRTP packet from a publisher into `ShardCore`, out as N protected
//! datagrams queued for N subscribers; next to it, raw AES-GCM seals of the same size.
//!
//! Every input is a real SRTP datagram that a str0m client produced for this shard. SRTP
//! replay protection drops a datagram seen before, so each one is fed exactly once; the pool
//! is refilled outside the timed section when it runs out. Virtual time moves 1 ms per input.
//!
//! `srtp_in_to_n_subscribers` feeds one datagram per call (`handle_datagram`);
//! `srtp_batch8_in_to_n_subscribers` feeds `BATCH` datagrams at one instant per call
//! (`handle_datagrams`, as the runner hands over a `recvmmsg` batch) and reports the time per
//! input datagram, so the two read alike.
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
use visio_engine::shard::ShardCore;
use visio_engine::sim::Sim;
use visio_engine::EngineEvent;

const SUBSCRIBERS: [usize; 3] = [1, 10, 50];
/// RTP payload bytes per packet (a full-size video packet).
const PAYLOAD: usize = 1000;
/// Datagrams generated per refill: one second of media at one packet per `STEP`.
const POOL: usize = 1000;
const STEP: Duration = Duration::from_millis(1);
const TAG: usize = 16;
/// RTP header bytes of the rig's datagrams (12 fixed + 16 of extensions), the AAD of a seal;
/// `Rig::refill` asserts it.
const HEADER: usize = 28;
/// Inputs fed before the setup checks count anything.
const WARM: usize = 1500;
/// Datagrams per receive batch in the batched variant (`recvmmsg` gives up to 32).
const BATCH: usize = 8;

/// Counts heap allocations while `COUNTING` is set: in the forwarding path (`handle_datagram`
/// and `take_transmits`) during the setup checks only.
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
    /// Datagrams fed per call: 1 through `handle_datagram`, more through `handle_datagrams`.
    k: usize,
    publisher: usize,
    publisher_addr: SocketAddr,
    mid: Mid,
    pt: Pt,
    next_seq: u64,
    pool: Vec<Vec<u8>>,
    cursor: usize,
    srtp_profile: String,
    tally: Tally,
    /// Whether the allocator counts during the forwarding path (setup checks only).
    count_allocs: bool,
}

/// Accounting over everything fed so far.
#[derive(Clone, Copy, Default)]
struct Tally {
    fed: u64,
    transmits: u64,
    timer_runs: u64,
    timer_transmits: u64,
    /// Time in the shard's own timers (`handle_timeout`), which is not in the measurement.
    timer_time: Duration,
}

impl Rig {
    fn new(n: usize, k: usize) -> Rig {
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
        // Each subscriber's first video slot takes the track (automatic mode) at its first
        // keyframe, which the first packet fed is.
        sim.pump();
        let open = sim.run_until(Duration::from_secs(2), |s| {
            subs.iter().all(|&p| s.core.slots_open(p))
        });
        assert!(open, "every subscriber's slots are negotiated");
        let _ = track;
        sim.run_until(Duration::from_millis(200), |_| false);
        let mid = sim
            .send_mid(publisher, MediaKind::Video)
            .expect("a video send line");
        let pt = sim.pt_of(publisher, Codec::Vp8).expect("VP8 is negotiated");
        let publisher_addr = sim.clients[publisher].addr;
        let mut rig = Rig {
            sim,
            n,
            k,
            publisher,
            publisher_addr,
            mid,
            pt,
            next_seq: 1000,
            pool: Vec::new(),
            cursor: 0,
            srtp_profile,
            tally: Tally::default(),
            count_allocs: false,
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
        assert_eq!(
            self.pool[0].len(),
            HEADER + PAYLOAD + TAG,
            "the RTP header size"
        );
        // STUN, RTCP and the rest go through as usual.
        sim.uplink = keep;
        sim.deliver_uplink = true;
        sim.pump();
    }

    /// Feeds the next `k` datagrams at one instant (`k` `STEP`s later, so the media rate is
    /// the same whatever `k`), firing the shard's due timers first. Returns the time spent in
    /// the forwarding path and the datagrams it queued.
    #[inline]
    fn feed_next(&mut self) -> (Duration, usize) {
        let k = self.k;
        if self.cursor + k > self.pool.len() {
            self.refill();
        }
        self.sim.now += STEP * k as u32;
        let now = self.sim.now;
        if self.sim.core.next_deadline().is_some_and(|d| d <= now) {
            let t0 = Instant::now();
            self.sim.core.handle_timeout(now);
            let sent = self.sim.core.take_transmits().count() as u64;
            self.tally.timer_time += t0.elapsed();
            self.tally.timer_transmits += sent;
            self.tally.timer_runs += 1;
        }
        let core = &mut self.sim.core;
        let batch = &self.pool[self.cursor..self.cursor + k];
        self.cursor += k;

        COUNTING.store(self.count_allocs, Relaxed);
        let t0 = Instant::now();
        let sent = if k == 1 {
            forward_one(core, now, self.publisher_addr, &batch[0])
        } else {
            forward_batch(core, now, self.publisher_addr, batch)
        };
        let spent = t0.elapsed();
        COUNTING.store(false, Relaxed);

        core.take_events().for_each(drop);
        self.tally.fed += k as u64;
        self.tally.transmits += sent as u64;
        (spent, sent)
    }

    /// Proves the rig measures forwarding, not the drop path, and counts allocations in the
    /// steady state (str0m's per-stream buffers grow over the first ~1000 packets).
    fn check(&mut self) {
        for _ in 0..WARM {
            self.feed_next();
        }
        let stats = self.sim.core.stats().clone();
        let k = self.k as u64;
        // Inputs; a multiple of `k`.
        let count = 496u64;
        let before = stats.snapshot().rtp_forwarded;
        let sent_before = self.tally.transmits;
        ALLOCS.store(0, Relaxed);
        ALLOC_BYTES.store(0, Relaxed);
        let mut spent = Duration::ZERO;
        self.count_allocs = true;
        for _ in 0..count / k {
            let (t, sent) = self.feed_next();
            spent += t;
            assert!(
                sent >= self.n * self.k,
                "{sent} datagrams for {} subscribers and {} inputs",
                self.n,
                self.k
            );
        }
        self.count_allocs = false;
        let allocs = ALLOCS.load(Relaxed);
        let bytes = ALLOC_BYTES.load(Relaxed);
        let forwarded = stats.snapshot().rtp_forwarded - before;
        assert_eq!(
            forwarded,
            count * self.n as u64,
            "each fresh datagram reaches every subscriber"
        );
        let sent = self.tally.transmits - sent_before;
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
            "setup N={} K={}: srtp profile {}, input datagram {} bytes; {count} fresh inputs \
             -> {forwarded} forwarded, {sent} datagrams out ({:.1} us/input unbenched); \
             {:.1} allocations and {:.0} bytes allocated per input ({:.1} allocs per \
             subscriber packet); a replayed input forwards 0 and sends {replay_out}",
            self.n,
            self.k,
            self.srtp_profile,
            last.len(),
            spent.as_secs_f64() * 1e6 / count as f64,
            allocs as f64 / count as f64,
            bytes as f64 / count as f64,
            allocs as f64 / (count * self.n as u64) as f64,
        );
    }
}

/// The timed forwarding path for one datagram (a function of its own so callgrind can
/// count it: `--toggle-collect='*forward_one*'`).
#[inline(never)]
fn forward_one(core: &mut ShardCore, now: Instant, from: SocketAddr, pkt: &[u8]) -> usize {
    core.handle_datagram(now, from, black_box(pkt));
    core.take_transmits().count()
}

/// The timed forwarding path for one receive batch (`--toggle-collect='*forward_batch*'`).
#[inline(never)]
fn forward_batch(core: &mut ShardCore, now: Instant, from: SocketAddr, batch: &[Vec<u8>]) -> usize {
    core.handle_datagrams(now, batch.iter().map(|d| (from, black_box(&d[..]))));
    core.take_transmits().count()
}

fn forwarding(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    for (name, k) in [
        ("srtp_in_to_n_subscribers", 1),
        ("srtp_batch8_in_to_n_subscribers", BATCH),
    ] {
        for n in SUBSCRIBERS {
            forwarding_one(&mut group, name, n, k);
        }
    }
    group.finish();
}

/// Criterion's time per iteration is the time per input datagram, batched or not.
fn forwarding_one(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    n: usize,
    k: usize,
) {
    {
        // Built on first use, so a filter that skips this benchmark skips the setup too.
        let mut rig: Option<Rig> = None;
        let mut start = (Tally::default(), 0);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
            let rig = rig.get_or_insert_with(|| {
                let r = Rig::new(n, k);
                start = (r.tally, r.sim.core.stats().snapshot().rtp_forwarded);
                r
            });
            b.iter_custom(|iters| {
                let batches = iters.div_ceil(k as u64);
                let mut total = Duration::ZERO;
                for _ in 0..batches {
                    total += rig.feed_next().0;
                }
                // Per input datagram, scaled to the `iters` criterion asked for.
                total.mul_f64(iters as f64 / (batches * k as u64) as f64)
            })
        });
        let Some(rig) = rig else {
            return;
        };
        let (t0, fwd0) = start;
        let t = rig.tally;
        let fed = t.fed - t0.fed;
        let forwarded = rig.sim.core.stats().snapshot().rtp_forwarded - fwd0;
        assert_eq!(
            forwarded,
            fed * n as u64,
            "no input was dropped while measuring"
        );
        let runs = t.timer_runs - t0.timer_runs;
        eprintln!(
            "forward N={n} K={k}: {fed} inputs fed while benchmarking, {forwarded} forwarded, \
             {:.4} datagrams out per subscriber packet; not measured: {runs} runs of the \
             shard's timers (one per {:.1} inputs) sent {} datagrams and took {:.2} us per \
             input; peers still {}",
            (t.transmits - t0.transmits) as f64 / forwarded as f64,
            fed as f64 / runs.max(1) as f64,
            t.timer_transmits - t0.timer_transmits,
            (t.timer_time - t0.timer_time).as_secs_f64() * 1e6 / fed.max(1) as f64,
            rig.sim.core.peer_count(),
        );
    }
}

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
    let (header, payload) = (vec![0x90; HEADER], vec![0xAB; PAYLOAD]);
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
