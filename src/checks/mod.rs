//! The built-in checks and the one factory that builds them from a policy's
//! `[[policy.NAME.check]]` tables.
//!
//! To add a check: write `src/checks/NAME.rs` with
//! `pub fn build(options: &Section, cx: &BuildContext) -> Option<Arc<dyn Check>>`
//! and add its line to [`build`] and [`KINDS`]. A builder reports bad options
//! through `options.error(..)` and returns `None`; options it never reads are
//! reported as unknown keys automatically.

use std::sync::Arc;

use crate::config::reader::Section;
use crate::scan::pipeline::{BuildContext, Check};

pub mod attachments;
pub mod content;
pub mod dlp;
pub mod impersonation;
pub mod malware;
pub mod urls;

/// Every `kind` the factory knows.
pub const KINDS: [&str; 6] = ["attachments", "malware", "impersonation", "urls", "content", "dlp"];

/// The checks of the built-in `default` policy (used when the config defines none).
pub const BUILTIN_DEFAULTS: [&str; 6] = KINDS;

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
