//! The digest's release links, the only change that needs no session: the
//! link itself is the credential (signed, expiring, single-use, one
//! recipient of one message; see `links`).
//!
//! `GET /digest/release?t=…` only shows what would be released and a button
//! (mail scanners such as Safe Links fetch every link in a mail; a GET must
//! change nothing); `POST /digest/release` releases, once. Invariants: a
//! tampered, expired or reused link, or one for a message no longer held for
//! that recipient, changes nothing and says so.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::web::backend::{BackendError, Change, Record};
use crate::web::links::Grant;
use crate::web::pages;
use crate::web::routes::{FOREIGN_FORM, Peer, Shared, field, form_pairs, store_failure};

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/digest/release", get(confirm).post(release))
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    (status, Html(pages::notice(title, None, text, None).into_string())).into_response()
}

/// The page for a store that did not answer while `doing` (which is logged):
/// the end user can only wait, so nothing of the store's error is shown.
fn unavailable(e: &BackendError, doing: &str) -> Response {
    tracing::error!(error = %e, "{doing} failed");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "Try again in a few minutes.",
    )
}

/// The grant and the held record it applies to, or the page that says why not.
async fn check(st: &Shared, token: Option<&str>) -> Result<(Grant, Record), Response> {
    let Some(token) = token else {
        return Err(page(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "This link is not valid.",
        ));
    };
    let grant = st
        .links
        .verify(token, crate::spool::now_unix())
        .map_err(|e| page(StatusCode::BAD_REQUEST, "Link not valid", &format!("{e}.")))?;
    let gone = || {
        page(
            StatusCode::GONE,
            "Nothing to release",
            "This message is no longer held for you.",
        )
    };
    let record = match st.backend.record(&grant.id).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(gone()),
        Err(e) => return Err(unavailable(&e, "reading a message record")),
    };
    let addressed = record
        .summary
        .recipients
        .iter()
        .any(|r| r.eq_ignore_ascii_case(&grant.recipient));
    let released = record
        .released_to
        .iter()
        .any(|r| r.eq_ignore_ascii_case(&grant.recipient));
    if !record.summary.held || !addressed || released {
        return Err(gone());
    }
    Ok((grant, record))
}

async fn confirm(State(st): State<Shared>, QueryParams(params): QueryParams<Vec<(String, String)>>) -> Response {
    let token = field(&params, "t");
    match check(&st, token).await {
        Ok((grant, record)) => (
            StatusCode::OK,
            Html(pages::digest_confirm(token.unwrap_or(""), &record.summary, &grant.recipient).into_string()),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn release(
    State(st): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !st.same_origin(&headers) {
        return page(StatusCode::FORBIDDEN, "Refused", FOREIGN_FORM);
    }
    let pairs = form_pairs(&body);
    let token = field(&pairs, "t");
    let (grant, _) = match check(&st, token).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match st.backend.consume_nonce(&grant.nonce, grant.expires).await {
        Ok(true) => {}
        Ok(false) => {
            return page(
                StatusCode::GONE,
                "Link already used",
                "This link was used before; it works once.",
            );
        }
        Err(e) => return unavailable(&e, "recording a digest link as used"),
    }
    let actor = peer.actor(&format!("digest:{}", grant.recipient), "digest");
    let change = Change::Release {
        recipients: Some(vec![grant.recipient.clone()]),
    };
    match st.backend.apply(&grant.id, &change, &actor).await {
        Ok(_) => {
            tracing::info!(queue_id = %grant.id, recipient = %grant.recipient, "released from a digest link");
            page(StatusCode::OK, "Released", "The message is on its way to your mailbox.")
        }
        Err(e) => {
            // The nonce is spent (it is consumed first, so that a link can
            // never act twice): trying again cannot help, an admin can.
            tracing::error!(queue_id = %grant.id, recipient = %grant.recipient, error = %e,
                "a release from a digest link failed; the link is used up");
            page(
                store_failure(&e).0,
                "Not released",
                "The message could not be released, and a link works only once: ask your mail administrator to release it.",
            )
        }
    }
}
