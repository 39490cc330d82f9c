//! The configuration: read from TOML into typed values, validated as a whole.
//!
//! Reading never stops at the first problem: every mistake is collected with
//! its TOML path (see `reader`), so `exogate check-config` prints them all
//! and the daemon refuses to start before binding any socket. Unknown keys are
//! errors. Relative paths are relative to the config file's folder. The keys
//! are a user-facing contract (DESIGN §8): add freely, rename none.
//!
//! Owns: the typed configuration, tenants (`tenant`, read by `tenants`) and
//! policies as data (`policy`). Must never: build running objects (checks,
//! TLS configurations, sockets: `checks` and `app` do), or import any stage
//! but `smtp` and `message`.

pub mod policy;
pub mod reader;
pub mod remediation;
pub mod sender;
pub mod store;
pub mod tenant;
pub mod web;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::config::policy::PolicyConfig;
use crate::config::reader::{ConfigError, Problems, Section, parse_duration};
use crate::config::sender::{AuthConfig, DnsConfig};
use crate::config::tenant::Tenant;

/// EXO's published mail-flow ranges (Microsoft 365 endpoint set 10).
pub(crate) const EXO_RANGES: [&str; 6] = [
    "40.92.0.0/15",
    "40.107.0.0/16",
    "52.100.0.0/14",
    "104.47.0.0/17",
    "2a01:111:f400::/48",
    "2a01:111:f403::/48",
];

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub hostname: String,
    /// Listeners that offer STARTTLS.
    pub listen: Vec<SocketAddr>,
    /// Listeners that start with TLS (implicit TLS).
    pub tls_listen: Vec<SocketAddr>,
    pub state_dir: PathBuf,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Bad commands tolerated before the session is closed.
    pub max_errors: u32,
    /// Deadline for a whole command line (from the previous line on), not
    /// an idle time: a client dribbling bytes cannot stretch it.
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// Lowest average rate (bytes per second) of a DATA or BDAT body after
    /// its first `min_data_rate_grace`; 0 turns the check off.
    pub min_data_rate: u64,
    pub min_data_rate_grace: Duration,
    pub session_timeout: Duration,
    pub shutdown_grace: Duration,
    /// After the sessions: how long the queue may deliver what is due before exit (0: not at all).
    pub queue_drain: Duration,
    /// Message bodies larger than this are kept on disk, not in memory.
    pub spill_threshold: usize,
    /// Ring size of the spool's commit log in bytes (0: no log, every
    /// message is made durable by syncing its file and directory).
    pub commit_log_size: u64,
    /// How often the commit log is checkpointed (queue files synced, records retired).
    pub commit_log_checkpoint: Duration,
    /// Listeners behind a load balancer: `[[server.proxy_protocol]]`.
    pub proxy_protocol: Vec<ProxyProtocol>,
}

/// A listener that takes a PROXY protocol header (v1 or v2) from the given
/// proxies: their connections must start with one, and the client it names is
/// the one admission, logs and checks see. Any other address speaks SMTP
/// directly and is refused if it sends a header.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyProtocol {
    /// One of `server.listen` / `server.tls_listen`.
    pub listen: SocketAddr,
    /// The proxies' addresses.
    pub from: Vec<IpNet>,
    /// How long a proxy may take to send its whole header.
    pub timeout: Duration,
}

