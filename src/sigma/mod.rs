//! Sigma rules over the lake: each rule that applies to CloudTrail compiled into a SQL condition over `cloudtrail`,
//! and all of them run fused, in one scan of the lake: detections and correlations alike.
//!
//! The rules are parsed by the rsigma-parser crate (the Sigma specification's conditions, modifiers and value
//! escapes); the SQL is ours (`compile.rs`).

pub mod checkpoint;
mod compile;
mod correlate;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Utc};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use rsigma_parser::{CorrelationRule, FilterRule, FilterRuleTarget, Level, LogSource, SigmaRule};

use crate::error::{Error, Result};
use crate::print::terminal_safe;
pub use compile::Unsupported;
use trailsql_lake::layout::PartitionKey;

/// A rule ready to run: a detection, true for the events it matches, or a correlation over such rules.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub level: String,
    /// The file it came from.
    pub file: String,
    pub kind: RuleKind,
    /// For a detection, the event names it can match, when its condition says (`compile::event_names`).
    pub event_names: Option<BTreeSet<String>>,
}

#[derive(Debug, Clone)]
pub enum RuleKind {
    /// The SQL condition of a detection.
    Detection(String),
    /// A correlation's columns in the fused query.
    Correlation(Box<correlate::Fused>),
}

/// The events a run reports: from `since` (included) to `until` (excluded), either end open, of the accounts
/// listed (all when none are).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub accounts: Vec<String>,
    /// A scheduler's run (`--checkpoint`): what changed in the lake since the last one.
    pub changed: Option<Changed>,
}

/// What a scheduler's run reads for new events: detections read the new data files (the table [`NEW_FILES`]), and
/// correlations give a row per group and day on the days these can change.
#[derive(Debug, Clone, PartialEq)]
pub enum Changed {
    /// Every partition: the first run, or the rules or the scope changed.
    All,
    /// These data files are new (named as the lake lists them), in these partitions, on these days (since the
    /// epoch); their events in these hours (since the epoch), once the run has read them ([`new_hours_query`]).
    Only {
        files: BTreeSet<String>,
        partitions: BTreeSet<PartitionKey>,
        days: BTreeSet<i32>,
        hours: Option<BTreeSet<i64>>,
    },
}

impl Changed {
    /// The new data files, by partition.
    pub fn only(new: BTreeMap<PartitionKey, Vec<String>>) -> Changed {
        let days = new.keys().map(|p| p.day).collect();
        let files = new.values().flatten().cloned().collect();
        Changed::Only { files, partitions: new.into_keys().collect(), days, hours: None }
    }

    /// The SQL of [`NEW_FILES`] where the session's table cannot be narrowed to files (Ballista's): the changed
    /// partitions, on the partition columns alone (so that the table lists no other). Their files that are not new
    /// give rows that earlier runs gave, which the checkpoint leaves out.
    pub fn partitions_view(&self) -> Option<String> {
        let Changed::Only { partitions, .. } = self else { return None };
        let keys: Vec<String> = partitions.iter().map(|p| literal(&checkpoint::partition_name(p))).collect();
        let keys = if keys.is_empty() { "NULL".to_string() } else { keys.join(", ") };
        Some(format!(
            "CREATE VIEW {NEW_FILES} AS SELECT * FROM cloudtrail \
             WHERE concat(account_id, '/', CAST(event_date AS VARCHAR)) IN ({keys})"
        ))
    }
}

/// The table of a scheduler's run's new data files: the lake's table narrowed to them
/// (`session::Session::register_files`).
pub const NEW_FILES: &str = "sigma_new_files";

/// The query of the hours (since the epoch) of the new data files' events, a null for an event without a time:
/// where a scheduler's run reads the events its correlations count, when their windows allow
/// ([`RuleSet::counts_around`]).
pub fn new_hours_query() -> String {
    format!("SELECT DISTINCT CAST(floor(CAST(eventtime AS BIGINT) / 3600000000.0) AS BIGINT) AS hour FROM {NEW_FILES}")
}

/// At most this many stretches of time in a scheduler's run's scan for its correlations (new events scattered over
/// more hours are read by whole days).
const MAX_STRETCHES: usize = 256;

impl Scope {
    /// A scope whose time range, if it has one, holds some time.
    pub fn new(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>, accounts: Vec<String>) -> Result<Self> {
        match (since, until) {
            (Some(s), Some(u)) if s >= u => {
                Err(Error::Usage(format!("--since {} is not before --until {}", moment(s), moment(u))))
            }
            _ => Ok(Scope { since, until, accounts, changed: None }),
        }
    }

    /// The conditions that keep the events of the accounts, from `from` (the start, or earlier, where a
    /// correlation looks back) to the end: on the partitions' accounts, on `eventtime` and on the partitions' dates
    /// (UTC dates of `eventtime`), so that the files of other accounts and days are never listed nor opened.
    fn conditions(&self, from: Option<DateTime<Utc>>) -> Vec<String> {
        let mut c = Vec::new();
        if !self.accounts.is_empty() {
            let accounts: Vec<String> = self.accounts.iter().map(|a| literal(a)).collect();
            c.push(format!("account_id IN ({})", accounts.join(", ")));
        }
        if let Some(t) = from
            && let Some(after) = not_before(t)
        {
            c.push(after);
            c.push(format!("event_date >= DATE '{}'", t.date_naive()));
        }
        // DataFusion's timestamp literals hold nanoseconds: years 1678 to 2261.
        if let Some(t) = self.until.filter(|t| t.year() <= 2200) {
            c.push(format!("eventtime < TIMESTAMP '{}'", moment(t)));
            let last = t - chrono::Duration::microseconds(1);
            c.push(format!("event_date <= DATE '{}'", last.date_naive()));
        }
        c
    }
}

/// The condition that an event is not before `t`; none before 1900, where DataFusion's timestamp literals end
/// (CloudTrail began in 2013).
fn not_before(t: DateTime<Utc>) -> Option<String> {
    (t.year() >= 1900).then(|| format!("eventtime >= TIMESTAMP '{}'", moment(t)))
}

/// A time as the SQL and the messages write it.
fn moment(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// What a set of rule files held.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// The events the rules run over.
    pub scope: Scope,
    /// Rules not run: (file, rule title, the construct that is not translated).
    pub unsupported: Vec<(String, String, String)>,
    /// Rules for other log sources, left aside.
    pub other_sources: usize,
    /// Rules under the minimum level, left aside.
    pub below_level: usize,
}

impl RuleSet {
    /// How far around the new events (seconds) a scheduler's run reads the events its correlations count: the
    /// longest timespan, when each allows it (`correlate::Fused::around`); `None` without correlations, or when one
    /// needs whole days.
    pub fn counts_around(&self) -> Option<u64> {
        counts_around(&self.rules)
    }
}

fn counts_around(rules: &[Rule]) -> Option<u64> {
    let arounds: Option<Vec<u64>> = (rules.iter())
        .filter_map(|r| match &r.kind {
            RuleKind::Correlation(f) => Some(f.around),
            RuleKind::Detection(_) => None,
        })
        .collect();
    arounds?.into_iter().max()
}

/// Where a scheduler's run reads the events its correlations count: the new events' hours and the timespans around
/// them (the files are sorted by time: the scan skips the pages of other times).
struct Stretches {
    /// On `eventtime`.
    condition: String,
    /// The days they cover, for the partition column.
    days: BTreeSet<i32>,
}

