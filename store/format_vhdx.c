/*
 * store/format_vhdx.c: a reader of Hyper-V VHDX images, dynamic and fixed, from Microsoft's
 * "VHDX Format Specification" (v1.00).
 *
 * The file starts with an identifier, two headers (at 64 and 128 KiB, CRC-32C checked, the
 * one with the higher sequence number is current) and a region table (at 192 KiB, a copy at
 * 256 KiB) that places the block allocation table (BAT) and the metadata region. The
 * metadata gives the block size, the disk's size and its logical sector size; the BAT one
 * 64-bit entry per payload block, with a sector bitmap entry after every "chunk ratio" of
 * them. Differencing images (a parent) and images whose log must be replayed first are
 * refused. The BAT is loaded whole (at most 32 MiB, never more than the file holds) and
 * every block it points to is checked to lie in the file, outside the metadata.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "store/format_internal.h"

#define KiB		  UINT64_C(1024)
#define MiB		  (KiB * 1024)
#define HEADER_SECTION	  MiB /* the identifier, the headers and region tables */
#define HEADER1_OFF	  (64 * KiB)
#define HEADER2_OFF	  (128 * KiB)
#define HEADER_BYTES	  (4 * KiB)
#define REGION1_OFF	  (192 * KiB)
#define REGION2_OFF	  (256 * KiB)
#define REGION_BYTES	  (64 * KiB)
#define REGION_MAX	  2047u
#define META_TABLE_BYTES  (64 * KiB)
#define META_MAX	  2047u
#define MIN_BLOCK	  MiB
#define MAX_BLOCK	  (256 * MiB)
#define MAX_DISK	  (UINT64_C(64) << 40)
#define SECTORS_PER_CHUNK (UINT64_C(1) << 23)
#define BLOCKS_PER_RANGE  256u

/* BAT entry states (the low 3 bits) */
#define BLOCK_NOT_PRESENT   0u
#define BLOCK_UNDEFINED	    1u
#define BLOCK_ZERO	    2u
#define BLOCK_UNMAPPED	    3u
#define BLOCK_UNMAPPED_V095 5u
#define BLOCK_FULLY_PRESENT 6u

/* GUIDs as the file stores them: the first three fields little-endian */
#define GUID(a, b, c, d0, d1, d2, d3, d4, d5, d6, d7)                                              \
	{                                                                                          \
		(a) & 0xff, ((a) >> 8) & 0xff, ((a) >> 16) & 0xff, ((a) >> 24) & 0xff, (b)&0xff,   \
			((b) >> 8) & 0xff, (c)&0xff, ((c) >> 8) & 0xff, d0, d1, d2, d3, d4, d5,    \
			d6, d7                                                                     \
	}

static const uint8_t guid_bat[16] =
	GUID(0x2dc27766u, 0xf623u, 0x4200u, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08);
static const uint8_t guid_metadata[16] =
	GUID(0x8b7ca206u, 0x4790u, 0x4b9au, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e);
static const uint8_t guid_file_params[16] =
	GUID(0xcaa16737u, 0xfa36u, 0x4d43u, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b);
static const uint8_t guid_disk_size[16] =
	GUID(0x2fa54224u, 0xcd1bu, 0x4876u, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8);
static const uint8_t guid_page83[16] =
	GUID(0xbeca12abu, 0xb2e6u, 0x4523u, 0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46);
static const uint8_t guid_logical_sector[16] =
	GUID(0x8141bf1du, 0xa96fu, 0x4709u, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f);
static const uint8_t guid_physical_sector[16] =
	GUID(0xcda348c7u, 0x445du, 0x4471u, 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56);
static const uint8_t guid_parent_locator[16] =
	GUID(0xa8d35f2du, 0xb30bu, 0x454du, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c);

typedef struct {
	ims_format_reader base;
	uint64_t block_bytes;
	uint64_t chunk_ratio; /* payload blocks per sector bitmap block */
	uint64_t blocks;      /* payload blocks of the disk */
	uint64_t *bat;	      /* the payload entries only, host order */
	uint64_t bat_off, bat_len, meta_off, meta_len, log_off, log_len;
} vhdx;

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
		crc_table[i] = c;
	}
}

