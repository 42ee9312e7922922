/*
 * The RPC transport end to end, over real sockets and without Ceph: servers on 127.0.0.1
 * (TLS with a certificate made here by openssl, plain HTTP, TLS with client certificates) and
 * on a Unix socket, called through libimgstore and through the curl command line.
 *
 * Some checks bound how long a failure takes; under valgrind, stretch the bounds and the
 * clients' timeouts with IMS_TEST_TIME_SCALE=30.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "common/error.h"
#include "proto/client.h"
#include "proto/server.h"
#include "../unit/rpc_toy.h"

#define T_ADMIN	 "admin-token-0123456789abcdef"
#define T_HOST	 "host-token-0123456789abcdef"
#define T_READER "reader-token-0123456789abcdef"
#define T_BAD	 "wrong-token-0123456789abcdef"

#define GET_PATH    "imgstore.v1.ImageService/GetImage"
#define CREATE_PATH "imgstore.v1.ImageService/CreateImage"
#define RESIZE_PATH "imgstore.v1.ImageService/ResizeImage"
#define UPLOAD_PATH "imgstore.v1.ImageService/UploadChunk"

static struct {
	char dir[64];
	char cert[128], key[128];   /* the server's, self-signed, CN=localhost */
	char ca[128], ca_key[128];  /* signs client certificates */
	char ccert[128], ckey[128]; /* client certificate CN=hv1 */
	char tokens[128];
	char sock[128];
	toy_app app;
	ims_rpc_server *tls;   /* TLS on 127.0.0.1, and the Unix socket */
	ims_rpc_server *plain; /* plain HTTP on 127.0.0.1 */
	ims_rpc_server *mtls;  /* TLS with tls_client_ca */
	char tls_url[64], plain_url[64], mtls_url[64], unix_url[160];
	double scale; /* IMS_TEST_TIME_SCALE */
} W;

/* ---- helpers ------------------------------------------------------------------------------ */

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static ims_client *client(const char *url, const char *token, const char *ca, const char *cert,
			  const char *key)
{
	ims_client_opts o = IMS_CLIENT_OPTS_INIT;
	ims_client *c = NULL;

	o.server = url;
	o.token = token;
	o.ca_file = ca;
	o.cert_file = cert;
	o.key_file = key;
	o.timeout_ms = (long)(10000 * W.scale);
	o.connect_timeout_ms = (long)(3000 * W.scale);
	assert_int_equal(ims_client_open(&c, &o), 0);
	return c;
}

static int get_image(ims_client *c, const char *name, Imgstore__V1__Image **out)
{
	Imgstore__V1__GetImageRequest q = IMGSTORE__V1__GET_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec spec = IMGSTORE__V1__IMAGE_SPEC__INIT;
	ProtobufCMessage *m = NULL;
	int r;

	spec.pool = "rbd";
	spec.image = (char *)name;
	q.image = &spec;
	r = ims_client_call(c, GET_PATH, &q.base, &imgstore__v1__image__descriptor, &m);
	if (r == 0 && out)
		*out = (Imgstore__V1__Image *)m;
	else if (r == 0)
		protobuf_c_message_free_unpacked(m, NULL);
	return r;
}

/* One GetImage that must succeed: the server still serves. */
static void still_serving(void)
{
	ims_client *c = client(W.plain_url, T_READER, NULL, NULL, NULL);
	assert_int_equal(get_image(c, "vm1", NULL), 0);
	ims_client_close(c);
}

static int simple_call(ims_client *c, const char *method, const char *name)
{
	Imgstore__V1__ImageSpec spec = IMGSTORE__V1__IMAGE_SPEC__INIT;
	ProtobufCMessage *m = NULL;
	int r;

	spec.pool = "rbd";
	spec.image = (char *)name;
	if (strcmp(method, CREATE_PATH) == 0) {
		Imgstore__V1__CreateImageRequest q = IMGSTORE__V1__CREATE_IMAGE_REQUEST__INIT;
		q.image = &spec;
		q.size = 1 << 20;
		r = ims_client_call(c, method, &q.base, &imgstore__v1__image__descriptor, &m);
	} else if (strcmp(method, RESIZE_PATH) == 0) {
		Imgstore__V1__ResizeImageRequest q = IMGSTORE__V1__RESIZE_IMAGE_REQUEST__INIT;
		q.image = &spec;
		q.size = 2 << 20;
		r = ims_client_call(c, method, &q.base, &imgstore__v1__image__descriptor, &m);
	} else {
		return get_image(c, name, NULL);
	}
	if (r == 0)
		protobuf_c_message_free_unpacked(m, NULL);
	return r;
}

/* curl's answer: status, content type, body (in DIR/curl.out) and, for JSON, code/message. */
typedef struct {
	int status;
	char ct[128];
	char *body;
	size_t len;
	char code[64];
	char message[512];
} curl_answer;

