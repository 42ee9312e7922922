#include "common/fanout.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/opts.h"

struct ims_fanout {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const ims_fanout_opts *o;
	size_t next;	  /* the next item to hand out */
	unsigned running; /* threads that have not returned */
	atomic_bool stop;
	int err;
	char msg[IMS_ERROR_MSG_MAX];
};

typedef struct {
	ims_fanout *f;
	unsigned slot;
} worker_arg;

static void fail(ims_fanout *f, int r)
{
	pthread_mutex_lock(&f->lock);
	if (!f->err) {
		f->err = r;
		snprintf(f->msg, sizeof(f->msg), "%s", ims_error_last());
	}
	atomic_store(&f->stop, true);
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

bool ims_fanout_next(size_t *i, ims_fanout *f)
{
	bool got = false;
	pthread_mutex_lock(&f->lock);
	if (!atomic_load(&f->stop) && f->next < f->o->nitems) {
		*i = f->next++;
		got = true;
	}
	pthread_mutex_unlock(&f->lock);
	return got;
}

void ims_fanout_wake(ims_fanout *f)
{
	pthread_mutex_lock(&f->lock);
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

bool ims_fanout_stopped(const ims_fanout *f)
{
	return atomic_load(&f->stop);
}

static int run_items(ims_fanout *f, void *ctx, unsigned slot)
{
	size_t i;
	while (ims_fanout_next(&i, f)) {
		ims_error_clear();
		int r = f->o->item(ctx, slot, i);
		if (r < 0)
			return r;
		if (f->o->watch)
			ims_fanout_wake(f);
	}
	return 0;
}

static void run_worker(ims_fanout *f, unsigned slot)
{
	ims_error_clear();
	int r = f->o->worker ? f->o->worker(f, f->o->ctx, slot) : run_items(f, f->o->ctx, slot);
	if (r < 0)
		fail(f, r);
}

static void *worker_main(void *arg)
{
	worker_arg *a = arg;
	run_worker(a->f, a->slot);
	pthread_mutex_lock(&a->f->lock);
	a->f->running--;
	pthread_cond_broadcast(&a->f->cond);
	pthread_mutex_unlock(&a->f->lock);
	return NULL;
}

static void watch_once(ims_fanout *f)
{
	if (!f->o->watch || atomic_load(&f->stop))
		return;
	int r = f->o->watch(f->o->ctx);
	if (r < 0)
		fail(f, r);
}

/* In the caller's thread until every worker has returned, then a last time: the last report
 * sees all the work done (and may still fail the run, as a cut before a seal does). */
static void watch(ims_fanout *f)
{
	unsigned ms = f->o->watch_ms ? f->o->watch_ms : 200;
	pthread_mutex_lock(&f->lock);
	while (f->running > 0) {
		struct timespec until;
		ims_clock_after_ms(&until, ms);
		pthread_cond_timedwait(&f->cond, &f->lock, &until);
		if (f->running == 0)
			break;
		pthread_mutex_unlock(&f->lock);
		watch_once(f);
		pthread_mutex_lock(&f->lock);
	}
	pthread_mutex_unlock(&f->lock);
	watch_once(f);
}

int ims_fanout_run(unsigned *started, const ims_fanout_opts *o)
{
	ims_fanout f = {.o = o};
	pthread_t *threads = NULL;
	worker_arg *args = NULL;
	unsigned n = 0;
	int r = IMS_OPTS_CHECK(o, IMS_FANOUT_OPTS_VERSION, "fan-out");

	if (r < 0)
		return r;
	if (!(o->item || o->worker))
		return ims_error_set(-EINVAL, "fan-out: no work (neither item nor worker)");
	unsigned nworkers = o->workers ? o->workers : 1;
	if (o->nitems && nworkers > o->nitems)
		nworkers = (unsigned)o->nitems;
	threads = calloc(nworkers, sizeof(*threads));
	args = calloc(nworkers, sizeof(*args));
	if (!threads || !args) {
		r = -ENOMEM;
		goto out;
	}
	pthread_mutex_init(&f.lock, NULL);
	pthread_cond_init(&f.cond, NULL);
	atomic_init(&f.stop, false);
	pthread_mutex_lock(&f.lock);
	for (; n < nworkers; n++) {
		args[n] = (worker_arg){&f, n};
		f.running++;
		if (pthread_create(&threads[n], NULL, worker_main, &args[n]) != 0) {
			f.running--;
			break;
		}
	}
	pthread_mutex_unlock(&f.lock);
	if (n == 0) {
		run_worker(&f, 0);
		watch_once(&f);
	} else {
		watch(&f);
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	pthread_mutex_destroy(&f.lock);
	pthread_cond_destroy(&f.cond);
	if (f.err)
		r = ims_error_set(f.err, "%s", f.msg);
out:
	free(threads);
	free(args);
	if (started)
		*started = n;
	return r;
}
