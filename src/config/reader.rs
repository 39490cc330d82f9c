//! A reader over a parsed TOML document that collects *every* problem with its
//! TOML path instead of stopping at the first one, and that reports keys
//! nobody asked for.
//!
//! serde's derive stops at the first type error, which makes `check-config`
//! answer one mistake per run. Instead each section is read key by key through
//! a [`Section`]; a value of the wrong type or out of range records a
//! [`ConfigError`] and yields the default so reading can go on. When a section
//! is dropped, any key it was never asked for is recorded as unknown, so a
//! misspelt or not-yet-implemented key can never be silently ignored.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

/// One problem in the configuration, located by its TOML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, problem: impl fmt::Display) -> ConfigError {
        ConfigError {
            path: path.into(),
            problem: problem.to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "{}: {}", self.path, self.problem)
        }
    }
}

/// Where problems accumulate while a document is read.
#[derive(Default)]
pub struct Problems(RefCell<Vec<ConfigError>>);

impl Problems {
    pub(crate) fn push(&self, path: impl Into<String>, problem: impl Into<String>) {
        self.0.borrow_mut().push(ConfigError {
            path: path.into(),
            problem: problem.into(),
        });
    }

    /// The problems, grouped by path (stable within a path).
    pub fn into_vec(self) -> Vec<ConfigError> {
        let mut v = self.0.into_inner();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

/// A view of one TOML table at a known path.
pub struct Section<'a> {
    table: &'a Table,
    path: String,
    problems: &'a Problems,
    seen: RefCell<BTreeSet<String>>,
}

impl Drop for Section<'_> {
    fn drop(&mut self) {
        let seen = self.seen.borrow();
        for key in self.table.keys() {
            if !seen.contains(key) {
                self.problems.push(self.key_path(key), "unknown key");
            }
        }
    }
}

impl<'a> Section<'a> {
    pub fn root(table: &'a Table, problems: &'a Problems) -> Section<'a> {
        Section {
            table,
            path: String::new(),
            problems,
            seen: RefCell::new(BTreeSet::new()),
        }
    }

    /// The same view placed at `path` (for a section that is absent and read as empty).
    pub(crate) fn at(mut self, path: &str) -> Section<'a> {
        self.path = path.to_string();
        self
    }

    /// Marks every key as consumed (used when the section is unusable anyway,
    /// so that only the real problem is reported).
    pub(crate) fn ignore_rest(&self) {
        for key in self.table.keys() {
            self.ignore(key);
        }
    }

    /// The table this section reads (for a part of the document that is
    /// handed on, whole, to another reader).
    pub(crate) fn table(&self) -> &'a Table {
        self.table
    }

    /// The TOML path of this section ("" for the document root).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    /// Records a problem about `key` of this section.
    pub(crate) fn error(&self, key: &str, problem: impl Into<String>) {
        self.problems.push(self.key_path(key), problem);
    }

    pub(crate) fn problems(&self) -> &'a Problems {
        self.problems
    }

    /// Marks a key as consumed without reading it.
    pub(crate) fn ignore(&self, key: &str) {
        self.seen.borrow_mut().insert(key.to_string());
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// The raw value of `key`, marking it as consumed.
    pub(crate) fn value(&self, key: &str) -> Option<&'a Value> {
        self.ignore(key);
        self.table.get(key)
    }

    fn typed<T>(&self, key: &str, expected: &str, get: impl Fn(&'a Value) -> Option<T>) -> Option<T> {
        let value = self.value(key)?;
        match get(value) {
            Some(v) => Some(v),
            None => {
                self.error(key, format!("expected {expected}, found {}", type_name(value)));
                None
            }
        }
    }

    pub(crate) fn opt_string(&self, key: &str) -> Option<String> {
        self.typed(key, "a string", |v| v.as_str().map(str::to_string))
    }

    pub(crate) fn string_or(&self, key: &str, default: &str) -> String {
        self.opt_string(key).unwrap_or_else(|| default.to_string())
    }

    pub(crate) fn bool_or(&self, key: &str, default: bool) -> bool {
        self.typed(key, "true or false", Value::as_bool).unwrap_or(default)
    }

    pub(crate) fn opt_u64(&self, key: &str) -> Option<u64> {
        let v = self.typed(key, "a whole number", Value::as_integer)?;
        if v < 0 {
            self.error(key, format!("must not be negative, found {v}"));
            return None;
        }
        Some(v as u64)
    }

    /// A whole number within `min..=max`.
    pub(crate) fn u64_in(&self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        match self.opt_u64(key) {
            Some(v) if v < min || v > max => {
                self.error(key, format!("must be between {min} and {max}, found {v}"));
                default
            }
            Some(v) => v,
            None => default,
        }
    }

    pub(crate) fn f64_or(&self, key: &str, default: f64) -> f64 {
        self.typed(key, "a number", |v| {
            v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
        })
        .unwrap_or(default)
    }

    pub(crate) fn opt_duration(&self, key: &str) -> Option<Duration> {
        let text = self.opt_string(key)?;
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(key, e);
                None
            }
        }
    }

    pub(crate) fn duration_or(&self, key: &str, default: Duration) -> Duration {
        self.opt_duration(key).unwrap_or(default)
    }

    /// A byte size: a whole number, or a string such as "150MiB" or "10MB".
    pub(crate) fn size_or(&self, key: &str, default: u64) -> u64 {
        let Some(value) = self.value(key) else {
            return default;
        };
        let parsed = match value {
            Value::Integer(i) if *i >= 0 => Ok(*i as u64),
            Value::String(s) => parse_size(s),
            other => Err(format!(
                "expected a size such as 10485760 or \"10MiB\", found {}",
                type_name(other)
            )),
        };
        parsed.unwrap_or_else(|e| {
            self.error(key, e);
            default
        })
    }

    pub(crate) fn opt_strings(&self, key: &str) -> Option<Vec<String>> {
        let value = self.value(key)?;
        let Some(items) = value.as_array() else {
            self.error(key, format!("expected a list of strings, found {}", type_name(value)));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push(s.to_string()),
                None => self.problems.push(
                    format!("{}[{i}]", self.key_path(key)),
                    format!("expected a string, found {}", type_name(item)),
                ),
            }
        }
        Some(out)
    }

    pub(crate) fn strings_or(&self, key: &str, default: &[&str]) -> Vec<String> {
        self.opt_strings(key)
            .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
    }

    /// Each string of a list parsed with `parse`; bad items are reported with their index.
    pub(crate) fn parsed_list<T>(
        &self,
        key: &str,
        default: &[&str],
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let items = self.strings_or(key, default);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match parse(item) {
                Ok(v) => out.push(v),
                Err(e) => self.problems.push(format!("{}[{i}]", self.key_path(key)), e),
            }
        }
        out
    }

    /// A string that must be one of `choices`.
    pub(crate) fn choice_or<T: Copy>(&self, key: &str, default: T, choices: &[(&str, T)]) -> T {
        let Some(text) = self.opt_string(key) else {
            return default;
        };
        match choices.iter().find(|(name, _)| *name == text) {
            Some((_, v)) => *v,
            None => {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
                self.error(key, format!("must be one of {}, found \"{text}\"", names.join(", ")));
                default
            }
        }
    }

    /// A file path; relative paths are taken relative to `base`. Empty means none.
    pub(crate) fn opt_path(&self, key: &str, base: &Path) -> Option<PathBuf> {
        let text = self.opt_string(key)?;
        if text.is_empty() {
            return None;
        }
        Some(resolve_path(base, &text))
    }

    /// A sub-table.
    pub(crate) fn section(&self, key: &str) -> Option<Section<'a>> {
        let value = self.value(key)?;
        match value.as_table() {
            Some(table) => Some(self.child(table, self.key_path(key))),
            None => {
                self.error(key, format!("expected a table, found {}", type_name(value)));
                None
            }
        }
    }

    /// An array of tables (`[[key]]`).
    pub(crate) fn sections(&self, key: &str) -> Vec<Section<'a>> {
        let Some(value) = self.value(key) else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            self.error(
                key,
                format!("expected an array of tables ([[{key}]]), found {}", type_name(value)),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.key_path(key));
            match item.as_table() {
                Some(table) => out.push(self.child(table, path)),
                None => self
                    .problems
                    .push(path, format!("expected a table, found {}", type_name(item))),
            }
        }
        out
    }

    /// Every key of this table as a named sub-table (`[key.NAME]`).
    pub(crate) fn named_sections(&self) -> Vec<(String, Section<'a>)> {
        let mut out = Vec::new();
        for (name, value) in self.table {
            self.ignore(name);
            match value.as_table() {
                Some(table) => out.push((name.clone(), self.child(table, self.key_path(name)))),
                None => self.error(name, format!("expected a table, found {}", type_name(value))),
            }
        }
        out
    }

    fn child(&self, table: &'a Table, path: String) -> Section<'a> {
        Section {
            table,
            path,
            problems: self.problems,
            seen: RefCell::new(BTreeSet::new()),
        }
    }
}

