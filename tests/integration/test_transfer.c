/*
 * Import and export against a sandbox cluster, checked with qemu-img: every supported
 * variant imported and compared byte for byte with `qemu-img convert -O raw` of the same
 * file; exports compared with `qemu-img compare`; failed, cancelled and killed imports leave
 * nothing under the requested name.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <rbd/librbd.h>

#include "common/error.h"
#include "common/hash.h"
#include "itest.h"
#include "store/catalog.h"
#include "store/image.h"
#include "store/store_internal.h"
#include "store/transfer.h"

static char raw_src[512];			      /* the pattern every variant is made from */
static const uint64_t SRC_SIZE = 24 * MiB + 3 * 4096; /* not a multiple of 4 MiB */

static int setup(void **state)
{
	itest_setup_a(state);
	snprintf(raw_src, sizeof(raw_src), "%s/pattern.raw", itest_dir());
	itest_fill_pattern(raw_src, SRC_SIZE, 7);
	return 0;
}

static bool image_exists(const char *name)
{
	return itest_rbd_info(name) == 0;
}

/* The content hash as documented in common/hash.h, computed here from the raw file. */
static void file_content_hash(const char *path, char hex[IMS_SHA256_HEX_LEN])
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	fstat(fd, &st);
	ims_sha256 *all = NULL;
	assert_int_equal(ims_sha256_new(&all), 0);
	char *buf = malloc(IMS_CONTENT_BLOCK);
	for (off_t off = 0; off < st.st_size; off += IMS_CONTENT_BLOCK) {
		size_t n = (size_t)(st.st_size - off < IMS_CONTENT_BLOCK ? st.st_size - off
									 : IMS_CONTENT_BLOCK);
		uint8_t d[IMS_SHA256_LEN];
		assert_int_equal(pread(fd, buf, n, off), (ssize_t)n);
		ims_sha256_buf(d, buf, n);
		ims_sha256_update(all, d, sizeof(d));
	}
	uint8_t d[IMS_SHA256_LEN];
	ims_sha256_final(d, all);
	ims_sha256_hex(hex, d);
	ims_sha256_free(all);
	free(buf);
	close(fd);
}

static void remove_image(const char *name)
{
	ims_image_remove_opts ro = IMS_IMAGE_REMOVE_OPTS_INIT;
	ro.purge = true;
	assert_int_equal(ims_image_remove(itest.a, "rbd", name, &ro), 0);
}

/* The commands that make each variant are formats with the file names as arguments. */
#pragma GCC diagnostic ignored "-Wformat-nonliteral"

/* Make FILE from the pattern with qemu-img, import it, compare with qemu-img's raw view. */
static void import_variant2(const char *label, const char *make_cmd, const char *post_cmd,
			    ims_format_kind expect)
{
	char file[512], raw[512];
	snprintf(file, sizeof(file), "%s/%s.img", itest_dir(), label);
	snprintf(raw, sizeof(raw), "%s/%s.back.raw", itest_dir(), label);
	if (itest_sh(make_cmd, raw_src, file) != 0)
		fail_msg("could not make the %s test image with: %s", label, make_cmd);
	if (post_cmd && itest_sh(post_cmd, file) != 0)
		fail_msg("could not change the %s test image with: %s", label, post_cmd);
	/* -f: QEMU's probe takes a fixed VHD for raw */
	assert_int_equal(itest_sh("qemu-img convert -f %s -O raw '%s' '%s'",
				  ims_format_name(expect), file, raw),
			 0);
	struct stat st;
	assert_int_equal(stat(raw, &st), 0);

	const char *name = itest_name(label);
	ims_transfer_opts o = IMS_TRANSFER_OPTS_INIT;
	ims_transfer_result res;
	if (ims_image_import_file(&res, itest.a, "rbd", name, file, &o) != 0)
		fail_msg("import of %s failed: %s", label, ims_error_last());
	assert_int_equal(res.format, expect);
	/* the size qemu sees (a VHD's CHS geometry may round it up) */
	assert_int_equal(res.virtual_size, (uint64_t)st.st_size);
	assert_true(res.virtual_size >= SRC_SIZE && res.virtual_size < SRC_SIZE + (1u << 20));
	assert_true(res.bytes_zero > 0); /* the holes were not written */
	itest_assert_image_equals_file(itest.a, "rbd", name, NULL, raw);

	char hex[IMS_SHA256_HEX_LEN];
	file_content_hash(raw, hex);
	assert_string_equal(res.content_sha256, hex);
	ims_image_info *info = NULL;
	assert_int_equal(ims_image_info_get(&info, itest.a, "rbd", name), 0);
	assert_string_equal(info->catalog->content_sha256, hex);
	assert_string_equal(info->catalog->source, ims_format_name(expect));
	assert_true(info->used_bytes < SRC_SIZE); /* sparse in RBD too */
	ims_image_info_free(info);
	remove_image(name);
}

