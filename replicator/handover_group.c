/*
 * replicator/handover_group.c: the failover protocol for a consistency group, failed over as
 * one unit (replicator/handover.h; the steps on its members are replicator/group.h's).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "replicator/group.h"
#include "replicator/handover_internal.h"

/*
 * @p site's copy of the group as one side: its members agree on their role (else -EUCLEAN);
 * the highest generation; the source of a secondary. @p gi gets the members.
 */
int ims_handover__group_side(ims_repl_side *out, ims_group_info **gi, ims_site *site,
			     const char *pool, const char *group)
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
		if ((r = ims_repl_side_get(&m, site, mp, mi)) < 0)
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

/* @returns 0, or the first member's error (the others are marked all the same). */
static int group_set_state(ims_site *site, const ims_group_info *gi, const char *state)
{
	int r = 0;
	for (size_t k = 0; k < gi->nmembers; k++) {
		int m = ims_repl_set_state(site, gi->members[k].pool, gi->members[k].image, state);
		if (m < 0 && r == 0)
			r = m;
	}
	return r;
}

/* What a failed planned failover of a group undoes on this site's members. */
enum {
	UNDO_PROMOTE_BACK = 1, /* the primaries again, at @p cut and their old generation */
	UNDO_STATE = 2,	       /* hosts may take leases again (needs @p gi) */
	UNDO_JOURNAL = 4,      /* the failover is over */
};

typedef struct {
	job *w;
	const ims_group_info *gi;
	const char *cut;
	uint64_t old_generation;
} undo_ctx;

static int undo_promote(void *ctx)
{
	undo_ctx *u = ctx;
	return ims_repl_group_promote(NULL, u->w->e->site, u->w->q.pool, u->w->q.name, u->cut,
				      u->old_generation);
}

static int undo_state(void *ctx)
{
	undo_ctx *u = ctx;
	return group_set_state(u->w->e->site, u->gi, NULL);
}

static int undo_journal(void *ctx)
{
	undo_ctx *u = ctx;
	return ims_repl_journal_clear(u->w->e->site, u->w->q.pool, u->w->q.name, IMS_REPL_GROUP);
}

/* Undo @p what with the thread's message kept; @returns @p r. */
static int undo(job *w, int r, unsigned what, const ims_group_info *gi, const char *cut,
		uint64_t old_generation)
{
	undo_ctx u = {.w = w, .gi = gi, .cut = cut, .old_generation = old_generation};
	if (what & UNDO_PROMOTE_BACK)
		ims_handover__undo_step(w, "the members' promotion back to the primaries",
					undo_promote, &u);
	if (what & UNDO_STATE)
		ims_handover__undo_step(w,
					"the members' mark 'failing-over' (no new leases "
					"meanwhile)",
					undo_state, &u);
	if (what & UNDO_JOURNAL)
		ims_handover__undo_step(w, "its record in " IMS_REPL_FAILOVERS, undo_journal, &u);
	return r;
}

/* A group's planned failover that a killed daemon left at the demote or later: finish it at
 * its recorded cut, or roll back when the target cannot be promoted. Members that disagree on
 * their role (killed in the middle of a step) are taken as not done with it. */