/* CRC-32C (Castagnoli), as the headers and region tables carry it. */
static uint32_t crc32c(const uint8_t *p, size_t len)
{
	uint32_t crc = 0xffffffffu;

	pthread_once(&crc_once, crc_init);
	while (len--)
		crc = (crc >> 8) ^ crc_table[(crc ^ *p++) & 0xff];
	return ~crc;
}

/* Whether the CRC-32C at @p p + 4 covers @p len bytes at @p p (the field counted as 0). */
static bool crc_ok(uint8_t *p, size_t len)
{
	uint32_t want = ims_format__le32(p + 4), got;

	memset(p + 4, 0, 4);
	got = crc32c(p, len);
	p[4] = (uint8_t)want, p[5] = (uint8_t)(want >> 8), p[6] = (uint8_t)(want >> 16),
	p[7] = (uint8_t)(want >> 24);
	return got == want;
}

/* What of the metadata [off, off + len) overlaps, NULL if nothing. */
static const char *metadata_at(const vhdx *v, uint64_t off, uint64_t len)
{
	if (ims_format__overlap(off, len, 0, HEADER_SECTION))
		return "the header section";
	if (ims_format__overlap(off, len, v->bat_off, v->bat_len))
		return "the block allocation table";
	if (ims_format__overlap(off, len, v->meta_off, v->meta_len))
		return "the metadata region";
	if (ims_format__overlap(off, len, v->log_off, v->log_len))
		return "the log";
	return NULL;
}

static int locate(ims_format_reader *base, uint64_t off, ims_format__loc *out)
{
	vhdx *v = (vhdx *)base;
	uint64_t i = off / v->block_bytes, in_block = off % v->block_bytes, e = v->bat[i];

	memset(out, 0, sizeof(*out));
	out->len = v->block_bytes - in_block;
	if ((e & 7) != BLOCK_FULLY_PRESENT) {
		out->type = IMS_FORMAT__ZERO;
		return 0;
	}
	/* checked at open: the block lies in the file, outside the metadata */
	out->type = IMS_FORMAT__DATA;
	out->host = (e >> 20 << 20) + in_block;
	return 0;
}

static bool has_range(const ims_format_reader *base, uint64_t i)
{
	(void)base;
	(void)i;
	return true;
}

static const ims_format__sparse_ops vhdx_sparse = {
	.locate = locate,
	.decompress = NULL, /* no compressed units */
	.has_table = has_range,
};

static void vhdx_close(ims_format_reader *base)
{
	vhdx *v = (vhdx *)base;

	free(v->bat);
	free(v);
}

static const ims_format__ops vhdx_ops = {
	.map = ims_format__sparse_map,
	.read = ims_format__sparse_read,
	.close = vhdx_close,
};

/* The current header: the valid one of the two with the higher sequence number. */
static int read_headers(vhdx *v)
{
	uint8_t h[2][HEADER_BYTES];
	uint64_t seq[2];
	bool ok[2];
	int r, cur;

	for (int i = 0; i < 2; i++) {
		r = ims_format__pread_exact(&v->base.src, h[i], HEADER_BYTES,
					    i ? HEADER2_OFF : HEADER1_OFF, "vhdx: header");
		if (r < 0)
			return r;
		ok[i] = memcmp(h[i], "head", 4) == 0 && crc_ok(h[i], HEADER_BYTES) &&
			ims_format__le16(h[i] + 66) == 1;
		seq[i] = ims_format__le64(h[i] + 8);
	}
	if (!ok[0] && !ok[1])
		return ims_error_set(-EINVAL, "vhdx: neither header is valid (signature, "
					      "checksum or version 1)");
	cur = !ok[0] || (ok[1] && seq[1] > seq[0]);
	if (!ims_format__all_zero(h[cur] + 48, 16))
		return ims_error_set(-ENOTSUP,
				     "vhdx: the image has a log to replay (it was not closed "
				     "cleanly): run 'qemu-img check -r all' on it first");
	v->log_len = ims_format__le32(h[cur] + 68);
	v->log_off = ims_format__le64(h[cur] + 72);
	if (!ims_format__in_file(v->log_off, v->log_len, v->base.src.size))
		v->log_off = v->log_len = 0; /* an empty log is not read: only kept clear of */
	return 0;
}

