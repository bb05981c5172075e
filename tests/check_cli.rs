//! `enigma check` end to end: the built binary on small history files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test history");
    path
}

fn enigma_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enigma"))
        .arg("check")
        .args(args)
        .output()
        .expect("run enigma")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const LINEARIZABLE: &str = r#"{"type":"invoke","process":0,"key":"a","f":"write","value":1,"time":10,"level":"QUORUM"}
{"type":"invoke","process":1,"key":"a","f":"read","value":null,"time":15}
{"type":"ok","process":0,"key":"a","f":"write","value":1,"time":20}
{"type":"ok","process":1,"key":"a","f":"read","value":1,"time":25}
"#;

/// Key "b" reads 1 after 2 was acknowledged; key "a" is fine.
const VIOLATING: &str = r#"{"type":"invoke","process":0,"key":"a","f":"write","value":1,"time":10}
{"type":"ok","process":0,"key":"a","f":"write","value":1,"time":20}
{"type":"invoke","process":1,"key":"b","f":"write","value":1,"time":30}
{"type":"ok","process":1,"key":"b","f":"write","value":1,"time":40}
{"type":"invoke","process":1,"key":"b","f":"cas","value":[1,2],"time":50}
{"type":"ok","process":1,"key":"b","f":"cas","value":[1,2],"time":60}
{"type":"invoke","process":2,"key":"b","f":"read","value":null,"time":70}
{"type":"ok","process":2,"key":"b","f":"read","value":1,"time":80}
"#;

