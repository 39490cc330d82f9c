//! The view reads each part once: body text from text and HTML bodies (also
//! of attached messages), links from bodies and HTML or text attachments,
//! attachments inventoried, nesting measured; a truncated message has none.

use mail_parser::MessageParser;

use super::*;

const MIXED: &[u8] = b"From: a@example.org\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n\
--c\r\nContent-Type: text/plain\r\n\r\nPay at https://plain.example/x.\r\n\
--c\r\nContent-Type: text/html\r\n\r\n<p>Pay <a href=https://html.example/y>here</a></p>\r\n\
--c--\r\n\
--b\r\nContent-Type: application/octet-stream; name=invoice.htm\r\nContent-Disposition: attachment; filename=invoice.htm\r\n\r\n\
<form action=https://harvest.example/><input type=password></form>\r\n\
--b\r\nContent-Type: application/json; name=data.json\r\n\r\n{\"schema\": \"https://json.example/\"}\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\ninner www.inner.example\r\n\
--b--\r\n";

#[test]
fn parts_are_read_once_into_text_links_and_attachments() {
    let message = MessageParser::default().parse(MIXED).unwrap();
    let view = View::new(&message, false);
    assert_eq!(
        view.body_text(1 << 20),
        "Pay at https://plain.example/x.\nPay here\n\ninner www.inner.example\n"
    );
    let urls: Vec<(&str, LinkKind)> = view.links.iter().map(|l| (l.url.as_str(), l.kind)).collect();
    assert_eq!(
        urls,
        vec![
            ("https://plain.example/x", LinkKind::Text),
            ("https://html.example/y", LinkKind::Anchor),
            ("www.inner.example", LinkKind::Text),
            ("https://harvest.example/", LinkKind::Form),
        ],
        "the JSON attachment's URL is data, not a link"
    );
    let names: Vec<_> = view
        .attachments
        .iter()
        .map(|a| a.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["invoice.htm", "data.json"]);
    let htm = view.attachment_text(0).expect("the HTML attachment is read");
    assert!(htm.html);
    assert_eq!(
        htm.forms,
        vec![Form {
            action: Some("https://harvest.example/".into()),
            password: true
        }]
    );
    assert!(view.attachment_text(1).is_some_and(|p| p.text.contains("json.example")));
    assert_eq!(view.nesting, 1);
}

#[test]
fn body_text_is_cut_on_a_character_boundary() {
    let raw = "Content-Type: text/plain; charset=utf-8\r\n\r\néééé".as_bytes();
    let message = MessageParser::default().parse(raw).unwrap();
    let view = View::new(&message, false);
    assert_eq!(view.body_text(4), "éé");
    assert_eq!(view.body_text(5), "éé\n");
    assert_eq!(view.body_text(100), "éééé\n");
}

#[test]
fn a_truncated_message_has_only_its_header() {
    let message = MessageParser::default().parse(MIXED).unwrap();
    let view = View::new(&message, true);
    assert!(view.parts.is_empty() && view.links.is_empty() && view.attachments.is_empty());
    assert_eq!(view.message.subject(), Some("s"));
}

#[test]
fn an_unnamed_html_attachment_is_recognised_by_its_start() {
    assert!(looks_like_html(b"\xEF\xBB\xBF  <!DOCTYPE html><html>"));
    assert!(looks_like_html(b"<SVG xmlns="));
    assert!(!looks_like_html(b"%PDF-1.7"));
    assert!(!looks_like_html(b"<h"));
    // An SVG image usually opens with an XML declaration (and a comment or
    // DOCTYPE); a browser opens it whatever its name says.
    assert!(looks_like_html(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- Generator -->\n<svg xmlns=\"http://www.w3.org/2000/svg\">"
    ));
    assert!(looks_like_html(
        b"<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"\">\n<svg>"
    ));
    assert!(!looks_like_html(
        b"<?xml version=\"1.0\"?><invoice><total>3</total></invoice>"
    ));
}

/// A calendar invitation folds its lines at 75 octets, splitting a URL; it is
/// read as the client shows it, so its links are whole (and listed even when
/// it comes as `application/octet-stream`), and its text is joined.
#[test]
fn an_invitation_is_read_with_its_lines_joined() {
    let raw = b"From: a@example.org\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSee the invitation.\r\n\
--b\r\nContent-Type: application/octet-stream; name=invite.ics\r\n\r\n\
BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDESCRIPTION:Join the call: https://meet.evil.exa\r\n mple/j/1?pwd=2\\nVerify your acc\r\n ount first\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n\
--b--\r\n";
    let message = MessageParser::default().parse(&raw[..]).unwrap();
    let view = View::new(&message, false);
    let urls: Vec<&str> = view.links.iter().map(|l| l.url.as_str()).collect();
    assert_eq!(urls, ["https://meet.evil.example/j/1?pwd=2"]);
    let ics = view.attachment_text(0).expect("the invitation is read");
    assert!(
        ics.text
            .contains("Join the call: https://meet.evil.example/j/1?pwd=2\nVerify your account first"),
        "{}",
        ics.text
    );
}

/// An HTML part keeps its markup (scripts and handlers included) for the
/// checks that judge them; a plain part has none.
#[test]
fn html_parts_keep_their_markup() {
    let message = MessageParser::default().parse(MIXED).unwrap();
    let view = View::new(&message, false);
    let body_html = view.parts.iter().find(|p| p.origin == Origin::Body && p.html).unwrap();
    assert_eq!(body_html.markup, "<p>Pay <a href=https://html.example/y>here</a></p>");
    assert!(
        matches!(body_html.markup, Cow::Borrowed(_)),
        "a body's markup is the message's"
    );
    let htm = view.attachment_text(0).unwrap();
    assert!(
        htm.markup.starts_with("<form action=https://harvest.example/>"),
        "{}",
        htm.markup
    );
    assert!(view.parts.iter().filter(|p| !p.html).all(|p| p.markup.is_empty()));
}
