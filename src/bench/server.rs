//! `enigma bench server`: a closed-loop RESP load generator against a
//! running node. Each client is one connection on its own thread that sends
//! one command, waits for its reply and sends the next, so latency is what a
//! client sees end to end. Unlike `redis-benchmark`, an error reply does not
//! stop the run: errors are counted by their first word (`TIMEOUT`,
//! `UNAVAILABLE`, ...), which is what a benchmark of contended
//! compare-and-set needs to report.
//!
//! The command is a template: `{key}` in an argument becomes `key:` and a
//! number drawn from the keyspace (each client its own seeded generator), or
//! the client's own key `key:c<client>` with `--keys per-client`, or one
//! shared key with `--keyspace 1`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How long a reply may take before the client gives up on its connection.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest reply accepted (a bulk string or an array's element count).
const REPLY_BYTES_MAX: usize = 64 << 20;

#[derive(Debug, Args)]
pub struct ServerBenchArgs {
    /// The node's client address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: SocketAddr,
    /// Concurrent clients, one connection each.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Commands sent in all, shared among the clients.
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// How `{key}` is filled in.
    #[arg(long, value_enum, default_value_t = KeyChoice::Random)]
    keys: KeyChoice,
    /// Keys `{key}` is drawn from with `--keys random` (`key:0` to
    /// `key:<N-1>`).
    #[arg(long, default_value_t = 100_000)]
    keyspace: u64,
    /// Seed of the clients' key draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The command, its arguments separated by spaces (`{key}` is replaced).
    #[arg(required = true, num_args = 1.., value_name = "COMMAND")]
    command: Vec<String>,
}

/// Which key each command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KeyChoice {
    /// Drawn uniformly from `--keyspace` keys for each command.
    Random,
    /// One key per client, the same for all its commands (no two clients
    /// touch the same key).
    PerClient,
}

/// What the clients saw, merged.
#[derive(Debug, Default)]
struct Tally {
    /// Latency of every reply, in microseconds.
    latencies_us: Vec<u64>,
    /// Error replies by their first word.
    errors: std::collections::BTreeMap<String, u64>,
    /// Connections that failed (each ends its client).
    broken: Vec<String>,
}

/// Runs the benchmark and prints one summary line.
pub fn bench_server(args: &ServerBenchArgs) -> anyhow::Result<()> {
    if args.clients == 0 || args.requests == 0 {
        bail!("--clients and --requests must be at least 1");
    }
    if args.keys == KeyChoice::Random && args.keyspace == 0 {
        bail!("--keyspace must be at least 1");
    }
    let remaining = Arc::new(AtomicU64::new(args.requests));
    let tally = Arc::new(Mutex::new(Tally::default()));
    // A benchmark reads the wall clock; nothing measured depends on it.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let threads: Vec<_> = (0..args.clients)
        .map(|client| {
            let (remaining, tally) = (remaining.clone(), tally.clone());
            let template = args.command.clone();
            let (addr, keys, keyspace) = (args.addr, args.keys, args.keyspace);
            let seed = args
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(client as u64);
            // A load generator outside the deterministic crates: one
            // blocking connection per thread is the simplest closed loop.
            #[allow(clippy::disallowed_methods)]
            std::thread::spawn(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let key = |rng: &mut ChaCha8Rng| match keys {
                    KeyChoice::Random => format!("key:{}", rng.random_range(0..keyspace)),
                    KeyChoice::PerClient => format!("key:c{client}"),
                };
                let result = run_client(addr, &template, &remaining, &mut rng, key);
                let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok(mine) => {
                        tally.latencies_us.extend(mine.latencies_us);
                        for (kind, n) in mine.errors {
                            *tally.errors.entry(kind).or_default() += n;
                        }
                    }
                    Err(e) => tally.broken.push(format!("client {client}: {e:#}")),
                }
            })
        })
        .collect();
    for thread in threads {
        if thread.join().is_err() {
            bail!("a client thread panicked");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    for broken in &tally.broken {
        eprintln!("connection failed: {broken}");
    }
    let done = tally.latencies_us.len() as u64;
    if done == 0 {
        bail!("no command was answered");
    }
    tally.latencies_us.sort_unstable();
    let failed: u64 = tally.errors.values().sum();
    let errors: Vec<String> = tally
        .errors
        .iter()
        .map(|(kind, n)| format!("{kind}={n}"))
        .collect();
    println!(
        "requests={done} clients={} rps={:.0} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} errors={failed} ({:.1}%){}{}",
        args.clients,
        done as f64 / elapsed,
        percentile(&tally.latencies_us, 50.0) as f64 / 1000.0,
        percentile(&tally.latencies_us, 99.0) as f64 / 1000.0,
        tally.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0,
        100.0 * failed as f64 / done as f64,
        if errors.is_empty() { "" } else { " " },
        errors.join(" "),
    );
    if !tally.broken.is_empty() {
        bail!("{} connection(s) failed", tally.broken.len());
    }
    Ok(())
}

/// The value at `p` percent of sorted `values` (nearest rank).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One client's latencies and errors.
#[derive(Debug, Default)]
struct ClientTally {
    latencies_us: Vec<u64>,
    errors: std::collections::BTreeMap<String, u64>,
}

fn run_client(
    addr: SocketAddr,
    template: &[String],
    remaining: &AtomicU64,
    rng: &mut ChaCha8Rng,
    mut key: impl FnMut(&mut ChaCha8Rng) -> String,
) -> anyhow::Result<ClientTally> {
    let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut mine = ClientTally::default();
    let mut request = Vec::new();
    // Take one request at a time from the shared count.
    while remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        let key = key(rng);
        request.clear();
        encode(template, &key, &mut request);
        #[allow(clippy::disallowed_methods)]
        let sent = Instant::now();
        writer.write_all(&request)?;
        let error = read_reply(&mut reader)?;
        mine.latencies_us.push(sent.elapsed().as_micros() as u64);
        if let Some(kind) = error {
            *mine.errors.entry(kind).or_default() += 1;
        }
    }
    Ok(mine)
}

