//! The attachment policy on real-looking messages: each rule catches its case,
//! clean look-alikes pass untouched, and no prefix or corruption of any
//! fixture's attachments makes the parsers panic.

use super::*;
use crate::checks::test_support::{build, build_errors, scan, with_input};
use crate::message::verdict::{Thresholds, Verdict};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/attachments/",
            $name
        )) as &[u8]
    };
}

const FIXTURES: &[(&str, &[u8])] = &[
    ("attached-message-exe.eml", fixture!("attached-message-exe.eml")),
    ("blocked-exe.eml", fixture!("blocked-exe.eml")),
    ("calendar-invite.eml", fixture!("calendar-invite.eml")),
    ("clean-docx.eml", fixture!("clean-docx.eml")),
    ("clean-images.eml", fixture!("clean-images.eml")),
    ("clean-pdf.eml", fixture!("clean-pdf.eml")),
    ("clean-tnef.eml", fixture!("clean-tnef.eml")),
    ("clean-zip.eml", fixture!("clean-zip.eml")),
    ("deceptive-names.eml", fixture!("deceptive-names.eml")),
    ("deep-messages.eml", fixture!("deep-messages.eml")),
    ("deep-zip.eml", fixture!("deep-zip.eml")),
    ("disguised-content.eml", fixture!("disguised-content.eml")),
    ("disguised-pe.eml", fixture!("disguised-pe.eml")),
    ("double-extension.eml", fixture!("double-extension.eml")),
    ("encrypted-zip.eml", fixture!("encrypted-zip.eml")),
    ("gzip-exe.eml", fixture!("gzip-exe.eml")),
    ("macro-docx.eml", fixture!("macro-docx.eml")),
    ("macro-xls.eml", fixture!("macro-xls.eml")),
    ("nested-zip.eml", fixture!("nested-zip.eml")),
    ("rar-exe.eml", fixture!("rar-exe.eml")),
    ("report-final.eml", fixture!("report-final.eml")),
    ("sevenzip-encrypted.eml", fixture!("sevenzip-encrypted.eml")),
    ("signed.eml", fixture!("signed.eml")),
    ("text-only.eml", fixture!("text-only.eml")),
    ("tnef-exe.eml", fixture!("tnef-exe.eml")),
    ("tnef-truncated.eml", fixture!("tnef-truncated.eml")),
    ("zip-bomb.eml", fixture!("zip-bomb.eml")),
    ("zip-with-exe.eml", fixture!("zip-with-exe.eml")),
];

fn run_with(options: &str, raw: &[u8], direction: Direction) -> Vec<Finding> {
    let check = build("attachments", options);
    scan(&*check, raw, "accounts@northwind-billing.example", direction)
}

fn run(raw: &[u8]) -> Vec<Finding> {
    run_with("", raw, Direction::Inbound)
}

fn tags(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.tag.as_str()).collect()
}

fn get<'f>(findings: &'f [Finding], tag: &str) -> &'f Finding {
    findings
        .iter()
        .find(|f| f.tag == tag)
        .unwrap_or_else(|| panic!("no {tag} finding in {findings:#?}"))
}

fn action(findings: Vec<Finding>) -> Action {
    Verdict::decide(&Thresholds::default(), findings, vec![]).action
}

#[test]
fn a_blocked_executable_with_an_rfc2231_uppercase_name_is_quarantined() {
    let found = run(fixture!("blocked-exe.eml"));
    assert_eq!(tags(&found), ["blocked-extension"]);
    let f = get(&found, "blocked-extension");
    assert_eq!(
        f.reason,
        "blocked file type: \"Rechnung März.EXE\": extension .exe is blocked"
    );
    assert_eq!((f.score, f.force), (10.0, Some(Action::Quarantine)));
    assert_eq!(action(found), Action::Quarantine);
}

