//! systemd readiness notification (`sd_notify`) without a dependency: one
//! datagram to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
//! namespace). Does nothing when the variable is unset.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let result = addr.and_then(|addr| {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &addr).map(|_| ())
    });
    if let Err(e) = result {
        tracing::warn!(socket = %path, error = %e, "cannot notify systemd");
    }
}

pub(crate) fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={status}\nMAINPID={}\n", std::process::id()));
}

pub(crate) fn reloading() {
    send("RELOADING=1\nSTATUS=reloading configuration\n");
}

pub(crate) fn stopping(status: &str) {
    send(&format!("STOPPING=1\nSTATUS={status}\n"));
}
