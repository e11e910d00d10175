//! Receive slots: the fixed set of outgoing lines a receiver negotiates once, and which
//! origin feeds each of them now.
//!
//! A slot is one `sendonly` m-line of ours. Its source (a published track today; later a
//! mixer, another shard or node) changes without any SDP: the slot's SSRC stays, sequence
//! numbers, timestamps and VP8 picture ids carry on, and a video slot only switches on a
//! keyframe of its new source, forwarding the old one until then.

use std::time::Instant;

use str0m::media::{Mid, Pt};

use crate::event::MediaKind;
use crate::ids::TrackId;
use crate::rewrite::Rewriter;
use crate::vp8;

#[derive(Debug)]
pub struct Slot {
    pub kind: MediaKind,
    /// Our line, once offered.
    pub mid: Option<Mid>,
    /// What flows on the line now.
    pub active: Option<TrackId>,
    /// Video only: the source the slot switches to at its next keyframe, and since when.
    pub next: Option<(TrackId, Instant)>,
    pub rewriter: Rewriter,
    pub vp8: vp8::Continuity,
    /// (source track, its payload type) → ours, or `None` when the receiver has no such codec.
    pub pt_map: Vec<(TrackId, Pt, Option<Pt>)>,
}

impl Slot {
    pub fn new(kind: MediaKind) -> Slot {
        let clock = match kind {
            MediaKind::Audio => 48_000,
            MediaKind::Video => 90_000,
        };
        Slot {
            kind,
            mid: None,
            active: None,
            next: None,
            rewriter: Rewriter::new(clock),
            vp8: vp8::Continuity::default(),
            pt_map: Vec::new(),
        }
    }

    /// The source the slot is meant to carry: the one it waits for, else the one it has.
    pub fn target(&self) -> Option<TrackId> {
        self.next.map(|(t, _)| t).or(self.active)
    }

    /// The tracks whose packets this slot needs to see (at most two).
    pub fn sources(&self) -> impl Iterator<Item = TrackId> {
        let next = self.next.map(|(t, _)| t);
        self.active
            .into_iter()
            .chain(next.filter(|n| Some(*n) != self.active))
    }

    /// `sources()` as a pair, for comparing before and after a change without allocating.
    pub fn source_pair(&self) -> [Option<TrackId>; 2] {
        let mut it = self.sources();
        [it.next(), it.next()]
    }

    /// Points the slot at `target`. Audio and emptying switch at once; video waits for a
    /// keyframe of the new source. Returns true when what flows (`active`) changed.
    pub fn retarget(&mut self, target: Option<TrackId>, now: Instant) -> bool {
        if target == self.target() {
            return false;
        }
        match (target, &self.kind) {
            (Some(t), MediaKind::Video) if self.active != Some(t) => {
                self.next = Some((t, now));
                false
            }
            _ => {
                self.next = None;
                self.set_active(target)
            }
        }
    }

    /// What flows on the line becomes `track`. Whoever flows next continues the line's
    /// numbering from the last packet sent, even the source it had before a pause (a slot
    /// emptied and given the same source back must not jump over what that source sent
    /// meanwhile). Returns true when it changed.
    fn set_active(&mut self, track: Option<TrackId>) -> bool {
        if self.active == track {
            return false;
        }
        self.active = track;
        self.rewriter.rebase();
        self.vp8.rebase();
        true
    }

    /// `track` is gone: the slot lets go of it. Returns true when what flows was emptied.
    pub fn forget(&mut self, track: TrackId) -> bool {
        if self.next.is_some_and(|(t, _)| t == track) {
            self.next = None;
        }
        if self.active == Some(track) {
            return self.set_active(None);
        }
        false
    }

    /// A packet of `track` arrived: whether the slot forwards it, switching to it first if it
    /// is the awaited source and the packet starts a keyframe. The second value says a switch
    /// happened.
    pub fn admit(&mut self, track: TrackId, keyframe_start: bool) -> (bool, bool) {
        if self.active == Some(track) {
            return (true, false);
        }
        match self.next {
            Some((t, _)) if t == track && keyframe_start => {
                self.set_active(Some(t));
                self.next = None;
                self.pt_map.clear();
                (true, true)
            }
            _ => (false, false),
        }
    }
}

