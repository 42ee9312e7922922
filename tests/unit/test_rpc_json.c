/*
 * Unit tests of the Connect protocol beyond binary POST: the proto3 JSON codec
 * (proto/json.c) on the generated messages, hostile JSON, and the pipeline with
 * application/json, GET calls and Connect-Timeout-Ms, without sockets (ims_rpc__begin and
 * ims_rpc__finish, as server.c calls them) and over loopback TCP with libcurl.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "common/error.h"
#include "imgstore/v1/common.pb-c.h"
#include "imgstore/v1/image.pb-c.h"
#include "imgstore/v1/site.pb-c.h"
#include "proto/client_int.h"
#include "proto/json.h"
#include "proto/server_int.h"
#include "rpc_toy.h"

#define T_ADMIN "admin-0123456789abcdef"

/* ---- the codec ---------------------------------------------------------------------------- */

static char *encode(const ProtobufCMessage *m)
{
	char *text = NULL;
	size_t n = 0;

	assert_int_equal(ims_rpc__json_encode(&text, &n, m), 0);
	assert_int_equal(n, strlen(text));
	return text;
}

static ProtobufCMessage *decode_ok(const ProtobufCMessageDescriptor *d, const char *text)
{
	ProtobufCMessage *m = NULL;
	int r = ims_rpc__json_decode(&m, d, text, strlen(text));
	if (r != 0)
		fprintf(stderr, "decode of %s: %s\n", text, ims_error_last());
	assert_int_equal(r, 0);
	assert_non_null(m);
	return m;
}

/* Both pack to the same bytes. */
static void assert_same(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
	uint8_t x[4096], y[4096];
	size_t na = protobuf_c_message_get_packed_size(a);
	size_t nb = protobuf_c_message_get_packed_size(b);

	assert_true(na <= sizeof(x) && nb <= sizeof(y));
	assert_int_equal(na, nb);
	protobuf_c_message_pack(a, x);
	protobuf_c_message_pack(b, y);
	assert_memory_equal(x, y, na);
}

static void test_names(void **state)
{
	char b[64];

	(void)state;
	ims_rpc__json_name(b, sizeof(b), "content_sha256");
	assert_string_equal(b, "contentSha256");
	ims_rpc__json_name(b, sizeof(b), "used_bytes");
	assert_string_equal(b, "usedBytes");
	ims_rpc__json_name(b, sizeof(b), "id");
	assert_string_equal(b, "id");
	ims_rpc__json_name(b, 4, "pairs_over_rpo");
	assert_string_equal(b, "pai");
}

static void test_encode_image(void **state)
{
	Imgstore__V1__Image img;
	Imgstore__V1__SnapshotInfo s1, s2, *snaps[2] = {&s1, &s2};
	Imgstore__V1__Tag t, *tags[1] = {&t};

	(void)state;
	imgstore__v1__image__init(&img);
	imgstore__v1__snapshot_info__init(&s1);
	imgstore__v1__snapshot_info__init(&s2);
	imgstore__v1__tag__init(&t);
	/* defaults are left out: an empty message is {} */
	char *text = encode(&img.base);
	assert_string_equal(text, "{}");
	free(text);

	img.pool = "rbd";
	img.name = "vm\"1\n\xff";
	img.size = UINT64_MAX;
	img.created_unix = -5;
	img.in_catalog = 1;
	s1.name = "a";
	s1.protected_ = 1;
	s2.id = 7;
	img.n_snapshots = 2;
	img.snapshots = snaps;
	t.key = "k";
	img.n_tags = 1;
	img.tags = tags;
	text = encode(&img.base);
	assert_string_equal(
		text, "{\"pool\":\"rbd\",\"name\":\"vm\\\"1\\n?\","
		      "\"size\":\"18446744073709551615\","
		      "\"snapshots\":[{\"name\":\"a\",\"protected\":true},{\"id\":\"7\"}],"
		      "\"tags\":[{\"key\":\"k\"}],\"createdUnix\":\"-5\",\"inCatalog\":true}");

	/* and back */
	ProtobufCMessage *m = decode_ok(&imgstore__v1__image__descriptor, text);
	img.name = "vm\"1\n?";
	assert_same(m, &img.base);
	protobuf_c_message_free_unpacked(m, NULL);
	free(text);
}

