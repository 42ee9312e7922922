/*
 * Unit tests of the in-place reader of UploadChunkRequest (proto/upload_chunk.c): well-formed
 * chunks as protobuf-c packs them, and hostile bytes (truncated varints and keys, a length
 * past the end, unknown fields of every wire type, repeated fields, groups, wrong wire types),
 * each compared with protobuf-c's own unpack: the same accepted, the same refused, the same
 * fields; and the data read in place, pointing into the body. Then the pipeline: a call of
 * UploadChunk through ims_rpc_server_dispatch reaches its handler with the data in the body.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
			Imgstore__V1__UploadChunkRequest m = IMGSTORE__V1__UPLOAD_CHUNK_REQUEST__INIT;
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
	const uint8_t t2[] = {0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	assert_int_equal(agree(t2, sizeof(t2)), -EINVAL); /* 11 bytes: too long */
	const uint8_t t3[] = {0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
	assert_int_equal(agree(t3, sizeof(t3)), 0); /* 10 bytes: bits past 64 dropped */
	const uint8_t t4[] = {0x98}; /* a key cut short */
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
		 false},
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
						 "application/proto", NULL, b, n - 1, &status,
						 &ct, &out, &out_len),
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_packed),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_dispatch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
