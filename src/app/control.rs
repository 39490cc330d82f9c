//! The running gateway's control socket: the maintenance commands that
//! change spool files (`queue delete|flush`, `quarantine delete|release`) go
//! through it while a gateway holds the state directory's lock, so that a
//! second process never works on the spool behind the owner's back.
//!
//! The socket is `state_dir/control.sock`, mode 0600 (only the gateway's own
//! user may use it). One request per connection, one line each way:
//! `<queue|reports|hold> delete ID`, `queue flush [ID…]`, `queue hold ID`,
//! `queue release ID` (from hold), `queue rescan`,
//! `quarantine release ID by=ACTOR [to=RCPT,...]`, `quarantine delete ID by=ACTOR`,
//! and `ok <text>` or `err <text>`. The same [`apply`] (spool) and
//! [`apply_store`] (the quarantine, through the store: index, audit, a
//! released copy stamped as delivered) run the change in the gateway and,
//! when no gateway runs, in the command itself under the lock.
//!
//! Must never: accept a request that is not one of these, or block the
//! gateway (each request runs on the blocking pool, each read is bounded).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::app::AppError;
use crate::spool::{Area, Spool, valid_id};
use crate::store::{Actor, Scope, Store};

/// The socket's name in the state directory.
pub(crate) const SOCKET: &str = "control.sock";
const MAX_REQUEST: u64 = 512;
const TIMEOUT: Duration = Duration::from_secs(30);

/// A change to the spool files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A queued message or a kept journal report.
    Delete(Area, String),
    Flush,
    /// A held message: a copy stamped as delivered, to these recipients (none: all).
    Release {
        id: String,
        to: Vec<String>,
        actor: String,
    },
    /// A held message, for good.
    QuarantineDelete {
        id: String,
        actor: String,
    },
    /// These queued messages are due now.
    FlushIds(Vec<String>),
    /// Queue to hold.
    Hold(String),
    /// Hold back to the queue, due now.
    Unhold(String),
    /// Files moved in or out of the queue: the scheduler looks again.
    Rescan,
}

/// An actor or address as the protocol carries it: one word, no comma.
fn word_ok(w: &str) -> bool {
    !w.is_empty() && w.len() <= 320 && w.chars().all(|c| c.is_ascii_graphic() && c != ',' && c != '=')
}

impl Change {
    fn to_line(&self) -> String {
        match self {
            Change::Delete(area, id) => format!("{} delete {id}", area_name(*area)),
            Change::Flush => "queue flush".into(),
            Change::Release { id, to, actor } if to.is_empty() => format!("quarantine release {id} by={actor}"),
            Change::Release { id, to, actor } => format!("quarantine release {id} by={actor} to={}", to.join(",")),
            Change::QuarantineDelete { id, actor } => format!("quarantine delete {id} by={actor}"),
            Change::FlushIds(ids) => format!("queue flush {}", ids.join(" ")),
            Change::Hold(id) => format!("queue hold {id}"),
            Change::Unhold(id) => format!("queue release {id}"),
            Change::Rescan => "queue rescan".into(),
        }
    }

    fn parse(line: &str) -> Result<Change, String> {
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let id = |w: &str| {
            if valid_id(w) {
                Ok(w.to_string())
            } else {
                Err(format!("\"{w}\" is not a queue id"))
            }
        };
        let actor = |w: &str| match w.strip_prefix("by=") {
            Some(a) if word_ok(a) => Ok(a.to_string()),
            _ => Err(format!("\"{w}\" is not by=ACTOR")),
        };
        match words.as_slice() {
            ["queue", "delete", i] => Ok(Change::Delete(Area::Active, id(i)?)),
            ["quarantine", "delete", i, by] => Ok(Change::QuarantineDelete {
                id: id(i)?,
                actor: actor(by)?,
            }),
            ["reports", "delete", i] => Ok(Change::Delete(Area::Reports, id(i)?)),
            ["hold", "delete", i] => Ok(Change::Delete(Area::Hold, id(i)?)),
            ["queue", "flush"] => Ok(Change::Flush),
            ["quarantine", "release", i, by] => Ok(Change::Release {
                id: id(i)?,
                to: vec![],
                actor: actor(by)?,
            }),
            ["quarantine", "release", i, by, to] => {
                let list = to
                    .strip_prefix("to=")
                    .ok_or_else(|| format!("\"{to}\" is not to=RCPT,..."))?;
                let to: Vec<String> = list.split(',').map(str::to_string).collect();
                if to.iter().any(|r| !word_ok(r)) {
                    return Err(format!("\"{list}\" is not a list of addresses"));
                }
                Ok(Change::Release {
                    id: id(i)?,
                    to,
                    actor: actor(by)?,
                })
            }
            ["queue", "flush", ids @ ..] => Ok(Change::FlushIds(ids.iter().map(|i| id(i)).collect::<Result<_, _>>()?)),
            ["queue", "hold", i] => Ok(Change::Hold(id(i)?)),
            ["queue", "release", i] => Ok(Change::Unhold(id(i)?)),
            ["queue", "rescan"] => Ok(Change::Rescan),
            _ => Err("unknown request".into()),
        }
    }
}

