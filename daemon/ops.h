/*
 * daemon/ops.h: long-running operations (import, export, flatten, rollback; later sync and
 * tiering) run by a bounded pool of workers and recorded in RADOS.
 *
 * Records live in the omap of the object "imgstore.operations" in the site's default pool,
 * one JSON value per operation, so `op ls` after a restart, or from another daemon of the
 * site, shows what happened. A running record carries its daemon's identity and a heartbeat;
 * a daemon that starts marks its own previous instance's unfinished records failed, and any
 * record whose heartbeat is older than IMS_OPS_STALE_SECONDS failed as well: work cut by a
 * restart is never left "running".
 */
#ifndef IMS_DAEMON_OPS_H
#define IMS_DAEMON_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/site.h"

#define IMS_OPS_OBJECT	      "imgstore.operations"
#define IMS_OPS_STALE_SECONDS 60
#define IMS_OP_ID_LEN	      24

typedef enum {
	IMS_OP_QUEUED = 1,
	IMS_OP_RUNNING = 2,
	IMS_OP_SUCCEEDED = 3,
	IMS_OP_FAILED = 4,
	IMS_OP_CANCELLED = 5,
} ims_op_state;

const char *ims_op_state_name(ims_op_state s);

/** A copy of an operation's record. */
typedef struct {
	char id[IMS_OP_ID_LEN];
	char kind[32];
	char target[768];
	char site[64];
	ims_op_state state;
	uint64_t bytes_done;
	uint64_t bytes_total;
	char error[512];
	int64_t created;
	int64_t started;
	int64_t finished;
	char owner[128]; /* daemon instance running it */
	int64_t heartbeat;
	char result_path[512]; /* a spooled export, for download */
	char result[512];      /* one line: what it did, when it succeeded */
	int decided; /* 1: its outcome is known while it still runs (ims_op_set_decided()) */
} ims_op_record;

typedef struct ims_ops ims_ops;
typedef struct ims_op ims_op;

/**
 * The work of an operation, run on a worker thread. Report progress with ims_op_progress()
 * and stop when it returns non-zero. Return 0 or a negative errno with ims_error_set().
 */
typedef int (*ims_op_fn)(ims_op *op, void *arg);

/**
 * @param pool where records live (the site's default pool)
 * @param owner_host a name stable across restarts of this daemon ("HOST/SITE")
 * @returns an error of RADOS when the records cannot be read.
 */
int ims_ops_start(ims_ops **out, ims_site *site, const char *pool, unsigned workers,
		  const char *owner_host);

/**
 * Queue work. @p free_arg (may be NULL) frees @p arg after the work ran or was dropped.
 *
 * @param[out] out the new record (queued).
 * @returns -ESHUTDOWN if the daemon is stopping, an error of the RADOS write.
 */
int ims_ops_submit(ims_op_record *out, ims_ops *o, const char *kind, const char *target,
		   ims_op_fn fn, void *arg, void (*free_arg)(void *));

/** @returns -ENOENT for an unknown id. */
int ims_ops_get(ims_op_record *out, ims_ops *o, const char *id);

/** 1 and a copy of it into *@p out if an operation of this daemon of @p kind whose target
 *  starts with @p target (with @p whole: is @p target) has not ended (queued or running), else
 *  0. Never waits for the cluster. */
int ims_ops_running(ims_op_record *out, ims_ops *o, const char *kind, const char *target,
		    bool whole);

/** Wait until the operation ends, its outcome becomes known (ims_op_set_decided(), when it was
 *  not known as the wait began) or @p timeout_ms runs out; *out is its state then. */
int ims_ops_wait(ims_op_record *out, ims_ops *o, const char *id, unsigned timeout_ms);

/**
 * Ask a queued or running operation to stop; an ended one is returned as it is.
 *
 * @returns -ENOENT for an unknown id, -EREMOTE if another daemon runs it.
 */
int ims_ops_cancel(ims_op_record *out, ims_ops *o, const char *id);

/** The newest @p limit records (0: 100), newest first. Free *out with free(). */
int ims_ops_list(ims_op_record **out, size_t *count, ims_ops *o, unsigned limit, bool active_only);

/** How many operations of this daemon are in each state, for metrics (index: ims_op_state). */
void ims_ops_counts(uint64_t counts[6], ims_ops *o);

/**
 * Stop: no new work; running work is asked to stop and its records marked failed
 * ("interrupted: the daemon stopped"); waits for the workers. Accepts NULL.
 */
void ims_ops_stop(ims_ops *o);

/* For the work itself. */

/** Report progress; returns non-zero when the operation was cancelled or the daemon stops. */
int ims_op_progress(ims_op *op, uint64_t done, uint64_t total);

/** Say in one line what the operation did (shown when it succeeds). */
void ims_op_set_result(ims_op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * Say that the operation's outcome is known while it still runs, and in one line what it is
 * (its result until it ends): a forced failover once every image is the primary on the new
 * site, with only the old copies left to make secondaries. Waiters of ims_ops_wait() return;
 * a client may stop waiting (the CLI does). Only for work that then succeeds.
 */
void ims_op_set_decided(ims_op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Add one line to the operation's details: one per part of a batch (a site failover: one per
 *  image and group). Kept in memory by this daemon, at most IMS_OP_DETAILS_MAX bytes. */
void ims_op_add_detail(ims_op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define IMS_OP_DETAILS_MAX (256 * 1024)

/** The details of operation @p id, lines separated by '\n', into *@p out (malloc'ed; NULL if
 *  it has none or this daemon no longer keeps it). */
int ims_ops_details(char **out, ims_ops *o, const char *id);

/** Set where a spooled result lives (an export for download). */
void ims_op_set_result_path(ims_op *op, const char *path);

/** The operation's id. Borrowed. */
const char *ims_op_id(const ims_op *op);

#endif
