//! The shard's timer heap: the next instant each peer wants to be woken at.
//!
//! Entries are never removed in place; a popped entry that no longer matches the peer's
//! current deadline is stale and skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::ids::PeerId;

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, PeerId)>>,
}

impl Timers {
    pub fn schedule(&mut self, at: Instant, peer: PeerId) {
        self.heap.push(Reverse((at, peer)));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops every entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant, out: &mut Vec<(Instant, PeerId)>) {
        while let Some(Reverse((at, peer))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            out.push((at, peer));
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