fn area_name(area: Area) -> &'static str {
    match area {
        Area::Active => "queue",
        Area::Quarantine => "quarantine",
        Area::Reports => "reports",
        Area::Hold => "hold",
    }
}

/// Carries out `change` on `spool` (the caller holds the state lock, or is
/// the gateway that does).
pub(crate) fn apply(spool: &Spool, change: &Change) -> Result<String, AppError> {
    match change {
        Change::Delete(area, id) => {
            spool.remove(*area, id)?;
            Ok(format!("deleted {id}"))
        }
        Change::Flush => {
            wake(spool, "flush")?;
            Ok("flush requested: queued messages will be retried now (at start-up if the gateway is stopped)".into())
        }
        Change::FlushIds(ids) => {
            wake(spool, &format!("flush {}", ids.join(" ")))?;
            Ok(format!("{} message(s) due now", ids.len()))
        }
        Change::Hold(id) => {
            spool.move_to(Area::Active, Area::Hold, id)?;
            wake(spool, "rescan")?;
            Ok(format!("held {id}"))
        }
        Change::Unhold(id) => {
            spool.move_to(Area::Hold, Area::Active, id)?;
            wake(spool, &format!("flush {id}"))?;
            Ok(format!("released {id}: due now"))
        }
        Change::Rescan => {
            wake(spool, "rescan")?;
            Ok("rescan requested".into())
        }
        Change::Release { .. } | Change::QuarantineDelete { .. } => Err(AppError::Other(
            "a quarantine change goes through the store (apply_store)".into(),
        )),
    }
}

impl Change {
    /// Whether the change is the store's (the quarantine) rather than the spool's.
    pub(crate) fn is_store(&self) -> bool {
        matches!(self, Change::Release { .. } | Change::QuarantineDelete { .. })
    }
}

/// Carries out a quarantine change through the store (index, audit, the
/// released copy in this node's queue). A release answers with the
/// [`crate::store::Released`] as one line of JSON.
pub(crate) async fn apply_store(store: &Store, change: &Change) -> Result<String, AppError> {
    let cli = |name: &str| Actor {
        name: name.to_string(),
        from: "local".into(),
    };
    match change {
        Change::Release { id, to, actor } => {
            let to = (!to.is_empty()).then_some(to.as_slice());
            let released = store.quarantine_release(&Scope::All, id, to, &cli(actor)).await?;
            Ok(serde_json::to_string(&released).unwrap_or_default())
        }
        Change::QuarantineDelete { id, actor } => {
            store.quarantine_delete(&Scope::All, id, &cli(actor)).await?;
            Ok(format!("deleted {id}"))
        }
        other => Err(AppError::Other(format!("not a quarantine change: {}", other.to_line()))),
    }
}

/// Appends an order for the scheduler to the trigger file (it takes the file
/// whole, so orders written in a row are all seen).
fn wake(spool: &Spool, order: &str) -> Result<(), AppError> {
    use std::io::Write;
    let path = spool.flush_trigger();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{order}\n").as_bytes()))
        .map_err(|e| AppError::Other(format!("{}: {e}", path.display())))
}

