/* Unit tests of store/format.h: names, detection, sources, the raw reader and the dispatch. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "store/format.h"
#include "tests/unit/format_test_util.h"

static int setup(void **state)
{
	(void)state;
	ft_sandbox();
	return 0;
}

static void test_names(void **state)
{
	(void)state;
	ims_format_kind k = IMS_FORMAT_RAW;

	assert_string_equal(ims_format_name(IMS_FORMAT_AUTO), "auto");
	assert_string_equal(ims_format_name(IMS_FORMAT_RAW), "raw");
	assert_string_equal(ims_format_name(IMS_FORMAT_QCOW2), "qcow2");
	assert_string_equal(ims_format_name(IMS_FORMAT_VMDK), "vmdk");
	assert_string_equal(ims_format_name(IMS_FORMAT_VDI), "vdi");
	assert_string_equal(ims_format_name(IMS_FORMAT_VHDX), "vhdx");
	assert_string_equal(ims_format_name(IMS_FORMAT_VPC), "vpc");
	assert_string_equal(ims_format_name((ims_format_kind)42), "unknown");
	assert_int_equal(ims_format_parse(&k, "qcow2"), 0);
	assert_int_equal(k, IMS_FORMAT_QCOW2);
	assert_int_equal(ims_format_parse(&k, "auto"), 0);
	assert_int_equal(k, IMS_FORMAT_AUTO);
	assert_int_equal(ims_format_parse(&k, "vmdk"), 0);
	assert_int_equal(k, IMS_FORMAT_VMDK);
	ims_error_clear();
	assert_int_equal(ims_format_parse(&k, "vhdx"), 0);
	assert_int_equal(k, IMS_FORMAT_VHDX);
	assert_int_equal(ims_format_parse(&k, "vpc"), 0);
	assert_int_equal(k, IMS_FORMAT_VPC);
	assert_int_equal(ims_format_parse(&k, "vdi"), 0);
	assert_int_equal(k, IMS_FORMAT_VDI);
	ft_expect_error(ims_format_parse(&k, "vhd"), -EINVAL, "unknown image format 'vhd'");
	assert_int_equal(k, IMS_FORMAT_VDI); /* untouched on error */
	ft_expect_error(ims_format_parse(&k, "QCOW2"), -EINVAL, "unknown image format 'QCOW2'");
}

static ims_format_kind detect(const void *data, size_t len)
{
	ims_source_mem_ctx ctx;
	ims_source src;
	ims_format_kind k = IMS_FORMAT_AUTO;

	ims_source_mem(&src, &ctx, data, len);
	assert_int_equal(ims_format_detect(&k, &src), 0);
	return k;
}

static void test_detect(void **state)
{
	(void)state;
	static const char desc[] = "# Disk DescriptorFile\nversion=1\n";

	assert_int_equal(detect("QFI\xfb\0\0\0\3", 8), IMS_FORMAT_QCOW2);
	assert_int_equal(detect("QFI\xfb", 4), IMS_FORMAT_QCOW2);
	assert_int_equal(detect("KDMV\1\0\0\0", 8), IMS_FORMAT_VMDK);
	assert_int_equal(detect("COWD\1\0\0\0", 8), IMS_FORMAT_VMDK);
	assert_int_equal(detect(desc, sizeof(desc) - 1), IMS_FORMAT_VMDK);
	assert_int_equal(detect("# Disk Descriptor", 17), IMS_FORMAT_RAW);
	assert_int_equal(detect("QFI", 3), IMS_FORMAT_RAW);
	assert_int_equal(detect("", 0), IMS_FORMAT_RAW);
	assert_int_equal(detect("\0\0\0\0\0\0\0\0", 8), IMS_FORMAT_RAW);
}

/* The formats imgstore reads are found by their magic, a fixed VHD by its footer; declared
 * raw, they are refused (their container's bytes are not the disk). */
