/*
 * store/record.h: JSON records in the omap of one RADOS object, the form of every small
 * record imgstore keeps in a site's cluster (the catalog, operation records, host leases,
 * tiering and replication policies): one key a record, one plain JSON object its value,
 * readable with `rados -p POOL listomapvals OBJECT`.
 *
 * A set of records is named by an ims_records: its object, and either an open I/O context
 * or a site and pool, through which each call opens an I/O context of its own (see
 * docs/ARCHITECTURE.md: a site's client may be replaced, so none is kept). The raw omap
 * calls under these are store/omap.h's.
 *
 * A record kept as a C struct of fixed-size fields is described by a table of its fields
 * (ims_record_field) and converted with ims_record_encode()/ims_record_decode(). Work that
 * one daemon of a site does at a time is claimed with ims_record_lock(); the daemons that share
 * work are a set, ims_record_join()/ims_record_members().
 *
 * Errors carry a one-line message (ims_error_set()) that names the object and the key;
 * callers with a better word for what a record is set their own. A quiet set leaves the
 * thread's message as it was. Changes that must not race (the leases) are made under a lock;
 * a record read and written back while others may remove it uses ims_record_replace().
 */
#ifndef IMS_STORE_RECORD_H
#define IMS_STORE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>
#include <rados/librados.h>

#include "store/site.h"

/** Where a set of records lives. */
typedef struct {
	const char *object; /* the RADOS object whose omap holds the records */
	rados_ioctx_t io;   /* an open I/O context of its pool; or NULL and: */
	ims_site *site;	    /* the site and */
	const char *pool;   /* the pool, with an I/O context per call */
	bool quiet;	    /* set no message: for writes whose failure is not the caller's */
} ims_records;

/** The records of @p obj in the pool of the open I/O context @p io. */
#define IMS_RECORDS_IO(io_, obj) ((ims_records){.object = (obj), .io = (io_)})
/** The records of @p obj in @p pool of @p site. */
#define IMS_RECORDS_SITE(site_, pool_, obj)                                                        \
	((ims_records){.object = (obj), .site = (site_), .pool = (pool_)})
/** The same, for best-effort calls that leave the thread's error message as it is. */
#define IMS_RECORDS_SITE_QUIET(site_, pool_, obj)                                                  \
	((ims_records){.object = (obj), .site = (site_), .pool = (pool_), .quiet = true})

/**
 * Set record @p key to @p val (written plain, as json_object_to_json_string_ext() with
 * JSON_C_TO_STRING_PLAIN), creating the object if needed. @p val stays the caller's.
 *
 * @returns an error of the RADOS write (-ETIMEDOUT if the OSDs do not answer).
 */
int ims_record_put(const ims_records *rs, const char *key, json_object *val);

/**
 * ims_record_put() of a record that must still be there: compared and written in one RADOS
 * operation (store/omap.h ims_omap_replace()), so a record removed since it was read stays
 * removed.
 *
 * @returns -ENOENT if record @p key is gone (nothing written).
 */
int ims_record_replace(const ims_records *rs, const char *key, json_object *val);

/**
 * Record @p key.
 *
 * @param[out] out the record, a JSON object; release with json_object_put().
 * @returns -ENOENT if the object or the key does not exist; -EBADMSG if the value is not a
 *          JSON object.
 */
int ims_record_get(json_object **out, const ims_records *rs, const char *key);

/** Remove the @p n records @p keys; no error for a key or an object that does not exist. */
int ims_record_del_many(const ims_records *rs, const char *const *keys, size_t n);

/** Remove record @p key; no error if it or the object does not exist. */
int ims_record_del(const ims_records *rs, const char *key);

/**
 * Called for each record in key order, with its key (NUL-terminated) and its value, or NULL
 * when the value is not a JSON object (one damaged record never hides the others). @p val is
 * borrowed for the call. A non-zero return stops the walk and is returned.
 */
typedef int (*ims_record_fn)(void *ctx, const char *key, json_object *val);

/**
 * Walk every record of the set; a missing object has none.
 *
 * @returns 0, an error of RADOS, or what @p fn returned to stop.
 */
int ims_record_foreach(const ims_records *rs, ims_record_fn fn, void *ctx);

