use super::*;

fn errors(text: &str) -> Vec<String> {
    match Config::parse(text, Path::new("/nonexistent/gateway.toml")) {
        Ok(_) => vec![],
        Err(LoadError::Invalid { errors, .. }) => errors.iter().map(|e| e.to_string()).collect(),
        Err(e) => vec![e.to_string()],
    }
}

const MINIMAL: &str = r#"
[server]
hostname = "gw.example.net"
listen = ["127.0.0.1:2525"]
state_dir = "/tmp/x"
[tls]
generate = true
[[tenant]]
portal = "contoso"
domains = ["Contoso.com"]
deliver_to = ["contoso-com.mail.protection.outlook.com:25"]
"#;

#[test]
fn a_minimal_config_loads_with_defaults() {
    let c = Config::parse(MINIMAL, Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert_eq!(c.server.max_message_size, 157_286_400);
    assert_eq!(c.admission.allow.len(), 6);
    assert_eq!(c.tenants[0].domains, vec!["contoso.com"]);
    assert_eq!(c.delivery.mode, DeliveryMode::Queue);
    assert!(c.policies.contains_key("default"));
    assert_eq!(c.tls.cert, PathBuf::from("/tmp/x/tls/cert.pem"));
}

#[test]
fn three_mistakes_are_all_reported() {
    let text = MINIMAL.replace("max_recipients", "x")
        + "[delivery]\nmode = \"qeue\"\n[admission]\nallow = [\"10.0.0.0/33\"]\n[relay]\nhelo_name = \"x\"\n";
    let e = errors(&text);
    assert_eq!(
        e,
        vec![
            "admission.allow[0]: expected a CIDR such as \"40.92.0.0/15\", found \"10.0.0.0/33\"",
            "delivery.mode: must be one of \"queue\", \"proxy\", found \"qeue\"",
            "relay.helo_name: unknown key",
        ]
    );
}

#[test]
fn tenants_are_checked_for_conflicts_and_references() {
    let text = MINIMAL.to_string()
        + r#"
[[tenant]]
portal = "contoso"
domains = ["contoso.com", "bad domain"]
deliver_to = ["mx", "x:25"]
tenant_id = "not-a-guid"
policy = "strict"
"#;
    let e = errors(&text);
    assert!(
        e.contains(&"tenant[1].portal: \"contoso\" is already used by tenant[0]".to_string()),
        "{e:?}"
    );
    assert!(
        e.contains(&"tenant[1].domains: domain \"contoso.com\" already belongs to tenant \"contoso\"".to_string()),
        "{e:?}"
    );
    assert!(
        e.contains(&"tenant[1].domains: \"bad domain\" is not a domain name".to_string()),
        "{e:?}"
    );
    assert!(
        e.contains(&"tenant[1].deliver_to[0]: \"mx\" must be the only entry".to_string()),
        "{e:?}"
    );
    assert!(
        e.iter().any(|x| x.starts_with("tenant[1].tenant_id: expected a GUID")),
        "{e:?}"
    );
    assert!(
        e.contains(&"tenant[1].policy: no [policy.strict] is defined; defined: default".to_string()),
        "{e:?}"
    );
}

#[test]
fn missing_certificate_files_are_reported_unless_generated() {
    let text = MINIMAL.replace("generate = true", "cert = \"nope.pem\"\nkey = \"nope.key\"");
    let e = errors(&text);
    assert!(
        e.iter()
            .any(|x| x.starts_with("tls.cert: file /nonexistent/nope.pem does not exist")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|x| x.starts_with("tls.key: file /nonexistent/nope.key does not exist")),
        "{e:?}"
    );
}

#[test]
fn toml_syntax_errors_name_the_file() {
    let e = errors("[server\n");
    assert!(e[0].starts_with("/nonexistent/gateway.toml: invalid TOML"), "{e:?}");
}

#[test]
fn a_relay_certificate_needs_the_tenant_id_and_a_missing_id_is_warned_about() {
    let text = MINIMAL.to_string() + "relay_cert = \"r.pem\"\nrelay_key = \"r.key\"\n";
    let e = errors(&text);
    assert!(
        e.iter()
            .any(|e| e.starts_with("tenant[0].tenant_id: required when relay_cert is set")),
        "{e:?}"
    );
    let c = Config::parse(MINIMAL, Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert_eq!(c.warnings().len(), 1);
    assert!(
        c.warnings()[0].starts_with("tenant[0] (contoso): no tenant_id"),
        "{:?}",
        c.warnings()
    );
    let with_id = MINIMAL.to_string() + "tenant_id = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\n";
    let c = Config::parse(&with_id, Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert!(c.warnings().is_empty());
}

#[test]
fn a_memory_budget_below_one_mebibyte_is_refused() {
    let e = errors(&(MINIMAL.to_string() + "[delivery]\nmemory_budget = \"64KiB\"\n"));
    assert_eq!(e, vec!["delivery.memory_budget: must be at least 1MiB"]);
}

#[test]
fn the_log_queue_has_a_default_and_a_bounded_size() {
    let c = Config::parse(MINIMAL, Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert_eq!(c.log.queue_lines, 16_384);
    let c = Config::parse(
        &(MINIMAL.to_string() + "[log]\nqueue_lines = 100000\n"),
        Path::new("/etc/exogate/gateway.toml"),
    )
    .unwrap();
    assert_eq!(c.log.queue_lines, 100_000);
    let e = errors(&(MINIMAL.to_string() + "[log]\nqueue_lines = 10\n"));
    assert_eq!(e, vec!["log.queue_lines: must be between 64 and 262144, found 10"]);
}

#[test]
fn dns_servers_and_the_deprecated_relay_dns() {
    let c = Config::parse(MINIMAL, Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert!(c.dns.servers.is_empty(), "the system's resolver by default");
    assert_eq!(c.auth.trusted_arc_sealers, vec!["microsoft.com"]);
    assert!(c.warnings().iter().all(|w| !w.contains("relay.dns")));

    let text = format!("{MINIMAL}[dns]\nservers = [\"127.0.0.1:5353\", \"::1\"]\nmessage_lookups = 20\n");
    let c = Config::parse(&text, Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert_eq!(
        c.dns.servers,
        vec!["127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()]
    );
    assert_eq!(c.dns.message_lookups, 20);

    // The old spelling still works, with a warning.
    let text = format!("{MINIMAL}[relay]\ndns = [\"127.0.0.1:5353\"]\n");
    let c = Config::parse(&text, Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert_eq!(c.dns.servers, vec!["127.0.0.1:5353".parse().unwrap()]);
    assert!(
        c.warnings().iter().any(|w| w.contains("relay.dns is deprecated")),
        "{:?}",
        c.warnings()
    );

    // Both, disagreeing, and bad values: each named by its key.
    let text = format!(
        "{MINIMAL}[relay]\ndns = [\"127.0.0.1:5353\"]\n[dns]\nservers = [\"127.0.0.2\", \"dns.example\"]\ntimeout = \"0s\"\n\
         [auth]\ntrusted_arc_sealers = [\"microsoft\"]\n"
    );
    let e = errors(&text);
    assert!(
        e.iter()
            .any(|x| x.starts_with("relay.dns: deprecated spelling of dns.servers")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|x| x.starts_with("dns.servers[1]: expected a name server")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|x| x.starts_with("dns.timeout: must be longer than 0s")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|x| x.starts_with("auth.trusted_arc_sealers[0]: expected a domain")),
        "{e:?}"
    );
}

#[test]
fn source_ips_carry_their_own_helo_and_bad_entries_are_named() {
    let text = MINIMAL.to_string()
        + "[relay]\nsource_ips = [\"192.0.2.10\", { ip = \"192.0.2.11\", helo = \"out2.example.net\" }]\n";
    let c = Config::parse(&text, Path::new("/etc/exogate/gateway.toml")).unwrap();
    let (a, b): (IpAddr, IpAddr) = ("192.0.2.10".parse().unwrap(), "192.0.2.11".parse().unwrap());
    assert_eq!(c.relay.source_ips, vec![a, b]);
    assert_eq!(
        c.relay.source_helo.get(&b).map(String::as_str),
        Some("out2.example.net")
    );
    assert_eq!(c.relay.source_helo.get(&a), None);

    let bad = MINIMAL.to_string()
        + "[relay]\nsource_ips = [\"x\", { helo = \"a b\" }, { ip = \"192.0.2.1\", name = \"n\" }, 7]\n";
    assert_eq!(
        errors(&bad),
        vec![
            "relay.source_ips[0]: expected an IP address, found \"x\"",
            "relay.source_ips[1].helo: expected a host name (letters, digits, '-', '.')",
            "relay.source_ips[1].ip: missing: the egress address",
            "relay.source_ips[2].name: unknown key",
            "relay.source_ips[3]: expected an address or a table { ip = \"…\", helo = \"…\" }",
        ]
    );
}

#[test]
fn remediation_mistakes_name_their_keys_and_never_show_the_secret() {
    let text = MINIMAL.to_string()
        + "[tenant.remediation]\nmethod = \"graph\"\nclient_id = \"x\"\nclient_secret = \"s3cr3t-value\"\n\
           client_secret_file = \"/nonexistent\"\naction = \"purge\"\nsource_ip = \"192.0.2.200\"\n\
           token_base_url = \"http://login.example\"\non_verdicts = [\"explode\"]\n";
    let e = errors(&text);
    let all = e.join("\n");
    for key in [
        "tenant[0].remediation.tenant_id",
        "tenant[0].remediation.client_secret",
        "tenant[0].remediation.action",
        "tenant[0].remediation.source_ip",
        "tenant[0].remediation.token_base_url",
        "tenant[0].remediation.on_verdicts[0]",
    ] {
        assert!(all.contains(key), "{key} missing in:\n{all}");
    }
    assert!(!all.contains("s3cr3t-value"), "{all}");

    let ok = MINIMAL.replace(
        "portal = \"contoso\"",
        "portal = \"contoso\"\ntenant_id = \"4f1e7c52-93a8-4d26-b0e1-6c2a9d8b3f70\"",
    ) + "[tenant.remediation]\nmethod = \"ews\"\nclient_id = \"x\"\nclient_secret = \"s3cr3t-value\"\naction = \"delete\"\n";
    let c = Config::parse(&ok, Path::new("/etc/exogate/gateway.toml")).unwrap();
    let r = c.tenants[0].remediation.as_ref().unwrap();
    assert_eq!(
        r.tenant_id, "4f1e7c52-93a8-4d26-b0e1-6c2a9d8b3f70",
        "the tenant's own id by default"
    );
    assert_eq!(r.scope(), "https://outlook.office365.com/.default");
    assert!(!format!("{r:?}").contains("s3cr3t-value"), "Debug redacts the secret");
    let e = errors(&(ok.replace("action = \"delete\"", "action = \"delete\"\nfolder = \"inbox\"")));
    assert!(e.iter().any(|x| x.contains("tenant[0].remediation.folder")), "{e:?}");
}

#[test]
fn proxy_protocol_names_a_listener_and_its_proxies() {
    let text = MINIMAL.to_string()
        + "[[server.proxy_protocol]]\nlisten = \"127.0.0.1:2525\"\nfrom = [\"10.0.0.5\", \"10.1.0.0/16\"]\n";
    let c = Config::parse(&text, Path::new("/etc/exogate/gateway.toml")).unwrap();
    let listen: SocketAddr = "127.0.0.1:2525".parse().unwrap();
    let p = c.server.proxy_for(listen).expect("the listener takes PROXY headers");
    assert_eq!(
        p.from,
        vec!["10.0.0.5/32".parse::<IpNet>().unwrap(), "10.1.0.0/16".parse().unwrap()]
    );
    assert_eq!(p.timeout, Duration::from_secs(5));
    assert!(c.server.proxy_for("127.0.0.1:25".parse().unwrap()).is_none());

    let bad = MINIMAL.to_string()
        + "[[server.proxy_protocol]]\nlisten = \"127.0.0.1:25\"\nfrom = [\"proxy\"]\n\
           [[server.proxy_protocol]]\nlisten = \"127.0.0.1:2525\"\ntimeout = \"500ms\"\n";
    assert_eq!(
        errors(&bad),
        vec![
            "server.proxy_protocol[0].from[0]: expected a proxy's address or CIDR such as \"10.0.0.5\", found \"proxy\"",
            "server.proxy_protocol[0].listen: 127.0.0.1:25 is not one of server.listen or server.tls_listen",
            "server.proxy_protocol[1].from: missing: list the load balancers' addresses, e.g. [\"10.0.0.5\"]",
            "server.proxy_protocol[1].timeout: must be between 1s and 5m, found 500ms",
        ]
    );
}

/// An argon2id PHC string for `[[web.account]]`.
const WEB_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2S1PNXN8Bx0tXGBmG+hdJu6H2MK9H7PDOR5JJ2UZ7aE";

#[test]
fn web_no_section_no_listener_and_defaults_with_one() {
    let c = Config::parse(MINIMAL, Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert_eq!(c.web.listen, None);
    let text = format!(
        "{MINIMAL}[tenant.digest]\nenabled = true\n[web]\n[[web.account]]\nname = \"root\"\npassword_hash = \"{WEB_HASH}\"\nrole = \"admin\"\n\
         [[web.account]]\nname = \"alice\"\npassword_hash = \"{WEB_HASH}\"\nrole = \"tenant\"\ntenant = \"contoso\"\n"
    );
    let c = Config::parse(&text, Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert_eq!(c.web.listen, Some("127.0.0.1:8443".parse().unwrap()));
    assert!(!c.web.plaintext);
    assert_eq!(c.web.cert, c.tls.cert);
    assert_eq!(c.web.accounts[1].role, web::Role::Tenant("contoso".into()));
    let digest = c.tenants[0].digest.as_ref().unwrap();
    assert!(digest.enabled);
    assert_eq!(digest.hour, 7);
}

#[test]
fn web_and_digest_mistakes_name_their_keys() {
    let text = format!(
        "{MINIMAL}[tenant.digest]\nhour = 24\n[web]\nlisten = \"0.0.0.0:8443\"\nplaintext = true\n\
         [[web.account]]\nname = \"a\"\npassword_hash = \"plain\"\nrole = \"admin\"\n\
         [[web.account]]\nname = \"b\"\npassword_hash = \"{WEB_HASH}\"\nrole = \"tenant\"\ntenant = \"fabrikam\"\n\
         [[web.account]]\nname = \"c\"\npassword_hash = \"{WEB_HASH}\"\nrole = \"boss\"\n\
         [[web.account]]\nname = \"a\"\npassword_hash = \"{WEB_HASH}\"\nrole = \"admin\"\n"
    );
    let e = errors(&text);
    let has = |key: &str, words: &str| e.iter().any(|x| x.starts_with(key) && x.contains(words));
    assert!(has("tenant[0].digest.hour", "between 0 and 23"), "{e:?}");
    assert!(has("web.plaintext", "loopback"), "{e:?}");
    assert!(has("web.account[0].password_hash", "PHC"), "{e:?}");
    assert!(has("web.account[1].tenant", "fabrikam"), "{e:?}");
    assert!(has("web.account[2].role", "\"boss\""), "{e:?}");
    assert!(has("web.account[3].name", "already used"), "{e:?}");
}

#[test]
fn a_tenants_dsn_return_limit_is_a_size() {
    let c = Config::parse(MINIMAL, Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert_eq!(c.tenants[0].dsn.return_limit, 50_000, "Postfix's bounce_size_limit");
    let text = MINIMAL.to_string() + "[tenant.dsn]\nreturn_content = \"full\"\nreturn_limit = \"2MiB\"\n";
    let c = Config::parse(&text, Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert_eq!(c.tenants[0].dsn.return_limit, 2 << 20);
    let e = errors(&(MINIMAL.to_string() + "[tenant.dsn]\nreturn_limit = \"plenty\"\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("tenant[0].dsn.return_limit: "), "{e:?}");
}

#[test]
fn the_commit_log_has_defaults_can_be_turned_off_and_refuses_odd_sizes() {
    let c = Config::parse(MINIMAL, Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert_eq!(c.server.commit_log_size, 32 << 20);
    assert_eq!(c.server.commit_log_checkpoint, Duration::from_millis(250));
    let with = |extra: &str| MINIMAL.replace("state_dir = \"/tmp/x\"", &format!("state_dir = \"/tmp/x\"\n{extra}"));
    let c = Config::parse(&with("commit_log_size = 0"), Path::new("/etc/exogate/gateway.toml")).unwrap();
    assert_eq!(c.server.commit_log_size, 0);
    let c = Config::parse(
        &with("commit_log_size = \"256MiB\"\ncommit_log_checkpoint = \"1s\""),
        Path::new("/etc/exogate/gateway.toml"),
    )
    .unwrap();
    assert_eq!(c.server.commit_log_size, 256 << 20);
    assert_eq!(c.server.commit_log_checkpoint, Duration::from_secs(1));
    assert_eq!(
        errors(&with("commit_log_size = \"64KiB\"\ncommit_log_checkpoint = \"1ms\"")),
        vec![
            "server.commit_log_checkpoint: must be from 10ms to 1h, found 1ms",
            "server.commit_log_size: must be 0 (no commit log) or from 1 MiB to 4 GiB, found 65536 bytes",
        ]
    );
}
