/*
 * tier/scan.h: the scan that applies the tiering policies (tier/policy.h) on a schedule.
 *
 * Every interval (the first after at most 30 s, so that frequent restarts do not starve it),
 * each pool's policy is judged (ims_tier_policy_candidates()) and its idle images are pushed
 * one at a time, each under its RADOS push lock so that several daemons of a site never push
 * the same image: the lock is taken, the image judged again (another daemon may have pushed
 * it, a host leased it since the listing), the push run and waited for, the lock released.
 *
 * What holds an image beyond RBD (leases, replication) and how a push runs (the daemon runs it
 * as an Operation) are the caller's: callbacks.
 */
#ifndef IMS_TIER_SCAN_H
#define IMS_TIER_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tier/policy.h"

/* A push lock lives this long unless renewed (every third of it, by the push's progress). */
#define IMS_TIER_PUSH_LOCK_SECONDS 60

typedef struct ims_tier_scan ims_tier_scan;

/** One push the scan asks for; the push renews its lock with ims_tier_push_job_renew(). */
typedef struct {
	char pool[IMS_NAME_MAX + 1];
	char image[IMS_NAME_MAX + 1];
	char target[IMS_NAME_MAX + 1]; /* the S3 target's name */
	ims_tier_after after;
	char reason[300]; /* why the policy pushes it ("idle for 3d") */
	/* the lock */
	ims_site *site;
	char records_pool[IMS_NAME_MAX + 1];
	char owner[128];
	int64_t renewed; /* unix seconds */
} ims_tier_push_job;

typedef struct {
	ims_site *site;
	const char *records_pool; /* the policies and the push locks (the site's default pool) */
	const char *owner;	  /* this daemon, in the push locks ("host/site") */
	uint64_t interval;	  /* seconds between two scans; 0: no scan at all */
	ims_tier_hold_fn hold;	  /* may be NULL */
	/** The S3 target a policy names ("": the only one) into @p name; < 0 skips the policy. */
	int (*target)(void *ctx, const char *asked, char *name, size_t len);
	/**
	 * Run the push of @p job (copy what outlives the call) and return once it ended (0,
	 * whether it succeeded or failed: the callee logs), or once ims_tier_scan_stopping()
	 * says so while it still runs (1: it keeps its lock, which expires after it), or < 0 if
	 * it could not start.
	 */
	int (*push)(void *ctx, ims_tier_scan *scan, const ims_tier_push_job *job);
	void *ctx; /* for hold, target and push */
} ims_tier_scan_opts;

/** Start the scan thread; with @p o->interval 0, none (*out NULL, 0 returned). */
int ims_tier_scan_start(ims_tier_scan **out, const ims_tier_scan_opts *o);

/** Whether ims_tier_scan_stop() was called: a push callback stops waiting then. */
bool ims_tier_scan_stopping(ims_tier_scan *s);

/** Stop the scan and wait for its thread; call before whatever runs the pushes stops. NULL ok. */
void ims_tier_scan_stop(ims_tier_scan *s);

/** From a push's progress: extend its lock once a third of its life has passed.
 *  @returns 0, or < 0 once the lock is lost (another daemon took it): stop the push. */
int ims_tier_push_job_renew(ims_tier_push_job *job);

#endif
