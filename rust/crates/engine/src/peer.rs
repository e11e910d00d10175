//! One client's WebRTC transport: its `Rtc`, what it publishes, its receive slots, and the
//! server side of negotiation.
//!
//! Everything here touches this peer's own `Rtc` only; moving packets between peers is the
//! shard's job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::{Codec, CodecSpec};
use str0m::media::{Direction, Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Input, Rtc, RtcConfig};

use crate::error::{Error, Result};
use crate::event::MediaKind;
use crate::ids::{PeerId, RoomId, TrackId};
use crate::offer::{parse_offer, sdp_error};
use crate::sdp_text;
use crate::slots::Slot;
use crate::stats::PeerStats;

/// Where our slot lines stand in the offer/answer cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// To be offered (the first server offer, or again after a withdrawn one).
    ToOffer,
    /// In our outstanding offer.
    Negotiating,
    /// Negotiated: media may flow.
    Open,
}

/// What a forwarded packet carries from its publisher, shared by all its subscribers.
pub struct Source<'a> {
    pub track: TrackId,
    pub pt: Pt,
    pub spec: &'a CodecSpec,
    pub ssrc: u32,
    pub video: bool,
    /// VP8: its payload descriptor, renumbered per slot.
    pub vp8: Option<&'a crate::vp8::Frame>,
    /// The packet starts a keyframe (video).
    pub keyframe_start: bool,
    pub ext: &'a ExtensionValues,
}

/// How many slots of each kind a receiver negotiates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotCounts {
    pub video: usize,
    pub audio: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    Sent,
    /// Sent, and the slot switched to this source with this packet (a keyframe), from `from`.
    Switched {
        from: Option<TrackId>,
    },
    /// The slot's lines are not negotiated (yet).
    NotOpen,
    /// The slot carries another source now (or waits for this one's keyframe).
    NotActive,
    /// The subscriber negotiated no codec matching the packet's.
    NoCodec,
}

pub struct Peer {
    pub id: PeerId,
    pub room: RoomId,
    pub identity: String,
    pub rtc: Rtc,
    pub local_ufrag: String,
    pub created: Instant,
    pub connected: bool,
    pub next_timeout: Option<Instant>,
    /// RTP was written since the last `nudge`: it waits in str0m's send queue (see
    /// `ShardCore::forward`).
    pub nudge_due: bool,
    pub addrs: Vec<SocketAddr>,
    pub published: HashMap<Mid, TrackId>,
    pub ssrc_tracks: HashMap<Ssrc, TrackId>,
    /// What this peer receives: its video slots, then its audio slots.
    pub slots: Vec<Slot>,
    pub lines: Lines,
    /// Video tracks this receiver asked for, in priority order (pinned, screen shares, its
    /// layout's tiles), and whether it is in automatic mode (no layout sent yet).
    pub layout: Vec<TrackId>,
    pub automatic: bool,
    pub pending: Option<SdpPendingOffer>,
    pub stats: Arc<PeerStats>,
    /// Which addresses may receive this peer's media (set up by the shard).
    pub guard: crate::addr_guard::AddressGuard,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.id)
            .field("room", &self.room)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

/// The codecs every peer is offered: one set, so packets forward without transcoding.
///
/// A payload type, once negotiated on a line, must keep its meaning (RFC 3264 §8.3.2), and
/// str0m keeps the first numbers it locked. Some stacks (aiortc) number their codecs afresh in
/// every offer, also on the lines we offered: VP8 97 with RTX 98. When a client's first offer
/// has no video, the numbers we offer on our slot lines are ours; str0m's default VP8 96 would
/// collide with aiortc's Opus 96 and be moved to 98 — which that client later calls RTX, and
/// its decoder then drops every packet of the slot. So VP8 is 97/98 here: free of both
/// libwebrtc's Opus 111 and aiortc's Opus 96. Clients that adopt our numbers (libwebrtc) are
/// unaffected.
pub fn rtc_config() -> RtcConfig {
    let mut config = RtcConfig::new()
        .set_crypto_provider(crate::dtls_probe::crypto_provider())
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .set_stats_interval(Some(std::time::Duration::from_secs(1)));
    config.codec_config().add_config(
        VP8_PT.into(),
        Some(VP8_RTX_PT.into()),
        Codec::Vp8,
        str0m::media::Frequency::NINETY_KHZ,
        None,
        str0m::format::FormatParams::default(),
    );
    config
}

const VP8_PT: u8 = 97;
const VP8_RTX_PT: u8 = 98;

