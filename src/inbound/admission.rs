//! Who may hand us mail, and which tenant a message belongs to (DESIGN §4).
//!
//! Three layers, each refusal carrying a reason for the log:
//! 1. the client IP must be in `admission.allow` (checked at connect);
//! 2. TLS before MAIL, and optionally a verified client certificate with an
//!    allowed name (checked by the session);
//! 3. every recipient must belong to a tenant, or the sender must (outgoing
//!    mail); at end of data the tenant is confirmed from the headers EXO
//!    stamps: the portal in `X-CLOUD-SEC-AV-Info` and, where the tenant has a
//!    `tenant_id`, exactly one `X-MS-Exchange-CrossTenant-Id` equal to it.
//!
//! EXO's IP ranges are shared by every Microsoft customer, so the IP list alone
//! never admits a message: layer 3 is what keeps this from being an open relay.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::tenant::{Tenant, TenantIndex};
use crate::message::envelope::{Direction, Envelope, Mailbox};
use crate::message::headers;
use crate::smtp::reply::Reply;

/// A refusal: what the client is told and why (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reply: Reply,
    pub(crate) reason: String,
}

impl Refusal {
    fn new(reply: Reply, reason: impl Into<String>) -> Refusal {
        Refusal {
            reply,
            reason: reason.into(),
        }
    }
}

pub(crate) fn ip_allowed(ip: IpAddr, allow: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 @ IpAddr::V4(_) => v4,
    };
    allow.iter().any(|net| net.contains(&ip))
}

/// Decides whether `rcpt` may be accepted in a transaction from `mail_from`
/// that is already bound to `current` (if any). Tenants are found by the
/// typed mailbox's domain: an `@` quoted inside a local part never counts.
pub(crate) fn admit_recipient(
    index: &TenantIndex,
    mail_from: &Mailbox,
    rcpt: &Mailbox,
    current: Option<&Arc<Tenant>>,
) -> Result<Arc<Tenant>, Refusal> {
    let by_rcpt = index.by_address(rcpt);
    let by_sender = index.by_address(mail_from);
    let tenant = match (by_rcpt, by_sender, current) {
        // While bound to a tenant, a recipient of that tenant, or any recipient
        // of that tenant's outgoing mail, stays in the transaction.
        (Some(t), _, Some(cur)) if Arc::ptr_eq(t, cur) => t,
        (None, Some(s), Some(cur)) if Arc::ptr_eq(s, cur) => s,
        (Some(t), _, None) => t,
        (None, Some(s), None) => s,
        (Some(t), _, Some(cur)) => {
            return Err(Refusal::new(
                Reply::OTHER_TENANT,
                format!(
                    "recipient <{rcpt}> belongs to tenant {} but the transaction to {}",
                    t.portal, cur.portal
                ),
            ));
        }
        (None, Some(s), Some(cur)) => {
            return Err(Refusal::new(
                Reply::OTHER_TENANT,
                format!(
                    "sender tenant {} differs from the transaction's tenant {}",
                    s.portal, cur.portal
                ),
            ));
        }
        (None, None, _) => {
            return Err(Refusal::new(
                Reply::RELAY_DENIED,
                format!(
                    "neither recipient <{rcpt}> nor sender <{mail_from}> is in a configured tenant's domains (relay attempt)"
                ),
            ));
        }
    };
    Ok(tenant.clone())
}

