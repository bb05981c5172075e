//! The split of the engine's key space between clients and the node itself.
//!
//! Keys beginning with the two bytes `FF FF` are the node's own
//! ([`SYSTEM_PREFIX`], as FoundationDB reserves `\xff`): hints live there,
//! the clock mark ([`clock_mark_key`]), and whatever else a node must keep durably beside client data. Clients
//! may not read or write them (their requests are refused before anything
//! is done), they are never replicated, never compared by anti-entropy and
//! never checked for convergence. Everything below the prefix is client
//! data. The layouts are in docs/FORMAT.md.

use std::ops::Bound;

use enigma_engine::Timestamp;

/// First bytes of every key the node keeps for itself.
pub const SYSTEM_PREFIX: &[u8] = b"\xff\xff";

/// Tag after [`SYSTEM_PREFIX`] of a hint's key.
const HINT_TAG: u8 = b'h';

/// Tag after [`SYSTEM_PREFIX`] of the clock mark's key.
const CLOCK_MARK_TAG: u8 = b'c';

/// Bytes of a hint key: prefix, tag, target node, hint id.
const HINT_KEY_BYTES: usize = SYSTEM_PREFIX.len() + 1 + 4 + 8;

/// Tag after [`SYSTEM_PREFIX`] of a key's Paxos acceptor state.
const PAXOS_TAG: u8 = b'p';

/// Bytes a Paxos state key adds to the client key it belongs to.
pub const PAXOS_KEY_OVERHEAD_BYTES: usize = SYSTEM_PREFIX.len() + 1;

/// Format version of a stored hint's value.
const HINT_VALUE_VERSION: u8 = 1;

/// Whether `key` is one of the node's own.
pub fn is_system(key: &[u8]) -> bool {
    key.starts_with(SYSTEM_PREFIX)
}

/// The upper bound of client keys, for scans over client data only.
pub fn client_keys_end() -> Bound<&'static [u8]> {
    Bound::Excluded(SYSTEM_PREFIX)
}

/// The key of hint `id` for node `target`: every hint of a target is
/// contiguous, oldest (smallest id) first.
pub fn hint_key(target: u32, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(HINT_KEY_BYTES);
    key.extend_from_slice(SYSTEM_PREFIX);
    key.push(HINT_TAG);
    key.extend_from_slice(&target.to_be_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The key of the clock mark: a version whose timestamp is the highest a
/// coordinator issued to a write of a key it holds no replica of (so that
/// its own store holds that timestamp nowhere else). Written in the same
/// group commit as the write; its value is empty. At start the node's
/// clock is seeded above every stored timestamp, the mark's included.
pub fn clock_mark_key() -> Vec<u8> {
    let mut key = SYSTEM_PREFIX.to_vec();
    key.push(CLOCK_MARK_TAG);
    key
}

/// The key under which a replica keeps its Paxos acceptor state for client
/// key `key` ([`crate::paxos::AcceptorState`]).
pub fn paxos_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAXOS_KEY_OVERHEAD_BYTES + key.len());
    out.extend_from_slice(SYSTEM_PREFIX);
    out.push(PAXOS_TAG);
    out.extend_from_slice(key);
    out
}

/// The client key whose Paxos acceptor state `key` holds; `None` if `key`
/// is not a Paxos state key.
pub fn paxos_client_key(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(SYSTEM_PREFIX)?.strip_prefix(&[PAXOS_TAG])
}

/// The first key of all hints: scans of hints start here.
pub fn hints_start() -> Vec<u8> {
    let mut key = SYSTEM_PREFIX.to_vec();
    key.push(HINT_TAG);
    key
}

/// The end (exclusive) of all hints.
pub fn hints_end() -> Vec<u8> {
    let mut key = SYSTEM_PREFIX.to_vec();
    key.push(HINT_TAG + 1);
    key
}

/// The target and id of a hint key; `None` if `key` is not one.
pub fn parse_hint_key(key: &[u8]) -> Option<(u32, u64)> {
    if key.len() != HINT_KEY_BYTES || !key.starts_with(&hints_start()) {
        return None;
    }
    let at = SYSTEM_PREFIX.len() + 1;
    let target = u32::from_be_bytes(key[at..at + 4].try_into().ok()?);
    let id = u64::from_be_bytes(key[at + 4..at + 12].try_into().ok()?);
    Some((target, id))
}

/// A hint as stored: the client key and the version to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHint {
    /// The client key.
    pub key: Vec<u8>,
    /// The version's timestamp.
    pub timestamp: Timestamp,
    /// The value; `None`: a delete.
    pub value: Option<Vec<u8>>,
}

