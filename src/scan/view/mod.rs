//! The one view of a message that every check reads: the message parsed once
//! (mail-parser), its attachments inventoried once (MIME parts, parts of
//! attached messages, TNEF members, archive members: see
//! [`crate::scan::inventory`]), and each text and HTML part read once into
//! the text a reader sees and the links a reader can follow (HTML by one
//! tokenizer, [`html`]). The pipeline builds it before any check runs and
//! hands it to all of them in [`crate::scan::check::ScanInput`], so the URL
//! check, the content and DLP rules, the impersonation and phishing checks
//! can never disagree about what a message says or links to: a link one of
//! them missed because another reader saw the HTML differently would be an
//! evasion.
//!
//! Which parts are read: the body parts (text/plain and text/html, those of
//! attached messages included, down to [`inventory::MAX_DEPTH`]), and the
//! attachments that are text (declared `text/*`, JSON, XML, CSV …), calendar
//! invitations (read with their folded lines joined, [`calendar`]) or HTML
//! (declared or named HTML or SVG, or starting like an HTML or SVG document).
//! The links of body parts, of `text/*` attachments, of invitations and of
//! HTML attachments are listed; those of other text (a JSON or XML file) are
//! not, as their URLs are data rather than links. An HTML part keeps its
//! markup as read, for checks that judge what its visible text leaves out
//! (scripts, event handlers, meta refreshes).
//!
//! Invariants: one MIME walk per message; every part read is cut at
//! [`MAX_PART_BYTES`], at most [`MAX_TEXT_PARTS`] parts are read and
//! [`MAX_LINKS`] distinct links listed (the overflow is counted). Building a
//! view never fails and never panics: a part it cannot read as text is not a
//! text part. It must never fetch, run or render anything.

pub(crate) mod calendar;
pub(crate) mod html;
pub(crate) mod links;

use std::borrow::Cow;

use mail_parser::{Message, MimeHeaders, PartType};

use crate::scan::inventory::{self, Attachment};

pub use html::Form;
pub use links::{Link, LinkKind};

/// Bytes of one text or HTML part that are read.
pub(crate) const MAX_PART_BYTES: usize = 4 * 1024 * 1024;
/// Text and HTML parts read per message, attachments included.
pub(crate) const MAX_TEXT_PARTS: usize = 512;
/// Distinct links listed per message (the `urls` check's `max_urls` is at most this).
pub(crate) const MAX_LINKS: usize = 100_000;
/// How deep attached messages are measured (mail-parser bounds the tree; this
/// only stops a pathological one from costing more).
const MAX_MEASURED_DEPTH: u32 = 64;

/// Where a text part comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A body part of the message or of an attached message.
    Body,
    /// The attachment at this index of [`View::attachments`].
    Attachment(usize),
}

/// One text or HTML part as a reader sees it.
#[derive(Debug)]
pub struct TextPart<'a> {
    pub origin: Origin,
    /// Read as HTML.
    pub html: bool,
    /// 0 for the message itself, +1 per attached message or container.
    pub depth: u32,
    /// The text a reader sees (for HTML: see [`html`]), at most [`MAX_PART_BYTES`].
    pub text: Cow<'a, str>,
    /// For HTML: the markup as read (at most [`MAX_PART_BYTES`]); empty for
    /// plain text. Borrowed from the message for a body part.
    pub markup: Cow<'a, str>,
    /// For HTML: its forms.
    pub forms: Vec<Form>,
}

/// The parsed message and what every check reads of it.
#[derive(Debug)]
pub struct View<'a> {
    pub message: &'a Message<'a>,
    /// Every attachment, flattened (see [`crate::scan::inventory`]).
    pub attachments: Vec<Attachment<'a>>,
    /// Text and HTML parts, body parts first.
    pub parts: Vec<TextPart<'a>>,
    /// The distinct links of the parts, in the order they appear.
    pub links: Vec<Link>,
    /// Links beyond [`MAX_LINKS`], not listed.
    pub links_overflow: usize,
    /// How deep attached messages are nested (0: none).
    pub nesting: u32,
}

