/*
 * Unit tests of the RPC pipeline without sockets (ims_rpc_server_dispatch): the order of the
 * checks and their exact answers, the token file, the audit line, option checks; and of the
 * client's reading of answers (ims_client__decode), hostile ones included.
 */
#include <errno.h>
#include <fcntl.h>
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
#include <json-c/json.h>

#include "common/error.h"
#include "proto/client_int.h"
#include "proto/server.h"
#include "rpc_toy.h"

#define T_ADMIN	  "admin-0123456789abcdef"
#define T_HOST	  "host-0123456789abcdef"
#define T_READER  "reader-0123456789abcdef"
#define T_UNNAMED "unnamed-0123456789abcdef"

typedef struct {
	char dir[256];
	char tokens[300];
	toy_app app;
	ims_rpc_server *s;
} fixture;

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static const char *good_tokens = "# roles and tokens\n"
				 "\n"
				 "admin " T_ADMIN " alice\n"
				 "  host\t" T_HOST " hv1.example\r\n"
				 "reader " T_READER " monitor\n"
				 "reader " T_UNNAMED "\n";

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;

	snprintf(f->dir, sizeof(f->dir), "/tmp/ims-rpc-pipeline-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->tokens, sizeof(f->tokens), "%s/tokens", f->dir);
	write_file(f->tokens, good_tokens, 0600);
	toy_init(&f->app);
	toy_opts(&o, &f->app);
	o.dispatch_only = true;
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
	char cmd[300];

	ims_rpc_server_stop(f->s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

typedef struct {
	int status;
	const char *ct;
	uint8_t *body;
	size_t len;
	char code[64];
	char message[1024];
} answer;

static void call(fixture *f, const char *path, const char *ct, const char *token,
		 const ProtobufCMessage *req, const uint8_t *raw, size_t rawlen, answer *a)
{
	uint8_t buf[8192];
	char auth[256];
	size_t len = rawlen;

	memset(a, 0, sizeof(*a));
	if (req) {
		len = protobuf_c_message_get_packed_size(req);
		assert_true(len <= sizeof(buf));
		protobuf_c_message_pack(req, buf);
		raw = buf;
	}
	if (token)
		snprintf(auth, sizeof(auth), "Bearer %s", token);
	assert_int_equal(ims_rpc_server_dispatch(f->s, path, ct, token ? auth : NULL, raw, len,
						 &a->status, &a->ct, &a->body, &a->len),
			 0);
	if (strcmp(a->ct, "application/json") == 0) {
		json_object *o = json_tokener_parse((const char *)a->body);
		json_object *c, *m;
		assert_non_null(o);
		assert_true(json_object_object_get_ex(o, "code", &c));
		assert_true(json_object_object_get_ex(o, "message", &m));
		snprintf(a->code, sizeof(a->code), "%s", json_object_get_string(c));
		snprintf(a->message, sizeof(a->message), "%s", json_object_get_string(m));
		json_object_put(o);
		/* no token ever echoed */
		assert_null(strstr((const char *)a->body, "0123456789abcdef"));
	}
}

static void get_req(Imgstore__V1__GetImageRequest *q, Imgstore__V1__ImageSpec *spec,
		    const char *name)
{
	imgstore__v1__get_image_request__init(q);
	imgstore__v1__image_spec__init(spec);
	spec->pool = "rbd";
	spec->image = (char *)name;
	q->image = spec;
}

static void create_req(Imgstore__V1__CreateImageRequest *q, Imgstore__V1__ImageSpec *spec,
		       const char *name)
{
	imgstore__v1__create_image_request__init(q);
	imgstore__v1__image_spec__init(spec);
	spec->pool = "rbd";
	spec->image = (char *)name;
	q->image = spec;
	q->size = 1ull << 30;
}

/* GetImage of rbd/NAME as TOKEN. */
static void get_as(fixture *f, const char *token, const char *name, answer *a)
{
	Imgstore__V1__GetImageRequest q;
	Imgstore__V1__ImageSpec spec;
	get_req(&q, &spec, name);
	call(f, TOY_GET, "application/proto", token, &q.base, NULL, 0, a);
}

/* CreateImage of rbd/NAME (1 GiB) as TOKEN. */
static void create_as(fixture *f, const char *token, const char *name, answer *a)
{
	Imgstore__V1__CreateImageRequest q;
	Imgstore__V1__ImageSpec spec;
	create_req(&q, &spec, name);
	call(f, TOY_CREATE, "application/proto", token, &q.base, NULL, 0, a);
}

static void test_round_trip(void **state)
{
	fixture *f = *state;
	Imgstore__V1__GetImageRequest q;
	Imgstore__V1__ImageSpec spec;
	answer a;

	get_req(&q, &spec, "vm1");
	call(f, TOY_GET, "application/proto", T_READER, &q.base, NULL, 0, &a);
	assert_int_equal(a.status, 200);
	assert_string_equal(a.ct, "application/proto");
	Imgstore__V1__Image *img = imgstore__v1__image__unpack(NULL, a.len, a.body);
	assert_non_null(img);
	assert_string_equal(img->pool, "rbd");
	assert_string_equal(img->name, "vm1");
	assert_int_equal(img->size, 10ull << 30);
	assert_string_equal(img->features_text, "layering,exclusive-lock");
	imgstore__v1__image__free_unpacked(img, NULL);
	free(a.body);

	/* content type parameters and case are tolerated */
	call(f, TOY_GET, "Application/Proto; charset=binary", T_READER, &q.base, NULL, 0, &a);
	expect_status(&a, 200);

	/* an empty body is the empty message: the handler refuses it itself */
	call(f, TOY_GET, "application/proto", T_READER, NULL, NULL, 0, &a);
	expect_error(&a, 400, "invalid_argument", "no image given");
}

static void test_check_order(void **state)
{
	fixture *f = *state;
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				       0xff, 0xff, 0xff, 0xff, 0xff};
	uint8_t big[5000];
	unsigned calls = toy_calls(&f->app);
	answer a;

	memset(big, 0xff, sizeof(big));
	/* unknown path first, even without token or content type */
	call(f, "/imgstore.v1.ImageService/Nope", NULL, NULL, NULL, junk, sizeof(junk), &a);
	expect_error(&a, 404, "unimplemented", "no method '/imgstore.v1.ImageService/Nope'");
	/* then the content type, before the token */
	call(f, TOY_GET, "text/plain", NULL, NULL, junk, sizeof(junk), &a);
	expect_error(&a, 415, "invalid_argument",
		     "the request's Content-Type must be application/proto or application/json, "
		     "not 'text/plain'");
	call(f, TOY_GET, NULL, T_ADMIN, NULL, junk, sizeof(junk), &a);
	expect_status(&a, 415);
	/* then the size, before the token and before decoding (the junk would give 400) */
	call(f, TOY_GET, "application/proto", NULL, NULL, big, sizeof(big), &a);
	expect_error(&a, 413, "resource_exhausted",
		     "a request body of 5000 bytes exceeds the limit of 4096 bytes");
	/* then the token */
	call(f, TOY_GET, "application/proto", NULL, NULL, junk, sizeof(junk), &a);
	expect_error(&a, 401, "unauthenticated",
		     "ImageService/GetImage needs a bearer token (Authorization: Bearer "
		     "TOKEN)");
	call(f, TOY_GET, "application/proto", "not-a-valid-token-at-all", NULL, junk, sizeof(junk),
	     &a);
	assert_int_equal(a.status, 401);
	assert_string_equal(a.message, "invalid bearer token");
	free(a.body);
	/* then the role */
	call(f, TOY_CREATE, "application/proto", T_READER, NULL, junk, sizeof(junk), &a);
	expect_error(&a, 403, "permission_denied",
		     "'monitor' (role reader) may not call ImageService/CreateImage, which "
		     "needs role admin");
	/* a method without a handler, before decoding */
	call(f, TOY_DELETE, "application/proto", T_ADMIN, NULL, junk, sizeof(junk), &a);
	expect_error(&a, 501, "unimplemented", "ImageService/DeleteImage is not implemented");
	/* then decoding */
	call(f, TOY_GET, "application/proto", T_READER, NULL, junk, sizeof(junk), &a);
	expect_error(&a, 400, "invalid_argument",
		     "malformed request: 11 bytes that are no valid "
		     "imgstore.v1.GetImageRequest");
	/* no handler ran for any of them */
	assert_int_equal(toy_calls(&f->app), calls);
}

static void test_truncated(void **state)
{
	fixture *f = *state;
	Imgstore__V1__GetImageRequest q;
	Imgstore__V1__ImageSpec spec;
	uint8_t buf[64];
	answer a;

	get_req(&q, &spec, "vm1");
	size_t n = imgstore__v1__get_image_request__pack(&q, buf);
	for (size_t cut = 1; cut < n; cut++) {
		call(f, TOY_GET, "application/proto", T_READER, NULL, buf, n - cut, &a);
		/* every cut is refused, none is misread as a shorter name */
		assert_int_equal(a.status, 400);
		assert_string_equal(a.code, "invalid_argument");
		assert_non_null(strstr(a.message, "malformed request"));
		free(a.body);
	}
}

static void test_handler_errors(void **state)
{
	fixture *f = *state;
	answer a;

	get_as(f, T_READER, "missing", &a);
	expect_error(&a, 404, "not_found", "no image 'rbd/missing' on site 'a'");

	/* no message set: strerror, not a stale message of an earlier call */
	ims_error_set(-EPERM, "stale message of this thread");
	get_as(f, T_READER, "nomsg", &a);
	expect_error(&a, 500, "internal", "Input/output error");

	/* a handler answering the wrong type is the server's bug: internal */
	call(f, TOY_RENAME, "application/proto", T_READER, NULL, NULL, 0, &a);
	expect_error(&a, 500, "internal", "the server failed to build a response");
}

/* Quotes, backslashes, control characters and bad UTF-8 give valid JSON. */
static void test_json_escaping(void **state)
{
	fixture *f = *state;
	answer a;

	create_as(f, T_ADMIN, "quote", &a);
	assert_int_equal(a.status, 400);
	assert_string_equal(a.message, "bad name \"x\"\\y\tz\x01 \xc3\xa9 ? end");
	assert_non_null(strstr((const char *)a.body, "\\\"x\\\"\\\\y\\tz\\u0001"));
	free(a.body);

	/* an unknown path with bytes that are no UTF-8 */
	call(f, "/x\xff\xfe/y\"z", NULL, NULL, NULL, NULL, 0, &a);
	assert_int_equal(a.status, 404);
	assert_string_equal(a.message, "no method '/x?"
				       "?/y\"z'");
	free(a.body);
}

static void test_no_role_method(void **state)
{
	fixture *f = *state;
	Imgstore__V1__ListImagesRequest q = IMGSTORE__V1__LIST_IMAGES_REQUEST__INIT;
	answer a;

	call(f, TOY_LIST, "application/proto", NULL, &q.base, NULL, 0, &a);
	expect_status(&a, 200);
	/* a bad token is refused even where none is needed */
	call(f, TOY_LIST, "application/proto", "not-a-valid-token-at-all", &q.base, NULL, 0, &a);
	expect_status(&a, 401);
	/* a scheme other than Bearer */
	uint8_t *body;
	size_t len;
	int status;
	const char *ct;
	assert_int_equal(ims_rpc_server_dispatch(f->s, TOY_GET, "application/proto",
						 "Basic " T_READER, NULL, 0, &status, &ct, &body,
						 &len),
			 0);
	assert_int_equal(status, 401);
	assert_non_null(strstr((const char *)body, "must be 'Bearer TOKEN'"));
	free(body);
	/* the scheme's case does not matter */
	Imgstore__V1__GetImageRequest g;
	Imgstore__V1__ImageSpec spec;
	uint8_t buf[64];
	get_req(&g, &spec, "vm1");
	size_t n = imgstore__v1__get_image_request__pack(&g, buf);
	assert_int_equal(ims_rpc_server_dispatch(f->s, TOY_GET, "application/proto",
						 "bearer   " T_READER "  ", buf, n, &status, &ct,
						 &body, &len),
			 0);
	assert_int_equal(status, 200);
	free(body);
}

static void test_audit(void **state)
{
	fixture *f = *state;
	Imgstore__V1__CreateImageRequest q;
	Imgstore__V1__ImageSpec spec;
	char line[1024];
	answer a;

	create_as(f, T_ADMIN, "vm1", &a);
	expect_status(&a, 200);
	unsigned n = toy_last_audit(&f->app, line, sizeof(line));
	assert_string_equal(line, "audit caller=alice role=admin peer=dispatch "
				  "method=ImageService/CreateImage target=rbd/vm1 result=ok");

	create_req(&q, &spec, "exists"); /* q is called again below */
	call(f, TOY_CREATE, "application/proto", T_ADMIN, &q.base, NULL, 0, &a);
	free(a.body);
	assert_int_equal(toy_last_audit(&f->app, line, sizeof(line)), n + 1);
	assert_string_equal(line,
			    "audit caller=alice role=admin peer=dispatch "
			    "method=ImageService/CreateImage target=rbd/exists "
			    "result=already_exists msg=\"image 'rbd/exists' already exists\"");

	/* refused by authentication: no caller, no target, and never the token */
	call(f, TOY_CREATE, "application/proto", "wrong-token-0123456789abcdef", &q.base, NULL, 0,
	     &a);
	free(a.body);
	toy_last_audit(&f->app, line, sizeof(line));
	assert_string_equal(line, "audit caller=- role=- peer=dispatch "
				  "method=ImageService/CreateImage target=- "
				  "result=unauthenticated msg=\"invalid bearer token\"");

	/* a role too low */
	call(f, TOY_CREATE, "application/proto", T_HOST, &q.base, NULL, 0, &a);
	free(a.body);
	toy_last_audit(&f->app, line, sizeof(line));
	assert_string_equal(line, "audit caller=hv1.example role=host peer=dispatch "
				  "method=ImageService/CreateImage target=- "
				  "result=permission_denied msg=\"'hv1.example' (role host) may "
				  "not call ImageService/CreateImage, which needs role admin\"");

	/* quotes and control characters are escaped, in the target too */
	create_req(&q, &spec, "quote");
	spec.pool = "my pool";
	call(f, TOY_CREATE, "application/proto", T_ADMIN, &q.base, NULL, 0, &a);
	free(a.body);
	toy_last_audit(&f->app, line, sizeof(line));
	assert_string_equal(line,
			    "audit caller=alice role=admin peer=dispatch "
			    "method=ImageService/CreateImage target=\"my pool/quote\" "
			    "result=invalid_argument "
			    "msg=\"bad name \\\"x\\\"\\\\y\\x09z\\x01 \\xc3\\xa9 \\xff end\"");

	/* a token without a name is "token-LINE" */
	Imgstore__V1__ResizeImageRequest r = IMGSTORE__V1__RESIZE_IMAGE_REQUEST__INIT;
	r.image = &spec;
	spec.pool = "rbd";
	spec.image = "vm2";
	call(f, TOY_RESIZE, "application/proto", T_UNNAMED, &r.base, NULL, 0, &a);
	expect_status(&a, 403);
	toy_last_audit(&f->app, line, sizeof(line));
	assert_non_null(strstr(line, "caller=token-6 role=reader "));

	/* reading is not audited */
	n = toy_last_audit(&f->app, line, sizeof(line));
	get_as(f, T_ADMIN, "vm1", &a);
	expect_status(&a, 200);
	assert_int_equal(toy_last_audit(&f->app, line, sizeof(line)), n);

	/* no audit line holds a token */
	for (unsigned i = 0; i < f->app.naudit && i < TOY_MAX_AUDIT; i++)
		assert_null(strstr(f->app.audit[i], "0123456789abcdef"));
}

static int start_with_tokens(fixture *f, const char *text, mode_t mode, ims_rpc_server **out)
{
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;
	char path[300];

	snprintf(path, sizeof(path), "%s/t2", f->dir);
	unlink(path);
	write_file(path, text, mode);
	toy_opts(&o, &f->app);
	o.dispatch_only = true;
	o.token_file = path;
	return ims_rpc_server_start(out, &o);
}

static void test_token_file(void **state)
{
	fixture *f = *state;
	ims_rpc_server *s = NULL;
	char msg[1200];

	assert_int_equal(start_with_tokens(f, good_tokens, 0644, &s), -EACCES);
	snprintf(msg, sizeof(msg),
		 "token file '%s/t2' has mode 0644: group and others must have no access to it "
		 "(chmod 600 '%s/t2')",
		 f->dir, f->dir);
	assert_string_equal(ims_error_last(), msg);
	assert_int_equal(start_with_tokens(f, good_tokens, 0620, &s), -EACCES);
	assert_int_equal(start_with_tokens(f, good_tokens, 0604, &s), -EACCES);
	assert_int_equal(start_with_tokens(f, good_tokens, 0400, &s), 0);
	ims_rpc_server_stop(s);

	/* short token: refused, and the message does not quote it */
	assert_int_equal(start_with_tokens(f, "# x\nadmin short-secret\n", 0600, &s), -EINVAL);
	snprintf(msg, sizeof(msg),
		 "%s/t2:2: a token is 16 to 512 printable characters without spaces", f->dir);
	assert_string_equal(ims_error_last(), msg);
	assert_int_equal(start_with_tokens(f, "root 0123456789abcdefgh\n", 0600, &s), -EINVAL);
	assert_null(strstr(ims_error_last(), "0123456789abcdefgh"));
	assert_non_null(strstr(ims_error_last(), "t2:1: the role must be"));
	/* the token first by mistake: still not quoted */
	assert_int_equal(start_with_tokens(f, "0123456789abcdefgh admin\n", 0600, &s), -EINVAL);
	assert_null(strstr(ims_error_last(), "0123456789abcdefgh"));
	assert_int_equal(start_with_tokens(f, "admin 0123456789abcdefgh a b\n", 0600, &s), -EINVAL);
	assert_non_null(strstr(ims_error_last(), "t2:1: expected 'ROLE TOKEN [NAME]'"));
	assert_int_equal(start_with_tokens(f, "admin\n", 0600, &s), -EINVAL);
	assert_int_equal(start_with_tokens(f, "admin 0123456789abcdefgh bad\"name\n", 0600, &s),
			 -EINVAL);
	assert_int_equal(start_with_tokens(f,
					   "admin 0123456789abcdefgh a\nreader "
					   "0123456789abcdefgh b\n",
					   0600, &s),
			 -EINVAL);
	assert_non_null(strstr(ims_error_last(), "t2:2: the same token as 'a'"));
	/* an empty file is valid: no token works */
	assert_int_equal(start_with_tokens(f, "# nobody\n", 0600, &s), 0);
	ims_rpc_server_stop(s);

	/* not a regular file, or missing */
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;
	toy_opts(&o, &f->app);
	o.dispatch_only = true;
	o.token_file = f->dir;
	assert_int_equal(ims_rpc_server_start(&s, &o), -EACCES);
	assert_non_null(strstr(ims_error_last(), "is not a regular file"));
	o.token_file = "/nonexistent/tokens";
	assert_int_equal(ims_rpc_server_start(&s, &o), -ENOENT);
	assert_string_equal(ims_error_last(), "token file '/nonexistent/tokens' does not exist");
}

static void test_reload(void **state)
{
	fixture *f = *state;
	Imgstore__V1__GetImageRequest q;
	Imgstore__V1__ImageSpec spec;
	answer a;

	get_req(&q, &spec, "vm1");
	write_file(f->tokens, "reader new-token-0123456789abcdef carol\n", 0600);
	assert_int_equal(ims_rpc_server_reload_tokens(f->s), 0);
	call(f, TOY_GET, "application/proto", "new-token-0123456789abcdef", &q.base, NULL, 0, &a);
	expect_status(&a, 200);
	call(f, TOY_GET, "application/proto", T_READER, &q.base, NULL, 0, &a);
	expect_status(&a, 401);

	/* a bad file keeps the tokens in use */
	write_file(f->tokens, "reader short\n", 0600);
	assert_int_equal(ims_rpc_server_reload_tokens(f->s), -EINVAL);
	chmod(f->tokens, 0644);
	assert_int_equal(ims_rpc_server_reload_tokens(f->s), -EACCES);
	call(f, TOY_GET, "application/proto", "new-token-0123456789abcdef", &q.base, NULL, 0, &a);
	expect_status(&a, 200);

	write_file(f->tokens, good_tokens, 0600);
	assert_int_equal(ims_rpc_server_reload_tokens(f->s), 0);
}

static void test_options(void **state)
{
	fixture *f = *state;
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;
	ims_rpc_server *s = NULL;
	ims_rpc_method bad[2];

	toy_opts(&o, &f->app);
	assert_int_equal(ims_rpc_server_start(&s, &o), -EINVAL);
	assert_string_equal(ims_error_last(), "neither listen nor unix_socket is set");
	o.dispatch_only = true;
	o.listen = "127.0.0.1:0";
	assert_int_equal(ims_rpc_server_start(&s, &o), -EINVAL);
	o.dispatch_only = false;
	assert_int_equal(ims_rpc_server_start(&s, &o), -EINVAL);
	assert_string_equal(ims_error_last(), "listen '127.0.0.1:0' needs tls_cert and tls_key "
					      "(or allow_plain_http for a test setup)");
	o.tls_cert = "/nonexistent/cert.pem";
	assert_int_equal(ims_rpc_server_start(&s, &o), -EINVAL); /* no key */
	o.tls_key = "/nonexistent/key.pem";
	assert_int_equal(ims_rpc_server_start(&s, &o), -ENOENT);
	assert_string_equal(ims_error_last(), "tls_cert '/nonexistent/cert.pem' does not exist");
	o.tls_cert = o.tls_key = NULL;
	o.allow_plain_http = true;
	o.tls_client_ca = "/nonexistent/ca.pem";
	assert_int_equal(ims_rpc_server_start(&s, &o), -EINVAL);
	o.tls_client_ca = NULL;
	o.version = 99;
	assert_int_equal(ims_rpc_server_start(&s, &o), -EINVAL);
	assert_int_equal(ims_rpc_server_start(&s, NULL), -EINVAL);

	ims_rpc_server_opts d = IMS_RPC_SERVER_OPTS_INIT;
	d.dispatch_only = true;
	d.app = &f->app;
	memcpy(bad, toy_methods, sizeof(bad));
	d.methods = bad;
	d.nmethods = 2;
	bad[1].path = bad[0].path;
	assert_int_equal(ims_rpc_server_start(&s, &d), -EINVAL);
	assert_string_equal(ims_error_last(),
			    "method '/imgstore.v1.ImageService/GetImage' is given twice");
	bad[1].path = "imgstore.v1.ImageService/X";
	assert_int_equal(ims_rpc_server_start(&s, &d), -EINVAL);
	bad[1].path = "/imgstore.v1.ImageService/X\"";
	assert_int_equal(ims_rpc_server_start(&s, &d), -EINVAL);
	bad[1].path = "/a/b/c";
	assert_int_equal(ims_rpc_server_start(&s, &d), -EINVAL);
	bad[1].path = "/imgstore.v1.ImageService/X";
	bad[1].input = NULL;
	assert_int_equal(ims_rpc_server_start(&s, &d), -EINVAL);
	bad[1].input = toy_methods[1].input;
	assert_int_equal(ims_rpc_server_start(&s, &d), 0);
	/* without a token file no token is valid, and methods without a role still work */
	int status;
	const char *ct;
	uint8_t *body;
	size_t len;
	assert_int_equal(ims_rpc_server_dispatch(s, TOY_GET, "application/proto", "Bearer " T_ADMIN,
						 NULL, 0, &status, &ct, &body, &len),
			 0);
	assert_int_equal(status, 401);
	free(body);
	assert_int_equal(ims_rpc_server_dispatch(s, "/imgstore.v1.ImageService/X",
						 "application/proto", NULL, NULL, 0, &status, &ct,
						 &body, &len),
			 0);
	assert_int_equal(status, 200);
	free(body);
	assert_int_equal(ims_rpc_server_dispatch(s, NULL, "application/proto", NULL, NULL, 0,
						 &status, &ct, &body, &len),
			 -EINVAL);
	assert_int_equal(ims_rpc_server_dispatch(s, TOY_GET, "application/proto", NULL, NULL, 3,
						 &status, &ct, &body, &len),
			 -EINVAL);
	assert_int_equal(ims_rpc_server_port(s), 0);
	ims_rpc_server_stop(s);
	ims_rpc_server_stop(NULL);
}

/* ---- the client's reading of answers ------------------------------------------------------ */

static ims_client *open_client(void)
{
	ims_client_opts o = IMS_CLIENT_OPTS_INIT;
	ims_client *c = NULL;
	o.server = "http://127.0.0.1:1";
	assert_int_equal(ims_client_open(&c, &o), 0);
	return c;
}

static int decode(ims_client *c, long status, const char *ct, const char *body)
{
	ProtobufCMessage *m = NULL;
	int r = ims_client__decode(c, status, ct, (const uint8_t *)body, strlen(body),
				   &imgstore__v1__image__descriptor, &m);
	if (r == 0)
		protobuf_c_message_free_unpacked(m, NULL);
	return r;
}

static void test_client_decode(void **state)
{
	ims_client *c = open_client();
	(void)state;

	assert_int_equal(decode(c, 404, "application/json",
				"{\"code\":\"not_found\",\"message\":\"no image 'rbd/x'\"}"),
			 -ENOENT);
	assert_string_equal(ims_error_last(), "no image 'rbd/x'");
	assert_int_equal(ims_client_last_code(c), IMS_RPC_NOT_FOUND);

	/* the code wins over the status; a code this client does not know is unknown */
	assert_int_equal(decode(c, 400, "application/json; charset=utf-8",
				"{\"code\":\"already_exists\",\"message\":\"m\"}"),
			 -EEXIST);
	assert_int_equal(decode(c, 500, "application/json",
				"{\"code\":\"brand_new_code\",\"message\":\"m\"}"),
			 -EIO);
	assert_int_equal(ims_client_last_code(c), IMS_RPC_UNKNOWN);
	/* no message: the code's name */
	assert_int_equal(decode(c, 401, "application/json", "{\"code\":\"unauthenticated\"}"),
			 -EACCES);
	assert_string_equal(ims_error_last(), "unauthenticated");
	/* escape sequences from a hostile server do not reach the terminal */
	assert_int_equal(
		decode(c, 403, "application/json",
		       "{\"code\":\"permission_denied\",\"message\":\"a\\u001b[2Jb\\nc\"}"),
		-EPERM);
	assert_string_equal(ims_error_last(), "a?[2Jb?c");

	/* not a Connect error: the code Connect derives from the status */
	assert_int_equal(decode(c, 502, "text/html", "<html>bad gateway</html>"), -EAGAIN);
	assert_int_equal(ims_client_last_code(c), IMS_RPC_UNAVAILABLE);
	assert_string_equal(ims_error_last(), "imgstored at 'http://127.0.0.1:1' answered HTTP 502 "
					      "without a Connect error");
	assert_int_equal(decode(c, 404, "application/json", "{\"cod"), -ENOSYS);
	assert_int_equal(decode(c, 404, "application/json", "[1,2]"), -ENOSYS);
	assert_int_equal(decode(c, 404, "application/json", "{\"code\":5}"), -ENOSYS);
	/* a budget that ran out (Connect-Timeout-Ms): deadline_exceeded, with or without body */
	assert_int_equal(decode(c, 408, "application/json",
				"{\"code\":\"deadline_exceeded\",\"message\":\"the call's budget "
				"(Connect-Timeout-Ms 300) ran out while it was served\"}"),
			 -ETIMEDOUT);
	assert_int_equal(ims_client_last_code(c), IMS_RPC_DEADLINE_EXCEEDED);
	assert_string_equal(
		ims_error_last(),
		"the call's budget (Connect-Timeout-Ms 300) ran out while it was served");
	assert_int_equal(decode(c, 408, "text/plain", "Request Timeout"), -ETIMEDOUT);
	assert_int_equal(ims_client_last_code(c), IMS_RPC_DEADLINE_EXCEEDED);
	assert_int_equal(decode(c, 418, "application/json", ""), -EIO);
	assert_int_equal(ims_client_last_code(c), IMS_RPC_UNKNOWN);

	/* a 200 that is no protobuf answer */
	assert_int_equal(decode(c, 200, "text/plain", ""), -EPROTO);
	assert_int_equal(decode(c, 200, NULL, ""), -EPROTO);
	assert_int_equal(
		decode(c, 200, "application/proto", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
		-EPROTO);
	assert_string_equal(ims_error_last(), "imgstored at 'http://127.0.0.1:1' answered with a "
					      "malformed imgstore.v1.Image");
	assert_int_equal(decode(c, 200, "application/proto", ""), 0);
	assert_int_equal(ims_client_last_code(c), IMS_RPC_OK);
	ims_client_close(c);
}

static void test_client_options(void **state)
{
	ims_client_opts o = IMS_CLIENT_OPTS_INIT;
	ims_client *c = NULL;
	(void)state;

	assert_int_equal(ims_client_open(&c, &o), -EINVAL);
	o.server = "ftp://x";
	assert_int_equal(ims_client_open(&c, &o), -EINVAL);
	o.server = "https://";
	assert_int_equal(ims_client_open(&c, &o), -EINVAL);
	o.server = "unix:relative.sock";
	assert_int_equal(ims_client_open(&c, &o), -EINVAL);
	o.server = "http://a b";
	assert_int_equal(ims_client_open(&c, &o), -EINVAL);
	o.server = "https://localhost:7443/";
	o.token = "abc\r\nX-Evil: 1";
	assert_int_equal(ims_client_open(&c, &o), -EINVAL);
	o.token = "0123456789abcdef0123";
	o.ca_file = "/nonexistent/ca.pem";
	assert_int_equal(ims_client_open(&c, &o), -ENOENT);
	assert_string_equal(ims_error_last(), "CA file '/nonexistent/ca.pem' does not exist");
	o.ca_file = NULL;
	o.key_file = "/etc/hostname";
	assert_int_equal(ims_client_open(&c, &o), -EINVAL);
	o.key_file = NULL;
	assert_int_equal(ims_client_open(&c, &o), 0);

	Imgstore__V1__GetImageRequest q = IMGSTORE__V1__GET_IMAGE_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	assert_int_equal(
		ims_client_call(c, "no-slash", &q.base, &imgstore__v1__image__descriptor, &m),
		-EINVAL);
	assert_int_equal(ims_client_call(c, "a/b/c", &q.base, &imgstore__v1__image__descriptor, &m),
			 -EINVAL);
	assert_int_equal(
		ims_client_call(c, "a/b?x=1", &q.base, &imgstore__v1__image__descriptor, &m),
		-EINVAL);
	assert_int_equal(ims_client_call(c, "a/b", NULL, &imgstore__v1__image__descriptor, &m),
			 -EINVAL);
	ims_client_close(c);
	ims_client_close(NULL);
}

/* Large request bodies are unpacked into arenas kept between calls (proto/dispatch.c): every
 * call sees its own bytes, whatever the calls before left there; a malformed one is refused. */
static void test_large_bodies(void **state)
{
	fixture *f = *state;
	toy_app app;
	ims_rpc_server *s = NULL;
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;
	const char *auth = "Bearer " T_HOST;
	size_t sizes[] = {2u << 20, 100u << 10, 3u << 20, 2u << 20, 70u << 10, 1u << 20};
	uint8_t *data = malloc(3u << 20), *body = malloc((3u << 20) + 64);

	assert_non_null(data);
	assert_non_null(body);
	toy_init(&app);
	toy_opts(&o, &app);
	o.dispatch_only = true;
	o.token_file = f->tokens; /* the default body limit: 4 MiB */
	assert_int_equal(ims_rpc_server_start(&s, &o), 0);
	for (unsigned k = 0; k < 3 * sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k % (sizeof(sizes) / sizeof(sizes[0]))];
		uint64_t want = n;
		for (size_t i = 0; i < n; i++) {
			data[i] = (uint8_t)(i * 7 + k);
			want += data[i];
		}
		Imgstore__V1__UploadChunkRequest q = IMGSTORE__V1__UPLOAD_CHUNK_REQUEST__INIT;
		q.upload_id = "sum";
		q.data.data = data;
		q.data.len = n;
		size_t len = protobuf_c_message_pack(&q.base, body);
		int status = 0;
		const char *ct = NULL;
		uint8_t *out = NULL;
		size_t outlen = 0;
		/* a truncated body first: refused, and its arena is not lost */
		assert_int_equal(ims_rpc_server_dispatch(s, TOY_UPLOAD, "application/proto", auth,
							 body, len - 1, &status, &ct, &out,
							 &outlen),
				 0);
		assert_int_equal(status, 400);
		free(out);
		assert_int_equal(ims_rpc_server_dispatch(s, TOY_UPLOAD, "application/proto", auth,
							 body, len, &status, &ct, &out, &outlen),
				 0);
		assert_int_equal(status, 200);
		Imgstore__V1__UploadChunkResponse *r =
			imgstore__v1__upload_chunk_response__unpack(NULL, outlen, out);
		assert_non_null(r);
		assert_int_equal(r->received_bytes, want);
		imgstore__v1__upload_chunk_response__free_unpacked(r, NULL);
		free(out);
	}
	ims_rpc_server_stop(s);
	free(data);
	free(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handler_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_escaping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_role_method, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_token_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_bodies, setup, teardown),
		cmocka_unit_test(test_client_decode),
		cmocka_unit_test(test_client_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
