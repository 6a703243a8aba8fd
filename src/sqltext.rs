//! Reading SQL text with the SQL parser's own tokenizer: splitting a file into statements (with their line
//! numbers), telling when a REPL entry is complete, finding `$name` parameters, coloring keywords, and telling which
//! statements change the catalog. One lexer for all of them, and the same one DataFusion parses with, so quotes,
//! `""` identifiers, nested `/* */` comments and `$` placeholders mean the same everywhere.

use std::collections::BTreeSet;
use std::ops::Range;

use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer, TokenizerError, Whitespace};

/// One statement of a SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    /// 1-based line of the statement's first character that is not a comment.
    pub line: usize,
}

/// A token and the bytes of the text it covers.
struct Lexed {
    token: Token,
    bytes: Range<usize>,
    line: usize,
}

/// The tokens of a text; an unterminated string or comment is an error that says where it starts.
fn lex(text: &str) -> Result<Vec<Lexed>, TokenizerError> {
    let tokens = Tokenizer::new(&GenericDialect {}, text).tokenize_with_location()?;
    let offset = byte_offsets(text);
    let starts: Vec<usize> = tokens.iter().map(|t| offset(t.span.start)).collect();
    Ok(tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            // Whitespace and comments are tokens too, so each token runs to the start of the next.
            let end = starts.get(i + 1).copied().unwrap_or(text.len());
            Lexed { line: t.span.start.line as usize, bytes: starts[i]..end, token: t.token }
        })
        .collect())
}

/// The byte offset of a tokenizer location (1-based line, and column in characters).
fn byte_offsets(text: &str) -> impl Fn(Location) -> usize + '_ {
    let line_starts: Vec<usize> = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
    move |loc: Location| {
        let Some(&start) = line_starts.get((loc.line as usize).saturating_sub(1)) else { return text.len() };
        let column = (loc.column as usize).saturating_sub(1);
        text[start..].char_indices().nth(column).map_or(text.len(), |(i, _)| start + i)
    }
}

fn is_blank(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_) | Token::EOF)
}

/// The statements of a SQL text, split at `;` outside quotes and comments. Statements holding only comments and
/// whitespace are dropped. A text that does not tokenize is one statement, for the parser to report.
pub fn split_statements(text: &str) -> Vec<Statement> {
    let Ok(tokens) = lex(text) else {
        let first_line = text.lines().position(|l| !l.trim().is_empty()).unwrap_or(0) + 1;
        return if text.trim().is_empty() {
            Vec::new()
        } else {
            vec![Statement { sql: text.trim().into(), line: first_line }]
        };
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut first_line = None;
    for t in
        tokens.iter().chain(std::iter::once(&Lexed { token: Token::SemiColon, bytes: text.len()..text.len(), line: 0 }))
    {
        if t.token == Token::SemiColon {
            if let Some(line) = first_line.take() {
                out.push(Statement { sql: text[start..t.bytes.start].trim().to_string(), line });
            }
            start = t.bytes.end;
        } else if first_line.is_none() && !is_blank(&t.token) {
            first_line = Some(t.line);
        }
    }
    out
}

/// Whether a REPL entry is ready to run: it tokenizes (no open quote or comment) and its last token that is not
/// whitespace or a comment is `;`.
pub fn is_complete(text: &str) -> bool {
    lex(text).is_ok_and(|tokens| {
        tokens.iter().rev().find(|t| !is_blank(&t.token)).is_some_and(|t| t.token == Token::SemiColon)
    })
}

/// The `$name` (and `$1`) parameters of a statement, outside quotes and comments.
pub fn placeholders(sql: &str) -> BTreeSet<String> {
    let Ok(tokens) = lex(sql) else { return BTreeSet::new() };
    tokens
        .into_iter()
        .filter_map(|t| match t.token {
            Token::Placeholder(p) => p.strip_prefix('$').filter(|n| !n.is_empty()).map(String::from),
            _ => None,
        })
        .collect()
}

/// Whether a statement may create or drop something in the catalog (a view, a table, a schema, a function): the
/// REPL then reloads what it completes.
pub fn changes_catalog(sql: &str) -> bool {
    let Ok(statements) = DFParser::parse_sql(sql) else { return false };
    statements.iter().any(|s| match s {
        DFStatement::CreateExternalTable(_) => true,
        DFStatement::Statement(s) => matches!(
            **s,
            SqlStatement::CreateView { .. }
                | SqlStatement::CreateTable(_)
                | SqlStatement::CreateSchema { .. }
                | SqlStatement::CreateDatabase { .. }
                | SqlStatement::CreateFunction(_)
                | SqlStatement::Drop { .. }
                | SqlStatement::DropFunction { .. }
                | SqlStatement::AlterTable { .. }
        ),
        _ => false,
    })
}

/// What a piece of SQL text is, for coloring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Keyword,
    String,
    Number,
    Comment,
    Other,
}

