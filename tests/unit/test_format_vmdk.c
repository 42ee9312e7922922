/*
 * Unit tests of the vmdk reader: sparse extents crafted in memory, good and hostile,
 * descriptor files it refuses, and real images made by qemu-img, read whole and compared with
 * qemu-img's raw conversion.
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

#define PATTERN_BYTES FT_PATTERN_BYTES
#define GD_AT_END     UINT64_MAX

/* ---------------------------------------------------------------------------------------- */
/* images crafted in memory */

/*
 * A valid monolithicSparse extent of 4 MiB in grains of 4 KiB (a grain table covers 2 MiB):
 * sector 0 the header, 1-2 the descriptor, 3 the grain directory (2 entries, the second
 * empty), 4-7 the grain table, 8-15 guest grain 0 (0x11), 16-23 guest grain 2 (0x22).
 */
typedef struct {
	uint8_t b[64 << 10];
	size_t len;
} vimg;

static void v_descriptor(vimg *v, const char *extra)
{
	memset(v->b + 512, 0, 1024);
	snprintf((char *)v->b + 512, 1024,
		 "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n%s", extra);
}

static void v_build(vimg *v)
{
	memset(v, 0, sizeof(*v));
	memcpy(v->b, "KDMV", 4);
	ft_put_le32(v->b + 4, 1);
	ft_put_le32(v->b + 8, 1);     /* the end-of-line test */
	ft_put_le64(v->b + 12, 8192); /* capacity */
	ft_put_le64(v->b + 20, 8);    /* grain */
	ft_put_le64(v->b + 28, 1);    /* descriptor */
	ft_put_le64(v->b + 36, 2);
	ft_put_le32(v->b + 44, 512);
	ft_put_le64(v->b + 56, 3); /* grain directory */
	ft_put_le64(v->b + 64, 8); /* overhead */
	memcpy(v->b + 73, "\n \r\n", 4);
	v_descriptor(v, "createType=\"monolithicSparse\"\n\n# Extent description\n"
			"RW 8192 SPARSE \"test.vmdk\"\n\nddb.adapterType = \"ide\"\n");
	ft_put_le32(v->b + 3 * 512, 4);
	ft_put_le32(v->b + 4 * 512 + 0 * 4, 8);
	ft_put_le32(v->b + 4 * 512 + 2 * 4, 16);
	memset(v->b + 8 * 512, 0x11, 4096);
	memset(v->b + 16 * 512, 0x22, 4096);
	v->len = 24 * 512;
}

static size_t zlib_compress(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	uLongf n = cap;
	assert_int_equal(compress2(out, &n, in, len, 9), Z_OK);
	return n;
}

/* The same as a streamOptimized extent: the grains compressed behind markers. */
static void v_build_stream(vimg *v)
{
	uint8_t plain[4096], comp[5000];
	size_t n;

	v_build(v);
	ft_put_le32(v->b + 4, 3);
	ft_put_le32(v->b + 8, 1 | 1u << 16 | 1u << 17);
	ft_put_le16(v->b + 77, 1);
	v_descriptor(v, "createType=\"streamOptimized\"\nRW 8192 SPARSE \"test.vmdk\"\n");
	memset(v->b + 8 * 512, 0, 16 * 512);
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)("stream grain "[i % 13]);
	n = zlib_compress(plain, sizeof(plain), comp, sizeof(comp));
	assert_true(n < 500);
	ft_put_le64(v->b + 8 * 512, 0);
	ft_put_le32(v->b + 8 * 512 + 8, (uint32_t)n);
	memcpy(v->b + 8 * 512 + 12, comp, n);
	memset(plain, 0x22, sizeof(plain));
	n = zlib_compress(plain, sizeof(plain), comp, sizeof(comp));
	ft_put_le64(v->b + 16 * 512, 16);
	ft_put_le32(v->b + 16 * 512 + 8, (uint32_t)n);
	memcpy(v->b + 16 * 512 + 12, comp, n);
	v->len = 17 * 512;
	ft_put_le32(v->b + 4 * 512 + 2 * 4, 16);
}

