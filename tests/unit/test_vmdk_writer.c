/*
 * Unit tests of the vmdk (streamOptimized) writer: images written from a pattern must pass
 * `qemu-img check`, convert back to raw byte-identical with `qemu-img convert`, and read back
 * through our reader; misuse is refused.
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

/* qemu-img check finds nothing wrong; its raw conversion is byte-identical to @p raw. */
static void qemu_agrees(const char *image, const char *raw)
{
	char out[4096];
	int st;

	st = ft_run_output(out, sizeof(out), "qemu-img check -f vmdk '%s'", ft_path(image));
	if (st != 0 || !strstr(out, "No errors were found on the image."))
		fail_msg("qemu-img check of '%s' (exit %d):\n%s", image, st, out);
	st = ft_run_output(out, sizeof(out), "qemu-img info -f vmdk '%s'", ft_path(image));
	if (st != 0 || !strstr(out, "create type: streamOptimized"))
		fail_msg("qemu-img info of '%s' (exit %d):\n%s", image, st, out);
	ft_run("qemu-img convert -f vmdk -O raw '%s' '%s.back'", ft_path(image), ft_path(image));
	ft_run("cmp '%s.back' '%s'", ft_path(image), ft_path(raw));
	ft_run("rm -f '%s.back'", ft_path(image));
}

static int write_piece(void *w, uint64_t offset, const void *buf, size_t len)
{
	return ims_vmdk_writer_write(w, offset, buf, len);
}

/* Write @p p through the writer in pieces of varying size, skipping some zero runs. */
static void write_image(const char *name, const uint8_t *p, size_t len, bool skip_zeros)
{
	ims_vmdk_writer *w = NULL;
	int fd = wt_create(name);

	assert_int_equal(ims_vmdk_writer_open(&w, fd, len, ft_path(name)), 0);
	wt_write_pieces(write_piece, w, p, len, skip_zeros);
	assert_int_equal(ims_vmdk_writer_finish(w), 0);
	ims_vmdk_writer_free(w);
	close(fd);
}

static void test_pattern(void **state)
{
	static const wt_writer wr = {"vmdk", IMS_FORMAT_VMDK, write_image, qemu_agrees};

	(void)state;
	wt_check_pattern(&wr);
}

/* Nothing written; then grains far apart on a large sparse disk (several grain tables). */
static void test_empty_and_sparse(void **state)
{
	(void)state;
	static const uint64_t at[] = {0,
				      70000,
				      (32ull << 20) - 3,
				      600ull << 20,
				      (1ull << 30) + 12345,
				      (1ull << 30) + (64ull << 20) - 100};
	ims_vmdk_writer *w = NULL;
	uint64_t vsize = (1ull << 30) + (64ull << 20);
	char piece[64];
	ft_walk walk;
	struct stat st;
	int fd;

	fd = wt_create("empty.vmdk");
	assert_int_equal(ims_vmdk_writer_open(&w, fd, 1 << 30, "empty.vmdk"), 0);
	assert_int_equal(ims_vmdk_writer_finish(w), 0);
	ims_vmdk_writer_free(w);
	assert_int_equal(fstat(fd, &st), 0);
	/* header and descriptor (64 KiB), 32 empty grain tables behind their markers, the
	 * grain directory behind its marker, the footer and end-of-stream markers: no grain */
	assert_int_equal(st.st_size, 65536 + 32 * (512 + 2048) + 2 * 512 + 3 * 512);
	close(fd);
	ft_run("truncate -s 1G '%s'", ft_path("empty.raw"));
	qemu_agrees("empty.vmdk", "empty.raw");
	ft_compare(ft_path("empty.vmdk"), IMS_FORMAT_VMDK, ft_path("empty.raw"), 1 << 20, &walk);
	assert_true(walk.data_extents == 0 && walk.zero_bytes == 1 << 30);

	fd = wt_create("large.vmdk");
	assert_int_equal(ims_vmdk_writer_open(&w, fd, vsize, "large.vmdk"), 0);
	ft_run("rm -f '%s' && truncate -s %llu '%s'", ft_path("large.raw"),
	       (unsigned long long)vsize, ft_path("large.raw"));
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		snprintf(piece, sizeof(piece), "piece %zu", i);
		assert_int_equal(ims_vmdk_writer_write(w, at[i], piece, strlen(piece)), 0);
		ft_run("printf '%s' | dd of='%s' bs=1 seek=%llu conv=notrunc status=none", piece,
		       ft_path("large.raw"), (unsigned long long)at[i]);
	}
	assert_int_equal(ims_vmdk_writer_finish(w), 0);
	ims_vmdk_writer_free(w);
	close(fd);
	qemu_agrees("large.vmdk", "large.raw");
	ft_compare(ft_path("large.vmdk"), IMS_FORMAT_VMDK, ft_path("large.raw"), 4 << 20, &walk);
	/* grains 0 and 1 in one extent; the piece at 32 MiB - 3 crosses into a new grain table */
	assert_int_equal(walk.data_extents, 6);
	ft_run("rm -f '%s' '%s'", ft_path("large.raw"), ft_path("empty.raw"));
}

