//! The text of the exo-setup script, from a checked [`Plan`].
//!
//! Owns the wording and the order of the steps. Config values enter only
//! through [`ps_quote`]/[`ps_array`] (single-quoted literals) or, in comments,
//! after `plan` has checked they hold no control character; everything else
//! written here is a fixed word (enum values, `$true`, numbers). The output is
//! deterministic (no date, no path) so it can be compared with a golden file.
//! Comment text is written one paragraph per line and wrapped here.

use std::fmt::Write as _;

use super::names::Names;
use super::rules::rules;
use super::writer::{Arg, Out, RULE, bool_word};
use super::{Plan, ip_text, ps_array, ps_quote};
use crate::config::tenant::TenantMode;

pub(super) fn render(p: &Plan) -> String {
    let mut o = Out::default();
    let n = Names::new(&p.prefix);
    let does = if p.mode == TenantMode::Monitor {
        "It sets where undeliverable journal reports go and creates one journal rule."
    } else {
        "It only creates objects; it changes no existing connector or rule."
    };
    o.comment(&format!(
        "Exchange Online setup for the exogate tenant '{portal}' (mode: {mode}).\n\
         Written by `exogate exo-setup --tenant {portal}` from the gateway configuration. Review it, then \
         run it once in an Exchange Online PowerShell session (Connect-ExchangeOnline) as an Exchange \
         administrator of this tenant. {does} Sections (§) refer to docs/exchange-online.md in the \
         exogate distribution.\n\
         \n\
         Tenant domains: {domains}",
        portal = p.portal,
        mode = p.mode.as_str(),
        domains = p.domains.join(", ")
    ));
    if p.mode == TenantMode::Monitor {
        monitor(&mut o, p, &n);
    } else {
        inline(&mut o, p, &n);
    }
    o.0
}

fn prelude(o: &mut Out) {
    o.blank();
    o.comment(
        "Stop at the first error. The Exchange Online cmdlets run inside a module, which does not see this \
         script's $ErrorActionPreference; the default-parameter table makes every call stop on error instead.",
    );
    o.line("$ErrorActionPreference = 'Stop'");
    o.line("$PSDefaultParameterValues = @{ '*:ErrorAction' = 'Stop' }");
    o.blank();
}

fn monitor(o: &mut Out, p: &Plan, n: &Names) {
    let journal = p.journal_address.clone().unwrap_or_default();
    o.comment(&format!(
        "\n\
         Monitor mode: Exchange Online sends a journal report of every message to the gateway, which scans \
         the attached original and records the result; it never delivers anything. So no connector and no \
         routing rule is created: mail routed to the gateway for a monitor tenant would be accepted and \
         never delivered.\n\
         \n\
         Journal address: {journal} (tenant journal_address). Exchange Online delivers journal reports to \
         it like any Internet mail: the MX record of its domain must point at this gateway, which must \
         accept TLS on port 25 there.\n\
         \n\
         Re-running: Set-TransportConfig simply sets the value again, and New-JournalRule is expected to \
         fail on the existing name '{rule}' (UNCERTAIN: not verified in docs/exchange-online.md), which stops the script \
         before anything is duplicated.",
        rule = n.monitor
    ));
    o.comment(&format!(
        "\n\
         The gateway accepts exactly {journal} for this tenant; its domain does not need to be one of the \
         tenant's domains, and no other address there is accepted. Journal reports are recognised by their \
         X-MS-Journal-Report field; a report the gateway cannot read is kept (exogate reports list), never \
         refused, so Exchange Online does not give up on the journal address."
    ));
    prelude(o);
    o.line(RULE);
    let ndr = p.journal_ndr_address.clone();
    let ndr_note = if ndr.is_some() {
        "The address is the tenant's journal_ndr_address."
    } else {
        "The tenant has no journal_ndr_address, so the journal address itself is used: set \
         journal_ndr_address to a mailbox outside Exchange Online that someone reads if you prefer."
    };
    o.comment(&format!(
        "1. Where undeliverable journal reports go (§4.1). Exchange Online requires this address before a \
         journal rule can be created, and it must not be an Exchange Online mailbox. The setting is \
         organisation-wide and replaces any value set before. {ndr_note}"
    ));
    o.command(
        "Set-TransportConfig",
        &[(
            "JournalingReportNdrTo",
            Arg::Str(ndr.unwrap_or_else(|| journal.clone())),
        )],
    );
    o.blank();
    o.line(RULE);
    o.comment(
        "2. The journal rule (§4.1, §5): every message (Scope Global). New journal rules are disabled \
         unless -Enabled $true is given. If reports cannot be delivered for days, Microsoft contacts the \
         organisation and may then disable the rule (§4.1).",
    );
    o.command(
        "New-JournalRule",
        &[
            ("Name", Arg::Str(n.monitor.clone())),
            ("JournalEmailAddress", Arg::Str(journal)),
            ("Scope", Arg::Word("Global")),
            ("Enabled", bool_word(true)),
        ],
    );
}

