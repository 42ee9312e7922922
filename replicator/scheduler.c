#include "replicator/scheduler.h"
#include "replicator/sched_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/opts.h"
#include "common/log.h"
#include "common/spec.h"
#include "common/threads.h"
#include "common/units.h"
#include "replicator/failover.h"
#include "replicator/group.h"
#include "replicator/replicator_internal.h"
#include "store/group.h"
#include "store/image.h"
#include "store/record.h"

/* An image's pair (groups: ims_repl_sched__find_locked). */
static pair *find_locked(ims_repl_sched *s, const char *pool, const char *image, const char *target)
{
	return ims_repl_sched__find_locked(s, pool, image, target, IMS_REPL_IMAGE);
}

/* ---------------------------------------------------------------------------------------- */
/* cycles */

typedef struct cycle_ctx {
	ims_repl_sched *s;
	const pair *p;
	rados_ioctx_t io; /* the lock's client, from take to unlock */
	char lock_name[700];
	int64_t renewed_ms;
	ims_progress_fn user;
	void *user_ctx;
	bool lost;    /* under held_lock: a renewal failed */
	int lost_err; /* under held_lock: the failed renewal's errno */
	bool claim;   /* a failover's claim (ims_repl_sched_claim()), not a cycle's */
	struct cycle_ctx *next_held; /* the running cycles whose locks the renewer keeps */
} cycle_ctx;

static int take_lock(ims_repl_sched *s, const cycle_ctx *c, uint8_t flags)
{
	if (c->claim && (flags & LIBRADOS_LOCK_FLAG_RENEW)) {
		/* a claim's renewal fails once its lock was gone a moment (expired or broken):
		 * another daemon may have run a step of the failover meanwhile; a cycle's lock
		 * is taken again instead (its seal checks the pair's state anew) */
		struct timeval tv = {(time_t)(s->o.lock_seconds ? s->o.lock_seconds : 60), 0};
		return rados_lock_exclusive(c->io, IMS_REPL_LOCK, c->lock_name, s->owner,
					    "failover", &tv, LIBRADOS_LOCK_FLAG_MUST_RENEW);
	}
	/* one held under our own cookie (this daemon's host and site) by another client is our
	 * previous run's, killed during a cycle: broken rather than waited for */
	char broken[256];
	int r = ims_record_lock(broken, sizeof(broken), c->io, IMS_REPL_LOCK, c->lock_name,
				s->owner, c->claim ? "failover" : "replication cycle",
				s->o.lock_seconds ? s->o.lock_seconds : 60,
				flags & LIBRADOS_LOCK_FLAG_RENEW);
	if (broken[0])
		ims_log_info("broke the replication lock of '%s' left by this daemon's "
			     "previous run (%s)",
			     c->lock_name, broken);
	return r;
}

/* How long a claim whose client was blocklisted waits for the site's probe to connect a new
 * one, to take the claim again there (ims_repl_sched_claim_held()). */
#define IMS_REPL_RETAKE_WAIT_S 15

static unsigned lock_seconds(const ims_repl_sched *s)
{
	return s->o.lock_seconds ? s->o.lock_seconds : 60;
}

/* The renewer keeps @p c's lock from now until release_lock(). */
static void hold_lock(ims_repl_sched *s, cycle_ctx *c)
{
	pthread_mutex_lock(&s->held_lock);
	c->lost = false;
	c->renewed_ms = ims_clock_unix_ms();
	c->next_held = s->held;
	s->held = c;
	pthread_mutex_unlock(&s->held_lock);
}

static void release_lock(ims_repl_sched *s, cycle_ctx *c)
{
	pthread_mutex_lock(&s->held_lock);
	for (cycle_ctx **pp = &s->held; *pp; pp = &(*pp)->next_held) {
		if (*pp == c) {
			*pp = c->next_held;
			break;
		}
	}
	pthread_mutex_unlock(&s->held_lock);
}

/* Under held_lock: renew @p c's lock now; a failure loses it for good (another daemon may
 * have taken the pair since). */
static bool renew_locked(ims_repl_sched *s, cycle_ctx *c)
{
	if (c->lost)
		return false;
	int r = take_lock(s, c, LIBRADOS_LOCK_FLAG_RENEW);
	if (r < 0) {
		c->lost = true;
		c->lost_err = r;
		ims_log_warning("the replication lock of '%s' could not be renewed: %s; %s",
				c->lock_name, ims_strerror(r),
				c->claim ? "the failover stops before its next step"
					 : "the cycle stops before it seals");
		return false;
	}
	c->renewed_ms = ims_clock_unix_ms();
	return true;
}

