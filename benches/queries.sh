#!/usr/bin/env bash
# Benchmark: privileged_sessions and two saved queries over a large converted corpus, trailsql beside DuckDB
# running the same SQL over the same Parquet, in the same run. The two take turns, ROUNDS times (7); medians count.
#
#   benches/queries.sh [WORKDIR]     (after benches/convert.sh, which writes WORKDIR/lake_trailsql)
source "$(dirname "$0")/lake.sh"
key=$("$bin" query --lake "$lake" --format csv \
    "SELECT useridentity.accesskeyid FROM cloudtrail WHERE useridentity.type = 'IAMUser' LIMIT 1" | tail -1)

# name | trailsql SQL | DuckDB SQL
cat > "$work/queries.tsv" <<SQL
privileged_sessions	SELECT * FROM privileged_sessions ORDER BY action_time, action_event_id	SELECT * FROM privileged_sessions ORDER BY action_time, action_event_id
access_key_activity	SELECT eventtime, recipientaccountid, awsregion, eventsource, eventname, errorcode, sourceipaddress FROM cloudtrail WHERE useridentity.accesskeyid = '$key' ORDER BY eventtime, eventid	SELECT eventtime, recipientaccountid, awsregion, eventsource, eventname, errorcode, sourceipaddress FROM cloudtrail WHERE useridentity.accesskeyid = '$key' ORDER BY eventtime, eventid
group_by_eventname	SELECT eventname, count(*) AS n FROM cloudtrail GROUP BY eventname ORDER BY n DESC, eventname	SELECT eventname, count(*) AS n FROM cloudtrail GROUP BY eventname ORDER BY n DESC, eventname
access_denied_bursts	SELECT useridentity.arn, recipientaccountid, date_bin(INTERVAL '10 minutes', eventtime) AS w, count(*) AS denied FROM cloudtrail WHERE errorcode IN ('AccessDenied', 'AccessDeniedException', 'UnauthorizedOperation') GROUP BY 1, 2, 3 HAVING count(*) >= 2 ORDER BY denied DESC, w, 1	SELECT useridentity.arn, recipientaccountid, time_bucket(INTERVAL '10 minutes', eventtime) AS w, count(*) AS denied FROM cloudtrail WHERE errorcode IN ('AccessDenied', 'AccessDeniedException', 'UnauthorizedOperation') GROUP BY 1, 2, 3 HAVING count(*) >= 2 ORDER BY denied DESC, w, 1
SQL

# Correctness before speed: privileged_sessions gives exactly the generator's own record of the sessions.
[ -f "$work/sessions.csv" ] || { echo "$work/sessions.csv is missing: run benches/convert.sh $work first" >&2; exit 1; }
"$bin" query --lake "$lake" --format csv \
    "SELECT assume_root_event_id, action_event_id FROM privileged_sessions ORDER BY 1, 2" > "$work/sessions_found.csv"
cmp -s "$work/sessions.csv" "$work/sessions_found.csv" ||
    { echo "privileged_sessions differs from the generator's record: diff $work/sessions.csv $work/sessions_found.csv" >&2; exit 1; }
echo "privileged_sessions: the generator's $(($(wc -l < "$work/sessions.csv") - 1)) session actions, exactly"

printf '%-22s %10s %10s %8s %8s\n' query trailsql duckdb ratio rows
while IFS=$'\t' read -r name ts_sql duck_sql; do
    rows=$("$bin" query --lake "$lake" --format csv "$ts_sql" | tail -n +2 | wc -l)
    duck_rows=$(python3 -c "
import duckdb, sys
con = duckdb.connect(); con.execute(open('$work/duckdb_views.sql').read())
print(len(con.execute(sys.argv[1]).fetchall()))" "$duck_sql")
    [ "$rows" = "$duck_rows" ] || { echo "$name: trailsql found $rows rows, DuckDB $duck_rows" >&2; exit 1; }
    # The two commands take turns, so that both meet the same moments of a shared machine; medians, not bests.
    ts=(); ds=()
    for _ in $(seq "$ROUNDS"); do
        ts+=("$(trailsql_seconds "$ts_sql")")
        ds+=("$(duckdb_seconds "$duck_sql")")
    done
    t=$(median "${ts[@]}"); d=$(median "${ds[@]}")
    printf '%-22s %9.3fs %9.3fs %8.2f %8s\n' "$name" "$t" "$d" "$(ratio "$t" "$d")" "$rows"
done < "$work/queries.tsv"
