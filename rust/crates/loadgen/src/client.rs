//! One simulated participant: its own UDP socket (the server tells peers apart by 5-tuple),
//! a client-role str0m `Rtc` (full ICE agent, controlling; DTLS client; SRTP; RTP mode), the
//! media it publishes and the counters of what it receives.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
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
    /// Raw mode: datagrams from anyone but the relay (not in `datagrams_in`), e.g. a server still
    /// sending to a port a participant of an earlier run had.
    pub foreign_in: AtomicU64,
    /// ICE gave up (disconnected) after having connected, or never connected.
    pub ice_disconnected: AtomicU64,
    /// Who the received packets came from, per receive line, since the last reset.
    pub sources: Mutex<SourceTable>,
}

/// Per receive line (a str0m mid; in raw mode `ssrc-<n>`), the sender ids read from the
/// payloads' tags and how many packets each sent, since the last reset. Sender 0: packets
/// without a sender id (3-byte DTX frames). The worker locks it once per received RTP packet
/// (uncontended but for `LoadGen::stats`); it allocates only when a line or a sender is new
/// (a reset keeps the capacity).
#[derive(Debug, Default)]
pub struct SourceTable {
    lines: Vec<LineSources>,
}

#[derive(Debug)]
struct LineSources {
    name: String,
    senders: Vec<(u64, u64)>,
}

impl SourceTable {
    /// The index of line `name`, added if new.
    pub fn line(&mut self, name: &str) -> usize {
        if let Some(i) = self.lines.iter().position(|l| l.name == name) {
            return i;
        }
        self.lines.push(LineSources {
            name: name.to_owned(),
            senders: Vec::with_capacity(4),
        });
        self.lines.len() - 1
    }

    /// One packet from `sender` (0: untagged) on line `line` (an index from `line`).
    pub fn count(&mut self, line: usize, sender: u64) {
        let Some(l) = self.lines.get_mut(line) else {
            return;
        };
        match l.senders.iter_mut().find(|(s, _)| *s == sender) {
            Some((_, n)) => *n += 1,
            None => l.senders.push((sender, 1)),
        }
    }

    /// Forgets the counts (the lines stay known).
    pub fn reset(&mut self) {
        for l in &mut self.lines {
            l.senders.clear();
        }
    }

    /// (line, sender, packets), lines in order of first packet, senders in order of arrival.
    pub fn snapshot(&self) -> Vec<(String, u64, u64)> {
        self.lines
            .iter()
            .flat_map(|l| l.senders.iter().map(|&(s, n)| (l.name.clone(), s, n)))
            .collect()
    }
}