static int group_resume(job *w, ims_repl_journal *j)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *group = w->q.name, *here = ims_site_name(e->site);
	ims_repl_step from = j->step;
	ims_group_info *gi = NULL, *pgi = NULL;
	ims_site *peer = NULL;
	ims_repl_side me, them;
	unsigned rolled = 0;
	int r, rm, rt;
	ims_log_warning(
		"failover of group '%s/%s' to site '%s' was interrupted at step '%s'; finishing it",
		pool, group, w->q.target, ims_repl_step_name(from));
	if ((r = ims_handover__peer(&peer, e, w->q.target)) < 0)
		return r;
	rm = ims_handover__group_side(&me, &gi, e->site, pool, group);
	rt = ims_handover__group_side(&them, &pgi, peer, pool, group);
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
		    (r = ims_repl_group_demote(e->site, pool, group, j->cut, w->q.target,
					       j->generation)) < 0)
			return r;
		if ((r = ims_handover__journal_step(w, j, IMS_REPL_STEP_PROMOTE)) < 0)
			return r;
	}
	if (j->step == IMS_REPL_STEP_PROMOTE) {
		if ((rt == -EUCLEAN || them.secondary || them.generation < j->generation) &&
		    (r = ims_repl_group_promote(&rolled, peer, pool, group, j->cut,
						j->generation)) < 0) {
			return undo(w,
				    ims_error_set(r,
						  "an interrupted failover of group '%s/%s' could "
						  "not promote site '%s': %s; rolled back: site "
						  "'%s' is the primary again",
						  pool, group, w->q.target, ims_error_last(), here),
				    UNDO_PROMOTE_BACK | UNDO_JOURNAL, NULL, j->cut,
				    j->old_generation);
		}
		if ((r = ims_handover__journal_step(w, j, IMS_REPL_STEP_REVERSE)) < 0)
			return r;
	}
	ims_handover__reverse(w, peer);
	ims_handover__progress(e, 0, 0);
	ims_handover__say(
		w,
		"finished the failover interrupted at step '%s': site '%s' is the primary of group "
		"'%s/%s' at '%s', "
		"generation %" PRIu64 "; site '%s' is its secondary",
		ims_repl_step_name(from), w->q.target, pool, group, j->cut, j->generation, here);
	return 0;
}

/* Whether the group may fail over to the target: the primary here, replicated to a secondary
 * there. @p me, @p them: the two sides; @p gi: this site's members; @p peer: the target. */
static int group_check(job *w, ims_site **peer, ims_repl_side *me, ims_repl_side *them,
		       ims_group_info **gi)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *group = w->q.name;
	ims_group_info *pgi = NULL;
	ims_repl_status pair;
	int r;
	if ((r = ims_handover__group_side(me, gi, e->site, pool, group)) < 0)
		return r;
	if (me->secondary)
		return ims_handover__refuse_secondary(w, me, false);
	if ((r = ims_handover__pair_of(&pair, e, pool, group, IMS_REPL_GROUP, w->q.target)) < 0 ||
	    (r = ims_handover__peer(peer, e, w->q.target)) < 0)
		return r;
	r = ims_handover__group_side(them, &pgi, *peer, pool, group);
	ims_group_info_free(pgi);
	if (r < 0)
		return r;
	if (!them->secondary)
		return ims_error_set(-EEXIST,
				     "group '%s/%s' on site '%s' is not a secondary of this site; "
				     "nothing changed",
				     pool, group, w->q.target);
	return 0;
}

/* Steps 1 and 2: catch up while hosts still write; then no new leases on any member: hosts
 * release theirs, or they are broken and the writers fenced. */
static int group_close_writers(job *w, const ims_group_info *gi, unsigned *broken, unsigned *fenced)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *group = w->q.name;
	ims_repl_result res;
	char host[128];
	int r;
	if ((r = ims_repl_group_sync_now(&res, e->repl, pool, group, w->q.target,
					 e->hooks->progress, e->ctx)) < 0)
		return ims_error_set(r, "sync before the failover failed: %s; nothing changed",
				     ims_error_last());
	group_set_state(e->site, gi, "failing-over");
	unsigned wait_s = w->q.wait_s ? w->q.wait_s : 30;
	double until = ims_clock_mono_s() + wait_s; /* by the clock: a slow read counts its time */
	while (ims_clock_mono_s() < until) {
		bool leased = false;
		for (size_t k = 0; k < gi->nmembers && !leased; k++)
			/* a lease that cannot be read (the site slow, this client blocklisted
			 * and replaced) is waited for as one held: its host keeps its time */
			leased = e->hooks->leased(e->ctx, gi->members[k].pool, gi->members[k].image,
						  host, sizeof(host)) != 0;
		ims_error_clear(); /* a read that failed says nothing of the failover */
		if (!leased)
			break;
		if (ims_handover__progress(e, 0, 0) != 0)
			return undo(w,
				    ims_error_set(-ECANCELED,
						  "failover of group '%s/%s' cancelled; nothing "
						  "changed",
						  pool, group),
				    UNDO_STATE, gi, NULL, 0);
		usleep(250000);
	}
	for (size_t k = 0; k < gi->nmembers; k++) {
		const char *mp = gi->members[k].pool, *mi = gi->members[k].image;
		unsigned b = 0, f = 0;
		if ((r = e->hooks->break_leases(e->ctx, mp, mi, &b)) < 0 ||
		    (r = ims_repl_fence(&f, e->site, mp, mi)) < 0)
			return undo(w,
				    ims_error_set(r,
						  "cannot fence the writers of '%s/%s': %s; group "
						  "'%s/%s' stays the primary here",
						  mp, mi, ims_error_last(), pool, group),
				    UNDO_STATE, gi, NULL, 0);
		*broken += b;
		*fenced += f;
	}
	return 0;
}

