//! SIGHUP: build a complete new snapshot, then swap it in for sessions and
//! deliveries alike; on any problem keep the one in force and say why.
//! Addresses, the state directory and the log's settings are set at start
//! and need a restart; a reload that changes them says so.

use std::path::Path;

use crate::app::start::Gateway;
use crate::app::{Snapshot, load, systemd};

pub(super) fn reload(path: &Path, gateway: &Gateway) {
    systemd::reloading();
    match load(path, false) {
        Ok(new) => swap(gateway, new),
        Err(e) => {
            gateway.metrics.reloads.inc(&["failed"]);
            tracing::error!(error = %e, "reload failed; the previous configuration stays in force");
        }
    }
    systemd::ready("accepting mail");
}

fn swap(gateway: &Gateway, new: Snapshot) {
    let old = gateway.inbound.settings.load_full();
    let (was, now) = (&old.config, &new.config);
    if now.server.listen != was.server.listen
        || now.server.tls_listen != was.server.tls_listen
        || now.admin.listen != was.admin.listen
        || now.server.state_dir != was.server.state_dir
    {
        tracing::warn!("listen addresses and state_dir changes take effect only after a restart");
    }
    if now.server.commit_log_size != was.server.commit_log_size
        || now.server.commit_log_checkpoint != was.server.commit_log_checkpoint
    {
        tracing::warn!("server.commit_log_size and server.commit_log_checkpoint take effect only after a restart");
    }
    if now.log != was.log {
        tracing::warn!("log changes (level, format, queue_lines) take effect only after a restart");
    }
    for w in now.warnings() {
        tracing::warn!("{w}");
    }
    let tenants = now.tenants.len();
    crate::app::start::record_certificates(now, &gateway.metrics);
    gateway.inbound.settings.store(new.inbound);
    gateway.delivery.store(new.delivery);
    gateway.metrics.reloads.inc(&["ok"]);
    tracing::info!(tenants, "configuration reloaded");
}
