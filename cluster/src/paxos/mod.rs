//! Per-key Paxos for `SERIAL` operations: the acceptor's rules and stored
//! state, and the proposer's progress through one operation, both pure (no
//! I/O, no clock, no randomness of their own). `node/serial.rs` carries
//! their decisions out.
//!
//! The shape is Cassandra's Paxos v2: every key is a sequence of Paxos
//! instances; an instance is chosen when a quorum accepts it and ends when
//! it is committed, which applies its value to the key's data with a
//! timestamp above every version the proposer read, so that
//! last-write-wins agrees with the Paxos order.
//!
//! 1. **Prepare** with a ballot above any the proposer has seen. An
//!    acceptor promises to take nothing below it (durably, before the
//!    promise leaves) and answers with its accepted-but-uncommitted
//!    proposal, its latest committed ballot and the key's current version:
//!    the read rides on the prepare.
//! 2. If a promise shows an accepted proposal newer than every committed
//!    ballot in the quorum, that proposal may have been chosen: the proposer
//!    finishes it (proposes and commits its value under its own ballot and
//!    a fresh timestamp) and starts again with a new ballot. Otherwise it evaluates the operation
//!    on the newest version read: a read or a failed condition is answered
//!    at once; a change is proposed.
//! 3. **Propose**: an acceptor accepts unless it promised a higher ballot.
//!    Once a quorum accepted its own value, the value is chosen: the
//!    client is answered at once, two round trips after the start.
//! 4. **Commit**, sent behind the answer: replicas apply the value. Until
//!    a replica has, its acceptor holds the value accepted and in
//!    progress, which every later `SERIAL` operation (and a plain read at
//!    `QUORUM` or `ALL` that meets it) finishes before it answers. A
//!    proposer finishing another's value waits for a quorum of commit
//!    acknowledgements before it starts its own round, so that its next
//!    prepare does not find the same value in progress again.
//!
//! A ballot refused by too many acceptors makes the proposer back off for a
//! randomized, bounded time ([`backoff_nanos`]) and try again with a higher
//! ballot; its deadline is the node's business.

use std::collections::BTreeMap;

use enigma_engine::{Timestamp, Versioned};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// A Paxos ballot: the proposer's HLC reading, its node id and its boot
/// generation, ordered in that order. The generation makes ballots unique
/// even when a restarted node's clock repeats a reading.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    /// HLC reading when it was drawn.
    pub hlc: u64,
    /// The proposer.
    pub node: u32,
    /// The proposer's boot generation.
    pub generation: u64,
}

impl Ballot {
    /// Below every ballot a proposer draws: "none yet".
    pub const ZERO: Ballot = Ballot {
        hlc: 0,
        node: 0,
        generation: 0,
    };
}

/// A value proposed for a key under a ballot (`None`: delete the key),
/// with the timestamp its commit applies it with: above every version its
/// proposer read. A proposer that finishes another's proposal proposes the
/// same value under its own ballot with a fresh timestamp, above the old
/// one and every version it read (see `Proposer::finishing_timestamp`), so
/// a late commit of the old proposal never lands above a value chosen
/// after it, and no commit carries a timestamp older than its round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The ballot it was proposed under.
    pub ballot: Ballot,
    /// The key's new value; `None` deletes it.
    pub value: Option<Vec<u8>>,
    /// HLC part of the commit's timestamp.
    pub stamp_hlc: u64,
    /// Node part (tie-break) of the commit's timestamp.
    pub stamp_node: u32,
}

impl Proposal {
    /// The timestamp its commit applies the value with.
    pub fn timestamp(&self) -> Timestamp {
        Timestamp {
            hlc: self.stamp_hlc,
            node: self.stamp_node,
        }
    }

    /// The version its commit applies.
    pub fn version(&self) -> Versioned {
        Versioned {
            timestamp: self.timestamp(),
            value: self.value.clone(),
        }
    }
}

/// An acceptor's durable state for one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptorState {
    /// Nothing below this is accepted or promised.
    pub promised: Ballot,
    /// The latest proposal accepted and not yet known committed.
    pub accepted: Option<Proposal>,
    /// The highest ballot committed here.
    pub committed: Ballot,
}

