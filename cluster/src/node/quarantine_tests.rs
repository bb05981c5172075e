//! Unit tests of what a node does about damaged stored bytes: quarantine,
//! the drop of what it still holds of the damaged ranges, refused reads,
//! repair from its peers, a node rebuilt from nothing, and the planted
//! nodes that skip a step.

use super::*;

/// Flips a bit at `offset` of every table file in `dir`.
fn damage_tables(dir: &std::path::Path, offset: u64) -> usize {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut damaged = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("table-") && name.ends_with(".sst")) {
            continue;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut byte = [0u8; 1];
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.read_exact(&mut byte).unwrap();
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.write_all(&[byte[0] ^ 1]).unwrap();
        file.sync_all().unwrap();
        damaged += 1;
    }
    damaged
}

#[test]
fn a_damaged_table_is_quarantined_its_ranges_refused_until_repaired_even_across_a_restart() {
    let mut options = healing_options();
    options.hints.enabled = false;
    options.engine.memtable_bytes_max = 1024;
    let mut h = Harness::new(3, options);
    h.now.wall_nanos = 1_000_000_000_000;
    h.tick_all(100 * MS);
    let value = "v".repeat(200);
    for i in 0..20 {
        let out = h.call(0, put(&format!("k{i}"), &value), ConsistencyLevel::All);
        assert_eq!(out, vec![ClientResponse::Written]);
        h.tick_all(MS);
    }
    assert!(h.node(2).engine().tables_total() >= 2);
    assert!(damage_tables(h.dirs[2].path(), 20) >= 2);
    // Reads at ONE through node 3 meet the damage: its replica fails,
    // the others answer.
    for i in 0..20 {
        let out = h.call(2, get(&format!("k{i}")), ConsistencyLevel::One);
        assert_eq!(
            out,
            vec![ClientResponse::Value(Some(value.clone().into_bytes()))]
        );
    }
    // Its tick confirms and quarantines (nothing it sends is delivered:
    // no repair yet).
    h.step(2, Input::Tick);
    let stats = h.node(2).stats().clone();
    assert!(stats.tables_quarantined >= 1, "{stats:?}");
    assert!(h.node(2).ranges_damaged() > 0);
    assert!(h.dirs[2].path().join(damage::DAMAGE_FILE).exists());
    // What its other tables held of the damaged ranges is dropped, not
    // kept to be pushed to its peers: they refill it.
    assert_eq!(stats.damaged_data_drops, 1, "{stats:?}");
    for i in 0..20 {
        let key = format!("k{i}");
        assert_eq!(
            h.node(2).engine().get(key.as_bytes()).unwrap(),
            None,
            "{key}"
        );
    }
    let refused_before = stats.reads_refused_damaged;
    let out = h.call(2, get("k0"), ConsistencyLevel::One);
    assert_eq!(
        out,
        vec![ClientResponse::Value(Some(value.clone().into_bytes()))]
    );
    assert!(h.node(2).stats().reads_refused_damaged > refused_before);
    // The record survives a restart.
    h.nodes[2] = None;
    let node = h.start(2);
    h.nodes[2] = Some(node);
    assert!(
        h.node(2).ranges_damaged() > 0,
        "damage forgotten at restart"
    );
    for _ in 0..100 {
        h.tick_all(100 * MS);
        if h.node(2).ranges_damaged() == 0 {
            break;
        }
    }
    assert_eq!(h.node(2).ranges_damaged(), 0, "never repaired");
    for i in 0..20 {
        let stored = h.node(2).engine().get(format!("k{i}").as_bytes()).unwrap();
        assert_eq!(
            stored.and_then(|v| v.value),
            Some(value.clone().into_bytes()),
            "k{i}"
        );
    }
    h.nodes[2] = None;
    let node = h.start(2);
    assert_eq!(node.ranges_damaged(), 0, "the repair is durable too");
}

/// One node with its planted bug `plant`, holding keys k0 to k19 across
/// several tables.
fn one_node_with_tables(plant: fn(&mut NodeOptions)) -> Harness {
    let mut options = healing_options();
    options.hints.enabled = false;
    options.engine.memtable_bytes_max = 1024;
    plant(&mut options);
    let mut h = Harness::new(1, options);
    let value = "v".repeat(200);
    for i in 0..20 {
        let out = h.call(0, put(&format!("k{i}"), &value), ConsistencyLevel::One);
        assert_eq!(out, vec![ClientResponse::Written]);
        h.step(0, Input::Tick);
    }
    assert!(h.node(0).engine().tables_total() >= 2);
    h
}

