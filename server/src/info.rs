//! The `INFO` text: Redis-style `# Section` headers and `key:value` lines,
//! from the node's last snapshot, the metrics and the operating system
//! (`docs/SERVER.md`, "INFO"). `enigma status` reads its `# Membership`
//! section.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use enigma_cluster::ClockJudgment;

use crate::driver::{NodeSnapshot, Shared};

/// The `INFO` text: Redis-style `# Section` headers and `key:value` lines.
pub fn info(shared: &Shared, section: Option<&str>) -> String {
    // `INFO` and `INFO default` leave out commandstats, as Redis does.
    let wanted = |name: &str| match section {
        None | Some("default") => name != "commandstats",
        Some("all" | "everything") => true,
        Some(s) => s == name,
    };
    let snapshot = shared.snapshot();
    let config = &shared.config;
    let mut out = String::new();
    if wanted("server") {
        let _ = write!(
            out,
            "# Server\r\nenigma_version:{}\r\nnode_id:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            config.id.0,
            std::process::id(),
            shared.client_addr.port(),
            shared.started.elapsed().as_secs(),
        );
    }
    if wanted("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nconnections_max:{}\r\n\r\n",
            shared.connections.load(Ordering::Relaxed),
            config.limits.connections_max,
        );
    }
    if wanted("membership") {
        out.push_str(&membership(shared, &snapshot));
    }
    if wanted("healing") {
        out.push_str(&healing(&snapshot));
    }
    if wanted("storage") {
        let disk = crate::process::DiskUsage::of(&config.data_dir);
        let cache = snapshot.block_cache;
        let _ = write!(
            out,
            "# Storage\r\ndata_dir:{}\r\nsync:{}\r\ngeneration:{}\r\nmemtable_bytes:{}\r\nfrozen_memtables:{}\r\ntables:{}\r\ncompaction_backlog_bytes:{}\r\nwal_disk_bytes:{}\r\ndata_disk_bytes:{}\r\nblock_cache_bytes:{}\r\nblock_cache_hits:{}\r\nblock_cache_misses:{}\r\n\r\n",
            config.data_dir.display(),
            match config.sync {
                crate::config::SyncMode::Always => "always",
                crate::config::SyncMode::Interval => "interval",
                crate::config::SyncMode::Never => "never",
            },
            snapshot.generation,
            snapshot.memtable_bytes,
            snapshot.frozen_memtables,
            snapshot.tables,
            snapshot.compaction_backlog_bytes,
            disk.wal_bytes,
            disk.data_bytes,
            cache.used_bytes,
            cache.hits,
            cache.misses,
        );
    }
    if wanted("memory") {
        let process = crate::process::ProcessStats::read();
        let peer_queued: usize = shared.links.values().map(|l| l.queued_bytes()).sum();
        let _ = write!(
            out,
            "# Memory\r\nused_memory_rss:{}\r\nused_memory_peak:{}\r\nmemtable_bytes:{}\r\nblock_cache_bytes:{}\r\nclient_buffers_bytes:{}\r\nclient_buffers_bytes_max:{}\r\npeer_queue_bytes:{}\r\nlargest_recent_value_bytes:{}\r\n\r\n",
            process.rss_bytes.unwrap_or(0),
            process.rss_peak_bytes.unwrap_or(0),
            snapshot.memtable_bytes,
            snapshot.block_cache.used_bytes,
            shared.client_bytes.load(Ordering::Relaxed),
            config.limits.client_buffers_bytes_max,
            peer_queued,
            shared.values.largest(),
        );
    }
    if wanted("keyspace") {
        // The same line shape as Redis (`db0:keys=N,expires=0`), so tools
        // that read it work; the count is this node's, an estimate.
        out.push_str("# Keyspace\r\n");
        if let Some(keys) = snapshot.keys_estimate {
            let _ = write!(out, "db0:keys={keys},expires=0,avg_ttl=0\r\n");
        }
        out.push_str("\r\n");
    }
    if wanted("commandstats") {
        out.push_str("# Commandstats\r\n");
        for (name, calls, failed, usec) in shared.metrics.command_totals() {
            let per_call = usec as f64 / calls as f64;
            let _ = write!(
                out,
                "cmdstat_{name}:calls={calls},usec={usec},usec_per_call={per_call:.2},rejected_calls=0,failed_calls={failed}\r\n"
            );
        }
        out.push_str("\r\n");
    }
    if wanted("stats") {
        let s = &snapshot.stats;
        let _ = write!(
            out,
            "# Stats\r\noperations_ok:{}\r\noperations_failed:{}\r\nread_repairs:{}\r\nstorage_errors:{}\r\npeer_messages_ignored:{}\r\noperations_in_flight:{}\r\nwal_syncs:{}\r\nmemtables_flushed:{}\r\ncompactions:{}\r\nbackground_errors:{}\r\n\r\n",
            s.client_ok,
            s.client_errors,
            s.read_repairs,
            s.storage_errors,
            s.messages_ignored,
            snapshot.pending_operations,
            shared.metrics.wal_syncs.load(Ordering::Relaxed),
            s.tables_flushed,
            s.compactions,
            s.background_errors,
        );
    }
    out
}

