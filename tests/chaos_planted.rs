//! The planted `QUORUM` acknowledgement bug in real node processes:
//! `enigma chaos` must report `not-linearizable`, as the simulator does.
//!
//! Built only with `--features planted-bugs` (see `Cargo.toml`; `.ci/run`
//! runs `cargo test --features planted-bugs --test chaos_planted`): only
//! such a build's `enigma node` reads `ENIGMA_PLANTED_ACK_QUORUM_AFTER_ONE`.
//! The bug shows when a coordinator is cut off from the other replicas
//! and still acknowledges a write, so the run partitions (root only).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

#[test]
fn quorum_writes_acknowledged_by_one_replica_are_caught_on_real_processes() {
    if !is_root() {
        eprintln!("skipped: partitions need root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = support::enigma()
        .args([
            "chaos",
            "--nodes",
            "3",
            "--duration",
            "30s",
            "--clients",
            "6",
        ])
        .args(["--keys", "3", "--faults", "partition", "--dir"])
        .arg(dir.path())
        .env("ENIGMA_PLANTED_ACK_QUORUM_AFTER_ONE", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("verdict: not-linearizable"), "{text}");
    assert!(text.contains("run folder kept:"), "{text}");
    // The failing run's folder holds what the summary promises.
    let run = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .expect("a run folder")
        .unwrap()
        .path();
    for file in [
        "history.jsonl",
        "n1.log",
        "nemesis.log",
        "verdict.txt",
        "report.html",
    ] {
        assert!(
            run.join(file).is_file(),
            "{file} missing in {}",
            run.display()
        );
    }
    // The node logs say the planted bug was on.
    let log = std::fs::read_to_string(run.join("n1.log")).unwrap();
    assert!(log.contains("planted bug on"), "{log}");
    // `enigma check` on the kept history agrees.
    let check = support::enigma()
        .arg("check")
        .arg(run.join("history.jsonl"))
        .output()
        .unwrap();
    let checked = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{checked}");
    assert!(checked.contains("verdict: not-linearizable"), "{checked}");
}