static void expect_bad(const vimg *v, int err, const char *msg)
{
	ft_expect_open_error(v->b, v->len, IMS_FORMAT_VMDK, err, msg);
}

#define expect_bad_at(img, ...)                                                                    \
	ft_expect_bad_at((img)->b, (img)->len, IMS_FORMAT_VMDK, true, __VA_ARGS__, __FILE__,       \
			 __LINE__)
/* Only a read finds what is wrong in compressed bytes: map does not read them. */
#define expect_bad_read(img, ...)                                                                  \
	ft_expect_bad_at((img)->b, (img)->len, IMS_FORMAT_VMDK, false, __VA_ARGS__, __FILE__,      \
			 __LINE__)

static void check_crafted_content(ims_format_reader *r, uint8_t first)
{
	uint8_t *buf = malloc(4u << 20);
	ims_extent e;

	assert_non_null(buf);
	assert_int_equal(ims_format_virtual_size(r), 4u << 20);
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_true(e.length == 4096 && e.type == IMS_EXTENT_DATA);
	assert_int_equal(ims_format_map(&e, r, 4096), 0);
	assert_true(e.length == 4096 && e.type == IMS_EXTENT_ZERO);
	assert_int_equal(ims_format_map(&e, r, 8192 + 5), 0);
	assert_true(e.length == 4091 && e.type == IMS_EXTENT_DATA);
	/* the rest of the grain table and the range with none, at once */
	assert_int_equal(ims_format_map(&e, r, 12288), 0);
	assert_true(e.length == (4u << 20) - 12288 && e.type == IMS_EXTENT_ZERO);
	assert_int_equal(ims_format_read(r, 0, buf, 4u << 20), 0);
	for (size_t i = 0; i < (4u << 20); i++) {
		uint8_t want = i < 4096 ? first : i >= 8192 && i < 12288 ? 0x22 : 0;
		if (first == 0 && i < 4096)
			want = (uint8_t)("stream grain "[i % 13]);
		if (buf[i] != want)
			fail_msg("byte %zu is %#x, not %#x", i, buf[i], want);
	}
	assert_int_equal(ims_format_read(r, 8190, buf, 4), 0);
	assert_memory_equal(buf, "\0\0\x22\x22", 4);
	free(buf);
}

static void test_crafted_good(void **state)
{
	(void)state;
	ims_format_reader *r;
	ims_extent e;
	vimg v;

	v_build(&v);
	r = ft_open_mem(v.b, v.len, IMS_FORMAT_AUTO);
	assert_int_equal(ims_format_kind_of(r), IMS_FORMAT_VMDK);
	check_crafted_content(r, 0x11);
	ims_format_close(r);

	/* a zeroed-grain entry */
	ft_put_le32(v.b + 8, 1 | 1u << 2);
	ft_put_le32(v.b + 4 * 512, 1);
	r = ft_open_mem(v.b, v.len, IMS_FORMAT_VMDK);
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_true(e.length == 8192 && e.type == IMS_EXTENT_ZERO);
	ims_format_close(r);

	/* a descriptor smaller than the capacity: the guest sees the descriptor's size */
	v_build(&v);
	v_descriptor(&v, "createType=\"monolithicSparse\"\nRW 100 SPARSE \"test.vmdk\"\n");
	r = ft_open_mem(v.b, v.len, IMS_FORMAT_VMDK);
	assert_int_equal(ims_format_virtual_size(r), 51200);
	ims_format_close(r);

	v_build_stream(&v);
	r = ft_open_mem(v.b, v.len, IMS_FORMAT_VMDK);
	check_crafted_content(r, 0);
	ims_format_close(r);
}

