//! `enigma check FILE`: does a recorded history keep what was promised?
//!
//! Reads EnigmaDB's JSON Lines histories, Jepsen EDN maps and Jepsen log
//! lines (detected from the first line unless `--format` says).
//!
//! A failed compare-and-set means what its format means by it
//! (`Format::fail_reading`: in EDN, Jepsen's meaning as Knossos checks it,
//! the operation did not take effect; in Jepsen log lines and EnigmaDB's
//! files, Porcupine's reading, the comparison was made and failed) unless
//! `--fail-reading` says.
//!
//! A history without consistency levels (every Jepsen history, and
//! EnigmaDB files that record none) is checked for linearizability against
//! its model: `verdict: linearizable`, `verdict: not-linearizable` or
//! `verdict: unknown`, then the report.
//!
//! A history whose operations record their consistency level gets the
//! checks each level promises (`enigma_checker::promises`; the promises are
//! listed in `docs/SERVER.md`, "Consistency levels and clocks"), given the run facts of its `run` line: a line per check with
//! its outcome, then the verdict: `linearizable` (every operation is
//! promised linearizability and everything held), `promises-kept` (weaker
//! promises, all kept), `not-linearizable`, `promise-broken` (a lost write,
//! a session reading back in time, ...) or `unknown`, then each violation's
//! account.
//!
//! Exit status: 0 linearizable or promises kept, 1 not linearizable or a
//! promise broken, 2 unknown (budget or `--timeout` ran out) or unusable
//! input (unreadable, malformed, or not of the `--model` asked for).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use enigma_checker::format::enigma::parse_assembled;
use enigma_checker::format::{detect_format, parse, Format, ParsedHistory};
use enigma_checker::report::{html_promise_report, html_report};
use enigma_checker::{
    check_promises, Call, CheckOptions, FailReading, PromiseInput, PromiseReport, PromiseVerdict,
    Verdict,
};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The history file.
    file: PathBuf,
    /// The model to check against. Default: the one the file's operations
    /// name (read/write/cas: cas-register; get/put/append: kv; add/read-all:
    /// set). `register` also rejects compare-and-set operations.
    #[arg(long, value_enum)]
    model: Option<ModelArg>,
    /// The file's format. Default: detected from its first line.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// What a failed compare-and-set means: `knossos` (Jepsen's meaning: it
    /// did not take effect, so it constrains nothing) or `porcupine` (the
    /// comparison was made and failed: the register did not hold the
    /// expected value). Default: knossos for EDN, porcupine for Jepsen log
    /// lines and EnigmaDB files.
    #[arg(long, value_enum, value_name = "READING")]
    fail_reading: Option<FailReadingArg>,
    /// Also write a self-contained HTML page picturing the verdict here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Give up with `verdict: unknown` after this many seconds of checking.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Keys searched at once, each on its own thread (1: one after the
    /// other). The verdict and report do not depend on it. Default: the
    /// cores available.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Memory the search's memos may hold in all, in MiB, shared among the
    /// keys searched at once; a key that needs more is `unknown`. Default:
    /// a quarter of the machine's physical memory.
    #[arg(long, value_name = "MIB")]
    memory_max_mib: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModelArg {
    /// Read / write register of integers.
    Register,
    /// Read / write / compare-and-set register of integers.
    CasRegister,
    /// String map with get / put / append.
    Kv,
    /// Grow-only set of integers with add / read-all.
    Set,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailReadingArg {
    /// A failed operation did not take effect (Knossos, Jepsen).
    Knossos,
    /// A failed compare-and-set observed a different value (Porcupine).
    Porcupine,
}

impl From<FailReadingArg> for FailReading {
    fn from(r: FailReadingArg) -> FailReading {
        match r {
            FailReadingArg::Knossos => FailReading::Knossos,
            FailReadingArg::Porcupine => FailReading::Porcupine,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// EnigmaDB's JSON Lines (docs/FORMAT.md).
    Enigma,
    /// One Jepsen EDN map per line.
    Edn,
    /// Jepsen log lines.
    JepsenLog,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Enigma => Format::Enigma,
            FormatArg::Edn => Format::JepsenEdn,
            FormatArg::JepsenLog => Format::JepsenLog,
        }
    }
}

/// Exit status for input the command cannot judge.
pub(crate) const EXIT_UNUSABLE: u8 = 2;

/// Runs `enigma check`.
pub fn check(args: &CheckArgs) -> ExitCode {
    match check_file(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

fn check_file(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let path = &args.file;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let format = args
        .format
        .map_or_else(|| detect_format(&text), Format::from);
    let context = || format!("{} ({format})", path.display());
    let (mut history, leveled) = if format == Format::Enigma {
        let assembled = parse_assembled(&text).with_context(context)?;
        let leveled = (!assembled.levels.is_empty()).then(|| {
            (
                assembled.levels,
                assembled.versions,
                assembled.run.map(|r| r.facts).unwrap_or_default(),
            )
        });
        (assembled.history, leveled)
    } else {
        (parse(&text, format).with_context(context)?, None)
    };
    let reading = args
        .fail_reading
        .map_or_else(|| format.fail_reading(), FailReading::from);
    history.read_failed_cas(reading);
    if let Some(model) = args.model {
        fits_model(&history, model).with_context(|| format!("{}", path.display()))?;
    }
    let stop = deadline_hook(args.timeout)?;
    let options = check_options(args.threads, args.memory_max_mib)?;
    let reading_note = match &history {
        ParsedHistory::Register(_) => format!(", a failed cas read as {reading}'s"),
        _ => String::new(),
    };
    let header = format!(
        "file: {} ({} operations, {format}, {} model{reading_note})",
        path.display(),
        history.len(),
        history.model_name()
    );
    let Some((levels, versions, facts)) = leveled else {
        return check_linearizability(args, &header, &history, &options, &stop);
    };
    let input = PromiseInput {
        history: &history,
        levels: &levels,
        versions: &versions,
        facts,
        replicas: None,
    };
    let report = check_promises(&input, &options, &stop);
    if let Some(html) = &args.html {
        write_promise_html(html, path, &history, &report)?;
    }
    let verdict = report.verdict();
    let code = promise_exit_code(verdict);
    let mut out = std::io::stdout().lock();
    // A reader that went away (e.g. `| head`) is no error: the status tells.
    let _ = write!(
        out,
        "{header}\n{report}verdict: {}\n{}",
        verdict.word(),
        report.details()
    );
    Ok(ExitCode::from(code))
}

/// The exit status of a verdict on promises: 0 linearizable or promises
/// kept, 1 not linearizable or a promise broken, 2 unknown. `enigma chaos`
/// exits the same way.
pub(crate) fn promise_exit_code(verdict: PromiseVerdict) -> u8 {
    match verdict {
        PromiseVerdict::Linearizable | PromiseVerdict::PromisesKept => 0,
        PromiseVerdict::NotLinearizable | PromiseVerdict::PromiseBroken => 1,
        PromiseVerdict::Unknown => EXIT_UNUSABLE,
    }
}

/// The plain linearizability check of a history without levels.
fn check_linearizability(
    args: &CheckArgs,
    header: &str,
    history: &ParsedHistory,
    options: &CheckOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> anyhow::Result<ExitCode> {
    let verdict = history.check_with_stop(options, stop);
    if let Some(html) = &args.html {
        write_html(html, &args.file, history, &verdict)?;
    }
    let (word, code) = match &verdict {
        Verdict::Linearizable => ("linearizable", 0),
        Verdict::NotLinearizable(_) => ("not-linearizable", 1),
        Verdict::Unknown { .. } => ("unknown", EXIT_UNUSABLE),
    };
    let mut out = std::io::stdout().lock();
    // A reader that went away (e.g. `| head`) is no error: the status tells.
    let _ = writeln!(out, "{header}\nverdict: {word}").and_then(|()| match &verdict {
        Verdict::Linearizable => Ok(()),
        Verdict::NotLinearizable(c) => write!(out, "{c}"),
        Verdict::Unknown { reason } => writeln!(out, "{reason}"),
    });
    Ok(ExitCode::from(code))
}

/// Fails when the history holds operations `model` does not have.
fn fits_model(history: &ParsedHistory, model: ModelArg) -> anyhow::Result<()> {
    match (model, history) {
        (ModelArg::CasRegister, ParsedHistory::Register(_))
        | (ModelArg::Kv, ParsedHistory::Kv(_))
        | (ModelArg::Set, ParsedHistory::Set(_)) => Ok(()),
        (ModelArg::Register, ParsedHistory::Register(h)) => {
            match h
                .operations()
                .iter()
                .find(|op| matches!(op.call, Call::Cas { .. }))
            {
                Some(op) => {
                    bail!("the register model has no compare-and-set, but the file has {op}")
                }
                None => Ok(()),
            }
        }
        (_, other) => bail!(
            "the file holds a {} history, not one for --model {}",
            other.model_name(),
            model
                .to_possible_value()
                .map_or_else(String::new, |v| v.get_name().to_owned())
        ),
    }
}

/// Percent of physical memory the memos may hold unless told.
const MEMO_SHARE_OF_MEMORY_PERCENT: u64 = 25;

/// The checker's options from the command line: `threads` (see
/// [`check_threads`]) and a memo budget per key of `memory_max_mib` (by
/// default a quarter of physical memory, or the library's default where it
/// cannot be told) divided among the threads.
pub(crate) fn check_options(
    threads: Option<usize>,
    memory_max_mib: Option<u64>,
) -> anyhow::Result<CheckOptions> {
    let threads = check_threads(threads)?;
    let defaults = CheckOptions::default();
    let total_bytes = match memory_max_mib {
        Some(0) => bail!("--memory-max-mib must be at least 1"),
        Some(mib) => Some(mib.saturating_mul(1 << 20)),
        None => physical_memory_bytes().map(|b| b / 100 * MEMO_SHARE_OF_MEMORY_PERCENT),
    };
    let mut limits = defaults.limits_per_key;
    if let Some(total) = total_bytes {
        let per_key = total / threads as u64;
        limits.memo_bytes_max = usize::try_from(per_key).unwrap_or(usize::MAX);
    }
    Ok(CheckOptions {
        threads,
        limits_per_key: limits,
    })
}

/// The machine's physical memory, from `/proc/meminfo` (Linux); `None`
/// where that cannot be read. Read here, at the edge: the checker crate
/// takes its budget as a number.
fn physical_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let amount: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => amount.checked_mul(1024),
        _ => None,
    }
}

/// The checker's thread count: `threads` if given (at least 1), else the
/// cores available (1 if that cannot be told).
pub(crate) fn check_threads(threads: Option<usize>) -> anyhow::Result<usize> {
    match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, usize::from)),
    }
}

