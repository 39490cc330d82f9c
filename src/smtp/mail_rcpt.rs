//! The MAIL and RCPT command lines: the path as a typed [`Mailbox`] and the
//! parameters the gateway offers, each checked strictly (RFC 5321 §4.1.1.2,
//! §4.1.1.3, §4.1.2; RFC 1870 SIZE, RFC 3461 DSN, RFC 6152/3030 BODY, RFC
//! 6531 SMTPUTF8, RFC 6533 ORCPT utf-8).
//!
//! Our own parser rather than smtp-proto's `Request::parse` for these two
//! commands (smtp-proto still parses every other command): smtp-proto
//! unquotes the local part and keeps no original, so the decoded text was
//! written back bare on relay (`"victim@evil.com> ORCPT=…"@tenant` became a
//! second recipient downstream); it decodes xtext as Latin-1 (`+C3+B8` came
//! back double-encoded); it saturates a SIZE of more than 20 digits; it takes
//! the last of duplicate parameters; and it accepts `NOTIFY=NEVER,SUCCESS`.
//!
//! Invariant: a parameter appears at most once; a value is never decoded and
//! re-encoded; an error names only a parameter keyword we know or that passed
//! the keyword grammar (bounded), never other client text.
//! Must never: apply policy (sizes, tenants): it reports what was written.

use crate::smtp::address::{AddressError, Mailbox};
use crate::smtp::params::{BodyType, DsnReturn, Notify, Orcpt, Xtext};
use crate::smtp::reply::Reply;

/// `MAIL FROM:<reverse-path> [params]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MailCommand {
    pub(crate) from: Mailbox,
    /// `SIZE=`: up to 20 digits, so it may exceed `u64`.
    pub(crate) size: Option<u128>,
    pub(crate) body: BodyType,
    pub(crate) smtputf8: bool,
    pub(crate) ret: Option<DsnReturn>,
    pub(crate) envid: Option<Xtext>,
}

/// `RCPT TO:<forward-path> [params]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RcptCommand {
    pub(crate) to: Mailbox,
    pub(crate) notify: Option<Notify>,
    pub(crate) orcpt: Option<Orcpt>,
}

/// What is wrong with a MAIL or RCPT line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CommandError {
    #[error("syntax: {0}")]
    Syntax(&'static str),
    #[error("bad sender address: {0}")]
    BadSender(AddressError),
    #[error("bad recipient address: {0}")]
    BadRecipient(AddressError),
    #[error("bare postmaster recipient")]
    BarePostmaster,
    #[error("invalid parameter {0}")]
    BadParameter(String),
    #[error("duplicate parameter {0}")]
    DuplicateParameter(String),
    #[error("unsupported parameter {0}")]
    UnsupportedParameter(String),
}

impl CommandError {
    pub(crate) fn reply(&self) -> Reply {
        match self {
            CommandError::Syntax(usage) => Reply::syntax(usage),
            CommandError::BadSender(_) => Reply::BAD_SENDER_SYNTAX,
            CommandError::BadRecipient(_) => Reply::BAD_RECIPIENT_SYNTAX,
            CommandError::BarePostmaster => Reply::NO_LOCAL_POSTMASTER,
            CommandError::BadParameter(p) => Reply::bad_parameter(p),
            CommandError::DuplicateParameter(p) => Reply::duplicate_parameter(p),
            CommandError::UnsupportedParameter(p) => Reply::unsupported_parameter(p),
        }
    }
}

const MAIL_USAGE: &str = "MAIL FROM:<address> [parameters]";
const RCPT_USAGE: &str = "RCPT TO:<address> [parameters]";
/// ENVID is at most 100 characters (RFC 3461 §4.4).
const MAX_ENVID: usize = 100;
/// Longest keyword echoed in a reply.
const MAX_KEYWORD: usize = 32;

/// Whether `line` is a MAIL or RCPT command (what this module parses).
pub(crate) fn is_mail_or_rcpt(line: &[u8]) -> bool {
    line.len() >= 4 && (line[..4].eq_ignore_ascii_case(b"MAIL") || line[..4].eq_ignore_ascii_case(b"RCPT"))
}

