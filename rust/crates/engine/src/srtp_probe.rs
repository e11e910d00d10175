//! Learns whether str0m authenticated an SRTP/SRTCP datagram, and keeps the SRTCP replay
//! window str0m does not have.
//!
//! str0m drops replayed and forged SRTP silently. Its receive path calls the cipher's
//! `decrypt` only for a packet that can be authentic: AES-CM-HMAC-SHA1 decrypts after the tag
//! verified, AES-GCM's decrypt is the tag check. So the crypto provider's SRTP factory is
//! wrapped (like `dtls_probe`): every successful receive-side decrypt bumps a thread-local
//! count, and the shard, which makes one `Rtc` call at a time per thread, reads it around the
//! call. A datagram that was not decrypted was refused: bad tag, replayed (str0m's RTP replay
//! window rejects it before decryption), unknown stream or payload type, or keys not ready.
//!
//! SRTCP has no replay check in str0m (RFC 3711 §3.4 asks for one): [`SrtcpReplay`] keeps a
//! 64-packet window per sender SSRC, checked before str0m sees the packet and advanced only by
//! packets str0m authenticated, so a forged index cannot move it.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::OnceLock;

use str0m::crypto::{
    AeadAes128GcmCipher, AeadAes256GcmCipher, Aes128CmSha1_80Cipher, CryptoError, SrtpProvider,
    SupportedAeadAes128Gcm, SupportedAeadAes256Gcm, SupportedAes128CmSha1_80,
};

thread_local! {
    static DECRYPTED: Cell<u64> = const { Cell::new(0) };
}

/// Receive-side SRTP/SRTCP decryptions that succeeded on this thread so far.
pub fn decrypted() -> u64 {
    DECRYPTED.with(|c| c.get())
}

fn count_decrypted() {
    DECRYPTED.with(|c| c.set(c.get().wrapping_add(1)));
}

/// Wraps `inner` so successful receive-side decryptions are counted.
pub fn wrap(inner: &'static dyn SrtpProvider) -> &'static dyn SrtpProvider {
    static PROVIDER: OnceLock<ProbingSrtp> = OnceLock::new();
    static CM: OnceLock<ProbingCm> = OnceLock::new();
    static GCM128: OnceLock<ProbingGcm128> = OnceLock::new();
    static GCM256: OnceLock<ProbingGcm256> = OnceLock::new();
    PROVIDER.get_or_init(|| ProbingSrtp {
        inner,
        cm: CM.get_or_init(|| ProbingCm(inner.aes_128_cm_sha1_80())),
        gcm128: GCM128.get_or_init(|| ProbingGcm128(inner.aead_aes_128_gcm())),
        gcm256: GCM256.get_or_init(|| ProbingGcm256(inner.aead_aes_256_gcm())),
    })
}

#[derive(Debug)]
struct ProbingSrtp {
    inner: &'static dyn SrtpProvider,
    cm: &'static ProbingCm,
    gcm128: &'static ProbingGcm128,
    gcm256: &'static ProbingGcm256,
}

impl SrtpProvider for ProbingSrtp {
    fn aes_128_cm_sha1_80(&self) -> &'static dyn SupportedAes128CmSha1_80 {
        self.cm
    }

    fn aead_aes_128_gcm(&self) -> &'static dyn SupportedAeadAes128Gcm {
        self.gcm128
    }

    fn aead_aes_256_gcm(&self) -> &'static dyn SupportedAeadAes256Gcm {
        self.gcm256
    }

    fn srtp_aes_128_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        self.inner.srtp_aes_128_ecb_round(key, input, output)
    }

    fn srtp_aes_256_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        self.inner.srtp_aes_256_ecb_round(key, input, output)
    }
}

