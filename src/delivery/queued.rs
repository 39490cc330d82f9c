//! A queued message as a delivery attempt sends it: a small one read whole,
//! a large one (over `LARGE_READ`) verified through its checksum in bounded
//! chunks on the blocking pool and then streamed from its queue file while
//! it is sent, so a 150 MB message never sits in memory. What it must never
//! do: hand out bytes of a file whose checksum was not verified.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::delivery::smtp_client::{LineBreaks, MessageBytes};
use crate::message::stamp::Stamp;
use crate::spool::format::Trailer;
use crate::spool::incoming::read_header_section;
use crate::spool::{Area, Spool, SpoolError};

/// Files larger than this are not read into memory: they are verified on the
/// blocking pool and their body is streamed from the file while it is sent.
pub(super) const LARGE_READ: u64 = 256 * 1024;

/// A queued message, verified, as an attempt sends it.
pub(super) struct Message {
    pub(super) trailer: Trailer,
    body: BodyBytes,
}

enum BodyBytes {
    /// A small message, read whole.
    Memory(Vec<u8>),
    /// A large one, left in its queue file (the body from byte `start`).
    File {
        file: Arc<File>,
        start: u64,
        bare_line_break: bool,
    },
}

impl Message {
    /// The stamped message's bytes: pieces of memory, or of the queue file.
    pub(super) fn bytes<'a>(&'a self, stamp: &'a Stamp) -> MessageBytes<'a> {
        match &self.body {
            BodyBytes::Memory(raw) => MessageBytes::in_memory(stamp.pieces(raw)),
            BodyBytes::File {
                file,
                start,
                bare_line_break,
            } => MessageBytes::from_file(
                &stamp.prefix,
                file.clone(),
                stamp.kept_in_file(self.trailer.body_len as usize, *start),
                *bare_line_break,
            ),
        }
    }

    /// What a DSN returns of the stamped message: all of it when `full`
    /// (only ever asked for a message within the tenant's `return_limit`),
    /// else its header section. A large message's body stays in its file.
    pub(super) async fn for_dsn(&self, stamp: &Stamp, full: bool) -> std::io::Result<Vec<u8>> {
        match &self.body {
            BodyBytes::Memory(raw) => Ok(stamp.apply(raw)),
            BodyBytes::File { file, start, .. } => {
                let (file, start, len) = (file.clone(), *start, self.trailer.body_len);
                let raw = tokio::task::spawn_blocking(move || {
                    if full {
                        let mut raw = vec![0u8; len as usize];
                        file.read_exact_at(&mut raw, start).map(|()| raw)
                    } else {
                        read_header_section(&file, start, len)
                    }
                })
                .await
                .map_err(std::io::Error::other)??;
                Ok(stamp.apply(&raw))
            }
        }
    }
}

/// Verifies a large queued message by reading it through once, in bounded
/// chunks, finding on the way whether the stamped bytes hold a bare line
/// break (DATA or BDAT is decided before the first byte is sent); its body
/// stays in the file. Blocking.
fn open_streamed(spool: &Spool, id: &str) -> Result<Message, SpoolError> {
    let mut breaks = LineBreaks::default();
    let mut kept: Option<Vec<std::ops::Range<usize>>> = None;
    let queued = spool.open_verified(Area::Active, id, &mut |trailer, offset, bytes| {
        let kept = kept.get_or_insert_with(|| {
            breaks.feed(&trailer.prefix);
            Stamp::from_stored(Vec::new(), &trailer.meta.skips).kept(trailer.body_len as usize)
        });
        let end = offset + bytes.len() as u64;
        for r in kept.iter() {
            let (s, e) = ((r.start as u64).max(offset), (r.end as u64).min(end));
            if s < e {
                breaks.feed(&bytes[(s - offset) as usize..(e - offset) as usize]);
            }
        }
    })?;
    if kept.is_none() {
        breaks.feed(&queued.trailer.prefix);
    }
    Ok(Message {
        trailer: queued.trailer,
        body: BodyBytes::File {
            file: Arc::new(queued.file),
            start: queued.body_start,
            bare_line_break: breaks.bare(),
        },
    })
}

/// Reads and verifies queued message `id` of `size` bytes: whole when small,
/// left in its file (verified on the blocking pool) when large.
pub(super) async fn load(spool: &Arc<Spool>, id: &str, size: u64) -> Result<Message, SpoolError> {
    if size <= LARGE_READ {
        return spool.read(Area::Active, id).map(|s| Message {
            trailer: s.trailer,
            body: BodyBytes::Memory(s.body),
        });
    }
    let (spool, owned_id) = (spool.clone(), id.to_string());
    let path = spool.path(Area::Active, id);
    tokio::task::spawn_blocking(move || open_streamed(&spool, &owned_id))
        .await
        .unwrap_or_else(|e| {
            Err(SpoolError::Io {
                path,
                source: std::io::Error::other(e.to_string()),
            })
        })
}
