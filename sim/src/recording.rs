//! What a run's picture needs (`enigma sim --seed S --html FILE`),
//! collected during the run only when asked for: fault spans and marks on
//! the node lanes, the messages between nodes (a bounded, evenly thinned
//! sample), the coordinator of each client attempt, the phases and when
//! each violation was found. The recording only observes: it draws no
//! random number and feeds nothing back, so a recorded run has the digest
//! of an unrecorded one. [`crate::html`] renders it.

use std::collections::BTreeMap;

use enigma_checker::OpId;

/// Messages kept at most during a run; past it every other one is dropped
/// and only every `stride`-th later one is kept, so the sample stays even
/// over the whole run.
pub const MESSAGES_KEPT_MAX: usize = 200_000;

/// What a span on a node lane (or across the network) marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpanKind {
    /// The node is down (crashed or stopped), until it restarts.
    Down,
    /// The node's process is paused.
    Pause,
    /// The node's disk reads badly (flipped bits, failed reads, latent
    /// sectors).
    ReadFaults,
    /// The node's disk is full.
    DiskFull,
    /// A partition: `cut` links drop messages.
    Partition,
    /// Links clogged one by one (swizzle).
    Clog,
}

impl SpanKind {
    /// Its name on the page.
    pub fn name(self) -> &'static str {
        match self {
            SpanKind::Down => "down",
            SpanKind::Pause => "pause",
            SpanKind::ReadFaults => "bad-reads",
            SpanKind::DiskFull => "disk-full",
            SpanKind::Partition => "partition",
            SpanKind::Clog => "clog",
        }
    }
}

/// A span of virtual time during which a fault held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub kind: SpanKind,
    /// The node it holds on; `None` for network-wide spans.
    pub node: Option<usize>,
    pub start_nanos: u64,
    /// `None`: still open when the run ended.
    pub end_nanos: Option<u64>,
    /// Readable detail (the cut links, the pause length...).
    pub label: String,
    /// Directed links `(from, to)` a partition cuts or a swizzle clogs.
    pub links: Vec<(usize, usize)>,
}

/// An instant on a node lane: a clock jump, a failed sync, an armed crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub node: usize,
    pub time_nanos: u64,
    /// Short kind: `clock`, `sync-fail`, `crash-armed`, `restart`.
    pub kind: &'static str,
    pub label: String,
}

/// One message a node sent to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub from: u8,
    pub to: u8,
    /// Index into [`Recording::kinds`].
    pub kind: u8,
    pub sent_nanos: u64,
    /// When it is due at the receiver (its first copy); `None`: the network
    /// lost it at once.
    pub due_nanos: Option<u64>,
}

/// One attempt of a client operation at a coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub time_nanos: u64,
    pub node: usize,
}

