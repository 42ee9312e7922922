/*
 * common/fanout.h: one pool of worker threads for one job, first error wins.
 *
 * A job is split into items (objects to verify, cells to push, images to fail over) or is a
 * loop each worker runs on its own (a copy that takes pieces from a cursor of its own). The
 * caller's thread watches: it calls a watch function every few hundred milliseconds while the
 * workers run (progress, cancel, checkpoints) and joins them at the end.
 *
 * The first error, from a worker or the watch, stops the run: no item is handed out after it,
 * workers that loop on their own see ims_fanout_stopped(), and ims_fanout_run() returns that
 * error with the message its thread had set (ims_error_last()), set again in the caller's
 * thread. Later errors are dropped.
 *
 * When fewer threads start than asked for, the job runs on those; when none starts, worker 0
 * runs in the caller's thread (the watch then runs only its last time).
 */
#ifndef IMS_COMMON_FANOUT_H
#define IMS_COMMON_FANOUT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ims_fanout ims_fanout;

#define IMS_FANOUT_OPTS_VERSION 1

typedef struct {
	unsigned version;
	/** threads to start; 0 means 1; never more than nitems when nitems is not 0 */
	unsigned workers;
	/** items 0 .. nitems-1, handed out in order by ims_fanout_next() */
	size_t nitems;
	/**
	 * Run one item; a negative errno stops the run. Used when @c worker is NULL: each worker
	 * runs the items ims_fanout_next() hands it. @p worker is the worker's slot, 0 ..
	 * workers-1, for per-worker state the caller keeps.
	 */
	int (*item)(void *ctx, unsigned worker, size_t i);
	/**
	 * Run a whole worker: it loops until its work is done, ims_fanout_next() returns false
	 * or ims_fanout_stopped() is true. A negative errno stops the run.
	 */
	int (*worker)(ims_fanout *f, void *ctx, unsigned worker);
	/**
	 * Optional, in the caller's thread while the run has not stopped: every @c watch_ms
	 * while workers run, soon after an item is done or a worker calls ims_fanout_wake(), and
	 * a last time when every worker has returned. A negative errno (with its message set)
	 * stops the run, and fails it even from that last call.
	 */
	int (*watch)(void *ctx);
	/** 0 means 200 */
	unsigned watch_ms;
	void *ctx;
} ims_fanout_opts;

#define IMS_FANOUT_OPTS_INIT                                                                       \
	{                                                                                          \
		.version = IMS_FANOUT_OPTS_VERSION                                                 \
	}

/**
 * Run a job on a pool of threads and wait for all of them.
 *
 * @param[out] started optional: how many threads ran (0 when worker 0 ran inline).
 * @returns 0, the first negative errno of a worker or the watch (its message set in this
 *          thread), -EINVAL if the options are of an unknown version or name neither @c item
 *          nor @c worker.
 */
int ims_fanout_run(unsigned *started, const ims_fanout_opts *o);

/**
 * The next item for this worker.
 *
 * @param[out] i the item, set only when it returns true.
 * @returns false when every item was handed out or the run has stopped.
 */
bool ims_fanout_next(size_t *i, ims_fanout *f);

/** Wake the watch now: a whole worker has made progress to report. */
void ims_fanout_wake(ims_fanout *f);

/** Whether the run has stopped on an error: a worker should return soon. */
bool ims_fanout_stopped(const ims_fanout *f);

#endif
