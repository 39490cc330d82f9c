//! Nested archive bombs (issue #10, item 3): expansion is accounted over the
//! whole archive tree, not per level. A 42.zip-style four-level zip (every
//! level small, every leaf 1 MiB, 10 GiB in all) is quarantined as an
//! `archive-bomb`; two benign deep archives pass: a real software
//! distribution (a crate's source, zipped by Info-ZIP) and a three-level zip
//! of small documents. Archives and messages are built at test time by
//! Python's `zipfile` and `email` packages and Info-ZIP's `zip`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::gateway::{Gateway, Options, config_text};
use support::pki::Pki;
use support::smtp::Client;

/// Builds the archives and one message for each; prints the archives' sizes.
const BUILD: &str = r#"
import io, json, os, sys, zipfile
from email.message import EmailMessage
out, distribution = sys.argv[1], sys.argv[2]

def zipped(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()

# 42.zip style: one 1 MiB leaf per innermost zip, 22 copies per level above.
bomb = zipped([("zeros.bin", bytes(1 << 20))])
for depth in range(2, 5):
    bomb = zipped([(f"level{depth}-{i:02}.zip", bomb) for i in range(22)])

# Three levels of small documents.
docs = lambda tag: [(f"{tag}-{i}.txt", (f"minutes of meeting {i} ({tag})\n" * 40).encode()) for i in range(6)] + \
                   [(f"{tag}-table.csv", ("a,b,c\n" + "1,2,3\n" * 200).encode())]
inner = zipped(docs("q3"))
middle = zipped(docs("q2") + [("q3.zip", inner)])
deep = zipped(docs("q1") + [("q2.zip", middle)])

dist = open(distribution, "rb").read()
sizes = {}
for name, data in [("bomb.zip", bomb), ("minutes.zip", deep), ("distribution.zip", dist)]:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "user@contoso.com"
    msg["Subject"] = name
    msg["Message-ID"] = f"<{name}@example.org>"
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg.set_content("see attachment")
    msg.add_attachment(data, maintype="application", subtype="zip", filename=name)
    open(os.path.join(out, name + ".eml"), "wb").write(msg.as_bytes())
    sizes[name] = len(data)
print(json.dumps(sizes))
"#;

/// The tokio crate's source, as cargo unpacked it: a real software
/// distribution present wherever this project builds.
fn crate_source() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let mut found = Vec::new();
    for index in std::fs::read_dir(home.join("registry/src")).unwrap().flatten() {
        for krate in std::fs::read_dir(index.path()).unwrap().flatten() {
            if krate.file_name().to_string_lossy().starts_with("tokio-1.") {
                found.push(krate.path());
            }
        }
    }
    found.sort();
    found.pop().expect("tokio's source in the cargo registry")
}

fn export(gw: &Gateway, area: &str, id: &str) -> String {
    let (code, out, err) = gw.cli(&[area, "export", id]);
    assert_eq!(code, 0, "{err}");
    out
}

fn verdict(message: &str) -> String {
    // Unfolded: up to the first line ending not followed by white space.
    let start = message.find("X-CLOUD-SEC-AV-Verdict:").expect("our verdict");
    let rest = &message[start..];
    let mut end = 0;
    while let Some(i) = rest[end..].find("\r\n") {
        end += i + 2;
        if !rest[end..].starts_with([' ', '\t']) {
            break;
        }
    }
    rest[..end].replace("\r\n", "")
}

#[test]
fn a_nested_bomb_is_flagged_and_deep_benign_archives_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let source = crate_source();
    let distribution = dir.path().join("distribution.zip");
    let status = std::process::Command::new("zip")
        .args(["-q", "-r", "-9"])
        .arg(&distribution)
        .arg(".")
        .current_dir(&source)
        .status()
        .expect("Info-ZIP zip (apt-get install zip)");
    assert!(status.success());
    let entries = walkdir_count(&source);
    assert!(entries > 400, "a distribution with many entries: {entries}");
    let sizes: serde_json::Value = serde_json::from_str(&support::python(
        BUILD,
        &[dir.path().to_str().unwrap(), distribution.to_str().unwrap()],
    ))
    .unwrap();
    assert!(sizes["bomb.zip"].as_u64().unwrap() < 32 * 1024, "{sizes}");

    let pki = Pki::new(&dir.path().join("pki"));
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    let opts = Options {
        deliver_to: vec![format!("127.0.0.1:{}", support::free_port())],
        retry: vec!["1h".into()],
        ..Options::default()
    };
    let gw_dir = dir.path().join("gw");
    std::fs::create_dir_all(&gw_dir).unwrap();
    let gw = Gateway::start_with_text(&gw_dir, &config_text(&gw_dir, &pki, &server, &opts));
    let mut c = Client::connect_tls(gw.smtp, &pki.ca, None);
    let mut ids = Vec::new();
    for name in ["bomb.zip", "minutes.zip", "distribution.zip"] {
        let msg = std::fs::read(dir.path().join(format!("{name}.eml"))).unwrap();
        let r = c.send_data("a@example.org", &["user@contoso.com"], &msg);
        assert_eq!(r.code, 250, "{name}: {r}");
        ids.push(r.text().rsplit(' ').next().unwrap().to_string());
    }

    // The bomb: quarantined as an archive bomb, naming the whole tree.
    let bomb = verdict(&export(&gw, "quarantine", &ids[0]));
    assert!(
        bomb.contains("action=quarantine") && bomb.contains("attachments:archive-bomb"),
        "{bomb}"
    );
    assert!(
        gw.wait_log("nested archives expand to", Duration::from_secs(5)),
        "{}",
        gw.log()
    );
    // The benign ones: delivered (queued), no finding about expansion.
    for (name, id) in [("minutes.zip", &ids[1]), ("distribution.zip", &ids[2])] {
        let v = verdict(&export(&gw, "queue", id));
        assert!(v.contains("action=deliver"), "{name}: {v}");
        assert!(!v.contains("archive-bomb") && !v.contains("unscannable"), "{name}: {v}");
    }
}

fn walkdir_count(dir: &Path) -> usize {
    let mut n = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}
