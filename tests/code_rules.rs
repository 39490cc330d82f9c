//! Rules on what the code may contain, checked on the source itself (read by
//! `tests/source`, comments and literals blanked):
//!
//! - unsafe code stays in the one statement that may have it
//!   (`unsafe_problems`);
//! - every process-wide table of the scanning stages is built before the
//!   first message rather than by it (`warm_problems`).
//!
//! A failure lists each offending `file:line`, or the table and its file.

mod source;

use std::path::{Path, PathBuf};

use source::{code_only, sources, src_sources};

// ---- unsafe code ----

/// Where unsafe code may be. `src/lib.rs` denies it and exactly one
/// statement allows it: the `sync_file_range(2)` call in
/// `src/spool/writeback.rs`, which has no safe wrapper (that file says why).
/// `deny`, unlike `forbid`, would let a new `#[allow(unsafe_code)]`
/// elsewhere through silently; this rule does not. Returns `file:line`s.
const UNSAFE_ALLOWED_IN: &str = "spool/writeback.rs";

fn unsafe_problems(sources: &[(PathBuf, String)]) -> Vec<String> {
    let mut allows = Vec::new();
    let mut found = Vec::new();
    for (rel, text) in sources {
        let rel = rel.to_string_lossy().replace('\\', "/");
        for (n, line) in code_only(text).lines().enumerate() {
            let at = format!("src/{rel}:{}", n + 1);
            if line.contains("allow(unsafe_code)") {
                allows.push(at.clone());
            }
            if rel != UNSAFE_ALLOWED_IN
                && ["unsafe {", "unsafe fn", "unsafe impl"]
                    .iter()
                    .any(|u| line.contains(u))
            {
                found.push(format!("{at}: unsafe code outside src/{UNSAFE_ALLOWED_IN}"));
            }
        }
    }
    if allows.len() != 1 || !allows[0].starts_with(&format!("src/{UNSAFE_ALLOWED_IN}:")) {
        found.push(format!(
            "allow(unsafe_code) must appear once, in src/{UNSAFE_ALLOWED_IN}: {allows:?}"
        ));
    }
    for (root, attr) in [
        ("lib.rs", "#![deny(unsafe_code)]"),
        ("main.rs", "#![forbid(unsafe_code)]"),
    ] {
        if !sources
            .iter()
            .any(|(rel, text)| rel == Path::new(root) && code_only(text).contains(attr))
        {
            found.push(format!("src/{root} lacks {attr}"));
        }
    }
    found
}

#[test]
fn unsafe_code_is_allowed_once_and_only_in_the_write_out() {
    let found = unsafe_problems(&src_sources());
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn a_stray_unsafe_allow_and_unsafe_elsewhere_are_reported() {
    let fine = sources(&[
        ("lib.rs", "#![deny(unsafe_code)]\n"),
        ("main.rs", "#![forbid(unsafe_code)]\n"),
        (
            "spool/writeback.rs",
            "fn w() {\n    #[allow(unsafe_code)]\n    let rc = unsafe { f() };\n}\n",
        ),
        (
            "spool/id.rs",
            "// an unsafe { block } in a comment\nconst S: &str = \"allow(unsafe_code)\";\n",
        ),
    ]);
    assert_eq!(unsafe_problems(&fine), Vec::<String>::new());
    let mut bad = fine.clone();
    bad.push((
        PathBuf::from("app/mod.rs"),
        "#[allow(unsafe_code)]\nfn x() { unsafe { g() } }\n".to_string(),
    ));
    let found = unsafe_problems(&bad);
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("src/app/mod.rs:2: unsafe code outside")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("allow(unsafe_code) must appear once")),
        "{found:?}"
    );
    let forbids_nothing = sources(&[
        ("lib.rs", "#![warn(unreachable_pub)]\n"),
        ("main.rs", "#![forbid(unsafe_code)]\n"),
    ]);
    assert!(
        unsafe_problems(&forbids_nothing)
            .iter()
            .any(|f| f == "src/lib.rs lacks #![deny(unsafe_code)]")
    );
}

// ---- tables built before the first message ----

/// Where the rule applies: the stages that run on every message's scan.
const WARMED_STAGES: &[&str] = &["checks/", "scan/"];

