/*
 * store/format_vpc.c: a reader of Virtual PC / Azure VHD images ("vpc" to QEMU), fixed and
 * dynamic, from Microsoft's "Virtual Hard Disk Image Format Specification".
 *
 * A fixed image is the disk followed by a 512-byte footer. A dynamic one starts with a copy
 * of the footer, then a dynamic disk header ("cxsparse") that places the block allocation
 * table (BAT): one 32-bit sector number per block, each block a sector bitmap and the data.
 * As QEMU does, the bitmap is not consulted on read (an allocated block reads whole) and the
 * disk's size follows QEMU's rule: the CHS geometry for images Virtual PC and older QEMU
 * wrote ("vpc ", "qemu"), the footer's current size for the others. Differencing images are
 * refused. The BAT is loaded whole (at most 32 MiB, never more than the file holds).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "store/format_internal.h"

#define SECTOR		  UINT64_C(512)
#define FOOTER_BYTES	  512u
#define DYN_HEADER_BYTES  1024u
#define TYPE_FIXED	  2u
#define TYPE_DYNAMIC	  3u
#define TYPE_DIFFERENCING 4u
#define BAT_UNUSED	  0xffffffffu
/* QEMU's limits: 2040 GiB, and the CHS geometry that means "use the current size" */
#define MAX_SECTORS	     UINT64_C(0xff000000)
#define MAX_GEOMETRY_SECTORS (UINT64_C(65535) * 16 * 255)
#define MIN_BLOCK	     (UINT64_C(1) << 12)
#define MAX_BLOCK	     (UINT64_C(1) << 28)
#define BLOCKS_PER_RANGE     1024u

typedef struct {
	ims_format_reader base;
	bool fixed;
	uint64_t block_bytes;
	uint64_t bitmap_bytes;
	uint64_t bat_off, bat_bytes, dyn_off;
	uint32_t *bat;
	uint64_t bat_entries;
} vpc;

/* What of the metadata [off, off + len) overlaps, NULL if nothing. */
static const char *metadata_at(const vpc *v, uint64_t off, uint64_t len)
{
	if (ims_format__overlap(off, len, 0, FOOTER_BYTES))
		return "the footer copy";
	if (ims_format__overlap(off, len, v->dyn_off, DYN_HEADER_BYTES))
		return "the dynamic disk header";
	if (ims_format__overlap(off, len, v->bat_off, v->bat_bytes))
		return "the block allocation table";
	return NULL;
}

static int locate(ims_format_reader *base, uint64_t off, ims_format__loc *out)
{
	vpc *v = (vpc *)base;
	uint64_t i, in_block;
	uint32_t e;

	memset(out, 0, sizeof(*out));
	if (v->fixed) {
		out->type = IMS_FORMAT__DATA;
		out->host = off;
		out->len = base->virtual_size - off;
		return 0;
	}
	i = off / v->block_bytes;
	in_block = off % v->block_bytes;
	e = v->bat[i];
	out->len = v->block_bytes - in_block;
	if (e == BAT_UNUSED) {
		out->type = IMS_FORMAT__ZERO;
		return 0;
	}
	/* checked at open: the block lies in the file, after the metadata */
	out->type = IMS_FORMAT__DATA;
	out->host = (uint64_t)e * SECTOR + v->bitmap_bytes + in_block;
	return 0;
}

static bool has_range(const ims_format_reader *base, uint64_t i)
{
	(void)base;
	(void)i;
	return true;
}

static const ims_format__sparse_ops vpc_sparse = {
	.locate = locate,
	.decompress = NULL, /* no compressed units */
	.has_table = has_range,
};

static void vpc_close(ims_format_reader *base)
{
	vpc *v = (vpc *)base;

	free(v->bat);
	free(v);
}

static const ims_format__ops vpc_ops = {
	.map = ims_format__sparse_map,
	.read = ims_format__sparse_read,
	.close = vpc_close,
};

