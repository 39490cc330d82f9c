//! Where unsafe code may be: `src/lib.rs` denies it, and exactly one
//! statement allows it, the `sync_file_range(2)` call in
//! `src/spool/writeback.rs` (no safe wrapper exists; that file says why).
//! `deny` cannot stop a new `#[allow(unsafe_code)]` elsewhere the way
//! `forbid` did, so this test does: a failure lists each `file:line`.

use std::path::{Path, PathBuf};

const THE_ONE_PLACE: &str = "src/spool/writeback.rs";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn unsafe_code_is_allowed_once_and_only_in_the_write_out() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut allows = Vec::new();
    let mut misplaced = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let at = format!("{rel}:{}", n + 1);
            if code.contains("allow(unsafe_code)") {
                allows.push(at.clone());
            }
            if (code.contains("unsafe {") || code.contains("unsafe fn") || code.contains("unsafe impl"))
                && rel != THE_ONE_PLACE
            {
                misplaced.push(at);
            }
        }
    }
    assert_eq!(
        allows.len(),
        1,
        "allow(unsafe_code) must appear once, in {THE_ONE_PLACE}: {allows:?}"
    );
    assert!(
        allows[0].starts_with(THE_ONE_PLACE),
        "allow(unsafe_code) outside {THE_ONE_PLACE}: {allows:?}"
    );
    assert!(
        misplaced.is_empty(),
        "unsafe code outside {THE_ONE_PLACE}: {misplaced:?}"
    );
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    assert!(
        lib.contains("#![deny(unsafe_code)]"),
        "src/lib.rs must deny unsafe code"
    );
    let main = std::fs::read_to_string(root.join("src/main.rs")).unwrap();
    assert!(
        main.contains("#![forbid(unsafe_code)]"),
        "src/main.rs must forbid unsafe code"
    );
}
