/*
 * replicator/verify.c: compares a sealed replication snapshot on two sites without shipping
 * its data. Each cluster checksums its own data objects at the snapshot (the OSD computes
 * xxhash64 per chunk) and only the checksums come back; objects whose existence or length
 * differ (absent and short objects read as zeros, so a hole on one side and written zeros on
 * the other are equal) are compared by reading their extent on both sides.
 */
#include "replicator/replicator.h"
#include "replicator/replicator_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/extents.h"
#include "common/fanout.h"
#include "common/log.h"

#define DEFAULT_CHUNK (64u << 10)
#define MIN_CHUNK     (4u << 10)

/* One site's copy of the image, open at the snapshot. */
typedef struct {
	ims_site *site;
	rados_ioctx_t io;   /* the image's pool */
	rados_ioctx_t data; /* its data objects' pool, reading at the snapshot */
	rbd_image_t img;    /* read-only at the snapshot */
	char prefix[128];   /* "rbd_data.<id>" */
	uint64_t size, obj_size;
	bool simple; /* one object per object-size extent (no fancy striping) */
	bool parent; /* absent objects read from a parent, not as zeros */
} side;

static void side_close(side *s)
{
	if (s->img)
		rbd_close(s->img);
	if (s->data)
		ims_site_ioctx_close(s->data);
	if (s->io)
		ims_site_ioctx_close(s->io);
	memset(s, 0, sizeof(*s));
}

/* Open @p image at @p snap, or (@p by_id non-zero) at the snapshot of that id named @p snap in
 * messages. */
