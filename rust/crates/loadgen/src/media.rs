//! Synthetic payloads: Opus-sized audio and VP8 frames with well-formed payload descriptors,
//! each carrying a send timestamp the receiver turns into one-way latency (same host) and the
//! sending client's id, so a receiver can tell whose media a receive slot carries.
//!
//! The tag near a payload's start: `VMLG`, the send time (u64, big-endian CLOCK_MONOTONIC ns),
//! then the sender's client id (u32, big-endian, never 0) when the payload has room for it.
//! 3-byte audio DTX frames carry neither (they are too small): a receiver counts them as
//! untagged (sender 0).

/// Marks the 12-byte latency stamp: these 4 bytes, then the send time as a big-endian u64 of
/// CLOCK_MONOTONIC nanoseconds.
pub const STAMP_MAGIC: &[u8; 4] = b"VMLG";
pub const STAMP_LEN: usize = 12;
/// The sender's id after the stamp: a big-endian u32 (client ids are 1..=u32::MAX).
pub const SENDER_LEN: usize = 4;
/// Stamp and sender id together.
pub const TAG_LEN: usize = STAMP_LEN + SENDER_LEN;
/// The stamp is looked for in this many leading payload bytes.
const STAMP_SEARCH: usize = 24;

/// Audio: one packet per 20 ms at 48 kHz.
pub const AUDIO_PTIME_MS: u64 = 20;
pub const AUDIO_TICKS_PER_PACKET: u32 = 960;
/// Payload sizes of a speaking and of a quiet (comfort noise) Opus frame, and of a DTX frame.
pub const AUDIO_LOUD_BYTES: usize = 120;
pub const AUDIO_QUIET_BYTES: usize = 40;
pub const AUDIO_DTX_BYTES: usize = 3;
/// A quiet DTX sender sends one frame this often (in packet times: 400 ms).
pub const DTX_EVERY: u64 = 20;
/// RFC 6464 levels (-dBov) of a loud and a quiet sender.
pub const LEVEL_LOUD: i8 = -10;
pub const LEVEL_QUIET: i8 = -127;

/// Video: 30 frames per second at 90 kHz; keyframes are this many times a delta frame.
pub const VIDEO_FPS: u64 = 30;
pub const VIDEO_TICKS_PER_FRAME: u32 = 3000;
pub const KEYFRAME_FACTOR: usize = 3;
/// Smallest packet that holds a first-packet keyframe header and the tag (stamp + sender).
pub const MIN_VIDEO_PACKET: usize = 1 + 10 + TAG_LEN + 4;
pub const KEYFRAME_WIDTH: u16 = 320;
pub const KEYFRAME_HEIGHT: u16 = 240;

/// CLOCK_MONOTONIC in nanoseconds (Python's `time.monotonic_ns()`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the live timespec.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Writes the stamp, and the sender's id if `room` (the bytes left for the tag) allows.
fn put_tag(buf: &mut Vec<u8>, now_ns: u64, sender: u32, room: usize) {
    buf.extend_from_slice(STAMP_MAGIC);
    buf.extend_from_slice(&now_ns.to_be_bytes());
    if room >= TAG_LEN {
        buf.extend_from_slice(&sender.to_be_bytes());
    }
}

/// What a payload's tag says: the send time, and the sender's client id when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub sent_ns: u64,
    /// `None`: no sender id (the payload had no room, or the id field is 0).
    pub sender: Option<u32>,
}

/// The tag carried in `payload`, if it has a stamp near its start (one search, no allocation).
pub fn read_tag(payload: &[u8]) -> Option<Tag> {
    let head = &payload[..payload.len().min(STAMP_SEARCH + TAG_LEN)];
    let at = head
        .windows(4)
        .take(STAMP_SEARCH + 1)
        .position(|w| w == STAMP_MAGIC)?;
    let bytes: [u8; 8] = head.get(at + 4..at + STAMP_LEN)?.try_into().ok()?;
    let sender = head
        .get(at + STAMP_LEN..at + TAG_LEN)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .filter(|&id| id != 0);
    Some(Tag {
        sent_ns: u64::from_be_bytes(bytes),
        sender,
    })
}

