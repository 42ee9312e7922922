/*
 * replicator/scheduler.h between the sandbox sites a and b: one writer per pair. The lock of a
 * running cycle is renewed by a timer, not by the cycle's progress: a phase that reports
 * nothing for longer than the lock's expiry (here a progress callback that sleeps through
 * three expiries) keeps the lock, and a second scheduler of the same site is refused the pair
 * all along. Failover claims: one daemon of the site at a time, renewed, found lost once
 * broken. The site's daemons as a set (a shared RADOS lock, store/record.h): sorted, each
 * once, left at once, gone once a hold expires; two schedulers share the pairs (each pair's
 * home one of them, both agreeing) and the one left takes them all once the other stops. The
 * schedulers keep their records in a pool of their own, so that the sandbox's imgstored never
 * sees the pair.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <rados/librados.h>

#include "common/error.h"
#include "itest.h"
#include "replicator/scheduler.h"
#include "store/image.h"
#include "store/record.h"
#include "store/site.h"

#define RECORDS	     "imstest-sched"
#define LOCK_SECONDS 2

static int peer(void *ctx, const char *name, ims_site **out)
{
	(void)ctx;
	if (strcmp(name, "b") != 0)
		return ims_error_set(-ENOENT, "no peer site '%s'", name);
	*out = itest.b;
	return 0;
}

static int setup(void **state)
{
	itest_setup_ab(state);
	itest_pool_a(RECORDS);
	return 0;
}

/* A peer site b of its own connection (ctx): a second daemon's, whose guards are its own. */
static int own_peer(void *ctx, const char *name, ims_site **out)
{
	if (strcmp(name, "b") != 0)
		return ims_error_set(-ENOENT, "no peer site '%s'", name);
	*out = ctx;
	return 0;
}

static unsigned lock_seconds = LOCK_SECONDS; /* of the schedulers started next */

/* the schedulers started next do not share pairs: each runs every pair it knows, as a daemon
 * alone on its site does (the one-writer tests); test_pairs_shared shares them */
static bool alone = true;

static ims_repl_sched *start_with(const char *owner, ims_site *b)
{
	ims_repl_sched *s = NULL;
	ims_repl_sched_opts o = IMS_REPL_SCHED_OPTS_INIT;
	o.local = itest.a;
	o.pool = RECORDS;
	o.peer = b ? own_peer : peer;
	o.peer_ctx = b;
	o.owner = owner;
	o.lock_seconds = lock_seconds;
	o.workers = 1;
	o.alone = alone;
	if (ims_repl_sched_start(&s, &o) < 0)
		fail_msg("start scheduler %s: %s", owner, ims_error_last());
	return s;
}

static ims_repl_sched *start(const char *owner)
{
	return start_with(owner, NULL);
}

/* Who holds the pair's lock: the cookie, "" if nobody (an expired lock is nobody's). */
static void lock_holder(const char *lock_name, char *cookie, size_t len)
{
	rados_ioctx_t io;
	int exclusive = 0;
	char tag[64], clients[256], cookies[256], addrs[512];
	size_t tl = sizeof(tag), cl = sizeof(clients), kl = sizeof(cookies), al = sizeof(addrs);
	cookie[0] = '\0';
	assert_int_equal(ims_site_ioctx(&io, itest.a, RECORDS), 0);
	ssize_t n = rados_list_lockers(io, IMS_REPL_LOCK, lock_name, &exclusive, tag, &tl, clients,
				       &cl, cookies, &kl, addrs, &al);
	if (n > 0)
		snprintf(cookie, len, "%s", cookies);
	ims_site_ioctx_close(io);
}

/* A caller's progress that never cancels: a sync asked with one waits for another daemon's
 * cycle (without, it is refused at once). */
static int go_on(void *ctx, uint64_t done, uint64_t total)
{
	(void)done;
	(void)total;
	atomic_fetch_add((atomic_int *)ctx, 1);
	return 0;
}

typedef struct {
	const char *image;
	ims_repl_sched *other;
	bool checked;
	char holder[3][256];
	int other_rc;
	ims_repl_refusal other_refused;
	char other_error[512];
} quiet_ctx;