static void curl(curl_answer *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void curl(curl_answer *a, const char *fmt, ...)
{
	char args[3072], cmd[4096], out[160], meta[160];
	va_list ap;

	memset(a, 0, sizeof(*a));
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(out, sizeof(out), "%s/curl.out", W.dir);
	snprintf(meta, sizeof(meta), "%s/curl.meta", W.dir);
	snprintf(cmd, sizeof(cmd),
		 "curl -sS --max-time 20 -o '%s' -w '%%{http_code} %%{content_type}' %s > '%s'",
		 out, args, meta);
	assert_int_equal(system(cmd), 0);
	size_t n;
	char *m = read_file(meta, &n);
	assert_int_equal(sscanf(m, "%d %127[^\n]", &a->status, a->ct) >= 1, 1);
	free(m);
	a->body = read_file(out, &a->len);
	if (strncmp(a->ct, "application/json", 16) == 0) {
		json_object *o = json_tokener_parse(a->body), *c, *msg;
		assert_non_null(o);
		assert_true(json_object_object_get_ex(o, "code", &c));
		assert_true(json_object_object_get_ex(o, "message", &msg));
		snprintf(a->code, sizeof(a->code), "%s", json_object_get_string(c));
		snprintf(a->message, sizeof(a->message), "%s", json_object_get_string(msg));
		json_object_put(o);
	}
}

/* A packed GetImageRequest for "vm1" in DIR/NAME; its length. */
static size_t packed_get(const char *name, char *path, size_t cap)
{
	Imgstore__V1__GetImageRequest q = IMGSTORE__V1__GET_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec spec = IMGSTORE__V1__IMAGE_SPEC__INIT;
	uint8_t buf[128];

	spec.pool = "rbd";
	spec.image = "vm1";
	q.image = &spec;
	size_t n = imgstore__v1__get_image_request__pack(&q, buf);
	snprintf(path, cap, "%s/%s", W.dir, name);
	write_file(path, buf, n, 0600);
	return n;
}

static uint64_t metric(const char *text, const char *series)
{
	const char *p = strstr(text, series);
	if (!p)
		return 0;
	p += strlen(series);
	assert_true(*p == ' ');
	return strtoull(p + 1, NULL, 10);
}

/* ---- fixture ------------------------------------------------------------------------------ */

static int start(ims_rpc_server **out, const char *listen, const char *sock, bool tls,
		 bool client_ca)
{
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;

	toy_opts(&o, &W.app);
	o.listen = listen;
	o.unix_socket = sock;
	o.token_file = W.tokens;
	o.threads = 4;
	o.read_timeout = 10;
	if (tls) {
		o.tls_cert = W.cert;
		o.tls_key = W.key;
	} else {
		o.allow_plain_http = true;
	}
	if (client_ca)
		o.tls_client_ca = W.ca;
	return ims_rpc_server_start(out, &o);
}

static const char *tokens_text = "# test tokens\n"
				 "admin " T_ADMIN " alice\n"
				 "host " T_HOST " hv1\n"
				 "reader " T_READER " monitor\n";

static int group_setup(void **state)
{
	const char *scale = getenv("IMS_TEST_TIME_SCALE");
	W.scale = scale ? atof(scale) : 1.0;
	if (W.scale < 1.0)
		W.scale = 1.0;
	snprintf(W.dir, sizeof(W.dir), "/tmp/ims-transport-XXXXXX");
	if (!mkdtemp(W.dir))
		return -1;
	snprintf(W.cert, sizeof(W.cert), "%s/server.pem", W.dir);
	snprintf(W.key, sizeof(W.key), "%s/server.key", W.dir);
	snprintf(W.ca, sizeof(W.ca), "%s/ca.pem", W.dir);
	snprintf(W.ca_key, sizeof(W.ca_key), "%s/ca.key", W.dir);
	snprintf(W.ccert, sizeof(W.ccert), "%s/client.pem", W.dir);
	snprintf(W.ckey, sizeof(W.ckey), "%s/client.key", W.dir);
	snprintf(W.tokens, sizeof(W.tokens), "%s/tokens", W.dir);
	snprintf(W.sock, sizeof(W.sock), "%s/imgstored.sock", W.dir);

	if (sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
	       "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout '%s' -out '%s' "
	       ">/dev/null 2>&1",
	       W.key, W.cert) != 0 ||
	    sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-client-ca "
	       "-keyout '%s' -out '%s' >/dev/null 2>&1",
	       W.ca_key, W.ca) != 0 ||
	    sh("openssl req -newkey rsa:2048 -nodes -subj /CN=hv1 -keyout '%s' -out '%s/c.csr' "
	       ">/dev/null 2>&1 && openssl x509 -req -days 2 -in '%s/c.csr' -CA '%s' -CAkey '%s' "
	       "-CAcreateserial -out '%s' >/dev/null 2>&1",
	       W.ckey, W.dir, W.dir, W.ca, W.ca_key, W.ccert) != 0) {
		fprintf(stderr, "openssl failed\n");
		return -1;
	}
	int fd = open(W.tokens, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, tokens_text, strlen(tokens_text)) < 0)
		return -1;
	close(fd);

	toy_init(&W.app);
	if (start(&W.tls, "127.0.0.1:0", W.sock, true, false) < 0 ||
	    start(&W.plain, "127.0.0.1:0", NULL, false, false) < 0 ||
	    start(&W.mtls, "127.0.0.1:0", NULL, true, true) < 0) {
		fprintf(stderr, "cannot start: %s\n", ims_error_last());
		return -1;
	}
	snprintf(W.tls_url, sizeof(W.tls_url), "https://127.0.0.1:%u", ims_rpc_server_port(W.tls));
	snprintf(W.plain_url, sizeof(W.plain_url), "http://127.0.0.1:%u",
		 ims_rpc_server_port(W.plain));
	snprintf(W.mtls_url, sizeof(W.mtls_url), "https://localhost:%u",
		 ims_rpc_server_port(W.mtls));
	snprintf(W.unix_url, sizeof(W.unix_url), "unix:%s", W.sock);
	*state = &W;
	return 0;
}

static int group_teardown(void **state)
{
	ims_rpc_server_stop(W.tls);
	ims_rpc_server_stop(W.plain);
	ims_rpc_server_stop(W.mtls);
	return sh("rm -rf '%s'", W.dir) == 0 ? 0 : -1;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
	const char *urls[] = {W.tls_url, W.plain_url, W.unix_url, W.sock};

	assert_int_not_equal(ims_rpc_server_port(W.tls), 0);
	for (size_t i = 0; i < 4; i++) {
		ims_client *c = client(urls[i], T_READER, i == 0 ? W.cert : NULL, NULL, NULL);
		Imgstore__V1__Image *img = NULL;

		/* twice on one client: the connection is kept */
		for (int k = 0; k < 2; k++) {
			assert_int_equal(get_image(c, "vm1", &img), 0);
			assert_int_equal(ims_client_last_code(c), IMS_RPC_OK);
			assert_string_equal(img->pool, "rbd");
			assert_string_equal(img->name, "vm1");
			assert_int_equal(img->size, 10ull << 30);
			imgstore__v1__image__free_unpacked(img, NULL);
		}
		/* an error comes back as the errno and the server's message */
		ims_error_clear();
		assert_int_equal(get_image(c, "missing", NULL), -ENOENT);
		assert_int_equal(ims_client_last_code(c), IMS_RPC_NOT_FOUND);
		assert_string_equal(ims_error_last(), "no image 'rbd/missing' on site 'a'");
		/* and the next call works again */
		assert_int_equal(get_image(c, "vm1", NULL), 0);
		ims_client_close(c);
	}
}

static int wait_image(ims_client *c);

static unsigned waiting_now(void)
{
	pthread_mutex_lock(&W.app.lock);
	unsigned n = W.app.slow_waiting;
	pthread_mutex_unlock(&W.app.lock);
	return n;
}

/*
 * libimgstore sends the deadline its caller set (timeout_ms) as the call's budget
 * (Connect-Timeout-Ms), and none without one; a call whose budget runs out returns -ETIMEDOUT
 * with deadline_exceeded, and the server's handler, bounded by the budget, is done by then.
 */
static void test_client_deadline(void **state)
{
	ims_client_opts o = IMS_CLIENT_OPTS_INIT;
	ims_client *c = NULL;
	Imgstore__V1__Image *img = NULL;
	(void)state;

	o.server = W.plain_url;
	o.token = T_READER;
	assert_int_equal(ims_client_open(&c, &o), 0);
	assert_int_equal(get_image(c, "budget", &img), 0);
	assert_true(img->size == UINT64_MAX); /* no header: no budget */
	imgstore__v1__image__free_unpacked(img, NULL);
	ims_client_close(c);

	long ms = (long)(10000 * W.scale);
	c = client(W.plain_url, T_READER, NULL, NULL, NULL); /* timeout_ms = ms */
	assert_int_equal(get_image(c, "budget", &img), 0);
	assert_true(img->size > 0 && img->size <= (uint64_t)ms);
	assert_true(img->size > (uint64_t)ms - 5000);
	imgstore__v1__image__free_unpacked(img, NULL);
	ims_client_close(c);

	/* WaitImage blocks until released or, bounded by the budget, until the budget runs out */
	o.timeout_ms = 300;
	assert_int_equal(ims_client_open(&c, &o), 0);
	double t0 = now();
	assert_int_equal(wait_image(c), -ETIMEDOUT);
	assert_int_equal(ims_client_last_code(c), IMS_RPC_DEADLINE_EXCEEDED);
	assert_true(now() - t0 < 5 * W.scale);
	/* the handler saw the budget: it ends at once, not after its own 60 s */
	for (int i = 0; i < 200 && waiting_now() > 0; i++)
		usleep(10000);
	assert_int_equal(waiting_now(), 0);
	ims_client_close(c);
	still_serving();
}

