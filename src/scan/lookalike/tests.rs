//! What an administrator expects of the look-alike comparison: the classic
//! tricks are caught, the tenant's own names and unrelated names are not.

use super::*;

fn tenant(domains: &[&str]) -> Protected {
    let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
    Protected::new(&domains, &[])
}

#[test]
fn a_domain_never_looks_like_itself_or_its_subdomains() {
    for host in [
        "contoso.com",
        "CONTOSO.COM.",
        "mail.contoso.com",
        "a.b.c.contoso.com",
        "other.contoso.com",
    ] {
        assert_eq!(looks_like(host, "contoso.com"), None, "{host}");
    }
    // A sibling host of the same registrable domain is the same organisation.
    assert_eq!(looks_like("www.contoso.co.uk", "mail.contoso.co.uk"), None);
}

#[test]
fn homoglyphs_from_other_scripts_are_caught_in_punycode_and_unicode() {
    // Cyrillic о, Cyrillic с, Greek ο, as the wire carries them and as text.
    for host in [
        "xn--cntoso-wqf.com",
        "xn--ontoso-hrf.com",
        "xn--contso-l0e.com",
        "XN--CNTS-55DCB.COM",
        "cоntoso.com",
    ] {
        assert_eq!(looks_like(host, "contoso.com"), Some(Reason::Confusable), "{host}");
    }
    assert_eq!(looks_like("xn--l-7sba6dbr.com", "paypal.com"), Some(Reason::Confusable));
}

#[test]
fn ascii_tricks_are_caught() {
    assert_eq!(looks_like("c0ntoso.com", "contoso.com"), Some(Reason::Confusable));
    assert_eq!(looks_like("rnicrosoft.com", "microsoft.com"), Some(Reason::Confusable));
    assert_eq!(looks_like("vvoodgrove.com", "woodgrove.com"), Some(Reason::Confusable));
    assert_eq!(looks_like("paypa1.com", "paypal.com"), Some(Reason::Confusable));
    assert_eq!(looks_like("paypai.com", "paypal.com"), Some(Reason::Confusable));
    assert_eq!(looks_like("contosó.com", "contoso.com"), Some(Reason::Confusable));
}

#[test]
fn typos_are_caught_within_a_bound_that_grows_with_the_name() {
    assert_eq!(looks_like("contosso.com", "contoso.com"), Some(Reason::EditDistance(1)));
    assert_eq!(looks_like("cnotoso.com", "contoso.com"), Some(Reason::EditDistance(1)));
    assert_eq!(looks_like("contos.com", "contoso.com"), Some(Reason::EditDistance(1)));
    assert_eq!(looks_like("contosa.net", "contoso.com"), Some(Reason::EditDistance(1)));
    assert_eq!(
        looks_like("contasa.com", "contoso.com"),
        None,
        "two edits on a 7-letter name"
    );
    assert_eq!(
        looks_like("northwnd-traders.com", "northwind-traders.com"),
        Some(Reason::EditDistance(1))
    );
    assert_eq!(
        looks_like("nortwnd-traders.com", "northwind-traders.com"),
        Some(Reason::EditDistance(2))
    );
    // Short names: one edit would match half the namespace.
    assert_eq!(looks_like("abd.com", "abc.com"), None);
}

#[test]
fn the_same_name_under_another_suffix_is_caught_but_not_on_hosting_platforms() {
    assert_eq!(looks_like("contoso.co.uk", "contoso.com"), Some(Reason::OtherSuffix));
    assert_eq!(looks_like("contoso.net", "contoso.com"), Some(Reason::OtherSuffix));
    assert_eq!(
        looks_like("www.contoso.com.au", "contoso.com"),
        Some(Reason::OtherSuffix)
    );
    // The tenant's own SharePoint and onmicrosoft names are not cousins.
    assert_eq!(looks_like("contoso.sharepoint.com", "contoso.com"), None);
    assert_eq!(looks_like("contoso-my.sharepoint.com", "contoso.com"), None);
    assert_eq!(
        looks_like("contoso.mail.onmicrosoft.com", "contoso.onmicrosoft.com"),
        None
    );
    // But a look-alike tenant on the same platform is.
    assert_eq!(
        looks_like("c0ntoso.onmicrosoft.com", "contoso.onmicrosoft.com"),
        Some(Reason::Confusable)
    );
}

