//! `[tenant.remediation]`: how the gateway reaches into a tenant's mailboxes
//! after delivery (Microsoft Graph or EWS, app-only OAuth2), read and checked
//! at load time (docs/remediation.md lists every key).
//!
//! Credentials are read here, once: the secret (inline or from a file) or the
//! certificate and its RSA private key, checked to belong together. They are
//! kept in [`Secret`] values whose `Debug` never shows them. Must never: put a
//! secret, key or token into an error message or a log line.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::config::reader::{Section, parse_duration};

/// A value that must never be shown (client secret, private key).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([redacted, {} bytes])", self.0.len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Graph,
    Ews,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Graph => "graph",
            Method::Ews => "ews",
        }
    }
}

/// What is done to each copy found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemediationAction {
    /// Graph `move`, EWS `MoveItem` to `folder`.
    Move,
    /// Graph `DELETE`, EWS `DeleteItem SoftDelete`: recoverable by the user.
    SoftDelete,
    /// Graph `permanentDelete`, EWS `DeleteItem HardDelete`.
    Delete,
}

impl RemediationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RemediationAction::Move => "move",
            RemediationAction::SoftDelete => "soft-delete",
            RemediationAction::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<RemediationAction> {
        match text {
            "move" => Some(RemediationAction::Move),
            "soft-delete" => Some(RemediationAction::SoftDelete),
            "delete" => Some(RemediationAction::Delete),
            _ => None,
        }
    }
}

