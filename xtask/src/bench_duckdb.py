"""DuckDB side of the query benchmark: the same questions audit-agent query answers."""
import json
import sys

import duckdb

store, which = sys.argv[1], sys.argv[2]
src = f"read_ndjson_auto('{store}/v1/*/*/*/*.ndjson.gz', hive_partitioning = true)"
if which == "full":
    sql = f"SELECT count(*) FROM {src} WHERE policy.decision = 'deny'"
else:
    sql = (f"SELECT count(*) FROM {src} WHERE agent_id = 'agent-03' AND dt = '2026-11-01' "
           "AND hour IN ('05', '06') AND time >= '2026-11-01T05:00:00Z' AND time <= '2026-11-01T06:59:59Z'")
print(json.dumps({"count": duckdb.connect().execute(sql).fetchall()[0][0]}))
