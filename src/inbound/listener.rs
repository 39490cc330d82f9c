//! Accept loops. A connection is always accepted and then refused with a
//! reply if it must be (never left waiting in the backlog): a client outside
//! the allow list gets `554 5.7.1`, one over the total or per-IP limit gets
//! `421 4.7.0`. Transient accept errors are logged and retried with a short
//! pause; they never end the listener. Out of file descriptors, a reserved
//! descriptor is released to accept one waiting client and answer it `421`,
//! so clients are turned away with a reply instead of waiting in the backlog.
//!
//! Behind a load balancer (`[[server.proxy_protocol]]`), a connection from a
//! configured proxy must start with a PROXY header (`proxy_header`), read
//! before anything else, and from then on the client it names is the client:
//! admission, connection limits, the session span's `client`, `Received`, SPF
//! and DNSBL all see it. A proxy's connection without a valid header in time
//! gets `421 4.7.0`; a header from any other address gets `554 5.7.1`
//! (here on implicit-TLS ports, in the session on plaintext ones).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::inbound::Context;
use crate::inbound::admission;
use crate::inbound::proxy_header::{self, Sniff};
use crate::inbound::session::Session;
use crate::smtp::reply::Reply;

/// Open connections in total and per client address.
#[derive(Default)]
pub(crate) struct ConnLimits {
    inner: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Releases a connection's slot when dropped.
pub(crate) struct Slot<'a> {
    limits: &'a ConnLimits,
    ip: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut g = self.limits.inner.lock().expect("limits lock");
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.ip);
            }
        }
    }
}

/// Why a slot was not granted.
pub(crate) enum Full {
    Total,
    PerIp,
}

impl ConnLimits {
    pub(crate) fn acquire(&self, ip: IpAddr, max_total: usize, max_per_ip: usize) -> Result<Slot<'_>, Full> {
        let mut g = self.inner.lock().expect("limits lock");
        if g.0 >= max_total {
            return Err(Full::Total);
        }
        let per = g.1.get(&ip).copied().unwrap_or(0);
        if per >= max_per_ip {
            return Err(Full::PerIp);
        }
        g.0 += 1;
        *g.1.entry(ip).or_insert(0) += 1;
        Ok(Slot { limits: self, ip })
    }
}

/// Backlog of the listening sockets (std's default is 128).
pub(crate) const BACKLOG: u32 = 1024;

/// Binds a listening socket with our backlog.
pub(crate) fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

fn reserve_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// Accepts on `listener`, bound for the configured address `listen` (the key
/// of its `[[server.proxy_protocol]]` entry, if any).
pub(crate) async fn serve(
    listener: TcpListener,
    listen: std::net::SocketAddr,
    implicit_tls: bool,
    shared: Arc<Context>,
) {
    let mut backoff = Duration::from_millis(10);
    let mut reserve = reserve_fd();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shared.soft_stop.cancelled() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::from_millis(10);
                x
            }
            Err(e) => {
                tracing::error!(error = %e, "accept failed; retrying");
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) && reserve.take().is_some() {
                    // Free the reserved descriptor to take one waiting client and
                    // tell it to come back, then reserve again.
                    if let Ok((mut tcp, peer)) = listener.accept().await {
                        shared.metrics.connections.inc(&["refused-no-descriptors"]);
                        tracing::warn!(client = %peer, "out of file descriptors: connection refused with 421");
                        if !implicit_tls {
                            let _ = tcp.try_write(&Reply::TOO_MANY_CONNECTIONS.to_bytes());
                        }
                        let _ = tcp.shutdown().await;
                    }
                    reserve = reserve_fd();
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared2 = shared.clone();
        // Every line of the session is inside this span: grep its id to read
        // the session, from the connection to the last reply.
        let sid = session_id();
        let span = tracing::info_span!(
            "session",
            session = %sid,
            client = tracing::field::Empty,
            proxy = tracing::field::Empty,
            tls = tracing::field::Empty,
            cipher = tracing::field::Empty,
            client_cert = tracing::field::Empty,
        );
        shared
            .sessions
            .spawn(async move { handle(tcp, peer, listen, implicit_tls, shared2, sid).await }.instrument(span));
    }
}

/// A new session id: 16 lower-case hex digits (queue ids are upper case).
fn session_id() -> String {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    format!("{:016x}", u64::from_le_bytes(b))
}

