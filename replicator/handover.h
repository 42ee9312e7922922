/*
 * replicator/handover.h: the failover protocol. It hands the primary role of an image or a
 * consistency group from one site to another, in order and with a journal:
 *
 *   planned (run by the primary's site): catch up, close new leases, wait for the hosts to
 *   release theirs, break the rest and fence the writers, final sync, demote here, promote the
 *   target at a new generation (rolled back here if that fails), then hand replication over to
 *   the target, back to this site. Nothing written before the fence is lost.
 *
 *   forced (run by the site that becomes the primary, its old primary's site lost): promote this
 *   copy at its last sealed snapshot at a new generation; if the old primary answers, fence it
 *   and make it a secondary at once, keeping what it wrote since as a recovery snapshot.
 *
 * Each step is recorded first (replicator/failover.h's journal), so the same call made again
 * after a daemon was killed half-way finishes the job or rolls it back. The steps on the copies
 * are replicator/failover.h's and replicator/group.h's; this module puts them in order. What it
 * needs of the daemon that runs it (its peers, the host leases, the health of the sites, the
 * progress of the operation) it asks through ims_handover_hooks.
 */
#ifndef IMS_REPLICATOR_HANDOVER_H
#define IMS_REPLICATOR_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/spec.h"
#include "replicator/scheduler.h"
#include "store/site.h"

/** What the protocol asks of the daemon that runs it; every hook gets ims_handover_env.ctx. */
typedef struct {
	/** The peer site @p name, connected on first use. */
	int (*peer)(void *ctx, const char *name, ims_site **out);
	/** The pool that peer site @p name keeps its records (replication policies) in. */
	const char *(*peer_pool)(void *ctx, const char *name);
	/** Whether site @p name answers its health probes now (in every PG or only some). */
	bool (*site_up)(void *ctx, const char *name);
	/** Whether site @p name answers its probes in some PGs only; may be NULL (never). */
	bool (*site_partly)(void *ctx, const char *name);
	/** 1 if image (with @p group: group) @p pool/@p copy on site @p name cannot be opened
	 *  by what its probes say (its pool's rbd_info, the object its id is in, or its header
	 *  in a PG silent in the last two probes), saying which into @p why; else 0. May be NULL
	 *  (never). */
	int (*copy_silent)(void *ctx, const char *name, const char *pool, const char *copy,
			   bool group, char *why, size_t len);
	/** 1 (and the host's name) if a live lease is held on @p pool/@p image, else 0, or < 0. */
	int (*leased)(void *ctx, const char *pool, const char *image, char *host, size_t len);
	/** Break the lease of @p pool/@p image, live or not; @p broken counts them. */
	int (*break_leases)(void *ctx, const char *pool, const char *image, unsigned *broken);
	/** Progress of the whole job (done, total; 0, 0 is a keep-alive); non-zero: cancelled. */
	ims_progress_fn progress;
	/** One line of detail (a site failover: one per image or group); may be NULL. */
	void (*detail)(void *ctx, const char *line);
	/**
	 * A forced failover knows its outcome while it goes on: every image and group it fails
	 * over is the primary on this site (none failed), and what is left is the old site's
	 * copies, made secondaries (slow when that site answers partly: each silent object
	 * waits for the peer's osd_timeout). @p line says so. A site's failover
	 * (ims_handover_site()) tells it once its last unit is promoted while old copies are
	 * left; one of an image or a group, once it is promoted, when its old site answers
	 * partly. May be NULL.
	 */
	void (*decided)(void *ctx, const char *line);
} ims_handover_hooks;

/** The most bytes of the decided() line, its NUL included (an operation's result). */
#define IMS_HANDOVER_DECIDED_MAX 512

/** The site that runs the protocol, and its daemon. */
typedef struct {
	ims_site *site;	      /* this site */
	ims_repl_sched *repl; /* its replication scheduler */
	uint32_t rpo;	      /* seconds: the RPO of a pair set up in reverse when none is known */
	const ims_handover_hooks *hooks;
	void *ctx;
} ims_handover_env;

typedef enum {
	IMS_HANDOVER_PLANNED = 0, /* run by the primary's site: nothing written is lost */
	IMS_HANDOVER_FORCED,	  /* run by the new primary's site: the old one is lost */
} ims_handover_mode;

typedef struct {
	ims_repl_unit unit; /* an image, or a group whose members move as one unit */
	ims_handover_mode mode;
	char pool[IMS_NAME_MAX + 1];
	char name[IMS_NAME_MAX + 1]; /* the image or group; ims_handover_site(): unused */
	char target[64];	     /* the site that becomes the primary (resync: the peer) */
	char from[64];		     /* ims_handover_site(): the site whose primaries move */
	unsigned wait_s;	     /* how long hosts get to release their leases; 0: 30 */
} ims_handover_req;

/**
 * Fail over image or group @p q->name of @p q->pool to site @p q->target, planned or forced
 * (above). An interrupted one is finished (or rolled back) by the same call.
 *
 * @param[out] said one line: what was done.
 * @returns 0, or a negative errno with ims_error_last() saying what happened and what did not.
 */
int ims_handover_failover(char *said, size_t said_len, const ims_handover_env *e,
			  const ims_handover_req *q);

/**
 * Fail over every image and group of @p q->pool whose primary is site @p q->from: planned (run
 * by that site: the pairs it replicates to @p q->target) or forced (run by @p q->target: its
 * secondaries of @p q->from). Many at once; a failure does not stop the others, and the call
 * fails naming them. One detail line per image or group goes to the detail hook.
 */
int ims_handover_site(char *said, size_t said_len, const ims_handover_env *e,
		      const ims_handover_req *q);

/**
 * Resync (split-brain), run by the primary's site: make the old primary at @p q->target a
 * secondary again (ims_repl_resync(), or replicator/group.h's rejoin for a group), then one
 * replication cycle.
 */
int ims_handover_resync(char *said, size_t said_len, const ims_handover_env *e,
			const ims_handover_req *q);

#endif
