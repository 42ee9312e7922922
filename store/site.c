#include "store/site.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/error.h"
#include "common/opts.h"
#include "common/spec.h"
#include "common/log.h"
#include "store/omap.h"
#include "store/pg.h"

/* A client of the cluster, counted: the site's main connection (every ioctx of
 * ims_site_ioctx() holds a count) and the connection writer guards use (a client of its own,
 * so that the fence of a guard, a promotion elsewhere blocklists it, leaves the main one
 * alone). Either is replaced by a new client when found blocklisted; the old one is shut down
 * when its last user lets go. */
typedef struct gconn {
	rados_t rados;
	unsigned refs; /* its users, and the site while it is the current one */
} gconn;

/* A writer guard: an image held open with its exclusive lock acquired explicitly. */
typedef struct guard {
	char *pool, *image;
	gconn *conn;
	rados_ioctx_t io;
	rbd_image_t img;
	uint64_t quiesce; /* the quiesce watch that refuses other clients' snapshots */
	bool quiesce_watch;
	unsigned users;
	bool opening; /* being opened by one caller; the others wait */
	bool drop;    /* close at the last put */
	struct guard *next;
} guard;

/* A pool's ioctx on one connection, for the probe's operations in flight on it. */
typedef struct pio {
	gconn *conn;
	rados_ioctx_t io;
	unsigned refs; /* the plan while it is the current one, and each operation on it */
} pio;

/* A stat of one PG's probe object in flight. */
typedef struct pop {
	struct pop *next;
	pio *io;
	rados_completion_t c;
	uint32_t pg;
	bool orphan; /* of an older plan or connection: its answer is not counted */
	uint64_t size;
	time_t mtime;
} pop;

/* What the probe asks: one object per PG of the pool (store/pg.h), a round at a time. */
typedef struct {
	char *pool;
	int64_t pool_id; /* -1: not known (pg_num 0) */
	uint32_t pg_num; /* 0: not known: the one object imgstore.probe is asked */
	uint32_t n;	 /* how many names: pg_num, or 1 */
	char (*names)[IMS_PG_NAME_MAX];
	ims_pg_state *state;
	bool *busy; /* a stat of the PG is in flight */
	int *error; /* the last error of each PG, 0 if answered */
	uint32_t *round;
	uint32_t cursor;
	int64_t learnt_ms; /* when the pool's pg_num was last asked (0: never) */
	pio *cur;
	pop *inflight;
} plan;

struct ims_site {
	char *name;
	ims_site_opts opts;	    /* its strings owned: for new connections */
	pthread_mutex_t guard_lock; /* the connections, their counts, the guards, the health */
	pthread_cond_t guard_cond;
	gconn *main; /* the current main connection */
	guard *guards;
	gconn *gconn; /* the current guard connection, made on first use */
	bool reconnecting;
	uint64_t reconnects;
	int last_error;		    /* of the last probe; 0: it answered */
	unsigned timeouts;	    /* probes timed out in a row */
	bool probed;		    /* a probe has ended */
	int64_t last_ok_ms;	    /* when a probe last succeeded */
	int64_t probe_since_ms;	    /* when the probe in flight began; 0: none */
	ims_pg_health probe_health; /* of the last probe */
	uint32_t probe_pgs, probe_silent;
	char probe_silent_list[IMS_SITE_PG_LIST_MAX];
	char *probe_pool;
	/* when the last probe found the site partly: which PGs of which pool were silent in it
	 * (silent_last) and in the probe before it too (silent_map), and when (mono ms) */
	char *silent_pool;
	int64_t silent_pool_id;
	uint32_t silent_pg_num;
	bool *silent_map;
	bool *silent_last;
	int64_t silent_ms;

	pthread_mutex_t probe_lock; /* one probe at a time; the plan */
	plan plan;

	/* the key-encryption key of encrypted images (store/crypt.h), borrowed; NULL: none */
	const struct ims_crypt_kek *kek;
};

/* Which connection each ioctx of ims_site_ioctx() counts against: the ioctx is closed with
 * ims_site_ioctx_close(), which lets go of that count. Process-wide, by address. */
typedef struct ioref {
	rados_ioctx_t io;
	ims_site *site;
	gconn *conn;
	struct ioref *next;
} ioref;

#define IOREF_BUCKETS 64
static pthread_mutex_t ioref_lock = PTHREAD_MUTEX_INITIALIZER;
static ioref *ioref_tab[IOREF_BUCKETS];

