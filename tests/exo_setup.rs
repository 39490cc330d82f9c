//! `exo-setup` as an Exchange administrator would check it before pasting it
//! into a tenant: the exact script for the fixture gateway (golden files; run
//! with `UPDATE_GOLDEN=1` to rewrite them after an intended change), every
//! cmdlet and parameter name checked against the list transcribed from the
//! reference (tests/fixtures/exo/verified-parameters.txt), the configurations
//! that must be refused, and config values that try to break out of the
//! script's quoting. The PowerShell lexing here follows the tokenizer's rules
//! for comments and single-quoted strings (including the typographic quotes it
//! also accepts); no PowerShell runs in this environment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use exogate::config::Config;
use exogate::exo_setup::{ExoSetupError, ps_quote, script};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exo")
}

const GATEWAY: &str = include_str!("fixtures/exo/gateway.toml");

fn config(text: &str) -> Config {
    match Config::parse(text, &fixture_dir().join("gateway.toml")) {
        Ok(c) => c,
        Err(e) => panic!("fixture config does not load: {e}"),
    }
}

fn fixture() -> Config {
    config(GATEWAY)
}

// ---- a small PowerShell lexer: code, single-quoted strings, line comments ----

/// The characters PowerShell's tokenizer takes for a single quote (its
/// `CharExtensions.IsSingleQuote`), written out here rather than borrowed from
/// the code under test, so a generator that forgets one is caught.
fn is_ps_single_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Code(String),
    /// The string's value (quotes undone).
    Str(String),
    Comment(String),
}

/// Splits `script` the way PowerShell does for the parts that matter here. A
/// `#` opens a comment only where a token can start (line start or after
/// whitespace), so a value glued to code cannot hide behind one. Panics on
/// what the generator must never write: double quotes (interpolation), block
/// comments, and an unterminated string.
fn lex(script: &str) -> Vec<Tok> {
    let chars: Vec<char> = script.chars().collect();
    let mut toks = Vec::new();
    let mut code = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let token_start = i == 0 || chars[i - 1].is_whitespace();
        if is_ps_single_quote(c) {
            toks.push(Tok::Code(std::mem::take(&mut code)));
            let mut value = String::new();
            i += 1;
            loop {
                assert!(i < chars.len(), "unterminated string literal");
                let d = chars[i];
                if is_ps_single_quote(d) {
                    if i + 1 < chars.len() && is_ps_single_quote(chars[i + 1]) {
                        value.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                value.push(d);
                i += 1;
            }
            toks.push(Tok::Str(value));
        } else if c == '#' && token_start {
            toks.push(Tok::Code(std::mem::take(&mut code)));
            let end = chars[i..]
                .iter()
                .position(|&x| x == '\n')
                .map_or(chars.len(), |p| i + p);
            toks.push(Tok::Comment(chars[i..end].iter().collect()));
            i = end;
        } else {
            assert!(
                !matches!(c, '"' | '\u{201C}' | '\u{201D}' | '\u{201E}'),
                "double-quoted (interpolating) string in code at char {i}"
            );
            assert!(!(c == '<' && chars.get(i + 1) == Some(&'#')), "block comment in code");
            code.push(c);
            i += 1;
        }
    }
    toks.push(Tok::Code(code));
    toks.retain(|t| !matches!(t, Tok::Code(c) if c.is_empty()));
    toks
}

/// The code with every string replaced by `'S'` and comments dropped.
fn code_only(script: &str) -> String {
    lex(script)
        .into_iter()
        .map(|t| match t {
            Tok::Code(c) => c,
            Tok::Str(_) => "'S'".into(),
            Tok::Comment(_) => String::new(),
        })
        .collect()
}

fn strings(script: &str) -> Vec<String> {
    lex(script)
        .into_iter()
        .filter_map(|t| match t {
            Tok::Str(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// PowerShell operators the script's own logic uses (about_Comparison_Operators);
/// they look like parameters but belong to no cmdlet.
const OPERATORS: &[&str] = &["-contains"];

fn is_cmdlet(word: &str) -> bool {
    let Some((verb, noun)) = word.split_once('-') else {
        return false;
    };
    let capital_word = |w: &str| {
        w.len() > 1 && w.starts_with(|c: char| c.is_ascii_uppercase()) && w.chars().all(|c| c.is_ascii_alphanumeric())
    };
    capital_word(verb) && capital_word(noun) && verb.chars().skip(1).any(|c| c.is_ascii_lowercase())
}

/// Every cmdlet with the parameters it is called with, per statement (a line
/// plus its backtick continuations); operators collected apart.
fn usage(script: &str) -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    let code = code_only(script).replace("`\n", " ");
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut operators = BTreeSet::new();
    for statement in code.lines() {
        let words: Vec<&str> = statement
            .split(|c: char| c.is_whitespace() || "(){};,@=+[]".contains(c))
            .filter(|w| !w.is_empty())
            .collect();
        let cmdlets: Vec<&str> = words.iter().copied().filter(|w| is_cmdlet(w)).collect();
        let params: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| w.starts_with('-') && w[1..].starts_with(|c: char| c.is_ascii_alphabetic()))
            .collect();
        for c in &cmdlets {
            used.entry(c.to_string()).or_default();
        }
        for p in params {
            if OPERATORS.contains(&p) {
                operators.insert(p.to_string());
                continue;
            }
            assert_eq!(
                cmdlets.len(),
                1,
                "parameter {p} in a statement without exactly one cmdlet: {statement}"
            );
            used.entry(cmdlets[0].to_string()).or_default().insert(p.to_string());
        }
    }
    (used, operators)
}

fn verified() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(fixture_dir().join("verified-parameters.txt")).unwrap();
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut words = line.split_whitespace();
        let cmdlet = words.next().unwrap();
        assert!(is_cmdlet(cmdlet), "not a cmdlet in verified-parameters.txt: {cmdlet}");
        let params = map.entry(cmdlet.to_string()).or_default();
        for p in words {
            assert!(p.starts_with('-'), "not a parameter in verified-parameters.txt: {p}");
            params.insert(p.to_string());
        }
    }
    map
}

/// Names used but not verified, as "Cmdlet" or "Cmdlet -Param" (exact case).
fn unverified(script: &str) -> Vec<String> {
    let known = verified();
    let (used, _) = usage(script);
    let mut bad = Vec::new();
    for (cmdlet, params) in &used {
        match known.get(cmdlet) {
            None => bad.push(cmdlet.clone()),
            Some(ok) => bad.extend(
                params
                    .iter()
                    .filter(|p| !ok.contains(*p))
                    .map(|p| format!("{cmdlet} {p}")),
            ),
        }
    }
    bad
}

// ---- golden files ----

fn golden(portal: &str) {
    let got = script(&fixture(), portal).unwrap();
    let path = fixture_dir().join(format!("{portal}.ps1"));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display()));
    if got != want {
        let line = got.lines().zip(want.lines()).position(|(a, b)| a != b);
        panic!(
            "exo-setup output for {portal} differs from {} (first differing line: {:?}); \
             if the change is intended, run with UPDATE_GOLDEN=1 and review the diff\n--- got ---\n{got}",
            path.display(),
            line.map(|l| l + 1)
        );
    }
}

