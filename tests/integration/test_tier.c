/*
 * Cold tiering against the sandbox's radosgw (a real S3 server) and cluster: the S3 client,
 * push and restore round trips (sparse and full images), dedup across clones, a corrupted
 * chunk, faults injected by tier_fault_proxy.py, wrong keys and credentials, scrub and GC.
 * Each test works in a bucket of its own, so object counts are exact.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "store/transfer.h"
#include "tier/tier.h"

static const char *endpoint, *access_key, *secret_key, *region;
static char key_path[512], key2_path[512];
static pid_t proxy_pid;
static int proxy_port;

static void write_key(const char *path, unsigned seed)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i < 32; i++)
		fprintf(f, "%02x", (unsigned)((i * 37 + seed * 101) & 0xff));
	fprintf(f, "\n");
	fclose(f);
	chmod(path, 0600);
}

static int setup(void **state)
{
	(void)state;
	endpoint = getenv("S3_ENDPOINT");
	access_key = getenv("S3_ACCESS_KEY");
	secret_key = getenv("S3_SECRET_KEY");
	region = getenv("S3_REGION");
	if (!endpoint || !access_key || !secret_key) {
		fprintf(stderr, "no S3_ENDPOINT: the sandbox runs without --rgw\n");
		return -1;
	}
	itest_setup_a(state);
	snprintf(key_path, sizeof(key_path), "%s/tier.key", itest_dir());
	snprintf(key2_path, sizeof(key2_path), "%s/other.key", itest_dir());
	write_key(key_path, 1);
	write_key(key2_path, 2);
	return 0;
}

static int teardown(void **state)
{
	if (proxy_pid > 0) {
		kill(proxy_pid, SIGTERM);
		waitpid(proxy_pid, NULL, 0);
	}
	return itest_teardown(state);
}

/* A fresh bucket on the sandbox radosgw (through @p via, or directly when NULL). */
static ims_s3 *new_s3(const char *bucket, const char *via, const char *secret, unsigned retries)
{
	ims_s3 *s3 = NULL;
	ims_s3_opts o = IMS_S3_OPTS_INIT;
	o.name = "test";
	o.endpoint = via ? via : endpoint;
	o.region = region;
	o.bucket = bucket;
	o.access_key = access_key;
	o.secret_key = secret ? secret : secret_key;
	o.timeout = 10;
	o.retries = retries;
	o.backoff_ms = 20;
	assert_int_equal(ims_s3_new(&s3, &o), 0);
	return s3;
}

static const char *bucket_name(const char *what)
{
	static char buf[8][64];
	static unsigned n;
	char *b = buf[n++ % 8];
	snprintf(b, 64, "tier-%s-%d-%u", what, (int)getpid(), n);
	return b;
}

static ims_tier_target *new_target(const char *bucket, const char *via, const char *key_file,
				   unsigned retries)
{
	ims_s3 *s3 = new_s3(bucket, via, NULL, retries);
	ims_seal_key k;
	ims_tier_target *t = NULL;
	assert_int_equal(ims_s3_create_bucket(s3), 0);
	assert_int_equal(ims_seal_key_load(&k, key_file), 0);
	assert_int_equal(ims_tier_target_new(&t, s3, &k), 0);
	return t;
}

/* A target of its own bucket for WHAT, with the tests' key and 2 retries. */
static ims_tier_target *target_for(const char *what)
{
	return new_target(bucket_name(what), NULL, key_path, 2);
}

static int count_cb(void *ctx, const char *key, uint64_t size, int64_t mtime)
{
	(void)key;
	(void)size;
	(void)mtime;
	(*(size_t *)ctx)++;
	return 0;
}

static size_t count_objects(ims_tier_target *t, const char *prefix)
{
	size_t n = 0;
	assert_int_equal(ims_s3_list(ims_tier_target_s3(t), prefix, count_cb, &n), 0);
	return n;
}

/* Import a pattern file as pool rbd image @p name. */
static void import_file(const char *name, const char *path)
{
	ims_transfer_opts o = IMS_TRANSFER_OPTS_INIT;
	o.format = IMS_FORMAT_RAW;
	int r = ims_image_import_file(NULL, itest.a, "rbd", name, path, &o);
	if (r < 0)
		fprintf(stderr, "import: %s\n", ims_error_last());
	assert_int_equal(r, 0);
}

static void random_file(const char *path, uint64_t size, unsigned seed)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	uint8_t *buf = malloc(MiB);
	uint64_t x = seed * 7919u + 3;
	for (uint64_t off = 0; off < size; off += MiB) {
		size_t n = size - off < MiB ? (size_t)(size - off) : MiB;
		for (size_t i = 0; i < n; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			buf[i] = (uint8_t)(x >> 56);
		}
		assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	}
	free(buf);
	close(fd);
}

/* A file of SIZE random bytes (seed SEED) at itest_dir()/WHAT.raw, its path in PATH, imported
 * as rbd/NAME. */
static void import_random(const char *name, const char *what, char *path, size_t len, uint64_t size,
			  unsigned seed)
{
	snprintf(path, len, "%s/%s.raw", itest_dir(), what);
	random_file(path, size, seed);
	import_file(name, path);
}

/* Push options that leave the image in the trash, with PROGRESS (may be NULL) called with CTX. */
static ims_tier_opts trash_opts(ims_progress_fn progress, void *ctx)
{
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	o.after = IMS_TIER_TRASH;
	o.progress = progress;
	o.progress_ctx = ctx;
	return o;
}

/* A fresh name with prefix WHAT, imported as import_random() makes it. */
static const char *import_new(const char *what, char *path, size_t len, uint64_t size,
			      unsigned seed)
{
	const char *name = itest_name(what);
	import_random(name, what, path, len, size, seed);
	return name;
}

