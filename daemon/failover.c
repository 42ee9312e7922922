#include "daemon/failover.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "daemon/health.h"
#include "daemon/hosts.h"
#include "replicator/failover.h"
#include "replicator/group.h"
#include "store/group.h"
#include "store/image.h"

static int progress(void *ctx, uint64_t done, uint64_t total)
{
	return ims_op_progress(ctx, done, total);
}

/* What one failover did: into the line of a site failover for it, else the operation's result. */
static void say(ims_op *op, ims_failover_work *w, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void say(ims_op *op, ims_failover_work *w, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (w->said)
		snprintf(w->said, w->said_len, "%s", buf);
	else
		ims_op_set_result(op, "%s", buf);
}

/* Whether the old primary's site @p name may be asked: not when the probes say it is down
 * (a forced failover must not wait for a dead site, once per image). */
static bool may_ask(ims_daemon *d, ims_failover_work *w, const char *name)
{
	return !w->old_down && ims_health_site_up(d->health, name);
}

static const char *peer_pool(ims_daemon *d, const char *site)
{
	const ims_config_cluster *c = ims_config_peer(d->cfg, site);
	return c && c->pool ? c->pool : d->pool;
}

/* The mode and RPO this site replicates image (or @p group) @p pool/@p name to @p target with. */
static int pair_of(ims_daemon *d, const char *pool, const char *name, bool group,
		   const char *target, ims_repl_status *out)
{
	ims_repl_status *list = NULL;
	size_t n = 0;
	int r = group ? ims_repl_group_status(d->repl, pool, name, &list, &n)
		      : ims_repl_sched_status(d->repl, pool, name, &list, &n);
	if (r < 0)
		return r;
	r = ims_error_set(
		-ENOENT,
		"%s'%s/%s' is not replicated from site '%s' to site '%s'; enable replication first",
		group ? "group " : "", pool, name, ims_site_name(d->site), target);
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].target, target) == 0) {
			*out = list[i];
			ims_error_clear();
			r = 0;
		}
	free(list);
	return r;
}

/* The site name in a copy's source ("SITE/POOL/IMAGE"). */
static void source_site(const char *source, char *out, size_t len)
{
	const char *slash = strchr(source, '/');
	size_t n = slash ? (size_t)(slash - source) : strlen(source);
	snprintf(out, len, "%.*s", (int)n, source);
}

static int planned_paused(ims_op *op, ims_failover_work *w);

/* For the fault tests: IMGSTORE_CRASH_AT=failover:STEP kills this daemon (SIGKILL) right after
 * the journal recorded STEP and before the step is done, as a kill -9 at that moment would. */
static void crash_point(const char *point)
{
	const char *at = getenv("IMGSTORE_CRASH_AT");
	if (at && strncmp(at, "failover:", 9) == 0 && strcmp(at + 9, point) == 0) {
		ims_log_warning("IMGSTORE_CRASH_AT=%s: killing this daemon now", at);
		raise(SIGKILL);
	}
}

/* Record the failover's next step, then (in tests) maybe die there. */
static int journal_step(ims_daemon *d, const char *pool, const char *image, ims_repl_journal *j,
			ims_repl_step step)
{
	j->step = step;
	int r = ims_repl_journal_put(d->site, pool, image, j);
	if (r == 0)
		crash_point(ims_repl_step_name(step));
	return r;
}

/* The end of a failover: this site's pair handed over, the target's daemons replicating back
 * here (they know the pair when this returns), the journal gone. */
static void reverse(ims_daemon *d, ims_failover_work *w, ims_site *peer)
{
	const char *pool = w->spec.pool, *image = w->spec.image, *here = ims_site_name(d->site);
	ims_repl_status pair;
	const char *mode = "async";
	uint32_t rpo = (uint32_t)d->cfg->defaults.rpo;
	if (pair_of(d, pool, image, false, w->target, &pair) == 0) {
		mode = pair.mode[0] ? pair.mode : mode;
		rpo = pair.rpo_seconds ? pair.rpo_seconds : rpo;
	}
	ims_repl_sched_hand_over(d->repl, pool, image, w->target, NULL);
	if (ims_repl_policy_put(peer, peer_pool(d, w->target), pool, image, false, here, mode,
				rpo) < 0)
		ims_log_error("failover of '%s/%s': site '%s' is the primary but replication back "
			      "to site '%s' is not "
			      "set: %s; run `imgstore repl enable` there",
			      pool, image, w->target, here, ims_error_last());
	ims_repl_journal_clear(d->site, pool, image, false);
}

/* A planned failover that a killed daemon left at step j->step (demote or later): finish it, or
 * when the target cannot be promoted, roll back to this site. */
static int planned_resume(ims_op *op, ims_failover_work *w, ims_repl_journal *j)
{
	ims_daemon *d = w->d;
	const char *pool = w->spec.pool, *image = w->spec.image, *here = ims_site_name(d->site);
	ims_repl_step from = j->step;
	ims_site *peer = NULL;
	ims_repl_side me, them;
	char at[64] = "";
	int r;
	ims_log_warning(
		"failover of '%s/%s' to site '%s' was interrupted at step '%s'; finishing it", pool,
		image, w->target, ims_repl_step_name(from));
	if ((r = ims_daemon_peer(d, w->target, &peer)) < 0 ||
	    (r = ims_repl_side_get(peer, pool, image, &them)) < 0 ||
	    (r = ims_repl_side_get(d->site, pool, image, &me)) < 0)
		return ims_error_set(r,
				     "an interrupted failover of '%s/%s' to site '%s' (at step "
				     "'%s') cannot go on: %s; run "
				     "the command again when both sites answer",
				     pool, image, w->target, ims_repl_step_name(from),
				     ims_error_last());
	if (j->step == IMS_REPL_STEP_DEMOTE) {
		if (!me.secondary &&
		    (r = ims_repl_demote(d->site, pool, image, w->target, j->generation)) < 0)
			return r;
		if ((r = journal_step(d, pool, image, j, IMS_REPL_STEP_PROMOTE)) < 0)
			return r;
	}
	if (j->step == IMS_REPL_STEP_PROMOTE) {
		if ((them.secondary || them.generation < j->generation) &&
		    (r = ims_repl_promote(peer, pool, image, j->generation, true, at, sizeof(at))) <
			    0) {
			char why[IMS_ERROR_MSG_MAX];
			snprintf(why, sizeof(why), "%s", ims_error_last());
			ims_repl_promote(d->site, pool, image, j->old_generation, false, NULL, 0);
			ims_repl_journal_clear(d->site, pool, image, false);
			return ims_error_set(r,
					     "an interrupted failover of '%s/%s' could not promote "
					     "site '%s': %s; rolled "
					     "back: site '%s' is the primary again",
					     pool, image, w->target, why, here);
		}
		if ((r = journal_step(d, pool, image, j, IMS_REPL_STEP_REVERSE)) < 0)
			return r;
	}
	reverse(d, w, peer);
	ims_op_progress(op, 0, 0);
	say(op, w,
	    "finished the failover interrupted at step '%s': site '%s' is the primary of '%s/%s', "
	    "generation %" PRIu64 "; site '%s' is its secondary",
	    ims_repl_step_name(from), w->target, pool, image, j->generation, here);
	ims_log_info(
		"finished the interrupted failover of '%s/%s' to site '%s' (generation %" PRIu64
		")",
		pool, image, w->target, j->generation);
	return 0;
}

