//! Searching keys on several threads changes nothing that comes out: on
//! random multi-key histories (linearizable, not, and ones that exhaust a
//! small step budget, some keys needing several rounds of the growing
//! budget) the verdict and its rendered report are the same with 1, 2 and 4
//! threads.

use enigma_checker::{
    check_kv_linearizable, check_linearizable_with, Call, CheckOptions, History, KvHistory,
    KvInput, KvOutcome, Outcome, SearchLimits, Verdict,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// Thread counts compared with the sequential check.
const THREADS: [usize; 2] = [2, 4];

/// A value no generated write uses.
const NEVER_WRITTEN: i64 = 1_000_000;

/// One register key's operations.
#[derive(Debug, Clone)]
enum Part {
    /// Random reads, writes and CASes on a few values, overlapping freely.
    Random(Vec<RegisterSpec>),
    /// `writers` concurrent writes of distinct values, then a read of one
    /// of them (linearizable) or of a value none wrote: refuting that takes
    /// the search through every subset of the writes, from a few hundred
    /// steps to well past the first round's budget.
    Hard { writers: u64, bad_read: bool },
}

#[derive(Debug, Clone)]
struct RegisterSpec {
    call: Call,
    invoke: u64,
    /// (response time, outcome); `None`: pending.
    done: Option<(u64, Outcome)>,
}

fn register_spec() -> impl Strategy<Value = RegisterSpec> {
    let value = 0i64..3;
    let call = prop_oneof![
        Just(Call::Read),
        value.clone().prop_map(|v| Call::Write(Some(v))),
        (value.clone(), value.clone()).prop_map(|(e, n)| Call::Cas {
            expected: Some(e),
            new: Some(n)
        }),
    ];
    (call, 0u64..30, 0u64..10, 0u8..10, prop::option::of(value)).prop_map(
        |(call, invoke, length, kind, read)| {
            let outcome = match (kind, &call) {
                (0, _) => None,
                (1, _) => Some(Outcome::Info),
                (2, Call::Cas { .. }) => Some(Outcome::Refused),
                (3, Call::Cas { .. }) => Some(Outcome::Fail),
                (_, Call::Read) => Some(Outcome::Ok { value: read }),
                _ => Some(Outcome::Ok { value: None }),
            };
            RegisterSpec {
                call,
                invoke,
                done: outcome.map(|o| (invoke + length, o)),
            }
        },
    )
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        1 => prop::collection::vec(register_spec(), 1..=5).prop_map(Part::Random),
        1 => (6u64..=13, any::<bool>())
            .prop_map(|(writers, bad_read)| Part::Hard { writers, bad_read }),
    ]
}

/// A step budget per key: tiny (many keys exhaust it), around the first
/// round's, or the default (several rounds for the hardest keys).
fn steps_max() -> impl Strategy<Value = u64> {
    prop::sample::select(vec![
        20,
        300,
        10_000,
        50_000,
        SearchLimits::default().steps_max,
    ])
}

fn register_history(parts: &[Part]) -> History {
    let mut history = History::new();
    let mut process = 0;
    let mut next_process = || {
        process += 1;
        process
    };
    for (k, part) in parts.iter().enumerate() {
        let key = format!("k{k}");
        match part {
            Part::Random(specs) => {
                for s in specs {
                    let id = history.invoke(next_process(), &key, s.call.clone(), s.invoke);
                    if let Some((t, outcome)) = &s.done {
                        history.complete(id, *t, outcome.clone());
                    }
                }
            }
            Part::Hard { writers, bad_read } => {
                for w in 0..*writers {
                    let id = history.invoke(next_process(), &key, Call::Write(Some(w as i64)), 0);
                    history.complete(id, 100, Outcome::Ok { value: None });
                }
                let value = if *bad_read { NEVER_WRITTEN } else { 0 };
                let id = history.invoke(next_process(), &key, Call::Read, 200);
                history.complete(id, 300, Outcome::Ok { value: Some(value) });
            }
        }
    }
    history
}

fn options(steps_max: u64, threads: usize) -> CheckOptions {
    CheckOptions {
        limits_per_key: SearchLimits {
            steps_max,
            ..SearchLimits::default()
        },
        threads,
    }
}