static void import_variant(const char *label, const char *make_cmd, ims_format_kind expect)
{
	import_variant2(label, make_cmd, NULL, expect);
}

static void test_import_raw(void **state)
{
	(void)state;
	import_variant("raw", "cp --sparse=always '%s' '%s'", IMS_FORMAT_RAW);
}

static void test_import_qcow2_variants(void **state)
{
	(void)state;
	import_variant("qcow2-v3", "qemu-img convert -O qcow2 -o compat=1.1 '%s' '%s'",
		       IMS_FORMAT_QCOW2);
	import_variant("qcow2-v2", "qemu-img convert -O qcow2 -o compat=0.10 '%s' '%s'",
		       IMS_FORMAT_QCOW2);
	import_variant("qcow2-512", "qemu-img convert -O qcow2 -o cluster_size=512 '%s' '%s'",
		       IMS_FORMAT_QCOW2);
	import_variant("qcow2-2m", "qemu-img convert -O qcow2 -o cluster_size=2M '%s' '%s'",
		       IMS_FORMAT_QCOW2);
	import_variant("qcow2-deflate", "qemu-img convert -c -O qcow2 '%s' '%s'", IMS_FORMAT_QCOW2);
	import_variant("qcow2-zstd",
		       "qemu-img convert -c -O qcow2 -o compression_type=zstd '%s' '%s'",
		       IMS_FORMAT_QCOW2);
	import_variant("qcow2-l2ext",
		       "qemu-img convert -O qcow2 -o extended_l2=on,cluster_size=128k '%s' '%s'",
		       IMS_FORMAT_QCOW2);
	/* zero clusters (v3 zero flag) over data, made with qemu-io */
	import_variant2("qcow2-zeroed", "qemu-img convert -O qcow2 '%s' '%s'",
			"qemu-io -f qcow2 -c 'write -z 0 2M' -c 'write -z 6M 64k' '%s' >/dev/null",
			IMS_FORMAT_QCOW2);
}

static void test_import_vmdk_variants(void **state)
{
	(void)state;
	import_variant("vmdk-sparse",
		       "qemu-img convert -O vmdk -o subformat=monolithicSparse '%s' '%s'",
		       IMS_FORMAT_VMDK);
	import_variant("vmdk-stream",
		       "qemu-img convert -O vmdk -o subformat=streamOptimized '%s' '%s'",
		       IMS_FORMAT_VMDK);
}

/* Every variant qemu-img makes of the formats imgstore reads besides qcow2 and vmdk. */
static void test_import_vdi_vhdx_vpc_variants(void **state)
{
	(void)state;
	static const struct {
		const char *label, *fmt, *opts;
		ims_format_kind kind;
	} v[] = {
		{"vdi-dynamic", "vdi", "static=off", IMS_FORMAT_VDI},
		{"vdi-static", "vdi", "static=on", IMS_FORMAT_VDI},
		{"vhdx-dynamic", "vhdx", "subformat=dynamic", IMS_FORMAT_VHDX},
		{"vhdx-fixed", "vhdx", "subformat=fixed", IMS_FORMAT_VHDX},
		{"vhdx-1m", "vhdx", "subformat=dynamic,block_size=1M", IMS_FORMAT_VHDX},
		{"vhdx-256m", "vhdx", "subformat=dynamic,block_size=256M", IMS_FORMAT_VHDX},
		{"vpc-dynamic", "vpc", "subformat=dynamic", IMS_FORMAT_VPC},
		{"vpc-fixed", "vpc", "subformat=fixed", IMS_FORMAT_VPC},
		{"vpc-dynamic-exact", "vpc", "subformat=dynamic,force_size=on", IMS_FORMAT_VPC},
		{"vpc-fixed-exact", "vpc", "subformat=fixed,force_size=on", IMS_FORMAT_VPC},
	};
	char cmd[256];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		snprintf(cmd, sizeof(cmd), "qemu-img convert -O %s -o %s '%%s' '%%s'", v[i].fmt,
			 v[i].opts);
		import_variant(v[i].label, cmd, v[i].kind);
	}
}

