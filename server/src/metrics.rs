//! Counters and histograms of a running node, rendered in the Prometheus
//! text exposition format (version 0.0.4).
//!
//! Everything is a fixed array of atomics indexed by command and level, so
//! recording never allocates or locks and the set of series is bounded.
//! Only what the node really measures is exported: there is no hinted
//! handoff yet, so there are no hint metrics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use enigma_cluster::ConsistencyLevel;

use crate::command::COMMAND_TABLE;

/// Upper bounds of the latency buckets, in seconds.
pub const LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds of the group-commit batch size buckets, in inputs.
pub const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// Label values of the `level` label: the five levels, then `none` for
/// commands that touch no key.
const LEVEL_LABELS: [&str; 6] = ["ONE", "TWO", "QUORUM", "ALL", "SERIAL", "none"];

const COMMANDS: usize = COMMAND_TABLE.len();

/// A histogram with fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram {
    /// Bucket upper bounds (the implicit last one is +Inf).
    bounds: &'static [f64],
    /// Observations per bucket, not cumulative; one more for +Inf.
    counts: Vec<AtomicU64>,
    /// Sum of observations, in millionths of the unit.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        inc(&self.counts[bucket]);
        // Saturating float-to-int conversion: a negative value adds zero.
        add(&self.sum_micros, (value * 1e6) as u64);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = match self.bounds.get(i) {
                Some(b) => format!("{b}"),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Per (command, level) request counters.
#[derive(Debug)]
struct PerCommand {
    requests: Vec<AtomicU64>,
    errors: Vec<AtomicU64>,
    latency: Vec<Histogram>,
}

/// Every metric of one node.
#[derive(Debug)]
pub struct Metrics {
    per_command: PerCommand,
    /// Group commits: `Node::flush` calls that had inputs.
    pub batches: Histogram,
    /// WAL fsyncs (flushes that had unsynced writes).
    pub wal_syncs: AtomicU64,
    /// Time spent in `Node::flush`, seconds.
    pub flush_seconds: Histogram,
    /// Client connections accepted.
    pub connections_accepted: AtomicU64,
    /// Client connections refused at `connections_max`.
    pub connections_rejected: AtomicU64,
    /// Client connections closed after a protocol error or a limit.
    pub protocol_errors: AtomicU64,
    /// Requests naming an unknown command or with bad arguments.
    pub command_errors: AtomicU64,
    /// Times a connection reached `pipeline_depth_max` and was not read
    /// from until replies drained.
    pub pipeline_stalls: AtomicU64,
    /// Peer frames sent and received.
    pub peer_frames_sent: AtomicU64,
    pub peer_frames_received: AtomicU64,
    /// Peer messages dropped because the peer was not connected.
    pub peer_messages_dropped: AtomicU64,
    /// Peer connections dropped because their send queue overflowed or a
    /// write stalled.
    pub peer_slow_drops: AtomicU64,
    /// Peer connections established (handshake passed), both directions.
    pub peer_connects: AtomicU64,
    /// Peer handshakes refused (bad secret, wrong cluster, not a member).
    pub peer_handshakes_refused: AtomicU64,
    /// Large peer messages dropped because the peer's bulk lane was full.
    pub peer_bulk_dropped: AtomicU64,
    /// Peer frames that failed their tag or did not decode (the link was
    /// closed).
    pub peer_frames_rejected: AtomicU64,
    /// Times a connection stopped taking commands because its replies, or
    /// all connections' buffers, reached their byte limit.
    pub reply_stalls: AtomicU64,
    /// Times a connection held a large write while the peers' bulk lanes
    /// were congested.
    pub bulk_write_stalls: AtomicU64,
    /// Requests refused because the node-wide client buffer budget was
    /// spent (connection closed).
    pub client_buffer_refusals: AtomicU64,
    /// Connections closed by the idle timeout.
    pub idle_timeouts: AtomicU64,
    /// Connections closed because a request took longer than
    /// `request_read_timeout_ms` to arrive.
    pub request_read_timeouts: AtomicU64,
    /// Idle connections closed to admit a new one at `connections_max`.
    pub idle_evictions: AtomicU64,
    /// Client TLS handshakes that failed.
    pub tls_handshake_failures: AtomicU64,
    /// Connections closed because the client took none of its replies for
    /// the reply write timeout.
    pub reply_write_timeouts: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let cells = COMMANDS * LEVEL_LABELS.len();
        Self {
            per_command: PerCommand {
                requests: (0..cells).map(|_| AtomicU64::new(0)).collect(),
                errors: (0..cells).map(|_| AtomicU64::new(0)).collect(),
                latency: (0..cells)
                    .map(|_| Histogram::new(&LATENCY_BUCKETS_SECONDS))
                    .collect(),
            },
            batches: Histogram::new(&BATCH_BUCKETS),
            wal_syncs: AtomicU64::new(0),
            flush_seconds: Histogram::new(&LATENCY_BUCKETS_SECONDS),
            connections_accepted: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            command_errors: AtomicU64::new(0),
            pipeline_stalls: AtomicU64::new(0),
            peer_frames_sent: AtomicU64::new(0),
            peer_frames_received: AtomicU64::new(0),
            peer_messages_dropped: AtomicU64::new(0),
            peer_slow_drops: AtomicU64::new(0),
            peer_connects: AtomicU64::new(0),
            peer_handshakes_refused: AtomicU64::new(0),
            peer_bulk_dropped: AtomicU64::new(0),
            peer_frames_rejected: AtomicU64::new(0),
            reply_stalls: AtomicU64::new(0),
            bulk_write_stalls: AtomicU64::new(0),
            client_buffer_refusals: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
            request_read_timeouts: AtomicU64::new(0),
            idle_evictions: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            reply_write_timeouts: AtomicU64::new(0),
        }
    }
}

