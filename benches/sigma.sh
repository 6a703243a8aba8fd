#!/usr/bin/env bash
# Benchmark: a directory of 60 Sigma rules run fused over a lake, against one full-lake GROUP BY on the same lake
# (the target: at most 2x), with DuckDB's times for the same GROUP BYs beside them, and DuckDB's for the same rules
# written as SQL (its rows checked equal to ours first; the bench's own rules only), in the same run. Medians of
# ROUNDS (5).
#
# The full-lake GROUP BY the target is judged against reads what the rules read: every column a rule tests, and
# every text field (the directory has a keyword rule, which searches them all). A GROUP BY of one dictionary column
# (`GROUP BY eventname`) is printed too: it decodes a small part of that, and no engine runs the rules within 2x of
# it (DuckDB's own ratios are printed beside ours).
#
#   benches/sigma.sh [WORKDIR]     (after benches/convert.sh, which writes WORKDIR/lake_trailsql)
#   RULES=DIR benches/sigma.sh [WORKDIR]     (a directory of your own, e.g. SigmaHQ's rules/cloud/aws/cloudtrail:
#                                             its supported rules are run, the others listed)
#
# The rules are written here, in the shapes of SigmaHQ's CloudTrail rules: event names of a service (most of
# them), payload fields and payload text, identity types with a filter, user agents, a regular expression over
# ARNs, CIDR ranges, one keyword search, and two older `| count() by … > N` aggregations.
ROUNDS="${ROUNDS:-5}"
source "$(dirname "$0")/lake.sh"
rules="${RULES:-$work/sigma_rules}"
# The text fields of an event (every string member of the schema, at any depth, less the partition's account): the
# keyword rule searches them all, and the GROUP BY that reads what the rules read counts them.
text_fields=$("$bin" schema --lake "$lake" | awk '$2 == "string" && $1 != "account_id" {print $1}')
duck_sql="$work/sigma_duckdb.sql"
if [ -z "${RULES:-}" ]; then
rm -rf "$rules" && mkdir -p "$rules"
# Each rule is written twice: as Sigma, and as the SQL a DuckDB user would write for it by hand (`duck`), so that
# DuckDB runs the same job over the same Parquet. The two outputs are compared before anything is timed.
python3 - "$rules" "$duck_sql" $text_fields <<'PY'
import sys, pathlib
out = pathlib.Path(sys.argv[1])
text_fields = sys.argv[3:]
head = "logsource:\n  product: aws\n  service: cloudtrail\nlevel: {level}\n"
services = {
    "cloudtrail": ["StopLogging", "DeleteTrail", "UpdateTrail", "PutEventSelectors"],
    "ec2": ["AuthorizeSecurityGroupIngress", "ModifySnapshotAttribute", "CreateKeyPair", "ImportKeyPair",
            "ModifyInstanceAttribute", "DeleteFlowLogs", "CreateRoute", "DisableEbsEncryptionByDefault"],
    "iam": ["CreateAccessKey", "CreateLoginProfile", "UpdateLoginProfile", "AttachUserPolicy", "PutUserPolicy",
            "CreateUser", "DeleteRolePermissionsBoundary", "UpdateAssumeRolePolicy", "DeleteSAMLProvider"],
    "s3": ["PutBucketPolicy", "DeleteBucketPolicy", "PutBucketAcl", "PutBucketVersioning", "DeleteBucket",
           "PutBucketPublicAccessBlock", "PutBucketLogging"],
    "kms": ["ScheduleKeyDeletion", "DisableKey", "ImportKeyMaterial", "PutKeyPolicy"],
    "guardduty": ["DeleteDetector", "UpdateDetector", "CreateFilter"],
    "config": ["StopConfigurationRecorder", "DeleteDeliveryChannel"],
    "secretsmanager": ["GetSecretValue", "BatchGetSecretValue"],
    "lambda": ["CreateFunctionUrlConfig", "UpdateFunctionConfiguration", "AddLayerVersionPermission"],
    "rds": ["ModifyDBInstance", "RestoreDBInstanceFromDBSnapshot", "ModifyDBSnapshotAttribute"],
    "sts": ["GetSessionToken", "GetFederationToken"],
    "organizations": ["LeaveOrganization", "CreateAccount"],
}
n = 0
duck = []  # (id, title, level, DuckDB condition) of each detection
def q(v):
    return "'" + v.replace("'", "''") + "'"
