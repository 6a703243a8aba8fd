//! One Sigma rule's detection, compiled into a SQL condition over `cloudtrail`.
//!
//! Every detection item becomes a condition that is true or false, never NULL (`(…) IS TRUE`): in Sigma a
//! missing field matches nothing, so `not filter` must hold when the filter's field is absent, where SQL's
//! three-valued `NOT NULL` would drop the event. A construct without a faithful translation is refused with its
//! name, never approximated.

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Detections, Modifier, Quantifier, SelectorPattern, SigmaRule, SigmaString,
    SigmaValue, SpecialChar, StringPart,
};
use trailsql_lake::schema::{self, EVENT, Field, Kind};

use super::literal;

/// A construct a rule uses that is not translated, in the rule's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

pub(super) type Compiled<T> = Result<T, Unsupported>;

pub(super) fn unsupported<T>(what: impl Into<String>) -> Compiled<T> {
    Err(Unsupported(what.into()))
}

/// The SQL condition of a rule: true for the events it matches.
pub fn rule_condition(rule: &SigmaRule) -> Compiled<String> {
    let d = &rule.detection;
    if let Some(c) = d.condition_strings.iter().find(|c| c.contains('|')) {
        return unsupported(format!("aggregation in the condition `{c}`"));
    }
    if let Some(t) = &d.timeframe {
        return unsupported(format!("timeframe {t} without an aggregation"));
    }
    detections(d)
}

/// The SQL condition of a detection section (a rule's, or a filter's), whatever its timeframe.
pub fn detections(d: &Detections) -> Compiled<String> {
    if d.conditions.is_empty() {
        return unsupported("a detection without a condition");
    }
    let conditions = d.conditions.iter().map(|c| condition(c, &d.named)).collect::<Compiled<Vec<_>>>()?;
    Ok(any(conditions))
}

/// The condition, NULL taken as false. Not `coalesce(…, false)`: DataFusion simplifies that into
/// `x IS NOT NULL AND x`, which evaluates `x` twice (each function of a rule ran twice per event); `IS TRUE` reads it
/// once.
pub(super) fn never_null(sql: &str) -> String {
    format!("(({sql}) IS TRUE)")
}

fn any(parts: Vec<String>) -> String {
    match parts.len() {
        0 => "false".into(),
        1 => parts.into_iter().next().expect("one part"),
        _ => format!("({})", parts.join(" OR ")),
    }
}

/// `any` as a balanced tree of `OR`s. DataFusion names each sub-expression of a condition as it types it (the
/// name is the sub-expression's text), so along a chain of `OR`s the naming grows with the square of its length: a
/// keyword searched in every text field is a chain of 58, and balancing it took a tenth off the planning of the
/// benchmark's fused query (`EXPLAIN` of it: 70 to 60 ms).
fn any_balanced(mut parts: Vec<String>) -> String {
    if parts.len() <= 2 {
        return any(parts);
    }
    let second = parts.split_off(parts.len() / 2);
    format!("({} OR {})", any_balanced(parts), any_balanced(second))
}

fn all(parts: Vec<String>) -> String {
    match parts.len() {
        0 => "true".into(),
        1 => parts.into_iter().next().expect("one part"),
        _ => format!("({})", parts.join(" AND ")),
    }
}

fn condition(c: &ConditionExpr, named: &HashMap<String, Detection>) -> Compiled<String> {
    Ok(match c {
        ConditionExpr::And(v) => all(v.iter().map(|c| condition(c, named)).collect::<Compiled<_>>()?),
        ConditionExpr::Or(v) => any(v.iter().map(|c| condition(c, named)).collect::<Compiled<_>>()?),
        ConditionExpr::Not(c) => format!("(NOT {})", condition(c, named)?),
        ConditionExpr::Identifier(name) => match named.get(name) {
            Some(d) => detection(d)?,
            None => return unsupported(format!("the condition names `{name}`, which the detection does not define")),
        },
        ConditionExpr::Selector { quantifier, pattern } => {
            let selected = selected(pattern, named);
            if selected.is_empty() {
                return unsupported(format!("`{quantifier} of {pattern}`, which names no detection"));
            }
            if matches!(quantifier, Quantifier::Count(0)) {
                // "At least none" would match every event; pySigma does not parse it.
                return unsupported(format!("`0 of {pattern}`"));
            }
            let parts = selected.into_iter().map(detection).collect::<Compiled<Vec<_>>>()?;
            match quantifier {
                Quantifier::Any => any(parts),
                Quantifier::All => all(parts),
                Quantifier::Count(n) => {
                    let sum: Vec<String> = parts.iter().map(|p| format!("CASE WHEN {p} THEN 1 ELSE 0 END")).collect();
                    format!("(({}) >= {n})", sum.join(" + "))
                }
            }
        }
    })
}

/// The event names a detection can match, lower-cased, when its condition implies one of a few plain
/// `eventName` values (as most CloudTrail rules do); `None` when it does not. The fused query tests them first, in
/// one look-up per event, so that the rules' full conditions run only on the events that can match.
pub fn event_names(d: &Detections) -> Option<BTreeSet<String>> {
    union(d.conditions.iter().map(|c| condition_names(c, &d.named)))
}

type Names = Option<BTreeSet<String>>;

/// Matching any of the parts: the names of them all, if each has its own.
fn union(parts: impl Iterator<Item = Names>) -> Names {
    let mut all = BTreeSet::new();
    for p in parts {
        all.extend(p?);
    }
    Some(all)
}

/// Matching every part: the names of the narrowest part that has its own.
fn narrowest(parts: impl Iterator<Item = Names>) -> Names {
    parts.flatten().min_by_key(BTreeSet::len)
}

fn condition_names(c: &ConditionExpr, named: &HashMap<String, Detection>) -> Names {
    match c {
        ConditionExpr::And(v) => narrowest(v.iter().map(|c| condition_names(c, named))),
        ConditionExpr::Or(v) => union(v.iter().map(|c| condition_names(c, named))),
        ConditionExpr::Not(_) => None,
        ConditionExpr::Identifier(name) => named.get(name).and_then(detection_names),
        ConditionExpr::Selector { quantifier, pattern } => {
            let parts = selected(pattern, named).into_iter().map(detection_names);
            match quantifier {
                Quantifier::All => narrowest(parts),
                Quantifier::Any | Quantifier::Count(_) => union(parts),
            }
        }
    }
}

fn detection_names(d: &Detection) -> Names {
    match d {
        Detection::AllOf(items) => narrowest(items.iter().map(item_names)),
        Detection::AnyOf(ds) => union(ds.iter().map(detection_names)),
        Detection::And(ds) => narrowest(ds.iter().map(detection_names)),
        _ => None,
    }
}

