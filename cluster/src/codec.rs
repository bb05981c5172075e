//! The frame every peer message travels in.
//!
//! ```text
//! offset  size  field
//! 0       4     payload length, u32 little-endian
//! 4       1     format version (FRAME_VERSION)
//! 5       4     CRC32 of the version byte and the payload, u32 little-endian
//! 9       len   payload: the Envelope, bincode 2 "standard" encoding
//! ```
//!
//! The decoder checks length bound, version and checksum before it parses,
//! and parses with an allocation limit, so garbage yields an error rather
//! than a panic or a huge allocation.

use thiserror::Error;

use crate::message::Envelope;

/// Format version of the frame and payload encoding.
pub const FRAME_VERSION: u8 = 3;
/// Bytes before the payload.
pub const FRAME_HEADER_BYTES: usize = 9;
/// Largest payload accepted: bounds the memory a peer can make us allocate.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 32 << 20;

/// A frame that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The declared payload length exceeds [`FRAME_PAYLOAD_BYTES_MAX`].
    #[error("frame of {len} bytes exceeds the limit of {FRAME_PAYLOAD_BYTES_MAX}")]
    TooLarge { len: usize },
    /// A version this build does not speak.
    #[error("frame version {got}, expected {FRAME_VERSION}")]
    Version { got: u8 },
    /// The checksum does not match.
    #[error("frame checksum mismatch: expected {expected:#010x}, got {got:#010x}")]
    Checksum { expected: u32, got: u32 },
    /// The payload does not parse as an envelope.
    #[error("frame payload does not parse: {reason}")]
    Payload { reason: String },
}

/// What [`decode_frame`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame, and how many bytes it took.
    Frame { envelope: Envelope, consumed: usize },
    /// The buffer holds only part of a frame; read more.
    Incomplete,
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<FRAME_PAYLOAD_BYTES_MAX>()
}

/// Room a frame starts with: most envelopes fit, so the buffer seldom
/// grows while one is encoded into it.
const FRAME_BYTES_RESERVED: usize = 256;

/// Encodes `envelope` as one frame: the payload is encoded in place behind
/// room for the header, which is filled in last (no second buffer, no copy).
///
/// # Panics
/// If the envelope encodes to more than [`FRAME_PAYLOAD_BYTES_MAX`] bytes:
/// callers bound keys and values far below it.
pub fn encode_frame(envelope: &Envelope) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_BYTES_RESERVED);
    frame.resize(FRAME_HEADER_BYTES, 0);
    bincode::serde::encode_into_writer(envelope, AppendWriter(&mut frame), bincode_config())
        .expect("an envelope within the size limit always encodes");
    let payload_bytes = frame.len() - FRAME_HEADER_BYTES;
    assert!(
        payload_bytes <= FRAME_PAYLOAD_BYTES_MAX,
        "frame over the limit"
    );
    let len = u32::try_from(payload_bytes).expect("bounded by FRAME_PAYLOAD_BYTES_MAX");
    let crc = checksum(FRAME_VERSION, &frame[FRAME_HEADER_BYTES..]);
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame[4] = FRAME_VERSION;
    frame[5..FRAME_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    frame
}

/// Appends what bincode writes to a buffer.
struct AppendWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for AppendWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Decodes the frame at the start of `bytes`.
///
/// # Errors
/// See [`CodecError`]. After an error the stream cannot be resynchronised:
/// the connection should be dropped.
pub fn decode_frame(bytes: &[u8]) -> Result<Decoded, CodecError> {
    let Some(header) = bytes.get(..FRAME_HEADER_BYTES) else {
        return Ok(Decoded::Incomplete);
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > FRAME_PAYLOAD_BYTES_MAX {
        return Err(CodecError::TooLarge { len });
    }
    let version = header[4];
    if version != FRAME_VERSION {
        return Err(CodecError::Version { got: version });
    }
    let expected = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
    let Some(payload) = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
        return Ok(Decoded::Incomplete);
    };
    let got = checksum(version, payload);
    if got != expected {
        return Err(CodecError::Checksum { expected, got });
    }
    let (envelope, used): (Envelope, usize) =
        bincode::serde::decode_from_slice(payload, bincode_config()).map_err(|e| {
            CodecError::Payload {
                reason: e.to_string(),
            }
        })?;
    if used != len {
        return Err(CodecError::Payload {
            reason: format!("{} trailing bytes after the envelope", len - used),
        });
    }
    Ok(Decoded::Frame {
        envelope,
        consumed: FRAME_HEADER_BYTES + len,
    })
}

