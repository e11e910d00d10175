//! Keeps a subscriber's view of one outgoing stream continuous: sequence numbers and RTP
//! timestamps carry on smoothly when the source behind it changes (a publisher's new SSRC,
//! another publisher on the same m-line), so the receiver's jitter buffer never sees a jump.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Rewriter {
    clock_rate: u32,
    source: Option<u32>,
    seq_offset: u64,
    ts_offset: u32,
    last: Option<Last>,
}

#[derive(Debug, Clone, Copy)]
struct Last {
    seq: u64,
    ts: u32,
    at: Instant,
}

impl Rewriter {
    pub fn new(clock_rate: u32) -> Self {
        Rewriter {
            clock_rate,
            source: None,
            seq_offset: 0,
            ts_offset: 0,
            last: None,
        }
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// The next packet mapped starts a new stretch, whichever source it comes from: its
    /// numbering continues from the last packet sent. For a slot that stopped forwarding its
    /// source for a while (emptied, then given the same source back): without this, the
    /// source's packets skipped meanwhile would show as a jump in sequence numbers, which a
    /// receiver takes for loss it waits for (aiortc's jitter buffer stalls on it).
    pub fn rebase(&mut self) {
        self.source = None;
    }

    /// Maps an incoming (extended sequence number, RTP timestamp) of `source` to the
    /// outgoing pair. `now` is the arrival time, used to size the timestamp gap on a switch.
    pub fn map(&mut self, source: u32, seq: u64, ts: u32, now: Instant) -> (u64, u32) {
        if self.source != Some(source) {
            self.source = Some(source);
            match self.last {
                None => {
                    self.seq_offset = 0;
                    self.ts_offset = 0;
                }
                Some(last) => {
                    let elapsed = now.saturating_duration_since(last.at);
                    let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)) as u64;
                    let gap = ticks.clamp(1, u64::from(u32::MAX / 2)) as u32;
                    self.seq_offset = (last.seq + 1).wrapping_sub(seq);
                    self.ts_offset = last.ts.wrapping_add(gap).wrapping_sub(ts);
                }
            }
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        let newest = self.last.is_none_or(|l| out_seq > l.seq);
        if newest {
            self.last = Some(Last {
                seq: out_seq,
                ts: out_ts,
                at: now,
            });
        }
        (out_seq, out_ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn passes_a_single_source_through_unchanged() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        assert_eq!(r.map(1, 100, 5000, t0), (100, 5000));
        assert_eq!(r.map(1, 101, 8000, t0), (101, 8000));
        // Reordered packet keeps its own place.
        assert_eq!(r.map(1, 99, 2000, t0), (99, 2000));
    }

    #[test]
    fn continues_sequence_and_time_across_a_source_change() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.map(1, 500, 1_000, t0);
        let (seq, ts) = r.map(2, 70_000, 4_000_000_000, t0 + Duration::from_millis(100));
        assert_eq!(seq, 501);
        assert_eq!(ts, 1_000 + 9_000);
        let (seq, ts) = r.map(2, 70_001, 4_000_003_000, t0 + Duration::from_millis(133));
        assert_eq!(seq, 502);
        assert_eq!(ts, 1_000 + 9_000 + 3_000);
    }

    #[test]
    fn the_same_source_after_a_rebase_continues_without_a_jump() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000);
        assert_eq!(r.map(7, 100, 960_000, t0), (100, 960_000));
        // Packets 101..=149 of source 7 are not forwarded (the slot was empty), then it is back.
        r.rebase();
        let (seq, ts) = r.map(7, 150, 960_000 + 50 * 960, t0 + Duration::from_millis(1000));
        assert_eq!(seq, 101);
        assert_eq!(ts, 960_000 + 48_000);
        assert_eq!(r.map(7, 151, 960_000 + 51 * 960, t0).0, 102);
    }

    #[test]
    fn timestamps_wrap_without_panicking() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000);
        r.map(1, 1, u32::MAX - 10, t0);
        let (_, ts) = r.map(1, 2, 5, t0);
        assert_eq!(ts, 5);
    }
}
