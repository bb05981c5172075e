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
