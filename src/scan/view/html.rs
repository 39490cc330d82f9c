//! HTML read once, by one tokenizer: html5gum, a WHATWG-conformant HTML5
//! tokenizer, so character references decode as a browser decodes them (the
//! whole named table, `&period;`, `&NewLine;`, the legacy names without `;`
//! and the attribute-value exceptions to them, numeric references without
//! `;`), attributes, comments, `<![CDATA[`, bogus comments and unquoted values
//! split where a browser splits them.
//!
//! A tokenizer alone does not know when the tree builder switches it into
//! raw text (`<script>`, `<style>`, `<textarea>` …): [`MailEmitter`] does
//! what the tree builder would for a document parsed with scripting
//! disabled, as mail clients and `DOMParser` do (so `<noscript>` holds
//! markup, and links in it count). Inside `<svg>` and `<math>` no element
//! switches it, `<![CDATA[` is a CDATA section, and an HTML element that
//! breaks out of foreign content ends it, as in the tree builder.
//!
//! What it produces, per document ([`HtmlDoc`]): the visible text (no
//! script, style, template, title or iframe contents; a new line after a
//! block, a space between cells; whitespace collapsed), the links of every
//! URL attribute with the text shown on each anchor (see
//! [`super::links`]), resolved against the first `<base href>` wherever it
//! stands, as browsers do; and the forms (where they post, whether they ask
//! for a password). A check that judges scripts reads the part's markup
//! (`TextPart::markup`).
//!
//! Invariants: the work is linear in the input (the tokenizer never
//! backtracks; every output is capped); no input makes it panic or fail.
//! What it must never do: run a script, load a resource, apply CSS.

use html5gum::{DefaultEmitter, Emitter, ForwardingEmitter, State, Token, Tokenizer};

use super::links::{self, Link, LinkKind, LinkList};

/// Elements after which the text on either side is not one word.
const BLOCK_ELEMENTS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "center",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "option",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tr",
    "ul",
];

/// Cells: separate words on one line.
const CELL_ELEMENTS: &[&str] = &["td", "th"];

/// Elements whose contents are never shown as text.
const HIDDEN_ELEMENTS: &[&str] = &["script", "style", "template", "title", "iframe", "noembed", "noframes"];

/// Attributes whose value is a URL a mail client may load or a reader follow,
/// besides an anchor's `href`.
const URL_ATTRIBUTES: &[(&str, LinkKind)] = &[
    ("href", LinkKind::Resource),
    ("src", LinkKind::Resource),
    ("background", LinkKind::Resource),
    ("poster", LinkKind::Resource),
    ("action", LinkKind::Form),
    ("formaction", LinkKind::Form),
];

/// HTML elements that end foreign (SVG, MathML) content when they start in it.
const BREAKOUT_ELEMENTS: &[&str] = &[
    "b",
    "big",
    "blockquote",
    "body",
    "br",
    "center",
    "code",
    "dd",
    "div",
    "dl",
    "dt",
    "em",
    "embed",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "hr",
    "i",
    "img",
    "li",
    "listing",
    "menu",
    "meta",
    "nobr",
    "ol",
    "p",
    "pre",
    "ruby",
    "s",
    "small",
    "span",
    "strong",
    "strike",
    "sub",
    "sup",
    "table",
    "tt",
    "u",
    "ul",
    "var",
];

/// Forms kept per document.
const MAX_FORMS: usize = 64;

/// A form of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// Where it posts, resolved like a link; `None` without an `action`
    /// (a browser posts to the document itself).
    pub action: Option<String>,
    /// It has an `<input type=password>`.
    pub password: bool,
}

/// What one HTML document shows and links to.
#[derive(Debug, Default)]
pub(crate) struct HtmlDoc {
    pub(crate) text: String,
    pub(crate) links: Vec<Link>,
    pub(crate) forms: Vec<Form>,
    /// The first `<base href>`, when it is an absolute URL.
    pub(crate) base: Option<String>,
}

