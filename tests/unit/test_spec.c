/* Unit tests of common/spec.h: POOL/IMAGE@SNAP and the name rules. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/spec.h"

static void test_parse_forms(void **state)
{
	(void)state;
	ims_spec s;
	char buf[1024];
	assert_int_equal(ims_spec_parse(&s, "rbd/vm1", NULL, true, false), 0);
	assert_string_equal(s.pool, "rbd");
	assert_string_equal(s.image, "vm1");
	assert_string_equal(s.snap, "");
	assert_int_equal(ims_spec_parse(&s, "fast/golden@v1.2", NULL, true, false), 0);
	assert_string_equal(s.pool, "fast");
	assert_string_equal(s.image, "golden");
	assert_string_equal(s.snap, "v1.2");
	assert_string_equal(ims_spec_format(buf, sizeof(buf), &s), "fast/golden@v1.2");
	assert_int_equal(ims_spec_parse(&s, "disk-0", "rbd", false, false), 0);
	assert_string_equal(ims_spec_format(buf, sizeof(buf), &s), "rbd/disk-0");
	assert_int_equal(ims_spec_parse(&s, "rbd/vm ü", NULL, false, false), 0); /* UTF-8 is fine */
}

static void expect_bad(const char *spec, bool snap_allowed, bool snap_required, const char *msg)
{
	ims_spec s;
	memset(&s, 0x55, sizeof(s));
	assert_int_equal(ims_spec_parse(&s, spec, NULL, snap_allowed, snap_required), -EINVAL);
	assert_string_equal(ims_error_last(), msg);
	assert_int_equal((unsigned char)s.pool[0], 0x55); /* untouched */
}

static void test_parse_bad(void **state)
{
	(void)state;
	expect_bad("", true, false, "empty image spec: expected POOL/IMAGE");
	expect_bad("vm1", true, false, "bad image spec 'vm1': expected POOL/IMAGE[@SNAP]");
	expect_bad("a/b/c", false, false, "bad image spec 'a/b/c': expected POOL/IMAGE");
	expect_bad("/vm1", false, false, "empty pool name");
	expect_bad("rbd/", false, false, "empty image name");
	expect_bad("rbd/vm1@", true, false, "empty snapshot name");
	expect_bad("rbd/vm1@s", false, false,
		   "'rbd/vm1@s' names a snapshot; this takes an image: POOL/IMAGE");
	expect_bad("rbd/vm1", true, true, "'rbd/vm1' names no snapshot: expected POOL/IMAGE@SNAP");
	expect_bad("rbd/vm1@a@b", true, false, "snapshot name 'a@b' contains '@'");
	expect_bad("rbd/.imgstore-import-1", false, false,
		   "image name '.imgstore-import-1' starts with '.', which imgstore keeps for its "
		   "own images");
	expect_bad("rbd/vm\x1b[31m", false, false, "image name has a control character (byte 2)");
	expect_bad("rbd/ vm", false, false, "image name ' vm' starts or ends with a space");
}

static void test_name_lengths(void **state)
{
	(void)state;
	char name[300];
	memset(name, 'x', sizeof(name));
	name[255] = '\0';
	assert_int_equal(ims_name_check(IMS_NAME_IMAGE, name), 0);
	name[255] = 'x';
	name[256] = '\0';
	assert_int_equal(ims_name_check(IMS_NAME_IMAGE, name), -EINVAL);
	assert_string_equal(ims_error_last(), "image name is 256 bytes long; the limit is 255");
	assert_int_equal(ims_name_check(IMS_NAME_SNAP, ".."), -EINVAL);
	assert_int_equal(ims_name_check(IMS_NAME_SNAP, ".hidden"), 0); /* only images reserve '.' */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_forms),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_name_lengths),
	};
	return cmocka_run_group_tests_name("spec", tests, NULL, NULL);
}
