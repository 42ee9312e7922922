/*
 * replicator/handover.c: the failover protocol for one image, for every image and group of a
 * site at once, and resync (replicator/handover.h). Consistency groups: handover_group.c.
 */
#include "replicator/handover.h"

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

#include "common/clock.h"
#include "common/error.h"
#include "common/fanout.h"
#include "common/log.h"
#include "replicator/failover.h"
#include "replicator/handover_internal.h"
#include "replicator/replicator_internal.h"
#include "store/group.h"
#include "store/image.h"

int ims_handover__progress(const ims_handover_env *e, uint64_t done, uint64_t total)
{
	return e->hooks->progress ? e->hooks->progress(e->ctx, done, total) : 0;
}

int ims_handover__peer(ims_site **out, const ims_handover_env *e, const char *name)
{
	return e->hooks->peer(e->ctx, name, out);
}

const char *ims_handover__peer_pool(const ims_handover_env *e, const char *site)
{
	return e->hooks->peer_pool(e->ctx, site);
}

void ims_handover__say(job *w, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->said, w->said_len, fmt, ap);
	va_end(ap);
}

static void detail(job *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void detail(job *w, const char *fmt, ...)
{
	char buf[1536];
	va_list ap;
	if (!w->e->hooks->detail)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	w->e->hooks->detail(w->e->ctx, buf);
}

bool ims_handover__may_ask(job *w, const char *name)
{
	return !w->old_down && w->e->hooks->site_up(w->e->ctx, name);
}

void ims_handover__missed(job *w, const char *old, bool asked, bool reachable)
{
	w->missed[0] = '\0';
	w->missed_partly = false;
	if (!asked || reachable)
		return;
	snprintf(w->missed, sizeof(w->missed), "%s",
		 ims_error_last()[0] ? ims_error_last() : "it did not answer");
	w->missed_partly = w->e->hooks->site_partly && w->e->hooks->site_partly(w->e->ctx, old);
}

int ims_handover__pair_of(ims_repl_status *out, const ims_handover_env *e, const char *pool,
			  const char *name, ims_repl_unit unit, const char *target)
{
	ims_repl_status *list = NULL;
	size_t n = 0;
	int r = unit == IMS_REPL_GROUP ? ims_repl_group_status(&list, &n, e->repl, pool, name)
				       : ims_repl_sched_status(&list, &n, e->repl, pool, name);
	if (r < 0)
		return r;
	r = ims_error_set(
		-ENOENT,
		"%s'%s/%s' is not replicated from site '%s' to site '%s'; enable replication first",
		unit == IMS_REPL_GROUP ? "group " : "", pool, name, ims_site_name(e->site), target);
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].target, target) == 0) {
			*out = list[i];
			ims_error_clear();
			r = 0;
		}
	free(list);
	return r;
}

void ims_handover__source_site(char *out, size_t len, const char *source)
{
	const char *slash = strchr(source, '/');
	size_t n = slash ? (size_t)(slash - source) : strlen(source);
	snprintf(out, len, "%.*s", (int)n, source);
}

int ims_handover__refuse_secondary(const job *w, const ims_repl_side *me, bool asked_here)
{
	char from[64];
	ims_handover__source_site(from, sizeof(from), me->source);
	return ims_error_set(-EROFS,
			     "%s'%s/%s' is a secondary %son site '%s': run the planned failover on "
			     "its primary's site '%s', or add --force if site '%s' is lost",
			     w->q.unit == IMS_REPL_GROUP ? "group " : "", w->q.pool, w->q.name,
			     asked_here ? "here " : "", ims_site_name(w->e->site), from, from);
}

/* A forced failover (of an image, a group or a whole site) runs on the site it promotes. */
static int check_forced_here(const job *w)
{
	const char *here = ims_site_name(w->e->site);
	if (strcmp(w->q.target, here) != 0)
		return ims_error_set(-EINVAL,
				     "a forced failover runs on the site that becomes the primary: "
				     "ask site '%s''s daemon (this is site '%s')",
				     w->q.target, here);
	return 0;
}

int ims_handover__check_site(const job *w)
{
	if (is_forced(w))
		return check_forced_here(w);
	if (strcmp(w->q.target, ims_site_name(w->e->site)) == 0)
		return ims_error_set(-EINVAL,
				     "a planned failover runs on the current primary's site, not "
				     "on '%s'; add --force if the primary's site is lost",
				     w->q.target);
	return 0;
}

void ims_handover__crash_point(const char *point)
{
	const char *at = getenv("IMGSTORE_CRASH_AT");
	if (at && strncmp(at, "failover:", 9) == 0 && strcmp(at + 9, point) == 0) {
		ims_log_warning("IMGSTORE_CRASH_AT=%s: killing this daemon now", at);
		raise(SIGKILL);
	}
}

int ims_handover__journal_step(job *w, ims_repl_journal *j, ims_repl_step step)
{
	/* each step is one that cannot be taken back alone: this daemon still holds its claim
	 * (another of the site may have taken it when a renewal failed) */
	int r = w->claim ? ims_repl_sched_claim_held(w->e->repl, w->claim) : 0;
	if (r < 0)
		return r;
	j->step = step;
	r = ims_repl_journal_put(w->e->site, w->q.pool, w->q.name, j);
	if (r == 0)
		ims_handover__crash_point(ims_repl_step_name(step));
	return r;
}

