/*
 * Unit tests of the qcow2 reader: images crafted in memory, good and hostile, and real images
 * made by qemu-img and qemu-io, read whole and compared with qemu-img's raw conversion.
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
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "common/error.h"
#include "store/format.h"
#include "tests/unit/format_test_util.h"

#define COPIED	      (1ull << 63)
#define COMPRESSED    (1ull << 62)
#define PATTERN_BYTES FT_PATTERN_BYTES

/* ---------------------------------------------------------------------------------------- */
/* images crafted in memory */

/*
 * A valid version 3 image of 2 L2 ranges: cluster 0 the header, 1 the L1 table, 2 the
 * refcount table, 3 the L2 table of L1 entry 0, 4 guest cluster 0 (bytes 0x11), 5 guest
 * cluster 2 (bytes 0x22). L1 entry 1 is unallocated.
 */
typedef struct {
	uint8_t b[6 << 12];
	size_t len;
	uint64_t cs;
	unsigned entry_bytes;
	uint64_t vsize;
} q2img;

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static void q2_l1(q2img *q, unsigned i, uint64_t v)
{
	put64(q->b + q->cs + i * 8, v);
}

static void q2_l2(q2img *q, unsigned i, uint64_t v, uint64_t bitmap)
{
	put64(q->b + 3 * q->cs + i * q->entry_bytes, v);
	if (q->entry_bytes == 16)
		put64(q->b + 3 * q->cs + i * 16 + 8, bitmap);
}

static void q2_build(q2img *q, unsigned cluster_bits, bool extended)
{
	uint64_t cs = 1ull << cluster_bits;

	memset(q, 0, sizeof(*q));
	assert_true(6 * cs <= sizeof(q->b));
	q->cs = cs;
	q->entry_bytes = extended ? 16 : 8;
	q->vsize = 2 * cs * (cs / q->entry_bytes);
	q->len = (size_t)(6 * cs);
	memcpy(q->b, "QFI\xfb", 4);
	put32(q->b + 4, 3);
	put32(q->b + 20, cluster_bits);
	put64(q->b + 24, q->vsize);
	put32(q->b + 36, 2);	  /* L1 entries */
	put64(q->b + 40, cs);	  /* L1 table */
	put64(q->b + 48, 2 * cs); /* refcount table */
	put32(q->b + 56, 1);
	put64(q->b + 72, extended ? 1ull << 4 : 0);
	put32(q->b + 96, 4);
	put32(q->b + 100, 104);
	q2_l1(q, 0, 3 * cs | COPIED);
	q2_l2(q, 0, 4 * cs | COPIED, 0xffffffffull);
	q2_l2(q, 2, 5 * cs | COPIED, 0xffffffffull);
	memset(q->b + 4 * cs, 0x11, cs);
	memset(q->b + 5 * cs, 0x22, cs);
}

static void expect_bad(const q2img *q, int err, const char *msg)
{
	ft_expect_open_error(q->b, q->len, IMS_FORMAT_QCOW2, err, msg);
}

#define expect_bad_at(img, ...)                                                                    \
	ft_expect_bad_at((img)->b, (img)->len, IMS_FORMAT_QCOW2, true, __VA_ARGS__, __FILE__,      \
			 __LINE__)
/* Only a read finds what is wrong in compressed bytes: map does not read them. */
#define expect_bad_read(img, ...)                                                                  \
	ft_expect_bad_at((img)->b, (img)->len, IMS_FORMAT_QCOW2, false, __VA_ARGS__, __FILE__,     \
			 __LINE__)