/* The image's other pairs (other targets) start no cycle until its failover is done: a cycle's
 * snapshot holds the image's lock, which the fence must not find. */
static int planned(ims_op *op, ims_failover_work *w)
{
	int r = ims_repl_sched_pause(w->d->repl, w->spec.pool, w->spec.image, w->target);
	if (r < 0)
		return r;
	r = planned_paused(op, w);
	ims_repl_sched_resume(w->d->repl, w->spec.pool, w->spec.image);
	return r;
}

static int planned_paused(ims_op *op, ims_failover_work *w)
{
	ims_daemon *d = w->d;
	const char *pool = w->spec.pool, *image = w->spec.image, *here = ims_site_name(d->site);
	ims_site *peer = NULL;
	ims_repl_side me, them;
	ims_repl_status pair;
	ims_repl_result res;
	char host[128], at[64];
	unsigned fenced = 0, broken = 0;
	ims_repl_journal j;
	int r;

	/* a failover this site's daemon began and did not finish: finish it (from the demote on),
	 * or begin again (before it, this copy is the primary and every step may be done again) */
	if ((r = ims_repl_journal_get(d->site, pool, image, false, &j)) == 0) {
		if (j.forced)
			return ims_error_set(-EBUSY,
					     "a forced failover of '%s/%s' from site '%s' to this "
					     "site was interrupted: run "
					     "`imgstore repl failover %s/%s --to %s --force` here "
					     "to finish it first",
					     pool, image, j.target, pool, image,
					     ims_site_name(d->site));
		if (strcmp(j.target, w->target) != 0)
			return ims_error_set(-EBUSY,
					     "a failover of '%s/%s' to site '%s' was interrupted "
					     "at step '%s': run `imgstore "
					     "repl failover %s/%s --to %s` to finish it first",
					     pool, image, j.target, ims_repl_step_name(j.step),
					     pool, image, j.target);
		if (j.step >= IMS_REPL_STEP_DEMOTE)
			return planned_resume(op, w, &j);
	} else if (r != -ENOENT) {
		return r;
	}
	if ((r = ims_repl_side_get(d->site, pool, image, &me)) < 0)
		return r;
	if (me.secondary) {
		char from[64];
		source_site(me.source, from, sizeof(from));
		return ims_error_set(-EROFS,
				     "'%s/%s' is a secondary on site '%s': run the planned "
				     "failover on its primary's "
				     "site '%s', or add --force if site '%s' is lost",
				     pool, image, here, from, from);
	}
	if ((r = pair_of(d, pool, image, false, w->target, &pair)) < 0)
		return r;
	if ((r = ims_daemon_peer(d, w->target, &peer)) < 0)
		return r;
	if ((r = ims_repl_side_get(peer, pool, image, &them)) < 0)
		return r;
	if (!them.secondary)
		return ims_error_set(
			-EEXIST,
			"'%s/%s' on site '%s' is not a secondary of this site; nothing changed",
			pool, image, w->target);

	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	memset(&j, 0, sizeof(j));
	snprintf(j.target, sizeof(j.target), "%s", w->target);
	j.old_generation = me.generation;
	j.generation = (me.generation > them.generation ? me.generation : them.generation) + 1;
	j.started_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	if ((r = journal_step(d, pool, image, &j, IMS_REPL_STEP_SYNC)) < 0)
		return r;

	/* 1. catch up while hosts still write: the final delta is then small */
	if ((r = ims_repl_sync_now(d->repl, pool, image, w->target, progress, op, &res)) < 0) {
		ims_repl_journal_clear(d->site, pool, image, false);
		return ims_error_set(r, "sync before the failover failed: %s; nothing changed",
				     ims_error_last());
	}

	/* 2. no new leases; the hosts release theirs, or they are broken and the writers fenced */
	if ((r = ims_repl_set_state(d->site, pool, image, "failing-over")) < 0) {
		ims_repl_journal_clear(d->site, pool, image, false);
		return r;
	}
	unsigned wait_s = w->wait_s ? w->wait_s : 30;
	for (unsigned i = 0;
	     i < wait_s * 4 && ims_hosts_image_leased(d, pool, image, host, sizeof(host)) == 1;
	     i++) {
		if (ims_op_progress(op, 0, 0) != 0) {
			ims_repl_set_state(d->site, pool, image, NULL);
			ims_repl_journal_clear(d->site, pool, image, false);
			return ims_error_set(-ECANCELED,
					     "failover of '%s/%s' cancelled; nothing changed", pool,
					     image);
		}
		usleep(250000);
	}
	if ((r = ims_hosts_break_leases(d, pool, image, &broken)) < 0 ||
	    (r = ims_repl_fence(d->site, pool, image, &fenced)) < 0) {
		ims_repl_set_state(d->site, pool, image, NULL);
		ims_repl_journal_clear(d->site, pool, image, false);
		return ims_error_set(
			r, "cannot fence the writers of '%s/%s': %s; it stays the primary here",
			pool, image, ims_error_last());
	}

	/* 3. the final sync: everything written before the fence */
	if ((r = ims_repl_sync_now(d->repl, pool, image, w->target, progress, op, &res)) < 0) {
		char why[IMS_ERROR_MSG_MAX];
		snprintf(why, sizeof(why), "%s", ims_error_last());
		ims_repl_set_state(d->site, pool, image, NULL);
		ims_repl_journal_clear(d->site, pool, image, false);
		return ims_error_set(r,
				     "final sync to site '%s' failed: %s; site '%s' stays the "
				     "primary (its writers were "
				     "fenced: hosts take new leases)",
				     w->target, why, here);
	}

	/* 4. swap the roles at a new generation, then hand replication to the new primary */
	uint64_t gen = j.generation;
	if ((r = journal_step(d, pool, image, &j, IMS_REPL_STEP_DEMOTE)) < 0 ||
	    (r = ims_repl_demote(d->site, pool, image, w->target, gen)) < 0) {
		ims_repl_set_state(d->site, pool, image, NULL);
		ims_repl_journal_clear(d->site, pool, image, false);
		return r;
	}
	if ((r = journal_step(d, pool, image, &j, IMS_REPL_STEP_PROMOTE)) < 0 ||
	    (r = ims_repl_promote(peer, pool, image, gen, true, at, sizeof(at))) < 0) {
		char why[IMS_ERROR_MSG_MAX];
		snprintf(why, sizeof(why), "%s", ims_error_last());
		ims_repl_promote(d->site, pool, image, me.generation, false, NULL, 0);
		ims_repl_journal_clear(d->site, pool, image, false);
		return ims_error_set(
			r, "cannot promote '%s/%s' on site '%s': %s; site '%s' stays the primary",
			pool, image, w->target, why, here);
	}
	if ((r = journal_step(d, pool, image, &j, IMS_REPL_STEP_REVERSE)) < 0)
		ims_log_warning("failover of '%s/%s': %s", pool, image, ims_error_last());
	reverse(d, w, peer);
	say(op, w,
	    "site '%s' is the primary of '%s/%s' at '%s', generation %" PRIu64
	    "; site '%s' is its secondary (%u lease(s) broken, %u writer(s) fenced)",
	    w->target, pool, image, at[0] ? at : res.sealed, gen, here, broken, fenced);
	ims_log_info("failed over '%s/%s' to site '%s' at '%s' (generation %" PRIu64 ")", pool,
		     image, w->target, at[0] ? at : res.sealed, gen);
	return 0;
}

