/*
 * replicator/failover.h: the roles of an image's copies on two sites, and the steps that move
 * the primary role between them: fence, demote, promote, and rejoin an old primary that comes
 * back after a forced failover (split-brain).
 *
 * Each copy carries its role in its RBD metadata:
 *   imgstore.repl.role        "secondary" on a replica; absent or "primary" on the primary
 *   imgstore.repl.source      on a secondary: "SITE/POOL/IMAGE" of its primary
 *   imgstore.generation       bumped by every promotion; host leases carry it (fencing)
 *   imgstore.repl.state       "failing-over" while a planned failover runs (no new leases)
 * The daemon orchestrates these steps (daemon/failover.c); here each is one idempotent step
 * on one or two sites.
 */
#ifndef IMS_REPLICATOR_FAILOVER_H
#define IMS_REPLICATOR_FAILOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/image.h"
#include "store/site.h"

#define IMS_REPL_META_ROLE	 "imgstore.repl.role"
#define IMS_REPL_META_SOURCE	 "imgstore.repl.source"
#define IMS_REPL_META_GENERATION "imgstore.generation"
#define IMS_REPL_META_STATE	 "imgstore.repl.state"
#define IMS_REPL_RECOVERY_PREFIX IMS_SNAP_RESERVED_PREFIX "recovery-" /* "imgstore-recovery-" */

/** One site's copy of an image, as its metadata and snapshots say. */
typedef struct {
	bool secondary;
	char source[512];     /* secondary: "SITE/POOL/IMAGE" of its primary */
	char state[32];	      /* "" or "failing-over" */
	uint64_t generation;  /* 0 before any promotion */
	char last_sealed[64]; /* newest replication snapshot; "" if none */
	uint64_t size;
} ims_repl_side;

/** @returns -ENOENT if the image does not exist on @p site. */
int ims_repl_side_get(ims_repl_side *out, ims_site *site, const char *pool, const char *image);

/** Set (or, with NULL, clear) imgstore.repl.state on @p site's copy. */
int ims_repl_set_state(ims_site *site, const char *pool, const char *image, const char *state);

/** What a pair, a failover and its journal record act on. */
typedef enum {
	IMS_REPL_IMAGE = 0,
	IMS_REPL_GROUP, /* a consistency group: its members replicate and move as one unit */
} ims_repl_unit;

/** "image" or "group": the word in messages. */
const char *ims_repl_unit_name(ims_repl_unit u);

/*
 * The journal of a planned failover: its step, written in RADOS (an omap record per image in
 * the pool, on the site that runs it) before the step is done, and removed when it is over. A
 * daemon killed half-way leaves it behind; the same command run again reads it and finishes
 * the job from there (or rolls it back when it cannot), and `repl status` shows it.
 */
#define IMS_REPL_FAILOVERS "imgstore.repl.failovers"

typedef enum {
	IMS_REPL_STEP_SYNC = 1, /* catching up, then leases closed and writers fenced, final sync */
	IMS_REPL_STEP_DEMOTE,	/* this copy is being made a secondary of the target */
	IMS_REPL_STEP_PROMOTE,	/* the target's copy is being promoted */
	IMS_REPL_STEP_REVERSE,	/* replication is being handed to the target, back to this site */
} ims_repl_step;

typedef struct {
	char target[64];
	ims_repl_step step;
	uint64_t generation;	 /* the new primary's */
	uint64_t old_generation; /* this copy's before it, for a rollback */
	int64_t started_ms;
	bool forced;	    /* a forced failover, run on the new primary's site (target: the old) */
	ims_repl_unit unit; /* a group's record is apart from an image's of the same name */
	char cut[64];	    /* a group's: the cut its members fail over at */
} ims_repl_journal;

/** The step's name ("sync", "demote", "promote", "reverse"). */
const char *ims_repl_step_name(ims_repl_step step);

/** Record @p j for @p pool/@p name (an image or a group: j->unit) on @p site, before the step
 *  it names is done. */
int ims_repl_journal_put(ims_site *site, const char *pool, const char *name,
			 const ims_repl_journal *j);

/** @returns -ENOENT if no failover of @p unit @p pool/@p name is recorded. */
int ims_repl_journal_get(ims_repl_journal *out, ims_site *site, const char *pool, const char *name,
			 ims_repl_unit unit);

/** Remove the record: the failover is over (done or rolled back). */
int ims_repl_journal_clear(ims_site *site, const char *pool, const char *name, ims_repl_unit unit);

/**
 * How many failovers (of images and groups) are recorded on @p site, in every pool: begun
 * there and not finished, whether they are running or were interrupted. The daemon exports it
 * as imgstore_failovers_in_progress.
 *
 * @returns 0, or the cluster's error (a pool listing, or a record object that cannot be read).
 */
int ims_repl_journal_count(unsigned *count, ims_site *site);

/**
 * Fence the writers of @p site's copy: break every holder of its exclusive lock, which
 * blocklists the holder's address in that cluster, so its in-flight and later writes fail.
 *
 * @param[out] fenced how many holders were broken; may be NULL.
 */
int ims_repl_fence(unsigned *fenced, ims_site *site, const char *pool, const char *image);

/** Mark @p site's copy a secondary of @p primary_site at @p generation. */
int ims_repl_demote(ims_site *site, const char *pool, const char *image, const char *primary_site,
		    uint64_t generation);

/**
 * Make @p site's copy the primary at @p generation. With @p rollback, its head is first rolled
 * back to its newest sealed replication snapshot if it differs from it (a half-applied delta).
 *
 * @param[out] at the snapshot whose state the promoted copy starts from ("" if none).
 * @returns -ENOENT if the copy does not exist.
 */
int ims_repl_promote(char *at, size_t len, ims_site *site, const char *pool, const char *image,
		     uint64_t generation, bool rollback);

/** What an old primary holds compared with the current primary. */
typedef struct {
	char common[64];  /* newest replication snapshot both copies have; "" if none */
	bool old_wrote;	  /* the old primary changed after common (its late writes) */
	bool new_wrote;	  /* the current primary changed after common */
	bool split_brain; /* old_wrote: rejoining loses those writes unless kept */
	char plan[512];	  /* one line: what ims_repl_rejoin() will do */
} ims_repl_divergence;

/**
 * Compare @p old's copy (a primary that came back after @p cur was promoted) with @p cur's.
 *
 * @returns -ENOENT if either copy is missing.
 */
int ims_repl_divergence_check(ims_repl_divergence *out, ims_site *cur, ims_site *old,
			      const char *pool, const char *image);

/**
 * Make @p old's copy a secondary of @p cur again, so that replication from @p cur ships only
 * the delta since the newest common snapshot: fence its writers; if it wrote after that
 * snapshot, keep its head as snapshot "imgstore-recovery-<unix ms>"; roll it back to the common
 * snapshot; drop its replication snapshots newer than it; demote it at @p generation. With no
 * common snapshot the copy is kept as a recovery snapshot and the next cycle copies in full.
 *
 * @param[out] out what was found and done; may be NULL. out->plan names the recovery snapshot.
 */
int ims_repl_rejoin(ims_repl_divergence *out, ims_site *cur, ims_site *old, const char *pool,
		    const char *image, uint64_t generation);

#endif
