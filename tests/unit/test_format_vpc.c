/*
 * Unit tests of the vpc (VHD) reader: images made by qemu-img (dynamic and fixed, with and
 * without force_size), read whole and compared with qemu-img's raw conversion, and hostile
 * variants of a small dynamic and a small fixed image that open must refuse with a message.
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

/* Recompute the checksum of the footer at @p f. */
static void fix(uint8_t *f)
{
	uint32_t sum = 0;

	ft_put_be32(f + 64, 0);
	for (int i = 0; i < 512; i++)
		sum += f[i];
	ft_put_be32(f + 64, ~sum);
}

static void test_qemu_images(void **state)
{
	(void)state;
	static const char *const opts[] = {"subformat=dynamic", "subformat=fixed",
					   "subformat=dynamic,force_size=on",
					   "subformat=fixed,force_size=on"};
	ft_walk w;

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		ft_run("qemu-img convert -f raw -O vpc -o %s '%s' '%s'", opts[i],
		       ft_path("pattern.raw"), ft_path("p.vhd"));
		ft_check_qemu("vpc", IMS_FORMAT_AUTO, "p.vhd", 65536, NULL, &w);
		ft_check_qemu("vpc", IMS_FORMAT_AUTO, "p.vhd", 1000, NULL, &w);
	}
	/* unallocated blocks are zero extents; the size of the CHS geometry (not 9000 KiB) */
	ft_run("qemu-img create -q -f vpc '%s' 9000K", ft_path("holes.vhd"));
	ft_run("qemu-io -f vpc -c 'write -P 0x11 1M 4K' -c 'write -P 0x22 5M 1M' "
	       "-c 'write -P 0x33 8M 4K' '%s' >/dev/null",
	       ft_path("holes.vhd"));
	ft_check_qemu("vpc", IMS_FORMAT_AUTO, "holes.vhd", 4096, NULL, &w);
	assert_true(w.zero_extents >= 1 && w.data_extents == 3);
}

/* A small image: 8 MiB, a little more with its CHS geometry; dynamic: blocks 0 and 2 of
 * 5 (2 MiB) allocated, the BAT at 0x600. */
