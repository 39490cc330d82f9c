//! Proxy mode: no local queue. The downstream is contacted during the
//! session; each RCPT is forwarded and the downstream's own reply is what the
//! client sees, and so is the reply after the data. A temporary answer stays
//! temporary, so EXO keeps the message and retries.
//!
//! Admission still runs first: a recipient we would refuse never reaches the
//! downstream. Quarantined messages are kept locally (the only local state),
//! and the downstream transaction is reset.
//!
//! A message spilled to disk while it was received is sent from that file a
//! chunk at a time, as a large queued message is: proxy mode never reads a
//! large message back into memory.

use std::fs::File;
use std::sync::Arc;

use crate::config::tenant::Tenant;
use crate::delivery::route::RouteKey;
use crate::delivery::smtp_client::{CHUNK, Client, MessageBytes, line_breaks_in_file};
use crate::inbound::disposition::{Prepared, store};
use crate::inbound::{Context, Settings};
use crate::message::envelope::{BodyType, Envelope, Recipient};
use crate::message::stamp::Stamp;
use crate::smtp::reply::Reply;
use crate::spool::incoming::{BODY_START, Body, SpillPath};

/// An open downstream transaction.
pub(crate) struct ProxyLeg {
    client: Client,
    key: RouteKey,
    shared: Arc<Context>,
}

impl ProxyLeg {
    /// Resets the downstream transaction and keeps the connection for reuse.
    pub(crate) async fn reset(mut self) {
        if self.client.reset().await.is_ok() {
            self.shared.relay.give_back(&self.key, self.client);
        }
    }

    /// Closes the downstream connection (the client went away).
    pub(crate) async fn abandon(self) {
        self.client.quit().await;
    }
}

/// Where the transaction's proxy state lives (owned by the session).
pub(crate) struct ProxyState<'a> {
    pub(crate) envelope: &'a mut Envelope,
    pub(crate) tenant: &'a mut Option<Arc<Tenant>>,
    pub(crate) leg: &'a mut Option<ProxyLeg>,
}

/// Forwards one admitted recipient; returns the reply for the client.
pub(crate) async fn add_recipient(
    shared: &Arc<Context>,
    rt: &Settings,
    state: ProxyState<'_>,
    tenant: &Arc<Tenant>,
    recipient: Recipient,
) -> Reply {
    if state.leg.is_none() && !state.envelope.recipients.is_empty() {
        // The downstream connection died after accepting recipients: a new one
        // would not know them, so this transaction can only fail (temporarily).
        return Reply::DOWNSTREAM_TRANSACTION;
    }
    if state.leg.is_none() {
        let Some(route) = rt.delivery.tenant_route(&tenant.portal) else {
            return Reply::DOWNSTREAM_UNAVAILABLE;
        };
        // A pooled connection may have been closed by the downstream meanwhile:
        // then one fresh connection is tried before giving up.
        let mut attempts = 0;
        let client = loop {
            attempts += 1;
            let mut client = match shared.relay.checkout(&route).await {
                Ok(c) => c,
                Err(failure) => {
                    tracing::warn!(tenant = %tenant.portal, reply = %failure.reply.one_line(), "proxy: downstream unavailable");
                    return Reply::DOWNSTREAM_UNAVAILABLE;
                }
            };
            match client.proxy_mail(state.envelope).await {
                Ok(reply) if reply.is_positive() => break client,
                Ok(reply) => {
                    shared.relay.give_back(&route.key, client);
                    return reply;
                }
                Err(e) if attempts < 2 => {
                    tracing::debug!(error = %e, "proxy: connection unusable, trying a new one");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "proxy: downstream MAIL failed");
                    return Reply::DOWNSTREAM_UNAVAILABLE;
                }
            }
        };
        *state.leg = Some(ProxyLeg {
            client,
            key: route.key,
            shared: shared.clone(),
        });
        // The leg goes to this tenant's destination: the transaction is this
        // tenant's from now on, whatever the downstream answers to the RCPT.
        *state.tenant = Some(tenant.clone());
    }
    let leg = state.leg.as_mut().expect("opened above");
    state.envelope.recipients.push(recipient);
    let index = state.envelope.recipients.len() - 1;
    match leg.client.proxy_rcpt(state.envelope, index).await {
        Ok(reply) if reply.is_positive() => reply,
        Ok(reply) => {
            state.envelope.recipients.pop();
            reply
        }
        Err(e) => {
            tracing::warn!(error = %e, "proxy: downstream RCPT failed");
            state.envelope.recipients.pop();
            *state.leg = None;
            Reply::DOWNSTREAM_UNAVAILABLE
        }
    }
}

