/*
 * tier/policy.h: when images of a pool go cold.
 *
 * A pool's policy (idle time, target, what happens to the image) lives in RADOS in the site's
 * default pool: omap of "imgstore.tier.policies", key POOL, one JSON value. The daemon's scan
 * asks ims_tier_policy_check() about each image of the pool: it is pushed when its last access
 * (the newest of its RBD access and modify timestamps, and of what the caller's hold function
 * knows, e.g. host leases) is older than the policy's idle time and nothing holds it: no
 * replication (metadata imgstore.repl.role, or what the hold function says), no clones, no
 * client with the image open, no live host lease. Each verdict carries its reason, for the
 * dry run.
 *
 * Two daemons of a site do not push the same image: a push holds a RADOS lock with expiry
 * (object "imgstore.tier.lock", lock name POOL/IMAGE) and checks the image again once it has it.
 */
#ifndef IMS_TIER_POLICY_H
#define IMS_TIER_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rados/librados.h>

#include "common/spec.h"
#include "store/site.h"
#include "tier/tier.h"

#define IMS_TIER_POLICIES "imgstore.tier.policies"
#define IMS_TIER_LOCK	  "imgstore.tier.lock"

typedef struct {
	char pool[IMS_NAME_MAX + 1];
	uint64_t cold_after;	       /* seconds of idleness, >= 1 */
	char target[IMS_NAME_MAX + 1]; /* "" : the only target */
	ims_tier_after after;
	int64_t updated; /* unix seconds; set by ims_tier_policy_set() */
} ims_tier_policy;

/**
 * Save @p p (replacing the pool's policy) in the records of @p site in @p records_pool (the
 * site's default pool), as the functions below read them.
 *
 * @returns -EINVAL for a bad pool name, target name or an idle time of 0.
 */
int ims_tier_policy_set(ims_site *site, const char *records_pool, const ims_tier_policy *p);

/** @returns -ENOENT if @p pool has no policy. */
int ims_tier_policy_get(ims_tier_policy *out, ims_site *site, const char *records_pool,
			const char *pool);

/** @returns -ENOENT if @p pool has no policy. */
int ims_tier_policy_rm(ims_site *site, const char *records_pool, const char *pool);

/** Every policy, sorted by pool. *out malloc'ed (free()); NULL with *count 0 if none. */
int ims_tier_policy_list(ims_tier_policy **out, size_t *count, ims_site *site,
			 const char *records_pool);

/**
 * What the caller knows about @p pool/@p image beyond RBD: raise *last_access (unix seconds)
 * when it knows of a newer use, and return 1 with a reason in @p why when the image must not
 * be pushed (a live lease, a replication policy); 0 otherwise, or a negative errno.
 */
typedef int (*ims_tier_hold_fn)(void *ctx, const char *pool, const char *image, int64_t now,
				int64_t *last_access, char *why, size_t len);

typedef struct {
	char image[IMS_NAME_MAX + 1];
	int64_t last_access; /* unix seconds; 0 when unknown */
	bool push;
	char reason[300];
} ims_tier_candidate;

/**
 * Judge image @p image of policy @p p's pool at time @p now.
 *
 * @param hold may be NULL.
 * @returns 0 with the verdict in @p out, -ENOENT if the image does not exist (any more), an
 *          error of the cluster.
 */
int ims_tier_policy_check(ims_tier_candidate *out, ims_site *site, const ims_tier_policy *p,
			  const char *image, int64_t now, ims_tier_hold_fn hold, void *ctx);

/**
 * Judge every image of the pool (cold entries of the catalog have no RBD image and are not
 * listed), sorted by name.
 *
 * @param[out] out malloc'ed (free()).
 */
int ims_tier_policy_candidates(ims_tier_candidate **out, size_t *count, ims_site *site,
			       const ims_tier_policy *p, int64_t now, ims_tier_hold_fn hold,
			       void *ctx);

/**
 * Take (or with @p renew, extend) the push lock of @p pool/@p image for @p seconds under
 * @p owner. A lock held under the same owner by another client (this daemon's previous run)
 * is broken.
 *
 * @returns -EBUSY if another daemon holds it.
 */
int ims_tier_policy_lock(rados_ioctx_t io, const char *pool, const char *image, const char *owner,
			 unsigned seconds, bool renew);

void ims_tier_policy_unlock(rados_ioctx_t io, const char *pool, const char *image,
			    const char *owner);

#endif