def eq(column, *values):
    return f"lower({column}) IN ({', '.join(q(v.lower()) for v in values)})"
def has(column, *values):
    return "(" + " OR ".join(f"contains(lower({column}), {q(v.lower())})" for v in values) + ")"
octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
def path(payload, key):
    return f"json_extract_string({payload}, {q('$.' + key)})"
def rule(body, condition, level="medium"):
    global n
    n += 1
    (out / f"rule_{n:02}.yml").write_text(
        f"title: bench rule {n}\nid: bench-{n:02}\n" + head.format(level=level) + "detection:\n" + body)
    if condition:
        duck.append((f"bench-{n:02}", f"bench rule {n}", level, condition))
for svc, names in services.items():
    for i in range(0, len(names), 1 if svc in ("ec2", "iam", "s3") else 2):
        listed = "".join(f"      - {x}\n" for x in names[i:i + 2])
        rule(f"  selection:\n    eventSource: {svc}.amazonaws.com\n    eventName:\n{listed}  condition: selection\n",
             f"{eq('eventsource', svc + '.amazonaws.com')} AND {eq('eventname', *names[i:i + 2])}")
payload = [
    ("ModifySnapshotAttribute", "requestParameters.attributeType: CREATE_VOLUME_PERMISSION",
     eq(path("requestparameters", "attributeType"), "CREATE_VOLUME_PERMISSION")),
    # A bare payload with `contains` searches its JSON text, the quotes as written (an object's) or escaped (a
    # policy held as a string).
    ("PutBucketPolicy", "requestParameters|contains|all:\n      - '\"Effect\"'\n      - '\"Principal\"'",
     has("requestparameters", '"Effect"', '\\"Effect\\"') + " AND "
     + has("requestparameters", '"Principal"', '\\"Principal\\"')),
    ("RunInstances", "requestParameters.instanceType|startswith: p4",
     f"starts_with(lower({path('requestparameters', 'instanceType')}), 'p4')"),
    ("GetParameter", "requestParameters.withDecryption: 'true'", eq(path("requestparameters", "withDecryption"), "true")),
    ("ConsoleLogin", "additionalEventData.MFAUsed: 'No'", eq(path("additionaleventdata", "MFAUsed"), "No")),
    ("CreateAccessKey", "requestParameters.userName|fieldref: userIdentity.userName",
     f"lower({path('requestparameters', 'userName')}) = lower(useridentity.username)"),
]
for name, item, condition in payload:
    rule(f"  selection:\n    eventName: {name}\n    {item}\n  condition: selection\n",
         f"{eq('eventname', name)} AND {condition}")
rule("  sel:\n    userIdentity.type: Root\n  filter:\n    eventType: AwsServiceEvent\n  condition: sel and not filter\n",
     f"{eq('useridentity.type', 'Root')} AND NOT coalesce({eq('eventtype', 'AwsServiceEvent')}, false)", "high")
rule("  sel:\n    userIdentity.arn|re: '.+:assumed-role/aws:.+'\n  filter_main:\n    - eventSource: ssm.amazonaws.com\n    - sourceIPAddress: AWS Internal\n  condition: sel and not 1 of filter_main*\n",
     "regexp_matches(useridentity.arn, '.+:assumed-role/aws:.+') AND NOT coalesce("
     f"{eq('eventsource', 'ssm.amazonaws.com')} OR {eq('sourceipaddress', 'AWS Internal')}, false)", "high")
rule("  sel:\n    userAgent|contains:\n      - 'S3 Browser'\n      - TruffleHog\n      - kali\n      - Pacu\n  condition: sel\n",
     has("useragent", "S3 Browser", "TruffleHog", "kali", "Pacu"))
rule("  sel:\n    eventName|startswith: [Create, Delete, Put, Attach]\n    recipientAccountId: '111111111111'\n  filter:\n    userAgent|contains: terraform\n  condition: sel and not filter\n",
     "(" + " OR ".join(f"starts_with(lower(eventname), '{p}')" for p in ("create", "delete", "put", "attach")) +
     f") AND {eq('recipientaccountid', '111111111111')} AND NOT coalesce({has('useragent', 'terraform')}, false)")
rule("  sel:\n    sourceIPAddress|cidr: [185.220.100.0/22, 45.153.160.0/24]\n  condition: sel\n",
     # Each range as the regular expression of its addresses: faster in DuckDB than computing the address.
     "regexp_full_match(sourceipaddress, '185\\.220\\.10[0-3]\\." + octet + "') OR "
     "regexp_full_match(sourceipaddress, '45\\.153\\.160\\." + octet + "')", "high")
