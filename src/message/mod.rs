//! What a message is, as plain values shared by every later stage: the SMTP
//! envelope and session facts, the sender-authentication results and the
//! reader of Authentication-Results values, the raw header walker, the journal
//! report reader (monitor mode), the other readings of a header block and what
//! we own under them, the stamp (the only
//! change we make to a message: our X-CLOUD-SEC-AV-* fields prepended, any
//! arriving ones skipped) and the verdict reached about it.
//!
//! Owns: these values and their invariants (bytes never re-serialised; our
//! fields removed wherever they appear, folded lines included). Must never:
//! do I/O, read configuration or know how a message arrived or leaves.

pub mod auth;
pub mod authres;
pub mod envelope;
pub mod headers;
pub mod journal;
pub mod owned;
pub mod readings;
pub mod stamp;
pub mod trace;
pub mod verdict;