/* The first progress report sleeps through three lock expiries, looking at the lock after each,
 * and has the other scheduler ask for the pair meanwhile. */
static int quiet_phase(void *arg, uint64_t done, uint64_t total)
{
	quiet_ctx *q = arg;
	(void)done;
	(void)total;
	if (q->checked)
		return 0;
	q->checked = true;
	char lock_name[700];
	snprintf(lock_name, sizeof(lock_name), "rbd/%s@b", q->image);
	for (int i = 0; i < 3; i++) {
		sleep(LOCK_SECONDS + 1);
		lock_holder(lock_name, q->holder[i], sizeof(q->holder[i]));
	}
	ims_repl_result res;
	/* waits for the cycle a lock expiry (it cannot end: this is its progress), then refused */
	atomic_int asked = 0;
	q->other_rc = ims_repl_sync_now(&res, q->other, "rbd", q->image, "b", go_on, &asked);
	q->other_refused = res.refused;
	snprintf(q->other_error, sizeof(q->other_error), "%s", ims_error_last());
	return 0;
}

static void test_lock_outlives_quiet_phase(void **state)
{
	(void)state;
	const char *img = itest_name("sched");
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	co.size = 8ull << 20;
	assert_int_equal(ims_image_create(itest.a, "rbd", img, &co), 0);
	assert_int_equal(itest_sh("rbd -c \"$CEPH_CONF_A\" bench --io-type write --io-size 1M "
				  "--io-total 4M rbd/%s "
				  ">/dev/null 2>&1",
				  img),
			 0);

	ims_repl_sched *one = start("sched-test-one");
	if (ims_repl_enable(NULL, one, "rbd", img, "b", IMS_REPL_ASYNC, 3600) < 0)
		fail_msg("enable: %s", ims_error_last());
	ims_repl_result res;
	if (ims_repl_sync_now(&res, one, "rbd", img, "b", NULL, NULL) < 0)
		fail_msg("first sync: %s", ims_error_last());
	/* a second scheduler of the site, which finds the pair current (RPO 1h): it runs no
	 * cycle of its own, and asks for one while the first one's cycle is quiet */
	ims_repl_sched *two = start("sched-test-two");
	assert_int_equal(
		itest_sh("rbd -c \"$CEPH_CONF_A\" bench --io-type write --io-size 1M --io-total 4M "
			 "--io-pattern rand rbd/%s >/dev/null 2>&1",
			 img),
		0);
	quiet_ctx q = {.image = img, .other = two};
	int r = ims_repl_sync_now(&res, one, "rbd", img, "b", quiet_phase, &q);
	if (r < 0)
		fail_msg("sync with a quiet phase: %s", ims_error_last());
	assert_true(q.checked);
	for (int i = 0; i < 3; i++) {
		print_message("lock holder after %d s: '%s'\n", (i + 1) * (LOCK_SECONDS + 1),
			      q.holder[i]);
		assert_string_equal(q.holder[i], "sched-test-one");
	}
	assert_int_equal(q.other_rc, -EBUSY);
	assert_int_equal(q.other_refused, IMS_REPL_REFUSED_CYCLE); /* the first one's lock */
	print_message("the other daemon's sync: %s\n", q.other_error);
	assert_non_null(strstr(q.other_error, "another imgstored of site 'a' runs a cycle of "));
	assert_non_null(strstr(q.other_error, "(waited 2 s for it;"));
	assert_true(res.sealed[0] != '\0');

	ims_repl_disable(NULL, one, "rbd", img, "b");
	ims_repl_sched_stop(two);
	ims_repl_sched_stop(one);
	itest_sh("rbd -c \"$CEPH_CONF_B\" snap purge rbd/%s >/dev/null 2>&1; rbd -c "
		 "\"$CEPH_CONF_B\" rm --no-progress "
		 "rbd/%s >/dev/null 2>&1; rbd -c \"$CEPH_CONF_A\" snap purge rbd/%s >/dev/null "
		 "2>&1; "
		 "rbd -c \"$CEPH_CONF_A\" rm --no-progress rbd/%s >/dev/null 2>&1",
		 img, img, img, img);
}

