//! Peer byte streams: every frame between nodes reaches its receiver through
//! the production frame reader ([`FrameReader`], the one `src/peer.rs`
//! reads its sockets with), as part of one byte stream per directed link,
//! cut into reads at drawn points: a partial header, a partial payload,
//! several frames in one read, the rest of a frame read a little later.
//!
//! A frame enters its link's stream when the network delivers it (so the
//! network may still reorder, lose and duplicate whole messages, as
//! `net.rs` says); a message cut by a partition never enters it. A crash
//! closes the crashed node's connections: what its links had received but
//! not yet read is lost with them, as with a dropped TCP connection. The
//! simulated network never alters a byte, so a frame that fails to decode
//! is an `integrity` violation: the reader or the codec is wrong.

use enigma_cluster::{decode_frame, Decoded, Envelope, FrameReader, Input};
use rand::Rng;

use super::{Event, Simulation};

/// How a run's links cut their byte streams into reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadCuts {
    /// Every read takes all that has arrived: one read per message.
    Whole,
    /// Reads of 1 to [`READ_PIECE_BYTES_MAX`] bytes, as from a congested
    /// link: headers and payloads in several pieces.
    Pieces,
    /// Reads cut anywhere in what has arrived; often the rest is read
    /// later, so frames pile up and several come in one read.
    Anywhere,
}

impl ReadCuts {
    /// Every kind, for the swarm's draw.
    pub(super) const ALL: [ReadCuts; 3] = [ReadCuts::Whole, ReadCuts::Pieces, ReadCuts::Anywhere];

    /// Its name on the `swarm:` line.
    pub(super) fn name(self) -> &'static str {
        match self {
            ReadCuts::Whole => "whole",
            ReadCuts::Pieces => "pieces",
            ReadCuts::Anywhere => "anywhere",
        }
    }

    /// Chance, after a read that left bytes unread, that the receiver
    /// reads the rest only later.
    fn later_probability(self) -> f64 {
        match self {
            ReadCuts::Whole => 0.0,
            ReadCuts::Pieces => 0.1,
            ReadCuts::Anywhere => 0.3,
        }
    }
}

/// Largest read of [`ReadCuts::Pieces`]: smaller than most frames, and
/// often smaller than a header.
const READ_PIECE_BYTES_MAX: usize = 64;
/// Longest a receiver waits before it reads the rest of what arrived.
const READ_LATER_NANOS_MAX: u64 = 500_000;

/// The receiving end of one directed link's byte stream.
#[derive(Debug)]
pub(super) struct LinkStream {
    /// The production reader.
    reader: FrameReader,
    /// Bytes arrived at the receiver; those from `unread_start` on are not
    /// read yet. Reads advance the start rather than drain the front, so
    /// a stream read in small pieces does not move its rest at each read.
    unread: Vec<u8>,
    unread_start: usize,
    /// Whether a later read of this link is scheduled.
    read_scheduled: bool,
    /// Connections so far: a read scheduled for an earlier one is ignored.
    connection: u64,
}

impl LinkStream {
    pub(super) fn new(planted_drop_rest: bool) -> Self {
        Self {
            reader: reader(planted_drop_rest),
            unread: Vec::new(),
            unread_start: 0,
            read_scheduled: false,
            connection: 0,
        }
    }

    /// Bytes arrived and not read yet.
    fn unread(&self) -> &[u8] {
        &self.unread[self.unread_start..]
    }

    /// Bytes arrive: the rest is moved to the front first if reads have
    /// taken over half the buffer.
    fn arrive(&mut self, bytes: &[u8]) {
        if self.unread_start > self.unread.len() / 2 {
            self.unread.drain(..self.unread_start);
            self.unread_start = 0;
        }
        self.unread.extend_from_slice(bytes);
    }

    /// The receiver reads the first `size` unread bytes into its reader.
    fn read(&mut self, size: usize) {
        let start = self.unread_start;
        self.reader.extend(&self.unread[start..start + size]);
        self.unread_start += size;
        if self.unread_start == self.unread.len() {
            self.unread.clear();
            self.unread_start = 0;
        }
    }
}

fn reader(planted_drop_rest: bool) -> FrameReader {
    let reader = FrameReader::new(0);
    if planted_drop_rest {
        reader.planting_drop_rest_after_frame()
    } else {
        reader
    }
}

impl Simulation {
    fn link_index(&self, from: usize, to: usize) -> usize {
        from * self.slots.len() + to
    }

