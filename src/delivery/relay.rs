//! Relaying back to the tenant: which hosts to try, from which egress IP,
//! reusing connections, and what each recipient's result is.
//!
//! Destinations come from the tenant's `deliver_to` (tried in order) or the MX
//! of a domain (lowest preference first, implicit MX per RFC 5321). Each
//! connection binds one of `relay.source_ips` before connecting (round robin;
//! an address that cannot be bound is skipped, logged and rested for a
//! minute) and must negotiate verified TLS (see `smtp_client`). Connections
//! are pooled per route and reused for later messages.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpSocket;

use crate::config::RelayConfig;
use crate::delivery::route::{Route, Targets};
use crate::delivery::smtp_client::{Client, ClientError, ClientSettings, MessageBytes};
use crate::dns::{Dns, DnsError};
use crate::message::envelope::Envelope;
use crate::smtp::reply::Reply;

/// The result for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RcptResult {
    Delivered(Reply),
    Temporary(Reply),
    Permanent(Reply),
}

impl RcptResult {
    pub(crate) fn from_reply(reply: Reply) -> RcptResult {
        match reply.code / 100 {
            2 => RcptResult::Delivered(reply),
            5 => RcptResult::Permanent(reply),
            _ => RcptResult::Temporary(reply),
        }
    }

    pub(crate) fn reply(&self) -> &Reply {
        match self {
            RcptResult::Delivered(r) | RcptResult::Temporary(r) | RcptResult::Permanent(r) => r,
        }
    }
}

/// What one delivery attempt achieved.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    /// (recipient index, result) for every recipient offered.
    pub(crate) results: Vec<(usize, RcptResult)>,
    /// The server that answered, when one did.
    pub(crate) server: Option<String>,
    /// The egress address the attempt left from, when a connection was made.
    pub(crate) egress: Option<IpAddr>,
}

/// The egress address set.
pub(crate) struct Egress {
    ips: Vec<IpAddr>,
    next: AtomicUsize,
    resting: Mutex<HashMap<IpAddr, Instant>>,
}

const REST: Duration = Duration::from_secs(60);

impl Egress {
    pub(crate) fn new(ips: Vec<IpAddr>) -> Egress {
        Egress {
            ips,
            next: AtomicUsize::new(0),
            resting: Mutex::new(HashMap::new()),
        }
    }

    /// Candidates of the destination's family, in round-robin order, rested ones last.
    fn candidates(&self, dest: IpAddr) -> Vec<IpAddr> {
        let same: Vec<IpAddr> = self
            .ips
            .iter()
            .copied()
            .filter(|ip| ip.is_ipv4() == dest.is_ipv4())
            .collect();
        if same.is_empty() {
            return same;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % same.len();
        let now = Instant::now();
        let resting = self.resting.lock().expect("egress lock");
        let mut rotated: Vec<IpAddr> = same[start..].iter().chain(&same[..start]).copied().collect();
        rotated.sort_by_key(|ip| resting.get(ip).is_some_and(|until| *until > now));
        rotated
    }

    fn rest(&self, ip: IpAddr) {
        self.resting
            .lock()
            .expect("egress lock")
            .insert(ip, Instant::now() + REST);
    }
}

/// The relay: settings, resolver, egress set and the connection pool.
pub(crate) struct Relay {
    settings: RelaySettings,
    dns: Arc<Dns>,
    pub(crate) egress: Egress,
    /// Where DSNs to outside senders leave from (`relay.dsn_source_ips`).
    dsn_egress: Egress,
    pool: Mutex<HashMap<String, Vec<Client>>>,
}

#[derive(Clone)]
struct RelaySettings {
    helo: String,
    /// Egress addresses with their own EHLO name.
    source_helo: HashMap<IpAddr, String>,
    connect_timeout: Duration,
    command_timeout: Duration,
    data_timeout: Duration,
    idle_timeout: Duration,
    max_per_connection: usize,
}

impl Relay {
    pub(crate) fn new(cfg: &RelayConfig, hostname: &str, dns: Arc<Dns>) -> Result<Relay, String> {
        Ok(Relay {
            settings: RelaySettings {
                helo: if cfg.helo.is_empty() {
                    hostname.to_string()
                } else {
                    cfg.helo.clone()
                },
                source_helo: cfg.source_helo.clone(),
                connect_timeout: cfg.connect_timeout,
                command_timeout: cfg.command_timeout,
                data_timeout: cfg.data_timeout,
                idle_timeout: cfg.idle_timeout,
                max_per_connection: cfg.max_messages_per_connection,
            },
            dns,
            egress: Egress::new(cfg.source_ips.clone()),
            dsn_egress: Egress::new(cfg.dsn_source_ips.clone()),
            pool: Mutex::new(HashMap::new()),
        })
    }

    fn client_settings(&self, route: &Route) -> ClientSettings {
        ClientSettings {
            helo: self.settings.helo.clone(),
            tls: route.tls.clone(),
            command_timeout: self.settings.command_timeout,
            data_timeout: self.settings.data_timeout,
        }
    }

