//! Where a connected peer's media may go: only to addresses that proved they receive it.
//!
//! str0m is an ICE-lite, controlled agent: it follows any correctly signed USE-CANDIDATE check
//! and sends to the new address at once. A participant knows its own ICE credentials, so it
//! could sign such a check from a forged source and turn the room's fan-out towards someone
//! else. The rule kept here:
//!
//! * Until the peer is connected nothing changes (str0m's own ICE-lite handling).
//! * At connection the address our DTLS flights went to is verified: the handshake completed,
//!   so whoever completed it received them there. If they went to more than one address,
//!   none is verified yet.
//! * After that, a STUN check from any other address is answered by the shard (so a client's
//!   own check succeeds) but held back from str0m, and the shard sends its own signed Binding
//!   Request (ICE-CONTROLLED, fresh random transaction id) to that address: at most one
//!   outstanding per peer, at most one per [`PROBE_INTERVAL`]. Only a signed success response
//!   with that transaction id, from that exact address, verifies it; then the held-back check is
//!   given to str0m, which may switch to the address.
//! * Whatever str0m sends that is not STUN goes only to verified addresses (defence in depth).
//!
//! A forged source thus gets a STUN answer to each forged check plus at most one small check of
//! ours per 500 ms, never media. Nothing here allocates per media packet.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::ice::StunMessage;

/// At most one check of ours per peer per this interval.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Verified addresses kept per peer, newest last.
const MAX_VERIFIED: usize = 4;
const STUN_HEADER: usize = 20;
const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// ICE credentials as strings (ufrag, password).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Creds {
    pub ufrag: String,
    pub pwd: String,
}

#[derive(Debug)]
struct Probe {
    to: SocketAddr,
    tid: [u8; 12],
    sent: Instant,
}

/// What to do with a STUN request from an address that is not verified.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Authentic: send this answer back to the source; the request is held.
    Answer(Vec<u8>),
    /// Not for this peer, badly signed, or a role a lite agent's peer cannot take.
    Rejected,
}

/// What a STUN datagram from a peer's address was, as far as our own checks go.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeReply {
    /// Not an answer to our outstanding check.
    NotOurs,
    /// Our check was answered: the address is verified now.
    Verified,
}

#[derive(Debug, Default)]
pub struct AddressGuard {
    /// Enforcing (the peer connected).
    active: bool,
    verified: Vec<SocketAddr>,
    local: Creds,
    remote: Creds,
    probe: Option<Probe>,
    /// The last authentic check held back, with its source; its buffer is reused.
    held: Option<SocketAddr>,
    held_bytes: Vec<u8>,
    /// Where our DTLS went before connection, and whether that was more than one address.
    dtls_to: Option<SocketAddr>,
    dtls_to_many: bool,
}

impl AddressGuard {
    pub fn new(local: Creds, remote: Creds) -> Self {
        AddressGuard {
            local,
            remote,
            ..Default::default()
        }
    }

