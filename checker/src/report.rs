//! Pictures of a verdict: a self-contained HTML page (inline CSS and SVG, no
//! external assets) drawing each process's operations on the failing key as
//! bars on a time axis, with the failing window marked.
//!
//! Rendering is a pure function of the verdict and the operations, so the
//! same history always gives the same page.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::history::{OpId, ProcessId};
use crate::linearizability::{Counterexample, Verdict};
use crate::promises::{PromiseReport, PromiseVerdict, Status};

/// One operation as a picture shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineOp {
    /// Its id in the history.
    pub id: OpId,
    /// Its process: one lane per process.
    pub process: ProcessId,
    /// One readable line describing it (shown on hover and in the table).
    pub label: String,
    /// When it was invoked.
    pub invoke_time: u64,
    /// When it responded; `None`: never (drawn to the right edge).
    pub response_time: Option<u64>,
}

/// Operations of the prefix shown before the failure point, as in the text
/// report.
const WINDOW_PREFIX_OPS: usize = 8;
/// Most operations drawn, so a page stays small for any history.
const DRAWN_OPS_MAX: usize = 400;
/// Geometry of the picture, in SVG units.
const LANE_HEIGHT: u32 = 26;
const LANE_LABEL_WIDTH: u32 = 70;
const PLOT_WIDTH: u32 = 1000;
const AXIS_HEIGHT: u32 = 30;

/// The HTML page for `verdict` on a history titled `title`. `timeline` holds
/// the operations of the key the verdict names (all of them is fine: the
/// page draws those near the failing window).
pub fn html_report(title: &str, verdict: &Verdict, timeline: &[TimelineOp]) -> String {
    let mut body = String::new();
    let (headline, class) = match verdict {
        Verdict::Linearizable => ("linearizable".to_owned(), "ok"),
        Verdict::NotLinearizable(c) => (format!("not linearizable: key {:?}", c.key), "bad"),
        Verdict::Unknown { .. } => ("unknown".to_owned(), "unknown"),
    };
    let _ = write!(
        body,
        "<h1>{}</h1>\n<p class=\"verdict {class}\">verdict: {}</p>\n",
        escape(title),
        escape(&headline)
    );
    if let Verdict::NotLinearizable(c) = verdict {
        body.push_str(&svg_window(c, timeline));
        body.push_str(&legend());
        body.push_str(&operation_table(c, timeline));
    }
    let _ = write!(
        body,
        "<h2>Report</h2>\n<pre>{}</pre>\n",
        escape(&verdict.to_string())
    );
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

/// The HTML page for the checks of a leveled history (see
/// [`crate::promises`]): the verdict, a table of every check and its
/// outcome, the failing window when linearizability broke (`timeline`: the
/// operations of the key it names), and each violation's account.
pub fn html_promise_report(title: &str, report: &PromiseReport, timeline: &[TimelineOp]) -> String {
    let verdict = report.verdict();
    let class = match verdict {
        PromiseVerdict::Linearizable | PromiseVerdict::PromisesKept => "ok",
        PromiseVerdict::NotLinearizable | PromiseVerdict::PromiseBroken => "bad",
        PromiseVerdict::Unknown => "unknown",
    };
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}</h1>\n<p class=\"verdict {class}\">verdict: {}</p>\n<p>run: {}</p>\n",
        escape(title),
        verdict.word(),
        escape(&report.facts.to_string())
    );
    body.push_str("<h2>Checks</h2>\n<p>What each operation's consistency level promises (DESIGN.md section 5).</p>\n<table>\n<tr><th>check</th><th>outcome</th><th>note</th></tr>\n");
    for r in &report.checks {
        let class = match r.status {
            Status::Passed => "ok",
            Status::Violated => "bad",
            Status::Unknown => "unknown",
            Status::NotApplicable => "",
        };
        let first = r.note.lines().next().unwrap_or_default();
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td class=\"verdict {class}\">{}</td><td>{}</td></tr>",
            r.check.name(),
            r.status.word(),
            escape(first)
        );
    }
    body.push_str("</table>\n");
    if let Some(Verdict::NotLinearizable(c)) = &report.linearizability {
        body.push_str(&svg_window(c, timeline));
        body.push_str(&legend());
        body.push_str(&operation_table(c, timeline));
    }
    let details = report.details();
    if !details.is_empty() {
        let _ = write!(body, "<h2>Report</h2>\n<pre>{}</pre>\n", escape(&details));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:1.3em}.verdict{font-weight:bold;font-size:1.1em}\
.ok{color:#1a7f37}.bad{color:#c62828}.unknown{color:#9a6700}\
pre{background:#f6f8fa;padding:1em;overflow-x:auto}\
table{border-collapse:collapse;font-family:monospace;font-size:.9em}\
td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}\
.legend span{display:inline-block;margin-right:1.5em}\
.sw{display:inline-block;width:1em;height:1em;vertical-align:middle;margin-right:.3em}\
svg text{font-family:monospace;font-size:11px}";

/// What role an operation plays in the counterexample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Linearized,
    Unplaceable,
    Deadline,
    Contradicted,
    Other,
}

