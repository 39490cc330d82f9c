//! The end-user digest: per tenant with `[tenant.digest] enabled`, one mail
//! per recipient listing that recipient's held messages, each with a signed,
//! expiring, single-use release link (`links`) to the web listener.
//!
//! The mail is built with mail-builder and committed to the spool's delivery
//! queue for the tenant, so it takes the normal relay path to the tenant's
//! inbound connector (like a DSN, it carries no stamp of ours). Invariants:
//! a digest goes only to addresses of the tenant's own domains; it lists
//! subjects and senders but never message content; it is queued durably
//! before it is counted as sent.

use std::collections::BTreeMap;

use mail_builder::MessageBuilder;
use mail_builder::headers::text::Text;

use crate::config::tenant::Tenant;
use crate::config::web::DigestConfig;
use crate::message::envelope::{Direction, Envelope, Mailbox, Recipient, SessionFacts};
use crate::spool::format::{Kind, Meta};
use crate::spool::incoming::Body;
use crate::spool::{Area, Spool};
use crate::store::time;
use crate::web::backend::{Backend, Query, Summary};
use crate::web::links::LinkKey;

/// At most this many held messages are read per tenant for one digest run.
const MAX_HELD: usize = 20_000;

/// What one tenant's digest run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Sent {
    /// (recipient, queue id of the digest mail, entries listed)
    pub(crate) mails: Vec<(String, String, usize)>,
}

/// Everything a digest run needs besides the store.
pub(crate) struct Digest<'a> {
    pub(crate) hostname: &'a str,
    /// Base of the release links, e.g. `https://gw.example.net:8443`.
    pub(crate) public_url: &'a str,
    pub(crate) key: &'a LinkKey,
    pub(crate) spool: &'a Spool,
}

impl Digest<'_> {
    /// Sends `tenant`'s digest now (whether or not it is its hour).
    pub(crate) async fn send(
        &self,
        backend: &dyn Backend,
        tenant: &Tenant,
        cfg: &DigestConfig,
        now: i64,
    ) -> Result<Sent, String> {
        let per_recipient = held_by_recipient(backend, tenant).await?;
        let mut sent = Sent::default();
        let expires = now + cfg.link_ttl.as_secs() as i64;
        let from = if cfg.from.is_empty() {
            format!("quarantine@{}", self.hostname)
        } else {
            cfg.from.clone()
        };
        for (recipient, mut held) in per_recipient {
            held.sort_by_key(|m| std::cmp::Reverse(m.received));
            held.truncate(cfg.max_entries);
            let from_box =
                Mailbox::from_text(&from).ok_or_else(|| format!("digest sender \"{from}\" is not a mailbox"))?;
            let Some(rcpt_box) = Mailbox::from_text(&recipient) else {
                tracing::warn!(tenant = %tenant.portal, %recipient, "no digest: the recipient is not a mailbox");
                continue;
            };
            let bytes = self.build(&from, &recipient, &held, expires, now)?;
            let id = crate::spool::new_id();
            let meta = Meta {
                id: id.clone(),
                received: now,
                kind: Kind::Message,
                envelope: Envelope {
                    mail_from: from_box,
                    recipients: vec![Recipient {
                        address: rcpt_box,
                        orcpt: None,
                        notify: None,
                    }],
                    smtputf8: !recipient.is_ascii() || !from.is_ascii(),
                    ..Envelope::default()
                },
                session: SessionFacts {
                    client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
                    client_port: 0,
                    helo: self.hostname.to_string(),
                    tls: None,
                    session_id: String::new(),
                },
                ids: Default::default(),
                sender_authenticated: false,
                tenant: tenant.portal.clone(),
                direction: Direction::Inbound,
                verdict: None,
                skips: vec![],
                route: None,
            };
            self.spool
                .commit(Area::Active, &meta, b"", Body::Memory(bytes))
                .await
                .map_err(|e| format!("cannot queue the digest for {recipient}: {e}"))?;
            tracing::info!(tenant = %tenant.portal, %recipient, digest_id = %id, entries = held.len(), "digest queued");
            sent.mails.push((recipient, id, held.len()));
        }
        if !sent.mails.is_empty() {
            // A running gateway's scheduler picks the new files up now.
            let _ = std::fs::write(self.spool.flush_trigger(), b"digest\n");
        }
        Ok(sent)
    }

    fn build(&self, from: &str, recipient: &str, held: &[Summary], expires: i64, now: i64) -> Result<Vec<u8>, String> {
        let mut text = format!(
            "The mail gateway is holding {} message(s) addressed to you.\r\n\
             Each link below releases one message to your mailbox, once, until {} UTC.\r\n\
             If you do not recognise a message, do nothing: it will be deleted in due course.\r\n\r\n",
            held.len(),
            time::format(expires)
        );
        for m in held {
            let token = self.key.sign(&m.id, recipient, expires);
            text.push_str(&format!(
                "From:     {}\r\nSubject:  {}\r\nReceived: {} UTC\r\nRelease:  {}/digest/release?t={token}\r\n\r\n",
                one_line(if m.from.is_empty() { &m.sender } else { &m.from }),
                one_line(&m.subject),
                time::format(m.received),
                self.public_url,
            ));
        }
        MessageBuilder::new()
            .from(("Mail quarantine", from))
            .to(recipient)
            .subject(format!("Quarantine digest: {} held message(s)", held.len()))
            .header("Auto-Submitted", Text::new("auto-generated"))
            .date(now)
            .message_id(format!("{}.digest@{}", crate::spool::new_id(), self.hostname))
            .text_body(text)
            .write_to_vec()
            .map_err(|e| format!("cannot build the digest: {e}"))
    }
}

