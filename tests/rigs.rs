//! The real servers later tests rely on, each shown doing what those tests
//! need: Knot DNS answering long TXT records, MX/A/AAAA/CNAME/PTR and DNSBL
//! answers to an independent client (dnspython); a private PostgreSQL taking
//! queries in separate per-test databases; rspamd offline rejecting GTUBE and
//! scoring a plain message; HAProxy handing a listener the client's real
//! address in a PROXY v1/v2 header from a distinct source address.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use support::haproxy::{Haproxy, Proxy};
use support::knot::{self, Knot};
use support::postgres::Postgres;
use support::rspamd::{self, Rspamd};

/// Asks `server` with dnspython; prints one JSON object per query.
const DIG: &str = r#"
import json, sys, dns.message, dns.query, dns.rcode, dns.rdatatype
server, port = sys.argv[1], int(sys.argv[2])
out = []
for spec in sys.argv[3:]:
    proto, name, rtype = spec.split(":")
    q = dns.message.make_query(name, rtype)
    r = (dns.query.tcp if proto == "tcp" else dns.query.udp)(q, server, port=port, timeout=5)
    answers = []
    for rrset in r.answer:
        for rd in rrset:
            if rd.rdtype == dns.rdatatype.TXT:
                answers.append([s.decode() for s in rd.strings])
            else:
                answers.append(rd.to_text())
    out.append({"rcode": dns.rcode.to_text(r.rcode()), "aa": bool(r.flags & 0x400), "answers": answers})
print(json.dumps(out))
"#;

fn dig(knot: &Knot, queries: &[&str]) -> Vec<serde_json::Value> {
    let port = knot.port().to_string();
    let mut args = vec!["127.0.0.1", port.as_str()];
    args.extend_from_slice(queries);
    let out = support::python(DIG, &args);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array().unwrap().clone()
}

/// A DKIM-like record longer than one 255-octet string.
fn long_dkim_value() -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let key: String = (0..392).map(|i| alphabet[(i * 7 + i / 64) % 64] as char).collect();
    format!("v=DKIM1; k=rsa; p={key}")
}

#[test]
fn knot_answers_long_txt_records_mail_records_and_dnsbl_codes() {
    let dkim = long_dkim_value();
    assert!(dkim.len() > 255);
    let example = format!(
        "@ MX 10 mx.example.test.\n\
         @ TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\n\
         mx A 127.0.0.5\n\
         mx AAAA ::1\n\
         www CNAME mx\n\
         sel._domainkey TXT {}\n",
        knot::txt(&dkim)
    );
    let dnsbl = format!(
        "{} A 127.0.0.2\n{} A 127.255.255.254\n",
        knot::reversed(Ipv4Addr::new(127, 0, 0, 2)),
        knot::reversed(Ipv4Addr::new(127, 0, 0, 9))
    );
    let mut dns = Knot::start(&[
        ("example.test", &example),
        ("zen.test", &dnsbl),
        ("0.0.127.in-addr.arpa", "5 PTR mx.example.test.\n"),
    ]);

    let r = dig(
        &dns,
        &[
            "udp:sel._domainkey.example.test:TXT",
            "tcp:sel._domainkey.example.test:TXT",
            "udp:example.test:MX",
            "udp:mx.example.test:A",
            "udp:mx.example.test:AAAA",
            "udp:www.example.test:CNAME",
            "udp:5.0.0.127.in-addr.arpa:PTR",
            "udp:2.0.0.127.zen.test:A",
            "tcp:9.0.0.127.zen.test:A",
            "udp:3.0.0.127.zen.test:A",
        ],
    );
    for (i, transport) in [(0, "udp"), (1, "tcp")] {
        let strings: Vec<String> = serde_json::from_value(r[i]["answers"][0].clone()).unwrap();
        assert!(
            strings.len() >= 2,
            "{transport}: one long TXT comes as several strings: {strings:?}"
        );
        assert!(strings.iter().all(|s| s.len() <= 255));
        assert_eq!(strings.concat(), dkim, "{transport}: the strings join to the record");
        assert_eq!(r[i]["aa"], true);
    }
    assert_eq!(r[2]["answers"], serde_json::json!(["10 mx.example.test."]));
    assert_eq!(r[3]["answers"], serde_json::json!(["127.0.0.5"]));
    assert_eq!(r[4]["answers"], serde_json::json!(["::1"]));
    assert_eq!(r[5]["answers"], serde_json::json!(["mx.example.test."]));
    assert_eq!(r[6]["answers"], serde_json::json!(["mx.example.test."]));
    assert_eq!(r[7]["answers"], serde_json::json!(["127.0.0.2"]), "listed address");
    assert_eq!(
        r[8]["answers"],
        serde_json::json!(["127.255.255.254"]),
        "DNSBL error code"
    );
    assert_eq!(r[9]["rcode"], "NXDOMAIN", "unlisted address");

    // Replacing a zone and adding one take effect without a restart.
    dns.set_zone(
        "zen.test",
        &format!("{} A 127.0.0.4\n", knot::reversed(Ipv4Addr::new(127, 0, 0, 3))),
    );
    dns.set_zone("other.test", "@ TXT \"v=DMARC1; p=reject\"\n");
    let r = dig(
        &dns,
        &[
            "udp:3.0.0.127.zen.test:A",
            "udp:2.0.0.127.zen.test:A",
            "tcp:other.test:TXT",
        ],
    );
    assert_eq!(r[0]["answers"], serde_json::json!(["127.0.0.4"]));
    assert_eq!(r[1]["rcode"], "NXDOMAIN", "the old listing is gone");
    assert_eq!(r[2]["answers"], serde_json::json!([["v=DMARC1; p=reject"]]));
}