static void test_hostile_dynamic(void **state)
{
	(void)state;
	size_t len;
	uint8_t *orig = ft_small_image("vpc", "", "small.vhd", &len), *b = malloc(len);
	ims_format_reader *r;
	ims_extent e;

	assert_non_null(b);
	r = ft_open_mem(orig, len, IMS_FORMAT_AUTO);
	assert_int_equal(ims_format_kind_of(r), IMS_FORMAT_VPC);
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_true(e.type == IMS_EXTENT_DATA && e.length == 2u << 20);
	assert_int_equal(ims_format_map(&e, r, 2u << 20), 0);
	assert_true(e.type == IMS_EXTENT_ZERO && e.length == 2u << 20);
	ims_format_close(r);

	FT_BAD(IMS_FORMAT_VPC, b[64] ^= 1, -EINVAL, "vpc: the footer's checksum is wrong");
	FT_BAD(IMS_FORMAT_VPC, (ft_put_be32(b + 60, 4), fix(b)), -ENOTSUP,
	       "vpc: the image is a differencing disk");
	FT_BAD(IMS_FORMAT_VPC, (ft_put_be32(b + 60, 5), fix(b)), -ENOTSUP,
	       "vpc: disk type 5 is not supported");
	FT_BAD(IMS_FORMAT_VPC,
	       (memcpy(b + 28, "qem2", 4), ft_put_be64(b + 48, UINT64_C(1) << 50), fix(b)), -EINVAL,
	       "sectors is empty or larger than 2040 GiB");
	FT_BAD(IMS_FORMAT_VPC, (memcpy(b + 28, "qem2", 4), ft_put_be64(b + 48, 100), fix(b)),
	       -EINVAL, "vpc: a disk of 0 sectors is empty");
	FT_BAD(IMS_FORMAT_VPC, (ft_put_be64(b + 16, len), fix(b)), -EINVAL,
	       "vpc: the dynamic disk header at 0x400e00 lies outside the file");
	FT_BAD(IMS_FORMAT_VPC, (ft_put_be64(b + 16, 0), fix(b)), -EINVAL,
	       "lies in the footer copy");
	FT_BAD(IMS_FORMAT_VPC, b[512] = 'X', -EINVAL,
	       "vpc: the dynamic disk header has a bad magic");
	FT_BAD(IMS_FORMAT_VPC, ft_put_be32(b + 512 + 32, 3000), -EINVAL,
	       "vpc: block size 3000 is not a power of 2");
	FT_BAD(IMS_FORMAT_VPC, ft_put_be32(b + 512 + 32, 1u << 30), -EINVAL,
	       "vpc: block size 1073741824 is not");
	FT_BAD(IMS_FORMAT_VPC, ft_put_be32(b + 512 + 28, 3), -EINVAL,
	       "vpc: 3 blocks of 2097152 bytes are too few");
	FT_BAD(IMS_FORMAT_VPC, ft_put_be64(b + 512 + 16, len - 8), -EINVAL,
	       "vpc: the block allocation table (5 entries");
	FT_BAD(IMS_FORMAT_VPC, ft_put_be64(b + 512 + 16, 256), -EINVAL, "overlaps the headers");
	/* a huge disk with small blocks: the table would pass 32 MiB */
	FT_BAD(IMS_FORMAT_VPC,
	       (memcpy(b + 28, "qem2", 4), ft_put_be64(b + 48, UINT64_C(2000) << 30), fix(b),
		ft_put_be32(b + 512 + 28, 0xffffffffu), ft_put_be32(b + 512 + 32, 4096)),
	       -EINVAL, "vpc: the block allocation table is larger than 32 MiB");
	FT_BAD(IMS_FORMAT_VPC, ft_put_be32(b + 0x600, 0x7fffffff), -EINVAL,
	       "vpc: block allocation table entry 0 puts a block at 0xfffffffe00, past the end");
	FT_BAD(IMS_FORMAT_VPC, ft_put_be32(b + 0x600 + 4, 1), -EINVAL,
	       "vpc: block allocation table entry 1 puts a block at 0x200, into the dynamic disk");
	FT_BAD(IMS_FORMAT_VPC, ft_put_be32(b + 0x600 + 4, 0), -EINVAL, "into the footer copy");
	FT_BAD(IMS_FORMAT_VPC, ft_put_be32(b + 0x600 + 4, 3), -EINVAL,
	       "into the block allocation table");
	ft_expect_open_error(orig, 300, IMS_FORMAT_VPC, -EINVAL,
			     "vpc: truncated footer (300 bytes, need 512)");
	ft_expect_open_error(orig, 1000, IMS_FORMAT_VPC, -EINVAL,
			     "vpc: the dynamic disk header at 0x200 lies outside the file");
	memcpy(b, orig, len);
	memset(b, 0, 8);
	ft_expect_open_error(b, len - 512, IMS_FORMAT_VPC, -EINVAL,
			     "image declared as vpc but its bytes are raw");
	free(b);
	free(orig);
}

static void test_hostile_fixed(void **state)
{
	(void)state;
	size_t len;
	uint8_t *orig = ft_small_image("vpc", "-o subformat=fixed", "small.vhd", &len),
		*b = malloc(len + 512);
	uint8_t *f = b + len - 512;
	ims_format_reader *r;
	uint8_t buf[16];

	assert_non_null(b);
	/* found by its footer at the end; QEMU's CHS size for 8 MiB */
	r = ft_open_mem(orig, len, IMS_FORMAT_AUTO);
	assert_int_equal(ims_format_kind_of(r), IMS_FORMAT_VPC);
	assert_int_equal(ims_format_virtual_size(r), len - 512);
	assert_int_equal(ims_format_read(r, 5u << 20, buf, sizeof(buf)), 0);
	assert_true(buf[0] == 0x22 && buf[15] == 0x22);
	ims_format_close(r);

	FT_BAD(IMS_FORMAT_VPC, f[64] ^= 1, -EINVAL, "vpc: the footer's checksum is wrong");
	FT_BAD(IMS_FORMAT_VPC, (memcpy(f + 28, "qem2", 4), ft_put_be64(f + 48, len), fix(f)),
	       -EINVAL, "does not fit in the file");
	FT_BAD(IMS_FORMAT_VPC, (ft_put_be32(f + 60, 4), fix(f)), -ENOTSUP,
	       "vpc: the image is a differencing disk");
	/* declared raw, the container's bytes are not imported as a disk */
	ft_expect_open_error(orig, len, IMS_FORMAT_RAW, -EINVAL,
			     "image declared as raw but its bytes are vpc");
	free(b);
	free(orig);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qemu_images),
		cmocka_unit_test(test_hostile_dynamic),
		cmocka_unit_test(test_hostile_fixed),
	};
	return cmocka_run_group_tests_name("format_vpc", tests, ft_setup_qemu, ft_teardown);
}