static void test_encode_kinds(void **state)
{
	Imgstore__V1__Operation op;
	Imgstore__V1__Site site;
	Imgstore__V1__UploadChunkRequest up;
	char *details[] = {"one", "two"};
	uint8_t data[] = {0xfb, 0xff, 0x00, 'a'};
	char *text;

	(void)state;
	imgstore__v1__operation__init(&op);
	op.state = IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_FAILED;
	op.n_details = 2;
	op.details = details;
	text = encode(&op.base);
	assert_string_equal(text,
			    "{\"state\":\"OPERATION_STATE_FAILED\",\"details\":[\"one\",\"two\"]}");
	free(text);
	op.state = 77; /* a value this schema does not know: its number */
	op.n_details = 0;
	text = encode(&op.base);
	assert_string_equal(text, "{\"state\":77}");
	free(text);

	imgstore__v1__site__init(&site);
	site.last_answer_seconds = 0.1;
	site.max_lag_seconds = -INFINITY;
	site.pairs = 4000000000u;
	text = encode(&site.base);
	assert_string_equal(text, "{\"lastAnswerSeconds\":0.1,\"pairs\":4000000000,"
				  "\"maxLagSeconds\":\"-Infinity\"}");
	free(text);
	site.max_lag_seconds = NAN;
	site.last_answer_seconds = 1e300;
	text = encode(&site.base);
	assert_string_equal(text, "{\"lastAnswerSeconds\":1e+300,\"pairs\":4000000000,"
				  "\"maxLagSeconds\":\"NaN\"}");
	free(text);

	imgstore__v1__upload_chunk_request__init(&up);
	up.data.data = data;
	up.data.len = sizeof(data);
	text = encode(&up.base);
	assert_string_equal(text, "{\"data\":\"+/8AYQ==\"}");
	free(text);
}

static void test_decode_forms(void **state)
{
	ProtobufCMessage *m;

	(void)state;
	/* proto names and JSON names, numbers as strings and as numbers, unknown fields */
	m = decode_ok(
		&imgstore__v1__image__descriptor,
		" {\"pool\":\"rbd\",\"used_bytes\":\"12\",\"size\":1e3,"
		"\"createdUnix\":\"-9223372036854775808\",\"objectSize\":18446744073709551614,"
		"\"whatever\":{\"deep\":[1,2,{}]},\"tags\":null,\"name\":null,"
		"\"snapshots\":[{\"protected\":false,\"id\":\"18446744073709551615\"}]}\n");
	Imgstore__V1__Image *img = (Imgstore__V1__Image *)m;
	assert_string_equal(img->pool, "rbd");
	assert_string_equal(img->name, "");
	assert_int_equal(img->used_bytes, 12);
	assert_int_equal(img->size, 1000);
	assert_true(img->created_unix == INT64_MIN);
	assert_true(img->object_size == UINT64_MAX - 1);
	assert_int_equal(img->n_snapshots, 1);
	assert_true(img->snapshots[0]->id == UINT64_MAX);
	assert_int_equal(img->n_tags, 0);
	protobuf_c_message_free_unpacked(m, NULL);

	/* enums by name or number */
	m = decode_ok(&imgstore__v1__operation__descriptor,
		      "{\"state\":\"OPERATION_STATE_RUNNING\",\"bytesDone\":\"5\"}");
	assert_int_equal(((Imgstore__V1__Operation *)m)->state,
			 IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_RUNNING);
	protobuf_c_message_free_unpacked(m, NULL);
	m = decode_ok(&imgstore__v1__operation__descriptor, "{\"state\":3}");
	assert_int_equal(((Imgstore__V1__Operation *)m)->state, 3);
	protobuf_c_message_free_unpacked(m, NULL);

	/* bytes: standard and URL-safe, padded or not */
	static const char *const b64[] = {"{\"data\":\"+/8AYQ==\"}", "{\"data\":\"-_8AYQ\"}"};
	for (size_t i = 0; i < 2; i++) {
		m = decode_ok(&imgstore__v1__upload_chunk_request__descriptor, b64[i]);
		Imgstore__V1__UploadChunkRequest *u = (Imgstore__V1__UploadChunkRequest *)m;
		assert_int_equal(u->data.len, 4);
		assert_memory_equal(u->data.data,
				    "\xfb\xff\x00"
				    "a",
				    4);
		protobuf_c_message_free_unpacked(m, NULL);
	}

	/* doubles: numbers and the special strings */
	m = decode_ok(&imgstore__v1__site__descriptor,
		      "{\"lastAnswerSeconds\":\"NaN\",\"maxLagSeconds\":\"-2.5\",\"pairs\":\"7\"}");
	Imgstore__V1__Site *site = (Imgstore__V1__Site *)m;
	assert_true(isnan(site->last_answer_seconds));
	assert_true(site->max_lag_seconds == -2.5);
	assert_int_equal(site->pairs, 7);
	protobuf_c_message_free_unpacked(m, NULL);
}

