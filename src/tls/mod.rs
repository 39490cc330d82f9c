//! TLS for both directions: the server side EXO connects to (STARTTLS or
//! implicit TLS, TLS 1.2+, optional verified client certificates) and the
//! client side used to relay back (always verified, never optional).
//!
//! Certificates are loaded when a snapshot is built, so a reload picks up new
//! files and a bad file fails the reload instead of the running service. A
//! self-signed pair is generated only when asked (`tls.generate`) and only when
//! both files are absent, so an operator's real certificate is never replaced.
//! ring is the only crypto provider. Must never: offer an unverified client
//! configuration, or know which stage uses a configuration.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{ClientCertMode, TlsConfig};
use crate::message::envelope::TlsFacts;

#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: String },
    #[error("{path}: no usable PEM private key found ({detail})")]
    NoKey { path: String, detail: String },
    #[error("{path}: the certificate and the key do not form a usable pair: {detail}")]
    BadPair { path: String, detail: String },
    #[error("cannot generate a self-signed certificate in {path}: {detail}")]
    Generate { path: String, detail: String },
    #[error("no trusted roots: {detail}")]
    NoRoots { detail: String },
    #[error("cannot build the client certificate verifier: {detail}")]
    Verifier { detail: String },
}

static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
static TLS12_AND_13: [&rustls::SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];

fn versions(tls13_only: bool) -> &'static [&'static rustls::SupportedProtocolVersion] {
    if tls13_only { &TLS13_ONLY } else { &TLS12_AND_13 }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&text).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| TlsError::NoKey {
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}

/// Roots from a PEM file, or the system's roots when `path` is `None`.
pub(crate) fn load_roots(path: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match path {
        Some(p) => {
            for cert in load_certs(p)? {
                roots.add(cert).map_err(|e| TlsError::NoRoots {
                    detail: format!("{}: {e}", p.display()),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TlsError::NoRoots {
                    detail: "the system trust store is empty (install ca-certificates or configure a CA file)".into(),
                });
            }
        }
    }
    Ok(roots)
}

/// Creates a self-signed pair for `hostname` when neither file exists.
pub(crate) fn generate_if_absent(cfg: &TlsConfig, hostname: &str) -> Result<bool, TlsError> {
    if !cfg.generate || cfg.cert.exists() || cfg.key.exists() {
        return Ok(false);
    }
    let err = |detail: String| TlsError::Generate {
        path: cfg.cert.display().to_string(),
        detail,
    };
    // The loopback address too: a gateway trying itself out on one machine
    // (the README's quick start lends this pair to `exogate sink`) connects by IP.
    let names = vec![hostname.to_string(), "localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| err(e.to_string()))?;
    for p in [&cfg.cert, &cfg.key] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        }
    }
    write_private(&cfg.key, certified.signing_key.serialize_pem().as_bytes()).map_err(|e| err(e.to_string()))?;
    std::fs::write(&cfg.cert, certified.cert.pem()).map_err(|e| err(e.to_string()))?;
    Ok(true)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// The server side of STARTTLS / implicit TLS.
pub(crate) fn server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&cfg.cert)?;
    let key = load_key(&cfg.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(cfg.min_version_13))
        .expect("ring supports TLS 1.2 and 1.3");
    let builder = match cfg.client_cert {
        ClientCertMode::None => builder.with_no_client_auth(),
        mode => {
            let roots = Arc::new(load_roots(cfg.client_ca.as_deref())?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if mode == ClientCertMode::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Verifier { detail: e.to_string() })?,
            )
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| TlsError::BadPair {
        path: cfg.cert.display().to_string(),
        detail: e.to_string(),
    })?;
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// The client side used to relay: verified against `ca` or the system roots,
/// optionally presenting a client certificate.
pub(crate) fn client_config(
    ca: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = load_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(false))
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = load_certs(cert)?;
            let key = load_key(key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::BadPair {
                    path: cert.display().to_string(),
                    detail: e.to_string(),
                })?
        }
    };
    Ok(Arc::new(config))
}

/// What a finished server handshake negotiated.
pub(crate) fn facts(conn: &rustls::ServerConnection) -> TlsFacts {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let client_names = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(dns_names)
        .unwrap_or_default();
    TlsFacts {
        version,
        cipher,
        client_names,
    }
}

/// The DNS names in a certificate's subject alternative names.
pub(crate) fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(ee) => ee.valid_dns_names().map(|n| n.to_lowercase()).collect(),
        Err(_) => Vec::new(),
    }
}

/// True when the peer presented a verified certificate valid for one of `names`.
pub(crate) fn client_cert_matches(conn: &rustls::ServerConnection, names: &[String]) -> bool {
    let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) else {
        return false;
    };
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    names.iter().any(|name| {
        ServerName::try_from(name.as_str())
            .map(|sn| ee.verify_is_valid_for_subject_name(&sn).is_ok())
            .unwrap_or(false)
    })
}

/// The expiry (notAfter, Unix seconds) of the first certificate in a PEM
/// file, for the expiry metric; None when it cannot be read.
pub(crate) fn not_after(path: &Path) -> Option<i64> {
    let first = load_certs(path).ok()?.into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}
