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

/* The most bytes of a table the readers load whole (qcow2 L1, vmdk GD), as qemu caps L1. */
#define IMS_FORMAT__MAX_TABLE_BYTES (32u << 20)

typedef struct {
	/* @pre offset < virtual size; out->offset is set by the caller. */
	int (*map)(ims_format_reader *r, uint64_t offset, ims_extent *out);
	/* @pre len > 0 and [offset, offset + len) within the virtual size. */
	int (*read)(ims_format_reader *r, uint64_t offset, uint8_t *buf, size_t len);
	void (*close)(ims_format_reader *r);
} ims_format__ops;

struct ims_format_reader {
	const ims_format__ops *ops;
	ims_format_kind kind;
	ims_source src; /* a copy; its ctx must outlive the reader */
	uint64_t virtual_size;
};

int ims_format__raw_open(ims_format_reader **out, const ims_source *src);
int ims_format__qcow2_open(ims_format_reader **out, const ims_source *src);
int ims_format__vmdk_open(ims_format_reader **out, const ims_source *src);

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

/*
 * The qcow2 writer's refcount layout, exposed for its unit test: for @p data_clusters
 * clusters in use before the refcount structures (header, data, L2 and L1 tables), how many
 * refcount blocks and refcount table clusters cover them and themselves.
 */
void ims_format__qcow2_refcount_layout(uint64_t data_clusters, uint64_t *blocks,
				       uint64_t *table_clusters);

#endif
