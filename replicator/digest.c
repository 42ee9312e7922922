/* replicator/digest.c: digests of snapshots in a hash-chained log in RADOS, their verify, and
 * the queue that digests off the path of the work that made the snapshot. */
#include "replicator/digest.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

#include "common/array.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/fanout.h"
#include "common/json.h"
#include "common/log.h"
#include "common/threads.h"
#include "replicator/replicator_internal.h"
#include "store/group.h"
#include "store/omap.h"
#include "store/snap.h"

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* One object's fingerprint: 128 bits of SHA-256, hex. */
typedef struct {
	bool present;
	uint64_t len;
	char sum[33];
} fp;

/* ---------------------------------------------------------------------------------------- */
/* computing a digest */

typedef struct {
	ims_repl__snapview *v;
	ims_repl__snapview_info info;
	fp *objs;
	uint64_t nobj;
} digester;

static void fingerprint(fp *out, const void *data, size_t len, uint64_t objlen)
{
	uint8_t d[IMS_SHA256_LEN];
	char hex[IMS_SHA256_HEX_LEN];
	ims_sha256_buf(d, data, len);
	ims_sha256_hex(hex, d);
	memcpy(out->sum, hex, 32);
	out->sum[32] = '\0';
	out->len = objlen;
	out->present = true;
}

static int digest_item(void *ctx, unsigned worker, size_t i)
{
	digester *dg = ctx;
	uint64_t off = (uint64_t)i * dg->info.obj_size;
	uint64_t elen =
		dg->info.size - off < dg->info.obj_size ? dg->info.size - off : dg->info.obj_size;
	int r;
	(void)worker;
	if (!dg->info.simple || dg->info.parent) {
		/* striping or a parent: the object is not the extent; read and hash the bytes */
		char *buf = malloc(elen ? elen : 1);
		if (!buf)
			return -ENOMEM;
		if ((r = ims_repl__snapview_read(buf, dg->v, off, (size_t)elen)) == 0)
			fingerprint(&dg->objs[i], buf, (size_t)elen, elen);
		free(buf);
		return r;
	}
	size_t nsums = (size_t)(dg->info.obj_size / IMS_DIGEST_CHUNK) + 1;
	uint64_t *sums = calloc(nsums + 1, sizeof(*sums)), len = 0;
	if (!sums)
		return -ENOMEM;
	r = ims_repl__snapview_object(&len, sums + 1, dg->v, i, IMS_DIGEST_CHUNK);
	if (r == -ENOENT) {
		r = 0; /* absent: reads as zeros, no fingerprint */
	} else if (r == 0) {
		sums[0] = len;
		size_t n = (size_t)((len + IMS_DIGEST_CHUNK - 1) / IMS_DIGEST_CHUNK);
		fingerprint(&dg->objs[i], sums, (n + 1) * sizeof(*sums), len);
	} else {
		ims_error_set(r, "cannot checksum object %zu: %s", i, ims_strerror(r));
	}
	free(sums);
	return r;
}

/* The id of @p img's snapshot of the group snapshot @p group@@p cut. @returns -ENOENT. */
static int group_snap_id(uint64_t *id, rbd_image_t img, const char *group, const char *cut)
{
	rbd_snap_info_t *v = NULL;
	int max = 16, n, r = -ENOENT;
	for (;;) {
		if (!(v = calloc((size_t)max, sizeof(*v))))
			return -ENOMEM;
		if ((n = rbd_snap_list(img, v, &max)) != -ERANGE)
			break;
		free(v);
	}
	for (int i = 0; n > 0 && i < n && r == -ENOENT; i++) {
		rbd_snap_namespace_type_t t;
		rbd_snap_group_namespace_t g;
		if (rbd_snap_get_namespace_type(img, v[i].id, &t) < 0 ||
		    t != RBD_SNAP_NAMESPACE_TYPE_GROUP)
			continue;
		memset(&g, 0, sizeof(g));
		if (rbd_snap_get_group_namespace(img, v[i].id, &g, sizeof(g)) < 0)
			continue;
		if (g.group_name && g.group_snap_name && strcmp(g.group_name, group) == 0 &&
		    strcmp(g.group_snap_name, cut) == 0) {
			*id = v[i].id;
			r = 0;
		}
		rbd_snap_group_namespace_cleanup(&g, sizeof(g));
	}
	if (n > 0)
		rbd_snap_list_end(v);
	free(v);
	return n < 0 ? n : r;
}

/* The id of the member snapshot "GROUP@CUT" of @p pool/@p image (IMS_DIGEST_GROUP_SEP). */
static int member_snap_id(uint64_t *id, ims_site *site, const char *pool, const char *image,
			  const char *snap)
{
	char group[IMS_NAME_MAX + 1];
	const char *at = strchr(snap, IMS_DIGEST_GROUP_SEP);
	rados_ioctx_t io = NULL;
	rbd_image_t img = NULL;
	int r;
	if (!at || (size_t)(at - snap) >= sizeof(group))
		return -EINVAL;
	snprintf(group, sizeof(group), "%.*s", (int)(at - snap), snap);
	if ((r = ims_site_ioctx(&io, site, pool)) < 0)
		return r;
	if ((r = rbd_open_read_only(io, image, &img, NULL)) == 0) {
		r = group_snap_id(id, img, group, at + 1);
		rbd_close(img);
	}
	ims_site_ioctx_close(io);
	return r;
}

int ims_digest_member_name(char *buf, size_t len, ims_site *site, const char *pool,
			   const char *image, const char *snap)
{
	rados_ioctx_t io = NULL;
	rbd_image_t img = NULL;
	rbd_group_info_t gi;
	int r;
	if ((r = ims_site_ioctx(&io, site, pool)) < 0)
		return r;
	if ((r = rbd_open_read_only(io, image, &img, NULL)) == 0) {
		memset(&gi, 0, sizeof(gi));
		if ((r = rbd_get_group(img, &gi, sizeof(gi))) == 0) {
			if (!gi.name || !gi.name[0])
				r = -ENOENT;
			else if ((size_t)snprintf(buf, len, "%s%c%s", gi.name, IMS_DIGEST_GROUP_SEP,
						  snap) >= len)
				r = -ENAMETOOLONG;
			rbd_group_info_cleanup(&gi, sizeof(gi));
		}
		rbd_close(img);
	}
	ims_site_ioctx_close(io);
	return r;
}

/* The name @p snap of @p pool/@p image is digested under: itself, or "GROUP@SNAP" when it is
 * no user snapshot of the image but its group has a snapshot of that name. */