static void test_curl_round_trip(void **state)
{
	char req[160];
	curl_answer a;

	packed_get("get.bin", req, sizeof(req));
	curl(&a,
	     "--cacert '%s' -H 'Content-Type: application/proto' -H 'Authorization: "
	     "Bearer " T_READER "' --data-binary @'%s' %s/" GET_PATH,
	     W.cert, req, W.tls_url);
	assert_int_equal(a.status, 200);
	assert_string_equal(a.ct, "application/proto");
	Imgstore__V1__Image *img =
		imgstore__v1__image__unpack(NULL, a.len, (const uint8_t *)a.body);
	assert_non_null(img);
	assert_string_equal(img->name, "vm1");
	imgstore__v1__image__free_unpacked(img, NULL);
	free(a.body);

	/* over the Unix socket */
	curl(&a,
	     "--unix-socket '%s' -H 'Content-Type: application/proto' -H 'Authorization: "
	     "Bearer " T_READER "' --data-binary @'%s' http://localhost/" GET_PATH,
	     W.sock, req);
	expect_status(&a, 200);

	/* an error as curl sees it */
	curl(&a,
	     "--cacert '%s' -H 'Content-Type: application/proto' --data-binary @'%s' "
	     "%s/" GET_PATH,
	     W.cert, req, W.tls_url);
	assert_int_equal(a.status, 401);
	assert_string_equal(a.ct, "application/json");
	assert_string_equal(a.code, "unauthenticated");
	free(a.body);

	/* keep-alive: two requests in one curl run use one connection */
	char cmd[2048], out[160];
	snprintf(out, sizeof(out), "%s/conns", W.dir);
	snprintf(cmd, sizeof(cmd),
		 "curl -sS -H 'Content-Type: application/proto' -H 'Authorization: Bearer " T_READER
		 "' --data-binary @'%s' -o /dev/null -o /dev/null -w '%%{num_connects}\\n' "
		 "%s/" GET_PATH " %s/" GET_PATH " > '%s'",
		 req, W.plain_url, W.plain_url, out);
	assert_int_equal(system(cmd), 0);
	size_t n;
	char *conns = read_file(out, &n);
	assert_string_equal(conns, "1\n0\n");
	free(conns);

	/* and after an error decided from the headers (no token), and on /metrics */
	snprintf(cmd, sizeof(cmd),
		 "curl -sS -H 'Content-Type: application/proto' --data-binary @'%s' "
		 "-o /dev/null -o /dev/null -w '%%{http_code} %%{num_connects}\n' "
		 "%s/" GET_PATH " %s/" GET_PATH " > '%s' && "
		 "curl -sS -o /dev/null -o /dev/null -w '%%{http_code} %%{num_connects}\n' "
		 "%s/metrics %s/healthz >> '%s'",
		 req, W.plain_url, W.plain_url, out, W.plain_url, W.plain_url, out);
	assert_int_equal(system(cmd), 0);
	conns = read_file(out, &n);
	assert_string_equal(conns, "401 1\n401 0\n200 1\n200 0\n");
	free(conns);
}

static void test_auth_matrix(void **state)
{
	static const struct {
		const char *token;
		ims_role role;
	} who[] = {
		{NULL, IMS_ROLE_NONE},	 {T_BAD, IMS_ROLE_NONE},    {T_READER, IMS_ROLE_READER},
		{T_HOST, IMS_ROLE_HOST}, {T_ADMIN, IMS_ROLE_ADMIN},
	};
	static const struct {
		const char *method;
		ims_role role;
	} what[] = {
		{GET_PATH, IMS_ROLE_READER},
		{RESIZE_PATH, IMS_ROLE_HOST},
		{CREATE_PATH, IMS_ROLE_ADMIN},
	};

	for (size_t t = 0; t < 2; t++) {
		const char *url = t == 0 ? W.plain_url : W.tls_url;
		for (size_t i = 0; i < sizeof(who) / sizeof(who[0]); i++) {
			ims_client *c = client(url, who[i].token, W.cert, NULL, NULL);
			for (size_t j = 0; j < sizeof(what) / sizeof(what[0]); j++) {
				int r = simple_call(c, what[j].method, "vm1");
				if (who[i].role == IMS_ROLE_NONE) {
					assert_int_equal(r, -EACCES);
					assert_int_equal(ims_client_last_code(c),
							 IMS_RPC_UNAUTHENTICATED);
				} else if (who[i].role < what[j].role) {
					assert_int_equal(r, -EPERM);
					assert_int_equal(ims_client_last_code(c),
							 IMS_RPC_PERMISSION_DENIED);
				} else {
					assert_int_equal(r, 0);
				}
			}
			ims_client_close(c);
		}
	}
}

