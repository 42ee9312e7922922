#include "tier/tier.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <rbd/librbd.h>

#include "common/array.h"
#include "common/error.h"
#include "common/opts.h"
#include "common/fanout.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/spec.h"
#include "store/catalog.h"
#include "store/crypt.h"
#include "store/image.h"
#include "store/transfer.h"

#define MAX_WORKERS 64
#define KEY_MAX	    1024

struct ims_tier_target {
	ims_s3 *s3;
	ims_seal_key key;
};

int ims_tier_target_new(ims_tier_target **out, ims_s3 *s3, const ims_seal_key *key)
{
	ims_tier_target *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->s3 = s3;
	t->key = *key;
	*out = t;
	return 0;
}

int ims_tier_target_open(ims_tier_target **out, const ims_config_s3 *cfg)
{
	ims_seal_key key;
	ims_s3 *s3 = NULL;
	int r;
	if ((r = ims_seal_key_load(&key, cfg->key_file)) < 0)
		return r;
	if ((r = ims_s3_from_config(&s3, cfg)) < 0)
		goto out;
	if ((r = ims_tier_target_new(out, s3, &key)) < 0)
		ims_s3_free(s3);
out:
	OPENSSL_cleanse(&key, sizeof(key));
	return r;
}

void ims_tier_target_free(ims_tier_target *t)
{
	if (!t)
		return;
	ims_s3_free(t->s3);
	OPENSSL_cleanse(&t->key, sizeof(t->key));
	free(t);
}

ims_s3 *ims_tier_target_s3(ims_tier_target *t)
{
	return t->s3;
}

int ims_tier_after_parse(ims_tier_after *out, const char *s)
{
	if (!s || !s[0] || !strcmp(s, "trash"))
		*out = IMS_TIER_TRASH;
	else if (!strcmp(s, "keep"))
		*out = IMS_TIER_KEEP;
	else if (!strcmp(s, "purge"))
		*out = IMS_TIER_PURGE;
	else
		return ims_error_set(-EINVAL, "'%s' is not keep, trash or purge", s);
	return 0;
}

static int check_opts(const ims_tier_opts *o)
{
	return IMS_OPTS_CHECK(o, IMS_TIER_OPTS_VERSION, "tier");
}

static unsigned opt_workers(const ims_tier_opts *o)
{
	unsigned n = o->concurrency ? o->concurrency : 8;
	return n > MAX_WORKERS ? MAX_WORKERS : n;
}

/*
 * Memory: a push worker holds about two chunks (the chunk read, then compressed and sealed)
 * and a restore fetcher two (sealed, then opened), so the workers are as many as
 * `concurrency` says but no more than these budgets allow for the chunk size; a restore keeps
 * its fetchers' chunks and two more ready for the importer, which writes with a budget of its
 * own. The ceilings stay above what the OSDs and the S3 server take on this hardware: a push
 * of 4 MiB chunks ran fastest with 8 workers, and a restore as fast with 4 as with 16
 * (docs/BENCHMARKS.md).
 */
#define PUSH_BUDGET	(64ull << 20)
#define FETCH_BUDGET	(32ull << 20)
#define IMPORTER_BUDGET (24ull << 20)
#define WINDOW_SPARE	2

static unsigned budget_workers(const ims_tier_opts *o, uint64_t budget, uint64_t chunk)
{
	unsigned n = opt_workers(o);
	uint64_t fit = budget / (2 * (chunk ? chunk : IMS_CHUNK_SIZE_DEFAULT));
	if (fit < 1)
		fit = 1;
	return n > fit ? (unsigned)fit : n;
}

static uint64_t opt_grace(const ims_tier_opts *o)
{
	return o->grace ? o->grace : 86400;
}

static bool is_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

typedef struct {
	char **keys;
	int64_t *mtimes;
	size_t n, cap, mcap;
} keylist;

static int collect_key(void *ctx, const char *key, uint64_t size, int64_t mtime)
{
	keylist *l = ctx;
	(void)size;
	if (ims_array_grow(l->keys, l->cap, l->n + 1, 256) < 0 ||
	    ims_array_grow(l->mtimes, l->mcap, l->n + 1, 256) < 0)
		return -ENOMEM;
	if (!(l->keys[l->n] = strdup(key)))
		return -ENOMEM;
	l->mtimes[l->n++] = mtime;
	return 0;
}

static void keylist_free(keylist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->keys[i]);
	free(l->keys);
	free(l->mtimes);
}

/* ------------------------------------------------------------------------------------------ */
/* locks between pushes and garbage collection */

#define GC_LOCK_PREFIX	 "locks/gc/"
#define PUSH_LOCK_PREFIX "locks/push/"

static bool lock_fresh(int64_t mtime, int64_t now)
{
	return mtime > now - IMS_TIER_LOCK_STALE;
}

/* Write (or renew) lock object @p key: which process holds it, for the operator who finds it
 * (no image name: the target learns no more than the manifests' keys tell). */
static int lock_put(ims_tier_target *t, const char *key)
{
	char host[256] = "", body[400];
	gethostname(host, sizeof(host) - 1);
	int n = snprintf(body, sizeof(body), "{\"host\":\"%s\",\"pid\":%d,\"time\":%lld}\n", host,
			 (int)getpid(), (long long)time(NULL));
	return ims_s3_put(t->s3, key, body, n < (int)sizeof(body) ? (size_t)n : sizeof(body) - 1);
}

/* A new lock key under @p prefix. */
static int lock_key(char *key, size_t len, const char *prefix)
{
	char id[17];
	int r = ims_random_hex(id, sizeof(id));
	if (r < 0)
		return r;
	snprintf(key, len, "%s%s", prefix, id);
	return 0;
}

/* Delete lock object @p key (if any), keeping the thread's error message: this is cleanup. */
static void lock_drop(ims_tier_target *t, char *key)
{
	char msg[IMS_ERROR_MSG_MAX];
	int code = ims_error_last_code();
	if (!key[0])
		return;
	snprintf(msg, sizeof(msg), "%s", ims_error_last());
	if (ims_s3_delete(t->s3, key) < 0 && code)
		ims_error_set(code, "%s", msg);
	key[0] = '\0';
}

/* How many live locks there are under @p prefix. */
static int locks_live(ims_tier_target *t, const char *prefix, size_t *live)
{
	keylist l = {0};
	int64_t now = (int64_t)time(NULL);
	int r = ims_s3_list(t->s3, prefix, collect_key, &l);
	*live = 0;
	for (size_t i = 0; r == 0 && i < l.n; i++)
		if (lock_fresh(l.mtimes[i], now))
			(*live)++;
	keylist_free(&l);
	return r;
}

/*
 * Take a push's lock: write it, then look for garbage collection's. A collection that is
 * running (it wrote its lock first, or at the same time) is waited for, without our lock.
 * Either this push sees the collection's lock or the collection sees this push's.
 */
static int push_lock(ims_tier_target *t, char *key, size_t len, const char *what,
		     const ims_tier_opts *o)
{
	size_t live = 0;
	bool told = false;
	int r;
	if ((r = lock_key(key, len, PUSH_LOCK_PREFIX)) < 0)
		return r;
	for (;;) {
		if ((r = lock_put(t, key)) < 0)
			break;
		if ((r = locks_live(t, GC_LOCK_PREFIX, &live)) < 0 || !live)
			break;
		if ((r = ims_s3_delete(t->s3, key)) < 0)
			break;
		if (!told)
			ims_log_debug("push of '%s' waits for the garbage collection on '%s'", what,
				      ims_s3_name(t->s3));
		told = true;
		if (o->progress && o->progress(o->progress_ctx, 0, 0) != 0) {
			r = ims_error_set(
				-ECANCELED,
				"push of '%s' cancelled while waiting for garbage collection",
				what);
			break;
		}
		struct timespec ts = {1, 0};
		nanosleep(&ts, NULL);
	}
	if (r < 0)
		lock_drop(t, key);
	return r;
}

/* Take garbage collection's lock: write it, then refuse while a push holds one. */
static int gc_lock(ims_tier_target *t, char *key, size_t len)
{
	size_t live = 0;
	int r;
	if ((r = lock_key(key, len, GC_LOCK_PREFIX)) < 0)
		return r;
	if ((r = lock_put(t, key)) < 0)
		goto out;
	if ((r = locks_live(t, PUSH_LOCK_PREFIX, &live)) < 0)
		goto out;
	if (live)
		r = ims_error_set(
			-EBUSY,
			"garbage collection on target '%s' deferred: %zu push%s running; nothing "
			"deleted",
			ims_s3_name(t->s3), live, live == 1 ? " is" : "es are");
out:
	if (r < 0)
		lock_drop(t, key);
	return r;
}

