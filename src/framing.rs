//! Framing of the client's byte stream, without I/O: command lines, DATA
//! bodies (dot-unstuffed by smtp-proto's `DataReceiver`), BDAT chunks (taken
//! exactly, bare LFs included, by its `BdatReceiver`) and bodies being drained
//! after a refusal (its `DummyDataReceiver`).
//!
//! Lines are framed here rather than by smtp-proto's `RequestReceiver` so the
//! line-length limit is exact whatever the TCP segmentation (that receiver only
//! applies its limit to lines split across reads) and the buffer stays
//! bounded; each complete line is then parsed by smtp-proto's
//! `Request::parse`. The session owns the policy (what a command means, size
//! limits, replies); this type only knows where one thing ends and the next
//! begins, so it can be fuzzed on its own.

use smtp_proto::request::receiver::{BdatReceiver, DataReceiver, DummyDataReceiver};

/// Longest command line accepted (RFC 5321 allows 512; extensions need more).
pub const MAX_LINE: usize = 4096;

enum Mode {
    Command,
    /// Discard the rest of an over-long command line.
    LongLine,
    Data(DataReceiver),
    Bdat(BdatReceiver),
    Skip(DummyDataReceiver),
}

/// What the framer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete command line, line ending included.
    Line(&'a [u8]),
    /// A command line longer than `MAX_LINE`; its rest is being discarded.
    LineTooLong,
    /// Body bytes were appended to the caller's buffer. `done`: the DATA
    /// terminator or the end of the BDAT chunk was reached; `last`: it was the
    /// end of the message (always true for DATA).
    Body { done: bool, last: bool },
    /// A body being drained is over.
    Drained,
}

pub struct Framer {
    mode: Mode,
}

