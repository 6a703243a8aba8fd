"""A second reader of Sigma rules, for the tests of `trailsql sigma`: pySigma's SQLite backend.

pySigma is the Sigma project's own library; its SQLite backend turns a rule into SQL over a table with a column per
field. This script builds that table from CloudTrail events the way the backend documents it (a column per field a
rule names, holding the value's text and compared without regard to case; a `fulltext_field` holding every value
of the event, for keywords; the time in seconds for correlations), runs each rule there and prints, tab-separated:
`match rule_id eventID` for every event a detection matches; `group rule_id group count first` for every group a
correlation fires for, with its largest count and the time of its first alert; `unsupported rule_id reason` for a
rule the backend does not convert. Nothing here shares code or understanding with trailsql's compiler.

Where a field's path passes through lists, the event gets one row per combination of their values: a condition on
such a field holds when it holds for one of them, as Sigma reads fields over lists. (A negation of such a field
then holds where one value fails it, not all: the tests' rules negate no field that has several values.)

    python3 pysigma_oracle.py EVENTS.ndjson RULE_DIR > found.tsv
"""

import copy
import datetime
import itertools
import json
import math
import pathlib
import re
import sqlite3
import sys
import uuid

import yaml
from sigma.backends.sqlite import sqliteBackend
from sigma.backends.sqlite.runtime import execute_plan
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.rule import SigmaDetection, SigmaRule
from sigma.types import SigmaCompareExpression

FULLTEXT = "event_text"
ROW_ID = "event_row_id"
TIME = "event_seconds"
# An event whose list fields combine into more rows than this is reported, not silently cut.
MAX_ROWS = 10_000


def member(obj, key):
    """The value of `key` in a JSON object: the key as spelled, else spelled in another case."""
    if not isinstance(obj, dict):
        return None
    if key in obj:
        return obj[key]
    for k, v in obj.items():
        if k.lower() == key.lower():
            return v
    return None


def values_at(value, path):
    """Every value at a dotted path, through lists."""
    if isinstance(value, list):
        return [v for item in value for v in values_at(item, path)]
    if not path:
        return [] if value is None else [value]
    return values_at(member(value, path[0]), path[1:])


