//! Finding payment card numbers and IBANs in text, with the validations that
//! keep look-alikes out: card numbers need a card-like shape, a known issuer
//! prefix with a length that issuer uses, and a valid Luhn digit; IBANs need
//! a known country with its exact length, and a valid mod-97 check.
//!
//! A candidate is a run of digits, optionally split by single spaces or
//! dashes. A run that is part of a longer token (letters or digits glued to
//! it, a decimal point, a leading `+`) is not a candidate: that is an order
//! number, a tracking number, a phone number or an amount. A separated run
//! must be shaped like a printed card (4-4-4-4, 4-4-4-4-1..3, 4-4-4-1..4,
//! Amex 4-6-5, Diners 4-6-4); a card-shaped start followed by a short number
//! ("4111 1111 1111 1111 12 26") is still taken. Only the start of a run is
//! tried: a card number glued after other space-separated numbers is missed,
//! on purpose, since sliding through long digit runs would flag pieces of
//! tracking numbers.
//!
//! Invariants: linear in the text, no indexing that can panic, at most
//! [`MAX_HITS`] results per text. Nothing here logs: callers mask values.

/// Results kept per text; beyond this a message is plainly full of them.
pub(crate) const MAX_HITS: usize = 1000;

/// The issuer of a card number, from its prefix and length.
pub(crate) fn card_brand(digits: &str) -> Option<&'static str> {
    let len = digits.len();
    let prefix = |n: usize| digits.get(..n).and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    let brand = if p1 == 4 && matches!(len, 13 | 16 | 19) {
        "Visa"
    } else if ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16 {
        "Mastercard"
    } else if matches!(p2, 34 | 37) && len == 15 {
        "Amex"
    } else if (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65) && (16..=19).contains(&len) {
        "Discover"
    } else if (3528..=3589).contains(&p4) && (16..=19).contains(&len) {
        "JCB"
    } else if ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && (14..=19).contains(&len) {
        "Diners"
    } else if p2 == 62 && (16..=19).contains(&len) {
        "UnionPay"
    } else {
        return None;
    };
    Some(brand)
}

/// The Luhn check over ASCII digits.
pub(crate) fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        if !b.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// `4111********1111`: the issuer prefix and the last four, nothing else.
pub(crate) fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars.iter().take(4).collect();
    let tail: String = chars.iter().skip(chars.len() - 4).collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether the run `bytes[start..end]` is glued to a longer token.
fn embedded(bytes: &[u8], start: usize, end: usize) -> bool {
    let before = start.checked_sub(1).and_then(|i| bytes.get(i)).copied();
    let before2 = start.checked_sub(2).and_then(|i| bytes.get(i)).copied();
    let after = bytes.get(end).copied();
    let after2 = bytes.get(end + 1).copied();
    let connector = |b: u8| matches!(b, b'.' | b'/' | b'-' | b'_');
    before.is_some_and(|b| is_word(b) || b == b'+' || (connector(b) && before2.is_some_and(is_word)))
        || after.is_some_and(|b| is_word(b) || (connector(b) && after2.is_some_and(is_word)))
}

/// Card numbers in `text`: (digits, brand), in order of appearance.
pub(crate) fn find_cards(text: &str) -> Vec<(String, &'static str)> {
    const KEPT_GROUPS: usize = 6;
    let bytes = text.as_bytes();
    let mut hits = Vec::new();
    let mut i = 0;
    while i < bytes.len() && hits.len() < MAX_HITS {
        if !bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            continue;
        }
        let start = i;
        // (start, end) of the first groups, and the separators seen.
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut separators = Vec::new();
        loop {
            let group_start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if groups.len() < KEPT_GROUPS {
                groups.push((group_start, i));
            }
            match (bytes.get(i), bytes.get(i + 1)) {
                (Some(&sep @ (b' ' | b'-')), Some(next)) if next.is_ascii_digit() => {
                    separators.push(sep);
                    i += 1;
                }
                _ => break,
            }
        }
        let end = i;
        if embedded(bytes, start, end) {
            continue;
        }
        if let Some(hit) = card_in_run(text, &groups, &separators, end) {
            hits.push(hit);
        }
    }
    hits
}

