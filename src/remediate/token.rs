//! App-only OAuth2 tokens (client credentials grant) from
//! `{token_base_url}/{tenant}/oauth2/v2.0/token`: with the client secret, or
//! with a client assertion (a JWT signed with the app's RSA key, `x5t#S256`
//! naming its certificate; PS256 by default, RS256 on request). A token is
//! reused until `token_refresh_before` (at most half its lifetime) before it
//! expires, and dropped when an API answers 401.
//!
//! Must never: log the secret, the assertion or a token; reuse an
//! assertion (a fresh `jti` each time).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::config::remediation::{AssertionAlg, Credential, RemediationConfig};
use crate::remediate::{CallError, Remediator, guid};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Lifetime of an assertion (Microsoft: at most 10 minutes).
const ASSERTION_LIFETIME: u64 = 300;

#[derive(Default)]
pub(crate) struct Tokens {
    cached: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

impl Tokens {
    /// A valid token for the configured method's scope.
    pub(crate) async fn get(&self, r: &Remediator) -> Result<String, CallError> {
        // Held across the fetch: concurrent mailboxes wait for one request.
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = fetch(r).await?;
        let margin = r.cfg.token_refresh_before.min(lifetime / 2);
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        Ok(token)
    }

    /// Forgets the cached token (an API said 401).
    pub(crate) async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

pub(crate) fn token_url(cfg: &RemediationConfig) -> String {
    format!(
        "{}/{}/oauth2/v2.0/token",
        cfg.token_base_url.trim_end_matches('/'),
        crate::remediate::pct(&cfg.tenant_id)
    )
}

async fn fetch(r: &Remediator) -> Result<(String, Duration), CallError> {
    let cfg = &r.cfg;
    let url = token_url(cfg);
    // Built in one block: the serializer must not live across an await.
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &cfg.client_id)
            .append_pair("scope", &cfg.scope());
        match &cfg.credential {
            Credential::Secret(secret) => {
                form.append_pair("client_secret", &String::from_utf8_lossy(secret.expose()));
            }
            Credential::Certificate {
                cert_der,
                key_pkcs8,
                alg,
            } => {
                let assertion = assertion(&cfg.client_id, &url, cert_der, key_pkcs8.expose(), *alg)
                    .map_err(|reason| CallError::Permanent { reason })?;
                form.append_pair("client_assertion_type", JWT_BEARER)
                    .append_pair("client_assertion", &assertion);
            }
        }
        form.finish()
    };
    let answer = r
        .http
        .send("token", || {
            r.http
                .client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.clone())
        })
        .await?;
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    if answer.status != 200 {
        // `error` and the AADSTS code only: the description is Microsoft's
        // text about our request, never our secret, but keep it short.
        let code = json["error"].as_str().unwrap_or("no error code");
        let aadsts = json["error_codes"]
            .as_array()
            .and_then(|c| c.first())
            .map(|c| format!(" AADSTS{c}"))
            .unwrap_or_default();
        let reason = format!("token endpoint answered {}: {code}{aadsts}", answer.status);
        return Err(if answer.status >= 500 {
            CallError::Temporary { reason, wait: None }
        } else {
            CallError::Permanent { reason }
        });
    }
    let token = json["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or(CallError::Temporary {
            reason: "token endpoint answered without access_token".into(),
            wait: None,
        })?;
    let lifetime = json["expires_in"]
        .as_u64()
        .or_else(|| json["expires_in"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(300);
    tracing::debug!(expires_in = lifetime, "remediation token obtained");
    Ok((token.to_string(), Duration::from_secs(lifetime)))
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A signed client assertion for one token request.
pub(crate) fn assertion(
    client_id: &str,
    audience: &str,
    cert_der: &[u8],
    key_pkcs8: &[u8],
    alg: AssertionAlg,
) -> Result<String, String> {
    let thumb = ring::digest::digest(&ring::digest::SHA256, cert_der);
    let (alg_name, padding): (&str, &'static dyn ring::signature::RsaEncoding) = match alg {
        AssertionAlg::Ps256 => ("PS256", &ring::signature::RSA_PSS_SHA256),
        AssertionAlg::Rs256 => ("RS256", &ring::signature::RSA_PKCS1_SHA256),
    };
    let header = serde_json::json!({"alg": alg_name, "typ": "JWT", "x5t#S256": b64url(thumb.as_ref())});
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({
        "aud": audience, "iss": client_id, "sub": client_id, "jti": guid(),
        "nbf": now, "iat": now, "exp": now + ASSERTION_LIFETIME,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let key =
        ring::signature::RsaKeyPair::from_pkcs8(key_pkcs8).map_err(|_| "the private key is not RSA".to_string())?;
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        padding,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| "cannot sign the client assertion".to_string())?;
    Ok(format!("{signing_input}.{}", b64url(&sig)))
}
