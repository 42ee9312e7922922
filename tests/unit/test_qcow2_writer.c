/*
 * Unit tests of the qcow2 writer: images written from a pattern must pass `qemu-img check`,
 * compare equal to the pattern with `qemu-img compare`, and read back through our reader.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "store/format.h"
#include "store/format_internal.h"
#include "tests/unit/format_test_util.h"
#include "tests/unit/writer_test_util.h"

/* qemu-img check finds nothing wrong, qemu-img compare finds it equal to @p raw. */
static void qemu_agrees(const char *image, const char *raw)
{
	char out[4096];
	int st;

	st = ft_run_output(out, sizeof(out), "qemu-img check -f qcow2 '%s'", ft_path(image));
	if (st != 0 || !strstr(out, "No errors were found on the image."))
		fail_msg("qemu-img check of '%s' (exit %d):\n%s", image, st, out);
	if (strstr(out, "leaked"))
		fail_msg("qemu-img check of '%s' finds leaks:\n%s", image, out);
	st = ft_run_output(out, sizeof(out), "qemu-img compare -f qcow2 -F raw '%s' '%s'",
			   ft_path(image), ft_path(raw));
	if (st != 0)
		fail_msg("qemu-img compare of '%s' with '%s' (exit %d):\n%s", image, raw, st, out);
}

static int write_piece(void *w, uint64_t offset, const void *buf, size_t len)
{
	return ims_qcow2_writer_write(w, offset, buf, len);
}

/* Write @p p through the writer in pieces of varying size, skipping some zero runs. */
static void write_image(const char *name, const uint8_t *p, size_t len, bool skip_zeros)
{
	ims_qcow2_writer *w = NULL;
	int fd = wt_create(name);

	assert_int_equal(ims_qcow2_writer_open(&w, fd, len), 0);
	wt_write_pieces(write_piece, w, p, len, skip_zeros);
	assert_int_equal(ims_qcow2_writer_finish(w), 0);
	ims_qcow2_writer_free(w);
	close(fd);
}

static void test_pattern(void **state)
{
	static const wt_writer wr = {"qcow2", IMS_FORMAT_QCOW2, write_image, qemu_agrees};

	(void)state;
	wt_check_pattern(&wr);
}

static void test_empty_and_full_clusters(void **state)
{
	(void)state;
	ims_qcow2_writer *w = NULL;
	uint8_t *zero = calloc(1, 1 << 20), *data = malloc(1 << 20);
	ft_walk walk;
	struct stat st;
	int fd;

	assert_non_null(zero);
	assert_non_null(data);
	memset(data, 0x77, 1 << 20);

	/* nothing written: header, L1 table and refcounts only */
	fd = wt_create("empty.qcow2");
	assert_int_equal(ims_qcow2_writer_open(&w, fd, 1 << 30), 0);
	assert_int_equal(ims_qcow2_writer_write(w, 0, zero, 1 << 20), 0);
	assert_int_equal(ims_qcow2_writer_finish(w), 0);
	ims_qcow2_writer_free(w);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 4 * 65536);
	close(fd);
	ft_run("truncate -s 1G '%s'", ft_path("empty.raw"));
	qemu_agrees("empty.qcow2", "empty.raw");
	ft_compare(ft_path("empty.qcow2"), IMS_FORMAT_QCOW2, ft_path("empty.raw"), 1 << 20, &walk);
	assert_int_equal(walk.extents, 1);

	/* whole clusters straight from the caller's buffer, then a file that held more before */
	ft_write_file(ft_path("full.raw"), data, 1 << 20);
	fd = open(ft_path("empty.raw"), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(ims_qcow2_writer_open(&w, fd, 1 << 20), 0);
	assert_int_equal(ims_qcow2_writer_write(w, 0, data, 1 << 20), 0);
	assert_int_equal(ims_qcow2_writer_finish(w), 0);
	ims_qcow2_writer_free(w);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, (1 + 16 + 1 + 1 + 1 + 1) * 65536);
	close(fd);
	ft_run("mv '%s' '%s'", ft_path("empty.raw"), ft_path("full.qcow2"));
	qemu_agrees("full.qcow2", "full.raw");
	ft_compare(ft_path("full.qcow2"), IMS_FORMAT_QCOW2, ft_path("full.raw"), 65536, &walk);
	assert_int_equal(walk.extents, 1);
	free(zero);
	free(data);
}

/* Where test_large_sparse() and test_stream() write their pieces: several L2 tables apart. */
static const uint64_t at[] = {
	0, 70000, (512ull << 20) - 3, 600ull << 20, (5ull << 30) + 12345, (6ull << 30) - 100};

