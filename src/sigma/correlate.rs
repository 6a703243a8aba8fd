//! Sigma correlation rules (`event_count`, `value_count`, `temporal`) and the older `| count() by … > N`
//! aggregations, compiled into SQL window functions over the events their rules match.
//!
//! The meaning, the same for every kind: the events of the referenced rules are grouped by the `group-by` fields;
//! at each event, the window is the timespan that ends at it, both ends included (`RANGE … PRECEDING AND CURRENT
//! ROW`, so events at the same instant are in each other's windows); the condition is tested on every such window.
//! A group gives one row: the event at which its condition first held, and the largest count among the windows
//! where it held. A `tumbling` window restarts at each multiple of the timespan since the Unix epoch; an old
//! aggregation without `timeframe` has one window per group, from its first event on.

use std::sync::LazyLock;

use rsigma_parser::{
    ConditionExpr, ConditionOperator, CorrelationCondition, CorrelationRule, CorrelationType, WindowMode,
};

use super::compile::{self, Compiled, Unsupported, unsupported};
use super::{EVENT_COLUMNS, literal};

/// A rule a correlation counts: its name as the correlation refers to it, and its SQL condition.
pub struct Input<'a> {
    pub name: &'a str,
    pub condition: &'a str,
}

/// What is measured in each window.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// Events.
    Events,
    /// Distinct non-null values of a field.
    Values(String),
    /// Which of the referenced rules matched: all of them, at least N, or a condition over their names.
    Rules(Option<ConditionExpr>),
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