    /// A frame from `from` arrives at `to`'s end of their link.
    pub(super) fn on_deliver(
        &mut self,
        from: usize,
        to: usize,
        frame: Vec<u8>,
        incarnations: (u64, u64),
    ) {
        if !self.net.connected(from, to) || self.slots[to].node.is_none() {
            return;
        }
        if incarnations != (self.slots[from].incarnation, self.slots[to].incarnation) {
            // Sent by or to an earlier incarnation of one end.
            enigma_engine::marks::hit(enigma_engine::Mark::SimStaleMessage);
            self.stats.stale_messages += 1;
        }
        let link = self.link_index(from, to);
        self.links[link].arrive(&frame);
        self.read_link(from, to);
    }

    /// A later read of what arrived on the link.
    pub(super) fn on_link_read(&mut self, from: usize, to: usize, connection: u64) {
        let link = self.link_index(from, to);
        if self.links[link].connection != connection {
            return;
        }
        self.links[link].read_scheduled = false;
        if self.slots[to].node.is_some() {
            self.read_link(from, to);
        }
    }

    /// Reads what arrived on the link in drawn pieces and steps the
    /// receiver with every whole frame, until nothing is left unread or the
    /// receiver leaves the rest for later.
    fn read_link(&mut self, from: usize, to: usize) {
        let link = self.link_index(from, to);
        let cuts = self.read_cuts;
        loop {
            let stream = &mut self.links[link];
            if stream.unread().is_empty() || stream.read_scheduled {
                return;
            }
            let available = stream.unread().len();
            let size = match cuts {
                ReadCuts::Whole => available,
                ReadCuts::Pieces => self
                    .rng_frames
                    .random_range(1..=available.min(READ_PIECE_BYTES_MAX)),
                ReadCuts::Anywhere => self.rng_frames.random_range(1..=available),
            };
            stream.read(size);
            let mut envelopes: Vec<Envelope> = Vec::new();
            let mut broken = None;
            loop {
                match stream.reader.next_raw() {
                    Ok(Some(raw)) => match decode_frame(raw.frame) {
                        Ok(Decoded::Frame { envelope, .. }) => {
                            self.trace.record(self.now, raw.frame, || {
                                format!(
                                    "n{} -> n{}: {} bytes: {:?}",
                                    from + 1,
                                    to + 1,
                                    raw.frame.len(),
                                    envelope.message
                                )
                            });
                            envelopes.push(envelope);
                        }
                        Ok(Decoded::Incomplete) => {
                            broken = Some("a whole frame decoded as incomplete".to_owned());
                            break;
                        }
                        Err(e) => {
                            broken = Some(e.to_string());
                            break;
                        }
                    },
                    Ok(None) => break,
                    Err(e) => {
                        broken = Some(e.to_string());
                        break;
                    }
                }
            }
            if envelopes.len() > 1 {
                self.stats.reads_of_several_frames += 1;
            }
            if stream.reader.buffered() > 0 {
                self.stats.reads_ending_inside_a_frame += 1;
            }
            let later = !stream.unread().is_empty()
                && cuts.later_probability() > 0.0
                && self.rng_frames.random_bool(cuts.later_probability());
            if let Some(reason) = &broken {
                self.violate(
                    "integrity",
                    format!(
                        "the stream from n{} to n{} failed to decode: {reason}",
                        from + 1,
                        to + 1
                    ),
                );
                // The receiver drops the connection.
                self.reset_link(link);
            }
            let from_id = self.slots[from].id;
            for envelope in envelopes {
                if self.slots[to].node.is_none() {
                    return;
                }
                self.step_node(
                    to,
                    Input::Message {
                        from: from_id,
                        envelope,
                    },
                );
            }
            if broken.is_some() || self.slots[to].node.is_none() {
                return;
            }
            if later {
                let stream = &mut self.links[link];
                stream.read_scheduled = true;
                let connection = stream.connection;
                let delay = self.rng_frames.random_range(1..=READ_LATER_NANOS_MAX);
                self.schedule(
                    delay,
                    Event::LinkRead {
                        from,
                        to,
                        connection,
                    },
                );
                return;
            }
        }
    }

    /// Closes every connection of `node`, both ways: what they received and
    /// did not read is lost.
    pub(super) fn reset_links_of(&mut self, node: usize) {
        for other in 0..self.slots.len() {
            let (out, into) = (self.link_index(node, other), self.link_index(other, node));
            self.reset_link(out);
            self.reset_link(into);
        }
    }

    fn reset_link(&mut self, link: usize) {
        let stream = &mut self.links[link];
        if stream.unread().is_empty() && stream.reader.buffered() == 0 && !stream.read_scheduled {
            return;
        }
        stream.reader = reader(self.config.planted_frame_reader_drops_rest);
        stream.unread.clear();
        stream.unread_start = 0;
        stream.read_scheduled = false;
        stream.connection += 1;
    }
}
