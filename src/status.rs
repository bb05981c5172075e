//! `enigma status --node ADDR`: how one node sees the cluster.
//!
//! Asks the node's client port for `INFO membership` (after `AUTH` when a
//! password is given) and prints the members as a table. Anything a Redis
//! client can reach, `enigma status` can.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long `enigma status` waits for the node.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// A RESP reply line or bulk, as far as `status` needs.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Simple(String),
    Error(String),
    Bulk(Vec<u8>),
}

fn read_answer(reader: &mut impl BufRead) -> Result<Answer, String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("reading the reply: {e}"))?;
    let line = line.trim_end_matches(['\r', '\n']);
    let Some(kind) = line.chars().next() else {
        return Err("the node closed the connection".into());
    };
    let rest = &line[1..];
    match kind {
        '+' => Ok(Answer::Simple(rest.to_owned())),
        '-' => Ok(Answer::Error(rest.to_owned())),
        '$' => {
            let len: usize = rest
                .parse()
                .map_err(|_| format!("unexpected reply {line:?}"))?;
            if len > 16 << 20 {
                return Err(format!("reply of {len} bytes is too large"));
            }
            let mut body = vec![0; len + 2];
            std::io::Read::read_exact(reader, &mut body)
                .map_err(|e| format!("reading the reply: {e}"))?;
            body.truncate(len);
            Ok(Answer::Bulk(body))
        }
        _ => Err(format!("unexpected reply {line:?}")),
    }
}

fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Fetches the `INFO membership` text of the node at `addr`.
///
/// # Errors
/// Unreachable node, refused password, unexpected reply.
pub fn fetch_membership(addr: &str, password: Option<&str>) -> Result<String, String> {
    let target = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let stream = TcpStream::connect_timeout(&target, STATUS_TIMEOUT)
        .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(STATUS_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(STATUS_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    if let Some(password) = password {
        writer
            .write_all(&request(&[b"AUTH", password.as_bytes()]))
            .map_err(|e| e.to_string())?;
        match read_answer(&mut reader)? {
            Answer::Simple(_) => {}
            Answer::Error(e) => return Err(format!("AUTH refused: {e}")),
            Answer::Bulk(_) => return Err("unexpected reply to AUTH".into()),
        }
    }
    writer
        .write_all(&request(&[b"INFO", b"membership"]))
        .map_err(|e| e.to_string())?;
    match read_answer(&mut reader)? {
        Answer::Bulk(text) => Ok(String::from_utf8_lossy(&text).into_owned()),
        Answer::Error(e) => Err(format!("{addr} answered: {e}")),
        Answer::Simple(s) => Err(format!("unexpected reply {s:?}")),
    }
}

/// Formats the membership text as the table `enigma status` prints.
///
/// # Errors
/// Text that is not an EnigmaDB membership section.
pub fn format_membership(text: &str) -> Result<String, String> {
    let mut fields = std::collections::BTreeMap::new();
    let mut members = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if let Some(id) = key.strip_prefix("member_") {
            let attrs: std::collections::BTreeMap<&str, &str> = value
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .collect();
            members.push((id.to_owned(), attrs));
        } else {
            fields.insert(key, value);
        }
    }
    let node_id = fields
        .get("node_id")
        .ok_or("the reply has no membership section (is this an EnigmaDB node?)")?;
    let mut out = format!(
        "node n{node_id}, generation {}: {} members, replication factor {}, {} vnodes per node\n",
        fields.get("generation").unwrap_or(&"?"),
        fields.get("members").unwrap_or(&"?"),
        fields.get("replication_factor").unwrap_or(&"?"),
        fields.get("vnodes_per_node").unwrap_or(&"?"),
    );
    out.push_str(&format!(
        "{:<8}{:<24}{:<8}{:>10}{:>10}\n",
        "member", "peer address", "state", "primary", "replica"
    ));
    for (id, attrs) in members {
        let share = |key: &str| {
            attrs
                .get(key)
                .and_then(|v| v.parse::<f64>().ok())
                .map_or("?".to_owned(), |v| format!("{:.1}%", v * 100.0))
        };
        out.push_str(&format!(
            "{:<8}{:<24}{:<8}{:>10}{:>10}\n",
            format!("n{id}"),
            attrs.get("addr").unwrap_or(&"?"),
            attrs.get("state").unwrap_or(&"?"),
            share("primary_share"),
            share("replica_share"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_text_becomes_a_table() {
        let text = "# Membership\r\nnode_id:2\r\ngeneration:4\r\nmembers:2\r\nreplication_factor:2\r\nvnodes_per_node:8\r\n\
                    member_1:addr=127.0.0.1:7101,state=down,primary_share=0.4000,replica_share=1.0000\r\n\
                    member_2:addr=127.0.0.1:7102,state=self,primary_share=0.6000,replica_share=1.0000\r\n";
        let table = format_membership(text).unwrap();
        assert!(
            table.starts_with("node n2, generation 4: 2 members"),
            "{table}"
        );
        assert!(
            table.contains("n1      127.0.0.1:7101          down         40.0%    100.0%"),
            "{table}"
        );
        assert!(table.contains("self"), "{table}");
        assert!(format_membership("# Server\r\nx:1\r\n").is_err());
    }

    #[test]
    fn replies_are_read_by_kind() {
        let mut input = &b"$5\r\nhello\r\n-ERR no\r\n+OK\r\n"[..];
        assert_eq!(read_answer(&mut input), Ok(Answer::Bulk(b"hello".to_vec())));
        assert_eq!(read_answer(&mut input), Ok(Answer::Error("ERR no".into())));
        assert_eq!(read_answer(&mut input), Ok(Answer::Simple("OK".into())));
        assert!(read_answer(&mut input).is_err());
    }
}