static void test_crafted_good(void **state)
{
	(void)state;
	q2img q;
	ims_format_reader *r;
	ims_extent e;
	uint8_t *buf;

	q2_build(&q, 9, false);
	r = ft_open_mem(q.b, q.len, IMS_FORMAT_AUTO);
	assert_int_equal(ims_format_kind_of(r), IMS_FORMAT_QCOW2);
	assert_int_equal(ims_format_virtual_size(r), 65536);
	/* cluster 0 data, cluster 1 unallocated, cluster 2 data, then zeros to the end */
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_true(e.offset == 0 && e.length == 512 && e.type == IMS_EXTENT_DATA);
	assert_int_equal(ims_format_map(&e, r, 512), 0);
	assert_true(e.length == 512 && e.type == IMS_EXTENT_ZERO);
	assert_int_equal(ims_format_map(&e, r, 1000), 0);
	assert_true(e.offset == 1000 && e.length == 24 && e.type == IMS_EXTENT_ZERO);
	assert_int_equal(ims_format_map(&e, r, 1024), 0);
	assert_true(e.length == 512 && e.type == IMS_EXTENT_DATA);
	/* the rest of the L2 table and the whole unallocated second range, in one extent */
	assert_int_equal(ims_format_map(&e, r, 1536), 0);
	assert_true(e.length == 65536 - 1536 && e.type == IMS_EXTENT_ZERO);
	assert_int_equal(ims_format_map(&e, r, 40000), 0);
	assert_true(e.length == 65536 - 40000 && e.type == IMS_EXTENT_ZERO);

	buf = malloc(65536);
	assert_non_null(buf);
	assert_int_equal(ims_format_read(r, 0, buf, 65536), 0);
	for (size_t i = 0; i < 65536; i++)
		assert_int_equal(buf[i], i < 512 ? 0x11 : i >= 1024 && i < 1536 ? 0x22 : 0);
	assert_int_equal(ims_format_read(r, 1020, buf, 8), 0);
	assert_memory_equal(buf, "\0\0\0\0\x22\x22\x22\x22", 8);
	free(buf);
	ims_format_close(r);

	/* the zero flag, and a version 2 header */
	q2_build(&q, 9, false);
	q2_l2(&q, 0, 4 * q.cs | COPIED | 1, 0);
	r = ft_open_mem(q.b, q.len, IMS_FORMAT_QCOW2);
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_true(e.length == 1024 && e.type == IMS_EXTENT_ZERO);
	ims_format_close(r);
	q2_build(&q, 9, false);
	put32(q.b + 4, 2);
	r = ft_open_mem(q.b, q.len, IMS_FORMAT_QCOW2);
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_true(e.length == 512 && e.type == IMS_EXTENT_DATA);
	ims_format_close(r);

	/* dirty with lazy refcounts: refcounts may be stale, the mapping is good to read */
	q2_build(&q, 9, false);
	put64(q.b + 72, 1);
	put64(q.b + 80, 1);
	r = ft_open_mem(q.b, q.len, IMS_FORMAT_QCOW2);
	ims_format_close(r);
}

static void test_truncated_header(void **state)
{
	(void)state;
	q2img q;

	q2_build(&q, 9, false);
	ft_expect_open_error(q.b, 50, IMS_FORMAT_QCOW2, -EINVAL,
			     "qcow2: truncated header (50 bytes, need 72)");
	ft_expect_open_error(q.b, 80, IMS_FORMAT_QCOW2, -EINVAL,
			     "qcow2: truncated header (80 bytes, version 3 needs 104)");
	put32(q.b + 100, 200);
	ft_expect_open_error(q.b, 150, IMS_FORMAT_QCOW2, -EINVAL,
			     "qcow2: truncated header (150 bytes, the header says 200)");
	put32(q.b + 100, 100);
	expect_bad(&q, -EINVAL, "qcow2: header length 100 is below 104");
	put32(q.b + 100, 1024);
	expect_bad(&q, -EINVAL, "qcow2: header length 1024 exceeds the cluster size 512");
}

static void test_bad_fields(void **state)
{
	(void)state;
	q2img q;

	q2_build(&q, 9, false);
	put32(q.b + 4, 4);
	expect_bad(&q, -ENOTSUP, "qcow2: version 4 is not supported (2 and 3 are)");
	put32(q.b + 4, 1);
	expect_bad(&q, -ENOTSUP, "qcow2: version 1 is not supported");

	q2_build(&q, 9, false);
	put32(q.b + 20, 8);
	expect_bad(&q, -EINVAL, "qcow2: cluster_bits 8 is outside 9..21");
	put32(q.b + 20, 22);
	expect_bad(&q, -EINVAL, "qcow2: cluster_bits 22 is outside 9..21");

	q2_build(&q, 9, false);
	put32(q.b + 96, 7);
	expect_bad(&q, -EINVAL, "qcow2: refcount_order 7 is above 6");

	/* the compression type field and its feature bit must agree */
	q2_build(&q, 9, false);
	put32(q.b + 100, 112);
	q.b[104] = 1;
	expect_bad(&q, -EINVAL,
		   "qcow2: compression type 1 without the compression type feature bit");
	put64(q.b + 72, 1ull << 3);
	q.b[104] = 0;
	expect_bad(&q, -EINVAL,
		   "qcow2: the compression type feature is set with compression type 0");
	q.b[104] = 2;
	expect_bad(&q, -ENOTSUP, "qcow2: unknown compression type 2");
	put32(q.b + 100, 104);
	expect_bad(&q, -EINVAL, "the header has no compression type field");
}