/// The signature of a client assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlg {
    /// RSASSA-PSS with SHA-256 (Microsoft's current page).
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (Microsoft's earlier page).
    Rs256,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Secret(Secret),
    Certificate {
        /// DER of the certificate registered on the app (for `x5t#S256`).
        cert_der: Vec<u8>,
        /// PKCS#8 DER of its RSA private key.
        key_pkcs8: Secret,
        alg: AssertionAlg,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RemediationConfig {
    pub method: Method,
    /// Entra tenant id (GUID) or a verified domain, for the token URL.
    pub tenant_id: String,
    pub client_id: String,
    pub credential: Credential,
    pub token_base_url: String,
    pub graph_base_url: String,
    pub ews_url: String,
    pub ews_scope: String,
    pub ews_version: String,
    /// PEM trust roots; `None`: the system's store.
    pub ca: Option<std::path::PathBuf>,
    pub source_ip: Option<IpAddr>,
    pub user_agent: String,
    pub action: RemediationAction,
    pub folder: Option<String>,
    /// Monitor-mode verdicts ("quarantine", "reject", ...) that trigger it.
    pub on_verdicts: Vec<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: Vec<Duration>,
    pub max_retry_after: Duration,
    pub concurrency: usize,
    pub token_refresh_before: Duration,
}

impl RemediationConfig {
    /// The token scope of the configured method.
    pub fn scope(&self) -> String {
        match self.method {
            Method::Graph => {
                let base = self.graph_base_url.trim_end_matches('/');
                let origin = url::Url::parse(base)
                    .map(|u| u.origin().ascii_serialization())
                    .unwrap_or_else(|_| base.to_string());
                // Microsoft's resource is the public Graph host, also when a
                // test or a national cloud gateway points the base elsewhere.
                if origin.starts_with("https://graph.microsoft.") || origin.contains("graph.microsoft") {
                    format!("{origin}/.default")
                } else {
                    "https://graph.microsoft.com/.default".to_string()
                }
            }
            Method::Ews => self.ews_scope.clone(),
        }
    }
}

const WELL_KNOWN_FOLDERS: [&str; 8] = [
    "inbox",
    "junkemail",
    "deleteditems",
    "archive",
    "drafts",
    "sentitems",
    "outbox",
    "clutter",
];

/// Reads `[tenant.remediation]`; `None` when absent or broken (problems are
/// reported on the section). `tenant_id`: the tenant's own, the default.
pub(crate) fn read(t: &Section<'_>, base: &Path, tenant_id: &str) -> Option<RemediationConfig> {
    let r = t.section("remediation")?;
    let method = r.choice_or(
        "method",
        None,
        &[("graph", Some(Method::Graph)), ("ews", Some(Method::Ews))],
    );
    if method.is_none() && !r.contains("method") {
        r.error("method", "missing: \"graph\" (Exchange Online) or \"ews\"");
    }
    let tid = r.string_or("tenant_id", tenant_id);
    if tid.is_empty() {
        r.error(
            "tenant_id",
            "missing: the Entra tenant ID (or set the tenant's tenant_id)",
        );
    }
    let client_id = r.opt_string("client_id").unwrap_or_default();
    if client_id.is_empty() {
        r.error("client_id", "missing: the application (client) ID, a GUID");
    }
    let credential = read_credential(&r, base);
    let token_base_url = url_or(&r, "token_base_url", "https://login.microsoftonline.com");
    let graph_base_url = url_or(&r, "graph_base_url", "https://graph.microsoft.com/v1.0");
    let ews_url = url_or(&r, "ews_url", "https://outlook.office365.com/EWS/Exchange.asmx");
    let ews_scope = r.string_or("ews_scope", "https://outlook.office365.com/.default");
    let ews_version = r.string_or("ews_version", "Exchange2013_SP1");
    let ca = r.opt_path("ca", base);
    if let Some(p) = &ca
        && !p.exists()
    {
        r.error("ca", format!("file {} does not exist", p.display()));
    }
    let source_ip = match r.opt_string("source_ip").filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match text.parse::<IpAddr>() {
            Ok(ip) => {
                // Must be an address of this host: binding tells.
                if std::net::UdpSocket::bind((ip, 0)).is_err() {
                    r.error("source_ip", format!("{ip} is not an address of this host"));
                }
                Some(ip)
            }
            Err(_) => {
                r.error("source_ip", format!("expected an IP address, found \"{text}\""));
                None
            }
        },
    };
    let user_agent = r.string_or("user_agent", concat!("exogate-remediation/", env!("CARGO_PKG_VERSION")));
    if user_agent.is_empty() || !user_agent.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        r.error("user_agent", "must be printable ASCII and not empty");
    }
    let action = match r.opt_string("action") {
        None => {
            r.error("action", "missing: \"move\", \"soft-delete\" or \"delete\"");
            RemediationAction::Move
        }
        Some(text) => RemediationAction::parse(&text).unwrap_or_else(|| {
            r.error(
                "action",
                format!("must be one of \"move\", \"soft-delete\", \"delete\", found \"{text}\""),
            );
            RemediationAction::Move
        }),
    };
    let folder = r.opt_string("folder").filter(|f| !f.is_empty());
    match (action, &folder) {
        (RemediationAction::Move, None) => r.error(
            "folder",
            format!(
                "required for action \"move\": a well-known name ({}) or a folder id",
                WELL_KNOWN_FOLDERS.join(", ")
            ),
        ),
        (RemediationAction::Move, Some(_)) => {}
        (_, Some(_)) => r.error("folder", "only used with action \"move\""),
        (_, None) => {}
    }
    let on_verdicts = r.strings_or("on_verdicts", &["quarantine", "reject"]);
    for (i, v) in on_verdicts.iter().enumerate() {
        if !["deliver", "junk", "quarantine", "reject"].contains(&v.as_str()) {
            r.problems().push(
                format!("{}[{i}]", r.key_path("on_verdicts")),
                format!("must be \"junk\", \"quarantine\" or \"reject\", found \"{v}\""),
            );
        }
    }
    let connect_timeout = r.duration_or("connect_timeout", Duration::from_secs(10));
    let request_timeout = r.duration_or("request_timeout", Duration::from_secs(30));
    let retry = r.parsed_list("retry", &["5s", "30s", "2m", "10m"], parse_duration);
    let max_retry_after = r.duration_or("max_retry_after", Duration::from_secs(900));
    let concurrency = r.u64_in("concurrency", 4, 1, 64) as usize;
    let token_refresh_before = r.duration_or("token_refresh_before", Duration::from_secs(300));
    Some(RemediationConfig {
        method: method?,
        tenant_id: tid,
        client_id,
        credential: credential?,
        token_base_url,
        graph_base_url,
        ews_url,
        ews_scope,
        ews_version,
        ca,
        source_ip,
        user_agent,
        action,
        folder,
        on_verdicts,
        connect_timeout,
        request_timeout,
        retry,
        max_retry_after,
        concurrency,
        token_refresh_before,
    })
}

