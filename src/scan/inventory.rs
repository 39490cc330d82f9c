//! The attachment inventory: every decoded attachment of a message, flattened,
//! so that the attachment policy and the malware scanner look at the same list.
//!
//! Parts of attached messages (`message/rfc822`) are listed with their depth.
//! TNEF containers (`winmail.dat`, recognised by their signature, not their
//! name) stay in the list and their members follow them, one level deeper,
//! with the container's name; TNEF streams nested in embedded messages are
//! unpacked the same way up to [`MAX_DEPTH`]. Nothing here allocates a copy of
//! a part unless decoding requires it; the inventory borrows from the parsed
//! message (TNEF members are slices of their container).

use std::borrow::Cow;

use mail_parser::{MessagePart, MimeHeaders};

/// How deep the inventory descends into attached messages.
pub(crate) const MAX_DEPTH: u32 = 8;

/// Most members taken from TNEF containers, per message.
pub(crate) const MAX_TNEF_MEMBERS: usize = 1024;

/// Where an attachment was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A MIME part of the message (or of an attached message).
    Mime,
    /// A member of a TNEF (`winmail.dat`) container.
    Tnef,
}

#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    /// File name as declared (Content-Disposition filename or Content-Type name).
    pub name: Option<String>,
    /// Declared media type, lower case ("application/pdf"); empty when unknown.
    pub declared_type: String,
    /// Decoded contents.
    pub data: Cow<'a, [u8]>,
    /// 0 for a part of the message itself, +1 per attached message or container.
    pub depth: u32,
    pub source: Source,
    /// Name of the container it was found in (an attached message's subject or
    /// the TNEF file's name).
    pub container: Option<String>,
}

/// Adds `att`, followed by its members when it is a TNEF container.
pub(crate) fn push<'a>(att: Attachment<'a>, out: &mut Vec<Attachment<'a>>) {
    let tnef = match &att.data {
        Cow::Borrowed(data) if crate::scan::formats::tnef::is_tnef(data) => Some(*data),
        _ => None,
    };
    let container = att.name.clone().unwrap_or_else(|| "winmail.dat".into());
    let depth = att.depth;
    out.push(att);
    if let Some(data) = tnef {
        expand_tnef(data, container, depth + 1, out);
    }
}

fn expand_tnef<'a>(data: &'a [u8], container: String, depth: u32, out: &mut Vec<Attachment<'a>>) {
    let taken = out.iter().filter(|a| a.source == Source::Tnef).count();
    let room = MAX_TNEF_MEMBERS.saturating_sub(taken);
    if depth > MAX_DEPTH || room == 0 {
        return;
    }
    // A damaged stream still yields the members before the damage; the
    // attachment policy decodes the container again to report the damage.
    let Ok(tnef) = crate::scan::formats::tnef::decode(data, room) else {
        return;
    };
    for member in tnef.members {
        if member.name.is_none() && member.data.is_empty() {
            continue;
        }
        let nested = crate::scan::formats::tnef::is_tnef(member.data);
        let name = member.name.clone();
        out.push(Attachment {
            name: member.name,
            declared_type: member.mime_type.unwrap_or_else(|| "application/octet-stream".into()),
            data: Cow::Borrowed(member.data),
            depth,
            source: Source::Tnef,
            container: Some(container.clone()),
        });
        if nested {
            expand_tnef(
                member.data,
                name.unwrap_or_else(|| "embedded message".into()),
                depth + 1,
                out,
            );
        }
    }
}

pub(crate) fn attachment<'a>(part: &'a MessagePart<'a>, depth: u32, container: Option<String>) -> Attachment<'a> {
    let declared_type = part
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        })
        .unwrap_or_default()
        .to_lowercase();
    Attachment {
        name: part.attachment_name().map(str::to_string),
        declared_type,
        data: Cow::Borrowed(part.contents()),
        depth,
        source: Source::Mime,
        container,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn collect<'a>(message: &'a mail_parser::Message<'a>) -> Vec<Attachment<'a>> {
        crate::scan::view::View::new(message, false).attachments
    }

    #[test]
    fn lists_named_text_parts_and_binary_parts_but_not_the_body() {
        let raw = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nHello\r\n\
--b\r\nContent-Type: text/plain; name=run.js\r\nContent-Disposition: attachment; filename=run.js\r\n\r\nWScript.Echo(1)\r\n\
--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n\r\nJVBERi0=\r\n\
--b--\r\n";
        let message = MessageParser::default().parse(&raw[..]).unwrap();
        let list = collect(&message);
        let names: Vec<_> = list.iter().map(|a| a.name.clone().unwrap_or_default()).collect();
        assert_eq!(names, vec!["run.js", "a.pdf"]);
        assert_eq!(list[1].declared_type, "application/pdf");
        assert_eq!(&list[1].data[..], b"%PDF-");
    }

    #[test]
    fn descends_into_attached_messages() {
        let raw = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n\
--c\r\nContent-Type: text/plain\r\n\r\ninner body\r\n\
--c\r\nContent-Type: application/octet-stream; name=x.exe\r\n\r\nMZ\r\n--c--\r\n\
--b--\r\n";
        let message = MessageParser::default().parse(&raw[..]).unwrap();
        let list = collect(&message);
        let exe = list
            .iter()
            .find(|a| a.name.as_deref() == Some("x.exe"))
            .expect("nested attachment listed");
        assert_eq!(exe.depth, 1);
        assert_eq!(exe.container.as_deref(), Some("inner"));
    }

    #[test]
    fn tnef_members_follow_their_container() {
        let tnef = crate::scan::formats::tnef::testtnef::build(&[
            ("REPORT~1.PDF", Some("Report Q3.pdf"), b"%PDF-1.7"),
            ("SETUP.EXE", None, b"MZ\x90\0"),
        ]);
        let raw = [
            &b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--b\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n\r\n"[..],
            &tnef,
            b"\r\n--b--\r\n",
        ]
        .concat();
        let message = MessageParser::default().parse(&raw[..]).unwrap();
        let list = collect(&message);
        let summary: Vec<_> = list
            .iter()
            .map(|a| {
                (
                    a.name.clone().unwrap_or_default(),
                    a.depth,
                    a.source,
                    a.container.clone(),
                )
            })
            .collect();
        let dat = Some("winmail.dat".to_string());
        assert_eq!(
            summary,
            vec![
                ("winmail.dat".into(), 0, Source::Mime, None),
                ("Report Q3.pdf".into(), 1, Source::Tnef, dat.clone()),
                ("SETUP.EXE".into(), 1, Source::Tnef, dat),
            ]
        );
        assert_eq!(&list[2].data[..], b"MZ\x90\0");
    }
}