/* The BAT and metadata regions from the region table (the copy if the first is damaged). */
static int read_regions(vhdx *v)
{
	uint8_t *t = malloc(REGION_BYTES);
	uint64_t size = v->base.src.size;
	uint32_t n;
	int r, which;

	if (!t)
		return ims_error_set(-ENOMEM, "vhdx: out of memory for the region table");
	for (which = 0; which < 2; which++) {
		r = ims_format__pread_exact(&v->base.src, t, REGION_BYTES,
					    which ? REGION2_OFF : REGION1_OFF,
					    "vhdx: region table");
		if (r < 0)
			goto out;
		if (memcmp(t, "regi", 4) == 0 && crc_ok(t, REGION_BYTES))
			break;
	}
	if (which == 2) {
		r = ims_error_set(-EINVAL, "vhdx: neither region table is valid (signature or "
					   "checksum)");
		goto out;
	}
	n = ims_format__le32(t + 8);
	if (n > REGION_MAX) {
		r = ims_error_set(-EINVAL, "vhdx: the region table has %" PRIu32 " entries", n);
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = t + 16 + 32 * i;
		uint64_t off = ims_format__le64(e + 16), len = ims_format__le32(e + 24);
		bool bat = memcmp(e, guid_bat, 16) == 0, meta = memcmp(e, guid_metadata, 16) == 0;

		if (!bat && !meta) {
			if (ims_format__le32(e + 28) & 1) {
				r = ims_error_set(-ENOTSUP,
						  "vhdx: the region table lists a required "
						  "region this reader does not know");
				goto out;
			}
			continue;
		}
		if (off < HEADER_SECTION || off % MiB || !ims_format__in_file(off, len, size)) {
			r = ims_error_set(-EINVAL,
					  "vhdx: the %s region (0x%" PRIx64 ", %" PRIu64
					  " bytes) lies outside the file (%" PRIu64
					  " bytes) or in the header section",
					  bat ? "BAT" : "metadata", off, len, size);
			goto out;
		}
		if (bat)
			v->bat_off = off, v->bat_len = len;
		else
			v->meta_off = off, v->meta_len = len;
	}
	if (!v->bat_len || !v->meta_len) {
		r = ims_error_set(-EINVAL, "vhdx: the region table lacks the %s region",
				  v->bat_len ? "metadata" : "BAT");
		goto out;
	}
	if (ims_format__overlap(v->bat_off, v->bat_len, v->meta_off, v->meta_len)) {
		r = ims_error_set(-EINVAL, "vhdx: the BAT and metadata regions overlap");
		goto out;
	}
	r = 0;
out:
	free(t);
	return r;
}

/* An item of the metadata region, of @p len bytes, into @p out; *found false if absent. */
static int meta_item(vhdx *v, const uint8_t *table, const uint8_t guid[16], void *out, uint32_t len,
		     bool *found)
{
	uint16_t n = ims_format__le16(table + 10);

	*found = false;
	for (uint16_t i = 0; i < n; i++) {
		const uint8_t *e = table + 32 + 32 * (size_t)i;
		uint64_t off = ims_format__le32(e + 16), ilen = ims_format__le32(e + 20);

		if (memcmp(e, guid, 16) != 0)
			continue;
		if (ilen < len || off < META_TABLE_BYTES ||
		    !ims_format__in_file(off, len, v->meta_len))
			return ims_error_set(-EINVAL,
					     "vhdx: a metadata item (at 0x%" PRIx64 ", %" PRIu64
					     " bytes) lies outside the metadata region or is too "
					     "short",
					     off, ilen);
		*found = true;
		return ims_format__pread_exact(&v->base.src, out, len, v->meta_off + off,
					       "vhdx: metadata item");
	}
	return 0;
}

