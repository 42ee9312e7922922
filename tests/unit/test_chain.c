/* common/chain.c: hash chains of text lines (the audit log's), on made-up lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/chain.h"

/* "TEXT chain=HASH" after @p prev; @p prev becomes HASH. */
static void chained(char *out, size_t len, char prev[IMS_SHA256_HEX_LEN], const char *text)
{
	ims_chain_next(prev, prev, text, strlen(text));
	snprintf(out, len, "%s" IMS_CHAIN_TAG "%s", text, prev);
}

static void test_next_and_split(void **state)
{
	(void)state;
	char h[IMS_SHA256_HEX_LEN], got[IMS_SHA256_HEX_LEN];
	/* printf '%s\nhello' 000...000 | sha256sum */
	ims_chain_next(h, IMS_CHAIN_ZERO, "hello", 5);
	assert_string_equal(h, "d78c26793f1dab63611ab1bb456558666a2c7585773cd470c31c147d02f837dc");
	char again[IMS_SHA256_HEX_LEN];
	ims_chain_next(again, IMS_CHAIN_ZERO, "hello", 5);
	assert_string_equal(h, again);
	ims_chain_next(again, IMS_CHAIN_ZERO, "hellp", 5);
	assert_string_not_equal(h, again);
	char line[256];
	snprintf(line, sizeof(line), "hello" IMS_CHAIN_TAG "%s", h);
	size_t tl = 0;
	assert_int_equal(ims_chain_split(got, &tl, line, strlen(line)), 0);
	assert_string_equal(got, h);
	assert_int_equal(tl, 5);
	assert_int_equal(ims_chain_split(got, &tl, "hello", 5), -ENOENT);
	line[strlen(line) - 1] = 'X'; /* not hex */
	assert_int_equal(ims_chain_split(got, &tl, line, strlen(line)), -ENOENT);
}

static void test_check(void **state)
{
	(void)state;
	char prev[IMS_SHA256_HEX_LEN] = IMS_CHAIN_ZERO, l[3][256];
	chained(l[0], sizeof(l[0]), prev, "2026-12-04T16:00:00Z audit a result=ok");
	chained(l[1], sizeof(l[1]), prev, "2026-12-04T16:00:01Z audit b result=ok");
	chained(l[2], sizeof(l[2]), prev, "2026-12-04T16:00:02Z audit c result=ok");

	ims_chain_state st = IMS_CHAIN_STATE_INIT;
	for (int i = 0; i < 3; i++)
		assert_int_equal(ims_chain_check(&st, l[i], strlen(l[i]), i == 0), 0);
	assert_int_equal(st.lines, 3);
	assert_false(st.first_unchecked);
	assert_string_equal(st.prev, prev);

	/* an edited line breaks the chain at that line */
	char edited[256];
	snprintf(edited, sizeof(edited), "%s", l[1]);
	memcpy(strstr(edited, "result=ok"), "result=no", 9);
	st = (ims_chain_state)IMS_CHAIN_STATE_INIT;
	assert_int_equal(ims_chain_check(&st, l[0], strlen(l[0]), true), 0);
	assert_int_equal(ims_chain_check(&st, edited, strlen(edited), false), -EBADMSG);
	/* a removed line: the next one does not follow */
	st = (ims_chain_state)IMS_CHAIN_STATE_INIT;
	assert_int_equal(ims_chain_check(&st, l[0], strlen(l[0]), true), 0);
	assert_int_equal(ims_chain_check(&st, l[2], strlen(l[2]), false), -EBADMSG);
	/* a line without a hash */
	assert_int_equal(ims_chain_check(&st, "plain", 5, false), -ENOENT);

	/* a file starting in the middle of a chain: its first line is taken as it is */
	st = (ims_chain_state)IMS_CHAIN_STATE_INIT;
	assert_int_equal(ims_chain_check(&st, l[1], strlen(l[1]), true), 0);
	assert_true(st.first_unchecked);
	assert_int_equal(ims_chain_check(&st, l[2], strlen(l[2]), false), 0);
	/* but only the very first: a second file must follow the first, or start from zeros */
	assert_int_equal(ims_chain_check(&st, l[1], strlen(l[1]), true), -EBADMSG);
	assert_int_equal(ims_chain_check(&st, l[0], strlen(l[0]), true), 0);
	/* a line in the middle of a file never restarts from zeros */
	assert_int_equal(ims_chain_check(&st, l[0], strlen(l[0]), false), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_next_and_split),
		cmocka_unit_test(test_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
