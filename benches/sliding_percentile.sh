#!/usr/bin/env bash
# Benchmark: a median over sliding windows, as Sigma's `value_median` and `value_percentile` correlations compute
# it: trailsql's `window_percentile` against DataFusion's own `percentile_cont` in the same session, `avg` as the
# floor, and DuckDB's `median` over the same windows, in the same run (medians of ROUNDS, 3). The answers are
# checked equal first.
#
#   benches/sliding_percentile.sh [WORKDIR]     (after benches/convert.sh, which writes WORKDIR/lake_trailsql)
#   SPAN='1 hour' benches/sliding_percentile.sh  (the window; one day by default)
ROUNDS="${ROUNDS:-3}"
source "$(dirname "$0")/lake.sh"
span="${SPAN:-1 day}"
# The numbers of each account's events over the window that ends at each of them: on the narrow lake a day holds
# some 35,000 events of an account.
window="OVER (PARTITION BY recipientaccountid ORDER BY eventtime RANGE BETWEEN INTERVAL '$span' PRECEDING AND CURRENT ROW)"
number="TRY_CAST(eventversion AS DOUBLE) + (date_part('hour', eventtime) * 60 + date_part('minute', eventtime)) / 10000.0"
sql() { echo "SELECT count(*), round(sum(m), 2) FROM (SELECT $1($number$2) $window AS m FROM cloudtrail)"; }
ours=$(sql window_percentile ", 0.5")
theirs=$(sql percentile_cont ", 0.5")
floor=$(sql avg "")
duck=$(sql median "")

answer() { "$bin" query --lake "$lake" --format csv "$1" | tail -1; }
a=$(answer "$ours"); b=$(answer "$theirs")
d=$(python3 -c "
import duckdb, sys
con = duckdb.connect(); con.execute(open('$work/duckdb_views.sql').read())
n, s = con.execute(sys.argv[1]).fetchone(); print(f'{n},{round(s, 2)}')" "$duck")
echo "window_percentile: $a; percentile_cont: $b; DuckDB's median: $d"
[ "$a" = "$b" ] && [ "$a" = "$d" ] || { echo "the answers differ" >&2; exit 1; }

w=(); p=(); f=(); k=()
for _ in $(seq "$ROUNDS"); do
    w+=("$(trailsql_seconds "$ours")")
    p+=("$(trailsql_seconds "$theirs")")
    f+=("$(trailsql_seconds "$floor")")
    k+=("$(duckdb_seconds "$duck")")
done
w=$(median "${w[@]}"); p=$(median "${p[@]}"); f=$(median "${f[@]}"); k=$(median "${k[@]}")
printf '%-36s %9.3fs\n' "trailsql window_percentile" "$w" "trailsql percentile_cont" "$p" "trailsql avg (the floor)" "$f" \
    "duckdb median" "$k"
echo "window_percentile / percentile_cont = $(ratio "$w" "$p"); / avg = $(ratio "$w" "$f"); / DuckDB = $(ratio "$w" "$k")"