rule("  sel:\n    errorCode: [AccessDenied, UnauthorizedOperation]\n    eventSource: sts.amazonaws.com\n  condition: sel\n",
     f"{eq('errorcode', 'AccessDenied', 'UnauthorizedOperation')} AND {eq('eventsource', 'sts.amazonaws.com')}", "low")
def found(field, value):
    """A value contained in a text field; in one of a list's members (`resources[].arn`) for any of its items."""
    if "[]." not in field:
        return has(field, value)
    items, member = field.split("[].")
    return f"coalesce(len(list_filter({items}, lambda r: {has('r.' + member, value)})) > 0, false)"
rule("  keywords:\n    - '<YOUR-BUCKET-NAME>'\n  condition: keywords\n",
     " OR ".join(found(f, "<YOUR-BUCKET-NAME>") for f in text_fields))
# The two aggregations, as their own queries below.
rule("  sel:\n    eventSource: secretsmanager.amazonaws.com\n    eventName: [GetSecretValue, BatchGetSecretValue]\n  condition: sel | count() by userIdentity.arn > 20\n",
     None, "high")
rule("  sel:\n    errorCode: AccessDenied\n  timeframe: 10m\n  condition: sel | count() by sourceIPAddress > 30\n", None)
more = ["ec2:CreateSnapshot", "ec2:CopySnapshot", "ec2:ExportImage", "ec2:CreateImage", "ec2:DeleteVpc",
        "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:PassRole", "s3:PutBucketCors",
        "s3:PutBucketReplication", "kms:CreateGrant", "lambda:UpdateFunctionCode", "rds:DeleteDBCluster",
        "sts:AssumeRoleWithSAML", "route53domains:TransferDomainToAnotherAwsAccount", "ssm:SendCommand",
        "ssm:StartSession", "ebs:StartSnapshot", "glue:CreateDevEndpoint", "eks:CreateCluster"]
for svc, name in (m.split(":") for m in more):
    if n >= 60:
        break
    rule(f"  sel:\n    eventSource: {svc}.amazonaws.com\n    eventName: {name}\n  condition: sel\n",
         f"{eq('eventsource', svc + '.amazonaws.com')} AND {eq('eventname', name)}", "low")