/// Admits `rcpt` like [`admit_recipient`], and a monitor tenant's journal
/// address (exactly that address; its domain is not the tenant's). `journal_tx`:
/// whether the transaction so far holds journal recipients (`None`: no
/// recipient yet). Journal reports and other mail never share a
/// transaction (a 452 makes the client send the rest separately), so a
/// report is never relayed with mail and mail is never held as a report.
/// Returns the tenant and whether `rcpt` is a journal address.
pub(crate) fn admit(
    index: &TenantIndex,
    mail_from: &Mailbox,
    rcpt: &Mailbox,
    current: Option<&Arc<Tenant>>,
    journal_tx: Option<bool>,
) -> Result<(Arc<Tenant>, bool), Refusal> {
    let journal = index.by_journal_address(rcpt);
    if let Some(was_journal) = journal_tx
        && was_journal != journal.is_some()
    {
        return Err(Refusal::new(
            Reply::JOURNAL_SEPARATELY,
            format!("recipient <{rcpt}> would mix journal reports and other mail in one transaction"),
        ));
    }
    match (journal, current) {
        (Some(t), Some(cur)) if !Arc::ptr_eq(t, cur) => Err(Refusal::new(
            Reply::OTHER_TENANT,
            format!(
                "journal address <{rcpt}> belongs to tenant {} but the transaction to {}",
                t.portal, cur.portal
            ),
        )),
        (Some(t), _) => Ok((t.clone(), true)),
        (None, _) => admit_recipient(index, mail_from, rcpt, current).map(|t| (t, false)),
    }
}

/// Confirms at end of data that a journal report belongs to the monitor
/// tenant whose journal address received it: where the tenant has a
/// `tenant_id`, the report's own header must carry exactly one
/// `X-MS-Exchange-CrossTenant-Id` equal to it (as for inline mail; EXO stamps
/// the report with the tenant that journaled it, not the original's sender's).
pub(crate) fn confirm_journal(tenant: &Arc<Tenant>, raw: &[u8]) -> Result<(), Refusal> {
    check_tenant_id(tenant, raw)
}

/// The direction of a message and whether it was read from the header or inferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attribution {
    pub(crate) direction: Direction,
    pub(crate) inferred: bool,
}

/// Confirms at end of data which tenant the message belongs to, and its
/// direction. `tenant` is the one the recipients were admitted for;
/// `sender_tenant` the one owning the sender's domain, if any: mail from one
/// protected tenant to another arrives as the sender's outgoing mail
/// (`<sender portal>,office365_emails,sent,inline`) and belongs to the sender.
pub(crate) fn confirm(
    tenant: &Arc<Tenant>,
    sender_tenant: Option<&Arc<Tenant>>,
    envelope: &Envelope,
    raw: &[u8],
) -> Result<(Arc<Tenant>, Attribution), Refusal> {
    let refuse = |reason: String| Err(Refusal::new(Reply::NOT_AUTHORIZED, reason));

    let infos = headers::values(raw, "X-CLOUD-SEC-AV-Info");
    let mut stated: Option<(String, Direction)> = None;
    for info in &infos {
        let Some((portal, direction)) = parse_info(info) else {
            return refuse(format!("unrecognised X-CLOUD-SEC-AV-Info value \"{}\"", truncate(info)));
        };
        match &stated {
            Some((p, d)) if !p.eq_ignore_ascii_case(portal) || *d != direction => {
                return refuse("X-CLOUD-SEC-AV-Info headers disagree".into());
            }
            _ => stated = Some((portal.to_string(), direction)),
        }
    }
    let (owner, attribution) = match stated {
        None => (
            tenant.clone(),
            Attribution {
                direction: infer_direction(tenant, envelope),
                inferred: true,
            },
        ),
        Some((portal, direction)) => {
            let owner = if portal.eq_ignore_ascii_case(&tenant.portal) {
                tenant.clone()
            } else {
                match sender_tenant {
                    Some(s) if direction == Direction::Outgoing && portal.eq_ignore_ascii_case(&s.portal) => s.clone(),
                    _ => {
                        return refuse(format!(
                            "X-CLOUD-SEC-AV-Info names portal \"{}\" but the recipients belong to tenant {}",
                            truncate(&portal),
                            tenant.portal
                        ));
                    }
                }
            };
            (
                owner,
                Attribution {
                    direction,
                    inferred: false,
                },
            )
        }
    };

    check_tenant_id(&owner, raw)?;
    Ok((owner, attribution))
}