    /// Delivers the message to the recipients at `indices`.
    pub(crate) async fn deliver(
        &self,
        route: &Route,
        envelope: &Envelope,
        indices: &[usize],
        message: &MessageBytes<'_>,
    ) -> Attempt {
        // A pooled connection first; if it turns out dead, a fresh one.
        while let Some(mut client) = self.take_pooled(&route.key) {
            match client.transaction(envelope, indices, message).await {
                Ok(result) => return self.finish(route, client, indices, result.rcpts),
                Err(e) => {
                    tracing::debug!(server = %client.server, error = %e, "pooled connection unusable, opening a new one");
                }
            }
        }
        let mut client = match self.connect(route).await {
            Ok(c) => c,
            Err(e) => {
                let result = if e.permanent {
                    RcptResult::Permanent(e.reply)
                } else {
                    RcptResult::Temporary(e.reply)
                };
                return Attempt {
                    results: indices.iter().map(|&i| (i, result.clone())).collect(),
                    server: None,
                    egress: None,
                };
            }
        };
        match client.transaction(envelope, indices, message).await {
            Ok(result) => self.finish(route, client, indices, result.rcpts),
            Err(e) => {
                tracing::warn!(server = %client.server, error = %e, "delivery attempt failed");
                Attempt {
                    results: indices.iter().map(|&i| (i, RcptResult::Temporary(e.reply()))).collect(),
                    server: Some(client.server.clone()),
                    egress: client.egress,
                }
            }
        }
    }

    fn finish(&self, route: &Route, client: Client, indices: &[usize], replies: Vec<Reply>) -> Attempt {
        let attempt = Attempt {
            results: indices
                .iter()
                .copied()
                .zip(replies.into_iter().map(RcptResult::from_reply))
                .collect(),
            server: Some(client.server.clone()),
            egress: client.egress,
        };
        self.give_back(&route.key, client);
        attempt
    }

    fn take_pooled(&self, key: &str) -> Option<Client> {
        let mut pool = self.pool.lock().expect("pool lock");
        let list = pool.get_mut(key)?;
        while let Some(client) = list.pop() {
            if client.last_used.elapsed() < self.settings.idle_timeout {
                return Some(client);
            }
            // Idle too long: the server may have closed it; dropping closes our side.
        }
        None
    }

    /// A pooled connection for `route`, or a new one.
    pub(crate) async fn checkout(&self, route: &Route) -> Result<Client, ConnectFailure> {
        match self.take_pooled(&route.key) {
            Some(client) => Ok(client),
            None => self.connect(route).await,
        }
    }

    /// Returns a connection in a clean state (after a completed transaction or RSET) to the pool.
    pub(crate) fn give_back(&self, key: &str, client: Client) {
        if client.transactions >= self.settings.max_per_connection {
            tokio::spawn(client.quit());
            return;
        }
        self.pool
            .lock()
            .expect("pool lock")
            .entry(key.to_string())
            .or_default()
            .push(client);
    }

    /// Closes idle pooled connections past their idle timeout.
    pub(crate) fn prune(&self) {
        let mut stale = Vec::new();
        {
            let mut pool = self.pool.lock().expect("pool lock");
            for list in pool.values_mut() {
                let (keep, old): (Vec<Client>, Vec<Client>) = std::mem::take(list)
                    .into_iter()
                    .partition(|c| c.last_used.elapsed() < self.settings.idle_timeout);
                *list = keep;
                stale.extend(old);
            }
        }
        for c in stale {
            tokio::spawn(c.quit());
        }
    }

    /// Opens a new verified TLS connection to the first target that answers.
    pub(crate) async fn connect(&self, route: &Route) -> Result<Client, ConnectFailure> {
        // Permanent only if every host failed permanently and the route allows it.
        let dns_failure = |e: DnsError| ConnectFailure::dns(e, route.dns_may_bounce);
        let hosts: Vec<(String, u16)> = match &route.targets {
            Targets::Hosts(list) => list.iter().map(|h| (h.host.clone(), h.port)).collect(),
            Targets::Mx { domain, port } => match self.dns.mx(domain).await {
                Ok(hosts) => hosts.into_iter().map(|h| (h, *port)).collect(),
                Err(e) => return Err(dns_failure(e)),
            },
        };
        let settings = self.client_settings(route);
        let mut last: Option<ConnectFailure> = None;
        let mut all_permanent = true;
        for (host, port) in hosts {
            let ips = match self.dns.addresses(&host).await {
                Ok(ips) => ips,
                Err(e) => {
                    tracing::warn!(%host, error = %e, "cannot resolve downstream host");
                    let failure = dns_failure(e);
                    all_permanent &= failure.permanent;
                    last = Some(failure);
                    continue;
                }
            };
            for ip in ips {
                let addr = SocketAddr::new(ip, port);
                match self.open_one(addr, &host, &settings, route.dsn_to_internet).await {
                    Ok(client) => return Ok(client),
                    Err(e) => {
                        tracing::warn!(%host, %addr, error = %e, "downstream connection failed");
                        all_permanent = false;
                        last = Some(ConnectFailure {
                            permanent: false,
                            reply: e.reply(),
                        });
                    }
                }
            }
        }
        let mut failure = last.unwrap_or(ConnectFailure {
            permanent: false,
            reply: Reply::new(451, (4, 4, 0), "no downstream host to try"),
        });
        if failure.permanent && !all_permanent {
            failure = ConnectFailure {
                permanent: false,
                reply: Reply::new(451, (4, 4, 0), failure.reply.text.into_owned()),
            };
        }
        Err(failure)
    }

