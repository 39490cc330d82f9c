//! Stamping: the only change exogate makes to a message.
//!
//! Every arriving `X-CLOUD-SEC-AV-*` field is removed (all occurrences, any
//! letter case, folded continuation lines included, under every way a parser
//! may read the header block: `message::owned`), and so is every
//! arriving `Authentication-Results` that claims our authserv-id
//! (`server.hostname`; RFC 8601 §5), and our own fields are
//! prepended: `Received:`, `X-CLOUD-SEC-AV-Info`, `X-CLOUD-SEC-AV-SCL`,
//! `X-CLOUD-SEC-AV-Verdict`, then `Authentication-Results` when the sender
//! was authenticated, each folded to at most 78 columns and at most
//! 998 octets of value. All other bytes pass through unchanged, so DKIM and
//! ARC signatures still verify. The message is never re-serialised: a stamp is
//! a prefix plus the byte ranges to skip, applied when the message is written.

use std::io::{self, Write};
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::message::auth::AuthResults;
use crate::message::envelope::{Direction, Mailbox, SessionFacts};
use crate::message::owned::{self, Ambiguous};
use crate::message::verdict::{Action, Verdict};

/// The prefix of the header fields exogate owns.
pub const OWNED_PREFIX: &str = "x-cloud-sec-av-";
/// Longest header value we write (RFC 5322 line limit).
pub(crate) const MAX_VALUE: usize = 998;
const FOLD_AT: usize = 78;

/// How to turn the received bytes into the bytes we relay.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stamp {
    /// Header fields to prepend (CRLF line endings).
    pub prefix: Vec<u8>,
    /// Byte ranges of the received message to leave out, sorted, disjoint.
    pub skips: Vec<Range<usize>>,
}

impl Stamp {
    /// The stamp as a queue file stores it: the prefix record and the skips
    /// as (start, end) offsets. The one way back from storage to a stamp.
    pub(crate) fn from_stored(prefix: Vec<u8>, skips: &[(u64, u64)]) -> Stamp {
        Stamp {
            prefix,
            skips: skips.iter().map(|&(s, e)| s as usize..e as usize).collect(),
        }
    }

    /// The skips as a queue file stores them (see [`Stamp::from_stored`]).
    pub(crate) fn stored_skips(&self) -> Vec<(u64, u64)> {
        self.skips.iter().map(|r| (r.start as u64, r.end as u64)).collect()
    }

    /// The stamped message as borrowed pieces (prefix, then what is kept of
    /// `raw`), for writing it out without a copy.
    pub(crate) fn pieces<'a>(&'a self, raw: &'a [u8]) -> Vec<&'a [u8]> {
        let mut pieces: Vec<&[u8]> = vec![&self.prefix];
        pieces.extend(self.kept(raw.len()).into_iter().map(|range| &raw[range]));
        pieces
    }

    /// Length of the stamped message (of `raw_len` bytes of it: the skips are
    /// counted only as far as they reach into those, as in [`Stamp::kept`];
    /// a header section cut at `MAX_HEADER_SCAN` may end before them).
    pub fn stamped_len(&self, raw_len: usize) -> usize {
        let skipped: usize = self
            .skips
            .iter()
            .map(|r| r.end.min(raw_len) - r.start.min(raw_len))
            .sum();
        self.prefix.len() + raw_len - skipped
    }

    /// The pieces of the received message that are kept, in order. `raw_len`
    /// may be shorter than the message (its header section only, for a DSN):
    /// the pieces then end there.
    pub(crate) fn kept(&self, raw_len: usize) -> Vec<Range<usize>> {
        let mut out = Vec::with_capacity(self.skips.len() + 1);
        let mut pos = 0;
        for skip in &self.skips {
            if skip.start > pos {
                out.push(pos..skip.start.min(raw_len));
            }
            pos = skip.end;
            if pos >= raw_len {
                return out;
            }
        }
        if pos < raw_len {
            out.push(pos..raw_len);
        }
        out
    }

    /// [`Stamp::kept`] as byte ranges of a file in which the received
    /// message starts at offset `start` (a queue or spill file).
    pub(crate) fn kept_in_file(&self, raw_len: usize, start: u64) -> Vec<Range<u64>> {
        self.kept(raw_len)
            .into_iter()
            .map(|r| start + r.start as u64..start + r.end as u64)
            .collect()
    }

