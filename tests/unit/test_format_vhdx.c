/*
 * Unit tests of the vhdx reader: images made by qemu-img (dynamic and fixed, block sizes from
 * 1 to 256 MiB), read whole and compared with qemu-img's raw conversion, and hostile variants
 * of a small dynamic image (headers, region tables, metadata, BAT) that open must refuse
 * with a message.
 */
#include <errno.h>
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

#include "common/error.h"
#include "store/format.h"
#include "tests/unit/format_test_util.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)

static uint32_t crc32c(const uint8_t *p, size_t len)
{
	uint32_t crc = 0xffffffffu;

	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return ~crc;
}

/* Recompute the checksum of the @p len bytes at @p p (a header or a region table). */
static void fix(uint8_t *p, size_t len)
{
	ft_put_le32(p + 4, 0);
	ft_put_le32(p + 4, crc32c(p, len));
}

#define H1   (64 * KiB)
#define H2   (128 * KiB)
#define R1   (192 * KiB)
#define R2   (256 * KiB)
#define BAT  (2 * MiB)
#define META (3 * MiB)
/* the metadata items of the small image, as qemu-img places them */
#define PARAMS	(META + 64 * KiB)
#define DSIZE	(META + 64 * KiB + 8)
#define LSS	(META + 64 * KiB + 32)
#define MENTRY0 (META + 32) /* file parameters; page 83 is the third */

static void fix_headers(uint8_t *b)
{
	fix(b + H1, 4 * KiB);
	fix(b + H2, 4 * KiB);
}

static void test_qemu_images(void **state)
{
	(void)state;
	static const char *const opts[] = {"subformat=dynamic",
					   "subformat=fixed",
					   "subformat=dynamic,block_size=1M",
					   "subformat=dynamic,block_size=256M",
					   "subformat=fixed,block_size=2M",
					   "subformat=dynamic,log_size=1M,block_size=16M"};
	ft_walk w;

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		ft_run("qemu-img convert -f raw -O vhdx -o %s '%s' '%s'", opts[i],
		       ft_path("pattern.raw"), ft_path("p.vhdx"));
		ft_check_qemu("vhdx", IMS_FORMAT_AUTO, "p.vhdx", 65536, NULL, &w);
		ft_check_qemu("vhdx", IMS_FORMAT_AUTO, "p.vhdx", 1000, NULL, &w);
	}
	/* blocks never written and blocks written zero are zero extents */
	ft_run("qemu-img create -q -f vhdx -o block_size=1M '%s' 9000K", ft_path("holes.vhdx"));
	ft_run("qemu-io -f vhdx -c 'write -P 0x11 1M 4K' -c 'write -P 0x22 5M 1M' "
	       "-c 'write -P 0x33 8M 4K' -c 'write -z 5M 1M' '%s' >/dev/null",
	       ft_path("holes.vhdx"));
	ft_check_qemu("vhdx", IMS_FORMAT_AUTO, "holes.vhdx", 4096, NULL, &w);
	assert_true(w.zero_extents >= 2 && w.data_extents >= 2);
	/* blocks never written in the not-present state rather than zero */
	ft_run("qemu-img create -q -f vhdx -o block_size=1M,block_state_zero=off '%s' 9000K",
	       ft_path("absent.vhdx"));
	ft_run("qemu-io -f vhdx -c 'write -P 0x11 1M 4K' -c 'write -P 0x33 8M 4K' '%s' >/dev/null",
	       ft_path("absent.vhdx"));
	ft_check_qemu("vhdx", IMS_FORMAT_AUTO, "absent.vhdx", 65536, NULL, &w);
	assert_true(w.zero_extents >= 2 && w.data_extents == 2);
	ft_run("qemu-img create -q -f vhdx -o subformat=fixed,block_state_zero=off '%s' 3M",
	       ft_path("absent-fixed.vhdx"));
	ft_check_qemu("vhdx", IMS_FORMAT_AUTO, "absent-fixed.vhdx", 65536, NULL, &w);
}

static void expect_opens(const uint8_t *b, size_t len)
{
	ims_format_reader *r = ft_open_mem(b, len, IMS_FORMAT_VHDX);
	uint8_t buf[16];

	assert_int_equal(ims_format_read(r, 5 * MiB, buf, sizeof(buf)), 0);
	assert_true(buf[0] == 0x22 && buf[15] == 0x22);
	ims_format_close(r);
}

