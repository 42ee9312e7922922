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

#include <stddef.h>
#include <stdint.h>

#include "replicator/replicator.h"
#include "store/site.h"

#define IMS_REPL_ANCHOR_PREFIX "imgstore-anchor-"

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
int ims_repl_group_last_sealed(ims_site *site, const char *pool, const char *group, char *name, size_t len,
			       int64_t *unix_ms);

/**
 * Remove the primary's cuts of the group (its group snapshots "imgstore-repl-*" and the
 * members' anchors): what disabling its replication leaves behind. Best effort.
 */
void ims_repl_group_forget(ims_site *src, const char *pool, const char *group);

#endif
