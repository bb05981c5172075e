//! Sequential specifications: what one object may do, one operation at a time.
//!
//! A [`Model`] is a partial function `step(state, input, output) -> state'`:
//! `None` means "this operation, with this outcome, cannot happen in this
//! state". The linearizability search ([`crate::wgl`]) only ever asks the
//! model; it knows nothing about registers or strings.
//!
//! Indeterminate operations (`info`) reach the model only when the search
//! tries the branch in which they *did* take effect, so a model treats an
//! indeterminate outcome as "it happened, result unknown". The branch in which
//! it never happened is the search's business, not the model's.
//!
//! Two models live here: [`RegisterModel`] (a compare-and-set register over
//! `Option<i64>`, the type EnigmaDB's histories record) and [`KvModel`] (a
//! string value with get/put/append, as in Porcupine's Jepsen kv histories).

use std::fmt;
use std::hash::Hash;

use crate::history::{Call, Outcome, Value};
use crate::wgl::ModelOp;

/// A sequential specification.
///
/// `step` must be a pure function of its arguments: the search calls it in
/// any order, any number of times, and memoizes on the returned state.
pub trait Model {
    /// The state of one object (one key). Hashed and compared for the
    /// search's memo table, so two states that behave alike should be equal.
    type State: Clone + Eq + Hash + fmt::Debug;
    /// What a client asked for.
    type Input: fmt::Debug;
    /// What it was told (including "fail" and "unknown" where the model
    /// gives them a meaning).
    type Output: fmt::Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `input` answered with `output`, or `None` if that
    /// answer is impossible in `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// Whether [`Model::dead_end`] does anything; when false the search
    /// skips gathering the pending operations.
    const PRUNES: bool = false;

    /// Whether the operations in `pending` (not yet linearized; the required
    /// ones must all still be placed, the optional ones may be) can no
    /// longer follow `state`: the index in `pending` of a required operation
    /// no continuation can satisfy, or `None`. Answering `Some` prunes the
    /// search there, so it must do so only when no continuation exists;
    /// `None` is always safe.
    fn dead_end(&self, _state: &Self::State, _pending: &[&ModelOp<Self>]) -> Option<usize> {
        None
    }

    /// Bytes a state holds on the heap, so memo budgets count them.
    fn state_heap_bytes(&self, _state: &Self::State) -> usize {
        0
    }

    /// A short human description of a state, for reports.
    fn describe_state(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }
}

/// A compare-and-set register holding `Option<i64>` (`None`: empty), as
/// recorded in a [`crate::History`].
///
/// - `Read` answered `Ok { value }` requires `value == state`.
/// - `Write(v)` sets the register to `v` (ok or indeterminate).
/// - `Cas { expected, new }` answered ok (or indeterminate, in the branch
///   where it happened) requires `state == expected` and sets `new`.
/// - `Cas` answered `Refused` happened as a comparison that failed: it
///   linearizes as the check `state != expected`.
/// - Anything answered `Fail` never happened: a no-op anywhere (the search
///   leaves such operations out altogether), and so is a `Read` or `Write`
///   answered `Refused`, which only a compare-and-set can be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = Option<Value>;
    type Input = Call;
    type Output = Outcome;

    fn init(&self) -> Self::State {
        None
    }

    fn step(&self, state: &Option<Value>, input: &Call, output: &Outcome) -> Option<Option<Value>> {
        match (input, output) {
            (Call::Read, Outcome::Ok { value }) => (value == state).then_some(*state),
            (_, Outcome::Fail) | (Call::Read | Call::Write(_), Outcome::Refused) => Some(*state),
            (Call::Read, Outcome::Info) => Some(*state),
            (Call::Write(v), Outcome::Ok { .. } | Outcome::Info) => Some(*v),
            (Call::Cas { expected, new }, Outcome::Ok { .. } | Outcome::Info) => {
                (state == expected).then_some(*new)
            }
            (Call::Cas { expected, .. }, Outcome::Refused) => (state != expected).then_some(*state),
        }
    }

    fn describe_state(&self, state: &Option<Value>) -> String {
        state.map_or_else(|| "nil".to_owned(), |v| v.to_string())
    }
}

/// What a client asked of a string-valued key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Read the value.
    Get,
    /// Replace the value.
    Put(String),
    /// Concatenate to the value.
    Append(String),
}

/// What a client was told by a string-valued key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// It happened; for a `Get`, the value read (otherwise `None`).
    Ok(Option<String>),
    /// Indeterminate: the search decides whether it happened; if it did, its
    /// result is unknown.
    Unknown,
}

/// A string value, initially empty, with get / put / append.
///
/// A `Get` answered `Ok(Some(v))` requires `v == state`; an `Ok(None)` get
/// (a malformed completion) is impossible in every state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvModel;

impl Model for KvModel {
    type State = String;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> String {
        String::new()
    }

    fn step(&self, state: &String, input: &KvInput, output: &KvOutput) -> Option<String> {
        match (input, output) {
            (KvInput::Get, KvOutput::Ok(Some(value))) => (value == state).then(|| state.clone()),
            (KvInput::Get, KvOutput::Ok(None)) => None,
            (KvInput::Get, KvOutput::Unknown) => Some(state.clone()),
            (KvInput::Put(v), _) => Some(v.clone()),
            (KvInput::Append(v), _) => {
                let mut next = String::with_capacity(state.len() + v.len());
                next.push_str(state);
                next.push_str(v);
                Some(next)
            }
        }
    }

    const PRUNES: bool = true;