static void test_detect_readable(void **state)
{
	(void)state;
	static const struct {
		const char *fmt, *opts;
		ims_format_kind kind;
	} made[] = {
		{"vdi", "static=off", IMS_FORMAT_VDI},
		{"vdi", "static=on", IMS_FORMAT_VDI},
		{"vhdx", "subformat=dynamic", IMS_FORMAT_VHDX},
		{"vhdx", "subformat=fixed", IMS_FORMAT_VHDX},
		{"vpc", "subformat=dynamic", IMS_FORMAT_VPC},
		{"vpc", "subformat=fixed", IMS_FORMAT_VPC},
	};
	const char *path = ft_path("disk.img");

	ft_need_tool("qemu-img");
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
		size_t len;
		uint8_t *b;
		char msg[128];

		unlink(path);
		ft_run("qemu-img create -q -f %s -o %s '%s' 3M", made[i].fmt, made[i].opts, path);
		b = ft_read_file(path, &len);
		assert_int_equal(detect(b, len), made[i].kind);
		snprintf(msg, sizeof(msg), "image declared as raw but its bytes are %s",
			 made[i].fmt);
		ft_expect_open_error(b, len, IMS_FORMAT_RAW, -EINVAL, msg);
		free(b);
	}
	unlink(path);
}

/* Open the file at @p path as @p declared and expect -ENOTSUP naming format @p name. */
static void expect_unreadable(const char *path, ims_format_kind declared, const char *name)
{
	size_t len;
	uint8_t *b = ft_read_file(path, &len);
	char msg[128];
	ims_source_mem_ctx ctx;
	ims_source src;
	ims_format_kind k = IMS_FORMAT_QCOW2;

	snprintf(msg, sizeof(msg), "the image is in format '%s' (", name);
	ft_expect_open_error(b, len, declared, -ENOTSUP, msg);
	ft_expect_open_error(b, len, declared, -ENOTSUP, "which imgstore cannot read");
	ims_source_mem(&src, &ctx, b, len);
	ims_error_clear();
	ft_expect_error(ims_format_detect(&k, &src), -ENOTSUP, msg);
	assert_int_equal(k, IMS_FORMAT_QCOW2); /* untouched */
	free(b);
}

/*
 * Every format qemu-img knows is recognised; those imgstore cannot read are refused with a
 * message naming them, never imported as raw (a 96 MiB disk in a VDI is not a 1 KiB raw disk).
 */
