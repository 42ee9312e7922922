/*
 * replicator/ between the two sandbox sites: initial and incremental cycles (under a
 * concurrent writer), zeroed extents, resizes, retention, a cut cycle that resumes from its
 * checkpoint, and refusals. After every cycle the secondary's sealed snapshot must equal the
 * primary's snapshot of the same name, byte for byte.
 */
#include <errno.h>
#include <pthread.h>
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
#include <rbd/librbd.h>

#include "common/error.h"
#include "itest.h"
#include "replicator/failover.h"
#include "replicator/replicator.h"
#include "store/image.h"

/* Write @p n blocks of @p len random bytes at random offsets below @p limit. */
static void write_random(const char *name, unsigned n, size_t len, uint64_t limit, unsigned seed)
{
	itest_image im;
	char *buf = malloc(len);
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
	itest_image_open(&im, itest.a, "rbd", name, NULL, false);
	for (unsigned i = 0; i < n; i++) {
		for (size_t k = 0; k < len; k++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			buf[k] = (char)(x >> 56);
		}
		uint64_t off = ((x >> 33) % (limit / len)) * len;
		assert_int_equal(rbd_write(im.img, off, len, buf), (ssize_t)len);
	}
	itest_image_close(&im);
	free(buf);
}

static void fill_range(const char *name, uint64_t off, uint64_t len)
{
	char *buf = malloc(len);
	memset(buf, 0x5a, len);
	itest_image_write(itest.a, "rbd", name, off, buf, len);
	free(buf);
}

static void zero_range(const char *name, uint64_t off, uint64_t len)
{
	itest_image im;
	itest_image_open(&im, itest.a, "rbd", name, NULL, false);
	assert_true(rbd_write_zeroes(im.img, off, len, 0, 0) >= 0);
	itest_image_close(&im);
}

/* The sealed snapshot on B equals the primary's snapshot of the same name. */
static void assert_sealed_equal(const char *name, const char *snap)
{
	itest_image pa;
	rados_ioctx_t ib;
	rbd_image_t pb;
	itest_image_open(&pa, itest.a, "rbd", name, snap, true);
	assert_int_equal(ims_site_ioctx(&ib, itest.b, "rbd"), 0);
	if (rbd_open_read_only(ib, name, &pb, snap) != 0)
		fail_msg("site b has no snapshot %s@%s", name, snap);
	uint64_t at = itest_image_first_difference(pa.img, pb);
	if (at != UINT64_MAX)
		fail_msg("%s@%s differs between the sites at byte %llu", name, snap,
			 (unsigned long long)at);
	itest_image_close(&pa);
	rbd_close(pb);
	ims_site_ioctx_close(ib);
}

static int count_repl_snaps(ims_site *s, const char *name)
{
	ims_snap_info *snaps = NULL;
	size_t n = 0;
	int k = 0;
	assert_int_equal(ims_snap_list(&snaps, &n, s, "rbd", name), 0);
	for (size_t i = 0; i < n; i++)
		k += strncmp(snaps[i].name, IMS_REPL_SNAP_PREFIX, strlen(IMS_REPL_SNAP_PREFIX)) ==
		     0;
	ims_snap_list_free(snaps, n);
	return k;
}

static void sync_ok(const char *name, ims_repl_result *res)
{
	ims_repl_opts o = IMS_REPL_OPTS_INIT;
	if (ims_repl_sync(res, itest.a, itest.b, "rbd", name, &o) < 0)
		fail_msg("sync %s: %s", name, ims_error_last());
	assert_sealed_equal(name, res->sealed);
}

/* rbd/NAME of SIZE on site a, synced once (RES), then N random writes of 1 MiB (SEED): a delta
 * for the next cycle. */
static void synced_then_delta(const char *name, uint64_t size, unsigned n, unsigned seed,
			      ims_repl_result *res)
{
	itest_create(name, size);
	sync_ok(name, res);
	write_random(name, n, 1 * MiB, size, seed);
}