static size_t ioref_bucket(rados_ioctx_t io)
{
	uintptr_t v = (uintptr_t)io;
	return (size_t)((v >> 4) ^ (v >> 12)) % IOREF_BUCKETS;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_conf(rados_t r, const char *key, const char *value, const char *site)
{
	int ret = rados_conf_set(r, key, value);
	if (ret < 0)
		return ims_error_set(ret, "site '%s': cannot set '%s' to '%s': %s", site, key,
				     value, ims_strerror(ret));
	return 0;
}

/* A new client of the cluster, configured the way every imgstore connection is; @p role says
 * which of the site's connections it is, for the log line that names its address (what
 * `ceph osd blocklist ls` shows when it is fenced). */
static int cluster_connect(const ims_site_opts *opts, const char *name, const char *role,
			   rados_t *out)
{
	char user[128], num[32];
	uint64_t mon_timeout = opts->mon_timeout ? opts->mon_timeout : 10;
	uint64_t osd_timeout = opts->osd_timeout ? opts->osd_timeout : 30;
	rados_t rados = NULL;
	int r;

	snprintf(user, sizeof(user), "client.%s", opts->client_id ? opts->client_id : "admin");
	r = rados_create2(&rados, "ceph", user, 0);
	if (r < 0)
		return ims_error_set(r, "site '%s': cannot create a cluster handle for '%s': %s",
				     name, user, ims_strerror(r));
	r = rados_conf_read_file(rados, opts->ceph_conf);
	if (r < 0) {
		ims_error_set(r, "site '%s': cannot parse ceph.conf '%s': %s", name,
			      opts->ceph_conf, ims_strerror(r));
		goto out;
	}
	if (opts->keyring && (r = set_conf(rados, "keyring", opts->keyring, name)) < 0)
		goto out;
	snprintf(num, sizeof(num), "%llu", (unsigned long long)mon_timeout);
	if ((r = set_conf(rados, "client_mount_timeout", num, name)) < 0 ||
	    (r = set_conf(rados, "rados_mon_op_timeout", num, name)) < 0)
		goto out;
	snprintf(num, sizeof(num), "%llu", (unsigned long long)osd_timeout);
	if ((r = set_conf(rados, "rados_osd_op_timeout", num, name)) < 0)
		goto out;
	/* Our own messages say what failed; librados' stderr chatter would only repeat it. */
	if ((r = set_conf(rados, "log_to_stderr", "false", name)) < 0 ||
	    (r = set_conf(rados, "err_to_stderr", "false", name)) < 0)
		goto out;
	/* imgstore copies in bulk with its own bounded buffers: librbd's writeback cache (32 MiB
	 * per open image) would only add a copy and memory. */
	if ((r = set_conf(rados, "rbd_cache", "false", name)) < 0)
		goto out;
	/* The replication copy keeps its buffers until their writes complete: librbd may write
	 * them without a copy of its own (rbd_aio_write only; synchronous writes still copy). */
	if ((r = set_conf(rados, "rbd_disable_zero_copy_writes", "false", name)) < 0)
		goto out;
	/* Clones are format 2 (no snapshot protection) whatever the cluster's default. */
	if ((r = set_conf(rados, "rbd_default_clone_format", "2", name)) < 0)
		goto out;

	r = rados_connect(rados);
	if (r < 0) {
		if (r == -ETIMEDOUT || r == -EINTR)
			ims_error_set(-ETIMEDOUT,
				      "site '%s': the monitors did not answer within %llus (%s)",
				      name, (unsigned long long)mon_timeout, opts->ceph_conf);
		else
			ims_error_set(r, "site '%s': cannot connect as '%s': %s", name, user,
				      ims_strerror(r));
		if (r == -EINTR)
			r = -ETIMEDOUT;
		goto out;
	}
	char *addrs = NULL;
	if (rados_getaddrs(rados, &addrs) < 0)
		addrs = NULL;
	ims_log_info("site '%s': connected as %s (client.%llu at %s) for the %s connection", name,
		     user, (unsigned long long)rados_get_instance_id(rados), addrs ? addrs : "?",
		     role);
	free(addrs);
	*out = rados;
	rados = NULL;
	r = 0;
out:
	if (rados)
		rados_shutdown(rados);
	return r;
}

static char *dup_or_null(const char *s, bool *ok)
{
	char *d = s ? strdup(s) : NULL;
	if (s && !d)
		*ok = false;
	return d;
}

int ims_site_connect(ims_site **out, const ims_site_opts *opts)
{
	ims_site *site = NULL;
	const char *name;
	bool ok = true;
	int r = IMS_OPTS_CHECK(opts, IMS_SITE_OPTS_VERSION, "site");

	if (r < 0)
		return r;
	if (!out || !opts->ceph_conf)
		return ims_error_set(-EINVAL, "site options are incomplete");
	name = opts->name ? opts->name : "?";

	/* librados reports a missing conf file as -ENOENT from deep inside; say which file. */
	if (access(opts->ceph_conf, R_OK) < 0)
		return ims_error_set(-errno, "site '%s': cannot read ceph.conf '%s': %s", name,
				     opts->ceph_conf, ims_strerror(errno));
	if (opts->keyring && access(opts->keyring, R_OK) < 0)
		return ims_error_set(-errno, "site '%s': cannot read keyring '%s': %s", name,
				     opts->keyring, ims_strerror(errno));

	site = calloc(1, sizeof(*site));
	if (!site || !(site->name = strdup(name))) {
		r = -ENOMEM;
		goto out;
	}
	pthread_mutex_init(&site->guard_lock, NULL);
	pthread_cond_init(&site->guard_cond, NULL);
	pthread_mutex_init(&site->probe_lock, NULL);
	site->plan.pool_id = -1;
	site->opts = *opts;
	site->opts.name = site->name;
	site->opts.ceph_conf = dup_or_null(opts->ceph_conf, &ok);
	site->opts.client_id = dup_or_null(opts->client_id, &ok);
	site->opts.keyring = dup_or_null(opts->keyring, &ok);
	if (!ok) {
		r = -ENOMEM;
		goto out;
	}
	rados_t rados;
	if ((r = cluster_connect(&site->opts, name, "main", &rados)) < 0)
		goto out;
	if (!(site->main = calloc(1, sizeof(*site->main)))) {
		rados_shutdown(rados);
		r = -ENOMEM;
		goto out;
	}
	site->main->rados = rados;
	site->main->refs = 1;
	site->probed = true; /* it just answered */
	site->last_ok_ms = mono_ms();
	*out = site;
	site = NULL;
	r = 0;
out:
	ims_site_close(site);
	return r;
}

/* Under the site's guard lock. */
static void gconn_unref(gconn *c)
{
	if (c && --c->refs == 0) {
		rados_shutdown(c->rados);
		free(c);
	}
}

/* Close a guard (without the guard lock: it waits for the cluster); its connection's count
 * is then dropped under the lock by the caller. */
static void guard_close(guard *g)
{
	if (g->img && g->quiesce_watch)
		rbd_quiesce_unwatch(g->img, g->quiesce);
	if (g->img) {
		rbd_lock_release(g->img);
		rbd_close(g->img);
	}
	if (g->io)
		rados_ioctx_destroy(g->io);
	free(g->pool);
	free(g->image);
	free(g);
}

static void guard_close_unref(ims_site *site, guard *g)
{
	gconn *c = g->conn;
	guard_close(g);
	pthread_mutex_lock(&site->guard_lock);
	gconn_unref(c);
	pthread_mutex_unlock(&site->guard_lock);
}

static void plan_drain(ims_site *site);

void ims_site_close(ims_site *site)
{
	if (!site)
		return;
	if (site->name) { /* set up together with the guard table */
		plan_drain(site);
		while (site->guards) {
			guard *g = site->guards;
			gconn *c = g->conn;
			site->guards = g->next;
			guard_close(g);
			gconn_unref(c);
		}
		gconn_unref(site->gconn);
		gconn_unref(site->main);
		pthread_mutex_destroy(&site->guard_lock);
		pthread_cond_destroy(&site->guard_cond);
		pthread_mutex_destroy(&site->probe_lock);
	}
	free(site->probe_pool);
	free(site->silent_pool);
	free(site->silent_map);
	free(site->silent_last);
	free((char *)site->opts.ceph_conf);
	free((char *)site->opts.client_id);
	free((char *)site->opts.keyring);
	free(site->name);
	free(site);
}

/* ---------------------------------------------------------------------------------------- */
/* writer guards */

static guard *guard_find(ims_site *site, const char *pool, const char *image, guard ***link)
{
	guard **pp = &site->guards;
	for (; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->pool, pool) == 0 && strcmp((*pp)->image, image) == 0)
			break;
	if (link)
		*link = pp;
	return *pp;
}

static void guard_unlink(ims_site *site, guard *g)
{
	guard **pp;
	if (guard_find(site, g->pool, g->image, &pp) == g)
		*pp = g->next;
}

/* An entity address without its "v1:"/"v2:"/"any:" prefix. */
static const char *bare_addr(const char *a, size_t *len)
{
	static const char *const pre[] = {"v1:", "v2:", "any:"};
	for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++) {
		size_t n = strlen(pre[i]);
		if (*len > n && strncmp(a, pre[i], n) == 0) {
			*len -= n;
			return a + n;
		}
	}
	return a;
}

