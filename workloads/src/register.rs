//! The register workload: independent per-key registers.
//!
//! Values are unique positive integers (the n-th write writes n), stored as
//! decimal ASCII, so a read names exactly which write it saw; a delete
//! writes the empty register. A workload may pad an occasional value (`~`
//! then dots; which ones is fixed by the value) to a large size, so that a
//! few keys still fill a storage engine's memtable now and then.

use enigma_checker::{Call, Outcome, Value};
use rand::Rng;

/// Shape of the workload.
#[derive(Debug, Clone)]
pub struct RegisterOptions {
    /// How many keys (registers) clients share. Few keys, many conflicts.
    pub keys: usize,
    /// Percentage of operations that are writes (the rest are reads).
    pub write_percent: u32,
    /// Percentage of writes that are deletes.
    pub delete_percent: u32,
    /// Percentage of the other writes that are compare-and-sets (only a
    /// `SERIAL` run issues them): expecting the value the workload last
    /// wrote to the key (absent if none), setting a new unique value.
    pub cas_percent: u32,
    /// One value in [`LARGE_VALUE_ONE_IN`] (chosen by a hash of the value)
    /// is stored padded to this many bytes (0: none is).
    pub value_bytes: usize,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        Self {
            keys: 5,
            write_percent: 50,
            delete_percent: 10,
            cas_percent: 0,
            value_bytes: 0,
        }
    }
}

/// How a client operation ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientResult {
    /// A read returned this value (`None`: the key is absent).
    Read(Option<Value>),
    /// A write was acknowledged.
    Written,
    /// The operation definitely did not happen (refused before it was sent
    /// anywhere, or a read that did not complete: reads change nothing).
    Failed,
    /// Unknown: a write that timed out or whose coordinator vanished may
    /// have happened, and may yet.
    Unknown,
    /// A compare-and-set whose comparison was made and failed: it changed
    /// nothing.
    Refused,
}

impl ClientResult {
    /// The history outcome for an operation `call` that ended like this.
    ///
    /// A read that ended `Unknown` is recorded as `fail`: reads change no
    /// state, so an unfinished read constrains nothing either way.
    pub fn outcome(&self, call: &Call) -> Outcome {
        match (self, call) {
            (Self::Read(value), _) => Outcome::Ok { value: *value },
            (Self::Written, _) => Outcome::Ok { value: None },
            (Self::Refused, Call::Cas { .. }) => Outcome::Refused,
            (Self::Refused, _) => Outcome::Fail,
            (Self::Failed, _) | (Self::Unknown, Call::Read) => Outcome::Fail,
            (Self::Unknown, _) => Outcome::Info,
        }
    }
}

/// Generates register operations.
#[derive(Debug, Clone)]
pub struct RegisterWorkload {
    /// The shape.
    options: RegisterOptions,
    /// The value the next write writes; unique across all clients.
    next_value: Value,
    /// The value the workload last asked to write to each key (by index),
    /// which a compare-and-set expects.
    last_written: std::collections::BTreeMap<usize, Value>,
}

impl RegisterWorkload {
    /// A workload of this shape.
    ///
    /// # Panics
    /// If `options.keys` is zero or a percentage exceeds 100.
    pub fn new(options: RegisterOptions) -> Self {
        assert!(options.keys > 0, "a register workload needs a key");
        assert!(options.write_percent <= 100 && options.delete_percent <= 100);
        assert!(options.cas_percent <= 100);
        Self {
            options,
            next_value: 1,
            last_written: std::collections::BTreeMap::new(),
        }
    }

