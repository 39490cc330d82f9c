//! Well-known brands that phishing imitates: the names a message uses to
//! claim one, and the registrable domains (Public Suffix List, `psl`) that
//! really belong to it. Shared by the `phishing` check (a brand claimed by a
//! sender who is not the brand) and the `urls` check (a link host that looks
//! like a brand's domain).
//!
//! The list is ours, from the brands public phishing reports name most
//! (vendor quarterly "most impersonated brand" reports: Microsoft and its
//! products, Google, Apple, Amazon, DHL and other carriers, PayPal, banks,
//! DocuSign, Adobe, Dropbox, social networks). It is deliberately incomplete
//! on the domain side only in one direction: a brand's domain missing here
//! makes its real mail look like a claim by a stranger, so each brand lists
//! the domains its notification mail comes from. Claims are matched on
//! folded text (case, diacritics, look-alike characters and invisible
//! characters removed, see `lookalike::fold`) as whole words.
//! Must never: match a claim inside a longer word ("chase" in "purchase").

use std::sync::LazyLock;

use crate::scan::lookalike;

/// One brand.
pub(crate) struct Brand {
    /// How reasons name it.
    pub(crate) name: &'static str,
    /// Phrases that claim it (whole words; folded once, see [`Phrases`]).
    pub(crate) claims: &'static [&'static str],
    /// Registrable domains it sends from and links to.
    pub(crate) domains: &'static [&'static str],
    /// Its name is a common word ("chase", "apple", "teams"): a claim only
    /// counts in a display name, never in running text.
    pub(crate) common_word: bool,
}

const MICROSOFT_DOMAINS: &[&str] = &[
    "microsoft.com",
    "microsoftonline.com",
    "office.com",
    "office.net",
    "office365.com",
    "microsoft365.com",
    "outlook.com",
    "live.com",
    "hotmail.com",
    "msn.com",
    "sharepoint.com",
    "onedrive.com",
    "onmicrosoft.com",
    "windows.net",
    "windows.com",
    "azure.com",
    "azure.net",
    "skype.com",
    "bing.com",
    "msft.net",
    "microsoftstore.com",
    "xbox.com",
    "linkedin.com",
    "aka.ms",
    "sway.office.com",
    "dynamics.com",
    "powerbi.com",
    "yammer.com",
    "msauth.net",
    "msftauth.net",
    "mcas.ms",
    "safelinks.protection.outlook.com",
];