#[test]
fn postgres_takes_queries_in_separate_databases() {
    let pg = Postgres::shared();
    assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
    let version = pg.psql(&pg.url(), "SHOW server_version");
    assert!(version.starts_with("15."), "{version}");

    let a = pg.create_database("rigs a");
    let b = pg.create_database("rigs b");
    assert_ne!(a, b);
    pg.psql(
        &a,
        "CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t VALUES (1, 'één')",
    );
    assert_eq!(pg.psql(&a, "SELECT note FROM t WHERE id = 1").trim(), "één");
    assert_eq!(
        pg.psql(&b, "SELECT to_regclass('t') IS NULL").trim(),
        "t",
        "b does not see a's table"
    );
    assert!(std::ptr::eq(pg, Postgres::shared()), "one server per test binary");
}

#[test]
fn rspamd_rejects_gtube_and_scores_a_plain_message() {
    let r = Rspamd::shared();
    eprintln!(
        "rspamd started in {:?} (cache {})",
        r.startup(),
        rspamd::cache_dir().display()
    );
    let gtube = support::crlf(&format!(
        "From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: test\nMessage-ID: <g@example.org>\n\n{}\n",
        rspamd::GTUBE
    ));
    let v = r.check(&gtube);
    assert_eq!(v["action"], "reject", "{v}");
    assert!(v["symbols"].get("GTUBE").is_some(), "{v}");

    let plain = support::crlf(
        "From: Alice <alice@example.org>\nTo: Bob <bob@example.net>\nSubject: lunch\n\
         Date: Fri, 04 Dec 2026 12:00:00 +0000\nMessage-ID: <p@example.org>\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nShall we meet at noon?\n",
    );
    let v = r.check_with(
        &plain,
        &[
            ("IP", "127.0.0.1"),
            ("From", "alice@example.org"),
            ("Rcpt", "bob@example.net"),
        ],
    );
    assert_eq!(v["action"], "no action", "{v}");
    let symbols = v["symbols"].as_object().unwrap();
    assert!(
        symbols.contains_key("MIME_GOOD"),
        "rspamd analysed the MIME structure: {v}"
    );
    assert!(symbols.get("GTUBE").is_none());
}

/// A backend accepting one connection: (peer address, the bytes it received).
fn accept_one(listener: TcpListener) -> std::thread::JoinHandle<(SocketAddr, Vec<u8>)> {
    std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        (peer, got)
    })
}

#[test]
fn haproxy_sends_the_client_address_in_a_proxy_v2_header_from_its_own_source() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let seen = accept_one(backend);
    let proxy_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));
    let h = Haproxy::start_from(backend_addr, Proxy::V2, Some(proxy_ip));

    let mut client = TcpStream::connect(h.addr()).unwrap();
    let client_addr = client.local_addr().unwrap();
    client.write_all(b"EHLO client.test\r\n").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let (peer, got) = seen.join().unwrap();

    assert_eq!(peer.ip(), proxy_ip, "the backend sees HAProxy's source address");
    assert!(got.len() >= 16, "a PROXY v2 header is at least 16 bytes: {got:?}");
    assert_eq!(&got[..12], b"\r\n\r\n\0\r\nQUIT\n", "PROXY v2 signature: {got:?}");
    assert_eq!(got[12], 0x21, "version 2, PROXY command");
    assert_eq!(got[13], 0x11, "TCP over IPv4");
    let len = u16::from_be_bytes([got[14], got[15]]) as usize;
    let a = &got[16..16 + len];
    let src = SocketAddr::from((Ipv4Addr::new(a[0], a[1], a[2], a[3]), u16::from_be_bytes([a[8], a[9]])));
    let dst = SocketAddr::from((
        Ipv4Addr::new(a[4], a[5], a[6], a[7]),
        u16::from_be_bytes([a[10], a[11]]),
    ));
    assert_eq!(src, client_addr, "the real client address");
    assert_eq!(dst, h.addr(), "the address the client connected to");
    assert_eq!(
        &got[16 + len..],
        b"EHLO client.test\r\n",
        "the client's bytes follow unchanged"
    );
}

#[test]
fn haproxy_sends_a_proxy_v1_line() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let seen = accept_one(backend);
    let h = Haproxy::start(backend_addr, Proxy::V1);

    let mut client = TcpStream::connect(h.addr()).unwrap();
    let client_addr = client.local_addr().unwrap();
    client.write_all(b"QUIT\r\n").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let (_, got) = seen.join().unwrap();

    let mut lines = BufReader::new(&got[..]).lines();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        format!("PROXY TCP4 127.0.0.1 127.0.0.1 {} {}", client_addr.port(), h.port())
    );
    assert_eq!(lines.next().unwrap().unwrap(), "QUIT");
}