/* The status scheduler @p s shows for the pair of @p img to b. */
static ims_repl_status status_of(ims_repl_sched *s, const char *img)
{
	ims_repl_status *st = NULL, one;
	size_t n = 0;
	if (ims_repl_sched_status(&st, &n, s, "rbd", img) < 0 || n != 1)
		fail_msg("status of %s: %s (%zu pairs)", img, ims_error_last(), n);
	one = st[0];
	free(st);
	return one;
}

/*
 * Two daemons of one site share a pair: the one that ran its cycle keeps the secondary held
 * (its writer guard). The other's cycle stops at once; while the shared status shows a seal
 * within the RPO that is no failure, and the other shows the holder's seal. With the seal
 * older than the RPO the held secondary is a failure, shown. Once the holder lets go (its
 * daemon gone), the other's next cycle takes the pair.
 */
static void test_pair_held_elsewhere(void **state)
{
	(void)state;
	const char *img = itest_name("held");
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	co.size = 8ull << 20;
	assert_int_equal(ims_image_create(itest.a, "rbd", img, &co), 0);
	ims_repl_sched *one = start("sched-held-one");
	if (ims_repl_enable(NULL, one, "rbd", img, "b", IMS_REPL_ASYNC, 3600) < 0)
		fail_msg("enable: %s", ims_error_last());
	ims_repl_result res, res2;
	if (ims_repl_sync_now(&res, one, "rbd", img, "b", NULL, NULL) < 0)
		fail_msg("first sync: %s", ims_error_last());

	ims_site *b2 = itest_site('B');
	ims_repl_sched *two = start_with("sched-held-two", b2);
	int r = ims_repl_sync_now(&res2, two, "rbd", img, "b", NULL, NULL);
	print_message("the second daemon's cycle: %d %s\n", r, ims_error_last());
	assert_int_equal(r, -EBUSY);
	assert_non_null(strstr(ims_error_last(), "another client holds its lock"));
	assert_int_equal(res2.refused, IMS_REPL_REFUSED_HELD); /* what the scheduler acts on */
	ims_repl_status st = status_of(two, img);
	assert_string_equal(st.error, "");
	assert_string_equal(st.last_sealed, res.sealed);
	assert_true(st.lag_seconds >= 0);
	assert_int_equal(st.failures, 0);

	/* the holder's daemon stops sealing (its connection still holds the secondary) and the
	 * RPO is shorter than its last seal is old: the held secondary is a failure now */
	ims_repl_sched_stop(one);
	if (ims_repl_enable(NULL, two, "rbd", img, "b", IMS_REPL_ASYNC, 1) < 0)
		fail_msg("enable with RPO 1 s: %s", ims_error_last());
	sleep(2);
	r = ims_repl_sync_now(&res2, two, "rbd", img, "b", NULL, NULL);
	assert_int_equal(r, -EBUSY);
	assert_int_equal(res2.refused, IMS_REPL_REFUSED_HELD);
	st = status_of(two, img);
	print_message("with a stale seal: '%s'\n", st.error);
	assert_non_null(strstr(st.error, "another client holds its lock"));
	assert_true(st.failures >= 1);

	/* the holder gone: its guard released, the other takes the pair (and seals a change) */
	assert_true(ims_site_guard_drop(itest.b, "rbd", img));
	assert_int_equal(itest_sh("rbd -c \"$CEPH_CONF_A\" bench --io-type write --io-size 1M "
				  "--io-total 1M rbd/%s >/dev/null 2>&1",
				  img),
			 0);
	if (ims_repl_sync_now(&res2, two, "rbd", img, "b", NULL, NULL) < 0)
		fail_msg("sync after the holder let go: %s", ims_error_last());
	assert_string_not_equal(res2.sealed, res.sealed);
	st = status_of(two, img);
	assert_string_equal(st.error, "");
	assert_string_equal(st.last_sealed, res2.sealed);

	ims_repl_disable(NULL, two, "rbd", img, "b");
	ims_repl_sched_stop(two);
	ims_site_guard_drop(b2, "rbd", img);
	ims_site_close(b2);
	itest_sh("rbd -c \"$CEPH_CONF_B\" snap purge rbd/%s >/dev/null 2>&1; rbd -c "
		 "\"$CEPH_CONF_B\" rm --no-progress rbd/%s >/dev/null 2>&1; rbd -c "
		 "\"$CEPH_CONF_A\" snap purge rbd/%s >/dev/null 2>&1; rbd -c \"$CEPH_CONF_A\" rm "
		 "--no-progress rbd/%s >/dev/null 2>&1",
		 img, img, img, img);
}

