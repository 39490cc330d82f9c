//! Section 5 of the script: the transport rules. Protect rules stamp
//! X-CLOUD-SEC-AV-Info and route mail to the gateway; the Junk Filter and
//! Whitelist rules act on mail coming back from it. Every rule exempts (or
//! matches) the gateway's own addresses by sender IP, never by a header a
//! sender could forge.

use super::names::Names;
use super::writer::{Arg, Out, RULE, bool_word};
use super::{Plan, ps_array};
use crate::config::tenant::TenantMode;
use crate::message::envelope::Direction;

/// Rule priorities, handed out in the order the rules are written (lower
/// runs first; they go to the top, before the tenant's own rules).
struct Priorities(std::array::IntoIter<&'static str, 5>);

impl Priorities {
    fn new() -> Priorities {
        Priorities(["0", "1", "2", "3", "4"].into_iter())
    }

    fn next(&mut self) -> Arg {
        Arg::Word(self.0.next().unwrap_or("4"))
    }
}

/// One Protect rule: mail from `from` to `to` gets X-CLOUD-SEC-AV-Info with
/// `direction` and goes out through `connector` to the gateway.
struct Protect<'a> {
    name: &'a str,
    from: &'static str,
    to: &'static str,
    direction: Direction,
    connector: &'a str,
    enabled: bool,
}

pub(super) fn rules(o: &mut Out, p: &Plan, n: &Names, ips: &[String]) {
    let mut priorities = Priorities::new();
    o.line(RULE);
    o.comment(
        "5. Transport rules (§5, §6.1). Lower Priority runs first. They go to the top so mail is scanned \
         before the tenant's own rules, which then act on it when it comes back from the gateway. A \
         Protect rule stamps X-CLOUD-SEC-AV-Info (the gateway reads tenant and direction from it), routes \
         the message to the gateway and stops further rules. A forged X-CLOUD-SEC-AV-Info from the \
         Internet is overwritten (-SetHeaderName adds or modifies) and cannot skip scanning: the exception \
         is by sender address, not by header (§6.1).",
    );
    o.blank();
    protect_rules(o, p, n, ips, &mut priorities);
    junk_rule(o, n, ips, &mut priorities);
    whitelist_rule(o, p, n, ips, &mut priorities);
}

/// 5a–5c: Internet → tenant always; tenant → Internet and tenant → tenant
/// when sent mail comes through the gateway (a relay certificate is set).
fn protect_rules(o: &mut Out, p: &Plan, n: &Names, ips: &[String], priorities: &mut Priorities) {
    o.comment("5a. Protect: Internet -> tenant.");
    protect(
        o,
        p,
        ips,
        priorities,
        Protect {
            name: &n.protect,
            from: "NotInOrganization",
            to: "InOrganization",
            direction: Direction::Inbound,
            connector: &n.out_inbound,
            enabled: true,
        },
    );
    if p.certificate_name.is_none() {
        return;
    }
    o.comment("5b. Protect Outgoing: tenant -> Internet.");
    protect(
        o,
        p,
        ips,
        priorities,
        Protect {
            name: &n.protect_outgoing,
            from: "InOrganization",
            to: "NotInOrganization",
            direction: Direction::Outgoing,
            connector: &n.out_sent,
            enabled: true,
        },
    );
    o.comment(&format!(
        "5c. Protect Internal: tenant -> tenant. Created DISABLED: internal mail would then leave Exchange \
         Online and come back through '{}', adding latency to every internal message on the least \
         documented path (Avanan offers it as an option, §6.1). Enable it in the Exchange admin center \
         (Mail flow, Rules) once sent mail flows through the gateway.",
        n.in_relay
    ));
    protect(
        o,
        p,
        ips,
        priorities,
        Protect {
            name: &n.protect_internal,
            from: "InOrganization",
            to: "InOrganization",
            direction: Direction::Internal,
            connector: &n.out_sent,
            enabled: false,
        },
    );
}