/// The `# Membership` section `enigma status` reads: one `member_<id>` line
/// per member with its peer address, its state as this node's failure
/// detector judges it (`up`, `down`, or `self`), phi, what gossip last
/// said of it (generation, heartbeat, status), whether this node's
/// outgoing link to it is connected, the hints held for it, and its ring
/// shares.
fn membership(shared: &Shared, snapshot: &NodeSnapshot) -> String {
    let config = &shared.config;
    let mut out = format!(
        "# Membership\r\nnode_id:{}\r\ngeneration:{}\r\nmembers:{}\r\nreplication_factor:{}\r\nvnodes_per_node:{}\r\n",
        config.id.0,
        snapshot.generation,
        shared.ring.nodes().len(),
        shared.ring.replication_factor(),
        config.vnodes_per_node,
    );
    let _ = write!(
        out,
        "clock:{},clock_offset_max_ms={},writes_refused_clock={}\r\n",
        clock_text(snapshot.clock),
        config.healing.clock_offset_max_ms,
        snapshot.stats.writes_refused_clock,
    );
    for share in shared.ring.ownership() {
        let view = snapshot.members.iter().find(|m| m.node == share.node);
        let me = share.node == config.id;
        let addr = if me {
            shared.peer_addr.to_string()
        } else {
            shared
                .links
                .get(&share.node)
                .map_or_else(|| "unknown".to_owned(), |l| l.addr.to_string())
        };
        let state = match view {
            _ if me => "self",
            Some(v) if v.up => "up",
            Some(_) => "down",
            None => "unknown",
        };
        let link = match shared.links.get(&share.node) {
            _ if me => "-",
            Some(l) if l.is_up() => "up",
            _ => "down",
        };
        let (generation, heartbeat, status) = view
            .and_then(|v| v.gossip.as_ref())
            .map_or((0, 0, "unknown"), |g| {
                (g.state.generation, g.state.heartbeat, g.state.status.name())
            });
        let phi = view.map_or(0.0, |v| v.phi);
        let hints = view.map_or(0, |v| v.hints_held.0);
        let clock_offset = view
            .and_then(|v| v.clock_offset_nanos)
            .map_or_else(|| "-".to_owned(), |nanos| (nanos / 1_000_000).to_string());
        let clock_refused = view.map_or(0, |v| v.clock_refusals);
        let _ = write!(
            out,
            "member_{}:addr={addr},state={state},phi={},generation={generation},heartbeat={heartbeat},status={status},link={link},hints={hints},clock_offset_ms={clock_offset},clock_refused={clock_refused},primary_share={:.4},replica_share={:.4}\r\n",
            share.node.0,
            if phi.is_finite() { format!("{phi:.2}") } else { "inf".to_owned() },
            share.primary_share,
            share.replica_share,
        );
    }
    out.push_str("\r\n");
    out
}

/// This node's judgment of its own clock, for `INFO membership`:
/// `in-bounds`, `unjudged (heard H of N peers needed)` or `out-of-bounds
/// (offset O ms from P of T peers)`.
fn clock_text(judgment: Option<ClockJudgment>) -> String {
    match judgment {
        None => "unjudged".to_owned(),
        Some(ClockJudgment::Unjudged { heard, needed }) => {
            format!("unjudged (heard {heard} of {needed} peers needed)")
        }
        Some(ClockJudgment::InBounds) => "in-bounds".to_owned(),
        Some(ClockJudgment::OutOfBounds {
            peers_out,
            peers_total,
            offset_nanos,
            ..
        }) => format!(
            "out-of-bounds (offset {} ms from {peers_out} of {peers_total} peers; writes refused)",
            -(offset_nanos / 1_000_000)
        ),
    }
}

/// The `# Healing` section: hinted handoff and anti-entropy counters.
fn healing(snapshot: &NodeSnapshot) -> String {
    let s = &snapshot.stats;
    let ae = &snapshot.anti_entropy;
    let mut out = format!(
        "# Healing\r\nunavailable:{}\r\ngossip_refused:{}\r\nclock_refusals:{}\r\nwrites_refused_late:{}\r\nhints_refused:{}\r\nhint_watches_dropped:{}\r\nrepair_ranges_compared:{}\r\nrepair_sessions_completed:{}\r\nrepair_sessions_aborted:{}\r\nrepair_keys_sent:{}\r\nrepair_keys_received:{}\r\nrepair_messages_refused:{}\r\nrepair_bytes_scanned:{}\r\noldest_repair_wall_ms:{}\r\n",
        s.unavailable,
        s.gossip_refused,
        s.clock_refusals.values().sum::<u64>(),
        s.writes_refused_late,
        s.hints_refused,
        s.hint_watches_dropped,
        ae.ranges_compared,
        ae.sessions_completed,
        ae.sessions_aborted,
        ae.keys_sent,
        ae.keys_received,
        ae.messages_refused,
        ae.bytes_scanned,
        snapshot.oldest_repair_wall_nanos / 1_000_000,
    );
    for (node, hints) in &snapshot.hints {
        let _ = write!(
            out,
            "hints_{}:stored={},replayed={},resent={},dropped_full={},dropped_expired={}\r\n",
            node.0,
            hints.stored,
            hints.replayed,
            hints.resent,
            hints.dropped_full,
            hints.dropped_expired
        );
    }
    out.push_str("\r\n");
    out
}