void ims_handover__forced_end(char *out, size_t len, job *w, ims_site *peer, const char *old,
			      int rejoined, const char *done, uint64_t stale)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *name = w->q.name;
	bool group = w->q.unit == IMS_REPL_GROUP;
	if (!peer && w->missed[0] && w->missed_partly) {
		/* its site answers in some PGs, not in this copy's: those of its hosts may still
		 * write there, until its PGs answer and the replication back fences them */
		snprintf(out, len,
			 "site '%s' did not answer for this copy (%.200s), though it answers "
			 "partly: its writers are not fenced yet; they are when its PGs answer "
			 "again, the copy stale (generation %" PRIu64 "): %s",
			 old, w->missed, stale,
			 group ? "`imgstore group repl status` shows what resync will do"
			       : "`imgstore repl status` shows what resync will do");
	} else if (!peer && w->missed[0]) { /* asked, and it stopped answering */
		snprintf(out, len,
			 "site '%s' did not answer (%.200s): its writers are not fenced; when it "
			 "returns it is stale (generation %" PRIu64 ") and %s",
			 old, w->missed, stale,
			 group ? "`imgstore group repl status` shows what resync will do"
			       : "`imgstore repl status` shows what resync will do");
	} else if (!peer) {
		snprintf(out, len,
			 "site '%s' did not answer: its writers are not fenced; when it returns it "
			 "is stale (generation %" PRIu64 ") and %s",
			 old, stale,
			 group ? "`imgstore group repl status` shows what resync will do"
			       : "`imgstore repl status` shows what resync will do");
	} else if (rejoined < 0) {
		snprintf(out, len, "site '%s' answered but could not be made a secondary: %s", old,
			 ims_error_last());
	} else {
		ims_repl_policy_remove(peer, ims_handover__peer_pool(e, old), pool, name, w->q.unit,
				       ims_site_name(e->site));
		snprintf(out, len, "site '%s' answered: %s", old, done);
	}
	ims_error_clear();
	/* the RPO the pair had from the old primary (it recorded it here), else the default */
	uint32_t rpo = ims_repl_sched_reverse_rpo(e->repl, pool, name, w->q.unit, old, e->rpo);
	int r = group ? ims_repl_group_enable(NULL, e->repl, pool, name, old, IMS_REPL_ASYNC, rpo)
		      : ims_repl_enable(NULL, e->repl, pool, name, old, IMS_REPL_ASYNC, rpo);
	if (r < 0)
		ims_log_error("forced failover of %s'%s/%s': replication back to site '%s' is not "
			      "set: %s",
			      group ? "group " : "", pool, name, old, ims_error_last());
	else
		ims_repl_journal_clear(e->site, pool, name, w->q.unit);
}

static int planned_paused(job *w);

/* What a failed planned failover undoes on this site's copy. */
enum {
	UNDO_PROMOTE_BACK = 1, /* this copy is the primary again, at its old generation */
	UNDO_STATE = 2,	       /* hosts may take leases again */
	UNDO_JOURNAL = 4,      /* the failover is over */
};

void ims_handover__undo_step(const job *w, const char *what, int (*fn)(void *ctx), void *ctx)
{
	ims_error_saved keep;
	ims_error_save(&keep);
	ims_error_clear();
	int r = fn(ctx);
	for (int i = 0; r == -ESHUTDOWN && i < IMS_HANDOVER_UNDO_WAIT_S; i++) {
		sleep(1);
		/* still this daemon's failover (its claim taken again on the new client), or
		 * another daemon may run it now: then nothing more is undone here */
		ims_error_clear();
		if (w->claim && (r = ims_repl_sched_claim_held(w->e->repl, w->claim)) < 0)
			break;
		ims_error_clear();
		r = fn(ctx);
	}
	if (r < 0)
		ims_log_error(
			"failover of %s'%s/%s' failed and could not undo %s: %s; run the same "
			"failover again: it finishes or rolls back what was left",
			w->q.unit == IMS_REPL_GROUP ? "group " : "", w->q.pool, w->q.name, what,
			ims_error_last_code() ? ims_error_last() : ims_strerror(r));
	ims_error_restore(&keep);
}

typedef struct {
	job *w;
	uint64_t old_generation;
} undo_ctx;

static int undo_promote(void *ctx)
{
	undo_ctx *u = ctx;
	return ims_repl_promote(NULL, 0, u->w->e->site, u->w->q.pool, u->w->q.name,
				u->old_generation, false);
}

static int undo_state(void *ctx)
{
	undo_ctx *u = ctx;
	return ims_repl_set_state(u->w->e->site, u->w->q.pool, u->w->q.name, NULL);
}

static int undo_journal(void *ctx)
{
	undo_ctx *u = ctx;
	return ims_repl_journal_clear(u->w->e->site, u->w->q.pool, u->w->q.name, IMS_REPL_IMAGE);
}

/* Undo @p what with the thread's message kept (the caller says why the step failed, not how
 * the undo went); @returns @p r. */
static int undo(job *w, int r, unsigned what, uint64_t old_generation)
{
	undo_ctx u = {.w = w, .old_generation = old_generation};
	if (what & UNDO_PROMOTE_BACK)
		ims_handover__undo_step(w, "its promotion back to the primary", undo_promote, &u);
	if (what & UNDO_STATE)
		ims_handover__undo_step(w, "its mark 'failing-over' (no new leases meanwhile)",
					undo_state, &u);
	if (what & UNDO_JOURNAL)
		ims_handover__undo_step(w, "its record in " IMS_REPL_FAILOVERS, undo_journal, &u);
	return r;
}

/* The end of a failover (of an image or a group): this site's pair handed over, the target's
 * daemons replicating back here (they know the pair when this returns), the journal gone. */
void ims_handover__reverse(job *w, ims_site *peer)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *name = w->q.name, *here = ims_site_name(e->site);
	const char *kind = w->q.unit == IMS_REPL_GROUP ? "group " : ""; /* in messages */
	ims_repl_status pair;
	ims_repl_mode mode = IMS_REPL_ASYNC;
	uint32_t rpo = e->rpo;
	if (ims_handover__pair_of(&pair, e, pool, name, w->q.unit, w->q.target) == 0) {
		mode = pair.mode;
		rpo = pair.rpo_seconds ? pair.rpo_seconds : rpo;
	}
	if (w->q.unit == IMS_REPL_GROUP)
		ims_repl_group_hand_over(NULL, e->repl, pool, name, w->q.target);
	else
		ims_repl_sched_hand_over(NULL, e->repl, pool, name, w->q.target);
	if (ims_repl_policy_put(peer, ims_handover__peer_pool(e, w->q.target), pool, name,
				w->q.unit, here, mode, rpo) < 0)
		ims_log_error(
			"failover of %s'%s/%s': site '%s' is the primary but replication back "
			"to site '%s' is not set: %s; run `imgstore %srepl enable` there",
			kind, pool, name, w->q.target, here, ims_error_last(), kind);
	ims_repl_journal_clear(e->site, pool, name, w->q.unit);
}

/* A planned failover that a killed daemon left at step j->step (demote or later): finish it, or
 * when the target cannot be promoted, roll back to this site. */