    /// Credentials after a renegotiation (an ICE restart changes them). Remote credentials
    /// missing from the offer leave the known ones in place.
    pub fn set_creds(&mut self, local: Creds, remote: Creds) {
        self.local = local;
        if !remote.ufrag.is_empty() && !remote.pwd.is_empty() {
            self.remote = remote;
        }
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The peer connected: from now on only verified addresses get anything but STUN.
    pub fn activate(&mut self) {
        if self.active {
            return;
        }
        self.active = true;
        if let (Some(a), false) = (self.dtls_to, self.dtls_to_many) {
            self.verified.push(a);
        }
    }

    pub fn is_verified(&self, addr: SocketAddr) -> bool {
        // The current send address is the last one verified, so this is usually one compare.
        self.verified.iter().rev().any(|a| *a == addr)
    }

    /// Whether a datagram str0m produced may go to `dest`. Before connection everything may
    /// (DTLS destinations are noted); after it, STUN may, the rest only to verified addresses.
    pub fn may_send(&mut self, dest: SocketAddr, first_byte: u8) -> bool {
        if !self.active {
            if (20..=63).contains(&first_byte) {
                match self.dtls_to {
                    None => self.dtls_to = Some(dest),
                    Some(a) if a != dest => self.dtls_to_many = true,
                    Some(_) => {}
                }
            }
            return true;
        }
        first_byte <= 3 || self.is_verified(dest)
    }

    /// Checks a STUN Binding Request from an unverified `source` the way str0m would (our
    /// ufrag and the client's, MESSAGE-INTEGRITY with our password) and answers it, holding
    /// the request until `source` proves it receives.
    pub fn check_request(&mut self, data: &[u8], source: SocketAddr) -> Check {
        let Ok(msg) = StunMessage::parse(data) else {
            return Check::Rejected;
        };
        if !msg.is_binding_request() {
            return Check::Rejected;
        }
        let Some((ours, theirs)) = msg.split_username() else {
            return Check::Rejected;
        };
        if ours != self.local.ufrag || theirs != self.remote.ufrag {
            return Check::Rejected;
        }
        if !msg.verify(self.local.pwd.as_bytes(), hmac) {
            return Check::Rejected;
        }
        // We are ICE-lite, hence always controlled: a peer claiming that role is broken.
        if msg.ice_controlled().is_some() {
            return Check::Rejected;
        }
        let mut buf = vec![0u8; 256];
        let reply = StunMessage::binding_reply(msg.trans_id(), source);
        let Ok(n) = reply.to_bytes(Some(self.local.pwd.as_bytes()), &mut buf, hmac) else {
            return Check::Rejected;
        };
        buf.truncate(n);
        self.held = Some(source);
        self.held_bytes.clear();
        self.held_bytes.extend_from_slice(data);
        Check::Answer(buf)
    }

    /// Our own check to `to`, if none went out in the last [`PROBE_INTERVAL`].
    pub fn probe(&mut self, to: SocketAddr, now: Instant) -> Option<Vec<u8>> {
        if let Some(p) = &self.probe {
            if now < p.sent + PROBE_INTERVAL {
                return None;
            }
        }
        if self.remote.ufrag.is_empty() || self.remote.pwd.is_empty() {
            return None;
        }
        let tid = random_tid()?;
        let bytes = binding_request(&self.remote, &self.local.ufrag, tid);
        self.probe = Some(Probe { to, tid, sent: now });
        Some(bytes)
    }

    /// Whether `data` from `source` answers our outstanding check (same transaction id, same
    /// address, signed with the client's password). A verified address is kept.
    pub fn take_probe_reply(&mut self, data: &[u8], source: SocketAddr) -> ProbeReply {
        let Some(p) = &self.probe else {
            return ProbeReply::NotOurs;
        };
        // Binding success response with our transaction id, before any parsing.
        if data.len() < STUN_HEADER
            || data[..2] != [0x01, 0x01]
            || data[4..8] != MAGIC
            || data[8..20] != p.tid
            || source != p.to
        {
            return ProbeReply::NotOurs;
        }
        let Ok(msg) = StunMessage::parse(data) else {
            return ProbeReply::NotOurs;
        };
        if !msg.verify(self.remote.pwd.as_bytes(), hmac) {
            return ProbeReply::NotOurs;
        }
        self.probe = None;
        self.verified.retain(|a| *a != source);
        if self.verified.len() >= MAX_VERIFIED {
            self.verified.remove(0);
        }
        self.verified.push(source);
        ProbeReply::Verified
    }

    /// The check held back from `source`, now that it is verified.
    pub fn take_held(&mut self, source: SocketAddr, out: &mut Vec<u8>) -> bool {
        if self.held != Some(source) {
            return false;
        }
        self.held = None;
        out.clear();
        out.extend_from_slice(&self.held_bytes);
        true
    }
}

/// The client's ICE credentials from its SDP (the first `a=ice-ufrag`/`a=ice-pwd`; with
/// BUNDLE every section carries the same). Read only to sign our checks: if this reading
/// differed from str0m's, the client would not answer and nothing would be verified.
pub fn remote_creds_from_sdp(sdp: &str) -> Creds {
    let mut c = Creds::default();
    for line in sdp.lines() {
        let line = line.trim();
        if c.ufrag.is_empty() {
            if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
                c.ufrag = v.trim().to_owned();
            }
        }
        if c.pwd.is_empty() {
            if let Some(v) = line.strip_prefix("a=ice-pwd:") {
                c.pwd = v.trim().to_owned();
            }
        }
    }
    c
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    crate::dtls_probe::crypto_provider()
        .sha1_hmac_provider
        .sha1_hmac(key, parts)
}

