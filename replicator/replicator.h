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
 *   5. retention: keep the newest N replication snapshots on each side, never the base or
 *      the target (run beside step 3: the secondary keeps N - 1 until the seal).
 * Scheduled snapshots (replicator/snapsched.h) the primary took since the base are shipped
 * before step 2, each as the delta from the one before and a snapshot of the same name on the
 * secondary; those the primary's retention removed are removed from the secondary too.
 * A secondary image is marked (metadata imgstore.repl.role = secondary); its head may hold a
 * half-applied delta, but every sealed snapshot equals the primary's of the same name.
 * Progress is checkpointed in RADOS (omap "imgstore.repl.checkpoints" in the primary's pool)
 * so a cut cycle resumes the same delta where it stopped.
 */
#ifndef IMS_REPLICATOR_REPLICATOR_H
#define IMS_REPLICATOR_REPLICATOR_H

#include <stdbool.h>
#include <stdint.h>

#include "common/ratelimit.h"
#include "store/image.h"
#include "store/site.h"

#define IMS_REPL_SNAP_PREFIX IMS_SNAP_RESERVED_PREFIX "repl-" /* "imgstore-repl-" */
#define IMS_REPL_CHECKPOINTS "imgstore.repl.checkpoints"

/*
 * What a cycle that found nothing changed saw of the primary: the RADOS object versions of its
 * header and of its object map. While both stay the same, nothing was written: librbd marks an
 * object in the object map before its first write after a snapshot (and a cycle that found
 * nothing changed saw every object clean), and any resize, snapshot, metadata or lock change
 * writes the header. The next cycle then tells "still unchanged" from two stats, without
 * opening the image. Kept by the caller between cycles of one pair; only images with a valid
 * fast-diff object map get one; a full check still runs at least every IMS_REPL_MARK_MAX_MS.
 */
#define IMS_REPL_MARK_MAX_MS (10 * 60 * 1000)
typedef struct {
	bool valid;
	char id[32]; /* the primary image's id */
	uint64_t header_version, map_version;
	uint64_t size;
	char base[64];
	int64_t checked_unix_ms; /* the full check that made it */
} ims_repl_mark;

#define IMS_REPL_OPTS_VERSION 1
typedef struct {
	unsigned version;
	unsigned concurrency;	   /* parallel I/Os; 0: 16 */
	uint64_t inflight_bytes;   /* memory the copy holds (its buffers and librbd's buffers of
				      reads); 0: 64 MiB */
	unsigned retention;	   /* replication snapshots kept on each side; 0: 3 */
	uint64_t checkpoint_bytes; /* checkpoint after this much copied; 0: 16 MiB */
	ims_progress_fn progress;  /* may be NULL; non-zero return cuts the cycle (resumable) */
	void *progress_ctx;
	ims_ratelimit *bandwidth; /* may be NULL; data read for the secondary is taken from it */
	/* may be NULL; asked with progress_ctx right before the secondary's snapshot is sealed:
	 * non-zero (the caller's lock on the pair is lost) stops the cycle unsealed, resumable */
	int (*may_seal)(void *ctx);
	/*
	 * A member's part of a consistency group's cut (replicator/group.h); NULL/0 for a cycle of
	 * one image. The group's cycle takes the snapshots; this call then takes none, finds no
	 * base of its own, does no fast-diff check and no retention: it copies the extents of
	 * diff(cut_from -> the snapshot cut_snap_id), read at cut_snap_id, and seals `cut` on the
	 * secondary. A cut call resumes from its checkpoint like a cycle.
	 */
	const char *cut;      /* the snapshot name to seal on the secondary */
	uint64_t cut_snap_id; /* the primary's snapshot to read (a group snapshot's, by id) */
	const char *cut_from; /* a user snapshot of the primary to diff from; NULL or "": full */
	/* may be NULL; in and out: the pair's mark of its last unchanged check (above). A cycle
	 * of one image uses it and leaves it valid only when it found nothing changed. */
	ims_repl_mark *mark;
	/* may be NULL; the records pool of both sites: a cycle of one image copies the image's
	 * snapshot schedule (replicator/snapsched.h) there from the primary's site to the
	 * secondary's, which runs it once promoted */
	const char *records_pool;
} ims_repl_opts;
#define IMS_REPL_OPTS_INIT                                                                         \
	{                                                                                          \
		.version = IMS_REPL_OPTS_VERSION                                                   \
	}

/* Why a cycle was refused (-EBUSY) by the state of the pair rather than by a fault: what the
 * scheduler acts on (replicator/scheduler.c), never the error's text. */
typedef enum {
	IMS_REPL_REFUSED_NONE = 0,
	IMS_REPL_REFUSED_SECONDARY, /* the source (or a member of the group) is a secondary */
	IMS_REPL_REFUSED_HELD,	    /* another client holds the secondary against writers */
	IMS_REPL_REFUSED_CYCLE,	    /* another daemon runs the pair's cycle (the scheduler's) */
} ims_repl_refusal;

#define IMS_REPL_SHIPPED_MAX 16

typedef struct {
	char base[64];	 /* "" for a full copy */
	char sealed[64]; /* the snapshot this cycle sealed */
	/* the scheduled snapshots this cycle shipped to the secondary, oldest first: the first
	 * IMS_REPL_SHIPPED_MAX of them (nshipped counts them all) */
	char shipped[IMS_REPL_SHIPPED_MAX][64];
	unsigned nshipped;
	bool full;
	bool resumed;	       /* continued a cut cycle from its checkpoint */
	bool unchanged;	       /* nothing changed since the base: no snapshot taken; the target
				* holds the primary's state as of sealed_unix_ms (the check) */
	bool quick;	       /* unchanged, told by opts.mark without opening the image */
	uint64_t size;	       /* of the image at the sealed snapshot */
	uint64_t bytes_copied; /* data read on the primary and written on the secondary */
	uint64_t bytes_discarded;
	uint64_t extents;
	double seconds;
	int64_t sealed_unix_ms;	  /* primary-side time of the sealed snapshot */
	ims_repl_refusal refused; /* set on failure too (the rest is then zero) */
} ims_repl_result;

/**
 * Run one replication cycle of @p pool/@p image from @p src to @p dst (same pool name).
 *
 * @returns -ENOENT if the image does not exist on @p src,
 *          -EEXIST if @p dst has an image of that name that is not a replica of it,
 *          -EBUSY if the image on @p src is itself a secondary,
 *          -ECANCELED if progress asked to stop (the checkpoint stays: the next call resumes),
 *          -ETIMEDOUT if a site does not answer; an error of the cluster otherwise.
 *          On any error the secondary's sealed snapshots are unchanged, and @p out holds
 *          only `refused` (why an -EBUSY was a refusal, if it was one).
 */
int ims_repl_sync(ims_repl_result *out, ims_site *src, ims_site *dst, const char *pool,
		  const char *image, const ims_repl_opts *opts);

/**
 * The newest replication snapshot sealed on @p site's copy of the image, and its primary-side
 * time (unix ms).
 *
 * @returns -ENOENT if the image has none (or does not exist).
 */
int ims_repl_last_sealed(char *name, size_t len, int64_t *unix_ms, ims_site *site, const char *pool,
			 const char *image);

/**
 * Forget the pair pool/image -> @p target on the primary @p site: its recorded base and any
 * cut cycle's checkpoint; with @p drop_snapshots also every replication snapshot of the image
 * that no other target still needs (their bases and running cycles stay).
 *
 * @returns 0, or an error of RADOS or librbd (-ENOENT of the image is not one).
 */
int ims_repl_forget(ims_site *site, const char *pool, const char *image, const char *target,
		    bool drop_snapshots);

/** The unix ms encoded in a replication snapshot's name; -1 if it is not one. */
int64_t ims_repl_snap_time(const char *snap_name);

/* ---------------------------------------------------------------------------------------- */
/* verify: compare a sealed snapshot on both sites without shipping the data */

#define IMS_REPL_VERIFY_OPTS_VERSION 1
typedef struct {
	unsigned version;
	const char *snap;	  /* NULL or "": the newest replication snapshot sealed on the
				   * secondary that the primary still has */
	unsigned concurrency;	  /* objects compared at once; 0: 8 */
	uint32_t chunk_size;	  /* checksum granularity: a power of two from 4 KiB to the object
				   * size; mismatches are reported in these units; 0: 64 KiB */
	ims_progress_fn progress; /* (objects done, objects); may be NULL; non-zero cuts */
	void *progress_ctx;
	uint64_t src_snap_id; /* non-zero: the primary at this snapshot id (a member's snapshot
			       * of a group's cut) instead of @c snap, which then names only the
			       * secondary's (required) */
} ims_repl_verify_opts;
#define IMS_REPL_VERIFY_OPTS_INIT                                                                  \
	{                                                                                          \
		.version = IMS_REPL_VERIFY_OPTS_VERSION                                            \
	}

typedef struct {
	uint64_t offset, length;
} ims_repl_extent;

typedef struct {
	char snapshot[64];		       /* the snapshot compared */
	bool equal;			       /* the verdict: same size and same bytes */
	uint64_t size_primary, size_secondary; /* of the image at the snapshot */
	uint64_t object_size;
	uint32_t chunk_size;
	uint64_t objects;	   /* data objects compared */
	uint64_t objects_fallback; /* of those, compared by reading their bytes on both sides */
	uint64_t bytes_covered;	   /* image bytes compared */
	uint64_t bytes_read;	   /* read by the fallbacks, both sides together */
	double seconds;
	ims_repl_extent *mismatches; /* differing image extents, merged, by offset; owned */
	size_t nmismatches;
} ims_repl_verify_result;

/**
 * Verify the copy of @p pool/@p image on @p dst against the primary on @p src: each cluster
 * computes xxhash64 checksums of its own data objects at the snapshot (rados checksum op,
 * one per chunk), and only the checksums cross the network. An object whose existence or
 * length differs between the sides (absent and short objects read as zeros), of an image
 * with a parent or a striping layout, or whose checksum op fails, is compared by reading its
 * extent through librbd on both sides instead (counted in objects_fallback).
 *
 * @param[out] out the report, also when the copy differs (then equal is false); free with
 *             ims_repl_verify_result_free().
 * @returns -ENOENT if the image or the snapshot is missing on a site, or no replication
 *          snapshot is sealed on both, -EINVAL for bad options, -ECANCELED if progress asked
 *          to stop, -ETIMEDOUT if a site does not answer; an error of the cluster otherwise.
 */
int ims_repl_verify(ims_repl_verify_result **out, ims_site *src, ims_site *dst, const char *pool,
		    const char *image, const ims_repl_verify_opts *opts);

/** Free a report of ims_repl_verify(); NULL is fine. */
void ims_repl_verify_result_free(ims_repl_verify_result *res);

#endif
