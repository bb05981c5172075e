//! A small EDN reader: enough of the format for Jepsen histories.
//!
//! Reads one value from a line (maps, vectors, lists, sets, strings,
//! keywords, integers, `nil`, booleans; any other bare token, such as a
//! float or a symbol, is kept as [`Edn::Symbol`] text). Commas are white
//! space and `;` starts a comment, as in EDN. The reader is iterative, with
//! an explicit stack bounded by [`EDN_DEPTH_MAX`], so hostile input cannot
//! overflow the call stack.
//!
//! It reads bytes and borrows from the line: keywords, symbols and strings
//! without escapes are slices of it, so a history of a million lines is not
//! a few million small allocations. Positions are byte offsets; the
//! 1-based character column an error names is counted only when there is
//! an error ([`column_of`]).

use std::borrow::Cow;

use super::{ParseError, Problem};

/// How deeply collections may nest.
pub const EDN_DEPTH_MAX: usize = 64;

/// An EDN value, borrowing from the text it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edn<'a> {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits in an `i64`.
    Int(i64),
    /// A string, escapes resolved.
    Str(Cow<'a, str>),
    /// A keyword, without its leading colon.
    Keyword(&'a str),
    /// Any other bare token (symbols, floats, big integers), as written.
    Symbol(&'a str),
    /// `[...]`.
    Vector(Vec<Edn<'a>>),
    /// `(...)`.
    List(Vec<Edn<'a>>),
    /// `#{...}`.
    Set(Vec<Edn<'a>>),
    /// `{...}`, pairs in the order written.
    Map(Vec<(Edn<'a>, Edn<'a>)>),
}

impl<'a> Edn<'a> {
    /// The value under keyword `:name` in a map.
    pub fn get_keyword(&self, name: &str) -> Option<&Edn<'a>> {
        match self {
            Edn::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(k, Edn::Keyword(k) if *k == name))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Edn::Nil => "nil",
            Edn::Bool(_) => "a boolean",
            Edn::Int(_) => "an integer",
            Edn::Str(_) => "a string",
            Edn::Keyword(_) => "a keyword",
            Edn::Symbol(_) => "a symbol",
            Edn::Vector(_) => "a vector",
            Edn::List(_) => "a list",
            Edn::Set(_) => "a set",
            Edn::Map(_) => "a map",
        }
    }
}

/// The 1-based character column of byte offset `byte` in `text`.
pub fn column_of(text: &str, byte: usize) -> usize {
    let mut byte = byte.min(text.len());
    while !text.is_char_boundary(byte) {
        byte -= 1;
    }
    text[..byte].chars().count() + 1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Vector,
    List,
    Set,
    Map,
}

impl Open {
    fn closer(self) -> u8 {
        match self {
            Open::Vector => b']',
            Open::List => b')',
            Open::Set | Open::Map => b'}',
        }
    }
}

#[derive(Debug)]
struct Frame<'a> {
    open: Open,
    /// Byte offset of the opening delimiter.
    start: usize,
    items: Vec<Edn<'a>>,
}

/// Reads exactly one EDN value from `text` (line number `line`, 1-based,
/// for errors). Only white space and comments may follow it.
///
/// # Errors
/// A [`ParseError`] at the line and 1-based character column of the
/// problem.
pub fn parse_value(text: &str, line: usize) -> Result<Edn<'_>, ParseError> {
    parse_value_with_offsets(text, line).map(|(value, _)| value)
}

/// Like [`parse_value`], and also returns the byte offset at which each
/// item of a top-level collection starts (for a map: key, value, key, ...),
/// so that callers can point errors at a field ([`column_of`]).
///
/// # Errors
/// As [`parse_value`].
pub fn parse_value_with_offsets(
    text: &str,
    line: usize,
) -> Result<(Edn<'_>, Vec<usize>), ParseError> {
    let err = |byte: usize, problem: Problem| ParseError {
        line,
        column: column_of(text, byte),
        problem,
    };
    let bytes = text.as_bytes();
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut result: Option<Edn<'_>> = None;
    let mut top_offsets: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        // White space as `char::is_whitespace` has it in ASCII (with the
        // vertical tab), and commas.
        if c == b' ' || (b'\t'..=b'\r').contains(&c) || c == b',' {
            i += 1;
            continue;
        }
        if !c.is_ascii() {
            // Non-ASCII white space is rare enough to decode only here.
            let ch = text[i..].chars().next().expect("inside the text");
            if ch.is_whitespace() {
                i += ch.len_utf8();
                continue;
            }
        }
        if c == b';' {
            break;
        }
        if result.is_some() {
            return Err(err(i, Problem::TrailingInput));
        }
        let mut start = i;
        let value = match c {
            b'{' | b'[' | b'(' | b'#' => {
                let (open, width) = match c {
                    b'{' => (Open::Map, 1),
                    b'[' => (Open::Vector, 1),
                    b'(' => (Open::List, 1),
                    _ if bytes.get(i + 1) == Some(&b'{') => (Open::Set, 2),
                    _ => return Err(err(i, Problem::Unexpected { found: '#' })),
                };
                if stack.len() >= EDN_DEPTH_MAX {
                    return Err(err(
                        i,
                        Problem::TooDeep {
                            depth_max: EDN_DEPTH_MAX,
                        },
                    ));
                }
                stack.push(Frame {
                    open,
                    start: i,
                    items: Vec::new(),
                });
                i += width;
                continue;
            }
            b'}' | b']' | b')' => {
                let found = c as char;
                let Some(frame) = stack.pop() else {
                    return Err(err(i, Problem::Unexpected { found }));
                };
                if frame.open.closer() != c {
                    return Err(err(i, Problem::Unexpected { found }));
                }
                let closer = i;
                i += 1;
                start = frame.start;
                match frame.open {
                    Open::Vector => Edn::Vector(frame.items),
                    Open::List => Edn::List(frame.items),
                    Open::Set => Edn::Set(frame.items),
                    Open::Map => {
                        if frame.items.len() % 2 != 0 {
                            return Err(err(closer, Problem::OddMap));
                        }
                        let mut pairs = Vec::with_capacity(frame.items.len() / 2);
                        let mut items = frame.items.into_iter();
                        while let (Some(k), Some(v)) = (items.next(), items.next()) {
                            pairs.push((k, v));
                        }
                        Edn::Map(pairs)
                    }
                }
            }
            b'"' => {
                let (s, next) = read_string(text, i).map_err(|(at, p)| err(at, p))?;
                i = next;
                Edn::Str(s)
            }
            _ => {
                let begin = i;
                while i < bytes.len() && !is_delimiter(text, i) {
                    i += 1;
                }
                atom(&text[begin..i]).map_err(|p| err(begin, p))?
            }
        };
        if stack.len() == 1 {
            top_offsets.push(start);
        }
        match stack.last_mut() {
            Some(frame) => frame.items.push(value),
            None => result = Some(value),
        }
    }
    if !stack.is_empty() {
        return Err(err(text.len(), Problem::UnexpectedEnd));
    }
    match result {
        Some(value) => Ok((value, top_offsets)),
        None => Err(err(text.len(), Problem::UnexpectedEnd)),
    }
}

