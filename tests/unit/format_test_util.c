/* Helpers of the format tests: see format_test_util.h. */
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "tests/unit/format_test_util.h"

const char *ft_sandbox(void)
{
	const char *dir = getenv("IMS_TEST_TMP");

	if (!dir || !dir[0])
		fail_msg("IMS_TEST_TMP is not set (run the test through ctest)");
	ft_run("rm -rf '%s' && mkdir -p '%s'", dir, dir);
	return dir;
}

void ft_sandbox_remove(void)
{
	const char *dir = getenv("IMS_TEST_TMP");

	if (dir && dir[0])
		ft_run("rm -rf '%s'", dir);
}

void ft_expect_bad_at(const void *data, size_t len, ims_format_kind kind, bool map_too, uint64_t at,
		      int err, const char *msg, const char *file, int line)
{
	ims_format_reader *r = ft_open_mem(data, len, kind);
	ims_extent e;
	uint8_t buf[16];

	ims_error_clear();
	if (map_too)
		ft_expect_error_at(ims_format_map(&e, r, at), err, msg, file, line);
	ims_error_clear();
	ft_expect_error_at(ims_format_read(r, at, buf, sizeof(buf)), err, msg, file, line);
	ims_format_close(r);
}

int ft_setup_qemu(void **state)
{
	(void)state;
	uint8_t *p = malloc(FT_PATTERN_BYTES);

	ft_need_tool("qemu-img");
	ft_need_tool("qemu-io");
	ft_sandbox();
	assert_non_null(p);
	ft_pattern(p, FT_PATTERN_BYTES);
	ft_write_file(ft_path("pattern.raw"), p, FT_PATTERN_BYTES);
	free(p);
	return 0;
}

int ft_teardown(void **state)
{
	(void)state;
	ft_sandbox_remove();
	return 0;
}

const char *ft_path(const char *name)
{
	static char ring[16][1024];
	static unsigned next;
	char *p = ring[next++ % 16];
	const char *dir = getenv("IMS_TEST_TMP");

	if (!dir)
		fail_msg("IMS_TEST_TMP is not set (run the test through ctest)");
	snprintf(p, sizeof(ring[0]), "%s/%s", dir, name);
	return p;
}

void ft_need_tool(const char *tool)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
	if (system(cmd) != 0)
		fail_msg("'%s' is not installed: the format tests need it (apt-get install "
			 "qemu-utils)",
			 tool);
}

static int run_v(char *out, size_t len, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static int run_v(char *out, size_t len, const char *fmt, va_list ap)
{
	char cmd[4096];
	size_t n = 0;
	FILE *p;
	int st;

	vsnprintf(cmd, sizeof(cmd) - 8, fmt, ap);
	strcat(cmd, " 2>&1");
	p = popen(cmd, "r");
	if (!p)
		fail_msg("cannot run '%s'", cmd);
	if (out && len) {
		out[0] = '\0';
		while (n + 1 < len) {
			size_t got = fread(out + n, 1, len - 1 - n, p);
			if (!got)
				break;
			n += got;
		}
		out[n] = '\0';
	}
	/* drain what did not fit */
	{
		char sink[4096];
		while (fread(sink, 1, sizeof(sink), p) > 0)
			;
	}
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

void ft_run(const char *fmt, ...)
{
	char out[4096], cmd[4096];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	va_start(ap, fmt);
	st = run_v(out, sizeof(out), fmt, ap);
	va_end(ap);
	if (st != 0)
		fail_msg("command failed (exit %d): %s\n%s", st, cmd, out);
}

int ft_run_output(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	int st;

	va_start(ap, fmt);
	st = run_v(out, len, fmt, ap);
	va_end(ap);
	return st;
}

void ft_pattern(uint8_t *buf, size_t len)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	size_t i;

	memset(buf, 0, len);
	for (i = 0; i < len; i++) {
		size_t mib = i >> 20, in = i & ((1u << 20) - 1);

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		switch (mib % 4) {
		case 0: /* random for the first 192 KiB, then zeros */
			if (in < (192u << 10))
				buf[i] = (uint8_t)x;
			break;
		case 1: /* compressible text for half of it */
			if (in < (512u << 10))
				buf[i] = (uint8_t)("imgstore pattern "[i % 17] + (i >> 12) % 5);
			break;
		case 2: /* zeros */ break;
		case 3: /* random, with a zero hole in the middle */
			if (in < (256u << 10) || in >= (768u << 10))
				buf[i] = (uint8_t)(x | 1);
			break;
		}
	}
	/* small writes at odd offsets inside the zero areas, and the very last byte */
	for (i = 0; i < len; i += (1u << 20) + 77777) {
		size_t at = i + 300001;
		if (at + 7 <= len)
			memcpy(buf + at, "odd\x01\xff\x7fz", 7);
	}
	if (len)
		buf[len - 1] = 0x5a;
}

void ft_write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		fail_msg("cannot create '%s': %s", path, strerror(errno));
	if (write(fd, buf, len) != (ssize_t)len)
		fail_msg("cannot write '%s'", path);
	close(fd);
}