impl Default for Framer {
    fn default() -> Self {
        Framer { mode: Mode::Command }
    }
}

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// True while commands (not body bytes) are expected.
    pub fn expects_command(&self) -> bool {
        matches!(self.mode, Mode::Command | Mode::LongLine)
    }

    /// After 354: the next bytes are a DATA body.
    pub fn start_data(&mut self) {
        let mut rx = DataReceiver::new();
        // smtp-proto's receiver only recognises "." after a CRLF it has seen;
        // the body starts right after the DATA line's CRLF, so prime it with
        // one (discarded). Without this an empty message (".\r\n") would not
        // end and a leading ".." would not be unstuffed.
        rx.ingest(&mut b"\r\n".iter(), &mut Vec::new());
        self.mode = Mode::Data(rx);
    }

    /// After a BDAT command that is accepted.
    pub fn start_bdat(&mut self, size: usize, last: bool) {
        self.mode = Mode::Bdat(BdatReceiver::new(size, last));
    }

    /// After a BDAT command that is refused: its bytes must still be read.
    pub fn drain_bdat(&mut self, size: usize) {
        self.mode = Mode::Skip(DummyDataReceiver::new_bdat(size));
    }

    /// Stops keeping the DATA body in progress but keeps reading to its terminator.
    pub fn drain_data(&mut self) {
        if let Mode::Data(rx) = &self.mode {
            self.mode = Mode::Skip(DummyDataReceiver::new_data(rx));
        }
    }

    /// Consumes from `input` up to the next frame. Returns the bytes consumed
    /// and the frame, or `None` when more input is needed (all of it consumed
    /// or kept for the next call, as the count says). Body bytes go to `body`.
    pub fn advance<'a>(&mut self, input: &'a [u8], body: &mut Vec<u8>) -> (usize, Option<Frame<'a>>) {
        if input.is_empty() {
            return (0, None);
        }
        match &mut self.mode {
            Mode::Command => match input.iter().position(|&b| b == b'\n') {
                Some(lf) if lf <= MAX_LINE => (lf + 1, Some(Frame::Line(&input[..=lf]))),
                Some(lf) => (lf + 1, Some(Frame::LineTooLong)),
                None if input.len() > MAX_LINE => {
                    self.mode = Mode::LongLine;
                    (input.len(), Some(Frame::LineTooLong))
                }
                // Keep the partial line for the next call.
                None => (0, None),
            },
            Mode::LongLine => match input.iter().position(|&b| b == b'\n') {
                Some(lf) => {
                    self.mode = Mode::Command;
                    (lf + 1, None)
                }
                None => (input.len(), None),
            },
            Mode::Data(rx) => {
                let mut iter = input.iter();
                let done = rx.ingest(&mut iter, body);
                let used = input.len() - iter.as_slice().len();
                if done {
                    self.mode = Mode::Command;
                }
                (used, Some(Frame::Body { done, last: true }))
            }
            Mode::Bdat(rx) => {
                let mut iter = input.iter();
                let done = rx.ingest(&mut iter, body);
                let last = rx.is_last;
                let used = input.len() - iter.as_slice().len();
                if done {
                    self.mode = Mode::Command;
                }
                (used, Some(Frame::Body { done, last }))
            }
            Mode::Skip(rx) => {
                let mut iter = input.iter();
                let done = rx.ingest(&mut iter);
                let used = input.len() - iter.as_slice().len();
                if done {
                    self.mode = Mode::Command;
                    (used, Some(Frame::Drained))
                } else {
                    (used, None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, collecting frames as owned values.
    fn run(framer: &mut Framer, input: &[u8], step: usize, body: &mut Vec<u8>) -> Vec<String> {
        let mut pending: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                let (used, frame) = framer.advance(&pending, body);
                let text = frame.map(|f| match f {
                    Frame::Line(l) => format!("line:{}", String::from_utf8_lossy(l).trim_end()),
                    other => format!("{other:?}"),
                });
                pending.drain(..used);
                match text {
                    Some(t) => {
                        if t.starts_with("line:DATA") {
                            framer.start_data();
                        }
                        out.push(t);
                    }
                    None if used == 0 || pending.is_empty() => break,
                    None => {}
                }
            }
        }
        out
    }

    #[test]
    fn commands_and_a_dot_stuffed_body_in_any_segmentation() {
        let input = b"MAIL FROM:<a@b>\r\nDATA\r\nline\r\n..dot\r\n.\r\nQUIT\r\n";
        for step in 1..input.len() {
            let mut framer = Framer::new();
            let mut body = Vec::new();
            let frames = run(&mut framer, input, step, &mut body);
            assert_eq!(body, b"line\r\n.dot\r\n", "step {step}");
            assert_eq!(frames.first().unwrap(), "line:MAIL FROM:<a@b>");
            assert_eq!(frames.last().unwrap(), "line:QUIT");
            assert!(
                frames.contains(&"Body { done: true, last: true }".to_string()),
                "step {step}: {frames:?}"
            );
        }
    }

    #[test]
    fn the_first_body_line_is_a_line_start() {
        let mut f = Framer::new();
        f.start_data();
        let mut body = Vec::new();
        assert_eq!(
            f.advance(b".\r\nQUIT\r\n", &mut body),
            (3, Some(Frame::Body { done: true, last: true }))
        );
        assert!(body.is_empty(), "an empty message");
        f.start_data();
        assert_eq!(
            f.advance(b"..x\r\n.\r\n", &mut body).1,
            Some(Frame::Body { done: true, last: true })
        );
        assert_eq!(body, b".x\r\n");
    }

    #[test]
    fn long_lines_are_reported_once_and_skipped() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        for step in [1, 100, 5000, input.len()] {
            let mut framer = Framer::new();
            let frames = run(&mut framer, &input, step, &mut Vec::new());
            assert_eq!(
                frames,
                vec!["LineTooLong".to_string(), "line:NOOP".to_string()],
                "step {step}"
            );
        }
    }

    #[test]
    fn bdat_takes_exact_bytes_and_draining_stops_at_the_end() {
        let mut framer = Framer::new();
        let mut body = Vec::new();
        framer.start_bdat(5, true);
        let (used, frame) = framer.advance(b"a\nb\r\nNOOP\r\n", &mut body);
        assert_eq!((used, frame), (5, Some(Frame::Body { done: true, last: true })));
        assert_eq!(body, b"a\nb\r\n");
        framer.drain_bdat(3);
        assert_eq!(framer.advance(b"xyzNOOP\r\n", &mut body), (3, Some(Frame::Drained)));
        assert!(framer.expects_command());
    }
}