/// The stretches of time `[start, end)` that hold every event within `around` seconds of these hours, merged;
/// `None` for none or too many, or for a time SQL cannot write.
fn stretches(hours: &BTreeSet<i64>, around: u64) -> Option<Stretches> {
    const HOUR: i64 = 3_600_000_000;
    let around = i64::try_from(around).ok()?.checked_mul(1_000_000)?;
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for h in hours {
        let start = h.checked_mul(HOUR)?.checked_sub(around)?;
        let end = h.checked_add(1)?.checked_mul(HOUR)?.checked_add(around)?;
        match merged.last_mut() {
            Some((_, last)) if start <= *last => *last = (*last).max(end),
            _ => merged.push((start, end)),
        }
    }
    if merged.is_empty() || merged.len() > MAX_STRETCHES {
        return None;
    }
    let time = |t: i64| DateTime::from_timestamp_micros(t).filter(|t| (1900..=2200).contains(&t.year())).map(moment);
    let each: Vec<String> = (merged.iter())
        .map(|(a, b)| {
            Some(format!("(eventtime >= TIMESTAMP '{}' AND eventtime < TIMESTAMP '{}')", time(*a)?, time(*b)?))
        })
        .collect::<Option<_>>()?;
    let day = |t: i64| t.div_euclid(correlate::MICROS_PER_DAY);
    let days = merged.iter().flat_map(|(a, b)| day(*a)..=day(b - 1)).filter_map(|d| i32::try_from(d).ok()).collect();
    Some(Stretches { condition: format!("({})", each.join("\n    OR ")), days })
}

/// The levels of Sigma, lowest first, for `--level`.
pub const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

fn rank(level: Option<Level>) -> usize {
    level.map_or(0, |l| LEVELS.iter().position(|x| *x == l.as_str()).unwrap_or(0))
}

/// A detection rule as read, before it is known whether it runs alone.
struct Detection {
    file: String,
    rule: SigmaRule,
    /// Its SQL condition, filters applied; or why it cannot be translated.
    condition: compile::Compiled<String>,
    /// The old aggregation its condition ended with, and its timeframe.
    aggregation: Option<(String, Option<String>)>,
}

impl Detection {
    fn is_called(&self, reference: &str) -> bool {
        is_named(self.rule.id.as_deref(), self.rule.name.as_deref(), reference)
    }
}

/// Whether a rule with this `id` and `name` is the one a reference names (as correlations and filters name rules).
fn is_named(id: Option<&str>, name: Option<&str>, reference: &str) -> bool {
    id == Some(reference) || name == Some(reference)
}

/// Reads rule files and directories (`.yml` and `.yaml`, recursively), keeps the rules for CloudTrail at or above
/// `min_level`, and compiles them. A file that is not valid Sigma is an error naming it.
///
/// Filter rules narrow the rules they name (or all rules) wherever those are; a correlation counts the events of
/// the rules it names, which then give no rows of their own unless it says `generate: true` (a correlation that
/// is not run leaves its rules to run alone, so that nothing they find is hidden).
pub fn load(paths: &[PathBuf], min_level: Option<&str>, scope: Scope) -> Result<RuleSet> {
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
    let mut docs = Documents { set: RuleSet { scope, ..RuleSet::default() }, ..Documents::default() };
    for file in files {
        docs.read(&file)?;
    }
    docs.apply_filters();
    let fed = docs.compile_correlations(min);
    docs.compile_detections(&fed, min);
    Ok(docs.set)
}

/// The documents of all the rule files, on their way to a rule set.
#[derive(Default)]
struct Documents {
    detections: Vec<Detection>,
    correlations: Vec<(String, CorrelationRule)>,
    filters: Vec<FilterRule>,
    set: RuleSet,
}

impl Documents {
    fn read(&mut self, file: &Path) -> Result<()> {
        let name = file.display().to_string();
        let text = match crate::textfile::decode(std::fs::read(file).map_err(|e| Error::io(file, e))?) {
            Ok(text) => text,
            Err(why) => {
                self.set.unsupported.push((name, "(rule not parsed)".into(), why));
                return Ok(());
            }
        };
        let (text, aggregation) = match split_aggregation(&text) {
            Some((rest, aggregation, timeframe)) => (rest, Some((aggregation, timeframe))),
            None => (text, None),
        };
        let collection = rsigma_parser::parse_sigma_yaml(&text).map_err(|e| Error::Usage(format!("{name}: {e}")))?;
        // A rule the parser refuses is not run, and listed.
        for e in &collection.errors {
            self.set.unsupported.push((name.clone(), "(rule not parsed)".into(), parse_error(e)));
        }
        for rule in collection.rules {
            if !is_cloudtrail(&rule.logsource) {
                self.set.other_sources += 1;
                continue;
            }
            let condition = match &aggregation {
                Some(_) => compile::detections(&rule.detection),
                None => compile::rule_condition(&rule),
            };
            self.detections.push(Detection { file: name.clone(), rule, condition, aggregation: aggregation.clone() });
        }
        self.correlations.extend(collection.correlations.into_iter().map(|c| (name.clone(), c)));
        self.filters.extend(collection.filters);
        Ok(())
    }

    fn apply_filters(&mut self) {
        for f in self.filters.iter().filter(|f| f.logsource.as_ref().is_none_or(is_cloudtrail)) {
            let filter = compile::detections(&f.detection);
            let targets = self.detections.iter_mut().filter(|d| match &f.rules {
                FilterRuleTarget::Any => true,
                FilterRuleTarget::Specific(names) => names.iter().any(|n| d.is_called(n)),
            });
            for d in targets {
                d.condition = match (&d.condition, &filter) {
                    (Ok(c), Ok(f)) => Ok(format!("({c} AND {f})")),
                    (Err(e), _) => Err(e.clone()),
                    (_, Err(Unsupported(e))) => Err(Unsupported(format!("filter {}: {e}", f.title))),
                };
            }
        }
    }

