//! The bytes on a client connection: reading one (multi-line) reply with
//! smtp-proto's `ResponseReceiver` under a deadline, writing under a
//! deadline, and dot-stuffing message data for DATA. Every failure becomes a
//! [`ClientError`] naming the server and the stage.

use std::time::{Duration, Instant};

use smtp_proto::response::parser::ResponseReceiver;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::delivery::smtp_client::ClientError;
use crate::smtp::reply::Reply;

pub(super) async fn read_reply<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    timeout: Duration,
    server: &str,
    stage: &'static str,
) -> Result<Reply, ClientError> {
    let mut receiver = ResponseReceiver::default();
    let started = Instant::now();
    loop {
        if !buf.is_empty() {
            let mut iter = buf.iter();
            match receiver.parse(&mut iter) {
                Ok(response) => {
                    let consumed = buf.len() - iter.as_slice().len();
                    buf.drain(..consumed);
                    let text: String = response
                        .message
                        .lines()
                        .map(|l| l.trim_end_matches('\r'))
                        .collect::<Vec<_>>()
                        .join("\n");
                    return Ok(Reply::new(
                        response.code,
                        (response.esc[0], u16::from(response.esc[1]), u16::from(response.esc[2])),
                        text,
                    ));
                }
                Err(smtp_proto::Error::NeedsMoreData { .. }) => buf.clear(),
                Err(_) => {
                    return Err(ClientError::Protocol {
                        server: server.into(),
                        stage,
                    });
                }
            }
        }
        let left = timeout.saturating_sub(started.elapsed());
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    server: server.into(),
                    stage,
                });
            }
            Ok(Err(e)) => {
                return Err(ClientError::Io {
                    server: server.into(),
                    stage,
                    detail: e.to_string(),
                });
            }
            Ok(Ok(0)) => {
                return Err(ClientError::Io {
                    server: server.into(),
                    stage,
                    detail: "connection closed".into(),
                });
            }
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub(super) async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    timeout: Duration,
    server: &str,
    stage: &'static str,
) -> Result<(), ClientError> {
    let io = |e: std::io::Error| ClientError::Io {
        server: server.into(),
        stage,
        detail: e.to_string(),
    };
    match tokio::time::timeout(timeout, async {
        stream.write_all(bytes).await?;
        stream.flush().await
    })
    .await
    {
        Err(_) => Err(ClientError::Timeout {
            server: server.into(),
            stage,
        }),
        Ok(r) => r.map_err(io),
    }
}

pub(super) fn expect_2xx(reply: Reply, server: &str, stage: &'static str) -> Result<Reply, ClientError> {
    if reply.is_positive() {
        Ok(reply)
    } else {
        Err(ClientError::Rejected {
            server: server.into(),
            stage,
            reply,
        })
    }
}

/// Incremental dot-stuffing for DATA: a "." starting a line is doubled, and
/// `finish` adds a final CRLF when the message lacks one, then the terminator.
pub(crate) struct DotStuffer {
    at_line_start: bool,
    last_two: [u8; 2],
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            last_two: [0, 0],
        }
    }
}

impl DotStuffer {
    pub(crate) fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut start = 0;
        for (i, &b) in input.iter().enumerate() {
            if self.at_line_start && b == b'.' {
                out.extend_from_slice(&input[start..i]);
                out.push(b'.');
                start = i;
            }
            self.at_line_start = b == b'\n';
        }
        out.extend_from_slice(&input[start..]);
        match input {
            [.., a, b] => self.last_two = [*a, *b],
            [b] => self.last_two = [self.last_two[1], *b],
            [] => {}
        }
    }

    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.last_two != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The whole message dot-stuffed with its terminator.
#[cfg(test)]
pub(crate) fn dot_stuff(pieces: &[&[u8]]) -> Vec<u8> {
    let mut stuffer = DotStuffer::default();
    let mut out = Vec::new();
    for piece in pieces {
        stuffer.push(piece, &mut out);
    }
    stuffer.finish(&mut out);
    out
}
