//! What a `SERIAL` operation costs on the network, measured from the
//! frames the nodes send: per operation (its coordinator and operation
//! id), the Paxos messages it caused (the coordinator's requests to peers
//! and the peers' answers; its own acceptor is served in place and costs
//! none) and its round trips before the answer (the phases, prepare and
//! propose, that sent a request to a peer; the commit goes behind the
//! answer and is not one of them). An operation is counted as an
//! *uncontended compare-and-set* when it committed a value after one
//! prepare ballot that no peer refused: no lost ballot, no retry, no
//! proposal of another's finished first.

use std::collections::{BTreeMap, BTreeSet};

use enigma_cluster::paxos::Ballot;
use enigma_cluster::{Message, OpId};

/// One operation's tally.
#[derive(Debug, Default)]
pub(super) struct Tally {
    messages: u32,
    /// Phases that sent a request to a peer: 0 prepare, 1 propose, 2
    /// commit.
    phases: BTreeSet<u8>,
    prepare_ballots: BTreeSet<Ballot>,
    refused: bool,
    committed: bool,
}

/// The tallies of a run, by coordinator (node index) and operation.
#[derive(Debug, Default)]
pub(super) struct PaxosCost {
    tallies: BTreeMap<(usize, OpId), Tally>,
}

impl PaxosCost {
    /// Notes `message`, sent by node `from` to node `to`.
    pub(super) fn note(&mut self, from: usize, to: usize, message: &Message) {
        let (coordinator, op, phase) = match message {
            Message::PaxosPrepare { op, .. } => (from, *op, Some(0)),
            Message::PaxosPropose { op, .. } => (from, *op, Some(1)),
            Message::PaxosCommit { op, .. } => (from, *op, Some(2)),
            Message::PaxosPromise { op, .. }
            | Message::PaxosAccepted { op, .. }
            | Message::PaxosCommitAck { op, .. }
            | Message::PaxosRefused { op, .. } => (to, *op, None),
            _ => return,
        };
        let tally = self.tallies.entry((coordinator, op)).or_default();
        tally.messages += 1;
        if let Some(phase) = phase {
            tally.phases.insert(phase);
        }
        match message {
            Message::PaxosPrepare { ballot, .. } => {
                tally.prepare_ballots.insert(*ballot);
            }
            Message::PaxosCommit { .. } => tally.committed = true,
            Message::PaxosRefused { .. } => tally.refused = true,
            _ => {}
        }
    }

    /// Per uncontended compare-and-set: how many had each message count,
    /// and each count of round trips before the answer (the commit, sent
    /// behind it, not counted).
    pub(super) fn uncontended(&self) -> (BTreeMap<u32, u64>, BTreeMap<u32, u64>) {
        let mut messages = BTreeMap::new();
        let mut round_trips = BTreeMap::new();
        for tally in self.tallies.values() {
            if tally.committed && !tally.refused && tally.prepare_ballots.len() == 1 {
                *messages.entry(tally.messages).or_insert(0) += 1;
                let before_answer = tally.phases.iter().filter(|&&phase| phase != 2).count();
                *round_trips.entry(before_answer as u32).or_insert(0) += 1;
            }
        }
        (messages, round_trips)
    }
}

/// The median and mean of a histogram (value → count); `None` if empty.
pub fn median_and_mean(histogram: &BTreeMap<u32, u64>) -> Option<(u32, f64)> {
    let total: u64 = histogram.values().sum();
    if total == 0 {
        return None;
    }
    let sum: u64 = histogram.iter().map(|(&v, &n)| u64::from(v) * n).sum();
    let mut seen = 0;
    let median = histogram
        .iter()
        .find(|(_, &n)| {
            seen += n;
            seen * 2 > total
        })
        .map(|(&v, _)| v)?;
    Some((median, sum as f64 / total as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mean_of_a_histogram() {
        assert_eq!(median_and_mean(&BTreeMap::new()), None);
        let h = BTreeMap::from([(10, 1), (12, 3)]);
        assert_eq!(median_and_mean(&h), Some((12, 11.5)));
        let h = BTreeMap::from([(10, 2), (12, 1)]);
        assert_eq!(median_and_mean(&h).map(|m| m.0), Some(10));
    }
}