    /// Where the correlations give rows: from the run's start, as their windows count time, and on the changed
    /// days of a scheduler's run.
    fn reporting(&self) -> correlate::Reporting<'_> {
        correlate::Reporting {
            since: self.set.scope.since.map(|t| t.timestamp_micros()),
            per_day: self.set.scope.changed.as_ref().map(|c| match c {
                Changed::All => None,
                Changed::Only { days, .. } => Some(days),
            }),
            alerts: false,
        }
    }

    /// Compiles the correlations; gives the detections that only feed the ones that run. A correlation that another
    /// one counts runs inside it, and alone only if that one says `generate: true` too.
    fn compile_correlations(&mut self, min: usize) -> BTreeSet<usize> {
        let (mut fed, mut fed_correlations) = (BTreeSet::new(), BTreeSet::new());
        for (_, c) in self.correlations.iter().filter(|(_, c)| rank(c.level) >= min) {
            if let Ok(compiled) = self.correlation(c, "c", self.reporting(), &mut Vec::new()) {
                fed.extend(compiled.fed);
                fed_correlations.extend(compiled.fed_correlations);
            }
        }
        for (i, (file, c)) in self.correlations.iter().enumerate() {
            if rank(c.level) < min {
                self.set.below_level += 1;
                continue;
            }
            if fed_correlations.contains(&i) {
                continue;
            }
            let id = c.id.clone().or_else(|| c.name.clone()).unwrap_or_else(|| c.title.clone());
            match self.correlation(c, &column_prefix(self.set.rules.len()), self.reporting(), &mut Vec::new()) {
                Ok(compiled) => {
                    let kind = RuleKind::Correlation(Box::new(compiled.fused));
                    self.set.rules.push(Rule::new(id, &c.title, c.level, file, kind));
                }
                Err(Unsupported(what)) => self.set.unsupported.push((file.clone(), c.title.clone(), what)),
            }
        }
        fed
    }

    /// A correlation's fused form, columns named from `prefix`, giving its rows as `reporting` says; `within`: the
    /// correlations that count it, inside one another.
    fn correlation<'a>(
        &'a self,
        c: &'a CorrelationRule,
        prefix: &str,
        reporting: correlate::Reporting,
        within: &mut Vec<&'a CorrelationRule>,
    ) -> compile::Compiled<CompiledCorrelation> {
        let spec = correlate::spec(c)?;
        let is_called =
            |other: &CorrelationRule, reference: &str| is_named(other.id.as_deref(), other.name.as_deref(), reference);
        // The alerts a correlation it counts gives are needed from this one's timespan before its first row.
        let child_reporting = correlate::Reporting {
            since: reporting.start().map(|t| t.saturating_sub(spec.span_micros())),
            per_day: None,
            alerts: true,
        };
        let mut compiled = CompiledCorrelation::default();
        // What each reference names: a detection, or a correlation (compiled to give its alerts).
        let mut counted = Vec::new();
        for (j, reference) in c.rules.iter().enumerate() {
            if let Some((k, (_, child))) =
                self.correlations.iter().enumerate().find(|(_, (_, o))| is_called(o, reference))
            {
                if std::ptr::eq(child, c) || within.iter().any(|w| std::ptr::eq(*w, child)) {
                    return Err(Unsupported(format!(
                        "it counts {reference}, which counts it (a cycle of correlations)"
                    )));
                }
                if within.len() + 1 >= MAX_CHAIN {
                    return Err(Unsupported(CHAIN_TOO_LONG.into()));
                }
                within.push(c);
                let inner = self.correlation(child, &format!("{prefix}r{j}"), child_reporting, within);
                within.pop();
                let inner = inner.map_err(|Unsupported(e)| match e.as_str() {
                    CHAIN_TOO_LONG => Unsupported(e),
                    _ => Unsupported(format!("it counts {reference}: {e}")),
                })?;
                if !c.generate {
                    compiled.fed_correlations.insert(k);
                }
                compiled.fed.extend(inner.fed);
                compiled.fed_correlations.extend(inner.fed_correlations);
                counted.push(Counted::Alerts(child, Box::new(inner.fused)));
                continue;
            }
            let Some(i) = self.detections.iter().position(|d| d.is_called(reference)) else {
                return Err(Unsupported(format!("it counts rule {reference}, which is not a CloudTrail rule loaded")));
            };
            let d = &self.detections[i];
            if d.aggregation.is_some() {
                return Err(Unsupported(format!("it counts rule {reference}, which is itself an aggregation")));
            }
            match &d.condition {
                Ok(condition) => counted.push(Counted::Rule(d, condition)),
                Err(Unsupported(e)) => return Err(Unsupported(format!("it counts rule {reference}, which uses {e}"))),
            }
            if !c.generate {
                compiled.fed.insert(i);
            }
        }
        // Whether an alias's mapping names the rule a reference names (by the reference, or its other name).
        let maps = |reference: &str, what: &Counted, rule: &str| {
            rule == reference
                || match what {
                    Counted::Rule(d, _) => d.is_called(rule),
                    Counted::Alerts(child, _) => is_called(child, rule),
                }
        };
        // A rule an alias maps must be one the correlation counts: a misspelt name would fall back to the alias's
        // own name as the field.
        for alias in &c.aliases {
            if let Some(rule) =
                alias.mapping.keys().find(|rule| !c.rules.iter().zip(&counted).any(|(r, what)| maps(r, what, rule)))
            {
                return Err(Unsupported(format!(
                    "the alias {} maps rule {rule}, which the correlation does not count",
                    alias.alias
                )));
            }
        }
        let inputs: Vec<correlate::Input> = (c.rules.iter().zip(&counted))
            .map(|(reference, what)| {
                let aliases = (c.aliases.iter())
                    .filter_map(|a| {
                        let field = a.mapping.iter().find(|(rule, _)| maps(reference, what, rule));
                        field.map(|(_, field)| (a.alias.as_str(), field.as_str()))
                    })
                    .collect();
                match what {
                    Counted::Rule(_, condition) => {
                        correlate::Input { name: reference, condition, aliases, alerts: None }
                    }
                    Counted::Alerts(_, fused) => {
                        correlate::Input { name: reference, condition: "false", aliases, alerts: Some(fused) }
                    }
                }
            })
            .collect();
        compiled.fused = correlate::fused(&spec, &inputs, prefix, reporting)?;
        Ok(compiled)
    }

    fn compile_detections(&mut self, fed: &BTreeSet<usize>, min: usize) {
        for (i, d) in self.detections.iter().enumerate() {
            if fed.contains(&i) {
                continue;
            }
            let rule = &d.rule;
            if rank(rule.level) < min {
                self.set.below_level += 1;
                continue;
            }
            let id = rule.id.clone().unwrap_or_else(|| rule.title.clone());
            let compiled = match (&d.condition, &d.aggregation) {
                (Err(e), _) => Err(e.clone()),
                (Ok(c), None) => Ok(RuleKind::Detection(c.clone())),
                (Ok(c), Some((aggregation, timeframe))) => correlate::legacy(aggregation, timeframe.as_deref())
                    .and_then(|spec| {
                        let input = correlate::Input::rule("", c);
                        correlate::fused(&spec, &[input], &column_prefix(self.set.rules.len()), self.reporting())
                    })
                    .map(|f| RuleKind::Correlation(Box::new(f))),
            };
            match compiled {
                Ok(kind) => {
                    // Filters only narrow a detection, so the names its own condition implies still hold.
                    let event_names = match kind {
                        RuleKind::Detection(_) => compile::event_names(&rule.detection),
                        RuleKind::Correlation(_) => None,
                    };
                    self.set.rules.push(Rule { event_names, ..Rule::new(id, &rule.title, rule.level, &d.file, kind) })
                }
                Err(Unsupported(what)) => self.set.unsupported.push((d.file.clone(), rule.title.clone(), what)),
            }
        }
    }
}

/// The most correlations in a chain, each counting the next: each nests the query of the one it counts, and a
/// chain of 150 passes the SQL parser's limit of nesting, failing the whole run, not one rule.
const MAX_CHAIN: usize = 16;
const CHAIN_TOO_LONG: &str = "a chain of more than 16 correlations, each counting the next";

/// What a correlation counts: a detection's events (its condition), or a correlation's alerts.
enum Counted<'a> {
    Rule(&'a Detection, &'a str),
    Alerts(&'a CorrelationRule, Box<correlate::Fused>),
}

