//! Exchange Web Services: `FindItem` (Shallow, in the Inbox and Junk Email
//! folders) restricted to `message:InternetMessageId`, then `MoveItem` or
//! `DeleteItem` (`SoftDelete` / `HardDelete`) for the copies found. Every
//! request names the mailbox twice, as app-only EWS requires: the
//! `ExchangeImpersonation` SOAP header (`ConnectingSID/PrimarySmtpAddress`)
//! and the `X-AnchorMailbox` HTTP header. `401`/`403` (EWS turned off for the
//! tenant or mailbox, app not allowed) are refusals; `ErrorServerBusy` is
//! throttling (`http.rs`).
//!
//! Why Inbox and Junk Email only: the mailbox-wide AllItems search folder
//! needs a FindFolder round trip and does not exist everywhere; delivered
//! mail lands in one of these two unless a user rule moved it.

use quick_xml::events::Event;

use crate::config::remediation::RemediationAction;
use crate::remediate::{CallError, Job, Outcome, Remediator};

const M_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
const T_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const WELL_KNOWN: [&str; 8] = [
    "inbox",
    "junkemail",
    "deleteditems",
    "archive",
    "drafts",
    "sentitems",
    "outbox",
    "clutter",
];

pub(crate) async fn remediate(
    r: &Remediator,
    mailbox: &str,
    job: &Job,
    request_ids: &mut Vec<String>,
) -> Result<Outcome, CallError> {
    let find = format!(
        "<m:FindItem Traversal=\"Shallow\"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>\
         <m:IndexedPageItemView MaxEntriesReturned=\"50\" Offset=\"0\" BasePoint=\"Beginning\"/>\
         <m:Restriction><t:IsEqualTo><t:FieldURI FieldURI=\"message:InternetMessageId\"/>\
         <t:FieldURIOrConstant><t:Constant Value=\"{}\"/></t:FieldURIOrConstant></t:IsEqualTo></m:Restriction>\
         <m:ParentFolderIds><t:DistinguishedFolderId Id=\"inbox\"/><t:DistinguishedFolderId Id=\"junkemail\"/></m:ParentFolderIds>\
         </m:FindItem>",
        xml_escape(&job.internet_message_id)
    );
    let found = call(r, mailbox, "FindItem", &find, request_ids).await?;
    if found.ids.is_empty() {
        return Ok(Outcome::NotFound);
    }
    let items: String = found
        .ids
        .iter()
        .map(|id| format!("<t:ItemId Id=\"{}\"/>", xml_escape(id)))
        .collect();
    let (op, body) = match job.action {
        RemediationAction::Move => {
            let folder = r.cfg.folder.clone().unwrap_or_else(|| "junkemail".into());
            let target = if WELL_KNOWN.contains(&folder.to_ascii_lowercase().as_str()) {
                format!(
                    "<t:DistinguishedFolderId Id=\"{}\"/>",
                    xml_escape(&folder.to_ascii_lowercase())
                )
            } else {
                format!("<t:FolderId Id=\"{}\"/>", xml_escape(&folder))
            };
            (
                "MoveItem",
                format!("<m:MoveItem><m:ToFolderId>{target}</m:ToFolderId><m:ItemIds>{items}</m:ItemIds></m:MoveItem>"),
            )
        }
        RemediationAction::SoftDelete | RemediationAction::Delete => {
            let kind = if job.action == RemediationAction::Delete {
                "HardDelete"
            } else {
                "SoftDelete"
            };
            (
                "DeleteItem",
                format!("<m:DeleteItem DeleteType=\"{kind}\"><m:ItemIds>{items}</m:ItemIds></m:DeleteItem>"),
            )
        }
    };
    let done = call(r, mailbox, op, &body, request_ids).await?;
    Ok(match job.action {
        RemediationAction::Move => Outcome::Moved {
            folder: r.cfg.folder.clone().unwrap_or_default(),
            count: done.successes,
        },
        _ => Outcome::Deleted { count: done.successes },
    })
}

/// What an EWS answer said.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) ids: Vec<String>,
    pub(crate) successes: usize,
    /// Response codes of `Error` messages (ErrorItemNotFound excepted).
    pub(crate) errors: Vec<String>,
}

