//! Anti-entropy: replicas compare Merkle trees of each repair range and
//! stream the differences both ways, continuously and paced.
//!
//! A *repair range* is every ring range with the same replica set
//! ([`crate::ring::RepairRanges`]): one scan of the local engine feeds it.
//! One node initiates a *session* for one range at a time; in continuous
//! mode the initiator of a range is the lowest-numbered replica this node
//! holds up (so normally one node per range does the work), and an operator's
//! full pass ([`AntiEntropy::request_full_pass`]) initiates every range the
//! node is a replica of. A session:
//!
//! 1. **Trees.** The initiator takes the session's start reading of its
//!    hybrid logical clock, asks every other replica for its tree
//!    ([`Message::TreeRequest`]) and builds its own by a paced scan; each
//!    responder builds its tree the same way and answers
//!    ([`Message::TreeReply`]).
//! 2. **Pull.** For each responder whose tree differs, the initiator asks
//!    for the entries of the differing leaves ([`Message::RepairPull`]); the
//!    responder streams them ([`Message::RepairData`], one batch in flight,
//!    each acknowledged once durable). The initiator now holds, for those
//!    leaves, the newest version any replica held.
//! 3. **Push.** The initiator streams its entries of every leaf that
//!    differed anywhere to every responder, batch by batch, each batch
//!    acknowledged by all of them once durable.
//! 4. **Complete.** Every replica now holds, for every key, a version at
//!    least as new as any replica held when the session started. The
//!    initiator tells them ([`Message::RepairComplete`] with the start
//!    reading) and each records it: this is the gate on tombstone purging
//!    (see [`crate::purge`]).
//!
//! Writes that arrive meanwhile may make trees differ for no lasting
//! reason; they are streamed too, which is harmless (last write wins).
//!
//! Limits: one initiated session at a time; at most
//! [`AntiEntropyOptions::responder_sessions_max`] answered at once (beyond,
//! [`Message::RepairRefused`]); trees of bounded depth; batches of bounded
//! bytes with one in flight per direction; scans paced by
//! [`AntiEntropyOptions::scan_bytes_per_sec`] ([`pacing`]). A message that goes unanswered is
//! sent again after [`AntiEntropyOptions::resend_nanos`], and a session with
//! no progress for [`AntiEntropyOptions::session_timeout_nanos`] is given
//! up (counted) and retried later.
//!
//! Pure: the node runs the scans this module asks for ([`ScanRequest`]),
//! feeds it what they find, applies the entries it hands back, and sends
//! what it says.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use enigma_engine::Timestamp;
use serde::{Deserialize, Serialize};

mod handlers;
pub mod pacing;
mod scan;

use pacing::ScanPacer;
use scan::{entry_bytes, scan_of, Inbound, Outstanding, Scan, ScanGoal};

use crate::ids::{NodeId, RequestId};
use crate::merkle::{MerkleTree, MERKLE_DEPTH_MAX};
use crate::message::{Message, WireVersion};
use crate::ring::RepairRanges;

/// Default scan rate: 4 MiB/s reads a node's 100,000 small keys in about
/// a second and a gigabyte in about four minutes, while costing a busy
/// node a few percent of one core.
pub const SCAN_BYTES_PER_SEC_DEFAULT: u64 = 4 << 20;

/// Most repair sessions a node answers at once.
pub const RESPONDER_SESSIONS_MAX_DEFAULT: usize = 4;

/// Identifies a session across the cluster: the initiator, its boot
/// generation and a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId {
    /// The node that started the session.
    pub initiator: NodeId,
    /// Its boot generation.
    pub generation: u64,
    /// Its sequence number within that generation.
    pub seq: u64,
}

/// One entry on the wire: a key and its version.
pub type RepairEntry = (Vec<u8>, WireVersion);

