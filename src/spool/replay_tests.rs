//! Replay after a simulated crash: queue files removed or damaged behind the
//! spool's back after their 250, as a power loss before a checkpoint would.

use super::*;
use crate::spool::Durable;
use crate::spool::tests::commit_bytes;
use std::sync::Arc;
use std::time::Duration;

/// A spool whose commit log is never checkpointed on its own.
fn spool_with_log(dir: &std::path::Path) -> Arc<Spool> {
    let spool = Arc::new(Spool::open(dir).unwrap());
    spool.start_commit_log(1 << 20, Duration::from_secs(3600)).unwrap();
    spool
}

/// Commits a message that must go to the log; returns its id.
async fn commit(spool: &Spool, area: Area, body: &str) -> String {
    let id = crate::spool::new_id();
    let durable = commit_bytes(spool, area, &id, b"X: 1\r\n", body.as_bytes()).await;
    assert_eq!(durable, Durable::Log);
    id
}

#[tokio::test]
async fn lost_and_damaged_files_come_back_removed_and_moved_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_with_log(dir.path());
    let lost = commit(&spool, Area::Active, "S: lost\r\n\r\n1\r\n").await;
    let emptied = commit(&spool, Area::Active, "S: emptied\r\n\r\n2\r\n").await;
    let kept = commit(&spool, Area::Active, "S: kept\r\n\r\n3\r\n").await;
    let delivered = commit(&spool, Area::Active, "S: delivered\r\n\r\n4\r\n").await;
    let held = commit(&spool, Area::Active, "S: held\r\n\r\n5\r\n").await;
    let quarantined = commit(&spool, Area::Quarantine, "S: q\r\n\r\n6\r\n").await;
    spool.remove(Area::Active, &delivered).unwrap();
    spool.move_to(Area::Active, Area::Hold, &held).unwrap();
    let kept_bytes = fs::read(spool.path(Area::Active, &kept)).unwrap();
    // The crash: the page cache of what no checkpoint synced is gone.
    fs::remove_file(spool.path(Area::Active, &lost)).unwrap();
    fs::write(spool.path(Area::Active, &emptied), b"").unwrap();
    fs::remove_file(spool.path(Area::Quarantine, &quarantined)).unwrap();
    drop(spool);

    let spool = Spool::open(dir.path()).unwrap();
    let r = spool.recover().unwrap();
    assert_eq!((r.log_records, r.restored), (6, 3));
    let mut expected = vec![lost.clone(), emptied.clone(), kept.clone()];
    expected.sort();
    assert_eq!(r.valid, expected);
    assert!(r.corrupt.is_empty());
    assert_eq!(spool.read(Area::Active, &lost).unwrap().body, b"S: lost\r\n\r\n1\r\n");
    assert_eq!(spool.read(Area::Active, &emptied).unwrap().trailer.prefix, b"X: 1\r\n");
    assert_eq!(fs::read(spool.path(Area::Active, &kept)).unwrap(), kept_bytes);
    assert!(
        !spool.path(Area::Active, &delivered).exists(),
        "a delivered message stays gone"
    );
    assert!(!spool.path(Area::Active, &held).exists() && spool.path(Area::Hold, &held).exists());
    assert_eq!(
        spool.read(Area::Quarantine, &quarantined).unwrap().body,
        b"S: q\r\n\r\n6\r\n"
    );
    assert_eq!(fs::read_dir(&spool.retired).unwrap().count(), 0, "markers cleared");

    // Replayed once: a second start finds nothing to do, even after a loss.
    fs::remove_file(spool.path(Area::Active, &lost)).unwrap();
    let r = spool.recover().unwrap();
    assert_eq!((r.log_records, r.restored), (0, 0));

    // The log a replay retired opens without being read through again, and
    // carries on: what is committed next comes back after the next crash.
    let spool = Arc::new(spool);
    spool.start_commit_log(1 << 20, Duration::from_secs(3600)).unwrap();
    let next = commit(&spool, Area::Active, "S: next\r\n\r\n7\r\n").await;
    fs::remove_file(spool.path(Area::Active, &next)).unwrap();
    drop(spool);
    let r = Spool::open(dir.path()).unwrap().recover().unwrap();
    assert_eq!((r.log_records, r.restored), (1, 1));
}

#[tokio::test]
async fn a_checkpoint_retires_records_and_their_markers() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_with_log(dir.path());
    let early = commit(&spool, Area::Active, "S: a\r\n\r\n1\r\n").await;
    let late = commit(&spool, Area::Active, "S: b\r\n\r\n2\r\n").await;
    spool.remove(Area::Active, &early).unwrap();
    assert!(spool.retired.join(&early).exists(), "removed while its record is live");
    spool.checkpoint().unwrap();
    assert!(!spool.retired.join(&early).exists(), "its record is retired");
    spool.remove(Area::Active, &late).unwrap();
    assert!(!spool.retired.join(&late).exists(), "no marker once retired");
    // Nothing is replayed after a checkpoint, whatever happens to the files.
    let third = commit(&spool, Area::Active, "S: c\r\n\r\n3\r\n").await;
    spool.checkpoint().unwrap();
    fs::remove_file(spool.path(Area::Active, &third)).unwrap();
    drop(spool);
    let r = Spool::open(dir.path()).unwrap().recover().unwrap();
    assert_eq!((r.log_records, r.restored), (0, 0));
}

#[tokio::test]
async fn a_spilled_body_and_a_spool_without_a_log_take_the_direct_path() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = crate::spool::new_id();
    let durable = commit_bytes(&spool, Area::Active, &id, b"", b"A: b\r\n\r\nx\r\n").await;
    assert_eq!(durable, Durable::Direct);
    assert!(!spool.commit_log_path().exists());
    // A command-line process (no log of its own) marks what it removes while a log exists.
    let logged = spool_with_log(&dir.path().join("other"));
    let id = commit(&logged, Area::Active, "S: x\r\n\r\n1\r\n").await;
    let cli = Spool::open(&dir.path().join("other")).unwrap();
    cli.remove(Area::Active, &id).unwrap();
    assert!(cli.retired.join(&id).exists());
}

#[test]
fn a_log_without_a_valid_header_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    fs::write(spool.commit_log_path(), vec![0u8; 64 * 1024]).unwrap();
    let r = spool.recover().unwrap();
    assert_eq!((r.log_records, r.restored), (0, 0));
    assert!(!spool.commit_log_path().exists());
}

#[tokio::test]
async fn a_broken_log_sends_commits_the_direct_path_and_keeps_its_records_for_replay() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_with_log(dir.path());
    let logged = commit(&spool, Area::Active, "S: logged\r\n\r\n1\r\n").await;
    let log = spool.log.get().unwrap();
    log.break_log("write", &std::io::Error::other("simulated device error"));
    let id = crate::spool::new_id();
    let durable = commit_bytes(&spool, Area::Active, &id, b"", b"A: b\r\n\r\nx\r\n").await;
    assert_eq!(durable, Durable::Direct);
    // A broken log is never checkpointed: its record stays for the next start.
    spool.checkpoint().unwrap();
    assert!(log.is_live(&logged));
    fs::remove_file(spool.path(Area::Active, &logged)).unwrap();
    drop(spool);
    let r = Spool::open(dir.path()).unwrap().recover().unwrap();
    assert_eq!((r.log_records, r.restored), (1, 1));
    assert!(r.valid.contains(&logged) && r.valid.contains(&id));
}
