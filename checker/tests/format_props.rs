//! The parsers never panic: any text gives a history or an error that
//! points inside the input.

use enigma_checker::format::enigma::{
    self, parse_events, write_events, Event, EventKind, EventValue, Function, Level,
};
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
        for format in [Format::JepsenLog, Format::JepsenEdn, Format::Enigma] {
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

    #[test]
    fn damaged_enigma_files_never_panic(cut in 0usize..400, insert in "[ -~é]{0,3}") {
        let cut = cut.min(JSONL.len());
        let cut = (0..=cut).rev().find(|&i| JSONL.is_char_boundary(i)).unwrap_or(0);
        let text = format!("{}{insert}{}", &JSONL[..cut], &JSONL[cut..]);
        let parsed = enigma::parse(&text).map(|h| h.len());
        prop_assert!(error_is_inside(&text, parsed));
    }

    #[test]
    fn enigma_events_round_trip(events in prop::collection::vec(event(), 0..20)) {
        let text = write_events(&events);
        prop_assert_eq!(parse_events(&text), Ok(events));
    }
}

const JSONL: &str = "{\"type\":\"invoke\",\"process\":0,\"key\":\"a\",\"f\":\"write\",\"value\":1,\"time\":1}\n\
                     {\"type\":\"ok\",\"process\":0,\"key\":\"a\",\"f\":\"write\",\"value\":1,\"time\":2,\"level\":\"ALL\"}\n\
                     {\"type\":\"invoke\",\"process\":1,\"key\":\"a\",\"f\":\"cas\",\"value\":[1,null],\"time\":3}\n";

/// A valid event: the value fits the operation and the kind.
fn event() -> impl Strategy<Value = Event> {
    let kind = prop::sample::select(vec![
        EventKind::Invoke,
        EventKind::Ok,
        EventKind::Fail,
        EventKind::Info,
    ]);
    let f = prop::sample::select(Function::ALL.to_vec());
    let level = prop::option::of(prop::sample::select(Level::ALL.to_vec()));
    (
        kind,
        f,
        any::<u64>(),
        "[ -~\\\"é\n\t\u{7f}]{0,8}",
        any::<u64>(),
        level,
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        any::<i64>(),
        prop::option::of(any::<i64>()),
        "[ -~\\\"é\n]{0,8}",
        prop::collection::vec(any::<i64>(), 0..4),
    )
        .prop_map(
            |(kind, f, process, key, time, level, timestamp, writer, n, maybe, text, items)| {
                let value = match f {
                    Function::Read | Function::Write => {
                        maybe.map_or(EventValue::Nil, EventValue::Int)
                    }
                    Function::Cas => EventValue::Cas {
                        expected: maybe,
                        new: Some(n),
                    },
                    Function::Get if kind != EventKind::Ok && maybe.is_none() => EventValue::Nil,
                    Function::Get | Function::Put | Function::Append => EventValue::Text(text),
                    Function::Add => EventValue::Int(n),
                    Function::ReadAll if kind != EventKind::Ok && maybe.is_none() => {
                        EventValue::Nil
                    }
                    Function::ReadAll => EventValue::Elements(items),
                };
                Event {
                    kind,
                    process,
                    key,
                    f,
                    value,
                    time,
                    level,
                    timestamp,
                    writer,
                }
            },
        )
}

#[test]
fn undamaged_samples_parse() {
    assert_eq!(jepsen_log::parse(LOG).unwrap().len(), 2);
    assert_eq!(jepsen_edn::parse(EDN).unwrap().len(), 2);
    assert_eq!(enigma::parse(JSONL).unwrap().len(), 2);
}