impl ServerConfig {
    /// The proxies a listener (by its configured address) takes a PROXY header from.
    pub(crate) fn proxy_for(&self, listen: SocketAddr) -> Option<&ProxyProtocol> {
        self.proxy_protocol.iter().find(|p| p.listen == listen)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertMode {
    None,
    Optional,
    Required,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub generate: bool,
    pub require: bool,
    pub client_cert: ClientCertMode,
    pub client_ca: Option<PathBuf>,
    pub client_cert_names: Vec<String>,
    pub min_version_13: bool,
}

#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    pub allow: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    Queue,
    Proxy,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub mode: DeliveryMode,
    pub retry: Vec<Duration>,
    pub max_age: Duration,
    pub dsn_retry: Vec<Duration>,
    pub max_in_memory: usize,
    pub concurrency: usize,
    pub max_per_destination: usize,
    /// Bytes of message bodies deliveries may hold in memory at once.
    pub memory_budget: u64,
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub ca: Option<PathBuf>,
    pub source_ips: Vec<IpAddr>,
    /// The only addresses a DSN to an outside sender's MX leaves from
    /// ([] = such DSNs are not sent; `0.0.0.0`/`::` = the OS's choice).
    pub dsn_source_ips: Vec<IpAddr>,
    /// EHLO names of the egress addresses that have their own (matching their PTR).
    pub source_helo: HashMap<IpAddr, String>,
    pub helo: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_messages_per_connection: usize,
    /// Port used for destinations found by MX lookup.
    pub mx_port: u16,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    /// Lines that may wait for a slow reader of standard error before new
    /// ones are dropped (and counted); read at start only.
    pub queue_lines: usize,
}

/// What `exo-setup` needs to know about how Exchange Online reaches this
/// gateway and sees it coming back (public names and addresses).
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    /// Smart host EXO's outbound connector for inbound mail delivers to ("" = server.hostname).
    pub smart_host: String,
    /// Smart host for the connector carrying sent (outgoing) mail ("" = smart_host).
    pub outgoing_smart_host: String,
    /// Name the gateway certificate must match (`-TlsDomain`; "" = smart_host).
    pub tls_domain: String,
    /// Public egress addresses EXO sees ([] = relay.source_ips).
    pub public_ips: Vec<IpNet>,
    /// Prefix of connector and rule names created in the tenant.
    pub name_prefix: String,
}

/// The whole configuration.
pub struct Config {
    pub path: PathBuf,
    /// The config file's folder: relative paths in it are relative to this.
    pub base_dir: PathBuf,
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub admission: AdmissionConfig,
    pub delivery: DeliveryConfig,
    pub relay: RelayConfig,
    /// `[dns]`: the resolver of relay, auth and DNSBL.
    pub dns: DnsConfig,
    /// `[auth]`: trusted ARC sealers.
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub exchange: ExchangeConfig,
    /// `[store]`: events, quarantine index, audit, allow lists.
    pub store: store::StoreConfig,
    pub tenants: Vec<Tenant>,
    /// Every policy by name, `default` always among them.
    pub policies: BTreeMap<String, PolicyConfig>,
    /// `[web]`: the admin web page and API.
    pub web: web::WebConfig,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{} problem(s) in {}:\n{}", .errors.len(), .path.display(), format_errors(.errors))]
    Invalid { path: PathBuf, errors: Vec<ConfigError> },
}

fn format_errors(errors: &[ConfigError]) -> String {
    errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
}

impl Config {
    pub(crate) fn load(path: &Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses `text` as if read from `path` (which anchors relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Config, LoadError> {
        let (config, errors) = Config::parse_collecting(text, path)?;
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(LoadError::Invalid {
                path: path.to_path_buf(),
                errors,
            })
        }
    }

    /// Reads `path` like [`Config::load`], but returns the configuration
    /// together with its problems, so that whoever builds on it (the check
    /// factory) can add its own and report them all at once.
    pub(crate) fn load_collecting(path: &Path) -> Result<(Config, Vec<ConfigError>), LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse_collecting(&text, path)
    }

    /// Parses `text`; only a TOML syntax error stops it. With problems, the
    /// configuration holds defaults where the values were bad.
    pub(crate) fn parse_collecting(text: &str, path: &Path) -> Result<(Config, Vec<ConfigError>), LoadError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| LoadError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let problems = Problems::default();
        let config = {
            let root = Section::root(&table, &problems);
            read(&root, &base, path)
        };
        Ok((config, problems.into_vec()))
    }

    /// Settings that load but weaken the gateway; logged at start and reload,
    /// printed by `check-config`.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.dns.from_relay_dns {
            out.push(
                "relay.dns is deprecated: the resolver serves relay, auth and DNSBL now; move the list to [dns] servers"
                    .to_string(),
            );
        }
        out.extend(self.tenant_warnings());
        out
    }

    fn tenant_warnings(&self) -> Vec<String> {
        self.tenants
            .iter()
            .enumerate()
            .filter(|(_, t)| t.tenant_id.is_none())
            .map(|(i, t)| {
                format!(
                    "tenant[{i}] ({}): no tenant_id, so its mail is recognised by X-CLOUD-SEC-AV-Info and domains alone, \
                     which another Exchange Online tenant could imitate; set tenant_id to its Microsoft Entra tenant ID",
                    t.portal
                )
            })
            .collect()
    }
}

