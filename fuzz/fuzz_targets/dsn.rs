//! A delivery status notification built for arbitrary message bytes (their
//! header, or all of them, is quoted in it).
//!
//! Checks: no panic; the DSN always parses as MIME and names the recipient.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| exogate::app::fuzz::dsn(data));
