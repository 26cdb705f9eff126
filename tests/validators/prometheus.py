"""Parses a metrics exposition with the official Prometheus Python client, as a scraper would.

Usage: prometheus.py classic|openmetrics < exposition
Prints one JSON object: {family name: type}. Exits 1 with the parser's error if the text does not
parse in that format.
"""

import json
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as classic_families


def main() -> int:
    parse = {"classic": classic_families, "openmetrics": openmetrics_families}[sys.argv[1]]
    text = sys.stdin.read()
    try:
        families = {f.name: f.type for f in parse(text)}
    except Exception as e:  # the parser's own message names the line
        print(f"does not parse as {sys.argv[1]}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(families, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
