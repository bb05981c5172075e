//! Pending client operations at their coordinator: counting answers against
//! the consistency level, and blocking read repair.
//!
//! Pure bookkeeping: these types decide *what* happens next (reply, repair
//! whom); [`crate::node`] carries it out. A local replica's answer is fed in
//! exactly like a remote one.
//!
//! A replica whose storage fails says so at once (a [`ReplicaFailure`]):
//! the operation goes on with the other replicas while the level can still
//! be met, and fails at once, naming each failed replica and why, when it
//! cannot. A read that completes without a replica whose stored copy was
//! corrupt names that replica for repair: writing the winner back shadows
//! the bad entry.
//!
//! A read may carry its session's floor for the key
//! ([`crate::SessionFloor::key`]): answers that hold nothing at or above
//! it do not decide the read, however many there are. It waits for the
//! other replicas' answers, asks every replica again now and then (repair
//! and hints may have brought the version meanwhile), and at its deadline
//! fails with [`ClientError::SessionFloor`], never answering older.

use std::collections::{BTreeMap, BTreeSet};

use enigma_engine::{Timestamp, Versioned};

use crate::ids::{NodeId, RequestId};
use crate::message::{ClientError, ReplicaFailure, VersionDigest};

/// The client's error once `failures` leave too few replicas for the
/// level: `NoSpace` if every failure was a full disk, else `Storage`.
/// Either names every failed replica and why.
fn failed_level(failures: &BTreeMap<NodeId, ReplicaFailure>) -> ClientError {
    let reason = failures
        .iter()
        .map(|(node, failure)| format!("{node}: {failure}"))
        .collect::<Vec<_>>()
        .join("; ");
    if failures
        .values()
        .all(|f| matches!(f, ReplicaFailure::NoSpace { .. }))
    {
        ClientError::NoSpace { reason }
    } else {
        ClientError::Storage { reason }
    }
}

/// A client write waiting for acknowledgements.
#[derive(Debug)]
pub struct PendingWrite {
    /// The client request to answer.
    pub request: RequestId,
    /// The key's replicas; acknowledgements from anyone else are ignored.
    pub replicas: Vec<NodeId>,
    /// Replicas whose acknowledgement arrived.
    pub acked: BTreeSet<NodeId>,
    /// Acknowledgements needed.
    pub required: usize,
    /// When the coordinator gives up (monotonic).
    pub deadline_mono_nanos: u64,
    /// Enough replicas acknowledged, but buggify holds the answer until
    /// the deadline, which then answers success.
    pub held_to_deadline: bool,
    /// Replicas whose storage failed to take the write.
    failures: BTreeMap<NodeId, ReplicaFailure>,
    /// **A deliberate bug** ([`PendingWrite::planting_count_duplicates`]):
    /// every acknowledgement received, duplicates included, when the bug
    /// counts them instead of replicas.
    bug_acks_counted: Option<usize>,
}

impl PendingWrite {
    /// A write that has heard nothing yet.
    pub fn new(
        request: RequestId,
        replicas: Vec<NodeId>,
        required: usize,
        deadline_mono_nanos: u64,
    ) -> Self {
        assert!(
            required >= 1 && required <= replicas.len(),
            "level checked by the caller"
        );
        Self {
            request,
            replicas,
            acked: BTreeSet::new(),
            required,
            deadline_mono_nanos,
            held_to_deadline: false,
            failures: BTreeMap::new(),
            bug_acks_counted: None,
        }
    }

    /// **Plants a deliberate bug**, for proving that the simulator's checks
    /// bite: acknowledgements are counted as they arrive, so one delivered
    /// twice counts twice (a write at `QUORUM` may then succeed on one
    /// replica). Only [`crate::NodeOptions::bug_count_duplicate_acknowledgements`]
    /// calls it.
    pub fn planting_count_duplicates(mut self, on: bool) -> Self {
        self.bug_acks_counted = on.then_some(0);
        self
    }

    /// Takes back `from`'s acknowledgement (its write did not become
    /// durable after all: a full disk) and counts its failure.
    pub fn retract(&mut self, from: NodeId, failure: ReplicaFailure) -> Option<ClientError> {
        self.acked.remove(&from);
        self.on_failure(from, failure)
    }

