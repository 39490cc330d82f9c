//! Writing PowerShell text: lines, comment paragraphs wrapped to a fixed
//! width, and cmdlet calls with one parameter per continuation line.
//!
//! A config value enters a command only as [`Arg::Str`], which is written
//! single-quoted by [`ps_quote`]; the other argument kinds are our own fixed
//! words or arrays already quoted the same way.

use std::fmt::Write as _;

use super::ps_quote;

/// Comment lines are wrapped to this many columns.
const WIDTH: usize = 100;

pub(super) const RULE: &str =
    "# -------------------------------------------------------------------------------------------------";

/// One parameter value.
pub(super) enum Arg {
    /// A config-derived string: written single-quoted.
    Str(String),
    /// A fixed token of ours (`Partner`, `$true`, `-1`).
    Word(&'static str),
    /// Already quoted (an `@(...)` array).
    Quoted(String),
}

pub(super) fn bool_word(b: bool) -> Arg {
    Arg::Word(if b { "$true" } else { "$false" })
}

#[derive(Default)]
pub(super) struct Out(pub(super) String);

impl Out {
    pub(super) fn line(&mut self, text: &str) {
        self.0.push_str(text);
        self.0.push('\n');
    }

    pub(super) fn blank(&mut self) {
        self.0.push('\n');
    }

    /// Comment paragraphs, one per `\n`-separated line of `text`, wrapped at
    /// spaces to [`WIDTH`]. Continuation lines keep the paragraph's indentation,
    /// plus the width of a leading item marker ("1. ", "5c. ", "- ").
    pub(super) fn comment(&mut self, text: &str) {
        for para in text.lines() {
            if para.is_empty() {
                self.line("#");
                continue;
            }
            let indent = para.len() - para.trim_start_matches(' ').len();
            let body = &para[indent..];
            let marker = body.split_once(' ').map_or(0, |(first, _)| {
                let item = first == "-"
                    || (first.ends_with('.')
                        && first.starts_with(|c: char| c.is_ascii_digit())
                        && first.len() <= 4
                        && first[..first.len() - 1].chars().all(|c| c.is_ascii_alphanumeric()));
                if item { first.len() + 1 } else { 0 }
            });
            let mut prefix = " ".repeat(indent);
            let mut current = String::new();
            for word in body.split(' ') {
                if !current.is_empty() && 2 + prefix.len() + current.chars().count() + 1 + word.chars().count() > WIDTH
                {
                    let _ = writeln!(self.0, "# {prefix}{current}");
                    current.clear();
                    prefix = " ".repeat(indent + marker);
                }
                if !current.is_empty() {
                    current.push(' ');
                }
                current.push_str(word);
            }
            let _ = writeln!(self.0, "# {prefix}{current}");
        }
    }

    /// One comment line written as is (a command to copy), however long.
    pub(super) fn comment_unwrapped(&mut self, text: &str) {
        let _ = writeln!(self.0, "# {text}");
    }

    /// `Cmdlet -First 'v' `` then one parameter per continuation line.
    pub(super) fn command(&mut self, cmdlet: &str, args: &[(&str, Arg)]) {
        let text = |a: &Arg| match a {
            Arg::Str(s) => ps_quote(s),
            Arg::Word(w) => (*w).to_string(),
            Arg::Quoted(q) => q.clone(),
        };
        let mut s = cmdlet.to_string();
        for (i, (name, value)) in args.iter().enumerate() {
            let sep = if i == 0 { " " } else { " `\n    " };
            let _ = write!(s, "{sep}-{name} {}", text(value));
        }
        self.line(&s);
    }
}