/// The fields of a one-line map whose keys are keywords, as Jepsen writes
/// its events (`{:process 0, :type :ok, :f :cas, :value [1 2]}`): each
/// keyword (without its colon), its value and the byte offset where the
/// value starts, in the order written, appended to `fields` (cleared
/// first), so that a caller reading many lines reuses one vector.
///
/// Takes a fast path for the usual shape (values that are atoms, strings
/// or vectors of atoms) that builds no tree; anything else goes through
/// [`parse_value_with_offsets`], which also words every error. Entries
/// under keys that are not keywords are left out.
///
/// # Errors
/// As [`parse_value`]; a line that is a value but not a map is returned as
/// `Ok(Some(value))` for the caller to name.
pub fn parse_keyword_map<'a>(
    text: &'a str,
    line: usize,
    fields: &mut Vec<(&'a str, Edn<'a>, usize)>,
) -> Result<Option<Edn<'a>>, ParseError> {
    fields.clear();
    if flat_map(text, fields).is_some() {
        return Ok(None);
    }
    fields.clear();
    let (value, offsets) = parse_value_with_offsets(text, line)?;
    let Edn::Map(pairs) = value else {
        return Ok(Some(value));
    };
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if let Edn::Keyword(k) = k {
            fields.push((k, v, offsets[2 * i + 1]));
        }
    }
    Ok(None)
}