static void effective_name(char *out, size_t len, ims_site *site, const char *pool,
			   const char *image, const char *snap)
{
	rados_ioctx_t io = NULL;
	rbd_image_t img = NULL;
	bool missing = false;
	uint64_t id;
	snprintf(out, len, "%s", snap);
	if (strchr(snap, IMS_DIGEST_GROUP_SEP) || ims_site_ioctx(&io, site, pool) < 0)
		return;
	if (rbd_open_read_only(io, image, &img, NULL) == 0) {
		missing = rbd_snap_get_id(img, snap, &id) == -ENOENT;
		rbd_close(img);
	}
	ims_site_ioctx_close(io);
	char name[IMS_NAME_MAX + 1];
	if (missing && ims_digest_member_name(name, sizeof(name), site, pool, image, snap) == 0 &&
	    member_snap_id(&id, site, pool, image, name) == 0)
		snprintf(out, len, "%s", name);
	ims_error_clear();
}

/* The digest of @p pool/@p image@@p snap: one fingerprint per object. */
static int compute(digester *dg, ims_site *site, const char *pool, const char *image,
		   const char *snap)
{
	uint64_t id = 0;
	int r;
	memset(dg, 0, sizeof(*dg));
	if (strchr(snap, IMS_DIGEST_GROUP_SEP) &&
	    (r = member_snap_id(&id, site, pool, image, snap)) < 0)
		return r == -ENOENT
			       ? ims_error_set(r, "'%s/%s' has no snapshot of group snapshot '%s'",
					       pool, image, snap)
			       : ims_error_set(r, "cannot list the snapshots of '%s/%s': %s", pool,
					       image, ims_strerror(r));
	if ((r = ims_repl__snapview_open(&dg->v, &dg->info, site, pool, image, snap, id)) < 0)
		return r;
	dg->nobj = (dg->info.size + dg->info.obj_size - 1) / dg->info.obj_size;
	if (dg->nobj && !(dg->objs = calloc((size_t)dg->nobj, sizeof(*dg->objs))))
		return -ENOMEM;
	ims_fanout_opts fo = IMS_FANOUT_OPTS_INIT;
	fo.workers = dg->nobj < 8 ? (unsigned)(dg->nobj ? dg->nobj : 1) : 8;
	fo.nitems = (size_t)dg->nobj;
	fo.item = digest_item;
	fo.ctx = dg;
	if (dg->nobj && (r = ims_fanout_run(NULL, &fo)) < 0)
		return r;
	return 0;
}

static void digester_free(digester *dg)
{
	ims_repl__snapview_close(dg->v);
	free(dg->objs);
	memset(dg, 0, sizeof(*dg));
}

/* The object list as text: "OBJNO LEN SUM\n" for each present object. */
static char *list_text(size_t *len, const fp *objs, uint64_t nobj)
{
	size_t cap = 64 + (size_t)nobj * 64, n = 0;
	char *t = malloc(cap);
	if (!t)
		return NULL;
	t[0] = '\0';
	for (uint64_t i = 0; i < nobj; i++) {
		if (!objs[i].present)
			continue;
		n += (size_t)snprintf(t + n, cap - n, "%" PRIu64 " %" PRIu64 " %s\n", i,
				      objs[i].len, objs[i].sum);
	}
	*len = n;
	return t;
}

/* ---------------------------------------------------------------------------------------- */
/* the log */

static void entry_hash(char out[IMS_SHA256_HEX_LEN], const ims_digest_entry *e)
{
	char *s = NULL;
	uint8_t d[IMS_SHA256_LEN];
	int n = asprintf(&s,
			 "imgstore-digest-v1\n%" PRIu64 "\n%s\n%s\n%s\n%" PRIu64 "\n%" PRIu64
			 "\n%" PRIu64 "\n%u\n%" PRId64 "\n%s\n%" PRIu64 "\n%s\n%s\n",
			 e->seq, e->pool, e->image, e->snap, e->snap_id, e->size, e->obj_size,
			 IMS_DIGEST_CHUNK, e->at_ms, e->why, e->nobjects, e->list_sha, e->prev);
	if (n < 0) {
		snprintf(out, IMS_SHA256_HEX_LEN, "%s", "out-of-memory");
		return;
	}
	ims_sha256_buf(d, s, (size_t)n);
	ims_sha256_hex(out, d);
	free(s);
}

static json_object *entry_json(const ims_digest_entry *e)
{
	json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	json_object_object_add(o, "seq", json_object_new_int64((int64_t)e->seq));
	json_object_object_add(o, "pool", json_object_new_string(e->pool));
	json_object_object_add(o, "image", json_object_new_string(e->image));
	json_object_object_add(o, "snap", json_object_new_string(e->snap));
	json_object_object_add(o, "snap_id", json_object_new_int64((int64_t)e->snap_id));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)e->size));
	json_object_object_add(o, "object_size", json_object_new_int64((int64_t)e->obj_size));
	json_object_object_add(o, "chunk", json_object_new_int64(IMS_DIGEST_CHUNK));
	json_object_object_add(o, "at_ms", json_object_new_int64(e->at_ms));
	json_object_object_add(o, "why", json_object_new_string(e->why));
	json_object_object_add(o, "objects", json_object_new_int64((int64_t)e->nobjects));
	json_object_object_add(o, "list_sha256", json_object_new_string(e->list_sha));
	json_object_object_add(o, "prev", json_object_new_string(e->prev));
	json_object_object_add(o, "hash", json_object_new_string(e->hash));
	return o;
}

/* Add entry @p e and the head naming it (its seq and hash) to @p op: the log's omap. */
static int set_entry_and_head(rados_write_op_t op, const ims_digest_entry *e)
{
	json_object *ej = entry_json(e), *hj = json_object_new_object();
	int r = -ENOMEM;
	if (ej && hj) {
		json_object_object_add(hj, "seq", json_object_new_int64((int64_t)e->seq));
		json_object_object_add(hj, "hash", json_object_new_string(e->hash));
		char key[32];
		snprintf(key, sizeof(key), "%020" PRIu64, e->seq);
		const char *keys[2] = {key, "head"};
		const char *vals[2] = {json_object_to_json_string_ext(ej, JSON_C_TO_STRING_PLAIN),
				       json_object_to_json_string_ext(hj, JSON_C_TO_STRING_PLAIN)};
		size_t klens[2] = {strlen(keys[0]), strlen(keys[1])};
		size_t lens[2] = {strlen(vals[0]), strlen(vals[1])};
		rados_write_op_omap_set2(op, keys, vals, klens, lens, 2); /* copied into the op */
		r = 0;
	}
	json_object_put(ej);
	json_object_put(hj);
	return r;
}