#[test]
fn the_planted_node_serves_a_quarantined_range_before_it_is_repaired() {
    let mut h = one_node_with_tables(|o| o.bug_serve_quarantined_ranges = true);
    assert!(damage_tables(h.dirs[0].path(), 20) >= 2);
    for i in 0..20 {
        h.call(0, get(&format!("k{i}")), ConsistencyLevel::One);
    }
    h.step(0, Input::Tick);
    assert!(h.node(0).stats().tables_quarantined >= 1);
    assert_eq!(h.node(0).stats().damaged_data_drops, 1);
    let answers: Vec<ClientResponse> = (0..20)
        .flat_map(|i| h.call(0, get(&format!("k{i}")), ConsistencyLevel::One))
        .collect();
    assert!(
        answers.contains(&ClientResponse::Value(None)),
        "a key lost with the table reads as never written: {answers:?}"
    );
    assert_eq!(h.node(0).stats().reads_refused_damaged, 0);
}

#[test]
fn the_planted_node_keeps_what_its_other_tables_hold_of_a_damaged_range() {
    let mut h = one_node_with_tables(|o| o.bug_damaged_node_keeps_stale_data = true);
    // One table damaged; the others keep their versions.
    let mut names: Vec<_> = std::fs::read_dir(h.dirs[0].path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sst"))
        .collect();
    names.sort();
    let mut bytes = std::fs::read(&names[0]).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&names[0], bytes).unwrap();
    for i in 0..20 {
        h.call(0, get(&format!("k{i}")), ConsistencyLevel::One);
    }
    h.step(0, Input::Tick);
    assert!(h.node(0).stats().tables_quarantined >= 1);
    assert_eq!(h.node(0).stats().damaged_data_drops, 0);
    let held = (0..20)
        .filter(|i| {
            let key = format!("k{i}");
            h.node(0).engine().get(key.as_bytes()).unwrap().is_some()
        })
        .count();
    assert!(held > 0, "the other tables' versions stay");
    assert!(h.node(0).ranges_damaged() > 0);
}

#[test]
fn a_node_rebuilt_from_nothing_serves_no_range_until_its_peers_refill_it() {
    let mut options = healing_options();
    options.hints.enabled = false;
    let mut h = Harness::new(3, options);
    h.now.wall_nanos = 1_000_000_000_000;
    h.tick_all(100 * MS);
    for i in 0..10 {
        let out = h.call(0, put(&format!("k{i}"), "v"), ConsistencyLevel::All);
        assert_eq!(out, vec![ClientResponse::Written]);
    }
    // The operator wipes node 3's data but its boot generation, and
    // writes a record marking every range.
    h.nodes[2] = None;
    for entry in std::fs::read_dir(h.dirs[2].path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "node.generation" {
            std::fs::remove_file(path).unwrap();
        }
    }
    let ranges = Ring::new(&h.cluster.nodes, h.cluster.vnodes_per_node, 3)
        .unwrap()
        .repair_ranges()
        .len();
    let disk = FsDisk::open(h.dirs[2].path()).unwrap();
    damage::store(&disk, &Damage::all(ranges)).unwrap();
    let node = h.start(2);
    h.nodes[2] = Some(node);
    assert!(h.node(2).ranges_damaged() > 0);
    // Its own replica refuses: the answer comes from the others.
    let out = h.call(2, get("k3"), ConsistencyLevel::One);
    assert_eq!(out, vec![ClientResponse::Value(Some(b"v".to_vec()))]);
    assert!(h.node(2).stats().reads_refused_damaged > 0);
    for _ in 0..100 {
        h.tick_all(100 * MS);
        if h.node(2).ranges_damaged() == 0 {
            break;
        }
    }
    assert_eq!(h.node(2).ranges_damaged(), 0, "never refilled");
    for i in 0..10 {
        let stored = h.node(2).engine().get(format!("k{i}").as_bytes()).unwrap();
        assert_eq!(stored.and_then(|v| v.value), Some(b"v".to_vec()), "k{i}");
    }
}