    /// Counts `from`'s failure; the client's error once too few replicas
    /// are left to meet the level.
    pub fn on_failure(&mut self, from: NodeId, failure: ReplicaFailure) -> Option<ClientError> {
        if self.replicas.contains(&from) && !self.acked.contains(&from) {
            self.failures.insert(from, failure);
        }
        let still_possible = self.replicas.len() - self.failures.len();
        (still_possible < self.required).then(|| failed_level(&self.failures))
    }

    /// Counts `from`'s acknowledgement; true once enough have arrived.
    pub fn on_ack(&mut self, from: NodeId) -> bool {
        if self.replicas.contains(&from) {
            self.acked.insert(from);
            if let Some(counted) = &mut self.bug_acks_counted {
                *counted += 1;
            }
        }
        self.bug_acks_counted.unwrap_or(self.acked.len()) >= self.required
    }
}

/// Which replica a read asks for the value; every other replica is asked
/// for a digest only (Cassandra's digest reads), so that one large value
/// crosses the network once per read, not once per replica.
///
/// `None` when the coordinator `me` is itself a replica: it reads the value
/// locally. Otherwise the replicas take turns by operation number, to
/// spread the data reads.
pub fn data_replica(me: NodeId, replicas: &[NodeId], seq: u64) -> Option<NodeId> {
    if replicas.is_empty() || replicas.contains(&me) {
        return None;
    }
    let turn = (seq % replicas.len() as u64) as usize;
    Some(replicas[turn])
}

/// One replica's answer to a read.
#[derive(Debug, Clone)]
enum Answer {
    /// Its whole version (`None`: it holds nothing).
    Data(Option<Versioned>),
    /// A digest of its version (`None`: it holds nothing).
    Digest(Option<VersionDigest>),
}

impl Answer {
    fn digest(&self) -> Option<VersionDigest> {
        match self {
            Self::Data(version) => version.as_ref().map(VersionDigest::of),
            Self::Digest(digest) => *digest,
        }
    }
}

/// A client read collecting answers, then possibly fetching the newest
/// value and repairing.
///
/// One replica (or the coordinator itself) is asked for the value, the
/// others for digests. Once the level's count has answered, the newest
/// digest wins. If an answer with the value matches it, the read goes on
/// as a plain one (blocking read repair of the replicas that differ);
/// otherwise the value is fetched from a replica whose digest won, and
/// only then repaired and answered.
#[derive(Debug)]
pub struct PendingRead {
    /// The client request to answer.
    pub request: RequestId,
    /// The key being read.
    pub key: Vec<u8>,
    /// The key's replicas; answers from anyone else are ignored.
    pub replicas: Vec<NodeId>,
    /// Answers needed, and replicas that must hold the answer before it is
    /// returned.
    pub required: usize,
    /// When the coordinator gives up (monotonic).
    pub deadline_mono_nanos: u64,
    /// Each answering replica's answer.
    answers: BTreeMap<NodeId, Answer>,
    /// The replica asked for the winning value after the digests showed
    /// that no value at hand is the newest; cleared when it answers.
    fetching: Option<NodeId>,
    /// Set once `required` answers are in and the newest value is known.
    repair: Option<Repair>,
    /// Replicas whose storage failed to read the key.
    failures: BTreeMap<NodeId, ReplicaFailure>,
    /// **A deliberate bug** ([`PendingRead::planting_trust_in_the_data`]):
    /// answer with the value at hand without comparing digests.
    bug_trust_the_data: bool,
    /// The oldest version the client's session accepts: answers that hold
    /// nothing at or above it do not decide the read.
    floor: Option<Timestamp>,
    /// When the replicas were last asked (monotonic), for
    /// [`PendingRead::should_ask_again`].
    asked_mono_nanos: u64,
    /// The read's level promises to show an acknowledged `SERIAL` write
    /// (`QUORUM`, `ALL`): a replica's report of an unfinished Paxos
    /// proposal makes it finish that proposal before it answers.
    finishes_unfinished_paxos: bool,
    /// A replica reported an unfinished Paxos proposal newer than its
    /// version.
    unfinished_paxos_seen: bool,
}

/// How long a read whose session floor no answer met waits before it asks
/// every replica again: long enough for a hint or a read repair to land
/// between two rounds, short enough for a few rounds within a request's
/// deadline.
pub const SESSION_FLOOR_ASK_AGAIN_NANOS: u64 = 100_000_000;