/// Where `owner` has a `tenant_id`: exactly one `X-MS-Exchange-CrossTenant-Id`
/// in `raw`'s header, equal to it.
fn check_tenant_id(owner: &Tenant, raw: &[u8]) -> Result<(), Refusal> {
    let refuse = |reason: String| Err(Refusal::new(Reply::NOT_AUTHORIZED, reason));
    if let Some(expected) = &owner.tenant_id {
        let ids = headers::values(raw, "X-MS-Exchange-CrossTenant-Id");
        match ids.as_slice() {
            [] => {
                return refuse(format!(
                    "no X-MS-Exchange-CrossTenant-Id header; tenant {} requires {expected}",
                    owner.portal
                ));
            }
            [one] => {
                let got = one.trim_matches(|c| c == '{' || c == '}').to_lowercase();
                if &got != expected {
                    return refuse(format!(
                        "X-MS-Exchange-CrossTenant-Id {got} is not tenant {}'s id {expected}",
                        owner.portal
                    ));
                }
            }
            many => {
                return refuse(format!(
                    "{} X-MS-Exchange-CrossTenant-Id headers (exactly one is required)",
                    many.len()
                ));
            }
        }
    }
    Ok(())
}

/// `<portal>,office365_emails,<direction...>`.
pub fn parse_info(value: &str) -> Option<(&str, Direction)> {
    let mut parts = value.splitn(3, ',');
    let portal = parts.next()?.trim();
    let kind = parts.next()?.trim();
    let rest: String = parts
        .next()?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    if portal.is_empty() || !kind.eq_ignore_ascii_case("office365_emails") {
        return None;
    }
    let direction = match rest.as_str() {
        "inline" => Direction::Inbound,
        "sent,inline" => Direction::Outgoing,
        "internal,inline" => Direction::Internal,
        _ => return None,
    };
    Some((portal, direction))
}

