//! `enigma bench engine` end to end, at a tiny size: every workload line
//! comes out, from one process and from interleaved child processes, and
//! the 4-writer group commit finishes when the writes do not divide evenly
//! among the writers.

use std::process::{Command, Output};

/// Runs `enigma bench engine` with a tiny workload and `extra` flags.
fn bench_engine(dir: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enigma"))
        .args(["bench", "engine", "--keys", "3000", "--reads", "500"])
        .args(["--scan-keys", "100", "--scans", "3", "--sync-writes", "103"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .output()
        .expect("run enigma")
}

/// Runs as [`bench_engine`], checks that it succeeded, and returns the
/// `(workload, figure)` pairs of its output's lines.
fn figures(dir: &std::path::Path, extra: &[&str]) -> Vec<(String, f64)> {
    let out = bench_engine(dir, extra);
    assert!(
        out.status.success(),
        "{extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|line| {
            let mut fields = line.split_whitespace();
            let workload = fields
                .next()
                .and_then(|field| field.strip_prefix("workload="))
                .unwrap_or_else(|| panic!("not a workload line: {line}"));
            let figure = fields
                .next()
                .and_then(|field| field.strip_prefix("enigma="))
                .and_then(|text| text.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no enigma figure: {line}"));
            (workload.to_owned(), figure)
        })
        .collect()
}

const ALL: [&str; 9] = [
    "fillseq",
    "fillrandom",
    "readrandom",
    "scan",
    "fillsync1",
    "fillsync4",
    "size",
    "fillrandom_rss",
    "readrandom_compacted",
];

#[test]
fn every_workload_reports_a_figure_in_one_process_and_in_interleaved_children() {
    let dir = tempfile::tempdir().unwrap();
    for extra in [&[][..], &["--runs", "2"][..]] {
        let got = figures(dir.path(), extra);
        let names: Vec<&str> = got.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ALL, "{extra:?}");
        for (name, figure) in &got {
            assert!(*figure > 0.0, "{extra:?}: {name}={figure}");
        }
    }
    // Every scratch database is gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn one_part_reports_only_its_workloads() {
    let dir = tempfile::tempdir().unwrap();
    for (part, want) in [
        ("fillsync4", &["fillsync4"][..]),
        (
            "fillrandom",
            &[
                "fillrandom",
                "readrandom",
                "scan",
                "size",
                "fillrandom_rss",
                "readrandom_compacted",
            ][..],
        ),
    ] {
        for runs in ["1", "2"] {
            let got = figures(dir.path(), &["--part", part, "--runs", runs]);
            let names: Vec<&str> = got.iter().map(|(name, _)| name.as_str()).collect();
            assert_eq!(names, want, "--part {part} --runs {runs}");
        }
    }
}