impl Role {
    fn of(c: &Counterexample, id: OpId, linearized: &BTreeSet<OpId>) -> Role {
        if id == c.deadline {
            Role::Deadline
        } else if c.contradiction.is_some_and(|(_, later)| later == id) {
            Role::Contradicted
        } else if c.unplaceable.contains(&id) {
            Role::Unplaceable
        } else if linearized.contains(&id) {
            Role::Linearized
        } else {
            Role::Other
        }
    }

    fn fill(self) -> &'static str {
        match self {
            Role::Linearized => "#8fd19e",
            Role::Unplaceable => "#f4a3a3",
            Role::Deadline => "#e53935",
            Role::Contradicted => "#b39ddb",
            Role::Other => "#d0d7de",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Linearized => "linearized",
            Role::Unplaceable => "could not be placed",
            Role::Deadline => "responded before it could be placed",
            Role::Contradicted => "still to come, contradicted by placing a candidate",
            Role::Other => "not reached",
        }
    }
}

fn legend() -> String {
    let mut out = String::from("<p class=\"legend\">");
    for role in [
        Role::Linearized,
        Role::Unplaceable,
        Role::Deadline,
        Role::Contradicted,
        Role::Other,
    ] {
        let _ = write!(
            out,
            "<span><i class=\"sw\" style=\"background:{}\"></i>{}</span>",
            role.fill(),
            role.name()
        );
    }
    out.push_str(
        "<span><i class=\"sw\" style=\"background:#fff3cd;border:1px dashed #c62828\"></i>failing window</span></p>\n",
    );
    out
}

/// The time range the picture covers and the failing window inside it.
fn window(
    c: &Counterexample,
    by_id: &BTreeMap<OpId, &TimelineOp>,
) -> Option<((u64, u64), (u64, u64))> {
    let tail = &c.linearized[c.linearized.len().saturating_sub(WINDOW_PREFIX_OPS)..];
    let focus: Vec<&TimelineOp> = tail
        .iter()
        .chain(&c.unplaceable)
        .chain(std::iter::once(&c.deadline))
        .filter_map(|id| by_id.get(id).copied())
        .collect();
    let start = focus.iter().map(|op| op.invoke_time).min()?;
    let ends = focus
        .iter()
        .flat_map(|op| [Some(op.invoke_time), op.response_time])
        .flatten();
    let end = ends.max()?.max(start + 1);
    let deadline = by_id.get(&c.deadline)?;
    let failing_start = c
        .unplaceable
        .iter()
        .filter_map(|id| by_id.get(id).map(|op| op.invoke_time))
        .min()
        .unwrap_or(deadline.invoke_time);
    let failing_end = deadline.response_time.unwrap_or(end);
    Some(((start, end), (failing_start, failing_end)))
}

