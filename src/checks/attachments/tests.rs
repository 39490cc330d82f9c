use super::*;
use crate::pipeline::test_support::{build, scan};

#[test]
fn dump() {
    let check = build("attachments", "");
    for entry in std::fs::read_dir("tests/fixtures/attachments").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("eml") { continue; }
        let raw = std::fs::read(&path).unwrap();
        let f = scan(&*check, &raw, "a@b.example", Direction::Inbound);
        println!("== {}", path.display());
        for x in f { println!("   {} {} {:?} {}", x.tag, x.score, x.force, x.reason); }
    }
}