static void test_initial_and_incremental(void **state)
{
	(void)state;
	const char *name = itest_name("repl");
	ims_repl_result res, prev;
	itest_create(name, 64 * MiB);
	write_random(name, 64, 64 * KiB, 64 * MiB, 1);
	fill_range(name, 8 * MiB, 8 * MiB);

	sync_ok(name, &res);
	assert_true(res.full);
	assert_string_equal(res.base, "");
	assert_true(res.bytes_copied >= 8 * MiB && res.bytes_copied <= 64 * 64 * KiB + 8 * MiB);
	char sealed[64];
	int64_t ms = 0;
	assert_int_equal(ims_repl_last_sealed(sealed, sizeof(sealed), &ms, itest.b, "rbd", name),
			 0);
	assert_string_equal(sealed, res.sealed);
	assert_true(ms > 0);

	for (unsigned cycle = 0; cycle < 4; cycle++) {
		prev = res;
		write_random(name, 16, 64 * KiB, 64 * MiB, 10 + cycle);
		if (cycle == 2)
			zero_range(name, 8 * MiB, 8 * MiB); /* becomes zeroes on b, not data */
		sync_ok(name, &res);
		assert_false(res.full);
		assert_string_equal(res.base, prev.sealed);
		/* cost follows change: at most what was written */
		assert_true(res.bytes_copied <= 16 * 64 * KiB);
		if (cycle == 2) /* zeros on b, never data on the wire */
			assert_true(res.bytes_discarded >= 8 * MiB);
	}
	/* nothing written: no new snapshot, the target is current as of the check */
	prev = res;
	sync_ok(name, &res);
	assert_true(res.unchanged);
	assert_int_equal(res.bytes_copied, 0);
	assert_string_equal(res.sealed, prev.sealed);
	assert_true(res.sealed_unix_ms > prev.sealed_unix_ms);

	/* retention: 3 on each side, the newest being the one just sealed */
	assert_int_equal(count_repl_snaps(itest.a, name), 3);
	assert_int_equal(count_repl_snaps(itest.b, name), 3);
}

typedef struct {
	const char *name;
	volatile bool stop;
	unsigned writes;
} writer_ctx;

static void *writer(void *arg)
{
	writer_ctx *w = arg;
	rados_ioctx_t io;
	rbd_image_t img;
	char buf[4096];
	uint64_t x = 42;
	if (ims_site_ioctx(&io, itest.a, "rbd") < 0)
		return NULL;
	if (rbd_open(io, w->name, &img, NULL) < 0) {
		ims_site_ioctx_close(io);
		return NULL;
	}
	while (!w->stop) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		memset(buf, (int)(x >> 56), sizeof(buf));
		snprintf(buf, sizeof(buf), "write %u", w->writes);
		if (rbd_write(img, ((x >> 20) % (32 * MiB / 4096)) * 4096, sizeof(buf), buf) < 0)
			break;
		w->writes++;
	}
	rbd_close(img);
	ims_site_ioctx_close(io);
	return NULL;
}

static void test_under_a_concurrent_writer(void **state)
{
	(void)state;
	const char *name = itest_name("repl-busy");
	itest_create(name, 32 * MiB);
	writer_ctx w = {.name = name};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, writer, &w), 0);
	ims_repl_result res;
	for (int i = 0; i < 6; i++)
		sync_ok(name, &res); /* asserts equality of each sealed snapshot */
	w.stop = true;
	pthread_join(t, NULL);
	assert_true(w.writes > 100);
}

