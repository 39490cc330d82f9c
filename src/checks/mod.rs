//! The built-in checks and the one factory that turns a policy's
//! configuration (data from `config`) into the running checks the pipeline
//! in `scan` is given.
//!
//! To add a check: write `src/checks/NAME.rs` with
//! `pub fn build(options: &Section, cx: &BuildContext) -> Option<Arc<dyn Check>>`
//! and add its line to [`build`] and [`KINDS`]. A builder reports bad options
//! through `options.error(..)` and returns `None`; options it never reads are
//! reported as unknown keys automatically, with their TOML path.
//!
//! Checks never import each other's internals except through this folder,
//! never write SMTP replies and never see the spool or the session.
//!
//! Tables are built with the check, not at the first message: a file whose
//! scan uses a process-wide table (a compiled pattern, a phrase automaton)
//! forces it in its `warm()`, which its check's builder calls; the shared
//! ones of `scan` are forced by `scan::warm` when a policy is built.
//! Without this the first message after a start paid about 25 ms and the
//! sessions behind it queued. `tests/code_rules.rs` holds every such table to
//! a `warm()`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
use crate::config::policy::{CheckConfig, GENERIC_CHECK_KEYS, PolicyChecks, PolicyConfig};
use crate::config::reader::{ConfigError, Problems, Section};
use crate::dns::Dns;
use crate::message::verdict::OnError;
use crate::scan::check::{BuildContext, Check, ConfiguredCheck};
use crate::scan::pipeline::Policy;
use crate::scan::sender::SenderAuth;

pub(crate) mod attachments;
pub(crate) mod auth;
pub(crate) mod content;
pub(crate) mod dlp;
pub(crate) mod dnsbl;
pub(crate) mod impersonation;
pub(crate) mod malware;
pub(crate) mod phishing;
pub(crate) mod rspamd;
pub(crate) mod urls;

#[cfg(test)]
pub(crate) mod test_support;

/// Every `kind` the factory knows.
pub(crate) const KINDS: [&str; 10] = [
    "attachments",
    "malware",
    "impersonation",
    "urls",
    "phishing",
    "content",
    "dlp",
    "auth",
    "dnsbl",
    "rspamd",
];

/// The checks of the built-in `default` policy (used when the config
/// defines none): what a new installation wants with nothing to set up.
/// `auth` needs only DNS. `dnsbl` and `rspamd` are left out: a DNSBL is a
/// third party's service with terms of use, whose public mirrors refuse
/// queries from large resolvers (they answer 127.255.255.254, which would
/// only fill the log with errors), so its zones are the operator's choice;
/// rspamd needs a running rspamd.
pub(crate) const BUILTIN_DEFAULTS: [&str; 8] = [
    "attachments",
    "malware",
    "impersonation",
    "urls",
    "phishing",
    "content",
    "dlp",
    "auth",
];

/// Kinds that read the sender facts: a policy with one of them
/// authenticates the sender before its checks run.
const NEED_SENDER: [&str; 3] = ["auth", "dnsbl", "rspamd"];

/// Builds a check of `kind` from its options.
pub fn build(kind: &str, options: &Section, cx: &BuildContext) -> Option<Arc<dyn Check>> {
    match kind {
        "attachments" => attachments::build(options, cx),
        "malware" => malware::build(options, cx),
        "impersonation" => impersonation::build(options, cx),
        "urls" => urls::build(options, cx),
        "phishing" => phishing::build(options, cx),
        "content" => content::build(options, cx),
        "dlp" => dlp::build(options, cx),
        "auth" => auth::build(options, cx),
        "dnsbl" => dnsbl::build(options, cx),
        "rspamd" => rspamd::build(options, cx),
        other => {
            options.error(
                "kind",
                format!("unknown check kind \"{other}\"; one of {}", KINDS.join(", ")),
            );
            None
        }
    }
}

/// The running form of every configured policy, by name; or every problem
/// the checks' builders found in their options, with TOML paths.
pub(crate) fn policies(config: &Config) -> Result<BTreeMap<String, Arc<Policy>>, Vec<ConfigError>> {
    crate::scan::warm();
    let cx = BuildContext {
        base_dir: config.base_dir.clone(),
        dns: Dns::shared(&config.dns),
        auth: config.auth.clone(),
        hostname: config.server.hostname.clone(),
    };
    let problems = Problems::default();
    let policies = config
        .policies
        .iter()
        .map(|(name, p)| (name.clone(), Arc::new(policy(p, &cx, &problems))))
        .collect();
    let errors = problems.into_vec();
    if errors.is_empty() { Ok(policies) } else { Err(errors) }
}

