/* common/clock: deadlines N ms from now, carried into seconds, and whether they have passed;
 * the monotonic seconds and the unix ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <time.h>

#include "common/clock.h"

static int64_t ms_of(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000 + t->tv_nsec / 1000000;
}

static void after_ms_is_that_far_ahead(void **state)
{
	(void)state;
	const uint64_t cases[] = {0, 1, 999, 1000, 1001, 2500, 30000, 86400000};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct timespec before, until, after;
		clock_gettime(CLOCK_REALTIME, &before);
		ims_clock_after_ms(&until, cases[i]);
		clock_gettime(CLOCK_REALTIME, &after);
		assert_true(until.tv_nsec >= 0 && until.tv_nsec < 1000000000L);
		assert_true(ms_of(&until) >= ms_of(&before) + (int64_t)cases[i]);
		assert_true(ms_of(&until) <= ms_of(&after) + (int64_t)cases[i]);
	}
}

static void carries_nanoseconds_into_seconds(void **state)
{
	(void)state;
	/* whatever the time now, 999 ms ahead stays normalised */
	for (int i = 0; i < 1000; i++) {
		struct timespec until;
		ims_clock_after_ms(&until, 999);
		assert_true(until.tv_nsec < 1000000000L);
	}
}

static void passed(void **state)
{
	(void)state;
	struct timespec t;
	ims_clock_after_ms(&t, 0);
	assert_true(ims_clock_passed(&t));
	ims_clock_after_ms(&t, 60000);
	assert_false(ims_clock_passed(&t));
	struct timespec ten = {0, 10 * 1000000L};
	ims_clock_after_ms(&t, 10);
	nanosleep(&ten, NULL);
	assert_true(ims_clock_passed(&t));
}

static void mono_and_unix_ms(void **state)
{
	(void)state;
	struct timespec before, after, ten = {0, 10 * 1000000L};
	clock_gettime(CLOCK_REALTIME, &before);
	int64_t ms = ims_clock_unix_ms();
	clock_gettime(CLOCK_REALTIME, &after);
	assert_true(ms >= ms_of(&before) && ms <= ms_of(&after));
	double t0 = ims_clock_mono_s();
	nanosleep(&ten, NULL);
	double dt = ims_clock_mono_s() - t0;
	assert_true(dt >= 0.009 && dt < 60);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(after_ms_is_that_far_ahead),
		cmocka_unit_test(carries_nanoseconds_into_seconds),
		cmocka_unit_test(passed),
		cmocka_unit_test(mono_and_unix_ms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