static int forced(ims_op *op, ims_failover_work *w)
{
	ims_daemon *d = w->d;
	const char *pool = w->spec.pool, *image = w->spec.image, *here = ims_site_name(d->site);
	ims_site *peer = NULL;
	ims_repl_side me, them;
	char old[64], at[64];
	int r;

	if ((r = ims_repl_side_get(d->site, pool, image, &me)) < 0)
		return r;
	ims_repl_journal j;
	if (!me.secondary && ims_repl_journal_get(d->site, pool, image, false, &j) == 0 &&
	    j.forced) {
		/* promoted by a forced failover whose daemon was killed before it set the way back
		 */
		if ((r = ims_repl_enable(d->repl, pool, image, j.target, "async",
					 (uint32_t)d->cfg->defaults.rpo, NULL)) < 0)
			return r;
		ims_repl_journal_clear(d->site, pool, image, false);
		say(op, w,
		    "finished the forced failover interrupted after the promotion: site '%s' is "
		    "the primary of "
		    "'%s/%s', generation %" PRIu64 "; replication back to site '%s' is set",
		    here, pool, image, me.generation, j.target);
		return 0;
	}
	if (!me.secondary)
		return ims_error_set(-EEXIST,
				     "'%s/%s' is already the primary on site '%s'; nothing changed",
				     pool, image, here);
	source_site(me.source, old, sizeof(old));
	if (!old[0])
		return ims_error_set(-EINVAL,
				     "'%s/%s' on site '%s' does not say which site its primary is",
				     pool, image, here);
	ims_op_progress(op, 0, 0);

	/* the old primary, if it answers: its generation counts, and its writers are fenced */
	bool reachable = may_ask(d, w, old) && ims_daemon_peer(d, old, &peer) == 0 &&
			 ims_repl_side_get(peer, pool, image, &them) == 0;
	uint64_t gen = me.generation + 1;
	if (reachable && them.generation >= gen)
		gen = them.generation + 1;
	unsigned fenced = 0;
	if (reachable && ims_repl_fence(peer, pool, image, &fenced) < 0) {
		ims_log_warning(
			"forced failover of '%s/%s': cannot fence its writers on site '%s': %s",
			pool, image, old, ims_error_last());
		reachable = false;
	}
	ims_error_clear();

	/* recorded first: a daemon killed after the promotion finishes the job when asked again */
	memset(&j, 0, sizeof(j));
	snprintf(j.target, sizeof(j.target), "%s", old);
	j.generation = gen;
	j.old_generation = me.generation;
	j.forced = true;
	if ((r = journal_step(d, pool, image, &j, IMS_REPL_STEP_REVERSE)) < 0)
		return r;
	if ((r = ims_repl_promote(d->site, pool, image, gen, true, at, sizeof(at))) < 0) {
		ims_repl_journal_clear(d->site, pool, image, false);
		return r;
	}
	crash_point("promoted");

	char rejoin[1024] = "";
	if (reachable) {
		ims_repl_divergence dv;
		if (ims_repl_rejoin(d->site, peer, pool, image, gen, &dv) == 0) {
			ims_repl_policy_remove(peer, peer_pool(d, old), pool, image, false, here);
			snprintf(rejoin, sizeof(rejoin),
				 "site '%s' answered: %u writer(s) fenced; %s", old, fenced,
				 dv.plan);
		} else {
			snprintf(rejoin, sizeof(rejoin),
				 "site '%s' answered but could not be made a secondary: %s", old,
				 ims_error_last());
		}
	} else {
		snprintf(rejoin, sizeof(rejoin),
			 "site '%s' did not answer: its writers are not fenced; when it returns it "
			 "is stale (generation "
			 "%" PRIu64 ") and `imgstore repl status` shows what resync will do",
			 old, gen - 1);
	}
	ims_error_clear();
	if ((r = ims_repl_enable(d->repl, pool, image, old, "async", (uint32_t)d->cfg->defaults.rpo,
				 NULL)) < 0)
		ims_log_error(
			"forced failover of '%s/%s': replication back to site '%s' is not set: %s",
			pool, image, old, ims_error_last());
	else
		ims_repl_journal_clear(d->site, pool, image, false);
	say(op, w, "site '%s' is the primary of '%s/%s' at '%s', generation %" PRIu64 "; %s", here,
	    pool, image, at[0] ? at : "its head", gen, rejoin);
	ims_log_warning("forced failover of '%s/%s' to site '%s' at '%s' (generation %" PRIu64
			"): %s",
			pool, image, here, at, gen, rejoin);
	return 0;
}