static void test_resize(void **state)
{
	(void)state;
	const char *name = itest_name("repl-size");
	ims_repl_result res;
	itest_create(name, 16 * MiB);
	write_random(name, 8, 64 * KiB, 16 * MiB, 3);
	sync_ok(name, &res);
	assert_int_equal(ims_image_resize(itest.a, "rbd", name, 40 * MiB, false), 0);
	write_random(name, 8, 64 * KiB, 40 * MiB, 4);
	sync_ok(name, &res);
	assert_int_equal(res.size, 40 * MiB);
	assert_int_equal(ims_image_resize(itest.a, "rbd", name, 24 * MiB, true), 0);
	sync_ok(name, &res);
	assert_int_equal(res.size, 24 * MiB);
	/* a snapshot of the user's own, made and removed between cycles, changes nothing */
	assert_int_equal(ims_snap_create(itest.a, "rbd", name, "mine"), 0);
	write_random(name, 4, 64 * KiB, 24 * MiB, 5);
	assert_int_equal(ims_snap_remove(itest.a, "rbd", name, "mine"), 0);
	sync_ok(name, &res);
	assert_false(res.full);
}

static void sync_marked(const char *name, ims_repl_mark *mark, ims_repl_result *res)
{
	ims_repl_opts o = IMS_REPL_OPTS_INIT;
	o.mark = mark;
	if (ims_repl_sync(res, itest.a, itest.b, "rbd", name, &o) < 0)
		fail_msg("sync %s: %s", name, ims_error_last());
	assert_sealed_equal(name, res->sealed);
}

/* Two cycles: the first finds nothing changed by a full look and marks it, the second is told
 * so by the mark alone. */
static void unchanged_then_quick(const char *name, ims_repl_mark *mark, const char *sealed)
{
	ims_repl_result res;
	sync_marked(name, mark, &res);
	assert_true(res.unchanged);
	assert_false(res.quick);
	assert_true(mark->valid);
	assert_string_equal(res.sealed, sealed);
	sync_marked(name, mark, &res);
	assert_true(res.unchanged);
	assert_true(res.quick);
	assert_true(mark->valid);
	assert_string_equal(res.sealed, sealed);
}

/* A cycle after a change: never told "unchanged" by the mark; copies, seals a new snapshot. */
static void changed(const char *name, ims_repl_mark *mark, ims_repl_result *res)
{
	char before[64];
	snprintf(before, sizeof(before), "%s", mark->base);
	sync_marked(name, mark, res);
	assert_false(res->unchanged);
	assert_false(res->quick);
	assert_false(mark->valid);
	assert_string_not_equal(res->sealed, before);
}

/*
 * The mark (ims_repl_mark): a cycle that found nothing changed lets the next one tell so from
 * the versions of the primary's header and object map, without opening the image. Every kind of
 * change must still be copied: a write into an object written before (clean since the
 * snapshot), into an object never written, zeroes, a resize, a user's snapshot; an image
 * without fast-diff never gets a mark.
 */