/// The register verdict with one thread, after asserting that 2 and 4
/// threads give the same verdict and the same report.
fn register_verdict(parts: &[Part], steps_max: u64) -> Result<Verdict, TestCaseError> {
    let history = register_history(parts);
    let sequential = check_linearizable_with(&history, &options(steps_max, 1));
    for threads in THREADS {
        let parallel = check_linearizable_with(&history, &options(steps_max, threads));
        prop_assert_eq!(&parallel, &sequential, "{} threads", threads);
        prop_assert_eq!(parallel.to_string(), sequential.to_string());
    }
    Ok(sequential)
}

fn register_case() -> impl Strategy<Value = (Vec<Part>, u64)> {
    (prop::collection::vec(part(), 1..=4), steps_max())
}

/// One kv operation (the kv model prunes, so a refutation also runs the
/// unpruned search that words the report).
#[derive(Debug, Clone)]
struct KvSpec {
    key: u8,
    input: KvInput,
    invoke: u64,
    done: Option<(u64, KvOutcome)>,
}

fn kv_spec() -> impl Strategy<Value = KvSpec> {
    let text = prop::sample::select(vec!["a", "b", "ab"]);
    let input = prop_oneof![
        Just(KvInput::Get),
        text.clone().prop_map(|t| KvInput::Put(t.to_owned())),
        text.prop_map(|t| KvInput::Append(t.to_owned())),
    ];
    let read = prop::sample::select(vec!["", "a", "b", "ab", "ba", "aab", "abab"]);
    (0u8..4, input, 0u64..30, 0u64..10, 0u8..10, read).prop_map(
        |(key, input, invoke, length, kind, read)| {
            let outcome = match (kind, &input) {
                (0, _) => None,
                (1, _) => Some(KvOutcome::Info),
                (_, KvInput::Get) => Some(KvOutcome::Ok {
                    value: Some(read.to_owned()),
                }),
                _ => Some(KvOutcome::Ok { value: None }),
            };
            KvSpec {
                key,
                input,
                invoke,
                done: outcome.map(|o| (invoke + length, o)),
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn register_verdict_and_report_do_not_depend_on_threads(
        (parts, steps_max) in register_case()
    ) {
        register_verdict(&parts, steps_max)?;
    }

    #[test]
    fn kv_verdict_and_report_do_not_depend_on_threads(
        specs in prop::collection::vec(kv_spec(), 0..=24),
        steps_max in prop::sample::select(vec![5u64, 40, 10_000]),
    ) {
        let mut h = KvHistory::new();
        for (p, s) in specs.iter().enumerate() {
            let id = h.invoke(p as u64, &format!("k{}", s.key), s.input.clone(), s.invoke);
            if let Some((t, outcome)) = &s.done {
                h.complete(id, *t, outcome.clone());
            }
        }
        let sequential = check_kv_linearizable(&h, &options(steps_max, 1));
        for threads in THREADS {
            let parallel = check_kv_linearizable(&h, &options(steps_max, threads));
            prop_assert_eq!(&parallel, &sequential, "{} threads", threads);
            prop_assert_eq!(parallel.to_string(), sequential.to_string());
        }
    }
}

/// The register property is not vacuous: over a fixed sample of its cases
/// all three verdicts occur, and some refutation needs more than the first
/// round's budget (it is unknown under that budget alone).
#[test]
fn register_cases_cover_every_verdict_and_several_rounds() {
    let mut runner = TestRunner::deterministic();
    let strategy = register_case();
    let (mut linearizable, mut refuted, mut unknown, mut multi_round) = (0, 0, 0, 0);
    for _ in 0..500 {
        let (parts, steps_max) = strategy
            .new_tree(&mut runner)
            .expect("the strategy generates")
            .current();
        let verdict = register_verdict(&parts, steps_max).expect("threads change nothing");
        match verdict {
            Verdict::Linearizable => linearizable += 1,
            Verdict::NotLinearizable(_) => {
                refuted += 1;
                if steps_max > 10_000
                    && matches!(
                        register_verdict(&parts, 10_000),
                        Ok(Verdict::Unknown { .. })
                    )
                {
                    multi_round += 1;
                }
            }
            Verdict::Unknown { .. } => unknown += 1,
        }
    }
    assert!(linearizable > 0, "no linearizable case");
    assert!(refuted > 0, "no refuted case");
    assert!(unknown > 0, "no unknown case");
    assert!(multi_round > 0, "no case needing a second round");
}