/// Reads a correlation rule, refusing what has no faithful translation.
pub fn spec(c: &CorrelationRule) -> Compiled<Spec> {
    if !c.aliases.is_empty() {
        return unsupported("correlation field aliases");
    }
    let window = match c.window {
        WindowMode::Sliding => Window::Sliding(c.timespan.seconds),
        WindowMode::Tumbling => Window::Tumbling(c.timespan.seconds),
        WindowMode::Session => return unsupported("correlation window: session"),
    };
    if c.timespan.seconds == 0 {
        return unsupported(format!("a timespan of {}", c.timespan.original));
    }
    let (measure, predicates) = match (&c.correlation_type, &c.condition) {
        (CorrelationType::EventCount, CorrelationCondition::Threshold { predicates, field: None, .. }) => {
            (Measure::Events, predicates.clone())
        }
        (CorrelationType::ValueCount, CorrelationCondition::Threshold { predicates, field: Some(f), .. })
            if f.len() == 1 =>
        {
            (Measure::Values(f[0].clone()), predicates.clone())
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
        (other, _) => return unsupported(format!("correlation type {}", other.as_str())),
    };
    Ok(Spec { group_by: c.group_by.clone(), measure, window, predicates })
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
            if span.seconds == 0 {
                return unsupported(format!("timeframe {t}"));
            }
            Window::Sliding(span.seconds)
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

/// The query of one correlation, with the columns of every Sigma result.
pub fn sql(spec: &Spec, head: &str, inputs: &[Input]) -> Compiled<String> {
    let groups: Vec<String> = spec.group_by.iter().map(|g| compile::field_text(g)).collect::<Compiled<_>>()?;
    let g_cols: Vec<String> = (0..groups.len()).map(|i| format!("g{i}")).collect();
    let mut inner = vec![EVENT_COLUMNS.to_string()];
    inner.extend(groups.iter().zip(&g_cols).map(|(e, c)| format!("{e} AS {c}")));
    inner.extend(inputs.iter().enumerate().map(|(i, r)| format!("{} AS h{i}", r.condition)));
    if let Measure::Values(field) = &spec.measure {
        inner.push(format!("{} AS v", compile::field_text(field)?));
    }

    let mut partition = g_cols.clone();
    let frame = match spec.window {
        Window::Sliding(s) => format!("RANGE BETWEEN INTERVAL '{s} seconds' PRECEDING AND CURRENT ROW"),
        Window::Tumbling(s) => {
            partition.push(format!("date_bin(INTERVAL '{s} seconds', eventtime, TIMESTAMP '1970-01-01T00:00:00Z')"));
            "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW".to_string()
        }
        Window::Unbounded => "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW".to_string(),
    };
    let w = format!("OVER ({}ORDER BY eventtime {frame})", partition_by(&partition));
    let mut tests: Vec<String> = Vec::new();
    let (measures, n) = match &spec.measure {
        Measure::Events => (vec![format!("count(*) {w} AS n")], "n".to_string()),
        Measure::Values(_) => (vec![format!("count(DISTINCT v) {w} AS n")], "n".to_string()),
        Measure::Rules(expr) => {
            let present: Vec<String> =
                (0..inputs.len()).map(|i| format!("max(CASE WHEN h{i} THEN 1 ELSE 0 END) {w} AS p{i}")).collect();
            let n = format!("({})", (0..inputs.len()).map(|i| format!("p{i}")).collect::<Vec<_>>().join(" + "));
            match expr {
                Some(e) => tests.push(rules_condition(e, inputs)?),
                None if spec.predicates.is_empty() => tests.push(format!("{n} = {}", inputs.len())),
                None => {}
            }
            (present, n)
        }
    };
    tests.extend(spec.predicates.iter().map(|(op, k)| format!("{n} {} {k}", compare(*op))));
    let test = if tests.is_empty() { "true".to_string() } else { tests.join(" AND ") };

    let group_text = if spec.group_by.is_empty() {
        "''".to_string()
    } else {
        let parts: Vec<String> = spec
            .group_by
            .iter()
            .zip(&g_cols)
            .map(|(name, c)| format!("{} || coalesce({c}, '(null)')", literal(&format!("{name}="))))
            .collect();
        format!("concat_ws(', ', {})", parts.join(", "))
    };
    let by_group = partition_by(&g_cols);
    let any: Vec<&str> = inputs.iter().map(|r| r.condition).collect();
    Ok(format!(
        "SELECT {head}, eventtime, account_id, awsregion, eventsource, eventname, principal, sourceipaddress, \
         eventid, {group_text} AS correlation_group, correlation_count\n\
         FROM (\n  SELECT *, row_number() OVER ({by_group}ORDER BY eventtime, eventid) AS first_k,\n    \
         max({n}) OVER ({}) AS correlation_count\n  \
         FROM (\n    SELECT *, {}\n    FROM (SELECT {} FROM cloudtrail WHERE {}) m\n  ) w\n  WHERE {test}\n) x\n\
         WHERE first_k = 1",
        by_group.trim_end(),
        measures.join(", "),
        inner.join(", "),
        any.join(" OR "),
    ))
}

fn partition_by(columns: &[String]) -> String {
    if columns.is_empty() { String::new() } else { format!("PARTITION BY {} ", columns.join(", ")) }
}

/// A temporal correlation's own condition over the names of its rules: a name is true when its rule matched in
/// the window.
fn rules_condition(e: &ConditionExpr, inputs: &[Input]) -> Compiled<String> {
    Ok(match e {
        ConditionExpr::And(v) => {
            format!("({})", v.iter().map(|c| rules_condition(c, inputs)).collect::<Compiled<Vec<_>>>()?.join(" AND "))
        }
        ConditionExpr::Or(v) => {
            format!("({})", v.iter().map(|c| rules_condition(c, inputs)).collect::<Compiled<Vec<_>>>()?.join(" OR "))
        }
        ConditionExpr::Not(c) => format!("(NOT {})", rules_condition(c, inputs)?),
        ConditionExpr::Identifier(name) => match inputs.iter().position(|r| r.name == name) {
            Some(i) => format!("(p{i} = 1)"),
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
        assert!(legacy("count() by a, b > 1", None).is_err());
    }

    #[test]
    fn correlation_queries_use_windows_over_the_rules_events() {
        let spec = Spec {
            group_by: vec!["sourceIPAddress".into()],
            measure: Measure::Events,
            window: Window::Sliding(600),
            predicates: vec![(ConditionOperator::Gte, 5)],
        };
        let q = sql(&spec, "'x' AS rule_id", &[Input { name: "a", condition: "(eventname = 'A')" }]).unwrap();
        assert!(q.contains("count(*) OVER (PARTITION BY g0 ORDER BY eventtime RANGE BETWEEN INTERVAL '600 seconds' PRECEDING AND CURRENT ROW)"), "{q}");
        assert!(q.contains("WHERE n >= 5"), "{q}");
        assert!(q.contains("WHERE (eventname = 'A')"), "{q}");
        let temporal = Spec { measure: Measure::Rules(None), predicates: vec![], ..spec };
        let q = sql(
            &temporal,
            "'x' AS rule_id",
            &[Input { name: "a", condition: "c_a" }, Input { name: "b", condition: "c_b" }],
        )
        .unwrap();
        assert!(q.contains("WHERE (p0 + p1) = 2"), "{q}");
    }
}
