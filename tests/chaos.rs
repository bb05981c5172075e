//! `enigma chaos` end to end: a short run of three real node processes
//! under kills, pauses, partitions (as root) and clock skew (with
//! libfaketime) must keep every promise of its level.

// Real processes need real deadlines, and helpers outside #[test] may unwrap.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use std::process::Output;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

fn chaos(dir: &std::path::Path, extra: &[&str]) -> (Output, String) {
    let output = support::enigma()
        .arg("chaos")
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .env_remove("ENIGMA_PLANTED_ACK_QUORUM_AFTER_ONE")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

/// The number on the summary line starting with `prefix`, before `word`.
fn count_before(text: &str, prefix: &str, word: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches(',') == word)
        .unwrap_or_else(|| panic!("no {word:?} in {line:?}"));
    words[at - 1].parse().unwrap()
}

#[test]
fn a_short_run_under_faults_keeps_every_promise() {
    let dir = tempfile::tempdir().unwrap();
    let (output, text) = chaos(
        dir.path(),
        &["--nodes", "3", "--duration", "30s", "--clients", "4"],
    );
    println!("{text}");
    assert!(output.status.success(), "the run failed:\n{text}");
    assert!(count_before(&text, "ops:", "ok") > 0, "{text}");
    assert!(count_before(&text, "faults:", "injected") > 0, "{text}");
    let nemesis = text.lines().find(|l| l.starts_with("nemesis:")).unwrap();
    assert!(
        nemesis.contains("kill") && nemesis.contains("pause"),
        "{nemesis}"
    );
    if is_root() {
        assert!(
            nemesis.contains("partition"),
            "root runs partitions: {nemesis}"
        );
        assert!(text.contains("partitions on"), "{text}");
    } else {
        assert!(text.contains("partitions off: not root"), "{text}");
    }
    // Skewed clocks promise less at QUORUM; straight ones, linearizability.
    let skewed = text.contains("clocks: skewed");
    let expected = if skewed {
        "verdict: promises-kept"
    } else {
        "verdict: linearizable"
    };
    assert!(text.contains(expected), "expected {expected}:\n{text}");
    let convergence = text
        .lines()
        .find(|l| l.trim_start().starts_with("convergence"))
        .unwrap_or_else(|| panic!("no convergence check in:\n{text}"));
    assert!(convergence.contains("passed"), "{convergence}");
    // A passing run leaves no folder behind, and no namespace.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    if is_root() {
        let namespaces = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&namespaces.stdout);
        let pid_tag = format!("enigma-chaos-{}-", output_tag(&text));
        assert!(!list.contains(&pid_tag), "namespaces left: {list}");
    }
}

/// The run's namespace tag, from its network line (`... ecb<tag> ...`).
fn output_tag(text: &str) -> String {
    text.lines()
        .find(|l| l.starts_with("network:"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("ecb")))
        .map_or_else(String::new, |w| w.trim_start_matches("ecb").to_owned())
}

#[test]
fn bad_arguments_exit_2_and_start_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--nodes", "0"][..],
        &["--nodes", "3", "--rf", "4"],
        &["--duration", "soon"],
        &["--clients", "0"],
    ] {
        let (output, text) = chaos(dir.path(), args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
