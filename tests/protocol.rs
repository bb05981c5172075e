//! A real `enigma node` facing broken, hostile and half-closed clients:
//! each gets an error reply or a closed connection, and the node keeps
//! serving everyone else with bounded memory.

// Real processes need real deadlines, and helpers outside #[test] may unwrap.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use support::{client, Cluster};

const LIMITS: [&str; 10] = [
    "--key-bytes-max",
    "64",
    "--value-bytes-max",
    "1024",
    "--args-max",
    "8",
    "--query-buffer-bytes-max",
    "4096",
    "--connections-max",
    "16",
];

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends `bytes`, then reads until the server closes the connection.
fn exchange_until_closed(port: u16, bytes: &[u8]) -> String {
    let mut stream = connect(port);
    stream.write_all(bytes).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

/// Sends `bytes` and reads one line of reply (without its CRLF).
fn reply_line(stream: &mut TcpStream, bytes: &[u8]) -> String {
    stream.write_all(bytes).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).unwrap();
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    String::from_utf8_lossy(&line).into_owned()
}

/// Sends `bytes` and reads exactly `len` bytes of reply.
fn exchange(stream: &mut TcpStream, bytes: &[u8], len: usize) -> String {
    stream.write_all(bytes).unwrap();
    let mut reply = vec![0; len];
    stream.read_exact(&mut reply).unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

fn ping_works(port: u16) {
    let mut con = client(port);
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn malformed_and_oversized_requests_close_only_their_connection() {
    let cluster = Cluster::start(1, &LIMITS);
    let port = cluster.port(0);
    let reply = exchange_until_closed(port, b"*1\r\n:5\r\n");
    assert!(reply.starts_with("-ERR Protocol error"), "{reply}");
    let reply = exchange_until_closed(port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$99999\r\n");
    assert!(
        reply.contains("bulk string of 99999 exceeds the limit of 1024"),
        "{reply}"
    );
    let reply = exchange_until_closed(port, b"*9\r\n");
    assert!(
        reply.contains("array length of 9 exceeds the limit of 8"),
        "{reply}"
    );
    // An unfinished request larger than the query buffer.
    let mut big = b"*7\r\n$4\r\nMSET\r\n".to_vec();
    for _ in 0..5 {
        big.extend_from_slice(b"$1000\r\n");
        big.extend_from_slice(&[b'x'; 1000]);
        big.extend_from_slice(b"\r\n");
    }
    big.extend_from_slice(b"$1000\r\nunfinished");
    let reply = exchange_until_closed(port, &big);
    assert!(reply.contains("query_buffer_bytes_max (4096)"), "{reply}");
    ping_works(port);
}

#[test]
fn bad_commands_get_errors_and_the_connection_goes_on() {
    let cluster = Cluster::start(1, &LIMITS);
    let port = cluster.port(0);
    let mut stream = connect(port);
    let expected = "-ERR unknown command 'frobnicate'\r\n";
    assert_eq!(
        exchange(&mut stream, b"FROBNICATE a b\r\n", expected.len()),
        expected
    );
    let expected = "-ERR wrong number of arguments for 'get' command\r\n";
    assert_eq!(
        exchange(&mut stream, b"*1\r\n$3\r\nGET\r\n", expected.len()),
        expected
    );
    let key = "k".repeat(65);
    let expected = "-ERR key of 65 bytes exceeds key_bytes_max (64)\r\n";
    assert_eq!(
        exchange(
            &mut stream,
            format!("GET {key}\r\n").as_bytes(),
            expected.len()
        ),
        expected
    );
    let expected = "-ERR SET option EX is not supported by EnigmaDB yet\r\n";
    assert_eq!(
        exchange(&mut stream, b"SET k v EX 10\r\n", expected.len()),
        expected
    );
    // Conditional commands run at SERIAL only, through Paxos.
    let refused = reply_line(&mut stream, b"SET k v NX\r\n");
    assert!(
        refused.starts_with("-ERR 'set' needs consistency level SERIAL"),
        "{refused}"
    );
    assert_eq!(reply_line(&mut stream, b"AT SERIAL SET c v NX\r\n"), "+OK");
    assert_eq!(reply_line(&mut stream, b"AT SERIAL SET c w NX\r\n"), "$-1");
    assert_eq!(
        reply_line(&mut stream, b"AT SERIAL SET c w IFEQ v\r\n"),
        "+OK"
    );
    assert_eq!(reply_line(&mut stream, b"AT SERIAL INCRBY n 5\r\n"), ":5");
    assert_eq!(reply_line(&mut stream, b"AT SERIAL DECR n\r\n"), ":4");
    assert_eq!(
        reply_line(&mut stream, b"AT SERIAL INCR c\r\n"),
        "-ERR value is not an integer or out of range"
    );
    assert_eq!(reply_line(&mut stream, b"AT SERIAL DELIFEQ c v\r\n"), ":0");
    assert_eq!(reply_line(&mut stream, b"AT SERIAL DELIFEQ c w\r\n"), ":1");
    assert_eq!(reply_line(&mut stream, b"AT SERIAL GET c\r\n"), "$-1");
    let expected =
        "-ERR consistency level TWO needs more replicas than the replication factor of 1\r\n";
    assert_eq!(
        exchange(&mut stream, b"CONSISTENCY TWO\r\n", expected.len()),
        expected
    );
    assert_eq!(exchange(&mut stream, b"SET k v\r\n", 5), "+OK\r\n");
    assert_eq!(exchange(&mut stream, b"GET k\r\n", 7), "$1\r\nv\r\n");
    let count = format!(":{}\r\n", enigmadb::command::COMMAND_TABLE.len());
    assert_eq!(
        exchange(&mut stream, b"COMMAND COUNT\r\n", count.len()),
        count
    );
}

#[test]
fn a_half_closed_connection_gets_every_reply_then_is_closed() {
    let cluster = Cluster::start(1, &LIMITS);
    let mut stream = connect(cluster.port(0));
    stream
        .write_all(b"SET a 1\r\nGET a\r\nDEL a\r\nGET a\r\n")
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "+OK\r\n$1\r\n1\r\n:1\r\n$-1\r\n");
}

#[test]
fn connections_beyond_the_limit_are_refused_with_an_error() {
    // No idle connection makes room here: that is `client_limits.rs`.
    let mut args = LIMITS.to_vec();
    args.extend(["--idle-eviction-ms", "0"]);
    let cluster = Cluster::start(1, &args);
    let port = cluster.port(0);
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..16 {
        let mut stream = connect(port);
        assert_eq!(exchange(&mut stream, b"PING\r\n", 7), "+PONG\r\n");
        held.push(stream);
    }
    let reply = exchange_until_closed(port, b"PING\r\n");
    assert_eq!(
        reply,
        "-ERR max number of clients reached (connections_max)\r\n"
    );
    held.pop();
    // The freed slot is usable again (the close is noticed asynchronously).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = connect(port);
        stream.write_all(b"PING\r\n").unwrap();
        let mut reply = [0u8; 7];
        if stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn auth_is_required_when_a_password_is_set() {
    let mut args = LIMITS.to_vec();
    args.extend(["--requirepass", "hunter22"]);
    let cluster = Cluster::start(1, &args);
    let mut stream = connect(cluster.port(0));
    let expected = "-NOAUTH Authentication required.\r\n";
    assert_eq!(
        exchange(&mut stream, b"GET k\r\n", expected.len()),
        expected
    );
    let expected = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    assert_eq!(
        exchange(&mut stream, b"AUTH guess\r\n", expected.len()),
        expected
    );
    assert_eq!(exchange(&mut stream, b"AUTH hunter22\r\n", 5), "+OK\r\n");
    assert_eq!(exchange(&mut stream, b"GET k\r\n", 5), "$-1\r\n");
    // RESP3 through HELLO: a null is `_`.
    let mut stream = connect(cluster.port(0));
    let hello = exchange_prefix(&mut stream, b"HELLO 3 AUTH default hunter22\r\n", b"%7\r\n");
    assert!(hello.starts_with("%7"), "{hello}");
}

/// Sends `bytes` and reads until the reply starts with `prefix` and then
/// pauses; returns what was read.
fn exchange_prefix(stream: &mut TcpStream, bytes: &[u8], prefix: &[u8]) -> String {
    stream.write_all(bytes).unwrap();
    let mut reply = vec![0; prefix.len()];
    stream.read_exact(&mut reply).unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn garbage_from_many_clients_leaves_the_node_serving_with_bounded_memory() {
    let cluster = Cluster::start(1, &LIMITS);
    let port = cluster.port(0);
    let pid = cluster.pid(0);
    let before = rss_kib(pid);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..200 {
        let mut stream = connect(port);
        let len = 1 + (random() % 8192) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| random() as u8).collect();
        if round % 3 == 0 {
            // Valid-looking starts that promise more than they send.
            bytes.splice(0..0, b"*2\r\n$4\r\nECHO\r\n$1000\r\n".iter().copied());
        }
        let _ = stream.write_all(&bytes);
        if round % 2 == 0 {
            let _ = stream.shutdown(Shutdown::Write);
        }
        // Closed without reading: the server must cope with resets too.
    }
    // A peer port stranger is refused and the node goes on.
    let mut stray = connect(cluster.nodes[0].peer_port);
    let _ = stray.write_all(b"*1\r\n$4\r\nPING\r\nand a lot more garbage for the handshake....");
    let mut rest = Vec::new();
    let _ = stray.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "the peer port answered a stranger: {rest:?}"
    );
    ping_works(port);
    let mut con = client(port);
    let _: String = redis::cmd("SET")
        .arg("still")
        .arg("here")
        .query(&mut con)
        .unwrap();
    let value: String = redis::cmd("GET").arg("still").query(&mut con).unwrap();
    assert_eq!(value, "here");
    let after = rss_kib(pid);
    // 200 connections of up to 8 KiB each could leak at most a few MiB; a
    // bound of 64 MiB catches unbounded buffering, not allocator noise.
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn a_pipeline_deeper_than_the_limit_is_slowed_not_refused() {
    let mut args = LIMITS.to_vec();
    args.extend(["--pipeline-depth-max", "2"]);
    let cluster = Cluster::start(1, &args);
    let mut stream = connect(cluster.port(0));
    let mut requests = String::new();
    let mut expected = String::new();
    for i in 0..50 {
        requests.push_str(&format!("SET k{i} v{i}\r\nGET k{i}\r\n"));
        expected.push_str(&format!("+OK\r\n${}\r\nv{i}\r\n", format!("v{i}").len()));
    }
    stream.write_all(requests.as_bytes()).unwrap();
    let mut reply = vec![0; expected.len()];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(String::from_utf8_lossy(&reply), expected);
    // The same pipeline followed by end of input: every command buffered
    // before the end is still answered, then the connection closes.
    let mut stream = connect(cluster.port(0));
    stream.write_all(requests.as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, expected);
    let metrics = support::http_get(cluster.nodes[0].metrics_port, "/metrics");
    let stalls = support::metric(&metrics, "enigma_pipeline_stalls_total").unwrap();
    assert!(stalls >= 1.0, "{metrics}");
}

#[test]
fn a_read_sent_right_after_a_write_sees_it() {
    // Reads may be served ahead of the node task's next group commit
    // (docs/ARCHITECTURE.md): never ahead of a write of their own
    // connection. Each GET goes out in its own segment right behind its SET,
    // before the SET is answered; a second connection keeps writing so that
    // the node often holds unsynced writes, and often does not.
    let cluster = Cluster::start(1, &[]);
    let port = cluster.port(0);
    let writer = std::thread::spawn(move || {
        let mut con = client(port);
        for i in 0..1000 {
            let _: () = redis::cmd("SET")
                .arg(format!("other{}", i % 7))
                .arg(i)
                .query(&mut con)
                .unwrap();
        }
    });
    let mut stream = connect(port);
    stream.set_nodelay(true).unwrap();
    for i in 0..1000 {
        let value = format!("v{i}");
        stream
            .write_all(format!("SET k {value}\r\n").as_bytes())
            .unwrap();
        let expected = format!("+OK\r\n${}\r\n{value}\r\n", value.len());
        let reply = exchange(&mut stream, b"GET k\r\n", expected.len());
        assert_eq!(reply, expected, "round {i}");
    }
    writer.join().unwrap();
}

#[test]
fn info_reports_memory_keys_commands_and_the_process() {
    let cluster = Cluster::start(1, &[]);
    let port = cluster.port(0);
    let mut con = client(port);
    let keys = 3;
    for i in 0..keys {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg("v")
            .query(&mut con)
            .unwrap();
    }
    // DBSIZE is a paced count: wait for one that saw the writes.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let size: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
        if size == keys {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "DBSIZE stayed at {size}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let info = |section: &str| -> String {
        let mut con = client(port);
        redis::cmd("INFO").arg(section).query(&mut con).unwrap()
    };
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(info("keyspace").contains(&format!("db0:keys={keys},")));
    let memory = info("memory");
    assert!(field(&memory, "used_memory_rss") > 0, "{memory}");
    assert!(field(&memory, "memtable_bytes") > 0, "{memory}");
    let stats = info("commandstats");
    assert!(
        stats.contains(&format!("cmdstat_set:calls={keys},")),
        "{stats}"
    );
    assert!(stats.contains("cmdstat_dbsize:calls="), "{stats}");
    assert!(field(&info("storage"), "wal_disk_bytes") > 0);
    assert!(
        info("storage").contains("compaction_backlog_bytes:"),
        "{}",
        info("storage")
    );
    let everything: String = redis::cmd("INFO").query(&mut con).unwrap();
    assert!(!everything.contains("# Commandstats"));
    assert!(everything.contains("# Memory") && everything.contains("# Keyspace"));
    assert!(info("all").contains("# Commandstats"));
    let metrics = support::http_get(cluster.nodes[0].metrics_port, "/metrics");
    for series in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
        "enigma_wal_disk_bytes",
        "enigma_data_disk_bytes",
        "enigma_block_cache_hits_total",
        "enigma_keys_estimate",
        "enigma_compaction_backlog_bytes",
    ] {
        assert!(
            support::metric(&metrics, series).is_some(),
            "{series} missing"
        );
    }
    assert!(support::metric(&metrics, "process_resident_memory_bytes") > Some(0.0));
}
