/* common/keyfile.h: the checks of a key file (mode, kind, length, digits). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/keyfile.h"

static const char hex1[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1F";

static char dir[512], path[600];

static int setup(void **state)
{
	(void)state;
	const char *tmp = getenv("IMS_TEST_TMP");
	snprintf(dir, sizeof(dir), "%s/keyfile-%d", tmp ? tmp : "/tmp", (int)getpid());
	mkdir(tmp ? tmp : "/tmp", 0700);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/key", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

/* Write @p text to the key file with mode @p mode. */
static const char *key_file(const char *text, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void test_good(void **state)
{
	(void)state;
	uint8_t key[IMS_KEYFILE_LEN];
	char text[200];
	snprintf(text, sizeof(text), " \t%s\r\n\n", hex1);
	assert_int_equal(ims_keyfile_read(key, key_file(text, 0400), "key file"), 0);
	for (size_t i = 0; i < IMS_KEYFILE_LEN - 1; i++)
		assert_int_equal(key[i], i);
	assert_int_equal(key[31], 0x1f); /* upper case too */
	assert_int_equal(ims_keyfile_read(key, key_file(hex1, 0600), "key file"), 0);
}

static void test_bad_mode(void **state)
{
	(void)state;
	uint8_t key[IMS_KEYFILE_LEN];
	memset(key, 0xaa, sizeof(key));
	assert_int_equal(ims_keyfile_read(key, key_file(hex1, 0640), "kek_file"), -EPERM);
	char want[700];
	snprintf(want, sizeof(want),
		 "kek_file '%s' may be read by group or others (mode 640); chmod 600 it", path);
	assert_string_equal(ims_error_last(), want);
	assert_int_equal(ims_keyfile_read(key, key_file(hex1, 0604), "kek_file"), -EPERM);
	assert_int_equal(ims_keyfile_read(key, key_file(hex1, 0660), "kek_file"), -EPERM);
	assert_int_equal(key[0], 0xaa); /* not written on failure */
}

static void test_bad_text(void **state)
{
	(void)state;
	uint8_t key[IMS_KEYFILE_LEN];
	char text[200];
	memset(key, 0xaa, sizeof(key));
	/* short */
	snprintf(text, sizeof(text), "%.62s", hex1);
	assert_int_equal(ims_keyfile_read(key, key_file(text, 0600), "key file"), -EINVAL);
	char want[700];
	snprintf(want, sizeof(want), "key file '%s' must hold a 256-bit key as 64 hex digits",
		 path);
	assert_string_equal(ims_error_last(), want);
	snprintf(text, sizeof(text), "%.63s", hex1); /* an odd digit short */
	assert_int_equal(ims_keyfile_read(key, key_file(text, 0600), "key file"), -EINVAL);
	assert_int_equal(ims_keyfile_read(key, key_file("", 0600), "key file"), -EINVAL);
	/* not hex */
	snprintf(text, sizeof(text), "%.63sg", hex1);
	assert_int_equal(ims_keyfile_read(key, key_file(text, 0600), "key file"), -EINVAL);
	snprintf(text, sizeof(text), "0x%.62s", hex1);
	assert_int_equal(ims_keyfile_read(key, key_file(text, 0600), "key file"), -EINVAL);
	/* too long, or something after the key */
	snprintf(text, sizeof(text), "%s00", hex1);
	assert_int_equal(ims_keyfile_read(key, key_file(text, 0600), "key file"), -EINVAL);
	snprintf(text, sizeof(text), "%s x", hex1);
	assert_int_equal(ims_keyfile_read(key, key_file(text, 0600), "key file"), -EINVAL);
	assert_int_equal(key[0], 0xaa);
}

static void test_not_a_file(void **state)
{
	(void)state;
	uint8_t key[IMS_KEYFILE_LEN];
	assert_int_equal(ims_keyfile_read(key, dir, "kek_file"), -EINVAL);
	char want[700];
	snprintf(want, sizeof(want), "kek_file '%s' is not a regular file", dir);
	assert_string_equal(ims_error_last(), want);
	unlink(path);
	assert_int_equal(ims_keyfile_read(key, path, "kek_file"), -ENOENT);
	assert_non_null(strstr(ims_error_last(), "cannot open kek_file '"));
}

static void test_unhex(void **state)
{
	(void)state;
	uint8_t b[3] = {0};
	assert_int_equal(ims_keyfile_unhex(b, "0aFf10", 3), 0);
	assert_int_equal(b[0], 0x0a);
	assert_int_equal(b[1], 0xff);
	assert_int_equal(b[2], 0x10);
	assert_int_equal(ims_keyfile_unhex(b, "0aFf1", 3), -EINVAL); /* ends early */
	assert_int_equal(ims_keyfile_unhex(b, "0aFg10", 3), -EINVAL);
	assert_int_equal(ims_keyfile_unhex(b, "0aFf10zz", 3), 0); /* what follows is not read */
	assert_int_equal(ims_keyfile_unhex(b, "", 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),	 cmocka_unit_test(test_bad_mode),
		cmocka_unit_test(test_bad_text), cmocka_unit_test(test_not_a_file),
		cmocka_unit_test(test_unhex),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
