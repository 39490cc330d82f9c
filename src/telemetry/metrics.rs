//! Every metric the gateway exports, in one place, rendered by
//! `prometheus-client` in the OpenMetrics text format for `/metrics`.
//!
//! Counters and histograms are `prometheus-client` families with fixed label
//! names; gauges are sampled at render time from the components that own the
//! numbers (queue size, queue age, open sessions, certificates, disk). Label
//! values come from configuration (tenant portals, check names) or from a
//! fixed set (actions, results), never from message content, so the series
//! count is bounded; each value is interned once, so after its first use an
//! increment is a hash lookup and an atomic add, never an allocation.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

/// The content type of [`Metrics::render`].
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label values seen so far (bounded: see the module header).
static VALUES: LazyLock<RwLock<HashSet<Arc<str>>>> = LazyLock::new(Default::default);

fn intern(value: &str) -> Arc<str> {
    if let Some(v) = VALUES.read().unwrap_or_else(|e| e.into_inner()).get(value) {
        return v.clone();
    }
    let mut values = VALUES.write().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = values.get(value) {
        return v.clone();
    }
    let v: Arc<str> = Arc::from(value);
    values.insert(v.clone());
    v
}

/// A label set: (name, value) per label.
type Labels<const N: usize> = [(&'static str, Arc<str>); N];

fn labels<const N: usize>(names: &[&'static str; N], values: &[&str; N]) -> Labels<N> {
    std::array::from_fn(|i| (names[i], intern(values[i])))
}

/// Registers `metric` under `name` with `help` as written here (the
/// encoder adds the `_total` of a counter and the full stop of the help).
fn register(registry: &mut Registry, name: &str, help: &str, metric: impl Metric) {
    let name = name.strip_suffix("_total").unwrap_or(name);
    registry.register(name, help.trim_end_matches('.'), Declared(metric));
}

/// A metric family declared (HELP and TYPE) before its first series, as
/// OpenMetrics allows: `prometheus-client` leaves out an empty family, and a
/// fresh gateway would then not show what its alert rules and dashboard name.
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// A counter family with fixed label names.
pub(crate) struct CounterVec<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    family: Family<Labels<N>, Counter>,
}

impl<const N: usize> CounterVec<N> {
    fn new(name: &'static str, help: &'static str, labels: [&'static str; N]) -> CounterVec<N> {
        CounterVec {
            name,
            help,
            labels,
            family: Family::default(),
        }
    }

    pub(crate) fn inc(&self, label_values: &[&str; N]) {
        self.add(label_values, 1);
    }

    pub(crate) fn add(&self, label_values: &[&str; N], n: u64) {
        self.family.get_or_create(&labels(&self.labels, label_values)).inc_by(n);
    }

    /// A family without labels is registered as its one metric, so its
    /// sample reads `name 1`, not `name{} 1` (and shows 0 before any count).
    fn register(&self, registry: &mut Registry) {
        if N == 0 {
            let metric = self.family.get_or_create_owned(&labels(&self.labels, &[""; N]));
            register(registry, self.name, self.help, metric);
        } else {
            register(registry, self.name, self.help, self.family.clone());
        }
    }
}

/// A histogram family (seconds) with fixed label names.
pub(crate) struct HistogramVec<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    family: Family<Labels<N>, Histogram, fn() -> Histogram>,
}

impl<const N: usize> HistogramVec<N> {
    fn new(
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
        buckets: fn() -> Histogram,
    ) -> HistogramVec<N> {
        HistogramVec {
            name,
            help,
            labels,
            family: Family::new_with_constructor(buckets),
        }
    }

    pub(crate) fn observe(&self, label_values: &[&str; N], d: Duration) {
        self.family
            .get_or_create(&labels(&self.labels, label_values))
            .observe(d.as_secs_f64());
    }

    /// A family without labels is registered as its one metric, so its
    /// sample reads `name 1`, not `name{} 1` (and shows 0 before any count).
    fn register(&self, registry: &mut Registry) {
        if N == 0 {
            let metric = self.family.get_or_create_owned(&labels(&self.labels, &[""; N]));
            register(registry, self.name, self.help, metric);
        } else {
            register(registry, self.name, self.help, self.family.clone());
        }
    }
}

const CHECK_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];
const DELIVERY_BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0];
/// A durable write takes about a millisecond on a good disk; its tail is what
/// the disk adds to every 250.
const COMMIT_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

