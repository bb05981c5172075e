//! Consistency levels: how many replicas must answer.

use serde::{Deserialize, Serialize};

/// How many replicas a coordinator waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConsistencyLevel {
    /// One replica.
    One,
    /// Two replicas.
    Two,
    /// A majority of the replicas: `rf / 2 + 1`.
    Quorum,
    /// Every replica.
    All,
    /// Linearizable: every operation goes through per-key Paxos
    /// ([`crate::paxos`]) with a majority of the replicas.
    Serial,
}

impl ConsistencyLevel {
    /// Replicas needed at replication factor `replication_factor`, or `None`
    /// if the level cannot be met at that factor (`TWO` with one replica).
    pub fn replicas_required(self, replication_factor: usize) -> Option<usize> {
        let required = match self {
            Self::One => 1,
            Self::Two => 2,
            Self::Quorum | Self::Serial => replication_factor / 2 + 1,
            Self::All => replication_factor,
        };
        (required >= 1 && required <= replication_factor).then_some(required)
    }

    /// The level's name, as clients write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::One => "ONE",
            Self::Two => "TWO",
            Self::Quorum => "QUORUM",
            Self::All => "ALL",
            Self::Serial => "SERIAL",
        }
    }
}

impl std::str::FromStr for ConsistencyLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "ONE" => Ok(Self::One),
            "TWO" => Ok(Self::Two),
            "QUORUM" => Ok(Self::Quorum),
            "ALL" => Ok(Self::All),
            "SERIAL" => Ok(Self::Serial),
            _ => Err(format!(
                "unknown consistency level {s:?} (expected ONE, TWO, QUORUM, ALL or SERIAL)"
            )),
        }
    }
}

impl std::fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_a_majority() {
        assert_eq!(ConsistencyLevel::Quorum.replicas_required(3), Some(2));
        assert_eq!(ConsistencyLevel::Quorum.replicas_required(4), Some(3));
        assert_eq!(ConsistencyLevel::Quorum.replicas_required(1), Some(1));
    }

    #[test]
    fn two_cannot_be_met_with_one_replica() {
        assert_eq!(ConsistencyLevel::Two.replicas_required(1), None);
    }

    #[test]
    fn levels_parse_case_insensitively() {
        assert_eq!(
            "quorum".parse::<ConsistencyLevel>(),
            Ok(ConsistencyLevel::Quorum)
        );
        assert!("most".parse::<ConsistencyLevel>().is_err());
        assert_eq!(
            "serial".parse::<ConsistencyLevel>(),
            Ok(ConsistencyLevel::Serial)
        );
        assert_eq!(ConsistencyLevel::Serial.replicas_required(3), Some(2));
    }
}
