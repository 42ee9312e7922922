/*
 * replicator/scheduler.h: keeps every replicated image of a site within its RPO.
 *
 * Policies (image, target site, mode, RPO) live in RADOS in the site's default pool (omap of
 * "imgstore.repl.policies"), and so does the last status of each (omap "imgstore.repl.status"),
 * so any daemon of the site sees them and carries on. A cycle of an image starts when its lag
 * (now minus the primary-side time of its newest sealed snapshot) reaches half its RPO, so
 * that lag stays under the RPO while a cycle runs. A bounded pool of workers runs the cycles,
 * oldest due first. One image never has two cycles at once: a cycle holds a RADOS lock with
 * expiry ("imgstore.repl.lock"), renewed while it runs, so a second daemon of the site skips
 * it, and takes over when the first dies. Failures retry with backoff (2 s doubling to 60 s).
 * When lag exceeds the RPO: a warning line, imgstore_rpo_violation set to 1.
 */
#ifndef IMS_REPLICATOR_SCHEDULER_H
#define IMS_REPLICATOR_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "replicator/failover.h"
#include "replicator/group.h"
#include "replicator/replicator.h"
#include "store/site.h"

/* The RADOS lock a pair's owner holds on its object (rados lock info shows the holder). */
#define IMS_REPL_LOCK "imgstore.repl.lock"

typedef struct ims_repl_sched ims_repl_sched;

/** Find (connect if needed) the peer site @p name; the scheduler does not close it. */
typedef int (*ims_repl_peer_fn)(void *ctx, const char *name, ims_site **out);

/* What the scheduler tells its owner about, once per transition. */
typedef enum {
	IMS_REPL_EVENT_RPO_VIOLATION,	/* lag went over the RPO */
	IMS_REPL_EVENT_RPO_RECOVERED,	/* back within it */
	IMS_REPL_EVENT_VERIFY_MISMATCH, /* a verify found the copy different */
} ims_repl_event_kind;

typedef struct {
	ims_repl_event_kind kind;
	const char *pool, *image, *target;
	uint32_t rpo_seconds;
	double lag_seconds;
	int64_t unix_ms;    /* when it was seen */
	const char *detail; /* a one-line message */
} ims_repl_event;

/**
 * Called from the scheduler's thread, with its lock held: copy what is needed and return at
 * once (no I/O, no call back into the scheduler). The strings live for the call only.
 */
typedef void (*ims_repl_event_fn)(void *ctx, const ims_repl_event *ev);

#define IMS_REPL_SCHED_OPTS_VERSION 1
typedef struct {
	unsigned version;
	ims_site *local;
	const char *pool; /* where policies and status live */
	ims_repl_peer_fn peer;
	void *peer_ctx;
	unsigned workers;	 /* cycles at once; 0: 4 */
	unsigned lock_seconds;	 /* expiry of the per-image lock; 0: 60 */
	const char *owner;	 /* this daemon, for the lock and messages */
	ims_repl_opts copy;	 /* concurrency, in-flight bytes, retention of each cycle */
	unsigned tick_ms;	 /* how often due images are looked for; 0: 500 */
	ims_repl_event_fn event; /* may be NULL */
	void *event_ctx;
	/* bytes per second the cycles to a target may send, shared by them (0: no limit); may be
	 * NULL; called with peer_ctx the first time a target is synced */
	uint64_t (*bandwidth)(void *ctx, const char *target);
	/* whether site @p name answers, without waiting for it (the daemon's probes); may be
	 * NULL. A due cycle to a site that does not answer is not started: it would only hold a
	 * worker until the cluster's timeout. Called with peer_ctx. */
	bool (*site_up)(void *ctx, const char *name);
	/* after a cycle of an image to @p target sealed a new snapshot (@p res->sealed, unless
	 * @p res->unchanged) or shipped scheduled snapshots there (@p res->shipped): tamper
	 * evidence, the digests of the primary's snapshot and of the copies on @p target, queued;
	 * must not block; may be NULL. */
	void (*sealed)(void *ctx, const char *target, const char *pool, const char *image,
		       const ims_repl_result *res);
	void *sealed_ctx;
	/* the same after a group's cycle sealed a cut (a group snapshot @p snap of @p group) on
	 * @p target, with sealed_ctx; may be NULL */
	void (*sealed_group)(void *ctx, const char *target, const char *pool, const char *group,
			     const char *snap);
	/* not a member of the site's replicating daemons (IMS_REPL_MEMBERS): runs every pair it
	 * knows and keeps every secondary it holds, as a daemon alone on its site does; the
	 * daemons share (false) */
	bool alone;
} ims_repl_sched_opts;
#define IMS_REPL_SCHED_OPTS_INIT                                                                   \
	{                                                                                          \
		.version = IMS_REPL_SCHED_OPTS_VERSION, .copy = IMS_REPL_OPTS_INIT                 \
	}