    /// Appends only extend a value and a put replaces it, so a get still to
    /// come (answered `v`) reads `base + appends`, where `base` is the
    /// current state or the value of a put that can still come before it
    /// (invoked no later than the get responded). If `v` starts with no
    /// such base, no continuation exists.
    fn dead_end(&self, state: &String, pending: &[&ModelOp<Self>]) -> Option<usize> {
        pending.iter().position(|get| {
            let (KvInput::Get, KvOutput::Ok(Some(value)), Some(deadline)) =
                (&get.input, &get.output, get.response_time)
            else {
                return false;
            };
            !(value.starts_with(state.as_str())
                || pending.iter().any(|put| match &put.input {
                    KvInput::Put(base) => {
                        put.invoke_time <= deadline && value.starts_with(base.as_str())
                    }
                    _ => false,
                }))
        })
    }

    fn state_heap_bytes(&self, state: &String) -> usize {
        state.capacity()
    }

    fn describe_state(&self, state: &String) -> String {
        format!("{state:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(value: Option<Value>) -> Outcome {
        Outcome::Ok { value }
    }

    #[test]
    fn register_read_must_return_the_state() {
        let m = RegisterModel;
        assert_eq!(m.step(&Some(3), &Call::Read, &ok(Some(3))), Some(Some(3)));
        assert_eq!(m.step(&Some(3), &Call::Read, &ok(Some(4))), None);
        assert_eq!(m.step(&None, &Call::Read, &ok(None)), Some(None));
        assert_eq!(m.step(&None, &Call::Read, &ok(Some(0))), None);
    }

    #[test]
    fn register_write_sets_the_state_even_when_indeterminate() {
        let m = RegisterModel;
        assert_eq!(
            m.step(&Some(1), &Call::Write(Some(2)), &ok(None)),
            Some(Some(2))
        );
        assert_eq!(
            m.step(&Some(1), &Call::Write(None), &Outcome::Info),
            Some(None)
        );
    }

    #[test]
    fn register_failed_write_is_a_no_op() {
        let m = RegisterModel;
        assert_eq!(
            m.step(&Some(1), &Call::Write(Some(2)), &Outcome::Fail),
            Some(Some(1))
        );
    }

    #[test]
    fn register_cas_swaps_only_from_expected() {
        let m = RegisterModel;
        let cas = Call::Cas {
            expected: Some(1),
            new: Some(2),
        };
        assert_eq!(m.step(&Some(1), &cas, &ok(None)), Some(Some(2)));
        assert_eq!(m.step(&Some(3), &cas, &ok(None)), None);
        assert_eq!(m.step(&Some(1), &cas, &Outcome::Info), Some(Some(2)));
        assert_eq!(m.step(&None, &cas, &Outcome::Info), None);
    }

    #[test]
    fn register_refused_cas_requires_a_different_state() {
        let m = RegisterModel;
        let cas = Call::Cas {
            expected: Some(1),
            new: Some(2),
        };
        assert_eq!(m.step(&Some(3), &cas, &Outcome::Refused), Some(Some(3)));
        assert_eq!(m.step(&None, &cas, &Outcome::Refused), Some(None));
        assert_eq!(m.step(&Some(1), &cas, &Outcome::Refused), None);
    }

    #[test]
    fn register_failed_cas_is_a_no_op_anywhere() {
        let m = RegisterModel;
        let cas = Call::Cas {
            expected: Some(1),
            new: Some(2),
        };
        assert_eq!(m.step(&Some(1), &cas, &Outcome::Fail), Some(Some(1)));
        assert_eq!(m.step(&Some(3), &cas, &Outcome::Fail), Some(Some(3)));
    }

    fn get(value: &str, invoke_time: u64, response_time: u64) -> ModelOp<KvModel> {
        crate::wgl::SearchOp {
            id: crate::history::OpId(0),
            input: KvInput::Get,
            output: KvOutput::Ok(Some(value.to_owned())),
            invoke_time,
            response_time: Some(response_time),
        }
    }

    #[test]
    fn kv_state_that_no_later_get_extends_is_not_viable() {
        let m = KvModel;
        let later = get("ab", 10, 20);
        assert_eq!(m.dead_end(&"a".to_owned(), &[&later]), None);
        assert_eq!(m.dead_end(&"b".to_owned(), &[&later]), Some(0));
        // A put of "ab" that can still come before the get rescues "b"...
        let put = crate::wgl::SearchOp {
            input: KvInput::Put("a".to_owned()),
            output: KvOutput::Unknown,
            response_time: None,
            ..get("", 15, 0)
        };
        assert_eq!(m.dead_end(&"b".to_owned(), &[&later, &put]), None);
        // ...but not one invoked after the get responded.
        let late_put = crate::wgl::SearchOp {
            invoke_time: 21,
            ..put.clone()
        };
        assert_eq!(m.dead_end(&"b".to_owned(), &[&later, &late_put]), Some(0));
    }

    #[test]
    fn kv_append_concatenates_and_get_checks() {
        let m = KvModel;
        let s = m.init();
        let s = m
            .step(&s, &KvInput::Append("x 1 y".into()), &KvOutput::Ok(None))
            .unwrap();
        let s = m
            .step(&s, &KvInput::Append("x 2 y".into()), &KvOutput::Unknown)
            .unwrap();
        assert_eq!(s, "x 1 yx 2 y");
        assert!(m
            .step(&s, &KvInput::Get, &KvOutput::Ok(Some("x 1 y".into())))
            .is_none());
        assert_eq!(
            m.step(&s, &KvInput::Get, &KvOutput::Ok(Some(s.clone()))),
            Some(s.clone())
        );
        let s = m
            .step(&s, &KvInput::Put("z".into()), &KvOutput::Ok(None))
            .unwrap();
        assert_eq!(s, "z");
    }
}