/// Control characters (a folded or hostile subject) become spaces, and the
/// line is bounded.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

async fn held_by_recipient(backend: &dyn Backend, tenant: &Tenant) -> Result<BTreeMap<String, Vec<Summary>>, String> {
    let mut out: BTreeMap<String, Vec<Summary>> = BTreeMap::new();
    let mut query = Query {
        tenant: Some(tenant.portal.clone()),
        held_only: true,
        per_page: 500,
        ..Query::default()
    };
    let mut seen = 0;
    loop {
        let page = backend.search(&query).await.map_err(|e| e.to_string())?;
        seen += page.items.len();
        for m in page.items {
            // Only the tenant's own users get a digest, and only for inbound mail.
            if m.direction != Direction::Inbound.as_str() {
                continue;
            }
            for r in &m.recipients {
                if Mailbox::from_text(r).is_some_and(|mb| tenant.owns_address(&mb)) {
                    out.entry(r.to_lowercase()).or_default().push(m.clone());
                }
            }
        }
        if !page.more || seen >= MAX_HELD {
            break;
        }
        query.page += 1;
    }
    Ok(out)
}

/// Sends the digest of every tenant with `[tenant.digest] enabled` (or only
/// of `only`, which must have it enabled) now; one line per mail queued.
pub(crate) async fn send_now(
    cfg: &crate::config::Config,
    backend: &dyn Backend,
    spool: &Spool,
    only: Option<&str>,
    now: i64,
) -> Result<Vec<String>, String> {
    if let Some(portal) = only {
        match cfg.tenants.iter().find(|t| t.portal == portal) {
            None => return Err(format!("no [[tenant]] has portal \"{portal}\"")),
            Some(t) if !t.digest.as_ref().is_some_and(|d| d.enabled) => {
                return Err(format!(
                    "tenant \"{portal}\" has no [tenant.digest] with enabled = true"
                ));
            }
            Some(_) => {}
        }
    }
    let key = LinkKey::load(cfg.web.digest_key.as_deref(), &cfg.server.state_dir)?;
    let public_url = crate::web::public_url(cfg);
    let digest = Digest {
        hostname: &cfg.server.hostname,
        public_url: &public_url,
        key: &key,
        spool,
    };
    let mut lines = Vec::new();
    for tenant in &cfg.tenants {
        let Some(d) = tenant.digest.as_ref().filter(|d| d.enabled) else {
            continue;
        };
        if only.is_some_and(|p| p != tenant.portal) {
            continue;
        }
        let sent = digest.send(backend, tenant, d, now).await?;
        for (rcpt, id, n) in &sent.mails {
            lines.push(format!(
                "{}: {rcpt}: {n} held message(s), digest queued as {id}",
                tenant.portal
            ));
        }
        if sent.mails.is_empty() {
            lines.push(format!("{}: no held messages, no digest", tenant.portal));
        }
    }
    Ok(lines)
}