/* Whether @p addr is one of the addresses of @p rados ("127.0.0.1:0/1874625615" or
 * "[v2:...,v1:...]"); the nonce makes an address unique. */
static bool addr_of(rados_t rados, const char *addr)
{
	char *list = NULL;
	bool found = false;
	if (!addr || !addr[0] || rados_getaddrs(rados, &list) < 0 || !list)
		return false;
	size_t alen = strlen(addr);
	const char *a = bare_addr(addr, &alen);
	for (const char *p = list; *p && !found;) {
		size_t n = strcspn(p, "[], "), blen = n;
		const char *b = bare_addr(p, &blen);
		found = n && blen == alen && strncmp(a, b, alen) == 0;
		p += n ? n : 1;
	}
	free(list);
	return found;
}

/* The current main connection, with a count taken for the caller (main_put()). */
static gconn *main_get(ims_site *site)
{
	pthread_mutex_lock(&site->guard_lock);
	gconn *c = site->main;
	c->refs++;
	pthread_mutex_unlock(&site->guard_lock);
	return c;
}

static void main_put(ims_site *site, gconn *c)
{
	pthread_mutex_lock(&site->guard_lock);
	gconn_unref(c);
	pthread_mutex_unlock(&site->guard_lock);
}

bool ims_site_is_me(ims_site *site, const char *owner)
{
	gconn *c = main_get(site);
	bool me = addr_of(c->rados, owner);
	main_put(site, c);
	if (me)
		return true;
	pthread_mutex_lock(&site->guard_lock);
	me = site->gconn && addr_of(site->gconn->rados, owner);
	pthread_mutex_unlock(&site->guard_lock);
	return me;
}

/* Who holds the exclusive lock of @p img, into @p buf ("" if nobody, or unknown). */
static void lock_owner(rbd_image_t img, char *buf, size_t len)
{
	rbd_lock_mode_t mode;
	char *owners[4];
	size_t max = 4;
	buf[0] = '\0';
	if (rbd_lock_get_owners(img, &mode, owners, &max) == 0) {
		if (max)
			snprintf(buf, len, "%s", owners[0]);
		rbd_lock_get_owners_cleanup(owners, max);
	}
}

/* The current guard connection, made on first use or after the last one was blocklisted;
 * with one count taken for the caller. */
static int gconn_get(ims_site *site, gconn *blocklisted, gconn **out)
{
	rados_t rados;
	pthread_mutex_lock(&site->guard_lock);
	if (site->gconn && site->gconn == blocklisted) {
		ims_log_warning("site '%s': the connection that guards secondaries was blocklisted "
				"(a promotion fenced "
				"it); connecting again",
				site->name);
		gconn_unref(site->gconn);
		site->gconn = NULL;
		site->reconnects++;
	}
	if (site->gconn) {
		site->gconn->refs++;
		*out = site->gconn;
		pthread_mutex_unlock(&site->guard_lock);
		return 0;
	}
	pthread_mutex_unlock(&site->guard_lock);
	int r = cluster_connect(&site->opts, site->name, "writer guards", &rados);
	if (r < 0)
		return r;
	gconn *c = calloc(1, sizeof(*c));
	if (!c) {
		rados_shutdown(rados);
		return -ENOMEM;
	}
	c->rados = rados;
	pthread_mutex_lock(&site->guard_lock);
	if (site->gconn) { /* another thread was quicker */
		rados_shutdown(rados);
		free(c);
		c = site->gconn;
	} else {
		c->refs = 1;
		site->gconn = c;
	}
	c->refs++;
	*out = c;
	pthread_mutex_unlock(&site->guard_lock);
	return 0;
}

static void guard_release_handles(guard *g)
{
	if (g->img && g->quiesce_watch)
		rbd_quiesce_unwatch(g->img, g->quiesce);
	g->quiesce_watch = false;
	if (g->img)
		rbd_close(g->img);
	if (g->io)
		rados_ioctx_destroy(g->io);
	g->img = NULL;
	g->io = NULL;
}

/* Another client snapshots the guarded copy: librbd asks every watcher to quiesce first, and
 * a guard says no (imgstore seals its own snapshots with RBD_SNAP_CREATE_SKIP_QUIESCE). */
static void guard_quiesce(void *arg)
{
	guard *g = arg;
	rbd_quiesce_complete(g->img, g->quiesce, -EROFS);
}

static void guard_unquiesce(void *arg)
{
	(void)arg;
}

static int guard_open_on(ims_site *site, guard *g)
{
	char owner[128];
	int r = rados_ioctx_create(g->conn->rados, g->pool, &g->io);
	if (r < 0) {
		g->io = NULL;
		return r == -ENOENT
			       ? ims_error_set(r, "no pool '%s' on site '%s'", g->pool, site->name)
			       : ims_error_set(r, "cannot open pool '%s' on site '%s': %s", g->pool,
					       site->name, ims_strerror(r));
	}
	if ((r = rbd_open(g->io, g->image, &g->img, NULL)) < 0) {
		g->img = NULL;
		return r == -ENOENT
			       ? ims_error_set(r, "no image '%s/%s' on site '%s'", g->pool,
					       g->image, site->name)
			       : ims_error_set(r, "cannot open '%s/%s' on site '%s' to hold it: %s",
					       g->pool, g->image, site->name, ims_strerror(r));
	}
	r = rbd_lock_acquire(g->img, RBD_LOCK_MODE_EXCLUSIVE);
	if (r < 0) {
		lock_owner(g->img, owner, sizeof(owner));
		return ims_error_set(
			r == -EROFS ? -EBUSY : r,
			"cannot hold '%s/%s' on site '%s' against other writers: %s%s%s%s", g->pool,
			g->image, site->name,
			r == -EROFS ? "another client holds its lock" : ims_strerror(r),
			owner[0] ? " (" : "", owner, owner[0] ? ")" : "");
	}
	if ((r = rbd_quiesce_watch(g->img, guard_quiesce, guard_unquiesce, g, &g->quiesce)) < 0)
		return ims_error_set(r, "cannot watch '%s/%s' on site '%s' for snapshots: %s",
				     g->pool, g->image, site->name, ims_strerror(r));
	g->quiesce_watch = true;
	return 0;
}

/* Open and lock @p g on the guard connection; once more on a new connection if the current
 * one was blocklisted (-ESHUTDOWN is Ceph's EBLOCKLISTED). */
