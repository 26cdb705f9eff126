"""A scripted agent runtime for the claims tests: performs tool calls as a coding agent does
(commands through `bash -c`, file reads and writes in its own process, HTTP fetches) and reports
them through Claude Code style hooks (`sh -c 'audit-agent claim'`, the payload on stdin) — or
does not, or reports what it did not do, as each step of the scenario says.

usage: fake_agent.py SCENARIO.json AUDIT_AGENT_BIN WORKDIR

A scenario is {"steps": [...], "report": "hooks" | "otlp", "clock_offset_s": 0}: with "otlp"
the runtime reports each call as an OpenTelemetry GenAI `execute_tool` span instead, POSTed as
OTLP JSON to $AUDIT_AGENT_OTLP_URL in batches (every third call, and at the end), its start and
end read from a clock `clock_offset_s` seconds off. A step:
  {"id": "c1", "tool": "Bash" | "Write" | "Edit" | "Read" | "Grep" | "Glob" | "WebFetch" |
           "WebSearch",
   "input": {...tool_input...},
   "perform": true,            # do it (false: only claim it)
   "claim": "both" | "pre" | "post" | "none",
   "claimed_success": null,    # what the post hook says (null: what really happened):
                               # PostToolUse when it says success, else PostToolUseFailure
   "actual": {...},            # what is really done, when not the claimed input
   "parallel": "g1",           # steps of one group run at once
   "background": false,        # Bash: do not wait (run_in_background)
   "side_read": PATH}          # meanwhile the runtime reads PATH itself, in another thread
Paths and commands may use {w} for WORKDIR.

Prints one JSON line per step: {"id", "performed", "ok"} — the ground truth of what it did.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

SCENARIO, AGENT, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
LOCK = threading.Lock()
SPANS = []


def fill(v):
    if isinstance(v, str):
        return v.replace("{w}", WORK)
    if isinstance(v, dict):
        return {k: fill(x) for k, x in v.items()}
    if isinstance(v, list):
        return [fill(x) for x in v]
    return v


def hook(event, step, response=None, error=None):
    payload = {
        "session_id": "eval-session",
        "transcript_path": "/dev/null",
        "cwd": WORK,
        "hook_event_name": event,
        "tool_name": step["tool"],
        "tool_input": step["input"],
        "tool_use_id": step["id"],
    }
    if response is not None:
        payload["tool_response"] = response
    if error is not None:
        payload["error"] = error
        payload["is_interrupt"] = False
    # As Claude Code runs hook commands: through a shell.
    r = subprocess.run(
        ["sh", "-c", f"{AGENT} claim"], input=json.dumps(payload).encode(), capture_output=True
    )
    if r.returncode != 0:
        sys.stderr.write(f"hook failed: {r.stderr.decode()}\n")


def perform(step):
    tool, inp = step["tool"], step.get("actual", step["input"])
    try:
        if tool == "Bash":
            p = subprocess.Popen(["bash", "-c", inp["command"]], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            if step.get("background"):
                return True
            return p.wait() == 0
        if tool == "Write":
            with open(inp["file_path"], "w") as f:
                f.write(inp.get("content", "x"))
            return True
        if tool == "Edit":
            with open(inp["file_path"]) as f:
                text = f.read()
            with open(inp["file_path"], "w") as f:
                f.write(text.replace(inp["old_string"], inp["new_string"]))
            return True
        if tool == "Grep":
            # As Claude Code does: a search program of its own (ripgrep there), not a shell.
            r = subprocess.run(["grep", "-rl", inp["pattern"], inp.get("path", WORK)],
                               stdout=subprocess.DEVNULL)
            return r.returncode in (0, 1)
        if tool == "Glob":
            for _ in os.walk(inp.get("path", WORK)):
                pass
            return True
        if tool == "Read":
            with open(inp["file_path"]) as f:
                f.read()
            return True
        if tool == "WebFetch":
            with urllib.request.urlopen(inp["url"], timeout=5) as r:
                r.read()
            return True
    except Exception:
        return False
    return False


def side_read(path):
    with open(path) as f:
        f.read()


def span(step, start, end, success):
    """An OTLP JSON span of the call, its times by the runtime's (offset) clock."""
    attrs = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": step["tool"],
        "gen_ai.tool.call.id": step["id"],
        "gen_ai.tool.call.arguments": json.dumps(step["input"]),
        "gen_ai.conversation.id": "eval-conversation",
    }
    return {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "%016x" % (abs(hash(step["id"])) % (1 << 64)),
        "name": "execute_tool " + step["tool"],
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()],
        "status": {"code": 1 if success else 2},
    }


def export_spans():
    with LOCK:
        batch = SPANS[:]
        SPANS.clear()
    if not batch:
        return
    body = {"resourceSpans": [{"resource": {"attributes": []},
                               "scopeSpans": [{"scope": {"name": "fake-agent"}, "spans": batch}]}]}
    req = urllib.request.Request(os.environ["AUDIT_AGENT_OTLP_URL"], data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def execute(step):
    """Performs the step (unless it is only claimed), and its side read meanwhile."""
    performed = step.get("perform", True)
    side = step.get("side_read")
    side = threading.Thread(target=side_read, args=(side,)) if side else None
    if side:
        side.start()
    ok = perform(step) if performed else False
    if side:
        side.join()
    return performed, ok


def run(step):
    if OTLP:
        return run_reported_as_span(step)
    claim = step.get("claim", "both")
    if claim in ("both", "pre"):
        hook("PreToolUse", step)
    performed, ok = execute(step)
    if claim in ("both", "post"):
        said = step.get("claimed_success")
        success = ok if said is None else said
        if success:
            response = {"success": True}
            if step["tool"] == "Bash":
                response = {"stdout": "", "stderr": "", "interrupted": False}
            hook("PostToolUse", step, response)
        else:
            hook("PostToolUseFailure", step, error="the tool failed")
    with LOCK:
        print(json.dumps({"id": step["id"], "performed": performed, "ok": ok}), flush=True)


def run_reported_as_span(step):
    offset = int(CLOCK_OFFSET * 1e9)
    start = time.time_ns() + offset
    performed, ok = execute(step)
    end = time.time_ns() + offset
    said = step.get("claimed_success")
    if step.get("claim", "both") != "none":
        with LOCK:
            SPANS.append(span(step, start, end, ok if said is None else said))
    with LOCK:
        print(json.dumps({"id": step["id"], "performed": performed, "ok": ok}), flush=True)


def main():
    global OTLP, CLOCK_OFFSET
    scenario = json.load(open(SCENARIO))
    OTLP = scenario.get("report") == "otlp"
    CLOCK_OFFSET = scenario.get("clock_offset_s", 0)
    steps = [fill(s) for s in scenario["steps"]]
    for s in steps:
        if s.get("background"):
            s["input"]["run_in_background"] = True
    i = 0
    while i < len(steps):
        group = steps[i].get("parallel")
        batch = [steps[i]]
        while group and i + len(batch) < len(steps) and steps[i + len(batch)].get("parallel") == group:
            batch.append(steps[i + len(batch)])
        threads = [threading.Thread(target=run, args=(s,)) for s in batch]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        i += len(batch)
        if OTLP and len(SPANS) >= 3:
            export_spans()
    if OTLP:
        export_spans()


OTLP, CLOCK_OFFSET = False, 0
main()
