//! Splitting a byte stream into frames: what a peer connection's reader does
//! with bytes as they arrive, whatever pieces the network cuts them into (a
//! partial header, a partial payload, several frames in one read).
//!
//! Pure and sans-IO: the production reader (`src/peer.rs`) reads from its
//! socket into [`FrameReader::buffer`], the simulator hands it the pieces it
//! draws with [`FrameReader::extend`]; both then take whole frames with
//! [`FrameReader::next_raw`]. A frame may be followed on the stream by a
//! trailer of fixed size (a plaintext link's tag, `docs/FORMAT.md` "Frame
//! tags"), returned beside it for the caller to check before it decodes the
//! frame with [`crate::codec::decode_frame`].

use crate::codec::{CodecError, FRAME_HEADER_BYTES, FRAME_PAYLOAD_BYTES_MAX};

/// Room kept for reading: a buffer with less free space than this grows by
/// [`READ_ROOM_BYTES`].
pub const READ_ROOM_MIN_BYTES: usize = 16 << 10;
/// How much room a buffer grows by, and starts with.
pub const READ_ROOM_BYTES: usize = 64 << 10;
/// A buffer emptied after holding a frame larger than this is given back,
/// so one large frame's room is not kept for the small ones.
pub const READ_BUFFER_KEPT_BYTES_MAX: usize = 1 << 20;

/// A whole frame taken from the stream, and the trailer that followed it.
#[derive(Debug, PartialEq, Eq)]
pub struct RawFrame<'a> {
    /// The frame: header and payload, as [`crate::codec::decode_frame`]
    /// takes it.
    pub frame: &'a [u8],
    /// The bytes after it on the stream (empty without a trailer).
    pub trailer: &'a [u8],
}

/// The receiving end of one byte stream of frames.
#[derive(Debug)]
pub struct FrameReader {
    /// Bytes received; those before `start` are taken.
    buf: Vec<u8>,
    /// Bytes of `buf` already returned as frames.
    start: usize,
    /// Bytes that follow every frame on this stream.
    trailer_bytes: usize,
    /// **A deliberate bug** ([`FrameReader::planting_drop_rest_after_frame`]):
    /// the bytes received after a frame, in the same buffer, are thrown away.
    bug_drop_rest_after_frame: bool,
}

