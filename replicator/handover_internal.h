/*
 * replicator/handover_internal.h: what handover.c and handover_group.c share (not installed).
 */
#ifndef IMS_REPLICATOR_HANDOVER_INTERNAL_H
#define IMS_REPLICATOR_HANDOVER_INTERNAL_H

#include "replicator/failover.h"
#include "replicator/handover.h"
#include "store/group.h"

/* One failover being run: the request, and where what it did is said. */
typedef struct {
	const ims_handover_env *e;
	ims_handover_req q;
	bool old_down; /* a site failover found the old primary's site down: do not ask it */
	char *said;    /* one line: what it did */
	size_t said_len;
	/* a forced failover: the old primary's site answers (some of its PGs at least) but this
	 * copy there did not; why (its writers are fenced when it answers again) */
	char missed[320];
	bool missed_partly; /* and its site answers partly (the probes say so) */
	/* a forced failover of a site: the batch this job is item @p item of (handover.c) */
	void *batch;
	size_t item;
	ims_repl_claim *claim; /* its image or group, claimed among the site's daemons */
} job;

static inline bool is_forced(const job *w)
{
	return w->q.mode == IMS_HANDOVER_FORCED;
}

/* The hooks, NULL-safe where they may be absent. */
int ims_handover__progress(const ims_handover_env *e, uint64_t done, uint64_t total);
int ims_handover__peer(ims_site **out, const ims_handover_env *e, const char *name);
const char *ims_handover__peer_pool(const ims_handover_env *e, const char *site);

/* A forced failover promoted this site's copy of w->q.name; @p old_left: its old copy, on site
 * @p old, answered and is made a secondary next. In a site's failover, the hooks' decided() is
 * told once the last one is promoted while some still deal with their old copies; in a failover
 * of one image or group, at once when @p old answers partly (making the old copy a secondary
 * may then wait for silent objects). */
void ims_handover__promoted(job *w, bool old_left, const char *old);

/* Hold the old primary's copy @p pool/@p image on @p peer, fenced (and a secondary now, or stale
 * if it could not be made one: @p secondary), against other writers at once: store/site.h's
 * writer guard, which this site's replication back to it takes at its first cycle, but that
 * cycle waits while its site answers partly, and until then a client there could still write
 * (split brain). A copy that cannot be held now (logged) is held by that cycle. */
void ims_handover__hold(ims_site *peer, const char *pool, const char *image, bool secondary);

/* What the failover did, into w->said. */
void ims_handover__say(job *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether the old primary's site @p name may be asked: not when the probes say it is down (a
 * forced failover must not wait for a dead site, once per image). */
bool ims_handover__may_ask(job *w, const char *name);

/* A forced failover asked site @p old (@p asked) and did not reach its copy (!@p reachable):
 * keep why (ims_error_last()) in w->missed, and whether that site answers partly, for
 * ims_handover__forced_end() to say. */
void ims_handover__missed(job *w, const char *old, bool asked, bool reachable);

/* The mode and RPO this site replicates @p unit @p pool/@p name to @p target with. */
int ims_handover__pair_of(ims_repl_status *out, const ims_handover_env *e, const char *pool,
			  const char *name, ims_repl_unit unit, const char *target);

/* The site name in a copy's source ("SITE/POOL/IMAGE"). */
void ims_handover__source_site(char *out, size_t len, const char *source);

/* The refusal of a planned failover of w->q.name, a secondary (@p me) on this site: -EROFS,
 * naming its primary's site. @p asked_here: this site was named as the target. */
int ims_handover__refuse_secondary(const job *w, const ims_repl_side *me, bool asked_here);

/* Whether this site runs failover @p w of an image or a group: a forced one on the target's,
 * a planned one anywhere else (the primary's); else -EINVAL naming the right one. */
int ims_handover__check_site(const job *w);

/* For the fault tests: IMGSTORE_CRASH_AT=failover:STEP kills this daemon (SIGKILL) right after
 * the journal recorded STEP and before the step is done, as a kill -9 at that moment would. */
void ims_handover__crash_point(const char *point);

/* Record the failover's next step, then (in tests) maybe die there. */
int ims_handover__journal_step(job *w, ims_repl_journal *j, ims_repl_step step);

/* The end of a failover of an image or a group: this site's pair handed over, replication
 * set back from the target, the journal gone. */
void ims_handover__reverse(job *w, ims_site *peer);

/* An undo's step of a failed failover (safe to run again): @p fn(@p ctx) run until it succeeds
 * or fails otherwise than by this daemon's blocklisted client (-ESHUTDOWN, which the site's
 * probe replaces within probe_interval), IMS_HANDOVER_UNDO_WAIT_S at most; what is still
 * not undone then is logged, naming @p what of @p w's unit (a mark left behind refuses new
 * leases until the same failover runs again). The thread's message is kept. */
#define IMS_HANDOVER_UNDO_WAIT_S 15
void ims_handover__undo_step(const job *w, const char *what, int (*fn)(void *ctx), void *ctx);

/* The end of a forced failover of an image or a group: what became of the old primary @p old,
 * one line into @p out: made a secondary (@p rejoined 0; @p done says how, and its replication
 * policy on @p peer goes), not (@p rejoined < 0: the thread's message says why), or not asked
 * (@p peer NULL: it did not answer, and is stale at generation @p stale). Then replication back
 * to @p old is set and the journal cleared (kept if that fails: the same command sets it). */
void ims_handover__forced_end(char *out, size_t len, job *w, ims_site *peer, const char *old,
			      int rejoined, const char *done, uint64_t stale);

/* handover_group.c */
int ims_handover__group_side(ims_repl_side *out, ims_group_info **gi, ims_site *site,
			     const char *pool, const char *group);
int ims_handover__group_planned(job *w);
int ims_handover__group_forced(job *w);
int ims_handover__group_failover(job *w);
int ims_handover__group_resync(job *w);

#endif