/// What a promise tells the proposer beside the ballot it promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promise {
    /// An accepted proposal newer than the acceptor's last commit.
    pub in_progress: Option<Proposal>,
    /// The acceptor's latest committed ballot.
    pub committed: Ballot,
    /// The key's current version at the acceptor's replica.
    pub current: Option<Versioned>,
}

/// What an acceptor that may have forgotten promises and acceptances (its
/// key's range lost data; `crate::ballot_mark` explains why and where the
/// floor comes from) does with a ballot, before the usual rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterLoss {
    /// Take part as any acceptor would.
    Serve,
    /// The ballot is at or below the floor: every promise the acceptor may
    /// have forgotten is too, so it takes no part (it cannot tell whether
    /// it promised something higher).
    BelowFloor,
    /// A prepare for a key the acceptor holds no record of above the
    /// floor: it may have forgotten an acceptance of a value that was
    /// chosen, so its promise must not count toward a majority.
    Unsure,
}

/// Format version of stored acceptor state.
const STATE_VERSION: u8 = 1;

/// Bytes of a stored state beside the accepted value: version, three
/// ballots (20 bytes each), a tag and a timestamp (12 bytes).
pub const STATE_OVERHEAD_BYTES: usize = 1 + 3 * 20 + 1 + 12;

impl AcceptorState {
    /// Whether to promise `ballot`: only above every earlier promise. On
    /// `Ok` the state changed and must be durable before the promise leaves;
    /// `Err` carries the ballot already promised.
    pub fn prepare(&mut self, ballot: Ballot) -> Result<(Option<Proposal>, Ballot), Ballot> {
        if ballot <= self.promised {
            enigma_engine::marks::hit(enigma_engine::Mark::PaxosPromiseRefused);
            return Err(self.promised);
        }
        self.promised = ballot;
        let in_progress = self.accepted.clone().filter(|p| p.ballot > self.committed);
        Ok((in_progress, self.committed))
    }

    /// Whether to accept `proposal`: unless a higher ballot was promised
    /// (or, with `planted_accept_below_promise`, always: a deliberate bug).
    /// On `Ok` the state changed and must be durable before the acceptance
    /// leaves; `Err` carries the ballot promised.
    pub fn propose(
        &mut self,
        proposal: Proposal,
        planted_accept_below_promise: bool,
    ) -> Result<(), Ballot> {
        if proposal.ballot < self.promised && !planted_accept_below_promise {
            enigma_engine::marks::hit(enigma_engine::Mark::PaxosAcceptRefused);
            return Err(self.promised);
        }
        self.promised = self.promised.max(proposal.ballot);
        self.accepted = Some(proposal);
        Ok(())
    }

    /// Notes that `ballot`'s value was applied here: an accepted proposal
    /// at or below it is finished.
    pub fn commit(&mut self, ballot: Ballot) {
        self.committed = self.committed.max(ballot);
        if self
            .accepted
            .as_ref()
            .is_some_and(|p| p.ballot <= self.committed)
        {
            self.accepted = None;
        }
    }

    /// Whether this state holds a record of its key above `floor`: an
    /// acceptance or a commit of a higher ballot. Such a record came after
    /// any loss the floor covers, and tells a proposer as much as anything
    /// forgotten would have: a proposal above the floor carries every
    /// value chosen below it, and a commit above the floor ends every
    /// instance below it.
    pub fn knows_above(&self, floor: Ballot) -> bool {
        self.committed > floor || self.accepted.as_ref().is_some_and(|p| p.ballot > floor)
    }

    /// What to do with a prepare (`prepare`) or a proposal of `ballot` when
    /// the key's range lost data under `floor` (with
    /// `planted_forget_the_loss`, a deliberate bug: serve as if nothing was
    /// lost).
    pub fn after_loss(
        &self,
        ballot: Ballot,
        prepare: bool,
        floor: Ballot,
        planted_forget_the_loss: bool,
    ) -> AfterLoss {
        if planted_forget_the_loss {
            AfterLoss::Serve
        } else if ballot <= floor {
            enigma_engine::marks::hit(enigma_engine::Mark::PaxosBelowFloor);
            AfterLoss::BelowFloor
        } else if prepare && !self.knows_above(floor) {
            enigma_engine::marks::hit(enigma_engine::Mark::PaxosPromiseWithheld);
            AfterLoss::Unsure
        } else {
            AfterLoss::Serve
        }
    }