/// A received stream: its sequence tracking and its line in the source table.
#[derive(Debug, Default)]
struct RxStream {
    seq: SeqTracker,
    line: Option<usize>,
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

impl AudioTx {
    fn new(mid: Mid, pt: Option<Pt>, now: Instant) -> Self {
        AudioTx {
            mid,
            pt,
            seq: 1,
            ts: 0,
            next: now,
            n: 0,
        }
    }
}

impl VideoTx {
    /// Starts with a keyframe.
    fn new(mid: Mid, pt: Option<Pt>, now: Instant) -> Self {
        VideoTx {
            mid,
            pt,
            seq: 1,
            ts: 0,
            next: now,
            next_key: now,
            force_key: true,
        }
    }
}

/// At most this many late packet times are caught up in one go; later ones are skipped.
const MAX_CATCH_UP: u32 = 5;

/// How a client's media travels: a str0m peer (ICE, DTLS, SRTP, RTCP) to the server, or plain
/// RTP in the clear to the raw relay (`relay.rs`), the baseline.
enum Transport {
    Rtc(Box<Rtc>),
    Raw(RawTx),
}

/// The raw mode's sender state: where to send and the SSRCs (the relay rewrites nothing).
struct RawTx {
    relay: SocketAddr,
    audio_ssrc: u32,
    video_ssrc: u32,
}

/// Payload types the raw mode writes (no negotiation: nobody parses them but us).
const RAW_PT_OPUS: u8 = 111;
const RAW_PT_VP8: u8 = 96;
/// RFC 8285 one-byte header extension id the raw mode gives the audio level (RFC 6464).
const RAW_EXT_AUDIO_LEVEL: u8 = 1;
/// A raw client needs no timer of its own beyond its media; it still wakes this often.
const RAW_IDLE: Duration = Duration::from_millis(500);

pub struct Client {
    pub id: u64,
    pub socket: UdpSocket,
    pub local: SocketAddr,
    transport: Transport,
    opts: ClientOptions,
    pub stats: Arc<ClientStats>,
    pending: Option<SdpPendingOffer>,
    audio: Option<AudioTx>,
    video: Option<VideoTx>,
    rx: HashMap<u32, RxStream>,
    /// Raw mode: the last extended sequence number per SSRC (str0m extends them otherwise).
    raw_seq: HashMap<u32, u64>,
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
            transport: Transport::Rtc(Box::new(rtc)),
            stats,
            pending: Some(pending),
            audio: audio_mid.map(|mid| AudioTx::new(mid, None, now)),
            video: video_mid.map(|mid| VideoTx::new(mid, None, now)),
            opts,
            rx: HashMap::new(),
            raw_seq: HashMap::new(),
            connected: false,
            rtc_timeout: now,
            scheduled: None,
            out: Vec::new(),
        };
        Ok((client, offer.to_sdp_string()))
    }

    /// A raw-mode client (the baseline): no str0m, no handshake; it sends plain RTP to
    /// `relay` from now on (its media counts as connected at once) and counts what it receives.
    pub fn new_raw(
        id: u64,
        socket: UdpSocket,
        opts: ClientOptions,
        stats: Arc<ClientStats>,
        relay: SocketAddr,
        now: Instant,
    ) -> Result<Client, Error> {
        let local = socket.local_addr()?;
        let _ = stats
            .connected_at_ns
            .compare_exchange(0, monotonic_ns(), Relaxed, Relaxed);
        // SSRCs unique per client (ids are unique per generator).
        let base = (id as u32).wrapping_mul(2);
        Ok(Client {
            id,
            socket,
            local,
            transport: Transport::Raw(RawTx {
                relay,
                audio_ssrc: base,
                video_ssrc: base.wrapping_add(1),
            }),
            stats,
            pending: None,
            audio: opts
                .audio
                .then(|| AudioTx::new(Mid::from("0"), Some(RAW_PT_OPUS.into()), now)),
            video: opts
                .video
                .then(|| VideoTx::new(Mid::from("1"), Some(RAW_PT_VP8.into()), now)),
            opts,
            rx: HashMap::new(),
            raw_seq: HashMap::new(),
            connected: true,
            rtc_timeout: now + RAW_IDLE,
            scheduled: None,
            out: Vec::new(),
        })
    }

    fn rtc(&mut self) -> Result<&mut Rtc, Error> {
        match &mut self.transport {
            Transport::Rtc(rtc) => Ok(rtc),
            Transport::Raw(_) => Err(Error::InvalidState(
                "a raw (baseline) client has no SDP".into(),
            )),
        }
    }

    pub fn apply_answer(&mut self, sdp: &str) -> Result<(), Error> {
        self.rtc()?;
        let pending = self
            .pending
            .take()
            .ok_or_else(|| Error::InvalidState("no offer of ours is outstanding".into()))?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| Error::Sdp(e.to_string()))?;
        self.rtc()?.sdp_api().accept_answer(pending, answer)?;
        Ok(())
    }

    /// The server's offer (others' tracks) → our answer. Refused while our own offer is
    /// outstanding (glare): the server yields and sends a fresh offer after its answer.
    pub fn apply_offer(&mut self, sdp: &str) -> Result<String, Error> {
        self.rtc()?;
        if self.pending.is_some() {
            return Err(Error::InvalidState(
                "glare: our own offer is outstanding".into(),
            ));
        }
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| Error::Sdp(e.to_string()))?;
        let answer = self.rtc()?.sdp_api().accept_offer(offer)?;
        Ok(answer.to_sdp_string())
    }

    pub fn receive(&mut self, now: Instant, source: SocketAddr, data: &[u8], hist: &Histogram) {
        if let Transport::Raw(raw) = &self.transport {
            if source != raw.relay {
                self.stats.foreign_in.fetch_add(1, Relaxed);
                return;
            }
        }
        self.stats.datagrams_in.fetch_add(1, Relaxed);
        self.stats
            .datagram_bytes_in
            .fetch_add(data.len() as u64, Relaxed);
        let rtc = match &mut self.transport {
            Transport::Rtc(rtc) => rtc,
            Transport::Raw(_) => return self.receive_raw(data, hist),
        };
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
        if let Err(e) = rtc.handle_input(input) {
            tracing::debug!("load client {}: input refused: {e}", self.id);
        }
    }

    /// Raw mode: an RTP packet in the clear (RFC 3550 header, RFC 8285 extensions skipped).
    fn receive_raw(&mut self, data: &[u8], hist: &Histogram) {
        let Some((ssrc, seq, payload)) = parse_rtp(data) else {
            return;
        };
        let last = self
            .raw_seq
            .entry(ssrc)
            .or_insert(u64::from(seq) + (1 << 32));
        let ext = extend_seq(*last, seq);
        *last = (*last).max(ext);
        let line = self.rx.get(&ssrc).and_then(|r| r.line);
        let line = line.unwrap_or_else(|| lock(&self.stats.sources).line(&format!("ssrc-{ssrc}")));
        count_rtp(&self.stats, &mut self.rx, ssrc, line, ext, payload, hist);
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
        match &mut self.transport {
            Transport::Rtc(rtc) => {
                if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!("load client {}: timeout refused: {e}", self.id);
                }
            }
            Transport::Raw(_) => self.rtc_timeout = now + RAW_IDLE,
        }
        self.drain(now, hist);
    }

    /// Drains str0m's output after any input.
    pub fn drain(&mut self, now: Instant, hist: &Histogram) {
        loop {
            let Transport::Rtc(rtc) = &mut self.transport else {
                return;
            };
            let out = match rtc.poll_output() {
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
                let ssrc = *p.header.ssrc;
                let line = match self.rx.get(&ssrc).and_then(|r| r.line) {
                    Some(line) => line,
                    None => {
                        // First packet of this stream: its receive line (mid), once.
                        let Transport::Rtc(rtc) = &mut self.transport else {
                            return;
                        };
                        let name = rtc
                            .direct_api()
                            .stream_rx(&Ssrc::from(ssrc))
                            .map_or_else(|| format!("ssrc-{ssrc}"), |s| s.mid().to_string());
                        lock(&self.stats.sources).line(&name)
                    }
                };
                count_rtp(
                    &self.stats,
                    &mut self.rx,
                    ssrc,
                    line,
                    *p.seq_no,
                    &p.payload,
                    hist,
                );
            }
            _ => {}
        }
    }

    fn pt_for(&self, mid: Mid, codec: Codec) -> Option<Pt> {
        let Transport::Rtc(rtc) = &self.transport else {
            return None;
        };
        let remote = rtc.media(mid).map(|m| m.remote_pts()).unwrap_or(&[]);
        rtc.codec_config()
            .params()
            .iter()
            .filter(|p| remote.is_empty() || remote.contains(&p.pt()))
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }

    fn send_due_media(&mut self, now: Instant, sending: bool) {
        let now_ns = monotonic_ns();
        // Ids are 1..=u32::MAX (`LoadGen` refuses more): the payloads' sender tag.
        let sender = u32::try_from(self.id).unwrap_or(0);
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
                let payload = media::audio_payload(size, now_ns, sender);
                match &mut self.transport {
                    Transport::Rtc(rtc) => {
                        let mut api = rtc.direct_api();
                        let Some(tx) = api.stream_tx_by_mid(a.mid, None) else {
                            continue;
                        };
                        tx.write_rtp(
                            RtpWrite::new(pt, a.seq.into(), ts, now, payload).ext_vals(ext),
                        );
                    }
                    Transport::Raw(raw) => {
                        let level = ext.audio_level.unwrap_or(media::LEVEL_QUIET);
                        let dgram = raw_rtp(
                            *pt,
                            a.seq,
                            ts,
                            raw.audio_ssrc,
                            false,
                            Some((opts.audio_loud, level)),
                            &payload,
                        );
                        self.out.push((raw.relay, dgram));
                    }
                }
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
                let mut api;
                let mut sink = match &mut self.transport {
                    Transport::Rtc(rtc) => {
                        api = rtc.direct_api();
                        let Some(tx) = api.stream_tx_by_mid(v.mid, None) else {
                            continue;
                        };
                        VideoSink::Rtc(tx)
                    }
                    Transport::Raw(raw) => VideoSink::Raw(raw, &mut self.out),
                };
                for (i, size) in sizes.into_iter().enumerate() {
                    let payload = media::video_payload(size, i == 0, key, now_ns, sender);
                    match &mut sink {
                        VideoSink::Rtc(tx) => {
                            tx.write_rtp(
                                RtpWrite::new(pt, v.seq.into(), ts, now, payload)
                                    .marker(i == last)
                                    .nackable(true),
                            );
                        }
                        VideoSink::Raw(raw, out) => {
                            let dgram =
                                raw_rtp(*pt, v.seq, ts, raw.video_ssrc, i == last, None, &payload);
                            out.push((raw.relay, dgram));
                        }
                    }
                    v.seq += 1;
                    stats.sent_rtp.fetch_add(1, Relaxed);
                    stats.sent_bytes.fetch_add(size as u64, Relaxed);
                }
            }
        }
    }
}

