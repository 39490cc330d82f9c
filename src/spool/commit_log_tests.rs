//! The commit log on its own: what a scan after a crash finds, the ring's
//! wrap and full cases, torn records and headers, concurrent appends.

use super::*;
use std::sync::Arc;

const CAP: u64 = 16 * PAGE;

fn open(dir: &Path) -> CommitLog {
    CommitLog::open(&dir.join("commit.log"), CAP, None).unwrap()
}

/// What a restart would find: the newest header and the records after its tail.
fn found(log: &CommitLog) -> Vec<(u8, String, Vec<u8>)> {
    let file = File::open(log.path()).unwrap();
    let h = read_header(&file).unwrap().unwrap();
    scan(&file, &h)
        .unwrap()
        .records
        .into_iter()
        .map(|r| (r.area, r.id, r.data))
        .collect()
}

fn found_ids(log: &CommitLog) -> Vec<String> {
    found(log).into_iter().map(|r| r.1).collect()
}

fn retire_all(log: &CommitLog) {
    if let Some(m) = log.checkpoint_mark() {
        log.retire(m).unwrap();
    }
}

#[test]
fn appended_records_are_found_in_order_until_retired() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(0, "A", &[b"EXOQ", b"one"]).unwrap();
    log.append(3, "B", &[b"two"]).unwrap();
    assert_eq!(
        found(&log),
        vec![(0, "A".into(), b"EXOQone".to_vec()), (3, "B".into(), b"two".to_vec())]
    );
    assert!(log.is_live("A") && log.is_live("B"));
    retire_all(&log);
    assert!(found(&log).is_empty(), "a retired record is not replayed");
    assert!(!log.is_live("A"));
    log.append(1, "C", &[b"three"]).unwrap();
    assert_eq!(found(&log), vec![(1, "C".into(), b"three".to_vec())]);
}

#[test]
fn records_wrap_around_the_ring_end_and_a_full_ring_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // 3 pages each: 5 fit in 16 pages, the 6th does not.
    let data = vec![7u8; 2 * PAGE as usize + 100];
    for i in 0..5 {
        log.append(0, &format!("M{i}"), &[&data]).unwrap();
    }
    assert_eq!(log.append(0, "M5", &[&data]), Err(Skipped::Full));
    assert_eq!(found(&log).len(), 5);
    retire_all(&log);
    // The next ones go to offset 0 (1 page is left at the end) and on.
    for i in 5..9 {
        log.append(0, &format!("M{i}"), &[&data]).unwrap();
    }
    assert_eq!(found_ids(&log), ["M5", "M6", "M7", "M8"]);
    assert!(found(&log).iter().all(|r| r.2 == data));
    // More than a quarter of the ring never goes to the log.
    assert_eq!(
        log.append(0, "BIG", &[&vec![0u8; CAP as usize / 4]]),
        Err(Skipped::TooLarge)
    );
}

#[test]
fn a_torn_record_is_skipped_and_a_reopened_log_forgets_the_old_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(0, "A", &[b"one"]).unwrap();
    log.append(0, "B", &[b"two"]).unwrap();
    log.append(0, "C", &[b"three"]).unwrap();
    // Damage B (as a write cut short would): it is skipped, and C, written
    // after it, is still found (each record stands on its own).
    let f = OpenOptions::new().write(true).open(log.path()).unwrap();
    f.write_all_at(b"X", RING_START + PAGE + 30).unwrap();
    assert_eq!(found_ids(&log), ["A", "C"]);
    drop(log);
    // Reopened without replay: the live record is refused, not forgotten.
    let path = dir.path().join("commit.log");
    assert!(CommitLog::open(&path, CAP, None).is_err());
    // Nor does a header other than the file's own pass for a replay's: the
    // file is read through and refused all the same.
    let current = read_header(&File::open(&path).unwrap()).unwrap().unwrap();
    let other = Header {
        generation: current.generation + 1,
        ..current
    };
    assert!(CommitLog::open(&path, CAP, Some(other)).is_err());
    // Once retired (as replay does), reopening starts a new random epoch:
    // the old records do not pass as this run's.
    let file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let s = scan(&file, &current).unwrap();
    write_header(&file, &current.retiring(s.next_seq)).unwrap();
    let log = open(dir.path());
    assert!(found(&log).is_empty());
    log.append(0, "D", &[b"four"]).unwrap();
    assert_eq!(found(&log), vec![(0, "D".into(), b"four".to_vec())]);
}

