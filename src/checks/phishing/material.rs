//! What the phishing detectors look at, gathered once per message as plain
//! values from the message's view (`scan::view`, the one reading of its
//! parts): the sender as displayed, the subject, the visible text (of the
//! bodies, attached messages included, and of calendar invitations), the
//! HTML documents (bodies and attached pages, `.htm`/`.html`/`.svg`/…, as the
//! view recognises them) with their markup as written (scripts, event
//! handlers and meta refreshes are what the detectors read, which the visible
//! text leaves out) and the forms the view's tokenizer found in them, the
//! link hosts, and the encrypted archives.
//!
//! Bounded: text capped at [`MAX_TEXT`], each document at [`MAX_DOCUMENT`],
//! at most [`MAX_DOCUMENTS`] documents.

use mail_parser::Message;

use crate::checks::urls;
use crate::message::envelope::domain_of;
use crate::scan::brands;
use crate::scan::check::ScanInput;
use crate::scan::formats::archive;
use crate::scan::view::links::truncate;
use crate::scan::view::{Form, Origin, calendar};

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
    /// The markup as written, at most [`MAX_DOCUMENT`] bytes.
    pub(crate) html: &'a str,
    /// Its forms as a browser reads them (attributes decoded).
    pub(crate) forms: &'a [Form],
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
        let from = message.from().and_then(|a| a.first());
        let from_name = from.and_then(|a| a.name()).unwrap_or_default().to_string();
        let from_address = from.and_then(|a| a.address()).unwrap_or_default();
        let mut text = view.body_text(MAX_TEXT);
        // Attached pages first: a named HTML body part is an attachment too
        // (the view reads it as both), and is judged once, as the file a
        // reader opens.
        let (attached, bodies): (Vec<_>, Vec<_>) = view
            .parts
            .iter()
            .filter(|p| p.html)
            .partition(|p| matches!(p.origin, Origin::Attachment(_)));
        let mut documents: Vec<Document<'a>> = Vec::new();
        for part in attached.into_iter().chain(bodies) {
            if documents.len() >= MAX_DOCUMENTS {
                break;
            }
            let html = truncate(&part.markup, MAX_DOCUMENT);
            let (name, attached) = match part.origin {
                Origin::Attachment(i) => (view.attachments.get(i).and_then(|a| a.name.clone()), true),
                Origin::Body => (None, false),
            };
            if !attached && documents.iter().any(|d| d.html == html) {
                continue;
            }
            documents.push(Document {
                name,
                attached,
                html,
                forms: &part.forms,
            });
        }
        let mut encrypted_archives = Vec::new();
        for (i, att) in view.attachments.iter().enumerate() {
            if calendar::is_calendar(att)
                && text.len() < MAX_TEXT
                && let Some(read) = view.attachment_text(i)
            {
                text.push('\n');
                text.push_str(truncate(&read.text, MAX_TEXT.saturating_sub(text.len())));
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
            from_org: domain_of(from_address).map(|d| brands::organisation(&d)),
            text,
            documents,
            link_hosts,
            encrypted_archives,
            attachments: view.attachments.len(),
        }
    }
}
