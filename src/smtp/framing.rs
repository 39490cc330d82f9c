//! Framing of the client's byte stream, without I/O: command lines, DATA
//! bodies (dot-unstuffed), BDAT chunks (taken exactly, bare LFs included) and
//! bodies being drained after a refusal.
//!
//! Two things are done here instead of by smtp-proto, on purpose:
//! - Command lines are framed here rather than by its `RequestReceiver`, so
//!   the line-length limit is exact whatever the TCP segmentation (that
//!   receiver applies it only to lines split across reads) and the buffer
//!   stays bounded; each complete line is then parsed by smtp-proto's
//!   `Request::parse`.
//! - DATA is unstuffed here rather than by its `DataReceiver`, because that
//!   receiver also ends a message at "." followed by several CRs and a LF
//!   (`\r\n.\r\r\n`) and does not treat the first body line as a line start.
//!   Only `<CRLF>.<CRLF>` may end DATA: a terminator other MTAs do not share is
//!   what SMTP smuggling is built on.
//!
//! The session owns the policy (what a command means, size limits, replies);
//! this type only knows where one thing ends and the next begins, so it can be
//! fuzzed on its own.

/// Longest command line accepted (RFC 5321 allows 512; extensions need more).
pub const MAX_LINE: usize = 4096;

enum Mode {
    Command,
    /// Discard the rest of an over-long command line.
    LongLine,
    Data(Unstuffer),
    /// A BDAT chunk: bytes still to take, and whether it ends the message.
    Bdat {
        left: usize,
        last: bool,
    },
    /// Reading a DATA body to its end, keeping nothing.
    SkipData(Unstuffer),
    /// Reading the rest of a BDAT chunk, keeping nothing.
    SkipBdat(usize),
}

/// Where a DATA body is, relative to line starts (only CRLF starts a line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unstuff {
    /// At the start of a line.
    LineStart,
    /// A "." at the start of a line.
    Dot,
    /// ".\r" at the start of a line.
    DotCr,
    /// Inside a line; `cr`: the last byte was CR.
    Inside { cr: bool },
}

/// Strict DATA dot-unstuffing: removes the leading "." of a line and ends at
/// `<CRLF>.<CRLF>` only.
#[derive(Clone, Copy, Debug)]
struct Unstuffer {
    state: Unstuff,
}

impl Unstuffer {
    fn new() -> Unstuffer {
        // The body starts right after the DATA line's CRLF.
        Unstuffer {
            state: Unstuff::LineStart,
        }
    }

    /// Appends the unstuffed bytes of `input` to `out` (when given); returns
    /// the bytes consumed and whether the terminator was reached.
    fn ingest(&mut self, input: &[u8], mut out: Option<&mut Vec<u8>>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                Unstuff::Inside { cr } => {
                    // Fast path: copy up to and including the next LF.
                    let rest = &input[i..];
                    let (take, ends_line) = match rest.iter().position(|&b| b == b'\n') {
                        Some(p) => (p + 1, true),
                        None => (rest.len(), false),
                    };
                    if let Some(out) = out.as_deref_mut() {
                        out.extend_from_slice(&rest[..take]);
                    }
                    let before_lf = if take >= 2 { rest[take - 2] == b'\r' } else { cr };
                    self.state = if ends_line && before_lf {
                        Unstuff::LineStart
                    } else {
                        Unstuff::Inside {
                            cr: !ends_line && rest[take - 1] == b'\r',
                        }
                    };
                    i += take;
                }
                Unstuff::LineStart => {
                    if input[i] == b'.' {
                        self.state = Unstuff::Dot;
                        i += 1;
                    } else {
                        self.state = Unstuff::Inside { cr: false };
                    }
                }
                Unstuff::Dot => {
                    if input[i] == b'\r' {
                        self.state = Unstuff::DotCr;
                        i += 1;
                    } else {
                        // A stuffed dot: dropped; the line goes on.
                        self.state = Unstuff::Inside { cr: false };
                    }
                }
                Unstuff::DotCr => {
                    if input[i] == b'\n' {
                        return (i + 1, true);
                    }
                    // ".\r" not followed by LF: the dot was stuffing, the CR is data.
                    if let Some(out) = out.as_deref_mut() {
                        out.push(b'\r');
                    }
                    self.state = Unstuff::Inside { cr: true };
                }
            }
        }
        (i, false)
    }
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
    pub(crate) fn expects_command(&self) -> bool {
        matches!(self.mode, Mode::Command | Mode::LongLine)
    }

    /// After 354: the next bytes are a DATA body.
    pub fn start_data(&mut self) {
        self.mode = Mode::Data(Unstuffer::new());
    }

    /// After a BDAT command that is accepted.
    pub fn start_bdat(&mut self, size: usize, last: bool) {
        self.mode = Mode::Bdat { left: size, last };
    }

    /// After a BDAT command that is refused: its bytes must still be read.
    pub fn drain_bdat(&mut self, size: usize) {
        self.mode = Mode::SkipBdat(size);
    }

    /// Stops keeping the body in progress (DATA or a BDAT chunk) but keeps
    /// reading to its end; `Frame::Drained` follows.
    pub fn drain_body(&mut self) {
        match self.mode {
            Mode::Data(rx) => self.mode = Mode::SkipData(rx),
            Mode::Bdat { left, .. } => self.mode = Mode::SkipBdat(left),
            _ => {}
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
                let (used, done) = rx.ingest(input, Some(body));
                if done {
                    self.mode = Mode::Command;
                }
                (used, Some(Frame::Body { done, last: true }))
            }
            Mode::Bdat { left, last } => {
                let used = (*left).min(input.len());
                body.extend_from_slice(&input[..used]);
                *left -= used;
                let (done, last) = (*left == 0, *last);
                if done {
                    self.mode = Mode::Command;
                }
                (used, Some(Frame::Body { done, last }))
            }
            Mode::SkipData(rx) => {
                let (used, done) = rx.ingest(input, None);
                if done {
                    self.mode = Mode::Command;
                    (used, Some(Frame::Drained))
                } else {
                    (used, None)
                }
            }
            Mode::SkipBdat(left) => {
                let used = (*left).min(input.len());
                *left -= used;
                if *left == 0 {
                    self.mode = Mode::Command;
                    (used, Some(Frame::Drained))
                } else {
                    (used, None)
                }
            }
        }
    }
}

