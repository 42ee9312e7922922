#!/usr/bin/env bash
# proto/ passes `buf lint` (STANDARD rules, proto/buf.yaml) and `buf breaking` against the
# released schema (proto/baseline/v0.23.binpb: WIRE_JSON, services and methods kept), and each
# RPC of the baseline still takes and answers the same fields through every nested message
# (connect/proto_compat.mjs: the check buf leaves out when messages are renamed). buf is the
# pinned npm @bufbuild/buf of tests/integration/connect/package-lock.json, installed by
# `npm ci` into a temporary folder, as test_connect_clients.sh does. Then the checks bite: copies
# of proto/ with a field renumbered (a message of the same name, and a renamed one), a method
# renamed and an RPC sharing another's messages fail. No Ceph needed.
set -uo pipefail
SRC=${IMS_SOURCE_DIR:?}
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
workdir
proto=$SRC/proto
base=$proto/baseline/v0.23.binpb

command -v npm >/dev/null || { echo "not ok - npm is missing: run scripts/install-deps"; exit 1; }
cp "$SRC/tests/integration/connect/package.json" "$SRC/tests/integration/connect/package-lock.json" \
	"$SRC/tests/integration/connect/proto_compat.mjs" "$W/"
check "npm ci installs the pinned buf" bash -c "cd '$W' && npm ci --no-audit --no-fund --loglevel=error >/dev/null"
buf=$W/node_modules/.bin/buf
check "  buf 1.75.0" test "$("$buf" --version 2>&1)" = 1.75.0

# lint: nothing, and no rule ignored in buf.yaml (the resource answers carry comment ignores)
expect_rc 0 "buf lint proto finds nothing" "$buf" lint "$proto"
check "  and prints nothing" test ! -s "$T_OUT"
check "  buf.yaml ignores no lint rule (no except, no ignore under lint:)" python3 -c '
import sys, yaml
l = yaml.safe_load(open(sys.argv[1]))["lint"]
sys.exit(0 if l.get("use") == ["STANDARD"] and not l.get("except") and not l.get("ignore") and not l.get("ignore_only") else 1)' "$proto/buf.yaml"
n=$(grep -h 'buf:lint:ignore' "$proto"/imgstore/v1/*.proto | grep -vc 'RPC_RESPONSE_STANDARD_NAME$\|RPC_REQUEST_RESPONSE_UNIQUE$')
check "  the comment ignores are only the two rules of resource answers" test "$n" = 0

# breaking against the released schema, and the structural check of every RPC
expect_rc 0 "buf breaking proto --against the v0.23 baseline" "$buf" breaking "$proto" --against "$base"
check "  and prints nothing" test ! -s "$T_OUT"
check "buf builds proto/" "$buf" build "$proto" -o "$W/cur.binpb"
expect_rc 0 "every RPC of v0.23 takes and answers the same fields" node "$W/proto_compat.mjs" "$base" "$W/cur.binpb"
check "  all 68 RPCs of v0.23 compared" grep -q '^68 RPCs of the baseline compared, 0 differences$' "$T_OUT"

# mutate a copy of proto/ with python (exactly one replacement, or the script fails)
mutant() { # NAME FILE OLD NEW
	rm -rf "$W/$1"; cp -r "$proto" "$W/$1"; rm -rf "$W/$1/baseline"
	python3 - "$W/$1/imgstore/v1/$2" "$3" "$4" <<'EOF'
import sys
path, old, new = sys.argv[1:]
s = open(path).read()
assert s.count(old) == 1, f"{old!r} found {s.count(old)} times in {path}"
open(path, "w").write(s.replace(old, new))
EOF
}

# a field renumbered in a message that kept its name: buf breaking fails, and so does the check
if mutant renum image.proto "  uint64 size = 2;
  uint64 features = 3;          // 0: the default set" "  uint64 size = 6;
  uint64 features = 3;          // 0: the default set"; then
	expect_rc 100 "buf breaking fails on CreateImageRequest.size renumbered" \
		"$buf" breaking "$W/renum" --against "$base"
	check "  naming the field" grep -q 'CreateImageRequest' "$T_OUT"
	"$buf" build "$W/renum" -o "$W/renum.binpb" &&
		expect_rc 1 "  the structural check fails too" node "$W/proto_compat.mjs" "$base" "$W/renum.binpb"
	check "  naming the RPC and the field" grep -q 'ImageService/CreateImage request .*size = 2 is gone' "$T_OUT"
else
	not_ok "mutant renum"
fi

# a field renumbered in a renamed message (FailoverRequest, ReplicationImageRequest in v0.23):
# beyond buf breaking's reach, the structural check fails
if mutant renamed replication.proto "message FailoverRequest {
  ImageSpec image = 1;
  string target_site = 2;" "message FailoverRequest {
  ImageSpec image = 1;
  string target_site = 7;"; then
	"$buf" build "$W/renamed" -o "$W/renamed.binpb" &&
		expect_rc 1 "the structural check fails on FailoverRequest.target_site renumbered" \
			node "$W/proto_compat.mjs" "$base" "$W/renamed.binpb"
	check "  naming the RPC and the field" grep -q 'ReplicationService/Failover request imgstore.v1.FailoverRequest: field target_site = 2 is gone' "$T_OUT"
else
	not_ok "mutant renamed"
fi

# a field's type changed in a renamed message that VerifyGroupResponse.images nests too
if mutant nested replication.proto "  uint64 bytes_read = 11;" "  int64 bytes_read = 11;"; then
	"$buf" build "$W/nested" -o "$W/nested.binpb" &&
		expect_rc 1 "the structural check fails on VerifyImageResponse.bytes_read made int64" \
			node "$W/proto_compat.mjs" "$base" "$W/nested.binpb"
	check "  naming the field and both types" grep -q 'VerifyImageResponse.bytes_read (11): type int64, was uint64$' "$T_OUT"
else
	not_ok "mutant nested"
fi

# a method renamed (its URL path changes): buf breaking fails
if mutant method image.proto "rpc GetImage(GetImageRequest)" "rpc FetchImage(GetImageRequest)"; then
	expect_rc 100 "buf breaking fails on GetImage renamed" "$buf" breaking "$W/method" --against "$base"
	check "  naming it" grep -q '"GetImage"' "$T_OUT"
else
	not_ok "mutant method"
fi

# an RPC sharing another's request and answering a non-resource message: buf lint fails
if mutant shared image.proto "  rpc DownloadChunk(" "  rpc PeekChunk(UploadChunkRequest) returns (DownloadChunkResponse);
  rpc DownloadChunk("; then
	expect_rc 100 "buf lint fails on an RPC with another's messages" "$buf" lint "$W/shared"
	check "  naming the rules" bash -c "grep -q RPC_REQUEST_STANDARD_NAME '$T_OUT' || grep -q 'should be named \"PeekChunkRequest\"' '$T_OUT'"
else
	not_ok "mutant shared"
fi
finish