pub(crate) const BRANDS: &[Brand] = &[
    Brand {
        name: "Microsoft",
        claims: &[
            "microsoft",
            "office 365",
            "office365",
            "microsoft 365",
            "m365",
            "o365",
            "outlook",
            "onedrive",
            "one drive",
            "sharepoint",
            "share point",
            "microsoft teams",
            "exchange online",
            "azure ad",
            "entra id",
            "windows live",
            "hotmail",
        ],
        domains: MICROSOFT_DOMAINS,
        common_word: false,
    },
    Brand {
        name: "Google",
        claims: &[
            "google",
            "gmail",
            "google drive",
            "google docs",
            "google workspace",
            "g suite",
        ],
        domains: &[
            "google.com",
            "gmail.com",
            "googlemail.com",
            "youtube.com",
            "googleusercontent.com",
            "withgoogle.com",
            "google.co.uk",
            "google.de",
            "goo.gl",
            "g.co",
        ],
        common_word: false,
    },
    Brand {
        name: "Apple",
        claims: &["apple", "icloud", "apple id", "itunes", "app store"],
        domains: &[
            "apple.com",
            "icloud.com",
            "me.com",
            "mac.com",
            "itunes.com",
            "apple.news",
        ],
        common_word: true,
    },
    Brand {
        name: "Amazon",
        claims: &["amazon", "amazon prime", "aws", "amazon web services"],
        domains: &[
            "amazon.com",
            "amazon.co.uk",
            "amazon.de",
            "amazon.fr",
            "amazon.es",
            "amazon.it",
            "amazon.ca",
            "amazonses.com",
            "amazonaws.com",
            "aws.amazon.com",
            "amazon.jobs",
            "a2z.com",
        ],
        common_word: false,
    },
    Brand {
        name: "PayPal",
        claims: &["paypal", "pay pal"],
        domains: &[
            "paypal.com",
            "paypal.me",
            "paypal-communication.com",
            "paypalobjects.com",
        ],
        common_word: false,
    },
    Brand {
        name: "DocuSign",
        claims: &["docusign", "docu sign"],
        domains: &["docusign.com", "docusign.net"],
        common_word: false,
    },
    Brand {
        name: "Adobe",
        claims: &["adobe", "adobe sign", "adobe acrobat", "acrobat sign"],
        domains: &["adobe.com", "adobesign.com", "echosign.com", "adobelogin.com"],
        common_word: false,
    },
    Brand {
        name: "Dropbox",
        claims: &["dropbox"],
        domains: &["dropbox.com", "dropboxmail.com", "dropboxusercontent.com"],
        common_word: false,
    },
    Brand {
        name: "DHL",
        claims: &["dhl", "dhl express"],
        domains: &["dhl.com", "dhl.de", "dhl.co.uk", "dpdhl.com", "dhl-news.com"],
        common_word: false,
    },
    Brand {
        name: "FedEx",
        claims: &["fedex", "fed ex"],
        domains: &["fedex.com"],
        common_word: false,
    },
    Brand {
        name: "UPS",
        claims: &["ups"],
        domains: &["ups.com"],
        common_word: true,
    },
    Brand {
        name: "USPS",
        claims: &["usps", "postal service"],
        domains: &["usps.com", "usps.gov"],
        common_word: false,
    },
    Brand {
        name: "Netflix",
        claims: &["netflix"],
        domains: &["netflix.com", "netflix.net", "nflxext.com"],
        common_word: false,
    },
    Brand {
        name: "LinkedIn",
        claims: &["linkedin", "linked in"],
        domains: &["linkedin.com", "licdn.com"],
        common_word: false,
    },
    Brand {
        name: "Meta",
        claims: &["facebook", "instagram", "whatsapp", "meta business"],
        domains: &[
            "facebook.com",
            "facebookmail.com",
            "instagram.com",
            "whatsapp.com",
            "meta.com",
            "fb.com",
        ],
        common_word: false,
    },
    Brand {
        name: "Zoom",
        claims: &["zoom", "zoom video"],
        domains: &["zoom.us", "zoom.com", "zoomgov.com"],
        common_word: true,
    },
    Brand {
        name: "Webex",
        claims: &["webex", "cisco webex"],
        domains: &["webex.com", "cisco.com"],
        common_word: false,
    },
    Brand {
        name: "Intuit",
        claims: &["intuit", "quickbooks", "turbotax"],
        domains: &["intuit.com", "quickbooks.com", "turbotax.com"],
        common_word: false,
    },
    Brand {
        name: "Chase",
        claims: &["chase", "jpmorgan", "jp morgan", "jpmorgan chase"],
        domains: &["chase.com", "jpmorgan.com", "jpmorganchase.com", "jpmchase.com"],
        common_word: true,
    },
    Brand {
        name: "Wells Fargo",
        claims: &["wells fargo", "wellsfargo"],
        domains: &["wellsfargo.com", "wf.com"],
        common_word: false,
    },
    Brand {
        name: "Bank of America",
        claims: &["bank of america", "bankofamerica"],
        domains: &["bankofamerica.com", "bofa.com", "ml.com"],
        common_word: false,
    },
    Brand {
        name: "Citi",
        claims: &["citibank", "citi bank"],
        domains: &["citi.com", "citibank.com"],
        common_word: false,
    },
    Brand {
        name: "HSBC",
        claims: &["hsbc"],
        domains: &["hsbc.com", "hsbc.co.uk", "us.hsbc.com"],
        common_word: false,
    },
    Brand {
        name: "Barclays",
        claims: &["barclays"],
        domains: &["barclays.com", "barclays.co.uk", "barclaycard.co.uk"],
        common_word: false,
    },
    Brand {
        name: "American Express",
        claims: &["american express", "amex"],
        domains: &["americanexpress.com", "aexp.com", "amex.com"],
        common_word: false,
    },
    Brand {
        name: "Coinbase",
        claims: &["coinbase"],
        domains: &["coinbase.com"],
        common_word: false,
    },
    Brand {
        name: "Binance",
        claims: &["binance"],
        domains: &["binance.com"],
        common_word: false,
    },
    Brand {
        name: "eBay",
        claims: &["ebay"],
        domains: &["ebay.com", "ebay.co.uk", "ebay.de"],
        common_word: false,
    },
    Brand {
        name: "Norton",
        claims: &["norton", "norton 360", "norton antivirus"],
        domains: &["norton.com", "nortonlifelock.com", "symantec.com"],
        common_word: true,
    },
    Brand {
        name: "McAfee",
        claims: &["mcafee"],
        domains: &["mcafee.com"],
        common_word: false,
    },
    Brand {
        name: "Yahoo",
        claims: &["yahoo"],
        domains: &["yahoo.com", "yahoo.co.uk", "yahoo-inc.com", "ymail.com", "aol.com"],
        common_word: false,
    },
    Brand {
        name: "Steam",
        claims: &["steam", "steam community"],
        domains: &["steampowered.com", "steamcommunity.com"],
        common_word: true,
    },
    Brand {
        name: "IRS",
        claims: &["irs", "internal revenue service"],
        domains: &["irs.gov"],
        common_word: false,
    },
    Brand {
        name: "HMRC",
        claims: &["hmrc"],
        domains: &["hmrc.gov.uk", "gov.uk"],
        common_word: false,
    },
];

