#include "replicator/replicator.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <rbd/librbd.h>

#include "common/error.h"
#include "common/opts.h"
#include "common/extents.h"
#include "common/log.h"
#include "replicator/replicator_internal.h"
#include "replicator/snapsched.h"
#include "store/crypt.h"
#include "store/omap.h"
#include "store/snap.h"

#define SNAP_NAME_MAX 64

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t ims_repl_snap_time(const char *name)
{
	size_t n = strlen(IMS_REPL_SNAP_PREFIX);
	if (strncmp(name, IMS_REPL_SNAP_PREFIX, n) != 0 || !name[n])
		return -1;
	char *end;
	long long v = strtoll(name + n, &end, 10);
	return *end || v < 0 ? -1 : (int64_t)v;
}

typedef ims_repl__snaps repl_snaps;

static int cmp_snap(const void *a, const void *b)
{
	int64_t x = ims_repl_snap_time(a), y = ims_repl_snap_time(b);
	return x < y ? -1 : x > y;
}

int ims_repl__list_snaps(ims_repl__snaps *out, rbd_image_t image)
{
	ims_snap_info *all = NULL;
	size_t n = 0;
	memset(out, 0, sizeof(*out));
	int r = ims_snap_list_image(&all, &n, image);
	if (r < 0)
		return r;
	out->names = calloc(n + 1, sizeof(*out->names));
	if (!out->names) {
		ims_snap_list_free(all, n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		if (ims_repl_snap_time(all[i].name) >= 0 && strlen(all[i].name) < SNAP_NAME_MAX)
			snprintf(out->names[out->n++], SNAP_NAME_MAX, "%s", all[i].name);
	ims_snap_list_free(all, n);
	qsort(out->names, out->n, sizeof(*out->names), cmp_snap);
	return 0;
}

bool ims_repl__has_snap(const ims_repl__snaps *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->names[i], name) == 0)
			return true;
	return false;
}

int ims_repl_last_sealed(char *name, size_t len, int64_t *unix_ms, ims_site *site, const char *pool,
			 const char *image)
{
	rados_ioctx_t io;
	rbd_image_t img;
	repl_snaps s;
	int r = ims_site_ioctx(&io, site, pool);
	if (r < 0)
		return r;
	r = rbd_open_read_only(io, image, &img, NULL);
	if (r < 0) {
		ims_site_ioctx_close(io);
		return r == -ENOENT ? ims_error_set(r, "no image '%s/%s' on site '%s'", pool, image,
						    ims_site_name(site))
				    : ims_error_set(r, "cannot open '%s/%s': %s", pool, image,
						    ims_strerror(r));
	}
	r = ims_repl__list_snaps(&s, img);
	if (r == 0 && s.n == 0)
		r = ims_error_set(-ENOENT,
				  "'%s/%s' on site '%s' has no sealed replication snapshot", pool,
				  image, ims_site_name(site));
	if (r == 0) {
		snprintf(name, len, "%s", s.names[s.n - 1]);
		if (unix_ms)
			*unix_ms = ims_repl_snap_time(s.names[s.n - 1]);
	}
	free(s.names);
	rbd_close(img);
	ims_site_ioctx_close(io);
	return r;
}

static int count_extent(uint64_t off, size_t len, int exists, void *arg)
{
	(void)off;
	(void)len;
	(void)exists;
	++*(uint64_t *)arg;
	return 0;
}

int ims_repl__changed_since(bool *changed, rbd_image_t image, const char *snap)
{
	uint64_t head_size = 0, snap_size = 0, n = 0;
	int r = rbd_get_size(image, &head_size);
	if (r == 0 && (r = rbd_snap_set(image, snap)) == 0) {
		r = rbd_get_size(image, &snap_size);
		rbd_snap_set(image, NULL);
	}
	if (r < 0)
		return r;
	if (head_size != snap_size) {
		*changed = true;
		return 0;
	}
	r = rbd_diff_iterate2(image, snap, 0, head_size, 1, 1, count_extent, &n);
	if (r < 0)
		return r;
	*changed = n > 0;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* checkpoints */

typedef struct {
	char base[SNAP_NAME_MAX];
	char target[SNAP_NAME_MAX];
	uint64_t done; /* every extent below this offset is copied */
	bool full;
	bool fresh; /* a full copy into a secondary this cycle created: zeros need no write */
} checkpoint;

static void checkpoint_key(char *key, size_t len, const char *image, ims_site *dst)
{
	snprintf(key, len, "%s@%s", image, ims_site_name(dst));
}

static int checkpoint_save(rados_ioctx_t io, const char *key, const checkpoint *c)
{
	json_object *o = json_object_new_object();
	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "base", json_object_new_string(c->base));
	json_object_object_add(o, "target", json_object_new_string(c->target));
	json_object_object_add(o, "done", json_object_new_int64((int64_t)c->done));
	json_object_object_add(o, "full", json_object_new_boolean(c->full));
	json_object_object_add(o, "fresh", json_object_new_boolean(c->fresh));
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	int r = ims_omap_set(io, IMS_REPL_CHECKPOINTS, key, s, strlen(s));
	json_object_put(o);
	return r;
}

static bool checkpoint_load(rados_ioctx_t io, const char *key, checkpoint *c)
{
	char *val = NULL;
	size_t len;
	if (ims_omap_get(&val, &len, io, IMS_REPL_CHECKPOINTS, key) < 0)
		return false;
	json_object *o = json_tokener_parse(val), *v;
	free(val);
	if (!o)
		return false;
	memset(c, 0, sizeof(*c));
	if (json_object_object_get_ex(o, "base", &v))
		snprintf(c->base, sizeof(c->base), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "target", &v))
		snprintf(c->target, sizeof(c->target), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "done", &v))
		c->done = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "full", &v))
		c->full = json_object_get_boolean(v);
	if (json_object_object_get_ex(o, "fresh", &v))
		c->fresh = json_object_get_boolean(v);
	json_object_put(o);
	return c->target[0] != '\0';
}

/* ---------------------------------------------------------------------------------------- */
/* the copy */

