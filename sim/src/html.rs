//! The picture of one run as a single self-contained HTML page
//! (`enigma sim --seed S --html FILE`): a lane per node and per client on a
//! virtual-time axis, client operations as bars, messages as arrows between
//! node lanes, faults as spans and marks, and for a failing run the
//! violating operations and key highlighted, the view opening on the failing
//! window, the report beside it. Everything is inline (CSS, script, SVG);
//! the page fetches nothing. Its size is bounded: past
//! [`MESSAGES_ON_PAGE_MAX`] messages and [`OPS_ON_PAGE_MAX`] operations it
//! carries an even sample (all of the failing window first) and says so.
//!
//! The data goes into the page as JSON; the script (`html/page.js`) draws
//! what is in view. The lane labels are drawn here, so the lanes are in the
//! page whether or not its script runs.

use std::collections::{BTreeMap, BTreeSet};

use enigma_checker::{Call, OpId, Outcome, Verdict};
use serde_json::{json, Value};

use crate::recording::Recording;
use crate::RunReport;

/// Messages a page carries at most.
pub const MESSAGES_ON_PAGE_MAX: usize = 20_000;
/// Operations a page carries at most.
pub const OPS_ON_PAGE_MAX: usize = 20_000;
/// Height of a node lane, pixels.
const NODE_LANE_PX: u32 = 44;
/// Height of the network lane, pixels.
const NET_LANE_PX: u32 = 28;
/// Height of a client lane, pixels.
const CLIENT_LANE_PX: u32 = 22;
/// Least failing window shown, nanoseconds.
const WINDOW_NANOS_MIN: u64 = 20_000_000;
/// Before a violation found at an instant (not in the history), how much
/// of the run the window shows.
const WINDOW_BEFORE_VIOLATION_NANOS: u64 = 2_000_000_000;

/// What a failing run points at: the operations the checks name, the key,
/// the window of time to open on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Focus {
    /// Operations a violation names (the checker's counterexample, or `#N`
    /// in a report).
    pub violating: BTreeSet<OpId>,
    /// Operations around them that explain them (the linearized prefix's
    /// tail before the failure point).
    pub context: BTreeSet<OpId>,
    /// The key the violation is about.
    pub key: Option<String>,
    /// The window the page opens on, virtual nanoseconds.
    pub window: Option<(u64, u64)>,
}

/// Reads the focus of a failing run off its report.
pub fn focus_of(report: &RunReport, recording: &Recording) -> Focus {
    let mut focus = Focus::default();
    if report.passed() {
        return focus;
    }
    let ops = report.history.operations();
    let exists = |id: usize| id < ops.len();
    if let Some(Verdict::NotLinearizable(c)) = &report.promises.linearizability {
        focus.key = Some(c.key.clone());
        focus.violating.extend(c.unplaceable.iter().copied());
        focus.violating.insert(c.deadline);
        let tail = c.linearized.len().saturating_sub(8);
        focus.context.extend(c.linearized[tail..].iter().copied());
    }
    let keys: BTreeSet<&str> = ops.iter().map(|op| op.key.as_str()).collect();
    let mut keys_named: Vec<String> = Vec::new();
    // The counterexample names the linearizability violation's operations
    // exactly (its report also lists the prefix); other reports name theirs
    // as `#N`.
    let counterexample = focus.key.is_some();
    for violation in &report.violations {
        if counterexample && violation.property == "linearizability" {
            continue;
        }
        for word in violation
            .details
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
        {
            if let Some(number) = word.strip_prefix('#') {
                if let Ok(id) = number.parse::<usize>() {
                    if exists(id) {
                        focus.violating.insert(OpId(id));
                    }
                }
            } else if keys.contains(word) && !keys_named.iter().any(|k| k == word) {
                keys_named.push(word.to_owned());
            }
        }
    }
    if focus.key.is_none() {
        let op_keys: BTreeSet<&str> = focus
            .violating
            .iter()
            .filter_map(|id| ops.get(id.0))
            .map(|op| op.key.as_str())
            .collect();
        focus.key = if op_keys.len() == 1 {
            op_keys.first().map(|k| (*k).to_owned())
        } else {
            keys_named.first().cloned()
        };
    }
    focus.context.retain(|id| !focus.violating.contains(id));
    let end = report.stats.virtual_nanos;
    let named: Vec<(u64, u64)> = focus
        .violating
        .iter()
        .chain(&focus.context)
        .filter_map(|id| ops.get(id.0))
        .map(|op| {
            let done = op.completion.as_ref().map_or(end, |c| c.time_nanos);
            (op.invoke_nanos, done.max(op.invoke_nanos))
        })
        .collect();
    focus.window = if let (Some(start), Some(stop)) = (
        named.iter().map(|w| w.0).min(),
        named.iter().map(|w| w.1).max(),
    ) {
        Some(padded(start, stop, end))
    } else {
        let first = report.violations.first().map(|v| v.property);
        let at = recording
            .violations_at
            .iter()
            .find(|(_, p)| Some(*p) == first)
            .map_or(end, |(t, _)| *t);
        Some(padded(
            at.saturating_sub(WINDOW_BEFORE_VIOLATION_NANOS),
            at,
            end,
        ))
    };
    focus
}

