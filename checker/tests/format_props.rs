//! The parsers never panic: any text gives a history or an error that
//! points inside the input.

use enigma_checker::format::{jepsen_edn, jepsen_log, parse, Format};
use proptest::prelude::*;

const LOG: &str = "INFO  jepsen.util - 0\t:invoke\t:cas\t[1 nil]\n\
                   INFO  jepsen.util - 0\t:ok\t:cas\t[1 nil]\n\
                   INFO  jepsen.util - 1 :invoke :read nil\n\
                   INFO  jepsen.util - 1 :fail :read :timed-out\n";

const EDN: &str = "{:process 0, :type :invoke, :f :append, :key \"0\", :value \"x \\\"0\\\" y\"}\n\
                   {:process 0, :type :ok, :f :append, :key \"0\", :value \"x \\\"0\\\" y\"}\n\
                   {:process 1, :type :invoke, :f :get, :key \"0\", :value nil}\n";

fn error_is_inside(text: &str, result: Result<usize, enigma_checker::ParseError>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => {
            let lines: Vec<&str> = text.lines().collect();
            e.line >= 1
                && e.line <= lines.len().max(1)
                && e.column >= 1
                && e.column <= lines.get(e.line - 1).map_or(0, |l| l.chars().count()) + 1
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_text_never_panics(text in "[ -~\t\n\"{}\\[\\]:,é]{0,120}") {
        for format in [Format::JepsenLog, Format::JepsenEdn] {
            let result = parse(&text, format).map(|h| h.len());
            prop_assert!(error_is_inside(&text, result));
        }
    }

    #[test]
    fn damaged_valid_files_never_panic(cut in 0usize..400, insert in "[ -~]{0,3}") {
        for base in [LOG, EDN] {
            let cut = cut.min(base.len());
            let cut = (0..=cut).rev().find(|&i| base.is_char_boundary(i)).unwrap_or(0);
            let text = format!("{}{insert}{}", &base[..cut], &base[cut..]);
            let log = jepsen_log::parse(&text).map(|h| h.len());
            prop_assert!(error_is_inside(&text, log));
            let edn = jepsen_edn::parse(&text).map(|h| h.len());
            prop_assert!(error_is_inside(&text, edn));
        }
    }
}

#[test]
fn undamaged_samples_parse() {
    assert_eq!(jepsen_log::parse(LOG).unwrap().len(), 2);
    assert_eq!(jepsen_edn::parse(EDN).unwrap().len(), 2);
}