static void in_trash_or_gone(const char *name)
{
	assert_int_equal(ims_image_exists(itest.a, "rbd", name), 0);
}

/* ------------------------------------------------------------------------------------------ */

static void test_s3_client(void **state)
{
	(void)state;
	ims_s3 *s3 = new_s3(bucket_name("s3"), NULL, NULL, 2);
	uint8_t *data = NULL;
	size_t len = 0;
	uint64_t size = 0;
	int64_t mtime = 0;
	assert_int_equal(ims_s3_create_bucket(s3), 0);
	assert_int_equal(ims_s3_create_bucket(s3), 0); /* twice is fine */
	assert_int_equal(ims_s3_put(s3, "a/one", "hello", 5), 0);
	assert_int_equal(ims_s3_put(s3, "a/odd name@x+y", "x", 1), 0);
	assert_int_equal(ims_s3_get(&data, &len, s3, "a/one", 100), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(data, "hello", 5);
	free(data);
	assert_int_equal(ims_s3_get(&data, &len, s3, "a/one", 4), -EFBIG);
	assert_int_equal(ims_s3_head(&size, &mtime, s3, "a/one"), 0);
	assert_int_equal(size, 5);
	assert_true(mtime > time(NULL) - 3600 && mtime < time(NULL) + 3600);
	assert_int_equal(ims_s3_head(NULL, NULL, s3, "a/none"), -ENOENT);
	assert_int_equal(ims_s3_get(&data, &len, s3, "a/none", 100), -ENOENT);
	assert_int_equal(ims_s3_touch(s3, "a/one"), 0);
	assert_int_equal(ims_s3_get(&data, &len, s3, "a/one", 100), 0);
	assert_memory_equal(data, "hello", 5);
	free(data);
	size_t n = 0;
	assert_int_equal(ims_s3_list(s3, "a/", count_cb, &n), 0);
	assert_int_equal(n, 2);
	/* more than one page */
	for (int i = 0; i < 1005; i++) {
		char k[32];
		snprintf(k, sizeof(k), "p/%04d", i);
		assert_int_equal(ims_s3_put(s3, k, "", 0), 0);
	}
	n = 0;
	assert_int_equal(ims_s3_list(s3, "p/", count_cb, &n), 0);
	assert_int_equal(n, 1005);
	assert_int_equal(ims_s3_delete(s3, "a/one"), 0);
	assert_int_equal(ims_s3_delete(s3, "a/one"), 0);
	assert_int_equal(ims_s3_head(NULL, NULL, s3, "a/one"), -ENOENT);
	ims_s3_free(s3);

	/* wrong credentials: a clear error */
	s3 = new_s3(bucket_name("s3"), NULL, "not-the-secret", 1);
	assert_int_equal(ims_s3_put(s3, "x", "y", 1), -EACCES);
	assert_non_null(strstr(ims_error_last(), "refused"));
	ims_s3_free(s3);
}

static void roundtrip(const char *what, const char *path, uint64_t size)
{
	ims_tier_target *t = target_for(what);
	const char *name = itest_name(what);
	char cold[300];
	ims_tier_result res;
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	ims_catalog_entry *e = NULL;
	rados_ioctx_t io;

	import_file(name, path);
	assert_int_equal(ims_image_tag_set(itest.a, "rbd", name, "os", "debian"), 0);
	int r = ims_tier_push(&res, t, itest.a, "rbd", name, NULL, &o);
	if (r < 0)
		fprintf(stderr, "push: %s\n", ims_error_last());
	assert_int_equal(r, 0);
	snprintf(cold, sizeof(cold), "rbd/%s", name);
	assert_string_equal(res.name, cold);
	assert_int_equal(res.size, size);
	assert_int_equal(res.chunks, count_objects(t, "chunks/"));
	assert_int_equal(count_objects(t, "manifests/"), 1);
	in_trash_or_gone(name);

	/* the catalog keeps a cold entry, which the image list shows */
	assert_int_equal(ims_site_ioctx(&io, itest.a, "rbd"), 0);
	assert_int_equal(ims_catalog_get(&e, io, name), 0);
	assert_non_null(e->cold_target);
	assert_string_equal(e->cold_name, cold);
	ims_catalog_entry_free(e);
	ims_image_list_entry *list = NULL;
	size_t n = 0;
	bool seen = false;
	assert_int_equal(ims_image_list(&list, &n, itest.a, "rbd"), 0);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i].name, name))
			seen = list[i].in_catalog && list[i].entry.cold_target;
	ims_image_list_free(list, n);
	assert_true(seen);

	ims_tier_cold *cl = NULL;
	assert_int_equal(ims_tier_list(&cl, &n, t), 0);
	assert_int_equal(n, 1);
	assert_string_equal(cl[0].name, cold);
	assert_int_equal(cl[0].size, size);
	ims_tier_cold_list_free(cl, n);

	r = ims_tier_restore(&res, t, itest.a, cold, NULL, NULL, &o);
	if (r < 0)
		fprintf(stderr, "restore: %s\n", ims_error_last());
	assert_int_equal(r, 0);
	itest_assert_image_equals_file(itest.a, "rbd", name, NULL, path);
	assert_int_equal(ims_catalog_get(&e, io, name), 0);
	assert_null(e->cold_target);
	assert_string_equal(ims_catalog_tag(e, "os"), "debian");
	ims_catalog_entry_free(e);
	/* again onto an existing name: refused */
	assert_int_equal(ims_tier_restore(&res, t, itest.a, cold, NULL, NULL, &o), -EEXIST);
	/* and under another name */
	char other[300];
	snprintf(other, sizeof(other), "%s-copy", name);
	assert_int_equal(ims_tier_restore(&res, t, itest.a, cold, "rbd", other, &o), 0);
	itest_assert_image_equals_file(itest.a, "rbd", other, NULL, path);
	ims_site_ioctx_close(io);
	ims_tier_target_free(t);
}