/// The stop hook the checker polls (from every thread searching keys):
/// true once `timeout_secs` have passed.
pub(crate) fn deadline_hook(timeout_secs: Option<f64>) -> anyhow::Result<impl Fn() -> bool + Sync> {
    let budget = match timeout_secs {
        None => None,
        Some(secs) if secs.is_finite() && secs >= 0.0 => {
            Some(std::time::Duration::from_secs_f64(secs))
        }
        Some(secs) => bail!("--timeout must be a non-negative number of seconds, not {secs}"),
    };
    // The wall clock is read here, at the edge, and only to decide when to
    // give up: the checker itself stays deterministic and clock-free, and a
    // stop turns into `unknown`, never into a verdict.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    Ok(move || {
        #[allow(clippy::disallowed_methods)]
        let now = std::time::Instant::now();
        budget.is_some_and(|b| now.duration_since(started) >= b)
    })
}

fn write_html(
    html: &Path,
    file: &Path,
    history: &ParsedHistory,
    verdict: &Verdict,
) -> anyhow::Result<()> {
    let timeline = match verdict {
        Verdict::NotLinearizable(c) => history.timeline(&c.key),
        _ => Vec::new(),
    };
    let page = html_report(&file.display().to_string(), verdict, &timeline);
    std::fs::write(html, page).with_context(|| format!("cannot write {}", html.display()))
}

pub(crate) fn write_promise_html(
    html: &Path,
    file: &Path,
    history: &ParsedHistory,
    report: &PromiseReport,
) -> anyhow::Result<()> {
    let timeline = match &report.linearizability {
        Some(Verdict::NotLinearizable(c)) => history.timeline(&c.key),
        _ => Vec::new(),
    };
    let page = html_promise_report(&file.display().to_string(), report, &timeline);
    std::fs::write(html, page).with_context(|| format!("cannot write {}", html.display()))
}