/// The registrable domain (Public Suffix List) of a normalised host; the
/// host itself when the list knows no suffix for it.
pub(crate) fn organisation(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&host).map(str::to_string).unwrap_or(host)
}

impl Brand {
    /// `host` (normalised) belongs to the brand.
    pub(crate) fn owns(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.domains.iter().any(|d| lookalike::is_within(&host, d))
    }
}

/// Every brand domain, for look-alike comparisons (long, distinctive names only).
pub(crate) fn lookalike_targets() -> Vec<String> {
    BRANDS
        .iter()
        .filter(|b| !b.common_word)
        .flat_map(|b| b.domains.iter())
        .filter(|d| {
            let name = d.split('.').next().unwrap_or_default();
            name.len() >= 6
        })
        .map(|d| d.to_string())
        .collect()
}

/// The brand owning `host`, if any.
pub(crate) fn owner(host: &str) -> Option<&'static Brand> {
    BRANDS.iter().find(|b| b.owns(host))
}

static CLAIMS: LazyLock<PhraseGroups> = LazyLock::new(|| {
    let groups: Vec<&'static [&'static str]> = BRANDS.iter().map(|b| b.claims).collect();
    PhraseGroups::new(&groups)
});

/// Builds this file's tables now rather than at the first message that
/// needs them (see [`crate::scan::warm`]).
pub(crate) fn warm() {
    LazyLock::force(&CLAIMS);
}

/// Brands claimed in `folded` (from [`fold_for_claims`]); a common-word
/// brand only in a display name (`display_name`), never in running text.
pub(crate) fn claimed(folded: &str, display_name: bool) -> Vec<&'static Brand> {
    BRANDS
        .iter()
        .zip(CLAIMS.first_in_each(folded))
        .filter(|(b, found)| found.is_some() && (display_name || !b.common_word))
        .map(|(b, _)| b)
        .collect()
}

/// A table of phrases, folded once like the texts they are looked for in
/// (the confusables skeleton rewrites plain letters too: `m` becomes `rn`),
/// so a check does not fold its whole table for every message, and searched
/// in one pass (Aho-Corasick: a message's text was searched once per phrase).
pub(crate) struct Phrases {
    phrases: Vec<&'static str>,
    /// Over the folded phrases that are not empty; pattern `k` is phrase `kept[k]`.
    automaton: aho_corasick::AhoCorasick,
    kept: Vec<usize>,
}

impl Phrases {
    pub(crate) fn new(phrases: &[&'static str]) -> Phrases {
        let (kept, folded): (Vec<usize>, Vec<String>) = phrases
            .iter()
            .enumerate()
            .map(|(i, p)| (i, fold_for_claims(p)))
            .filter(|(_, f)| !f.trim().is_empty())
            .unzip();
        Phrases {
            phrases: phrases.to_vec(),
            // A DFA: overlapping searches are its fast case, and the tables are small.
            automaton: aho_corasick::AhoCorasick::builder()
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(&folded)
                .expect("a table of a few hundred short phrases"),
            kept,
        }
    }

    /// Indices (in the table given to [`Phrases::new`]) of the phrases found
    /// as whole words in `folded` (from [`fold_for_claims`]), in table order.
    pub(crate) fn indices_in(&self, folded: &str) -> Vec<usize> {
        // Overlapping: " microsoft " and " microsoft 365 " both count.
        let mut found: Vec<usize> = self
            .automaton
            .find_overlapping_iter(folded)
            .map(|m| self.kept[m.pattern().as_usize()])
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// The phrase at `index` in the table given to [`Phrases::new`].
    fn phrase(&self, index: usize) -> &'static str {
        self.phrases[index]
    }

    /// The phrases found as whole words in `folded` (from [`fold_for_claims`]), in table order.
    pub(crate) fn found_in<'a>(&'a self, folded: &'a str) -> impl Iterator<Item = &'static str> + 'a {
        self.indices_in(folded).into_iter().map(|i| self.phrases[i])
    }
}

