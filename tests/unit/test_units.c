/* Unit tests of common/units.h: sizes and durations as people write them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/units.h"

static uint64_t size_of(const char *s)
{
	uint64_t v = 0xdeadbeef;
	assert_int_equal(ims_parse_size(&v, s), 0);
	return v;
}

static void test_sizes(void **state)
{
	(void)state;
	assert_int_equal(size_of("0"), 0);
	assert_int_equal(size_of("4096"), 4096);
	assert_int_equal(size_of("64K"), 65536);
	assert_int_equal(size_of("64k"), 65536);
	assert_int_equal(size_of("10G"), 10ull << 30);
	assert_int_equal(size_of("10GiB"), 10ull << 30);
	assert_int_equal(size_of("10 GB"), 10ull << 30);
	assert_int_equal(size_of("1.5T"), 3ull << 39);
	assert_int_equal(size_of("512B"), 512);
}

static void test_bad_sizes(void **state)
{
	(void)state;
	uint64_t v = 7;
	assert_int_equal(ims_parse_size(&v, ""), -EINVAL);
	assert_int_equal(ims_parse_size(&v, "G"), -EINVAL);
	assert_int_equal(ims_parse_size(&v, "-1"), -EINVAL);
	assert_int_equal(ims_parse_size(&v, "10X"), -EINVAL);
	assert_int_equal(ims_parse_size(&v, "1.5"), -EINVAL);
	assert_int_equal(ims_parse_size(&v, "1."), -EINVAL);
	assert_int_equal(ims_parse_size(&v, "99999999999999999999"), -ERANGE);
	assert_int_equal(ims_parse_size(&v, "20000P"), -ERANGE);
	assert_int_equal(v, 7); /* untouched on error */
}

static uint64_t secs_of(const char *s)
{
	uint64_t v = 0xdeadbeef;
	assert_int_equal(ims_parse_duration(&v, s), 0);
	return v;
}

static void test_durations(void **state)
{
	(void)state;
	assert_int_equal(secs_of("30"), 30);
	assert_int_equal(secs_of("30s"), 30);
	assert_int_equal(secs_of("5m"), 300);
	assert_int_equal(secs_of("1h30m"), 5400);
	assert_int_equal(secs_of("2d"), 172800);
	assert_int_equal(secs_of("1w"), 604800);
	assert_int_equal(secs_of(" 10s "), 10);
}

static void test_bad_durations(void **state)
{
	(void)state;
	uint64_t v = 7;
	assert_int_equal(ims_parse_duration(&v, ""), -EINVAL);
	assert_int_equal(ims_parse_duration(&v, "s"), -EINVAL);
	assert_int_equal(ims_parse_duration(&v, "5x"), -EINVAL);
	assert_int_equal(ims_parse_duration(&v, "1h30"), -EINVAL);
	assert_int_equal(ims_parse_duration(&v, "-5s"), -EINVAL);
	assert_int_equal(ims_parse_duration(&v, "5 s"), -EINVAL);
	assert_int_equal(ims_parse_duration(&v, "99999999999999999999w"), -ERANGE);
	assert_int_equal(v, 7);
}

static void test_format(void **state)
{
	(void)state;
	char b[32];
	assert_string_equal(ims_format_size(b, sizeof(b), 0), "0 B");
	assert_string_equal(ims_format_size(b, sizeof(b), 1023), "1023 B");
	assert_string_equal(ims_format_size(b, sizeof(b), 1024), "1 KiB");
	assert_string_equal(ims_format_size(b, sizeof(b), 3ull << 29), "1.5 GiB");
	assert_string_equal(ims_format_duration(b, sizeof(b), 45), "45s");
	assert_string_equal(ims_format_duration(b, sizeof(b), 300), "5m");
	assert_string_equal(ims_format_duration(b, sizeof(b), 5400), "1h30m");
	assert_string_equal(ims_format_duration(b, sizeof(b), 183600), "2d3h");
	/* what is printed parses back to the same value */
	uint64_t v;
	assert_int_equal(ims_parse_duration(&v, ims_format_duration(b, sizeof(b), 5400)), 0);
	assert_int_equal(v, 5400);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),	  cmocka_unit_test(test_bad_sizes),
		cmocka_unit_test(test_durations), cmocka_unit_test(test_bad_durations),
		cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests_name("units", tests, NULL, NULL);
}