static int guard_open(ims_site *site, guard *g)
{
	int r = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		gconn *dead = attempt ? g->conn : NULL;
		if (attempt) {
			guard_release_handles(g);
			pthread_mutex_lock(&site->guard_lock);
			gconn_unref(g->conn);
			pthread_mutex_unlock(&site->guard_lock);
			g->conn = NULL;
		}
		if ((r = gconn_get(site, dead, &g->conn)) < 0) {
			g->conn = NULL;
			return r;
		}
		if ((r = guard_open_on(site, g)) != -ESHUTDOWN)
			break;
	}
	return r;
}

int ims_site_guard_get(rbd_image_t *out, ims_site *site, const char *pool, const char *image)
{
	guard *g;
	int r = 0;
	pthread_mutex_lock(&site->guard_lock);
	while ((g = guard_find(site, pool, image, NULL)) &&
	       (g->opening || (g->drop && g->users == 0)))
		pthread_cond_wait(&site->guard_cond, &site->guard_lock);
	if (g) {
		g->users++;
		*out = g->img;
		pthread_mutex_unlock(&site->guard_lock);
		return 0;
	}
	g = calloc(1, sizeof(*g));
	if (!g || !(g->pool = strdup(pool)) || !(g->image = strdup(image))) {
		pthread_mutex_unlock(&site->guard_lock);
		if (g)
			guard_close(g);
		return -ENOMEM;
	}
	g->opening = true;
	g->next = site->guards;
	site->guards = g;
	pthread_mutex_unlock(&site->guard_lock);

	r = guard_open(site, g); /* no lock held while the cluster answers */

	pthread_mutex_lock(&site->guard_lock);
	g->opening = false;
	if (r < 0)
		guard_unlink(site, g);
	else {
		g->users = 1;
		*out = g->img;
	}
	pthread_cond_broadcast(&site->guard_cond);
	pthread_mutex_unlock(&site->guard_lock);
	if (r < 0)
		guard_close_unref(site, g);
	return r;
}

/* The guard of @p pool/@p image: one user fewer (@p put, for a user's handle), marked to be
 * dropped (@p drop: its last user's put closes it), and closed now if that leaves it no user
 * and it is to be dropped. Returns whether there was one. */
static bool guard_done(ims_site *site, const char *pool, const char *image, bool put, bool drop)
{
	guard *g, *closing = NULL;
	pthread_mutex_lock(&site->guard_lock);
	if ((g = guard_find(site, pool, image, NULL)) && (!put || (!g->opening && g->users))) {
		g->drop |= drop;
		if (put)
			g->users--;
		if (!g->opening && g->users == 0 && g->drop) {
			guard_unlink(site, g);
			closing = g;
		}
	}
	pthread_cond_broadcast(&site->guard_cond);
	pthread_mutex_unlock(&site->guard_lock);
	if (closing)
		guard_close_unref(site, closing);
	return g != NULL;
}

void ims_site_guard_put(ims_site *site, const char *pool, const char *image, bool drop)
{
	guard_done(site, pool, image, true, drop);
}

bool ims_site_guard_let_go(ims_site *site, const char *pool, const char *image)
{
	return guard_done(site, pool, image, false, true);
}

bool ims_site_guard_drop(ims_site *site, const char *pool, const char *image)
{
	guard *g;
	pthread_mutex_lock(&site->guard_lock);
	while ((g = guard_find(site, pool, image, NULL)) && (g->opening || g->users)) {
		if (!g->opening)
			g->drop = true;
		pthread_cond_wait(&site->guard_cond, &site->guard_lock);
	}
	if (g)
		guard_unlink(site, g);
	pthread_cond_broadcast(&site->guard_cond);
	pthread_mutex_unlock(&site->guard_lock);
	if (g)
		guard_close_unref(site, g);
	return g != NULL;
}

const char *ims_site_name(const ims_site *site)
{
	return site->name;
}

void ims_site_set_kek(ims_site *site, const struct ims_crypt_kek *kek)
{
	site->kek = kek;
}

const struct ims_crypt_kek *ims_site_kek(const ims_site *site)
{
	return site->kek;
}

int ims_site_ioctx(rados_ioctx_t *out, ims_site *site, const char *pool)
{
	ioref *ref = calloc(1, sizeof(*ref));
	if (!ref)
		return -ENOMEM;
	gconn *c = main_get(site);
	int r = rados_ioctx_create(c->rados, pool, out);
	if (r < 0) {
		main_put(site, c);
		free(ref);
		if (r == -ENOENT)
			return ims_error_set(r, "no pool '%s' on site '%s'", pool, site->name);
		return ims_error_set(r, "cannot open pool '%s' on site '%s': %s", pool, site->name,
				     ims_strerror(r));
	}
	ref->io = *out;
	ref->site = site;
	ref->conn = c;
	size_t b = ioref_bucket(*out);
	pthread_mutex_lock(&ioref_lock);
	ref->next = ioref_tab[b];
	ioref_tab[b] = ref;
	pthread_mutex_unlock(&ioref_lock);
	return 0;
}

void ims_site_ioctx_close(rados_ioctx_t io)
{
	if (!io)
		return;
	ioref *found = NULL;
	pthread_mutex_lock(&ioref_lock);
	for (ioref **pp = &ioref_tab[ioref_bucket(io)]; *pp; pp = &(*pp)->next) {
		if ((*pp)->io == io) {
			found = *pp;
			*pp = found->next;
			break;
		}
	}
	pthread_mutex_unlock(&ioref_lock);
	rados_ioctx_destroy(io);
	if (found) {
		main_put(found->site, found->conn);
		free(found);
	}
}

int ims_site_pool_name(char *buf, size_t len, ims_site *site, int64_t id)
{
	gconn *c = main_get(site);
	int r = rados_pool_reverse_lookup(c->rados, id, buf, len);
	main_put(site, c);
	return r < 0 ? r : 0;
}

int ims_site_pool_list(char *buf, size_t len, ims_site *site)
{
	gconn *c = main_get(site);
	int r = rados_pool_list(c->rados, buf, len);
	main_put(site, c);
	return r;
}

int ims_site_client_addr(char *buf, size_t len, ims_site *site)
{
	gconn *c = main_get(site);
	char *addrs = NULL;
	int r = rados_getaddrs(c->rados, &addrs);
	main_put(site, c);
	if (r < 0)
		return ims_error_set(r, "site '%s': cannot read the client's address", site->name);
	size_t n = strlen(addrs);
	if (n >= len) {
		free(addrs);
		return ims_error_set(-ERANGE, "site '%s': the client's address is too long",
				     site->name);
	}
	memcpy(buf, addrs, n + 1);
	free(addrs);
	return 0;
}

int ims_site_fsid(char *buf, unsigned len, ims_site *site)
{
	gconn *c = main_get(site);
	int r = rados_cluster_fsid(c->rados, buf, len);
	main_put(site, c);
	return r < 0 ? ims_error_set(r, "site '%s': cannot read the fsid", site->name) : 0;
}

/* Replace the main connection @p dead (found blocklisted) with a new client; nothing if
 * another thread replaced it already. Users of the old one keep it until they let go. */
