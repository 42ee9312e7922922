/*
 * daemon/failover.h: planned and forced failover, failback and resync of a replicated image,
 * run as Operations. The steps on the copies are replicator/failover.h's; here they are put in
 * order with the daemon's leases, scheduler and peers.
 */
#ifndef IMS_DAEMON_FAILOVER_H
#define IMS_DAEMON_FAILOVER_H

#include <stdbool.h>

#include "common/spec.h"
#include "daemon/daemon.h"

typedef struct {
	ims_daemon *d;
	ims_spec spec;
	char target[64]; /* the site that becomes the primary (failover), or the peer (resync) */
	bool force; /* the primary's site is lost: promote the target at its last sealed state */
	unsigned wait_s; /* how long hosts get to release their leases; 0: 30 */
	char from[64];	 /* non-empty: every image of spec.pool whose primary is this site */
	bool group;	 /* spec.image names a consistency group (ims_group_failover_run) */
	bool old_down;	 /* a site failover found the old primary's site down: do not ask it */
	char *said;	 /* non-NULL: what one failover did goes here, not to the operation */
	size_t said_len;
} ims_failover_work;

/**
 * Planned failover, run by the primary's daemon: no new leases; wait for hosts to release
 * theirs, then break them and fence the writers (lock broken, address blocklisted); final sync;
 * demote this copy, promote the target's, and hand replication over to the target's daemons
 * in the reverse direction. Nothing written before the fence is lost.
 *
 * Forced failover (force), run by the target's daemon when the primary's site is down:
 * promote this site's copy at its last sealed snapshot (rolling back a half-applied delta) at
 * a new generation; if the old primary answers, fence it and make it a secondary at once
 * (keeping what it wrote since as a recovery snapshot), else replication finds it stale when
 * it returns.
 */
int ims_failover_run(ims_op *op, void *arg);

/**
 * Fail over every image of a pool whose primary is site w->from: planned (run by that site's
 * daemon: the images it replicates to w->target) or forced (run by w->target's daemon: its
 * secondaries of w->from). One after the other; a failure does not stop the others, and the
 * operation fails naming them.
 */
int ims_failover_all_run(ims_op *op, void *arg);

/** Resync (split-brain), run by the primary's daemon: ims_repl_resync(), then one cycle. */
int ims_resync_run(ims_op *op, void *arg);

/**
 * The same for a consistency group (w->spec.image names it), as one unit: the final cut of
 * every member after all are fenced; every member demoted and promoted at that cut. Forced: every
 * member promoted at the newest cut sealed on all of them (each rolled back to it).
 */
int ims_group_failover_run(ims_op *op, void *arg);

/** Resync of a group whose old primary came back (replicator/group.h ims_repl_group_rejoin()). */
int ims_group_resync_run(ims_op *op, void *arg);

#endif