fn card_in_run(text: &str, groups: &[(usize, usize)], separators: &[u8], end: usize) -> Option<(String, &'static str)> {
    let lens: Vec<usize> = groups.iter().map(|(s, e)| e - s).collect();
    let digits_of = |n: usize| -> String { groups.iter().take(n).filter_map(|&(s, e)| text.get(s..e)).collect() };
    let valid = |d: String| card_brand(&d).filter(|_| luhn(&d)).map(|brand| (d, brand));
    let whole_run = groups.last().is_some_and(|&(_, e)| e == end);
    let uniform = separators.windows(2).all(|w| matches!(w, [a, b] if a == b));
    if whole_run
        && (lens.len() == 1 || (uniform && card_shaped(&lens)))
        && let Some(hit) = valid(digits_of(lens.len()))
    {
        return Some(hit);
    }
    // A card followed by a short space-separated number (expiry, CVV).
    let printed = if lens.starts_with(&[4, 4, 4, 4]) {
        4
    } else if lens.starts_with(&[4, 6, 5]) || lens.starts_with(&[4, 6, 4]) {
        3
    } else {
        return None;
    };
    let next_is_short = lens.get(printed).is_some_and(|&n| n < 4);
    let spaced = separators.iter().take(printed).all(|&s| s == b' ');
    if next_is_short && spaced {
        return valid(digits_of(printed));
    }
    None
}

fn card_shaped(lens: &[usize]) -> bool {
    match lens {
        [4, 6, 5 | 4] => true,
        [4, 4, 4, last] => (1..=4).contains(last),
        [4, 4, 4, 4, last] => (1..=3).contains(last),
        _ => false,
    }
}

/// IBAN length per country (SWIFT IBAN registry, 2024; French, Finnish and
/// British territories use FR, FI and GB IBANs and need no entry).
fn iban_length(country: &str) -> Option<usize> {
    // Kept as a dense table so it can be compared with the registry at a glance.
    #[rustfmt::skip]
    const LENGTHS: [(&str, usize); 89] = [
        ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16), ("BG", 22),
        ("BH", 22), ("BI", 27), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22), ("CY", 28), ("CZ", 24),
        ("DE", 22), ("DJ", 27), ("DK", 18), ("DO", 28), ("EE", 20), ("EG", 29), ("ES", 24), ("FI", 18),
        ("FK", 18), ("FO", 18), ("FR", 27), ("GB", 22), ("GE", 22), ("GI", 23), ("GL", 18), ("GR", 27),
        ("GT", 28), ("HN", 28), ("HR", 21), ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23), ("IS", 26),
        ("IT", 27), ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32), ("LI", 21), ("LT", 20),
        ("LU", 20), ("LV", 21), ("LY", 25), ("MC", 27), ("MD", 24), ("ME", 22), ("MK", 19), ("MN", 20),
        ("MR", 27), ("MT", 31), ("MU", 30), ("NI", 28), ("NL", 18), ("NO", 15), ("OM", 23), ("PK", 24),
        ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("RU", 33), ("SA", 24),
        ("SC", 31), ("SD", 18), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27), ("SO", 23), ("ST", 25),
        ("SV", 28), ("TL", 23), ("TN", 24), ("TR", 26), ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20),
        ("YE", 30),
    ];
    LENGTHS.iter().find(|(c, _)| *c == country).map(|&(_, n)| n)
}