#[test]
fn decoy_double_extensions_and_blank_padding() {
    let found = run(fixture!("double-extension.eml"));
    assert_eq!(
        tags(&found),
        ["blocked-extension", "double-extension", "deceptive-name"]
    );
    let double = &get(&found, "double-extension").reason;
    assert!(
        double.contains("\"invoice.pdf.exe\": looks like a .pdf but is a .exe"),
        "{double}"
    );
    assert!(
        double.contains("\"scan.docx     .js\": looks like a .docx but is a .js"),
        "{double}"
    );
    assert!(
        get(&found, "deceptive-name")
            .reason
            .contains("pads the name with 5 blanks")
    );
}

#[test]
fn right_to_left_override_and_trailing_dots() {
    let found = run(fixture!("deceptive-names.eml"));
    let deceptive = &get(&found, "deceptive-name").reason;
    assert!(deceptive.contains("\"Payment_<U+202E>fdp.scr\" contains the bidirectional control U+202E"));
    assert!(deceptive.contains("\"remittance.exe. . .\" ends with dots or blanks"));
    let blocked = &get(&found, "blocked-extension").reason;
    assert!(
        blocked.contains(".scr is blocked") && blocked.contains(".exe is blocked"),
        "{blocked}"
    );
}

#[test]
fn an_executable_declared_as_pdf_is_caught_by_its_magic_bytes() {
    let found = run(fixture!("disguised-pe.eml"));
    assert_eq!(tags(&found), ["disguised-executable"]);
    let f = get(&found, "disguised-executable");
    assert!(f.reason.contains("\"Invoice_4411.pdf\""), "{}", f.reason);
    assert!(f.reason.contains("declared application/pdf") && f.reason.contains("a Windows executable"));
    assert_eq!(f.force, Some(Action::Quarantine));
}

#[test]
fn an_image_that_is_a_zip_and_text_that_is_an_elf_or_a_script() {
    let found = run(fixture!("disguised-content.eml"));
    assert_eq!(
        tags(&found),
        ["disguised-executable", "disguised-script", "disguised-archive"]
    );
    assert!(get(&found, "disguised-executable").reason.contains("\"notes.txt\""));
    assert!(
        get(&found, "disguised-executable")
            .reason
            .contains("Linux (ELF) executable")
    );
    assert!(get(&found, "disguised-script").reason.contains("\"readme.txt\""));
    assert!(get(&found, "disguised-archive").reason.contains("\"IMG_2041.jpg\""));
    assert!(get(&found, "disguised-archive").reason.contains("zip archive"));
}

#[test]
fn blocked_names_inside_a_zip_are_found() {
    let found = run(fixture!("zip-with-exe.eml"));
    assert_eq!(tags(&found), ["blocked-extension", "double-extension"]);
    assert_eq!(
        get(&found, "blocked-extension").reason,
        "blocked file type: \"Shipping_Docs.zip\" → \"Docs/DHL_Label.PDF.exe\": extension .exe is blocked"
    );
}

#[test]
fn an_encrypted_zip_is_quarantined_by_score_and_its_names_still_checked() {
    let found = run(fixture!("encrypted-zip.eml"));
    let f = get(&found, "encrypted-archive");
    assert!(
        f.reason.contains("\"Invoice_8841.zip\": 2 of 2 entries are encrypted"),
        "{}",
        f.reason
    );
    assert_eq!((f.score, f.force), (10.0, None));
    assert!(get(&found, "blocked-extension").reason.contains("\"Invoice_8841.js\""));
    // Encryption alone reaches the default quarantine threshold.
    let only = run_with(
        "score_blocked_extension = 0\nforce_blocked_extension = \"none\"",
        fixture!("encrypted-zip.eml"),
        Direction::Inbound,
    );
    assert_eq!(tags(&only), ["encrypted-archive"]);
    assert_eq!(action(only), Action::Quarantine);
}