/// The fast path of [`parse_keyword_map`]: `None` when the line is not of
/// the usual shape (or is malformed), for the general reader to decide.
fn flat_map<'a>(text: &'a str, fields: &mut Vec<(&'a str, Edn<'a>, usize)>) -> Option<()> {
    let bytes = text.as_bytes();
    let skip = |mut i: usize| {
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b',' || bytes[i] == b'\t') {
            i += 1;
        }
        i
    };
    let token_end = |mut i: usize| {
        while i < bytes.len() && bytes[i] < 128 && !ASCII_DELIMITERS[bytes[i] as usize] {
            i += 1;
        }
        i
    };
    let mut i = skip(0);
    if bytes.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip(i);
        match bytes.get(i)? {
            b'}' => break,
            b':' => {}
            _ => return None,
        }
        let end = token_end(i);
        if end == i + 1 {
            return None;
        }
        let key = &text[i + 1..end];
        i = skip(end);
        let start = i;
        let value = match bytes.get(i)? {
            b'[' => {
                let mut items = Vec::new();
                i += 1;
                loop {
                    i = skip(i);
                    match bytes.get(i)? {
                        b']' => break,
                        b'{' | b'}' | b'[' | b'(' | b')' | b'"' | b'#' | b';' => return None,
                        _ => {}
                    }
                    let end = token_end(i);
                    if end == i {
                        return None;
                    }
                    items.push(atom(&text[i..end]).ok()?);
                    i = end;
                }
                i += 1;
                Edn::Vector(items)
            }
            b'"' => {
                let (s, next) = read_string(text, i).ok()?;
                i = next;
                Edn::Str(s)
            }
            b'{' | b'}' | b'(' | b')' | b']' | b'#' | b';' => return None,
            _ => {
                let end = token_end(i);
                if end == i {
                    return None;
                }
                let value = atom(&text[i..end]).ok()?;
                i = end;
                value
            }
        };
        fields.push((key, value, start));
    }
    // Only white space may follow.
    text[i + 1..].trim().is_empty().then_some(())
}

/// Per ASCII byte: whether it ends a bare token (white space and the
/// delimiters).
const ASCII_DELIMITERS: [bool; 128] = {
    let mut table = [false; 128];
    let delimiters = b" \t\n\r\x0b\x0c,{}[]()\";";
    let mut i = 0;
    while i < delimiters.len() {
        table[delimiters[i] as usize] = true;
        i += 1;
    }
    table
};

/// Whether the byte at `i` ends a bare token: ASCII delimiters, and any
/// white space (decoded only for non-ASCII bytes that start a character).
fn is_delimiter(text: &str, i: usize) -> bool {
    let c = text.as_bytes()[i];
    if c.is_ascii() {
        // `is_ascii_whitespace` leaves out the vertical tab, which
        // `char::is_whitespace` (the reader's white space) counts.
        return ASCII_DELIMITERS[c as usize];
    }
    text.is_char_boundary(i) && text[i..].chars().next().is_some_and(char::is_whitespace)
}

fn atom(token: &str) -> Result<Edn<'_>, Problem> {
    Ok(match token {
        "nil" => Edn::Nil,
        "true" => Edn::Bool(true),
        "false" => Edn::Bool(false),
        _ if token.starts_with(':') => {
            let name = &token[1..];
            if name.is_empty() {
                return Err(Problem::EmptyKeyword);
            }
            Edn::Keyword(name)
        }
        _ => match token.parse::<i64>() {
            Ok(n) => Edn::Int(n),
            Err(_) => Edn::Symbol(token),
        },
    })
}

