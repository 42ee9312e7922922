/*
 * replicator/replicator_internal.h: helpers shared by the files of replicator/ (not public).
 */
#ifndef IMS_REPLICATOR_INTERNAL_H
#define IMS_REPLICATOR_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <rbd/librbd.h>

#include "common/extents.h"
#include "common/hash.h"
#include "common/ratelimit.h"
#include "replicator/digest.h"
#include "replicator/failover.h"

#define IMS_REPL__SNAP_NAME_MAX 64

/* omap object in the primary's pool: "image@site" -> the base that pair last sealed */
#define IMS_REPL__BASES "imgstore.repl.bases"

/** The replication snapshots ("imgstore-repl-<ms>") of an open image, oldest first. */
typedef struct {
	char (*names)[IMS_REPL__SNAP_NAME_MAX];
	size_t n;
} ims_repl__snaps;

/** List them; free out->names. */
int ims_repl__list_snaps(ims_repl__snaps *out, rbd_image_t image);

/** A progress function that asks nothing: librbd calls one unconditionally. */
int ims_repl__no_progress(uint64_t done, uint64_t total, void *arg);

bool ims_repl__has_snap(const ims_repl__snaps *s, const char *name);

/** Whether the head of @p image differs from its snapshot @p snap (size, or any extent, by
 *  fast-diff when the object map is valid). */
int ims_repl__changed_since(bool *changed, rbd_image_t image, const char *snap);

/* Hold @p pool/@p image on @p dst against other writers (store/site.h's guard) if it is a
 * secondary there, checked before its lock is taken and again after; else (or on an error,
 * logged at debug) leave it as it is. */
void ims_repl__hold_secondary(ims_site *dst, const char *pool, const char *image);

/* Hold @p pool/@p image on @p site against other writers whatever its role (a stale copy: an
 * old primary fenced, or a copy just demoted) until the guard is let go. @returns 0 or the
 * guard's error (set). */
int ims_repl__hold(ims_site *site, const char *pool, const char *image);

/* Fence the writers of the stale copy @p pool/@p image on @p site (an old primary that came
 * back), logging a failure under @p key (the pair). @returns the writers fenced. */
unsigned ims_repl__fence_stale(const char *key, ims_site *site, const char *pool,
			       const char *image);

/** Roll @p image back to its snapshot @p snap if its head differs from it; @p what names the
 *  copy in errors. */
int ims_repl__rollback_if_changed(bool *rolled, rbd_image_t image, const char *snap,
				  const char *what);

/** A copy of extents from the primary's snapshot to the secondary (replicator/copy.c). */
typedef struct {
	rbd_image_t src, dst;	  /* the primary's snapshot and the secondary's head, open */
	const ims_extents *ext;	  /* what to copy, in offset order */
	const char *what;	  /* names the image in errors */
	bool fresh;		  /* the secondary is new: runs of zeros need no write */
	unsigned depth;		  /* blocks' worth of pieces in flight (a piece under 1 MiB
				     weighs a quarter); 0: 16 */
	uint64_t budget;	  /* memory the pieces in flight may hold */
	ims_ratelimit *bandwidth; /* may be NULL; data read is taken from it */
	/**
	 * In the calling thread after pieces end, at least every 200 ms, and a last time when
	 * all is written: bytes done
	 * and the low-water mark (below it everything is written; UINT64_MAX: all of it). A
	 * negative errno (its message set) stops the copy, and fails it even from the last call.
	 */
	int (*watch)(void *ctx, uint64_t done, uint64_t low_water);
	void *ctx;
} ims_repl__copy_job;

typedef struct {
	uint64_t copied, zeroed; /* bytes of data written, of zeros written or skipped */
	uint64_t done;		 /* bytes of the extents done */
	uint64_t low_water;	 /* below it everything is written, also after an error */
} ims_repl__copy_result;

/** Run the copy @p j; @p out is filled also on an error (its low-water mark is what the
 *  checkpoint may keep). @returns 0, or the first error with its message set. */
int ims_repl__copy(ims_repl__copy_result *out, const ims_repl__copy_job *j);

/* The failover journal's record (replicator/failover.h) as JSON, and back: a record's group
 * flag is in its key too, which ims_repl_journal_get() trusts. */
json_object *ims_repl__journal_encode(const ims_repl_journal *j);
void ims_repl__journal_decode(ims_repl_journal *out, json_object *o);

/* ---- the digest log's compaction (digest.c), pure logic ---- */

/** A run of entries a compaction removed: first..last, and the hash the last one had. */
typedef struct {
	uint64_t first, last;
	char hash[IMS_SHA256_HEX_LEN];
} ims_repl__digest_gap;

/**
 * The list of a compaction's checkpoint (replicator/digest.h): the runs of entries removed after
 * removing @p drop (seqs, sorted) from the log's entries @p v (by seq), given the runs
 * @p gaps the newest checkpoint already lists (by seq): old runs and entries dropped, adjacent
 * ones merged into one run that carries the hash of its last entry, one "FIRST LAST HASH\n"
 * line each.
 *
 * @param[out] len its length; @param[out] ngaps its lines; @param[out] covered the entries
 *             its runs cover.
 * @returns the text (free()), NULL without memory.
 */
char *ims_repl__digest_gap_text(size_t *len, uint64_t *ngaps, uint64_t *covered,
				const ims_digest_entry *v, size_t nv,
				const ims_repl__digest_gap *gaps, size_t ngaps_old,
				const uint64_t *drop, size_t ndrop);

/* ---- verify.c's view of one site's copy at a snapshot, shared with digest.c ---- */

typedef struct ims_repl__snapview ims_repl__snapview;

/** The layout of an open snapview. */
typedef struct {
	const char *prefix; /* "rbd_data.<id>" */
	uint64_t size, obj_size, snap_id;
	bool simple; /* one object per object-size extent */
	bool parent; /* absent objects read from a parent, not as zeros */
} ims_repl__snapview_info;

/** Open @p pool/@p image at @p snap on @p site, read-only; its data objects at the snapshot.
 *  With @p by_id, at the snapshot of that id (a group snapshot's), @p snap naming it. */
int ims_repl__snapview_open(ims_repl__snapview **out, ims_repl__snapview_info *info, ims_site *site,
			    const char *pool, const char *image, const char *snap, uint64_t by_id);
void ims_repl__snapview_close(ims_repl__snapview *v);

/**
 * Object @p objno at the snapshot: its length (clamped to its extent) and the OSD's xxhash64 of
 * each @p chunk bytes of it (the last may be short) into @p sums ((obj_size / chunk) + 1).
 * @returns -ENOENT if the object does not exist at the snapshot.
 */
int ims_repl__snapview_object(uint64_t *len, uint64_t *sums, ims_repl__snapview *v, uint64_t objno,
			      uint32_t chunk);

/** Read [@p off, +@p len) of the image at the snapshot (zeros past its end). */
int ims_repl__snapview_read(char *buf, ims_repl__snapview *v, uint64_t off, size_t len);

#endif