fn protect(o: &mut Out, p: &Plan, ips: &[String], priorities: &mut Priorities, r: Protect<'_>) {
    let mut args = vec![
        ("Name", Arg::Str(r.name.to_string())),
        ("Priority", priorities.next()),
        ("FromScope", Arg::Word(r.from)),
        ("SentToScope", Arg::Word(r.to)),
        ("ExceptIfSenderIpRanges", Arg::Quoted(ps_array(ips))),
        ("SetHeaderName", Arg::Str("X-CLOUD-SEC-AV-Info".into())),
        (
            "SetHeaderValue",
            Arg::Str(format!("{},office365_emails,{}", p.portal, r.direction.info_value())),
        ),
        ("RouteMessageOutboundConnector", Arg::Str(r.connector.to_string())),
        ("StopRuleProcessing", bool_word(true)),
    ];
    if !r.enabled {
        args.push(("Enabled", bool_word(false)));
    }
    o.command("New-TransportRule", &args);
    o.blank();
}

/// 5d: mail the gateway judged junk goes to the Junk folder.
fn junk_rule(o: &mut Out, n: &Names, ips: &[String], priorities: &mut Priorities) {
    o.comment(
        "5d. Junk Filter: mail the gateway judged junk (X-CLOUD-SEC-AV-SCL: true) goes to the Junk folder. \
         SCL 9 asks for a high-confidence spam verdict (§2.4), as in Avanan's spam workflow; Avanan's own \
         rule was not fully documented (UNCERTAIN, §5). Only mail from a gateway address counts, and the \
         gateway removes any X-CLOUD-SEC-AV-SCL that arrives with a message before stamping its own. \
         -SentToScope InOrganization (here and in 5e) is an addition to the template in §5: the SCL \
         only decides delivery to the tenant's own mailboxes, and mail leaving the organisation should not \
         get the bypass of 5e.",
    );
    o.command(
        "New-TransportRule",
        &[
            ("Name", Arg::Str(n.junk.clone())),
            ("Priority", priorities.next()),
            ("SenderIpRanges", Arg::Quoted(ps_array(ips))),
            ("SentToScope", Arg::Word("InOrganization")),
            ("HeaderMatchesMessageHeader", Arg::Str("X-CLOUD-SEC-AV-SCL".into())),
            ("HeaderMatchesPatterns", Arg::Str("true".into())),
            ("SetSCL", Arg::Word("9")),
        ],
    );
    o.blank();
}

/// 5e: other mail back from the gateway skips Exchange Online's spam filter
/// (disabled in detect mode, where nothing would take its place).
fn whitelist_rule(o: &mut Out, p: &Plan, n: &Names, ips: &[String], priorities: &mut Priorities) {
    let detect = p.mode == TenantMode::Detect;
    o.comment(
        "5e. Whitelist: all other mail coming back from the gateway skips Exchange Online's spam filter \
         (SCL -1). Without it Exchange Online would filter the message again as if the gateway had sent \
         it, and SPF of the original sender fails from the gateway's address: Enhanced Filtering cannot \
         look past the gateway in this layout, where the hop before it is Exchange Online itself (§2.4).",
    );
    if detect {
        o.comment(
            "    Detect mode: created DISABLED. The gateway delivers everything and never stamps \
             X-CLOUD-SEC-AV-SCL: true, so this rule would switch Exchange Online's spam filtering off for \
             all mail with nothing in its place. While it is disabled, watch the Junk folders for \
             legitimate mail (the SPF effect above); enable it when the tenant goes inline.",
        );
    }
    o.command(
        "New-TransportRule",
        &[
            ("Name", Arg::Str(n.whitelist.clone())),
            ("Priority", priorities.next()),
            ("SenderIpRanges", Arg::Quoted(ps_array(ips))),
            ("SentToScope", Arg::Word("InOrganization")),
            (
                "ExceptIfHeaderMatchesMessageHeader",
                Arg::Str("X-CLOUD-SEC-AV-SCL".into()),
            ),
            ("ExceptIfHeaderMatchesPatterns", Arg::Str("true".into())),
            ("SetSCL", Arg::Word("-1")),
            ("Enabled", bool_word(!detect)),
        ],
    );
    o.blank();
}
