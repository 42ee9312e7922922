/*
 * replicator/replicator.h: snapshot-based replication of one image from its primary site to a
 * secondary site.
 *
 * One call of ims_repl_sync() is one cycle:
 *   1. find the base: the newest replication snapshot sealed on the secondary that the
 *      primary still has (none: a full copy);
 *   2. if nothing changed since the base (a fast-diff walk of the head), stop: the target
 *      already holds the primary's state as of now; else take a new snapshot on the
 *      primary, "imgstore-repl-<unix ms>" (its name carries the primary-side time the lag is
 *      measured from), or resume the one a cut cycle left;
 *   3. carry the size over, then copy the extents rbd_diff_iterate2 reports between base and
 *      the new snapshot; extents that no longer hold data become discards, never data;
 *   4. seal: create the snapshot of the same name on the secondary, and only then advance;
 *   5. retention: keep the newest N replication snapshots on each side, never the one just
 *      sealed (the next cycle's base).
 * A secondary image is marked (metadata imgstore.repl.role = secondary); its head may hold a
 * half-applied delta, but every sealed snapshot equals the primary's of the same name.
 * Progress is checkpointed in RADOS (omap "imgstore.repl.checkpoints" in the primary's pool)
 * so a cut cycle resumes the same delta where it stopped.
 */
#ifndef IMS_REPLICATOR_REPLICATOR_H
#define IMS_REPLICATOR_REPLICATOR_H

#include <stdbool.h>
#include <stdint.h>

#include "store/image.h"
#include "store/site.h"

#define IMS_REPL_SNAP_PREFIX "imgstore-repl-"
#define IMS_REPL_CHECKPOINTS "imgstore.repl.checkpoints"

#define IMS_REPL_OPTS_VERSION 1
typedef struct {
	unsigned version;
	unsigned concurrency;     /* parallel copies; 0: 8 */
	uint64_t inflight_bytes;  /* data in flight; 0: 64 MiB */
	unsigned retention;       /* replication snapshots kept on each side; 0: 3 */
	uint64_t checkpoint_bytes;/* checkpoint after this much copied; 0: 16 MiB */
	ims_progress_fn progress; /* may be NULL; non-zero return cuts the cycle (resumable) */
	void *progress_ctx;
} ims_repl_opts;
#define IMS_REPL_OPTS_INIT { .version = IMS_REPL_OPTS_VERSION }

typedef struct {
	char base[64];          /* "" for a full copy */
	char sealed[64];        /* the snapshot this cycle sealed */
	bool full;
	bool resumed;           /* continued a cut cycle from its checkpoint */
	bool unchanged;         /* nothing changed since the base: no snapshot taken; the target
				 * holds the primary's state as of sealed_unix_ms (the check) */
	uint64_t size;          /* of the image at the sealed snapshot */
	uint64_t bytes_copied;  /* data read on the primary and written on the secondary */
	uint64_t bytes_discarded;
	uint64_t extents;
	double seconds;
	int64_t sealed_unix_ms; /* primary-side time of the sealed snapshot */
} ims_repl_result;

/**
 * Run one replication cycle of @p pool/@p image from @p src to @p dst (same pool name).
 *
 * @returns -ENOENT if the image does not exist on @p src,
 *          -EEXIST if @p dst has an image of that name that is not a replica of it,
 *          -EBUSY if the image on @p src is itself a secondary,
 *          -ECANCELED if progress asked to stop (the checkpoint stays: the next call resumes),
 *          -ETIMEDOUT if a site does not answer; an error of the cluster otherwise.
 *          On any error the secondary's sealed snapshots are unchanged.
 */
int ims_repl_sync(ims_repl_result *out, ims_site *src, ims_site *dst, const char *pool,
		  const char *image, const ims_repl_opts *opts);

/**
 * The newest replication snapshot sealed on @p site's copy of the image, and its primary-side
 * time (unix ms).
 *
 * @returns -ENOENT if the image has none (or does not exist).
 */
int ims_repl_last_sealed(ims_site *site, const char *pool, const char *image, char *name, size_t len,
			 int64_t *unix_ms);

/** The unix ms encoded in a replication snapshot's name; -1 if it is not one. */
int64_t ims_repl_snap_time(const char *snap_name);

#endif
