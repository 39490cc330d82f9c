//! Arbitrary bytes as a message read into its view (one MIME walk, HTML by
//! html5gum), and as an HTML document on its own.
//!
//! Checks: no panic; links, parts and text stay within their caps.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| exogate::app::fuzz::view(data));