static int planned_resume(job *w, ims_repl_journal *j)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *image = w->q.name, *here = ims_site_name(e->site);
	ims_repl_step from = j->step;
	ims_site *peer = NULL;
	ims_repl_side me, them;
	char at[64] = "";
	int r;
	ims_log_warning(
		"failover of '%s/%s' to site '%s' was interrupted at step '%s'; finishing it", pool,
		image, w->q.target, ims_repl_step_name(from));
	if ((r = ims_handover__peer(&peer, e, w->q.target)) < 0 ||
	    (r = ims_repl_side_get(&them, peer, pool, image)) < 0 ||
	    (r = ims_repl_side_get(&me, e->site, pool, image)) < 0)
		return ims_error_set(r,
				     "an interrupted failover of '%s/%s' to site '%s' (at step "
				     "'%s') cannot go on: %s; run "
				     "the command again when both sites answer",
				     pool, image, w->q.target, ims_repl_step_name(from),
				     ims_error_last());
	if (j->step == IMS_REPL_STEP_DEMOTE) {
		if (!me.secondary &&
		    (r = ims_repl_demote(e->site, pool, image, w->q.target, j->generation)) < 0)
			return r;
		if ((r = ims_handover__journal_step(w, j, IMS_REPL_STEP_PROMOTE)) < 0)
			return r;
	}
	if (j->step == IMS_REPL_STEP_PROMOTE) {
		if ((them.secondary || them.generation < j->generation) &&
		    (r = ims_repl_promote(at, sizeof(at), peer, pool, image, j->generation, true)) <
			    0) {
			return undo(w,
				    ims_error_set(r,
						  "an interrupted failover of '%s/%s' could not "
						  "promote site '%s': %s; rolled back: site '%s' "
						  "is the primary again",
						  pool, image, w->q.target, ims_error_last(), here),
				    UNDO_PROMOTE_BACK | UNDO_JOURNAL, j->old_generation);
		}
		if ((r = ims_handover__journal_step(w, j, IMS_REPL_STEP_REVERSE)) < 0)
			return r;
	}
	ims_handover__reverse(w, peer);
	ims_handover__progress(e, 0, 0);
	ims_handover__say(w,
			  "finished the failover interrupted at step '%s': site '%s' is the "
			  "primary of '%s/%s', "
			  "generation %" PRIu64 "; site '%s' is its secondary",
			  ims_repl_step_name(from), w->q.target, pool, image, j->generation, here);
	ims_log_info(
		"finished the interrupted failover of '%s/%s' to site '%s' (generation %" PRIu64
		")",
		pool, image, w->q.target, j->generation);
	return 0;
}

/* The image's other pairs (other targets) start no cycle until its failover is done: a cycle's
 * snapshot holds the image's lock, which the fence must not find. */
static int planned(job *w)
{
	int r = ims_repl_sched_pause(w->e->repl, IMS_REPL_IMAGE, w->q.pool, w->q.name, w->q.target);
	if (r < 0)
		return r;
	r = planned_paused(w);
	ims_repl_sched_resume(w->e->repl, IMS_REPL_IMAGE, w->q.pool, w->q.name);
	return r;
}

/* A failover of the image recorded on this site: -EBUSY if it is not this one's to finish. */
static int recorded_is_ours(job *w, const ims_repl_journal *j)
{
	const char *pool = w->q.pool, *image = w->q.name;
	if (j->forced)
		return ims_error_set(-EBUSY,
				     "a forced failover of '%s/%s' from site '%s' to this "
				     "site was interrupted: run "
				     "`imgstore repl failover %s/%s --to %s --force` here "
				     "to finish it first",
				     pool, image, j->target, pool, image,
				     ims_site_name(w->e->site));
	if (strcmp(j->target, w->q.target) != 0)
		return ims_error_set(-EBUSY,
				     "a failover of '%s/%s' to site '%s' was interrupted "
				     "at step '%s': run `imgstore "
				     "repl failover %s/%s --to %s` to finish it first",
				     pool, image, j->target, ims_repl_step_name(j->step), pool,
				     image, j->target);
	return 0;
}

/* Whether the image may fail over to the target: a primary here, replicated to a secondary
 * there. @p me, @p them: the two copies; @p peer: the target's site. */
static int planned_check(job *w, ims_site **peer, ims_repl_side *me, ims_repl_side *them)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *image = w->q.name;
	ims_repl_status pair;
	int r;
	if ((r = ims_repl_side_get(me, e->site, pool, image)) < 0)
		return r;
	if (me->secondary)
		return ims_handover__refuse_secondary(w, me, false);
	if ((r = ims_handover__pair_of(&pair, e, pool, image, IMS_REPL_IMAGE, w->q.target)) < 0 ||
	    (r = ims_handover__peer(peer, e, w->q.target)) < 0 ||
	    (r = ims_repl_side_get(them, *peer, pool, image)) < 0)
		return r;
	if (!them->secondary)
		return ims_error_set(
			-EEXIST,
			"'%s/%s' on site '%s' is not a secondary of this site; nothing changed",
			pool, image, w->q.target);
	return 0;
}

/* Steps 1 and 2: catch up while hosts still write (the final delta is then small); then no
 * new leases: the hosts release theirs, or they are broken and the writers fenced. */