int ims_failover_run(ims_op *op, void *arg)
{
	ims_failover_work *w = arg;
	if (w->force) {
		if (strcmp(w->target, ims_site_name(w->d->site)) != 0)
			return ims_error_set(-EINVAL,
					     "a forced failover runs on the site that becomes the "
					     "primary: ask site '%s''s "
					     "daemon (this is site '%s')",
					     w->target, ims_site_name(w->d->site));
		return forced(op, w);
	}
	ims_repl_side me;
	if (strcmp(w->target, ims_site_name(w->d->site)) == 0 &&
	    ims_repl_side_get(w->d->site, w->spec.pool, w->spec.image, &me) == 0 && me.secondary) {
		char from[64];
		source_site(me.source, from, sizeof(from));
		return ims_error_set(
			-EROFS,
			"'%s/%s' is a secondary here on site '%s': run the planned failover on its "
			"primary's site '%s', or add --force if site '%s' is lost",
			w->spec.pool, w->spec.image, w->target, from, from);
	}
	if (strcmp(w->target, ims_site_name(w->d->site)) == 0)
		return ims_error_set(-EINVAL,
				     "a planned failover runs on the current primary's site, not "
				     "on '%s'; add --force "
				     "if the primary's site is lost",
				     w->target);
	return planned(op, w);
}

static int group_planned(ims_op *op, ims_failover_work *w);
static int group_forced(ims_op *op, ims_failover_work *w);
static int group_side(ims_site *site, const char *pool, const char *group, ims_repl_side *out,
		      ims_group_info **gi);

/* One image or group of a site failover, and what became of it. */
typedef struct {
	char name[IMS_NAME_MAX + 1];
	bool group;
	bool skipped; /* not a pair of this failover */
	int r;
	double secs;
	char said[1024]; /* what it did, or why it failed */
} unit;

typedef struct {
	ims_op *op;
	ims_failover_work *w;
	unit *units;
	size_t n, next;
	pthread_mutex_t lock;
} fanout;

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Whether unit @p u is part of failover @p w; an image in a group goes with its group. */
static bool selected(ims_failover_work *w, const unit *u)
{
	ims_daemon *d = w->d;
	ims_repl_side side;
	ims_repl_status pair;
	char src[64], grp[2 * IMS_NAME_MAX + 2];
	ims_repl_journal j;
	/* a forced failover from that site interrupted here: finished by this one (a group's
	 * members may disagree on their role then) */
	if (w->force && ims_repl_journal_get(d->site, w->spec.pool, u->name, u->group, &j) == 0 &&
	    j.forced && strcmp(j.target, w->from) == 0)
		return true;
	ims_error_clear();
	if (u->group) {
		ims_group_info *gi = NULL;
		int r = group_side(d->site, w->spec.pool, u->name, &side, &gi);
		ims_group_info_free(gi);
		if (r < 0)
			return false;
	} else {
		if (ims_repl_side_get(d->site, w->spec.pool, u->name, &side) < 0)
			return false;
		if (ims_group_of_image(grp, sizeof(grp), d->site, w->spec.pool, u->name) == 0 &&
		    grp[0])
			return false;
	}
	if (w->force) {
		source_site(side.source, src, sizeof(src));
		return side.secondary && strcmp(src, w->from) == 0;
	}
	return !side.secondary &&
	       pair_of(d, w->spec.pool, u->name, u->group, w->target, &pair) == 0;
}

static void *fan_worker(void *arg)
{
	fanout *f = arg;
	for (;;) {
		pthread_mutex_lock(&f->lock);
		size_t i = f->next < f->n ? f->next++ : f->n;
		pthread_mutex_unlock(&f->lock);
		if (i == f->n)
			break;
		unit *u = &f->units[i];
		ims_failover_work one = *f->w;
		snprintf(one.spec.image, sizeof(one.spec.image), "%s", u->name);
		one.spec.snap[0] = '\0';
		one.from[0] = '\0';
		one.group = u->group;
		one.said = u->said;
		one.said_len = sizeof(u->said);
		ims_error_clear();
		if (!selected(f->w, u)) {
			u->skipped = true;
			continue;
		}
		double t0 = mono_s();
		if (u->group)
			u->r = one.force ? group_forced(f->op, &one) : group_planned(f->op, &one);
		else
			u->r = one.force ? forced(f->op, &one) : planned(f->op, &one);
		u->secs = mono_s() - t0;
		if (u->r < 0)
			snprintf(u->said, sizeof(u->said), "%s", ims_error_last());
		ims_log_info("%s failover of %s '%s/%s' to site '%s' %s in %.2fs: %s",
			     one.force ? "forced" : "planned", u->group ? "group" : "image",
			     one.spec.pool, u->name, one.target, u->r < 0 ? "failed" : "done",
			     u->secs, u->said);
	}
	return NULL;
}

/* Forced failovers only touch this site (the old one is asked once, and not at all when it is
 * down); their cost is the fence of the old replicating daemon's guard on each image, a
 * blocklist entry the monitors commit in batches (one proposal a second): the more run at
 * once, the fewer batches. Planned ones sync and fence on both sites, so fewer run at once. */
#define FAILOVER_FORCED_WORKERS	 64
#define FAILOVER_PLANNED_WORKERS 4

