//! Every metric the gateway exports, in one place, rendered in the Prometheus
//! text exposition format (version 0.0.4) for `/metrics`.
//!
//! A deliberately small registry: counters and histograms with fixed label
//! names, and gauges sampled at render time from the components that own the
//! numbers (queue size, queue age, open sessions). Label values that come from
//! configuration (tenant portals, check names) or from a fixed set (actions,
//! results) only: never from message content, so the series count is bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A counter family with fixed label names.
pub(crate) struct CounterVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl CounterVec {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> CounterVec {
        CounterVec {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn inc(&self, label_values: &[&str]) {
        self.add(label_values, 1);
    }

    pub(crate) fn add(&self, label_values: &[&str], n: u64) {
        debug_assert_eq!(label_values.len(), self.labels.len(), "{}", self.name);
        let key: Vec<String> = label_values.iter().map(|s| s.to_string()).collect();
        *self.values.lock().expect("metrics lock").entry(key).or_insert(0) += n;
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        for (values, n) in self.values.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "{}{} {}", self.name, labels(self.labels, values, None), n);
        }
    }
}

/// Per label set: bucket counts, sum, count.
type Histogram = (Vec<u64>, f64, u64);

/// A histogram family (seconds) with fixed label names.
pub(crate) struct HistogramVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
    values: Mutex<BTreeMap<Vec<String>, Histogram>>,
}

