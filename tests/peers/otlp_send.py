"""Sends one OpenTelemetry GenAI `execute_tool` span to an OTLP/HTTP receiver, encoded by
OpenTelemetry's own protobuf classes (opentelemetry-proto): as protobuf, or as OTLP JSON (the
protobuf JSON mapping with trace and span ids in hex, as the OTLP specification requires).

usage: otlp_send.py URL protobuf|json CALL_ID TOOL ARGUMENTS_JSON [CONTENT_TYPE]

Prints the HTTP status and the response body.
"""

import json
import sys
import time
import urllib.error
import urllib.request

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

URL, ENCODING, CALL, TOOL, ARGS = sys.argv[1:6]
TRACE, SPAN = bytes.fromhex("5b8efff798038103d269b633813fc60c"), bytes.fromhex("eee19b7ec3c1b174")

request = ExportTraceServiceRequest()
span = request.resource_spans.add().scope_spans.add().spans.add()
span.trace_id, span.span_id = TRACE, SPAN
span.name = f"execute_tool {TOOL}"
now = time.time_ns()
span.start_time_unix_nano, span.end_time_unix_nano = now - 50_000_000, now
span.status.code = Status.STATUS_CODE_OK
for key, value in {
    "gen_ai.operation.name": "execute_tool",
    "gen_ai.tool.name": TOOL,
    "gen_ai.tool.call.id": CALL,
    "gen_ai.tool.call.arguments": ARGS,
    "gen_ai.conversation.id": "otlp-conversation",
}.items():
    span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))

if ENCODING == "protobuf":
    body, ctype = request.SerializeToString(), "application/x-protobuf"
else:
    doc = json_format.MessageToDict(request)
    s = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    s["traceId"], s["spanId"] = TRACE.hex(), SPAN.hex()
    body, ctype = json.dumps(doc).encode(), "application/json"
if len(sys.argv) > 6:
    ctype = sys.argv[6]

req = urllib.request.Request(URL, data=body, headers={"Content-Type": ctype})
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
