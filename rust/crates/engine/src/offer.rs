//! A client's offer as the engine reads it: one reading for the grant check and for what the
//! engine applies.
//!
//! Grants (who may publish what) are checked in Python, but on the sections *this* parser
//! sees: [`inspect_offer`] parses exactly as [`parse_offer`] does (str0m's parser) and reads the
//! sections back from str0m's own serialisation of the result. Text that two readers could
//! split differently is refused outright: line breaks other than CRLF/LF (Unicode line and
//! paragraph separators, vertical tab, form feed, NEL, a lone CR...) and more than one direction
//! attribute in a section.

use str0m::change::SdpOffer;

use crate::error::{Error, Result};
use crate::sdp_text;

/// One m-section of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedSection {
    /// `audio`, `video`, `application`, or whatever else the line names.
    pub kind: String,
    pub mid: Option<String>,
    /// The direction as the client wrote it: `sendrecv`, `sendonly`, `recvonly` or `inactive`.
    pub direction: &'static str,
    /// Port 0: the section is rejected/stopped.
    pub rejected: bool,
}

impl OfferedSection {
    /// Whether the client sends media on this section (publishes).
    pub fn client_sends(&self) -> bool {
        !self.rejected && matches!(self.direction, "sendrecv" | "sendonly")
    }
}

const DIRECTIONS: [&str; 4] = ["sendrecv", "sendonly", "recvonly", "inactive"];

/// Characters that some reader, somewhere, takes for a line break. SDP has exactly one line
/// end (CRLF, with a bare LF tolerated).
const FOREIGN_BREAKS: [char; 8] = [
    '\u{0b}', '\u{0c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}', '\u{2029}',
];

/// Refuses SDP text that two readers could split into lines or directions differently.
pub fn check_offer_text(sdp: &str) -> Result<()> {
    if let Some(c) = sdp
        .chars()
        .find(|c| FOREIGN_BREAKS.contains(c) || *c == '\0')
    {
        return Err(Error::Sdp(format!(
            "character U+{:04X} is not allowed: lines end with CRLF or LF",
            c as u32
        )));
    }
    let bytes = sdp.as_bytes();
    if bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
    {
        return Err(Error::Sdp(
            "a CR not followed by LF: lines end with CRLF or LF".into(),
        ));
    }
    let mut section = String::from("session");
    let mut seen: Option<&str> = None;
    for line in sdp.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if let Some(rest) = line.strip_prefix("m=") {
            section = format!("m-section {:?}", rest.split(' ').next().unwrap_or(""));
            seen = None;
            continue;
        }
        if let Some(dir) = line.strip_prefix("a=").filter(|d| DIRECTIONS.contains(d)) {
            if let Some(first) = seen {
                return Err(Error::Sdp(format!(
                    "{section} has two direction attributes (a={first}, a={dir})"
                )));
            }
            seen = Some(dir);
        }
    }
    Ok(())
}

/// Parses a client's offer the way the engine applies it: text checks, the SFU's direction
/// adjustments for lines the client created (`server_mids` are ours), then str0m's parser.
pub fn parse_offer(sdp: &str, server_mids: &[String]) -> Result<SdpOffer> {
    check_offer_text(sdp)?;
    SdpOffer::from_sdp_string(&sdp_text::offer_for_sfu(sdp, server_mids)).map_err(sdp_error)
}

/// The m-sections of a client's offer as the engine reads it, in order, with the directions
/// the client wrote. Fails exactly when applying the offer would fail to parse.
pub fn inspect_offer(sdp: &str) -> Result<Vec<OfferedSection>> {
    // The client's own directions: parsing without server lines keeps "sends" as it is
    // (sendrecv reads as sendonly, recvonly as inactive), which is what a grant cares about.
    let parsed = parse_offer(sdp, &[])?;
    Ok(sections_of(&parsed.to_sdp_string()))
}

