//! The wording of a lure: what the message wants the reader to do, in four
//! kinds (credentials, a document or message waiting, urgency or a threat,
//! money moved on request). One kind is ordinary business mail; several at
//! once is how phishing reads. Phrases in English, German, French and
//! Spanish, matched as whole words on folded text (see
//! `brands::fold_for_claims`). Pure.

use std::sync::LazyLock;

use crate::scan::brands::{PhraseGroups, Phrases};

/// A kind of lure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Credentials,
    Document,
    Urgency,
    Money,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Credentials => "credentials",
            Kind::Document => "a waiting document",
            Kind::Urgency => "urgency",
            Kind::Money => "moving money",
        }
    }
}

const PHRASES: &[(Kind, &[&str])] = &[
    (
        Kind::Credentials,
        &[
            "verify your account",
            "verify your identity",
            "confirm your identity",
            "confirm your account",
            "validate your account",
            "verify your email",
            "sign in to",
            "sign in now",
            "log in to your account",
            "login to your account",
            "re enter your password",
            "reset your password",
            "password expires",
            "password will expire",
            "password has expired",
            "password expiry",
            "keep your password",
            "keep same password",
            "update your password",
            "unusual sign in",
            "unusual activity",
            "suspicious activity",
            "multi factor",
            "mfa",
            "authenticator",
            "re register",
            "re enroll",
            "mailbox is full",
            "mailbox quota",
            "storage is full",
            "storage quota",
            "update your payment",
            "payment method was declined",
            "billing information",
            "account has been locked",
            "account is locked",
            "account has been suspended",
            "account will be suspended",
            "account will be closed",
            "passwort",
            "kennwort",
            "konto bestatigen",
            "mot de passe",
            "verifier votre compte",
            "contrasena",
            "verificar su cuenta",
            "verifique su cuenta",
        ],
    ),
    (
        Kind::Document,
        &[
            "shared a document",
            "shared a file",
            "shared a folder",
            "has shared",
            "shared with you",
            "view document",
            "view the document",
            "open document",
            "review document",
            "review and sign",
            "please sign",
            "docusign",
            "voicemail",
            "voice message",
            "new fax",
            "secure message",
            "encrypted message",
            "pending messages",
            "undelivered messages",
            "held messages",
            "quarantined message",
            "remittance",
            "payment advice",
            "dokument",
            "documento compartido",
            "document partage",
            "scan the code",
            "scan the qr code",
            "qr code",
        ],
    ),
    (
        Kind::Urgency,
        &[
            "action required",
            "immediate action",
            "urgent",
            "immediately",
            "within 24 hours",
            "within 48 hours",
            "within 24hrs",
            "final notice",
            "final warning",
            "last warning",
            "will be deleted",
            "will be locked",
            "will be suspended",
            "will be disabled",
            "will be terminated",
            "will be closed",
            "permanently deleted",
            "failure to",
            "avoid interruption",
            "avoid suspension",
            "expires today",
            "mandatory",
            "dringend",
            "sofort",
            "urgente",
        ],
    ),
    (
        Kind::Money,
        &[
            "gift card",
            "gift cards",
            "wire transfer",
            "bank transfer",
            "direct deposit",
            "change of bank details",
            "new bank details",
            "update the bank",
            "banking details",
            "are you available",
            "quick favor",
            "quick favour",
            "itunes card",
            "payroll",
            "invoice is due",
            "overdue invoice",
            "outstanding payment",
        ],
    ),
];

/// Advance-fee ("419") fraud: a stranger's fortune to move with the reader's
/// help. Each phrase alone is innocent; several together are the genre.
const ADVANCE_FEE: &[&str] = &[
    "next of kin",
    "beneficiary",
    "million united states dollars",
    "million us dollars",
    "million usd",
    "transfer of the fund",
    "transfer of this fund",
    "transfer the fund",
    "transfer the funds",
    "foreign account",
    "foreign partner",
    "strictly confidential",
    "utmost confidentiality",
    "absolute confidentiality",
    "late husband",
    "late father",
    "deceased",
    "barrister",
    "central bank",
    "security company",
    "diplomatic",
    "consignment",
    "dormant account",
    "unclaimed",
    "percent of the total",
    "of the total sum",
    "compensation",
    "risk free",
    "100 risk free",
    "god bless you",
];

static ADVANCE_FEE_FOLDED: LazyLock<Phrases> = LazyLock::new(|| Phrases::new(ADVANCE_FEE));
static LURE_TABLE: LazyLock<PhraseGroups> = LazyLock::new(|| {
    let groups: Vec<&'static [&'static str]> = PHRASES.iter().map(|(_, phrases)| *phrases).collect();
    PhraseGroups::new(&groups)
});

/// Builds this file's tables now, when the check is built, rather than at
/// the first message that needs them (see the `checks` module header).
pub(crate) fn warm() {
    LazyLock::force(&ADVANCE_FEE_FOLDED);
    LazyLock::force(&LURE_TABLE);
}

/// The distinct advance-fee phrases of `folded`.
pub(crate) fn advance_fee(folded: &str) -> Vec<&'static str> {
    ADVANCE_FEE_FOLDED.found_in(folded).collect()
}

/// The kinds of lure `folded` uses, each with the first phrase found.
pub(crate) fn kinds(folded: &str) -> Vec<(Kind, &'static str)> {
    PHRASES
        .iter()
        .zip(LURE_TABLE.first_in_each(folded))
        .filter_map(|((kind, _), phrase)| phrase.map(|p| (*kind, p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::brands::fold_for_claims;

    #[test]
    fn kinds_are_found_as_whole_words() {
        let f = fold_for_claims("Your password expires TODAY. Action required: sign in to keep it.");
        let k: Vec<Kind> = kinds(&f).into_iter().map(|(k, _)| k).collect();
        assert_eq!(k, [Kind::Credentials, Kind::Urgency]);
        assert!(kinds(&fold_for_claims("the urgently needed patch")).is_empty());
        let fraud = fold_for_claims(
            "As next of kin and beneficiary, you will receive 20 percent of the total sum. Strictly confidential.",
        );
        assert_eq!(advance_fee(&fraud).len(), 5);
    }
}
