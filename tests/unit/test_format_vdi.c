/*
 * Unit tests of the vdi reader: images made by qemu-img (static and dynamic), read whole and
 * compared with qemu-img's raw conversion, and hostile variants of a small dynamic image
 * (header fields, the block map, truncation) that open or read must refuse with a message.
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

static void test_qemu_images(void **state)
{
	(void)state;
	ft_walk w;

	ft_run("qemu-img convert -f raw -O vdi -o static=off '%s' '%s'", ft_path("pattern.raw"),
	       ft_path("dynamic.vdi"));
	ft_check_qemu("vdi", IMS_FORMAT_AUTO, "dynamic.vdi", 65536, NULL, &w);
	ft_check_qemu("vdi", IMS_FORMAT_AUTO, "dynamic.vdi", 1000, NULL, &w);
	ft_run("qemu-img convert -f raw -O vdi -o static=on '%s' '%s'", ft_path("pattern.raw"),
	       ft_path("static.vdi"));
	ft_check_qemu("vdi", IMS_FORMAT_AUTO, "static.vdi", 65536, NULL, &w);
	assert_int_equal(w.zero_extents, 0);
	/* unallocated blocks are zero extents; a size that is not a whole block */
	ft_run("qemu-img create -q -f vdi '%s' 9000K", ft_path("holes.vdi"));
	ft_run("qemu-io -f vdi -c 'write -P 0x11 1M 4K' -c 'write -P 0x22 5M 1M' "
	       "-c 'write -P 0x33 8M 4K' '%s' >/dev/null",
	       ft_path("holes.vdi"));
	ft_check_qemu("vdi", IMS_FORMAT_AUTO, "holes.vdi", 4096, NULL, &w);
	assert_true(w.zero_extents >= 2 && w.data_extents == 3);
	assert_int_equal(w.data_bytes, (2u << 20) + 9000u * 1024 - (8u << 20)); /* the last cut */
}

/* A small dynamic image: blocks 1 and 5 of 8 allocated (map at 0x200, data at 0x400). */
static void test_hostile(void **state)
{
	(void)state;
	size_t len;
	uint8_t *orig = ft_small_image("vdi", "", "small.vdi", &len), *b = malloc(len);
	ims_format_reader *r;
	ims_extent e;
	uint8_t buf[16];

	assert_non_null(b);
	/* the image as made */
	r = ft_open_mem(orig, len, IMS_FORMAT_AUTO);
	assert_int_equal(ims_format_kind_of(r), IMS_FORMAT_VDI);
	assert_int_equal(ims_format_virtual_size(r), 8u << 20);
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_true(e.type == IMS_EXTENT_ZERO && e.length == 1u << 20);
	assert_int_equal(ims_format_map(&e, r, 1u << 20), 0);
	assert_true(e.type == IMS_EXTENT_DATA && e.length == 1u << 20);
	ims_format_close(r);

	FT_BAD(IMS_FORMAT_VDI, memset(b + 64, 0, 4), -EINVAL,
	       "image declared as vdi but its bytes are raw");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x44, 0x00010000), -ENOTSUP,
	       "vdi: version 1.0 is not supported");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x48, 8), -EINVAL,
	       "vdi: header size 8 is not valid");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x4c, 4), -ENOTSUP,
	       "vdi: the image is a differencing image");
	FT_BAD(IMS_FORMAT_VDI, b[0x1b8] = 1, -ENOTSUP, "vdi: the image is a differencing image");
	FT_BAD(IMS_FORMAT_VDI, b[0x1a8] = 1, -ENOTSUP, "vdi: the image is a differencing image");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x4c, 3), -ENOTSUP,
	       "vdi: image type 3 is not supported");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x168, 4096), -EINVAL,
	       "vdi: sector size 4096 is not 512");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x17c, 512), -ENOTSUP,
	       "vdi: 512 extra bytes per block");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x178, 3u << 20), -EINVAL,
	       "vdi: block size 3145728 is not a power of 2");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x178, 512), -EINVAL,
	       "vdi: block size 512 is not a power of 2");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x154, 0x201), -EINVAL,
	       "does not start on a sector");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le64(b + 0x170, 0), -EINVAL, "vdi: the disk size is 0");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le64(b + 0x170, 100), -EINVAL, "vdi: the disk size is 0");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le64(b + 0x170, 9u << 20), -EINVAL,
	       "vdi: disk size 9437184 exceeds its 8 blocks");
	/* a hostile block count: the map would pass 32 MiB, or the file */
	FT_BAD(IMS_FORMAT_VDI,
	       (ft_put_le32(b + 0x180, 0xffffffffu), ft_put_le64(b + 0x170, 1u << 20)), -EINVAL,
	       "blocks need a block map larger than 32 MiB");
	FT_BAD(IMS_FORMAT_VDI, (ft_put_le32(b + 0x180, 1000000), ft_put_le64(b + 0x170, 1u << 20)),
	       -EINVAL, "vdi: the block map (1000000 entries at 0x200) lies outside the file");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x154, 0), -EINVAL,
	       "vdi: the block map (8 entries at 0x0) lies outside");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x154, 0xfffffe00u), -EINVAL,
	       "lies outside the file");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x158, 0x200), -EINVAL,
	       "vdi: the data (at 0x200) starts inside the block map");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x200 + 4, 0x7ffffff0u), -EINVAL,
	       "vdi: block map entry 1 puts block 2147483632 past the end of the file");
	FT_BAD(IMS_FORMAT_VDI, ft_put_le32(b + 0x200 + 4, 2), -EINVAL,
	       "vdi: block map entry 1 puts block 2 past the end");
	ft_expect_open_error(orig, 100, IMS_FORMAT_VDI, -EINVAL,
			     "vdi: header at offset 0 is "
			     "truncated");
	ft_expect_open_error(orig, 0x210, IMS_FORMAT_VDI, -EINVAL,
			     "vdi: the block map (8 entries at 0x200) lies outside the file (528 "
			     "bytes)");

	/* a discarded block reads as zeros */
	memcpy(b, orig, len);
	ft_put_le32(b + 0x200 + 4, 0xfffffffeu);
	r = ft_open_mem(b, len, IMS_FORMAT_VDI);
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_true(e.type == IMS_EXTENT_ZERO && e.length == 5u << 20);
	assert_int_equal(ims_format_read(r, (1u << 20) + 7, buf, sizeof(buf)), 0);
	assert_true(buf[0] == 0 && buf[15] == 0);
	ims_format_close(r);
	/* the last block cut by the end of the file: its missing bytes read as zeros */
	r = ft_open_mem(orig, len - 4096, IMS_FORMAT_VDI);
	assert_int_equal(ims_format_read(r, (6u << 20) - 16, buf, sizeof(buf)), 0);
	assert_true(buf[0] == 0 && buf[15] == 0);
	assert_int_equal(ims_format_read(r, (6u << 20) - 8192, buf, sizeof(buf)), 0);
	assert_true(buf[0] == 0x22 && buf[15] == 0x22);
	ims_format_close(r);
	/* the blocks past the disk are not looked at */
	memcpy(b, orig, len);
	ft_put_le64(b + 0x170, 4u << 20);
	ft_put_le32(b + 0x200 + 20, 0x7ffffff0u);
	r = ft_open_mem(b, len, IMS_FORMAT_VDI);
	assert_int_equal(ims_format_virtual_size(r), 4u << 20);
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
	return cmocka_run_group_tests_name("format_vdi", tests, ft_setup_qemu, ft_teardown);
}