static int reconnect(ims_site *site, gconn *dead)
{
	pthread_mutex_lock(&site->guard_lock);
	while (site->reconnecting)
		pthread_cond_wait(&site->guard_cond, &site->guard_lock);
	if (site->main != dead) {
		pthread_mutex_unlock(&site->guard_lock);
		return 0;
	}
	site->reconnecting = true;
	pthread_mutex_unlock(&site->guard_lock);

	rados_t rados = NULL;
	gconn *c = calloc(1, sizeof(*c));
	int r = c ? cluster_connect(&site->opts, site->name, "main (after a blocklisting)", &rados)
		  : -ENOMEM;

	pthread_mutex_lock(&site->guard_lock);
	if (r == 0) {
		c->rados = rados;
		c->refs = 1;
		site->main = c;
		site->reconnects++;
		gconn_unref(dead);
	}
	site->reconnecting = false;
	pthread_cond_broadcast(&site->guard_cond);
	pthread_mutex_unlock(&site->guard_lock);
	if (r == 0)
		ims_log_warning("site '%s': this daemon's client was blocklisted; connected again "
				"as a new client",
				site->name);
	else
		free(c);
	return r;
}

/* ---------------------------------------------------------------------------------------- */
/* the probe: a stat of one object in each PG of the pool (store/pg.h) */

/* How many PGs a round asks at most; a larger pool is asked in turn, a few rounds for all. */
#define PROBE_PGS_PER_ROUND 128
/* How often the pool's pg_num is asked of the monitors again (a split or a merge). */
#define PLAN_REFRESH_MS 60000
/* The one object asked while the pool's PGs are not known (the monitors did not say). */
#define PROBE_OBJECT "imgstore.probe"

/* Under the probe lock. */
static void pio_unref(ims_site *site, pio *p)
{
	if (!p || --p->refs)
		return;
	rados_ioctx_destroy(p->io);
	pthread_mutex_lock(&site->guard_lock);
	gconn_unref(p->conn);
	pthread_mutex_unlock(&site->guard_lock);
	free(p);
}

/* The operations in flight no longer count: their PGs may be asked again at once. */
static void plan_orphan(plan *pl)
{
	for (pop *o = pl->inflight; o; o = o->next) {
		if (!o->orphan && pl->busy)
			pl->busy[o->pg] = false;
		o->orphan = true;
	}
}

/* Collect the operations that have ended (with @p wait: all of them, each bounded by the OSD
 * timeout). Sets @p *blocklisted if one found this client blocklisted. */
static void plan_reap(ims_site *site, plan *pl, bool wait, bool *blocklisted)
{
	for (pop **pp = &pl->inflight; *pp;) {
		pop *o = *pp;
		if (wait)
			rados_aio_wait_for_complete(o->c);
		else if (!rados_aio_is_complete(o->c)) {
			pp = &o->next;
			continue;
		}
		int r = rados_aio_get_return_value(o->c);
		if (r == -ENOENT) /* the object need not exist: an OSD of the PG answered */
			r = 0;
		if (!o->orphan) {
			pl->busy[o->pg] = false;
			pl->state[o->pg] = r == 0 ? IMS_PG_ANSWERED : IMS_PG_SILENT;
			pl->error[o->pg] = r;
			if (r == -ESHUTDOWN && blocklisted)
				*blocklisted = true;
		}
		*pp = o->next;
		rados_aio_release(o->c);
		pio_unref(site, o->io);
		free(o);
	}
}

static void plan_free_arrays(plan *pl)
{
	free(pl->names);
	free(pl->state);
	free(pl->busy);
	free(pl->error);
	free(pl->round);
	pl->names = NULL;
	pl->state = NULL;
	pl->busy = NULL;
	pl->error = NULL;
	pl->round = NULL;
	pl->n = 0;
}

/* At close: every operation waited for, the ioctx closed. */
static void plan_drain(ims_site *site)
{
	plan *pl = &site->plan;
	plan_orphan(pl);
	plan_reap(site, pl, true, NULL);
	pio_unref(site, pl->cur);
	pl->cur = NULL;
	plan_free_arrays(pl);
	free(pl->pool);
	pl->pool = NULL;
}

/* The id, pg_num and object hash of @p pool, from the monitors. */
static int pool_info(int64_t *id, uint32_t *pg_num, int *hash, ims_site *site, const char *pool)
{
	const char *cmd[] = {
		"{\"prefix\": \"osd pool ls\", \"detail\": \"detail\", \"format\": \"json\"}"};
	char *outbuf = NULL, *outs = NULL;
	size_t outlen = 0, outslen = 0;
	gconn *c = main_get(site);
	int r = rados_mon_command(c->rados, cmd, 1, "", 0, &outbuf, &outlen, &outs, &outslen);
	main_put(site, c);
	if (r < 0)
		goto out;
	json_tokener *tok = json_tokener_new();
	json_object *root =
		tok ? json_tokener_parse_ex(tok, outbuf ? outbuf : "", (int)outlen) : NULL;
	json_tokener_free(tok);
	r = -ENOENT;
	for (size_t i = 0; root && json_object_is_type(root, json_type_array) &&
			   i < json_object_array_length(root);
	     i++) {
		json_object *p = json_object_array_get_idx(root, i), *v;
		const char *name = json_object_object_get_ex(p, "pool_name", &v)
					   ? json_object_get_string(v)
					   : NULL;
		if (!name || strcmp(name, pool) != 0)
			continue;
		r = -EINVAL;
		if (!json_object_object_get_ex(p, "pool_id", &v))
			break;
		*id = json_object_get_int64(v);
		if (!json_object_object_get_ex(p, "pg_num", &v))
			break;
		int64_t n = json_object_get_int64(v);
		if (n <= 0 || n > (1 << 20))
			break;
		*pg_num = (uint32_t)n;
		*hash = json_object_object_get_ex(p, "object_hash", &v) ? json_object_get_int(v)
									: 2;
		r = 0;
		break;
	}
	json_object_put(root);
out:
	rados_buffer_free(outbuf);
	rados_buffer_free(outs);
	return r;
}

/* Size the plan for @p pg_num PGs (0: the one object PROBE_OBJECT). */
static int plan_size(plan *pl, uint32_t pg_num, int64_t pool_id)
{
	uint32_t n = pg_num ? pg_num : 1;
	plan_orphan(pl);
	plan_free_arrays(pl);
	pl->names = calloc(n, sizeof(*pl->names));
	pl->state = calloc(n, sizeof(*pl->state));
	pl->busy = calloc(n, sizeof(*pl->busy));
	pl->error = calloc(n, sizeof(*pl->error));
	pl->round = calloc(n < PROBE_PGS_PER_ROUND ? n : PROBE_PGS_PER_ROUND, sizeof(*pl->round));
	if (!pl->names || !pl->state || !pl->busy || !pl->error || !pl->round) {
		plan_free_arrays(pl);
		return -ENOMEM;
	}
	if (pg_num && ims_pg_names(pl->names, pg_num) < 0)
		pg_num = 0;
	if (!pg_num) {
		snprintf(pl->names[0], sizeof(pl->names[0]), "%s", PROBE_OBJECT);
		pool_id = -1;
	}
	pl->n = pg_num ? pg_num : 1;
	pl->pg_num = pg_num;
	pl->pool_id = pool_id;
	pl->cursor = 0;
	return 0;
}