static int write_zeroes(rbd_image_t img, uint64_t off, uint64_t len)
{
	while (len > 0) {
		size_t n = len > (1u << 30) ? (1u << 30) : (size_t)len;
		int r = rbd_write_zeroes(img, off, n, 0, 0);
		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------- */

/* librbd calls a progress function unconditionally */
int ims_repl__no_progress(uint64_t done, uint64_t total, void *arg)
{
	(void)done;
	(void)total;
	(void)arg;
	return 0;
}

/* The failover generation of an open copy (0 if it never took part in one), or the cluster's
 * error if it cannot tell. */
static int generation_of(rbd_image_t img, uint64_t *out)
{
	char buf[32];
	size_t len = sizeof(buf);
	int r = rbd_metadata_get(img, "imgstore.generation", buf, &len);
	*out = r == 0 ? strtoull(buf, NULL, 10) : 0;
	return r == -ENOENT || r == -ERANGE ? 0 : r;
}

/* Whether an open copy is marked as a secondary, into @p out; the cluster's error if it cannot
 * tell (a blocklisted client, a site that does not answer): never a guess. */
static int is_secondary(rbd_image_t img, bool *out)
{
	char role[32];
	size_t rlen = sizeof(role);
	int r = rbd_metadata_get(img, "imgstore.repl.role", role, &rlen);
	*out = r == 0 && strcmp(role, "secondary") == 0;
	return r == -ENOENT || r == -ERANGE ? 0 : r;
}

int ims_repl__hold(ims_site *site, const char *pool, const char *image)
{
	rbd_image_t held;
	int r = ims_site_guard_get(&held, site, pool, image);
	if (r == 0)
		ims_site_guard_put(site, pool, image, false); /* kept: held until let go */
	return r;
}

unsigned ims_repl__fence_stale(const char *key, ims_site *site, const char *pool, const char *image)
{
	unsigned fenced = 0;
	if (ims_repl_fence(&fenced, site, pool, image) < 0)
		ims_log_warning("replication of '%s': cannot fence the writers of the stale copy "
				"of '%s/%s' on site '%s': %s",
				key, pool, image, ims_site_name(site), ims_error_last());
	return fenced;
}

void ims_repl__hold_secondary(ims_site *dst, const char *pool, const char *image)
{
	rados_ioctx_t dio;
	rbd_image_t probe, held;
	bool secondary = false;
	if (ims_site_ioctx(&dio, dst, pool) < 0)
		goto out;
	/* the role before the lock (a primary's lock is its hypervisors'), and after it */
	if (rbd_open_read_only(dio, image, &probe, NULL) == 0) {
		if (is_secondary(probe, &secondary) < 0)
			secondary = false;
		rbd_close(probe);
	}
	ims_site_ioctx_close(dio);
	if (!secondary || ims_site_guard_get(&held, dst, pool, image) < 0)
		goto out;
	if (is_secondary(held, &secondary) < 0)
		secondary = false;
	ims_site_guard_put(dst, pool, image, !secondary); /* promoted since: let go at once */
out:
	if (ims_error_last()[0])
		ims_log_debug("'%s/%s' on site '%s' not held against other writers: %s", pool,
			      image, ims_site_name(dst), ims_error_last());
	ims_error_clear();
}

/*
 * The secondary, created on first use, as the guarded handle of this process (store/site.h):
 * nobody else writes to it while we hold it. The role is checked before the lock is taken (a
 * primary's lock belongs to its hypervisors) and again after (a promotion in between).
 * Returned through ims_site_guard_put().
 */
static int open_or_create_secondary(ims_site *src, ims_site *dst, rados_ioctx_t dio,
				    const char *pool, const char *image, rbd_image_t pimg,
				    rbd_image_t *out, bool *created)
{
	rbd_image_t probe = NULL;
	int r = rbd_open_read_only(dio, image, &probe, NULL);
	*created = false;
	*out = NULL;
	if (r == -ENOENT) {
		uint64_t size, features;
		rbd_image_info_t info;
		rbd_image_options_t o;
		if ((r = rbd_stat(pimg, &info, sizeof(info))) < 0 ||
		    (r = rbd_get_features(pimg, &features)) < 0)
			return ims_error_set(r, "cannot read '%s/%s' on site '%s'", pool, image,
					     ims_site_name(src));
		rbd_image_options_create(&o);
		rbd_image_options_set_uint64(o, RBD_IMAGE_OPTION_FEATURES,
					     features & ~(uint64_t)RBD_FEATURE_DATA_POOL);
		rbd_image_options_set_uint64(o, RBD_IMAGE_OPTION_ORDER, (uint64_t)info.order);
		size = info.size;
		r = rbd_create4(dio, image, size, o);
		rbd_image_options_destroy(o);
		if (r < 0)
			return ims_error_set(r,
					     "cannot create the secondary '%s/%s' on site '%s': %s",
					     pool, image, ims_site_name(dst), ims_strerror(r));
		if ((r = ims_site_guard_get(out, dst, pool, image)) < 0)
			return ims_error_set(
				r, "cannot open the new secondary '%s/%s' on site '%s': %s", pool,
				image, ims_site_name(dst), ims_error_last());
		char source[512];
		snprintf(source, sizeof(source), "%s/%s/%s", ims_site_name(src), pool, image);
		/* an encrypted image's wrapped key goes with its ciphertext (store/crypt.h) */
		if ((r = rbd_metadata_set(*out, "imgstore.repl.role", "secondary")) < 0 ||
		    (r = rbd_metadata_set(*out, "imgstore.repl.source", source)) < 0 ||
		    (r = ims_crypt_copy_key(*out, pimg)) < 0) {
			ims_site_guard_put(dst, pool, image, true);
			*out = NULL;
			ims_site_guard_drop(dst, pool, image);
			rbd_remove(dio, image);
			return ims_error_set(r, "cannot mark '%s/%s' on site '%s' as a secondary",
					     pool, image, ims_site_name(dst));
		}
		*created = true;
		return 0;
	}
	if (r < 0)
		return ims_error_set(r, "cannot open '%s/%s' on site '%s': %s", pool, image,
				     ims_site_name(dst), ims_strerror(r));
	bool secondary;
	if ((r = is_secondary(probe, &secondary)) < 0) {
		rbd_close(probe);
		return ims_error_set(r, "cannot read the role of '%s/%s' on site '%s': %s", pool,
				     image, ims_site_name(dst), ims_strerror(r));
	}
	if (secondary) {
		rbd_close(probe);
		probe = NULL;
		if ((r = ims_site_guard_get(out, dst, pool, image)) < 0)
			return r;
		if ((r = is_secondary(*out, &secondary)) < 0) {
			ims_site_guard_put(dst, pool, image, true);
			*out = NULL;
			return ims_error_set(r, "cannot read the role of '%s/%s' on site '%s': %s",
					     pool, image, ims_site_name(dst), ims_strerror(r));
		}
		if (secondary)
			return 0;
		/* promoted since: let go of it at once */
		ims_site_guard_put(dst, pool, image, true);
		*out = NULL;
		if ((r = rbd_open_read_only(dio, image, &probe, NULL)) < 0)
			return ims_error_set(r, "cannot open '%s/%s' on site '%s': %s", pool, image,
					     ims_site_name(dst), ims_strerror(r));
	}
	/* a primary there: a failover made it one (it carries a generation), or it is another
	 * image of the same name; a guard this daemon still has on it goes */
	ims_site_guard_drop(dst, pool, image);
	uint64_t sgen, dgen;
	if ((r = generation_of(pimg, &sgen)) < 0 || (r = generation_of(probe, &dgen)) < 0) {
		rbd_close(probe);
		return ims_error_set(r, "cannot read the failover generations of '%s/%s': %s", pool,
				     image, ims_strerror(r));
	}
	rbd_close(probe);
	if (dgen > sgen)
		return ims_error_set(
			-ESTALE,
			"'%s/%s' on site '%s' is stale: site '%s' was promoted (generation %" PRIu64
			" > %" PRIu64 "); this copy must not replicate; resync it from site '%s'",
			pool, image, ims_site_name(src), ims_site_name(dst), dgen, sgen,
			ims_site_name(dst));
	if (sgen > dgen)
		return ims_error_set(
			-EUCLEAN,
			"'%s/%s' on site '%s' is an old primary that came back (generation %" PRIu64
			" < %" PRIu64 ")",
			pool, image, ims_site_name(dst), dgen, sgen);
	return ims_error_set(
		-EEXIST, "site '%s' has an image '%s/%s' that is not a replica; nothing changed",
		ims_site_name(dst), pool, image);
}

/* ---------------------------------------------------------------------------------------- */
/* retention, per target */

/*
 * Every pair (image, target) records the base it last sealed in IMS_REPL__BASES, and a running
 * or cut cycle its base and target in IMS_REPL_CHECKPOINTS, both keyed "image@site" in the
 * primary's pool. Retention on the primary never removes one of those snapshots of any pair of
 * the image: a slower second target keeps its base however many cycles the faster one runs.
 */
typedef struct {
	const char *image;
	size_t ilen;
	const char *skip_key; /* the pair being forgotten, or NULL */
	ims_repl__snaps *keep;
	int err;
} protect_walk;

static void protect_add(protect_walk *w, const char *name)
{
	if (!name[0] || strlen(name) >= SNAP_NAME_MAX || ims_repl__has_snap(w->keep, name))
		return;
	void *v = realloc(w->keep->names, (w->keep->n + 1) * sizeof(*w->keep->names));
	if (!v) {
		w->err = -ENOMEM;
		return;
	}
	w->keep->names = v;
	snprintf(w->keep->names[w->keep->n++], SNAP_NAME_MAX, "%s", name);
}

static bool pair_key_of(const protect_walk *w, const char *key, size_t klen)
{
	if (klen <= w->ilen || memcmp(key, w->image, w->ilen) != 0 || key[w->ilen] != '@')
		return false;
	return !w->skip_key || strlen(w->skip_key) != klen || memcmp(key, w->skip_key, klen) != 0;
}

static int protect_base(void *ctx, const char *key, size_t klen, const char *val, size_t vlen)
{
	protect_walk *w = ctx;
	char name[SNAP_NAME_MAX];
	if (pair_key_of(w, key, klen) && vlen < sizeof(name)) {
		memcpy(name, val, vlen);
		name[vlen] = '\0';
		protect_add(w, name);
	}
	return 0;
}

static int protect_cycle(void *ctx, const char *key, size_t klen, const char *val, size_t vlen)
{
	protect_walk *w = ctx;
	if (!pair_key_of(w, key, klen))
		return 0;
	char *text = strndup(val, vlen);
	if (!text)
		return w->err = -ENOMEM;
	json_object *o = json_tokener_parse(text), *v;
	free(text);
	if (!o) /* unreadable: keep everything rather than guess */
		return w->err = -EBADMSG;
	if (json_object_object_get_ex(o, "base", &v))
		protect_add(w, json_object_get_string(v));
	if (json_object_object_get_ex(o, "target", &v))
		protect_add(w, json_object_get_string(v));
	json_object_put(o);
	return 0;
}

static void apply_retention(rbd_image_t img, const repl_snaps *s, unsigned keep,
			    const repl_snaps *protect);

/* The snapshots of @p image that some pair still needs: every recorded base and every running
 * cycle's base and target, but those of @p skip_key's pair. */
static int protected_snaps(rados_ioctx_t io, const char *image, const char *skip_key,
			   ims_repl__snaps *out)
{
	protect_walk w = {image, strlen(image), skip_key, out, 0};
	memset(out, 0, sizeof(*out));
	int r = ims_omap_foreach(io, IMS_REPL__BASES, protect_base, &w);
	if (r == 0)
		r = ims_omap_foreach(io, IMS_REPL_CHECKPOINTS, protect_cycle, &w);
	if (r == 0)
		r = w.err;
	if (r < 0) {
		free(out->names);
		memset(out, 0, sizeof(*out));
	}
	return r;
}

int ims_repl_forget(ims_site *site, const char *pool, const char *image, const char *target,
		    bool drop_snapshots)
{
	rados_ioctx_t io;
	rbd_image_t img = NULL;
	repl_snaps all = {0}, protect = {0};
	char key[600];
	int r = ims_site_ioctx(&io, site, pool);
	if (r < 0)
		return r;
	snprintf(key, sizeof(key), "%s@%s", image, target);
	if ((r = ims_omap_rm(io, IMS_REPL__BASES, key)) < 0 && r != -ENOENT)
		goto out;
	if ((r = ims_omap_rm(io, IMS_REPL_CHECKPOINTS, key)) < 0 && r != -ENOENT)
		goto out;
	r = 0;
	if (!drop_snapshots)
		goto out;
	if ((r = protected_snaps(io, image, key, &protect)) < 0) {
		ims_error_set(r, "cannot read what the other targets of '%s/%s' need: %s", pool,
			      image, ims_strerror(r));
		goto out;
	}
	if ((r = rbd_open(io, image, &img, NULL)) < 0) {
		r = r == -ENOENT ? 0
				 : ims_error_set(r, "cannot open '%s/%s': %s", pool, image,
						 ims_strerror(r));
		goto out;
	}
	if ((r = ims_repl__list_snaps(&all, img)) == 0)
		apply_retention(img, &all, 0, &protect);
out:
	free(all.names);
	free(protect.names);
	if (img)
		rbd_close(img);
	ims_site_ioctx_close(io);
	return r;
}

/* Keep the newest @p keep of @p s and every snapshot in @p protect; remove the rest. */
static void apply_retention(rbd_image_t img, const repl_snaps *s, unsigned keep,
			    const repl_snaps *protect)
{
	if (s->n <= keep)
		return;
	for (size_t i = 0; i + keep < s->n; i++) {
		if (protect && ims_repl__has_snap(protect, s->names[i]))
			continue;
		int r = rbd_snap_remove(img, s->names[i]);
		if (r < 0 && r != -ENOENT)
			ims_log_debug("retention: cannot remove snapshot '%s': %s", s->names[i],
				      ims_strerror(r));
	}
}

/* Where a cycle's time goes, for the debug log: "open 0.01 snap 0.30 ...". */
typedef struct {
	char text[256];
	size_t len;
	double last;
} phases;

static void phase(phases *p, const char *name)
{
	double t = now_s();
	if (p->len < sizeof(p->text)) {
		int n = snprintf(p->text + p->len, sizeof(p->text) - p->len, "%s%s %.3f",
				 p->len ? " " : "", name, t - p->last);
		if (n > 0)
			p->len += (size_t)n;
	}
	p->last = t;
}

/* One cycle of one pair, through its steps. */
typedef struct {
	ims_site *src, *dst;
	const char *pool, *image;
	const ims_repl_opts *o;
	bool member; /* a member's part of a group's cut: the group's cycle took the snapshots */
	char key[600], what[600];
	rados_ioctx_t sio, dio;
	rbd_image_t pimg, psnap, simg;
	repl_snaps ps, ss;
	bool created;
	char base[SNAP_NAME_MAX];
	checkpoint cp;
	ims_repl_result res;
	phases ph;
	double t0;
} cycle;

static int64_t now_unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The primary (never a secondary), the secondary (created on first use), their snapshots. */
static int cycle_open(cycle *cy)
{
	char role[32];
	size_t rlen = sizeof(role);
	int r;
	if ((!cy->sio && (r = ims_site_ioctx(&cy->sio, cy->src, cy->pool)) < 0) ||
	    (r = ims_site_ioctx(&cy->dio, cy->dst, cy->pool)) < 0)
		return r;
	if ((r = rbd_open(cy->sio, cy->image, &cy->pimg, NULL)) < 0) {
		if (r == -ENOENT)
			return ims_error_set(r, "no image '%s/%s' on site '%s'", cy->pool,
					     cy->image, ims_site_name(cy->src));
		return ims_error_set(r, "cannot open '%s/%s' on site '%s': %s", cy->pool, cy->image,
				     ims_site_name(cy->src), ims_strerror(r));
	}
	if (rbd_metadata_get(cy->pimg, "imgstore.repl.role", role, &rlen) == 0 &&
	    strcmp(role, "secondary") == 0) {
		cy->res.refused = IMS_REPL_REFUSED_SECONDARY;
		return ims_error_set(-EBUSY,
				     "%s on site '%s' is a secondary; replicate from its primary",
				     cy->what, ims_site_name(cy->src));
	}
	if ((r = open_or_create_secondary(cy->src, cy->dst, cy->dio, cy->pool, cy->image, cy->pimg,
					  &cy->simg, &cy->created)) < 0) {
		if (r == -EBUSY) /* the guard's lock is another client's (store/site.h) */
			cy->res.refused = IMS_REPL_REFUSED_HELD;
		return r;
	}
	if ((r = ims_repl__list_snaps(&cy->ps, cy->pimg)) < 0 ||
	    (r = ims_repl__list_snaps(&cy->ss, cy->simg)) < 0)
		return ims_error_set(r, "cannot list the snapshots of %s", cy->what);
	phase(&cy->ph, "open");
	return 0;
}

/* The base: the newest snapshot sealed on the secondary that the primary still has; a member's
 * is the group's. */
static void pick_base(cycle *cy)
{
	if (cy->member) {
		snprintf(cy->base, sizeof(cy->base), "%s", cy->o->cut_from ? cy->o->cut_from : "");
		return;
	}
	for (size_t i = cy->ss.n; i-- > 0;) {
		if (ims_repl__has_snap(&cy->ps, cy->ss.names[i])) {
			snprintf(cy->base, sizeof(cy->base), "%s", cy->ss.names[i]);
			return;
		}
	}
}

/* The RADOS versions of image @p id's header and object map (ims_repl_mark). */
static int object_versions(uint64_t *header, uint64_t *map, rados_ioctx_t io, const char *id)
{
	char oid[64];
	uint64_t size;
	time_t mtime;
	int r;
	snprintf(oid, sizeof(oid), "rbd_header.%s", id);
	if ((r = rados_stat(io, oid, &size, &mtime)) < 0)
		return r;
	*header = rados_get_last_version(io);
	snprintf(oid, sizeof(oid), "rbd_object_map.%s", id);
	if ((r = rados_stat(io, oid, &size, &mtime)) < 0)
		return r;
	*map = rados_get_last_version(io);
	return 0;
}

/* Whether the pair's mark says nothing changed since its last check (ims_repl_mark): then the
 * target is current as of now, told without opening the image. */
static bool quick_unchanged(cycle *cy)
{
	ims_repl_mark *m = cy->o->mark;
	int64_t check_ms = now_unix_ms();
	uint64_t hv = 0, mv = 0;
	rados_ioctx_t io = NULL;
	if (check_ms - m->checked_unix_ms <= IMS_REPL_MARK_MAX_MS &&
	    ims_site_ioctx(&io, cy->src, cy->pool) == 0)
		cy->sio = io; /* the cycle's, if it goes on */
	if (!cy->sio || object_versions(&hv, &mv, cy->sio, m->id) < 0 || hv != m->header_version ||
	    mv != m->map_version) {
		ims_error_clear();
		m->valid = false;
		return false;
	}
	phase(&cy->ph, "mark");
	cy->res.unchanged = true;
	cy->res.quick = true;
	snprintf(cy->res.base, sizeof(cy->res.base), "%s", m->base);
	snprintf(cy->res.sealed, sizeof(cy->res.sealed), "%s", m->base);
	cy->res.sealed_unix_ms = check_ms;
	cy->res.size = m->size;
	return true;
}

/* Before the full check: the versions a mark would hold, read before the check so that a write
 * racing the check changes them. False when the image cannot have one (no valid fast-diff
 * object map). */
static bool mark_begin(ims_repl_mark *m, cycle *cy)
{
	uint64_t features = 0, flags = 0;
	memset(m, 0, sizeof(*m));
	if (rbd_get_features(cy->pimg, &features) < 0 || !(features & RBD_FEATURE_FAST_DIFF) ||
	    rbd_get_flags(cy->pimg, &flags) < 0 ||
	    (flags & (RBD_FLAG_OBJECT_MAP_INVALID | RBD_FLAG_FAST_DIFF_INVALID)) ||
	    rbd_get_id(cy->pimg, m->id, sizeof(m->id)) < 0 ||
	    object_versions(&m->header_version, &m->map_version, cy->sio, m->id) < 0)
		return false;
	return true;
}

/* Whether nothing changed since the base: then the target is current as of now (res says so).
 * An error of the check counts as a change. */
static bool check_unchanged(cycle *cy)
{
	int64_t check_ms = now_unix_ms();
	uint64_t head_size = 0;
	bool changed = true;
	ims_repl_mark m;
	bool marked = cy->o->mark && mark_begin(&m, cy);
	int r = ims_repl__changed_since(&changed, cy->pimg, cy->base);
	if (r == 0)
		r = rbd_get_size(cy->pimg, &head_size);
	phase(&cy->ph, "check");
	if (r < 0 || changed)
		return false;
	cy->res.unchanged = true;
	snprintf(cy->res.base, sizeof(cy->res.base), "%s", cy->base);
	snprintf(cy->res.sealed, sizeof(cy->res.sealed), "%s", cy->base);
	cy->res.sealed_unix_ms = check_ms;
	cy->res.size = head_size;
	if (marked) {
		m.size = head_size;
		snprintf(m.base, sizeof(m.base), "%s", cy->base);
		m.checked_unix_ms = check_ms;
		m.valid = true;
		*cy->o->mark = m;
	}
	return true;
}

/* A cut cycle resumes if its target is still there and not sealed, from the same base; else a
 * new target (the primary's snapshot, unless the group took it) and its checkpoint. */
static int checkpoint_begin(cycle *cy, const checkpoint *old)
{
	const ims_repl_opts *o = cy->o;
	int r;
	if (old &&
	    (cy->member ? strcmp(old->target, o->cut) == 0
			: ims_repl__has_snap(&cy->ps, old->target)) &&
	    !ims_repl__has_snap(&cy->ss, old->target) && strcmp(old->base, cy->base) == 0 &&
	    !cy->created) {
		cy->cp = *old;
		cy->res.resumed = true;
		return 0;
	}
	int64_t ms = now_unix_ms();
	if (cy->ps.n && ims_repl_snap_time(cy->ps.names[cy->ps.n - 1]) >= ms)
		ms = ims_repl_snap_time(cy->ps.names[cy->ps.n - 1]) + 1; /* names stay ordered */
	snprintf(cy->cp.target, sizeof(cy->cp.target), IMS_REPL_SNAP_PREFIX "%013lld",
		 (long long)ms);
	if (cy->member)
		snprintf(cy->cp.target, sizeof(cy->cp.target), "%s", o->cut);
	snprintf(cy->cp.base, sizeof(cy->cp.base), "%s", cy->base);
	cy->cp.full = cy->base[0] == '\0';
	cy->cp.fresh = cy->created;
	cy->cp.done = 0;
	if (!cy->member && (r = rbd_snap_create(cy->pimg, cy->cp.target)) < 0)
		return ims_error_set(r, "cannot snapshot %s on site '%s': %s", cy->what,
				     ims_site_name(cy->src), ims_strerror(r));
	if ((r = checkpoint_save(cy->sio, cy->key, &cy->cp)) < 0)
		return ims_error_set(r, "cannot record the replication checkpoint of %s: %s",
				     cy->what, ims_strerror(r));
	phase(&cy->ph, "snap");
	return 0;
}

/* The secondary takes the target's size (and is cleared before a full copy into an existing
 * one); @p todo is the delta from the base to the target, read at the target, but what a cut
 * cycle already copied (a view into @p ext). */
static int plan(cycle *cy, ims_extents *ext, ims_extents *todo)
{
	const checkpoint *cp = &cy->cp;
	const char *what = cy->what;
	uint64_t size, ssize;
	int r;
	snprintf(cy->res.base, sizeof(cy->res.base), "%s", cp->base);
	snprintf(cy->res.sealed, sizeof(cy->res.sealed), "%s", cp->target);
	cy->res.full = cp->full;
	cy->res.sealed_unix_ms = ims_repl_snap_time(cp->target);
	if ((r = rbd_open_read_only(cy->sio, cy->image, &cy->psnap,
				    cy->member ? NULL : cp->target)) < 0 ||
	    (cy->member && (r = rbd_snap_set_by_id(cy->psnap, cy->o->cut_snap_id)) < 0))
		return ims_error_set(r, "cannot open %s at '%s': %s", what, cp->target,
				     ims_strerror(r));
	if ((r = rbd_get_size(cy->psnap, &size)) < 0 || (r = rbd_get_size(cy->simg, &ssize)) < 0)
		return r;
	cy->res.size = size;
	if (ssize != size &&
	    (r = rbd_resize2(cy->simg, size, true, ims_repl__no_progress, NULL)) < 0)
		return ims_error_set(r, "cannot resize the secondary %s to %" PRIu64 ": %s", what,
				     size, ims_strerror(r));
	/* no common snapshot and an existing secondary: clear it, a full copy follows */
	if (cp->full && !cp->fresh && cp->done == 0 && (r = write_zeroes(cy->simg, 0, size)) < 0)
		return ims_error_set(r, "cannot clear the secondary %s: %s", what, ims_strerror(r));
	r = rbd_diff_iterate2(cy->psnap, cp->full ? NULL : cp->base, 0, size, 1, 0,
			      ims_extents_diff_all, ext);
	if (r < 0)
		return ims_error_set(r, "cannot compute the delta of %s from '%s' to '%s': %s",
				     what, cp->full ? "nothing" : cp->base, cp->target,
				     ims_strerror(r));
	phase(&cy->ph, "plan");
	size_t first = 0;
	while (first < ext->n && ext->v[first].off + ext->v[first].len <= cp->done)
		first++;
	if (first < ext->n && ext->v[first].off < cp->done) {
		ext->v[first].len -= cp->done - ext->v[first].off;
		ext->v[first].off = cp->done;
	}
	*todo = (ims_extents){ext->v + first, ext->n - first, 0};
	cy->res.extents = todo->n;
	return 0;
}

/* The copy's reports: progress (which may cut it) and checkpoints of what is surely done, so
 * that a cut cycle resumes there. */
typedef struct {
	cycle *cy;
	uint64_t total, every, last_cp;
} copy_watcher;

static int copy_watch(void *ctx, uint64_t done, uint64_t low_water)
{
	copy_watcher *w = ctx;
	cycle *cy = w->cy;
	const ims_repl_opts *o = cy->o;
	if (o->progress && o->progress(o->progress_ctx, done, w->total) != 0)
		return ims_error_set(-ECANCELED,
				     "replication of %s cut at %" PRIu64 " of %" PRIu64
				     " bytes; it resumes",
				     cy->what, done, w->total);
	if (low_water != UINT64_MAX && low_water > w->last_cp &&
	    low_water - w->last_cp >= w->every) {
		cy->cp.done = low_water;
		checkpoint_save(cy->sio, cy->key, &cy->cp);
		w->last_cp = low_water;
	}
	return 0;
}

/* The delta (replicator/copy.c); on an error the checkpoint keeps what is surely done. */
static int copy(cycle *cy, const ims_extents *todo)
{
	const ims_repl_opts *o = cy->o;
	copy_watcher w = {.cy = cy, .total = ims_extents_bytes(todo), .last_cp = cy->cp.done};
	w.every = o->checkpoint_bytes ? o->checkpoint_bytes : (16u << 20);
	ims_repl__copy_job j = {.src = cy->psnap, .dst = cy->simg, .ext = todo, .what = cy->what};
	j.fresh = cy->cp.full && cy->cp.fresh;
	j.depth = o->concurrency ? o->concurrency : 16;
	if (j.depth > 256)
		j.depth = 256;
	j.budget = o->inflight_bytes ? o->inflight_bytes : (64u << 20);
	j.bandwidth = o->bandwidth;
	j.watch = copy_watch;
	j.ctx = &w;
	ims_repl__copy_result res;
	int r = ims_repl__copy(&res, &j);
	phase(&cy->ph, "copy");
	cy->res.bytes_copied += res.copied;
	cy->res.bytes_discarded = res.zeroed;
	if (r < 0 && res.low_water != UINT64_MAX && res.low_water > cy->cp.done) {
		cy->cp.done = res.low_water;
		checkpoint_save(cy->sio, cy->key, &cy->cp);
	}
	return r;
}

/*
 * Seal: the secondary's snapshot of the same name, only when everything is written, and only by
 * the owner of the pair (a daemon whose lock lapsed must not seal what another daemon may be
 * cycling now). Then the pair's new base, recorded before the cycle's checkpoint goes:
 * retention of another pair always sees one of the two.
 */
static int seal(cycle *cy)
{
	const ims_repl_opts *o = cy->o;
	int r;
	if (o->may_seal && o->may_seal(o->progress_ctx) != 0)
		return ims_error_set(-ECANCELED,
				     "%s: this daemon's lock on the pair was lost before the seal; "
				     "the cycle stops "
				     "unsealed (its owner now goes on)",
				     cy->what);
	/* (the guard refuses every other client's snapshot through a quiesce watch: skip it) */
	if ((r = rbd_flush(cy->simg)) < 0 ||
	    (r = rbd_snap_create2(cy->simg, cy->cp.target, RBD_SNAP_CREATE_SKIP_QUIESCE,
				  ims_repl__no_progress, NULL)) < 0)
		return ims_error_set(r, "cannot seal %s on site '%s' at '%s': %s", cy->what,
				     ims_site_name(cy->dst), cy->cp.target, ims_strerror(r));
	phase(&cy->ph, "seal");
	if (!cy->member && (r = ims_omap_set(cy->sio, IMS_REPL__BASES, cy->key, cy->cp.target,
					     strlen(cy->cp.target))) < 0)
		return ims_error_set(r, "cannot record the base of %s for site '%s': %s", cy->what,
				     ims_site_name(cy->dst), ims_strerror(r));
	ims_omap_rm(cy->sio, IMS_REPL_CHECKPOINTS, cy->key);
	return 0;
}

/*
 * Scheduled snapshots (replicator/snapsched.h) ride along: in a fresh cycle (no cut cycle to
 * resume, a base on both sides), once its target is taken and before its delta is copied (or
 * when nothing changed since the base), each scheduled snapshot the primary took after the base
 * (and before the target) that the secondary lacks is shipped in the order taken: the delta from
 * the previous one (or the base), read at it, then the secondary's snapshot of the same name, so
 * that it holds the primary's bytes at that point. The secondary's head is at the base (or at the
 * last one shipped) when no cut cycle is pending: a failed shipment is rewritten whole by the next
 * cycle's delta.
 */
/* @returns 1 if @p snap is gone from the primary (nothing done that matters), 0 once shipped. */
static int ship_one(cycle *cy, const char *from, const char *snap, uint64_t size)
{
	rbd_image_t at = NULL;
	ims_extents ext = {0};
	uint64_t ssize = 0;
	int r;
	if ((r = rbd_open_read_only(cy->sio, cy->image, &at, snap)) == -ENOENT)
		return 1; /* pruned on the primary meanwhile */
	if (r < 0)
		return ims_error_set(r, "cannot open %s at '%s': %s", cy->what, snap,
				     ims_strerror(r));
	if ((r = rbd_get_size(cy->simg, &ssize)) < 0)
		goto out;
	if (ssize != size &&
	    (r = rbd_resize2(cy->simg, size, true, ims_repl__no_progress, NULL)) < 0) {
		r = ims_error_set(r, "cannot resize the secondary %s: %s", cy->what,
				  ims_strerror(r));
		goto out;
	}
	r = rbd_diff_iterate2(at, from, 0, size, 1, 0, ims_extents_diff_all, &ext);
	if (r == -ENOENT && strcmp(from, cy->base) != 0) {
		/* the one before was pruned on the primary since it was shipped: the delta from the
		 * base holds every extent that changed since, read at this one */
		ims_extents_free(&ext);
		ext = (ims_extents){0};
		from = cy->base;
		r = rbd_diff_iterate2(at, from, 0, size, 1, 0, ims_extents_diff_all, &ext);
	}
	bool there = true;
	if (r == -ENOENT && rbd_snap_exists(cy->pimg, snap, &there) == 0 && !there) {
		r = 1; /* pruned meanwhile itself */
		goto out;
	}
	if (r < 0) {
		r = ims_error_set(r, "cannot compute the delta of %s from '%s' to '%s': %s",
				  cy->what, from, snap, ims_strerror(r));
		goto out;
	}
	const ims_repl_opts *o = cy->o;
	ims_repl__copy_job j = {.src = at, .dst = cy->simg, .ext = &ext, .what = cy->what};
	j.depth = o->concurrency ? o->concurrency : 16;
	if (j.depth > 256)
		j.depth = 256;
	j.budget = o->inflight_bytes ? o->inflight_bytes : (64u << 20);
	j.bandwidth = o->bandwidth;
	ims_repl__copy_result res;
	bool exists = true;
	if ((r = ims_repl__copy(&res, &j)) < 0) {
		/* pruned on the primary while read: the next one's delta covers what was written */
		if (rbd_snap_exists(cy->pimg, snap, &exists) == 0 && !exists) {
			ims_error_clear();
			r = 1;
		}
		goto out;
	}
	cy->res.bytes_copied += res.copied;
	if (o->may_seal && o->may_seal(o->progress_ctx) != 0) {
		r = ims_error_set(-ECANCELED, "%s: this daemon's lock on the pair was lost",
				  cy->what);
		goto out;
	}
	if ((r = rbd_flush(cy->simg)) < 0 ||
	    (r = rbd_snap_create2(cy->simg, snap, RBD_SNAP_CREATE_SKIP_QUIESCE,
				  ims_repl__no_progress, NULL)) < 0)
		r = r == -EEXIST
			    ? 0
			    : ims_error_set(
				      r,
				      "cannot create the scheduled snapshot '%s' of %s on site "
				      "'%s': %s",
				      snap, cy->what, ims_site_name(cy->dst), ims_strerror(r));
	else {
		ims_log_info("shipped the scheduled snapshot '%s' of %s to site '%s'", snap,
			     cy->what, ims_site_name(cy->dst));
		if (cy->res.nshipped < IMS_REPL_SHIPPED_MAX)
			snprintf(cy->res.shipped[cy->res.nshipped], sizeof(cy->res.shipped[0]),
				 "%s", snap);
		cy->res.nshipped++;
	}
out:
	ims_extents_free(&ext);
	rbd_close(at);
	return r;
}

static int cmp_snap_id(const void *a, const void *b)
{
	const ims_snap_info *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static bool info_has(const ims_snap_info *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return true;
	return false;
}

/* Those taken after the base and, if @p upto is not NULL, before that snapshot. */
static int ship_scheduled(cycle *cy, const char *upto)
{
	ims_snap_info *ps = NULL, *ss = NULL;
	size_t np = 0, ns = 0;
	uint64_t base_id = 0, upto_id = UINT64_MAX;
	int r;
	if ((r = ims_snap_list_image(&ps, &np, cy->pimg)) < 0 ||
	    (r = ims_snap_list_image(&ss, &ns, cy->simg)) < 0)
		goto out;
	qsort(ps, np, sizeof(*ps), cmp_snap_id);
	for (size_t i = 0; i < np; i++)
		if (strcmp(ps[i].name, cy->base) == 0)
			base_id = ps[i].id;
		else if (upto && strcmp(ps[i].name, upto) == 0)
			upto_id = ps[i].id;
	char from[SNAP_NAME_MAX];
	snprintf(from, sizeof(from), "%s", cy->base);
	for (size_t i = 0; base_id && i < np; i++) {
		if (ps[i].id <= base_id || ps[i].id >= upto_id ||
		    ims_snapsched_snap_time(ps[i].name) < 0 || strlen(ps[i].name) >= SNAP_NAME_MAX)
			continue;
		if (!info_has(ss, ns, ps[i].name) &&
		    (r = ship_one(cy, from, ps[i].name, ps[i].size)) != 0) {
			if (r < 0)
				goto out;
			continue; /* gone: the next one is shipped from the same point */
		}
		snprintf(from, sizeof(from), "%s", ps[i].name);
	}
	phase(&cy->ph, "scheduled");
	r = 0;
out:
	ims_snap_list_free(ps, np);
	ims_snap_list_free(ss, ns);
	return r;
}

/* The secondary's scheduled snapshots that the primary's retention removed go too (never a
 * protected one: a clone on the secondary's site depends on it). */
static void retain_scheduled(cycle *cy)
{
	ims_snap_info *ps = NULL, *ss = NULL;
	size_t np = 0, ns = 0;
	if (ims_snap_list_image(&ps, &np, cy->pimg) < 0 ||
	    ims_snap_list_image(&ss, &ns, cy->simg) < 0)
		goto out;
	for (size_t i = 0; i < ns; i++) {
		if (ims_snapsched_snap_time(ss[i].name) < 0 || ss[i].is_protected ||
		    info_has(ps, np, ss[i].name))
			continue;
		int r = rbd_snap_remove(cy->simg, ss[i].name);
		if (r < 0)
			ims_log_debug("retention: cannot remove the scheduled snapshot '%s' of %s "
				      "on site '%s': %s",
				      ss[i].name, cy->what, ims_site_name(cy->dst),
				      ims_strerror(r));
		else
			ims_log_info(
				"snapshot schedule of image '%s/%s' on site '%s': removed '%s' "
				"(gone from the primary)",
				cy->pool, cy->image, ims_site_name(cy->dst), ss[i].name);
	}
out:
	ims_error_clear();
	ims_snap_list_free(ps, np);
	ims_snap_list_free(ss, ns);
}

/*
 * Retention on both sides, beside the copy (each snapshot removal waits for the monitors to
 * publish a new OSD map, about a second with Ceph's defaults: it stays off the cycle's path
 * while the copy runs). The primary keeps its newest N (the target is one of them), never the
 * base or the running cycle of another target; the secondary keeps its newest N - 1 and the
 * base, its newest, so that it holds N once the target is sealed. A group keeps its cuts itself.
 * If the cycle then fails, nothing it needs is gone: the base and the target are kept.
 */
typedef struct {
	cycle *cy;
	pthread_t thread;
	bool running;
} retainer;

static void *retain_run(void *arg)
{
	cycle *cy = arg;
	unsigned keep = cy->o->retention ? cy->o->retention : 3;
	repl_snaps protect = {0}, ps = {0}, ss = {0}, base = {&cy->cp.base, cy->cp.base[0] ? 1 : 0};
	if (protected_snaps(cy->sio, cy->image, NULL, &protect) == 0 && /* unreadable: keep all */
	    ims_repl__list_snaps(&ps, cy->pimg) == 0)
		apply_retention(cy->pimg, &ps, keep, &protect);
	if (ims_repl__list_snaps(&ss, cy->simg) == 0)
		apply_retention(cy->simg, &ss, keep - 1, &base);
	retain_scheduled(cy);
	free(protect.names);
	free(ps.names);
	free(ss.names);
	return NULL;
}

static void retain_start(retainer *rt, cycle *cy)
{
	rt->cy = cy;
	rt->running = false;
	if (cy->member)
		return;
	if (pthread_create(&rt->thread, NULL, retain_run, cy) == 0)
		rt->running = true;
	else /* no thread: retention waits for the next cycle */
		ims_log_debug("retention of %s skipped this cycle: no thread", cy->what);
}

/* The copy is over: wait for the retention beside it (its time is what the cycle waited). */
static void retain_join(retainer *rt)
{
	if (!rt->running)
		return;
	pthread_join(rt->thread, NULL);
	rt->running = false;
	phase(&rt->cy->ph, "retention");
}

static void cycle_close(cycle *cy, int r)
{
	if (cy->ph.len)
		ims_log_debug("cycle of %s: %s s", cy->what, cy->ph.text);
	free(cy->ps.names);
	free(cy->ss.names);
	if (cy->psnap)
		rbd_close(cy->psnap);
	if (cy->simg) /* a group's members are let go for its group snapshots, which need their
			 locks; its cycle holds them again at its end (group.c) */
		ims_site_guard_put(cy->dst, cy->pool, cy->image, r < 0 || cy->member);
	if (cy->pimg)
		rbd_close(cy->pimg);
	if (cy->dio)
		ims_site_ioctx_close(cy->dio);
	if (cy->sio)
		ims_site_ioctx_close(cy->sio);
}

int ims_repl_sync(ims_repl_result *out, ims_site *src, ims_site *dst, const char *pool,
		  const char *image, const ims_repl_opts *o)
{
	cycle cy = {.src = src, .dst = dst, .pool = pool, .image = image, .o = o};
	ims_extents ext = {0}, todo;
	checkpoint old;
	int r;

	cy.t0 = now_s();
	cy.ph.last = cy.t0;
	if ((r = IMS_OPTS_CHECK(o, IMS_REPL_OPTS_VERSION, "replication")) < 0) {
		goto out;
	}
	snprintf(cy.what, sizeof(cy.what), "'%s/%s'", pool, image);
	checkpoint_key(cy.key, sizeof(cy.key), image, dst);
	cy.member = o->cut && o->cut[0];
	if (cy.member && (strlen(o->cut) >= SNAP_NAME_MAX ||
			  (o->cut_from && strlen(o->cut_from) >= SNAP_NAME_MAX))) {
		r = ims_error_set(-EINVAL, "snapshot names of a cut are too long");
		goto out;
	}
	if (o->mark && !cy.member) {
		if (o->mark->valid && quick_unchanged(&cy))
			goto done;
		o->mark->valid = false; /* valid again only if this cycle finds nothing changed */
	}
	if ((r = cycle_open(&cy)) < 0)
		goto out;
	pick_base(&cy);
	bool pending = checkpoint_load(cy.sio, cy.key, &old);
	if (!cy.member && o->records_pool)
		ims_snapsched_mirror(src, dst, o->records_pool, IMS_REPL_IMAGE, pool, image);
	/* nothing changed since the base (and no cut cycle to finish): the target is current */
	if (cy.base[0] && !pending && !cy.member && check_unchanged(&cy)) {
		if (!cy.created && (r = ship_scheduled(&cy, NULL)) < 0)
			goto out;
		retain_scheduled(&cy);
		goto done;
	}
	if ((r = checkpoint_begin(&cy, pending ? &old : NULL)) < 0)
		goto out;
	/* the secondary's head is still at the base: those taken before the target go first */
	if (!cy.member && !cy.res.resumed && cy.base[0] && !cy.created &&
	    (r = ship_scheduled(&cy, cy.cp.target)) < 0)
		goto out;
	if ((r = plan(&cy, &ext, &todo)) < 0)
		goto out;
	retainer rt;
	retain_start(&rt, &cy);
	r = copy(&cy, &todo);
	retain_join(&rt);
	if (r < 0 || (r = seal(&cy)) < 0)
		goto out;
	ims_log_debug("replicated %s to site '%s': %s -> %s, %" PRIu64 " bytes copied, %" PRIu64
		      " zeroed",
		      cy.what, ims_site_name(dst), cy.cp.full ? "(full)" : cy.cp.base, cy.cp.target,
		      cy.res.bytes_copied, cy.res.bytes_discarded);
done:
	cy.res.seconds = now_s() - cy.t0;
	if (out)
		*out = cy.res;
	r = 0;
out:
	if (r < 0 && out) {
		memset(out, 0, sizeof(*out));
		out->refused = cy.res.refused;
	}
	cycle_close(&cy, r);
	ims_extents_free(&ext);
	return r;
}
