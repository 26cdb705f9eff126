"""Reads Parquet files with pyarrow (an independent reader) and prints, per file, one JSON line:
{"path", "schema": {column: arrow type}, "compression": [...], "rows": [row as JSON]}.
"""

import json
import sys

import pyarrow.parquet as pq


def main() -> int:
    for path in sys.argv[1:]:
        f = pq.ParquetFile(path)
        table = f.read()
        meta = f.metadata
        codecs = sorted({
            meta.row_group(g).column(c).compression
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        })
        rows = table.to_pylist()
        print(json.dumps({
            "path": path,
            "schema": {field.name: str(field.type) for field in table.schema},
            "compression": codecs,
            "rows": rows,
        }, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
