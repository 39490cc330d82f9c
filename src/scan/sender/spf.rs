//! The one SPF rule mail-auth 0.13 leaves out: a term that looks like a
//! mechanism (`name`, `name:…`, `name/…`) but names none of RFC 7208's is a
//! syntax error, and "if there are any syntax errors anywhere in the record,
//! check_host() returns immediately with the result permerror" (§4.6,
//! §12: unknown mechanisms are not extensions; only `name=value` modifiers
//! may be unknown). mail-auth skips such a term and goes on evaluating.
//!
//! Checked on the record of the domain being evaluated, which check_host()
//! always reads first; records reached through `include:` or `redirect=`
//! are mail-auth's alone (see the corpus README's list of differences).

const MECHANISMS: [&str; 8] = ["all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"];

/// The first term of an SPF record (`v=spf1 …`) that is neither a known
/// mechanism nor a modifier.
pub(crate) fn unknown_mechanism(record: &str) -> Option<String> {
    let mut terms = record.split_ascii_whitespace();
    let version = terms.next()?;
    if !version.eq_ignore_ascii_case("v=spf1") {
        return None;
    }
    for term in terms {
        let name_end = term.find([':', '/', '=']).unwrap_or(term.len());
        if term[name_end..].starts_with('=') {
            continue; // a modifier, known or not
        }
        let name = term[..name_end].trim_start_matches(['+', '-', '~', '?']);
        if !MECHANISMS.iter().any(|m| m.eq_ignore_ascii_case(name)) {
            return Some(term.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_mechanisms_are_found_and_modifiers_are_not() {
        assert_eq!(
            unknown_mechanism("v=spf1 ip4:192.0.2.0/24 bogus:example.test -all").as_deref(),
            Some("bogus:example.test")
        );
        assert_eq!(unknown_mechanism("v=spf1 -bogus -all").as_deref(), Some("-bogus"));
        assert_eq!(
            unknown_mechanism("v=spf1 a/24 mx:mx.test ~all unknown=x exp=e.test redirect=r.test"),
            None
        );
        assert_eq!(unknown_mechanism("v=spf1 +A:x.test IP4:1.2.3.4 -ALL"), None);
        assert_eq!(unknown_mechanism("not spf at all"), None);
    }
}