/* What the probe asks of @p pool: one object per PG, the pool's pg_num asked of the monitors
 * now and then (before the probe counts as in flight: monitors that do not answer while the
 * OSDs do leave the site up). Until they say, the one object PROBE_OBJECT. */
static int plan_learn(ims_site *site, plan *pl, const char *pool)
{
	int64_t now = mono_ms();
	bool same = pl->pool && strcmp(pl->pool, pool) == 0;
	if (same && pl->n && pl->learnt_ms && now - pl->learnt_ms < PLAN_REFRESH_MS)
		return 0;
	if (!same) {
		char *dup = strdup(pool);
		if (!dup)
			return -ENOMEM;
		free(pl->pool);
		pl->pool = dup;
		plan_free_arrays(pl);
		plan_orphan(pl);
		pio_unref(site, pl->cur); /* an ioctx of another pool */
		pl->cur = NULL;
	}
	int64_t id = -1;
	uint32_t pg_num = 0;
	int hash = 2;
	int r = pool_info(&id, &pg_num, &hash, site, pool);
	if (r < 0) /* asked again in 10 s; meanwhile what is known */
		pl->learnt_ms = now - PLAN_REFRESH_MS + 10000;
	else
		pl->learnt_ms = now;
	if (r == 0 && hash != 2) {
		ims_log_debug(
			"site '%s': pool '%s' hashes object names with hash %d, not rjenkins: "
			"its PGs are not named, one object is asked",
			site->name, pool, hash);
		pg_num = 0;
	}
	if (r < 0 && pl->n)
		return 0;
	if (pl->n && pl->pg_num == pg_num && pl->pool_id == (pg_num ? id : -1))
		return 0;
	return plan_size(pl, pg_num, id);
}

/* The plan's ioctx on the site's current main connection, made anew when that changed (a
 * blocklisted or stuck client replaced): the operations in flight on the old one no longer
 * count. */
static int plan_io(ims_site *site, plan *pl)
{
	gconn *c = main_get(site);
	if (pl->cur && pl->cur->conn == c) {
		main_put(site, c);
		return 0;
	}
	pio *p = calloc(1, sizeof(*p));
	int r = p ? rados_ioctx_create(c->rados, pl->pool, &p->io) : -ENOMEM;
	if (r < 0) {
		free(p);
		main_put(site, c);
		return r;
	}
	p->conn = c; /* with the count main_get() took */
	p->refs = 1;
	plan_orphan(pl);
	pio_unref(site, pl->cur);
	pl->cur = p;
	return 0;
}

typedef struct {
	size_t asked, answered;
	bool blocklisted;
	bool timed_out; /* a PG of the round did not answer in time */
} round_result;

/* One round: a stat of each PG's object of the round, waited for IMS_SITE_PROBE_WAIT_MS at
 * most. A stat still in flight then leaves its PG silent; it is not sent again before it ends
 * (at the OSD timeout at the latest), but its late answer counts. */