static void test_malformed(void **state)
{
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				       0xff, 0xff, 0xff, 0xff, 0xff};
	char req[160], path[160], big[160];
	curl_answer a;
	const char *H =
		"-H 'Content-Type: application/proto' -H 'Authorization: Bearer " T_ADMIN "'";

	/* random bytes */
	snprintf(path, sizeof(path), "%s/junk.bin", W.dir);
	write_file(path, junk, sizeof(junk), 0600);
	curl(&a, "%s --data-binary @'%s' %s/" GET_PATH, H, path, W.plain_url);
	assert_int_equal(a.status, 400);
	assert_string_equal(a.code, "invalid_argument");
	assert_non_null(strstr(a.message, "malformed request"));
	free(a.body);
	still_serving();

	/* a truncated message */
	size_t n = packed_get("get.bin", req, sizeof(req));
	assert_int_equal(truncate(req, (off_t)(n - 2)), 0);
	curl(&a, "%s --data-binary @'%s' %s/" GET_PATH, H, req, W.plain_url);
	expect_code(&a, 400, "invalid_argument");
	still_serving();

	/* 5 MiB, refused before decoding: by Content-Length, and chunked as it grows */
	unsigned calls = toy_calls(&W.app);
	snprintf(big, sizeof(big), "%s/big.bin", W.dir);
	assert_int_equal(sh("head -c 5242880 /dev/urandom > '%s'", big), 0);
	for (int tls = 0; tls < 2; tls++) {
		curl(&a, "%s --cacert '%s' --data-binary @'%s' %s/" UPLOAD_PATH, H, W.cert, big,
		     tls ? W.tls_url : W.plain_url);
		expect_error(&a, 413, "resource_exhausted",
			     "a request body of 5242880 bytes exceeds the limit "
			     "of 4194304 bytes");
	}
	curl(&a, "%s -H 'Transfer-Encoding: chunked' --data-binary @'%s' %s/" UPLOAD_PATH, H, big,
	     W.plain_url);
	expect_error(&a, 413, "resource_exhausted",
		     "the request body exceeds the limit of 4194304 bytes");
	assert_int_equal(toy_calls(&W.app), calls);
	still_serving();

	/* the same through the client: resource_exhausted is ENOSPC */
	ims_client *c = client(W.plain_url, T_ADMIN, NULL, NULL, NULL);
	Imgstore__V1__UploadChunkRequest u = IMGSTORE__V1__UPLOAD_CHUNK_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	u.upload_id = "up-1";
	u.data.len = 5u << 20;
	u.data.data = calloc(1, u.data.len);
	assert_non_null(u.data.data);
	assert_int_equal(ims_client_call(c, UPLOAD_PATH, &u.base,
					 &imgstore__v1__upload_chunk_response__descriptor, &m),
			 -ENOSPC);
	assert_int_equal(ims_client_last_code(c), IMS_RPC_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(ims_error_last(), "exceeds the limit of 4194304 bytes"));
	/* under the limit it passes, on the same client */
	u.data.len = 3u << 20;
	assert_int_equal(ims_client_call(c, UPLOAD_PATH, &u.base,
					 &imgstore__v1__upload_chunk_response__descriptor, &m),
			 0);
	assert_int_equal(((Imgstore__V1__UploadChunkResponse *)m)->received_bytes, 3u << 20);
	protobuf_c_message_free_unpacked(m, NULL);
	free(u.data.data);
	ims_client_close(c);

	/* wrong content type */
	packed_get("get.bin", req, sizeof(req));
	curl(&a,
	     "-H 'Content-Type: text/plain' -H 'Authorization: Bearer " T_ADMIN
	     "' --data-binary @'%s' %s/" GET_PATH,
	     req, W.plain_url);
	expect_code(&a, 415, "invalid_argument");
	/* a binary body said to be JSON */
	curl(&a,
	     "-H 'Content-Type: application/json' -H 'Authorization: Bearer " T_ADMIN
	     "' --data-binary @'%s' %s/" GET_PATH,
	     req, W.plain_url);
	expect_code(&a, 400, "invalid_argument");
	still_serving();

	/* unknown method */
	curl(&a, "%s --data-binary @'%s' %s/imgstore.v1.ImageService/Teleport", H, req,
	     W.plain_url);
	expect_code(&a, 404, "unimplemented");
	curl(&a, "%s --data-binary @'%s' %s/", H, req, W.plain_url);
	expect_status(&a, 404);

	/* GET on an RPC path without Connect's query (test_rpc_json: with it) */
	curl(&a, "-H 'Authorization: Bearer " T_ADMIN "' %s/" GET_PATH, W.plain_url);
	expect_code(&a, 400, "invalid_argument");

	/* a method without handler */
	curl(&a, "%s --data-binary @'%s' %s/imgstore.v1.ImageService/DeleteImage", H, req,
	     W.plain_url);
	expect_code(&a, 501, "unimplemented");
	still_serving();
}

static void test_token_file_mode(void **state)
{
	ims_rpc_server *s = NULL;
	char path[160], msg[512];
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;

	snprintf(path, sizeof(path), "%s/open-tokens", W.dir);
	write_file(path, tokens_text, strlen(tokens_text), 0644);
	toy_opts(&o, &W.app);
	o.listen = "127.0.0.1:0";
	o.allow_plain_http = true;
	o.token_file = path;
	assert_int_equal(ims_rpc_server_start(&s, &o), -EACCES);
	snprintf(msg, sizeof(msg),
		 "token file '%s' has mode 0644: group and others must have no access to it "
		 "(chmod 600 '%s')",
		 path, path);
	assert_string_equal(ims_error_last(), msg);
	assert_null(s);
}

static void test_health_metrics(void **state)
{
	curl_answer a;

	curl(&a, "%s/healthz", W.plain_url);
	expect_answer(&a, 200, "ok\n");
	W.app.health = "ceph cluster 'a' does not answer";
	curl(&a, "--cacert '%s' %s/healthz", W.cert, W.tls_url);
	expect_answer(&a, 503, "ceph cluster 'a' does not answer\n");
	W.app.health = NULL;
	curl(&a, "-X POST %s/healthz", W.plain_url);
	expect_status(&a, 405);

	/* /readyz: the daemon can do its job, or why not; /healthz stays ok meanwhile */
	curl(&a, "%s/readyz", W.plain_url);
	expect_answer(&a, 200, "ok\n");
	W.app.not_ready = "site 'a' did not answer for 12 s";
	curl(&a, "--cacert '%s' %s/readyz", W.cert, W.tls_url);
	expect_answer(&a, 503, "site 'a' did not answer for 12 s\n");
	curl(&a, "%s/healthz", W.plain_url);
	expect_status(&a, 200);
	W.app.not_ready = NULL;

	const char *ok =
		"imgstore_rpc_requests_total{method=\"ImageService/GetImage\",code=\"ok\"}";
	const char *nf =
		"imgstore_rpc_requests_total{method=\"ImageService/GetImage\",code=\"not_found\"}";
	const char *count = "imgstore_rpc_request_duration_seconds_count{method="
			    "\"ImageService/GetImage\"}";
	const char *inf = "imgstore_rpc_request_duration_seconds_bucket{method="
			  "\"ImageService/GetImage\",le=\"+Inf\"}";
	curl(&a, "%s/metrics", W.plain_url);
	assert_int_equal(a.status, 200);
	assert_string_equal(a.ct, "text/plain; version=0.0.4; charset=utf-8");
	uint64_t ok0 = metric(a.body, ok), nf0 = metric(a.body, nf), c0 = metric(a.body, count);
	assert_non_null(strstr(a.body, "# TYPE imgstore_rpc_requests_total counter\n"));
	assert_non_null(strstr(a.body, "# TYPE imgstore_rpc_request_duration_seconds histogram\n"));
	assert_non_null(strstr(a.body, "imgstore_rpc_in_flight 0\n"));
	assert_non_null(strstr(a.body, "imgstore_toy_images 42\n"));
	free(a.body);

	ims_client *c = client(W.plain_url, T_READER, NULL, NULL, NULL);
	assert_int_equal(get_image(c, "vm1", NULL), 0);
	assert_int_equal(get_image(c, "vm1", NULL), 0);
	assert_int_equal(get_image(c, "missing", NULL), -ENOENT);
	ims_client_close(c);

	curl(&a, "%s/metrics", W.plain_url);
	assert_int_equal(metric(a.body, ok), ok0 + 2);
	assert_int_equal(metric(a.body, nf), nf0 + 1);
	assert_int_equal(metric(a.body, count), c0 + 3);
	assert_int_equal(metric(a.body, inf), c0 + 3);
	/* every bucket line is there, cumulative */
	static const char *les[] = {"0.001", "0.005", "0.01", "0.05", "0.1",
				    "0.5",   "1",     "5",    "10",   "+Inf"};
	uint64_t prev = 0;
	for (size_t i = 0; i < 10; i++) {
		char series[256];
		snprintf(series, sizeof(series),
			 "imgstore_rpc_request_duration_seconds_bucket{method="
			 "\"ImageService/GetImage\",le=\"%s\"}",
			 les[i]);
		assert_non_null(strstr(a.body, series));
		uint64_t v = metric(a.body, series);
		assert_true(v >= prev);
		prev = v;
	}
	/* unknown paths are counted under one label, whatever they are */
	free(a.body);
	curl(&a, "-H 'Content-Type: application/proto' --data-binary x %s/evil%%22path",
	     W.plain_url);
	free(a.body);
	curl(&a, "%s/metrics", W.plain_url);
	assert_true(metric(a.body, "imgstore_rpc_requests_total{method=\"unknown\","
				   "code=\"unimplemented\"}") >= 1);
	assert_null(strstr(a.body, "evil"));
	free(a.body);
}