/* Renew a lock every IMS_TIER_LOCK_RENEW seconds. */
static int lock_renew(ims_tier_target *t, const char *key, int64_t *renewed)
{
	int64_t now = (int64_t)time(NULL);
	if (!key[0] || now - *renewed < IMS_TIER_LOCK_RENEW)
		return 0;
	*renewed = now;
	return lock_put(t, key);
}

/* ------------------------------------------------------------------------------------------ */
/* manifests */

int ims_tier_manifest_get(ims_manifest **out, ims_tier_target *t, const char *name)
{
	char key[KEY_MAX];
	uint8_t *sealed = NULL, *plain = NULL;
	size_t slen = 0, plen = 0;
	ims_manifest *m = NULL;
	int r;

	if ((r = ims_manifest_key(key, sizeof(key), name)) < 0)
		return r;
	r = ims_s3_get(&sealed, &slen, t->s3, key, IMS_MANIFEST_MAX_BYTES + IMS_SEAL_OVERHEAD);
	if (r == -ENOENT) {
		r = ims_error_set(-ENOENT, "no cold image '%s' on target '%s'", name,
				  ims_s3_name(t->s3));
		goto out;
	}
	if (r < 0)
		goto out;
	if ((r = ims_unseal(&plain, &plen, &t->key, key, sealed, slen, IMS_MANIFEST_MAX_BYTES)) <
	    0) {
		ims_error_set(r,
			      "the manifest of cold image '%s' on target '%s' cannot be opened: %s "
			      "(is the key file the one it was pushed with?)",
			      name, ims_s3_name(t->s3), ims_error_last());
		goto out;
	}
	if ((r = ims_manifest_parse(&m, (const char *)plain, plen)) < 0) {
		ims_error_set(r, "the manifest of cold image '%s' is bad: %s", name,
			      ims_error_last());
		goto out;
	}
	if (strcmp(m->name, name) != 0) {
		r = ims_error_set(-EBADMSG, "the manifest stored as '%s' names '%s'", name,
				  m->name);
		goto out;
	}
	*out = m;
	m = NULL;
out:
	ims_manifest_free(m);
	free(sealed);
	free(plain);
	return r;
}

int ims_tier_forget(ims_tier_target *t, const char *name)
{
	char key[KEY_MAX];
	int r = ims_manifest_key(key, sizeof(key), name);
	return r < 0 ? r : ims_s3_delete(t->s3, key);
}

static int store_manifest(ims_tier_target *t, const ims_manifest *m, bool rewrite);

/* The manifests' names on @p t that start with @p prefix ("" for all). */
static int list_manifests(keylist *l, ims_tier_target *t, const char *prefix)
{
	char key[KEY_MAX];
	if (snprintf(key, sizeof(key), "manifests/%s", prefix) >= (int)sizeof(key))
		return -ENAMETOOLONG;
	return ims_s3_list(t->s3, key, collect_key, l);
}

int ims_tier_shred(size_t *out, ims_tier_target *t, const char *pool, const char *image)
{
	char prefix[3 * IMS_NAME_MAX + 4];
	keylist l = {0};
	size_t n = 0, plen;
	int r;
	if ((r = ims_name_check(IMS_NAME_POOL, pool)) < 0 ||
	    (r = ims_name_check(IMS_NAME_IMAGE, image)) < 0)
		return r;
	plen = (size_t)snprintf(prefix, sizeof(prefix), "%s/%s", pool, image);
	if ((r = list_manifests(&l, t, prefix)) < 0)
		goto out;
	for (size_t i = 0; i < l.n; i++) {
		const char *name = l.keys[i] + strlen("manifests/");
		ims_manifest *m = NULL;
		/* "pool/vm1" lists "pool/vm10" too */
		if (name[plen] != '\0' && name[plen] != '@')
			continue;
		if ((r = ims_tier_manifest_get(&m, t, name)) < 0)
			goto out;
		if (m->wrapped_key[0] && strcmp(m->wrapped_key, IMS_CRYPT_SHREDDED) != 0) {
			free(m->wrapped_key);
			if (!(m->wrapped_key = strdup(IMS_CRYPT_SHREDDED)))
				r = -ENOMEM;
			else if ((r = store_manifest(t, m, true)) == 0)
				n++;
		}
		ims_manifest_free(m);
		if (r < 0) {
			ims_error_wrap(r, "cannot shred cold image '%s' on target '%s'", name,
				       ims_s3_name(t->s3));
			goto out;
		}
	}
	r = 0;
out:
	if (out)
		*out = n;
	keylist_free(&l);
	return r;
}

int ims_tier_shred_check(ims_tier_target *t, const char *pool, const char *image)
{
	char prefix[3 * IMS_NAME_MAX + 4];
	keylist l = {0};
	int r;
	if ((r = ims_name_check(IMS_NAME_POOL, pool)) < 0 ||
	    (r = ims_name_check(IMS_NAME_IMAGE, image)) < 0)
		return r;
	snprintf(prefix, sizeof(prefix), "%s/%s", pool, image);
	r = list_manifests(&l, t, prefix);
	keylist_free(&l);
	return r;
}

