//! A run's schedule as data: the faults the nemesis injected and the
//! operations the clients issued, each at its virtual time, with what
//! follows them (whether the heal phase runs, how many operations the
//! liveness phase issues). A seed run writes the schedule it drew
//! (`enigma sim --schedule-out FILE`); a scripted run replays one
//! (`--schedule FILE`) instead of drawing faults and operations, so that
//! the shrinker ([`crate::shrink`]) can remove entries and replay the rest
//! deterministically. Everything else (latencies, loss, disks, clocks)
//! still comes from the seed's streams.
//!
//! The file is JSON Lines (docs/FORMAT.md, "Schedule files"): a header
//! line, then one line per entry in time order.

use std::fmt::Write as _;

use enigma_checker::{Call, Value};
use enigma_workloads::{Fault, PartitionKind};
use serde_json::{json, Map, Value as Json};

/// The version of the format this code writes and reads.
pub const SCHEDULE_VERSION: u64 = 1;

/// Operations the liveness phase issues at most in a seed run.
pub const LIVENESS_OPS_DEFAULT: usize = 50;

/// Where a crash lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashAt {
    /// At once.
    Now,
    /// After the node's next batch is applied, before its sync.
    BeforeSync,
    /// While the node's next sync is in flight.
    DuringSync,
    /// Between two steps of the node's next background job.
    InBackgroundJob,
}

impl CrashAt {
    fn name(self) -> &'static str {
        match self {
            CrashAt::Now => "now",
            CrashAt::BeforeSync => "before-sync",
            CrashAt::DuringSync => "during-sync",
            CrashAt::InBackgroundJob => "background-job",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            CrashAt::Now,
            CrashAt::BeforeSync,
            CrashAt::DuringSync,
            CrashAt::InBackgroundJob,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }
}

/// A client operation of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledOp {
    /// The client that issues it (from 0).
    pub client: usize,
    /// The key's index: key `k{key}`.
    pub key: usize,
    /// The node it is sent to first (from 0: n1 is 0).
    pub node: usize,
    /// What it asks.
    pub call: Call,
}

/// What happens at a scheduled time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The nemesis injects a fault; a crash says where it lands.
    Fault {
        /// The fault.
        fault: Fault,
        /// For a crash: where it lands.
        crash_at: Option<CrashAt>,
        /// For a crash that starts a crash loop: each restart's delay after
        /// the crash before it, and how long the restarted node then runs
        /// before it crashes again (the last restart's run is not used),
        /// nanoseconds. Empty for any other fault.
        crash_loop: Vec<(u64, u64)>,
    },
    /// A client issues an operation (later, if it still waits on its
    /// previous one).
    Op(ScheduledOp),
}

/// One entry: an action at a virtual time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Virtual nanoseconds since the start of the run.
    pub at_nanos: u64,
    /// What happens.
    pub action: Action,
}

/// A run's faults and operations, and what follows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed whose streams draw everything else.
    pub seed: u64,
    /// Nodes in the cluster (entries name nodes by index).
    pub nodes: usize,
    /// Keys the run uses: `k0` up to `k{keys - 1}`.
    pub keys: usize,
    /// Clients.
    pub clients: usize,
    /// When the faults stop (once every operation has completed, if later).
    pub faults_stop_nanos: u64,
    /// Whether the run waits for the replicas to converge once the faults
    /// stop (the heal phase) and again after the liveness phase, and then
    /// checks the converged state. Without it the liveness phase starts as
    /// soon as the faults stop, the run ends with it, and the converged
    /// state is not checked.
    pub heal: bool,
    /// Operations the liveness phase issues at most (half of them must
    /// complete `ok`); 0 skips the phase.
    pub liveness_ops: usize,
    /// The faults and operations, in time order.
    pub entries: Vec<Entry>,
}

