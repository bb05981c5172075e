//! The session's tests: reply order, the waiting window, limits,
//! authentication and error replies.

use crate::driver::NodeSnapshot;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Mutex;

use enigma_cluster::{ClientError, NodeId, Ring, SessionFloor};

use super::*;
use crate::config::{Limits, NodeConfig, PeerAddr, SyncMode};
use crate::driver::{ClientQueue, ReplyBatch};
use crate::metrics::Metrics;
use crate::peer::PeerLink;

fn shared(members: u32, requirepass: Option<&str>) -> Arc<Shared> {
    let peers: Vec<PeerAddr> = (2..=members)
        .map(|id| PeerAddr {
            id: NodeId(id),
            addr: format!("127.0.0.1:{}", 9000 + id).parse().unwrap(),
        })
        .collect();
    let config = NodeConfig {
        id: NodeId(1),
        listen: "127.0.0.1:1".parse().unwrap(),
        peer_listen: "127.0.0.1:2".parse().unwrap(),
        peers: peers.clone(),
        data_dir: "unused".into(),
        replication_factor: members as usize,
        vnodes_per_node: 8,
        request_timeout_ms: 1000,
        sync: SyncMode::Always,
        default_consistency: ConsistencyLevel::Quorum,
        requirepass: requirepass.map(crate::config::Secret::new),
        cluster_secret: crate::config::Secret::new("0123456789"),
        metrics_listen: None,
        limits: Limits::default(),
        tick_interval_ms: 10,
        peer_send_queue_bytes_max: 64 << 20,
        batch_inputs_max: 64,
        peer_bulk_queue_bytes_max: 64 << 20,
        protected_mode: true,
        idle_timeout_secs: 0,
        request_read_timeout_ms: 10_000,
        idle_eviction_ms: 5_000,
        tls: crate::config::TlsSettings::default(),
        healing: crate::config::HealingConfig::default(),
    };
    let ring = Ring::new(&config.members(), 8, members as usize).unwrap();
    let links: BTreeMap<NodeId, Arc<PeerLink>> = peers
        .iter()
        .map(|p| {
            (
                p.id,
                Arc::new(PeerLink::new(p.id, p.addr, 1 << 20, 1 << 20)),
            )
        })
        .collect();
    let (inputs, _) = tokio::sync::mpsc::channel(4);
    Arc::new(Shared {
        config,
        client_addr: "127.0.0.1:1".parse().unwrap(),
        peer_addr: "127.0.0.1:2".parse().unwrap(),
        ring,
        links,
        metrics: Metrics::default(),
        inputs,
        clients: ClientQueue::default(),
        core: Mutex::new(None),
        snapshot: Mutex::new(NodeSnapshot::default()),
        // Every peer held down: placement decides what may be sent.
        judged_up: peers
            .iter()
            .map(|p| (p.id, std::sync::atomic::AtomicBool::new(false)))
            .collect(),
        clock_refuses_writes: std::sync::atomic::AtomicBool::new(false),
        started: now(),
        connections: AtomicUsize::new(0),
        next_conn: AtomicU64::new(1),
        client_bytes: AtomicUsize::new(0),
        values: crate::driver::ValueSizes::default(),
        conn_slots: Mutex::new(BTreeMap::new()),
        bulk_pending: AtomicUsize::new(0),
    })
}

fn words(line: &str) -> Vec<Vec<u8>> {
    line.split_whitespace()
        .map(|w| w.as_bytes().to_vec())
        .collect()
}

fn written(session: &mut Session) -> String {
    let mut out = Vec::new();
    session.write_ready(&mut out);
    String::from_utf8(out).unwrap()
}

fn value(v: &str) -> ClientResponse {
    ClientResponse::Value(Some(v.as_bytes().to_vec()))
}

