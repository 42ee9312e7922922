/*
 * Helpers of the writer tests (test_qcow2_writer, test_vmdk_writer): the group setup, files
 * in the sandbox, a pattern written in pieces of varying size, and a stream's sink.
 * Include after <cmocka.h>; uses tests/unit/format_test_util.h.
 */
#ifndef IMS_TESTS_WRITER_TEST_UTIL_H
#define IMS_TESTS_WRITER_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/format.h"

/* The bytes of the pattern the writer tests write: 4 MiB and 3 sectors. */
#define WT_PATTERN_BYTES ((4u << 20) + 3 * 512)

/* The group setup (cmocka): qemu-img, the sandbox. */
int wt_setup(void **state);

/* Create (or empty) @p name in the sandbox for writing; fail the test if it cannot. */
int wt_create(const char *name);

/* A writer's _write(), its writer as @p w. */
typedef int (*wt_write_fn)(void *w, uint64_t offset, const void *buf, size_t len);

/*
 * Write @p p (@p len bytes) through @p write in pieces of varying size; with @p skip_zeros,
 * the pieces of zeros are not written (what is not written reads as zeros).
 */
void wt_write_pieces(wt_write_fn write, void *w, const uint8_t *p, size_t len, bool skip_zeros);

/* A writer under test: how its tests write an image and check it with qemu-img. */
typedef struct {
	const char *ext; /* "qcow2", "vmdk" */
	ims_format_kind kind;
	/* Write @p p to the file @p name in the sandbox, as wt_write_pieces() does. */
	void (*write_image)(const char *name, const uint8_t *p, size_t len, bool skip_zeros);
	/* qemu-img finds the image @p image valid and the same disk as @p raw. */
	void (*qemu_agrees)(const char *image, const char *raw);
} wt_writer;

/*
 * The pattern (ft_pattern(), WT_PATTERN_BYTES) written whole, then with its pieces of zeros
 * left out: both images valid for qemu-img and read back equal by our reader.
 */
void wt_check_pattern(const wt_writer *wr);

/* A stream: the writer's pieces in order, gaps zero-filled (holes), as an export's ring. */
typedef struct {
	int fd;
	uint64_t end; /* bytes so far */
	int fail_at;  /* calls before one fails with -ETIMEDOUT (0: never) */
	int calls;
} wt_sink;

/* A writer's stream function on a wt_sink (@p ctx): never back, never twice. */
int wt_sink_out(void *ctx, const void *buf, size_t len, uint64_t off);

#endif