static void test_reload(void **state)
{
	const char *text = "reader fresh-token-0123456789abcdef carol\n";
	ims_client *c = client(W.plain_url, "fresh-token-0123456789abcdef", NULL, NULL, NULL);
	ims_client *old = client(W.plain_url, T_READER, NULL, NULL, NULL);

	assert_int_equal(get_image(c, "vm1", NULL), -EACCES);
	write_file(W.tokens, text, strlen(text), 0600);
	assert_int_equal(ims_rpc_server_reload_tokens(W.plain), 0);
	assert_int_equal(get_image(c, "vm1", NULL), 0);
	assert_int_equal(get_image(old, "vm1", NULL), -EACCES);
	/* the other servers keep what they loaded */
	ims_client *t = client(W.tls_url, T_READER, W.cert, NULL, NULL);
	assert_int_equal(get_image(t, "vm1", NULL), 0);
	ims_client_close(t);

	/* a broken file keeps the old tokens */
	write_file(W.tokens, "reader x\n", 9, 0600);
	assert_int_equal(ims_rpc_server_reload_tokens(W.plain), -EINVAL);
	assert_int_equal(get_image(c, "vm1", NULL), 0);

	write_file(W.tokens, tokens_text, strlen(tokens_text), 0600);
	assert_int_equal(ims_rpc_server_reload_tokens(W.plain), 0);
	assert_int_equal(get_image(old, "vm1", NULL), 0);
	ims_client_close(c);
	ims_client_close(old);
}

static void test_closed_port(void **state)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	char url[64], msg[128];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd); /* nobody listens there now */
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(sa.sin_port));

	ims_client *c = client(url, T_READER, NULL, NULL, NULL);
	double t0 = now();
	assert_int_equal(get_image(c, "vm1", NULL), -ECONNREFUSED);
	assert_true(now() - t0 < 1.0 * W.scale);
	assert_int_equal(ims_client_last_code(c), IMS_RPC_UNAVAILABLE);
	snprintf(msg, sizeof(msg), "cannot reach imgstored at '%s': ", url);
	assert_memory_equal(ims_error_last(), msg, strlen(msg));
	ims_client_close(c);

	/* a Unix socket nobody serves */
	char sock[160];
	snprintf(sock, sizeof(sock), "%s/nobody.sock", W.dir);
	c = client(sock, T_READER, NULL, NULL, NULL);
	int r = get_image(c, "vm1", NULL);
	assert_true(r == -ECONNREFUSED || r == -EIO);
	ims_client_close(c);
}

static void test_unix_socket(void **state)
{
	struct stat st;
	ims_rpc_server *s = NULL;
	char path[160];

	assert_int_equal(stat(W.sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);

	/* a live socket is not taken over */
	assert_int_equal(start(&s, NULL, W.sock, false, false), -EADDRINUSE);
	assert_null(s);
	ims_client *c = client(W.sock, T_READER, NULL, NULL, NULL);
	assert_int_equal(get_image(c, "vm1", NULL), 0);
	ims_client_close(c);

	/* a stale one is replaced */
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(path, sizeof(path), "%s/stale.sock", W.dir);
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(start(&s, NULL, path, false, false), 0);
	assert_int_equal(ims_rpc_server_port(s), 0);
	c = client(path, T_ADMIN, NULL, NULL, NULL);
	assert_int_equal(simple_call(c, CREATE_PATH, "vm9"), 0);
	ims_client_close(c);
	char line[1024];
	toy_last_audit(&W.app, line, sizeof(line));
	assert_string_equal(line, "audit caller=alice role=admin peer=unix "
				  "method=ImageService/CreateImage target=rbd/vm9 result=ok");
	ims_rpc_server_stop(s);
	/* the socket file goes with the server */
	assert_int_equal(lstat(path, &st), -1);
	assert_int_equal(errno, ENOENT);

	/* something that is no socket is left alone */
	write_file(path, "x", 1, 0600);
	assert_int_equal(start(&s, NULL, path, false, false), -EEXIST);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
}

static void test_tls_failures(void **state)
{
	/* a CA that did not sign the server's certificate */
	ims_client *c = client(W.tls_url, T_READER, W.ca, NULL, NULL);
	double t0 = now();
	assert_int_equal(get_image(c, "vm1", NULL), -EPROTO);
	assert_true(now() - t0 < 2.0 * W.scale);
	assert_non_null(strstr(ims_error_last(), "TLS with imgstored at 'https://127.0.0.1:"));
	ims_client_close(c);
	/* the system's CAs do not know it either */
	c = client(W.tls_url, T_READER, NULL, NULL, NULL);
	assert_int_equal(get_image(c, "vm1", NULL), -EPROTO);
	ims_client_close(c);
	/* plain HTTP to the TLS port: an error, not a hang */
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ims_rpc_server_port(W.tls));
	c = client(url, T_READER, NULL, NULL, NULL);
	t0 = now();
	assert_true(get_image(c, "vm1", NULL) < 0);
	assert_true(now() - t0 < 5.0 * W.scale);
	ims_client_close(c);
	/* https to the plain port */
	snprintf(url, sizeof(url), "https://127.0.0.1:%u", ims_rpc_server_port(W.plain));
	c = client(url, T_READER, W.cert, NULL, NULL);
	assert_int_equal(get_image(c, "vm1", NULL), -EPROTO);
	ims_client_close(c);
	still_serving();
}

/* The version `openssl s_client` negotiates with 127.0.0.1:PORT offering TLS version V only
 * ("1_1", "1_2", "1_3"), into @p out: "TLSv1.2", or "" when the handshake fails. */
static void s_client(unsigned port, const char *v, char *out, size_t cap)
{
	char path[160];
	size_t n;

	snprintf(path, sizeof(path), "%s/s_client.out", W.dir);
	/* SECLEVEL=0: Debian's default would refuse TLS 1.1 on the client side already */
	sh("echo | timeout 20 openssl s_client -brief -connect 127.0.0.1:%u -tls%s "
	   "-cipher DEFAULT@SECLEVEL=0 >'%s' 2>&1",
	   port, v, path);
	char *text = read_file(path, &n);
	const char *p = strstr(text, "Protocol version: ");
	out[0] = '\0';
	if (p && strstr(text, "CONNECTION ESTABLISHED"))
		snprintf(out, cap, "%.*s", (int)strcspn(p + 18, "\r\n"), p + 18);
	free(text);
}