/// Several tables of phrases searched as one, in one pass over the text, for
/// a caller that wants each table's first phrase found (a brand's claims, a
/// kind of lure).
pub(crate) struct PhraseGroups {
    phrases: Phrases,
    /// The table each phrase of `phrases` came from.
    group_of: Vec<usize>,
    groups: usize,
}

impl PhraseGroups {
    pub(crate) fn new(groups: &[&'static [&'static str]]) -> PhraseGroups {
        let (phrases, group_of): (Vec<&'static str>, Vec<usize>) = groups
            .iter()
            .enumerate()
            .flat_map(|(g, phrases)| phrases.iter().map(move |p| (*p, g)))
            .unzip();
        PhraseGroups {
            phrases: Phrases::new(&phrases),
            group_of,
            groups: groups.len(),
        }
    }

    /// For each table, in order, the first of its phrases (in table order)
    /// found as whole words in `folded` (from [`fold_for_claims`]).
    pub(crate) fn first_in_each(&self, folded: &str) -> Vec<Option<&'static str>> {
        let mut first = vec![None; self.groups];
        // Indices come in table order, so the first seen of a table is its first phrase.
        for i in self.phrases.indices_in(folded) {
            first[self.group_of[i]].get_or_insert(self.phrases.phrase(i));
        }
        first
    }
}

/// `text` folded for claim matching: look-alikes and invisibles removed, and
/// every run of non-alphanumerics one space (so "Micro-soft" stays two
/// words but "Microsoft®" is one).
pub(crate) fn fold_for_claims(text: &str) -> String {
    let folded = lookalike::fold(text);
    let mut out = String::with_capacity(folded.len() + 2);
    out.push(' ');
    let mut space = true;
    for c in folded.chars() {
        if c.is_alphanumeric() {
            out.push(c);
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if !space {
        out.push(' ');
    }
    out
}

/// `phrase` occurs in `folded` (from [`fold_for_claims`]) as whole words.
/// The phrase is folded the same way (see [`Phrases`], which does it once
/// for a static table; this is for phrases known only per message).
pub(crate) fn contains_words(folded: &str, phrase: &str) -> bool {
    let phrase = fold_for_claims(phrase);
    phrase.trim() != "" && folded.contains(&phrase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_whole_words_after_folding() {
        let f = fold_for_claims("Your purchase from M\u{456}crosoft\u{200b} 365 team");
        assert!(contains_words(&f, "microsoft 365"), "{f}");
        assert!(!contains_words(&fold_for_claims("your purchase"), "chase"));
        let names: Vec<&str> = claimed(&fold_for_claims("Chase Bank"), true)
            .iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["Chase"]);
        assert!(claimed(&fold_for_claims("we chase the deadline"), false).is_empty());
    }

    #[test]
    fn a_table_finds_every_phrase_present_in_table_order_overlaps_included() {
        let table = Phrases::new(&["365 team", "microsoft", "microsoft 365", "  ", "purchase", "chase"]);
        let folded = fold_for_claims("Your purchase from the Micr\u{43e}soft 365 team");
        let found: Vec<&str> = table.found_in(&folded).collect();
        assert_eq!(found, ["365 team", "microsoft", "microsoft 365", "purchase"]);
        assert_eq!(table.phrase(2), "microsoft 365");
        assert_eq!(table.indices_in(&fold_for_claims("we chase")), [5]);
        assert!(table.found_in(&fold_for_claims("nothing here")).next().is_none());
    }

    #[test]
    fn groups_give_each_table_its_first_phrase_found() {
        static A: &[&str] = &["gift card", "wire transfer"];
        static B: &[&str] = &["invoice"];
        static C: &[&str] = &["zzz", "wire"];
        let groups = PhraseGroups::new(&[A, B, C]);
        let folded = fold_for_claims("Send a wire transfer, then a gift card");
        assert_eq!(groups.first_in_each(&folded), [Some("gift card"), None, Some("wire")]);
        assert_eq!(groups.first_in_each(&fold_for_claims("nothing")), [None, None, None]);
    }

    #[test]
    fn ownership_uses_registrable_domains() {
        assert_eq!(organisation("login.microsoftonline.com"), "microsoftonline.com");
        assert_eq!(organisation("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(owner("email.microsoft.com").map(|b| b.name), Some("Microsoft"));
        assert!(owner("microsoft.com.evil.example").is_none());
        assert!(lookalike_targets().contains(&"microsoft.com".to_string()));
        assert!(!lookalike_targets().iter().any(|d| d == "apple.com"));
    }
}