static void test_sizes(void **state)
{
	(void)state;
	q2img q;

	/* virtual sizes that overflow, or that the 32 MiB L1 cap cannot cover */
	q2_build(&q, 9, false);
	put64(q.b + 24, UINT64_MAX);
	expect_bad(&q, -EINVAL,
		   "qcow2: virtual size 18446744073709551615 is too large for "
		   "512-byte clusters");
	put64(q.b + 24, (4ull << 20) * 32768 + 1);
	expect_bad(&q, -EINVAL,
		   "is too large for 512-byte clusters (the L1 table would pass 32 MiB)");

	/* L1 tables too large, too small for the size, or beyond the file */
	q2_build(&q, 9, false);
	put32(q.b + 36, 0x7fffffff);
	expect_bad(&q, -EINVAL, "qcow2: L1 table of 2147483647 entries is larger than 32 MiB");
	put32(q.b + 36, (4u << 20) + 1);
	expect_bad(&q, -EINVAL, "qcow2: L1 table of 4194305 entries is larger than 32 MiB");
	put32(q.b + 36, 1);
	expect_bad(&q, -EINVAL,
		   "qcow2: L1 table of 1 entries is too small for the virtual size "
		   "65536 (needs 2)");
	put32(q.b + 36, 4u << 20);
	expect_bad(&q, -EINVAL,
		   "qcow2: L1 table (offset 0x200, 4194304 entries) is unaligned or "
		   "passes the end of the file (3072 bytes)");
	q2_build(&q, 9, false);
	put64(q.b + 40, 1u << 20);
	expect_bad(&q, -EINVAL,
		   "qcow2: L1 table (offset 0x100000, 2 entries) is unaligned or "
		   "passes the end of the file");
	put64(q.b + 40, UINT64_MAX - 511);
	expect_bad(&q, -EINVAL, "passes the end of the file");
	put64(q.b + 40, 0x201);
	expect_bad(&q, -EINVAL, "qcow2: L1 table (offset 0x201, 2 entries) is unaligned");
	put64(q.b + 40, 0);
	expect_bad(&q, -EINVAL, "qcow2: L1 table at offset 0x0 lies in the header");

	/* the refcount table likewise */
	q2_build(&q, 9, false);
	put32(q.b + 56, 0xffffffff);
	expect_bad(&q, -EINVAL,
		   "qcow2: refcount table (offset 0x400, 4294967295 clusters) is "
		   "unaligned or passes the end of the file");
	q2_build(&q, 9, false);
	put64(q.b + 48, 0x200);
	expect_bad(&q, -EINVAL, "qcow2: refcount table at offset 0x200 lies in the L1 table");
	put64(q.b + 48, 0);
	expect_bad(&q, -EINVAL, "qcow2: refcount table at offset 0x0 lies in the header");
}

static void test_tables_outside(void **state)
{
	(void)state;
	q2img q;

	q2_build(&q, 9, false);
	q2_l1(&q, 1, 0x100000 | COPIED);
	expect_bad(&q, -EINVAL,
		   "qcow2: L1 entry 1 puts an L2 table at 0x100000, past the end of "
		   "the file (3072 bytes)");
	q2_l1(&q, 1, 0x00fffffffffffe00ull);
	expect_bad(&q, -EINVAL, "qcow2: L1 entry 1 puts an L2 table at 0xfffffffffffe00, past");
	/* the last cluster of the file, only partly there */
	q.len -= 1;
	q2_l1(&q, 1, 5 * q.cs);
	expect_bad(&q, -EINVAL,
		   "qcow2: L1 entry 1 puts an L2 table at 0xa00, past the end of the "
		   "file (3071 bytes)");

	q2_build(&q, 12, false);
	q2_l1(&q, 0, 0x3200);
	expect_bad(&q, -EINVAL, "qcow2: L1 entry 0 has an unaligned L2 table offset 0x3200");
}