#[test]
fn rar_names_are_checked_and_encrypted_rar_and_7z_are_unscannable() {
    let found = run(fixture!("rar-exe.eml"));
    assert_eq!(tags(&found), ["blocked-extension", "encrypted-archive"]);
    assert!(
        get(&found, "blocked-extension")
            .reason
            .contains("\"Payroll.rar\" → \"Payroll/Payroll_Viewer.exe\": extension .exe is blocked")
    );
    assert!(
        get(&found, "encrypted-archive")
            .reason
            .contains("1 of 3 entries are encrypted (\"Payroll/salaries.xlsx\")")
    );
    let found = run(fixture!("sevenzip-encrypted.eml"));
    assert_eq!(tags(&found), ["encrypted-archive"]);
    assert!(
        get(&found, "encrypted-archive")
            .reason
            .contains("\"Documents.7z\": 7-Zip archive uses AES")
    );
    assert_eq!(action(found), Action::Quarantine);
}

#[test]
fn nested_archives_are_opened_up_to_the_depth_limit() {
    let found = run(fixture!("nested-zip.eml"));
    assert_eq!(tags(&found), ["blocked-extension"]);
    assert!(
        get(&found, "blocked-extension")
            .reason
            .contains("\"Updated_files.zip\" → \"files.zip\" → \"update/run.js\"")
    );

    let found = run(fixture!("deep-zip.eml"));
    assert_eq!(tags(&found), ["nesting-too-deep"]);
    assert!(
        get(&found, "nesting-too-deep")
            .reason
            .contains("nested 6 levels deep (limit 5)")
    );
    let relaxed = run_with("max_depth = 8", fixture!("deep-zip.eml"), Direction::Inbound);
    assert!(relaxed.is_empty(), "{relaxed:#?}");
}

#[test]
fn a_zip_bomb_is_reported_without_being_expanded() {
    let found = run(fixture!("zip-bomb.eml"));
    assert_eq!(tags(&found), ["archive-bomb"]);
    assert!(
        get(&found, "archive-bomb")
            .reason
            .contains("\"logs.zip\" compression ratio")
    );
    let small = run_with(
        "max_expanded_size = \"1MiB\"\nmax_compression_ratio = 5000",
        fixture!("zip-bomb.eml"),
        Direction::Inbound,
    );
    assert!(
        get(&small, "archive-bomb")
            .reason
            .contains("expands to 16777216 bytes (limit 1048576)")
    );
    let many = run_with("max_archive_entries = 2", fixture!("clean-zip.eml"), Direction::Inbound);
    assert!(
        get(&many, "archive-bomb")
            .reason
            .contains("declares 3 entries (limit 2)")
    );
}

#[test]
fn macros_in_a_renamed_docm_and_in_a_legacy_xls_inbound_only_by_default() {
    let found = run(fixture!("macro-docx.eml"));
    assert_eq!(tags(&found), ["macro-document"]);
    assert!(
        get(&found, "macro-document")
            .reason
            .contains("\"Bestellung_2024-0314.docx\" contains a VBA project")
    );
    let found = run(fixture!("macro-xls.eml"));
    assert_eq!(tags(&found), ["macro-document"]);
    assert!(get(&found, "macro-document").reason.contains("\"Preisliste.XLS\""));
    assert_eq!(action(found), Action::Junk);
    assert!(run_with("", fixture!("macro-xls.eml"), Direction::Outgoing).is_empty());
    let everywhere = run_with(
        "macro_directions = [\"inbound\", \"internal\"]",
        fixture!("macro-xls.eml"),
        Direction::Internal,
    );
    assert_eq!(tags(&everywhere), ["macro-document"]);
}

#[test]
fn tnef_members_are_checked_like_any_attachment() {
    let found = run(fixture!("tnef-exe.eml"));
    assert_eq!(tags(&found), ["blocked-extension"]);
    assert_eq!(
        get(&found, "blocked-extension").reason,
        "blocked file type: \"winmail.dat\" → \"Update Installer.exe\": extension .exe is blocked"
    );
    assert!(run(fixture!("clean-tnef.eml")).is_empty());
}