/// The chunk size and LAST flag of a `BDAT` line exactly as written
/// (`BDAT SP 1*20DIGIT [SP LAST]`, any case), or `None`.
///
/// smtp-proto's parser saturates a size of more than 19 digits and then
/// starts again from the next digit: `BDAT 99999999999999999999999` came out
/// as a chunk of 999 octets, so the bytes after them were read as commands
/// (found by the attack run, docs/attack-run.md). The session frames a chunk
/// only by the size this returns.
pub fn bdat_chunk(line: &[u8]) -> Option<(u64, bool)> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.get(..5).filter(|v| v.eq_ignore_ascii_case(b"BDAT "))?;
    let mut words = line[5..].split(|&b| b == b' ');
    let size = words
        .next()
        .filter(|w| (1..=20).contains(&w.len()) && w.iter().all(u8::is_ascii_digit))?;
    let size: u64 = std::str::from_utf8(size).ok()?.parse().ok()?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return None,
    };
    words.next().is_none().then_some((size, last))
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
    fn only_crlf_dot_crlf_ends_data() {
        for (input, body_expected, ends) in [
            (&b"a\r\n.\r\r\nb\r\n.\r\n"[..], &b"a\r\n\r\r\nb\r\n"[..], true),
            (b"a\n.\nb\r\n.\r\n", b"a\n.\nb\r\n", true),
            (b"a\r\n.\n", b"a\r\n\n", false),
            (b"a\r\n.x\r\n", b"a\r\nx\r\n", false),
            (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", true),
        ] {
            for step in 1..=input.len() {
                let mut f = Framer::new();
                f.start_data();
                let mut body = Vec::new();
                let mut done = false;
                for piece in input.chunks(step) {
                    let mut rest = piece;
                    while !rest.is_empty() && !done {
                        let (used, frame) = f.advance(rest, &mut body);
                        done = frame == Some(Frame::Body { done: true, last: true });
                        rest = &rest[used..];
                    }
                }
                assert_eq!(done, ends, "{:?} step {step}", String::from_utf8_lossy(input));
                assert_eq!(body, body_expected, "{:?} step {step}", String::from_utf8_lossy(input));
            }
        }
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

    #[test]
    fn bdat_sizes_are_read_as_written() {
        assert_eq!(bdat_chunk(b"BDAT 1000 LAST\r\n"), Some((1000, true)));
        assert_eq!(bdat_chunk(b"bdat 0\r\n"), Some((0, false)));
        assert_eq!(
            bdat_chunk(b"BDAT 18446744073709551615 last\r\n"),
            Some((u64::MAX, true))
        );
        for line in [
            // smtp-proto read this one as a 999-octet chunk.
            &b"BDAT 99999999999999999999999\r\n"[..],
            b"BDAT 100000000000000000005 LAST\r\n",
            b"BDAT 18446744073709551616\r\n",
            b"BDAT 1 LAST LAST\r\n",
            b"BDAT -1\r\n",
            b"BDAT  5\r\n",
            b"BDAT 5 FIRST\r\n",
            b"BDAT\r\n",
            b"BDAT x\r\n",
        ] {
            assert_eq!(bdat_chunk(line), None, "{}", String::from_utf8_lossy(line));
        }
    }
}