#[test]
fn linearizable_history_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "ok.jsonl", LINEARIZABLE);
    let out = enigma_check(&[file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("verdict: linearizable"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn violation_exits_one_and_names_the_key_and_operation() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bad.jsonl", VIOLATING);
    let html = dir.path().join("bad.html");
    let out = enigma_check(&[file.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("verdict: not-linearizable"), "{text}");
    assert!(text.contains("key \"b\" is not linearizable"), "{text}");
    assert!(text.contains("#3 p2 b read [70..80] ok 1"), "{text}");
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.contains("key &quot;b&quot;"), "{page}");
    assert!(page.contains("#3 p2 b read [70..80] ok 1"), "{page}");
}

#[test]
fn model_flag_rejects_operations_the_model_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bad.jsonl", VIOLATING);
    let out = enigma_check(&[file.to_str().unwrap(), "--model", "register"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("compare-and-set"), "{}", stderr(&out));
    let out = enigma_check(&[file.to_str().unwrap(), "--model", "kv"]);
    assert_eq!(out.status.code(), Some(2));
    let out = enigma_check(&[file.to_str().unwrap(), "--model", "cas-register"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn jepsen_formats_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let log = write(
        dir.path(),
        "etcd.log",
        "INFO  jepsen.util - 0\t:invoke\t:write\t3\n\
         INFO  jepsen.util - 0\t:ok\t:write\t3\n\
         INFO  jepsen.util - 1\t:invoke\t:read\tnil\n\
         INFO  jepsen.util - 1\t:ok\t:read\t4\n",
    );
    let out = enigma_check(&[log.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("jepsen-log"), "{}", stdout(&out));
    let edn = write(
        dir.path(),
        "kv.edn",
        "{:process 0, :type :invoke, :f :append, :key \"0\", :value \"x\"}\n\
         {:process 0, :type :ok, :f :append, :key \"0\", :value \"x\"}\n\
         {:process 1, :type :invoke, :f :get, :key \"0\", :value nil}\n\
         {:process 1, :type :ok, :f :get, :key \"0\", :value \"x\"}\n",
    );
    let out = enigma_check(&[edn.to_str().unwrap(), "--format", "edn"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// The same failed compare-and-set in each format: the register holds 1
/// throughout, so the CAS of 1 can fail only if failing means it did not
/// take effect (Knossos's reading), not that it observed another value
/// (Porcupine's).
#[test]
fn a_failed_cas_is_read_as_its_format_means_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let edn = write(
        dir.path(),
        "cas.edn",
        "{:process 0, :type :invoke, :f :write, :value 1}\n\
         {:process 0, :type :ok, :f :write, :value 1}\n\
         {:process 1, :type :invoke, :f :cas, :value [1 2]}\n\
         {:process 1, :type :fail, :f :cas, :value [1 2]}\n\
         {:process 0, :type :invoke, :f :read, :value nil}\n\
         {:process 0, :type :ok, :f :read, :value 1}\n",
    );
    let log = write(
        dir.path(),
        "cas.log",
        "INFO  jepsen.util - 0 :invoke :write 1\n\
         INFO  jepsen.util - 0 :ok :write 1\n\
         INFO  jepsen.util - 1 :invoke :cas [1 2]\n\
         INFO  jepsen.util - 1 :fail :cas [1 2]\n\
         INFO  jepsen.util - 0 :invoke :read nil\n\
         INFO  jepsen.util - 0 :ok :read 1\n",
    );
    let json = write(
        dir.path(),
        "cas.jsonl",
        r#"{"type":"invoke","process":0,"key":"k","f":"write","value":1,"time":1}
{"type":"ok","process":0,"key":"k","f":"write","value":1,"time":2}
{"type":"invoke","process":1,"key":"k","f":"cas","value":[1,2],"time":3}
{"type":"fail","process":1,"key":"k","f":"cas","value":[1,2],"time":4}
{"type":"invoke","process":0,"key":"k","f":"read","value":null,"time":5}
{"type":"ok","process":0,"key":"k","f":"read","value":1,"time":6}
"#,
    );
    let verdict = |file: &Path, extra: &[&str]| {
        let mut args = vec![file.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = enigma_check(&args);
        (out.status.code(), stdout(&out))
    };
    for (file, default_code, default_reading) in [
        (&edn, 0, "knossos"),
        (&log, 1, "porcupine"),
        (&json, 1, "porcupine"),
    ] {
        let (code, text) = verdict(file, &[]);
        assert_eq!(code, Some(default_code), "{text}");
        assert!(
            text.contains(&format!("a failed cas read as {default_reading}'s")),
            "{text}"
        );
        let (code, text) = verdict(file, &["--fail-reading", "knossos"]);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("verdict: linearizable"), "{text}");
        let (code, text) = verdict(file, &["--fail-reading", "porcupine"]);
        assert_eq!(code, Some(1), "{text}");
        assert!(text.contains("refused"), "{text}");
    }
}

#[test]
fn garbage_exits_two_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "garbage.jsonl",
        "{\"type\":\"invoke\",\"process\":0,\"key\":\"a\",\"f\":\"read\",\"time\":1}\n{\"type\": oops}\n",
    );
    let out = enigma_check(&[file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 2, column 10"),
        "{}",
        stderr(&out)
    );
    let missing = dir.path().join("missing.jsonl");
    let out = enigma_check(&[missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

#[test]
fn zero_timeout_on_a_hard_history_is_unknown_not_a_verdict() {
    // 14 concurrent writes, then a read of a value none wrote: refuting it
    // means trying every order, far more steps than one poll interval.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for p in 0..14 {
        text.push_str(&format!(
            "{{\"type\":\"invoke\",\"process\":{p},\"key\":\"k\",\"f\":\"write\",\"value\":{p},\"time\":0}}\n"
        ));
    }
    for p in 0..14 {
        text.push_str(&format!(
            "{{\"type\":\"ok\",\"process\":{p},\"key\":\"k\",\"f\":\"write\",\"value\":{p},\"time\":100}}\n"
        ));
    }
    text.push_str(
        "{\"type\":\"invoke\",\"process\":99,\"key\":\"k\",\"f\":\"read\",\"time\":200}\n",
    );
    text.push_str(
        "{\"type\":\"ok\",\"process\":99,\"key\":\"k\",\"f\":\"read\",\"value\":42,\"time\":300}\n",
    );
    let file = write(dir.path(), "hard.jsonl", &text);
    let out = enigma_check(&[file.to_str().unwrap(), "--timeout", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("verdict: unknown"),
        "{}",
        stdout(&out)
    );
    let out = enigma_check(&[file.to_str().unwrap(), "--timeout", "600"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

#[test]
fn bench_checker_times_a_small_corpus_and_a_stress_history() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = dir.path().join("porcupine/etcd");
    let kv = dir.path().join("porcupine/kv");
    std::fs::create_dir_all(&etcd).unwrap();
    std::fs::create_dir_all(&kv).unwrap();
    write(
        &etcd,
        "etcd_000.log",
        "INFO  jepsen.util - 0\t:invoke\t:write\t3\nINFO  jepsen.util - 0\t:ok\t:write\t3\n",
    );
    write(
        &kv,
        "c01-bad.txt",
        "{:process 0, :type :invoke, :f :get, :key \"0\", :value nil}\n\
         {:process 0, :type :ok, :f :get, :key \"0\", :value \"x\"}\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_enigma"))
        .args(["bench", "checker", "--repeat", "1", "--stress-ops", "2000"])
        .args(["--jepsen-ops-per-key", "300"])
        .arg("--corpus")
        .arg(dir.path())
        .output()
        .expect("run enigma");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("etcd: 1 files, 1 ops"), "{text}");
    assert!(text.contains("1 linearizable, 0 not"), "{text}");
    assert!(text.contains("kv/c01-bad.txt: 1 ops"), "{text}");
    assert!(text.contains("not-linearizable"), "{text}");
    // The generated history is linearizable by construction.
    assert!(text.contains("stress: 2000 ops"), "{text}");
    // So are the generated Jepsen histories.
    for line in ["jepsen-keys: 3000 ops", "jepsen-one-key: 300 ops"] {
        let found = text
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line:?} in {text}"));
        assert!(found.ends_with("; linearizable"), "{found}");
    }
    assert!(text.trim_end().ends_with("; linearizable"), "{text}");
}

#[test]
fn bench_without_a_corpus_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_enigma"))
        .args(["bench", "checker", "--repeat", "1", "--corpus"])
        .arg(dir.path().join("absent"))
        .output()
        .expect("run enigma");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot list"), "{}", stderr(&out));
}

/// A run line and events, one per line.
fn leveled(run: &str, events: &[&str]) -> String {
    let mut text = String::new();
    if !run.is_empty() {
        text.push_str(run);
        text.push('\n');
    }
    for e in events {
        text.push_str(e);
        text.push('\n');
    }
    text
}

const RUN_NO_SKEW: &str =
    r#"{"type":"run","clock_skew":false,"replication_factor":3,"session_timestamps":false}"#;
const RUN_SKEW: &str =
    r#"{"type":"run","clock_skew":true,"replication_factor":3,"session_timestamps":false}"#;

/// Key k1: process 0 writes 1, process 1 writes 2 (acknowledged, with the
/// higher version), then a read returns 1 at `read_level` with the version
/// of 1. The writes are at `write_level`.
fn stale_read_history(run: &str, write_level: &str, read_level: &str) -> String {
    let w1 = format!(
        r#"{{"type":"invoke","process":0,"key":"k1","f":"write","value":1,"time":10,"level":"{write_level}"}}"#
    );
    let w1_ok = r#"{"type":"ok","process":0,"key":"k1","f":"write","value":1,"time":20,"timestamp":100,"writer":1}"#;
    let w2 = format!(
        r#"{{"type":"invoke","process":1,"key":"k1","f":"write","value":2,"time":30,"level":"{write_level}"}}"#
    );
    let w2_ok = r#"{"type":"ok","process":1,"key":"k1","f":"write","value":2,"time":40,"timestamp":200,"writer":2}"#;
    let r = format!(
        r#"{{"type":"invoke","process":2,"key":"k1","f":"read","value":null,"time":50,"level":"{read_level}"}}"#
    );
    let r_ok = r#"{"type":"ok","process":2,"key":"k1","f":"read","value":1,"time":60,"timestamp":100,"writer":1}"#;
    leveled(run, &[&w1, w1_ok, &w2, w2_ok, &r, r_ok])
}

fn check_text(dir: &Path, name: &str, text: &str, extra: &[&str]) -> (Option<i32>, String) {
    let file = write(dir, name, text);
    let mut args = vec![file.to_str().expect("temporary paths are UTF-8")];
    args.extend_from_slice(extra);
    let out = enigma_check(&args);
    (
        out.status.code(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

#[test]
fn a_lost_write_at_one_is_reported_with_its_key_and_write() {
    let dir = tempfile::tempdir().unwrap();
    // The read at ALL must meet the replica that acknowledged the ONE write
    // of 2, yet it returns the older version of 1.
    let text = stale_read_history(RUN_NO_SKEW, "ONE", "ALL");
    let (code, out) = check_text(dir.path(), "one.jsonl", &text, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("verdict: promise-broken"), "{out}");
    assert!(
        out.contains("lost-write        VIOLATED: key \"k1\": acknowledged write was lost"),
        "{out}"
    );
    assert!(
        out.contains("#1 p1 k1 write 2 [30..40] ok (version 200 by 2)"),
        "{out}"
    );
    assert!(out.contains("#2 p2 k1 read [50..60] ok 1"), "{out}");
    // ONE writes promise no linearizability: that check does not run.
    assert!(
        out.contains("linearizability   not applicable: not promised"),
        "{out}"
    );
    // The same stale read at ONE need not meet the ONE write's replica: no
    // promise is broken.
    let text = stale_read_history(RUN_NO_SKEW, "ONE", "ONE");
    let (code, out) = check_text(dir.path(), "one-one.jsonl", &text, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("verdict: promises-kept"), "{out}");
}

#[test]
fn quorum_without_skew_is_checked_for_linearizability() {
    let dir = tempfile::tempdir().unwrap();
    let text = stale_read_history(RUN_NO_SKEW, "QUORUM", "QUORUM");
    let (code, out) = check_text(dir.path(), "q.jsonl", &text, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("verdict: not-linearizable"), "{out}");
    assert!(out.contains("key \"k1\" is not linearizable"), "{out}");
    assert!(out.contains("#2 p2 k1 read [50..60] ok 1"), "{out}");
    // A fresh read instead: linearizable, and the verdict says so.
    let text = text.replace(
        r#""value":1,"time":60,"timestamp":100,"writer":1"#,
        r#""value":2,"time":60,"timestamp":200,"writer":2"#,
    );
    let (code, out) = check_text(dir.path(), "q-ok.jsonl", &text, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("verdict: linearizable"), "{out}");
    assert!(out.contains("linearizability   passed: 1 key(s)"), "{out}");
    assert!(out.contains("lost-write        passed"), "{out}");
}

#[test]
fn quorum_under_skew_is_held_to_the_lost_write_check_only() {
    let dir = tempfile::tempdir().unwrap();
    // Under skew the second write may get the lower timestamp: here the
    // versions say it did (the read's version 300 beats the write's 200),
    // so reading 1 afterwards breaks nothing.
    let text = stale_read_history(RUN_SKEW, "QUORUM", "QUORUM")
        .replace(
            r#""time":20,"timestamp":100"#,
            r#""time":20,"timestamp":300"#,
        )
        .replace(
            r#""time":60,"timestamp":100"#,
            r#""time":60,"timestamp":300"#,
        );
    let (code, out) = check_text(dir.path(), "skew.jsonl", &text, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("run: clock skew yes"), "{out}");
    assert!(out.contains("verdict: promises-kept"), "{out}");
    assert!(out.contains("lost-write        passed"), "{out}");
    // With the recorded versions the other way round, it is a lost write.
    let text = stale_read_history(RUN_SKEW, "QUORUM", "QUORUM");
    let (code, out) = check_text(dir.path(), "skew-lost.jsonl", &text, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("verdict: promise-broken"), "{out}");
    assert!(
        out.contains("key \"k1\": acknowledged write was lost"),
        "{out}"
    );
}

#[test]
fn session_guarantees_bind_one_only_when_sessions_carry_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let events = [
        r#"{"type":"invoke","process":0,"key":"k","f":"write","value":7,"time":10,"level":"ONE"}"#,
        r#"{"type":"ok","process":0,"key":"k","f":"write","value":7,"time":20}"#,
        r#"{"type":"invoke","process":0,"key":"k","f":"read","value":null,"time":30,"level":"ONE"}"#,
        r#"{"type":"ok","process":0,"key":"k","f":"read","value":null,"time":40}"#,
    ];
    let (code, out) = check_text(
        dir.path(),
        "plain.jsonl",
        &leveled(RUN_NO_SKEW, &events),
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("read-your-writes  not applicable"), "{out}");
    let run = RUN_NO_SKEW.replace(
        r#""session_timestamps":false"#,
        r#""session_timestamps":true"#,
    );
    let (code, out) = check_text(dir.path(), "sessions.jsonl", &leveled(&run, &events), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("read-your-writes  VIOLATED: key \"k\": process 0 did not read its own write"),
        "{out}"
    );
}

/// A session reads version 9 of "a", then writes "b" stamped 5: a node
/// that ignored the timestamp it was sent. Only a run whose sessions carry
/// timestamps promises otherwise.
#[test]
fn a_write_stamped_below_what_its_session_read_breaks_causal_writes() {
    let dir = tempfile::tempdir().unwrap();
    let events = [
        r#"{"type":"invoke","process":1,"key":"a","f":"write","value":1,"time":1,"level":"QUORUM"}"#,
        r#"{"type":"ok","process":1,"key":"a","f":"write","value":1,"time":2,"timestamp":9,"writer":1}"#,
        r#"{"type":"invoke","process":0,"key":"a","f":"read","value":null,"time":10,"level":"ONE"}"#,
        r#"{"type":"ok","process":0,"key":"a","f":"read","value":1,"time":20,"timestamp":9,"writer":1}"#,
        r#"{"type":"invoke","process":0,"key":"b","f":"write","value":2,"time":30,"level":"ONE"}"#,
        r#"{"type":"ok","process":0,"key":"b","f":"write","value":2,"time":40,"timestamp":5,"writer":2}"#,
    ];
    let (code, out) = check_text(
        dir.path(),
        "plain.jsonl",
        &leveled(RUN_NO_SKEW, &events),
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("causal-writes     not applicable"), "{out}");
    let run = RUN_NO_SKEW.replace(
        r#""session_timestamps":false"#,
        r#""session_timestamps":true"#,
    );
    let (code, out) = check_text(dir.path(), "sessions.jsonl", &leveled(&run, &events), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("causal-writes     VIOLATED: process 0 wrote below a version it had seen"),
        "{out}"
    );
    assert!(out.contains("verdict: promise-broken"), "{out}");
}

/// Under skew a write stamped below an earlier, long-acknowledged one is
/// overwritten by versions' rules; beyond the recorded clock uncertainty,
/// real time says it was lost.
#[test]
fn under_skew_the_clock_uncertainty_lets_real_time_judge_lost_writes() {
    let dir = tempfile::tempdir().unwrap();
    let events = [
        r#"{"type":"invoke","process":0,"key":"k","f":"write","value":1,"time":0,"level":"QUORUM"}"#,
        r#"{"type":"ok","process":0,"key":"k","f":"write","value":1,"time":10,"timestamp":9,"writer":1}"#,
        r#"{"type":"invoke","process":1,"key":"k","f":"write","value":2,"time":1000,"level":"QUORUM"}"#,
        r#"{"type":"ok","process":1,"key":"k","f":"write","value":2,"time":1010,"timestamp":5,"writer":2}"#,
        r#"{"type":"invoke","process":2,"key":"k","f":"read","value":null,"time":2000,"level":"QUORUM"}"#,
        r#"{"type":"ok","process":2,"key":"k","f":"read","value":1,"time":2010,"timestamp":9,"writer":1}"#,
    ];
    let skew =
        r#"{"type":"run","clock_skew":true,"replication_factor":3,"session_timestamps":false}"#;
    let (code, out) = check_text(dir.path(), "skew.jsonl", &leveled(skew, &events), &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("real time orders no two writes"), "{out}");
    for (uncertainty, lost) in [(5_000, false), (100, true)] {
        let run = skew.replace(
            '}',
            &format!(r#","clock_uncertainty_nanos":{uncertainty}}}"#),
        );
        let (code, out) = check_text(dir.path(), "bound.jsonl", &leveled(&run, &events), &[]);
        assert_eq!(code, Some(i32::from(lost)), "{out}");
        assert!(
            out.contains(&format!("clock uncertainty {uncertainty} ns")),
            "{out}"
        );
        assert_eq!(out.contains("lost-write        VIOLATED"), lost, "{out}");
    }
}

#[test]
fn a_leveled_set_missing_an_acknowledged_add_breaks_completeness() {
    let dir = tempfile::tempdir().unwrap();
    let events = [
        r#"{"type":"invoke","process":0,"key":"s","f":"add","value":4,"time":10,"level":"QUORUM"}"#,
        r#"{"type":"ok","process":0,"key":"s","f":"add","value":4,"time":20}"#,
        r#"{"type":"invoke","process":1,"key":"s","f":"read-all","time":30,"level":"QUORUM"}"#,
        r#"{"type":"ok","process":1,"key":"s","f":"read-all","value":[],"time":40}"#,
    ];
    let (code, out) = check_text(dir.path(), "set.jsonl", &leveled(RUN_SKEW, &events), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("set-completeness  VIOLATED: key \"s\": acknowledged add of 4"),
        "{out}"
    );
}

#[test]
fn a_leveled_html_page_lists_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("page.html");
    let text = stale_read_history(RUN_NO_SKEW, "ONE", "ALL");
    let (code, out) = check_text(
        dir.path(),
        "one.jsonl",
        &text,
        &["--html", html.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{out}");
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.contains("verdict: promise-broken"), "{page}");
    assert!(page.contains("<td>lost-write</td>"), "{page}");
    assert!(
        page.contains("key &quot;k1&quot;: acknowledged write was lost"),
        "{page}"
    );
}

#[test]
fn a_misplaced_run_line_exits_two_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}{RUN_NO_SKEW}\n", stale_read_history("", "ONE", "ALL"));
    let (code, out) = check_text(dir.path(), "late.jsonl", &text, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("line 7, column 2"), "{out}");
    assert!(out.contains("the run line must be the first line"), "{out}");
}

#[test]
fn a_leveled_file_without_a_run_line_says_what_it_assumed() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check_text(dir.path(), "old.jsonl", LINEARIZABLE, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("run: clock skew not recorded, taken as no"),
        "{out}"
    );
    assert!(out.contains("verdict: linearizable"), "{out}");
}

#[test]
fn a_leveled_history_the_search_cannot_decide_in_time_is_unknown() {
    // The hard history of the timeout test, every operation at QUORUM.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for p in 0..14 {
        text.push_str(&format!(
            "{{\"type\":\"invoke\",\"process\":{p},\"key\":\"k\",\"f\":\"write\",\"value\":{p},\"time\":0,\"level\":\"QUORUM\"}}\n"
        ));
    }
    for p in 0..14 {
        text.push_str(&format!(
            "{{\"type\":\"ok\",\"process\":{p},\"key\":\"k\",\"f\":\"write\",\"value\":{p},\"time\":100}}\n"
        ));
    }
    text.push_str("{\"type\":\"invoke\",\"process\":99,\"key\":\"k\",\"f\":\"read\",\"time\":200,\"level\":\"QUORUM\"}\n");
    text.push_str(
        "{\"type\":\"ok\",\"process\":99,\"key\":\"k\",\"f\":\"read\",\"value\":42,\"time\":300}\n",
    );
    let (code, out) = check_text(dir.path(), "hard.jsonl", &text, &["--timeout", "0"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("linearizability   unknown"), "{out}");
    assert!(out.contains("verdict: unknown"), "{out}");
    let (code, out) = check_text(dir.path(), "hard.jsonl", &text, &["--timeout", "600"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("verdict: not-linearizable"), "{out}");
}
