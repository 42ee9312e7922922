// Stock Connect clients (connect-node, protobuf-es, no generated code: the schema comes from a
// descriptor set that `buf build` made of proto/) against imgstored: every service in JSON and
// in binary, GET for the reads, errors and deadlines. Prints TAP lines ("ok - ...",
// "not ok - ..."); tests/integration/test_connect_clients.sh counts them.
//
//   node clients.mjs DESCRIPTOR_SET URL CA_FILE ADMIN_TOKEN READER_TOKEN IMAGE_NAME URL_B HOST_TOKEN
// IMAGE_NAME-rep is replicated from site a to site b (URL_B) already.
import { readFileSync } from "node:fs";
import https from "node:https";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const [setPath, baseUrl, caFile, adminTok, readerTok, imgName, urlB, hostTok] =
  process.argv.slice(2);
const ca = readFileSync(caFile);
const reg = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(setPath)));
const svc = (name) => {
  const s = reg.getService(`imgstore.v1.${name}`);
  if (!s) throw new Error(`no service ${name} in the descriptor set`);
  return s;
};

let fails = 0;
const ok = (what) => console.log(`ok - ${what}`);
const notOk = (what, why) => {
  console.log(`not ok - ${what}${why ? `: ${why}` : ""}`);
  fails++;
};
const check = (what, cond, why) => (cond ? ok(what) : notOk(what, why));

// The HTTP methods connect-node sends (it picks GET below the interceptors): https.request
// wrapped, and the wrapper made visible to ES module imports of node:https.
const methods = [];
const httpsCjs = createRequire(import.meta.url)("node:https");
const origRequest = httpsCjs.request;
httpsCjs.request = (url, options, ...rest) => {
  if (String(url).includes("/imgstore.v1.")) methods.push(options?.method ?? "GET");
  return origRequest(url, options, ...rest);
};
syncBuiltinESMExports();

function transport({ binary, get = false, token = adminTok, url = baseUrl }) {
  const auth = (next) => async (req) => {
    if (token) req.header.set("Authorization", `Bearer ${token}`);
    return next(req);
  };
  return createConnectTransport({
    baseUrl: url,
    httpVersion: "1.1",
    useBinaryFormat: binary,
    useHttpGet: get,
    interceptors: [auth],
    nodeOptions: { ca },
  });
}

async function expectCode(what, p, code) {
  try {
    await p;
    notOk(what, `succeeded, expected ${Code[code]}`);
  } catch (e) {
    const ce = ConnectError.from(e);
    check(what, ce.code === code, `got ${Code[ce.code]}: ${ce.rawMessage}`);
  }
}

async function expectOk(what, p, test = () => true) {
  try {
    const r = await p;
    check(what, test(r), "unexpected answer");
    return r;
  } catch (e) {
    notOk(what, String(e));
    return null;
  }
}

const spec = { pool: "rbd", image: imgName };
const missing = { pool: "rbd", image: `${imgName}-nosuch` };

