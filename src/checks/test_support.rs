//! Builds checks from TOML options for the checks' unit tests, and re-exports
//! the fixtures of `scan::test_support`.

use std::path::PathBuf;
use std::sync::Arc;

pub(crate) use crate::scan::test_support::*;

use crate::config::reader::{Problems, Section};
use crate::scan::check::{BuildContext, Check};

/// Builds a check of `kind` from TOML options, panicking on config problems.
pub(crate) fn build(kind: &str, options: &str) -> Arc<dyn Check> {
    let table: toml::Table = options.parse().expect("options parse");
    let problems = Problems::default();
    let check = {
        let section = Section::root(&table, &problems);
        let cx = BuildContext::new(PathBuf::from("."));
        super::build(kind, &section, &cx)
    };
    let errors = problems.into_vec();
    assert!(errors.is_empty(), "config problems: {errors:?}");
    check.expect("check builds")
}

/// Config problems reported when building a check of `kind` from `options`.
pub(crate) fn build_errors(kind: &str, options: &str) -> Vec<String> {
    let table: toml::Table = options.parse().expect("options parse");
    let problems = Problems::default();
    {
        let section = Section::root(&table, &problems);
        let cx = BuildContext::new(PathBuf::from("."));
        let _ = super::build(kind, &section, &cx);
    }
    problems.into_vec().iter().map(|e| e.to_string()).collect()
}