fn read(root: &Section, base: &Path, path: &Path) -> Config {
    let empty = toml::Table::new();
    let problems = root.problems();
    let or_empty = |name: &str| {
        root.section(name)
            .unwrap_or_else(|| Section::root(&empty, problems).at(name))
    };

    let server = read_server(&or_empty("server"), base);
    let tls = read_tls(&or_empty("tls"), base, &server.state_dir);
    let admission = read_admission(&or_empty("admission"));
    let delivery = read_delivery(&or_empty("delivery"));
    let relay_section = or_empty("relay");
    let relay = read_relay(&relay_section, base);
    let dns = sender::read_dns(&or_empty("dns"), &relay_section);
    let auth = sender::read_auth(&or_empty("auth"));
    let admin = read_admin(&or_empty("admin"));
    let log = read_log(&or_empty("log"));
    let exchange = read_exchange(&or_empty("exchange"));
    // The node's own name (not server.hostname, which nodes behind one smart-host name share).
    let store = store::read_store(&or_empty("store"), &server.state_dir, &default_hostname(), base);

    let mut policies = BTreeMap::new();
    if let Some(section) = root.section("policy") {
        for (name, p) in section.named_sections() {
            policies.insert(name.clone(), PolicyConfig::read(&name, &p));
        }
    }
    if !policies.contains_key("default") {
        policies.insert("default".into(), PolicyConfig::builtin_default());
    }

    let tenant_sections = root.sections("tenant");
    let mut tenants = Vec::new();
    let mut portals: HashMap<String, String> = HashMap::new();
    let mut domains: HashMap<String, String> = HashMap::new();
    let mut journals: HashMap<String, String> = HashMap::new();
    for t in &tenant_sections {
        if let Some(tenant) = read_tenant(t, base, &policies) {
            if let Some(first) = portals.insert(tenant.portal.clone(), t.path().to_string()) {
                t.error("portal", format!("\"{}\" is already used by {first}", tenant.portal));
            }
            for d in &tenant.domains {
                if let Some(first) = domains.insert(d.clone(), tenant.portal.clone()) {
                    t.error(
                        "domains",
                        format!("domain \"{d}\" already belongs to tenant \"{first}\""),
                    );
                }
            }
            if let Some(j) = &tenant.journal_address
                && let Some(first) = journals.insert(j.to_lowercase(), tenant.portal.clone())
            {
                t.error(
                    "journal_address",
                    format!("\"{j}\" is already the journal address of tenant \"{first}\""),
                );
            }
            tenants.push(tenant);
        }
    }

    let web = web::read_web(root.section("web").as_ref(), base, &tls.cert, &tls.key, &tenants);

    Config {
        path: path.to_path_buf(),
        base_dir: base.to_path_buf(),
        server,
        tls,
        admission,
        delivery,
        relay,
        dns,
        auth,
        admin,
        log,
        exchange,
        store,
        tenants,
        policies,
        web,
    }
}

fn read_exchange(s: &Section) -> ExchangeConfig {
    let public_ips = s.parsed_list("public_ips", &[], |t| {
        ip_net(t).ok_or_else(|| format!("expected an IPv4 address or CIDR such as \"203.0.113.5\", found \"{t}\""))
    });
    for (i, net) in public_ips.iter().enumerate() {
        if matches!(net, IpNet::V6(_)) {
            s.problems().push(
                format!("{}[{i}]", s.key_path("public_ips")),
                "Exchange Online connectors accept IPv4 addresses only",
            );
        }
    }
    let name_prefix = s.string_or("name_prefix", "exogate");
    if name_prefix.is_empty() || name_prefix.len() > 40 || name_prefix.contains(['"', '`', '$', '\'', '\n']) {
        s.error(
            "name_prefix",
            "must be 1 to 40 characters without quotes, backticks, '$' or newlines",
        );
    }
    ExchangeConfig {
        smart_host: s.string_or("smart_host", ""),
        outgoing_smart_host: s.string_or("outgoing_smart_host", ""),
        tls_domain: s.string_or("tls_domain", ""),
        public_ips,
        name_prefix,
    }
}

/// The host name, as `gethostname(2)` reports it (through the `gethostname`
/// crate, so that the library needs no unsafe code).
fn default_hostname() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    if name.is_empty() { "localhost".into() } else { name }
}

fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("expected \"ip:port\" such as \"0.0.0.0:25\" or \"[::]:25\", found \"{text}\""))
}

