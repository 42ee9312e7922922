/*
 * replicator/sched_policy.c: when a pair is due again (ims_repl_sched__due_ms). A pair's next
 * cycle starts at half its RPO, earlier when its cycles take long, and never sooner than a tenth
 * of the RPO after the last one: a pair whose copying cycle once took longer than its RPO (a
 * large first copy, a slow site) must not be checked in a loop while nothing changes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(half_the_rpo_when_cycles_are_short),
		cmocka_unit_test(earlier_when_a_cycle_takes_long),
		cmocka_unit_test(never_under_a_tenth_of_the_rpo),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