    /// The state a key's stored Paxos record holds: nothing yet when
    /// `bytes` is `None` (no record, or a deleted one); `None` when the
    /// bytes do not decode.
    pub fn from_stored(bytes: Option<&[u8]>) -> Option<Self> {
        bytes.map_or(Some(Self::default()), Self::decode)
    }

    /// The stored bytes: version, promised, committed, tag (0 nothing
    /// accepted, 1 a deletion, 2 a value), accepted ballot, the commit
    /// timestamp (HLC u64 LE, node u32 LE), value. A ballot is HLC (u64
    /// LE), node (u32 LE), generation (u64 LE).
    pub fn encode(&self) -> Vec<u8> {
        let value_len = self
            .accepted
            .as_ref()
            .and_then(|p| p.value.as_ref())
            .map_or(0, Vec::len);
        let mut out = Vec::with_capacity(STATE_OVERHEAD_BYTES + value_len);
        out.push(STATE_VERSION);
        put_ballot(&mut out, self.promised);
        put_ballot(&mut out, self.committed);
        match &self.accepted {
            None => out.push(0),
            Some(p) => {
                out.push(if p.value.is_some() { 2 } else { 1 });
                put_ballot(&mut out, p.ballot);
                out.extend_from_slice(&p.stamp_hlc.to_le_bytes());
                out.extend_from_slice(&p.stamp_node.to_le_bytes());
                if let Some(value) = &p.value {
                    out.extend_from_slice(value);
                }
            }
        }
        out
    }

    /// Decodes what [`Self::encode`] wrote; `None` if the bytes are not a
    /// state this build knows (the engine checksums what it stores, so this
    /// means a bug or a newer format).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&version, rest) = bytes.split_first()?;
        if version != STATE_VERSION {
            return None;
        }
        let (promised, rest) = take_ballot(rest)?;
        let (committed, rest) = take_ballot(rest)?;
        let (&tag, rest) = rest.split_first()?;
        let accepted = match tag {
            0 if rest.is_empty() => None,
            1 | 2 => {
                let (ballot, rest) = take_ballot(rest)?;
                if rest.len() < 12 {
                    return None;
                }
                let stamp_hlc = u64::from_le_bytes(rest[..8].try_into().ok()?);
                let stamp_node = u32::from_le_bytes(rest[8..12].try_into().ok()?);
                let rest = &rest[12..];
                let value = match tag {
                    1 if rest.is_empty() => None,
                    1 => return None,
                    _ => Some(rest.to_vec()),
                };
                Some(Proposal {
                    ballot,
                    value,
                    stamp_hlc,
                    stamp_node,
                })
            }
            _ => return None,
        };
        Some(Self {
            promised,
            accepted,
            committed,
        })
    }
}

fn put_ballot(out: &mut Vec<u8>, ballot: Ballot) {
    out.extend_from_slice(&ballot.hlc.to_le_bytes());
    out.extend_from_slice(&ballot.node.to_le_bytes());
    out.extend_from_slice(&ballot.generation.to_le_bytes());
}

fn take_ballot(bytes: &[u8]) -> Option<(Ballot, &[u8])> {
    if bytes.len() < 20 {
        return None;
    }
    let hlc = u64::from_le_bytes(bytes[..8].try_into().ok()?);
    let node = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    let generation = u64::from_le_bytes(bytes[12..20].try_into().ok()?);
    Some((
        Ballot {
            hlc,
            node,
            generation,
        },
        &bytes[20..],
    ))
}

/// What must hold of the key's current value for a change to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Always (an unconditional write through Paxos).
    Any,
    /// The key is absent (`SET NX`).
    Absent,
    /// The key holds a value (`SET XX`).
    Present,
    /// The key holds exactly this value (`IFEQ`, `DELIFEQ`).
    Equals(Vec<u8>),
}

/// What a change makes of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Set it to this value.
    Put(Vec<u8>),
    /// Delete it.
    Delete,
    /// Add this to its value read as a decimal 64-bit integer (absent: 0).
    Incr(i64),
}

/// Why a change cannot be computed from the current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeError {
    /// `Incr` of a value that is not a decimal 64-bit integer.
    NotAnInteger,
    /// `Incr` past the range of a 64-bit integer.
    Overflow,
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotAnInteger => "value is not an integer or out of range",
            Self::Overflow => "increment or decrement would overflow",
        })
    }
}