static void test_unchanged_by_mark(void **state)
{
	(void)state;
	const char *name = itest_name("repl-mark");
	ims_repl_mark mark;
	ims_repl_result res;
	memset(&mark, 0, sizeof(mark));
	itest_create(name, 16 * MiB);
	fill_range(name, 0, 4 * MiB);
	changed(name, &mark, &res); /* the first copy */
	assert_true(res.full);
	unchanged_then_quick(name, &mark, res.sealed);

	/* a write into an object written before the snapshot */
	char buf[4096];
	memset(buf, 0x3c, sizeof(buf));
	itest_image_write(itest.a, "rbd", name, 1 * MiB, buf, sizeof(buf));
	changed(name, &mark, &res);
	assert_true(res.bytes_copied > 0);
	unchanged_then_quick(name, &mark, res.sealed);

	/* into an object never written */
	itest_image_write(itest.a, "rbd", name, 12 * MiB, buf, sizeof(buf));
	changed(name, &mark, &res);
	unchanged_then_quick(name, &mark, res.sealed);

	/* zeroes over written data */
	zero_range(name, 0, 1 * MiB);
	changed(name, &mark, &res);
	unchanged_then_quick(name, &mark, res.sealed);

	/* a resize, with no write */
	assert_int_equal(ims_image_resize(itest.a, "rbd", name, 20 * MiB, false), 0);
	changed(name, &mark, &res);
	assert_int_equal(res.size, 20 * MiB);
	unchanged_then_quick(name, &mark, res.sealed);

	/* a snapshot of the user's: the header changed, so a full look (which finds no data
	 * changed since the base) */
	assert_int_equal(ims_snap_create(itest.a, "rbd", name, "mine"), 0);
	char sealed[64];
	snprintf(sealed, sizeof(sealed), "%s", res.sealed);
	sync_marked(name, &mark, &res);
	assert_true(res.unchanged);
	assert_false(res.quick);
	assert_int_equal(ims_snap_remove(itest.a, "rbd", name, "mine"), 0);
	unchanged_then_quick(name, &mark, sealed);

	/* a mark older than IMS_REPL_MARK_MAX_MS: a full look again */
	mark.checked_unix_ms -= IMS_REPL_MARK_MAX_MS + 1000;
	sync_marked(name, &mark, &res);
	assert_true(res.unchanged);
	assert_false(res.quick);
	assert_true(mark.valid);

	/* no fast-diff (exclusive-lock only, for the guard): never a mark, every cycle a full look
	 */
	const char *plain = itest_name("repl-mark-plain");
	rados_ioctx_t io;
	assert_int_equal(ims_site_ioctx(&io, itest.a, "rbd"), 0);
	int order = 22;
	assert_int_equal(rbd_create2(io, plain, 8 * MiB,
				     RBD_FEATURE_LAYERING | RBD_FEATURE_EXCLUSIVE_LOCK, &order),
			 0);
	ims_site_ioctx_close(io);
	itest_remove_later('A', false, plain);
	fill_range(plain, 0, 1 * MiB);
	ims_repl_mark m2;
	memset(&m2, 0, sizeof(m2));
	changed(plain, &m2, &res);
	for (int i = 0; i < 2; i++) {
		sync_marked(plain, &m2, &res);
		assert_true(res.unchanged);
		assert_false(res.quick);
		assert_false(m2.valid);
	}
}

/* A blocklisted source client: the mark cannot be read (the stat fails), so the cycle is never
 * told "unchanged" by it; the full look fails too, and the mark is dropped. The pair's status
 * must never say current while its daemon cannot reach the primary. */
static void test_mark_when_blocklisted(void **state)
{
	(void)state;
	const char *name = itest_name("repl-mark-bl");
	ims_repl_mark mark;
	ims_repl_result res;
	char addr[256];
	memset(&mark, 0, sizeof(mark));
	itest_create(name, 8 * MiB);
	fill_range(name, 0, 1 * MiB);
	changed(name, &mark, &res);
	unchanged_then_quick(name, &mark, res.sealed);
	assert_true(mark.valid);

	ims_site *src = itest_site('A'); /* a client of its own, blocklisted below */
	assert_int_equal(ims_site_client_addr(addr, sizeof(addr), src), 0);
	assert_non_null(strchr(addr, '/'));
	assert_int_equal(
		itest_sh("ceph -c \"$CEPH_CONF_A\" osd blocklist add '%s' 600 2>/dev/null", addr),
		0);
	ims_repl_opts o = IMS_REPL_OPTS_INIT;
	o.mark = &mark;
	memset(&res, 0, sizeof(res));
	int r = ims_repl_sync(&res, src, itest.b, "rbd", name, &o);
	int rm = itest_sh("ceph -c \"$CEPH_CONF_A\" osd blocklist rm '%s' 2>/dev/null", addr);
	ims_site_close(src);
	assert_true(r < 0);
	assert_false(res.quick);
	assert_false(res.unchanged);
	assert_false(mark.valid);
	assert_int_equal(rm, 0);
	/* the daemon's own client was never blocklisted: the next cycle looks in full again */
	sync_marked(name, &mark, &res);
	assert_true(res.unchanged);
	assert_false(res.quick);
	assert_true(mark.valid);
}