fn level_index(level: Option<ConsistencyLevel>) -> usize {
    match level {
        Some(ConsistencyLevel::One) => 0,
        Some(ConsistencyLevel::Two) => 1,
        Some(ConsistencyLevel::Quorum) => 2,
        Some(ConsistencyLevel::All) => 3,
        Some(ConsistencyLevel::Serial) => 4,
        None => 5,
    }
}

fn command_index(name: &str) -> Option<usize> {
    crate::command::command_index(name)
}

/// Adds one to a counter.
pub fn inc(counter: &AtomicU64) {
    add(counter, 1);
}

/// Adds `n` to a counter. Every counter of a node is written only from the
/// node's own thread (its tasks all run there), so a load and a store
/// suffice: no locked read-modify-write per request. Readers on other
/// threads see a recent value.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl Metrics {
    /// Records one answered command.
    pub fn record(
        &self,
        command: &str,
        level: Option<ConsistencyLevel>,
        latency: Duration,
        error: bool,
    ) {
        let Some(c) = command_index(command) else {
            return;
        };
        let cell = c * LEVEL_LABELS.len() + level_index(level);
        inc(&self.per_command.requests[cell]);
        if error {
            inc(&self.per_command.errors[cell]);
        }
        self.per_command.latency[cell].observe(latency.as_secs_f64());
    }

    /// Requests recorded for `command` at `level`.
    pub fn requests(&self, command: &str, level: Option<ConsistencyLevel>) -> u64 {
        command_index(command).map_or(0, |c| {
            self.per_command.requests[c * LEVEL_LABELS.len() + level_index(level)]
                .load(Ordering::Relaxed)
        })
    }

    /// Per command, over every level: its name, calls, failed calls and
    /// total microseconds, for commands called at least once.
    pub fn command_totals(&self) -> Vec<(&'static str, u64, u64, u64)> {
        let levels = LEVEL_LABELS.len();
        COMMAND_TABLE
            .iter()
            .enumerate()
            .filter_map(|(c, entry)| {
                let cells = c * levels..(c + 1) * levels;
                let load = |cells: &[AtomicU64]| -> u64 {
                    cells.iter().map(|v| v.load(Ordering::Relaxed)).sum()
                };
                let calls = load(&self.per_command.requests[cells.clone()]);
                if calls == 0 {
                    return None;
                }
                let failed = load(&self.per_command.errors[cells.clone()]);
                let usec = self.per_command.latency[cells]
                    .iter()
                    .map(|h| h.sum_micros.load(Ordering::Relaxed))
                    .sum();
                Some((entry.0, calls, failed, usec))
            })
            .collect()
    }

    /// Renders the per-command and driver metrics. `extra` is appended
    /// verbatim (node and engine gauges, rendered by the caller).
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::with_capacity(16 << 10);
        out.push_str(
            "# HELP enigma_requests_total Client commands answered, by command and consistency level.\n\
             # TYPE enigma_requests_total counter\n",
        );
        self.render_cells(
            &mut out,
            "enigma_requests_total",
            &self.per_command.requests,
        );
        out.push_str(
            "# HELP enigma_request_errors_total Client commands answered with an error.\n\
             # TYPE enigma_request_errors_total counter\n",
        );
        self.render_cells(
            &mut out,
            "enigma_request_errors_total",
            &self.per_command.errors,
        );
        out.push_str(
            "# HELP enigma_request_duration_seconds Time from a command's arrival to its reply being ready.\n\
             # TYPE enigma_request_duration_seconds histogram\n",
        );
        for (cell, histogram) in self.per_command.latency.iter().enumerate() {
            if histogram.count() == 0 {
                continue;
            }
            let labels = cell_labels(cell);
            histogram.render(&mut out, "enigma_request_duration_seconds", &labels);
        }
        out.push_str(
            "# HELP enigma_group_commit_inputs Inputs (client requests, peer messages, ticks) applied per group commit.\n\
             # TYPE enigma_group_commit_inputs histogram\n",
        );
        self.batches
            .render(&mut out, "enigma_group_commit_inputs", "");
        out.push_str(
            "# HELP enigma_flush_duration_seconds Time of one group commit (WAL sync included).\n\
             # TYPE enigma_flush_duration_seconds histogram\n",
        );
        self.flush_seconds
            .render(&mut out, "enigma_flush_duration_seconds", "");
        let counters: [(&str, &str, &AtomicU64); 22] = [
            (
                "enigma_wal_syncs_total",
                "WAL fsyncs (group commits that had writes).",
                &self.wal_syncs,
            ),
            (
                "enigma_connections_accepted_total",
                "Client connections accepted.",
                &self.connections_accepted,
            ),
            (
                "enigma_connections_rejected_total",
                "Client connections refused at connections_max.",
                &self.connections_rejected,
            ),
            (
                "enigma_protocol_errors_total",
                "Client connections closed on a protocol error or limit.",
                &self.protocol_errors,
            ),
            (
                "enigma_pipeline_stalls_total",
                "Times a connection reached pipeline_depth_max and was not read until replies drained.",
                &self.pipeline_stalls,
            ),
            (
                "enigma_command_errors_total",
                "Requests with an unknown command or bad arguments.",
                &self.command_errors,
            ),
            (
                "enigma_peer_frames_sent_total",
                "Frames written to peers.",
                &self.peer_frames_sent,
            ),
            (
                "enigma_peer_frames_received_total",
                "Frames read from peers.",
                &self.peer_frames_received,
            ),
            (
                "enigma_peer_messages_dropped_total",
                "Messages dropped because their peer was not connected.",
                &self.peer_messages_dropped,
            ),
            (
                "enigma_peer_slow_drops_total",
                "Peer connections dropped for an overflowing queue or a stalled write.",
                &self.peer_slow_drops,
            ),
            (
                "enigma_peer_connects_total",
                "Peer connections established, both directions.",
                &self.peer_connects,
            ),
            (
                "enigma_peer_handshakes_refused_total",
                "Peer handshakes refused.",
                &self.peer_handshakes_refused,
            ),
            (
                "enigma_peer_bulk_dropped_total",
                "Large peer messages dropped because the peer's bulk lane was full (the link stays).",
                &self.peer_bulk_dropped,
            ),
            (
                "enigma_peer_frames_rejected_total",
                "Peer frames that failed authentication or decoding (their link was closed).",
                &self.peer_frames_rejected,
            ),
            (
                "enigma_reply_stalls_total",
                "Times a connection stopped taking commands until the client read its replies (reply_buffer_bytes_max or client_buffers_bytes_max).",
                &self.reply_stalls,
            ),
            (
                "enigma_bulk_write_stalls_total",
                "Times a connection held a large write while a peer's bulk lane was congested.",
                &self.bulk_write_stalls,
            ),
            (
                "enigma_client_buffer_refusals_total",
                "Requests refused because all client buffers together reached client_buffers_bytes_max.",
                &self.client_buffer_refusals,
            ),
            (
                "enigma_idle_timeouts_total",
                "Connections closed after the idle timeout.",
                &self.idle_timeouts,
            ),
            (
                "enigma_request_read_timeouts_total",
                "Connections closed because a request was not complete within request_read_timeout_ms.",
                &self.request_read_timeouts,
            ),
            (
                "enigma_idle_evictions_total",
                "Idle connections closed to admit a new one at connections_max.",
                &self.idle_evictions,
            ),
            (
                "enigma_client_tls_handshake_failures_total",
                "Client TLS handshakes that failed.",
                &self.tls_handshake_failures,
            ),
            (
                "enigma_reply_write_timeouts_total",
                "Connections closed because the client took none of its replies for 30 s.",
                &self.reply_write_timeouts,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out.push_str(extra);
        out
    }

    fn render_cells(&self, out: &mut String, name: &str, cells: &[AtomicU64]) {
        for (cell, value) in cells.iter().enumerate() {
            let value = value.load(Ordering::Relaxed);
            if value > 0 {
                let _ = writeln!(out, "{name}{{{}}} {value}", cell_labels(cell));
            }
        }
    }
}