/// Blocking read repair in progress.
#[derive(Debug)]
struct Repair {
    /// The newest version among the answers.
    winner: Versioned,
    /// Replicas known to hold `winner`.
    up_to_date: BTreeSet<NodeId>,
}

/// What a read needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadProgress {
    /// Wait for more answers or acknowledgements.
    Waiting,
    /// Answer the client with this value.
    Done(Option<Vec<u8>>),
    /// Write `winner` to these stale replicas, then keep waiting.
    Repair {
        winner: Versioned,
        stale: Vec<NodeId>,
    },
    /// Too few replicas are left to meet the level: answer this error.
    Failed(ClientError),
    /// Ask `from` for its whole version: its digest is the newest, and no
    /// answer at hand carries that value.
    Fetch { from: NodeId },
}

impl PendingRead {
    /// A read that has heard nothing yet.
    pub fn new(
        request: RequestId,
        key: Vec<u8>,
        replicas: Vec<NodeId>,
        required: usize,
        deadline_mono_nanos: u64,
    ) -> Self {
        assert!(
            required >= 1 && required <= replicas.len(),
            "level checked by the caller"
        );
        Self {
            request,
            key,
            replicas,
            required,
            deadline_mono_nanos,
            answers: BTreeMap::new(),
            fetching: None,
            repair: None,
            failures: BTreeMap::new(),
            bug_trust_the_data: false,
            floor: None,
            asked_mono_nanos: 0,
            finishes_unfinished_paxos: false,
            unfinished_paxos_seen: false,
        }
    }

    /// The read finishes an unfinished Paxos proposal a replica reports
    /// before it answers (`QUORUM` and `ALL` reads, whose answer must show
    /// every acknowledged `SERIAL` write).
    pub fn finishing_unfinished_paxos(mut self, on: bool) -> Self {
        self.finishes_unfinished_paxos = on;
        self
    }

    /// `from` reported an accepted, uncommitted Paxos proposal for the key
    /// stamped above the version it answered with.
    pub fn note_unfinished_paxos(&mut self, from: NodeId) {
        if self.replicas.contains(&from) {
            self.unfinished_paxos_seen = true;
        }
    }

    /// Whether the read, once decided, must finish an unfinished Paxos
    /// proposal (through a `SERIAL` read) before it answers.
    pub fn must_finish_paxos(&self) -> bool {
        self.finishes_unfinished_paxos && self.unfinished_paxos_seen
    }

    /// The read answers no version older than `floor` (its session's
    /// floor for the key; `None`: any), having asked the replicas at
    /// `now_mono_nanos`.
    pub fn with_floor(mut self, floor: Option<Timestamp>, now_mono_nanos: u64) -> Self {
        self.floor = floor;
        self.asked_mono_nanos = now_mono_nanos;
        self
    }

    /// Whether `newest` (the newest answer's digest) meets the floor.
    fn meets_floor(&self, newest: Option<VersionDigest>) -> bool {
        match self.floor {
            None => true,
            Some(floor) => newest.is_some_and(|d| d.timestamp() >= floor),
        }
    }

    /// The newest version among the answers.
    fn newest(&self) -> Option<VersionDigest> {
        self.answers.values().filter_map(Answer::digest).max()
    }

    /// Whether the level's count has answered but nothing at or above the
    /// session's floor: the read waits on the floor alone.
    fn awaits_floor(&self) -> bool {
        self.repair.is_none()
            && self.answers.len() >= self.required
            && !self.meets_floor(self.newest())
    }

    /// Whether the read, waiting on its floor alone, should ask every
    /// replica again at `now_mono_nanos`. If so, the answers at hand are
    /// forgotten (all below the floor) and the caller asks again.
    pub fn should_ask_again(&mut self, now_mono_nanos: u64) -> bool {
        if !self.awaits_floor()
            || now_mono_nanos < self.asked_mono_nanos + SESSION_FLOOR_ASK_AGAIN_NANOS
        {
            return false;
        }
        self.asked_mono_nanos = now_mono_nanos;
        self.answers.clear();
        self.fetching = None;
        true
    }

    /// The error of a read that reached its deadline: the session's floor
    /// unmet when the level's count did answer, else a timeout.
    pub fn deadline_error(&self) -> ClientError {
        match self.floor {
            Some(floor) if self.awaits_floor() => ClientError::SessionFloor {
                floor_hlc: floor.hlc,
                newest_hlc: self.newest().map(|d| d.hlc),
            },
            _ => ClientError::Timeout {
                answered: self.answered(),
                required: self.required,
            },
        }
    }