impl<'a> View<'a> {
    /// Reads `message`. `truncated`: only its header was kept (the message was
    /// over the policy's scan limit), so there is nothing else to read.
    pub fn new(message: &'a Message<'a>, truncated: bool) -> View<'a> {
        let mut view = View {
            message,
            attachments: Vec::new(),
            parts: Vec::new(),
            links: Vec::new(),
            links_overflow: 0,
            nesting: 0,
        };
        if truncated {
            return view;
        }
        let mut list = links::LinkList::new(MAX_LINKS);
        let mut walk = Walk {
            view: &mut view,
            links: &mut list,
        };
        walk.message(message, 0, None);
        walk.attachments();
        view.links = list.links;
        view.links_overflow = list.overflow;
        view
    }

    /// The text of the body parts, joined by new lines, cut at `max` bytes
    /// on a character boundary.
    pub fn body_text(&self, max: usize) -> String {
        let mut out = String::new();
        for part in self.parts.iter().filter(|p| p.origin == Origin::Body) {
            let room = max.saturating_sub(out.len());
            if room == 0 {
                break;
            }
            out.push_str(links::truncate(&part.text, room));
            if out.len() < max {
                out.push('\n');
            }
        }
        out
    }

    /// The text part read from the attachment at `index`, if it was read.
    pub fn attachment_text(&self, index: usize) -> Option<&TextPart<'a>> {
        self.parts.iter().find(|p| p.origin == Origin::Attachment(index))
    }
}

struct Walk<'v, 'a> {
    view: &'v mut View<'a>,
    links: &'v mut links::LinkList,
}

impl<'a> Walk<'_, 'a> {
    /// The one MIME walk: body parts are read, attachments inventoried,
    /// attached messages descended into.
    fn message(&mut self, message: &'a Message<'a>, depth: u32, container: Option<String>) {
        self.view.nesting = self.view.nesting.max(depth);
        let is_body =
            |i: usize| u32::try_from(i).is_ok_and(|i| message.text_body.contains(&i) || message.html_body.contains(&i));
        for (i, part) in message.parts.iter().enumerate() {
            match &part.body {
                PartType::Multipart(_) => {}
                PartType::Message(nested) => {
                    if depth < MAX_MEASURED_DEPTH {
                        let name = nested
                            .subject()
                            .map_or_else(|| "attached message".into(), str::to_string);
                        self.message(nested, depth + 1, Some(name));
                    }
                }
                PartType::Text(_) | PartType::Html(_) | PartType::Binary(_) | PartType::InlineBinary(_) => {
                    if depth > inventory::MAX_DEPTH {
                        continue;
                    }
                    let body = is_body(i);
                    match &part.body {
                        PartType::Text(text) if body => {
                            self.plain(Origin::Body, depth, Cow::Borrowed(text.as_ref()), true);
                        }
                        PartType::Html(html) if body => self.html(Origin::Body, depth, Cow::Borrowed(html.as_ref())),
                        _ => {}
                    }
                    // A named body part (a .js sent as text/plain) is an attachment too.
                    if !body || part.attachment_name().is_some() {
                        let att = inventory::attachment(part, depth, container.clone());
                        inventory::push(att, &mut self.view.attachments);
                    }
                }
            }
        }
    }

    /// Reads the attachments that are text or HTML.
    fn attachments(&mut self) {
        for index in 0..self.view.attachments.len() {
            let Some(att) = self.view.attachments.get(index) else {
                break;
            };
            let Some(kind) = textual(att) else { continue };
            let depth = att.depth;
            let data: &[u8] = &att.data;
            let data = data.get(..MAX_PART_BYTES).unwrap_or(data);
            let text = String::from_utf8_lossy(data).into_owned();
            let origin = Origin::Attachment(index);
            match kind {
                Textual::Html => self.html(origin, depth, Cow::Owned(text)),
                Textual::Calendar => self.plain(origin, depth, Cow::Owned(calendar::unfold(&text)), true),
                Textual::Text { linked } => self.plain(origin, depth, Cow::Owned(text), linked),
            }
        }
    }

    fn room(&self) -> bool {
        self.view.parts.len() < MAX_TEXT_PARTS
    }

    fn plain(&mut self, origin: Origin, depth: u32, text: Cow<'a, str>, linked: bool) {
        if !self.room() {
            return;
        }
        let text = match text {
            Cow::Borrowed(t) => Cow::Borrowed(links::truncate(t, MAX_PART_BYTES)),
            Cow::Owned(t) => Cow::Owned(links::truncate(&t, MAX_PART_BYTES).to_string()),
        };
        if linked {
            links::text_urls(&text, |url| {
                self.links.push(Link {
                    url: url.to_string(),
                    written: url.to_string(),
                    text: None,
                    kind: LinkKind::Text,
                });
            });
        }
        self.view.parts.push(TextPart {
            origin,
            html: false,
            depth,
            text,
            markup: Cow::Borrowed(""),
            forms: Vec::new(),
        });
    }

    fn html(&mut self, origin: Origin, depth: u32, markup: Cow<'a, str>) {
        if !self.room() {
            return;
        }
        let markup = match markup {
            Cow::Borrowed(m) => Cow::Borrowed(links::truncate(m, MAX_PART_BYTES)),
            Cow::Owned(m) => Cow::Owned(links::truncate(&m, MAX_PART_BYTES).to_string()),
        };
        let doc = html::read(&markup, MAX_PART_BYTES);
        for link in doc.links {
            self.links.push(link);
        }
        self.view.parts.push(TextPart {
            origin,
            html: true,
            depth,
            text: Cow::Owned(doc.text),
            markup,
            forms: doc.forms,
        });
    }
}