static void test_detect_unreadable(void **state)
{
	(void)state;
	static const char *const made[][2] = {
		{"qed", ""},
		{"parallels", ""},
	};
	char path[256];

	ft_need_tool("qemu-img");
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
		snprintf(path, sizeof(path), "%s", ft_path("disk.img"));
		unlink(path);
		ft_run("qemu-img create -q -f %s %s '%s' 96M", made[i][0], made[i][1], path);
		expect_unreadable(path, IMS_FORMAT_AUTO, made[i][0]);
		expect_unreadable(path, IMS_FORMAT_RAW, made[i][0]);
	}
	unlink(path);
	/* a LUKS header as QEMU's probe has it (magic, version 1). qemu-img's own luks timing of
	 * PBKDF fails on a loaded machine ("Unable to get accurate CPU usage"), so it is written
	 * here rather than made */
	{
		static uint8_t hdr[1u << 20];
		memset(hdr, 0, sizeof(hdr));
		memcpy(hdr, "LUKS\xba\xbe\0\1aes\0", 11);
		ft_write_file(path, hdr, sizeof(hdr));
	}
	expect_unreadable(path, IMS_FORMAT_AUTO, "luks");
	{
		/* a whole disk encrypted inside its guest starts so too: declared raw, it is raw */
		size_t len;
		uint8_t *l = ft_read_file(path, &len);
		ims_format_reader *r = ft_open_mem(l, len, IMS_FORMAT_RAW);
		assert_int_equal(ims_format_kind_of(r), IMS_FORMAT_RAW);
		assert_int_equal(ims_format_virtual_size(r), len);
		ims_format_close(r);
		ft_expect_open_error(l, len, IMS_FORMAT_AUTO, -ENOTSUP,
				     "or declare it raw if its guest encrypted");
		free(l);
	}

	/* what qemu-img cannot create: the magic as QEMU's probes (and a dmg's trailer) have it */
	static const char cloop[] = "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r "
				    "-t iso9660 /dev/cloop $1\n";
	uint8_t b[4096];
	memset(b, 0, sizeof(b));
	memcpy(b, "Bochs Virtual HD Image", 23);
	memcpy(b + 32, "Redolog", 8);
	ft_write_file(path, b, sizeof(b));
	expect_unreadable(path, IMS_FORMAT_AUTO, "bochs");
	memset(b, 0, sizeof(b));
	memcpy(b, cloop, sizeof(cloop) - 1);
	ft_write_file(path, b, sizeof(b));
	expect_unreadable(path, IMS_FORMAT_AUTO, "cloop");
	memset(b, 0, sizeof(b));
	memcpy(b + sizeof(b) - 512, "koly\0\0\0\4\0\0\2\0", 12);
	ft_write_file(path, b, sizeof(b));
	expect_unreadable(path, IMS_FORMAT_AUTO, "dmg");

	/* near misses stay raw: a magic elsewhere, or cut short */
	memset(b, 0, sizeof(b));
	memcpy(b + 512, "conectix", 8);
	memcpy(b + sizeof(b) - 500, "koly", 4);
	assert_int_equal(detect(b, sizeof(b)), IMS_FORMAT_RAW);
	assert_int_equal(detect("vhdxfil", 7), IMS_FORMAT_RAW);
	assert_int_equal(detect("conecti", 7), IMS_FORMAT_RAW);
	/* a VDI's magic at 64, cut short; and at 65 */
	memset(b, 0, sizeof(b));
	memcpy(b + 64, "\x7f\x10\xda\xbe", 4);
	assert_int_equal(detect(b, 67), IMS_FORMAT_RAW);
	assert_int_equal(detect(b, 68), IMS_FORMAT_VDI);
	memset(b, 0, sizeof(b));
	memcpy(b + 65, "\x7f\x10\xda\xbe", 4);
	assert_int_equal(detect(b, sizeof(b)), IMS_FORMAT_RAW);
	/* a fixed VHD's footer one byte off the last 512 */
	memset(b, 0, sizeof(b));
	memcpy(b + sizeof(b) - 511, "conectix", 8);
	assert_int_equal(detect(b, sizeof(b)), IMS_FORMAT_RAW);
	memset(b, 0, sizeof(b));
	assert_int_equal(detect("Bochs Virtual HD Image!", 23), IMS_FORMAT_RAW);
	assert_int_equal(detect("LUKS\xba", 5), IMS_FORMAT_RAW);
	memcpy(b, "QED", 4); /* with its NUL: a qed header */
	ims_error_clear();
	ft_expect_open_error(b, sizeof(b), IMS_FORMAT_AUTO, -ENOTSUP,
			     "format 'qed' (QEMU enhanced disk)");
}

/* A source whose reads fail, as a disk would. */
static ssize_t failing_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	(void)ctx, (void)buf, (void)len, (void)off;
	return -EIO;
}

static void test_source_errors(void **state)
{
	(void)state;
	ims_source src = {.pread = failing_pread, .size = 4096, .ctx = NULL};
	ims_format_reader *r = NULL;
	ims_format_kind k;
	uint8_t b[16];

	ims_error_clear();
	ft_expect_error(ims_format_detect(&k, &src), -EIO, "read of 128 bytes at offset 0 failed");
	ims_error_clear();
	ft_expect_error(ims_format_open(&r, &src, IMS_FORMAT_AUTO), -EIO, "failed");
	assert_null(r);

	/* raw opens without reading; the read then fails with the source's errno */
	src.size = 0;
	r = NULL;
	{
		ims_source_mem_ctx ctx;
		ims_source ok;
		ims_source_mem(&ok, &ctx, "abcdefgh", 8);
		assert_int_equal(ims_format_open(&r, &ok, IMS_FORMAT_RAW), 0);
		ims_format_close(r);
	}
	(void)b;
	ims_error_clear();
	ft_expect_error(ims_format_open(&r, NULL, IMS_FORMAT_AUTO), -EINVAL, "no source");
	ft_expect_error(ims_format_open(&r, &src, (ims_format_kind)9), -EINVAL,
			"unknown image format 9");
}