static void test_import_refusals(void **state)
{
	(void)state;
	char q[512], bad[512], overlay[512];
	snprintf(q, sizeof(q), "%s/refuse.qcow2", itest_dir());
	snprintf(bad, sizeof(bad), "%s/truncated.qcow2", itest_dir());
	snprintf(overlay, sizeof(overlay), "%s/overlay.qcow2", itest_dir());
	assert_int_equal(itest_sh("qemu-img convert -O qcow2 '%s' '%s'", raw_src, q), 0);
	const char *name = itest_name("refused");
	ims_transfer_opts o = IMS_TRANSFER_OPTS_INIT;

	/* the declared format disagrees with the bytes */
	o.format = IMS_FORMAT_VMDK;
	assert_int_equal(ims_image_import_file(NULL, itest.a, "rbd", name, q, &o), -EINVAL);
	assert_non_null(strstr(ims_error_last(), "qcow2"));
	assert_non_null(strstr(ims_error_last(), "vmdk"));
	o.format = IMS_FORMAT_AUTO;

	/* a backing file */
	assert_int_equal(itest_sh("qemu-img create -q -f qcow2 -F qcow2 -b '%s' '%s'", q, overlay),
			 0);
	assert_int_equal(ims_image_import_file(NULL, itest.a, "rbd", name, overlay, &o), -ENOTSUP);
	assert_non_null(strstr(ims_error_last(), "backing"));

	/* cut in the middle of its data: the import fails on the way and leaves nothing */
	assert_int_equal(itest_sh("head -c 3000000 '%s' > '%s'", q, bad), 0);
	int r = ims_image_import_file(NULL, itest.a, "rbd", name, bad, &o);
	assert_true(r == -EINVAL || r == -EIO);
	assert_false(image_exists(name));
	assert_int_equal(itest_tmp_images_for(name), 0);

	/* a path checked resolved, then swapped for a symbolic link: refused with no_follow */
	char link[600];
	snprintf(link, sizeof(link), "%s/swapped.qcow2", itest_dir());
	assert_int_equal(symlink(q, link), 0);
	o.no_follow = true;
	assert_int_equal(ims_image_import_file(NULL, itest.a, "rbd", name, link, &o), -ELOOP);
	assert_non_null(strstr(ims_error_last(), "symbolic link"));
	assert_false(image_exists(name));
	o.no_follow = false;

	/* a missing file, a taken name */
	assert_int_equal(ims_image_import_file(NULL, itest.a, "rbd", name, "/nonexistent.img", &o),
			 -ENOENT);
	assert_int_equal(ims_image_import_file(NULL, itest.a, "rbd", name, q, &o), 0);
	assert_int_equal(ims_image_import_file(NULL, itest.a, "rbd", name, q, &o), -EEXIST);
	remove_image(name);
}

/* A QED or Parallels image holding a disk is refused with a message naming its format, never
 * imported as its raw container bytes; nothing is created. A VDI, VHDX or VHD declared raw is
 * refused too. */
static void test_import_unreadable_formats(void **state)
{
	(void)state;
	static const char *const fmts[] = {"qed", "parallels"};
	static const char *const readable[] = {"vdi", "vhdx", "vpc"};
	const char *name = itest_name("container");
	ims_transfer_opts o = IMS_TRANSFER_OPTS_INIT;
	char file[512], expect[64];

	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		snprintf(file, sizeof(file), "%s/disk.%s", itest_dir(), fmts[i]);
		assert_int_equal(
			itest_sh("qemu-img convert -O %s '%s' '%s'", fmts[i], raw_src, file), 0);
		snprintf(expect, sizeof(expect), "the image is in format '%s' (", fmts[i]);
		o.format = IMS_FORMAT_AUTO;
		assert_int_equal(ims_image_import_file(NULL, itest.a, "rbd", name, file, &o),
				 -ENOTSUP);
		assert_non_null(strstr(ims_error_last(), expect));
		o.format = IMS_FORMAT_RAW;
		assert_int_equal(ims_image_import_file(NULL, itest.a, "rbd", name, file, &o),
				 -ENOTSUP);
		assert_non_null(strstr(ims_error_last(), expect));
		assert_false(image_exists(name));
	}
	for (size_t i = 0; i < sizeof(readable) / sizeof(readable[0]); i++) {
		snprintf(file, sizeof(file), "%s/disk.%s", itest_dir(), readable[i]);
		assert_int_equal(
			itest_sh("qemu-img convert -O %s '%s' '%s'", readable[i], raw_src, file),
			0);
		snprintf(expect, sizeof(expect), "declared as raw but its bytes are %s",
			 readable[i]);
		o.format = IMS_FORMAT_RAW;
		assert_int_equal(ims_image_import_file(NULL, itest.a, "rbd", name, file, &o),
				 -EINVAL);
		assert_non_null(strstr(ims_error_last(), expect));
		assert_false(image_exists(name));
	}
}