#[derive(Debug)]
struct ProbingCm(&'static dyn SupportedAes128CmSha1_80);

impl SupportedAes128CmSha1_80 for ProbingCm {
    fn create_cipher(&self, key: [u8; 16], encrypt: bool) -> Box<dyn Aes128CmSha1_80Cipher> {
        let inner = self.0.create_cipher(key, encrypt);
        if encrypt {
            inner
        } else {
            Box::new(CmDec(inner))
        }
    }
}

#[derive(Debug)]
struct CmDec(Box<dyn Aes128CmSha1_80Cipher>);

impl Aes128CmSha1_80Cipher for CmDec {
    fn encrypt(&mut self, iv: &[u8; 16], input: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
        self.0.encrypt(iv, input, out)
    }

    fn decrypt(&mut self, iv: &[u8; 16], input: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
        let r = self.0.decrypt(iv, input, out);
        if r.is_ok() {
            count_decrypted();
        }
        r
    }
}

/// A probing factory for one AES-GCM key size: receive-side ciphers count their successful
/// decryptions, send-side ones are str0m's own.
macro_rules! probing_gcm {
    ($probe:ident, $dec:ident, $supported:ident, $cipher:ident, $key:literal) => {
        #[derive(Debug)]
        struct $probe(&'static dyn $supported);

        impl $supported for $probe {
            fn create_cipher(&self, key: [u8; $key], encrypt: bool) -> Box<dyn $cipher> {
                let inner = self.0.create_cipher(key, encrypt);
                if encrypt {
                    inner
                } else {
                    Box::new($dec(inner))
                }
            }
        }

        #[derive(Debug)]
        struct $dec(Box<dyn $cipher>);

        impl $cipher for $dec {
            fn encrypt(
                &mut self,
                iv: &[u8; 12],
                aad: &[u8],
                input: &[u8],
                out: &mut [u8],
            ) -> Result<(), CryptoError> {
                self.0.encrypt(iv, aad, input, out)
            }

            fn decrypt(
                &mut self,
                iv: &[u8; 12],
                aads: &[&[u8]],
                input: &[u8],
                out: &mut [u8],
            ) -> Result<usize, CryptoError> {
                let r = self.0.decrypt(iv, aads, input, out);
                if r.is_ok() {
                    count_decrypted();
                }
                r
            }
        }
    };
}

probing_gcm!(
    ProbingGcm128,
    Gcm128Dec,
    SupportedAeadAes128Gcm,
    AeadAes128GcmCipher,
    16
);
probing_gcm!(
    ProbingGcm256,
    Gcm256Dec,
    SupportedAeadAes256Gcm,
    AeadAes256GcmCipher,
    32
);

/// Whether an RTP-range datagram is RTCP (RFC 5761 §4, as str0m demultiplexes it).
pub fn is_rtcp(d: &[u8]) -> bool {
    d.len() > 2 && (64..96).contains(&(d[1] & 0x7f))
}

/// The sender SSRC and 31-bit SRTCP index of an SRTCP packet under `profile`
/// (`stats::srtp_profile_name` codes: 1 AES-CM-HMAC-SHA1-80, 2 and 3 AES-GCM).
pub fn srtcp_index(d: &[u8], profile: u64) -> Option<(u32, u32)> {
    // Header (8), then E+index (4) before a 10-byte tag (AES-CM), or last (GCM, RFC 7714).
    let at = match profile {
        1 => d.len().checked_sub(14)?,
        2 | 3 => d.len().checked_sub(4)?,
        _ => return None,
    };
    if at < 8 {
        return None;
    }
    let ssrc = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
    let e_index = u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
    Some((ssrc, e_index & 0x7fff_ffff))
}

/// SSRCs tracked per peer; a client sends RTCP from a handful.
const MAX_SSRCS: usize = 32;
const WINDOW: u32 = 64;

#[derive(Debug, Clone, Copy)]
struct Window {
    top: u32,
    /// Bit i: index `top - i` was seen.
    seen: u64,
}

/// Per-peer SRTCP replay windows (RFC 3711 §3.3.2), keyed by sender SSRC.
#[derive(Debug, Default)]
pub struct SrtcpReplay {
    windows: HashMap<u32, Window>,
}

impl SrtcpReplay {
    /// Whether `index` from `ssrc` was seen already or is older than the window.
    pub fn is_replay(&self, ssrc: u32, index: u32) -> bool {
        let Some(w) = self.windows.get(&ssrc) else {
            return false;
        };
        if index > w.top {
            return false;
        }
        let age = w.top - index;
        age >= WINDOW || w.seen & (1 << age) != 0
    }

    /// Records an authenticated packet.
    pub fn record(&mut self, ssrc: u32, index: u32) {
        if !self.windows.contains_key(&ssrc) && self.windows.len() >= MAX_SSRCS {
            return;
        }
        let w = self.windows.entry(ssrc).or_insert(Window {
            top: index,
            seen: 0,
        });
        if index > w.top {
            let shift = index - w.top;
            w.seen = if shift >= WINDOW { 0 } else { w.seen << shift };
            w.top = index;
            w.seen |= 1;
        } else {
            let age = w.top - index;
            if age < WINDOW {
                w.seen |= 1 << age;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_srtcp_window_refuses_repeats_and_old_indices_and_accepts_reordering() {
        let mut r = SrtcpReplay::default();
        assert!(!r.is_replay(7, 10));
        r.record(7, 10);
        assert!(r.is_replay(7, 10));
        assert!(!r.is_replay(7, 9), "reordered, not seen");
        r.record(7, 9);
        assert!(r.is_replay(7, 9));
        r.record(7, 100);
        assert!(r.is_replay(7, 36), "older than the window");
        assert!(!r.is_replay(7, 37));
        assert!(!r.is_replay(8, 10), "per SSRC");
    }

    #[test]
    fn the_srtcp_index_is_read_where_each_profile_puts_it() {
        let mut d = vec![0x80, 200, 0, 6, 0, 0, 0, 42];
        d.extend_from_slice(&[0xAA; 20]);
        let mut gcm = d.clone();
        gcm.extend_from_slice(&(0x8000_0000u32 | 5).to_be_bytes());
        assert_eq!(srtcp_index(&gcm, 3), Some((42, 5)));
        let mut cm = d;
        cm.extend_from_slice(&(0x8000_0000u32 | 6).to_be_bytes());
        cm.extend_from_slice(&[0xBB; 10]);
        assert_eq!(srtcp_index(&cm, 1), Some((42, 6)));
        assert_eq!(srtcp_index(&[0x80, 200, 0, 1], 1), None);
    }
}
