//! The PROXY protocol header (HAProxy's v1 text and v2 binary forms) that a
//! load balancer sends before the client's bytes, parsed by the `ppp` crate.
//!
//! Owns: reading exactly one header from a configured proxy's connection,
//! bounded in time (the listener's `timeout`) and size (v1: 107 bytes, the
//! spec's maximum; v2: 16 bytes plus at most [`MAX_V2_BODY`]), without
//! consuming one byte past it (the SMTP or TLS stream that follows belongs to
//! the session); and recognising a header at the start of a connection that
//! is not a proxy's (`sniff`), so it can be refused rather than read as SMTP.
//! Must never: take a header from an address that is not a configured proxy,
//! or let a proxy's connection through without a valid header.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature (12 bytes).
const V2_SIGNATURE: &[u8] = ppp::v2::PROTOCOL_PREFIX;
/// The v1 prefix, with its space.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included (spec §2.1).
const MAX_V1: usize = 107;
/// The most address and TLV bytes taken after a v2 header's first 16 bytes:
/// room for IPv6 addresses and HAProxy's usual TLVs (ALPN, SSL, unique id).
const MAX_V2_BODY: usize = 1024;

/// Why a proxy's connection did not yield a client address.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("connection closed before a complete PROXY header")]
    Closed,
    #[error("PROXY header longer than allowed ({0} bytes)")]
    TooLong(usize),
    #[error("not a PROXY protocol header")]
    NotAHeader,
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
    #[error("reading the PROXY header: {0}")]
    Io(std::io::Error),
}

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProxiedClient {
    /// `None`: the proxy speaks for itself (v2 `LOCAL`, e.g. a health check;
    /// v1 `UNKNOWN`; an address family other than TCP over IPv4/IPv6).
    pub(crate) source: Option<SocketAddr>,
    /// 1 or 2.
    pub(crate) version: u8,
}

/// Reads one header from a configured proxy's connection within `timeout`.
pub(crate) async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<ProxiedClient, HeaderError> {
    match tokio::time::timeout(timeout, read_unbounded(stream)).await {
        Ok(r) => r,
        Err(_) => Err(HeaderError::Timeout(timeout)),
    }
}

async fn read_unbounded<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxiedClient, HeaderError> {
    // 12 bytes are never past a header: a v1 header has at least 15, a v2 one 16.
    let mut buf = vec![0u8; V2_SIGNATURE.len()];
    read_exact(stream, &mut buf).await?;
    if buf == V2_SIGNATURE {
        let mut rest = [0u8; 4];
        read_exact(stream, &mut rest).await?;
        buf.extend_from_slice(&rest);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        if len > MAX_V2_BODY {
            return Err(HeaderError::TooLong(16 + len));
        }
        let start = buf.len();
        buf.resize(start + len, 0);
        read_exact(stream, &mut buf[start..]).await?;
        return parse_v2(&buf);
    }
    if !buf.starts_with(V1_PREFIX) {
        return Err(HeaderError::NotAHeader);
    }
    // Byte by byte up to the CRLF: what follows belongs to the session.
    let mut one = [0u8; 1];
    while !buf.ends_with(b"\r\n") {
        if buf.len() >= MAX_V1 {
            return Err(HeaderError::TooLong(buf.len() + 1));
        }
        read_exact(stream, &mut one).await?;
        buf.push(one[0]);
    }
    parse_v1(&buf)
}

async fn read_exact<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> Result<(), HeaderError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(HeaderError::Closed),
        Err(e) => Err(HeaderError::Io(e)),
    }
}

fn parse_v1(bytes: &[u8]) -> Result<ProxiedClient, HeaderError> {
    use ppp::v1::{Addresses, Header};
    let header = Header::try_from(bytes).map_err(|e| HeaderError::Invalid(e.to_string()))?;
    let source = match header.addresses {
        Addresses::Tcp4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
        Addresses::Tcp6(a) => Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
        Addresses::Unknown => None,
    };
    Ok(ProxiedClient { source, version: 1 })
}

fn parse_v2(bytes: &[u8]) -> Result<ProxiedClient, HeaderError> {
    use ppp::v2::{Addresses, Command, Header};
    let header = Header::try_from(bytes).map_err(|e| HeaderError::Invalid(e.to_string()))?;
    let source = match (header.command, header.addresses) {
        (Command::Local, _) => None,
        (Command::Proxy, Addresses::IPv4(a)) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
        (Command::Proxy, Addresses::IPv6(a)) => Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
        (Command::Proxy, Addresses::Unspecified | Addresses::Unix(_)) => None,
    };
    Ok(ProxiedClient { source, version: 2 })
}