/// A correlation compiled, with the detections and the correlations it counts that give no rows of their own.
#[derive(Default)]
struct CompiledCorrelation {
    fused: correlate::Fused,
    fed: BTreeSet<usize>,
    fed_correlations: BTreeSet<usize>,
}

impl Rule {
    fn new(id: String, title: &str, level: Option<Level>, file: &str, kind: RuleKind) -> Self {
        let level = level_name(level).to_string();
        Rule { id, title: title.to_string(), level, file: file.to_string(), kind, event_names: None }
    }
}

fn level_name(level: Option<Level>) -> &'static str {
    level.map_or("", |l| l.as_str())
}

/// The first columns of every result row: which rule.
fn head(id: &str, title: &str, level: &str) -> String {
    format!("{} AS rule_id, {} AS rule_title, {} AS level", literal(id), literal(title), literal(level))
}

/// The start of the names of a correlation's columns in the fused query: unique in its rule set.
fn column_prefix(position: usize) -> String {
    format!("c{position}")
}

/// A rule whose condition ends in an old aggregation (`sel | count() by x > 5`), as the parser of today's
/// specification does not take it: the document without the aggregation and its `timeframe`, and those two.
fn split_aggregation(text: &str) -> Option<(String, String, Option<String>)> {
    // Most files have no aggregation: they are parsed once, by rsigma-parser alone.
    if !text.lines().any(|l| l.trim_start().starts_with("condition:") && l.contains('|')) {
        return None;
    }
    let mut doc: yaml_serde::Value = yaml_serde::from_str(text).ok()?;
    let detection = doc.get_mut("detection")?.as_mapping_mut()?;
    let (base, aggregation) = detection.get("condition")?.as_str()?.split_once('|')?;
    let (base, aggregation) = (base.trim().to_string(), aggregation.to_string());
    let timeframe = detection.remove("timeframe").and_then(|t| t.as_str().map(String::from));
    detection.insert("condition".into(), base.into());
    Some((yaml_serde::to_string(&doc).ok()?, aggregation, timeframe))
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

/// The parser's message for a rule it refuses, readable: it wraps a condition's error once for every level of
/// nesting ("Condition parse error at 1:66: at 1:66: Condition parse error at …", 2,700 characters for a
/// condition nested too deep), and the innermost says why.
fn parse_error(message: &str) -> String {
    const WRAPPED: &str = "Condition parse error";
    match message.rfind(WRAPPED) {
        Some(last) if message.find(WRAPPED) != Some(last) => message[last..].to_string(),
        _ => message.to_string(),
    }
}

/// `logsource: product: aws, service: cloudtrail`.
fn is_cloudtrail(ls: &LogSource) -> bool {
    ls.product.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("aws"))
        && ls.service.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("cloudtrail"))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The columns of a matching event, after the rule's.
const EVENT_COLUMNS: &str = "eventtime, account_id, awsregion, eventsource, eventname, \
     principal_name(useridentity) AS principal, sourceipaddress, eventid";

/// The event's columns as the shared stream has them.
const STREAM_COLUMNS: &str =
    "eventtime, account_id, awsregion, eventsource, eventname, principal, sourceipaddress, eventid";

/// The shared stream of a rule directory's query, computed once (`session::shared`).
const SHARED: &str = crate::session::shared::NAME;

/// The detections' stream in a scheduler's run with correlations, which read another.
const NEW_STREAM: &str = "sigma_new";

/// The lake's table.
const TABLE: &str = crate::session::TABLE;

/// The columns a correlation fills, empty for a detection's match.
const NO_CORRELATION: &str = "CAST(NULL AS VARCHAR) AS correlation_group, CAST(NULL AS BIGINT) AS correlation_count";

/// The order of every result: by time, then rule.
const ORDER: &str = "ORDER BY eventtime, rule_id, eventid";

/// One rule's query, as `--explain` shows it: a detection's as a plain query, a correlation's as it runs.
pub fn rule_sql(rule: &Rule, scope: &Scope) -> String {
    match &rule.kind {
        RuleKind::Detection(condition) => {
            let mut conditions = scope.conditions(scope.since);
            conditions.push(condition.clone());
            format!(
                "SELECT {}, {EVENT_COLUMNS}, {NO_CORRELATION}\nFROM cloudtrail\nWHERE {}\n{ORDER}",
                head(&rule.id, &rule.title, &rule.level),
                conditions.join("\n  AND ")
            )
        }
        RuleKind::Correlation(_) => fused(std::slice::from_ref(rule), scope),
    }
}

/// Whether a `run` target names Sigma rules rather than SQL.
pub fn is_rule_file(target: &str) -> bool {
    target.ends_with(".yml") || target.ends_with(".yaml")
}

/// The error that makes the exit code 2 when rules were not run, unless the user chose to skip them.
pub fn refused(set: &RuleSet) -> Option<Error> {
    let n = set.unsupported.len();
    (n > 0).then(|| {
        Error::Usage(format!(
            "{n} rule(s) not run: they use constructs that are not supported (listed above); --skip-unsupported \
             runs the others without this error"
        ))
    })
}

/// Every rule in one query, over one scan of the lake (see `fused`).
pub fn query(set: &RuleSet) -> String {
    fused(&set.rules, &set.scope)
}