/* The pair's lock taken by hand, as another daemon's running cycle holds it. */
static void hold_pair(const char *img, bool hold)
{
	rados_ioctx_t io;
	char name[700];
	struct timeval tv = {120, 0};
	snprintf(name, sizeof(name), "rbd/%s@b", img);
	assert_int_equal(ims_site_ioctx(&io, itest.a, RECORDS), 0);
	if (hold)
		assert_int_equal(rados_lock_exclusive(io, IMS_REPL_LOCK, name, "other-daemon",
						      "replication cycle", &tv, 0),
				 0);
	else
		assert_int_equal(rados_unlock(io, IMS_REPL_LOCK, name, "other-daemon"), 0);
	ims_site_ioctx_close(io);
}

typedef struct {
	ims_repl_sched *s;
	const char *image;
	bool verify;
	atomic_bool done;
	atomic_int asked; /* progress calls, while waiting and after */
	int rc;
	ims_repl_result res;
	ims_repl_verify_result *v;
	char error[512];
} asked_ctx;

static void *asked_thread(void *arg)
{
	asked_ctx *a = arg;
	ims_repl_verify_opts vo = IMS_REPL_VERIFY_OPTS_INIT;
	vo.progress = go_on;
	vo.progress_ctx = &a->asked;
	a->rc = a->verify
			? ims_repl_sched_verify(&a->v, a->s, "rbd", a->image, "b", &vo)
			: ims_repl_sync_now(&a->res, a->s, "rbd", a->image, "b", go_on, &a->asked);
	snprintf(a->error, sizeof(a->error), "%s", ims_error_last());
	atomic_store(&a->done, true);
	return NULL;
}

/* Asked while the pair's lock is held (@p verify: a verify, else a sync), let go after 2 s:
 * still waiting then, and done once the lock is free. */
static asked_ctx asked_while_held(ims_repl_sched *s, const char *img, bool verify)
{
	asked_ctx a = {.s = s, .image = img, .verify = verify};
	pthread_t t;
	hold_pair(img, true);
	assert_int_equal(pthread_create(&t, NULL, asked_thread, &a), 0);
	sleep(2);
	bool waited = !atomic_load(&a.done);
	int asked = atomic_load(&a.asked);
	hold_pair(img, false);
	pthread_join(t, NULL);
	print_message("%s asked during another daemon's cycle: %d %s\n", verify ? "verify" : "sync",
		      a.rc, a.rc < 0 ? a.error : "");
	assert_true(waited);
	assert_true(asked >= 1); /* the wait asks the caller whether to go on */
	return a;
}

/*
 * A sync or verify asked of a daemon while another daemon of the site runs a cycle of the pair
 * (its RADOS lock held) waits for that cycle, up to the lock expiry, and then runs; before, it
 * failed at once with "another daemon runs a cycle".
 */
