//! Learns which SRTP profile each peer's DTLS handshake selected.
//!
//! str0m does not expose the negotiated profile, so the crypto provider's DTLS factory is
//! wrapped: each instance watches its own output for the keying-material export and records
//! the profile in a thread-local slot. Shards run one `Rtc` call at a time per thread, so the
//! shard reads the slot right after the call that produced it.

use std::cell::Cell;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert};
use str0m::crypto::dtls::{
    DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::CryptoError;

thread_local! {
    static LAST_PROFILE: Cell<Option<SrtpProfile>> = const { Cell::new(None) };
}

/// Takes the profile recorded by the last handshake completed on this thread, if any.
pub fn take_negotiated_profile() -> Option<SrtpProfile> {
    LAST_PROFILE.with(|c| c.take())
}

/// Numeric code stored in `PeerStats::srtp_profile` (see `stats::srtp_profile_name`).
pub fn profile_code(p: SrtpProfile) -> u64 {
    match p {
        SrtpProfile::AES128_CM_SHA1_80 => 1,
        SrtpProfile::AEAD_AES_128_GCM => 2,
        SrtpProfile::AEAD_AES_256_GCM => 3,
        #[allow(unreachable_patterns)]
        _ => 0,
    }
}

#[derive(Debug)]
struct ProbingDtlsProvider {
    inner: &'static dyn DtlsProvider,
}

impl DtlsProvider for ProbingDtlsProvider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        Ok(Box::new(ProbingDtls { inner }))
    }
}

#[derive(Debug)]
struct ProbingDtls {
    inner: Box<dyn DtlsInstance>,
}

impl DtlsInstance for ProbingDtls {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(_, profile) = &out {
            LAST_PROFILE.with(|c| c.set(Some(*profile)));
        }
        out
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}

/// The process's crypto provider: aws-lc-rs with the probing DTLS and SRTP factories.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static PROBE: OnceLock<ProbingDtlsProvider> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| {
        let base = str0m::crypto::from_feature_flags();
        let probe = PROBE.get_or_init(|| ProbingDtlsProvider {
            inner: base.dtls_provider,
        });
        Arc::new(CryptoProvider {
            dtls_provider: probe,
            srtp_provider: crate::srtp_probe::wrap(base.srtp_provider),
            ..base
        })
    }))
}