/// `start..stop` with a margin either side, at least [`WINDOW_NANOS_MIN`]
/// wide, within the run.
fn padded(start: u64, stop: u64, end: u64) -> (u64, u64) {
    let width = (stop - start).max(WINDOW_NANOS_MIN);
    let margin = width / 6;
    let center = start / 2 + stop / 2;
    let from = center.saturating_sub(width / 2 + margin);
    let to = (center + width / 2 + margin).min(end.max(stop));
    (from, to)
}

/// The page for `report`, recorded as `recording`.
pub fn render(report: &RunReport, recording: &Recording) -> String {
    let focus = focus_of(report, recording);
    let data = page_data(report, recording, &focus);
    let lanes = lane_layout(report);
    let mut labels = String::new();
    let mut y = 0;
    for (name, title, height, class) in &lanes {
        labels.push_str(&format!(
            "<g class=\"lane {class}\" data-lane=\"{}\"><rect x=\"0\" y=\"{y}\" width=\"100%\" height=\"{height}\"/><text x=\"8\" y=\"{}\">{}</text><title>{}</title></g>",
            escape(name),
            y + height / 2 + 4,
            escape(name),
            escape(title)
        ));
        y += height;
    }
    let status = if report.passed() {
        "passed".to_owned()
    } else {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for v in &report.violations {
            match counts.iter_mut().find(|(p, _)| *p == v.property) {
                Some((_, n)) => *n += 1,
                None => counts.push((v.property, 1)),
            }
        }
        let properties: Vec<String> = counts
            .iter()
            .map(|(p, n)| {
                if *n > 1 {
                    format!("{p} ×{n}")
                } else {
                    (*p).to_owned()
                }
            })
            .collect();
        format!("FAILED: {}", properties.join(", "))
    };
    let title = format!("EnigmaDB sim seed {:#x}: {status}", report.config.seed);
    let json = serde_json::to_string(&data)
        .expect("the page data is plain JSON")
        .replace("</", "<\\/");
    let mut page = String::with_capacity(json.len() + 64 * 1024);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    page.push_str(&format!("<title>{}</title>", escape(&title)));
    page.push_str("<style>");
    page.push_str(PAGE_CSS);
    page.push_str("</style></head><body>");
    page.push_str(&format!(
        "<header><h1 class=\"{}\">{}</h1><div id=\"controls\"></div></header>",
        if report.passed() { "pass" } else { "fail" },
        escape(&title)
    ));
    page.push_str(&format!(
        "<main><div id=\"chart\"><svg id=\"labels\" width=\"64\" height=\"{y}\">{labels}</svg><div id=\"plot\"><div id=\"msghint\"></div><svg id=\"axis\" height=\"26\"></svg><svg id=\"lanes\" height=\"{y}\"></svg></div></div><aside id=\"side\"><div id=\"hover\" class=\"box\">Hover over an operation, a message or a fault for its details; click to pin it.</div><div id=\"report\" class=\"box\"></div><div id=\"kinds\" class=\"box\"></div></aside></main>"
    ));
    page.push_str(
        "<footer><svg id=\"overview\" height=\"40\"></svg><div id=\"notes\"></div></footer>",
    );
    page.push_str("<script type=\"application/json\" id=\"data\">");
    page.push_str(&json);
    page.push_str("</script><script>");
    page.push_str(PAGE_JS);
    page.push_str("</script></body></html>\n");
    page
}

const PAGE_CSS: &str = include_str!("html/page.css");
const PAGE_JS: &str = include_str!("html/page.js");

