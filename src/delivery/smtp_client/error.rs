//! Why a downstream connection or transaction failed, and the reply each
//! failure leaves for the recipients it affected. Only a 5xx from the server
//! is permanent; network, TLS and timeout failures are temporary.

use std::net::SocketAddr;

use crate::smtp::reply::Reply;

/// Why a connection or transaction failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("connection to {addr} failed: {detail}")]
    Connect { addr: SocketAddr, detail: String },
    #[error("{server} timed out waiting for {stage}")]
    Timeout { server: String, stage: &'static str },
    #[error("{server} I/O error during {stage}: {detail}")]
    Io {
        server: String,
        stage: &'static str,
        detail: String,
    },
    #[error("{server} does not offer STARTTLS; refusing to send in plaintext")]
    NoStartTls { server: String },
    #[error("TLS with {server} failed: {detail}")]
    Tls { server: String, detail: String },
    #[error("{server} answered {stage} with {}", .reply.one_line())]
    Rejected {
        server: String,
        stage: &'static str,
        reply: Reply,
    },
    #[error("{server} sent a malformed reply during {stage}")]
    Protocol { server: String, stage: &'static str },
}

impl ClientError {
    /// Only a 5xx answer from the server is permanent; everything else
    /// (network, TLS, timeouts) is temporary and retried.
    #[cfg(test)]
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            ClientError::Rejected { reply, .. } => reply.code >= 500,
            ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::Io { .. }
            | ClientError::NoStartTls { .. }
            | ClientError::Tls { .. }
            | ClientError::Protocol { .. } => false,
        }
    }

    /// The reply to record for recipients affected by this error.
    pub(crate) fn reply(&self) -> Reply {
        match self {
            ClientError::Rejected { reply, .. } => reply.clone(),
            other => Reply::new(451, (4, 4, 0), other.to_string()),
        }
    }
}