/// `eventName: X` or a list of such, plain values without modifiers or wildcards.
fn item_names(it: &DetectionItem) -> Names {
    let is_name = it.field.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case("eventName"));
    if !is_name || !it.field.modifiers.is_empty() || it.values.is_empty() {
        return None;
    }
    it.values
        .iter()
        .map(|v| match v {
            SigmaValue::String(s) => s.as_plain().map(|p| p.to_lowercase()),
            _ => None,
        })
        .collect()
}

/// The detections a selector (`1 of sel_*`, `all of them`) names, in the order of their names.
fn selected<'a>(pattern: &SelectorPattern, named: &'a HashMap<String, Detection>) -> Vec<&'a Detection> {
    let mut names: Vec<&String> = named
        .keys()
        .filter(|k| match pattern {
            // `them` leaves out the identifiers that start with an underscore, as the specification says.
            SelectorPattern::Them => !k.starts_with('_'),
            SelectorPattern::Pattern(p) => glob_match(p, k),
        })
        .collect();
    names.sort();
    names.into_iter().map(|n| &named[n]).collect()
}

/// `*` as any run of characters, in a selector's pattern.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else { return false };
            (0..=tail.len()).filter(|i| tail.is_char_boundary(*i)).any(|i| glob_match(rest, &tail[i..]))
        }
    }
}

fn detection(d: &Detection) -> Compiled<String> {
    // `sel: {}` or `sel: []`: an AND of nothing would match every event, an OR of nothing none; pySigma refuses both.
    let empty = match d {
        Detection::AllOf(items) => items.is_empty(),
        Detection::AnyOf(ds) | Detection::And(ds) => ds.is_empty(),
        Detection::Keywords(values) => values.is_empty(),
        _ => false,
    };
    if empty {
        return unsupported("an empty detection");
    }
    Ok(match d {
        Detection::AllOf(items) => all(items.iter().map(item).collect::<Compiled<_>>()?),
        Detection::AnyOf(ds) => any(ds.iter().map(detection).collect::<Compiled<_>>()?),
        Detection::And(ds) => all(ds.iter().map(detection).collect::<Compiled<_>>()?),
        Detection::Keywords(values) => keywords(values, &[])?,
        Detection::ArrayMatch { field, .. } => return unsupported(format!("array matching on {field}")),
        Detection::Conditional { .. } => return unsupported("a nested conditional detection"),
    })
}

/// Where a field's value is, in SQL.
struct Target {
    /// The value compared: a column, a struct field, or `element()`, one of `values`.
    expr: String,
    /// The field is a whole JSON payload (`requestParameters`): its text is matched, a value with quotes as written
    /// or JSON-escaped (see `string_match`).
    json_text: bool,
    /// A path into a payload, or a member of the `resources` list: the list of the values there (`json_values`,
    /// through arrays; `field_values`), of which one must match; `expr` is then each of them.
    values: Option<String>,
    /// The value as one text, to group and count by; `None` for a time or a field inside a list.
    text: Option<String>,
    /// A time (`eventTime`): only a part of it is compared (`|hour`, …).
    time: bool,
}

impl Target {
    fn of(expr: String, json_text: bool) -> Target {
        Target { text: Some(expr.clone()), expr, json_text, values: None, time: false }
    }

    /// A comparison of `expr`, made of one of the values where the field has several.
    fn any(&self, comparison: String) -> String {
        match &self.values {
            Some(list) => format!("any_element({list}, {comparison})"),
            None => comparison,
        }
    }
}

/// The SQL of a field as Sigma writes it for CloudTrail: a top-level key is a column, `userIdentity.…` a struct
/// field, and a path under a payload (`requestParameters.…`) a JSON path into its text.
fn target(name: &str) -> Compiled<Target> {
    let parts: Vec<&str> = name.split('.').collect();
    let Some(top) = EVENT.iter().find(|f| f.key.eq_ignore_ascii_case(parts[0])) else {
        return unsupported(format!("unknown field {name}"));
    };
    let mut expr = schema::column_name(top.key);
    let mut kind = top.kind;
    let mut rest = &parts[1..];
    while let Kind::Struct(members) = kind {
        let Some((first, after)) = rest.split_first() else {
            return unsupported(format!("field {name} is a structure, not a value"));
        };
        let Some(m) = members.iter().find(|m: &&Field| m.key.eq_ignore_ascii_case(first)) else {
            return unsupported(format!("unknown field {name}"));
        };
        expr = format!("{expr}['{}']", schema::column_name(m.key));
        kind = m.kind;
        rest = after;
    }
    Ok(match (kind, rest) {
        (Kind::Json, []) => Target::of(expr, true),
        // Any array on the path or at its end holds values of the field (`json_values`): a rule over
        // `requestParameters.containerDefinitions.command` means any command of any definition.
        (Kind::Json, path) => {
            let keys = path.iter().map(|k| literal(k)).collect::<Vec<_>>().join(", ");
            Target {
                expr: "element()".into(),
                json_text: false,
                values: Some(format!("json_values({expr}, {keys})")),
                text: Some(format!("json_as_text({expr}, {keys})")),
                time: false,
            }
        }
        (Kind::Text, []) => Target::of(expr, false),
        (Kind::Bool(_), []) => Target::of(format!("CAST({expr} AS VARCHAR)"), false),
        (Kind::Time, []) => Target { time: true, text: None, ..Target::of(expr, false) },
        // `resources.ARN`: the ARN of any of the event's resources.
        (Kind::List(members), [member]) => match members.iter().find(|m| m.key.eq_ignore_ascii_case(member)) {
            Some(m) if matches!(m.kind, Kind::Text) => Target {
                expr: "element()".into(),
                json_text: false,
                values: Some(format!("field_values({expr}, '{}')", schema::column_name(m.key))),
                text: None,
                time: false,
            },
            _ => return unsupported(format!("unknown field {name}")),
        },
        (Kind::List(_), []) => return unsupported(format!("field {name} is a list, not a value")),
        _ => return unsupported(format!("unknown field {name}")),
    })
}

/// A field's value as text, for grouping and counting.
pub fn field_text(name: &str) -> Compiled<String> {
    let t = target(name)?;
    match t.text {
        Some(text) => Ok(text),
        None if t.time => unsupported(format!("grouping or counting by the time field {name}")),
        None => unsupported(format!("grouping or counting by {name}, a field inside a list")),
    }
}

/// The modifiers of an item, as flags.
#[derive(Default)]
struct Mods {
    contains: bool,
    startswith: bool,
    endswith: bool,
    all: bool,
    cased: bool,
    re: Option<String>,
    cidr: bool,
    exists: bool,
    fieldref: bool,
    compare: Option<&'static str>,
    base64: Option<bool>,
    /// `|utf16le`/`|wide`, `|utf16be`, `|utf16`: the value's bytes are UTF-16 before they are encoded.
    utf16: Option<Utf16>,
    windash: bool,
    neq: bool,
    /// `|hour`, `|day`, …: the part of a time that is compared, as `date_part` names it.
    time_part: Option<&'static str>,
}

