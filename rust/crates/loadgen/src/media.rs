//! Synthetic payloads: Opus-sized audio and VP8 frames with well-formed payload descriptors,
//! each carrying a send timestamp the receiver turns into one-way latency (same host).

/// Marks the 12-byte latency stamp: these 4 bytes, then the send time as a big-endian u64 of
/// CLOCK_MONOTONIC nanoseconds.
pub const STAMP_MAGIC: &[u8; 4] = b"VMLG";
pub const STAMP_LEN: usize = 12;
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
/// Smallest packet that holds a first-packet keyframe header and the stamp.
pub const MIN_VIDEO_PACKET: usize = 1 + 10 + STAMP_LEN + 8;
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

fn put_stamp(buf: &mut Vec<u8>, now_ns: u64) {
    buf.extend_from_slice(STAMP_MAGIC);
    buf.extend_from_slice(&now_ns.to_be_bytes());
}

/// The send time carried in `payload`, if it has a stamp near its start.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    let head = &payload[..payload.len().min(STAMP_SEARCH + STAMP_LEN)];
    let at = head
        .windows(4)
        .take(STAMP_SEARCH + 1)
        .position(|w| w == STAMP_MAGIC)?;
    let bytes: [u8; 8] = head.get(at + 4..at + STAMP_LEN)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// An Opus packet of `size` bytes: a TOC byte (CELT, fullband, 20 ms, one frame), then the
/// stamp when it fits, then filler.
pub fn audio_payload(size: usize, now_ns: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(size.max(1));
    p.push(0xfc);
    if size > STAMP_LEN {
        put_stamp(&mut p, now_ns);
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
/// keyframe, followed by the start code 9d 01 2a and a 320x240 size), then the stamp, then filler.
pub fn video_payload(size: usize, first: bool, key: bool, now_ns: u64) -> Vec<u8> {
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
    put_stamp(&mut p, now_ns);
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
        assert_eq!(read_stamp(&audio_payload(120, t)), Some(t));
        assert_eq!(read_stamp(&audio_payload(40, t)), Some(t));
        assert_eq!(read_stamp(&audio_payload(3, t)), None);
        for (first, key) in [(true, true), (true, false), (false, false)] {
            assert_eq!(read_stamp(&video_payload(1200, first, key, t)), Some(t));
        }
    }

    #[test]
    fn keyframes_are_recognisable_and_delta_frames_are_not() {
        assert!(is_vp8_keyframe(&video_payload(1200, true, true, 1)));
        assert!(!is_vp8_keyframe(&video_payload(1200, true, false, 1)));
        assert!(!is_vp8_keyframe(&video_payload(1200, false, false, 1)));
        let key = video_payload(1200, true, true, 1);
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
