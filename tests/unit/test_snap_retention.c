/*
 * replicator/snap_retention.c: the retention rule of snapshot schedules (--keep hourly=N,
 * daily=N,weekly=N) on made-up snapshot times: a fake clock, no cluster.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/snapsched.h"

#define H 3600000LL /* an hour in ms */
/* 2026-12-01T00:00:00Z, a Tuesday: a fixed start for the fake clock */
#define T0 1796083200000LL

static const ims_snapsched_buckets real = {3600, 86400, 604800};

static void test_keep_parse(void **state)
{
	(void)state;
	ims_snapsched_keep k = {9, 9, 9};
	assert_int_equal(ims_snapsched_keep_parse(&k, "hourly=24,daily=7,weekly=4"), 0);
	assert_int_equal(k.hourly, 24);
	assert_int_equal(k.daily, 7);
	assert_int_equal(k.weekly, 4);
	assert_int_equal(ims_snapsched_keep_parse(&k, "weekly=2"), 0);
	assert_int_equal(k.hourly, 0);
	assert_int_equal(k.daily, 0);
	assert_int_equal(k.weekly, 2);
	const char *bad[] = {"",
			     "garbage",
			     "hourly",
			     "hourly=",
			     "hourly=x",
			     "hourly=-1",
			     "hourly=1,",
			     "hourly=1,,daily=2",
			     "hourly=1,hourly=2",
			     "monthly=3",
			     "hourly=0",
			     "hourly=3x",
			     "hourly=10001",
			     "hourly=0,daily=0",
			     "HOURLY=1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		k = (ims_snapsched_keep){5, 6, 7};
		assert_int_equal(ims_snapsched_keep_parse(&k, bad[i]), -EINVAL);
		/* nothing written on failure */
		assert_int_equal(k.hourly, 5);
		assert_int_equal(k.daily, 6);
		assert_int_equal(k.weekly, 7);
	}
	assert_int_equal(ims_snapsched_keep_parse(&k, NULL), -EINVAL);
	char buf[64];
	k = (ims_snapsched_keep){1, 2, 3};
	assert_string_equal(ims_snapsched_keep_format(buf, sizeof(buf), &k),
			    "hourly=1,daily=2,weekly=3");
}

static void test_snap_time(void **state)
{
	(void)state;
	assert_int_equal(ims_snapsched_snap_time("imgstore-sched-1796083200000"), T0);
	assert_int_equal(ims_snapsched_snap_time("imgstore-sched-"), -1);
	assert_int_equal(ims_snapsched_snap_time("imgstore-sched-12x"), -1);
	assert_int_equal(ims_snapsched_snap_time("imgstore-repl-1796083200000"), -1);
	assert_int_equal(ims_snapsched_snap_time("daily"), -1);
}

/* hourly=3 over two snapshots an hour for three and a half hours: the newest of each of the
 * last three hours */
static void test_hourly(void **state)
{
	(void)state;
	ims_snapsched_snap s[7];
	char names[7][40];
	for (int i = 0; i < 7; i++) {
		s[i].unix_ms = T0 + i * H / 2;
		snprintf(names[i], sizeof(names[i]), "s%d", i);
		s[i].name = names[i];
		s[i].pinned = false;
	}
	bool keep[7];
	ims_snapsched_keep k = {3, 0, 0};
	assert_int_equal(ims_snapsched_retain(keep, s, 7, &k, &real), 0);
	/* hours 0 (s0, s1), 1 (s2, s3), 2 (s4, s5), 3 (s6) */
	const bool want[7] = {false, false, false, true, false, true, true};
	for (int i = 0; i < 7; i++)
		assert_int_equal(keep[i], want[i]);
}

/* The order of the input does not matter; a pinned snapshot is kept; the newest always. */
static void test_pinned_and_order(void **state)
{
	(void)state;
	ims_snapsched_snap s[4] = {
		{"new", T0 + 10 * H, false},
		{"old-pinned", T0, true},
		{"mid", T0 + 5 * H, false},
		{"old", T0 + 1, false},
	};
	bool keep[4];
	ims_snapsched_keep k = {0, 0, 1}; /* one week: only the newest of this week */
	assert_int_equal(ims_snapsched_retain(keep, s, 4, &k, &real), 0);
	assert_true(keep[0]);
	assert_true(keep[1]);
	assert_false(keep[2]);
	assert_false(keep[3]);
	/* the newest stays even when no rule would keep anything else */
	ims_snapsched_snap one = {"only", T0, false};
	k = (ims_snapsched_keep){1, 0, 0};
	assert_int_equal(ims_snapsched_retain(keep, &one, 1, &k, &real), 0);
	assert_true(keep[0]);
	assert_int_equal(ims_snapsched_retain(keep, NULL, 0, &k, &real), 0);
	ims_snapsched_buckets bad = {0, 1, 1};
	assert_int_equal(ims_snapsched_retain(keep, s, 4, &k, &bad), -EINVAL);
}