static int close_writers(job *w, unsigned *broken, unsigned *fenced)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *image = w->q.name;
	ims_repl_result res;
	char host[128];
	int r;
	if ((r = ims_repl_sync_now(&res, e->repl, pool, image, w->q.target, e->hooks->progress,
				   e->ctx)) < 0)
		return undo(w,
			    ims_error_set(r, "sync before the failover failed: %s; nothing changed",
					  ims_error_last()),
			    UNDO_JOURNAL, 0);
	if ((r = ims_repl_set_state(e->site, pool, image, "failing-over")) < 0)
		return undo(w, r, UNDO_JOURNAL, 0);
	unsigned wait_s = w->q.wait_s ? w->q.wait_s : 30;
	/* a lease that cannot be read (the site slow, this client blocklisted and replaced) is
	 * waited for as one held: its host keeps its time; the wait is by the clock, a slow read
	 * counting its time */
	double until = ims_clock_mono_s() + wait_s;
	while (ims_clock_mono_s() < until &&
	       e->hooks->leased(e->ctx, pool, image, host, sizeof(host)) != 0) {
		ims_error_clear(); /* a read that failed says nothing of the failover */
		if (ims_handover__progress(e, 0, 0) != 0)
			return undo(w,
				    ims_error_set(-ECANCELED,
						  "failover of '%s/%s' cancelled; nothing changed",
						  pool, image),
				    UNDO_STATE | UNDO_JOURNAL, 0);
		usleep(250000);
	}
	if ((r = e->hooks->break_leases(e->ctx, pool, image, broken)) < 0 ||
	    (r = ims_repl_fence(fenced, e->site, pool, image)) < 0)
		return undo(w,
			    ims_error_set(r,
					  "cannot fence the writers of '%s/%s': %s; it stays the "
					  "primary here",
					  pool, image, ims_error_last()),
			    UNDO_STATE | UNDO_JOURNAL, 0);
	return 0;
}

static int planned_paused(job *w)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *image = w->q.name, *here = ims_site_name(e->site);
	ims_site *peer = NULL;
	ims_repl_side me, them;
	ims_repl_result res;
	char at[64];
	unsigned fenced = 0, broken = 0;
	ims_repl_journal j;
	int r;

	/* a failover this site's daemon began and did not finish: finish it (from the demote on),
	 * or begin again (before it, this copy is the primary and every step may be done again) */
	if ((r = ims_repl_journal_get(&j, e->site, pool, image, IMS_REPL_IMAGE)) == 0) {
		if ((r = recorded_is_ours(w, &j)) < 0)
			return r;
		if (j.step >= IMS_REPL_STEP_DEMOTE)
			return planned_resume(w, &j);
	} else if (r != -ENOENT) {
		return r;
	}
	if ((r = planned_check(w, &peer, &me, &them)) < 0)
		return r;

	memset(&j, 0, sizeof(j));
	snprintf(j.target, sizeof(j.target), "%s", w->q.target);
	j.old_generation = me.generation;
	j.generation = (me.generation > them.generation ? me.generation : them.generation) + 1;
	j.started_ms = ims_clock_unix_ms();
	if ((r = ims_handover__journal_step(w, &j, IMS_REPL_STEP_SYNC)) < 0)
		return r;
	if ((r = close_writers(w, &broken, &fenced)) < 0)
		return r;

	/* 3. the final sync: everything written before the fence */
	if ((r = ims_repl_sync_now(&res, e->repl, pool, image, w->q.target, e->hooks->progress,
				   e->ctx)) < 0)
		return undo(w,
			    ims_error_set(r,
					  "final sync to site '%s' failed: %s; site '%s' stays the "
					  "primary (its writers were fenced: hosts take new "
					  "leases)",
					  w->q.target, ims_error_last(), here),
			    UNDO_STATE | UNDO_JOURNAL, 0);

	/* 4. swap the roles at a new generation, then hand replication to the new primary */
	uint64_t gen = j.generation;
	if ((r = ims_handover__journal_step(w, &j, IMS_REPL_STEP_DEMOTE)) < 0 ||
	    (r = ims_repl_demote(e->site, pool, image, w->q.target, gen)) < 0)
		return undo(w, r, UNDO_STATE | UNDO_JOURNAL, 0);
	if ((r = ims_handover__journal_step(w, &j, IMS_REPL_STEP_PROMOTE)) < 0 ||
	    (r = ims_repl_promote(at, sizeof(at), peer, pool, image, gen, true)) < 0)
		return undo(w,
			    ims_error_set(r,
					  "cannot promote '%s/%s' on site '%s': %s; site '%s' "
					  "stays the primary",
					  pool, image, w->q.target, ims_error_last(), here),
			    UNDO_PROMOTE_BACK | UNDO_JOURNAL, me.generation);
	if ((r = ims_handover__journal_step(w, &j, IMS_REPL_STEP_REVERSE)) < 0)
		ims_log_warning("failover of '%s/%s': %s", pool, image, ims_error_last());
	ims_handover__reverse(w, peer);
	ims_handover__say(w,
			  "site '%s' is the primary of '%s/%s' at '%s', generation %" PRIu64
			  "; site '%s' is its secondary (%u lease(s) broken, %u writer(s) fenced)",
			  w->q.target, pool, image, at[0] ? at : res.sealed, gen, here, broken,
			  fenced);
	ims_log_info("failed over '%s/%s' to site '%s' at '%s' (generation %" PRIu64 ")", pool,
		     image, w->q.target, at[0] ? at : res.sealed, gen);
	return 0;
}

void ims_handover__hold(ims_site *peer, const char *pool, const char *image, bool secondary)
{
	if (ims_repl__hold(peer, pool, image) == 0)
		return;
	ims_log_warning("forced failover of '%s/%s': its copy on site '%s' is %s but not held "
			"against other writers yet (its first replication cycle does): %s",
			pool, image, ims_site_name(peer), secondary ? "a secondary" : "fenced",
			ims_error_last());
	ims_error_clear();
}

