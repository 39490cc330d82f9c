//! Reading `[policy.NAME]` tables into data: thresholds, the size past which
//! only the header is scanned, and each `[[policy.NAME.check]]` with its
//! generic settings (kind, name, timeout, on_error) and its own options.
//!
//! A check's own options stay a TOML table here: each check kind owns its
//! option schema, and the factory in `checks` reads them (reporting unknown
//! or bad keys with their TOML path) when it turns this data into running
//! checks. Config never builds a check.

use std::time::Duration;

use crate::config::reader::Section;
use crate::message::verdict::{OnError, Thresholds};

pub(crate) const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_SCAN_MAX_SIZE: u64 = 64 * 1024 * 1024;

/// A named set of checks with thresholds, as configured.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub name: String,
    pub thresholds: Thresholds,
    /// Messages larger than this are scanned on their header only.
    pub scan_max_size: u64,
    pub checks: PolicyChecks,
}

/// Which checks a policy runs.
#[derive(Debug, Clone)]
pub enum PolicyChecks {
    /// The built-in `default` policy (no `[policy.default]` in the file):
    /// every built-in check with its default options.
    BuiltinDefaults,
    /// The `[[policy.NAME.check]]` tables, in order.
    Listed(Vec<CheckConfig>),
}

/// One `[[policy.NAME.check]]` table.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// `kind`; `None` when missing (the factory reports it, naming the kinds).
    pub kind: Option<String>,
    /// `name`, defaulting to the kind.
    pub name: Option<String>,
    pub timeout: Duration,
    pub on_error: OnError,
    /// The whole table, read by the check's own builder.
    pub options: toml::Table,
    /// Its TOML path, e.g. `policy.strict.check[1]`.
    pub path: String,
}

/// The keys of a check table that every kind shares (read here).
pub(crate) const GENERIC_CHECK_KEYS: [&str; 4] = ["kind", "name", "timeout", "on_error"];

impl PolicyConfig {
    /// Reads `[policy.NAME]`; problems are recorded in the section's sink.
    pub(crate) fn read(name: &str, section: &Section) -> PolicyConfig {
        let defaults = Thresholds::default();
        let thresholds = Thresholds {
            junk: section.f64_or("junk_score", defaults.junk),
            quarantine: section.f64_or("quarantine_score", defaults.quarantine),
            reject: section.f64_or("reject_score", defaults.reject),
        };
        if !(thresholds.junk <= thresholds.quarantine && thresholds.quarantine <= thresholds.reject) {
            section.error(
                "junk_score",
                format!(
                    "thresholds must satisfy junk_score <= quarantine_score <= reject_score, found {} / {} / {}",
                    thresholds.junk, thresholds.quarantine, thresholds.reject
                ),
            );
        }
        let scan_max_size = section.size_or("scan_max_size", DEFAULT_SCAN_MAX_SIZE);
        let checks = section.sections("check").iter().map(read_check).collect();
        PolicyConfig {
            name: name.to_string(),
            thresholds,
            scan_max_size,
            checks: PolicyChecks::Listed(checks),
        }
    }

    /// The policy used when the configuration defines no `[policy.default]`.
    pub(crate) fn builtin_default() -> PolicyConfig {
        PolicyConfig {
            name: "default".into(),
            thresholds: Thresholds::default(),
            scan_max_size: DEFAULT_SCAN_MAX_SIZE,
            checks: PolicyChecks::BuiltinDefaults,
        }
    }
}

fn read_check(section: &Section) -> CheckConfig {
    let check = CheckConfig {
        kind: section.opt_string("kind"),
        name: section.opt_string("name"),
        timeout: section.duration_or("timeout", DEFAULT_CHECK_TIMEOUT),
        on_error: section.choice_or("on_error", OnError::Ignore, &OnError::CHOICES),
        options: section.table().clone(),
        path: section.path().to_string(),
    };
    // The check's own keys are read, and unknown ones reported, by its builder.
    section.ignore_rest();
    check
}
