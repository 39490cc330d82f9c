//! Builds a [`ScanInput`] around a fixture for the checks' unit tests.

use mail_parser::MessageParser;

use crate::config::tenant::{Destination, Tenant};
use crate::message::envelope::{Direction, Envelope, SessionFacts};
use crate::message::verdict::Finding;
use crate::scan::check::{Check, ScanInput};
use crate::scan::view::View;

pub(crate) fn tenant() -> Tenant {
    Tenant::new("contoso", &["contoso.com", "contoso.onmicrosoft.com"], Destination::Mx)
}

pub(crate) fn session() -> SessionFacts {
    SessionFacts {
        session_id: String::new(),
        client_ip: "40.92.1.1".parse().unwrap(),
        client_port: 40000,
        helo: "EUR05-DB8-obe.outbound.protection.outlook.com".into(),
        tls: None,
    }
}

/// Runs `f` on the parsed fixture, as the pipeline would present it.
pub(crate) fn with_input<R>(raw: &[u8], mail_from: &str, direction: Direction, f: impl FnOnce(&ScanInput) -> R) -> R {
    with_input_as(&tenant(), raw, mail_from, direction, f)
}

/// The same for a given tenant.
pub(crate) fn with_input_as<R>(
    tenant: &Tenant,
    raw: &[u8],
    mail_from: &str,
    direction: Direction,
    f: impl FnOnce(&ScanInput) -> R,
) -> R {
    let message = MessageParser::default().parse(raw).expect("fixture parses");
    let view = View::new(&message, false);
    let envelope = Envelope {
        mail_from: mail_from.parse().unwrap(),
        recipients: vec![crate::message::envelope::Recipient {
            address: "user@contoso.com".parse().unwrap(),
            orcpt: None,
            notify: None,
        }],
        ..Envelope::default()
    };
    let session = session();
    let input = ScanInput {
        raw,
        message: &message,
        view: &view,
        envelope: &envelope,
        session: &session,
        tenant,
        direction,
        truncated: false,
        exo_session: false,
        queue_id: "TESTQUEUEID",
        auth: None,
    };
    f(&input)
}

/// Runs a check on a fixture and returns its findings.
pub(crate) fn scan(check: &dyn Check, raw: &[u8], mail_from: &str, direction: Direction) -> Vec<Finding> {
    scan_as(check, &tenant(), raw, mail_from, direction)
}

/// Runs a check on a fixture for a given tenant.
pub(crate) fn scan_as(
    check: &dyn Check,
    tenant: &Tenant,
    raw: &[u8],
    mail_from: &str,
    direction: Direction,
) -> Vec<Finding> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    with_input_as(tenant, raw, mail_from, direction, |input| {
        rt.block_on(check.scan(input)).expect("check answers")
    })
}