static void test_reference_loops(void **state)
{
	(void)state;
	q2img q;

	/* L2 tables in the L1 table or the refcount table */
	q2_build(&q, 9, false);
	q2_l1(&q, 0, q.cs | COPIED);
	expect_bad(&q, -EINVAL, "qcow2: L1 entry 0 puts an L2 table at 0x200, into the L1 table");
	q2_l1(&q, 0, 2 * q.cs);
	expect_bad(&q, -EINVAL,
		   "qcow2: L1 entry 0 puts an L2 table at 0x400, into the refcount "
		   "table");

	/* data clusters in the L1 table, an L2 table (its own), the refcount table */
	q2_build(&q, 9, false);
	q2_l2(&q, 2, q.cs | COPIED, 0);
	expect_bad_at(&q, 1024, -EINVAL,
		      "qcow2: guest offset 1024 maps to host offset 0x200, "
		      "into the L1 table");
	q2_l2(&q, 2, 3 * q.cs | COPIED, 0);
	expect_bad_at(&q, 1024, -EINVAL,
		      "qcow2: guest offset 1024 maps to host offset 0x600, "
		      "into an L2 table");
	q2_l2(&q, 2, 2 * q.cs | COPIED, 0);
	expect_bad_at(&q, 1024, -EINVAL, "into the refcount table");
	/* another L1 entry's table is an L2 table all the same */
	q2_build(&q, 9, false);
	q2_l1(&q, 1, 5 * q.cs);
	q2_l2(&q, 0, 5 * q.cs | COPIED, 0);
	expect_bad_at(&q, 0, -EINVAL,
		      "qcow2: guest offset 0 maps to host offset 0xa00, into an L2 "
		      "table");
	/* two L1 entries sharing one L2 table is no loop: both read its clusters */
	q2_build(&q, 9, false);
	q2_l1(&q, 1, 3 * q.cs);
	{
		ims_format_reader *r = ft_open_mem(q.b, q.len, IMS_FORMAT_QCOW2);
		uint8_t b[4];
		assert_int_equal(ims_format_read(r, 32768 + 1024, b, 4), 0);
		assert_memory_equal(b, "\x22\x22\x22\x22", 4);
		ims_format_close(r);
	}

	/* data past the end of the file, and unaligned */
	q2_build(&q, 9, false);
	q2_l2(&q, 2, 0x7fe00 | COPIED, 0);
	expect_bad_at(&q, 1024 + 5, -EINVAL,
		      "qcow2: guest offset 1029 maps to host offset 0x7fe00, "
		      "past the end of the file (3072 bytes)");
	q2_build(&q, 12, false);
	q2_l2(&q, 1, 0x4200, 0);
	expect_bad_at(&q, 4096, -EINVAL,
		      "qcow2: guest offset 4096 maps to unaligned host offset "
		      "0x4200");
}

/* Raw deflate, as qcow2 stores compressed clusters. */
static size_t deflate_raw(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (uint8_t *)in;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	deflateEnd(&z);
	return z.total_out;
}