/// Everything the picture shows beyond the history and the report.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub spans: Vec<Span>,
    pub marks: Vec<Mark>,
    /// Phase names and when each started.
    pub phases: Vec<(u64, &'static str)>,
    /// Each node's clock at the start: offset from true time and drift.
    pub clocks: Vec<(i64, i64)>,
    /// The sample of messages, in send order.
    pub messages: Vec<Sent>,
    /// Messages sent in all (the sample holds fewer past the cap).
    pub messages_total: u64,
    /// One message in `stride` is kept now.
    stride: u64,
    /// Message kind names, indexed by [`Sent::kind`].
    pub kinds: Vec<&'static str>,
    /// Messages sent per kind (all of them, not just the sample).
    pub kind_totals: Vec<u64>,
    /// Coordinators each operation was sent to, in order.
    pub attempts: BTreeMap<OpId, Vec<Attempt>>,
    /// When each violation was found, with its property, in the order
    /// found (checks at the end of the run add theirs at its end).
    pub violations_at: Vec<(u64, &'static str)>,
    /// Most messages kept (a setting for tests).
    messages_kept_max: usize,
}

impl Recording {
    /// An empty recording that keeps at most [`MESSAGES_KEPT_MAX`] messages.
    pub fn new() -> Self {
        Self::with_message_cap(MESSAGES_KEPT_MAX)
    }

    /// An empty recording that keeps at most `cap` messages (at least 2).
    pub fn with_message_cap(cap: usize) -> Self {
        Self {
            stride: 1,
            messages_kept_max: cap.max(2),
            ..Self::default()
        }
    }

    /// Whether the message sample was thinned.
    pub fn messages_sampled(&self) -> bool {
        self.stride > 1
    }

    /// A message `from -> to` of `kind` sent at `now`, due at `due`.
    pub fn message(
        &mut self,
        now: u64,
        from: usize,
        to: usize,
        kind: &'static str,
        due: Option<u64>,
    ) {
        let index = match self.kinds.iter().position(|k| *k == kind) {
            Some(i) => i,
            None => {
                self.kinds.push(kind);
                self.kind_totals.push(0);
                self.kinds.len() - 1
            }
        };
        self.kind_totals[index] += 1;
        let seen = self.messages_total;
        self.messages_total += 1;
        if seen % self.stride != 0 {
            return;
        }
        if self.messages.len() >= self.messages_kept_max {
            // Keep every other one, and from now on one in twice as many.
            let mut i = 0;
            self.messages.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
            if seen % self.stride != 0 {
                return;
            }
        }
        self.messages.push(Sent {
            from: u8::try_from(from).unwrap_or(u8::MAX),
            to: u8::try_from(to).unwrap_or(u8::MAX),
            kind: u8::try_from(index).unwrap_or(u8::MAX),
            sent_nanos: now,
            due_nanos: due,
        });
    }

    /// Opens a span; a span of the same kind on the same node still open is
    /// closed first.
    pub fn open(&mut self, now: u64, kind: SpanKind, node: Option<usize>, label: String) {
        self.open_links(now, kind, node, label, Vec::new());
    }

    /// Opens a span over links.
    pub fn open_links(
        &mut self,
        now: u64,
        kind: SpanKind,
        node: Option<usize>,
        label: String,
        links: Vec<(usize, usize)>,
    ) {
        self.close(now, kind, node);
        self.spans.push(Span {
            kind,
            node,
            start_nanos: now,
            end_nanos: None,
            label,
            links,
        });
    }

    /// A span whose end is known now.
    pub fn span(&mut self, now: u64, kind: SpanKind, node: usize, nanos: u64, label: String) {
        self.spans.push(Span {
            kind,
            node: Some(node),
            start_nanos: now,
            end_nanos: Some(now.saturating_add(nanos)),
            label,
            links: Vec::new(),
        });
    }

    /// Closes the open span of `kind` on `node` (if any) at `now`; closes
    /// a known-length span early when it is still running.
    pub fn close(&mut self, now: u64, kind: SpanKind, node: Option<usize>) {
        for span in self.spans.iter_mut().rev() {
            if span.kind == kind && span.node == node {
                match span.end_nanos {
                    None => span.end_nanos = Some(now),
                    Some(end) if end > now => span.end_nanos = Some(now),
                    Some(_) => {}
                }
                return;
            }
        }
    }

    /// Replaces the label of the latest span of `kind` on `node`.
    pub fn relabel_last(&mut self, kind: SpanKind, node: usize, label: String) {
        if let Some(span) = self
            .spans
            .iter_mut()
            .rev()
            .find(|s| s.kind == kind && s.node == Some(node))
        {
            span.label = label;
        }
    }

    /// An instant on a node lane.
    pub fn mark(&mut self, now: u64, node: usize, kind: &'static str, label: String) {
        self.marks.push(Mark {
            node,
            time_nanos: now,
            kind,
            label,
        });
    }

    /// The run entered `phase` at `now` (recorded once per change).
    pub fn phase(&mut self, now: u64, phase: &'static str) {
        if self.phases.last().is_some_and(|(_, p)| *p == phase) {
            return;
        }
        if phase != "safety" {
            // The faults stop with the safety phase.
            for span in &mut self.spans {
                if span.end_nanos.is_none_or(|end| end > now)
                    && matches!(span.kind, SpanKind::Partition | SpanKind::Clog)
                {
                    span.end_nanos = Some(now);
                }
            }
        }
        self.phases.push((now, phase));
    }

    /// `op` was sent to `node` at `now`.
    pub fn attempt(&mut self, now: u64, op: OpId, node: usize) {
        self.attempts.entry(op).or_default().push(Attempt {
            time_nanos: now,
            node,
        });
    }

    /// A violation of `property` was found at `now`.
    pub fn violation(&mut self, now: u64, property: &'static str) {
        self.violations_at.push((now, property));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_sample_stays_bounded_and_even() {
        let mut r = Recording::with_message_cap(100);
        for i in 0..10_000u64 {
            r.message(
                i,
                0,
                1,
                if i % 2 == 0 { "write" } else { "read" },
                Some(i + 5),
            );
        }
        assert_eq!(r.messages_total, 10_000);
        assert!(r.messages.len() <= 100, "kept {}", r.messages.len());
        assert!(r.messages.len() > 25, "kept only {}", r.messages.len());
        assert!(r.messages_sampled());
        assert_eq!(r.kind_totals.iter().sum::<u64>(), 10_000);
        // Even over the run: some kept from the first and the last tenth.
        assert!(r.messages.iter().any(|m| m.sent_nanos < 1_000));
        assert!(r.messages.iter().any(|m| m.sent_nanos >= 9_000));
        let mut sorted = r.messages.clone();
        sorted.sort_by_key(|m| m.sent_nanos);
        assert_eq!(sorted, r.messages);
    }

    #[test]
    fn spans_close_at_restart_and_when_the_faults_stop() {
        let mut r = Recording::new();
        r.open(10, SpanKind::Down, Some(1), "crash".into());
        r.open_links(20, SpanKind::Partition, None, "halves".into(), vec![(0, 1)]);
        r.span(30, SpanKind::Pause, 2, 1_000, "pause".into());
        r.close(50, SpanKind::Down, Some(1));
        r.phase(60, "heal");
        assert_eq!(r.spans[0].end_nanos, Some(50));
        assert_eq!(r.spans[1].end_nanos, Some(60));
        assert_eq!(r.spans[2].end_nanos, Some(1_030));
    }
}