#define MAXS 4096

typedef struct {
	ims_snapsched_snap v[MAXS];
	char names[MAXS][40];
	size_t n;
} store;

/* Prune @p st in place as the runner does after each snapshot. */
static void prune(store *st, const ims_snapsched_keep *k, const ims_snapsched_buckets *b)
{
	bool keep[MAXS];
	assert_int_equal(ims_snapsched_retain(keep, st->v, st->n, k, b), 0);
	size_t w = 0;
	for (size_t i = 0; i < st->n; i++) {
		if (!keep[i])
			continue;
		if (w != i) {
			memcpy(st->names[w], st->names[i], sizeof(st->names[w]));
			st->v[w] = st->v[i];
		}
		st->v[w].name = st->names[w];
		w++;
	}
	st->n = w;
}

static size_t kept_in(const store *st, int64_t from_ms, int64_t to_ms)
{
	size_t c = 0;
	for (size_t i = 0; i < st->n; i++)
		if (st->v[i].unix_ms >= from_ms && st->v[i].unix_ms < to_ms)
			c++;
	return c;
}

/*
 * A schedule every 15 minutes for 5 weeks on a fake clock, pruned after each snapshot with
 * hourly=24,daily=7,weekly=4: at the end, one snapshot in each of the last 24 hours, the
 * newest of each of the last 7 days, of each of the last 4 weeks, and nothing else; pruning
 * the result again removes nothing (the rule is stable under repetition).
 */
static void run_simulation(const ims_snapsched_buckets *b, int64_t step_ms, int64_t end_ms)
{
	static store st;
	st.n = 0;
	ims_snapsched_keep k = {24, 7, 4};
	int64_t now;
	for (now = T0; now < end_ms; now += step_ms) {
		assert_true(st.n < MAXS);
		snprintf(st.names[st.n], sizeof(st.names[st.n]), IMS_SNAPSCHED_PREFIX "%lld",
			 (long long)now);
		st.v[st.n] = (ims_snapsched_snap){st.names[st.n], now, false};
		st.n++;
		prune(&st, &k, b);
		assert_true(st.n <= 24 + 7 + 4);
	}
	int64_t last = now - step_ms, hb = b->hour * 1000, db = b->day * 1000, wb = b->week * 1000;
	/* the newest of each of the last 24 hours, and only one in each */
	for (int h = 0; h < 24; h++) {
		int64_t start = (last / hb - h) * hb;
		assert_int_equal(kept_in(&st, start, start + hb), 1);
		int64_t newest = start + hb - step_ms;
		if (newest > last)
			newest = last;
		bool found = false;
		for (size_t i = 0; i < st.n; i++)
			found |= st.v[i].unix_ms == newest;
		assert_true(found);
	}
	/* days and weeks: the newest of each is there */
	for (int d = 0; d < 7; d++) {
		int64_t start = (last / db - d) * db, newest = start + db - step_ms;
		if (newest > last)
			newest = last;
		bool found = false;
		for (size_t i = 0; i < st.n; i++)
			found |= st.v[i].unix_ms == newest;
		assert_true(found);
	}
	for (int w = 0; w < 4; w++) {
		int64_t start = (last / wb - w) * wb;
		assert_true(kept_in(&st, start, start + wb) >= 1);
	}
	/* nothing older than the fourth week back */
	assert_int_equal(kept_in(&st, 0, (last / wb - 3) * wb), 0);
	size_t before = st.n;
	prune(&st, &k, b);
	assert_int_equal(st.n, before);
}

static void test_simulation_real_buckets(void **state)
{
	(void)state;
	run_simulation(&real, H / 4, T0 + 5 * 168 * H + 7 * H);
}

/* The test hook: an "hour" of 2 s (imgstored's snapshot_schedule_hour), as the integration
 * test runs it; the same rule at a smaller scale. */
static void test_simulation_short_hour(void **state)
{
	(void)state;
	ims_snapsched_buckets b = ims_snapsched_buckets_of(2);
	assert_int_equal(b.hour, 2);
	assert_int_equal(b.day, 48);
	assert_int_equal(b.week, 336);
	run_simulation(&b, 500, T0 + 5 * 336 * 1000 + 7000);
	ims_snapsched_buckets d = ims_snapsched_buckets_of(0);
	assert_int_equal(d.hour, 3600);
	assert_int_equal(d.week, 604800);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keep_parse),
		cmocka_unit_test(test_snap_time),
		cmocka_unit_test(test_hourly),
		cmocka_unit_test(test_pinned_and_order),
		cmocka_unit_test(test_simulation_real_buckets),
		cmocka_unit_test(test_simulation_short_hour),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