/* roundtrip() of itest_dir()/WHAT.raw, SIZE bytes: sparse (itest_fill_pattern) or every byte
 * random, from SEED. */
static void roundtrip_file(const char *what, uint64_t size, bool sparse, unsigned seed)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s.raw", itest_dir(), what);
	if (sparse)
		itest_fill_pattern(path, size, seed);
	else
		random_file(path, size, seed);
	roundtrip(what, path, size);
}

static void test_roundtrip_sparse(void **state)
{
	(void)state;
	roundtrip_file("sparse", 40 * MiB + 12345, true, 3);
}

static void test_roundtrip_full(void **state)
{
	(void)state;
	roundtrip_file("full", 20 * MiB + 4096, false, 5);
}

/*
 * A raw disk whose first bytes are a qcow2 header (a disk that holds a qcow2 file) pushes and
 * restores as the raw disk it is; and restore reads only the data: the 248 MiB of zeros of
 * this 256 MiB image are never fetched, read or scanned.
 */
static void test_restore_raw_as_pushed_and_only_data(void **state)
{
	(void)state;
	ims_tier_target *t = target_for("rawq");
	const char *name = itest_name("rawq");
	const uint64_t size = 256 * MiB, chunk = 4 * MiB, offs[2] = {0, 100 * MiB};
	char path[600], cold[300];
	ims_tier_result res;
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	rados_ioctx_t io;
	rbd_image_t img;

	snprintf(path, sizeof(path), "%s/rawq.raw", itest_dir());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	co.size = size;
	assert_int_equal(ims_image_create(itest.a, "rbd", name, &co), 0);
	assert_int_equal(ims_site_ioctx(&io, itest.a, "rbd"), 0);
	assert_int_equal(rbd_open(io, name, &img, NULL), 0);
	uint8_t *buf = malloc(chunk);
	uint64_t x = 12345;
	for (int k = 0; k < 2; k++) {
		for (size_t i = 0; i < chunk; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			buf[i] = (uint8_t)(x >> 56);
		}
		if (offs[k] == 0) /* qcow2 magic, version 3 */
			memcpy(buf, "QFI\xfb\0\0\0\3", 8);
		assert_int_equal(pwrite(fd, buf, chunk, (off_t)offs[k]), (ssize_t)chunk);
		assert_int_equal(rbd_write(img, offs[k], chunk, (const char *)buf), (ssize_t)chunk);
	}
	free(buf);
	close(fd);
	rbd_close(img);
	ims_site_ioctx_close(io);

	o.after = IMS_TIER_PURGE;
	assert_int_equal(ims_tier_push(&res, t, itest.a, "rbd", name, NULL, &o), 0);
	assert_int_equal(res.chunks, 2);
	snprintf(cold, sizeof(cold), "rbd/%s", name);
	int r = ims_tier_restore(&res, t, itest.a, cold, NULL, NULL, &o);
	if (r < 0)
		fprintf(stderr, "restore: %s\n", ims_error_last());
	assert_int_equal(r, 0);
	assert_int_equal(res.bytes_data, 2 * chunk);
	assert_int_equal(res.bytes_read, 2 * chunk);
	itest_assert_image_equals_file(itest.a, "rbd", name, NULL, path);
	ims_tier_target_free(t);
}

/* Write @p len bytes of @p byte at @p off of rbd/@p name through a handle of its own. */
static int write_image(const char *name, uint64_t off, size_t len, int byte)
{
	rados_ioctx_t io = NULL;
	rbd_image_t img = NULL;
	char *buf = malloc(len);
	assert_non_null(buf);
	memset(buf, byte, len);
	assert_int_equal(ims_site_ioctx(&io, itest.a, "rbd"), 0);
	int r = rbd_open(io, name, &img, NULL);
	if (r == 0) {
		ssize_t n = rbd_write(img, off, len, buf);
		r = n < 0 ? (int)n : 0;
		if (r == 0)
			r = rbd_flush(img);
		rbd_close(img);
	}
	ims_site_ioctx_close(io);
	free(buf);
	return r;
}

/* The same, which must succeed. */
static void scribble(const char *name, uint64_t off, size_t len, int byte)
{
	assert_int_equal(write_image(name, off, len, byte), 0);
}

static void test_dedup_clones(void **state)
{
	(void)state;
	ims_tier_target *t = target_for("dedup");
	const char *golden = itest_name("golden");
	char c1[300], c2[300], path[600];
	ims_tier_result r1, r2, rg;
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	o.after = IMS_TIER_KEEP;

	import_random(golden, "golden", path, sizeof(path), 32 * MiB, 9); /* 8 chunks of data */
	assert_int_equal(ims_snap_create(itest.a, "rbd", golden, "base"), 0);
	snprintf(c1, sizeof(c1), "%s-c1", golden);
	snprintf(c2, sizeof(c2), "%s-c2", golden);
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	assert_int_equal(ims_image_clone(itest.a, "rbd", golden, "base", "rbd", c1, &co), 0);
	assert_int_equal(ims_image_clone(itest.a, "rbd", golden, "base", "rbd", c2, &co), 0);
	scribble(c1, 4 * MiB + 100, 5000, 0x11); /* chunk 1 differs */
	scribble(c2, 20 * MiB + 7, 3, 0x22);	 /* chunk 5 differs */
	scribble(c2, 28 * MiB, 4 * MiB, 0);	 /* chunk 7 zeroed */

	assert_int_equal(ims_tier_push(&rg, t, itest.a, "rbd", golden, "base", &o), 0);
	assert_int_equal(rg.chunks, 8);
	assert_int_equal(rg.chunks_new, 8);
	assert_int_equal(ims_tier_push(&r1, t, itest.a, "rbd", c1, NULL, &o), 0);
	assert_int_equal(r1.chunks, 8);
	assert_int_equal(r1.chunks_new, 1);
	assert_int_equal(ims_tier_push(&r2, t, itest.a, "rbd", c2, NULL, &o), 0);
	assert_int_equal(r2.chunks, 7);
	assert_int_equal(r2.chunks_new, 1);
	assert_int_equal(count_objects(t, "chunks/"), 10);
	assert_int_equal(count_objects(t, "manifests/"), 3);
	/* kept: the clones are still there */
	assert_int_equal(ims_image_exists(itest.a, "rbd", c1), 1);
	ims_tier_target_free(t);
}