/* A small dynamic image of 8 MiB in 1 MiB blocks, blocks 1 and 5 written (at 8 and 9 MiB). */
static void test_hostile(void **state)
{
	(void)state;
	size_t len;
	uint8_t *orig = ft_small_image("vhdx", "-o block_size=1M", "small.vhdx", &len),
		*b = malloc(len);
	ims_format_reader *r;
	ims_extent e;

	assert_non_null(b);
	assert_int_equal(len, 10 * MiB);
	r = ft_open_mem(orig, len, IMS_FORMAT_AUTO);
	assert_int_equal(ims_format_kind_of(r), IMS_FORMAT_VHDX);
	assert_int_equal(ims_format_virtual_size(r), 8 * MiB);
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_true(e.type == IMS_EXTENT_ZERO && e.length == MiB);
	assert_int_equal(ims_format_map(&e, r, MiB), 0);
	assert_true(e.type == IMS_EXTENT_DATA && e.length == MiB);
	ims_format_close(r);

	/* the headers: one damaged is no harm, both are */
	memcpy(b, orig, len);
	b[H1 + 100] ^= 1;
	expect_opens(b, len);
	memcpy(b, orig, len);
	b[H2 + 100] ^= 1;
	expect_opens(b, len);
	FT_BAD(IMS_FORMAT_VHDX, (b[H1] = 'X', b[H2] = 'X'), -EINVAL,
	       "vhdx: neither header is valid");
	FT_BAD(IMS_FORMAT_VHDX, (b[H1 + 100] ^= 1, b[H2 + 100] ^= 1), -EINVAL,
	       "vhdx: neither header is valid");
	FT_BAD(IMS_FORMAT_VHDX, (b[H1 + 66] = 2, b[H2 + 66] = 2, fix_headers(b)), -EINVAL,
	       "vhdx: neither header is valid");
	FT_BAD(IMS_FORMAT_VHDX, (b[H1 + 48] = 1, b[H2 + 48] = 1, fix_headers(b)), -ENOTSUP,
	       "vhdx: the image has a log to replay");

	/* the region tables: the copy stands in for a damaged first */
	memcpy(b, orig, len);
	b[R1 + 100] ^= 1;
	expect_opens(b, len);
	FT_BAD(IMS_FORMAT_VHDX, (b[R1 + 100] ^= 1, b[R2 + 100] ^= 1), -EINVAL,
	       "vhdx: neither region table is valid");
	FT_BAD(IMS_FORMAT_VHDX, (ft_put_le32(b + R1 + 8, 5000), fix(b + R1, 64 * KiB)), -EINVAL,
	       "vhdx: the region table has 5000 entries");
	FT_BAD(IMS_FORMAT_VHDX,
	       (b[R1 + 16] ^= 1, ft_put_le32(b + R1 + 16 + 28, 1), fix(b + R1, 64 * KiB)), -ENOTSUP,
	       "vhdx: the region table lists a required region this reader does not know");
	FT_BAD(IMS_FORMAT_VHDX, (b[R1 + 16] ^= 1, fix(b + R1, 64 * KiB)), -EINVAL,
	       "vhdx: the region table lacks the BAT region");
	FT_BAD(IMS_FORMAT_VHDX, (ft_put_le64(b + R1 + 16 + 16, 64 * MiB), fix(b + R1, 64 * KiB)),
	       -EINVAL, "vhdx: the BAT region (0x4000000, 1048576 bytes) lies outside the file");
	FT_BAD(IMS_FORMAT_VHDX, (ft_put_le64(b + R1 + 16 + 16, 4096), fix(b + R1, 64 * KiB)),
	       -EINVAL, "or in the header section");
	FT_BAD(IMS_FORMAT_VHDX, (ft_put_le64(b + R1 + 48 + 16, 2 * MiB), fix(b + R1, 64 * KiB)),
	       -EINVAL, "vhdx: the BAT and metadata regions overlap");
	FT_BAD(IMS_FORMAT_VHDX, (ft_put_le32(b + R1 + 16 + 24, 8), fix(b + R1, 64 * KiB)), -EINVAL,
	       "vhdx: the BAT region (8 bytes) is too small for 8 entries");

	/* the metadata */
	FT_BAD(IMS_FORMAT_VHDX, b[META] = 'X', -EINVAL, "vhdx: the metadata table is not valid");
	FT_BAD(IMS_FORMAT_VHDX, b[META + 11] = 0xff, -EINVAL,
	       "vhdx: the metadata table is not valid");
	FT_BAD(IMS_FORMAT_VHDX, b[MENTRY0 + 64] ^= 1, -ENOTSUP,
	       "vhdx: the metadata lists a required item this reader does not know");
	FT_BAD(IMS_FORMAT_VHDX, (b[MENTRY0] ^= 1, ft_put_le32(b + MENTRY0 + 24, 0)), -EINVAL,
	       "vhdx: the metadata lacks the file parameters");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le32(b + MENTRY0 + 16, 2 * MiB), -EINVAL,
	       "vhdx: a metadata item (at 0x200000, 8 bytes) lies outside the metadata region");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le32(b + MENTRY0 + 16, 4096), -EINVAL,
	       "lies outside the metadata region");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le32(b + PARAMS + 4, 2), -ENOTSUP,
	       "vhdx: the image is a differencing disk");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le32(b + PARAMS, 3 * MiB), -EINVAL,
	       "vhdx: block size 3145728 is not a power of 2");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le32(b + PARAMS, 512 * KiB), -EINVAL,
	       "vhdx: block size 524288 is not");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le32(b + LSS, 1024), -EINVAL,
	       "vhdx: logical sector size 1024 is not 512 or 4096");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le64(b + DSIZE, 0), -EINVAL,
	       "vhdx: a disk of 0 bytes is empty");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le64(b + DSIZE, UINT64_C(1) << 50), -EINVAL,
	       "or larger than 64 TiB");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le64(b + DSIZE, UINT64_C(60) << 40), -EINVAL,
	       "vhdx: the block allocation table is larger than 32 MiB");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le64(b + DSIZE, UINT64_C(200) << 30), -EINVAL,
	       "vhdx: the BAT region (1048576 bytes) is too small for 204849 entries");

	/* the BAT's entries */
	FT_BAD(IMS_FORMAT_VHDX, b[BAT + 8] = 7, -ENOTSUP, "vhdx: block 1 has state 7");
	FT_BAD(IMS_FORMAT_VHDX, b[BAT + 8] = 4, -EINVAL, "vhdx: block 1 has state 4");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le64(b + BAT + 8, 64 * MiB | 6), -EINVAL,
	       "vhdx: BAT entry of block 1 puts it at 0x4000000, past the end of the file");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le64(b + BAT + 8, 6), -EINVAL,
	       "puts it at 0x0, into the header section");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le64(b + BAT + 8, BAT | 6), -EINVAL,
	       "into the block allocation table");
	FT_BAD(IMS_FORMAT_VHDX, ft_put_le64(b + BAT + 8, META | 6), -EINVAL,
	       "into the metadata region");
	ft_expect_open_error(orig, len - 4096, IMS_FORMAT_VHDX, -EINVAL,
			     "vhdx: BAT entry of block 5 puts it at 0x900000, past the end of the "
			     "file (10481664 bytes; truncated?)");
	ft_expect_open_error(orig, 100 * KiB, IMS_FORMAT_VHDX, -EINVAL,
			     "vhdx: header at offset 131072 is truncated");
	ft_expect_open_error(orig, 4, IMS_FORMAT_VHDX, -EINVAL,
			     "image declared as vhdx but its bytes are raw");

	/* an unmapped block and a block of the undefined state read as zeros */
	memcpy(b, orig, len);
	b[BAT + 8] = 3;
	b[BAT + 40] = 1;
	r = ft_open_mem(b, len, IMS_FORMAT_VHDX);
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_true(e.type == IMS_EXTENT_ZERO && e.length == 8 * MiB);
	ims_format_close(r);
	free(b);
	free(orig);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qemu_images),
		cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests_name("format_vhdx", tests, ft_setup_qemu, ft_teardown);
}
