//! Rooms and the tracks published in them: who publishes what, who receives it.
//!
//! A subscriber is a peer id; today every subscriber lives on the same shard as the room.
//! A subscriber that lives elsewhere (cross-shard or cross-node relay) would be another kind
//! of `Subscriber` behind the same lists.

use std::collections::HashMap;
use std::time::Instant;

use str0m::media::Mid;

use crate::event::MediaKind;
use crate::ids::{PeerId, RoomId, TrackId};

#[derive(Debug)]
pub struct Track {
    pub publisher: PeerId,
    pub room: RoomId,
    pub mid: Mid,
    pub kind: MediaKind,
    pub subscribers: Vec<PeerId>,
    pub last_keyframe_request: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Room {
    pub peers: Vec<PeerId>,
}

/// The rooms and tracks of one shard.
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: HashMap<RoomId, Room>,
    tracks: HashMap<TrackId, Track>,
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
