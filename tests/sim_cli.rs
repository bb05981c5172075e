//! The `enigma sim` command as a user runs it: output lines and exit codes.

use std::process::{Command, Output};

fn enigma(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enigma"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("output is UTF-8")
}

#[test]
fn one_seed_prints_a_digest_that_replays_and_exits_zero() {
    for seed in ["3", "0x2a", "12345"] {
        let first = enigma(&["sim", "--seed", seed]);
        let second = enigma(&["sim", "--seed", seed]);
        assert_eq!(first.status.code(), Some(0), "{}", stdout(&first));
        let digest = |o: &Output| {
            stdout(o)
                .lines()
                .find(|l| l.starts_with("digest: "))
                .map(str::to_owned)
        };
        assert!(
            digest(&first).is_some(),
            "no digest line: {}",
            stdout(&first)
        );
        assert_eq!(
            digest(&first),
            digest(&second),
            "seed {seed} replayed differently"
        );
    }
}

#[test]
fn a_sweep_ends_with_the_pass_fail_line() {
    let output = enigma(&["sim", "--seeds", "4", "--start", "0x10"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output).lines().last(), Some("4 passed, 0 failed"));
    // Before it, the coverage mark table: a heading, a line per mark, the
    // marks never hit.
    let text = stdout(&output);
    let heading = text
        .lines()
        .position(|l| {
            l.starts_with("marks: ")
                && l.ends_with(" hit over 4 seeds (name, hits, seeds that hit it)")
        })
        .expect("a mark table");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[heading + 1]
        .trim_start()
        .starts_with("wal-torn-tail "));
    assert!(lines[lines.len() - 2].starts_with("never hit: "));
}

#[test]
fn hex_and_decimal_seeds_name_the_same_run() {
    let hex = stdout(&enigma(&["sim", "--seed", "0x10"]));
    let decimal = stdout(&enigma(&["sim", "--seed", "16"]));
    assert_eq!(hex, decimal);
}

#[test]
fn bad_arguments_exit_two_with_a_reason() {
    for args in [
        &["sim", "--seed", "1", "--nodes", "0"][..],
        &["sim", "--seed", "1", "--rf", "4"][..],
        &[
            "sim", "--seed", "1", "--level", "TWO", "--nodes", "1", "--rf", "1",
        ][..],
        &["sim", "--seed", "banana"][..],
        &["sim", "--seed", "1", "--level", "MOST"][..],
    ] {
        let output = enigma(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?} gave no reason");
    }
}

#[test]
fn flags_that_describe_one_run_are_refused_in_a_sweep() {
    for flag in [
        &["--trace"][..],
        &["--history"][..],
        &["--history-out", "unused.jsonl"][..],
        &["--html", "unused.html"][..],
    ] {
        let mut args = vec!["sim", "--seeds", "1"];
        args.extend_from_slice(flag);
        let output = enigma(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(flag[0]) && stderr.contains("--seed"),
            "{args:?}: {stderr}"
        );
        assert!(stdout(&output).is_empty(), "{args:?} ran a sweep");
    }
}

#[test]
fn the_history_file_reads_back_as_the_run_recorded_it() {
    let dir = std::env::temp_dir().join(format!("enigma-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.jsonl");
    let output = enigma(&[
        "sim",
        "--seed",
        "9",
        "--history-out",
        path.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = enigma_checker::format::enigma::parse(&text).expect("the sim writes a valid file");
    let report = enigma_sim::run(&enigma_sim::SimConfig {
        seed: 9,
        ..Default::default()
    });
    assert_eq!(text, report.history_json_lines());
    assert!(parsed.check(&Default::default()).is_linearizable());
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            r#"{"type":"run","clock_skew":false,"replication_factor":3,"session_timestamps":true,"commit_wait":false,"source":"enigma sim --seed 0x9"}"#
        )
    );
    assert!(lines.all(|l| l.contains("\"level\":\"QUORUM\"") || l.contains("\"level\":\"ALL\"")));
    // Every acknowledged write and every read that found a version reports
    // that version's timestamp; a read that found nothing has none to report.
    assert!(text
        .lines()
        .filter(|l| l.contains("\"type\":\"ok\"") && !l.contains("\"value\":null"))
        .all(|l| l.contains("\"timestamp\":")));
    assert!(text
        .lines()
        .any(|l| l.contains("\"type\":\"ok\"") && l.contains("\"timestamp\":")));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `enigma check` on the simulator's own history files: a QUORUM run is
/// held to linearizability, a skewed one to the weaker promises, and both
/// keep them.
#[test]
fn enigma_check_reads_simulator_histories_with_their_run_facts() {
    let dir = tempfile::tempdir().unwrap();
    // A seed whose swarm leaves clocks alone: skew then comes only from the
    // flag.
    let seed = (4..)
        .map(|s: u64| s.to_string())
        .find(|s| stdout(&enigma(&["sim", "--seed", s])).contains(" clock=off "))
        .expect("some seed draws no clock faults");
    // At ONE no read must meet an earlier write (the heal phase reads
    // nothing: the replicas converge on their own), so lost writes cannot
    // be judged.
    for (extra, verdict, linearizability, lost_write) in [
        (
            &[][..],
            "verdict: linearizable",
            "linearizability   passed",
            "lost-write        passed",
        ),
        (
            &["--clock-skew-max-ms", "100"][..],
            "verdict: promises-kept",
            "linearizability   not applicable",
            "lost-write        passed",
        ),
        (
            &["--level", "ONE"][..],
            "verdict: promises-kept",
            "linearizability   not applicable",
            "lost-write        not applicable",
        ),
    ] {
        let path = dir.path().join("history.jsonl");
        let mut args = vec![
            "sim",
            "--seed",
            seed.as_str(),
            "--history-out",
            path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let sim = enigma(&args);
        assert_eq!(sim.status.code(), Some(0), "{}", stdout(&sim));
        assert!(
            stdout(&sim).contains("checks: linearizability "),
            "{}",
            stdout(&sim)
        );
        let check = enigma(&["check", path.to_str().unwrap()]);
        let out = stdout(&check);
        assert_eq!(check.status.code(), Some(0), "{extra:?}: {out}");
        assert!(out.contains(verdict), "{extra:?}: {out}");
        assert!(out.contains(linearizability), "{extra:?}: {out}");
        assert!(out.contains(lost_write), "{extra:?}: {out}");
    }
}

#[test]
fn faults_can_be_switched_off_and_on() {
    let swarm = |args: &[&str]| {
        let output = enigma(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stdout(&output)
        );
        stdout(&output)
            .lines()
            .find(|l| l.starts_with("swarm: "))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let default = swarm(&["sim", "--seed", "5"]);
    let on = swarm(&["sim", "--seed", "5", "--faults", "on"]);
    let off = swarm(&["sim", "--seed", "5", "--faults", "off"]);
    assert_eq!(default, on, "faults are on unless switched off");
    assert!(off.starts_with("swarm: faults off "), "{off}");
    assert!(!off.contains("crashes="), "{off}");
    assert_ne!(on, off);
    let bad = enigma(&["sim", "--seed", "5", "--faults", "maybe"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_reader_that_goes_away_ends_the_run_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_enigma"))
        .args(["sim", "--seed", "1", "--trace"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut first = [0_u8; 64];
    child
        .stdout
        .take()
        .expect("piped")
        .read_exact(&mut first)
        .expect("the trace starts");
    // The reader is gone (dropped above), as with `| head -c 64`.
    let output = child.wait_with_output().expect("the run ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}
