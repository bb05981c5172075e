//! `enigma check --threads N`: searching keys on several threads prints the
//! same verdict and report as searching them one after the other.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn enigma_check(file: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enigma"))
        .arg("check")
        .arg(file)
        .args(extra)
        .output()
        .expect("run enigma")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Keys that read back something no order of their writes produces.
const BAD_KEYS: [usize; 3] = [5, 9, 13];

/// A kv history over 16 keys, each with two concurrent appends by two
/// processes and a read after both; the read of the keys in `BAD_KEYS`
/// returns only one of the appends, which both completed before it.
fn kv_history(dir: &Path) -> PathBuf {
    let mut lines = Vec::new();
    let mut event = |kind: &str, process: usize, key: &str, f: &str, value: &str, time: u64| {
        lines.push(format!(
            r#"{{"type":"{kind}","process":{process},"key":"{key}","f":"{f}","value":{value},"time":{time}}}"#
        ));
    };
    for k in 0..16 {
        let key = format!("key{k:02}");
        let t = 1_000 * k as u64;
        let p = 3 * k;
        event("invoke", p, &key, "append", r#""x""#, t);
        event("invoke", p + 1, &key, "append", r#""y""#, t + 5);
        event("ok", p, &key, "append", r#""x""#, t + 20);
        event("ok", p + 1, &key, "append", r#""y""#, t + 25);
        let read = if BAD_KEYS.contains(&k) {
            r#""y""#
        } else {
            r#""yx""#
        };
        event("invoke", p + 2, &key, "get", "null", t + 30);
        event("ok", p + 2, &key, "get", read, t + 40);
    }
    let path = dir.join("kv.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write test history");
    path
}

#[test]
fn one_and_four_threads_print_the_same_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = kv_history(dir.path());
    let one = enigma_check(&file, &["--threads", "1"]);
    let four = enigma_check(&file, &["--threads", "4"]);
    let default = enigma_check(&file, &[]);
    assert_eq!(one.status.code(), Some(1), "{}", text(&one));
    let report = String::from_utf8_lossy(&one.stdout);
    assert!(report.contains("verdict: not-linearizable"), "{report}");
    // The first bad key in key order, not whichever thread finished first.
    assert!(
        report.contains("key \"key05\" is not linearizable"),
        "{report}"
    );
    for other in [&four, &default] {
        assert_eq!(other.status.code(), one.status.code(), "{}", text(other));
        assert_eq!(other.stdout, one.stdout, "{}", text(other));
        assert_eq!(other.stderr, one.stderr);
    }
}

#[test]
fn zero_threads_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = kv_history(dir.path());
    let out = enigma_check(&file, &["--threads", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--threads must be at least 1"),
        "{}",
        text(&out)
    );
}