/// The send time carried in `payload`, if it has a stamp near its start.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    read_tag(payload).map(|t| t.sent_ns)
}

/// The sender's client id carried in `payload`, if it has one.
pub fn read_sender(payload: &[u8]) -> Option<u32> {
    read_tag(payload).and_then(|t| t.sender)
}

/// An Opus packet of `size` bytes: a TOC byte (CELT, fullband, 20 ms, one frame), then the
/// stamp when it fits and the sender's id when that fits too (not in a 3-byte DTX frame),
/// then filler.
pub fn audio_payload(size: usize, now_ns: u64, sender: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(size.max(1));
    p.push(0xfc);
    if size > STAMP_LEN {
        put_tag(&mut p, now_ns, sender, size - 1);
    }
    p.resize(size.max(1), 0);
    p
}

/// Sizes of the packets of one frame of `frame_bytes`, each at most `packet_bytes`.
pub fn split_frame(frame_bytes: usize, packet_bytes: usize) -> impl Iterator<Item = usize> {
    let packet_bytes = packet_bytes.max(MIN_VIDEO_PACKET);
    let frame_bytes = frame_bytes.max(MIN_VIDEO_PACKET);
    let n = frame_bytes.div_ceil(packet_bytes);
    (0..n).map(move |i| {
        if i + 1 < n {
            packet_bytes
        } else {
            (frame_bytes - packet_bytes * (n - 1)).max(MIN_VIDEO_PACKET)
        }
    })
}

/// One VP8 RTP payload of `size` bytes (RFC 7741): a one-byte payload descriptor (S set on a
/// frame's first packet, partition 0), on the first packet the VP8 payload header (P = 0 for a
/// keyframe, followed by the start code 9d 01 2a and a 320x240 size), then the tag (stamp and
/// sender id), then filler.
pub fn video_payload(size: usize, first: bool, key: bool, now_ns: u64, sender: u32) -> Vec<u8> {
    let size = size.max(MIN_VIDEO_PACKET);
    let mut p = Vec::with_capacity(size);
    p.push(if first { 0x10 } else { 0x00 });
    if first {
        // Frame tag: P (bit 0) = 0 keyframe / 1 interframe, version 0, show_frame (bit 4) = 1,
        // first partition size (19 bits) = 16.
        let partition: u32 = 16;
        let tag: u32 = u32::from(!key) | (1 << 4) | (partition << 5);
        p.extend_from_slice(&tag.to_le_bytes()[..3]);
        if key {
            p.extend_from_slice(&[0x9d, 0x01, 0x2a]);
            p.extend_from_slice(&KEYFRAME_WIDTH.to_le_bytes());
            p.extend_from_slice(&KEYFRAME_HEIGHT.to_le_bytes());
        }
    }
    put_tag(&mut p, now_ns, sender, TAG_LEN);
    p.resize(size, 0);
    p
}