/// Tunables of anti-entropy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AntiEntropyOptions {
    /// Whether sessions start on their own (an operator's full pass runs
    /// either way).
    pub continuous: bool,
    /// Bytes of keys and values scanned per second, across sessions (the
    /// initiator's and responders' scans share it).
    pub scan_bytes_per_sec: u64,
    /// Pause between the end of one continuous session and the next.
    pub interval_nanos: u64,
    /// Depth of the Merkle trees: `2^depth` leaves.
    pub merkle_depth: u8,
    /// Largest batch of streamed entries, in bytes (a single larger entry
    /// travels alone).
    pub batch_bytes_max: u64,
    /// A message unanswered for this long is sent again.
    pub resend_nanos: u64,
    /// A session with no progress for this long is given up.
    pub session_timeout_nanos: u64,
    /// Most sessions answered at once.
    pub responder_sessions_max: usize,
    /// **A deliberate bug, for proving the simulator's checks bite**: the
    /// initiator skips the push phase, so differences travel one way only.
    /// Off by default; no command sets it.
    pub bug_stream_one_way: bool,
}

impl Default for AntiEntropyOptions {
    fn default() -> Self {
        Self {
            continuous: true,
            scan_bytes_per_sec: SCAN_BYTES_PER_SEC_DEFAULT,
            interval_nanos: 10_000_000_000,
            merkle_depth: 10,
            batch_bytes_max: 256 * 1024,
            resend_nanos: 2_000_000_000,
            session_timeout_nanos: 60_000_000_000,
            responder_sessions_max: RESPONDER_SESSIONS_MAX_DEFAULT,
            bug_stream_one_way: false,
        }
    }
}

impl AntiEntropyOptions {
    /// Checks the bounds.
    ///
    /// # Errors
    /// A description of the first bad value.
    pub fn validate(&self) -> Result<(), String> {
        if self.merkle_depth > MERKLE_DEPTH_MAX {
            return Err(format!(
                "merkle depth {} exceeds {MERKLE_DEPTH_MAX}",
                self.merkle_depth
            ));
        }
        if self.scan_bytes_per_sec == 0 || self.batch_bytes_max == 0 {
            return Err("anti-entropy byte budgets must be positive".into());
        }
        if self.responder_sessions_max == 0 {
            return Err("responder_sessions_max must be positive".into());
        }
        if self.resend_nanos == 0 || self.session_timeout_nanos < self.resend_nanos {
            return Err("session timeout must be at least the resend interval".into());
        }
        Ok(())
    }
}

/// When a range was last repaired on every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// The hybrid logical clock reading at which that session started:
    /// every replica holds every version that existed anywhere then.
    pub started_hlc: u64,
    /// This node's wall clock when it learned of the completion.
    pub completed_wall_nanos: u64,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AntiEntropyStats {
    /// Ranges whose trees were compared (sessions that reached the diff).
    pub ranges_compared: u64,
    /// Sessions completed, as initiator.
    pub sessions_completed: u64,
    /// Sessions given up (timeout, refusal, a replica down).
    pub sessions_aborted: u64,
    /// Entries this node streamed to others.
    pub keys_sent: u64,
    /// Entries this node received and applied.
    pub keys_received: u64,
    /// Repair messages refused (unknown session, wrong shape, wrong range).
    pub messages_refused: u64,
    /// Bytes of keys and values the scans read (paced by
    /// [`AntiEntropyOptions::scan_bytes_per_sec`]).
    pub bytes_scanned: u64,
}

/// What an operator's full pass reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FullPassReport {
    /// Ranges compared and repaired.
    pub ranges_compared: u64,
    /// Ranges that could not be repaired (a replica down or silent).
    pub ranges_failed: u64,
    /// Entries exchanged (sent plus received).
    pub keys_exchanged: u64,
    /// Monotonic nanoseconds the pass took.
    pub nanos: u64,
}

/// A full pass that finished: answer `request` with `report`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedPass {
    /// The operator's request.
    pub request: RequestId,
    /// What it did.
    pub report: FullPassReport,
}