/// The rules fused: one scan keeps the events some rule may match, tests each detection's condition on them and
/// computes what the correlations need (`sigma_stream`); the detections' matches are read from it, and each
/// correlation counts its own events there with window functions. The session computes `sigma_stream` once for
/// all of its readers (`session::shared`); a correlation's windows sort only the events it counts.
///
/// The scan keeps an event when its name is one that the rules naming their events name (one look-up), or when
/// it meets the condition of a rule that names none, or one a correlation counts. A second scan, for the rules
/// that name their events, cost a second opening of every file; on a lake of small files that is most of a scan.
///
/// In a time range, the scan keeps the range's events, and those of the timespans the correlations look back
/// before it, which only the correlations count.
///
/// A scheduler's run ([`Changed::Only`]) scans twice: the detections the new data files alone ([`NEW_FILES`]), the
/// correlations the days their windows count on. A partition of gigabytes that a delivery added a file to is not
/// read for the detections, and the correlations' scan reads only their columns.
fn fused(rules: &[Rule], scope: &Scope) -> String {
    if rules.is_empty() {
        return format!(
            "SELECT CAST(NULL AS VARCHAR) AS rule_id, CAST(NULL AS VARCHAR) AS rule_title, \
             CAST(NULL AS VARCHAR) AS level, {EVENT_COLUMNS}, {NO_CORRELATION} FROM cloudtrail WHERE false"
        );
    }
    let mut names = BTreeSet::new();
    // What the scan keeps for the detections, and for the correlations.
    let (mut kept, mut counted) = (Vec::new(), Vec::new());
    let mut correlation_columns = Vec::new();
    let mut branches = Vec::new();
    let mut detections = Vec::new();
    // The conditions of the detections that name no events, each computed once (see `scanned`).
    let mut in_place = Vec::new();
    // The earliest event the correlations' scan keeps: the start (in a scheduler's run, not before the first
    // changed day), or a correlation's look-back before it.
    let mut from = match &scope.changed {
        Some(Changed::Only { days, .. }) => {
            scope.since.max(days.first().and_then(|d| DateTime::from_timestamp(i64::from(*d) * 86_400, 0)))
        }
        _ => scope.since,
    };
    let new_files = matches!(scope.changed, Some(Changed::Only { .. }));
    // The stream's columns, by expression (see `correlation_branch`).
    let mut columns: HashMap<String, String> =
        (EVENT_COLUMNS.split(", ")).filter(|c| !c.contains(' ')).map(|c| (c.to_string(), c.to_string())).collect();
    for r in rules {
        match &r.kind {
            RuleKind::Correlation(f) => {
                let earliest =
                    f.earliest.map(|t| DateTime::from_timestamp_micros(t).unwrap_or(DateTime::<Utc>::MIN_UTC));
                from = from.min(earliest);
                counted.push(f.counted.clone());
                branches.push(correlation_branch(r, f, &mut columns, &mut correlation_columns));
            }
            RuleKind::Detection(condition) => match &r.event_names {
                Some(n) => {
                    names.extend(n.iter().map(|n| literal(n)));
                    detections.push((r, condition.clone()));
                }
                None => {
                    let column = format!("k{}", in_place.len());
                    in_place.push(format!("kept_in_place({condition}) AS {column}"));
                    kept.push(column.clone());
                    detections.push((r, column));
                }
            },
        }
    }
    if !names.is_empty() {
        let names: Vec<String> = names.into_iter().collect();
        kept.insert(0, compile::never_null(&format!("lower(eventname) IN ({})", names.join(", "))));
    }
    // The detections' stream: the correlations' too, but in a scheduler's run.
    let detected_in = if new_files && !counted.is_empty() { NEW_STREAM } else { SHARED };
    let detections_from = if new_files { scope.since } else { from };
    let mut streams = Vec::new();
    let mut detected = None;
    // The detections' matches travel as one list (fifty boolean columns cost fifty columns moved per row).
    if !detections.is_empty() {
        let conditions: Vec<&str> = detections.iter().map(|(_, c)| c.as_str()).collect();
        detected = Some(format!("true_indices({}) AS detected", conditions.join(",\n      ")));
        let values: Vec<String> = detections
            .iter()
            .enumerate()
            .map(|(i, (r, _))| format!("({i}, {}, {}, {})", literal(&r.id), literal(&r.title), literal(&r.level)))
            .collect();
        let columns: Vec<String> = STREAM_COLUMNS.split(", ").map(|c| format!("m.{c}")).collect();
        branches.insert(
            0,
            format!(
                "SELECT r.rule_id, r.rule_title, r.level, {}, {NO_CORRELATION}\nFROM (SELECT *, unnest(detected) AS \
                 rule_index FROM {detected_in}{}) m\nJOIN (VALUES {}) AS r(rule_index, rule_id, rule_title, level) ON \
                 m.rule_index = r.rule_index",
                columns.join(", "),
                // Events the correlations look back to are not the detections' to report.
                match scope.since.filter(|s| detections_from < Some(*s)).and_then(not_before) {
                    Some(c) => format!(" WHERE {c}"),
                    None => String::new(),
                },
                values.join(", ")
            ),
        );
    }
    let mut scan = vec![EVENT_COLUMNS.to_string()];
    if let Some(Changed::Only { days, hours, .. }) = &scope.changed {
        if let Some(detected) = detected {
            let keep = std::mem::take(&mut kept);
            streams.push(stream(
                detected_in,
                &[EVENT_COLUMNS.to_string(), detected],
                &scanned(NEW_FILES, &in_place),
                scope.conditions(scope.since),
                keep,
            ));
        }
        if !counted.is_empty() {
            let mut conditions = scope.conditions(from);
            let read = match hours.as_ref().zip(counts_around(rules)).and_then(|(h, s)| stretches(h, s)) {
                Some(read) => {
                    conditions.push(read.condition);
                    read.days
                }
                // The days of the windows that give rows on the changed days and those their timespans reach after
                // them.
                None => {
                    let reach = reach_days(rules);
                    days.iter().flat_map(|d| (-reach..=reach).map(move |k| d.saturating_add(k))).collect()
                }
            };
            // On the partition column alone: the table lists no other day.
            let read: Vec<String> = read.iter().map(|d| correlate::date_literal(*d)).collect();
            conditions.push(format!("event_date IN ({})", read.join(", ")));
            scan.extend(correlation_columns);
            streams.push(stream(SHARED, &scan, TABLE, conditions, counted));
        }
    } else {
        scan.extend(correlation_columns);
        scan.extend(detected);
        kept.extend(counted);
        streams.push(stream(SHARED, &scan, &scanned(TABLE, &in_place), scope.conditions(from), kept));
    }
    format!("WITH {}\nSELECT * FROM (\n{}\n) sigma\n{ORDER}", streams.join(",\n"), branches.join("\nUNION ALL\n"))
}

/// A correlation's branch of the fused query, over the shared stream; the columns it adds to the stream's.
fn correlation_branch(
    r: &Rule,
    f: &correlate::Fused,
    columns: &mut HashMap<String, String>,
    added: &mut Vec<String>,
) -> String {
    let (events, rename) = windows(f, columns, added);
    // The rule's names come from a row of values, not as literals: constants of the branch, DataFusion leaves them
    // out of the branch's sort for the result's order, and Ballista's scheduler, which loses what is constant
    // across its exchanges, then fails its check of that order and the job never ends.
    format!(
        "SELECT r.rule_id, r.rule_title, r.level, {STREAM_COLUMNS}, {} AS correlation_group, {} AS correlation_count\n\
         FROM (\n  {events}\n) s\nCROSS JOIN (VALUES ({}, {}, {})) AS r(rule_id, rule_title, level)\nWHERE {}",
        rename.apply(&f.group_text),
        rename.apply(&f.count),
        literal(&r.id),
        literal(&r.title),
        literal(&r.level),
        rename.apply(&f.emits)
    )
}

/// Names of a correlation's columns that the stream holds under other names.
#[derive(Default)]
struct Renames(Vec<(regex::Regex, String)>);

impl Renames {
    fn apply(&self, sql: &str) -> String {
        self.0.iter().fold(sql.to_string(), |s, (w, to)| w.replace_all(&s, to.as_str()).into())
    }
}