/// The socket path for `state_dir`.
pub(crate) fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// Binds the control socket (replacing a stale one: we hold the lock, so no
/// other gateway uses it) and serves it until the process ends.
pub(super) fn serve(state_dir: &Path, spool: Arc<Spool>, store: Store) -> Result<(), AppError> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(state_dir);
    let bind_error = |e: std::io::Error| AppError::Other(format!("control socket {}: {e}", path.display()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(bind_error)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    tracing::info!(path = %path.display(), "control socket ready");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(handle(stream, spool.clone(), store.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

async fn handle(stream: UnixStream, spool: Arc<Spool>, store: Store) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let read = tokio::time::timeout(TIMEOUT, BufReader::new(read.take(MAX_REQUEST)).read_line(&mut line)).await;
    let reply = match read {
        Ok(Ok(_)) => match Change::parse(line.trim_end()) {
            Ok(change) if change.is_store() => {
                tracing::info!(request = %change.to_line(), "control request");
                match apply_store(&store, &change).await {
                    Ok(text) => format!("ok {}\n", text.replace('\n', " ")),
                    Err(e) => format!("err {}\n", e.to_string().replace('\n', " ")),
                }
            }
            Ok(change) => {
                tracing::info!(request = %change.to_line(), "control request");
                let done = tokio::task::spawn_blocking(move || apply(&spool, &change)).await;
                match done {
                    Ok(Ok(text)) => format!("ok {text}\n"),
                    Ok(Err(e)) => format!("err {}\n", e.to_string().replace('\n', " ")),
                    Err(e) => format!("err {e}\n"),
                }
            }
            Err(e) => format!("err {e}\n"),
        },
        _ => return,
    };
    let _ = tokio::time::timeout(TIMEOUT, write.write_all(reply.as_bytes())).await;
}

/// What a command adds to its answer when the running gateway carried out
/// its change (through `request`).
pub(crate) const VIA_GATEWAY_NOTE: &str = " (through the running gateway)";

/// Asks the running gateway on `state_dir` to carry out `change`; answers the
/// gateway's text, the same `apply_store` gives without a gateway.
pub(crate) fn request(state_dir: &Path, change: &Change) -> Result<String, AppError> {
    use std::io::{BufRead, Write};
    let path = socket_path(state_dir);
    let unreachable = |e: std::io::Error| {
        AppError::Locked(crate::spool::LockError::Io {
            path: path.clone(),
            source: std::io::Error::new(
                e.kind(),
                format!("a gateway holds the state directory but its control socket does not answer: {e}"),
            ),
        })
    };
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(unreachable)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(unreachable)?;
    stream
        .write_all(format!("{}\n", change.to_line()).as_bytes())
        .map_err(unreachable)?;
    let mut reply = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(unreachable)?;
    match reply.trim_end().split_once(' ') {
        Some(("ok", text)) => Ok(text.to_string()),
        Some(("err", text)) => Err(AppError::Other(text.to_string())),
        _ => Err(AppError::Other(format!("unexpected reply from the gateway: {reply:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_nothing_else_is_accepted() {
        let id = crate::spool::new_id();
        for change in [
            Change::Delete(Area::Active, id.clone()),
            Change::Flush,
            Change::Release {
                id: id.clone(),
                to: vec![],
                actor: "cli:root".into(),
            },
            Change::Release {
                id: id.clone(),
                to: vec!["a@contoso.com".into(), "b@contoso.com".into()],
                actor: "cli:root".into(),
            },
            Change::QuarantineDelete {
                id: id.clone(),
                actor: "cli:root".into(),
            },
            Change::FlushIds(vec![id.clone(), id.clone()]),
            Change::Hold(id.clone()),
            Change::Unhold(id.clone()),
            Change::Delete(Area::Hold, id.clone()),
            Change::Rescan,
        ] {
            assert_eq!(Change::parse(&change.to_line()), Ok(change));
        }
        assert!(Change::parse("queue delete ../../etc/passwd").is_err());
        assert!(Change::parse("queue release ../x").is_err());
        assert!(
            Change::parse(&format!("quarantine release {id}")).is_err(),
            "an actor is required"
        );
        assert!(Change::parse(&format!("quarantine release {id} by=x to=a@b,c d")).is_err());
        assert!(Change::parse("queue frobnicate x").is_err());
        assert!(Change::parse("").is_err());
    }
}
