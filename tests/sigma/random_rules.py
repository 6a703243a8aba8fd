"""Random Sigma detection rules over the values of real CloudTrail events, for a differential test of
`trailsql sigma` against pySigma's SQLite backend (`pysigma_oracle.py`).

Each rule combines two or three selections of one to three items under one of the condition shapes; an item is a
field the events have, with a modifier (none, contains, startswith, endswith, all, re, exists, neq alone and with a
list, cidr, fieldref, gte/lt on a number, null, wildcards, a list of values) and values drawn from what the events
hold there: whole, cut, in another case. What the two readers are documented to read differently is not drawn:
`|re` on a boolean field (the lake holds `true` where an event wrote "True"), quotes in a payload's text (trailsql
finds them escaped too), numeric comparison of a field that holds text (SQLite orders any text above any number),
CIDR ranges not on an octet boundary (the backend matches text prefixes), keywords, case folding beyond ASCII.

With `--correlations`, COUNT correlations instead (event_count, value_count, temporal, temporal_ordered,
value_sum, value_avg, value_median, value_percentile; one or two group-by fields; timespans from 30 seconds to 30
days) over eight base rules.

    python3 random_rules.py EVENTS.ndjson SEED COUNT OUT_DIR [--correlations]
"""

import json
import pathlib
import random
import re
import sys
import uuid

FIELDS = [
    "eventName", "eventSource", "userAgent", "sourceIPAddress", "errorCode", "errorMessage", "awsRegion",
    "eventType", "eventCategory", "recipientAccountId", "eventVersion", "readOnly", "managementEvent",
    "userIdentity.type", "userIdentity.arn", "userIdentity.userName", "userIdentity.accountId",
    "userIdentity.invokedBy", "userIdentity.sessionContext.sessionIssuer.userName",
    "userIdentity.sessionContext.attributes.mfaAuthenticated", "tlsDetails.tlsVersion",
    "requestParameters.bucketName", "requestParameters.userName", "requestParameters.roleName",
    "requestParameters.policyArn", "requestParameters.instanceType", "additionalEventData.MFAUsed",
    "responseElements.ConsoleLogin",
]
BOOLEAN = {"readOnly", "managementEvent", "userIdentity.sessionContext.attributes.mfaAuthenticated"}
NUMBER = "requestParameters.durationSeconds"
FIELDREF = ["userIdentity.userName", "requestParameters.userName", "userIdentity.accountId", "recipientAccountId"]
NETWORKS = ["10.0.0.0/8", "192.168.0.0/16", "72.21.0.0/16", "1.0.0.0/8", "203.0.113.0/24", "52.0.0.0/8"]
PAYLOAD_WORDS = ["bucketName", "userName", "stratus", "Allow", "arn:aws:iam", "Effect", "ConsoleLogin", "MFAUsed"]
CONDITIONS = [
    "sel", "sel and not filter", "1 of sel*", "all of sel*", "(sel or sel2) and not filter", "sel and sel2",
    "not sel", "all of them", "1 of them", "not (sel or sel2)", "sel and not 1 of filter*",
]


def member(obj, path):
    """The value at a dotted path, keys matched without regard to case (as both readers do)."""
    for key in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key, next((v for k, v in obj.items() if k.lower() == key.lower()), None))
    return obj


def pools(events):
    """The most common values of each field, as text."""
    out = {}
    for field in FIELDS + [NUMBER]:
        counts = {}
        for e in events:
            v = member(e, field)
            if isinstance(v, bool):
                v = "true" if v else "false"
            if isinstance(v, (str, int, float)) and str(v).isascii():
                counts[str(v)] = counts.get(str(v), 0) + 1
        out[field] = [v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:40]] or ["x"]
    return out


def quoted(v):
    return "'" + v.replace("'", "''") + "'"


def listed(values):
    return "\n" + "".join(f"      - {quoted(v)}\n" for v in values)


