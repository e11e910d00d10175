//! Rooms and the tracks published in them: who publishes what, where each track goes, and
//! who is speaking.
//!
//! Routing is origin → sink: a track (the origin) lists its sinks. Today a sink is a slot of
//! a receiving peer on this shard; a mixer, another shard or another node would be other
//! kinds of `Sink` behind the same lists.

use std::collections::HashMap;
use std::time::Instant;

use str0m::media::Mid;

use crate::event::MediaKind;
use crate::ids::{IdMap, PeerId, RoomId, TrackId};

#[derive(Debug)]
pub struct Track {
    pub publisher: PeerId,
    pub room: RoomId,
    pub mid: Mid,
    pub kind: MediaKind,
    pub sinks: Vec<Sink>,
    pub last_keyframe_request: Option<Instant>,
    /// Smoothed audio level in dBov (-127 silence .. 0 loudest), from the RFC 6464 header
    /// extension, and when it was last heard.
    pub level: f32,
    pub level_at: Option<Instant>,
    /// When the track last counted as speaking.
    pub last_spoke: Option<Instant>,
    /// Its publisher muted it (a camera turned off sends nothing): it takes no video slot.
    pub muted: bool,
}

/// Where a track's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Slot `slot` of peer `peer` (on this shard).
    Slot { peer: PeerId, slot: usize },
}

impl Track {
    pub fn new(publisher: PeerId, room: RoomId, mid: Mid, kind: MediaKind) -> Track {
        Track {
            publisher,
            room,
            mid,
            kind,
            sinks: Vec::new(),
            last_keyframe_request: None,
            level: SILENCE,
            level_at: None,
            last_spoke: None,
            muted: false,
        }
    }

    /// Folds one packet's audio level into the running estimate.
    pub fn hear(&mut self, dbov: i8, now: Instant) {
        self.level = 0.8 * self.level + 0.2 * f32::from(dbov);
        self.level_at = Some(now);
    }

    /// Speaking above `threshold` dBov, heard recently.
    fn speaking(&self, now: Instant, threshold: f32) -> bool {
        self.level > threshold
            && self
                .level_at
                .is_some_and(|t| now.saturating_duration_since(t) < LEVEL_STALE)
    }
}

const SILENCE: f32 = -127.0;
/// Above this smoothed level a track starts to count as speaking...
const SPEAKING_DBOV: f32 = -50.0;
/// ...and keeps counting until it falls below this one (hysteresis against flapping).
const STILL_SPEAKING_DBOV: f32 = -60.0;
/// A new loudest speaker must beat the current one by this much to take the lead.
const LEAD_MARGIN_DB: f32 = 6.0;
/// A level older than this is silence (the publisher muted or stopped sending).
const LEVEL_STALE: std::time::Duration = std::time::Duration::from_millis(1000);
/// At most this many active speakers are reported per room.
const MAX_SPEAKERS: usize = 3;
/// At most this many loud tracks are ranked per room: enough for the most audio slots a
/// receiver may have, plus its own voice.
pub const MAX_LOUD: usize = 9;

#[derive(Debug, Default)]
pub struct Room {
    pub peers: Vec<PeerId>,
    /// The speakers reported to the caller (loudest first).
    pub speakers: Vec<TrackId>,
    /// The speaking audio tracks, loudest first (the leader kept first unless clearly beaten).
    pub loud: Vec<TrackId>,
    /// Every track of the room, in publish order.
    pub tracks: Vec<TrackId>,
}

/// The rooms and tracks of one shard.
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: HashMap<RoomId, Room>,
    tracks: IdMap<TrackId, Track>,
}

impl Rooms {
    pub fn join(&mut self, room: &RoomId, peer: PeerId) {
        let r = self.rooms.entry(room.clone()).or_default();
        if !r.peers.contains(&peer) {
            r.peers.push(peer);
        }
    }

    /// Removes the peer from its room; drops the room when it empties.
    pub fn leave(&mut self, room: &RoomId, peer: PeerId) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.peers.retain(|p| *p != peer);
            if r.peers.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    pub fn room(&self, id: &RoomId) -> Option<&Room> {
        self.rooms.get(id)
    }

    pub fn add_track(&mut self, id: TrackId, track: Track) {
        if let Some(r) = self.rooms.get_mut(&track.room) {
            r.tracks.push(id);
        }
        self.tracks.insert(id, track);
    }

    pub fn remove_track(&mut self, id: TrackId) -> Option<Track> {
        let t = self.tracks.remove(&id)?;
        if let Some(r) = self.rooms.get_mut(&t.room) {
            r.tracks.retain(|x| *x != id);
            r.loud.retain(|x| *x != id);
        }
        Some(t)
    }

    pub fn track(&self, id: TrackId) -> Option<&Track> {
        self.tracks.get(&id)
    }

    pub fn track_mut(&mut self, id: TrackId) -> Option<&mut Track> {
        self.tracks.get_mut(&id)
    }

    pub fn sinks(&self, id: TrackId) -> &[Sink] {
        self.tracks.get(&id).map_or(&[], |t| &t.sinks)
    }