/* TLS 1.2 is the oldest version served: a TLS 1.1 handshake fails, though the same client
 * completes one with a server that speaks TLS 1.1, and TLS 1.2 and 1.3 with ours. */
static void test_tls_versions(void **state)
{
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;
	ims_rpc_server *s = NULL;
	char v[32], out[160];
	unsigned port = 0;

	/* the client can speak TLS 1.1: an openssl server that speaks only that answers it */
	snprintf(out, sizeof(out), "%s/s_server.out", W.dir);
	assert_int_equal(sh("(timeout 25 openssl s_server -www -accept 127.0.0.1:0 -cert '%s' "
			    "-key '%s' -tls1_1 -cipher DEFAULT@SECLEVEL=0 -naccept 1 </dev/null "
			    ">'%s' 2>&1 &)",
			    W.cert, W.key, out),
			 0);
	for (int i = 0; i < 500 && !port; i++) {
		size_t n;
		usleep(20000);
		char *text = read_file(out, &n);
		const char *p = strstr(text, "ACCEPT 127.0.0.1:");
		if (p)
			port = (unsigned)atoi(p + 17);
		free(text);
	}
	assert_true(port > 0);
	s_client(port, "1_1", v, sizeof(v));
	assert_string_equal(v, "TLSv1.1");

	port = ims_rpc_server_port(W.tls);
	s_client(port, "1_1", v, sizeof(v));
	assert_string_equal(v, "");
	s_client(port, "1_2", v, sizeof(v));
	assert_string_equal(v, "TLSv1.2");
	s_client(port, "1_3", v, sizeof(v));
	assert_string_equal(v, "TLSv1.3");
	still_serving();

	/* tls_priorities is what the listener offers */
	toy_opts(&o, &W.app);
	o.listen = "127.0.0.1:0";
	o.tls_cert = W.cert;
	o.tls_key = W.key;
	o.tls_priorities = "NORMAL:-VERS-ALL:+VERS-TLS1.3";
	assert_int_equal(ims_rpc_server_start(&s, &o), 0);
	s_client(ims_rpc_server_port(s), "1_2", v, sizeof(v));
	assert_string_equal(v, "");
	s_client(ims_rpc_server_port(s), "1_3", v, sizeof(v));
	assert_string_equal(v, "TLSv1.3");
	ims_rpc_server_stop(s);

	/* and refused when it enables less than TLS 1.2, or nothing, or is no priority string */
	s = NULL;
	o.tls_priorities = "NORMAL:+VERS-TLS1.1";
	assert_int_equal(ims_rpc_server_start(&s, &o), -EINVAL);
	assert_string_equal(ims_error_last(),
			    "tls_priorities 'NORMAL:+VERS-TLS1.1' enables TLS1.1: "
			    "TLS 1.2 is the oldest version allowed");
	o.tls_priorities = "NORMAL:-VERS-ALL:+VERS-DTLS1.2";
	assert_int_equal(ims_rpc_server_start(&s, &o), -EINVAL);
	assert_string_equal(ims_error_last(), "tls_priorities 'NORMAL:-VERS-ALL:+VERS-DTLS1.2' "
					      "enables neither TLS 1.2 nor TLS 1.3");
	o.tls_priorities = "NORMAL:+NO-SUCH-THING";
	assert_int_equal(ims_rpc_server_start(&s, &o), -EINVAL);
	assert_non_null(strstr(ims_error_last(),
			       "tls_priorities 'NORMAL:+NO-SUCH-THING' is refused "
			       "by GnuTLS (at '+NO-SUCH-THING'): "));
	assert_null(s);
}

static void test_client_certificates(void **state)
{
	char line[1024];
	curl_answer a;

	/* no certificate: refused, whatever the token */
	ims_client *c = client(W.mtls_url, T_ADMIN, W.cert, NULL, NULL);
	assert_int_equal(get_image(c, "vm1", NULL), -EACCES);
	assert_int_equal(ims_client_last_code(c), IMS_RPC_UNAUTHENTICATED);
	assert_non_null(strstr(ims_error_last(), "client certificate"));
	ims_client_close(c);
	curl(&a, "--cacert '%s' %s/healthz", W.cert, W.mtls_url);
	expect_status(&a, 401);

	/* a certificate from the CA, and a token: served; the CN is in the audit line */
	c = client(W.mtls_url, T_ADMIN, W.cert, W.ccert, W.ckey);
	assert_int_equal(get_image(c, "vm1", NULL), 0);
	assert_int_equal(simple_call(c, CREATE_PATH, "vm7"), 0);
	toy_last_audit(&W.app, line, sizeof(line));
	const char *head = "audit caller=alice role=admin peer=127.0.0.1:";
	assert_int_equal(strncmp(line, head, strlen(head)), 0);
	assert_non_null(strstr(line, " cert=hv1 method=ImageService/CreateImage target=rbd/vm7 "
				     "result=ok"));
	ims_client_close(c);

	/* a certificate grants no role: the token is still needed */
	c = client(W.mtls_url, NULL, W.cert, W.ccert, W.ckey);
	assert_int_equal(simple_call(c, CREATE_PATH, "vm7"), -EACCES);
	assert_int_equal(ims_client_last_code(c), IMS_RPC_UNAUTHENTICATED);
	ims_client_close(c);

	/* a certificate signed by another CA (the server's own, self-signed) */
	c = client(W.mtls_url, T_ADMIN, W.cert, W.cert, W.key);
	assert_int_equal(get_image(c, "vm1", NULL), -EACCES);
	assert_non_null(strstr(ims_error_last(), "not signed by the server's tls_client_ca"));
	ims_client_close(c);

	curl(&a, "--cacert '%s' --cert '%s' --key '%s' %s/healthz", W.cert, W.ccert, W.ckey,
	     W.mtls_url);
	expect_status(&a, 200);
}

static void test_address_in_use(void **state)
{
	ims_rpc_server *s = NULL;
	char addr[64];

	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ims_rpc_server_port(W.plain));
	assert_int_equal(start(&s, addr, NULL, false, false), -EADDRINUSE);
	assert_null(s);
	snprintf(addr, sizeof(addr), "no-such-host.invalid:80");
	assert_int_equal(start(&s, addr, NULL, false, false), -EINVAL);
	assert_int_equal(start(&s, "127.0.0.1", NULL, false, false), -EINVAL);
}

/* A server that answers every connection with @p head, then @p stream_bytes of 'x'. */
typedef struct {
	int fd;
	const char *head;
	size_t stream_bytes;
} fake;

static void *fake_serve(void *arg)
{
	fake *f = arg;
	char buf[4096], chunk[65536];
	int c = accept(f->fd, NULL, NULL);

	if (c < 0)
		return NULL;
	(void)!read(c, buf, sizeof(buf));
	(void)!write(c, f->head, strlen(f->head));
	memset(chunk, 'x', sizeof(chunk));
	for (size_t sent = 0; sent < f->stream_bytes; sent += sizeof(chunk)) {
		char hdr[16];
		int n = snprintf(hdr, sizeof(hdr), "%zx\r\n", sizeof(chunk));
		if (write(c, hdr, (size_t)n) < 0 || write(c, chunk, sizeof(chunk)) < 0 ||
		    write(c, "\r\n", 2) < 0)
			break;
	}
	close(c);
	return NULL;
}

