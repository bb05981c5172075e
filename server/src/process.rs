//! What the operating system says about this process and its data
//! directory, for `INFO` and the metrics endpoint: resident memory, CPU
//! time, open files (from Linux's `/proc`), and bytes on disk by kind.
//!
//! Every reading is best effort: on a system without `/proc`, or when a
//! file cannot be read, the value is absent and simply not reported.

use std::path::Path;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on
/// every Linux architecture this runs on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size, bytes.
    pub rss_bytes: Option<u64>,
    /// Peak resident set size, bytes.
    pub rss_peak_bytes: Option<u64>,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
}

/// User plus system time from the text of `/proc/self/stat`, seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces: count from its closing
    // parenthesis. utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_SECOND)
}

fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
}

impl ProcessStats {
    /// Reads this process's figures now.
    pub fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        Self {
            rss_bytes: status_kib(&status, "VmRSS:"),
            rss_peak_bytes: status_kib(&status, "VmHWM:"),
            cpu_seconds: cpu_seconds(&stat),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as u64),
            max_fds: max_open_files(&limits),
        }
    }
}

/// Bytes a node's data directory holds, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Write-ahead log segments (`wal-*.log`).
    pub wal_bytes: u64,
    /// Everything else: tables, the manifest, the generation file.
    pub data_bytes: u64,
}

impl DiskUsage {
    /// Sums the sizes of the files in `dir` (not below it: the engine keeps
    /// a flat directory).
    pub fn of(dir: &Path) -> Self {
        let mut usage = Self::default();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return usage;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("wal-") && name.ends_with(".log") {
                usage.wal_bytes += meta.len();
            } else {
                usage.data_bytes += meta.len();
            }
        }
        usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let status = "Name:\tenigma\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048 * 1024));
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0 100";
        assert_eq!(cpu_seconds(stat), Some(4.0));
        let limits = "Limit Soft Limit Hard Limit Units\nMax open files 1024 4096 files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn this_process_is_measured() {
        let stats = ProcessStats::read();
        assert!(stats.rss_bytes.unwrap() > 0);
        assert!(stats.open_fds.unwrap() > 0);
        assert!(stats.cpu_seconds.is_some());
    }

    #[test]
    fn disk_usage_tells_the_log_from_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wal-00000000000000000001.log"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("table-1.sst"), [0u8; 30]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(
            DiskUsage::of(dir.path()),
            DiskUsage {
                wal_bytes: 100,
                data_bytes: 30
            }
        );
    }
}