static int read_metadata(vhdx *v, uint64_t *disk_size, uint32_t *lss)
{
	const uint8_t *known[] = {guid_file_params,    guid_disk_size,	     guid_page83,
				  guid_logical_sector, guid_physical_sector, guid_parent_locator};
	uint8_t *t = malloc(META_TABLE_BYTES), params[8], size8[8], lss4[4];
	bool f1, f2, f3;
	uint16_t n;
	int r;

	if (!t)
		return ims_error_set(-ENOMEM, "vhdx: out of memory for the metadata table");
	if (v->meta_len < META_TABLE_BYTES) {
		r = ims_error_set(-EINVAL, "vhdx: the metadata region is too small");
		goto out;
	}
	r = ims_format__pread_exact(&v->base.src, t, META_TABLE_BYTES, v->meta_off,
				    "vhdx: metadata table");
	if (r < 0)
		goto out;
	n = ims_format__le16(t + 10);
	if (memcmp(t, "metadata", 8) != 0 || n > META_MAX) {
		r = ims_error_set(-EINVAL, "vhdx: the metadata table is not valid (signature or "
					   "entry count)");
		goto out;
	}
	for (uint16_t i = 0; i < n; i++) {
		const uint8_t *e = t + 32 + 32 * (size_t)i;
		bool is_known = false;

		for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			is_known |= memcmp(e, known[k], 16) == 0;
		if (!is_known && (ims_format__le32(e + 24) & 4)) {
			r = ims_error_set(-ENOTSUP, "vhdx: the metadata lists a required item this "
						    "reader does not know");
			goto out;
		}
	}
	if ((r = meta_item(v, t, guid_file_params, params, 8, &f1)) < 0 ||
	    (r = meta_item(v, t, guid_disk_size, size8, 8, &f2)) < 0 ||
	    (r = meta_item(v, t, guid_logical_sector, lss4, 4, &f3)) < 0)
		goto out;
	if (!f1 || !f2 || !f3) {
		r = ims_error_set(-EINVAL, "vhdx: the metadata lacks the %s",
				  !f1	? "file parameters"
				  : !f2 ? "virtual disk size"
					: "logical sector size");
		goto out;
	}
	if (ims_format__le32(params + 4) & 2) {
		r = ims_error_set(-ENOTSUP, "vhdx: the image is a differencing disk of a parent; "
					    "imgstore imports standalone images only");
		goto out;
	}
	v->block_bytes = ims_format__le32(params);
	*disk_size = ims_format__le64(size8);
	*lss = ims_format__le32(lss4);
	r = 0;
out:
	free(t);
	return r;
}

