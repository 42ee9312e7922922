#!/usr/bin/env bash
# Stock Connect clients from the npm registry (versions pinned in tests/integration/connect/
# package-lock.json, installed with npm ci): connect-node reaches every service of site A's
# imgstored in JSON and in binary, with GET for the reads, errors and deadlines
# (connect/clients.mjs), typed error details (NOT_PRIMARY from a secondary, read by
# connect-node and shown by the CLI); `buf curl` calls in JSON and gets Connect errors.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/connect" && pwd)
proto=$(cd "$src/../../../proto" && pwd)
work=$(mktemp -d /tmp/ims-connect.XXXXXX)
img=cc$$
cleanup() { forget_images "$img-j" "$img-b" "$img-j-r" "$img-b-r" "$img-rep"; rm -rf "$work"; }
trap cleanup EXIT

# npm ci into a copy: the source tree stays clean, the cache (~/.npm) makes reruns quick
cp "$src/package.json" "$src/package-lock.json" "$src/clients.mjs" "$work/"
check "npm ci installs the pinned clients" bash -c "cd '$work' && npm ci --no-audit --no-fund --loglevel=error >/dev/null"
buf=$work/node_modules/.bin/buf
check "buf builds a descriptor set of proto/" "$buf" build "$proto" -o "$work/set.binpb"
# buf lint with proto/buf.yaml (STANDARD, nothing ignored; test proto_lint checks more)
check "buf lint finds nothing in proto/" "$buf" lint "$proto"

# a secondary on site b, for a typed error: a host may not snapshot it there (NOT_PRIMARY)
expect_rc 0 "create rbd/$img-rep" on_a image create "rbd/$img-rep" --size 16M
expect_rc 0 "replicate it to site b" on_a repl enable "rbd/$img-rep" --to b --rpo 1h
expect_rc 0 "first sync" on_a repl sync "rbd/$img-rep"
IMGSTORE_SERVER=$(server_of b) IMGSTORE_TOKEN_FILE=$IMGSTORE_HOST_TOKEN_FILE "$CLI" \
	snap create "rbd/$img-rep@host-on-b" > "$work/out" 2> "$work/err"
check "the CLI shows the reason of a host's snapshot of a secondary" \
	grep -q "is a secondary.*(NOT_PRIMARY)$" "$work/err"

tok=$(cat "$IMGSTORE_TOKEN_FILE")
(cd "$work" && node clients.mjs "$work/set.binpb" "$IMGSTORE_SERVER_A" "$IMGSTORE_CA_FILE" \
	"$tok" "$(cat "$IMGSTORE_READER_TOKEN_FILE")" "$img" "$(server_of b)" \
	"$(cat "$IMGSTORE_HOST_TOKEN_FILE")") > "$work/tap" 2>&1
cat "$work/tap"
passes=$((passes + $(grep -c '^ok - ' "$work/tap")))
fails=$((fails + $(grep -c '^not ok - ' "$work/tap")))
check "connect-node ran 40 checks or more" test "$(grep -c '^\(not \)\?ok - ' "$work/tap")" -ge 40

# buf curl (JSON on its side, binary on the wire): an answer, and typed errors (its exit code
# is 8 times the Connect code)
bc() { "$buf" curl --schema "$proto" --protocol connect --cacert "$IMGSTORE_CA_FILE" \
	-H "Authorization: Bearer $tok" "$@"; }
bc -d '{}' "$IMGSTORE_SERVER_A/imgstore.v1.SiteService/ListSites" > "$work/out" 2> "$work/err"
check "buf curl SiteService/ListSites" jq -e '.sites | map(select(.local)) | length == 1' "$work/out"
bc -d '{"image": {"pool": "rbd", "image": "'"$img"'-nosuch"}}' \
	"$IMGSTORE_SERVER_A/imgstore.v1.ImageService/GetImage" > "$work/out" 2>&1
check "buf curl GetImage of no image: not_found (exit 40)" test $? -eq 40
check "  with the code in its output" grep -q '"code": "not_found"' "$work/out"
bc -d '{"image": {"pool": "rbd"}, "size": "16777216"}' \
	"$IMGSTORE_SERVER_A/imgstore.v1.ImageService/CreateImage" > "$work/out" 2>&1
check "buf curl CreateImage without a name: invalid_argument (exit 24)" test $? -eq 24
check "  with the server's message" grep -q 'the request names no image' "$work/out"
check "no image was left behind" bash -c "! rbd -c '$CEPH_CONF_A' ls rbd 2>/dev/null | grep -q '^$img\$'"
finish