static void test_bad_header(void **state)
{
	(void)state;
	vimg v;

	v_build(&v);
	ft_expect_open_error(v.b, 100, IMS_FORMAT_VMDK, -EINVAL,
			     "vmdk: truncated header (100 bytes, need 512)");
	memcpy(v.b, "KDMX", 4);
	expect_bad(&v, -EINVAL, "image declared as vmdk but its bytes are raw");
	memcpy(v.b, "COWD", 4);
	expect_bad(&v, -ENOTSUP, "vmdk: ESX sparse (COWD) extents are not supported");

	v_build(&v);
	ft_put_le32(v.b + 4, 4);
	expect_bad(&v, -ENOTSUP, "vmdk: sparse extent version 4 is not supported (1 to 3 are)");
	ft_put_le32(v.b + 4, 0);
	expect_bad(&v, -ENOTSUP, "vmdk: sparse extent version 0 is not supported");

	v_build(&v);
	v.b[75] = '\n';
	expect_bad(&v, -EINVAL, "vmdk: the header's end-of-line test characters are damaged");
	ft_put_le32(v.b + 8, 0); /* not tested when the flag is off */
	ims_format_close(ft_open_mem(v.b, v.len, IMS_FORMAT_VMDK));

	v_build(&v);
	ft_put_le64(v.b + 20, 3);
	expect_bad(&v, -EINVAL, "vmdk: grain size of 3 sectors is not a power of 2 from 1 to 4096");
	ft_put_le64(v.b + 20, 0);
	expect_bad(&v, -EINVAL, "vmdk: grain size of 0 sectors is not a power of 2");
	ft_put_le64(v.b + 20, 8192);
	expect_bad(&v, -EINVAL, "vmdk: grain size of 8192 sectors is not a power of 2");
	ft_put_le64(v.b + 20, 1ull << 63);
	expect_bad(&v, -EINVAL, "vmdk: grain size of 9223372036854775808 sectors");

	v_build(&v);
	ft_put_le32(v.b + 44, 256);
	expect_bad(&v, -EINVAL, "vmdk: 256 entries per grain table (must be 512)");

	v_build(&v);
	ft_put_le64(v.b + 12, 1ull << 56);
	expect_bad(&v, -EINVAL, "vmdk: capacity of 72057594037927936 sectors overflows");
	ft_put_le64(v.b + 12, 1ull << 40);
	expect_bad(&v, -EINVAL,
		   "vmdk: capacity of 1099511627776 sectors needs a grain directory "
		   "larger than 32 MiB");

	v_build(&v);
	ft_put_le32(v.b + 8, 1 | 1u << 16);
	ft_put_le16(v.b + 77, 2);
	expect_bad(&v, -ENOTSUP, "vmdk: compression algorithm 2 is not supported");
}

/* A field of the header or of the metadata set to a value, and the refusal it gives. */
typedef struct {
	size_t at;	/* offset in the file */
	unsigned bytes; /* 4 or 8 */
	uint64_t value;
	const char *msg; /* the open fails with -EINVAL and a message holding this */
} v_patch;

/* Each patch on a fresh v_build() image: refused. */
static void expect_patches_bad(const v_patch *p, size_t n)
{
	vimg v;
	for (size_t i = 0; i < n; i++) {
		v_build(&v);
		if (p[i].bytes == 8)
			ft_put_le64(v.b + p[i].at, p[i].value);
		else
			ft_put_le32(v.b + p[i].at, (uint32_t)p[i].value);
		expect_bad(&v, -EINVAL, p[i].msg);
	}
}