/** How a pair replicates. */
typedef enum {
	IMS_REPL_ASYNC = 0, /* a cycle every RPO */
	IMS_REPL_SYNC,	    /* also: a snapshot taken through the API is sealed on the target
			       before the call returns (ims_repl_seal_snapshot()) */
} ims_repl_mode;

/** "async" or "sync": the word in records, on the wire and in messages. */
const char *ims_repl_mode_name(ims_repl_mode mode);

/** @p text as a mode; NULL and "" are async. @returns -EINVAL naming @p text otherwise. */
int ims_repl_mode_parse(ims_repl_mode *out, const char *text);

typedef struct {
	char image[600]; /* "POOL/IMAGE" */
	char target[64];
	char role[16];	/* "primary" */
	char state[16]; /* idle, syncing, error, paused */
	ims_repl_mode mode;
	uint32_t rpo_seconds;
	double lag_seconds; /* -1 before the first sealed snapshot */
	char last_sealed[64];
	uint64_t last_sync_bytes;
	double last_sync_seconds;
	char error[512];
	bool rpo_violated;
	uint64_t syncs, failures;
	uint32_t verify_every;	/* verify after every N cycles that sealed a snapshot; 0: never */
	char last_verified[64]; /* the snapshot the last verify compared */
	char last_verify[16];	/* "", "equal" or "mismatch" */
	uint64_t verify_failures;
	ims_repl_unit unit; /* a consistency group's pair: image is "POOL/GROUP" */
	/* the imgstored of the site that runs its cycles, by its lock cookie (instance name and
	 * site): this daemon, or the pair's home among the site's daemons; "" when another daemon
	 * holds its secondary, name unknown */
	char replicated_by[128];
} ims_repl_status;

int ims_repl_sched_start(ims_repl_sched **out, const ims_repl_sched_opts *opts);

/** Stop: no new cycles; running ones are cut (they resume from their checkpoints). NULL ok. */
void ims_repl_sched_stop(ims_repl_sched *s);

/**
 * Replicate @p pool/@p image to @p target with @p rpo_seconds; the first cycle starts at
 * once. Enabling an enabled pair updates its mode and RPO.
 *
 * @returns -ENOENT if the image or the peer is unknown, -EINVAL for a bad mode or RPO.
 */
int ims_repl_enable(ims_repl_status *out, ims_repl_sched *s, const char *pool, const char *image,
		    const char *target, ims_repl_mode mode, uint32_t rpo_seconds);

/**
 * Stop replicating. The secondary image and its sealed snapshots stay on @p target (a
 * consistent copy); the primary's replication snapshots are removed.
 *
 * @returns -ENOENT if the pair is not replicated.
 */
int ims_repl_disable(ims_repl_status *out, ims_repl_sched *s, const char *pool, const char *image,
		     const char *target);

/**
 * Sync mode: after a host's snapshot @p snap of @p pool/@p image, seal it on every target the
 * image replicates to in mode sync, before the caller reports success: one cycle, then the
 * same snapshot on the target when nothing was written between @p snap and the cycle's.
 *
 * @param[out] sealed_on the targets, comma-separated ("" if none is in mode sync).
 * @returns -EAGAIN if the image was written in between (the snapshot is then only local).
 */
int ims_repl_seal_snapshot(char *sealed_on, size_t len, ims_repl_sched *s, const char *pool,
			   const char *image, const char *snap);

/**
 * Start no cycle of a pair of the image or group (@p unit) @p pool/@p name to a target other
 * than @p own (NULL: every target), and no scheduled cycle of it at all, until
 * ims_repl_sched_resume(); wait until the running ones end: a failover of it to @p own runs
 * alone. Its own cycles (ims_repl_sync_now(), ims_repl_group_sync_now() to @p own) go on; one
 * to another target waits for the resume. Pauses nest.
 *
 * @returns -ENOMEM.
 */
int ims_repl_sched_pause(ims_repl_sched *s, ims_repl_unit unit, const char *pool, const char *name,
			 const char *own);