#[derive(Clone, Copy)]
enum Utf16 {
    Le,
    Be,
    /// Little-endian after a byte order mark, as pySigma writes `|utf16`.
    Bom,
}

impl Utf16 {
    fn encode(self, s: &str) -> Vec<u8> {
        let units = s.encode_utf16();
        match self {
            Utf16::Le => units.flat_map(u16::to_le_bytes).collect(),
            Utf16::Be => units.flat_map(u16::to_be_bytes).collect(),
            Utf16::Bom => [0xFF, 0xFE].into_iter().chain(units.flat_map(u16::to_le_bytes)).collect(),
        }
    }
}

impl Mods {
    /// A modifier that makes the value something other than text to look for (a pattern, a network, a number, a
    /// field, a presence test).
    fn compares_other_than_text(&self) -> bool {
        self.re.is_some() || self.cidr || self.compare.is_some() || self.fieldref || self.exists
    }
}

fn mods(modifiers: &[Modifier]) -> Compiled<Mods> {
    let mut m = Mods::default();
    let mut flags = String::new();
    for modifier in modifiers {
        match modifier {
            Modifier::Contains => m.contains = true,
            Modifier::StartsWith => m.startswith = true,
            Modifier::EndsWith => m.endswith = true,
            Modifier::All => m.all = true,
            Modifier::Cased => m.cased = true,
            Modifier::Re => m.re = Some(String::new()),
            Modifier::IgnoreCase => flags.push('i'),
            Modifier::Multiline => flags.push('m'),
            Modifier::DotAll => flags.push('s'),
            Modifier::Cidr => m.cidr = true,
            Modifier::Exists => m.exists = true,
            Modifier::FieldRef => m.fieldref = true,
            Modifier::Gt => m.compare = Some(">"),
            Modifier::Gte => m.compare = Some(">="),
            Modifier::Lt => m.compare = Some("<"),
            Modifier::Lte => m.compare = Some("<="),
            Modifier::Base64 => m.base64 = Some(false),
            Modifier::Base64Offset => m.base64 = Some(true),
            Modifier::Wide => m.utf16 = Some(Utf16::Le),
            Modifier::Utf16be => m.utf16 = Some(Utf16::Be),
            Modifier::Utf16 => m.utf16 = Some(Utf16::Bom),
            Modifier::WindAsh => m.windash = true,
            Modifier::Neq => m.neq = true,
            Modifier::Minute => m.time_part = Some("minute"),
            Modifier::Hour => m.time_part = Some("hour"),
            Modifier::Day => m.time_part = Some("day"),
            Modifier::Week => m.time_part = Some("week"),
            Modifier::Month => m.time_part = Some("month"),
            Modifier::Year => m.time_part = Some("year"),
            // Placeholders take their values from a processing pipeline's configuration, which a rule alone
            // does not carry.
            Modifier::Expand => return unsupported("modifier |expand (placeholders need a pipeline's values)"),
        }
    }
    if let Some(re) = m.re.as_mut() {
        *re = flags;
    } else if !flags.is_empty() {
        return unsupported("regular-expression flags without |re");
    }
    // What would be combined with no meaning, or a meaning the specification does not give, is refused by name.
    let special = m.compares_other_than_text();
    let pattern = m.contains || m.startswith || m.endswith;
    let conflict = if m.utf16.is_some() && m.base64.is_none() {
        Some("UTF-16 without |base64 (the lake's text is UTF-8)")
    } else if m.windash && (special || m.base64.is_some()) {
        Some("|windash with a modifier that does not compare text")
    } else if m.cidr
        && (pattern || m.re.is_some() || m.compare.is_some() || m.fieldref || m.exists || m.base64.is_some())
    {
        Some("|cidr with a modifier that does not compare addresses")
    } else if m.neq && (m.exists || m.compare.is_some()) {
        Some("|neq with |exists or a comparison")
    } else if m.time_part.is_some() && (pattern || m.re.is_some() || m.cidr || m.fieldref || m.base64.is_some()) {
        Some("a time part with a modifier that does not compare numbers")
    } else {
        None
    };
    match conflict {
        Some(what) => unsupported(what),
        None => Ok(m),
    }
}

fn item(it: &DetectionItem) -> Compiled<String> {
    let m = mods(&it.field.modifiers)?;
    let Some(name) = &it.field.name else { return keywords(&it.values, &it.field.modifiers) };
    let t = target(name)?;
    if m.exists {
        return match it.values.as_slice() {
            [SigmaValue::Bool(true)] => Ok(format!("(NOT {})", absent(&t))),
            [SigmaValue::Bool(false)] => Ok(absent(&t)),
            _ => unsupported(format!("{name}|exists with a value that is not true or false")),
        };
    }
    // `field: []` is `field: null`, as pySigma reads it ("no value").
    let null = [SigmaValue::Null];
    let values = if it.values.is_empty() { &null[..] } else { &it.values[..] };
    let holds = match networks(&t, name, &m, values) {
        // Every network in one call: each address is read once, not once per network.
        Some(list) => never_null(&t.any(format!("ip_in_cidr({}, {})", t.expr, list?.join(", ")))),
        None => {
            let parts = values.iter().map(|v| value(&t, name, &m, v)).collect::<Compiled<Vec<_>>>()?;
            if m.all { all(parts) } else { any(parts) }
        }
    };
    // `|neq` negates the whole item, its values joined as without it (OR, AND with `|all`): "the field is different
    // from the specified values", as pySigma reads it. Where the field is absent the item does not hold, so its
    // negation does, as `not` of a selection.
    Ok(if m.neq { format!("(NOT {holds})") } else { holds })
}

/// The networks of a `|cidr` item of several (any of them), when each is a text; `None` for the other items.
fn networks(t: &Target, name: &str, m: &Mods, values: &[SigmaValue]) -> Option<Compiled<Vec<String>>> {
    if !m.cidr || m.all || t.time || values.len() < 2 {
        return None;
    }
    let texts: Option<Vec<&SigmaString>> = values
        .iter()
        .map(|v| match v {
            SigmaValue::String(s) => Some(s),
            _ => None,
        })
        .collect();
    Some(texts?.into_iter().map(|s| network(name, s)).collect())
}

/// A `|cidr` value as the literal of `ip_in_cidr`. `ip_in_cidr` is NULL for a network it cannot read: the rule
/// would never match, silently.
fn network(name: &str, text: &SigmaString) -> Compiled<String> {
    match trailsql_udfs::ip_in_cidr::Network::parse(&text.original) {
        Some(_) => Ok(literal(&text.original)),
        None => unsupported(format!("{name}|cidr with {:?}, which is not a network", text.original)),
    }
}

