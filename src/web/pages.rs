//! The HTML pages, rendered on the server with maud (which escapes every
//! inserted value unless told otherwise; nothing here tells it otherwise).
//!
//! Invariants: no script, no external asset, no inline style or handler
//! (the Content-Security-Policy in `routes` forbids them anyway); every form
//! that changes something carries the session's CSRF token; message content
//! only ever appears as escaped text inside `<pre>` or table cells.

use maud::{DOCTYPE, Markup, html};

use crate::config::web::Role;
use crate::store::time;
use crate::web::backend::{Page, Query, Record, Summary};
use crate::web::sessions::Session;
use crate::web::view::Content;

pub(crate) const STYLE: &str = include_str!("style.css");

fn layout(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · exogate" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header.top {
                    a.brand href="/search" { "exogate" }
                    span.subtitle { "quarantine & message history" }
                    @if let Some(s) = session {
                        nav {
                            a href="/search" { "Search" }
                            a href="/search?held=1" { "Held" }
                            span.who {
                                (s.account)
                                @match &s.role {
                                    Role::Admin => span.badge { "all tenants" },
                                    Role::Tenant(t) => span.badge { "tenant " (t) },
                                }
                            }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub(crate) fn login(problem: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            section.login {
                h1 { "Log in" }
                @if let Some(p) = problem { p.error role="alert" { (p) } }
                form method="post" action="/login" {
                    label { "Account" input name="name" autocomplete="username" required autofocus; }
                    label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                    button.primary type="submit" { "Log in" }
                }
            }
        },
    )
}

/// A page with one message and a way back (errors, outcomes, the digest pages).
pub(crate) fn notice(title: &str, session: Option<&Session>, text: &str, back: Option<(&str, &str)>) -> Markup {
    layout(
        title,
        session,
        html! {
            section.notice {
                h1 { (title) }
                p { (text) }
                @if let Some((href, label)) = back { p { a href=(href) { (label) } } }
            }
        },
    )
}

fn action_badge(action: &str) -> Markup {
    let class = match action {
        "reject" | "quarantine" => "bad",
        "junk" => "warn",
        _ => "ok",
    };
    html! { span class={"action " (class)} { (action) } }
}

fn opt(v: Option<&String>) -> &str {
    v.map_or("", String::as_str)
}

fn date_input(v: Option<i64>) -> String {
    v.map(|t| time::format(t).replace(' ', "T")[..16].to_string())
        .unwrap_or_default()
}

pub(crate) fn search(session: &Session, q: &Query, page: &Page, next: &str, prev: Option<&str>) -> Markup {
    let actions = ["", "deliver", "junk", "quarantine", "reject"];
    layout(
        "Search",
        Some(session),
        html! {
            h1 { "Messages" }
            form.search method="get" action="/search" {
                label { "Sender" input name="sender" value=(opt(q.sender.as_ref())) placeholder="a@example.org or @example.org"; }
                label { "Recipient" input name="recipient" value=(opt(q.recipient.as_ref())); }
                label { "Subject" input name="subject" value=(opt(q.subject.as_ref())); }
                label { "Message-ID" input name="message_id" value=(opt(q.message_id.as_ref())); }
                label { "Action"
                    select name="action" {
                        @for a in actions {
                            option value=(a) selected[q.action.as_deref().unwrap_or("") == a] {
                                @if a.is_empty() { "any" } @else { (a) }
                            }
                        }
                    }
                }
                label { "From (UTC)" input type="datetime-local" name="since" value=(date_input(q.since)); }
                label { "Until (UTC)" input type="datetime-local" name="until" value=(date_input(q.until)); }
                label.check { input type="checkbox" name="held" value="1" checked[q.held_only]; " held only" }
                button.primary type="submit" { "Search" }
            }
            @if page.items.is_empty() {
                p.empty { "No message matches." }
            } @else {
                table.results {
                    thead { tr {
                        th { "Received (UTC)" } th { "Tenant" } th { "Sender" } th { "Recipients" }
                        th { "Subject" } th { "Action" } th.num { "Score" } th { "State" }
                    } }
                    tbody {
                        @for m in &page.items { (row(m)) }
                    }
                }
            }
            nav.pager {
                @if let Some(p) = prev { a href=(p) { "← Newer" } }
                @if page.more { a href=(next) { "Older →" } }
            }
        },
    )
}

fn row(m: &Summary) -> Markup {
    let href = format!("/message/{}", m.id);
    html! {
        tr {
            td.nowrap { a href=(href) { (time::format(m.received)) } }
            td { (m.tenant) }
            td.addr { (m.sender) }
            td.addr { (m.recipients.join(", ")) }
            td.subject { a href=(href) { @if m.subject.is_empty() { "(no subject)" } @else { (m.subject) } } }
            td { (action_badge(&m.action)) }
            td.num { (format!("{:.1}", m.score)) }
            td { @if m.held { span.held { "held" } } }
        }
    }
}

/// Why the message got its action: the score, and the findings that forced
/// the action when it was forced (a forced quarantine usually scores 0, which
/// alone would read as "held for nothing").
fn verdict_reason(r: &Record) -> String {
    let score = format!("score {:.1}", r.summary.score);
    let forcing: Vec<String> = r
        .findings
        .iter()
        .filter(|f| f.force.is_some_and(|a| a.as_str() == r.summary.action))
        .map(|f| format!("{} ({})", f.check, f.tag))
        .collect();
    if forcing.is_empty() {
        score
    } else {
        format!("forced by {}; {score}", forcing.join(", "))
    }
}

pub(crate) fn message(session: &Session, r: &Record, content: Option<&Content>, outcome: Option<&str>) -> Markup {
    let m = &r.summary;
    let base = format!("/message/{}", m.id);
    html! {
        (layout("Message", Some(session), html! {
            p.back { a href="/search" { "← Search" } }
            h1.subject { @if m.subject.is_empty() { "(no subject)" } @else { (m.subject) } }
            @if let Some(o) = outcome { p.outcome role="status" { (o) } }
            div.grid {
                section.facts {
                    h2 { "Envelope" }
                    dl {
                        dt { "Queue id" } dd.mono { (m.id) }
                        dt { "Received" } dd { (time::format(m.received)) " UTC" }
                        dt { "Tenant" } dd { (m.tenant) " (" (m.direction) ")" }
                        dt { "Envelope sender" } dd.addr { (m.sender) }
                        dt { "Recipients" } dd.addr { (m.recipients.join(", ")) }
                        dt { "From" } dd.addr { (m.from) }
                        dt { "Message-ID" } dd.mono { (m.message_id) }
                        dt { "Size" } dd { (m.size) " bytes" }
                        dt { "Client" } dd { (r.client) }
                        dt { "TLS" } dd { (r.tls) }
                        dt { "Verdict" } dd { (action_badge(&m.action)) " " (verdict_reason(r)) }
                        @if !r.failures.is_empty() {
                            dt { "Checks without an answer" } dd { (r.failures.join("; ")) }
                        }
                        dt { "State" } dd { @if m.held { span.held { "held in quarantine" } } @else { "not held" } }
                    }
                }
                section.actions {
                    h2 { "Actions" }
                    @if m.held {
                        form method="post" action={(base) "/release"} {
                            input type="hidden" name="csrf" value=(session.csrf);
                            fieldset {
                                legend { "Release to" }
                                @for rcpt in &m.recipients {
                                    label.check { input type="checkbox" name="recipient" value=(rcpt) checked; " " (rcpt) }
                                }
                            }
                            button.primary type="submit" { "Release" }
                        }
                        form method="post" action={(base) "/release-and-allow"} {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" { "Release and allow sender" }
                        }
                        form method="post" action={(base) "/delete"} {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button.danger type="submit" { "Delete" }
                        }
                    }
                    form method="post" action={(base) "/not-spam"} {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" { "Report not spam" }
                    }
                }
            }
            section {
                h2 { "Findings" }
                @if r.findings.is_empty() { p.empty { "No check found anything." } } @else {
                    table { thead { tr { th { "Check" } th { "Tag" } th { "Reason" } th.num { "Score" } th { "Forces" } } }
                        tbody { @for f in &r.findings { tr {
                            td { (f.check) } td.mono { (f.tag) } td { (f.reason) } td.num { (format!("{:.1}", f.score)) }
                            td { @if let Some(a) = f.force { (action_badge(a.as_str())) } }
                        } } } }
                }
            }
            section {
                h2 { "Delivery" }
                @if r.deliveries.is_empty() { p.empty { "No delivery recorded." } } @else {
                    table { thead { tr { th { "Time (UTC)" } th { "Recipient" } th { "Outcome" } th { "Host" } th { "Reply" } } }
                        tbody { @for d in &r.deliveries { tr {
                            td.nowrap { (time::format(d.at)) } td.addr { (d.recipient) } td { (d.outcome) }
                            td.mono { (d.host) } td.mono { (d.reply) }
                        } } } }
                }
            }
            @if let Some(c) = content {
                section {
                    h2 { "Attachments" }
                    @if c.attachments.is_empty() { p.empty { "None." } } @else {
                        p.hint { "Listed only: attachments are never opened or served by this page." }
                        table { thead { tr { th { "Name" } th { "Type" } th.num { "Size" } th { "SHA-256" } } }
                            tbody { @for a in &c.attachments { tr {
                                td.addr { (a.name) } td.mono { (a.content_type) } td.num { (a.size) } td.mono.hash { (a.sha256) }
                            } } } }
                    }
                }
                section {
                    h2 { "Text" }
                    @if c.text.is_empty() { p.empty { "No text part." } } @else {
                        pre.body { (c.text) }
                        @if c.text_truncated { p.hint { "(truncated)" } }
                    }
                }
                section {
                    details {
                        summary { "Header as received" }
                        pre.header { (c.header) }
                    }
                }
            } @else {
                p.hint { "The message content is no longer held; only its record remains." }
            }
        }))
    }
}

/// The digest link's landing page: what would be released, and one button.
pub(crate) fn digest_confirm(token: &str, m: &Summary, recipient: &str) -> Markup {
    layout(
        "Release a held message",
        None,
        html! {
            section.notice {
                h1 { "Release a held message" }
                dl {
                    dt { "From" } dd.addr { (m.from) }
                    dt { "Subject" } dd { (m.subject) }
                    dt { "Received" } dd { (time::format(m.received)) " UTC" }
                    dt { "To" } dd.addr { (recipient) }
                }
                form method="post" action="/digest/release" {
                    input type="hidden" name="t" value=(token);
                    button.primary type="submit" { "Release to my mailbox" }
                }
            }
        },
    )
}