/// The gateway's metrics.
pub(crate) struct Metrics {
    pub(crate) connections: CounterVec<1>,
    pub(crate) sessions: CounterVec<1>,
    pub(crate) tls_handshakes: CounterVec<1>,
    pub(crate) admission_refusals: CounterVec<1>,
    pub(crate) messages: CounterVec<3>,
    pub(crate) check_duration: HistogramVec<1>,
    pub(crate) check_errors: CounterVec<1>,
    pub(crate) deliveries: CounterVec<1>,
    pub(crate) delivery_duration: HistogramVec<0>,
    /// Time to make an accepted message durable before its reply.
    pub(crate) spool_commit_duration: HistogramVec<0>,
    /// Accepted messages made durable, by path: `log` (commit log) or `direct`.
    pub(crate) spool_commits: CounterVec<1>,
    pub(crate) dsns: CounterVec<1>,
    pub(crate) reloads: CounterVec<1>,
    pub(crate) spool_corrupt: CounterVec<0>,
    pub(crate) journal_reports: CounterVec<2>,
    /// Store writes from the mail path: written, failed, dropped, unavailable.
    pub(crate) store_writes: CounterVec<1>,
    /// Quarantined messages removed by retention or the size cap.
    pub(crate) quarantine_pruned: CounterVec<1>,
    pub(crate) quarantine_bytes: AtomicI64,
    pub(crate) quarantine_cap_bytes: AtomicI64,
    pub(crate) open_sessions: AtomicI64,
    pub(crate) queue_size: AtomicI64,
    pub(crate) queue_oldest: AtomicI64,
    pub(crate) started: AtomicU64,
    /// Per tenant (portal; "-" for DSNs to a sender's MX): (messages, oldest received).
    pub(crate) queue_by_tenant: Mutex<BTreeMap<String, (i64, i64)>>,
    pub(crate) quarantine_size: AtomicI64,
    /// The certificates in use: (use, tenant or "", notAfter in Unix seconds).
    pub(crate) certificates: Mutex<Vec<(&'static str, String, i64)>>,
    /// The state directory, whose file system's free space is reported.
    pub(crate) state_dir: Mutex<Option<PathBuf>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        Metrics {
            connections: CounterVec::new(
                "exogate_connections_total",
                "Inbound TCP connections accepted, by outcome of the connect stage.",
                ["result"],
            ),
            sessions: CounterVec::new(
                "exogate_sessions_total",
                "SMTP sessions ended, by outcome.",
                ["outcome"],
            ),
            tls_handshakes: CounterVec::new(
                "exogate_tls_handshakes_total",
                "Inbound TLS handshakes, by negotiated version (or failed).",
                ["version"],
            ),
            admission_refusals: CounterVec::new(
                "exogate_admission_refusals_total",
                "Refusals by admission layer.",
                ["layer"],
            ),
            messages: CounterVec::new(
                "exogate_messages_total",
                "Messages that reached a verdict, by tenant, direction and action carried out.",
                ["tenant", "direction", "action"],
            ),
            check_duration: HistogramVec::new(
                "exogate_check_duration_seconds",
                "Time each check took per message.",
                ["check"],
                || Histogram::new(CHECK_BUCKETS),
            ),
            check_errors: CounterVec::new(
                "exogate_check_errors_total",
                "Checks that failed or timed out.",
                ["check"],
            ),
            deliveries: CounterVec::new(
                "exogate_deliveries_total",
                "Recipient delivery results downstream.",
                ["result"],
            ),
            delivery_duration: HistogramVec::new(
                "exogate_delivery_duration_seconds",
                "Time from acceptance to final delivery of a message.",
                [],
                || Histogram::new(DELIVERY_BUCKETS),
            ),
            spool_commit_duration: HistogramVec::new(
                "exogate_spool_commit_duration_seconds",
                "Time to make an accepted message durable (write and rename, then its commit log record or its file and directory fsyncs) before its reply.",
                [],
                || Histogram::new(COMMIT_BUCKETS),
            ),
            spool_commits: CounterVec::new(
                "exogate_spool_commits_total",
                "Accepted messages made durable, by path: log (a commit log record) or direct (file and directory fsynced).",
                ["path"],
            ),
            dsns: CounterVec::new(
                "exogate_dsns_total",
                "Delivery status notifications generated or dropped.",
                ["event"],
            ),
            reloads: CounterVec::new("exogate_reloads_total", "Configuration reloads, by result.", ["result"]),
            spool_corrupt: CounterVec::new("exogate_spool_corrupt_total", "Damaged queue files moved aside.", []),
            journal_reports: CounterVec::new(
                "exogate_journal_reports_total",
                "Journal reports received (monitor mode), by tenant and result: scanned, or why one could not be read (kept in quarantine-reports/).",
                ["tenant", "result"],
            ),
            store_writes: CounterVec::new(
                "exogate_store_writes_total",
                "Event, delivery and quarantine records from the mail path, by result (written, failed, dropped, unavailable).",
                ["result"],
            ),
            quarantine_pruned: CounterVec::new(
                "exogate_quarantine_pruned_total",
                "Quarantined messages removed, by reason (retention, cap).",
                ["reason"],
            ),
            quarantine_bytes: AtomicI64::new(0),
            quarantine_cap_bytes: AtomicI64::new(0),
            open_sessions: AtomicI64::new(0),
            queue_size: AtomicI64::new(0),
            queue_oldest: AtomicI64::new(0),
            started: AtomicU64::new(now_unix() as u64),
            queue_by_tenant: Mutex::new(BTreeMap::new()),
            quarantine_size: AtomicI64::new(0),
            certificates: Mutex::new(Vec::new()),
            state_dir: Mutex::new(None),
        }
    }