/// The ISO 13616 check: check digits 02..=98 and the rearranged number ≡ 1 (mod 97).
pub(crate) fn iban_valid(compact: &str) -> bool {
    let Some((head, bban)) = compact.split_at_checked(4) else {
        return false;
    };
    let check: u32 = match head.get(2..4).and_then(|d| d.parse().ok()) {
        Some(d) => d,
        None => return false,
    };
    if !(2..=98).contains(&check) || iban_length(head.get(..2).unwrap_or("")) != Some(compact.len()) {
        return false;
    }
    let mut rem = 0u32;
    for b in bban.bytes().chain(head.bytes()) {
        rem = match b {
            b'0'..=b'9' => (rem * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(b - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

fn iban_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

/// IBANs in `text` (upper case, compact or in groups of four), compacted.
pub(crate) fn find_ibans(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut hits = Vec::new();
    let mut i = 0;
    while i + 4 <= bytes.len() && hits.len() < MAX_HITS {
        let starts = matches!(bytes.get(i..i + 4), Some([a, b, c, d])
            if a.is_ascii_uppercase() && b.is_ascii_uppercase() && c.is_ascii_digit() && d.is_ascii_digit())
            && !i.checked_sub(1).and_then(|p| bytes.get(p)).is_some_and(|&b| is_word(b));
        let Some(len) = starts.then(|| text.get(i..i + 2).and_then(iban_length)).flatten() else {
            i += 1;
            continue;
        };
        let mut compact = String::with_capacity(len);
        let mut j = i;
        while compact.len() < len {
            match (bytes.get(j), bytes.get(j + 1)) {
                (Some(&b), _) if iban_char(b) => {
                    compact.push(char::from(b));
                    j += 1;
                }
                // Printed form: a single space after every fourth character.
                (Some(b' '), Some(&next)) if compact.len().is_multiple_of(4) && iban_char(next) => j += 1,
                _ => break,
            }
        }
        let ends_cleanly = !bytes.get(j).is_some_and(|&b| is_word(b));
        if compact.len() == len && ends_cleanly && iban_valid(&compact) {
            hits.push(compact);
            i = j;
        } else {
            i += 1;
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cards(text: &str) -> Vec<String> {
        find_cards(text).into_iter().map(|(d, _)| d).collect()
    }

    #[test]
    fn luhn_and_brands() {
        assert!(luhn("4111111111111111"));
        assert!(!luhn("4111111111111112"));
        assert_eq!(card_brand("4111111111111111"), Some("Visa"));
        assert_eq!(card_brand("5555555555554444"), Some("Mastercard"));
        assert_eq!(card_brand("2223003122003222"), Some("Mastercard"));
        assert_eq!(card_brand("378282246310005"), Some("Amex"));
        assert_eq!(card_brand("6011111111111117"), Some("Discover"));
        assert_eq!(card_brand("3530111333300000"), Some("JCB"));
        assert_eq!(card_brand("30569309025904"), Some("Diners"));
        assert_eq!(card_brand("6200000000000005"), Some("UnionPay"));
        // Right prefix, wrong length; unknown prefixes.
        assert_eq!(card_brand("411111111111111"), None);
        assert_eq!(card_brand("1234567812345670"), None);
        assert_eq!(card_brand("9400100000000000"), None);
    }

    #[test]
    fn printed_shapes_are_found() {
        assert_eq!(cards("card 4111 1111 1111 1111 please"), ["4111111111111111"]);
        assert_eq!(cards("4111-1111-1111-1111"), ["4111111111111111"]);
        assert_eq!(cards("amex 3782 822463 10005."), ["378282246310005"]);
        assert_eq!(cards("(5555555555554444)"), ["5555555555554444"]);
        assert_eq!(cards("4111 1111 1111 1111 12 26 123"), ["4111111111111111"]);
        assert_eq!(cards("4111111111111111,12/26,123"), ["4111111111111111"]);
        assert_eq!(
            cards("Visa: 4111111111111111\nMC: 5555 5555 5555 4444"),
            ["4111111111111111", "5555555555554444"]
        );
    }

    #[test]
    fn look_alikes_are_not_cards() {
        for text in [
            "4111 1111 1111 1112",                   // fails Luhn
            "ORD-4111111111111111",                  // glued to an identifier
            "A4111111111111111",                     // glued to letters
            "41111111111111111111",                  // 20 digits: longer run
            "9400 1000 0000 0000 0000 00",           // USPS tracking
            "4111 1111 1111 1111 1111",              // five full groups
            "+4111111111111111",                     // phone-like
            "0.4111111111111111",                    // decimal
            "4111 11111 1111 1111",                  // not a printed shape
            "4111-1111 1111-1111",                   // mixed separators
            "550e8400-e29b-41d4-a716-446655440000",  // UUID
            "12345678-1234-1234-1234-123456789012",  // all-digit UUID
            "2024-06-30 20240630123045",             // dates
            "+1 (415) 555-0132, +49 1512 3456 7890", // phone numbers
        ] {
            assert!(cards(text).is_empty(), "{text}: {:?}", cards(text));
        }
    }

    #[test]
    fn masking_keeps_prefix_and_last_four() {
        assert_eq!(mask("4111111111111111"), "4111********1111");
        assert_eq!(mask("DE89370400440532013000"), "DE89**************3000");
        assert_eq!(mask("short"), "*****");
    }

    #[test]
    fn ibans_compact_and_grouped() {
        assert_eq!(
            find_ibans("IBAN: DE89 3704 0044 0532 0130 00."),
            ["DE89370400440532013000"]
        );
        assert_eq!(find_ibans("GB82WEST12345698765432"), ["GB82WEST12345698765432"]);
        assert_eq!(find_ibans("to NL91 ABNA 0417 1643 00 today"), ["NL91ABNA0417164300"]);
        assert_eq!(
            find_ibans("FR14 2004 1010 0505 0001 3M02 606"),
            ["FR1420041010050500013M02606"]
        );
    }

    #[test]
    fn iban_look_alikes_are_rejected() {
        for text in [
            "DE88 3704 0044 0532 0130 00",   // wrong check digits
            "DE89 3704 0044 0532 0130 0012", // too long for DE
            "DE89 3704 0044 0532 0130",      // too short
            "XDE89370400440532013000",       // glued
            "de89370400440532013000",        // lower case
            "DE8937 0400 4405 3201 3000",    // groups not of four
            "QQ89370400440532013000",        // no such country
            "ISO 9001 certified, RFC 5321",  // letters then digits
        ] {
            assert!(find_ibans(text).is_empty(), "{text}");
        }
        // Check digits 99 and 02 are congruent mod 97; only 02..98 are valid.
        assert!(!iban_valid("GB99WEST12345698765432"));
    }
}
