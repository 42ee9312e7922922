// The wire check that `buf breaking` leaves out once messages may be renamed: every RPC of the
// baseline (a released schema) still exists, and its request and response messages have, field
// by field and through every nested message, the baseline's numbers, names, JSON names, types,
// cardinalities and enum values, whatever the messages are now called. Fields may be added.
// Prints one line per difference and exits 1 if there is any (2: bad arguments).
//
//   node proto_compat.mjs BASELINE.binpb CURRENT.binpb
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary, ScalarType } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const [basePath, curPath] = process.argv.slice(2);
if (!basePath || !curPath) {
  console.error("usage: node proto_compat.mjs BASELINE.binpb CURRENT.binpb");
  process.exit(2);
}
const load = (p) => createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(p)));
const base = load(basePath);
const cur = load(curPath);

const problems = [];
const seen = new Set(); // pairs of messages compared already (each difference said once)

function sameEnum(where, a, b) {
  for (const v of a.values) {
    const w = b.values.find((x) => x.number === v.number);
    if (!w) problems.push(`${where}: enum value ${v.name} = ${v.number} is gone`);
    else if (w.name !== v.name)
      problems.push(`${where}: enum value ${v.number} is ${w.name}, was ${v.name}`);
  }
}

// The type of a field (or of a list's element, a map's value) as one comparable word.
function kindOf(f, part) {
  const k = part ?? f;
  if (k.scalar !== undefined && k.scalar !== null) return ScalarType[k.scalar].toLowerCase();
  if (k.enum) return "enum";
  if (k.message) return "message";
  return "?";
}

function sameField(where, fa, fb) {
  const at = `${where}.${fa.name} (${fa.number})`;
  if (fb.name !== fa.name) problems.push(`${at}: named ${fb.name} now`);
  if (fb.jsonName !== fa.jsonName)
    problems.push(`${at}: JSON name ${fb.jsonName}, was ${fa.jsonName}`);
  if (fb.fieldKind !== fa.fieldKind)
    return problems.push(`${at}: a ${fb.fieldKind} now, was a ${fa.fieldKind}`);
  if ((fb.oneof?.name ?? "") !== (fa.oneof?.name ?? ""))
    problems.push(`${at}: in oneof '${fb.oneof?.name ?? ""}', was '${fa.oneof?.name ?? ""}'`);
  if (fa.fieldKind === "map" && fa.mapKey !== fb.mapKey)
    problems.push(`${at}: map key ${fb.mapKey}, was ${fa.mapKey}`);
  const ka = kindOf(fa, fa.fieldKind === "list" || fa.fieldKind === "map" ? fa : undefined);
  const kb = kindOf(fb, fb.fieldKind === "list" || fb.fieldKind === "map" ? fb : undefined);
  if (ka !== kb) return problems.push(`${at}: type ${kb}, was ${ka}`);
  if (fa.enum) sameEnum(`${at} ${fa.enum.typeName}`, fa.enum, fb.enum);
  if (fa.message) sameMessage(`${at} ${fa.message.typeName}`, fa.message, fb.message);
}

function sameMessage(where, a, b) {
  const key = `${a.typeName}>${b.typeName}`;
  if (seen.has(key)) return;
  seen.add(key);
  for (const fa of a.fields) {
    const fb = b.fields.find((x) => x.number === fa.number);
    if (!fb) problems.push(`${where}: field ${fa.name} = ${fa.number} is gone`);
    else sameField(where, fa, fb);
  }
}

let rpcs = 0;
for (const file of base.files) {
  for (const sa of file.services) {
    const sb = cur.getService(sa.typeName);
    if (!sb) {
      problems.push(`service ${sa.typeName} is gone`);
      continue;
    }
    for (const ma of sa.methods) {
      const mb = sb.methods.find((x) => x.name === ma.name);
      const at = `${sa.typeName}/${ma.name}`;
      if (!mb) {
        problems.push(`${at} is gone`);
        continue;
      }
      rpcs++;
      if (mb.methodKind !== ma.methodKind)
        problems.push(`${at}: ${mb.methodKind}, was ${ma.methodKind}`);
      if (mb.idempotency !== ma.idempotency)
        problems.push(`${at}: idempotency level ${mb.idempotency}, was ${ma.idempotency}`);
      sameMessage(`${at} request ${mb.input.typeName}`, ma.input, mb.input);
      sameMessage(`${at} response ${mb.output.typeName}`, ma.output, mb.output);
    }
  }
}
for (const p of problems) console.log(p);
console.log(`${rpcs} RPCs of the baseline compared, ${problems.length} differences`);
process.exit(problems.length || rpcs === 0 ? 1 : 0);