static int side_open(side *s, ims_site *site, const char *pool, const char *image, const char *snap,
		     uint64_t by_id)
{
	rbd_image_info_t info;
	rbd_linked_image_spec_t pimg;
	rbd_snap_spec_t psnap;
	uint64_t snap_id, su = 0, sc = 0;
	const char *sn = ims_site_name(site);
	char ns[256];
	int r;

	memset(s, 0, sizeof(*s));
	s->site = site;
	if ((r = ims_site_ioctx(&s->io, site, pool)) < 0)
		return r;
	r = rbd_open_read_only(s->io, image, &s->img, by_id ? NULL : snap);
	if (r == 0 && by_id && (r = rbd_snap_set_by_id(s->img, by_id)) < 0)
		rbd_close(s->img);
	if (r < 0) {
		s->img = NULL;
		return r == -ENOENT ? ims_error_set(r, "site '%s' has no '%s/%s@%s'", sn, pool,
						    image, snap)
				    : ims_error_set(r, "cannot open '%s/%s@%s' on site '%s': %s",
						    pool, image, snap, sn, ims_strerror(r));
	}
	if ((r = rbd_stat(s->img, &info, sizeof(info))) < 0 ||
	    (r = rbd_get_block_name_prefix(s->img, s->prefix, sizeof(s->prefix))) < 0 ||
	    (by_id ? (snap_id = by_id, 0) : (r = rbd_snap_get_id(s->img, snap, &snap_id))) < 0 ||
	    (r = rbd_get_stripe_unit(s->img, &su)) < 0 ||
	    (r = rbd_get_stripe_count(s->img, &sc)) < 0)
		return ims_error_set(r, "cannot read the layout of '%s/%s@%s' on site '%s': %s",
				     pool, image, snap, sn, ims_strerror(r));
	s->size = info.size;
	s->obj_size = info.obj_size;
	s->simple = su == info.obj_size && sc <= 1;
	r = rbd_get_parent(s->img, &pimg, &psnap);
	if (r == 0) {
		s->parent = true;
		rbd_linked_image_spec_cleanup(&pimg);
		rbd_snap_spec_cleanup(&psnap);
	} else if (r != -ENOENT) {
		s->parent = true; /* unknown: never take an absent object for zeros */
	}
	int64_t data_pool = rbd_get_data_pool_id(s->img);
	if (data_pool < 0)
		return ims_error_set((int)data_pool,
				     "cannot find the data pool of '%s/%s' on site '%s'", pool,
				     image, sn);
	if ((r = rados_ioctx_create2(rados_ioctx_get_cluster(s->io), data_pool, &s->data)) < 0) {
		s->data = NULL;
		return ims_error_set(r, "cannot open the data pool of '%s/%s' on site '%s': %s",
				     pool, image, sn, ims_strerror(r));
	}
	r = rados_ioctx_get_namespace(s->io, ns, sizeof(ns));
	if (r > 0 && (size_t)r < sizeof(ns)) {
		ns[r] = '\0';
		rados_ioctx_set_namespace(s->data, ns);
	}
	rados_ioctx_snap_set_read(s->data, snap_id);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */

static int cmp_extent(const void *x, const void *y)
{
	const ims_extents_item *a = x, *b = y;
	return a->off < b->off ? -1 : a->off > b->off;
}

typedef struct {
	pthread_mutex_t lock;
	side *a, *b;
	uint64_t size; /* compared: the smaller of the two sizes */
	uint64_t obj_size;
	uint32_t chunk;
	bool by_object; /* both layouts map objects 1:1 to extents of the same size */
	uint64_t nobj, done;
	ims_extents mm;
	uint64_t fallback, bytes_read;
	const char *pool, *image;
	const ims_repl_verify_opts *o;
} verifier;

typedef struct {
	char *x, *y;	   /* fallback buffers, one object each */
	uint64_t *sa, *sb; /* checksums */
	ims_extents mm;	   /* this object's mismatches */
	bool fallback;
	uint64_t bytes_read;
} worker_state;

static int read_extent(side *s, const char *which, uint64_t off, size_t len, char *buf)
{
	ssize_t got = rbd_read(s->img, off, len, buf);
	if (got < 0)
		return ims_error_set((int)got, "cannot read at %" PRIu64 " on the %s site '%s': %s",
				     off, which, ims_site_name(s->site), ims_strerror((int)got));
	if ((size_t)got < len)
		memset(buf + got, 0, len - (size_t)got);
	return 0;
}

/* Compare an image extent by reading it on both sides, chunk by chunk. */
static int compare_bytes(verifier *v, worker_state *w, uint64_t off, size_t len)
{
	int r;
	w->fallback = true;
	if ((r = read_extent(v->a, "primary", off, len, w->x)) < 0 ||
	    (r = read_extent(v->b, "secondary", off, len, w->y)) < 0)
		return r;
	w->bytes_read += 2 * (uint64_t)len;
	for (size_t pos = 0; pos < len; pos += v->chunk) {
		size_t n = len - pos < v->chunk ? len - pos : v->chunk;
		if (memcmp(w->x + pos, w->y + pos, n) != 0 &&
		    (r = ims_extents_add(&w->mm, off + pos, n, true)) < 0)
			return r;
	}
	return 0;
}

/* The object's length at the snapshot; -ENOENT if it does not exist there. */
static int object_len(side *s, const char *oid, uint64_t *len)
{
	time_t mtime;
	return rados_stat(s->data, oid, len, &mtime);
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t x = 0;
	for (int i = 7; i >= 0; i--)
		x = (x << 8) | p[i];
	return x;
}

/* xxhash64 of [0, len) of the object, per chunk (the last one may be short), into sums. */
static int object_checksums(side *s, const char *oid, uint64_t len, uint32_t chunk, uint64_t *sums)
{
	uint64_t aligned = len / chunk * chunk, seed = 0;
	size_t nfull = (size_t)(aligned / chunk);
	size_t blen = 4 + 8 * (nfull ? nfull : 1);
	unsigned char *buf = malloc(blen), tail[12];
	int pv_full = 0, pv_tail = 0, r;
	if (!buf)
		return -ENOMEM;
	rados_read_op_t op = rados_create_read_op();
	if (!op) {
		free(buf);
		return -ENOMEM;
	}
	if (nfull)
		rados_read_op_checksum(op, LIBRADOS_CHECKSUM_TYPE_XXHASH64, (const char *)&seed,
				       sizeof(seed), 0, aligned, chunk, (char *)buf, blen,
				       &pv_full);
	if (len > aligned)
		rados_read_op_checksum(op, LIBRADOS_CHECKSUM_TYPE_XXHASH64, (const char *)&seed,
				       sizeof(seed), aligned, len - aligned, 0, (char *)tail,
				       sizeof(tail), &pv_tail);
	r = rados_read_op_operate(op, s->data, oid, 0);
	rados_release_read_op(op);
	if (r == 0)
		r = pv_full < 0 ? pv_full : pv_tail;
	if (r == 0 && nfull) {
		uint32_t n = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 |
			     (uint32_t)buf[3] << 24;
		if (n != nfull)
			r = -EPROTO;
		for (size_t i = 0; r == 0 && i < nfull; i++)
			sums[i] = le64(buf + 4 + 8 * i);
	}
	if (r == 0 && len > aligned) {
		if (tail[0] != 1 || tail[1] || tail[2] || tail[3])
			r = -EPROTO;
		else
			sums[nfull] = le64(tail + 4);
	}
	free(buf);
	return r;
}

/* Compare object @p objno: its checksums if it exists with one length on both sides (or is
 * absent from both, which reads as zeros); its bytes otherwise. */
static int compare_object(verifier *v, worker_state *w, uint64_t objno)
{
	uint64_t off = objno * v->obj_size;
	size_t elen = (size_t)(v->size - off < v->obj_size ? v->size - off : v->obj_size);
	char oa[160], ob[160];
	uint64_t la = 0, lb = 0;
	int ra, rb, r;

	w->mm.n = 0;
	w->fallback = false;
	if (!v->by_object)
		return compare_bytes(v, w, off, elen);
	snprintf(oa, sizeof(oa), "%s.%016" PRIx64, v->a->prefix, objno);
	snprintf(ob, sizeof(ob), "%s.%016" PRIx64, v->b->prefix, objno);
	ra = object_len(v->a, oa, &la);
	rb = object_len(v->b, ob, &lb);
	if ((ra < 0 && ra != -ENOENT) || (rb < 0 && rb != -ENOENT)) {
		r = ra < 0 && ra != -ENOENT ? ra : rb;
		return ims_error_set(
			r, "cannot stat object %" PRIu64 " of the image on site '%s': %s", objno,
			ims_site_name(ra < 0 && ra != -ENOENT ? v->a->site : v->b->site),
			ims_strerror(r));
	}
	if (ra == -ENOENT && rb == -ENOENT && !v->a->parent && !v->b->parent)
		return 0; /* zeros on both sides */
	if (ra == -ENOENT || rb == -ENOENT)
		return compare_bytes(v, w, off, elen);
	if (la > elen)
		la = elen;
	if (lb > elen)
		lb = elen;
	if (la != lb)
		return compare_bytes(v, w, off, elen);
	if (la == 0)
		return 0;
	ra = object_checksums(v->a, oa, la, v->chunk, w->sa);
	rb = ra < 0 ? ra : object_checksums(v->b, ob, lb, v->chunk, w->sb);
	if (ra < 0 || rb < 0) {
		ims_log_debug("checksum of object %" PRIu64 " failed (%s): comparing its bytes",
			      objno, ims_strerror(ra < 0 ? ra : rb));
		return compare_bytes(v, w, off, elen);
	}
	size_t nchunks = (size_t)((la + v->chunk - 1) / v->chunk);
	for (size_t i = 0; i < nchunks; i++) {
		uint64_t pos = (uint64_t)i * v->chunk;
		uint64_t n = la - pos < v->chunk ? la - pos : v->chunk;
		if (w->sa[i] != w->sb[i] && (r = ims_extents_add(&w->mm, off + pos, n, true)) < 0)
			return r;
	}
	return 0;
}

static int verify_worker(ims_fanout *f, void *ctx, unsigned slot)
{
	verifier *v = ctx;
	worker_state w;
	size_t nsums = (size_t)(v->obj_size / v->chunk) + 1, objno;
	int r = 0;

	(void)slot;
	memset(&w, 0, sizeof(w));
	w.x = malloc(v->obj_size);
	w.y = malloc(v->obj_size);
	w.sa = calloc(nsums, sizeof(*w.sa));
	w.sb = calloc(nsums, sizeof(*w.sb));
	if (!w.x || !w.y || !w.sa || !w.sb)
		r = ims_error_set(-ENOMEM, "verify: out of memory");
	while (r == 0 && ims_fanout_next(&objno, f)) {
		ims_error_clear();
		if ((r = compare_object(v, &w, objno)) < 0)
			break;
		pthread_mutex_lock(&v->lock);
		for (size_t i = 0; i < w.mm.n && r == 0; i++)
			r = ims_extents_add(&v->mm, w.mm.v[i].off, w.mm.v[i].len, true);
		v->fallback += w.fallback;
		v->done++;
		pthread_mutex_unlock(&v->lock);
		ims_fanout_wake(f);
	}
	pthread_mutex_lock(&v->lock);
	v->bytes_read += w.bytes_read;
	pthread_mutex_unlock(&v->lock);
	free(w.x);
	free(w.y);
	free(w.sa);
	free(w.sb);
	ims_extents_free(&w.mm);
	return r;
}

static int verify_watch(void *ctx)
{
	verifier *v = ctx;
	pthread_mutex_lock(&v->lock);
	uint64_t done = v->done;
	pthread_mutex_unlock(&v->lock);
	if (v->o->progress && v->o->progress(v->o->progress_ctx, done, v->nobj) != 0)
		return ims_error_set(-ECANCELED,
				     "verify of '%s/%s' cut at object %" PRIu64 " of %" PRIu64,
				     v->pool, v->image, done, v->nobj);
	return 0;
}

/* The newest replication snapshot of the secondary that the primary also has. */
static int newest_common(ims_site *src, ims_site *dst, const char *pool, const char *image,
			 char *name, size_t len)
{
	ims_snap_info *ps = NULL, *ss = NULL;
	size_t np = 0, ns = 0;
	int64_t best = -1;
	int r;
	if ((r = ims_snap_list(&ss, &ns, dst, pool, image)) < 0)
		return r;
	if ((r = ims_snap_list(&ps, &np, src, pool, image)) < 0)
		goto out;
	for (size_t i = 0; i < ns; i++) {
		int64_t t = ims_repl_snap_time(ss[i].name);
		if (t <= best)
			continue;
		for (size_t k = 0; k < np; k++) {
			if (strcmp(ps[k].name, ss[i].name) == 0) {
				best = t;
				snprintf(name, len, "%s", ss[i].name);
				break;
			}
		}
	}
	r = best < 0 ? ims_error_set(-ENOENT,
				     "no replication snapshot of '%s/%s' is sealed on both site "
				     "'%s' and site '%s'",
				     pool, image, ims_site_name(src), ims_site_name(dst))
		     : 0;
out:
	ims_snap_list_free(ss, ns);
	ims_snap_list_free(ps, np);
	return r;
}

void ims_repl_verify_result_free(ims_repl_verify_result *res)
{
	if (!res)
		return;
	free(res->mismatches);
	free(res);
}

/* The options, checked; the chunk size they ask for. */
static int verify_check(const ims_repl_verify_opts *o, uint32_t *chunk)
{
	*chunk = o->chunk_size ? o->chunk_size : DEFAULT_CHUNK;
	if (*chunk < MIN_CHUNK || (*chunk & (*chunk - 1)) != 0)
		return ims_error_set(
			-EINVAL,
			"verify: a chunk is a power of two of at least 4 KiB, not %" PRIu32,
			*chunk);
	if (o->src_snap_id && !(o->snap && o->snap[0]))
		return ims_error_set(
			-EINVAL,
			"verify: a snapshot id of the primary needs the secondary's snapshot name");
	if (o->snap && o->snap[0] &&
	    strlen(o->snap) >= sizeof(((ims_repl_verify_result *)0)->snapshot))
		return ims_error_set(-EINVAL, "verify: snapshot name too long");
	return 0;
}

/* Every object compared by a pool of workers; the mismatches they found in v->mm. */
static int verify_run(verifier *v)
{
	unsigned nworkers = v->o->concurrency ? v->o->concurrency : 8;
	if (nworkers > 64)
		nworkers = 64;
	if (nworkers > v->nobj)
		nworkers = v->nobj ? (unsigned)v->nobj : 1;
	ims_fanout_opts fo = IMS_FANOUT_OPTS_INIT;
	fo.workers = nworkers;
	fo.nitems = (size_t)v->nobj;
	fo.worker = verify_worker;
	fo.watch = verify_watch;
	fo.ctx = v;
	return ims_fanout_run(NULL, &fo);
}

/* The report's mismatches: what the workers found in any order, merged by offset, then the
 * size difference, if any. */
static int verify_mismatches(ims_repl_verify_result *res, verifier *v)
{
	ims_extents merged = {0};
	int r = 0;
	if (v->mm.n)
		qsort(v->mm.v, v->mm.n, sizeof(*v->mm.v), cmp_extent);
	for (size_t i = 0; i < v->mm.n && r == 0; i++)
		r = ims_extents_add(&merged, v->mm.v[i].off, v->mm.v[i].len, true);
	if (r == 0 && res->size_primary != res->size_secondary) {
		uint64_t hi = res->size_primary > res->size_secondary ? res->size_primary
								      : res->size_secondary;
		r = ims_extents_add(&merged, v->size, hi - v->size, true);
	}
	if (r == 0 && merged.n && !(res->mismatches = calloc(merged.n, sizeof(*res->mismatches))))
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < merged.n; i++)
		res->mismatches[i] = (ims_repl_extent){merged.v[i].off, merged.v[i].len};
	if (r == 0)
		res->nmismatches = merged.n;
	ims_extents_free(&merged);
	return r;
}