uint8_t *ft_read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0)
		fail_msg("cannot open '%s': %s", path, strerror(errno));
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	if (read(fd, buf, (size_t)st.st_size) != st.st_size)
		fail_msg("cannot read '%s'", path);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

void ft_compare(const char *image, ims_format_kind declared, const char *raw, size_t piece,
		ft_walk *out)
{
	ft_compare_secret(image, declared, raw, piece, NULL, out);
}

void ft_compare_secret(const char *image, ims_format_kind declared, const char *raw, size_t piece,
		       const ims_format_secret *secret, ft_walk *out)
{
	ims_format_reader *r = NULL;
	ims_source src;
	ft_walk w = {0};
	uint64_t raw_len, off = 0;
	uint8_t *expect, *got;
	struct stat st;
	int fd = open(image, O_RDONLY), rfd = open(raw, O_RDONLY), err;

	if (fd < 0 || fstat(fd, &st) < 0)
		fail_msg("cannot open '%s': %s", image, strerror(errno));
	if (rfd < 0)
		fail_msg("cannot open '%s': %s", raw, strerror(errno));
	raw_len = (uint64_t)lseek(rfd, 0, SEEK_END);
	ims_source_fd(&src, &fd, (uint64_t)st.st_size);
	ims_error_clear();
	err = ims_format_open_secret(&r, &src, declared, secret);
	if (err < 0)
		fail_msg("open of '%s' failed: %d %s", image, err, ims_error_last());
	assert_int_equal(ims_format_virtual_size(r), raw_len);
	got = malloc(piece);
	expect = malloc(piece);
	assert_non_null(got);
	assert_non_null(expect);
	while (off < raw_len) {
		ims_extent e;
		uint64_t o;

		err = ims_format_map(&e, r, off);
		if (err < 0)
			fail_msg("map of '%s' at %llu failed: %s", image, (unsigned long long)off,
				 ims_error_last());
		assert_int_equal(e.offset, off);
		assert_true(e.length > 0 && e.length <= raw_len - off);
		w.extents++;
		if (e.type == IMS_EXTENT_ZERO) {
			w.zero_extents++;
			w.zero_bytes += e.length;
		} else {
			w.data_extents++;
			w.data_bytes += e.length;
		}
		/*
		 * Every extent is read, ZERO ones too: they must read as zeros. Of a long zero
		 * extent, the two ends and wherever the raw file holds data.
		 */
		for (o = off; o < off + e.length;) {
			uint64_t end = off + e.length;
			size_t n = end - o < piece ? (size_t)(end - o) : piece;

			if (e.type == IMS_EXTENT_ZERO && o >= off + 2 * (uint64_t)piece &&
			    end - o > 2 * (uint64_t)piece) {
				off_t d = lseek(rfd, (off_t)o, SEEK_DATA);
				uint64_t to = d < 0 ? end : (uint64_t)d;
				if (to > end - 2 * (uint64_t)piece)
					to = end - 2 * (uint64_t)piece;
				to = off + (to - off) / piece * piece;
				if (to > o) {
					o = to;
					continue;
				}
			}
			err = ims_format_read(r, o, got, n);
			if (err < 0)
				fail_msg("read of '%s' at %llu failed: %s", image,
					 (unsigned long long)o, ims_error_last());
			if (pread(rfd, expect, n, (off_t)o) != (ssize_t)n)
				fail_msg("cannot read '%s'", raw);
			if (memcmp(got, expect, n) != 0) {
				size_t i = 0;
				while (got[i] == expect[i])
					i++;
				fail_msg("'%s' differs from raw at offset %llu (%s extent at %llu)",
					 image, (unsigned long long)(o + i),
					 e.type == IMS_EXTENT_ZERO ? "zero" : "data",
					 (unsigned long long)off);
			}
			o += n;
		}
		off += e.length;
	}
	ims_format_close(r);
	close(fd);
	close(rfd);
	free(got);
	free(expect);
	if (out)
		*out = w;
}