fn inline(o: &mut Out, p: &Plan, n: &Names) {
    let ips: Vec<String> = p.ips.iter().map(ip_text).collect();
    let outgoing = p.certificate_name.is_some();

    let mut inputs = format!(
        "\n\
         Inputs from the gateway configuration:\n  \
           smart host, inbound mail      {}\n  \
           smart host, sent mail         {}\n  \
           certificate name (TlsDomain)  {}\n  \
           gateway public IPv4           {} ({})\n",
        p.smart_host,
        if outgoing {
            p.outgoing_smart_host.as_str()
        } else {
            "(not used: no certificate_name)"
        },
        p.tls_domain,
        ips.join(", "),
        p.ips_key
    );
    if let Some(c) = &p.certificate_name {
        let _ = writeln!(inputs, "  relay certificate name        {c} (tenant certificate_name)");
    }
    for v6 in &p.skipped_v6 {
        let _ = writeln!(
            inputs,
            "  left out: {v6} from {} (Exchange Online connectors take IPv4 only)",
            p.ips_key
        );
    }
    if p.journal_address.is_some() {
        inputs.push_str("  journal_address is set but only used for monitor tenants: no journal rule here.\n");
    }
    o.comment(&inputs);
    let sent = if outgoing {
        format!(
            "\n  Sent mail takes the same loop through '{}' and comes back through '{}', from where \
             Exchange Online relays it to the Internet.",
            n.out_sent, n.in_relay
        )
    } else {
        String::new()
    };
    let inbound = if outgoing {
        format!("'{}' and '{}'", n.in_partner, n.in_relay)
    } else {
        format!("'{}'", n.in_partner)
    };
    o.comment(&format!(
        "\n\
         How mail flows once this is in place (§1, §2.5):\n  \
         Internet -> Exchange Online -> rule '{protect}' -> connector '{out_in}' -> gateway (scans, stamps \
         X-CLOUD-SEC-AV-*) -> back into the tenant from a gateway address through '{in_p}' -> rules \
         '{junk}' and '{wl}' -> mailbox.{sent}\n\
         Mail coming back from a gateway address never matches a Protect rule again \
         (-ExceptIfSenderIpRanges): that is what prevents a loop. So the addresses above must be exactly \
         those Exchange Online sees the gateway connect from (behind NAT: the NAT address). With a wrong or \
         missing address each message circles until Exchange Online stops it after 20 hops (5.4.14 Hop \
         count exceeded, §1.6).\n\
         \n\
         Re-running: step 0 stops the script, before any change, when one of its outbound connectors or \
         transport rules already exists. To set up again, remove the objects named in step 0 and the \
         inbound connector(s) {inbound} (Exchange admin center, Mail flow), then run it again. The \
         cmdlets verified in docs/exchange-online.md §5 include none that lists inbound connectors, so they are not checked; the \
         outbound connectors are created first, so a run that stopped half way is still detected.",
        protect = n.protect,
        out_in = n.out_inbound,
        in_p = n.in_partner,
        junk = n.junk,
        wl = n.whitelist,
    ));
    if p.mode == TenantMode::Detect {
        o.comment(
            "\n\
             Detect mode: the gateway scans and stamps but delivers everything, and never stamps \
             X-CLOUD-SEC-AV-SCL: true. See step 5e for what that means for the Whitelist rule.",
        );
    }
    prelude(o);
    guard(o, n, outgoing);
    connectors(o, p, n, &ips);
    rules(o, p, n, &ips);
    checks(o, p, n);
}

