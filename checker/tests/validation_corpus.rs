//! The external validation corpus: every history must get the verdict its
//! authors recorded in `porcupine/verdicts.tsv`.
//!
//! Runs when `ENIGMA_VALIDATION_DIR` names the corpus folder (CI sets it to
//! `../shared/validation`; a relative path is taken from the workspace root,
//! where CI runs cargo). Without the variable the test is reported as
//! ignored (see `build.rs`), never as passed. With it, a missing folder,
//! verdict list or listed file is a failure. No file is treated specially:
//! each is loaded by format detection and checked with default options.

use std::path::{Path, PathBuf};

use enigma_checker::{load_file, CheckOptions, Verdict};

/// The verdict list, relative to the corpus folder.
const VERDICTS: &str = "porcupine/verdicts.tsv";

fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("ENIGMA_VALIDATION_DIR")
        .expect("ENIGMA_VALIDATION_DIR was set when this test was built but is unset now");
    let dir = PathBuf::from(dir);
    if dir.is_absolute() {
        dir
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir)
    }
}

#[test]
#[cfg_attr(
    not(enigma_validation),
    ignore = "set ENIGMA_VALIDATION_DIR to the validation corpus (e.g. ../shared/validation)"
)]
fn every_corpus_history_gets_its_recorded_verdict() {
    let dir = corpus_dir();
    assert!(
        dir.is_dir(),
        "validation corpus folder {} is missing",
        dir.display()
    );
    let list_path = dir.join(VERDICTS);
    let list = std::fs::read_to_string(&list_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", list_path.display()));
    let list_dir = list_path
        .parent()
        .expect("the verdict list is inside the corpus folder");

    let mut checked = 0;
    let mut counts = [0usize; 2];
    let mut wrong = Vec::new();
    for (index, line) in list.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (file, expected) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("{VERDICTS}:{}: expected `file<TAB>verdict`", index + 1));
        let expect_linearizable = match expected.trim() {
            "linearizable" => true,
            "not-linearizable" => false,
            other => panic!("{VERDICTS}:{}: unknown verdict {other:?}", index + 1),
        };
        let path = list_dir.join(file);
        let history = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let verdict = history.check(&CheckOptions::default());
        let agrees = match &verdict {
            Verdict::Linearizable => expect_linearizable,
            Verdict::NotLinearizable(c) => {
                // A violation report must name its key and an operation.
                assert!(
                    c.to_string().contains(&format!("{:?}", c.key)),
                    "{file}: {c}"
                );
                assert!(!c.unplaceable.is_empty(), "{file}: {c}");
                !expect_linearizable
            }
            Verdict::Unknown { .. } => false,
        };
        if agrees {
            counts[usize::from(expect_linearizable)] += 1;
        } else {
            wrong.push(format!("{file}: expected {expected}, got {verdict}"));
        }
        checked += 1;
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} verdicts differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked > 0, "{} lists no files", list_path.display());
    println!(
        "{checked} histories agree: {} linearizable, {} not",
        counts[1], counts[0]
    );
}
