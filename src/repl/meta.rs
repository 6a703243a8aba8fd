//! The REPL's meta-commands: an enum parsed from `\name args`, and the help table `\?` prints.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::print::Format;

/// A meta-command of the REPL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meta {
    Help,
    Quit,
    /// `\d`, or `\d NAME`.
    Describe(Option<String>),
    /// `\df [pattern]`.
    Functions(Option<String>),
    /// `\h NAME`.
    HelpFunction(String),
    Format(Format),
    Timing(bool),
    MaxRows(Option<usize>),
    /// `\i FILE`.
    Include(PathBuf),
    /// `\sigma FILE|DIR [since=TIME] [until=TIME] [account=ID ...]`.
    Sigma {
        path: PathBuf,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        accounts: Vec<String>,
    },
    Queries,
    /// `\run NAME [k=v ...]`.
    Run {
        name: String,
        params: Vec<(String, String)>,
    },
    /// `\o FILE`, or `\o` back to the screen.
    Output(Option<PathBuf>),
    /// `\x`: expanded display on or off (toggles without an argument).
    Expanded(Option<bool>),
}

/// Name, arguments and meaning of every meta-command, in the order `\?` shows them.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("\\?", "", "this help"),
    ("\\q", "", "quit (also Ctrl-D)"),
    ("\\d", "[NAME]", "list tables and views, or describe one (nested fields as a tree)"),
    ("\\df", "[PATTERN]", "list functions, ours included"),
    ("\\h", "NAME", "documentation of a function"),
    ("\\format", "table|csv|tsv|json|ndjson", "output format"),
    ("\\timing", "on|off", "show the time of each statement"),
    ("\\maxrows", "N|all", "rows shown in table format"),
    ("\\i", "FILE", "run the statements and meta-commands of a file"),
    ("\\queries", "", "list the saved queries"),
    (
        "\\sigma",
        "FILE|DIR [since=TIME] [until=TIME] [account=ID ...]",
        "run Sigma rules for CloudTrail over the lake, or over a time range or accounts of it",
    ),
    ("\\run", "NAME [k=v ...]", "run a saved query with parameters"),
    ("\\o", "[FILE]", "send results to a file; alone, back to the screen"),
    ("\\x", "[on|off]", "expanded display: one field per line"),
];

fn on_off(arg: &str) -> Result<bool, String> {
    match arg.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected on or off, not {arg:?}")),
    }
}

impl std::str::FromStr for Meta {
    type Err = String;

    fn from_str(line: &str) -> Result<Meta, String> {
        let line = line.trim().trim_end_matches(';').trim();
        let (name, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let arg = (!rest.is_empty()).then(|| rest.to_string());
        let need = |what: &str| arg.clone().ok_or_else(|| format!("{name} needs {what}"));
        Ok(match name {
            "\\?" | "\\help" => Meta::Help,
            "\\q" | "\\quit" => Meta::Quit,
            "\\d" => Meta::Describe(arg),
            "\\df" => Meta::Functions(arg),
            "\\h" => Meta::HelpFunction(need("a function name")?),
            "\\format" => {
                let f = need("a format: table, csv, tsv, json or ndjson")?;
                let format: Format = f.parse().map_err(|e: crate::error::Error| e.to_string())?;
                if format == Format::Parquet {
                    return Err("parquet output needs a file: use trailsql run -o FILE --format parquet".into());
                }
                Meta::Format(format)
            }
            "\\timing" => Meta::Timing(on_off(&need("on or off")?)?),
            "\\maxrows" => {
                let v = need("a number or all")?;
                Meta::MaxRows(match v.as_str() {
                    "all" | "0" => None,
                    n => Some(n.parse().map_err(|_| format!("\\maxrows takes a number or all, not {n:?}"))?),
                })
            }
            "\\i" => Meta::Include(PathBuf::from(need("a file")?)),
            "\\sigma" => {
                // The options are the last words, so that a path may hold spaces.
                let mut path = need("a rule file or directory")?;
                let (mut since, mut until, mut accounts) = (None, None, Vec::new());
                while let Some((head, last)) = path.rsplit_once(char::is_whitespace) {
                    match last.split_once('=') {
                        Some(("since", t)) => since = Some(crate::cli::parse_time(t)?),
                        Some(("until", t)) => until = Some(crate::cli::parse_time(t)?),
                        Some(("account", a)) => accounts.insert(0, a.to_string()),
                        _ => break,
                    }
                    path = head.trim_end().to_string();
                }
                Meta::Sigma { path: PathBuf::from(path), since, until, accounts }
            }
            "\\queries" => Meta::Queries,
            "\\run" => {
                let mut words = rest.split_whitespace();
                let name = words.next().ok_or("\\run needs a saved query name")?.to_string();
                let params = words.map(crate::cli::parse_param).collect::<Result<Vec<_>, _>>()?;
                Meta::Run { name, params }
            }
            "\\o" => Meta::Output(arg.map(PathBuf::from)),
            "\\x" => Meta::Expanded(arg.as_deref().map(on_off).transpose()?),
            other => return Err(format!("unknown command {other}: \\? lists them")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let cases = [
            ("\\?", Meta::Help),
            ("\\q", Meta::Quit),
            ("\\d", Meta::Describe(None)),
            ("\\d cloudtrail", Meta::Describe(Some("cloudtrail".into()))),
            ("\\df arn", Meta::Functions(Some("arn".into()))),
            ("\\h cloudtrail_time", Meta::HelpFunction("cloudtrail_time".into())),
            ("\\format csv", Meta::Format(Format::Csv)),
            ("\\timing off", Meta::Timing(false)),
            ("\\maxrows 20", Meta::MaxRows(Some(20))),
            ("\\maxrows all", Meta::MaxRows(None)),
            ("\\i hunt.sql", Meta::Include("hunt.sql".into())),
            ("\\sigma rules/", Meta::Sigma { path: "rules/".into(), since: None, until: None, accounts: vec![] }),
            (
                "\\sigma my rules/ since=2024-01-15 account=1 until=2024-01-16T12:00:00Z account=2",
                Meta::Sigma {
                    path: "my rules/".into(),
                    since: Some("2024-01-15T00:00:00Z".parse().unwrap()),
                    until: Some("2024-01-16T12:00:00Z".parse().unwrap()),
                    accounts: vec!["1".into(), "2".into()],
                },
            ),
            ("\\queries", Meta::Queries),
            (
                "\\run access_key_activity key=AKIA1",
                Meta::Run { name: "access_key_activity".into(), params: vec![("key".into(), "AKIA1".into())] },
            ),
            ("\\o out.csv", Meta::Output(Some("out.csv".into()))),
            ("\\o", Meta::Output(None)),
            ("\\x", Meta::Expanded(None)),
            ("\\x on;", Meta::Expanded(Some(true))),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Meta>(), Ok(want), "{text}");
        }
        for bad in
            ["\\nope", "\\h", "\\format xml", "\\timing maybe", "\\maxrows many", "\\run", "\\sigma r/ since=soon"]
        {
            assert!(bad.parse::<Meta>().is_err(), "{bad}");
        }
        for (name, _, _) in COMMANDS {
            assert!(!matches!(name.parse::<Meta>(), Err(e) if e.starts_with("unknown")), "{name}");
        }
    }
}
