/*
 * common/extents.h: a list of byte extents, appended in order and merged with the last one
 * when adjacent: a delta from rbd_diff_iterate2(), the mismatches of a verify, the allocated
 * extents of an export.
 */
#ifndef IMS_COMMON_EXTENTS_H
#define IMS_COMMON_EXTENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	uint64_t off;
	uint64_t len;
	bool data; /* data, or known zeros (a hole, a discard) */
} ims_extents_item;

/** Zero-initialise (`ims_extents l = {0};`), free with ims_extents_free(). */
typedef struct {
	ims_extents_item *v;
	size_t n, cap;
} ims_extents;

/**
 * Append [off, off+len): merged into the last extent when it ends at @p off and has the same
 * @p data, a new extent otherwise.
 *
 * @returns 0, -ENOMEM (the list as it was).
 */
int ims_extents_add(ims_extents *l, uint64_t off, uint64_t len, bool data);

/** rbd_diff_iterate2()'s callback that appends every extent, data and zeros, to @p l. */
int ims_extents_diff_all(uint64_t off, size_t len, int exists, void *l);

/** rbd_diff_iterate2()'s callback that appends the extents with data only to @p l. */
int ims_extents_diff_data(uint64_t off, size_t len, int exists, void *l);

/** The sum of the lengths. */
uint64_t ims_extents_bytes(const ims_extents *l);

/** Free the extents and empty the list; NULL is fine. */
void ims_extents_free(ims_extents *l);

#endif