/// Lanes top to bottom: the network, each node, each client (name, title,
/// height, class).
fn lane_layout(report: &RunReport) -> Vec<(String, String, u32, &'static str)> {
    let mut lanes = vec![(
        "net".to_owned(),
        "the network: partitions, clogged links, messages sent".to_owned(),
        NET_LANE_PX,
        "net",
    )];
    for n in 1..=report.config.nodes {
        lanes.push((format!("n{n}"), format!("node n{n}"), NODE_LANE_PX, "node"));
    }
    for c in clients_of(report) {
        lanes.push((
            format!("c{c}"),
            format!("client {c}"),
            CLIENT_LANE_PX,
            "client",
        ));
    }
    lanes
}

/// The client processes: every configured client, and any other process
/// the history holds.
fn clients_of(report: &RunReport) -> Vec<u64> {
    let mut clients: BTreeSet<u64> = (0..report.config.clients as u64).collect();
    clients.extend(report.history.operations().iter().map(|op| op.process));
    clients.into_iter().collect()
}

/// Indexes of `count` items kept on the page: every one in `window` first
/// (up to half the cap), then an even sample of the rest.
fn sample(
    count: usize,
    cap: usize,
    mut in_window: impl FnMut(usize) -> bool,
) -> (Vec<usize>, bool) {
    if count <= cap {
        return ((0..count).collect(), false);
    }
    let mut kept: Vec<usize> = (0..count).filter(|&i| in_window(i)).take(cap / 2).collect();
    let rest = cap - kept.len();
    let stride = count.div_ceil(rest.max(1));
    let first: BTreeSet<usize> = kept.iter().copied().collect();
    kept.extend(
        (0..count)
            .step_by(stride.max(1))
            .filter(|i| !first.contains(i)),
    );
    kept.sort_unstable();
    kept.truncate(cap);
    (kept, true)
}