/// Parses a MAIL line (with or without its CRLF).
pub(crate) fn parse_mail(line: &[u8]) -> Result<MailCommand, CommandError> {
    let (path, params) = split(line, "MAIL FROM:", MAIL_USAGE)?;
    let from = Mailbox::parse(path).map_err(CommandError::BadSender)?;
    let mut cmd = MailCommand {
        from,
        size: None,
        body: BodyType::SevenBit,
        smtputf8: false,
        ret: None,
        envid: None,
    };
    let mut seen = Vec::new();
    for (keyword, value) in params_of(params, &mut seen, MAIL_USAGE)? {
        let bad = || CommandError::BadParameter(keyword.clone());
        match keyword.as_str() {
            "SIZE" => {
                let v = value.ok_or_else(bad)?;
                if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                cmd.size = Some(v.parse().map_err(|_| bad())?);
            }
            "BODY" => cmd.body = value.and_then(BodyType::parse).ok_or_else(bad)?,
            "SMTPUTF8" => {
                if value.is_some() {
                    return Err(bad());
                }
                cmd.smtputf8 = true;
            }
            "RET" => cmd.ret = Some(value.and_then(DsnReturn::parse).ok_or_else(bad)?),
            "ENVID" => {
                let v = value.filter(|v| v.len() <= MAX_ENVID).ok_or_else(bad)?;
                cmd.envid = Some(Xtext::parse(v).filter(Xtext::is_printable).ok_or_else(bad)?);
            }
            // RFC 4954 AUTH= is not offered; clients that send it anyway lose nothing by its omission.
            "AUTH" => {}
            _ => return Err(CommandError::UnsupportedParameter(keyword)),
        }
    }
    Ok(cmd)
}

/// Parses a RCPT line; `smtputf8` says whether the transaction declared SMTPUTF8
/// (an `ORCPT=utf-8;` value may then hold UTF-8).
pub(crate) fn parse_rcpt(line: &[u8], smtputf8: bool) -> Result<RcptCommand, CommandError> {
    let (path, params) = split(line, "RCPT TO:", RCPT_USAGE)?;
    if path.eq_ignore_ascii_case("postmaster") {
        return Err(CommandError::BarePostmaster);
    }
    let to = Mailbox::parse(path).map_err(CommandError::BadRecipient)?;
    if to.is_null() {
        return Err(CommandError::BadRecipient(AddressError::EmptyLocal));
    }
    let mut cmd = RcptCommand {
        to,
        notify: None,
        orcpt: None,
    };
    let mut seen = Vec::new();
    for (keyword, value) in params_of(params, &mut seen, RCPT_USAGE)? {
        let bad = || CommandError::BadParameter(keyword.clone());
        match keyword.as_str() {
            "NOTIFY" => cmd.notify = Some(value.and_then(Notify::parse).ok_or_else(bad)?),
            "ORCPT" => cmd.orcpt = Some(value.and_then(|v| Orcpt::parse(v, smtputf8)).ok_or_else(bad)?),
            _ => return Err(CommandError::UnsupportedParameter(keyword)),
        }
    }
    Ok(cmd)
}

/// Splits `VERB X:<path> params` into the path (source route removed) and the parameter text.
fn split<'a>(line: &'a [u8], verb: &str, usage: &'static str) -> Result<(&'a str, &'a str), CommandError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| CommandError::Syntax(usage))?;
    let head = line.get(..verb.len()).ok_or(CommandError::Syntax(usage))?;
    if !head.eq_ignore_ascii_case(verb) {
        return Err(CommandError::Syntax(usage));
    }
    // Some clients write a space after the colon; Postfix and Exchange accept it.
    let rest = line[verb.len()..].trim_start_matches(' ');
    let inner = rest.strip_prefix('<').ok_or(CommandError::Syntax(usage))?;
    let end = closing_bracket(inner).ok_or(CommandError::Syntax(usage))?;
    let (path, after) = (&inner[..end], &inner[end + 1..]);
    if !after.is_empty() && !after.starts_with(' ') {
        return Err(CommandError::Syntax(usage));
    }
    Ok((strip_source_route(path), after))
}

