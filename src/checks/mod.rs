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

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
use crate::config::policy::{CheckConfig, GENERIC_CHECK_KEYS, PolicyChecks, PolicyConfig};
use crate::config::reader::{ConfigError, Problems, Section};
use crate::message::verdict::OnError;
use crate::scan::check::{BuildContext, Check, ConfiguredCheck};
use crate::scan::pipeline::Policy;

pub(crate) mod attachments;
pub(crate) mod content;
pub(crate) mod dlp;
pub(crate) mod impersonation;
pub(crate) mod malware;
pub(crate) mod urls;

#[cfg(test)]
pub(crate) mod test_support;

/// Every `kind` the factory knows.
pub(crate) const KINDS: [&str; 6] = ["attachments", "malware", "impersonation", "urls", "content", "dlp"];

/// The checks of the built-in `default` policy (used when the config defines none).
pub(crate) const BUILTIN_DEFAULTS: [&str; 6] = KINDS;

/// Builds a check of `kind` from its options.
pub fn build(kind: &str, options: &Section, cx: &BuildContext) -> Option<Arc<dyn Check>> {
    match kind {
        "attachments" => attachments::build(options, cx),
        "malware" => malware::build(options, cx),
        "impersonation" => impersonation::build(options, cx),
        "urls" => urls::build(options, cx),
        "content" => content::build(options, cx),
        "dlp" => dlp::build(options, cx),
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
    let cx = BuildContext {
        base_dir: config.base_dir.clone(),
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
    Policy {
        thresholds: config.thresholds,
        scan_max_size: config.scan_max_size,
        checks,
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