static void test_raw(void **state)
{
	(void)state;
	uint8_t data[3000], got[3000];
	ims_format_reader *r;
	ims_extent e;

	ft_pattern(data, sizeof(data));
	r = ft_open_mem(data, sizeof(data), IMS_FORMAT_AUTO);
	assert_int_equal(ims_format_kind_of(r), IMS_FORMAT_RAW);
	assert_int_equal(ims_format_virtual_size(r), sizeof(data));

	/* every byte is data, in one extent from anywhere to the end */
	assert_int_equal(ims_format_map(&e, r, 0), 0);
	assert_int_equal(e.offset, 0);
	assert_int_equal(e.length, 3000);
	assert_int_equal(e.type, IMS_EXTENT_DATA);
	assert_int_equal(ims_format_map(&e, r, 2999), 0);
	assert_int_equal(e.offset, 2999);
	assert_int_equal(e.length, 1);

	assert_int_equal(ims_format_read(r, 0, got, sizeof(got)), 0);
	assert_memory_equal(got, data, sizeof(data));
	assert_int_equal(ims_format_read(r, 1234, got, 17), 0);
	assert_memory_equal(got, data + 1234, 17);
	assert_int_equal(ims_format_read(r, 3000, got, 0), 0);

	ims_error_clear();
	ft_expect_error(ims_format_map(&e, r, 3000), -EINVAL,
			"offset 3000 is past the virtual size 3000");
	ft_expect_error(ims_format_read(r, 2990, got, 11), -EINVAL,
			"read of 11 bytes at offset 2990 passes the virtual size 3000");
	ft_expect_error(ims_format_read(r, UINT64_MAX, got, 2), -EINVAL, "passes the virtual size");
	ims_format_close(r);
	ims_format_close(NULL);

	/* an empty raw disk: opens, has nothing to map */
	r = ft_open_mem("", 0, IMS_FORMAT_RAW);
	assert_int_equal(ims_format_virtual_size(r), 0);
	ft_expect_error(ims_format_map(&e, r, 0), -EINVAL, "past the virtual size");
	ims_format_close(r);
}