impl Schedule {
    /// Client operations in the schedule.
    pub fn ops(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.action, Action::Op(_)))
            .count()
    }

    /// Faults in the schedule.
    pub fn faults(&self) -> usize {
        self.entries.len() - self.ops()
    }

    /// The largest value any operation writes (0 when none does).
    pub fn value_max(&self) -> Value {
        self.entries
            .iter()
            .filter_map(|e| match &e.action {
                Action::Op(op) => match op.call {
                    Call::Read => None,
                    Call::Write(v) => v,
                    Call::Cas { expected, new } => expected.max(new),
                },
                Action::Fault { .. } => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The schedule in its file format: a header line, then one line per
    /// entry.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        let header = json!({
            "enigma_schedule": SCHEDULE_VERSION,
            "seed": format!("{:#x}", self.seed),
            "nodes": self.nodes,
            "keys": self.keys,
            "clients": self.clients,
            "faults_stop_nanos": self.faults_stop_nanos,
            "heal": self.heal,
            "liveness_ops": self.liveness_ops,
        });
        let _ = writeln!(out, "{header}");
        for entry in &self.entries {
            let _ = writeln!(out, "{}", entry_json(entry));
        }
        out
    }

    /// Reads a schedule file; the error names the line and what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, first) = lines.next().ok_or("empty schedule file")?;
        let header: Json =
            serde_json::from_str(first).map_err(|e| format!("line 1: not JSON: {e}"))?;
        let header = header.as_object().ok_or("line 1: not a JSON object")?;
        let version = header
            .get("enigma_schedule")
            .and_then(Json::as_u64)
            .ok_or("line 1: not a schedule header (no \"enigma_schedule\" version)")?;
        if version != SCHEDULE_VERSION {
            return Err(format!(
                "line 1: schedule format version {version}, this build reads {SCHEDULE_VERSION}"
            ));
        }
        let seed = header
            .get("seed")
            .and_then(Json::as_str)
            .and_then(parse_seed)
            .ok_or("line 1: \"seed\" must be a string, decimal or 0x-prefixed hex")?;
        let at = |what: &str| format!("line 1: {what}");
        let schedule = Schedule {
            seed,
            nodes: usize_field(header, "nodes").map_err(|e| at(&e))?,
            keys: usize_field(header, "keys").map_err(|e| at(&e))?,
            clients: usize_field(header, "clients").map_err(|e| at(&e))?,
            faults_stop_nanos: u64_field(header, "faults_stop_nanos").map_err(|e| at(&e))?,
            heal: header
                .get("heal")
                .and_then(Json::as_bool)
                .ok_or_else(|| at("\"heal\" must be true or false"))?,
            liveness_ops: usize_field(header, "liveness_ops").map_err(|e| at(&e))?,
            entries: Vec::new(),
        };
        if schedule.keys == 0 || schedule.clients == 0 || schedule.nodes == 0 {
            return Err(at("\"nodes\", \"keys\" and \"clients\" must be at least 1"));
        }
        let mut entries = Vec::new();
        let mut last = 0;
        for (index, line) in lines {
            let number = index + 1;
            let value: Json =
                serde_json::from_str(line).map_err(|e| format!("line {number}: not JSON: {e}"))?;
            let entry = parse_entry(&value, &schedule)
                .map_err(|e| format!("line {number}: {e}: {line}"))?;
            if entry.at_nanos < last {
                return Err(format!(
                    "line {number}: entries must be in time order ({} after {last})",
                    entry.at_nanos
                ));
            }
            last = entry.at_nanos;
            entries.push(entry);
        }
        Ok(Schedule {
            entries,
            ..schedule
        })
    }
}

fn parse_seed(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn u64_field(object: &Map<String, Json>, name: &str) -> Result<u64, String> {
    object
        .get(name)
        .and_then(Json::as_u64)
        .ok_or_else(|| format!("\"{name}\" must be a non-negative integer"))
}

fn usize_field(object: &Map<String, Json>, name: &str) -> Result<usize, String> {
    u64_field(object, name).and_then(|v| usize::try_from(v).map_err(|e| e.to_string()))
}

fn value_field(object: &Map<String, Json>, name: &str) -> Result<Option<Value>, String> {
    match object.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("\"{name}\" must be an integer or null")),
    }
}