#[test]
fn an_embedded_domain_is_caught() {
    assert_eq!(
        looks_like("contoso.com.evil.example", "contoso.com"),
        Some(Reason::Embedded)
    );
    assert_eq!(
        looks_like("login.contoso.com.secure-check.net", "contoso.com"),
        Some(Reason::Embedded)
    );
    assert_eq!(looks_like("contoso.evil.example", "contoso.com"), None);
}

#[test]
fn unrelated_and_legitimately_non_latin_domains_are_not_look_alikes() {
    for host in [
        "fabrikam.com",
        "xn--e1afmkfd.xn--p1ai", // пример.рф
        "xn--bcher-kva.de",      // bücher.de
        "example.org",
        "outlook.com",
        "contoso-partners.com",
        "192.0.2.1",
        "localhost",
        "",
        "..",
    ] {
        assert_eq!(looks_like(host, "contoso.com"), None, "{host:?}");
    }
}

#[test]
fn a_tenant_owning_several_domains_is_not_its_own_look_alike() {
    let t = tenant(&["contoso.com", "contoso.co.uk"]);
    assert!(t.owns("shop.contoso.co.uk"));
    assert_eq!(t.check("contoso.co.uk"), None);
    assert_eq!(t.check("www.contoso.com"), None);
    let found = t.check("contoso.net").expect("cousin domain");
    assert_eq!(found.protected, "contoso.com");
    assert_eq!(found.reason, Reason::OtherSuffix);

    let t = Protected::new(&["contoso.com".into()], &["contosa.com".into()]);
    assert_eq!(t.check("mail.contosa.com"), None, "configured exception");
    assert!(t.check("contosso.com").is_some());
}

#[test]
fn registrable_parts() {
    let r = registrable("a.b.contoso.co.uk").unwrap();
    assert_eq!(
        (r.domain.as_str(), r.name.as_str(), r.suffix.as_str()),
        ("contoso.co.uk", "contoso", "co.uk")
    );
    let r = registrable("x.evil.blob.core.windows.net").unwrap();
    assert_eq!((r.domain.as_str(), r.hosting), ("evil.blob.core.windows.net", true));
    assert_eq!(registrable("co.uk").unwrap().domain, "co.uk");
    assert_eq!(registrable("www.example.com").unwrap().domain, "example.com");
    assert_eq!(registrable("2001:db8::1"), None);
    assert_eq!(registrable("10.0.0.1"), None);
}

#[test]
fn edit_distance_is_bounded_and_counts_swaps_once() {
    assert_eq!(edit_distance("kitten", "sitting", 3), Some(3));
    assert_eq!(edit_distance("kitten", "sitting", 2), None);
    assert_eq!(edit_distance("ab", "ba", 1), Some(1));
    assert_eq!(edit_distance("", "", 0), Some(0));
    assert_eq!(edit_distance("a", "", 0), None);
    let long = "a".repeat(10_000);
    assert_eq!(edit_distance(&long, &long, 2), None, "over the length limit");
}

#[test]
fn folding_handles_case_diacritics_scripts_and_invisible_characters() {
    assert_eq!(fold("Jáne  DÖE"), "jane  doe");
    assert_eq!(fold("Jаne Dое"), "jane doe"); // Cyrillic а, о, е
    assert_eq!(fold("Ja\u{200B}ne"), "jane");
    assert_eq!(fold("Ｊａｎｅ"), "jane"); // full-width
    // Letters without a Latin twin stay non-Latin (UTS #39 maps т to its
    // small-capital prototype, not to "t"), in either case.
    let petr = fold("Пётр");
    assert!(!petr.is_ascii(), "{petr}");
    assert_eq!(petr, fold("пётр"));
}

#[test]
fn folding_by_the_ascii_table_gives_what_folding_in_full_gives() {
    // Every pair of ASCII characters, then mixed texts: ASCII beside marks
    // (combining and not, in several orders), Cyrillic and full-width
    // look-alikes, invisible characters, ligatures, and characters whose
    // lower case is two characters (İ), drawn by a fixed xorshift sequence.
    for a in 0u8..128 {
        for b in 0u8..128 {
            let text = format!("{}{}", char::from(a), char::from(b));
            assert_eq!(fold(&text), fold_in_full(&text), "{text:?}");
        }
    }
    let alphabet: Vec<char> = ('\u{20}'..='\u{7e}')
        .chain("\t\n\r\u{301}\u{327}\u{308}\u{5b0}\u{591}\u{93c}\u{200b}\u{ad}\u{feff}аоеріІӏ\u{0130}ßﬁＪｍΑΒΡΣσςé€“”…Пётр".chars())
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..1 + state % 24 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        assert_eq!(fold(&text), fold_in_full(&text), "{text:?}");
    }
}

