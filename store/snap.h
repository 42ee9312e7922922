/*
 * store/snap.h: the snapshots of an image: create, list, roll back to, remove, and the names
 * that are imgstore's own.
 */
#ifndef IMS_STORE_SNAP_H
#define IMS_STORE_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/progress.h"
#include "store/site.h"

typedef struct {
	char *name;
	uint64_t id;
	uint64_t size;
	bool is_protected;
	int64_t timestamp; /* unix seconds */
} ims_snap_info;

/*
 * Snapshot names starting with this prefix are imgstore's own: replication snapshots
 * ("imgstore-repl-<ms>", the lag and the base of the next cycle are read from them), group
 * anchors ("imgstore-anchor-<ms>") and the recovery snapshots of a resync
 * ("imgstore-recovery-<ms>"). Every prefix imgstore uses for a snapshot starts with it.
 */
#define IMS_SNAP_RESERVED_PREFIX "imgstore-"

/**
 * Whether a client may @p what ("create", "remove", "roll back to") the snapshot @p snap: not
 * when its name is one of imgstore's own (IMS_SNAP_RESERVED_PREFIX). The snapshot functions
 * below do not check it: replication and tests use them on any name.
 *
 * @returns 0, or -EINVAL naming the prefix.
 */
int ims_snap_check_user_name(const char *snap, const char *what);

/** @returns -EEXIST if the snapshot exists, -ENOENT if the image does not. */
int ims_snap_create(ims_site *site, const char *pool, const char *image, const char *snap);

/** @param[out] out free with ims_snap_list_free(). */
int ims_snap_list(ims_snap_info **out, size_t *count, ims_site *site, const char *pool,
		  const char *image);
void ims_snap_list_free(ims_snap_info *list, size_t count);

/**
 * The snapshots of an image the caller has open, as ims_snap_list() lists them (every
 * snapshot, in librbd's order).
 *
 * @param[out] out free with ims_snap_list_free().
 * @returns -ENOMEM, or the error of rbd_snap_list() with a message.
 */
int ims_snap_list_image(ims_snap_info **out, size_t *count, rbd_image_t image);

/**
 * Roll the image back to @p snap.
 *
 * @returns -ENOENT for an unknown snapshot, -EBUSY if another client holds the image's lock.
 */
int ims_snap_rollback(ims_site *site, const char *pool, const char *image, const char *snap,
		      ims_progress_fn progress, void *ctx);

/**
 * Remove a snapshot, unprotecting it first when it has no clones.
 *
 * @returns -ENOENT for an unknown snapshot, -EBUSY if clones depend on it (named in the
 *          message).
 */
int ims_snap_remove(ims_site *site, const char *pool, const char *image, const char *snap);

#endif