fn guard(o: &mut Out, n: &Names, outgoing: bool) {
    let mut ours = vec![n.out_inbound.as_str()];
    if outgoing {
        ours.push(&n.out_sent);
    }
    ours.push(&n.protect);
    if outgoing {
        ours.push(&n.protect_outgoing);
        ours.push(&n.protect_internal);
    }
    ours.push(&n.junk);
    ours.push(&n.whitelist);

    o.line(RULE);
    o.comment("0. Refuse to run twice: stop, changing nothing, if any of these already exists.");
    o.line("$existing = @()");
    o.line("foreach ($c in @(Get-OutboundConnector)) { $existing += [string]$c.Name }");
    o.line("foreach ($r in @(Get-TransportRule)) { $existing += [string]$r.Name }");
    o.line("$ours = @(");
    let quoted: Vec<String> = ours.iter().map(|name| ps_quote(name)).collect();
    o.line(&format!("    {}", quoted.join(",\n    ")));
    o.line(")");
    o.line("foreach ($name in $ours) {");
    o.line("    if ($existing -contains $name) {");
    o.line(
        "        throw ('exogate: ''' + $name + ''' already exists; nothing was changed. \
         Remove the objects this script creates, then run it again.')",
    );
    o.line("    }");
    o.line("}");
    o.blank();
}

fn connectors(o: &mut Out, p: &Plan, n: &Names, ips: &[String]) {
    o.line(RULE);
    o.comment(&format!(
        "1. Connector Exchange Online -> gateway for mail from the Internet (§1.1, §5). Partner type. Used \
         only when the '{}' rule names it (IsTransportRuleScoped), never for ordinary MX routing. Exchange \
         Online connects to the smart host on port 25. DomainValidation: TLS is required, and the \
         gateway's certificate (tls.cert) must chain to a public CA, not be revoked, and have '{}' as \
         subject or SAN (TlsDomain).",
        n.protect, p.tls_domain
    ));
    outbound_connector(o, &n.out_inbound, "Partner", &p.smart_host, &p.tls_domain);
    o.blank();

    if p.certificate_name.is_some() {
        o.line(RULE);
        o.comment(&format!(
            "2. Connector Exchange Online -> gateway for sent and internal mail (§1.1, §5). OnPremises type \
             (\"your organization's email server\"), like Avanan's DLP connector; used only by the '{}' \
             and '{}' rules. Same TLS check as step 1.",
            n.protect_outgoing, n.protect_internal
        ));
        outbound_connector(o, &n.out_sent, "OnPremises", &p.outgoing_smart_host, &p.tls_domain);
        o.blank();
    }

    o.line(RULE);
    o.comment(
        "3. Connector gateway -> Exchange Online for scanned mail coming back (§2.2, §5). Partner type, TLS \
         required, the gateway identified by its public IPv4 addresses (Exchange Online takes IPv4 only, \
         /24 to /32).\n   \
         UNCERTAIN (§2.2): Microsoft documents -SenderIPAddresses as applying to a Partner connector only \
         when -RestrictDomainsToIPAddresses is $true; but $true with -SenderDomains * rejects all Internet \
         mail not sent from the gateway (the lockdown for an MX that points at a gateway, wrong here: the \
         MX stays on Exchange Online). These are the flags of the template in §5; Avanan documents \
         its connector only in admin-center terms. After setup, check in the message trace that mail from \
         the gateway arrives through this connector, and that mail sent from elsewhere without TLS is \
         still accepted.",
    );
    o.command(
        "New-InboundConnector",
        &[
            ("Name", Arg::Str(n.in_partner.clone())),
            ("ConnectorType", Arg::Word("Partner")),
            ("SenderDomains", Arg::Str("*".into())),
            ("SenderIPAddresses", Arg::Quoted(ps_array(ips))),
            ("RequireTls", bool_word(true)),
            ("RestrictDomainsToIPAddresses", bool_word(false)),
        ],
    );
    o.blank();

    o.line(RULE);
    let Some(cert) = &p.certificate_name else {
        o.comment(
            "Sent and internal mail: NOT set up (no Protect Outgoing or Protect Internal rule). Exchange \
             Online relays mail coming back from the gateway to outside recipients only through an \
             OnPremises inbound connector (§2.2), and matching the gateway there by an address that other \
             tenants share is what Microsoft's MC1226222 warns against. To scan sent mail, give the tenant \
             a relay certificate (tenant certificate_name, relay_cert, relay_key) and write this script \
             again.",
        );
        o.blank();
        return;
    };
    o.comment(&format!(
        "4. Connector gateway -> Exchange Online for sent mail to be relayed to the Internet (§2.2). \
         Exchange Online relays mail coming back from the gateway to outside recipients only through an \
         OnPremises connector that matches the connection; since November 2023 otherwise: 550 5.7.64 \
         TenantAttribution; Relay Access Denied. It is matched by the tenant's own client certificate, \
         which the gateway presents when it delivers this tenant's mail (tenant relay_cert), not by IP: \
         gateway addresses shared by several tenants are what Microsoft's MC1226222 warns against.\n   \
         BEFORE running: '{cert}' must be an accepted domain of this tenant (Microsoft 365 admin center, \
         Settings, Domains); docs/exchange-online.md verifies no cmdlet for that, so it is not done here.\n   \
         UNCERTAIN (§2.2): the parameter pages call -RequireTls and -RestrictDomainsToCertificate \
         Partner-only, while Microsoft's add-on guide uses them on exactly this OnPremises connector; the \
         guide's form is used. As the gateway presents this certificate on every delivery for the tenant, \
         returning inbound mail may be matched to this connector rather than to step 3 (Avanan's inbound \
         connector likewise becomes OnPremises once outgoing scanning is on, §2.2)."
    ));
    o.command(
        "New-InboundConnector",
        &[
            ("Name", Arg::Str(n.in_relay.clone())),
            ("ConnectorType", Arg::Word("OnPremises")),
            ("SenderDomains", Arg::Str("*".into())),
            ("RequireTls", bool_word(true)),
            ("RestrictDomainsToCertificate", bool_word(true)),
            ("TlsSenderCertificateName", Arg::Str(cert.clone())),
        ],
    );
    o.blank();
}

