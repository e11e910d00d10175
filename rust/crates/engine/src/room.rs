//! Rooms and the tracks published in them: who publishes what, who receives it.
//!
//! A subscriber is a peer id; today every subscriber lives on the same shard as the room.
//! A subscriber that lives elsewhere (cross-shard or cross-node relay) would be another kind
//! of `Subscriber` behind the same lists.

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
    pub subscribers: Vec<PeerId>,
    pub last_keyframe_request: Option<Instant>,
    /// Smoothed audio level in dBov (-127 silence .. 0 loudest), from the RFC 6464 header
    /// extension, and when it was last heard.
    pub level: f32,
    pub level_at: Option<Instant>,
}

impl Track {
    pub fn new(publisher: PeerId, room: RoomId, mid: Mid, kind: MediaKind) -> Track {
        Track {
            publisher,
            room,
            mid,
            kind,
            subscribers: Vec::new(),
            last_keyframe_request: None,
            level: SILENCE,
            level_at: None,
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

#[derive(Debug, Default)]
pub struct Room {
    pub peers: Vec<PeerId>,
    pub speakers: Vec<TrackId>,
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

    pub fn add_track(&mut self, id: TrackId, track: Track) {
        self.tracks.insert(id, track);
    }

    pub fn remove_track(&mut self, id: TrackId) -> Option<Track> {
        self.tracks.remove(&id)
    }

    pub fn track(&self, id: TrackId) -> Option<&Track> {
        self.tracks.get(&id)
    }

    pub fn track_mut(&mut self, id: TrackId) -> Option<&mut Track> {
        self.tracks.get_mut(&id)
    }

    pub fn subscribers(&self, id: TrackId) -> &[PeerId] {
        self.tracks.get(&id).map_or(&[], |t| &t.subscribers)
    }

    /// Rooms whose speaking tracks changed since the last call, with the new list (loudest
    /// first). Membership uses hysteresis and the lead changes only by a clear margin, so
    /// steady conversation does not flood clients with updates.
    pub fn speaker_changes(&mut self, now: Instant) -> Vec<(RoomId, Vec<TrackId>)> {
        let mut changes = Vec::new();
        for (name, room) in &mut self.rooms {
            let mut loud: Vec<(f32, TrackId)> = self
                .tracks
                .iter()
                .filter(|(id, t)| {
                    let threshold = if room.speakers.contains(id) {
                        STILL_SPEAKING_DBOV
                    } else {
                        SPEAKING_DBOV
                    };
                    t.room == *name && t.kind == MediaKind::Audio && t.speaking(now, threshold)
                })
                .map(|(id, t)| (t.level, *id))
                .collect();
            loud.sort_by(|a, b| b.0.total_cmp(&a.0));
            // Keep the current leader first unless someone is clearly louder.
            if let Some(leader) = room.speakers.first() {
                if let Some(pos) = loud.iter().position(|(_, id)| id == leader) {
                    if loud[0].0 - loud[pos].0 < LEAD_MARGIN_DB {
                        let kept = loud.remove(pos);
                        loud.insert(0, kept);
                    }
                }
            }
            let mut speakers: Vec<TrackId> = loud.iter().map(|x| x.1).collect();
            speakers.truncate(MAX_SPEAKERS);
            let same_set = speakers.len() == room.speakers.len()
                && speakers.iter().all(|t| room.speakers.contains(t));
            let same_lead = speakers.first() == room.speakers.first();
            if !(same_set && same_lead) {
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