fn svg_window(c: &Counterexample, timeline: &[TimelineOp]) -> String {
    let by_id: BTreeMap<OpId, &TimelineOp> = timeline.iter().map(|op| (op.id, op)).collect();
    let Some(((start, end), (fail_start, fail_end))) = window(c, &by_id) else {
        return "<p>(no operations to draw)</p>\n".to_owned();
    };
    let linearized: BTreeSet<OpId> = c.linearized.iter().copied().collect();
    let span = end - start;
    // Pad one twentieth of the span on each side.
    let pad = (span / 20).max(1);
    let (lo, hi) = (start.saturating_sub(pad), end.saturating_add(pad));
    let x = |t: u64| {
        let t = t.clamp(lo, hi);
        LANE_LABEL_WIDTH as f64 + (t - lo) as f64 * PLOT_WIDTH as f64 / (hi - lo) as f64
    };
    let drawn: Vec<&TimelineOp> = timeline
        .iter()
        .filter(|op| op.invoke_time <= hi && op.response_time.is_none_or(|r| r >= lo))
        .take(DRAWN_OPS_MAX)
        .collect();
    let lanes: BTreeMap<ProcessId, usize> = drawn
        .iter()
        .map(|op| op.process)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, i))
        .collect();
    let height = AXIS_HEIGHT + LANE_HEIGHT * lanes.len() as u32 + 10;
    let width = LANE_LABEL_WIDTH + PLOT_WIDTH + 20;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\">\n"
    );
    let _ = writeln!(
        svg,
        "<rect class=\"failing-window\" x=\"{:.1}\" y=\"0\" width=\"{:.1}\" height=\"{height}\" fill=\"#fff3cd\" stroke=\"#c62828\" stroke-dasharray=\"4 3\"><title>failing window</title></rect>",
        x(fail_start),
        (x(fail_end) - x(fail_start)).max(2.0)
    );
    // Axis with a few ticks.
    let axis_y = height - 8;
    let _ = writeln!(
        svg,
        "<line x1=\"{LANE_LABEL_WIDTH}\" y1=\"{axis_y}\" x2=\"{}\" y2=\"{axis_y}\" stroke=\"#888\"/>",
        LANE_LABEL_WIDTH + PLOT_WIDTH
    );
    for i in 0..=4u64 {
        let t = lo + (hi - lo) * i / 4;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{t}</text>",
            x(t),
            axis_y - 4
        );
    }
    for (process, lane) in &lanes {
        let y = 4 + LANE_HEIGHT * *lane as u32;
        let _ = writeln!(
            svg,
            "<text x=\"4\" y=\"{}\">p{process}</text>",
            y + LANE_HEIGHT / 2 + 2
        );
    }
    for op in &drawn {
        let role = Role::of(c, op.id, &linearized);
        let y = 4 + LANE_HEIGHT * lanes[&op.process] as u32;
        let x0 = x(op.invoke_time);
        let x1 = op.response_time.map_or(x(hi), x).max(x0 + 3.0);
        let stroke = if role == Role::Deadline {
            "#7f0000"
        } else {
            "#57606a"
        };
        let dash = if op.response_time.is_none() {
            " stroke-dasharray=\"3 2\""
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            "<g class=\"op {}\"><rect x=\"{x0:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" rx=\"3\" fill=\"{}\" stroke=\"{stroke}\"{dash}/><text x=\"{:.1}\" y=\"{}\">#{}</text><title>{}: {}</title></g>",
            match role {
                Role::Linearized => "linearized",
                Role::Unplaceable => "unplaceable",
                Role::Deadline => "deadline",
                Role::Contradicted => "contradicted",
                Role::Other => "other",
            },
            x1 - x0,
            LANE_HEIGHT - 8,
            role.fill(),
            x0 + 3.0,
            y + LANE_HEIGHT / 2 + 1,
            op.id.0,
            escape(&op.label),
            role.name()
        );
    }
    svg.push_str("</svg>\n");
    let mut out = format!(
        "<h2>Failing window on key {}</h2>\n<p>Each row is a process; each bar one operation, from invocation to response (dashed: it never responded). Hover a bar for the operation.</p>\n",
        escape(&format!("{:?}", c.key))
    );
    out.push_str(&svg);
    if drawn.len() == DRAWN_OPS_MAX {
        let _ = writeln!(
            out,
            "<p>(only the first {DRAWN_OPS_MAX} operations are drawn)</p>"
        );
    }
    out
}

fn operation_table(c: &Counterexample, timeline: &[TimelineOp]) -> String {
    let by_id: BTreeMap<OpId, &TimelineOp> = timeline.iter().map(|op| (op.id, op)).collect();
    let linearized: BTreeSet<OpId> = c.linearized.iter().copied().collect();
    let tail = &c.linearized[c.linearized.len().saturating_sub(WINDOW_PREFIX_OPS)..];
    let mut out =
        String::from("<h2>Operations</h2>\n<table>\n<tr><th>operation</th><th>role</th></tr>\n");
    let later = c
        .contradiction
        .map(|(_, later)| later)
        .filter(|later| !c.unplaceable.contains(later));
    for id in tail.iter().chain(&c.unplaceable).chain(&later) {
        let Some(op) = by_id.get(id) else { continue };
        let role = Role::of(c, *id, &linearized);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><i class=\"sw\" style=\"background:{}\"></i>{}</td></tr>",
            escape(&op.label),
            role.fill(),
            role.name()
        );
    }
    out.push_str("</table>\n");
    out
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Call, History, Outcome};
    use crate::linearizability::check_linearizable;

    #[test]
    fn page_names_the_key_and_the_unplaceable_operation() {
        let mut h = History::new();
        let w = h.invoke(0, "k<1>", Call::Write(Some(1)), 0);
        h.complete(w, 10, Outcome::Ok { value: None });
        let r = h.invoke(1, "k<1>", Call::Read, 20);
        h.complete(r, 30, Outcome::Ok { value: None });
        let verdict = check_linearizable(&h);
        let timeline: Vec<TimelineOp> = h
            .operations()
            .iter()
            .map(|op| TimelineOp {
                id: op.id,
                process: op.process,
                label: op.to_string(),
                invoke_time: op.invoke_nanos,
                response_time: op.completion.as_ref().map(|c| c.time_nanos),
            })
            .collect();
        let page = html_report("test", &verdict, &timeline);
        assert!(page.contains("key &quot;k&lt;1&gt;&quot;"), "{page}");
        assert!(
            page.contains(
                "#1 p1 k&lt;1&gt; read [20..30] ok nil: responded before it could be placed"
            ),
            "{page}"
        );
        assert!(page.contains("class=\"failing-window\""), "{page}");
        assert!(
            !page.contains("http://") || !page.contains("<link"),
            "external asset"
        );
        assert!(!page.contains("<script"));
    }

    #[test]
    fn escape_handles_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
