/* common/fanout: items run once each, the first error wins, nothing starts after it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/fanout.h"

#define NITEMS 2000

typedef struct {
	atomic_int runs[NITEMS];
	atomic_int total;
	atomic_int watched;
	size_t fail_at; /* the item that fails, NITEMS for none */
	unsigned sleep_us;
	unsigned max_slot;
} job;

static void nap(unsigned us)
{
	struct timespec ts = {0, (long)us * 1000L};
	nanosleep(&ts, NULL);
}

static int item(void *ctx, unsigned worker, size_t i)
{
	job *j = ctx;
	assert_true(worker < j->max_slot);
	atomic_fetch_add(&j->runs[i], 1);
	atomic_fetch_add(&j->total, 1);
	if (i == j->fail_at)
		return ims_error_set(-EIO, "item %zu broke", i);
	if (j->sleep_us)
		nap(j->sleep_us);
	return 0;
}

static void every_item_runs_once(void **state)
{
	(void)state;
	static job j;
	memset(&j, 0, sizeof(j));
	j.fail_at = NITEMS;
	j.max_slot = 8;
	ims_fanout_opts o = IMS_FANOUT_OPTS_INIT;
	o.workers = 8;
	o.nitems = NITEMS;
	o.item = item;
	o.ctx = &j;
	unsigned started = 0;
	assert_int_equal(ims_fanout_run(&started, &o), 0);
	assert_int_equal(started, 8);
	for (size_t i = 0; i < NITEMS; i++)
		assert_int_equal(atomic_load(&j.runs[i]), 1);
}

static void no_more_workers_than_items(void **state)
{
	(void)state;
	static job j;
	memset(&j, 0, sizeof(j));
	j.fail_at = NITEMS;
	j.max_slot = 3;
	ims_fanout_opts o = IMS_FANOUT_OPTS_INIT;
	o.workers = 64;
	o.nitems = 3;
	o.item = item;
	o.ctx = &j;
	unsigned started = 0;
	assert_int_equal(ims_fanout_run(&started, &o), 0);
	assert_int_equal(started, 3);
	assert_int_equal(atomic_load(&j.total), 3);
}

static void nothing_to_do(void **state)
{
	(void)state;
	static job j;
	memset(&j, 0, sizeof(j));
	j.fail_at = NITEMS;
	j.max_slot = 4;
	ims_fanout_opts o = IMS_FANOUT_OPTS_INIT;
	o.workers = 4;
	o.nitems = 0;
	o.item = item;
	o.ctx = &j;
	assert_int_equal(ims_fanout_run(NULL, &o), 0);
	assert_int_equal(atomic_load(&j.total), 0);
}

static void nothing_starts_after_an_error(void **state)
{
	(void)state;
	static job j;
	memset(&j, 0, sizeof(j));
	j.fail_at = 10;
	j.max_slot = 1;
	ims_fanout_opts o = IMS_FANOUT_OPTS_INIT;
	o.workers = 1;
	o.nitems = NITEMS;
	o.item = item;
	o.ctx = &j;
	ims_error_clear();
	assert_int_equal(ims_fanout_run(NULL, &o), -EIO);
	assert_string_equal(ims_error_last(), "item 10 broke");
	assert_int_equal(atomic_load(&j.total), 11);
}

/* Several fail, one of them first: its code and its message come back together. */
static int item_all_fail(void *ctx, unsigned worker, size_t i)
{
	(void)worker;
	job *j = ctx;
	atomic_fetch_add(&j->total, 1);
	nap(1000);
	return ims_error_set(i % 2 ? -EIO : -ENOSPC, "item %zu: %s", i, i % 2 ? "EIO" : "ENOSPC");
}

static void first_error_wins(void **state)
{
	(void)state;
	static job j;
	memset(&j, 0, sizeof(j));
	ims_fanout_opts o = IMS_FANOUT_OPTS_INIT;
	o.workers = 8;
	o.nitems = NITEMS;
	o.item = item_all_fail;
	o.ctx = &j;
	int r = ims_fanout_run(NULL, &o);
	assert_true(r == -EIO || r == -ENOSPC);
	assert_non_null(strstr(ims_error_last(), r == -EIO ? ": EIO" : ": ENOSPC"));
	assert_true(atomic_load(&j.total) <= 8);
}