static int cut_after(void *ctx, uint64_t done, uint64_t total)
{
	(void)total;
	return done >= *(uint64_t *)ctx;
}

/* Options of a cycle that cancels itself once *CUT bytes are done, with checkpoints every 4 MiB
 * and two pieces in flight. */
static ims_repl_opts cut_opts(uint64_t *cut)
{
	ims_repl_opts o = IMS_REPL_OPTS_INIT;
	o.progress = cut_after;
	o.progress_ctx = cut;
	o.checkpoint_bytes = 4 * MiB;
	o.concurrency = 2;
	return o;
}

static void test_cut_cycle_resumes(void **state)
{
	(void)state;
	const char *name = itest_name("repl-resume");
	ims_repl_result res;
	synced_then_delta(name, 128 * MiB, 96, 7, &res); /* a large delta */

	uint64_t cut = 32 * MiB;
	ims_repl_opts o = cut_opts(&cut);
	ims_repl_result first;
	memset(&first, 0, sizeof(first));
	assert_int_equal(ims_repl_sync(&first, itest.a, itest.b, "rbd", name, &o), -ECANCELED);
	char sealed_before[64];
	assert_int_equal(ims_repl_last_sealed(sealed_before, sizeof(sealed_before), NULL, itest.b,
					      "rbd", name),
			 0);
	assert_string_equal(sealed_before, res.sealed); /* nothing new sealed */

	ims_repl_opts o2 = IMS_REPL_OPTS_INIT;
	ims_repl_result second;
	if (ims_repl_sync(&second, itest.a, itest.b, "rbd", name, &o2) < 0)
		fail_msg("resume: %s", ims_error_last());
	assert_true(second.resumed);
	assert_string_equal(second.base, res.sealed);
	/* the resumed cycle shipped less than the whole delta */
	assert_true(second.bytes_copied < 96 * MiB);
	assert_true(second.bytes_copied + 16 * MiB >= 96 * MiB - cut);
	assert_sealed_equal(name, second.sealed);
}

/* A piece whose copy fails (a write error on the secondary) is not counted as done: the
 * checkpoint stays below it, the resumed cycle copies it, and what it seals equals the primary.
 * (The low-water mark used to drop the failed piece, and the resumed cycle sealed a copy that
 * lacked it.) */
static void test_failed_piece_copied_again(void **state)
{
	(void)state;
	const char *name = itest_name("repl-failpiece");
	ims_repl_result res;
	synced_then_delta(name, 64 * MiB, 48, 11, &res);

	ims_repl_opts o = IMS_REPL_OPTS_INIT;
	o.concurrency = 1; /* the failed piece is the lowest in flight */
	o.checkpoint_bytes = 1 * MiB;
	ims_repl_result first;
	memset(&first, 0, sizeof(first));
	setenv("IMGSTORE_FAIL_COPY_FROM", "20971520", 1); /* 20 MiB */
	int r = ims_repl_sync(&first, itest.a, itest.b, "rbd", name, &o);
	unsetenv("IMGSTORE_FAIL_COPY_FROM");
	assert_int_equal(r, -EIO);
	assert_non_null(strstr(ims_error_last(), "IMGSTORE_FAIL_COPY_FROM"));

	ims_repl_result second;
	if (ims_repl_sync(&second, itest.a, itest.b, "rbd", name, &o) < 0)
		fail_msg("resume: %s", ims_error_last());
	assert_true(second.resumed);
	assert_sealed_equal(name, second.sealed);
}

