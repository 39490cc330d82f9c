//! The bytes of a stamped message as the client sends them: pieces in memory
//! (the stamp's prefix, a small body) or ranges of the queue file (a large
//! body), read in bounded chunks while they are sent.
//!
//! Invariants: sending a message never holds more than one chunk of a file
//! piece in memory, whatever the message's size (a 150 MB message costs one
//! chunk, not 150 MB); file reads run on the blocking pool, never on the
//! async workers; whether the bytes hold a bare CR or LF is known before the
//! first byte is sent (it decides between DATA and BDAT), computed with
//! [`LineBreaks`] over exactly the bytes that will be sent.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Bytes read from a file piece at a time, and the window of memory pieces.
pub(crate) const CHUNK: usize = 256 * 1024;

/// One piece of the message.
enum Piece<'a> {
    Memory(&'a [u8]),
    /// Bytes `range` of the message's file.
    File(Range<u64>),
}

/// Bytes of the stamped message, in pieces (prefix, kept ranges of the body).
pub(crate) struct MessageBytes<'a> {
    pieces: Vec<Piece<'a>>,
    file: Option<Arc<File>>,
    bare_line_break: bool,
}

impl<'a> MessageBytes<'a> {
    /// A message whose pieces are all in memory.
    pub(crate) fn in_memory(pieces: Vec<&'a [u8]>) -> MessageBytes<'a> {
        let mut breaks = LineBreaks::default();
        for p in &pieces {
            breaks.feed(p);
        }
        MessageBytes {
            bare_line_break: breaks.bare(),
            pieces: pieces.into_iter().map(Piece::Memory).collect(),
            file: None,
        }
    }

    /// `prefix`, then the byte `ranges` of `file`, in order. `bare_line_break`
    /// must have been computed (with [`LineBreaks`]) over those same bytes.
    pub(crate) fn from_file(
        prefix: &'a [u8],
        file: Arc<File>,
        ranges: impl IntoIterator<Item = Range<u64>>,
        bare_line_break: bool,
    ) -> MessageBytes<'a> {
        let mut pieces = vec![Piece::Memory(prefix)];
        pieces.extend(ranges.into_iter().map(Piece::File));
        MessageBytes {
            pieces,
            file: Some(file),
            bare_line_break,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Memory(b) => b.len(),
                Piece::File(r) => (r.end - r.start) as usize,
            })
            .sum()
    }

    /// True when the bytes contain a LF without its CR or a CR without its LF:
    /// DATA cannot carry them, and a lenient receiver could read a line end
    /// (even an end of data) where the sender meant none, so they go by BDAT.
    pub(crate) fn has_bare_line_break(&self) -> bool {
        self.bare_line_break
    }

    /// The bytes in order, at most [`CHUNK`] at a time.
    pub(crate) fn chunks(&self) -> Chunks<'_, 'a> {
        Chunks {
            message: self,
            piece: 0,
            done: 0,
            buf: Vec::new(),
        }
    }
}

/// Reads a message's bytes chunk by chunk (see [`MessageBytes::chunks`]).
pub(crate) struct Chunks<'m, 'a> {
    message: &'m MessageBytes<'a>,
    piece: usize,
    /// Bytes of the current piece already returned.
    done: u64,
    /// The one buffer file pieces are read into.
    buf: Vec<u8>,
}

impl Chunks<'_, '_> {
    /// The next chunk, or `None` at the end.
    pub(crate) async fn next(&mut self) -> io::Result<Option<&[u8]>> {
        let message = self.message;
        loop {
            let Some(piece) = message.pieces.get(self.piece) else {
                return Ok(None);
            };
            match piece {
                Piece::Memory(bytes) => {
                    let start = self.done as usize;
                    if start >= bytes.len() {
                        self.piece += 1;
                        self.done = 0;
                        continue;
                    }
                    let end = (start + CHUNK).min(bytes.len());
                    self.done = end as u64;
                    return Ok(Some(&bytes[start..end]));
                }
                Piece::File(range) => {
                    let at = range.start + self.done;
                    if at >= range.end {
                        self.piece += 1;
                        self.done = 0;
                        continue;
                    }
                    let n = (range.end - at).min(CHUNK as u64) as usize;
                    let file = message
                        .file
                        .clone()
                        .ok_or_else(|| io::Error::other("a file piece without its file"))?;
                    let mut buf = std::mem::take(&mut self.buf);
                    // A read may wait for the disk: on the blocking pool, not a scheduler thread.
                    self.buf = tokio::task::spawn_blocking(move || {
                        buf.resize(n, 0);
                        file.read_exact_at(&mut buf, at).map(|()| buf)
                    })
                    .await
                    .map_err(io::Error::other)??;
                    self.done += n as u64;
                    return Ok(Some(&self.buf[..n]));
                }
            }
        }
    }
}

