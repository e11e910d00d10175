//! Classifying datagrams on a shared port (RFC 7983) and finding the ICE ufrag of a STUN
//! request, without trusting anything in the datagram.

/// What the first byte says a datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stun,
    Dtls,
    Rtp,
    Other,
}

const STUN_HEADER: usize = 20;
const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

pub fn classify(d: &[u8]) -> Kind {
    match d.first() {
        Some(0..=3) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) => Kind::Rtp,
        _ => Kind::Other,
    }
}

/// The local (first) part of the USERNAME of a STUN Binding Request, if the datagram is a
/// well-framed STUN message carrying one.
pub fn stun_local_ufrag(d: &[u8]) -> Option<&str> {
    if d.len() < STUN_HEADER || d[4..8] != STUN_MAGIC {
        return None;
    }
    // Binding request: method 0x001, class request.
    let msg_type = u16::from_be_bytes([d[0], d[1]]);
    if msg_type != 0x0001 {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([d[2], d[3]]));
    if body_len % 4 != 0 || STUN_HEADER + body_len != d.len() {
        return None;
    }
    let mut rest = &d[STUN_HEADER..];
    while rest.len() >= 4 {
        let typ = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let padded = len.checked_add(3)? & !3;
        if rest.len() < 4 + padded {
            return None;
        }
        if typ == ATTR_USERNAME {
            let value = std::str::from_utf8(&rest[4..4 + len]).ok()?;
            let local = value.split(':').next()?;
            return (!local.is_empty()).then_some(local);
        }
        rest = &rest[4 + padded..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let mut attrs = vec![];
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut d = vec![0x00, 0x01];
        d.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        d.extend_from_slice(&STUN_MAGIC);
        d.extend_from_slice(&[7; 12]);
        d.extend_from_slice(&attrs);
        d
    }

    #[test]
    fn classifies_by_first_byte() {
        assert_eq!(classify(&[0]), Kind::Stun);
        assert_eq!(classify(&[22]), Kind::Dtls);
        assert_eq!(classify(&[0x80]), Kind::Rtp);
        assert_eq!(classify(&[200]), Kind::Other);
        assert_eq!(classify(&[]), Kind::Other);
    }

    #[test]
    fn finds_the_local_part_of_the_username() {
        let d = binding_request(b"serverufrag:clientufrag");
        assert_eq!(stun_local_ufrag(&d), Some("serverufrag"));
    }

    #[test]
    fn rejects_truncated_and_lying_lengths() {
        let d = binding_request(b"abc:def");
        for n in 0..d.len() {
            assert_eq!(stun_local_ufrag(&d[..n]), None, "prefix of {n} bytes");
        }
        let mut lying = d.clone();
        lying[22] = 0xff; // attribute length far past the end
        assert_eq!(stun_local_ufrag(&lying), None);
    }

    #[test]
    fn ignores_non_requests_and_bad_utf8() {
        let mut d = binding_request(b"abc:def");
        d[1] = 0x11; // indication
        assert_eq!(stun_local_ufrag(&d), None);
        let d = binding_request(&[0xff, 0xfe, b':', b'a']);
        assert_eq!(stun_local_ufrag(&d), None);
        let d = binding_request(b":x");
        assert_eq!(stun_local_ufrag(&d), None);
    }
}
