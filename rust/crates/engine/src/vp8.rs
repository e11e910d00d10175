//! The VP8 payload descriptor (RFC 7741 §4.2) as a forwarder needs it: where a keyframe
//! starts, and the picture id and TL0PICIDX a receiver uses to order frames, which must stay
//! continuous on a slot whose source changes.
//!
//! ```text
//!  |X|R|N|S|R| PID |   X: extension follows, S: start of a partition, PID: partition index
//!  |I|L|T|K| RSV   |   (if X) I: picture id, L: TL0PICIDX, T/K: TID/KEYIDX byte
//!  |M| PictureID   |   (if I) M: 15-bit picture id, one more byte
//!  |   TL0PICIDX   |   (if L)
//!  |TID|Y| KEYIDX  |   (if T or K)
//! ```
//! followed, on a frame's first packet, by the VP8 payload header whose bit 0 is 0 for a
//! keyframe. Parsing and the in-place patch at send time are str0m's; the numbering is ours.

use str0m::rtp::{Vp8Descriptor, Vp8Patch};

/// What a forwarder reads from one VP8 payload, once per packet before the fan-out.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    desc: Option<Vp8Descriptor>,
    /// The packet starts a keyframe (S = 1, PID = 0, P = 0).
    pub keyframe_start: bool,
    /// The picture id is 15 bits wide (M = 1).
    long_pid: bool,
}

impl Frame {
    pub fn parse(payload: &[u8]) -> Frame {
        let desc = Vp8Descriptor::parse(payload).ok();
        let keyframe_start = desc.is_some_and(|d| d.starts_keyframe(payload));
        // X, then I: the picture id's first byte follows the extension byte; its top bit is M.
        let long_pid = payload.first().is_some_and(|b| b & 0x80 != 0)
            && payload.get(1).is_some_and(|b| b & 0x80 != 0)
            && payload.get(2).is_some_and(|b| b & 0x80 != 0);
        Frame {
            desc,
            keyframe_start,
            long_pid,
        }
    }
}

/// Whether `payload` starts a VP8 keyframe.
pub fn is_keyframe_start(payload: &[u8]) -> bool {
    Frame::parse(payload).keyframe_start
}

/// Keeps picture ids and TL0PICIDX continuous on one outgoing stream across source changes:
/// libwebrtc orders frames by picture id, and a jump back makes it drop the new source's frames
/// as old ones.
#[derive(Debug, Clone, Default)]
pub struct Continuity {
    source: Option<u32>,
    pid_offset: u16,
    tl0_offset: u8,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
}

impl Continuity {
    /// The next packet patched continues from the last ids sent, whichever source it comes
    /// from (see `Rewriter::rebase`).
    pub fn rebase(&mut self) {
        self.source = None;
    }

    /// The patch that makes one packet of `source` continue this stream's numbering; `None`
    /// when it goes out as it came (one source so far, or no such fields).
    pub fn patch(&mut self, source: u32, frame: &Frame) -> Option<Vp8Patch> {
        let desc = frame.desc?;
        let mask: u16 = if frame.long_pid { 0x7fff } else { 0x7f };
        let pid_in = desc.picture_id();
        let tl0_in = desc.tl0_pic_idx();
        if self.source != Some(source) {
            self.source = Some(source);
            self.pid_offset = match (self.last_pid, pid_in) {
                (Some(last), Some(pid)) => last.wrapping_add(1).wrapping_sub(pid),
                _ => 0,
            };
            self.tl0_offset = match (self.last_tl0, tl0_in) {
                (Some(last), Some(t)) => last.wrapping_add(1).wrapping_sub(t),
                _ => 0,
            };
        }
        let pid_out = pid_in.map(|p| p.wrapping_add(self.pid_offset) & mask);
        let tl0_out = tl0_in.map(|t| t.wrapping_add(self.tl0_offset));
        if let Some(out) = pid_out {
            // Ids wrap: "newer" is less than half the id space ahead.
            let newer = self
                .last_pid
                .is_none_or(|l| out != l & mask && out.wrapping_sub(l) & mask <= mask / 2);
            if newer {
                self.last_pid = Some(out);
            }
        }
        if let Some(out) = tl0_out {
            if self.last_tl0.is_none_or(|l| out.wrapping_sub(l) < 0x80) {
                self.last_tl0 = Some(out);
            }
        }
        if pid_out == pid_in && tl0_out == tl0_in {
            return None;
        }
        let mut b = desc.patch();
        if let Some(p) = pid_out {
            b = b.picture_id(p);
        }
        if let Some(t) = tl0_out {
            b = b.tl0_pic_idx(t);
        }
        b.build().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// X=1 S=1, I=1 L=1 T=1 (as libwebrtc sends), 15-bit picture id, TL0PICIDX, TID, then
    /// a payload header.
    fn packet(pid: u16, tl0: u8, start: bool, key: bool) -> Vec<u8> {
        let first = 0x80 | if start { 0x10 } else { 0 };
        vec![
            first,
            0xe0,
            0x80 | (pid >> 8) as u8,
            pid as u8,
            tl0,
            0x20,
            u8::from(!key),
            0,
            0,
        ]
    }

    #[test]
    fn finds_keyframe_starts_and_nothing_else() {
        assert!(is_keyframe_start(&packet(5, 1, true, true)));
        assert!(!is_keyframe_start(&packet(5, 1, true, false)));
        assert!(!is_keyframe_start(&packet(5, 1, false, true)));
        // The one-byte descriptor our load generator and aiortc send.
        assert!(is_keyframe_start(&[0x10, 0x00, 0, 0]));
        assert!(!is_keyframe_start(&[0x10, 0x01, 0, 0]));
        // Truncated descriptors are not keyframes and do not panic.
        for cut in 0..7 {
            let p = packet(5, 1, true, true);
            assert!(!is_keyframe_start(&p[..cut]), "cut at {cut}");
        }
    }

    #[test]
    fn picture_ids_continue_across_a_source_change() {
        let mut c = Continuity::default();
        let p = packet(1000, 7, true, true);
        assert!(
            c.patch(1, &Frame::parse(&p)).is_none(),
            "first source unchanged"
        );
        let p = packet(1001, 7, true, false);
        assert!(c.patch(1, &Frame::parse(&p)).is_none());
        // Another source far behind in its own numbering: it must carry on from 1002.
        let p = packet(20, 200, true, true);
        assert!(c.patch(2, &Frame::parse(&p)).is_some());
        assert_eq!(c.last_pid, Some(1002));
        assert_eq!(c.last_tl0, Some(8));
        let p = packet(21, 200, true, false);
        assert!(c.patch(2, &Frame::parse(&p)).is_some());
        assert_eq!(c.last_pid, Some(1003));
    }

    #[test]
    fn the_same_source_after_a_rebase_carries_on_from_the_last_ids_sent() {
        let mut c = Continuity::default();
        c.patch(1, &Frame::parse(&packet(1000, 7, true, true)));
        // Pictures 1001..=1049 were not forwarded; the same source is back after a rebase.
        c.rebase();
        c.patch(1, &Frame::parse(&packet(1050, 12, true, true)));
        assert_eq!(c.last_pid, Some(1001));
        assert_eq!(c.last_tl0, Some(8));
    }

    #[test]
    fn picture_ids_wrap_at_fifteen_bits() {
        let mut c = Continuity::default();
        c.patch(1, &Frame::parse(&packet(0x7fff, 0, true, true)));
        c.patch(2, &Frame::parse(&packet(3, 0, true, true)));
        assert_eq!(c.last_pid, Some(0));
    }
}
