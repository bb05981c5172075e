//! The peer handshake and the authentication of the frames that follow it.
//!
//! Before any frame, the dialer and the acceptor of a peer connection prove
//! to each other that they know the cluster secret and agree on placement
//! (`docs/FORMAT.md`, "Peer handshake"). The order of the proofs is the
//! point of this file:
//!
//! - **The acceptor reveals nothing testable before the dialer has proved
//!   itself.** Anyone who can reach the peer port can dial it. If the
//!   acceptor answered a hello with an HMAC of the secret (as handshake
//!   version 1 did), a stranger could record it and test guesses of the
//!   secret offline, as fast as it can compute HMACs. So the acceptor sends
//!   only a fresh nonce; the dialer proves first; the acceptor checks the
//!   proof and only then proves itself. A stranger dialing in learns one
//!   byte per guess (refused or not), online, at the pace of a handshake.
//! - **The dialer proves first only to an address it was configured with**
//!   (and, with `tls_peers`, only after checking that address's certificate
//!   against the cluster's CA), so an offline guess needs an attacker able to
//!   stand at a member's address. Without TLS that is the remaining exposure;
//!   a secret of 16 random bytes or more (what `enigma dev` generates) makes
//!   offline guessing hopeless anyway.
//! - Both sides contribute a nonce, so neither side's proof from an earlier
//!   connection is of any use in a new one.
//!
//! After the handshake, each frame on a plaintext link carries a tag: the
//! first [`FRAME_TAG_BYTES`] bytes of HMAC-SHA256 under a key derived from
//! the secret and both nonces, over the frame's sequence number on the link
//! and its bytes. A frame changed, dropped, replayed or reordered in transit
//! fails its tag and the link is closed; the CRC in the frame only catches
//! accidents. On a TLS link, TLS authenticates the bytes and there are no
//! tags.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use enigma_cluster::{ClusterConfig, NodeId};

/// The first bytes of every peer connection.
pub const HANDSHAKE_MAGIC: [u8; 8] = *b"ENIGPEER";
/// Version of the handshake and of the frame tags that follow it (1 had the
/// acceptor prove first and no frame tags).
pub const HANDSHAKE_VERSION: u8 = 2;
/// Bytes of each side's nonce.
const NONCE_BYTES: usize = 16;
/// Dialer's hello: magic, version, from, to, cluster digest, nonce.
const HELLO_BYTES: usize = 8 + 1 + 4 + 4 + 8 + NONCE_BYTES;
/// An HMAC-SHA256 proof.
const PROOF_BYTES: usize = 32;
/// Bytes of the tag after each frame on a plaintext link.
pub const FRAME_TAG_BYTES: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// Why a handshake failed. The refusal codes travel in the verdict byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("not an EnigmaDB peer, or a different handshake version")]
    Version,
    #[error("the dialer meant to reach another node id")]
    WrongNode,
    #[error("the dialer is not a member of this cluster")]
    NotAMember,
    #[error("the two nodes are configured with different members, replication factor or vnodes")]
    ClusterMismatch,
    #[error("bad proof of the cluster secret")]
    BadSecret,
    #[error("connection closed or failed during the handshake")]
    Io,
}

impl HandshakeError {
    fn code(self) -> u8 {
        match self {
            Self::Version => 1,
            Self::WrongNode => 2,
            Self::NotAMember => 3,
            Self::ClusterMismatch => 4,
            Self::BadSecret => 5,
            Self::Io => 6,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Version,
            2 => Self::WrongNode,
            3 => Self::NotAMember,
            4 => Self::ClusterMismatch,
            5 => Self::BadSecret,
            _ => Self::Io,
        }
    }
}

impl From<std::io::Error> for HandshakeError {
    fn from(_: std::io::Error) -> Self {
        Self::Io
    }
}