#[test]
fn golden_inline_tenant_with_relay_certificate() {
    golden("contoso");
}

#[test]
fn golden_detect_tenant_without_certificate() {
    golden("northwind");
}

#[test]
fn golden_monitor_tenant() {
    golden("fabrikam");
}

// ---- what the script contains ----

#[test]
fn every_cmdlet_and_parameter_is_verified_by_the_reference() {
    let mut seen = BTreeSet::new();
    for portal in ["contoso", "northwind", "fabrikam"] {
        let s = script(&fixture(), portal).unwrap();
        assert_eq!(unverified(&s), Vec::<String>::new(), "{portal}");
        let (used, operators) = usage(&s);
        assert!(operators.iter().all(|o| OPERATORS.contains(&o.as_str())));
        for (c, ps) in used {
            seen.extend(ps.into_iter().map(|p| format!("{c} {p}")));
            seen.insert(c);
        }
    }
    // Not vacuous: the calls that matter were looked at.
    for expected in [
        "New-OutboundConnector -TlsSettings",
        "New-InboundConnector -SenderIPAddresses",
        "New-InboundConnector -TlsSenderCertificateName",
        "New-TransportRule -ExceptIfSenderIpRanges",
        "New-TransportRule -RouteMessageOutboundConnector",
        "New-JournalRule -JournalEmailAddress",
        "Set-TransportConfig -JournalingReportNdrTo",
        "Get-TransportRule",
    ] {
        assert!(seen.contains(expected), "{expected} not found in any script: {seen:?}");
    }
}

