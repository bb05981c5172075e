//! Seeded Jepsen register histories for `enigma bench checker`: what a
//! Jepsen `cas-register` test with independent keys records, as EDN lines,
//! linearizable by construction.
//!
//! Each key has its own group of client processes running closed loops, as
//! Jepsen's independent checker arranges them: a process invokes a read, a
//! write or a compare-and-set of a small value (0 to 4, as Jepsen draws
//! them), waits for the answer, thinks, and invokes again. Latency and think
//! time are drawn so that about `in_flight_per_key` operations are
//! outstanding on a key at a time. Each operation takes effect at a random
//! instant inside its interval against a real register, so the history is
//! linearizable; a CAS whose comparison failed there completes `:fail`.
//! `info_percent` of the operations complete `:info` (half of them took
//! effect), and the process that issued one is replaced by a fresh one, as
//! in Jepsen. Lines
//! are in time order and carry `:time` in nanoseconds (the checker orders by
//! line).

use std::fmt::Write as _;

use super::SplitMix;

/// The shape of a generated history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Shape {
    /// Independent keys.
    pub keys: u64,
    /// Operations per key.
    pub ops_per_key: usize,
    /// Client processes per key.
    pub processes_per_key: u64,
    /// Operations outstanding on a key at a time, on average.
    pub in_flight_per_key: f64,
    /// Percent of operations that complete `:info`.
    pub info_percent: u64,
}
/// Mean latency of an operation, in nanoseconds.
const LATENCY_MEAN_NANOS: u64 = 1_000;
/// Register values are drawn below this, as Jepsen's cas-register does.
const VALUES: u64 = 5;

/// What was generated, for the benchmark's line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Generated {
    /// Operations.
    pub ops: usize,
    /// Of which completed `:info`.
    pub info: usize,
    /// Of which were compare-and-sets that completed `:fail`.
    pub failed_cas: usize,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Read,
    Write(u64),
    Cas(u64, u64),
}

#[derive(Debug)]
struct Planned {
    process: u64,
    key: u64,
    op: Op,
    invoke: u64,
    effect: u64,
    complete: u64,
    info: bool,
    applies: bool,
}