/// Builds one policy's checks; problems go to `problems`.
pub(crate) fn policy(config: &PolicyConfig, cx: &BuildContext, problems: &Problems) -> Policy {
    let checks = match &config.checks {
        PolicyChecks::BuiltinDefaults => builtin_defaults(cx),
        PolicyChecks::Listed(list) => {
            let mut checks: Vec<ConfiguredCheck> = Vec::new();
            for c in list {
                let options = Section::root(&c.options, problems).at(&c.path);
                if let Some(built) = configured(c, &options, cx) {
                    if checks.iter().any(|other| other.name == built.name) {
                        options.error(
                            "name",
                            format!(
                                "a check named \"{}\" already exists in this policy; give each a distinct name",
                                built.name
                            ),
                        );
                    }
                    checks.push(built);
                }
            }
            checks
        }
    };
    let sender = sender_stage(&checks, cx);
    Policy {
        thresholds: config.thresholds,
        scan_max_size: config.scan_max_size,
        checks,
        sender,
    }
}

/// Sender authentication for a policy that has a check reading it (whose
/// builder made sure the resolver exists).
fn sender_stage(checks: &[ConfiguredCheck], cx: &BuildContext) -> Option<Arc<SenderAuth>> {
    if !checks.iter().any(|c| NEED_SENDER.contains(&c.check.kind())) {
        return None;
    }
    let dns = cx.dns.as_ref().ok()?.clone();
    Some(Arc::new(SenderAuth::new(
        dns,
        cx.auth.trusted_arc_sealers.clone(),
        cx.hostname.clone(),
    )))
}

/// The shared resolver for a check that needs it; its absence is a problem
/// reported at the check's `kind`.
pub(crate) fn resolver(options: &Section, cx: &BuildContext) -> Option<Arc<Dns>> {
    match &cx.dns {
        Ok(dns) => Some(dns.clone()),
        Err(e) => {
            options.error(
                "kind",
                format!("needs the resolver of [dns], which cannot be built: {e}"),
            );
            None
        }
    }
}

/// A policy of the built-in checks `kinds`, each with its default options
/// (for benchmarks that measure a part of the default policy).
pub fn builtin_policy(kinds: &[&str], cx: &BuildContext) -> Policy {
    crate::scan::warm();
    let problems = Problems::default();
    let empty = toml::Table::new();
    let checks: Vec<ConfiguredCheck> = kinds
        .iter()
        .filter_map(|kind| {
            let check = build(kind, &Section::root(&empty, &problems), cx)?;
            Some(ConfiguredCheck {
                name: kind.to_string(),
                timeout: crate::config::policy::DEFAULT_CHECK_TIMEOUT,
                on_error: OnError::Ignore,
                check,
            })
        })
        .collect();
    let sender = sender_stage(&checks, cx);
    Policy {
        thresholds: Default::default(),
        scan_max_size: crate::config::policy::DEFAULT_SCAN_MAX_SIZE,
        checks,
        sender,
    }
}

/// The policy used when the configuration defines no `[policy.default]`.
pub fn default_policy(cx: &BuildContext) -> Policy {
    let problems = Problems::default();
    let p = policy(&PolicyConfig::builtin_default(), cx, &problems);
    debug_assert!(problems.is_empty(), "built-in defaults must be valid");
    p
}

fn builtin_defaults(cx: &BuildContext) -> Vec<ConfiguredCheck> {
    let problems = Problems::default();
    let empty = toml::Table::new();
    let mut checks = Vec::new();
    for kind in BUILTIN_DEFAULTS {
        let opts = Section::root(&empty, &problems);
        if let Some(check) = build(kind, &opts, cx) {
            checks.push(ConfiguredCheck {
                name: kind.to_string(),
                timeout: crate::config::policy::DEFAULT_CHECK_TIMEOUT,
                on_error: OnError::Ignore,
                check,
            });
        }
    }
    debug_assert!(problems.is_empty(), "built-in defaults must be valid");
    checks
}

/// One `[[policy.NAME.check]]`: its generic settings were read by config,
/// its own options are read here by the kind's builder.
fn configured(c: &CheckConfig, options: &Section, cx: &BuildContext) -> Option<ConfiguredCheck> {
    for key in GENERIC_CHECK_KEYS {
        options.ignore(key);
    }
    let Some(kind) = &c.kind else {
        options.error("kind", format!("missing; one of {}", KINDS.join(", ")));
        options.ignore_rest();
        return None;
    };
    let check = build(kind, options, cx)?;
    Some(ConfiguredCheck {
        name: c.name.clone().unwrap_or_else(|| kind.clone()),
        timeout: c.timeout,
        on_error: c.on_error,
        check,
    })
}