/* Several L2 tables, far apart, on a large sparse disk. */
static void test_large_sparse(void **state)
{
	(void)state;
	ims_qcow2_writer *w = NULL;
	uint64_t vsize = 6ull << 30;
	char cmd[256];
	ft_walk walk;
	int fd;

	fd = wt_create("large.qcow2");
	assert_int_equal(ims_qcow2_writer_open(&w, fd, vsize), 0);
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		snprintf(cmd, sizeof(cmd), "piece %zu", i);
		assert_int_equal(ims_qcow2_writer_write(w, at[i], cmd, strlen(cmd) + 1), 0);
	}
	assert_int_equal(ims_qcow2_writer_finish(w), 0);
	ims_qcow2_writer_free(w);
	close(fd);

	/* the same as a sparse raw file */
	fd = wt_create("large.raw");
	assert_int_equal(ftruncate(fd, (off_t)vsize), 0);
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		snprintf(cmd, sizeof(cmd), "piece %zu", i);
		assert_int_equal(pwrite(fd, cmd, strlen(cmd) + 1, (off_t)at[i]),
				 (ssize_t)strlen(cmd) + 1);
	}
	close(fd);
	qemu_agrees("large.qcow2", "large.raw");
	ft_compare(ft_path("large.qcow2"), IMS_FORMAT_QCOW2, ft_path("large.raw"), 4 << 20, &walk);
	/* data in 6 clusters, one of them across two clusters: 7 clusters, 6 extents */
	assert_int_equal(walk.data_extents, 6);
	assert_int_equal(walk.data_bytes, 7 * 65536);
}

/*
 * Streamed (ims_qcow2_writer_open_fn): the clusters planned first, every table before the
 * data; planned clusters that stay zeros read as zeros; data outside the plan is refused.
 */
static void test_stream(void **state)
{
	(void)state;
	ims_qcow2_writer *w = NULL;
	uint64_t vsize = 6ull << 30;
	wt_sink s = {.fd = wt_create("stream.qcow2")};
	char cmd[256];
	ft_walk walk;

	assert_int_equal(ims_qcow2_writer_open_fn(&w, wt_sink_out, &s, vsize), 0);
	/* the allocation: 8 MiB around each piece (overlapping ones merge), and 8 MiB at 3 GiB
	 * that stays zeros */
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		uint64_t a = at[i] / (4u << 20) * (4u << 20);
		assert_int_equal(
			ims_qcow2_writer_plan(w, a, vsize - a < (8u << 20) ? vsize - a : 8u << 20),
			0);
		if (i == 3)
			assert_int_equal(ims_qcow2_writer_plan(w, 3ull << 30, 8u << 20), 0);
	}
	ft_expect_error(ims_qcow2_writer_plan(w, 0, 4096), -EINVAL, "goes back");
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		snprintf(cmd, sizeof(cmd), "piece %zu", i);
		assert_int_equal(ims_qcow2_writer_write(w, at[i], cmd, strlen(cmd) + 1), 0);
	}
	ft_expect_error(ims_qcow2_writer_plan(w, vsize - 512, 512), -EINVAL, "before its first");
	assert_int_equal(ims_qcow2_writer_finish(w), 0);
	ims_qcow2_writer_free(w);
	close(s.fd);
	qemu_agrees("stream.qcow2", "large.raw"); /* test_large_sparse's */
	ft_compare(ft_path("stream.qcow2"), IMS_FORMAT_QCOW2, ft_path("large.raw"), 4 << 20, &walk);

	/* the whole pattern, planned whole, in pieces of varying size */
	uint8_t *p = malloc(WT_PATTERN_BYTES);
	assert_non_null(p);
	ft_pattern(p, WT_PATTERN_BYTES);
	ft_write_file(ft_path("spattern.raw"), p, WT_PATTERN_BYTES);
	s = (wt_sink){.fd = wt_create("spattern.qcow2")};
	assert_int_equal(ims_qcow2_writer_open_fn(&w, wt_sink_out, &s, WT_PATTERN_BYTES), 0);
	assert_int_equal(ims_qcow2_writer_plan(w, 0, WT_PATTERN_BYTES), 0);
	for (size_t off = 0, n = 1000; off < WT_PATTERN_BYTES; off += n, n = n * 3 % 300007 + 1)
		assert_int_equal(ims_qcow2_writer_write(
					 w, off, p + off,
					 WT_PATTERN_BYTES - off < n ? WT_PATTERN_BYTES - off : n),
				 0);
	assert_int_equal(ims_qcow2_writer_finish(w), 0);
	ims_qcow2_writer_free(w);
	close(s.fd);
	qemu_agrees("spattern.qcow2", "spattern.raw");

	/* nothing planned, nothing written: an empty disk; data outside the plan is refused */
	s = (wt_sink){.fd = wt_create("sempty.qcow2")};
	assert_int_equal(ims_qcow2_writer_open_fn(&w, wt_sink_out, &s, 1u << 20), 0);
	assert_int_equal(ims_qcow2_writer_finish(w), 0);
	ims_qcow2_writer_free(w);
	close(s.fd);
	ft_write_file(ft_path("sempty.raw"), NULL, 0);
	assert_int_equal(truncate(ft_path("sempty.raw"), 1 << 20), 0);
	qemu_agrees("sempty.qcow2", "sempty.raw");
	s = (wt_sink){.fd = wt_create("sbad.qcow2")};
	assert_int_equal(ims_qcow2_writer_open_fn(&w, wt_sink_out, &s, 1u << 20), 0);
	assert_int_equal(ims_qcow2_writer_plan(w, 0, 65536), 0);
	ft_expect_error(ims_qcow2_writer_write(w, 131072, p, 65536), -EINVAL,
			"where the allocation map had none");
	ims_qcow2_writer_free(w);
	close(s.fd);
	free(p);
}