/// Encodes a hint's value: version byte, key length (u32 LE), key, HLC
/// (u64 LE), node (u32 LE), tag (0 tombstone, 1 value), value.
pub fn encode_hint(hint: &StoredHint) -> Vec<u8> {
    let value_len = hint.value.as_ref().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(1 + 4 + hint.key.len() + 8 + 4 + 1 + value_len);
    out.push(HINT_VALUE_VERSION);
    out.extend_from_slice(&(hint.key.len() as u32).to_le_bytes());
    out.extend_from_slice(&hint.key);
    out.extend_from_slice(&hint.timestamp.hlc.to_le_bytes());
    out.extend_from_slice(&hint.timestamp.node.to_le_bytes());
    match &hint.value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            out.extend_from_slice(value);
        }
    }
    out
}

/// Decodes what [`encode_hint`] wrote; `None` if the bytes are not a hint
/// (the engine checksums what it stores, so this means a bug or a format
/// this build does not know).
pub fn decode_hint(bytes: &[u8]) -> Option<StoredHint> {
    let (&version, rest) = bytes.split_first()?;
    if version != HINT_VALUE_VERSION || rest.len() < 4 {
        return None;
    }
    let key_len = u32::from_le_bytes(rest[..4].try_into().ok()?) as usize;
    let rest = &rest[4..];
    if rest.len() < key_len + 8 + 4 + 1 {
        return None;
    }
    let key = rest[..key_len].to_vec();
    let rest = &rest[key_len..];
    let hlc = u64::from_le_bytes(rest[..8].try_into().ok()?);
    let node = u32::from_le_bytes(rest[8..12].try_into().ok()?);
    let value = match (rest[12], &rest[13..]) {
        (0, []) => None,
        (1, value) => Some(value.to_vec()),
        _ => return None,
    };
    Some(StoredHint {
        key,
        timestamp: Timestamp { hlc, node },
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_keys_sort_by_target_then_id_inside_the_hint_range() {
        let a = hint_key(2, 9);
        let b = hint_key(2, 10);
        let c = hint_key(3, 1);
        assert!(a < b && b < c);
        for key in [&a, &b, &c] {
            assert!(is_system(key));
            assert!(key.as_slice() >= hints_start().as_slice());
            assert!(key.as_slice() < hints_end().as_slice());
        }
        assert_eq!(parse_hint_key(&b), Some((2, 10)));
        assert_eq!(parse_hint_key(b"\xff\xffhshort"), None);
        assert_eq!(parse_hint_key(b"client"), None);
    }

    #[test]
    fn paxos_state_keys_are_system_keys_outside_the_hint_range() {
        let key = paxos_key(b"k");
        assert!(is_system(&key));
        assert_eq!(key.len(), PAXOS_KEY_OVERHEAD_BYTES + 1);
        assert!(key.as_slice() >= hints_end().as_slice());
        assert_eq!(parse_hint_key(&key), None);
    }

    #[test]
    fn hints_round_trip_values_and_deletes() {
        for value in [None, Some(Vec::new()), Some(b"payload".to_vec())] {
            let hint = StoredHint {
                key: b"k".to_vec(),
                timestamp: Timestamp { hlc: 77, node: 3 },
                value,
            };
            assert_eq!(decode_hint(&encode_hint(&hint)), Some(hint));
        }
    }

    #[test]
    fn damaged_hints_decode_to_none() {
        let hint = StoredHint {
            key: b"key".to_vec(),
            timestamp: Timestamp { hlc: 1, node: 1 },
            value: None,
        };
        let bytes = encode_hint(&hint);
        for len in 0..bytes.len() {
            assert_eq!(decode_hint(&bytes[..len]), None, "prefix of {len}");
        }
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert_eq!(decode_hint(&wrong_version), None);
        let mut trailing = bytes;
        trailing.push(0);
        assert_eq!(decode_hint(&trailing), None);
    }

    #[test]
    fn the_clock_mark_is_a_system_key_outside_the_hints() {
        let mark = clock_mark_key();
        assert!(is_system(&mark));
        assert!(mark.as_slice() < hints_start().as_slice() || mark >= hints_end());
        assert_eq!(parse_hint_key(&mark), None);
    }

    #[test]
    fn client_keys_end_below_the_system_prefix() {
        assert!(!is_system(b"\xff\xfe anything"));
        assert!(is_system(b"\xff\xff"));
        assert_eq!(client_keys_end(), Bound::Excluded(SYSTEM_PREFIX));
    }
}
