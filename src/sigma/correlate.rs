//! Sigma correlation rules (`event_count`, `value_count`, `value_sum`, `value_avg`, `value_median`,
//! `value_percentile`, `temporal`, `temporal_ordered`) and the older `| count() by … > N` aggregations, compiled
//! into SQL window functions over the events their rules match.
//!
//! The meaning, the same for every kind: the events of the referenced rules are grouped by the `group-by` fields;
//! at each event, the window is the timespan that ends at it, both ends included (`RANGE … PRECEDING AND CURRENT
//! ROW`, so events at the same instant are in each other's windows); the condition is tested on every such window.
//! A group gives one row: the event at which its condition first held, and the largest count among the windows
//! where it held. A `tumbling` window restarts at each multiple of the timespan since the Unix epoch; an old
//! aggregation without `timeframe` has one window per group, from its first event on.
//!
//! A run from a start time (`--since`) reports only events from it on, but a window that ends there still holds
//! the events of its timespan before it: the counts are those of a run over all of the lake. A window without a
//! timespan starts at the start time.
//!
//! A scheduler's run (`--checkpoint`) gives a row per group and UTC day instead, on the days its new events can
//! change: their own, and those their timespan reaches after them; a window without a timespan counts one day.
//!
//! Under field aliases each rule has its own fields for a group-by or measured field, and an event counts once in
//! each group its rules give it. A correlation can count another's alerts (each group and instant where that one's
//! condition holds) as the events of a rule.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use rsigma_parser::{
    ConditionExpr, ConditionOperator, CorrelationCondition, CorrelationRule, CorrelationType, WindowMode,
};

use super::compile::{self, Compiled, Unsupported, unsupported};
use super::literal;

/// A rule a correlation counts: its name as the correlation refers to it, its SQL condition, and the fields its
/// events have under the correlation's field aliases (`aliases:`; alias, field).
pub struct Input<'a> {
    pub name: &'a str,
    pub condition: &'a str,
    pub aliases: Vec<(&'a str, &'a str)>,
    /// A correlation it counts instead of a rule's events (a correlation of correlations): its alerts, each group
    /// and instant where its condition holds, are the events it gives (`condition` is then `false`).
    pub alerts: Option<&'a Fused>,
}

impl<'a> Input<'a> {
    /// A rule's events, without aliases.
    pub fn rule(name: &'a str, condition: &'a str) -> Self {
        Input { name, condition, aliases: Vec::new(), alerts: None }
    }

    /// The field that a group-by or condition field names in this rule's events: its alias's mapping, or itself (a
    /// rule an alias does not map, as pySigma reads it).
    fn field<'b>(&'b self, name: &'b str) -> &'b str {
        self.aliases.iter().find(|(alias, _)| *alias == name).map_or(name, |(_, field)| field)
    }
}

/// What is measured in each window.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// Events.
    Events,
    /// Distinct non-null values of a field.
    Values(String),
    /// The sum, or the mean, of a field's values that are numbers (`value_sum`, `value_avg`); none, no measure.
    Sum(String),
    Mean(String),
    /// A percentile (0 to 100) of a field's values that are numbers, between the two nearest ranks as pySigma
    /// interpolates it (`value_percentile`; `value_median` is the 50th).
    Percentile(String, u64),
    /// Which of the referenced rules matched: all of them, at least N, or a condition over their names.
    Rules(Option<ConditionExpr>),
    /// Every referenced rule matched, in the order of the list: an event of each, each strictly later than the one
    /// of the rule before (`temporal_ordered`).
    Ordered,
    /// At least this many of the referenced rules matched in the order of the list, each strictly later than the
    /// one before (`temporal_ordered` with `gte`/`gt`, as pySigma reads it: some of them, in order, none between
    /// them required).
    OrderedAtLeast(usize),
}

impl Measure {
    /// The field whose numbers a value measure (sum, mean, percentile) is of.
    fn numbers_of(&self) -> Option<&str> {
        match self {
            Measure::Sum(f) | Measure::Mean(f) | Measure::Percentile(f, _) => Some(f),
            _ => None,
        }
    }

    /// Whether it measures which rules matched (so each event carries the rules it met).
    fn of_rules(&self) -> bool {
        matches!(self, Measure::Rules(_) | Measure::Ordered | Measure::OrderedAtLeast(_))
    }

