//! The command/data parsing path of the session: arbitrary client bytes, cut
//! at arbitrary points, through `framing::Framer` and smtp-proto's
//! `Request::parse`, entering DATA and BDAT as a session would.
//!
//! Checks: no panic; every call makes progress or asks for more input;
//! command lines never exceed the limit; body bytes never exceed what was
//! sent; and a DATA body matches an independent dot-unstuffing.

#![no_main]

use exogate::smtp::framing::{Frame, Framer, MAX_LINE};
use libfuzzer_sys::fuzz_target;
use smtp_proto::Request;

/// Reference unstuffing of a DATA body from `stream` (starting right after DATA's line):
/// returns (body, bytes consumed) when a CRLF.CRLF terminator is present.
fn reference_data(stream: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    // Only a CRLF starts a line for the terminator and for stuffing.
    let mut i = 0;
    let mut at_crlf_start = true;
    while i < stream.len() {
        if at_crlf_start && stream[i..].starts_with(b".\r\n") {
            return Some((body, i + 3));
        }
        if at_crlf_start && stream[i] == b'.' {
            i += 1;
            at_crlf_start = false;
            continue;
        }
        body.push(stream[i]);
        at_crlf_start = stream[i] == b'\n' && i > 0 && stream[i - 1] == b'\r';
        i += 1;
    }
    None
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // The first byte chooses the segment size, the rest is the stream.
    let step = (data[0] as usize % 64) + 1;
    let stream = &data[1..];
    let mut framer = Framer::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut fed = 0usize;
    let mut in_data_from: Option<usize> = None;
    let mut offset = 0usize; // bytes of `stream` consumed so far
    for piece in stream.chunks(step) {
        pending.extend_from_slice(piece);
        fed += piece.len();
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 1_000_000, "no progress");
            let (used, frame) = framer.advance(&pending, &mut body);
            assert!(used <= pending.len());
            // Own what the frame says before releasing the input it borrows.
            enum Seen {
                Line(Vec<u8>),
                BodyDone,
                Other,
                Nothing,
            }
            let seen = match frame {
                Some(Frame::Line(l)) => {
                    assert!(l.len() <= MAX_LINE + 1);
                    assert_eq!(l.last(), Some(&b'\n'));
                    Seen::Line(l.to_vec())
                }
                Some(Frame::Body { done: true, .. }) => Seen::BodyDone,
                Some(_) => Seen::Other,
                None => Seen::Nothing,
            };
            pending.drain(..used);
            offset += used;
            match seen {
                Seen::Line(line) => match Request::parse(&mut line.iter()) {
                    Ok(Request::Data) => {
                        framer.start_data();
                        body.clear();
                        in_data_from = Some(offset);
                    }
                    Ok(Request::Bdat { chunk_size, is_last }) => {
                        in_data_from = None;
                        if chunk_size > 1 << 20 {
                            framer.drain_bdat(chunk_size);
                        } else {
                            framer.start_bdat(chunk_size, is_last);
                        }
                    }
                    _ => {}
                },
                Seen::BodyDone => {
                    if let Some(start) = in_data_from.take() {
                        let (expected, len) = reference_data(&stream[start..]).expect("terminator seen");
                        assert_eq!(body, expected, "DATA body differs from the reference unstuffing");
                        assert_eq!(offset, start + len);
                    }
                    body.clear();
                }
                Seen::Other => {}
                Seen::Nothing => {
                    if used == 0 || pending.is_empty() {
                        break;
                    }
                }
            }
            assert!(body.len() <= fed);
        }
    }
});
