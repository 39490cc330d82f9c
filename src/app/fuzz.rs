//! Entry points for the fuzz targets in `fuzz/` (a workspace of its own that
//! sees only the library's public items): each hands arbitrary bytes to one
//! parser of hostile input the way the gateway does, and asserts what must
//! hold for any input. They live in `app` because `app` may reach every
//! stage; nothing in the gateway calls them.
//!
//! Every function must stay cheap and bounded for any input (a fuzzer calls
//! it millions of times) and panic only when an invariant is broken.

use std::path::Path;

use crate::delivery::dsn;
use crate::message::envelope::{DsnReturn, Envelope, Mailbox, Recipient};
use crate::scan::formats::archive::{self, stream};
use crate::scan::formats::{cfb, rar, tnef};
use crate::scan::view::{View, html};
use crate::smtp::reply::Reply;

/// Output cap when an archive entry is decompressed.
const INFLATE_LIMIT: usize = 64 * 1024;

/// A message read into its view; HTML read on its own.
pub fn view(data: &[u8]) {
    if let Some(message) = mail_parser::MessageParser::default().parse(data) {
        let view = View::new(&message, false);
        assert!(view.links.len() <= crate::scan::view::MAX_LINKS);
        assert!(view.parts.len() <= crate::scan::view::MAX_TEXT_PARTS);
        for part in &view.parts {
            assert!(part.text.len() <= crate::scan::view::MAX_PART_BYTES);
        }
        let _ = view.body_text(1024);
    }
    let text = String::from_utf8_lossy(data);
    let doc = html::read(&text, 4096);
    assert!(doc.text.len() <= 4096);
    for link in &doc.links {
        assert!(!link.url.is_empty() && link.url.len() <= crate::scan::view::links::MAX_URL_LEN);
    }
}

/// Zip, gzip, tar, cabinet, RAR and 7-Zip readers, each on the same bytes.
pub fn archives(data: &[u8]) {
    if let Ok(listing) = archive::list_zip(data, 256) {
        assert!(listing.entries.len() <= 256);
        for entry in listing.entries.iter().take(16) {
            if let Ok(out) = entry.read(INFLATE_LIMIT) {
                assert!(out.data.len() <= INFLATE_LIMIT);
            }
        }
    }
    if let Ok(member) = stream::gzip(data)
        && let Ok(out) = member.read(INFLATE_LIMIT)
    {
        assert!(out.data.len() <= INFLATE_LIMIT);
    }
    if let Ok(members) = stream::list_tar(data, 256) {
        assert!(members.len() <= 256);
    }
    if let Ok((files, _)) = stream::list_cab(data, 256) {
        assert!(files.len() <= 256);
    }
    if let Ok(listing) = rar::list_rar(data, 256) {
        assert!(listing.entries.len() <= 256);
    }
    let _ = rar::sevenzip_encrypted(data);
    let _ = archive::inflate(data, INFLATE_LIMIT).map(|out| assert!(out.data.len() <= INFLATE_LIMIT));
}

/// The TNEF decoder, members of embedded messages decoded in turn.
pub fn tnef(data: &[u8]) {
    if let Ok(decoded) = tnef::decode(data, 64) {
        assert!(decoded.members.len() <= 64);
        for member in &decoded.members {
            if tnef::is_tnef(member.data) {
                let _ = tnef::decode(member.data, 64);
            }
        }
    }
}

/// The compound-file (OLE2) directory walk.
pub fn cfb(data: &[u8]) {
    let _ = cfb::inspect(data);
}

/// A DSN built for a message with these bytes: it always parses as MIME
/// and names the failed recipient.
pub fn dsn(data: &[u8]) {
    let ret_full = data.get(1).is_some_and(|b| b & 1 == 1);
    let envelope = Envelope {
        mail_from: Mailbox::parse("sender@example.org").expect("a valid mailbox"),
        recipients: vec![Recipient {
            address: Mailbox::parse("rcpt@example.com").expect("a valid mailbox"),
            orcpt: None,
            notify: None,
        }],
        ret: Some(if data.first().is_some_and(|b| b & 1 == 1) {
            DsnReturn::Full
        } else {
            DsnReturn::Hdrs
        }),
        ..Envelope::default()
    };
    let failed = [dsn::Failed {
        index: 0,
        reply: Reply::new(550, (5, 1, 1), "no such user"),
        remote: Some("mx.example.com".into()),
        expired: false,
    }];
    let out = dsn::build("gw.example.net", &envelope, data, &failed, 0, 0, ret_full).expect("a DSN is wanted");
    let parsed = mail_parser::MessageParser::default()
        .parse(&out[..])
        .expect("our DSN parses");
    assert!(String::from_utf8_lossy(parsed.raw_message()).contains("rcpt@example.com"));
}

/// The configuration reader, then the checks' own options, on any text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok((config, _problems)) = crate::config::Config::parse_collecting(text, Path::new("/fuzz/exogate.toml")) {
        let _ = crate::checks::policies(&config);
    }
}
