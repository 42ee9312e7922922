/*
 * replicator/snapsched.h's runner against the sandbox's site a: schedules that come due in the
 * same tick are run several at once (IMS_SNAPSCHED_WORKERS), each taking its snapshot and
 * recording its state. The runner keeps its schedules in a pool of its own, so that the
 * sandbox's imgstored never sees them. The `taken` callback (the daemon queues a digest there)
 * is held for a moment in this test, so that the snapshots of one tick overlap in it: the most
 * found in it at once is a count, not a time, and is 1 when a tick runs them one after the
 * other.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "itest.h"
#include "replicator/snapsched.h"
#include "store/snap.h"

#define RECORDS "imstest-snapsched"
#define NIMG	12

static struct {
	atomic_int inside, most, taken;
	char names[NIMG][64];
	ims_snapsched_runner *rn;
} seen;

static int setup(void **state)
{
	itest_setup_ab(state);
	itest_pool_a(RECORDS);
	return 0;
}

/* The runner's `taken`: counted, and held 300 ms so that those of one tick meet in here. */
static void taken(void *ctx, const char *pool, const char *image, const char *snap)
{
	(void)ctx;
	(void)pool;
	(void)image;
	(void)snap;
	int now = atomic_fetch_add(&seen.inside, 1) + 1;
	int most = atomic_load(&seen.most);
	while (now > most && !atomic_compare_exchange_weak(&seen.most, &most, now))
		;
	usleep(300000);
	atomic_fetch_sub(&seen.inside, 1);
	atomic_fetch_add(&seen.taken, 1);
}

static size_t sched_snaps(const char *img)
{
	ims_snap_info *list = NULL;
	size_t n = 0, found = 0;
	if (ims_snap_list(&list, &n, itest.a, "rbd", img) < 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		found += ims_snapsched_snap_time(list[i].name) >= 0;
	ims_snap_list_free(list, n);
	return found;
}

static void test_due_together_run_at_once(void **state)
{
	(void)state;
	for (int i = 0; i < NIMG; i++) {
		snprintf(seen.names[i], sizeof(seen.names[i]), "%s", itest_name("ssx"));
		itest_create(seen.names[i],
			     4ull << 20); /* removed, snapshots too, by the teardown */
	}
	/* all added within a few milliseconds: due in the same tick, one interval later */
	for (int i = 0; i < NIMG; i++) {
		ims_snapsched s;
		memset(&s, 0, sizeof(s));
		snprintf(s.pool, sizeof(s.pool), "rbd");
		snprintf(s.name, sizeof(s.name), "%s", seen.names[i]);
		s.unit = IMS_SNAPSCHED_UNIT_ANY;
		s.every_s = 2;
		s.keep.hourly = 2;
		if (ims_snapsched_add(NULL, itest.a, RECORDS, &s) < 0)
			fail_msg("add the schedule of %s: %s", seen.names[i], ims_error_last());
	}
	ims_snapsched_opts o = IMS_SNAPSCHED_OPTS_INIT;
	o.site = itest.a;
	o.records_pool = RECORDS;
	o.owner = "snapsched-itest";
	o.taken = taken;
	if (ims_snapsched_start(&seen.rn, &o) < 0)
		fail_msg("start the runner: %s", ims_error_last());
	/* every schedule's first snapshot, 60 s at most */
	for (int k = 0; k < 120 && atomic_load(&seen.taken) < NIMG; k++)
		usleep(500000);
	ims_snapsched_stop(seen.rn);
	seen.rn = NULL;
	print_message("%d snapshots taken, at most %d in `taken` at once\n",
		      atomic_load(&seen.taken), atomic_load(&seen.most));
	assert_true(atomic_load(&seen.taken) >= NIMG);
	/* run together: more than one at a time, never more than the workers */
	assert_true(atomic_load(&seen.most) >= 2);
	assert_true(atomic_load(&seen.most) <= IMS_SNAPSCHED_WORKERS);

	ims_snapsched *list = NULL;
	size_t n = 0;
	assert_int_equal(ims_snapsched_list(&list, &n, itest.a, RECORDS), 0);
	size_t recorded = 0;
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < NIMG; k++)
			if (!strcmp(list[i].name, seen.names[k]) && list[i].last_ms > 0 &&
			    !list[i].last_error[0])
				recorded++;
	free(list);
	assert_int_equal(recorded, NIMG); /* each wrote its state back, no error */
	for (int k = 0; k < NIMG; k++)
		assert_true(sched_snaps(seen.names[k]) >= 1);
}

/* Whatever the test left, passed or not: the runner stopped, the schedules removed (the images,
 * with their snapshots, by itest_teardown). */
static int teardown(void **state)
{
	if (seen.rn)
		ims_snapsched_stop(seen.rn);
	seen.rn = NULL;
	for (int k = 0; k < NIMG; k++)
		if (seen.names[k][0])
			ims_snapsched_remove(itest.a, RECORDS, IMS_SNAPSCHED_UNIT_ANY, "rbd",
					     seen.names[k]);
	return itest_teardown(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_due_together_run_at_once),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