static int load_bat(vhdx *v)
{
	uint64_t size = v->base.src.size, entries, i;
	uint8_t *raw;
	const char *what;
	int r = 0;

	/* a sector bitmap entry after every chunk ratio of payload entries */
	entries = v->blocks + (v->blocks - 1) / v->chunk_ratio;
	if (entries * 8 > IMS_FORMAT__MAX_TABLE_BYTES)
		return ims_error_set(-EINVAL,
				     "vhdx: the block allocation table is larger than 32 MiB");
	if (entries * 8 > v->bat_len)
		return ims_error_set(-EINVAL,
				     "vhdx: the BAT region (%" PRIu64
				     " bytes) is too small for %" PRIu64 " entries",
				     v->bat_len, entries);
	raw = malloc((size_t)entries * 8);
	v->bat = malloc((size_t)v->blocks * 8);
	if (!raw || !v->bat) {
		free(raw);
		return ims_error_set(-ENOMEM, "vhdx: out of memory for a block allocation table");
	}
	r = ims_format__pread_exact(&v->base.src, raw, (size_t)entries * 8, v->bat_off,
				    "vhdx: block allocation table");
	if (r < 0)
		goto out;
	for (i = 0; i < v->blocks; i++) {
		uint64_t e = ims_format__le64(raw + 8 * (i + i / v->chunk_ratio));
		uint64_t state = e & 7, host = e >> 20 << 20;
		/* the part of the block inside the disk */
		uint64_t len = v->base.virtual_size - i * v->block_bytes < v->block_bytes
				       ? v->base.virtual_size - i * v->block_bytes
				       : v->block_bytes;

		v->bat[i] = e;
		if (state == BLOCK_NOT_PRESENT || state == BLOCK_UNDEFINED || state == BLOCK_ZERO ||
		    state == BLOCK_UNMAPPED || state == BLOCK_UNMAPPED_V095)
			continue;
		if (state != BLOCK_FULLY_PRESENT) {
			r = ims_error_set(state == 7 ? -ENOTSUP : -EINVAL,
					  "vhdx: block %" PRIu64 " has state %" PRIu64
					  " (imgstore reads not present, zero, unmapped and fully "
					  "present blocks)",
					  i, state);
			goto out;
		}
		/* whole blocks, as QEMU wants them (the last one up to the disk's end): a block
		 * cut short is a truncated image */
		if (!ims_format__in_file(host, len, size)) {
			r = ims_error_set(
				-EINVAL,
				"vhdx: BAT entry of block %" PRIu64 " puts it at 0x%" PRIx64
				", past the end of the file (%" PRIu64 " bytes; truncated?)",
				i, host, size);
			goto out;
		}
		what = metadata_at(v, host, len);
		if (what) {
			r = ims_error_set(-EINVAL,
					  "vhdx: BAT entry of block %" PRIu64
					  " puts it at 0x%" PRIx64 ", into %s",
					  i, host, what);
			goto out;
		}
	}
out:
	free(raw);
	return r;
}

int ims_format__vhdx_open(ims_format_reader **out, const ims_source *src)
{
	uint8_t id[8];
	uint64_t disk_size = 0;
	uint32_t lss = 0;
	vhdx *v;
	int r;

	r = ims_format__pread_exact(src, id, sizeof(id), 0, "vhdx: file identifier");
	if (r < 0)
		return r;
	if (memcmp(id, "vhdxfile", 8) != 0)
		return ims_error_set(-EINVAL, "vhdx: bad magic");
	v = calloc(1, sizeof(*v));
	if (!v)
		return ims_error_set(-ENOMEM, "vhdx: out of memory for a reader");
	ims_format__reader_init(&v->base, &vhdx_ops, IMS_FORMAT_VHDX, src);
	if ((r = read_headers(v)) < 0 || (r = read_regions(v)) < 0 ||
	    (r = read_metadata(v, &disk_size, &lss)) < 0)
		goto fail;
	if (v->block_bytes < MIN_BLOCK || v->block_bytes > MAX_BLOCK ||
	    (v->block_bytes & (v->block_bytes - 1))) {
		r = ims_error_set(-EINVAL,
				  "vhdx: block size %" PRIu64
				  " is not a power of 2 from 1 MiB to 256 MiB",
				  v->block_bytes);
		goto fail;
	}
	if (lss != 512 && lss != 4096) {
		r = ims_error_set(-EINVAL,
				  "vhdx: logical sector size %" PRIu32 " is not 512 or 4096", lss);
		goto fail;
	}
	/* QEMU sees the disk in whole 512-byte sectors */
	disk_size &= ~UINT64_C(511);
	if (!disk_size || disk_size > MAX_DISK) {
		r = ims_error_set(
			-EINVAL, "vhdx: a disk of %" PRIu64 " bytes is empty or larger than 64 TiB",
			disk_size);
		goto fail;
	}
	v->base.virtual_size = disk_size;
	v->base.sparse = &vhdx_sparse;
	v->base.table_range = v->block_bytes * BLOCKS_PER_RANGE;
	v->chunk_ratio = SECTORS_PER_CHUNK * lss / v->block_bytes;
	v->blocks = (disk_size + v->block_bytes - 1) / v->block_bytes;
	r = load_bat(v);
	if (r < 0)
		goto fail;
	*out = &v->base;
	return 0;
fail:
	vhdx_close(&v->base);
	return r;
}