pub(crate) fn resolve_path(base: &Path, text: &str) -> PathBuf {
    let p = Path::new(text);
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "a whole number",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

/// "500ms", "30s", "5m", "2h", "2d".
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("expected a duration such as \"30s\", \"5m\", \"2h\" or \"2d\", found \"{text}\"");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(bad)
}

/// "1048576", "64KiB", "10MiB", "1GiB", "10MB" (powers of 1000), "10KB".
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("expected a size such as 10485760, \"64KiB\" or \"10MiB\", found \"{text}\"");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" | "K" => 1024,
        "MiB" | "M" => 1024 * 1024,
        "GiB" | "G" => 1024 * 1024 * 1024,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(doc: &str, f: impl FnOnce(&Section)) -> Vec<String> {
        let table: Table = doc.parse().unwrap();
        let problems = Problems::default();
        {
            let root = Section::root(&table, &problems);
            f(&root);
        }
        problems.into_vec().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let errors = read("[server]\nmax = \"x\"\ntypo = 1\n[[tenant]]\nportal = 3\n", |root| {
            let server = root.section("server").unwrap();
            assert_eq!(server.u64_in("max", 7, 0, 10), 7);
            for t in root.sections("tenant") {
                t.opt_string("portal");
            }
        });
        assert_eq!(
            errors,
            vec![
                "server.max: expected a whole number, found a string",
                "server.typo: unknown key",
                "tenant[0].portal: expected a string, found a whole number",
            ]
        );
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_size("150MiB").unwrap(), 157286400);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn range_and_choice_errors_name_the_allowed_values() {
        let errors = read("a = 0\nb = \"maybe\"\n", |root| {
            root.u64_in("a", 5, 1, 10);
            root.choice_or("b", 1, &[("yes", 1), ("no", 2)]);
        });
        assert_eq!(
            errors,
            vec![
                "a: must be between 1 and 10, found 0",
                "b: must be one of \"yes\", \"no\", found \"maybe\"",
            ]
        );
    }
}
