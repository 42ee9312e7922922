/*
 * replicator/sched_policy.c: when a pair is due again (ims_repl_sched__due_ms), and which queued
 * pair a free worker takes (ims_repl_sched__next). A pair's next
 * cycle starts at half its RPO, earlier when its cycles take long, and never sooner than a tenth
 * of the RPO after the last one: a pair whose copying cycle once took longer than its RPO (a
 * large first copy, a slow site) must not be checked in a loop while nothing changes.
 * And which daemon of a site is a pair's home (ims_repl_sched__assign): every daemon computes
 * the same, the pairs are shared evenly, and a daemon that leaves moves its own pairs and few
 * others.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "replicator/sched_internal.h"

static void half_the_rpo_when_cycles_are_short(void **state)
{
	(void)state;
	assert_int_equal(ims_repl_sched__due_ms(60, 0.0, 500), 30000);
	assert_int_equal(ims_repl_sched__due_ms(60, 2.0, 500), 30000);
	assert_int_equal(ims_repl_sched__due_ms(10, 1.0, 500), 5000);
}

static void earlier_when_a_cycle_takes_long(void **state)
{
	(void)state;
	/* 60 s RPO, 20 s cycles: start by 60 - 2 x 20 - 0.5 s so the lag stays under the RPO */
	assert_int_equal(ims_repl_sched__due_ms(60, 20.0, 500), 19500);
	assert_int_equal(ims_repl_sched__due_ms(10, 3.0, 500), 3500);
}

static void never_under_a_tenth_of_the_rpo(void **state)
{
	(void)state;
	/* the case that spun: a 10 s RPO whose last copy took 5 s gave 0 (due at once, always) */
	assert_int_equal(ims_repl_sched__due_ms(10, 5.0, 500), 1000);
	assert_int_equal(ims_repl_sched__due_ms(10, 4.6, 500), 1000);
	assert_int_equal(ims_repl_sched__due_ms(60, 600.0, 500), 6000);
	assert_int_equal(ims_repl_sched__due_ms(1, 100.0, 500), 100);
	assert_true(ims_repl_sched__due_ms(86400, 1e9, 500) == 8640000);
}

static pair mk(int64_t sealed_ms, uint32_t rpo)
{
	pair p;
	memset(&p, 0, sizeof(p));
	p.sealed_ms = sealed_ms;
	p.rpo = rpo;
	return p;
}

static void the_pair_nearest_its_rpo_goes_first(void **state)
{
	(void)state;
	pair a = mk(100000, 60), b = mk(50000, 60), c = mk(80000, 10);
	pair *q[] = {&a, &b, &c};
	/* RPO ends: a 160 s, b 110 s, c 90 s */
	assert_int_equal(ims_repl_sched__next(q, 3, false), 2);
	pair *q2[] = {&a, &b};
	assert_int_equal(ims_repl_sched__next(q2, 2, false), 1);
	pair *q1[] = {&a};
	assert_int_equal(ims_repl_sched__next(q1, 1, false), 0);
}

static void first_copies_after_every_sealed_pair_in_order(void **state)
{
	(void)state;
	pair f1 = mk(-1, 60), f2 = mk(-1, 60), s1 = mk(100000, 60);
	pair *q[] = {&f1, &f2, &s1};
	assert_int_equal(ims_repl_sched__next(q, 3, false),
			 2); /* the sealed one, though queued last */
	pair *q2[] = {&f1, &f2};
	assert_int_equal(ims_repl_sched__next(q2, 2, false),
			 0); /* then the first copies, in order */
	pair *q3[] = {&f2, &f1};
	assert_int_equal(ims_repl_sched__next(q3, 2, false), 0);
}

static void orphans_go_to_the_takeover_workers(void **state)
{
	(void)state;
	pair a = mk(100000, 60), o1 = mk(90000, 60), b = mk(50000, 60), o2 = mk(60000, 60);
	o1.orphaned = o2.orphaned = true;
	pair *q[] = {&a, &o1, &b, &o2};
	assert_int_equal(ims_repl_sched__next(q, 4, true), 3); /* o2: of the orphans */
	b.sealed_ms = 95000; /* o1 and o2 more urgent than any other pair: still after them */
	assert_int_equal(ims_repl_sched__next(q, 4, false), 2);
	pair *q1[] = {&o1, &o2};
	assert_int_equal(ims_repl_sched__next(q1, 2, false), 1); /* only orphans: the most urgent */
	pair *q2[] = {&a, &b};
	assert_int_equal(ims_repl_sched__next(q2, 2, true), 2); /* none: n */
	assert_int_equal(ims_repl_sched__next(q2, 0, true), 0);
	assert_int_equal(ims_repl_sched__next(q2, 0, false), 0);
	pair f = mk(-1, 60);
	f.orphaned = true;
	pair *q3[] = {&f, &o1, &a};
	assert_int_equal(ims_repl_sched__next(q3, 3, true),
			 1); /* a sealed orphan before a first copy */
}

#define NPAIRS 500

