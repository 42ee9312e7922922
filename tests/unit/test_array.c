/* common/array: growing by doubling, from a minimum, without losing what is there. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>

#include "common/array.h"

typedef struct {
	int64_t *v;
	size_t n, cap;
} times;

static void grows_by_doubling_and_keeps_values(void **state)
{
	(void)state;
	times t = {0};
	for (int64_t i = 0; i < 1000; i++) {
		assert_int_equal(ims_array_grow(t.v, t.cap, t.n + 1, 16), 0);
		t.v[t.n++] = i;
		if (i == 0)
			assert_int_equal(t.cap, 16);
		if (i == 16)
			assert_int_equal(t.cap, 32);
	}
	assert_int_equal(t.cap, 1024);
	for (int64_t i = 0; i < 1000; i++)
		assert_int_equal(t.v[i], i);
	free(t.v);
}

static void enough_room_changes_nothing(void **state)
{
	(void)state;
	times t = {0};
	assert_int_equal(ims_array_grow(t.v, t.cap, 10, 4), 0);
	assert_int_equal(t.cap, 16); /* 4, 8, 16 */
	int64_t *was = t.v;
	assert_int_equal(ims_array_grow(t.v, t.cap, 16, 4), 0);
	assert_ptr_equal(t.v, was);
	assert_int_equal(t.cap, 16);
	assert_int_equal(ims_array_grow(t.v, t.cap, 0, 4), 0);
	free(t.v);
}

static void overflow_is_enomem(void **state)
{
	(void)state;
	times t = {0};
	assert_int_equal(ims_array_grow(t.v, t.cap, SIZE_MAX / 4, 1), -ENOMEM);
	assert_null(t.v);
	assert_int_equal(t.cap, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(grows_by_doubling_and_keeps_values),
		cmocka_unit_test(enough_room_changes_nothing),
		cmocka_unit_test(overflow_is_enomem),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
