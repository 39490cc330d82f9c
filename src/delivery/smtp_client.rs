//! One SMTP client connection to a downstream MTA: greeting, EHLO, mandatory
//! STARTTLS, and transactions (pipelined when offered, BDAT when offered).
//!
//! Replies are parsed with smtp-proto's `ResponseReceiver`. This type knows
//! nothing about queues or tenants; `relay` decides where to connect and what
//! a result means for a message. It never sends a message over plaintext: the
//! only way to obtain a [`Client`] is [`Client::open`], which fails unless TLS
//! was negotiated and verified.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::message::envelope::{BodyType, DsnReturn, Envelope};
use crate::smtp::reply::Reply;

mod error;
mod message;
mod wire;

pub(crate) use error::ClientError;
pub(crate) use message::{CHUNK, LineBreaks, MessageBytes, line_breaks_in_file};
#[cfg(test)]
use wire::dot_stuff;
use wire::{DotStuffer, expect_2xx, read_reply, send};

/// Extensions the server advertised after STARTTLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Caps {
    pub(crate) pipelining: bool,
    pub(crate) chunking: bool,
    pub(crate) binarymime: bool,
    pub(crate) eightbitmime: bool,
    pub(crate) smtputf8: bool,
    pub(crate) dsn: bool,
    pub(crate) size: Option<u64>,
    pub(crate) starttls: bool,
}

impl Caps {
    fn parse(ehlo_text: &str) -> Caps {
        let mut caps = Caps::default();
        for line in ehlo_text.lines().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else { continue };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "CHUNKING" => caps.chunking = true,
                "BINARYMIME" => caps.binarymime = true,
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "STARTTLS" => caps.starttls = true,
                "SIZE" => caps.size = words.next().and_then(|s| s.parse().ok()).filter(|&n| n > 0),
                _ => {}
            }
        }
        caps
    }
}

/// Per-connection settings.
#[derive(Clone)]
pub(crate) struct ClientSettings {
    pub(crate) helo: String,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) command_timeout: Duration,
    pub(crate) data_timeout: Duration,
}

/// The result of one transaction: the MAIL reply failure, or a reply per recipient.
#[derive(Debug, Clone)]
pub(crate) struct TransactionResult {
    /// One entry per recipient offered, in order.
    pub(crate) rcpts: Vec<Reply>,
}

/// An open, TLS-protected SMTP connection.
pub(crate) struct Client {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
    pub(crate) caps: Caps,
    /// "host[ip]:port" for logs.
    pub(crate) server: String,
    /// The local address the connection leaves from (what the downstream sees).
    pub(crate) egress: Option<std::net::IpAddr>,
    pub(crate) transactions: usize,
    pub(crate) last_used: Instant,
    settings: ClientSettings,
}