#[test]
fn replies_leave_in_request_order_whatever_order_the_node_answers_in() {
    let mut session = Session::new(shared(1, None), 7);
    session.on_request(words("GET a"));
    session.on_request(words("PING"));
    session.on_request(words("SET b 1"));
    let sent = session.take_outgoing();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|(id, _)| id.0 >> 32 == 7));
    session.on_replies(vec![(sent[1].0, ClientResponse::Written, None)]);
    assert_eq!(written(&mut session), "", "GET a is still owed");
    session.on_replies(vec![(sent[0].0, value("x"), None)]);
    assert_eq!(written(&mut session), "$1\r\nx\r\n+PONG\r\n+OK\r\n");
    assert_eq!(session.outstanding(), 0);
}

#[test]
fn del_counts_the_keys_that_existed_and_mget_keeps_order() {
    let mut session = Session::new(shared(1, None), 1);
    session.on_request(words("DEL a b c"));
    session.on_request(words("MGET a b"));
    let sent = session.take_outgoing();
    // Three reads then three deletes, then two reads.
    assert_eq!(sent.len(), 8);
    assert!(matches!(sent[0].1.op, ClientOp::Get { .. }));
    assert!(matches!(sent[3].1.op, ClientOp::Delete { .. }));
    let mut replies: ReplyBatch = vec![
        (sent[0].0, value("1"), None),
        (sent[1].0, ClientResponse::Value(None), None),
        (sent[2].0, value("3"), None),
    ];
    replies.extend(
        sent[3..6]
            .iter()
            .map(|(id, _)| (*id, ClientResponse::Written, None)),
    );
    replies.push((sent[7].0, ClientResponse::Value(None), None));
    replies.push((sent[6].0, value("v"), None));
    replies.reverse();
    session.on_replies(replies);
    assert_eq!(written(&mut session), ":2\r\n*2\r\n$1\r\nv\r\n$-1\r\n");
}

#[test]
fn requests_read_in_place_are_the_requests_parsed_by_copy() {
    use crate::resp::{parse_request_ranges, RespLimits};
    let limits = RespLimits::default();
    let mut ranges = Vec::new();
    for line in [
        "GET k",
        "get k",
        "SET k v",
        "sEt k v",
        "SET k v NX",
        "GET",
        "GET a b",
        "MGET a b",
        "PING",
    ] {
        let mut by_copy = Session::new(shared(1, None), 1);
        by_copy.on_request(words(line));
        let mut in_place = Session::new(shared(1, None), 1);
        let wire = format!("{line}\r\n");
        let used = parse_request_ranges(wire.as_bytes(), &limits, &mut ranges).unwrap();
        assert_eq!(used, Some(wire.len()));
        in_place.on_request_in(wire.as_bytes(), &ranges);
        assert_eq!(
            format!("{:?}", in_place.take_outgoing()),
            format!("{:?}", by_copy.take_outgoing()),
            "{line}"
        );
        assert_eq!(written(&mut in_place), written(&mut by_copy), "{line}");
    }
}

#[test]
fn reads_may_skip_the_queue_only_when_nothing_of_theirs_is_in_flight() {
    let mut session = Session::new(shared(1, None), 5);
    session.on_request(words("GET a"));
    session.on_request(words("MGET a b"));
    assert!(session.only_fresh_reads_outgoing());
    session.on_request(words("SET a 1"));
    assert!(
        !session.only_fresh_reads_outgoing(),
        "a write is among them"
    );
    let sent = session.take_outgoing();
    // The SET (and the reads before it) are in flight: a new read must
    // not overtake them.
    session.on_request(words("GET a"));
    assert!(!session.only_fresh_reads_outgoing());
    let late = session.take_outgoing();
    for (id, _) in sent.iter().chain(&late) {
        session.on_replies(vec![(*id, ClientResponse::Value(None), None)]);
    }
    session.on_request(words("GET a"));
    assert!(
        session.only_fresh_reads_outgoing(),
        "everything was answered"
    );
    session.on_request(words("DEL a"));
    assert!(!session.only_fresh_reads_outgoing(), "DEL deletes");
}

