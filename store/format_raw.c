/*
 * store/format_raw.c: a raw image is the disk itself. Every byte is data (the importer finds
 * zero blocks by itself) unless the source knows its zeros (ims_source.zeros).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "common/error.h"
#include "store/format_internal.h"

static int raw_map(ims_format_reader *r, uint64_t offset, ims_extent *out)
{
	out->length = r->virtual_size - offset;
	out->type = IMS_EXTENT_DATA;
	if (r->src.zeros) {
		uint64_t len = 0;
		int zero = 0;
		int err = r->src.zeros(r->src.ctx, offset, &len, &zero);
		if (err < 0)
			return err;
		if (len == 0)
			return ims_error_set(-EIO, "the source maps no bytes at offset %" PRIu64,
					     offset);
		if (len < out->length)
			out->length = len;
		out->type = zero ? IMS_EXTENT_ZERO : IMS_EXTENT_DATA;
	}
	return 0;
}

static int raw_read(ims_format_reader *r, uint64_t offset, uint8_t *buf, size_t len)
{
	size_t got;
	int err = ims_format__pread(&r->src, buf, len, offset, &got);

	if (err < 0)
		return err;
	/* The size was taken at open: a shorter file now means it changed under us. */
	if (got != len)
		return ims_error_set(
			-EIO, "raw image shrank while read: %zu of %zu bytes at offset %" PRIu64,
			got, len, offset);
	return 0;
}

static void raw_close(ims_format_reader *r)
{
	free(r);
}

static const ims_format__ops raw_ops = {
	.map = raw_map,
	.read = raw_read,
	.close = raw_close,
};

int ims_format__raw_open(ims_format_reader **out, const ims_source *src)
{
	ims_format_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return ims_error_set(-ENOMEM, "out of memory for a raw reader");
	r->ops = &raw_ops;
	r->kind = IMS_FORMAT_RAW;
	r->src = *src;
	r->virtual_size = src->size;
	*out = r;
	return 0;
}
