/*
 * daemon/failover.h: failover, failback and resync of a replicated image or group, run as
 * Operations. The protocol is replicator/handover.h's; here it gets the daemon's peers, host
 * leases, site probes and the operation's progress through its hooks.
 */
#ifndef IMS_DAEMON_FAILOVER_H
#define IMS_DAEMON_FAILOVER_H

#include "daemon/daemon.h"
#include "replicator/handover.h"

typedef struct {
	ims_daemon *d;
	ims_handover_req q;
} ims_failover_work;

/** The target of a site failover's operation: @p pool, a slash and a star, " of site " and the
 *  old site @p from; with @p from "", the start every such target of @p pool shares. */
void ims_failover_site_target(char *buf, size_t len, const char *pool, const char *from);

/**
 * A work item for a handover of @p unit @p pool/@p name, forced or planned (@p force), whose
 * hosts get @p wait_s to release their leases. A failover (@p new_primary) goes to @p to, which
 * it needs; a failback or a resync acts on the pair this primary replicates (@p to, or its only
 * target).
 * Refused while a failover, failback or resync of the same images still runs on this daemon
 * (a forced failover goes on after its outcome is known, its old copies being made
 * secondaries, and another of them would race it through the forced-failover journal): of
 * @p pool/@p name, or of a site's images in @p pool; with @p name "" (a site failover of
 * @p pool), of any image or group of @p pool. Only this daemon's operations are seen.
 * @returns -EINVAL (a failover without a target), -EBUSY (one still runs, named), what
 *          ims_daemon_pair_target() returns, or -ENOMEM.
 */
int ims_failover_work_new(ims_failover_work **out, ims_daemon *d, ims_repl_unit unit,
			  const char *pool, const char *name, bool force, unsigned wait_s,
			  bool new_primary, const char *to);

/**
 * Submit @p w as the Operation @p kind on @p what running @p fn, if no failover it would race
 * runs (the refusal of ims_failover_work_new(), looked at again and the submit made under one
 * lock: two calls at once cannot both pass). Takes @p w (freed on a refusal or error).
 */
int ims_failover_submit(ims_daemon *d, ims_rpc_call *call, const char *kind, const char *what,
			ims_op_fn fn, ims_failover_work *w, ProtobufCMessage **resp);

/** ims_handover_failover() of w->q (an ims_failover_work *), as an Operation. */
int ims_failover_run(ims_op *op, void *arg);

/** ims_handover_site() of w->q: every image and group of w->q.pool whose primary is w->q.from. */
int ims_failover_all_run(ims_op *op, void *arg);

/** ims_handover_resync() of w->q. */
int ims_resync_run(ims_op *op, void *arg);

#endif
