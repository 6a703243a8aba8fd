#!/usr/bin/env bash
# Benchmark: `trailsql convert` beside DuckDB doing the same job on the same files, in the same run.
# Reports events/s, MB/s of uncompressed JSON and peak RSS for both (medians of ROUNDS runs each), and the ratio.
#
#   benches/convert.sh [WORKDIR]      (a corpus of about 550k events, 650 MB of JSON, is generated once)
#   SHAPE=wide benches/convert.sh DIR (30 accounts x 90 days: 2,700 partitions from 10,800 files of 28 events)
#
# Needs: a release build (cargo build --release), python3 with duckdb (pip install duckdb).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/trailsql-bench}"
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$work"
cargo build --release --no-default-features --bin trailsql --example gen_corpus
bin="$target/release/trailsql"
gen="$target/release/examples/gen_corpus"
python3 -c "import duckdb" 2>/dev/null || pip install -q duckdb

corpus="$work/corpus"
# The generator's own record of the privileged sessions goes beside the corpus, for benches/queries.sh to check.
if [ ! -d "$corpus" ] || [ ! -f "$work/sessions.csv" ]; then
    rm -rf "$corpus"
    if [ "${SHAPE:-narrow}" = wide ]; then
        "$gen" --out "$corpus" --accounts 30 --regions 1 --days 90 --files-per-day 4 --events-per-file 28 --sessions-per-day 1 --sessions-csv "$work/sessions.csv"
    else
        "$gen" --out "$corpus" --accounts 8 --regions 3 --days 2 --files-per-day 96 --events-per-file 120 --sessions-per-day 4 --sessions-csv "$work/sessions.csv"
    fi
fi
# Bytes of JSON and events, in one pass (grep -o over the long lines of these files took minutes).
read -r json_bytes events < <(find "$corpus" -name '*.json.gz' -exec zcat {} + | python3 -c '
import sys
total, events, tail, key = 0, 0, b"", b"\"eventID\""
for chunk in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
    total += len(chunk)
    data = tail + chunk
    events += data.count(key)
    # The last bytes are searched again with the next chunk, unless they end a match already counted.
    tail = data[-(len(key) - 1):] if not data.endswith(key) else b""
print(total, events)')
"$bin" schema --format duckdb > "$work/event_type.txt"

# The two converts take turns, ROUNDS times (3), so that both meet the same moments of a shared machine; the
# medians count. The last round's lakes stay for benches/queries.sh.
# Earlier lakes are moved aside, and deleted once every round is timed: for minutes after a mass deletion, ext4
# creates each file slower (its inode allocator reads and skips the recently deleted inodes one by one). Deleting
# the last round's lakes just before a convert slowed trailsql, which creates four files per partition (data and
# index, staged then renamed into place), from 6.2 to 9.2 s on the wide corpus; a convert seldom follows the
# deletion of thousands of files by seconds.
aside="$work/lakes_to_delete"
mkdir -p "$aside"
ts=(); duck=()
for round in $(seq "${ROUNDS:-3}"); do
    for l in lake_trailsql lake_duckdb; do
        if [ -e "$work/$l" ]; then mv "$work/$l" "$aside/$l.$round.$$"; fi
    done
    sync
    ts+=("$(python3 benches/measure.py "$bin" convert --quiet "$corpus" --lake "$work/lake_trailsql")")
    duck+=("$(python3 benches/measure.py python3 benches/duckdb_convert.py "$corpus" "$work/lake_duckdb" "$work/event_type.txt")")
done
median() { python3 -c "
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
print(json.dumps({k: statistics.median(r[k] for r in runs) for k in ('seconds', 'peak_rss_mb')}))" "$@"; }
ts=$(median "${ts[@]}"); duck=$(median "${duck[@]}")
rm -rf "$aside"

python3 - "$ts" "$duck" "$events" "$json_bytes" <<'PY'
import json, sys
ts, duck = json.loads(sys.argv[1]), json.loads(sys.argv[2])
events, json_bytes = int(sys.argv[3]), int(sys.argv[4])
print(f"corpus: {events} events, {json_bytes / 1e6:.0f} MB of JSON")
print(f"{'':10} {'seconds':>8} {'events/s':>10} {'MB/s JSON':>10} {'peak RSS MB':>12}")
for name, r in (("trailsql", ts), ("duckdb", duck)):
    s = r["seconds"]
    print(f"{name:10} {s:8.1f} {events / s:10.0f} {json_bytes / 1e6 / s:10.1f} {r['peak_rss_mb']:12.0f}")
print(f"trailsql throughput = {duck['seconds'] / ts['seconds']:.1f} x DuckDB's")
PY
