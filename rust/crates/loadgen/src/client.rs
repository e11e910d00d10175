//! One simulated participant: its own UDP socket (the server tells peers apart by 5-tuple),
//! a client-role str0m `Rtc` (full ICE agent, controlling; DTLS client; SRTP; RTP mode), the
//! media it publishes and the counters of what it receives.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::media::{self, monotonic_ns};
use crate::recv::{Histogram, SeqEvent, SeqTracker};
use crate::Error;

/// What a simulated participant publishes.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub audio: bool,
    pub video: bool,
    pub video_bitrate_bps: u64,
    pub video_packet_bytes: usize,
    pub keyframe_interval: Duration,
    /// A loud speaker (voice activity, level -10 dBov) or a quiet one (level -127).
    pub audio_loud: bool,
    /// A quiet sender sends a 3-byte frame every 400 ms instead of one every 20 ms.
    pub dtx: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            audio: true,
            video: true,
            video_bitrate_bps: 1_500_000,
            video_packet_bytes: 1200,
            keyframe_interval: Duration::from_secs(2),
            audio_loud: true,
            dtx: false,
        }
    }
}

/// Counters of one client, written by its worker thread, read by `LoadGen::stats`.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// CLOCK_MONOTONIC ns; 0 = not yet.
    pub connected_at_ns: AtomicU64,
    pub first_rtp_at_ns: AtomicU64,
    pub sent_rtp: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub recv_rtp: AtomicU64,
    pub recv_bytes: AtomicU64,
    pub lost: AtomicU64,
    pub duplicates: AtomicU64,
    pub keyframes_sent: AtomicU64,
    pub plis_received: AtomicU64,
    /// UDP datagrams (any kind: STUN, DTLS, SRTP, SRTCP) the kernel took / delivered, and bytes.
    pub datagrams_out: AtomicU64,
    pub datagram_bytes_out: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub datagram_bytes_in: AtomicU64,
    /// Datagrams the kernel refused to send (socket buffer full, unreachable).
    pub send_failures: AtomicU64,
    /// ICE gave up (disconnected) after having connected, or never connected.
    pub ice_disconnected: AtomicU64,
}

pub fn rtc_config() -> RtcConfig {
    RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
}

struct AudioTx {
    mid: Mid,
    pt: Option<Pt>,
    seq: u64,
    ts: u32,
    next: Instant,
    n: u64,
}

struct VideoTx {
    mid: Mid,
    pt: Option<Pt>,
    seq: u64,
    ts: u32,
    next: Instant,
    next_key: Instant,
    force_key: bool,
}

/// At most this many late packet times are caught up in one go; later ones are skipped.
const MAX_CATCH_UP: u32 = 5;

pub struct Client {
    pub id: u64,
    pub socket: UdpSocket,
    pub local: SocketAddr,
    rtc: Rtc,
    opts: ClientOptions,
    pub stats: Arc<ClientStats>,
    pending: Option<SdpPendingOffer>,
    audio: Option<AudioTx>,
    video: Option<VideoTx>,
    rx: HashMap<u32, SeqTracker>,
    connected: bool,
    rtc_timeout: Instant,
    /// The deadline last put on the worker's timer heap.
    pub scheduled: Option<Instant>,
    /// Transmits waiting for the socket.
    pub out: Vec<(SocketAddr, Vec<u8>)>,
}

