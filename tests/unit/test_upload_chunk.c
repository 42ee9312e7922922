/*
 * Unit tests of the in-place reader of UploadChunkRequest (proto/upload_chunk.c): well-formed
 * chunks as protobuf-c packs them, and hostile bytes (truncated varints and keys, a length
 * past the end, unknown fields of every wire type, repeated fields, groups, wrong wire types),
 * each compared with protobuf-c's own unpack: the same accepted, the same refused, the same
 * fields; and the data read in place, pointing into the body. Then the pipeline: a call of
 * UploadChunk through ims_rpc_server_dispatch reaches its handler with the data in the body;
 * and over a Unix socket, a method's chunk sink (ims_rpc_chunk_sink) takes the bytes as they
 * arrive, or leaves the chunk to the handler, and lets go of a chunk whose connection is lost.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "imgstore/v1/image.pb-c.h"
#include "proto/server_int.h"

/* The scan and protobuf-c agree on @p b: @returns 0 when both took it, -EINVAL when both
 * refused it (and the scan said why). */
static int agree(const uint8_t *b, size_t n)
{
	ims_rpc__upload_chunk c;
	int r = ims_rpc__upload_chunk_scan(&c, b, n);
	Imgstore__V1__UploadChunkRequest *q =
		imgstore__v1__upload_chunk_request__unpack(NULL, n, b);
	if (!q) {
		assert_int_equal(r, -EINVAL);
		assert_true(ims_error_last()[0] != '\0');
		return r;
	}
	assert_int_equal(r, 0);
	/* protobuf-c's string ends at its first NUL; the copy the server makes does too */
	char id[256];
	assert_true(c.id_len < sizeof(id));
	memcpy(id, c.id, c.id_len);
	id[c.id_len] = '\0';
	assert_string_equal(id, q->upload_id);
	assert_true(c.offset == q->offset);
	assert_int_equal(c.data_len, q->data.len);
	if (c.data_len) {
		assert_memory_equal(c.data, q->data.data, c.data_len);
		/* in place: within the body */
		assert_true(c.data >= b && c.data + c.data_len <= b + n);
	}
	imgstore__v1__upload_chunk_request__free_unpacked(q, NULL);
	return 0;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	do {
		p[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			p[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

static void test_packed(void **state)
{
	(void)state;
	static uint8_t data[70000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	const uint64_t offsets[] = {0, 1, 127, 128, 1u << 21, UINT64_MAX};
	const size_t lens[] = {0, 1, 127, 128, 16383, 16384, sizeof(data)};
	for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]); o++) {
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			Imgstore__V1__UploadChunkRequest m =
				IMGSTORE__V1__UPLOAD_CHUNK_REQUEST__INIT;
			m.upload_id = o % 2 ? "0123456789abcdef0123456789abcdef" : "";
			m.offset = offsets[o];
			m.data.data = data;
			m.data.len = lens[l];
			size_t n = imgstore__v1__upload_chunk_request__get_packed_size(&m);
			uint8_t *b = malloc(n + 1);
			assert_non_null(b);
			assert_int_equal(imgstore__v1__upload_chunk_request__pack(&m, b), n);
			assert_int_equal(agree(b, n), 0);
			ims_rpc__upload_chunk c;
			assert_int_equal(ims_rpc__upload_chunk_scan(&c, b, n), 0);
			assert_true(c.offset == offsets[o]);
			assert_int_equal(c.data_len, lens[l]);
			assert_int_equal(c.id_len, strlen(m.upload_id));
			/* every prefix: taken or refused alike */
			for (size_t k = 0; k < n && k < 200; k++)
				agree(b, k);
			if (n)
				agree(b, n - 1);
			free(b);
		}
	}
	/* nothing at all: an empty request */
	ims_rpc__upload_chunk c;
	assert_int_equal(ims_rpc__upload_chunk_scan(&c, NULL, 0), 0);
	assert_int_equal(c.id_len, 0);
	assert_int_equal(c.data_len, 0);
	assert_true(c.offset == 0);
	assert_int_equal(agree((const uint8_t *)"", 0), 0);
}

static void test_hostile(void **state)
{
	(void)state;
	uint8_t b[64];
	size_t n;

	/* truncated varints: the offset's, a key's, a length's */
	const uint8_t t1[] = {0x10, 0xff, 0xff};
	assert_int_equal(agree(t1, sizeof(t1)), -EINVAL);
	const uint8_t t2[] = {0x10, 0xff, 0xff, 0xff, 0xff, 0xff,
			      0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	assert_int_equal(agree(t2, sizeof(t2)), -EINVAL); /* 11 bytes: too long */
	const uint8_t t3[] = {0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
	assert_int_equal(agree(t3, sizeof(t3)), 0); /* 10 bytes: bits past 64 dropped */
	const uint8_t t4[] = {0x98};		    /* a key cut short */
	assert_int_equal(agree(t4, sizeof(t4)), -EINVAL);
	const uint8_t t5[] = {0x88, 0x80, 0x80, 0x80, 0x80, 0x00}; /* a key of 6 bytes */
	assert_int_equal(agree(t5, sizeof(t5)), -EINVAL);
	const uint8_t t6[] = {0x1a, 0x80}; /* a length cut short */
	assert_int_equal(agree(t6, sizeof(t6)), -EINVAL);
	/* a length past the end, and one far past it */
	const uint8_t l1[] = {0x1a, 0x05, 'a', 'b', 'c', 'd'};
	assert_int_equal(agree(l1, sizeof(l1)), -EINVAL);
	const uint8_t l2[] = {0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'};
	assert_int_equal(agree(l2, sizeof(l2)), -EINVAL);
	const uint8_t l3[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x07, 'a'}; /* past INT_MAX */
	assert_int_equal(agree(l3, sizeof(l3)), -EINVAL);
	/* a key of field 0 */
	const uint8_t z1[] = {0x00, 0x01};
	assert_int_equal(agree(z1, sizeof(z1)), -EINVAL);
	const uint8_t z2[] = {0x80, 0x00, 0x01}; /* 0 in two bytes: protobuf-c skips it */
	agree(z2, sizeof(z2));
	/* unknown fields of every wire type that protobuf-c skips */
	n = 0;
	b[n++] = 0x20; /* field 4, varint */
	n += put_varint(b + n, 300);
	b[n++] = 0x29; /* field 5, 64-bit */
	memset(b + n, 1, 8);
	n += 8;
	b[n++] = 0x32; /* field 6, length-delimited */
	b[n++] = 2;
	b[n++] = 'x';
	b[n++] = 'y';
	b[n++] = 0x3d; /* field 7, 32-bit */
	memset(b + n, 2, 4);
	n += 4;
	b[n++] = 0x1a; /* data "ok" */
	b[n++] = 2;
	b[n++] = 'o';
	b[n++] = 'k';
	b[n++] = 0xf8; /* field 1000000 (3 bytes of key), varint */
	b[n++] = 0x84;
	b[n++] = 0xe8;
	b[n++] = 0x03;
	b[n++] = 0x01;
	assert_int_equal(agree(b, n), 0);
	ims_rpc__upload_chunk c;
	assert_int_equal(ims_rpc__upload_chunk_scan(&c, b, n), 0);
	assert_int_equal(c.data_len, 2);
	assert_memory_equal(c.data, "ok", 2);
	/* unknown fields cut short */
	const uint8_t u1[] = {0x29, 1, 2, 3};
	assert_int_equal(agree(u1, sizeof(u1)), -EINVAL);
	const uint8_t u2[] = {0x3d, 1, 2, 3};
	assert_int_equal(agree(u2, sizeof(u2)), -EINVAL);
	/* groups and wire types 6 and 7, known field or not */
	const uint8_t g[][2] = {{0x23, 0x24}, {0x0b, 0x0c}, {0x26, 0x00}, {0x27, 0x00}, {0x1e, 0}};
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
		assert_int_equal(agree(g[i], 2), -EINVAL);
	/* a known field of the wrong wire type */
	const uint8_t w1[] = {0x08, 0x01};		     /* upload_id as a varint */
	const uint8_t w2[] = {0x12, 0x01, 0x01};	     /* offset length-delimited */
	const uint8_t w3[] = {0x19, 0, 0, 0, 0, 0, 0, 0, 0}; /* data as 64 bits */
	const uint8_t w4[] = {0x15, 0, 0, 0, 0};	     /* offset as 32 bits */
	assert_int_equal(agree(w1, sizeof(w1)), -EINVAL);
	assert_int_equal(agree(w2, sizeof(w2)), -EINVAL);
	assert_int_equal(agree(w3, sizeof(w3)), -EINVAL);
	assert_int_equal(agree(w4, sizeof(w4)), -EINVAL);
	/* repeated fields: the last wins, each of them */
	n = 0;
	const char *seq[] = {"first", "second"};
	for (int i = 0; i < 2; i++) {
		b[n++] = 0x0a;
		b[n++] = (uint8_t)strlen(seq[i]);
		memcpy(b + n, seq[i], strlen(seq[i]));
		n += strlen(seq[i]);
		b[n++] = 0x10;
		n += put_varint(b + n, i ? 77 : 1u << 30);
		b[n++] = 0x1a;
		b[n++] = (uint8_t)(3 - i);
		memset(b + n, 'a' + i, 3 - (size_t)i);
		n += 3 - (size_t)i;
	}
	assert_int_equal(agree(b, n), 0);
	assert_int_equal(ims_rpc__upload_chunk_scan(&c, b, n), 0);
	assert_int_equal(c.id_len, 6);
	assert_memory_equal(c.id, "second", 6);
	assert_true(c.offset == 77);
	assert_int_equal(c.data_len, 2);
	assert_memory_equal(c.data, "bb", 2);
	/* a later empty data field empties it */
	b[n++] = 0x1a;
	b[n++] = 0;
	assert_int_equal(agree(b, n), 0);
	assert_int_equal(ims_rpc__upload_chunk_scan(&c, b, n), 0);
	assert_int_equal(c.data_len, 0);
	/* an id with a NUL inside: the string ends there, as protobuf-c's does */
	const uint8_t nul[] = {0x0a, 3, 'a', 0, 'b'};
	assert_int_equal(agree(nul, sizeof(nul)), 0);
	/* random bytes: the two agree on all of them */
	uint32_t x = 12345;
	for (int round = 0; round < 20000; round++) {
		n = (size_t)(round % 40);
		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			b[i] = (uint8_t)(x >> 16);
			if (i % 5 == 0) /* mostly keys of the known fields */
				b[i] = (uint8_t)((((x >> 8) % 4) << 3) | ((x >> 4) % 8));
		}
		agree(b, n);
	}
}

/* ---- through the pipeline ----------------------------------------------------------------- */

static const uint8_t *seen_data;
static size_t seen_len;
static char seen_id[64];

static int h_chunk(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
		   ProtobufCMessage **resp)
{
	(void)app;
	const Imgstore__V1__UploadChunkRequest *q = (const void *)req;
	seen_data = q->data.data;
	seen_len = q->data.len;
	snprintf(seen_id, sizeof(seen_id), "%s", q->upload_id);
	Imgstore__V1__UploadChunkResponse *m = ims_rpc_call_alloc(call, sizeof(*m));
	if (!m)
		return -ENOMEM;
	imgstore__v1__upload_chunk_response__init(m);
	m->received_bytes = q->offset + q->data.len;
	*resp = &m->base;
	return 0;
}

static void test_dispatch(void **state)
{
	(void)state;
	static const ims_rpc_method methods[] = {
		{"/imgstore.v1.ImageService/UploadChunk",
		 &imgstore__v1__upload_chunk_request__descriptor,
		 &imgstore__v1__upload_chunk_response__descriptor, IMS_ROLE_NONE, false, h_chunk,
		 false, NULL},
	};
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;
	o.methods = methods;
	o.nmethods = 1;
	o.dispatch_only = true;
	ims_rpc_server *s = NULL;
	assert_int_equal(ims_rpc_server_start(&s, &o), 0);

	static uint8_t data[300000];
	memset(data, 0x5a, sizeof(data));
	Imgstore__V1__UploadChunkRequest m = IMGSTORE__V1__UPLOAD_CHUNK_REQUEST__INIT;
	m.upload_id = "up-1";
	m.offset = 4096;
	m.data.data = data;
	m.data.len = sizeof(data);
	size_t n = imgstore__v1__upload_chunk_request__get_packed_size(&m);
	uint8_t *b = malloc(n);
	assert_non_null(b);
	imgstore__v1__upload_chunk_request__pack(&m, b);
	int status = 0;
	const char *ct = NULL;
	uint8_t *out = NULL;
	size_t out_len = 0;
	assert_int_equal(ims_rpc_server_dispatch(s, "/imgstore.v1.ImageService/UploadChunk",
						 "application/proto", NULL, b, n, &status, &ct,
						 &out, &out_len),
			 0);
	assert_int_equal(status, 200);
	assert_string_equal(seen_id, "up-1");
	assert_int_equal(seen_len, sizeof(data));
	/* the handler saw the bytes where they came in: no copy */
	assert_true(seen_data >= b && seen_data + seen_len <= b + n);
	Imgstore__V1__UploadChunkResponse *a =
		imgstore__v1__upload_chunk_response__unpack(NULL, out_len, out);
	assert_non_null(a);
	assert_true(a->received_bytes == 4096 + sizeof(data));
	imgstore__v1__upload_chunk_response__free_unpacked(a, NULL);
	free(out);

	/* malformed: 400 invalid_argument, and the handler is not called */
	seen_len = 12345;
	out = NULL;
	assert_int_equal(ims_rpc_server_dispatch(s, "/imgstore.v1.ImageService/UploadChunk",
						 "application/proto", NULL, b, n - 1, &status, &ct,
						 &out, &out_len),
			 0);
	assert_int_equal(status, 400);
	assert_int_equal(seen_len, 12345);
	assert_non_null(strstr((const char *)out, "no valid imgstore.v1.UploadChunkRequest"));
	free(out);
	/* JSON still goes through the JSON codec */
	const char *json = "{\"uploadId\":\"j\",\"offset\":\"7\",\"data\":\"AAEC\"}";
	out = NULL;
	assert_int_equal(ims_rpc_server_dispatch(s, "/imgstore.v1.ImageService/UploadChunk",
						 "application/json", NULL, (const uint8_t *)json,
						 strlen(json), &status, &ct, &out, &out_len),
			 0);
	assert_int_equal(status, 200);
	assert_string_equal(seen_id, "j");
	assert_int_equal(seen_len, 3);
	free(out);
	free(b);
	ims_rpc_server_stop(s);
}

/* ---- the chunk sink, over a Unix socket ------------------------------------------------ */

/* What the toy sink saw: ids starting "sink" are taken, "sink-fail" fails its second put. */
static pthread_mutex_t sk_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	unsigned begins, taken, puts, ends, handler_calls;
	int end_r;
	uint64_t off;
	size_t len, got;
	uint32_t sum; /* of the bytes put, at their positions */
	bool in_order;
} sk;

static int toy_begin(void *app, const char *id, uint64_t off, size_t len, void **ctx)
{
	(void)app;
	pthread_mutex_lock(&sk_lock);
	sk.begins++;
	bool take = strncmp(id, "sink", 4) == 0;
	if (take) {
		sk.taken++;
		sk.off = off;
		sk.len = len;
		sk.got = 0;
		sk.sum = 0;
		sk.in_order = true;
	}
	pthread_mutex_unlock(&sk_lock);
	*ctx = (void *)(strcmp(id, "sink-fail") == 0 ? "fail" : "ok");
	return take ? 0 : 1;
}

static int toy_put(void *ctx, const uint8_t *data, size_t n, size_t pos)
{
	pthread_mutex_lock(&sk_lock);
	sk.puts++;
	if (pos != sk.got)
		sk.in_order = false;
	for (size_t i = 0; i < n; i++)
		sk.sum += data[i] ^ (uint8_t)(pos + i);
	sk.got += n;
	bool fail = strcmp(ctx, "fail") == 0 && sk.puts == 2;
	pthread_mutex_unlock(&sk_lock);
	return fail ? ims_error_set(-ENOSPC, "the toy sink is full") : 0;
}

static int toy_end(void *app, ims_rpc_call *call, void *ctx, int r, ProtobufCMessage **resp)
{
	(void)app;
	(void)ctx;
	pthread_mutex_lock(&sk_lock);
	sk.ends++;
	sk.end_r = r;
	uint64_t got = sk.got, sum = sk.sum;
	pthread_mutex_unlock(&sk_lock);
	if (r < 0)
		return r == -ECONNRESET ? r : ims_error_set(r, "the toy sink failed");
	Imgstore__V1__UploadChunkResponse *m = ims_rpc_call_alloc(call, sizeof(*m));
	if (!m)
		return -ENOMEM;
	imgstore__v1__upload_chunk_response__init(m);
	m->received_bytes = got << 32 | sum;
	*resp = &m->base;
	return 0;
}

static const ims_rpc_chunk_sink toy_sink = {.begin = toy_begin, .put = toy_put, .end = toy_end};

static int h_sunk_chunk(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			ProtobufCMessage **resp)
{
	pthread_mutex_lock(&sk_lock);
	sk.handler_calls++;
	pthread_mutex_unlock(&sk_lock);
	return h_chunk(app, call, req, resp);
}

/* One request on a new connection to @p sock: @p body (only its first @p send bytes, and
 * the connection closed then, when @p send < @p len). @returns the HTTP status (0 when none
 * was read), the response's body in @p out (at most @p cap bytes). */
static int post_raw(const char *sock, const uint8_t *body, size_t len, size_t send, uint8_t *out,
		    size_t cap, size_t *out_len)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	char hdr[256];
	int hn = snprintf(hdr, sizeof(hdr),
			  "POST /imgstore.v1.ImageService/UploadChunk HTTP/1.1\r\nHost: x\r\n"
			  "Content-Type: application/proto\r\nContent-Length: %zu\r\n\r\n",
			  len);
	assert_int_equal(write(fd, hdr, (size_t)hn), hn);
	for (size_t done = 0; done < send;) {
		ssize_t w = write(fd, body + done, send - done > 65536 ? 65536 : send - done);
		assert_true(w > 0);
		done += (size_t)w;
	}
	int status = 0;
	*out_len = 0;
	if (send == len) {
		static char buf[1 << 16];
		size_t got = 0;
		for (;;) {
			ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
			if (n <= 0)
				break;
			got += (size_t)n;
			buf[got] = '\0';
			char *end = strstr(buf, "\r\n\r\n");
			char *cl = strcasestr(buf, "Content-Length:");
			if (end && cl &&
			    got >= (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10))
				break;
		}
		buf[got] = '\0';
		sscanf(buf, "HTTP/1.1 %d", &status);
		char *end = strstr(buf, "\r\n\r\n");
		if (end) {
			*out_len = got - (size_t)(end + 4 - buf);
			assert_true(*out_len <= cap);
			memcpy(out, end + 4, *out_len);
		}
	}
	close(fd);
	return status;
}

static uint8_t *packed_chunk(const char *id, uint64_t off, const uint8_t *data, size_t len,
			     size_t *n)
{
	Imgstore__V1__UploadChunkRequest m = IMGSTORE__V1__UPLOAD_CHUNK_REQUEST__INIT;
	m.upload_id = (char *)id;
	m.offset = off;
	m.data.data = (uint8_t *)data;
	m.data.len = len;
	*n = imgstore__v1__upload_chunk_request__get_packed_size(&m);
	uint8_t *b = malloc(*n);
	assert_non_null(b);
	imgstore__v1__upload_chunk_request__pack(&m, b);
	return b;
}

static void test_sink(void **state)
{
	(void)state;
	static const ims_rpc_method methods[] = {
		{"/imgstore.v1.ImageService/UploadChunk",
		 &imgstore__v1__upload_chunk_request__descriptor,
		 &imgstore__v1__upload_chunk_response__descriptor, IMS_ROLE_NONE, false,
		 h_sunk_chunk, false, &toy_sink},
	};
	char dir[] = "/tmp/ims-upload-chunk-XXXXXX", sock[64];
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/sock", dir);
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;
	o.methods = methods;
	o.nmethods = 1;
	o.unix_socket = sock;
	ims_rpc_server *s = NULL;
	assert_int_equal(ims_rpc_server_start(&s, &o), 0);

	static uint8_t data[1 << 20];
	uint32_t want = 0;
	for (size_t i = 0; i < sizeof(data); i++) {
		data[i] = (uint8_t)(i * 13 + (i >> 9));
		want += data[i] ^ (uint8_t)i;
	}
	uint8_t out[4096];
	size_t n, out_len;

	/* taken by the sink: every byte, in order; the handler not called */
	uint8_t *b = packed_chunk("sink-1", 8u << 20, data, sizeof(data), &n);
	memset(&sk, 0, sizeof(sk));
	assert_int_equal(post_raw(sock, b, n, n, out, sizeof(out), &out_len), 200);
	assert_int_equal(sk.taken, 1);
	assert_int_equal(sk.handler_calls, 0);
	assert_true(sk.off == 8u << 20);
	assert_int_equal(sk.len, sizeof(data));
	assert_int_equal(sk.got, sizeof(data));
	assert_true(sk.in_order);
	assert_true(sk.puts > 1); /* as it arrived, in pieces */
	assert_int_equal(sk.ends, 1);
	assert_int_equal(sk.end_r, 0);
	Imgstore__V1__UploadChunkResponse *a =
		imgstore__v1__upload_chunk_response__unpack(NULL, out_len, out);
	assert_non_null(a);
	assert_true(a->received_bytes == ((uint64_t)sizeof(data) << 32 | want));
	imgstore__v1__upload_chunk_response__free_unpacked(a, NULL);
	free(b);

	/* left by the sink: the handler gets the whole chunk */
	b = packed_chunk("handler", 4096, data, sizeof(data), &n);
	memset(&sk, 0, sizeof(sk));
	assert_int_equal(post_raw(sock, b, n, n, out, sizeof(out), &out_len), 200);
	assert_int_equal(sk.begins, 1);
	assert_int_equal(sk.taken, 0);
	assert_int_equal(sk.handler_calls, 1);
	assert_string_equal(seen_id, "handler");
	assert_int_equal(seen_len, sizeof(data));
	assert_memory_equal(seen_data, data, sizeof(data));
	free(b);

	/* the data field not last: not offered to the sink, the handler reads it whole */
	uint8_t *d = packed_chunk("sink-2", 0, data, 200000, &n);
	b = malloc(n + 4);
	assert_non_null(b);
	memcpy(b, d, n);
	b[n] = 0x10; /* offset 5, after the data */
	b[n + 1] = 5;
	memset(&sk, 0, sizeof(sk));
	assert_int_equal(post_raw(sock, b, n + 2, n + 2, out, sizeof(out), &out_len), 200);
	assert_int_equal(sk.begins, 0);
	assert_int_equal(sk.handler_calls, 1);
	assert_int_equal(seen_len, 200000);
	free(b);
	free(d);

	/* a small chunk: read whole */
	b = packed_chunk("sink-3", 0, data, 1000, &n);
	memset(&sk, 0, sizeof(sk));
	assert_int_equal(post_raw(sock, b, n, n, out, sizeof(out), &out_len), 200);
	assert_int_equal(sk.begins, 0);
	assert_int_equal(sk.handler_calls, 1);
	free(b);

	/* a put fails: the call answers the error, the sink ends with it */
	b = packed_chunk("sink-fail", 0, data, sizeof(data), &n);
	memset(&sk, 0, sizeof(sk));
	int st = post_raw(sock, b, n, n, out, sizeof(out) - 1, &out_len);
	assert_int_not_equal(st, 200);
	out[out_len] = '\0';
	assert_non_null(strstr((char *)out, "the toy sink failed"));
	assert_int_equal(sk.ends, 1);
	assert_int_equal(sk.end_r, -ENOSPC);
	assert_int_equal(sk.puts, 2); /* no put after the failure */
	assert_int_equal(sk.handler_calls, 0);
	free(b);

	/* the connection is lost within the chunk: the sink lets go of it */
	b = packed_chunk("sink-lost", 0, data, sizeof(data), &n);
	memset(&sk, 0, sizeof(sk));
	post_raw(sock, b, n, n / 2, out, sizeof(out), &out_len);
	for (int i = 0; i < 200; i++) {
		pthread_mutex_lock(&sk_lock);
		unsigned ends = sk.ends;
		pthread_mutex_unlock(&sk_lock);
		if (ends)
			break;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(sk.taken, 1);
	assert_int_equal(sk.ends, 1);
	assert_int_equal(sk.end_r, -ECONNRESET);
	assert_true(sk.got < sizeof(data));
	assert_int_equal(sk.handler_calls, 0);
	free(b);

	ims_rpc_server_stop(s);
	rmdir(dir);
}

/* The start of a body: the sink's view agrees with the whole body's scan. */
static void test_head(void **state)
{
	(void)state;
	static uint8_t data[5000];
	memset(data, 7, sizeof(data));
	size_t n;
	uint8_t *b = packed_chunk("abc", 300, data, sizeof(data), &n);
	ims_rpc__upload_chunk h, c;
	size_t prefix = 0;
	assert_int_equal(ims_rpc__upload_chunk_scan(&c, b, n), 0);
	/* too little of it: more may tell */
	assert_int_equal(ims_rpc__upload_chunk_head(&h, &prefix, b, 3, n), 0);
	assert_int_equal(ims_rpc__upload_chunk_head(&h, &prefix, b, 7, n), 0);
	for (size_t have = 11; have <= n; have += 97) { /* 11: the data's length prefix */
		assert_int_equal(ims_rpc__upload_chunk_head(&h, &prefix, b, have, n), 1);
		assert_int_equal(h.id_len, 3);
		assert_memory_equal(h.id, "abc", 3);
		assert_true(h.offset == 300);
		assert_int_equal(h.data_len, sizeof(data));
		assert_int_equal(prefix + h.data_len, n);
		assert_true(c.data == b + prefix);
	}
	/* the body longer than the message says: its data is not last */
	assert_int_equal(ims_rpc__upload_chunk_head(&h, &prefix, b, 40, n + 1), 0);
	/* hostile starts */
	const uint8_t w1[] = {0x08, 0x01, 0x1a, 0x01, 'x'}; /* upload_id as a varint */
	assert_int_equal(ims_rpc__upload_chunk_head(&h, &prefix, w1, sizeof(w1), sizeof(w1)), -1);
	const uint8_t w2[] = {0x12, 0x01, 0x01, 0x1a, 0x01, 'x'}; /* offset length-delimited */
	assert_int_equal(ims_rpc__upload_chunk_head(&h, &prefix, w2, sizeof(w2), sizeof(w2)), -1);
	const uint8_t w3[] = {0x23, 0x1a, 0x01, 'x'}; /* a group */
	assert_int_equal(ims_rpc__upload_chunk_head(&h, &prefix, w3, sizeof(w3), sizeof(w3)), -1);
	/* a 6-byte length: never taken (0 or -1: the whole body is read and refused) */
	const uint8_t w4[] = {0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	assert_int_not_equal(ims_rpc__upload_chunk_head(&h, &prefix, w4, sizeof(w4), 1000), 1);
	/* an unknown field, and a data field that is not the last, before the data */
	const uint8_t ok[] = {0x20, 0x05, 0x1a, 0x01, 'a', 0x10, 0x09, 0x1a, 0x02, 'x', 'y'};
	assert_int_equal(ims_rpc__upload_chunk_head(&h, &prefix, ok, 9, sizeof(ok)), 1);
	assert_true(h.offset == 9);
	assert_int_equal(h.data_len, 2);
	assert_int_equal(prefix, 9);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_packed),	 cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_dispatch), cmocka_unit_test(test_head),
		cmocka_unit_test(test_sink),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
