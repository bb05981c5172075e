//! A small EDN reader: enough of the format for Jepsen histories.
//!
//! Reads one value from a line (maps, vectors, lists, sets, strings,
//! keywords, integers, `nil`, booleans; any other bare token, such as a
//! float or a symbol, is kept as [`Edn::Symbol`] text). Commas are white
//! space and `;` starts a comment, as in EDN. The reader is iterative, with
//! an explicit stack bounded by [`EDN_DEPTH_MAX`], so hostile input cannot
//! overflow the call stack.

use super::{ParseError, Problem};

/// How deeply collections may nest.
pub const EDN_DEPTH_MAX: usize = 64;

/// An EDN value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edn {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits in an `i64`.
    Int(i64),
    /// A string, escapes resolved.
    Str(String),
    /// A keyword, without its leading colon.
    Keyword(String),
    /// Any other bare token (symbols, floats, big integers), as written.
    Symbol(String),
    /// `[...]`.
    Vector(Vec<Edn>),
    /// `(...)`.
    List(Vec<Edn>),
    /// `#{...}`.
    Set(Vec<Edn>),
    /// `{...}`, pairs in the order written.
    Map(Vec<(Edn, Edn)>),
}

impl Edn {
    /// The value under keyword `:name` in a map.
    pub fn get_keyword(&self, name: &str) -> Option<&Edn> {
        match self {
            Edn::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(k, Edn::Keyword(k) if k == name))
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Vector,
    List,
    Set,
    Map,
}

impl Open {
    fn closer(self) -> char {
        match self {
            Open::Vector => ']',
            Open::List => ')',
            Open::Set | Open::Map => '}',
        }
    }
}

#[derive(Debug)]
struct Frame {
    open: Open,
    /// Column of the opening delimiter.
    column: usize,
    items: Vec<Edn>,
}

/// Reads exactly one EDN value from `text` (line number `line`, 1-based,
/// for errors). Only white space and comments may follow it.
///
/// # Errors
/// A [`ParseError`] at the line and 1-based character column of the
/// problem.
pub fn parse_value(text: &str, line: usize) -> Result<Edn, ParseError> {
    parse_value_with_columns(text, line).map(|(value, _)| value)
}

/// Like [`parse_value`], and also returns the 1-based column at which each
/// item of a top-level collection starts (for a map: key, value, key, ...),
/// so that callers can point errors at a field.
///
/// # Errors
/// As [`parse_value`].
pub fn parse_value_with_columns(text: &str, line: usize) -> Result<(Edn, Vec<usize>), ParseError> {
    let err = |column: usize, problem: Problem| ParseError {
        line,
        column,
        problem,
    };
    let chars: Vec<char> = text.chars().collect();
    let mut stack: Vec<Frame> = Vec::new();
    let mut result: Option<Edn> = None;
    let mut top_columns: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() || c == ',' {
            i += 1;
            continue;
        }
        if c == ';' {
            break;
        }
        if result.is_some() {
            return Err(err(column, Problem::TrailingInput));
        }
        let mut start_column = column;
        let value = match c {
            '{' | '[' | '(' | '#' => {
                let (open, width) = match c {
                    '{' => (Open::Map, 1),
                    '[' => (Open::Vector, 1),
                    '(' => (Open::List, 1),
                    _ if chars.get(i + 1) == Some(&'{') => (Open::Set, 2),
                    _ => return Err(err(column, Problem::Unexpected { found: c })),
                };
                if stack.len() >= EDN_DEPTH_MAX {
                    return Err(err(
                        column,
                        Problem::TooDeep {
                            depth_max: EDN_DEPTH_MAX,
                        },
                    ));
                }
                stack.push(Frame {
                    open,
                    column,
                    items: Vec::new(),
                });
                i += width;
                continue;
            }
            '}' | ']' | ')' => {
                let Some(frame) = stack.pop() else {
                    return Err(err(column, Problem::Unexpected { found: c }));
                };
                if frame.open.closer() != c {
                    return Err(err(column, Problem::Unexpected { found: c }));
                }
                i += 1;
                start_column = frame.column;
                match frame.open {
                    Open::Vector => Edn::Vector(frame.items),
                    Open::List => Edn::List(frame.items),
                    Open::Set => Edn::Set(frame.items),
                    Open::Map => {
                        if frame.items.len() % 2 != 0 {
                            return Err(err(column, Problem::OddMap));
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
            '"' => {
                let (s, next) = read_string(&chars, i).map_err(|(col, p)| err(col, p))?;
                i = next;
                Edn::Str(s)
            }
            _ => {
                let start = i;
                while i < chars.len() && !is_delimiter(chars[i]) {
                    i += 1;
                }
                let token: String = chars[start..i].iter().collect();
                atom(&token).map_err(|p| err(column, p))?
            }
        };
        if stack.len() == 1 {
            top_columns.push(start_column);
        }
        match stack.last_mut() {
            Some(frame) => frame.items.push(value),
            None => result = Some(value),
        }
    }
    if !stack.is_empty() {
        return Err(err(chars.len() + 1, Problem::UnexpectedEnd));
    }
    match result {
        Some(value) => Ok((value, top_columns)),
        None => Err(err(chars.len() + 1, Problem::UnexpectedEnd)),
    }
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | '{' | '}' | '[' | ']' | '(' | ')' | '"' | ';')
}

fn atom(token: &str) -> Result<Edn, Problem> {
    Ok(match token {
        "nil" => Edn::Nil,
        "true" => Edn::Bool(true),
        "false" => Edn::Bool(false),
        _ if token.starts_with(':') => {
            let name = &token[1..];
            if name.is_empty() {
                return Err(Problem::EmptyKeyword);
            }
            Edn::Keyword(name.to_owned())
        }
        _ => match token.parse::<i64>() {
            Ok(n) => Edn::Int(n),
            Err(_) => Edn::Symbol(token.to_owned()),
        },
    })
}

/// Reads a string starting at the quote `chars[start]`; returns it and the
/// index after the closing quote, or the column and the problem.
fn read_string(chars: &[char], start: usize) -> Result<(String, usize), (usize, Problem)> {
    let mut out = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((out, i + 1)),
            '\\' => {
                let Some(&e) = chars.get(i + 1) else { break };
                let decoded = match e {
                    '"' => '"',
                    '\\' => '\\',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    _ => return Err((i + 1, Problem::BadEscape { found: e })),
                };
                out.push(decoded);
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err((start + 1, Problem::UnterminatedString))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(s: &str) -> Edn {
        Edn::Keyword(s.to_owned())
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
                Edn::Symbol("2.5".into())
            ]))
        );
        assert_eq!(v.get_keyword("missing"), None);
    }

    #[test]
    fn top_level_item_columns_are_reported() {
        let (_, columns) = parse_value_with_columns(r#" {:a [1 2], :b "x"}"#, 1).unwrap();
        assert_eq!(columns, vec![3, 6, 13, 16]);
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
    fn columns_count_characters_not_bytes() {
        let e = parse_value("\"é\" )", 1).unwrap_err();
        assert_eq!(e.column, 5);
    }
}
