"""Runs trailsql's generated DDL on a real engine and compares every view, row for row, with trailsql's own rows.

Usage: compare.py ENGINE CASE_DIR...

Each CASE_DIR holds `<engine>.sql` (the output of `trailsql ddl --engine ENGINE`) and `<view>.parquet` for each
view (`trailsql query "SELECT * FROM <view>" --format parquet`). The engine creates the table and views from the
DDL as a user would, with its default settings (for Spark: ANSI mode on, the session time zone UTC), then each
view must hold exactly trailsql's rows: the same multiset, compared with EXCEPT ALL in both directions over the
engine's own reading of trailsql's Parquet. Prints one line per view; exits 1 on any difference.
"""

import glob
import re
import os
import sys
import tempfile


def statements(script):
    """The statements of a DDL script: split at `;` ending a line, comment lines dropped."""
    out, current = [], []
    for line in script.splitlines():
        if line.lstrip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            text = "\n".join(current).strip().rstrip(";").strip()
            if text:
                out.append(text)
            current = []
    rest = "\n".join(current).strip()
    if rest:
        out.append(rest)
    return out


def views_of(case):
    return sorted(os.path.basename(p)[: -len(".parquet")] for p in glob.glob(os.path.join(case, "*.parquet")))


def run_duckdb(cases):
    import duckdb

    failures = 0
    for case in cases:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        for s in statements(open(os.path.join(case, "duckdb.sql")).read()):
            con.execute(s)
        for view in views_of(case):
            ours = os.path.join(case, view + ".parquet")
            n_ours = con.execute(f"SELECT count(*) FROM read_parquet('{ours}')").fetchone()[0]
            n_theirs = con.execute(f"SELECT count(*) FROM {view}").fetchone()[0]
            missing = con.execute(
                f"SELECT count(*) FROM (SELECT * FROM read_parquet('{ours}') EXCEPT ALL SELECT * FROM {view})"
            ).fetchone()[0]
            extra = con.execute(
                f"SELECT count(*) FROM (SELECT * FROM {view} EXCEPT ALL SELECT * FROM read_parquet('{ours}'))"
            ).fetchone()[0]
            failures += report("duckdb", case, view, n_ours, n_theirs, missing, extra)
    return failures


def run_spark(cases):
    from pyspark.sql import SparkSession

    work = tempfile.mkdtemp(prefix="trailsql-spark-")
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("trailsql-ddl")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", os.path.join(work, "warehouse"))
        .config("spark.hadoop.javax.jdo.option.ConnectionURL", f"jdbc:derby:;databaseName={work}/metastore;create=true")
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={work}")
        .enableHiveSupport()
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    assert spark.conf.get("spark.sql.ansi.enabled") == "true", "Spark's default ANSI mode is what is tested"
    failures = 0
    for i, case in enumerate(cases):
        spark.sql(f"CREATE DATABASE case{i}")
        spark.sql(f"USE case{i}")
        for s in statements(open(os.path.join(case, "spark.sql")).read()):
            spark.sql(s)
        for view in views_of(case):
            ours = spark.read.parquet(os.path.join(case, view + ".parquet"))
            theirs = spark.table(view)
            n_ours, n_theirs = ours.count(), theirs.count()
            missing = ours.exceptAll(theirs).count()
            extra = theirs.exceptAll(ours).count()
            failures += report("spark", case, view, n_ours, n_theirs, missing, extra)
    spark.stop()
    return failures


# The functions the views may call in Trino (and Athena, engine 3), from Trino's function reference: no Trino
# server can be installed here, so each view is parsed as Trino SQL and every function it calls must be one of these.
TRINO_FUNCTIONS = {
    "array_agg", "bool_or", "cast", "coalesce", "concat", "count", "date_parse", "from_iso8601_timestamp",
    "json_extract_scalar", "least", "max", "min", "nullif", "regexp_extract", "split_part", "try", "try_cast",
    "with_timezone", "if",
}


def run_trino(cases):
    """Parses the table as Hive DDL (Athena's) and every view as Trino SQL; checks the functions the views call."""
    import sqlglot
    from sqlglot import exp

    failures = 0
    for case in cases:
        for engine in ["athena", "trino"]:
            script = statements(open(os.path.join(case, engine + ".sql")).read())
            table, views = script[0], [s for s in script if s.upper().startswith("CREATE OR REPLACE VIEW")]
            try:
                sqlglot.parse_one(table, read="hive" if engine == "athena" else "trino")
            except sqlglot.errors.ParseError as e:
                print(f"{engine} {os.path.basename(case)} table: DOES NOT PARSE: {e}")
                failures += 1
            for view in views:
                name = view.split()[4]
                try:
                    tree = sqlglot.parse_one(view, read="trino", error_level=sqlglot.ErrorLevel.RAISE)
                except sqlglot.errors.ParseError as e:
                    print(f"{engine} {os.path.basename(case)} {name}: DOES NOT PARSE: {e}")
                    failures += 1
                    continue
                # Each call as sqlglot writes it back in Trino's spelling: the name before its parenthesis.
                called = set()
                for f in tree.find_all(exp.Func):
                    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(", f.sql(dialect="trino"))
                    if m:
                        called.add(m.group(1).lower())
                unknown = sorted(called - TRINO_FUNCTIONS)
                status = "parses" if not unknown else f"CALLS FUNCTIONS TRINO DOES NOT HAVE: {unknown}"
                failures += bool(unknown)
                print(f"{engine} {os.path.basename(case)} {name}: {status} ({len(called)} functions)")
    return failures


def report(engine, case, view, n_ours, n_theirs, missing, extra):
    ok = n_ours == n_theirs and missing == 0 and extra == 0
    status = "same" if ok else "DIFFERENT"
    print(
        f"{engine} {os.path.basename(case)} {view}: {status} "
        f"(trailsql {n_ours} rows, {engine} {n_theirs}; {missing} missing, {extra} extra)"
    )
    return 0 if ok else 1


def main():
    engine, cases = sys.argv[1], sys.argv[2:]
    failures = {"duckdb": run_duckdb, "spark": run_spark, "trino": run_trino}[engine](cases)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