/// What the node must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a message.
    Send { to: NodeId, message: Message },
    /// Write these entries (last write wins), then, if every write
    /// succeeded, send `ack` to `to`; if one failed, tell
    /// [`AntiEntropy::apply_failed`].
    ApplyThenAck {
        entries: Vec<RepairEntry>,
        to: NodeId,
        ack: Message,
    },
    /// A range was repaired everywhere: the purge gate may move.
    Repaired { range: usize },
    /// A full pass finished.
    PassFinished(FinishedPass),
}

/// Which scan a [`ScanRequest`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScanOwner {
    /// The session this node initiated.
    Initiated,
    /// A session this node answers.
    Responding(SessionId),
}

/// A scan the node should advance: from just after `resume_after` (the
/// start if `None`) over client keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    /// Whose scan.
    pub owner: ScanOwner,
    /// Where it stopped.
    pub resume_after: Option<Vec<u8>>,
}

/// The phases of an initiated session.
#[derive(Debug, Clone)]
enum Phase {
    Trees {
        scan: Scan,
        trees: BTreeMap<NodeId, MerkleTree>,
    },
    Pull {
        /// The leaves that differed, per responder (only those that differ).
        diffs: BTreeMap<NodeId, Vec<u32>>,
        inbound: BTreeMap<NodeId, Inbound>,
    },
    Push {
        scan: Scan,
        next_seq: u64,
        outstanding: Option<Outstanding>,
    },
}

/// The session this node initiated.
#[derive(Debug, Clone)]
struct Initiated {
    id: SessionId,
    range: usize,
    peers: Vec<NodeId>,
    started_hlc: u64,
    phase: Phase,
    /// Leaves that differed with anyone: what the push sends.
    differing: BTreeSet<u32>,
    last_progress_mono_nanos: u64,
    last_sent_mono_nanos: u64,
    /// Part of an operator's full pass.
    manual: bool,
}

/// A session this node answers.
#[derive(Debug, Clone)]
struct Responding {
    range: usize,
    depth: u8,
    /// The tree scan, then the pull's stream scan, if asked for.
    scan: Scan,
    /// The tree, once built (kept to answer a repeated request).
    tree: Option<Vec<u64>>,
    next_seq: u64,
    outstanding: Option<Outstanding>,
    /// The initiator's push.
    inbound: Inbound,
    last_progress_mono_nanos: u64,
}

/// An operator's full pass in progress.
#[derive(Debug, Clone)]
struct FullPass {
    request: RequestId,
    ranges_left: VecDeque<usize>,
    report: FullPassReport,
    started_mono_nanos: u64,
    keys_at_start: u64,
}

/// Anti-entropy at one node.
#[derive(Debug, Clone)]
pub struct AntiEntropy {
    me: NodeId,
    generation: u64,
    options: AntiEntropyOptions,
    ranges: RepairRanges,
    /// The ranges this node is a replica of.
    mine: Vec<usize>,
    /// Round-robin position in `mine` for continuous sessions.
    cursor: usize,
    next_seq: u64,
    next_start_mono_nanos: u64,
    initiated: Option<Initiated>,
    responding: BTreeMap<SessionId, Responding>,
    repaired: Vec<Option<Repaired>>,
    passes: VecDeque<FullPass>,
    pacer: ScanPacer,
    stats: AntiEntropyStats,
}

impl AntiEntropy {
    /// Anti-entropy for node `me` of boot generation `generation`.
    pub fn new(
        me: NodeId,
        generation: u64,
        ranges: RepairRanges,
        options: AntiEntropyOptions,
        now_mono_nanos: u64,
    ) -> Self {
        let mine = (0..ranges.len())
            .filter(|&r| ranges.replicas(r).contains(&me))
            .collect();
        let repaired = vec![None; ranges.len()];
        Self {
            me,
            generation,
            next_start_mono_nanos: now_mono_nanos.saturating_add(options.interval_nanos),
            pacer: ScanPacer::new(options.scan_bytes_per_sec, now_mono_nanos),
            options,
            ranges,
            mine,
            cursor: 0,
            next_seq: 0,
            initiated: None,
            responding: BTreeMap::new(),
            repaired,
            passes: VecDeque::new(),
            stats: AntiEntropyStats::default(),
        }
    }