/// The index of the `>` that closes the path: outside a quoted string.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '>' if !in_quote => return Some(i),
            _ => {}
        }
    }
    None
}

/// `[ A-d-l ":" ] Mailbox`: the source route is ignored (RFC 5321 §4.1.1.3, C).
fn strip_source_route(path: &str) -> &str {
    if path.starts_with('@')
        && let Some((_, mailbox)) = path.split_once(':')
    {
        return mailbox;
    }
    path
}

/// `esmtp-param *(SP esmtp-param)`, keywords upper-cased, each at most once.
fn params_of<'a>(
    text: &'a str,
    seen: &mut Vec<String>,
    usage: &'static str,
) -> Result<Vec<(String, Option<&'a str>)>, CommandError> {
    let mut out = Vec::new();
    for param in text.split(' ').filter(|p| !p.is_empty()) {
        let (keyword, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        let keyword_ok = keyword.len() <= MAX_KEYWORD
            && keyword.starts_with(|c: char| c.is_ascii_alphanumeric())
            && keyword.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !keyword_ok {
            return Err(CommandError::Syntax(usage));
        }
        let keyword = keyword.to_ascii_uppercase();
        // esmtp-value = 1*(%d33-60 / %d62-126), UTF-8 too under RFC 6531.
        let value_ok = |v: &str| {
            !v.is_empty()
                && v.chars()
                    .all(|c| (c != '=' && c.is_ascii_graphic()) || (!c.is_ascii() && !c.is_control()))
        };
        if value.is_some_and(|v| !value_ok(v)) {
            return Err(CommandError::BadParameter(keyword));
        }
        if seen.contains(&keyword) {
            return Err(CommandError::DuplicateParameter(keyword));
        }
        seen.push(keyword.clone());
        out.push((keyword, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(s: &str) -> Result<MailCommand, CommandError> {
        parse_mail(format!("{s}\r\n").as_bytes())
    }
    fn rcpt(s: &str) -> Result<RcptCommand, CommandError> {
        parse_rcpt(format!("{s}\r\n").as_bytes(), false)
    }

    #[test]
    fn a_quoted_local_part_is_one_mailbox_and_no_parameter() {
        let r = rcpt("RCPT TO:<\"victim@evil.com> ORCPT=rfc822;x\"@tenant.example>").unwrap();
        assert_eq!(r.to.domain(), "tenant.example");
        assert_eq!(r.to.local(), "victim@evil.com> ORCPT=rfc822;x");
        assert_eq!(r.orcpt, None);
        let r = rcpt("RCPT TO:<\"victim@evil.com> NOTIFY=NEVER\"@tenant.example> NOTIFY=SUCCESS").unwrap();
        assert_eq!(r.notify.unwrap().to_param(), "SUCCESS");
        let m = mail("MAIL FROM:<\"a> RET=FULL ENVID=x\"@evil.example> BODY=8BITMIME").unwrap();
        assert_eq!((m.ret, m.envid, m.body), (None, None, BodyType::EightBitMime));
        assert_eq!(m.from.to_string(), "\"a> RET=FULL ENVID=x\"@evil.example");
    }

    #[test]
    fn ordinary_commands() {
        let m = mail("mail from: <alice@contoso.com> SIZE=1000 smtputf8 RET=hdrs ENVID=QQ+2B1 AUTH=<>").unwrap();
        assert_eq!(m.from.to_string(), "alice@contoso.com");
        assert_eq!((m.size, m.smtputf8, m.ret), (Some(1000), true, Some(DsnReturn::Hdrs)));
        assert_eq!(m.envid.unwrap().as_str(), "QQ+2B1");
        assert!(mail("MAIL FROM:<>").unwrap().from.is_null());
        let r = rcpt("RCPT TO:<@relay.example,@b.example:bob@fabrikam.com> NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob+40x@fabrikam.com").unwrap();
        assert_eq!(r.to.to_string(), "bob@fabrikam.com");
        assert_eq!(r.orcpt.unwrap().to_param(), "rfc822;bob+40x@fabrikam.com");
    }

    #[test]
    fn size_is_at_most_twenty_digits_and_may_exceed_u64() {
        assert_eq!(
            mail("MAIL FROM:<a@b.example> SIZE=99999999999999999999").unwrap().size,
            Some(99_999_999_999_999_999_999)
        );
        for bad in ["SIZE=123456789012345678901", "SIZE=", "SIZE", "SIZE=12a", "SIZE=-1"] {
            let e = mail(&format!("MAIL FROM:<a@b.example> {bad}")).unwrap_err();
            assert_eq!(e.reply().code, 501, "{bad}: {e}");
        }
    }

    #[test]
    fn duplicates_and_odd_values_are_501() {
        for line in [
            "MAIL FROM:<a@b.example> RET=FULL RET=HDRS",
            "MAIL FROM:<a@b.example> ENVID=x envid=y",
            "MAIL FROM:<a@b.example> RET=BOTH",
            "MAIL FROM:<a@b.example> BODY=9BIT",
            "MAIL FROM:<a@b.example> SMTPUTF8=yes",
            "MAIL FROM:<a@b.example> ENVID=a+C",
            // Not printable US-ASCII once decoded (RFC 3461 §4.4): Postfix
            // refuses them after our 250 (attack run, docs/attack-run.md).
            "MAIL FROM:<a@b.example> RET=FULL ENVID=a+0D+0AX-Injected:+20yes",
            "MAIL FROM:<a@b.example> ENVID=b+C3+B8b",
        ] {
            assert_eq!(mail(line).unwrap_err().reply().code, 501, "{line}");
        }
        for line in [
            "RCPT TO:<b@c.example> NOTIFY=NEVER,SUCCESS",
            "RCPT TO:<b@c.example> NOTIFY=SUCCESS NOTIFY=FAILURE",
            "RCPT TO:<b@c.example> ORCPT=rfc822;x ORCPT=rfc822;y",
            "RCPT TO:<b@c.example> ORCPT=rfc822;a=b",
            "RCPT TO:<b@c.example> ORCPT=rfc822",
            "RCPT TO:<b@c.example> ORCPT=utf-8;b\u{f8}b@c.example",
            "RCPT TO:<b@c.example> ORCPT=rfc822;x+0D+0ARCPT+20TO:<v@evil.com>",
        ] {
            assert_eq!(rcpt(line).unwrap_err().reply().code, 501, "{line}");
        }
        assert_eq!(
            mail("MAIL FROM:<a@b.example> REQUIRETLS").unwrap_err().reply().code,
            555
        );
        assert_eq!(
            rcpt("RCPT TO:<b@c.example> RRVS=2030-01-01T00:00:00Z")
                .unwrap_err()
                .reply()
                .code,
            555
        );
    }

    #[test]
    fn orcpt_utf8_needs_smtputf8() {
        let line = "RCPT TO:<b\u{f8}b@c.example> ORCPT=utf-8;b\u{f8}b@c.example\r\n";
        let r = parse_rcpt(line.as_bytes(), true).unwrap();
        assert_eq!(r.orcpt.unwrap().to_param(), "utf-8;b\u{f8}b@c.example");
        assert!(parse_rcpt(line.as_bytes(), false).is_err());
    }

    #[test]
    fn malformed_lines() {
        for line in [
            "MAIL FROM:a@b.example",
            "MAIL FROM:<a@b.example",
            "MAIL FROM:<a@b.example>SIZE=1",
            "MAIL TO:<a@b.example>",
            "MAIL FROM:<a b@c.example>",
            "MAIL FROM:<a@b.example> =x",
        ] {
            assert_eq!(mail(line).unwrap_err().reply().code, 501, "{line}");
        }
        assert_eq!(rcpt("RCPT TO:<>").unwrap_err().reply().code, 501);
        assert_eq!(rcpt("RCPT TO:<Postmaster>").unwrap_err().reply().code, 550);
        assert!(parse_mail(b"MAIL FROM:<\xff@b.example>\r\n").is_err());
        assert!(is_mail_or_rcpt(b"rcpt to:<x@y>") && !is_mail_or_rcpt(b"RSET"));
    }
}
