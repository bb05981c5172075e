//! RESP2, the Redis wire protocol, as far as a server needs it.
//!
//! Requests arrive as arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`)
//! or, from people typing into a raw connection, as inline commands
//! (`GET k\r\n`). The parser is incremental: it returns `None` until a
//! whole request is buffered, and it checks every length against a named
//! limit *before* trusting it, so a hostile or broken client gets an error
//! and cannot make the server allocate without bound. After an error the
//! connection cannot be resynchronised and should be closed once the error
//! reply is sent.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// Bounds on what one request may ask the server to buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespLimits {
    /// Largest bulk string (a key or a value) in bytes.
    pub bulk_bytes_max: usize,
    /// Most arguments in one request, the command name included.
    pub args_max: usize,
    /// Longest inline command line in bytes.
    pub inline_bytes_max: usize,
}

impl Default for RespLimits {
    fn default() -> Self {
        Self {
            bulk_bytes_max: 16 << 20,
            args_max: 1024,
            inline_bytes_max: 64 << 10,
        }
    }
}

/// A request the client sent that is not valid RESP, or exceeds a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// A byte where a RESP type marker, digit or line end was expected.
    Protocol { offset: usize, reason: &'static str },
    /// A declared length above its limit.
    TooLarge {
        what: &'static str,
        len: u64,
        max: usize,
    },
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol { offset, reason } => {
                write!(f, "Protocol error: {reason} at byte {offset}")
            }
            Self::TooLarge { what, len, max } => {
                write!(
                    f,
                    "Protocol error: {what} of {len} exceeds the limit of {max}"
                )
            }
        }
    }
}

/// Parses the request at the start of `buf` without copying it: fills
/// `args` (cleared first) with the position of each argument in `buf` and
/// returns the bytes the request took, or `None` while it is incomplete.
/// An empty argument list is a blank inline line, which clients may send
/// and servers ignore. A server keeps `args` from one request to the next
/// and copies only the arguments it keeps.
///
/// # Errors
/// [`RespError`] for bytes that are not a RESP request or that exceed
/// `limits`.
pub fn parse_request_ranges(
    buf: &[u8],
    limits: &RespLimits,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<usize>, RespError> {
    args.clear();
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_array(buf, limits, args),
        Some(_) => parse_inline(buf, limits, args),
    }
}

fn parse_array(
    buf: &[u8],
    limits: &RespLimits,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<usize>, RespError> {
    let Some((count, mut pos)) = read_length(buf, 1, "array length", limits.args_max)? else {
        return Ok(None);
    };
    for _ in 0..count {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(_) => {
                return Err(RespError::Protocol {
                    offset: pos,
                    reason: "expected '$' (a bulk string argument)",
                })
            }
        }
        let Some((len, start)) = read_length(buf, pos + 1, "bulk string", limits.bulk_bytes_max)?
        else {
            return Ok(None);
        };
        let end = start + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(RespError::Protocol {
                offset: end,
                reason: "bulk string not followed by CRLF",
            });
        }
        args.push(start..end);
        pos = end + 2;
    }
    Ok(Some(pos))
}

/// Reads a decimal length after a type marker at `start`, ending in CRLF.
/// Returns the length and the offset after the CRLF, or `None` if the line
/// is not complete yet.
fn read_length(
    buf: &[u8],
    start: usize,
    what: &'static str,
    max: usize,
) -> Result<Option<(usize, usize)>, RespError> {
    // A length has at most 20 digits; refuse longer lines without waiting.
    const DIGITS_MAX: usize = 20;
    let mut value: u64 = 0;
    let mut pos = start;
    loop {
        match buf.get(pos) {
            None => {
                if pos - start > DIGITS_MAX {
                    return Err(RespError::Protocol {
                        offset: pos,
                        reason: "length too long",
                    });
                }
                return Ok(None);
            }
            Some(b'\r') => break,
            Some(&d @ b'0'..=b'9') => {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(d - b'0')))
                    .ok_or(RespError::Protocol {
                        offset: pos,
                        reason: "length overflows",
                    })?;
                if pos - start >= DIGITS_MAX {
                    return Err(RespError::Protocol {
                        offset: pos,
                        reason: "length too long",
                    });
                }
            }
            Some(b'-') if pos == start => {
                return Err(RespError::Protocol {
                    offset: pos,
                    reason: "negative length",
                })
            }
            Some(_) => {
                return Err(RespError::Protocol {
                    offset: pos,
                    reason: "expected a digit",
                })
            }
        }
        pos += 1;
    }
    if pos == start {
        return Err(RespError::Protocol {
            offset: pos,
            reason: "empty length",
        });
    }
    match buf.get(pos + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => {
            return Err(RespError::Protocol {
                offset: pos + 1,
                reason: "expected LF after CR",
            })
        }
    }
    let len = usize::try_from(value).ok().filter(|&len| len <= max);
    match len {
        Some(len) => Ok(Some((len, pos + 2))),
        None => Err(RespError::TooLarge {
            what,
            len: value,
            max,
        }),
    }
}

