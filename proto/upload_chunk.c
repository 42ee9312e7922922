/*
 * proto/upload_chunk.c: UploadChunkRequest read in place. protobuf-c's unpack copies the
 * `data` bytes (2 MiB a chunk) out of the request body into memory of its own; this reader
 * leaves them where they are: the request's `data` points into the body, which the server
 * keeps until the handler has returned (proto/dispatch.c). It accepts and refuses exactly
 * what protobuf-c 1.4's unpack does (tests/fuzz/fuzz_upload_chunk.c compares the two):
 * fields in any order, the last of a repeated field wins, unknown fields (varint, 64-bit,
 * length-delimited, 32-bit) skipped, groups and wire types 6 and 7 refused, a known field
 * of the wrong wire type refused.
 */
#include "proto/server_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "common/error.h"

/* A tag and wire type as protobuf-c reads them: at most 5 bytes, and a first byte whose
 * field number bits are all 0 is refused (a longer encoding of 0 is not). @returns the bytes
 * used, 0 if malformed. */
static size_t read_key(const uint8_t *p, size_t rem, uint32_t *tag, unsigned *wire)
{
	size_t max = rem > 5 ? 5 : rem;
	if (max == 0 || (p[0] & 0xf8) == 0)
		return 0;
	*wire = p[0] & 7u;
	uint32_t t = (p[0] & 0x7fu) >> 3;
	if (!(p[0] & 0x80)) {
		*tag = t;
		return 1;
	}
	unsigned shift = 4;
	for (size_t i = 1; i < max; i++) {
		t |= (uint32_t)((uint64_t)(p[i] & 0x7fu) << shift);
		shift += 7;
		if (!(p[i] & 0x80)) {
			*tag = t;
			return i + 1;
		}
	}
	return 0;
}

/* A varint of at most 10 bytes (bits past 64 dropped). @returns the bytes used, 0 if none
 * ends within them. */
static size_t read_varint(const uint8_t *p, size_t rem, uint64_t *v)
{
	size_t max = rem > 10 ? 10 : rem;
	uint64_t x = 0;
	for (size_t i = 0; i < max; i++) {
		x |= (uint64_t)(p[i] & 0x7fu) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = x;
			return i + 1;
		}
	}
	return 0;
}

/* A length-delimited field's prefix (at most 5 bytes, at most INT_MAX) and that many bytes
 * after it. @returns the prefix's bytes, 0 if malformed or past the end. */
static size_t read_length(const uint8_t *p, size_t rem, size_t *len)
{
	uint64_t v = 0;
	size_t n = read_varint(p, rem > 5 ? 5 : rem, &v);
	if (!n || v > INT_MAX || v > rem - n)
		return 0;
	*len = (size_t)v;
	return n;
}

int ims_rpc__upload_chunk_scan(ims_rpc__upload_chunk *out, const uint8_t *body, size_t len)
{
	static const uint8_t none[1];
	const uint8_t *p = body ? body : none;
	size_t rem = body ? len : 0;

	memset(out, 0, sizeof(*out));
	out->id = none;
	out->data = none;
	while (rem) {
		uint32_t tag;
		unsigned wire;
		size_t n = read_key(p, rem, &tag, &wire);
		if (!n)
			return ims_error_set(-EINVAL, "a malformed field key at byte %zu",
					     (size_t)(p - body));
		p += n;
		rem -= n;
		uint64_t v = 0;
		size_t flen = 0;
		switch (wire) {
		case 0: /* varint */
			if (!(n = read_varint(p, rem, &v)))
				return ims_error_set(-EINVAL, "an unterminated varint at byte %zu",
						     (size_t)(p - body));
			break;
		case 1: /* 64-bit */
		case 5: /* 32-bit */
			n = wire == 1 ? 8 : 4;
			if (rem < n)
				return ims_error_set(-EINVAL,
						     "a fixed field past the end at byte %zu",
						     (size_t)(p - body));
			break;
		case 2: /* length-delimited */
			if (!(n = read_length(p, rem, &flen)))
				return ims_error_set(-EINVAL, "a length past the end at byte %zu",
						     (size_t)(p - body));
			break;
		default: /* groups (3, 4) and 6, 7: protobuf-c refuses them */
			return ims_error_set(-EINVAL, "wire type %u at byte %zu", wire,
					     (size_t)(p - body));
		}
		switch (tag) {
		case 1: /* string upload_id */
		case 3: /* bytes data */
			if (wire != 2)
				return ims_error_set(-EINVAL, "field %u is not length-delimited",
						     (unsigned)tag);
			if (tag == 1) {
				out->id = p + n;
				out->id_len = flen;
			} else {
				out->data = p + n;
				out->data_len = flen;
			}
			break;
		case 2: /* uint64 offset */
			if (wire != 0)
				return ims_error_set(-EINVAL, "field 2 is not a varint");
			out->offset = v;
			break;
		default: /* unknown: skipped */ break;
		}
		n += flen;
		p += n;
		rem -= n;
	}
	return 0;
}

/* A length prefix (at most 5 bytes) whatever follows it. @returns its bytes, 0 if it does not
 * end within them. */
static size_t read_prefix(const uint8_t *p, size_t rem, uint64_t *v)
{
	size_t max = rem > 5 ? 5 : rem;
	uint64_t x = 0;
	for (size_t i = 0; i < max; i++) {
		x |= (uint64_t)(p[i] & 0x7fu) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = x;
			return i + 1;
		}
	}
	return 0;
}

int ims_rpc__upload_chunk_head(ims_rpc__upload_chunk *out, size_t *prefix, const uint8_t *head,
			       size_t have, size_t total)
{
	size_t pos = 0;

	memset(out, 0, sizeof(*out));
	out->id = head;
	out->data = head;
	while (pos < have) {
		uint32_t tag;
		unsigned wire;
		uint64_t v;
		size_t k = read_key(head + pos, have - pos, &tag, &wire), n;
		if (!k)
			return 0;
		size_t at = pos + k;
		switch (wire) {
		case 2:
			if (!(n = read_prefix(head + at, have - at, &v)))
				return 0;
			if (tag == 2)
				return -1;
			if (tag == 3 && v <= INT_MAX && v == (uint64_t)total - (at + n)) {
				out->data_len =
					(size_t)v; /* the last field: to the end of the body */
				*prefix = at + n;
				return 1;
			}
			if (v > have - (at + n))
				return 0;
			if (tag == 1) {
				out->id = head + at + n;
				out->id_len = (size_t)v;
			}
			pos = at + n + (size_t)v;
			break;
		case 0:
			if (tag == 1 || tag == 3)
				return -1;
			if (!(n = read_varint(head + at, have - at, &v)))
				return 0;
			if (tag == 2)
				out->offset = v;
			pos = at + n;
			break;
		case 1:
		case 5:
			if (tag >= 1 && tag <= 3)
				return -1;
			n = wire == 1 ? 8 : 4;
			if (have - at < n)
				return 0;
			pos = at + n;
			break;
		default: return -1;
		}
	}
	return 0;
}
