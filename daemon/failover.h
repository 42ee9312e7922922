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

/** ims_handover_failover() of w->q (an ims_failover_work *), as an Operation. */
int ims_failover_run(ims_op *op, void *arg);

/** ims_handover_site() of w->q: every image and group of w->q.pool whose primary is w->q.from. */
int ims_failover_all_run(ims_op *op, void *arg);

/** ims_handover_resync() of w->q. */
int ims_resync_run(ims_op *op, void *arg);

#endif
