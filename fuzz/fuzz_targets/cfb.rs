//! Arbitrary bytes through the OLE2 compound-file directory walk (macros,
//! encryption, MSI).
//!
//! Checks: no panic and no endless FAT chain.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| exogate::app::fuzz::cfb(data));
