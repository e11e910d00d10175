//! What a receiver learns from RTP headers: loss from sequence gaps, duplicates; and a
//! latency histogram in fixed logarithmic buckets (no sample lists).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What one received sequence number meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// Newest so far; `gap` packets before it are missing (counted as lost until they come).
    Ahead { gap: u64 },
    /// A packet counted lost arrived late: one loss less.
    Recovered,
    /// Seen already.
    Duplicate,
    /// Older than the stream's first packet or than the window: neither lost nor counted.
    Old,
}

/// Per-stream sequence tracking over extended (64-bit) sequence numbers, with a 128-packet
/// window of what arrived below the newest.
#[derive(Debug, Default)]
pub struct SeqTracker {
    first: Option<u64>,
    max: u64,
    /// Bit i set: `max - i` arrived.
    window: u128,
}

impl SeqTracker {
    pub fn on(&mut self, seq: u64) -> SeqEvent {
        let Some(first) = self.first else {
            self.first = Some(seq);
            self.max = seq;
            self.window = 1;
            return SeqEvent::Ahead { gap: 0 };
        };
        if seq > self.max {
            let d = seq - self.max;
            self.window = if d >= 128 { 0 } else { self.window << d };
            self.window |= 1;
            self.max = seq;
            return SeqEvent::Ahead { gap: d - 1 };
        }
        let d = self.max - seq;
        if seq < first || d >= 128 {
            return SeqEvent::Old;
        }
        let bit = 1u128 << d;
        if self.window & bit != 0 {
            SeqEvent::Duplicate
        } else {
            self.window |= bit;
            SeqEvent::Recovered
        }
    }
}

/// Sub-buckets per power of two (3 bits: 12.5 % resolution).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
pub const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(e - SUB_BITS) * SUB + sub) as usize
}

/// The largest value that falls in bucket `i`.
fn bucket_upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let e = (i - SUB) / SUB + u64::from(SUB_BITS);
    let sub = (i - SUB) % SUB;
    let width = 1u64 << (e - u64::from(SUB_BITS));
    ((SUB + sub) << (e - u64::from(SUB_BITS))).saturating_add(width - 1)
}

/// A histogram of microsecond values, written by one thread, read by any.
#[derive(Debug)]
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn record(&self, v: u64) {
        self.buckets[bucket_of(v)].fetch_add(1, Relaxed);
        self.max.fetch_max(v, Relaxed);
    }

    /// Adds this histogram's counts into `into` (length `BUCKETS`); returns its max.
    pub fn merge_into(&self, into: &mut [u64]) -> u64 {
        for (a, b) in into.iter_mut().zip(&self.buckets) {
            *a += b.load(Relaxed);
        }
        self.max.load(Relaxed)
    }
}

/// Percentile `q` (0..=1) of merged bucket counts: the upper edge of the bucket it falls in,
/// never above `max`. `None` with no samples.
pub fn percentile(counts: &[u64], max: u64, q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(bucket_upper(i).min(max));
        }
    }
    Some(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_count_as_lost_until_the_packet_arrives() {
        let mut t = SeqTracker::default();
        assert_eq!(t.on(100), SeqEvent::Ahead { gap: 0 });
        assert_eq!(t.on(101), SeqEvent::Ahead { gap: 0 });
        assert_eq!(t.on(104), SeqEvent::Ahead { gap: 2 });
        assert_eq!(t.on(102), SeqEvent::Recovered);
        assert_eq!(t.on(102), SeqEvent::Duplicate);
        assert_eq!(t.on(104), SeqEvent::Duplicate);
        assert_eq!(t.on(99), SeqEvent::Old);
        assert_eq!(t.on(400), SeqEvent::Ahead { gap: 295 });
        assert_eq!(t.on(250), SeqEvent::Old);
    }

    #[test]
    fn buckets_are_ordered_and_percentiles_close() {
        let mut last = 0;
        for v in [0u64, 1, 7, 8, 9, 15, 16, 100, 1000, 123_456, u64::MAX / 2] {
            let b = bucket_of(v);
            assert!(b >= last && b < BUCKETS);
            assert!(bucket_upper(b) >= v, "{v}");
            assert!(bucket_upper(b) - v <= v / 8 + 1, "{v}");
            last = b;
        }
        let h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let mut counts = vec![0; BUCKETS];
        let max = h.merge_into(&mut counts);
        assert_eq!(max, 1000);
        let p50 = percentile(&counts, max, 0.5).unwrap_or(0);
        assert!((500..=570).contains(&p50), "{p50}");
        assert_eq!(percentile(&counts, max, 1.0), Some(1000));
        assert_eq!(percentile(&[0; BUCKETS], 0, 0.5), None);
    }
}