for (const binary of [false, true]) {
  const mode = binary ? "binary" : "JSON";
  const t = transport({ binary });
  const images = createClient(svc("ImageService"), t);
  const snaps = createClient(svc("SnapshotService"), t);
  const ops = createClient(svc("OperationService"), t);
  const hosts = createClient(svc("HostService"), t);
  const repl = createClient(svc("ReplicationService"), t);
  const sites = createClient(svc("SiteService"), t);
  const tier = createClient(svc("TierService"), t);
  const groups = createClient(svc("GroupService"), t);

  // a mutating call and 64-bit sizes both ways
  const size = 16n << 20n;
  const name = `${imgName}-${binary ? "b" : "j"}`;
  await expectOk(`${mode}: ImageService/CreateImage of 16 MiB`,
    images.createImage({ image: { pool: "rbd", image: name }, size }),
    (r) => r.name === name && r.size === size);
  await expectOk(`${mode}: ImageService/GetImage reads it back`,
    images.getImage({ image: { pool: "rbd", image: name } }),
    (r) => r.size === size && r.pool === "rbd");
  await expectOk(`${mode}: ImageService/ListImages lists it`, images.listImages({ pool: "rbd" }),
    (r) => r.images.some((i) => i.name === name));
  await expectOk(`${mode}: SnapshotService/CreateSnapshot`,
    snaps.createSnapshot({ snapshot: { pool: "rbd", image: name, snapshot: "s1" } }),
    (r) => r.name === "s1");
  await expectOk(`${mode}: SnapshotService/ListSnapshots`,
    snaps.listSnapshots({ image: { pool: "rbd", image: name } }),
    (r) => r.snapshots.length === 1 && r.snapshots[0].name === "s1");
  await expectOk(`${mode}: SnapshotService/DeleteSnapshot`,
    snaps.deleteSnapshot({ snapshot: { pool: "rbd", image: name, snapshot: "s1" } }));
  await expectOk(`${mode}: ImageService/DeleteImage`,
    images.deleteImage({ image: { pool: "rbd", image: name }, purge: true }));

  // every other service
  await expectOk(`${mode}: OperationService/ListOperations`, ops.listOperations({}));
  await expectCode(`${mode}: OperationService/GetOperation of no operation is not_found`,
    ops.getOperation({ id: "no-such-operation" }), Code.NotFound);
  await expectOk(`${mode}: HostService/ListLeases`, hosts.listLeases({}));
  await expectOk(`${mode}: SiteService/ListSites has the local site`, sites.listSites({}),
    (r) => r.sites.some((s) => s.local));
  await expectOk(`${mode}: TierService/ListPolicies`, tier.listPolicies({}));
  await expectOk(`${mode}: GroupService/ListGroups`, groups.listGroups({}));
  await expectOk(`${mode}: ReplicationService/GetReplicationStatus of an image not replicated`,
    repl.getReplicationStatus({ image: missing }));

  // errors
  await expectCode(`${mode}: GetImage of no image is not_found`,
    images.getImage({ image: missing }), Code.NotFound);
  await expectCode(`${mode}: CreateImage without a name is invalid_argument`,
    images.createImage({ image: { pool: "rbd" }, size }), Code.InvalidArgument);
  await expectCode(`${mode}: without a token: unauthenticated`,
    createClient(svc("ImageService"), transport({ binary, token: "" })).listImages({}),
    Code.Unauthenticated);
  await expectCode(`${mode}: a reader may not create: permission_denied`,
    createClient(svc("ImageService"), transport({ binary, token: readerTok }))
      .createImage({ image: { pool: "rbd", image: `${name}-r` }, size }),
    Code.PermissionDenied);
  // the client's own deadline
  await expectCode(`${mode}: a 1 ms timeout is deadline_exceeded`,
    images.listImages({ pool: "rbd" }, { timeoutMs: 1 }), Code.DeadlineExceeded);

  // GET for the reads (idempotency_level NO_SIDE_EFFECTS), POST for the rest
  const g = transport({ binary, get: true });
  methods.length = 0;
  await expectOk(`${mode}: GET SiteService/ListSites`,
    createClient(svc("SiteService"), g).listSites({}), (r) => r.sites.length > 0);
  await expectCode(`${mode}: GET ImageService/GetImage of no image is not_found`,
    createClient(svc("ImageService"), g).getImage({ image: missing }), Code.NotFound);
  check(`${mode}: those calls were GETs`, methods.length === 2 &&
    methods.every((m) => m === "GET"), methods.join(","));
}

// Typed error details: a host's snapshot of a secondary is failed_precondition with an
// imgstore.v1.ErrorInfo whose reason is NOT_PRIMARY, in JSON and in binary.
const errorInfo = reg.getMessage("imgstore.v1.ErrorInfo");
check("the descriptor set has imgstore.v1.ErrorInfo", !!errorInfo);
for (const binary of [false, true]) {
  const mode = binary ? "binary" : "JSON";
  const snaps = createClient(svc("SnapshotService"), transport({ binary, token: hostTok, url: urlB }));
  try {
    await snaps.createSnapshot({ snapshot: { pool: "rbd", image: `${imgName}-rep`, snapshot: "h" } });
    notOk(`${mode}: a host's snapshot of a secondary is refused`, "it succeeded");
  } catch (e) {
    const ce = ConnectError.from(e);
    check(`${mode}: a host's snapshot of a secondary is failed_precondition`,
      ce.code === Code.FailedPrecondition, `${Code[ce.code]} ${ce.rawMessage}`);
    const infos = ce.findDetails(errorInfo);
    check(`${mode}:   with an ErrorInfo whose reason is NOT_PRIMARY`,
      infos.length === 1 && infos[0].reason === "NOT_PRIMARY" && infos[0].domain === "imgstore",
      JSON.stringify(infos));
  }
}

// The server's side of Connect-Timeout-Ms: a budget of 1 ms that runs out while the body is
// still on its way (the stock client gives up on its own before the server could answer).
function slowBodyCall(timeoutMs) {
  return new Promise((resolve, reject) => {
    const body = Buffer.from(JSON.stringify({ pool: "rbd" }));
    const u = new URL(`${baseUrl}/imgstore.v1.ImageService/ListImages`);
    const req = https.request({
      host: u.hostname, port: u.port, path: u.pathname, method: "POST", ca,
      headers: {
        "Content-Type": "application/json", "Content-Length": body.length,
        "Authorization": `Bearer ${adminTok}`, "Connect-Timeout-Ms": String(timeoutMs),
      },
    }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode, text }));
    });
    req.on("error", reject);
    req.flushHeaders();
    setTimeout(() => req.end(body), 100);
  });
}
{
  const r = await slowBodyCall(1);
  check("Connect-Timeout-Ms 1 with a slow body: 408 deadline_exceeded",
    r.status === 408 && JSON.parse(r.text).code === "deadline_exceeded", `${r.status} ${r.text}`);
  const r2 = await slowBodyCall(30000);
  check("Connect-Timeout-Ms 30000 with a slow body: 200", r2.status === 200, `${r2.status} ${r2.text}`);
}

process.exit(fails ? 1 : 0);
