//! Reading `Authentication-Results` and `ARC-Authentication-Results` values
//! (RFC 8601, RFC 8617): the authserv-id, and each method's result with its
//! properties and comments.
//!
//! Exchange Online writes its `Authentication-Results` without an
//! authserv-id (the value starts with `spf=…`, which RFC 8601 does not
//! allow); strict parsers reject it. This reader accepts both forms and says
//! which it saw ([`Authserv::Absent`]), because the trust order must find
//! EXO's field in either reading and the stamp must recognise fields that
//! claim our own id. It never fails: what it cannot read it leaves out.

/// The authserv-id of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authserv {
    /// The value starts with a result (`method=result`): no authserv-id.
    Absent,
    /// The id, lower-cased (an optional version number after it is dropped).
    Id(String),
}

/// One `method=result` of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    /// Lower-cased method, e.g. `spf`.
    pub method: String,
    /// Lower-cased result word, e.g. `pass`.
    pub result: String,
    /// `ptype.property=value` pairs, e.g. (`smtp.mailfrom`, `alpha.test`).
    pub properties: Vec<(String, String)>,
    /// The text of the comments in this result, in order.
    pub comments: Vec<String>,
}

/// A parsed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultsValue {
    /// `i=` of an ARC-Authentication-Results value.
    pub instance: Option<u32>,
    pub authserv: Authserv,
    pub results: Vec<MethodResult>,
}

impl ResultsValue {
    /// The first result of `method`.
    pub fn method(&self, method: &str) -> Option<&MethodResult> {
        self.results.iter().find(|r| r.method == method)
    }

    /// The sender IP the spf result names: `smtp.remote-ip=`, or else the
    /// comment EXO writes, `(sender ip is X)`.
    pub fn sender_ip(&self) -> Option<std::net::IpAddr> {
        let spf = self.method("spf")?;
        let property = spf
            .properties
            .iter()
            .find(|(k, _)| k == "smtp.remote-ip")
            .and_then(|(_, v)| v.parse().ok());
        property.or_else(|| {
            spf.comments.iter().find_map(|c| {
                let c = c.trim().to_ascii_lowercase();
                c.strip_prefix("sender ip is ").and_then(|ip| ip.trim().parse().ok())
            })
        })
    }
}

/// Splits on `;` outside comments and quoted strings.
fn split_clauses(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut escaped, mut start) = (0usize, false, false, 0);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            ';' if depth == 0 && !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

/// The clause without its comments, and the comments' text.
fn strip_comments(clause: &str) -> (String, Vec<String>) {
    let (mut text, mut comments, mut current) = (String::new(), Vec::new(), String::new());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in clause.chars() {
        if escaped {
            escaped = false;
            if depth > 0 {
                current.push(c);
            } else {
                text.push(c);
            }
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' if depth == 0 => {
                quoted = !quoted;
                text.push(c);
            }
            '(' if !quoted => {
                if depth > 0 {
                    current.push(c);
                }
                depth += 1;
            }
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    comments.push(std::mem::take(&mut current));
                    text.push(' ');
                } else {
                    current.push(c);
                }
            }
            _ if depth > 0 => current.push(c),
            _ => text.push(c),
        }
    }
    (text, comments)
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').to_string()
}

/// Parses an A-R or AAR value (unfolded or not).
pub fn parse(value: &str) -> ResultsValue {
    let value = value.replace(['\r', '\n'], " ");
    let mut clauses = split_clauses(&value).into_iter().peekable();
    let mut instance = None;
    // ARC-Authentication-Results: "i=N; authserv-id; ...".
    if let Some(first) = clauses.peek() {
        let (text, _) = strip_comments(first);
        let t = text.trim();
        if let Some(n) = t.strip_prefix("i=").or_else(|| t.strip_prefix("i ="))
            && let Ok(n) = n.trim().parse()
        {
            instance = Some(n);
            clauses.next();
        }
    }
    let mut authserv = Authserv::Absent;
    let mut results = Vec::new();
    let mut first = true;
    for clause in clauses {
        let (text, comments) = strip_comments(clause);
        let mut words = text.split_whitespace();
        let Some(head) = words.next() else {
            first = false;
            continue;
        };
        if first {
            first = false;
            if !head.contains('=') {
                // A quoted-string id reads as the token (see `authserv_id`).
                let id = head.trim_matches('"');
                authserv = Authserv::Id(id.trim_end_matches('.').to_ascii_lowercase());
                // Anything after the id is its version (or, wrongly, a result).
                let rest: Vec<&str> = words.collect();
                if let Some(r) = rest.iter().position(|w| w.contains('=')) {
                    results.extend(method_result(&rest[r..], comments));
                }
                continue;
            }
        }
        let mut all = vec![head];
        all.extend(words);
        results.extend(method_result(&all, comments));
    }
    ResultsValue {
        instance,
        authserv,
        results,
    }
}

