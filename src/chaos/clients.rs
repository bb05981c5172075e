//! The chaos run's clients: concurrent RESP connections running the
//! register workload at one consistency level, each operation recorded
//! with the level as the history `enigma check` reads.
//!
//! Outcomes as a Jepsen client records them: a reply is `ok`; an error
//! that means nothing was applied (`UNAVAILABLE`, `OVERLOADED`, `ERR`,
//! authentication), or a connection that could not be made, is `fail`; a
//! write that timed out, met a storage error or lost its connection after
//! it was sent is `info` (it may have happened), and the client goes on as
//! a new process, since the old one still has that operation outstanding.
//! A read that did not complete is `fail`: reads change nothing.
//!
//! Every loop ends at the run's deadline or operation budget, or at Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use enigma_checker::format::enigma::Level;
use enigma_checker::{Call, History, OpId, Outcome, ProcessId, Value};
use enigma_cluster::ConsistencyLevel;
use enigma_workloads::register::{decode_value, RegisterWorkload};
use rand_chacha::ChaCha8Rng;

use super::resp_client::{ClientError, Reply, RespClient};

/// Pause before a client tries another node after a failed connection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Counts for the summary.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Operations that completed `ok`.
    pub ok: u64,
    /// `fail`.
    pub fail: u64,
    /// `info`.
    pub info: u64,
    /// Reads that returned bytes no client of the workload wrote.
    pub garbage_reads: Vec<String>,
    /// Errors by their first word (`TIMEOUT`, `connection`, ...).
    pub errors: BTreeMap<String, u64>,
}

/// What the clients recorded.
#[derive(Debug, Default)]
pub struct Recorded {
    /// The operations.
    pub history: History,
    /// Each operation's level.
    pub levels: BTreeMap<OpId, Level>,
    /// Counts.
    pub counts: Counts,
}

/// The history, shared by the clients; times are nanoseconds from the
/// recorder's creation, on the monotonic clock.
#[derive(Debug)]
pub struct Recorder {
    origin: Instant,
    inner: Mutex<Recorded>,
    next_process: AtomicU64,
}

