/*
 * store/format_vmdk.c: a reader of single-file VMDK images, written from VMware's "Virtual
 * Disk Format 5.0" specification: monolithicSparse (a hosted sparse extent with its
 * descriptor embedded, grain directory and grain tables) and streamOptimized (deflate
 * compressed grains behind markers, the grain directory possibly in a footer at the end).
 *
 * Everything else (descriptor files with separate extents, flat and split disks, ESX
 * variants, deltas with a parent) is refused with the createType it names. Offsets from the
 * file are checked before use: tables and grains lie inside the file and not in the header,
 * the descriptor, the grain directories or a grain table.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "common/error.h"
#include "store/format_internal.h"

#define SECTOR		  UINT64_C(512)
#define VMDK_MAGIC	  0x564d444bu /* "KDMV" little-endian */
#define GD_AT_END	  UINT64_MAX
#define GTES_PER_GT	  512u
#define GT_BYTES	  (GTES_PER_GT * 4u)
#define MAX_GRAIN_SECTORS 4096u /* 2 MiB */

#define FLAG_NL_DETECT	  (1u << 0)
#define FLAG_REDUNDANT_GT (1u << 1)
#define FLAG_ZERO_GRAIN	  (1u << 2)
#define FLAG_COMPRESSED	  (1u << 16)
#define FLAG_MARKERS	  (1u << 17)

#define COMPRESS_DEFLATE 1u

#define MARKER_EOS    0u
#define MARKER_FOOTER 3u

#define GTE_ZERO	   1u /* with FLAG_ZERO_GRAIN: a grain that reads as zeros */
#define GRAIN_MARKER_BYTES 12u
#define DESCRIPTOR_MAX	   (64u << 10)
#define TEXT_MAX	   64

typedef struct {
	uint32_t version;
	uint32_t flags;
	uint64_t capacity; /* sectors */
	uint64_t grain;	   /* sectors */
	uint64_t desc_sector, desc_sectors;
	uint32_t gtes_per_gt;
	uint64_t rgd_sector, gd_sector;
	uint16_t compress;
} vmdk_header;

typedef struct {
	char create_type[TEXT_MAX];
	char parent[TEXT_MAX];
	bool has_create_type, has_parent;
	unsigned extents;
	char extent_type[TEXT_MAX];
	char extent_file[TEXT_MAX];
	uint64_t extent_sectors;
} vmdk_descriptor;

typedef struct {
	ims_format_reader base;
	uint64_t grain_bytes;
	uint64_t gt_range; /* guest bytes a grain table covers */
	uint32_t *gd;
	uint64_t gd_entries;
	uint64_t gd_off, gd_bytes, rgd_off, rgd_bytes, desc_off, desc_bytes;
	ims_format__offsets gts; /* grain tables, sorted */
	ims_format__cache cache;
	bool compressed, markers, zero_grain;

	uint8_t *cbuf; /* a compressed grain */
	size_t cbuf_bytes;
	uint8_t *dbuf; /* the last grain decompressed */
	uint64_t dkey; /* its GTE, 0 for none */
	z_stream z;
	bool z_ready;
	int z_bits;
} vmdk;

/* ---------------------------------------------------------------------------------------- */
/* lookup */

/* What of the metadata [off, off + len) overlaps, NULL if nothing. */
static const char *metadata_at(const vmdk *v, uint64_t off, uint64_t len)
{
	if (ims_format__overlap(off, len, 0, SECTOR))
		return "the header";
	if (ims_format__overlap(off, len, v->desc_off, v->desc_bytes))
		return "the descriptor";
	if (ims_format__overlap(off, len, v->gd_off, v->gd_bytes))
		return "the grain directory";
	if (ims_format__overlap(off, len, v->rgd_off, v->rgd_bytes))
		return "the redundant grain directory";
	if (ims_format__offsets_any_in(&v->gts, off > GT_BYTES - 1 ? off - (GT_BYTES - 1) : 0,
				       off + len - 1))
		return "a grain table";
	return NULL;
}

static int check_grain(const vmdk *v, uint64_t guest, uint64_t host, uint64_t len)
{
	const char *what;

	if (host >= v->base.src.size)
		return ims_error_set(-EINVAL,
				     "vmdk: the grain of guest offset %" PRIu64 " at host "
				     "offset 0x%" PRIx64 " lies past the end of the file (%" PRIu64
				     " bytes)",
				     guest, host, v->base.src.size);
	what = metadata_at(v, host, len);
	if (what)
		return ims_error_set(-EINVAL,
				     "vmdk: the grain of guest offset %" PRIu64 " at host "
				     "offset 0x%" PRIx64 " lies in %s",
				     guest, host, what);
	return 0;
}

