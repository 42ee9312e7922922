/*
 * Helpers of the writer tests: see writer_test_util.h.
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
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "store/format_internal.h"
#include "tests/unit/format_test_util.h"
#include "tests/unit/writer_test_util.h"

int wt_setup(void **state)
{
	(void)state;
	ft_need_tool("qemu-img");
	ft_sandbox();
	return 0;
}

int wt_create(const char *name)
{
	int fd = open(ft_path(name), O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		fail_msg("cannot create '%s'", ft_path(name));
	return fd;
}

void wt_write_pieces(wt_write_fn write, void *w, const uint8_t *p, size_t len, bool skip_zeros)
{
	static const size_t sizes[] = {1000, 65536, 7, 200000, 4096, 131072 + 512, 1};
	size_t off = 0, i = 0;

	while (off < len) {
		size_t n = sizes[i++ % (sizeof(sizes) / sizeof(sizes[0]))];

		if (n > len - off)
			n = len - off;
		if (!(skip_zeros && ims_format__all_zero(p + off, n)))
			assert_int_equal(write(w, off, p + off, n), 0);
		off += n;
	}
}

void wt_check_pattern(const wt_writer *wr)
{
	uint8_t *p = malloc(WT_PATTERN_BYTES);
	char all[32], sparse[32];
	ft_walk walk;

	assert_non_null(p);
	snprintf(all, sizeof(all), "all.%s", wr->ext);
	snprintf(sparse, sizeof(sparse), "sparse.%s", wr->ext);
	ft_pattern(p, WT_PATTERN_BYTES);
	ft_write_file(ft_path("pattern.raw"), p, WT_PATTERN_BYTES);
	wr->write_image(all, p, WT_PATTERN_BYTES, false);
	wr->qemu_agrees(all, "pattern.raw");
	ft_compare(ft_path(all), wr->kind, ft_path("pattern.raw"), 65536, &walk);
	assert_true(walk.zero_extents > 0 && walk.data_extents > 0);
	wr->write_image(sparse, p, WT_PATTERN_BYTES, true);
	wr->qemu_agrees(sparse, "pattern.raw");
	ft_compare(ft_path(sparse), wr->kind, ft_path("pattern.raw"), 4096, &walk);
	free(p);
}

int wt_sink_out(void *ctx, const void *buf, size_t len, uint64_t off)
{
	wt_sink *s = ctx;

	if (s->fail_at && ++s->calls >= s->fail_at)
		return ims_error_set(-ETIMEDOUT, "the client read none of the export for 1 s");
	assert_true(off >= s->end); /* never back, never twice */
	if (off > s->end)	    /* a gap: zeros, a hole here */
		assert_int_equal(ftruncate(s->fd, (off_t)off), 0);
	s->end = off;
	if (len)
		assert_int_equal(pwrite(s->fd, buf, len, (off_t)off), (ssize_t)len);
	s->end += len;
	return 0;
}