    /// The whole exposition (OpenMetrics text, [`CONTENT_TYPE`]).
    pub(crate) fn render(&self) -> String {
        let mut registry = Registry::default();
        for c in [
            &self.connections,
            &self.sessions,
            &self.tls_handshakes,
            &self.admission_refusals,
            &self.check_errors,
            &self.deliveries,
            &self.dsns,
            &self.reloads,
            &self.store_writes,
            &self.quarantine_pruned,
        ] {
            c.register(&mut registry);
        }
        self.messages.register(&mut registry);
        self.journal_reports.register(&mut registry);
        self.spool_corrupt.register(&mut registry);
        self.spool_commits.register(&mut registry);
        self.check_duration.register(&mut registry);
        self.delivery_duration.register(&mut registry);
        self.spool_commit_duration.register(&mut registry);
        self.register_sampled(&mut registry, now_unix());
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// Gauges sampled from their owners or read now: queue, sessions,
    /// quarantine, certificates, disk, process, build.
    fn register_sampled(&self, registry: &mut Registry, now: i64) {
        let load = |a: &AtomicI64| a.load(Ordering::Relaxed);
        let oldest = load(&self.queue_oldest);
        let started = self.started.load(Ordering::Relaxed) as i64;
        for (name, help, value) in [
            (
                "exogate_sessions_open",
                "SMTP sessions currently open.",
                load(&self.open_sessions),
            ),
            (
                "exogate_queue_messages",
                "Messages in the delivery queue.",
                load(&self.queue_size),
            ),
            (
                "exogate_queue_oldest_age_seconds",
                "Age of the oldest message in the queue (0 when empty).",
                if oldest > 0 { (now - oldest).max(0) } else { 0 },
            ),
            (
                "exogate_quarantine_bytes",
                "Bytes of held quarantined messages.",
                load(&self.quarantine_bytes),
            ),
            (
                "exogate_quarantine_max_bytes",
                "The quarantine's size cap ([store] quarantine_max_size).",
                load(&self.quarantine_cap_bytes),
            ),
            ("exogate_start_time_seconds", "Unix time the process started.", started),
            (
                "exogate_quarantine_messages",
                "Messages in the quarantine.",
                load(&self.quarantine_size),
            ),
        ] {
            register(registry, name, help, ConstGauge::new(value));
        }
        register(
            registry,
            "exogate_build",
            "Always 1; the version in a label.",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        {
            let by_tenant = self.queue_by_tenant.lock().unwrap_or_else(|e| e.into_inner());
            let messages = Family::<[(&str, String); 1], Gauge>::default();
            let age = Family::<[(&str, String); 1], Gauge>::default();
            for (tenant, (n, oldest)) in by_tenant.iter() {
                messages.get_or_create(&[("tenant", tenant.clone())]).set(*n);
                age.get_or_create(&[("tenant", tenant.clone())])
                    .set((now - oldest).max(0));
            }
            register(
                registry,
                "exogate_queue_tenant_messages",
                "Messages in the delivery queue, per tenant.",
                messages,
            );
            register(
                registry,
                "exogate_queue_tenant_oldest_age_seconds",
                "Age of the tenant's oldest message in the delivery queue.",
                age,
            );
        }
        let expiry = Family::<[(&str, String); 2], Gauge>::default();
        for (usage, tenant, not_after) in self.certificates.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            expiry
                .get_or_create(&[("use", usage.to_string()), ("tenant", tenant.clone())])
                .set(not_after - now);
        }
        register(
            registry,
            "exogate_certificate_expiry_seconds",
            "Seconds until a certificate in use expires (negative: expired), by use (inbound, relay-client) and tenant.",
            expiry,
        );
        let state_dir = self.state_dir.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((free, total)) = state_dir.as_deref().and_then(super::process::disk_space) {
            register(
                registry,
                "exogate_state_dir_free_bytes",
                "Bytes available to the gateway on the state directory's file system.",
                ConstGauge::new(free),
            );
            register(
                registry,
                "exogate_state_dir_size_bytes",
                "Size of the state directory's file system.",
                ConstGauge::new(total),
            );
        }
        register(
            registry,
            "exogate_log_lines_dropped_total",
            "Log lines lost: refused by the full log queue (see log.queue_lines), or not written to standard error.",
            ConstCounter::new(super::log::dropped_lines()),
        );
        if let Some(cpu) = super::process::cpu_seconds() {
            register(
                registry,
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                ConstCounter::new(cpu),
            );
        }
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                super::process::resident_bytes(),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                super::process::open_fds(),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                super::process::max_fds(),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                Some(started as f64),
            ),
        ] {
            if let Some(v) = value {
                register(registry, name, help, ConstGauge::new(v));
            }
        }
    }
}