static int watch_cancels(void *ctx)
{
	job *j = ctx;
	if (atomic_fetch_add(&j->watched, 1) == 1)
		return ims_error_set(-ECANCELED, "cut by the watch");
	return 0;
}

static void the_watch_stops_the_run(void **state)
{
	(void)state;
	static job j;
	memset(&j, 0, sizeof(j));
	j.fail_at = NITEMS;
	j.sleep_us = 5000;
	j.max_slot = 2;
	ims_fanout_opts o = IMS_FANOUT_OPTS_INIT;
	o.workers = 2;
	o.nitems = NITEMS;
	o.item = item;
	o.watch = watch_cancels;
	o.watch_ms = 10;
	o.ctx = &j;
	assert_int_equal(ims_fanout_run(NULL, &o), -ECANCELED);
	assert_string_equal(ims_error_last(), "cut by the watch");
	assert_int_equal(atomic_load(&j.watched), 2);
	assert_true(atomic_load(&j.total) < NITEMS);
}

static int watch_counts(void *ctx)
{
	job *j = ctx;
	atomic_fetch_add(&j->watched, 1);
	return 0;
}

/* A done item wakes the watch long before its period. */
static void items_wake_the_watch(void **state)
{
	(void)state;
	static job j;
	memset(&j, 0, sizeof(j));
	j.fail_at = NITEMS;
	j.sleep_us = 2000;
	j.max_slot = 1;
	ims_fanout_opts o = IMS_FANOUT_OPTS_INIT;
	o.workers = 1;
	o.nitems = 50;
	o.item = item;
	o.watch = watch_counts;
	o.watch_ms = 60000;
	o.ctx = &j;
	assert_int_equal(ims_fanout_run(NULL, &o), 0);
	assert_true(atomic_load(&j.watched) > 0);
	assert_int_equal(atomic_load(&j.total), 50);
}

/* Whole workers: one fails, the others see the stop and return. */
static int loop_worker(ims_fanout *f, void *ctx, unsigned worker)
{
	job *j = ctx;
	if (worker == 0) {
		nap(20000);
		return ims_error_set(-EPIPE, "worker 0 gave up");
	}
	while (!ims_fanout_stopped(f)) {
		atomic_fetch_add(&j->total, 1);
		nap(1000);
	}
	return 0;
}

static void whole_workers_stop(void **state)
{
	(void)state;
	static job j;
	memset(&j, 0, sizeof(j));
	ims_fanout_opts o = IMS_FANOUT_OPTS_INIT;
	o.workers = 4;
	o.worker = loop_worker;
	o.ctx = &j;
	unsigned started = 0;
	assert_int_equal(ims_fanout_run(&started, &o), -EPIPE);
	assert_int_equal(started, 4);
	assert_string_equal(ims_error_last(), "worker 0 gave up");
	assert_true(atomic_load(&j.total) > 0);
}

static void unknown_options(void **state)
{
	(void)state;
	ims_fanout_opts o = IMS_FANOUT_OPTS_INIT;
	assert_int_equal(ims_fanout_run(NULL, &o), -EINVAL); /* neither item nor worker */
	o.item = item;
	o.version = 99;
	assert_int_equal(ims_fanout_run(NULL, &o), -EINVAL);
	assert_int_equal(ims_fanout_run(NULL, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_item_runs_once),
		cmocka_unit_test(no_more_workers_than_items),
		cmocka_unit_test(nothing_to_do),
		cmocka_unit_test(nothing_starts_after_an_error),
		cmocka_unit_test(first_error_wins),
		cmocka_unit_test(the_watch_stops_the_run),
		cmocka_unit_test(items_wake_the_watch),
		cmocka_unit_test(whole_workers_stop),
		cmocka_unit_test(unknown_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
