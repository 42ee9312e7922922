/*
 * replicator/sched_policy.c: when a pair is due again (ims_repl_sched__due_ms), and which queued
 * pair a free worker takes (ims_repl_sched__next). A pair's next
 * cycle starts at half its RPO, earlier when its cycles take long, and never sooner than a tenth
 * of the RPO after the last one: a pair whose copying cycle once took longer than its RPO (a
 * large first copy, a slow site) must not be checked in a loop while nothing changes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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
	assert_int_equal(ims_repl_sched__next(q, 3), 2);
	pair *q2[] = {&a, &b};
	assert_int_equal(ims_repl_sched__next(q2, 2), 1);
	pair *q1[] = {&a};
	assert_int_equal(ims_repl_sched__next(q1, 1), 0);
}

static void first_copies_after_every_sealed_pair_in_order(void **state)
{
	(void)state;
	pair f1 = mk(-1, 60), f2 = mk(-1, 60), s1 = mk(100000, 60);
	pair *q[] = {&f1, &f2, &s1};
	assert_int_equal(ims_repl_sched__next(q, 3), 2); /* the sealed one, though queued last */
	pair *q2[] = {&f1, &f2};
	assert_int_equal(ims_repl_sched__next(q2, 2), 0); /* then the first copies, in order */
	pair *q3[] = {&f2, &f1};
	assert_int_equal(ims_repl_sched__next(q3, 2), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(half_the_rpo_when_cycles_are_short),
		cmocka_unit_test(earlier_when_a_cycle_takes_long),
		cmocka_unit_test(never_under_a_tenth_of_the_rpo),
		cmocka_unit_test(the_pair_nearest_its_rpo_goes_first),
		cmocka_unit_test(first_copies_after_every_sealed_pair_in_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
