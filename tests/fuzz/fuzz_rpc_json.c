/*
 * libFuzzer target: bytes as the JSON body of a call (proto/json.c), into one of several
 * message types. Whatever decodes must encode, and the encoding must decode again to a
 * message that encodes the same (the mapping is stable); whatever fails must say why.
 *
 * Input: byte 0 picks the message type; the rest is the JSON text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "imgstore/v1/common.pb-c.h"
#include "imgstore/v1/group.pb-c.h"
#include "imgstore/v1/image.pb-c.h"
#include "imgstore/v1/replication.pb-c.h"
#include "imgstore/v1/site.pb-c.h"
#include "proto/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *const types[] = {
	&imgstore__v1__image__descriptor,
	&imgstore__v1__operation__descriptor,
	&imgstore__v1__site__descriptor,
	&imgstore__v1__upload_chunk_request__descriptor,
	&imgstore__v1__create_image_request__descriptor,
	&imgstore__v1__get_image_request__descriptor,
	&imgstore__v1__list_images_response__descriptor,
};
#define NTYPES (sizeof(types) / sizeof(types[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ProtobufCMessage *m = NULL, *m2 = NULL;
	char *t1 = NULL, *t2 = NULL;
	size_t n1 = 0, n2 = 0;

	if (size < 1)
		return 0;
	const ProtobufCMessageDescriptor *d = types[data[0] % NTYPES];
	int r = ims_rpc__json_decode(&m, d, (const char *)data + 1, size - 1);
	if (r < 0) {
		if (m || !ims_error_last()[0])
			abort();
		return 0;
	}
	if (ims_rpc__json_encode(&t1, &n1, m) < 0 || strlen(t1) != n1)
		abort();
	if (ims_rpc__json_decode(&m2, d, t1, n1) < 0) {
		fprintf(stderr, "re-decoding failed: %s\n%s\n", ims_error_last(), t1);
		abort();
	}
	if (ims_rpc__json_encode(&t2, &n2, m2) < 0 || n1 != n2 || memcmp(t1, t2, n1) != 0) {
		fprintf(stderr, "unstable:\n%s\n%s\n", t1, t2 ? t2 : "");
		abort();
	}
	/* the binary form too */
	size_t bn = protobuf_c_message_get_packed_size(m);
	uint8_t *b = malloc(bn ? bn : 1);
	if (!b)
		abort();
	protobuf_c_message_pack(m, b);
	ProtobufCMessage *m3 = protobuf_c_message_unpack(d, NULL, bn, b);
	if (!m3)
		abort();
	protobuf_c_message_free_unpacked(m3, NULL);
	free(b);
	free(t1);
	free(t2);
	protobuf_c_message_free_unpacked(m, NULL);
	protobuf_c_message_free_unpacked(m2, NULL);
	return 0;
}
