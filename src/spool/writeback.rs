//! Writing a file's data out before the directory fsync, so that one journal
//! commit (the batched directory fsync's) carries the block allocations and
//! new names of a whole batch of files, and each file's own `fdatasync`
//! afterwards has nothing left to commit. On ext4 an fsync of a directory
//! always forces a commit of the running transaction, while `fdatasync` of a
//! file whose blocks were allocated in an already committed transaction only
//! flushes the device's cache. Counted on the benchmark's ext4 image at
//! 598 msg/s: 1.26 journal commits per message with the file's fdatasync
//! first, 0.89 with this write-out first (benches/README.md, "Concurrency").
//!
//! Invariant: this is a performance hint, never the durability step. The
//! caller still fsyncs the directory and then the file. But its error is not
//! a hint: the kernel reports a writeback error once per open file, so an
//! error seen here would not be seen again by the `fdatasync` that follows,
//! and must fail the commit. Every error does, whatever its errno (a device
//! or a network file system can report EOPNOTSUPP or EINVAL for a failed
//! write); only ENOSYS, returned before anything is done, means "no such
//! call here".
//!
//! Why unsafe: `sync_file_range(2)` has no safe wrapper in rustix or nix;
//! the call takes a descriptor borrowed from a live `File` and no pointers.
//! This is the crate's only unsafe code.

use std::fs::File;
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;

/// Writes `file`'s dirty pages to the device and waits for them, without a
/// journal commit or a cache flush.
#[cfg(target_os = "linux")]
pub(super) fn write_out(file: &File) -> io::Result<()> {
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    #[allow(unsafe_code)]
    // SAFETY: the descriptor belongs to `file`, which outlives the call; the
    // call reads no memory of ours. Offset 0 and length 0 mean the whole file.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) };
    if rc == 0 {
        Ok(())
    } else {
        judged(io::Error::last_os_error())
    }
}

/// Elsewhere there is no such call; the caller's fsyncs do the whole work.
#[cfg(not(target_os = "linux"))]
pub(super) fn write_out(_file: &File) -> io::Result<()> {
    Ok(())
}

/// A failed write-out fails the commit, except a kernel without the call.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn judged(e: io::Error) -> io::Result<()> {
    if e.raw_os_error() == Some(libc::ENOSYS) {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_written_file_and_a_read_only_descriptor_are_written_out_without_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        f.write_all(&[7u8; 20_000]).unwrap();
        write_out(&f).unwrap();
        // A descriptor opened for reading has nothing dirty; still no error.
        write_out(&File::open(&path).unwrap()).unwrap();
    }

    /// The call's own error comes back (a pipe is no file: ESPIPE), so a
    /// commit whose write-out fails is not acknowledged.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_error_of_the_call_itself_is_returned() {
        let (_reader, writer) = io::pipe().unwrap();
        let pipe = File::from(std::os::fd::OwnedFd::from(writer));
        let e = write_out(&pipe).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESPIPE));
    }

    #[test]
    fn every_error_fails_the_commit_but_a_missing_call() {
        for errno in [libc::EIO, libc::ENOSPC, libc::EOPNOTSUPP, libc::EINVAL, libc::ESPIPE] {
            let e = judged(io::Error::from_raw_os_error(errno)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(errno));
        }
        judged(io::Error::from_raw_os_error(libc::ENOSYS)).unwrap();
    }
}