/// Where a frame's packets go.
enum VideoSink<'a> {
    Rtc(&'a mut str0m::rtp::StreamTx),
    Raw(&'a RawTx, &'a mut Vec<(SocketAddr, Vec<u8>)>),
}

/// Counts one received RTP packet: first packet time, loss/duplicates by extended sequence
/// number per SSRC, latency from the payload's stamp. The same for both transports.
fn count_rtp(
    s: &ClientStats,
    rx: &mut HashMap<u32, RxStream>,
    ssrc: u32,
    line: usize,
    seq: u64,
    payload: &[u8],
    hist: &Histogram,
) {
    let now_ns = monotonic_ns();
    if s.recv_rtp.fetch_add(1, Relaxed) == 0 {
        let _ = s
            .first_rtp_at_ns
            .compare_exchange(0, now_ns, Relaxed, Relaxed);
    }
    s.recv_bytes.fetch_add(payload.len() as u64, Relaxed);
    let stream = rx.entry(ssrc).or_default();
    stream.line = Some(line);
    match stream.seq.on(seq) {
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
    let tag = media::read_tag(payload);
    if let Some(sent) = tag.map(|t| t.sent_ns) {
        if sent <= now_ns {
            hist.record((now_ns - sent) / 1000);
        }
    }
    let sender = tag.and_then(|t| t.sender).map_or(0, u64::from);
    lock(&s.sources).count(line, sender);
}

fn lock(m: &Mutex<SourceTable>) -> std::sync::MutexGuard<'_, SourceTable> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A plain RTP packet (RFC 3550): 12-byte header; with `level` = (voice activity, level in
/// -dBov) an RFC 8285 one-byte extension block carrying the RFC 6464 audio level (8 bytes).
pub fn raw_rtp(
    pt: u8,
    seq: u64,
    ts: u32,
    ssrc: u32,
    marker: bool,
    level: Option<(bool, i8)>,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + 8 + payload.len());
    p.push(if level.is_some() { 0x90 } else { 0x80 });
    p.push((u8::from(marker) << 7) | (pt & 0x7f));
    p.extend_from_slice(&(seq as u16).to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    if let Some((vad, level)) = level {
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01]);
        let v = (u8::from(vad) << 7) | (level.unsigned_abs() & 0x7f);
        p.extend_from_slice(&[RAW_EXT_AUDIO_LEVEL << 4, v, 0, 0]);
    }
    p.extend_from_slice(payload);
    p
}

