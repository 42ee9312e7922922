/* store/crypt.h without a cluster: the KEK file's checks, wrapping and unwrapping data keys. */
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
#include "store/crypt.h"

static const char hex1[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char hex2[] = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

static char path[512];

/* Write @p text to a KEK file of mode @p mode. */
static const char *kek_file(const char *text, mode_t mode)
{
	const char *dir = getenv("IMS_TEST_TMP");
	snprintf(path, sizeof(path), "%s/kek-%d", dir ? dir : "/tmp", (int)getpid());
	mkdir(dir ? dir : "/tmp", 0700);
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static ims_crypt_kek *load(const char *hex)
{
	ims_crypt_kek *k = NULL;
	assert_int_equal(ims_crypt_kek_load(&k, kek_file(hex, 0600)), 0);
	unlink(path);
	return k;
}

static void test_kek_file_checks(void **state)
{
	(void)state;
	ims_crypt_kek *k = NULL;
	char text[200];
	snprintf(text, sizeof(text), "  %s\n", hex1);
	assert_int_equal(ims_crypt_kek_load(&k, kek_file(text, 0640)), -EPERM);
	assert_non_null(strstr(ims_error_last(), "may be read by group or others (mode 640)"));
	assert_int_equal(ims_crypt_kek_load(&k, kek_file(text, 0604)), -EPERM);
	assert_null(k);
	assert_int_equal(ims_crypt_kek_load(&k, kek_file("0011", 0600)), -EINVAL);
	assert_non_null(strstr(ims_error_last(), "must hold a 256-bit key as 64 hex digits"));
	snprintf(text, sizeof(text), "%s00", hex1); /* too long */
	assert_int_equal(ims_crypt_kek_load(&k, kek_file(text, 0600)), -EINVAL);
	snprintf(text, sizeof(text), "%.63sg", hex1); /* not hex */
	assert_int_equal(ims_crypt_kek_load(&k, kek_file(text, 0600)), -EINVAL);
	assert_null(k);
	unlink(path);
	assert_int_equal(ims_crypt_kek_load(&k, path), -ENOENT);
	snprintf(text, sizeof(text), "  %s\n", hex1);
	assert_int_equal(ims_crypt_kek_load(&k, kek_file(text, 0400)), 0);
	assert_int_equal(strlen(ims_crypt_kek_id(k)), IMS_CRYPT_KEKID_LEN);
	ims_crypt_kek_free(k);
	unlink(path);
}

static void test_wrap_unwrap(void **state)
{
	(void)state;
	ims_crypt_kek *k1 = load(hex1), *k2 = load(hex2);
	uint8_t key[IMS_CRYPT_KEY_LEN], back[IMS_CRYPT_KEY_LEN];
	char w1[IMS_CRYPT_WRAPPED_MAX], w2[IMS_CRYPT_WRAPPED_MAX];
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 7 + 1);
	assert_string_not_equal(ims_crypt_kek_id(k1), ims_crypt_kek_id(k2));
	assert_int_equal(ims_crypt_wrap(w1, k1, key), 0);
	assert_int_equal(ims_crypt_wrap(w2, k1, key), 0);
	assert_string_not_equal(w1, w2); /* a fresh nonce each time */
	assert_int_equal(strncmp(w1, "v1:", 3), 0);
	assert_memory_equal(w1 + 3, ims_crypt_kek_id(k1), IMS_CRYPT_KEKID_LEN);
	assert_null(strstr(w1, "0f10111213")); /* nothing of the key in clear */
	assert_int_equal(ims_crypt_unwrap(back, k1, w1), 0);
	assert_memory_equal(back, key, sizeof(key));

	/* another KEK: named */
	assert_int_equal(ims_crypt_unwrap(back, k2, w1), -EPERM);
	assert_non_null(strstr(ims_error_last(), "wrapped by KEK"));
	/* a KEK id forged to match, or a flipped bit: authentication fails */
	char forged[IMS_CRYPT_WRAPPED_MAX];
	memcpy(forged, w1, sizeof(forged));
	memcpy(forged + 3, ims_crypt_kek_id(k2), IMS_CRYPT_KEKID_LEN);
	assert_int_equal(ims_crypt_unwrap(back, k2, forged), -EPERM);
	assert_non_null(strstr(ims_error_last(), "fails authentication"));
	memcpy(forged, w1, sizeof(forged));
	size_t n = strlen(forged);
	forged[n - 5] = forged[n - 5] == '0' ? '1' : '0';
	assert_int_equal(ims_crypt_unwrap(back, k1, forged), -EPERM);
	/* damaged: short, long, not hex, another version, the tombstone */
	static const char *bad[] = {"", "v1:", "shredded", "v2:0123456789abcdef:00", NULL};
	for (int i = 0; bad[i]; i++)
		assert_int_equal(ims_crypt_unwrap(back, k1, bad[i]), -EINVAL);
	memcpy(forged, w1, sizeof(forged));
	forged[n - 1] = 'x';
	assert_int_equal(ims_crypt_unwrap(back, k1, forged), -EINVAL);
	memcpy(forged, w1, sizeof(forged));
	forged[n] = '0';
	forged[n + 1] = '\0';
	assert_int_equal(ims_crypt_unwrap(back, k1, forged), -EINVAL);
	ims_crypt_kek_free(k1);
	ims_crypt_kek_free(k2);
	ims_crypt_kek_free(NULL);
}

/* A rotation: the previous KEK still unwraps, wrapping uses the current one, rewrap moves a key
 * over once; a key of neither is named. */
static void test_rotation(void **state)
{
	(void)state;
	ims_crypt_kek *old = load(hex1), *cur = load(hex2), *third = load(hex2);
	uint8_t key[IMS_CRYPT_KEY_LEN], back[IMS_CRYPT_KEY_LEN];
	char w_old[IMS_CRYPT_WRAPPED_MAX], w_new[IMS_CRYPT_WRAPPED_MAX], w2[IMS_CRYPT_WRAPPED_MAX];
	char old_id[IMS_CRYPT_KEKID_LEN + 1];
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 3 + 5);
	snprintf(old_id, sizeof(old_id), "%s", ims_crypt_kek_id(old));
	assert_int_equal(ims_crypt_wrap(w_old, old, key), 0);
	assert_null(ims_crypt_kek_previous_id(cur));
	assert_int_equal(ims_crypt_unwrap(back, cur, w_old), -EPERM);
	ims_crypt_kek_set_previous(cur, old);
	assert_string_equal(ims_crypt_kek_previous_id(cur), old_id);
	assert_int_equal(ims_crypt_unwrap(back, cur, w_old), 0);
	assert_memory_equal(back, key, sizeof(key));
	assert_int_equal(ims_crypt_check_wrapped(w_old, cur, "cold image 'rbd/x'"), 0);
	/* rewrap: from the previous KEK to the current one, then nothing to do */
	assert_int_equal(ims_crypt_rewrap(w_new, cur, w_old), 1);
	assert_memory_equal(w_new + 3, ims_crypt_kek_id(cur), IMS_CRYPT_KEKID_LEN);
	assert_int_equal(ims_crypt_unwrap(back, third, w_new), 0); /* no previous KEK needed */
	assert_memory_equal(back, key, sizeof(key));
	assert_int_equal(ims_crypt_rewrap(w2, cur, w_new), 0);
	assert_string_equal(w2, w_new);
	/* a key of neither KEK: both named */
	ims_crypt_kek *stranger = NULL;
	char text[100];
	snprintf(text, sizeof(text), "%.62s77", hex1);
	assert_int_equal(ims_crypt_kek_load(&stranger, kek_file(text, 0600)), 0);
	unlink(path);
	assert_int_equal(ims_crypt_wrap(w2, stranger, key), 0);
	assert_int_equal(ims_crypt_rewrap(w_new, cur, w2), -EPERM);
	assert_non_null(strstr(ims_error_last(), "(kek_file) and KEK"));
	assert_non_null(strstr(ims_error_last(), old_id));
	/* shredded, or no KEK */
	assert_int_equal(ims_crypt_check_wrapped("shredded", cur, "cold image 'rbd/x'"), -EPERM);
	assert_string_equal(ims_error_last(), "cold image 'rbd/x' was crypto-shredded: its key is "
					      "destroyed and its data cannot be read");
	assert_int_equal(ims_crypt_check_wrapped(w_old, NULL, "cold image 'rbd/x'"), -EPERM);
	assert_int_equal(ims_crypt_check_wrapped(w2, third, "cold image 'rbd/x'"), -EPERM);
	assert_non_null(strstr(ims_error_last(), "cannot open cold image 'rbd/x': the data key is "
						 "wrapped by KEK"));
	ims_crypt_kek_free(stranger);
	ims_crypt_kek_free(cur); /* frees old too */
	ims_crypt_kek_free(third);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kek_file_checks),
		cmocka_unit_test(test_wrap_unwrap),
		cmocka_unit_test(test_rotation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
