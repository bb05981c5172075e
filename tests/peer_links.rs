//! A peer that stops reading: the node drops its link when the bounded
//! send queue overflows, keeps serving, and dials again.

// Real processes need real deadlines, and helpers outside #[test] may unwrap.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enigma_cluster::{ClusterConfig, NodeId};
use enigmadb::peer::{accept_handshake, cluster_digest, HandshakeKeys};
use support::{enigma, free_ports, http_get, metric, raw_command, signal, wait_exit, SECRET};

/// The fake n2 as a sender: dials n1's peer port and sends a gossip round
/// about itself every 200 ms (heartbeat, wall clock), as a live member
/// does, so that n1 holds it up and can judge its own clock against it
/// (an unjudged node would not take a write at ONE alone).
async fn gossip_to(peer_port: u16, keys: &HandshakeKeys) {
    use enigma_cluster::codec::encode_frame;
    use enigma_cluster::gossip::{MemberState, MemberStatus};
    use enigma_cluster::hlc::LOGICAL_BITS;
    use enigma_cluster::{Envelope, Message};
    use enigmadb::peer::dial_handshake;
    use tokio::io::AsyncWriteExt;

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", peer_port)).await {
            if let Ok(key) = dial_handshake(&mut stream, keys, NodeId(1)).await {
                break (stream, key.sealer());
            }
        }
        assert!(Instant::now() < deadline, "could not dial n1's peer port");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for heartbeat in 1..=1_000u64 {
        let wall_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let hlc = (wall_nanos / 1_000) << LOGICAL_BITS;
        let frame = encode_frame(&Envelope {
            hlc,
            message: Message::GossipSyn {
                states: vec![MemberState {
                    node: NodeId(2),
                    generation: 1,
                    heartbeat,
                    status: MemberStatus::Normal,
                    wall_nanos,
                    hlc,
                    hints_pending: 0,
                    repair_completed_wall_nanos: 0,
                }],
            },
        });
        let (socket, tags) = &mut stream;
        if socket.write_all(&frame).await.is_err()
            || socket.write_all(&tags.seal(&frame)).await.is_err()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kills the node if the test panics, so that no process outlives it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_peer_that_stops_reading_is_dropped_and_dialed_again() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let (client_port, metrics_port) = (ports[0], ports[1]);
    // The fake n2: authenticates like a real peer, then never reads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fake = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let keys = Arc::new(HandshakeKeys {
        me: NodeId(2),
        members: vec![NodeId(1), NodeId(2)],
        digest: cluster_digest(&ClusterConfig {
            nodes: vec![NodeId(1), NodeId(2)],
            replication_factor: 2,
            vnodes_per_node: 64,
        }),
        secret: SECRET.as_bytes().to_vec(),
    });
    let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = handshakes.clone();
    let peer_port = ports[2];
    let fake_peer = std::thread::spawn(move || {
        runtime.block_on(async move {
            let gossip_keys = keys.clone();
            tokio::spawn(async move { gossip_to(peer_port, &gossip_keys).await });
            let mut held = Vec::new();
            loop {
                let accepted = tokio::time::timeout(Duration::from_secs(60), fake.accept()).await;
                let Ok(Ok((mut stream, _))) = accepted else {
                    return;
                };
                if accept_handshake(&mut stream, &keys).await.is_ok() {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Keep the socket open and never read from it.
                    held.push(stream);
                }
            }
        });
    });
    let mut node = KillOnDrop(
        enigma()
            .arg("node")
            .arg("--id")
            .arg("1")
            .arg("--listen")
            .arg(format!("127.0.0.1:{client_port}"))
            .arg("--peer-listen")
            .arg(format!("127.0.0.1:{}", ports[2]))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--peers")
            .arg(format!("2@{fake_addr}"))
            .arg("--data-dir")
            .arg(dir.path().join("n1"))
            .arg("--default-consistency")
            .arg("ONE")
            .arg("--value-bytes-max")
            .arg("65536")
            .arg("--peer-send-queue-bytes-max")
            .arg("1048576")
            .env("ENIGMA_CLUSTER_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stderr(std::fs::File::create(dir.path().join("n1.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while handshakes.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the node never dialed its peer: {}",
            std::fs::read_to_string(dir.path().join("n1.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The node takes a write at ONE alone only once it has judged its
    // clock against the fake peer's gossip: until then a write waits for
    // the peer's acknowledgement, which never comes (-TIMEOUT).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !raw_command(client_port, "SET probe x").is_ok_and(|r| r.starts_with("+OK")) {
        assert!(Instant::now() < deadline, "n1 never took a write at ONE");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Writes at ONE succeed locally; each also queues a 16 KiB message for
    // n2, which is never read: socket buffers fill, then the queue.
    let mut stream = TcpStream::connect(("127.0.0.1", client_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let value = "x".repeat(16 << 10);
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    for i in 0..2_000 {
        stream
            .write_all(format!("SET key{i} {value}\r\n").as_bytes())
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert_eq!(line, "+OK\r\n", "write {i}");
        if i % 100 == 99 {
            let text = http_get(metrics_port, "/metrics");
            if metric(&text, "enigma_peer_slow_drops_total") >= Some(1.0) {
                break;
            }
        }
    }
    eprintln!("writes done at {:?}", started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = http_get(metrics_port, "/metrics");
        let drops = metric(&text, "enigma_peer_slow_drops_total").unwrap();
        if drops >= 1.0 && handshakes.load(std::sync::atomic::Ordering::SeqCst) >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no slow-peer drop and reconnect: {} handshakes\n{text}",
            handshakes.load(std::sync::atomic::Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("dropped and dialed again at {:?}", started.elapsed());
    assert!(raw_command(client_port, "PING")
        .unwrap()
        .starts_with("+PONG"));
    signal(node.0.id(), "TERM");
    assert!(wait_exit(&mut node.0, Duration::from_secs(30)).success());
    drop(fake_peer);
}

/// A member that knows the secret, then sends a frame whose CRC is right
/// but whose tag is not (as a man in the middle altering a frame would):
/// the node takes the genuine frame, refuses the forged one and closes the
/// link.
#[test]
fn a_frame_that_fails_its_tag_closes_the_link() {
    use enigma_cluster::codec::encode_frame;
    use enigma_cluster::{Envelope, Message, OpId};
    use enigmadb::peer::dial_handshake;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    // Client, peer and metrics ports of n1, and an address for n2 where
    // nothing listens (n1's own link to it stays down).
    let ports = free_ports(4);
    let mut node = enigma()
        .arg("node")
        .arg("--id")
        .arg("1")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", ports[0]))
        .arg("--peer-listen")
        .arg(format!("127.0.0.1:{}", ports[1]))
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{}", ports[2]))
        .arg("--peers")
        .arg(format!("2@127.0.0.1:{}", ports[3]))
        .arg("--data-dir")
        .arg(dir.path().join("n1"))
        .env("ENIGMA_CLUSTER_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stderr(std::fs::File::create(dir.path().join("n1.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !raw_command(ports[0], "PING").is_ok_and(|r| r.starts_with("+PONG")) {
        assert!(Instant::now() < deadline, "n1 never answered PING");
        std::thread::sleep(Duration::from_millis(20));
    }
    let keys = HandshakeKeys {
        me: NodeId(2),
        members: vec![NodeId(1), NodeId(2)],
        digest: cluster_digest(&ClusterConfig {
            nodes: vec![NodeId(1), NodeId(2)],
            replication_factor: 2,
            vnodes_per_node: 64,
        }),
        secret: SECRET.as_bytes().to_vec(),
    };
    let metrics_port = ports[2];
    let received = move || {
        metric(
            &http_get(metrics_port, "/metrics"),
            "enigma_peer_frames_received_total",
        )
        .unwrap_or(0.0)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", ports[1]))
            .await
            .unwrap();
        let key = dial_handshake(&mut stream, &keys, NodeId(1)).await.unwrap();
        let mut tags = key.sealer();
        let frame = encode_frame(&Envelope {
            hlc: 1,
            message: Message::ReadDigest {
                op: OpId {
                    generation: 1,
                    seq: 1,
                },
                key: b"k".to_vec(),
            },
        });
        stream.write_all(&frame).await.unwrap();
        stream.write_all(&tags.seal(&frame)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while received() < 1.0 {
            assert!(Instant::now() < deadline, "the genuine frame was not taken");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The same bytes again with a made-up tag: a valid CRC, no key.
        stream.write_all(&frame).await.unwrap();
        stream.write_all(&[0u8; 16]).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut byte))
            .await
            .expect("the node closes the link");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    });
    let text = http_get(metrics_port, "/metrics");
    assert_eq!(
        metric(&text, "enigma_peer_frames_rejected_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "enigma_peer_frames_received_total"),
        Some(1.0)
    );
    signal(node.id(), "TERM");
    assert!(wait_exit(&mut node, Duration::from_secs(30)).success());
}
