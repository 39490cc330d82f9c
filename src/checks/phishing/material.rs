//! What the phishing detectors look at, gathered once per message as plain
//! values from the message's view (`scan::view`: its attachments, body text
//! and links) and, for the pages, their markup as written (scripts, event
//! handlers and meta refreshes are what the detectors read, which the view's
//! visible text leaves out): the sender as displayed, the subject, the visible text, the HTML
//! documents (bodies and attached `.htm`/`.html`/`.shtml`/`.svg`, attached
//! messages included), the link hosts of the bodies, and the encrypted
//! archives. The detectors take these, not the parsed message, so that the
//! shared view of a message can replace this gathering without touching them.
//!
//! Bounded: text capped at [`MAX_TEXT`], each document at [`MAX_DOCUMENT`],
//! at most [`MAX_DOCUMENTS`] documents.

use std::borrow::Cow;

use mail_parser::{Address, Message, MimeHeaders, PartType};

use crate::checks::urls;
use crate::message::envelope::domain_of;
use crate::scan::brands;
use crate::scan::check::ScanInput;
use crate::scan::formats::archive;
use crate::scan::inventory::Attachment;

/// Characters of visible text kept.
const MAX_TEXT: usize = 256 * 1024;
/// Bytes of one HTML document looked at.
const MAX_DOCUMENT: usize = 2 * 1024 * 1024;
/// HTML documents looked at per message.
const MAX_DOCUMENTS: usize = 32;
/// Link hosts kept.
const MAX_LINKS: usize = 200;
/// Entries of an archive listed to see whether it is encrypted.
const MAX_ARCHIVE_ENTRIES: usize = 256;

/// An HTML or SVG document of the message.
pub(crate) struct Document<'a> {
    /// The attachment's name; `None` for a body.
    pub(crate) name: Option<String>,
    /// An attachment (a file the reader opens in a browser), not a body.
    pub(crate) attached: bool,
    pub(crate) html: Cow<'a, str>,
}

/// The message as the detectors see it.
pub(crate) struct Material<'a> {
    pub(crate) subject: String,
    /// Display name of the first From address.
    pub(crate) from_name: String,
    /// Registrable domain of the From address (lower case).
    pub(crate) from_org: Option<String>,
    /// Visible text of the bodies, of attached messages and of calendar invitations.
    pub(crate) text: String,
    pub(crate) documents: Vec<Document<'a>>,
    /// Hosts of the links in the bodies (lower case).
    pub(crate) link_hosts: Vec<String>,
    /// Names of attached archives with encrypted entries.
    pub(crate) encrypted_archives: Vec<String>,
    /// The number of attachments.
    pub(crate) attachments: usize,
}

impl<'a> Material<'a> {
    pub(crate) fn gather(input: &ScanInput<'a>) -> Material<'a> {
        let view = input.view;
        let message: &Message = view.message;
        let (from_name, from_address) = first_from(message);
        let mut text = view.body_text(MAX_TEXT);
        let mut documents = Vec::new();
        body_documents(message, 0, &mut documents);
        let mut encrypted_archives = Vec::new();
        for att in &view.attachments {
            if is_document(att) && documents.len() < MAX_DOCUMENTS {
                let data = &att.data[..att.data.len().min(MAX_DOCUMENT)];
                documents.push(Document {
                    name: att.name.clone(),
                    attached: true,
                    html: String::from_utf8_lossy(data),
                });
            }
            if urls::is_calendar(att) && text.len() < MAX_TEXT {
                let data = &att.data[..att.data.len().min(MAX_TEXT)];
                text.push('\n');
                text.push_str(&urls::unfold_calendar(&String::from_utf8_lossy(data)));
            }
            if att.data.starts_with(b"PK\x03\x04")
                && let Ok(listing) = archive::list_zip(&att.data, MAX_ARCHIVE_ENTRIES)
                && listing.entries.iter().any(|e| e.encrypted)
            {
                encrypted_archives.push(att.name.clone().unwrap_or_else(|| "archive".into()));
            }
        }
        let link_hosts = urls::hosts(view, MAX_LINKS);
        Material {
            subject: message.subject().unwrap_or_default().to_string(),
            from_name,
            from_org: domain_of(&from_address).map(|d| brands::organisation(&d)),
            text,
            documents,
            link_hosts,
            encrypted_archives,
            attachments: view.attachments.len(),
        }
    }
}

/// Display name and address of the first From mailbox.
fn first_from(message: &Message) -> (String, String) {
    let first = match message.from() {
        Some(Address::List(list)) => list.first(),
        Some(Address::Group(groups)) => groups.iter().flat_map(|g| g.addresses.iter()).next(),
        None => None,
    };
    match first {
        Some(a) => (
            a.name.as_deref().unwrap_or_default().to_string(),
            a.address.as_deref().unwrap_or_default().to_string(),
        ),
        None => (String::new(), String::new()),
    }
}

/// HTML bodies of the message and of attached messages.
fn body_documents<'a>(message: &'a Message<'a>, depth: u32, out: &mut Vec<Document<'a>>) {
    for part in &message.parts {
        if out.len() >= MAX_DOCUMENTS {
            return;
        }
        match &part.body {
            PartType::Html(html) if part.attachment_name().is_none() => out.push(Document {
                name: None,
                attached: false,
                html: Cow::Borrowed(crate::scan::view::links::truncate(html, MAX_DOCUMENT)),
            }),
            PartType::Message(nested) if depth < 3 => body_documents(nested, depth + 1, out),
            _ => {}
        }
    }
}

/// An attachment a browser would open as a page: by name, declared type,
/// or content.
fn is_document(att: &Attachment) -> bool {
    let name = att.name.as_deref().unwrap_or_default().to_ascii_lowercase();
    let by_name = [".htm", ".html", ".shtml", ".xhtml", ".svg", ".hta", ".mht", ".mhtml"]
        .iter()
        .any(|ext| name.ends_with(ext));
    let by_type = matches!(
        att.declared_type.as_str(),
        "text/html" | "image/svg+xml" | "application/xhtml+xml"
    );
    let head = &att.data[..att.data.len().min(512)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    let by_content = head.trim_start().starts_with("<!doctype html")
        || head.trim_start().starts_with("<html")
        || head.contains("<svg")
        || head.trim_start().starts_with("<script");
    by_name || by_type || by_content
}
