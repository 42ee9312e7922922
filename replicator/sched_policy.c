/*
 * replicator/sched_policy.c: the scheduler's records in RADOS (the policies, which pairs
 * replicate where, and the last status of each), the pairs read from them, and the watch by
 * which a daemon that writes a policy has the others read it before its call returns.
 */
#include "replicator/sched_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <rados/librados.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "replicator/replicator.h"
#include "store/record.h"

#define IMS_REPL_POLICIES "imgstore.repl.policies" /* omap: "POOL/IMAGE@TARGET" -> policy */
#define IMS_REPL_STATUS	  "imgstore.repl.status"   /* omap: the same keys -> last status */
/* omap on a target site: "POOL/IMAGE@SOURCE" -> the RPO and mode of the pair that replicates
 * it here from SOURCE, written by SOURCE's daemon; what a forced failover on this site (SOURCE
 * lost) gives the pair back to SOURCE */
#define IMS_REPL_REVERSE "imgstore.repl.reverse"

int64_t ims_repl_sched__due_ms(unsigned rpo, double last_secs, unsigned tick_ms)
{
	int64_t rpo_ms = (int64_t)rpo * 1000;
	int64_t due = rpo_ms / 2;
	int64_t margin = (int64_t)(last_secs * 2000.0) + (int64_t)tick_ms;
	if (rpo_ms - margin < due)
		due = rpo_ms - margin;
	if (due < rpo_ms / 10)
		due = rpo_ms / 10;
	return due;
}

/* The most urgent of the queued pairs whose orphaned flag is @p orphaned, or @p n. */
static size_t most_urgent(pair *const *queue, size_t n, bool orphaned)
{
	size_t best = n;
	for (size_t i = 0; i < n; i++) {
		const pair *c = queue[i];
		if (c->orphaned != orphaned)
			continue;
		if (best == n) {
			best = i;
			continue;
		}
		const pair *b = queue[best];
		if (c->sealed_ms < 0)
			continue; /* a first copy: after every pair sealed before, in order */
		if (b->sealed_ms < 0 ||
		    c->sealed_ms + (int64_t)c->rpo * 1000 < b->sealed_ms + (int64_t)b->rpo * 1000)
			best = i;
	}
	return best;
}

size_t ims_repl_sched__next(pair *const *queue, size_t n, bool orphans)
{
	if (orphans)
		return most_urgent(queue, n, true);
	size_t own = most_urgent(queue, n, false);
	return own < n ? own : most_urgent(queue, n, true);
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

uint64_t ims_repl_sched__hash(const char *text)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const unsigned char *c = (const unsigned char *)text; *c; c++)
		h = (h ^ *c) * 0x100000001b3ULL;
	h = mix64(h);
	return h ? h : 1;
}