/** A failover's claim on an image or group among the daemons of a site. */
typedef struct ims_repl_claim ims_repl_claim;

/**
 * Claim @p pool/@p name, an image, a group or a site's images (@p kind "image", "group", "site":
 * @p name is then the old site) for a failover, failback or resync among every imgstored of this
 * site, @p what naming it in messages: a RADOS lock "handover:KIND:POOL/NAME" of
 * IMS_REPL_LOCK in the records pool, renewed while held and gone
 * the lock time (60 s) after its daemon died; one left by this daemon's previous run is broken,
 * one this daemon holds now is refused.
 * Another daemon of the site that was asked the same failover meanwhile would race it (through
 * the failover journal, which it would take for an interrupted one).
 * @returns -EBUSY (said: another daemon of the site, or this one, holds it), or the lock's
 *          error.
 */
int ims_repl_sched_claim(ims_repl_claim **out, ims_repl_sched *s, const char *kind,
			 const char *pool, const char *name, const char *what);

/**
 * Whether this daemon still holds claim @p k (renewed now): a renewal that failed (the records
 * pool slow past the lock time) lost it for good, and another daemon may hold it since.
 * @returns -ENOLCK (said).
 */
int ims_repl_sched_claim_held(ims_repl_sched *s, ims_repl_claim *k);

/** Let go of a claim (NULL: nothing). */
void ims_repl_sched_unclaim(ims_repl_sched *s, ims_repl_claim *k);

/** Undo one ims_repl_sched_pause(). */
void ims_repl_sched_resume(ims_repl_sched *s, ims_repl_unit unit, const char *pool,
			   const char *name);

/**
 * Stop replicating from this site without touching any snapshot: a failover hands the pair
 * to the new primary, whose base is the snapshot both sides keep.
 */
int ims_repl_sched_hand_over(ims_repl_status *out, ims_repl_sched *s, const char *pool,
			     const char *image, const char *target);

/** The same for a consistency group's pair (ims_repl_group_enable()). */
int ims_repl_group_hand_over(ims_repl_status *out, ims_repl_sched *s, const char *pool,
			     const char *group, const char *target);

/** Write (or remove) the replication policy of @p unit @p pool/@p name in @p site's records in
 *  @p policy_pool: that site's daemons pick it up within seconds (the reverse direction after a
 *  failover). */
int ims_repl_policy_put(ims_site *site, const char *policy_pool, const char *pool, const char *name,
			ims_repl_unit unit, const char *target, ims_repl_mode mode, uint32_t rpo);
int ims_repl_policy_remove(ims_site *site, const char *policy_pool, const char *pool,
			   const char *name, ims_repl_unit unit, const char *target);

/**
 * Whether image @p pool/@p image is replicated from @p site (a policy in @p policy_pool names
 * it): 1 and the first target site's name in @p target; 0 if not.
 */
int ims_repl_policy_find(char *target, size_t len, ims_site *site, const char *policy_pool,
			 const char *pool, const char *image);

/**
 * Resolve a split-brain: make @p target's copy (an old primary that came back) a secondary of
 * this site again, keeping what it wrote after the common snapshot as a recovery snapshot
 * (ims_repl_rejoin()); the next cycle ships the delta since the common snapshot.
 */
int ims_repl_resync(ims_repl_divergence *out, ims_repl_sched *s, const char *pool,
		    const char *image, const char *target);

/**
 * The same for group @p pool/@p group: @p target's copy made a secondary again at
 * @p generation (replicator/group.h, ims_repl_group_rejoin(); @p plan says what was done), no
 * cycle of the pair meanwhile.
 */
int ims_repl_group_resync(char *plan, size_t len, ims_repl_sched *s, const char *pool,
			  const char *group, const char *target, uint64_t generation);

/**
 * The RPO that the pair of @p unit @p pool/@p name back to site @p source should have: the RPO
 * of the pair that replicates it from @p source to this site, as @p source's daemon recorded it
 * here after a cycle (a forced failover sets the way back with it, @p source being lost, so
 * that a failback keeps it); @p fallback when none is recorded or it cannot be read.
 */
uint32_t ims_repl_sched_reverse_rpo(ims_repl_sched *s, const char *pool, const char *name,
				    ims_repl_unit unit, const char *source, uint32_t fallback);

/** Statuses of every pair (@p pool/@p image NULL) or of one image. *out malloc'ed. */
int ims_repl_sched_status(ims_repl_status **out, size_t *count, ims_repl_sched *s, const char *pool,
			  const char *image);

