//! The module layout rule of DESIGN §10, checked on the source itself: every
//! top-level module of `src/` belongs to a stage, a module never imports one
//! of a later stage, and no two top-level modules import each other (directly
//! or around a circle).
//!
//! It reads `src/**/*.rs`, drops comments and string literals, and collects
//! every path that names a top-level module: `crate::x::…`, each item of a
//! `use crate::{a, b::{…}}` group, and `super::…` chains that climb out of a
//! top-level folder. Run it alone with `cargo test --test layout` (or
//! `scripts/check-layout.sh`); a failure lists each offending `file:line`.
//! The source is read by `tests/source`, which `tests/code_rules.rs` shares.

mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use source::{code_only, sources, src_sources};

/// The stages, lowest first: a module may import its own stage and earlier
/// ones, never a later one. Why this order is in ARCHITECTURE.md.
const STAGES: &[&str] = &[
    "smtp",
    "message",
    "config",
    "telemetry",
    "dns",
    "tls",
    "spool",
    "store",
    "scan",
    "checks",
    "delivery",
    "remediate",
    "inbound",
    "web",
    "exo_setup",
    "app",
    "cli",
];

/// Crate roots: they declare modules and re-export, they belong to no stage.
const ROOTS: &[&str] = &["lib.rs", "main.rs"];

/// One reference from a file to a top-level module.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    file: String,
    line: usize,
    from: String,
    to: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Other,
}

/// Tokens with their line numbers (only what paths and groups are made of).
fn tokens(code: &str) -> Vec<(Token, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            // A raw identifier r#name is the name.
            let word = word.strip_prefix("r#").map(str::to_string).unwrap_or(word);
            out.push((Token::Ident(word), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Token::PathSep, line));
            i += 2;
        } else {
            out.push((
                match ch {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    ',' => Token::Comma,
                    _ => Token::Other,
                },
                line,
            ));
            i += 1;
        }
    }
    out
}

