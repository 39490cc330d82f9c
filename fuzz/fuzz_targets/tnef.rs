//! Arbitrary bytes through the TNEF (winmail.dat) decoder, embedded messages'
//! streams decoded in turn.
//!
//! Checks: no panic; at most the member limit is returned.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| exogate::app::fuzz::tnef(data));
