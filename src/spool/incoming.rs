//! A message body while it is received: kept in memory up to a threshold,
//! then written as it arrives into the file that becomes its queue file (the
//! body comes first in the queue format), so a large message is never held
//! in memory whole.
//!
//! Nothing here is durable: a body becomes durable only through
//! `Spool::commit`. A spill file is removed when its body is dropped, finished
//! or not, unless the commit kept it as the queue file.
//!
//! `read_header_section` also serves a DSN that returns only the header of
//! a queued message (the body starts at `BODY_START` in both kinds of file).

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::message::readings::{MAX_HEADER_SCAN, extent};
use crate::spool::error::{SpoolError, io_err};
use crate::spool::format::MAGIC;

/// Where a spilled body starts in its file (after the queue format's magic,
/// as in a queue file).
pub(crate) const BODY_START: u64 = MAGIC.len() as u64;

/// A message body being received: in memory up to a threshold, then on disk.
pub(crate) struct IncomingBody {
    mem: Vec<u8>,
    spill: Option<Spill>,
    threshold: usize,
    path: PathBuf,
}

struct Spill {
    file: File,
    path: SpillPath,
    written: u64,
    crc: crc32fast::Hasher,
}

/// A spill file's path: the file is removed when this is dropped, on every
/// way out (an error, a message refused, a session dropped while it waits),
/// unless [`SpillPath::keep`] took it (the commit renamed it into the queue).
pub(crate) struct SpillPath(Option<PathBuf>);

impl SpillPath {
    pub(crate) fn path(&self) -> &Path {
        self.0.as_deref().expect("kept only by keep(self)")
    }

    /// The file stays: it has become a queue file.
    pub(crate) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for SpillPath {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

impl IncomingBody {
    /// A body for message `id`, spilled (past `threshold`) into the spool's
    /// `incoming/` folder, `dir`.
    pub(crate) fn new(dir: &Path, id: &str, threshold: usize) -> IncomingBody {
        IncomingBody {
            mem: Vec::new(),
            spill: None,
            threshold: threshold.max(64 * 1024),
            path: dir.join(id),
        }
    }

    /// Where receivers append bytes.
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.mem
    }

    pub(crate) fn len(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.written) + self.mem.len() as u64
    }

    /// Moves buffered bytes to disk once past the threshold. The last byte
    /// stays in memory: the DATA receiver may still take back a CR it pushed.
    pub(crate) fn spill_if_needed(&mut self) -> Result<(), SpoolError> {
        if self.mem.len() <= self.threshold {
            return Ok(());
        }
        let keep = self.mem.len() - 1;
        self.write_out(keep)
    }

    fn write_out(&mut self, n: usize) -> Result<(), SpoolError> {
        if self.spill.is_none() {
            let path = SpillPath(Some(self.path.clone()));
            let mut file = OpenOptions::new()
                .write(true)
                .read(true)
                .create(true)
                .truncate(true)
                .open(&self.path)
                .map_err(io_err(&self.path))?;
            file.write_all(MAGIC).map_err(io_err(&self.path))?;
            let mut crc = crc32fast::Hasher::new();
            crc.update(MAGIC);
            self.spill = Some(Spill {
                file,
                path,
                written: 0,
                crc,
            });
        }
        let spill = self.spill.as_mut().expect("created above");
        spill.file.write_all(&self.mem[..n]).map_err(io_err(&self.path))?;
        spill.crc.update(&self.mem[..n]);
        spill.written += n as u64;
        self.mem.drain(..n);
        Ok(())
    }

    /// Ends reception.
    pub(crate) fn finish(mut self) -> Result<Body, SpoolError> {
        if self.spill.is_none() {
            return Ok(Body::Memory(std::mem::take(&mut self.mem)));
        }
        let n = self.mem.len();
        self.write_out(n)?;
        let spill = self.spill.take().expect("spilled");
        Ok(Body::Spilled {
            file: spill.file,
            path: spill.path,
            len: spill.written,
            crc: spill.crc,
        })
    }
}

/// A fully received body.
pub(crate) enum Body {
    Memory(Vec<u8>),
    Spilled {
        file: File,
        /// Removed with the body unless a commit keeps it.
        path: SpillPath,
        len: u64,
        crc: crc32fast::Hasher,
    },
}