typedef struct ranked {
	uint64_t hash;
	size_t index;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
	const ranked *x = a, *y = b;
	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

int ims_repl_sched__assign(unsigned *home, const uint64_t *keys, size_t n, const uint64_t *members,
			   size_t m)
{
	if (n == 0)
		return 0;
	if (m <= 1) {
		for (size_t i = 0; i < n; i++)
			home[i] = 0;
		return 0;
	}
	ranked *order = malloc(n * sizeof(*order));
	size_t *load = calloc(m, sizeof(*load));
	if (!order || !load) {
		free(order);
		free(load);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		order[i] = (ranked){keys[i], i};
	qsort(order, n, sizeof(*order), cmp_ranked);
	size_t cap = (n + m - 1) / m;
	for (size_t i = 0; i < n; i++) {
		size_t best = m;
		uint64_t top = 0;
		for (size_t k = 0; k < m; k++) {
			uint64_t score = mix64(order[i].hash ^ mix64(members[k]));
			if (load[k] < cap && (best == m || score > top)) {
				best = k;
				top = score;
			}
		}
		load[best]++; /* some daemon has room: m x cap >= n */
		home[order[i].index] = (unsigned)best;
	}
	free(order);
	free(load);
	return 0;
}

/* A pair's key in the records, and the name of its lock. */
static void policy_key(char *key, size_t len, const char *pool, const char *name,
		       ims_repl_unit unit, const char *target)
{
	/* a group's key, lock and status are apart from an image's of the same name */
	snprintf(key, len, "%s%s/%s@%s", unit == IMS_REPL_GROUP ? "group:" : "", pool, name,
		 target);
}

void ims_repl_sched__pair_key(char *key, size_t len, const pair *p)
{
	policy_key(key, len, p->pool, p->image, p->unit, p->target);
}

/* Write a policy record (read back by refresh_one()) into @p io's records. */
static int write_policy(rados_ioctx_t io, const char *pool, const char *name, ims_repl_unit unit,
			const char *target, ims_repl_mode mode, uint32_t rpo, uint32_t verify_every,
			char *key, size_t klen)
{
	policy_key(key, klen, pool, name, unit, target); /* named in a message on failure */
	json_object *o = json_object_new_object();
	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "pool", json_object_new_string(pool));
	json_object_object_add(o, "image", json_object_new_string(name));
	json_object_object_add(o, "target", json_object_new_string(target));
	json_object_object_add(o, "mode", json_object_new_string(ims_repl_mode_name(mode)));
	json_object_object_add(o, "rpo", json_object_new_int64(rpo));
	json_object_object_add(o, "verify_every", json_object_new_int64(verify_every));
	if (unit == IMS_REPL_GROUP) /* the record's word for it, as before the enum */
		json_object_object_add(o, "group", json_object_new_boolean(true));
	int r = ims_record_put(&IMS_RECORDS_IO(io, IMS_REPL_POLICIES), key, o);
	json_object_put(o);
	return r;
}

/* Tell every daemon that watches @p io's policy records (this site's) to read them again, and
 * wait for their answers (a daemon that does not answer within 3 s is not waited for: it reads
 * them at its next refresh). */
void ims_repl_sched__notify(rados_ioctx_t io)
{
	char *reply = NULL;
	size_t len = 0;
	int r = rados_notify2(io, IMS_REPL_POLICIES, "", 0, 3000, &reply, &len);
	if (r < 0)
		ims_log_debug("not every daemon confirmed it read the replication records: %s",
			      ims_strerror(r));
	rados_buffer_free(reply);
}

int ims_repl_sched__drop_policy(rados_ioctx_t io, const char *key, bool quiet)
{
	ims_records rs = IMS_RECORDS_IO(io, IMS_REPL_POLICIES);
	rs.quiet = quiet;
	return ims_record_del(&rs, key);
}

void ims_repl_sched__drop_status(rados_ioctx_t io, const char *key)
{
	ims_records rs = IMS_RECORDS_IO(io, IMS_REPL_STATUS);
	rs.quiet = true; /* only a cache of the last cycle: its failure is nobody's */
	ims_record_del(&rs, key);
}

/* The records' pool on the site's current client: an ioctx per use, since the client is
 * replaced when the cluster blocklists it. Close with ims_site_ioctx_close(). */
int ims_repl_sched__io(rados_ioctx_t *io, ims_repl_sched *s)
{
	return ims_site_ioctx(io, s->o.local, s->o.pool);
}

/* The pairs' last statuses: best effort, a failure leaves the thread's message alone. */
static ims_records status_records(const ims_repl_sched *s)
{
	return IMS_RECORDS_SITE_QUIET(s->o.local, s->o.pool, IMS_REPL_STATUS);
}

/* Write a policy into @p site's records in @p records_pool, and have that site's daemons read
 * it before this returns; a message names the site with @p name_site. */
static int put_policy(ims_site *site, const char *records_pool, const char *pool, const char *name,
		      ims_repl_unit unit, const char *target, ims_repl_mode mode, uint32_t rpo,
		      uint32_t verify_every, bool name_site)
{
	char key[700], where[128] = "";
	rados_ioctx_t io;
	int r = ims_site_ioctx(&io, site, records_pool);
	if (r < 0)
		return r;
	r = write_policy(io, pool, name, unit, target, mode, rpo, verify_every, key, sizeof(key));
	if (r == 0) /* its daemons know the pair when this returns */
		ims_repl_sched__notify(io);
	ims_site_ioctx_close(io);
	if (name_site)
		snprintf(where, sizeof(where), " on site '%s'", ims_site_name(site));
	return r < 0 ? ims_error_set(r, "cannot record the replication of '%s'%s: %s", key, where,
				     ims_strerror(r))
		     : 0;
}

int ims_repl_sched__save_policy(ims_repl_sched *s, const pair *p)
{
	return put_policy(s->o.local, s->o.pool, p->pool, p->image, p->unit, p->target, p->mode,
			  p->rpo, p->verify_every, false);
}

void ims_repl_sched__save_status(ims_repl_sched *s, const pair *p)
{
	char key[700];
	json_object *o = json_object_new_object();
	if (!o)
		return;
	json_object_object_add(o, "last_sealed", json_object_new_string(p->last_sealed));
	json_object_object_add(o, "last_sync_bytes", json_object_new_int64((int64_t)p->last_bytes));
	json_object_object_add(o, "last_sync_seconds", json_object_new_double(p->last_secs));
	json_object_object_add(o, "error", json_object_new_string(p->error));
	json_object_object_add(o, "owner", json_object_new_string(s->owner));
	json_object_object_add(o, "sealed_ms", json_object_new_int64(p->sealed_ms));
	json_object_object_add(o, "last_verified", json_object_new_string(p->last_verified));
	json_object_object_add(o, "last_verify", json_object_new_string(p->last_verify));
	json_object_object_add(o, "verify_error", json_object_new_string(p->verify_error));
	ims_repl_sched__pair_key(key, sizeof(key), p);
	ims_records rs = status_records(s);
	ims_record_put(&rs, key, o);
	json_object_put(o);
}

void ims_repl_sched__load_status(ims_repl_sched *s, pair *p)
{
	char key[700];
	json_object *o = NULL, *v;
	ims_records rs = status_records(s);
	ims_repl_sched__pair_key(key, sizeof(key), p);
	if (ims_record_get(&o, &rs, key) < 0)
		return;
	if (json_object_object_get_ex(o, "last_sealed", &v)) {
		snprintf(p->last_sealed, sizeof(p->last_sealed), "%s", json_object_get_string(v));
		p->sealed_ms = ims_repl_snap_time(p->last_sealed);
	}
	if (json_object_object_get_ex(o, "sealed_ms", &v))
		p->sealed_ms = json_object_get_int64(v);
	if (json_object_object_get_ex(o, "last_sync_bytes", &v))
		p->last_bytes = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "last_sync_seconds", &v))
		p->last_secs = json_object_get_double(v);
	if (json_object_object_get_ex(o, "error", &v))
		snprintf(p->error, sizeof(p->error), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "last_verified", &v))
		snprintf(p->last_verified, sizeof(p->last_verified), "%s",
			 json_object_get_string(v));
	if (json_object_object_get_ex(o, "last_verify", &v))
		snprintf(p->last_verify, sizeof(p->last_verify), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "verify_error", &v))
		snprintf(p->verify_error, sizeof(p->verify_error), "%s", json_object_get_string(v));
	json_object_put(o);
}

