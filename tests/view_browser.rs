//! The links the checks see are the links a browser sees. Each document below
//! hides links the way phishing mail does (named references such as
//! `&period;`, `&sol;`, `&colon;`, `&NewLine;`; numeric ones without `;`; a
//! `<base href>` anywhere in the document; unquoted, duplicated and
//! slash-separated attributes; raw-text elements; nested anchors …). Headless
//! Chromium parses them with `DOMParser` (an HTML parser with scripting
//! disabled, as in a mail client) and lists every anchor's `href` and shown
//! text, every image's `src` and every form's `action`, resolved as the
//! browser resolves them; the message's view must list exactly the same web
//! links. Chromium is installed by `scripts/test.sh` (Debian `chromium`).

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exogate::scan::view::{LinkKind, View};
use mail_parser::MessageParser;

const DOCUMENTS: &[&str] = &[
    // A base in the head resolves every relative link.
    r#"<html><head><base href="https://base.example/dir/"><title>Invoice</title></head><body>
<a href="ht&NewLine;tps&colon;&sol;&sol;evil&period;example&sol;login">Microsoft&nbsp;365</a>
<a href="&#104&#116&#116&#112&#115&#58//numeric.example/a">numeric without semicolons</a>
<a href="&#x68;ttps&#x3A;//hex.example/">hex</a>
<a href=/relative/path?x=1&amp;y=2>root-relative</a>
<a href="login.php">relative to the base</a>
<a href="https:no-slashes.example">scheme without slashes</a>
<a href='https://x.example/?a=1&copy=2&not=3'>legacy &copy; reference</a>
<a href=https://unquoted.example/a/b title=x>unquoted</a>
<a/href="https://slash.example/">slash before the attribute</a>
<a href="https://dup.example/" href="https://second-attr.example/">duplicate attribute</a>
<!-- <a href="https://comment.example/">in a comment</a> -->
<a href="https://a.example/"><b>nested</b> <span>te</span>xt</a>
<a href="https://first.example/">first<a href="https://second-anchor.example/">second</a>
<noscript><a href="https://noscript.example/">in noscript</a></noscript>
<textarea><a href="https://textarea.example/">in a text area</a></textarea>
<script>document.write('<a href="https://script.example/">')</script>
<style>a { color: red }</style>
<img src="https://img.example/p.png"><img src=pixel.gif>
<form action="https://harvest.example/post"><input type=password name=p></form>
<a href="java&#x09;script:alert(1)">not a web link</a>
<a href="https:\\backslash.example\x">backslashes</a>
<a href="  https://spaces.example/  ">spaces around</a>
<a href="https://&#xFF25;&#xFF38;&#xFF21;&#xFF2D;&#xFF30;&#xFF2C;&#xFF25;.com/">full-width letters</a>
<a href="https://münchen.de/">IDN</a>
<a href="http://0x7f.1/">hex IPv4</a>
<A HREF="HTTPS://UPPER.EXAMPLE/Path">upper case</A>
<a href="https://tab.example/&Tab;x">tab in the path</a>
</body></html>"#,
    // A base written after the links still resolves them; only the first counts.
    r#"<p><a href="/reset-password">Reset your password</a>
<form action="collect.php"></form>
<base href="https://late-base.example/x/"><base href="https://ignored.example/">
<a href="//protocol-relative.example/p">protocol-relative</a></p>"#,
    // Broken markup: an unclosed attribute quote, a stray "<", an unclosed anchor.
    r#"<div>1 < 2 <a href='https://open.example/'>unclosed <b>anchor
<table><tr><td><a href="https://cell.example/">cell</a></td></tr></table>"#,
];

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// `(kind, url, shown text)` for the web links of each document, as Chromium sees them.
fn browser_links(browser: &str) -> Vec<BTreeSet<(String, String, Option<String>)>> {
    let dir = tempfile::tempdir().unwrap();
    let data = serde_json::to_string(DOCUMENTS).unwrap().replace('<', "\\u003c");
    let harness = format!(
        r#"<!doctype html><html><body><pre id="out"></pre><script>
const docs = {data};
const HIDDEN = new Set(["SCRIPT", "STYLE", "TEMPLATE", "TITLE", "IFRAME", "NOEMBED", "NOFRAMES"]);
function shown(node) {{
  let s = "";
  for (const c of node.childNodes) {{
    if (c.nodeType === 3) s += c.data;
    else if (c.nodeType === 1 && !HIDDEN.has(c.tagName.toUpperCase())) s += shown(c);
  }}
  return s;
}}
const html = "http://www.w3.org/1999/xhtml";
const out = docs.map(source => {{
  const d = new DOMParser().parseFromString(source, "text/html");
  const links = [];
  for (const a of d.querySelectorAll("a[href]")) {{
    if (a.namespaceURI === html) links.push(["anchor", a.href, shown(a).split(/\s+/).filter(Boolean).join(" ")]);
  }}
  for (const i of d.querySelectorAll("img[src]")) links.push(["resource", i.src, null]);
  for (const f of d.querySelectorAll("form[action]")) links.push(["form", f.action, null]);
  return links.filter(l => /^https?:/i.test(l[1]));
}});
document.getElementById("out").textContent = encodeURIComponent(JSON.stringify(out));
</script></body></html>"#
    );
    let page = dir.path().join("harness.html");
    std::fs::write(&page, harness).unwrap();
    let profile = dir.path().join("profile");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut dom = String::new();
    child.stdout.take().unwrap().read_to_string(&mut dom).unwrap();
    let mut errors = String::new();
    child.stderr.take().unwrap().read_to_string(&mut errors).unwrap();
    let start = dom
        .find("<pre id=\"out\">")
        .unwrap_or_else(|| panic!("no output in\n{dom}\n{errors}"))
        + 14;
    let end = start + dom[start..].find("</pre>").expect("output ends");
    let json = percent_decode(&dom[start..end]);
    let parsed: Vec<Vec<(String, String, Option<String>)>> =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    parsed.into_iter().map(|links| links.into_iter().collect()).collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The same for the view of a message whose body is the document.
fn view_links(document: &str) -> BTreeSet<(String, String, Option<String>)> {
    let raw = format!("From: a@example.org\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{document}");
    let message = MessageParser::default().parse(raw.as_bytes()).expect("parses");
    let view = View::new(&message, false);
    view.links
        .iter()
        .filter_map(|l| {
            let kind = match l.kind {
                LinkKind::Anchor => "anchor",
                LinkKind::Resource => "resource",
                LinkKind::Form => "form",
                LinkKind::Refresh | LinkKind::Text => return None,
            };
            let web = l.url.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("http:"))
                || l.url.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("https:"));
            web.then(|| (kind.to_string(), l.url.clone(), l.text.clone()))
        })
        .collect()
}

#[test]
fn the_view_lists_the_links_a_browser_sees() {
    let browser = chromium().expect("chromium is installed (scripts/test.sh installs it)");
    let seen = browser_links(browser);
    assert_eq!(seen.len(), DOCUMENTS.len());
    for (i, (document, browser)) in DOCUMENTS.iter().zip(&seen).enumerate() {
        // The test means something only if the tricks are really there.
        assert!(browser.len() >= 2, "document {i}: chromium saw {browser:#?}");
        let ours = view_links(document);
        let only_browser: Vec<_> = browser.difference(&ours).collect();
        let only_view: Vec<_> = ours.difference(browser).collect();
        assert!(
            only_browser.is_empty() && only_view.is_empty(),
            "document {i}:\nonly chromium: {only_browser:#?}\nonly the view: {only_view:#?}"
        );
    }
    // The hidden ones in particular.
    let first = &seen[0];
    for url in [
        "https://evil.example/login",
        "https://numeric.example/a",
        "https://base.example/dir/login.php",
        "https://xn--mnchen-3ya.de/",
        "http://127.0.0.1/",
    ] {
        assert!(first.iter().any(|(_, u, _)| u == url), "{url} missing from {first:#?}");
    }
}
