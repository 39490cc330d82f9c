//! Arbitrary UTF-8 as the configuration file, then the checks' own options.
//!
//! Checks: no panic; every problem is reported, never a crash.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| exogate::app::fuzz::config(data));