#[test]
fn a_torn_header_leaves_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(0, "A", &[b"one"]).unwrap();
    let before = read_header(&File::open(log.path()).unwrap()).unwrap().unwrap();
    retire_all(&log);
    let after = read_header(&File::open(log.path()).unwrap()).unwrap().unwrap();
    assert_eq!(after.generation, before.generation + 1);
    assert_ne!(after.slot(), before.slot());
    // The newer slot torn: the older header (with A live) is read again.
    let f = OpenOptions::new().write(true).open(log.path()).unwrap();
    f.write_all_at(b"garbage", after.slot() + 10).unwrap();
    assert_eq!(read_header(&File::open(log.path()).unwrap()).unwrap(), Some(before));
    assert_eq!(found(&log).len(), 1);
}

#[test]
fn an_older_mark_retires_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(0, "A", &[b"one"]).unwrap();
    let old = log.checkpoint_mark().unwrap();
    log.append(0, "B", &[b"two"]).unwrap();
    let new = log.checkpoint_mark().unwrap();
    log.retire(new).unwrap();
    let generation = read_header(&File::open(log.path()).unwrap())
        .unwrap()
        .unwrap()
        .generation;
    log.retire(old).unwrap();
    let again = read_header(&File::open(log.path()).unwrap())
        .unwrap()
        .unwrap()
        .generation;
    assert_eq!(generation, again, "no header written for an older mark");
}

#[test]
fn concurrent_appends_with_checkpoints_lose_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(CommitLog::open(&dir.path().join("commit.log"), 64 * PAGE, None).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let checkpointer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut retired = 0;
            while !stop.load(Ordering::Acquire) {
                if let Some(m) = log.checkpoint_mark() {
                    log.retire(m).unwrap();
                    retired += 1;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            retired
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..60 {
                    let id = format!("T{t}N{i}");
                    // A full ring waits for the checkpointer, as a commit
                    // would after taking the direct path.
                    loop {
                        match log.append(0, &id, &[id.as_bytes(), &vec![t as u8; 5000]]) {
                            Ok(()) => break,
                            Err(Skipped::Full) => std::thread::sleep(std::time::Duration::from_millis(1)),
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    acked.push(id);
                }
                acked
            })
        })
        .collect();
    let acked: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    stop.store(true, Ordering::Release);
    assert!(checkpointer.join().unwrap() > 0);
    assert_eq!(acked.len(), 480, "more than the ring holds, so it wrapped");
    // Every acknowledged record is either retired or found by a scan, whole.
    let on_disk = found(&log);
    for r in &on_disk {
        assert!(r.2.starts_with(r.1.as_bytes()) && r.2.len() == r.1.len() + 5000);
    }
    for id in &acked {
        assert_eq!(log.is_live(id), on_disk.iter().any(|r| &r.1 == id), "{id}");
    }
}

#[test]
fn a_record_reserved_before_but_never_written_holds_no_later_one_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(0, "A", &[b"one"]).unwrap();
    // A commit that reserved its place and stalled before writing it.
    {
        let mut st = log.lock();
        let (pos, seq) = (st.head, st.next_seq);
        st.next_seq += 1;
        st.head += PAGE;
        st.used += PAGE;
        st.live.push_back(Live {
            seq,
            pos,
            len: PAGE,
            written: false,
            id: "STALLED".into(),
        });
        st.live_ids.insert("STALLED".into(), 1);
    }
    // The next one is acknowledged without waiting for it, and found by a scan.
    log.append(0, "C", &[b"three"]).unwrap();
    assert_eq!(found_ids(&log), ["A", "C"]);
    // A checkpoint does not retire past the unwritten record.
    retire_all(&log);
    assert!(log.is_live("C") && log.is_live("STALLED") && !log.is_live("A"));
    assert_eq!(found_ids(&log), ["C"]);
}