static void test_misuse(void **state)
{
	(void)state;
	ims_vmdk_writer *w = NULL;
	uint8_t b[16] = {1};
	int fd = wt_create("misuse.vmdk");

	ims_error_clear();
	ft_expect_error(ims_vmdk_writer_open(&w, fd, 1000, "x"), -EINVAL,
			"vmdk writer: virtual size 1000 is not a positive multiple of 512");
	ft_expect_error(ims_vmdk_writer_open(&w, fd, 0, "x"), -EINVAL, "is not a positive");
	ft_expect_error(ims_vmdk_writer_open(&w, fd, UINT64_C(1) << 60, "x"), -EINVAL,
			"needs a grain directory larger than 32 MiB");
	ft_expect_error(ims_vmdk_writer_open(&w, -1, 512, "x"), -EINVAL, "no file to write to");
	assert_int_equal(ims_vmdk_writer_open(&w, fd, 1 << 20, "a\"b/c\"d.vmdk"), 0);
	assert_int_equal(ims_vmdk_writer_write(w, 4096, b, sizeof(b)), 0);
	ft_expect_error(ims_vmdk_writer_write(w, 4000, b, sizeof(b)), -EINVAL,
			"vmdk writer: write at offset 4000 comes before offset 4112");
	ft_expect_error(ims_vmdk_writer_write(w, (1 << 20) - 8, b, sizeof(b)), -EINVAL,
			"passes the virtual size 1048576");
	assert_int_equal(ims_vmdk_writer_finish(w), 0);
	ft_expect_error(ims_vmdk_writer_write(w, 1 << 19, b, 1), -EINVAL, "already finished");
	ims_vmdk_writer_free(w);
	close(fd);
	/* the extent's name: the last component, quotes replaced */
	{
		char out[4096];
		assert_int_equal(ft_run_output(out, sizeof(out), "head -c 2048 '%s' | strings",
					       ft_path("misuse.vmdk")),
				 0);
		assert_non_null(strstr(out, "RW 2048 SPARSE \"c_d.vmdk\""));
	}
	/* a write error stops the writer */
	fd = open(ft_path("misuse.vmdk"), O_RDONLY);
	assert_true(fd >= 0);
	ims_error_clear();
	ft_expect_error(ims_vmdk_writer_open(&w, fd, 1 << 20, "x"), -EBADF, "vmdk writer: write");
	close(fd);
}

/* Written to a stream (ims_vmdk_writer_open_fn) in order, the bytes are the file's. */
static void test_stream(void **state)
{
	(void)state;
	uint8_t *p = malloc(WT_PATTERN_BYTES);
	ims_vmdk_writer *w = NULL;
	wt_sink s = {.fd = wt_create("stream.vmdk")};

	assert_non_null(p);
	ft_pattern(p, WT_PATTERN_BYTES);
	ft_write_file(ft_path("stream.raw"), p, WT_PATTERN_BYTES);
	assert_int_equal(ims_vmdk_writer_open_fn(&w, wt_sink_out, &s, WT_PATTERN_BYTES,
						 ft_path("file.vmdk")),
			 0);
	for (size_t off = 0; off < WT_PATTERN_BYTES; off += 300000) {
		size_t n = WT_PATTERN_BYTES - off < 300000 ? WT_PATTERN_BYTES - off : 300000;
		assert_int_equal(ims_vmdk_writer_write(w, off, p + off, n), 0);
	}
	assert_int_equal(ims_vmdk_writer_finish(w), 0);
	ims_vmdk_writer_free(w);
	close(s.fd);
	write_image("file.vmdk", p, WT_PATTERN_BYTES, false);
	ft_run("cmp '%s' '%s'", ft_path("stream.vmdk"), ft_path("file.vmdk"));
	qemu_agrees("stream.vmdk", "stream.raw");

	/* the stream fails: the writer stops with its error */
	s = (wt_sink){.fd = wt_create("stream2.vmdk"), .fail_at = 3};
	assert_int_equal(ims_vmdk_writer_open_fn(&w, wt_sink_out, &s, WT_PATTERN_BYTES, "x.vmdk"),
			 0);
	int r = 0;
	for (size_t off = 0; off < WT_PATTERN_BYTES && r == 0; off += 65536)
		r = ims_vmdk_writer_write(w, off, p + off, 65536);
	assert_int_equal(r, -ETIMEDOUT);
	ims_error_clear();
	ft_expect_error(ims_vmdk_writer_finish(w), -ETIMEDOUT, "an earlier write failed");
	ims_vmdk_writer_free(w);
	close(s.fd);
	free(p);
}