    /// The options.
    pub fn options(&self) -> &AntiEntropyOptions {
        &self.options
    }

    /// The repair ranges.
    pub fn ranges(&self) -> &RepairRanges {
        &self.ranges
    }

    /// Counters.
    pub fn stats(&self) -> &AntiEntropyStats {
        &self.stats
    }

    /// When each range was last repaired everywhere, as known here.
    pub fn repaired(&self) -> &[Option<Repaired>] {
        &self.repaired
    }

    /// The ranges this node is a replica of.
    pub fn ranges_mine(&self) -> &[usize] {
        &self.mine
    }

    /// Wall time of the least recent repair among this node's ranges; 0 if
    /// any has not been repaired since this node started.
    pub fn oldest_repair_wall_nanos(&self) -> u64 {
        self.mine
            .iter()
            .map(|&r| self.repaired[r].map_or(0, |r| r.completed_wall_nanos))
            .min()
            .unwrap_or(0)
    }

    /// Whether a session is running here (initiated or answered).
    pub fn busy(&self) -> bool {
        self.initiated.is_some() || !self.responding.is_empty()
    }

    /// Queues an operator's full pass over every range of this node; it is
    /// answered through [`Action::PassFinished`].
    pub fn request_full_pass(&mut self, request: RequestId, now_mono_nanos: u64) {
        self.passes.push_back(FullPass {
            request,
            ranges_left: self.mine.iter().copied().collect(),
            report: FullPassReport::default(),
            started_mono_nanos: now_mono_nanos,
            keys_at_start: self.stats.keys_sent + self.stats.keys_received,
        });
    }

    /// Time passed: give up stalled sessions, resend what went unanswered,
    /// start a session if one is due. `is_up` is the failure detector's
    /// judgment; `hlc_now` a fresh reading for a session's start.
    pub fn tick(
        &mut self,
        now_mono_nanos: u64,
        is_up: impl Fn(NodeId) -> bool,
        hlc_now: impl FnOnce() -> u64,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let timeout = self.options.session_timeout_nanos;
        self.responding
            .retain(|_, r| now_mono_nanos.saturating_sub(r.last_progress_mono_nanos) < timeout);
        if let Some(session) = &self.initiated {
            let stalled =
                now_mono_nanos.saturating_sub(session.last_progress_mono_nanos) >= timeout;
            let peer_down = session.peers.iter().any(|&p| !is_up(p));
            if stalled || peer_down {
                self.abort(now_mono_nanos, &mut actions);
            } else {
                self.resend(now_mono_nanos, &mut actions);
            }
        }
        if self.initiated.is_none() {
            self.start_due(now_mono_nanos, &is_up, hlc_now, &mut actions);
        }
        for owner in self.responding_owners() {
            self.resend_responder(owner, now_mono_nanos, &mut actions);
        }
        actions
    }

    fn responding_owners(&self) -> Vec<SessionId> {
        self.responding.keys().copied().collect()
    }

