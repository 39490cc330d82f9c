//! The web page's routes (server-rendered HTML) and their guards: session,
//! CSRF token, Origin, tenant scope. The JSON API (`api`) and the digest
//! landing pages (`digest_routes`) share the guards defined here.
//!
//! Invariants: every route but `/login`, `/style.css` and the digest landing
//! page needs a live session (HTML: 303 to `/login`; API: 401); every change
//! is a POST with the session's CSRF token (constant-time compare) and, when
//! the browser sends one, an Origin equal to this listener's; a message of
//! another tenant is "not found" (404), never "forbidden", so ids do not leak
//! which messages exist; every change and login leaves an audit record.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query as QueryParams, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::config::web::Role;
use crate::web::accounts::Accounts;
use crate::web::backend::{Actor, Audit, Backend, BackendError, Change, Query, Record};
use crate::web::links::LinkKey;
use crate::web::pages;
use crate::web::ratelimit::LoginLimiter;
use crate::web::sessions::{Session, Sessions, tokens_equal};
use crate::web::view;

/// Rows per search page.
pub(crate) const PER_PAGE: u32 = 50;

/// The session cookie. Always `Secure` (which the `__Host-` prefix demands):
/// browsers reach us over https, directly or through a local TLS proxy when
/// `plaintext`, or over http://localhost, which they treat as secure.
pub(crate) const COOKIE: &str = "__Host-exogate";

/// The client's address, inserted by the server for each connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) SocketAddr);

impl Peer {
    /// `name` acting from this client through `via` ("web", "api", "digest").
    pub(crate) fn actor(&self, name: &str, via: &'static str) -> Actor {
        Actor {
            name: name.to_string(),
            from: self.0.ip(),
            via,
        }
    }
}

/// The answer to a form sent from a page that is not ours.
pub(crate) const FOREIGN_FORM: &str = "This form was sent from another site.";

/// What every handler shares.
pub(crate) struct WebState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) accounts: Arc<Accounts>,
    pub(crate) sessions: Sessions,
    pub(crate) limiter: LoginLimiter,
    pub(crate) links: LinkKey,
    /// Served over TLS (a browser's Origin is then https://<Host>).
    pub(crate) tls: bool,
    /// `[web] public_url` as an origin (`https://gw.example.net:8443`): what a
    /// browser sends as Origin when a TLS proxy on the same host serves us.
    pub(crate) public_origin: Option<String>,
}

pub(crate) type Shared = Arc<WebState>;

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/search") }))
        .route("/style.css", get(style))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/search", get(search))
        .route("/message/{id}", get(message))
        .route("/message/{id}/{action}", post(change))
        .merge(crate::web::api::routes())
        .merge(crate::web::digest_routes::routes())
        .fallback(fallback)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        pages::STYLE,
    )
        .into_response()
}

// ---- guards shared with `api` and `digest_routes`

impl WebState {
    /// The session named by the request's cookie, with its id.
    pub(crate) fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let name = COOKIE;
        for value in headers.get_all(header::COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for pair in value.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k == name
                    && let Some(s) = self.sessions.get(v)
                {
                    return Some((v.to_string(), s));
                }
            }
        }
        None
    }

    pub(crate) fn set_cookie(&self, id: &str) -> HeaderValue {
        let max_age = self.sessions.ttl().as_secs();
        HeaderValue::from_str(&format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}; Secure"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    pub(crate) fn clear_cookie(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Whether a state-changing request comes from our own pages: a browser's
    /// `Origin` (when sent) must be this listener's, and `Sec-Fetch-Site`
    /// (when sent) must not say cross-site.
    pub(crate) fn same_origin(&self, headers: &HeaderMap) -> bool {
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let origin = text(header::ORIGIN);
        let host = text(header::HOST);
        let scheme = if self.tls { "https" } else { "http" };
        let ok = site != Some("cross-site")
            && match (origin, host) {
                (None, _) => true,
                (Some(o), Some(h)) => o == format!("{scheme}://{h}") || self.public_origin.as_deref() == Some(o),
                (Some(_), None) => false,
            };
        if !ok {
            tracing::info!(
                origin,
                host,
                sec_fetch_site = site,
                "refused a change from another origin"
            );
        }
        ok
    }

    /// Whether a change may go ahead: it comes from our own pages
    /// (`same_origin`) and carries the session's CSRF token (`token`: the
    /// form's `csrf` field, or the API's `X-CSRF-Token`).
    pub(crate) fn change_allowed(&self, headers: &HeaderMap, session: &Session, token: Option<&str>) -> bool {
        self.same_origin(headers) && token.is_some_and(|t| tokens_equal(t, &session.csrf))
    }

    /// The record of `id` if the session may see it (`None` for "not found").
    pub(crate) async fn scoped_record(&self, session: &Session, id: &str) -> Result<Option<Record>, BackendError> {
        if !crate::spool::valid_id(id) {
            return Ok(None);
        }
        let record = self.backend.record(id).await?;
        Ok(record.filter(|r| match &session.role {
            Role::Admin => true,
            Role::Tenant(t) => &r.summary.tenant == t,
        }))
    }

    /// Checks the login rate limit and the password; audits the outcome.
    pub(crate) async fn check_login(&self, peer: Peer, name: &str, password: String) -> LoginOutcome {
        let keys = [
            format!("ip:{}", peer.0.ip()),
            format!("account:{}", name.to_lowercase()),
        ];
        let actor = peer.actor(&name.chars().take(64).collect::<String>(), "web");
        if !self.limiter.allowed(&keys) {
            self.audit(&actor, "login-refused", "rate limit").await;
            return LoginOutcome::Limited;
        }
        match self.accounts.verify(name, password).await {
            Some((account, role)) => {
                self.audit(&actor, "login", "").await;
                let (id, session) = self.sessions.start(account, role);
                LoginOutcome::Ok(id, session)
            }
            None => {
                self.limiter.failed(&keys);
                self.audit(&actor, "login-failed", "wrong name or password").await;
                LoginOutcome::Wrong
            }
        }
    }

    pub(crate) async fn audit(&self, actor: &Actor, what: &str, detail: &str) {
        let audit = Audit {
            actor: actor.clone(),
            what: what.to_string(),
            detail: detail.to_string(),
        };
        if let Err(e) = self.backend.audit(&audit).await {
            tracing::error!(error = %e, what, "cannot write the audit record");
        }
    }
}