static void newest_repl_snap(ims_site *s, const char *name, char *out, size_t len)
{
	ims_snap_info *snaps = NULL;
	size_t n = 0;
	assert_int_equal(ims_snap_list(&snaps, &n, s, "rbd", name), 0);
	for (size_t i = 0; i < n; i++)
		if (ims_repl_snap_time(snaps[i].name) > ims_repl_snap_time(out))
			snprintf(out, len, "%s", snaps[i].name);
	ims_snap_list_free(snaps, n);
}

/* Whether the primary still has the replication snapshot @p snap. */
static bool has_snap(ims_site *s, const char *name, const char *snap)
{
	ims_snap_info *snaps = NULL;
	size_t n = 0;
	bool found = false;
	assert_int_equal(ims_snap_list(&snaps, &n, s, "rbd", name), 0);
	for (size_t i = 0; i < n; i++)
		found |= strcmp(snaps[i].name, snap) == 0;
	ims_snap_list_free(snaps, n);
	return found;
}

static void verify_equal(ims_site *dst, const char *name)
{
	ims_repl_verify_opts vo = IMS_REPL_VERIFY_OPTS_INIT;
	ims_repl_verify_result *v = NULL;
	if (ims_repl_verify(&v, itest.a, dst, "rbd", name, &vo) < 0)
		fail_msg("verify %s on site %s: %s", name, ims_site_name(dst), ims_error_last());
	assert_true(v->equal);
	ims_repl_verify_result_free(v);
}

/*
 * Two targets of one primary, a fast one (b) and a slow one (c): retention on the primary is
 * per target. Site c's base and its cut cycle survive many cycles to b, c's next cycles are
 * deltas, and disabling b leaves c's snapshots alone.
 */
static void test_two_targets(void **state)
{
	(void)state;
	const char *name = itest_name("repl-two");
	ims_repl_opts o = IMS_REPL_OPTS_INIT;
	ims_repl_result rb, rc, first;
	itest_create(name, 64 * MiB);
	write_random(name, 32, 64 * KiB, 64 * MiB, 21);
	sync_ok(name, &rb);
	if (ims_repl_sync(&rc, itest.a, itest.c, "rbd", name, &o) < 0)
		fail_msg("sync to c: %s", ims_error_last());
	assert_true(rc.full);

	/* c's next cycle is cut half-way (site c stops answering): its checkpoint stays */
	write_random(name, 48, 1 * MiB, 64 * MiB, 22);
	uint64_t cut = 8 * MiB;
	ims_repl_opts cut_o = cut_opts(&cut);
	memset(&first, 0, sizeof(first));
	assert_int_equal(ims_repl_sync(&first, itest.a, itest.c, "rbd", name, &cut_o), -ECANCELED);
	char cut_target[64] = "";
	newest_repl_snap(itest.a, name, cut_target, sizeof(cut_target));
	assert_true(ims_repl_snap_time(cut_target) > ims_repl_snap_time(rc.sealed));

	/* meanwhile b runs many more cycles than retention keeps */
	for (unsigned cycle = 0; cycle < 6; cycle++) {
		write_random(name, 4, 64 * KiB, 64 * MiB, 30 + cycle);
		sync_ok(name, &rb);
		assert_false(rb.full);
	}
	assert_true(has_snap(itest.a, name, rc.sealed));  /* c's base */
	assert_true(has_snap(itest.a, name, cut_target)); /* c's running cycle */

	/* c comes back: its cycle resumes from the checkpoint, a delta, not a full copy */
	ims_repl_result again;
	if (ims_repl_sync(&again, itest.a, itest.c, "rbd", name, &o) < 0)
		fail_msg("resume to c: %s", ims_error_last());
	assert_false(again.full);
	assert_true(again.resumed);
	assert_string_equal(again.base, rc.sealed);
	assert_string_equal(again.sealed, cut_target);
	assert_true(again.bytes_copied < 48 * MiB);
	/* and the next one is a delta from there, shipping about what was written */
	write_random(name, 4, 64 * KiB, 64 * MiB, 40);
	if (ims_repl_sync(&rc, itest.a, itest.c, "rbd", name, &o) < 0)
		fail_msg("sync to c: %s", ims_error_last());
	assert_false(rc.full);
	assert_string_equal(rc.base, again.sealed);
	assert_true(rc.bytes_copied <= 6 * 4 * 64 * KiB + 4 * 64 * KiB);
	verify_equal(itest.b, name);
	verify_equal(itest.c, name);

	/* b's cycles since then leave c's base; forgetting b drops only what c does not need */
	write_random(name, 4, 64 * KiB, 64 * MiB, 41);
	sync_ok(name, &rb);
	assert_int_equal(ims_repl_forget(itest.a, "rbd", name, ims_site_name(itest.b), true), 0);
	assert_true(has_snap(itest.a, name, rc.sealed));
	assert_false(has_snap(itest.a, name, rb.sealed));
	write_random(name, 4, 64 * KiB, 64 * MiB, 42);
	if (ims_repl_sync(&again, itest.a, itest.c, "rbd", name, &o) < 0)
		fail_msg("sync to c: %s", ims_error_last());
	assert_false(again.full);
	assert_string_equal(again.base, rc.sealed);
	assert_int_equal(ims_repl_forget(itest.a, "rbd", name, ims_site_name(itest.c), true), 0);
	assert_int_equal(count_repl_snaps(itest.a, name), 0);
}

