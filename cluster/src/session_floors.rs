//! What a client session has seen, kept on the client's side (a RESP
//! connection, a simulated client) and sent with each request as a
//! [`SessionFloor`]: the newest version of each key the session touched,
//! for read-your-writes and monotonic reads per key, and the newest
//! version of any key, for stamping its writes above everything it saw.
//!
//! Per key, bounded: a session remembers [`SESSION_KEYS_MAX`] keys at most,
//! the least recently touched going first. A key forgotten so loses its
//! read guarantees beyond what the level alone promises (its next read may
//! be older than what the session saw of it); the session-wide floor is
//! never forgotten, so causal stamping holds whatever the count.
//!
//! Keys are remembered by their ring token ([`Ring::token`], a 64-bit
//! hash): no copy of a key per request. Two keys with the same token would
//! share a floor, which could only make a read of one wait for a version
//! of the other (and fail at its deadline), never return something older.

use std::collections::BTreeMap;

use enigma_engine::Timestamp;

use crate::message::SessionFloor;
use crate::ring::Ring;

/// Keys a session remembers the newest seen version of, at most: a
/// connection that touches more loses the read guarantees of the least
/// recently touched ones. Two map entries of a few words each per key:
/// about 400 KiB per connection at most.
pub const SESSION_KEYS_MAX: usize = 4096;

/// A session's floors. Deterministic: ordered maps only.
#[derive(Debug, Clone)]
pub struct SessionFloors {
    /// The newest version seen of any key.
    seen: Option<Timestamp>,
    /// Per key token: the newest version seen and when it was last
    /// touched.
    keys: BTreeMap<u64, (Timestamp, u64)>,
    /// Key tokens by when they were last touched, oldest first (for
    /// eviction).
    touched: BTreeMap<u64, u64>,
    /// Touches so far: orders `touched`.
    clock: u64,
    /// Keys kept at most.
    keys_max: usize,
}

impl Default for SessionFloors {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionFloors {
    /// A session that has seen nothing, remembering at most
    /// [`SESSION_KEYS_MAX`] keys.
    pub fn new() -> Self {
        Self::with_keys_max(SESSION_KEYS_MAX)
    }

    /// A session that has seen nothing, remembering at most `keys_max`
    /// keys.
    ///
    /// # Panics
    /// If `keys_max` is 0.
    pub fn with_keys_max(keys_max: usize) -> Self {
        assert!(keys_max > 0, "a session remembers at least one key");
        Self {
            seen: None,
            keys: BTreeMap::new(),
            touched: BTreeMap::new(),
            clock: 0,
            keys_max,
        }
    }

    /// The floor to send with a request about `key`.
    pub fn floor(&self, key: &[u8]) -> SessionFloor {
        self.floor_of_token(Ring::token(key))
    }

    /// The floor to send with a request about the key whose ring token is
    /// `token`.
    pub fn floor_of_token(&self, token: u64) -> SessionFloor {
        SessionFloor {
            seen: self.seen,
            key: self.keys.get(&token).map(|&(timestamp, _)| timestamp),
        }
    }

    /// Takes in the version `timestamp` of `key` the session wrote or
    /// read (a reply's version).
    pub fn observe(&mut self, key: &[u8], timestamp: Timestamp) {
        self.observe_token(Ring::token(key), timestamp);
    }

    /// [`Self::observe`], for the key whose ring token is `token`.
    pub fn observe_token(&mut self, token: u64, timestamp: Timestamp) {
        self.seen = self.seen.max(Some(timestamp));
        self.clock += 1;
        let touch = self.clock;
        let newest = match self.keys.get(&token) {
            Some(&(old, last_touch)) => {
                self.touched.remove(&last_touch);
                old.max(timestamp)
            }
            None => timestamp,
        };
        self.keys.insert(token, (newest, touch));
        self.touched.insert(touch, token);
        while self.keys.len() > self.keys_max {
            let (_, oldest) = self.touched.pop_first().expect("one entry per key");
            self.keys.remove(&oldest);
        }
        assert_eq!(self.keys.len(), self.touched.len());
    }

    /// How many keys the session remembers.
    pub fn keys_remembered(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hlc: u64) -> Timestamp {
        Timestamp { hlc, node: 1 }
    }

    #[test]
    fn a_key_floor_is_the_newest_version_seen_of_that_key_only() {
        let mut floors = SessionFloors::new();
        floors.observe(b"a", at(9));
        floors.observe(b"a", at(5));
        floors.observe(b"b", at(7));
        assert_eq!(floors.floor(b"a").key, Some(at(9)), "never lowered");
        assert_eq!(floors.floor(b"b").key, Some(at(7)));
        assert_eq!(floors.floor(b"c").key, None, "a key never seen");
        assert_eq!(floors.floor(b"c").seen, Some(at(9)), "across keys");
    }

    #[test]
    fn the_least_recently_touched_key_is_forgotten_first_but_not_the_session_floor() {
        let mut floors = SessionFloors::with_keys_max(2);
        floors.observe(b"a", at(10));
        floors.observe(b"b", at(2));
        floors.observe(b"a", at(3));
        floors.observe(b"c", at(4));
        assert_eq!(floors.keys_remembered(), 2);
        assert_eq!(floors.floor(b"b").key, None, "b was touched least recently");
        assert_eq!(floors.floor(b"a").key, Some(at(10)));
        assert_eq!(floors.floor(b"b").seen, Some(at(10)));
    }
}
