//! The process figures Prometheus' conventions name (`process_*`), read from
//! `/proc/self` at scrape time, and the free space of the state directory.
//!
//! Read, never cached: a scrape is rare and each figure is one small file.
//! Linux only (the gateway's platform); on a read failure the figure is left
//! out of the exposition rather than reported as 0.

use std::path::Path;

/// CPU seconds (user + system) since the process started.
pub(crate) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    (ticks > 0.0).then(|| (utime + stime) / ticks)
}

/// Resident set size in bytes.
pub(crate) fn resident_bytes() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as f64)
}

/// Open file descriptors.
pub(crate) fn open_fds() -> Option<f64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

/// The soft limit on open file descriptors.
pub(crate) fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// (bytes available to the daemon, total bytes) of the file system holding `dir`.
pub(crate) fn disk_space(dir: &Path) -> Option<(f64, f64)> {
    let st = rustix::fs::statvfs(dir).ok()?;
    let unit = st.f_frsize as f64;
    Some((st.f_bavail as f64 * unit, st.f_blocks as f64 * unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(cpu_seconds().is_some_and(|s| s >= 0.0));
        assert!(
            resident_bytes().is_some_and(|b| b > 1_000_000.0),
            "a test binary uses over 1 MB"
        );
        assert!(open_fds().is_some_and(|n| n >= 3.0));
        assert!(max_fds().is_some_and(|n| n >= 3.0));
        let (free, total) = disk_space(Path::new("/")).unwrap();
        assert!(total > 0.0 && free <= total);
    }
}