/// Reads a string starting at the quote at byte `start`; returns it and
/// the byte offset after the closing quote, or the offset and the problem.
fn read_string(text: &str, start: usize) -> Result<(Cow<'_, str>, usize), (usize, Problem)> {
    let bytes = text.as_bytes();
    let body = start + 1;
    let mut i = body;
    // Borrowed until the first escape.
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Ok((Cow::Borrowed(&text[body..i]), i + 1)),
            b'\\' => break,
            _ => i += 1,
        }
    }
    let mut out = String::from(&text[body..i.min(bytes.len())]);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Ok((Cow::Owned(out), i + 1)),
            b'\\' => {
                let Some(e) = text[i + 1..].chars().next() else {
                    break;
                };
                let decoded = match e {
                    '"' => '"',
                    '\\' => '\\',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    _ => return Err((i, Problem::BadEscape { found: e })),
                };
                out.push(decoded);
                i += 1 + e.len_utf8();
            }
            _ => {
                // Copy up to the next quote or backslash (both ASCII, so
                // never inside a multi-byte character).
                let run = bytes[i..]
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\')
                    .map_or(bytes.len(), |n| i + n);
                out.push_str(&text[i..run]);
                i = run;
            }
        }
    }
    Err((start, Problem::UnterminatedString))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(s: &str) -> Edn<'_> {
        Edn::Keyword(s)
    }

    #[test]
    fn reads_a_jepsen_map() {
        let v = parse_value(
            r#"{:process 0, :type :ok, :f :get, :key "3", :value "x \"3\" y", :extra [1 nil 2.5]}"#,
            1,
        )
        .unwrap();
        assert_eq!(v.get_keyword("process"), Some(&Edn::Int(0)));
        assert_eq!(v.get_keyword("type"), Some(&kw("ok")));
        assert_eq!(v.get_keyword("value"), Some(&Edn::Str("x \"3\" y".into())));
        assert_eq!(
            v.get_keyword("extra"),
            Some(&Edn::Vector(vec![
                Edn::Int(1),
                Edn::Nil,
                Edn::Symbol("2.5")
            ]))
        );
        assert_eq!(v.get_keyword("missing"), None);
    }

    #[test]
    fn top_level_item_offsets_are_reported() {
        let text = r#" {:a [1 2], :é "x"}"#;
        let (_, offsets) = parse_value_with_offsets(text, 1).unwrap();
        assert_eq!(offsets, vec![2, 5, 12, 16]);
        let columns: Vec<usize> = offsets.iter().map(|&b| column_of(text, b)).collect();
        assert_eq!(columns, vec![3, 6, 13, 16]);
    }

    #[test]
    fn keyword_maps_read_alike_on_either_path() {
        let lines = [
            r#"{:process 0, :type :ok, :f :cas, :key "k", :value [1 nil], :time 5}"#,
            r#" {:process 0 :type :ok :f :read :value nil}  "#,
            // Nested and odd values take the general path.
            r#"{:process 0, :type :ok, :f :read, :value #{1 2}, :x {:y [1 [2]]}}"#,
            r#"{:process 0, "s" 1, :f :read} ; comment"#,
        ];
        for text in lines {
            let mut fields = Vec::new();
            assert_eq!(parse_keyword_map(text, 1, &mut fields), Ok(None), "{text}");
            let (value, offsets) = parse_value_with_offsets(text, 1).unwrap();
            let Edn::Map(pairs) = value else {
                panic!("a map")
            };
            let expected: Vec<(&str, Edn<'_>, usize)> = pairs
                .into_iter()
                .enumerate()
                .filter_map(|(i, (k, v))| match k {
                    Edn::Keyword(k) => Some((k, v, offsets[2 * i + 1])),
                    _ => None,
                })
                .collect();
            assert_eq!(fields, expected, "{text}");
        }
        let mut fields = Vec::new();
        assert_eq!(
            parse_keyword_map("[1 2]", 1, &mut fields),
            Ok(Some(Edn::Vector(vec![Edn::Int(1), Edn::Int(2)])))
        );
        for bad in ["{:a 1", "{:a [1 2}", "{:a 1} x", "{:a \"x}"] {
            assert_eq!(
                parse_keyword_map(bad, 1, &mut fields),
                Err(parse_value(bad, 1).unwrap_err()),
                "{bad}"
            );
        }
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let v = parse_value(r#"["plain é" "esc\"aped\n"]"#, 1).unwrap();
        let Edn::Vector(items) = v else {
            panic!("a vector")
        };
        assert!(matches!(&items[0], Edn::Str(Cow::Borrowed("plain é"))));
        assert_eq!(items[1], Edn::Str(Cow::Owned("esc\"aped\n".to_owned())));
        let e = parse_value(r#""bad \q""#, 1).unwrap_err();
        assert_eq!(
            (e.column, e.problem),
            (6, Problem::BadEscape { found: 'q' })
        );
    }

    #[test]
    fn nested_sets_and_lists_read() {
        let v = parse_value("#{(1 2) [:a]} ; comment", 1).unwrap();
        assert_eq!(
            v,
            Edn::Set(vec![
                Edn::List(vec![Edn::Int(1), Edn::Int(2)]),
                Edn::Vector(vec![kw("a")])
            ])
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse_value("{:a 1 :b}", 7).unwrap_err();
        assert_eq!((e.line, e.column, e.problem), (7, 9, Problem::OddMap));
        let e = parse_value("{:a \"open}", 2).unwrap_err();
        assert_eq!(
            (e.line, e.column, e.problem),
            (2, 5, Problem::UnterminatedString)
        );
        let e = parse_value("[1 2}", 1).unwrap_err();
        assert_eq!(
            (e.column, e.problem),
            (5, Problem::Unexpected { found: '}' })
        );
        let e = parse_value("{:a 1", 1).unwrap_err();
        assert_eq!((e.column, e.problem), (6, Problem::UnexpectedEnd));
        let e = parse_value("1 2", 1).unwrap_err();
        assert_eq!((e.column, e.problem), (3, Problem::TrailingInput));
        let e = parse_value("", 1).unwrap_err();
        assert_eq!(e.problem, Problem::UnexpectedEnd);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(100_000);
        let e = parse_value(&text, 1).unwrap_err();
        assert_eq!(
            e.problem,
            Problem::TooDeep {
                depth_max: EDN_DEPTH_MAX
            }
        );
    }

    #[test]
    fn every_white_space_separates() {
        let v = parse_value("[1\u{b}2\u{a0}:a\u{2003}\"x\"]", 1).unwrap();
        assert_eq!(
            v,
            Edn::Vector(vec![
                Edn::Int(1),
                Edn::Int(2),
                kw("a"),
                Edn::Str("x".into())
            ])
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let e = parse_value("\"é\" )", 1).unwrap_err();
        assert_eq!(e.column, 5);
    }
}