    /// Takes back `from`'s answer and repair acknowledgement (what it said
    /// may not be durable after all: a full disk) and counts its failure.
    pub fn retract(&mut self, from: NodeId, failure: ReplicaFailure) -> ReadProgress {
        self.answers.remove(&from);
        if let Some(repair) = &mut self.repair {
            repair.up_to_date.remove(&from);
        }
        self.on_failure(from, failure)
    }

    /// Counts `from`'s failure to read the key (also when it failed to
    /// read the value this read was fetching from it: its digest no longer
    /// counts, and the read decides again without it).
    pub fn on_failure(&mut self, from: NodeId, failure: ReplicaFailure) -> ReadProgress {
        let was_fetched = self.fetching == Some(from);
        if !self.replicas.contains(&from) || (self.answers.contains_key(&from) && !was_fetched) {
            return ReadProgress::Waiting;
        }
        if was_fetched {
            self.fetching = None;
            self.answers.remove(&from);
        }
        self.failures.insert(from, failure);
        let still_possible = self.replicas.len() - self.failures.len();
        if still_possible < self.required {
            return ReadProgress::Failed(failed_level(&self.failures));
        }
        if was_fetched && self.repair.is_none() {
            return self.decide();
        }
        ReadProgress::Waiting
    }

    /// The version the read settled on, once it has (`None` before, or
    /// when no replica held one).
    pub fn winner(&self) -> Option<&Versioned> {
        self.repair.as_ref().map(|r| &r.winner)
    }

    /// Replicas whose stored copy of the key was found corrupt: the winner
    /// should be written back to them.
    pub fn corrupt_replicas(&self) -> Vec<NodeId> {
        self.failures
            .iter()
            .filter(|(_, failure)| failure.is_corruption())
            .map(|(&node, _)| node)
            .collect()
    }

    /// **Plants a bug** when `on`: once the level's count has answered, the
    /// read returns the value it has, even when a digest shows a newer
    /// version elsewhere (a stale read). For tests that prove the checks
    /// catch it; no command line reaches it.
    pub fn planting_trust_in_the_data(mut self, on: bool) -> Self {
        self.bug_trust_the_data = on;
        self
    }

    /// How many replicas have answered (or, while repairing, are known to
    /// hold the newest version).
    pub fn answered(&self) -> usize {
        match &self.repair {
            None => self.answers.len(),
            Some(repair) => repair.up_to_date.len(),
        }
    }

    /// The timestamp of the version the read settled on, once the level's
    /// count of answers is in (`None` before that, or when no replica held
    /// a version).
    pub fn decided_timestamp(&self) -> Option<Timestamp> {
        self.repair.as_ref().map(|r| r.winner.timestamp)
    }

    /// Takes in `from`'s whole version of the key.
    pub fn on_answer(&mut self, from: NodeId, version: Option<Versioned>) -> ReadProgress {
        if !self.replicas.contains(&from) || self.failures.contains_key(&from) {
            return ReadProgress::Waiting;
        }
        match self.answers.get(&from) {
            // The value fetched from a replica that sent its digest.
            Some(Answer::Digest(_)) if self.fetching == Some(from) => {
                self.fetching = None;
            }
            Some(_) => return ReadProgress::Waiting,
            None => {}
        }
        let digest = version.as_ref().map(VersionDigest::of);
        self.answers.insert(from, Answer::Data(version));
        if self.repair.is_some() {
            return self.late_answer(from, digest);
        }
        self.decide()
    }

    /// Takes in the digest of `from`'s version of the key.
    pub fn on_digest(&mut self, from: NodeId, digest: Option<VersionDigest>) -> ReadProgress {
        if !self.replicas.contains(&from)
            || self.answers.contains_key(&from)
            || self.failures.contains_key(&from)
        {
            return ReadProgress::Waiting;
        }
        self.answers.insert(from, Answer::Digest(digest));
        if self.repair.is_some() {
            return self.late_answer(from, digest);
        }
        self.decide()
    }