fn cell_labels(cell: usize) -> String {
    let command = COMMAND_TABLE[cell / LEVEL_LABELS.len()].0;
    let level = LEVEL_LABELS[cell % LEVEL_LABELS.len()];
    format!("command=\"{command}\",level=\"{level}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_requests_appear_with_their_labels() {
        let metrics = Metrics::default();
        metrics.record(
            "set",
            Some(ConsistencyLevel::Quorum),
            Duration::from_micros(300),
            false,
        );
        metrics.record("ping", None, Duration::from_micros(5), false);
        metrics.record(
            "get",
            Some(ConsistencyLevel::All),
            Duration::from_secs(2),
            true,
        );
        let text = metrics.render("");
        assert!(text.contains("enigma_requests_total{command=\"set\",level=\"QUORUM\"} 1\n"));
        assert!(text.contains("enigma_requests_total{command=\"ping\",level=\"none\"} 1\n"));
        assert!(text.contains("enigma_request_errors_total{command=\"get\",level=\"ALL\"} 1\n"));
        assert!(text.contains(
            "enigma_request_duration_seconds_bucket{command=\"set\",level=\"QUORUM\",le=\"0.0005\"} 1\n"
        ));
        assert!(text.contains(
            "enigma_request_duration_seconds_bucket{command=\"set\",level=\"QUORUM\",le=\"0.00025\"} 0\n"
        ));
        assert!(text
            .contains("enigma_request_duration_seconds_count{command=\"get\",level=\"ALL\"} 1\n"));
        assert_eq!(metrics.requests("set", Some(ConsistencyLevel::Quorum)), 1);
        assert_eq!(metrics.requests("set", Some(ConsistencyLevel::One)), 0);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let h = Histogram::new(&BATCH_BUCKETS);
        for v in [1.0, 3.0, 3.0, 10_000.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"4\"} 3\n"));
        assert!(out.contains("x_bucket{le=\"4096\"} 3\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"));
        assert!(out.contains("x_count 4\n"));
        assert!(out.contains("x_sum 10007\n"));
    }
}