static void test_tables_outside(void **state)
{
	(void)state;
	vimg v;
	static const v_patch gd[] = {
		{56, 8, 1000,
		 "vmdk: the grain directory (sector 1000, 2 entries) lies outside "
		 "the file (12288 bytes)"},
		{56, 8, 0, "vmdk: the grain directory (sector 0, 2 entries) lies outside"},
		{56, 8, 1ull << 60,
		 "vmdk: the grain directory (sector 1152921504606846976, 2 entries)"},
		{56, 8, 24, "vmdk: the grain directory (sector 24, 2 entries) lies outside"},
		{56, 8, 2, "vmdk: the grain directory at sector 2 lies in the descriptor"},
		{28, 8, 100,
		 "vmdk: the descriptor (sector 100, 2 sectors) passes the end of the "
		 "file (12288 bytes)"},
	};
	expect_patches_bad(gd, sizeof(gd) / sizeof(gd[0]));

	v_build(&v);
	ft_put_le64(v.b + 28, 1);
	ft_put_le64(v.b + 36, UINT64_MAX);
	expect_bad(&v, -EINVAL, "vmdk: the descriptor (sector 1, 18446744073709551615 sectors)");

	/* grain tables outside the file or in the metadata */
	static const v_patch gt[] = {
		{3 * 512 + 4, 4, 1000,
		 "vmdk: grain directory entry 1 puts a grain table at 0x7d000, past "
		 "the end of the file (12288 bytes)"},
		{3 * 512 + 4, 4, 21,
		 "vmdk: grain directory entry 1 puts a grain table at 0x2a00, past"},
		{3 * 512 + 4, 4, 2,
		 "vmdk: grain directory entry 1 puts a grain table at 0x400, into "
		 "the descriptor"},
		{3 * 512 + 4, 4, 3, "into the grain directory"},
	};
	expect_patches_bad(gt, sizeof(gt) / sizeof(gt[0]));
}

static void test_grains(void **state)
{
	(void)state;
	vimg v;

	v_build(&v);
	ft_put_le32(v.b + 4 * 512 + 2 * 4, 1000);
	expect_bad_at(&v, 8192, -EINVAL,
		      "vmdk: the grain of guest offset 8192 at host offset "
		      "0x7d000 lies past the end of the file (12288 bytes)");
	ft_put_le32(v.b + 4 * 512 + 2 * 4, 2);
	expect_bad_at(&v, 8192, -EINVAL,
		      "vmdk: the grain of guest offset 8192 at host offset 0x400 "
		      "lies in the descriptor");
	/* a grain that reaches into the metadata counts too */
	ft_put_le32(v.b + 4 * 512 + 2 * 4, 3);
	expect_bad_at(&v, 8192 + 9, -EINVAL, "at host offset 0x600 lies in the grain directory");
	ft_put_le32(v.b + 4 * 512 + 2 * 4, 5);
	expect_bad_at(&v, 8192, -EINVAL, "at host offset 0xa00 lies in a grain table");
	ft_put_le32(v.b + 4 * 512 + 2 * 4, 1); /* 1 without the zeroed-grain flag is sector 1 */
	expect_bad_at(&v, 8192, -EINVAL, "at host offset 0x200 lies in the descriptor");

	/* compressed grains: sizes, the end of the file, bad streams */
	v_build_stream(&v);
	ft_put_le32(v.b + 16 * 512 + 8, 0);
	expect_bad_read(&v, 8192, -EINVAL,
			"vmdk: compressed grain of guest offset 8192 at host "
			"offset 0x2000 has a bad size 0");
	ft_put_le32(v.b + 16 * 512 + 8, 1u << 30);
	expect_bad_read(&v, 8192, -EINVAL, "has a bad size 1073741824");
	ft_put_le32(v.b + 16 * 512 + 8, 5000);
	expect_bad_read(&v, 8192, -EINVAL,
			"vmdk: compressed grain of guest offset 8192 at host offset "
			"0x2000 (5000 bytes) passes the end of the file (8704 bytes)");
	ft_put_le32(v.b + 16 * 512 + 8, 400);
	memset(v.b + 16 * 512 + 12, 0xee, 400);
	expect_bad_read(&v, 8192, -EINVAL,
			"vmdk: compressed grain of guest offset 8192 at host offset "
			"0x2000 does not inflate to at most 4096 bytes");
	v_build_stream(&v);
	ft_put_le32(v.b + 4 * 512 + 2 * 4, 7);
	expect_bad_at(&v, 8192, -EINVAL, "at host offset 0xe00 lies in a grain table");
}