int ims_repl_verify(ims_repl_verify_result **out, ims_site *src, ims_site *dst, const char *pool,
		    const char *image, const ims_repl_verify_opts *o)
{
	ims_repl_verify_result *res = NULL;
	side a, b;
	verifier v;
	uint32_t chunk;
	double t0 = ims_clock_mono_s();
	int r;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&v, 0, sizeof(v));
	pthread_mutex_init(&v.lock, NULL);
	if (!out || !src || !dst || !pool || !image || !o ||
	    o->version != IMS_REPL_VERIFY_OPTS_VERSION) {
		r = ims_error_set(-EINVAL,
				  "verify: missing arguments or options of an unknown version");
		goto out;
	}
	if ((r = verify_check(o, &chunk)) < 0)
		goto out;
	if (!(res = calloc(1, sizeof(*res)))) {
		r = -ENOMEM;
		goto out;
	}
	if (o->snap && o->snap[0])
		snprintf(res->snapshot, sizeof(res->snapshot), "%s", o->snap);
	else if ((r = newest_common(src, dst, pool, image, res->snapshot, sizeof(res->snapshot))) <
		 0)
		goto out;
	if ((r = side_open(&a, src, pool, image, res->snapshot, o->src_snap_id)) < 0 ||
	    (r = side_open(&b, dst, pool, image, res->snapshot, 0)) < 0)
		goto out;
	if (chunk > a.obj_size)
		chunk = (uint32_t)a.obj_size;
	res->chunk_size = chunk;
	res->object_size = a.obj_size;
	res->size_primary = a.size;
	res->size_secondary = b.size;

	v.a = &a;
	v.b = &b;
	v.size = a.size < b.size ? a.size : b.size;
	v.obj_size = a.obj_size;
	v.chunk = chunk;
	v.by_object = a.simple && b.simple && a.obj_size == b.obj_size;
	v.nobj = (v.size + v.obj_size - 1) / v.obj_size;
	v.pool = pool;
	v.image = image;
	v.o = o;
	if ((r = verify_run(&v)) < 0 || (r = verify_mismatches(res, &v)) < 0)
		goto out;
	res->objects = v.nobj;
	res->objects_fallback = v.fallback;
	res->bytes_covered = v.size;
	res->bytes_read = v.bytes_read;
	res->equal = res->nmismatches == 0;
	res->seconds = ims_clock_mono_s() - t0;
	ims_log_debug("verified '%s/%s@%s' between site '%s' and site '%s': %s, %" PRIu64
		      " objects (%" PRIu64 " by bytes), %zu mismatching extents",
		      pool, image, res->snapshot, ims_site_name(src), ims_site_name(dst),
		      res->equal ? "equal" : "different", res->objects, res->objects_fallback,
		      res->nmismatches);
	*out = res;
	res = NULL;
	r = 0;