fn links_json(links: &[(usize, usize)]) -> Json {
    Json::Array(links.iter().map(|&(a, b)| json!([a, b])).collect())
}

fn links_field(
    object: &Map<String, Json>,
    name: &str,
    nodes: usize,
) -> Result<Vec<(usize, usize)>, String> {
    let bad = || format!("\"{name}\" must be a list of [from, to] node pairs below {nodes}");
    let list = object.get(name).and_then(Json::as_array).ok_or_else(bad)?;
    list.iter()
        .map(|pair| {
            let pair = pair.as_array().filter(|p| p.len() == 2).ok_or_else(bad)?;
            let node = |v: &Json| {
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n < nodes)
                    .ok_or_else(bad)
            };
            Ok((node(&pair[0])?, node(&pair[1])?))
        })
        .collect()
}

fn kind_name(kind: PartitionKind) -> &'static str {
    match kind {
        PartitionKind::Halves => "halves",
        PartitionKind::Isolate => "isolate",
        PartitionKind::Bridge => "bridge",
        PartitionKind::Asymmetric => "asymmetric",
    }
}

fn entry_json(entry: &Entry) -> Json {
    let mut object = Map::new();
    object.insert("at".into(), json!(entry.at_nanos));
    let mut put = |k: &str, v: Json| {
        object.insert(k.into(), v);
    };
    match &entry.action {
        Action::Op(op) => {
            put("client", json!(op.client));
            put("key", json!(op.key));
            put("node", json!(op.node));
            match op.call {
                Call::Read => put("op", json!("read")),
                Call::Write(Some(v)) => {
                    put("op", json!("write"));
                    put("value", json!(v));
                }
                Call::Write(None) => put("op", json!("delete")),
                Call::Cas { expected, new } => {
                    put("op", json!("cas"));
                    put("expected", json!(expected));
                    put("value", json!(new));
                }
            }
        }
        Action::Fault {
            fault,
            crash_at,
            crash_loop,
        } => match fault {
            Fault::Crash(node) => {
                put("fault", json!("crash"));
                put("node", json!(node));
                put("when", json!(crash_at.unwrap_or(CrashAt::Now).name()));
                if !crash_loop.is_empty() {
                    put("loop", json!(crash_loop));
                }
            }
            Fault::Restart(node) => {
                put("fault", json!("restart"));
                put("node", json!(node));
            }
            Fault::Partition { kind, cut } => {
                put("fault", json!("partition"));
                put("kind", json!(kind_name(*kind)));
                put("cut", links_json(cut));
            }
            Fault::Heal => put("fault", json!("heal")),
            Fault::Pause { node, nanos } => {
                put("fault", json!("pause"));
                put("node", json!(node));
                put("nanos", json!(nanos));
            }
            Fault::Swizzle {
                links,
                step_nanos,
                delay_max_nanos,
            } => {
                put("fault", json!("swizzle"));
                put("links", links_json(links));
                put("step_nanos", json!(step_nanos));
                put("delay_max_nanos", json!(delay_max_nanos));
            }
            Fault::ClockJump { node, nanos } => {
                put("fault", json!("clock-jump"));
                put("node", json!(node));
                put("nanos", json!(nanos));
            }
            Fault::ReadFaults { node, nanos } => {
                put("fault", json!("read-faults"));
                put("node", json!(node));
                put("nanos", json!(nanos));
            }
            Fault::FailSync(node) => {
                put("fault", json!("fail-sync"));
                put("node", json!(node));
            }
            Fault::DiskFull { node, nanos } => {
                put("fault", json!("disk-full"));
                put("node", json!(node));
                put("nanos", json!(nanos));
            }
        },
    }
    Json::Object(object)
}

