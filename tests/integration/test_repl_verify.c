/*
 * ims_repl_verify() between the two sandbox sites: a faithful copy verifies equal by
 * checksums alone; a copy corrupted on the secondary (its sealed snapshot re-taken over a
 * damaged head, as silent corruption would leave it) reports exactly the damaged chunks; a
 * hole on one side and written zeros on the other are equal; missing snapshots are refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

#include "common/error.h"
#include "itest.h"
#include "replicator/replicator.h"
#include "store/image.h"

/* Write @p len bytes at @p off of the head on @p site: a byte pattern, or zeros (@p byte 0). */
static void write_at(ims_site *site, const char *name, uint64_t off, size_t len, int byte)
{
	itest_image im;
	char *buf = malloc(len);
	assert_non_null(buf);
	for (size_t i = 0; i < len; i++)
		buf[i] = byte ? (char)(byte + (int)(i * 7 % 251)) : 0;
	/* damage behind imgstore's back: only once this process let go of its guard on the
	 * secondary (store/site.h); while it holds it, nobody else can write there */
	ims_site_guard_drop(site, "rbd", name);
	itest_image_open(&im, site, "rbd", name, NULL, false);
	assert_int_equal(rbd_write(im.img, off, len, buf), (ssize_t)len);
	assert_int_equal(rbd_flush(im.img), 0);
	itest_image_close(&im);
	free(buf);
}

/* Seal @p snap again on site b over its current head: what the secondary's sealed snapshot
 * looks like if its objects were damaged behind imgstore's back. */
static void reseal_on_b(const char *name, const char *snap)
{
	itest_image im;
	itest_image_open(&im, itest.b, "rbd", name, NULL, false);
	assert_int_equal(rbd_snap_remove(im.img, snap), 0);
	assert_int_equal(rbd_snap_create(im.img, snap), 0);
	itest_image_close(&im);
}

/* Whether data object @p objno of the image's head exists on @p site. */
static bool object_exists(ims_site *site, const char *name, uint64_t objno)
{
	itest_image im;
	char prefix[128], oid[160];
	uint64_t size;
	time_t mtime;
	itest_image_open(&im, site, "rbd", name, NULL, false);
	assert_int_equal(rbd_get_block_name_prefix(im.img, prefix, sizeof(prefix)), 0);
	snprintf(oid, sizeof(oid), "%s.%016" PRIx64, prefix, objno);
	int r = rados_stat(im.io, oid, &size, &mtime);
	itest_image_close(&im);
	assert_true(r == 0 || r == -ENOENT);
	return r == 0;
}

static void sync_ok(const char *name, ims_repl_result *res)
{
	ims_repl_opts o = IMS_REPL_OPTS_INIT;
	if (ims_repl_sync(res, itest.a, itest.b, "rbd", name, &o) < 0)
		fail_msg("sync %s: %s", name, ims_error_last());
}

static ims_repl_verify_result *verify_ok(const char *name, const char *snap)
{
	ims_repl_verify_opts o = IMS_REPL_VERIFY_OPTS_INIT;
	ims_repl_verify_result *v = NULL;
	o.snap = snap;
	if (ims_repl_verify(&v, itest.a, itest.b, "rbd", name, &o) < 0)
		fail_msg("verify %s: %s", name, ims_error_last());
	assert_non_null(v);
	return v;
}

/* Mismatch I of V is LENGTH bytes at OFFSET (a macro: cmocka names the test's line). */
#define assert_mismatch(v, i, off, len)                                                            \
	do {                                                                                       \
		assert_int_equal((v)->mismatches[i].offset, (off));                                \
		assert_int_equal((v)->mismatches[i].length, (len));                                \
	} while (0)

static void test_equal_then_corrupted(void **state)
{
	(void)state;
	const char *name = itest_name("verify");
	ims_repl_result res;
	itest_create(name, 32 * MiB);
	write_at(itest.a, name, 0, 32 * MiB, 0x11); /* every object whole: checksums only */
	sync_ok(name, &res);

	ims_repl_verify_result *v = verify_ok(name, NULL);
	assert_string_equal(v->snapshot, res.sealed); /* the newest sealed snapshot by default */
	assert_true(v->equal);
	assert_int_equal(v->nmismatches, 0);
	assert_int_equal(v->objects, 8);
	assert_int_equal(v->objects_fallback, 0);
	assert_int_equal(v->bytes_read, 0); /* no data crossed the network */
	assert_int_equal(v->bytes_covered, 32 * MiB);
	assert_int_equal(v->size_primary, 32 * MiB);
	assert_int_equal(v->size_secondary, 32 * MiB);
	assert_int_equal(v->chunk_size, 64 * KiB);
	ims_repl_verify_result_free(v);

	/* damage site b: one whole chunk in object 2, ten bytes inside a chunk of object 5 */
	write_at(itest.b, name, 9 * MiB + 192 * KiB, 64 * KiB, 0x77);
	write_at(itest.b, name, 21 * MiB + 70000, 10, 0x33);
	reseal_on_b(name, res.sealed);
	/* writes to the heads after the snapshot change nothing: verify reads at the snapshot */
	write_at(itest.a, name, 0, 4 * MiB, 0x55);
	write_at(itest.b, name, 28 * MiB, 64 * KiB, 0x66);
	v = verify_ok(name, NULL);
	assert_false(v->equal);
	assert_int_equal(v->objects_fallback, 0);
	assert_int_equal(v->nmismatches, 2);
	assert_mismatch(v, 0, 9 * MiB + 192 * KiB, 64 * KiB);
	assert_mismatch(v, 1, 21 * MiB + 64 * KiB, 64 * KiB);
	ims_repl_verify_result_free(v);

	/* adjacent damaged chunks merge into one extent; finer chunks narrow it; b's head
	 * (damaged at 28 MiB too) is now in the snapshot */
	write_at(itest.b, name, 9 * MiB + 256 * KiB, 64 * KiB, 0x78);
	reseal_on_b(name, res.sealed);
	ims_repl_verify_opts o = IMS_REPL_VERIFY_OPTS_INIT;
	o.chunk_size = 4 * KiB;
	assert_int_equal(ims_repl_verify(&v, itest.a, itest.b, "rbd", name, &o), 0);
	assert_false(v->equal);
	assert_int_equal(v->chunk_size, 4 * KiB);
	assert_int_equal(v->nmismatches, 3);
	assert_mismatch(v, 0, 9 * MiB + 192 * KiB, 128 * KiB);
	assert_mismatch(v, 1, 21 * MiB + 68 * KiB, 4 * KiB); /* 70000 is in 68..72 KiB */
	assert_mismatch(v, 2, 28 * MiB, 64 * KiB);
	ims_repl_verify_result_free(v);
}