/* Flip one byte of one stored chunk. */
static char *corrupt_one_chunk(ims_tier_target *t, const char *cold)
{
	ims_manifest *m = NULL;
	char key[128];
	uint8_t *data = NULL;
	size_t len = 0;
	assert_int_equal(ims_tier_manifest_get(&m, t, cold), 0);
	assert_true(m->nchunks >= 2);
	ims_manifest_chunk_key(key, sizeof(key), m->chunks[1].sha256);
	ims_manifest_free(m);
	ims_s3 *s3 = ims_tier_target_s3(t);
	assert_int_equal(ims_s3_get(&data, &len, s3, key, 1u << 30), 0);
	data[len / 2] ^= 0x40;
	assert_int_equal(ims_s3_put(s3, key, data, len), 0);
	free(data);
	return strdup(key);
}

static void test_corrupt_chunk(void **state)
{
	(void)state;
	ims_tier_target *t = target_for("corrupt");
	const char *name = itest_name("corrupt");
	char path[600], cold[300];
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	ims_tier_result res;
	ims_tier_scrub_result sr;

	import_random(name, "corrupt", path, sizeof(path), 16 * MiB, 11);
	assert_int_equal(ims_tier_push(&res, t, itest.a, "rbd", name, NULL, &o), 0);
	snprintf(cold, sizeof(cold), "rbd/%s", name);

	assert_int_equal(ims_tier_scrub(&sr, t, true, false, &o), 0);
	assert_int_equal(sr.chunks_bad, 0);
	char *bad = corrupt_one_chunk(t, cold);

	ims_error_clear();
	assert_int_equal(ims_tier_restore(&res, t, itest.a, cold, NULL, NULL, &o), -EBADMSG);
	assert_non_null(strstr(ims_error_last(), bad));
	assert_int_equal(ims_image_exists(itest.a, "rbd", name), 0);

	/* a shallow scrub sees it is there; a deep one reads it */
	assert_int_equal(ims_tier_scrub(&sr, t, false, false, &o), 0);
	assert_int_equal(sr.manifests, 1);
	assert_int_equal(sr.chunks, 4);
	assert_int_equal(sr.chunks_bad, 0);
	assert_int_equal(ims_tier_scrub(&sr, t, true, false, &o), 0);
	assert_int_equal(sr.chunks_bad, 1);
	assert_non_null(strstr(sr.report, bad));
	/* a missing chunk is found by the shallow scrub */
	assert_int_equal(ims_s3_delete(ims_tier_target_s3(t), bad), 0);
	assert_int_equal(ims_tier_scrub(&sr, t, false, false, &o), 0);
	assert_int_equal(sr.chunks_bad, 1);
	assert_non_null(strstr(sr.report, "missing"));
	free(bad);
	ims_tier_target_free(t);
}

static void test_wrong_key_and_credentials(void **state)
{
	(void)state;
	const char *bucket = bucket_name("keys");
	ims_tier_target *t = new_target(bucket, NULL, key_path, 2);
	ims_tier_target *t2 = new_target(bucket, NULL, key2_path, 2);
	const char *name = itest_name("keys");
	char path[600], cold[300];
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	ims_tier_result res;

	import_random(name, "keys", path, sizeof(path), 8 * MiB, 13);

	/* wrong credentials: the push fails, the image stays, nothing is stored */
	ims_s3 *bad = new_s3(bucket, NULL, "wrong-secret", 1);
	ims_seal_key k;
	ims_tier_target *tb = NULL;
	assert_int_equal(ims_seal_key_load(&k, key_path), 0);
	assert_int_equal(ims_tier_target_new(&tb, bad, &k), 0);
	assert_int_equal(ims_tier_push(&res, tb, itest.a, "rbd", name, NULL, &o), -EACCES);
	assert_int_equal(ims_image_exists(itest.a, "rbd", name), 1);
	assert_int_equal(count_objects(t, ""), 0);
	ims_tier_target_free(tb);

	assert_int_equal(ims_tier_push(&res, t, itest.a, "rbd", name, NULL, &o), 0);
	snprintf(cold, sizeof(cold), "rbd/%s", name);
	/* wrong key: the manifest does not open, nothing is created */
	ims_error_clear();
	assert_int_equal(ims_tier_restore(&res, t2, itest.a, cold, NULL, NULL, &o), -EBADMSG);
	assert_non_null(strstr(ims_error_last(), "key"));
	assert_int_equal(ims_image_exists(itest.a, "rbd", name), 0);
	assert_int_equal(ims_tier_restore(&res, t, itest.a, cold, NULL, NULL, &o), 0);
	itest_assert_image_equals_file(itest.a, "rbd", name, NULL, path);

	/* a key file others may read is refused */
	chmod(key2_path, 0644);
	assert_int_equal(ims_seal_key_load(&k, key2_path), -EPERM);
	chmod(key2_path, 0600);
	ims_tier_target_free(t);
	ims_tier_target_free(t2);
}

