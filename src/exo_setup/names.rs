//! The names of the connectors and rules the script creates in a tenant, all
//! derived from `exchange.name_prefix`, so that every object is recognisable
//! and a second run finds the same names.

/// The names of everything the script creates.
pub(super) struct Names {
    pub(super) out_inbound: String,
    pub(super) out_sent: String,
    pub(super) in_partner: String,
    pub(super) in_relay: String,
    pub(super) protect: String,
    pub(super) protect_outgoing: String,
    pub(super) protect_internal: String,
    pub(super) junk: String,
    pub(super) whitelist: String,
    pub(super) monitor: String,
}

impl Names {
    pub(super) fn new(prefix: &str) -> Names {
        Names {
            out_inbound: format!("{prefix} Outbound (inbound mail)"),
            out_sent: format!("{prefix} Outbound (sent mail)"),
            in_partner: format!("{prefix} Inbound"),
            in_relay: format!("{prefix} Inbound (relay)"),
            protect: format!("{prefix} - Protect"),
            protect_outgoing: format!("{prefix} - Protect Outgoing"),
            protect_internal: format!("{prefix} - Protect Internal"),
            junk: format!("{prefix} - Junk Filter"),
            whitelist: format!("{prefix} - Whitelist"),
            monitor: format!("{prefix} - Monitor"),
        }
    }
}