pub(crate) enum LoginOutcome {
    Ok(String, Session),
    Wrong,
    Limited,
}

/// The pairs of an `application/x-www-form-urlencoded` body.
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The first value of `name` among form or query pairs.
pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A change from its route name and the chosen recipients.
/// `chosen`: `None` = every recipient.
pub(crate) fn change_of(action: &str, chosen: Option<Vec<String>>, all: &[String]) -> Result<Change, &'static str> {
    match action {
        "release" => {
            let Some(chosen) = chosen else {
                return Ok(Change::Release { recipients: None });
            };
            if chosen.is_empty() {
                return Err("choose at least one recipient to release to");
            }
            if chosen.iter().any(|c| !all.iter().any(|a| a.eq_ignore_ascii_case(c))) {
                return Err("a chosen recipient is not a recipient of this message");
            }
            if all.iter().all(|a| chosen.iter().any(|c| c.eq_ignore_ascii_case(a))) {
                Ok(Change::Release { recipients: None })
            } else {
                Ok(Change::Release {
                    recipients: Some(chosen),
                })
            }
        }
        "delete" => Ok(Change::Delete),
        "release-and-allow" => Ok(Change::ReleaseAndAllow),
        "not-spam" => Ok(Change::NotSpam),
        _ => Err("unknown action"),
    }
}

/// The status and API error of a change the backend refused; a store
/// failure is also logged (the page shows it only to the one admin).
pub(crate) fn store_failure(e: &BackendError) -> (StatusCode, &'static str) {
    match e {
        BackendError::NotApplicable(_) => (StatusCode::CONFLICT, "not applicable"),
        BackendError::Store(_) => {
            tracing::error!(error = %e, "a change failed in the store");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

/// The page for a store that did not answer while `doing` (which is logged).
fn unavailable(s: &Session, e: &BackendError, doing: &str) -> Response {
    tracing::error!(error = %e, "{doing} failed");
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::notice(
            "Unavailable",
            Some(s),
            "The message store did not answer; try again in a moment.",
            None,
        ),
    )
}

// ---- pages

async fn fallback(State(st): State<Shared>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return crate::web::api::fallback(&st, &headers);
    }
    match st.session(&headers) {
        None => to_login(),
        Some((_, s)) => html(
            StatusCode::NOT_FOUND,
            pages::notice(
                "Not found",
                Some(&s),
                "There is no such page.",
                Some(("/search", "Search")),
            ),
        ),
    }
}

async fn login_page(State(st): State<Shared>, headers: HeaderMap) -> Response {
    if st.session(&headers).is_some() {
        return Redirect::to("/search").into_response();
    }
    html(StatusCode::OK, pages::login(None))
}

async fn login(
    State(st): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !st.same_origin(&headers) {
        return html(StatusCode::FORBIDDEN, pages::login(Some(FOREIGN_FORM)));
    }
    let pairs = form_pairs(&body);
    let name = field(&pairs, "name").unwrap_or("").to_string();
    let password = field(&pairs, "password").unwrap_or("").to_string();
    match st.check_login(peer, &name, password).await {
        LoginOutcome::Ok(id, _) => {
            let mut r = Redirect::to("/search").into_response();
            r.headers_mut().insert(header::SET_COOKIE, st.set_cookie(&id));
            r
        }
        LoginOutcome::Wrong => html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some("Wrong account name or password.")),
        ),
        LoginOutcome::Limited => html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(Some("Too many login attempts; wait a minute and try again.")),
        ),
    }
}

