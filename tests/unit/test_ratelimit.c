/* common/ratelimit: the token bucket's arithmetic, on a clock the test controls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/ratelimit.h"

#define MS 1000000LL
#define S  1000000000LL

static void unlimited_never_waits(void **state)
{
	(void)state;
	ims_ratelimit rl;
	ims_ratelimit_init(&rl, 0, 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(ims_ratelimit_reserve(&rl, 1u << 30, 0), 0);
	ims_ratelimit_destroy(&rl);
}

static void burst_first_then_rate(void **state)
{
	(void)state;
	ims_ratelimit rl;
	ims_ratelimit_init(&rl, 1000, 0);			  /* 1000 B/s, burst 1000 B */
	assert_int_equal(ims_ratelimit_reserve(&rl, 1000, 0), 0); /* the full bucket */
	assert_int_equal(ims_ratelimit_reserve(&rl, 500, 0), 500 * MS);
	/* a second caller queues behind the first */
	assert_int_equal(ims_ratelimit_reserve(&rl, 500, 0), 1 * S);
	/* two seconds later the debt is paid and 1000 more cannot have piled up beyond burst */
	assert_int_equal(ims_ratelimit_reserve(&rl, 0, 3 * S), 0);
	assert_int_equal(ims_ratelimit_reserve(&rl, 1000, 3 * S), 0);
	assert_int_equal(ims_ratelimit_reserve(&rl, 100, 3 * S), 100 * MS);
	ims_ratelimit_destroy(&rl);
}

static void long_run_holds_the_rate(void **state)
{
	(void)state;
	/* 64 KiB pieces at 1 MiB/s for a simulated minute: the bytes allowed by time T stay
	 * within burst + rate * T */
	ims_ratelimit rl;
	uint64_t rate = 1 << 20;
	ims_ratelimit_init(&rl, rate, 0);
	int64_t now = 0;
	uint64_t sent = 0;
	while (now < 60 * S) {
		now += ims_ratelimit_reserve(&rl, 64 << 10, now);
		sent += 64 << 10;
		assert_true(sent <=
			    rate + (uint64_t)((double)now / 1e9 * (double)rate) + (64 << 10));
	}
	/* and it is not far below either */
	assert_true(sent >= (uint64_t)(60 * rate));
	ims_ratelimit_destroy(&rl);
}

static void larger_than_burst_is_allowed(void **state)
{
	(void)state;
	ims_ratelimit rl;
	ims_ratelimit_init(&rl, 1000, 100);
	assert_int_equal(ims_ratelimit_reserve(&rl, 10100, 0), 10 * S);
	ims_ratelimit_destroy(&rl);
}

static void clock_going_back_adds_nothing(void **state)
{
	(void)state;
	ims_ratelimit rl;
	ims_ratelimit_init(&rl, 1000, 0);
	assert_int_equal(ims_ratelimit_reserve(&rl, 1000, 5 * S), 0);
	assert_int_equal(ims_ratelimit_reserve(&rl, 1000, 4 * S), 1 * S);
	ims_ratelimit_destroy(&rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unlimited_never_waits),
		cmocka_unit_test(burst_first_then_rate),
		cmocka_unit_test(long_run_holds_the_rate),
		cmocka_unit_test(larger_than_burst_is_allowed),
		cmocka_unit_test(clock_going_back_adds_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