/* Step 4: swap the roles of every member at cut @p j->cut and generation @p j->generation,
 * each step recorded before it is done. */
static int group_swap(job *w, ims_repl_journal *j, const ims_group_info *gi, ims_site *peer)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *group = w->q.name, *here = ims_site_name(e->site);
	unsigned rolled = 0;
	int r;
	if ((r = ims_handover__journal_step(w, j, IMS_REPL_STEP_DEMOTE)) < 0)
		return undo(w, r, UNDO_STATE, gi, NULL, 0);
	if ((r = ims_repl_group_demote(e->site, pool, group, j->cut, w->q.target, j->generation)) <
	    0)
		return undo(w,
			    ims_error_set(r,
					  "cannot demote group '%s/%s' on site '%s': %s; it stays "
					  "the primary",
					  pool, group, here, ims_error_last()),
			    UNDO_PROMOTE_BACK | UNDO_STATE | UNDO_JOURNAL, gi, j->cut,
			    j->old_generation);
	if ((r = ims_handover__journal_step(w, j, IMS_REPL_STEP_PROMOTE)) < 0 ||
	    (r = ims_repl_group_promote(&rolled, peer, pool, group, j->cut, j->generation)) < 0)
		return undo(w,
			    ims_error_set(r,
					  "cannot promote group '%s/%s' on site '%s': %s; site "
					  "'%s' stays the primary",
					  pool, group, w->q.target, ims_error_last(), here),
			    UNDO_PROMOTE_BACK | UNDO_JOURNAL, gi, j->cut, j->old_generation);
	if (ims_handover__journal_step(w, j, IMS_REPL_STEP_REVERSE) < 0)
		ims_log_warning("failover of group '%s/%s': %s", pool, group, ims_error_last());
	return 0;
}

static int group_planned_paused(job *w)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *group = w->q.name, *here = ims_site_name(e->site);
	ims_group_info *gi = NULL;
	ims_site *peer = NULL;
	ims_repl_side me, them;
	ims_repl_result res;
	unsigned fenced = 0, broken = 0;
	ims_repl_journal j;
	int r;

	/* a failover this daemon began and did not finish: from the demote on, finish it */
	if ((r = ims_repl_journal_get(&j, e->site, pool, group, IMS_REPL_GROUP)) == 0) {
		if (strcmp(j.target, w->q.target) != 0)
			return ims_error_set(
				-EBUSY,
				"a failover of group '%s/%s' to site '%s' was interrupted at step "
				"'%s': run "
				"`imgstore group repl failover %s/%s --to %s` to finish it first",
				pool, group, j.target, ims_repl_step_name(j.step), pool, group,
				j.target);
		if (j.step >= IMS_REPL_STEP_DEMOTE)
			return group_resume(w, &j);
	} else if (r != -ENOENT) {
		return r;
	}
	if ((r = group_check(w, &peer, &me, &them, &gi)) < 0 ||
	    (r = group_close_writers(w, gi, &broken, &fenced)) < 0)
		goto out;

	/* 3. the final cut: every member as it was at the fence */
	if ((r = ims_repl_group_sync_now(&res, e->repl, pool, group, w->q.target,
					 e->hooks->progress, e->ctx)) < 0) {
		r = undo(w,
			 ims_error_set(r,
				       "final sync of group '%s/%s' to site '%s' failed: %s; site "
				       "'%s' stays the primary (its writers were fenced: hosts "
				       "take new leases)",
				       pool, group, w->q.target, ims_error_last(), here),
			 UNDO_STATE, gi, NULL, 0);
		goto out;
	}

	/* 4. swap the roles of every member at a new generation, then hand replication over */
	memset(&j, 0, sizeof(j));
	snprintf(j.target, sizeof(j.target), "%s", w->q.target);
	snprintf(j.cut, sizeof(j.cut), "%s", res.sealed);
	j.unit = IMS_REPL_GROUP;
	j.generation = (me.generation > them.generation ? me.generation : them.generation) + 1;
	j.old_generation = me.generation;
	if ((r = group_swap(w, &j, gi, peer)) < 0)
		goto out;
	ims_handover__reverse(w, peer);
	ims_handover__say(w,
			  "site '%s' is the primary of group '%s/%s' (%zu images) at '%s', "
			  "generation %" PRIu64
			  "; site '%s' is its secondary (%u lease(s) broken, %u writer(s) fenced)",
			  w->q.target, pool, group, gi->nmembers, j.cut, j.generation, here, broken,
			  fenced);
	ims_log_info("failed over group '%s/%s' to site '%s' at '%s' (generation %" PRIu64 ")",
		     pool, group, w->q.target, j.cut, j.generation);
	r = 0;