impl FrameReader {
    /// A reader of a stream whose frames are each followed by
    /// `trailer_bytes` bytes (0: none).
    pub fn new(trailer_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            trailer_bytes,
            bug_drop_rest_after_frame: false,
        }
    }

    /// **Plants a deliberate bug**, for proving that the simulator's checks
    /// bite: once a frame is taken, whatever else the buffer holds (the
    /// start of the next frame, whole frames read with it) is dropped, as a
    /// reader that assumes one frame per read would. Only the simulator's
    /// planted switch calls it.
    pub fn planting_drop_rest_after_frame(mut self) -> Self {
        self.bug_drop_rest_after_frame = true;
        self
    }

    /// Bytes received and not yet returned in a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The buffer to read into, with at least [`READ_ROOM_MIN_BYTES`] of
    /// spare capacity: append what the socket gives, then take frames.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.compact();
        if self.buf.capacity() - self.buf.len() < READ_ROOM_MIN_BYTES {
            self.buf.reserve(READ_ROOM_BYTES);
        }
        &mut self.buf
    }

    /// Appends bytes received.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame and its trailer, or `None` until more bytes
    /// arrive. The frame is only cut out, not checked: its version,
    /// checksum and payload are [`crate::codec::decode_frame`]'s to check.
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] when the header declares a payload over
    /// [`FRAME_PAYLOAD_BYTES_MAX`]: the stream cannot be resynchronised and
    /// the connection should be dropped.
    pub fn next_raw(&mut self) -> Result<Option<RawFrame<'_>>, CodecError> {
        let rest = &self.buf[self.start..];
        let Some(header) = rest.get(..FRAME_HEADER_BYTES) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > FRAME_PAYLOAD_BYTES_MAX {
            return Err(CodecError::TooLarge { len });
        }
        let frame_end = FRAME_HEADER_BYTES + len;
        let end = frame_end + self.trailer_bytes;
        if rest.len() < end {
            return Ok(None);
        }
        let at = self.start;
        self.start = if self.bug_drop_rest_after_frame {
            self.buf.len()
        } else {
            at + end
        };
        assert!(self.start <= self.buf.len());
        Ok(Some(RawFrame {
            frame: &self.buf[at..at + frame_end],
            trailer: &self.buf[at + frame_end..at + end],
        }))
    }

    /// Drops the bytes already taken; gives back a large buffer once empty.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        self.buf.drain(..self.start);
        self.start = 0;
        if self.buf.is_empty() && self.buf.capacity() > READ_BUFFER_KEPT_BYTES_MAX {
            self.buf = Vec::with_capacity(READ_ROOM_BYTES);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_frame, encode_frame, Decoded};
    use crate::ids::OpId;
    use crate::message::{Envelope, Message};
    use proptest::prelude::*;

    fn envelope(seq: u64, key_bytes: usize) -> Envelope {
        Envelope {
            hlc: seq,
            message: Message::Read {
                op: OpId { generation: 1, seq },
                key: vec![b'k'; key_bytes],
            },
        }
    }

    /// Feeds `stream` in pieces cut at `cuts` and returns every frame
    /// decoded, with its trailer.
    fn read_in_pieces(
        reader: &mut FrameReader,
        stream: &[u8],
        cuts: &[usize],
    ) -> Vec<(Envelope, Vec<u8>)> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut out = Vec::new();
        for piece in points.windows(2) {
            reader.extend(&stream[piece[0]..piece[1]]);
            while let Some(raw) = reader.next_raw().expect("a clean stream") {
                let Ok(Decoded::Frame { envelope, .. }) = decode_frame(raw.frame) else {
                    panic!("a whole frame did not decode");
                };
                out.push((envelope, raw.trailer.to_vec()));
            }
        }
        out
    }

    proptest! {
        #[test]
        fn frames_cut_anywhere_come_out_whole_and_in_order(
            sizes in proptest::collection::vec(0usize..300, 1..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
            trailer in 0usize..20,
        ) {
            let sent: Vec<Envelope> = sizes
                .iter()
                .enumerate()
                .map(|(i, &size)| envelope(i as u64, size))
                .collect();
            let mut stream = Vec::new();
            for (i, e) in sent.iter().enumerate() {
                stream.extend_from_slice(&encode_frame(e));
                stream.extend_from_slice(&vec![i as u8; trailer]);
            }
            let mut reader = FrameReader::new(trailer);
            let got = read_in_pieces(&mut reader, &stream, &cuts);
            prop_assert_eq!(got.len(), sent.len());
            for (i, ((envelope, tag), expected)) in got.iter().zip(&sent).enumerate() {
                prop_assert_eq!(envelope, expected);
                prop_assert_eq!(tag, &vec![i as u8; trailer]);
            }
            prop_assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn a_partial_header_waits_for_the_rest() {
        let frame = encode_frame(&envelope(1, 10));
        let mut reader = FrameReader::new(0);
        reader.extend(&frame[..FRAME_HEADER_BYTES - 1]);
        assert_eq!(reader.next_raw(), Ok(None));
        reader.extend(&frame[FRAME_HEADER_BYTES - 1..]);
        let raw = reader.next_raw().expect("fits").expect("whole");
        assert_eq!(raw.frame, &frame[..]);
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn an_oversized_length_is_refused_before_its_payload_arrives() {
        let mut header = u32::MAX.to_le_bytes().to_vec();
        header.extend_from_slice(&[2, 0, 0, 0, 0]);
        let mut reader = FrameReader::new(0);
        reader.extend(&header);
        assert!(matches!(
            reader.next_raw(),
            Err(CodecError::TooLarge { .. })
        ));
    }

    /// The planted reader loses the frame read together with another: the
    /// next read starts inside a frame, and the stream no longer decodes.
    #[test]
    fn the_planted_reader_loses_what_followed_a_frame() {
        let first = encode_frame(&envelope(1, 10));
        let second = encode_frame(&envelope(2, 10));
        let mut stream = first.clone();
        stream.extend_from_slice(&second[..4]);
        let mut reader = FrameReader::new(0).planting_drop_rest_after_frame();
        reader.extend(&stream);
        assert!(reader.next_raw().expect("fits").is_some());
        reader.extend(&second[4..]);
        let rest = reader.next_raw();
        let decoded = match rest {
            Ok(Some(raw)) => decode_frame(raw.frame).ok(),
            Ok(None) | Err(_) => None,
        };
        assert!(
            !matches!(decoded, Some(Decoded::Frame { .. })),
            "the second frame survived: {decoded:?}"
        );
    }
}