/// A digest of the placement every member must share.
pub fn cluster_digest(cluster: &ClusterConfig) -> u64 {
    let mut members: Vec<u32> = cluster.nodes.iter().map(|n| n.0).collect();
    members.sort_unstable();
    let text = format!(
        "enigma-cluster-v1;members={members:?};rf={};vnodes={}",
        cluster.replication_factor, cluster.vnodes_per_node
    );
    let hash = Sha256::digest(text.as_bytes());
    u64::from_le_bytes(hash[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

fn nonce() -> [u8; NONCE_BYTES] {
    let mut nonce = [0u8; NONCE_BYTES];
    if crate::entropy::fill(&mut nonce).is_err() {
        // No OS randomness: fall back to the clock. Nonces only need to be
        // fresh, not secret.
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        nonce.copy_from_slice(&now.to_le_bytes());
    }
    nonce
}

/// HMAC-SHA256 under the secret of `purpose`, the hello and the acceptor's
/// nonce (the hello holds the dialer's).
fn keyed(secret: &[u8], purpose: &[u8], hello: &[u8], acceptor_nonce: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(b"enigma-peer-v2 ");
    mac.update(purpose);
    mac.update(hello);
    mac.update(acceptor_nonce);
    mac
}

fn frame_key(secret: &[u8], hello: &[u8], acceptor_nonce: &[u8]) -> FrameKey {
    let key = keyed(secret, b"frames", hello, acceptor_nonce)
        .finalize()
        .into_bytes();
    FrameKey {
        mac: HmacSha256::new_from_slice(&key).expect("HMAC takes a key of any length"),
    }
}

/// What both ends of a handshake need to know.
#[derive(Clone)]
pub struct HandshakeKeys {
    /// This node.
    pub me: NodeId,
    /// Every member.
    pub members: Vec<NodeId>,
    /// [`cluster_digest`] of this node's configuration.
    pub digest: u64,
    /// The cluster secret.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for HandshakeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeKeys")
            .field("me", &self.me)
            .field("members", &self.members)
            .field("digest", &self.digest)
            .field("secret", &"<hidden>")
            .finish()
    }
}

/// The key that authenticates one link's frames, derived in its handshake.
#[derive(Clone)]
pub struct FrameKey {
    /// Keyed once; cloned per frame (no key schedule per frame).
    mac: HmacSha256,
}

impl std::fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameKey(<hidden>)")
    }
}

impl FrameKey {
    /// The sender's side: tags frames in order.
    pub fn sealer(&self) -> FrameTags {
        FrameTags {
            key: self.clone(),
            seq: 0,
        }
    }

    /// The receiver's side: checks tags in order.
    pub fn opener(&self) -> FrameTags {
        self.sealer()
    }
}

/// Tags (or checks the tags of) one link's frames, numbering them from 0.
#[derive(Debug)]
pub struct FrameTags {
    key: FrameKey,
    seq: u64,
}

impl FrameTags {
    fn tag_of(&self, frame: &[u8]) -> [u8; FRAME_TAG_BYTES] {
        let mut mac = self.key.mac.clone();
        mac.update(&self.seq.to_le_bytes());
        mac.update(frame);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; FRAME_TAG_BYTES];
        tag.copy_from_slice(&full[..FRAME_TAG_BYTES]);
        tag
    }

    /// The tag of the next frame, `frame`.
    pub fn seal(&mut self, frame: &[u8]) -> [u8; FRAME_TAG_BYTES] {
        let tag = self.tag_of(frame);
        self.seq += 1;
        tag
    }

    /// Whether `tag` is the right tag for the next frame, `frame`. Compared
    /// in constant time.
    pub fn open(&mut self, frame: &[u8], tag: &[u8]) -> bool {
        let expected = self.tag_of(frame);
        self.seq += 1;
        tag.len() == FRAME_TAG_BYTES
            && expected
                .iter()
                .zip(tag)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// What the acceptor learned in a handshake that passed.
#[derive(Debug)]
pub struct Accepted {
    /// The dialer, proven to know the secret.
    pub from: NodeId,
    /// The key its frames are tagged with (on a plaintext link).
    pub frame_key: FrameKey,
}

/// Runs the dialer's side of the handshake with node `to`.
///
/// # Errors
/// The refusal the acceptor sent, or [`HandshakeError::BadSecret`] when the
/// acceptor could not prove it knows the secret.
pub async fn dial_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &HandshakeKeys,
    to: NodeId,
) -> Result<FrameKey, HandshakeError> {
    let mut hello = Vec::with_capacity(HELLO_BYTES);
    hello.extend_from_slice(&HANDSHAKE_MAGIC);
    hello.push(HANDSHAKE_VERSION);
    hello.extend_from_slice(&keys.me.0.to_le_bytes());
    hello.extend_from_slice(&to.0.to_le_bytes());
    hello.extend_from_slice(&keys.digest.to_le_bytes());
    hello.extend_from_slice(&nonce());
    stream.write_all(&hello).await?;
    stream.flush().await?;
    let mut verdict = [0u8; 1];
    stream.read_exact(&mut verdict).await?;
    if verdict[0] != 0 {
        return Err(HandshakeError::from_code(verdict[0]));
    }
    let mut acceptor_nonce = [0u8; NONCE_BYTES];
    stream.read_exact(&mut acceptor_nonce).await?;
    let mine = keyed(&keys.secret, b"dialer", &hello, &acceptor_nonce)
        .finalize()
        .into_bytes();
    stream.write_all(&mine).await?;
    stream.flush().await?;
    stream.read_exact(&mut verdict).await?;
    if verdict[0] != 0 {
        return Err(HandshakeError::from_code(verdict[0]));
    }
    let mut theirs = [0u8; PROOF_BYTES];
    stream.read_exact(&mut theirs).await?;
    keyed(&keys.secret, b"acceptor", &hello, &acceptor_nonce)
        .verify_slice(&theirs)
        .map_err(|_| HandshakeError::BadSecret)?;
    Ok(frame_key(&keys.secret, &hello, &acceptor_nonce))
}