#define RBD_WRITE                                                                                  \
	"rbd -c \"$CEPH_CONF_B\" bench --io-type write --io-size 4K --io-total 64K rbd/%s "        \
	">/dev/null 2>&1"

/*
 * A secondary refuses every writer but the replication that holds it (store/site.h): a plain
 * rbd write or snapshot fails, cycles still write and seal. A promotion by another daemon fences
 * the guard, after which hosts write to the new primary; the fenced daemon's other secondaries
 * recover on their next cycle with a new guard connection, the main one untouched.
 */
static void test_secondary_refuses_writers(void **state)
{
	(void)state;
	const char *name = itest_name("repl-guard"), *other = itest_name("repl-guard2");
	ims_repl_result res;
	ims_repl_opts o = IMS_REPL_OPTS_INIT;
	itest_create(name, 16 * MiB);
	itest_create(other, 16 * MiB);
	write_random(name, 8, 64 * KiB, 16 * MiB, 50);
	write_random(other, 8, 64 * KiB, 16 * MiB, 52);
	sync_ok(name, &res);
	sync_ok(other, &res);

	assert_int_not_equal(itest_sh(RBD_WRITE, name), 0);
	assert_int_not_equal(itest_sh(RBD_WRITE, name), 0); /* every time, not only the first */
	/* a snapshot by another client is refused too (the guard's quiesce watch says no) */
	assert_int_not_equal(
		itest_sh("rbd -c \"$CEPH_CONF_B\" snap create rbd/%s@rogue >/dev/null 2>&1", name),
		0);
	assert_int_equal(itest_sh("rbd -c \"$CEPH_CONF_B\" snap ls rbd/%s | grep -q rogue", name),
			 1);
	write_random(name, 8, 64 * KiB, 16 * MiB, 51);
	sync_ok(name, &res);
	assert_false(res.full);

	/* another daemon of site b promotes it: this process's guard is fenced, hosts write */
	ims_site *B2 = itest_site('B');
	assert_int_equal(ims_repl_promote(NULL, 0, B2, "rbd", name, 1, true), 0);
	ims_site_close(B2);
	assert_int_equal(itest_sh(RBD_WRITE, name), 0);
	/* this process still replicates its other image: at most one cycle fails on the fenced
	 * guard, the next one connects again; the main connection was never cut */
	write_random(other, 8, 64 * KiB, 16 * MiB, 53);
	int r = ims_repl_sync(&res, itest.a, itest.b, "rbd", other, &o);
	if (r < 0)
		r = ims_repl_sync(&res, itest.a, itest.b, "rbd", other, &o);
	if (r < 0)
		fail_msg("sync after the fence: %s", ims_error_last());
	assert_false(res.full);
	assert_sealed_equal(other, res.sealed);
	assert_int_not_equal(itest_sh(RBD_WRITE, other), 0);
	/* the promoted image is no longer replicated into: it is a primary of a newer generation */
	assert_int_equal(ims_repl_sync(&res, itest.a, itest.b, "rbd", name, &o), -ESTALE);
}