/// The proxied message's event, and the downstream's answer as the outcome
/// of every recipient (it took or refused them together).
fn record_proxied(
    shared: &Context,
    meta: &crate::spool::format::Meta,
    event: crate::store::EventRecord,
    server: &str,
    reply: &Reply,
) {
    shared.store.record_event(event);
    let result = if reply.is_positive() {
        "delivered"
    } else if reply.code >= 500 {
        "bounced"
    } else {
        "deferred"
    };
    for r in &meta.envelope.recipients {
        shared.store.record_delivery(
            &meta.id,
            &r.address.to_string(),
            crate::store::DeliveryOutcome {
                time: crate::spool::now_unix(),
                result: result.into(),
                host: server.to_string(),
                reply: reply.one_line(),
            },
        );
    }
}

/// Completes the proxied transaction with the prepared message.
pub(crate) async fn finish(shared: &Context, leg: ProxyLeg, prepared: Prepared) -> Reply {
    match prepared {
        Prepared::Deliver {
            meta,
            prefix,
            body,
            event,
        } => {
            // A spilled body is sent from its file a chunk at a time, as a
            // large queued message is: it is never read back whole.
            let stamp = Stamp::from_stored(prefix, &meta.skips);
            let held = match Held::of(body, &stamp).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::error!(queue_id = %meta.id, error = %e, "cannot read the message back");
                    leg.reset().await;
                    return Reply::LOCAL_ERROR;
                }
            };
            let _budget = shared.budget.reserve(held.resident()).await;
            let bytes = held.bytes(&stamp);
            let mut leg = leg;
            match leg
                .client
                .proxy_data(&bytes, meta.envelope.body == BodyType::BinaryMime)
                .await
            {
                Ok(reply) => {
                    tracing::info!(queue_id = %meta.id, tenant = %meta.tenant, downstream = %leg.client.server, reply = %reply.one_line(), "proxied");
                    record_proxied(shared, &meta, *event, &leg.client.server, &reply);
                    if reply.is_positive() {
                        shared.relay.give_back(&leg.key, leg.client);
                    } else {
                        leg.reset().await;
                    }
                    reply
                }
                Err(e) => {
                    tracing::warn!(queue_id = %meta.id, error = %e, "proxy: downstream failed during data");
                    Reply::DOWNSTREAM_TRANSACTION
                }
            }
        }
        other => {
            leg.reset().await;
            store(shared, other).await
        }
    }
}

/// The received message as the downstream gets it: in memory, or left in
/// its spill file (removed when this is dropped).
enum Held {
    Memory(Vec<u8>),
    File {
        file: Arc<File>,
        /// Held for its drop, which removes the file.
        _spill: SpillPath,
        len: u64,
        bare_line_break: bool,
    },
}

impl Held {
    /// Takes the received body; a spilled one is read through once on the
    /// blocking pool, in bounded chunks, for its line breaks (DATA or BDAT is
    /// decided before the first byte is sent).
    async fn of(body: Body, stamp: &Stamp) -> std::io::Result<Held> {
        let (file, spill, len) = match body {
            Body::Memory(raw) => return Ok(Held::Memory(raw)),
            Body::Spilled { file, path, len, .. } => (Arc::new(file), path, len),
        };
        let (reader, ranges, prefix) = (
            file.clone(),
            stamp.kept_in_file(len as usize, BODY_START),
            stamp.prefix.clone(),
        );
        let scanned = tokio::task::spawn_blocking(move || line_breaks_in_file(&prefix, &reader, ranges)).await;
        let bare_line_break = scanned.map_err(std::io::Error::other)??;
        Ok(Held::File {
            file,
            _spill: spill,
            len,
            bare_line_break,
        })
    }

    /// What it holds in memory while it is sent: a spilled body one chunk.
    fn resident(&self) -> u64 {
        match self {
            Held::Memory(raw) => raw.len() as u64,
            Held::File { .. } => CHUNK as u64,
        }
    }

    fn bytes<'a>(&'a self, stamp: &'a Stamp) -> MessageBytes<'a> {
        match self {
            Held::Memory(raw) => MessageBytes::in_memory(stamp.pieces(raw)),
            Held::File {
                file,
                len,
                bare_line_break,
                ..
            } => MessageBytes::from_file(
                &stamp.prefix,
                file.clone(),
                stamp.kept_in_file(*len as usize, BODY_START),
                *bare_line_break,
            ),
        }
    }
}