/// Seconds since the Unix epoch (the clock the spool's timestamps use too).
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::new();
        m.messages.inc(&["contoso", "inbound", "deliver"]);
        m.messages.inc(&["contoso", "inbound", "deliver"]);
        m.check_duration.observe(&["urls"], Duration::from_millis(2));
        let text = m.render();
        assert!(text.contains("exogate_messages_total{tenant=\"contoso\",direction=\"inbound\",action=\"deliver\"} 2"));
        assert!(text.contains("exogate_check_duration_seconds_bucket{le=\"0.005\",check=\"urls\"} 1"));
        assert!(text.contains("exogate_check_duration_seconds_bucket{le=\"0.001\",check=\"urls\"} 0"));
        assert!(text.contains("exogate_check_duration_seconds_count{check=\"urls\"} 1"));
        assert!(text.contains("# TYPE exogate_queue_messages gauge\nexogate_queue_messages 0"));
        // OpenMetrics: a counter's family name without `_total`, one full
        // stop after the help, the build as an info metric, `# EOF` last.
        m.spool_corrupt.inc(&[]);
        let text = m.render();
        assert!(
            text.contains("# HELP exogate_spool_corrupt Damaged queue files moved aside.\n# TYPE exogate_spool_corrupt counter\nexogate_spool_corrupt_total 1\n"),
            "{text}"
        );
        assert!(text.contains("exogate_build_info{version=\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        // A family with no series yet is still declared.
        assert!(text.contains("# TYPE exogate_dsns counter\n"), "{text}");
        assert!(!text.contains("exogate_dsns_total"), "{text}");
    }
}