/// The commit log's ring: 32 MiB holds about 2,700 messages of 10 KB between
/// checkpoints; bounds keep a typo from filling the disk.
const DEFAULT_COMMIT_LOG: u64 = 32 << 20;
const MIN_COMMIT_LOG: u64 = 1 << 20;
const MAX_COMMIT_LOG: u64 = 4 << 30;

fn read_server(s: &Section, base: &Path) -> ServerConfig {
    let hostname = s.opt_string("hostname").unwrap_or_else(default_hostname);
    if hostname.is_empty() || hostname.contains(|c: char| c.is_whitespace() || c.is_control()) {
        s.error("hostname", format!("must be a host name, found \"{hostname}\""));
    }
    let listen = s.parsed_list("listen", &[], socket_addr);
    let tls_listen = s.parsed_list("tls_listen", &[], socket_addr);
    if !s.contains("listen") && !s.contains("tls_listen") {
        s.error(
            "listen",
            "missing: give at least one address to listen on, e.g. [\"0.0.0.0:25\"]",
        );
    }
    let state_dir = s
        .opt_path("state_dir", base)
        .unwrap_or_else(|| PathBuf::from("/var/lib/exogate"));
    let proxy_protocol = read_proxy_protocol(s, &listen, &tls_listen);
    ServerConfig {
        hostname,
        listen,
        tls_listen,
        state_dir,
        max_message_size: {
            let v = s.size_or("max_message_size", 157_286_400);
            if v < 1024 {
                s.error("max_message_size", format!("must be at least 1024 bytes, found {v}"));
            }
            v
        },
        max_recipients: s.u64_in("max_recipients", 1000, 1, 100_000) as usize,
        max_connections: s.u64_in("max_connections", 2000, 1, 1_000_000) as usize,
        max_connections_per_ip: s.u64_in("max_connections_per_ip", 200, 1, 1_000_000) as usize,
        max_errors: s.u64_in("max_errors", 10, 1, 1000) as u32,
        command_timeout: s.duration_or("command_timeout", Duration::from_secs(300)),
        data_timeout: s.duration_or("data_timeout", Duration::from_secs(600)),
        min_data_rate: s.size_or("min_data_rate", 1024),
        min_data_rate_grace: s.duration_or("min_data_rate_grace", Duration::from_secs(30)),
        session_timeout: s.duration_or("session_timeout", Duration::from_secs(3600)),
        shutdown_grace: s.duration_or("shutdown_grace", Duration::from_secs(30)),
        queue_drain: s.duration_or("queue_drain", Duration::from_secs(5)),
        spill_threshold: s.size_or("spill_threshold", 1024 * 1024) as usize,
        commit_log_size: {
            let v = s.size_or("commit_log_size", DEFAULT_COMMIT_LOG);
            if v != 0 && !(MIN_COMMIT_LOG..=MAX_COMMIT_LOG).contains(&v) {
                s.error(
                    "commit_log_size",
                    format!("must be 0 (no commit log) or from 1 MiB to 4 GiB, found {v} bytes"),
                );
            }
            v
        },
        commit_log_checkpoint: {
            let v = s.duration_or("commit_log_checkpoint", Duration::from_millis(250));
            if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&v) {
                s.error(
                    "commit_log_checkpoint",
                    format!("must be from 10ms to 1h, found {}ms", v.as_millis()),
                );
            }
            v
        },
        proxy_protocol,
    }
}

/// `[[server.proxy_protocol]]`: `listen` names a configured listener (once),
/// `from` the proxies (at least one), `timeout` bounds the header (default 5 s).
fn read_proxy_protocol(s: &Section, listen: &[SocketAddr], tls_listen: &[SocketAddr]) -> Vec<ProxyProtocol> {
    let mut out: Vec<ProxyProtocol> = Vec::new();
    for p in s.sections("proxy_protocol") {
        let addr = match p.opt_string("listen").map(|t| socket_addr(&t)) {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                p.error("listen", e);
                continue;
            }
            None => {
                p.error(
                    "listen",
                    "missing: the server.listen or server.tls_listen address behind the proxy",
                );
                continue;
            }
        };
        if !listen.contains(&addr) && !tls_listen.contains(&addr) {
            p.error(
                "listen",
                format!("{addr} is not one of server.listen or server.tls_listen"),
            );
        }
        if out.iter().any(|o| o.listen == addr) {
            p.error(
                "listen",
                format!("{addr} already has a [[server.proxy_protocol]] entry"),
            );
        }
        let from = p.parsed_list("from", &[], |t| {
            ip_net(t).ok_or_else(|| format!("expected a proxy's address or CIDR such as \"10.0.0.5\", found \"{t}\""))
        });
        let listed = p
            .value("from")
            .and_then(|v| v.as_array())
            .is_some_and(|a| !a.is_empty());
        if from.is_empty() && !listed {
            p.error(
                "from",
                "missing: list the load balancers' addresses, e.g. [\"10.0.0.5\"]",
            );
        }
        let timeout = p.duration_or("timeout", Duration::from_secs(5));
        if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(300) {
            p.error("timeout", format!("must be between 1s and 5m, found {timeout:?}"));
        }
        out.push(ProxyProtocol {
            listen: addr,
            from,
            timeout,
        });
    }
    out
}