/// The key's new value (`None`: deleted) if `condition` holds of
/// `current`; `Ok(None)` if it does not.
///
/// # Errors
/// An increment of a value that is not an integer, or that overflows.
#[allow(clippy::option_option)]
pub fn evaluate(
    current: Option<&[u8]>,
    condition: &Condition,
    change: &Change,
) -> Result<Option<Option<Vec<u8>>>, ChangeError> {
    let holds = match condition {
        Condition::Any => true,
        Condition::Absent => current.is_none(),
        Condition::Present => current.is_some(),
        Condition::Equals(expected) => current == Some(expected.as_slice()),
    };
    if !holds {
        return Ok(None);
    }
    Ok(Some(match change {
        Change::Put(value) => Some(value.clone()),
        Change::Delete => None,
        Change::Incr(by) => {
            let old = match current {
                None => 0,
                Some(bytes) => parse_integer(bytes).ok_or(ChangeError::NotAnInteger)?,
            };
            let new = old.checked_add(*by).ok_or(ChangeError::Overflow)?;
            Some(new.to_string().into_bytes())
        }
    }))
}

/// A value as Redis reads an integer: optional minus, decimal digits, no
/// leading zeros or plus sign, within 64 bits.
fn parse_integer(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    if !canonical {
        return None;
    }
    text.parse().ok()
}

/// What one `SERIAL` operation does once it has read the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialOp {
    /// Answer the current value.
    Read,
    /// Apply `change` if `condition` holds.
    Cas {
        /// What must hold.
        condition: Condition,
        /// What to do then.
        change: Change,
    },
}

/// How a `SERIAL` operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialOutcome {
    /// The key's value before the operation (for a read: its value).
    pub previous: Option<Versioned>,
    /// The value it committed, with its timestamp; `None` if it changed
    /// nothing (a read, or a condition that did not hold).
    pub committed: Option<Versioned>,
}

/// What the proposer asks its node to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposerStep {
    /// Nothing yet: wait for more answers.
    Wait,
    /// Send this proposal to every replica.
    Propose(Proposal),
    /// Send this commit to every replica: apply `version` as of `ballot`.
    Commit {
        /// The committed ballot.
        ballot: Ballot,
        /// The value and the timestamp it is applied with.
        version: Versioned,
    },
    /// Our own value is chosen (a quorum accepted it): send this commit to
    /// every replica and answer `outcome` now, without waiting for the
    /// commit's acknowledgements. The commit carries exactly the version
    /// the answer reports.
    Chosen {
        /// The chosen ballot.
        ballot: Ballot,
        /// The value and the timestamp the commit applies it with.
        version: Versioned,
        /// What to answer.
        outcome: SerialOutcome,
    },
    /// The ballot lost (or an in-progress proposal was finished): draw a
    /// new ballot above [`Proposer::highest_seen`] and prepare again, after
    /// [`backoff_nanos`] if `backoff`.
    Restart {
        /// Whether to wait first (lost to a competing ballot).
        backoff: bool,
    },
    /// The operation is decided.
    Done(Result<SerialOutcome, ChangeError>),
    /// Our own value lost its round after an acceptor took it: any later
    /// proposer may yet finish it, so the outcome is unknown (answered as a
    /// timeout; trying again could apply the change twice or report a
    /// change that happened as refused).
    InDoubt,
}

/// Where the proposer is in its current round.
#[derive(Debug, Clone)]
enum Phase {
    Preparing {
        promises: BTreeMap<NodeId, Promise>,
    },
    Proposing {
        /// The value and timestamp to commit once a quorum accepts.
        version: Versioned,
        /// Finishing another proposer's value rather than our own.
        finishing: bool,
        previous: Option<Versioned>,
        accepted: Vec<NodeId>,
    },
    /// Finishing another proposer's value: its commit is out, and the
    /// round waits for a quorum to apply it before our own starts.
    Committing {
        acked: Vec<NodeId>,
    },
    Idle,
}

