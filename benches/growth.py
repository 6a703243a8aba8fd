"""Benchmark: how cost grows with the lake. For lakes of more and more partitions (accounts x days, up to 100 x 365),
converts the same corpus with trailsql and with DuckDB, then runs the same queries on both, taking turns; prints a
Markdown table and draws benches/growth.svg.

usage: python3 benches/growth.py [WORKDIR] [--points 10x30,30x90,60x180,100x365] [--rounds 3]

Needs a release build (benches/convert.sh makes one) and python3 with duckdb. Each point's corpus has one Region and
FILES_PER_DAY delivery files of EVENTS_PER_FILE events per account and day, plus the generator's AssumeRoot sessions.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

FILES_PER_DAY = 1
EVENTS_PER_FILE = 24
ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
BIN, GEN = str(TARGET / "trailsql"), str(TARGET / "examples" / "gen_corpus")
MEASURE = str(ROOT / "benches" / "measure.py")

GROUP_BY = "SELECT eventname, count(*) AS n FROM cloudtrail GROUP BY eventname ORDER BY n DESC, eventname"
PRIVILEGED = "SELECT * FROM privileged_sessions ORDER BY action_time, action_event_id"
SESSION_PAIRS = "SELECT assume_root_event_id, action_event_id FROM privileged_sessions ORDER BY 1, 2"


def measure(*cmd):
    out = subprocess.run([sys.executable, MEASURE, *cmd], check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def duckdb_cmd(views, sql):
    code = "import duckdb,sys; con=duckdb.connect(); con.execute(open(sys.argv[1]).read()); " \
           "print(len(con.execute(sys.argv[2]).fetchall()))"
    return [sys.executable, "-c", code, views, sql]


def one_partition(lake):
    account = sorted(p.name for p in Path(lake).iterdir() if p.name.startswith("account_id="))[-1]
    day = sorted(p.name for p in (Path(lake) / account).iterdir() if p.name.startswith("event_date="))[-1]
    return account.split("=", 1)[1], day.split("=", 1)[1]


def check_sessions(lake, sessions):
    """Correctness before speed: privileged_sessions gives exactly the generator's own record of the sessions."""
    got = subprocess.run([BIN, "query", "--lake", str(lake), "--format", "csv", SESSION_PAIRS], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    if got != sessions.read_text():
        sys.exit(f"privileged_sessions over {lake} differs from the generator's record {sessions}")


def point(work, accounts, days, rounds):
    base = Path(work) / f"{accounts}x{days}"
    corpus, lake, duck_lake = base / "corpus", base / "lake_trailsql", base / "lake_duckdb"
    sessions = base / "sessions.csv"
    if not corpus.exists() or not sessions.exists():
        subprocess.run(["rm", "-rf", str(corpus)], check=True)
        subprocess.run([GEN, "--out", str(corpus), "--accounts", str(accounts), "--regions", "1", "--days", str(days),
                        "--files-per-day", str(FILES_PER_DAY), "--events-per-file", str(EVENTS_PER_FILE),
                        "--sessions-per-day", "1", "--sessions-csv", str(sessions)], check=True,
                       stdout=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", str(lake), str(duck_lake)], check=True)
    event_type = base / "event_type.txt"
    event_type.write_text(subprocess.run([BIN, "schema", "--format", "duckdb"], check=True, stdout=subprocess.PIPE,
                                         text=True).stdout)
    row = {"partitions": accounts * days}
    row["convert"] = measure(BIN, "convert", "--quiet", str(corpus), "--lake", str(lake))
    row["duck_convert"] = measure(sys.executable, str(ROOT / "benches" / "duckdb_convert.py"), str(corpus),
                                  str(duck_lake), str(event_type))
    views = base / "duckdb_views.sql"
    ddl = subprocess.run([BIN, "ddl", "--engine", "duckdb", "--lake", str(lake)], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    views.write_text("SET TimeZone = 'UTC';\nSET enable_progress_bar = false;\n" + ddl)
    check_sessions(lake, sessions)
    account, day = one_partition(lake)
    one_day = f"SELECT eventname, count(*) AS n FROM cloudtrail WHERE account_id = '{account}' " \
              f"AND event_date = DATE '{day}' GROUP BY eventname ORDER BY n DESC, eventname"
    queries = {"one_day": one_day, "privileged_sessions": PRIVILEGED, "group_by": GROUP_BY}
    for name, sql in queries.items():
        trailsql = [BIN, "query", "--lake", str(lake), "--format", "csv", "-o", "/dev/null", sql]
        measure(*trailsql)  # both read the files once before the timed rounds: the page cache holds them
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(measure(*trailsql))
            theirs.append(measure(*duckdb_cmd(str(views), sql)))
        row[name] = statistics.median(r["seconds"] for r in ours)
        row["duck_" + name] = statistics.median(r["seconds"] for r in theirs)
        row["rss_" + name] = max(r["peak_rss_mb"] for r in ours)
        row["duck_rss_" + name] = max(r["peak_rss_mb"] for r in theirs)
    # Planning alone: EXPLAIN lists the partitions and plans the views without reading a row.
    row["planning"] = statistics.median(
        measure(BIN, "query", "--lake", str(lake), "-o", "/dev/null", "EXPLAIN " + PRIVILEGED)["seconds"]
        for _ in range(rounds))
    return row


def table(rows):
    head = ("| partitions | convert s (DuckDB) | convert RSS MB (DuckDB) | planning s | one account-day s | "
            "privileged_sessions s (DuckDB) | GROUP BY s (DuckDB) |")
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        lines.append(
            f"| {r['partitions']:,} | {r['convert']['seconds']:.1f} ({r['duck_convert']['seconds']:.1f}) "
            f"| {r['convert']['peak_rss_mb']:.0f} ({r['duck_convert']['peak_rss_mb']:.0f}) | {r['planning']:.3f} "
            f"| {r['one_day']:.3f} | {r['privileged_sessions']:.2f} ({r['duck_privileged_sessions']:.2f}) "
            f"| {r['group_by']:.2f} ({r['duck_group_by']:.2f}) |")
    return "\n".join(lines)


def svg(rows, path):
    """A log-log line chart: seconds against partitions, trailsql solid, DuckDB dashed."""
    import math
    series = [
        ("convert", lambda r: r["convert"]["seconds"], lambda r: r["duck_convert"]["seconds"], "#1f77b4"),
        ("privileged_sessions", lambda r: r["privileged_sessions"], lambda r: r["duck_privileged_sessions"],
         "#d62728"),
        ("GROUP BY eventname", lambda r: r["group_by"], lambda r: r["duck_group_by"], "#2ca02c"),
        ("one account-day", lambda r: r["one_day"], lambda r: r["duck_one_day"], "#9467bd"),
        ("planning", lambda r: r["planning"], None, "#ff7f0e"),
    ]
    xs = [r["partitions"] for r in rows]
    ys = [f(r) for _, a, b, _ in series for f in (a, b) if f for r in rows]
    x0, x1 = math.log10(min(xs)) - 0.1, math.log10(max(xs)) + 0.1
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    w, h, left, top, right, bottom = 760, 440, 70, 30, 200, 50

    def px(x):
        return left + (math.log10(x) - x0) / (x1 - x0) * (w - left - right)

    def py(y):
        return h - bottom - (math.log10(y) - y0) / (y1 - y0) * (h - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           f'font-size="12"><rect width="{w}" height="{h}" fill="white"/>']
    for e in range(y0, y1 + 1):
        y = py(10 ** e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{10 ** e:g} s</text>')
    for x in xs:
        out.append(f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" y2="{h - bottom}" stroke="#eee"/>'
                   f'<text x="{px(x):.1f}" y="{h - bottom + 16}" text-anchor="middle">{x:,}</text>')
    out.append(f'<text x="{(left + w - right) / 2}" y="{h - 10}" text-anchor="middle">partitions (accounts x days)'
               f'</text>')
    for i, (name, ours, theirs, colour) in enumerate(series):
        for f, dash, label in ((ours, "", "trailsql"), (theirs, ' stroke-dasharray="5,4"', "DuckDB")):
            if f is None:
                continue
            pts = " ".join(f"{px(r['partitions']):.1f},{py(f(r)):.1f}" for r in rows)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        y = top + 18 * i
        out.append(f'<line x1="{w - right + 10}" y1="{y}" x2="{w - right + 30}" y2="{y}" stroke="{colour}" '
                   f'stroke-width="2"/><text x="{w - right + 36}" y="{y + 4}">{name}</text>')
    y = top + 18 * len(series) + 10
    out.append(f'<text x="{w - right + 10}" y="{y}">solid: trailsql</text>'
               f'<text x="{w - right + 10}" y="{y + 16}">dashed: DuckDB</text></svg>')
    Path(path).write_text("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work", nargs="?", default="/tmp/trailsql-growth")
    ap.add_argument("--points", default="10x30,30x90,60x180,100x365")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for p in args.points.split(","):
        accounts, days = (int(v) for v in p.split("x"))
        rows.append(point(args.work, accounts, days, args.rounds))
        print(f"{p}: {json.dumps(rows[-1])}", file=sys.stderr)
        # Written after each point, so that a long series stopped early keeps what it measured.
        Path(args.work, "growth.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))
    svg(rows, ROOT / "benches" / "growth.svg")


if __name__ == "__main__":
    main()
