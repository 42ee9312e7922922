/*
 * store/image.h: images, golden-image clones and tags on a site's RBD pools (their snapshots:
 * store/snap.h).
 *
 * Every name is checked (common/spec.h rules) before anything touches the cluster. Images
 * imgstore creates are recorded in the pool's catalog (store/catalog.h). Tags live in the
 * image's metadata under "imgstore.tag." and in the catalog, which makes lists one read.
 */
#ifndef IMS_STORE_IMAGE_H
#define IMS_STORE_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/progress.h"
#include "store/catalog.h"
#include "store/site.h"
#include "store/snap.h"

/* RBD feature bits imgstore gives new images unless told otherwise: layering, exclusive-lock,
 * object-map, fast-diff, deep-flatten. */
#define IMS_IMAGE_DEFAULT_FEATURES 61ull

#define IMS_IMAGE_CREATE_OPTS_VERSION 1
typedef struct {
	unsigned version;
	uint64_t size;	       /* bytes, > 0 */
	uint64_t features;     /* 0: IMS_IMAGE_DEFAULT_FEATURES */
	const char *data_pool; /* NULL: data in the image's pool */
	unsigned order;	       /* object size 2^order; 0: 22 (4 MiB) */
	/* NULL or "": plain; "luks2": LUKS2 AES-256 with a data key of its own (store/crypt.h),
	 * size the usable bytes (the image is IMS_CRYPT_LUKS2_HEADER larger) */
	const char *encryption;
} ims_image_create_opts;
#define IMS_IMAGE_CREATE_OPTS_INIT                                                                 \
	{                                                                                          \
		.version = IMS_IMAGE_CREATE_OPTS_VERSION                                           \
	}

/**
 * Create an image and record it in the catalog.
 *
 * @returns -EPERM if an encrypted image is asked for and the site has no KEK,
 *          -EINVAL for a bad name, size or encryption, -EEXIST if the name is taken, -ENOENT if the
 * pool (or data pool) does not exist.
 */
int ims_image_create(ims_site *site, const char *pool, const char *name,
		     const ims_image_create_opts *opts);

/**
 * Whether @p pool/@p name exists.
 *
 * @returns 1 or 0, -ENOENT if the pool does not exist, an error of the cluster.
 */
int ims_image_exists(ims_site *site, const char *pool, const char *name);

typedef struct {
	char *pool;
	char *name;
	char *id;
	uint64_t size;	/* of an encrypted image: the plaintext's (IMS_CRYPT_LUKS2_HEADER less) */
	bool encrypted; /* LUKS2 with a wrapped data key (store/crypt.h) */
	uint64_t used_bytes; /* allocated, counted by whole objects */
	uint64_t object_size;
	uint64_t features;
	char *features_str; /* "layering,exclusive-lock,..." */
	char *data_pool;    /* NULL when the data is in the image's pool */
	char *parent;	    /* "POOL/IMAGE@SNAP" for a clone, else NULL */
	ims_snap_info *snaps;
	size_t nsnaps;
	ims_catalog_entry *catalog; /* NULL if the image is not in the catalog */
} ims_image_info;

/**
 * @param[out] out free with ims_image_info_free().
 * @returns -ENOENT if there is no such image.
 */
int ims_image_info_get(ims_image_info **out, ims_site *site, const char *pool, const char *name);
void ims_image_info_free(ims_image_info *info);

typedef struct {
	char *name;
	bool in_catalog;
	ims_catalog_entry entry; /* zeroed unless in_catalog */
} ims_image_list_entry;

/**
 * The images of a pool (imgstore's own temporary images excluded), sorted by name, with
 * their catalog entries: two reads, however many images there are.
 *
 * @param[out] out an array of *count; free with ims_image_list_free().
 */
int ims_image_list(ims_image_list_entry **out, size_t *count, ims_site *site, const char *pool);
void ims_image_list_free(ims_image_list_entry *list, size_t count);

/**
 * Grow an image, or shrink it when @p allow_shrink.
 *
 * @returns -EINVAL if @p size is smaller and @p allow_shrink is false (nothing changed).
 */
int ims_image_resize(ims_site *site, const char *pool, const char *name, uint64_t size,
		     bool allow_shrink);

/**
 * How many clients watch the open image @p image, that is have it open read-write (a
 * read-only handle does not watch); with @p mine, an I/O context of this process, its own
 * client is not counted (a handle of its own on the image is not another user).
 *
 * @returns 0, -ENOMEM, or the error of rbd_watchers_list(); sets no message.
 */