# principal_name as a DuckDB macro.
macros = r"""
CREATE MACRO nonempty(v) AS CASE WHEN v <> '' THEN v END;
CREATE MACRO arn_resource(a) AS CASE WHEN regexp_full_match(a, '(?s)arn:[A-Za-z0-9-]+:[A-Za-z0-9-]+:[^:]*:[^:]*:.*')
    THEN regexp_extract(a, '(?s)^arn:[^:]*:[^:]*:[^:]*:[^:]*:(.*)$', 1) END;
CREATE MACRO principal_name(u) AS coalesce(
    CASE coalesce(u.type, '')
        WHEN 'Root' THEN 'root'
        WHEN 'AssumedRole' THEN CASE WHEN starts_with(arn_resource(u.arn), 'assumed-role/') THEN substr(arn_resource(u.arn), 14) END
        WHEN 'Role' THEN regexp_extract(arn_resource(u.arn), '(?s)[^/]*$')
        WHEN 'FederatedUser' THEN CASE WHEN starts_with(arn_resource(u.arn), 'federated-user/') THEN substr(arn_resource(u.arn), 16) END
        WHEN 'AWSService' THEN nonempty(u.invokedby)
        WHEN 'AWSAccount' THEN 'account ' || nonempty(u.accountid)
        WHEN 'IdentityCenterUser' THEN coalesce(nonempty(u.onbehalfof.userid), nonempty(u.username))
        ELSE nonempty(u.username) END,
    nonempty(u.username), arn_resource(u.arn), nonempty(u.principalid), nonempty(u.invokedby));
"""
columns = "eventtime, account_id, awsregion, eventsource, eventname, principal, sourceipaddress, eventid"
# An event without a value for the group-by field is in no group.
def counted(rule_id, title, level, condition, group, group_name, threshold, window):
    return f"""SELECT {q(rule_id)}, {q(title)}, {q(level)}, {columns}, {q(group_name + '=')} || coalesce(g, '(null)'), total
FROM (SELECT *, max(CASE WHEN n > {threshold} THEN n END) OVER (PARTITION BY g) AS total,
        min(CASE WHEN n > {threshold} THEN rn END) OVER (PARTITION BY g) AS first
    FROM (SELECT *, count(*) OVER (PARTITION BY g ORDER BY eventtime RANGE BETWEEN {window} PRECEDING AND CURRENT ROW) AS n,
            row_number() OVER (PARTITION BY g ORDER BY eventtime, eventid) AS rn
        FROM (SELECT eventtime, account_id, awsregion, eventsource, eventname, principal_name(useridentity) AS principal,
                sourceipaddress, eventid, {group} AS g FROM cloudtrail WHERE ({condition}) AND {group} IS NOT NULL)))
WHERE n > {threshold} AND rn = first"""
hits = ", ".join(f"CASE WHEN {c} THEN {i} END" for i, (_, _, _, c) in enumerate(duck))
query = f"""SELECT r.rule_id, r.rule_title, r.level, {', '.join('m.' + c for c in columns.split(', '))},
    CAST(NULL AS VARCHAR) AS correlation_group, CAST(NULL AS BIGINT) AS correlation_count
FROM (SELECT *, unnest(hits) AS i FROM (
    SELECT eventtime, account_id, awsregion, eventsource, eventname, principal_name(useridentity) AS principal,
        sourceipaddress, eventid, list_filter([{hits}], lambda x: x IS NOT NULL) AS hits
    FROM cloudtrail
    WHERE {' OR '.join('(' + c + ')' for _, _, _, c in duck)})) m
JOIN (VALUES {', '.join(f'({i}, {q(a)}, {q(b)}, {q(c)})' for i, (a, b, c, _) in enumerate(duck))}) AS r(i, rule_id, rule_title, level)
    ON m.i = r.i
UNION ALL
{counted('bench-52', 'bench rule 52', 'high',
         f"{eq('eventsource', 'secretsmanager.amazonaws.com')} AND {eq('eventname', 'GetSecretValue', 'BatchGetSecretValue')}",
         'useridentity.arn', 'userIdentity.arn', 20, 'UNBOUNDED')}
UNION ALL
{counted('bench-53', 'bench rule 53', 'medium', eq('errorcode', 'AccessDenied'), 'sourceipaddress', 'sourceIPAddress',
         30, "INTERVAL '10 minutes'")}
ORDER BY eventtime, rule_id, eventid"""
pathlib.Path(sys.argv[2]).write_text(macros + "\n-- the query\n" + query + "\n")
PY
fi

group_by="SELECT eventname, count(*) AS n FROM cloudtrail GROUP BY eventname ORDER BY n DESC, eventname"
# A GROUP BY over more of the columns the rules read, for scale.
wide_group_by="SELECT eventsource, eventname, useridentity.type, errorcode, useragent, count(*) AS n FROM cloudtrail GROUP BY 1, 2, 3, 4, 5"
# A GROUP BY that reads every column the rules read, and does nothing else with them: what any engine must decode
# for this directory. The keyword rule reads every text field (a list's members: the list).
counts=$(printf 'count(%s), ' $(printf '%s\n' $text_fields account_id | sed 's/\[\]\..*//' | sort -u))
read_group_by="SELECT eventname, count(*), count(eventtime), ${counts%, } FROM cloudtrail GROUP BY eventname"
# DuckDB's time for one query alone, in a connection that is already open and has its views (not the interpreter's
# start or the import, which `duckdb_seconds` counts): the unit of DuckDB's own ratios.
duckdb_query_seconds() {
    python3 - "$work/duckdb_views.sql" "$1" <<'PY'
import duckdb, sys, time
con = duckdb.connect()
con.execute(open(sys.argv[1]).read())
start = time.perf_counter()
con.execute(sys.argv[2]).fetchall()
print(time.perf_counter() - start)
PY
}
# DuckDB running the same rules (the bench's own directory only): the SQL written above, from the same Parquet, its
# CSV to FILE; prints the seconds of the query alone (not the interpreter's start, the import or the views' set-up).
duckdb_job() {
    python3 - "$work/duckdb_views.sql" "$duck_sql" "$1" <<'PY'
import duckdb, sys, time
con = duckdb.connect()
con.execute(open(sys.argv[1]).read())
macros, query = open(sys.argv[2]).read().split("\n-- the query\n")
con.execute(macros)
start = time.perf_counter()
con.execute(f"COPY ({query}) TO '{sys.argv[3]}' (FORMAT csv, HEADER)")
print(time.perf_counter() - start)
PY
}
"$bin" sigma --skip-unsupported --lake "$lake" --format csv -o "$work/sigma_out.csv" "$rules"
echo "sigma: $(($(wc -l < "$work/sigma_out.csv") - 1)) rows from $(ls "$rules" | wc -l) rules"
same_job=
if [ -z "${RULES:-}" ]; then
    duckdb_job "$work/sigma_duckdb_out.csv" > /dev/null
    # Correctness before speed: the same matches, the same principals and the same correlation counts.
    python3 - "$work/sigma_out.csv" "$work/sigma_duckdb_out.csv" <<'PY' || exit 1