/// Sends each enabled tenant's digest once a day at its `hour` (UTC). The
/// day last sent is kept in `state_dir/web/digest-<portal>.day`, so a restart
/// within the hour does not send it twice.
pub(crate) async fn schedule(
    cfg: std::sync::Arc<crate::config::Config>,
    backend: std::sync::Arc<dyn Backend>,
    spool: std::sync::Arc<Spool>,
    stop: tokio_util::sync::CancellationToken,
) {
    if !cfg.tenants.iter().any(|t| t.digest.as_ref().is_some_and(|d| d.enabled)) {
        return;
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
        }
        let now = crate::spool::now_unix();
        let (day, hour) = (now.div_euclid(86400), now.rem_euclid(86400) / 3600);
        for tenant in &cfg.tenants {
            let Some(d) = tenant
                .digest
                .as_ref()
                .filter(|d| d.enabled && i64::from(d.hour) == hour)
            else {
                continue;
            };
            let marker = cfg
                .server
                .state_dir
                .join("web")
                .join(format!("digest-{}.day", tenant.portal));
            if std::fs::read_to_string(&marker)
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                == Some(day)
            {
                continue;
            }
            let key = match LinkKey::load(cfg.web.digest_key.as_deref(), &cfg.server.state_dir) {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!(error = %e, "digest: no link key");
                    continue;
                }
            };
            let public_url = crate::web::public_url(&cfg);
            let digest = Digest {
                hostname: &cfg.server.hostname,
                public_url: &public_url,
                key: &key,
                spool: &spool,
            };
            match digest.send(&*backend, tenant, d, now).await {
                Ok(sent) => {
                    tracing::info!(tenant = %tenant.portal, mails = sent.mails.len(), "daily digest sent");
                    if let Err(e) = std::fs::write(&marker, format!("{day}\n")) {
                        tracing::warn!(error = %e, path = %marker.display(), "cannot record the digest day");
                    }
                }
                Err(e) => {
                    tracing::error!(tenant = %tenant.portal, error = %e, "daily digest failed; retried next minute");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tenant::Destination;
    use crate::web::backend::Record;
    use crate::web::memory::MemoryBackend;

    fn held(id: &str, tenant: &str, rcpts: &[&str], subject: &str, held: bool) -> Record {
        Record {
            summary: Summary {
                id: id.into(),
                received: 1_796_456_460,
                tenant: tenant.into(),
                direction: "inbound".into(),
                sender: "mallory@example.org".into(),
                recipients: rcpts.iter().map(|r| r.to_string()).collect(),
                from: "mallory@example.org".into(),
                subject: subject.into(),
                message_id: String::new(),
                action: "quarantine".into(),
                score: 10.0,
                size: 1,
                held,
            },
            client: String::new(),
            tls: String::new(),
            findings: vec![],
            failures: vec![],
            deliveries: vec![],
            released_to: vec![],
            raw: None,
        }
    }

    #[tokio::test]
    async fn one_mail_per_own_recipient_with_a_link_per_held_message() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let backend = MemoryBackend::default();
        backend.records.lock().unwrap().extend([
            held(
                "A1",
                "contoso",
                &["bob@contoso.com", "eve@elsewhere.example"],
                "first\r\nBcc: x",
                true,
            ),
            held("A2", "contoso", &["bob@contoso.com"], "second", true),
            held("A3", "contoso", &["carol@contoso.com"], "released already", false),
            held("B1", "fabrikam", &["bob@contoso.com"], "another tenant", true),
        ]);
        let key = LinkKey::from_bytes(b"0123456789abcdef0123456789abcdef");
        let digest = Digest {
            hostname: "gw.example.net",
            public_url: "https://gw.example.net:8443",
            key: &key,
            spool: &spool,
        };
        let tenant = Tenant::new("contoso", &["contoso.com"], Destination::Mx);
        let cfg = DigestConfig {
            enabled: true,
            hour: 7,
            from: String::new(),
            link_ttl: std::time::Duration::from_secs(3600),
            max_entries: 100,
        };
        let sent = digest.send(&backend, &tenant, &cfg, 1_800_000_000).await.unwrap();
        // Only bob (of contoso's own domains) has held mail of contoso.
        assert_eq!(sent.mails.len(), 1);
        let (rcpt, id, entries) = &sent.mails[0];
        assert_eq!((rcpt.as_str(), *entries), ("bob@contoso.com", 2));
        // Queued for the tenant like any message, so it takes the relay path.
        let stored = spool.read(Area::Active, id).unwrap();
        assert_eq!(stored.trailer.meta.tenant, "contoso");
        assert_eq!(
            stored.trailer.meta.envelope.mail_from.to_string(),
            "quarantine@gw.example.net"
        );
        assert_eq!(
            stored.trailer.meta.envelope.recipients[0].address.to_string(),
            "bob@contoso.com"
        );
        let message = mail_parser::MessageParser::default().parse(&stored.body[..]).unwrap();
        let text = message.body_text(0).unwrap();
        assert!(
            text.contains("first  Bcc: x"),
            "a folded subject stays on its line: {text}"
        );
        assert!(!text.contains("another tenant") && !text.contains("released already"));
        let grants: Vec<_> = text
            .split("/digest/release?t=")
            .skip(1)
            .map(|rest| {
                key.verify(rest.split_whitespace().next().unwrap(), 1_800_000_000)
                    .unwrap()
            })
            .collect();
        assert_eq!(grants.len(), 2);
        assert!(
            grants
                .iter()
                .all(|g| g.recipient == "bob@contoso.com" && g.expires == 1_800_003_600)
        );
        assert_eq!(grants.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(), ["A1", "A2"]);
    }
}
