//! The HTTPS client of one tenant's remediation: reqwest over rustls (ring),
//! with the configured trust roots, source address, User-Agent and timeouts,
//! and the throttling rules: `429`/`503` with `Retry-After` (seconds), and
//! EWS's `ErrorServerBusy` with `BackOffMilliseconds`, are waited out and the
//! call repeated, each wait capped by `max_retry_after` (a longer one is
//! handed back to the per-mailbox retry as the least wait), at most
//! `MAX_THROTTLED` times per call.
//!
//! Must never: log a request's headers or body (they carry the token, the
//! secret or the assertion).

use std::sync::Arc;
use std::time::Duration;

use crate::config::remediation::RemediationConfig;
use crate::remediate::{CallError, RemediateError};

/// Throttled answers waited out inline per call before it counts as failed.
const MAX_THROTTLED: usize = 4;
/// The wait when a throttled answer names none.
const DEFAULT_WAIT: Duration = Duration::from_secs(2);

pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    max_retry_after: Duration,
}

/// An answer: status, body, Microsoft's request id.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    pub(crate) request_id: Option<String>,
}

impl Http {
    pub(crate) fn new(cfg: &RemediationConfig) -> Result<Http, RemediateError> {
        let mut roots = rustls::RootCertStore::empty();
        match &cfg.ca {
            Some(path) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                let bad = |reason: String| RemediateError::Roots {
                    path: path.display().to_string(),
                    reason,
                };
                let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
                for c in certs {
                    roots
                        .add(c.map_err(|e| bad(e.to_string()))?)
                        .map_err(|e| bad(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(bad("no certificate in it".into()));
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RemediateError::Client(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(cfg.user_agent.clone())
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(ip) = cfg.source_ip {
            builder = builder.local_address(ip);
        }
        let client = builder.build().map_err(|e| RemediateError::Client(e.to_string()))?;
        Ok(Http {
            client,
            max_retry_after: cfg.max_retry_after,
        })
    }

    /// Sends the request `build` makes (again after each throttled answer).
    /// Any status that is not throttling comes back as an [`Answer`];
    /// transport failures and throttling past the cap are `Temporary`.
    pub(crate) async fn send(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer, CallError> {
        let mut throttled = 0;
        loop {
            let response = build().send().await.map_err(|e| CallError::Temporary {
                reason: format!("{what}: {}", transport_reason(&e)),
                wait: None,
            })?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let request_id = response
                .headers()
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response.bytes().await.map_err(|e| CallError::Temporary {
                reason: format!("{what}: {}", transport_reason(&e)),
                wait: None,
            })?;
            let busy = (status == 500).then(|| ews_back_off(&body)).flatten();
            let wait = match (status, busy) {
                (429 | 503, _) => Some(retry_after.unwrap_or(DEFAULT_WAIT)),
                (_, Some(ms)) => Some(ms),
                _ => None,
            };
            let Some(wait) = wait else {
                return Ok(Answer {
                    status,
                    body: body.to_vec(),
                    request_id,
                });
            };
            throttled += 1;
            if wait > self.max_retry_after || throttled > MAX_THROTTLED {
                return Err(CallError::Temporary {
                    reason: format!("{what}: throttled (HTTP {status}, wait {}s)", wait.as_secs()),
                    wait: Some(wait),
                });
            }
            tracing::info!(
                call = what,
                status,
                wait_ms = wait.as_millis() as u64,
                "throttled: waiting as told"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// EWS `ErrorServerBusy`: its `BackOffMilliseconds`.
fn ews_back_off(body: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.contains("ErrorServerBusy") {
        return None;
    }
    let at = text.find("BackOffMilliseconds")?;
    let rest = &text[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    rest[start..end].trim().parse().ok().map(Duration::from_millis)
}

/// What went wrong, without the URL (it can carry a mailbox) or any header.
fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
        let mut last = String::from("cannot connect");
        while let Some(s) = source {
            last = s.to_string();
            source = s.source();
        }
        format!("cannot connect ({last})")
    } else {
        "the connection failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ews_server_busy_back_off() {
        let body = br#"<s:Fault><faultcode>a:ErrorServerBusy</faultcode><detail><t:MessageXml><t:Value Name="BackOffMilliseconds">1500</t:Value></t:MessageXml></detail></s:Fault>"#;
        assert_eq!(ews_back_off(body), Some(Duration::from_millis(1500)));
        assert_eq!(ews_back_off(b"<x>ErrorInternalServerError</x>"), None);
    }
}
