/*
 * The body of the format fuzzers: open the input as one format, walk the map over the whole
 * disk and read some of every extent, within bounds of work, then close. What the readers
 * promise is checked on the way: extents that start where asked and stay in the disk, zero
 * extents that read as zeros.
 */
#ifndef IMS_TESTS_FUZZ_FORMAT_H
#define IMS_TESTS_FUZZ_FORMAT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "store/format.h"

#define FUZZ_MAX_EXTENTS 4096
#define FUZZ_PIECE	 (64u << 10)
#define FUZZ_MAX_READ	 (8u << 20)

static uint8_t fuzz_buf[FUZZ_PIECE];

static void fuzz_check(int ok)
{
	if (!ok)
		__builtin_trap();
}

static void fuzz_read(ims_format_reader *r, const ims_extent *e, uint64_t at, size_t len,
		      uint64_t *budget)
{
	if (len > *budget)
		len = (size_t)*budget;
	if (!len)
		return;
	*budget -= len;
	memset(fuzz_buf, 0xa5, len);
	if (ims_format_read(r, at, fuzz_buf, len) < 0)
		return;
	if (e->type == IMS_EXTENT_ZERO)
		for (size_t i = 0; i < len; i++)
			fuzz_check(fuzz_buf[i] == 0);
}

static int fuzz_format_secret(const uint8_t *data, size_t size, ims_format_kind kind,
			      const ims_format_secret *secret);

static inline int fuzz_format(const uint8_t *data, size_t size, ims_format_kind kind)
{
	return fuzz_format_secret(data, size, kind, NULL);
}

/* fuzz_format() of an image opened with @p secret (an encrypted qcow2's passphrase). */
static int fuzz_format_secret(const uint8_t *data, size_t size, ims_format_kind kind,
			      const ims_format_secret *secret)
{
	ims_format_reader *r = NULL;
	ims_source_mem_ctx ctx;
	ims_source src;
	uint64_t off = 0, vsize, budget = FUZZ_MAX_READ;
	unsigned n;

	ims_source_mem(&src, &ctx, data, size);
	ims_error_clear();
	if (ims_format_open_secret(&r, &src, kind, secret) < 0) {
		/* every failure says why, on one line */
		fuzz_check(ims_error_last_code() < 0 && strchr(ims_error_last(), '\n') == NULL);
		return 0;
	}
	fuzz_check(ims_format_kind_of(r) == kind);
	vsize = ims_format_virtual_size(r);
	for (n = 0; off < vsize && n < FUZZ_MAX_EXTENTS; n++) {
		ims_extent e;
		uint64_t len;

		if (ims_format_map(&e, r, off) < 0)
			break;
		fuzz_check(e.offset == off && e.length > 0 && e.length <= vsize - off);
		fuzz_check(e.type == IMS_EXTENT_DATA || e.type == IMS_EXTENT_ZERO);
		/* the head of the extent, and its last bytes, across a cluster boundary if any */
		len = e.length < FUZZ_PIECE ? e.length : FUZZ_PIECE;
		fuzz_read(r, &e, off, (size_t)len, &budget);
		if (e.length > FUZZ_PIECE)
			fuzz_read(r, &e, off + e.length - 4097, 4097, &budget);
		off += e.length;
	}
	/* reads that pass the end fail cleanly */
	fuzz_check(ims_format_read(r, vsize, fuzz_buf, 1) < 0);
	ims_format_close(r);
	return 0;
}

#endif