static int cancel_after(void *ctx, uint64_t done, uint64_t total)
{
	int *calls = ctx;
	(void)done;
	(void)total;
	return ++*calls >= 3;
}

static void test_import_cancelled(void **state)
{
	(void)state;
	const char *name = itest_name("cancelled");
	int calls = 0;
	ims_transfer_opts o = IMS_TRANSFER_OPTS_INIT;
	o.progress = cancel_after;
	o.progress_ctx = &calls;
	assert_int_equal(ims_image_import_file(NULL, itest.a, "rbd", name, raw_src, &o),
			 -ECANCELED);
	assert_false(image_exists(name));
	assert_int_equal(itest_tmp_images_for(name), 0);
}

/* The temporary image of a running import into rbd/@p name (by its import.target metadata). */
static void tmp_of(const char *name, char *out, size_t len)
{
	const char *conf = getenv("CEPH_CONF_A");
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "for t in $(rbd -c '%s' ls rbd | grep '^\\.imgstore-tmp-'); do "
		 "[ \"$(rbd -c '%s' image-meta get rbd/$t imgstore.import.target 2>/dev/null)\" = "
		 "'rbd/%s' ] && echo $t; "
		 "done",
		 conf, conf, name);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(out, (int)len, f));
	pclose(f);
	out[strcspn(out, "\n")] = '\0';
	assert_int_equal(strncmp(out, IMS_TMP_IMAGE_PREFIX, strlen(IMS_TMP_IMAGE_PREFIX)), 0);
}

static int signal_and_sleep(void *ctx, uint64_t done, uint64_t total)
{
	int *fd = ctx;
	if (done > 0 && *fd >= 0) {
		char c = 'x';
		if (write(*fd, &c, 1) < 0)
			return 1;
		close(*fd);
		*fd = -1;
	}
	(void)total;
	return 0;
}

/* A process killed with SIGKILL in the middle of an import: no image under the name; its
 * temporary image is left alone while the dead importer's watch lives, then removed by the
 * cleanup. The sandbox's imgstored of site a runs the same cleanup every 30 s, so either this
 * test's call or the daemon's may be the one that removes it: what is asserted is that it goes,
 * and that no image appears under the name. */
static void test_import_killed(void **state)
{
	(void)state;
	char big[512];
	snprintf(big, sizeof(big), "%s/big.raw", itest_dir());
	assert_int_equal(itest_sh("head -c %d /dev/urandom > '%s'", 160 << 20, big), 0);
	const char *name = itest_name("killed");
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		ims_site *s = itest_site('A');
		ims_transfer_opts o = IMS_TRANSFER_OPTS_INIT;
		o.progress = signal_and_sleep;
		o.progress_ctx = &pfd[1];
		o.concurrency = 1;
		o.inflight_bytes = 8 * MiB;
		ims_image_import_file(NULL, s, "rbd", name, big, &o);
		_exit(0);
	}
	close(pfd[1]);
	char c;
	assert_int_equal(read(pfd[0], &c, 1), 1); /* the import has started writing */
	close(pfd[0]);
	kill(pid, SIGKILL);
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFSIGNALED(st));

	assert_false(image_exists(name));
	char tmp[128];
	tmp_of(name, tmp, sizeof(tmp));
	/* right after the kill the importer's watch still lives: the cleanup leaves it alone */
	unsigned removed = 0;
	assert_int_equal(ims_store_cleanup_tmp(&removed, itest.a, "rbd"), 0);
	assert_true(image_exists(tmp));
	/* then it goes (the dead client's watch lapses after 10 s in the sandbox) */
	time_t t0 = time(NULL);
	while (image_exists(tmp) && time(NULL) - t0 < 90) {
		assert_int_equal(ims_store_cleanup_tmp(&removed, itest.a, "rbd"), 0);
		if (!image_exists(tmp))
			break;
		sleep(2);
	}
	if (image_exists(tmp))
		itest_sh("rbd -c \"$CEPH_CONF_A\" status rbd/%s >&2; "
			 "rados -c \"$CEPH_CONF_A\" -p rbd listwatchers imgstore.tmp-owner.%s >&2",
			 tmp, tmp + strlen(IMS_TMP_IMAGE_PREFIX));
	assert_false(image_exists(tmp));
	assert_false(image_exists(name));
}