static int locate(ims_format_reader *base, uint64_t off, ims_format__loc *out)
{
	vmdk *v = (vmdk *)base;
	uint64_t gdi = off / v->gt_range, in_grain = off & (v->grain_bytes - 1), host;
	size_t gti = (size_t)((off % v->gt_range) / v->grain_bytes);
	const uint8_t *t;
	uint32_t gte;
	int r;

	memset(out, 0, sizeof(*out));
	if (!v->gd[gdi]) {
		out->type = IMS_FORMAT__ZERO;
		out->len = (gdi + 1) * v->gt_range - off;
		out->no_table = true;
		return 0;
	}
	r = ims_format__cache_get(&v->cache, &v->base.src, v->gd[gdi] * SECTOR, "vmdk: grain table",
				  &t);
	if (r < 0)
		return r;
	gte = ims_format__le32(t + gti * 4);
	out->len = v->grain_bytes - in_grain;
	if (gte == 0 || (gte == GTE_ZERO && v->zero_grain)) {
		out->type = IMS_FORMAT__ZERO;
		return 0;
	}
	host = gte * SECTOR;
	/* the size of a compressed grain is checked when it is read */
	r = check_grain(v, off, host, v->compressed ? GRAIN_MARKER_BYTES : v->grain_bytes);
	if (r < 0)
		return r;
	if (v->compressed) {
		out->type = IMS_FORMAT__COMPRESSED;
		out->key = host;
	} else {
		out->type = IMS_FORMAT__DATA;
		out->host = host + in_grain;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* compressed grains */

static int inflate_grain(vmdk *v, size_t in_len)
{
	/* zlib streams (what VMware and QEMU write) start with a checked header; else raw */
	int bits = in_len >= 2 && (v->cbuf[0] & 0x0f) == 8 &&
				   ((unsigned)v->cbuf[0] << 8 | v->cbuf[1]) % 31 == 0
			   ? 15
			   : -15;
	int ret;

	if (v->z_ready && v->z_bits != bits) {
		inflateEnd(&v->z);
		v->z_ready = false;
	}
	if (!v->z_ready) {
		memset(&v->z, 0, sizeof(v->z));
		if (inflateInit2(&v->z, bits) != Z_OK)
			return ims_error_set(-ENOMEM, "vmdk: cannot set up zlib");
		v->z_ready = true;
		v->z_bits = bits;
	} else if (inflateReset(&v->z) != Z_OK) {
		return ims_error_set(-EIO, "vmdk: cannot reset zlib");
	}
	v->z.next_in = v->cbuf;
	v->z.avail_in = (uInt)in_len;
	v->z.next_out = v->dbuf;
	v->z.avail_out = (uInt)v->grain_bytes;
	ret = inflate(&v->z, Z_FINISH);
	if (ret != Z_STREAM_END && !(ret == Z_BUF_ERROR && v->z.avail_out == 0))
		return -EINVAL;
	/* a last grain may hold only the bytes up to the capacity */
	memset(v->dbuf + v->z.total_out, 0, (size_t)v->grain_bytes - v->z.total_out);
	return 0;
}

static int decompress(vmdk *v, uint64_t guest, uint64_t host)
{
	uint64_t size = v->base.src.size, data = host, len;
	uint8_t m[GRAIN_MARKER_BYTES];
	const char *what;
	size_t got;
	int r;

	if (v->dkey == host)
		return 0;
	v->dkey = 0;
	if (!v->cbuf) {
		/* deflate output stays below this for grain-sized input */
		v->cbuf_bytes = (size_t)(2 * v->grain_bytes + 1024);
		v->cbuf = malloc(v->cbuf_bytes);
		v->dbuf = malloc((size_t)v->grain_bytes);
		if (!v->cbuf || !v->dbuf)
			return ims_error_set(-ENOMEM, "vmdk: out of memory for a compressed grain");
	}
	if (v->markers) {
		r = ims_format__pread_exact(&v->base.src, m, sizeof(m), host, "vmdk: grain marker");
		if (r < 0)
			return r;
		len = ims_format__le32(m + 8);
		data = host + GRAIN_MARKER_BYTES;
		if (len == 0 || len > v->cbuf_bytes)
			return ims_error_set(-EINVAL,
					     "vmdk: compressed grain of guest offset %" PRIu64
					     " at host offset 0x%" PRIx64
					     " has a bad size %" PRIu64,
					     guest, host, len);
		if (!ims_format__in_file(data, len, size))
			return ims_error_set(-EINVAL,
					     "vmdk: compressed grain of guest offset %" PRIu64
					     " at host offset 0x%" PRIx64 " (%" PRIu64
					     " bytes) passes "
					     "the end of the file (%" PRIu64 " bytes)",
					     guest, host, len, size);
		what = metadata_at(v, host, GRAIN_MARKER_BYTES + len);
		if (what)
			return ims_error_set(-EINVAL,
					     "vmdk: compressed grain of guest offset %" PRIu64
					     " at host offset 0x%" PRIx64 " runs into %s",
					     guest, host, what);
	} else {
		/* no marker says the length: take what may hold it, the stream says where it ends
		 */
		len = v->cbuf_bytes;
	}
	r = ims_format__pread(&v->base.src, v->cbuf, (size_t)len, data, &got);
	if (r < 0)
		return r;
	r = inflate_grain(v, got);
	if (r == -EINVAL)
		return ims_error_set(-EINVAL,
				     "vmdk: compressed grain of guest offset %" PRIu64
				     " at host offset 0x%" PRIx64
				     " does not inflate to at most %" PRIu64 " bytes",
				     guest, host, v->grain_bytes);
	if (r < 0)
		return r;
	v->dkey = host;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* ops */

static bool has_gt(const ims_format_reader *base, uint64_t i)
{
	return ((const vmdk *)base)->gd[i] != 0;
}

static int decompressed(ims_format_reader *base, uint64_t guest, uint64_t host,
			const uint8_t **unit, uint64_t *unit_bytes)
{
	vmdk *v = (vmdk *)base;
	int r = decompress(v, guest, host);
	*unit = v->dbuf;
	*unit_bytes = v->grain_bytes;
	return r;
}

static const ims_format__sparse_ops vmdk_sparse = {
	.locate = locate,
	.decompress = decompressed,
	.has_table = has_gt,
};

static void vmdk_close(ims_format_reader *base)
{
	vmdk *v = (vmdk *)base;

	ims_format__cache_free(&v->cache);
	free(v->gd);
	free(v->gts.v);
	free(v->cbuf);
	free(v->dbuf);
	if (v->z_ready)
		inflateEnd(&v->z);
	free(v);
}

static const ims_format__ops vmdk_ops = {
	.map = ims_format__sparse_map,
	.read = ims_format__sparse_read,
	.close = vmdk_close,
};

/* ---------------------------------------------------------------------------------------- */
/* the descriptor */

/* Copy a value, without its quotes, printable, cut to the buffer. */
static void copy_value(char *dst, const char *s, size_t len)
{
	size_t n = 0;

	while (len && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
		len--;
	if (len >= 2 && s[0] == '"' && s[len - 1] == '"')
		s++, len -= 2;
	for (size_t i = 0; i < len && n + 1 < TEXT_MAX; i++)
		dst[n++] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'' ? s[i] : '?';
	dst[n] = '\0';
}

static bool starts_with(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	return len >= n && memcmp(s, prefix, n) == 0;
}

/* An extent line: ACCESS SECTORS TYPE ["FILE" [OFFSET]]. */
static void parse_extent(vmdk_descriptor *d, const char *s, size_t len)
{
	const char *end = s + len, *tok;
	uint64_t sectors = 0;

	if (++d->extents > 1)
		return;
	while (s < end && *s != ' ' && *s != '\t')
		s++;
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	for (; s < end && *s >= '0' && *s <= '9'; s++)
		sectors = sectors > (UINT64_MAX - 9) / 10 ? UINT64_MAX
							  : sectors * 10 + (uint64_t)(*s - '0');
	d->extent_sectors = sectors;
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	for (tok = s; s < end && *s != ' ' && *s != '\t'; s++)
		;
	copy_value(d->extent_type, tok, (size_t)(s - tok));
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	if (s < end && *s == '"') {
		for (tok = ++s; s < end && *s != '"'; s++)
			;
		copy_value(d->extent_file, tok, (size_t)(s - tok));
	}
}

static void parse_descriptor(vmdk_descriptor *d, const char *text, size_t len)
{
	const char *p = text, *end = text + len;

	memset(d, 0, sizeof(*d));
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p)), *eq;
		size_t n;

		if (!eol)
			eol = end;
		while (p < eol && (*p == ' ' || *p == '\t'))
			p++;
		n = (size_t)(eol - p);
		if (!n || *p == '#') {
			p = eol + 1;
			continue;
		}
		if (starts_with(p, n, "RW ") || starts_with(p, n, "RDONLY ") ||
		    starts_with(p, n, "NOACCESS ")) {
			parse_extent(d, p, n);
		} else if ((eq = memchr(p, '=', n)) != NULL) {
			size_t klen = (size_t)(eq - p);
			char key[TEXT_MAX], value[TEXT_MAX];

			copy_value(key, p, klen);
			copy_value(value, eq + 1, (size_t)(eol - eq - 1));
			if (strcmp(key, "createType") == 0) {
				strcpy(d->create_type, value);
				d->has_create_type = true;
			} else if (strcmp(key, "parentFileNameHint") == 0 && value[0]) {
				strcpy(d->parent, value);
				d->has_parent = true;
			} else if (strcmp(key, "parentCID") == 0 &&
				   strcmp(value, "ffffffff") != 0 &&
				   strcmp(value, "FFFFFFFF") != 0) {
				d->has_parent = true;
			}
		}
		p = eol + 1;
	}
}

static int read_descriptor(const ims_source *src, uint64_t off, uint64_t len, vmdk_descriptor *d)
{
	char *text;
	size_t got;
	int r;

	/* a descriptor is a few hundred bytes of text: what passes 64 KiB is not looked at */
	if (len > DESCRIPTOR_MAX)
		len = DESCRIPTOR_MAX;
	text = malloc((size_t)len + 1);
	if (!text)
		return ims_error_set(-ENOMEM, "vmdk: out of memory for the descriptor");
	r = ims_format__pread(src, text, (size_t)len, off, &got);
	if (r == 0) {
		/* the text ends at the first NUL, the padding of its sectors */
		text[got] = '\0';
		parse_descriptor(d, text, strlen(text));
	}
	free(text);
	return r;
}

static bool supported_type(const char *t)
{
	return strcmp(t, "monolithicSparse") == 0 || strcmp(t, "streamOptimized") == 0;
}

static int check_create_type(const vmdk_descriptor *d)
{
	if (!d->has_create_type)
		return ims_error_set(-EINVAL, "vmdk: the descriptor has no createType");
	if (!supported_type(d->create_type))
		return ims_error_set(-ENOTSUP,
				     "vmdk: createType '%s' is not supported (imgstore "
				     "reads monolithicSparse and streamOptimized)",
				     d->create_type);
	return 0;
}

/* A descriptor file alone: its extents are other files, which a single stream cannot hold. */
static int refuse_descriptor_file(const ims_source *src)
{
	vmdk_descriptor d;
	int r = read_descriptor(src, 0, src->size, &d);

	if (r < 0)
		return r;
	r = check_create_type(&d);
	if (r < 0)
		return r;
	return ims_error_set(-ENOTSUP,
			     "vmdk: this is a descriptor file (createType '%s') whose "
			     "data is in '%s'; import that file instead",
			     d.create_type, d.extent_file);
}

/* ---------------------------------------------------------------------------------------- */
/* open */

static void parse_header(vmdk_header *h, const uint8_t *p)
{
	h->version = ims_format__le32(p + 4);
	h->flags = ims_format__le32(p + 8);
	h->capacity = ims_format__le64(p + 12);
	h->grain = ims_format__le64(p + 20);
	h->desc_sector = ims_format__le64(p + 28);
	h->desc_sectors = ims_format__le64(p + 36);
	h->gtes_per_gt = ims_format__le32(p + 44);
	h->rgd_sector = ims_format__le64(p + 48);
	h->gd_sector = ims_format__le64(p + 56);
	h->compress = ims_format__le16(p + 77);
}

static int check_sparse_header(const vmdk_header *h, const uint8_t *raw)
{
	if (h->version < 1 || h->version > 3)
		return ims_error_set(-ENOTSUP,
				     "vmdk: sparse extent version %" PRIu32 " is not "
				     "supported (1 to 3 are)",
				     h->version);
	if ((h->flags & FLAG_NL_DETECT) &&
	    (raw[73] != '\n' || raw[74] != ' ' || raw[75] != '\r' || raw[76] != '\n'))
		return ims_error_set(-EINVAL, "vmdk: the header's end-of-line test characters are "
					      "damaged (was the file transferred as text?)");
	if (h->grain < 1 || h->grain > MAX_GRAIN_SECTORS || (h->grain & (h->grain - 1)))
		return ims_error_set(-EINVAL,
				     "vmdk: grain size of %" PRIu64 " sectors is not a power "
				     "of 2 from 1 to %u",
				     h->grain, MAX_GRAIN_SECTORS);
	if (h->gtes_per_gt != GTES_PER_GT)
		return ims_error_set(-EINVAL,
				     "vmdk: %" PRIu32 " entries per grain table (must be "
				     "%u)",
				     h->gtes_per_gt, GTES_PER_GT);
	if (h->capacity > UINT64_MAX / SECTOR)
		return ims_error_set(-EINVAL, "vmdk: capacity of %" PRIu64 " sectors overflows",
				     h->capacity);
	if ((h->flags & FLAG_COMPRESSED) && h->compress != COMPRESS_DEFLATE)
		return ims_error_set(-ENOTSUP,
				     "vmdk: compression algorithm %u is not supported "
				     "(1, deflate, is)",
				     h->compress);
	return 0;
}

/* The footer of a stream-optimized image: a footer marker, a header, an end-of-stream one. */
static int read_footer(const ims_source *src, vmdk_header *h)
{
	uint64_t end = src->size & ~(SECTOR - 1);
	uint8_t f[3 * SECTOR];
	int r;

	if (end < 4 * SECTOR)
		return ims_error_set(-EINVAL,
				     "vmdk: the grain directory is at the end but the file "
				     "is too short for a footer");
	r = ims_format__pread_exact(src, f, sizeof(f), end - sizeof(f), "vmdk: footer");
	if (r < 0)
		return r;
	if (ims_format__le32(f + 8) != 0 || ims_format__le32(f + 12) != MARKER_FOOTER ||
	    ims_format__le32(f + SECTOR) != VMDK_MAGIC || ims_format__le64(f + 2 * SECTOR) != 0 ||
	    ims_format__le32(f + 2 * SECTOR + 8) != 0 ||
	    ims_format__le32(f + 2 * SECTOR + 12) != MARKER_EOS)
		return ims_error_set(-EINVAL,
				     "vmdk: the grain directory is at the end but the file "
				     "ends without a valid footer");
	parse_header(h, f + SECTOR);
	r = check_sparse_header(h, f + SECTOR);
	if (r < 0)
		return r;
	if (h->gd_sector == GD_AT_END)
		return ims_error_set(-EINVAL,
				     "vmdk: the footer puts the grain directory at the end "
				     "again");
	return 0;
}

static int check_descriptor(const vmdk_descriptor *d, const vmdk_header *h)
{
	int r = check_create_type(d);

	if (r < 0)
		return r;
	if (d->has_parent) {
		if (d->parent[0])
			return ims_error_set(-ENOTSUP,
					     "vmdk: the image is a delta of parent '%s'; "
					     "imgstore imports standalone images only",
					     d->parent);
		return ims_error_set(-ENOTSUP, "vmdk: the image is a delta of a parent; imgstore "
					       "imports standalone images only");
	}
	if (d->extents == 0)
		return ims_error_set(-EINVAL, "vmdk: the descriptor lists no extent");
	if (d->extents > 1)
		return ims_error_set(-ENOTSUP,
				     "vmdk: the descriptor lists %u extents; imgstore reads "
				     "single-extent images only",
				     d->extents);
	if (strcmp(d->extent_type, "SPARSE") != 0)
		return ims_error_set(-ENOTSUP,
				     "vmdk: extent type '%s' in a %s image is not supported",
				     d->extent_type, d->create_type);
	if (d->extent_sectors > h->capacity)
		return ims_error_set(-EINVAL,
				     "vmdk: the descriptor's extent of %" PRIu64 " sectors "
				     "exceeds the capacity of %" PRIu64 " sectors",
				     d->extent_sectors, h->capacity);
	return 0;
}

/* A range of sectors from the header as bytes, if it lies in the file. */
static bool sectors_in_file(uint64_t sector, uint64_t count, uint64_t size, uint64_t *off,
			    uint64_t *len)
{
	if (sector > UINT64_MAX / SECTOR || count > UINT64_MAX / SECTOR)
		return false;
	*off = sector * SECTOR;
	*len = count * SECTOR;
	return ims_format__in_file(*off, *len, size);
}

static int load_gd(vmdk *v)
{
	uint64_t i, size = v->base.src.size;
	const char *what;
	int r;

	v->gd = malloc(v->gd_entries ? (size_t)v->gd_entries * 4 : 1);
	v->gts.v = malloc(v->gd_entries ? (size_t)v->gd_entries * 8 : 1);
	if (!v->gd || !v->gts.v)
		return ims_error_set(
			-ENOMEM, "vmdk: out of memory for a grain directory of %" PRIu64 " entries",
			v->gd_entries);
	r = ims_format__pread_exact(&v->base.src, v->gd, (size_t)v->gd_entries * 4, v->gd_off,
				    "vmdk: grain directory");
	if (r < 0)
		return r;
	for (i = 0; i < v->gd_entries; i++) {
		uint64_t off;

		v->gd[i] = ims_format__le32((const uint8_t *)&v->gd[i]);
		if (!v->gd[i])
			continue;
		off = v->gd[i] * SECTOR;
		if (!ims_format__in_file(off, GT_BYTES, size))
			return ims_error_set(-EINVAL,
					     "vmdk: grain directory entry %" PRIu64 " puts a "
					     "grain table at 0x%" PRIx64
					     ", past the end of the file (%" PRIu64 " bytes)",
					     i, off, size);
		what = metadata_at(v, off, GT_BYTES);
		if (what)
			return ims_error_set(-EINVAL,
					     "vmdk: grain directory entry %" PRIu64 " puts a "
					     "grain table at 0x%" PRIx64 ", into %s",
					     i, off, what);
	}
	/* only now: the tables may share a sector with each other, not with the rest */
	for (i = 0; i < v->gd_entries; i++)
		if (v->gd[i])
			v->gts.v[v->gts.n++] = v->gd[i] * SECTOR;
	ims_format__offsets_sort(&v->gts);
	return 0;
}

/* The first sector: a sparse extent's header, or one of the kinds this reader refuses. */
static int read_header(const ims_source *src, uint8_t raw[SECTOR], vmdk_header *h)
{
	size_t got;
	int r = ims_format__pread(src, raw, SECTOR, 0, &got);

	if (r < 0)
		return r;
	if (got >= 4 && memcmp(raw, "COWD", 4) == 0)
		return ims_error_set(-ENOTSUP, "vmdk: ESX sparse (COWD) extents are not supported");
	if (got >= sizeof(IMS_FORMAT__VMDK_DESCRIPTOR_MAGIC) - 1 &&
	    memcmp(raw, IMS_FORMAT__VMDK_DESCRIPTOR_MAGIC,
		   sizeof(IMS_FORMAT__VMDK_DESCRIPTOR_MAGIC) - 1) == 0)
		return refuse_descriptor_file(src);
	if (got < 4 || ims_format__le32(raw) != VMDK_MAGIC)
		return ims_error_set(-EINVAL, "vmdk: bad magic");
	if (got < SECTOR)
		return ims_error_set(-EINVAL,
				     "vmdk: truncated header (%zu bytes, need %" PRIu64 ")", got,
				     SECTOR);
	parse_header(h, raw);
	return check_sparse_header(h, raw);
}

/* The embedded descriptor: what kind of disk this says it is. */
static int load_descriptor(vmdk *v, const vmdk_header *h, vmdk_descriptor *d)
{
	uint64_t size = v->base.src.size;
	int r;

	if (!h->desc_sector)
		return ims_error_set(
			-ENOTSUP, "vmdk: the sparse extent has no embedded descriptor "
				  "(an extent of a multi-file disk?); imgstore reads single-file "
				  "monolithicSparse and streamOptimized images");
	if (!sectors_in_file(h->desc_sector, h->desc_sectors, size, &v->desc_off, &v->desc_bytes))
		return ims_error_set(-EINVAL,
				     "vmdk: the descriptor (sector %" PRIu64 ", %" PRIu64
				     " sectors) passes the end of the file (%" PRIu64 " bytes)",
				     h->desc_sector, h->desc_sectors, size);
	r = read_descriptor(&v->base.src, v->desc_off, v->desc_bytes, d);
	if (r < 0)
		return r;
	return check_descriptor(d, h);
}

/* The footer of a stream, when there is one, supersedes the header. */
static int apply_footer(const ims_source *src, vmdk_header *h)
{
	vmdk_header f;
	int r;

	if (h->gd_sector != GD_AT_END)
		return 0;
	r = read_footer(src, &f);
	if (r < 0)
		return r;
	if (f.capacity != h->capacity || f.grain != h->grain)
		return ims_error_set(-EINVAL, "vmdk: the footer disagrees with the header on the "
					      "capacity or the grain size");
	*h = f;
	return 0;
}

/* The grain directory (and the redundant one): sized for the capacity, inside the file. */
static int place_gd(vmdk *v, const vmdk_header *h)
{
	uint64_t size = v->base.src.size;

	/* capacity fits 64 bits in bytes (checked), so this does not overflow */
	v->gd_entries = h->capacity / (h->grain * GTES_PER_GT) +
			(h->capacity % (h->grain * GTES_PER_GT) != 0);
	if (v->gd_entries * 4 > IMS_FORMAT__MAX_TABLE_BYTES)
		return ims_error_set(-EINVAL,
				     "vmdk: capacity of %" PRIu64 " sectors needs a grain "
				     "directory larger than 32 MiB",
				     h->capacity);
	if (!h->gd_sector || !sectors_in_file(h->gd_sector, 0, size, &v->gd_off, &v->gd_bytes) ||
	    !ims_format__in_file(v->gd_off, v->gd_entries * 4, size))
		return ims_error_set(-EINVAL,
				     "vmdk: the grain directory (sector %" PRIu64 ", %" PRIu64
				     " entries) lies outside the file (%" PRIu64 " bytes)",
				     h->gd_sector, v->gd_entries, size);
	v->gd_bytes = v->gd_entries * 4;
	if (ims_format__overlap(v->gd_off, v->gd_bytes, v->desc_off, v->desc_bytes))
		return ims_error_set(-EINVAL,
				     "vmdk: the grain directory at sector %" PRIu64 " lies in "
				     "the descriptor",
				     h->gd_sector);
	/* the redundant directory only matters as a place grains must not be */
	if ((h->flags & FLAG_REDUNDANT_GT) && h->rgd_sector &&
	    sectors_in_file(h->rgd_sector, 0, size, &v->rgd_off, &v->rgd_bytes) &&
	    ims_format__in_file(v->rgd_off, v->gd_bytes, size))
		v->rgd_bytes = v->gd_bytes;
	else
		v->rgd_off = v->rgd_bytes = 0;
	return 0;
}

int ims_format__vmdk_open(ims_format_reader **out, const ims_source *src)
{
	uint8_t raw[SECTOR];
	vmdk_header h;
	vmdk_descriptor d;
	vmdk *v = NULL;
	int r;

	r = read_header(src, raw, &h);
	if (r < 0)
		goto out;
	v = calloc(1, sizeof(*v));
	if (!v) {
		r = ims_error_set(-ENOMEM, "vmdk: out of memory for a reader");
		goto out;
	}
	ims_format__reader_init(&v->base, &vmdk_ops, IMS_FORMAT_VMDK, src);
	if ((r = load_descriptor(v, &h, &d)) < 0 || (r = apply_footer(src, &h)) < 0)
		goto out;
	v->base.virtual_size = d.extent_sectors * SECTOR;
	v->grain_bytes = h.grain * SECTOR;
	v->gt_range = v->grain_bytes * GTES_PER_GT;
	v->base.sparse = &vmdk_sparse;
	v->base.table_range = v->gt_range;
	v->compressed = h.flags & FLAG_COMPRESSED;
	v->markers = h.flags & FLAG_MARKERS;
	v->zero_grain = h.flags & FLAG_ZERO_GRAIN;
	if ((r = place_gd(v, &h)) < 0 || (r = load_gd(v)) < 0)
		goto out;
	r = ims_format__cache_init(&v->cache, 16, GT_BYTES);
	if (r < 0)
		goto out;
	*out = &v->base;
	v = NULL;
out:
	if (v)
		vmdk_close(&v->base);
	return r;
}