static int forced(job *w)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *image = w->q.name, *here = ims_site_name(e->site);
	ims_site *peer = NULL;
	ims_repl_side me, them;
	char old[64], at[64];
	int r;

	if ((r = ims_repl_side_get(&me, e->site, pool, image)) < 0)
		return r;
	ims_repl_journal j;
	if (!me.secondary && ims_repl_journal_get(&j, e->site, pool, image, IMS_REPL_IMAGE) == 0 &&
	    j.forced) {
		/* promoted by a forced failover whose daemon was killed before it set the way back
		 */
		if ((r = ims_repl_enable(NULL, e->repl, pool, image, j.target, IMS_REPL_ASYNC,
					 ims_repl_sched_reverse_rpo(e->repl, pool, image,
								    IMS_REPL_IMAGE, j.target,
								    e->rpo))) < 0)
			return r;
		ims_repl_journal_clear(e->site, pool, image, IMS_REPL_IMAGE);
		ims_handover__say(w,
				  "finished the forced failover interrupted after the promotion: "
				  "site '%s' is "
				  "the primary of "
				  "'%s/%s', generation %" PRIu64
				  "; replication back to site '%s' is set",
				  here, pool, image, me.generation, j.target);
		return 0;
	}
	if (!me.secondary)
		return ims_error_set(-EEXIST,
				     "'%s/%s' is already the primary on site '%s'; nothing changed",
				     pool, image, here);
	ims_handover__source_site(old, sizeof(old), me.source);
	if (!old[0])
		return ims_error_set(-EINVAL,
				     "'%s/%s' on site '%s' does not say which site its primary is",
				     pool, image, here);
	ims_handover__progress(e, 0, 0);

	/* the old primary, if it answers: its generation counts, and its writers are fenced; not
	 * asked when its site's probes say where it lies does not answer (an open would wait
	 * for the peer's osd_timeout, then fail) */
	bool asked = ims_handover__may_ask(w, old);
	char why[200];
	bool silent = asked && e->hooks->copy_silent &&
		      e->hooks->copy_silent(e->ctx, old, pool, image, false, why, sizeof(why)) > 0;
	if (silent)
		ims_error_set(-ETIMEDOUT, "%s", why);
	bool reachable = asked && !silent && ims_handover__peer(&peer, e, old) == 0 &&
			 ims_repl_side_get(&them, peer, pool, image) == 0;
	uint64_t gen = me.generation + 1;
	if (reachable && them.generation >= gen)
		gen = them.generation + 1;
	unsigned fenced = 0;
	if (reachable && ims_repl_fence(&fenced, peer, pool, image) < 0) {
		ims_log_warning(
			"forced failover of '%s/%s': cannot fence its writers on site '%s': %s",
			pool, image, old, ims_error_last());
		reachable = false;
	}
	ims_handover__missed(w, old, asked, reachable);
	ims_error_clear();

	/* recorded first: a daemon killed after the promotion finishes the job when asked again */
	memset(&j, 0, sizeof(j));
	snprintf(j.target, sizeof(j.target), "%s", old);
	j.generation = gen;
	j.old_generation = me.generation;
	j.forced = true;
	if ((r = ims_handover__journal_step(w, &j, IMS_REPL_STEP_REVERSE)) < 0)
		return r;
	if ((r = ims_repl_promote(at, sizeof(at), e->site, pool, image, gen, true)) < 0) {
		ims_repl_journal_clear(e->site, pool, image, IMS_REPL_IMAGE);
		return r;
	}
	ims_handover__crash_point("promoted");
	ims_handover__promoted(w, reachable, old);

	char rejoin[1024], done[800] = "";
	int rejoined = -1;
	if (reachable) {
		ims_repl_divergence dv;
		if ((rejoined = ims_repl_rejoin(&dv, e->site, peer, pool, image, gen)) == 0)
			snprintf(done, sizeof(done), "%u writer(s) fenced; %s", fenced, dv.plan);
		ims_handover__hold(peer, pool, image, rejoined == 0);
	}
	ims_handover__forced_end(rejoin, sizeof(rejoin), w, reachable ? peer : NULL, old, rejoined,
				 done, gen - 1);
	ims_handover__say(w,
			  "site '%s' is the primary of '%s/%s' at '%s', generation %" PRIu64 "; %s",
			  here, pool, image, at[0] ? at : "its head", gen, rejoin);
	ims_log_warning("forced failover of '%s/%s' to site '%s' at '%s' (generation %" PRIu64
			"): %s",
			pool, image, here, at, gen, rejoin);
	return 0;
}

static int image_failover(job *w)
{
	ims_repl_side me;
	if (!is_forced(w) && strcmp(w->q.target, ims_site_name(w->e->site)) == 0 &&
	    ims_repl_side_get(&me, w->e->site, w->q.pool, w->q.name) == 0 && me.secondary)
		return ims_handover__refuse_secondary(w, &me, true);
	int r = ims_handover__check_site(w);
	if (r < 0)
		return r;
	return is_forced(w) ? forced(w) : planned(w);
}

/* One image or group of a site failover, and what became of it. */
typedef struct {
	char name[IMS_NAME_MAX + 1];
	ims_repl_unit unit;
	bool skipped; /* not a pair of this failover */
	bool missed;  /* forced: its site was asked, this copy there did not answer (not fenced) */
	bool partly;  /* and its site answers partly */
	int r;
	double secs;
	char said[1024]; /* what it did, or why it failed */
	bool settled;	 /* under the run's lock: counted as settled or failed */
	bool ended;
	bool old_left;	  /* promoted, its old copy (reached) still to make a secondary */
	bool not_reached; /* promoted, its old copy asked and not reached (not fenced) */
} site_item;

typedef struct {
	job *w;
	site_item *items;
	size_t n;
	double t0;
	pthread_mutex_t lock; /* of what follows, and each item's settled, ended and old copy */
	size_t settled;	      /* skipped, promoted or ended well */
	bool decided;	      /* the hooks' decided() was told */
} site_run;

/* Append @p name to the list @p buf (", " between); once the next one does not fit, "..." */
static void add_name(char *buf, size_t len, const char *name)
{
	size_t used = strlen(buf);
	if (used >= 3 && strcmp(buf + used - 3, "...") == 0)
		return;
	/* room kept after each name for ", ..." */
	if (used + (used ? 2 : 0) + strlen(name) + 6 > len) {
		snprintf(buf + used, len - used, "%s...", used ? ", " : "");
		return;
	}
	snprintf(buf + used, len - used, "%s%s", used ? ", " : "", name);
}

/* The decided line of @p f (under its lock) into @p line, at most @p len bytes with its NUL:
 * what is known, then the copies still at work and those not reached, their names cut so that
 * the whole fits (the operation's result is one line of 511 bytes). */
