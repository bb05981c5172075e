//! Pending client operations at their coordinator: counting answers against
//! the consistency level, and blocking read repair.
//!
//! Pure bookkeeping: these types decide *what* happens next (reply, repair
//! whom); [`crate::node`] carries it out. A local replica's answer is fed in
//! exactly like a remote one.

use std::collections::{BTreeMap, BTreeSet};

use enigma_engine::{Timestamp, Versioned};

use crate::ids::{NodeId, RequestId};

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
        }
    }

    /// Counts `from`'s acknowledgement; true once enough have arrived.
    pub fn on_ack(&mut self, from: NodeId) -> bool {
        if self.replicas.contains(&from) {
            self.acked.insert(from);
        }
        self.acked.len() >= self.required
    }
}

/// A client read collecting answers, then possibly repairing.
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
    /// Each answering replica's version (`None`: it holds nothing).
    answers: BTreeMap<NodeId, Option<Versioned>>,
    /// Set once `required` answers are in and they disagreed.
    repair: Option<Repair>,
}

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
            repair: None,
        }
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

    /// Takes in `from`'s version of the key.
    pub fn on_answer(&mut self, from: NodeId, version: Option<Versioned>) -> ReadProgress {
        if !self.replicas.contains(&from) || self.answers.contains_key(&from) {
            return ReadProgress::Waiting;
        }
        self.answers.insert(from, version.clone());
        if let Some(repair) = &mut self.repair {
            // A late answer while repairing: count it if current, repair it
            // if stale, ignore it if newer (a write concurrent with this
            // read, which may be ordered after it).
            let stamp = version.as_ref().map(|v| v.timestamp);
            if stamp == Some(repair.winner.timestamp) {
                repair.up_to_date.insert(from);
                return self.progress();
            }
            if stamp < Some(repair.winner.timestamp) {
                return ReadProgress::Repair {
                    winner: repair.winner.clone(),
                    stale: vec![from],
                };
            }
            return ReadProgress::Waiting;
        }
        if self.answers.len() < self.required {
            return ReadProgress::Waiting;
        }
        let winner = self
            .answers
            .values()
            .flatten()
            .max_by_key(|v| v.timestamp)
            .cloned();
        let Some(winner) = winner else {
            return ReadProgress::Done(None);
        };
        let mut up_to_date = BTreeSet::new();
        let mut stale = Vec::new();
        for (&node, version) in &self.answers {
            if version.as_ref().map(|v| v.timestamp) == Some(winner.timestamp) {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn write_completes_at_the_required_count_of_distinct_replicas() {
        let replicas = vec![NodeId(1), NodeId(2), NodeId(3)];
        let mut w = PendingWrite::new(RequestId(1), replicas, 2, 0);
        assert!(!w.on_ack(NodeId(1)));
        assert!(!w.on_ack(NodeId(1)));
        assert!(!w.on_ack(NodeId(9)));
        assert!(w.on_ack(NodeId(3)));
    }
}
