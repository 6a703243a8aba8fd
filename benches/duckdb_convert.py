"""DuckDB doing the convert job: read_json of the CloudTrail Records files with a typed column list (the same
schema as trailsql's, from `trailsql schema --format duckdb`), then COPY to Parquet with PARTITION_BY.

usage: duckdb_convert.py CORPUS_DIR OUT_DIR EVENT_TYPE_FILE
"""
import sys

import duckdb

corpus, out, type_file = sys.argv[1:4]
event_type = open(type_file).read().strip()
con = duckdb.connect()
con.execute("SET preserve_insertion_order = false")
# Spills beside the output, not in `.tmp` of the working directory (17 GB at 36,500 partitions, in the clone).
con.execute(f"SET temp_directory = '{out}.duckdb_tmp'")
con.execute(f"""
COPY (
    SELECT ev.*, ev.recipientAccountId AS account_id, CAST(ev.eventTime AT TIME ZONE 'UTC' AS DATE) AS event_date
    FROM (
        SELECT unnest(Records) AS ev
        FROM read_json('{corpus}/**/*.json.gz', columns = {{'Records': '{event_type}[]'}}, format = 'auto',
                       maximum_object_size = 1073741824)
    )
) TO '{out}' (FORMAT parquet, PARTITION_BY (account_id, event_date), COMPRESSION zstd)
""")
print(con.execute(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')").fetchone()[0])
