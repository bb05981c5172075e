//! `enigma status --node ADDR`: how one node sees the cluster, and
//! `enigma repair --node ADDR`: a full anti-entropy pass, now.
//!
//! Both speak RESP to the node's client port (after `AUTH` when a password
//! is given): `INFO membership`, printed as a table, and `REPAIR`, whose
//! report is printed as it comes. Anything a Redis client can reach, these
//! commands can.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long `enigma status` waits for the node.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `enigma repair` waits for its pass to finish.
pub const REPAIR_TIMEOUT: Duration = Duration::from_secs(3_600);

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
    ask(addr, password, &[b"INFO", b"membership"], STATUS_TIMEOUT)
}

/// Asks the node at `addr` for a full anti-entropy pass and returns its
/// report (`key:value` lines) once the pass is done.
///
/// # Errors
/// Unreachable node, refused password, unexpected reply, a pass longer
/// than [`REPAIR_TIMEOUT`].
pub fn run_repair(addr: &str, password: Option<&str>) -> Result<String, String> {
    ask(addr, password, &[b"REPAIR"], REPAIR_TIMEOUT)
}

/// Sends one command (after `AUTH` if a password is given) and returns its
/// bulk reply as text.
fn ask(
    addr: &str,
    password: Option<&str>,
    command: &[&[u8]],
    timeout: Duration,
) -> Result<String, String> {
    let target = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let stream = TcpStream::connect_timeout(&target, STATUS_TIMEOUT)
        .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
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
        .write_all(&request(command))
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
    if let Some(clock) = fields.get("clock") {
        // `state,clock_offset_max_ms=N,writes_refused_clock=N`; the state
        // may hold commas of its own only inside parentheses.
        let attrs: std::collections::BTreeMap<&str, &str> = clock
            .rsplit(',')
            .take(2)
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let state = clock.rsplitn(3, ',').last().unwrap_or(clock);
        out.push_str(&format!(
            "clock: {state}; bound {} ms; {} writes refused for the clock\n",
            attrs.get("clock_offset_max_ms").unwrap_or(&"?"),
            attrs.get("writes_refused_clock").unwrap_or(&"?"),
        ));
    }
    out.push_str(&format!(
        "{:<8}{:<24}{:<8}{:>8}{:>12}{:<15}{:>7}{:>10}{:>9}{:>10}{:>10}\n",
        "member",
        "peer address",
        "state",
        "phi",
        "generation",
        "  status",
        "hints",
        "offset",
        "refused",
        "primary",
        "replica"
    ));
    for (id, attrs) in members {
        let share = |key: &str| {
            attrs
                .get(key)
                .and_then(|v| v.parse::<f64>().ok())
                .map_or("?".to_owned(), |v| format!("{:.1}%", v * 100.0))
        };
        let field = |key: &str| attrs.get(key).copied().unwrap_or("-");
        let offset = match field("clock_offset_ms") {
            "-" => "-".to_owned(),
            ms => format!("{ms}ms"),
        };
        out.push_str(&format!(
            "{:<8}{:<24}{:<8}{:>8}{:>12}  {:<13}{:>7}{:>10}{:>9}{:>10}{:>10}\n",
            format!("n{id}"),
            field("addr"),
            field("state"),
            field("phi"),
            field("generation"),
            field("status"),
            field("hints"),
            offset,
            field("clock_refused"),
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
                    clock:out-of-bounds (offset 2000 ms from 1 of 1 peers; writes refused),clock_offset_max_ms=500,writes_refused_clock=3\r\n\
                    member_1:addr=127.0.0.1:7101,state=down,phi=12.50,generation=3,heartbeat=40,status=normal,link=up,hints=7,clock_offset_ms=-2000,clock_refused=0,primary_share=0.4000,replica_share=1.0000\r\n\
                    member_2:addr=127.0.0.1:7102,state=self,phi=0.00,generation=4,heartbeat=41,status=normal,link=-,hints=0,primary_share=0.6000,replica_share=1.0000\r\n";
        let table = format_membership(text).unwrap();
        assert!(
            table.starts_with("node n2, generation 4: 2 members"),
            "{table}"
        );
        let n1 = table.lines().find(|l| l.starts_with("n1 ")).unwrap();
        let columns: Vec<&str> = n1.split_whitespace().collect();
        assert_eq!(
            columns,
            [
                "n1",
                "127.0.0.1:7101",
                "down",
                "12.50",
                "3",
                "normal",
                "7",
                "-2000ms",
                "0",
                "40.0%",
                "100.0%"
            ],
            "{table}"
        );
        assert!(table.contains("self"), "{table}");
        assert!(
            table.contains("clock: out-of-bounds (offset 2000 ms from 1 of 1 peers; writes refused); bound 500 ms; 3 writes refused for the clock"),
            "{table}"
        );
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