fn parse_inline(
    buf: &[u8],
    limits: &RespLimits,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<usize>, RespError> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.inline_bytes_max {
            return Err(RespError::TooLarge {
                what: "inline command",
                len: buf.len() as u64,
                max: limits.inline_bytes_max,
            });
        }
        return Ok(None);
    };
    if newline > limits.inline_bytes_max {
        return Err(RespError::TooLarge {
            what: "inline command",
            len: newline as u64,
            max: limits.inline_bytes_max,
        });
    }
    let mut start = None;
    for (i, &b) in buf[..newline].iter().enumerate() {
        match (b.is_ascii_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(from)) => {
                args.push(from..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        args.push(from..newline);
    }
    if args.len() > limits.args_max {
        return Err(RespError::TooLarge {
            what: "argument count",
            len: args.len() as u64,
            max: limits.args_max,
        });
    }
    Ok(Some(newline + 1))
}

/// A reply, as the server writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`-style status line (no CR or LF inside); usually a constant,
    /// so no allocation per reply.
    Simple(Cow<'static, str>),
    /// `-ERR ...` error line (no CR or LF inside).
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc`.
    Bulk(Vec<u8>),
    /// `$-1`: no such key.
    Null,
    /// `*N` followed by N replies.
    Array(Vec<Reply>),
    /// Pairs: a RESP3 map (`%N`), or in RESP2 a flat array of `2N` items.
    Map(Vec<(Reply, Reply)>),
}

/// The protocol version a connection speaks; `HELLO 3` switches to RESP3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default.
    #[default]
    Resp2,
    /// RESP3: a distinct null (`_`) and maps (`%`).
    Resp3,
}

impl Reply {
    /// An error reply; CR and LF in `message` are replaced so the line stays
    /// one line.
    pub fn error(message: impl Into<String>) -> Self {
        Self::Error(one_line(message.into()))
    }

    /// Appends the RESP2 wire form of this reply to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_as(Protocol::Resp2, out);
    }

    /// Appends the wire form of this reply in `protocol` to `out`.
    pub fn encode_as(&self, protocol: Protocol, out: &mut Vec<u8>) {
        match self {
            Self::Simple(s) => {
                out.push(b'+');
                push_line(out, s);
            }
            Self::Error(s) => {
                out.push(b'-');
                push_line(out, s);
            }
            Self::Integer(n) => {
                out.push(b':');
                push_decimal(out, *n);
            }
            Self::Bulk(bytes) => {
                out.push(b'$');
                push_decimal(out, bytes.len() as i64);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(bytes);
            }
            Self::Null => match protocol {
                Protocol::Resp2 => out.extend_from_slice(b"$-1"),
                Protocol::Resp3 => out.push(b'_'),
            },
            Self::Array(items) => {
                out.push(b'*');
                push_decimal(out, items.len() as i64);
                out.extend_from_slice(b"\r\n");
                for item in items {
                    item.encode_as(protocol, out);
                }
                // Each item ended its own line.
                return;
            }
            Self::Map(pairs) => {
                match protocol {
                    Protocol::Resp2 => {
                        out.push(b'*');
                        push_decimal(out, pairs.len() as i64 * 2);
                    }
                    Protocol::Resp3 => {
                        out.push(b'%');
                        push_decimal(out, pairs.len() as i64);
                    }
                }
                out.extend_from_slice(b"\r\n");
                for (key, value) in pairs {
                    key.encode_as(protocol, out);
                    value.encode_as(protocol, out);
                }
                return;
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `s` with any CR or LF replaced, so a status or error stays one
/// line.
fn push_line(out: &mut Vec<u8>, s: &str) {
    let start = out.len();
    out.extend_from_slice(s.as_bytes());
    for byte in &mut out[start..] {
        if *byte == b'\r' || *byte == b'\n' {
            *byte = b' ';
        }
    }
}

/// Appends `n` in decimal without allocating.
fn push_decimal(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

fn one_line(s: String) -> String {
    if s.contains(['\r', '\n']) {
        s.replace(['\r', '\n'], " ")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`parse_request`] found at the start of a buffer.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Parsed {
        /// A whole request: its arguments, copied, and how many bytes it
        /// took.
        Request { args: Vec<Vec<u8>>, consumed: usize },
        /// Only part of a request is buffered.
        Incomplete,
    }

    /// [`parse_request_ranges`] with the arguments copied out.
    fn parse_request(buf: &[u8], limits: &RespLimits) -> Result<Parsed, RespError> {
        let mut ranges = Vec::new();
        Ok(match parse_request_ranges(buf, limits, &mut ranges)? {
            Some(consumed) => Parsed::Request {
                args: ranges.into_iter().map(|r| buf[r].to_vec()).collect(),
                consumed,
            },
            None => Parsed::Incomplete,
        })
    }
    use proptest::prelude::*;

    fn limits() -> RespLimits {
        RespLimits::default()
    }

    fn encode_request(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn an_array_request_parses() {
        let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nrest";
        let parsed = parse_request(buf, &limits()).unwrap();
        assert_eq!(
            parsed,
            Parsed::Request {
                args: vec![b"GET".to_vec(), b"k".to_vec()],
                consumed: buf.len() - 4
            }
        );
    }

    #[test]
    fn an_inline_request_parses() {
        let parsed = parse_request(b"SET  k v\r\n", &limits()).unwrap();
        let args = vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()];
        assert_eq!(parsed, Parsed::Request { args, consumed: 10 });
    }

    #[test]
    fn an_oversized_bulk_is_refused_before_it_is_buffered() {
        let small = RespLimits {
            bulk_bytes_max: 10,
            ..limits()
        };
        let err = parse_request(b"*1\r\n$11\r\n", &small).unwrap_err();
        assert_eq!(
            err,
            RespError::TooLarge {
                what: "bulk string",
                len: 11,
                max: 10
            }
        );
    }

    #[test]
    fn too_many_arguments_are_refused() {
        let small = RespLimits {
            args_max: 2,
            ..limits()
        };
        assert!(matches!(
            parse_request(b"*3\r\n", &small),
            Err(RespError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_request(b"a b c\n", &small),
            Err(RespError::TooLarge { .. })
        ));
    }

    #[test]
    fn malformed_requests_are_protocol_errors() {
        for bad in [
            &b"*1\r\n:5\r\n"[..],
            b"*-1\r\n",
            b"*x\r\n",
            b"*1\r\n$2\r\nabc\r\n",
            b"*1\n",
        ] {
            assert!(
                matches!(
                    parse_request(bad, &limits()),
                    Err(RespError::Protocol { .. })
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_huge_declared_length_is_an_error_not_an_allocation() {
        let err = parse_request(b"*1\r\n$99999999999999999999999\r\n", &limits()).unwrap_err();
        assert!(matches!(
            err,
            RespError::Protocol { .. } | RespError::TooLarge { .. }
        ));
    }

    #[test]
    fn replies_encode_as_redis_clients_expect() {
        let mut out = Vec::new();
        Reply::Array(vec![
            Reply::Bulk(b"v".to_vec()),
            Reply::Null,
            Reply::Integer(3),
            Reply::Simple("OK".into()),
            Reply::error("ERR bad\r\nthing"),
        ])
        .encode(&mut out);
        assert_eq!(
            out,
            b"*5\r\n$1\r\nv\r\n$-1\r\n:3\r\n+OK\r\n-ERR bad  thing\r\n".to_vec()
        );
        let mut empty = Vec::new();
        Reply::Array(vec![]).encode(&mut empty);
        assert_eq!(empty, b"*0\r\n".to_vec());
    }

    #[test]
    fn maps_and_nulls_follow_the_protocol() {
        let reply = Reply::Map(vec![(Reply::Bulk(b"k".to_vec()), Reply::Null)]);
        let mut two = Vec::new();
        reply.encode_as(Protocol::Resp2, &mut two);
        assert_eq!(two, b"*2\r\n$1\r\nk\r\n$-1\r\n".to_vec());
        let mut three = Vec::new();
        reply.encode_as(Protocol::Resp3, &mut three);
        assert_eq!(three, b"%1\r\n$1\r\nk\r\n_\r\n".to_vec());
    }

    #[test]
    fn integers_encode_in_decimal_at_the_extremes() {
        for n in [0, 7, -7, 1234567890, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            Reply::Integer(n).encode(&mut out);
            assert_eq!(out, format!(":{n}\r\n").into_bytes());
        }
    }

    proptest! {
        #[test]
        fn encoded_requests_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8)) {
            let buf = encode_request(&args);
            prop_assert_eq!(parse_request(&buf, &limits()), Ok(Parsed::Request { args, consumed: buf.len() }));
        }

        #[test]
        fn every_strict_prefix_of_a_request_is_incomplete(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 1..4)) {
            let buf = encode_request(&args);
            for cut in 0..buf.len() {
                prop_assert_eq!(parse_request(&buf[..cut], &limits()), Ok(Parsed::Incomplete));
            }
        }

        #[test]
        fn random_bytes_never_panic_and_never_overrun(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Parsed::Request { consumed, .. }) = parse_request(&bytes, &limits()) {
                prop_assert!(consumed <= bytes.len());
            }
        }
    }
}