static void test_refcount_layout(void **state)
{
	(void)state;
	static const uint64_t ns[] = {1,	 2,	 32766,	     32767,
				      32768,	 100000, 1ull << 28, (1ull << 28) * 8192 - 70000,
				      1ull << 33};
	uint64_t b, t;

	ims_format__qcow2_refcount_layout(5, &b, &t);
	assert_true(b == 1 && t == 1);
	ims_format__qcow2_refcount_layout(32766, &b, &t);
	assert_true(b == 1 && t == 1);
	ims_format__qcow2_refcount_layout(32767, &b, &t);
	assert_true(b == 2 && t == 1);
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		uint64_t total;
		ims_format__qcow2_refcount_layout(ns[i], &b, &t);
		total = ns[i] + b + t;
		/* enough blocks for every cluster, themselves included, and no more */
		assert_true(b * 32768 >= total);
		assert_true((b - 1) * 32768 < total);
		assert_true(t * 8192 >= b && (t - 1) * 8192 < b);
	}
}

static void test_errors(void **state)
{
	(void)state;
	ims_qcow2_writer *w = (ims_qcow2_writer *)(uintptr_t)1;
	uint8_t buf[512] = {1};
	int fd;

	ims_error_clear();
	ft_expect_error(ims_qcow2_writer_open(&w, 3, 0), -EINVAL,
			"qcow2 writer: virtual size 0 is not a positive multiple of 512");
	ft_expect_error(ims_qcow2_writer_open(&w, 3, 1000), -EINVAL,
			"qcow2 writer: virtual size 1000 is not a positive multiple of 512");
	ft_expect_error(
		ims_qcow2_writer_open(&w, 3, (2ull << 50) + 512), -EINVAL,
		"qcow2 writer: virtual size 2251799813685760 is beyond the 2251799813685248 "
		"bytes an image of 64 KiB clusters addresses");
	ft_expect_error(ims_qcow2_writer_open(&w, -1, 512), -EINVAL,
			"qcow2 writer: no file to write to");
	assert_ptr_equal(w, (ims_qcow2_writer *)(uintptr_t)1);

	fd = wt_create("errors.qcow2");
	assert_int_equal(ims_qcow2_writer_open(&w, fd, 1 << 20), 0);
	assert_int_equal(ims_qcow2_writer_write(w, 4096, buf, 512), 0);
	ft_expect_error(
		ims_qcow2_writer_write(w, 4095, buf, 1), -EINVAL,
		"qcow2 writer: write at offset 4095 comes before offset 4608, where the last "
		"one ended");
	ft_expect_error(
		ims_qcow2_writer_write(w, (1 << 20) - 511, buf, 512), -EINVAL,
		"qcow2 writer: write of 512 bytes at offset 1048065 passes the virtual size "
		"1048576");
	ft_expect_error(ims_qcow2_writer_write(w, UINT64_MAX, buf, 2), -EINVAL,
			"passes the virtual size");
	assert_int_equal(ims_qcow2_writer_write(w, 4608, buf, 0), 0);
	assert_int_equal(ims_qcow2_writer_write(w, 4608, buf, 512), 0);
	assert_int_equal(ims_qcow2_writer_finish(w), 0);
	ft_expect_error(ims_qcow2_writer_write(w, 1 << 19, buf, 512), -EINVAL,
			"qcow2 writer: the image is already finished");
	ft_expect_error(ims_qcow2_writer_finish(w), -EINVAL, "already finished");
	ims_qcow2_writer_free(w);
	ims_qcow2_writer_free(NULL);
	close(fd);

	/* a descriptor that cannot be written */
	fd = open(ft_path("errors.qcow2"), O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(ims_qcow2_writer_open(&w, fd, 1 << 20), 0);
	ims_error_clear();
	assert_int_equal(ims_qcow2_writer_write(w, 0, buf, 512), 0); /* buffered */
	ft_expect_error(ims_qcow2_writer_write(w, 65536, buf, 512), -EBADF,
			"qcow2 writer: write of 65536 bytes at offset 65536 failed: Bad file "
			"descriptor");
	ft_expect_error(ims_qcow2_writer_finish(w), -EBADF,
			"qcow2 writer: an earlier write failed");
	ims_qcow2_writer_free(w);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pattern),	     cmocka_unit_test(test_empty_and_full_clusters),
		cmocka_unit_test(test_large_sparse), cmocka_unit_test(test_refcount_layout),
		cmocka_unit_test(test_errors),	     cmocka_unit_test(test_stream),
	};
	return cmocka_run_group_tests_name("qcow2_writer", tests, wt_setup, ft_teardown);
}