int ims_failover_all_run(ims_op *op, void *arg)
{
	ims_failover_work *w = arg;
	ims_daemon *d = w->d;
	ims_image_list_entry *list = NULL;
	char **groups = NULL;
	size_t n = 0, ng = 0, done = 0, failed = 0, todo = 0;
	const char *here = ims_site_name(d->site);
	double t0 = mono_s();
	int r;
	if (!w->force && strcmp(w->from, here) != 0)
		return ims_error_set(
			-EINVAL,
			"a planned failover of site '%s''s images runs on site '%s', not '%s'; add "
			"--force if site '%s' is lost",
			w->from, w->from, here, w->from);
	if (w->force && strcmp(w->target, here) != 0)
		return ims_error_set(-EINVAL,
				     "a forced failover runs on the site that becomes the primary: "
				     "ask site '%s''s "
				     "daemon (this is site '%s')",
				     w->target, here);
	if ((r = ims_image_list(&list, &n, d->site, w->spec.pool)) < 0)
		return r;
	if ((r = ims_group_list(&groups, &ng, d->site, w->spec.pool)) < 0) {
		ims_image_list_free(list, n);
		return r;
	}
	fanout f = {.op = op, .w = w, .n = n + ng};
	pthread_mutex_init(&f.lock, NULL);
	f.units = calloc(f.n + 1, sizeof(*f.units));
	if (!f.units) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < ng; i++) { /* groups first: their cut is what matters most */
		snprintf(f.units[i].name, sizeof(f.units[i].name), "%s", groups[i]);
		f.units[i].group = true;
	}
	for (size_t i = 0; i < n; i++)
		snprintf(f.units[ng + i].name, sizeof(f.units[ng + i].name), "%s", list[i].name);

	/* the old site is asked once, now: when it does not answer, no image waits for it */
	ims_failover_work all = *w;
	all.old_down = w->force && !ims_health_site_up(d->health, w->from);
	if (all.old_down)
		ims_log_warning("forced failover of site '%s': it does not answer its probes; its "
				"images are promoted "
				"without waiting for it, and fenced when it returns",
				w->from);
	f.w = &all;

	unsigned nw = w->force ? FAILOVER_FORCED_WORKERS : FAILOVER_PLANNED_WORKERS;
	if (nw > f.n)
		nw = f.n ? (unsigned)f.n : 1;
	pthread_t th[FAILOVER_FORCED_WORKERS];
	unsigned started = 0;
	for (; started < nw; started++)
		if (pthread_create(&th[started], NULL, fan_worker, &f) != 0)
			break;
	if (started == 0)
		fan_worker(&f);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);

	char failures[400] = "";
	double slowest = 0;
	for (size_t i = 0; i < f.n; i++) {
		unit *u = &f.units[i];
		if (u->skipped)
			continue;
		todo++;
		if (u->secs > slowest)
			slowest = u->secs;
		if (u->r == 0) {
			done++;
			continue;
		}
		failed++;
		/* the first ones, cut to fit; every one is in the details */
		char one[1024];
		snprintf(one, sizeof(one), "%s%s/%s: %.200s", failures[0] ? "; " : "", w->spec.pool,
			 u->name, u->said);
		size_t used = strlen(failures), room = sizeof(failures) - 1 - used,
		       len = strlen(one);
		memcpy(failures + used, one, len < room ? len : room);
		failures[used + (len < room ? len : room)] = '\0';
	}
	double total = mono_s() - t0;
	ims_log_info("%s failover of site '%s' to site '%s' in pool '%s': %zu of %zu done in %.2fs "
		     "(slowest %.2fs)",
		     w->force ? "forced" : "planned", w->from, w->target, w->spec.pool, done, todo,
		     total, slowest);
	if (failed)
		r = ims_error_set(-EIO,
				  "%zu of %zu images and groups of site '%s' in pool '%s' did not "
				  "fail over (%.1fs): %s",
				  failed, todo, w->from, w->spec.pool, total, failures);
	else {
		char tail[200] = "";
		if (all.old_down)
			snprintf(tail, sizeof(tail),
				 "; site '%s' did not answer: its writers are fenced when it "
				 "returns",
				 w->from);
		ims_op_set_result(op,
				  "%zu image(s) and group(s) of site '%s' in pool '%s' failed over "
				  "to site '%s' in "
				  "%.1fs (slowest %.1fs)%s",
				  done, w->from, w->spec.pool, w->target, total, slowest, tail);
		r = 0;
	}
	for (size_t i = 0; i < f.n; i++) /* one line each, for `repl failover --from` to print */
		if (!f.units[i].skipped)
			ims_op_add_detail(op, "%s %s/%s %s %.2fs: %s",
					  f.units[i].group ? "group" : "image", w->spec.pool,
					  f.units[i].name, f.units[i].r < 0 ? "FAILED" : "ok",
					  f.units[i].secs, f.units[i].said);
out:
	free(f.units);
	pthread_mutex_destroy(&f.lock);
	ims_group_list_free(groups, ng);
	ims_image_list_free(list, n);
	return r;
}

int ims_resync_run(ims_op *op, void *arg)
{
	ims_failover_work *w = arg;
	ims_daemon *d = w->d;
	ims_repl_divergence dv;
	ims_repl_result res;
	ims_site *peer = NULL;
	int r = ims_repl_resync(d->repl, w->spec.pool, w->spec.image, w->target, &dv);
	if (r < 0)
		return r;
	/* the old primary's daemons stop replicating their copy: it is a secondary now */
	if (ims_daemon_peer(d, w->target, &peer) == 0)
		ims_repl_policy_remove(peer, peer_pool(d, w->target), w->spec.pool, w->spec.image,
				       false, ims_site_name(d->site));
	/* the old site has just come back and may not serve every request yet: a few tries */
	for (int attempt = 1;; attempt++) {
		if ((r = ims_repl_sync_now(d->repl, w->spec.pool, w->spec.image, w->target,
					   progress, op, &res)) == 0)
			break;
		if (attempt == 3 || r == -EBUSY || r == -ENOENT || r == -EUCLEAN || r == -ECANCELED)
			return ims_error_set(
				r, "%s; but its first cycle failed (replication tries again): %s",
				dv.plan, ims_error_last());
		ims_log_warning("resync of '%s/%s': cycle %d failed, trying again: %s",
				w->spec.pool, w->spec.image, attempt, ims_error_last());
		sleep(2);
	}
	ims_op_set_result(op, "%s; sealed '%s' (%" PRIu64 " bytes shipped)", dv.plan, res.sealed,
			  res.bytes_copied);
	return 0;
}

/* ---- consistency groups: failed over as one unit (replicator/group.h) ---- */

/*
 * @p site's copy of the group as one side: its members agree on their role (else -EUCLEAN);
 * the highest generation; the source of a secondary. @p gi gets the members.
 */
static int group_side(ims_site *site, const char *pool, const char *group, ims_repl_side *out,
		      ims_group_info **gi)
{
	int r = ims_group_info_get(gi, site, pool, group);
	if (r < 0)
		return r;
	if ((*gi)->nmembers == 0)
		return ims_error_set(-EINVAL, "group '%s/%s' on site '%s' has no images", pool,
				     group, ims_site_name(site));
	memset(out, 0, sizeof(*out));
	for (size_t k = 0; k < (*gi)->nmembers; k++) {
		ims_repl_side m;
		const char *mp = (*gi)->members[k].pool, *mi = (*gi)->members[k].image;
		if ((r = ims_repl_side_get(site, mp, mi, &m)) < 0)
			return r;
		if (k == 0) {
			*out = m;
			continue;
		}
		if (m.secondary != out->secondary)
			return ims_error_set(-EUCLEAN,
					     "the images of group '%s/%s' on site '%s' disagree on "
					     "their role: '%s/%s' is "
					     "a %s, '%s/%s' a %s; nothing changed",
					     pool, group, ims_site_name(site),
					     (*gi)->members[0].pool, (*gi)->members[0].image,
					     out->secondary ? "secondary" : "primary", mp, mi,
					     m.secondary ? "secondary" : "primary");
		if (m.generation > out->generation)
			out->generation = m.generation;
	}
	return 0;
}