static void start_proxy(void)
{
	char port_file[600];
	snprintf(port_file, sizeof(port_file), "%s/proxy.port", itest_dir());
	unlink(port_file);
	proxy_pid = fork();
	assert_true(proxy_pid >= 0);
	if (proxy_pid == 0) {
		char script[600];
		snprintf(script, sizeof(script), "%s/tests/integration/tier_fault_proxy.py",
			 getenv("IMS_SOURCE_DIR") ? getenv("IMS_SOURCE_DIR") : ".");
		execlp("python3", "python3", script, "--upstream", endpoint, "--port-file",
		       port_file, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100; i++) {
		FILE *f = fopen(port_file, "r");
		if (f) {
			assert_int_equal(fscanf(f, "%d", &proxy_port), 1);
			fclose(f);
			return;
		}
		usleep(100000);
	}
	fail_msg("the fault proxy did not start");
}

static void proxy(const char *what)
{
	assert_int_equal(itest_sh("curl -sf 'http://127.0.0.1:%d/__fault__/%s' >/dev/null",
				  proxy_port, what),
			 0);
}

static void test_faults(void **state)
{
	(void)state;
	char via[64], path[600], cold[300];
	const char *name = itest_name("faults");
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	ims_tier_result res;

	start_proxy();
	snprintf(via, sizeof(via), "http://127.0.0.1:%d", proxy_port);
	import_random(name, "faults", path, sizeof(path), 24 * MiB, 17);
	snprintf(cold, sizeof(cold), "rbd/%s", name);

	ims_tier_target *t = new_target(bucket_name("faults"), via, key_path, 6);
	ims_s3_stats before, after;
	ims_s3_get_stats(&before, ims_tier_target_s3(t));
	o.concurrency = 2;
	/* 500, 503, a dropped connection, a slow answer: retried, and the push completes */
	proxy("plan?actions=500,503,drop,slow:1,ok,503,drop,500");
	int r = ims_tier_push(&res, t, itest.a, "rbd", name, NULL, &o);
	if (r < 0)
		fprintf(stderr, "push: %s\n", ims_error_last());
	assert_int_equal(r, 0);
	ims_s3_get_stats(&after, ims_tier_target_s3(t));
	/* the slow answer is not retried, and curl itself may resend a request whose reused
	 * connection was dropped: at least the 500s and 503s were retried here */
	assert_true(after.retries - before.retries >= 4);
	assert_int_equal(
		itest_sh("curl -sf 'http://127.0.0.1:%d/__fault__/stats' | grep -q 'injected=7'",
			 proxy_port),
		0);
	/* and the restore */
	proxy("plan?actions=drop,503,slow:1,500,ok,drop");
	r = ims_tier_restore(&res, t, itest.a, cold, NULL, NULL, &o);
	if (r < 0)
		fprintf(stderr, "restore: %s\n", ims_error_last());
	assert_int_equal(r, 0);
	itest_assert_image_equals_file(itest.a, "rbd", name, NULL, path);

	/* a push that keeps failing leaves no manifest and the image where it was */
	const char *name2 = itest_name("faults");
	import_file(name2, path);
	ims_tier_target *t2 = new_target(bucket_name("faults"), via, key_path, 2);
	proxy("always?action=503");
	ims_error_clear();
	assert_int_equal(ims_tier_push(&res, t2, itest.a, "rbd", name2, NULL, &o), -EIO);
	assert_non_null(strstr(ims_error_last(), "503"));
	proxy("always?action=");
	assert_int_equal(count_objects(t2, "manifests/"), 0);
	assert_int_equal(ims_image_exists(itest.a, "rbd", name2), 1);
	/* dropped connections forever: the same */
	proxy("always?action=drop");
	assert_int_equal(ims_tier_push(&res, t2, itest.a, "rbd", name2, NULL, &o), -EIO);
	proxy("always?action=");
	assert_int_equal(count_objects(t2, "manifests/"), 0);
	assert_int_equal(ims_image_exists(itest.a, "rbd", name2), 1);
	ims_tier_target_free(t);
	ims_tier_target_free(t2);
}

static void test_gc(void **state)
{
	(void)state;
	ims_tier_target *t = target_for("gc");
	const char *a = itest_name("gc"), *b = itest_name("gc");
	char pa[600], pb[600], cold_a[300];
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	ims_tier_result res;
	ims_tier_scrub_result sr;
	o.after = IMS_TIER_KEEP;

	snprintf(pa, sizeof(pa), "%s/gc-a.raw", itest_dir());
	snprintf(pb, sizeof(pb), "%s/gc-b.raw", itest_dir());
	random_file(pa, 12 * MiB, 21);
	random_file(pb, 8 * MiB, 23);
	import_file(a, pa);
	import_file(b, pb);
	assert_int_equal(ims_tier_push(&res, t, itest.a, "rbd", a, NULL, &o), 0);
	assert_int_equal(ims_tier_push(&res, t, itest.a, "rbd", b, NULL, &o), 0);
	assert_int_equal(count_objects(t, "chunks/"), 5);
	snprintf(cold_a, sizeof(cold_a), "rbd/%s", a);
	assert_int_equal(ims_tier_forget(t, cold_a), 0);

	/* within the grace period nothing goes */
	o.grace = 3600;
	assert_int_equal(ims_tier_scrub(&sr, t, false, true, &o), 0);
	assert_int_equal(sr.garbage, 3);
	assert_int_equal(sr.garbage_young, 3);
	assert_int_equal(sr.deleted, 0);
	assert_int_equal(count_objects(t, "chunks/"), 5);
	/* after it, the unreferenced chunks go, the referenced stay */
	sleep(2);
	o.grace = 1;
	assert_int_equal(ims_tier_scrub(&sr, t, false, true, &o), 0);
	assert_int_equal(sr.deleted, 3);
	assert_int_equal(count_objects(t, "chunks/"), 2);
	assert_int_equal(ims_tier_scrub(&sr, t, true, false, &o), 0);
	assert_int_equal(sr.chunks_bad, 0);
	ims_tier_target_free(t);
}

/* ------------------------------------------------------------------------------------------ */
/* issue 11: nothing lost */

typedef struct {
	const char *image;
	bool done;
	int write_r;
} live_write;

/* Once every chunk was read: another client writes to the image. */
static int write_when_read(void *ctx, uint64_t done, uint64_t total)
{
	live_write *w = ctx;
	if (!w->done && total && done == total) {
		w->done = true;
		w->write_r = write_image(w->image, 4096, 4096, 0xab);
	}
	return 0;
}

static size_t count_snaps(const char *name)
{
	ims_snap_info *snaps = NULL;
	size_t n = 0;
	assert_int_equal(ims_snap_list(&snaps, &n, itest.a, "rbd", name), 0);
	ims_snap_list_free(snaps, n);
	return n;
}

/*
 * A write to an image without the exclusive-lock feature while it is pushed (after its data
 * was read): the push notices it against its snapshot and keeps the image, with the write.
 */
static void test_push_live_write_keeps_image(void **state)
{
	(void)state;
	ims_tier_target *t = target_for("live");
	const char *name = itest_name("live");
	char path[600];
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	co.size = 8 * MiB;
	co.features = 1; /* layering: no exclusive lock to hold */
	assert_int_equal(ims_image_create(itest.a, "rbd", name, &co), 0);
	assert_int_equal(write_image(name, 0, 8 * MiB, 0x5a), 0);

	live_write w = {.image = name};
	ims_tier_opts o = trash_opts(write_when_read, &w);
	ims_tier_result res;
	int r = ims_tier_push(&res, t, itest.a, "rbd", name, NULL, &o);
	assert_true(w.done);
	assert_int_equal(w.write_r, 0);
	assert_int_equal(r, -EBUSY);
	assert_non_null(strstr(ims_error_last(), "written to during the push"));
	/* the image is there, with the write, and no push snapshot is left on it */
	assert_int_equal(ims_image_exists(itest.a, "rbd", name), 1);
	snprintf(path, sizeof(path), "%s/live.raw", itest_dir());
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (uint64_t i = 0; i < 8 * MiB; i++)
		fputc(i >= 4096 && i < 8192 ? 0xab : 0x5a, f);
	fclose(f);
	itest_assert_image_equals_file(itest.a, "rbd", name, NULL, path);
	assert_int_equal(count_snaps(name), 0);
	ims_tier_target_free(t);
}

/*
 * With the exclusive-lock feature, the push holds the lock: the other client's write fails
 * rather than being lost, and the cold image restores exactly what was pushed.
 */
static void test_push_live_write_locked_out(void **state)
{
	(void)state;
	ims_tier_target *t = target_for("lock");
	char path[600], cold[300], back[300];
	const char *name = import_new("lock", path, sizeof(path), 8 * MiB, 31);

	live_write w = {.image = name};
	ims_tier_opts o = trash_opts(write_when_read, &w);
	ims_tier_result res;
	assert_int_equal(ims_tier_push(&res, t, itest.a, "rbd", name, NULL, &o), 0);
	assert_true(w.done);
	assert_true(w.write_r < 0);
	in_trash_or_gone(name);
	snprintf(cold, sizeof(cold), "rbd/%s", name);
	snprintf(back, sizeof(back), "%s-back", name);
	o.progress = NULL;
	assert_int_equal(ims_tier_restore(&res, t, itest.a, cold, "rbd", back, &o), 0);
	itest_assert_image_equals_file(itest.a, "rbd", back, NULL, path);
	assert_int_equal(count_snaps(back), 0);
	ims_tier_target_free(t);
}

typedef struct {
	const char *image;
	ims_site *other; /* another client of the cluster */
	rados_ioctx_t io;
	rbd_image_t img;
	int open_r;
} live_open;

/* Once every chunk was read: another client opens the image, and keeps it open. */
static int open_when_read(void *ctx, uint64_t done, uint64_t total)
{
	live_open *w = ctx;
	if (!w->io && total && done == total) {
		assert_int_equal(ims_site_ioctx(&w->io, w->other, "rbd"), 0);
		w->open_r = rbd_open(w->io, w->image, &w->img, NULL);
	}
	return 0;
}

/* A client that opened the image during the push (it cannot write while the push holds the
 * lock) keeps it in RBD. (A read-only open registers no watch: nobody can see it.) */
static void test_push_live_open_keeps_image(void **state)
{
	(void)state;
	ims_tier_target *t = target_for("open");
	char path[600];
	const char *name = import_new("open", path, sizeof(path), 4 * MiB, 43);
	live_open w = {.image = name, .other = itest_site('A')};
	ims_tier_opts o = trash_opts(open_when_read, &w);
	int r = ims_tier_push(NULL, t, itest.a, "rbd", name, NULL, &o);
	assert_non_null(w.io);
	assert_int_equal(w.open_r, 0);
	assert_int_equal(r, -EBUSY);
	assert_non_null(strstr(ims_error_last(), "opened it during the push"));
	rbd_close(w.img);
	ims_site_ioctx_close(w.io);
	ims_site_close(w.other);
	itest_assert_image_equals_file(itest.a, "rbd", name, NULL, path);
	assert_int_equal(count_snaps(name), 0);
	ims_tier_target_free(t);
}

static int lease_held(void *ctx, const char *pool, const char *image, char *why, size_t len)
{
	(void)pool;
	(void)image;
	snprintf(why, len, "leased by host '%s'", (const char *)ctx);
	return 1;
}

/* An image a host leases is not pushed away; nothing is uploaded. */
static void test_push_honours_leases(void **state)
{
	(void)state;
	ims_tier_target *t = target_for("lease");
	char path[600];
	const char *name = import_new("lease", path, sizeof(path), 4 * MiB, 33);
	ims_tier_opts o = trash_opts(NULL, NULL);
	o.leased = lease_held;
	o.leased_ctx = "hv7";
	assert_int_equal(ims_tier_push(NULL, t, itest.a, "rbd", name, NULL, &o), -EBUSY);
	assert_non_null(strstr(ims_error_last(), "hv7"));
	assert_int_equal(ims_image_exists(itest.a, "rbd", name), 1);
	assert_int_equal(count_objects(t, "chunks/"), 0);
	assert_int_equal(count_objects(t, "manifests/"), 0);
	assert_int_equal(count_snaps(name), 0);
	/* keeping the image, a lease does not matter */
	o.after = IMS_TIER_KEEP;
	assert_int_equal(ims_tier_push(NULL, t, itest.a, "rbd", name, NULL, &o), 0);
	ims_tier_target_free(t);
}

typedef struct {
	char key[128];
	int64_t mtime;
	size_t n;
} one_key;

static int one_key_cb(void *ctx, const char *key, uint64_t size, int64_t mtime)
{
	one_key *k = ctx;
	(void)size;
	snprintf(k->key, sizeof(k->key), "%s", key);
	k->mtime = mtime;
	k->n++;
	return 0;
}

typedef struct {
	ims_tier_target *t;
	const char *chunk;
	uint64_t grace;
	bool ran;
	int gc_r;
	uint64_t deleted;
} gc_in_push;

/* Once the push decided to reuse the chunk: wait until it is older than the grace period,
 * then run a garbage collection. */
static int gc_when_read(void *ctx, uint64_t done, uint64_t total)
{
	gc_in_push *g = ctx;
	if (g->ran || !total || done != total)
		return 0;
	g->ran = true;
	for (;;) {
		int64_t mtime = 0;
		assert_int_equal(ims_s3_head(NULL, &mtime, ims_tier_target_s3(g->t), g->chunk), 0);
		if ((int64_t)time(NULL) - mtime > (int64_t)g->grace)
			break;
		sleep(1);
	}
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	ims_tier_scrub_result sr;
	memset(&sr, 0, sizeof(sr));
	o.grace = g->grace;
	g->gc_r = ims_tier_scrub(&sr, g->t, false, true, &o);
	g->deleted = sr.deleted;
	return 0;
}

/*
 * A garbage collection forced into a push, after the push decided to reuse an unreferenced
 * chunk (young enough not to be refreshed) and before its manifest is stored: the collection
 * must not take that chunk.
 */
static void test_gc_during_push(void **state)
{
	(void)state;
	ims_tier_target *t = target_for("gcpush");
	const char *a = itest_name("gcpush"), *b = itest_name("gcpush");
	char path[600], cold_a[300], cold_b[300], back[300];
	const uint64_t grace = 6;
	import_random(a, "gcpush", path, sizeof(path), 4 * MiB, 35);
	import_file(b, path);
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	o.after = IMS_TIER_KEEP;
	o.grace = grace;
	assert_int_equal(ims_tier_push(NULL, t, itest.a, "rbd", a, NULL, &o), 0);
	snprintf(cold_a, sizeof(cold_a), "rbd/%s", a);
	assert_int_equal(ims_tier_forget(t, cold_a), 0);
	one_key k = {0};
	assert_int_equal(ims_s3_list(ims_tier_target_s3(t), "chunks/", one_key_cb, &k), 0);
	assert_int_equal(k.n, 1);

	/* b has the same bytes: its push reuses the chunk a left unreferenced */
	gc_in_push g = {.t = t, .chunk = k.key, .grace = grace};
	o.progress = gc_when_read;
	o.progress_ctx = &g;
	ims_tier_result res;
	assert_int_equal(ims_tier_push(&res, t, itest.a, "rbd", b, NULL, &o), 0);
	assert_true(g.ran);
	assert_int_equal(res.chunks_new, 0);
	assert_int_equal(g.deleted, 0);
	assert_int_equal(g.gc_r, -EBUSY);
	assert_int_equal(ims_s3_head(NULL, NULL, ims_tier_target_s3(t), k.key), 0);

	/* b's cold image is whole, and a collection now keeps its chunk */
	ims_tier_scrub_result sr;
	o.progress = NULL;
	assert_int_equal(ims_tier_scrub(&sr, t, false, true, &o), 0);
	assert_int_equal(sr.chunks_bad, 0);
	assert_int_equal(sr.deleted, 0);
	snprintf(cold_b, sizeof(cold_b), "rbd/%s", b);
	snprintf(back, sizeof(back), "%s-back", b);
	assert_int_equal(ims_tier_restore(NULL, t, itest.a, cold_b, "rbd", back, &o), 0);
	itest_assert_image_equals_file(itest.a, "rbd", back, NULL, path);
	/* and no lock object is left behind */
	assert_int_equal(count_objects(t, "locks/"), 0);
	ims_tier_target_free(t);
}

typedef struct {
	ims_tier_target *t;
	unsigned waits;
} gc_wait;

/* Called while the push waits for garbage collection: that collection then ends. */
static int end_gc_when_waited(void *ctx, uint64_t done, uint64_t total)
{
	gc_wait *w = ctx;
	(void)done;
	if (total == 0 && ++w->waits == 2)
		assert_int_equal(ims_s3_delete(ims_tier_target_s3(w->t), "locks/gc/test"), 0);
	return 0;
}

/* A push that finds garbage collection running waits until it is done, then pushes. */
static void test_push_waits_for_gc(void **state)
{
	(void)state;
	ims_tier_target *t = target_for("gcwait");
	char path[600];
	const char *name = import_new("gcwait", path, sizeof(path), 4 * MiB, 41);
	assert_int_equal(ims_s3_put(ims_tier_target_s3(t), "locks/gc/test", "{}", 2), 0);
	gc_wait w = {.t = t};
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	o.after = IMS_TIER_KEEP;
	o.progress = end_gc_when_waited;
	o.progress_ctx = &w;
	assert_int_equal(ims_tier_push(NULL, t, itest.a, "rbd", name, NULL, &o), 0);
	assert_int_equal(w.waits, 2);
	assert_int_equal(count_objects(t, "manifests/"), 1);
	assert_int_equal(count_objects(t, "locks/"), 0);
	ims_tier_target_free(t);
}

/*
 * An image with more tags than a manifest may hold: the push refuses before uploading
 * anything and keeps the image (it used to store a manifest restore rejects, and remove it).
 */
static void test_push_manifest_too_many_tags(void **state)
{
	(void)state;
	ims_tier_target *t = target_for("tags");
	const char *name = itest_name("tags");
	char path[600];
	rados_ioctx_t io = NULL;
	ims_catalog_entry *e = NULL;
	import_random(name, "tags", path, sizeof(path), 4 * MiB, 37);
	assert_int_equal(ims_site_ioctx(&io, itest.a, "rbd"), 0);
	assert_int_equal(ims_catalog_get(&e, io, name), 0);
	size_t n = IMS_MANIFEST_TAGS_MAX + 1;
	ims_tag *tags = realloc(e->tags, n * sizeof(*tags));
	assert_non_null(tags);
	e->tags = tags;
	for (size_t i = e->ntags; i < n; i++) {
		char k[32];
		snprintf(k, sizeof(k), "k%zu", i);
		e->tags[i].key = strdup(k);
		e->tags[i].value = strdup("v");
	}
	e->ntags = n;
	assert_int_equal(ims_catalog_put(io, e), 0);
	ims_catalog_entry_free(e);
	ims_site_ioctx_close(io);

	ims_tier_opts o = trash_opts(NULL, NULL);
	int r = ims_tier_push(NULL, t, itest.a, "rbd", name, NULL, &o);
	assert_int_equal(r, -EMSGSIZE);
	assert_non_null(strstr(ims_error_last(), "tags"));
	assert_int_equal(ims_image_exists(itest.a, "rbd", name), 1);
	assert_int_equal(count_objects(t, "manifests/"), 0);
	assert_int_equal(count_objects(t, "chunks/"), 0);
	assert_int_equal(count_snaps(name), 0);
	ims_tier_target_free(t);
}

/*
 * A manifest that does not read back (the proxy corrupts what radosgw answers to its GET):
 * the push deletes it, fails and keeps the image; once it reads back, the same push works.
 */
static void test_push_manifest_read_back(void **state)
{
	(void)state;
	char via[64], cold[300];
	const char *name = itest_name("readback");
	char path[600];
	if (proxy_pid <= 0)
		start_proxy();
	snprintf(via, sizeof(via), "http://127.0.0.1:%d", proxy_port);
	ims_tier_target *t = new_target(bucket_name("readback"), via, key_path, 1);
	import_random(name, "readback", path, sizeof(path), 4 * MiB, 39);
	ims_tier_opts o = trash_opts(NULL, NULL);
	proxy("corrupt?path=manifests");
	int r = ims_tier_push(NULL, t, itest.a, "rbd", name, NULL, &o);
	proxy("corrupt?path=");
	assert_int_equal(r, -EIO);
	assert_non_null(strstr(ims_error_last(), "did not read back"));
	assert_int_equal(ims_image_exists(itest.a, "rbd", name), 1);
	assert_int_equal(count_objects(t, "manifests/"), 0);
	assert_int_equal(count_snaps(name), 0);
	assert_int_equal(ims_tier_push(NULL, t, itest.a, "rbd", name, NULL, &o), 0);
	in_trash_or_gone(name);
	snprintf(cold, sizeof(cold), "rbd/%s", name);
	assert_int_equal(ims_tier_restore(NULL, t, itest.a, cold, NULL, NULL, &o), 0);
	itest_assert_image_equals_file(itest.a, "rbd", name, NULL, path);
	ims_tier_target_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_s3_client),
		cmocka_unit_test(test_roundtrip_sparse),
		cmocka_unit_test(test_roundtrip_full),
		cmocka_unit_test(test_restore_raw_as_pushed_and_only_data),
		cmocka_unit_test(test_dedup_clones),
		cmocka_unit_test(test_corrupt_chunk),
		cmocka_unit_test(test_wrong_key_and_credentials),
		cmocka_unit_test(test_faults),
		cmocka_unit_test(test_gc),
		cmocka_unit_test(test_push_live_write_keeps_image),
		cmocka_unit_test(test_push_live_write_locked_out),
		cmocka_unit_test(test_push_live_open_keeps_image),
		cmocka_unit_test(test_push_honours_leases),
		cmocka_unit_test(test_gc_during_push),
		cmocka_unit_test(test_push_waits_for_gc),
		cmocka_unit_test(test_push_manifest_too_many_tags),
		cmocka_unit_test(test_push_manifest_read_back),
	};
	/* TIER_TESTS=PATTERN runs only the tests it matches (cmocka's filter: '*' wildcards) */
	if (getenv("TIER_TESTS"))
		cmocka_set_test_filter(getenv("TIER_TESTS"));
	return cmocka_run_group_tests_name("tier", tests, setup, teardown);
}