impl Body {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Body::Memory(v) => v.len() as u64,
            Body::Spilled { len, .. } => *len,
        }
    }

    /// The whole message if it is at most `max` bytes, else only its header
    /// section. In memory: borrowed; on disk: read on the blocking pool (a
    /// read of up to `max` bytes may wait for the disk, and must not stall
    /// the sessions sharing this async worker).
    pub(crate) async fn for_scan(&self, max: u64) -> Result<Cow<'_, [u8]>, SpoolError> {
        match self {
            Body::Memory(v) => Ok(Cow::Borrowed(&v[..])),
            Body::Spilled { path, len, .. } => {
                let (path, len) = (path.path().to_path_buf(), *len);
                let read = tokio::task::spawn_blocking(move || read_spilled(&path, len, max));
                let joined = read.await.map_err(|e| SpoolError::Io {
                    path: PathBuf::new(),
                    source: io::Error::other(e),
                })?;
                joined.map(Cow::Owned)
            }
        }
    }

    /// Lets go of a message that is not kept: what was written to disk is
    /// removed (as dropping it does; this says so where it happens).
    pub(crate) fn discard(self) {
        drop(self);
    }
}

/// A spilled body (after the magic of the file at `path`, `len` bytes): whole
/// if at most `max` bytes, else its header section. Blocking.
fn read_spilled(path: &Path, len: u64, max: u64) -> Result<Vec<u8>, SpoolError> {
    let f = File::open(path).map_err(io_err(path))?;
    if len <= max {
        let mut v = vec![0u8; len as usize];
        f.read_exact_at(&mut v, BODY_START).map_err(io_err(path))?;
        Ok(v)
    } else {
        read_header_section(&f, BODY_START, len).map_err(io_err(path))
    }
}

/// Reads the message of `len` bytes at `start` in `f` until the end of its
/// header section under every reading a parser may use
/// (`message::readings::extent`: stamping must see each one's whole block),
/// at most `MAX_HEADER_SCAN` octets (or `len`). By position (`pread`): the
/// file's shared offset is neither used nor moved, so a queued message's
/// file can be read while it is sent. Also how a DSN that returns only the
/// header reads a queued message.
pub(crate) fn read_header_section(f: &File, start: u64, len: u64) -> io::Result<Vec<u8>> {
    let end = start + len.min(MAX_HEADER_SCAN as u64);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut at = start;
    while at < end {
        let want = ((end - at) as usize).min(chunk.len());
        let n = f.read_at(&mut chunk[..want], at)?;
        if n == 0 {
            break;
        }
        at += n as u64;
        out.extend_from_slice(&chunk[..n]);
        if let Some(cut) = extent(&out) {
            out.truncate(cut);
            return Ok(out);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file holding `before`, a message, then `after` (a queue file's
    /// magic and trailer records).
    fn file_with(before: &[u8], message: &[u8], after: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[before, message, after].concat()).unwrap();
        f
    }

    /// A body of `n` bytes received into `dir`, spilled past 64 KiB.
    fn spilled(dir: &Path, n: usize) -> IncomingBody {
        let mut body = IncomingBody::new(dir, "ID1", 0);
        body.buf().extend(std::iter::repeat_n(b'x', n));
        body.spill_if_needed().unwrap();
        body
    }

    #[test]
    fn a_spill_file_goes_with_its_body_finished_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ID1");
        drop(spilled(dir.path(), 100_000));
        assert!(!file.exists(), "dropped while received");

        let body = spilled(dir.path(), 100_000).finish().unwrap();
        assert!(matches!(body, Body::Spilled { .. }) && file.exists());
        drop(body);
        assert!(!file.exists(), "dropped once received (a session gone mid-scan)");

        let body = spilled(dir.path(), 100_000).finish().unwrap();
        body.discard();
        assert!(!file.exists(), "discarded");
    }

    #[test]
    fn the_header_section_is_read_from_its_offset_and_within_the_message() {
        let message = b"From: a@b\r\nSubject: s\r\n\r\nbody\r\n";
        let f = file_with(b"MAGIC!!!", message, b"records\r\n\r\n");
        let got = read_header_section(&f, 8, message.len() as u64).unwrap();
        assert_eq!(got, b"From: a@b\r\nSubject: s\r\n\r\n");

        // No blank line: the message, never the bytes after it.
        let message = b"From: a@b\r\nSubject: s\r\n";
        let f = file_with(b"MAGIC!!!", message, b"\r\nrecords\r\n\r\n");
        let got = read_header_section(&f, 8, message.len() as u64).unwrap();
        assert_eq!(got, message);
    }

    #[test]
    fn a_header_section_without_its_end_stops_at_max_header_scan() {
        let mut message = Vec::new();
        while message.len() < MAX_HEADER_SCAN + 200_000 {
            message.extend_from_slice(b"X-Long: a field of a header that never ends\r\n");
        }
        let f = file_with(b"MAGIC!!!", &message, b"");
        let got = read_header_section(&f, 8, message.len() as u64).unwrap();
        assert_eq!(got.len(), MAX_HEADER_SCAN);
        assert_eq!(got, message[..MAX_HEADER_SCAN]);
    }
}