static void test_compressed(void **state)
{
	(void)state;
	uint8_t plain[512], comp[600], got[512];
	ims_format_reader *r;
	ims_extent e;
	size_t clen;
	q2img q;
	uint64_t at;

	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)("compressed cluster "[i % 19]);
	clen = deflate_raw(plain, sizeof(plain), comp, sizeof(comp));
	assert_true(clen < 400);

	/* guest cluster 2 compressed at an unaligned offset in cluster 5, one sector */
	q2_build(&q, 9, false);
	at = 5 * q.cs + 100;
	memset(q.b + 5 * q.cs, 0, q.cs);
	memcpy(q.b + at, comp, clen);
	q2_l2(&q, 2, COMPRESSED | at, 0);
	r = ft_open_mem(q.b, q.len, IMS_FORMAT_QCOW2);
	assert_int_equal(ims_format_map(&e, r, 1024), 0);
	assert_true(e.length == 512 && e.type == IMS_EXTENT_DATA);
	/* data and compressed clusters merge into one extent */
	assert_int_equal(ims_format_map(&e, r, 1), 0);
	assert_true(e.length == 511 && e.type == IMS_EXTENT_DATA);
	assert_int_equal(ims_format_read(r, 1024, got, 512), 0);
	assert_memory_equal(got, plain, 512);
	/* pieces come from the cached cluster */
	assert_int_equal(ims_format_read(r, 1024 + 100, got, 7), 0);
	assert_memory_equal(got, plain + 100, 7);
	ims_format_close(r);

	/* the file ends inside the last sector of the compressed bytes: fine */
	q.len = (size_t)(at + clen);
	r = ft_open_mem(q.b, q.len, IMS_FORMAT_QCOW2);
	assert_int_equal(ims_format_read(r, 1024, got, 512), 0);
	assert_memory_equal(got, plain, 512);
	ims_format_close(r);

	/* a second sector that starts past the end of the file */
	q2_l2(&q, 2, COMPRESSED | 1ull << 61 | at, 0);
	expect_bad_at(&q, 1024, -EINVAL,
		      "qcow2: compressed cluster at guest offset 1024 (host "
		      "offset 0xa64, 924 bytes) passes the end of the file");
	/* cut short: does not inflate to a whole cluster */
	q2_build(&q, 9, false);
	memcpy(q.b + at, comp, clen);
	q.len = (size_t)(at + clen / 2);
	q2_l2(&q, 2, COMPRESSED | at, 0);
	expect_bad_read(&q, 1024, -EINVAL,
			"qcow2: compressed cluster at guest offset 1024 (host "
			"offset 0xa64) does not decompress (deflate) to 512 bytes");
	/* garbage */
	q2_build(&q, 9, false);
	memset(q.b + at, 0xff, 64);
	q2_l2(&q, 2, COMPRESSED | at, 0);
	expect_bad_read(&q, 1024, -EINVAL, "does not decompress (deflate) to 512 bytes");
	/* compressed bytes in the header, the L1 table, an L2 table */
	q2_build(&q, 9, false);
	q2_l2(&q, 2, COMPRESSED | 100, 0);
	expect_bad_at(&q, 1024, -EINVAL,
		      "qcow2: compressed cluster at guest offset 1024 (host "
		      "offset 0x64) lies in the header");
	q2_l2(&q, 2, COMPRESSED | (q.cs + 8), 0);
	expect_bad_at(&q, 1024, -EINVAL, "(host offset 0x208) lies in the L1 table");
	q2_l2(&q, 2, COMPRESSED | 1ull << 61 | (2 * q.cs + 500), 0);
	expect_bad_at(&q, 1024, -EINVAL, "(host offset 0x5f4) lies in the refcount table");
	q2_l2(&q, 2, COMPRESSED | 1ull << 61 | (2 * q.cs + 1000), 0);
	expect_bad_at(&q, 1024, -EINVAL, "(host offset 0x7e8) lies in an L2 table");
}

static void test_extended_l2(void **state)
{
	(void)state;
	ims_format_reader *r;
	ims_extent e;
	uint8_t got[4096];
	q2img q;

	/* 4 KiB clusters: 32 subclusters of 128 bytes */
	q2_build(&q, 12, true);
	assert_int_equal(q.vsize, 2 * 4096 * 256);
	/* cluster 0: subclusters 0-3 allocated, 4-5 zero, the rest unallocated */
	q2_l2(&q, 0, 4 * q.cs | COPIED, 0x0000003000000000ull | 0xf);
	r = ft_open_mem(q.b, q.len, IMS_FORMAT_QCOW2);
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_true(e.length == 512 && e.type == IMS_EXTENT_DATA);
	assert_int_equal(ims_format_map(&e, r, 100), 0);
	assert_true(e.length == 412 && e.type == IMS_EXTENT_DATA);
	/* zero, unallocated and the unallocated cluster 1 merge */
	assert_int_equal(ims_format_map(&e, r, 512), 0);
	assert_true(e.length == 8192 - 512 && e.type == IMS_EXTENT_ZERO);
	assert_int_equal(ims_format_read(r, 0, got, 4096), 0);
	for (size_t i = 0; i < 4096; i++)
		assert_int_equal(got[i], i < 512 ? 0x11 : 0);
	ims_format_close(r);

	/* both allocated and zero is corrupt; so are allocated subclusters of no cluster */
	q2_l2(&q, 0, 4 * q.cs | COPIED, 0x0000000100000001ull);
	expect_bad_at(&q, 0, -EINVAL,
		      "qcow2: the L2 entry of guest offset 0 marks subclusters both "
		      "allocated and zero (bitmap 0x0000000100000001)");
	q2_l2(&q, 1, 0, 0x10);
	expect_bad_at(&q, 4096, -EINVAL,
		      "qcow2: the L2 entry of guest offset 4096 allocates "
		      "subclusters of no cluster (bitmap 0x0000000000000010)");
	/* zero bits on no cluster are fine */
	q2_build(&q, 12, true);
	q2_l2(&q, 1, 0, 0xffffffff00000000ull);
	r = ft_open_mem(q.b, q.len, IMS_FORMAT_QCOW2);
	assert_int_equal(ims_format_map(&e, r, 4096), 0);
	assert_true(e.length == 4096 && e.type == IMS_EXTENT_ZERO);
	ims_format_close(r);
}