/// The command as a RESP array, `{key}` replaced by `key`.
fn encode(template: &[String], key: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", template.len()).as_bytes());
    for arg in template {
        let arg = arg.replace("{key}", key);
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one whole reply; returns the first word of an error reply.
fn read_reply(reader: &mut impl BufRead) -> anyhow::Result<Option<String>> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        bail!("the connection closed mid-reply");
    }
    let body = &line[1..line.len() - 2];
    let number = || -> anyhow::Result<i64> {
        std::str::from_utf8(body)?
            .parse()
            .context("a malformed length in a reply")
    };
    match line[0] {
        b'+' | b':' | b'_' | b'#' | b',' => Ok(None),
        b'-' => {
            let text = String::from_utf8_lossy(body);
            Ok(Some(
                text.split_whitespace().next().unwrap_or("ERR").to_owned(),
            ))
        }
        b'$' => {
            let len = number()?;
            if len >= 0 {
                let len = usize::try_from(len)?;
                if len > REPLY_BYTES_MAX {
                    bail!("a reply of {len} bytes");
                }
                let mut skip = vec![0; len + 2];
                std::io::Read::read_exact(reader, &mut skip)?;
            }
            Ok(None)
        }
        b'*' => {
            let count = number()?;
            if count > REPLY_BYTES_MAX as i64 {
                bail!("a reply of {count} elements");
            }
            let mut error = None;
            for _ in 0..count.max(0) {
                error = error.or(read_reply(reader)?);
            }
            Ok(error)
        }
        other => bail!("an unknown reply type {:?}", other as char),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_whole_and_errors_named() {
        let input =
            b"+OK\r\n$3\r\nabc\r\n$-1\r\n:5\r\n*2\r\n$1\r\nx\r\n-TIMEOUT 1 of 2\r\n-ERR bad\r\n";
        let mut reader = &input[..];
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(read_reply(&mut reader).unwrap());
        }
        assert_eq!(
            seen,
            vec![
                None,
                None,
                None,
                None,
                Some("TIMEOUT".to_owned()),
                Some("ERR".to_owned())
            ]
        );
        assert!(reader.is_empty());
        assert!(read_reply(&mut &b"$5\r\nab"[..]).is_err());
        assert!(read_reply(&mut &b"+OK"[..]).is_err());
    }

    #[test]
    fn the_template_names_the_drawn_key() {
        let mut out = Vec::new();
        let template: Vec<String> = ["SET", "{key}", "v", "IFEQ", "v"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        encode(&template, "key:7", &mut out);
        assert_eq!(
            out,
            b"*5\r\n$3\r\nSET\r\n$5\r\nkey:7\r\n$1\r\nv\r\n$4\r\nIFEQ\r\n$1\r\nv\r\n".to_vec()
        );
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
    }
}
