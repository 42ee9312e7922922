/* common/extents: append in order, merge what is adjacent and of the same kind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/extents.h"

static void adjacent_extents_merge(void **state)
{
	(void)state;
	ims_extents l = {0};
	assert_int_equal(ims_extents_add(&l, 0, 4096, true), 0);
	assert_int_equal(ims_extents_add(&l, 4096, 4096, true), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.v[0].off, 0);
	assert_int_equal(l.v[0].len, 8192);
	assert_true(l.v[0].data);
	ims_extents_free(&l);
	assert_null(l.v);
	assert_int_equal(l.n, 0);
	ims_extents_free(NULL);
}

static void a_gap_or_another_kind_does_not(void **state)
{
	(void)state;
	ims_extents l = {0};
	assert_int_equal(ims_extents_add(&l, 0, 100, true), 0);
	assert_int_equal(ims_extents_add(&l, 100, 50, false), 0); /* zeros after data */
	assert_int_equal(ims_extents_add(&l, 200, 10, false), 0); /* a gap */
	assert_int_equal(ims_extents_add(&l, 210, 10, false), 0);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.v[1].off, 100);
	assert_int_equal(l.v[1].len, 50);
	assert_false(l.v[1].data);
	assert_int_equal(l.v[2].off, 200);
	assert_int_equal(l.v[2].len, 20);
	assert_int_equal(ims_extents_bytes(&l), 170);
	ims_extents_free(&l);
}

static void diff_callbacks(void **state)
{
	(void)state;
	ims_extents all = {0}, data = {0};
	/* what rbd_diff_iterate2 reports: data, a discard, data */
	uint64_t off[] = {0, 1024, 2048};
	size_t len[] = {1024, 1024, 1024};
	int exists[] = {1, 0, 1};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ims_extents_diff_all(off[i], len[i], exists[i], &all), 0);
		assert_int_equal(ims_extents_diff_data(off[i], len[i], exists[i], &data), 0);
	}
	assert_int_equal(all.n, 3);
	assert_int_equal(data.n, 2);
	assert_int_equal(data.v[1].off, 2048);
	ims_extents_free(&all);
	ims_extents_free(&data);
}

static void many_extents(void **state)
{
	(void)state;
	ims_extents l = {0};
	for (uint64_t i = 0; i < 10000; i++)
		assert_int_equal(ims_extents_add(&l, 2 * i, 1, true), 0);
	assert_int_equal(l.n, 10000);
	assert_int_equal(l.v[9999].off, 19998);
	ims_extents_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(adjacent_extents_merge),
		cmocka_unit_test(a_gap_or_another_kind_does_not),
		cmocka_unit_test(diff_callbacks),
		cmocka_unit_test(many_extents),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
