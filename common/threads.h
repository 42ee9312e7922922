/*
 * common/threads.h: the threads of a service (a pool of workers, a loop, a keeper), started one
 * by one and joined together when it stops.
 *
 *	ims_threads threads = IMS_THREADS_INIT;
 *	if ((r = ims_threads_start(&threads, nworkers, worker, s, "replication workers")) < 0 ||
 *	    (r = ims_threads_start(&threads, 1, loop, s, "the replication scheduler")) < 0)
 *		goto fail;	(the stop sets its flag, wakes them and joins what started)
 *	...
 *	ims_threads_join(&threads);
 *
 * A service whose threads wait on one condition variable until a flag says stop is stopped
 * with ims_threads_stop(); another sets its own flags, wakes its threads and joins them.
 */
#ifndef IMS_COMMON_THREADS_H
#define IMS_COMMON_THREADS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
	pthread_t *v;
	size_t n, cap;
} ims_threads;

#define IMS_THREADS_INIT                                                                           \
	{                                                                                          \
		NULL, 0, 0                                                                         \
	}

/**
 * Start @p n threads running @p fn(@p arg) and add them to @p t.
 *
 * @param what names them in the message: "cannot start <what>".
 * @returns 0, -ENOMEM, or -EAGAIN when a thread cannot be started; the threads started before
 *          it are in @p t (for ims_threads_join()).
 */
int ims_threads_start(ims_threads *t, unsigned n, void *(*fn)(void *), void *arg, const char *what);

/** Join every thread of @p t, in the order they started, and free the set (empty again). */
void ims_threads_join(ims_threads *t);

/**
 * Stop the threads of @p t that wait on @p cond under @p lock until @p *stopping: set it
 * under the lock, wake them all, then join them (ims_threads_join()).
 */
void ims_threads_stop(ims_threads *t, pthread_mutex_t *lock, pthread_cond_t *cond, bool *stopping);

#endif