/// 96 bits from the kernel's CSPRNG: the only thing a forged answer cannot know.
fn random_tid() -> Option<[u8; 12]> {
    let mut t = [0u8; 12];
    // SAFETY: the buffer is valid for 12 bytes of writes.
    let n = unsafe { libc::getrandom(t.as_mut_ptr().cast(), t.len(), 0) };
    (n == 12).then_some(t)
}

/// A Binding Request to the client: USERNAME `their:ours`, PRIORITY, ICE-CONTROLLED,
/// MESSAGE-INTEGRITY with their password, FINGERPRINT (RFC 8445 §7.1.1, RFC 8489).
fn binding_request(remote: &Creds, local_ufrag: &str, tid: [u8; 12]) -> Vec<u8> {
    fn attr(d: &mut Vec<u8>, typ: u16, value: &[u8]) {
        d.extend_from_slice(&typ.to_be_bytes());
        d.extend_from_slice(&(value.len() as u16).to_be_bytes());
        d.extend_from_slice(value);
        while !d.len().is_multiple_of(4) {
            d.push(0);
        }
    }
    let username = format!("{}:{}", remote.ufrag, local_ufrag);
    let mut d = Vec::with_capacity(128);
    d.extend_from_slice(&0x0001u16.to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(&MAGIC);
    d.extend_from_slice(&tid);
    attr(&mut d, 0x0006, username.as_bytes());
    // Priority of a peer-reflexive host-type candidate of ours; the client does not use it.
    attr(&mut d, 0x0024, &0x6e00_01ffu32.to_be_bytes());
    let tie: [u8; 8] = tid[..8].try_into().unwrap_or([0; 8]);
    attr(&mut d, 0x8029, &tie);
    // MESSAGE-INTEGRITY covers the header with the length up to and including itself.
    let len = (d.len() - STUN_HEADER + 24) as u16;
    d[2..4].copy_from_slice(&len.to_be_bytes());
    let mac = hmac(remote.pwd.as_bytes(), &[&d]);
    attr(&mut d, 0x0008, &mac);
    let len = (d.len() - STUN_HEADER + 8) as u16;
    d[2..4].copy_from_slice(&len.to_be_bytes());
    let fp = crc32(&d) ^ 0x5354_554e;
    attr(&mut d, 0x8028, &fp.to_be_bytes());
    d
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Creds {
        Creds {
            ufrag: u.into(),
            pwd: p.into(),
        }
    }

    #[test]
    fn our_check_is_a_valid_signed_binding_request() {
        let remote = creds("them", "their-password-0123456789");
        let d = binding_request(&remote, "us", [5; 12]);
        let msg = StunMessage::parse(&d).expect("parses (FINGERPRINT checked by the parser)");
        assert!(msg.is_binding_request());
        assert_eq!(msg.split_username(), Some(("them", "us")));
        assert!(msg.verify(remote.pwd.as_bytes(), hmac));
        assert!(msg.ice_controlled().is_some());
        assert!(!msg.use_candidate());
    }

    #[test]
    fn our_checks_are_rate_limited_per_peer() {
        let mut g = AddressGuard::new(creds("us", "our-pw"), creds("them", "their-pw"));
        let a: SocketAddr = "10.0.0.9:1".parse().expect("addr");
        let t0 = Instant::now();
        assert!(g.probe(a, t0).is_some());
        assert!(g.probe(a, t0 + Duration::from_millis(499)).is_none());
        assert!(g.probe(a, t0 + PROBE_INTERVAL).is_some());
    }

    #[test]
    fn the_creds_come_from_the_first_ice_lines() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:abcd\r\n\
                   a=ice-pwd:secretsecretsecret\r\nm=video 9 x 96\r\na=ice-ufrag:zzz\r\n";
        assert_eq!(
            remote_creds_from_sdp(sdp),
            creds("abcd", "secretsecretsecret")
        );
    }
}
