/*
 * Helpers of the format tests (test_format*, test_qcow2_writer): a sandbox directory, the
 * qemu tools, a deterministic disk pattern, and a full read of an image compared with raw.
 * Include after <cmocka.h>.
 */
#ifndef IMS_TESTS_FORMAT_TEST_UTIL_H
#define IMS_TESTS_FORMAT_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/format.h"

/* The per-test directory (IMS_TEST_TMP), created and emptied. */
const char *ft_sandbox(void);

/* Remove the sandbox and what is in it. */
void ft_sandbox_remove(void);

/* The bytes of "pattern.raw", which ft_setup_qemu() writes. */
#define FT_PATTERN_BYTES (4u << 20)

/*
 * The group setup (cmocka) of the tests on images qemu writes: the qemu tools, the sandbox,
 * and "pattern.raw" in it, ft_pattern() of FT_PATTERN_BYTES.
 */
int ft_setup_qemu(void **state);

/* The group teardown (cmocka) of the format tests: ft_sandbox_remove(). */
int ft_teardown(void **state);

/* A path in the sandbox, in a static ring of buffers. */
const char *ft_path(const char *name);

/* Fail the test unless @p tool is on PATH: the format tests need the qemu tools. */
void ft_need_tool(const char *tool);

/* Run a shell command; fail the test with the command line if it does not exit 0. */
void ft_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Run a shell command, its exit status and (up to @p len bytes of) its output. */
int ft_run_output(char *out, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Fill @p buf with a deterministic disk of @p len bytes: random and compressible data, zero
 * areas, and a few small writes at odd offsets inside the zeros.
 */
void ft_pattern(uint8_t *buf, size_t len);

/* Write @p len bytes to a new file. */
void ft_write_file(const char *path, const void *buf, size_t len);

/* Read a whole file; the caller frees it. */
uint8_t *ft_read_file(const char *path, size_t *len);

typedef struct {
	unsigned extents;
	unsigned data_extents;
	unsigned zero_extents;
	uint64_t data_bytes;
	uint64_t zero_bytes;
} ft_walk;

/*
 * Open @p image as @p declared, walk the map over the whole disk, read every extent in pieces
 * of @p piece bytes and compare with @p raw (ZERO extents must be zeros there).
 */
void ft_compare(const char *image, ims_format_kind declared, const char *raw, size_t piece,
		ft_walk *out);

/* ft_compare() of an image opened with @p secret (ims_format_open_secret()). */
void ft_compare_secret(const char *image, ims_format_kind declared, const char *raw, size_t piece,
		       const ims_format_secret *secret, ft_walk *out);

/*
 * Expect open of @p len bytes at @p data as @p kind to fail with @p err and a message holding
 * @p msg.
 */
#define ft_expect_open_error(data, len, kind, err, msg)                                            \
	ft_expect_open_error_at(data, len, kind, err, msg, __FILE__, __LINE__)
void ft_expect_open_error_at(const void *data, size_t len, ims_format_kind kind, int err,
			     const char *msg, const char *file, int line);

/* One refused open: @p len bytes at @p data as @p kind fail with @p err and @p msg. */
typedef struct {
	const void *data;
	size_t len;
	ims_format_kind kind;
	int err;
	const char *msg;
} ft_open_case;

/* ft_expect_open_error() of each of the @p n cases at @p c. */
#define ft_expect_open_errors(c, n) ft_expect_open_errors_at(c, n, __FILE__, __LINE__)
void ft_expect_open_errors_at(const ft_open_case *c, size_t n, const char *file, int line);

/* Open @p len bytes at @p data as @p kind, which must succeed. */
ims_format_reader *ft_open_mem(const void *data, size_t len, ims_format_kind kind);

/* Assert the last error: errno @p err, message holding @p msg. */
#define ft_expect_error(got, err, msg) ft_expect_error_at(got, err, msg, __FILE__, __LINE__)
void ft_expect_error_at(int got, int err, const char *msg, const char *file, int line);

/* Open @p data (which must work), then expect map (if @p map_too) and read of guest offset
 * @p at to fail with @p err and @p msg. */
void ft_expect_bad_at(const void *data, size_t len, ims_format_kind kind, bool map_too, uint64_t at,
		      int err, const char *msg, const char *file, int line);

/* Store @p v at @p p, little-endian (le) or big-endian (be). */
void ft_put_le16(uint8_t *p, uint16_t v);
void ft_put_le32(uint8_t *p, uint32_t v);
void ft_put_le64(uint8_t *p, uint64_t v);
void ft_put_be32(uint8_t *p, uint32_t v);
void ft_put_be64(uint8_t *p, uint64_t v);

/*
 * Convert the sandbox's @p name with `qemu-img convert -f QEMU_FMT -O raw` and ft_compare() it
 * (opened as @p declared) with that; if @p expect is given, qemu's raw must equal that file too.
 */
void ft_check_qemu(const char *qemu_fmt, ims_format_kind declared, const char *name, size_t piece,
		   const char *expect, ft_walk *w);

/*
 * A small image in the sandbox's @p name: `qemu-img create -f QEMU_FMT CREATE_OPTS` of 8 MiB,
 * then 4 KiB of 0x11 at 1 MiB and 1 MiB of 0x22 at 5 MiB written by qemu-io; its bytes, which
 * the caller frees.
 */
uint8_t *ft_small_image(const char *qemu_fmt, const char *create_opts, const char *name,
			size_t *len);

/*
 * In a test of hostile variants: copy @p len bytes of `orig` to `b` (both in scope), apply
 * @p mutate to `b`, and expect its open as @p kind to fail with @p err and @p msg.
 */
#define FT_BAD(kind, mutate, err, msg)                                                             \
	do {                                                                                       \
		memcpy(b, orig, len);                                                              \
		mutate;                                                                            \
		ft_expect_open_error(b, len, kind, err, msg);                                      \
	} while (0)

#endif