    fn start_due(
        &mut self,
        now: u64,
        is_up: &impl Fn(NodeId) -> bool,
        hlc_now: impl FnOnce() -> u64,
        actions: &mut Vec<Action>,
    ) {
        // An operator's pass first, range by range.
        while let Some(front) = self.passes.front_mut() {
            let Some(range) = front.ranges_left.pop_front() else {
                let mut pass = self.passes.pop_front().expect("front exists");
                pass.report.nanos = now.saturating_sub(pass.started_mono_nanos);
                pass.report.keys_exchanged =
                    self.stats.keys_sent + self.stats.keys_received - pass.keys_at_start;
                actions.push(Action::PassFinished(FinishedPass {
                    request: pass.request,
                    report: pass.report,
                }));
                continue;
            };
            let peers = self.peers_of(range);
            if peers.iter().any(|&p| !is_up(p)) {
                if let Some(pass) = self.passes.front_mut() {
                    pass.report.ranges_failed += 1;
                }
                continue;
            }
            self.start(range, peers, true, now, hlc_now(), actions);
            return;
        }
        if !self.options.continuous || now < self.next_start_mono_nanos || self.mine.is_empty() {
            return;
        }
        // The next range of this node whose lowest live replica is this
        // node, and whose replicas are all up.
        for _ in 0..self.mine.len() {
            let range = self.mine[self.cursor % self.mine.len()];
            self.cursor = (self.cursor + 1) % self.mine.len();
            let replicas = self.ranges.replicas(range);
            let lowest_up = replicas.iter().copied().find(|&r| r == self.me || is_up(r));
            let peers = self.peers_of(range);
            if lowest_up == Some(self.me) && peers.iter().all(|&p| is_up(p)) {
                self.start(range, peers, false, now, hlc_now(), actions);
                return;
            }
        }
        self.next_start_mono_nanos = now.saturating_add(self.options.interval_nanos);
    }

    fn peers_of(&self, range: usize) -> Vec<NodeId> {
        self.ranges
            .replicas(range)
            .iter()
            .copied()
            .filter(|&r| r != self.me)
            .collect()
    }