/// What the first bytes of a connection that is not a proxy's look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniff {
    /// A PROXY header (v1 prefix or the v2 signature).
    Header,
    /// Too few bytes yet to tell, and they could start one.
    Undecided,
    /// Not a PROXY header.
    Other,
}

/// Whether `first` (the first bytes a client sent) starts a PROXY header.
pub(crate) fn sniff(first: &[u8]) -> Sniff {
    for sig in [V1_PREFIX, V2_SIGNATURE] {
        if first.starts_with(sig) {
            return Sniff::Header;
        }
    }
    let undecided = [V1_PREFIX, V2_SIGNATURE]
        .iter()
        .any(|sig| first.len() < sig.len() && sig.starts_with(first));
    if undecided && !first.is_empty() {
        Sniff::Undecided
    } else {
        Sniff::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: &[u8]) -> (Result<ProxiedClient, HeaderError>, Vec<u8>) {
        let mut cursor = std::io::Cursor::new(bytes.to_vec());
        let r = read(&mut cursor, Duration::from_secs(1)).await;
        let pos = cursor.position() as usize;
        (r, bytes[pos..].to_vec())
    }

    #[tokio::test]
    async fn v1_header_gives_the_client_and_leaves_the_rest() {
        let (r, rest) = read_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 40001 25\r\n\x16\x03\x01").await;
        let c = r.unwrap();
        assert_eq!(c.source, Some("192.0.2.7:40001".parse().unwrap()));
        assert_eq!(c.version, 1);
        assert_eq!(rest, b"\x16\x03\x01");
    }

    #[tokio::test]
    async fn v2_header_gives_the_client_and_leaves_the_rest() {
        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "[2001:db8::9]:41000".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:25".parse::<SocketAddr>().unwrap(),
            ),
        )
        .write_tlv(ppp::v2::Type::NoOp, b"xx")
        .unwrap()
        .build()
        .unwrap();
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"EHLO x\r\n");
        let (r, rest) = read_all(&bytes).await;
        let c = r.unwrap();
        assert_eq!(c.source, Some("[2001:db8::9]:41000".parse().unwrap()));
        assert_eq!(c.version, 2);
        assert_eq!(rest, b"EHLO x\r\n");
    }

    #[tokio::test]
    async fn v2_local_speaks_for_the_proxy() {
        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        let (r, _) = read_all(&header).await;
        assert_eq!(r.unwrap().source, None);
    }

    #[tokio::test]
    async fn smtp_instead_of_a_header_is_refused() {
        let (r, _) = read_all(b"EHLO client.example\r\n").await;
        assert!(matches!(r, Err(HeaderError::NotAHeader)), "{r:?}");
    }

    #[tokio::test]
    async fn over_long_v1_and_v2_are_refused() {
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        let (r, _) = read_all(&long).await;
        assert!(matches!(r, Err(HeaderError::TooLong(_))), "{r:?}");
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        let (r, _) = read_all(&v2).await;
        assert!(matches!(r, Err(HeaderError::TooLong(_))), "{r:?}");
    }

    #[tokio::test]
    async fn garbled_v1_and_truncated_v2_are_refused() {
        let (r, _) = read_all(b"PROXY TCP4 999.0.2.7 10.0.0.1 40001 25\r\n").await;
        assert!(matches!(r, Err(HeaderError::Invalid(_))), "{r:?}");
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c, 1, 2]);
        let (r, _) = read_all(&v2).await;
        assert!(matches!(r, Err(HeaderError::Closed)), "{r:?}");
    }

    #[tokio::test]
    async fn a_silent_proxy_times_out() {
        let (mut a, _b) = tokio::io::duplex(64);
        let r = read(&mut a, Duration::from_millis(50)).await;
        assert!(matches!(r, Err(HeaderError::Timeout(_))), "{r:?}");
    }

    #[test]
    fn sniff_tells_headers_from_smtp() {
        assert_eq!(sniff(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), Sniff::Header);
        assert_eq!(sniff(V2_SIGNATURE), Sniff::Header);
        assert_eq!(sniff(b"PRO"), Sniff::Undecided);
        assert_eq!(sniff(b"\r\n\r\n"), Sniff::Undecided);
        assert_eq!(sniff(b"EHLO x\r\n"), Sniff::Other);
        assert_eq!(sniff(b"PROXYX"), Sniff::Other);
        assert_eq!(sniff(b""), Sniff::Other);
    }
}
