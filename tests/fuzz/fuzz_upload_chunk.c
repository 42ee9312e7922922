/*
 * libFuzzer target: bytes as the body of an UploadChunk call, read in place by
 * proto/upload_chunk.c and unpacked by protobuf-c. The two must agree: both refuse, or both
 * take it with the same upload_id (to its first NUL, as a C string), offset and data, the
 * data of the in-place reader lying within the body. And the reader of a body's start
 * (ims_rpc__upload_chunk_head, for the data put straight where it goes): whatever start of
 * the body it is given, when it says the data field is last, the whole body scans to the
 * same fields.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "imgstore/v1/image.pb-c.h"
#include "proto/server_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ims_rpc__upload_chunk c, h;
	int r = ims_rpc__upload_chunk_scan(&c, data, size);
	size_t cuts[3] = {size, size / 2, size > 40 ? 40 : size};
	for (unsigned i = 0; i < 3; i++) {
		size_t prefix = 0;
		int hr = ims_rpc__upload_chunk_head(&h, &prefix, data, cuts[i], size);
		if (hr != 1)
			continue;
		if (r < 0 || prefix > size || prefix + h.data_len != size ||
		    h.data_len != c.data_len || h.offset != c.offset || h.id_len != c.id_len ||
		    (h.id_len && (h.id != c.id || h.id + h.id_len > data + cuts[i]))) {
			fprintf(stderr, "the body's start read %s from the whole body (cut %zu)\n",
				r < 0 ? "a body refused" : "other fields", cuts[i]);
			abort();
		}
	}
	Imgstore__V1__UploadChunkRequest *q =
		imgstore__v1__upload_chunk_request__unpack(NULL, size, data);
	if (!q) {
		if (r == 0) {
			fprintf(stderr, "taken in place, refused by protobuf-c\n");
			abort();
		}
		if (!ims_error_last()[0])
			abort();
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "refused in place (%s), taken by protobuf-c\n", ims_error_last());
		abort();
	}
	size_t idn = strnlen((const char *)c.id, c.id_len);
	if (idn != strlen(q->upload_id) || memcmp(c.id, q->upload_id, idn) != 0 ||
	    c.offset != q->offset || c.data_len != q->data.len ||
	    (c.data_len && memcmp(c.data, q->data.data, c.data_len) != 0)) {
		fprintf(stderr, "the fields differ\n");
		abort();
	}
	if (c.data_len && (c.data < data || c.data + c.data_len > data + size))
		abort();
	if (c.id_len && (c.id < data || c.id + c.id_len > data + size))
		abort();
	imgstore__v1__upload_chunk_request__free_unpacked(q, NULL);
	return 0;
}