/*
 * Writes of many whole grains (a 4 MiB block, as the export reads) are deflated several grains
 * at once on threads: the file is the same, byte for byte, as one written a grain at a time,
 * and a stream that fails in the middle of such a batch stops the writer with its error.
 */
static void test_batches(void **state)
{
	(void)state;
	size_t len = 3 * WT_PATTERN_BYTES - 3 * 512; /* 12 MiB, plus 3 sectors */
	uint8_t *p = malloc(len);
	ims_vmdk_writer *w = NULL;
	int fd = wt_create("batch.vmdk");

	assert_non_null(p);
	for (size_t off = 0; off < len; off += WT_PATTERN_BYTES)
		ft_pattern(p + off, len - off < WT_PATTERN_BYTES ? len - off : WT_PATTERN_BYTES);
	memset(p + (5u << 20), 0, 1u << 20); /* a whole MiB of zero grains inside a batch */
	ft_write_file(ft_path("batch.raw"), p, len);
	assert_int_equal(ims_vmdk_writer_open(&w, fd, len, ft_path("one.vmdk")), 0);
	/* a partial grain first, then 4 MiB blocks from a grain boundary, then the tail */
	assert_int_equal(ims_vmdk_writer_write(w, 0, p, 1000), 0);
	assert_int_equal(ims_vmdk_writer_write(w, 1000, p + 1000, 65536 - 1000), 0);
	for (size_t off = 65536; off < len; off += 4u << 20) {
		size_t n = len - off < (4u << 20) ? len - off : 4u << 20;
		assert_int_equal(ims_vmdk_writer_write(w, off, p + off, n), 0);
	}
	assert_int_equal(ims_vmdk_writer_finish(w), 0);
	ims_vmdk_writer_free(w);
	close(fd);
	/* the same disk a grain at a time: no batch */
	fd = wt_create("one.vmdk");
	assert_int_equal(ims_vmdk_writer_open(&w, fd, len, ft_path("one.vmdk")), 0);
	for (size_t off = 0; off < len; off += 65536) {
		size_t n = len - off < 65536 ? len - off : 65536;
		assert_int_equal(ims_vmdk_writer_write(w, off, p + off, n), 0);
	}
	assert_int_equal(ims_vmdk_writer_finish(w), 0);
	ims_vmdk_writer_free(w);
	close(fd);
	ft_run("cmp '%s' '%s'", ft_path("batch.vmdk"), ft_path("one.vmdk"));
	qemu_agrees("batch.vmdk", "batch.raw");

	/* the stream fails at its 10th write, inside the first batch */
	wt_sink s = {.fd = wt_create("stream3.vmdk"), .fail_at = 10};
	assert_int_equal(ims_vmdk_writer_open_fn(&w, wt_sink_out, &s, len, "x.vmdk"), 0);
	assert_int_equal(ims_vmdk_writer_write(w, 0, p, 4u << 20), -ETIMEDOUT);
	ims_error_clear();
	ft_expect_error(ims_vmdk_writer_write(w, 4u << 20, p + (4u << 20), 4u << 20), -ETIMEDOUT,
			"an earlier write failed");
	ims_vmdk_writer_free(w);
	close(s.fd);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pattern), cmocka_unit_test(test_empty_and_sparse),
		cmocka_unit_test(test_misuse),	cmocka_unit_test(test_stream),
		cmocka_unit_test(test_batches),
	};
	return cmocka_run_group_tests_name("vmdk_writer", tests, wt_setup, ft_teardown);
}