impl HistogramVec {
    const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> HistogramVec {
        HistogramVec {
            name,
            help,
            labels,
            buckets,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn observe(&self, label_values: &[&str], d: Duration) {
        let secs = d.as_secs_f64();
        let key: Vec<String> = label_values.iter().map(|s| s.to_string()).collect();
        let mut map = self.values.lock().expect("metrics lock");
        let entry = map.entry(key).or_insert_with(|| (vec![0; self.buckets.len()], 0.0, 0));
        for (i, le) in self.buckets.iter().enumerate() {
            if secs <= *le {
                entry.0[i] += 1;
            }
        }
        entry.1 += secs;
        entry.2 += 1;
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        for (values, (counts, sum, count)) in self.values.lock().expect("metrics lock").iter() {
            for (le, n) in self.buckets.iter().zip(counts) {
                let le = format!("{le}");
                let _ = writeln!(
                    out,
                    "{}_bucket{} {}",
                    self.name,
                    labels(self.labels, values, Some(&le)),
                    n
                );
            }
            let _ = writeln!(
                out,
                "{}_bucket{} {}",
                self.name,
                labels(self.labels, values, Some("+Inf")),
                count
            );
            let _ = writeln!(out, "{}_sum{} {}", self.name, labels(self.labels, values, None), sum);
            let _ = writeln!(
                out,
                "{}_count{} {}",
                self.name,
                labels(self.labels, values, None),
                count
            );
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

const CHECK_BUCKETS: &[f64] = &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];
const DELIVERY_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0];

/// The gateway's metrics.
pub(crate) struct Metrics {
    pub(crate) connections: CounterVec,
    pub(crate) sessions: CounterVec,
    pub(crate) tls_handshakes: CounterVec,
    pub(crate) admission_refusals: CounterVec,
    pub(crate) messages: CounterVec,
    pub(crate) check_duration: HistogramVec,
    pub(crate) check_errors: CounterVec,
    pub(crate) deliveries: CounterVec,
    pub(crate) delivery_duration: HistogramVec,
    pub(crate) dsns: CounterVec,
    pub(crate) reloads: CounterVec,
    pub(crate) spool_corrupt: CounterVec,
    pub(crate) journal_reports: CounterVec,
    /// Store writes from the mail path: written, failed, dropped, unavailable.
    pub(crate) store_writes: CounterVec,
    /// Quarantined messages removed by retention or the size cap.
    pub(crate) quarantine_pruned: CounterVec,
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
                &["result"],
            ),
            sessions: CounterVec::new(
                "exogate_sessions_total",
                "SMTP sessions ended, by outcome.",
                &["outcome"],
            ),
            tls_handshakes: CounterVec::new(
                "exogate_tls_handshakes_total",
                "Inbound TLS handshakes, by negotiated version (or failed).",
                &["version"],
            ),
            admission_refusals: CounterVec::new(
                "exogate_admission_refusals_total",
                "Refusals by admission layer.",
                &["layer"],
            ),
            messages: CounterVec::new(
                "exogate_messages_total",
                "Messages that reached a verdict, by tenant, direction and action carried out.",
                &["tenant", "direction", "action"],
            ),
            check_duration: HistogramVec::new(
                "exogate_check_duration_seconds",
                "Time each check took per message.",
                &["check"],
                CHECK_BUCKETS,
            ),
            check_errors: CounterVec::new(
                "exogate_check_errors_total",
                "Checks that failed or timed out.",
                &["check"],
            ),
            deliveries: CounterVec::new(
                "exogate_deliveries_total",
                "Recipient delivery results downstream.",
                &["result"],
            ),
            delivery_duration: HistogramVec::new(
                "exogate_delivery_duration_seconds",
                "Time from acceptance to final delivery of a message.",
                &[],
                DELIVERY_BUCKETS,
            ),
            dsns: CounterVec::new(
                "exogate_dsns_total",
                "Delivery status notifications generated or dropped.",
                &["event"],
            ),
            reloads: CounterVec::new(
                "exogate_reloads_total",
                "Configuration reloads, by result.",
                &["result"],
            ),
            spool_corrupt: CounterVec::new("exogate_spool_corrupt_total", "Damaged queue files moved aside.", &[]),
            journal_reports: CounterVec::new(
                "exogate_journal_reports_total",
                "Journal reports received (monitor mode), by tenant and result: scanned, or why one could not be read (kept in quarantine-reports/).",
                &["tenant", "result"],
            ),
            store_writes: CounterVec::new(
                "exogate_store_writes_total",
                "Event, delivery and quarantine records from the mail path, by result (written, failed, dropped, unavailable).",
                &["result"],
            ),
            quarantine_pruned: CounterVec::new(
                "exogate_quarantine_pruned_total",
                "Quarantined messages removed, by reason (retention, cap).",
                &["reason"],
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

    /// The whole exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        for c in [
            &self.connections,
            &self.sessions,
            &self.tls_handshakes,
            &self.admission_refusals,
            &self.messages,
            &self.check_errors,
            &self.deliveries,
            &self.dsns,
            &self.reloads,
            &self.spool_corrupt,
            &self.journal_reports,
            &self.store_writes,
            &self.quarantine_pruned,
        ] {
            c.render(&mut out);
        }
        self.check_duration.render(&mut out);
        self.delivery_duration.render(&mut out);
        let now = now_unix();
        let oldest = self.queue_oldest.load(Ordering::Relaxed);
        for (name, help, value) in [
            (
                "exogate_sessions_open",
                "SMTP sessions currently open.",
                self.open_sessions.load(Ordering::Relaxed) as f64,
            ),
            (
                "exogate_queue_messages",
                "Messages in the delivery queue.",
                self.queue_size.load(Ordering::Relaxed) as f64,
            ),
            (
                "exogate_queue_oldest_age_seconds",
                "Age of the oldest message in the queue (0 when empty).",
                if oldest > 0 { (now - oldest).max(0) as f64 } else { 0.0 },
            ),
            (
                "exogate_quarantine_bytes",
                "Bytes of held quarantined messages.",
                self.quarantine_bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "exogate_quarantine_max_bytes",
                "The quarantine's size cap ([store] quarantine_max_size).",
                self.quarantine_cap_bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "exogate_start_time_seconds",
                "Unix time the process started.",
                self.started.load(Ordering::Relaxed) as f64,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        self.render_sampled(&mut out, now);
        out
    }

    /// Gauges sampled from their owners or read now: per tenant queue,
    /// quarantine, certificates, disk, process, build.
    fn render_sampled(&self, out: &mut String, now: i64) {
        let gauge = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        gauge(out, "exogate_build_info", "Always 1; the version in a label.");
        let _ = writeln!(out, "exogate_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        {
            let by_tenant = self.queue_by_tenant.lock().expect("metrics lock");
            gauge(
                out,
                "exogate_queue_tenant_messages",
                "Messages in the delivery queue, per tenant.",
            );
            for (tenant, (n, _)) in by_tenant.iter() {
                let _ = writeln!(
                    out,
                    "exogate_queue_tenant_messages{{tenant=\"{}\"}} {n}",
                    escape(tenant)
                );
            }
            gauge(
                out,
                "exogate_queue_tenant_oldest_age_seconds",
                "Age of the tenant's oldest message in the delivery queue.",
            );
            for (tenant, (_, oldest)) in by_tenant.iter() {
                let _ = writeln!(
                    out,
                    "exogate_queue_tenant_oldest_age_seconds{{tenant=\"{}\"}} {}",
                    escape(tenant),
                    (now - oldest).max(0)
                );
            }
        }
        gauge(out, "exogate_quarantine_messages", "Messages in the quarantine.");
        let _ = writeln!(
            out,
            "exogate_quarantine_messages {}",
            self.quarantine_size.load(Ordering::Relaxed)
        );
        gauge(
            out,
            "exogate_certificate_expiry_seconds",
            "Seconds until a certificate in use expires (negative: expired), by use (inbound, relay-client) and tenant.",
        );
        for (usage, tenant, not_after) in self.certificates.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "exogate_certificate_expiry_seconds{{use=\"{usage}\",tenant=\"{}\"}} {}",
                escape(tenant),
                not_after - now
            );
        }
        let state_dir = self.state_dir.lock().expect("metrics lock").clone();
        if let Some((free, total)) = state_dir.as_deref().and_then(super::process::disk_space) {
            gauge(
                out,
                "exogate_state_dir_free_bytes",
                "Bytes available to the gateway on the state directory's file system.",
            );
            let _ = writeln!(out, "exogate_state_dir_free_bytes {free}");
            gauge(
                out,
                "exogate_state_dir_size_bytes",
                "Size of the state directory's file system.",
            );
            let _ = writeln!(out, "exogate_state_dir_size_bytes {total}");
        }
        if let Some(cpu) = super::process::cpu_seconds() {
            let _ = writeln!(
                out,
                "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}"
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
                Some(self.started.load(Ordering::Relaxed) as f64),
            ),
        ] {
            if let Some(v) = value {
                gauge(out, name, help);
                let _ = writeln!(out, "{name} {v}");
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
        assert!(text.contains("exogate_check_duration_seconds_bucket{check=\"urls\",le=\"0.005\"} 1"));
        assert!(text.contains("exogate_check_duration_seconds_bucket{check=\"urls\",le=\"0.001\"} 0"));
        assert!(text.contains("exogate_check_duration_seconds_count{check=\"urls\"} 1"));
        assert!(text.contains("# TYPE exogate_queue_messages gauge\nexogate_queue_messages 0"));
    }
}