async fn handle(
    mut tcp: TcpStream,
    conn_peer: std::net::SocketAddr,
    listen: std::net::SocketAddr,
    implicit_tls: bool,
    shared: Arc<Context>,
    sid: String,
) {
    let rt = shared.settings.load_full();
    let server = &rt.config.server;
    let span = tracing::Span::current();
    let proxy = server
        .proxy_for(listen)
        // Matched like `admission.allow`: an IPv4 proxy on a dual-stack
        // listener arrives as `::ffff:a.b.c.d`.
        .filter(|p| admission::ip_allowed(conn_peer.ip(), &p.from));
    let peer = match proxy {
        None => conn_peer,
        Some(p) => match proxy_header::read(&mut tcp, p.timeout).await {
            Ok(header) => {
                span.record("proxy", tracing::field::display(conn_peer.ip()));
                let client = header.source.unwrap_or(conn_peer);
                tracing::debug!(client = %client, proxy = %conn_peer, version = header.version, "PROXY header read");
                client
            }
            Err(e) => {
                shared.metrics.connections.inc(&["refused-proxy-header"]);
                tracing::warn!(
                    proxy = %conn_peer,
                    listen = %listen,
                    error = %e,
                    reply = %Reply::PROXY_HEADER_MISSING.one_line(),
                    "connection from a configured proxy without a valid PROXY header: refused; \
                     make the load balancer send one to this listener (HAProxy: send-proxy or send-proxy-v2), \
                     or remove its address from server.proxy_protocol.from if it speaks SMTP itself"
                );
                refuse(tcp, &Reply::PROXY_HEADER_MISSING, implicit_tls).await;
                return;
            }
        },
    };
    span.record("client", tracing::field::display(peer.ip()));
    if !admission::ip_allowed(peer.ip(), &rt.config.admission.allow) {
        shared.metrics.connections.inc(&["refused-ip"]);
        shared.metrics.admission_refusals.inc(&["ip"]);
        tracing::warn!(client = %peer, layer = "ip", reason = "client address not in admission.allow", "admission refused");
        refuse(tcp, &Reply::CLIENT_NOT_ALLOWED, implicit_tls).await;
        return;
    }
    let slot = match shared
        .limits
        .acquire(peer.ip(), server.max_connections, server.max_connections_per_ip)
    {
        Ok(slot) => slot,
        Err(full) => {
            let (reply, label) = match full {
                Full::Total => (Reply::TOO_MANY_CONNECTIONS, "refused-total-limit"),
                Full::PerIp => (Reply::TOO_MANY_FROM_IP, "refused-ip-limit"),
            };
            shared.metrics.connections.inc(&[label]);
            tracing::warn!(client = %peer, reason = label, "connection refused: limit reached");
            refuse(tcp, &reply, implicit_tls).await;
            return;
        }
    };
    if proxy.is_none() && implicit_tls && sends_proxy_header(&tcp, server.command_timeout).await {
        // On a plaintext port the session sees this in the first bytes.
        untrusted_proxy_header(&shared, peer, listen);
        let _ = tcp.shutdown().await;
        return;
    }
    shared.metrics.connections.inc(&["accepted"]);
    shared.metrics.open_sessions.fetch_add(1, Ordering::Relaxed);
    tracing::info!(port = peer.port(), "session opened");
    let session = Session::new(shared.clone(), rt.clone(), peer, listen, sid);
    let outcome = session.run(tcp, implicit_tls).await;
    shared.metrics.open_sessions.fetch_sub(1, Ordering::Relaxed);
    shared.metrics.sessions.inc(&[outcome.as_str()]);
    tracing::info!(outcome = outcome.as_str(), "session ended");
    drop(slot);
}

/// Whether an implicit-TLS client starts with a PROXY header instead of a
/// ClientHello (it speaks first, so its first bytes can be looked at).
async fn sends_proxy_header(tcp: &TcpStream, wait: Duration) -> bool {
    let mut first = [0u8; 16];
    match tokio::time::timeout(wait, tcp.peek(&mut first)).await {
        Ok(Ok(n)) => proxy_header::sniff(&first[..n]) == Sniff::Header,
        _ => false,
    }
}

/// Logs and counts a PROXY header from an address that is not a configured proxy.
pub(crate) fn untrusted_proxy_header(shared: &Context, peer: std::net::SocketAddr, listen: std::net::SocketAddr) {
    shared.metrics.connections.inc(&["refused-proxy-header"]);
    tracing::warn!(
        client = %peer,
        listen = %listen,
        reply = %Reply::PROXY_HEADER_UNTRUSTED.one_line(),
        "PROXY header from an address not in this listener's server.proxy_protocol.from: refused; \
         if the address is one of your load balancers, add it to that list"
    );
}

/// Writes a refusal and closes. On an implicit-TLS port a plaintext reply
/// cannot be read by the client, so the connection is just closed.
async fn refuse(mut tcp: TcpStream, reply: &Reply, implicit_tls: bool) {
    if !implicit_tls {
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.write_all(&reply.to_bytes())).await;
    }
    let _ = tcp.shutdown().await;
}