enum Textual {
    Html,
    /// A calendar invitation: read unfolded, its URLs are links.
    Calendar,
    /// `linked`: its URLs are links (a `text/*` attachment), not data.
    Text {
        linked: bool,
    },
}

/// Media types that are text without saying `text/`.
const TEXT_TYPES: [&str; 6] = [
    "application/json",
    "application/xml",
    "application/csv",
    "application/x-csv",
    "application/rtf",
    "application/x-yaml",
];
const TEXT_EXTENSIONS: [&str; 12] = [
    "txt", "csv", "tsv", "json", "xml", "md", "log", "ics", "vcf", "rtf", "yaml", "yml",
];
const HTML_TYPES: [&str; 3] = ["text/html", "application/xhtml+xml", "image/svg+xml"];
const HTML_EXTENSIONS: [&str; 8] = ["htm", "html", "xhtml", "shtml", "mht", "mhtml", "svg", "hta"];

/// Whether an attachment is read as HTML, as text, or not at all.
fn textual(att: &Attachment) -> Option<Textual> {
    let ext = att
        .name
        .as_deref()
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let declared = att.declared_type.as_str();
    if HTML_TYPES.contains(&declared) || HTML_EXTENSIONS.contains(&ext.as_str()) || looks_like_html(&att.data) {
        return Some(Textual::Html);
    }
    if calendar::is_calendar(att) {
        return Some(Textual::Calendar);
    }
    if declared.starts_with("text/") {
        return Some(Textual::Text { linked: true });
    }
    (TEXT_TYPES.contains(&declared) || TEXT_EXTENSIONS.contains(&ext.as_str()))
        .then_some(Textual::Text { linked: false })
}

/// Bytes of an XML document searched for the `<svg` that makes it an SVG
/// image (after its declaration, comments and DOCTYPE).
const XML_PROLOG_BYTES: usize = 512;

/// Starts like an HTML or SVG document (after a byte-order mark and blanks),
/// or is an XML document whose root is `<svg>`: an SVG opens a browser
/// however it is named, and usually starts with an XML declaration.
fn looks_like_html(data: &[u8]) -> bool {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let start = data.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(data.len());
    let head = data.get(start..(start + 16).min(data.len())).unwrap_or_default();
    let starts = |p: &str| {
        head.len() >= p.len()
            && head
                .get(..p.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(p.as_bytes()))
    };
    if ["<!doctype html", "<html", "<svg", "<head", "<body", "<script"]
        .iter()
        .any(|p| starts(p))
    {
        return true;
    }
    let prolog = data
        .get(start..(start + XML_PROLOG_BYTES).min(data.len()))
        .unwrap_or_default();
    (starts("<?xml") || starts("<!doctype svg")) && prolog.windows(4).any(|w| w.eq_ignore_ascii_case(b"<svg"))
}

#[cfg(test)]
mod tests;
