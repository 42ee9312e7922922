/*
 * replicator/snapsched.h: snapshot schedules with retention.
 *
 * A schedule snapshots an image or a consistency group every `every` seconds, under the name
 * "imgstore-sched-<unix ms>" (IMS_SNAPSCHED_PREFIX: one of imgstore's own names, so that a
 * client can neither take nor remove one by hand), and prunes the older ones by a retention
 * rule like restic's and borg's --keep-hourly/--keep-daily/--keep-weekly (ims_snapsched_retain).
 *
 * The schedules of a site are JSON records (store/record.h) in the omap of
 * IMS_SNAPSCHED_OBJECT in the site's default pool, one key a schedule ("image:POOL/NAME" or
 * "group:POOL/NAME"). A runner thread in each imgstored of the site looks at them every second;
 * only the daemon that holds the RADOS lock IMS_SNAPSCHED_LOCK of that object (taken for
 * 30 s, renewed every tick) runs them, so several daemons of one site never snapshot twice and
 * another takes over within the lock's expiry when the holder dies.
 *
 * A site runs the schedules of the images and groups that are primary there: the runner skips
 * a secondary (no snapshot, no retention, no error). Replication carries a schedule and its
 * snapshots to the secondary's site (ims_snapsched_mirror(), replicator/replicator.h), so that
 * after a failover the new primary's site takes the snapshots and the old one stops.
 *
 * It lives in replicator/ beside the replication scheduler: a scheduler of work on a site's
 * images that must run once per site, on store/.
 */
#ifndef IMS_REPLICATOR_SNAPSCHED_H
#define IMS_REPLICATOR_SNAPSCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/spec.h"
#include "store/site.h"

#define IMS_SNAPSCHED_PREFIX "imgstore-sched-"
#define IMS_SNAPSCHED_OBJECT "imgstore.snap.schedules"
#define IMS_SNAPSCHED_LOCK   "imgstore.snap.schedules.lock"

/** How many snapshots each rule keeps; 0 for a rule not used. */
typedef struct {
	unsigned hourly, daily, weekly;
} ims_snapsched_keep;

/** The length of the rule's buckets, in seconds: 3600, 86400, 604800 outside tests. */
typedef struct {
	int64_t hour, day, week;
} ims_snapsched_buckets;

/** The buckets of an "hour" of @p hour seconds: a day is 24 of them, a week 168. */
ims_snapsched_buckets ims_snapsched_buckets_of(int64_t hour);

/** A snapshot the rule looks at. */
typedef struct {
	const char *name;
	int64_t unix_ms; /* when it was taken */
	bool pinned;	 /* a clone depends on it (protected), or replication needs it: kept */
} ims_snapsched_snap;

/**
 * Parse "hourly=N,daily=N,weekly=N" (any of the three, in any order, at least one of them
 * above 0, each N up to 10000).
 *
 * @returns -EINVAL with a message naming what is wrong.
 */
int ims_snapsched_keep_parse(ims_snapsched_keep *out, const char *s);

/** "hourly=N,daily=N,weekly=N" into @p buf. */
char *ims_snapsched_keep_format(char *buf, size_t len, const ims_snapsched_keep *k);

/**
 * The retention rule, pure logic. Each rule (hourly, daily, weekly) walks the snapshots from
 * the newest and keeps the newest snapshot of each bucket (unix time divided by the bucket's
 * length, UTC) until it has kept its count: "keep the newest snapshot of each of the last N
 * hours that have one", as restic's --keep-hourly. A snapshot kept by any rule is kept; so are
 * the newest snapshot of all and every pinned one, whatever the rules say.
 *
 * @param[out] keep @p n flags, in the order of @p snaps (which need not be sorted).
 * @returns -EINVAL for a bucket length under 1 s, -ENOMEM.
 */
int ims_snapsched_retain(bool *keep, const ims_snapsched_snap *snaps, size_t n,
			 const ims_snapsched_keep *k, const ims_snapsched_buckets *b);

