#!/usr/bin/env bash
# Benchmark: a directory of 60 Sigma rules run fused over a lake, against one full-lake GROUP BY on the same lake
# (the target: at most 2x), with DuckDB's time for that GROUP BY beside them, in the same run. Medians of ROUNDS (5).
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
if [ -z "${RULES:-}" ]; then
rm -rf "$rules" && mkdir -p "$rules"
python3 - "$rules" <<'PY'
import sys, pathlib
out = pathlib.Path(sys.argv[1])
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
def rule(body, level="medium"):
    global n
    n += 1
    (out / f"rule_{n:02}.yml").write_text(
        f"title: bench rule {n}\nid: bench-{n:02}\n" + head.format(level=level) + "detection:\n" + body)
for svc, names in services.items():
    for i in range(0, len(names), 1 if svc in ("ec2", "iam", "s3") else 2):
        listed = "".join(f"      - {x}\n" for x in names[i:i + 2])
        rule(f"  selection:\n    eventSource: {svc}.amazonaws.com\n    eventName:\n{listed}  condition: selection\n")
payload = [
    ("ModifySnapshotAttribute", "requestParameters.attributeType: CREATE_VOLUME_PERMISSION"),
    ("PutBucketPolicy", "requestParameters|contains|all:\n      - '\"Effect\"'\n      - '\"Principal\"'"),
    ("RunInstances", "requestParameters.instanceType|startswith: p4"),
    ("GetParameter", "requestParameters.withDecryption: 'true'"),
    ("ConsoleLogin", "additionalEventData.MFAUsed: 'No'"),
    ("CreateAccessKey", "requestParameters.userName|fieldref: userIdentity.userName"),
]
for name, item in payload:
    rule(f"  selection:\n    eventName: {name}\n    {item}\n  condition: selection\n")
rule("  sel:\n    userIdentity.type: Root\n  filter:\n    eventType: AwsServiceEvent\n  condition: sel and not filter\n", "high")
rule("  sel:\n    userIdentity.arn|re: '.+:assumed-role/aws:.+'\n  filter_main:\n    - eventSource: ssm.amazonaws.com\n    - sourceIPAddress: AWS Internal\n  condition: sel and not 1 of filter_main*\n", "high")
rule("  sel:\n    userAgent|contains:\n      - 'S3 Browser'\n      - TruffleHog\n      - kali\n      - Pacu\n  condition: sel\n")
rule("  sel:\n    eventName|startswith: [Create, Delete, Put, Attach]\n    recipientAccountId: '111111111111'\n  filter:\n    userAgent|contains: terraform\n  condition: sel and not filter\n")
rule("  sel:\n    sourceIPAddress|cidr: [185.220.100.0/22, 45.153.160.0/24]\n  condition: sel\n", "high")
rule("  sel:\n    errorCode: [AccessDenied, UnauthorizedOperation]\n    eventSource: sts.amazonaws.com\n  condition: sel\n", "low")
rule("  keywords:\n    - '<YOUR-BUCKET-NAME>'\n  condition: keywords\n")
rule("  sel:\n    eventSource: secretsmanager.amazonaws.com\n    eventName: [GetSecretValue, BatchGetSecretValue]\n  condition: sel | count() by userIdentity.arn > 20\n", "high")
rule("  sel:\n    errorCode: AccessDenied\n  timeframe: 10m\n  condition: sel | count() by sourceIPAddress > 30\n")
more = ["ec2:CreateSnapshot", "ec2:CopySnapshot", "ec2:ExportImage", "ec2:CreateImage", "ec2:DeleteVpc",
        "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:PassRole", "s3:PutBucketCors",
        "s3:PutBucketReplication", "kms:CreateGrant", "lambda:UpdateFunctionCode", "rds:DeleteDBCluster",
        "sts:AssumeRoleWithSAML", "route53domains:TransferDomainToAnotherAwsAccount", "ssm:SendCommand",
        "ssm:StartSession", "ebs:StartSnapshot", "glue:CreateDevEndpoint", "eks:CreateCluster"]
for svc, name in (m.split(":") for m in more):
    if n >= 60:
        break
    rule(f"  sel:\n    eventSource: {svc}.amazonaws.com\n    eventName: {name}\n  condition: sel\n", "low")
PY
fi

group_by="SELECT eventname, count(*) AS n FROM cloudtrail GROUP BY eventname ORDER BY n DESC, eventname"
# A GROUP BY over more of the columns the rules read, for scale.
wide_group_by="SELECT eventsource, eventname, useridentity.type, errorcode, useragent, count(*) AS n FROM cloudtrail GROUP BY 1, 2, 3, 4, 5"
# A GROUP BY that reads every column the rules read, and does nothing else with them: what any engine must decode
# for this directory. The keyword rule reads every text column; the identity fields are those the rules and
# principal_name read.
text_columns=$("$bin" query --lake "$lake" --format csv "DESCRIBE cloudtrail" | python3 -c "
import csv, sys
print(', '.join(f'count({r[0]})' for r in csv.reader(sys.stdin) if r[1] == 'Utf8'))")
identity=$(printf 'count(useridentity.%s), ' type arn username accountid principalid invokedby onbehalfof.userid)
read_group_by="SELECT eventname, count(*), ${identity}count(eventtime), $text_columns FROM cloudtrail GROUP BY eventname"
"$bin" sigma --skip-unsupported --lake "$lake" --format csv -o "$work/sigma_out.csv" "$rules"
echo "sigma: $(($(wc -l < "$work/sigma_out.csv") - 1)) rows from $(ls "$rules" | wc -l) rules"
s=(); g=(); w=(); r=(); d=()
for _ in $(seq "$ROUNDS"); do
    s+=("$(python3 benches/measure.py "$bin" sigma --quiet --skip-unsupported --lake "$lake" --format csv -o /dev/null "$rules" 2>/dev/null | seconds)")
    g+=("$(trailsql_seconds "$group_by")")
    w+=("$(trailsql_seconds "$wide_group_by")")
    r+=("$(trailsql_seconds "$read_group_by")")
    d+=("$(duckdb_seconds "$group_by")")
done
s=$(median "${s[@]}"); g=$(median "${g[@]}"); w=$(median "${w[@]}"); r=$(median "${r[@]}"); d=$(median "${d[@]}")
printf '%-44s %9.3fs\n' "trailsql sigma, $(ls "$rules" | wc -l) rules" "$s" "trailsql GROUP BY eventname" "$g" \
    "trailsql GROUP BY five columns" "$w" "trailsql GROUP BY reading the rules' columns" "$r" \
    "duckdb GROUP BY eventname" "$d"
printf 'sigma / GROUP BY eventname = %.2f (target <= 2); / five columns = %.2f; / the rules'"'"' columns = %.2f\n' \
    "$(ratio "$s" "$g")" "$(ratio "$s" "$w")" "$(ratio "$s" "$r")"
