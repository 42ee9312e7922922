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
#define IMS_TAG_META_PREFIX "imgstore.tag."

/* Open pool and image; on error nothing stays open and the message names pool/image@snap. */
int ims_store__open_image(ims_site *site, const char *pool, const char *name, const char *snap,
			  bool read_only, rados_ioctx_t *io, rbd_image_t *image);
void ims_store__close_image(rados_ioctx_t io, rbd_image_t image);

/* How many clients watch the image (have it open read-write; a read-only handle does not). */
int ims_store__count_watchers(rbd_image_t image, size_t *out);

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
int ims_store__catalog_join(ims_image_list_entry *list, size_t n, ims_catalog_entry *cat, size_t ncat);

/* Lower-case comma-separated RBD feature names. */
void ims_store__features_str(uint64_t features, char *buf, size_t len);

#endif