/* The disk's size as QEMU sees it (block/vpc.c). */
static uint64_t disk_sectors(const uint8_t *f)
{
	uint64_t chs = (uint64_t)ims_format__be16(f + 56) * f[58] * f[59];
	bool use_chs = memcmp(f + 28, "vpc ", 4) == 0 || memcmp(f + 28, "qemu", 4) == 0;

	if (!use_chs || chs == MAX_GEOMETRY_SECTORS)
		return ims_format__be64(f + 48) / SECTOR;
	return chs;
}

static int load_bat(vpc *v, const uint8_t *f)
{
	uint64_t size = v->base.src.size, i;
	uint8_t d[DYN_HEADER_BYTES];
	const char *what;
	int r;

	v->dyn_off = ims_format__be64(f + 16);
	if (!ims_format__in_file(v->dyn_off, DYN_HEADER_BYTES, size))
		return ims_error_set(-EINVAL,
				     "vpc: the dynamic disk header at 0x%" PRIx64
				     " lies outside the file (%" PRIu64 " bytes)",
				     v->dyn_off, size);
	if (v->dyn_off < FOOTER_BYTES)
		return ims_error_set(-EINVAL,
				     "vpc: the dynamic disk header at 0x%" PRIx64
				     " lies in the footer copy",
				     v->dyn_off);
	r = ims_format__pread_exact(&v->base.src, d, sizeof(d), v->dyn_off,
				    "vpc: dynamic disk header");
	if (r < 0)
		return r;
	if (memcmp(d, "cxsparse", 8) != 0)
		return ims_error_set(-EINVAL, "vpc: the dynamic disk header has a bad magic");
	v->bat_off = ims_format__be64(d + 16);
	v->bat_entries = ims_format__be32(d + 28);
	v->block_bytes = ims_format__be32(d + 32);
	if (v->block_bytes < MIN_BLOCK || v->block_bytes > MAX_BLOCK ||
	    (v->block_bytes & (v->block_bytes - 1)))
		return ims_error_set(-EINVAL,
				     "vpc: block size %" PRIu64 " is not a power of 2 from 4 KiB "
				     "to 256 MiB",
				     v->block_bytes);
	/* one bit per sector, in whole sectors */
	v->bitmap_bytes = (v->block_bytes / (8 * SECTOR) + SECTOR - 1) & ~(SECTOR - 1);
	if (v->bat_entries * v->block_bytes < v->base.virtual_size)
		return ims_error_set(-EINVAL,
				     "vpc: %" PRIu64 " blocks of %" PRIu64
				     " bytes are too few for a disk of %" PRIu64 " bytes",
				     v->bat_entries, v->block_bytes, v->base.virtual_size);
	/* only the entries of the disk matter */
	v->bat_entries = (v->base.virtual_size + v->block_bytes - 1) / v->block_bytes;
	v->bat_bytes = v->bat_entries * 4;
	if (v->bat_bytes > IMS_FORMAT__MAX_TABLE_BYTES)
		return ims_error_set(-EINVAL,
				     "vpc: the block allocation table is larger than 32 MiB");
	if (!ims_format__in_file(v->bat_off, v->bat_bytes, size))
		return ims_error_set(-EINVAL,
				     "vpc: the block allocation table (%" PRIu64
				     " entries at 0x%" PRIx64 ") lies outside the file (%" PRIu64
				     " bytes)",
				     v->bat_entries, v->bat_off, size);
	if (ims_format__overlap(v->bat_off, v->bat_bytes, 0, FOOTER_BYTES) ||
	    ims_format__overlap(v->bat_off, v->bat_bytes, v->dyn_off, DYN_HEADER_BYTES))
		return ims_error_set(-EINVAL,
				     "vpc: the block allocation table at 0x%" PRIx64
				     " overlaps the headers",
				     v->bat_off);
	v->bat = malloc(v->bat_bytes ? (size_t)v->bat_bytes : 1);
	if (!v->bat)
		return ims_error_set(-ENOMEM, "vpc: out of memory for a block allocation table");
	r = ims_format__pread_exact(&v->base.src, v->bat, (size_t)v->bat_bytes, v->bat_off,
				    "vpc: block allocation table");
	if (r < 0)
		return r;
	for (i = 0; i < v->bat_entries; i++) {
		uint32_t e = ims_format__be32((const uint8_t *)&v->bat[i]);
		uint64_t host = (uint64_t)e * SECTOR;

		v->bat[i] = e;
		if (e == BAT_UNUSED)
			continue;
		/* the bitmap and the first data sector at least */
		if (!ims_format__in_file(host, v->bitmap_bytes + SECTOR, size))
			return ims_error_set(-EINVAL,
					     "vpc: block allocation table entry %" PRIu64
					     " puts a block at 0x%" PRIx64
					     ", past the end of the file (%" PRIu64 " bytes)",
					     i, host, size);
		what = metadata_at(v, host, v->bitmap_bytes + v->block_bytes);
		if (what)
			return ims_error_set(-EINVAL,
					     "vpc: block allocation table entry %" PRIu64
					     " puts a block at 0x%" PRIx64 ", into %s",
					     i, host, what);
	}
	return 0;
}

