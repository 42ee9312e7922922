/* replicator/digest.c: digests of snapshots in a hash-chained log in RADOS, their verify, and
 * the queue that digests off the path of the work that made the snapshot. */
#include "replicator/digest.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <rados/librados.h>

#include "common/array.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/fanout.h"
#include "common/json.h"
#include "common/log.h"
#include "common/threads.h"
#include "replicator/replicator_internal.h"
#include "store/omap.h"

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

/* The digest of @p pool/@p image@@p snap: one fingerprint per object. */
static int compute(digester *dg, ims_site *site, const char *pool, const char *image,
		   const char *snap)
{
	int r;
	memset(dg, 0, sizeof(*dg));
	if ((r = ims_repl__snapview_open(&dg->v, &dg->info, site, pool, image, snap)) < 0)
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
	json_object *ej = entry_json(&e), *hj = json_object_new_object();
	if (!ej || !hj) {
		json_object_put(ej);
		json_object_put(hj);
		r = -ENOMEM;
		goto out;
	}
	json_object_object_add(hj, "seq", json_object_new_int64((int64_t)e.seq));
	json_object_object_add(hj, "hash", json_object_new_string(e.hash));
	char key[32];
	snprintf(key, sizeof(key), "%020" PRIu64, e.seq);
	const char *keys[2] = {key, "head"};
	const char *vals[2] = {json_object_to_json_string_ext(ej, JSON_C_TO_STRING_PLAIN),
			       json_object_to_json_string_ext(hj, JSON_C_TO_STRING_PLAIN)};
	size_t klens[2] = {strlen(keys[0]), strlen(keys[1])};
	size_t lens[2] = {strlen(vals[0]), strlen(vals[1])};
	rados_write_op_t op = rados_create_write_op();
	if (!op) {
		json_object_put(ej);
		json_object_put(hj);
		r = -ENOMEM;
		goto out;
	}
	/* the entry and the head in one write: both or neither */
	rados_write_op_omap_set2(op, keys, vals, klens, lens, 2);
	r = rados_write_op_operate(op, io, IMS_DIGEST_LOG, NULL, 0);
	rados_release_write_op(op);
	json_object_put(ej);
	json_object_put(hj);
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
/* verify */

typedef struct {
	const char *pool, *image, *snap;
	char running[IMS_SHA256_HEX_LEN];
	bool broken;
	char error[256];
	bool found;
	ims_digest_entry newest;
} walk;

static int walk_entry(void *ctx, const char *key, size_t klen, const char *val, size_t vlen)
{
	walk *w = ctx;
	(void)klen;
	(void)vlen;
	if (strcmp(key, "head") == 0)
		return 0;
	json_object *o = json_tokener_parse(val);
	ims_digest_entry e;
	char h[IMS_SHA256_HEX_LEN];
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		if (!w->broken)
			snprintf(w->error, sizeof(w->error), "entry '%s' is not JSON", key);
		w->broken = true;
		return 0;
	}
	entry_decode(&e, o);
	json_object_put(o);
	entry_hash(h, &e);
	if (!w->broken && strcmp(e.prev, w->running) != 0) {
		snprintf(w->error, sizeof(w->error),
			 "entry %" PRIu64 " does not follow the one before it (an entry removed or "
			 "replaced)",
			 e.seq);
		w->broken = true;
	}
	if (!w->broken && strcmp(h, e.hash) != 0) {
		snprintf(w->error, sizeof(w->error),
			 "entry %" PRIu64 " was edited (its hash does not match its fields)",
			 e.seq);
		w->broken = true;
	}
	snprintf(w->running, sizeof(w->running), "%s", e.hash);
	if (strcmp(e.pool, w->pool) == 0 && strcmp(e.image, w->image) == 0 &&
	    strcmp(e.snap, w->snap) == 0) {
		w->found = true;
		w->newest = e;
	}
	return 0;
}

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
	walk w;
	digester dg;
	rados_ioctx_t io = NULL;
	fp *rec = NULL;
	size_t cap = 0;
	int r;

	memset(&dg, 0, sizeof(dg));
	memset(&w, 0, sizeof(w));
	if (!res)
		return -ENOMEM;
	w.pool = pool;
	w.image = image;
	w.snap = snap;
	snprintf(w.running, sizeof(w.running), "%s", ZERO_HASH);
	if ((r = ims_site_ioctx(&io, site, records_pool)) < 0)
		goto out;
	if ((r = ims_omap_foreach(io, IMS_DIGEST_LOG, walk_entry, &w)) < 0) {
		ims_error_set(r, "cannot read the digest log: %s", ims_strerror(r));
		goto out;
	}
	/* the head names the last entry: entries cut off the end show there */
	char *head = NULL;
	size_t hlen = 0;
	if (!w.broken && ims_omap_get(&head, &hlen, io, IMS_DIGEST_LOG, "head") == 0) {
		json_object *h = json_tokener_parse(head);
		char hh[IMS_SHA256_HEX_LEN] = "";
		if (h)
			ims_json_str(hh, sizeof(hh), h, "hash");
		json_object_put(h);
		if (strcmp(hh, w.running) != 0) {
			snprintf(w.error, sizeof(w.error),
				 "the log's head does not name its last entry (entries removed)");
			w.broken = true;
		}
	}
	free(head);
	res->chain_ok = !w.broken;
	snprintf(res->chain_error, sizeof(res->chain_error), "%s", w.error);
	res->recorded = w.found;
	if (w.found)
		res->entry = w.newest;
	if ((r = compute(&dg, site, pool, image, snap)) < 0)
		goto out;
	res->snap_id_now = dg.info.snap_id;
	for (uint64_t i = 0; i < dg.nobj; i++)
		res->objects_now += dg.objs[i].present;
	if (!w.found) {
		res->intact = false;
		goto done;
	}
	uint64_t nrec = (w.newest.size + w.newest.obj_size - 1) /
			(w.newest.obj_size ? w.newest.obj_size : 1);
	uint64_t n = nrec > dg.nobj ? nrec : dg.nobj;
	bool list_ok = false;
	r = -ENOMEM;
	if (n && !(rec = calloc((size_t)n, sizeof(*rec))))
		goto out;
	if ((r = load_list(rec, n, io, &w.newest, &list_ok)) < 0)
		goto out;
	if (!list_ok && res->chain_ok) {
		res->chain_ok = false;
		snprintf(res->chain_error, sizeof(res->chain_error),
			 "the object list of entry %" PRIu64 " was edited", w.newest.seq);
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
		ims_digest_change *c = &res->changes[res->nchanges++];
		memset(c, 0, sizeof(*c));
		c->objno = i;
		c->what = what;
		snprintf(c->object, sizeof(c->object), "%s.%016" PRIx64, dg.info.prefix, i);
	}
	/* a snapshot removed and taken again under its name is not the one digested, even when
	 * its data happens to be the same */
	res->intact = res->nchanges == 0 && w.newest.size == dg.info.size &&
		      w.newest.snap_id == dg.info.snap_id;
done:
	*out = res;
	res = NULL;
	r = 0;
out:
	free(rec);
	digester_free(&dg);
	ims_site_ioctx_close(io);
	ims_digest_verify_result_free(res);
	return r;
}

/* ---------------------------------------------------------------------------------------- */
/* the queue */

#define QUEUE_MAX 256

typedef struct {
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
};

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
		int r = ims_digest_record(&e, q->site, q->records_pool, j.pool, j.image, j.snap,
					  j.why);
		if (r == 0) {
			ims_log_info("digest %" PRIu64 " of '%s/%s@%s' (%s): %" PRIu64
				     " objects in %.2f s, hash %.16s",
				     e.seq, j.pool, j.image, j.snap, j.why, e.nobjects,
				     ims_clock_mono_s() - t0, e.hash);
			if (q->recorded)
				q->recorded(q->ctx, &e);
		} else {
			ims_log_warning("no digest of '%s/%s@%s': %s", j.pool, j.image, j.snap,
					ims_error_last());
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