def as_text(v):
    """A JSON value as the text of its column: strings as they are, numbers and booleans as JSON writes them."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def leaves(v):
    """Every scalar of a JSON value, as text: what a keyword is searched in."""
    if isinstance(v, dict):
        return [t for x in v.values() for t in leaves(x)]
    if isinstance(v, list):
        return [t for x in v for t in leaves(x)]
    return [] if v is None else [as_text(v)]


def compared(rule):
    """The fields a rule compares as numbers (`|lt`, `|gte`, …): their columns hold numbers, as SQLite compares a
    text with a number as two texts."""
    def items(detection):
        for item in detection.detection_items:
            if isinstance(item, SigmaDetection):
                yield from items(item)
            else:
                yield item
    return {
        item.field
        for detection in rule.detection.detections.values()
        for item in items(detection)
        if any(isinstance(v, SigmaCompareExpression) for v in item.value)
    }


def rule_docs(directory):
    """Every YAML document of the directory's rule files, with a UUID for its id as pySigma wants one (ours are
    names: kept as the rule's `name`, by which correlations refer to it)."""
    for file in sorted(pathlib.Path(directory).glob("*.yml")):
        for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")):
            name = str(doc["id"])
            doc.setdefault("name", name)
            doc["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
            yield name, doc


def seconds(event):
    """The event's time in seconds since 1970, as the backend's correlations read `timestamp_field`."""
    t = str(member(event, "eventTime")).replace(" ", "T").replace("Z", "+00:00")
    parsed = datetime.datetime.fromisoformat(t)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def new_backend():
    """The backend over this script's table: keywords in `FULLTEXT`, the correlations' time in `TIME`."""
    return sqliteBackend(fulltext_field=FULLTEXT, timestamp_field=TIME, timestamp_format="unix")


def convert_correlation(doc, bases, correlations):
    """The backend's plan of a correlation (its own temporary tables and indexes, then the query, as its runtime
    runs them): converted in a collection of its own with the detection rules and the correlations it counts, at
    any depth, which the backend converts for it as parts of the correlation (a rule it generates alone comes
    first)."""
    counted, todo = [], list(doc["correlation"].get("rules") or [])
    while todo:
        other = correlations.get(todo.pop())
        if other is not None and all(other is not c for c in counted):
            counted.append(other)
            todo += other["correlation"].get("rules") or []
    collection = SigmaCollection(
        [SigmaRule.from_dict(copy.deepcopy(b)) for b in bases]
        + [SigmaCorrelationRule.from_dict(copy.deepcopy(c)) for c in counted]
        + [SigmaCorrelationRule.from_dict(copy.deepcopy(doc))]
    )
    collection.resolve_rule_references()
    return json.loads(new_backend().convert(collection, output_format="zircolite"))[-1]["correlation_plan"]


def main():
    events = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
    backend = new_backend()
    docs = list(rule_docs(sys.argv[2]))
    rules, correlations, bases = [], [], []
    # By the id the file gives and by name, as rules refer to one another.
    by_name = {key: doc for name, doc in docs if "correlation" in doc for key in (name, doc["name"])}
    # A correlation another one counts gives no alerts of its own, unless that one says `generate: true`.
    counted = {
        ref for _, doc in docs if "correlation" in doc and not doc["correlation"].get("generate")
        for ref in doc["correlation"].get("rules") or []
    }
    # Detections first: the correlations are converted with those the backend reads. Its own refusals (a
    # condition it cannot parse, a modifier it has no SQL for) are reported, for the test to account for.
    for name, doc in sorted(docs, key=lambda d: "correlation" in d[1]):
        try:
            if "correlation" in doc:
                plan = convert_correlation(doc, bases, by_name)
                if name not in counted and doc["name"] not in counted:
                    correlations.append((name, doc["correlation"], plan))
            else:
                rule = SigmaRule.from_dict(copy.deepcopy(doc))
                rules.append((name, rule, backend.required_fields(rule), backend.convert_rule(rule)))
                bases.append(doc)
        except Exception as error:
            print(f"unsupported\t{name}\t{type(error).__name__}: {error}".replace("\n", " "))
    fields = {f for _, _, needs, _ in rules for f in needs}
    for _, c, _ in correlations:
        fields.update(c.get("group-by") or [])
        # value_count's field.
        if isinstance(c.get("condition"), dict) and "field" in c["condition"]:
            fields.add(c["condition"]["field"])
        # The fields that aliases name in each rule's events (an alias is no field of its own).
        for alias, mapping in (c.get("aliases") or {}).items():
            fields.discard(alias)
            fields.update(mapping.values())
    fields = sorted(fields - {FULLTEXT})
    numbers = {f for _, rule, _, _ in rules for f in compared(rule)}

    db = sqlite3.connect(":memory:")
    db.create_function("regexp", 2, lambda p, v: v is not None and re.search(p, str(v)) is not None)
    columns = [ROW_ID, TIME] + fields + [FULLTEXT]
    types = {TIME: "REAL", **{f: "NUMERIC" for f in numbers}}
    quoted = ", ".join(f'"{c}" {types.get(c, "TEXT COLLATE NOCASE")}' for c in columns)
    db.execute(f"CREATE TABLE logs ({quoted})")
    for e in events:
        choices = [[as_text(v) for v in values_at(e, f.split("."))] or [None] for f in fields]
        combinations = math.prod(len(c) for c in choices)
        if combinations > MAX_ROWS:
            sys.exit(f"event {member(e, 'eventID')}: {combinations} combinations of list values")
        text = "\n".join(leaves(e))
        for row in itertools.product(*choices):
            db.execute(
                f"INSERT INTO logs VALUES ({', '.join('?' * len(columns))})",
                (member(e, "eventID"), seconds(e), *row, text),
            )

    for name, _, _, queries in rules:
        for sql in queries:
            assert sql.startswith("SELECT * FROM logs WHERE "), sql
            matched = f"SELECT DISTINCT {ROW_ID} FROM ({sql}) WHERE {ROW_ID} IS NOT NULL"
            for (event_id,) in db.execute(matched):
                print(f"match\t{name}\t{event_id}")

    # A correlation gives an alert at each window where its condition holds; by group, the largest count and the
    # time of the first, as trailsql gives a group's row.
    for name, c, plan in correlations:
        groups = {}
        alerts, _ = execute_plan(db, plan, include_events=False)
        for alert in alerts:
            keys = alert["group_keys"]
            group = ", ".join(f"{f}={'(null)' if keys.get(f) is None else keys[f]}" for f in c.get("group-by") or [])
            count, first = groups.get(group, (alert["metric_value"], alert["occurrence_time"]))
            groups[group] = (max(count, alert["metric_value"]), min(first, alert["occurrence_time"]))
        for group, (count, first) in sorted(groups.items()):
            print(f"group\t{name}\t{group}\t{count}\t{first}")


if __name__ == "__main__":
    main()