fn read_tls(s: &Section, base: &Path, state_dir: &Path) -> TlsConfig {
    let cert = s
        .opt_path("cert", base)
        .unwrap_or_else(|| state_dir.join("tls/cert.pem"));
    let key = s.opt_path("key", base).unwrap_or_else(|| state_dir.join("tls/key.pem"));
    let generate = s.bool_or("generate", false);
    let client_cert = s.choice_or(
        "client_cert",
        ClientCertMode::Optional,
        &[
            ("none", ClientCertMode::None),
            ("optional", ClientCertMode::Optional),
            ("required", ClientCertMode::Required),
        ],
    );
    let client_cert_names: Vec<String> = s
        .strings_or("client_cert_names", &[])
        .iter()
        .map(|n| n.to_lowercase())
        .collect();
    if !client_cert_names.is_empty() && client_cert == ClientCertMode::None {
        s.error(
            "client_cert_names",
            "names are set but client_cert = \"none\" never asks for a certificate",
        );
    }
    let client_ca = s.opt_path("client_ca", base);
    if !generate {
        for (key_name, p) in [("cert", &cert), ("key", &key)] {
            if !p.exists() {
                s.error(
                    key_name,
                    format!(
                        "file {} does not exist (set generate = true to create a self-signed pair)",
                        p.display()
                    ),
                );
            }
        }
    }
    for (key_name, p) in [("client_ca", &client_ca)] {
        if let Some(p) = p
            && !p.exists()
        {
            s.error(key_name, format!("file {} does not exist", p.display()));
        }
    }
    let min_version_13 = s.choice_or("min_version", false, &[("1.2", false), ("1.3", true)]);
    TlsConfig {
        cert,
        key,
        generate,
        require: s.bool_or("require", true),
        client_cert,
        client_ca,
        client_cert_names,
        min_version_13,
    }
}

/// A CIDR block, or an address standing for its own /32 or /128.
fn ip_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn read_admission(s: &Section) -> AdmissionConfig {
    let allow = s.parsed_list("allow", &EXO_RANGES, |t| {
        ip_net(t).ok_or_else(|| format!("expected a CIDR such as \"40.92.0.0/15\", found \"{t}\""))
    });
    AdmissionConfig { allow }
}

fn read_delivery(s: &Section) -> DeliveryConfig {
    let mode = s.choice_or(
        "mode",
        DeliveryMode::Queue,
        &[("queue", DeliveryMode::Queue), ("proxy", DeliveryMode::Proxy)],
    );
    let retry = s.parsed_list("retry", &["1m", "5m", "15m", "30m", "1h", "2h"], parse_duration);
    if s.contains("retry") && retry.is_empty() {
        s.error("retry", "must list at least one interval, e.g. [\"1m\", \"5m\"]");
    }
    let memory_budget = s.size_or("memory_budget", 256 * 1024 * 1024);
    if memory_budget < 1024 * 1024 {
        s.error("memory_budget", "must be at least 1MiB");
    }
    DeliveryConfig {
        mode,
        retry,
        max_age: s.duration_or("max_age", Duration::from_secs(2 * 86400)),
        dsn_retry: s.parsed_list("dsn_retry", &["1m", "5m", "30m"], parse_duration),
        max_in_memory: s.u64_in("max_in_memory", 10_000, 10, 10_000_000) as usize,
        concurrency: s.u64_in("concurrency", 100, 1, 100_000) as usize,
        max_per_destination: s.u64_in("max_per_destination", 20, 1, 10_000) as usize,
        memory_budget,
    }
}