static void test_holes_and_zeros(void **state)
{
	(void)state;
	const char *name = itest_name("verify-sparse");
	ims_repl_result res;
	itest_create(name, 32 * MiB);
	write_at(itest.a, name, 0, 1 * MiB, 0x21);
	write_at(itest.a, name, 16 * MiB, 1 * MiB, 0x22);
	write_at(itest.a, name, 24 * MiB, 4 * MiB,
		 0); /* written zeros on a: a hole on b after the copy */
	sync_ok(name, &res);
	assert_true(object_exists(itest.a, name, 6));
	assert_false(object_exists(itest.b, name, 6));

	/* written zeros on b where a has a hole (object 2) and past a's short object 0 */
	write_at(itest.b, name, 8 * MiB, 4 * MiB, 0);
	write_at(itest.b, name, 1 * MiB, 1 * MiB, 0);
	reseal_on_b(name, res.sealed);
	assert_false(object_exists(itest.a, name, 2));
	assert_true(object_exists(itest.b, name, 2));

	ims_repl_verify_result *v = verify_ok(name, res.sealed);
	assert_true(v->equal);
	assert_int_equal(v->nmismatches, 0);
	assert_int_equal(v->objects, 8);
	assert_int_equal(v->objects_fallback,
			 3); /* objects 0, 2 and 6 differ in length or existence */
	ims_repl_verify_result_free(v);

	/* data where a has a hole is found by the byte comparison */
	write_at(itest.b, name, 13 * MiB + 128 * KiB + 5, 100, 0x44);
	reseal_on_b(name, res.sealed);
	v = verify_ok(name, res.sealed);
	assert_false(v->equal);
	assert_int_equal(v->nmismatches, 1);
	assert_mismatch(v, 0, 13 * MiB + 128 * KiB, 64 * KiB);
	ims_repl_verify_result_free(v);
}

static void test_sizes_and_refusals(void **state)
{
	(void)state;
	const char *name = itest_name("verify-size");
	ims_repl_result res;
	ims_repl_verify_result *v = NULL;
	ims_repl_verify_opts o = IMS_REPL_VERIFY_OPTS_INIT;
	itest_create(name, 8 * MiB);

	/* nothing sealed yet */
	assert_int_equal(ims_repl_verify(&v, itest.a, itest.b, "rbd", name, &o), -ENOENT);
	assert_null(v);
	write_at(itest.a, name, 1 * MiB, 64 * KiB, 0x31);
	sync_ok(name, &res);
	/* a snapshot that site b does not have */
	assert_int_equal(ims_snap_create(itest.a, "rbd", name, "mine"), 0);
	o.snap = "mine";
	assert_int_equal(ims_repl_verify(&v, itest.a, itest.b, "rbd", name, &o), -ENOENT);
	assert_non_null(strstr(ims_error_last(), "site 'b'"));
	o.snap = NULL;
	o.chunk_size = 3000;
	assert_int_equal(ims_repl_verify(&v, itest.a, itest.b, "rbd", name, &o), -EINVAL);
	o.chunk_size = 0;
	assert_int_equal(ims_repl_verify(&v, itest.a, itest.b, "rbd", "no-such-image", &o),
			 -ENOENT);

	/* a secondary whose sealed snapshot has another size differs past the smaller one */
	itest_image im;
	ims_site_guard_drop(itest.b, "rbd", name);
	itest_image_open(&im, itest.b, "rbd", name, NULL, false);
	assert_int_equal(rbd_resize(im.img, 12 * MiB), 0);
	itest_image_close(&im);
	reseal_on_b(name, res.sealed);
	v = verify_ok(name, NULL);
	assert_false(v->equal);
	assert_int_equal(v->size_primary, 8 * MiB);
	assert_int_equal(v->size_secondary, 12 * MiB);
	assert_int_equal(v->bytes_covered, 8 * MiB);
	assert_int_equal(v->nmismatches, 1);
	assert_mismatch(v, 0, 8 * MiB, 4 * MiB);
	ims_repl_verify_result_free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_equal_then_corrupted),
		cmocka_unit_test(test_holes_and_zeros),
		cmocka_unit_test(test_sizes_and_refusals),
	};
	return cmocka_run_group_tests_name("repl_verify", tests, itest_setup_ab, itest_teardown);
}