/// Runs the acceptor's side of the handshake; returns the proven peer and
/// the key of its frames.
///
/// # Errors
/// Why the dialer was refused (it was told, then the caller closes).
pub async fn accept_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &HandshakeKeys,
) -> Result<Accepted, HandshakeError> {
    let mut hello = [0u8; HELLO_BYTES];
    stream.read_exact(&mut hello).await?;
    let word = |at: usize| u32::from_le_bytes(hello[at..at + 4].try_into().expect("4 bytes"));
    let from = NodeId(word(9));
    let to = NodeId(word(13));
    let digest = u64::from_le_bytes(hello[17..25].try_into().expect("8 bytes"));
    let refusal = if hello[..8] != HANDSHAKE_MAGIC || hello[8] != HANDSHAKE_VERSION {
        Some(HandshakeError::Version)
    } else if to != keys.me {
        Some(HandshakeError::WrongNode)
    } else if from == keys.me || !keys.members.contains(&from) {
        Some(HandshakeError::NotAMember)
    } else if digest != keys.digest {
        Some(HandshakeError::ClusterMismatch)
    } else {
        None
    };
    if let Some(refusal) = refusal {
        // Something that is not a peer at all gets no answer.
        if refusal != HandshakeError::Version {
            let _ = stream.write_all(&[refusal.code()]).await;
            let _ = stream.flush().await;
        }
        return Err(refusal);
    }
    let acceptor_nonce = nonce();
    let mut challenge = [0u8; 1 + NONCE_BYTES];
    challenge[1..].copy_from_slice(&acceptor_nonce);
    stream.write_all(&challenge).await?;
    stream.flush().await?;
    let mut theirs = [0u8; PROOF_BYTES];
    stream.read_exact(&mut theirs).await?;
    if keyed(&keys.secret, b"dialer", &hello, &acceptor_nonce)
        .verify_slice(&theirs)
        .is_err()
    {
        let _ = stream.write_all(&[HandshakeError::BadSecret.code()]).await;
        let _ = stream.flush().await;
        return Err(HandshakeError::BadSecret);
    }
    let mine = keyed(&keys.secret, b"acceptor", &hello, &acceptor_nonce)
        .finalize()
        .into_bytes();
    let mut answer = [0u8; 1 + PROOF_BYTES];
    answer[1..].copy_from_slice(&mine);
    stream.write_all(&answer).await?;
    stream.flush().await?;
    Ok(Accepted {
        from,
        frame_key: frame_key(&keys.secret, &hello, &acceptor_nonce),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(me: u32, secret: &str) -> HandshakeKeys {
        let cluster = ClusterConfig {
            nodes: vec![NodeId(1), NodeId(2), NodeId(3)],
            replication_factor: 3,
            vnodes_per_node: 8,
        };
        HandshakeKeys {
            me: NodeId(me),
            members: cluster.nodes.clone(),
            digest: cluster_digest(&cluster),
            secret: secret.as_bytes().to_vec(),
        }
    }

    async fn handshake(
        dialer: HandshakeKeys,
        acceptor: HandshakeKeys,
        to: NodeId,
    ) -> (
        Result<FrameKey, HandshakeError>,
        Result<Accepted, HandshakeError>,
    ) {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let dial = async move { dial_handshake(&mut a, &dialer, to).await };
        let accept = async move { accept_handshake(&mut b, &acceptor).await };
        tokio::join!(dial, accept)
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn members_with_the_same_secret_shake_hands_and_agree_on_the_frame_key() {
        let (dial, accept) = run(handshake(
            keys(1, "s3cret-s3cret"),
            keys(2, "s3cret-s3cret"),
            NodeId(2),
        ));
        let accepted = accept.unwrap();
        assert_eq!(accepted.from, NodeId(1));
        let mut sealer = dial.unwrap().sealer();
        let mut opener = accepted.frame_key.opener();
        for frame in [&b"first"[..], b"second"] {
            let tag = sealer.seal(frame);
            assert!(opener.open(frame, &tag));
        }
    }

    #[test]
    fn a_wrong_secret_is_refused_on_both_sides() {
        let (dial, accept) = run(handshake(
            keys(1, "guess-guess"),
            keys(2, "s3cret-s3cret"),
            NodeId(2),
        ));
        assert_eq!(dial.unwrap_err(), HandshakeError::BadSecret);
        assert_eq!(accept.unwrap_err(), HandshakeError::BadSecret);
    }

    /// The acceptor's whole answer to a dialer that does not know the
    /// secret: whatever it sends must not depend on the secret, so a
    /// stranger has nothing to test guesses against offline.
    fn acceptor_bytes_for_a_stranger(secret: &str) -> Vec<u8> {
        run(async {
            let (mut a, mut b) = tokio::io::duplex(1024);
            let acceptor = keys(2, secret);
            let accept = tokio::spawn(async move { accept_handshake(&mut b, &acceptor).await });
            let mut hello = Vec::new();
            hello.extend_from_slice(&HANDSHAKE_MAGIC);
            hello.push(HANDSHAKE_VERSION);
            hello.extend_from_slice(&1u32.to_le_bytes());
            hello.extend_from_slice(&2u32.to_le_bytes());
            hello.extend_from_slice(&keys(1, "").digest.to_le_bytes());
            hello.extend_from_slice(&[7u8; NONCE_BYTES]);
            a.write_all(&hello).await.unwrap();
            // A guessed proof.
            a.write_all(&[0u8; PROOF_BYTES]).await.unwrap();
            assert_eq!(
                accept.await.unwrap().unwrap_err(),
                HandshakeError::BadSecret
            );
            let mut everything = Vec::new();
            a.read_to_end(&mut everything).await.unwrap();
            everything
        })
    }

    #[test]
    fn a_stranger_learns_nothing_that_depends_on_the_secret() {
        let one = acceptor_bytes_for_a_stranger("s3cret-s3cret");
        let other = acceptor_bytes_for_a_stranger("another-secret");
        // Verdict 0 and a nonce, then the refusal: nothing else.
        assert_eq!(one.len(), 1 + NONCE_BYTES + 1);
        assert_eq!(one[0], 0);
        assert_eq!(one[NONCE_BYTES + 1], HandshakeError::BadSecret.code());
        assert_eq!(other.len(), one.len());
        assert_ne!(one[1..=NONCE_BYTES], other[1..=NONCE_BYTES], "fresh nonces");
    }

    #[test]
    fn strangers_wrong_targets_and_other_clusters_are_refused() {
        let (dial, accept) = run(handshake(
            keys(9, "s3cret-s3cret"),
            keys(2, "s3cret-s3cret"),
            NodeId(2),
        ));
        assert_eq!(dial.unwrap_err(), HandshakeError::NotAMember);
        assert_eq!(accept.unwrap_err(), HandshakeError::NotAMember);
        let (dial, _) = run(handshake(
            keys(1, "s3cret-s3cret"),
            keys(2, "s3cret-s3cret"),
            NodeId(3),
        ));
        assert_eq!(dial.unwrap_err(), HandshakeError::WrongNode);
        let mut other = keys(1, "s3cret-s3cret");
        other.digest ^= 1;
        let (dial, _) = run(handshake(other, keys(2, "s3cret-s3cret"), NodeId(2)));
        assert_eq!(dial.unwrap_err(), HandshakeError::ClusterMismatch);
    }

    #[test]
    fn a_non_peer_gets_no_answer() {
        run(async {
            let (mut a, mut b) = tokio::io::duplex(1024);
            let acceptor = keys(2, "s3cret-s3cret");
            let accept = tokio::spawn(async move { accept_handshake(&mut b, &acceptor).await });
            a.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
            a.write_all(&[0u8; HELLO_BYTES]).await.unwrap();
            assert_eq!(accept.await.unwrap().unwrap_err(), HandshakeError::Version);
            let mut rest = Vec::new();
            a.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        });
    }

    #[test]
    fn the_digest_depends_on_placement_not_member_order() {
        let a = ClusterConfig {
            nodes: vec![NodeId(1), NodeId(2)],
            replication_factor: 2,
            vnodes_per_node: 8,
        };
        let mut b = a.clone();
        b.nodes.reverse();
        assert_eq!(cluster_digest(&a), cluster_digest(&b));
        b.replication_factor = 1;
        assert_ne!(cluster_digest(&a), cluster_digest(&b));
    }

    #[test]
    fn a_changed_replayed_or_reordered_frame_fails_its_tag() {
        let key = frame_key(b"s3cret-s3cret", b"hello", b"nonce");
        let mut sealer = key.sealer();
        let first = sealer.seal(b"frame one");
        let second = sealer.seal(b"frame two");
        // Changed.
        assert!(!key.opener().open(b"frame 0ne", &first));
        // Reordered: the second frame first.
        assert!(!key.opener().open(b"frame two", &second));
        // Replayed: the first frame twice.
        let mut opener = key.opener();
        assert!(opener.open(b"frame one", &first));
        assert!(!opener.open(b"frame one", &first));
        // Another link's key.
        let other = frame_key(b"s3cret-s3cret", b"hello", b"other nonce");
        assert!(!other.opener().open(b"frame one", &first));
    }
}