impl Client {
    /// Over `tcp` (already connected to `addr`), reads the greeting,
    /// says EHLO, upgrades with STARTTLS verified for `tls_name`, and says EHLO again.
    pub(crate) async fn open(
        tcp: TcpStream,
        addr: SocketAddr,
        tls_name: &str,
        settings: &ClientSettings,
    ) -> Result<Client, ClientError> {
        let server = format!("{tls_name}[{}]:{}", addr.ip(), addr.port());
        let egress = tcp.local_addr().ok().map(|a| a.ip());
        let t = settings.command_timeout;
        let mut tcp = tcp;
        let mut buf = Vec::new();
        expect_2xx(
            read_reply(&mut tcp, &mut buf, t, &server, "greeting").await?,
            &server,
            "greeting",
        )?;
        send(
            &mut tcp,
            format!("EHLO {}\r\n", settings.helo).as_bytes(),
            t,
            &server,
            "EHLO",
        )
        .await?;
        let ehlo = expect_2xx(
            read_reply(&mut tcp, &mut buf, t, &server, "EHLO").await?,
            &server,
            "EHLO",
        )?;
        if !Caps::parse(&ehlo.text).starttls {
            let _ = send(&mut tcp, b"QUIT\r\n", t, &server, "QUIT").await;
            return Err(ClientError::NoStartTls { server });
        }
        send(&mut tcp, b"STARTTLS\r\n", t, &server, "STARTTLS").await?;
        expect_2xx(
            read_reply(&mut tcp, &mut buf, t, &server, "STARTTLS").await?,
            &server,
            "STARTTLS",
        )?;
        // Anything the server sent after its 220 was sent in plaintext: discard it.
        buf.clear();
        let name = ServerName::try_from(tls_name.to_string()).map_err(|e| ClientError::Tls {
            server: server.clone(),
            detail: format!("invalid name {tls_name}: {e}"),
        })?;
        let connector = TlsConnector::from(settings.tls.clone());
        let mut stream = match tokio::time::timeout(t, connector.connect(name, tcp)).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    server,
                    stage: "TLS handshake",
                });
            }
            Ok(Err(e)) => {
                return Err(ClientError::Tls {
                    server,
                    detail: e.to_string(),
                });
            }
            Ok(Ok(s)) => s,
        };
        send(
            &mut stream,
            format!("EHLO {}\r\n", settings.helo).as_bytes(),
            t,
            &server,
            "EHLO",
        )
        .await?;
        let ehlo = expect_2xx(
            read_reply(&mut stream, &mut buf, t, &server, "EHLO").await?,
            &server,
            "EHLO",
        )?;
        Ok(Client {
            stream,
            buf,
            caps: Caps::parse(&ehlo.text),
            server,
            egress,
            transactions: 0,
            last_used: Instant::now(),
            settings: settings.clone(),
        })
    }

    async fn reply(&mut self, stage: &'static str, timeout: Duration) -> Result<Reply, ClientError> {
        read_reply(&mut self.stream, &mut self.buf, timeout, &self.server, stage).await
    }

    async fn send(&mut self, bytes: &[u8], stage: &'static str, timeout: Duration) -> Result<(), ClientError> {
        send(&mut self.stream, bytes, timeout, &self.server, stage).await
    }

    /// The MAIL FROM line for `envelope` given what the server offers. The
    /// address is the typed mailbox's serialisation (re-quoted local part), the
    /// DSN parameters the values as received: nothing decoded is written.
    fn mail_command(&self, envelope: &Envelope, size: usize) -> String {
        let mut cmd = format!("MAIL FROM:<{}>", envelope.mail_from);
        if self.caps.size.is_some() {
            cmd.push_str(&format!(" SIZE={size}"));
        }
        match envelope.body {
            BodyType::BinaryMime if self.caps.binarymime => cmd.push_str(" BODY=BINARYMIME"),
            BodyType::EightBitMime | BodyType::BinaryMime if self.caps.eightbitmime => cmd.push_str(" BODY=8BITMIME"),
            _ => {}
        }
        if envelope.smtputf8 && self.caps.smtputf8 {
            cmd.push_str(" SMTPUTF8");
        }
        if self.caps.dsn {
            match envelope.ret {
                Some(DsnReturn::Full) => cmd.push_str(" RET=FULL"),
                Some(DsnReturn::Hdrs) => cmd.push_str(" RET=HDRS"),
                None => {}
            }
            if let Some(envid) = &envelope.envid {
                cmd.push_str(&format!(" ENVID={}", envid.as_str()));
            }
        }
        cmd.push_str("\r\n");
        cmd
    }

    fn rcpt_command(&self, envelope: &Envelope, index: usize) -> String {
        let rcpt = &envelope.recipients[index];
        let mut cmd = format!("RCPT TO:<{}>", rcpt.address);
        if self.caps.dsn {
            if let Some(notify) = rcpt.notify {
                cmd.push_str(&format!(" NOTIFY={}", notify.to_param()));
            }
            if let Some(orcpt) = &rcpt.orcpt {
                cmd.push_str(&format!(" ORCPT={}", orcpt.to_param()));
            }
        }
        cmd.push_str("\r\n");
        cmd
    }

    /// Runs one transaction for the recipients at `indices`. An `Err` means the
    /// connection is unusable and nothing was delivered by this call; replies
    /// from the server (positive or not) are in the `Ok` result.
    pub(crate) async fn transaction(
        &mut self,
        envelope: &Envelope,
        indices: &[usize],
        message: &MessageBytes<'_>,
    ) -> Result<TransactionResult, ClientError> {
        let t = self.settings.command_timeout;
        self.last_used = Instant::now();
        self.transactions += 1;
        let size = message.len();
        let needs_bdat = envelope.body == BodyType::BinaryMime || message.has_bare_line_break();
        if needs_bdat && !self.caps.chunking {
            let reply = Reply::new(
                451,
                (4, 6, 11),
                format!(
                    "{} does not offer CHUNKING, which this message (bare CR or LF, or BINARYMIME) needs",
                    self.server
                ),
            );
            return Ok(TransactionResult {
                rcpts: vec![reply; indices.len()],
            });
        }
        if envelope.smtputf8 && !self.caps.smtputf8 {
            let reply = Reply::new(553, (5, 6, 7), format!("{} does not support SMTPUTF8", self.server));
            return Ok(TransactionResult {
                rcpts: vec![reply; indices.len()],
            });
        }

        let mail = self.mail_command(envelope, size);
        let rcpts: Vec<String> = indices.iter().map(|&i| self.rcpt_command(envelope, i)).collect();
        let mut rcpt_replies = Vec::with_capacity(indices.len());
        let mail_reply;
        if self.caps.pipelining {
            let mut batch = mail.into_bytes();
            for r in &rcpts {
                batch.extend_from_slice(r.as_bytes());
            }
            self.send(&batch, "MAIL/RCPT", t).await?;
            mail_reply = self.reply("MAIL", t).await?;
            for _ in &rcpts {
                rcpt_replies.push(self.reply("RCPT", t).await?);
            }
        } else {
            self.send(mail.as_bytes(), "MAIL", t).await?;
            mail_reply = self.reply("MAIL", t).await?;
            if mail_reply.is_positive() {
                for r in &rcpts {
                    self.send(r.as_bytes(), "RCPT", t).await?;
                    rcpt_replies.push(self.reply("RCPT", t).await?);
                }
            }
        }
        if !mail_reply.is_positive() {
            self.reset().await?;
            return Ok(TransactionResult {
                rcpts: vec![mail_reply; indices.len()],
            });
        }
        if !rcpt_replies.iter().any(Reply::is_positive) {
            self.reset().await?;
            return Ok(TransactionResult { rcpts: rcpt_replies });
        }

        let final_reply = if self.caps.chunking {
            self.send_bdat(message).await?;
            self.reply("end of data", self.settings.data_timeout).await?
        } else {
            self.send(b"DATA\r\n", "DATA", t).await?;
            let go = self.reply("DATA", t).await?;
            if go.code != 354 {
                if !go.is_positive() {
                    self.reset().await?;
                }
                let reply = if go.is_positive() {
                    Reply::new(451, (4, 5, 0), format!("unexpected DATA reply {}", go.one_line()))
                } else {
                    go
                };
                return Ok(TransactionResult {
                    rcpts: rcpt_replies
                        .into_iter()
                        .map(|r| if r.is_positive() { reply.clone() } else { r })
                        .collect(),
                });
            }
            self.send_stuffed(message).await?;
            self.reply("end of data", self.settings.data_timeout).await?
        };
        self.last_used = Instant::now();
        if !final_reply.is_positive() {
            self.reset().await?;
        }
        Ok(TransactionResult {
            rcpts: rcpt_replies
                .into_iter()
                .map(|r| if r.is_positive() { final_reply.clone() } else { r })
                .collect(),
        })
    }

    /// Sends MAIL and one RCPT in proxy mode, returning the server's replies as they are.
    pub(crate) async fn proxy_mail(&mut self, envelope: &Envelope) -> Result<Reply, ClientError> {
        let t = self.settings.command_timeout;
        let mail = self.mail_command(envelope, envelope.declared_size as usize);
        self.send(mail.as_bytes(), "MAIL", t).await?;
        self.reply("MAIL", t).await
    }

    pub(crate) async fn proxy_rcpt(&mut self, envelope: &Envelope, index: usize) -> Result<Reply, ClientError> {
        let t = self.settings.command_timeout;
        let cmd = self.rcpt_command(envelope, index);
        self.send(cmd.as_bytes(), "RCPT", t).await?;
        self.reply("RCPT", t).await
    }

    /// Sends the message body of a proxied transaction and returns the final reply.
    pub(crate) async fn proxy_data(
        &mut self,
        message: &MessageBytes<'_>,
        binarymime: bool,
    ) -> Result<Reply, ClientError> {
        let t = self.settings.command_timeout;
        self.transactions += 1;
        self.last_used = Instant::now();
        if (binarymime || message.has_bare_line_break()) && !self.caps.chunking {
            return Ok(Reply::new(
                451,
                (4, 6, 11),
                format!("{} does not offer CHUNKING, which this message needs", self.server),
            ));
        }
        if self.caps.chunking {
            self.send_bdat(message).await?;
        } else {
            self.send(b"DATA\r\n", "DATA", t).await?;
            let go = self.reply("DATA", t).await?;
            if go.code != 354 {
                return Ok(go);
            }
            self.send_stuffed(message).await?;
        }
        self.reply("end of data", self.settings.data_timeout).await
    }

    /// `BDAT n LAST` and the message, flushed once: one TCP write for a small
    /// message instead of a command and pieces waiting on each other.
    async fn send_bdat(&mut self, message: &MessageBytes<'_>) -> Result<(), ClientError> {
        let command = format!("BDAT {} LAST\r\n", message.len());
        let server = &self.server;
        let stream = &mut self.stream;
        let written = tokio::time::timeout(self.settings.data_timeout, async {
            stream.write_all(command.as_bytes()).await?;
            // Chunk by chunk: a message in the queue file is never read into memory whole.
            let mut chunks = message.chunks();
            while let Some(chunk) = chunks.next().await? {
                stream.write_all(chunk).await?;
            }
            stream.flush().await
        })
        .await;
        match written {
            Err(_) => Err(ClientError::Timeout {
                server: server.clone(),
                stage: "BDAT",
            }),
            Ok(Err(e)) => Err(ClientError::Io {
                server: server.clone(),
                stage: "BDAT",
                detail: e.to_string(),
            }),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends the message dot-stuffed, chunk by chunk (never a second copy of
    /// a large message in memory, nor the first one when it is in a file),
    /// with the terminator.
    async fn send_stuffed(&mut self, message: &MessageBytes<'_>) -> Result<(), ClientError> {
        const WINDOW: usize = 64 * 1024;
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::with_capacity(WINDOW + WINDOW / 32);
        let mut chunks = message.chunks();
        loop {
            let chunk = chunks.next().await.map_err(|e| ClientError::Io {
                server: self.server.clone(),
                stage: "DATA",
                detail: e.to_string(),
            })?;
            let Some(chunk) = chunk else { break };
            for window in chunk.chunks(WINDOW) {
                stuffer.push(window, &mut out);
                if out.len() >= WINDOW {
                    self.send(&out, "DATA", self.settings.data_timeout).await?;
                    out.clear();
                }
            }
        }
        stuffer.finish(&mut out);
        self.send(&out, "DATA", self.settings.data_timeout).await
    }

    /// RSET, to leave the connection reusable after a failed transaction.
    pub(crate) async fn reset(&mut self) -> Result<(), ClientError> {
        let t = self.settings.command_timeout;
        self.send(b"RSET\r\n", "RSET", t).await?;
        self.reply("RSET", t).await.map(|_| ())
    }

    /// What TLS negotiated with the server: (version, cipher suite, whether we presented a client certificate).
    pub(crate) fn tls_summary(&self) -> (String, String, bool) {
        let (_, conn) = self.stream.get_ref();
        let version = conn
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .replace("TLSv1_", "TLSv1.");
        let cipher = conn
            .negotiated_cipher_suite()
            .and_then(|c| c.suite().as_str())
            .unwrap_or("?")
            .to_string();
        (version, cipher, self.settings.tls.client_auth_cert_resolver.has_certs())
    }

    pub(crate) async fn quit(mut self) {
        let t = Duration::from_secs(5);
        if self.send(b"QUIT\r\n", "QUIT", t).await.is_ok() {
            let _ = self.reply("QUIT", t).await;
        }
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests;
