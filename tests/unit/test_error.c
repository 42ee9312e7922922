/* Unit tests of common/error.h: the thread-local one-line message. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/opts.h"

static void test_set_returns_negative(void **state)
{
	(void)state;
	ims_error_clear();
	assert_int_equal(ims_error_set(-ENOENT, "no image '%s'", "rbd/vm1"), -ENOENT);
	assert_string_equal(ims_error_last(), "no image 'rbd/vm1'");
	assert_int_equal(ims_error_last_code(), -ENOENT);
	/* a positive errno is negated */
	assert_int_equal(ims_error_set(EIO, "x"), -EIO);
}

static void test_one_line(void **state)
{
	(void)state;
	ims_error_set(-EINVAL, "bad\nvalue\r'%s'", "a\nb");
	assert_null(strchr(ims_error_last(), '\n'));
	assert_null(strchr(ims_error_last(), '\r'));
	assert_string_equal(ims_error_last(), "bad value 'a b'");
}

static void test_default_keeps_precise_message(void **state)
{
	(void)state;
	ims_error_clear();
	ims_error_set(-ETIMEDOUT, "site 'b' did not answer in 10s");
	assert_int_equal(ims_error_set_default(-EIO, "sync failed"), -EIO);
	assert_string_equal(ims_error_last(), "site 'b' did not answer in 10s");
	ims_error_clear();
	ims_error_set_default(-EIO, "sync failed");
	assert_string_equal(ims_error_last(), "sync failed");
}

static void test_cleared_falls_back(void **state)
{
	(void)state;
	ims_error_clear();
	assert_string_equal(ims_error_last(), "unknown error");
	assert_int_equal(ims_error_last_code(), 0);
	assert_string_equal(ims_strerror(-ENOENT), "No such file or directory");
	/* Ceph's EBLOCKLISTED, in words an operator looks for */
	assert_non_null(strstr(ims_strerror(-ESHUTDOWN), "blocklisted by the cluster"));
}

static void test_truncates_long_message(void **state)
{
	(void)state;
	char big[IMS_ERROR_MSG_MAX * 2];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ims_error_set(-EINVAL, "%s", big);
	assert_int_equal(strlen(ims_error_last()), IMS_ERROR_MSG_MAX - 1);
}

static void *other_thread(void *arg)
{
	(void)arg;
	ims_error_set(-EACCES, "from the other thread");
	return NULL;
}

static void test_thread_local(void **state)
{
	(void)state;
	pthread_t t;
	ims_error_set(-ENOENT, "from this thread");
	assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
	pthread_join(t, NULL);
	assert_string_equal(ims_error_last(), "from this thread");
	assert_int_equal(ims_error_last_code(), -ENOENT);
}

/* The cause may be the thread's own message: it was formatted over itself before. */
static void test_set_with_last_as_argument(void **state)
{
	(void)state;
	ims_error_set(-EIO, "the disk is full");
	assert_int_equal(ims_error_set(-ENOSPC, "cannot seal 'rbd/vm1': %s; nothing changed",
				       ims_error_last()),
			 -ENOSPC);
	assert_string_equal(ims_error_last(),
			    "cannot seal 'rbd/vm1': the disk is full; nothing changed");
}

static void test_wrap(void **state)
{
	(void)state;
	ims_error_set(-EIO, "site 'b' did not answer");
	assert_int_equal(ims_error_wrap(-EIO, "cannot promote '%s/%s'", "rbd", "vm1"), -EIO);
	assert_string_equal(ims_error_last(), "cannot promote 'rbd/vm1': site 'b' did not answer");
	assert_int_equal(ims_error_last_code(), -EIO);
}

static void test_save_restore(void **state)
{
	(void)state;
	ims_error_saved keep;
	ims_error_set(-EROFS, "the first failure");
	ims_error_save(&keep);
	ims_error_set(-EINVAL, "the undo failed too");
	ims_error_restore(&keep);
	assert_string_equal(ims_error_last(), "the first failure");
	assert_int_equal(ims_error_last_code(), -EROFS);
}

typedef struct {
	unsigned version;
	int x;
} toy_opts;

/* One rule for every options struct: 1 up to the version this build knows; NULL and 0 refused. */
static void test_opts_check(void **state)
{
	(void)state;
	toy_opts o1 = {.version = 1}, o2 = {.version = 2}, o0 = {0};
	const toy_opts *v1 = &o1, *v2 = &o2, *v0 = &o0, *none = NULL;
	assert_int_equal(IMS_OPTS_CHECK(v1, 2, "toy"), 0);
	assert_int_equal(IMS_OPTS_CHECK(v2, 2, "toy"), 0);
	assert_int_equal(IMS_OPTS_CHECK(v2, 1, "toy"), -EINVAL);
	assert_string_equal(ims_error_last(),
			    "toy options of an unknown version 2 (this build "
			    "knows 1 to 1): initialise them with their _OPTS_INIT");
	assert_int_equal(IMS_OPTS_CHECK(v0, 1, "toy"), -EINVAL);
	assert_int_equal(IMS_OPTS_CHECK(none, 1, "toy"), -EINVAL);
	assert_string_equal(ims_error_last(), "toy: no options given");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_returns_negative),
		cmocka_unit_test(test_one_line),
		cmocka_unit_test(test_default_keeps_precise_message),
		cmocka_unit_test(test_cleared_falls_back),
		cmocka_unit_test(test_truncates_long_message),
		cmocka_unit_test(test_thread_local),
		cmocka_unit_test(test_set_with_last_as_argument),
		cmocka_unit_test(test_wrap),
		cmocka_unit_test(test_save_restore),
		cmocka_unit_test(test_opts_check),
	};
	return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