/* The reverse record of @p p on its target @p peer: the key names this site as the source. */
static void reverse_key(char *key, size_t len, ims_repl_sched *s, const pair *p)
{
	policy_key(key, len, p->pool, p->image, p->unit, ims_site_name(s->o.local));
}

int ims_repl_sched__put_reverse(ims_repl_sched *s, ims_site *peer, const pair *p)
{
	char key[700];
	json_object *o = json_object_new_object();
	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "rpo", json_object_new_int64(p->rpo));
	json_object_object_add(o, "mode", json_object_new_string(ims_repl_mode_name(p->mode)));
	reverse_key(key, sizeof(key), s, p);
	ims_records rs = IMS_RECORDS_SITE_QUIET(peer, s->o.pool, IMS_REPL_REVERSE);
	int r = ims_record_put(&rs, key, o);
	json_object_put(o);
	return r;
}

void ims_repl_sched__drop_reverse(ims_repl_sched *s, ims_site *peer, const pair *p)
{
	char key[700];
	reverse_key(key, sizeof(key), s, p);
	ims_records rs = IMS_RECORDS_SITE_QUIET(peer, s->o.pool, IMS_REPL_REVERSE);
	ims_record_del(&rs, key);
}

uint32_t ims_repl_sched_reverse_rpo(ims_repl_sched *s, const char *pool, const char *name,
				    ims_repl_unit unit, const char *source, uint32_t fallback)
{
	char key[700];
	json_object *o = NULL, *v;
	uint32_t rpo = fallback;
	policy_key(key, sizeof(key), pool, name, unit, source);
	ims_records rs = IMS_RECORDS_SITE_QUIET(s->o.local, s->o.pool, IMS_REPL_REVERSE);
	if (ims_record_get(&o, &rs, key) == 0 && json_object_object_get_ex(o, "rpo", &v)) {
		int64_t got = json_object_get_int64(v);
		if (got > 0 && got <= 30 * 86400)
			rpo = (uint32_t)got;
	}
	json_object_put(o);
	return rpo;
}