impl Client {
    /// A client bound to `socket`, and its first offer.
    pub fn new(
        id: u64,
        socket: UdpSocket,
        opts: ClientOptions,
        stats: Arc<ClientStats>,
        now: Instant,
    ) -> Result<(Client, String), Error> {
        let local = socket.local_addr()?;
        let mut rtc = rtc_config().build(now);
        let cand = Candidate::host(local, "udp").map_err(|e| Error::Sdp(e.to_string()))?;
        rtc.add_local_candidate(cand);
        let stream = format!("load-{id}");
        let mut api = rtc.sdp_api();
        let mut audio_mid = None;
        let mut video_mid = None;
        if opts.audio {
            audio_mid = Some(api.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some(stream.clone()),
                Some(format!("{stream}-audio")),
                None,
            ));
        }
        if opts.video {
            video_mid = Some(api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some(stream.clone()),
                Some(format!("{stream}-video")),
                None,
            ));
        }
        if !opts.audio && !opts.video {
            // An offer needs a media section: a receive-only one, which the server answers
            // `inactive`.
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| Error::Sdp("nothing to offer".into()))?;
        let client = Client {
            id,
            socket,
            local,
            rtc,
            stats,
            pending: Some(pending),
            audio: audio_mid.map(|mid| AudioTx {
                mid,
                pt: None,
                seq: 1,
                ts: 0,
                next: now,
                n: 0,
            }),
            video: video_mid.map(|mid| VideoTx {
                mid,
                pt: None,
                seq: 1,
                ts: 0,
                next: now,
                next_key: now,
                force_key: true,
            }),
            opts,
            rx: HashMap::new(),
            connected: false,
            rtc_timeout: now,
            scheduled: None,
            out: Vec::new(),
        };
        Ok((client, offer.to_sdp_string()))
    }

    pub fn apply_answer(&mut self, sdp: &str) -> Result<(), Error> {
        let pending = self
            .pending
            .take()
            .ok_or_else(|| Error::InvalidState("no offer of ours is outstanding".into()))?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| Error::Sdp(e.to_string()))?;
        self.rtc.sdp_api().accept_answer(pending, answer)?;
        Ok(())
    }

    /// The server's offer (others' tracks) → our answer. Refused while our own offer is
    /// outstanding (glare): the server yields and sends a fresh offer after its answer.
    pub fn apply_offer(&mut self, sdp: &str) -> Result<String, Error> {
        if self.pending.is_some() {
            return Err(Error::InvalidState(
                "glare: our own offer is outstanding".into(),
            ));
        }
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| Error::Sdp(e.to_string()))?;
        let answer = self.rtc.sdp_api().accept_offer(offer)?;
        Ok(answer.to_sdp_string())
    }

    pub fn receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        self.stats.datagrams_in.fetch_add(1, Relaxed);
        self.stats
            .datagram_bytes_in
            .fetch_add(data.len() as u64, Relaxed);
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!("load client {}: input refused: {e}", self.id);
        }
    }

    /// When this client next needs a turn.
    pub fn next_deadline(&self) -> Instant {
        let mut t = self.rtc_timeout;
        if self.connected {
            if let Some(a) = &self.audio {
                t = t.min(a.next);
            }
            if let Some(v) = &self.video {
                t = t.min(v.next);
            }
        }
        t
    }

    /// A timer turn: media that fell due (if `sending`), then str0m's own timers.
    pub fn tick(&mut self, now: Instant, sending: bool, hist: &Histogram) {
        if self.connected {
            self.send_due_media(now, sending);
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!("load client {}: timeout refused: {e}", self.id);
        }
        self.drain(now, hist);
    }

    /// Drains str0m's output after any input.
    pub fn drain(&mut self, now: Instant, hist: &Histogram) {
        loop {
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!("load client {}: {e}", self.id);
                    self.rtc_timeout = now + Duration::from_millis(50);
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    self.rtc_timeout = t;
                    return;
                }
                Output::Transmit(t) => self.out.push((t.destination, t.contents.into())),
                Output::Event(e) => self.on_event(e, now, hist),
            }
        }
    }

    fn on_event(&mut self, e: Event, now: Instant, hist: &Histogram) {
        match e {
            Event::Connected => {
                self.connected = true;
                let _ = self.stats.connected_at_ns.compare_exchange(
                    0,
                    monotonic_ns(),
                    Relaxed,
                    Relaxed,
                );
                if let Some(a) = &mut self.audio {
                    a.next = now;
                }
                if let Some(v) = &mut self.video {
                    v.next = now;
                    v.next_key = now;
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.stats.ice_disconnected.fetch_add(1, Relaxed);
            }
            Event::KeyframeRequest(_) => {
                self.stats.plis_received.fetch_add(1, Relaxed);
                if let Some(v) = &mut self.video {
                    v.force_key = true;
                }
            }
            Event::RtpPacket(p) => {
                let now_ns = monotonic_ns();
                let s = &self.stats;
                if s.recv_rtp.fetch_add(1, Relaxed) == 0 {
                    let _ = s
                        .first_rtp_at_ns
                        .compare_exchange(0, now_ns, Relaxed, Relaxed);
                }
                s.recv_bytes.fetch_add(p.payload.len() as u64, Relaxed);
                match self.rx.entry(*p.header.ssrc).or_default().on(*p.seq_no) {
                    SeqEvent::Ahead { gap } => {
                        if gap > 0 {
                            s.lost.fetch_add(gap, Relaxed);
                        }
                    }
                    SeqEvent::Recovered => {
                        let _ = s
                            .lost
                            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
                    }
                    SeqEvent::Duplicate => {
                        s.duplicates.fetch_add(1, Relaxed);
                    }
                    SeqEvent::Old => {}
                }
                if let Some(sent) = media::read_stamp(&p.payload) {
                    if sent <= now_ns {
                        hist.record((now_ns - sent) / 1000);
                    }
                }
            }
            _ => {}
        }
    }

    fn pt_for(&self, mid: Mid, codec: Codec) -> Option<Pt> {
        let remote = self.rtc.media(mid).map(|m| m.remote_pts()).unwrap_or(&[]);
        self.rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| remote.is_empty() || remote.contains(&p.pt()))
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }

    fn send_due_media(&mut self, now: Instant, sending: bool) {
        let now_ns = monotonic_ns();
        let ptime = Duration::from_millis(media::AUDIO_PTIME_MS);
        if self.audio.as_ref().is_some_and(|a| a.pt.is_none()) {
            let mid = self.audio.as_ref().map(|a| a.mid);
            let pt = mid.and_then(|m| self.pt_for(m, Codec::Opus));
            if let Some(a) = &mut self.audio {
                a.pt = pt;
            }
        }
        if self.video.as_ref().is_some_and(|v| v.pt.is_none()) {
            let mid = self.video.as_ref().map(|v| v.mid);
            let pt = mid.and_then(|m| self.pt_for(m, Codec::Vp8));
            if let Some(v) = &mut self.video {
                v.pt = pt;
            }
        }
        let opts = &self.opts;
        let stats = &self.stats;
        if let Some(a) = &mut self.audio {
            let mut caught = 0;
            while a.next <= now {
                if caught == MAX_CATCH_UP {
                    a.next = now + ptime;
                    break;
                }
                caught += 1;
                a.next += ptime;
                a.n += 1;
                let ts = a.ts;
                a.ts = a.ts.wrapping_add(media::AUDIO_TICKS_PER_PACKET);
                let Some(pt) = a.pt else { continue };
                if !sending {
                    continue;
                }
                let size = if opts.audio_loud {
                    media::AUDIO_LOUD_BYTES
                } else if opts.dtx {
                    if a.n % media::DTX_EVERY != 1 {
                        continue;
                    }
                    media::AUDIO_DTX_BYTES
                } else {
                    media::AUDIO_QUIET_BYTES
                };
                let ext = ExtensionValues {
                    audio_level: Some(if opts.audio_loud {
                        media::LEVEL_LOUD
                    } else {
                        media::LEVEL_QUIET
                    }),
                    voice_activity: Some(opts.audio_loud),
                    ..Default::default()
                };
                let payload = media::audio_payload(size, now_ns);
                let mut api = self.rtc.direct_api();
                let Some(tx) = api.stream_tx_by_mid(a.mid, None) else {
                    continue;
                };
                tx.write_rtp(RtpWrite::new(pt, a.seq.into(), ts, now, payload).ext_vals(ext));
                a.seq += 1;
                stats.sent_rtp.fetch_add(1, Relaxed);
                stats.sent_bytes.fetch_add(size as u64, Relaxed);
            }
        }
        if let Some(v) = &mut self.video {
            let frame = Duration::from_nanos(1_000_000_000 / media::VIDEO_FPS);
            let delta_bytes = (opts.video_bitrate_bps / 8 / media::VIDEO_FPS).max(1) as usize;
            let mut caught = 0;
            while v.next <= now {
                if caught == MAX_CATCH_UP {
                    v.next = now + frame;
                    break;
                }
                caught += 1;
                v.next += frame;
                let ts = v.ts;
                v.ts = v.ts.wrapping_add(media::VIDEO_TICKS_PER_FRAME);
                let Some(pt) = v.pt else { continue };
                if !sending {
                    continue;
                }
                let key = v.force_key || v.next_key <= now;
                if key {
                    v.force_key = false;
                    v.next_key = now + opts.keyframe_interval;
                    stats.keyframes_sent.fetch_add(1, Relaxed);
                }
                let frame_bytes = if key {
                    delta_bytes * media::KEYFRAME_FACTOR
                } else {
                    delta_bytes
                };
                let sizes: Vec<usize> =
                    media::split_frame(frame_bytes, opts.video_packet_bytes).collect();
                let last = sizes.len() - 1;
                let mut api = self.rtc.direct_api();
                let Some(tx) = api.stream_tx_by_mid(v.mid, None) else {
                    continue;
                };
                for (i, size) in sizes.into_iter().enumerate() {
                    let payload = media::video_payload(size, i == 0, key, now_ns);
                    tx.write_rtp(
                        RtpWrite::new(pt, v.seq.into(), ts, now, payload)
                            .marker(i == last)
                            .nackable(true),
                    );
                    v.seq += 1;
                    stats.sent_rtp.fetch_add(1, Relaxed);
                    stats.sent_bytes.fetch_add(size as u64, Relaxed);
                }
            }
        }
    }
}
