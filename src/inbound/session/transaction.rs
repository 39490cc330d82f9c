//! The mail transaction of a session: MAIL, RCPT (with tenant admission,
//! and in proxy mode the downstream's own answer), DATA and BDAT, and what
//! happens at the end of the data.
//!
//! A 250 after the data comes only from `disposition::store` (durable) or from the
//! downstream (proxy mode); everything else that goes wrong is a 4xx.

use tracing::Instrument;

use super::{Flow, Session, Transaction};
use crate::inbound::admission;
use crate::inbound::disposition::{self, spool_reply};
use crate::message::envelope::{BodyType, Envelope, Recipient, SessionFacts};
use crate::message::trace::MessageIds;
use crate::smtp::mail_rcpt;
use crate::smtp::reply::Reply;
use crate::spool::incoming::IncomingBody;

impl Session {
    /// MAIL: the line is parsed here (our parser, not smtp-proto's: see `smtp::mail_rcpt`).
    pub(super) async fn handle_mail(&mut self, line: &[u8]) -> Flow {
        let from = match mail_rcpt::parse_mail(line) {
            Ok(m) => m,
            Err(e) => {
                tracing::info!(client = %self.peer, error = %e, "MAIL refused");
                return self.error(&e.reply()).unwrap_or(Flow::Continue);
            }
        };
        if self.helo.is_none() {
            return self.error(&Reply::HELO_FIRST).unwrap_or(Flow::Continue);
        }
        if self.tx.is_some() {
            return self.error(&Reply::NESTED_MAIL).unwrap_or(Flow::Continue);
        }
        if self.rt.config.tls.require && self.tls.is_none() {
            self.refuse("tls", "MAIL before STARTTLS", &Reply::TLS_REQUIRED);
            return self.error(&Reply::TLS_REQUIRED).map_or(Flow::Continue, |f| f);
        }
        if !self.cert_ok {
            self.refuse(
                "client-certificate",
                &format!(
                    "client certificate names {:?} match none of tls.client_cert_names",
                    self.tls.as_ref().map(|t| t.client_names.clone()).unwrap_or_default()
                ),
                &Reply::CLIENT_CERT_REJECTED,
            );
            self.reply(&Reply::CLIENT_CERT_REJECTED);
            return Flow::Continue;
        }
        let smtputf8 = from.smtputf8;
        if !smtputf8 && !from.from.is_ascii() {
            return self.error(&Reply::SMTPUTF8_NOT_DECLARED).unwrap_or(Flow::Continue);
        }
        let max = self.rt.config.server.max_message_size;
        let declared = from.size.unwrap_or(0);
        if declared > u128::from(max) {
            // RFC 1870: a well-formed SIZE above the limit is 552, not a syntax error.
            self.reply(&Reply::MESSAGE_TOO_BIG);
            return Flow::Continue;
        }
        self.tx = Some(Transaction {
            id: crate::spool::new_id(),
            envelope: Envelope {
                mail_from: from.from,
                recipients: Vec::new(),
                body: from.body,
                smtputf8,
                ret: from.ret,
                envid: from.envid,
                declared_size: declared as u64,
            },
            tenant: None,
            body: None,
            bdat: false,
            proxy: None,
        });
        self.reply(&Reply::SENDER_OK);
        Flow::Continue
    }