/**
 * Decode record @p key (@p val as for ims_record_fn) into @p elem, which is zeroed.
 * @returns 0 to keep it, > 0 to leave it out of the list, or a negative errno to stop.
 */
typedef int (*ims_record_decode_fn)(void *elem, const char *key, json_object *val);

/**
 * Every record of the set decoded by @p decode into an array of elements of @p size bytes,
 * in key order.
 *
 * @param[out] out malloc'ed array of *count elements (free()); NULL with 0 if none.
 * @param clear frees what a decoded element holds, or NULL; called on each element,
 *        the one whose decoding failed included, when the listing fails.
 * @returns an error of RADOS, -ENOMEM, or what @p decode stopped with.
 */
int ims_record_list(void **out, size_t *count, const ims_records *rs, size_t size,
		    ims_record_decode_fn decode, void (*clear)(void *elem));

/* ---- records as C structs: a table of fields ---- */

/** The C type of a field of a record struct. */
typedef enum {
	IMS_RECORD_STR, /* char[size]; "" when absent */
	IMS_RECORD_INT, /* int, or an enum of int's size */
	IMS_RECORD_I64, /* int64_t */
	IMS_RECORD_U64, /* uint64_t, kept as a JSON int64 */
} ims_record_type;

/** One field of a record struct: its JSON name, its type and where it is. */
typedef struct {
	const char *name;
	ims_record_type type;
	size_t offset;
	size_t size;
} ims_record_field;

/** Field @p member of struct type @p T, named as the member. */
#define IMS_RECORD_FIELD(T, member, type)                                                          \
	{                                                                                          \
#member, type, offsetof(T, member), sizeof(((T *)0)->member)                       \
	}

/**
 * A JSON object with the @p n @p fields of struct @p rec, in the table's order.
 *
 * @returns a new object (json_object_put()), or NULL without memory.
 */
json_object *ims_record_encode(const void *rec, const ims_record_field *fields, size_t n);

/**
 * Set the @p n @p fields of struct @p rec from @p o; a missing field, or one of another type,
 * reads as "" or 0 (common/json.h). Other members of @p rec are left as they are.
 */
void ims_record_decode(void *rec, json_object *o, const ims_record_field *fields, size_t n);

/* ---- who works on what: RADOS locks with expiry ---- */

/**
 * Take (or with @p renew, extend) exclusive lock @p name of object @p obj for @p seconds under
 * cookie @p owner, described as @p desc. A lock held under the same cookie by another client
 * (this daemon's previous run, killed while it held the lock) is broken rather than waited
 * for until it expires.
 *
 * @param[out] broken the name of the client whose lock was broken, @p len bytes ("" otherwise);
 *                    may be NULL.
 * @returns 0, or the error of rados_lock_exclusive() (-EBUSY or -EEXIST while another holds
 *          it); sets no message.
 */
int ims_record_lock(char *broken, size_t len, rados_ioctx_t io, const char *obj, const char *name,
		    const char *owner, const char *desc, unsigned seconds, bool renew);

/*
 * A set of daemons that work on the same records: the holders of shared lock @p name of
 * object @p obj (created by the first), each under its own cookie, each renewing its hold
 * within @p seconds. A member that stops renewing (killed, partitioned, blocklisted) drops
 * out once its hold expires; one that stops cleanly leaves at once.
 */

/** Join the set under cookie @p owner, or renew this client's hold of it. Returns 0 or
 *  rados_lock_shared()'s error; sets no message. */
int ims_record_join(rados_ioctx_t io, const char *obj, const char *name, const char *owner,
		    const char *desc, unsigned seconds);

/** Leave it (best effort). */
void ims_record_leave(rados_ioctx_t io, const char *obj, const char *name, const char *owner);

/**
 * The members of the set: the cookies of the live holds, each once (a cookie held by two
 * clients, a member's previous run and its new one, counts once), sorted by strcmp(), into
 * @p out, at most @p max of them, each up to @p width bytes with its NUL (longer ones are cut).
 *
 * @returns how many (0: none, or the object does not exist), or a negative errno; sets no
 *          message.
 */
ssize_t ims_record_members(char *out, size_t width, size_t max, rados_ioctx_t io, const char *obj,
			   const char *name);

#endif