static void keys_and_members(uint64_t *keys, size_t n, uint64_t *members, size_t m)
{
	char text[128];
	for (size_t i = 0; i < n; i++) {
		snprintf(text, sizeof(text), "rbd/scale-%zu@b", i + 1);
		keys[i] = ims_repl_sched__hash(text);
	}
	for (size_t k = 0; k < m; k++) {
		snprintf(text, sizeof(text), "host%zu/a/scale-%zu", k, k + 1);
		members[k] = ims_repl_sched__hash(text);
	}
}

static void homes_shared_evenly(void **state)
{
	(void)state;
	static uint64_t keys[NPAIRS];
	static unsigned home[NPAIRS];
	uint64_t members[5];
	for (size_t m = 1; m <= 5; m++) {
		for (size_t n = 1; n <= NPAIRS; n += n < 20 ? 1 : 97) {
			keys_and_members(keys, n, members, m);
			assert_int_equal(ims_repl_sched__assign(home, keys, n, members, m), 0);
			size_t load[5] = {0};
			for (size_t i = 0; i < n; i++) {
				assert_true(home[i] < m);
				load[home[i]]++;
			}
			for (size_t k = 0; k < m; k++)
				assert_true(load[k] <= (n + m - 1) / m);
			/* two daemons: the larger share is at most one more than the smaller */
			if (m == 2)
				assert_true(load[0] + 1 >= load[1] && load[1] + 1 >= load[0]);
		}
	}
	/* eight pairs and two daemons (make test's scale_takeover): four each */
	keys_and_members(keys, 8, members, 2);
	assert_int_equal(ims_repl_sched__assign(home, keys, 8, members, 2), 0);
	size_t first = 0;
	for (size_t i = 0; i < 8; i++)
		first += home[i] == 0;
	assert_int_equal(first, 4);
}

static void every_daemon_finds_the_same_homes(void **state)
{
	(void)state;
	static uint64_t keys[NPAIRS], shuffled[NPAIRS];
	static unsigned home[NPAIRS], home2[NPAIRS];
	uint64_t members[3], members2[3];
	keys_and_members(keys, NPAIRS, members, 3);
	assert_int_equal(ims_repl_sched__assign(home, keys, NPAIRS, members, 3), 0);
	/* the pairs known in another order (another daemon's list): each pair, the same home */
	for (size_t i = 0; i < NPAIRS; i++)
		shuffled[i] = keys[(i * 7 + 3) % NPAIRS];
	memcpy(members2, members, sizeof(members));
	assert_int_equal(ims_repl_sched__assign(home2, shuffled, NPAIRS, members2, 3), 0);
	for (size_t i = 0; i < NPAIRS; i++)
		assert_int_equal(home2[i], home[(i * 7 + 3) % NPAIRS]);
}

static void a_daemon_that_leaves_moves_few_others(void **state)
{
	(void)state;
	static uint64_t keys[NPAIRS];
	static unsigned three[NPAIRS], two[NPAIRS];
	uint64_t members[3];
	keys_and_members(keys, NPAIRS, members, 3);
	assert_int_equal(ims_repl_sched__assign(three, keys, NPAIRS, members, 3), 0);
	/* daemon 1 leaves: daemons 0 and 2 stay (indexes 0 and 1 of the new list) */
	uint64_t stay[2] = {members[0], members[2]};
	assert_int_equal(ims_repl_sched__assign(two, keys, NPAIRS, stay, 2), 0);
	size_t moved = 0, kept = 0;
	for (size_t i = 0; i < NPAIRS; i++) {
		if (three[i] == 1)
			continue;
		unsigned now = two[i] == 0 ? 0 : 2;
		if (now == three[i])
			kept++;
		else
			moved++;
	}
	/* of the ~333 pairs of the two that stay, most stay where they were */
	assert_true(kept + moved >= NPAIRS / 2);
	assert_true(moved * 5 < kept);
}

static void one_daemon_or_none_is_home_of_all(void **state)
{
	(void)state;
	uint64_t keys[4] = {1, 2, 3, 4}, members[1] = {9};
	unsigned home[4] = {7, 7, 7, 7};
	assert_int_equal(ims_repl_sched__assign(home, keys, 4, members, 1), 0);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(home[i], 0);
	assert_int_equal(ims_repl_sched__assign(home, keys, 0, members, 1), 0);
	assert_true(ims_repl_sched__hash("") != 0);
	assert_true(ims_repl_sched__hash("a") != ims_repl_sched__hash("b"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(half_the_rpo_when_cycles_are_short),
		cmocka_unit_test(earlier_when_a_cycle_takes_long),
		cmocka_unit_test(never_under_a_tenth_of_the_rpo),
		cmocka_unit_test(the_pair_nearest_its_rpo_goes_first),
		cmocka_unit_test(first_copies_after_every_sealed_pair_in_order),
		cmocka_unit_test(orphans_go_to_the_takeover_workers),
		cmocka_unit_test(homes_shared_evenly),
		cmocka_unit_test(every_daemon_finds_the_same_homes),
		cmocka_unit_test(a_daemon_that_leaves_moves_few_others),
		cmocka_unit_test(one_daemon_or_none_is_home_of_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
