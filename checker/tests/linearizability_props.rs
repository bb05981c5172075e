//! Property tests of the linearizability checker against two references:
//! histories built around a known sequential execution (always
//! linearizable; made non-linearizable by one impossible read), and, for
//! small histories, a brute-force search over every order written here from
//! the definition, independent of the checker's model and search.

use std::collections::BTreeMap;

use enigma_checker::{check_linearizable, Call, History, OpId, Outcome, Verdict};
use proptest::prelude::*;

/// One operation, before it is recorded.
#[derive(Debug, Clone)]
struct Spec {
    key: &'static str,
    call: Call,
    invoke: u64,
    /// `None`: pending at the end of the history.
    done: Option<(u64, Outcome)>,
}

const KEYS: [&str; 3] = ["a", "b", "c"];

/// A value no generated write uses.
const NEVER_WRITTEN: i64 = 1_000_000;

fn record(specs: &[Spec]) -> History {
    let mut order: Vec<usize> = (0..specs.len()).collect();
    order.sort_by_key(|&i| (specs[i].invoke, i));
    let mut history = History::new();
    let mut ids = BTreeMap::new();
    for &i in &order {
        let s = &specs[i];
        // One process per operation: processes never overlap themselves.
        ids.insert(i, history.invoke(i as u64, s.key, s.call.clone(), s.invoke));
    }
    for (i, s) in specs.iter().enumerate() {
        if let Some((t, outcome)) = &s.done {
            history.complete(ids[&i], *t, outcome.clone());
        }
    }
    history
}

/// What each generated operation does in the sequential execution.
#[derive(Debug, Clone)]
struct Draw {
    key: usize,
    kind: u8,
    a: Option<i64>,
    b: Option<i64>,
    fate: u8,
    before: u64,
    after: u64,
}

fn value() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![Just(None), (0i64..4).prop_map(Some)]
}

fn draw() -> impl Strategy<Value = Draw> {
    (
        0usize..KEYS.len(),
        0u8..3,
        value(),
        value(),
        0u8..8,
        0u64..400,
        0u64..400,
    )
        .prop_map(|(key, kind, a, b, fate, before, after)| Draw {
            key,
            kind,
            a,
            b,
            fate,
            before,
            after,
        })
}

/// Runs the draws sequentially; operation `i` takes effect at `1000 + 100 i`
/// and its interval is stretched around that point.
fn sequential_history(draws: &[Draw]) -> Vec<Spec> {
    let mut state: BTreeMap<&str, Option<i64>> = BTreeMap::new();
    let mut specs = Vec::new();
    for (i, d) in draws.iter().enumerate() {
        let key = KEYS[d.key];
        let point = 1000 + 100 * i as u64;
        let invoke = point - d.before;
        let response = point + d.after;
        let current = state.get(key).copied().flatten();
        // fate: 0..=3 ok, 4 info (happened), 5 info (did not), 6 pending
        // (happened), 7 fail / pending that did not happen.
        let indeterminate = match d.fate {
            4 => Some((Some((response, Outcome::Info)), true)),
            5 => Some((Some((response, Outcome::Info)), false)),
            6 => Some((None, true)),
            7 if d.kind == 1 => Some((None, false)),
            _ => None,
        };
        let (call, done) = match d.kind {
            0 => {
                let done = if d.fate == 7 {
                    Some((response, Outcome::Fail))
                } else {
                    Some((response, Outcome::Ok { value: current }))
                };
                (Call::Read, done)
            }
            1 => {
                let call = Call::Write(d.a);
                match indeterminate {
                    Some((done, happened)) => {
                        if happened {
                            state.insert(key, d.a);
                        }
                        (call, done)
                    }
                    None => {
                        state.insert(key, d.a);
                        (call, Some((response, Outcome::Ok { value: None })))
                    }
                }
            }
            _ => {
                // Expect the current value most of the time, so swaps happen.
                let expected = if d.fate % 2 == 0 { current } else { d.b };
                let call = Call::Cas { expected, new: d.a };
                let swaps = expected == current;
                match indeterminate {
                    Some((done, happened)) => {
                        if happened && swaps {
                            state.insert(key, d.a);
                        }
                        (call, done)
                    }
                    None if swaps => {
                        state.insert(key, d.a);
                        (call, Some((response, Outcome::Ok { value: None })))
                    }
                    None => (call, Some((response, Outcome::Refused))),
                }
            }
        };
        specs.push(Spec {
            key,
            call,
            invoke,
            done,
        });
    }
    specs
}

// ---------------------------------------------------------------------------
// Brute force, from the definition.

/// Whether the operation must appear in a linearization, and its response
/// time if it orders later operations.
fn required_response(s: &Spec) -> Option<u64> {
    match &s.done {
        Some((t, Outcome::Ok { .. })) => Some(*t),
        Some((t, Outcome::Refused)) if matches!(s.call, Call::Cas { .. }) => Some(*t),
        _ => None,
    }
}

/// Whether the operation may appear at all (a failed operation never
/// happened; only a compare-and-set can be refused).
fn may_appear(s: &Spec) -> bool {
    !matches!(
        (&s.call, &s.done),
        (_, Some((_, Outcome::Fail))) | (Call::Read | Call::Write(_), Some((_, Outcome::Refused)))
    )
}

