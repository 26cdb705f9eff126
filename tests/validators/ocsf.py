"""Validates OCSF events (one JSON object per line on stdin) against the official OCSF schema.

The schema is the official 1.3.0 export of schema.ocsf.io, as packaged by `ocsf-json-schema`
(PyPI), which turns a class plus the profiles an event declares (`metadata.profiles`) into a
strict JSON Schema (draft 2020-12: no attribute outside the class and its profiles). The
`jsonschema` package validates each event against it. Nothing here is audit-agent's own table.

Prints one JSON line per invalid event ({"line", "uid", "class_uid", "errors"}) and a summary
line on stderr; exits 1 when any event is invalid, 2 on bad input.
"""

import json
import sys

import jsonschema
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

VERSION = sys.argv[1] if len(sys.argv) > 1 else "1.3.0"


def main() -> int:
    ocsf = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=VERSION))
    validators = {}
    invalid = 0
    total = 0
    classes = {}
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        total += 1
        try:
            event = json.loads(line)
        except json.JSONDecodeError as e:
            print(f"line {n}: not JSON: {e}", file=sys.stderr)
            return 2
        class_uid = event.get("class_uid")
        profiles = tuple(sorted(event.get("metadata", {}).get("profiles", [])))
        key = (class_uid, profiles)
        if key not in validators:
            name = ocsf.lookup_class_name_from_uid(class_uid=class_uid)
            schema = ocsf.get_class_schema(class_name=name, profiles=list(profiles))
            validators[key] = jsonschema.Draft202012Validator(schema)
        classes[class_uid] = classes.get(class_uid, 0) + 1
        errors = sorted(
            f"{'/'.join(map(str, e.absolute_path)) or '(event)'}: {e.message}"
            for e in validators[key].iter_errors(event)
        )
        if errors:
            invalid += 1
            print(json.dumps({
                "line": n,
                "uid": event.get("metadata", {}).get("uid"),
                "class_uid": class_uid,
                "errors": errors,
            }))
    print(
        f"ocsf {VERSION}: {total} event(s), {invalid} invalid; classes {json.dumps(classes)}",
        file=sys.stderr,
    )
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