out:
	ims_group_info_free(gi);
	return r;
}

/* Whether the old primary's copy of the group, on site @p old, cannot be opened by what that
 * site's probes say (ims_handover_hooks.copy_silent): the group's own objects, or one of its
 * images' (@p gi, this site's members: the same images there). Says which as the error. */
static bool group_silent(job *w, const char *old, const ims_group_info *gi)
{
	const ims_handover_env *e = w->e;
	char why[200];
	if (!e->hooks->copy_silent)
		return false;
	if (e->hooks->copy_silent(e->ctx, old, w->q.pool, w->q.name, true, why, sizeof(why)) > 0) {
		ims_error_set(-ETIMEDOUT, "%s", why);
		return true;
	}
	for (size_t k = 0; k < gi->nmembers; k++) {
		const char *mp = gi->members[k].pool, *mi = gi->members[k].image;
		if (e->hooks->copy_silent(e->ctx, old, mp, mi, false, why, sizeof(why)) > 0) {
			ims_error_set(-ETIMEDOUT, "its image '%s/%s': %s", mp, mi, why);
			return true;
		}
	}
	return false;
}

int ims_handover__group_forced(job *w)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *group = w->q.name, *here = ims_site_name(e->site);
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
	bool resumed =
		ims_repl_journal_get(&j, e->site, pool, group, IMS_REPL_GROUP) == 0 && j.forced;
	ims_error_clear();
	if (resumed) {
		if ((r = ims_group_info_get(&gi, e->site, pool, group)) < 0)
			goto out;
		snprintf(old, sizeof(old), "%s", j.target);
		snprintf(cut, sizeof(cut), "%s", j.cut);
		gen = j.generation;
	} else {
		if ((r = ims_handover__group_side(&me, &gi, e->site, pool, group)) < 0)
			goto out;
		if (!me.secondary) {
			r = ims_error_set(-EEXIST,
					  "group '%s/%s' is already the primary on site '%s'; "
					  "nothing changed",
					  pool, group, here);
			goto out;
		}
		ims_handover__source_site(old, sizeof(old), me.source);
		if ((r = ims_repl_group_last_sealed(cut, sizeof(cut), NULL, e->site, pool, group)) <
		    0) {
			r = ims_error_set(r,
					  "%s: there is no consistent point to promote group "
					  "'%s/%s' at; nothing changed",
					  ims_error_last(), pool, group);
			goto out;
		}
		gen = me.generation + 1;
	}
	ims_handover__progress(e, 0, 0);
	/* not asked where its site's probes say the group or one of its images lies in a PG that
	 * does not answer (an open would wait for the peer's osd_timeout, then fail) */
	bool asked = ims_handover__may_ask(w, old);
	bool reachable = asked && !group_silent(w, old, gi) &&
			 ims_handover__peer(&peer, e, old) == 0 &&
			 ims_handover__group_side(&them, &pgi, peer, pool, group) == 0;
	if (!resumed && reachable && them.generation >= gen)
		gen = them.generation + 1;
	ims_handover__missed(w, old, asked, reachable);
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
		j.unit = IMS_REPL_GROUP;
		if ((r = ims_handover__journal_step(w, &j, IMS_REPL_STEP_REVERSE)) < 0)
			goto out;
	}
	/* every member at the newest cut sealed on all of them */
	if ((r = ims_repl_group_promote(&rolled, e->site, pool, group, cut, gen)) < 0) {
		if (!resumed)
			ims_repl_journal_clear(e->site, pool, group, IMS_REPL_GROUP);
		goto out;
	}
	ims_handover__crash_point("promoted");
	ims_handover__promoted(w, reachable, old);
	char done[800] = "";
	int rejoined = -1;
	if (reachable) {
		char plan[768];
		if ((rejoined = ims_repl_group_rejoin(plan, sizeof(plan), e->site, peer, pool,
						      group, gen)) == 0)
			snprintf(done, sizeof(done), "its writers were fenced; %s", plan);
		/* every old member held against other writers at once, as an image's old copy */
		for (size_t k = 0; k < pgi->nmembers; k++)
			ims_handover__hold(peer, pgi->members[k].pool, pgi->members[k].image,
					   rejoined == 0);
	}
	ims_handover__forced_end(rejoin, sizeof(rejoin), w, reachable ? peer : NULL, old, rejoined,
				 done, gen - 1);
	ims_handover__say(w,
			  "%ssite '%s' is the primary of group '%s/%s' (%zu images) at '%s', "
			  "generation %" PRIu64 " (%u image(s) rolled back to it); %s",
			  resumed ? "finished the forced failover interrupted after its record: "
				  : "",
			  here, pool, group, gi->nmembers, cut, gen, rolled, rejoin);
	ims_log_warning("forced failover of group '%s/%s' to site '%s' at '%s' (generation %" PRIu64
			"): %s",
			pool, group, here, cut, gen, rejoin);
	r = 0;