/// A crash loop's periods: `[[down, up], ...]`, nanoseconds, at least one.
fn crash_loop_field(value: &Json) -> Result<Vec<(u64, u64)>, String> {
    const SHAPE: &str = "\"loop\" must be a non-empty list of [down, up] nanosecond pairs";
    let periods = value.as_array().ok_or(SHAPE)?;
    if periods.is_empty() {
        return Err(SHAPE.into());
    }
    periods
        .iter()
        .map(|period| match period.as_array().map(Vec::as_slice) {
            Some([down, up]) => match (down.as_u64(), up.as_u64()) {
                (Some(down), Some(up)) => Ok((down, up)),
                _ => Err(SHAPE.to_owned()),
            },
            _ => Err(SHAPE.to_owned()),
        })
        .collect()
}

fn parse_entry(value: &Json, schedule: &Schedule) -> Result<Entry, String> {
    let object = value.as_object().ok_or("not a JSON object")?;
    let at_nanos = u64_field(object, "at")?;
    let node = || {
        usize_field(object, "node").and_then(|n| {
            if n < schedule.nodes {
                Ok(n)
            } else {
                Err(format!(
                    "node {n} is not below the {} nodes",
                    schedule.nodes
                ))
            }
        })
    };
    let nanos = || u64_field(object, "nanos");
    let action = match (object.get("op"), object.get("fault")) {
        (Some(op), None) => {
            let name = op.as_str().ok_or("\"op\" must be a string")?;
            let call = match name {
                "read" => Call::Read,
                "write" => Call::Write(Some(
                    value_field(object, "value")?.ok_or("a write needs a \"value\"")?,
                )),
                "delete" => Call::Write(None),
                "cas" => Call::Cas {
                    expected: value_field(object, "expected")?,
                    new: value_field(object, "value")?,
                },
                other => return Err(format!("unknown op {other:?}")),
            };
            let client = usize_field(object, "client")?;
            let key = usize_field(object, "key")?;
            if client >= schedule.clients {
                return Err(format!(
                    "client {client} is not below the {} clients",
                    schedule.clients
                ));
            }
            if key >= schedule.keys {
                return Err(format!("key {key} is not below the {} keys", schedule.keys));
            }
            Action::Op(ScheduledOp {
                client,
                key,
                node: node()?,
                call,
            })
        }
        (None, Some(fault)) => {
            let name = fault.as_str().ok_or("\"fault\" must be a string")?;
            let mut crash_at = None;
            let fault = match name {
                "crash" => {
                    let when = object.get("when").and_then(Json::as_str).unwrap_or("now");
                    crash_at = Some(CrashAt::parse(when).ok_or_else(|| {
                        format!("unknown crash \"when\" {when:?} (now, before-sync, during-sync, background-job)")
                    })?);
                    Fault::Crash(node()?)
                }
                "restart" => Fault::Restart(node()?),
                "partition" => {
                    let kind = match object.get("kind").and_then(Json::as_str) {
                        Some("halves") => PartitionKind::Halves,
                        Some("isolate") => PartitionKind::Isolate,
                        Some("bridge") => PartitionKind::Bridge,
                        Some("asymmetric") => PartitionKind::Asymmetric,
                        _ => {
                            return Err(
                                "\"kind\" must be halves, isolate, bridge or asymmetric".into()
                            )
                        }
                    };
                    Fault::Partition {
                        kind,
                        cut: links_field(object, "cut", schedule.nodes)?,
                    }
                }
                "heal" => Fault::Heal,
                "pause" => Fault::Pause {
                    node: node()?,
                    nanos: nanos()?,
                },
                "swizzle" => {
                    let links = links_field(object, "links", schedule.nodes)?;
                    if links.is_empty() {
                        return Err("a swizzle needs links".into());
                    }
                    Fault::Swizzle {
                        links,
                        step_nanos: u64_field(object, "step_nanos")?,
                        delay_max_nanos: u64_field(object, "delay_max_nanos")?,
                    }
                }
                "clock-jump" => Fault::ClockJump {
                    node: node()?,
                    nanos: object
                        .get("nanos")
                        .and_then(Json::as_i64)
                        .ok_or("\"nanos\" must be an integer")?,
                },
                "read-faults" => Fault::ReadFaults {
                    node: node()?,
                    nanos: nanos()?,
                },
                "fail-sync" => Fault::FailSync(node()?),
                "disk-full" => Fault::DiskFull {
                    node: node()?,
                    nanos: nanos()?,
                },
                other => return Err(format!("unknown fault {other:?}")),
            };
            let crash_loop = match (object.get("loop"), &fault) {
                (None, _) => Vec::new(),
                (Some(periods), Fault::Crash(_)) => crash_loop_field(periods)?,
                (Some(_), _) => return Err("only a crash has a \"loop\"".into()),
            };
            Action::Fault {
                fault,
                crash_at,
                crash_loop,
            }
        }
        _ => return Err("an entry has either \"op\" or \"fault\"".into()),
    };
    Ok(Entry { at_nanos, action })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Schedule {
        Schedule {
            seed: 0x5eed,
            nodes: 3,
            keys: 2,
            clients: 2,
            faults_stop_nanos: 9_000,
            heal: true,
            liveness_ops: 50,
            entries: vec![
                Entry {
                    at_nanos: 10,
                    action: Action::Op(ScheduledOp {
                        client: 1,
                        key: 1,
                        node: 2,
                        call: Call::Cas {
                            expected: None,
                            new: Some(4),
                        },
                    }),
                },
                Entry {
                    at_nanos: 20,
                    action: Action::Fault {
                        fault: Fault::Crash(0),
                        crash_at: Some(CrashAt::DuringSync),
                        crash_loop: vec![(5, 9), (1, 2)],
                    },
                },
                Entry {
                    at_nanos: 30,
                    action: Action::Fault {
                        fault: Fault::Partition {
                            kind: PartitionKind::Asymmetric,
                            cut: vec![(0, 1), (2, 1)],
                        },
                        crash_at: None,
                        crash_loop: Vec::new(),
                    },
                },
                Entry {
                    at_nanos: 40,
                    action: Action::Fault {
                        fault: Fault::ClockJump { node: 2, nanos: -7 },
                        crash_at: None,
                        crash_loop: Vec::new(),
                    },
                },
                Entry {
                    at_nanos: 50,
                    action: Action::Op(ScheduledOp {
                        client: 0,
                        key: 0,
                        node: 0,
                        call: Call::Write(None),
                    }),
                },
            ],
        }
    }

    #[test]
    fn a_schedule_survives_its_file_format() {
        let schedule = sample();
        let text = schedule.to_json_lines();
        assert_eq!(Schedule::parse(&text), Ok(schedule.clone()));
        assert_eq!(schedule.ops(), 2);
        assert_eq!(schedule.faults(), 3);
        assert_eq!(schedule.value_max(), 4);
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let good = sample().to_json_lines();
        assert!(Schedule::parse("").is_err());
        let wrong_version = good.replacen("\"enigma_schedule\":1", "\"enigma_schedule\":9", 1);
        assert!(Schedule::parse(&wrong_version)
            .unwrap_err()
            .contains("version 9"));
        let bad_node = good.replacen("\"node\":2", "\"node\":7", 1);
        let error = Schedule::parse(&bad_node).unwrap_err();
        assert!(error.starts_with("line 2:"), "{error}");
        let mut lines: Vec<&str> = good.lines().collect();
        lines.swap(1, 2);
        let error = Schedule::parse(&lines.join("\n")).unwrap_err();
        assert!(error.contains("time order"), "{error}");
        let unknown = good.replacen("\"fault\":\"heal\"", "\"fault\":\"meteor\"", 1);
        let unknown = format!("{unknown}{{\"at\":99,\"fault\":\"meteor\"}}\n");
        assert!(Schedule::parse(&unknown).unwrap_err().contains("meteor"));
    }
}
