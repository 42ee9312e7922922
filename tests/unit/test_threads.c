/* common/threads: threads started in a set, each running its function once, joined together. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common/threads.h"

typedef struct {
	atomic_int ran;
	atomic_int other;
} counts;

static void *count_one(void *arg)
{
	atomic_fetch_add(&((counts *)arg)->ran, 1);
	return NULL;
}

static void *count_other(void *arg)
{
	atomic_fetch_add(&((counts *)arg)->other, 1);
	return NULL;
}

static void starts_and_joins_every_thread(void **state)
{
	(void)state;
	counts c = {0, 0};
	ims_threads t = IMS_THREADS_INIT;
	assert_int_equal(ims_threads_start(&t, 7, count_one, &c, "counters"), 0);
	assert_int_equal(ims_threads_start(&t, 1, count_other, &c, "the other"), 0);
	assert_int_equal(ims_threads_start(&t, 0, count_other, &c, "none"), 0);
	assert_int_equal(t.n, 8);
	ims_threads_join(&t);
	assert_int_equal(atomic_load(&c.ran), 7);
	assert_int_equal(atomic_load(&c.other), 1);
	assert_null(t.v);
	assert_int_equal(t.n, 0);
}

static void joining_an_empty_set_is_nothing(void **state)
{
	(void)state;
	ims_threads t = IMS_THREADS_INIT;
	ims_threads_join(&t);
	ims_threads_join(&t);
	assert_int_equal(t.n, 0);
}

typedef struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
	atomic_int waited;
} service;

static void *wait_for_stop(void *arg)
{
	service *s = arg;
	pthread_mutex_lock(&s->lock);
	while (!s->stopping)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_add(&s->waited, 1);
	return NULL;
}

static void stop_wakes_and_joins_the_waiting_threads(void **state)
{
	(void)state;
	service s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
	ims_threads t = IMS_THREADS_INIT;
	assert_int_equal(ims_threads_start(&t, 4, wait_for_stop, &s, "waiters"), 0);
	ims_threads_stop(&t, &s.lock, &s.cond, &s.stopping);
	assert_true(s.stopping);
	assert_int_equal(atomic_load(&s.waited), 4);
	assert_int_equal(t.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(starts_and_joins_every_thread),
		cmocka_unit_test(joining_an_empty_set_is_nothing),
		cmocka_unit_test(stop_wakes_and_joins_the_waiting_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