#[test]
fn display_shows_both_forms_of_an_idn() {
    assert_eq!(display_host("xn--cntoso-wqf.com"), "xn--cntoso-wqf.com (cоntoso.com)");
    assert_eq!(display_host("Contoso.com."), "contoso.com");
}

#[test]
fn real_brand_lookalikes_are_caught() {
    let brands = tenant(&["microsoft.com", "paypal.com", "apple.com"]);
    let caught = |host: &str| brands.check(host).map(|l| (l.protected, l.reason));
    assert_eq!(
        caught("micros0ft.com"),
        Some(("microsoft.com".into(), Reason::Confusable))
    );
    assert_eq!(
        caught("rnicrosoft.com"),
        Some(("microsoft.com".into(), Reason::Confusable))
    );
    // "pаypal" with a Cyrillic а, and the famous all-Cyrillic "аррӏе".
    assert_eq!(
        caught("xn--pypal-4ve.com"),
        Some(("paypal.com".into(), Reason::Confusable))
    );
    assert_eq!(
        caught("xn--80ak6aa92e.com"),
        Some(("apple.com".into(), Reason::Confusable))
    );
    assert_eq!(
        caught("ｐａｙｐａｌ.com"),
        None,
        "UTS #46 maps full-width letters to paypal.com itself"
    );
    assert_eq!(
        caught("paypal.com.secure-login.example"),
        Some(("paypal.com".into(), Reason::Embedded))
    );
}

#[test]
fn real_brand_and_idn_domains_are_not_flagged() {
    let brands = tenant(&["microsoft.com", "paypal.com", "apple.com"]);
    for host in [
        "paypal.com",
        "www.paypal.com",
        "PAYPAL.COM.",
        "login.microsoftonline.com",
        "microsoft.com",
        "support.apple.com",
        "paypal-community.com",
        "appleinsider.com",
        "bücher.example",
        "xn--bcher-kva.example",
        "münchen.de",
        "xn--mnchen-3ya.de",
        "pineapple.com",
        "applied.com",
    ] {
        assert_eq!(brands.check(host), None, "{host}");
    }
    // Tenants whose own domains are IDNs: their names in either form, and
    // their subdomains, are theirs.
    let idn = tenant(&["münchen.de", "bücher.example"]);
    for host in [
        "xn--mnchen-3ya.de",
        "www.münchen.de",
        "mail.xn--mnchen-3ya.de",
        "xn--bcher-kva.example",
        "BÜCHER.example",
        "muenchen.de.example",
        "berlin.de",
    ] {
        assert_eq!(idn.check(host), None, "{host}");
    }
    // ... while a look-alike of an IDN tenant is still one.
    assert_eq!(idn.check("mönchen.de").map(|l| l.reason), Some(Reason::EditDistance(1)));
    assert_eq!(idn.check("munchen.de").map(|l| l.reason), Some(Reason::Confusable));
}

#[test]
fn registrable_parts_come_from_the_public_suffix_list() {
    let reg = |h: &str| registrable(h).map(|r| (r.domain, r.hosting));
    assert_eq!(reg("www.bbc.co.uk"), Some(("bbc.co.uk".into(), false)));
    assert_eq!(reg("a.b.github.io"), Some(("b.github.io".into(), true)));
    assert_eq!(reg("x.y.s3.amazonaws.com").map(|r| r.1), Some(true));
    assert_eq!(reg("city.kawasaki.jp"), Some(("city.kawasaki.jp".into(), false)));
    assert_eq!(reg("foo.公司.cn"), Some(("foo.公司.cn".into(), false)));
    assert_eq!(
        reg("contoso.sharepoint.com"),
        Some(("contoso.sharepoint.com".into(), true))
    );
    assert_eq!(
        reg("contoso.mail.onmicrosoft.com"),
        Some(("contoso.mail.onmicrosoft.com".into(), true))
    );
    assert_eq!(reg("co.uk"), Some(("co.uk".into(), false)));
    assert_eq!(reg("192.0.2.1"), None);
}