int ims_format__vpc_open(ims_format_reader **out, const ims_source *src)
{
	uint8_t f[FOOTER_BYTES];
	uint64_t size = src->size, sectors;
	uint32_t type, sum = 0;
	size_t got;
	vpc *v = NULL;
	int r;

	r = ims_format__pread(src, f, sizeof(f), 0, &got);
	if (r < 0)
		return r;
	if (got < 8 || memcmp(f, "conectix", 8) != 0) {
		/* a fixed disk has its footer at the end only */
		if (size < 2 * FOOTER_BYTES)
			return ims_error_set(-EINVAL, "vpc: bad magic");
		r = ims_format__pread_exact(src, f, sizeof(f), size - FOOTER_BYTES, "vpc: footer");
		if (r < 0)
			return r;
		if (memcmp(f, "conectix", 8) != 0)
			return ims_error_set(-EINVAL, "vpc: bad magic");
	} else if (got < sizeof(f)) {
		return ims_error_set(-EINVAL, "vpc: truncated footer (%zu bytes, need %u)", got,
				     FOOTER_BYTES);
	}
	for (size_t i = 0; i < sizeof(f); i++)
		if (i < 64 || i >= 68)
			sum += f[i];
	if (~sum != ims_format__be32(f + 64))
		return ims_error_set(-EINVAL, "vpc: the footer's checksum is wrong");
	type = ims_format__be32(f + 60);
	if (type == TYPE_DIFFERENCING)
		return ims_error_set(-ENOTSUP, "vpc: the image is a differencing disk of a parent; "
					       "imgstore imports standalone images only");
	if (type != TYPE_FIXED && type != TYPE_DYNAMIC)
		return ims_error_set(-ENOTSUP,
				     "vpc: disk type %" PRIu32
				     " is not supported (2, fixed, and 3, dynamic, are)",
				     type);
	sectors = disk_sectors(f);
	if (!sectors || sectors > MAX_SECTORS)
		return ims_error_set(-EINVAL,
				     "vpc: a disk of %" PRIu64
				     " sectors is empty or larger than 2040 GiB",
				     sectors);
	v = calloc(1, sizeof(*v));
	if (!v)
		return ims_error_set(-ENOMEM, "vpc: out of memory for a reader");
	ims_format__reader_init(&v->base, &vpc_ops, IMS_FORMAT_VPC, src);
	v->base.virtual_size = sectors * SECTOR;
	v->base.sparse = &vpc_sparse;
	v->fixed = type == TYPE_FIXED;
	if (v->fixed) {
		v->base.table_range = v->base.virtual_size;
		if (v->base.virtual_size > size - FOOTER_BYTES) {
			r = ims_error_set(-EINVAL,
					  "vpc: a fixed disk of %" PRIu64
					  " bytes does not fit in the file (%" PRIu64 " bytes)",
					  v->base.virtual_size, size);
			goto fail;
		}
	} else {
		r = load_bat(v, f);
		if (r < 0)
			goto fail;
		v->base.table_range = v->block_bytes * BLOCKS_PER_RANGE;
	}
	*out = &v->base;
	return 0;
fail:
	vpc_close(&v->base);
	return r;
}
