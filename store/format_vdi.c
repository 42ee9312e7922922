/*
 * store/format_vdi.c: a reader of VirtualBox VDI images (version 1.1), dynamic and static:
 * a header, a block map of 32-bit entries (one per block of the disk) and the blocks.
 *
 * Differencing images (a parent or link UUID) are refused. The block map is loaded whole
 * (at most 32 MiB and never more than the file holds); every block it points to lies inside
 * the file and past the header and the map, else the image is corrupt.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "store/format_internal.h"

#define SECTOR		UINT64_C(512)
#define VDI_MAGIC	0xbeda107fu
#define VDI_VERSION_1_1 0x00010001u
#define HEADER_BYTES	512u
/* the block map's entries that read as zeros */
#define BLOCK_UNALLOCATED 0xffffffffu
#define BLOCK_DISCARDED	  0xfffffffeu
#define MIN_BLOCK	  (UINT64_C(1) << 12)
#define MAX_BLOCK	  (UINT64_C(1) << 26)
/* the map in ranges of this many blocks: the unit of the sparse walk */
#define BLOCKS_PER_RANGE 1024u

typedef struct {
	ims_format_reader base;
	uint64_t block_bytes;
	uint64_t data_off; /* past the header and the map (checked): no block lies before */
	uint32_t *map;
	uint64_t blocks;
} vdi;

static int locate(ims_format_reader *base, uint64_t off, ims_format__loc *out)
{
	vdi *v = (vdi *)base;
	uint64_t i = off / v->block_bytes, in_block = off % v->block_bytes, host;
	uint32_t e = v->map[i];

	memset(out, 0, sizeof(*out));
	out->len = v->block_bytes - in_block;
	if (e >= BLOCK_DISCARDED) {
		out->type = IMS_FORMAT__ZERO;
		return 0;
	}
	/* data_off and e * block_bytes are both below 2^58: no overflow */
	host = v->data_off + (uint64_t)e * v->block_bytes;
	if (host >= v->base.src.size)
		return ims_error_set(-EINVAL,
				     "vdi: block %" PRIu64 " (guest offset %" PRIu64
				     ") at host offset 0x%" PRIx64
				     " lies past the end of the file (%" PRIu64 " bytes)",
				     i, off, host, v->base.src.size);
	out->type = IMS_FORMAT__DATA;
	out->host = host + in_block;
	return 0;
}

static bool has_range(const ims_format_reader *base, uint64_t i)
{
	(void)base;
	(void)i;
	return true;
}

static const ims_format__sparse_ops vdi_sparse = {
	.locate = locate,
	.decompress = NULL, /* no compressed units */
	.has_table = has_range,
};

static void vdi_close(ims_format_reader *base)
{
	vdi *v = (vdi *)base;

	free(v->map);
	free(v);
}

static const ims_format__ops vdi_ops = {
	.map = ims_format__sparse_map,
	.read = ims_format__sparse_read,
	.close = vdi_close,
};

static bool uuid_set(const uint8_t *p)
{
	return !ims_format__all_zero(p, 16);
}