/// The emitter html5gum reports to, with the tree builder's state switches
/// (see the module documentation). It wraps html5gum's own token emitter and
/// only watches tag names go by.
struct MailEmitter {
    inner: DefaultEmitter,
    name: Vec<u8>,
    start: bool,
    self_closing: bool,
    /// Open `<svg>`/`<math>` elements.
    foreign: u32,
}

impl ForwardingEmitter for MailEmitter {
    type Token = Token;

    fn inner(&mut self) -> &mut impl Emitter<Token = Token> {
        &mut self.inner
    }

    fn init_start_tag(&mut self) {
        Emitter::init_start_tag(&mut self.inner);
        self.name.clear();
        self.start = true;
        self.self_closing = false;
    }

    fn init_end_tag(&mut self) {
        Emitter::init_end_tag(&mut self.inner);
        self.name.clear();
        self.start = false;
    }

    fn push_tag_name(&mut self, s: &[u8]) {
        Emitter::push_tag_name(&mut self.inner, s);
        self.name.extend(s.iter().map(u8::to_ascii_lowercase));
    }

    fn set_self_closing(&mut self) {
        Emitter::set_self_closing(&mut self.inner);
        self.self_closing = true;
    }

    fn emit_current_tag(&mut self) -> Option<State> {
        // With automatic switching off, the inner emitter only queues the token.
        let _ = Emitter::emit_current_tag(&mut self.inner);
        let name = self.name.as_slice();
        if !self.start {
            if self.foreign > 0 && matches!(name, b"svg" | b"math") {
                self.foreign -= 1;
            }
            return None;
        }
        if self.foreign > 0 {
            if BREAKOUT_ELEMENTS.iter().any(|b| b.as_bytes() == name) {
                self.foreign = 0;
            } else {
                if matches!(name, b"svg" | b"math") && !self.self_closing {
                    self.foreign += 1;
                }
                return None;
            }
        }
        let next = match name {
            b"svg" | b"math" => {
                if !self.self_closing {
                    self.foreign = 1;
                }
                None
            }
            b"textarea" | b"title" => Some(State::RcData),
            b"script" => Some(State::ScriptData),
            b"style" | b"xmp" | b"iframe" | b"noembed" | b"noframes" => Some(State::RawText),
            b"plaintext" => Some(State::PlainText),
            _ => None,
        };
        if next.is_some() {
            Emitter::init_string(&mut self.inner);
        }
        next
    }

    fn adjusted_current_node_present_but_not_in_html_namespace(&mut self) -> bool {
        self.foreign > 0
    }
}

/// A link as written, before the base URL is known.
struct Written {
    value: String,
    text: Option<String>,
    kind: LinkKind,
}

/// The text being built, whitespace collapsed, capped.
struct Text {
    out: String,
    max: usize,
}

impl Text {
    fn push_str(&mut self, s: &str) {
        for c in s.chars() {
            if self.out.len() + 4 > self.max {
                return;
            }
            if c.is_whitespace() {
                self.space(' ');
            } else {
                self.out.push(c);
            }
        }
    }

    /// Collapses whitespace: a new line wins over a space already written.
    fn space(&mut self, c: char) {
        if self.out.is_empty() {
            return;
        }
        if self.out.ends_with(['\n', ' ']) {
            if c == '\n' && self.out.ends_with(' ') {
                self.out.pop();
                self.out.push('\n');
            }
        } else if self.out.len() < self.max {
            self.out.push(c);
        }
    }
}

/// The open `<a>` elements, kept as the tree builder keeps them in its list
/// of active formatting elements: a new `<a>` closes the one open since the
/// last marker (a table cell, caption, `object` …), so an anchor opened
/// outside a table stays open around the links in its cells, and its text
/// includes theirs, as `textContent` does.
#[derive(Default)]
struct Anchors {
    open: Vec<OpenAnchor>,
    /// Open markers; `true` for a table cell, which a new cell, row or the
    /// table's end closes without an end tag.
    markers: Vec<bool>,
}

