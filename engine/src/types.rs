//! Timestamps and versioned values: what last-write-wins compares.

/// The version stamp of a mutation: a hybrid-logical-clock reading plus the
/// id of the node that issued it, which breaks ties so that two different
/// writes never compare equal. Ordered by `hlc`, then `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Hybrid logical clock reading of the issuing coordinator.
    pub hlc: u64,
    /// Id of the issuing node: the tie-break.
    pub node: u32,
}

/// A value with its version. `value: None` is a tombstone: the key was
/// deleted at `timestamp`, which hides every older version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Versioned {
    /// When this version was written; the highest wins.
    pub timestamp: Timestamp,
    /// The value, or `None` for a deletion.
    pub value: Option<Vec<u8>>,
}

impl Versioned {
    /// Whether this version is a deletion.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}