impl Peer {
    /// Creates the peer from the client's offer and returns the answer.
    pub fn from_offer(
        id: PeerId,
        room: RoomId,
        identity: String,
        local: SocketAddr,
        offer_sdp: &str,
        slots: SlotCounts,
        now: Instant,
    ) -> Result<(Peer, String)> {
        let offer = parse_offer(offer_sdp, &[])?;
        let mut rtc = rtc_config().build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| Error::Config(format!("candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let local_ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let answer = rtc.sdp_api().accept_offer(offer)?;
        let mut peer = Peer {
            id,
            room,
            identity,
            rtc,
            local_ufrag,
            created: now,
            connected: false,
            next_timeout: None,
            nudge_due: false,
            addrs: Vec::new(),
            published: HashMap::new(),
            ssrc_tracks: HashMap::new(),
            slots: Vec::new(),
            lines: Lines::Open,
            layout: Vec::new(),
            automatic: true,
            pending: None,
            stats: Arc::new(PeerStats::default()),
            guard: Default::default(),
        };
        peer.slots = std::iter::repeat_with(|| Slot::new(MediaKind::Video))
            .take(slots.video)
            .chain(std::iter::repeat_with(|| Slot::new(MediaKind::Audio)).take(slots.audio))
            .collect();
        if !peer.slots.is_empty() {
            peer.lines = Lines::ToOffer;
        }
        let answer = our_sdp(&answer.to_sdp_string());
        Ok((peer, answer))
    }

    /// A client-initiated renegotiation. If our own offer is outstanding (glare) we yield:
    /// its changes go back to the queue and are offered again after this exchange.
    pub fn accept_offer(&mut self, offer_sdp: &str) -> Result<String> {
        let server_mids: Vec<String> = self
            .slots
            .iter()
            .filter_map(|s| s.mid.map(|m| m.to_string()))
            .collect();
        let offer = parse_offer(offer_sdp, &server_mids)?;
        if self.pending.take().is_some() {
            self.requeue_offered();
        }
        let answer = self.rtc.sdp_api().accept_offer(offer)?;
        Ok(our_sdp(&answer.to_sdp_string()))
    }

    /// The client's answer to our outstanding offer. Returns the tracks that became open.
    /// A refused answer (unparsable, or rejected by str0m) withdraws our offer: its changes go
    /// back to the queue, so the next `make_offer` offers them again.
    pub fn accept_answer(&mut self, answer_sdp: &str) -> Result<Vec<TrackId>> {
        let Some(pending) = self.pending.take() else {
            return Err(Error::InvalidState(
                "no server offer is outstanding for this peer".into(),
            ));
        };
        let applied = SdpAnswer::from_sdp_string(answer_sdp)
            .map_err(sdp_error)
            .and_then(|answer| Ok(self.rtc.sdp_api().accept_answer(pending, answer)?));
        if let Err(e) = applied {
            self.requeue_offered();
            return Err(e);
        }
        self.lines = Lines::Open;
        Ok(self.slots.iter().filter_map(|s| s.active).collect())
    }

    /// Our outstanding offer is gone (glare or a refused answer): what it carried is queued
    /// again.
    fn requeue_offered(&mut self) {
        if self.lines != Lines::Negotiating {
            return;
        }
        // str0m forgets the lines a withdrawn offer added: they are offered anew.
        let rtc = &self.rtc;
        if self
            .slots
            .iter()
            .all(|s| s.mid.is_some_and(|m| rtc.media(m).is_some()))
        {
            self.lines = Lines::Open;
        } else {
            for s in &mut self.slots {
                s.mid = None;
            }
            self.lines = Lines::ToOffer;
        }
    }

    /// Our offer of the slot lines, unless one is outstanding or they are negotiated.
    pub fn make_offer(&mut self) -> Option<String> {
        if self.pending.is_some() || self.lines != Lines::ToOffer {
            return None;
        }
        let mut api = self.rtc.sdp_api();
        let mut counts = [0usize; 2];
        for s in &mut self.slots {
            let (kind, n) = match s.kind {
                MediaKind::Video => (str0m::media::MediaKind::Video, &mut counts[0]),
                MediaKind::Audio => (str0m::media::MediaKind::Audio, &mut counts[1]),
            };
            // One stream per slot: a browser syncs audio and video of one stream, and two
            // slots' sources are unrelated people.
            let name = format!("{}-{}", s.kind.as_str(), n);
            *n += 1;
            let mid = api.add_media(
                kind,
                Direction::SendOnly,
                Some(format!("slot-{name}")),
                Some(name),
                None,
            );
            s.mid = Some(mid);
        }
        let (offer, pending) = api.apply()?;
        self.pending = Some(pending);
        self.lines = Lines::Negotiating;
        Some(our_sdp(&offer.to_sdp_string()))
    }

    /// The slot on `mid`, if it is one of ours.
    pub fn slot_by_mid(&self, mid: Mid) -> Option<usize> {
        self.slots.iter().position(|s| s.mid == Some(mid))
    }

    /// Queues one publisher packet on slot `i` if the slot carries (or switches to) its
    /// track, rewritten for this receiver (payload type, sequence number, timestamp, VP8
    /// picture id). It leaves when `nudge` runs: str0m's send queue (a `VecDeque` per stream,
    /// no size limit) keeps every packet written before that, in order.
    pub fn send_to_slot(
        &mut self,
        i: usize,
        src: &Source<'_>,
        pkt: &RtpPacket,
        now: Instant,
    ) -> Forwarded {
        // Before ICE and DTLS complete nothing can be sent: a video slot must not take its
        // source on a keyframe the receiver never gets (a decoder without one shows nothing).
        if self.lines != Lines::Open || !self.connected {
            return Forwarded::NotOpen;
        }
        let Some(slot) = self.slots.get_mut(i) else {
            return Forwarded::NotOpen;
        };
        let Some(mid) = slot.mid else {
            return Forwarded::NotOpen;
        };
        let before = slot.active;
        let (admitted, switched) = slot.admit(src.track, src.keyframe_start);
        if !admitted {
            return Forwarded::NotActive;
        }
        let cached = slot
            .pt_map
            .iter()
            .find(|(t, p, _)| *t == src.track && *p == src.pt)
            .map(|(_, _, out)| *out);
        let pt_out = match cached {
            Some(v) => v,
            None => {
                let v = self.pt_for(mid, src.spec);
                self.slots[i].pt_map.push((src.track, src.pt, v));
                v
            }
        };
        let Some(pt_out) = pt_out else {
            return Forwarded::NoCodec;
        };
        let slot = &mut self.slots[i];
        let (seq, ts) = slot
            .rewriter
            .map(src.ssrc, *pkt.seq_no, pkt.header.timestamp, now);
        let patch = src.vp8.and_then(|f| slot.vp8.patch(src.ssrc, f));
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return Forwarded::NotOpen;
        };
        let mut write = RtpWrite::new(pt_out, seq.into(), ts, pkt.timestamp, pkt.payload.clone())
            .marker(pkt.header.marker)
            .ext_vals(src.ext.clone())
            .nackable(src.video);
        if let Some(patch) = patch {
            write = write.vp8_patch(patch);
        }
        stream.write_rtp(write);
        self.nudge_due = true;
        self.stats.rtp_out.fetch_add(1, Relaxed);
        if switched {
            Forwarded::Switched { from: before }
        } else {
            Forwarded::Sent
        }
    }

    /// Lets str0m send what `send_forwarded` queued: it stamps and releases queued RTP when
    /// its clock is handled, and a timeout at the same instant is enough. Every packet queued
    /// since the last nudge goes out in the poll that follows.
    pub fn nudge(&mut self, now: Instant) -> Result<()> {
        self.nudge_due = false;
        self.rtc.handle_input(Input::Timeout(now))?;
        Ok(())
    }

    /// The codec behind one of our payload types.
    pub fn codec_of(&self, pt: Pt) -> Option<CodecSpec> {
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.pt() == pt)
            .map(|p| p.spec())
    }

    /// Our payload type for `spec` on `mid`, among those the remote accepted.
    pub fn pt_for(&self, mid: Mid, spec: &CodecSpec) -> Option<Pt> {
        let remote = self.rtc.media(mid).map(|m| m.remote_pts()).unwrap_or(&[]);
        self.rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| remote.is_empty() || remote.contains(&p.pt()))
            .find(|p| same_codec(&p.spec(), spec))
            .map(|p| p.pt())
    }
}

/// Our SDP as it goes out: candidates in every section.
fn our_sdp(sdp: &str) -> String {
    sdp_text::candidates_in_every_section(sdp)
}

fn same_codec(a: &CodecSpec, b: &CodecSpec) -> bool {
    if a.codec != b.codec || a.clock_rate != b.clock_rate {
        return false;
    }
    match a.codec {
        Codec::H264 => {
            a.format.profile_level_id == b.format.profile_level_id
                && a.format.packetization_mode == b.format.packetization_mode
        }
        _ => true,
    }
}