    /// The field whose values are measured: distinct values, or numbers.
    fn values_of(&self) -> Option<&str> {
        match self {
            Measure::Values(f) => Some(f),
            _ => self.numbers_of(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    Sliding(u64),
    Tumbling(u64),
    /// From the group's first event on (an old aggregation without `timeframe`).
    Unbounded,
}

/// A correlation, ready to be turned into SQL once its inputs are known.
#[derive(Debug, Clone)]
pub struct Spec {
    pub group_by: Vec<String>,
    pub measure: Measure,
    pub window: Window,
    /// Predicates on the window's count, all of which must hold.
    pub predicates: Vec<(ConditionOperator, u64)>,
}

impl Spec {
    /// Its timespan in seconds (none without one).
    fn span_seconds(&self) -> u64 {
        match self.window {
            Window::Sliding(s) | Window::Tumbling(s) => s,
            Window::Unbounded => 0,
        }
    }

    /// Its timespan in microseconds.
    pub fn span_micros(&self) -> i64 {
        i64::try_from(self.span_seconds() * TIME_PER_SECOND).unwrap_or(i64::MAX)
    }
}

/// Reads a correlation rule, refusing what has no faithful translation.
pub fn spec(c: &CorrelationRule) -> Compiled<Spec> {
    let seconds = span_seconds(c.timespan.seconds, &format!("a timespan of {}", c.timespan.original))?;
    let window = match c.window {
        WindowMode::Sliding => Window::Sliding(seconds),
        WindowMode::Tumbling => Window::Tumbling(seconds),
        WindowMode::Session => return unsupported("correlation window: session"),
    };
    let (measure, predicates) = match (&c.correlation_type, &c.condition) {
        (CorrelationType::EventCount, CorrelationCondition::Threshold { predicates, field: None, .. }) => {
            (Measure::Events, predicates.clone())
        }
        (CorrelationType::ValueCount, CorrelationCondition::Threshold { predicates, field: Some(f), .. })
            if f.len() == 1 =>
        {
            (Measure::Values(f[0].clone()), predicates.clone())
        }
        (CorrelationType::ValueSum, CorrelationCondition::Threshold { predicates, field: Some(f), .. })
            if f.len() == 1 =>
        {
            (Measure::Sum(f[0].clone()), predicates.clone())
        }
        (CorrelationType::ValueAvg, CorrelationCondition::Threshold { predicates, field: Some(f), .. })
            if f.len() == 1 =>
        {
            (Measure::Mean(f[0].clone()), predicates.clone())
        }
        (CorrelationType::ValueMedian, CorrelationCondition::Threshold { predicates, field: Some(f), percentile })
            if f.len() == 1 && percentile.is_none_or(|p| p == 50) =>
        {
            (Measure::Percentile(f[0].clone(), 50), predicates.clone())
        }
        // The parser would take 50 for a missing percentile; pySigma refuses the rule, and so does trailsql.
        (
            CorrelationType::ValuePercentile,
            CorrelationCondition::Threshold { predicates, field: Some(f), percentile: Some(p) },
        ) if f.len() == 1 && *p <= 100 => (Measure::Percentile(f[0].clone(), *p), predicates.clone()),
        (CorrelationType::ValuePercentile, CorrelationCondition::Threshold { field: Some(f), .. }) if f.len() == 1 => {
            return unsupported("value_percentile without a percentile from 0 to 100");
        }
        (CorrelationType::ValueMedian, CorrelationCondition::Threshold { percentile: Some(_), .. }) => {
            return unsupported("value_median with a percentile other than 50");
        }
        (
            CorrelationType::ValueSum
            | CorrelationType::ValueAvg
            | CorrelationType::ValueMedian
            | CorrelationType::ValuePercentile,
            _,
        ) => {
            return unsupported(format!("{} without exactly one condition field", c.correlation_type.as_str()));
        }
        (CorrelationType::EventCount, _) => {
            return unsupported("event_count with a field or an expression as condition");
        }
        (CorrelationType::ValueCount, _) => return unsupported("value_count without exactly one condition field"),
        // The parser gives a temporal rule without a condition as `gte: 1`; the specification's meaning is that
        // every referenced rule matched in the window.
        (CorrelationType::Temporal, CorrelationCondition::Threshold { predicates, field: None, .. })
            if predicates == &[(ConditionOperator::Gte, 1)] =>
        {
            (Measure::Rules(None), Vec::new())
        }
        (CorrelationType::Temporal, CorrelationCondition::Threshold { predicates, field: None, .. }) => {
            (Measure::Rules(None), predicates.clone())
        }
        (CorrelationType::Temporal, CorrelationCondition::Extended(e)) => (Measure::Rules(Some(e.clone())), Vec::new()),
        // `gte: 1` is also how the parser gives a missing condition: every rule, in order.
        (CorrelationType::TemporalOrdered, CorrelationCondition::Threshold { predicates, field: None, .. }) => {
            match predicates.as_slice() {
                [(ConditionOperator::Gte, 1)] => (Measure::Ordered, Vec::new()),
                [(ConditionOperator::Gte, n)] => (Measure::OrderedAtLeast(at_most_usize(*n)), Vec::new()),
                [(ConditionOperator::Gt, n)] => {
                    (Measure::OrderedAtLeast(at_most_usize(n.saturating_add(1))), Vec::new())
                }
                _ => return unsupported(ORDERED_CONDITION),
            }
        }
        (CorrelationType::TemporalOrdered, _) => return unsupported(ORDERED_CONDITION),
        (other, _) => return unsupported(format!("correlation type {}", other.as_str())),
    };
    Ok(Spec { group_by: c.group_by.clone(), measure, window, predicates })
}

const ORDERED_CONDITION: &str = "temporal_ordered with a condition other than gte or gt (rules in order)";

fn at_most_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The older aggregation after a condition's `|`: `count([field]) [by field] OP N`, under the rule's `timeframe`.
pub fn legacy(aggregation: &str, timeframe: Option<&str>) -> Compiled<Spec> {
    static AGGREGATION: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?i)^\s*count\s*\(\s*([\w.]*)\s*\)\s*(?:by\s+([\w.]+)\s*)?(<=|>=|==|=|<|>)\s*(\d+)\s*$")
            .expect("a valid expression")
    });
    let Some(caps) = AGGREGATION.captures(aggregation) else {
        return unsupported(format!(
            "aggregation `{}` (only count() and count(field), by one field)",
            aggregation.trim()
        ));
    };
    let op = match &caps[3] {
        "<" => ConditionOperator::Lt,
        "<=" => ConditionOperator::Lte,
        ">" => ConditionOperator::Gt,
        ">=" => ConditionOperator::Gte,
        _ => ConditionOperator::Eq,
    };
    let n: u64 = caps[4].parse().map_err(|_| Unsupported(format!("the number in `{aggregation}`")))?;
    let window = match timeframe {
        None => Window::Unbounded,
        Some(t) => {
            let span = rsigma_parser::Timespan::parse(t).map_err(|_| Unsupported(format!("timeframe {t}")))?;
            Window::Sliding(span_seconds(span.seconds, &format!("timeframe {t}"))?)
        }
    };
    let measure = match &caps[1] {
        "" => Measure::Events,
        field => Measure::Values(field.to_string()),
    };
    Ok(Spec {
        group_by: caps.get(2).map(|g| vec![g.as_str().to_string()]).unwrap_or_default(),
        measure,
        window,
        predicates: vec![(op, n)],
    })
}

/// The longest timespan a window may have: 100 years. A tumbling window's timespan is an interval of nanoseconds
/// (`date_bin`), which overflows past 292 years, and a sliding window's is subtracted from the windows' numeric
/// time ([`TIME_NUMBER`]): past such bounds the query fails, and with it every rule of the run, not one.
const MAX_SPAN_SECONDS: u64 = 100 * 366 * 24 * 3600;

/// A timespan's seconds, if a window can have them: more than none, at most [`MAX_SPAN_SECONDS`].
fn span_seconds(seconds: u64, what: &str) -> Compiled<u64> {
    match seconds {
        0 => unsupported(what.to_string()),
        s if s > MAX_SPAN_SECONDS => unsupported(format!("{what} (more than 100 years)")),
        s => Ok(s),
    }
}

fn compare(op: ConditionOperator) -> &'static str {
    match op {
        ConditionOperator::Lt => "<",
        ConditionOperator::Lte => "<=",
        ConditionOperator::Gt => ">",
        ConditionOperator::Gte => ">=",
        ConditionOperator::Eq => "=",
        ConditionOperator::Neq => "<>",
    }
}

/// A correlation's part of the fused query: columns the scan adds to each event, then window columns over the
/// events it counts, layer by layer, down to whether an event is the row the correlation gives. Every column it
/// names starts with its prefix, so that any number of correlations share the one scan.
#[derive(Debug, Clone, Default)]
pub struct Fused {
    /// Whether the scan must keep an event: one of the correlation's rules matches it.
    pub counted: String,
    /// The scan's column that says so: the correlation's windows are over the events where it is true.
    pub counted_column: String,
    /// Columns of the scan (`expr AS name`): the group-by fields, the counted value, each rule's match.
    pub scan: Vec<String>,
    /// Columns over the scan's events, in layers, each over the one before: each event's place in its group (by
    /// time, then event ID); the measure in the window that ends at each event (a layer or more); the group's
    /// largest measure where the condition holds, and the place of the first event where it holds. The first sort,
    /// by group, time and event ID, serves every later window: the stream is sorted once per correlation.
    pub layers: Vec<Vec<String>>,
    /// Whether an event is the row of its group.
    pub emits: String,
    /// The group, as text, and the count, for that row.
    pub group_text: String,
    pub count: String,
    /// In a run from a start time, the time of the earliest event its windows may count (microseconds since the
    /// epoch): its timespan before the start.
    pub earliest: Option<i64>,
    /// Its timespan in whole days, rounded up (none without one); with the longest of the correlations it counts.
    pub span_days: i32,
    /// In a scheduler's run, how far around the new events (seconds) the events its rows need lie: a window
    /// with a timespan whose condition more events can only make hold (`gt`, `gte`, rules seen) holds on a part
    /// of its events only if it holds on all of them, so the windows that hold and were not given before all hold
    /// a new event and lie within their timespan of it. `None`: whole days (no timespan, or a condition such as
    /// `lt` that more events can undo).
    pub around: Option<u64>,
    /// Its group-by fields, as named (aliases included), and the columns of their values, in order.
    pub group_by: Vec<(String, String)>,
    /// Where its condition holds at a new instant of a group: an alert, for a correlation that counts it.
    pub alerts: String,
    /// The columns its windows read from their input (time, group, rules met, day): for a correlation that counts
    /// correlations, the input is the events of its rules (these columns of the scan) and the alerts of each of
    /// its correlations (these columns from [`Child::columns`]).
    pub input: Vec<String>,
    pub children: Vec<Child>,
    /// Whether it counts the events of rules, and not only correlations' alerts.
    pub counts_events: bool,
}