    /// Writes the stamped message.
    pub(crate) fn write(&self, raw: &[u8], out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.prefix)?;
        for range in self.kept(raw.len()) {
            out.write_all(&raw[range])?;
        }
        Ok(())
    }

    pub fn apply(&self, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.stamped_len(raw.len()));
        self.write(raw, &mut out).expect("writing to a Vec cannot fail");
        out
    }
}

/// Ranges of every field we own in `raw`, under every reading of its header
/// block (`message::owned`).
pub fn owned_fields(raw: &[u8]) -> Vec<Range<usize>> {
    owned::removals(raw, None)
}

/// What the stamp says.
pub struct StampFacts<'a> {
    pub hostname: &'a str,
    pub queue_id: &'a str,
    pub session: &'a SessionFacts,
    pub smtputf8: bool,
    /// The single recipient, when there is exactly one (for the Received `for` clause).
    pub single_recipient: Option<&'a Mailbox>,
    pub portal: &'a str,
    pub direction: Direction,
    pub verdict: &'a Verdict,
    /// The action that will be carried out (in detect mode: always deliver).
    pub action: Action,
    pub enforced: bool,
    /// Seconds since the Unix epoch.
    pub now: i64,
    /// Sender authentication, when the policy ran it: our `Authentication-Results`.
    pub auth: Option<&'a AuthResults>,
}

/// Builds the stamp for `raw`: our fields, and every field we own removed
/// under every reading of the block. `Err`: the block stays ambiguous (the
/// message is to be refused).
pub fn stamp(raw: &[u8], facts: &StampFacts) -> Result<Stamp, Ambiguous> {
    let mut prefix = Vec::with_capacity(512);
    push_field(&mut prefix, "Received", &received(facts));
    push_field(
        &mut prefix,
        "X-CLOUD-SEC-AV-Info",
        &format!("{},office365_emails,{}", facts.portal, facts.direction.info_value()),
    );
    push_field(
        &mut prefix,
        "X-CLOUD-SEC-AV-SCL",
        if facts.action == Action::Junk { "true" } else { "false" },
    );
    push_field(&mut prefix, "X-CLOUD-SEC-AV-Verdict", &verdict_value(facts));
    if let Some(auth) = facts.auth {
        push_field(
            &mut prefix,
            "Authentication-Results",
            &auth.header_value(facts.hostname),
        );
    }
    let skips = owned::removals(raw, Some(facts.hostname));
    owned::verify(&prefix, raw, &skips, Some(facts.hostname))?;
    Ok(Stamp { prefix, skips })
}

fn received(f: &StampFacts) -> String {
    let helo = sanitize(&f.session.helo, 255);
    let helo = if helo.is_empty() { "unknown".to_string() } else { helo };
    let protocol = match (f.smtputf8, f.session.tls.is_some()) {
        (true, true) => "UTF8SMTPS",
        (true, false) => "UTF8SMTP",
        (false, true) => "ESMTPS",
        (false, false) => "ESMTP",
    };
    let mut v = format!(
        "from {helo} ([{}]:{}) by {} (exogate) with {protocol}",
        f.session.client_ip,
        f.session.client_port,
        sanitize(f.hostname, 255)
    );
    if let Some(tls) = &f.session.tls {
        v.push_str(&format!(
            " (version={} cipher={})",
            sanitize(&tls.version, 32),
            sanitize(&tls.cipher, 64)
        ));
    }
    v.push_str(&format!(" id {}", f.queue_id));
    if let Some(rcpt) = f.single_recipient {
        // The mailbox as written on the wire: a quoted local part stays quoted,
        // and it holds no control character. Its UTF-8 stays in an SMTPUTF8
        // message (RFC 6531 §4.4); without SMTPUTF8 it is ASCII (the session
        // refuses anything else). Omitted rather than cut when over-long.
        let rcpt = rcpt.to_string();
        if !rcpt.is_empty() && rcpt.len() <= 256 && (f.smtputf8 || rcpt.is_ascii()) {
            v.push_str(&format!(" for <{rcpt}>"));
        }
    }
    v.push_str(&format!(
        "; {}",
        mail_builder::headers::date::Date::new(f.now).to_rfc822()
    ));
    v
}