out:
	ims_group_info_free(gi);
	ims_group_info_free(pgi);
	return r;
}

/* The group's pairs start no scheduled cycle, and none to another target, until its failover
 * is done (as an image's, handover.c planned()): a cycle's group snapshot on the primary between
 * the final cut and the demote would ship past the cut to a site about to be promoted. */
int ims_handover__group_planned(job *w)
{
	int r = ims_repl_sched_pause(w->e->repl, IMS_REPL_GROUP, w->q.pool, w->q.name, w->q.target);
	if (r < 0)
		return r;
	r = group_planned_paused(w);
	ims_repl_sched_resume(w->e->repl, IMS_REPL_GROUP, w->q.pool, w->q.name);
	return r;
}

int ims_handover__group_failover(job *w)
{
	int r = ims_handover__check_site(w);
	if (r < 0)
		return r;
	return is_forced(w) ? ims_handover__group_forced(w) : ims_handover__group_planned(w);
}

int ims_handover__group_resync(job *w)
{
	const ims_handover_env *e = w->e;
	const char *pool = w->q.pool, *group = w->q.name;
	ims_group_info *gi = NULL;
	ims_site *peer = NULL;
	ims_repl_side me;
	ims_repl_result res;
	char plan[768];
	int r;
	if ((r = ims_handover__group_side(&me, &gi, e->site, pool, group)) < 0)
		goto out;
	if (me.secondary) {
		r = ims_error_set(
			-EBUSY,
			"group '%s/%s' is a secondary on site '%s'; resync from its primary", pool,
			group, ims_site_name(e->site));
		goto out;
	}
	if ((r = ims_handover__peer(&peer, e, w->q.target)) < 0 ||
	    (r = ims_repl_group_resync(plan, sizeof(plan), e->repl, pool, group, w->q.target,
				       me.generation)) < 0)
		goto out;
	ims_repl_policy_remove(peer, ims_handover__peer_pool(e, w->q.target), pool, group,
			       IMS_REPL_GROUP, ims_site_name(e->site));
	if ((r = ims_repl_group_sync_now(&res, e->repl, pool, group, w->q.target,
					 e->hooks->progress, e->ctx)) < 0)
		goto out;
	ims_handover__say(w, "%s; sealed '%s' (%" PRIu64 " bytes shipped)", plan, res.sealed,
			  res.bytes_copied);
out:
	ims_group_info_free(gi);
	return r;
}