static void test_asked_waits_for_other_cycle(void **state)
{
	(void)state;
	const char *img = itest_name("wait");
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	co.size = 8ull << 20;
	assert_int_equal(ims_image_create(itest.a, "rbd", img, &co), 0);
	lock_seconds = 30; /* the wait's bound: far past the 2 s the lock is held */
	ims_repl_sched *one = start("sched-wait-one");
	lock_seconds = LOCK_SECONDS;
	if (ims_repl_enable(NULL, one, "rbd", img, "b", IMS_REPL_ASYNC, 3600) < 0)
		fail_msg("enable: %s", ims_error_last());
	ims_repl_result res;
	if (ims_repl_sync_now(&res, one, "rbd", img, "b", NULL, NULL) < 0)
		fail_msg("first sync: %s", ims_error_last());
	assert_int_equal(itest_sh("rbd -c \"$CEPH_CONF_A\" bench --io-type write --io-size 1M "
				  "--io-total 2M rbd/%s >/dev/null 2>&1",
				  img),
			 0);
	asked_ctx a = asked_while_held(one, img, false);
	assert_int_equal(a.rc, 0);
	assert_true(a.res.sealed[0] != '\0');
	assert_string_not_equal(a.res.sealed, res.sealed); /* the 2 MiB written since */
	a = asked_while_held(one, img, true);
	assert_int_equal(a.rc, 0);
	assert_non_null(a.v);
	assert_true(a.v->equal);
	ims_repl_verify_result_free(a.v);

	ims_repl_disable(NULL, one, "rbd", img, "b");
	ims_repl_sched_stop(one);
	itest_sh("rbd -c \"$CEPH_CONF_B\" snap purge rbd/%s >/dev/null 2>&1; rbd -c "
		 "\"$CEPH_CONF_B\" rm --no-progress rbd/%s >/dev/null 2>&1; rbd -c "
		 "\"$CEPH_CONF_A\" snap purge rbd/%s >/dev/null 2>&1; rbd -c \"$CEPH_CONF_A\" rm "
		 "--no-progress rbd/%s >/dev/null 2>&1",
		 img, img, img, img);
}

/* Failover claims (ims_repl_sched_claim()): one daemon of the site at a time, kept past the
 * lock's expiry by the renewer, refused to this daemon twice, taken by another once let go; a
 * claim whose lock was broken meanwhile is found lost before the next step. */
static void test_claims(void **state)
{
	(void)state;
	ims_repl_sched *one = start("sched-claim-one");
	ims_repl_sched *two = start("sched-claim-two");
	ims_repl_claim *k1 = NULL, *k2 = NULL;
	char holder[256];
	const char *what = "image 'rbd/claimed'";

	assert_int_equal(ims_repl_sched_claim(&k1, one, "image", "rbd", "claimed", what), 0);
	lock_holder("handover:image:rbd/claimed", holder, sizeof(holder));
	assert_string_equal(holder, "sched-claim-one");
	/* another daemon of the site is refused, naming the lock */
	assert_int_equal(ims_repl_sched_claim(&k2, two, "image", "rbd", "claimed", what), -EBUSY);
	print_message("the other daemon: %s\n", ims_error_last());
	assert_non_null(strstr(ims_error_last(), "another imgstored of site 'a' runs a failover, "
						 "failback or resync of image 'rbd/claimed'"));
	assert_null(k2);
	/* this daemon asked twice: refused too (its own lock is not taken for a previous run's) */
	assert_int_equal(ims_repl_sched_claim(&k2, one, "image", "rbd", "claimed", what), -EBUSY);
	assert_non_null(strstr(ims_error_last(), "this imgstored already runs"));
	/* held past three expiries by the renewer, not by the claimer */
	sleep(3 * LOCK_SECONDS + 1);
	lock_holder("handover:image:rbd/claimed", holder, sizeof(holder));
	assert_string_equal(holder, "sched-claim-one");
	assert_int_equal(ims_repl_sched_claim_held(one, k1), 0);
	/* another name is another claim */
	assert_int_equal(ims_repl_sched_claim(&k2, two, "group", "rbd", "claimed", "group"), 0);
	ims_repl_sched_unclaim(two, k2);
	/* let go: the other daemon takes it */
	ims_repl_sched_unclaim(one, k1);
	lock_holder("handover:image:rbd/claimed", holder, sizeof(holder));
	assert_string_equal(holder, "");
	assert_int_equal(ims_repl_sched_claim(&k2, two, "image", "rbd", "claimed", what), 0);
	/* its lock broken (as an expiry and another's take would): lost, found so, for good */
	assert_int_equal(itest_sh("rados -c \"$CEPH_CONF_A\" -p " RECORDS
				  " lock break " IMS_REPL_LOCK " handover:image:rbd/claimed "
				  "$(rados -c \"$CEPH_CONF_A\" -p " RECORDS
				  " lock info " IMS_REPL_LOCK
				  " handover:image:rbd/claimed | jq -r '.lockers[0].name') "
				  "--lock-cookie sched-claim-two >/dev/null 2>&1"),
			 0);
	lock_holder("handover:image:rbd/claimed", holder, sizeof(holder));
	assert_string_equal(holder, "");
	ims_error_clear();
	assert_int_equal(ims_repl_sched_claim_held(two, k2), -ENOLCK);
	print_message("lost: %s\n", ims_error_last());
	assert_non_null(strstr(ims_error_last(), "lost its RADOS lock"));
	assert_int_equal(ims_repl_sched_claim_held(two, k2), -ENOLCK);
	ims_repl_sched_unclaim(two, k2);
	ims_repl_sched_stop(one);
	ims_repl_sched_stop(two);
}