static void plan_round(round_result *out, ims_site *site, plan *pl)
{
	memset(out, 0, sizeof(*out));
	plan_reap(site, pl, false, &out->blocklisted);
	size_t k = ims_pg_round(pl->round, PROBE_PGS_PER_ROUND, pl->state, pl->busy, pl->n,
				&pl->cursor);
	for (size_t i = 0; i < k; i++) {
		uint32_t pg = pl->round[i];
		pop *o = calloc(1, sizeof(*o));
		int r = o ? rados_aio_create_completion(NULL, NULL, NULL, &o->c) : -ENOMEM;
		if (r == 0 &&
		    (r = rados_aio_stat(pl->cur->io, pl->names[pg], o->c, &o->size, &o->mtime)) < 0)
			rados_aio_release(o->c);
		if (r < 0) {
			free(o);
			pl->state[pg] = IMS_PG_SILENT;
			pl->error[pg] = r;
			continue;
		}
		o->io = pl->cur;
		o->io->refs++;
		o->pg = pg;
		o->next = pl->inflight;
		pl->inflight = o;
		pl->busy[pg] = true;
	}
	int64_t until = mono_ms() + IMS_SITE_PROBE_WAIT_MS;
	for (;;) {
		plan_reap(site, pl, false, &out->blocklisted);
		bool pending = false;
		for (size_t i = 0; i < k && !pending; i++)
			pending = pl->busy[pl->round[i]];
		if (!pending || mono_ms() >= until)
			break;
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	out->asked = k;
	for (size_t i = 0; i < k; i++) {
		uint32_t pg = pl->round[i];
		if (pl->busy[pg]) {
			pl->state[pg] = IMS_PG_SILENT;
			pl->error[pg] = -ETIMEDOUT;
		}
		out->answered += pl->state[pg] == IMS_PG_ANSWERED;
		out->timed_out |= pl->error[pg] == -ETIMEDOUT;
	}
}

/*
 * After IMS_SITE_STUCK_PROBES rounds in a row where some PG did not answer in time: does a new
 * client get an answer from such a PG? If it does, the site serves and this daemon's clients
 * are what is stuck (seen after an OSD crash and restart: the old client's requests never
 * reach the new OSD): a new client replaces the main one, and the writer guards' client is
 * made again at its next use. Returns whether it was replaced.
 */
#define IMS_SITE_STUCK_PROBES 4
static bool stuck_client(ims_site *site, plan *pl)
{
	pthread_mutex_lock(&site->guard_lock);
	bool due = ++site->timeouts >= IMS_SITE_STUCK_PROBES && !site->reconnecting;
	if (due)
		site->timeouts = 0;
	pthread_mutex_unlock(&site->guard_lock);
	uint32_t pg = 0;
	while (pg < pl->n && pl->error[pg] != -ETIMEDOUT)
		pg++;
	if (!due || pg == pl->n)
		return false;
	/* the trial client waits no longer than a round does */
	ims_site_opts o = site->opts;
	o.osd_timeout = (IMS_SITE_PROBE_WAIT_MS + 999) / 1000;
	rados_t trial = NULL, rados = NULL;
	rados_ioctx_t io = NULL;
	bool answered = false;
	if (cluster_connect(&o, site->name, "trial (the main one gets no answers)", &trial) == 0 &&
	    rados_ioctx_create(trial, pl->pool, &io) == 0) {
		uint64_t size;
		time_t mtime;
		int r = rados_stat(io, pl->names[pg], &size, &mtime);
		answered = r == 0 || r == -ENOENT;
		rados_ioctx_destroy(io);
	}
	if (trial)
		rados_shutdown(trial);
	gconn *c = NULL;
	if (!answered || !(c = calloc(1, sizeof(*c))) ||
	    cluster_connect(&site->opts, site->name, "main (the old one got no answers)", &rados) <
		    0) {
		free(c);
		ims_error_clear();
		return false;
	}
	c->rados = rados;
	c->refs = 1;
	pthread_mutex_lock(&site->guard_lock);
	gconn *old = site->main;
	site->main = c;
	site->reconnects++;
	gconn_unref(old);
	if (site->gconn) { /* the guards' client was made alike: the next guard opens on a new one
			    */
		gconn_unref(site->gconn);
		site->gconn = NULL;
	}
	pthread_mutex_unlock(&site->guard_lock);
	ims_log_warning(
		"site '%s': this daemon's client got no answers while a new one does; replaced it",
		site->name);
	return true;
}

/* What a probe found, for ims_site_health_get(): the site's error (or its first silent PG's). */
static int publish(ims_site *site, plan *pl, int r, const round_result *rr)
{
	uint32_t silent = 0;
	ims_pg_health health = IMS_PG_DOWN;
	if (r == 0) {
		health = ims_pg_summary(&silent, pl->state, pl->n, rr->asked, rr->answered);
		for (uint32_t i = 0; i < pl->n && r == 0; i++)
			if (pl->state[i] == IMS_PG_SILENT)
				r = pl->error[i] ? pl->error[i] : -ETIMEDOUT;
	}
	if (health == IMS_PG_DOWN && r == 0)
		r = -ETIMEDOUT;
	/* which PGs were silent, for ims_site_copy_silent(); made before the lock */
	bool *last = NULL, *map = NULL;
	char *map_pool = NULL;
	if (health == IMS_PG_PARTLY && pl->pg_num && pl->pool &&
	    (last = calloc(pl->pg_num, sizeof(*last))) &&
	    (map = calloc(pl->pg_num, sizeof(*map))) && (map_pool = strdup(pl->pool)))
		for (uint32_t i = 0; i < pl->pg_num; i++)
			last[i] = pl->state[i] == IMS_PG_SILENT;
	if (!map_pool) {
		free(last);
		free(map);
		last = map = NULL;
	}
	pthread_mutex_lock(&site->guard_lock);
	/* silent in this probe and the one before it: not a PG caught peering */
	bool same = map && site->silent_last && site->silent_pg_num == pl->pg_num &&
		    site->silent_pool_id == pl->pool_id && strcmp(site->silent_pool, map_pool) == 0;
	for (uint32_t i = 0; same && i < pl->pg_num; i++)
		map[i] = last[i] && site->silent_last[i];
	free(site->silent_map);
	free(site->silent_last);
	free(site->silent_pool);
	site->silent_map = map;
	site->silent_last = last;
	site->silent_pool = map_pool;
	site->silent_pg_num = map ? pl->pg_num : 0;
	site->silent_pool_id = pl->pool_id;
	site->silent_ms = mono_ms();
	site->probe_since_ms = 0;
	site->probed = true;
	site->last_error = r;
	site->probe_health = health;
	site->probe_pgs = pl->pg_num;
	site->probe_silent = health == IMS_PG_DOWN ? pl->n : silent;
	if (health == IMS_PG_PARTLY)
		ims_pg_list_silent(site->probe_silent_list, sizeof(site->probe_silent_list),
				   pl->state, pl->n, pl->pool_id);
	else
		site->probe_silent_list[0] = '\0';
	if (!rr->timed_out)
		site->timeouts = 0;
	if (health == IMS_PG_UP)
		site->last_ok_ms = mono_ms();
	pthread_mutex_unlock(&site->guard_lock);
	return health == IMS_PG_UP ? 0 : r;
}

static void probe_begins(ims_site *site)
{
	pthread_mutex_lock(&site->guard_lock);
	site->probe_since_ms = mono_ms();
	pthread_mutex_unlock(&site->guard_lock);
}

int ims_site_probe(ims_site *site, const char *pool)
{
	plan *pl = &site->plan;
	round_result rr = {0};
	pthread_mutex_lock(&site->probe_lock);
	int r = plan_learn(site, pl, pool);
	ims_error_clear();

	probe_begins(site);
	if (r == 0 && (r = plan_io(site, pl)) == 0)
		plan_round(&rr, site, pl);
	if (r == 0 && rr.blocklisted) { /* a new client, and ask again */
		if ((r = reconnect(site, pl->cur->conn)) == 0 && (r = plan_io(site, pl)) == 0)
			plan_round(&rr, site, pl);
	}
	int err = publish(site, pl, r, &rr);
	/* (not counted as a probe in flight: what this one found is known meanwhile) */
	if (r == 0 && err && rr.timed_out && stuck_client(site, pl)) {
		probe_begins(site);
		if ((r = plan_io(site, pl)) == 0)
			plan_round(&rr, site, pl);
		err = publish(site, pl, r, &rr);
	}
	ims_site_health sh;
	ims_site_health_get(&sh, site);
	pthread_mutex_unlock(&site->probe_lock);
	if (!sh.up && !sh.partly)
		return ims_error_set(err, "site '%s' did not answer a read in pool '%s': %s",
				     site->name, pool, ims_strerror(err));
	return 0;
}

void ims_site_health_get(ims_site_health *out, ims_site *site)
{
	int64_t now = mono_ms();
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&site->guard_lock);
	out->up = site->probed && site->probe_health == IMS_PG_UP;
	out->partly = site->probed && site->probe_health == IMS_PG_PARTLY;
	out->error = site->last_error;
	out->reconnects = site->reconnects;
	out->since_ok_ms = site->last_ok_ms ? now - site->last_ok_ms : -1;
	out->probing_ms = site->probe_since_ms ? now - site->probe_since_ms : 0;
	out->pgs = site->probe_pgs;
	out->pgs_silent = site->probe_silent;
	snprintf(out->silent, sizeof(out->silent), "%s", site->probe_silent_list);
	pthread_mutex_unlock(&site->guard_lock);
}

/* Whether the probes' silent PGs of @p pool are known, and no older than @p max_age_ms. Called
 * with the guard lock held. */
static bool silent_known(ims_site *site, const char *pool, int64_t max_age_ms)
{
	return site->silent_map && strcmp(site->silent_pool, pool) == 0 &&
	       mono_ms() - site->silent_ms <= max_age_ms;
}

/* Whether object @p oid of @p pool lies in a PG the last two probes found silent; its name into
 * @p pg ("5.1f"). */