/// A correlation's events (for a correlation of correlations, those of its rules and the alerts of the
/// correlations it counts) with its window columns, over the shared stream; the columns it adds to the stream's,
/// and the names its SQL reads them under.
///
/// A column whose expression the stream holds already (an event column, another correlation's) is read under that
/// name, renamed in the correlation's own SQL, whose literals are numbers and field names. The same values twice
/// under two names broke the correlations under Ballista: a window partitioned by one, over input sorted by the
/// other, fails in its executors ("Expects PARTITION BY expression to be ordered"). It is also a column less to
/// carry.
fn windows(f: &correlate::Fused, columns: &mut HashMap<String, String>, added: &mut Vec<String>) -> (String, Renames) {
    let mut rename = Renames::default();
    for entry in &f.scan {
        let Some((expr, name)) = entry.rsplit_once(" AS ") else {
            added.push(entry.clone());
            continue;
        };
        match columns.get(expr) {
            Some(existing) => {
                let word = regex::Regex::new(&format!(r"\b{}\b", regex::escape(name)))
                    .expect("a column name is a valid expression");
                rename.0.push((word, existing.clone()));
            }
            None => {
                columns.insert(expr.to_string(), name.to_string());
                added.push(entry.clone());
            }
        }
    }
    let counted = rename.apply(&f.counted_column);
    let mut events = format!("SELECT * FROM {SHARED} WHERE {counted}");
    if !f.children.is_empty() {
        // The input of the windows, under the correlation's own names: its rules' events (if it counts rules), then
        // each correlation's alerts.
        let own: Vec<String> = f.input.iter().map(|c| format!("{} AS {c}", rename.apply(c))).collect();
        let mut parts = Vec::new();
        if f.counts_events {
            parts.push(format!("SELECT {STREAM_COLUMNS}, {} FROM {SHARED} WHERE {counted}", own.join(", ")));
        }
        for child in &f.children {
            let (inner, inner_names) = windows(&child.fused, columns, added);
            let values = child.columns.iter().zip(&f.input);
            let values: Vec<String> =
                values.map(|(e, c)| format!("{} AS {c}", rename.apply(&inner_names.apply(e)))).collect();
            parts.push(format!(
                "SELECT {STREAM_COLUMNS}, {} FROM (\n  {inner}\n  ) a WHERE {}",
                values.join(", "),
                inner_names.apply(&child.fused.alerts)
            ));
        }
        events = parts.join("\n  UNION ALL\n  ");
        // Above the union, every column it reads has its own name.
        rename = Renames::default();
    }
    for layer in &f.layers {
        events = format!("SELECT *, {}\n  FROM (\n  {events}\n  ) s", rename.apply(&layer.join(",\n    ")));
    }
    (events, rename)
}

/// The table a stream reads, with the conditions of the detections that name no events as its columns.
///
/// The scan keeps an event that one of them holds for, and the kept events' matches are listed from them: written
/// in both places, each was computed over every event and again over the kept ones, and every text column went
/// through the filter for the keyword rule to search again; now only the columns the rules with event names read
/// do. That took a tenth off a directory's run on the narrow benchmark lake (0.67 s to 0.60 s). `kept_in_place`
/// stops the optimizer from writing the conditions back into the filter.
fn scanned(table: &str, in_place: &[String]) -> String {
    match in_place.is_empty() {
        true => table.to_string(),
        false => format!("(SELECT *, {} FROM {table}) AS events", in_place.join(",\n    ")),
    }
}

/// A stream of the fused query: `name AS (SELECT columns FROM table WHERE conditions AND (one of keep))`.
fn stream(name: &str, columns: &[String], table: &str, mut conditions: Vec<String>, keep: Vec<String>) -> String {
    conditions.push(match conditions.is_empty() {
        true => keep.join("\n    OR "),
        false => format!("({})", keep.join("\n    OR ")),
    });
    format!(
        "{name} AS (\n  SELECT {}\n  FROM {table}\n  WHERE {}\n)",
        columns.join(",\n    "),
        conditions.join("\n  AND ")
    )
}

/// The days, rounded up, that the longest timespan of the rules' correlations reaches: an event changes the windows
/// that far after it, and a window counts the events that far before it.
pub fn reach_days(rules: &[Rule]) -> i32 {
    (rules.iter())
        .filter_map(|r| match &r.kind {
            RuleKind::Correlation(f) => Some(f.span_days),
            RuleKind::Detection(_) => None,
        })
        .max()
        .unwrap_or(0)
}

/// Matches by rule, counted from the result's `rule_id` column as it is printed: what a team tuning its rules looks
/// at first (one noisy rule can be most of a run's rows).
#[derive(Debug, Default)]
pub struct Tally(HashMap<String, usize>);

/// How many rules the tally names, most matches first.
const TALLY_LINES: usize = 10;

impl Tally {
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let Some(column) = batch.column_by_name("rule_id") else { return Ok(()) };
        let ids = datafusion::arrow::compute::cast(column, &DataType::Utf8)?;
        for id in ids.as_string::<i32>().iter().flatten() {
            match self.0.get_mut(id) {
                Some(n) => *n += 1,
                None => {
                    self.0.insert(id.to_string(), 1);
                }
            }
        }
        Ok(())
    }

    /// The rules with matches, most first, each with its title; empty when none matched.
    pub fn report(&self, set: &RuleSet) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let mut counts: Vec<(&String, &usize)> = self.0.iter().collect();
        counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut s = String::from("sigma: matches by rule, most first:\n");
        for (id, n) in counts.iter().take(TALLY_LINES) {
            let title = set.rules.iter().find(|r| &r.id == *id).map_or("", |r| r.title.as_str());
            s.push_str(&format!("{n:>10}  {}\n", terminal_safe(&format!("{id}: {title}"))));
        }
        if counts.len() > TALLY_LINES {
            let more = counts.len() - TALLY_LINES;
            s.push_str(&format!("{:>10}  and {more} more {}\n", "…", if more == 1 { "rule" } else { "rules" }));
        }
        s
    }
}