import csv, sys
def rows(path):
    keys = ("rule_id", "eventid", "principal", "correlation_group", "correlation_count")
    return sorted(tuple(r[k] or "" for k in keys) for r in csv.DictReader(open(path)))
ours, duck = rows(sys.argv[1]), rows(sys.argv[2])
if ours != duck:
    a, b = set(ours), set(duck)
    sys.exit(f"trailsql and DuckDB differ: {len(ours)} and {len(duck)} rows; only trailsql: {sorted(a - b)[:3]}, "
             f"only DuckDB: {sorted(b - a)[:3]}")
print(f"DuckDB, the same rules as SQL: the same {len(duck)} rows")
PY
    same_job=1
fi
s=(); g=(); w=(); r=(); d=(); dg=(); dr=(); j=()
for _ in $(seq "$ROUNDS"); do
    s+=("$(python3 benches/measure.py "$bin" sigma --quiet --skip-unsupported --lake "$lake" --format csv -o /dev/null "$rules" 2>/dev/null | seconds)")
    g+=("$(trailsql_seconds "$group_by")")
    w+=("$(trailsql_seconds "$wide_group_by")")
    r+=("$(trailsql_seconds "$read_group_by")")
    d+=("$(duckdb_seconds "$group_by")")
    dg+=("$(duckdb_query_seconds "$group_by")")
    dr+=("$(duckdb_query_seconds "$read_group_by")")
    [ -z "$same_job" ] || j+=("$(duckdb_job /dev/null)")
done
s=$(median "${s[@]}"); g=$(median "${g[@]}"); w=$(median "${w[@]}"); r=$(median "${r[@]}"); d=$(median "${d[@]}")
dg=$(median "${dg[@]}"); dr=$(median "${dr[@]}")
read_name="GROUP BY reading the rules' columns"
[ -n "$same_job" ] || read_name="GROUP BY reading every text field"
printf '%-58s %9.3fs\n' "trailsql sigma, $(ls "$rules" | wc -l) rules" "$s" \
    "trailsql $read_name" "$r" "trailsql GROUP BY eventname" "$g" \
    "trailsql GROUP BY five columns" "$w" "duckdb GROUP BY eventname (the whole process)" "$d" \
    "duckdb $read_name (query alone)" "$dr" "duckdb GROUP BY eventname (query alone)" "$dg"
if [ -n "$same_job" ]; then
    verdict=$(python3 -c "print('met' if $s <= 2 * $r else 'NOT met')")
    printf 'sigma / the GROUP BY reading the rules'"'"' columns = %.2f (target <= 2: %s)\n' "$(ratio "$s" "$r")" "$verdict"
else
    # That GROUP BY reads every text field, which only a directory with a keyword rule must: no verdict here.
    printf 'sigma / a GROUP BY reading every text field = %.2f (the verdict is for the bench'"'"'s own directory)\n' \
        "$(ratio "$s" "$r")"
fi
printf 'sigma / GROUP BY eventname = %.2f; / five columns = %.2f\n' "$(ratio "$s" "$g")" "$(ratio "$s" "$w")"
if [ -n "$same_job" ]; then
    j=$(median "${j[@]}")
    printf '%-58s %9.3fs\n' "duckdb, the same rules as SQL (query alone)" "$j"
    printf 'sigma / DuckDB on the same rules = %.2f; DuckDB on them / its GROUP BY reading their columns = %.2f, / its GROUP BY eventname = %.2f\n' \
        "$(ratio "$s" "$j")" "$(ratio "$j" "$dr")" "$(ratio "$j" "$dg")"
fi