int ims_tier_rewrap(ims_crypt_rewrap_result *out, ims_tier_target *t, const ims_crypt_kek *kek)
{
	keylist l = {0};
	ims_crypt_rewrap_result res = {0};
	int r;
	if ((r = list_manifests(&l, t, "")) < 0)
		goto out;
	for (size_t i = 0; i < l.n; i++) {
		const char *name = l.keys[i] + strlen("manifests/");
		char wrapped[IMS_CRYPT_WRAPPED_MAX];
		ims_manifest *m = NULL;
		if ((r = ims_tier_manifest_get(&m, t, name)) < 0) {
			if (r != -EBADMSG && r != -ENOENT)
				goto out;
			if (r == -EBADMSG)
				ims_crypt_rewrap_failed(&res, "cold image '%s': %s", name,
							ims_error_last());
			continue;
		}
		r = 0;
		if (m->wrapped_key[0] && strcmp(m->wrapped_key, IMS_CRYPT_SHREDDED) != 0) {
			if (!kek)
				r = ims_error_set(-EPERM, "no kek_file");
			else
				r = ims_crypt_rewrap(wrapped, kek, m->wrapped_key);
			if (r == 1) {
				free(m->wrapped_key);
				if (!(m->wrapped_key = strdup(wrapped)))
					r = -ENOMEM;
				else if ((r = store_manifest(t, m, true)) == 0)
					res.rewrapped++;
			} else if (r == 0) {
				res.current++;
			}
			if (r < 0 && r != -ENOMEM) {
				ims_crypt_rewrap_failed(&res, "cold image '%s': %s", name,
							ims_error_last());
				r = 0;
			}
		}
		OPENSSL_cleanse(wrapped, sizeof(wrapped));
		ims_manifest_free(m);
		if (r < 0)
			goto out;
	}
	r = 0;
out:
	if (out)
		*out = res;
	keylist_free(&l);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* push */

typedef struct {
	uint64_t off;
	uint32_t len;
	bool data; /* false: all zeros */
	uint8_t sha256[IMS_SHA256_LEN];
} cell;

/* The uploads of a push: cells handed out by the fan-out, a read buffer per worker. */
typedef struct {
	pthread_mutex_t lock; /* the counters */
	ims_tier_target *t;
	rbd_image_t image;
	const char *what;
	const ims_tier_opts *o;
	cell *cells;
	struct {
		uint8_t *buf;
		size_t cap;
	} bufs[MAX_WORKERS];
	uint64_t bytes_done, bytes_total;
	uint64_t chunks_new, bytes_sealed;
	const char *lock_key; /* the push's lock, renewed by the watch */
	int64_t renewed;
} pusher;

/* Store one chunk unless it is there already; a chunk there but old enough that garbage
 * collection could take it is refreshed first. */
static int store_chunk(pusher *p, cell *c, const uint8_t *buf, uint64_t *sealed_bytes,
		       bool *uploaded)
{
	char key[128];
	int64_t mtime = 0;
	uint8_t *sealed = NULL;
	size_t slen = 0;
	int r;

	*uploaded = false;
	*sealed_bytes = 0;
	ims_manifest_chunk_key(key, sizeof(key), c->sha256);
	r = ims_s3_head(NULL, &mtime, p->t->s3, key);
	if (r == 0) {
		/* garbage collection cannot run before the manifest is stored (push_lock()); the
		 * refresh keeps the chunk should this push's lock go stale */
		if (mtime <= 0 || (int64_t)time(NULL) - mtime < (int64_t)(opt_grace(p->o) / 2))
			return 0;
		if (ims_s3_touch(p->t->s3, key) == 0)
			return 0;
		/* no copy in place on this target: store it again */
	} else if (r != -ENOENT) {
		return r;
	}
	if ((r = ims_seal(&sealed, &slen, &p->t->key, key, buf, c->len, p->o->zstd_level)) < 0)
		return r;
	r = ims_s3_put(p->t->s3, key, sealed, slen);
	free(sealed);
	if (r == 0) {
		*uploaded = true;
		*sealed_bytes = slen;
	}
	return r;
}

/* Read one cell, and store it unless it is all zeros (ims_fanout_opts.item). */
static int push_cell(void *ctx, unsigned worker, size_t i)
{
	pusher *p = ctx;
	cell *c = &p->cells[i];
	uint64_t sealed = 0;
	bool uploaded = false;
	int r;
	if (p->bufs[worker].cap < c->len) {
		free(p->bufs[worker].buf);
		p->bufs[worker].cap = c->len;
		if (!(p->bufs[worker].buf = malloc(c->len))) {
			p->bufs[worker].cap = 0;
			return -ENOMEM;
		}
	}
	uint8_t *buf = p->bufs[worker].buf;
	ssize_t n = rbd_read(p->image, c->off, c->len, (char *)buf);
	if (n < 0)
		return ims_error_set((int)n, "cannot read '%s' at offset %" PRIu64 ": %s", p->what,
				     c->off, ims_strerror((int)n));
	if ((size_t)n < c->len)
		memset(buf + n, 0, c->len - (size_t)n);
	c->data = !is_zero(buf, c->len);
	if (c->data) {
		ims_sha256_buf(c->sha256, buf, c->len);
		if ((r = store_chunk(p, c, buf, &sealed, &uploaded)) < 0)
			return r;
	}
	pthread_mutex_lock(&p->lock);
	p->bytes_done += c->len;
	p->bytes_sealed += sealed;
	p->chunks_new += uploaded;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* While the cells upload: progress, cancel, and the push's lock kept fresh. */
static int push_watch(void *ctx)
{
	pusher *p = ctx;
	const ims_tier_opts *o = p->o;
	pthread_mutex_lock(&p->lock);
	uint64_t done = p->bytes_done, total = p->bytes_total;
	pthread_mutex_unlock(&p->lock);
	if (o->progress && o->progress(o->progress_ctx, done, total) != 0)
		return ims_error_set(-ECANCELED, "push of '%s' cancelled; no manifest was written",
				     p->what);
	return lock_renew(p->t, p->lock_key, &p->renewed);
}

typedef struct {
	uint64_t chunk;
	cell *cells;
	size_t n, cap;
	uint64_t size;
	int err;
} grid;

/* The grid cells an allocated extent touches; extents come in ascending order. */
static int add_cells(uint64_t off, size_t len, int exists, void *arg)
{
	grid *g = arg;
	if (!exists || len == 0)
		return 0;
	for (uint64_t idx = off / g->chunk; idx * g->chunk < off + len; idx++) {
		uint64_t coff = idx * g->chunk;
		if (g->n && g->cells[g->n - 1].off >= coff)
			continue;
		if (ims_array_grow(g->cells, g->cap, g->n + 1, 1024) < 0)
			return g->err = -ENOMEM;
		uint64_t clen = g->size - coff < g->chunk ? g->size - coff : g->chunk;
		g->cells[g->n++] = (cell){.off = coff, .len = (uint32_t)clen};
	}
	return 0;
}

static int check_leases(const ims_tier_opts *o, const char *pool, const char *image,
			const char *name)
{
	char why[256] = "";
	if (!o->leased)
		return 0;
	int r = o->leased(o->leased_ctx, pool, image, why, sizeof(why));
	if (r > 0)
		return ims_error_set(-EBUSY, "'%s' is in use (%s): release it, or push a snapshot",
				     name, why[0] ? why : "leased by a host");
	return r;
}

/*
 * Before a push that removes the image: nobody else may have it open or leased, and this push
 * holds its exclusive lock until the removal (then other clients' writes fail).
 */
static int claim_head(rados_ioctx_t io, rbd_image_t head, const char *pool, const char *image,
		      const char *name, const ims_tier_opts *o, bool *locked)
{
	size_t users = 0;
	uint64_t features = 0;
	int r;
	if ((r = ims_image_watchers(&users, head, io)) < 0)
		return ims_error_set(r, "cannot list the clients of '%s': %s", name,
				     ims_strerror(r));
	if (users)
		return ims_error_set(-EBUSY,
				     "'%s' is open by %zu client%s: stop them, or push a snapshot",
				     name, users, users == 1 ? "" : "s");
	if ((r = check_leases(o, pool, image, name)) < 0)
		return r;
	if ((r = rbd_get_features(head, &features)) < 0)
		return ims_error_set(r, "cannot stat '%s': %s", name, ims_strerror(r));
	if (!(features & RBD_FEATURE_EXCLUSIVE_LOCK))
		return 0; /* the diff before the removal is the only guard */
	r = rbd_lock_acquire(head, RBD_LOCK_MODE_EXCLUSIVE);
	if (r == -EROFS || r == -EBUSY)
		return ims_error_set(
			-EBUSY,
			"another client holds the lock of '%s': stop it, or push a snapshot", name);
	if (r < 0)
		return ims_error_set(r, "cannot take the lock of '%s': %s", name, ims_strerror(r));
	*locked = true;
	return 0;
}

static int note_change(uint64_t off, size_t len, int exists, void *arg)
{
	(void)off;
	(void)len;
	(void)exists;
	*(bool *)arg = true;
	return 0;
}

/* Before removing the image: nothing written since the push snapshot, no client that opened
 * it meanwhile, and no host lease. */
static int check_unchanged(rados_ioctx_t io, rbd_image_t head, const char *psnap, uint64_t size,
			   const char *pool, const char *image, const char *name,
			   const ims_tier_opts *o)
{
	rbd_image_info_t st;
	bool changed = false;
	size_t users = 0;
	int r = rbd_stat(head, &st, sizeof(st));
	if (r == 0 && st.size != size)
		changed = true;
	else if (r == 0)
		r = rbd_diff_iterate2(head, psnap, 0, size, 0, 0, note_change, &changed);
	if (r < 0)
		return ims_error_set(r,
				     "'%s' was pushed but cannot be compared with its push "
				     "snapshot, so it was kept: "
				     "%s",
				     name, ims_strerror(r));
	if (changed)
		return ims_error_set(
			-EBUSY,
			"'%s' was written to during the push: cold image '%s' holds it as it was "
			"when the push started, and the image was kept",
			name, name);
	if ((r = ims_image_watchers(&users, head, io)) < 0)
		return ims_error_set(r, "'%s' was pushed but kept: cannot list its clients: %s",
				     name, ims_strerror(r));
	if (users)
		return ims_error_set(
			-EBUSY, "'%s' was pushed but kept: %zu client%s opened it during the push",
			name, users, users == 1 ? "" : "s");
	if ((r = check_leases(o, pool, image, name)) < 0)
		return ims_error_set(r, "'%s' was pushed but kept: %s", name, ims_error_last());
	return 0;
}

/* Bytes a manifest entry takes at most: a chunk "[OFF,LEN,"HEX"]," and a zero range. */
#define MANIFEST_CHUNK_BYTES (2 * 20 + IMS_SHA256_HEX_LEN + 8)
#define MANIFEST_ZERO_BYTES  (2 * 20 + 4)

/* Refuse, before anything is uploaded, a push whose manifest restore would not accept. */
static int check_manifest_bound(const char *name, size_t ncells, const ims_catalog_entry *cat,
				uint64_t chunk)
{
	if (cat && cat->ntags > IMS_MANIFEST_TAGS_MAX)
		return ims_error_set(
			-EMSGSIZE, "'%s' has %zu tags; a cold image keeps at most %u: remove some",
			name, cat->ntags, IMS_MANIFEST_TAGS_MAX);
	uint64_t bytes = 65536 + (uint64_t)ncells * MANIFEST_CHUNK_BYTES +
			 ((uint64_t)ncells + 1) * MANIFEST_ZERO_BYTES;
	for (size_t i = 0; cat && i < cat->ntags; i++)
		bytes += 2 * (strlen(cat->tags[i].key) + strlen(cat->tags[i].value)) + 8;
	if (bytes > IMS_MANIFEST_MAX_BYTES)
		return ims_error_set(-EMSGSIZE,
				     "the manifest of '%s' would hold %zu chunks of %" PRIu64
				     " bytes, more than "
				     "restore accepts: push it with a larger chunk size",
				     name, ncells, chunk);
	return 0;
}

/*
 * Store the manifest, then read it back as restore will: only a manifest that reads back and
 * says what was written lets the image go. One that does not is deleted.
 */
/* With @p rewrite (a manifest rewritten in place: shred, rewrap), one that does not read back
 * is kept, not deleted: there is no image behind it to push again. */
static int store_manifest(ims_tier_target *t, const ims_manifest *m, bool rewrite)
{
	char key[KEY_MAX], *text = NULL, *again = NULL;
	uint8_t *sealed = NULL;
	size_t tlen = 0, alen = 0, slen = 0;
	ims_manifest *check = NULL, *back = NULL;
	int r;
	if ((r = ims_manifest_key(key, sizeof(key), m->name)) < 0)
		return r;
	if ((r = ims_manifest_encode(&text, &tlen, m)) < 0)
		goto out;
	if (tlen > IMS_MANIFEST_MAX_BYTES || ims_manifest_parse(&check, text, tlen) < 0) {
		r = ims_error_set(-EMSGSIZE,
				  "the manifest of '%s' would not be accepted by restore (%s): not "
				  "stored, the image kept",
				  m->name,
				  tlen > IMS_MANIFEST_MAX_BYTES ? "too large" : ims_error_last());
		goto out;
	}
	if ((r = ims_seal(&sealed, &slen, &t->key, key, text, tlen, 0)) < 0 ||
	    (r = ims_s3_put(t->s3, key, sealed, slen)) < 0)
		goto out;
	if ((r = ims_tier_manifest_get(&back, t, m->name)) == 0 &&
	    (r = ims_manifest_encode(&again, &alen, back)) == 0 &&
	    (alen != tlen || memcmp(again, text, tlen) != 0))
		r = ims_error_set(-EIO, "it reads back different");
	if (r < 0 && rewrite) {
		r = ims_error_set(-EIO, "the rewritten manifest of '%s' did not read back (%s)",
				  m->name, ims_error_last());
	} else if (r < 0) {
		ims_error_saved keep;
		r = ims_error_set(-EIO,
				  "the manifest of '%s' did not read back (%s): deleted it, and "
				  "kept the image",
				  m->name, ims_error_last());
		ims_error_save(&keep);
		ims_s3_delete(t->s3, key);
		ims_error_restore(&keep);
	}
out:
	ims_manifest_free(check);
	ims_manifest_free(back);
	free(text);
	free(again);
	free(sealed);
	return r;
}

#define PUSH_SNAP_PREFIX "imgstore-tier-"

/* Remove the push snapshots an interrupted push (its daemon killed) left on @p head. Called when
 * no other client has the image open: none of them belongs to a live push, which would. */
static void drop_stale_push_snaps(ims_site *site, const char *pool, const char *image,
				  rbd_image_t head, const char *name)
{
	ims_snap_info *v = NULL;
	size_t n = 0;
	if (ims_snap_list(&v, &n, site, pool, image) < 0) {
		ims_error_clear();
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (strncmp(v[i].name, PUSH_SNAP_PREFIX, strlen(PUSH_SNAP_PREFIX)) != 0)
			continue;
		int r = rbd_snap_remove(head, v[i].name);
		if (r == 0)
			ims_log_info("removed '%s@%s', the snapshot of an interrupted push", name,
				     v[i].name);
		else
			ims_log_warning(
				"cannot remove '%s@%s', the snapshot of an interrupted push: %s",
				name, v[i].name, ims_strerror(r));
	}
	ims_snap_list_free(v, n);
}

/* One push: what it was asked, and what it holds until it ends. */
typedef struct {
	ims_tier_target *t;
	ims_site *site;
	const char *pool, *image, *snap; /* snap: NULL for the head */
	const ims_tier_opts *o;
	char name[3 * IMS_NAME_MAX + 4];
	uint64_t chunk;
	bool remove; /* the head goes to the trash or is purged after the push */

	rados_ioctx_t io;
	rbd_image_t head; /* a head's push: the push snapshot's and the lock's handle */
	rbd_image_t img;  /* what is read: @p snap or the push snapshot */
	char psnap[64], lock[64];
	bool snapped, locked;
	rbd_image_info_t st;
	uint64_t features;
	grid g;
	ims_catalog_entry *cat;
	char wrapped[IMS_CRYPT_WRAPPED_MAX]; /* an encrypted image's wrapped data key, else "" */

	uint64_t bytes_total, bytes_sealed, chunks_new; /* of the uploads */
	ims_manifest m;
	uint64_t bytes_data;
} push;

static int push_check(push *ps)
{
	const ims_tier_opts *o = ps->o;
	int r;
	if ((r = check_opts(o)) < 0)
		return r;
	if ((r = ims_name_check(IMS_NAME_POOL, ps->pool)) < 0 ||
	    (r = ims_name_check(IMS_NAME_IMAGE, ps->image)) < 0 ||
	    (ps->snap && (r = ims_name_check(IMS_NAME_SNAP, ps->snap)) < 0))
		return r;
	uint64_t chunk = o->chunk_size ? o->chunk_size : IMS_CHUNK_SIZE_DEFAULT;
	if (chunk < IMS_CHUNK_SIZE_MIN || chunk > IMS_CHUNK_SIZE_MAX || (chunk & (chunk - 1)))
		return ims_error_set(-EINVAL,
				     "chunk size %" PRIu64
				     " is not a power of two between 64 KiB and 64 MiB",
				     chunk);
	ps->chunk = chunk;
	snprintf(ps->name, sizeof(ps->name), "%s/%s%s%s", ps->pool, ps->image, ps->snap ? "@" : "",
		 ps->snap ? ps->snap : "");
	ps->remove = !ps->snap && o->after != IMS_TIER_KEEP;
	return 0;
}

/* A head is pushed from a snapshot of its own: writes during the push do not tear it. */
static int push_snap_head(push *ps)
{
	const char *name = ps->name;
	int r;
	if ((r = rbd_open(ps->io, ps->image, &ps->head, NULL)) < 0)
		return ims_error_set(r, "cannot open '%s' on site '%s': %s", name,
				     ims_site_name(ps->site), ims_strerror(r));
	if (ps->remove &&
	    (r = claim_head(ps->io, ps->head, ps->pool, ps->image, name, ps->o, &ps->locked)) < 0)
		return r;
	size_t users = 1;
	if (ims_image_watchers(&users, ps->head, ps->io) == 0 && users == 0)
		drop_stale_push_snaps(ps->site, ps->pool, ps->image, ps->head, name);
	char id[17];
	if ((r = ims_random_hex(id, sizeof(id))) < 0)
		return r;
	snprintf(ps->psnap, sizeof(ps->psnap), PUSH_SNAP_PREFIX "%lld-%s", (long long)time(NULL),
		 id);
	if ((r = rbd_snap_create(ps->head, ps->psnap)) < 0)
		return ims_error_set(r, "cannot take a snapshot of '%s' to push: %s", name,
				     ims_strerror(r));
	ps->snapped = true;
	return 0;
}

/* Open what is read and map it onto the grid; refuse a manifest restore would not take. */
static int push_map(push *ps)
{
	const char *name = ps->name;
	int r = rbd_open_read_only(ps->io, ps->image, &ps->img, ps->snap ? ps->snap : ps->psnap);
	if (r < 0)
		return ims_error_set(r, "cannot open '%s' on site '%s': %s", name,
				     ims_site_name(ps->site), ims_strerror(r));
	if ((r = rbd_stat(ps->img, &ps->st, sizeof(ps->st))) < 0 ||
	    (r = rbd_get_features(ps->img, &ps->features)) < 0)
		return ims_error_set(r, "cannot stat '%s': %s", name, ims_strerror(r));
	/* an encrypted image goes as its ciphertext (it was opened without its encryption) and
	 * the manifest carries its wrapped data key, checked here to open with this site's KEK:
	 * a push of a key nobody here can unwrap would be a restore nobody can read */
	if ((r = ims_crypt_key_get(ps->wrapped, ps->img, ims_site_kek(ps->site), name)) < 0)
		return ims_error_wrap(r, "cannot push '%s'", name);
	if (r == 0)
		ps->wrapped[0] = '\0';
	if (ps->st.size == 0)
		return ims_error_set(-EINVAL, "'%s' is empty: nothing to push", name);
	ps->g.chunk = ps->chunk;
	ps->g.size = ps->st.size;
	r = rbd_diff_iterate2(ps->img, NULL, 0, ps->st.size, 1, 1, add_cells, &ps->g);
	if (ps->g.err)
		r = ps->g.err;
	if (r < 0)
		return ims_error_set(r, "cannot map the allocated extents of '%s': %s", name,
				     ims_strerror(r));
	if (ims_catalog_get(&ps->cat, ps->io, ps->image) < 0)
		ps->cat = NULL;
	ims_error_clear();
	return check_manifest_bound(name, ps->g.n, ps->cat, ps->chunk);
}

/* Upload the cells in parallel, renewing the push's lock and reporting progress meanwhile. */
static int push_cells(push *ps)
{
	pusher p = {.t = ps->t,
		    .image = ps->img,
		    .what = ps->name,
		    .o = ps->o,
		    .cells = ps->g.cells,
		    .lock_key = ps->lock,
		    .renewed = (int64_t)time(NULL)};
	int r = 0;

	pthread_mutex_init(&p.lock, NULL);
	for (size_t i = 0; i < ps->g.n; i++)
		p.bytes_total += ps->g.cells[i].len;
	ims_log_debug("pushing '%s' (%" PRIu64 " bytes, %zu cells of %" PRIu64 ") to '%s'",
		      ps->name, ps->st.size, ps->g.n, ps->chunk, ims_s3_name(ps->t->s3));
	ims_fanout_opts fo = IMS_FANOUT_OPTS_INIT;
	fo.workers = budget_workers(ps->o, PUSH_BUDGET, ps->chunk);
	fo.nitems = ps->g.n;
	fo.item = push_cell;
	fo.watch = push_watch;
	fo.watch_ms = 1000;
	fo.ctx = &p;
	/* the last report, of all the cells, comes before the manifest too, under the lock */
	if (ps->g.n && (r = ims_fanout_run(NULL, &fo)) == 0)
		r = push_watch(&p);
	for (size_t i = 0; i < MAX_WORKERS; i++)
		free(p.bufs[i].buf);
	ps->bytes_total = p.bytes_total;
	ps->bytes_sealed = p.bytes_sealed;
	ps->chunks_new = p.chunks_new;
	pthread_mutex_destroy(&p.lock);
	return r;
}

/* The manifest, written last: the cells with data, the zeros between them, the tags. */
static int push_manifest(push *ps)
{
	ims_manifest *m = &ps->m;
	const ims_catalog_entry *cat = ps->cat;
	int r;
	m->name = ps->name;
	m->pool = (char *)ps->pool;
	m->image = (char *)ps->image;
	m->snap = (char *)(ps->snap ? ps->snap : "");
	m->size = ps->st.size;
	m->features = ps->features;
	m->order = (unsigned)ps->st.order;
	m->chunk_size = ps->chunk;
	m->pushed = (int64_t)time(NULL);
	m->source = cat && cat->source ? cat->source : "";
	m->content_sha256 = cat && cat->content_sha256 ? cat->content_sha256 : "";
	m->stored_bytes = ps->bytes_sealed;
	m->wrapped_key = ps->wrapped;
	if (!(m->chunks = calloc(ps->g.n ? ps->g.n : 1, sizeof(*m->chunks))))
		return -ENOMEM;
	for (size_t i = 0; i < ps->g.n; i++) {
		const cell *gc = &ps->g.cells[i];
		if (!gc->data)
			continue;
		ims_manifest_chunk *c = &m->chunks[m->nchunks++];
		c->off = gc->off;
		c->len = gc->len;
		memcpy(c->sha256, gc->sha256, IMS_SHA256_LEN);
		ps->bytes_data += c->len;
	}
	if ((r = ims_manifest_fill_zeros(m)) < 0)
		return r;
	if (cat && cat->ntags) {
		if (!(m->tags = calloc(cat->ntags, sizeof(*m->tags))))
			return -ENOMEM;
		for (size_t i = 0; i < cat->ntags; i++)
			m->tags[i] = (ims_manifest_tag){cat->tags[i].key, cat->tags[i].value};
		m->ntags = cat->ntags;
	}
	return store_manifest(ps->t, m, false);
}

/* After the manifest is stored: remove the head if nothing changed, and mark it cold. */
static int push_remove_head(push *ps)
{
	const char *name = ps->name;
	int r;
	if ((r = check_unchanged(ps->io, ps->head, ps->psnap, ps->st.size, ps->pool, ps->image,
				 name, ps->o)) < 0)
		return r;
	rbd_close(ps->img);
	ps->img = NULL;
	if ((r = rbd_snap_remove(ps->head, ps->psnap)) < 0)
		return ims_error_set(r,
				     "'%s' was pushed but its push snapshot '%s' cannot be "
				     "removed, so it was kept: %s",
				     name, ps->psnap, ims_strerror(r));
	ps->snapped = false;
	/* the lock goes with the handle, just before the removal (which takes it itself) */
	if (ps->locked)
		rbd_lock_release(ps->head);
	ps->locked = false;
	rbd_close(ps->head);
	ps->head = NULL;
	ims_image_remove_opts ro = IMS_IMAGE_REMOVE_OPTS_INIT;
	ro.purge = ps->o->after == IMS_TIER_PURGE;
	if ((r = ims_image_remove(ps->site, ps->pool, ps->image, &ro)) < 0)
		return ims_error_set(
			r, "'%s' was pushed as cold image '%s' but could not be removed: %s", name,
			name, ims_error_last());
	ims_catalog_entry cold = {0};
	if (ps->cat)
		cold = *ps->cat;
	cold.name = (char *)ps->image;
	cold.size = ps->st.size;
	if (!cold.created)
		cold.created = ps->m.pushed;
	cold.cold_target = (char *)ims_s3_name(ps->t->s3);
	cold.cold_name = (char *)name;
	cold.cold_since = ps->m.pushed;
	return ims_catalog_put(ps->io, &cold);
}

static void push_close(push *ps)
{
	lock_drop(ps->t, ps->lock);
	free(ps->m.chunks);
	free(ps->m.zeros);
	free(ps->m.tags);
	ims_catalog_entry_free(ps->cat);
	free(ps->g.cells);
	if (ps->img)
		rbd_close(ps->img);
	if (ps->snapped && rbd_snap_remove(ps->head, ps->psnap) < 0)
		ims_log_debug("cannot remove the push snapshot '%s@%s'", ps->name, ps->psnap);
	if (ps->locked)
		rbd_lock_release(ps->head);
	if (ps->head)
		rbd_close(ps->head);
	if (ps->io)
		ims_site_ioctx_close(ps->io);
}

int ims_tier_push(ims_tier_result *out, ims_tier_target *t, ims_site *site, const char *pool,
		  const char *image, const char *snap, const ims_tier_opts *o)
{
	push ps = {.t = t, .site = site, .pool = pool, .image = image, .snap = snap, .o = o};
	int r;

	if (snap && !snap[0])
		ps.snap = NULL;
	if ((r = push_check(&ps)) < 0 || (r = ims_site_ioctx(&ps.io, site, pool)) < 0)
		goto out;
	if (!ps.snap && (r = push_snap_head(&ps)) < 0)
		goto out;
	if ((r = push_map(&ps)) < 0)
		goto out;
	/* from here until the manifest is stored, garbage collection waits */
	if ((r = push_lock(t, ps.lock, sizeof(ps.lock), ps.name, o)) < 0 ||
	    (r = push_cells(&ps)) < 0 || (r = push_manifest(&ps)) < 0)
		goto out;
	lock_drop(t, ps.lock);
	if (o->progress)
		o->progress(o->progress_ctx, ps.bytes_total, ps.bytes_total);
	if (ps.remove && (r = push_remove_head(&ps)) < 0)
		goto out;
	if (out) {
		memset(out, 0, sizeof(*out));
		snprintf(out->name, sizeof(out->name), "%s", ps.name);
		out->size = ps.st.size;
		out->chunks = ps.m.nchunks;
		out->chunks_new = ps.chunks_new;
		out->bytes_data = ps.bytes_data;
		out->bytes_sealed = ps.bytes_sealed;
		out->bytes_zero = ps.st.size - ps.bytes_data;
	}
	r = 0;
out:
	push_close(&ps);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* restore: an ims_source whose bytes are the cold image, fetched ahead in parallel */

enum { S_EMPTY = 0, S_FETCHING, S_READY };

typedef struct {
	int state;
	size_t idx;
	uint8_t *data;
} fslot;

typedef struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	ims_tier_target *t;
	const ims_manifest *m;
	fslot *slots;
	size_t window;
	size_t next; /* next chunk to fetch */
	size_t base; /* chunks below are released */
	bool stop;
	int err;
	char err_msg[IMS_ERROR_MSG_MAX];
	pthread_t threads[MAX_WORKERS];
	unsigned nthreads;
	uint64_t bytes_read; /* served to the importer */
} fetcher;

/* Fetch chunk @p i and check it: authenticated, then its SHA-256 is its name. */
static int fetch_chunk(ims_tier_target *t, const ims_manifest *m, size_t i, uint8_t **out)
{
	const ims_manifest_chunk *c = &m->chunks[i];
	char key[128];
	uint8_t *sealed = NULL, *plain = NULL, digest[IMS_SHA256_LEN];
	size_t slen = 0, plen = 0;
	int r;

	ims_manifest_chunk_key(key, sizeof(key), c->sha256);
	r = ims_s3_get(&sealed, &slen, t->s3, key,
		       (size_t)m->chunk_size + (m->chunk_size >> 4) + 65536);
	if (r < 0) {
		ims_error_set(
			r, "chunk '%s' at offset %" PRIu64 " of cold image '%s' cannot be read: %s",
			key, c->off, m->name, ims_error_last());
		goto out;
	}
	r = ims_unseal(&plain, &plen, &t->key, key, sealed, slen, c->len);
	if (r < 0) {
		ims_error_set(r, "chunk '%s' at offset %" PRIu64 " of cold image '%s' is bad: %s",
			      key, c->off, m->name, ims_error_last());
		goto out;
	}
	ims_sha256_buf(digest, plain, plen);
	if (plen != c->len || memcmp(digest, c->sha256, IMS_SHA256_LEN) != 0) {
		r = ims_error_set(-EBADMSG,
				  "chunk '%s' at offset %" PRIu64
				  " of cold image '%s' is bad: its bytes "
				  "do not hash to its name",
				  key, c->off, m->name);
		goto out;
	}
	*out = plain;
	plain = NULL;
out:
	free(sealed);
	free(plain);
	return r;
}

static void *fetch_worker(void *arg)
{
	fetcher *f = arg;
	pthread_mutex_lock(&f->lock);
	for (;;) {
		while (!f->stop && !f->err && f->next < f->m->nchunks &&
		       f->next >= f->base + f->window)
			pthread_cond_wait(&f->cond, &f->lock);
		if (f->stop || f->err || f->next >= f->m->nchunks)
			break;
		size_t i = f->next++;
		fslot *s = &f->slots[i % f->window];
		s->idx = i;
		s->state = S_FETCHING;
		pthread_mutex_unlock(&f->lock);
		uint8_t *data = NULL;
		int r = fetch_chunk(f->t, f->m, i, &data);
		pthread_mutex_lock(&f->lock);
		if (r < 0) {
			if (!f->err) {
				f->err = r;
				snprintf(f->err_msg, sizeof(f->err_msg), "%s", ims_error_last());
			}
			s->state = S_EMPTY;
		} else {
			s->data = data;
			s->state = S_READY;
		}
		pthread_cond_broadcast(&f->cond);
	}
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

/* Release every chunk below @p upto whose fetch is done. */
static void release_locked(fetcher *f, size_t upto)
{
	while (f->base < upto) {
		fslot *s = &f->slots[f->base % f->window];
		if (f->base < f->next) {
			while (s->state == S_FETCHING)
				pthread_cond_wait(&f->cond, &f->lock);
			free(s->data);
			s->data = NULL;
			s->state = S_EMPTY;
		}
		f->base++;
	}
	pthread_cond_broadcast(&f->cond);
}

/* The first chunk that ends after @p pos (m->nchunks if none). */
static size_t chunk_after(const ims_manifest *m, uint64_t pos)
{
	size_t lo = 0, hi = m->nchunks;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->chunks[mid].off + m->chunks[mid].len <= pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Where the zeros are (ims_source.zeros): outside the chunks. The importer then skips them,
 * without reading or scanning: a restore costs what the data costs. */
static int fetcher_zeros(void *ctx, uint64_t off, uint64_t *len, int *zero)
{
	fetcher *f = ctx;
	const ims_manifest *m = f->m;
	if (off >= m->size)
		return -EINVAL;
	size_t i = chunk_after(m, off);
	if (i == m->nchunks || m->chunks[i].off > off) {
		*zero = 1;
		*len = (i == m->nchunks ? m->size : m->chunks[i].off) - off;
		return 0;
	}
	/* data: to the end of this run of adjacent chunks */
	uint64_t end = m->chunks[i].off + m->chunks[i].len;
	while (++i < m->nchunks && m->chunks[i].off == end)
		end += m->chunks[i].len;
	*zero = 0;
	*len = end - off;
	return 0;
}

static ssize_t fetcher_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	fetcher *f = ctx;
	const ims_manifest *m = f->m;
	uint8_t *out = buf;
	size_t done = 0;

	if (off >= m->size)
		return 0;
	if (len > m->size - off)
		len = (size_t)(m->size - off);
	pthread_mutex_lock(&f->lock);
	f->bytes_read += len;
	pthread_mutex_unlock(&f->lock);
	while (done < len) {
		uint64_t pos = off + done;
		size_t lo = chunk_after(m, pos);
		if (lo == m->nchunks || m->chunks[lo].off > pos) {
			uint64_t gap_end = lo == m->nchunks ? m->size : m->chunks[lo].off;
			size_t n =
				(size_t)(gap_end - pos < len - done ? gap_end - pos : len - done);
			memset(out + done, 0, n);
			done += n;
			continue;
		}
		const ims_manifest_chunk *c = &m->chunks[lo];
		size_t in = (size_t)(pos - c->off);
		size_t n = c->len - in < len - done ? c->len - in : len - done;
		pthread_mutex_lock(&f->lock);
		if (lo < f->base) {
			/* read again behind the window (not in the importer's order): fetch it here
			 */
			pthread_mutex_unlock(&f->lock);
			uint8_t *data = NULL;
			int r = fetch_chunk(f->t, m, lo, &data);
			if (r < 0)
				return r;
			memcpy(out + done, data + in, n);
			free(data);
			done += n;
			continue;
		}
		release_locked(f, lo);
		fslot *s = &f->slots[lo % f->window];
		while (!f->err && !(lo < f->next && s->idx == lo && s->state == S_READY))
			pthread_cond_wait(&f->cond, &f->lock);
		if (!(lo < f->next && s->idx == lo && s->state == S_READY)) {
			int r = f->err;
			ims_error_set(r, "%s", f->err_msg);
			pthread_mutex_unlock(&f->lock);
			return r;
		}
		memcpy(out + done, s->data + in, n);
		if (in + n == c->len)
			release_locked(f, lo + 1);
		pthread_mutex_unlock(&f->lock);
		done += n;
	}
	return (ssize_t)len;
}

static void fetcher_stop(fetcher *f)
{
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	for (unsigned i = 0; i < f->nthreads; i++)
		pthread_join(f->threads[i], NULL);
	for (size_t i = 0; f->slots && i < f->window; i++)
		free(f->slots[i].data);
	free(f->slots);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
}

/* RBD features a new image may be created with: layering, exclusive-lock, object-map,
 * fast-diff, deep-flatten, journaling. Others (operations, migrating...) are the cluster's. */
#define CREATABLE_FEATURES (1ull | 4ull | 8ull | 16ull | 32ull | 64ull)

int ims_tier_restore(ims_tier_result *out, ims_tier_target *t, ims_site *site, const char *name,
		     const char *pool, const char *image, const ims_tier_opts *o)
{
	ims_manifest *m = NULL;
	fetcher f;
	bool fetching = false;
	rados_ioctx_t io = NULL;
	ims_catalog_entry *cat = NULL;
	int r;

	memset(&f, 0, sizeof(f));
	if ((r = check_opts(o)) < 0)
		return r;
	if ((r = ims_tier_manifest_get(&m, t, name)) < 0)
		return r;
	char what[1100];
	snprintf(what, sizeof(what), "cold image '%s'", name);
	/* before any download: an encrypted image's key must open here (not shredded, this KEK) */
	if (m->wrapped_key[0] &&
	    (r = ims_crypt_check_wrapped(m->wrapped_key, ims_site_kek(site), what)) < 0)
		goto out;
	if (!pool)
		pool = m->pool;
	if (!image)
		image = m->image;
	if ((r = ims_name_check(IMS_NAME_POOL, pool)) < 0 ||
	    (r = ims_name_check(IMS_NAME_IMAGE, image)) < 0)
		goto out;
	/* before any download: the name must be free */
	if ((r = ims_image_exists(site, pool, image)) != 0) {
		if (r > 0)
			r = ims_error_set(-EEXIST, "image '%s/%s' already exists on site '%s'",
					  pool, image, ims_site_name(site));
		goto out;
	}

	unsigned nworkers = budget_workers(o, FETCH_BUDGET, m->chunk_size);
	pthread_mutex_init(&f.lock, NULL);
	pthread_cond_init(&f.cond, NULL);
	fetching = true;
	f.t = t;
	f.m = m;
	f.window = (size_t)nworkers + WINDOW_SPARE;
	if (!(f.slots = calloc(f.window, sizeof(*f.slots)))) {
		r = -ENOMEM;
		goto out;
	}
	for (; f.nthreads < nworkers; f.nthreads++)
		if (pthread_create(&f.threads[f.nthreads], NULL, fetch_worker, &f) != 0)
			break;
	if (!f.nthreads && m->nchunks) {
		r = ims_error_set(-EAGAIN, "cannot start restore threads");
		goto out;
	}

	ims_source src = {
		.pread = fetcher_pread, .size = m->size, .ctx = &f, .zeros = fetcher_zeros};
	ims_transfer_opts to = IMS_TRANSFER_OPTS_INIT;
	to.format = IMS_FORMAT_RAW;
	to.raw_as_declared = true; /* pushed as a raw disk: its first bytes may look like a qcow2 */
	to.create.features = m->features & CREATABLE_FEATURES;
	to.create.order = m->order;
	to.concurrency = opt_workers(o);
	to.inflight_bytes = IMPORTER_BUDGET;
	to.progress = o->progress;
	to.progress_ctx = o->progress_ctx;
	to.source_name = what;
	to.wrapped_key = m->wrapped_key; /* the chunks are its ciphertext: it keeps its key */
	ims_transfer_result tr;
	if ((r = ims_image_import(&tr, site, pool, image, &src, &to)) < 0)
		goto out;

	/* the catalog says where it came from, and the tags come back */
	if (ims_site_ioctx(&io, site, pool) == 0 && ims_catalog_get(&cat, io, image) == 0 &&
	    m->source[0]) {
		free(cat->source);
		cat->source = strdup(m->source);
		ims_catalog_put(io, cat);
	}
	for (size_t i = 0; i < m->ntags; i++)
		if (ims_image_tag_set(site, pool, image, m->tags[i].key, m->tags[i].value) < 0)
			ims_log_warning("restored '%s/%s' without its tag '%s': %s", pool, image,
					m->tags[i].key, ims_error_last());
	ims_error_clear();
	if (out) {
		memset(out, 0, sizeof(*out));
		snprintf(out->name, sizeof(out->name), "%s", name);
		out->size = m->size;
		out->chunks = m->nchunks;
		for (size_t i = 0; i < m->nchunks; i++)
			out->bytes_data += m->chunks[i].len;
		out->bytes_zero = m->size - out->bytes_data;
		out->bytes_read = f.bytes_read;
	}
	r = 0;
out:
	if (fetching)
		fetcher_stop(&f);
	ims_catalog_entry_free(cat);
	if (io)
		ims_site_ioctx_close(io);
	ims_manifest_free(m);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* listing */

void ims_tier_cold_list_free(ims_tier_cold *list, size_t count)
{
	for (size_t i = 0; list && i < count; i++)
		free(list[i].name);
	free(list);
}

int ims_tier_list(ims_tier_cold **out, size_t *count, ims_tier_target *t)
{
	keylist l = {0};
	ims_tier_cold *list = NULL;
	int r = ims_s3_list(t->s3, "manifests/", collect_key, &l);
	if (r < 0)
		goto out;
	if (!(list = calloc(l.n ? l.n : 1, sizeof(*list)))) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < l.n; i++) {
		ims_manifest *m = NULL;
		const char *name = l.keys[i] + strlen("manifests/");
		if (!(list[i].name = strdup(name))) {
			ims_tier_cold_list_free(list, i);
			list = NULL;
			r = -ENOMEM;
			goto out;
		}
		if (ims_tier_manifest_get(&m, t, name) < 0) {
			list[i].bad = true;
			continue;
		}
		list[i].size = m->size;
		list[i].pushed = m->pushed;
		list[i].chunks = m->nchunks;
		ims_manifest_free(m);
	}
	ims_error_clear();
	*out = list;
	*count = l.n;
	list = NULL;
out:
	free(list);
	keylist_free(&l);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* scrub and garbage collection */

typedef struct {
	uint8_t sha256[IMS_SHA256_LEN];
	uint32_t len;
	const char *owner; /* a cold image that references it (in names[]) */
} ref;

static int cmp_ref(const void *a, const void *b)
{
	return memcmp(((const ref *)a)->sha256, ((const ref *)b)->sha256, IMS_SHA256_LEN);
}

/* A scrub's checks: the references handed out by the fan-out. */
typedef struct {
	pthread_mutex_t lock; /* the counters and the result */
	ims_tier_target *t;
	ref *refs;
	size_t n, done;
	bool deep;
	uint64_t chunk_max;
	ims_tier_scrub_result *res;
	const ims_tier_opts *o;
} scrubber;

static void report_locked(ims_tier_scrub_result *res, const char *what)
{
	size_t used = strlen(res->report);
	if (used + 8 >= sizeof(res->report))
		return;
	snprintf(res->report + used, sizeof(res->report) - used, "%s%s", used ? "; " : "", what);
}

/* Check one chunk (ims_fanout_opts.item); a bad one goes into the report, not the error. */
static int scrub_chunk(void *ctx, unsigned worker, size_t i)
{
	scrubber *s = ctx;
	ref *rf = &s->refs[i];
	char key[128], why[IMS_ERROR_MSG_MAX + 200];
	int r;
	(void)worker;
	ims_manifest_chunk_key(key, sizeof(key), rf->sha256);
	if (!s->deep) {
		r = ims_s3_head(NULL, NULL, s->t->s3, key);
	} else {
		uint8_t *sealed = NULL, *plain = NULL, digest[IMS_SHA256_LEN];
		size_t slen = 0, plen = 0;
		r = ims_s3_get(&sealed, &slen, s->t->s3, key,
			       s->chunk_max + (s->chunk_max >> 4) + 65536);
		if (r == 0)
			r = ims_unseal(&plain, &plen, &s->t->key, key, sealed, slen, rf->len);
		if (r == 0) {
			ims_sha256_buf(digest, plain, plen);
			if (plen != rf->len || memcmp(digest, rf->sha256, IMS_SHA256_LEN) != 0)
				r = ims_error_set(-EBADMSG, "its bytes do not hash to its name");
		}
		free(sealed);
		free(plain);
	}
	pthread_mutex_lock(&s->lock);
	s->done++;
	if (r < 0) {
		s->res->chunks_bad++;
		snprintf(why, sizeof(why), "%s (in '%s'): %s", key, rf->owner,
			 r == -ENOENT ? "missing" : ims_error_last());
		report_locked(s->res, why);
		ims_log_debug("scrub: %s", why);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int scrub_watch(void *ctx)
{
	scrubber *s = ctx;
	pthread_mutex_lock(&s->lock);
	size_t done = s->done, n = s->n;
	pthread_mutex_unlock(&s->lock);
	if (done < n && s->o->progress && s->o->progress(s->o->progress_ctx, done, n) != 0)
		return ims_error_set(-ECANCELED, "scrub cancelled");
	return 0;
}

static int gc(ims_tier_target *t, const ref *refs, size_t nrefs, const ims_tier_opts *o,
	      ims_tier_scrub_result *res, const char *lock, int64_t *renewed)
{
	keylist l = {0};
	int64_t now = (int64_t)time(NULL);
	int64_t grace = (int64_t)opt_grace(o);
	int r = ims_s3_list(t->s3, "chunks/", collect_key, &l);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < l.n; i++) {
		const char *hex = l.keys[i] + strlen("chunks/");
		ref probe;
		uint8_t dummy[IMS_SHA256_LEN];
		(void)dummy;
		if (strlen(hex) != 64)
			continue; /* not ours */
		bool ok = true;
		for (size_t k = 0; k < IMS_SHA256_LEN && ok; k++) {
			unsigned v;
			if (sscanf(hex + 2 * k, "%2x", &v) != 1)
				ok = false;
			probe.sha256[k] = (uint8_t)v;
		}
		if (!ok)
			continue;
		if (bsearch(&probe, refs, nrefs, sizeof(*refs), cmp_ref))
			continue;
		res->garbage++;
		/* the listing's time may be old news: a push may have refreshed it since */
		int64_t mtime = l.mtimes[i];
		if (now - mtime >= grace && ims_s3_head(NULL, &mtime, t->s3, l.keys[i]) < 0)
			continue;
		if (now - mtime < grace) {
			res->garbage_young++;
			continue;
		}
		if ((r = lock_renew(t, lock, renewed)) < 0 ||
		    (r = ims_s3_delete(t->s3, l.keys[i])) < 0)
			goto out;
		res->deleted++;
	}
	r = 0;
out:
	keylist_free(&l);
	return r;
}

/* What the manifests reference: chunks sorted by name, unique, with a cold image using each. */
typedef struct {
	keylist l;
	ref *refs;
	size_t n;
	char **owners; /* one per manifest key of l; NULL for a bad one */
	uint64_t chunk_max;
} refset;

static void refset_free(refset *rs)
{
	for (size_t i = 0; rs->owners && i < rs->l.n; i++)
		free(rs->owners[i]);
	free(rs->owners);
	free(rs->refs);
	keylist_free(&rs->l);
	memset(rs, 0, sizeof(*rs));
}

/* Read every manifest; count them (and the bad ones, reported) in @p res. */
static int read_refs(refset *rs, ims_tier_target *t, ims_tier_scrub_result *res)
{
	size_t cap = 0;
	int r;
	memset(rs, 0, sizeof(*rs));
	rs->chunk_max = IMS_CHUNK_SIZE_MIN;
	if ((r = ims_s3_list(t->s3, "manifests/", collect_key, &rs->l)) < 0)
		return r;
	if (!(rs->owners = calloc(rs->l.n ? rs->l.n : 1, sizeof(*rs->owners))))
		return -ENOMEM;
	for (size_t i = 0; i < rs->l.n; i++) {
		ims_manifest *m = NULL;
		const char *name = rs->l.keys[i] + strlen("manifests/");
		res->manifests++;
		if (ims_tier_manifest_get(&m, t, name) < 0) {
			char why[IMS_ERROR_MSG_MAX + 64];
			res->manifests_bad++;
			snprintf(why, sizeof(why), "%s: %s", rs->l.keys[i], ims_error_last());
			report_locked(res, why);
			continue;
		}
		rs->owners[i] = m->name;
		m->name = NULL;
		if (m->chunk_size > rs->chunk_max)
			rs->chunk_max = m->chunk_size;
		if (ims_array_grow(rs->refs, cap, rs->n + m->nchunks, 1024) < 0) {
			ims_manifest_free(m);
			return -ENOMEM;
		}
		for (size_t k = 0; k < m->nchunks; k++) {
			memcpy(rs->refs[rs->n].sha256, m->chunks[k].sha256, IMS_SHA256_LEN);
			rs->refs[rs->n].len = m->chunks[k].len;
			rs->refs[rs->n].owner = rs->owners[i];
			rs->n++;
		}
		ims_manifest_free(m);
	}
	ims_error_clear();
	if (rs->n)
		qsort(rs->refs, rs->n, sizeof(*rs->refs), cmp_ref);
	size_t uniq = 0;
	for (size_t i = 0; i < rs->n; i++)
		if (!uniq ||
		    memcmp(rs->refs[uniq - 1].sha256, rs->refs[i].sha256, IMS_SHA256_LEN) != 0)
			rs->refs[uniq++] = rs->refs[i];
	rs->n = uniq;
	return 0;
}

static int gc_skipped(const ims_tier_scrub_result *res)
{
	return ims_error_set(-EBADMSG,
			     "garbage collection skipped: %" PRIu64
			     " manifest%s could not be read (%s)",
			     res->manifests_bad, res->manifests_bad == 1 ? "" : "s", res->report);
}

/*
 * Garbage collection under its lock. The manifests are read again once the lock is held: a
 * push that stores its manifest after that read holds its own lock now, and then nothing is
 * deleted; the scrub before ran without the lock, so pushes wait only for this part.
 */
static int gc_locked(ims_tier_target *t, const ims_tier_opts *o, ims_tier_scrub_result *res)
{
	char lock[64] = "";
	int64_t renewed = (int64_t)time(NULL);
	ims_tier_scrub_result again;
	refset rs = {0};
	int r;
	memset(&again, 0, sizeof(again));
	if ((r = gc_lock(t, lock, sizeof(lock))) < 0)
		return r;
	if ((r = read_refs(&rs, t, &again)) < 0)
		goto out;
	if (again.manifests_bad) {
		r = gc_skipped(&again);
		goto out;
	}
	r = gc(t, rs.refs, rs.n, o, res, lock, &renewed);
out:
	refset_free(&rs);
	lock_drop(t, lock);
	return r;
}

int ims_tier_scrub(ims_tier_scrub_result *out, ims_tier_target *t, bool deep, bool do_gc,
		   const ims_tier_opts *o)
{
	ims_tier_scrub_result res;
	refset rs = {0};
	scrubber s;
	int r;

	memset(&res, 0, sizeof(res));
	memset(&s, 0, sizeof(s));
	if ((r = check_opts(o)) < 0)
		return r;
	if ((r = read_refs(&rs, t, &res)) < 0)
		goto out;
	res.chunks = rs.n;

	pthread_mutex_init(&s.lock, NULL);
	s.t = t;
	s.refs = rs.refs;
	s.n = rs.n;
	s.deep = deep;
	s.chunk_max = rs.chunk_max;
	s.res = &res;
	s.o = o;
	ims_fanout_opts fo = IMS_FANOUT_OPTS_INIT;
	fo.workers = opt_workers(o);
	fo.nitems = rs.n;
	fo.item = scrub_chunk;
	fo.watch = scrub_watch;
	fo.ctx = &s;
	if (rs.n)
		r = ims_fanout_run(NULL, &fo);
	pthread_mutex_destroy(&s.lock);
	if (r < 0)
		goto out;
	if (do_gc) {
		if (res.manifests_bad) {
			r = gc_skipped(&res);
			goto out;
		}
		if ((r = gc_locked(t, o, &res)) < 0)
			goto out;
	}
	if (o->progress)
		o->progress(o->progress_ctx, rs.n, rs.n);
	*out = res;
	r = 0;
out:
	refset_free(&rs);
	return r;
}

int ims_tier_cold_target(char *target, size_t len, ims_site *site, const char *pool,
			 const char *image)
{
	rados_ioctx_t io;
	ims_catalog_entry *e = NULL;
	int r = ims_site_ioctx(&io, site, pool);
	if (r < 0)
		return r;
	r = ims_catalog_get(&e, io, image);
	ims_site_ioctx_close(io);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	r = e->cold_target && e->cold_target[0];
	if (r)
		snprintf(target, len, "%s", e->cold_target);
	ims_catalog_entry_free(e);
	return r;
}

int ims_tier_cold_drop(ims_site *site, const char *pool, const char *image)
{
	char target[IMS_NAME_MAX + 1];
	rados_ioctx_t io;
	int r = ims_tier_cold_target(target, sizeof(target), site, pool, image);
	if (r <= 0)
		return r < 0 ? r
			     : ims_error_set(-ENOENT, "no cold image '%s/%s' in the catalog", pool,
					     image);
	if ((r = ims_site_ioctx(&io, site, pool)) < 0)
		return r;
	r = ims_catalog_remove(io, image);
	ims_site_ioctx_close(io);
	return r;
}
