// Validates ECS documents (one JSON object per line on stdin) against the official Elastic Common
// Schema field definitions (`EcsFlat` of the `@elastic/ecs` npm package, generated from
// elastic/ecs). Every field outside the custom namespace (argv[2], e.g. `audit_agent`) must be an
// ECS field of a matching type; `normalize: array` fields must be arrays (and only they);
// fields with allowed values (event.kind, event.category, event.type, event.outcome, ...) must
// use them; each event.type must be one its event.category expects; `agent.*` (the shipper)
// must be absent. Prints one JSON line per invalid document and a summary on stderr; exits 1
// when any is invalid.
"use strict";
const { EcsFlat, EcsVersion } = require("@elastic/ecs");
const readline = require("readline");

const custom = process.argv[2] || "audit_agent";
const strings = new Set(["keyword", "wildcard", "text", "match_only_text", "constant_keyword"]);
const integers = new Set(["long", "integer", "short", "byte", "unsigned_long"]);
const floats = new Set(["float", "double", "scaled_float", "half_float"]);
const net = require("net");

function typeError(def, v) {
  const t = def.type;
  if (strings.has(t)) return typeof v === "string" ? null : `${t} expects a string`;
  if (integers.has(t)) return Number.isInteger(v) ? null : `${t} expects an integer`;
  if (floats.has(t)) return typeof v === "number" ? null : `${t} expects a number`;
  if (t === "boolean") return typeof v === "boolean" ? null : "boolean expected";
  if (t === "ip") return net.isIP(String(v)) ? null : "not an IP address";
  if (t === "date") return typeof v === "string" && !isNaN(Date.parse(v)) ? null : "not a date";
  if (t === "object" || t === "flattened" || t === "nested") return null;
  return `unchecked type ${t}`;
}

function leaves(doc, prefix, out) {
  for (const [k, v] of Object.entries(doc)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === "object" && !Array.isArray(v) && !EcsFlat[path]) {
      leaves(v, path, out);
    } else {
      out.push([path, v]);
    }
  }
  return out;
}

function check(doc) {
  const errors = [];
  for (const required of ["@timestamp", "ecs.version", "event.kind"]) {
    if (!leaves(doc, "", []).some(([p]) => p === required)) errors.push(`${required}: missing`);
  }
  if (doc.agent !== undefined) errors.push("agent: the shipper's namespace, not ours");
  for (const [path, value] of leaves(doc, "", [])) {
    if (path === custom || path.startsWith(custom + ".")) continue;
    const def = EcsFlat[path];
    if (!def) {
      errors.push(`${path}: not an ECS ${EcsVersion} field`);
      continue;
    }
    const isArray = Array.isArray(value);
    const wantsArray = (def.normalize || []).includes("array");
    if (wantsArray && !isArray) errors.push(`${path}: ECS normalizes it to an array`);
    if (isArray && !wantsArray) errors.push(`${path}: not an array field`);
    for (const v of isArray ? value : [value]) {
      const e = typeError(def, v);
      if (e) errors.push(`${path}: ${JSON.stringify(v)}: ${e}`);
      if (def.allowed_values && !def.allowed_values.some((a) => a.name === v)) {
        errors.push(`${path}: ${JSON.stringify(v)} is not an allowed value`);
      }
    }
  }
  const cats = (doc.event && doc.event.category) || [];
  const types = (doc.event && doc.event.type) || [];
  for (const c of cats) {
    const def = EcsFlat["event.category"].allowed_values.find((a) => a.name === c);
    for (const t of types) {
      if (def && def.expected_event_types && !def.expected_event_types.includes(t)) {
        errors.push(`event.type ${t} is not expected with event.category ${c}`);
      }
    }
  }
  return errors;
}

if (Object.keys(EcsFlat).some((k) => k.startsWith(custom + "."))) {
  console.error(`${custom} is an ECS field set: choose another custom namespace`);
  process.exit(2);
}
let total = 0;
let invalid = 0;
const rl = readline.createInterface({ input: process.stdin });
let n = 0;
rl.on("line", (line) => {
  n += 1;
  if (!line.trim()) return;
  total += 1;
  const doc = JSON.parse(line);
  const errors = check(doc);
  if (errors.length) {
    invalid += 1;
    console.log(JSON.stringify({ line: n, id: doc.event && doc.event.id, errors }));
  }
});
rl.on("close", () => {
  console.error(`ecs ${EcsVersion}: ${total} document(s), ${invalid} invalid`);
  process.exit(invalid ? 1 : 0);
});