static void decided_line(char *line, size_t len, const site_run *f, size_t left)
{
	char working[200] = "", missed[200] = "", more[400];
	size_t promoted = 0, nmissed = 0;
	for (size_t k = 0; k < f->n; k++) {
		promoted += !f->items[k].skipped;
		nmissed += f->items[k].not_reached;
	}
	double t = ims_clock_mono_s() - f->t0;
	/* twice: first with no names, for the room they get */
	for (int pass = 0; pass < 2; pass++) {
		more[0] = '\0';
		if (nmissed)
			snprintf(more, sizeof(more),
				 "; %zu cop%s there %s not reached, %s writers not fenced yet (%s)",
				 nmissed, nmissed == 1 ? "y" : "ies", nmissed == 1 ? "was" : "were",
				 nmissed == 1 ? "its" : "their", missed);
		int n = snprintf(
			line, len,
			"%zu image(s) and group(s) of site '%s' in pool '%s' are the primary "
			"on site '%s' (%.1fs); the operation goes on: site '%s''s old cop%s of "
			"%zu of them %s still being made secondar%s (%s)%s",
			promoted, f->w->q.from, f->w->q.pool, f->w->q.target, t, f->w->q.from,
			left == 1 ? "y" : "ies", left, left == 1 ? "is" : "are",
			left == 1 ? "y" : "ies", working, more);
		if (pass || n < 0)
			break;
		size_t fixed = (size_t)n + 1, room = fixed < len ? (len - fixed) / 2 : 0;
		if (room > sizeof(working))
			room = sizeof(working);
		for (size_t k = 0; k < f->n && room >= 4; k++) {
			const site_item *o = &f->items[k];
			if (o->not_reached)
				add_name(missed, room, o->name);
			else if (o->old_left && !o->ended)
				add_name(working, room, o->name);
		}
	}
}

/* Item @p i of @p f is settled (@p ok: skipped, promoted, or ended well) or failed; once
 * every item is settled while some still deal with their old copies, the outcome is known. At
 * the item's end @p end; promoted with its old copy reached, @p old_left; not reached (asked,
 * no answer: its writers not fenced), @p not_reached. */
static void settle(site_run *f, size_t i, bool ok, bool end, bool old_left, bool not_reached)
{
	const ims_handover_env *e = f->w->e;
	site_item *u = &f->items[i];
	char line[IMS_HANDOVER_DECIDED_MAX] = "";
	size_t left = 0;
	pthread_mutex_lock(&f->lock);
	if (!u->settled) {
		u->settled = true;
		f->settled += ok; /* one that failed keeps the outcome unknown until the end */
	} else if (!ok) { /* promoted, then failed: never, forced() and its group's end well */
		ims_log_warning("forced failover of '%s/%s': failed after its promotion",
				f->w->q.pool, u->name);
	}
	if (end)
		u->ended = true;
	else {
		u->old_left = old_left;
		u->not_reached = not_reached;
	}
	for (size_t k = 0; k < f->n; k++)
		left += f->items[k].old_left && !f->items[k].ended;
	/* those ending now (their old copies not reached) are not waited for */
	bool tell = !f->decided && f->settled == f->n && left > 0;
	if (tell) {
		f->decided = true;
		decided_line(line, sizeof(line), f, left);
	}
	pthread_mutex_unlock(&f->lock);
	if (tell) {
		ims_log_info("forced failover of site '%s': %s", f->w->q.from, line);
		if (e->hooks->decided)
			e->hooks->decided(e->ctx, line);
	}
}

void ims_handover__promoted(job *w, bool old_left, const char *old)
{
	const ims_handover_env *e = w->e;
	if (w->batch) { /* one image or group: its failover ends when its old copy is dealt with */
		settle(w->batch, w->item, true, false, old_left, !old_left && w->missed[0]);
		return;
	}
	/* a failover of one image or group: making its old copy a secondary on a site that
	 * answers partly may wait on silent objects (the peer's osd_timeout each); its outcome is
	 * known now */
	if (!old_left || !e->hooks->decided || !e->hooks->site_partly ||
	    !e->hooks->site_partly(e->ctx, old))
		return;
	char line[1024]; /* names this long are cut in the operation's result */
	bool group = w->q.unit == IMS_REPL_GROUP;
	snprintf(line, sizeof(line),
		 "%s'%s/%s' is the primary on site '%s'; the operation goes on: site '%s' answers "
		 "partly, and its old cop%s there %s still being made %s",
		 group ? "group " : "", w->q.pool, w->q.name, ims_site_name(e->site), old,
		 group ? "ies" : "y", group ? "are" : "is", group ? "secondaries" : "a secondary");
	ims_log_info("forced failover of %s'%s/%s': %s", group ? "group " : "", w->q.pool,
		     w->q.name, line);
	e->hooks->decided(e->ctx, line);
}

/* Whether @p u is part of failover @p w; an image in a group goes with its group. */
static bool selected(job *w, const site_item *u)
{
	const ims_handover_env *e = w->e;
	ims_repl_side side;
	ims_repl_status pair;
	char src[64], grp[2 * IMS_NAME_MAX + 2];
	ims_repl_journal j;
	/* a forced failover from that site interrupted here: finished by this one (a group's
	 * members may disagree on their role then) */
	if (is_forced(w) && ims_repl_journal_get(&j, e->site, w->q.pool, u->name, u->unit) == 0 &&
	    j.forced && strcmp(j.target, w->q.from) == 0)
		return true;
	ims_error_clear();
	if (u->unit == IMS_REPL_GROUP) {
		ims_group_info *gi = NULL;
		int r = ims_handover__group_side(&side, &gi, e->site, w->q.pool, u->name);
		ims_group_info_free(gi);
		if (r < 0)
			return false;
	} else {
		if (ims_repl_side_get(&side, e->site, w->q.pool, u->name) < 0)
			return false;
		if (ims_group_of_image(grp, sizeof(grp), e->site, w->q.pool, u->name) == 0 &&
		    grp[0])
			return false;
	}
	if (is_forced(w)) {
		ims_handover__source_site(src, sizeof(src), side.source);
		return side.secondary && strcmp(src, w->q.from) == 0;
	}
	return !side.secondary &&
	       ims_handover__pair_of(&pair, e, w->q.pool, u->name, u->unit, w->q.target) == 0;
}

/* Run @p fn on @p w with its image or group claimed among the site's daemons. */
static int claimed(job *w, int (*fn)(job *))
{
	ims_repl_claim *k = NULL;
	char what[3 * IMS_NAME_MAX];
	const char *kind = ims_repl_unit_name(w->q.unit);
	snprintf(what, sizeof(what), "%s '%s/%s'", kind, w->q.pool, w->q.name);
	int r = ims_repl_sched_claim(&k, w->e->repl, kind, w->q.pool, w->q.name, what);
	if (r < 0)
		return r;
	w->claim = k;
	r = fn(w);
	w->claim = NULL;
	ims_repl_sched_unclaim(w->e->repl, k);
	return r;
}

