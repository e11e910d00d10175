//! One client's WebRTC transport: its `Rtc`, what it publishes, what it receives, and the
//! server side of renegotiation.
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
use crate::ids::{IdMap, PeerId, RoomId, TrackId};
use crate::offer::{parse_offer, sdp_error};
use crate::rewrite::Rewriter;
use crate::sdp_text;
use crate::stats::PeerStats;

/// Where an outgoing (subscribed) track stands in the offer/answer cycle.
///
/// Lines are never stopped: a line whose track goes away turns `inactive` and waits, idle, for
/// the next subscription of its kind, which takes it over (new msid, same SSRC, sequence
/// numbers carried on). So a subscriber's SDP holds at most as many lines as it ever received
/// tracks *at once*, never one per track it received over its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// Wanted; a new line in the next offer.
    ToOpen,
    /// Wanted; this idle line of ours takes it in the next offer.
    ToReuse(Mid),
    /// In the outstanding offer on this mid.
    Negotiating(Mid),
    /// Negotiated: media flows on this mid.
    Open(Mid),
    /// To be turned inactive on this mid in the next offer.
    ToStop(Mid),
    /// Turning inactive is in the outstanding offer.
    NegotiatingStop(Mid),
}

/// A negotiated line of ours that carries nothing now (`inactive`), kept for reuse.
#[derive(Debug)]
pub struct IdleLine {
    pub mid: Mid,
    pub kind: MediaKind,
    /// Kept so the next track on this line continues its sequence numbers and timestamps.
    pub rewriter: Rewriter,
}

#[derive(Debug)]
pub struct OutTrack {
    pub track: TrackId,
    pub kind: MediaKind,
    pub stream_id: String,
    pub state: OutState,
    pub rewriter: Rewriter,
    /// Publisher payload type → ours, or `None` when we negotiated no such codec.
    pub pt_map: Vec<(Pt, Option<Pt>)>,
}

impl OutTrack {
    pub fn open_mid(&self) -> Option<Mid> {
        match self.state {
            OutState::Open(m) => Some(m),
            _ => None,
        }
    }
}

/// What a forwarded packet carries from its publisher, shared by all its subscribers.
pub struct Source<'a> {
    pub track: TrackId,
    pub pt: Pt,
    pub spec: &'a CodecSpec,
    pub ssrc: u32,
    pub video: bool,
    pub ext: &'a ExtensionValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    Sent,
    /// No negotiated line for this track (yet, or any more).
    NotOpen,
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
    /// What this peer receives. Change its membership only through `subscribe`,
    /// `unsubscribe` and `accept_answer`, which keep `out_index` in step.
    pub outgoing: Vec<OutTrack>,
    /// Track → its position in `outgoing`, so forwarding a packet costs one lookup per
    /// subscriber instead of a scan of everything that subscriber receives.
    out_index: IdMap<TrackId, usize>,
    /// Lines of ours that carry nothing now, ready for the next subscription of their kind.
    pub idle: Vec<IdleLine>,
    /// Our lines that changed hands: mid → the `a=msid` value they carry now (str0m keeps the
    /// one of the line's first track).
    pub msids: HashMap<Mid, String>,
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
pub fn rtc_config() -> RtcConfig {
    RtcConfig::new()
        .set_crypto_provider(crate::dtls_probe::crypto_provider())
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .set_stats_interval(Some(std::time::Duration::from_secs(1)))
}