    /// The bytes stored for `value`: its digits, padded to the workload's
    /// large value size for one value in [`LARGE_VALUE_ONE_IN`].
    pub fn encode(&self, value: Value) -> Vec<u8> {
        let mut bytes = encode_value(value);
        // Fibonacci hashing spreads consecutive values.
        let hash = (value as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        if hash % LARGE_VALUE_ONE_IN == 0 && bytes.len() < self.options.value_bytes {
            bytes.push(PAD_START);
            bytes.resize(self.options.value_bytes, PAD_FILL);
        }
        bytes
    }

    /// The keys, in order.
    pub fn keys(&self) -> Vec<String> {
        (0..self.options.keys).map(key_name).collect()
    }

    /// Makes every value written from now on larger than `value`, so that
    /// values stay unique when operations come from elsewhere (a replayed
    /// schedule) as well as from this workload.
    pub fn write_values_above(&mut self, value: Value) {
        self.next_value = self.next_value.max(value.saturating_add(1));
    }

    /// The next operation: a key and what to do with it.
    pub fn next_op(&mut self, rng: &mut impl Rng) -> (String, Call) {
        let index = rng.random_range(0..self.options.keys);
        let key = key_name(index);
        let call = if rng.random_range(0..100) < self.options.write_percent {
            if rng.random_range(0..100) < self.options.delete_percent {
                self.last_written.remove(&index);
                Call::Write(None)
            } else {
                let value = self.next_value;
                self.next_value += 1;
                let expected = self.last_written.insert(index, value);
                if rng.random_range(0..100) < self.options.cas_percent {
                    Call::Cas {
                        expected,
                        new: Some(value),
                    }
                } else {
                    Call::Write(Some(value))
                }
            }
        } else {
            Call::Read
        };
        (key, call)
    }
}

fn key_name(index: usize) -> String {
    format!("k{index}")
}

/// One value in this many is padded to the workload's large value size.
pub const LARGE_VALUE_ONE_IN: u64 = 32;

/// Starts the padding after a value's digits.
const PAD_START: u8 = b'~';
/// Fills the padding.
const PAD_FILL: u8 = b'.';

/// The bytes stored for a register value, unpadded.
pub fn encode_value(value: Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// The register value stored as `bytes` (padded or not), or `None` if no
/// client of this workload could have written them.
pub fn decode_value(bytes: &[u8]) -> Option<Value> {
    let digits = match bytes.iter().position(|&b| b == PAD_START) {
        Some(at) if bytes[at + 1..].iter().all(|&b| b == PAD_FILL) => &bytes[..at],
        Some(_) => return None,
        None => bytes,
    };
    std::str::from_utf8(digits)
        .ok()?
        .parse()
        .ok()
        .filter(|&v: &Value| v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn written_values_are_unique() {
        let mut workload = RegisterWorkload::new(RegisterOptions {
            write_percent: 100,
            delete_percent: 0,
            ..Default::default()
        });
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            if let (_, Call::Write(Some(v))) = workload.next_op(&mut rng) {
                assert!(seen.insert(v), "value {v} written twice");
            }
        }
        assert_eq!(seen.len(), 500);
    }

    #[test]
    fn compare_and_sets_expect_the_last_value_written_to_their_key() {
        let mut workload = RegisterWorkload::new(RegisterOptions {
            keys: 1,
            write_percent: 100,
            delete_percent: 0,
            cas_percent: 100,
            ..Default::default()
        });
        let mut rng = StdRng::seed_from_u64(7);
        let calls: Vec<Call> = (0..3).map(|_| workload.next_op(&mut rng).1).collect();
        let cas = |expected, new| Call::Cas {
            expected,
            new: Some(new),
        };
        assert_eq!(calls, vec![cas(None, 1), cas(Some(1), 2), cas(Some(2), 3)]);
        assert_eq!(ClientResult::Refused.outcome(&calls[0]), Outcome::Refused);
    }

    #[test]
    fn padded_values_round_trip_at_the_workload_size() {
        let workload = RegisterWorkload::new(RegisterOptions {
            value_bytes: 100,
            ..RegisterOptions::default()
        });
        let large = (1..=3200)
            .filter(|&v| workload.encode(v).len() == 100)
            .count();
        assert!(
            (60..=140).contains(&large),
            "{large} of 3200 values are large"
        );
        for v in 1..=3200 {
            assert_eq!(decode_value(&workload.encode(v)), Some(v));
        }
        assert_eq!(workload.encode(42), workload.encode(42));
        assert_eq!(decode_value(b"42~..x"), None);
        assert_eq!(decode_value(b"~..."), None);
        // Unpadded when the size is below the digits.
        assert_eq!(
            RegisterWorkload::new(RegisterOptions::default()).encode(7),
            b"7"
        );
    }

    #[test]
    fn values_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_value(&encode_value(42)), Some(42));
        assert_eq!(decode_value(b"4x2"), None);
        assert_eq!(decode_value(b"0"), None);
        assert_eq!(decode_value(&[0xff, 0xfe]), None);
    }

    #[test]
    fn an_unknown_write_is_info_but_an_unknown_read_is_fail() {
        assert_eq!(
            ClientResult::Unknown.outcome(&Call::Write(Some(1))),
            Outcome::Info
        );
        assert_eq!(ClientResult::Unknown.outcome(&Call::Read), Outcome::Fail);
        assert_eq!(
            ClientResult::Failed.outcome(&Call::Write(Some(1))),
            Outcome::Fail
        );
    }
}