class Rules:
    def __init__(self, seed, values):
        self.rng = random.Random(seed)
        self.values = values

    def recase(self, s):
        r = self.rng.random()
        return s.lower() if r < 0.3 else s.upper() if r < 0.5 else s

    def cut(self, v, kind):
        if len(v) <= 3:
            return v
        a = self.rng.randrange(0, len(v) - 2)
        b = self.rng.randrange(a + 1, len(v) + 1)
        return {"contains": v[a:b], "startswith": v[:b], "endswith": v[a:]}[kind]

    def item(self):
        rng = self.rng
        field = rng.choice(FIELDS)
        pool = self.values[field]
        v = rng.choice(pool)
        kind = rng.choice([
            "eq", "eq", "contains", "startswith", "endswith", "re", "exists", "neq", "list", "all", "wildcard",
            "null", "number", "cidr", "fieldref", "payload", "neq_list", "endswith_list",
        ])
        if kind == "number":
            op = rng.choice(["gt", "gte", "lt", "lte"])
            return NUMBER, f"|{op}: {rng.choice([900, 1000, 3600, 43200])}"
        if kind == "cidr":
            return "sourceIPAddress", f"|cidr: {quoted(rng.choice(NETWORKS))}"
        if kind == "fieldref":
            a, b = rng.sample(FIELDREF, 2)
            return a, f"|fieldref: {b}"
        if kind == "payload":
            where = rng.choice(["requestParameters", "responseElements", "additionalEventData"])
            return where, f"|contains: {quoted(rng.choice(PAYLOAD_WORDS))}"
        if kind == "eq":
            return field, f": {quoted(self.recase(v))}"
        if kind in ("contains", "startswith", "endswith"):
            return field, f"|{kind}: {quoted(self.recase(self.cut(v, kind)))}"
        if kind == "re" and field not in BOOLEAN:
            return field, f"|re: {quoted('^' + re.escape(v[: max(1, len(v) // 2)]))}"
        if kind == "exists":
            return field, f"|exists: {rng.choice(['true', 'false'])}"
        if kind == "neq":
            return field, f"|neq: {quoted(v)}"
        if kind == "list":
            return field, ":" + listed([self.recase(x) for x in rng.sample(pool, min(len(pool), rng.randint(1, 3)))])
        if kind == "all":
            words = [w for w in re.split(r"[\s/-]+", v) if w][:3] or [v]
            return field, "|contains|all:" + listed(words)
        if kind == "wildcard" and len(v) > 4:
            i = rng.randrange(1, len(v) - 1)
            return field, f": {quoted(v[:i] + rng.choice(['*', '?']) + v[i + 1:])}"
        if kind == "neq_list":
            return field, "|neq:" + listed(rng.sample(pool, min(len(pool), 2)))
        if kind == "endswith_list":
            return field, "|endswith:" + listed([x[-4:] for x in rng.sample(pool, min(len(pool), 3))])
        return field, ": null"

    def selection(self):
        items = {}
        for _ in range(self.rng.randint(1, 3)):
            field, rest = self.item()
            key = field + rest.split(":")[0]
            items.setdefault(key, f"    {field}{rest.rstrip()}\n")
        return "".join(items.values())

    def rule(self, n):
        condition = self.rng.choice(CONDITIONS)
        names = ["sel"]
        if "sel2" in condition or "sel*" in condition or "them" in condition:
            names.append("sel2")
        if "filter" in condition:
            names.append("filter")
        detection = "".join(f"  {name}:\n{self.selection()}" for name in names)
        rule_id = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        return (
            f"title: random rule {n}\nid: {rule_id}\nlevel: low\nlogsource:\n  product: aws\n  service: cloudtrail\n"
            f"detection:\n{detection}  condition: {condition}\n"
        )


BASES = {
    "base_errors": "errorCode|exists: true",
    "base_iam": "eventSource: iam.amazonaws.com",
    "base_describe": "eventName|startswith: Describe",
    "base_list_get": "eventName|startswith: [List, Get]",
    "base_assumed": "userIdentity.type: AssumedRole",
    "base_s3": "eventSource: s3.amazonaws.com",
    "base_console": "eventName: ConsoleLogin",
    "base_sts": "eventSource: sts.amazonaws.com",
}
# Not `userAgent`: pySigma's backend groups values without regard to case, trailsql by the exact value.
GROUPS = ["userIdentity.arn", "sourceIPAddress", "recipientAccountId", "eventSource", "awsRegion"]
COUNTED = ["eventName", "sourceIPAddress", "awsRegion", "errorCode", "userAgent"]
NUMBERS = [
    "additionalEventData.bytesTransferredIn", "additionalEventData.bytesTransferredOut",
    "requestParameters.durationSeconds",
]