#[test]
fn a_damaged_tnef_is_unscannable_and_what_it_held_is_still_checked() {
    let found = run(fixture!("tnef-truncated.eml"));
    assert_eq!(tags(&found), ["blocked-extension", "unscannable"]);
    assert!(
        get(&found, "unscannable")
            .reason
            .contains("\"winmail.dat\": truncated TNEF stream")
    );
}

#[test]
fn gzip_reveals_the_stored_name() {
    let found = run(fixture!("gzip-exe.eml"));
    assert_eq!(tags(&found), ["blocked-extension", "double-extension"]);
    assert!(
        get(&found, "blocked-extension")
            .reason
            .contains("\"statement.gz\" → \"statement.pdf.exe\"")
    );
}

#[test]
fn attached_messages_are_searched_and_deep_nesting_is_reported() {
    let found = run(fixture!("attached-message-exe.eml"));
    assert_eq!(tags(&found), ["blocked-extension"]);
    assert!(
        get(&found, "blocked-extension")
            .reason
            .contains("\"Fwd: documents\" → \"setup.exe\"")
    );
    let found = run(fixture!("deep-messages.eml"));
    assert_eq!(tags(&found), ["nesting-too-deep"]);
    assert!(
        get(&found, "nesting-too-deep")
            .reason
            .contains("attached messages are nested 8 levels deep (limit 5)")
    );
}

#[test]
fn clean_look_alikes_are_not_flagged() {
    for name in [
        "clean-pdf.eml",
        "clean-docx.eml",
        "clean-zip.eml",
        "clean-images.eml",
        "clean-tnef.eml",
        "calendar-invite.eml",
        "report-final.eml",
        "signed.eml",
        "text-only.eml",
    ] {
        let raw = FIXTURES.iter().find(|(n, _)| *n == name).unwrap().1;
        for direction in [Direction::Inbound, Direction::Outgoing, Direction::Internal] {
            let found = run_with("", raw, direction);
            assert!(found.is_empty(), "{name} ({direction:?}) flagged: {found:#?}");
        }
    }
}

#[test]
fn the_clean_fixtures_really_contain_what_they_claim() {
    // Guards the negative tests: each clean look-alike must carry the thing it resembles.
    let listed = |raw: &[u8]| -> Vec<(String, String)> {
        with_input(raw, "a@b.example", Direction::Inbound, |input| {
            input
                .view
                .attachments
                .iter()
                .map(|a| (a.name.clone().unwrap_or_default(), a.declared_type.clone()))
                .collect()
        })
    };
    let names = |raw| listed(raw).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(fixture!("clean-pdf.eml")), ["Übersicht März.PDF", "statement"]);
    assert_eq!(names(fixture!("report-final.eml")), ["report.final.pdf"]);
    assert_eq!(names(fixture!("clean-zip.eml")), ["Contracts.zip"]);
    assert_eq!(
        names(fixture!("clean-tnef.eml")),
        ["winmail.dat", "Minutes 2024-03-14.pdf", "Order.docx"]
    );
    assert!(names(fixture!("signed.eml")).contains(&"smime.p7s".to_string()));
    assert!(names(fixture!("calendar-invite.eml")).contains(&"invite.ics".to_string()));
    assert_eq!(names(fixture!("clean-images.eml")), ["logo.png", "IMG_2041.JPG"]);
    assert!(listed(fixture!("text-only.eml")).is_empty());
}

#[test]
fn the_blocked_list_is_configurable() {
    let raw = fixture!("blocked-exe.eml");
    assert!(run_with("allowed_extensions = [\"EXE\"]", raw, Direction::Inbound).is_empty());
    assert!(run_with("blocked_extensions = [\"js\"]", raw, Direction::Inbound).is_empty());
    let found = run_with(
        "blocked_extensions = []\nextra_blocked_extensions = [\".pdf\"]",
        fixture!("report-final.eml"),
        Direction::Inbound,
    );
    assert!(
        get(&found, "blocked-extension")
            .reason
            .contains("\"report.final.pdf\": extension .pdf is blocked")
    );
    let found = run_with("extra_blocked_extensions = [\"7z\"]", raw, Direction::Inbound);
    assert_eq!(tags(&found), ["blocked-extension"]);
}

