//! Reading SQL text without parsing it: splitting a file into statements (with their line numbers), telling when
//! a REPL entry is complete, and finding `$name` parameters. Quotes and comments are respected throughout.

use std::collections::BTreeSet;

/// One statement of a SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    /// 1-based line of the statement's first character.
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    Single,
    Double,
    LineComment,
    BlockComment(usize),
}

/// What a character of SQL text is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Code,
    Quoted,
    Comment,
}

/// Walks SQL text, calling `f` with each character, its byte offset, and what it is part of. Returns the state at
/// the end.
fn walk(text: &str, mut f: impl FnMut(usize, char, Part)) -> State {
    let mut state = State::Normal;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|(_, n)| *n);
        match state {
            State::Normal => match (c, next) {
                ('\'', _) => state = State::Single,
                ('"', _) => state = State::Double,
                ('-', Some('-')) => state = State::LineComment,
                ('/', Some('*')) => {
                    chars.next();
                    state = State::BlockComment(1);
                    f(i, c, Part::Comment);
                    continue;
                }
                _ => {}
            },
            State::Single if c == '\'' => {
                // '' is an escaped quote inside the string.
                if next == Some('\'') {
                    chars.next();
                } else {
                    state = State::Normal;
                    f(i, c, Part::Quoted);
                    continue;
                }
            }
            State::Double if c == '"' => {
                state = State::Normal;
                f(i, c, Part::Quoted);
                continue;
            }
            State::LineComment if c == '\n' => state = State::Normal,
            State::BlockComment(depth) => match (c, next) {
                ('*', Some('/')) => {
                    chars.next();
                    state = if depth == 1 { State::Normal } else { State::BlockComment(depth - 1) };
                    f(i, c, Part::Comment);
                    continue;
                }
                ('/', Some('*')) => {
                    chars.next();
                    state = State::BlockComment(depth + 1);
                }
                _ => {}
            },
            _ => {}
        }
        let part = match state {
            State::Normal => Part::Code,
            State::Single | State::Double => Part::Quoted,
            State::LineComment | State::BlockComment(_) => Part::Comment,
        };
        f(i, c, part);
    }
    state
}

/// The statements of a SQL text, split at `;` outside quotes and comments. Statements holding only comments and
/// whitespace are dropped.
pub fn split_statements(text: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut first_code: Option<usize> = None;
    let mut ends = Vec::new();
    walk(text, |i, c, part| {
        if part == Part::Code && c == ';' {
            ends.push((start, i, first_code));
            start = i + 1;
            first_code = None;
        } else if part != Part::Comment && !c.is_whitespace() && first_code.is_none() {
            first_code = Some(i);
        }
    });
    ends.push((start, text.len(), first_code));
    for (s, e, first) in ends {
        let Some(first) = first else { continue };
        let sql = text[s..e].trim().to_string();
        if sql.is_empty() {
            continue;
        }
        let line = text[..first].matches('\n').count() + 1;
        out.push(Statement { sql, line });
    }
    out
}

/// Whether a REPL entry is ready to run: its last character outside quotes and comments is `;`.
pub fn is_complete(text: &str) -> bool {
    let mut last = None;
    let state = walk(text, |_, c, part| {
        if part != Part::Comment && !c.is_whitespace() {
            last = Some(c);
        }
    });
    matches!(state, State::Normal | State::LineComment) && last == Some(';')
}

/// The `$name` (and `$1`) parameters of a statement, outside quotes and comments.
pub fn placeholders(sql: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut current: Option<String> = None;
    walk(sql, |_, c, part| {
        let code = part == Part::Code;
        if let Some(name) = current.as_mut() {
            if code && (c.is_ascii_alphanumeric() || c == '_') {
                name.push(c);
                return;
            }
            let done = current.take().expect("checked above");
            if !done.is_empty() {
                out.insert(done);
            }
        }
        if code && c == '$' {
            current = Some(String::new());
        }
    });
    if let Some(done) = current.filter(|n| !n.is_empty()) {
        out.insert(done);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_semicolons_outside_quotes_and_comments() {
        let text = "-- header; not a split\nSELECT 'a;b' AS x;\n\n/* a ; comment */ SELECT \"c;d\" FROM t\n  WHERE y = 'it''s;';\n-- trailing comment only\n";
        let s = split_statements(text);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].sql, "-- header; not a split\nSELECT 'a;b' AS x");
        assert_eq!(s[0].line, 2);
        assert_eq!(s[1].line, 4);
        assert!(s[1].sql.ends_with("'it''s;'"));
        assert_eq!(split_statements("SELECT 1").len(), 1);
        assert!(split_statements("-- nothing\n;\n").is_empty());
    }

    #[test]
    fn completeness() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1;  -- done"));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT ';"));
        assert!(!is_complete("SELECT 1; /* open"));
        assert!(!is_complete("SELECT 1 -- ;"));
        assert!(is_complete("SELECT '--';"));
    }

    #[test]
    fn finds_parameters() {
        let p = placeholders("SELECT * FROM t WHERE a = $key AND b > $1 AND c = '$not' -- $nor\n AND d = $from_time");
        assert_eq!(p.into_iter().collect::<Vec<_>>(), vec!["1", "from_time", "key"]);
    }
}