/// (SSRC, sequence number, payload) of a plain RTP packet; None if it is not one.
pub fn parse_rtp(data: &[u8]) -> Option<(u32, u16, &[u8])> {
    let b0 = *data.first()?;
    if b0 >> 6 != 2 || data.len() < 12 {
        return None;
    }
    let seq = u16::from_be_bytes([data[2], data[3]]);
    let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    let mut at = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let words = data.get(at + 2..at + 4)?;
        at += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let mut end = data.len();
    if b0 & 0x20 != 0 {
        end = end.checked_sub(usize::from(*data.last()?))?;
    }
    Some((ssrc, seq, data.get(at..end)?))
}

/// The extended sequence number of `seq` nearest to the extended `last`.
fn extend_seq(last: u64, seq: u16) -> u64 {
    let cand = (last & !0xffff) | u64::from(seq);
    if cand + 0x8000 < last {
        cand + 0x1_0000
    } else if cand > last + 0x8000 && cand >= 0x1_0000 {
        cand - 0x1_0000
    } else {
        cand
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_rtp_reads_back_with_and_without_the_audio_level_extension() {
        let a = raw_rtp(111, 70_000, 960, 42, false, Some((true, -10)), b"opus");
        assert_eq!(a.len(), 12 + 8 + 4);
        assert_eq!(parse_rtp(&a), Some((42, 70_000u64 as u16, &b"opus"[..])));
        assert_eq!(&a[12..20], &[0xbe, 0xde, 0, 1, 0x10, 0x80 | 10, 0, 0]);
        let v = raw_rtp(96, 5, 3000, 43, true, None, b"vp8!");
        assert_eq!(v[1], 0x80 | 96);
        assert_eq!(parse_rtp(&v), Some((43, 5, &b"vp8!"[..])));
        assert_eq!(parse_rtp(&v[..11]), None);
        assert_eq!(parse_rtp(&a[..14]), None);
    }

    #[test]
    fn the_source_table_counts_senders_per_line_and_a_reset_starts_a_fresh_window() {
        let mut t = SourceTable::default();
        let a = t.line("0");
        let b = t.line("3");
        assert_eq!(t.line("0"), a);
        for _ in 0..5 {
            t.count(a, 7);
        }
        t.count(a, 0);
        t.count(b, 9);
        t.count(b, 9);
        t.count(b, 11);
        t.count(99, 1); // an unknown line: ignored
        assert_eq!(
            t.snapshot(),
            vec![
                ("0".to_owned(), 7, 5),
                ("0".to_owned(), 0, 1),
                ("3".to_owned(), 9, 2),
                ("3".to_owned(), 11, 1),
            ]
        );
        t.reset();
        assert_eq!(t.snapshot(), vec![]);
        t.count(b, 11);
        assert_eq!(t.snapshot(), vec![("3".to_owned(), 11, 1)]);
        assert_eq!(t.line("3"), b);
    }

    #[test]
    fn a_raw_round_trip_counts_the_sender_from_the_payload_tag() {
        // What a receiver does with a packet of client 12: the line is its SSRC's, the sender
        // the payload's tag (str0m mode reads the mid instead of the SSRC).
        let stats = ClientStats::default();
        let hist = Histogram::default();
        let mut rx = HashMap::new();
        let payload = media::video_payload(1200, true, true, monotonic_ns(), 12);
        let dgram = raw_rtp(96, 1, 0, 24, true, None, &payload);
        let (ssrc, seq, body) = parse_rtp(&dgram).expect("rtp");
        let line = lock(&stats.sources).line(&format!("ssrc-{ssrc}"));
        count_rtp(&stats, &mut rx, ssrc, line, u64::from(seq), body, &hist);
        let dtx = media::audio_payload(media::AUDIO_DTX_BYTES, 0, 12);
        count_rtp(&stats, &mut rx, ssrc, line, u64::from(seq) + 1, &dtx, &hist);
        assert_eq!(
            lock(&stats.sources).snapshot(),
            vec![("ssrc-24".to_owned(), 12, 1), ("ssrc-24".to_owned(), 0, 1)]
        );
        assert_eq!(stats.recv_rtp.load(Relaxed), 2);
    }

    #[test]
    fn sequence_numbers_extend_across_the_wrap_and_back() {
        let base = 1u64 << 32;
        assert_eq!(extend_seq(base + 65_535, 0), base + 65_536);
        assert_eq!(extend_seq(base + 65_536, 65_535), base + 65_535);
        assert_eq!(extend_seq(base + 100, 101), base + 101);
        assert_eq!(extend_seq(base + 100, 90), base + 90);
    }
}