    pub fn add_sink(&mut self, id: TrackId, sink: Sink) {
        if let Some(t) = self.tracks.get_mut(&id) {
            if !t.sinks.contains(&sink) {
                t.sinks.push(sink);
            }
        }
    }

    pub fn remove_sink(&mut self, id: TrackId, sink: Sink) {
        if let Some(t) = self.tracks.get_mut(&id) {
            t.sinks.retain(|s| *s != sink);
        }
    }

    /// The room's audio tracks in the order audio slots take them: the speaking ones
    /// (loudest first), then the others by how recently they spoke, then in publish order.
    pub fn audio_ranking(&self, room: &RoomId) -> Vec<TrackId> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        let mut rest: Vec<(Option<Instant>, usize, TrackId)> = r
            .tracks
            .iter()
            .enumerate()
            .filter(|(_, id)| !r.loud.contains(id))
            .filter_map(|(i, id)| {
                let t = self.tracks.get(id)?;
                (t.kind == MediaKind::Audio).then_some((t.last_spoke, i, *id))
            })
            .collect();
        // Most recent speakers first (None sorts last), then publish order.
        rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        r.loud
            .iter()
            .copied()
            .chain(rest.into_iter().map(|x| x.2))
            .collect()
    }

    /// The publishers of the room's audio that have spoken, most recent first (the current
    /// speakers first of all).
    pub fn recent_speakers(&self, room: &RoomId) -> Vec<PeerId> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        let mut spoke: Vec<(Instant, PeerId)> = r
            .tracks
            .iter()
            .filter(|id| !r.loud.contains(id))
            .filter_map(|id| self.tracks.get(id))
            .filter_map(|t| Some((t.last_spoke?, t.publisher)))
            .collect();
        spoke.sort_by_key(|x| std::cmp::Reverse(x.0));
        let mut out: Vec<PeerId> = Vec::new();
        let loud = r
            .loud
            .iter()
            .filter_map(|id| self.tracks.get(id))
            .map(|t| t.publisher);
        for p in loud.chain(spoke.into_iter().map(|x| x.1)) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Re-ranks each room's speaking tracks. Returns the rooms whose reported speakers changed
    /// (with the new list, loudest first) and, in `reranked`, every room whose set of loud
    /// tracks changed (its audio slots may need new sources). Membership uses hysteresis and
    /// the lead changes only by a clear margin, so steady conversation causes no churn.
    pub fn speaker_changes(
        &mut self,
        now: Instant,
        reranked: &mut Vec<RoomId>,
    ) -> Vec<(RoomId, Vec<TrackId>)> {
        let mut changes = Vec::new();
        for (name, room) in &mut self.rooms {
            let mut loud: Vec<(f32, TrackId)> = room
                .tracks
                .iter()
                .filter_map(|id| {
                    let t = self.tracks.get(id)?;
                    let threshold = if room.loud.contains(id) {
                        STILL_SPEAKING_DBOV
                    } else {
                        SPEAKING_DBOV
                    };
                    (t.kind == MediaKind::Audio && t.speaking(now, threshold))
                        .then_some((t.level, *id))
                })
                .collect();
            loud.sort_by(|a, b| b.0.total_cmp(&a.0));
            // Keep the current leader first unless someone is clearly louder.
            if let Some(leader) = room.loud.first() {
                if let Some(pos) = loud.iter().position(|(_, id)| id == leader) {
                    if loud[0].0 - loud[pos].0 < LEAD_MARGIN_DB {
                        let kept = loud.remove(pos);
                        loud.insert(0, kept);
                    }
                }
            }
            loud.truncate(MAX_LOUD);
            let now_loud: Vec<TrackId> = loud.iter().map(|x| x.1).collect();
            for id in &now_loud {
                if let Some(t) = self.tracks.get_mut(id) {
                    t.last_spoke = Some(now);
                }
            }
            let same_loud =
                now_loud.len() == room.loud.len() && now_loud.iter().all(|t| room.loud.contains(t));
            if !same_loud {
                reranked.push(name.clone());
            }
            let mut speakers = now_loud.clone();
            speakers.truncate(MAX_SPEAKERS);
            room.loud = now_loud;
            let same_set = speakers.len() == room.speakers.len()
                && speakers.iter().all(|t| room.speakers.contains(t));
            let same_lead = speakers.first() == room.speakers.first();
            if !(same_set && same_lead) {
                if same_loud {
                    // The video of recent speakers follows the lead.
                    reranked.push(name.clone());
                }
                room.speakers = speakers.clone();
                changes.push((name.clone(), speakers));
            }
        }
        changes
    }

    /// Throttles keyframe requests per track: true when one may be sent now.
    pub fn allow_keyframe_request(
        &mut self,
        id: TrackId,
        now: Instant,
        interval: std::time::Duration,
    ) -> bool {
        let Some(t) = self.tracks.get_mut(&id) else {
            return false;
        };
        match t.last_keyframe_request {
            Some(last) if now.saturating_duration_since(last) < interval => false,
            _ => {
                t.last_keyframe_request = Some(now);
                true
            }
        }
    }
}
