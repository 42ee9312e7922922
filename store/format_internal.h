/*
 * store/format_internal.h: what the files of the format module share (ims_format only).
 *
 * A reader is a struct that starts with an ims_format_reader; format.c checks the arguments
 * and the range of every call before it reaches a format's ops, so that the ops may assume
 * offset < virtual size and offset + len <= virtual size.
 */
#ifndef IMS_STORE_FORMAT_INTERNAL_H
#define IMS_STORE_FORMAT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "store/format.h"

/* The most bytes of a table the readers load whole (qcow2 L1, vmdk GD, vdi block map, vhdx
 * and vpc BAT), as qemu caps L1. */
#define IMS_FORMAT__MAX_TABLE_BYTES (32u << 20)

typedef struct {
	/* @pre offset < virtual size; out->offset is set by the caller. */
	int (*map)(ims_format_reader *r, uint64_t offset, ims_extent *out);
	/* @pre len > 0 and [offset, offset + len) within the virtual size. */
	int (*read)(ims_format_reader *r, uint64_t offset, uint8_t *buf, size_t len);
	void (*close)(ims_format_reader *r);
} ims_format__ops;

/*
 * What the readers of sparse formats (qcow2, vmdk) share: two levels of tables (qcow2's L1
 * and L2 tables, vmdk's grain directory and grain tables) put each guest offset in a unit
 * (cluster, subcluster, grain) that reads as zeros, as data at a host offset, or from a
 * compressed unit. Each second-level table covers the same number of guest bytes. The
 * readers of one table loaded whole (vdi, vhdx, vpc) use it too, with every "table" there
 * (has_table always true), ranges of blocks as table_range and no compressed units
 * (decompress NULL).
 */
typedef enum {
	IMS_FORMAT__ZERO,
	IMS_FORMAT__DATA,
	IMS_FORMAT__COMPRESSED,
} ims_format__unit;

typedef struct {
	ims_format__unit type;
	uint64_t len;  /* bytes from the guest offset to the end of the unit */
	uint64_t host; /* DATA: the host offset of the guest offset */
	uint64_t key;  /* COMPRESSED: the unit's name for decompress() (qcow2: its L2 entry;
			  vmdk: its grain's host offset) */
	bool no_table; /* ZERO for want of a second-level table: len runs to its range's end */
} ims_format__loc;

typedef struct ims_format__sparse_ops {
	int (*locate)(ims_format_reader *r, uint64_t off, ims_format__loc *out);
	/* The decompressed unit @p key that guest offset @p guest lies in: @p *unit, of
	 * @p *unit_bytes (a power of two), valid until the next call. */
	int (*decompress)(ims_format_reader *r, uint64_t guest, uint64_t key, const uint8_t **unit,
			  uint64_t *unit_bytes);
	/* Whether second-level table @p i (of the guest range [i * range, (i + 1) * range)) is
	 * there. */
	bool (*has_table)(const ims_format_reader *r, uint64_t i);
} ims_format__sparse_ops;

struct ims_format_reader {
	const ims_format__ops *ops;
	ims_format_kind kind;
	ims_source src; /* a copy; its ctx must outlive the reader */
	uint64_t virtual_size;
	/* sparse readers (qcow2, vmdk, vdi, vhdx, vpc): their lookups, and the guest bytes
	 * that one second-level table covers (for the single-table formats, a range of
	 * blocks: the unit of the map's walk); NULL and 0 for raw */
	const ims_format__sparse_ops *sparse;
	uint64_t table_range;
};

/* Set up the base of a new reader: its ops, its kind and a copy of its source. */
static inline void ims_format__reader_init(ims_format_reader *r, const ims_format__ops *ops,
					   ims_format_kind kind, const ims_source *src)
{
	r->ops = ops;
	r->kind = kind;
	r->src = *src;
}

int ims_format__raw_open(ims_format_reader **out, const ims_source *src);
int ims_format__qcow2_open(ims_format_reader **out, const ims_source *src,
			   const ims_format_secret *secret);
int ims_format__vmdk_open(ims_format_reader **out, const ims_source *src);
int ims_format__vdi_open(ims_format_reader **out, const ims_source *src);
int ims_format__vhdx_open(ims_format_reader **out, const ims_source *src);
int ims_format__vpc_open(ims_format_reader **out, const ims_source *src);

/* The leading bytes that ims_format_detect() looks at. */
#define IMS_FORMAT__VMDK_DESCRIPTOR_MAGIC "# Disk DescriptorFile"

/*
 * Read up to @p len bytes at @p off, looping over short reads; stops at the end of the
 * source. @p got is how many bytes were read. Sets the message when the source fails.
 */
int ims_format__pread(const ims_source *src, void *buf, size_t len, uint64_t off, size_t *got);

