//! A small blocking RESP client for `enigma chaos`: one connection, one
//! command at a time, every read and write bounded by a timeout.
//!
//! It reads only the replies the chaos run's commands get (simple strings,
//! errors, integers, bulk strings and nil), each bounded in bytes: a reply
//! it cannot read closes nothing silently, it is an error the caller
//! records as an unknown outcome.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest reply line or bulk string read, in bytes. The register
/// workload's values are decimal integers; anything longer is not a reply
/// to one of its commands.
const REPLY_BYTES_MAX: usize = 64 * 1024;

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+...`.
    Simple(String),
    /// `-...`: the error's text (its first word is its kind: `TIMEOUT`, ...).
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$n` and its bytes.
    Bulk(Vec<u8>),
    /// `$-1` or `_`.
    Nil,
}

/// Why no reply was read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be made (nothing was sent).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The node's address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The connection failed or timed out after the command may have left.
    #[error("connection to {addr}: {source}")]
    Io {
        /// The node's address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The node sent something that is not a reply this client reads.
    #[error("unreadable reply from {addr}: {what}")]
    Protocol {
        /// The node's address.
        addr: SocketAddr,
        /// What was wrong.
        what: String,
    },
}

/// One connection.
#[derive(Debug)]
pub struct RespClient {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl RespClient {
    /// Connects within `timeout`; every later read and write waits at most
    /// `timeout` too.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, ClientError> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .and_then(|s| {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                s.set_nodelay(true)?;
                Ok(s)
            })
            .map_err(|source| ClientError::Connect { addr, source })?;
        Ok(Self {
            addr,
            reader: BufReader::new(stream),
        })
    }

    /// Sends one command and reads its reply.
    pub fn command(&mut self, args: &[&[u8]]) -> Result<Reply, ClientError> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        let addr = self.addr;
        self.reader
            .get_mut()
            .write_all(&request)
            .map_err(|source| ClientError::Io { addr, source })?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let addr = self.addr;
        let protocol = |what: String| ClientError::Protocol { addr, what };
        let line = self.read_line()?;
        let (kind, rest) = line
            .split_first()
            .ok_or_else(|| protocol("an empty line".into()))?;
        let text = || String::from_utf8_lossy(rest).into_owned();
        match kind {
            b'+' => Ok(Reply::Simple(text())),
            b'-' => Ok(Reply::Error(text())),
            b':' => text()
                .parse()
                .map(Reply::Integer)
                .map_err(|e| protocol(format!("integer {:?}: {e}", text()))),
            b'_' => Ok(Reply::Nil),
            b'$' => {
                let len: i64 = text()
                    .parse()
                    .map_err(|e| protocol(format!("bulk length {:?}: {e}", text())))?;
                if len < 0 {
                    return Ok(Reply::Nil);
                }
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > REPLY_BYTES_MAX {
                    return Err(protocol(format!(
                        "a bulk string of {len} bytes (at most {REPLY_BYTES_MAX} read)"
                    )));
                }
                let mut body = vec![0u8; len + 2];
                self.reader
                    .read_exact(&mut body)
                    .map_err(|source| ClientError::Io { addr, source })?;
                if !body.ends_with(b"\r\n") {
                    return Err(protocol("a bulk string not ended by CRLF".into()));
                }
                body.truncate(len);
                Ok(Reply::Bulk(body))
            }
            other => Err(protocol(format!("reply type {:?}", char::from(*other)))),
        }
    }

    /// One line without its CRLF, at most [`REPLY_BYTES_MAX`] bytes.
    fn read_line(&mut self) -> Result<Vec<u8>, ClientError> {
        let addr = self.addr;
        let mut line = Vec::new();
        let limit = u64::try_from(REPLY_BYTES_MAX).unwrap_or(u64::MAX);
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .map_err(|source| ClientError::Io { addr, source })?;
        if read == 0 {
            return Err(ClientError::Io {
                addr,
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        if !line.ends_with(b"\r\n") {
            return Err(ClientError::Protocol {
                addr,
                what: format!("a line of {} bytes not ended by CRLF", line.len()),
            });
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that answers every command with the next of `replies`.
    fn serve(replies: &'static [&'static [u8]]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        #[allow(clippy::disallowed_methods)]
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            for reply in replies {
                let _ = stream.read(&mut buf).unwrap();
                stream.write_all(reply).unwrap();
            }
        });
        addr
    }

    #[test]
    fn reads_each_kind_of_reply() {
        let addr = serve(&[
            b"+OK\r\n",
            b"-TIMEOUT replicas did not answer\r\n",
            b":3\r\n",
            b"$2\r\n42\r\n",
            b"$-1\r\n",
            b"_\r\n",
        ]);
        let mut c = RespClient::connect(addr, Duration::from_secs(5)).unwrap();
        let mut next = || c.command(&[b"GET", b"k"]).unwrap();
        assert_eq!(next(), Reply::Simple("OK".into()));
        assert_eq!(
            next(),
            Reply::Error("TIMEOUT replicas did not answer".into())
        );
        assert_eq!(next(), Reply::Integer(3));
        assert_eq!(next(), Reply::Bulk(b"42".to_vec()));
        assert_eq!(next(), Reply::Nil);
        assert_eq!(next(), Reply::Nil);
    }

    #[test]
    fn refuses_an_oversized_bulk_string() {
        let addr = serve(&[b"$99999999\r\n"]);
        let mut c = RespClient::connect(addr, Duration::from_secs(5)).unwrap();
        let err = c.command(&[b"GET", b"k"]).unwrap_err();
        assert!(matches!(err, ClientError::Protocol { .. }), "{err}");
    }

    #[test]
    fn a_closed_connection_is_an_io_error() {
        let addr = serve(&[]);
        let mut c = RespClient::connect(addr, Duration::from_secs(5)).unwrap();
        // The server thread ends without answering: the read sees EOF (or
        // a reset), never a reply.
        let err = c.command(&[b"GET", b"k"]).unwrap_err();
        assert!(matches!(err, ClientError::Io { .. }), "{err}");
    }
}