static void test_refused_features(void **state)
{
	(void)state;
	q2img q;

	/* a backing file, named */
	q2_build(&q, 9, false);
	memcpy(q.b + 200, "base.qcow2", 10);
	put64(q.b + 8, 200);
	put32(q.b + 16, 10);
	expect_bad(&q, -ENOTSUP,
		   "qcow2: the image has a backing file 'base.qcow2'; imgstore "
		   "imports standalone images only");
	put64(q.b + 8, 1ull << 40);
	expect_bad(&q, -ENOTSUP, "qcow2: the image has a backing file (its name is unreadable)");
	put64(q.b + 8, 200);
	put32(q.b + 16, 5000);
	expect_bad(&q, -ENOTSUP, "qcow2: the image has a backing file (its name is unreadable)");

	/* an external data file, named by its header extension */
	q2_build(&q, 9, false);
	put64(q.b + 72, 1ull << 2);
	put32(q.b + 104, 0x44415441);
	put32(q.b + 108, 8);
	memcpy(q.b + 112, "data.raw", 8);
	expect_bad(&q, -ENOTSUP,
		   "qcow2: the image keeps its data in an external file 'data.raw', "
		   "which imgstore does not support");
	put32(q.b + 104, 0x12345678);
	expect_bad(&q, -ENOTSUP, "qcow2: the image keeps its data in an external file, which");

	/* encryption */
	q2_build(&q, 9, false);
	put32(q.b + 32, 1);
	expect_bad(&q, -ENOTSUP, "qcow2: encrypted images are not supported (crypt_method 1, AES)");
	put32(q.b + 32, 3);
	expect_bad(&q, -ENOTSUP,
		   "qcow2: encrypted images are not supported (crypt_method 3, unknown)");
	/* LUKS without a passphrase (with one: test_format_luks.c) */
	put32(q.b + 32, 2);
	expect_bad(&q, -EINVAL, "qcow2: the image is LUKS-encrypted; give --passphrase-file");

	/* unknown incompatible features, named by bit */
	q2_build(&q, 9, false);
	put64(q.b + 72, 1ull << 5 | 1ull << 63 | 1);
	expect_bad(&q, -ENOTSUP,
		   "qcow2: unknown incompatible feature bits 5, 63 "
		   "(0x8000000000000020)");

	/* the corrupt bit */
	q2_build(&q, 9, false);
	put64(q.b + 72, 1ull << 1);
	expect_bad(&q, -EINVAL, "qcow2: the image is marked corrupt");
}

/* ---------------------------------------------------------------------------------------- */
/* real images */

/* Compare @p name, read by imgstore, with what qemu-img reads of it. */
static void check_image(const char *name, size_t piece, ft_walk *w)
{
	const char *img = ft_path(name);
	char raw[1100];

	snprintf(raw, sizeof(raw), "%s.raw", img);
	ft_run("qemu-img convert -f qcow2 -O raw '%s' '%s'", img, raw);
	ft_compare(img, IMS_FORMAT_QCOW2, raw, piece, w);
	ft_run("rm -f '%s' '%s'", img, raw);
}

static void convert(const char *name, const char *opts)
{
	ft_run("qemu-img convert -f raw -O qcow2 %s '%s' '%s'", opts, ft_path("pattern.raw"),
	       ft_path(name));
}

static void test_qemu_versions_and_clusters(void **state)
{
	(void)state;
	ft_walk w;

	convert("v2.qcow2", "-o compat=0.10,cluster_size=65536");
	check_image("v2.qcow2", 65536, &w);
	assert_true(w.zero_extents > 0 && w.data_extents > 0);
	convert("v3-512.qcow2", "-o compat=1.1,cluster_size=512");
	check_image("v3-512.qcow2", 3 * 65536 + 7, &w);
	convert("v3-2m.qcow2", "-o compat=1.1,cluster_size=2M");
	check_image("v3-2m.qcow2", 1 << 20, &w);
	convert("v3-ext.qcow2", "-o compat=1.1,cluster_size=65536,extended_l2=on");
	check_image("v3-ext.qcow2", 4096, &w);
}