#[test]
fn the_parameter_check_catches_a_misspelling_and_an_unknown_cmdlet() {
    let s = "New-InboundConnector -Name 'x' `\n    -SenderIpAddresses @('203.0.113.1')\nRemove-TransportRule -Identity 'x'\n";
    assert_eq!(
        unverified(s),
        vec!["New-InboundConnector -SenderIpAddresses", "Remove-TransportRule"]
    );
}

#[test]
fn inline_script_exempts_exactly_the_public_addresses_from_every_protect_rule() {
    let s = script(&fixture(), "contoso").unwrap();
    let ips = "@('203.0.113.25', '198.51.100.16/28')";
    // Three Protect rules, each with the exception; Junk and Whitelist match on them.
    assert_eq!(s.matches(&format!("-ExceptIfSenderIpRanges {ips}")).count(), 3, "{s}");
    assert_eq!(s.matches(&format!("-SenderIpRanges {ips}")).count(), 2);
    assert_eq!(s.matches(&format!("-SenderIPAddresses {ips}")).count(), 1);
    // The NAT-internal relay address never reaches Exchange Online.
    assert!(!s.contains("10.0.5.25"));
    let values = strings(&s);
    for v in [
        "contoso,office365_emails,inline",
        "contoso,office365_emails,sent,inline",
        "contoso,office365_emails,internal,inline",
    ] {
        assert!(values.iter().any(|x| x == v), "header value {v} missing");
    }
    assert!(values.iter().any(|x| x == "contoso.tenants.gw.example.net"));
    assert!(s.contains("-RestrictDomainsToCertificate $true"));
    assert!(!s.contains("New-JournalRule"));
}

#[test]
fn without_a_certificate_only_inbound_mail_is_routed() {
    let s = script(&fixture(), "northwind").unwrap();
    let code = code_only(&s);
    assert_eq!(code.matches("New-OutboundConnector").count(), 1);
    assert_eq!(code.matches("New-InboundConnector").count(), 1);
    assert!(!code.contains("OnPremises"));
    assert!(!strings(&s).iter().any(|v| v.contains("sent,inline")));
    // Detect: the SCL -1 bypass is created disabled.
    let whitelist = s.split("New-TransportRule -Name 'exogate - Whitelist'").nth(1).unwrap();
    assert!(whitelist.contains("-Enabled $false"), "{whitelist}");
}

#[test]
fn monitor_tenant_gets_the_journal_rule_and_no_routing() {
    let s = script(&fixture(), "fabrikam").unwrap();
    let code = code_only(&s);
    assert!(
        !code.contains("New-TransportRule") && !code.contains("Connector"),
        "{code}"
    );
    assert!(code.contains("Set-TransportConfig") && code.contains("New-JournalRule"));
    assert!(s.contains("-JournalEmailAddress 'fabrikam@fabrikam.journal.gw.example.net'"));
    assert!(
        s.contains("-JournalingReportNdrTo 'fabrikam-ndr@journal-ndr.gw.example.net'"),
        "journal_ndr_address"
    );
    assert!(s.contains("-Scope Global") && s.contains("-Enabled $true"));
    // The NDR address must be set before the rule (Exchange Online requires it).
    assert!(s.find("Set-TransportConfig").unwrap() < s.find("New-JournalRule").unwrap());
}

#[test]
fn continuation_lines_are_well_formed() {
    for portal in ["contoso", "northwind", "fabrikam"] {
        let s = script(&fixture(), portal).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l.trim_end(), *l, "{portal}: trailing whitespace on line {}", i + 1);
            if l.ends_with('`') {
                let next = lines.get(i + 1).copied().unwrap_or("");
                assert!(
                    next.starts_with("    -"),
                    "{portal}: line {} continues into {next:?}",
                    i + 1
                );
            }
        }
    }
}

#[test]
fn defaults_fall_back_to_server_hostname_and_relay_source_ips() {
    let text = GATEWAY
        .replace("smart_host = \"in.gw.example.net\"\n", "")
        .replace("outgoing_smart_host = \"out.gw.example.net\"\n", "")
        .replace("tls_domain = \"*.gw.example.net\"\n", "")
        .replace("public_ips = [\"203.0.113.25\", \"198.51.100.16/28\"]\n", "")
        .replace(
            "source_ips = [\"10.0.5.25\"]",
            "source_ips = [\"192.0.2.10\", \"2001:db8::10\"]",
        );
    let s = script(&config(&text), "contoso").unwrap();
    assert!(s.contains("-SmartHosts @('mx1.gw.example.net')"));
    assert_eq!(s.matches("-TlsDomain 'mx1.gw.example.net'").count(), 2);
    assert!(s.contains("-ExceptIfSenderIpRanges @('192.0.2.10')"));
    // The IPv6 egress address is left out, and the script says so.
    assert!(!code_only(&s).contains("2001:db8"));
    assert!(s.contains("# ") && s.contains("left out: 2001:db8::10/128 from relay.source_ips"));
}