/// Whether a VP8 payload starts a keyframe (the check a receiver or SFU makes).
pub fn is_vp8_keyframe(payload: &[u8]) -> bool {
    let Some(&d) = payload.first() else {
        return false;
    };
    if d & 0x10 == 0 || d & 0x0f != 0 {
        return false;
    }
    let mut at = 1;
    if d & 0x80 != 0 {
        at += 1; // extension bits: we never set them
    }
    payload.get(at).is_some_and(|b| b & 1 == 0)
        && payload.get(at + 3..at + 6) == Some(&[0x9d, 0x01, 0x2a][..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_back_from_every_payload_kind() {
        let t = 0x0102_0304_0506_0708;
        assert_eq!(read_stamp(&audio_payload(120, t, 7)), Some(t));
        assert_eq!(read_stamp(&audio_payload(40, t, 7)), Some(t));
        assert_eq!(read_stamp(&audio_payload(3, t, 7)), None);
        for (first, key) in [(true, true), (true, false), (false, false)] {
            assert_eq!(read_stamp(&video_payload(1200, first, key, t, 7)), Some(t));
        }
    }

    #[test]
    fn the_sender_id_reads_back_from_audio_and_video_payloads_beside_the_stamp() {
        let t = 0x1122_3344_5566_7788;
        for sender in [1u32, 2, 150, 0xdead_beef, u32::MAX] {
            for size in [AUDIO_LOUD_BYTES, AUDIO_QUIET_BYTES, 1 + TAG_LEN] {
                let p = audio_payload(size, t, sender);
                assert_eq!(p.len(), size);
                let tag = Tag {
                    sent_ns: t,
                    sender: Some(sender),
                };
                assert_eq!(read_tag(&p), Some(tag), "audio {size} bytes from {sender}");
            }
            for (first, key) in [(true, true), (true, false), (false, false)] {
                for size in [MIN_VIDEO_PACKET, 100, 1200, 1400] {
                    let p = video_payload(size, first, key, t, sender);
                    assert_eq!(p.len(), size);
                    assert_eq!(read_sender(&p), Some(sender), "video {size} {first} {key}");
                    assert_eq!(read_stamp(&p), Some(t));
                }
            }
        }
        // Two senders' payloads of the same shape differ only in the id.
        let a = video_payload(1200, true, true, t, 3);
        let b = video_payload(1200, true, true, t, 4);
        let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        assert_eq!(diff, vec![11 + TAG_LEN - 1]);
    }

    #[test]
    fn payloads_too_small_for_the_id_carry_the_stamp_alone_or_nothing() {
        let t = 42;
        // Room for TOC + stamp but not the id: the stamp reads back, no sender.
        let p = audio_payload(1 + STAMP_LEN, t, 9);
        assert_eq!(
            read_tag(&p),
            Some(Tag {
                sent_ns: t,
                sender: None
            })
        );
        let p = audio_payload(1 + STAMP_LEN + 3, t, 9);
        assert_eq!(
            read_tag(&p),
            Some(Tag {
                sent_ns: t,
                sender: None
            })
        );
        // A DTX frame has neither.
        assert_eq!(read_tag(&audio_payload(AUDIO_DTX_BYTES, t, 9)), None);
        // Id 0 means "no sender" (client ids start at 1).
        assert_eq!(read_sender(&audio_payload(AUDIO_LOUD_BYTES, t, 0)), None);
        // Truncated right after the stamp: no sender, no panic.
        let full = video_payload(1200, false, false, t, 9);
        assert_eq!(read_sender(&full[..1 + STAMP_LEN + 2]), None);
        assert_eq!(read_stamp(&full[..1 + STAMP_LEN]), Some(t));
    }

    #[test]
    fn video_payloads_with_the_id_stay_valid_vp8_for_the_engine() {
        for sender in [1u32, 0x2a2a_2a2a, u32::MAX] {
            let key = video_payload(1200, true, true, 5, sender);
            assert!(visio_engine::vp8::is_keyframe_start(&key));
            assert!(is_vp8_keyframe(&key));
            let delta = video_payload(1200, true, false, 5, sender);
            assert!(!visio_engine::vp8::is_keyframe_start(&delta));
            let middle = video_payload(1200, false, false, 5, sender);
            assert!(!visio_engine::vp8::is_keyframe_start(&middle));
        }
    }

    #[test]
    fn keyframes_are_recognisable_and_delta_frames_are_not() {
        assert!(is_vp8_keyframe(&video_payload(1200, true, true, 1, 1)));
        assert!(!is_vp8_keyframe(&video_payload(1200, true, false, 1, 1)));
        assert!(!is_vp8_keyframe(&video_payload(1200, false, false, 1, 1)));
        let key = video_payload(1200, true, true, 1, 1);
        assert_eq!(&key[7..11], &[0x40, 0x01, 0xf0, 0x00]);
    }

    #[test]
    fn frames_split_into_packets_of_the_asked_size() {
        let sizes: Vec<usize> = split_frame(6250, 1200).collect();
        assert_eq!(sizes, vec![1200, 1200, 1200, 1200, 1200, 250]);
        assert_eq!(split_frame(1200, 1200).count(), 1);
        assert!(split_frame(5, 1200).all(|s| s == MIN_VIDEO_PACKET));
    }
}