static void entry_decode(ims_digest_entry *e, json_object *o)
{
	memset(e, 0, sizeof(*e));
	e->seq = (uint64_t)ims_json_i64(o, "seq");
	ims_json_str(e->pool, sizeof(e->pool), o, "pool");
	ims_json_str(e->image, sizeof(e->image), o, "image");
	ims_json_str(e->snap, sizeof(e->snap), o, "snap");
	e->snap_id = (uint64_t)ims_json_i64(o, "snap_id");
	e->size = (uint64_t)ims_json_i64(o, "size");
	e->obj_size = (uint64_t)ims_json_i64(o, "object_size");
	e->at_ms = ims_json_i64(o, "at_ms");
	ims_json_str(e->why, sizeof(e->why), o, "why");
	e->nobjects = (uint64_t)ims_json_i64(o, "objects");
	ims_json_str(e->list_sha, sizeof(e->list_sha), o, "list_sha256");
	ims_json_str(e->prev, sizeof(e->prev), o, "prev");
	ims_json_str(e->hash, sizeof(e->hash), o, "hash");
}

static void list_object(char *buf, size_t len, uint64_t seq)
{
	snprintf(buf, len, "imgstore.digest.%020" PRIu64, seq);
}

/* Take the log's append lock, a few seconds at most. */
static int lock_log(rados_ioctx_t io, const char *cookie)
{
	struct timeval tv = {30, 0};
	int r = -EBUSY;
	for (int i = 0; i < 100; i++) {
		r = rados_lock_exclusive(io, IMS_DIGEST_LOG, IMS_DIGEST_LOCK, cookie,
					 "digest log append", &tv, 0);
		if (r != -EBUSY && r != -EEXIST)
			break;
		usleep(100 * 1000);
	}
	return r < 0 ? ims_error_set(r, "cannot lock the digest log: %s", ims_strerror(r)) : 0;
}

int ims_digest_record(ims_digest_entry *out, ims_site *site, const char *records_pool,
		      const char *pool, const char *image, const char *snap, const char *why)
{
	digester dg;
	ims_digest_entry e;
	rados_ioctx_t io = NULL;
	char *text = NULL, *head = NULL, cookie[64], obj[64];
	size_t tlen = 0, hlen = 0;
	bool locked = false;
	uint8_t d[IMS_SHA256_LEN];
	int r;

	memset(&e, 0, sizeof(e));
	if ((r = compute(&dg, site, pool, image, snap)) < 0)
		goto out;
	r = -ENOMEM;
	if (!(text = list_text(&tlen, dg.objs, dg.nobj)))
		goto out;
	snprintf(e.pool, sizeof(e.pool), "%s", pool);
	snprintf(e.image, sizeof(e.image), "%s", image);
	snprintf(e.snap, sizeof(e.snap), "%s", snap);
	snprintf(e.why, sizeof(e.why), "%s", why ? why : "manual");
	e.snap_id = dg.info.snap_id;
	e.size = dg.info.size;
	e.obj_size = dg.info.obj_size;
	for (uint64_t i = 0; i < dg.nobj; i++)
		e.nobjects += dg.objs[i].present;
	ims_sha256_buf(d, text, tlen);
	ims_sha256_hex(e.list_sha, d);

	if ((r = ims_site_ioctx(&io, site, records_pool)) < 0)
		goto out;
	snprintf(cookie, sizeof(cookie), "%ld.%" PRId64, (long)getpid(), ims_clock_unix_ms());
	if ((r = lock_log(io, cookie)) < 0)
		goto out;
	locked = true;
	r = ims_omap_get(&head, &hlen, io, IMS_DIGEST_LOG, "head");
	if (r == -ENOENT) {
		e.seq = 1;
		snprintf(e.prev, sizeof(e.prev), "%s", ZERO_HASH);
	} else if (r < 0) {
		ims_error_set(r, "cannot read the digest log's head: %s", ims_strerror(r));
		goto out;
	} else {
		json_object *h = json_tokener_parse(head);
		if (!h || !json_object_is_type(h, json_type_object)) {
			json_object_put(h);
			r = ims_error_set(-EBADMSG, "the digest log's head is damaged");
			goto out;
		}
		e.seq = (uint64_t)ims_json_i64(h, "seq") + 1;
		ims_json_str(e.prev, sizeof(e.prev), h, "hash");
		json_object_put(h);
	}
	e.at_ms = ims_clock_unix_ms();
	entry_hash(e.hash, &e);
	list_object(obj, sizeof(obj), e.seq);
	if ((r = rados_write_full(io, obj, text, tlen)) < 0) {
		ims_error_set(r, "cannot write the digest's object list: %s", ims_strerror(r));
		goto out;
	}
	rados_write_op_t op = rados_create_write_op();
	/* the entry and the head in one write: both or neither */
	if (!op || set_entry_and_head(op, &e) < 0) {
		if (op)
			rados_release_write_op(op);
		r = -ENOMEM;
		goto out;
	}
	r = rados_write_op_operate(op, io, IMS_DIGEST_LOG, NULL, 0);
	rados_release_write_op(op);
	if (r < 0) {
		ims_error_set(r, "cannot append to the digest log: %s", ims_strerror(r));
		goto out;
	}
	if (out)
		*out = e;
	r = 0;
out:
	if (locked)
		rados_unlock(io, IMS_DIGEST_LOG, IMS_DIGEST_LOCK, cookie);
	ims_site_ioctx_close(io);
	free(head);
	free(text);
	digester_free(&dg);
	return r;
}

/* ---------------------------------------------------------------------------------------- */
/* the chain: its entries, the newest checkpoint's gaps, and whether it holds */

/* A run of entries a compaction removed (replicator_internal.h). */
typedef ims_repl__digest_gap gap;

typedef struct {
	ims_digest_entry *v; /* in the order of their keys: by seq */
	size_t n, cap;
	gap *gaps; /* the newest checkpoint's, by seq */
	size_t ngaps, gcap;
	const ims_digest_entry *checkpoint; /* the newest, or NULL */
	bool broken;
	char error[256];
	char head_hash[IMS_SHA256_HEX_LEN];
	uint64_t head_seq;
} chain;

static void chain_free(chain *c)
{
	free(c->v);
	free(c->gaps);
	memset(c, 0, sizeof(*c));
}

static bool is_checkpoint(const ims_digest_entry *e)
{
	return strcmp(e->why, IMS_DIGEST_CHECKPOINT) == 0;
}

static void chain_break(chain *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void chain_break(chain *c, const char *fmt, ...)
{
	if (c->broken)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, ap);
	va_end(ap);
	c->broken = true;
}

