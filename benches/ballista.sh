#!/usr/bin/env bash
# Every saved query over a converted lake (the one benches/convert.sh leaves in WORKDIR), run locally and on a
# Ballista scheduler with two executor processes on loopback; prints a Markdown row per query with both times and
# whether the rows are the same (compared sorted, whole).
#
#   benches/ballista.sh WORKDIR        (needs a build with the default `ballista` feature: cargo build)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/trailsql-bench}"
bin="${CARGO_TARGET_DIR:-target}/debug/trailsql"
lake="$work/lake_trailsql"
[ -d "$lake" ] || { echo "no lake at $lake: run benches/convert.sh first" >&2; exit 2; }
cargo build -q --bin trailsql
port=50850
"$bin" ballista-scheduler --bind "127.0.0.1:$port" 2>"$work/ballista-scheduler.log" &
pids=($!)
for i in 1 2; do
    "$bin" ballista-executor --scheduler "127.0.0.1:$port" --bind-host 127.0.0.1 --port $((port + 2 * i - 1)) \
        --grpc-port $((port + 2 * i)) --concurrent-tasks 1 2>"$work/ballista-executor-$i.log" &
    pids+=($!)
done
trap 'kill "${pids[@]}"' EXIT
key=$("$bin" query --lake "$lake" --format csv "SELECT useridentity.accesskeyid FROM cloudtrail
    WHERE useridentity.type = 'Root' AND useridentity.accesskeyid IS NOT NULL LIMIT 1" | tail -1)
seconds() { local s; s=$(date +%s.%N); "$@" | sort > "$out"; python3 -c "import time; print(f'{time.time() - $s:.1f}')"; }
echo "| saved query | rows | Ballista | local | rows equal |"
echo "|---|---|---|---|---|"
for q in $(ls queries | sed 's/\.sql$//'); do
    args=(run "$q" --lake "$lake" --format csv)
    [ "$q" = access_key_activity ] && args+=(-p "key=$key")
    out="$work/local.csv" local_s=$(seconds "$bin" "${args[@]}")
    out="$work/ballista.csv" ballista_s=$(seconds "$bin" --ballista "df://127.0.0.1:$port" "${args[@]}")
    same=no; cmp -s "$work/local.csv" "$work/ballista.csv" && [ -s "$work/local.csv" ] && same=yes
    echo "| \`$q\` | $(($(wc -l < "$work/local.csv") - 1)) | $ballista_s s | $local_s s | $same |"
done