static void group_set_state(ims_site *site, const ims_group_info *gi, const char *state)
{
	for (size_t k = 0; k < gi->nmembers; k++)
		ims_repl_set_state(site, gi->members[k].pool, gi->members[k].image, state);
}

/* The end of a group's failover: this site's pair handed over, the target's daemons replicating
 * the group back here, the record gone. */
static void group_reverse(ims_daemon *d, ims_failover_work *w, ims_site *peer)
{
	const char *pool = w->spec.pool, *group = w->spec.image, *here = ims_site_name(d->site);
	ims_repl_status pair;
	const char *mode = "async";
	uint32_t rpo = (uint32_t)d->cfg->defaults.rpo;
	if (pair_of(d, pool, group, true, w->target, &pair) == 0) {
		mode = pair.mode[0] ? pair.mode : mode;
		rpo = pair.rpo_seconds ? pair.rpo_seconds : rpo;
	}
	ims_repl_group_hand_over(d->repl, pool, group, w->target, NULL);
	if (ims_repl_policy_put(peer, peer_pool(d, w->target), pool, group, true, here, mode, rpo) <
	    0)
		ims_log_error("failover of group '%s/%s': site '%s' is the primary but replication "
			      "back to site '%s' is "
			      "not set: %s; run `imgstore group repl enable` there",
			      pool, group, w->target, here, ims_error_last());
	ims_repl_journal_clear(d->site, pool, group, true);
}

/* A group's planned failover that a killed daemon left at the demote or later: finish it at
 * its recorded cut, or roll back when the target cannot be promoted. Members that disagree on
 * their role (killed in the middle of a step) are taken as not done with it. */
static int group_resume(ims_op *op, ims_failover_work *w, ims_repl_journal *j)
{
	ims_daemon *d = w->d;
	const char *pool = w->spec.pool, *group = w->spec.image, *here = ims_site_name(d->site);
	ims_repl_step from = j->step;
	ims_group_info *gi = NULL, *pgi = NULL;
	ims_site *peer = NULL;
	ims_repl_side me, them;
	unsigned rolled = 0;
	int r, rm, rt;
	ims_log_warning(
		"failover of group '%s/%s' to site '%s' was interrupted at step '%s'; finishing it",
		pool, group, w->target, ims_repl_step_name(from));
	if ((r = ims_daemon_peer(d, w->target, &peer)) < 0)
		return r;
	rm = group_side(d->site, pool, group, &me, &gi);
	rt = group_side(peer, pool, group, &them, &pgi);
	ims_group_info_free(gi);
	ims_group_info_free(pgi);
	if ((rm < 0 && rm != -EUCLEAN) || (rt < 0 && rt != -EUCLEAN))
		return ims_error_set(rm < 0 ? rm : rt,
				     "an interrupted failover of group '%s/%s' (at step '%s') "
				     "cannot go on: %s; run the "
				     "command again when both sites answer",
				     pool, group, ims_repl_step_name(from), ims_error_last());
	if (j->step == IMS_REPL_STEP_DEMOTE) {
		if ((rm == -EUCLEAN || !me.secondary) &&
		    (r = ims_repl_group_demote(d->site, pool, group, j->cut, w->target,
					       j->generation)) < 0)
			return r;
		if ((r = journal_step(d, pool, group, j, IMS_REPL_STEP_PROMOTE)) < 0)
			return r;
	}
	if (j->step == IMS_REPL_STEP_PROMOTE) {
		if ((rt == -EUCLEAN || them.secondary || them.generation < j->generation) &&
		    (r = ims_repl_group_promote(peer, pool, group, j->cut, j->generation,
						&rolled)) < 0) {
			char why[IMS_ERROR_MSG_MAX];
			snprintf(why, sizeof(why), "%s", ims_error_last());
			ims_repl_group_promote(d->site, pool, group, j->cut, j->old_generation,
					       NULL);
			ims_repl_journal_clear(d->site, pool, group, true);
			return ims_error_set(r,
					     "an interrupted failover of group '%s/%s' could not "
					     "promote site '%s': %s; "
					     "rolled back: site '%s' is the primary again",
					     pool, group, w->target, why, here);
		}
		if ((r = journal_step(d, pool, group, j, IMS_REPL_STEP_REVERSE)) < 0)
			return r;
	}
	group_reverse(d, w, peer);
	ims_op_progress(op, 0, 0);
	say(op, w,
	    "finished the failover interrupted at step '%s': site '%s' is the primary of group "
	    "'%s/%s' at '%s', "
	    "generation %" PRIu64 "; site '%s' is its secondary",
	    ims_repl_step_name(from), w->target, pool, group, j->cut, j->generation, here);
	return 0;
}

