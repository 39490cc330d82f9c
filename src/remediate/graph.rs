//! Microsoft Graph v1.0: find the message in one mailbox by
//! `internetMessageId` (`GET /users/{mailbox}/messages?$filter=...`), then
//! per copy `POST .../move` (`{"destinationId": folder}`), `DELETE` (soft:
//! recoverable by the user) or `POST .../permanentDelete`. A `401` drops the
//! token and the call is made once more with a new one.
//!
//! The `$filter` value keeps its angle brackets, doubles a `'` (OData) and is
//! percent-encoded so that `+` is `%2B` (Graph reads `+` as a space).

use crate::config::remediation::RemediationAction;
use crate::remediate::http::Answer;
use crate::remediate::{CallError, Job, Outcome, Remediator, guid, pct};

pub(crate) async fn remediate(
    r: &Remediator,
    mailbox: &str,
    job: &Job,
    request_ids: &mut Vec<String>,
) -> Result<Outcome, CallError> {
    let base = r.cfg.graph_base_url.trim_end_matches('/');
    let user = pct(mailbox);
    let filter = format!("internetMessageId eq '{}'", job.internet_message_id.replace('\'', "''"));
    let list = format!(
        "{base}/users/{user}/messages?$filter={}&$select=id,internetMessageId,parentFolderId&$top=50",
        pct(&filter)
    );
    let answer = call(r, "graph.list", request_ids, |token| {
        r.http.client.get(&list).bearer_auth(token)
    })
    .await?;
    let json: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|_| CallError::Temporary {
        reason: "graph.list: the answer is not JSON".into(),
        wait: None,
    })?;
    let ids: Vec<String> = json["value"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter(|m| {
                    m["internetMessageId"]
                        .as_str()
                        .is_none_or(|i| i == job.internet_message_id)
                })
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        return Ok(Outcome::NotFound);
    }
    let mut done = 0;
    for id in &ids {
        let item = format!("{base}/users/{user}/messages/{}", pct(id));
        let result = match job.action {
            RemediationAction::Move => {
                let folder = r.cfg.folder.clone().unwrap_or_else(|| "junkemail".into());
                let body = serde_json::json!({ "destinationId": folder }).to_string();
                let url = format!("{item}/move");
                call(r, "graph.move", request_ids, |token| {
                    r.http
                        .client
                        .post(&url)
                        .bearer_auth(token)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                })
                .await
            }
            RemediationAction::SoftDelete => {
                call(r, "graph.delete", request_ids, |token| {
                    r.http.client.delete(&item).bearer_auth(token)
                })
                .await
            }
            RemediationAction::Delete => {
                let url = format!("{item}/permanentDelete");
                call(r, "graph.permanentDelete", request_ids, |token| {
                    r.http
                        .client
                        .post(&url)
                        .bearer_auth(token)
                        .header(reqwest::header::CONTENT_LENGTH, "0")
                })
                .await
            }
        };
        match result {
            Ok(_) => done += 1,
            // Gone since the lookup (moved by the user, another run): fine.
            Err(CallError::Permanent { reason }) if reason.contains("HTTP 404") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(match job.action {
        RemediationAction::Move => Outcome::Moved {
            folder: r.cfg.folder.clone().unwrap_or_default(),
            count: done,
        },
        _ => Outcome::Deleted { count: done },
    })
}

/// One Graph call with a token (a second one after a 401); 2xx is success,
/// 5xx temporary, any other status permanent.
async fn call(
    r: &Remediator,
    what: &str,
    request_ids: &mut Vec<String>,
    build: impl Fn(&str) -> reqwest::RequestBuilder,
) -> Result<Answer, CallError> {
    for round in 0..2 {
        let token = r.tokens.get(r).await?;
        let answer = r
            .http
            .send(what, || build(&token).header("client-request-id", guid()))
            .await?;
        if let Some(id) = &answer.request_id {
            request_ids.push(id.clone());
        }
        match answer.status {
            200..=299 => return Ok(answer),
            401 if round == 0 => r.tokens.invalidate().await,
            s if s >= 500 => {
                return Err(CallError::Temporary {
                    reason: format!("{what}: HTTP {s} {}", graph_error(&answer.body)),
                    wait: None,
                });
            }
            s => {
                return Err(CallError::Permanent {
                    reason: format!("{what}: HTTP {s} {}", graph_error(&answer.body)),
                });
            }
        }
    }
    Err(CallError::Permanent {
        reason: format!("{what}: HTTP 401 with a fresh token"),
    })
}

/// Graph's error code and message (they describe the request, not secrets).
fn graph_error(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let code = json["error"]["code"].as_str().unwrap_or("");
    let message: String = json["error"]["message"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(160)
        .collect();
    format!("{code} {message}").trim().to_string()
}