/// New targets for `current` (one per slot of a kind) that carry `wanted` (in priority order,
/// no duplicates, at most as many as slots): a wanted source already in a slot keeps it, the
/// others take the slots that free up, in order. Keeps switching to what really changed.
pub fn stable_assign(current: &[Option<TrackId>], wanted: &[TrackId]) -> Vec<Option<TrackId>> {
    let mut out: Vec<Option<TrackId>> = current
        .iter()
        .map(|c| c.filter(|t| wanted.contains(t)))
        .collect();
    let mut free = (0..out.len())
        .filter(|i| out[*i].is_none())
        .collect::<Vec<_>>();
    free.reverse();
    for t in wanted {
        if out.contains(&Some(*t)) {
            continue;
        }
        let Some(i) = free.pop() else {
            break;
        };
        out[i] = Some(*t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u64) -> TrackId {
        TrackId(n)
    }

    #[test]
    fn kept_sources_keep_their_slots_and_newcomers_take_freed_ones() {
        let cur = [Some(t(1)), Some(t(2)), Some(t(3))];
        assert_eq!(
            stable_assign(&cur, &[t(3), t(4), t(1)]),
            vec![Some(t(1)), Some(t(4)), Some(t(3))]
        );
        assert_eq!(
            stable_assign(&[None, None], &[t(7)]),
            vec![Some(t(7)), None]
        );
        assert_eq!(stable_assign(&cur, &[]), vec![None, None, None]);
    }

    #[test]
    fn more_wanted_than_slots_takes_the_first() {
        assert_eq!(
            stable_assign(&[None, None], &[t(1), t(2), t(3)]),
            vec![Some(t(1)), Some(t(2))]
        );
    }

    #[test]
    fn video_switches_only_on_a_keyframe_of_the_new_source() {
        let now = Instant::now();
        let mut s = Slot::new(MediaKind::Video);
        assert!(!s.retarget(Some(t(1)), now));
        assert_eq!(s.admit(t(1), false), (false, false));
        assert_eq!(s.admit(t(1), true), (true, true));
        assert!(!s.retarget(Some(t(2)), now));
        // The old source keeps flowing until the new one's keyframe.
        assert_eq!(s.admit(t(1), false), (true, false));
        assert_eq!(s.admit(t(2), false), (false, false));
        assert_eq!(s.admit(t(2), true), (true, true));
        assert_eq!(s.admit(t(1), true), (false, false));
        assert_eq!(s.sources().collect::<Vec<_>>(), vec![t(2)]);
        // Emptying is immediate.
        assert!(s.retarget(None, now));
        assert_eq!(s.admit(t(2), true), (false, false));
    }

    #[test]
    fn a_source_given_back_after_an_empty_spell_continues_the_numbering() {
        // Seen with aiortc: a video slot emptied by a layout and refilled with the source it
        // had jumped over every packet that source sent meanwhile, and the receiver's jitter
        // buffer waited for them (no frames for seconds).
        let t0 = Instant::now();
        let ssrc = 0x5eed;
        for video in [false, true] {
            let kind = if video {
                MediaKind::Video
            } else {
                MediaKind::Audio
            };
            let mut s = Slot::new(kind);
            s.retarget(Some(t(1)), t0);
            assert_eq!(s.admit(t(1), true), (true, video));
            assert_eq!(s.rewriter.map(ssrc, 1000, 90_000, t0).0, 1000);
            assert!(s.retarget(None, t0));
            // Packets 1001..=1199 go nowhere; then the same source is back.
            s.retarget(Some(t(1)), t0);
            assert!(s.admit(t(1), true).0);
            let later = t0 + std::time::Duration::from_secs(2);
            assert_eq!(
                s.rewriter.map(ssrc, 1200, 90_000 + 200 * 960, later).0,
                1001,
                "video {video}"
            );
            assert_eq!(
                s.rewriter.map(ssrc, 1201, 90_000 + 201 * 960, later).0,
                1002
            );
        }
    }

    #[test]
    fn audio_switches_at_once() {
        let now = Instant::now();
        let mut s = Slot::new(MediaKind::Audio);
        assert!(s.retarget(Some(t(1)), now));
        assert_eq!(s.admit(t(1), false), (true, false));
        assert!(s.retarget(Some(t(2)), now));
        assert_eq!(s.admit(t(1), false), (false, false));
    }
}
