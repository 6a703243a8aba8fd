//! Sigma rules over the lake: each rule that applies to CloudTrail compiled into a SQL condition over `cloudtrail`,
//! and all of them run fused, in one scan of the lake.
//!
//! The rules are parsed by the rsigma-parser crate (the Sigma specification's conditions, modifiers and value
//! escapes); the SQL is ours (`compile.rs`).

mod compile;

use std::path::{Path, PathBuf};

use rsigma_parser::{Level, SigmaRule};

use crate::error::{Error, Result};
pub use compile::Unsupported;

/// A rule ready to run.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub level: String,
    /// The file it came from.
    pub file: String,
    /// True for the events it matches.
    pub condition: String,
}

/// What a set of rule files held.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Rules not run: (file, rule title, the construct that is not translated).
    pub unsupported: Vec<(String, String, String)>,
    /// Rules for other log sources, left aside.
    pub other_sources: usize,
    /// Rules under the minimum level, left aside.
    pub below_level: usize,
    /// Correlation rules, not run yet.
    pub correlations: Vec<(String, String)>,
}

/// The levels of Sigma, lowest first, for `--level`.
pub const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

fn rank(level: Option<Level>) -> usize {
    level.map_or(0, |l| LEVELS.iter().position(|x| *x == l.as_str()).unwrap_or(0))
}

/// Reads rule files and directories (`.yml` and `.yaml`, recursively), keeps the rules for CloudTrail at or above
/// `min_level`, and compiles them. A file that is not valid Sigma is an error naming it.
pub fn load(paths: &[PathBuf], min_level: Option<&str>) -> Result<RuleSet> {
    let min = match min_level {
        None => 0,
        Some(l) => LEVELS
            .iter()
            .position(|x| x.eq_ignore_ascii_case(l))
            .ok_or_else(|| Error::Usage(format!("unknown level {l:?}: {}", LEVELS.join(", "))))?,
    };
    let mut files = Vec::new();
    for p in paths {
        collect_files(p, &mut files)?;
    }
    if files.is_empty() {
        return Err(Error::Usage(format!("no Sigma rule files (.yml, .yaml) in {}", show_paths(paths))));
    }
    let mut set = RuleSet::default();
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let collection = rsigma_parser::parse_sigma_yaml(&text).map_err(|e| Error::Usage(format!("{name}: {e}")))?;
        // A rule the parser refuses (the older `| count() … > N` conditions among them) is not run, and listed.
        for e in &collection.errors {
            set.unsupported.push((name.clone(), "(rule not parsed)".into(), e.clone()));
        }
        for c in &collection.correlations {
            set.correlations.push((name.clone(), c.title.clone()));
        }
        for rule in &collection.rules {
            if !is_cloudtrail(rule) {
                set.other_sources += 1;
            } else if rank(rule.level) < min {
                set.below_level += 1;
            } else {
                match compile::rule_condition(rule) {
                    Ok(condition) => set.rules.push(Rule {
                        id: rule.id.clone().unwrap_or_else(|| rule.title.clone()),
                        title: rule.title.clone(),
                        level: rule.level.map_or("", |l| l.as_str()).to_string(),
                        file: name.clone(),
                        condition,
                    }),
                    Err(Unsupported(what)) => set.unsupported.push((name.clone(), rule.title.clone(), what)),
                }
            }
        }
    }
    Ok(set)
}

fn show_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(path, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    for p in entries {
        let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            collect_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
    Ok(())
}

/// `logsource: product: aws, service: cloudtrail`.
fn is_cloudtrail(rule: &SigmaRule) -> bool {
    let ls = &rule.logsource;
    ls.product.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("aws"))
        && ls.service.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("cloudtrail"))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The columns of a match, after the rule's.
const EVENT_COLUMNS: &str = "eventtime, account_id, awsregion, eventsource, eventname, \
     principal_name(useridentity) AS principal, sourceipaddress, eventid";