struct OpenAnchor {
    /// `None` for an `<a>` without `href` (it still closes and is closed).
    href: Option<String>,
    text: String,
    markers: usize,
}

/// Anchors open at once (each holds its own copy of the text).
const MAX_OPEN_ANCHORS: usize = 32;

impl Anchors {
    fn text(&mut self, s: &str) {
        for a in &mut self.open {
            if a.text.len() < links::MAX_ANCHOR_TEXT * 4 {
                a.text.push_str(s);
            }
        }
    }

    fn close_top(&mut self, out: &mut Vec<Written>) {
        if let Some(a) = self.open.pop()
            && let Some(href) = a.href
        {
            out.push(Written {
                value: href,
                text: Some(links::anchor_text(&a.text)),
                kind: LinkKind::Anchor,
            });
        }
    }

    fn start(&mut self, href: Option<String>, out: &mut Vec<Written>) {
        if self.open.last().is_some_and(|a| a.markers == self.markers.len()) {
            self.close_top(out);
        }
        if self.open.len() >= MAX_OPEN_ANCHORS {
            self.close_top(out);
        }
        self.open.push(OpenAnchor {
            href,
            text: String::new(),
            markers: self.markers.len(),
        });
    }

    fn end(&mut self, out: &mut Vec<Written>) {
        if self.open.last().is_some_and(|a| a.markers == self.markers.len()) {
            self.close_top(out);
        }
    }

    /// Closes the innermost marker and the anchors opened inside it.
    fn pop_marker(&mut self, out: &mut Vec<Written>) {
        self.markers.pop();
        while self.open.last().is_some_and(|a| a.markers > self.markers.len()) {
            self.close_top(out);
        }
    }