fn page_data(report: &RunReport, recording: &Recording, focus: &Focus) -> Value {
    let end = report.stats.virtual_nanos;
    let in_window = |t: u64| focus.window.is_some_and(|(a, b)| t >= a && t <= b);
    let (messages, messages_sampled) =
        sample(recording.messages.len(), MESSAGES_ON_PAGE_MAX, |i| {
            in_window(recording.messages[i].sent_nanos)
        });
    let msgs: Vec<Value> = messages
        .iter()
        .map(|&i| {
            let m = &recording.messages[i];
            json!([
                m.from,
                m.to,
                m.kind,
                m.sent_nanos,
                m.due_nanos.map_or(-1, |d| d as i64)
            ])
        })
        .collect();
    let ops_all = report.history.operations();
    let (ops_kept, ops_sampled) = sample(ops_all.len(), OPS_ON_PAGE_MAX, |i| {
        let op = &ops_all[i];
        focus.violating.contains(&op.id) || in_window(op.invoke_nanos)
    });
    let keys: Vec<&str> = ops_all
        .iter()
        .map(|op| op.key.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let key_index: BTreeMap<&str, usize> = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let clients = clients_of(report);
    let client_index: BTreeMap<u64, usize> =
        clients.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    let mut ops: Vec<Value> = Vec::with_capacity(ops_kept.len());
    for &i in &ops_kept {
        let op = &ops_all[i];
        let (outcome, done) = match &op.completion {
            None => ("info", -1),
            Some(c) => (
                match c.outcome {
                    Outcome::Ok { .. } => "ok",
                    Outcome::Fail => "fail",
                    Outcome::Refused => "refused",
                    Outcome::Info => "info",
                },
                c.time_nanos as i64,
            ),
        };
        let short = match (&op.call, op.outcome()) {
            (Call::Read, Outcome::Ok { value }) => {
                format!("R {}", value.map_or("nil".to_owned(), |v| v.to_string()))
            }
            (Call::Read, _) => "R".to_owned(),
            (Call::Write(v), _) => format!("W {}", v.map_or("del".to_owned(), |v| v.to_string())),
            (Call::Cas { expected, new }, _) => format!(
                "CAS {}→{}",
                expected.map_or("nil".to_owned(), |v| v.to_string()),
                new.map_or("nil".to_owned(), |v| v.to_string())
            ),
        };
        let version = report.versions.get(&op.id).map_or(String::new(), |v| {
            format!("hlc {} by n{}", v.timestamp, v.writer)
        });
        let coordinators: Vec<Value> = recording
            .attempts
            .get(&op.id)
            .map(|a| a.iter().map(|a| json!([a.time_nanos, a.node])).collect())
            .unwrap_or_default();
        let role = if focus.violating.contains(&op.id) {
            2
        } else if focus.context.contains(&op.id) {
            1
        } else {
            0
        };
        ops.push(json!({
            "id": op.id.0,
            "c": client_index.get(&op.process).copied().unwrap_or(0),
            "k": key_index.get(op.key.as_str()).copied().unwrap_or(0),
            "s": op.invoke_nanos,
            "e": done,
            "o": outcome,
            "t": short,
            "line": op.to_string(),
            "v": version,
            "co": coordinators,
            "bad": role,
        }));
    }
    let spans: Vec<Value> = recording
        .spans
        .iter()
        .map(|s| {
            json!({
                "k": s.kind.name(),
                "n": s.node,
                "s": s.start_nanos,
                "e": s.end_nanos.unwrap_or(end),
                "l": s.label,
                "links": s.links,
            })
        })
        .collect();
    let marks: Vec<Value> = recording
        .marks
        .iter()
        .map(|m| json!({"n": m.node, "t": m.time_nanos, "k": m.kind, "l": m.label}))
        .collect();
    let mut used = vec![false; recording.violations_at.len()];
    let violations: Vec<Value> = report
        .violations
        .iter()
        .map(|v| {
            let at = recording
                .violations_at
                .iter()
                .enumerate()
                .find(|(i, (_, p))| !used[*i] && *p == v.property)
                .map(|(i, (t, _))| {
                    used[i] = true;
                    *t
                })
                .unwrap_or(end);
            json!({"p": v.property, "d": v.details, "t": at})
        })
        .collect();
    let checks: Vec<Value> = report
        .promises
        .checks
        .iter()
        .map(|r| json!([r.check.name(), r.status.word(), r.note]))
        .collect();
    let lanes: Vec<Value> = lane_layout(report)
        .into_iter()
        .map(|(name, _, height, class)| json!([name, height, class]))
        .collect();
    let stats = &report.stats;
    json!({
        "seed": format!("{:#x}", report.config.seed),
        "passed": report.passed(),
        "repro": report.config.repro_command(),
        "swarm": report.swarm,
        "digest": format!("{:016x}", report.digest),
        "summary": format!(
            "{} ok, {} fail, {} info; {} events, {:.1}s virtual, {} crashes, {} partitions, {} messages",
            stats.ops_ok, stats.ops_fail, stats.ops_info, stats.events,
            stats.virtual_nanos as f64 / 1e9, stats.crashes, stats.partitions, stats.messages
        ),
        "end": end,
        "nodes": report.config.nodes,
        "clients": clients,
        "lanes": lanes,
        "phases": recording.phases.iter().map(|(t, p)| json!([t, p])).collect::<Vec<_>>(),
        "clocks": recording.clocks,
        "spans": spans,
        "marks": marks,
        "kinds": recording.kinds,
        "kindTotals": recording.kind_totals,
        "msgs": msgs,
        "msgTotal": recording.messages_total,
        "msgSampled": messages_sampled || recording.messages_sampled(),
        "ops": ops,
        "opTotal": ops_all.len(),
        "opSampled": ops_sampled,
        "keys": keys,
        "focusKey": focus.key.as_ref().and_then(|k| key_index.get(k.as_str())),
        "focusKeyName": focus.key,
        "window": focus.window.map(|(a, b)| json!([a, b])),
        "violations": violations,
        "checks": checks,
    })
}

/// `text` safe inside HTML text and attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{run_recorded, SimConfig};

    fn small(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            ops: 120,
            ..SimConfig::default()
        }
    }

    #[test]
    fn a_page_has_a_lane_per_node_and_client_and_no_external_reference() {
        let config = SimConfig {
            nodes: 4,
            clients: 3,
            ..small(7)
        };
        let (report, recording) = run_recorded(&config);
        let page = render(&report, &recording);
        for lane in ["net", "n1", "n2", "n3", "n4", "c0", "c1", "c2"] {
            assert!(
                page.contains(&format!("data-lane=\"{lane}\"")),
                "no lane {lane}"
            );
        }
        assert!(!page.contains("data-lane=\"n5\""));
        let lower = page.to_lowercase();
        for external in [
            "http:", "https:", "src=", "href=", "@import", "url(", "fetch(",
        ] {
            assert!(!lower.contains(external), "the page holds {external:?}");
        }
        assert!(page.contains(&format!("{:#x}", config.seed)));
        assert!(recording.messages_total > 0, "no message recorded");
    }

    #[test]
    fn recording_changes_nothing_in_the_run() {
        let config = small(11);
        let plain = crate::run(&config);
        let (recorded, _) = run_recorded(&config);
        assert_eq!(plain.digest, recorded.digest);
        assert_eq!(plain.stats, recorded.stats);
    }

    #[test]
    fn a_failing_run_marks_its_violating_operations_key_and_window() {
        // The planted quorum bug (test-only) loses acknowledged writes; find
        // a seed it fails on within a bounded sweep.
        let failing = (0..40)
            .map(|seed| {
                run_recorded(&SimConfig {
                    planted_bug: true,
                    ..small(seed)
                })
            })
            .find(|(report, _)| !report.passed());
        let Some((report, recording)) = failing else {
            panic!("the planted bug was not caught in 40 seeds");
        };
        let focus = focus_of(&report, &recording);
        assert!(!focus.violating.is_empty(), "no violating op named");
        let key = focus.key.clone().expect("a key");
        let (start, stop) = focus.window.expect("a window");
        assert!(start < stop && stop <= report.stats.virtual_nanos);
        for id in &focus.violating {
            let op = &report.history.operations()[id.0];
            assert!(op.invoke_nanos <= stop, "op {id:?} after the window");
            let done = op.completion.as_ref().map_or(stop, |c| c.time_nanos);
            assert!(done >= start, "op {id:?} before the window");
        }
        let page = render(&report, &recording);
        assert!(page.contains("FAILED"));
        assert!(page.contains(&format!("\"focusKeyName\":\"{key}\"")));
        assert_eq!(
            page.matches("\"bad\":2").count(),
            focus.violating.len(),
            "each violating op is marked once"
        );
        // A passing run marks nothing.
        let (passing, recording) = run_recorded(&report.config.without_planted_bugs());
        assert!(passing.passed());
        let page = render(&passing, &recording);
        assert_eq!(page.matches("\"bad\":2").count(), 0);
        assert!(focus_of(&passing, &recording).window.is_none());
    }

    /// Writes the pages of the first failing seed of two planted switches
    /// (test-only: no command reaches them) into the directory
    /// `$ENIGMA_HTML_OUT`, for a person to look at in a browser:
    /// `ENIGMA_HTML_OUT=DIR cargo test -p enigma-sim html -- --ignored`.
    #[test]
    #[ignore = "writes pages for a person to look at"]
    fn write_pages_of_failing_runs() {
        let dir = std::env::var("ENIGMA_HTML_OUT").expect("set ENIGMA_HTML_OUT to a directory");
        type Plant = fn(&mut SimConfig);
        let plants: [(&str, Plant); 2] = [
            ("planted_bug", |c| c.planted_bug = true),
            ("planted_disk_loses_synced_writes", |c| {
                c.planted_disk_loses_synced_writes = true;
            }),
        ];
        for (name, plant) in plants {
            let mut base = SimConfig::default();
            plant(&mut base);
            let config = (0..200)
                .map(|seed| SimConfig {
                    seed,
                    ..base.clone()
                })
                .find(|c| !crate::run(c).passed())
                .expect("the switch is caught within 200 seeds");
            let (report, recording) = run_recorded(&config);
            assert!(!report.passed());
            let path = format!("{dir}/{name}-seed-{}.html", config.seed);
            std::fs::write(&path, render(&report, &recording)).expect("writable");
            println!(
                "{path}: {:?}",
                report
                    .violations
                    .iter()
                    .map(|v| v.property)
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn pages_keep_a_bounded_sample_with_the_window_first() {
        let (kept, sampled) = sample(100_000, 1_000, |i| (50_000..50_100).contains(&i));
        assert!(sampled);
        assert!(kept.len() <= 1_000);
        assert!(kept.len() > 900);
        assert!((50_000..50_100).all(|i| kept.binary_search(&i).is_ok()));
        assert!(kept.first() == Some(&0) && *kept.last().expect("some") > 90_000);
        let (all, sampled) = sample(10, 1_000, |_| false);
        assert!(!sampled);
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }
}