static void test_qemu_compressed(void **state)
{
	(void)state;
	ft_walk w;

	convert("deflate.qcow2", "-c -o cluster_size=65536");
	check_image("deflate.qcow2", 4096, &w);
	convert("deflate-512.qcow2", "-c -o cluster_size=512");
	check_image("deflate-512.qcow2", 65536, &w);
	convert("deflate-2m.qcow2", "-c -o cluster_size=2M");
	check_image("deflate-2m.qcow2", 100000, &w);
	convert("deflate-v2.qcow2", "-c -o compat=0.10");
	check_image("deflate-v2.qcow2", 65536, &w);
	convert("zstd.qcow2", "-c -o compression_type=zstd");
	check_image("zstd.qcow2", 4096, &w);
	convert("zstd-2m.qcow2", "-c -o compression_type=zstd,cluster_size=2M");
	check_image("zstd-2m.qcow2", 1 << 20, &w);
	convert("zstd-512.qcow2", "-c -o compression_type=zstd,cluster_size=512");
	check_image("zstd-512.qcow2", 65536, &w);
	convert("zstd-ext.qcow2", "-c -o compression_type=zstd,extended_l2=on");
	check_image("zstd-ext.qcow2", 65536, &w);
}

static void qemu_io(const char *name, const char *cmds)
{
	ft_run("qemu-io -f qcow2 %s '%s' >/dev/null", cmds, ft_path(name));
}

static void test_qemu_io_writes(void **state)
{
	(void)state;
	ft_walk w;
	ims_format_reader *r;
	ims_source src;
	ims_extent e;
	int fd;

	/* data, zero clusters on data (v3 zero flag), zeros on nothing, odd small writes */
	ft_run("qemu-img create -f qcow2 -o compat=1.1 '%s' 4M >/dev/null", ft_path("io.qcow2"));
	qemu_io("io.qcow2",
		"-c 'write -P 0xab 0 1M' -c 'write -z 2M 1M' -c 'write -P 0x11 3M 1M' "
		"-c 'write -z 3M 128K' -c 'write -z -u 3584K 64K' -c 'write -P 0x5 1027k 3k' "
		"-c 'write -P 0x7 4193792 512'");
	/* the first MiB and the cluster of the odd write after it are one extent */
	fd = open(ft_path("io.qcow2"), O_RDONLY);
	assert_true(fd >= 0);
	ims_source_fd(&src, &fd, (uint64_t)lseek(fd, 0, SEEK_END));
	assert_int_equal(ims_format_open(&r, &src, IMS_FORMAT_QCOW2), 0);
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_true(e.length == (1 << 20) + 65536 && e.type == IMS_EXTENT_DATA);
	assert_int_equal(ims_format_map(&e, r, 3 << 20), 0);
	assert_true(e.length == 128 << 10 && e.type == IMS_EXTENT_ZERO);
	ims_format_close(r);
	close(fd);
	check_image("io.qcow2", 65536, &w);

	/* the same on extended L2 entries: subclusters allocated and zeroed one by one */
	ft_run("qemu-img create -f qcow2 -o extended_l2=on,cluster_size=64K '%s' 4M >/dev/null",
	       ft_path("io-ext.qcow2"));
	qemu_io("io-ext.qcow2",
		"-c 'write -P 0xab 4096 2048' -c 'write -P 0xcd 1M 1M' "
		"-c 'write -z 1536K 6K' -c 'write -z 3M 512K' -c 'write -P 0x3 70001 1'");
	check_image("io-ext.qcow2", 4096, &w);

	/* the same on a version 2 image, which has no zero flag */
	ft_run("qemu-img create -f qcow2 -o compat=0.10,cluster_size=4K '%s' 4M >/dev/null",
	       ft_path("io-v2.qcow2"));
	qemu_io("io-v2.qcow2",
		"-c 'write -P 0xab 0 1M' -c 'write -z 512K 8K' -c 'write -P 3 2M 1'");
	check_image("io-v2.qcow2", 65536, &w);

	/* preallocated metadata: clusters with a host offset that read as zeros */
	ft_run("qemu-img create -f qcow2 -o preallocation=metadata,cluster_size=4K '%s' 4M "
	       ">/dev/null",
	       ft_path("prealloc.qcow2"));
	qemu_io("prealloc.qcow2", "-c 'write -P 0xab 8K 8K' -c 'write -P 3 2M 1'");
	check_image("prealloc.qcow2", 65536, &w);
}

