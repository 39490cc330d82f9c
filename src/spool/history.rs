//! A message's delivery history: an append-only sidecar (`ID.st`) of
//! checksummed lines, one per event, each fsynced. A recipient delivered is
//! never sent again after a restart; a torn or damaged line is skipped (at
//! worst one duplicate delivery), never taken for something else.

use std::fs::{self, OpenOptions};
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::spool::error::{SpoolError, io_err};
use crate::spool::{Area, Spool};

/// One event in a message's delivery history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "lowercase")]
pub(crate) enum StateEvent {
    /// Recipient `rcpt` (index in the envelope) was accepted downstream.
    Delivered { rcpt: usize, reply: String },
    /// Recipient `rcpt` failed permanently (a DSN was queued if one was due).
    Failed { rcpt: usize, reply: String },
    /// An attempt failed temporarily; the next one is due at `next` (Unix seconds).
    Deferred { attempts: u32, next: i64, error: String },
}

impl Spool {
    /// The delivery history of a message (checksummed lines; damaged lines skipped).
    pub(crate) fn events(&self, area: Area, id: &str) -> Vec<StateEvent> {
        let Ok(text) = fs::read(self.state_path(area, id)) else {
            return Vec::new();
        };
        text.split(|&b| b == b'\n').filter_map(parse_event_line).collect()
    }

    /// Appends an event to a message's history and makes it durable.
    pub(crate) fn append(&self, area: Area, id: &str, event: &StateEvent) -> Result<(), SpoolError> {
        let path = self.state_path(area, id);
        let json = serde_json::to_string(event).expect("events serialise");
        let line = format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()));
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(line.as_bytes()).map_err(io_err(&path))?;
        f.sync_data().map_err(io_err(&path))
    }
}

fn parse_event_line(line: &[u8]) -> Option<StateEvent> {
    let line = std::str::from_utf8(line).ok()?;
    let (crc, json) = line.split_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    if crc32fast::hash(json.as_bytes()) != crc {
        return None;
    }
    serde_json::from_str(json).ok()
}
