/*
 * daemon/alert.h: the alert webhook ([defaults] alert_webhook). The replication scheduler's
 * events (RPO violated, RPO recovered, verify mismatch) become one JSON POST each, sent by a
 * thread of its own with retries (5 attempts, 1 s doubling), so the scheduler never waits on
 * the receiver. HTTPS certificates and host names are verified (the system's CA bundle).
 */
#ifndef IMS_DAEMON_ALERT_H
#define IMS_DAEMON_ALERT_H

#include "replicator/scheduler.h"

typedef struct ims_alert ims_alert;

/**
 * Start the sender for @p url, naming this site @p site in every alert.
 *
 * @returns -ENOMEM, -EAGAIN if the thread cannot start.
 */
int ims_alert_start(ims_alert **out, const char *url, const char *site);

/** Stop: alerts still queued or being retried are dropped (and logged). NULL is fine. */
void ims_alert_stop(ims_alert *a);

/** An ims_repl_event_fn with @p ctx the ims_alert: queues the alert and returns. */
void ims_alert_event(void *ctx, const ims_repl_event *ev);

#endif