async fn logout(
    State(st): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((id, s)) = st.session(&headers) else {
        return to_login();
    };
    if !st.change_allowed(&headers, &s, field(&form_pairs(&body), "csrf")) {
        return refused(&s, "/search", "Search");
    }
    st.sessions.end(&id);
    st.audit(&peer.actor(&s.account, "web"), "logout", "").await;
    let mut r = to_login();
    r.headers_mut().insert(header::SET_COOKIE, st.clear_cookie());
    r
}

/// A search from query parameters; the tenant comes from the session.
pub(crate) fn query_of(params: &[(String, String)], session: &Session) -> Query {
    let text = |name: &str| {
        field(params, name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Query {
        tenant: match &session.role {
            Role::Admin => text("tenant"),
            Role::Tenant(t) => Some(t.clone()),
        },
        sender: text("sender"),
        recipient: text("recipient"),
        subject: text("subject"),
        message_id: text("message_id"),
        action: text("action"),
        since: text("since").and_then(|t| crate::store::time::parse(&t)),
        until: text("until").and_then(|t| crate::store::time::parse(&t)),
        held_only: text("held").is_some_and(|v| v == "1" || v == "true"),
        page: text("page").and_then(|p| p.parse().ok()).unwrap_or(0).min(100_000),
        per_page: PER_PAGE,
    }
}

fn page_link(params: &[(String, String)], page: u32) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if k != "page" && !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.append_pair("page", &page.to_string());
    format!("/search?{}", s.finish())
}

async fn search(
    State(st): State<Shared>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<Vec<(String, String)>>,
) -> Response {
    let Some((_, s)) = st.session(&headers) else {
        return to_login();
    };
    let query = query_of(&params, &s);
    match st.backend.search(&query).await {
        Ok(page) => {
            let next = page_link(&params, query.page + 1);
            let prev = (query.page > 0).then(|| page_link(&params, query.page - 1));
            html(StatusCode::OK, pages::search(&s, &query, &page, &next, prev.as_deref()))
        }
        Err(e) => unavailable(&s, &e, "search"),
    }
}

/// A change without our origin or the session's CSRF token.
fn refused(s: &Session, back: &str, label: &str) -> Response {
    html(
        StatusCode::FORBIDDEN,
        pages::notice(
            "Refused",
            Some(s),
            "Missing or wrong form token: reload the page and try again.",
            Some((back, label)),
        ),
    )
}

fn not_found(s: &Session) -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::notice(
            "Not found",
            Some(s),
            "There is no such message.",
            Some(("/search", "Search")),
        ),
    )
}

async fn message(State(st): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some((_, s)) = st.session(&headers) else {
        return to_login();
    };
    match st.scoped_record(&s, &id).await {
        Ok(Some(r)) => {
            let content = r.raw.as_deref().map(view::content);
            html(StatusCode::OK, pages::message(&s, &r, content.as_ref(), None))
        }
        Ok(None) => not_found(&s),
        Err(e) => unavailable(&s, &e, "reading a message record"),
    }
}

async fn change(
    State(st): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some((_, s)) = st.session(&headers) else {
        return to_login();
    };
    let back = format!("/message/{id}");
    let pairs = form_pairs(&body);
    if !st.change_allowed(&headers, &s, field(&pairs, "csrf")) {
        return refused(&s, &back, "Back to the message");
    }
    let record = match st.scoped_record(&s, &id).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(&s),
        Err(e) => return unavailable(&s, &e, "reading a message record"),
    };
    // The release form always lists the recipients; the other forms have none.
    let chosen: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "recipient")
        .map(|(_, v)| v.clone())
        .collect();
    let chosen = (action == "release").then_some(chosen);
    let change = match change_of(&action, chosen, &record.summary.recipients) {
        Ok(c) => c,
        Err(problem) => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::notice("Refused", Some(&s), problem, Some((&back, "Back to the message"))),
            );
        }
    };
    match st.backend.apply(&id, &change, &peer.actor(&s.account, "web")).await {
        Ok(outcome) => {
            tracing::info!(queue_id = %id, account = %s.account, action = change.name(), "admin action");
            html(
                StatusCode::OK,
                pages::notice("Done", Some(&s), &outcome, Some((&back, "Back to the message"))),
            )
        }
        Err(e) => {
            let (status, _) = store_failure(&e);
            html(
                status,
                pages::notice(
                    "Not done",
                    Some(&s),
                    &e.to_string(),
                    Some((&back, "Back to the message")),
                ),
            )
        }
    }
}