#define SET_OBJ	 "imstest-members"
#define SET_LOCK "imstest.member"

static ssize_t members(char (*got)[64], size_t max)
{
	rados_ioctx_t io;
	assert_int_equal(ims_site_ioctx(&io, itest.a, RECORDS), 0);
	ssize_t n = ims_record_members(&got[0][0], sizeof(got[0]), max, io, SET_OBJ, SET_LOCK);
	ims_site_ioctx_close(io);
	return n;
}

/* The set itself: joined under three cookies (one twice), read sorted and each once; one
 * leaves; the holds not renewed are gone once they expire (cls_lock trims them on a read).
 * 8 s holds: a stall of the loaded machine between the checks must not expire them. */
static void test_member_set(void **state)
{
	(void)state;
	rados_ioctx_t io;
	char got[4][64];
	assert_int_equal(ims_site_ioctx(&io, itest.a, RECORDS), 0);
	assert_int_equal(members(got, 4), 0); /* no object yet: nobody */
	assert_int_equal(ims_record_join(io, SET_OBJ, SET_LOCK, "m-b/a", "test", 8), 0);
	assert_int_equal(ims_record_join(io, SET_OBJ, SET_LOCK, "m-a/a", "test", 8), 0);
	assert_int_equal(ims_record_join(io, SET_OBJ, SET_LOCK, "m-c/a", "test", 8), 0);
	assert_int_equal(ims_record_join(io, SET_OBJ, SET_LOCK, "m-a/a", "test", 8), 0); /* renew */
	assert_int_equal(members(got, 4), 3);
	assert_string_equal(got[0], "m-a/a");
	assert_string_equal(got[1], "m-b/a");
	assert_string_equal(got[2], "m-c/a");
	assert_int_equal(members(got, 2), 2); /* at most max */
	ims_record_leave(io, SET_OBJ, SET_LOCK, "m-b/a");
	assert_int_equal(members(got, 4), 2);
	assert_string_equal(got[1], "m-c/a");
	sleep(9); /* past the 8 s holds, none renewed */
	assert_int_equal(members(got, 4), 0);
	ims_site_ioctx_close(io);
}

static void wait_runner(ims_repl_sched *s, const char *img, const char *want, int seconds)
{
	ims_repl_status st = status_of(s, img);
	for (int i = 0; i < seconds * 5 && strcmp(st.replicated_by, want) != 0; i++) {
		usleep(200 * 1000);
		st = status_of(s, img);
	}
	print_message("%s runs on '%s'\n", img, st.replicated_by);
	assert_string_equal(st.replicated_by, want);
}

/* Two schedulers of site a share four pairs, two each, both saying which runs which; once one
 * stops (and leaves the set), the other runs all four within a look at the set. */