/// Whether a value was a YAML list or map inside the list of a field's values (`field: [[a, b]]`). rsigma-parser
/// keeps such a value as the text of its debug form (`Sequence [String("a"), …]`), which no event holds: a rule
/// matching it would run with another meaning than its author's, where pySigma refuses it. A rule whose value is
/// that text itself is refused too, which is loud, not wrong.
fn is_collection(s: &SigmaString) -> bool {
    ["Sequence [", "Mapping {", "Tagged("].iter().any(|p| s.original.starts_with(p))
}

/// Whether a field has no value (NULL, or nothing at a payload path): always true or false.
fn absent(t: &Target) -> String {
    match &t.values {
        Some(list) => format!("(coalesce(cardinality({list}), 0) = 0)"),
        None => format!("({} IS NULL)", t.expr),
    }
}

/// One value's comparison with a field (as if without `|neq`, which `item` applies): always true or false.
fn value(t: &Target, name: &str, m: &Mods, v: &SigmaValue) -> Compiled<String> {
    let expr = &t.expr;
    let text = match v {
        SigmaValue::Null => return Ok(absent(t)),
        SigmaValue::Bool(b) => SigmaString::new(&b.to_string()),
        SigmaValue::Integer(i) => SigmaString::new(&i.to_string()),
        SigmaValue::Float(f) => SigmaString::new(&f.to_string()),
        SigmaValue::String(s) => s.clone(),
    };
    if is_collection(&text) {
        return unsupported(format!("{name} with a list or a map as one of its values"));
    }
    match (t.time, m.time_part) {
        (true, None) => return unsupported(format!("matching the time field {name} (compare a part: |hour, |day, …)")),
        (false, Some(part)) => return unsupported(format!("{name}|{part}: {name} is not a time")),
        _ => {}
    }
    // `|fieldref`'s other field: each of its values is compared.
    let mut other: Option<Target> = None;
    let sql = if let Some(part) = m.time_part {
        // `date_part` of a UTC time: the part in UTC, as CloudTrail writes it; `week` is ISO 8601's (1 to 53).
        let Ok(n) = text.original.trim().parse::<i64>() else {
            return unsupported(format!("{name}|{part} with a value that is not a whole number"));
        };
        let op = m.compare.unwrap_or("=");
        format!("(date_part('{part}', {expr}) {op} {n})")
    } else if let Some(flags) = &m.re {
        // The pattern is the rule's text as written: backslashes are the regular expression's own. One that does
        // not compile would fail the fused query, every rule of the run with it: it is this rule's report instead.
        if let Err(e) = trailsql_udfs::matches_regex::compiled(&text.original, flags) {
            // The regex crate's message shows the pattern and a caret above its last line, the reason.
            let message = e.message();
            let why = message.lines().last().unwrap_or_default().trim().trim_start_matches("matches_regex: ");
            return unsupported(format!("{name}|re: a pattern that does not compile ({why})"));
        }
        let flags = if flags.is_empty() { String::new() } else { format!(", {}", literal(flags)) };
        format!("matches_regex({expr}, {}{flags})", literal(&text.original))
    } else if m.cidr {
        format!("ip_in_cidr({expr}, {})", network(name, &text)?)
    } else if let Some(op) = m.compare {
        // `inf`, `NaN` and `1e400` parse as floats but are no SQL number: the fused query would fail on them.
        let n = match text.original.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => n,
            _ => return unsupported(format!("{name}|{op} with a value that is not a number")),
        };
        format!("(TRY_CAST({expr} AS DOUBLE) {op} {n})")
    } else if m.fieldref {
        if m.contains || m.startswith || m.endswith || m.base64.is_some() {
            return unsupported(format!("{name}|fieldref with other modifiers"));
        }
        let o = other.insert(target(&text.original)?);
        if t.values.is_some() && o.values.is_some() {
            return unsupported(format!("{name}|fieldref between two paths into payloads"));
        }
        if o.time {
            return unsupported(format!("{name}|fieldref to the time field {}", text.original));
        }
        if m.cased { format!("({expr} = {})", o.expr) } else { format!("(lower({expr}) = lower({}))", o.expr) }
    } else if let Some(offsets) = m.base64 {
        let Some(plain) = text.as_plain() else {
            return unsupported(format!("{name}|base64 of a value with wildcards"));
        };
        let bytes = match m.utf16 {
            Some(utf16) => utf16.encode(&plain),
            None => plain.into_bytes(),
        };
        let encoded = if offsets { base64_offsets(&bytes) } else { vec![base64_plain(&bytes)] };
        // Base64 is case-sensitive: the encodings are matched as they are.
        let cased = Mods {
            cased: true,
            contains: m.contains,
            startswith: m.startswith,
            endswith: m.endswith,
            ..Mods::default()
        };
        any(encoded.iter().map(|e| string_match(t, &cased, &SigmaString::from_raw(e))).collect())
    } else if let (SigmaValue::Float(f), false) =
        (v, m.contains || m.startswith || m.endswith || m.windash || m.cased || t.json_text)
    {
        // YAML reads `eventVersion: 1.10` as the number 1.1, its digits lost: it is compared as a number, which the
        // text "1.10" is.
        if !f.is_finite() {
            return unsupported(format!("{name} with {f}, which is no SQL number"));
        }
        format!("(TRY_CAST({expr} AS DOUBLE) = {f})")
    } else {
        let variants = if m.windash { windash(&text, name)? } else { vec![text] };
        any(variants.iter().map(|s| string_match(t, m, s)).collect())
    };
    let sql = match &other {
        Some(o) => o.any(sql),
        None => sql,
    };
    Ok(never_null(&t.any(sql)))
}

fn base64_plain(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The three encodings of a value at byte offsets 0, 1 and 2 of the encoded text, without the characters that
/// depend on what surrounds it (as Sigma's `base64offset` defines them).
fn base64_offsets(s: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let padded = [&b"  "[..i], s].concat();
            let enc = base64_plain(&padded);
            let end_trim = END[(s.len() + i) % 3];
            // As the specification's Python slices it: a value of no bytes leaves nothing between the two ends.
            enc.get(START[i]..enc.len().saturating_sub(end_trim)).unwrap_or_default().to_string()
        })
        .collect()
}

/// The characters `|windash` takes one another for: the dash and slash of Windows command-line flags, and the
/// dashes a word processor writes in their place.
const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// Beyond four dashes a value would be more than 625 comparisons in the fused query.
const MOST_DASHES: usize = 4;