/// One rule's query, as `--explain` shows it.
pub fn rule_sql(rule: &Rule) -> String {
    format!(
        "SELECT {} AS rule_id, {} AS rule_title, {} AS level, {EVENT_COLUMNS}\nFROM cloudtrail\nWHERE {}\nORDER BY eventtime",
        literal(&rule.id),
        literal(&rule.title),
        literal(&rule.level),
        rule.condition
    )
}

/// Whether a `run` target names Sigma rules rather than SQL.
pub fn is_rule_file(target: &str) -> bool {
    target.ends_with(".yml") || target.ends_with(".yaml")
}

/// The error that makes the exit code 2 when rules were not run, unless the user chose to skip them.
pub fn refused(set: &RuleSet) -> Option<Error> {
    let n = set.unsupported.len() + set.correlations.len();
    (n > 0).then(|| {
        Error::Usage(format!(
            "{n} rule(s) not run: they use constructs that are not supported (listed above); --skip-unsupported \
             runs the others without this error"
        ))
    })
}

/// Every rule in one query and one scan: each event is tested against all conditions, and one row comes out per
/// (rule, matching event).
pub fn fused_sql(rules: &[Rule]) -> String {
    if rules.is_empty() {
        return "SELECT CAST(NULL AS VARCHAR) AS rule_id, CAST(NULL AS VARCHAR) AS rule_title, \
                CAST(NULL AS VARCHAR) AS level, eventtime, account_id, awsregion, eventsource, eventname, \
                principal_name(useridentity) AS principal, sourceipaddress, eventid FROM cloudtrail WHERE false"
            .to_string();
    }
    let hits: Vec<String> =
        rules.iter().enumerate().map(|(i, r)| format!("CASE WHEN {} THEN {i} END", r.condition)).collect();
    let any: Vec<&str> = rules.iter().map(|r| r.condition.as_str()).collect();
    let values: Vec<String> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| format!("({i}, {}, {}, {})", literal(&r.id), literal(&r.title), literal(&r.level)))
        .collect();
    format!(
        "SELECT r.rule_id, r.rule_title, r.level, m.eventtime, m.account_id, m.awsregion, m.eventsource, \
         m.eventname, m.principal, m.sourceipaddress, m.eventid\n\
         FROM (\n  SELECT {EVENT_COLUMNS},\n    unnest(make_array({})) AS rule_index\n  FROM cloudtrail\n  \
         WHERE {}\n) m\n\
         JOIN (VALUES {}) AS r(rule_index, rule_id, rule_title, level) ON m.rule_index = r.rule_index\n\
         ORDER BY m.eventtime, r.rule_id, m.eventid",
        hits.join(",\n      "),
        any.join("\n     OR "),
        values.join(", ")
    )
}

/// The summary printed on standard error after a run, with the number of matches when it is known.
pub fn summary(set: &RuleSet, matches: Option<usize>) -> String {
    let mut s = format!("sigma: {} rule{} run", set.rules.len(), if set.rules.len() == 1 { "" } else { "s" });
    if let Some(n) = matches {
        s.push_str(&format!(", {n} match{}", if n == 1 { "" } else { "es" }));
    }
    if !set.unsupported.is_empty() {
        s.push_str(&format!(", {} not supported", set.unsupported.len()));
    }
    if !set.correlations.is_empty() {
        s.push_str(&format!(", {} correlation rules not supported", set.correlations.len()));
    }
    if set.other_sources > 0 {
        s.push_str(&format!(", {} for other log sources", set.other_sources));
    }
    if set.below_level > 0 {
        s.push_str(&format!(", {} below the level", set.below_level));
    }
    s.push('\n');
    for (file, title, what) in &set.unsupported {
        s.push_str(&format!("sigma: not supported: {file}: {title}: {what}\n"));
    }
    for (file, title) in &set.correlations {
        s.push_str(&format!("sigma: not supported: {file}: {title}: correlation rule\n"));
    }
    s
}
