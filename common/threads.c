#include "common/threads.h"

#include <errno.h>
#include <stdlib.h>

#include "common/array.h"
#include "common/error.h"

int ims_threads_start(ims_threads *t, unsigned n, void *(*fn)(void *), void *arg, const char *what)
{
	if (ims_array_grow(t->v, t->cap, t->n + n, 4) < 0)
		return ims_error_set(-ENOMEM, "cannot start %s: out of memory", what);
	for (unsigned i = 0; i < n; i++) {
		if (pthread_create(&t->v[t->n], NULL, fn, arg) != 0)
			return ims_error_set(-EAGAIN, "cannot start %s", what);
		t->n++;
	}
	return 0;
}

void ims_threads_join(ims_threads *t)
{
	for (size_t i = 0; i < t->n; i++)
		pthread_join(t->v[i], NULL);
	free(t->v);
	*t = (ims_threads)IMS_THREADS_INIT;
}

void ims_threads_stop(ims_threads *t, pthread_mutex_t *lock, pthread_cond_t *cond, bool *stopping)
{
	pthread_mutex_lock(lock);
	*stopping = true;
	pthread_cond_broadcast(cond);
	pthread_mutex_unlock(lock);
	ims_threads_join(t);
}