async fn call(
    r: &Remediator,
    mailbox: &str,
    op: &str,
    body: &str,
    request_ids: &mut Vec<String>,
) -> Result<Parsed, CallError> {
    let envelope = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <soap:Envelope xmlns:soap=\"{SOAP_NS}\" xmlns:t=\"{T_NS}\" xmlns:m=\"{M_NS}\">\
         <soap:Header><t:RequestServerVersion Version=\"{}\"/>\
         <t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>\
         </soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>",
        xml_escape(&r.cfg.ews_version),
        xml_escape(mailbox)
    );
    let what = format!("ews.{op}");
    for round in 0..2 {
        let token = r.tokens.get(r).await?;
        let answer = r
            .http
            .send(&what, || {
                r.http
                    .client
                    .post(&r.cfg.ews_url)
                    .bearer_auth(&token)
                    .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
                    .header("SOAPAction", format!("\"{M_NS}/{op}\""))
                    .header("X-AnchorMailbox", mailbox)
                    .body(envelope.clone())
            })
            .await?;
        if let Some(id) = &answer.request_id {
            request_ids.push(id.clone());
        }
        match answer.status {
            200 => {
                let parsed = parse(&answer.body);
                if let Some(code) = parsed.errors.first() {
                    let reason = format!("{what}: {code}");
                    return Err(if code == "ErrorInternalServerError" || code == "ErrorTimeoutExpired" {
                        CallError::Temporary { reason, wait: None }
                    } else {
                        CallError::Permanent { reason }
                    });
                }
                return Ok(parsed);
            }
            401 if round == 0 => r.tokens.invalidate().await,
            401 | 403 => {
                return Err(CallError::Permanent {
                    reason: format!(
                        "{what}: HTTP {} (EWS not allowed for this app, tenant or mailbox)",
                        answer.status
                    ),
                });
            }
            s if s >= 500 => {
                let parsed = parse(&answer.body);
                let code = parsed.errors.first().cloned().unwrap_or_default();
                // A SOAP fault about the mailbox is final; the rest is the server's.
                return Err(if code == "ErrorNonExistentMailbox" || code == "ErrorAccessDenied" {
                    CallError::Permanent {
                        reason: format!("{what}: {code}"),
                    }
                } else {
                    CallError::Temporary {
                        reason: format!("{what}: HTTP {s} {code}").trim().to_string(),
                        wait: None,
                    }
                });
            }
            s => {
                let code = parse(&answer.body).errors.first().cloned().unwrap_or_default();
                return Err(CallError::Permanent {
                    reason: format!("{what}: HTTP {s} {code}").trim().to_string(),
                });
            }
        }
    }
    Err(CallError::Permanent {
        reason: format!("{what}: HTTP 401 with a fresh token"),
    })
}

/// Item ids, successful response messages and error codes of an answer (or
/// a SOAP fault's `ResponseCode`).
pub(crate) fn parse(body: &[u8]) -> Parsed {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut out = Parsed::default();
    let mut buf = Vec::new();
    let mut class_error = false;
    let mut in_code = false;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e) | Event::Empty(e)) => {
                let local = e.local_name();
                let name = local.as_ref();
                if name.ends_with(b"ResponseMessage") {
                    class_error = false;
                    for a in e.attributes().flatten() {
                        if a.key.local_name().as_ref() == b"ResponseClass" {
                            class_error = a.value.as_ref() == b"Error";
                            if a.value.as_ref() == b"Success" {
                                out.successes += 1;
                            }
                        }
                    }
                } else if name == b"ItemId" {
                    for a in e.attributes().flatten() {
                        if a.key.local_name().as_ref() == b"Id"
                            && let Ok(v) = a.unescape_value()
                        {
                            out.ids.push(v.into_owned());
                        }
                    }
                } else if name == b"ResponseCode" {
                    in_code = true;
                }
            }
            Ok(Event::Text(t)) if in_code => {
                let code = String::from_utf8_lossy(t.as_ref()).trim().to_string();
                if (class_error || code.starts_with("Error")) && code != "NoError" && code != "ErrorItemNotFound" {
                    out.errors.push(code);
                }
            }
            Ok(Event::End(_)) => in_code = false,
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
        buf.clear();
    }
    out
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_item_answer_and_fault() {
        let ok = br#"<s:Envelope xmlns:s="x"><s:Body><m:FindItemResponse xmlns:m="m" xmlns:t="t"><m:ResponseMessages><m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:RootFolder><t:Items><t:Message><t:ItemId Id="AAMk1" ChangeKey="C"/></t:Message></t:Items></m:RootFolder></m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse></s:Body></s:Envelope>"#;
        let p = parse(ok);
        assert_eq!((p.ids, p.successes, p.errors.len()), (vec!["AAMk1".to_string()], 1, 0));
        let fault = br#"<s:Envelope><s:Body><s:Fault><detail><e:ResponseCode xmlns:e="e">ErrorNonExistentMailbox</e:ResponseCode></detail></s:Fault></s:Body></s:Envelope>"#;
        assert_eq!(parse(fault).errors, vec!["ErrorNonExistentMailbox".to_string()]);
        assert_eq!(xml_escape("<a&\"b'>"), "&lt;a&amp;&quot;b&apos;&gt;");
    }
}