static void test_footer(void **state)
{
	(void)state;
	ims_format_reader *r;
	vimg v;

	/* the header puts the directory at the end: the footer's is the one */
	v_build_stream(&v);
	ft_put_le64(v.b + 56, GD_AT_END);
	expect_bad(&v, -EINVAL,
		   "vmdk: the grain directory is at the end but the file ends without "
		   "a valid footer");
	/* footer marker, footer, end-of-stream marker */
	memset(v.b + v.len, 0, 3 * 512);
	ft_put_le64(v.b + v.len, 1);
	ft_put_le32(v.b + v.len + 12, 3);
	memcpy(v.b + v.len + 512, v.b, 512);
	ft_put_le64(v.b + v.len + 512 + 56, 3);
	v.len += 3 * 512;
	r = ft_open_mem(v.b, v.len, IMS_FORMAT_VMDK);
	check_crafted_content(r, 0);
	ims_format_close(r);

	ft_put_le64(v.b + v.len - 1024 + 56, GD_AT_END);
	expect_bad(&v, -EINVAL, "vmdk: the footer puts the grain directory at the end again");
	ft_put_le64(v.b + v.len - 1024 + 56, 3);
	ft_put_le64(v.b + v.len - 1024 + 12, 16384);
	expect_bad(&v, -EINVAL, "vmdk: the footer disagrees with the header");
	ft_put_le64(v.b + v.len - 1024 + 12, 8192);
	ft_put_le32(v.b + v.len - 1024 + 44, 128);
	expect_bad(&v, -EINVAL, "vmdk: 128 entries per grain table");
	ft_put_le32(v.b + v.len - 1024 + 44, 512);
	ft_put_le32(v.b + v.len - 512 + 12, 1);
	expect_bad(&v, -EINVAL, "ends without a valid footer");
	ft_expect_open_error(v.b, 1536, IMS_FORMAT_VMDK, -EINVAL,
			     "the file is too short for a footer");
}