    /// An answer after the read settled on its winner: count it if
    /// current, repair it if stale, ignore it if newer (a write concurrent
    /// with this read, which may be ordered after it).
    fn late_answer(&mut self, from: NodeId, digest: Option<VersionDigest>) -> ReadProgress {
        let Some(repair) = &mut self.repair else {
            return ReadProgress::Waiting;
        };
        let winner = VersionDigest::of(&repair.winner);
        if digest == Some(winner) {
            repair.up_to_date.insert(from);
            return self.progress();
        }
        if digest.map(|d| d.timestamp()) < Some(winner.timestamp()) {
            return ReadProgress::Repair {
                winner: repair.winner.clone(),
                stale: vec![from],
            };
        }
        ReadProgress::Waiting
    }

    /// With the level's count of answers in: settle on the newest version,
    /// or fetch it first.
    fn decide(&mut self) -> ReadProgress {
        if self.answers.len() < self.required {
            return ReadProgress::Waiting;
        }
        if self.bug_trust_the_data {
            let at_hand = self.answers.values().find_map(|a| match a {
                Answer::Data(version) => Some(version.clone()),
                Answer::Digest(_) => None,
            });
            if let Some(version) = at_hand {
                return ReadProgress::Done(version.and_then(|v| v.value));
            }
        }
        // Newest first; among equal timestamps (one write cannot have two
        // values, but a digest is cheap to compare whole) the larger hash,
        // so every coordinator picks the same.
        let newest = self.newest();
        if !self.meets_floor(newest) {
            // Older than the session saw: wait for the other replicas (or
            // for this read to ask again).
            return ReadProgress::Waiting;
        }
        let Some(newest) = newest else {
            return ReadProgress::Done(None);
        };
        let winner = self.answers.values().find_map(|a| match a {
            Answer::Data(Some(version)) if VersionDigest::of(version) == newest => {
                Some(version.clone())
            }
            _ => None,
        });
        let Some(winner) = winner else {
            if self.fetching.is_some() {
                return ReadProgress::Waiting;
            }
            let from = self
                .answers
                .iter()
                .find(|(_, a)| a.digest() == Some(newest))
                .map(|(&node, _)| node)
                .expect("the newest digest came from an answer");
            self.fetching = Some(from);
            return ReadProgress::Fetch { from };
        };
        let mut up_to_date = BTreeSet::new();
        let mut stale = Vec::new();
        for (&node, answer) in &self.answers {
            if answer.digest() == Some(newest) {
                up_to_date.insert(node);
            } else {
                stale.push(node);
            }
        }
        self.repair = Some(Repair {
            winner: winner.clone(),
            up_to_date,
        });
        match self.progress() {
            ReadProgress::Waiting => ReadProgress::Repair { winner, stale },
            done => done,
        }
    }

    /// Counts a repair acknowledgement from `from`.
    pub fn on_repair_ack(&mut self, from: NodeId) -> ReadProgress {
        match &mut self.repair {
            Some(repair) if self.replicas.contains(&from) => {
                repair.up_to_date.insert(from);
                self.progress()
            }
            _ => ReadProgress::Waiting,
        }
    }

    fn progress(&self) -> ReadProgress {
        match &self.repair {
            Some(repair) if repair.up_to_date.len() >= self.required => {
                ReadProgress::Done(repair.winner.value.clone())
            }
            _ => ReadProgress::Waiting,
        }
    }
}

/// Bytes of keys and values [`RecentReads`] keeps at most.
pub const RECENT_READS_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest read [`RecentReads`] keeps: copying larger values on every
/// read would cost more than the rare late repair saves (a later read
/// repairs the replica then).
pub const RECENT_READ_BYTES_MAX: usize = 64 * 1024;

/// The winners of recently finished reads, by operation sequence number,
/// so that a replica whose corruption report arrives after its read
/// finished (the level was met without it) is still repaired. Bounded in
/// bytes: the oldest go first.
#[derive(Debug, Default)]
pub struct RecentReads {
    reads: std::collections::VecDeque<(u64, Vec<u8>, Versioned)>,
    bytes: usize,
}

impl RecentReads {
    fn size(key: &[u8], winner: &Versioned) -> usize {
        key.len() + winner.value.as_ref().map_or(0, Vec::len)
    }