/* An item of a site failover, claimed: passed by when it is not the failover's (selected()),
 * else failed over. */
static int item_run(job *one)
{
	site_run *f = one->batch;
	site_item *u = &f->items[one->item];
	if (!selected(f->w, u)) {
		u->skipped = true;
		return 0;
	}
	if (u->unit == IMS_REPL_GROUP)
		return is_forced(one) ? ims_handover__group_forced(one)
				      : ims_handover__group_planned(one);
	return is_forced(one) ? forced(one) : planned(one);
}

/* One image or group of a site failover (an item of common/fanout.h): its failure is its
 * own, the others go on. */
static int fan_item(void *ctx, unsigned worker, size_t i)
{
	site_run *f = ctx;
	(void)worker;
	site_item *u = &f->items[i];
	job one = *f->w;
	snprintf(one.q.name, sizeof(one.q.name), "%s", u->name);
	one.q.from[0] = '\0';
	one.q.unit = u->unit;
	one.said = u->said;
	one.said_len = sizeof(u->said);
	one.batch = f;
	one.item = i;
	ims_error_clear();
	double t0 = ims_clock_mono_s();
	/* claimed before its role is looked at: another daemon of the site failing it over
	 * meanwhile would change it */
	u->r = claimed(&one, item_run);
	if (u->r == -EBUSY) { /* claimed by another failover: passed by if not this one's */
		ims_error_saved refused; /* selected() clears the thread's message */
		ims_error_save(&refused);
		bool ours = selected(f->w, u);
		ims_error_restore(&refused);
		if (!ours) {
			u->r = 0;
			u->skipped = true;
		}
	}
	if (u->r == 0 && u->skipped) {
		settle(f, i, true, true, false, false);
		return 0;
	}
	u->secs = ims_clock_mono_s() - t0;
	u->missed = u->r == 0 && one.missed[0];
	u->partly = u->missed && one.missed_partly;
	if (u->r < 0)
		snprintf(u->said, sizeof(u->said), "%s", ims_error_last());
	settle(f, i, u->r == 0, true, false, false);
	ims_log_info("%s failover of %s '%s/%s' to site '%s' %s in %.2fs: %s",
		     is_forced(&one) ? "forced" : "planned", ims_repl_unit_name(u->unit),
		     one.q.pool, u->name, one.q.target, u->r < 0 ? "failed" : "done", u->secs,
		     u->said);
	return 0;
}

/* Forced failovers only touch this site (the old one is asked once, and not at all when it is
 * down); their cost is the fence of the old replicating daemon's guard on each image, a
 * blocklist entry the monitors commit in batches (one proposal a second): the more run at
 * once, the fewer batches. Planned ones sync and fence on both sites, so fewer run at once. */
#define FAILOVER_FORCED_WORKERS	 64
#define FAILOVER_PLANNED_WORKERS 4

/* The images and groups of the pool, groups first (their cut is what matters most). */
static int list_units(job *w, site_run *f)
{
	ims_image_list_entry *list = NULL;
	char **groups = NULL;
	size_t n = 0, ng = 0;
	int r;
	if ((r = ims_image_list(&list, &n, w->e->site, w->q.pool)) < 0)
		return r;
	if ((r = ims_group_list(&groups, &ng, w->e->site, w->q.pool)) < 0) {
		ims_image_list_free(list, n);
		return r;
	}
	f->n = n + ng;
	f->items = calloc(f->n + 1, sizeof(*f->items));
	if (f->items) {
		for (size_t i = 0; i < ng; i++) {
			snprintf(f->items[i].name, sizeof(f->items[i].name), "%s", groups[i]);
			f->items[i].unit = IMS_REPL_GROUP;
		}
		for (size_t i = 0; i < n; i++)
			snprintf(f->items[ng + i].name, sizeof(f->items[ng + i].name), "%s",
				 list[i].name);
	}
	ims_group_list_free(groups, ng);
	ims_image_list_free(list, n);
	return f->items ? 0 : -ENOMEM;
}

/* Run every unit on @p nw threads at most. @returns 0, or the pool's own error (then no unit
 * ran: they must not be counted as done). */
static int run_workers(site_run *f, unsigned nw)
{
	ims_fanout_opts o = IMS_FANOUT_OPTS_INIT;
	o.workers = nw;
	o.nitems = f->n;
	o.item = fan_item;
	o.ctx = f;
	return ims_fanout_run(NULL, &o);
}

/* The call's result: what was done, or which failed (the first ones, cut to fit; every one is
 * in the detail lines), then one detail line per unit. */
static int summarize(job *w, const site_run *f, bool old_down, double total)
{
	size_t done = 0, failed = 0, todo = 0, missed = 0, partly = 0;
	char failures[400] = "";
	double slowest = 0;
	int r = 0;
	for (size_t i = 0; i < f->n; i++) {
		const site_item *u = &f->items[i];
		if (u->skipped)
			continue;
		todo++;
		if (u->secs > slowest)
			slowest = u->secs;
		if (u->r == 0) {
			done++;
			missed += u->missed;
			partly += u->partly;
			continue;
		}
		failed++;
		char one[1024];
		snprintf(one, sizeof(one), "%s%s/%s: %.200s", failures[0] ? "; " : "", w->q.pool,
			 u->name, u->said);
		size_t used = strlen(failures), room = sizeof(failures) - 1 - used,
		       len = strlen(one);
		memcpy(failures + used, one, len < room ? len : room);
		failures[used + (len < room ? len : room)] = '\0';
	}
	ims_log_info("%s failover of site '%s' to site '%s' in pool '%s': %zu of %zu done in %.2fs "
		     "(slowest %.2fs)",
		     is_forced(w) ? "forced" : "planned", w->q.from, w->q.target, w->q.pool, done,
		     todo, total, slowest);
	if (failed)
		r = ims_error_set(-EIO,
				  "%zu of %zu images and groups of site '%s' in pool '%s' did not "
				  "fail over (%.1fs): %s",
				  failed, todo, w->q.from, w->q.pool, total, failures);
	else if (missed) /* the old site was asked: the copies it did not serve */
		ims_handover__say(
			w,
			"%zu image(s) and group(s) of site '%s' in pool '%s' failed over "
			"to site '%s' in %.1fs (slowest %.1fs); site '%s' %s: %zu of %zu "
			"cop%s there %s not reached: %s writers are fenced when %s answer "
			"again (the lines below say which)",
			done, w->q.from, w->q.pool, w->q.target, total, slowest, w->q.from,
			partly ? "answers partly" : "did not answer for all of them", missed, done,
			done == 1 ? "y" : "ies", missed == 1 ? "was" : "were",
			missed == 1 ? "its" : "their", partly ? "their PGs" : "it");
	else
		ims_handover__say(w,
				  "%zu image(s) and group(s) of site '%s' in pool '%s' failed over "
				  "to site '%s' in %.1fs (slowest %.1fs)%s%s%s",
				  done, w->q.from, w->q.pool, w->q.target, total, slowest,
				  old_down ? "; site '" : "", old_down ? w->q.from : "",
				  old_down ? "' did not answer: its writers are fenced when it "
					     "returns"
					   : "");
	for (size_t i = 0; i < f->n; i++) /* one line each, for `repl failover --from` to print */
		if (!f->items[i].skipped)
			detail(w, "%s %s/%s %s %.2fs: %s", ims_repl_unit_name(f->items[i].unit),
			       w->q.pool, f->items[i].name, f->items[i].r < 0 ? "FAILED" : "ok",
			       f->items[i].secs, f->items[i].said);
	return r;
}

