# Sourced by the benchmarks that query a converted lake (queries.sh, sigma.sh): the release binary, the lake that
# benches/convert.sh leaves in WORKDIR (the first argument), DuckDB's views of it, and the timing helpers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="${1:-/tmp/trailsql-bench}"
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/trailsql"
lake="$work/lake_trailsql"
[ -d "$lake" ] || { echo "no lake at $lake: run benches/convert.sh first" >&2; exit 2; }
ROUNDS="${ROUNDS:-7}"

# DuckDB gets the table and the views from `trailsql ddl --engine duckdb`: the same views, tested equal in
# tests/integration/engines.rs, not a hand translation. DuckDB's session runs in UTC, as the DDL expects.
{ echo "SET TimeZone = 'UTC'; SET enable_progress_bar = false;"; "$bin" ddl --engine duckdb --lake "$lake"; } > "$work/duckdb_views.sql"

seconds() { python3 -c "import json,sys; print(json.load(sys.stdin)['seconds'])"; }
median() { python3 -c "import statistics,sys; print(statistics.median(float(a) for a in sys.argv[1:]))" "$@"; }
ratio() { python3 -c "print($1 / $2)"; }
# The wall time of one trailsql query, and of the same SQL in DuckDB over the same lake.
trailsql_seconds() { python3 benches/measure.py "$bin" query --lake "$lake" --format csv -o /dev/null "$1" | seconds; }
duckdb_seconds() {
    python3 benches/measure.py python3 -c "
import duckdb, sys
con = duckdb.connect(); con.execute(open('$work/duckdb_views.sql').read())
con.execute(sys.argv[1]).fetchall()" "$1" | seconds
}