/// Reads sections from SDP text written by str0m: one attribute a line, CRLF, at most one
/// direction a section (checked on the way in).
fn sections_of(canonical: &str) -> Vec<OfferedSection> {
    let mut out: Vec<OfferedSection> = Vec::new();
    for line in canonical.split("\r\n") {
        if let Some(rest) = line.strip_prefix("m=") {
            let mut parts = rest.split(' ');
            let kind = parts.next().unwrap_or("").to_owned();
            let rejected = parts.next() == Some("0");
            out.push(OfferedSection {
                kind,
                mid: None,
                // str0m reads a section without a direction attribute as inactive.
                direction: "inactive",
                rejected,
            });
            continue;
        }
        let Some(current) = out.last_mut() else {
            continue;
        };
        if let Some(mid) = line.strip_prefix("a=mid:") {
            current.mid = Some(mid.to_owned());
        } else if let Some(dir) = line
            .strip_prefix("a=")
            .and_then(|d| DIRECTIONS.iter().find(|x| **x == d))
        {
            current.direction = dir;
        }
    }
    out
}

/// The parser's message without its internal pointer offsets, on one line.
pub fn sdp_error(e: impl std::fmt::Display) -> Error {
    let text = e.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(|l| match l.find("PointerOffset") {
            Some(i) => l[..i].trim_end_matches([' ', 'a', 't']).trim(),
            None => l.trim(),
        })
        .filter(|l| !l.is_empty())
        .collect();
    Error::Sdp(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(media: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n\
             a=fingerprint:sha-256 {fp}\r\na=setup:actpass\r\n{media}",
            fp = ["AB"; 32].join(":")
        )
    }

    const AUDIO: &str = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp-mux\r\n\
                         a=mid:0\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn sdp_errors_carry_no_memory_addresses() {
        let Err(e) = parse_offer("v=0\n", &[]) else {
            panic!("a one-line SDP is not an offer");
        };
        let msg = e.to_string();
        assert!(!msg.contains("0x"), "{msg}");
        assert!(msg.starts_with("invalid SDP: "), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn sections_read_as_the_engine_reads_them() {
        let s = inspect_offer(&offer(&format!("{AUDIO}a=sendonly\r\n"))).expect("valid offer");
        assert_eq!(
            s,
            vec![OfferedSection {
                kind: "audio".into(),
                mid: Some("0".into()),
                direction: "sendonly",
                rejected: false
            }]
        );
        assert!(s[0].client_sends());
        let s = inspect_offer(&offer(&format!("{AUDIO}a=recvonly\r\n"))).expect("valid offer");
        assert!(!s[0].client_sends(), "{s:?}");
        let s = inspect_offer(&offer(&format!("{AUDIO}a=sendrecv\r\n"))).expect("valid offer");
        assert!(s[0].client_sends(), "{s:?}");
    }

    #[test]
    fn foreign_line_breaks_are_refused() {
        for sep in [
            '\u{2028}', '\u{2029}', '\u{0b}', '\u{0c}', '\u{1c}', '\u{1e}', '\u{85}',
        ] {
            let sdp = offer(&format!("{AUDIO}a=sendonly\r\na=x:1{sep}a=recvonly\r\n"));
            let Err(e) = inspect_offer(&sdp) else {
                panic!("U+{:04X} accepted", sep as u32);
            };
            assert!(e.to_string().contains("not allowed"), "{e}");
            assert!(
                parse_offer(&sdp, &[]).is_err(),
                "the engine must refuse it too"
            );
        }
        let lone_cr = offer(&format!("{AUDIO}a=sendonly\ra=recvonly\r\n"));
        assert!(inspect_offer(&lone_cr).is_err());
    }

    #[test]
    fn two_directions_in_a_section_are_refused() {
        let sdp = offer(&format!("{AUDIO}a=sendonly\r\na=recvonly\r\n"));
        let Err(e) = inspect_offer(&sdp) else {
            panic!("two directions accepted");
        };
        assert!(e.to_string().contains("two direction attributes"), "{e}");
        assert!(parse_offer(&sdp, &[]).is_err());
    }

    #[test]
    fn bare_lf_offers_are_read() {
        let sdp = offer(&format!("{AUDIO}a=sendonly\r\n")).replace("\r\n", "\n");
        let s = inspect_offer(&sdp).expect("LF-only SDP is tolerated");
        assert!(s[0].client_sends());
    }
}
