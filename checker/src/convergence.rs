//! Convergence: after repair, do all replicas of each key hold the same
//! version?
//!
//! Engine-independent: the caller translates whatever each replica stores
//! into a [`ReplicaVersion`]. The check is exact. A replica holding nothing,
//! a tombstone and a live value are three different things, and a key listed
//! with no replicas is reported rather than passed: an empty list is far more
//! likely a collection bug than a fact about the cluster.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// One stored version of a key: its timestamp, its tie-break and its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredVersion {
    /// The hybrid logical clock timestamp of the write.
    pub hlc: u64,
    /// The node that coordinated the write (breaks ties between equal
    /// timestamps).
    pub writer: u32,
    /// The value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
}

/// What one replica holds for one key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaVersion {
    /// The replica's node id.
    pub node: u32,
    /// Its version; `None`: the replica holds nothing for the key.
    pub version: Option<StoredVersion>,
}

/// Why replicas have not converged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConvergenceViolation {
    /// Replicas of `key` hold different versions.
    #[error("replicas of key {key:?} diverge:\n{}", show_replicas(.replicas))]
    Diverged {
        /// The key (the first diverged one, in key order).
        key: String,
        /// Every replica of the key, as given.
        replicas: Vec<ReplicaVersion>,
    },
    /// `key` was listed with no replicas at all.
    #[error("key {key:?} was listed with no replicas")]
    NoReplicas {
        /// The key.
        key: String,
    },
    /// A node appears twice among the replicas of `key`.
    #[error("node {node} is listed twice among the replicas of key {key:?}")]
    DuplicateReplica {
        /// The key.
        key: String,
        /// The node listed twice.
        node: u32,
    },
}

impl fmt::Display for StoredVersion {
    /// `hlc 17 by n2: "abc"`, or `hlc 17 by n2: tombstone`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hlc {} by n{}: ", self.hlc, self.writer)?;
        match &self.value {
            None => write!(f, "tombstone"),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => write!(f, "{text:?}"),
                Err(_) => write!(f, "{bytes:02x?}"),
            },
        }
    }
}

impl fmt::Display for ReplicaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            None => write!(f, "n{}: nothing", self.node),
            Some(v) => write!(f, "n{}: {v}", self.node),
        }
    }
}

fn show_replicas(replicas: &[ReplicaVersion]) -> String {
    let first = replicas.first().map(|r| &r.version);
    replicas
        .iter()
        .map(|r| {
            let mark = if Some(&r.version) == first {
                ""
            } else {
                "   <- differs"
            };
            format!("  {r}{mark}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks that every replica of every key holds the same version.
///
/// # Errors
/// The first key, in key order, whose replicas differ, that has no
/// replicas, or that lists a node twice.
pub fn check_convergence(
    replicas: &BTreeMap<String, Vec<ReplicaVersion>>,
) -> Result<(), ConvergenceViolation> {
    for (key, versions) in replicas {
        let Some(first) = versions.first() else {
            return Err(ConvergenceViolation::NoReplicas { key: key.clone() });
        };
        let mut nodes: Vec<u32> = versions.iter().map(|r| r.node).collect();
        nodes.sort_unstable();
        if let Some(pair) = nodes.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConvergenceViolation::DuplicateReplica {
                key: key.clone(),
                node: pair[0],
            });
        }
        if versions.iter().any(|r| r.version != first.version) {
            return Err(ConvergenceViolation::Diverged {
                key: key.clone(),
                replicas: versions.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(hlc: u64, writer: u32, value: Option<&str>) -> Option<StoredVersion> {
        Some(StoredVersion {
            hlc,
            writer,
            value: value.map(|s| s.as_bytes().to_vec()),
        })
    }

    fn replica(node: u32, version: Option<StoredVersion>) -> ReplicaVersion {
        ReplicaVersion { node, version }
    }

    fn one_key(replicas: Vec<ReplicaVersion>) -> BTreeMap<String, Vec<ReplicaVersion>> {
        BTreeMap::from([("k".to_owned(), replicas)])
    }

    #[test]
    fn identical_replicas_converge() {
        let mut map = one_key(vec![
            replica(1, v(5, 2, Some("x"))),
            replica(2, v(5, 2, Some("x"))),
        ]);
        map.insert(
            "gone".into(),
            vec![replica(1, v(9, 1, None)), replica(3, v(9, 1, None))],
        );
        map.insert("never".into(), vec![replica(1, None), replica(2, None)]);
        assert_eq!(check_convergence(&map), Ok(()));
        assert_eq!(check_convergence(&BTreeMap::new()), Ok(()));
    }

    #[test]
    fn different_values_diverge_and_the_report_shows_each_replica() {
        let map = one_key(vec![
            replica(1, v(5, 2, Some("x"))),
            replica(2, v(6, 2, Some("y"))),
        ]);
        let err = check_convergence(&map).unwrap_err();
        assert!(matches!(&err, ConvergenceViolation::Diverged { key, .. } if key == "k"));
        let text = err.to_string();
        assert!(text.contains("n1: hlc 5 by n2: \"x\""), "{text}");
        assert!(
            text.contains("n2: hlc 6 by n2: \"y\"   <- differs"),
            "{text}"
        );
    }

    #[test]
    fn same_value_with_different_timestamps_diverges() {
        let map = one_key(vec![
            replica(1, v(5, 2, Some("x"))),
            replica(2, v(5, 3, Some("x"))),
        ]);
        assert!(check_convergence(&map).is_err());
    }

    #[test]
    fn tombstone_and_nothing_are_different() {
        let map = one_key(vec![replica(1, v(5, 2, None)), replica(2, None)]);
        assert!(check_convergence(&map).is_err());
    }

    #[test]
    fn a_key_with_no_replicas_is_reported() {
        let map = one_key(vec![]);
        assert_eq!(
            check_convergence(&map),
            Err(ConvergenceViolation::NoReplicas { key: "k".into() })
        );
    }

    #[test]
    fn a_node_listed_twice_is_reported() {
        let map = one_key(vec![replica(1, None), replica(1, None)]);
        assert_eq!(
            check_convergence(&map),
            Err(ConvergenceViolation::DuplicateReplica {
                key: "k".into(),
                node: 1
            })
        );
    }

    #[test]
    fn first_diverged_key_in_key_order_is_reported() {
        let mut map = BTreeMap::new();
        map.insert(
            "b".to_owned(),
            vec![replica(1, None), replica(2, v(1, 1, Some("x")))],
        );
        map.insert(
            "a".to_owned(),
            vec![replica(1, None), replica(2, v(1, 1, Some("y")))],
        );
        let err = check_convergence(&map).unwrap_err();
        assert!(matches!(err, ConvergenceViolation::Diverged { key, .. } if key == "a"));
    }
}