def correlations(rng, count, out):
    for name, selection in BASES.items():
        (out / f"{name}.yml").write_text(
            f"title: {name}\nid: {uuid.uuid5(uuid.NAMESPACE_DNS, name)}\nname: {name}\nlevel: low\n"
            f"logsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    {selection}\n  condition: sel\n",
            encoding="utf-8",
        )
    for n in range(count):
        if rng.random() < 0.2:
            chain(rng, n, out)
            continue
        kind = rng.choice([
            "event_count", "event_count", "value_count", "temporal", "temporal_ordered", "value_sum", "value_avg",
            "value_median", "value_percentile",
        ])
        several = kind.startswith("temporal") or rng.random() < 0.2
        # Some of three rules in order: `gte: 2` or `gt: 1`.
        some_in_order = kind == "temporal_ordered" and rng.random() < 0.5
        rules = rng.sample(list(BASES), 3 if some_in_order else 2) if several else [rng.choice(list(BASES))]
        lines = [f"  type: {kind}", f"  rules: [{', '.join(rules)}]"]
        groups = rng.sample(GROUPS, rng.choice([1, 1, 2]))
        # Field aliases: a group-by field, or the measured one, that each rule names in its own events.
        aliases = {}
        if rng.random() < 0.4:
            i = rng.randrange(len(groups))
            aliases[f"group_alias_{i}"] = {r: rng.choice(GROUPS) for r in rules}
            groups[i] = f"group_alias_{i}"
        lines.append(f"  group-by: [{', '.join(groups)}]")
        lines.append(f"  timespan: {rng.choice(['30s', '5m', '1h', '12h', '2d', '30d'])}")

        def measured(fields):
            if rng.random() < 0.3:
                aliases["value_alias"] = {r: rng.choice(fields) for r in rules}
                return "value_alias"
            return rng.choice(fields)

        if some_in_order:
            lines += ["  condition:", rng.choice(["    gte: 2", "    gt: 1"])]
        if kind in ("event_count", "value_count"):
            lines += ["  condition:", f"    {rng.choice(['gte', 'gte', 'gt'])}: {rng.choice([1, 2, 3, 5, 10, 25])}"]
            if kind == "value_count":
                lines.append(f"    field: {measured(COUNTED)}")
        elif kind.startswith("value_"):
            op = rng.choice(["gte", "gt", "lte", "lt"])
            lines += ["  condition:", f"    {op}: {rng.choice([1, 100, 900, 1000, 3600, 100000])}"]
            lines.append(f"    field: {measured(NUMBERS)}")
            if kind == "value_percentile":
                lines.append(f"    percentile: {rng.choice([0, 10, 25, 50, 90, 95, 100])}")
        if aliases:
            lines.append("  aliases:")
            for alias, mapping in aliases.items():
                lines.append(f"    {alias}:")
                lines += [f"      {rule}: {field}" for rule, field in mapping.items()]
        rule_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        (out / f"correlation_{n:03}.yml").write_text(
            f"title: random correlation {n}\nid: {rule_id}\nlevel: low\ncorrelation:\n" + "\n".join(lines) + "\n",
            encoding="utf-8",
        )


def chain(rng, n, out):
    """A correlation of a correlation: an event_count by one or two fields, and one that counts its alerts (with a
    base rule's events, for the temporal types) by some of those fields."""
    groups = rng.sample(GROUPS, rng.choice([1, 2]))
    child = f"chained_{n:03}"
    (out / f"correlation_{n:03}_counted.yml").write_text(
        f"title: counted correlation {n}\nid: {uuid.UUID(int=rng.getrandbits(128), version=4)}\nname: {child}\n"
        f"level: low\ncorrelation:\n  type: event_count\n  rules: [{rng.choice(list(BASES))}]\n"
        f"  group-by: [{', '.join(groups)}]\n  timespan: {rng.choice(['30s', '5m', '1h', '12h', '2d'])}\n"
        f"  condition:\n    gte: {rng.choice([1, 2, 3, 5])}\n",
        encoding="utf-8",
    )
    kind = rng.choice(["event_count", "temporal", "temporal_ordered"])
    rules = [child] + ([rng.choice(list(BASES))] if kind != "event_count" else [])
    if kind == "temporal_ordered" and rng.random() < 0.5:
        rules.reverse()
    lines = [f"  type: {kind}", f"  rules: [{', '.join(rules)}]"]
    lines.append(f"  group-by: [{', '.join(rng.sample(groups, rng.randint(1, len(groups))))}]")
    lines.append(f"  timespan: {rng.choice(['5m', '1h', '12h', '2d', '30d'])}")
    if kind == "event_count":
        lines += ["  condition:", f"    gte: {rng.choice([1, 2, 3, 5])}"]
    (out / f"correlation_{n:03}.yml").write_text(
        f"title: random correlation {n}\nid: {uuid.UUID(int=rng.getrandbits(128), version=4)}\nlevel: low\n"
        "correlation:\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )


def main():
    events_file, seed, count, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), pathlib.Path(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)
    if sys.argv[5:] == ["--correlations"]:
        correlations(random.Random(seed), count, out)
        return
    events = [json.loads(line) for line in open(events_file, encoding="utf-8") if line.strip()]
    rules = Rules(seed, pools(events))
    for n in range(count):
        (out / f"random_{n:03}.yml").write_text(rules.rule(n), encoding="utf-8")


if __name__ == "__main__":
    main()