/// The module path of a file below `src/`: `config/mod.rs` → [config],
/// `scan/formats/rar.rs` → [scan, formats, rar].
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every top-level module a file names, with the line it is named on.
/// `rel` is the file's path below `src/`.
fn references(rel: &Path, src: &str) -> Vec<(String, usize)> {
    let toks = tokens(&code_only(src));
    let file_module = module_path(rel);
    let mut found = Vec::new();
    // Inline `mod name { … }` blocks deepen the module path for `super::`.
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let ident = |k: usize| match toks.get(k) {
        Some((Token::Ident(w), _)) => Some(w.as_str()),
        _ => None,
    };
    while i < toks.len() {
        match &toks[i].0 {
            Token::Open => depth += 1,
            Token::Close => {
                depth = depth.saturating_sub(1);
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
            }
            Token::Ident(w)
                if w == "mod" && ident(i + 1).is_some() && toks.get(i + 2).map(|t| &t.0) == Some(&Token::Open) =>
            {
                inline.push(depth);
                depth += 1;
                i += 3;
                continue;
            }
            Token::Ident(w) if w == "crate" && toks.get(i + 1).map(|t| &t.0) == Some(&Token::PathSep) => {
                let preceded_by_sep = i > 0 && toks[i - 1].0 == Token::PathSep;
                if !preceded_by_sep {
                    match toks.get(i + 2) {
                        Some((Token::Ident(name), l)) => found.push((name.clone(), *l)),
                        Some((Token::Open, _)) => found.extend(group_heads(&toks, i + 2)),
                        _ => {}
                    }
                }
            }
            Token::Ident(w) if w == "super" && !(i > 0 && toks[i - 1].0 == Token::PathSep) => {
                // super::super::…::name, counted from the current module.
                let mut ups = 0;
                let mut k = i;
                while ident(k) == Some("super") && toks.get(k + 1).map(|t| &t.0) == Some(&Token::PathSep) {
                    ups += 1;
                    k += 2;
                }
                if ups == 0 {
                    // `pub(super)` and the like: no path.
                    i += 1;
                    continue;
                }
                let here = file_module.len() + inline.len();
                if ups >= here {
                    // Climbed to the crate root: what follows is a top-level module.
                    match toks.get(k) {
                        Some((Token::Ident(name), l)) => found.push((name.clone(), *l)),
                        Some((Token::Open, _)) => found.extend(group_heads(&toks, k)),
                        _ => {}
                    }
                }
                i = k;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The first name of each item of the `{ … }` group that opens at `open`.
fn group_heads(toks: &[(Token, usize)], open: usize) -> Vec<(String, usize)> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    for (tok, line) in &toks[open..] {
        match tok {
            Token::Open => {
                depth += 1;
                if depth == 1 {
                    expect_head = true;
                }
            }
            Token::Close => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Token::Comma if depth == 1 => expect_head = true,
            Token::Ident(name) if depth == 1 && expect_head => {
                heads.push((name.clone(), *line));
                expect_head = false;
            }
            _ if depth == 1 => expect_head = false,
            _ => {}
        }
    }
    heads
}

// ---- the rule ----

/// The top-level module a file belongs to, or `None` for a crate root.
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.iter().next()?.to_string_lossy().to_string();
    if rel.iter().count() == 1 {
        if ROOTS.contains(&first.as_str()) {
            return None;
        }
        return Some(first.trim_end_matches(".rs").to_string());
    }
    Some(first)
}

/// Every reference between different top-level modules, and the set of
/// top-level modules, for the sources given as (path below src/, text).
fn collect(sources: &[(PathBuf, String)]) -> (BTreeSet<String>, Vec<Reference>) {
    let mut modules = BTreeSet::new();
    for (rel, _) in sources {
        if let Some(m) = top_module(rel) {
            modules.insert(m);
        }
    }
    let mut refs = Vec::new();
    for (rel, text) in sources {
        let Some(from) = top_module(rel) else { continue };
        for (to, line) in references(rel, text) {
            if to != from && modules.contains(&to) {
                refs.push(Reference {
                    file: format!("src/{}", rel.display()),
                    line,
                    from: from.clone(),
                    to,
                });
            }
        }
    }
    (modules, refs)
}

/// Everything wrong with the layout, one line each (empty when it is right).
fn problems(modules: &BTreeSet<String>, refs: &[Reference]) -> Vec<String> {
    let rank = |m: &str| STAGES.iter().position(|s| *s == m);
    let mut out = Vec::new();
    for m in modules {
        if rank(m).is_none() {
            out.push(format!(
                "top-level module `{m}` belongs to no stage (move it into a stage folder, or add it to STAGES in tests/layout.rs)"
            ));
        }
    }
    for r in refs {
        if let (Some(a), Some(b)) = (rank(&r.from), rank(&r.to))
            && b > a
        {
            out.push(format!(
                "{}:{}: `{}` (stage {a}) imports `{}` (stage {b}), a later stage",
                r.file, r.line, r.from, r.to
            ));
        }
    }
    for cycle in cycles(refs) {
        let (path, rest) = cycle;
        let mut text = format!("import cycle: {}", path.join(" -> "));
        if !rest.is_empty() {
            let _ = write!(text, " (also in this circle: {})", rest.join(", "));
        }
        for pair in path.windows(2) {
            if let Some(r) = refs.iter().find(|r| r.from == pair[0] && r.to == pair[1]) {
                let _ = write!(text, "\n    {}:{}: `{}` imports `{}`", r.file, r.line, r.from, r.to);
            }
        }
        out.push(text);
    }
    out
}

/// The circles of the module graph: one per strongly connected component of
/// two or more modules, written as a closed path through all of them.
fn cycles(refs: &[Reference]) -> Vec<(Vec<String>, Vec<String>)> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in refs {
        graph.entry(&r.from).or_default().insert(&r.to);
        graph.entry(&r.to).or_default();
    }
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            for &m in &graph[n] {
                if m == to {
                    return true;
                }
                if seen.insert(m) {
                    stack.push(m);
                }
            }
        }
        false
    };
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for &start in graph.keys() {
        if done.contains(start) || !reaches(start, start) {
            continue;
        }
        let component: BTreeSet<&str> = graph
            .keys()
            .copied()
            .filter(|&m| m == start || (reaches(start, m) && reaches(m, start)))
            .collect();
        done.extend(component.iter().copied());
        // A shortest way back to the start, through the component.
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut end = None;
        while let Some(n) = queue.pop_front() {
            for &m in &graph[n] {
                if !component.contains(m) {
                    continue;
                }
                if m == start {
                    end = Some(n);
                    break;
                }
                if !prev.contains_key(m) {
                    prev.insert(m, n);
                    queue.push_back(m);
                }
            }
            if end.is_some() {
                break;
            }
        }
        let mut path = vec![start.to_string()];
        let mut n = end.expect("a module that reaches itself has a way back");
        let mut back = vec![n];
        while n != start {
            n = prev[n];
            back.push(n);
        }
        back.pop();
        path.extend(back.iter().rev().map(|s| s.to_string()));
        path.push(start.to_string());
        let rest: Vec<String> = component
            .iter()
            .filter(|m| !path.iter().any(|p| p == *m))
            .map(|m| m.to_string())
            .collect();
        out.push((path, rest));
    }
    out
}

