//! `enigma dev` as a newcomer runs it: starts three nodes, serves a real
//! client, stops cleanly on Ctrl-C (SIGINT) and comes back with its data.

// Real processes need real deadlines, and helpers outside #[test] may unwrap.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{client, enigma, signal, wait_exit};

/// Starts `enigma dev` in `dir` and returns it with the three client ports
/// it printed.
fn start_dev(dir: &std::path::Path) -> (Child, Vec<u16>, std::thread::JoinHandle<String>) {
    let mut child = enigma()
        .arg("dev")
        .arg("--base-port")
        .arg("0")
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads every line; sends the ports, then collects the rest.
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(port) = line
                .split("redis-cli -p ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
            {
                let _ = tx.send(port.parse::<u16>().unwrap());
            }
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ports = Vec::new();
    while ports.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        ports.push(
            rx.recv_timeout(left)
                .expect("enigma dev printed three redis-cli lines"),
        );
    }
    (child, ports, reader)
}

fn wait_all_up(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut con = client(port);
        let text: String = redis::cmd("INFO")
            .arg("membership")
            .query(&mut con)
            .unwrap();
        if text.matches("state=up").count() == 2 {
            return;
        }
        assert!(Instant::now() < deadline, "peers never all up: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dev_serves_stops_on_sigint_and_recovers_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, ports, reader) = start_dev(dir.path());
    assert!(dir.path().join("enigma-data").join("n1").is_dir());
    wait_all_up(ports[0]);
    let mut con = client(ports[0]);
    let _: String = redis::cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query(&mut con)
        .unwrap();
    let mut other = client(ports[1]);
    let got: String = redis::cmd("GET").arg("greeting").query(&mut other).unwrap();
    assert_eq!(got, "hello");

    let status = support::enigma()
        .arg("status")
        .arg("--node")
        .arg(format!("127.0.0.1:{}", ports[0]))
        .output()
        .unwrap();
    assert!(status.status.success());
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains("3 members, replication factor 3"), "{table}");
    assert_eq!(table.matches(" up ").count(), 2, "{table}");
    assert_eq!(table.matches(" self ").count(), 1, "{table}");

    drop((con, other));
    signal(child.id(), "INT");
    let exit = wait_exit(&mut child, Duration::from_secs(30));
    assert!(exit.success(), "enigma dev exited with {exit}");
    let printed = reader.join().unwrap();
    assert!(printed.contains("stopped cleanly"), "{printed}");

    let (mut child, ports, _reader) = start_dev(dir.path());
    wait_all_up(ports[2]);
    let mut con = client(ports[2]);
    let got: String = redis::cmd("GET").arg("greeting").query(&mut con).unwrap();
    assert_eq!(got, "hello");
    signal(child.id(), "INT");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}

#[test]
fn node_settings_come_from_flags_then_environment_then_file() {
    let dir = tempfile::tempdir().unwrap();
    let ports = support::free_ports(4);
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "id = 5\nlisten = \"127.0.0.1:{}\"\npeer_listen = \"127.0.0.1:{}\"\ndefault_consistency = \"ALL\"\n",
            ports[0], ports[1]
        ),
    )
    .unwrap();
    let mut child = enigma()
        .arg("node")
        .arg("--id")
        .arg("3")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--log-format")
        .arg("json")
        .env("ENIGMA_CONFIG", &config)
        .env("ENIGMA_LISTEN", format!("127.0.0.1:{}", ports[2]))
        .env("ENIGMA_ID", "4")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            lines.push(line.unwrap());
        }
        lines
    });
    // The flag's id (3) beats the variable's (4) and the file's (5); the
    // variable's listen address beats the file's; the file's level is used.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut con = loop {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", ports[2])).unwrap();
        if let Ok(con) = client.get_connection_with_timeout(Duration::from_millis(200)) {
            break con;
        }
        assert!(
            Instant::now() < deadline,
            "the node never listened on the variable's address"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let info: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
    assert!(info.contains("node_id:3\r\n"), "{info}");
    let level: String = redis::cmd("CONSISTENCY").query(&mut con).unwrap();
    assert_eq!(level, "ALL");
    signal(child.id(), "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    let lines = logs.join().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('{') && l.contains("\"node started\"")),
        "JSON logs expected: {lines:?}"
    );
}

#[test]
fn dev_keeps_its_secret_and_data_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, ports, _reader) = start_dev(dir.path());
    wait_all_up(ports[0]);
    let mode =
        |path: std::path::PathBuf| std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    let data = dir.path().join("enigma-data");
    assert_eq!(mode(data.join("cluster.secret")), 0o600, "cluster.secret");
    assert_eq!(mode(data.clone()), 0o700, "the dev data directory");
    for n in ["n1", "n2", "n3"] {
        assert_eq!(mode(data.join(n)), 0o700, "{n}");
    }
    signal(child.id(), "INT");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}

#[test]
fn node_help_names_secret_variables_but_never_their_values() {
    let out = enigma()
        .arg("node")
        .arg("--help")
        .env("ENIGMA_REQUIREPASS", "password-from-the-environment")
        .env("ENIGMA_CLUSTER_SECRET", "secret-from-the-environment")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("ENIGMA_REQUIREPASS"), "{help}");
    assert!(help.contains("ENIGMA_CLUSTER_SECRET"), "{help}");
    assert!(!help.contains("password-from-the-environment"), "{help}");
    assert!(!help.contains("secret-from-the-environment"), "{help}");
}

#[test]
fn node_logs_never_show_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let ports = support::free_ports(2);
    let mut child = enigma()
        .arg("node")
        .arg("--id")
        .arg("1")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", ports[0]))
        .arg("--peer-listen")
        .arg(format!("127.0.0.1:{}", ports[1]))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("ENIGMA_REQUIREPASS", "password-in-the-logs?")
        .env("ENIGMA_CLUSTER_SECRET", "secret-in-the-logs?")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines() {
            text.push_str(&line.unwrap());
            text.push('\n');
        }
        text
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A wrong password, then the right one: neither may be logged.
        if let Ok(reply) = support::raw_command(ports[0], "AUTH wrong-password-attempt") {
            if reply.starts_with("-WRONGPASS") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the node never answered AUTH");
        std::thread::sleep(Duration::from_millis(20));
    }
    let reply = support::raw_command(ports[0], "AUTH password-in-the-logs?").unwrap();
    assert_eq!(reply, "+OK\r\n");
    signal(child.id(), "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    let text = logs.join().unwrap();
    assert!(text.contains("node started"), "{text}");
    for secret in [
        "password-in-the-logs?",
        "secret-in-the-logs?",
        "wrong-password-attempt",
    ] {
        assert!(!text.contains(secret), "{secret} in the logs:\n{text}");
    }
}