fn url_or(r: &Section<'_>, key: &str, default: &str) -> String {
    let text = r.string_or(key, default);
    match url::Url::parse(&text) {
        Ok(u) if u.scheme() == "https" => text.trim_end_matches('/').to_string(),
        Ok(_) => {
            r.error(key, format!("must be an https:// URL, found \"{text}\""));
            text
        }
        Err(e) => {
            r.error(key, format!("not a URL ({e}): \"{text}\""));
            text
        }
    }
}

/// Exactly one of `client_secret`, `client_secret_file`, `certificate` + `key`.
fn read_credential(r: &Section<'_>, base: &Path) -> Option<Credential> {
    let secret = r.opt_string("client_secret").filter(|s| !s.is_empty());
    let secret_file = r.opt_path("client_secret_file", base);
    let cert = r.opt_path("certificate", base);
    let key = r.opt_path("key", base);
    let alg = r.choice_or(
        "assertion_alg",
        AssertionAlg::Ps256,
        &[("PS256", AssertionAlg::Ps256), ("RS256", AssertionAlg::Rs256)],
    );
    let given = usize::from(secret.is_some())
        + usize::from(secret_file.is_some())
        + usize::from(cert.is_some() || key.is_some());
    if given != 1 {
        r.error(
            "client_secret",
            "give exactly one credential: client_secret, client_secret_file, or certificate + key",
        );
        return None;
    }
    if let Some(s) = secret {
        return Some(Credential::Secret(Secret::new(s.into_bytes())));
    }
    if let Some(path) = secret_file {
        return match std::fs::read_to_string(&path) {
            Ok(text) => {
                let value = text.trim_end_matches(['\r', '\n']).to_string();
                if value.is_empty() {
                    r.error("client_secret_file", format!("{} is empty", path.display()));
                    return None;
                }
                Some(Credential::Secret(Secret::new(value.into_bytes())))
            }
            Err(e) => {
                r.error("client_secret_file", format!("cannot read {}: {e}", path.display()));
                None
            }
        };
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        r.error("certificate", "certificate and key go together: set both");
        return None;
    };
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
    let cert_der = match CertificateDer::from_pem_file(&cert) {
        Ok(c) => c.as_ref().to_vec(),
        Err(e) => {
            r.error("certificate", format!("no PEM certificate in {}: {e}", cert.display()));
            return None;
        }
    };
    let key_der = match PrivatePkcs8KeyDer::from_pem_file(&key) {
        Ok(k) => k.secret_pkcs8_der().to_vec(),
        Err(_) => {
            r.error(
                "key",
                format!("no PKCS#8 private key (\"BEGIN PRIVATE KEY\") in {}", key.display()),
            );
            return None;
        }
    };
    let Ok(pair) = ring::signature::RsaKeyPair::from_pkcs8(&key_der) else {
        r.error(
            "key",
            format!(
                "{} is not an RSA private key (Entra ID assertions are RSA)",
                key.display()
            ),
        );
        return None;
    };
    // The key must be the certificate's: its public key is inside the DER.
    use ring::signature::KeyPair;
    let public = pair.public_key().as_ref();
    if !cert_der.windows(public.len()).any(|w| w == public) {
        r.error(
            "key",
            format!(
                "{} does not belong to the certificate {}",
                key.display(),
                cert.display()
            ),
        );
        return None;
    }
    Some(Credential::Certificate {
        cert_der,
        key_pkcs8: Secret::new(key_der),
        alg,
    })
}