#[test]
fn no_stage_imports_a_later_one_and_there_are_no_cycles() {
    let sources = src_sources();
    let (modules, refs) = collect(&sources);
    assert!(!refs.is_empty(), "no references found at all: the scanner is broken");
    let found = problems(&modules, &refs);
    assert!(
        found.is_empty(),
        "{} layout problem(s) (DESIGN §10; stages lowest first: {}):\n{}",
        found.len(),
        STAGES.join(" < "),
        found.join("\n")
    );
}

// ---- the checker checks itself ----

#[test]
fn grouped_nested_and_super_paths_are_all_seen() {
    let text = r#"
//! Mentions crate::app in a comment, which is no import.
use crate::{config::{self, Config}, smtp::reply::Reply,
    message};
use std::fmt;
const S: &str = "crate::web::x";
fn f() { let _ = crate::spool::now(); let c = 'x'; let l: &'static str = r"crate::app"; }
mod tests { use super::*; use super::super::super::dns::Dns; }
"#;
    let refs = references(Path::new("inbound/session.rs"), text);
    let names: Vec<(&str, usize)> = refs.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    assert_eq!(
        names,
        vec![("config", 3), ("smtp", 3), ("message", 4), ("spool", 7), ("dns", 8)]
    );
}

#[test]
fn an_import_from_a_later_stage_and_a_cycle_are_reported_with_file_and_line() {
    let (modules, refs) = collect(&sources(&[
        ("config/mod.rs", "use crate::inbound::Context;\n"),
        ("inbound/mod.rs", "\nuse crate::config::Config;\n"),
        ("lib.rs", "pub mod config; pub mod inbound;\n"),
    ]));
    let found = problems(&modules, &refs);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("src/config/mod.rs:1: `config` (stage 2) imports `inbound` (stage 12)"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("import cycle: config -> inbound -> config"),
        "{found:#?}"
    );
    assert!(
        found[1].contains("src/inbound/mod.rs:2: `inbound` imports `config`"),
        "{found:#?}"
    );
}

#[test]
fn a_module_outside_every_stage_is_reported() {
    let (modules, refs) = collect(&sources(&[
        ("stray.rs", "use crate::config::Config;\n"),
        ("config/mod.rs", ""),
    ]));
    let found = problems(&modules, &refs);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("`stray` belongs to no stage"), "{found:#?}");
}