static int site_failover(job *w)
{
	const ims_handover_env *e = w->e;
	const char *here = ims_site_name(e->site);
	double t0 = ims_clock_mono_s();
	int r;
	if (!is_forced(w) && strcmp(w->q.from, here) != 0)
		return ims_error_set(
			-EINVAL,
			"a planned failover of site '%s''s images runs on site '%s', not '%s'; add "
			"--force if site '%s' is lost",
			w->q.from, w->q.from, here, w->q.from);
	if (is_forced(w) && (r = check_forced_here(w)) < 0)
		return r;
	/* one failover of the site's images in the pool among the site's daemons (each image
	 * and group is claimed too, by its item) */
	char what[3 * IMS_NAME_MAX];
	snprintf(what, sizeof(what), "site '%s''s images in pool '%s'", w->q.from, w->q.pool);
	ims_repl_claim *claim = NULL;
	if ((r = ims_repl_sched_claim(&claim, e->repl, "site", w->q.pool, w->q.from, what)) < 0)
		return r;
	site_run f = {.w = w, .t0 = t0};
	pthread_mutex_init(&f.lock, NULL);
	if ((r = list_units(w, &f)) < 0)
		goto out;

	/* the old site is asked once, now: when it does not answer, no image waits for it */
	job all = *w;
	all.old_down = is_forced(w) && !e->hooks->site_up(e->ctx, w->q.from);
	if (all.old_down)
		ims_log_warning("forced failover of site '%s': it does not answer its probes; its "
				"images are promoted "
				"without waiting for it, and fenced when it returns",
				w->q.from);
	f.w = &all;
	if ((r = run_workers(&f, is_forced(w) ? FAILOVER_FORCED_WORKERS
					      : FAILOVER_PLANNED_WORKERS)) < 0) {
		r = ims_error_set(r,
				  "failover of site '%s' in pool '%s' did not start: %s; nothing "
				  "changed",
				  w->q.from, w->q.pool, ims_error_last());
		goto out;
	}
	r = summarize(w, &f, all.old_down, ims_clock_mono_s() - t0);
out:
	free(f.items);
	pthread_mutex_destroy(&f.lock);
	ims_repl_sched_unclaim(e->repl, claim);
	return r;
}

static int image_resync(job *w)
{
	const ims_handover_env *e = w->e;
	ims_repl_divergence dv;
	ims_repl_result res;
	ims_site *peer = NULL;
	int r = ims_repl_resync(&dv, e->repl, w->q.pool, w->q.name, w->q.target);
	if (r < 0)
		return r;
	/* the old primary's daemons stop replicating their copy: it is a secondary now */
	if (ims_handover__peer(&peer, e, w->q.target) == 0)
		ims_repl_policy_remove(peer, ims_handover__peer_pool(e, w->q.target), w->q.pool,
				       w->q.name, IMS_REPL_IMAGE, ims_site_name(e->site));
	/* the old site has just come back and may not serve every request yet: a few tries */
	for (int attempt = 1;; attempt++) {
		if ((r = ims_repl_sync_now(&res, e->repl, w->q.pool, w->q.name, w->q.target,
					   e->hooks->progress, e->ctx)) == 0)
			break;
		if (attempt == 3 || r == -EBUSY || r == -ENOENT || r == -EUCLEAN || r == -ECANCELED)
			return ims_error_set(
				r, "%s; but its first cycle failed (replication tries again): %s",
				dv.plan, ims_error_last());
		ims_log_warning("resync of '%s/%s': cycle %d failed, trying again: %s", w->q.pool,
				w->q.name, attempt, ims_error_last());
		sleep(2);
	}
	ims_handover__say(w, "%s; sealed '%s' (%" PRIu64 " bytes shipped)", dv.plan, res.sealed,
			  res.bytes_copied);
	return 0;
}

int ims_handover_failover(char *said, size_t said_len, const ims_handover_env *e,
			  const ims_handover_req *q)
{
	job w = {.e = e, .q = *q, .said = said, .said_len = said_len};
	said[0] = '\0';
	return claimed(&w,
		       q->unit == IMS_REPL_GROUP ? ims_handover__group_failover : image_failover);
}

int ims_handover_site(char *said, size_t said_len, const ims_handover_env *e,
		      const ims_handover_req *q)
{
	job w = {.e = e, .q = *q, .said = said, .said_len = said_len};
	said[0] = '\0';
	return site_failover(&w);
}

int ims_handover_resync(char *said, size_t said_len, const ims_handover_env *e,
			const ims_handover_req *q)
{
	job w = {.e = e, .q = *q, .said = said, .said_len = said_len};
	said[0] = '\0';
	return claimed(&w, q->unit == IMS_REPL_GROUP ? ims_handover__group_resync : image_resync);
}
