//! Arbitrary bytes through the zip, gzip, tar, cabinet, RAR and 7-Zip readers
//! the attachment policy uses, and raw inflate.
//!
//! Checks: no panic; listings stay within their entry limit and decompressed
//! output within its byte limit, whatever the archive declares.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| exogate::app::fuzz::archives(data));