fn outbound_connector(o: &mut Out, name: &str, kind: &'static str, host: &str, tls_domain: &str) {
    o.command(
        "New-OutboundConnector",
        &[
            ("Name", Arg::Str(name.to_string())),
            ("ConnectorType", Arg::Word(kind)),
            ("UseMXRecord", bool_word(false)),
            ("SmartHosts", Arg::Quoted(ps_array(&[host]))),
            ("TlsSettings", Arg::Word("DomainValidation")),
            ("TlsDomain", Arg::Str(tls_domain.to_string())),
            ("IsTransportRuleScoped", bool_word(true)),
            ("Enabled", bool_word(true)),
        ],
    );
}

/// A Protect rule: stamp the Info header, route to the gateway, stop.
fn checks(o: &mut Out, p: &Plan, n: &Names) {
    let probe_domain = p.domains.first().map(String::as_str).unwrap_or("example.com");
    o.line(RULE);
    o.comment(
        "Not done here: Avanan also puts its addresses on the connection-filter allow list (§5 step 6, \
         Set-HostedConnectionFilterPolicy -IPAllowList). The Whitelist rule already covers the gateway, \
         and that list is organisation-wide, so it is left to you.\n\
         \n\
         6. Check (§1.7): Exchange Online tests the smart host and sends a test message through it. Its \
         sender is empty, and the gateway accepts mail only for its tenants' domains, so use a mailbox of \
         this tenant as the recipient (UNCERTAIN: Microsoft's wizard asks for an address outside \
         Microsoft 365):",
    );
    o.comment_unwrapped(&format!(
        "     Validate-OutboundConnector -Identity {} -Recipients {}",
        ps_quote(&n.out_inbound),
        ps_quote(&format!("someone@{probe_domain}"))
    ));
    o.comment(
        "   Then send a message from outside to a tenant mailbox and look for X-CLOUD-SEC-AV-Info and the \
         gateway's Received line in its header.",
    );
}
