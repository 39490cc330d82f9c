//! The password of an encrypted archive given in the message itself: the
//! archive is encrypted only so that scanners cannot open it, since the
//! reader gets the key alongside. Finds "password: X" (and its German,
//! French and Spanish forms) in the visible text. Pure.

use std::sync::LazyLock;

use regex::Regex;

static PASSWORD_GIVEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(?:password|passcode|pwd|pass|passwort|kennwort|mot de passe|contrase[ñn]a|clave|code)\b[^\n]{0,24}?[:=\-–]\s*["'“«]?[^\s"'”»]{3,64}"#,
    )
    .expect("valid regex")
});

/// Builds this file's tables now, when the check is built, rather than at
/// the first message that needs them (see the `checks` module header).
pub(crate) fn warm() {
    LazyLock::force(&PASSWORD_GIVEN);
}

/// The phrase giving a password, when the text has one.
pub(crate) fn password_in_text(text: &str) -> Option<String> {
    PASSWORD_GIVEN.find(text).map(|m| m.as_str().chars().take(60).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_password_is_found() {
        assert!(password_in_text("The file is protected.\nPassword: 7731\n").is_some());
        assert!(password_in_text("Passwort für das Archiv - Inv2026").is_some());
        assert!(password_in_text("Please reset your password next week.").is_none());
    }
}
