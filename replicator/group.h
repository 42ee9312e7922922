/*
 * replicator/group.h: replication of a consistency group (store/group.h) as one unit.
 *
 * One call of ims_repl_group_sync() is one cycle of the group, a "cut":
 *   1. for every member, a user snapshot "imgstore-anchor-<ms>" (the anchor);
 *   2. the group snapshot "imgstore-repl-<ms>" of the same ms: every member at one point
 *      (crash consistent, see store/group.h);
 *   3. every member ships diff(its anchor of its base cut -> its snapshot of this cut), read at
 *      this cut (ims_repl_sync() with opts.cut): librbd cannot diff from a group snapshot, but
 *      the anchor is older than the base cut, so that diff holds every extent that changed
 *      between the two cuts (and a few more, copied again with the same bytes);
 *   4. the secondary seals a user snapshot "imgstore-repl-<ms>" on every member, and when
 *      all are sealed, a group snapshot of that name on the secondary's group;
 *   5. retention: the newest N cuts on each side (anchors with them), never the one just
 *      sealed (the next base).
 * A member's base is the newest cut sealed on its secondary whose anchor the primary still
 * has (none: a full copy). The secondary's members hold a consistent state at every cut
 * sealed on all of them; their heads may hold a half-applied cut between cycles.
 *
 * A cut cycle resumes: a group snapshot newer than the newest cut sealed on all members, of
 * the group's current members, is finished before a new one is taken, each member from its
 * checkpoint.
 */
#ifndef IMS_REPLICATOR_GROUP_H
#define IMS_REPLICATOR_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replicator/replicator.h"
#include "replicator/failover.h"
#include "store/site.h"

#define IMS_REPL_ANCHOR_PREFIX IMS_SNAP_RESERVED_PREFIX "anchor-" /* "imgstore-anchor-" */

/**
 * One cycle of group @p pool/@p group from @p src to @p dst (same pool and image names).
 * @p out sums the members: bytes, extents, size; sealed is the cut, sealed_unix_ms its time
 * (the time of the check when unchanged), full if any member was copied in full.
 *
 * @returns -ENOENT for an unknown group, -EINVAL for a group without images, the errors of
 *          ims_repl_sync() for a member (the cut stays and the next call resumes it).
 */
int ims_repl_group_sync(ims_repl_result *out, ims_site *src, ims_site *dst, const char *pool,
			const char *group, const ims_repl_opts *opts);

/**
 * The newest cut sealed on every member of @p site's copy of the group (the members as the
 * group on @p site lists them), and its primary-side time.
 *
 * @returns -ENOENT if the group is unknown on @p site or no cut is sealed on all members.
 */
int ims_repl_group_last_sealed(char *name, size_t len, int64_t *unix_ms, ims_site *site,
			       const char *pool, const char *group);

/**
 * Remove the primary's cuts of the group (its group snapshots "imgstore-repl-*" and the
 * members' anchors): what disabling its replication leaves behind. Best effort.
 */
void ims_repl_group_forget(ims_site *src, const char *pool, const char *group);

/*
 * Failover of a group as one unit. After a planned failover's final cut, every member's head
 * on the old primary is that cut (its writers were fenced before it):
 *   ims_repl_group_demote()   on the old primary: every member gets a user snapshot named for
 *                             the cut (what it holds as a secondary), loses its anchors and is
 *                             marked a secondary;
 *   ims_repl_group_promote()  on the target: every member rolled back to the cut if its head
 *                             holds a half-applied later one, an anchor of the cut made (the
 *                             base of replication back) and marked the primary;
 * so that replication in the reverse direction ships only what changes after the cut.
 * A forced failover promotes at the newest cut sealed on every member; an old primary that
 * answers (then or later) rejoins with ims_repl_group_rejoin().
 */

/** @returns -ENOENT for an unknown group; nothing is demoted unless every member got the cut. */
int ims_repl_group_demote(ims_site *site, const char *pool, const char *group, const char *cut,
			  const char *primary_site, uint64_t generation);

/**
 * A member already the primary at @p generation or later (a promotion interrupted half-way and
 * asked again) is left as it is, with what was written to it since.
 * @param[out] rolled_back how many members were rolled back; may be NULL.
 * @returns -ENOENT if a member has no sealed snapshot @p cut (then nothing changed).
 */
int ims_repl_group_promote(unsigned *rolled_back, ims_site *site, const char *pool,
			   const char *group, const char *cut, uint64_t generation);

/**
 * Make @p old's copy of the group (an old primary) a secondary of @p cur again, at the newest
 * cut both hold: fence every member's writers; keep each member that changed since as snapshot
 * "imgstore-recovery-<ms>"; roll the group back to that cut (rbd group snapshot rollback);
 * demote every member at @p generation. With no cut in common the next cycle copies in full.
 *
 * @param[out] plan one line: what was found and done.
 */
int ims_repl_group_rejoin(char *plan, size_t len, ims_site *cur, ims_site *old, const char *pool,
			  const char *group, uint64_t generation);

/**
 * Whether @p old's copy of the group (an old primary that came back) was written after the
 * newest cut it holds in common with @p cur (as ims_repl_group_rejoin() finds it: a member
 * changed since that cut's anchor, or no cut in common): then its rejoin would keep and roll
 * back writes, which an operator decides (`group repl resync`).
 */
int ims_repl_group_diverged(bool *diverged, ims_site *cur, ims_site *old, const char *pool,
			    const char *group);

/** A verify of every member of a group at one cut. */
typedef struct {
	char cut[64];			  /* the cut compared */
	bool equal;			  /* every member equal */
	ims_repl_verify_result **members; /* in the order of the primary's group; n of them */
	char **images;			  /* "POOL/IMAGE" of each */
	size_t n;
} ims_repl_group_verify_result;

/**
 * Verify the group's copy on @p dst against @p src at the newest cut sealed on every member of
 * @p dst: ims_repl_verify() of each member, the primary read at its snapshot of that cut.
 *
 * @returns -ENOENT if the group or a cut sealed on all members is missing; the error of a
 *          member's verify otherwise. Free @p out with ims_repl_group_verify_result_free().
 */
int ims_repl_group_verify(ims_repl_group_verify_result *out, ims_site *src, ims_site *dst,
			  const char *pool, const char *group, const ims_repl_verify_opts *opts);
void ims_repl_group_verify_result_free(ims_repl_group_verify_result *res);

#endif