    async fn open_one(
        &self,
        addr: SocketAddr,
        host: &str,
        settings: &ClientSettings,
        dsn_to_internet: bool,
    ) -> Result<Client, ClientError> {
        let tcp = if dsn_to_internet {
            if self.dsn_egress.ips.is_empty() {
                return Err(ClientError::Connect {
                    addr,
                    detail: "relay.dsn_source_ips is empty: DSNs do not leave from the egress addresses".into(),
                });
            }
            self.tcp_connect(addr, &self.dsn_egress, "relay.dsn_source_ips").await?
        } else {
            self.tcp_connect(addr, &self.egress, "relay.source_ips").await?
        };
        // An egress address with its own name says it (what its PTR resolves to).
        let egress = tcp.local_addr().ok().map(|a| a.ip());
        match egress.and_then(|ip| self.settings.source_helo.get(&ip)) {
            Some(name) => {
                let settings = ClientSettings {
                    helo: name.clone(),
                    ..settings.clone()
                };
                Client::open(tcp, addr, host, &settings).await
            }
            None => Client::open(tcp, addr, host, settings).await,
        }
    }

    /// Connects from an address of `egress` (or the OS's choice when none is
    /// configured); `key` names the setting in errors.
    async fn tcp_connect(
        &self,
        addr: SocketAddr,
        egress: &Egress,
        key: &str,
    ) -> Result<tokio::net::TcpStream, ClientError> {
        let fail = |detail: String| ClientError::Connect { addr, detail };
        let new_socket = || {
            if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
        };
        if egress.ips.is_empty() {
            let socket = new_socket().map_err(|e| fail(e.to_string()))?;
            let stream = tokio::time::timeout(self.settings.connect_timeout, socket.connect(addr))
                .await
                .map_err(|_| fail("connect timed out".into()))?
                .map_err(|e| fail(e.to_string()))?;
            // Commands and replies are small and pipelined: without TCP_NODELAY,
            // Nagle's algorithm and the peer's delayed ACK add ~40 ms per message.
            let _ = stream.set_nodelay(true);
            return Ok(stream);
        }
        let candidates = egress.candidates(addr.ip());
        if candidates.is_empty() {
            return Err(fail(format!(
                "no egress address of the {} family is configured in {key}",
                if addr.is_ipv4() { "IPv4" } else { "IPv6" }
            )));
        }
        let mut last = String::new();
        for source in candidates {
            let socket = new_socket().map_err(|e| fail(e.to_string()))?;
            if let Err(e) = socket.bind(SocketAddr::new(source, 0)) {
                tracing::warn!(%source, error = %e, "egress address unusable, skipping it for a minute");
                egress.rest(source);
                last = format!("cannot bind egress address {source}: {e}");
                continue;
            }
            match tokio::time::timeout(self.settings.connect_timeout, socket.connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => return Err(fail(format!("from {source}: {e}"))),
                Err(_) => return Err(fail(format!("from {source}: connect timed out"))),
            }
        }
        Err(fail(last))
    }
}

/// Why no connection could be opened.
#[derive(Debug, Clone)]
pub(crate) struct ConnectFailure {
    pub(crate) permanent: bool,
    pub(crate) reply: Reply,
}

impl ConnectFailure {
    fn dns(e: DnsError, may_bounce: bool) -> ConnectFailure {
        let permanent = may_bounce && e.is_permanent();
        ConnectFailure {
            permanent,
            reply: if permanent {
                Reply::new(550, (5, 1, 2), e.to_string())
            } else {
                Reply::new(451, (4, 4, 3), e.to_string())
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_rotates_within_the_family_and_rests_bad_addresses() {
        let e = Egress::new(vec![
            "127.0.0.2".parse().unwrap(),
            "127.0.0.3".parse().unwrap(),
            "::1".parse().unwrap(),
        ]);
        let dest: IpAddr = "127.0.0.1".parse().unwrap();
        let a = e.candidates(dest);
        let b = e.candidates(dest);
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], b[0], "round robin");
        e.rest("127.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(e.candidates(dest)[0], "127.0.0.3".parse::<IpAddr>().unwrap());
        }
        assert_eq!(
            e.candidates("::1".parse().unwrap()),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
    }
}
