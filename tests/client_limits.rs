//! A real `enigma node` and clients that hold on to it: idle connections,
//! requests sent a byte at a time, a crowd of idle connections at the
//! connection limit, and a node told to serve strangers on a public
//! address. Each gets a clear answer and the node keeps serving others.

// Real processes need real deadlines, and helpers outside #[test] may unwrap.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{client, enigma, free_ports, Cluster};

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

fn ping(stream: &mut TcpStream) {
    stream.write_all(b"PING\r\n").unwrap();
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+PONG\r\n");
}

/// Reads until the server closes the connection; what it sent before.
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    String::from_utf8_lossy(&rest).into_owned()
}

fn ping_works(port: u16) {
    let mut con = client(port);
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn an_idle_connection_is_closed_after_the_timeout_and_a_busy_one_is_not() {
    let cluster = Cluster::start(1, &["--timeout", "2"]);
    let port = cluster.port(0);
    let mut idle = connect(port);
    ping(&mut idle);
    let mut busy = connect(port);
    let started = Instant::now();
    // The busy client talks every 100 ms for longer than the timeout.
    while started.elapsed() < Duration::from_secs(3) {
        ping(&mut busy);
        std::thread::sleep(Duration::from_millis(100));
    }
    // The idle one was closed without a word (as Redis does).
    assert_eq!(read_until_closed(&mut idle), "");
    ping(&mut busy);
}

#[test]
fn a_request_sent_too_slowly_is_refused_and_others_are_served() {
    let cluster = Cluster::start(1, &["--request-read-timeout-ms", "300"]);
    let port = cluster.port(0);
    let mut slow = connect(port);
    // The start of a request, and then nothing (a slowloris client).
    slow.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhel")
        .unwrap();
    ping_works(port);
    let reply = read_until_closed(&mut slow);
    assert_eq!(
        reply,
        "-ERR Protocol error: request not complete within request_read_timeout_ms (300 ms)\r\n"
    );
    // Nothing of it was applied.
    let mut con = client(port);
    let value: Option<String> = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(value, None);
}

#[test]
fn a_crowd_of_idle_connections_does_not_lock_new_clients_out() {
    let cluster = Cluster::start(1, &["--connections-max", "4", "--idle-eviction-ms", "200"]);
    let port = cluster.port(0);
    let mut crowd: Vec<TcpStream> = (0..4).map(|_| connect(port)).collect();
    for stream in &mut crowd {
        ping(stream);
    }
    // Until one has been idle long enough, a newcomer is refused...
    // (eviction needs 200 ms of idleness; the crowd has just spoken).
    std::thread::sleep(Duration::from_millis(400));
    // ...after that, a newcomer takes the place of the idlest.
    let mut newcomer = connect(port);
    ping(&mut newcomer);
    let mut closed = 0;
    for stream in &mut crowd {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        if matches!(stream.read(&mut byte), Ok(0)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 1, "exactly one idle connection made room");
}

#[test]
fn protected_mode_refuses_a_public_address_without_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let data = dir.path().join("data");
    let out = enigma()
        .arg("node")
        .arg("--id")
        .arg("1")
        .arg("--listen")
        .arg(format!("0.0.0.0:{}", ports[0]))
        .arg("--peer-listen")
        .arg(format!("127.0.0.1:{}", ports[1]))
        .arg("--data-dir")
        .arg(&data)
        .env_remove("ENIGMA_REQUIREPASS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("protected mode"), "{stderr}");
    assert!(stderr.contains("requirepass"), "{stderr}");
    assert!(!data.exists(), "a refused start creates nothing");
}
