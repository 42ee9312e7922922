/* Unit tests of common/log.h: levels, one line per record. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"

/* Run fn with stderr sent to a temporary file; return what it wrote. */
static char captured[8192];

static const char *capture(void (*fn)(void))
{
	FILE *tmp = tmpfile();
	assert_non_null(tmp);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(fileno(tmp), STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	size_t n = fread(captured, 1, sizeof(captured) - 1, tmp);
	captured[n] = '\0';
	fclose(tmp);
	return captured;
}

static void write_some(void)
{
	ims_log_error("failed to open image '%s'", "rbd/vm1");
	ims_log_warning("lag of '%s' is %d s", "rbd/vm2", 75);
	ims_log_info("multi\nline");
	ims_log_debug("hidden at info");
}

static void test_levels_filter(void **state)
{
	(void)state;
	ims_log_set_level(IMS_LOG_INFO);
	const char *out = capture(write_some);
	assert_non_null(strstr(out, "error   failed to open image 'rbd/vm1'\n"));
	assert_non_null(strstr(out, "warning lag of 'rbd/vm2' is 75 s\n"));
	assert_non_null(strstr(out, "info    multi line\n"));
	assert_null(strstr(out, "hidden"));

	ims_log_set_level(IMS_LOG_ERROR);
	out = capture(write_some);
	assert_non_null(strstr(out, "failed to open"));
	assert_null(strstr(out, "lag of"));

	ims_log_set_level(IMS_LOG_DEBUG);
	out = capture(write_some);
	assert_non_null(strstr(out, "debug   hidden at info"));
	ims_log_set_level(IMS_LOG_INFO);
}

static void test_one_record_per_line(void **state)
{
	(void)state;
	ims_log_set_level(IMS_LOG_INFO);
	const char *out = capture(write_some);
	int lines = 0;
	for (const char *p = out; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 3);
	/* every record starts with an ISO 8601 UTC time */
	assert_int_equal(out[4], '-');
	assert_int_equal(out[10], 'T');
	assert_int_equal(out[23], 'Z');
}

static void test_parse_level(void **state)
{
	(void)state;
	ims_log_level l = IMS_LOG_ERROR;
	assert_int_equal(ims_log_parse_level(&l, "debug"), 0);
	assert_int_equal(l, IMS_LOG_DEBUG);
	assert_int_equal(ims_log_parse_level(&l, "WARN"), 0);
	assert_int_equal(l, IMS_LOG_WARNING);
	assert_int_equal(ims_log_parse_level(&l, "loud"), -EINVAL);
	assert_int_equal(l, IMS_LOG_WARNING);
	assert_string_equal(ims_log_level_name(IMS_LOG_INFO), "info");
}

/* Under journald: a priority prefix per line, which journald turns into the entry's PRIORITY */
static void test_journal_priorities(void **state)
{
	(void)state;
	ims_log_set_level(IMS_LOG_INFO);
	ims_log_set_sink(IMS_LOG_JOURNAL, NULL);
	const char *out = capture(write_some);
	ims_log_set_sink(IMS_LOG_STDERR, NULL);
	assert_string_equal(out, "<3>error   failed to open image 'rbd/vm1'\n"
				 "<4>warning lag of 'rbd/vm2' is 75 s\n"
				 "<6>info    multi line\n");
}

/* $JOURNAL_STREAM names stderr's device and inode when systemd connected it to journald */
static void test_journal_detected(void **state)
{
	(void)state;
	struct stat st;
	char v[64];
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	unsetenv("JOURNAL_STREAM");
	assert_false(ims_log_stderr_is_journal());
	snprintf(v, sizeof(v), "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
	setenv("JOURNAL_STREAM", v, 1);
	assert_true(ims_log_stderr_is_journal());
	snprintf(v, sizeof(v), "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino + 1);
	setenv("JOURNAL_STREAM", v, 1); /* another stream: stderr was redirected since */
	assert_false(ims_log_stderr_is_journal());
	setenv("JOURNAL_STREAM", "garbage", 1);
	assert_false(ims_log_stderr_is_journal());
	unsetenv("JOURNAL_STREAM");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels_filter),	 cmocka_unit_test(test_one_record_per_line),
		cmocka_unit_test(test_parse_level),	 cmocka_unit_test(test_journal_priorities),
		cmocka_unit_test(test_journal_detected),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
