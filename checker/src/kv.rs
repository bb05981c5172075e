//! Histories of a string-valued key-value map (get / put / append), as in
//! Jepsen's and Porcupine's kv tests, and their linearizability check.
//!
//! Same outcome semantics as [`crate::history`]: `ok` happened, `fail` never
//! happened, `info` or pending may have happened at any time after
//! invocation, or never. Every key starts as the empty string. The check runs
//! the same per-key Wing-Gong-Lowe search as registers, with [`KvModel`].

use std::collections::BTreeMap;
use std::fmt;

use crate::history::{OpId, ProcessId, Recorded, Recording};
use crate::linearizability::{check_parts_with_stop, CheckOptions, Verdict};
use crate::model::{KvInput, KvModel, KvOutput};
use crate::wgl::SearchOp;

/// How a kv operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOutcome {
    /// It happened; for a get, the value it returned.
    Ok {
        /// The value read (`None` for put and append).
        value: Option<String>,
    },
    /// It definitely did not happen.
    Fail,
    /// Unknown: it may have happened at any time after invocation, or never.
    Info,
}

/// One kv operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvOperation {
    /// Its index in the history.
    pub id: OpId,
    /// The process that issued it.
    pub process: ProcessId,
    /// The key.
    pub key: String,
    /// What was asked.
    pub input: KvInput,
    /// When it was invoked.
    pub invoke_time: u64,
    /// When and how it ended; `None` while pending (treated as `info`).
    pub completion: Option<(u64, KvOutcome)>,
}

/// A kv history, in invocation order.
pub type KvHistory = Recording<KvOperation>;

impl Recorded for KvOperation {
    type Input = KvInput;
    type Outcome = KvOutcome;

    fn invoked(id: OpId, process: ProcessId, key: &str, input: KvInput, time: u64) -> Self {
        Self {
            id,
            process,
            key: key.to_owned(),
            input,
            invoke_time: time,
            completion: None,
        }
    }
    fn id(&self) -> OpId {
        self.id
    }
    fn process(&self) -> ProcessId {
        self.process
    }
    fn key(&self) -> &str {
        &self.key
    }
    fn invoke_time(&self) -> u64 {
        self.invoke_time
    }
    fn completion_time(&self) -> Option<u64> {
        self.completion.as_ref().map(|(time, _)| *time)
    }
    fn set_completion(&mut self, time: u64, outcome: KvOutcome) {
        self.completion = Some((time, outcome));
    }
}

impl fmt::Display for KvOperation {
    /// One readable line: `#12 p3 "k1" append "x 1 y" [100..250] ok`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} p{} {:?} ", self.id.0, self.process, self.key)?;
        match &self.input {
            KvInput::Get => write!(f, "get")?,
            KvInput::Put(v) => write!(f, "put {v:?}")?,
            KvInput::Append(v) => write!(f, "append {v:?}")?,
        }
        match &self.completion {
            None => write!(f, " [{}..] pending", self.invoke_time),
            Some((t, outcome)) => {
                write!(f, " [{}..{t}] ", self.invoke_time)?;
                match outcome {
                    KvOutcome::Ok { value: Some(v) } => write!(f, "ok {v:?}"),
                    KvOutcome::Ok { value: None } => write!(f, "ok"),
                    KvOutcome::Fail => write!(f, "fail"),
                    KvOutcome::Info => write!(f, "info"),
                }
            }
        }
    }
}

/// Checks a kv history with per-key budgets from `options`.
pub fn check_kv_linearizable(history: &KvHistory, options: &CheckOptions) -> Verdict {
    check_kv_linearizable_with_stop(history, options, &|| false)
}

/// [`check_kv_linearizable`], answering [`Verdict::Unknown`] once `stop`
/// answers true.
pub fn check_kv_linearizable_with_stop(
    history: &KvHistory,
    options: &CheckOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> Verdict {
    let mut parts: BTreeMap<&str, Vec<SearchOp<KvInput, KvOutput>>> = BTreeMap::new();
    for op in history.operations() {
        if let Some(search_op) = kv_search_op(op) {
            parts.entry(op.key.as_str()).or_default().push(search_op);
        }
    }
    let describe = |id: OpId| {
        history
            .operation(id)
            .map_or_else(|| format!("#{}", id.0), |op| op.to_string())
    };
    check_parts_with_stop(&KvModel, parts, &describe, options, stop)
}

/// The search's view of one kv operation, or `None` if it constrains
/// nothing (it never happened, or it is a get that did not complete).
pub(crate) fn kv_search_op(op: &KvOperation) -> Option<SearchOp<KvInput, KvOutput>> {
    let (output, response_time) = match (&op.input, &op.completion) {
        (_, Some((_, KvOutcome::Fail))) => return None,
        (KvInput::Get, None | Some((_, KvOutcome::Info))) => return None,
        (_, None | Some((_, KvOutcome::Info))) => (KvOutput::Unknown, None),
        (_, Some((t, KvOutcome::Ok { value }))) => (KvOutput::Ok(value.clone()), Some(*t)),
    };
    Some(SearchOp {
        id: op.id,
        input: op.input.clone(),
        output,
        invoke_time: op.invoke_time,
        response_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(value: Option<&str>) -> KvOutcome {
        KvOutcome::Ok {
            value: value.map(str::to_owned),
        }
    }

    fn check(h: &KvHistory) -> Verdict {
        check_kv_linearizable(h, &CheckOptions::default())
    }

    #[test]
    fn appends_concatenate_in_linearization_order() {
        let mut h = KvHistory::new();
        let a = h.invoke(0, "k", KvInput::Append("x".into()), 0);
        let b = h.invoke(1, "k", KvInput::Append("y".into()), 1);
        h.complete(a, 5, ok(None));
        h.complete(b, 6, ok(None));
        let g = h.invoke(2, "k", KvInput::Get, 10);
        h.complete(g, 11, ok(Some("yx")));
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn get_of_a_lost_append_is_rejected_with_a_readable_report() {
        let mut h = KvHistory::new();
        let a = h.invoke(0, "k", KvInput::Append("x".into()), 0);
        h.complete(a, 5, ok(None));
        let g = h.invoke(2, "k", KvInput::Get, 10);
        h.complete(g, 11, ok(Some("")));
        let Verdict::NotLinearizable(c) = check(&h) else {
            panic!("lost append accepted")
        };
        assert_eq!(c.unplaceable, vec![g]);
        assert_eq!(c.state_after, "\"x\"");
        assert!(
            c.to_string().contains("#1 p2 \"k\" get [10..11] ok \"\""),
            "{c}"
        );
    }

    #[test]
    fn failed_put_never_happened_and_pending_put_may_have() {
        let mut h = KvHistory::new();
        let p = h.invoke(0, "k", KvInput::Put("a".into()), 0);
        h.complete(p, 1, KvOutcome::Fail);
        h.invoke(1, "k", KvInput::Put("b".into()), 2);
        let g = h.invoke(2, "k", KvInput::Get, 10);
        h.complete(g, 11, ok(Some("b")));
        assert_eq!(check(&h), Verdict::Linearizable);
        let g = h.invoke(2, "k", KvInput::Get, 12);
        h.complete(g, 13, ok(Some("a")));
        assert!(matches!(check(&h), Verdict::NotLinearizable(_)));
    }
}