/// `|windash`: the value with each of its dashes in every form, all the combinations, as the specification defines
/// it (pySigma varies only a dash or slash that starts a word; every variant it makes is among these).
fn windash(s: &SigmaString, name: &str) -> Compiled<Vec<SigmaString>> {
    let dashes = s
        .parts
        .iter()
        .map(|p| if let StringPart::Plain(t) = p { t.chars().filter(|c| DASHES.contains(c)).count() } else { 0 })
        .sum::<usize>();
    if dashes > MOST_DASHES {
        return unsupported(format!("{name}|windash with more than {MOST_DASHES} dashes in one value"));
    }
    let mut variants: Vec<Vec<StringPart>> = vec![Vec::new()];
    for part in &s.parts {
        let StringPart::Plain(text) = part else {
            variants.iter_mut().for_each(|v| v.push(part.clone()));
            continue;
        };
        let mut texts = vec![String::new()];
        for c in text.chars() {
            if DASHES.contains(&c) {
                texts = texts.iter().flat_map(|t| DASHES.iter().map(move |d| format!("{t}{d}"))).collect();
            } else {
                texts.iter_mut().for_each(|t| t.push(c));
            }
        }
        variants = variants
            .into_iter()
            .flat_map(|v| texts.iter().map(move |t| v.iter().cloned().chain([StringPart::Plain(t.clone())]).collect()))
            .collect();
    }
    Ok(variants
        .into_iter()
        .map(|parts: Vec<StringPart>| {
            let original = parts
                .iter()
                .map(|p| match p {
                    StringPart::Plain(t) => t.as_str(),
                    StringPart::Special(SpecialChar::WildcardMulti) => "*",
                    StringPart::Special(SpecialChar::WildcardSingle) => "?",
                })
                .collect();
            SigmaString { parts, original }
        })
        .collect())
}

/// A string comparison: equality, or `LIKE` when the value has wildcards or a contains/startswith/endswith modifier;
/// case-insensitive unless `|cased`.
///
/// In a payload's JSON text a value with a quote or a backslash is found in either of two forms: as written, where
/// its quotes are the JSON's own (`"Effect":"Allow"` of an S3 bucket policy, an object), or escaped, inside a
/// string of the payload (`\"Effect\":\"Allow\"` of an IAM policy document, a string). pySigma's backends search
/// the first, and so miss every IAM policy; searching the second alone missed every bucket policy.
fn string_match(t: &Target, m: &Mods, s: &SigmaString) -> String {
    let plain = s.parts.iter().map(|p| if let StringPart::Plain(p) = p { p.as_str() } else { "" });
    if t.json_text && plain.clone().any(|p| json_escaped(p) != p) {
        return format!("({} OR {})", text_match(t, m, s, false), text_match(t, m, s, true));
    }
    text_match(t, m, s, false)
}

/// The text as it appears inside a JSON string.
fn json_escaped(p: &str) -> String {
    let quoted = serde_json::to_string(p).expect("a string serialises");
    quoted[1..quoted.len() - 1].to_string()
}

/// [`string_match`] of one form of the value: JSON-escaped or as written.
fn text_match(t: &Target, m: &Mods, s: &SigmaString, escaped: bool) -> String {
    let escape_json = |p: &str| -> String { if escaped { json_escaped(p) } else { p.to_string() } };
    let has_wildcards = s.parts.iter().any(|p| matches!(p, StringPart::Special(_)));
    if !(has_wildcards || m.contains || m.startswith || m.endswith) {
        let plain: String =
            s.parts.iter().map(|p| if let StringPart::Plain(p) = p { escape_json(p) } else { String::new() }).collect();
        return if m.cased {
            format!("({} = {})", t.expr, literal(&plain))
        } else {
            format!("(lower({}) = {})", t.expr, literal(&plain.to_lowercase()))
        };
    }
    if let Some(needle) = contained_text(s, m).filter(|_| !m.cased) {
        return format!("icontains({}, {})", t.expr, literal(&escape_json(&needle)));
    }
    let mut pattern = String::new();
    if m.contains || m.endswith {
        pattern.push('%');
    }
    for p in &s.parts {
        match p {
            StringPart::Plain(text) => {
                for c in escape_json(text).chars() {
                    if matches!(c, '%' | '_' | '\\') {
                        pattern.push('\\');
                    }
                    pattern.push(c);
                }
            }
            StringPart::Special(SpecialChar::WildcardMulti) => pattern.push('%'),
            StringPart::Special(SpecialChar::WildcardSingle) => pattern.push('_'),
        }
    }
    if m.contains || m.startswith {
        pattern.push('%');
    }
    let op = if m.cased { "LIKE" } else { "ILIKE" };
    format!("({} {op} {} ESCAPE '\\')", t.expr, literal(&pattern))
}

/// The text a value asks to be contained, when that is all it asks: `x` with `|contains`, or `*x*` (or `*x` with
/// `|startswith`, …) with no other wildcard.
fn contained_text(s: &SigmaString, m: &Mods) -> Option<String> {
    let star = |p: Option<&StringPart>| matches!(p, Some(StringPart::Special(SpecialChar::WildcardMulti)));
    let mut parts = s.parts.as_slice();
    let open_start = m.contains || m.endswith || star(parts.first());
    if star(parts.first()) {
        parts = &parts[1..];
    }
    let open_end = m.contains || m.startswith || star(parts.last());
    if star(parts.last()) {
        parts = &parts[..parts.len() - 1];
    }
    if !(open_start && open_end) {
        return None;
    }
    parts.iter().map(|p| if let StringPart::Plain(t) = p { Some(t.as_str()) } else { None }).collect()
}

/// Keywords: a search of the event's text, each value found in one of its text fields: the top-level text and JSON
/// columns, the text members of `userIdentity`, `tlsDetails` and of each of the `resources`, and what no column
/// holds (`unmapped`). A JSON text is searched for the value in both forms (see `string_match`).
///
/// Field by field, not in one concatenation of them: a keyword is found within a value, never across two, and
/// concatenating every text column of every event was a fifth of a rule directory's time.
fn keywords(values: &[SigmaValue], modifiers: &[Modifier]) -> Compiled<String> {
    let m = mods(modifiers)?;
    if m.compares_other_than_text() || m.base64.is_some() || m.neq || m.time_part.is_some() {
        return unsupported(
            "keywords with a modifier other than |all, |cased, |contains, |startswith, |endswith, |windash",
        );
    }
    let search = Mods { contains: true, ..m };
    let fields = text_fields();
    let found = |s: SigmaString| -> Compiled<String> {
        let variants = if m.windash { windash(&s, "keyword")? } else { vec![s] };
        let each = variants.iter().flat_map(|s| fields.iter().map(|t| never_null(&t.any(string_match(t, &search, s)))));
        Ok(any_balanced(each.collect()))
    };
    let parts: Vec<String> = values
        .iter()
        .map(|v| match v {
            SigmaValue::String(s) => found(s.clone()),
            SigmaValue::Integer(i) => found(SigmaString::new(&i.to_string())),
            _ => unsupported("a keyword that is not text or a number"),
        })
        .collect::<Compiled<_>>()?;
    Ok(if search.all { all(parts) } else { any(parts) })
}

