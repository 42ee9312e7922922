/* replicator/snapsched.c: snapshot schedules in RADOS and the runner that takes and prunes them. */
#include "replicator/snapsched.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <rados/librados.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/fanout.h"
#include "common/log.h"
#include "common/opts.h"
#include "common/threads.h"
#include "replicator/digest.h"
#include "replicator/failover.h"
#include "store/group.h"
#include "store/image.h"
#include "store/record.h"
#include "store/snap.h"

/* ---------------------------------------------------------------------------------------- */
/* records */

static const ims_record_field fields[] = {
	IMS_RECORD_FIELD(ims_snapsched, pool, IMS_RECORD_STR),
	IMS_RECORD_FIELD(ims_snapsched, name, IMS_RECORD_STR),
	IMS_RECORD_FIELD(ims_snapsched, unit, IMS_RECORD_INT),
	IMS_RECORD_FIELD(ims_snapsched, every_s, IMS_RECORD_U64),
	{"keep_hourly", IMS_RECORD_INT, offsetof(ims_snapsched, keep.hourly), sizeof(unsigned)},
	{"keep_daily", IMS_RECORD_INT, offsetof(ims_snapsched, keep.daily), sizeof(unsigned)},
	{"keep_weekly", IMS_RECORD_INT, offsetof(ims_snapsched, keep.weekly), sizeof(unsigned)},
	IMS_RECORD_FIELD(ims_snapsched, created_ms, IMS_RECORD_I64),
	IMS_RECORD_FIELD(ims_snapsched, last_ms, IMS_RECORD_I64),
	IMS_RECORD_FIELD(ims_snapsched, last_error, IMS_RECORD_STR),
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static void key_of(char *buf, size_t len, int unit, const char *pool, const char *name)
{
	snprintf(buf, len, "%s:%s/%s", unit == IMS_REPL_GROUP ? "group" : "image", pool, name);
}

static const char *unit_word(int unit)
{
	return unit == IMS_REPL_GROUP ? "group" : "image";
}

/* The record of @p s written; with @p existing only if it is still there (a runner's write
 * back: an `rm` meanwhile stays removed). */
static int put(ims_site *site, const char *records_pool, const ims_snapsched *s, bool existing)
{
	char key[2 * IMS_NAME_MAX + 16];
	key_of(key, sizeof(key), s->unit, s->pool, s->name);
	json_object *o = ims_record_encode(s, fields, NFIELDS);
	if (!o)
		return -ENOMEM;
	ims_records rs = IMS_RECORDS_SITE(site, records_pool, IMS_SNAPSCHED_OBJECT);
	int r = existing ? ims_record_replace(&rs, key, o) : ims_record_put(&rs, key, o);
	json_object_put(o);
	return r;
}

/* IMS_REPL_IMAGE or IMS_REPL_GROUP: what @p pool/@p name is (@p unit says, or ANY). */
static int resolve(int *out, ims_site *site, int unit, const char *pool, const char *name)
{
	int r;
	if (unit != IMS_REPL_GROUP) {
		if ((r = ims_image_exists(site, pool, name)) < 0)
			return r;
		if (r == 1) {
			*out = IMS_REPL_IMAGE;
			return 0;
		}
		if (unit == IMS_REPL_IMAGE)
			return ims_error_set(-ENOENT, "image '%s/%s' does not exist on site '%s'",
					     pool, name, ims_site_name(site));
	}
	ims_group_info *gi = NULL;
	if ((r = ims_group_info_get(&gi, site, pool, name)) == -ENOENT && unit != IMS_REPL_GROUP)
		return ims_error_set(-ENOENT, "no image or group '%s/%s' on site '%s'", pool, name,
				     ims_site_name(site));
	if (r < 0)
		return r;
	ims_group_info_free(gi);
	*out = IMS_REPL_GROUP;
	return 0;
}

int ims_snapsched_add(ims_snapsched *out, ims_site *site, const char *records_pool,
		      const ims_snapsched *s)
{
	int r, unit = IMS_REPL_IMAGE;
	if (s->every_s == 0)
		return ims_error_set(-EINVAL, "--every must be at least 1s");
	if (s->every_s > 366ull * 86400)
		return ims_error_set(-EINVAL, "--every must be at most a year");
	if (s->keep.hourly + s->keep.daily + s->keep.weekly == 0)
		return ims_error_set(-EINVAL, "--keep keeps no snapshot");
	if ((r = resolve(&unit, site, s->unit, s->pool, s->name)) < 0)
		return r;
	ims_snapsched rec = *s;
	rec.unit = unit;
	rec.created_ms = ims_clock_unix_ms();
	rec.last_ms = 0;
	rec.last_error[0] = '\0';
	/* a schedule replaced keeps the time of its last snapshot: no burst on a change */
	char key[2 * IMS_NAME_MAX + 16];
	json_object *old = NULL;
	key_of(key, sizeof(key), s->unit, s->pool, s->name);
	ims_records rs = IMS_RECORDS_SITE(site, records_pool, IMS_SNAPSCHED_OBJECT);
	if (ims_record_get(&old, &rs, key) == 0) {
		ims_snapsched prev;
		memset(&prev, 0, sizeof(prev));
		ims_record_decode(&prev, old, fields, NFIELDS);
		rec.last_ms = prev.last_ms;
		json_object_put(old);
	}
	if ((r = put(site, records_pool, &rec, false)) < 0)
		return r;
	if (out)
		*out = rec;
	return 0;
}

int ims_snapsched_remove(ims_site *site, const char *records_pool, int unit, const char *pool,
			 const char *name)
{
	char key[2 * IMS_NAME_MAX + 16];
	json_object *old = NULL;
	ims_records rs = IMS_RECORDS_SITE(site, records_pool, IMS_SNAPSCHED_OBJECT);
	key_of(key, sizeof(key), unit == IMS_REPL_GROUP ? IMS_REPL_GROUP : IMS_REPL_IMAGE, pool,
	       name);
	int r = ims_record_get(&old, &rs, key);
	if (r == -ENOENT && unit == IMS_SNAPSCHED_UNIT_ANY) {
		unit = IMS_REPL_GROUP;
		key_of(key, sizeof(key), unit, pool, name);
		r = ims_record_get(&old, &rs, key);
	}
	if (r == -ENOENT)
		return ims_error_set(-ENOENT, "'%s/%s' has no snapshot schedule", pool, name);
	if (r < 0)
		return r;
	json_object_put(old);
	return ims_record_del(&rs, key);
}

static int decode(void *elem, const char *key, json_object *val)
{
	(void)key;
	if (!val)
		return 1; /* a damaged record hides no other */
	ims_record_decode(elem, val, fields, NFIELDS);
	return 0;
}

int ims_snapsched_list(ims_snapsched **out, size_t *count, ims_site *site, const char *records_pool)
{
	void *v = NULL;
	ims_records rs = IMS_RECORDS_SITE(site, records_pool, IMS_SNAPSCHED_OBJECT);
	int r = ims_record_list(&v, count, &rs, sizeof(ims_snapsched), decode, NULL);
	if (r < 0)
		return r;
	*out = v;
	return 0;
}

int ims_snapsched_mirror(ims_site *src, ims_site *dst, const char *records_pool, int unit,
			 const char *pool, const char *name)
{
	char key[2 * IMS_NAME_MAX + 16];
	json_object *from = NULL, *to = NULL;
	key_of(key, sizeof(key), unit, pool, name);
	ims_records rs = IMS_RECORDS_SITE(src, records_pool, IMS_SNAPSCHED_OBJECT);
	ims_records rd = IMS_RECORDS_SITE(dst, records_pool, IMS_SNAPSCHED_OBJECT);
	int r = ims_record_get(&from, &rs, key);
	if (r < 0 && r != -ENOENT)
		return r;
	int rt = ims_record_get(&to, &rd, key);
	if (rt < 0 && rt != -ENOENT) {
		json_object_put(from);
		return rt;
	}
	if (r == -ENOENT) { /* removed on the primary's site: on the secondary's too */
		json_object_put(to);
		return rt == 0 ? ims_record_del(&rd, key) : 0;
	}
	ims_snapsched a, b;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	ims_record_decode(&a, from, fields, NFIELDS);
	json_object_put(from);
	if (rt == 0) {
		ims_record_decode(&b, to, fields, NFIELDS);
		json_object_put(to);
		if (a.every_s == b.every_s && a.unit == b.unit && a.keep.hourly == b.keep.hourly &&
		    a.keep.daily == b.keep.daily && a.keep.weekly == b.keep.weekly)
			return 0;
	}
	a.last_error[0] = '\0';
	if ((r = put(dst, records_pool, &a, false)) == 0)
		ims_log_debug("snapshot schedule of %s '%s/%s' copied to site '%s'",
			      unit_word(unit), pool, name, ims_site_name(dst));
	return r;
}

/* Whether @p pool/@p image is a secondary on @p site, or in the middle of a failover. */
static bool not_primary(ims_site *site, const char *pool, const char *image)
{
	ims_repl_side side;
	return ims_repl_side_get(&side, site, pool, image) == 0 &&
	       (side.secondary || side.state[0]);
}

/* Whether @p s's image or group is a secondary on @p site (a group: any member, so that a
 * group half-way through a promotion is not snapshotted). */
static bool is_secondary(ims_site *site, const ims_snapsched *s)
{
	if (s->unit != IMS_REPL_GROUP)
		return not_primary(site, s->pool, s->name);
	ims_group_info *gi = NULL;
	bool sec = false;
	if (ims_group_info_get(&gi, site, s->pool, s->name) == 0)
		for (size_t k = 0; k < gi->nmembers && !sec; k++)
			sec = not_primary(site, gi->members[k].pool, gi->members[k].image);
	ims_group_info_free(gi);
	ims_error_clear();
	return sec;
}

/* ---------------------------------------------------------------------------------------- */
/* one schedule's run: take a snapshot when due, then prune */

#define SECONDARY_LOOK_MS 30000 /* a secondary's schedule is looked at again after this at most */

typedef struct {
	char key[2 * IMS_NAME_MAX + 16];
	int64_t until_ms;
} secondary_seen;

struct ims_snapsched_runner {
	ims_snapsched_opts o;
	ims_snapsched_buckets b;
	char owner[160]; /* the lock's cookie: the daemon's owner and this run's nonce */
	bool held;
	/* schedules found on a secondary: not looked at again before until_ms (under seen_lock:
	 * a tick runs its due schedules on several threads) */
	secondary_seen *seen;
	size_t nseen, capseen;
	pthread_mutex_t seen_lock;
	_Atomic int64_t held_ms; /* when the runner's lock was last taken or renewed */
	atomic_bool halt;	 /* the tick lost its lock or the daemon stops: no more snapshots */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
	ims_threads threads;
};

/* Until when the schedule @p key is known to be a secondary's (0: not known). */
static int64_t secondary_until(ims_snapsched_runner *rn, const char *key)
{
	int64_t until = 0;
	pthread_mutex_lock(&rn->seen_lock);
	for (size_t i = 0; i < rn->nseen && !until; i++)
		if (strcmp(rn->seen[i].key, key) == 0)
			until = rn->seen[i].until_ms;
	pthread_mutex_unlock(&rn->seen_lock);
	return until;
}

/* Remember that @p key is a secondary's until @p until_ms (entries past their time are reused). */
static void secondary_note_locked(ims_snapsched_runner *rn, const char *key, int64_t until_ms)
{
	size_t slot = 0;
	int64_t now = ims_clock_unix_ms();
	while (slot < rn->nseen && strcmp(rn->seen[slot].key, key) != 0)
		slot++;
	if (slot == rn->nseen) /* not there: a slot past its time, else a new one */
		for (slot = 0; slot < rn->nseen && rn->seen[slot].until_ms > now;)
			slot++;
	if (slot == rn->nseen) {
		if (rn->nseen == rn->capseen) {
			size_t cap = rn->capseen ? 2 * rn->capseen : 16;
			secondary_seen *v = realloc(rn->seen, cap * sizeof(*v));
			if (!v)
				return; /* looked at again next tick */
			rn->seen = v;
			rn->capseen = cap;
		}
		rn->nseen++;
	}
	snprintf(rn->seen[slot].key, sizeof(rn->seen[slot].key), "%s", key);
	rn->seen[slot].until_ms = until_ms;
}

static void secondary_note(ims_snapsched_runner *rn, const char *key, int64_t until_ms)
{
	pthread_mutex_lock(&rn->seen_lock);
	secondary_note_locked(rn, key, until_ms);
	pthread_mutex_unlock(&rn->seen_lock);
}

/* The scheduled snapshots of the image or group of @p s, with their times. */
static int list_sched_snaps(ims_snapsched_snap **out, char ***names, size_t *n, ims_site *site,
			    const ims_snapsched *s)
{
	int r;
	size_t cnt = 0, k = 0;
	ims_snap_info *snaps = NULL;
	ims_group_info *gi = NULL;
	if (s->unit == IMS_REPL_GROUP) {
		if ((r = ims_group_info_get(&gi, site, s->pool, s->name)) < 0)
			return r;
		cnt = gi->nsnaps;
	} else {
		if ((r = ims_snap_list(&snaps, &cnt, site, s->pool, s->name)) < 0)
			return r;
	}
	ims_snapsched_snap *v = calloc(cnt ? cnt : 1, sizeof(*v));
	char **nm = calloc(cnt ? cnt : 1, sizeof(*nm));
	r = -ENOMEM;
	if (!v || !nm)
		goto out;
	for (size_t i = 0; i < cnt; i++) {
		const char *name = gi ? gi->snaps[i].name : snaps[i].name;
		int64_t t = ims_snapsched_snap_time(name);
		if (t < 0)
			continue;
		if (!(nm[k] = strdup(name)))
			goto out;
		v[k].name = nm[k];
		v[k].unix_ms = t;
		v[k].pinned = gi ? false : snaps[i].is_protected;
		k++;
	}
	*out = v;
	*names = nm;
	*n = k;
	v = NULL;
	nm = NULL;
	r = 0;
out:
	if (nm)
		for (size_t i = 0; i < k; i++)
			free(nm[i]);
	free(nm);
	free(v);
	ims_snap_list_free(snaps, cnt);
	if (gi)
		ims_group_info_free(gi);
	return r;
}

static int prune(unsigned *removed, ims_snapsched_runner *rn, const ims_snapsched *s)
{
	ims_snapsched_snap *v = NULL;
	char **names = NULL;
	size_t n = 0;
	bool *keep = NULL;
	int r = list_sched_snaps(&v, &names, &n, rn->o.site, s);
	*removed = 0;
	if (r < 0)
		return r;
	r = -ENOMEM;
	if (n && !(keep = calloc(n, sizeof(*keep))))
		goto out;
	if ((r = ims_snapsched_retain(keep, v, n, &s->keep, &rn->b)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (keep[i])
			continue;
		int e = s->unit == IMS_REPL_GROUP
				? ims_group_snap_remove(rn->o.site, s->pool, s->name, names[i])
				: ims_snap_remove(rn->o.site, s->pool, s->name, names[i]);
		if (e == -EBUSY) /* a clone made since the listing depends on it: kept */
			continue;
		if (e < 0 && e != -ENOENT) {
			r = e;
			goto out;
		}
		ims_log_info("snapshot schedule of %s '%s/%s': removed '%s' (retention %s%u,%u,%u)",
			     unit_word(s->unit), s->pool, s->name, names[i],
			     "h,d,w=", s->keep.hourly, s->keep.daily, s->keep.weekly);
		(*removed)++;
	}
	r = 0;
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(v);
	free(keep);
	return r;
}

/* A group's snapshot taken: each member's part handed to `taken` as "GROUP@SNAP" (its digest
 * name, replicator/digest.h). */
static void taken_group(ims_snapsched_runner *rn, const ims_snapsched *s, const char *snap)
{
	ims_group_info *gi = NULL;
	char name[IMS_NAME_MAX + 1];
	if ((size_t)snprintf(name, sizeof(name), "%s%c%s", s->name, IMS_DIGEST_GROUP_SEP, snap) >=
		    sizeof(name) ||
	    ims_group_info_get(&gi, rn->o.site, s->pool, s->name) < 0) {
		ims_error_clear();
		return;
	}
	for (size_t k = 0; k < gi->nmembers; k++)
		rn->o.taken(rn->o.taken_ctx, gi->members[k].pool, gi->members[k].image, name);
	ims_group_info_free(gi);
}

/* Whether schedule @p s is still recorded: a tick works from the list it read at its start, and
 * an `rm` since (while an earlier schedule of the tick took its time) must not see one more
 * snapshot taken. */
static bool still_there(ims_snapsched_runner *rn, const ims_snapsched *s)
{
	char key[2 * IMS_NAME_MAX + 16];
	json_object *cur = NULL;
	key_of(key, sizeof(key), s->unit, s->pool, s->name);
	ims_records rs = IMS_RECORDS_SITE(rn->o.site, rn->o.records_pool, IMS_SNAPSCHED_OBJECT);
	int r = ims_record_get(&cur, &rs, key);
	json_object_put(cur);
	ims_error_clear();
	return r != -ENOENT; /* a read that failed: as before the check, the take says more */
}

/* Whether @p s is due at @p now_ms: the first snapshot comes one interval after the schedule
 * was added, each next one an interval after the last. */
static bool due(const ims_snapsched *s, int64_t now_ms)
{
	int64_t since = s->last_ms ? s->last_ms : s->created_ms;
	return now_ms - since >= (int64_t)s->every_s * 1000;
}

/* Take the schedule's snapshot if it is due, then prune. Nothing is read before it is due: a
 * tick looks at every schedule each second, and 500 of them must not open 500 images a second
 * (retention is applied after each snapshot: it changes only when one is added, or when the
 * hours pass, which the next snapshot sees). @returns 1 if @p s changed. */
static int run_one(ims_snapsched_runner *rn, ims_snapsched *s, int64_t now_ms)
{
	int r = 0;
	char err[256] = "";
	if (!due(s, now_ms))
		return 0;
	/* a secondary's snapshots are shipped and pruned by replication (replicator.h); its
	 * site runs the schedule once promoted, looking again every interval */
	char key[2 * IMS_NAME_MAX + 16];
	key_of(key, sizeof(key), s->unit, s->pool, s->name);
	if (secondary_until(rn, key) > now_ms)
		return 0;
	if (is_secondary(rn->o.site, s)) {
		int64_t wait_ms = (int64_t)s->every_s * 1000;
		secondary_note(rn, key,
			       now_ms +
				       (wait_ms < SECONDARY_LOOK_MS ? wait_ms : SECONDARY_LOOK_MS));
		if (!s->last_error[0])
			return 0;
		s->last_error[0] = '\0';
		return 1;
	}
	/* no snapshot once the tick was halted, or with the runner's lock older than its time
	 * (a renewal slow to answer: another daemon may run the schedules then) */
	if (!still_there(rn, s) || atomic_load(&rn->halt) ||
	    ims_clock_unix_ms() - atomic_load(&rn->held_ms) >=
		    (int64_t)(rn->o.lock_s ? rn->o.lock_s : 30) * 1000)
		return 0;
	char snap[64];
	snprintf(snap, sizeof(snap), IMS_SNAPSCHED_PREFIX "%" PRId64, now_ms);
	if (s->unit == IMS_REPL_GROUP)
		r = ims_group_snap_create(rn->o.site, s->pool, s->name, snap);
	else
		r = ims_snap_create(rn->o.site, s->pool, s->name, snap);
	if (r == 0)
		ims_log_info("snapshot schedule of %s '%s/%s': took '%s'", unit_word(s->unit),
			     s->pool, s->name, snap);
	else
		snprintf(err, sizeof(err), "cannot take '%s': %s", snap, ims_error_last());
	if (r == 0 && s->unit == IMS_REPL_IMAGE && rn->o.taken)
		rn->o.taken(rn->o.taken_ctx, s->pool, s->name, snap);
	if (r == 0 && s->unit == IMS_REPL_GROUP && rn->o.taken)
		taken_group(rn, s, snap);
	s->last_ms = now_ms; /* a failure waits for the next interval too */
	unsigned removed = 0;
	if (prune(&removed, rn, s) < 0 && !err[0])
		snprintf(err, sizeof(err), "retention: %s", ims_error_last());
	if (strcmp(err, s->last_error) != 0 && err[0])
		ims_log_warning("snapshot schedule of %s '%s/%s': %s", unit_word(s->unit), s->pool,
				s->name, err);
	snprintf(s->last_error, sizeof(s->last_error), "%s", err);
	return 1;
}

/* Hold (take or renew) the runner's lock. @returns 1 held, 0 another daemon holds it. */
static int hold(ims_snapsched_runner *rn, rados_ioctx_t io)
{
	struct timeval tv = {(time_t)(rn->o.lock_s ? rn->o.lock_s : 30), 0};
	int r = rados_lock_exclusive(io, IMS_SNAPSCHED_OBJECT, IMS_SNAPSCHED_LOCK, rn->owner,
				     "snapshot schedules", &tv,
				     rn->held ? LIBRADOS_LOCK_FLAG_RENEW : 0);
	if (r == -ENOENT && rn->held) /* expired and taken back meanwhile: try afresh */
		r = rados_lock_exclusive(io, IMS_SNAPSCHED_OBJECT, IMS_SNAPSCHED_LOCK, rn->owner,
					 "snapshot schedules", &tv, 0);
	bool was = rn->held;
	/* an error that says nothing of the lock (a client blocklisted, a site slow) leaves it as
	 * it was: the next tick renews what it held, or finds it taken */
	if (r == 0 || r == -EBUSY || r == -EEXIST)
		rn->held = r == 0;
	if (r == 0)
		rn->held_ms = ims_clock_unix_ms();
	if (rn->held != was)
		ims_log_info("snapshot schedules of site '%s' %s", ims_site_name(rn->o.site),
			     rn->held ? "run by this daemon" : "no longer run by this daemon");
	if (r == -EBUSY || r == -EEXIST)
		return 0;
	return r < 0 ? ims_error_set(r, "cannot lock the snapshot schedules: %s", strerror(-r)) : 1;
}

typedef struct {
	ims_snapsched_runner *rn;
	rados_ioctx_t io; /* the records', for the runner's lock */
	ims_snapsched *list;
	const size_t *due; /* indices into list */
} tick_run;

/* One due schedule of a tick: run, and its new state written back if it changed. */
static int tick_item(void *ctx, unsigned worker, size_t k)
{
	tick_run *t = ctx;
	ims_snapsched_runner *rn = t->rn;
	ims_snapsched *s = &t->list[t->due[k]];
	(void)worker;
	if (run_one(rn, s, ims_clock_unix_ms()) <= 0)
		return 0;
	/* only a schedule still there is written back: `rm` meanwhile stays removed */
	char key[2 * IMS_NAME_MAX + 16];
	json_object *cur = NULL;
	key_of(key, sizeof(key), s->unit, s->pool, s->name);
	ims_records rs = IMS_RECORDS_SITE(rn->o.site, rn->o.records_pool, IMS_SNAPSCHED_OBJECT);
	if (ims_record_get(&cur, &rs, key) < 0)
		return 0;
	ims_snapsched now;
	memset(&now, 0, sizeof(now));
	ims_record_decode(&now, cur, fields, NFIELDS);
	json_object_put(cur);
	now.last_ms = s->last_ms;
	snprintf(now.last_error, sizeof(now.last_error), "%s", s->last_error);
	int w = put(rn->o.site, rn->o.records_pool, &now, true);
	if (w < 0 && w != -ENOENT) /* -ENOENT: removed since it was read */
		ims_log_warning("snapshot schedule of '%s/%s' not updated: %s", s->pool, s->name,
				ims_error_last());
	return 0; /* one schedule's failure is its own (in its last_error) */
}

/* While a tick's schedules run: the runner's lock renewed every third of its time (a tick of
 * many due schedules may outlast it). Losing it, or the daemon stopping, stops the tick (no
 * schedule is handed out after it): another daemon, or the next run, takes the rest. */
static int tick_watch(void *ctx)
{
	tick_run *t = ctx;
	ims_snapsched_runner *rn = t->rn;
	pthread_mutex_lock(&rn->lock);
	bool stopping = rn->stopping;
	pthread_mutex_unlock(&rn->lock);
	if (stopping) { /* the schedules not run yet wait for the next daemon */
		atomic_store(&rn->halt, true);
		return ims_error_set(-ECANCELED, "the daemon is stopping");
	}
	int64_t third = (int64_t)(rn->o.lock_s ? rn->o.lock_s : 30) * 1000 / 3;
	if (ims_clock_unix_ms() - rn->held_ms < third)
		return 0;
	int r = hold(rn, t->io);
	if (r == 0) {
		atomic_store(&rn->halt, true); /* those in flight take no snapshot after this */
		return ims_error_set(-EBUSY, "the snapshot schedules' lock was taken by another "
					     "daemon of the site during a tick; it runs them now");
	}
	return r < 0 ? r : 0;
}

int ims_snapsched_tick(ims_snapsched_runner *rn)
{
	rados_ioctx_t io = NULL;
	ims_snapsched *list = NULL;
	size_t n = 0, *due_idx = NULL;
	int r = ims_site_ioctx(&io, rn->o.site, rn->o.records_pool);
	if (r < 0)
		return r;
	if ((r = hold(rn, io)) <= 0)
		goto out;
	atomic_store(&rn->halt, false);
	if ((r = ims_snapsched_list(&list, &n, rn->o.site, rn->o.records_pool)) < 0)
		goto out;
	/* the due ones, run IMS_SNAPSCHED_WORKERS at a time: a snapshot waits about a second
	 * for its id from the monitors, which hand out those asked at once together */
	if (n && !(due_idx = calloc(n, sizeof(*due_idx)))) {
		r = -ENOMEM;
		goto out;
	}
	size_t ndue = 0;
	int64_t now = ims_clock_unix_ms();
	for (size_t i = 0; i < n; i++)
		if (due(&list[i], now))
			due_idx[ndue++] = i;
	r = 0;
	if (ndue) {
		tick_run t = {.rn = rn, .io = io, .list = list, .due = due_idx};
		ims_fanout_opts fo = IMS_FANOUT_OPTS_INIT;
		fo.workers = rn->o.workers ? rn->o.workers : IMS_SNAPSCHED_WORKERS;
		fo.nitems = ndue;
		fo.item = tick_item;
		fo.watch = tick_watch;
		fo.watch_ms = 1000;
		fo.ctx = &t;
		r = ims_fanout_run(NULL, &fo);
	}
out:
	free(due_idx);
	free(list);
	ims_site_ioctx_close(io);
	return r;
}

static void *loop(void *arg)
{
	ims_snapsched_runner *rn = arg;
	pthread_mutex_lock(&rn->lock);
	while (!rn->stopping) {
		pthread_mutex_unlock(&rn->lock);
		if (ims_snapsched_tick(rn) < 0)
			ims_log_debug("snapshot schedules: %s", ims_error_last());
		pthread_mutex_lock(&rn->lock);
		struct timespec until;
		ims_clock_after_ms(&until, rn->o.tick_ms ? rn->o.tick_ms : 1000);
		while (!rn->stopping &&
		       pthread_cond_timedwait(&rn->cond, &rn->lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&rn->lock);
	return NULL;
}

int ims_snapsched_start(ims_snapsched_runner **out, const ims_snapsched_opts *o)
{
	int r;
	if ((r = IMS_OPTS_CHECK(o, IMS_SNAPSCHED_OPTS_VERSION, "snapshot schedule options")) < 0)
		return r;
	ims_snapsched_runner *rn = calloc(1, sizeof(*rn));
	if (!rn)
		return -ENOMEM;
	/* a version-1 caller's struct ends before workers (0: the default) */
	memcpy(&rn->o, o,
	       o->version < 2 ? offsetof(ims_snapsched_opts, workers) : sizeof(ims_snapsched_opts));
	rn->b = ims_snapsched_buckets_of(o->hour_s);
	rn->threads = (ims_threads)IMS_THREADS_INIT;
	snprintf(rn->owner, sizeof(rn->owner), "%s#%ld.%" PRId64, o->owner ? o->owner : "",
		 (long)getpid(), ims_clock_unix_ms());
	pthread_mutex_init(&rn->lock, NULL);
	pthread_mutex_init(&rn->seen_lock, NULL);
	pthread_cond_init(&rn->cond, NULL);
	if ((r = ims_threads_start(&rn->threads, 1, loop, rn, "the snapshot schedules")) < 0) {
		ims_snapsched_stop(rn);
		return r;
	}
	*out = rn;
	return 0;
}

void ims_snapsched_stop(ims_snapsched_runner *rn)
{
	if (!rn)
		return;
	ims_threads_stop(&rn->threads, &rn->lock, &rn->cond, &rn->stopping);
	if (rn->held) {
		rados_ioctx_t io;
		if (ims_site_ioctx(&io, rn->o.site, rn->o.records_pool) == 0) {
			rados_unlock(io, IMS_SNAPSCHED_OBJECT, IMS_SNAPSCHED_LOCK, rn->owner);
			ims_site_ioctx_close(io);
		}
	}
	pthread_cond_destroy(&rn->cond);
	pthread_mutex_destroy(&rn->lock);
	pthread_mutex_destroy(&rn->seen_lock);
	free(rn->seen);
	free(rn);
}