static int collect_entry(void *ctx, const char *key, size_t klen, const char *val, size_t vlen)
{
	chain *c = ctx;
	(void)klen;
	(void)vlen;
	if (strcmp(key, "head") == 0) {
		json_object *h = json_tokener_parse(val);
		if (h) {
			ims_json_str(c->head_hash, sizeof(c->head_hash), h, "hash");
			c->head_seq = (uint64_t)ims_json_i64(h, "seq");
		}
		json_object_put(h);
		return 0;
	}
	json_object *o = json_tokener_parse(val);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		chain_break(c, "entry '%s' is not JSON", key);
		return 0;
	}
	int r = ims_array_grow(c->v, c->cap, c->n + 1, 64);
	if (r < 0) {
		json_object_put(o);
		return r;
	}
	entry_decode(&c->v[c->n++], o);
	json_object_put(o);
	return 0;
}

/* The text of the object @p obj, NUL-terminated, and whether its SHA-256 is @p sha. */
static int read_text(char **out, bool *sha_ok, rados_ioctx_t io, const char *obj, const char *sha)
{
	uint64_t size = 0;
	time_t mt;
	int r;
	if ((r = rados_stat(io, obj, &size, &mt)) < 0)
		return r;
	char *t = malloc(size + 1);
	if (!t)
		return -ENOMEM;
	int got = size ? rados_read(io, obj, t, size, 0) : 0;
	if (got < 0) {
		free(t);
		return got;
	}
	t[got] = '\0';
	uint8_t d[IMS_SHA256_LEN];
	char hex[IMS_SHA256_HEX_LEN];
	ims_sha256_buf(d, t, (size_t)got);
	ims_sha256_hex(hex, d);
	*sha_ok = strcmp(hex, sha) == 0;
	*out = t;
	return 0;
}

/* The gaps of checkpoint @p e: its list object, "FIRST LAST HASH" lines. */
static int load_gaps(chain *c, rados_ioctx_t io, const ims_digest_entry *e)
{
	char obj[64], *t = NULL;
	bool ok = false;
	list_object(obj, sizeof(obj), e->seq);
	int r = read_text(&t, &ok, io, obj, e->list_sha);
	if (r == -ENOENT) {
		chain_break(c, "the list of entries checkpoint %" PRIu64 " replaced is missing",
			    e->seq);
		return 0;
	}
	if (r < 0)
		return ims_error_set(r, "cannot read checkpoint %" PRIu64 " of the digest log: %s",
				     e->seq, ims_strerror(r));
	if (!ok)
		chain_break(c, "the list of entries checkpoint %" PRIu64 " replaced was edited",
			    e->seq);
	char *line = t, *nl;
	while (*line && (nl = strchr(line, '\n'))) {
		*nl = '\0';
		unsigned long long first, last;
		char h[IMS_SHA256_HEX_LEN];
		if (sscanf(line, "%llu %llu %64s", &first, &last, h) == 3 && first <= last) {
			if ((r = ims_array_grow(c->gaps, c->gcap, c->ngaps + 1, 16)) < 0) {
				free(t);
				return r;
			}
			gap *g = &c->gaps[c->ngaps++];
			g->first = first;
			g->last = last;
			snprintf(g->hash, sizeof(g->hash), "%s", h);
		}
		line = nl + 1;
	}
	free(t);
	return 0;
}

/*
 * Read the log and check its chain: each entry follows the one before it (its prev is that
 * one's hash, its seq the next) and its hash is that of its fields; a run of entries a
 * compaction removed counts as the hash its last one had, as the newest checkpoint lists it;
 * the head names the last entry.
 */