/*
 * Read exactly @p len bytes at @p off. A short read is -EINVAL with a message naming
 * @p what ("qcow2: L2 table at 0x30000 is truncated").
 */
int ims_format__pread_exact(const ims_source *src, void *buf, size_t len, uint64_t off,
			    const char *what);

/* Whether [off, off + len) lies inside a source of @p size bytes, without overflow. */
static inline bool ims_format__in_file(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/* Whether [a, a + alen) and [b, b + blen) overlap; both ranges must not wrap. */
static inline bool ims_format__overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

static inline bool ims_format__all_zero(const uint8_t *p, size_t len)
{
	for (; len && ((uintptr_t)p & 7); len--, p++)
		if (*p)
			return false;
	for (; len >= 8; len -= 8, p += 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		if (w)
			return false;
	}
	for (; len; len--, p++)
		if (*p)
			return false;
	return true;
}

/* Sorted, duplicate-free host offsets of a format's tables, to tell data from metadata. */
typedef struct {
	uint64_t *v;
	size_t n;
} ims_format__offsets;

/* Sort and deduplicate @p o in place. */
void ims_format__offsets_sort(ims_format__offsets *o);

/* Whether one of @p o lies in [lo, hi]. */
bool ims_format__offsets_any_in(const ims_format__offsets *o, uint64_t lo, uint64_t hi);

/*
 * A small cache of fixed-size tables (qcow2 L2 tables, vmdk grain tables) keyed by their
 * host offset, least recently used out. Slots are allocated on first use.
 */
typedef struct {
	uint64_t key;
	uint64_t used;
	uint8_t *data;
} ims_format__cache_slot;

typedef struct {
	ims_format__cache_slot *slots;
	size_t nslots;
	size_t table_bytes;
	size_t last; /* the slot that answered last */
	uint64_t clock;
} ims_format__cache;

int ims_format__cache_init(ims_format__cache *c, size_t nslots, size_t table_bytes);

/*
 * The table at host offset @p off, read from @p src on a miss (the caller checked that it
 * lies in the file). @p what names it in errors. The pointer is valid until the next call.
 */
int ims_format__cache_get(ims_format__cache *c, const ims_source *src, uint64_t off,
			  const char *what, const uint8_t **out);

void ims_format__cache_free(ims_format__cache *c);

/* Big- and little-endian loads and stores. */
static inline uint16_t ims_format__be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t ims_format__be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t ims_format__be64(const uint8_t *p)
{
	return (uint64_t)ims_format__be32(p) << 32 | ims_format__be32(p + 4);
}

static inline uint16_t ims_format__le16(const uint8_t *p)
{
	return (uint16_t)(p[1] << 8 | p[0]);
}

static inline uint32_t ims_format__le32(const uint8_t *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static inline uint64_t ims_format__le64(const uint8_t *p)
{
	return (uint64_t)ims_format__le32(p + 4) << 32 | ims_format__le32(p);
}

static inline void ims_format__put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void ims_format__put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void ims_format__put_be64(uint8_t *p, uint64_t v)
{
	ims_format__put_be32(p, (uint32_t)(v >> 32));
	ims_format__put_be32(p + 4, (uint32_t)v);
}

/* ims_format__ops.map of a sparse reader (base->sparse). */
static inline int ims_format__sparse_map(ims_format_reader *base, uint64_t offset, ims_extent *out)
{
	const ims_format__sparse_ops *ops = base->sparse;
	uint64_t vsize = base->virtual_size, range = base->table_range, pos, table_end;
	ims_extent_type type;
	ims_format__loc l;
	int r = ops->locate(base, offset, &l);

	if (r < 0)
		return r;
	type = l.type == IMS_FORMAT__ZERO ? IMS_EXTENT_ZERO : IMS_EXTENT_DATA;
	pos = offset + l.len;
	table_end = (offset / range + 1) * range;
	/* the rest of this second-level table, which is in the cache */
	while (!l.no_table && pos < vsize && pos < table_end) {
		ims_format__loc n;
		r = ops->locate(base, pos, &n);
		if (r < 0)
			return r;
		if ((n.type == IMS_FORMAT__ZERO) != (type == IMS_EXTENT_ZERO))
			break;
		pos += n.len;
	}
	/* zeros go on through the ranges that have no second-level table */
	if (type == IMS_EXTENT_ZERO)
		while (pos < vsize && pos % range == 0 && !ops->has_table(base, pos / range))
			pos += range;
	out->length = (pos < vsize ? pos : vsize) - offset;
	out->type = type;
	return 0;
}

/* ims_format__ops.read of a sparse reader (base->sparse). */
static inline int ims_format__sparse_read(ims_format_reader *base, uint64_t offset, uint8_t *buf,
					  size_t len)
{
	const ims_format__sparse_ops *ops = base->sparse;
	ims_format__loc l, n;
	const uint8_t *unit;
	uint64_t unit_bytes;
	int r;

	while (len) {
		uint64_t take;
		size_t got;

		r = ops->locate(base, offset, &l);
		if (r < 0)
			return r;
		take = l.len < len ? l.len : len;
		switch (l.type) {
		case IMS_FORMAT__ZERO: memset(buf, 0, (size_t)take); break;
		case IMS_FORMAT__COMPRESSED:
			r = ops->decompress(base, offset, l.key, &unit, &unit_bytes);
			if (r < 0)
				return r;
			memcpy(buf, unit + (offset & (unit_bytes - 1)), (size_t)take);
			break;
		case IMS_FORMAT__DATA:
			/* one read for the units that follow each other in the file too */
			while (take < len) {
				r = ops->locate(base, offset + take, &n);
				if (r < 0)
					return r;
				if (n.type != IMS_FORMAT__DATA || n.host != l.host + take)
					break;
				take += n.len < len - take ? n.len : len - take;
			}
			r = ims_format__pread(&base->src, buf, (size_t)take, l.host, &got);
			if (r < 0)
				return r;
			/* a last unit that the file ends inside reads as zeros after the end */
			memset(buf + got, 0, (size_t)take - got);
			break;
		}
		offset += take;
		buf += take;
		len -= (size_t)take;
	}
	return 0;
}

/*
 * The qcow2 writer's refcount layout, exposed for its unit test: for @p data_clusters
 * clusters in use before the refcount structures (header, data, L2 and L1 tables), how many
 * refcount blocks and refcount table clusters cover them and themselves.
 */
void ims_format__qcow2_refcount_layout(uint64_t data_clusters, uint64_t *blocks,
				       uint64_t *table_clusters);

/*
 * LUKS1, as QEMU keeps it inside an encrypted qcow2 image (format_luks.c). The header is
 * parsed whole before any PBKDF2 runs; a slot or digest asking more iterations than
 * @p max_iterations is refused, and so are active slots that ask more than 4 x
 * @p max_iterations PBKDF2 rounds together (iterations times the key's blocks of the hash's
 * size: the work a wrong passphrase costs).
 */
#define IMS_FORMAT__LUKS_HEADER_BYTES 592u

typedef enum {
	IMS_FORMAT__LUKS_IV_PLAIN64 = 0,
	IMS_FORMAT__LUKS_IV_PLAIN,
	IMS_FORMAT__LUKS_IV_ESSIV,
} ims_format__luks_iv;

typedef struct {
	bool active;
	uint32_t iterations, stripes;
	uint8_t salt[32];
	uint64_t km_off, km_len; /* the key material in the header area, whole sectors */
} ims_format__luks_slot;

typedef struct {
	const struct evp_md_st *hash;	    /* the header's hash (PBKDF2, AF diffusion) */
	const struct evp_md_st *essiv_hash; /* IV_ESSIV: the hash of the key */
	const struct evp_cipher_st *cipher; /* the data cipher */
	ims_format__luks_iv iv;
	size_t key_bytes;
	uint8_t mk_digest[20], mk_salt[32];
	uint32_t mk_iterations;
	ims_format__luks_slot slots[8];
} ims_format__luks_info;

/*
 * Parse the LUKS1 header @p h (@p len bytes read from the start of an area of
 * @p area_bytes that holds it and its key material).
 * @returns -EINVAL (corrupt), -ENOTSUP (a cipher, mode, hash or version imgstore does not
 *          read; iterations over the ceiling).
 */
int ims_format__luks_parse(ims_format__luks_info *out, const uint8_t *h, size_t len,
			   uint64_t area_bytes, uint32_t max_iterations);

typedef struct ims_format__luks ims_format__luks;

/*
 * Open the LUKS1 header at [@p area_off, + @p area_len) of @p src with a passphrase.
 * @returns as ims_format__luks_parse(); -EINVAL "no key slot opens with this passphrase".
 */
int ims_format__luks_open(ims_format__luks **out, const ims_source *src, uint64_t area_off,
			  uint64_t area_len, const void *pass, size_t pass_len,
			  uint32_t max_iterations);

/* Decrypt (encrypt: tests) @p len bytes, whole 512-byte sectors, the first numbered
 * @p sector (the IV's number). */
int ims_format__luks_decrypt(ims_format__luks *l, uint64_t sector, uint8_t *buf, size_t len);
int ims_format__luks_encrypt(ims_format__luks *l, uint64_t sector, uint8_t *buf, size_t len);

void ims_format__luks_free(ims_format__luks *l);

#endif