static int group_planned(ims_op *op, ims_failover_work *w)
{
	ims_daemon *d = w->d;
	const char *pool = w->spec.pool, *group = w->spec.image, *here = ims_site_name(d->site);
	ims_group_info *gi = NULL, *pgi = NULL;
	ims_site *peer = NULL;
	ims_repl_side me, them;
	ims_repl_status pair;
	ims_repl_result res;
	char host[128], cut[64];
	unsigned fenced = 0, broken = 0, rolled = 0;
	ims_repl_journal j;
	int r;

	/* a failover this daemon began and did not finish: from the demote on, finish it */
	if ((r = ims_repl_journal_get(d->site, pool, group, true, &j)) == 0) {
		if (strcmp(j.target, w->target) != 0)
			return ims_error_set(
				-EBUSY,
				"a failover of group '%s/%s' to site '%s' was interrupted at step "
				"'%s': run "
				"`imgstore group repl failover %s/%s --to %s` to finish it first",
				pool, group, j.target, ims_repl_step_name(j.step), pool, group,
				j.target);
		if (j.step >= IMS_REPL_STEP_DEMOTE)
			return group_resume(op, w, &j);
	} else if (r != -ENOENT) {
		return r;
	}
	if ((r = group_side(d->site, pool, group, &me, &gi)) < 0)
		goto out;
	if (me.secondary) {
		char from[64];
		source_site(me.source, from, sizeof(from));
		r = ims_error_set(-EROFS,
				  "group '%s/%s' is a secondary on site '%s': run the planned "
				  "failover on its primary's site "
				  "'%s', or add --force if site '%s' is lost",
				  pool, group, here, from, from);
		goto out;
	}
	if ((r = pair_of(d, pool, group, true, w->target, &pair)) < 0 ||
	    (r = ims_daemon_peer(d, w->target, &peer)) < 0 ||
	    (r = group_side(peer, pool, group, &them, &pgi)) < 0)
		goto out;
	if (!them.secondary) {
		r = ims_error_set(-EEXIST,
				  "group '%s/%s' on site '%s' is not a secondary of this site; "
				  "nothing changed",
				  pool, group, w->target);
		goto out;
	}

	/* 1. catch up while hosts still write */
	if ((r = ims_repl_group_sync_now(d->repl, pool, group, w->target, progress, op, &res)) <
	    0) {
		r = ims_error_set(r, "sync before the failover failed: %s; nothing changed",
				  ims_error_last());
		goto out;
	}

	/* 2. no new leases on any member; hosts release theirs, or they are broken and fenced */
	group_set_state(d->site, gi, "failing-over");
	unsigned wait_s = w->wait_s ? w->wait_s : 30;
	for (unsigned i = 0; i < wait_s * 4; i++) {
		bool leased = false;
		for (size_t k = 0; k < gi->nmembers && !leased; k++)
			leased =
				ims_hosts_image_leased(d, gi->members[k].pool, gi->members[k].image,
						       host, sizeof(host)) == 1;
		if (!leased)
			break;
		if (ims_op_progress(op, 0, 0) != 0) {
			group_set_state(d->site, gi, NULL);
			r = ims_error_set(-ECANCELED,
					  "failover of group '%s/%s' cancelled; nothing changed",
					  pool, group);
			goto out;
		}
		usleep(250000);
	}
	for (size_t k = 0; k < gi->nmembers; k++) {
		unsigned b = 0, f = 0;
		if ((r = ims_hosts_break_leases(d, gi->members[k].pool, gi->members[k].image, &b)) <
			    0 ||
		    (r = ims_repl_fence(d->site, gi->members[k].pool, gi->members[k].image, &f)) <
			    0) {
			group_set_state(d->site, gi, NULL);
			r = ims_error_set(r,
					  "cannot fence the writers of '%s/%s': %s; group '%s/%s' "
					  "stays the primary here",
					  gi->members[k].pool, gi->members[k].image,
					  ims_error_last(), pool, group);
			goto out;
		}
		broken += b;
		fenced += f;
	}

	/* 3. the final cut: every member as it was at the fence */
	if ((r = ims_repl_group_sync_now(d->repl, pool, group, w->target, progress, op, &res)) <
	    0) {
		char why[IMS_ERROR_MSG_MAX];
		snprintf(why, sizeof(why), "%s", ims_error_last());
		group_set_state(d->site, gi, NULL);
		r = ims_error_set(r,
				  "final sync of group '%s/%s' to site '%s' failed: %s; site '%s' "
				  "stays the primary "
				  "(its writers were fenced: hosts take new leases)",
				  pool, group, w->target, why, here);
		goto out;
	}
	snprintf(cut, sizeof(cut), "%s", res.sealed);

	/* 4. swap the roles of every member at a new generation, then hand replication over; each
	 * step recorded before it is done */
	uint64_t gen = (me.generation > them.generation ? me.generation : them.generation) + 1;
	memset(&j, 0, sizeof(j));
	snprintf(j.target, sizeof(j.target), "%s", w->target);
	snprintf(j.cut, sizeof(j.cut), "%s", cut);
	j.group = true;
	j.generation = gen;
	j.old_generation = me.generation;
	if ((r = journal_step(d, pool, group, &j, IMS_REPL_STEP_DEMOTE)) < 0) {
		group_set_state(d->site, gi, NULL);
		goto out;
	}
	if ((r = ims_repl_group_demote(d->site, pool, group, cut, w->target, gen)) < 0) {
		char why[IMS_ERROR_MSG_MAX];
		snprintf(why, sizeof(why), "%s", ims_error_last());
		ims_repl_group_promote(d->site, pool, group, cut, me.generation, NULL);
		group_set_state(d->site, gi, NULL);
		ims_repl_journal_clear(d->site, pool, group, true);
		r = ims_error_set(
			r, "cannot demote group '%s/%s' on site '%s': %s; it stays the primary",
			pool, group, here, why);
		goto out;
	}
	if ((r = journal_step(d, pool, group, &j, IMS_REPL_STEP_PROMOTE)) < 0 ||
	    (r = ims_repl_group_promote(peer, pool, group, cut, gen, &rolled)) < 0) {
		char why[IMS_ERROR_MSG_MAX];
		snprintf(why, sizeof(why), "%s", ims_error_last());
		ims_repl_group_promote(d->site, pool, group, cut, me.generation, NULL);
		ims_repl_journal_clear(d->site, pool, group, true);
		r = ims_error_set(r,
				  "cannot promote group '%s/%s' on site '%s': %s; site '%s' stays "
				  "the primary",
				  pool, group, w->target, why, here);
		goto out;
	}
	if (journal_step(d, pool, group, &j, IMS_REPL_STEP_REVERSE) < 0)
		ims_log_warning("failover of group '%s/%s': %s", pool, group, ims_error_last());
	group_reverse(d, w, peer);
	say(op, w,
	    "site '%s' is the primary of group '%s/%s' (%zu images) at '%s', generation %" PRIu64
	    "; site '%s' is its secondary (%u lease(s) broken, %u writer(s) fenced)",
	    w->target, pool, group, gi->nmembers, cut, gen, here, broken, fenced);
	ims_log_info("failed over group '%s/%s' to site '%s' at '%s' (generation %" PRIu64 ")",
		     pool, group, w->target, cut, gen);
	r = 0;
out:
	ims_group_info_free(gi);
	ims_group_info_free(pgi);
	return r;
}

