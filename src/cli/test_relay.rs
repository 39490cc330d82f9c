//! `exogate test-relay --tenant PORTAL`: opens a connection to the tenant's
//! destination exactly as a delivery would (the destination's hosts or MX, an
//! egress address from `relay.source_ips` with its EHLO name, STARTTLS with
//! the certificate checks of the route, the tenant's client certificate) and
//! says what happened at each step, without sending mail: after EHLO and
//! STARTTLS it tries `MAIL FROM:<>` and one `RCPT TO` (the tenant's postmaster
//! unless `--rcpt` says otherwise), then `RSET` and `QUIT`.
//!
//! Must never: send DATA, or change anything in the spool.

use std::path::Path;

use crate::app::{self, AppError};
use crate::delivery::relay::Relay;
use crate::message::envelope::{Envelope, Mailbox, Recipient};

/// Runs the probe; Ok(report) when the destination would take the recipient,
/// Err(report) otherwise (the report says where it stopped).
pub fn test_relay(config: &Path, portal: &str, rcpt: Option<&str>) -> Result<String, AppError> {
    let snapshot = app::load(config, true)?;
    let cfg = snapshot.config.clone();
    let route = snapshot
        .delivery
        .tenant_route(portal)
        .ok_or_else(|| AppError::Other(format!("no tenant \"{portal}\" in {}", config.display())))?;
    let rcpt = match rcpt {
        Some(r) => r.to_string(),
        None => {
            let tenant = cfg.tenants.iter().find(|t| t.portal == portal);
            let domain = tenant.and_then(|t| t.domains.first()).cloned().unwrap_or_default();
            format!("postmaster@{domain}")
        }
    };
    let rcpt = Mailbox::parse(&rcpt).map_err(|e| AppError::Other(format!("recipient \"{rcpt}\": {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Other(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let dns = crate::dns::Dns::shared(&cfg.dns).map_err(AppError::Other)?;
        let relay = Relay::new(&cfg.relay, &cfg.server.hostname, dns).map_err(AppError::Other)?;
        let mut out = format!("tenant {portal}: route {}\n", route.key);
        let mut client = match relay.connect(&route).await {
            Ok(c) => c,
            Err(e) => {
                out.push_str(&format!(
                    "connect, EHLO, STARTTLS: FAILED: {}\nA delivery now would be {}.\n",
                    e.reply.one_line(),
                    if e.permanent { "bounced" } else { "deferred" }
                ));
                return Err(AppError::Other(out));
            }
        };
        let (version, cipher, client_cert) = client.tls_summary();
        out.push_str(&format!(
            "connected to {} from {}\nSTARTTLS: {version} {cipher}, server certificate verified, client certificate {}\n",
            client.server,
            client.egress.map_or_else(|| "?".to_string(), |ip| ip.to_string()),
            if client_cert { "presented" } else { "not configured" },
        ));
        let envelope = Envelope {
            mail_from: Mailbox::null(),
            recipients: vec![Recipient {
                address: rcpt.clone(),
                orcpt: None,
                notify: None,
            }],
            ..Envelope::default()
        };
        let mail = client.proxy_mail(&envelope).await;
        let outcome = match mail {
            Ok(r) if r.code / 100 == 2 => {
                out.push_str(&format!("MAIL FROM:<>: {}\n", r.one_line()));
                match client.proxy_rcpt(&envelope, 0).await {
                    Ok(r) => {
                        out.push_str(&format!("RCPT TO:<{rcpt}>: {}\n", r.one_line()));
                        r.code / 100 == 2
                    }
                    Err(e) => {
                        out.push_str(&format!("RCPT TO:<{rcpt}>: FAILED: {e}\n"));
                        false
                    }
                }
            }
            Ok(r) => {
                out.push_str(&format!("MAIL FROM:<>: {}\n", r.one_line()));
                false
            }
            Err(e) => {
                out.push_str(&format!("MAIL FROM:<>: FAILED: {e}\n"));
                false
            }
        };
        let _ = client.reset().await;
        client.quit().await;
        if outcome {
            out.push_str("A delivery now would be accepted (no message was sent).\n");
            Ok(out)
        } else {
            out.push_str("A delivery now would not be accepted (no message was sent).\n");
            Err(AppError::Other(out))
        }
    })
}