static bool object_silent(char *pg, size_t len, ims_site *site, const char *pool, const char *oid,
			  int64_t max_age_ms)
{
	bool silent = false;
	pthread_mutex_lock(&site->guard_lock);
	if (silent_known(site, pool, max_age_ms)) {
		uint32_t i = ims_pg_of(ims_pg_hash(oid, strlen(oid)), site->silent_pg_num);
		if ((silent = site->silent_map[i]))
			snprintf(pg, len, "%lld.%x", (long long)site->silent_pool_id, i);
	}
	pthread_mutex_unlock(&site->guard_lock);
	return silent;
}

/* A string as Ceph encodes it (its length, 32 bits little-endian, then its bytes) at the start of
 * @p buf (@p n bytes) into @p out; false if @p buf holds none that fits. */
static bool ceph_string(char *out, size_t len, const char *buf, size_t n)
{
	if (n < 4)
		return false;
	uint32_t sl = (uint32_t)(unsigned char)buf[0] | (uint32_t)(unsigned char)buf[1] << 8 |
		      (uint32_t)(unsigned char)buf[2] << 16 | (uint32_t)(unsigned char)buf[3] << 24;
	if (sl == 0 || sl > n - 4 || sl >= len)
		return false;
	memcpy(out, buf + 4, sl);
	out[sl] = '\0';
	return true;
}

int ims_site_copy_silent(char *why, size_t len, ims_site *site, const char *pool, const char *name,
			 bool group, int64_t max_age_ms)
{
	char idobj[IMS_NAME_MAX + 32], oid[IMS_NAME_MAX + 32], pg[40], id[65] = "";
	rados_ioctx_t io;
	pthread_mutex_lock(&site->guard_lock);
	bool known = silent_known(site, pool, max_age_ms);
	pthread_mutex_unlock(&site->guard_lock);
	if (!known) /* the site answered its last probe in full, it probes another pool, or the
		       probe is late */
		return 0;
	/* every open reads the pool's configuration first */
	if (object_silent(pg, sizeof(pg), site, pool, "rbd_info", max_age_ms)) {
		snprintf(
			why, len,
			"the pool's rbd_info, which every open reads, lies in PG %s, silent at the "
			"last probes",
			pg);
		return 1;
	}
	/* listing a group's images reads the pool's image directory (their names) */
	if (group && object_silent(pg, sizeof(pg), site, pool, "rbd_directory", max_age_ms)) {
		snprintf(why, len,
			 "the pool's rbd_directory lies in PG %s, silent at the last probes", pg);
		return 1;
	}
	/* where its id is: an image's in rbd_id.NAME, a group's in the pool's group directory */
	if (group)
		snprintf(idobj, sizeof(idobj), "rbd_group_directory");
	else
		snprintf(idobj, sizeof(idobj), "rbd_id.%s", name);
	if (object_silent(pg, sizeof(pg), site, pool, idobj, max_age_ms)) {
		snprintf(why, len, "%s %s lies in PG %s, silent at the last probes",
			 group ? "the pool's" : "its", idobj, pg);
		return 1;
	}
	/* its header's name holds its id, which lies in a PG that answered */
	if (ims_site_ioctx(&io, site, pool) < 0) {
		ims_error_clear();
		return 0;
	}
	bool found;
	int n;
	if (group) {
		char key[IMS_NAME_MAX + 8], *v = NULL;
		size_t vl = 0;
		snprintf(key, sizeof(key), "name_%s", name);
		n = ims_omap_get(&v, &vl, io, idobj, key);
		found = n == 0 && ceph_string(id, sizeof(id), v, vl);
		free(v);
	} else {
		char buf[4 + sizeof(id)];
		n = rados_read(io, idobj, buf, sizeof(buf), 0);
		found = n >= 0 && ceph_string(id, sizeof(id), buf, (size_t)n);
	}
	ims_site_ioctx_close(io);
	if (n == -ETIMEDOUT) { /* its PG fell silent since: an open would wait as long again */
		snprintf(why, len, "%s %s did not answer in time", group ? "the pool's" : "its",
			 idobj);
		return 1;
	}
	if (!found)
		return 0; /* asked as it comes: opening it says what is wrong */
	snprintf(oid, sizeof(oid), "%s%s", group ? "rbd_group_header." : "rbd_header.", id);
	if (object_silent(pg, sizeof(pg), site, pool, oid, max_age_ms)) {
		snprintf(why, len, "its %s lies in PG %s, silent at the last probes", oid, pg);
		return 1;
	}
	return 0;
}

int ims_site_mon_addrs(char *buf, unsigned len, ims_site *site)
{
	const char *cmd[] = {"{\"prefix\": \"mon dump\", \"format\": \"json\"}"};
	char *outbuf = NULL, *outs = NULL;
	size_t outlen = 0, outslen = 0;
	int r;

	gconn *c = main_get(site);
	r = rados_mon_command(c->rados, cmd, 1, "", 0, &outbuf, &outlen, &outs, &outslen);
	main_put(site, c);
	if (r < 0) {
		ims_error_set(r, "site '%s': 'mon dump' failed: %s", site->name, ims_strerror(r));
		goto out;
	}
	/* The reply is not NUL-terminated. */
	char *text = strndup(outbuf ? outbuf : "", outlen);
	if (!text) {
		r = -ENOMEM;
		goto out;
	}
	json_object *root = json_tokener_parse(text), *mons;
	free(text);
	size_t used = 0;
	buf[0] = '\0';
	if (root && json_object_object_get_ex(root, "mons", &mons) &&
	    json_object_is_type(mons, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(mons); i++) {
			json_object *mon = json_object_array_get_idx(mons, i), *addrs, *vec;
			if (!json_object_object_get_ex(mon, "public_addrs", &addrs) ||
			    !json_object_object_get_ex(addrs, "addrvec", &vec))
				continue;
			for (size_t j = 0; j < json_object_array_length(vec); j++) {
				json_object *a = json_object_array_get_idx(vec, j), *type, *addr;
				if (!json_object_object_get_ex(a, "type", &type) ||
				    !json_object_object_get_ex(a, "addr", &addr) ||
				    strcmp(json_object_get_string(type), "v2") != 0)
					continue;
				int n = snprintf(buf + used, len - used, "%s%s", used ? "," : "",
						 json_object_get_string(addr));
				if (n < 0 || (size_t)n >= len - used) {
					json_object_put(root);
					r = ims_error_set(-ERANGE,
							  "site '%s': monitor list too long",
							  site->name);
					goto out;
				}
				used += (size_t)n;
			}
		}
	}
	json_object_put(root);
	r = used ? 0
		 : ims_error_set(-ENOENT, "site '%s': no v2 monitor address in the monmap",
				 site->name);
out:
	rados_buffer_free(outbuf);
	rados_buffer_free(outs);
	return r;
}