/// The summary printed on standard error after a run, with the number of matches when it is known.
pub fn summary(set: &RuleSet, matches: Option<usize>) -> String {
    let mut s = format!("sigma: {} rule{} run", set.rules.len(), if set.rules.len() == 1 { "" } else { "s" });
    let correlations = set.rules.iter().filter(|r| matches!(r.kind, RuleKind::Correlation(_))).count();
    if correlations > 0 {
        s.push_str(&format!(" ({correlations} correlation{})", if correlations == 1 { "" } else { "s" }));
    }
    if let Some(n) = matches {
        s.push_str(&format!(", {n} match{}", if n == 1 { "" } else { "es" }));
    }
    if !set.scope.accounts.is_empty() {
        let plural = if set.scope.accounts.len() == 1 { "" } else { "s" };
        s.push_str(&format!(", account{plural} {}", set.scope.accounts.join(", ")));
    }
    match (set.scope.since, set.scope.until) {
        (Some(a), Some(b)) => s.push_str(&format!(", events from {} until {}", moment(a), moment(b))),
        (Some(a), None) => s.push_str(&format!(", events from {} on", moment(a))),
        (None, Some(b)) => s.push_str(&format!(", events before {}", moment(b))),
        (None, None) => {}
    }
    if !set.unsupported.is_empty() {
        s.push_str(&format!(", {} not supported", set.unsupported.len()));
    }
    if set.other_sources > 0 {
        s.push_str(&format!(", {} for other log sources", set.other_sources));
    }
    if set.below_level > 0 {
        s.push_str(&format!(", {} below the level", set.below_level));
    }
    s.push('\n');
    // Rule files come from anywhere (a shared repository, a download): their titles and text reach the terminal
    // escaped, as the events' strings do.
    for (file, title, what) in &set.unsupported {
        s.push_str(&format!("sigma: not supported: {}\n", terminal_safe(&format!("{file}: {title}: {what}"))));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection_of<'a>(set: &'a RuleSet, id: &str) -> &'a str {
        match &set.rules.iter().find(|r| r.id == id).expect("the rule runs").kind {
            RuleKind::Detection(c) => c,
            RuleKind::Correlation(_) => panic!("{id} is a detection"),
        }
    }

    #[test]
    fn filters_narrow_the_rules_they_name_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let rule = |id: &str, name: &str| {
            format!(
                "title: {id}\nid: {id}\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    \
                 eventName: {name}\n  condition: sel\n"
            )
        };
        std::fs::write(dir.path().join("rules.yml"), format!("{}---\n{}", rule("a", "RunInstances"), rule("b", "X")))
            .unwrap();
        std::fs::write(
            dir.path().join("filter.yml"),
            "title: not the lab\nlogsource:\n  product: aws\n  service: cloudtrail\nfilter:\n  rules: [a]\n  lab:\n    \
             recipientAccountId: '111122223333'\n  condition: not lab\n",
        )
        .unwrap();
        let set = load(&[dir.path().to_path_buf()], None, Scope::default()).unwrap();
        assert!(set.unsupported.is_empty(), "{:?}", set.unsupported);
        let a = detection_of(&set, "a");
        assert!(a.contains("runinstances") && a.contains("AND (NOT") && a.contains("111122223333"), "{a}");
        assert!(!detection_of(&set, "b").contains("111122223333"));
    }

    /// A chain of correlations runs up to its limit; one longer is reported for each correlation past it, and the
    /// longest that can run runs, counting the others.
    #[test]
    fn a_chain_of_correlations_runs_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut docs = vec![
            "title: r\nid: r\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    \
             eventName: ConsoleLogin\n  condition: sel\n"
                .to_string(),
        ];
        let mut previous = "r".to_string();
        for i in 1..=MAX_CHAIN + 2 {
            docs.push(format!(
                "title: c{i}\nname: c{i}\ncorrelation:\n  type: event_count\n  rules: [{previous}]\n  timespan: 1h\n  \
                 condition:\n    gte: 1\n"
            ));
            previous = format!("c{i}");
        }
        std::fs::write(dir.path().join("chain.yml"), docs.join("---\n")).unwrap();
        let set = load(&[dir.path().to_path_buf()], None, Scope::default()).unwrap();
        let refused: Vec<(&str, &str)> = set.unsupported.iter().map(|(_, t, why)| (t.as_str(), why.as_str())).collect();
        let past = (MAX_CHAIN + 1..=MAX_CHAIN + 2).map(|i| format!("c{i}"));
        assert_eq!(refused, past.map(|t| (t.leak() as &str, CHAIN_TOO_LONG)).collect::<Vec<_>>());
        let ran: Vec<&str> = set.rules.iter().map(|r| r.title.as_str()).collect();
        assert_eq!(ran, [format!("c{MAX_CHAIN}")], "the others are counted inside it");
    }

    /// A rule the parser refuses is reported by the parser's innermost reason.
    #[test]
    fn a_condition_nested_too_deep_is_reported_by_its_reason() {
        let rule = format!(
            "title: deep\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    eventName: A\n  \
             condition: {}sel{}\n",
            "(".repeat(200),
            ")".repeat(200)
        );
        let errors = rsigma_parser::parse_sigma_yaml(&rule).unwrap().errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].len() > 1000, "the parser's own message repeats itself: {}", errors[0].len());
        assert_eq!(parse_error(&errors[0]), "Condition parse error: condition nesting exceeds maximum depth (64)");
        assert_eq!(parse_error("YAML parse error: at line 2"), "YAML parse error: at line 2");
    }

    /// A scheduler's run: the detections read the new data files alone (the table the session narrows to them),
    /// from the start; with a correlation, a second scan reads the days its windows count on, the columns it needs
    /// alone, and gives a row per group and day, on the changed days and the days the timespan reaches.
    #[test]
    fn a_run_with_new_files_reads_them_and_what_their_windows_count() {
        let dir = tempfile::tempdir().unwrap();
        let head = "logsource:\n  product: aws\n  service: cloudtrail\n";
        let path = dir.path().join("a.yml");
        std::fs::write(
            &path,
            format!("title: a\nid: a\n{head}detection:\n  sel:\n    eventName: X\n  condition: sel\n"),
        )
        .unwrap();
        let key = PartitionKey { account: "111111111111".into(), day: 19_783 };
        let new = BTreeMap::from([(key.clone(), vec![format!("{}/part-b.parquet", key.dir())])]);
        let since = DateTime::parse_from_rfc3339("2024-02-01T00:00:00Z").unwrap().to_utc();
        let scope = Scope { changed: Some(Changed::only(new)), since: Some(since), ..Scope::default() };
        let sql = query(&load(std::slice::from_ref(&path), None, scope.clone()).unwrap());
        assert!(sql.starts_with(&format!("WITH {SHARED} AS (")), "{sql}");
        assert!(sql.contains(&format!("FROM {NEW_FILES}\n")) && !sql.contains("FROM cloudtrail"), "{sql}");
        assert!(sql.contains("event_date >= DATE '2024-02-01'"), "from the start: {sql}");

        std::fs::write(
            dir.path().join("n.yml"),
            format!("title: n\nid: n\n{head}detection:\n  sel:\n    errorCode: AccessDenied\n  timeframe: 2d\n  condition: sel | count() by sourceIPAddress > 3\n"),
        )
        .unwrap();
        let sql = query(&load(&[dir.path().to_path_buf()], None, scope.clone()).unwrap());
        let (detections, correlations) = sql.split_once(&format!("),\n{SHARED} AS (")).expect(&sql);
        assert!(detections.starts_with(&format!("WITH {NEW_STREAM} AS (")), "{sql}");
        assert!(detections.contains(&format!("FROM {NEW_FILES}\n")) && detections.contains("true_indices("), "{sql}");
        assert!(!detections.contains("errorcode"), "the correlation's events are not the detections': {sql}");
        assert!(correlations.contains("FROM cloudtrail\n") && !correlations.contains("true_indices("), "{sql}");
        assert!(correlations.contains(&format!("FROM {NEW_STREAM}) m")), "{sql}");
        // Two days of timespan: windows from two days before the changed day count, rows on it and two days after.
        assert!(correlations.contains("event_date >= DATE '2024-02-28'"), "{sql}");
        let days =
            ["2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02", "2024-03-03"].map(|d| format!("DATE '{d}'"));
        assert!(
            correlations.contains(&format!("  AND event_date IN ({})\n", days.join(", "))),
            "only these days: {sql}"
        );
        assert!(sql.contains("c1_d IN (DATE '2024-03-01', DATE '2024-03-02', DATE '2024-03-03')"), "{sql}");
        assert!(sql.contains("PARTITION BY sourceipaddress, c1_d)"), "a row per group and day: {sql}");

        // Once the run knows the new events' hours: the events within the timespan around them, on their days.
        let mut set = load(&[dir.path().to_path_buf()], None, scope).unwrap();
        assert_eq!(set.counts_around(), Some(2 * 86_400));
        let Some(Changed::Only { hours, .. }) = &mut set.scope.changed else { panic!("new files") };
        let ten = since.timestamp() / 3_600 + 29 * 24 + 10;
        *hours = Some(BTreeSet::from([ten, ten + 1, ten + 5]));
        let sql = query(&set);
        let correlations = sql.split_once(&format!("),\n{SHARED} AS (")).expect(&sql).1;
        let days =
            ["2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02", "2024-03-03"].map(|d| format!("DATE '{d}'"));
        assert!(correlations.contains(&format!("  AND event_date IN ({})\n", days.join(", "))), "{sql}");
        let stretch =
            "(eventtime >= TIMESTAMP '2024-02-28T10:00:00Z' AND eventtime < TIMESTAMP '2024-03-03T16:00:00Z')";
        assert!(correlations.contains(&format!("  AND ({stretch})\n")), "one stretch, merged: {sql}");
        assert_eq!(stretches(&BTreeSet::from([0, 10]), 1_800).unwrap().condition.matches("eventtime >=").count(), 2);
        assert!(stretches(&(0..1_000).map(|h| h * 10).collect(), 60).is_none(), "too many: whole days");
    }

    /// Every rule runs in one scan of the lake: the rules that name their events keep an event by one look-up of
    /// its name, a rule that names none by its condition, a correlation by its rules' conditions. The scan is the
    /// shared stream that the detections and each correlation read.
    #[test]
    fn all_rules_share_one_scan() {
        let dir = tempfile::tempdir().unwrap();
        let head = "logsource:\n  product: aws\n  service: cloudtrail\n";
        std::fs::write(
            dir.path().join("rules.yml"),
            format!(
                "title: a\nid: a\n{head}detection:\n  sel:\n    eventName: StopLogging\n  condition: sel\n---\n\
                 title: b\nid: b\n{head}detection:\n  sel:\n    eventName: [DeleteTrail, UpdateTrail]\n  condition: \
                 sel\n---\ntitle: k\nid: k\n{head}detection:\n  keywords:\n    - evil\n  condition: keywords\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("count.yml"),
            format!(
                "title: n\nid: n\n{head}detection:\n  sel:\n    errorCode: AccessDenied\n  condition: sel | count() \
                 by sourceIPAddress > 3\n"
            ),
        )
        .unwrap();
        let set = load(&[dir.path().to_path_buf()], None, Scope::default()).unwrap();
        let sql = query(&set);
        let scans: Vec<&str> = sql.split("FROM cloudtrail").skip(1).collect();
        assert_eq!(scans.len(), 1, "{sql}");
        let keep = ") AS events\n  WHERE ((lower(eventname) IN ('deletetrail', 'stoplogging', 'updatetrail')) IS TRUE)\n    \
                    OR k0\n    OR ";
        assert!(scans[0].trim_start().starts_with(keep), "{sql}");
        assert!(scans[0].split("\n)\n").next().unwrap().contains("'accessdenied'"), "{sql}");
        // The keyword rule's condition is computed once, in the scan, and read by its filter and by the matches.
        assert!(!sql.split(") AS k0").nth(1).unwrap().contains("evil"), "{sql}");
        let keyword = sql.split("SELECT *, kept_in_place(").nth(1).unwrap().trim_start_matches('(');
        assert!(keyword.starts_with("icontains(eventversion, 'evil')) IS TRUE) OR "), "{sql}");
        assert!(sql.contains(",\n      k0) AS detected"), "{sql}");
        // The detections and the correlation read the one stream; the correlation only the events it counts.
        assert_eq!(sql.matches("FROM sigma_stream").count(), 2, "{sql}");
        assert!(sql.contains("unnest(detected) AS rule_index FROM sigma_stream"), "{sql}");
        assert!(sql.contains("SELECT * FROM sigma_stream WHERE c0_in"), "{sql}");
        assert!(sql.contains("count(*) OVER (PARTITION BY sourceipaddress ORDER BY c0_t"), "{sql}");
        assert!(!sql.contains("sourceipaddress AS c0_g0"), "the stream has the column already: {sql}");
        assert!(sql.contains("WHERE ((c0_n > 3) AND c0_rn = c0_first)"), "{sql}");
        assert!(sql.contains("true_indices((((lower(eventname) = 'stoplogging')) IS TRUE),\n"), "{sql}");
    }

    /// A time range bounds the scan on the event's time and on the partitions' dates; the correlations' look-back
    /// widens it, and then the detections take only the range's events from it. Accounts bound the partitions.
    #[test]
    fn a_scope_bounds_the_scan_and_the_partitions_it_lists() {
        let dir = tempfile::tempdir().unwrap();
        let head = "logsource:\n  product: aws\n  service: cloudtrail\n";
        let detection =
            format!("title: a\nid: a\n{head}detection:\n  sel:\n    eventName: StopLogging\n  condition: sel\n");
        std::fs::write(dir.path().join("a.yml"), &detection).unwrap();
        let at = |s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let scope = Scope::new(Some(at("2024-01-01T00:05:00Z")), Some(at("2024-01-02T00:00:00Z")), vec![]).unwrap();
        let set = load(&[dir.path().to_path_buf()], None, scope.clone()).unwrap();
        let sql = query(&set);
        let bounds = "WHERE eventtime >= TIMESTAMP '2024-01-01T00:05:00Z'\n  AND event_date >= DATE '2024-01-01'\n  \
                      AND eventtime < TIMESTAMP '2024-01-02T00:00:00Z'\n  AND event_date <= DATE '2024-01-01'\n  AND (";
        assert!(sql.contains(bounds), "{sql}");
        assert!(sql.contains("FROM sigma_stream) m"), "no look-back, no second bound: {sql}");
        assert!(rule_sql(&set.rules[0], &set.scope).contains(&bounds.replace("AND (", "AND ")), "{sql}");

        std::fs::write(
            dir.path().join("n.yml"),
            format!(
                "{detection}---\ntitle: n\nid: n\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 10m\n  \
                     generate: true\n  condition:\n    gte: 2\n"
            ),
        )
        .unwrap();
        std::fs::remove_file(dir.path().join("a.yml")).unwrap();
        let set = load(&[dir.path().to_path_buf()], None, scope.clone()).unwrap();
        let sql = query(&set);
        assert!(
            sql.contains("WHERE eventtime >= TIMESTAMP '2023-12-31T23:55:00Z'\n  AND event_date >= DATE '2023-12-31'"),
            "{sql}"
        );
        assert!(sql.contains("FROM sigma_stream WHERE eventtime >= TIMESTAMP '2024-01-01T00:05:00Z') m"), "{sql}");

        let empty = Scope::new(scope.until, scope.since, vec![]).unwrap_err().to_string();
        assert!(empty.contains("--since 2024-01-02T00:00:00Z is not before --until 2024-01-01T00:05:00Z"), "{empty}");

        let accounts = Scope { accounts: vec!["111122223333".into(), "o'brien".into()], ..Scope::default() };
        let set = load(&[dir.path().to_path_buf()], None, accounts).unwrap();
        let sql = query(&set);
        assert!(sql.contains("WHERE account_id IN ('111122223333', 'o''brien')\n  AND ("), "{sql}");
        assert!(summary(&set, None).contains(", accounts 111122223333, o'brien"));
    }

    #[test]
    fn old_aggregations_are_taken_apart_before_parsing() {
        let (rest, aggregation, timeframe) = split_aggregation(
            "title: t\ndetection:\n  sel:\n    eventName: X\n  timeframe: 5m\n  condition: sel | count() by a > 3\n",
        )
        .unwrap();
        assert_eq!(aggregation, " count() by a > 3");
        assert_eq!(timeframe.as_deref(), Some("5m"));
        assert!(rest.contains("condition: sel\n") && !rest.contains("timeframe"), "{rest}");
        assert!(split_aggregation("title: t\ndetection:\n  sel:\n    a|contains: x\n  condition: sel\n").is_none());
    }
}