static void test_export(void **state)
{
	(void)state;
	const char *name = itest_name("export");
	char raw[512], qcow[512], snapraw[512];
	snprintf(raw, sizeof(raw), "%s/export.raw", itest_dir());
	snprintf(qcow, sizeof(qcow), "%s/export.qcow2", itest_dir());
	snprintf(snapraw, sizeof(snapraw), "%s/export-snap.raw", itest_dir());
	ims_transfer_opts o = IMS_TRANSFER_OPTS_INIT;
	ims_transfer_result res;

	assert_int_equal(ims_image_import_file(NULL, itest.a, "rbd", name, raw_src, &o), 0);
	assert_int_equal(ims_snap_create(itest.a, "rbd", name, "s1"), 0);
	/* change the head after the snapshot */
	assert_int_equal(itest_sh("rbd -c '%s' bench --io-type write --io-size 4096 --io-total 64K "
				  "--io-pattern rand rbd/%s >/dev/null",
				  getenv("CEPH_CONF_A"), name),
			 0);

	o.format = IMS_FORMAT_RAW;
	assert_int_equal(ims_image_export_file(&res, itest.a, "rbd", name, "s1", snapraw, &o), 0);
	assert_int_equal(itest_sh("cmp -s '%s' '%s'", snapraw, raw_src), 0);
	struct stat st;
	assert_int_equal(stat(snapraw, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < SRC_SIZE); /* sparse */
	assert_int_equal(ims_image_export_file(NULL, itest.a, "rbd", name, "s1", snapraw, &o),
			 -EEXIST);

	o.format = IMS_FORMAT_QCOW2;
	assert_int_equal(ims_image_export_file(&res, itest.a, "rbd", name, "s1", qcow, &o), 0);
	assert_int_equal(itest_sh("qemu-img check -q '%s'", qcow), 0);
	assert_int_equal(itest_sh("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", qcow, raw_src),
			 0);

	/* vmdk: streamOptimized, and qemu-img converts it back to the very bytes */
	char vmdk[600], back[600];
	snprintf(vmdk, sizeof(vmdk), "%s/export.vmdk", itest_dir());
	snprintf(back, sizeof(back), "%s/export.vmdk.raw", itest_dir());
	o.format = IMS_FORMAT_VMDK;
	assert_int_equal(ims_image_export_file(&res, itest.a, "rbd", name, "s1", vmdk, &o), 0);
	assert_int_equal(res.format, IMS_FORMAT_VMDK);
	assert_int_equal(itest_sh("qemu-img check -q -f vmdk '%s'", vmdk), 0);
	assert_int_equal(
		itest_sh("qemu-img info -f vmdk '%s' | grep -q 'create type: streamOptimized'",
			 vmdk),
		0);
	assert_int_equal(itest_sh("qemu-img convert -f vmdk -O raw '%s' '%s'", vmdk, back), 0);
	assert_int_equal(itest_sh("cmp '%s' '%s'", back, raw_src), 0);

	/* the head differs from the snapshot */
	o.format = IMS_FORMAT_RAW;
	assert_int_equal(ims_image_export_file(&res, itest.a, "rbd", name, NULL, raw, &o), 0);
	assert_int_not_equal(itest_sh("cmp -s '%s' '%s'", raw, raw_src), 0);
	itest_assert_image_equals_file(itest.a, "rbd", name, NULL, raw);

	o.format = IMS_FORMAT_VDI;
	assert_int_equal(ims_image_export_file(&res, itest.a, "rbd", name, NULL, "/tmp/x.vdi", &o),
			 -EINVAL);
	assert_non_null(strstr(ims_error_last(), "export writes raw, qcow2 or vmdk, not vdi"));
	o.format = IMS_FORMAT_RAW;
	assert_int_equal(
		ims_image_export_file(&res, itest.a, "rbd", name, "nosnap", "/tmp/nosnap.raw", &o),
		-ENOENT);
	assert_int_equal(access("/tmp/nosnap.raw.partial", F_OK), -1);
	remove_image(name);
}

/* An import held in its progress callback until the test lets it go. */
typedef struct {
	const char *name;
	const char *path;
	int started[2]; /* the import writes a byte here once it has written data */
	int go[2];	/* ... and waits for one here */
	int result;
} held_import;

static int hold(void *ctx, uint64_t done, uint64_t total)
{
	held_import *h = ctx;
	char c = 'x';
	(void)total;
	if (done > 0 && h->started[1] >= 0) {
		if (write(h->started[1], &c, 1) != 1 || read(h->go[0], &c, 1) != 1)
			return 1;
		close(h->started[1]);
		h->started[1] = -1;
	}
	return 0;
}

static void *run_held_import(void *arg)
{
	held_import *h = arg;
	ims_transfer_opts o = IMS_TRANSFER_OPTS_INIT;
	o.progress = hold;
	o.progress_ctx = h;
	o.concurrency = 1;
	o.inflight_bytes = 8 * MiB;
	h->result = ims_image_import_file(NULL, itest.a, "rbd", h->name, h->path, &o);
	return NULL;
}

/* The cleanup never removes a temporary that a running operation owns: an import of this
 * very process (same cluster connection as the cleanup), and one of another daemon at the
 * moments it does not have the image open (between create and open, close and rename). */
static void test_cleanup_spares_owned_tmp(void **state)
{
	(void)state;
	held_import h = {.name = itest_name("held"), .path = raw_src};
	pthread_t t;
	char c;
	unsigned removed = 99;

	assert_int_equal(pipe(h.started), 0);
	assert_int_equal(pipe(h.go), 0);
	assert_int_equal(pthread_create(&t, NULL, run_held_import, &h), 0);
	assert_int_equal(read(h.started[0], &c, 1), 1);
	char held_tmp[128];
	tmp_of(h.name, held_tmp, sizeof(held_tmp));
	assert_int_equal(ims_store_cleanup_tmp(&removed, itest.a, NULL), 0);
	assert_true(image_exists(held_tmp));
	assert_int_equal(write(h.go[1], "x", 1), 1);
	pthread_join(t, NULL);
	assert_int_equal(h.result, 0);
	assert_true(image_exists(h.name));
	assert_false(image_exists(held_tmp));
	remove_image(h.name);
	close(h.started[0]);
	close(h.go[0]);
	close(h.go[1]);

	/* another daemon's temporary, created but not open: its owner record keeps it */
	ims_site *other = itest_site('A');
	rados_ioctx_t io;
	ims_store__tmp_owner owner;
	char tmp[64];
	snprintf(tmp, sizeof(tmp), IMS_TMP_IMAGE_PREFIX "owned%d", (int)getpid());
	assert_int_equal(ims_site_ioctx(&io, other, "rbd"), 0);
	assert_int_equal(ims_store__tmp_own(&owner, io, tmp, "rbd/owned"), 0);
	int order = 22;
	assert_int_equal(rbd_create(io, tmp, 4 * MiB, &order), 0);
	assert_int_equal(ims_store_cleanup_tmp(&removed, itest.a, NULL), 0);
	assert_int_equal(ims_store_cleanup_tmp(&removed, itest.a, "rbd"), 0);
	assert_true(image_exists(tmp));
	/* the owner is gone (as when its process dies and the watch lapses): it is removed */
	ims_store__tmp_disown(&owner);
	assert_int_equal(ims_store_cleanup_tmp(&removed, itest.a, NULL), 0);
	assert_false(image_exists(tmp));
	ims_site_ioctx_close(io);
	ims_site_close(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_import_raw),
		cmocka_unit_test(test_import_qcow2_variants),
		cmocka_unit_test(test_import_vmdk_variants),
		cmocka_unit_test(test_import_vdi_vhdx_vpc_variants),
		cmocka_unit_test(test_import_refusals),
		cmocka_unit_test(test_import_unreadable_formats),
		cmocka_unit_test(test_import_cancelled),
		/* before test_import_killed: a connection made after its fork may get the address
		 * of the killed child (same random state), which the cleanup blocklists */
		cmocka_unit_test(test_cleanup_spares_owned_tmp),
		cmocka_unit_test(test_import_killed),
		cmocka_unit_test(test_export),
	};
	return cmocka_run_group_tests_name("transfer", tests, setup, itest_teardown);
}