#[test]
fn scores_and_forced_actions_are_configurable_and_zero_disables() {
    let raw = fixture!("blocked-exe.eml");
    let found = run_with(
        "score_blocked_extension = 25\nforce_blocked_extension = \"reject\"",
        raw,
        Direction::Inbound,
    );
    assert_eq!((found[0].score, found[0].force), (25.0, Some(Action::Reject)));
    let found = run_with(
        "score_blocked_extension = 0\nforce_blocked_extension = \"none\"",
        raw,
        Direction::Inbound,
    );
    assert!(found.is_empty());
}

#[test]
fn thousands_of_matches_make_one_finding_that_counts_them() {
    let names: Vec<String> = (0..1500).map(|i| format!("part{i:04}.js")).collect();
    let members: Vec<_> = names
        .iter()
        .map(|n| crate::scan::formats::archive::testzip::stored(n, b"x"))
        .collect();
    let zip = crate::scan::formats::archive::testzip::build(&members);
    let config = Config::read(&Section::root(
        &toml::Table::new(),
        &crate::config::reader::Problems::default(),
    ));
    let att = crate::scan::inventory::Attachment {
        name: Some("parts.zip".into()),
        declared_type: "application/zip".into(),
        data: std::borrow::Cow::Owned(zip),
        depth: 0,
        source: crate::scan::inventory::Source::Mime,
        container: None,
    };
    let mut hits = Hits::default();
    inspect::attachment(&config, &att, true, &mut hits);
    let found = findings(&config, hits);
    assert_eq!(tags(&found), ["blocked-extension"]);
    assert!(found[0].reason.ends_with("(and 1495 more)"), "{}", found[0].reason);
    assert_eq!(found[0].score, 10.0);
}

/// The findings for one attachment `name` holding `data`.
fn inspect_one(name: &str, data: Vec<u8>) -> Vec<Finding> {
    let config = Config::read(&Section::root(
        &toml::Table::new(),
        &crate::config::reader::Problems::default(),
    ));
    let att = crate::scan::inventory::Attachment {
        name: Some(name.into()),
        declared_type: "application/octet-stream".into(),
        data: std::borrow::Cow::Owned(data),
        depth: 0,
        source: crate::scan::inventory::Source::Mime,
        container: None,
    };
    let mut hits = Hits::default();
    inspect::attachment(&config, &att, true, &mut hits);
    findings(&config, hits)
}

#[test]
fn an_archive_whose_declared_size_lies_is_a_bomb() {
    // Found by the attack run (docs/attack-run.md): a 1 MiB entry declaring
    // 1 KiB (inflating to 1 GiB) and a gzip whose ISIZE wrapped past 4 GiB
    // were delivered without a finding. Here: 16 KiB that cannot compress,
    // declared as 1 KiB.
    let mut state: u32 = 0x1234_5678;
    let noise: Vec<u8> = (0..16 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    let honest = crate::scan::formats::archive::testzip::build(&[crate::scan::formats::archive::testzip::stored(
        "notes.txt",
        &noise,
    )]);
    assert_eq!(tags(&inspect_one("notes.zip", honest.clone())), Vec::<&str>::new());
    let mut liar = honest;
    let central = liar.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    liar[22..26].copy_from_slice(&1024u32.to_le_bytes());
    liar[central + 24..central + 28].copy_from_slice(&1024u32.to_le_bytes());
    let found = inspect_one("notes.zip", liar);
    assert_eq!(tags(&found), ["archive-bomb"]);
    assert!(
        found[0]
            .reason
            .contains("declares 1024 bytes but holds 16384 compressed"),
        "{}",
        found[0].reason
    );

    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    gz.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(&noise, 6));
    gz.extend_from_slice(&crc32fast::hash(&noise).to_le_bytes());
    let isize_at = gz.len();
    gz.extend_from_slice(&(noise.len() as u32).to_le_bytes());
    assert_eq!(tags(&inspect_one("notes.txt.gz", gz.clone())), Vec::<&str>::new());
    gz[isize_at..].copy_from_slice(&1024u32.to_le_bytes());
    let found = inspect_one("notes.txt.gz", gz);
    assert_eq!(tags(&found), ["archive-bomb"]);
    assert!(found[0].reason.contains("its size lies"), "{}", found[0].reason);
}