#[test]
fn the_waiting_window_survives_sequence_numbers_wrapping() {
    let mut session = Session::new(shared(1, None), 3);
    session.next_seq = u32::MAX - 1;
    for key in ["a", "b", "c", "d"] {
        session.on_request(words(&format!("GET {key}")));
    }
    let sent = session.take_outgoing();
    assert_eq!(sent[2].0 .0 & 0xffff_ffff, 0, "the third wrapped to 0");
    for (id, _) in sent.iter().rev() {
        session.on_replies(vec![(*id, ClientResponse::Value(None), None)]);
    }
    assert_eq!(written(&mut session), "$-1\r\n".repeat(4));
    // A reply for another connection or an unknown request is ignored.
    session.on_replies(vec![(request_id(4, 0), value("x"), None)]);
    assert_eq!(session.outstanding(), 0);
}

#[test]
fn key_commands_are_refused_unapplied_when_replicas_are_down() {
    let mut session = Session::new(shared(3, None), 1);
    session.on_request(words("SET k v"));
    session.on_request(words("AT ONE SET k v"));
    let sent = session.take_outgoing();
    assert_eq!(sent.len(), 1, "only the ONE write is sent");
    assert_eq!(sent[0].1.level, ConsistencyLevel::One);
    let out = written(&mut session);
    assert!(
        out.starts_with("-UNAVAILABLE consistency level QUORUM needs 2 of the 3 replicas"),
        "{out}"
    );
}

#[test]
fn nothing_but_auth_is_served_before_authentication() {
    let mut session = Session::new(shared(1, Some("pw")), 1);
    session.on_request(words("GET k"));
    session.on_request(words("AUTH nope"));
    session.on_request(words("AUTH default pw"));
    session.on_request(words("PING"));
    assert!(session.take_outgoing().is_empty());
    assert_eq!(
        written(&mut session),
        "-NOAUTH Authentication required.\r\n\
         -WRONGPASS invalid username-password pair or user is disabled.\r\n\
         +OK\r\n+PONG\r\n"
    );
}

#[test]
fn timeouts_say_whether_a_write_may_have_applied() {
    let mut session = Session::new(shared(1, None), 1);
    session.on_request(words("GET k"));
    session.on_request(words("SET k v"));
    let sent = session.take_outgoing();
    let timeout = ClientResponse::Error(ClientError::Timeout {
        answered: 1,
        required: 2,
    });
    session.on_replies(vec![
        (sent[0].0, timeout.clone(), None),
        (sent[1].0, timeout, None),
    ]);
    let out = written(&mut session);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "-TIMEOUT 1 of 2 required replicas answered before the deadline"
    );
    assert!(
        lines[1].ends_with("the write may have been applied"),
        "{out}"
    );
}

#[test]
fn a_connection_sends_the_newest_versions_it_saw_as_its_floors() {
    use enigma_engine::Timestamp;
    let mut session = Session::new(shared(1, None), 1);
    session.on_request(words("SET a 1"));
    let sent = session.take_outgoing();
    assert_eq!(
        sent[0].1.session,
        SessionFloor::default(),
        "nothing seen yet"
    );
    let wrote = Timestamp { hlc: 90, node: 1 };
    session.on_replies(vec![(sent[0].0, ClientResponse::Written, Some(wrote))]);
    session.on_request(words("GET a"));
    session.on_request(words("GET b"));
    let sent = session.take_outgoing();
    assert_eq!(
        sent[0].1.session,
        SessionFloor {
            seen: Some(wrote),
            key: Some(wrote)
        }
    );
    assert_eq!(
        sent[1].1.session,
        SessionFloor {
            seen: Some(wrote),
            key: None
        },
        "b was never seen: only writes are held to the session-wide floor"
    );
    // A read of an older version (another client's) never lowers a floor;
    // a newer one raises both.
    let older = Timestamp { hlc: 40, node: 2 };
    let newer = Timestamp { hlc: 120, node: 2 };
    session.on_replies(vec![
        (sent[0].0, value("1"), Some(older)),
        (sent[1].0, value("2"), Some(newer)),
    ]);
    session.on_request(words("GET a"));
    let sent = session.take_outgoing();
    assert_eq!(
        sent[0].1.session,
        SessionFloor {
            seen: Some(newer),
            key: Some(wrote)
        }
    );
}
