/*
 * store/group.h: consistency groups, RBD groups on a site's pools.
 *
 * A group holds the disks of one VM. A group snapshot (rbd_group_snap_create) takes one
 * snapshot of every member at the same point: librbd requests each member's exclusive lock,
 * which its writers hand over after their in-flight writes complete and before they issue
 * new ones, so no write lands on one member's snapshot but misses another's (crash
 * consistent, as if the VM lost power). Writers block for that moment; they do not fail.
 *
 * A group lives in a pool; its members may be in any pool of the site. An image is in at
 * most one group. Every call checks the names first and changes nothing when it fails.
 */
#ifndef IMS_STORE_GROUP_H
#define IMS_STORE_GROUP_H

#include <stdbool.h>
#include <stddef.h>

#include "common/spec.h"
#include "store/site.h"

typedef struct {
	char *pool;
	char *image;
} ims_group_member;

typedef struct {
	char *name;
	bool complete; /* false: a group snapshot whose creation was cut */
} ims_group_snap;

typedef struct {
	char *pool;
	char *name;
	ims_group_member *members; /* by pool, then image name */
	size_t nmembers;
	ims_group_snap *snaps; /* by name (librbd keeps no creation order) */
	size_t nsnaps;
} ims_group_info;

/**
 * Create an empty group.
 *
 * @returns -EINVAL for a bad name, -EEXIST if the pool has a group of that name, -ENOENT if
 *          the pool does not exist.
 */
int ims_group_create(ims_site *site, const char *pool, const char *name);

/**
 * Remove a group and its group snapshots. Its images stay (outside any group).
 *
 * @param force remove a group that still has images; without it such a group is refused.
 * @returns -ENOENT for an unknown group, -ENOTEMPTY if it has images and @p force is false.
 */
int ims_group_remove(ims_site *site, const char *pool, const char *name, bool force);

/**
 * Add @p image_pool/@p image to the group.
 *
 * @returns -ENOENT for an unknown group or image, -EEXIST if the image is in a group already
 *          (this one or another: the message names it).
 */
int ims_group_image_add(ims_site *site, const char *pool, const char *name, const char *image_pool,
			const char *image);

/**
 * Take @p image_pool/@p image out of the group. Its snapshots of group snapshots go with it.
 *
 * @returns -ENOENT for an unknown group or image, or an image that is not in this group.
 */
int ims_group_image_remove(ims_site *site, const char *pool, const char *name,
			   const char *image_pool, const char *image);

/** Called for each image before any is added; a negative errno (with ims_error_set()) refuses. */
typedef int (*ims_group_image_check_fn)(void *ctx, const ims_spec *image);

/**
 * Add @p n images to the group, all or none: each is checked first (in no group yet, named
 * once, and what @p check says; @p check may be NULL), then added; if one add fails, the ones
 * added are taken out again and the error says "(nothing added)".
 *
 * @returns -ENOENT for an unknown group or image, -EEXIST naming the group an image is in,
 *          -EINVAL for an image named twice, what @p check refused with.
 */
int ims_group_images_add(ims_site *site, const char *pool, const char *name, const ims_spec *images,
			 size_t n, ims_group_image_check_fn check, void *ctx);

/**
 * Take @p n images out of the group, all or none: each must be in it; if one removal fails,
 * the ones removed are added back and the error says "(nothing removed)".
 */
int ims_group_images_remove(ims_site *site, const char *pool, const char *name,
			    const ims_spec *images, size_t n);

/**
 * The names of the groups of @p pool, sorted.
 *
 * @param[out] out free with ims_group_list_free().
 * @returns -ENOENT if the pool does not exist.
 */
int ims_group_list(char ***out, size_t *count, ims_site *site, const char *pool);
void ims_group_list_free(char **names, size_t count);

/**
 * A group's members and group snapshots.
 *
 * @param[out] out free with ims_group_info_free().
 * @returns -ENOENT for an unknown group.
 */
int ims_group_info_get(ims_group_info **out, ims_site *site, const char *pool, const char *name);
void ims_group_info_free(ims_group_info *info);

/**
 * Snapshot every member of the group at one point (see above).
 *
 * @returns -ENOENT for an unknown group, -EEXIST if the group has a snapshot of that name,
 *          -EINVAL for a group without images.
 */
int ims_group_snap_create(ims_site *site, const char *pool, const char *name, const char *snap);

/** @returns -ENOENT for an unknown group or group snapshot. */
int ims_group_snap_remove(ims_site *site, const char *pool, const char *name, const char *snap);

/* Group snapshots of one group made one at a time in this process: a schedule's and a
 * replication cycle's at the same moment made two librbd group snapshots of the same images
 * concurrently (both quiesce and lock every member). ims_group_snap_create and _remove take it
 * themselves, and the replication cut (replicator/group.c take_cut) around its anchors and
 * group snapshot; the cycle's own removals of old cuts and of the secondary's scheduled
 * snapshots do not. Striped by pool and group name; never held across another one. */
void ims_group_snap_lock(const char *pool, const char *name);
void ims_group_snap_unlock(const char *pool, const char *name);

/**
 * The group @p pool/@p image belongs to, as "POOL/GROUP" in @p buf; "" if none.
 *
 * @returns -ENOENT if the image does not exist.
 */
int ims_group_of_image(char *buf, size_t len, ims_site *site, const char *pool, const char *image);

#endif