/* A fence never breaks this connection's own lock: a cycle of the image to another target holds
 * it while the image fails over, and fencing it would blocklist the daemon itself. */
static void test_fence_spares_itself(void **state)
{
	(void)state;
	const char *name = itest_name("repl-fence");
	rados_ioctx_t io;
	rbd_image_t img;
	char buf[4096];
	unsigned fenced = 99;
	memset(buf, 0x3c, sizeof(buf));
	itest_create(name, 4 * MiB);
	assert_int_equal(ims_site_ioctx(&io, itest.a, "rbd"), 0);
	assert_int_equal(rbd_open(io, name, &img, NULL), 0);
	assert_int_equal(rbd_write(img, 0, sizeof(buf), buf),
			 (ssize_t)sizeof(buf)); /* takes the lock */
	int owner = 0;
	assert_int_equal(rbd_is_exclusive_lock_owner(img, &owner), 0);
	assert_true(owner);
	assert_int_equal(ims_repl_fence(&fenced, itest.a, "rbd", name), 0);
	assert_int_equal(fenced, 0);
	/* not blocklisted: this connection still writes */
	assert_int_equal(rbd_write(img, 8192, sizeof(buf), buf), (ssize_t)sizeof(buf));
	assert_int_equal(rbd_flush(img), 0);
	rbd_close(img);
	ims_site_ioctx_close(io);
}

static void test_refusals(void **state)
{
	(void)state;
	const char *name = itest_name("repl-clash");
	ims_repl_result res;
	itest_create(name, 4 * MiB);
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	co.size = 4 * MiB;
	assert_int_equal(ims_image_create(itest.b, "rbd", name, &co), 0); /* not a replica */
	ims_repl_opts o = IMS_REPL_OPTS_INIT;
	assert_int_equal(ims_repl_sync(&res, itest.a, itest.b, "rbd", name, &o), -EEXIST);
	assert_non_null(strstr(ims_error_last(), "not a replica"));
	assert_int_equal(res.refused, IMS_REPL_REFUSED_NONE); /* a fault, not a refusal */
	assert_int_equal(count_repl_snaps(itest.b, name), 0);

	const char *other = itest_name("repl-dir");
	itest_create(other, 4 * MiB);
	sync_ok(other, &res);
	/* the secondary cannot be replicated onwards as if it were a primary */
	assert_int_equal(ims_repl_sync(&res, itest.b, itest.a, "rbd", other, &o), -EBUSY);
	assert_int_equal(res.refused, IMS_REPL_REFUSED_SECONDARY); /* typed: no text to match */
	assert_int_equal(ims_repl_sync(&res, itest.a, itest.b, "rbd", "no-such-image", &o),
			 -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_initial_and_incremental),
		cmocka_unit_test(test_under_a_concurrent_writer),
		cmocka_unit_test(test_resize),
		cmocka_unit_test(test_unchanged_by_mark),
		cmocka_unit_test(test_mark_when_blocklisted),
		cmocka_unit_test(test_cut_cycle_resumes),
		cmocka_unit_test(test_failed_piece_copied_again),
		cmocka_unit_test(test_two_targets),
		cmocka_unit_test(test_secondary_refuses_writers),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_fence_spares_itself),
	};
	return cmocka_run_group_tests_name("replicator", tests, itest_setup_abc, itest_teardown);
}