pair *ims_repl_sched__find_locked(ims_repl_sched *s, const char *pool, const char *image,
				  const char *target, ims_repl_unit unit)
{
	for (pair *p = s->pairs; p; p = p->next)
		if (p->unit == unit && !strcmp(p->pool, pool) && !strcmp(p->image, image) &&
		    !strcmp(p->target, target))
			return p;
	return NULL;
}

typedef struct {
	ims_repl_sched *s;
	int64_t now;
	uint64_t gen; /* this walk: the pairs it saw carry it */
} refresh_ctx;

static int refresh_one(void *ctx, const char *key, json_object *o)
{
	refresh_ctx *rc = ctx;
	ims_repl_sched *s = rc->s;
	json_object *v;
	(void)key;
	if (!o)
		return 0;
	pair tmp;
	memset(&tmp, 0, sizeof(tmp));
	if (json_object_object_get_ex(o, "pool", &v))
		snprintf(tmp.pool, sizeof(tmp.pool), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "image", &v))
		snprintf(tmp.image, sizeof(tmp.image), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "target", &v))
		snprintf(tmp.target, sizeof(tmp.target), "%s", json_object_get_string(v));
	/* a mode this daemon does not know (a newer one's) replicates as async */
	if (json_object_object_get_ex(o, "mode", &v) &&
	    ims_repl_mode_parse(&tmp.mode, json_object_get_string(v)) < 0) {
		tmp.mode = IMS_REPL_ASYNC;
		ims_error_clear();
	}
	if (json_object_object_get_ex(o, "rpo", &v))
		tmp.rpo = (uint32_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "verify_every", &v))
		tmp.verify_every = (uint32_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "group", &v))
		tmp.unit = json_object_get_boolean(v) ? IMS_REPL_GROUP : IMS_REPL_IMAGE;
	if (!tmp.pool[0] || !tmp.image[0] || !tmp.target[0] || !tmp.rpo)
		return 0;
	pthread_mutex_lock(&s->lock);
	pair *p = ims_repl_sched__find_locked(s, tmp.pool, tmp.image, tmp.target, tmp.unit);
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&s->lock);
			return -ENOMEM;
		}
		*p = tmp;
		p->sealed_ms = -1;
		p->next = s->pairs;
		s->pairs = p;
		pthread_mutex_unlock(&s->lock);
		ims_repl_sched__load_status(
			s, p); /* only this thread touches a pair before it is present */
		pthread_mutex_lock(&s->lock);
	} else {
		p->rpo = tmp.rpo;
		p->mode = tmp.mode;
		p->verify_every = tmp.verify_every;
	}
	/* a refresh that began after the pair was disabled here read the records after its
	 * removal: the record is new (enabled again, here or by another site's failover) */
	if (p->disabled && rc->now > p->disabled_ms)
		p->disabled = false;
	if (!p->disabled)
		p->present = true;
	p->seen = rc->gen;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void ims_repl_sched__refresh(ims_repl_sched *s)
{
	/* mark and sweep: a pair stays present while its record is read again, so that a call
	 * racing the refresh never finds it missing */
	pthread_mutex_lock(&s->refresh_lock);
	pthread_mutex_lock(&s->lock);
	refresh_ctx rc = {s, ims_clock_unix_ms(), ++s->refresh_gen};
	pthread_mutex_unlock(&s->lock);
	ims_records rs = IMS_RECORDS_SITE_QUIET(s->o.local, s->o.pool, IMS_REPL_POLICIES);
	if (ims_record_foreach(&rs, refresh_one, &rc) < 0) {
		pthread_mutex_unlock(&s->refresh_lock);
		return; /* the records cannot be read now: keep going with what we know */
	}
	pthread_mutex_lock(&s->lock);
	for (pair *p = s->pairs; p; p = p->next)
		if (p->seen != rc.gen)
			p->present = false;
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&s->refresh_lock);
}