impl Peer {
    /// Creates the peer from the client's offer and returns the answer.
    pub fn from_offer(
        id: PeerId,
        room: RoomId,
        identity: String,
        local: SocketAddr,
        offer_sdp: &str,
        now: Instant,
    ) -> Result<(Peer, String)> {
        let offer = parse_offer(offer_sdp, &[])?;
        let mut rtc = rtc_config().build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| Error::Config(format!("candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let local_ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let answer = rtc.sdp_api().accept_offer(offer)?;
        let peer = Peer {
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
            outgoing: Vec::new(),
            out_index: IdMap::default(),
            idle: Vec::new(),
            msids: HashMap::new(),
            pending: None,
            stats: Arc::new(PeerStats::default()),
            guard: Default::default(),
        };
        let answer = peer.our_sdp(&answer.to_sdp_string());
        Ok((peer, answer))
    }

    /// A client-initiated renegotiation. If our own offer is outstanding (glare) we yield:
    /// its changes go back to the queue and are offered again after this exchange.
    pub fn accept_offer(&mut self, offer_sdp: &str) -> Result<String> {
        let server_mids: Vec<String> = self
            .outgoing
            .iter()
            .filter_map(|o| match o.state {
                OutState::Open(m)
                | OutState::Negotiating(m)
                | OutState::ToReuse(m)
                | OutState::ToStop(m)
                | OutState::NegotiatingStop(m) => Some(m.to_string()),
                OutState::ToOpen => None,
            })
            .chain(self.idle.iter().map(|l| l.mid.to_string()))
            .collect();
        let offer = parse_offer(offer_sdp, &server_mids)?;
        if self.pending.take().is_some() {
            self.requeue_offered();
        }
        let answer = self.rtc.sdp_api().accept_offer(offer)?;
        Ok(self.our_sdp(&answer.to_sdp_string()))
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
        let mut opened = Vec::new();
        let idle = &mut self.idle;
        self.outgoing.retain_mut(|o| match o.state {
            OutState::Negotiating(m) => {
                o.state = OutState::Open(m);
                opened.push(o.track);
                true
            }
            OutState::NegotiatingStop(mid) => {
                let clock = o.rewriter.clock_rate();
                idle.push(IdleLine {
                    mid,
                    kind: o.kind.clone(),
                    rewriter: std::mem::replace(&mut o.rewriter, Rewriter::new(clock)),
                });
                false
            }
            _ => true,
        });
        self.reindex_outgoing();
        Ok(opened)
    }

    /// Our outstanding offer is gone (glare or a refused answer): what it carried is queued
    /// again.
    fn requeue_offered(&mut self) {
        for o in &mut self.outgoing {
            o.state = match o.state {
                // A line that existed before the offer was being reused; a new one is gone.
                OutState::Negotiating(m) if self.rtc.media(m).is_some() => OutState::ToReuse(m),
                OutState::Negotiating(_) => OutState::ToOpen,
                OutState::NegotiatingStop(m) => OutState::ToStop(m),
                s => s,
            };
        }
        // A subscription dropped while its new line was still in the withdrawn offer has no
        // line at all now: nothing to stop, nothing to reuse.
        let rtc = &self.rtc;
        self.outgoing
            .retain(|o| !matches!(o.state, OutState::ToStop(m) if rtc.media(m).is_none()));
        self.reindex_outgoing();
    }

    /// Puts queued subscription changes into a new offer, unless one is outstanding.
    pub fn make_offer(&mut self) -> Option<String> {
        if self.pending.is_some() {
            return None;
        }
        let wanted = self.outgoing.iter().any(|o| {
            matches!(
                o.state,
                OutState::ToOpen | OutState::ToReuse(_) | OutState::ToStop(_)
            )
        });
        if !wanted {
            return None;
        }
        self.assign_free_lines();
        let mut api = self.rtc.sdp_api();
        for o in &mut self.outgoing {
            match o.state {
                OutState::ToOpen => {
                    let kind = match o.kind {
                        MediaKind::Audio => str0m::media::MediaKind::Audio,
                        MediaKind::Video => str0m::media::MediaKind::Video,
                    };
                    let mid = api.add_media(
                        kind,
                        Direction::SendOnly,
                        Some(o.stream_id.clone()),
                        Some(o.track.to_string()),
                        None,
                    );
                    o.state = OutState::Negotiating(mid);
                }
                OutState::ToReuse(m) => {
                    force_direction(&mut api, m, Direction::SendOnly);
                    self.msids
                        .insert(m, format!("{} {}", msid_token(&o.stream_id), o.track));
                    o.state = OutState::Negotiating(m);
                }
                OutState::ToStop(m) => {
                    force_direction(&mut api, m, Direction::Inactive);
                    o.state = OutState::NegotiatingStop(m);
                }
                _ => {}
            }
        }
        let (offer, pending) = api.apply()?;
        self.pending = Some(pending);
        Some(self.our_sdp(&offer.to_sdp_string()))
    }

    /// Gives subscriptions still waiting for a new line (queued while an offer was out, or
    /// before a line fell idle) a line of their kind that is free now: an idle one, or one
    /// whose track is going away and not yet offered as such (taken over directly: the next
    /// offer only changes its msid). So lines are reused whatever the order of leaves and
    /// joins, and the SDP stays the size of what is received at once.
    fn assign_free_lines(&mut self) {
        let mut i = 0;
        while i < self.outgoing.len() {
            if self.outgoing[i].state != OutState::ToOpen {
                i += 1;
                continue;
            }
            let kind = self.outgoing[i].kind.clone();
            if let Some(j) = self.idle.iter().position(|l| l.kind == kind) {
                let line = self.idle.swap_remove(j);
                let o = &mut self.outgoing[i];
                o.state = OutState::ToReuse(line.mid);
                o.rewriter = line.rewriter;
            } else if let Some((j, mid)) =
                self.outgoing
                    .iter()
                    .enumerate()
                    .find_map(|(j, q)| match q.state {
                        OutState::ToStop(m) if q.kind == kind => Some((j, m)),
                        _ => None,
                    })
            {
                let old = self.outgoing.remove(j);
                if j < i {
                    i -= 1;
                }
                let o = &mut self.outgoing[i];
                o.state = OutState::ToReuse(mid);
                o.rewriter = old.rewriter;
            }
            i += 1;
        }
        self.reindex_outgoing();
    }

    /// Our SDP as it goes out: candidates in every section, and the current msid of every
    /// line that changed hands.
    fn our_sdp(&self, sdp: &str) -> String {
        let with_msids = sdp_text::replace_msids(sdp, &self.msids);
        sdp_text::candidates_in_every_section(&with_msids)
    }

    /// Rebuilds `out_index` after `outgoing` gained, lost or reordered entries (control
    /// path only: subscribe, unsubscribe, answers).
    fn reindex_outgoing(&mut self) {
        self.out_index.clear();
        for (i, o) in self.outgoing.iter().enumerate() {
            self.out_index.insert(o.track, i);
        }
    }

    /// Where `track` sits in `outgoing`.
    fn out_position(&self, track: TrackId) -> Option<usize> {
        let i = *self.out_index.get(&track)?;
        // The index is rebuilt on every membership change; checking it costs one compare.
        (self.outgoing.get(i)?.track == track).then_some(i)
    }

    pub fn subscribe(&mut self, track: TrackId, kind: MediaKind, stream_id: String) -> bool {
        if self.out_position(track).is_some() {
            return false;
        }
        // A free line of its kind, if any, is given when the next offer is made.
        let clock = match kind {
            MediaKind::Audio => 48_000,
            MediaKind::Video => 90_000,
        };
        self.outgoing.push(OutTrack {
            track,
            kind,
            stream_id,
            state: OutState::ToOpen,
            rewriter: Rewriter::new(clock),
            pt_map: Vec::new(),
        });
        self.out_index.insert(track, self.outgoing.len() - 1);
        true
    }

    /// Marks the subscription for removal. Returns false if there was none.
    pub fn unsubscribe(&mut self, track: TrackId) -> bool {
        let Some(i) = self.out_position(track) else {
            return false;
        };
        match self.outgoing[i].state {
            OutState::ToOpen => {
                self.outgoing.remove(i);
                self.reindex_outgoing();
            }
            OutState::ToReuse(mid) => {
                // Never offered: the line goes back to the idle ones as it was.
                let o = self.outgoing.remove(i);
                self.reindex_outgoing();
                self.idle.push(IdleLine {
                    mid,
                    kind: o.kind,
                    rewriter: o.rewriter,
                });
            }
            OutState::Open(m) | OutState::Negotiating(m) => {
                // A mid still in our outstanding offer is stopped in the next one.
                self.outgoing[i].state = OutState::ToStop(m);
            }
            OutState::ToStop(_) | OutState::NegotiatingStop(_) => {}
        }
        true
    }

    /// Queues one publisher packet on this peer's line for `src.track`, rewritten for this
    /// subscriber (payload type, sequence number, timestamp). It leaves when `nudge` runs:
    /// str0m's send queue (a `VecDeque` per stream, no size limit) keeps every packet written
    /// before that, in order.
    pub fn send_forwarded(&mut self, src: &Source<'_>, pkt: &RtpPacket, now: Instant) -> Forwarded {
        let Some(i) = self.out_position(src.track) else {
            return Forwarded::NotOpen;
        };
        let Some(mid) = self.outgoing[i].open_mid() else {
            return Forwarded::NotOpen;
        };
        let cached = self.outgoing[i]
            .pt_map
            .iter()
            .find(|(p, _)| *p == src.pt)
            .map(|(_, out)| *out);
        let pt_out = match cached {
            Some(v) => v,
            None => {
                let v = self.pt_for(mid, src.spec);
                self.outgoing[i].pt_map.push((src.pt, v));
                v
            }
        };
        let Some(pt_out) = pt_out else {
            return Forwarded::NoCodec;
        };
        let (seq, ts) =
            self.outgoing[i]
                .rewriter
                .map(src.ssrc, *pkt.seq_no, pkt.header.timestamp, now);
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return Forwarded::NotOpen;
        };
        stream.write_rtp(
            RtpWrite::new(pt_out, seq.into(), ts, pkt.timestamp, pkt.payload.clone())
                .marker(pkt.header.marker)
                .ext_vals(src.ext.clone())
                .nackable(src.video),
        );
        self.nudge_due = true;
        self.stats.rtp_out.fetch_add(1, Relaxed);
        Forwarded::Sent
    }

    /// Lets str0m send what `send_forwarded` queued: it stamps and releases queued RTP when
    /// its clock is handled, and a timeout at the same instant is enough. Every packet queued
    /// since the last nudge goes out in the poll that follows.
    pub fn nudge(&mut self, now: Instant) -> Result<()> {
        self.nudge_due = false;
        self.rtc.handle_input(Input::Timeout(now))?;
        Ok(())
    }

    pub fn out_by_mid(&mut self, mid: Mid) -> Option<&mut OutTrack> {
        self.outgoing.iter_mut().find(|o| o.open_mid() == Some(mid))
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

/// Sets `mid`'s direction so that the next offer carries it, even if str0m's session already
/// has it (a withdrawn offer — glare, a refused answer — leaves the session's direction
/// changed but the change unannounced; str0m only offers *changes*).
fn force_direction(api: &mut str0m::change::SdpApi<'_>, mid: Mid, dir: Direction) {
    let other = if dir == Direction::Inactive {
        Direction::SendOnly
    } else {
        Direction::Inactive
    };
    api.set_direction(mid, dir);
    if !api.has_changes() {
        api.set_direction(mid, other);
        api.set_direction(mid, dir);
    }
}

/// The stream part of an msid as str0m writes it (RFC 8830 token characters, at most 64).
fn msid_token(s: &str) -> String {
    s.chars()
        .filter(|c| {
            let u = *c as u32;
            u == 0x21
                || (0x23..=0x27).contains(&u)
                || (0x2a..=0x2b).contains(&u)
                || (0x2d..=0x2e).contains(&u)
                || (0x30..=0x39).contains(&u)
                || (0x41..=0x5a).contains(&u)
                || (0x5e..0x7e).contains(&u)
        })
        .take(64)
        .collect()
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