/// One `SERIAL` operation's proposer: fed the acceptors' answers, it says
/// what to do next.
#[derive(Debug, Clone)]
pub struct Proposer {
    me: NodeId,
    op: SerialOp,
    replicas: usize,
    quorum: usize,
    ballot: Ballot,
    phase: Phase,
    refused: Vec<NodeId>,
    highest_seen: Ballot,
    rounds: u32,
    /// Whether our own value was ever proposed (a change may then have
    /// been applied).
    proposed_own: bool,
    planted_ignore_in_progress: bool,
    planted_finish_with_stale_stamp: bool,
    planted_answer_after_first_acceptance: bool,
}

impl Proposer {
    /// A proposer at node `me` for `op` on a key with `replicas` replicas,
    /// of which `quorum` must answer each phase.
    pub fn new(me: NodeId, op: SerialOp, replicas: usize, quorum: usize) -> Self {
        Self {
            me,
            op,
            replicas,
            quorum,
            ballot: Ballot::ZERO,
            phase: Phase::Idle,
            refused: Vec::new(),
            highest_seen: Ballot::ZERO,
            rounds: 0,
            proposed_own: false,
            planted_ignore_in_progress: false,
            planted_finish_with_stale_stamp: false,
            planted_answer_after_first_acceptance: false,
        }
    }

    /// **A deliberate bug, for proving the simulator's checks bite**: the
    /// proposer ignores accepted-but-uncommitted proposals in the promises
    /// and proposes its own value over them (the classic Paxos bug).
    pub fn planting_ignore_in_progress(mut self, on: bool) -> Self {
        self.planted_ignore_in_progress = on;
        self
    }

    /// **A deliberate bug, for proving the simulator's checks bite**: a
    /// proposal found unfinished is committed with the timestamp it was
    /// first proposed with, however old (and its replicas, with the same
    /// switch, apply a commit however late).
    pub fn planting_finish_with_stale_stamp(mut self, on: bool) -> Self {
        self.planted_finish_with_stale_stamp = on;
        self
    }

    /// **A deliberate bug, for proving the simulator's checks bite**: our
    /// own value counts as chosen (committed and answered) once one
    /// acceptor took it, not a quorum.
    pub fn planting_answer_after_first_acceptance(mut self, on: bool) -> Self {
        self.planted_answer_after_first_acceptance = on;
        self
    }

    /// The operation.
    pub fn op(&self) -> &SerialOp {
        &self.op
    }

    /// The current round's ballot.
    pub fn ballot(&self) -> Ballot {
        self.ballot
    }

    /// The highest ballot any answer showed: the next must exceed it.
    pub fn highest_seen(&self) -> Ballot {
        self.highest_seen.max(self.ballot)
    }

    /// Whether our own value was ever proposed: if not, an operation that
    /// ends now applied nothing.
    pub fn proposed_own(&self) -> bool {
        self.proposed_own
    }