/*
 * "let-go OWNER\nKEY" (ims_repl_sched__ask_let_go()): another imgstored of the site, OWNER, runs
 * a cycle of the pair KEY that was asked for (a sync, a failover's last one) and holds its pair
 * lock: this daemon lets go of the pair's secondary if it holds it (its own cycles wait for the
 * pair lock meanwhile).
 */
static void let_go_asked(ims_repl_sched *s, const char *data, size_t len)
{
	char msg[IMS_REPL_OWNER_LEN + 800];
	if (len < 7 || len >= sizeof(msg) || memcmp(data, "let-go ", 7) != 0)
		return;
	memcpy(msg, data, len);
	msg[len] = '\0';
	char *key = strchr(msg, '\n');
	if (!key)
		return;
	*key++ = '\0';
	if (strcmp(msg + 7, s->owner) == 0)
		return; /* its own question */
	char pool[sizeof(((pair *)0)->pool)] = "", image[sizeof(((pair *)0)->image)] = "",
				target[sizeof(((pair *)0)->target)] = "", k[800];
	pthread_mutex_lock(&s->lock);
	for (pair *p = s->pairs; p && !pool[0]; p = p->next) {
		if (p->unit != IMS_REPL_IMAGE)
			continue;
		ims_repl_sched__pair_key(k, sizeof(k), p);
		if (strcmp(k, key) == 0) {
			memcpy(pool, p->pool, sizeof(pool));
			memcpy(image, p->image, sizeof(image));
			memcpy(target, p->target, sizeof(target));
		}
	}
	pthread_mutex_unlock(&s->lock);
	ims_site *peer = NULL;
	if (pool[0] && s->o.peer(s->o.peer_ctx, target, &peer) == 0 &&
	    ims_site_guard_let_go(peer, pool, image))
		ims_log_info(
			"'%s': let go of the secondary on site '%s' for imgstored '%s' of this "
			"site, asked to run a cycle of it",
			key, target, msg + 7);
	ims_error_clear();
}

static void watch_notified(void *arg, uint64_t notify_id, uint64_t handle, uint64_t notifier_id,
			   void *data, size_t len)
{
	ims_repl_sched *s = arg;
	(void)notifier_id;
	if (data && len > 0)
		let_go_asked(s, data, len);
	else /* before the answer: the notifier's call returns once the pair is known here */
		ims_repl_sched__refresh(s);
	rados_notify_ack(s->watch_io, IMS_REPL_POLICIES, notify_id, handle, NULL, 0);
}

bool ims_repl_sched__ask_let_go(ims_repl_sched *s, const char *key)
{
	char msg[IMS_REPL_OWNER_LEN + 800];
	int n = snprintf(msg, sizeof(msg), "let-go %s\n%s", s->owner, key);
	rados_ioctx_t io;
	if (n < 0 || (size_t)n >= sizeof(msg) || ims_repl_sched__io(&io, s) < 0) {
		ims_error_clear();
		return false;
	}
	char *reply = NULL;
	size_t rlen = 0;
	int r = rados_notify2(io, IMS_REPL_POLICIES, msg, (size_t)n, 3000, &reply, &rlen);
	rados_buffer_free(reply);
	ims_site_ioctx_close(io);
	return r == 0;
}

static void watch_lost(void *arg, uint64_t cookie, int err)
{
	ims_repl_sched *s = arg;
	(void)cookie;
	pthread_mutex_lock(&s->lock);
	s->watch_broken = true;
	pthread_mutex_unlock(&s->lock);
	ims_log_debug("the watch on the replication records lapsed (%s); watching again",
		      ims_strerror(err));
}

