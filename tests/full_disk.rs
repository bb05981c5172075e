//! A real `enigma node` on a real, small file system that fills up: writes
//! answer `-NOSPACE`, reads go on, the process stays up, writes resume by
//! themselves once space is freed, and every acknowledged write survives a
//! restart. The file system is a 16 MiB tmpfs mounted for the test, which
//! needs root: elsewhere the test says why it skips.

// Real processes need real deadlines, and helpers outside #[test] may unwrap.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{client, free_ports, Cluster, NodeProc};

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

fn set(con: &mut redis::Connection, key: &str, value: &str) -> redis::RedisResult<String> {
    redis::cmd("SET").arg(key).arg(value).query(con)
}

fn get(con: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(con).unwrap()
}

/// Writes zeros into `path` until the file system refuses.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0_u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

#[test]
fn a_node_on_a_full_file_system_answers_nospace_serves_reads_and_resumes() {
    let ports = free_ports(3);
    let mut cluster = Cluster {
        dir: tempfile::tempdir().unwrap(),
        nodes: vec![NodeProc {
            id: 1,
            client_port: ports[0],
            peer_port: ports[1],
            metrics_port: ports[2],
            child: None,
        }],
        extra: Vec::new(),
    };
    let data = cluster.data_dir(0);
    std::fs::create_dir_all(&data).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&data)
        .output();
    match mounted {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            eprintln!(
                "skipped: mounting a small tmpfs needs root ({})",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            return;
        }
        Err(err) => {
            eprintln!("skipped: cannot run mount: {err}");
            return;
        }
    }
    let _unmount = Mounted(&data);
    cluster.spawn(0);
    cluster.wait_ready(0);
    let mut con = client(cluster.port(0));
    assert_eq!(set(&mut con, "before", "1").unwrap(), "OK");
    let filler = data.join("filler");
    fill(&filler);

    let value = "v".repeat(4096);
    let mut acknowledged = vec!["before".to_owned()];
    let mut refused = None;
    for i in 0..2000 {
        let key = format!("full-{i}");
        match set(&mut con, &key, &value) {
            Ok(_) => acknowledged.push(key),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    let refused = refused.expect("a write is refused once the disk is full");
    eprintln!(
        "{} writes acknowledged after the fill, then: {refused}",
        acknowledged.len() - 1
    );
    assert_eq!(refused.code(), Some("NOSPACE"), "{refused:?}");
    assert_eq!(get(&mut con, "before").as_deref(), Some("1"), "reads go on");
    // A second refusal is counted but not logged again.
    assert!(set(&mut con, "still-full", &value).is_err());

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match set(&mut con, "after", "2") {
            Ok(_) => break,
            Err(err) => assert!(
                Instant::now() < deadline,
                "writes did not resume: {err:?}\n{}",
                cluster.logs()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    acknowledged.push("after".to_owned());

    assert!(cluster.terminate(0).success(), "{}", cluster.logs());
    let logs = std::fs::read_to_string(cluster.log_path(0)).unwrap();
    assert_eq!(
        logs.matches("disk full").count(),
        1,
        "one line per episode:\n{logs}"
    );
    assert!(logs.contains("disk space is back"), "{logs}");
    cluster.spawn(0);
    cluster.wait_ready(0);
    let mut con = client(cluster.port(0));
    for key in &acknowledged {
        assert!(get(&mut con, key).is_some(), "acknowledged {key} lost");
    }
    cluster.terminate(0);
}