/// Applies `s` to the whole map of registers, or `None` if impossible.
fn apply(
    state: &BTreeMap<&'static str, Option<i64>>,
    s: &Spec,
) -> Option<BTreeMap<&'static str, Option<i64>>> {
    let current = state.get(s.key).copied().flatten();
    let outcome = s.done.as_ref().map(|(_, o)| o);
    let mut next = state.clone();
    match (&s.call, outcome) {
        (Call::Read, Some(Outcome::Ok { value })) => {
            if *value != current {
                return None;
            }
        }
        (Call::Read, _) => {}
        (Call::Write(v), _) => {
            next.insert(s.key, *v);
        }
        (Call::Cas { expected, .. }, Some(Outcome::Refused)) => {
            if *expected == current {
                return None;
            }
        }
        (Call::Cas { expected, new }, _) => {
            if *expected != current {
                return None;
            }
            next.insert(s.key, *new);
        }
    }
    Some(next)
}

fn brute_force(specs: &[Spec]) -> bool {
    fn go(
        specs: &[Spec],
        placed: &mut Vec<bool>,
        state: &BTreeMap<&'static str, Option<i64>>,
    ) -> bool {
        let all_required_placed = specs
            .iter()
            .zip(placed.iter())
            .all(|(s, &p)| p || required_response(s).is_none());
        if all_required_placed {
            return true;
        }
        for b in 0..specs.len() {
            if placed[b] || !may_appear(&specs[b]) {
                continue;
            }
            // Every operation that responded before b was invoked goes first.
            let ready = specs
                .iter()
                .zip(placed.iter())
                .all(|(a, &p)| p || required_response(a).is_none_or(|t| t >= specs[b].invoke));
            if !ready {
                continue;
            }
            if let Some(next) = apply(state, &specs[b]) {
                placed[b] = true;
                if go(specs, placed, &next) {
                    return true;
                }
                placed[b] = false;
            }
        }
        false
    }
    go(specs, &mut vec![false; specs.len()], &BTreeMap::new())
}

fn arbitrary_spec() -> impl Strategy<Value = Spec> {
    (
        0usize..2,
        0u8..3,
        value(),
        value(),
        0u64..12,
        0u64..8,
        0u8..10,
    )
        .prop_map(|(key, kind, a, b, invoke, length, fate)| {
            let call = match kind {
                0 => Call::Read,
                1 => Call::Write(a),
                _ => Call::Cas {
                    expected: a,
                    new: b,
                },
            };
            let t = invoke + length;
            let done = match fate {
                0 => None,
                1 => Some((t, Outcome::Info)),
                2 => Some((t, Outcome::Fail)),
                3 => Some((t, Outcome::Refused)),
                _ => Some((
                    t,
                    Outcome::Ok {
                        value: if kind == 0 { b } else { None },
                    },
                )),
            };
            Spec {
                key: KEYS[key],
                call,
                invoke,
                done,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn histories_around_a_sequential_execution_are_linearizable(
        draws in prop::collection::vec(draw(), 0..60)
    ) {
        let history = record(&sequential_history(&draws));
        let verdict = check_linearizable(&history);
        prop_assert_eq!(verdict, Verdict::Linearizable);
    }

    #[test]
    fn one_read_of_a_never_written_value_makes_them_not_linearizable(
        draws in prop::collection::vec(draw(), 1..60),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut specs = sequential_history(&draws);
        let reads: Vec<usize> = (0..specs.len())
            .filter(|&i| {
                specs[i].call == Call::Read
                    && matches!(specs[i].done, Some((_, Outcome::Ok { .. })))
            })
            .collect();
        prop_assume!(!reads.is_empty());
        let victim = reads[pick.index(reads.len())];
        if let Some((_, outcome)) = &mut specs[victim].done {
            *outcome = Outcome::Ok { value: Some(NEVER_WRITTEN) };
        }
        let history = record(&specs);
        match check_linearizable(&history) {
            Verdict::NotLinearizable(c) => prop_assert_eq!(c.key.as_str(), specs[victim].key),
            other => prop_assert!(false, "expected a violation, got {:?}", other),
        }
    }

    #[test]
    fn small_histories_agree_with_brute_force(
        specs in prop::collection::vec(arbitrary_spec(), 0..=8)
    ) {
        let history = record(&specs);
        let expected = brute_force(&specs);
        let verdict = check_linearizable(&history);
        prop_assert!(
            !matches!(verdict, Verdict::Unknown { .. }),
            "unknown on a tiny history"
        );
        prop_assert_eq!(verdict.is_linearizable(), expected, "{}", verdict);
    }
}

#[test]
fn counterexample_ids_name_operations_of_the_history() {
    let specs = [
        Spec {
            key: "a",
            call: Call::Write(Some(1)),
            invoke: 0,
            done: Some((5, Outcome::Ok { value: None })),
        },
        Spec {
            key: "a",
            call: Call::Read,
            invoke: 10,
            done: Some((15, Outcome::Ok { value: None })),
        },
    ];
    let history = record(&specs);
    let Verdict::NotLinearizable(c) = check_linearizable(&history) else {
        panic!("a read of nil after a completed write was accepted");
    };
    assert_eq!(c.linearized, vec![OpId(0)]);
    assert_eq!(c.unplaceable, vec![OpId(1)]);
}
