//! The REPL's line editor helper: completion, syntax highlighting and the validator that decides when an entry is
//! complete (a `;` outside quotes and comments) and shows a syntax error at its position.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use super::catalog::Catalog;
use super::meta::COMMANDS;

/// What completion offers, refreshed when the session changes.
#[derive(Debug, Default)]
pub struct Words {
    pub catalog: Catalog,
    pub queries: Vec<String>,
}

pub struct ReplHelper {
    pub words: Arc<RwLock<Words>>,
    files: FilenameCompleter,
    color: bool,
}

impl ReplHelper {
    pub fn new(words: Arc<RwLock<Words>>, color: bool) -> ReplHelper {
        ReplHelper { words, files: FilenameCompleter::new(), color }
    }
}

impl Helper for ReplHelper {}

impl Hinter for ReplHelper {
    type Hint = String;
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '\\'
}

/// Whether the text ends inside an open single-quoted string (the tokenizer leaves it unclassified), where a file
/// path is being typed.
fn in_quotes(before: &str) -> bool {
    matches!(crate::sqltext::classify(before).last(), Some((crate::sqltext::Class::Other, rest)) if rest.starts_with('\''))
}

/// Candidates that start with `prefix`, case-insensitively, written in the case the user started with.
fn matching<'a>(prefix: &str, words: impl Iterator<Item = &'a str>) -> Vec<Pair> {
    let lower = prefix.to_ascii_lowercase();
    let upper_input = !prefix.is_empty()
        && prefix.chars().any(|c| c.is_ascii_uppercase())
        && !prefix.chars().any(|c| c.is_ascii_lowercase());
    let mut out: Vec<Pair> = words
        .filter(|w| w.to_ascii_lowercase().starts_with(&lower))
        .map(|w| {
            let r = if upper_input { w.to_ascii_uppercase() } else { w.to_string() };
            Pair { display: w.to_string(), replacement: r }
        })
        .collect();
    out.sort_by(|a, b| a.display.cmp(&b.display));
    out.dedup_by(|a, b| a.replacement == b.replacement);
    out
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let trimmed = before.trim_start();
        // File paths: after \i and \o, and inside quotes (LOCATION '…', FROM 'file.parquet').
        if trimmed.starts_with("\\i ") || trimmed.starts_with("\\o ") || in_quotes(before) {
            return self.files.complete(line, pos, ctx);
        }
        let start = before.rfind(|c: char| !is_word_char(c)).map_or(0, |i| i + 1);
        let word = &before[start..];
        let words = self.words.read().expect("completion words");
        // Meta-commands, then what their argument names.
        if trimmed.starts_with('\\') {
            let first = trimmed.split_whitespace().next().unwrap_or("");
            if start == before.len() - trimmed.len() || !trimmed.contains(' ') {
                return Ok((start, matching(word, COMMANDS.iter().map(|c| c.0))));
            }
            let candidates: Vec<Pair> = match first {
                "\\run" => matching(word, words.queries.iter().map(String::as_str)),
                "\\h" | "\\df" => matching(word, words.catalog.functions.iter().map(|f| f.name.as_str())),
                "\\d" => matching(word, words.catalog.tables.iter().map(|t| t.name.as_str())),
                "\\format" => matching(word, ["table", "csv", "tsv", "json", "ndjson"].into_iter()),
                "\\timing" | "\\x" => matching(word, ["on", "off"].into_iter()),
                _ => Vec::new(),
            };
            return Ok((start, candidates));
        }
        // A nested field: complete the last segment among the children of the path before it.
        if let Some(dot) = word.rfind('.') {
            let (path, last) = (&word[..dot], &word[dot + 1..]);
            let children = words.catalog.children(path);
            let mut c = matching(last, children.iter().map(String::as_str));
            if c.is_empty() {
                // `table.column`
                if let Some(t) = words.catalog.table(path) {
                    c = matching(last, t.fields.iter().map(|f| f.name().as_str()));
                }
            }
            return Ok((start + dot + 1, c));
        }
        if word.is_empty() {
            return Ok((start, Vec::new()));
        }
        let keywords = datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
        let tables = words.catalog.tables.iter().map(|t| t.name.as_str());
        let columns: Vec<String> =
            words.catalog.tables.iter().flat_map(|t| t.fields.iter().map(|f| f.name().clone())).collect();
        let functions = words.catalog.functions.iter().map(|f| f.name.as_str());
        let all = keywords.iter().copied().chain(tables).chain(columns.iter().map(String::as_str)).chain(functions);
        Ok((start, matching(word, all)))
    }
}