/// A correlation a correlation counts.
#[derive(Debug, Clone)]
pub struct Child {
    pub fused: Box<Fused>,
    /// The values of the counting correlation's [`Fused::input`] columns in each of its alerts, over its columns.
    pub columns: Vec<String>,
}

/// The event's time as the windows order by it: a number, microseconds since the epoch (the lake's `eventtime` is
/// a microsecond timestamp). Ordered by the timestamp itself, a window frame `RANGE … PRECEDING` found its bounds
/// with interval arithmetic on timestamp values built row by row, a tenth of a Sigma directory's time on the
/// narrow benchmark lake; on numbers it is half that.
const TIME_NUMBER: &str = "CAST(eventtime AS BIGINT)";
const TIME_PER_SECOND: u64 = 1_000_000;

/// Where a correlation gives its rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reporting<'a> {
    /// At events from this time on (microseconds since the epoch).
    pub since: Option<i64>,
    /// A scheduler's run (`--checkpoint`): a row per group and UTC day, on the days (since the epoch) whose windows
    /// the new events of the changed days can reach (each such day, and its timespan after it); `Some(None)`: on
    /// every day.
    pub per_day: Option<Option<&'a BTreeSet<i32>>>,
    /// Its alerts are counted by another correlation ([`Fused::alerts`]).
    pub alerts: bool,
}