/// Every text field of an event as a keyword search reads it: the schema's text and JSON members at any depth
/// (times and booleans are not text), then `unmapped`.
fn text_fields() -> Vec<Target> {
    fn walk(prefix: &str, fields: &[Field], out: &mut Vec<Target>) {
        for f in fields {
            let name = format!("{prefix}{}", f.key);
            match f.kind {
                Kind::Text | Kind::Json => out.push(target(&name).expect("a field of the schema has a target")),
                Kind::Struct(inner) | Kind::List(inner) => walk(&format!("{name}."), inner, out),
                Kind::Bool(_) | Kind::Time => {}
            }
        }
    }
    let mut out = Vec::new();
    walk("", EVENT, &mut out);
    out.push(Target::of(schema::UNMAPPED.to_string(), true));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> Compiled<String> {
        let c = rsigma_parser::parse_sigma_yaml(yaml).unwrap();
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        rule_condition(&c.rules[0])
    }

    fn rule(detection: &str) -> String {
        format!("title: t\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n{detection}")
    }

    #[test]
    fn maps_are_and_lists_are_or_and_matching_ignores_case() {
        let sql = compile(&rule(
            "  sel:\n    eventSource: s3.amazonaws.com\n    eventName:\n      - A\n      - B\n  condition: sel\n",
        ))
        .unwrap();
        assert!(sql.contains("(lower(eventsource) = 's3.amazonaws.com')"), "{sql}");
        assert!(sql.contains(" AND "), "{sql}");
        assert!(sql.contains("(lower(eventname) = 'a')") && sql.contains(" OR "), "{sql}");
    }

    #[test]
    fn fields_map_to_columns_struct_fields_and_json_paths() {
        assert_eq!(
            target("userIdentity.sessionContext.sessionIssuer.userName").unwrap().expr,
            "useridentity['sessioncontext']['sessionissuer']['username']"
        );
        let path = target("requestParameters.ipPermissions.items").unwrap();
        assert_eq!(path.values.as_deref(), Some("json_values(requestparameters, 'ipPermissions', 'items')"));
        assert_eq!(path.expr, "element()");
        assert_eq!(path.text.as_deref(), Some("json_as_text(requestparameters, 'ipPermissions', 'items')"));
        let arn = target("resources.arn").unwrap();
        assert_eq!(arn.values.as_deref(), Some("field_values(resources, 'arn')"));
        assert_eq!(arn.expr, "element()");
        assert_eq!(
            field_text("resources.ARN").unwrap_err().0,
            "grouping or counting by resources.ARN, a field inside a list"
        );
        assert_eq!(target("resources.nosuch").err(), Some(Unsupported("unknown field resources.nosuch".into())));
        assert!(target("resources").is_err());
        assert!(target("requestParameters").unwrap().json_text);
        assert_eq!(target("readOnly").unwrap().expr, "CAST(readonly AS VARCHAR)");
        assert_eq!(target("nosuchfield").err(), Some(Unsupported("unknown field nosuchfield".into())));
        assert!(target("userIdentity").is_err());
    }

    #[test]
    fn wildcards_and_modifiers_become_like_patterns_or_a_search() {
        let s = |v: &str, mods: &[Modifier]| {
            string_match(&Target::of("x".into(), false), &mods_of(mods), &SigmaString::new(v))
        };
        assert_eq!(s("a*b?c", &[]), r"(x ILIKE 'a%b_c' ESCAPE '\')");
        assert_eq!(s("5?%_\\*", &[Modifier::Contains]), r"(x ILIKE '%5_\%\_*%' ESCAPE '\')");
        // Containing a text and nothing more: no pattern to build.
        assert_eq!(s("50%_\\*", &[Modifier::Contains]), "icontains(x, '50%_*')");
        assert_eq!(s("*kali*", &[]), "icontains(x, 'kali')");
        assert_eq!(s("*Kali", &[Modifier::StartsWith]), "icontains(x, 'Kali')");
        assert_eq!(s("*kali", &[]), r"(x ILIKE '%kali' ESCAPE '\')");
        assert_eq!(s("kali", &[Modifier::Contains, Modifier::Cased]), r"(x LIKE '%kali%' ESCAPE '\')");
        assert_eq!(s("Pre", &[Modifier::StartsWith, Modifier::Cased]), r"(x LIKE 'Pre%' ESCAPE '\')");
        assert_eq!(s("it's", &[]), "(lower(x) = 'it''s')");
        // In a payload's JSON text, a quote as written or escaped.
        let json = Target::of("p".into(), true);
        assert_eq!(
            string_match(&json, &mods_of(&[Modifier::Contains]), &SigmaString::new("a\"b")),
            r#"(icontains(p, 'a"b') OR icontains(p, 'a\"b'))"#
        );
        assert_eq!(string_match(&json, &mods_of(&[Modifier::Contains]), &SigmaString::new("ab")), "icontains(p, 'ab')");
    }

    fn mods_of(m: &[Modifier]) -> Mods {
        mods(m).unwrap()
    }

    #[test]
    fn conditions_quantifiers_and_not_are_never_null() {
        let sql = compile(&rule("  sel_a:\n    eventName: A\n  sel_b:\n    eventName: B\n  _x:\n    eventName: C\n  filter:\n    errorCode: X\n  condition: 1 of sel_* and not filter\n")).unwrap();
        assert!(sql.contains("(NOT (((lower(errorcode) = 'x')) IS TRUE))"), "{sql}");
        let them =
            compile(&rule("  a:\n    eventName: A\n  _b:\n    eventName: B\n  condition: all of them\n")).unwrap();
        assert!(!them.contains("'b'"), "`them` leaves out _b: {them}");
        let two = compile(&rule(
            "  a:\n    eventName: A\n  b:\n    eventName: B\n  c:\n    eventName: C\n  condition: 2 of them\n",
        ))
        .unwrap();
        assert!(two.ends_with(">= 2)"), "{two}");
    }

    #[test]
    fn what_is_not_translated_is_refused_by_name() {
        let e = |d: &str| compile(&rule(d)).unwrap_err().0;
        assert_eq!(
            e("  sel:\n    eventName|expand: '%A%'\n  condition: sel\n"),
            "modifier |expand (placeholders need a pipeline's values)"
        );
        assert_eq!(e("  sel:\n    bogus: A\n  condition: sel\n"), "unknown field bogus");
    }

    #[test]
    fn neq_negates_the_item_and_holds_where_the_field_is_absent() {
        let c = |d: &str| compile(&rule(&format!("  sel:\n    {d}\n  condition: sel\n")));
        assert_eq!(c("errorCode|neq: AccessDenied").unwrap(), "(NOT (((lower(errorcode) = 'accessdenied')) IS TRUE))");
        // Different from every value; with `|all`, not equal to all of them at once.
        let every = c("errorCode|neq: [A, B]").unwrap();
        assert!(every.starts_with("(NOT ((((lower(errorcode) = 'a')) IS TRUE) OR "), "{every}");
        let at_once = c("errorCode|neq|all: [A, B]").unwrap();
        assert!(at_once.starts_with("(NOT ((((lower(errorcode) = 'a')) IS TRUE) AND "), "{at_once}");
        assert_eq!(c("errorCode|neq: null").unwrap(), "(NOT (errorcode IS NULL))");
        assert_eq!(
            c("userIdentity.userName|neq|fieldref: userAgent").unwrap(),
            "(NOT (((lower(useridentity['username']) = lower(useragent))) IS TRUE))"
        );
        // On a payload path, none of its values.
        assert!(
            c("requestParameters.a|neq: x")
                .unwrap()
                .starts_with("(NOT ((any_element(json_values(requestparameters, 'a')")
        );
        let cidr = c("sourceIPAddress|neq|cidr: 10.0.0.0/8").unwrap();
        assert!(cidr.contains("(NOT ((ip_in_cidr(sourceipaddress, '10.0.0.0/8')) IS TRUE))"), "{cidr}");
        assert_eq!(c("errorCode|neq|exists: true").unwrap_err().0, "|neq with |exists or a comparison");
        assert_eq!(c("eventVersion|neq|gt: 1").unwrap_err().0, "|neq with |exists or a comparison");
    }

    /// A balanced `OR` holds every part once, in order, at a depth that grows with the logarithm of their number.
    #[test]
    fn a_balanced_or_keeps_every_part_in_order() {
        let parts = |n: usize| (0..n).map(|i| format!("p{i}")).collect::<Vec<_>>();
        assert_eq!(any_balanced(parts(1)), "p0");
        assert_eq!(any_balanced(parts(2)), "(p0 OR p1)");
        assert_eq!(any_balanced(parts(5)), "((p0 OR p1) OR (p2 OR (p3 OR p4)))");
        let sql = any_balanced(parts(58));
        let words: Vec<&str> = sql.split(|c: char| "() ".contains(c)).filter(|w| !w.is_empty() && *w != "OR").collect();
        assert_eq!(words, parts(58));
        let depth = sql.chars().scan(0i32, |d, c| {
            *d += i32::from(c == '(') - i32::from(c == ')');
            Some(*d)
        });
        assert_eq!(depth.max(), Some(6), "{sql}");
    }

    #[test]
    fn a_list_of_networks_is_one_call() {
        let c = |d: &str| compile(&rule(&format!("  sel:\n    {d}\n  condition: sel\n")));
        // Any of several networks: each address read once. All of them: each compared.
        let any = "((ip_in_cidr(sourceipaddress, '10.0.0.0/8', '192.0.2.0/24')) IS TRUE)";
        assert_eq!(c("sourceIPAddress|cidr: [10.0.0.0/8, 192.0.2.0/24]").unwrap(), any);
        assert_eq!(c("sourceIPAddress|neq|cidr: [10.0.0.0/8, 192.0.2.0/24]").unwrap(), format!("(NOT {any})"));
        assert_eq!(
            c("requestParameters.cidrIp|cidr: [10.0.0.0/8, 192.0.2.0/24]").unwrap(),
            "((any_element(json_values(requestparameters, 'cidrIp'), ip_in_cidr(element(), '10.0.0.0/8', \
             '192.0.2.0/24'))) IS TRUE)"
        );
        let all = c("sourceIPAddress|cidr|all: [10.0.0.0/8, 10.1.0.0/16]").unwrap();
        assert_eq!(all.matches("ip_in_cidr(").count(), 2, "{all}");
        assert_eq!(
            c("sourceIPAddress|cidr: [10.0.0.0/8, 10.0.0.0/99]").unwrap_err().0,
            "sourceIPAddress|cidr with \"10.0.0.0/99\", which is not a network"
        );
        assert_eq!(
            c("sourceIPAddress|cidr|contains: 10.0.0.0/8").unwrap_err().0,
            "|cidr with a modifier that does not compare addresses"
        );
    }

    #[test]
    fn what_would_match_everything_or_nothing_by_accident_is_refused() {
        let c = |d: &str| compile(&rule(d));
        for empty in
            ["  sel: {}\n  condition: sel\n", "  sel: []\n  condition: sel\n", "  sel:\n    - {}\n  condition: sel\n"]
        {
            assert_eq!(c(empty).unwrap_err().0, "an empty detection", "{empty}");
        }
        assert_eq!(c("  sel:\n    eventName: x\n  condition: 0 of sel*\n").unwrap_err().0, "`0 of sel*`");
        // A list or map among a field's values: rsigma-parser gives its debug text, which no event holds.
        for nested in ["[[a, b]]", "{a: b}", "[x, [y]]"] {
            let sql = c(&format!("  sel:\n    eventName: {nested}\n  condition: sel\n"));
            assert_eq!(sql.unwrap_err().0, "eventName with a list or a map as one of its values", "{nested}");
        }
        // `field: []` is `field: null`, as pySigma reads it.
        assert_eq!(c("  sel:\n    errorCode: []\n  condition: sel\n").unwrap(), "(errorcode IS NULL)");
        assert_eq!(c("  sel:\n    errorCode|neq: []\n  condition: sel\n").unwrap(), "(NOT (errorcode IS NULL))");
    }

    #[test]
    fn a_number_yaml_read_is_compared_as_a_number() {
        let c = |d: &str| compile(&rule(d));
        // YAML reads 1.10 as 1.1: compared as a number, "1.10" matches; with a pattern, its text is looked for.
        let version = c("  sel:\n    eventVersion: 1.10\n  condition: sel\n").unwrap();
        assert_eq!(version, "(((TRY_CAST(eventversion AS DOUBLE) = 1.1)) IS TRUE)");
        assert!(c("  sel:\n    eventVersion|startswith: 1.08\n  condition: sel\n").unwrap().contains("'1.08%'"));
        assert_eq!(
            c("  sel:\n    eventVersion: .inf\n  condition: sel\n").unwrap_err().0,
            "eventVersion with inf, which is no SQL number"
        );
    }

    #[test]
    fn time_parts_compare_numbers_in_utc() {
        let c = |d: &str| compile(&rule(&format!("  sel:\n    {d}\n  condition: sel\n")));
        assert_eq!(c("eventTime|hour: 3").unwrap(), "(((date_part('hour', eventtime) = 3)) IS TRUE)");
        assert_eq!(c("eventTime|week|gte: 50").unwrap(), "(((date_part('week', eventtime) >= 50)) IS TRUE)");
        assert!(c("eventTime|day|neq: 1").unwrap().contains("(NOT (((date_part('day', eventtime) = 1)) IS TRUE))"));
        assert!(c("userIdentity.sessionContext.attributes.creationDate|year: 2024").is_ok());
        assert_eq!(c("eventTime|hour: noon").unwrap_err().0, "eventTime|hour with a value that is not a whole number");
        assert_eq!(c("eventName|month: 3").unwrap_err().0, "eventName|month: eventName is not a time");
        assert!(c("eventTime: '2024-01-01'").unwrap_err().0.starts_with("matching the time field eventTime"));
        assert_eq!(
            c("eventTime|hour|contains: 3").unwrap_err().0,
            "a time part with a modifier that does not compare numbers"
        );
        assert_eq!(field_text("eventTime").unwrap_err().0, "grouping or counting by the time field eventTime");
    }

    #[test]
    fn windash_takes_every_dash_for_every_other() {
        let variants = windash(&SigmaString::new("a-b/c*"), "f").unwrap();
        assert_eq!(variants.len(), 25);
        let originals: BTreeSet<String> = variants.iter().map(|v| v.original.clone()).collect();
        assert!(
            originals.contains("a-b/c*") && originals.contains("a/b-c*") && originals.contains("a\u{2015}b\u{2013}c*")
        );
        assert!(variants.iter().all(|v| v.parts.last() == Some(&StringPart::Special(SpecialChar::WildcardMulti))));
        assert_eq!(windash(&SigmaString::new("ab"), "f").unwrap().len(), 1);
        assert_eq!(
            windash(&SigmaString::new("-a-b-c-d-"), "f").unwrap_err().0,
            "f|windash with more than 4 dashes in one value"
        );
        let c = |d: &str| compile(&rule(&format!("  sel:\n    {d}\n  condition: sel\n")));
        let sql = c("userAgent|windash|contains: ' -x'").unwrap();
        assert_eq!(sql.matches("icontains(useragent, ").count(), 5, "{sql}");
        assert!(sql.contains("icontains(useragent, ' /x')"), "{sql}");
        // Keywords too: each variant searched for in every text column.
        let keywords = compile(&rule("  keywords:\n    '|windash':\n      - ' -x'\n  condition: keywords\n")).unwrap();
        assert!(keywords.contains("icontains(useragent, ' \u{2014}x')"), "{keywords}");
        assert_eq!(
            c("userAgent|windash|re: '-x'").unwrap_err().0,
            "|windash with a modifier that does not compare text"
        );
    }

    #[test]
    fn utf16_values_are_matched_in_their_base64() {
        let c = |d: &str| compile(&rule(&format!("  sel:\n    {d}\n  condition: sel\n")));
        assert!(c("requestParameters.x|wide|base64: cmd").unwrap().contains("= 'YwBtAGQA')"));
        assert!(c("requestParameters.x|utf16le|base64: cmd").unwrap().contains("= 'YwBtAGQA')"));
        assert!(c("requestParameters.x|utf16be|base64: cmd").unwrap().contains("= 'AGMAbQBk')"));
        assert!(c("requestParameters.x|utf16|base64: cmd").unwrap().contains("= '//5jAG0AZAA=')"));
        assert_eq!(
            c("requestParameters.x|wide: cmd").unwrap_err().0,
            "UTF-16 without |base64 (the lake's text is UTF-8)"
        );
        // At each offset, as for UTF-8 values: the encodings of the UTF-16 bytes.
        let offsets = c("requestParameters.x|wide|base64offset|contains: cmd").unwrap();
        for e in base64_offsets(&Utf16::Le.encode("cmd")) {
            assert!(offsets.contains(&format!("(element() LIKE '%{e}%' ESCAPE '\\')")), "{e}: {offsets}");
        }
    }

    #[test]
    fn payload_paths_match_any_of_their_values() {
        let c = |d: &str| compile(&rule(&format!("  sel:\n    {d}\n  condition: sel\n"))).unwrap();
        let values = "json_values(requestparameters, 'items', 'cidrIp')";
        assert_eq!(
            c("requestParameters.items.cidrIp: 0.0.0.0/0"),
            format!("((any_element({values}, (lower(element()) = '0.0.0.0/0'))) IS TRUE)")
        );
        assert_eq!(
            c("requestParameters.items.cidrIp|exists: true"),
            format!("(NOT (coalesce(cardinality({values}), 0) = 0))")
        );
        assert_eq!(c("requestParameters.items.cidrIp: null"), format!("(coalesce(cardinality({values}), 0) = 0)"));
        // A field compared with a payload path: with each of its values.
        let user = "json_values(requestparameters, 'userName')";
        assert_eq!(
            c("userIdentity.userName|fieldref: requestParameters.userName"),
            format!("((any_element({user}, (lower(useridentity['username']) = lower(element())))) IS TRUE)")
        );
        let e = compile(&rule("  sel:\n    requestParameters.a|fieldref: responseElements.b\n  condition: sel\n"))
            .unwrap_err();
        assert_eq!(e.0, "requestParameters.a|fieldref between two paths into payloads");
    }

    #[test]
    fn base64_offsets_match_the_specification() {
        // The three encodings Sigma's documentation gives for `/bin/bash`.
        assert_eq!(base64_offsets(b"/bin/bash"), vec!["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]);
        assert_eq!(base64_plain(b"/bin/bash"), "L2Jpbi9iYXNo");
        // Short values, as pySigma's slices give them (a value of no bytes panicked here).
        assert_eq!(base64_offsets(b""), vec!["", "", ""]);
        assert_eq!(base64_offsets(b"a"), vec!["Y", "", "h"]);
        assert_eq!(base64_offsets(b"ab"), vec!["YW", "Fi", "hY"]);
        assert_eq!(base64_offsets(b"abc"), vec!["YWJj", "FiY", "hYm"]);
    }

    #[test]
    fn event_names_are_those_every_match_must_have() {
        let names = |detection: &str| {
            let c = rsigma_parser::parse_sigma_yaml(&rule(detection)).unwrap();
            event_names(&c.rules[0].detection).map(|s| s.into_iter().collect::<Vec<_>>())
        };
        let both = "  sel:\n    eventSource: s3.amazonaws.com\n    eventName: [PutBucketPolicy, DeleteBucket]\n";
        assert_eq!(
            names(&format!("{both}  filter:\n    eventName: X\n  condition: sel and not filter\n")),
            Some(vec!["deletebucket".into(), "putbucketpolicy".into()])
        );
        assert_eq!(
            names("  a:\n    eventName: A\n  b:\n    eventName: B\n  condition: 1 of them\n"),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(names("  a:\n    eventName: A\n  b:\n    userAgent: B\n  condition: a or b\n"), None);
        assert_eq!(names("  a:\n    eventName|startswith: A\n  condition: a\n"), None);
        assert_eq!(names("  a:\n    eventName: 'Get*'\n  condition: a\n"), None);
        assert_eq!(names("  keywords:\n    - x\n  condition: keywords\n"), None);
    }

    #[test]
    fn selector_patterns() {
        assert!(glob_match("sel_*", "sel_a"));
        assert!(glob_match("*", "x"));
        assert!(!glob_match("sel_*", "filter"));
        assert!(glob_match("a*b*c", "axxbyyc"));
    }
}