    /// A start or end tag that opens or closes markers.
    fn tag(&mut self, name: &str, start: bool, out: &mut Vec<Written>) {
        let cell = matches!(name, "td" | "th");
        let other = matches!(name, "caption" | "applet" | "marquee" | "object" | "template");
        let ends_cells = matches!(name, "tr" | "tbody" | "thead" | "tfoot" | "table") || (cell && start);
        if ends_cells {
            while self.markers.last() == Some(&true) {
                self.pop_marker(out);
            }
        }
        if start && (cell || other) {
            if self.markers.len() < MAX_OPEN_ANCHORS {
                self.markers.push(cell);
            }
        } else if !start && (cell || other) && self.markers.last() == Some(&cell) {
            self.pop_marker(out);
        } else if !start && name == "table" && self.markers.last() == Some(&false) {
            // A caption closes with its table.
            self.pop_marker(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Written>) {
        while !self.open.is_empty() {
            self.close_top(out);
        }
    }
}

/// Tokenizes `html` (at most `max` bytes of text are kept).
pub(crate) fn read(html: &str, max: usize) -> HtmlDoc {
    let emitter = MailEmitter {
        inner: DefaultEmitter::default(),
        name: Vec::new(),
        start: false,
        self_closing: false,
        foreign: 0,
    };
    let mut text = Text {
        out: String::new(),
        max,
    };
    let mut written: Vec<Written> = Vec::new();
    let mut doc = HtmlDoc::default();
    let mut forms: Vec<(Option<String>, bool)> = Vec::new();
    let mut base: Option<String> = None;
    let mut anchors = Anchors::default();
    // Open hidden elements (template nests; the raw-text ones end at their end tag).
    let mut hidden: Vec<String> = Vec::new();

    // The string reader cannot fail; a token that is an error is skipped.
    for token in Tokenizer::new_with_emitter(html, emitter).flatten() {
        match token {
            Token::String(s) => {
                let s = String::from_utf8_lossy(&s.value);
                if hidden.is_empty() {
                    text.push_str(&s);
                    anchors.text(&s);
                }
            }
            Token::StartTag(tag) => {
                let name = String::from_utf8_lossy(&tag.name).into_owned();
                let attr = |key: &str| {
                    tag.attributes
                        .get(key.as_bytes())
                        .map(|v| String::from_utf8_lossy(&v.value).into_owned())
                };
                if BLOCK_ELEMENTS.contains(&name.as_str()) {
                    text.space('\n');
                } else if CELL_ELEMENTS.contains(&name.as_str()) {
                    text.space(' ');
                }
                if BLOCK_ELEMENTS.contains(&name.as_str()) || CELL_ELEMENTS.contains(&name.as_str()) {
                    anchors.text(" ");
                }
                anchors.tag(&name, true, &mut written);
                match name.as_str() {
                    "a" => {
                        anchors.start(attr("href"), &mut written);
                    }
                    "area" => {
                        if let Some(href) = attr("href") {
                            written.push(Written {
                                value: href,
                                text: attr("alt").map(|alt| links::anchor_text(&alt)),
                                kind: LinkKind::Anchor,
                            });
                        }
                    }
                    "base" => {
                        if base.is_none()
                            && let Some(href) = attr("href")
                        {
                            base = Some(href);
                        }
                    }
                    "meta" => {
                        let refresh = attr("http-equiv").is_some_and(|v| v.trim().eq_ignore_ascii_case("refresh"));
                        if refresh
                            && let Some(content) = attr("content")
                            && let Some(target) = links::refresh_target(&content)
                        {
                            written.push(Written {
                                value: target.to_string(),
                                text: None,
                                kind: LinkKind::Refresh,
                            });
                        }
                    }
                    "form" if forms.len() < MAX_FORMS => forms.push((attr("action"), false)),
                    "input" => {
                        let password = attr("type").is_some_and(|t| t.trim().eq_ignore_ascii_case("password"));
                        if password {
                            if let Some(form) = forms.last_mut() {
                                form.1 = true;
                            } else {
                                forms.push((None, true));
                            }
                        }
                    }
                    _ => {}
                }
                if name != "a" && name != "area" && name != "base" {
                    for (key, kind) in URL_ATTRIBUTES {
                        if let Some(value) = attr(key) {
                            written.push(Written {
                                value,
                                text: None,
                                kind: *kind,
                            });
                        }
                    }
                }
                if HIDDEN_ELEMENTS.contains(&name.as_str()) {
                    hidden.push(name);
                }
            }
            Token::EndTag(tag) => {
                let name = String::from_utf8_lossy(&tag.name);
                if BLOCK_ELEMENTS.contains(&name.as_ref()) {
                    text.space('\n');
                } else if CELL_ELEMENTS.contains(&name.as_ref()) {
                    text.space(' ');
                }
                if name == "a" {
                    anchors.end(&mut written);
                }
                anchors.tag(&name, false, &mut written);
                if let Some(at) = hidden.iter().rposition(|h| *h == name) {
                    hidden.truncate(at);
                }
            }
            Token::Comment(_) | Token::Doctype(_) | Token::Error(_) => {}
        }
    }
    anchors.finish(&mut written);

    let base_url = base.as_deref().and_then(links::base_url);
    doc.base = base_url.as_ref().map(|u| u.to_string());
    let resolve = |value: &str| links::resolve(value, base_url.as_ref());
    let mut list = LinkList::new(usize::MAX);
    for w in written {
        list.push(Link {
            url: resolve(&w.value),
            written: links::truncate(w.value.trim(), links::MAX_URL_LEN).to_string(),
            text: w.text,
            kind: w.kind,
        });
    }
    links::text_urls(&text.out, |url| {
        list.push(Link {
            url: url.to_string(),
            written: url.to_string(),
            text: None,
            kind: LinkKind::Text,
        });
    });
    doc.links = list.links;
    doc.forms = forms
        .into_iter()
        .map(|(action, password)| Form {
            action: action.map(|a| resolve(&a)),
            password,
        })
        .collect();
    doc.text = text.out;
    doc
}

#[cfg(test)]
mod tests;
