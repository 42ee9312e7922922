/*
 * store/omap.h: the small key/value records imgstore keeps in the omap of one RADOS object
 * (the catalog, operation records, leases, hosts): set, get, remove, and a paged walk.
 */
#ifndef IMS_STORE_OMAP_H
#define IMS_STORE_OMAP_H

#include <stddef.h>

#include <rados/librados.h>

/** Set @p key to @p val, creating the object if needed. */
int ims_omap_set(rados_ioctx_t io, const char *obj, const char *key, const char *val, size_t vlen);

/**
 * Set @p key to @p val only if it is there now, in one RADOS operation (the OSD compares, then
 * writes): a record a runner read and writes back stays removed when another client removed it
 * in between.
 *
 * @returns -ENOENT if the key (or the object) is gone.
 */
int ims_omap_replace(rados_ioctx_t io, const char *obj, const char *key, const char *val,
		     size_t vlen);

/**
 * The value of @p key into *out (malloc'ed, NUL-terminated; *len without the NUL).
 *
 * @returns -ENOENT if the object or the key does not exist.
 */
int ims_omap_get(char **out, size_t *len, rados_ioctx_t io, const char *obj, const char *key);

/** Remove @p key; no error if it or the object does not exist. */
int ims_omap_rm(rados_ioctx_t io, const char *obj, const char *key);

/** Remove @p n keys at once. */
int ims_omap_rm_many(rados_ioctx_t io, const char *obj, const char *const *keys, size_t n);

/** Called for each record in key order; a non-zero return stops the walk and is returned. */
typedef int (*ims_omap_fn)(void *ctx, const char *key, size_t klen, const char *val, size_t vlen);

/**
 * Walk every record of @p obj, in pages of 500. A missing object has no records.
 *
 * @returns 0, an error of RADOS, or what @p fn returned to stop.
 */
int ims_omap_foreach(rados_ioctx_t io, const char *obj, ims_omap_fn fn, void *ctx);

#endif