/* Each is refused with -EINVAL and a message, and frees what it built (ASan, valgrind). */
static void test_hostile(void **state)
{
	static const struct {
		const char *json;
		const char *msg; /* a part of the message */
	} bad[] = {
		{"", "empty body"},
		{"[]", "must be an object"},
		{"\"x\"", "must be an object"},
		{"{", "malformed JSON"},
		{"{} {}", "malformed JSON"},
		{"{}x", "malformed JSON"},
		{"{\"pool\":'rbd'}", "malformed JSON"},
		{"{\"pool\":1}", "'pool' takes a string"},
		{"{\"size\":-1}", "'size': the number is out of range"},
		{"{\"size\":18446744073709551616}", "out of range"},
		{"{\"size\":\"-1\"}", "no integer"},
		{"{\"size\":\"12abc\"}", "no integer"},
		{"{\"size\":\" 12\"}", "no integer"},
		{"{\"size\":1.5}", "no integer"},
		{"{\"size\":true}", "takes an integer"},
		{"{\"createdUnix\":9223372036854775808}", "out of range"},
		{"{\"createdUnix\":-9223372036854775809}", "as a string"},
		{"{\"size\":99999999999999999999999}", "as a string"},
		{"{\"inCatalog\":1}", "takes true or false"},
		{"{\"inCatalog\":\"true\"}", "takes true or false"},
		{"{\"tags\":{}}", "takes an array"},
		{"{\"tags\":[null]}", "null in an array"},
		{"{\"tags\":[{\"key\":\"a\"},{\"key\":2}]}", "'key' takes a string"},
		{"{\"snapshots\":[1]}", "takes an object"},
		/* found by fuzz_rpc_json: a half-built element of a repeated field leaked */
		{"{\"snapshots\":[{\"name\":\"s\",\"id\":\"'\"}]}", "no integer"},
		{"{\"pool\":\"a\\u0000b\"}", "\\u0000"},
		{"{\"pool\":\"\xff\"}", "malformed JSON"},
		{"{\"pool\":\"a\",\"pool\":\"b\",\"usedBytes\":1,\"used_bytes\":2}", "given twice"},
		{"{\"pool\":\"a\"", "malformed JSON"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ProtobufCMessage *m = NULL;
		int r = ims_rpc__json_decode(&m, &imgstore__v1__image__descriptor, bad[i].json,
					     strlen(bad[i].json));
		if (r != -EINVAL || !strstr(ims_error_last(), bad[i].msg))
			fail_msg("%s: %d '%s'", bad[i].json, r, ims_error_last());
		assert_null(m);
	}
	static const char *const bad_other[][2] = {
		{"{\"state\":\"RUNNING\"}", "is no imgstore.v1.OperationState"},
		{"{\"state\":2147483648}", "out of range"},
		{"{\"data\":\"a\"}", "no base64"},
		{"{\"data\":\"ab=c\"}", "no base64"},
		{"{\"data\":\"abc===\"}", "no base64"},
		{"{\"data\":\"a b\"}", "no base64"},
		{"{\"pairs\":4294967296}", "out of range"},
		{"{\"maxLagSeconds\":\"inf\"}", "is no number"},
		{"{\"maxLagSeconds\":\"0x10\"}", "is no number"},
		{"{\"maxLagSeconds\":{}}", "takes a number"},
	};
	const ProtobufCMessageDescriptor *d[] = {
		&imgstore__v1__operation__descriptor,
		&imgstore__v1__operation__descriptor,
		&imgstore__v1__upload_chunk_request__descriptor,
		&imgstore__v1__upload_chunk_request__descriptor,
		&imgstore__v1__upload_chunk_request__descriptor,
		&imgstore__v1__upload_chunk_request__descriptor,
		&imgstore__v1__site__descriptor,
		&imgstore__v1__site__descriptor,
		&imgstore__v1__site__descriptor,
		&imgstore__v1__site__descriptor,
	};
	for (size_t i = 0; i < sizeof(bad_other) / sizeof(bad_other[0]); i++) {
		ProtobufCMessage *m = NULL;
		int r = ims_rpc__json_decode(&m, d[i], bad_other[i][0], strlen(bad_other[i][0]));
		if (r != -EINVAL || !strstr(ims_error_last(), bad_other[i][1]))
			fail_msg("%s: %d '%s'", bad_other[i][0], r, ims_error_last());
	}

	/* deep nesting is refused by the tokenizer, whatever the fields */
	char deep[4100];
	size_t o = 0;
	deep[o++] = '{';
	memcpy(deep + o, "\"x\":", 4);
	o += 4;
	for (int i = 0; i < 1000; i++)
		deep[o++] = '[';
	for (int i = 0; i < 1000; i++)
		deep[o++] = ']';
	deep[o++] = '}';
	ProtobufCMessage *m = NULL;
	assert_int_equal(ims_rpc__json_decode(&m, &imgstore__v1__image__descriptor, deep, o),
			 -EINVAL);
	assert_non_null(strstr(ims_error_last(), "malformed JSON"));
	/* within the depth, unknown nesting is skipped */
	o = 0;
	deep[o++] = '{';
	memcpy(deep + o, "\"x\":", 4);
	o += 4;
	for (int i = 0; i < IMS_RPC__JSON_DEPTH - 1; i++)
		deep[o++] = '[';
	for (int i = 0; i < IMS_RPC__JSON_DEPTH - 1; i++)
		deep[o++] = ']';
	deep[o++] = '}';
	assert_int_equal(ims_rpc__json_decode(&m, &imgstore__v1__image__descriptor, deep, o), 0);
	protobuf_c_message_free_unpacked(m, NULL);
}

static void test_base64(void **state)
{
	unsigned char *out;
	size_t n;

	(void)state;
	assert_int_equal(ims_rpc__base64_decode(&out, &n, "", 0), 0);
	assert_int_equal(n, 0);
	free(out);
	assert_int_equal(ims_rpc__base64_decode(&out, &n, "aGk=", 4), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(out, "hi", 2);
	free(out);
	assert_int_equal(ims_rpc__base64_decode(&out, &n, "aGk", 3), 0);
	assert_int_equal(n, 2);
	free(out);
	assert_int_equal(ims_rpc__base64_decode(&out, &n, "a", 1), -EINVAL);
	assert_int_equal(ims_rpc__base64_decode(&out, &n, "a=Gk", 4), -EINVAL);
}

/* ---- the pipeline without sockets --------------------------------------------------------- */

typedef struct {
	char dir[256];
	char tokens[300];
	toy_app app;
	ims_rpc_server *s;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;
	FILE *fp;

	snprintf(f->dir, sizeof(f->dir), "/tmp/ims-rpc-json-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->tokens, sizeof(f->tokens), "%s/tokens", f->dir);
	fp = fopen(f->tokens, "w");
	if (!fp)
		return -1;
	fprintf(fp, "admin %s alice\n", T_ADMIN);
	fclose(fp);
	chmod(f->tokens, 0600);
	toy_init(&f->app);
	toy_opts(&o, &f->app);
	o.listen = "127.0.0.1:0";
	o.allow_plain_http = true;
	o.token_file = f->tokens;
	o.max_request_bytes = 4096;
	if (ims_rpc_server_start(&f->s, &o) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	ims_rpc_server_stop(f->s);
	unlink(f->tokens);
	rmdir(f->dir);
	free(f);
	return 0;
}

typedef struct {
	int status;
	const char *ct;
	char *body;
	char code[64];
	char message[1024];
} answer;

/* A call through ims_rpc__begin and ims_rpc__finish, as server.c makes it. */
static void call_head(fixture *f, ims_rpc__head *h, const char *body, answer *a)
{
	ims_rpc__peer peer = {.addr = "test"};
	ims_rpc__response r;
	ims_rpc_call call;
	size_t len = body ? strlen(body) : 0;

	memset(a, 0, sizeof(*a));
	if (!h->authorization)
		h->authorization = "Bearer " T_ADMIN;
	h->have_length = true;
	h->length = len;
	if (ims_rpc__begin(f->s, &call, h, &peer, &r))
		ims_rpc__finish(f->s, &call, (const uint8_t *)body, len, &r);
	ims_rpc__call_end(&call);
	a->status = r.status;
	a->ct = r.content_type;
	a->body = calloc(1, r.len + 1);
	assert_non_null(a->body);
	memcpy(a->body, r.body, r.len);
	ims_rpc__response_free(&r);
	if (a->status != 200) {
		json_object *o = json_tokener_parse(a->body), *c, *m;
		assert_non_null(o);
		assert_string_equal(a->ct, "application/json");
		assert_true(json_object_object_get_ex(o, "code", &c));
		assert_true(json_object_object_get_ex(o, "message", &m));
		snprintf(a->code, sizeof(a->code), "%s", json_object_get_string(c));
		snprintf(a->message, sizeof(a->message), "%s", json_object_get_string(m));
		json_object_put(o);
	}
}

static void post(fixture *f, const char *path, const char *ct, const char *body, answer *a)
{
	ims_rpc__head h = {.http_method = "POST", .path = path, .content_type = ct};
	call_head(f, &h, body, a);
}

static void test_json_calls(void **state)
{
	fixture *f = *state;
	answer a;

	post(f, TOY_GET, "application/json", "{\"image\":{\"pool\":\"rbd\",\"image\":\"vm1\"}}",
	     &a);
	assert_string_equal(a.ct, "application/json");
	expect_answer(
		&a, 200,
		"{\"pool\":\"rbd\",\"name\":\"vm1\",\"id\":\"1234abcd\",\"size\":\"10737418240\","
		"\"featuresText\":\"layering,exclusive-lock\",\"inCatalog\":true}");
	post(f, TOY_GET, "Application/JSON; charset=utf-8", "{\"image\":{\"image\":\"vm1\"}}", &a);
	expect_status(&a, 200);
	/* the handler's errors, as for binary */
	post(f, TOY_GET, "application/json", "{\"image\":{\"pool\":\"rbd\",\"image\":\"missing\"}}",
	     &a);
	expect_error(&a, 404, "not_found", "no image 'rbd/missing' on site 'a'");
	/* a body that is no JSON GetImageRequest */
	unsigned calls = toy_calls(&f->app);
	post(f, TOY_GET, "application/json", "{\"image\":\"vm1\"}", &a);
	expect_error(&a, 400, "invalid_argument",
		     "malformed request: no valid JSON imgstore.v1.GetImageRequest: field 'image' "
		     "takes an object");
	post(f, TOY_GET, "application/json", "{\"image\":", &a);
	expect_code(&a, 400, "invalid_argument");
	post(f, TOY_GET, "application/json", NULL, &a);
	expect_error(&a, 400, "invalid_argument",
		     "malformed request: no valid JSON imgstore.v1.GetImageRequest: an empty body "
		     "is no JSON object (send {})");
	assert_int_equal(toy_calls(&f->app), calls);
	/* other types still get 415 */
	post(f, TOY_GET, "text/json", "{}", &a);
	expect_code(&a, 415, "invalid_argument");
	/* compressed bodies are not taken (Connect clients send identity unless told) */
	ims_rpc__head h = {.http_method = "POST",
			   .path = TOY_GET,
			   .content_type = "application/json",
			   .encoding = "gzip"};
	call_head(f, &h, "{}", &a);
	expect_error(&a, 501, "unimplemented",
		     "Content-Encoding 'gzip' is not supported: send the body uncompressed");
	h.encoding = "identity";
	call_head(f, &h, "{\"image\":{\"image\":\"vm1\"}}", &a);
	expect_status(&a, 200);
}

static void test_get_calls(void **state)
{
	fixture *f = *state;
	answer a;
	ims_rpc__head h;

	h = (ims_rpc__head){.http_method = "GET",
			    .path = TOY_GET,
			    .q_connect = "v1",
			    .q_encoding = "json",
			    .q_message = "{\"image\":{\"pool\":\"rbd\",\"image\":\"vm2\"}}"};
	call_head(f, &h, NULL, &a);
	assert_string_equal(a.ct, "application/json");
	assert_non_null(strstr(a.body, "\"name\":\"vm2\""));
	expect_status(&a, 200);

	/* proto, base64url without padding: GetImageRequest{image{pool "rbd" image "vm3"}} */
	h = (ims_rpc__head){.http_method = "GET",
			    .path = TOY_GET,
			    .q_connect = "v1",
			    .q_encoding = "proto",
			    .q_base64 = "1",
			    .q_compression = "identity",
			    .q_message = "CgoKA3JiZBIDdm0z"};
	call_head(f, &h, NULL, &a);
	assert_string_equal(a.ct, "application/proto");
	assert_int_equal(a.status, 200);
	assert_non_null(memmem(a.body, 40, "vm3", 3));
	free(a.body);

	/* a mutating method takes POST only */
	h = (ims_rpc__head){.http_method = "GET",
			    .path = TOY_CREATE,
			    .q_connect = "v1",
			    .q_encoding = "json",
			    .q_message = "{}"};
	call_head(f, &h, NULL, &a);
	expect_error(&a, 405, "unimplemented",
		     "ImageService/CreateImage takes POST only; GET is for the reads declared "
		     "idempotency_level NO_SIDE_EFFECTS");
	/* not mutating, but not declared NO_SIDE_EFFECTS either (UploadChunk is such a one) */
	h = (ims_rpc__head){.http_method = "GET",
			    .path = TOY_UPLOAD,
			    .q_connect = "v1",
			    .q_encoding = "json",
			    .q_message = "{}"};
	call_head(f, &h, NULL, &a);
	expect_code(&a, 405, "unimplemented");
	h = (ims_rpc__head){.http_method = "PUT", .path = TOY_GET};
	call_head(f, &h, NULL, &a);
	expect_error(&a, 405, "unimplemented", "ImageService/GetImage takes POST or GET, not PUT");

	/* the query must say what it holds */
	h = (ims_rpc__head){.http_method = "GET", .path = TOY_GET, .q_encoding = "json"};
	call_head(f, &h, NULL, &a);
	expect_error(&a, 400, "invalid_argument",
		     "a GET call needs the query parameter connect=v1");
	h = (ims_rpc__head){
		.http_method = "GET", .path = TOY_GET, .q_connect = "v1", .q_encoding = "xml"};
	call_head(f, &h, NULL, &a);
	expect_code(&a, 400, "invalid_argument");
	h = (ims_rpc__head){.http_method = "GET",
			    .path = TOY_GET,
			    .q_connect = "v1",
			    .q_encoding = "proto",
			    .q_compression = "gzip"};
	call_head(f, &h, NULL, &a);
	expect_code(&a, 501, "unimplemented");
	h = (ims_rpc__head){.http_method = "GET",
			    .path = TOY_GET,
			    .q_connect = "v1",
			    .q_encoding = "proto",
			    .q_base64 = "1",
			    .q_message = "!!"};
	call_head(f, &h, NULL, &a);
	expect_code(&a, 400, "invalid_argument");
	/* no message: an empty JSON body is refused, an empty proto one is the empty message */
	h = (ims_rpc__head){
		.http_method = "GET", .path = TOY_GET, .q_connect = "v1", .q_encoding = "proto"};
	call_head(f, &h, NULL, &a);
	expect_error(&a, 400, "invalid_argument", "no image given");
}

static void test_timeouts(void **state)
{
	fixture *f = *state;
	answer a;
	ims_rpc__head h;
	unsigned calls;

	/* a budget that runs out while the handler works */
	f->app.sleep_ms = 60;
	h = (ims_rpc__head){.http_method = "POST",
			    .path = TOY_GET,
			    .content_type = "application/json",
			    .timeout_ms = "20"};
	call_head(f, &h, "{\"image\":{\"pool\":\"rbd\",\"image\":\"slow\"}}", &a);
	expect_error(&a, 408, "deadline_exceeded",
		     "the call's budget (Connect-Timeout-Ms 20) ran out while it was served");
	/* enough budget */
	h.timeout_ms = "5000";
	call_head(f, &h, "{\"image\":{\"pool\":\"rbd\",\"image\":\"slow\"}}", &a);
	expect_status(&a, 200);
	f->app.sleep_ms = 0;

	/* a budget spent before the handler is called: no call */
	ims_rpc__peer peer = {.addr = "test"};
	ims_rpc__response r;
	ims_rpc_call call;
	const char *body = "{\"image\":{\"pool\":\"rbd\",\"image\":\"vm1\"}}";
	h = (ims_rpc__head){.http_method = "POST",
			    .path = TOY_GET,
			    .content_type = "application/json",
			    .authorization = "Bearer " T_ADMIN,
			    .timeout_ms = "1"};
	calls = toy_calls(&f->app);
	assert_true(ims_rpc__begin(f->s, &call, &h, &peer, &r));
	assert_true(ims_rpc_call_remaining_ms(&call) <= 1);
	usleep(5000);
	assert_int_equal(ims_rpc_call_remaining_ms(&call), 0);
	ims_rpc__finish(f->s, &call, (const uint8_t *)body, strlen(body), &r);
	ims_rpc__call_end(&call);
	assert_int_equal(r.status, 408);
	assert_non_null(strstr((char *)r.body, "ran out before it was served"));
	ims_rpc__response_free(&r);
	assert_int_equal(toy_calls(&f->app), calls);

	/* no header: no deadline */
	h.timeout_ms = NULL;
	assert_true(ims_rpc__begin(f->s, &call, &h, &peer, &r));
	assert_int_equal(ims_rpc_call_remaining_ms(&call), -1);
	ims_rpc__call_end(&call);

	/* a header that is no budget */
	static const char *const bad[] = {"", "-1", "abc", "12345678901", "1.5", " 5"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h = (ims_rpc__head){.http_method = "POST",
				    .path = TOY_GET,
				    .content_type = "application/proto",
				    .timeout_ms = bad[i]};
		call_head(f, &h, "", &a);
		expect_code(&a, 400, "invalid_argument");
	}
	h = (ims_rpc__head){.http_method = "POST",
			    .path = TOY_GET,
			    .content_type = "application/proto",
			    .timeout_ms = "9999999999"};
	call_head(f, &h, "", &a);
	expect_error(&a, 400, "invalid_argument", "no image given");
}

/* The reason in an error body's details, decoded as a stock client would. */
static void expect_reason(const char *body, const char *reason)
{
	json_object *o = json_tokener_parse(body), *details, *d, *t, *v, *dbg, *r;
	unsigned char *raw;
	size_t n;

	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "details", &details));
	assert_int_equal(json_object_array_length(details), 1);
	d = json_object_array_get_idx(details, 0);
	assert_true(json_object_object_get_ex(d, "type", &t));
	assert_string_equal(json_object_get_string(t), "imgstore.v1.ErrorInfo");
	assert_true(json_object_object_get_ex(d, "value", &v));
	/* unpadded, as Connect writes it */
	assert_null(strchr(json_object_get_string(v), '='));
	assert_int_equal(ims_rpc__base64_decode(&raw, &n, json_object_get_string(v),
						(size_t)json_object_get_string_len(v)),
			 0);
	Imgstore__V1__ErrorInfo *info = imgstore__v1__error_info__unpack(NULL, n, raw);
	assert_non_null(info);
	assert_string_equal(info->reason, reason);
	assert_string_equal(info->domain, "imgstore");
	imgstore__v1__error_info__free_unpacked(info, NULL);
	free(raw);
	assert_true(json_object_object_get_ex(d, "debug", &dbg));
	assert_true(json_object_object_get_ex(dbg, "reason", &r));
	assert_string_equal(json_object_get_string(r), reason);
	json_object_put(o);
}

static void test_error_details(void **state)
{
	fixture *f = *state;
	answer a;

	/* from the errno: ESTALE is a stale lease */
	post(f, TOY_GET, "application/json", "{\"image\":{\"pool\":\"rbd\",\"image\":\"stale\"}}",
	     &a);
	assert_int_equal(a.status, 400);
	assert_string_equal(a.code, "failed_precondition");
	assert_string_equal(a.message, "lease 'x' is stale");
	expect_reason(a.body, "STALE_LEASE");
	free(a.body);
	/* set by the handler */
	post(f, TOY_GET, "application/json", "{\"image\":{\"pool\":\"rbd\",\"image\":\"fenced\"}}",
	     &a);
	assert_string_equal(a.code, "failed_precondition");
	expect_reason(a.body, "FENCED");
	free(a.body);
	/* none for other errors */
	post(f, TOY_GET, "application/json", "{\"image\":{\"pool\":\"rbd\",\"image\":\"missing\"}}",
	     &a);
	assert_null(strstr(a.body, "details"));
	expect_code(&a, 404, "not_found");

	assert_string_equal(ims_rpc_reason_from_errno(-EROFS), "NOT_PRIMARY");
	assert_string_equal(ims_rpc_reason_from_errno(EUCLEAN), "SPLIT_BRAIN");
	assert_string_equal(ims_rpc_reason_from_errno(-ESTALE), "STALE_LEASE");
	assert_null(ims_rpc_reason_from_errno(-EBUSY));
}

/* libimgstore reads the reason; hostile details are skipped. */
static void test_client_reason(void **state)
{
	ims_client_opts co = IMS_CLIENT_OPTS_INIT;
	ims_client *c = NULL;
	ProtobufCMessage *m = NULL;
	static const struct {
		const char *body;
		const char *reason;
	} cases[] = {
		/* ErrorInfo{reason "SPLIT_BRAIN", domain "imgstore"}, padded and not */
		{"{\"code\":\"failed_precondition\",\"message\":\"m\",\"details\":[{\"type\":"
		 "\"imgstore.v1.ErrorInfo\",\"value\":\"CgtTUExJVF9CUkFJThIIaW1nc3RvcmU\"}]}",
		 "SPLIT_BRAIN"},
		{"{\"code\":\"failed_precondition\",\"message\":\"m\",\"details\":[{\"type\":"
		 "\"other.Thing\",\"value\":\"AAAA\"},{\"type\":\"type.googleapis.com/"
		 "imgstore.v1.ErrorInfo\",\"value\":\"CgtTUExJVF9CUkFJThIIaW1nc3RvcmU=\"}]}",
		 "SPLIT_BRAIN"},
		/* a reason with an escape sequence comes out printable */
		{"{\"code\":\"failed_precondition\",\"details\":[{\"type\":\"imgstore.v1."
		 "ErrorInfo\","
		 "\"value\":\"CgMbW0E\"}]}",
		 "?[A"},
		{"{\"code\":\"failed_precondition\",\"details\":[{\"type\":\"imgstore.v1."
		 "ErrorInfo\","
		 "\"value\":\"!!!\"}]}",
		 ""},
		{"{\"code\":\"failed_precondition\",\"details\":[{\"type\":\"imgstore.v1."
		 "ErrorInfo\","
		 "\"value\":\"/////w\"}]}",
		 ""},
		{"{\"code\":\"failed_precondition\",\"details\":{\"type\":1}}", ""},
		{"{\"code\":\"failed_precondition\",\"details\":[1,null,{\"type\":[]}]}", ""},
		{"{\"code\":\"failed_precondition\"}", ""},
	};

	(void)state;
	co.server = "http://127.0.0.1:1";
	assert_int_equal(ims_client_open(&c, &co), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = ims_client__decode(c, 400, "application/json",
					   (const uint8_t *)cases[i].body, strlen(cases[i].body),
					   &imgstore__v1__image__descriptor, &m);
		assert_int_equal(r, -EBUSY);
		if (strcmp(ims_client_last_reason(c), cases[i].reason) != 0)
			fail_msg("case %zu: '%s'", i, ims_client_last_reason(c));
	}
	/* a success clears it */
	Imgstore__V1__Image img = IMGSTORE__V1__IMAGE__INIT;
	uint8_t buf[16];
	size_t n = protobuf_c_message_pack(&img.base, buf);
	assert_int_equal(ims_client__decode(c, 200, "application/proto", buf, n,
					    &imgstore__v1__image__descriptor, &m),
			 0);
	assert_string_equal(ims_client_last_reason(c), "");
	protobuf_c_message_free_unpacked(m, NULL);
	ims_client_close(c);
}

/* ---- over TCP, with libcurl: the query and the header as server.c reads them -------------- */

typedef struct {
	char b[8192];
	size_t n;
} sink;

static size_t sink_write(char *p, size_t sz, size_t nm, void *u)
{
	sink *s = u;
	size_t n = sz * nm;
	if (n > sizeof(s->b) - 1 - s->n)
		n = sizeof(s->b) - 1 - s->n;
	memcpy(s->b + s->n, p, n);
	s->n += n;
	s->b[s->n] = '\0';
	return sz * nm;
}

static long http(fixture *f, const char *method, const char *path_query, const char *ct,
		 const char *timeout, const char *body, sink *out)
{
	char url[2048], auth[128], tmo[64], cth[128];
	struct curl_slist *hdr = NULL;
	CURL *c = curl_easy_init();
	long status = 0;

	assert_non_null(c);
	memset(out, 0, sizeof(*out));
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", ims_rpc_server_port(f->s), path_query);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", T_ADMIN);
	hdr = curl_slist_append(hdr, auth);
	if (ct) {
		snprintf(cth, sizeof(cth), "Content-Type: %s", ct);
		hdr = curl_slist_append(hdr, cth);
	}
	if (timeout) {
		snprintf(tmo, sizeof(tmo), "Connect-Timeout-Ms: %s", timeout);
		hdr = curl_slist_append(hdr, tmo);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	return status;
}

static void test_over_tcp(void **state)
{
	fixture *f = *state;
	sink s;

	assert_int_equal(http(f, "POST", TOY_GET, "application/json", NULL,
			      "{\"image\":{\"pool\":\"rbd\",\"image\":\"vm1\"}}", &s),
			 200);
	assert_non_null(strstr(s.b, "\"name\":\"vm1\""));
	/* GET, the message URL-encoded */
	assert_int_equal(http(f, "GET",
			      TOY_GET "?connect=v1&encoding=json&message="
				      "%7B%22image%22%3A%7B%22pool%22%3A%22rbd%22%2C%22image%22%3A"
				      "%22vm4%22%7D%7D",
			      NULL, NULL, NULL, &s),
			 200);
	assert_non_null(strstr(s.b, "\"name\":\"vm4\""));
	assert_int_equal(http(f, "GET", TOY_CREATE "?connect=v1&encoding=json&message=%7B%7D", NULL,
			      NULL, NULL, &s),
			 405);
	/* the budget */
	f->app.sleep_ms = 50;
	assert_int_equal(http(f, "POST", TOY_GET, "application/json", "10",
			      "{\"image\":{\"pool\":\"rbd\",\"image\":\"slow\"}}", &s),
			 408);
	assert_non_null(strstr(s.b, "\"code\":\"deadline_exceeded\""));
	f->app.sleep_ms = 0;
	/* a slow call (on a thread of its own) that bounds its wait by the budget: answered
	 * at the deadline, not when the wait would have ended (60 s) */
	toy_slow_release(&f->app, false);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(http(f, "POST", TOY_WAIT, "application/json", "300",
			      "{\"image\":{\"pool\":\"rbd\",\"image\":\"vm1\"}}", &s),
			 408);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(took >= 0.29 && took < 5);
	assert_non_null(strstr(s.b, "ran out while it was served"));
	assert_int_equal(http(f, "POST", TOY_GET, "application/json", "x",
			      "{\"image\":{\"pool\":\"rbd\",\"image\":\"vm1\"}}", &s),
			 400);
}

/* Request bodies kept between requests (proto/server.c): four at most, of 1 to 4 MiB; when the
 * cache is full a larger one replaces the smallest (an upload's short last chunk does not
 * hold a place that the next upload's chunks never fit). */
static void test_bodies_kept(void **state)
{
	(void)state;
	ims_rpc_server *s = calloc(1, sizeof(*s));
	uint8_t *b[7];
	assert_non_null(s);
	pthread_mutex_init(&s->bodies_lock, NULL);
	for (unsigned i = 0; i < 7; i++)
		assert_non_null(b[i] = malloc(16)); /* the capacities below are only claimed */
	/* too small or too large: not kept, given back to be freed */
	assert_ptr_equal(ims_rpc__body_keep(s, b[0], 64u << 10), b[0]);
	assert_ptr_equal(ims_rpc__body_keep(s, b[0], (4u << 20) + 1), b[0]);
	assert_null(ims_rpc__body_keep(s, NULL, 2u << 20));
	/* three chunks of 2 MiB and a last one of 1.5 MiB */
	for (unsigned i = 0; i < 3; i++)
		assert_null(ims_rpc__body_keep(s, b[i], 2u << 20));
	assert_null(ims_rpc__body_keep(s, b[3], 3u << 19));
	assert_int_equal(s->nbodies, 4);
	/* full: a 2 MiB body takes the 1.5 MiB one's place, which goes */
	assert_ptr_equal(ims_rpc__body_keep(s, b[4], 2u << 20), b[3]);
	for (unsigned i = 0; i < s->nbodies; i++)
		assert_int_equal(s->bodies[i].cap, 2u << 20);
	/* full of larger or equal ones: the new one goes */
	assert_ptr_equal(ims_rpc__body_keep(s, b[5], 2u << 20), b[5]);
	assert_ptr_equal(ims_rpc__body_keep(s, b[6], 1u << 20), b[6]);
	assert_int_equal(s->nbodies, 4);
	for (unsigned i = 0; i < s->nbodies; i++)
		free(s->bodies[i].buf);
	free(b[3]);
	free(b[5]);
	free(b[6]);
	pthread_mutex_destroy(&s->bodies_lock);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_encode_image),
		cmocka_unit_test(test_encode_kinds),
		cmocka_unit_test(test_decode_forms),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_base64),
		cmocka_unit_test_setup_teardown(test_json_calls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_calls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_over_tcp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_details, setup, teardown),
		cmocka_unit_test(test_client_reason),
		cmocka_unit_test(test_bodies_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
