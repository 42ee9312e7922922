/*
 * The build links librados and reaches both sandbox sites with it: every site in
 * SANDBOX_SITES answers, has the rbd pool, and is its own cluster.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <rados/librados.h>

static rados_t connect_site(const char *letter)
{
	char var[32];
	rados_t c;
	snprintf(var, sizeof(var), "CEPH_CONF_%s", letter);
	const char *conf = getenv(var);
	assert_non_null(conf);
	assert_int_equal(rados_create2(&c, "ceph", "client.admin", 0), 0);
	assert_int_equal(rados_conf_read_file(c, conf), 0);
	assert_int_equal(rados_conf_set(c, "client_mount_timeout", "15"), 0);
	assert_int_equal(rados_connect(c), 0);
	return c;
}

static void test_sites_answer(void **state)
{
	(void)state;
	rados_t a = connect_site("A"), b = connect_site("B");
	char fa[64] = "", fb[64] = "";
	assert_true(rados_cluster_fsid(a, fa, sizeof(fa)) > 0);
	assert_true(rados_cluster_fsid(b, fb, sizeof(fb)) > 0);
	assert_string_not_equal(fa, fb);
	assert_true(rados_pool_lookup(a, "rbd") >= 0);
	assert_true(rados_pool_lookup(b, "rbd") >= 0);
	assert_int_equal(rados_pool_lookup(a, "no-such-pool"), -ENOENT);

	/* an object written on a is on a only */
	rados_ioctx_t ia, ib;
	char obj[64], buf[16];
	snprintf(obj, sizeof(obj), "smoke.%d", (int)getpid());
	assert_int_equal(rados_ioctx_create(a, "rbd", &ia), 0);
	assert_int_equal(rados_ioctx_create(b, "rbd", &ib), 0);
	assert_int_equal(rados_write_full(ia, obj, "hello", 5), 0);
	assert_int_equal(rados_read(ia, obj, buf, sizeof(buf), 0), 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(rados_read(ib, obj, buf, sizeof(buf), 0), -ENOENT);
	assert_int_equal(rados_remove(ia, obj), 0);
	rados_ioctx_destroy(ia);
	rados_ioctx_destroy(ib);
	rados_shutdown(a);
	rados_shutdown(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_sites_answer)};
	return cmocka_run_group_tests_name("rados_smoke", tests, NULL, NULL);
}