static void *renewer(void *arg)
{
	ims_repl_sched *s = arg;
	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		struct timespec until;
		unsigned every = lock_seconds(s) / 3 ? lock_seconds(s) / 3 : 1;
		ims_clock_after_ms(&until, (uint64_t)every * 1000u);
		while (!s->stopping &&
		       pthread_cond_timedwait(&s->cond, &s->lock, &until) != ETIMEDOUT)
			;
		if (s->stopping)
			break;
		pthread_mutex_unlock(&s->lock);
		int64_t due = ims_clock_unix_ms() - (int64_t)lock_seconds(s) * 1000 / 3 + 1000;
		pthread_mutex_lock(&s->held_lock);
		for (cycle_ctx *c = s->held; c; c = c->next_held)
			if (c->renewed_ms < due)
				renew_locked(s, c);
		pthread_mutex_unlock(&s->held_lock);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static int cycle_progress(void *ctx, uint64_t done, uint64_t total)
{
	cycle_ctx *c = ctx;
	pthread_mutex_lock(&c->s->held_lock);
	bool lost = c->lost;
	pthread_mutex_unlock(&c->s->held_lock);
	if (lost || c->s->stopping)
		return 1; /* lost the lock: another daemon may go on; stop here */
	return c->user ? c->user(c->user_ctx, done, total) : 0;
}

/* Right before a seal: still the owner? Renewed now, so that it holds for the seal. */
static int cycle_may_seal(void *ctx)
{
	cycle_ctx *c = ctx;
	pthread_mutex_lock(&c->s->held_lock);
	bool ok = renew_locked(c->s, c);
	pthread_mutex_unlock(&c->s->held_lock);
	return ok ? 0 : 1;
}

static ims_ratelimit *limit_for(ims_repl_sched *s, const char *target)
{
	if (!s->o.bandwidth)
		return NULL;
	pthread_mutex_lock(&s->lock);
	limit *l = s->limits;
	while (l && strcmp(l->target, target) != 0)
		l = l->next;
	if (!l && (l = calloc(1, sizeof(*l)))) {
		snprintf(l->target, sizeof(l->target), "%s", target);
		ims_ratelimit_init(&l->rl, s->o.bandwidth(s->o.peer_ctx, target), 0);
		l->next = s->limits;
		s->limits = l;
	}
	pthread_mutex_unlock(&s->lock);
	return l && l->rl.rate ? &l->rl : NULL;
}

/* Verify @p p against @p peer (the pair is marked running and its RADOS lock held). */
static int verify_pair(ims_repl_sched *s, pair *p, ims_site *peer, const ims_repl_verify_opts *opts,
		       cycle_ctx *c, ims_repl_verify_result **out)
{
	ims_repl_verify_opts vo = *opts;
	ims_repl_verify_result *v = NULL;
	vo.progress = cycle_progress; /* renews the lock; calls the caller's progress */
	vo.progress_ctx = c;
	c->user = opts->progress;
	c->user_ctx = opts->progress_ctx;
	int r = ims_repl_verify(&v, s->o.local, peer, p->pool, p->image, &vo);
	pthread_mutex_lock(&s->lock);
	if (r == 0)
		ims_repl_sched__record_verify_locked(s, p, v);
	pthread_mutex_unlock(&s->lock);
	if (r == 0 && out)
		*out = v;
	else
		ims_repl_verify_result_free(v);
	return r;
}

/* Say that @p fenced writers of the stale copy on @p peer were fenced (none: nothing). */
static void fenced_said(const char *key, ims_site *peer, unsigned fenced)
{
	ims_error_clear();
	if (fenced)
		ims_log_warning("replication of '%s': fenced %u writer(s) of the stale copy on "
				"site '%s'",
				key, fenced, ims_site_name(peer));
}

/*
 * The target holds an old primary that came back after a forced failover made this site the
 * primary. If it did not write after the newest snapshot both have, it becomes a secondary
 * again and the cycle goes on; if it did, the pair is in split-brain until `repl resync`.
 */
static int old_primary_returned(ims_repl_sched *s, pair *p, ims_site *peer, const char *key)
{
	ims_repl_divergence d;
	ims_repl_side me;
	char why[IMS_ERROR_MSG_MAX]; /* the cycle's error, said again if the copies cannot be
					compared */
	snprintf(why, sizeof(why), "%s", ims_error_last());
	/* its writers are stale: fenced before the look, so that nothing they write after it is
	 * rolled back unseen (what they wrote before is kept either way) */
	fenced_said(key, peer, ims_repl__fence_stale(key, peer, p->pool, p->image));
	int r = ims_repl_divergence_check(&d, s->o.local, peer, p->pool, p->image);
	if (r == 0 && !d.split_brain &&
	    (r = ims_repl_side_get(&me, s->o.local, p->pool, p->image)) == 0 &&
	    (r = ims_repl_rejoin(&d, s->o.local, peer, p->pool, p->image, me.generation)) == 0) {
		ims_log_info("replication of '%s': %s", key, d.plan);
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	bool first = r == 0 && !p->split_brain;
	if (r != 0)
		p->split_brain = false;
	pthread_mutex_unlock(&s->lock);
	if (r == 0) {
		/* the old primary came back from a forced failover with writes of its own: its
		 * writers were fenced above (the fence the failover could not do), and the copy is
		 * held against new ones, so that it stops diverging; what they wrote stays for
		 * resync */
		ims_repl__hold(peer, p->pool, p->image); /* until resync */
		ims_error_clear();
		pthread_mutex_lock(&s->lock);
		p->split_brain = true; /* shown once the copy is fenced and held */
		pthread_mutex_unlock(&s->lock);
		if (first)
			ims_log_warning("replication of '%s' is in split-brain: %s", key, d.plan);
		return ims_error_set(-EUCLEAN, "split-brain: %s; run `imgstore repl resync %s/%s`",
				     d.plan, p->pool, p->image);
	}
	return ims_error_set(-EUCLEAN, "%s; cannot compare the copies: %s", why, ims_error_last());
}

/*
 * The target holds a group's old primary that came back after a forced failover made this site
 * the group's primary (a member there is a primary of an older generation). Unwritten since the
 * cut both hold, it becomes a secondary again and the cycle goes on; written, the group is in
 * split-brain until `group repl resync` (which keeps what it wrote), and meanwhile its members'
 * writers are fenced and the members held against new ones, as an image's stale copy is.
 */
static int group_returned(ims_repl_sched *s, pair *p, ims_site *peer, const char *key)
{
	char why[IMS_ERROR_MSG_MAX], plan[768];
	snprintf(why, sizeof(why), "%s", ims_error_last());
	ims_group_info *gi = NULL;
	bool diverged = true;
	int r = ims_group_info_get(&gi, s->o.local, p->pool, p->image);
	if (r < 0)
		return ims_error_set(-EUCLEAN, "%s; cannot list its images: %s", why,
				     ims_error_last());
	/* its writers are stale: fenced before the look, so that nothing they write after it is
	 * rolled back unseen (what they wrote before is kept either way) */
	unsigned fenced = 0;
	for (size_t k = 0; k < gi->nmembers; k++)
		fenced +=
			ims_repl__fence_stale(key, peer, gi->members[k].pool, gi->members[k].image);
	fenced_said(key, peer, fenced);
	if ((r = ims_repl_group_diverged(&diverged, s->o.local, peer, p->pool, p->image)) < 0 ||
	    !diverged) {
		/* not (or not known to be) a split-brain */
		pthread_mutex_lock(&s->lock);
		p->split_brain = false;
		pthread_mutex_unlock(&s->lock);
	}
	if (r < 0) {
		ims_group_info_free(gi);
		return ims_error_set(-EUCLEAN, "%s; cannot compare the copies: %s", why,
				     ims_error_last());
	}
	if (!diverged) {
		uint64_t gen = 0; /* the group's: its members' highest */
		ims_repl_side me;
		for (size_t k = 0; r == 0 && k < gi->nmembers; k++)
			if ((r = ims_repl_side_get(&me, s->o.local, gi->members[k].pool,
						   gi->members[k].image)) == 0 &&
			    me.generation > gen)
				gen = me.generation;
		ims_group_info_free(gi);
		if (r == 0 && (r = ims_repl_group_rejoin(plan, sizeof(plan), s->o.local, peer,
							 p->pool, p->image, gen)) == 0) {
			ims_log_info("replication of '%s': %s", key, plan);
			return 0;
		}
		return ims_error_set(-EUCLEAN, "%s; cannot make it a secondary again: %s", why,
				     ims_error_last());
	}
	for (size_t k = 0; k < gi->nmembers; k++) /* held until resync */
		ims_repl__hold(peer, gi->members[k].pool, gi->members[k].image);
	ims_group_info_free(gi);
	ims_error_clear();
	pthread_mutex_lock(&s->lock);
	bool first = !p->split_brain;
	p->split_brain = true; /* shown once the copy is fenced and held */
	pthread_mutex_unlock(&s->lock);
	if (first)
		ims_log_warning("replication of '%s' is in split-brain: %s; the old primary was "
				"written after the cut both hold",
				key, why);
	return ims_error_set(-EUCLEAN,
			     "%s; run `imgstore group repl resync %s/%s` to make it a secondary "
			     "again (what it wrote since is kept as snapshots)",
			     why, p->pool, p->image);
}

static int count_one(uint64_t off, size_t len, int exists, void *arg)
{
	(void)off;
	(void)len;
	(void)exists;
	++*(uint64_t *)arg;
	return 0;
}

/* Take @p c's pair lock on the records' client (c->io, closed by the caller), and have the
 * renewer keep it until unlock_pair(). */
static int lock_pair(ims_repl_sched *s, cycle_ctx *c)
{
	int r = ims_repl_sched__io(&c->io, s);
	if (r < 0)
		return r;
	r = take_lock(s, c, 0);
	if (r == -EBUSY || r == -EEXIST)
		return ims_error_set(-EBUSY, "another daemon runs a cycle of '%s'", c->lock_name);
	if (r < 0)
		return ims_error_set(r, "cannot lock '%s': %s", c->lock_name, ims_strerror(r));
	hold_lock(s, c);
	return 0;
}

/* lock_pair() for a cycle or verify a caller asked for: a cycle another daemon of the site runs
 * of the pair now is waited for, as long as its lock could last (lock_seconds; the other's
 * cycle may be longer, then the caller is told so). @p progress is asked every half second
 * while waiting, and cancels with a nonzero answer (its own message kept, if it set one).
 * c->io is closed by the caller. */
static int lock_pair_wait(ims_repl_sched *s, cycle_ctx *c, ims_progress_fn progress, void *pctx)
{
	double until = ims_clock_mono_s() + lock_seconds(s);
	int r;
	while ((r = lock_pair(s, c)) == -EBUSY) {
		if (s->stopping)
			return ims_error_set(-ESHUTDOWN, "the daemon is stopping");
		if (ims_clock_mono_s() >= until)
			return ims_error_set(-EBUSY,
					     "another imgstored of site '%s' runs a cycle of '%s' "
					     "(waited %u s for it; try again after it ends)",
					     ims_site_name(s->o.local), c->lock_name,
					     lock_seconds(s));
		ims_site_ioctx_close(c->io);
		c->io = NULL;
		ims_error_clear();
		if (progress && progress(pctx, 0, 0) != 0)
			return ims_error_set_default(-ECANCELED,
						     "cancelled while another imgstored of the "
						     "site ran a cycle of '%s'",
						     c->lock_name);
		usleep(500000);
	}
	return r;
}

static void unlock_pair(ims_repl_sched *s, cycle_ctx *c)
{
	release_lock(s, c);
	rados_unlock(c->io, IMS_REPL_LOCK, c->lock_name, s->owner);
}

struct ims_repl_claim {
	cycle_ctx c;
};

int ims_repl_sched_claim(ims_repl_claim **out, ims_repl_sched *s, const char *kind,
			 const char *pool, const char *name, const char *what)
{
	ims_repl_claim *k = calloc(1, sizeof(*k));
	*out = NULL;
	if (!k)
		return -ENOMEM;
	k->c.s = s;
	k->c.claim = true;
	snprintf(k->c.lock_name, sizeof(k->c.lock_name), "handover:%s:%s/%s", kind, pool, name);
	int r = ims_repl_sched__io(&k->c.io, s);
	bool mine = false;
	if (r == 0) {
		/* looked for among this daemon's own first: ims_record_lock() takes a lock under
		 * our cookie for our previous run's, and would break it */
		pthread_mutex_lock(&s->held_lock);
		for (cycle_ctx *h = s->held; h && !mine; h = h->next_held)
			mine = strcmp(h->lock_name, k->c.lock_name) == 0;
		r = mine ? -EBUSY : take_lock(s, &k->c, 0);
		if (r == 0) {
			k->c.renewed_ms = ims_clock_unix_ms();
			k->c.next_held = s->held;
			s->held = &k->c;
		}
		pthread_mutex_unlock(&s->held_lock);
	}
	if (mine)
		ims_error_set(-EBUSY,
			      "this imgstored already runs a failover, failback or resync of %s; "
			      "`imgstore op ls` shows it",
			      what);
	else if (r == -EBUSY || r == -EEXIST)
		r = ims_error_set(
			-EBUSY,
			"another imgstored of site '%s' runs a failover, failback or resync "
			"of %s (it holds the RADOS lock '%s' of '%s', until its end or %u s "
			"after that daemon died); `imgstore op ls` on each daemon of the site "
			"shows it",
			ims_site_name(s->o.local), what, k->c.lock_name, IMS_REPL_LOCK,
			lock_seconds(s));
	else if (r < 0)
		r = ims_error_set(r, "cannot lock '%s': %s", k->c.lock_name, ims_strerror(r));
	if (r < 0) {
		if (k->c.io)
			ims_site_ioctx_close(k->c.io);
		free(k);
		return r;
	}
	*out = k;
	return 0;
}

/*
 * A claim whose client the cluster blocklisted (the site's probe connects a new one within
 * probe_interval): taken again on the new client, only if the lock is still held under this
 * daemon's cookie by the old one, so that no other daemon can have held it meanwhile (one that
 * expired, or another's, stays lost). Outside held_lock; the new client swapped in under it.
 */
static int retake_claim(ims_repl_sched *s, cycle_ctx *c)
{
	rados_ioctx_t io = NULL;
	int exclusive = 0, r;
	char tag[128], clients[256], cookies[256], addrs[256];
	size_t tl = sizeof(tag), cl = sizeof(clients), kl = sizeof(cookies), al = sizeof(addrs);
	if ((r = ims_repl_sched__io(&io, s)) < 0)
		return r;
	ssize_t n = rados_list_lockers(io, IMS_REPL_LOCK, c->lock_name, &exclusive, tag, &tl,
				       clients, &cl, cookies, &kl, addrs, &al);
	/* held by the old client itself (not only under our cookie: two daemons of one host
	 * without their own instance names share it) */
	char old_client[64];
	snprintf(old_client, sizeof(old_client), "client.%" PRIu64,
		 rados_get_instance_id(rados_ioctx_get_cluster(c->io)));
	if (n < 0)
		r = (int)n;
	else if (n != 1 || strcmp(cookies, s->owner) != 0 || strcmp(clients, old_client) != 0)
		r = -ENOENT; /* expired, or another's: lost */
	else if ((r = rados_break_lock(io, IMS_REPL_LOCK, c->lock_name, clients, cookies)) == 0) {
		struct timeval tv = {(time_t)lock_seconds(s), 0};
		r = rados_lock_exclusive(io, IMS_REPL_LOCK, c->lock_name, s->owner, "failover", &tv,
					 0);
	}
	if (r < 0) {
		ims_site_ioctx_close(io);
		return r;
	}
	pthread_mutex_lock(&s->held_lock);
	rados_ioctx_t old = c->io;
	c->io = io;
	c->lost = false;
	c->lost_err = 0;
	c->renewed_ms = ims_clock_unix_ms();
	pthread_mutex_unlock(&s->held_lock);
	ims_site_ioctx_close(old);
	ims_log_info("took the RADOS lock '%s' again on a new client (the old one was "
		     "blocklisted)",
		     c->lock_name);
	return 0;
}

int ims_repl_sched_claim_held(ims_repl_sched *s, ims_repl_claim *k)
{
	bool ok = false;
	int why = 0;
	for (unsigned i = 0;; i++) {
		pthread_mutex_lock(&s->held_lock);
		ok = renew_locked(s, &k->c);
		why = k->c.lost_err;
		pthread_mutex_unlock(&s->held_lock);
		/* blocklisted: once the probe has a new client (a few seconds), ours again */
		if (ok || why != -ESHUTDOWN || s->stopping || i >= IMS_REPL_RETAKE_WAIT_S)
			break;
		int r = retake_claim(s, &k->c);
		if (r == 0)
			return 0;
		if (r != -ESHUTDOWN) {
			why = r;
			break;
		}
		sleep(1);
	}
	if (ok)
		return 0;
	/* a lock gone or held by another (-ENOENT, -EBUSY: it expired or was broken) says more
	 * in words than as an errno */
	return ims_error_set(
		-ENOLCK,
		"this imgstored lost its RADOS lock '%s' (%s%s): another imgstored "
		"of the site may run this failover now; this one stops before its "
		"next step",
		k->c.lock_name,
		why == -ENOENT || why == -EBUSY || why == -EEXIST ? "it expired or was broken"
								  : "its renewal failed: ",
		why == -ENOENT || why == -EBUSY || why == -EEXIST ? "" : ims_strerror(why));
}

void ims_repl_sched_unclaim(ims_repl_sched *s, ims_repl_claim *k)
{
	if (!k)
		return;
	unlock_pair(s, &k->c);
	ims_site_ioctx_close(k->c.io);
	free(k);
}

/* The cycle proper, under the pair's lock: the sync, a returned old primary, the verify every
 * so many cycles. */
static int sync_locked(ims_repl_sched *s, pair *p, ims_site *peer, cycle_ctx *c,
		       ims_repl_result *res)
{
	ims_repl_opts ro = s->o.copy;
	ro.progress = cycle_progress;
	ro.progress_ctx = c;
	ro.may_seal = cycle_may_seal;
	ro.bandwidth = limit_for(s, p->target);
	ro.mark = p->unit == IMS_REPL_IMAGE ? &p->mark : NULL;
	int r = p->unit == IMS_REPL_GROUP
			? ims_repl_group_sync(res, s->o.local, peer, p->pool, p->image, &ro)
			: ims_repl_sync(res, s->o.local, peer, p->pool, p->image, &ro);
	if (r == -EUCLEAN && p->unit == IMS_REPL_IMAGE &&
	    old_primary_returned(s, p, peer, c->lock_name) == 0)
		r = ims_repl_sync(res, s->o.local, peer, p->pool, p->image, &ro);
	if (r == -EUCLEAN && p->unit == IMS_REPL_GROUP &&
	    group_returned(s, p, peer, c->lock_name) == 0)
		r = ims_repl_group_sync(res, s->o.local, peer, p->pool, p->image, &ro);
	bool verify = false;
	if (r == 0 && !res->unchanged && p->unit == IMS_REPL_IMAGE) {
		pthread_mutex_lock(&s->lock);
		verify = p->verify_every && ++p->since_verify >= p->verify_every;
		pthread_mutex_unlock(&s->lock);
	}
	if (verify) { /* its failure to run is not the cycle's: it runs after the next */
		ims_repl_verify_opts vo = IMS_REPL_VERIFY_OPTS_INIT;
		vo.snap = res->sealed;
		if (verify_pair(s, p, peer, &vo, c, NULL) < 0)
			ims_log_warning("verify of '%s' at '%s' did not run: %s", c->lock_name,
					res->sealed, ims_error_last());
		ims_error_clear();
	}
	return r;
}

/* A failover made this copy a secondary: its new primary replicates it now. Called with the
 * lock held; returns without it. */
static void became_secondary(ims_repl_sched *s, pair *p)
{
	p->present = false;
	p->disabled = true;
	p->disabled_ms = ims_clock_unix_ms();
	pthread_mutex_unlock(&s->lock);
	char key[700];
	ims_repl_sched__pair_key(key, sizeof(key), p);
	rados_ioctx_t io;
	if (ims_repl_sched__io(&io, s) == 0) {
		ims_repl_sched__drop_policy(io, key, true);
		ims_repl_sched__drop_status(io, key);
		ims_site_ioctx_close(io);
	}
	ims_log_info("'%s/%s' is a secondary here now: replication from site '%s' stops", p->pool,
		     p->image, ims_site_name(s->o.local));
}

/* What a cycle of @p p (its lock named @p key) ended with, under the lock. */
static void note_cycle_locked(ims_repl_sched *s, pair *p, int r, const ims_repl_result *res,
			      const char *key)
{
	if (r == 0) {
		p->sealed_ms = res->sealed_unix_ms;
		snprintf(p->last_sealed, sizeof(p->last_sealed), "%s", res->sealed);
		if (!res->unchanged) {
			p->last_bytes = res->bytes_copied;
			p->last_secs = res->seconds;
		}
		p->bytes_total += res->bytes_copied;
		p->secs_total += res->seconds;
		p->error[0] = '\0';
		p->split_brain = false;
		p->backoff = 0;
		p->syncs++;
		p->next_attempt_ms = 0;
		p->deferred_ms = 0;
		p->orphaned = false;
		if (p->elsewhere)
			ims_log_info("'%s' is replicated by this daemon now", key);
		p->elsewhere = false;
	} else if (r < 0 && res->refused == IMS_REPL_REFUSED_CYCLE) {
		/* the other daemon's cycle (or its look at whether it may take the pair): soon
		 * again */
		p->next_attempt_ms = ims_clock_unix_ms() + 1000;
	} else {
		snprintf(p->error, sizeof(p->error), "%s", ims_error_last());
		p->failures++;
		p->backoff = p->backoff ? (p->backoff * 2 > 60 ? 60 : p->backoff * 2) : 2;
		p->next_attempt_ms = ims_clock_unix_ms() + (int64_t)p->backoff * 1000;
		if (!s->stopping)
			ims_log_warning("replication of '%s' failed (retry in %us): %s", key,
					p->backoff, p->error);
	}
}

/*
 * Whether a cycle that failed with @p r found the secondary held against other writers: a
 * daemon keeps the secondary it replicates into open between cycles, so another imgstored of
 * the site may hold the pair. Then @p shared gets the pair's shared status, for
 * elsewhere_locked() to judge. Not under s->lock.
 */
static void load_shared(ims_repl_sched *s, const pair *p, pair *shared)
{
	memset(shared, 0, sizeof(*shared)); /* the pair's names (not changed after it is made) */
	memcpy(shared->pool, p->pool, sizeof(shared->pool));
	memcpy(shared->image, p->image, sizeof(shared->image));
	memcpy(shared->target, p->target, sizeof(shared->target));
	shared->unit = p->unit;
	shared->sealed_ms = -1;
	ims_repl_sched__load_status(s, shared);
}

static bool held_maybe_elsewhere(ims_repl_sched *s, int r, const ims_repl_result *res,
				 const pair *p, pair *shared)
{
	if (r != -EBUSY || res->refused != IMS_REPL_REFUSED_HELD)
		return false;
	load_shared(s, p, shared);
	return true;
}

/* Under the lock: whether @p p is an image pair whose home is this daemon among two or more
 * of the site (ims_repl_sched__assign()). */
static bool shared_home_locked(const ims_repl_sched *s, const pair *p)
{
	return p->unit == IMS_REPL_IMAGE && p->home == 0 && s->nmembers >= 2 && s->self >= 0;
}

/* The lag past a pair's due look at which a daemon that is not its home runs it anyway (its
 * home seals nothing): the shorter of the lock expiry and a quarter of the RPO, at least 1 s. */
static int64_t home_grace_ms(const ims_repl_sched *s, uint32_t rpo)
{
	int64_t grace = (int64_t)rpo * 250;
	if (grace > (int64_t)lock_seconds(s) * 1000)
		grace = (int64_t)lock_seconds(s) * 1000;
	return grace < 1000 ? 1000 : grace;
}

/*
 * Under the lock: whether @p p is kept by another daemon: its secondary is held while the
 * shared status shows a seal within the RPO (a secondary held by anything else, a writer that
 * is no daemon or a daemon that stopped sealing, stays a failure). Then this daemon takes that
 * status as its view (the status is the other daemon's to write) and looks again in a quarter
 * of the RPO (or a third of the lock expiry, if shorter), to take the pair over if that one
 * stops.
 */
static bool elsewhere_locked(const ims_repl_sched *s, pair *p, const pair *shared, const char *key)
{
	if (!(shared->sealed_ms > 0 &&
	      ims_clock_unix_ms() - shared->sealed_ms <= (int64_t)p->rpo * 1000))
		return false;
	if (!p->elsewhere)
		ims_log_info("'%s' is replicated by another imgstored of this site (it holds the "
			     "secondary); this daemon takes it over if that one stops",
			     key);
	p->elsewhere = true;
	if (shared->sealed_ms > p->sealed_ms) {
		p->sealed_ms = shared->sealed_ms;
		snprintf(p->last_sealed, sizeof(p->last_sealed), "%s", shared->last_sealed);
		p->last_bytes = shared->last_bytes;
		p->last_secs = shared->last_secs;
	}
	p->error[0] = '\0';
	p->backoff = 0;
	/* a quarter of the RPO or a third of the lock expiry, whichever is shorter, 1 to 30 s:
	 * the holder's death shows once its lock lapses */
	int64_t wait = (int64_t)p->rpo * 250;
	if (wait > (int64_t)lock_seconds(s) * 1000 / 3)
		wait = (int64_t)lock_seconds(s) * 1000 / 3;
	/* the pair's home is this daemon: the holder lets go at its next due look
	 * (leave_to_home()), so look again soon */
	if (shared_home_locked(s, p) && wait > 2000)
		wait = 2000;
	/* its home left the set (killed): the secondary is free once librbd finds its lock's
	 * owner dead */
	if (p->orphaned && ims_clock_unix_ms() - p->orphaned_ms > 60000)
		p->orphaned = false; /* held still: not by the daemon that left, it seems */
	if (p->orphaned && wait > 1000)
		wait = 1000;
	p->next_attempt_ms = ims_clock_unix_ms() + (wait < 1000	   ? 1000
						    : wait > 30000 ? 30000
								   : wait);
	return true;
}

/*
 * A scheduled look at a pair another daemon keeps: whether its shared status shows a seal (or
 * an unchanged check, which the holder records too) younger than the lock expiry and than 0.6 x
 * the RPO (a live holder records one about every half RPO). Then the holder is alive and the
 * pair stays its own: this daemon takes that status and looks again later, without a cycle
 * (which would open the images only to find the secondary held). A holder that stopped shows
 * no newer seal, and the next look tries the cycle.
 */
static bool holder_alive(ims_repl_sched *s, pair *p, uint32_t rpo, const char *key)
{
	pair shared;
	load_shared(s, p, &shared);
	int64_t fresh = (int64_t)lock_seconds(s) * 1000;
	if (fresh > (int64_t)rpo * 600)
		fresh = (int64_t)rpo * 600;
	if (shared.sealed_ms <= 0 || ims_clock_unix_ms() - shared.sealed_ms > fresh)
		return false;
	pthread_mutex_lock(&s->lock);
	bool alive = elsewhere_locked(s, p, &shared, key);
	pthread_mutex_unlock(&s->lock);
	return alive;
}

/*
 * A scheduled look at an image pair whose home is another daemon of the site, @p home: while
 * the pair's shared status shows a seal (or an unchanged check) younger than its due lag plus
 * home_grace_ms(), the home runs it: this daemon takes that status as its view, lets go of the
 * secondary if it holds it (the home's next cycle needs it), and looks again when the grace
 * would be over. A pair never sealed is left to its home for the grace once. Past that, the
 * home seals nothing (it is busy, or cannot reach the target, or died and is still counted):
 * this daemon runs the cycle. Not under s->lock.
 */
/* Let go of the secondary of @p p if this daemon holds it: @p home's cycles need it. */
static void let_go(ims_repl_sched *s, const pair *p, const char *key, const char *home)
{
	ims_site *peer = NULL;
	if (s->o.peer(s->o.peer_ctx, p->target, &peer) == 0 &&
	    ims_site_guard_let_go(peer, p->pool, p->image))
		ims_log_info("'%s': let go of the secondary on site '%s' for its home imgstored "
			     "'%s'",
			     key, p->target, home);
}

static bool leave_to_home(ims_repl_sched *s, pair *p, uint32_t rpo, const char *key,
			  const char *home)
{
	pair shared;
	load_shared(s, p, &shared);
	int64_t t = ims_clock_unix_ms();
	int64_t grace = home_grace_ms(s, rpo);
	int64_t until;
	pthread_mutex_lock(&s->lock);
	if (p->home == 0) { /* the set changed meanwhile: its home is this daemon now */
		pthread_mutex_unlock(&s->lock);
		return false;
	}
	if (shared.sealed_ms > 0) {
		until = shared.sealed_ms +
			ims_repl_sched__due_ms(rpo, shared.last_secs,
					       s->o.tick_ms ? s->o.tick_ms : 500) +
			grace;
		p->deferred_ms = 0;
	} else {
		if (!p->deferred_ms)
			p->deferred_ms = t;
		until = p->deferred_ms + grace;
	}
	if (t >= until) {
		/* at most every 10 minutes a pair: the shared status does not say who sealed, so a
		 * home that seals nothing and this daemon's own cycles alternate */
		bool say = !p->overdue_said_ms || t - p->overdue_said_ms > 600000;
		if (say)
			p->overdue_said_ms = t;
		pthread_mutex_unlock(&s->lock);
		if (say)
			ims_log_info("'%s': its home imgstored '%s' of this site sealed nothing in "
				     "time; this daemon runs its cycles until it does",
				     key, home);
		return false;
	}
	if (!p->elsewhere)
		ims_log_info(
			"'%s' is replicated by imgstored '%s' of this site (its home among the "
			"site's daemons); this daemon runs it if that one stops",
			key, home);
	p->elsewhere = true;
	if (shared.sealed_ms > p->sealed_ms) {
		p->sealed_ms = shared.sealed_ms;
		snprintf(p->last_sealed, sizeof(p->last_sealed), "%s", shared.last_sealed);
		p->last_bytes = shared.last_bytes;
		p->last_secs = shared.last_secs;
	}
	p->error[0] = '\0';
	p->backoff = 0;
	p->next_attempt_ms = until;
	pthread_mutex_unlock(&s->lock);
	let_go(s, p, key, home); /* held since this daemon's last cycle of the pair */
	ims_error_clear();
	return true;
}

/* One cycle of @p p (marked running by the caller). */
static int run_cycle(ims_repl_sched *s, pair *p, ims_progress_fn progress, void *pctx,
		     ims_repl_result *out)
{
	ims_site *peer = NULL;
	ims_repl_result res;
	cycle_ctx c = {.s = s, .p = p, .user = progress, .user_ctx = pctx};
	int r;

	memset(&res, 0, sizeof(res));
	ims_repl_sched__pair_key(c.lock_name, sizeof(c.lock_name), p);
	ims_error_clear();
	if (out) /* asked for (a sync, a snapshot sealed on the targets): a full look */
		p->mark.valid = false;
	pthread_mutex_lock(&s->lock);
	bool elsewhere = !out && p->elsewhere;
	/* a pair whose home is this daemon is tried at once (its holder lets go as soon as it
	 * sees the home), and so is one whose home left the site's daemons */
	bool try_now = shared_home_locked(s, p) || p->orphaned;
	char home[IMS_REPL_OWNER_LEN] = "";
	const char *h = ims_repl_sched__home_locked(s, p);
	if (h)
		memcpy(home, h, sizeof(home));
	if (!out && p->moved) { /* a full look: its secondary opened (and held, if its own) */
		p->mark.valid = false;
		p->moved = false;
	}
	uint32_t rpo = p->rpo;
	pthread_mutex_unlock(&s->lock);
	if (!out && home[0] && leave_to_home(s, p, rpo, c.lock_name, home))
		return 0;
	if (elsewhere && !try_now && holder_alive(s, p, rpo, c.lock_name))
		return 0;
	if ((r = s->o.peer(s->o.peer_ctx, p->target, &peer)) == 0) {
		/* asked for by a caller that can cancel (@p out, @p progress): waits for another
		 * daemon's cycle; scheduled, or asked without a way to cancel: leaves it */
		if ((r = out && progress ? lock_pair_wait(s, &c, progress, pctx)
					 : lock_pair(s, &c)) == 0) {
			r = sync_locked(s, p, peer, &c, &res);
			/* asked for (a sync, a failover's last one) and the secondary held: by the
			 * pair's home or the last daemon that ran it, when that is another
			 * imgstored of this site, which lets go when asked (its cycles wait for the
			 * pair lock this one holds) */
			if (out && !s->o.alone && r == -EBUSY &&
			    res.refused == IMS_REPL_REFUSED_HELD &&
			    ims_repl_sched__ask_let_go(s, c.lock_name)) {
				ims_error_clear();
				memset(&res, 0, sizeof(res));
				r = sync_locked(s, p, peer, &c, &res);
			}
			unlock_pair(s, &c);
		} else if (r == -EBUSY || r == -ECANCELED || (r == -ESHUTDOWN && s->stopping)) {
			/* another daemon's cycle, or the wait for it cancelled or ended by a stop:
			 * no cycle of this daemon's, nothing of it to record */
			res.refused = IMS_REPL_REFUSED_CYCLE;
		}
	}
	ims_site_ioctx_close(c.io);
	/* a cycle of a pair whose home is another daemon (asked for here, or its home sealed
	 * nothing in time): a daemon keeps only its own pairs' secondaries */
	if (home[0] && peer) /* (the peer's lookup sets no error once it succeeded) */
		let_go(s, p, c.lock_name, home);
	/* asked of a daemon that is not the pair's home, while the home holds the secondary: say
	 * which daemon to ask */
	if (out && home[0] && r == -EBUSY && res.refused == IMS_REPL_REFUSED_HELD)
		ims_error_set(
			-EBUSY,
			"'%s' is replicated by imgstored '%s' of this site, which holds its "
			"secondary on site '%s': ask that daemon (`repl status` names it, BY)",
			c.lock_name, home, p->target);

	if (r == 0 && p->unit == IMS_REPL_IMAGE &&
	    ((!res.unchanged && res.sealed[0]) || res.nshipped) && s->o.sealed)
		s->o.sealed(s->o.sealed_ctx, p->target, p->pool, p->image, &res);
	if (r == 0 && p->unit == IMS_REPL_GROUP && !res.unchanged && res.sealed[0] &&
	    s->o.sealed_group)
		s->o.sealed_group(s->o.sealed_ctx, p->target, p->pool, p->image, res.sealed);
	if (r == 0 && res.resumed)
		ims_log_info("replication of '%s' resumed a cut cycle from its checkpoint and "
			     "sealed '%s' "
			     "(%" PRIu64 " bytes copied after the resume)",
			     c.lock_name, res.sealed, res.bytes_copied);
	pair shared;
	bool maybe = r < 0 && held_maybe_elsewhere(s, r, &res, p, &shared);
	bool other_cycle = r < 0 && res.refused == IMS_REPL_REFUSED_CYCLE;
	pthread_mutex_lock(&s->lock);
	if (maybe && elsewhere_locked(s, p, &shared, c.lock_name)) {
		pthread_mutex_unlock(&s->lock);
	} else if (other_cycle) { /* the pair's status is the other daemon's to write */
		note_cycle_locked(s, p, r, &res, c.lock_name);
		pthread_mutex_unlock(&s->lock);
	} else if (r == -EBUSY && res.refused == IMS_REPL_REFUSED_SECONDARY) {
		became_secondary(s, p);
	} else {
		note_cycle_locked(s, p, r, &res, c.lock_name);
		pair copy = *p;
		pthread_mutex_unlock(&s->lock);
		ims_repl_sched__save_status(s, &copy);
		/* the target learns the pair's RPO once (again after a change): a forced failover
		 * there sets the way back with it, not with the daemon's default */
		if (r == 0 && peer && copy.reverse_rpo != copy.rpo &&
		    ims_repl_sched__put_reverse(s, peer, &copy) == 0) {
			pthread_mutex_lock(&s->lock);
			p->reverse_rpo = copy.rpo;
			pthread_mutex_unlock(&s->lock);
		}
	}
	if (out)
		*out = res;
	return r;
}

static paused *find_paused_locked(ims_repl_sched *s, ims_repl_unit unit, const char *pool,
				  const char *name)
{
	for (paused *x = s->paused; x; x = x->next)
		if (x->unit == unit && strcmp(x->pool, pool) == 0 && strcmp(x->image, name) == 0)
			return x;
	return NULL;
}

/* Whether a cycle of @p p waits for a failover: its scheduled cycles do (@p any), a sync asked
 * now only if it is to another target than the failover's. */
static bool paused_locked(ims_repl_sched *s, const pair *p, bool any)
{
	if (!s->paused)
		return false;
	paused *x = find_paused_locked(s, p->unit, p->pool, p->image);
	return x && (any || strcmp(x->own, p->target) != 0);
}

/* Wait until no cycle of @p p runs and no failover of its image to another target holds it,
 * then mark it running: the caller works on the pair alone until release_pair(). Called and
 * returns with s->lock held; -ESHUTDOWN (with the error set) when the daemon stops. With
 * @p progress, it is asked every half second meanwhile (without s->lock), and cancels with a
 * nonzero answer (-ECANCELED). */
static int claim_pair_locked(ims_repl_sched *s, pair *p, ims_progress_fn progress, void *pctx)
{
	while ((p->running || paused_locked(s, p, false)) && !s->stopping) {
		if (!progress) {
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		struct timespec until;
		ims_clock_after_ms(&until, 500);
		pthread_cond_timedwait(&s->cond, &s->lock, &until);
		if (!(p->running || paused_locked(s, p, false)) || s->stopping)
			break;
		pthread_mutex_unlock(&s->lock);
		ims_error_clear();
		int stop = progress(pctx, 0, 0);
		pthread_mutex_lock(&s->lock);
		if (stop)
			return ims_error_set_default(-ECANCELED,
						     "cancelled while a cycle or failover of "
						     "'%s/%s' ran on this imgstored",
						     p->pool, p->image);
	}
	if (s->stopping)
		return ims_error_set(-ESHUTDOWN, "the daemon is stopping");
	p->running = true;
	return 0;
}

static void release_pair(ims_repl_sched *s, pair *p)
{
	pthread_mutex_lock(&s->lock);
	p->running = false;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

int ims_repl_sched_pause(ims_repl_sched *s, ims_repl_unit unit, const char *pool, const char *name,
			 const char *own)
{
	pthread_mutex_lock(&s->lock);
	paused *x = find_paused_locked(s, unit, pool, name);
	if (!x) {
		if (!(x = calloc(1, sizeof(*x)))) {
			pthread_mutex_unlock(&s->lock);
			return -ENOMEM;
		}
		x->unit = unit;
		snprintf(x->pool, sizeof(x->pool), "%s", pool);
		snprintf(x->image, sizeof(x->image), "%s", name);
		snprintf(x->own, sizeof(x->own), "%s", own ? own : "");
		x->next = s->paused;
		s->paused = x;
	}
	x->count++;
	/* the cycles already running end first: none holds the image or group while it fails
	 * over */
	for (bool busy = true; busy && !s->stopping;) {
		busy = false;
		for (pair *p = s->pairs; p; p = p->next)
			busy |= p->unit == unit && p->running && strcmp(p->pool, pool) == 0 &&
				strcmp(p->image, name) == 0;
		if (busy)
			pthread_cond_wait(&s->cond, &s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void ims_repl_sched_resume(ims_repl_sched *s, ims_repl_unit unit, const char *pool,
			   const char *name)
{
	pthread_mutex_lock(&s->lock);
	for (paused **pp = &s->paused; *pp; pp = &(*pp)->next) {
		paused *x = *pp;
		if (x->unit != unit || strcmp(x->pool, pool) != 0 || strcmp(x->image, name) != 0)
			continue;
		if (--x->count == 0) {
			*pp = x->next;
			free(x);
		}
		break;
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Whether @p p's target does not answer its probes: then no cycle starts (it would only hold a
 * worker until the cluster's timeout, the workers stay free for targets that answer, a site
 * failover's among them), and the pair is looked at again soon. */
static bool target_down_locked(ims_repl_sched *s, pair *p, int64_t t)
{
	if (!s->o.site_up || s->o.site_up(s->o.peer_ctx, p->target))
		return false;
	p->next_attempt_ms = t + 2000;
	p->waited_target = true;
	if (!p->error[0])
		snprintf(p->error, sizeof(p->error),
			 "site '%s' does not answer; the next cycle waits for it", p->target);
	return true;
}

/*
 * A worker runs the queued cycles, the most urgent first. A takeover worker runs only the
 * orphaned pairs (their home left the site's daemons, killed or blocklisted): a takeover runs a
 * cycle of each of the gone daemon's pairs at once, each one slower than usual (librbd fences
 * the dead owner of the secondary's lock through the monitors before it breaks it, about a
 * second), and the most urgent first would be all of them, while this daemon's own pairs come
 * due behind them and go over their RPO. The takeover workers (as many as the workers) give the
 * takeover cycles of its own; the workers take the other pairs first, orphans only when no other
 * pair is queued. Not started for a scheduler alone (outside the set: no pair is orphaned).
 */
static void work(ims_repl_sched *s, bool takeover)
{
	pthread_mutex_lock(&s->lock);
	for (;;) {
		size_t i;
		while (!s->stopping &&
		       (i = ims_repl_sched__next(s->queue, s->nqueue, takeover)) >= s->nqueue)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->stopping)
			break;
		pair *p = s->queue[i];
		memmove(s->queue + i, s->queue + i + 1, (s->nqueue - i - 1) * sizeof(*s->queue));
		s->nqueue--;
		p->queued = false;
		if (p->running || !p->present || paused_locked(s, p, true) ||
		    target_down_locked(s, p, ims_clock_unix_ms()))
			continue;
		p->running = true;
		pthread_mutex_unlock(&s->lock);
		run_cycle(s, p, NULL, NULL, NULL);
		pthread_mutex_lock(&s->lock);
		p->running = false;
		p->waited_target = false;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
}

static void *worker(void *arg)
{
	work(arg, false);
	return NULL;
}

static void *takeover_worker(void *arg)
{
	work(arg, true);
	return NULL;
}

static void enqueue_locked(ims_repl_sched *s, pair *p)
{
	if (p->queued || p->running)
		return;
	if (s->nqueue == s->capqueue) {
		size_t cap = s->capqueue ? 2 * s->capqueue : 64;
		pair **q = realloc(s->queue, cap * sizeof(*q));
		if (!q)
			return; /* tried again on the next tick */
		s->queue = q;
		s->capqueue = cap;
	}
	s->queue[s->nqueue++] = p;
	p->queued = true;
	pthread_cond_broadcast(&s->cond);
}

/* How long a daemon's place among the site's daemons lasts unrenewed: half the lock expiry,
 * at least 3 s. A daemon killed is out of the set after it, and its pairs are the others' at
 * their next look (every third of it): a takeover well within two lock expiries. */
static unsigned member_seconds(const ims_repl_sched *s)
{
	return lock_seconds(s) / 2 > 3 ? lock_seconds(s) / 2 : 3;
}

/*
 * The site's daemons, every third of member_seconds(): this one's place in the set renewed
 * (taken at its first look), the members read. A member gone since the last look leaves its pairs
 * orphaned: their new home runs them at once instead of at their due look. Not under s->lock.
 */
static void assign_locked(ims_repl_sched *s);

static void members_look(ims_repl_sched *s, int64_t t)
{
	if (s->o.alone)
		return;
	int64_t every = (int64_t)member_seconds(s) * 1000 / 3;
	if (t - s->members_ms < (every < 1000 ? 1000 : every))
		return;
	s->members_ms = t;
	char got[IMS_REPL_MEMBERS_MAX][IMS_REPL_OWNER_LEN];
	ssize_t n = -1;
	int jr = -1;
	rados_ioctx_t io;
	if (ims_repl_sched__io(&io, s) == 0) {
		jr = ims_record_join(io, IMS_REPL_MEMBERS, IMS_REPL_MEMBER_LOCK, s->owner,
				     "a replicating imgstored", member_seconds(s));
		n = ims_record_members(&got[0][0], IMS_REPL_OWNER_LEN, IMS_REPL_MEMBERS_MAX, io,
				       IMS_REPL_MEMBERS, IMS_REPL_MEMBER_LOCK);
		ims_site_ioctx_close(io);
	}
	ims_error_clear();
	pthread_mutex_lock(&s->lock);
	if (jr == 0 && !s->joined)
		ims_log_debug("replication: joined the site's replicating daemons as '%s'",
			      s->owner);
	s->joined = s->joined || jr == 0;
	if (n >= 0) {
		s->members_ok_ms = t;
		s->members_failing = false;
	} else if (t - s->members_ok_ms < (int64_t)member_seconds(s) * 1000) {
		/* one failed look is no change: the others' holds outlive it as long as ours */
		pthread_mutex_unlock(&s->lock);
		return;
	}
	size_t count = n > 0 ? (size_t)n : 0;
	int self = -1;
	for (size_t i = 0; i < count; i++)
		if (strcmp(got[i], s->owner) == 0)
			self = (int)i;
	if (n < 0 && !s->members_failing) {
		s->members_failing = true;
		ims_log_warning("replication: cannot read the site's replicating daemons (%s); "
				"this daemon runs every pair it knows",
				ims_strerror((int)n));
	}
	bool changed = count != s->nmembers || self != s->self;
	for (size_t i = 0; i < count && !changed; i++)
		changed = strcmp(got[i], s->members[i]) != 0;
	if (!changed) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	/* the pairs of a member that left: run now by their new home */
	for (pair *p = s->pairs; p; p = p->next) {
		if (p->home == 0 || p->home > s->nmembers)
			continue;
		bool stays = false;
		for (size_t i = 0; i < count && !stays; i++)
			stays = strcmp(got[i], s->members[p->home - 1]) == 0;
		if (!stays && n >= 0) { /* (a set that cannot be read says nobody left) */
			p->orphaned = true;
			p->orphaned_ms = t;
			p->next_attempt_ms = 0;
		}
	}
	for (size_t i = 0; i < count; i++) {
		memcpy(s->members[i], got[i], IMS_REPL_OWNER_LEN);
		s->member_hash[i] = ims_repl_sched__hash(got[i]);
	}
	bool shared_before = s->nmembers >= 2 && s->self >= 0;
	s->nmembers = count;
	s->self = self;
	s->members_gen++;
	assign_locked(s); /* no look between with old homes and new members */
	/* sharing from now on: this daemon's pairs are looked at once, so that it holds the
	 * secondaries of those another member lets go of now (a change while sharing: the pairs
	 * whose home changed are, by assign_locked()) */
	for (pair *p = s->pairs; p && !shared_before && count >= 2 && self >= 0; p = p->next)
		if (p->present && p->unit == IMS_REPL_IMAGE && p->home == 0) {
			p->moved = true;
			p->next_attempt_ms = 0;
		}
	char list[IMS_REPL_MEMBERS_MAX * 40] = "";
	size_t used = 0;
	for (size_t i = 0; i < count && used < sizeof(list); i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s'%s'", i ? ", " : "",
					 s->members[i]);
	if (n >= 0 && count >= 2 && self >= 0)
		ims_log_info("replication: %zu imgstored of this site share the pairs: %s", count,
			     list);
	else
		ims_log_info("replication: this daemon runs every pair it knows (%zu of the site's "
			     "daemons seen%s%s)",
			     count, count ? ": " : "", list);
	pthread_mutex_unlock(&s->lock);
}

/* Under the lock: the home of every image pair among the site's daemons (pair.home). Computed
 * again only when the set or the present image pairs changed since the last time (the homes are
 * a function of both): the loop calls this every tick. */
static void assign_locked(ims_repl_sched *s)
{
	size_t n = 0;
	uint64_t digest = 0;
	for (pair *p = s->pairs; p; p = p->next) {
		if (!(p->present && p->unit == IMS_REPL_IMAGE))
			continue;
		if (!p->key_hash) {
			char key[700];
			ims_repl_sched__pair_key(key, sizeof(key), p);
			p->key_hash = ims_repl_sched__hash(key);
		}
		digest += p->key_hash; /* order-free (a pair is one struct per key) */
		n++;
	}
	if (s->homes_members_gen == s->members_gen && s->homes_n == n && s->homes_keys == digest)
		return;
	uint64_t *keys = NULL;
	unsigned *home = NULL;
	bool shared = s->nmembers >= 2 && s->self >= 0 && n > 0;
	if (shared) {
		keys = malloc(n * sizeof(*keys));
		home = malloc(n * sizeof(*home));
		shared = keys && home;
	}
	size_t i = 0;
	for (pair *p = s->pairs; p && shared; p = p->next)
		if (p->present && p->unit == IMS_REPL_IMAGE)
			keys[i++] = p->key_hash;
	if (shared && ims_repl_sched__assign(home, keys, n, s->member_hash, s->nmembers) < 0)
		shared = false;
	i = 0;
	for (pair *p = s->pairs; p; p = p->next) {
		unsigned now = 0; /* the same walk as the keys': the i-th image pair has home[i] */
		if (p->present && p->unit == IMS_REPL_IMAGE && shared) {
			now = home[i] == (unsigned)s->self ? 0 : home[i] + 1;
			i++;
		}
		/* this daemon's before and another's now, or the reverse: looked at once, not at
		 * its due look: the old home lets go of the secondary, the new one takes it (and
		 * tries every 2 s while the old one still holds it) */
		if (s->nmembers >= 2 && (p->home == 0) != (now == 0)) {
			p->moved = true;
			p->next_attempt_ms = 0;
		}
		p->home = now;
		if (now != 0)
			p->orphaned = false;
	}
	free(keys);
	free(home);
	if (shared ||
	    !(s->nmembers >= 2 && s->self >= 0 && n > 0)) { /* (not after a failed malloc) */
		s->homes_members_gen = s->members_gen;
		s->homes_n = n;
		s->homes_keys = digest;
	}
}

static void *loop(void *arg)
{
	ims_repl_sched *s = arg;
	unsigned tick = s->o.tick_ms ? s->o.tick_ms : 500;
	for (;;) {
		int64_t t = ims_clock_unix_ms();
		if (t - s->last_refresh_ms > 5000) {
			ims_repl_sched__refresh(s);
			s->last_refresh_ms = t;
		}
		if (ims_repl_sched__watch_needed(s, t))
			ims_repl_sched__watch(s);
		members_look(s, t);
		pthread_mutex_lock(&s->lock);
		if (s->stopping) {
			pthread_mutex_unlock(&s->lock);
			break;
		}
		assign_locked(s);
		/* due images, oldest sealed first: the one furthest behind goes first */
		for (;;) {
			pair *best = NULL;
			for (pair *p = s->pairs; p; p = p->next) {
				if (!p->present || p->queued || p->running ||
				    t < p->next_attempt_ms || paused_locked(s, p, true))
					continue;
				int64_t lag = p->sealed_ms < 0 ? INT64_MAX : t - p->sealed_ms;
				/* a pair whose target did not answer runs as soon as it does,
				 * whatever its RPO: it catches up, and a returned old primary that
				 * wrote is found split-brain now, not an RPO later */
				if (p->sealed_ms >= 0 && !p->waited_target &&
				    !(p->orphaned && p->home == 0) && !p->moved &&
				    !(p->elsewhere && shared_home_locked(s, p)) &&
				    lag < ims_repl_sched__due_ms(p->rpo, p->last_secs, tick))
					continue;
				if (target_down_locked(s, p, t))
					continue;
				if (!best || p->sealed_ms < best->sealed_ms)
					best = p;
			}
			if (!best)
				break;
			enqueue_locked(s, best);
		}
		ims_repl_sched__check_rpo_locked(s, t);
		struct timespec until;
		ims_clock_after_ms(&until, tick);
		pthread_cond_timedwait(&s->cond, &s->lock, &until);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

/* ---------------------------------------------------------------------------------------- */

int ims_repl_sched_start(ims_repl_sched **out, const ims_repl_sched_opts *o)
{
	ims_repl_sched *s;
	int r;
	if ((r = IMS_OPTS_CHECK(o, IMS_REPL_SCHED_OPTS_VERSION, "scheduler")) < 0)
		return r;
	if (!o->local || !o->pool || !o->peer)
		return ims_error_set(-EINVAL, "scheduler options are incomplete");
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->o = *o;
	snprintf(s->owner, sizeof(s->owner), "%s", o->owner ? o->owner : "imgstored");
	s->self = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_mutex_init(&s->refresh_lock, NULL);
	pthread_mutex_init(&s->held_lock, NULL);
	rados_ioctx_t io;
	if ((r = ims_site_ioctx(&io, o->local, o->pool)) < 0) /* the pool of the records exists */
		goto fail;
	ims_site_ioctx_close(io);
	ims_repl_sched__refresh(s);
	s->last_refresh_ms = ims_clock_unix_ms();
	ims_repl_sched__watch(s);
	if ((r = ims_threads_start(&s->threads, o->workers ? o->workers : 4, worker, s,
				   "replication workers")) < 0 ||
	    (!o->alone &&
	     (r = ims_threads_start(&s->threads, o->workers ? o->workers : 4, takeover_worker, s,
				    "replication takeover workers")) < 0) ||
	    (r = ims_threads_start(&s->threads, 1, renewer, s, "the replication lock renewer")) <
		    0 ||
	    (r = ims_threads_start(&s->threads, 1, loop, s, "the replication scheduler")) < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	ims_repl_sched_stop(s);
	return r;
}

void ims_repl_sched_stop(ims_repl_sched *s)
{
	if (!s)
		return;
	ims_threads_stop(&s->threads, &s->lock, &s->cond, &s->stopping);
	ims_repl_sched__unwatch(s); /* no refresh from a notify after this */
	rados_ioctx_t io;
	if (s->joined && ims_repl_sched__io(&io, s) == 0) { /* the others take its pairs now */
		ims_record_leave(io, IMS_REPL_MEMBERS, IMS_REPL_MEMBER_LOCK, s->owner);
		ims_site_ioctx_close(io);
	}
	while (s->pairs) {
		pair *n = s->pairs->next;
		free(s->pairs);
		s->pairs = n;
	}
	while (s->paused) {
		paused *n = s->paused->next;
		free(s->paused);
		s->paused = n;
	}
	while (s->limits) {
		limit *n = s->limits->next;
		ims_ratelimit_destroy(&s->limits->rl);
		free(s->limits);
		s->limits = n;
	}
	free(s->queue);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->refresh_lock);
	pthread_mutex_destroy(&s->held_lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

static int refuse_group_member(ims_repl_sched *s, const char *pool, const char *image);

/* Record in memory a pair (image or group) whose policy was just saved, and queue a cycle. */
static int enable_pair(ims_repl_sched *s, const pair *tmp, ims_repl_status *out)
{
	pthread_mutex_lock(&s->lock);
	pair *p = ims_repl_sched__find_locked(s, tmp->pool, tmp->image, tmp->target, tmp->unit);
	if (!p) {
		if (!(p = calloc(1, sizeof(*p)))) {
			pthread_mutex_unlock(&s->lock);
			return -ENOMEM;
		}
		*p = *tmp;
		p->sealed_ms = -1;
		p->next = s->pairs;
		s->pairs = p;
	}
	p->rpo = tmp->rpo;
	p->mode = tmp->mode;
	p->present = true;
	p->seen = s->refresh_gen; /* a refresh walking now may have read the records before this one
				   */
	p->disabled = false;
	p->next_attempt_ms = 0;
	if (!p->running) /* a running cycle owns it */
		p->mark.valid = false;
	enqueue_locked(s, p);
	if (out)
		ims_repl_sched__fill_status(out, s, p, ims_clock_unix_ms());
	pthread_mutex_unlock(&s->lock);
	return 0;
}

const char *ims_repl_mode_name(ims_repl_mode mode)
{
	return mode == IMS_REPL_SYNC ? "sync" : "async";
}

int ims_repl_mode_parse(ims_repl_mode *out, const char *text)
{
	if (!text || !text[0] || strcmp(text, "async") == 0)
		*out = IMS_REPL_ASYNC;
	else if (strcmp(text, "sync") == 0)
		*out = IMS_REPL_SYNC;
	else
		return ims_error_set(-EINVAL, "unknown mode '%s': expected async or sync", text);
	return 0;
}

/* The mode and the RPO of a policy. */
static int check_mode_rpo(ims_repl_mode mode, uint32_t rpo)
{
	if (mode != IMS_REPL_ASYNC && mode != IMS_REPL_SYNC)
		return ims_error_set(-EINVAL, "unknown mode %d: expected async or sync", (int)mode);
	if (rpo == 0 || rpo > 30 * 86400)
		return ims_error_set(-EINVAL, "an RPO is 1 second to 30 days, not %u seconds", rpo);
	return 0;
}

/* A target of a new pair: another site than this one, and one the daemon knows. */
static int check_target(ims_repl_sched *s, const char *target)
{
	ims_site *peer = NULL;
	if (!target || strcmp(target, ims_site_name(s->o.local)) == 0)
		return ims_error_set(-EINVAL, "replication needs another site than this one ('%s')",
				     ims_site_name(s->o.local));
	int r = s->o.peer(s->o.peer_ctx, target, &peer);
	return r == -ENOENT ? r : 0; /* a peer that is down is fine: cycles retry */
}

/* Save the policy of the pair of @p unit @p pool/@p name and know it here: its first cycle
 * starts. */
static int enable_checked(ims_repl_sched *s, const char *pool, const char *name, const char *target,
			  ims_repl_mode mode, uint32_t rpo, ims_repl_unit unit,
			  ims_repl_status *out)
{
	pair tmp;
	int r;
	memset(&tmp, 0, sizeof(tmp));
	snprintf(tmp.pool, sizeof(tmp.pool), "%s", pool);
	snprintf(tmp.image, sizeof(tmp.image), "%s", name);
	snprintf(tmp.target, sizeof(tmp.target), "%s", target);
	tmp.mode = mode;
	tmp.rpo = rpo;
	tmp.unit = unit;
	if ((r = ims_repl_sched__save_policy(s, &tmp)) < 0)
		return r;
	if (enable_pair(s, &tmp, out) < 0)
		return -ENOMEM;
	ims_log_info("replication of %s'%s/%s' to site '%s' enabled (%s, RPO %us)",
		     unit == IMS_REPL_GROUP ? "group " : "", pool, name, target,
		     ims_repl_mode_name(mode), rpo);
	return 0;
}

int ims_repl_enable(ims_repl_status *out, ims_repl_sched *s, const char *pool, const char *image,
		    const char *target, ims_repl_mode mode, uint32_t rpo)
{
	int r;
	if ((r = ims_name_check(IMS_NAME_POOL, pool)) < 0 ||
	    (r = ims_name_check(IMS_NAME_IMAGE, image)) < 0 || (r = check_mode_rpo(mode, rpo)) < 0)
		return r;
	if ((r = ims_image_exists(s->o.local, pool, image)) < 0)
		return r;
	if (r == 0)
		return ims_error_set(-ENOENT, "no image '%s/%s' on site '%s'", pool, image,
				     ims_site_name(s->o.local));
	if ((r = refuse_group_member(s, pool, image)) < 0 || (r = check_target(s, target)) < 0)
		return r;
	return enable_checked(s, pool, image, target, mode, rpo, IMS_REPL_IMAGE, out);
}

static int remove_pair(ims_repl_sched *s, const char *pool, const char *image, const char *target,
		       ims_repl_status *out, bool drop_snapshots);
static int remove_kind_pair(ims_repl_sched *s, const char *pool, const char *image,
			    const char *target, ims_repl_unit unit, ims_repl_status *out,
			    bool drop_snapshots);

int ims_repl_disable(ims_repl_status *out, ims_repl_sched *s, const char *pool, const char *image,
		     const char *target)
{
	return remove_pair(s, pool, image, target, out, true);
}

int ims_repl_sched_hand_over(ims_repl_status *out, ims_repl_sched *s, const char *pool,
			     const char *image, const char *target)
{
	return remove_pair(s, pool, image, target, out, false);
}

int ims_repl_group_hand_over(ims_repl_status *out, ims_repl_sched *s, const char *pool,
			     const char *group, const char *target)
{
	return remove_kind_pair(s, pool, group, target, IMS_REPL_GROUP, out, false);
}

/* A resync of pair @p p claims it: no cycle of it meanwhile (a split-brain cycle would hold the
 * stale copy again, or rejoin it beside the resync). */
static int resync_claim(ims_repl_sched *s, pair *p)
{
	pthread_mutex_lock(&s->lock);
	int r = claim_pair_locked(s, p, NULL, NULL);
	if (r == 0)
		p->mark.valid = false; /* the copy is made again: the next cycle looks at it */
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* ... and lets it go, its state cleared after a resync that worked (@p r 0) in the same hold as
 * the claim is released: no cycle starts in between and sees the split-brain still. */
static void resync_release(ims_repl_sched *s, pair *p, int r)
{
	pthread_mutex_lock(&s->lock);
	if (r == 0) {
		p->split_brain = false;
		p->error[0] = '\0';
		p->backoff = 0;
		p->next_attempt_ms = 0;
	}
	p->running = false;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

int ims_repl_resync(ims_repl_divergence *out, ims_repl_sched *s, const char *pool,
		    const char *image, const char *target)
{
	ims_site *peer = NULL;
	ims_repl_side me;
	int r;
	pthread_mutex_lock(&s->lock);
	pair *p = find_locked(s, pool, image, target);
	bool known = p && p->present;
	pthread_mutex_unlock(&s->lock);
	if (!known)
		return ims_error_set(-ENOENT, "'%s/%s' is not replicated to site '%s'", pool, image,
				     target);
	if ((r = s->o.peer(s->o.peer_ctx, target, &peer)) < 0)
		return r;
	if ((r = ims_repl_side_get(&me, s->o.local, pool, image)) < 0)
		return r;
	if (me.secondary)
		return ims_error_set(-EBUSY,
				     "'%s/%s' is a secondary on site '%s'; resync from its primary",
				     pool, image, ims_site_name(s->o.local));
	if ((r = resync_claim(s, p)) < 0)
		return r;
	r = ims_repl_rejoin(out, s->o.local, peer, pool, image, me.generation);
	resync_release(s, p, r);
	return r;
}

int ims_repl_group_resync(char *plan, size_t len, ims_repl_sched *s, const char *pool,
			  const char *group, const char *target, uint64_t generation)
{
	ims_site *peer = NULL;
	int r;
	pthread_mutex_lock(&s->lock);
	pair *p = ims_repl_sched__find_locked(s, pool, group, target, IMS_REPL_GROUP);
	bool known = p && p->present;
	pthread_mutex_unlock(&s->lock);
	if (!known)
		return ims_error_set(-ENOENT, "group '%s/%s' is not replicated to site '%s'", pool,
				     group, target);
	if ((r = s->o.peer(s->o.peer_ctx, target, &peer)) < 0 || (r = resync_claim(s, p)) < 0)
		return r;
	r = ims_repl_group_rejoin(plan, len, s->o.local, peer, pool, group, generation);
	resync_release(s, p, r);
	return r;
}

static int remove_pair(ims_repl_sched *s, const char *pool, const char *image, const char *target,
		       ims_repl_status *out, bool drop_snapshots)
{
	return remove_kind_pair(s, pool, image, target, IMS_REPL_IMAGE, out, drop_snapshots);
}

static int remove_kind_pair(ims_repl_sched *s, const char *pool, const char *image,
			    const char *target, ims_repl_unit unit, ims_repl_status *out,
			    bool drop_snapshots)
{
	char key[700];
	pthread_mutex_lock(&s->lock);
	pair *p = ims_repl_sched__find_locked(s, pool, image, target, unit);
	if (!p || !p->present) {
		pthread_mutex_unlock(&s->lock);
		return ims_error_set(-ENOENT, "'%s/%s' is not replicated to site '%s'", pool, image,
				     target);
	}
	ims_repl_sched__pair_key(key, sizeof(key), p);
	pthread_mutex_unlock(&s->lock);
	/* the record goes first, so that no daemon starts another cycle */
	rados_ioctx_t io;
	int r = ims_repl_sched__io(&io, s);
	if (r < 0)
		return r;
	if ((r = ims_repl_sched__drop_policy(io, key, false)) < 0) {
		ims_site_ioctx_close(io);
		return ims_error_set(r, "cannot remove the replication of '%s': %s", key,
				     ims_strerror(r));
	}
	pthread_mutex_lock(&s->lock);
	p->present = false;
	p->disabled = true;
	p->disabled_ms = ims_clock_unix_ms();
	while (p->running) /* let a running cycle end: its snapshot is then sealed or not at all */
		pthread_cond_wait(&s->cond, &s->lock);
	if (out)
		ims_repl_sched__fill_status(out, s, p, ims_clock_unix_ms());
	pair copy = *p;
	pthread_mutex_unlock(&s->lock);
	ims_repl_sched__drop_status(io, key);
	ims_repl_sched__notify(io);
	ims_site_ioctx_close(io);
	if (!drop_snapshots) {
		ims_log_info("replication of '%s/%s' to site '%s' handed over at '%s'", pool, image,
			     target, copy.last_sealed[0] ? copy.last_sealed : "(none)");
		return 0;
	}
	/* the secondary keeps its copy, no longer held against other writers */
	ims_site *peer = NULL;
	if (s->o.peer(s->o.peer_ctx, target, &peer) == 0) {
		if (copy.unit == IMS_REPL_IMAGE)
			ims_site_guard_drop(peer, pool, image);
		/* a group's members, here and there (one taken out of it here stays there) */
		for (int side = 0; copy.unit == IMS_REPL_GROUP && side < 2; side++) {
			ims_group_info *gi = NULL;
			if (ims_group_info_get(&gi, side ? peer : s->o.local, pool, image) == 0)
				for (size_t k = 0; k < gi->nmembers; k++)
					ims_site_guard_drop(peer, gi->members[k].pool,
							    gi->members[k].image);
			ims_group_info_free(gi);
		}
		ims_error_clear();
		/* not waited for on a target that is down: the record only names an RPO, which
		 * the next first cycle of a pair writes again */
		if (!s->o.site_up || s->o.site_up(s->o.peer_ctx, target))
			ims_repl_sched__drop_reverse(s, peer, &copy);
	}
	/* the primary's replication snapshots go, but those another target still needs */
	if (copy.unit == IMS_REPL_GROUP)
		ims_repl_group_forget(s->o.local, pool, image);
	else if (ims_repl_forget(s->o.local, pool, image, target, true) < 0)
		ims_log_warning(
			"replication of '%s/%s' to site '%s' disabled, but its snapshots stay: %s",
			pool, image, target, ims_error_last());
	ims_log_info("replication of '%s/%s' to site '%s' disabled; the secondary keeps its copy "
		     "at '%s'",
		     pool, image, target, copy.last_sealed[0] ? copy.last_sealed : "(none)");
	return 0;
}

/* After a cycle sealed @p sealed: give the secondary the user snapshot @p snap too, when the
 * primary's @p snap and @p sealed hold the same data (nothing was written between them). */
static int seal_user_snapshot(ims_repl_sched *s, pair *p, ims_site *peer, const char *snap,
			      const char *sealed)
{
	rados_ioctx_t pio = NULL, sio = NULL;
	rbd_image_t at = NULL, sec = NULL;
	uint64_t n = 0;
	int r;
	if ((r = ims_site_ioctx(&pio, s->o.local, p->pool)) < 0 ||
	    (r = ims_site_ioctx(&sio, peer, p->pool)) < 0)
		goto out;
	/* compare the two snapshots: open at the newer, diff from the older (a cycle that found
	 * nothing changed sealed nothing new: then its snapshot is the older one) */
	uint64_t id_snap = 0, id_sealed = 0, size_at = 0, size_snap = 0;
	if ((r = rbd_open_read_only(pio, p->image, &at, NULL)) < 0) {
		ims_error_set(r, "cannot open '%s/%s': %s", p->pool, p->image, ims_strerror(r));
		goto out;
	}
	if ((r = rbd_snap_get_id(at, snap, &id_snap)) < 0 ||
	    (r = rbd_snap_get_id(at, sealed, &id_sealed)) < 0) {
		ims_error_set(r, "cannot find '%s' or '%s' on '%s/%s': %s", snap, sealed, p->pool,
			      p->image, ims_strerror(r));
		goto out;
	}
	const char *newer = id_snap > id_sealed ? snap : sealed,
		   *older = id_snap > id_sealed ? sealed : snap;
	if ((r = rbd_snap_set(at, older)) == 0 && (r = rbd_get_size(at, &size_snap)) == 0 &&
	    (r = rbd_snap_set(at, newer)) == 0 && (r = rbd_get_size(at, &size_at)) == 0)
		r = rbd_diff_iterate2(at, older, 0, size_at, 1, 1, count_one, &n);
	if (r < 0) {
		ims_error_set(r, "cannot compare '%s' with '%s' on '%s/%s': %s", snap, sealed,
			      p->pool, p->image, ims_strerror(r));
		goto out;
	}
	if (n || size_at != size_snap) {
		r = ims_error_set(-EAGAIN,
				  "'%s/%s' was written between snapshot '%s' and its replication "
				  "'%s': '%s' is not "
				  "sealed on site '%s' (freeze the guest while it is taken)",
				  p->pool, p->image, snap, sealed, snap, p->target);
		goto out;
	}
	/* through the guard replication holds on the secondary: nobody else can snapshot it */
	if ((r = ims_site_guard_get(&sec, peer, p->pool, p->image)) < 0) {
		sec = NULL;
		ims_error_set(r, "cannot seal '%s' on site '%s': %s", snap, p->target,
			      ims_error_last());
		goto out;
	}
	if ((r = rbd_snap_create2(sec, snap, RBD_SNAP_CREATE_SKIP_QUIESCE, ims_repl__no_progress,
				  NULL)) < 0) {
		ims_error_set(r, "cannot seal '%s' on site '%s': %s", snap, p->target,
			      ims_strerror(r));
		goto out;
	}
out:
	if (sec)
		ims_site_guard_put(peer, p->pool, p->image, r < 0);
	if (at)
		rbd_close(at);
	if (sio)
		ims_site_ioctx_close(sio);
	if (pio)
		ims_site_ioctx_close(pio);
	return r;
}

int ims_repl_seal_snapshot(char *sealed_on, size_t len, ims_repl_sched *s, const char *pool,
			   const char *image, const char *snap)
{
	char targets[8][64];
	size_t nt = 0, used = 0;
	int r = 0;
	if (sealed_on && len)
		sealed_on[0] = '\0';
	pthread_mutex_lock(&s->lock);
	for (pair *p = s->pairs; p && nt < 8; p = p->next)
		if (p->present && p->unit == IMS_REPL_IMAGE && !strcmp(p->pool, pool) &&
		    !strcmp(p->image, image) && p->mode == IMS_REPL_SYNC)
			snprintf(targets[nt++], sizeof(targets[0]), "%s", p->target);
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < nt && r == 0; i++) {
		ims_site *peer = NULL;
		ims_repl_result res;
		pthread_mutex_lock(&s->lock);
		pair *p = find_locked(s, pool, image, targets[i]);
		if (!p || claim_pair_locked(s, p, NULL, NULL) < 0) {
			ims_error_clear();
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		pthread_mutex_unlock(&s->lock);
		r = run_cycle(s, p, NULL, NULL, &res);
		if (r == 0 && (r = s->o.peer(s->o.peer_ctx, p->target, &peer)) == 0)
			r = seal_user_snapshot(s, p, peer, snap, res.sealed);
		char home[IMS_REPL_OWNER_LEN] = "", key[700];
		pthread_mutex_lock(&s->lock);
		const char *h = ims_repl_sched__home_locked(s, p);
		if (h) /* another's pair: its secondary too */
			memcpy(home, h, sizeof(home));
		pthread_mutex_unlock(&s->lock);
		if (home[0] && peer) {
			ims_repl_sched__pair_key(key, sizeof(key), p);
			let_go(s, p, key, home);
		}
		release_pair(s, p);
		if (r == 0 && sealed_on && used < len)
			used += (size_t)snprintf(sealed_on + used, len - used, "%s%s",
						 used ? "," : "", targets[i]);
	}
	return r;
}

/* One cycle of a pair now, after a running one ends. */
static int sync_now_kind(ims_repl_sched *s, const char *pool, const char *name, const char *target,
			 ims_repl_unit unit, ims_progress_fn progress, void *ctx,
			 ims_repl_result *out)
{
	pthread_mutex_lock(&s->lock);
	pair *p = ims_repl_sched__find_locked(s, pool, name, target, unit);
	if (!p || !p->present) {
		pthread_mutex_unlock(&s->lock);
		return ims_error_set(-ENOENT,
				     "%s'%s/%s' is not replicated to site '%s'; enable it first",
				     unit == IMS_REPL_GROUP ? "group " : "", pool, name, target);
	}
	/* after the running cycle, and after a failover of the image to another target */
	int r = claim_pair_locked(s, p, progress, ctx);
	pthread_mutex_unlock(&s->lock);
	if (r < 0)
		return r;
	r = run_cycle(s, p, progress, ctx, out);
	release_pair(s, p);
	return r;
}

int ims_repl_sync_now(ims_repl_result *out, ims_repl_sched *s, const char *pool, const char *image,
		      const char *target, ims_progress_fn progress, void *ctx)
{
	return sync_now_kind(s, pool, image, target, IMS_REPL_IMAGE, progress, ctx, out);
}

int ims_repl_set_verify_every(ims_repl_sched *s, const char *pool, const char *image,
			      const char *target, uint32_t every)
{
	pthread_mutex_lock(&s->lock);
	pair *p = find_locked(s, pool, image, target);
	if (!p || !p->present) {
		pthread_mutex_unlock(&s->lock);
		return ims_error_set(-ENOENT, "'%s/%s' is not replicated to site '%s'", pool, image,
				     target);
	}
	p->verify_every = every;
	pair copy = *p;
	pthread_mutex_unlock(&s->lock);
	return ims_repl_sched__save_policy(s, &copy);
}

/* Verify the pair of @p unit @p pool/@p name to @p target: after a running cycle of this daemon,
 * under the pair's RADOS lock (which keeps other daemons' cycles, and their retention, off the
 * snapshot compared), waiting for another daemon's cycle. An image's verdict is recorded in its
 * status; @p out is an ims_repl_verify_result ** or an ims_repl_group_verify_result *. */
static int verify_unit(ims_repl_sched *s, const char *pool, const char *name, const char *target,
		       ims_repl_unit unit, const ims_repl_verify_opts *opts, void *out)
{
	ims_site *peer = NULL;
	cycle_ctx c = {.s = s};
	int r;
	if ((r = IMS_OPTS_CHECK(opts, IMS_REPL_VERIFY_OPTS_VERSION, "verify")) < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	pair *p = ims_repl_sched__find_locked(s, pool, name, target, unit);
	if (!p || !p->present) {
		pthread_mutex_unlock(&s->lock);
		return ims_error_set(-ENOENT,
				     "%s'%s/%s' is not replicated to site '%s'; enable it first",
				     unit == IMS_REPL_GROUP ? "group " : "", pool, name, target);
	}
	if ((r = claim_pair_locked(s, p, opts->progress, opts->progress_ctx)) < 0) {
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	pthread_mutex_unlock(&s->lock);
	c.p = p;
	ims_repl_sched__pair_key(c.lock_name, sizeof(c.lock_name), p);
	if ((r = s->o.peer(s->o.peer_ctx, target, &peer)) == 0 &&
	    (r = lock_pair_wait(s, &c, opts->progress, opts->progress_ctx)) == 0) {
		if (unit == IMS_REPL_GROUP) {
			ims_repl_verify_opts vo = *opts;
			vo.progress = cycle_progress; /* stops once the lock is lost */
			vo.progress_ctx = &c;
			c.user = opts->progress;
			c.user_ctx = opts->progress_ctx;
			r = ims_repl_group_verify(out, s->o.local, peer, pool, name, &vo);
		} else {
			r = verify_pair(s, p, peer, opts, &c, out);
		}
		unlock_pair(s, &c);
	}
	ims_site_ioctx_close(c.io);
	pthread_mutex_lock(&s->lock);
	pair copy = *p;
	p->running = false;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (r == 0 && unit == IMS_REPL_IMAGE)
		ims_repl_sched__save_status(s, &copy);
	return r;
}

int ims_repl_sched_verify(ims_repl_verify_result **out, ims_repl_sched *s, const char *pool,
			  const char *image, const char *target, const ims_repl_verify_opts *opts)
{
	return verify_unit(s, pool, image, target, IMS_REPL_IMAGE, opts, out);
}

int ims_repl_group_verify_now(ims_repl_group_verify_result *out, ims_repl_sched *s,
			      const char *pool, const char *group, const char *target,
			      const ims_repl_verify_opts *opts)
{
	memset(out, 0, sizeof(*out));
	return verify_unit(s, pool, group, target, IMS_REPL_GROUP, opts, out);
}

/* ---------------------------------------------------------------------------------------- */
/* consistency groups: one pair per group and target, one lock, one cycle for all members */

bool ims_repl_sched_has(ims_repl_sched *s, const char *pool, const char *name, ims_repl_unit unit)
{
	bool found = false;
	pthread_mutex_lock(&s->lock);
	for (pair *p = s->pairs; p && !found; p = p->next)
		found = p->present && p->unit == unit && !strcmp(p->pool, pool) &&
			!strcmp(p->image, name);
	pthread_mutex_unlock(&s->lock);
	return found;
}

/* An image of a replicated group is replicated with its group, never alone. */
static int refuse_group_member(ims_repl_sched *s, const char *pool, const char *image)
{
	char g[2 * IMS_NAME_MAX + 2];
	int r = ims_group_of_image(g, sizeof(g), s->o.local, pool, image);
	if (r < 0 || !g[0])
		return r < 0 ? r : 0;
	char *slash = strchr(g, '/');
	*slash = '\0';
	if (ims_repl_sched_has(s, g, slash + 1, IMS_REPL_GROUP))
		return ims_error_set(-EBUSY,
				     "image '%s/%s' is in group '%s/%s', which is replicated as "
				     "one unit; replicate the "
				     "group, or remove the image from it first",
				     pool, image, g, slash + 1);
	return 0;
}

int ims_repl_group_enable(ims_repl_status *out, ims_repl_sched *s, const char *pool,
			  const char *group, const char *target, ims_repl_mode mode, uint32_t rpo)
{
	ims_group_info *gi = NULL;
	int r;
	if ((r = check_mode_rpo(mode, rpo)) < 0)
		return r;
	if ((r = ims_group_info_get(&gi, s->o.local, pool, group)) < 0)
		return r;
	if (gi->nmembers == 0)
		r = ims_error_set(-EINVAL, "group '%s/%s' has no images to replicate", pool, group);
	for (size_t i = 0; r == 0 && i < gi->nmembers; i++)
		if (ims_repl_sched_has(s, gi->members[i].pool, gi->members[i].image,
				       IMS_REPL_IMAGE))
			r = ims_error_set(-EBUSY,
					  "image '%s/%s' of group '%s/%s' is replicated on its "
					  "own; disable that first: "
					  "a group replicates its images as one unit",
					  gi->members[i].pool, gi->members[i].image, pool, group);
	ims_group_info_free(gi);
	if (r < 0 || (r = check_target(s, target)) < 0)
		return r;
	return enable_checked(s, pool, group, target, mode, rpo, IMS_REPL_GROUP, out);
}

int ims_repl_group_disable(ims_repl_status *out, ims_repl_sched *s, const char *pool,
			   const char *group, const char *target)
{
	int r = remove_kind_pair(s, pool, group, target, IMS_REPL_GROUP, out, true);
	return r == -ENOENT ? ims_error_set(r, "group '%s/%s' is not replicated to site '%s'", pool,
					    group, target)
			    : r;
}

int ims_repl_group_sync_now(ims_repl_result *out, ims_repl_sched *s, const char *pool,
			    const char *group, const char *target, ims_progress_fn progress,
			    void *ctx)
{
	int64_t called = ims_clock_unix_ms();
	ims_repl_result res;
	uint64_t bytes = 0, discarded = 0;
	int r = 0;
	/* a cycle may finish a cut older than the call first: then cut again (the bytes of both
	 * count) */
	for (int i = 0; i < 3; i++) {
		r = sync_now_kind(s, pool, group, target, IMS_REPL_GROUP, progress, ctx, &res);
		if (r == 0) {
			bytes += res.bytes_copied;
			discarded += res.bytes_discarded;
		}
		if (r < 0 || res.unchanged || res.sealed_unix_ms >= called)
			break;
	}
	res.bytes_copied = bytes;
	res.bytes_discarded = discarded;
	if (r == 0 && out)
		*out = res;
	return r;
}