/// Every `static NAME: LazyLock<…>` of a scanning stage is forced by
/// `LazyLock::force(&NAME)` in its file's `fn warm()`, and every such
/// `warm` is called from somewhere: `module::warm()` from another file, or
/// `warm();` in its own (the check's builder). A table that is not, is built
/// by the first message that needs it, while the sessions behind it wait
/// (`checks` module header). Inline test modules (after `mod tests {`) are
/// not looked at.
fn warm_problems(sources: &[(PathBuf, String)]) -> Vec<String> {
    let code: Vec<(String, String)> = sources
        .iter()
        .map(|(rel, text)| {
            let code = code_only(text);
            let code = match code.find("mod tests {") {
                Some(at) => code[..at].to_string(),
                None => code,
            };
            (rel.to_string_lossy().replace('\\', "/"), code)
        })
        .collect();
    let mut found = Vec::new();
    for (rel, text) in &code {
        if !WARMED_STAGES.iter().any(|s| rel.starts_with(s)) {
            continue;
        }
        let has_warm = text.contains("fn warm()");
        for (n, line) in text.lines().enumerate() {
            let Some(name) = lazy_static_name(line) else { continue };
            if !has_warm || !text.contains(&format!("LazyLock::force(&{name})")) {
                found.push(format!(
                    "src/{rel}:{}: {name} is not forced by this file's fn warm()",
                    n + 1
                ));
            }
        }
        if has_warm {
            let module = module_name(rel);
            let called_elsewhere = code
                .iter()
                .any(|(other, t)| other != rel && t.contains(&format!("{module}::warm()")));
            // A bare `warm();`, not `forms::warm();` or `prewarm();`.
            let called_here = text.match_indices("warm();").any(|(at, _)| {
                text[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
            });
            if !called_elsewhere && !called_here {
                found.push(format!("src/{rel}: fn warm() is never called"));
            }
        }
    }
    found
}

/// `NAME` of a line declaring `static NAME: LazyLock<…>` (or
/// `std::sync::LazyLock<…>`), at any depth.
fn lazy_static_name(line: &str) -> Option<String> {
    let rest = line.trim_start();
    let rest = rest.strip_prefix("pub(crate) ").unwrap_or(rest);
    let rest = rest.strip_prefix("static ")?;
    let (name, ty) = rest.split_once(':')?;
    let ty = ty.trim_start();
    (ty.starts_with("LazyLock<") || ty.starts_with("std::sync::LazyLock<")).then(|| name.trim().to_string())
}

/// The name a file's module is called by: its stem, or its folder's for a
/// `mod.rs`.
fn module_name(rel: &str) -> String {
    let path = Path::new(rel);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if stem == "mod" {
        let parent = path.parent().and_then(|p| p.file_name()).and_then(|s| s.to_str());
        parent.unwrap_or_default().to_string()
    } else {
        stem.to_string()
    }
}

#[test]
fn every_table_of_the_scan_is_built_before_the_first_message() {
    let found = warm_problems(&src_sources());
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn a_table_left_to_the_first_message_and_an_uncalled_warm_are_reported() {
    let fine = sources(&[
        (
            "checks/phishing/forms.rs",
            "static FIELD: LazyLock<Regex> = LazyLock::new(|| x());\npub(crate) fn warm() {\n    LazyLock::force(&FIELD);\n}\n",
        ),
        (
            "checks/phishing.rs",
            "fn warm() { forms::warm(); }\nfn build() { warm(); }\n",
        ),
        // Outside the scanning stages, and a table of a test module.
        (
            "telemetry/metrics.rs",
            "static VALUES: LazyLock<Set> = LazyLock::new(Default::default);\n",
        ),
        (
            "scan/view.rs",
            "// static OLD: LazyLock<Regex> in a comment\nmod tests {\n    static T: LazyLock<u8> = LazyLock::new(|| 1);\n}\n",
        ),
    ]);
    assert_eq!(warm_problems(&fine), Vec::<String>::new());

    let bad = sources(&[
        (
            "checks/impersonation.rs",
            "use x;\nstatic ADDRESS: LazyLock<Regex> = LazyLock::new(|| x());\n",
        ),
        (
            "scan/brands.rs",
            "fn claimed() {\n    static CLAIMS: std::sync::LazyLock<G> = std::sync::LazyLock::new(g);\n}\nfn warm() {\n    lookalike::warm();\n    prewarm();\n}\n",
        ),
    ]);
    let found = warm_problems(&bad);
    assert!(
        found.contains(&"src/checks/impersonation.rs:2: ADDRESS is not forced by this file's fn warm()".to_string()),
        "{found:#?}"
    );
    assert!(
        found.contains(&"src/scan/brands.rs:2: CLAIMS is not forced by this file's fn warm()".to_string()),
        "{found:#?}"
    );
    assert!(
        found.contains(&"src/scan/brands.rs: fn warm() is never called".to_string()),
        "{found:#?}"
    );
    assert_eq!(found.len(), 3, "{found:#?}");
}