// ---- refusals ----

fn error(text: &str, portal: &str) -> ExoSetupError {
    match script(&config(text), portal) {
        Ok(s) => panic!("expected an error, got a script:\n{s}"),
        Err(e) => e,
    }
}

#[test]
fn unknown_portal_lists_the_known_ones() {
    let e = error(GATEWAY, "contso");
    assert_eq!(
        e.to_string(),
        "no tenant with portal \"contso\" in the configuration; known portals: \"contoso\", \"northwind\", \"fabrikam\""
    );
}

#[test]
fn no_public_address_at_all_is_refused_naming_both_keys() {
    let text = GATEWAY
        .replace("public_ips = [\"203.0.113.25\", \"198.51.100.16/28\"]\n", "")
        .replace("source_ips = [\"10.0.5.25\"]", "source_ips = []");
    let e = error(&text, "contoso");
    assert_eq!(e, ExoSetupError::NoPublicIps);
    let msg = e.to_string();
    assert!(
        msg.contains("exchange.public_ips") && msg.contains("relay.source_ips"),
        "{msg}"
    );
    // A monitor tenant needs no gateway address: journaling still works.
    assert!(script(&config(&text), "fabrikam").is_ok());
}

#[test]
fn only_ipv6_egress_is_refused() {
    let text = GATEWAY
        .replace("public_ips = [\"203.0.113.25\", \"198.51.100.16/28\"]\n", "")
        .replace("source_ips = [\"10.0.5.25\"]", "source_ips = [\"2001:db8::25\"]");
    let e = error(&text, "northwind");
    assert!(
        matches!(
            e,
            ExoSetupError::NoIpv4 {
                key: "relay.source_ips",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("IPv4 only"), "{e}");
}

#[test]
fn a_private_relay_address_without_public_ips_is_refused() {
    // Behind NAT with exchange.public_ips forgotten: the rules would exempt an
    // address EXO never sees, and every message would loop.
    let text = GATEWAY.replace("public_ips = [\"203.0.113.25\", \"198.51.100.16/28\"]\n", "");
    let e = error(&text, "contoso");
    assert_eq!(
        e,
        ExoSetupError::NotPublic {
            key: "relay.source_ips",
            net: "10.0.5.25/32".into()
        }
    );
    assert!(e.to_string().contains("exchange.public_ips"), "{e}");
}

#[test]
fn a_range_wider_than_24_bits_is_refused() {
    let text = GATEWAY.replace("\"198.51.100.16/28\"", "\"198.51.100.0/23\"");
    let e = error(&text, "contoso");
    assert!(
        matches!(
            e,
            ExoSetupError::PrefixTooShort {
                key: "exchange.public_ips",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn monitor_without_journal_address_is_refused() {
    let text = GATEWAY.replace("journal_address = \"fabrikam@fabrikam.journal.gw.example.net\"\n", "");
    let e = error(&text, "fabrikam");
    assert_eq!(
        e,
        ExoSetupError::MissingJournalAddress {
            portal: "fabrikam".into(),
            index: 2
        }
    );
    assert!(e.to_string().contains("tenant[2].journal_address"));
}

#[test]
fn a_certificate_name_the_gateway_never_presents_is_refused() {
    let text = GATEWAY
        .replace("relay_cert = \"contoso-relay.pem\"\n", "")
        .replace("relay_key = \"contoso-relay.key\"\n", "");
    let e = error(&text, "contoso");
    assert!(
        matches!(e, ExoSetupError::CertificateNotPresented { index: 0, .. }),
        "{e:?}"
    );
}

#[test]
fn a_smart_host_that_is_not_a_host_name_is_refused() {
    for bad in ["localhost", "in.gw.example.net'; Stop-Computer; '", "in gw.example.net"] {
        let text = GATEWAY.replace("smart_host = \"in.gw.example.net\"", &format!("smart_host = {bad:?}"));
        let e = error(&text, "contoso");
        assert!(
            matches!(&e, ExoSetupError::InvalidHostName { key, .. } if key == "exchange.smart_host"),
            "{bad}: {e:?}"
        );
    }
}

// ---- quoting ----

const PAYLOADS: &[&str] = &[
    "x'; Stop-Computer; '",
    "x\u{2019}; Stop-Computer; \u{2018}",
    "$(Stop-Computer)",
    "`$(Stop-Computer)`",
    "x' + (Stop-Computer) + '",
    "x';Stop-Computer;'",
    "x\u{2019};Stop-Computer;\u{201A}",
];

#[test]
fn the_config_itself_refuses_quotes_in_portals_and_domains() {
    for payload in PAYLOADS {
        let text = GATEWAY.replace("portal = \"contoso\"", &format!("portal = {payload:?}"));
        assert!(
            Config::parse(&text, &fixture_dir().join("gateway.toml")).is_err(),
            "{payload}"
        );
        let text = GATEWAY.replace("\"contoso.com\"", &format!("{payload:?}"));
        assert!(
            Config::parse(&text, &fixture_dir().join("gateway.toml")).is_err(),
            "{payload}"
        );
    }
}

/// No payload reaches code: each occurs only inside a string or a comment.
fn assert_contained(s: &str, payload: &str) {
    assert!(
        !code_only(s).contains("Stop-Computer"),
        "payload {payload:?} reached code:\n{s}"
    );
    assert!(
        lex(s).iter().any(|t| match t {
            Tok::Str(v) | Tok::Comment(v) => v.contains("Stop-Computer"),
            Tok::Code(_) => false,
        }),
        "payload {payload:?} vanished (test would prove nothing):\n{s}"
    );
}

#[test]
fn hostile_portal_and_domain_values_stay_inside_string_literals() {
    // The config refuses these, but the script must not rely on it: Config's
    // fields are public and the script is pasted into an admin session.
    for payload in PAYLOADS {
        let mut c = fixture();
        c.tenants[0].portal = payload.to_string();
        c.tenants[0].domains[0] = format!("{payload}.example");
        let s = script(&c, payload).unwrap();
        assert_contained(&s, payload);
        let info = format!("{payload},office365_emails,inline");
        assert!(strings(&s).contains(&info), "{payload}: header value not intact");
        assert!(s.contains(&ps_quote(&info)));
    }
}

#[test]
fn hostile_journal_address_from_a_loaded_config_is_quoted() {
    // The config accepts any address with an '@'; the script must quote it.
    for payload in PAYLOADS {
        let address = format!("{payload}@fabrikam.journal.gw.example.net");
        let text = GATEWAY.replace(
            "journal_address = \"fabrikam@fabrikam.journal.gw.example.net\"",
            &format!("journal_address = {address:?}"),
        );
        let c = config(&text);
        let s = match script(&c, "fabrikam") {
            Ok(s) => s,
            // Spaces make it no address at all: refused, which is also safe.
            Err(ExoSetupError::InvalidAddress { .. }) => continue,
            Err(e) => panic!("{payload}: {e}"),
        };
        assert_contained(&s, payload);
        // -JournalEmailAddress (the NDR address is the fixture's journal_ndr_address).
        assert_eq!(strings(&s).iter().filter(|v| **v == address).count(), 1, "{payload}");
    }
}

#[test]
fn a_line_break_in_a_value_is_refused_not_written() {
    let mut c = fixture();
    c.tenants[0].portal = "contoso\nStop-Computer".into();
    let e = script(&c, "contoso\nStop-Computer").unwrap_err();
    assert_eq!(
        e,
        ExoSetupError::UnsafeValue {
            key: "tenant[0].portal".into()
        }
    );
    let mut c = fixture();
    c.exchange.name_prefix = "gw\r\nStop-Computer".into();
    assert!(matches!(script(&c, "contoso"), Err(ExoSetupError::UnsafeValue { .. })));
}

#[test]
fn the_lexer_agrees_with_powershell_on_quote_doubling() {
    assert_eq!(
        lex("a 'it''s' # c\n\u{2018}x\u{2019}\u{2019}y\u{201B}"),
        vec![
            Tok::Code("a ".into()),
            Tok::Str("it's".into()),
            Tok::Code(" ".into()),
            Tok::Comment("# c".into()),
            Tok::Code("\n".into()),
            Tok::Str("x\u{2019}y".into()),
        ]
    );
    // '#' glued to a word is not a comment in PowerShell: it stays code.
    assert_eq!(code_only("a#b; Stop-Computer"), "a#b; Stop-Computer");
}