/// Direction from the domains when EXO did not say.
pub(crate) fn infer_direction(tenant: &Tenant, envelope: &Envelope) -> Direction {
    let sender_internal = tenant.owns_address(&envelope.mail_from);
    let all_rcpts_internal = envelope.recipients.iter().all(|r| tenant.owns_address(&r.address));
    match (sender_internal, all_rcpts_internal) {
        (true, true) => Direction::Internal,
        (true, false) => Direction::Outgoing,
        (false, _) => Direction::Inbound,
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tenant::Destination;
    use crate::message::envelope::Recipient;

    fn tenant(portal: &str, domain: &str, id: Option<&str>) -> Tenant {
        Tenant {
            tenant_id: id.map(str::to_string),
            ..Tenant::new(portal, &[domain], Destination::Mx)
        }
    }

    fn index() -> TenantIndex {
        TenantIndex::new(vec![
            tenant("contoso", "contoso.com", None),
            tenant("fabrikam", "fabrikam.com", None),
        ])
    }

    fn mb(s: &str) -> Mailbox {
        Mailbox::parse(s).unwrap()
    }

    fn env(from: &str, rcpts: &[&str]) -> Envelope {
        Envelope {
            mail_from: mb(from),
            recipients: rcpts
                .iter()
                .map(|r| Recipient {
                    address: mb(r),
                    orcpt: None,
                    notify: None,
                })
                .collect(),
            ..Envelope::default()
        }
    }

    #[test]
    fn recipients_are_admitted_only_for_tenants() {
        let idx = index();
        let t = admit_recipient(&idx, &mb("x@internet.example"), &mb("u@CONTOSO.com"), None).unwrap();
        assert_eq!(t.portal, "contoso");
        let t = admit_recipient(&idx, &mb("u@contoso.com"), &mb("x@internet.example"), None).unwrap();
        assert_eq!(t.portal, "contoso", "outgoing mail is admitted by its sender");
        let e = admit_recipient(&idx, &mb("a@internet.example"), &mb("b@elsewhere.example"), None).unwrap_err();
        assert_eq!(e.reply, Reply::RELAY_DENIED);
        let e = admit_recipient(&idx, &mb(""), &mb("b@elsewhere.example"), None).unwrap_err();
        assert_eq!(e.reply, Reply::RELAY_DENIED, "the null sender cannot open a relay");
    }

    #[test]
    fn the_journal_address_alone_is_admitted_and_never_mixed() {
        use crate::config::tenant::TenantMode;
        let monitor = Tenant {
            mode: TenantMode::Monitor,
            journal_address: Some("journal@journal.gw.example".into()),
            ..tenant("contoso", "contoso.com", None)
        };
        let idx = TenantIndex::new(vec![monitor, tenant("fabrikam", "fabrikam.com", None)]);
        let (t, journal) = admit(&idx, &Mailbox::null(), &mb("JOURNAL@journal.gw.example"), None, None).unwrap();
        assert_eq!((t.portal.as_str(), journal), ("contoso", true));
        let e = admit(&idx, &Mailbox::null(), &mb("other@journal.gw.example"), None, None).unwrap_err();
        assert_eq!(e.reply, Reply::RELAY_DENIED, "only the address, not its domain");
        let e = admit(&idx, &Mailbox::null(), &mb("u@contoso.com"), Some(&t), Some(true)).unwrap_err();
        assert_eq!(e.reply, Reply::JOURNAL_SEPARATELY);
        let e = admit(
            &idx,
            &Mailbox::null(),
            &mb("journal@journal.gw.example"),
            Some(&t),
            Some(false),
        )
        .unwrap_err();
        assert_eq!(e.reply, Reply::JOURNAL_SEPARATELY);
        let fabrikam = idx.by_portal("fabrikam").unwrap().clone();
        let e = admit(
            &idx,
            &Mailbox::null(),
            &mb("journal@journal.gw.example"),
            Some(&fabrikam),
            None,
        )
        .unwrap_err();
        assert_eq!(e.reply, Reply::OTHER_TENANT);
        // An inline tenant's journal_address is not an address we accept.
        let inline = Tenant {
            journal_address: Some("j@journal.gw.example".into()),
            ..tenant("northwind", "northwind.com", None)
        };
        let idx = TenantIndex::new(vec![inline]);
        assert!(admit(&idx, &Mailbox::null(), &mb("j@journal.gw.example"), None, None).is_err());
    }

    #[test]
    fn a_quoted_at_never_changes_the_domain() {
        let idx = index();
        // The tenant is the domain after the local part, whatever the local part quotes.
        let t = admit_recipient(
            &idx,
            &mb("x@internet.example"),
            &mb("\"victim@evil.com> ORCPT=rfc822;x\"@contoso.com"),
            None,
        )
        .unwrap();
        assert_eq!(t.portal, "contoso");
        let e = admit_recipient(
            &idx,
            &mb("x@internet.example"),
            &mb("\"u@contoso.com\"@evil.example"),
            None,
        );
        assert_eq!(e.unwrap_err().reply, Reply::RELAY_DENIED);
        let e = admit_recipient(&idx, &mb("\"a@contoso.com\"@evil.example"), &mb("b@evil.example"), None);
        assert_eq!(e.unwrap_err().reply, Reply::RELAY_DENIED, "nor the sender's");
    }

    #[test]
    fn one_transaction_never_mixes_tenants() {
        let idx = index();
        let contoso = idx.by_portal("contoso").unwrap().clone();
        let e = admit_recipient(&idx, &mb("x@internet.example"), &mb("u@fabrikam.com"), Some(&contoso)).unwrap_err();
        assert_eq!(e.reply, Reply::OTHER_TENANT);
        assert!(admit_recipient(&idx, &mb("x@internet.example"), &mb("v@contoso.com"), Some(&contoso)).is_ok());
    }

    #[test]
    fn info_header_decides_the_direction_and_portal() {
        let t = Arc::new(tenant("contoso", "contoso.com", None));
        let e = env("x@internet.example", &["u@contoso.com"]);
        let attribution = |raw: &[u8]| confirm(&t, None, &e, raw).map(|(_, a)| a);
        let raw = b"X-CLOUD-SEC-AV-Info: contoso,office365_emails,sent,inline\r\n\r\n";
        assert_eq!(
            attribution(raw).unwrap(),
            Attribution {
                direction: Direction::Outgoing,
                inferred: false
            }
        );
        let raw = b"X-CLOUD-SEC-AV-Info: fabrikam,office365_emails,inline\r\n\r\n";
        assert_eq!(attribution(raw).unwrap_err().reply, Reply::NOT_AUTHORIZED);
        assert!(attribution(b"X-CLOUD-SEC-AV-Info: contoso,office365_emails,bogus\r\n\r\n").is_err());
        let raw = b"X-CLOUD-SEC-AV-Info: contoso,office365_emails,inline\r\nX-CLOUD-SEC-AV-Info: contoso,office365_emails,sent,inline\r\n\r\n";
        assert!(attribution(raw).is_err(), "disagreeing Info headers");
        assert_eq!(
            attribution(b"Subject: none\r\n\r\n").unwrap(),
            Attribution {
                direction: Direction::Inbound,
                inferred: true
            }
        );
    }

    #[test]
    fn mail_between_two_tenants_belongs_to_the_sender_when_exo_says_sent() {
        let contoso = Arc::new(tenant("contoso", "contoso.com", None));
        let fabrikam = Arc::new(tenant("fabrikam", "fabrikam.com", None));
        // Admitted for the recipient's tenant (fabrikam), sent by a contoso user.
        let e = env("alice@contoso.com", &["bob@fabrikam.com"]);
        let sent = b"X-CLOUD-SEC-AV-Info: contoso,office365_emails,sent,inline\r\n\r\n";
        let (owner, a) = confirm(&fabrikam, Some(&contoso), &e, sent).unwrap();
        assert_eq!((owner.portal.as_str(), a.direction), ("contoso", Direction::Outgoing));
        let inbound = b"X-CLOUD-SEC-AV-Info: fabrikam,office365_emails,inline\r\n\r\n";
        let (owner, _) = confirm(&fabrikam, Some(&contoso), &e, inbound).unwrap();
        assert_eq!(owner.portal, "fabrikam", "fabrikam's inbound copy stays fabrikam's");
        // The sender's portal with an inbound direction is not the sender's mail.
        let odd = b"X-CLOUD-SEC-AV-Info: contoso,office365_emails,inline\r\n\r\n";
        assert!(confirm(&fabrikam, Some(&contoso), &e, odd).is_err());
    }

    #[test]
    fn tenant_id_must_appear_exactly_once_and_match() {
        let id = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let t = Arc::new(tenant("contoso", "contoso.com", Some(id)));
        let e = env("x@internet.example", &["u@contoso.com"]);
        let check = |raw: &[u8]| confirm(&t, None, &e, raw);
        let ok = format!("X-MS-Exchange-CrossTenant-Id: {}\r\n\r\n", id.to_uppercase());
        assert!(check(ok.as_bytes()).is_ok());
        let twice = format!("X-MS-Exchange-CrossTenant-Id: {id}\r\nX-MS-Exchange-CrossTenant-Id: {id}\r\n\r\n");
        assert!(
            check(twice.as_bytes())
                .unwrap_err()
                .reason
                .contains("2 X-MS-Exchange-CrossTenant-Id")
        );
        let wrong = "X-MS-Exchange-CrossTenant-Id: 00000000-0000-0000-0000-000000000000\r\n\r\n";
        assert!(check(wrong.as_bytes()).is_err());
        assert!(check(b"\r\n").is_err());
    }

    #[test]
    fn inferred_directions() {
        let t = tenant("contoso", "contoso.com", None);
        assert_eq!(
            infer_direction(&t, &env("a@contoso.com", &["b@contoso.com"])),
            Direction::Internal
        );
        assert_eq!(
            infer_direction(&t, &env("a@contoso.com", &["b@x.example"])),
            Direction::Outgoing
        );
        assert_eq!(infer_direction(&t, &env("", &["b@contoso.com"])), Direction::Inbound);
    }

    #[test]
    fn allow_list_handles_mapped_v6() {
        let allow: Vec<IpNet> = vec!["40.92.0.0/15".parse().unwrap()];
        assert!(ip_allowed("40.93.1.1".parse().unwrap(), &allow));
        assert!(ip_allowed("::ffff:40.92.0.9".parse().unwrap(), &allow));
        assert!(!ip_allowed("40.94.0.1".parse().unwrap(), &allow));
    }
}