    /// RCPT: parsed here, with the transaction's SMTPUTF8 (for `ORCPT=utf-8;`).
    pub(super) async fn handle_rcpt(&mut self, line: &[u8]) -> Flow {
        let smtputf8 = self.tx.as_ref().is_some_and(|t| t.envelope.smtputf8);
        let to = match mail_rcpt::parse_rcpt(line, smtputf8) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(client = %self.peer, error = %e, "RCPT refused");
                return self.error(&e.reply()).unwrap_or(Flow::Continue);
            }
        };
        let Some(tx) = self.tx.as_mut() else {
            return self.error(&Reply::MAIL_FIRST).unwrap_or(Flow::Continue);
        };
        if !tx.envelope.smtputf8 && !to.to.is_ascii() {
            return self.error(&Reply::SMTPUTF8_NOT_DECLARED).unwrap_or(Flow::Continue);
        }
        if tx.envelope.recipients.len() >= self.rt.config.server.max_recipients {
            self.reply(&Reply::TOO_MANY_RECIPIENTS);
            return Flow::Continue;
        }
        // Whether the transaction so far is a journal report's (its first
        // recipient says: admission never lets the two kinds mix).
        let journal_tx = tx
            .envelope
            .recipients
            .first()
            .map(|r| tx.tenant.as_ref().is_some_and(|t| t.is_journal_address(&r.address)));
        let (tenant, journal) = match admission::admit(
            &self.rt.tenants,
            &tx.envelope.mail_from,
            &to.to,
            tx.tenant.as_ref(),
            journal_tx,
        ) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                let layer = if refusal.reply.code >= 500 {
                    "tenant"
                } else {
                    "one-tenant-per-message"
                };
                self.refuse(layer, &refusal.reason, &refusal.reply);
                let reply = refusal.reply;
                return if reply.code >= 500 {
                    self.error(&reply).unwrap_or(Flow::Continue)
                } else {
                    self.reply(&reply);
                    Flow::Continue
                };
            }
        };
        let recipient = Recipient {
            address: to.to,
            orcpt: to.orcpt,
            notify: to.notify,
        };
        // A journal report is never relayed: no downstream leg for it.
        if self.rt.config.delivery.mode == crate::config::DeliveryMode::Proxy && !journal {
            let state = crate::inbound::proxy::ProxyState {
                envelope: &mut tx.envelope,
                tenant: &mut tx.tenant,
                leg: &mut tx.proxy,
            };
            let reply = crate::inbound::proxy::add_recipient(&self.shared, &self.rt, state, &tenant, recipient).await;
            self.reply(&reply);
            return Flow::Continue;
        }
        tx.tenant = Some(tenant);
        tx.envelope.recipients.push(recipient);
        self.reply(&Reply::RECIPIENT_OK);
        Flow::Continue
    }

    pub(super) fn start_body(&mut self) -> Result<(), Reply> {
        let threshold = self.rt.config.server.spill_threshold;
        let spool = self.shared.spool.clone();
        let Some(tx) = self.tx.as_mut() else {
            return Err(Reply::MAIL_FIRST);
        };
        if tx.envelope.recipients.is_empty() {
            return Err(Reply::RCPT_FIRST);
        }
        if tx.body.is_none() {
            tx.body = Some(IncomingBody::new(&spool.incoming, &tx.id, threshold));
        }
        Ok(())
    }

    pub(super) fn handle_data(&mut self) -> Flow {
        if let Some(tx) = &self.tx {
            if tx.bdat {
                return self.error(&Reply::MIXED_DATA_BDAT).unwrap_or(Flow::Continue);
            }
            if tx.envelope.body == BodyType::BinaryMime {
                return self.error(&Reply::EIGHTBIT_NEEDS_BDAT).unwrap_or(Flow::Continue);
            }
        }
        if let Err(reply) = self.start_body() {
            return self.error(&reply).unwrap_or(Flow::Continue);
        }
        self.reply(&Reply::START_DATA);
        self.framer.start_data();
        Flow::Continue
    }

    pub(super) async fn handle_bdat(&mut self, size: usize, last: bool) -> Flow {
        if let Err(reply) = self.start_body() {
            // The chunk's bytes must still be read and thrown away.
            let reply = if reply == Reply::MAIL_FIRST {
                Reply::BDAT_NO_TRANSACTION
            } else {
                reply
            };
            if size == 0 {
                // Nothing to drain: answer now.
                return self.error(&reply).unwrap_or(Flow::Continue);
            }
            self.framer.drain_bdat(size);
            self.skip_reply = Some(reply);
            return Flow::Continue;
        }
        let max = self.rt.config.server.max_message_size;
        let tx = self.tx.as_mut().expect("start_body checked");
        tx.bdat = true;
        let have = tx.body.as_ref().map_or(0, |b| b.len());
        if have + size as u64 > max {
            self.framer.drain_bdat(size);
            self.skip_reply = Some(Reply::MESSAGE_TOO_BIG);
            // The transaction is over; later chunks get "no valid transaction".
            let tx = self.tx.take();
            tokio::spawn(async move {
                if let Some(leg) = tx.and_then(|t| t.proxy) {
                    leg.abandon().await;
                }
            });
            return Flow::Continue;
        }
        if size == 0 {
            // No bytes follow: a last empty chunk ends the message right here.
            if last {
                self.end_of_data().await;
            } else {
                self.reply(&Reply::chunk_ok(have as usize));
            }
            return Flow::Continue;
        }
        self.framer.start_bdat(size, last);
        Flow::Continue
    }

    pub(super) async fn drop_transaction(&mut self) {
        if let Some(tx) = self.tx.take()
            && let Some(leg) = tx.proxy
        {
            leg.reset().await;
        }
    }

    pub(super) fn facts(&self) -> SessionFacts {
        SessionFacts {
            session_id: self.sid.clone(),
            client_ip: self.peer.ip(),
            client_port: self.peer.port(),
            helo: self.helo.clone().unwrap_or_default(),
            tls: self.tls.clone(),
        }
    }

    pub(super) async fn end_of_data(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let facts = self.facts();
        let Transaction {
            id,
            envelope,
            tenant,
            body,
            proxy,
            ..
        } = tx;
        let (Some(tenant), Some(body)) = (tenant, body) else {
            self.reply(&Reply::RCPT_FIRST);
            return;
        };
        let body = match body.finish() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(queue_id = %id, error = %e, "cannot finish writing the message body");
                self.reply(&spool_reply(&e));
                if let Some(leg) = proxy {
                    leg.reset().await;
                }
                return;
            }
        };
        let proxy_mode = self.rt.config.delivery.mode == crate::config::DeliveryMode::Proxy;
        if proxy_mode && proxy.is_none() && !crate::inbound::journal::is_journal(&tenant, &envelope) {
            // The downstream went away during the transaction: nothing to hand the message to.
            body.discard();
            self.reply(&Reply::DOWNSTREAM_TRANSACTION);
            return;
        }
        // The ids an administrator searches by: every line about this message
        // from here on (scan, decision, queueing) is inside a span carrying them.
        let ids = body
            .for_scan(0)
            .await
            .map(|h| MessageIds::from_header(&h))
            .unwrap_or_default();
        let span = tracing::info_span!(
            "message",
            queue_id = %id,
            message_id = %ids.message_id,
            network_message_id = %ids.network_message_id,
        );
        let (shared, rt) = (self.shared.clone(), self.rt.clone());
        let reply = async move {
            let prepared = disposition::prepare(&shared, &rt, &id, facts, ids, envelope, tenant, body).await;
            match proxy {
                Some(leg) => crate::inbound::proxy::finish(&shared, leg, prepared).await,
                None => disposition::store(&shared, prepared).await,
            }
        }
        .instrument(span)
        .await;
        self.reply(&reply);
    }
}