/// Whether `prefix` and then the byte `ranges` of `file` hold a bare CR or
/// LF, read a [`CHUNK`] at a time (for [`MessageBytes::from_file`]). Blocking.
pub(crate) fn line_breaks_in_file(
    prefix: &[u8],
    file: &File,
    ranges: impl IntoIterator<Item = Range<u64>>,
) -> io::Result<bool> {
    let mut breaks = LineBreaks::default();
    breaks.feed(prefix);
    let mut buf = vec![0u8; CHUNK];
    for range in ranges {
        let mut at = range.start;
        while at < range.end {
            let n = (range.end - at).min(CHUNK as u64) as usize;
            file.read_exact_at(&mut buf[..n], at)?;
            breaks.feed(&buf[..n]);
            at += n as u64;
        }
    }
    Ok(breaks.bare())
}

/// Finds a bare CR or LF in bytes fed in order, however they are split.
#[derive(Default)]
pub(crate) struct LineBreaks {
    prev: u8,
    found: bool,
}

impl LineBreaks {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.found {
            return;
        }
        let mut prev = self.prev;
        for &b in bytes {
            if (b == b'\n' && prev != b'\r') || (prev == b'\r' && b != b'\n') {
                self.found = true;
                return;
            }
            prev = b;
        }
        self.prev = prev;
    }

    /// Whether everything fed holds a bare line break (a CR at the very end counts).
    pub(crate) fn bare(&self) -> bool {
        self.found || self.prev == b'\r'
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn bare_line_breaks_are_found_however_the_bytes_are_split() {
        let bare = |pieces: Vec<&'static [u8]>| MessageBytes::in_memory(pieces).has_bare_line_break();
        assert!(!bare(vec![b"a\r", b"\nb\r\n"]));
        assert!(bare(vec![b"a\r\n", b"\nb"]), "bare LF");
        assert!(bare(vec![b"a\r.\r\n"]), "bare CR");
        assert!(bare(vec![b"a\r"]), "CR at the very end");
        assert!(bare(vec![b"\n"]), "LF first");
    }

    #[tokio::test]
    async fn file_pieces_are_read_in_bounded_chunks_and_in_order() {
        let mut f = tempfile::tempfile().unwrap();
        let body: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        f.write_all(b"HEAD").unwrap();
        f.write_all(&body).unwrap();
        let file = Arc::new(f);
        // Two kept ranges of the body, with a skipped range between them.
        let ranges = [
            4..(4 + CHUNK as u64 + 5),
            (4 + CHUNK as u64 + 9)..(4 + body.len() as u64),
        ];
        let m = MessageBytes::from_file(b"Prefix: 1\r\n", file, ranges, false);
        let mut expected = b"Prefix: 1\r\n".to_vec();
        expected.extend_from_slice(&body[..CHUNK + 5]);
        expected.extend_from_slice(&body[CHUNK + 9..]);
        assert_eq!(m.len(), expected.len());
        let mut got = Vec::new();
        let mut chunks = m.chunks();
        while let Some(c) = chunks.next().await.unwrap() {
            assert!(c.len() <= CHUNK, "a chunk of {} bytes", c.len());
            got.extend_from_slice(c);
        }
        assert_eq!(got, expected);
        assert!(chunks.buf.capacity() <= CHUNK, "one buffer, never grown past a chunk");
    }

    #[test]
    fn line_breaks_in_a_file_are_those_of_the_bytes_that_will_be_sent() {
        // CRLF lines, with a CR at the end of the first chunk and its LF at
        // the start of the next; a bare LF only in the range left out.
        let mut body = vec![b'x'; CHUNK - 1];
        body.extend_from_slice(b"\r\nline\r\nskipped\nfield\r\nend\r\n");
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"HEAD").unwrap();
        f.write_all(&body).unwrap();
        let at = |needle: &[u8]| 4 + body.windows(needle.len()).position(|w| w == needle).unwrap() as u64;
        let (skip, skip_end) = (at(b"skipped"), at(b"field"));
        let end = 4 + body.len() as u64;
        let kept = vec![4..skip, skip_end..end];
        assert!(!line_breaks_in_file(b"P: 1\r\n", &f, kept.clone()).unwrap());
        assert!(
            line_breaks_in_file(b"P: 1\n", &f, kept).unwrap(),
            "a bare LF in the prefix"
        );
        assert!(
            line_breaks_in_file(b"", &f, std::iter::once(4..end)).unwrap(),
            "the bare LF, kept"
        );
        assert!(
            line_breaks_in_file(b"", &f, std::iter::once(4..4 + CHUNK as u64)).unwrap(),
            "a CR at the very end"
        );
    }
}