    /// Rounds started so far (1 after the first prepare).
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Acceptors that answered the current phase (for a timeout's report).
    pub fn answered(&self) -> usize {
        match &self.phase {
            Phase::Preparing { promises } => promises.len(),
            Phase::Proposing { accepted, .. } => accepted.len(),
            Phase::Committing { acked, .. } => acked.len(),
            Phase::Idle => 0,
        }
    }

    /// The acceptors that must answer each phase.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Starts a round with `ballot` (above [`Self::highest_seen`]): the
    /// node sends a prepare to every replica.
    pub fn start(&mut self, ballot: Ballot) {
        debug_assert!(ballot > self.highest_seen());
        self.ballot = ballot;
        self.rounds += 1;
        self.refused.clear();
        self.phase = Phase::Preparing {
            promises: BTreeMap::new(),
        };
    }

    /// Takes in `from`'s promise of `ballot`.
    pub fn on_promise(&mut self, from: NodeId, ballot: Ballot, promise: Promise) -> ProposerStep {
        let Phase::Preparing { promises } = &mut self.phase else {
            return ProposerStep::Wait;
        };
        if ballot != self.ballot {
            return ProposerStep::Wait;
        }
        self.highest_seen = self.highest_seen.max(promise.committed);
        promises.insert(from, promise);
        if promises.len() < self.quorum {
            return ProposerStep::Wait;
        }
        let promises = std::mem::take(promises);
        self.decide_after_prepare(&promises)
    }

    fn decide_after_prepare(&mut self, promises: &BTreeMap<NodeId, Promise>) -> ProposerStep {
        let committed = promises
            .values()
            .map(|p| p.committed)
            .max()
            .unwrap_or(Ballot::ZERO);
        let in_progress = promises
            .values()
            .filter_map(|p| p.in_progress.as_ref())
            .filter(|p| p.ballot > committed)
            .max_by_key(|p| p.ballot)
            .filter(|_| !self.planted_ignore_in_progress);
        let current = promises
            .values()
            .filter_map(|p| p.current.as_ref())
            .max_by_key(|v| v.timestamp)
            .cloned();
        if let Some(unfinished) = in_progress {
            enigma_engine::marks::hit(enigma_engine::Mark::PaxosInProgressFinished);
            let version = Versioned {
                timestamp: self.finishing_timestamp(current.as_ref(), unfinished.timestamp()),
                value: unfinished.value.clone(),
            };
            return self.propose(version, true, current);
        }
        let timestamp = self.commit_timestamp(current.as_ref());
        let (condition, change) = match &self.op {
            SerialOp::Read => {
                self.phase = Phase::Idle;
                return ProposerStep::Done(Ok(SerialOutcome {
                    previous: current,
                    committed: None,
                }));
            }
            SerialOp::Cas { condition, change } => (condition.clone(), change.clone()),
        };
        let value = current.as_ref().and_then(|v| v.value.as_deref());
        match evaluate(value, &condition, &change) {
            Err(e) => {
                self.phase = Phase::Idle;
                ProposerStep::Done(Err(e))
            }
            Ok(None) => {
                enigma_engine::marks::hit(enigma_engine::Mark::PaxosConditionFailed);
                self.phase = Phase::Idle;
                ProposerStep::Done(Ok(SerialOutcome {
                    previous: current,
                    committed: None,
                }))
            }
            Ok(Some(value)) => self.propose(Versioned { timestamp, value }, false, current),
        }
    }

    /// The commit's timestamp: the ballot's reading, raised above every
    /// version read, so that last-write-wins orders it after them.
    fn commit_timestamp(&self, current: Option<&Versioned>) -> Timestamp {
        let floor = current.map_or(0, |v| v.timestamp.hlc.saturating_add(1));
        Timestamp {
            hlc: self.ballot.hlc.max(floor),
            node: self.me.0,
        }
    }

    /// The timestamp a proposal found unfinished is committed with: its
    /// own (with [`Self::planting_finish_with_stale_stamp`], a deliberate
    /// bug), or, as here, this round's commit timestamp raised above its
    /// own. It may have been proposed long ago (its proposer paused or cut
    /// off), and a replica takes a commit no later after its timestamp
    /// than it takes a write ([`crate::NodeOptions::write_lateness_max_nanos`]):
    /// tombstone purging counts on every version at or below a timestamp
    /// having reached its replicas by then. A stale stamp committed late
    /// could be a tombstone purged at once on one replica while another
    /// still holds the value it deleted. Re-stamped, the value stays the
    /// one chosen, and its commit still lands above every version read
    /// and above any earlier commit of the same proposal.
    fn finishing_timestamp(&self, current: Option<&Versioned>, proposed: Timestamp) -> Timestamp {
        if self.planted_finish_with_stale_stamp {
            return proposed;
        }
        let fresh = self.commit_timestamp(current);
        Timestamp {
            hlc: fresh.hlc.max(proposed.hlc.saturating_add(1)),
            node: fresh.node,
        }
    }

    fn propose(
        &mut self,
        version: Versioned,
        finishing: bool,
        previous: Option<Versioned>,
    ) -> ProposerStep {
        let proposal = Proposal {
            ballot: self.ballot,
            value: version.value.clone(),
            stamp_hlc: version.timestamp.hlc,
            stamp_node: version.timestamp.node,
        };
        self.refused.clear();
        self.proposed_own |= !finishing;
        self.phase = Phase::Proposing {
            version,
            finishing,
            previous,
            accepted: Vec::new(),
        };
        ProposerStep::Propose(proposal)
    }

    /// Takes in `from`'s acceptance of `ballot`.
    pub fn on_accepted(&mut self, from: NodeId, ballot: Ballot) -> ProposerStep {
        let Phase::Proposing {
            version,
            finishing,
            previous,
            accepted,
        } = &mut self.phase
        else {
            return ProposerStep::Wait;
        };
        if ballot != self.ballot || accepted.contains(&from) {
            return ProposerStep::Wait;
        }
        accepted.push(from);
        if self.replicas - self.refused.len() < self.quorum {
            // Too many refused for a quorum; this one took our value.
            let own = !*finishing;
            self.phase = Phase::Idle;
            return if own {
                ProposerStep::InDoubt
            } else {
                ProposerStep::Restart { backoff: true }
            };
        }
        let chosen_at = if self.planted_answer_after_first_acceptance && !*finishing {
            1
        } else {
            self.quorum
        };
        if accepted.len() < chosen_at {
            return ProposerStep::Wait;
        }
        let version = version.clone();
        if !*finishing {
            // Chosen: a quorum holds it durably, so every later prepare's
            // quorum meets it (or its commit). The commit goes behind the
            // answer.
            let outcome = SerialOutcome {
                previous: previous.take(),
                committed: Some(version.clone()),
            };
            self.phase = Phase::Idle;
            return ProposerStep::Chosen {
                ballot: self.ballot,
                version,
                outcome,
            };
        }
        self.phase = Phase::Committing { acked: Vec::new() };
        ProposerStep::Commit {
            ballot: self.ballot,
            version,
        }
    }

    /// Takes in `from`'s acknowledgement that it applied the commit of
    /// `ballot`.
    pub fn on_commit_ack(&mut self, from: NodeId, ballot: Ballot) -> ProposerStep {
        let Phase::Committing { acked } = &mut self.phase else {
            return ProposerStep::Wait;
        };
        if ballot != self.ballot || acked.contains(&from) {
            return ProposerStep::Wait;
        }
        acked.push(from);
        if acked.len() < self.quorum {
            return ProposerStep::Wait;
        }
        // Only a finishing round commits in this phase (our own value is
        // answered once chosen): someone else's value is in place; now
        // ours, on a fresh ballot, without waiting: no one competed.
        self.phase = Phase::Idle;
        ProposerStep::Restart { backoff: false }
    }

    /// Takes in `from`'s refusal of `ballot` (it promised `promised`): once
    /// too many refused for a quorum to remain, the round is lost.
    pub fn on_refused(&mut self, from: NodeId, ballot: Ballot, promised: Ballot) -> ProposerStep {
        self.highest_seen = self.highest_seen.max(promised);
        let live = matches!(
            self.phase,
            Phase::Preparing { .. } | Phase::Proposing { .. }
        );
        if ballot != self.ballot || !live || self.refused.contains(&from) {
            return ProposerStep::Wait;
        }
        self.refused.push(from);
        if self.replicas - self.refused.len() >= self.quorum {
            return ProposerStep::Wait;
        }
        if let Phase::Proposing {
            finishing: false, ..
        } = &self.phase
        {
            // Our own value lost. Even a refusal from every acceptor does
            // not show that none took it: an acceptor may have accepted it,
            // its answer lost, then promised a higher ballot and refused a
            // duplicate of our proposal; a later proposer finishes it. So
            // the outcome is unknown.
            enigma_engine::marks::hit(enigma_engine::Mark::PaxosInDoubt);
            self.phase = Phase::Idle;
            return ProposerStep::InDoubt;
        }
        enigma_engine::marks::hit(enigma_engine::Mark::PaxosBallotLost);
        self.phase = Phase::Idle;
        ProposerStep::Restart { backoff: true }
    }
}

/// The first backoff after a lost ballot.
pub const BACKOFF_MIN_NANOS: u64 = 1_000_000;
/// The longest backoff: it doubles from [`BACKOFF_MIN_NANOS`] up to this.
pub const BACKOFF_MAX_NANOS: u64 = 64_000_000;

/// How long to wait before round `round` (1 after the first lost ballot):
/// drawn between half and all of a cap that doubles each round from
/// [`BACKOFF_MIN_NANOS`] to [`BACKOFF_MAX_NANOS`], so competing proposers
/// spread out.
pub fn backoff_nanos(round: u32, rng: &mut impl Rng) -> u64 {
    let doublings = round.saturating_sub(1).min(16);
    let cap = BACKOFF_MIN_NANOS
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX_NANOS);
    rng.random_range(cap / 2..=cap)
}

#[cfg(test)]
mod tests;