static int fake_call(const char *head, size_t stream_bytes)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	fake f = {.head = head, .stream_bytes = stream_bytes};
	pthread_t th;
	char url[64];

	f.fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(f.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f.fd, 4), 0);
	assert_int_equal(getsockname(f.fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(sa.sin_port));
	assert_int_equal(pthread_create(&th, NULL, fake_serve, &f), 0);
	ims_client *c = client(url, T_READER, NULL, NULL, NULL);
	int r = get_image(c, "vm1", NULL);
	ims_client_close(c);
	pthread_join(th, NULL);
	close(f.fd);
	return r;
}

static void test_hostile_server(void **state)
{
	/* announces 100 MiB: refused before reading it */
	assert_int_equal(fake_call("HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\n"
				   "Content-Length: 104857600\r\n\r\n",
				   0),
			 -EPROTO);
	assert_non_null(strstr(ims_error_last(), "more than 64 MiB"));
	/* streams 70 MiB without a length: cut at 64 MiB */
	assert_int_equal(fake_call("HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n",
				   70u << 20),
			 -EPROTO);
	assert_non_null(strstr(ims_error_last(), "sent more than 64 MiB"));
	/* a proxy's error page */
	assert_int_equal(fake_call("HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n"
				   "Content-Length: 5\r\nConnection: close\r\n\r\n<html",
				   0),
			 -EAGAIN);
	assert_non_null(strstr(ims_error_last(), "answered HTTP 502 without a Connect error"));
	/* not HTTP at all */
	assert_true(fake_call("SSH-2.0-OpenSSH_9.2\r\n", 0) < 0);
}

typedef struct {
	const char *url;
	int failures;
} worker;

static void *hammer(void *arg)
{
	worker *w = arg;
	ims_client_opts o = IMS_CLIENT_OPTS_INIT;
	ims_client *c = NULL;

	o.server = w->url;
	o.token = T_HOST;
	o.ca_file = W.cert;
	if (ims_client_open(&c, &o) < 0) {
		w->failures++;
		return NULL;
	}
	for (int i = 0; i < 40; i++) {
		if (simple_call(c, (i % 2) ? RESIZE_PATH : GET_PATH, "vm1") != 0)
			w->failures++;
		if (simple_call(c, CREATE_PATH, "vm1") != -EPERM)
			w->failures++;
	}
	ims_client_close(c);
	return NULL;
}

static void test_concurrent_clients(void **state)
{
	pthread_t th[12];
	worker w[12];
	curl_answer a;

	for (int i = 0; i < 12; i++) {
		w[i].url = (i % 3 == 0) ? W.tls_url : (i % 3 == 1) ? W.plain_url : W.unix_url;
		w[i].failures = 0;
		assert_int_equal(pthread_create(&th[i], NULL, hammer, &w[i]), 0);
	}
	for (int i = 0; i < 12; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	curl(&a, "%s/metrics", W.plain_url);
	assert_non_null(strstr(a.body, "imgstore_rpc_in_flight 0\n"));
	free(a.body);
}

typedef struct {
	const char *url;
	int result;
} slow_call;

static void *call_slow(void *arg)
{
	slow_call *s = arg;
	ims_client *c = client(s->url, T_READER, NULL, NULL, NULL);
	s->result = get_image(c, "slow", NULL);
	ims_client_close(c);
	return NULL;
}

/* Stopping lets the calls in progress finish. */
static void test_stop_finishes_calls(void **state)
{
	ims_rpc_server *s = NULL;
	char url[64];
	pthread_t th;

	assert_int_equal(start(&s, "127.0.0.1:0", NULL, false, false), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ims_rpc_server_port(s));
	W.app.sleep_ms = 500;
	slow_call sc = {.url = url, .result = 1};
	assert_int_equal(pthread_create(&th, NULL, call_slow, &sc), 0);
	usleep(200000);
	ims_rpc_server_stop(s);
	pthread_join(th, NULL);
	W.app.sleep_ms = 0;
	assert_int_equal(sc.result, 0);
	/* and nothing listens there afterwards */
	ims_client *c = client(url, T_READER, NULL, NULL, NULL);
	assert_int_equal(get_image(c, "vm1", NULL), -ECONNREFUSED);
	ims_client_close(c);
}

#define NSLOW 32

typedef struct {
	const char *url;
	int result;
	bool returned;
} waiter;

static unsigned slow_returned;
static pthread_mutex_t slow_returned_lock = PTHREAD_MUTEX_INITIALIZER;

static int wait_image(ims_client *c)
{
	Imgstore__V1__GetImageRequest q = IMGSTORE__V1__GET_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec spec = IMGSTORE__V1__IMAGE_SPEC__INIT;
	ProtobufCMessage *m = NULL;

	spec.pool = "rbd";
	spec.image = "vm1";
	q.image = &spec;
	int r = ims_client_call(c, TOY_WAIT, &q.base, &imgstore__v1__image__descriptor, &m);
	if (r == 0)
		protobuf_c_message_free_unpacked(m, NULL);
	return r;
}

static void *call_wait(void *arg)
{
	waiter *w = arg;
	ims_client_opts o = IMS_CLIENT_OPTS_INIT;
	ims_client *c = NULL;

	o.server = w->url;
	o.token = T_READER;
	o.timeout_ms = (long)(90000 * W.scale);
	w->result = ims_client_open(&c, &o);
	if (w->result == 0)
		w->result = wait_image(c);
	ims_client_close(c);
	pthread_mutex_lock(&slow_returned_lock);
	slow_returned++;
	pthread_mutex_unlock(&slow_returned_lock);
	return NULL;
}

static unsigned returned_waits(void)
{
	pthread_mutex_lock(&slow_returned_lock);
	unsigned n = slow_returned;
	pthread_mutex_unlock(&slow_returned_lock);
	return n;
}

/*
 * Slow calls hold no request thread: with 2 request threads and 32 calls of a slow method
 * blocked in their handler (they return only when the test releases them), a quick call is
 * answered, a 33rd slow call is refused with resource_exhausted, and the 32 are answered once
 * released.
 */
static void test_slow_calls(void **state)
{
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;
	ims_rpc_server *s = NULL;
	pthread_t th[NSLOW];
	waiter w[NSLOW];
	char url[64];
	curl_answer a;

	toy_opts(&o, &W.app);
	o.listen = "127.0.0.1:0";
	o.allow_plain_http = true;
	o.token_file = W.tokens;
	o.threads = 2;
	o.slow_calls = NSLOW;
	assert_int_equal(ims_rpc_server_start(&s, &o), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ims_rpc_server_port(s));
	toy_slow_release(&W.app, false);
	slow_returned = 0;
	for (int i = 0; i < NSLOW; i++) {
		w[i] = (waiter){.url = url, .result = 1};
		assert_int_equal(pthread_create(&th[i], NULL, call_wait, &w[i]), 0);
	}
	/* all of them in their handler at once (a bound against a hang, not a timing check) */
	double until = now() + 20 * W.scale;
	while (toy_slow_waiting(&W.app) < NSLOW && now() < until)
		usleep(20000);
	assert_int_equal(toy_slow_waiting(&W.app), NSLOW);

	ims_client *c = client(url, T_READER, NULL, NULL, NULL);
	assert_int_equal(get_image(c, "vm1", NULL), 0);
	assert_int_equal(get_image(c, "vm1", NULL), 0);
	/* answered while every slow call was still blocked */
	assert_int_equal(toy_slow_waiting(&W.app), NSLOW);
	assert_int_equal(returned_waits(), 0);

	/* one more is refused at once, without reaching its handler */
	unsigned calls = toy_calls(&W.app);
	assert_int_equal(wait_image(c), -ENOSPC);
	assert_int_equal(ims_client_last_code(c), IMS_RPC_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(ims_error_last(), "slow_calls"));
	assert_int_equal(toy_calls(&W.app), calls);
	ims_client_close(c);

	curl(&a, "%s/metrics", url);
	assert_int_equal(metric(a.body, "\nimgstore_rpc_slow_calls"), NSLOW);
	assert_int_equal(metric(a.body, "\nimgstore_rpc_slow_calls_limit"), NSLOW);
	free(a.body);

	toy_slow_release(&W.app, true);
	for (int i = 0; i < NSLOW; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].result, 0);
	}
	curl(&a, "%s/metrics", url);
	assert_int_equal(metric(a.body, "\nimgstore_rpc_slow_calls"), 0);
	assert_non_null(strstr(a.body, "imgstore_rpc_in_flight 0\n"));
	free(a.body);
	ims_rpc_server_stop(s);
	toy_slow_release(&W.app, false);
}

