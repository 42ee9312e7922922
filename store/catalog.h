/*
 * store/catalog.h: the per-pool record of the images imgstore manages, kept in RADOS in the
 * omap of one object per pool ("imgstore.catalog"), so lists are one read and the record
 * survives the loss of any daemon. Key: the image name. Value: a small JSON document, readable
 * with `rados -p POOL listomapvals imgstore.catalog`.
 */
#ifndef IMS_STORE_CATALOG_H
#define IMS_STORE_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include <rados/librados.h>

#define IMS_CATALOG_OBJECT "imgstore.catalog"

typedef struct {
	char *key;
	char *value;
} ims_tag;

typedef struct {
	char *name;
	int64_t created;      /* unix seconds */
	uint64_t size;	      /* bytes, as of the last change through imgstore */
	char *source;	      /* "new", "raw", a format name, "clone" */
	char *parent;	      /* "POOL/IMAGE@SNAP" for clones, else NULL */
	char *content_sha256; /* of the imported content (see docs), else NULL */
	ims_tag *tags;
	size_t ntags;
	/* cold tiering: set when the image lives in object storage instead of RBD */
	char *cold_target;  /* the S3 target's name, else NULL */
	char *cold_name;    /* the cold image's name there ("POOL/IMAGE") */
	int64_t cold_since; /* unix seconds */
} ims_catalog_entry;

/**
 * Add or replace the entry of @p e->name.
 *
 * @returns an error of the RADOS write (-ETIMEDOUT if the OSDs do not answer).
 */
int ims_catalog_put(rados_ioctx_t io, const ims_catalog_entry *e);

/**
 * @param[out] out the entry; free with ims_catalog_entry_free().
 * @returns -ENOENT if the pool's catalog has no entry for @p name.
 */
int ims_catalog_get(ims_catalog_entry **out, rados_ioctx_t io, const char *name);

/** Remove the entry of @p name; no error if there is none. */
int ims_catalog_remove(rados_ioctx_t io, const char *name);

/**
 * Every entry of the pool, sorted by name.
 *
 * @param[out] out an array of @p count entries; free with ims_catalog_list_free().
 * @param[out] count the number of entries.
 */
int ims_catalog_list(ims_catalog_entry **out, size_t *count, rados_ioctx_t io);

/** The value of tag @p key, or NULL. Borrowed from @p e. */
const char *ims_catalog_tag(const ims_catalog_entry *e, const char *key);

void ims_catalog_entry_clear(ims_catalog_entry *e);
void ims_catalog_entry_free(ims_catalog_entry *e);
void ims_catalog_list_free(ims_catalog_entry *list, size_t count);

#endif
