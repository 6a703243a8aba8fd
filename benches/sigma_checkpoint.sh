#!/usr/bin/env bash
# Benchmark: a scheduler's runs of a rule directory with `sigma --checkpoint`, on a copy of the lake that
# benches/convert.sh left in WORKDIR and the rules benches/sigma.sh wrote there. Times, medians of ROUNDS (5): a
# run over the whole lake without a checkpoint; the first run with one; a run with nothing new; and a run after a
# conversion of new deliveries (eight files of each account's last day, a day later, and of three accounts' day ten
# days before, late), with new event IDs. Checks first that the two runs with the checkpoint gave
# exactly the detections' rows of a whole-lake run after the conversion.
#
#   benches/sigma_checkpoint.sh [WORKDIR]     (after benches/convert.sh and benches/sigma.sh)
#   RULES=DIR benches/sigma_checkpoint.sh [WORKDIR]     (another rule directory)
#   COMPACT_BELOW=1MiB benches/sigma_checkpoint.sh [WORKDIR]     (the new deliveries converted with that
#       `--compact-below`: the partitions as those of a big organization's lake are, their files past the size that
#       is merged, so that a delivery adds a file beside them)
ROUNDS="${ROUNDS:-5}"
source "$(dirname "$0")/lake.sh"
rules="${RULES:-$work/sigma_rules}"
[ -d "$rules" ] || { echo "no rules at $rules: run benches/sigma.sh first" >&2; exit 2; }
ck="$work/checkpoint"
rm -rf "$ck" && mkdir -p "$ck"
cp -r "$lake" "$ck/lake"

python3 - "$work/corpus" "$ck/new" <<'PY'
import datetime, gzip, json, pathlib, sys
corpus, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
files = sorted(corpus.rglob("*.json.gz"))
days = sorted({f.parent.relative_to(f.parents[3]) for f in files})
last, back = days[-1], days[max(0, len(days) - 11)]
n = 0
for i, account in enumerate(sorted({f.parts[-7] for f in files})):
    for day, shift, tag in ((last, 1, "today"), (back, 0, "late")):
        if tag == "late" and i >= 3:
            continue
        for f in [f for f in files if f.parts[-7] == account and f.parent.relative_to(f.parents[3]) == day][:8]:
            doc = json.load(gzip.open(f))
            for r in doc["Records"]:
                r["eventID"] = r["eventID"][:-4] + tag[:2] + "00"
                t = datetime.datetime.strptime(r["eventTime"], "%Y-%m-%dT%H:%M:%SZ") + datetime.timedelta(days=shift)
                r["eventTime"] = t.strftime("%Y-%m-%dT%H:%M:%SZ")
            target = out / tag / account / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(target, "wt") as g:
                json.dump(doc, g)
            n += len(doc["Records"])
print(f"new deliveries: {n} events", file=sys.stderr)
PY

sigma() { "$bin" sigma --quiet --skip-unsupported --lake "$ck/lake" --format csv "$@" "$rules"; }
timed() { python3 benches/measure.py "$bin" sigma --quiet --skip-unsupported --lake "$ck/lake" --format csv -o /dev/null "$@" "$rules" 2>/dev/null | seconds; }
sigma --checkpoint "$ck/state" -o "$ck/first.csv"
cp "$ck/state" "$ck/state.first"
"$bin" convert --quiet "$ck/new" --lake "$ck/lake" ${COMPACT_BELOW:+--compact-below "$COMPACT_BELOW"} > /dev/null
cp "$ck/state" "$ck/state.before"
sigma --checkpoint "$ck/state" -o "$ck/after.csv"
sigma -o "$ck/whole.csv"
python3 - "$ck/first.csv" "$ck/after.csv" "$ck/whole.csv" <<'PY' || exit 1
import csv, sys
from collections import Counter
def detections(path):
    return Counter((r["rule_id"], r["eventid"], r["account_id"]) for r in csv.DictReader(open(path)) if not r["correlation_group"])
runs, whole = detections(sys.argv[1]) + detections(sys.argv[2]), detections(sys.argv[3])
if runs != whole:
    sys.exit(f"the runs with a checkpoint gave {sum(runs.values())} detection rows, a whole run {sum(whole.values())}")
print(f"the two runs with a checkpoint: the {sum(whole.values())} detection rows of a whole run, each once "
      f"({sum(detections(sys.argv[2]).values())} in the second)")
PY

w=(); f=(); e=(); a=()
for _ in $(seq "$ROUNDS"); do
    w+=("$(timed)")
    rm -f "$ck/state" && f+=("$(timed --checkpoint "$ck/state")")
    e+=("$(timed --checkpoint "$ck/state")")
    cp "$ck/state.before" "$ck/state" && a+=("$(timed --checkpoint "$ck/state")")
done
printf '%-58s %7.3fs\n' "whole lake, no checkpoint (after the conversion)" "$(median "${w[@]}")" \
    "first run with a checkpoint (every partition)" "$(median "${f[@]}")" \
    "a run with nothing new" "$(median "${e[@]}")" \
    "a run after the new deliveries ($(grep -c . "$ck/after.csv") lines)" "$(median "${a[@]}")"
echo "checkpoint file: $(stat -c %s "$ck/state.before") bytes for $(($(wc -l < "$ck/first.csv") - 1)) rows"
rm -rf "$ck/lake" "$ck/new"