static int chain_load(chain *c, rados_ioctx_t io)
{
	int r;
	memset(c, 0, sizeof(*c));
	if ((r = ims_omap_foreach(io, IMS_DIGEST_LOG, collect_entry, c)) < 0 && r != -ENOENT)
		return ims_error_set(r, "cannot read the digest log: %s", ims_strerror(r));
	for (size_t i = 0; i < c->n; i++)
		if (is_checkpoint(&c->v[i]))
			c->checkpoint = &c->v[i];
	if (c->checkpoint && (r = load_gaps(c, io, c->checkpoint)) < 0)
		return r;
	char running[IMS_SHA256_HEX_LEN];
	snprintf(running, sizeof(running), "%s", ZERO_HASH);
	uint64_t expect = 1;
	size_t gi = 0;
	for (size_t i = 0; i < c->n; i++) {
		const ims_digest_entry *e = &c->v[i];
		while (gi < c->ngaps && c->gaps[gi].first == expect) {
			snprintf(running, sizeof(running), "%s", c->gaps[gi].hash);
			expect = c->gaps[gi].last + 1;
			gi++;
		}
		char h[IMS_SHA256_HEX_LEN];
		entry_hash(h, e);
		if (e->seq != expect || strcmp(e->prev, running) != 0)
			chain_break(c,
				    "entry %" PRIu64 " does not follow the one before it (an entry "
				    "removed or replaced)",
				    e->seq);
		else if (strcmp(h, e->hash) != 0)
			chain_break(c,
				    "entry %" PRIu64 " was edited (its hash does not match its "
				    "fields)",
				    e->seq);
		snprintf(running, sizeof(running), "%s", e->hash);
		expect = e->seq + 1;
	}
	if (gi < c->ngaps)
		chain_break(c,
			    "checkpoint %" PRIu64 " lists entries %" PRIu64 " to %" PRIu64
			    " as replaced, but entries follow them that do not match",
			    c->checkpoint ? c->checkpoint->seq : 0, c->gaps[gi].first,
			    c->gaps[gi].last);
	/* the head names the last entry: entries cut off the end show there */
	if (c->head_hash[0] && strcmp(c->head_hash, running) != 0)
		chain_break(c, "the log's head does not name its last entry (entries removed)");
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* verify */

/* The recorded object list of @p e into @p objs (@p nobj of them). */
static int load_list(fp *objs, uint64_t nobj, rados_ioctx_t io, const ims_digest_entry *e,
		     bool *list_ok)
{
	char obj[64];
	uint64_t size = 0;
	time_t mt;
	int r;
	list_object(obj, sizeof(obj), e->seq);
	if ((r = rados_stat(io, obj, &size, &mt)) < 0)
		return ims_error_set(r, "the object list of digest %" PRIu64 " is missing: %s",
				     e->seq, ims_strerror(r));
	char *t = malloc(size + 1);
	if (!t)
		return -ENOMEM;
	int got = size ? rados_read(io, obj, t, size, 0) : 0;
	if (got < 0) {
		free(t);
		return ims_error_set(got, "cannot read the object list of digest %" PRIu64 ": %s",
				     e->seq, ims_strerror(got));
	}
	t[got] = '\0';
	uint8_t d[IMS_SHA256_LEN];
	char hex[IMS_SHA256_HEX_LEN];
	ims_sha256_buf(d, t, (size_t)got);
	ims_sha256_hex(hex, d);
	*list_ok = strcmp(hex, e->list_sha) == 0;
	char *line = t, *nl;
	while (*line && (nl = strchr(line, '\n'))) {
		*nl = '\0';
		unsigned long long no, len;
		char sum[33];
		if (sscanf(line, "%llu %llu %32s", &no, &len, sum) == 3 && no < nobj) {
			objs[no].present = true;
			objs[no].len = len;
			snprintf(objs[no].sum, sizeof(objs[no].sum), "%s", sum);
		}
		line = nl + 1;
	}
	free(t);
	return 0;
}

void ims_digest_verify_result_free(ims_digest_verify_result *res)
{
	if (!res)
		return;
	free(res->changes);
	free(res);
}

int ims_digest_verify(ims_digest_verify_result **out, ims_site *site, const char *records_pool,
		      const char *pool, const char *image, const char *snap)
{
	ims_digest_verify_result *res = calloc(1, sizeof(*res));
	chain c;
	digester dg;
	rados_ioctx_t io = NULL;
	fp *rec = NULL;
	size_t cap = 0;
	const ims_digest_entry *found = NULL;
	int r;

	memset(&dg, 0, sizeof(dg));
	memset(&c, 0, sizeof(c));
	if (!res)
		return -ENOMEM;
	char name[IMS_NAME_MAX + 1];
	effective_name(name, sizeof(name), site, pool, image, snap);
	snap = name;
	if ((r = ims_site_ioctx(&io, site, records_pool)) < 0)
		goto out;
	if ((r = chain_load(&c, io)) < 0)
		goto out;
	for (size_t i = 0; i < c.n; i++)
		if (!is_checkpoint(&c.v[i]) && strcmp(c.v[i].pool, pool) == 0 &&
		    strcmp(c.v[i].image, image) == 0 && strcmp(c.v[i].snap, snap) == 0)
			found = &c.v[i];
	res->chain_ok = !c.broken;
	snprintf(res->chain_error, sizeof(res->chain_error), "%s", c.error);
	res->recorded = found != NULL;
	if (found)
		res->entry = *found;
	if ((r = compute(&dg, site, pool, image, snap)) < 0)
		goto out;
	res->snap_id_now = dg.info.snap_id;
	for (uint64_t i = 0; i < dg.nobj; i++)
		res->objects_now += dg.objs[i].present;
	if (!found) {
		res->intact = false;
		goto done;
	}
	uint64_t nrec =
		(found->size + found->obj_size - 1) / (found->obj_size ? found->obj_size : 1);
	uint64_t n = nrec > dg.nobj ? nrec : dg.nobj;
	bool list_ok = false;
	r = -ENOMEM;
	if (n && !(rec = calloc((size_t)n, sizeof(*rec))))
		goto out;
	if ((r = load_list(rec, n, io, found, &list_ok)) < 0)
		goto out;
	if (!list_ok && res->chain_ok) {
		res->chain_ok = false;
		snprintf(res->chain_error, sizeof(res->chain_error),
			 "the object list of entry %" PRIu64 " was edited", found->seq);
	}
	for (uint64_t i = 0; i < n; i++) {
		bool now = i < dg.nobj && dg.objs[i].present, was = rec[i].present;
		const char *what = NULL;
		if (now && was &&
		    (dg.objs[i].len != rec[i].len || strcmp(dg.objs[i].sum, rec[i].sum) != 0))
			what = "changed";
		else if (now && !was)
			what = "added";
		else if (!now && was)
			what = "removed";
		if (!what)
			continue;
		if ((r = ims_array_grow(res->changes, cap, res->nchanges + 1, 16)) < 0)
			goto out;
		ims_digest_change *ch = &res->changes[res->nchanges++];
		memset(ch, 0, sizeof(*ch));
		ch->objno = i;
		ch->what = what;
		snprintf(ch->object, sizeof(ch->object), "%s.%016" PRIx64, dg.info.prefix, i);
	}
	/* a snapshot removed and taken again under its name is not the one digested, even when
	 * its data happens to be the same */
	res->intact = res->nchanges == 0 && found->size == dg.info.size &&
		      found->snap_id == dg.info.snap_id;
done:
	*out = res;
	res = NULL;
	r = 0;
out:
	free(rec);
	digester_free(&dg);
	chain_free(&c);
	ims_site_ioctx_close(io);
	ims_digest_verify_result_free(res);
	return r;
}

int ims_digest_verify_group(ims_digest_verify_result **out, ims_site *site,
			    const char *records_pool, const char *pool, const char *group,
			    const char *snap)
{
	ims_group_info *gi = NULL;
	ims_digest_verify_result *res = NULL;
	char name[IMS_NAME_MAX + 1];
	size_t cap = 0;
	bool has = false;
	int r;
	if ((r = ims_group_info_get(&gi, site, pool, group)) < 0)
		return r;
	for (size_t i = 0; i < gi->nsnaps; i++)
		has |= strcmp(gi->snaps[i].name, snap) == 0;
	if (!has) {
		r = ims_error_set(-ENOENT, "group '%s/%s' has no snapshot '%s'", pool, group, snap);
		goto out;
	}
	if ((size_t)snprintf(name, sizeof(name), "%s%c%s", group, IMS_DIGEST_GROUP_SEP, snap) >=
	    sizeof(name)) {
		r = ims_error_set(-ENAMETOOLONG, "group snapshot name too long");
		goto out;
	}
	r = -ENOMEM;
	if (!(res = calloc(1, sizeof(*res))))
		goto out;
	res->recorded = res->intact = res->chain_ok = gi->nmembers > 0;
	for (size_t k = 0; k < gi->nmembers; k++) {
		ims_digest_verify_result *m = NULL;
		if ((r = ims_digest_verify(&m, site, records_pool, gi->members[k].pool,
					   gi->members[k].image, name)) < 0)
			goto out;
		res->recorded &= m->recorded;
		res->intact &= m->intact;
		if (m->recorded && m->entry.seq >= res->entry.seq) {
			uint64_t sum = res->entry.nobjects;
			res->entry = m->entry;
			res->entry.nobjects = sum;
		}
		res->entry.nobjects += m->entry.nobjects;
		res->objects_now += m->objects_now;
		if (m->recorded && m->entry.snap_id != m->snap_id_now)
			res->snap_id_now = 1; /* a member's snapshot re-created */
		if (!m->chain_ok && res->chain_ok) {
			res->chain_ok = false;
			snprintf(res->chain_error, sizeof(res->chain_error), "%s", m->chain_error);
		}
		for (size_t i = 0; i < m->nchanges; i++) {
			if ((r = ims_array_grow(res->changes, cap, res->nchanges + 1, 16)) < 0) {
				ims_digest_verify_result_free(m);
				goto out;
			}
			res->changes[res->nchanges++] = m->changes[i];
		}
		ims_digest_verify_result_free(m);
	}
	res->entry.snap_id = 0;
	snprintf(res->entry.snap, sizeof(res->entry.snap), "%s", name);
	*out = res;
	res = NULL;
	r = 0;
out:
	ims_digest_verify_result_free(res);
	ims_group_info_free(gi);
	return r;
}

void ims_digest_queue_push_group(ims_digest_queue *q, ims_site *site, const char *pool,
				 const char *group, const char *snap, const char *why)
{
	ims_group_info *gi = NULL;
	char name[IMS_NAME_MAX + 1];
	if (!q)
		return;
	if ((size_t)snprintf(name, sizeof(name), "%s%c%s", group, IMS_DIGEST_GROUP_SEP, snap) >=
		    sizeof(name) ||
	    ims_group_info_get(&gi, site, pool, group) < 0) {
		ims_log_warning("no digests of group snapshot '%s/%s@%s': %s", pool, group, snap,
				ims_error_last());
		return;
	}
	for (size_t k = 0; k < gi->nmembers; k++)
		ims_digest_queue_push_on(q, site, gi->members[k].pool, gi->members[k].image, name,
					 why);
	ims_group_info_free(gi);
}

/* ---------------------------------------------------------------------------------------- */
/* compaction */

/* Whether the snapshots named by the log still exist, one listing per image. */
typedef struct {
	char pool[IMS_NAME_MAX + 1], image[IMS_NAME_MAX + 1];
	int state; /* 1 listed, 0 the image is gone, -1 unknown (kept) */
	ims_snap_info *snaps;
	size_t n;
} image_snaps;

typedef struct {
	image_snaps *v;
	size_t n, cap;
} snap_cache;

static void snap_cache_free(snap_cache *sc)
{
	for (size_t i = 0; i < sc->n; i++)
		ims_snap_list_free(sc->v[i].snaps, sc->v[i].n);
	free(sc->v);
}

/* 1 the snapshot exists (or cannot be told), 0 it does not; -ENOMEM */
static int snap_exists(snap_cache *sc, ims_site *site, const ims_digest_entry *e)
{
	image_snaps *is = NULL;
	if (strchr(e->snap, IMS_DIGEST_GROUP_SEP)) { /* a member's part of a group snapshot */
		uint64_t id;
		int r = member_snap_id(&id, site, e->pool, e->image, e->snap);
		ims_error_clear();
		return r == -ENOENT ? 0 : 1;
	}
	for (size_t i = 0; i < sc->n && !is; i++)
		if (strcmp(sc->v[i].pool, e->pool) == 0 && strcmp(sc->v[i].image, e->image) == 0)
			is = &sc->v[i];
	if (!is) {
		int r = ims_array_grow(sc->v, sc->cap, sc->n + 1, 16);
		if (r < 0)
			return r;
		is = &sc->v[sc->n++];
		memset(is, 0, sizeof(*is));
		snprintf(is->pool, sizeof(is->pool), "%s", e->pool);
		snprintf(is->image, sizeof(is->image), "%s", e->image);
		r = ims_snap_list(&is->snaps, &is->n, site, e->pool, e->image);
		is->state = r == 0 ? 1 : r == -ENOENT ? 0 : -1;
		if (r < 0) {
			is->snaps = NULL;
			is->n = 0;
		}
		ims_error_clear();
	}
	if (is->state != 1)
		return is->state != 0;
	for (size_t i = 0; i < is->n; i++)
		if (strcmp(is->snaps[i].name, e->snap) == 0)
			return 1;
	return 0;
}

static bool same_name(const ims_digest_entry *a, const ims_digest_entry *b)
{
	return strcmp(a->pool, b->pool) == 0 && strcmp(a->image, b->image) == 0 &&
	       strcmp(a->snap, b->snap) == 0;
}

/* The seqs of the entries of @p c a compaction removes: of snapshots gone, those a newer
 * digest of the same snapshot replaces, and every checkpoint (the new one lists their gaps). */
static int removable(uint64_t **out, size_t *n, chain *c, ims_site *site)
{
	snap_cache sc = {0};
	uint64_t *v = calloc(c->n ? c->n : 1, sizeof(*v));
	size_t k = 0;
	int r = -ENOMEM;
	if (!v)
		goto out;
	for (size_t i = 0; i < c->n; i++) {
		const ims_digest_entry *e = &c->v[i];
		bool drop = is_checkpoint(e);
		for (size_t j = i + 1; j < c->n && !drop; j++)
			drop = !is_checkpoint(&c->v[j]) && same_name(e, &c->v[j]);
		if (!drop) {
			if ((r = snap_exists(&sc, site, e)) < 0)
				goto out;
			drop = r == 0;
		}
		if (drop)
			v[k++] = e->seq;
	}
	*out = v;
	*n = k;
	v = NULL;
	r = 0;
out:
	free(v);
	snap_cache_free(&sc);
	return r;
}

static bool has_seq(const uint64_t *v, size_t n, uint64_t seq)
{
	size_t lo = 0, hi = n; /* v is sorted */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (v[mid] == seq)
			return true;
		if (v[mid] < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

char *ims_repl__digest_gap_text(size_t *len, uint64_t *ngaps, uint64_t *covered,
				const ims_digest_entry *v, size_t nv,
				const ims_repl__digest_gap *gaps, size_t ngaps_old,
				const uint64_t *drop, size_t ndrop)
{
	size_t cap = 256 + (ngaps_old + ndrop) * 120, n = 0, gi = 0;
	char *t = malloc(cap);
	bool open = false;
	gap run = {0};
	if (!t)
		return NULL;
	t[0] = '\0';
	*ngaps = *covered = 0;
#define CLOSE_RUN()                                                                                \
	do {                                                                                       \
		if (open) {                                                                        \
			n += (size_t)snprintf(t + n, cap - n, "%" PRIu64 " %" PRIu64 " %s\n",      \
					      run.first, run.last, run.hash);                      \
			(*ngaps)++;                                                                \
			*covered += run.last - run.first + 1;                                      \
			open = false;                                                              \
		}                                                                                  \
	} while (0)
	for (size_t i = 0; i <= nv; i++) {
		uint64_t seq = i < nv ? v[i].seq : UINT64_MAX;
		while (gi < ngaps_old && gaps[gi].first < seq) {
			if (!open || run.last + 1 != gaps[gi].first) {
				CLOSE_RUN();
				run.first = gaps[gi].first;
				open = true;
			}
			run.last = gaps[gi].last;
			snprintf(run.hash, sizeof(run.hash), "%s", gaps[gi].hash);
			gi++;
		}
		if (i == nv)
			break;
		if (!has_seq(drop, ndrop, seq)) {
			CLOSE_RUN();
			continue;
		}
		if (!open || run.last + 1 != seq) {
			CLOSE_RUN();
			run.first = seq;
			open = true;
		}
		run.last = seq;
		snprintf(run.hash, sizeof(run.hash), "%s", v[i].hash);
	}
	CLOSE_RUN();
#undef CLOSE_RUN
	*len = n;
	return t;
}

int ims_digest_compact(ims_digest_compact_result *out, ims_site *site, const char *records_pool)
{
	chain c0, c;
	rados_ioctx_t io = NULL;
	uint64_t *drop = NULL;
	size_t ndrop = 0, tlen = 0;
	char *text = NULL, cookie[64], obj[64];
	bool locked = false;
	int r;

	memset(out, 0, sizeof(*out));
	memset(&c0, 0, sizeof(c0));
	memset(&c, 0, sizeof(c));
	if ((r = ims_site_ioctx(&io, site, records_pool)) < 0)
		goto out;
	/* which snapshots are gone, told without the lock (appends go on meanwhile) */
	if ((r = chain_load(&c0, io)) < 0)
		goto out;
	if (c0.broken) {
		r = ims_error_set(-EBADMSG,
				  "the digest log is broken (%s): not compacted, so that the break "
				  "stays visible",
				  c0.error);
		goto out;
	}
	if ((r = removable(&drop, &ndrop, &c0, site)) < 0)
		goto out;
	out->entries = c0.n;
	size_t entries_dropped = 0;
	for (size_t i = 0; i < c0.n; i++)
		entries_dropped += !is_checkpoint(&c0.v[i]) && has_seq(drop, ndrop, c0.v[i].seq);
	if (entries_dropped == 0)
		goto done; /* nothing to remove but checkpoints: a new one would list the same */
	snprintf(cookie, sizeof(cookie), "%ld.%" PRId64 ".c", (long)getpid(), ims_clock_unix_ms());
	if ((r = lock_log(io, cookie)) < 0)
		goto out;
	locked = true;
	if ((r = chain_load(&c, io)) < 0)
		goto out;
	if (c.broken) {
		r = ims_error_set(-EBADMSG,
				  "the digest log is broken (%s): not compacted, so that the break "
				  "stays visible",
				  c.error);
		goto out;
	}
	if ((c.checkpoint ? c.checkpoint->seq : 0) != (c0.checkpoint ? c0.checkpoint->seq : 0) ||
	    c.n == 0)
		goto done; /* another daemon compacted meanwhile */
	ims_digest_entry cp;
	memset(&cp, 0, sizeof(cp));
	uint64_t ngaps = 0, covered = 0;
	r = -ENOMEM;
	if (!(text = ims_repl__digest_gap_text(&tlen, &ngaps, &covered, c.v, c.n, c.gaps, c.ngaps,
					       drop, ndrop)))
		goto out;
	const ims_digest_entry *last = &c.v[c.n - 1];
	cp.seq = last->seq + 1;
	snprintf(cp.prev, sizeof(cp.prev), "%s", last->hash);
	snprintf(cp.why, sizeof(cp.why), "%s", IMS_DIGEST_CHECKPOINT);
	cp.size = ngaps;
	cp.nobjects = covered;
	cp.at_ms = ims_clock_unix_ms();
	uint8_t d[IMS_SHA256_LEN];
	ims_sha256_buf(d, text, tlen);
	ims_sha256_hex(cp.list_sha, d);
	entry_hash(cp.hash, &cp);
	list_object(obj, sizeof(obj), cp.seq);
	if ((r = rados_write_full(io, obj, text, tlen)) < 0) {
		ims_error_set(r, "cannot write the digest log's checkpoint: %s", ims_strerror(r));
		goto out;
	}
	/* the entries removed, the checkpoint and the head in one write: all or nothing */
	char(*keys)[24] = calloc(ndrop, sizeof(*keys));
	const char **kp = calloc(ndrop, sizeof(*kp));
	size_t *kl = calloc(ndrop, sizeof(*kl));
	rados_write_op_t op = rados_create_write_op();
	r = -ENOMEM;
	if (keys && kp && kl && op) {
		for (size_t i = 0; i < ndrop; i++) {
			snprintf(keys[i], sizeof(keys[i]), "%020" PRIu64, drop[i]);
			kp[i] = keys[i];
			kl[i] = strlen(keys[i]);
		}
		rados_write_op_omap_rm_keys2(op, kp, kl, ndrop);
		if ((r = set_entry_and_head(op, &cp)) == 0 &&
		    (r = rados_write_op_operate(op, io, IMS_DIGEST_LOG, NULL, 0)) < 0)
			ims_error_set(r, "cannot compact the digest log: %s", ims_strerror(r));
	}
	if (op)
		rados_release_write_op(op);
	free(keys);
	free(kp);
	free(kl);
	if (r < 0) {
		rados_remove(io, obj);
		goto out;
	}
	rados_unlock(io, IMS_DIGEST_LOG, IMS_DIGEST_LOCK, cookie);
	locked = false;
	/* the object lists of the entries removed (the checkpoints' gap lists among them) */
	for (size_t i = 0; i < ndrop; i++) {
		list_object(obj, sizeof(obj), drop[i]);
		rados_remove(io, obj);
	}
	out->removed = ndrop;
	out->checkpoint = cp;
	out->compacted = true;
done:
	out->kept = out->entries - out->removed;
	r = 0;
out:
	if (locked)
		rados_unlock(io, IMS_DIGEST_LOG, IMS_DIGEST_LOCK, cookie);
	ims_site_ioctx_close(io);
	free(drop);
	free(text);
	chain_free(&c0);
	chain_free(&c);
	return r;
}

/* ---------------------------------------------------------------------------------------- */
/* the queue */

#define QUEUE_MAX   256
#define QUEUE_SITES 9 /* the queue's own and up to 8 peers' logs counted for compaction */

typedef struct {
	ims_site *site; /* where the snapshot is: the queue's own site or a peer's */
	char pool[IMS_NAME_MAX + 1], image[IMS_NAME_MAX + 1], snap[IMS_NAME_MAX + 1], why[32];
} job;

struct ims_digest_queue {
	ims_site *site;
	char records_pool[IMS_NAME_MAX + 1];
	ims_digest_recorded_fn recorded;
	void *ctx;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
	job *jobs; /* a ring of QUEUE_MAX */
	unsigned head, count;
	bool running;
	ims_threads threads;
	uint64_t compact_after;
	/* appends since the last compaction this queue ran, per site: [0] the queue's own, then
	 * the peers' logs it appended to (a secondary's daemon may never append to its own) */
	struct {
		ims_site *site;
		uint64_t appended;
	} logs[QUEUE_SITES];
};

/* A compaction of @p site's log (ims_digest_compact); @p peer its name when not the queue's. */
static void compact_now(ims_digest_queue *q, ims_site *site, const char *peer)
{
	ims_digest_compact_result cr;
	double t0 = ims_clock_mono_s();
	char on[IMS_NAME_MAX + 16] = "";
	if (peer)
		snprintf(on, sizeof(on), " of site '%s'", peer);
	ims_error_clear();
	if (ims_digest_compact(&cr, site, q->records_pool) < 0) {
		ims_log_warning("digest log%s not compacted: %s", on, ims_error_last());
		return;
	}
	if (!cr.compacted) {
		ims_log_info("digest log%s: nothing to compact (%zu entries)", on, cr.entries);
		return;
	}
	ims_log_info("digest log%s compacted: %zu of %zu entries replaced by checkpoint %" PRIu64
		     " (%" PRIu64 " runs), in %.2f s, hash %.16s",
		     on, cr.removed, cr.entries, cr.checkpoint.seq, cr.checkpoint.size,
		     ims_clock_mono_s() - t0, cr.checkpoint.hash);
	if (q->recorded)
		q->recorded(q->ctx, peer, &cr.checkpoint);
}

/* One more append to @p site's log: whether its compaction is due (after every compact_after
 * digests this queue appended there). Under the queue's lock. */
static bool compaction_due(ims_digest_queue *q, ims_site *site)
{
	size_t i = 0;
	while (i < QUEUE_SITES && q->logs[i].site && q->logs[i].site != site)
		i++;
	if (i == QUEUE_SITES)
		return false; /* more sites than counted: their own daemons compact them */
	q->logs[i].site = site;
	if (!q->compact_after || ++q->logs[i].appended < q->compact_after)
		return false;
	q->logs[i].appended = 0;
	return true;
}

void ims_digest_queue_compact_after(ims_digest_queue *q, uint64_t n)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	q->compact_after = n;
	pthread_mutex_unlock(&q->lock);
}

static void *queue_loop(void *arg)
{
	ims_digest_queue *q = arg;
	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (!q->stopping && q->count == 0)
			pthread_cond_wait(&q->cond, &q->lock);
		if (q->stopping)
			break;
		job j = q->jobs[q->head];
		q->head = (q->head + 1) % QUEUE_MAX;
		q->count--;
		q->running = true;
		pthread_mutex_unlock(&q->lock);
		ims_digest_entry e;
		double t0 = ims_clock_mono_s();
		ims_error_clear();
		int r = ims_digest_record(&e, j.site, q->records_pool, j.pool, j.image, j.snap,
					  j.why);
		const char *peer = j.site != q->site ? ims_site_name(j.site) : NULL;
		if (r == 0) {
			ims_log_info("digest %" PRIu64 " of '%s/%s@%s'%s%s%s (%s): %" PRIu64
				     " objects in %.2f s, hash %.16s",
				     e.seq, j.pool, j.image, j.snap, peer ? " on site '" : "",
				     peer ? peer : "", peer ? "'" : "", j.why, e.nobjects,
				     ims_clock_mono_s() - t0, e.hash);
			if (q->recorded)
				q->recorded(q->ctx, peer, &e);
			pthread_mutex_lock(&q->lock);
			bool due = compaction_due(q, j.site);
			pthread_mutex_unlock(&q->lock);
			if (due)
				compact_now(q, j.site, peer);
		} else {
			ims_log_warning("no digest of '%s/%s@%s'%s%s%s: %s", j.pool, j.image,
					j.snap, peer ? " on site '" : "", peer ? peer : "",
					peer ? "'" : "", ims_error_last());
		}
		pthread_mutex_lock(&q->lock);
		q->running = false;
		pthread_cond_broadcast(&q->cond);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int ims_digest_queue_start(ims_digest_queue **out, ims_site *site, const char *records_pool,
			   ims_digest_recorded_fn recorded, void *ctx)
{
	ims_digest_queue *q = calloc(1, sizeof(*q));
	int r;
	if (!q || !(q->jobs = calloc(QUEUE_MAX, sizeof(*q->jobs)))) {
		free(q);
		return -ENOMEM;
	}
	q->site = site;
	q->logs[0].site = site;
	snprintf(q->records_pool, sizeof(q->records_pool), "%s", records_pool);
	q->recorded = recorded;
	q->ctx = ctx;
	q->threads = (ims_threads)IMS_THREADS_INIT;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	if ((r = ims_threads_start(&q->threads, 1, queue_loop, q, "the snapshot digests")) < 0) {
		ims_digest_queue_stop(q);
		return r;
	}
	*out = q;
	return 0;
}

void ims_digest_queue_push(ims_digest_queue *q, const char *pool, const char *image,
			   const char *snap, const char *why)
{
	if (q)
		ims_digest_queue_push_on(q, q->site, pool, image, snap, why);
}

void ims_digest_queue_push_on(ims_digest_queue *q, ims_site *site, const char *pool,
			      const char *image, const char *snap, const char *why)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	if (q->count >= QUEUE_MAX) {
		pthread_mutex_unlock(&q->lock);
		ims_log_warning("digest of '%s/%s@%s' dropped: %d digests queued already", pool,
				image, snap, QUEUE_MAX);
		return;
	}
	job *j = &q->jobs[(q->head + q->count) % QUEUE_MAX];
	j->site = site;
	snprintf(j->pool, sizeof(j->pool), "%s", pool);
	snprintf(j->image, sizeof(j->image), "%s", image);
	snprintf(j->snap, sizeof(j->snap), "%s", snap);
	snprintf(j->why, sizeof(j->why), "%s", why);
	q->count++;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

unsigned ims_digest_queue_pending(ims_digest_queue *q)
{
	if (!q)
		return 0;
	pthread_mutex_lock(&q->lock);
	unsigned n = q->count + (q->running ? 1 : 0);
	pthread_mutex_unlock(&q->lock);
	return n;
}

void ims_digest_queue_stop(ims_digest_queue *q)
{
	if (!q)
		return;
	ims_threads_stop(&q->threads, &q->lock, &q->cond, &q->stopping);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
	free(q->jobs);
	free(q);
}