static ims_source_mem_ctx ctxs[16];
static unsigned next_ctx;

ims_format_reader *ft_open_mem(const void *data, size_t len, ims_format_kind kind)
{
	ims_format_reader *r = NULL;
	ims_source src;
	int err;

	ims_source_mem(&src, &ctxs[next_ctx++ % 16], data, len);
	ims_error_clear();
	err = ims_format_open(&r, &src, kind);
	if (err < 0)
		fail_msg("open failed: %d %s", err, ims_error_last());
	return r;
}

void ft_expect_error_at(int got, int err, const char *msg, const char *file, int line)
{
	if (got != err)
		fail_msg("%s:%d: expected error %d (%s), got %d; message: %s", file, line, err,
			 strerror(-err), got, ims_error_last());
	if (ims_error_last_code() != err)
		fail_msg("%s:%d: expected the message's errno %d, got %d", file, line, err,
			 ims_error_last_code());
	if (!strstr(ims_error_last(), msg))
		fail_msg("%s:%d: expected a message holding \"%s\", got \"%s\"", file, line, msg,
			 ims_error_last());
}

void ft_expect_open_error_at(const void *data, size_t len, ims_format_kind kind, int err,
			     const char *msg, const char *file, int line)
{
	ims_format_reader *r = (ims_format_reader *)(uintptr_t)0x1;
	ims_source_mem_ctx ctx;
	ims_source src;

	ims_source_mem(&src, &ctx, data, len);
	ims_error_clear();
	ft_expect_error_at(ims_format_open(&r, &src, kind), err, msg, file, line);
	assert_ptr_equal(r, (ims_format_reader *)(uintptr_t)0x1); /* untouched on error */
}

void ft_expect_open_errors_at(const ft_open_case *c, size_t n, const char *file, int line)
{
	for (size_t i = 0; i < n; i++)
		ft_expect_open_error_at(c[i].data, c[i].len, c[i].kind, c[i].err, c[i].msg, file,
					line);
}

void ft_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

void ft_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void ft_put_le64(uint8_t *p, uint64_t v)
{
	ft_put_le32(p, (uint32_t)v);
	ft_put_le32(p + 4, (uint32_t)(v >> 32));
}

void ft_put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

void ft_put_be64(uint8_t *p, uint64_t v)
{
	ft_put_be32(p, (uint32_t)(v >> 32));
	ft_put_be32(p + 4, (uint32_t)v);
}

void ft_check_qemu(const char *qemu_fmt, ims_format_kind declared, const char *name, size_t piece,
		   const char *expect, ft_walk *w)
{
	const char *img = ft_path(name);
	char raw[1100];

	snprintf(raw, sizeof(raw), "%s.raw", img);
	/* -f always: QEMU's probe takes a fixed VHD for raw, its footer included */
	ft_run("qemu-img convert -f %s -O raw '%s' '%s'", qemu_fmt, img, raw);
	ft_compare(img, declared, raw, piece, w);
	if (expect)
		ft_run("cmp '%s' '%s'", raw, expect);
	ft_run("rm -f '%s'", raw);
}

uint8_t *ft_small_image(const char *qemu_fmt, const char *create_opts, const char *name,
			size_t *len)
{
	const char *p = ft_path(name);

	unlink(p);
	ft_run("qemu-img create -q -f %s %s '%s' 8M", qemu_fmt, create_opts, p);
	ft_run("qemu-io -f %s -c 'write -P 0x11 1M 4K' -c 'write -P 0x22 5M 1M' '%s' >/dev/null",
	       qemu_fmt, p);
	return ft_read_file(p, len);
}