/// The text in classified pieces, in order; together they are the whole text. From an open quote or comment on
/// (a line still being typed) the rest is one `Other` piece.
pub fn classify(text: &str) -> Vec<(Class, &str)> {
    // The tokenizer reports an open quote or comment where the text ends: the longest prefix that tokenizes, cut
    // before a character that opens one, is colored, and the rest left plain.
    let (lexed, rest) = match lex(text) {
        Ok(tokens) => (tokens, text.len()),
        Err(_) => text
            .char_indices()
            .rev()
            .filter(|(_, c)| matches!(c, '\'' | '"' | '`' | '/' | '-' | '$' | 'E' | 'e' | 'N' | 'n' | 'X' | 'x'))
            .find_map(|(i, _)| lex(&text[..i]).ok().map(|t| (t, i)))
            .unwrap_or_default(),
    };
    let mut out: Vec<(Class, &str)> = lexed
        .into_iter()
        .map(|t| {
            let class = match &t.token {
                Token::Word(w) if w.keyword != Keyword::NoKeyword && w.quote_style.is_none() => Class::Keyword,
                Token::Number(..) => Class::Number,
                Token::Whitespace(Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)) => {
                    Class::Comment
                }
                Token::SingleQuotedString(_)
                | Token::DoubleQuotedString(_)
                | Token::EscapedStringLiteral(_)
                | Token::NationalStringLiteral(_)
                | Token::HexStringLiteral(_)
                | Token::DollarQuotedString(_) => Class::String,
                _ => Class::Other,
            };
            (class, &text[t.bytes])
        })
        .collect();
    if rest < text.len() {
        out.push((Class::Other, &text[rest..]));
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
        let nested = split_statements("/* outer /* inner; */ still; */ SELECT 1; SELECT 2");
        assert_eq!(nested.len(), 2, "{nested:?}");
        assert_eq!(split_statements("SELECT 'open;").len(), 1, "the parser reports what does not tokenize");
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
        assert!(is_complete("SELECT \"a;\";"));
    }

    #[test]
    fn finds_parameters() {
        let p = placeholders("SELECT * FROM t WHERE a = $key AND b > $1 AND c = '$not' -- $nor\n AND d = $from_time");
        assert_eq!(p.into_iter().collect::<Vec<_>>(), vec!["1", "from_time", "key"]);
        assert!(placeholders("SELECT '$x' /* $y */").is_empty());
    }

    #[test]
    fn catalog_changes_come_from_the_statement() {
        assert!(changes_catalog("CREATE VIEW v AS SELECT 1"));
        assert!(changes_catalog("  drop view v"));
        assert!(changes_catalog("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'x/'"));
        assert!(!changes_catalog("SELECT 'CREATE' AS x"));
        assert!(!changes_catalog("-- CREATE VIEW v\nSELECT 1"));
    }

    #[test]
    fn classifies_the_whole_text_even_unfinished() {
        for text in ["SELECT 'x', 42 FROM \"t\" /* c */ -- d", "SELECT 'open", "SELECT 1 /* open"] {
            let pieces = classify(text);
            assert_eq!(pieces.iter().map(|(_, s)| *s).collect::<String>(), text);
        }
        let pieces = classify("SELECT 'x', 42 FROM \"select\" /* c */");
        assert!(pieces.contains(&(Class::Keyword, "SELECT")));
        assert!(pieces.contains(&(Class::String, "'x'")));
        assert!(pieces.contains(&(Class::Number, "42")));
        assert!(pieces.contains(&(Class::Comment, "/* c */")));
        assert!(!pieces.iter().any(|(c, s)| *c == Class::Keyword && s.contains("select")), "{pieces:?}");
    }
}