impl Recorder {
    /// An empty history whose time starts now.
    pub fn new() -> Recorder {
        Recorder {
            // The history's times are real time, measured here at the edge.
            #[allow(clippy::disallowed_methods)]
            origin: Instant::now(),
            inner: Mutex::new(Recorded::default()),
            next_process: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A process id no one has used.
    pub fn new_process(&self) -> ProcessId {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // A client thread that panicked holding the lock left the history
        // whole (each update is one call); keep recording.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn invoke(&self, process: ProcessId, key: &str, call: Call, level: Level) -> OpId {
        let mut r = self.lock();
        let time = self.now();
        let id = r.history.invoke(process, key, call, time);
        r.levels.insert(id, level);
        id
    }

    fn complete(&self, id: OpId, outcome: Outcome, error: Option<String>) {
        let mut r = self.lock();
        let time = self.now();
        match outcome {
            Outcome::Ok { .. } => r.counts.ok += 1,
            Outcome::Fail | Outcome::Refused => r.counts.fail += 1,
            Outcome::Info => r.counts.info += 1,
        }
        if let Some(kind) = error {
            *r.counts.errors.entry(kind).or_default() += 1;
        }
        r.history.complete(id, time, outcome);
    }

    fn garbage(&self, text: String) {
        self.lock().counts.garbage_reads.push(text);
    }

    /// What was recorded.
    pub fn into_recorded(self) -> Recorded {
        self.inner
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The checker's name for a consistency level.
pub fn level_of(level: ConsistencyLevel) -> Level {
    match level {
        ConsistencyLevel::One => Level::One,
        ConsistencyLevel::Two => Level::Two,
        ConsistencyLevel::Quorum => Level::Quorum,
        ConsistencyLevel::All => Level::All,
        ConsistencyLevel::Serial => Level::Serial,
    }
}

/// What every client shares.
#[derive(Debug)]
pub struct ClientPlan {
    /// Every node's client address.
    pub addrs: Vec<SocketAddr>,
    /// The clients' password.
    pub password: String,
    /// The level of every operation.
    pub level: ConsistencyLevel,
    /// When the clients stop invoking.
    pub deadline: Instant,
    /// Most operations all clients together invoke.
    pub ops_max: u64,
    /// Connect, read and write timeout of a client.
    pub timeout: Duration,
}

/// The workload and its random stream, shared so that written values stay
/// unique across clients.
pub type SharedWorkload = Mutex<(RegisterWorkload, ChaCha8Rng)>;

/// Connects to `addr`, authenticates and sets the connection's level.
fn open(
    plan: &ClientPlan,
    addr: SocketAddr,
    level: ConsistencyLevel,
) -> Result<RespClient, String> {
    let mut c = RespClient::connect(addr, plan.timeout).map_err(|e| e.to_string())?;
    for args in [
        vec![b"AUTH".as_slice(), plan.password.as_bytes()],
        vec![b"CONSISTENCY".as_slice(), level.name().as_bytes()],
    ] {
        match c.command(&args) {
            Ok(Reply::Simple(_)) => {}
            Ok(other) => return Err(format!("{addr}: {other:?}")),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(c)
}

/// One client: operations until the deadline, the budget or Ctrl-C.
/// Client `index` starts on node `index % nodes` and moves to the next
/// node when it cannot connect.
pub fn run_client(
    index: usize,
    plan: &ClientPlan,
    workload: &SharedWorkload,
    recorder: &Recorder,
    invoked: &AtomicU64,
) {
    let level = level_of(plan.level);
    let mut node = index % plan.addrs.len();
    let mut process = recorder.new_process();
    let mut conn: Option<RespClient> = None;
    loop {
        #[allow(clippy::disallowed_methods)]
        let past = Instant::now() >= plan.deadline;
        if past || super::stopping() {
            return;
        }
        let Some(c) = conn.as_mut() else {
            match open(plan, plan.addrs[node], plan.level) {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    node = (node + 1) % plan.addrs.len();
                    std::thread::sleep(RECONNECT_PAUSE);
                }
            }
            continue;
        };
        if invoked.fetch_add(1, Ordering::Relaxed) >= plan.ops_max {
            return;
        }
        let (key, call) = {
            let mut w = workload
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (workload, rng) = &mut *w;
            workload.next_op(rng)
        };
        let id = recorder.invoke(process, &key, call.clone(), level);
        let (outcome, error, keep) = perform(c, &key, &call, recorder, &workload_encode(workload));
        if !keep {
            conn = None;
        }
        let is_info = outcome == Outcome::Info;
        recorder.complete(id, outcome, error);
        if is_info {
            process = recorder.new_process();
        }
    }
}

/// The workload's value encoder (padding rules included).
fn workload_encode(workload: &SharedWorkload) -> impl Fn(Value) -> Vec<u8> + '_ {
    move |v| {
        workload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .encode(v)
    }
}

/// Runs one operation: its outcome, the error's kind if any, and whether
/// the connection is still usable.
fn perform(
    c: &mut RespClient,
    key: &str,
    call: &Call,
    recorder: &Recorder,
    encode: &dyn Fn(Value) -> Vec<u8>,
) -> (Outcome, Option<String>, bool) {
    let key_bytes = key.as_bytes();
    let reply = match call {
        Call::Read => c.command(&[b"GET", key_bytes]),
        Call::Write(Some(v)) => c.command(&[b"SET", key_bytes, &encode(*v)]),
        Call::Write(None) => c.command(&[b"DEL", key_bytes]),
        Call::Cas { .. } => return (Outcome::Fail, Some("unsupported".into()), true),
    };
    let is_read = matches!(call, Call::Read);
    match reply {
        Ok(Reply::Bulk(bytes)) if is_read => match decode_value(&bytes) {
            Some(v) => (Outcome::Ok { value: Some(v) }, None, true),
            None => {
                recorder.garbage(format!(
                    "GET {key} returned {:?}, which no client wrote",
                    String::from_utf8_lossy(&bytes)
                ));
                (Outcome::Fail, Some("garbage".into()), true)
            }
        },
        Ok(Reply::Nil) if is_read => (Outcome::Ok { value: None }, None, true),
        Ok(Reply::Simple(_) | Reply::Integer(_)) if !is_read => {
            (Outcome::Ok { value: None }, None, true)
        }
        Ok(Reply::Error(text)) => {
            let kind = text.split_whitespace().next().unwrap_or("").to_owned();
            let nothing_applied = matches!(
                kind.as_str(),
                "UNAVAILABLE" | "OVERLOADED" | "ERR" | "NOAUTH" | "WRONGPASS"
            );
            let outcome = if is_read || nothing_applied {
                Outcome::Fail
            } else {
                Outcome::Info
            };
            (outcome, Some(kind), true)
        }
        Ok(other) => {
            let outcome = if is_read {
                Outcome::Fail
            } else {
                Outcome::Info
            };
            (outcome, Some(format!("unexpected reply {other:?}")), false)
        }
        Err(ClientError::Connect { .. }) => (Outcome::Fail, Some("connect".into()), false),
        Err(e) => {
            let outcome = if is_read {
                Outcome::Fail
            } else {
                Outcome::Info
            };
            let kind = match e {
                ClientError::Protocol { .. } => "protocol",
                _ => "connection",
            };
            (outcome, Some(kind.into()), false)
        }
    }
}

/// Reads every key from every node at `ALL`, recorded in the history
/// (after the heal: reads whose replicas meet every write's, so they must
/// see every acknowledged write, whatever the run's level).
pub fn read_every_key(
    plan: &ClientPlan,
    keys: &[String],
    recorder: &Recorder,
    encode: &dyn Fn(Value) -> Vec<u8>,
) {
    for &addr in &plan.addrs {
        let process = recorder.new_process();
        let Ok(mut c) = open(plan, addr, ConsistencyLevel::All) else {
            continue;
        };
        for key in keys {
            let id = recorder.invoke(process, key, Call::Read, Level::All);
            let (outcome, error, keep) = perform(&mut c, key, &Call::Read, recorder, encode);
            recorder.complete(id, outcome, error);
            if !keep {
                break;
            }
        }
    }
}

/// What node `addr` holds for each key as its own replica: `AT ONE GET`,
/// which a replica answers from its own storage. `None` where a read
/// failed.
pub fn local_values(
    plan: &ClientPlan,
    addr: SocketAddr,
    keys: &[String],
) -> Option<Vec<Option<Vec<u8>>>> {
    let mut c = open(plan, addr, plan.level).ok()?;
    keys.iter()
        .map(
            |key| match c.command(&[b"AT", b"ONE", b"GET", key.as_bytes()]) {
                Ok(Reply::Bulk(bytes)) => Some(Some(bytes)),
                Ok(Reply::Nil) => Some(None),
                _ => None,
            },
        )
        .collect()
}