fn checksum(version: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[version]);
    hasher.update(payload);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OpId;
    use crate::message::{Message, ReplicaFailure, WireVersion};
    use proptest::prelude::*;

    fn arb_op() -> impl Strategy<Value = OpId> {
        (any::<u64>(), any::<u64>()).prop_map(|(generation, seq)| OpId { generation, seq })
    }

    fn arb_version() -> impl Strategy<Value = WireVersion> {
        (
            any::<u64>(),
            any::<u32>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        )
            .prop_map(|(hlc, node, value)| WireVersion { hlc, node, value })
    }

    fn arb_failure() -> impl Strategy<Value = ReplicaFailure> {
        let text = || proptest::collection::vec(any::<char>(), 0..16);
        prop_oneof![
            text().prop_map(|f| ReplicaFailure::NoSpace {
                file: f.into_iter().collect()
            }),
            (text(), any::<u64>(), text()).prop_map(|(f, offset, r)| {
                ReplicaFailure::Corruption {
                    file: f.into_iter().collect(),
                    offset,
                    reason: r.into_iter().collect(),
                }
            }),
            text().prop_map(|r| ReplicaFailure::Storage {
                reason: r.into_iter().collect()
            }),
        ]
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let key = || proptest::collection::vec(any::<u8>(), 0..32);
        prop_oneof![
            (arb_op(), key(), arb_version()).prop_map(|(op, key, version)| Message::Write {
                op,
                key,
                version
            }),
            (arb_op(), proptest::option::of(arb_failure()))
                .prop_map(|(op, failure)| Message::WriteAck { op, failure }),
            (arb_op(), key()).prop_map(|(op, key)| Message::Read { op, key }),
            (
                arb_op(),
                proptest::option::of(arb_version()),
                proptest::option::of(arb_failure())
            )
                .prop_map(|(op, version, failure)| Message::ReadReply {
                    op,
                    unfinished: version.is_some() && failure.is_none(),
                    version,
                    failure,
                }),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(hlc in any::<u64>(), message in arb_message()) {
            let envelope = Envelope { hlc, message };
            let frame = encode_frame(&envelope);
            prop_assert_eq!(
                decode_frame(&frame),
                Ok(Decoded::Frame { envelope, consumed: frame.len() })
            );
        }

        #[test]
        fn every_strict_prefix_is_incomplete(message in arb_message()) {
            let frame = encode_frame(&Envelope { hlc: 1, message });
            for cut in 0..frame.len() {
                prop_assert_eq!(decode_frame(&frame[..cut]), Ok(Decoded::Incomplete));
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_frame(&bytes);
        }

        #[test]
        fn a_flipped_bit_is_detected(message in arb_message(), bit in any::<usize>()) {
            let mut frame = encode_frame(&Envelope { hlc: 7, message });
            let bit = bit % (frame.len() * 8);
            frame[bit / 8] ^= 1 << (bit % 8);
            // A flip in the length may turn the frame incomplete; it must
            // never decode to a frame.
            let decoded = decode_frame(&frame);
            prop_assert!(!matches!(decoded, Ok(Decoded::Frame { .. })), "decoded {:?}", decoded);
        }
    }

    #[test]
    fn garbage_with_a_valid_checksum_is_a_payload_error() {
        let payload = [0xff_u8; 16];
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.push(FRAME_VERSION);
        frame.extend_from_slice(&checksum(FRAME_VERSION, &payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        assert!(matches!(
            decode_frame(&frame),
            Err(CodecError::Payload { .. })
        ));
    }

    #[test]
    fn oversized_length_is_rejected_before_reading_the_payload() {
        let mut frame = u32::MAX.to_le_bytes().to_vec();
        frame.extend_from_slice(&[FRAME_VERSION, 0, 0, 0, 0]);
        assert!(matches!(
            decode_frame(&frame),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut frame = encode_frame(&Envelope {
            hlc: 1,
            message: Message::WriteAck {
                op: OpId {
                    generation: 1,
                    seq: 2,
                },
                failure: None,
            },
        });
        frame[4] = FRAME_VERSION + 1;
        assert_eq!(
            decode_frame(&frame),
            Err(CodecError::Version {
                got: FRAME_VERSION + 1
            })
        );
    }
}