static void test_descriptors(void **state)
{
	(void)state;
	vimg v;

	v_build(&v);
	v_descriptor(&v, "createType=\"monolithicFlat\"\nRW 8192 FLAT \"test-flat.vmdk\" 0\n");
	expect_bad(&v, -ENOTSUP,
		   "vmdk: createType 'monolithicFlat' is not supported (imgstore reads "
		   "monolithicSparse and streamOptimized)");
	v_descriptor(&v, "createType = \"vmfsSparse\"\nRW 8192 VMFSSPARSE \"t-delta.vmdk\"\n");
	expect_bad(&v, -ENOTSUP, "vmdk: createType 'vmfsSparse' is not supported");
	v_descriptor(&v, "createType=\"seSparse\"\nRW 8192 SESPARSE \"t-sesparse.vmdk\"\n");
	expect_bad(&v, -ENOTSUP, "vmdk: createType 'seSparse' is not supported");
	v_descriptor(&v, "createType=\"it's\x01\"\n");
	expect_bad(&v, -ENOTSUP, "vmdk: createType 'it?s?' is not supported");
	v_descriptor(&v, "RW 8192 SPARSE \"test.vmdk\"\n");
	expect_bad(&v, -EINVAL, "vmdk: the descriptor has no createType");
	v_descriptor(&v, "createType=\"monolithicSparse\"\n");
	expect_bad(&v, -EINVAL, "vmdk: the descriptor lists no extent");
	v_descriptor(&v, "createType=\"monolithicSparse\"\nRW 4096 SPARSE \"a.vmdk\"\n"
			 "RW 4096 SPARSE \"b.vmdk\"\n");
	expect_bad(&v, -ENOTSUP,
		   "vmdk: the descriptor lists 2 extents; imgstore reads "
		   "single-extent images only");
	v_descriptor(&v, "createType=\"monolithicSparse\"\nRW 8192 FLAT \"a.vmdk\" 0\n");
	expect_bad(&v, -ENOTSUP,
		   "vmdk: extent type 'FLAT' in a monolithicSparse image is not "
		   "supported");
	v_descriptor(&v, "createType=\"monolithicSparse\"\nRW 8193 SPARSE \"a.vmdk\"\n");
	expect_bad(&v, -EINVAL,
		   "vmdk: the descriptor's extent of 8193 sectors exceeds the capacity "
		   "of 8192 sectors");
	v_descriptor(&v, "createType=\"monolithicSparse\"\nRW 99999999999999999999999 SPARSE "
			 "\"a.vmdk\"\n");
	expect_bad(&v, -EINVAL, "vmdk: the descriptor's extent of 18446744073709551615 sectors");

	/* deltas */
	memset(v.b + 512, 0, 1024);
	strcpy((char *)v.b + 512,
	       "# Disk DescriptorFile\nversion=1\nparentCID=0badf00d\n"
	       "createType=\"monolithicSparse\"\nparentFileNameHint=\"base.vmdk\"\n"
	       "RW 8192 SPARSE \"test.vmdk\"\n");
	expect_bad(&v, -ENOTSUP,
		   "vmdk: the image is a delta of parent 'base.vmdk'; imgstore "
		   "imports standalone images only");
	memset(v.b + 512, 0, 1024);
	strcpy((char *)v.b + 512,
	       "# Disk DescriptorFile\nparentCID=0badf00d\n"
	       "createType=\"monolithicSparse\"\nRW 8192 SPARSE \"test.vmdk\"\n");
	expect_bad(&v, -ENOTSUP, "vmdk: the image is a delta of a parent");

	/* no embedded descriptor: an extent of a disk split in files */
	v_build(&v);
	ft_put_le64(v.b + 28, 0);
	ft_put_le64(v.b + 36, 0);
	expect_bad(&v, -ENOTSUP, "vmdk: the sparse extent has no embedded descriptor");
}