typedef struct {
	const char *url;
	int result;
	uint64_t size;
} deferrer;

static void *call_defer(void *arg)
{
	deferrer *w = arg;
	Imgstore__V1__Image *img = NULL;
	ims_client_opts o = IMS_CLIENT_OPTS_INIT;
	ims_client *c = NULL;

	o.server = w->url;
	o.token = T_READER;
	o.timeout_ms = (long)(90000 * W.scale);
	w->result = ims_client_open(&c, &o);
	if (w->result == 0 && (w->result = get_image(c, "defer", &img)) == 0) {
		w->size = img->size;
		protobuf_c_message_free_unpacked(&img->base, NULL);
	}
	ims_client_close(c);
	return NULL;
}

/*
 * A quick method's call that must wait after all (ims_rpc_call_defer, as a streamed export's
 * DownloadChunk does) holds no request thread: with 2 request threads, 16 such calls wait on
 * threads of their own while quick calls are answered; with slow_calls (16) all taken, one more
 * is answered at once by its handler (size 0) instead of waiting; once released the 16 answer.
 */
static void test_deferred_calls(void **state)
{
	enum { N = 16 };
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;
	ims_rpc_server *s = NULL;
	pthread_t th[N];
	deferrer w[N];
	char url[64];
	curl_answer a;

	(void)state;
	toy_opts(&o, &W.app);
	o.listen = "127.0.0.1:0";
	o.allow_plain_http = true;
	o.token_file = W.tokens;
	o.threads = 2;
	o.slow_calls = N;
	assert_int_equal(ims_rpc_server_start(&s, &o), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ims_rpc_server_port(s));
	toy_slow_release(&W.app, false);
	for (int i = 0; i < N; i++) {
		w[i] = (deferrer){.url = url, .result = 1};
		assert_int_equal(pthread_create(&th[i], NULL, call_defer, &w[i]), 0);
	}
	/* all of them waiting at once (a bound against a hang, not a timing check) */
	double until = now() + 20 * W.scale;
	while (toy_slow_waiting(&W.app) < N && now() < until)
		usleep(20000);
	assert_int_equal(toy_slow_waiting(&W.app), N);

	ims_client *c = client(url, T_READER, NULL, NULL, NULL);
	Imgstore__V1__Image *img = NULL;
	assert_int_equal(get_image(c, "vm1", NULL), 0);
	/* one more: no slow call is free, so its handler answers at once */
	assert_int_equal(get_image(c, "defer", &img), 0);
	assert_int_equal(img->size, 0);
	protobuf_c_message_free_unpacked(&img->base, NULL);
	assert_int_equal(toy_slow_waiting(&W.app), N);
	ims_client_close(c);
	curl(&a, "%s/metrics", url);
	assert_int_equal(metric(a.body, "\nimgstore_rpc_slow_calls"), N);
	free(a.body);

	toy_slow_release(&W.app, true);
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].result, 0);
		assert_int_equal(w[i].size, 1ull << 30); /* answered by the wait, on its thread */
	}
	curl(&a, "%s/metrics", url);
	assert_int_equal(metric(a.body, "\nimgstore_rpc_slow_calls"), 0);
	assert_non_null(strstr(a.body, "imgstore_rpc_in_flight 0\n"));
	free(a.body);
	ims_rpc_server_stop(s);
	toy_slow_release(&W.app, false);
}

/* Stopping the server waits for a slow call, which is answered. */
static void *release_later(void *arg)
{
	usleep(300000);
	toy_slow_release(&W.app, true);
	return NULL;
}

static void test_stop_finishes_slow_calls(void **state)
{
	ims_rpc_server *s = NULL;
	pthread_t th, rel;
	char url[64];

	assert_int_equal(start(&s, "127.0.0.1:0", NULL, false, false), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ims_rpc_server_port(s));
	toy_slow_release(&W.app, false);
	waiter wt = {.url = url, .result = 1};
	assert_int_equal(pthread_create(&th, NULL, call_wait, &wt), 0);
	double until = now() + 10 * W.scale;
	while (toy_slow_waiting(&W.app) < 1 && now() < until)
		usleep(10000);
	assert_int_equal(toy_slow_waiting(&W.app), 1);
	assert_int_equal(pthread_create(&rel, NULL, release_later, NULL), 0);
	ims_rpc_server_stop(s);
	pthread_join(rel, NULL);
	pthread_join(th, NULL);
	assert_int_equal(wt.result, 0);
	toy_slow_release(&W.app, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_client_deadline),
		cmocka_unit_test(test_curl_round_trip),
		cmocka_unit_test(test_auth_matrix),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_token_file_mode),
		cmocka_unit_test(test_health_metrics),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_closed_port),
		cmocka_unit_test(test_unix_socket),
		cmocka_unit_test(test_tls_failures),
		cmocka_unit_test(test_tls_versions),
		cmocka_unit_test(test_client_certificates),
		cmocka_unit_test(test_address_in_use),
		cmocka_unit_test(test_hostile_server),
		cmocka_unit_test(test_concurrent_clients),
		cmocka_unit_test(test_stop_finishes_calls),
		cmocka_unit_test(test_slow_calls),
		cmocka_unit_test(test_deferred_calls),
		cmocka_unit_test(test_stop_finishes_slow_calls),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