static int group_forced(ims_op *op, ims_failover_work *w)
{
	ims_daemon *d = w->d;
	const char *pool = w->spec.pool, *group = w->spec.image, *here = ims_site_name(d->site);
	ims_group_info *gi = NULL, *pgi = NULL;
	ims_site *peer = NULL;
	ims_repl_side me, them;
	ims_repl_journal j;
	char old[64], cut[64], rejoin[1024] = "";
	unsigned rolled = 0;
	uint64_t gen;
	int r;

	/* a forced failover whose daemon was killed after it recorded the promotion (during it, or
	 * before the way back was set): again from the promotion, at the recorded cut and
	 * generation; the members it already promoted are left as they are */
	bool resumed = ims_repl_journal_get(d->site, pool, group, true, &j) == 0 && j.forced;
	ims_error_clear();
	if (resumed) {
		if ((r = ims_group_info_get(&gi, d->site, pool, group)) < 0)
			goto out;
		snprintf(old, sizeof(old), "%s", j.target);
		snprintf(cut, sizeof(cut), "%s", j.cut);
		gen = j.generation;
	} else {
		if ((r = group_side(d->site, pool, group, &me, &gi)) < 0)
			goto out;
		if (!me.secondary) {
			r = ims_error_set(-EEXIST,
					  "group '%s/%s' is already the primary on site '%s'; "
					  "nothing changed",
					  pool, group, here);
			goto out;
		}
		source_site(me.source, old, sizeof(old));
		if ((r = ims_repl_group_last_sealed(d->site, pool, group, cut, sizeof(cut), NULL)) <
		    0) {
			r = ims_error_set(r,
					  "%s: there is no consistent point to promote group "
					  "'%s/%s' at; nothing changed",
					  ims_error_last(), pool, group);
			goto out;
		}
		gen = me.generation + 1;
	}
	ims_op_progress(op, 0, 0);
	bool reachable = may_ask(d, w, old) && ims_daemon_peer(d, old, &peer) == 0 &&
			 group_side(peer, pool, group, &them, &pgi) == 0;
	if (!resumed && reachable && them.generation >= gen)
		gen = them.generation + 1;
	ims_error_clear();

	if (!resumed) {
		/* recorded first: a daemon killed during or after the promotion finishes it when
		 * asked again */
		memset(&j, 0, sizeof(j));
		snprintf(j.target, sizeof(j.target), "%s", old);
		snprintf(j.cut, sizeof(j.cut), "%s", cut);
		j.generation = gen;
		j.old_generation = me.generation;
		j.forced = true;
		j.group = true;
		if ((r = journal_step(d, pool, group, &j, IMS_REPL_STEP_REVERSE)) < 0)
			goto out;
	}
	/* every member at the newest cut sealed on all of them */
	if ((r = ims_repl_group_promote(d->site, pool, group, cut, gen, &rolled)) < 0) {
		if (!resumed)
			ims_repl_journal_clear(d->site, pool, group, true);
		goto out;
	}
	crash_point("promoted");
	if (reachable) {
		char plan[768];
		if (ims_repl_group_rejoin(d->site, peer, pool, group, gen, plan, sizeof(plan)) ==
		    0) {
			ims_repl_policy_remove(peer, peer_pool(d, old), pool, group, true, here);
			snprintf(rejoin, sizeof(rejoin),
				 "site '%s' answered: its writers were fenced; %s", old, plan);
		} else {
			snprintf(rejoin, sizeof(rejoin),
				 "site '%s' answered but could not be made a secondary: %s", old,
				 ims_error_last());
		}
	} else {
		snprintf(rejoin, sizeof(rejoin),
			 "site '%s' did not answer: its writers are not fenced; when it returns it "
			 "is stale (generation "
			 "%" PRIu64 ") and `imgstore group repl resync` makes it a secondary",
			 old, gen - 1);
	}
	ims_error_clear();
	if (ims_repl_group_enable(d->repl, pool, group, old, "async",
				  (uint32_t)d->cfg->defaults.rpo, NULL) < 0)
		ims_log_error("forced failover of group '%s/%s': replication back to site '%s' is "
			      "not set: %s",
			      pool, group, old, ims_error_last());
	else
		ims_repl_journal_clear(d->site, pool, group, true);
	say(op, w,
	    "%ssite '%s' is the primary of group '%s/%s' (%zu images) at '%s', generation %" PRIu64
	    " (%u image(s) rolled back to it); %s",
	    resumed ? "finished the forced failover interrupted after its record: " : "", here,
	    pool, group, gi->nmembers, cut, gen, rolled, rejoin);
	ims_log_warning("forced failover of group '%s/%s' to site '%s' at '%s' (generation %" PRIu64
			"): %s",
			pool, group, here, cut, gen, rejoin);
	r = 0;
out:
	ims_group_info_free(gi);
	ims_group_info_free(pgi);
	return r;
}

int ims_group_failover_run(ims_op *op, void *arg)
{
	ims_failover_work *w = arg;
	const char *here = ims_site_name(w->d->site);
	if (w->force) {
		if (strcmp(w->target, here) != 0)
			return ims_error_set(-EINVAL,
					     "a forced failover runs on the site that becomes the "
					     "primary: ask site '%s''s "
					     "daemon (this is site '%s')",
					     w->target, here);
		return group_forced(op, w);
	}
	if (strcmp(w->target, here) == 0)
		return ims_error_set(-EINVAL,
				     "a planned failover runs on the current primary's site, not "
				     "on '%s'; add --force "
				     "if the primary's site is lost",
				     w->target);
	return group_planned(op, w);
}

int ims_group_resync_run(ims_op *op, void *arg)
{
	ims_failover_work *w = arg;
	ims_daemon *d = w->d;
	const char *pool = w->spec.pool, *group = w->spec.image;
	ims_group_info *gi = NULL;
	ims_site *peer = NULL;
	ims_repl_side me;
	ims_repl_result res;
	char plan[768];
	int r;
	if ((r = group_side(d->site, pool, group, &me, &gi)) < 0)
		goto out;
	if (me.secondary) {
		r = ims_error_set(
			-EBUSY,
			"group '%s/%s' is a secondary on site '%s'; resync from its primary", pool,
			group, ims_site_name(d->site));
		goto out;
	}
	if ((r = ims_daemon_peer(d, w->target, &peer)) < 0 ||
	    (r = ims_repl_group_rejoin(d->site, peer, pool, group, me.generation, plan,
				       sizeof(plan))) < 0)
		goto out;
	ims_repl_policy_remove(peer, peer_pool(d, w->target), pool, group, true,
			       ims_site_name(d->site));
	if ((r = ims_repl_group_sync_now(d->repl, pool, group, w->target, progress, op, &res)) < 0)
		goto out;
	ims_op_set_result(op, "%s; sealed '%s' (%" PRIu64 " bytes shipped)", plan, res.sealed,
			  res.bytes_copied);
out:
	ims_group_info_free(gi);
	return r;
}