static void test_qemu_empty(void **state)
{
	(void)state;
	ft_walk w;

	/* an empty disk of 8 GiB in 512-byte clusters: one extent, not one per 32 KiB L2 range */
	ft_run("qemu-img create -f qcow2 -o cluster_size=512 '%s' 8G >/dev/null",
	       ft_path("empty.qcow2"));
	{
		ims_format_reader *r;
		ims_source src;
		ims_extent e;
		int fd = open(ft_path("empty.qcow2"), O_RDONLY);

		assert_true(fd >= 0);
		ims_source_fd(&src, &fd, (uint64_t)lseek(fd, 0, SEEK_END));
		assert_int_equal(ims_format_open(&r, &src, IMS_FORMAT_AUTO), 0);
		assert_int_equal(ims_format_virtual_size(r), 8ull << 30);
		assert_int_equal(ims_format_map(&e, r, 0), 0);
		assert_true(e.length == 8ull << 30 && e.type == IMS_EXTENT_ZERO);
		ims_format_close(r);
		close(fd);
	}
	/* and one of a size that is not a whole number of clusters */
	ft_run("qemu-img create -f qcow2 '%s' 1000448 >/dev/null", ft_path("odd.qcow2"));
	qemu_io("odd.qcow2", "-c 'write -P 0x9 999936 512'");
	check_image("odd.qcow2", 4096, &w);
	assert_int_equal(w.extents, 2);
}

static void test_qemu_dirty_lazy(void **state)
{
	(void)state;
	ft_walk w;
	int fd;
	uint8_t b;

	/* left dirty by a crash under lazy refcounts: readable */
	ft_run("qemu-img create -f qcow2 -o lazy_refcounts=on '%s' 4M >/dev/null",
	       ft_path("dirty.qcow2"));
	qemu_io("dirty.qcow2", "-c 'write -P 0x42 64K 200K'");
	fd = open(ft_path("dirty.qcow2"), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, 79), 1);
	b |= 1;
	assert_int_equal(pwrite(fd, &b, 1, 79), 1);
	close(fd);
	check_image("dirty.qcow2", 65536, &w);
}

static void test_qemu_refused(void **state)
{
	(void)state;
	char out[256];
	uint8_t *b;
	size_t len;

	ft_run("qemu-img create -f qcow2 '%s' 1M >/dev/null", ft_path("base.qcow2"));
	ft_run("qemu-img create -f qcow2 -F qcow2 -b base.qcow2 '%s' >/dev/null",
	       ft_path("child.qcow2"));
	b = ft_read_file(ft_path("child.qcow2"), &len);
	ft_expect_open_error(b, len, IMS_FORMAT_AUTO, -ENOTSUP,
			     "qcow2: the image has a backing file 'base.qcow2'");
	free(b);

	ft_run("qemu-img create -f qcow2 -o data_file='%s' '%s' 1M >/dev/null", ft_path("data.raw"),
	       ft_path("ext.qcow2"));
	b = ft_read_file(ft_path("ext.qcow2"), &len);
	snprintf(out, sizeof(out), "external file '%s'", ft_path("data.raw"));
	ft_expect_open_error(b, len, IMS_FORMAT_AUTO, -ENOTSUP, out);
	free(b);

	/* AES: LUKS is refused alike (crafted above), and its key setup takes seconds */
	ft_run("qemu-img create -f qcow2 --object secret,id=s0,data=pw -o "
	       "encrypt.format=aes,encrypt.key-secret=s0 '%s' 1M >/dev/null",
	       ft_path("aes.qcow2"));
	b = ft_read_file(ft_path("aes.qcow2"), &len);
	ft_expect_open_error(b, len, IMS_FORMAT_AUTO, -ENOTSUP, "(crypt_method 1, AES)");
	/* and declared as another format */
	ft_expect_open_error(b, len, IMS_FORMAT_VMDK, -EINVAL,
			     "image declared as vmdk but its bytes are qcow2");
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crafted_good),
		cmocka_unit_test(test_truncated_header),
		cmocka_unit_test(test_bad_fields),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_tables_outside),
		cmocka_unit_test(test_reference_loops),
		cmocka_unit_test(test_compressed),
		cmocka_unit_test(test_extended_l2),
		cmocka_unit_test(test_refused_features),
		cmocka_unit_test(test_qemu_versions_and_clusters),
		cmocka_unit_test(test_qemu_compressed),
		cmocka_unit_test(test_qemu_io_writes),
		cmocka_unit_test(test_qemu_empty),
		cmocka_unit_test(test_qemu_dirty_lazy),
		cmocka_unit_test(test_qemu_refused),
	};
	return cmocka_run_group_tests_name("format_qcow2", tests, ft_setup_qemu, ft_teardown);
}