int ims_format__vdi_open(ims_format_reader **out, const ims_source *src)
{
	uint8_t h[HEADER_BYTES];
	uint64_t size = src->size, disk_size, map_off, map_bytes, block_bytes, blocks, i;
	uint32_t version, header_size, type, sector_size, extra;
	vdi *v = NULL;
	int r;

	r = ims_format__pread_exact(src, h, sizeof(h), 0, "vdi: header");
	if (r < 0)
		return r;
	if (ims_format__le32(h + 0x40) != VDI_MAGIC)
		return ims_error_set(-EINVAL, "vdi: bad magic");
	version = ims_format__le32(h + 0x44);
	if (version != VDI_VERSION_1_1)
		return ims_error_set(-ENOTSUP, "vdi: version %u.%u is not supported (1.1 is)",
				     version >> 16, version & 0xffff);
	header_size = ims_format__le32(h + 0x48);
	type = ims_format__le32(h + 0x4c);
	map_off = ims_format__le32(h + 0x154);
	sector_size = ims_format__le32(h + 0x168);
	disk_size = ims_format__le64(h + 0x170);
	block_bytes = ims_format__le32(h + 0x178);
	extra = ims_format__le32(h + 0x17c);
	blocks = ims_format__le32(h + 0x180);
	if (header_size < 0x140 || header_size > HEADER_BYTES - 0x40)
		return ims_error_set(-EINVAL, "vdi: header size %" PRIu32 " is not valid",
				     header_size);
	if (type == 4 || uuid_set(h + 0x1a8) || uuid_set(h + 0x1b8))
		return ims_error_set(-ENOTSUP, "vdi: the image is a differencing image of a "
					       "parent; imgstore imports standalone images only");
	if (type != 1 && type != 2)
		return ims_error_set(-ENOTSUP,
				     "vdi: image type %" PRIu32
				     " is not supported (1, dynamic, and 2, static, are)",
				     type);
	if (sector_size != SECTOR)
		return ims_error_set(-EINVAL, "vdi: sector size %" PRIu32 " is not 512",
				     sector_size);
	if (extra != 0)
		return ims_error_set(-ENOTSUP,
				     "vdi: %" PRIu32 " extra bytes per block are not "
				     "supported",
				     extra);
	if (block_bytes < MIN_BLOCK || block_bytes > MAX_BLOCK || (block_bytes & (block_bytes - 1)))
		return ims_error_set(-EINVAL,
				     "vdi: block size %" PRIu64 " is not a power of 2 from 4 KiB "
				     "to 64 MiB",
				     block_bytes);
	if (map_off % SECTOR || ims_format__le32(h + 0x158) % SECTOR)
		return ims_error_set(-EINVAL, "vdi: the block map or the data does not start on a "
					      "sector");
	/* QEMU sees the disk in whole sectors */
	disk_size &= ~(SECTOR - 1);
	if (!disk_size)
		return ims_error_set(-EINVAL, "vdi: the disk size is 0");
	if (disk_size > blocks * block_bytes)
		return ims_error_set(-EINVAL,
				     "vdi: disk size %" PRIu64 " exceeds its %" PRIu64
				     " blocks of %" PRIu64 " bytes",
				     disk_size, blocks, block_bytes);
	map_bytes = blocks * 4;
	if (map_bytes > IMS_FORMAT__MAX_TABLE_BYTES)
		return ims_error_set(-EINVAL,
				     "vdi: %" PRIu64 " blocks need a block map larger than 32 MiB",
				     blocks);
	if (map_off < HEADER_BYTES || !ims_format__in_file(map_off, map_bytes, size))
		return ims_error_set(-EINVAL,
				     "vdi: the block map (%" PRIu64 " entries at 0x%" PRIx64
				     ") lies outside the file (%" PRIu64 " bytes)",
				     blocks, map_off, size);
	v = calloc(1, sizeof(*v));
	if (!v)
		return ims_error_set(-ENOMEM, "vdi: out of memory for a reader");
	ims_format__reader_init(&v->base, &vdi_ops, IMS_FORMAT_VDI, src);
	v->base.virtual_size = disk_size;
	v->base.sparse = &vdi_sparse;
	v->base.table_range = block_bytes * BLOCKS_PER_RANGE;
	v->block_bytes = block_bytes;
	v->blocks = blocks;
	v->data_off = ims_format__le32(h + 0x158);
	if (v->data_off < map_off + map_bytes) {
		r = ims_error_set(-EINVAL,
				  "vdi: the data (at 0x%" PRIx64 ") starts inside the block map",
				  v->data_off);
		goto fail;
	}
	v->map = malloc(map_bytes ? (size_t)map_bytes : 1);
	if (!v->map) {
		r = ims_error_set(-ENOMEM,
				  "vdi: out of memory for a block map of %" PRIu64 " entries",
				  blocks);
		goto fail;
	}
	r = ims_format__pread_exact(src, v->map, (size_t)map_bytes, map_off, "vdi: block map");
	if (r < 0)
		goto fail;
	for (i = 0; i < blocks; i++) {
		uint32_t e = ims_format__le32((const uint8_t *)&v->map[i]);
		v->map[i] = e;
		/* the blocks past the disk are never read: only the others must lie in the file */
		if (e < BLOCK_DISCARDED && i * block_bytes < disk_size &&
		    v->data_off + (uint64_t)e * block_bytes >= size) {
			r = ims_error_set(-EINVAL,
					  "vdi: block map entry %" PRIu64 " puts block %" PRIu32
					  " past the end of the file (%" PRIu64 " bytes)",
					  i, e, size);
			goto fail;
		}
	}
	*out = &v->base;
	return 0;
fail:
	vdi_close(&v->base);
	return r;
}