static void test_pairs_shared(void **state)
{
	(void)state;
	const char *img[4];
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	co.size = 4ull << 20;
	alone = false;
	/* the homes are shared over every pair the records hold: none but these four */
	itest_sh("for o in imgstore.repl.policies imgstore.repl.status; do rados -c "
		 "\"$CEPH_CONF_A\" -p %s rm $o 2>/dev/null; done; true",
		 RECORDS);
	ims_repl_sched *one = start("sched-share-one");
	ims_site *b2 = itest_site('B');
	ims_repl_sched *two = start_with("sched-share-two", b2);
	for (int i = 0; i < 4; i++) {
		char base[16];
		snprintf(base, sizeof(base), "share%d", i);
		img[i] = itest_name(base);
		assert_int_equal(ims_image_create(itest.a, "rbd", img[i], &co), 0);
		if (ims_repl_enable(NULL, one, "rbd", img[i], "b", IMS_REPL_ASYNC, 3600) < 0)
			fail_msg("enable %s: %s", img[i], ims_error_last());
	}
	/* both see both (a look every second with a 2 s lock), and agree on every home */
	int on_one = 0, agreed = 0;
	for (int round = 0; round < 50 && agreed < 4; round++) {
		usleep(200 * 1000);
		on_one = agreed = 0;
		for (int i = 0; i < 4; i++) {
			if (!ims_repl_sched_has(two, "rbd", img[i], IMS_REPL_IMAGE))
				continue; /* not read by the second yet */
			ims_repl_status a = status_of(one, img[i]), b = status_of(two, img[i]);
			if (strcmp(a.replicated_by, b.replicated_by) == 0 &&
			    (strcmp(a.replicated_by, "sched-share-one") == 0 ||
			     strcmp(a.replicated_by, "sched-share-two") == 0)) {
				agreed++;
				on_one += strcmp(a.replicated_by, "sched-share-one") == 0;
			}
		}
	}
	print_message("%d of 4 homes agreed, %d on the first\n", agreed, on_one);
	assert_int_equal(agreed, 4);
	assert_int_equal(on_one, 2); /* bounded loads: at most ceil(4 / 2) each */

	/* a sync asked of the daemon that is not the home, while the home holds the secondary
	 * (its own sync just ran): the home is asked to let go of it, and the sync runs (a
	 * failover's last sync asked of any daemon of the site is one) */
	int theirs = 0;
	while (strcmp(status_of(one, img[theirs]).replicated_by, "sched-share-two") != 0)
		theirs++;
	ims_repl_result res;
	if (ims_repl_sync_now(&res, two, "rbd", img[theirs], "b", NULL, NULL) < 0)
		fail_msg("the home's sync: %s", ims_error_last());
	char before[sizeof(res.sealed)];
	memcpy(before, res.sealed, sizeof(before));
	itest_sh("rbd -c \"$CEPH_CONF_A\" bench --io-type write --io-size 64K --io-total 64K "
		 "rbd/%s >/dev/null 2>&1",
		 img[theirs]);
	int r = ims_repl_sync_now(&res, one, "rbd", img[theirs], "b", NULL, NULL);
	print_message("asked of the other: %d %s %s\n", r, res.sealed, r ? ims_error_last() : "");
	assert_int_equal(r, 0);
	assert_true(res.sealed[0] && strcmp(res.sealed, before) != 0);
	/* ... and it let go of it after (the home's): the home's next sync holds it again */
	if (ims_repl_sync_now(&res, two, "rbd", img[theirs], "b", NULL, NULL) < 0)
		fail_msg("the home's sync after: %s", ims_error_last());

	/* the second stops (and leaves the set) and its connection goes, as with its process:
	 * the first runs every pair, the second's held secondaries its own */
	ims_repl_sched_stop(two);
	ims_site_close(b2);
	for (int i = 0; i < 4; i++)
		wait_runner(one, img[i], "sched-share-one", 8);
	for (int i = 0; i < 4; i++)
		ims_repl_disable(NULL, one, "rbd", img[i], "b");
	ims_repl_sched_stop(one);
	alone = true;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lock_outlives_quiet_phase),
		cmocka_unit_test(test_pair_held_elsewhere),
		cmocka_unit_test(test_claims),
		cmocka_unit_test(test_asked_waits_for_other_cycle),
		cmocka_unit_test(test_member_set),
		cmocka_unit_test(test_pairs_shared),
	};
	return cmocka_run_group_tests(tests, setup, itest_teardown);
}