/// A history of `shape`, from `seed`, as EDN text, one event per line.
pub(crate) fn register_history(seed: u64, shape: Shape) -> (String, Generated) {
    assert!(
        shape.processes_per_key > 0 && shape.keys > 0,
        "an empty shape"
    );
    let mut rng = SplitMix(seed);
    // In flight = processes * latency / (latency + think).
    let busy = (shape.in_flight_per_key / shape.processes_per_key as f64).clamp(0.01, 1.0);
    let think_mean = (LATENCY_MEAN_NANOS as f64 * (1.0 - busy) / busy) as u64;
    let total_processes = shape.keys * shape.processes_per_key;
    let mut planned: Vec<Planned> = Vec::with_capacity(shape.keys as usize * shape.ops_per_key);
    for key in 0..shape.keys {
        // Per process of this key: when it is free, and its current id.
        let mut free_at: Vec<u64> = (0..shape.processes_per_key)
            .map(|_| rng.below(2 * think_mean + 1))
            .collect();
        let mut ids: Vec<u64> = (0..shape.processes_per_key)
            .map(|i| key * shape.processes_per_key + i)
            .collect();
        for _ in 0..shape.ops_per_key {
            // The process free soonest invokes next (ties: lowest index).
            let (slot, invoke) = free_at
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|&(i, t)| (t, i))
                .expect("at least one process");
            let latency = 1 + rng.below(2 * LATENCY_MEAN_NANOS);
            let effect = invoke + rng.below(latency);
            let complete = invoke + latency;
            let op = match rng.below(4) {
                0 | 1 => Op::Read,
                2 => Op::Write(rng.below(VALUES)),
                _ => Op::Cas(rng.below(VALUES), rng.below(VALUES)),
            };
            let info = rng.below(100) < shape.info_percent;
            planned.push(Planned {
                process: ids[slot],
                key,
                op,
                invoke,
                effect,
                complete,
                info,
                applies: !info || rng.below(2) == 0,
            });
            if info {
                ids[slot] += total_processes;
            }
            free_at[slot] = complete + 1 + rng.below(2 * think_mean + 1);
        }
    }
    // Outcomes, in order of effect, against one register per key.
    let mut by_effect: Vec<usize> = (0..planned.len()).collect();
    by_effect.sort_by_key(|&i| (planned[i].effect, i));
    let mut registers: Vec<Option<u64>> = vec![None; shape.keys as usize];
    // Per operation: the value a read returned, or whether a CAS swapped.
    let mut read_values: Vec<Option<u64>> = vec![None; planned.len()];
    let mut swapped = vec![false; planned.len()];
    for i in by_effect {
        let p = &planned[i];
        let register = &mut registers[p.key as usize];
        match p.op {
            Op::Read => read_values[i] = *register,
            Op::Write(v) => {
                if p.applies {
                    *register = Some(v);
                }
            }
            Op::Cas(expected, new) => {
                swapped[i] = *register == Some(expected);
                if swapped[i] && p.applies {
                    *register = Some(new);
                }
            }
        }
    }
    // Events in time order: (time, completion?, operation).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(planned.len() * 2);
    for (i, p) in planned.iter().enumerate() {
        events.push((p.invoke, false, i));
        events.push((p.complete, true, i));
    }
    events.sort_unstable();
    let mut text = String::with_capacity(events.len() * 72);
    let mut generated = Generated {
        ops: planned.len(),
        ..Generated::default()
    };
    let nil_or = |v: Option<u64>| v.map_or_else(|| "nil".to_owned(), |v| v.to_string());
    for (time, completion, i) in events {
        let p = &planned[i];
        let (f, value) = match p.op {
            Op::Read if completion && !p.info => ("read", nil_or(read_values[i])),
            Op::Read => ("read", "nil".to_owned()),
            Op::Write(v) => ("write", v.to_string()),
            Op::Cas(expected, new) => ("cas", format!("[{expected} {new}]")),
        };
        let kind = match (completion, p.info, p.op) {
            (false, _, _) => "invoke",
            (true, true, _) => {
                generated.info += 1;
                "info"
            }
            (true, false, Op::Cas(..)) if !swapped[i] => {
                generated.failed_cas += 1;
                "fail"
            }
            (true, false, _) => "ok",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "{{:process {}, :type :{kind}, :f :{f}, :key {}, :value {value}, :time {time}}}",
            p.process, p.key
        );
    }
    (text, generated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use enigma_checker::format::{parse, Format, ParsedHistory};
    use enigma_checker::{CheckOptions, Verdict};

    fn small() -> Shape {
        Shape {
            keys: 3,
            ops_per_key: 400,
            processes_per_key: 5,
            in_flight_per_key: 2.5,
            info_percent: 1,
        }
    }

    #[test]
    fn generated_histories_parse_and_are_linearizable() {
        let (text, generated) = register_history(7, small());
        assert_eq!(generated.ops, 1_200);
        let history = parse(&text, Format::JepsenEdn).expect("the generator writes valid EDN");
        assert_eq!(history.len(), generated.ops);
        let ParsedHistory::Register(h) = &history else {
            panic!("a register history");
        };
        let keys: std::collections::BTreeSet<&str> =
            h.operations().iter().map(|op| op.key.as_str()).collect();
        assert_eq!(keys.len(), 3);
        assert_eq!(
            history.check(&CheckOptions::default()),
            Verdict::Linearizable
        );
    }

    #[test]
    fn the_seed_decides_the_history() {
        assert_eq!(register_history(7, small()), register_history(7, small()));
        assert_ne!(
            register_history(7, small()).0,
            register_history(8, small()).0
        );
    }

    #[test]
    fn a_changed_read_makes_it_not_linearizable() {
        // The first read answered after a completed write, pointed at a
        // value nobody wrote.
        let (text, _) = register_history(3, small());
        let line = text
            .lines()
            .position(|l| l.contains(":type :ok, :f :read") && !l.contains(":value nil"))
            .expect("some read returns a value");
        let bad: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == line {
                    let at = l.find(":value ").expect("a value") + ":value ".len();
                    let end = l[at..].find(',').expect("then the time") + at;
                    format!("{}{}{}", &l[..at], 99, &l[end..])
                } else {
                    l.to_owned()
                }
            })
            .collect();
        let history = parse(&bad.join("\n"), Format::JepsenEdn).expect("still valid EDN");
        assert!(matches!(
            history.check(&CheckOptions::default()),
            Verdict::NotLinearizable(_)
        ));
    }
}