fn read_relay(s: &Section, base: &Path) -> RelayConfig {
    let ca = s.opt_path("ca", base);
    if let Some(p) = &ca
        && !p.exists()
    {
        s.error("ca", format!("file {} does not exist", p.display()));
    }
    let (source_ips, source_helo) = read_source_ips(s);
    let dsn_source_ips = s.parsed_list("dsn_source_ips", &[], |t| {
        t.parse::<IpAddr>()
            .map_err(|_| format!("expected an IP address, found \"{t}\""))
    });
    RelayConfig {
        ca,
        source_ips,
        source_helo,
        dsn_source_ips,
        helo: s.string_or("helo", ""),
        connect_timeout: s.duration_or("connect_timeout", Duration::from_secs(30)),
        command_timeout: s.duration_or("command_timeout", Duration::from_secs(300)),
        data_timeout: s.duration_or("data_timeout", Duration::from_secs(600)),
        idle_timeout: s.duration_or("idle_timeout", Duration::from_secs(20)),
        max_messages_per_connection: s.u64_in("max_messages_per_connection", 100, 1, 100_000) as usize,
        mx_port: s.u64_in("mx_port", 25, 1, 65535) as u16,
    }
}

/// `relay.source_ips`: each entry an address, or `{ ip = "…", helo = "…" }`
/// for an address that says its own EHLO name (the name its PTR gives).
fn read_source_ips(s: &Section) -> (Vec<IpAddr>, HashMap<IpAddr, String>) {
    let mut ips = Vec::new();
    let mut helo = HashMap::new();
    let Some(value) = s.value("source_ips") else {
        return (ips, helo);
    };
    let Some(items) = value.as_array() else {
        s.error("source_ips", "expected a list of addresses or { ip, helo } tables");
        return (ips, helo);
    };
    let key = s.key_path("source_ips");
    let parse_ip = |t: &str, at: String| match t.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            s.problems().push(at, format!("expected an IP address, found \"{t}\""));
            None
        }
    };
    for (i, item) in items.iter().enumerate() {
        if let Some(t) = item.as_str() {
            ips.extend(parse_ip(t, format!("{key}[{i}]")));
        } else if let Some(table) = item.as_table() {
            for k in table.keys().filter(|k| *k != "ip" && *k != "helo") {
                s.problems().push(format!("{key}[{i}].{k}"), "unknown key");
            }
            let ip = match table.get("ip").and_then(|v| v.as_str()) {
                Some(t) => parse_ip(t, format!("{key}[{i}].ip")),
                None => {
                    s.problems()
                        .push(format!("{key}[{i}].ip"), "missing: the egress address");
                    None
                }
            };
            let name = match table.get("helo") {
                None => None,
                Some(v) => match v.as_str() {
                    Some(n) if valid_helo(n) => Some(n.to_string()),
                    _ => {
                        s.problems().push(
                            format!("{key}[{i}].helo"),
                            "expected a host name (letters, digits, '-', '.')",
                        );
                        None
                    }
                },
            };
            if let Some(ip) = ip {
                ips.push(ip);
                if let Some(n) = name {
                    helo.insert(ip, n);
                }
            }
        } else {
            s.problems().push(
                format!("{key}[{i}]"),
                "expected an address or a table { ip = \"…\", helo = \"…\" }",
            );
        }
    }
    (ips, helo)
}

/// A plausible EHLO host name: what goes on the wire after "EHLO ".
fn valid_helo(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn read_admin(s: &Section) -> AdminConfig {
    let listen = match s.opt_string("listen") {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 8025))),
        Some(t) if t.is_empty() => None,
        Some(t) => match socket_addr(&t) {
            Ok(a) => Some(a),
            Err(e) => {
                s.error("listen", e);
                None
            }
        },
    };
    AdminConfig { listen }
}

fn read_log(s: &Section) -> LogConfig {
    LogConfig {
        format: s.choice_or(
            "format",
            LogFormat::Text,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        ),
        level: s.string_or("level", "info"),
        // About 3 s of `info` lines at the gateway's peak rate on the
        // benchmark machine, and a few MB at most while the queue is full
        // (a line holds its own bytes; the queue reserves 32 B per slot).
        queue_lines: s.u64_in("queue_lines", 16_384, 64, 262_144) as usize,
    }
}

mod tenants;
use tenants::read_tenant;

#[cfg(test)]
mod tests;