static void test_descriptor_files(void **state)
{
	(void)state;
	static const char *flat = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\n"
				  "parentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n"
				  "# Extent description\nRW 2097152 FLAT \"disk-flat.vmdk\" 0\n";
	static const char *split = "# Disk DescriptorFile\r\nversion=1\r\n"
				   "createType=\"twoGbMaxExtentSparse\"\r\n"
				   "RW 4192256 SPARSE \"disk-s001.vmdk\"\r\n"
				   "RW 2101248 SPARSE \"disk-s002.vmdk\"\r\n";
	static const char *vmfs = "# Disk DescriptorFile\ncreateType=\"vmfs\"\n"
				  "RW 2097152 VMFS \"disk-flat.vmdk\"\n";
	static const char *sparse = "# Disk DescriptorFile\ncreateType=\"monolithicSparse\"\n"
				    "RW 2097152 SPARSE \"disk-data.vmdk\"\n";
	static const char *none = "# Disk DescriptorFile\nversion=1\n";

	const ft_open_case cases[] = {
		{flat, strlen(flat), IMS_FORMAT_AUTO, -ENOTSUP,
		 "vmdk: createType 'monolithicFlat' is not supported"},
		{split, strlen(split), IMS_FORMAT_VMDK, -ENOTSUP,
		 "vmdk: createType 'twoGbMaxExtentSparse' is not supported"},
		{vmfs, strlen(vmfs), IMS_FORMAT_VMDK, -ENOTSUP,
		 "vmdk: createType 'vmfs' is not supported"},
		{sparse, strlen(sparse), IMS_FORMAT_VMDK, -ENOTSUP,
		 "vmdk: this is a descriptor file (createType 'monolithicSparse') "
		 "whose data is in 'disk-data.vmdk'; import that file instead"},
		{none, strlen(none), IMS_FORMAT_VMDK, -EINVAL,
		 "vmdk: the descriptor has no createType"},
		{flat, strlen(flat), IMS_FORMAT_QCOW2, -EINVAL,
		 "image declared as qcow2 but its bytes are vmdk"},
	};
	ft_expect_open_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---------------------------------------------------------------------------------------- */
/* real images */

static void test_qemu_images(void **state)
{
	(void)state;
	ft_walk w;

	ft_run("qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse '%s' '%s'",
	       ft_path("pattern.raw"), ft_path("sparse.vmdk"));
	ft_check_qemu("vmdk", IMS_FORMAT_VMDK, "sparse.vmdk", 65536, ft_path("pattern.raw"), &w);
	assert_true(w.zero_extents > 0 && w.data_extents > 0);
	ft_check_qemu("vmdk", IMS_FORMAT_VMDK, "sparse.vmdk", 1000, ft_path("pattern.raw"), &w);

	ft_run("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized '%s' '%s'",
	       ft_path("pattern.raw"), ft_path("stream.vmdk"));
	ft_check_qemu("vmdk", IMS_FORMAT_VMDK, "stream.vmdk", 4096, ft_path("pattern.raw"), &w);
	ft_check_qemu("vmdk", IMS_FORMAT_VMDK, "stream.vmdk", 3 * 65536 + 5, ft_path("pattern.raw"),
		      &w);
}

/* Rewrite qemu's stream as VMware writes it: the directory found through the footer. */
static void test_qemu_stream_footer(void **state)
{
	(void)state;
	uint8_t *b, *nb, eos[512] = {0};
	size_t len;
	ft_walk w;

	ft_run("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized '%s' '%s'",
	       ft_path("pattern.raw"), ft_path("stream.vmdk"));
	b = ft_read_file(ft_path("stream.vmdk"), &len);
	assert_true(len % 512 == 0 && len > 1024);
	/* drop qemu's end-of-stream marker, then footer marker, footer, end-of-stream */
	assert_memory_equal(b + len - 512, eos, 512);
	len -= 512;
	nb = calloc(1, len + 3 * 512);
	assert_non_null(nb);
	memcpy(nb, b, len);
	ft_put_le64(nb + len, 1);
	ft_put_le32(nb + len + 12, 3);
	memcpy(nb + len + 512, b, 512);
	ft_put_le64(nb + 56, GD_AT_END);
	ft_write_file(ft_path("footer.vmdk"), nb, len + 3 * 512);
	/* qemu reads it too, and the same */
	ft_check_qemu("vmdk", IMS_FORMAT_VMDK, "footer.vmdk", 65536, ft_path("pattern.raw"), &w);
	free(b);
	free(nb);
}

static void test_qemu_zeroed_grains(void **state)
{
	(void)state;
	ft_walk w;

	ft_run("qemu-img create -f vmdk -o zeroed_grain=on '%s' 4M >/dev/null", ft_path("zg.vmdk"));
	ft_run("qemu-io -f vmdk -c 'write -P 0x33 0 2M' -c 'write -z 64K 128K' -c 'write -P 1 3M "
	       "1' "
	       "'%s' >/dev/null",
	       ft_path("zg.vmdk"));
	{
		const char *img = ft_path("zg.vmdk");
		char raw[1100];
		snprintf(raw, sizeof(raw), "%s.raw", img);
		ft_run("qemu-img convert -f vmdk -O raw '%s' '%s'", img, raw);
		ft_compare(img, IMS_FORMAT_VMDK, raw, 65536, &w);
	}
	assert_true(w.zero_extents >= 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crafted_good),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_tables_outside),
		cmocka_unit_test(test_grains),
		cmocka_unit_test(test_footer),
		cmocka_unit_test(test_descriptors),
		cmocka_unit_test(test_descriptor_files),
		cmocka_unit_test(test_qemu_images),
		cmocka_unit_test(test_qemu_stream_footer),
		cmocka_unit_test(test_qemu_zeroed_grains),
	};
	return cmocka_run_group_tests_name("format_vmdk", tests, ft_setup_qemu, ft_teardown);
}