out:
	ims_extents_free(&v.mm);
	side_close(&a);
	side_close(&b);
	ims_repl_verify_result_free(res);
	pthread_mutex_destroy(&v.lock);
	return r;
}

/* ---------------------------------------------------------------------------------------- */
/* the same view of one copy, for the digests of snapshots (replicator/digest.c) */

struct ims_repl__snapview {
	side s;
};

int ims_repl__snapview_open(ims_repl__snapview **out, ims_repl__snapview_info *info, ims_site *site,
			    const char *pool, const char *image, const char *snap, uint64_t by_id)
{
	ims_repl__snapview *v = calloc(1, sizeof(*v));
	uint64_t id = by_id;
	int r;
	if (!v)
		return -ENOMEM;
	if ((r = side_open(&v->s, site, pool, image, snap, by_id)) == 0 && !by_id &&
	    (r = rbd_snap_get_id(v->s.img, snap, &id)) < 0)
		ims_error_set(r, "cannot find '%s/%s@%s': %s", pool, image, snap, ims_strerror(r));
	if (r < 0) {
		side_close(&v->s);
		free(v);
		return r;
	}
	*info = (ims_repl__snapview_info){.prefix = v->s.prefix,
					  .size = v->s.size,
					  .obj_size = v->s.obj_size,
					  .snap_id = id,
					  .simple = v->s.simple,
					  .parent = v->s.parent};
	*out = v;
	return 0;
}

void ims_repl__snapview_close(ims_repl__snapview *v)
{
	if (!v)
		return;
	side_close(&v->s);
	free(v);
}

int ims_repl__snapview_object(uint64_t *len, uint64_t *sums, ims_repl__snapview *v, uint64_t objno,
			      uint32_t chunk)
{
	char oid[160];
	uint64_t l = 0, off = objno * v->s.obj_size;
	uint64_t elen = v->s.size - off < v->s.obj_size ? v->s.size - off : v->s.obj_size;
	snprintf(oid, sizeof(oid), "%s.%016" PRIx64, v->s.prefix, objno);
	int r = object_len(&v->s, oid, &l);
	if (r < 0)
		return r;
	if (l > elen)
		l = elen;
	if (l && (r = object_checksums(&v->s, oid, l, chunk, sums)) < 0)
		return r;
	*len = l;
	return 0;
}

int ims_repl__snapview_read(char *buf, ims_repl__snapview *v, uint64_t off, size_t len)
{
	return read_extent(&v->s, "local", off, len, buf);
}