    fn start(
        &mut self,
        range: usize,
        peers: Vec<NodeId>,
        manual: bool,
        now: u64,
        started_hlc: u64,
        actions: &mut Vec<Action>,
    ) {
        let id = SessionId {
            initiator: self.me,
            generation: self.generation,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        for &peer in &peers {
            actions.push(Action::Send {
                to: peer,
                message: self.tree_request(id, range),
            });
        }
        self.initiated = Some(Initiated {
            id,
            range,
            peers,
            started_hlc,
            phase: Phase::Trees {
                scan: Scan::tree(range, self.options.merkle_depth),
                trees: BTreeMap::new(),
            },
            differing: BTreeSet::new(),
            last_progress_mono_nanos: now,
            last_sent_mono_nanos: now,
            manual,
        });
    }

    fn tree_request(&self, session: SessionId, range: usize) -> Message {
        Message::TreeRequest {
            session,
            replicas: self.ranges.replicas(range).to_vec(),
            depth: self.options.merkle_depth,
        }
    }

    /// The node could not apply a batch of session `session`'s data (a full
    /// disk, say). As initiator, the session must not record the range as
    /// repaired: the batch counted as received when it arrived, so the
    /// session is aborted and a later one compares again. As responder,
    /// nothing: without the acknowledgement the initiator sends the batch
    /// again.
    pub fn apply_failed(&mut self, session: SessionId, now: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.initiated.as_ref().is_some_and(|s| s.id == session) {
            self.abort(now, &mut actions);
        }
        actions
    }

    fn abort(&mut self, now: u64, actions: &mut Vec<Action>) {
        let Some(session) = self.initiated.take() else {
            return;
        };
        enigma_engine::marks::hit(enigma_engine::Mark::AntiEntropyAborted);
        self.stats.sessions_aborted += 1;
        for &peer in &session.peers {
            actions.push(Action::Send {
                to: peer,
                message: Message::RepairRefused {
                    session: session.id,
                },
            });
        }
        if session.manual {
            if let Some(pass) = self.passes.front_mut() {
                pass.report.ranges_failed += 1;
            }
        }
        self.next_start_mono_nanos = now.saturating_add(self.options.interval_nanos);
    }

    /// Sends again what the initiated session waits for, if it has waited
    /// for `resend_nanos`.
    fn resend(&mut self, now: u64, actions: &mut Vec<Action>) {
        let resend_nanos = self.options.resend_nanos;
        let Some(session) = &mut self.initiated else {
            return;
        };
        if now.saturating_sub(session.last_sent_mono_nanos) < resend_nanos {
            return;
        }
        session.last_sent_mono_nanos = now;
        let id = session.id;
        match &session.phase {
            Phase::Trees { trees, .. } => {
                let missing: Vec<NodeId> = session
                    .peers
                    .iter()
                    .copied()
                    .filter(|p| !trees.contains_key(p))
                    .collect();
                let request = Message::TreeRequest {
                    session: id,
                    replicas: self.ranges.replicas(session.range).to_vec(),
                    depth: self.options.merkle_depth,
                };
                for peer in missing {
                    actions.push(Action::Send {
                        to: peer,
                        message: request.clone(),
                    });
                }
            }
            Phase::Pull { diffs, inbound } => {
                for (&peer, leaves) in diffs {
                    if !inbound.get(&peer).is_some_and(|i| i.finished) {
                        actions.push(Action::Send {
                            to: peer,
                            message: Message::RepairPull {
                                session: id,
                                leaves: leaves.clone(),
                            },
                        });
                    }
                }
            }
            Phase::Push { outstanding, .. } => {
                if let Some(batch) = outstanding {
                    for &peer in &batch.waiting {
                        actions.push(Action::Send {
                            to: peer,
                            message: Message::RepairData {
                                session: id,
                                seq: batch.seq,
                                entries: batch.entries.clone(),
                                last: batch.last,
                            },
                        });
                    }
                }
            }
        }
    }

    fn resend_responder(&mut self, id: SessionId, now: u64, actions: &mut Vec<Action>) {
        let resend_nanos = self.options.resend_nanos;
        let Some(r) = self.responding.get_mut(&id) else {
            return;
        };
        if let Some(batch) = &mut r.outstanding {
            if now.saturating_sub(batch.sent_mono_nanos) >= resend_nanos {
                batch.sent_mono_nanos = now;
                actions.push(Action::Send {
                    to: id.initiator,
                    message: Message::RepairData {
                        session: id,
                        seq: batch.seq,
                        entries: batch.entries.clone(),
                        last: batch.last,
                    },
                });
            }
        }
    }

    /// Bytes the scans may read at `now`, shared among them; report what
    /// they read with [`Self::scanned`].
    pub fn scan_budget(&mut self, now_mono_nanos: u64) -> u64 {
        self.pacer.available(now_mono_nanos)
    }

    /// The scans read `bytes` (an entry is never split, so this may exceed
    /// the budget; the excess is repaid before the next scan).
    pub fn scanned(&mut self, bytes: u64) {
        self.pacer.spend(bytes);
        self.stats.bytes_scanned += bytes;
    }

    /// The scans that want to run now, in a fixed order.
    pub fn scans(&self) -> Vec<ScanRequest> {
        let batch = self.options.batch_bytes_max;
        let mut out = Vec::new();
        if let Some(session) = &self.initiated {
            let scan = match &session.phase {
                Phase::Trees { scan, .. } => Some(scan),
                Phase::Push {
                    scan, outstanding, ..
                } if outstanding.is_none() => Some(scan),
                _ => None,
            };
            if let Some(scan) = scan.filter(|s| s.wants_to_run(batch)) {
                out.push(ScanRequest {
                    owner: ScanOwner::Initiated,
                    resume_after: scan.resume_after.clone(),
                });
            }
        }
        for (&id, r) in &self.responding {
            if r.outstanding.is_none() && r.scan.wants_to_run(batch) {
                out.push(ScanRequest {
                    owner: ScanOwner::Responding(id),
                    resume_after: r.scan.resume_after.clone(),
                });
            }
        }
        out
    }

    fn scan_mut(&mut self, owner: ScanOwner) -> Option<&mut Scan> {
        scan_of(&mut self.initiated, &mut self.responding, owner)
    }

    /// Feeds one entry found by `owner`'s scan; returns false when the scan
    /// should pause (a batch is full).
    pub fn feed(
        &mut self,
        owner: ScanOwner,
        key: &[u8],
        timestamp: Timestamp,
        value: Option<&[u8]>,
    ) -> bool {
        let batch = self.options.batch_bytes_max;
        match scan_of(&mut self.initiated, &mut self.responding, owner) {
            Some(scan) => scan.feed(&self.ranges, batch, key, timestamp, value),
            None => false,
        }
    }

    /// `owner`'s scan stopped after `last_key` (`None`: it saw nothing),
    /// at the end of the keys if `finished`. Returns what follows.
    pub fn scan_stopped(
        &mut self,
        owner: ScanOwner,
        last_key: Option<Vec<u8>>,
        finished: bool,
        now: u64,
    ) -> Vec<Action> {
        if let Some(scan) = self.scan_mut(owner) {
            if last_key.is_some() {
                scan.resume_after = last_key;
            }
            scan.done |= finished;
        }
        let mut actions = Vec::new();
        match owner {
            ScanOwner::Initiated => self.advance_initiated(now, &mut actions),
            ScanOwner::Responding(id) => self.advance_responder(id, now, &mut actions),
        }
        actions
    }

    /// `owner`'s scan failed (a storage error): its session is given up.
    pub fn scan_failed(&mut self, owner: ScanOwner, now: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        match owner {
            ScanOwner::Initiated => self.abort(now, &mut actions),
            ScanOwner::Responding(id) => {
                if self.responding.remove(&id).is_some() {
                    actions.push(Action::Send {
                        to: id.initiator,
                        message: Message::RepairRefused { session: id },
                    });
                }
            }
        }
        actions
    }

    /// Bytes an entry costs a scan's budget.
    pub fn entry_cost(key: &[u8], value: Option<&[u8]>) -> u64 {
        entry_bytes(key, value)
    }

    fn advance_initiated(&mut self, now: u64, actions: &mut Vec<Action>) {
        let batch_bytes_max = self.options.batch_bytes_max;
        let one_way = self.options.bug_stream_one_way;
        let Some(session) = &mut self.initiated else {
            return;
        };
        let id = session.id;
        match &mut session.phase {
            Phase::Trees { scan, trees } => {
                if !scan.done || trees.len() < session.peers.len() {
                    return;
                }
                let ScanGoal::Tree(mine) = &scan.goal else {
                    unreachable!("the trees phase scans for a tree")
                };
                let diffs: BTreeMap<NodeId, Vec<u32>> = trees
                    .iter()
                    .map(|(&peer, theirs)| (peer, mine.diff(theirs)))
                    .filter(|(_, d)| !d.is_empty())
                    .collect();
                self.stats.ranges_compared += 1;
                if let Some(pass) = self.passes.front_mut().filter(|_| session.manual) {
                    pass.report.ranges_compared += 1;
                }
                session.differing = diffs.values().flatten().copied().collect();
                session.last_progress_mono_nanos = now;
                session.last_sent_mono_nanos = now;
                if diffs.is_empty() {
                    self.complete(now, actions);
                    return;
                }
                enigma_engine::marks::hit(enigma_engine::Mark::AntiEntropyDiffered);
                for (&peer, leaves) in &diffs {
                    actions.push(Action::Send {
                        to: peer,
                        message: Message::RepairPull {
                            session: id,
                            leaves: leaves.clone(),
                        },
                    });
                }
                session.phase = Phase::Pull {
                    diffs,
                    inbound: BTreeMap::new(),
                };
            }
            Phase::Pull { diffs, inbound } => {
                let all_in = diffs
                    .keys()
                    .all(|p| inbound.get(p).is_some_and(|i| i.finished));
                if !all_in {
                    return;
                }
                if one_way {
                    self.complete(now, actions);
                    return;
                }
                session.phase = Phase::Push {
                    scan: Scan::stream(
                        session.range,
                        self.options.merkle_depth,
                        session.differing.clone(),
                    ),
                    next_seq: 0,
                    outstanding: None,
                };
                session.last_progress_mono_nanos = now;
            }
            Phase::Push {
                scan,
                next_seq,
                outstanding,
            } => {
                if outstanding.is_some() {
                    return;
                }
                let Some((entries, last)) = scan.take_batch(batch_bytes_max) else {
                    return;
                };
                enigma_engine::marks::hit(enigma_engine::Mark::AntiEntropyPushed);
                self.stats.keys_sent += (entries.len() * session.peers.len()) as u64;
                let seq = *next_seq;
                *next_seq += 1;
                for &peer in &session.peers {
                    actions.push(Action::Send {
                        to: peer,
                        message: Message::RepairData {
                            session: id,
                            seq,
                            entries: entries.clone(),
                            last,
                        },
                    });
                }
                *outstanding = Some(Outstanding {
                    seq,
                    entries,
                    last,
                    waiting: session.peers.iter().copied().collect(),
                    sent_mono_nanos: now,
                });
                session.last_sent_mono_nanos = now;
            }
        }
    }

    fn complete(&mut self, now: u64, actions: &mut Vec<Action>) {
        let Some(session) = self.initiated.take() else {
            return;
        };
        for &peer in &session.peers {
            actions.push(Action::Send {
                to: peer,
                message: Message::RepairComplete {
                    session: session.id,
                    started_hlc: session.started_hlc,
                },
            });
        }
        self.stats.sessions_completed += 1;
        self.next_start_mono_nanos = now.saturating_add(self.options.interval_nanos);
        self.record_repaired(session.range, session.started_hlc, actions);
    }

    /// Records that `range` was repaired everywhere as of `started_hlc`;
    /// the node sets the wall time with [`Self::set_repaired_wall`].
    fn record_repaired(&mut self, range: usize, started_hlc: u64, actions: &mut Vec<Action>) {
        let entry = &mut self.repaired[range];
        if entry.is_some_and(|r| r.started_hlc >= started_hlc) {
            return;
        }
        *entry = Some(Repaired {
            started_hlc,
            completed_wall_nanos: 0,
        });
        actions.push(Action::Repaired { range });
    }

    /// Sets the wall time at which `range`'s latest repair became known
    /// here (the node calls it on [`Action::Repaired`]).
    pub fn set_repaired_wall(&mut self, range: usize, wall_nanos: u64) {
        if let Some(r) = &mut self.repaired[range] {
            r.completed_wall_nanos = wall_nanos;
        }
    }

    fn advance_responder(&mut self, id: SessionId, now: u64, actions: &mut Vec<Action>) {
        let batch_bytes_max = self.options.batch_bytes_max;
        let Some(r) = self.responding.get_mut(&id) else {
            return;
        };
        match &r.scan.goal {
            ScanGoal::Tree(tree) if r.scan.done && r.tree.is_none() => {
                let leaves = tree.leaves().to_vec();
                r.tree = Some(leaves.clone());
                r.last_progress_mono_nanos = now;
                actions.push(Action::Send {
                    to: id.initiator,
                    message: Message::TreeReply {
                        session: id,
                        leaves,
                    },
                });
            }
            ScanGoal::Stream { .. } if r.outstanding.is_none() => {
                let Some((entries, last)) = r.scan.take_batch(batch_bytes_max) else {
                    return;
                };
                self.stats.keys_sent += entries.len() as u64;
                let seq = r.next_seq;
                r.next_seq += 1;
                actions.push(Action::Send {
                    to: id.initiator,
                    message: Message::RepairData {
                        session: id,
                        seq,
                        entries: entries.clone(),
                        last,
                    },
                });
                r.outstanding = Some(Outstanding {
                    seq,
                    entries,
                    last,
                    waiting: [id.initiator].into(),
                    sent_mono_nanos: now,
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