int ims_image_watchers(size_t *out, rbd_image_t image, rados_ioctx_t mine);

/** @returns -ENOENT if @p from does not exist, -EEXIST if @p to does. */
int ims_image_rename(ims_site *site, const char *pool, const char *from, const char *to);

#define IMS_IMAGE_REMOVE_OPTS_VERSION 1
typedef struct {
	unsigned version;
	bool purge;	      /* delete now, snapshots included, instead of the trash */
	uint64_t trash_delay; /* seconds the trash keeps it from deletion; 0: 86400 */
	/* an encrypted image: destroy its wrapped data key (store/crypt.h), then purge */
	bool shred;
} ims_image_remove_opts;
#define IMS_IMAGE_REMOVE_OPTS_INIT                                                                 \
	{                                                                                          \
		.version = IMS_IMAGE_REMOVE_OPTS_VERSION                                           \
	}

/**
 * Move an image to the RBD trash (default) or purge it, and drop its catalog entry.
 *
 * @returns -ENOENT if there is no such image; -EINVAL with shred for a plain image (nothing
 *          changed); -EBUSY if it is open by a client, in a group,
 *          keeps a group's snapshot or a snapshot has clones (purge: all checked before
 *          anything is removed, so nothing is).
 */
int ims_image_remove(ims_site *site, const char *pool, const char *name,
		     const ims_image_remove_opts *opts);

/**
 * Destroy the wrapped data key of the replica @p pool/@p name on @p site whose replication
 * source is @p source ("SITE/POOL/IMAGE"), through the site's guard (store/site.h) so that a
 * replication into it does not stand in the way; the image stays, unreadable.
 *
 * @returns 0 (also when there is no such image, or it has no key), -EEXIST if an image of
 *          that name there is no replica of @p source (nothing changed), -EBUSY if another
 *          daemon holds it.
 */
int ims_image_shred_replica(ims_site *site, const char *pool, const char *name, const char *source);

/**
 * What ims_image_shred_replica() would meet, with nothing changed: @p site answers and the
 * image there is a replica of @p source (or there is none). A shred asks every peer this before
 * it destroys any key, so that a peer that is down refuses it with every key intact.
 *
 * @returns 0, -EEXIST if an image of that name there is no replica of @p source, -EBUSY if
 *          another daemon holds it, or the error that reaching the site met.
 */
int ims_image_shred_replica_check(ims_site *site, const char *pool, const char *name,
				  const char *source);

/**
 * Set tag @p key to @p value (keys: 1 to 64 of [A-Za-z0-9._-]; values: up to 1024 printable
 * bytes).
 *
 * @returns -EINVAL for a bad key or value, -ENOENT if there is no such image.
 */
int ims_image_tag_set(ims_site *site, const char *pool, const char *name, const char *key,
		      const char *value);

/** @returns -ENOENT if the image or the tag does not exist. */
int ims_image_tag_remove(ims_site *site, const char *pool, const char *name, const char *key);

/**
 * What a hypervisor needs to open the encrypted image @p pool/@p name (store/crypt.h,
 * ims_crypt_host_secret()): @p pass (65 bytes) and @p uuid (37 bytes), both left empty when
 * the image is not encrypted.
 *
 * @returns 0, -ENOENT if there is no such image, -EPERM if the site's KEK cannot unwrap the
 *          image's key (or it has none).
 */
int ims_image_host_secret(char *pass, char *uuid, ims_site *site, const char *pool,
			  const char *name);

/* Clones */

/**
 * Clone @p pool/@p image@@p snap into @p dst_pool/@p dst (clone v2: the snapshot needs no
 * protection; on a cluster that still requires it, it is protected automatically).
 *
 * @returns -ENOENT if the parent or its snapshot does not exist, -EEXIST if @p dst does.
 */
int ims_image_clone(ims_site *site, const char *pool, const char *image, const char *snap,
		    const char *dst_pool, const char *dst, const ims_image_create_opts *opts);

/**
 * Copy the parent's data into a clone so that it stands alone.
 *
 * @returns -EINVAL if the image is no clone, -ECANCELED if @p progress asked to stop.
 */
int ims_image_flatten(ims_site *site, const char *pool, const char *name, ims_progress_fn progress,
		      void *ctx);

#endif