void ims_repl_sched__unwatch(ims_repl_sched *s)
{
	if (!s->watch_io)
		return;
	rados_unwatch2(s->watch_io, s->watch_cookie);
	rados_watch_flush(rados_ioctx_get_cluster(s->watch_io)); /* no callback runs after this */
	ims_site_ioctx_close(s->watch_io);
	s->watch_io = NULL;
}

/* (Re)establish the watch, on the site's current client; called by the scheduler's thread. */
void ims_repl_sched__watch(ims_repl_sched *s)
{
	rados_ioctx_t io;
	rados_write_op_t op;
	s->watch_tried_ms = ims_clock_unix_ms();
	ims_repl_sched__unwatch(s);
	if (ims_repl_sched__io(&io, s) < 0)
		return;
	/* the object exists before anything is enabled: a watch needs it */
	if ((op = rados_create_write_op())) {
		rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
		rados_write_op_operate(op, io, IMS_REPL_POLICIES, NULL, 0);
		rados_release_write_op(op);
	}
	pthread_mutex_lock(&s->lock);
	s->watch_broken = false;
	pthread_mutex_unlock(&s->lock);
	s->watch_io = io;
	int r = rados_watch2(io, IMS_REPL_POLICIES, &s->watch_cookie, watch_notified, watch_lost,
			     s);
	if (r < 0) {
		ims_log_debug("cannot watch the replication records: %s", ims_strerror(r));
		ims_site_ioctx_close(io);
		s->watch_io = NULL;
	}
}

/* Whether the watch needs to be made again: none, lapsed, or on a replaced client. */
bool ims_repl_sched__watch_needed(ims_repl_sched *s, int64_t t)
{
	if (t - s->watch_tried_ms < 2000)
		return false;
	pthread_mutex_lock(&s->lock);
	bool broken = s->watch_broken;
	pthread_mutex_unlock(&s->lock);
	return !s->watch_io || broken || rados_watch_check(s->watch_io, s->watch_cookie) < 0;
}

int ims_repl_policy_put(ims_site *site, const char *policy_pool, const char *pool, const char *name,
			ims_repl_unit unit, const char *target, ims_repl_mode mode, uint32_t rpo)
{
	return put_policy(site, policy_pool, pool, name, unit, target, mode, rpo, 0, true);
}

int ims_repl_policy_remove(ims_site *site, const char *policy_pool, const char *pool,
			   const char *name, ims_repl_unit unit, const char *target)
{
	rados_ioctx_t io;
	char key[700];
	int r = ims_site_ioctx(&io, site, policy_pool);
	if (r < 0)
		return r;
	policy_key(key, sizeof(key), pool, name, unit, target);
	r = ims_repl_sched__drop_policy(io, key, false);
	ims_repl_sched__drop_status(io, key);
	if (r == 0)
		ims_repl_sched__notify(io);
	ims_site_ioctx_close(io);
	return r == -ENOENT ? 0 : r;
}

typedef struct {
	const char *prefix;
	size_t plen;
	char *found;
	size_t len;
} policy_find;

static int find_policy(void *ctx, const char *key, json_object *val)
{
	policy_find *f = ctx;
	(void)val;
	if (strlen(key) > f->plen && memcmp(key, f->prefix, f->plen) == 0) {
		snprintf(f->found, f->len, "%s", key + f->plen);
		return 1;
	}
	return 0;
}

int ims_repl_policy_find(char *target, size_t len, ims_site *site, const char *policy_pool,
			 const char *pool, const char *image)
{
	rados_ioctx_t io;
	char prefix[700];
	int r = ims_site_ioctx(&io, site, policy_pool);
	if (r < 0)
		return r;
	snprintf(prefix, sizeof(prefix), "%s/%s@", pool, image);
	policy_find f = {prefix, strlen(prefix), target, len};
	r = ims_record_foreach(&IMS_RECORDS_IO(io, IMS_REPL_POLICIES), find_policy, &f);
	ims_site_ioctx_close(io);
	if (r < 0)
		return ims_error_set(r, "cannot read the replication policies: %s",
				     ims_strerror(r));
	return r;
}
