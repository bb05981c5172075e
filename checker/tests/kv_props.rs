//! The kv search (with its put/append pruning) agrees with a brute-force
//! search over every order on small random histories.

use enigma_checker::{check_kv_linearizable, CheckOptions, KvHistory, KvInput, KvOutcome, Verdict};
use proptest::prelude::*;

/// One operation: process, input, invocation time, completion.
#[derive(Debug, Clone)]
struct Spec {
    input: KvInput,
    invoke: u64,
    /// (response time, outcome); `None`: pending.
    done: Option<(u64, KvOutcome)>,
}

fn spec() -> impl Strategy<Value = Spec> {
    let text = prop::sample::select(vec!["a", "b", "ab", ""]);
    let input = prop_oneof![
        Just(KvInput::Get),
        text.clone().prop_map(|t| KvInput::Put(t.to_owned())),
        text.prop_map(|t| KvInput::Append(t.to_owned())),
    ];
    let read = prop::sample::select(vec!["", "a", "b", "ab", "ba", "aab", "abab", "bab"]);
    (input, 0u64..20, 0u64..10, 0u8..10, read).prop_map(|(input, invoke, length, kind, read)| {
        let outcome = match (kind, &input) {
            (0, _) => None,
            (1, _) => Some(KvOutcome::Info),
            (_, KvInput::Get) => Some(KvOutcome::Ok {
                value: Some(read.to_owned()),
            }),
            _ => Some(KvOutcome::Ok { value: None }),
        };
        Spec {
            input,
            invoke,
            done: outcome.map(|o| (invoke + length, o)),
        }
    })
}

/// Required: completed ok. Optional: info or pending (may take effect).
/// Gets that did not complete ok constrain nothing and are left out.
fn brute_force(specs: &[Spec]) -> bool {
    let ops: Vec<(&KvInput, Option<&str>, u64, Option<u64>)> = specs
        .iter()
        .filter_map(|s| match &s.done {
            Some((t, KvOutcome::Ok { value })) => {
                Some((&s.input, value.as_deref(), s.invoke, Some(*t)))
            }
            _ if s.input == KvInput::Get => None,
            _ => Some((&s.input, None, s.invoke, None)),
        })
        .collect();
    fn go(
        ops: &[(&KvInput, Option<&str>, u64, Option<u64>)],
        done: &mut Vec<bool>,
        state: &str,
    ) -> bool {
        if ops
            .iter()
            .zip(done.iter())
            .all(|(op, d)| *d || op.3.is_none())
        {
            return true;
        }
        // An op may go next only if no remaining required op responded
        // before it was invoked.
        let horizon = ops
            .iter()
            .zip(done.iter())
            .filter(|(op, d)| !**d && op.3.is_some())
            .map(|(op, _)| op.3.unwrap_or(u64::MAX))
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..ops.len() {
            if done[i] || ops[i].2 > horizon {
                continue;
            }
            let next = match ops[i].0 {
                KvInput::Get => match ops[i].1 {
                    Some(v) if v == state => state.to_owned(),
                    _ => continue,
                },
                KvInput::Put(v) => v.clone(),
                KvInput::Append(v) => format!("{state}{v}"),
            };
            done[i] = true;
            let ok = go(ops, done, &next);
            done[i] = false;
            if ok {
                return true;
            }
        }
        false
    }
    go(&ops, &mut vec![false; ops.len()], "")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn kv_search_agrees_with_brute_force(specs in prop::collection::vec(spec(), 0..=7)) {
        // One process per operation: any overlap is allowed.
        let mut h = KvHistory::new();
        for (p, s) in specs.iter().enumerate() {
            let id = h.invoke(p as u64, "k", s.input.clone(), s.invoke);
            if let Some((t, outcome)) = &s.done {
                h.complete(id, *t, outcome.clone());
            }
        }
        let verdict = check_kv_linearizable(&h, &CheckOptions::default());
        prop_assert!(!matches!(verdict, Verdict::Unknown { .. }), "unknown: {}", verdict);
        prop_assert_eq!(verdict.is_linearizable(), brute_force(&specs), "{}", verdict);
    }
}
