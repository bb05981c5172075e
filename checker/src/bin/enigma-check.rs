//! `enigma-check`: checks Jepsen histories for linearizability.
//!
//! ```text
//! enigma-check [--format jepsen-log|jepsen-edn] [--steps-max N] FILE...
//! ```
//!
//! Prints one verdict per file (with a counterexample report for violations)
//! and exits 0 if every file is linearizable, 1 if some file is not, 2 if
//! some file could not be read or decided.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use enigma_checker::format::{detect_format, parse, Format};
use enigma_checker::{CheckOptions, Verdict};

const USAGE: &str = "usage: enigma-check [--format jepsen-log|jepsen-edn] [--steps-max N] FILE...";

#[derive(Debug)]
struct Args {
    format: Option<Format>,
    options: CheckOptions,
    files: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        format: None,
        options: CheckOptions::default(),
        files: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--format" => {
                args.format = Some(match it.next().as_deref() {
                    Some("jepsen-log") => Format::JepsenLog,
                    Some("jepsen-edn") => Format::JepsenEdn,
                    other => return Err(format!("unknown format {other:?}")),
                });
            }
            "--steps-max" => {
                let n = it.next().ok_or("--steps-max needs a number")?;
                args.options.limits_per_key.steps_max = n
                    .parse()
                    .map_err(|_| format!("--steps-max: not a number: {n:?}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}")),
            _ => args.files.push(PathBuf::from(arg)),
        }
    }
    if args.files.is_empty() {
        return Err("no files given".to_owned());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("enigma-check: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut worst = 0u8;
    for path in &args.files {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                worst = 2;
                continue;
            }
        };
        let format = args.format.unwrap_or_else(|| detect_format(&text));
        let history = match parse(&text, format) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                worst = 2;
                continue;
            }
        };
        let verdict = history.check(&args.options);
        let shown = writeln!(
            std::io::stdout().lock(),
            "{}: {} operations ({format}): {verdict}",
            path.display(),
            history.len()
        );
        if shown.is_err() {
            // The reader went away (e.g. `| head`): nothing left to say.
            return ExitCode::from(2);
        }
        worst = worst.max(match verdict {
            Verdict::Linearizable => 0,
            Verdict::NotLinearizable(_) => 1,
            Verdict::Unknown { .. } => 2,
        });
    }
    ExitCode::from(worst)
}