#[test]
fn bad_options_are_reported_with_their_path() {
    let errors = build_errors(
        "attachments",
        "blocked_extensions = [\"exe\", \"a/b\"]\nforce_archive_bomb = \"bounce\"\nmax_depth = 0\n\
         macro_directions = [\"sideways\"]\nscore_blocked_extensions = 3\n",
    );
    assert_eq!(
        errors,
        [
            "blocked_extensions[1]: expected a file extension such as \"exe\", found \"a/b\"",
            "force_archive_bomb: must be one of \"none\", \"junk\", \"quarantine\", \"reject\", found \"bounce\"",
            "macro_directions[0]: must be one of \"inbound\", \"outgoing\", \"internal\", found \"sideways\"",
            "max_depth: must be between 1 and 8, found 0",
            "score_blocked_extensions: unknown key",
        ]
    );
}

/// Feeds every prefix of every attachment of every fixture, and randomly
/// corrupted copies, to the full walk (zip, gzip, tar, cab, CFB, TNEF).
#[test]
fn no_prefix_or_corruption_of_any_fixture_panics() {
    let config = Config::read(&Section::root(
        &toml::Table::new(),
        &crate::config::reader::Problems::default(),
    ));
    let mut seed = 0x9e37_79b9_u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let mut fed = 0usize;
    for (name, raw) in FIXTURES {
        let blobs: Vec<(Option<String>, String, Vec<u8>)> =
            with_input(raw, "a@b.example", Direction::Inbound, |input| {
                input
                    .view
                    .attachments
                    .iter()
                    .map(|a| (a.name.clone(), a.declared_type.clone(), a.data.to_vec()))
                    .collect()
            });
        for (att_name, declared, data) in blobs {
            // The bomb's single entry is the same bytes over and over: its head and its
            // directory at the end are what matter, the middle is skipped to keep the test quick.
            let len = data.len();
            let prefixes: Vec<usize> = if *name == "zip-bomb.eml" {
                (0..=600.min(len)).chain(len.saturating_sub(600)..=len).collect()
            } else {
                (0..=len).collect()
            };
            let mut feed = |bytes: &[u8]| {
                let att = crate::scan::inventory::Attachment {
                    name: att_name.clone(),
                    declared_type: declared.clone(),
                    data: std::borrow::Cow::Borrowed(bytes),
                    depth: 0,
                    source: crate::scan::inventory::Source::Mime,
                    container: None,
                };
                let mut hits = Hits::default();
                inspect::attachment(&config, &att, true, &mut hits);
                assert!(hits.rules().count() <= Rule::ALL.len());
                let _ = crate::scan::formats::tnef::decode(bytes, 64);
                fed += 1;
            };
            for n in prefixes {
                feed(&data[..n]);
            }
            for _ in 0..200 {
                let mut bad = data.clone();
                if bad.is_empty() {
                    break;
                }
                for _ in 0..1 + next() % 4 {
                    let at = next() as usize % bad.len();
                    bad[at] = next() as u8;
                }
                feed(&bad);
            }
        }
    }
    assert!(fed > 10_000, "only {fed} inputs fed");
}
