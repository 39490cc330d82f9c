//! The JSON API: the same searches and changes as the pages, for scripts.
//!
//! `POST /api/login` (`{"name","password"}`) answers the session cookie and
//! `{"csrf": …}`; every change is a POST carrying that token in
//! `X-CSRF-Token`. Invariants: the guards are `routes`' (no session → 401,
//! another tenant's message → 404, change without the token → 403); the API
//! never returns message bytes, only the same safe view the page shows.

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::config::web::Role;
use crate::web::backend::BackendError;
use crate::web::routes::{LoginOutcome, Peer, Shared, WebState, change_of, query_of, store_failure};
use crate::web::view;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/messages", get(search))
        .route("/api/messages/{id}", get(message))
        .route("/api/messages/{id}/{action}", post(change))
}

fn error(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "error": text }))).into_response()
}

fn login_first() -> Response {
    error(StatusCode::UNAUTHORIZED, "log in first: POST /api/login")
}

/// The answer for a store that did not answer while `doing` (which is logged).
fn unavailable(e: &BackendError, doing: &str) -> Response {
    tracing::error!(error = %e, "{doing} failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
}

/// The token of an API change.
fn header_token(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-csrf-token").and_then(|v| v.to_str().ok())
}

pub(crate) fn fallback(st: &WebState, headers: &HeaderMap) -> Response {
    match st.session(headers) {
        None => login_first(),
        Some(_) => error(StatusCode::NOT_FOUND, "no such route"),
    }
}

#[derive(Deserialize)]
struct Login {
    name: String,
    password: String,
}

async fn login(
    State(st): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !st.same_origin(&headers) {
        return error(StatusCode::FORBIDDEN, "cross-site request");
    }
    let Ok(Login { name, password }) = serde_json::from_slice(&body) else {
        return error(StatusCode::BAD_REQUEST, "expected {\"name\": …, \"password\": …}");
    };
    match st.check_login(peer, &name, password).await {
        LoginOutcome::Ok(id, s) => {
            let role = match &s.role {
                Role::Admin => json!({"role": "admin"}),
                Role::Tenant(t) => json!({"role": "tenant", "tenant": t}),
            };
            let mut r = Json(json!({ "account": s.account, "csrf": s.csrf, "access": role })).into_response();
            r.headers_mut().insert(header::SET_COOKIE, st.set_cookie(&id));
            r
        }
        LoginOutcome::Wrong => error(StatusCode::UNAUTHORIZED, "wrong account name or password"),
        LoginOutcome::Limited => error(StatusCode::TOO_MANY_REQUESTS, "too many login attempts; wait a minute"),
    }
}

async fn logout(State(st): State<Shared>, Extension(peer): Extension<Peer>, headers: HeaderMap) -> Response {
    let Some((id, s)) = st.session(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "not logged in");
    };
    if !st.change_allowed(&headers, &s, header_token(&headers)) {
        return error(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token");
    }
    st.sessions.end(&id);
    st.audit(&peer.actor(&s.account, "api"), "logout", "").await;
    let mut r = Json(json!({ "ok": true })).into_response();
    r.headers_mut().insert(header::SET_COOKIE, st.clear_cookie());
    r
}

async fn search(
    State(st): State<Shared>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<Vec<(String, String)>>,
) -> Response {
    let Some((_, s)) = st.session(&headers) else {
        return login_first();
    };
    let query = query_of(&params, &s);
    match st.backend.search(&query).await {
        Ok(page) => {
            Json(json!({ "page": query.page, "per_page": query.per_page, "more": page.more, "messages": page.items }))
                .into_response()
        }
        Err(e) => unavailable(&e, "search"),
    }
}

async fn message(State(st): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some((_, s)) = st.session(&headers) else {
        return login_first();
    };
    match st.scoped_record(&s, &id).await {
        Ok(Some(r)) => {
            let content = r.raw.as_deref().map(view::content);
            Json(json!({
                "message": r.summary,
                "client": r.client,
                "tls": r.tls,
                "findings": r.findings,
                "failures": r.failures,
                "deliveries": r.deliveries,
                "content": content,
            }))
            .into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such message"),
        Err(e) => unavailable(&e, "reading a message record"),
    }
}

#[derive(Deserialize, Default)]
struct ChangeBody {
    recipients: Option<Vec<String>>,
}

async fn change(
    State(st): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some((_, s)) = st.session(&headers) else {
        return login_first();
    };
    if !st.change_allowed(&headers, &s, header_token(&headers)) {
        return error(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token");
    }
    let body: ChangeBody = if body.is_empty() {
        ChangeBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(_) => return error(StatusCode::BAD_REQUEST, "expected {} or {\"recipients\": [...]}"),
        }
    };
    let record = match st.scoped_record(&s, &id).await {
        Ok(Some(r)) => r,
        Ok(None) => return error(StatusCode::NOT_FOUND, "no such message"),
        Err(e) => return unavailable(&e, "reading a message record"),
    };
    let change = match change_of(&action, body.recipients, &record.summary.recipients) {
        Ok(c) => c,
        Err(problem) => return error(StatusCode::BAD_REQUEST, problem),
    };
    match st.backend.apply(&id, &change, &peer.actor(&s.account, "api")).await {
        Ok(outcome) => {
            tracing::info!(queue_id = %id, account = %s.account, action = change.name(), "admin action (api)");
            Json(json!({ "ok": true, "outcome": outcome })).into_response()
        }
        Err(e) => {
            let (status, kind) = store_failure(&e);
            (status, Json(json!({ "error": kind, "detail": e.to_string() }))).into_response()
        }
    }
}