/** The time in the name "imgstore-sched-<unix ms>", or -1 for another name. */
int64_t ims_snapsched_snap_time(const char *name);

/* ---- schedules, in RADOS ---- */

/* ims_snapsched_add() and _remove(): an image of that name, else a group of it */
#define IMS_SNAPSCHED_UNIT_ANY (-1)

typedef struct {
	char pool[IMS_NAME_MAX + 1];
	char name[IMS_NAME_MAX + 1];
	int unit; /* ims_repl_unit: IMS_REPL_IMAGE or IMS_REPL_GROUP */
	uint64_t every_s;
	ims_snapsched_keep keep;
	int64_t created_ms;
	int64_t last_ms;      /* the last snapshot taken; 0: none yet */
	char last_error[256]; /* the last run's failure, "" when it succeeded */
} ims_snapsched;

/**
 * Add (or replace) the schedule of @p s->pool/@p s->name, which must exist (an image, a
 * group when unit is IMS_REPL_GROUP, either with IMS_SNAPSCHED_UNIT_ANY), in the records pool
 * @p records_pool of @p site.
 *
 * @param[out] out the schedule as recorded; may be NULL.
 * @returns -ENOENT for an unknown image or group, -EINVAL for every_s 0 or a keep of no
 *          snapshot.
 */
int ims_snapsched_add(ims_snapsched *out, ims_site *site, const char *records_pool,
		      const ims_snapsched *s);

/** Remove a schedule (@p unit may be IMS_SNAPSCHED_UNIT_ANY). @returns -ENOENT if there is
 *  none. */
int ims_snapsched_remove(ims_site *site, const char *records_pool, int unit, const char *pool,
			 const char *name);

/** @param[out] out every schedule of the site, free(). */
int ims_snapsched_list(ims_snapsched **out, size_t *count, ims_site *site,
		       const char *records_pool);

/**
 * Copy the schedule of @p pool/@p name (@p unit IMS_REPL_IMAGE or IMS_REPL_GROUP) from the
 * records of @p src to those of @p dst (both in @p records_pool), or remove @p dst's when @p src
 * has none: the replication cycle of the unit calls it, so that the secondary's site knows the
 * schedule and runs it once promoted. Writes only when @p dst's differs in its rule.
 */
int ims_snapsched_mirror(ims_site *src, ims_site *dst, const char *records_pool, int unit,
			 const char *pool, const char *name);

/* ---- the runner ---- */

typedef struct ims_snapsched_runner ims_snapsched_runner;

/* Due schedules a tick runs at once (their snapshots' ids come from the monitors together). */
#define IMS_SNAPSCHED_WORKERS 8

typedef struct {
	unsigned version;
	ims_site *site;
	const char *records_pool;
	const char *owner; /* the lock's cookie: this daemon's host and site */
	int64_t hour_s;	   /* the rule's hour (0: 3600): shortened by tests */
	unsigned lock_s;   /* the runner's lock (0: 30 s) */
	unsigned tick_ms;  /* how often it looks (0: 1000) */
	/* after a snapshot of an image was taken (its digest, queued); must not block; may be
	 * NULL */
	void (*taken)(void *ctx, const char *pool, const char *image, const char *snap);
	void *taken_ctx;
	/* version 2: due schedules a tick runs at once (0: IMS_SNAPSCHED_WORKERS) */
	unsigned workers;
} ims_snapsched_opts;

#define IMS_SNAPSCHED_OPTS_VERSION 2
#define IMS_SNAPSCHED_OPTS_INIT                                                                    \
	{                                                                                          \
		.version = IMS_SNAPSCHED_OPTS_VERSION                                              \
	}

/** Start the runner thread. */
int ims_snapsched_start(ims_snapsched_runner **out, const ims_snapsched_opts *o);

/** Run every schedule that is due once, now (what the thread does each tick, lock included). */
int ims_snapsched_tick(ims_snapsched_runner *r);

/** Stop the thread and release the lock. Accepts NULL. */
void ims_snapsched_stop(ims_snapsched_runner *r);

#endif
