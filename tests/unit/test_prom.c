/* Unit tests of common/prom.h: label values escaped per the Prometheus text format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/prom.h"

static void test_escape(void **state)
{
	(void)state;
	char buf[64];
	assert_string_equal(ims_prom_escape(buf, sizeof(buf), "rbd/vm1"), "rbd/vm1");
	assert_string_equal(ims_prom_escape(buf, sizeof(buf), "rbd/a\"b"), "rbd/a\\\"b");
	assert_string_equal(ims_prom_escape(buf, sizeof(buf), "a\\b"), "a\\\\b");
	assert_string_equal(ims_prom_escape(buf, sizeof(buf), "a\nb"), "a\\nb");
	assert_string_equal(ims_prom_escape(buf, sizeof(buf), "é{}=,"), "é{}=,"); /* as they are */
	assert_string_equal(ims_prom_escape(buf, sizeof(buf), ""), "");
	assert_string_equal(ims_prom_escape(buf, sizeof(buf), NULL), "");
}

/* Too long: cut before an escape, never in the middle (a lone backslash would eat the quote). */
static void test_cut(void **state)
{
	(void)state;
	char buf[5];
	assert_string_equal(ims_prom_escape(buf, sizeof(buf), "abc\"d"), "abc");
	assert_string_equal(ims_prom_escape(buf, sizeof(buf), "ab\"d"), "ab\\\"");
	assert_string_equal(ims_prom_escape(buf, sizeof(buf), "abcdef"), "abcd");
	char big[IMS_PROM_ESCAPED_MAX(4)];
	assert_string_equal(ims_prom_escape(big, sizeof(big), "\"\"\"\""), "\\\"\\\"\\\"\\\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