static void test_declared_mismatch(void **state)
{
	(void)state;
	uint8_t q[512] = "QFI\xfb";
	uint8_t v[512] = "KDMV";
	uint8_t raw[512] = {1, 2, 3};

	const ft_open_case cases[] = {
		{q, sizeof(q), IMS_FORMAT_VMDK, -EINVAL,
		 "image declared as vmdk but its bytes are qcow2"},
		{q, sizeof(q), IMS_FORMAT_RAW, -EINVAL,
		 "image declared as raw but its bytes are qcow2"},
		{v, sizeof(v), IMS_FORMAT_QCOW2, -EINVAL,
		 "image declared as qcow2 but its bytes are vmdk"},
		{raw, sizeof(raw), IMS_FORMAT_QCOW2, -EINVAL,
		 "image declared as qcow2 but its bytes are raw"},
		{raw, sizeof(raw), IMS_FORMAT_VMDK, -EINVAL,
		 "image declared as vmdk but its bytes are raw"},
	};
	ft_expect_open_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_source_fd(void **state)
{
	(void)state;
	const char *path = ft_path("disk.raw");
	uint8_t data[70000], got[70000];
	ims_format_reader *r = NULL;
	ims_source src;
	int fd;

	ft_pattern(data, sizeof(data));
	ft_write_file(path, data, sizeof(data));
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	ims_source_fd(&src, &fd, sizeof(data));
	assert_int_equal(ims_format_open(&r, &src, IMS_FORMAT_RAW), 0);
	assert_int_equal(ims_format_read(r, 0, got, sizeof(got)), 0);
	assert_memory_equal(got, data, sizeof(data));

	/* a source that shrank under the reader */
	assert_int_equal(truncate(path, 1000), 0);
	ims_error_clear();
	ft_expect_error(ims_format_read(r, 500, got, 1000), -EIO, "raw image shrank while read");
	ims_format_close(r);

	/* a descriptor that fails */
	close(fd);
	fd = -1;
	ims_source_fd(&src, &fd, 100);
	ims_error_clear();
	ft_expect_error(ims_format_open(&r, &src, IMS_FORMAT_AUTO), -EBADF,
			"read of 100 bytes at offset 0 failed");
}

/* A writer that appends a file in pieces, saying each time how much arrived. */
typedef struct {
	int fd;
	ims_source_growing *g;
	const uint8_t *data;
	size_t len, piece;
} grow_writer;

static void *grow_write(void *arg)
{
	grow_writer *w = arg;
	for (size_t off = 0; off < w->len; off += w->piece) {
		size_t n = w->len - off < w->piece ? w->len - off : w->piece;
		struct timespec pause = {0, 2000000};
		nanosleep(&pause, NULL);
		assert_int_equal(pwrite(w->fd, w->data + off, n, (off_t)off), (ssize_t)n);
		ims_source_growing_arrived(w->g, off + n);
	}
	return NULL;
}

static int stop_now(void *ctx)
{
	return *(int *)ctx;
}

static void test_source_growing(void **state)
{
	(void)state;
	const char *path = ft_path("growing.raw");
	static uint8_t data[300000], got[300000];
	ims_format_reader *r = NULL;
	ims_source_growing *g = NULL;
	ims_source src;
	pthread_t t;
	int stop = 0, wfd, fd;

	ft_pattern(data, sizeof(data));
	wfd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	fd = open(path, O_RDONLY);
	assert_true(wfd >= 0 && fd >= 0);

	/* reads wait for their bytes, the end of the file included */
	assert_int_equal(ims_source_growing_new(&g, fd, sizeof(data), 5, NULL, NULL), 0);
	ims_source_growing_source(&src, g);
	assert_int_equal(src.size, sizeof(data));
	grow_writer w = {wfd, g, data, sizeof(data), 7000};
	assert_int_equal(pthread_create(&t, NULL, grow_write, &w), 0);
	assert_int_equal(ims_format_open(&r, &src, IMS_FORMAT_RAW), 0);
	assert_int_equal(ims_format_read(r, 0, got, sizeof(got)), 0);
	assert_memory_equal(got, data, sizeof(data));
	pthread_join(t, NULL);
	ims_format_close(r);
	ims_source_growing_free(g);

	/* no bytes for the stall time: -ETIMEDOUT */
	assert_int_equal(ims_source_growing_new(&g, fd, sizeof(data) + 1, 1, NULL, NULL), 0);
	ims_source_growing_source(&src, g);
	ims_source_growing_arrived(g, 1000);
	assert_int_equal(src.pread(src.ctx, got, 1000, 0), 1000);
	ims_error_clear();
	ft_expect_error((int)src.pread(src.ctx, got, 10, sizeof(data) - 5), -ETIMEDOUT,
			"the upload stalled for 1 s");
	/* the writer gave up: -ECANCELED with its reason */
	ims_source_growing_abandon(g, "the upload failed: disk full");
	ims_error_clear();
	ft_expect_error((int)src.pread(src.ctx, got, 10, 5000), -ECANCELED,
			"the upload failed: disk full");
	assert_int_equal(src.pread(src.ctx, got, 10, 0), 10); /* what arrived still reads */
	ims_source_growing_free(g);

	/* the reader's operation is cancelled while it waits */
	stop = 1;
	assert_int_equal(ims_source_growing_new(&g, fd, sizeof(data), 60, stop_now, &stop), 0);
	ims_source_growing_source(&src, g);
	ims_error_clear();
	ft_expect_error((int)src.pread(src.ctx, got, 10, 0), -ECANCELED, "cancelled while waiting");
	ims_source_growing_free(g);
	ims_source_growing_free(NULL);
	close(wfd);
	close(fd);
}

/* A writer that puts an upload's pieces into the source's memory, out of order in pairs. */
static void *grow_put(void *arg)
{
	grow_writer *w = arg;
	for (size_t off = 0; off < w->len; off += 2 * w->piece) {
		size_t n = w->len - off < w->piece ? w->len - off : w->piece;
		size_t off2 = off + n, n2 = 0;
		if (off2 < w->len)
			n2 = w->len - off2 < w->piece ? w->len - off2 : w->piece;
		if (n2) /* the second piece first: the window allows it */
			assert_int_equal(ims_source_growing_put(w->g, w->data + off2, n2, off2), 0);
		assert_int_equal(ims_source_growing_put(w->g, w->data + off, n, off), 0);
		ims_source_growing_arrived(w->g, off2 + n2);
	}
	return NULL;
}

static void test_source_growing_ring(void **state)
{
	(void)state;
	const char *path = ft_path("growing-ring.raw");
	size_t len = 24u << 20; /* more than the ring (1 MiB + 4 MiB behind the reader) */
	uint8_t *data = malloc(len), *got = malloc(len);
	ims_source_growing *g = NULL;
	ims_source src;
	pthread_t t;
	int fd, wfd;

	assert_non_null(data);
	assert_non_null(got);
	ft_pattern(data, len);
	wfd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	fd = open(path, O_RDONLY);
	assert_true(wfd >= 0 && fd >= 0);
	assert_int_equal(ims_source_growing_new(&g, fd, len, 5, NULL, NULL), 0);
	assert_int_equal(ims_source_growing_buffer(g, wfd, 1u << 20), 0);
	ims_source_growing_source(&src, g);
	grow_writer w = {-1, g, data, len, 300000};
	assert_int_equal(pthread_create(&t, NULL, grow_put, &w), 0);
	/* the reader reads in order, and now and then goes back to the start (a table read
	 * again): that part left the memory long ago and comes from the file */
	for (size_t off = 0; off < len; off += 1u << 20) {
		assert_int_equal(src.pread(src.ctx, got + off, 1u << 20, off), 1 << 20);
		if (off > (12u << 20)) {
			uint8_t head[8192];
			assert_int_equal(src.pread(src.ctx, head, sizeof(head), 4000),
					 sizeof(head));
			assert_memory_equal(head, data + 4000, sizeof(head));
		}
	}
	pthread_join(t, NULL);
	assert_memory_equal(got, data, len);
	/* only what left the memory is in the file; the rest never went there */
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(st.st_size > (8 << 20) && (size_t)st.st_size < len);
	ims_error_clear();
	ft_expect_error(ims_source_growing_put(g, data, 10, 0), -EINVAL, "already received");
	ims_source_growing_free(g);

	/* a put waiting for room while the reader reads nothing: the stall time, then
	 * -ETIMEDOUT; an abandoned source: -ECANCELED at once */
	wfd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(ims_source_growing_new(&g, fd, len, 1, NULL, NULL), 0);
	assert_int_equal(ims_source_growing_buffer(g, wfd, 1u << 20), 0);
	assert_int_equal(ims_source_growing_put(g, data, 1u << 20, 0), 0);
	ims_source_growing_arrived(g, 1u << 20);
	ims_error_clear();
	ft_expect_error(ims_source_growing_put(g, data, 1u << 20, 12u << 20), -ETIMEDOUT,
			"the import read none of the upload for 1 s");
	ims_source_growing_hold(g); /* a chunk handler's hold outlives the owner's free */
	ims_source_growing_abandon(g, "the import ended");
	ims_source_growing_free(g);
	ims_error_clear();
	ft_expect_error(ims_source_growing_put(g, data, 1u << 20, 12u << 20), -ECANCELED,
			"the import ended");
	ims_source_growing_free(g);
	close(fd);
	free(data);
	free(got);
}

/* An export's writer: puts the bytes in order into an outbound stream, ends it, waits for the
 * client to read them all. */
static void *stream_put(void *arg)
{
	grow_writer *w = arg;
	for (size_t off = 0; off < w->len; off += w->piece) {
		size_t n = w->len - off < w->piece ? w->len - off : w->piece;
		assert_int_equal(ims_source_growing_put(w->g, w->data + off, n, off), 0);
		ims_source_growing_arrived(w->g, off + n);
	}
	ims_source_growing_end(w->g, w->len);
	w->fd = ims_source_growing_drained(w->g);
	return NULL;
}

static void test_source_growing_outbound(void **state)
{
	(void)state;
	size_t len = 24u << 20, at = 0, n = 0; /* more than the ring: 1 MiB + 4 MiB behind */
	uint8_t *data = malloc(len), *got = malloc(len);
	ims_source_growing *g = NULL;
	bool eof = false;
	pthread_t t;

	assert_non_null(data);
	assert_non_null(got);
	ft_pattern(data, len);
	assert_int_equal(ims_source_growing_new(&g, -1, UINT64_MAX, 5, NULL, NULL), 0);
	assert_int_equal(ims_source_growing_buffer(g, -1, 1u << 20), 0);
	/* nothing made yet: the read waits, then returns nothing */
	assert_int_equal(ims_source_growing_read_some(&n, &eof, g, got, 4096, 0, 50), 0);
	assert_true(n == 0 && !eof);
	grow_writer w = {-1, g, data, len, 300000};
	assert_int_equal(pthread_create(&t, NULL, stream_put, &w), 0);
	while (!eof) {
		assert_int_equal(
			ims_source_growing_read_some(&n, &eof, g, got + at, 1u << 20, at, 5000), 0);
		ims_source_growing_sent(g, at, at + n);
		if (eof)
			ims_source_growing_told_end(g); /* as the daemon's answer with eof */
		at += n;
		if (at > (12u << 20) && at < (13u << 20)) {
			/* 4 MiB behind the furthest read stays; the start left the memory */
			uint8_t again[4096];
			size_t m = 0;
			bool e = false;
			assert_int_equal(ims_source_growing_read_some(&m, &e, g, again,
								      sizeof(again),
								      at - (3u << 20), 10),
					 0);
			assert_memory_equal(again, data + at - (3u << 20), m);
		}
	}
	pthread_join(t, NULL);
	assert_int_equal(at, len);
	assert_memory_equal(got, data, len);
	assert_int_equal(w.fd, 0); /* drained */
	ims_error_clear();
	ft_expect_error(ims_source_growing_read_some(&n, &eof, g, got, 10, 0, 10), -ERANGE,
			"was sent already");
	ft_expect_error(ims_source_growing_read_some(&n, &eof, g, got, 10, len + 1, 10), -ERANGE,
			"past the end");
	assert_int_equal(ims_source_growing_read_some(&n, &eof, g, got, 10, len, 10), 0);
	assert_true(n == 0 && eof);
	ims_source_growing_free(g);

	/* a client that reads nothing: the put waiting for room and the wait for the client to
	 * finish fail after the stall time; abandoned, a read says why */
	assert_int_equal(ims_source_growing_new(&g, -1, UINT64_MAX, 1, NULL, NULL), 0);
	assert_int_equal(ims_source_growing_buffer(g, -1, 1u << 20), 0);
	assert_int_equal(ims_source_growing_put(g, data, 1u << 20, 0), 0);
	ims_source_growing_arrived(g, 1u << 20);
	ims_error_clear();
	ft_expect_error(ims_source_growing_put(g, data, 1u << 20, 12u << 20), -ETIMEDOUT,
			"the client read none of the export for 1 s");
	ims_source_growing_end(g, 1u << 20);
	/* read but not sent (a reader that looked further): the export is not drained */
	assert_int_equal(ims_source_growing_read_some(&n, &eof, g, got, 2u << 20, 0, 10), 0);
	assert_true(n == 1u << 20 && eof);
	ft_expect_error(ims_source_growing_drained(g), -ETIMEDOUT,
			"the client read none of the export for 1 s");
	ims_source_growing_sent(g, 0, 1u << 20);
	ims_source_growing_told_end(g);
	assert_int_equal(ims_source_growing_drained(g), 0);
	ims_source_growing_abandon(g, "cannot read 'rbd/x': I/O error");
	ft_expect_error(ims_source_growing_read_some(&n, &eof, g, got, 10, 2u << 20, 10), -ERANGE,
			"past the end");
	ims_source_growing_free(g);
	assert_int_equal(ims_source_growing_new(&g, -1, UINT64_MAX, 1, NULL, NULL), 0);
	assert_int_equal(ims_source_growing_buffer(g, -1, 1u << 20), 0);
	ims_source_growing_abandon(g, "cannot read 'rbd/x': I/O error");
	ft_expect_error(ims_source_growing_read_some(&n, &eof, g, got, 10, 0, 1000), -ECANCELED,
			"cannot read 'rbd/x'");
	ims_source_growing_free(g);
	free(data);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_detect_readable),
		cmocka_unit_test(test_detect_unreadable),
		cmocka_unit_test(test_source_errors),
		cmocka_unit_test(test_source_growing_ring),
		cmocka_unit_test(test_source_growing_outbound),
		cmocka_unit_test(test_raw),
		cmocka_unit_test(test_declared_mismatch),
		cmocka_unit_test(test_source_fd),
		cmocka_unit_test(test_source_growing),
	};
	return cmocka_run_group_tests_name("format", tests, setup, ft_teardown);
}