fn verdict_value(f: &StampFacts) -> String {
    let mut v = format!(
        "action={}; score={:.1}; enforced={}",
        f.verdict.action,
        f.verdict.score,
        if f.enforced { "yes" } else { "no" }
    );
    if !f.verdict.failures.is_empty() {
        let failed: Vec<String> = f.verdict.failures.iter().map(|c| sanitize_token(&c.check)).collect();
        v.push_str(&format!("; failed={}", failed.join(",")));
    }
    let top = f.verdict.top_reasons(8);
    if !top.is_empty() {
        v.push_str("; tests=");
        let mut first = true;
        for finding in top {
            let item = format!(
                "{}:{}({:.1})",
                sanitize_token(&finding.check),
                sanitize_token(&finding.tag),
                finding.score
            );
            if v.len() + item.len() + 2 > MAX_VALUE {
                break;
            }
            if !first {
                v.push_str(", ");
            }
            v.push_str(&item);
            first = false;
        }
    }
    v
}

/// Printable ASCII only, at most `max` characters: what lands in a header
/// field may come from the client, so no control characters or CR/LF.
fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .take(max)
        .collect()
}

fn sanitize_token(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect()
}

/// Appends `Name: value` folded at spaces to at most 78 columns per line.
/// A single word longer than a line is kept whole (never split inside a word).
pub(crate) fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    let value = if value.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        &value[..end]
    } else {
        value
    };
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    let mut col = name.len() + 1;
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if col + 1 + word.len() > FOLD_AT && col > name.len() + 1 {
            out.extend_from_slice(b"\r\n\t");
            col = 1;
        } else {
            out.push(b' ');
            col += 1;
        }
        out.extend_from_slice(word.as_bytes());
        col += word.len();
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::verdict::{Finding, Thresholds};

    static RCPT: std::sync::LazyLock<Mailbox> = std::sync::LazyLock::new(|| Mailbox::parse("u@contoso.com").unwrap());

    fn facts<'a>(verdict: &'a Verdict, session: &'a SessionFacts, action: Action) -> StampFacts<'a> {
        StampFacts {
            hostname: "gw.example.net",
            queue_id: "Q1",
            session,
            smtputf8: false,
            single_recipient: Some(&*RCPT),
            portal: "contoso",
            direction: Direction::Inbound,
            verdict,
            action,
            enforced: true,
            now: 1_790_000_000,
            auth: None,
        }
    }

    fn session() -> SessionFacts {
        SessionFacts {
            session_id: String::new(),
            client_ip: "40.92.0.1".parse().unwrap(),
            client_port: 1234,
            helo: "mail.example\r\nInjected: yes".into(),
            tls: None,
        }
    }

    #[test]
    fn forged_fields_are_removed_in_every_spelling() {
        let raw = b"X-CLOUD-SEC-AV-SCL: false\r\nFrom: a@b\r\nx-cloud-sec-av-scl: false\r\nX-Cloud-Sec-Av-Info: evil,\r\n\tfolded\r\nSubject: s\r\nX-CLOUD-SEC-AV-SCL:false\r\n\r\nX-CLOUD-SEC-AV-SCL: in body\r\n";
        let v = Verdict::decide(&Thresholds::default(), vec![Finding::new(6.0, "t", "r")], vec![]);
        let s = session();
        let out = stamp(raw, &facts(&v, &s, Action::Junk)).unwrap().apply(raw);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let scl: Vec<&str> = head
            .lines()
            .filter(|l| l.to_lowercase().starts_with("x-cloud-sec-av-scl"))
            .collect();
        assert_eq!(scl, vec!["X-CLOUD-SEC-AV-SCL: true"]);
        assert!(!head.contains("evil") && !head.contains("folded"));
        assert!(head.contains("From: a@b\r\nSubject: s"), "{head}");
        assert_eq!(body, "X-CLOUD-SEC-AV-SCL: in body\r\n");
        assert!(
            !head.contains("\r\nInjected"),
            "client-controlled HELO must not inject a header"
        );
    }

    #[test]
    fn stamping_the_first_bytes_gives_the_first_bytes_of_the_stamped_message() {
        // A DSN that returns the header stamps only the header section it read.
        let raw = b"X-CLOUD-SEC-AV-SCL: false\r\nFrom: a@b\r\nX-Cloud-Sec-Av-Info: evil\r\nSubject: s\r\n\r\nbody\r\n";
        let v = Verdict::decide(&Thresholds::default(), vec![], vec![]);
        let s = session();
        let st = stamp(raw, &facts(&v, &s, Action::Deliver)).unwrap();
        assert_eq!(st.skips.len(), 2);
        let whole = st.apply(raw);
        for n in 0..=raw.len() {
            let part = st.apply(&raw[..n]);
            assert!(whole.starts_with(&part), "the first {n} bytes");
            assert_eq!(part.len(), st.stamped_len(n));
        }

        // Owned fields far longer than our prefix, past where the bytes end
        // (a header section read up to MAX_HEADER_SCAN stops inside them).
        let mut raw = b"From: a@b\r\n".to_vec();
        for _ in 0..200 {
            raw.extend_from_slice(b"X-Cloud-Sec-Av-Junk: forged forged forged forged forged forged forged\r\n");
        }
        raw.extend_from_slice(b"Subject: s\r\n\r\nbody\r\n");
        let st = stamp(&raw, &facts(&v, &s, Action::Deliver)).unwrap();
        let skipped: usize = st.skips.iter().map(|r| r.len()).sum();
        assert!(skipped > 10 * st.prefix.len(), "{skipped} bytes of owned fields");
        for n in [0, 5, 11, 12, 100, raw.len() / 2, raw.len()] {
            assert_eq!(st.apply(&raw[..n]).len(), st.stamped_len(n), "the first {n} bytes");
        }
    }

    #[test]
    fn every_other_byte_is_kept() {
        let raw = b"From: a@b\nSubject: bare LF \xff\n\nbody\nline\r\n";
        let v = Verdict::decide(&Thresholds::default(), vec![], vec![]);
        let s = session();
        let st = stamp(raw, &facts(&v, &s, Action::Deliver)).unwrap();
        let out = st.apply(raw);
        assert!(out.ends_with(raw));
        assert_eq!(out.len(), st.stamped_len(raw.len()));
    }

    #[test]
    fn arriving_results_claiming_our_authserv_id_are_removed() {
        let raw = b"Authentication-Results: GW.Example.NET;\r\n dmarc=pass\r\nAuthentication-Results: other.example; spf=pass\r\n\
Authentication-Results: spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=a.test\r\nauthentication-results: (x) gw.example.net 1; dkim=pass\r\n\
From: a@b\r\n\r\nAuthentication-Results: gw.example.net; in the body\r\n";
        let v = Verdict::decide(&Thresholds::default(), vec![], vec![]);
        let s = session();
        let out = String::from_utf8(stamp(raw, &facts(&v, &s, Action::Deliver)).unwrap().apply(raw)).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            !head.to_lowercase().contains("gw.example.net;") && !head.contains("gw.example.net 1"),
            "{head}"
        );
        assert!(
            head.contains("Authentication-Results: other.example; spf=pass\r\n"),
            "{head}"
        );
        assert!(
            head.contains("Authentication-Results: spf=pass (sender IP is 192.0.2.1)"),
            "EXO's form stays: {head}"
        );
        assert_eq!(body, "Authentication-Results: gw.example.net; in the body\r\n");
    }

    #[test]
    fn our_authentication_results_follow_the_verdict() {
        let raw = b"From: a@b\r\n\r\nbody\r\n";
        let v = Verdict::decide(&Thresholds::default(), vec![], vec![]);
        let s = session();
        let auth = crate::message::auth::tests::sample();
        let f = StampFacts {
            auth: Some(&auth),
            ..facts(&v, &s, Action::Deliver)
        };
        let out = String::from_utf8(stamp(raw, &f).unwrap().apply(raw)).unwrap();
        let verdict = out.find("X-CLOUD-SEC-AV-Verdict:").unwrap();
        let ar = out.find("Authentication-Results: gw.example.net; spf=pass").unwrap();
        assert!(ar > verdict && out[verdict..ar].matches("\r\n").count() == 1, "{out}");
        for line in out.split("\r\n") {
            assert!(line.len() <= 78, "folded: {line}");
        }
    }

    #[test]
    fn fields_are_folded_and_bounded() {
        let mut out = Vec::new();
        let long: Vec<String> = (0..400).map(|i| format!("word{i}")).collect();
        push_field(&mut out, "X-Test", &long.join(" "));
        let text = String::from_utf8(out).unwrap();
        assert!(text.len() <= MAX_VALUE + 400 + 10);
        for line in text.split("\r\n") {
            assert!(line.len() <= 78, "line too long: {line}");
        }
    }
}
