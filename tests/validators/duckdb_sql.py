"""Runs SQL (stdin) in DuckDB, as a user would paste it, and prints the last statement's result.

The httpfs extension (S3) is loaded from the `duckdb-extension-httpfs` package: DuckDB would
download it from extensions.duckdb.org on first use, which CI machines cannot reach.

Prints {"columns": [...], "rows": [[...], ...]} (values as JSON, dates and times as strings);
exits 1 with DuckDB's error.
"""

import json
import os
import sys

import duckdb
import duckdb_extension_httpfs


def main() -> int:
    sql = sys.stdin.read()
    con = duckdb.connect()
    base = os.path.dirname(duckdb_extension_httpfs.__file__)
    httpfs = os.path.join(base, "extensions", f"v{duckdb.__version__}", "httpfs.duckdb_extension")
    con.execute(f"LOAD '{httpfs}'")
    try:
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description or []]
        rows = cur.fetchall()
    except duckdb.Error as e:
        print(f"duckdb {duckdb.__version__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"columns": columns, "rows": rows}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