impl Reporting<'_> {
    /// The first instant a row may be given at: the start, or the first changed day.
    pub fn start(&self) -> Option<i64> {
        let first_day = match self.per_day {
            Some(Some(changed)) => changed.first().map(|d| i64::from(*d).saturating_mul(MICROS_PER_DAY)),
            _ => None,
        };
        match (self.since, first_day) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

pub(super) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The fused form of one correlation, its columns named `{prefix}_…`; in a run from a start time (microseconds
/// since the epoch), counting from its timespan before and giving a row at an event from the start on.
pub fn fused(spec: &Spec, inputs: &[Input], prefix: &str, reporting: Reporting) -> Compiled<Fused> {
    let col = |name: &str| format!("{prefix}_{name}");
    if inputs.is_empty() {
        return unsupported("a correlation without rules");
    }
    // Each rule's group-by values and measured value, read through the aliases (of the rules whose events it counts,
    // not the correlations whose alerts it counts).
    let keys: Vec<Key> =
        inputs.iter().filter(|r| r.alerts.is_none()).map(|r| Key::of(spec, r)).collect::<Compiled<_>>()?;
    // Aliases that give the rules different fields: an event counts once for each distinct group and value that the
    // rules it meets give it, as pySigma counts it. Each such (event, group, value) is a row of the windows' input.
    let expanded = keys.iter().any(|k| *k != keys[0]);
    let chained = keys.len() < inputs.len();
    if chained && expanded {
        return unsupported("field aliases in a correlation of correlations");
    }
    if chained && spec.measure.values_of().is_some() {
        return unsupported("a value measure of a correlation's alerts");
    }
    let g_cols: Vec<String> = (0..spec.group_by.len()).map(|i| col(&format!("g{i}"))).collect();
    let counted_col = col("in");
    let any: Vec<&str> = inputs.iter().map(|r| r.condition).collect();
    let counted = format!("({})", any.join(" OR "));
    let t_col = col("t");
    let span = spec.span_seconds();
    // The days the run gives rows on: a changed day and those its timespan reaches after it. A window without a
    // timespan starts each day (as it starts at `--since` in a run from a start time).
    let day_col = col("d");
    let span_days = i32::try_from(span.div_ceil(86_400)).unwrap_or(i32::MAX);
    let days = match reporting.per_day {
        Some(Some(changed)) => {
            let reached: BTreeSet<i32> =
                changed.iter().flat_map(|d| (0..=span_days).map(move |k| d.saturating_add(k))).collect();
            let list: Vec<String> = reached.iter().map(|d| date_literal(*d)).collect();
            Some(if list.is_empty() { "false".to_string() } else { format!("{day_col} IN ({})", list.join(", ")) })
        }
        _ => None,
    };
    let since = reporting.start();
    // Saturating: a start near the limits of time gives no lower bound rather than a wrapped one.
    let earliest = since.map(|t| t.saturating_sub(spec.span_micros()));
    let h_cols: Vec<String> = (0..inputs.len()).map(|i| col(&format!("h{i}"))).collect();
    let v_col = col("v");
    let slot = col("slot");
    // The scan's columns, none for a correlation that counts alerts alone (its windows read those of its
    // correlations, `Child::columns`); the columns that say which rules an event (of the windows' input) met, and
    // the layers that make the input.
    let mut scan = Vec::new();
    let (met, mut layers) = match keys.first() {
        None => (h_cols.clone(), Vec::new()),
        Some(key) => {
            // An event without a value for a group-by field is in no group, as pySigma, Splunk's `stats … by` and
            // Elastic's terms leave it out.
            let with_groups = |condition: &str, key: &Key| {
                let mut all = vec![condition.to_string()];
                all.extend(key.groups.iter().map(|g| format!("({g} IS NOT NULL)")));
                all
            };
            let mut counted_here = match expanded {
                false => with_groups(&counted, key),
                true => {
                    let each: Vec<String> = (inputs.iter().zip(&keys))
                        .map(|(r, k)| format!("({})", with_groups(r.condition, k).join(" AND ")))
                        .collect();
                    vec![format!("({})", each.join(" OR "))]
                }
            };
            counted_here.extend(earliest.map(|t| format!("{TIME_NUMBER} >= {t}")));
            let counted_here = match counted_here.as_slice() {
                [one] => one.clone(),
                _ => format!("({})", counted_here.join(" AND ")),
            };
            scan.push(format!("{} AS {counted_col}", compile::never_null(&counted_here)));
            scan.push(format!("{TIME_NUMBER} AS {t_col}"));
            if reporting.per_day.is_some() {
                scan.push(format!("event_date AS {day_col}"));
            }
            match expanded {
                false => {
                    scan.extend(key.groups.iter().zip(&g_cols).map(|(e, c)| format!("{e} AS {c}")));
                    if spec.measure.of_rules() {
                        scan.extend(inputs.iter().zip(&h_cols).map(|(r, h)| format!("{} AS {h}", r.condition)));
                    }
                    scan.extend(key.value.as_ref().map(|v| format!("{v} AS {v_col}")));
                    (h_cols.clone(), Vec::new())
                }
                true => expansion(spec, inputs, &keys, &mut scan, &col),
            }
        }
    };
    let mut partition = g_cols.clone();
    let group = partition_by(&partition);
    let group = group.trim_end();
    let frame = match spec.window {
        Window::Sliding(s) => format!("RANGE BETWEEN {} PRECEDING AND CURRENT ROW", s * TIME_PER_SECOND),
        Window::Tumbling(s) => {
            partition.push(format!("date_bin(INTERVAL '{s} seconds', eventtime, TIMESTAMP '1970-01-01T00:00:00Z')"));
            "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW".to_string()
        }
        Window::Unbounded => {
            if reporting.per_day.is_some() {
                partition.push(day_col.clone());
            }
            "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW".to_string()
        }
    };
    let w = format!("OVER ({}ORDER BY {t_col} {frame})", partition_by(&partition));
    let n_col = col("n");
    let mut tests: Vec<String> = Vec::new();
    // A measure that is one window aggregate of the events or of their values (`v`).
    let one = |aggregate: String| (vec![vec![format!("{aggregate} {w} AS {n_col}")]], n_col.clone());
    let v = &v_col;
    // The latest start of a chain that ended by this event, within the window that ends at it.
    let chain_within = |start: &str| match spec.window {
        Window::Sliding(s) => format!("{start} >= {t_col} - {}", s * TIME_PER_SECOND),
        Window::Tumbling(_) | Window::Unbounded => format!("{start} IS NOT NULL"),
    };
    let (measures, n) = match &spec.measure {
        // DataFusion searches each row's RANGE frame through `ScalarValue`s (1.4 µs a row); `count_within` counts
        // the same rows with two binary searches in the partition's sorted times.
        Measure::Events => match spec.window {
            Window::Sliding(s) => {
                let over = format!("OVER ({})", partition_by(&partition).trim_end());
                let n = format!("count_within({t_col}, {}) {over} AS {n_col}", s * TIME_PER_SECOND);
                (vec![vec![n]], n_col.clone())
            }
            Window::Tumbling(_) | Window::Unbounded => one("count(*)".into()),
        },
        Measure::Values(_) => one(format!("count(DISTINCT {v})")),
        Measure::Sum(_) => one(format!("sum({v})")),
        Measure::Mean(_) => one(format!("avg({v})")),
        Measure::Percentile(_, p) => one(format!("window_percentile({v}, {:?})", *p as f64 / 100.0)),
        Measure::Ordered => {
            let (layers, start) = ordered(&met, &t_col, &partition_by(&partition), &col);
            tests.push(chain_within(&start));
            (layers, inputs.len().to_string())
        }
        Measure::OrderedAtLeast(k) if *k < 1 || *k > inputs.len() => {
            return unsupported(format!("temporal_ordered needing {k} of its {} rules", inputs.len()));
        }
        Measure::OrderedAtLeast(k) => {
            let (mut layers, start) = ordered_at_least(&met, *k, &t_col, &partition_by(&partition), &col);
            tests.push(chain_within(&start));
            // The count is of the rules seen in the window, as pySigma gives it.
            let (present, _, n) = rules_present(&met, &w, &col);
            layers.push(present);
            (layers, n)
        }
        Measure::Rules(expr) => {
            let (present, p_cols, n) = rules_present(&met, &w, &col);
            match expr {
                Some(e) => tests.push(rules_condition(e, inputs, &p_cols)?),
                None if spec.predicates.is_empty() => tests.push(format!("{n} = {}", inputs.len())),
                None => {}
            }
            (vec![present], n)
        }
    };
    tests.extend(spec.predicates.iter().map(|(op, k)| format!("{n} {} {k}", compare(*op))));
    let test = if tests.is_empty() { "true".to_string() } else { tests.join(" AND ") };
    // Where the condition holds at an event the run reports.
    let mut holds = vec![test];
    holds.extend(since.map(|t| format!("{t_col} >= {t}")));
    holds.extend(days);
    let holds = format!("({})", holds.join(" AND "));
    // The row of a group, or of a group's day.
    let emitted = match reporting.per_day {
        Some(_) => partition_by(&[g_cols.clone(), vec![day_col.clone()]].concat()),
        None => group.to_string(),
    };
    let emitted = emitted.trim_end();
    let (order, count, first) = (col("rn"), col("count"), col("first"));
    // Under aliases an event can be twice in a group, with two values.
    let tie = if expanded { format!(", {slot}") } else { String::new() };
    layers.push(vec![format!("row_number() OVER ({group} ORDER BY {t_col}, eventid{tie}) AS {order}")]);
    layers.extend(measures);
    // The count a row reports is a whole number: a sum, a mean or a percentile is rounded (the condition tests it
    // exactly).
    let reported = match spec.measure.numbers_of() {
        Some(_) => format!("CAST(round({n}) AS BIGINT)"),
        None => n.clone(),
    };
    layers.push(vec![
        format!("max(CASE WHEN {holds} THEN {reported} END) OVER ({emitted}) AS {count}"),
        format!("min(CASE WHEN {holds} THEN {order} END) OVER ({emitted}) AS {first}"),
    ]);
    let group_text = if spec.group_by.is_empty() {
        "''".to_string()
    } else {
        let parts: Vec<String> = spec
            .group_by
            .iter()
            .zip(&g_cols)
            .map(|(name, c)| format!("{} || {c}", literal(&format!("{name}="))))
            .collect();
        format!("concat_ws(', ', {})", parts.join(", "))
    };
    let emits = format!("({holds} AND {order} = {first})");
    // An alert is a group and an instant where the condition holds: the events of one instant share their window.
    let alerts = match reporting.alerts {
        false => String::new(),
        true => {
            let new = col("new");
            let last = layers.last_mut().expect("the layer of the group's row");
            last.push(format!("(lag({t_col}) OVER ({group} ORDER BY {order}) IS DISTINCT FROM {t_col}) AS {new}"));
            format!("({holds} AND {new})")
        }
    };
    // The columns the windows read, and their values in each alert of a correlation counted.
    let mut input = vec![t_col.clone()];
    input.extend(g_cols.iter().cloned());
    if reporting.per_day.is_some() {
        input.push(day_col.clone());
    }
    if spec.measure.of_rules() {
        input.extend(h_cols.iter().cloned());
    }
    let mut children = Vec::new();
    for (j, r) in inputs.iter().enumerate() {
        let Some(child) = r.alerts else { continue };
        let mut columns = vec![child.input[0].clone()];
        for g in &spec.group_by {
            let name = r.field(g);
            match child.group_by.iter().find(|(n, _)| n == name) {
                Some((_, c)) => columns.push(c.clone()),
                None => {
                    return unsupported(format!("grouping by {name}, which correlation {} does not group by", r.name));
                }
            }
        }
        if reporting.per_day.is_some() {
            // The partitions' day is the UTC date of the event's time.
            columns.push("CAST(eventtime AS DATE)".into());
        }
        if spec.measure.of_rules() {
            columns.extend((0..inputs.len()).map(|k| (k == j).to_string()));
        }
        children.push(Child { fused: Box::new(child.clone()), columns });
    }
    let earliest = children.iter().filter_map(|c| c.fused.earliest).chain(earliest).min();
    let span_days = span_days.saturating_add(children.iter().map(|c| c.fused.span_days).max().unwrap_or(0));
    let counted = match chained {
        false => counted,
        true => {
            let each: Vec<&str> = children.iter().map(|c| c.fused.counted.as_str()).collect();
            format!("({counted} OR {})", each.join(" OR "))
        }
    };
    // A sum of numbers that may be negative, a mean or a percentile need not grow with more events.
    let grows = spec.predicates.iter().all(|(op, _)| matches!(op, ConditionOperator::Gt | ConditionOperator::Gte))
        && !matches!(spec.measure, Measure::Rules(Some(_)))
        && spec.measure.numbers_of().is_none();
    // The alerts of a correlation counted lie further back: whole days.
    let around = match spec.window {
        Window::Sliding(s) | Window::Tumbling(s) if grows && !chained => Some(s),
        _ => None,
    };
    Ok(Fused {
        counted,
        counted_column: counted_col,
        scan,
        layers,
        emits,
        group_text,
        count,
        earliest,
        span_days,
        around,
        group_by: spec.group_by.iter().cloned().zip(g_cols).collect(),
        alerts,
        input,
        children,
        counts_events: !keys.is_empty(),
    })
}

/// Under aliases that give the rules different fields: the scan's columns of each rule's match, group and value
/// (`h{j}`, `g{i}_{j}`, `v_{j}`), and the layers that make a row (`slot`) of each distinct group and value that the
/// rules an event meets give it, with that row's group (`g{i}`), value (`v`) and, for the rules measures, the rules
/// that gave it that group (`x{k}`, whose names are given first).
fn expansion(
    spec: &Spec,
    inputs: &[Input],
    keys: &[Key],
    scan: &mut Vec<String>,
    col: &dyn Fn(&str) -> String,
) -> (Vec<String>, Vec<Vec<String>>) {
    let (h, slot) = (|j: usize| col(&format!("h{j}")), col("slot"));
    let g = |i: usize, j: usize| col(&format!("g{i}_{j}"));
    let v = |j: usize| col(&format!("v_{j}"));
    let (groups, valued) = (spec.group_by.len(), keys[0].value.is_some());
    for (j, (r, key)) in inputs.iter().zip(keys).enumerate() {
        scan.push(format!("{} AS {}", r.condition, h(j)));
        scan.extend(key.groups.iter().enumerate().map(|(i, e)| format!("{e} AS {}", g(i, j))));
        scan.extend(key.value.as_ref().map(|e| format!("{e} AS {}", v(j))));
    }
    // Rule k gives the event the group and value that rule j gives it.
    let same = |k: usize, j: usize| {
        let mut all = vec![h(k)];
        all.extend((0..groups).map(|i| format!("{} = {}", g(i, k), g(i, j))));
        if valued {
            all.push(format!("{} IS NOT DISTINCT FROM {}", v(k), v(j)));
        }
        compile::never_null(&all.join(" AND "))
    };
    // An event's row for rule j: it meets j, has j's group, and no rule before j gave it the same.
    let keep: Vec<String> = (0..inputs.len())
        .map(|j| {
            let mut all = vec![h(j)];
            all.extend((0..groups).map(|i| format!("{} IS NOT NULL", g(i, j))));
            all.extend((0..j).map(|k| format!("NOT {}", same(k, j))));
            compile::never_null(&all.join(" AND "))
        })
        .collect();
    let pick = |of: &dyn Fn(usize) -> String| {
        let arms: Vec<String> = (0..inputs.len()).map(|j| format!("WHEN {j} THEN {}", of(j))).collect();
        format!("CASE {slot} {} END", arms.join(" "))
    };
    let mut picked: Vec<String> =
        (0..groups).map(|i| format!("{} AS {}", pick(&|j| g(i, j)), col(&format!("g{i}")))).collect();
    if valued {
        picked.push(format!("{} AS {}", pick(&v), col("v")));
    }
    let mut met: Vec<String> = (0..inputs.len()).map(h).collect();
    if spec.measure.of_rules() {
        met = (0..inputs.len()).map(|k| col(&format!("x{k}"))).collect();
        picked.extend(
            met.iter()
                .enumerate()
                .map(|(k, x)| format!("{} AS {x}", pick(&|j| if j == k { "true".to_string() } else { same(k, j) }))),
        );
    }
    (met, vec![vec![format!("unnest(true_indices({})) AS {slot}", keep.join(", "))], picked])
}

/// What a rule gives a correlation's windows for an event it meets: the group-by values, and the measured value.
#[derive(PartialEq)]
struct Key {
    groups: Vec<String>,
    value: Option<String>,
}

impl Key {
    fn of(spec: &Spec, input: &Input) -> Compiled<Key> {
        let groups = spec.group_by.iter().map(|g| compile::field_text(input.field(g))).collect::<Compiled<_>>()?;
        let value = match spec.measure.values_of() {
            None => None,
            Some(field) => {
                let text = compile::field_text(input.field(field))?;
                // A value that is not a number is no value, as for pySigma.
                Some(match spec.measure.numbers_of() {
                    Some(_) => format!("TRY_CAST({text} AS DOUBLE)"),
                    None => text,
                })
            }
        };
        Ok(Key { groups, value })
    }
}

/// A day since the epoch as a SQL date.
pub(super) fn date_literal(day: i32) -> String {
    format!("DATE '{}'", trailsql_lake::layout::day_date(day))
}

/// The layers of `temporal_ordered`: for each rule in turn, the latest start of a chain of events of the rules up
/// to it, one after the other in time, that ends at or before each event (`o{k}`); a rule's chain continues one
/// of the rule before that ended strictly earlier (`q{k}`, over the rows of earlier instants). The last rule's
/// column is the start of the latest-starting complete chain so far, which the caller compares with the window.
fn ordered(h_cols: &[String], t: &str, partition: &str, col: &dyn Fn(&str) -> String) -> (Vec<Vec<String>>, String) {
    let upto = |what: &str, end: &str| {
        format!("max({what}) OVER ({partition}ORDER BY {t} RANGE BETWEEN UNBOUNDED PRECEDING AND {end})")
    };
    let mut layers = vec![vec![format!(
        "{} AS {}",
        upto(&format!("CASE WHEN {} THEN {t} END", h_cols[0]), "CURRENT ROW"),
        col("o0")
    )]];
    for (k, h) in h_cols.iter().enumerate().skip(1) {
        let (before, q, o) = (col(&format!("o{}", k - 1)), col(&format!("q{k}")), col(&format!("o{k}")));
        layers.push(vec![format!("{} AS {q}", upto(&before, "1 PRECEDING"))]);
        layers.push(vec![format!("{} AS {o}", upto(&format!("CASE WHEN {h} THEN {q} END"), "CURRENT ROW"))]);
    }
    (layers, col(&format!("o{}", h_cols.len() - 1)))
}

/// The layers of `temporal_ordered` with `gte: k`: for each rule `i` and chain length `j` up to `k`, the latest start
/// of a chain of `j` rules in the order of the list (any of them, each event strictly later than the one before)
/// that ends with an event of rule `i` at or before each event (`a{i}_{j}`; `b{i}_{j}` the same over the rows of
/// earlier instants). Rule `i` can be the `j`-th of a chain of `k` only if `j - 1` rules come before it and `k - j`
/// after. The last column is the start of the latest-starting chain of `k` so far.
fn ordered_at_least(
    met: &[String],
    k: usize,
    t: &str,
    partition: &str,
    col: &dyn Fn(&str) -> String,
) -> (Vec<Vec<String>>, String) {
    let upto = |what: &str, end: &str| {
        format!("max({what}) OVER ({partition}ORDER BY {t} RANGE BETWEEN UNBOUNDED PRECEDING AND {end})")
    };
    let m = met.len();
    let a = |i: usize, j: usize| col(&format!("a{i}_{j}"));
    let rules = |j: usize| (j - 1)..=(m - (k - j) - 1);
    let greatest = |cols: Vec<String>| match cols.len() {
        1 => cols.into_iter().next().expect("one column"),
        _ => format!("greatest({})", cols.join(", ")),
    };
    let mut layers = vec![
        rules(1)
            .map(|i| format!("{} AS {}", upto(&format!("CASE WHEN {} THEN {t} END", met[i]), "CURRENT ROW"), a(i, 1)))
            .collect(),
    ];
    for j in 2..=k {
        let b = |i: usize| col(&format!("b{i}_{j}"));
        layers.push(
            rules(j)
                .map(|i| {
                    let before = greatest(rules(j - 1).filter(|p| *p < i).map(|p| a(p, j - 1)).collect());
                    format!("{} AS {}", upto(&before, "1 PRECEDING"), b(i))
                })
                .collect(),
        );
        layers.push(
            rules(j)
                .map(|i| {
                    format!(
                        "{} AS {}",
                        upto(&format!("CASE WHEN {} THEN {} END", met[i], b(i)), "CURRENT ROW"),
                        a(i, j)
                    )
                })
                .collect(),
        );
    }
    (layers, greatest(rules(k).map(|i| a(i, k)).collect()))
}

/// For each rule, whether it matched in the window: the layer's columns, their names (`p{i}`), and how many did.
fn rules_present(met: &[String], w: &str, col: &dyn Fn(&str) -> String) -> (Vec<String>, Vec<String>, String) {
    let p_cols: Vec<String> = (0..met.len()).map(|i| col(&format!("p{i}"))).collect();
    let present =
        met.iter().zip(&p_cols).map(|(h, p)| format!("max(CASE WHEN {h} THEN 1 ELSE 0 END) {w} AS {p}")).collect();
    let n = format!("({})", p_cols.join(" + "));
    (present, p_cols, n)
}

fn partition_by(columns: &[String]) -> String {
    if columns.is_empty() { String::new() } else { format!("PARTITION BY {} ", columns.join(", ")) }
}

/// A temporal correlation's own condition over the names of its rules: a name is true when its rule matched in
/// the window.
fn rules_condition(e: &ConditionExpr, inputs: &[Input], present: &[String]) -> Compiled<String> {
    Ok(match e {
        ConditionExpr::And(v) => {
            format!(
                "({})",
                v.iter().map(|c| rules_condition(c, inputs, present)).collect::<Compiled<Vec<_>>>()?.join(" AND ")
            )
        }
        ConditionExpr::Or(v) => {
            format!(
                "({})",
                v.iter().map(|c| rules_condition(c, inputs, present)).collect::<Compiled<Vec<_>>>()?.join(" OR ")
            )
        }
        ConditionExpr::Not(c) => format!("(NOT {})", rules_condition(c, inputs, present)?),
        ConditionExpr::Identifier(name) => match inputs.iter().position(|r| r.name == name) {
            Some(i) => format!("({} = 1)", present[i]),
            None => {
                return unsupported(format!("the correlation condition names {name}, which is not among its rules"));
            }
        },
        ConditionExpr::Selector { .. } => return unsupported("a selector in a correlation condition"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles_are_read_and_a_missing_percentile_refused() {
        let read = |kind: &str, condition: &str| {
            let yaml = format!(
                "title: c\nid: c\ncorrelation:\n  type: {kind}\n  rules: [a]\n  timespan: 1h\n  condition:\n{condition}"
            );
            let parsed = rsigma_parser::parse_sigma_yaml(&yaml).unwrap();
            spec(&parsed.correlations[0])
        };
        let median = read("value_median", "    field: x\n    gte: 5\n").unwrap();
        assert_eq!(
            (median.measure, median.predicates),
            (Measure::Percentile("x".into(), 50), vec![(ConditionOperator::Gte, 5)])
        );
        let p95 = read("value_percentile", "    field: x\n    percentile: 95\n    gt: 1000\n").unwrap();
        assert_eq!(p95.measure, Measure::Percentile("x".into(), 95));
        // The parser would take 50; pySigma refuses it.
        let none = read("value_percentile", "    field: x\n    gt: 1000\n");
        assert_eq!(none.unwrap_err().0, "value_percentile without a percentile from 0 to 100");
        assert!(read("value_percentile", "    field: x\n    percentile: 101\n    gt: 1\n").is_err());
        assert_eq!(
            read("value_median", "    field: x\n    percentile: 90\n    gt: 1\n").unwrap_err().0,
            "value_median with a percentile other than 50"
        );
        assert!(read("value_median", "    gt: 1\n").unwrap_err().0.contains("without exactly one condition field"));
    }

    #[test]
    fn old_aggregations_are_read() {
        let s = legacy(" count() by sourceIPAddress > 10", Some("5m")).unwrap();
        assert_eq!(s.measure, Measure::Events);
        assert_eq!(s.group_by, vec!["sourceIPAddress".to_string()]);
        assert_eq!(s.window, Window::Sliding(300));
        assert_eq!(s.predicates, vec![(ConditionOperator::Gt, 10)]);
        let d = legacy("count(eventName) >= 3", None).unwrap();
        assert_eq!(d.measure, Measure::Values("eventName".into()));
        assert_eq!(d.window, Window::Unbounded);
        assert!(d.group_by.is_empty());
        assert!(legacy("sum(x) by y > 1", None).is_err());
        assert!(legacy("count() > 1", Some("0s")).is_err());
        let longest = legacy("count() > 1", Some(&format!("{MAX_SPAN_SECONDS}s"))).unwrap();
        assert_eq!(longest.window, Window::Sliding(MAX_SPAN_SECONDS));
        let err = legacy("count() > 1", Some(&format!("{}s", MAX_SPAN_SECONDS + 1))).unwrap_err();
        assert!(err.0.contains("more than 100 years"), "{}", err.0);
        assert!(legacy("count() by a, b > 1", None).is_err());
    }

    #[test]
    fn correlations_are_windows_over_the_events_they_count() {
        let spec = Spec {
            group_by: vec!["sourceIPAddress".into()],
            measure: Measure::Events,
            window: Window::Sliding(600),
            predicates: vec![(ConditionOperator::Gte, 5)],
        };
        let f = fused(&spec, &[Input::rule("a", "(eventname = 'A')")], "c1", Reporting::default()).unwrap();
        assert_eq!(f.counted, "((eventname = 'A'))");
        assert_eq!(f.counted_column, "c1_in");
        // An event without a value for the group-by field is not counted.
        let counted = "(((((eventname = 'A')) AND (sourceipaddress IS NOT NULL))) IS TRUE) AS c1_in";
        assert!(f.scan.contains(&counted.to_string()), "{:?}", f.scan);
        // The windows are over the counted events alone (the query keeps them apart): grouped by the fields only.
        assert_eq!(f.layers[0], vec!["row_number() OVER (PARTITION BY c1_g0 ORDER BY c1_t, eventid) AS c1_rn"]);
        assert_eq!(f.layers[1], vec!["count_within(c1_t, 600000000) OVER (PARTITION BY c1_g0) AS c1_n"]);
        assert_eq!(f.layers[2][0], "max(CASE WHEN (c1_n >= 5) THEN c1_n END) OVER (PARTITION BY c1_g0) AS c1_count");
        assert_eq!(f.emits, "((c1_n >= 5) AND c1_rn = c1_first)");
        let temporal = Spec { measure: Measure::Rules(None), predicates: vec![], ..spec };
        let inputs = [Input::rule("a", "c_a"), Input::rule("b", "c_b")];
        let f = fused(&temporal, &inputs, "c2", Reporting::default()).unwrap();
        assert_eq!(f.emits, "(((c2_p0 + c2_p1) = 2) AND c2_rn = c2_first)");
        assert!(f.scan.contains(&"c_b AS c2_h1".to_string()), "{:?}", f.scan);
        assert!(f.scan.contains(&"CAST(eventtime AS BIGINT) AS c2_t".to_string()), "{:?}", f.scan);
        assert_eq!(f.earliest, None);
    }

    /// From a start time, a window counts the events of its timespan before it, and only an event from the start
    /// on gives the row.
    #[test]
    fn from_a_start_time_windows_look_back_their_timespan() {
        let spec = |window| Spec {
            group_by: vec![],
            measure: Measure::Events,
            window,
            predicates: vec![(ConditionOperator::Gte, 5)],
        };
        let input = [Input::rule("a", "(eventname = 'A')")];
        let start = 1_700_000_000_000_000;
        let f =
            fused(&spec(Window::Sliding(600)), &input, "c1", Reporting { since: Some(start), ..Reporting::default() })
                .unwrap();
        assert_eq!(f.earliest, Some(start - 600_000_000));
        assert_eq!(
            f.scan[0],
            "(((((eventname = 'A')) AND CAST(eventtime AS BIGINT) >= 1699999400000000)) IS TRUE) AS c1_in"
        );
        assert_eq!(f.emits, "((c1_n >= 5 AND c1_t >= 1700000000000000) AND c1_rn = c1_first)");
        assert!(f.layers[2][1].starts_with("min(CASE WHEN (c1_n >= 5 AND c1_t >= 1700000000000000) THEN c1_rn"));
        let f = fused(&spec(Window::Unbounded), &input, "c1", Reporting { since: Some(start), ..Reporting::default() })
            .unwrap();
        assert_eq!(f.earliest, Some(start), "a window without a timespan starts at the start");
        let f = fused(
            &spec(Window::Sliding(MAX_SPAN_SECONDS)),
            &input,
            "c1",
            Reporting { since: Some(i64::MIN + 1), ..Reporting::default() },
        )
        .unwrap();
        assert_eq!(f.earliest, Some(i64::MIN), "saturates");
    }

    /// `value_sum`, `value_avg`, `value_median` and `value_percentile`: of the field's values that are numbers; the
    /// row gives the measure rounded.
    #[test]
    fn sums_means_and_percentiles_of_numbers() {
        let input = [Input::rule("a", "(eventname = 'A')")];
        for (measure, aggregate) in [
            (Measure::Sum("eventVersion".into()), "sum(c1_v)"),
            (Measure::Mean("eventVersion".into()), "avg(c1_v)"),
            (Measure::Percentile("eventVersion".into(), 95), "window_percentile(c1_v, 0.95)"),
        ] {
            let spec = Spec {
                group_by: vec![],
                measure,
                window: Window::Sliding(60),
                predicates: vec![(ConditionOperator::Gt, 2)],
            };
            let f = fused(&spec, &input, "c1", Reporting::default()).unwrap();
            assert!(f.scan.contains(&"TRY_CAST(eventversion AS DOUBLE) AS c1_v".to_string()), "{:?}", f.scan);
            assert!(f.layers[1][0].starts_with(&format!("{aggregate} OVER (ORDER BY c1_t RANGE")), "{:?}", f.layers);
            assert!(
                f.layers[2][0].starts_with("max(CASE WHEN (c1_n > 2) THEN CAST(round(c1_n) AS BIGINT) END)"),
                "{:?}",
                f.layers
            );
            assert_eq!(f.around, None, "a sum of negative numbers, or a mean, can fall with more events");
        }
    }

    /// `temporal_ordered`: a chain of the rules' events, each strictly later than the one before, that starts
    /// within the window.
    #[test]
    fn ordered_rules_chain_their_events_in_time() {
        let spec =
            Spec { group_by: vec![], measure: Measure::Ordered, window: Window::Sliding(60), predicates: vec![] };
        let inputs = [
            Input::rule("a", "(eventname = 'A')"),
            Input::rule("b", "(eventname = 'B')"),
            Input::rule("c", "(eventname = 'C')"),
        ];
        let f = fused(&spec, &inputs, "c1", Reporting::default()).unwrap();
        let layers: Vec<String> = f.layers.iter().map(|l| l.join("; ")).collect();
        assert_eq!(layers.len(), 1 + 5 + 1, "{layers:#?}");
        let upto = |what: &str, end: &str| {
            format!("max({what}) OVER (ORDER BY c1_t RANGE BETWEEN UNBOUNDED PRECEDING AND {end})")
        };
        assert_eq!(layers[1], format!("{} AS c1_o0", upto("CASE WHEN c1_h0 THEN c1_t END", "CURRENT ROW")));
        assert_eq!(layers[2], format!("{} AS c1_q1", upto("c1_o0", "1 PRECEDING")));
        assert_eq!(layers[3], format!("{} AS c1_o1", upto("CASE WHEN c1_h1 THEN c1_q1 END", "CURRENT ROW")));
        assert_eq!(layers[5], format!("{} AS c1_o2", upto("CASE WHEN c1_h2 THEN c1_q2 END", "CURRENT ROW")));
        assert!(f.emits.starts_with("((c1_o2 >= c1_t - 60000000) AND "), "{}", f.emits);
        assert!(layers[6].starts_with("max(CASE WHEN (c1_o2 >= c1_t - 60000000) THEN 3 END)"), "{}", layers[6]);
        assert_eq!(f.around, Some(60), "more events can only complete a chain");
    }

    /// Under aliases that give the rules different fields, an event is a row for each distinct group its rules give
    /// it, carrying the rules that gave it that group; where every rule has the same fields, nothing changes.
    #[test]
    fn aliases_give_an_event_a_row_for_each_group_its_rules_give_it() {
        let spec = Spec {
            group_by: vec!["where".into()],
            measure: Measure::Rules(None),
            window: Window::Sliding(60),
            predicates: vec![],
        };
        let inputs = [
            Input { name: "a", condition: "c_a", aliases: vec![("where", "sourceIPAddress")], alerts: None },
            Input { name: "b", condition: "c_b", aliases: vec![("where", "awsRegion")], alerts: None },
        ];
        let f = fused(&spec, &inputs, "c1", Reporting::default()).unwrap();
        for column in ["c_a AS c1_h0", "sourceipaddress AS c1_g0_0", "c_b AS c1_h1", "awsregion AS c1_g0_1"] {
            assert!(f.scan.contains(&column.to_string()), "{column}: {:?}", f.scan);
        }
        // Counted where a rule it meets gives it a group.
        assert_eq!(
            f.scan[0],
            "((((c_a AND (sourceipaddress IS NOT NULL)) OR (c_b AND (awsregion IS NOT NULL)))) IS TRUE) AS c1_in"
        );
        let same = "((c1_h0 AND c1_g0_0 = c1_g0_1) IS TRUE)";
        assert_eq!(
            f.layers[0],
            vec![format!(
                "unnest(true_indices(((c1_h0 AND c1_g0_0 IS NOT NULL) IS TRUE), \
                 ((c1_h1 AND c1_g0_1 IS NOT NULL AND NOT {same}) IS TRUE))) AS c1_slot"
            )]
        );
        assert_eq!(
            f.layers[1],
            vec![
                "CASE c1_slot WHEN 0 THEN c1_g0_0 WHEN 1 THEN c1_g0_1 END AS c1_g0".to_string(),
                "CASE c1_slot WHEN 0 THEN true WHEN 1 THEN ((c1_h0 AND c1_g0_0 = c1_g0_1) IS TRUE) END AS c1_x0".into(),
                "CASE c1_slot WHEN 0 THEN ((c1_h1 AND c1_g0_1 = c1_g0_0) IS TRUE) WHEN 1 THEN true END AS c1_x1".into(),
            ]
        );
        assert!(f.layers[2][0].ends_with("ORDER BY c1_t, eventid, c1_slot) AS c1_rn"), "{:?}", f.layers[2]);
        assert!(f.layers[3][0].starts_with("max(CASE WHEN c1_x0 THEN 1 ELSE 0 END) OVER (PARTITION BY c1_g0"));

        // A value under an alias too, compared with the group: one value of one event is counted once.
        let sum = Spec { measure: Measure::Sum("bytes".into()), predicates: vec![(ConditionOperator::Gt, 1)], ..spec };
        let inputs = [
            Input {
                name: "a",
                condition: "c_a",
                aliases: vec![("where", "sourceIPAddress"), ("bytes", "eventVersion")],
                alerts: None,
            },
            Input {
                name: "b",
                condition: "c_b",
                aliases: vec![("where", "sourceIPAddress"), ("bytes", "apiVersion")],
                alerts: None,
            },
        ];
        let f = fused(&sum, &inputs, "c1", Reporting::default()).unwrap();
        assert!(f.scan.contains(&"TRY_CAST(apiversion AS DOUBLE) AS c1_v_1".to_string()), "{:?}", f.scan);
        assert!(
            f.layers[0][0]
                .contains("NOT ((c1_h0 AND c1_g0_0 = c1_g0_1 AND c1_v_0 IS NOT DISTINCT FROM c1_v_1) IS TRUE)")
        );
        assert!(f.layers[1].contains(&"CASE c1_slot WHEN 0 THEN c1_v_0 WHEN 1 THEN c1_v_1 END AS c1_v".to_string()));

        // The same fields for every rule: an event is one row, as without aliases.
        let same_fields = [
            Input { name: "a", condition: "c_a", aliases: vec![("where", "sourceIPAddress")], alerts: None },
            Input { name: "b", condition: "c_b", aliases: vec![("where", "sourceIPAddress")], alerts: None },
        ];
        let f = fused(&sum, &same_fields, "c1", Reporting::default());
        let err = f.err().map(|e| e.0);
        assert_eq!(err.as_deref(), Some("unknown field bytes"), "bytes is no field of rule a");
    }

    /// A correlation of correlations: the alerts of the one counted are its input beside its rules' events, in the
    /// groups that one has; it looks back both timespans, and a scheduler's run reads whole days for it.
    #[test]
    fn a_correlation_counts_the_alerts_of_another() {
        let start = 1_700_000_000_000_000;
        let child_spec = Spec {
            group_by: vec!["sourceIPAddress".into(), "awsRegion".into()],
            measure: Measure::Events,
            window: Window::Sliding(600),
            predicates: vec![(ConditionOperator::Gte, 2)],
        };
        let rule = [Input::rule("a", "c_a")];
        let looked_back = Reporting { since: Some(start - 3_600_000_000), alerts: true, ..Reporting::default() };
        let child = fused(&child_spec, &rule, "c1r0", looked_back).unwrap();
        // The first event of each instant where the condition holds.
        assert_eq!(child.alerts, format!("((c1r0_n >= 2 AND c1r0_t >= {}) AND c1r0_new)", start - 3_600_000_000));
        let lag =
            "(lag(c1r0_t) OVER (PARTITION BY c1r0_g0, c1r0_g1 ORDER BY c1r0_rn) IS DISTINCT FROM c1r0_t) AS c1r0_new";
        assert!(child.layers.last().unwrap().contains(&lag.to_string()), "{:?}", child.layers);

        let spec = Spec {
            group_by: vec!["sourceIPAddress".into()],
            measure: Measure::Ordered,
            window: Window::Sliding(3600),
            predicates: vec![],
        };
        let inputs = [
            Input { name: "child", condition: "false", aliases: vec![], alerts: Some(&child) },
            Input::rule("b", "c_b"),
        ];
        let f = fused(&spec, &inputs, "c1", Reporting { since: Some(start), ..Reporting::default() }).unwrap();
        assert_eq!(f.input, ["c1_t", "c1_g0", "c1_h0", "c1_h1"]);
        assert_eq!(f.children[0].columns, ["c1r0_t", "c1r0_g0", "true", "false"]);
        assert!(f.counts_events && f.counted.contains("c_a") && f.counted.contains("c_b"), "{}", f.counted);
        assert_eq!(f.earliest, Some(start - 3_600_000_000 - 600_000_000));
        assert_eq!((f.around, f.span_days), (None, 2), "whole days, a day for each timespan");

        // Grouped by a field the one counted does not group by, an alert has no value for it.
        let by_agent = Spec { group_by: vec!["userAgent".into()], ..spec.clone() };
        let err = fused(&by_agent, &inputs, "c1", Reporting::default()).unwrap_err();
        assert_eq!(err.0, "grouping by userAgent, which correlation child does not group by");
        let sum = Spec { measure: Measure::Sum("eventVersion".into()), ..spec };
        assert!(fused(&sum, &inputs, "c1", Reporting::default()).is_err(), "a sum of alerts");
    }

    /// `temporal_ordered` with `gte: 2` of three rules: a chain of two in the order of the list, any two; the count
    /// is of the rules seen in the window. More than its rules, or none, is refused.
    #[test]
    fn some_rules_in_order() {
        let read = |condition: &str| {
            let yaml = format!(
                "title: c\nid: c\ncorrelation:\n  type: temporal_ordered\n  rules: [a, b, c]\n  timespan: 1m\n  \
                 condition:\n{condition}"
            );
            spec(&rsigma_parser::parse_sigma_yaml(&yaml).unwrap().correlations[0])
        };
        assert_eq!(read("    gt: 1\n").unwrap().measure, Measure::OrderedAtLeast(2));
        assert_eq!(
            read("    lt: 2\n").unwrap_err().0,
            "temporal_ordered with a condition other than gte or gt (rules in order)"
        );
        let spec = read("    gte: 2\n").unwrap();
        let inputs = ["a", "b", "c"].map(|n| Input::rule(n, n));
        let f = fused(&spec, &inputs, "c1", Reporting::default()).unwrap();
        let layers: Vec<String> = f.layers.iter().map(|l| l.join("; ")).collect();
        let upto = |what: &str, end: &str| {
            format!("max({what}) OVER (ORDER BY c1_t RANGE BETWEEN UNBOUNDED PRECEDING AND {end})")
        };
        // The first of two can be a or b, the second b or c, after an earlier instant of a rule before it.
        assert_eq!(
            layers[1],
            format!(
                "{} AS c1_a0_1; {} AS c1_a1_1",
                upto("CASE WHEN c1_h0 THEN c1_t END", "CURRENT ROW"),
                upto("CASE WHEN c1_h1 THEN c1_t END", "CURRENT ROW")
            )
        );
        assert_eq!(
            layers[2],
            format!(
                "{} AS c1_b1_2; {} AS c1_b2_2",
                upto("c1_a0_1", "1 PRECEDING"),
                upto("greatest(c1_a0_1, c1_a1_1)", "1 PRECEDING")
            )
        );
        assert!(layers[4].contains("max(CASE WHEN c1_h2 THEN 1 ELSE 0 END) OVER"), "the rules seen: {}", layers[4]);
        assert!(f.emits.starts_with("((greatest(c1_a1_2, c1_a2_2) >= c1_t - 60000000) AND "), "{}", f.emits);
        assert_eq!(f.around, Some(60), "more events can only complete a chain");
        let four = Spec { measure: Measure::OrderedAtLeast(4), ..spec };
        assert_eq!(
            fused(&four, &inputs, "c1", Reporting::default()).unwrap_err().0,
            "temporal_ordered needing 4 of its 3 rules"
        );
    }

    /// The windows' numeric time counts microseconds because the lake's `eventtime` does.
    #[test]
    fn the_windows_time_is_in_the_lakes_unit() {
        use datafusion::arrow::datatypes::{DataType, TimeUnit};
        let schema = trailsql_lake::schema::file_schema();
        let unit = match schema.field_with_name("eventtime").unwrap().data_type() {
            DataType::Timestamp(unit, _) => *unit,
            other => panic!("eventtime is {other}"),
        };
        assert_eq!((unit, TIME_PER_SECOND), (TimeUnit::Microsecond, 1_000_000));
    }
}
