//! Small, line-level adjustments to SDP text crossing the engine boundary.
//!
//! * Clients' offers: an SFU never sends on an m-line the client created, so a `sendrecv`
//!   there is answered as if it were `sendonly`, a `recvonly` as if `inactive`; the client
//!   then sees no phantom remote track that never carries media.
//! * Our descriptions: str0m lists ICE candidates only in the first bundled m-section.
//!   Some stacks (aiortc) take candidates from the last one they parse, so every
//!   m-section gets the candidates, followed by `a=end-of-candidates` (ICE-lite has no more).

/// Adjusts a client's offer for an SFU that never sends on m-lines the client created:
/// `sendrecv` becomes `sendonly` and `recvonly` becomes `inactive` in every media section
/// except those whose mid is in `server_mids` (the lines the server added to send on).
pub fn offer_for_sfu(sdp: &str, server_mids: &[String]) -> String {
    rewrite_sections(sdp, 0, |section, out| {
        let ours = section.iter().any(|l| {
            l.strip_prefix("a=mid:")
                .is_some_and(|m| server_mids.iter().any(|s| s == m))
        });
        let is_media = section.first().is_some_and(|l| l.starts_with("m="));
        for l in section {
            let l = match *l {
                "a=sendrecv" if is_media && !ours => "a=sendonly",
                "a=recvonly" if is_media && !ours => "a=inactive",
                other => other,
            };
            push_line(out, l);
        }
    })
}

/// Copies the candidates of the first media section that has any into every other live
/// media section, and ends each list with `a=end-of-candidates`.
pub fn candidates_in_every_section(sdp: &str) -> String {
    let all: Vec<&str> = lines(sdp).collect();
    let candidates: Vec<&str> = all
        .iter()
        .copied()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    if candidates.is_empty() {
        return sdp.to_owned();
    }
    let first_set: Vec<&str> = {
        // The first section's own list, in order, without duplicates from later sections.
        let mut seen = Vec::new();
        for c in &candidates {
            if !seen.contains(c) {
                seen.push(*c);
            }
        }
        seen
    };
    rewrite_sections(sdp, 256, |section, out| {
        let is_media = section[0].starts_with("m=");
        let rejected = section[0].split(' ').nth(1) == Some("0");
        for l in section {
            if is_media && (l.starts_with("a=candidate:") || *l == "a=end-of-candidates") {
                continue;
            }
            push_line(out, l);
        }
        if is_media && !rejected {
            for c in &first_set {
                push_line(out, c);
            }
            push_line(out, "a=end-of-candidates");
        }
    })
}

/// Rebuilds `sdp` section by section (the session part, then each `m=` section, never
/// empty), with CRLF line ends: `write` gets a section's lines and appends what replaces them.
fn rewrite_sections(
    sdp: &str,
    extra: usize,
    mut write: impl FnMut(&[&str], &mut String),
) -> String {
    let mut out = String::with_capacity(sdp.len() + extra);
    let mut section: Vec<&str> = Vec::new();
    for l in lines(sdp) {
        if l.starts_with("m=") && !section.is_empty() {
            write(&section, &mut out);
            section.clear();
        }
        section.push(l);
    }
    if !section.is_empty() {
        write(&section, &mut out);
    }
    out
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push_str("\r\n");
}

fn lines(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\ns=-\r\na=group:BUNDLE 0 1 2\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:1\r\nm=video 0 UDP/TLS/RTP/SAVPF 97\r\na=mid:2\r\n";

    #[test]
    fn every_live_section_gets_the_candidates() {
        let s = candidates_in_every_section(ANSWER);
        let sections: Vec<&str> = s.split("m=").skip(1).collect();
        assert_eq!(sections.len(), 3);
        for live in &sections[..2] {
            assert_eq!(live.matches("a=candidate:1 1 udp").count(), 1, "{live}");
            assert!(live.contains("a=end-of-candidates"));
        }
        assert!(
            !sections[2].contains("a=candidate"),
            "rejected section stays empty"
        );
        assert!(s.starts_with("v=0\r\ns=-\r\na=group:BUNDLE 0 1 2\r\n"));
    }

    #[test]
    fn offers_without_candidates_are_unchanged() {
        let sdp = "v=0\r\nm=audio 9 X 96\r\na=mid:0\r\n";
        assert_eq!(candidates_in_every_section(sdp), sdp);
    }

    #[test]
    fn client_lines_become_send_only_or_inactive_but_server_lines_stay() {
        let sdp = "v=0\na=sendrecv\nm=audio 9 X 96\na=mid:0\na=sendrecv\nm=video 9 X 97\na=mid:1\na=recvonly\nm=video 9 X 97\na=mid:s2\na=recvonly\n";
        assert_eq!(
            offer_for_sfu(sdp, &["s2".to_owned()]),
            "v=0\r\na=sendrecv\r\nm=audio 9 X 96\r\na=mid:0\r\na=sendonly\r\nm=video 9 X 97\r\na=mid:1\r\na=inactive\r\nm=video 9 X 97\r\na=mid:s2\r\na=recvonly\r\n"
        );
    }
}