/**
 * Run a cycle of one pair now (waiting for a running one to end first) and return what it
 * sealed: the image's state at the call is then on the target. With @p progress, a cycle of
 * the pair another daemon of the site runs is waited for too, up to the lock expiry, and
 * @p progress is asked every half second meanwhile (nonzero cancels: -ECANCELED); without
 * one, such a cycle refuses the call at once (-EBUSY, res.refused IMS_REPL_REFUSED_CYCLE).
 *
 * @returns -ENOENT if the pair is not replicated, -EBUSY if another daemon's cycle outlasted
 *          the wait; the cycle's error otherwise.
 */
int ims_repl_sync_now(ims_repl_result *out, ims_repl_sched *s, const char *pool, const char *image,
		      const char *target, ims_progress_fn progress, void *ctx);

/**
 * Verify after every @p every cycles that seal a snapshot (0: never); kept with the policy.
 *
 * @returns -ENOENT if the pair is not replicated.
 */
int ims_repl_set_verify_every(ims_repl_sched *s, const char *pool, const char *image,
			      const char *target, uint32_t every);

/**
 * Verify the pair now (waiting for a running cycle to end first), see ims_repl_verify(), and
 * record the verdict in its status: a mismatch puts the pair in state error with the message
 * until a later verify finds it equal.
 *
 * @param[out] out free with ims_repl_verify_result_free().
 * @returns -ENOENT if the pair is not replicated; the error of ims_repl_verify() otherwise.
 */
int ims_repl_sched_verify(ims_repl_verify_result **out, ims_repl_sched *s, const char *pool,
			  const char *image, const char *target, const ims_repl_verify_opts *opts);

/* ---- consistency groups (replicator/group.h): one policy, one lock, one RPO per group and
 * target; a cycle cuts every member at one point. An image of a replicated group is not
 * replicated alone. ---- */

/**
 * Replicate group @p pool/@p group to @p target as one unit; the first cycle starts at once.
 *
 * @returns -ENOENT for an unknown group or peer, -EINVAL for a group without images or a bad
 *          mode or RPO, -EBUSY if one of its images is replicated on its own.
 */
int ims_repl_group_enable(ims_repl_status *out, ims_repl_sched *s, const char *pool,
			  const char *group, const char *target, ims_repl_mode mode, uint32_t rpo);

/**
 * Stop replicating the group: the secondary keeps its members and cuts; the primary's cuts go.
 *
 * @returns -ENOENT if the group is not replicated to @p target.
 */
int ims_repl_group_disable(ims_repl_status *out, ims_repl_sched *s, const char *pool,
			   const char *group, const char *target);

/** The group's pairs (status.unit is IMS_REPL_GROUP). *out malloc'ed. */
int ims_repl_group_status(ims_repl_status **out, size_t *count, ims_repl_sched *s, const char *pool,
			  const char *group);

/**
 * Cut the group now and ship the cut (waiting for a running cycle to end first): the state of
 * every member at the call is then on @p target, at out->sealed.
 *
 * @returns -ENOENT if the group is not replicated to @p target; the cycle's error otherwise.
 */
int ims_repl_group_sync_now(ims_repl_result *out, ims_repl_sched *s, const char *pool,
			    const char *group, const char *target, ims_progress_fn progress,
			    void *ctx);

/**
 * Verify the group's pair now, see ims_repl_group_verify(): after a running cycle of this
 * daemon, under the pair's lock, waiting up to the lock expiry for a cycle another daemon of
 * the site runs (none of their retention removes the cut compared meanwhile).
 *
 * @param[out] out free with ims_repl_group_verify_result_free() (zeroed on failure).
 * @returns -ENOENT if the group is not replicated to @p target, -EBUSY if another daemon's
 *          cycle outlasted the wait; the error of ims_repl_group_verify() otherwise.
 */
int ims_repl_group_verify_now(ims_repl_group_verify_result *out, ims_repl_sched *s,
			      const char *pool, const char *group, const char *target,
			      const ims_repl_verify_opts *opts);

/** Whether @p unit @p pool/@p name is replicated from this site. */
bool ims_repl_sched_has(ims_repl_sched *s, const char *pool, const char *name, ims_repl_unit unit);

/** Prometheus lines: lag, RPO, violation, bytes, durations, failures. */
void ims_repl_sched_metrics(ims_repl_sched *s, FILE *f);

#endif