fn method_result(words: &[&str], comments: Vec<String>) -> Option<MethodResult> {
    let (method, result) = words.first()?.split_once('=')?;
    let method = method.split('/').next().unwrap_or(method).trim().to_ascii_lowercase();
    let result = result.trim().to_ascii_lowercase();
    if method.is_empty() || result.is_empty() || method == "none" {
        return None;
    }
    let properties = words[1..]
        .iter()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            k.contains('.').then(|| (k.to_ascii_lowercase(), unquote(v)))
        })
        .collect();
    Some(MethodResult {
        method,
        result,
        properties,
        comments,
    })
}

/// Just the authserv-id of a value (cheap: for the stamp's removal of fields
/// that claim ours).
pub fn authserv_id(value: &str) -> Authserv {
    let value = value.replace(['\r', '\n'], " ");
    let first = split_clauses(&value).into_iter().next().unwrap_or_default();
    let (text, _) = strip_comments(first);
    let text = text.trim_start();
    // authserv-id is a `value` (RFC 8601 §2.2): a token or a quoted-string.
    // `"gw.example.net"` (its quoted-pairs already decoded by
    // `strip_comments`) claims the same id as `gw.example.net`.
    if let Some(quoted) = text.strip_prefix('"') {
        let id = quoted.split('"').next().unwrap_or_default();
        return Authserv::Id(id.trim_end_matches('.').to_ascii_lowercase());
    }
    match text.split_whitespace().next() {
        None => Authserv::Absent,
        Some(head) if head.contains('=') => Authserv::Absent,
        Some(head) => Authserv::Id(head.trim_end_matches('.').to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_onlines_form_without_an_authserv_id() {
        let v = parse(
            "spf=pass (sender IP is 192.0.2.10) smtp.mailfrom=alpha.test; dkim=pass (signature was verified)\r\n header.d=alpha.test;dmarc=pass action=none header.from=alpha.test;compauth=pass reason=100",
        );
        assert_eq!(v.authserv, Authserv::Absent);
        let methods: Vec<(&str, &str)> = v
            .results
            .iter()
            .map(|r| (r.method.as_str(), r.result.as_str()))
            .collect();
        assert_eq!(
            methods,
            [
                ("spf", "pass"),
                ("dkim", "pass"),
                ("dmarc", "pass"),
                ("compauth", "pass")
            ]
        );
        assert_eq!(v.sender_ip(), Some("192.0.2.10".parse().unwrap()));
        assert_eq!(authserv_id("spf=pass smtp.mailfrom=a.test"), Authserv::Absent);
    }

    #[test]
    fn arc_results_with_instance_id_and_version() {
        let v = parse(
            "i=2; mx.microsoft.com 1; spf=pass (sender ip is 2001:db8:a::25) smtp.rcpttodomain=contoso.test smtp.mailfrom=alpha.test; arc=none",
        );
        assert_eq!(v.instance, Some(2));
        assert_eq!(v.authserv, Authserv::Id("mx.microsoft.com".into()));
        assert_eq!(v.sender_ip(), Some("2001:db8:a::25".parse().unwrap()));
        let b = parse("i=1; mx.microsoft.com 1; spf=pass smtp.remote-ip=192.0.2.70 smtp.mailfrom=bravo.test");
        assert_eq!(b.sender_ip(), Some("192.0.2.70".parse().unwrap()));
    }

    #[test]
    fn comments_and_quotes_do_not_split_clauses() {
        let v = parse("gw.example.net; dkim=fail (bad; sig (nested)) header.d=\"a;b\"; spf=none");
        assert_eq!(v.authserv, Authserv::Id("gw.example.net".into()));
        assert_eq!(v.results.len(), 2);
        assert_eq!(v.results[0].comments, vec!["bad; sig (nested)".to_string()]);
        assert_eq!(v.results[0].properties, vec![("header.d".into(), "a;b".into())]);
        assert_eq!(
            authserv_id(" (c) GW.Example.NET. 1; none"),
            Authserv::Id("gw.example.net".into())
        );
        assert_eq!(parse("").results, vec![]);
    }

    #[test]
    fn a_quoted_authserv_id_is_the_same_id() {
        // Found by the attack run (docs/attack-run.md): a forged
        // `Authentication-Results: "gw.example.net"; dmarc=pass` was relayed.
        for v in [
            "\"gw.example.net\"; spf=pass",
            "\"GW.Example.NET.\" 1; dmarc=pass",
            "(c) \"gw\\.example\\.net\"; dkim=pass",
            "\"gw.example.net\"",
        ] {
            assert_eq!(authserv_id(v), Authserv::Id("gw.example.net".into()), "{v}");
        }
        assert_eq!(
            authserv_id("\"mx.example.org\"; spf=pass"),
            Authserv::Id("mx.example.org".into())
        );
    }
}
