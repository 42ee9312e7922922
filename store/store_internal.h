/* store/store_internal.h: helpers shared by the files of store/ (not a public header). */
#ifndef IMS_STORE_INTERNAL_H
#define IMS_STORE_INTERNAL_H

#include <stdbool.h>
#include <time.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "store/catalog.h"
#include "store/image.h"
#include "store/site.h"

/* Prefix of imgstore's temporary images (imports in progress); users cannot name images so. */
#define IMS_TMP_IMAGE_PREFIX ".imgstore-tmp-"
#define IMS_TAG_META_PREFIX  "imgstore.tag."
/* The RADOS object, in the temporary image's pool, whose watch says a live operation owns it:
 * this prefix and the temporary's name after IMS_TMP_IMAGE_PREFIX. */
#define IMS_TMP_OWNER_PREFIX "imgstore.tmp-owner."

/* Open pool and image; on error nothing stays open and the message names pool/image@snap. */
int ims_store__open_image(rados_ioctx_t *io, rbd_image_t *image, ims_site *site, const char *pool,
			  const char *name, const char *snap, bool read_only);
void ims_store__close_image(rados_ioctx_t io, rbd_image_t image);

/* librbd's progress callback over an ims_progress_fn: a non-zero return of fn asks librbd to
 * stop (-ECANCELED). */
typedef struct {
	ims_progress_fn fn;
	void *ctx;
} ims_store__progress_bridge;
int ims_store__bridge_progress(uint64_t done, uint64_t total, void *arg);

/* Remove snapshot @p snap (@p snap_id) of an open image, unprotecting it first; -EBUSY naming
 * its clones when it has any. */
int ims_store__remove_snap_open(rbd_image_t image, const char *pool, const char *name,
				const char *snap, uint64_t snap_id, bool is_protected);

/* ims_image_watchers() of every client (store/transfer.c's name for it). */
int ims_store__count_watchers(size_t *out, rbd_image_t image);

/*
 * Who owns a temporary image: an object with a watch on it, made before the image is created
 * and dropped once the image is gone (renamed into place or removed). While the process
 * lives, librados keeps the watch; when it dies the watch lapses (osd_client_watch_timeout),
 * and ims_store_cleanup_tmp() of any daemon of the site may remove the temporary.
 */
typedef struct {
	rados_ioctx_t io; /* borrowed: must outlive the record */
	uint64_t cookie;
	bool watching;
	char oid[96];
} ims_store__tmp_owner;

/* Record that this process owns temporary image @p tmp of @p io's pool (the object holds
 * @p target, for an operator). @returns a cluster error, with the message set. */
int ims_store__tmp_own(ims_store__tmp_owner *o, rados_ioctx_t io, const char *tmp,
		       const char *target);

/* Drop the record (unwatch, remove the object); accepts a record never made. */
void ims_store__tmp_disown(ims_store__tmp_owner *o);

/* Check the pool and image names (common/spec.h) with one message. */
int ims_store__check_names(const char *pool, const char *image, const char *snap);

/* A catalog entry for a new image; fills created and size; strings are borrowed. */
int ims_store__catalog_add(rados_ioctx_t io, const char *name, uint64_t size, const char *source,
			   const char *parent, const char *sha256);

/*
 * Move into each entry of @p list (names in any order; entries zeroed) its catalog entry from
 * @p cat (sorted by name, as ims_catalog_list() returns it). A moved entry is left in @p cat
 * zeroed but for its name, so @p cat stays sorted.
 */
int ims_store__catalog_join(ims_image_list_entry *list, size_t n, ims_catalog_entry *cat,
			    size_t ncat);

/* Lower-case comma-separated names of RBD @p features into @p buf. */
void ims_store__features_str(char *buf, size_t len, uint64_t features);

/* The wrapped key of @p image into @p buf (IMS_CRYPT_WRAPPED_MAX bytes): 1, 0 if it has none,
 * or an error of librbd (store/crypt.c). */
int ims_crypt__wrapped(char *buf, rbd_image_t image);

/* Whether imgstore may keep images in @p pool (application "rbd", or none set). */
bool ims_store__is_rbd_pool(ims_site *site, const char *pool);

/* The names of the site's pools, each NUL-terminated, an empty one last; free(). Sets the
 * message. */
int ims_store__pool_names(char **out, ims_site *site);

#endif