const BOLD_BLUE: &str = "\x1b[1;34m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const GREY: &str = "\x1b[90m";
const RESET: &str = "\x1b[0m";

/// Colors SQL: keywords, strings, numbers and comments, as the parser's tokenizer reads them. Meta-commands are
/// left plain.
pub fn highlight_sql(line: &str) -> String {
    use crate::sqltext::Class;
    let mut out = String::with_capacity(line.len() * 2);
    for (class, text) in crate::sqltext::classify(line) {
        let color = match class {
            Class::Keyword => BOLD_BLUE,
            Class::String => GREEN,
            Class::Number => YELLOW,
            Class::Comment => GREY,
            Class::Other => {
                out.push_str(text);
                continue;
            }
        };
        out.push_str(color);
        out.push_str(text);
        out.push_str(RESET);
    }
    out
}

impl Highlighter for ReplHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if !self.color || line.trim_start().starts_with('\\') {
            return Cow::Borrowed(line);
        }
        Cow::Owned(highlight_sql(line))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        self.color && kind != CmdKind::MoveCursor
    }
}

/// Where a parser error points, as (line, column), from DataFusion's "at Line: L, Column: C".
pub fn error_position(message: &str) -> Option<(usize, usize)> {
    let num = |key: &str| -> Option<usize> {
        let i = message.find(key)? + key.len();
        message[i..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    Some((num("Line: ")?, num("Column: ")?))
}

/// A syntax error with the statement's line and a caret under the column.
pub fn show_syntax_error(sql: &str, message: &str) -> String {
    // DataFusion wraps the parser's words: `SQL error: ParserError("…")`.
    let inner = message.strip_prefix("SQL error: ParserError(\"").and_then(|m| m.strip_suffix("\")"));
    let message = &format!("syntax error: {}", inner.unwrap_or(message));
    match error_position(message) {
        Some((line, col)) if line >= 1 => {
            let text = sql.lines().nth(line - 1).unwrap_or("");
            format!("{message}\n{text}\n{}^", " ".repeat(col.saturating_sub(1)))
        }
        _ => message.to_string(),
    }
}

/// Parses every statement of an entry; the first syntax error, shown at its position.
pub fn check_syntax(text: &str) -> Result<(), String> {
    for stmt in crate::sqltext::split_statements(text) {
        if let Err(e) = datafusion::sql::parser::DFParser::parse_sql(&stmt.sql) {
            return Err(show_syntax_error(&stmt.sql, &e.to_string()));
        }
    }
    Ok(())
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if input.trim().is_empty() || input.trim_start().starts_with('\\') {
            return Ok(ValidationResult::Valid(None));
        }
        if !crate::sqltext::is_complete(input) {
            return Ok(ValidationResult::Incomplete);
        }
        Ok(match check_syntax(input) {
            Ok(()) => ValidationResult::Valid(None),
            Err(shown) => ValidationResult::Invalid(Some(format!("\n{shown}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_point_at_their_column() {
        let shown = check_syntax("SELECT eventname FRM cloudtrail;").unwrap_err();
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines[0].starts_with("syntax error: Expected: end of statement"), "{shown}");
        assert_eq!(lines[1], "SELECT eventname FRM cloudtrail");
        assert_eq!(lines[2].find('^'), Some(21), "{shown}");
        assert!(check_syntax("SELECT 1; SELECT 2;").is_ok());
    }

    #[test]
    fn highlighting_colors_keywords_strings_numbers() {
        let h = highlight_sql("SELECT 'x', 42 FROM \"from\" /* c */ -- c");
        assert!(h.contains(&format!("{BOLD_BLUE}SELECT{RESET}")));
        assert!(h.contains(&format!("{GREEN}'x'{RESET}")));
        assert!(h.contains(&format!("{YELLOW}42{RESET}")));
        assert!(h.contains(&format!("{GREY}/* c */{RESET}")));
        assert!(h.contains(&format!("{GREY}-- c{RESET}")));
        assert!(h.contains(" \"from\" "), "a quoted identifier is not a keyword: {h}");
    }

    #[test]
    fn file_paths_are_completed_inside_open_quotes_only() {
        assert!(in_quotes("SELECT * FROM 'data/x"));
        assert!(in_quotes("SELECT 'it''s', * FROM 'data/x"));
        assert!(!in_quotes("SELECT 'a' FROM t WHERE x"));
        assert!(!in_quotes("SELECT \"it's\" FROM t"));
        assert!(!in_quotes("SELECT 1 -- don't"));
    }

    #[test]
    fn matching_keeps_the_users_case() {
        let m = matching("SEL", ["select", "selector"].into_iter());
        assert_eq!(m[0].replacement, "SELECT");
        let m = matching("sel", ["select"].into_iter());
        assert_eq!(m[0].replacement, "select");
    }
}