    /// Remembers the winner of read `seq` of `key`, unless it is larger
    /// than [`RECENT_READ_BYTES_MAX`].
    pub fn remember(&mut self, seq: u64, key: &[u8], winner: &Versioned) {
        let size = Self::size(key, winner);
        if size > RECENT_READ_BYTES_MAX {
            return;
        }
        self.bytes += size;
        self.reads.push_back((seq, key.to_vec(), winner.clone()));
        while self.bytes > RECENT_READS_BYTES_MAX {
            let (_, key, winner) = self.reads.pop_front().expect("bytes count entries");
            self.bytes -= Self::size(&key, &winner);
        }
    }

    /// The key and winner of read `seq`, if still remembered.
    pub fn find(&self, seq: u64) -> Option<(&[u8], &Versioned)> {
        self.reads
            .iter()
            .find(|(s, _, _)| *s == seq)
            .map(|(_, key, winner)| (key.as_slice(), winner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicated_acknowledgement_counts_once() {
        let replicas = vec![NodeId(1), NodeId(2), NodeId(3)];
        let mut write = PendingWrite::new(RequestId(1), replicas.clone(), 2, 0);
        assert!(!write.on_ack(NodeId(2)));
        assert!(!write.on_ack(NodeId(2)), "one replica met a quorum of two");
        assert!(write.on_ack(NodeId(3)));
        // The planted coordinator counts the duplicate.
        let mut planted =
            PendingWrite::new(RequestId(1), replicas, 2, 0).planting_count_duplicates(true);
        assert!(!planted.on_ack(NodeId(2)));
        assert!(planted.on_ack(NodeId(2)));
    }

    fn version(hlc: u64, value: &str) -> Versioned {
        Versioned {
            timestamp: Timestamp { hlc, node: 1 },
            value: Some(value.as_bytes().to_vec()),
        }
    }

    fn read(required: usize) -> PendingRead {
        PendingRead::new(
            RequestId(1),
            b"k".to_vec(),
            vec![NodeId(1), NodeId(2), NodeId(3)],
            required,
            100,
        )
    }

    #[test]
    fn agreeing_answers_complete_without_repair() {
        let mut r = read(2);
        assert_eq!(
            r.on_answer(NodeId(1), Some(version(5, "a"))),
            ReadProgress::Waiting
        );
        assert_eq!(
            r.on_answer(NodeId(2), Some(version(5, "a"))),
            ReadProgress::Done(Some(b"a".to_vec()))
        );
    }

    #[test]
    fn disagreeing_answers_repair_the_stale_replica_before_answering() {
        let mut r = read(2);
        r.on_answer(NodeId(1), Some(version(5, "a")));
        let progress = r.on_answer(NodeId(2), Some(version(9, "b")));
        assert_eq!(
            progress,
            ReadProgress::Repair {
                winner: version(9, "b"),
                stale: vec![NodeId(1)]
            }
        );
        assert_eq!(
            r.on_repair_ack(NodeId(1)),
            ReadProgress::Done(Some(b"b".to_vec()))
        );
        assert_eq!(r.decided_timestamp(), Some(version(9, "b").timestamp));
    }

    #[test]
    fn a_late_current_answer_completes_a_repair() {
        let mut r = read(2);
        r.on_answer(NodeId(1), None);
        r.on_answer(NodeId(2), Some(version(9, "b")));
        assert_eq!(
            r.on_answer(NodeId(3), Some(version(9, "b"))),
            ReadProgress::Done(Some(b"b".to_vec()))
        );
    }

    #[test]
    fn nothing_anywhere_reads_as_absent() {
        let mut r = read(2);
        r.on_answer(NodeId(1), None);
        assert_eq!(r.on_answer(NodeId(3), None), ReadProgress::Done(None));
    }

    #[test]
    fn a_newest_tombstone_reads_as_absent_after_repair() {
        let mut r = read(2);
        r.on_answer(NodeId(1), Some(version(5, "a")));
        let tomb = Versioned {
            timestamp: Timestamp { hlc: 8, node: 2 },
            value: None,
        };
        assert!(matches!(
            r.on_answer(NodeId(2), Some(tomb)),
            ReadProgress::Repair { .. }
        ));
        assert_eq!(r.on_repair_ack(NodeId(1)), ReadProgress::Done(None));
    }

    #[test]
    fn answers_from_strangers_and_duplicates_are_ignored() {
        let mut r = read(2);
        r.on_answer(NodeId(1), Some(version(5, "a")));
        assert_eq!(
            r.on_answer(NodeId(1), Some(version(5, "a"))),
            ReadProgress::Waiting
        );
        assert_eq!(
            r.on_answer(NodeId(7), Some(version(5, "a"))),
            ReadProgress::Waiting
        );
    }

    fn corrupt(node: u32) -> ReplicaFailure {
        ReplicaFailure::Corruption {
            file: "table-1.sst".to_owned(),
            offset: 4096 * u64::from(node),
            reason: "checksum mismatch".to_owned(),
        }
    }

    #[test]
    fn a_corrupt_replica_is_passed_over_and_named_for_repair() {
        let mut r = read(2);
        assert_eq!(r.on_failure(NodeId(1), corrupt(1)), ReadProgress::Waiting);
        r.on_answer(NodeId(2), Some(version(5, "a")));
        assert_eq!(
            r.on_answer(NodeId(3), Some(version(5, "a"))),
            ReadProgress::Done(Some(b"a".to_vec()))
        );
        assert_eq!(r.corrupt_replicas(), vec![NodeId(1)]);
        assert_eq!(r.winner(), Some(&version(5, "a")));
    }

    #[test]
    fn a_read_fails_at_once_naming_replicas_when_the_level_cannot_be_met() {
        let mut r = read(2);
        assert_eq!(r.on_failure(NodeId(1), corrupt(1)), ReadProgress::Waiting);
        let ReadProgress::Failed(ClientError::Storage { reason }) =
            r.on_failure(NodeId(3), corrupt(3))
        else {
            panic!("expected a storage failure");
        };
        assert!(reason.contains("n1") && reason.contains("n3"), "{reason}");
        assert!(reason.contains("table-1.sst"), "{reason}");
    }

    #[test]
    fn full_disks_at_too_many_replicas_fail_a_write_as_no_space() {
        let replicas = vec![NodeId(1), NodeId(2), NodeId(3)];
        let mut w = PendingWrite::new(RequestId(1), replicas, 2, 0);
        let full = ReplicaFailure::NoSpace {
            file: "wal-1.log".to_owned(),
        };
        assert_eq!(w.on_failure(NodeId(1), full.clone()), None);
        assert!(matches!(
            w.on_failure(NodeId(2), full),
            Some(ClientError::NoSpace { .. })
        ));
    }

    #[test]
    fn recent_reads_stay_under_their_byte_bound() {
        let mut recent = RecentReads::default();
        let big = Versioned {
            timestamp: Timestamp { hlc: 1, node: 1 },
            value: Some(vec![0; RECENT_READ_BYTES_MAX - 1]),
        };
        for seq in 0..100 {
            recent.remember(seq, b"k", &big);
            assert!(recent.bytes <= RECENT_READS_BYTES_MAX);
        }
        assert!(recent.find(99).is_some());
        assert!(recent.find(0).is_none(), "the oldest went first");
    }

    #[test]
    fn write_completes_at_the_required_count_of_distinct_replicas() {
        let replicas = vec![NodeId(1), NodeId(2), NodeId(3)];
        let mut w = PendingWrite::new(RequestId(1), replicas, 2, 0);
        assert!(!w.on_ack(NodeId(1)));
        assert!(!w.on_ack(NodeId(1)));
        assert!(!w.on_ack(NodeId(9)));
        assert!(w.on_ack(NodeId(3)));
    }

    fn digest(hlc: u64, value: &str) -> Option<VersionDigest> {
        Some(VersionDigest::of(&version(hlc, value)))
    }

    #[test]
    fn digests_that_agree_with_the_value_complete_the_read() {
        let mut r = read(2);
        assert_eq!(
            r.on_digest(NodeId(2), digest(5, "a")),
            ReadProgress::Waiting
        );
        assert_eq!(
            r.on_answer(NodeId(1), Some(version(5, "a"))),
            ReadProgress::Done(Some(b"a".to_vec()))
        );
    }

    #[test]
    fn a_newer_digest_fetches_its_value_then_repairs_the_stale_replica() {
        let mut r = read(2);
        r.on_answer(NodeId(1), Some(version(5, "a")));
        assert_eq!(
            r.on_digest(NodeId(3), digest(9, "b")),
            ReadProgress::Fetch { from: NodeId(3) }
        );
        // Another digest meanwhile does not fetch twice.
        assert_eq!(
            r.on_digest(NodeId(2), digest(9, "b")),
            ReadProgress::Waiting
        );
        assert_eq!(
            r.on_answer(NodeId(3), Some(version(9, "b"))),
            ReadProgress::Done(Some(b"b".to_vec())),
            "n2 and n3 hold the winner: the level's two replicas"
        );
    }

    #[test]
    fn a_fetched_value_is_repaired_onto_the_replica_that_sent_the_old_one() {
        let mut r = read(2);
        r.on_answer(NodeId(1), Some(version(5, "a")));
        r.on_digest(NodeId(3), digest(9, "b"));
        assert_eq!(
            r.on_answer(NodeId(3), Some(version(9, "b"))),
            ReadProgress::Repair {
                winner: version(9, "b"),
                stale: vec![NodeId(1)]
            }
        );
        assert_eq!(
            r.on_repair_ack(NodeId(1)),
            ReadProgress::Done(Some(b"b".to_vec()))
        );
    }

    #[test]
    fn digests_alone_fetch_from_a_replica_holding_the_newest() {
        // The data replica is down: the digests decide whom to ask.
        let mut r = read(2);
        r.on_digest(NodeId(2), digest(4, "old"));
        assert_eq!(
            r.on_digest(NodeId(3), digest(7, "new")),
            ReadProgress::Fetch { from: NodeId(3) }
        );
        let mut absent = read(2);
        absent.on_digest(NodeId(2), None);
        assert_eq!(absent.on_digest(NodeId(3), None), ReadProgress::Done(None));
    }

    #[test]
    fn the_planted_bug_returns_the_value_at_hand_over_a_newer_digest() {
        let mut r = read(2).planting_trust_in_the_data(true);
        r.on_answer(NodeId(1), Some(version(5, "a")));
        assert_eq!(
            r.on_digest(NodeId(3), digest(9, "b")),
            ReadProgress::Done(Some(b"a".to_vec())),
            "stale: the bug the checks must catch"
        );
    }

    #[test]
    fn answers_below_the_session_floor_do_not_decide_a_read() {
        let floor = version(7, "x").timestamp;
        let mut r = read(1).with_floor(Some(floor), 0);
        assert_eq!(
            r.on_answer(NodeId(1), Some(version(5, "a"))),
            ReadProgress::Waiting
        );
        assert_eq!(r.on_digest(NodeId(2), None), ReadProgress::Waiting);
        assert_eq!(
            r.deadline_error(),
            ClientError::SessionFloor {
                floor_hlc: 7,
                newest_hlc: Some(5)
            }
        );
        assert_eq!(
            r.on_digest(NodeId(3), digest(7, "x")),
            ReadProgress::Fetch { from: NodeId(3) }
        );
        assert_eq!(
            r.on_answer(NodeId(3), Some(version(7, "x"))),
            ReadProgress::Done(Some(b"x".to_vec()))
        );
    }

    #[test]
    fn a_read_waiting_on_its_floor_asks_again_after_the_pause_only() {
        let floor = version(7, "x").timestamp;
        let mut r = read(1).with_floor(Some(floor), 1_000);
        r.on_answer(NodeId(1), Some(version(5, "a")));
        assert!(!r.should_ask_again(1_000 + SESSION_FLOOR_ASK_AGAIN_NANOS - 1));
        assert!(r.should_ask_again(1_000 + SESSION_FLOOR_ASK_AGAIN_NANOS));
        // The replica was repaired meanwhile: its new answer decides.
        assert_eq!(
            r.on_answer(NodeId(1), Some(version(7, "x"))),
            ReadProgress::Done(Some(b"x".to_vec()))
        );
        // Without a floor nothing waits, so nothing asks again.
        let mut plain = read(1);
        plain.on_answer(NodeId(1), Some(version(5, "a")));
        assert!(!plain.should_ask_again(u64::MAX));
    }

    #[test]
    fn the_data_replica_is_the_coordinator_when_it_can_be_and_rotates_otherwise() {
        let replicas = [NodeId(1), NodeId(2), NodeId(3)];
        assert_eq!(data_replica(NodeId(2), &replicas, 7), None);
        let picked: BTreeSet<NodeId> = (0..3)
            .filter_map(|seq| data_replica(NodeId(4), &replicas, seq))
            .collect();
        assert_eq!(picked.len(), 3, "every replica takes a turn");
    }
}
