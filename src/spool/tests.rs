//! The spool's commit, read, remove and recovery paths, on a real directory.

use super::*;
use crate::spool::incoming::{Body, IncomingBody};
use std::fs::OpenOptions;

/// The format tests' metadata under another id, without stamp skips.
pub(super) fn meta(id: &str) -> Meta {
    Meta {
        id: id.into(),
        skips: vec![],
        ..format::tests::meta()
    }
}

/// Commits `body`, held in memory, under `id`; says by which path.
pub(super) async fn commit_bytes(spool: &Spool, area: Area, id: &str, prefix: &[u8], body: &[u8]) -> Durable {
    spool
        .commit(area, &meta(id), prefix, Body::Memory(body.to_vec()))
        .await
        .unwrap()
}

#[tokio::test]
async fn commit_read_history_remove() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = new_id();
    commit_bytes(&spool, Area::Active, &id, b"H: 1\r\n", b"Subject: x\r\n\r\nhi\r\n").await;
    let stored = spool.read(Area::Active, &id).unwrap();
    assert_eq!(stored.body, b"Subject: x\r\n\r\nhi\r\n");
    assert_eq!(stored.trailer.prefix, b"H: 1\r\n");
    spool
        .append(
            Area::Active,
            &id,
            &StateEvent::Delivered {
                rcpt: 0,
                reply: "250 ok".into(),
            },
        )
        .unwrap();
    // A torn trailing line is ignored.
    let mut f = OpenOptions::new()
        .append(true)
        .open(spool.state_path(Area::Active, &id))
        .unwrap();
    f.write_all(b"0000dead {\"e\":\"deliv").unwrap();
    assert_eq!(spool.entry(Area::Active, &id).unwrap().events.len(), 1);
    assert_eq!(spool.list(Area::Active).unwrap(), vec![id.clone()]);
    spool.remove(Area::Active, &id).unwrap();
    assert!(spool.list(Area::Active).unwrap().is_empty());
}

#[tokio::test]
async fn spilled_bodies_keep_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = new_id();
    let mut body = IncomingBody::new(&spool.incoming, &id, 0);
    let mut expected = Vec::new();
    for i in 0..300u32 {
        let chunk = format!("line {i} {}\r\n", "x".repeat(1000));
        body.buf().extend_from_slice(chunk.as_bytes());
        expected.extend_from_slice(chunk.as_bytes());
        body.spill_if_needed().unwrap();
    }
    let body = body.finish().unwrap();
    assert!(matches!(body, Body::Spilled { .. }));
    assert_eq!(body.for_scan(u64::MAX).await.unwrap().as_ref(), &expected[..]);
    spool.commit(Area::Active, &meta(&id), b"", body).await.unwrap();
    assert_eq!(spool.read(Area::Active, &id).unwrap().body, expected);
    assert_eq!(spool.recover().unwrap().valid, vec![id]);
}

#[tokio::test]
async fn open_verified_streams_the_body_and_detects_damage() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = new_id();
    // Larger than the verification's read size, so the body comes in several chunks.
    let body: Vec<u8> = (0..700_000u32).map(|i| b"abcdefgh\r\n"[(i % 10) as usize]).collect();
    spool
        .commit(Area::Active, &meta(&id), b"H: 1\r\n", Body::Memory(body.clone()))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut chunks = 0;
    let queued = spool
        .open_verified(Area::Active, &id, &mut |trailer, offset, bytes| {
            assert_eq!(trailer.prefix, b"H: 1\r\n");
            assert_eq!(offset, seen.len() as u64, "in order, no gap");
            seen.extend_from_slice(bytes);
            chunks += 1;
        })
        .unwrap();
    assert_eq!(seen, body);
    assert!(chunks > 1);
    assert_eq!(queued.trailer.body_len, body.len() as u64);
    let mut from_file = vec![0u8; body.len()];
    std::os::unix::fs::FileExt::read_exact_at(&queued.file, &mut from_file, queued.body_start).unwrap();
    assert_eq!(from_file, body);

    // One flipped byte in the body: refused as damaged, like `read` does.
    let path = spool.path(Area::Active, &id);
    let mut file = fs::read(&path).unwrap();
    file[300_000] ^= 0x20;
    fs::write(&path, &file).unwrap();
    assert!(matches!(
        spool.open_verified(Area::Active, &id, &mut |_, _, _| {}),
        Err(SpoolError::Corrupt {
            error: FormatError::Checksum,
            ..
        })
    ));
}

#[tokio::test]
async fn recovery_moves_damaged_files_aside_and_drops_unacknowledged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let good = new_id();
    commit_bytes(&spool, Area::Active, &good, b"", b"A: b\r\n\r\nx\r\n").await;
    let torn = new_id();
    let full = format::encode_all(b"A: b\r\n\r\nbody\r\n", &meta(&torn), b"");
    fs::write(spool.path(Area::Active, &torn), &full[..full.len() - 10]).unwrap();
    fs::write(spool.incoming.join("PARTIAL"), b"EXOQ1").unwrap();
    fs::write(spool.dir(Area::Active).join("HALF.tmp"), b"EXOQ1").unwrap();
    let r = spool.recover().unwrap();
    assert_eq!(r.valid, vec![good]);
    assert_eq!(r.corrupt.len(), 1);
    assert_eq!(r.incomplete_removed, 2);
    assert!(!spool.dir(Area::Active).join("HALF.tmp").exists());
    assert_eq!(spool.corrupt_count(), 1);
    assert!(!spool.path(Area::Active, &torn).exists());
}

#[test]
fn ids_are_unique_and_ordered() {
    let a = new_id();
    let b = new_id();
    assert_ne!(a, b);
    assert!(valid_id(&a) && !valid_id("../etc") && !valid_id(""));
}
