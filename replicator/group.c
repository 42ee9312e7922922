#include "replicator/group.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rbd/librbd.h>

#include "common/clock.h"
#include "common/array.h"
#include "common/error.h"
#include "common/opts.h"
#include "common/log.h"
#include "common/spec.h"
#include "replicator/replicator_internal.h"
#include "replicator/snapsched.h"
#include "store/group.h"
#include "store/snap.h"

#define NAME_MAX_ IMS_REPL__SNAP_NAME_MAX

static int64_t anchor_time(const char *name)
{
	size_t n = strlen(IMS_REPL_ANCHOR_PREFIX);
	if (strncmp(name, IMS_REPL_ANCHOR_PREFIX, n) != 0 || !name[n])
		return -1;
	char *end;
	long long v = strtoll(name + n, &end, 10);
	return *end || v < 0 ? -1 : (int64_t)v;
}

static void cut_name(char *buf, size_t len, int64_t ms)
{
	snprintf(buf, len, IMS_REPL_SNAP_PREFIX "%013lld", (long long)ms);
}

static void anchor_name(char *buf, size_t len, int64_t ms)
{
	snprintf(buf, len, IMS_REPL_ANCHOR_PREFIX "%013lld", (long long)ms);
}

/* A sorted set of times (ms). */
typedef struct {
	int64_t *v;
	size_t n, cap;
} times;

static int times_add(times *t, int64_t x)
{
	int r = ims_array_grow(t->v, t->cap, t->n + 1, 16);
	if (r < 0)
		return r;
	t->v[t->n++] = x;
	return 0;
}

static int cmp_time(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static bool times_has(const times *t, int64_t x)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i] == x)
			return true;
	return false;
}

/* The snapshots of an open image: every name, with its id (store/snap.h). */
typedef struct {
	ims_snap_info *v;
	size_t n;
} snap_list;

static int snaps_read(rbd_image_t img, snap_list *out)
{
	return ims_snap_list_image(&out->v, &out->n, img);
}

static void snaps_free(snap_list *s)
{
	ims_snap_list_free(s->v, s->n);
	memset(s, 0, sizeof(*s));
}

/* The id of the member's snapshot of group snapshot @p group@@p cut. */
static int find_cut_id(rbd_image_t img, const snap_list *s, const char *group, const char *cut,
		       uint64_t *id)
{
	for (size_t i = 0; i < s->n; i++) {
		rbd_snap_namespace_type_t t;
		if (rbd_snap_get_namespace_type(img, s->v[i].id, &t) < 0 ||
		    t != RBD_SNAP_NAMESPACE_TYPE_GROUP)
			continue;
		rbd_snap_group_namespace_t g;
		memset(&g, 0, sizeof(g));
		if (rbd_snap_get_group_namespace(img, s->v[i].id, &g, sizeof(g)) < 0)
			continue;
		bool match = g.group_name && g.group_snap_name &&
			     strcmp(g.group_name, group) == 0 &&
			     strcmp(g.group_snap_name, cut) == 0;
		rbd_snap_group_namespace_cleanup(&g, sizeof(g));
		if (match) {
			*id = s->v[i].id;
			return 0;
		}
	}
	return -ENOENT;
}

/* find_cut_id() on the image's snapshots as they are now. */
static int cut_id(rbd_image_t img, const char *group, const char *cut, uint64_t *id)
{
	snap_list s = {0};
	int r = snaps_read(img, &s);
	if (r == 0)
		r = find_cut_id(img, &s, group, cut, id);
	snaps_free(&s);
	return r;
}

/* What a member holds on both sides. */
typedef struct {
	const char *pool, *image; /* borrowed from the group info */
	rados_ioctx_t io;	  /* the primary's pool */
	rbd_image_t img;	  /* the primary, at its head */
	times anchors;		  /* the primary's anchors */
	times sealed;		  /* cuts sealed on the secondary */
	int64_t base;		  /* the member's base cut; -1: none (a full copy) */
	uint64_t size;
	bool promoted; /* already the primary at the promotion's generation (a promotion resumed) */
	bool secondary; /* a secondary there (a promotion fences its lock's holders first) */
} member;

static void member_close(member *m)
{
	if (m->img)
		rbd_close(m->img);
	if (m->io)
		ims_site_ioctx_close(m->io);
	free(m->anchors.v);
	free(m->sealed.v);
}

static int member_load(member *m, ims_site *src, ims_site *dst, ims_repl_refusal *refused)
{
	char role[32];
	size_t rlen = sizeof(role);
	snap_list s = {0};
	int r;
	m->base = -1;
	if ((r = ims_site_ioctx(&m->io, src, m->pool)) < 0)
		return r;
	if ((r = rbd_open(m->io, m->image, &m->img, NULL)) < 0)
		return ims_error_set(r, "cannot open member '%s/%s' on site '%s': %s", m->pool,
				     m->image, ims_site_name(src), ims_strerror(r));
	if (rbd_metadata_get(m->img, "imgstore.repl.role", role, &rlen) == 0 &&
	    strcmp(role, "secondary") == 0) {
		*refused = IMS_REPL_REFUSED_SECONDARY;
		return ims_error_set(
			-EBUSY,
			"member '%s/%s' on site '%s' is a secondary; replicate from its primary",
			m->pool, m->image, ims_site_name(src));
	}
	if ((r = rbd_get_size(m->img, &m->size)) < 0 || (r = snaps_read(m->img, &s)) < 0)
		return ims_error_set(r, "cannot list the snapshots of '%s/%s': %s", m->pool,
				     m->image, ims_strerror(r));
	for (size_t i = 0; i < s.n && r == 0; i++) {
		int64_t t = anchor_time(s.v[i].name);
		if (t >= 0)
			r = times_add(&m->anchors, t);
	}
	snaps_free(&s);
	if (r < 0)
		return r;

	/* the secondary: absent before the first cycle */
	rados_ioctx_t dio;
	rbd_image_t simg;
	if ((r = ims_site_ioctx(&dio, dst, m->pool)) < 0)
		return r;
	r = rbd_open_read_only(dio, m->image, &simg, NULL);
	if (r == 0) {
		ims_repl__snaps ss = {0};
		r = ims_repl__list_snaps(&ss, simg);
		for (size_t i = 0; r == 0 && i < ss.n; i++)
			r = times_add(&m->sealed, ims_repl_snap_time(ss.names[i]));
		free(ss.names);
		rbd_close(simg);
	} else if (r == -ENOENT) {
		r = 0;
	}
	ims_site_ioctx_close(dio);
	if (r < 0)
		return ims_error_set(r, "cannot read member '%s/%s' on site '%s': %s", m->pool,
				     m->image, ims_site_name(dst), ims_strerror(r));
	qsort(m->anchors.v, m->anchors.n, sizeof(int64_t), cmp_time);
	qsort(m->sealed.v, m->sealed.n, sizeof(int64_t), cmp_time);
	for (size_t i = m->sealed.n; i-- > 0;)
		if (times_has(&m->anchors, m->sealed.v[i])) {
			m->base = m->sealed.v[i];
			break;
		}
	return 0;
}

/* The complete group snapshots named like cuts (sorted); incomplete ones are removed. */
static int list_cuts(rados_ioctx_t io, const char *pool, const char *group, times *out)
{
	size_t cap = 16, n;
	rbd_group_snap_info_t *v;
	int r;
	for (;;) {
		v = calloc(cap, sizeof(*v));
		if (!v)
			return -ENOMEM;
		n = cap;
		r = rbd_group_snap_list(io, group, v, sizeof(*v), &n);
		if (r != -ERANGE)
			break;
		free(v);
		cap = n > cap ? n : 2 * cap;
	}
	if (r < 0) {
		free(v);
		return ims_error_set(r, "cannot list the snapshots of group '%s/%s': %s", pool,
				     group, ims_strerror(r));
	}
	for (size_t i = 0; i < n && r >= 0; i++) {
		int64_t t = ims_repl_snap_time(v[i].name);
		if (t < 0)
			continue;
		if (v[i].state != RBD_GROUP_SNAP_STATE_COMPLETE) {
			/* a cut whose creation was cut: not a consistent point */
			rbd_group_snap_remove(io, group, v[i].name);
			continue;
		}
		r = times_add(out, t);
	}
	rbd_group_snap_list_cleanup(v, sizeof(*v), n);
	free(v);
	if (r < 0)
		return r;
	qsort(out->v, out->n, sizeof(int64_t), cmp_time);
	return 0;
}

/* The secondary's group mirrors the primary's: same name, the members. */
static int secondary_group(ims_site *dst, const char *pool, const char *group,
			   const ims_group_info *gi)
{
	char in[2 * IMS_NAME_MAX + 2], self[2 * IMS_NAME_MAX + 2];
	snprintf(self, sizeof(self), "%s/%s", pool, group);
	int r = ims_group_create(dst, pool, group);
	if (r < 0 && r != -EEXIST)
		return r;
	for (size_t i = 0; i < gi->nmembers; i++) {
		if (ims_group_of_image(in, sizeof(in), dst, gi->members[i].pool,
				       gi->members[i].image) < 0 ||
		    strcmp(in, self) == 0)
			continue;
		if (ims_group_image_add(dst, pool, group, gi->members[i].pool,
					gi->members[i].image) < 0)
			ims_log_debug("cannot add '%s/%s' to the secondary group '%s': %s",
				      gi->members[i].pool, gi->members[i].image, self,
				      ims_error_last());
	}
	ims_error_clear();
	return 0;
}

/* ... and the sealed cut, as a group snapshot of it. */
static void seal_secondary_group(ims_site *dst, const char *pool, const char *group,
				 const ims_group_info *gi, const char *cut)
{
	int r = secondary_group(dst, pool, group, gi);
	if (r < 0) {
		ims_log_debug("cannot create the secondary group '%s/%s' on site '%s': %s", pool,
			      group, ims_site_name(dst), ims_error_last());
		ims_error_clear();
		return;
	}
	r = ims_group_snap_create(dst, pool, group, cut);
	if (r < 0 && r != -EEXIST)
		ims_log_debug("cannot snapshot the secondary group '%s/%s' at '%s': %s", pool,
			      group, cut, ims_error_last());
	ims_error_clear();
}

/* Keep the newest @p keep cuts of the primary (and their anchors) and @p keep on the
 * secondary, never @p cut. */
static void retention(ims_site *src, ims_site *dst, rados_ioctx_t gio, const char *pool,
		      const char *group, member *m, size_t nm, unsigned keep, int64_t cut)
{
	times cuts = {0};
	char name[NAME_MAX_];
	if (list_cuts(gio, pool, group, &cuts) == 0) {
		for (size_t i = 0; i + keep < cuts.n; i++) {
			if (cuts.v[i] == cut)
				continue;
			cut_name(name, sizeof(name), cuts.v[i]);
			int r = rbd_group_snap_remove(gio, group, name);
			if (r < 0 && r != -ENOENT)
				ims_log_debug(
					"retention: cannot remove group snapshot '%s/%s@%s': %s",
					pool, group, name, ims_strerror(r));
		}
		/* anchors go with their cuts; anchors of cuts never made go too */
		size_t kept_from = cuts.n > keep ? cuts.n - keep : 0;
		for (size_t k = 0; k < nm; k++) {
			for (size_t i = 0; i < m[k].anchors.n; i++) {
				int64_t t = m[k].anchors.v[i];
				bool kept = t == cut;
				for (size_t j = kept_from; j < cuts.n && !kept; j++)
					kept = cuts.v[j] == t;
				if (kept || t > cut)
					continue;
				anchor_name(name, sizeof(name), t);
				int r = rbd_snap_remove(m[k].img, name);
				if (r < 0 && r != -ENOENT)
					ims_log_debug("retention: cannot remove '%s/%s@%s': %s",
						      m[k].pool, m[k].image, name, ims_strerror(r));
			}
		}
	}
	free(cuts.v);
	(void)src;

	/* the secondary: each member's sealed snapshots, and the secondary group's */
	cut_name(name, sizeof(name), cut);
	for (size_t k = 0; k < nm; k++) {
		rados_ioctx_t dio;
		rbd_image_t simg;
		ims_repl__snaps ss;
		if (ims_site_ioctx(&dio, dst, m[k].pool) < 0)
			continue;
		if (rbd_open(dio, m[k].image, &simg, NULL) == 0) {
			if (ims_repl__list_snaps(&ss, simg) == 0) {
				for (size_t i = 0; i + keep < ss.n; i++)
					if (strcmp(ss.names[i], name) != 0)
						rbd_snap_remove(simg, ss.names[i]);
				free(ss.names);
			}
			rbd_close(simg);
		}
		ims_site_ioctx_close(dio);
	}
	rados_ioctx_t dgio;
	times dcuts = {0};
	if (ims_site_ioctx(&dgio, dst, pool) == 0) {
		if (list_cuts(dgio, pool, group, &dcuts) == 0) {
			for (size_t i = 0; i + keep < dcuts.n; i++) {
				char old[NAME_MAX_];
				cut_name(old, sizeof(old), dcuts.v[i]);
				if (dcuts.v[i] != cut)
					rbd_group_snap_remove(dgio, group, old);
			}
		}
		ims_site_ioctx_close(dgio);
	}
	free(dcuts.v);
	ims_error_clear();
}

/* One cycle of a group, through its steps. */
typedef struct {
	ims_site *src, *dst;
	const char *pool, *group;
	const ims_repl_opts *o;
	ims_group_info *gi;
	member *m;
	size_t nm;
	rados_ioctx_t gio; /* the group's pool on the primary */
	times cuts;	   /* the primary's complete cuts */
	int64_t all;	   /* the newest cut sealed on every member; -1: none */
	int64_t pending;   /* the cut this cycle ships; -1: none yet */
	ims_repl_result res;
} group_cycle;

/* The group's pool and every member, loaded on both sides. */
static int group_open(group_cycle *gc)
{
	int r;
	if ((r = ims_group_info_get(&gc->gi, gc->src, gc->pool, gc->group)) < 0)
		return r;
	if (gc->gi->nmembers == 0)
		return ims_error_set(-EINVAL, "group '%s/%s' has no images to replicate", gc->pool,
				     gc->group);
	if ((r = ims_site_ioctx(&gc->gio, gc->src, gc->pool)) < 0)
		return r;
	if (!(gc->m = calloc(gc->gi->nmembers, sizeof(*gc->m))))
		return -ENOMEM;
	for (; gc->nm < gc->gi->nmembers; gc->nm++) {
		member *m = &gc->m[gc->nm];
		m->pool = gc->gi->members[gc->nm].pool;
		m->image = gc->gi->members[gc->nm].image;
		if ((r = member_load(m, gc->src, gc->dst, &gc->res.refused)) < 0) {
			gc->nm++;
			return r;
		}
		gc->res.size += m->size;
	}
	return 0;
}

/* The newest cut sealed on every member, and a complete cut newer than that of every current
 * member (a cut cycle to finish first). */
static int find_cuts(group_cycle *gc)
{
	member *m = gc->m;
	char cut[NAME_MAX_];
	int r;
	gc->all = gc->pending = -1;
	for (size_t i = m[0].sealed.n; i-- > 0 && gc->all < 0;) {
		bool everywhere = true;
		for (size_t k = 1; k < gc->nm && everywhere; k++)
			everywhere = times_has(&m[k].sealed, m[0].sealed.v[i]);
		if (everywhere)
			gc->all = m[0].sealed.v[i];
	}
	if ((r = list_cuts(gc->gio, gc->pool, gc->group, &gc->cuts)) < 0)
		return r;
	for (size_t i = gc->cuts.n; i-- > 0 && gc->pending < 0 && gc->cuts.v[i] > gc->all;) {
		bool complete = true;
		cut_name(cut, sizeof(cut), gc->cuts.v[i]);
		for (size_t k = 0; k < gc->nm && complete; k++) {
			uint64_t id;
			complete = cut_id(m[k].img, gc->group, cut, &id) == 0;
		}
		if (complete)
			gc->pending = gc->cuts.v[i];
	}
	return 0;
}

/* Nothing written since the anchor of the cut sealed on all: the secondary is current. */
static bool group_unchanged(group_cycle *gc)
{
	char from[NAME_MAX_];
	bool changed = gc->all < 0;
	for (size_t k = 0; k < gc->nm && !changed; k++) {
		if (gc->m[k].base != gc->all) {
			changed = true;
			break;
		}
		anchor_name(from, sizeof(from), gc->all);
		if (ims_repl__changed_since(&changed, gc->m[k].img, from) < 0)
			changed = true;
	}
	if (changed)
		return false;
	gc->res.unchanged = true;
	cut_name(gc->res.base, sizeof(gc->res.base), gc->all);
	cut_name(gc->res.sealed, sizeof(gc->res.sealed), gc->all);
	gc->res.sealed_unix_ms = ims_clock_unix_ms();
	return true;
}

/*
 * Snapshots that librbd refuses with -EBUSY while another snapshot of the image or group is
 * being made (a schedule's group snapshot quiesces the members): tried again, 0.1 s more each
 * time, for up to about 4.5 s; then the error stands.
 */
#define BUSY_TRIES 10

static int snap_create_patient(rbd_image_t img, const char *name)
{
	int r;
	for (int a = 1; (r = rbd_snap_create(img, name)) == -EBUSY && a < BUSY_TRIES; a++)
		usleep((useconds_t)a * 100000);
	return r;
}

static int group_snap_create_patient(rados_ioctx_t io, const char *group, const char *name)
{
	int r;
	for (int a = 1; (r = rbd_group_snap_create(io, group, name)) == -EBUSY && a < BUSY_TRIES;
	     a++)
		usleep((useconds_t)a * 100000);
	return r;
}

/* A new cut: every member's anchor first, then the group snapshot; undone on an error. */
static int take_cut(group_cycle *gc)
{
	member *m = gc->m;
	char from[NAME_MAX_], cut[NAME_MAX_];
	size_t made = 0;
	int r = 0;
	int64_t ms = ims_clock_unix_ms();
	if (gc->cuts.n && gc->cuts.v[gc->cuts.n - 1] >= ms)
		ms = gc->cuts.v[gc->cuts.n - 1] + 1;
	for (size_t k = 0; k < gc->nm; k++)
		if (m[k].anchors.n && m[k].anchors.v[m[k].anchors.n - 1] >= ms)
			ms = m[k].anchors.v[m[k].anchors.n - 1] + 1;
	anchor_name(from, sizeof(from), ms);
	cut_name(cut, sizeof(cut), ms);
	/* the members' anchors and the group snapshot, never beside a schedule's (store/group.h) */
	ims_group_snap_lock(gc->pool, gc->group);
	for (; made < gc->nm; made++) {
		if ((r = snap_create_patient(m[made].img, from)) < 0) {
			ims_error_set(r, "cannot snapshot member '%s/%s' on site '%s': %s",
				      m[made].pool, m[made].image, ims_site_name(gc->src),
				      ims_strerror(r));
			break;
		}
	}
	if (r == 0 && (r = group_snap_create_patient(gc->gio, gc->group, cut)) < 0)
		ims_error_set(r, "cannot snapshot group '%s/%s' on site '%s': %s", gc->pool,
			      gc->group, ims_site_name(gc->src), ims_strerror(r));
	ims_group_snap_unlock(gc->pool, gc->group);
	if (r < 0) {
		for (size_t k = 0; k < made; k++)
			rbd_snap_remove(m[k].img, from);
		return r;
	}
	for (size_t k = 0; k < gc->nm; k++)
		times_add(&m[k].anchors, ms);
	gc->pending = ms;
	return 0;
}

/* Every member ships its part of the cut: one image's cycle each (ims_repl_sync, cut mode). */
static int ship_members(group_cycle *gc, const char *cut)
{
	char from[NAME_MAX_];
	int r;
	for (size_t k = 0; k < gc->nm; k++) {
		member *m = &gc->m[k];
		if (times_has(&m->sealed, gc->pending))
			continue;
		uint64_t id = 0;
		if ((r = cut_id(m->img, gc->group, cut, &id)) < 0)
			return ims_error_set(r,
					     "member '%s/%s' has no snapshot of the cut '%s/%s@%s'",
					     m->pool, m->image, gc->pool, gc->group, cut);
		ims_repl_opts mo = *gc->o;
		ims_repl_result mr;
		mo.cut = cut;
		mo.cut_snap_id = id;
		if (m->base >= 0)
			anchor_name(from, sizeof(from), m->base);
		mo.cut_from = m->base >= 0 ? from : NULL;
		if ((r = ims_repl_sync(&mr, gc->src, gc->dst, m->pool, m->image, &mo)) < 0) {
			gc->res.refused = mr.refused;
			return r;
		}
		gc->res.full |= mr.full;
		gc->res.resumed |= mr.resumed;
		gc->res.bytes_copied += mr.bytes_copied;
		gc->res.bytes_discarded += mr.bytes_discarded;
		gc->res.extents += mr.extents;
	}
	return 0;
}

/*
 * Scheduled group snapshots (replicator/snapsched.h) ride along. Before a new cut (or when
 * nothing changed since the last one), each complete group snapshot of the primary that a
 * schedule took after the cut sealed on every member (each member's snapshot of it newer than
 * its snapshot of that cut) and that the secondary group lacks is shipped, oldest first: each
 * member's delta since the anchor of that cut, read at the member's snapshot of the scheduled
 * one, is written to the secondary member's head, then the secondary group takes a group
 * snapshot of the same name, whose member snapshots (librbd's group namespace, as on the
 * primary) hold the primary's bytes. librbd diffs only from a user snapshot, by name: each delta
 * is from the cut's anchor, which covers what changed since the cut or since the last one
 * shipped, wherever the secondary's heads are between them. A shipment cut half-way is
 * rewritten whole by the next cycle's (or the cut's) delta from the same anchor.
 */
typedef struct {
	const char *name; /* borrowed from the primary's list */
	uint64_t *ids;	  /* each member's snapshot of it */
} sched_snap;

static int cmp_sched(const void *a, const void *b)
{
	const sched_snap *x = a, *y = b;
	return x->ids[0] < y->ids[0] ? -1 : x->ids[0] > y->ids[0];
}

/* The names of the complete snapshots of group @p group (in @p io) that a schedule took; none if
 * the group does not exist. */
static int sched_names(char ***out, size_t *count, rados_ioctx_t io, const char *group)
{
	size_t cap = 16, n, k = 0;
	rbd_group_snap_info_t *v;
	char **names = NULL;
	int r;
	*out = NULL;
	*count = 0;
	for (;;) {
		if (!(v = calloc(cap, sizeof(*v))))
			return -ENOMEM;
		n = cap;
		r = rbd_group_snap_list(io, group, v, sizeof(*v), &n);
		if (r != -ERANGE)
			break;
		free(v);
		cap = n > cap ? n : 2 * cap;
	}
	if (r == -ENOENT) {
		free(v);
		return 0;
	}
	if (r < 0) {
		free(v);
		return ims_error_set(r, "cannot list the snapshots of group '%s': %s", group,
				     ims_strerror(r));
	}
	if (n && !(names = calloc(n, sizeof(*names))))
		r = -ENOMEM;
	for (size_t i = 0; i < n && r >= 0; i++) {
		if (ims_snapsched_snap_time(v[i].name) < 0 ||
		    v[i].state != RBD_GROUP_SNAP_STATE_COMPLETE)
			continue;
		if (!(names[k] = strdup(v[i].name)))
			r = -ENOMEM;
		else
			k++;
	}
	rbd_group_snap_list_cleanup(v, sizeof(*v), n);
	free(v);
	if (r < 0) {
		for (size_t i = 0; i < k; i++)
			free(names[i]);
		free(names);
		return r;
	}
	*out = names;
	*count = k;
	return 0;
}

static void names_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static bool names_have(char *const *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], name) == 0)
			return true;
	return false;
}

/* One member's part of scheduled snapshot @p snap (its snapshot @p id): the delta from @p from,
 * written to the secondary's head. @p gone: the snapshot was removed on the primary (pruned)
 * before or while it was read. */
static int ship_member_at(group_cycle *gc, member *m, uint64_t id, const char *from,
			  const char *snap, bool *gone)
{
	rbd_image_t at = NULL, simg = NULL;
	ims_extents ext = {0};
	uint64_t size = 0, ssize = 0;
	char what[2 * IMS_NAME_MAX + 8];
	int r;
	*gone = false;
	snprintf(what, sizeof(what), "'%s/%s'", m->pool, m->image);
	if ((r = rbd_open_read_only(m->io, m->image, &at, NULL)) < 0)
		return ims_error_set(r, "cannot open %s on site '%s': %s", what,
				     ims_site_name(gc->src), ims_strerror(r));
	if ((r = rbd_snap_set_by_id(at, id)) == -ENOENT) {
		*gone = true;
		r = 0;
		goto out;
	}
	if (r < 0 || (r = rbd_get_size(at, &size)) < 0) {
		r = ims_error_set(r, "cannot open %s at its snapshot of '%s': %s", what, snap,
				  ims_strerror(r));
		goto out;
	}
	if ((r = ims_site_guard_get(&simg, gc->dst, m->pool, m->image)) < 0) {
		if (r == -EBUSY) /* the guard's lock is another client's (store/site.h) */
			gc->res.refused = IMS_REPL_REFUSED_HELD;
		simg = NULL;
		goto out;
	}
	if ((r = rbd_get_size(simg, &ssize)) < 0 ||
	    (ssize != size &&
	     (r = rbd_resize2(simg, size, true, ims_repl__no_progress, NULL)) < 0)) {
		r = ims_error_set(r, "cannot resize the secondary %s on site '%s': %s", what,
				  ims_site_name(gc->dst), ims_strerror(r));
		goto out;
	}
	if ((r = rbd_diff_iterate2(at, from, 0, size, 1, 0, ims_extents_diff_all, &ext)) < 0) {
		r = ims_error_set(r, "cannot compute the delta of %s from '%s' to '%s': %s", what,
				  from, snap, ims_strerror(r));
		goto out;
	}
	const ims_repl_opts *o = gc->o;
	ims_repl__copy_job j = {.src = at, .dst = simg, .ext = &ext, .what = what};
	j.depth = o->concurrency ? o->concurrency : 16;
	if (j.depth > 256)
		j.depth = 256;
	j.budget = o->inflight_bytes ? o->inflight_bytes : (64u << 20);
	j.bandwidth = o->bandwidth;
	ims_repl__copy_result res;
	if ((r = ims_repl__copy(&res, &j)) < 0) {
		rbd_snap_namespace_type_t t;
		if (rbd_snap_get_namespace_type(m->img, id, &t) == -ENOENT) {
			ims_error_clear();
			*gone = true;
			r = 0;
		}
		goto out;
	}
	gc->res.bytes_copied += res.copied;
	if ((r = rbd_flush(simg)) < 0)
		r = ims_error_set(r, "cannot flush the secondary %s on site '%s': %s", what,
				  ims_site_name(gc->dst), ims_strerror(r));
out:
	/* let go for the group snapshot that follows, which needs its lock; held again after */
	if (simg)
		ims_site_guard_put(gc->dst, m->pool, m->image, true);
	ims_extents_free(&ext);
	rbd_close(at);
	return r;
}

/* Those taken before the cut @p upto (its time; -1: all). */
static int ship_scheduled_group(group_cycle *gc, int64_t upto)
{
	char anchor[NAME_MAX_], cut[NAME_MAX_];
	char **pn = NULL, **sn = NULL;
	size_t np = 0, nsn = 0, nc = 0;
	uint64_t *cut_ids = NULL, *upto_ids = NULL;
	sched_snap *c = NULL;
	snap_list *snaps = NULL;
	rados_ioctx_t dgio = NULL;
	int r = 0;
	/* the secondary's heads are at the cut sealed on all, each member holds its anchor */
	if (gc->all < 0)
		return 0;
	for (size_t k = 0; k < gc->nm; k++)
		if (gc->m[k].base != gc->all)
			return 0;
	anchor_name(anchor, sizeof(anchor), gc->all);
	cut_name(cut, sizeof(cut), gc->all);
	r = -ENOMEM;
	if (!(cut_ids = calloc(gc->nm, sizeof(*cut_ids))) ||
	    !(upto_ids = calloc(gc->nm, sizeof(*upto_ids))) ||
	    !(snaps = calloc(gc->nm, sizeof(*snaps))))
		goto out;
	for (size_t k = 0; k < gc->nm; k++) {
		if ((r = snaps_read(gc->m[k].img, &snaps[k])) < 0)
			goto out;
		if (find_cut_id(gc->m[k].img, &snaps[k], gc->group, cut, &cut_ids[k]) < 0) {
			r = 0; /* the cut is gone from the primary: its next cut is a full copy */
			goto out;
		}
		upto_ids[k] = UINT64_MAX;
		if (upto >= 0) {
			char name[NAME_MAX_];
			cut_name(name, sizeof(name), upto);
			if ((r = find_cut_id(gc->m[k].img, &snaps[k], gc->group, name,
					     &upto_ids[k])) < 0) {
				r = ims_error_set(r,
						  "member '%s/%s' has no snapshot of the cut '%s'",
						  gc->m[k].pool, gc->m[k].image, name);
				goto out;
			}
		}
	}
	if ((r = ims_site_ioctx(&dgio, gc->dst, gc->pool)) < 0 ||
	    (r = sched_names(&pn, &np, gc->gio, gc->group)) < 0 ||
	    (r = sched_names(&sn, &nsn, dgio, gc->group)) < 0)
		goto out;
	r = -ENOMEM;
	if (np && !(c = calloc(np, sizeof(*c))))
		goto out;
	for (size_t i = 0; i < np; i++) {
		if (names_have(sn, nsn, pn[i]))
			continue;
		if (!(c[nc].ids = calloc(gc->nm, sizeof(uint64_t))))
			goto out;
		bool newer = true;
		for (size_t k = 0; k < gc->nm && newer; k++)
			newer = find_cut_id(gc->m[k].img, &snaps[k], gc->group, pn[i],
					    &c[nc].ids[k]) == 0 &&
				c[nc].ids[k] > cut_ids[k] && c[nc].ids[k] < upto_ids[k];
		if (!newer) { /* older than the cut sealed, newer than the next, of a member added
			       */
			free(c[nc].ids);
			c[nc].ids = NULL;
			continue;
		}
		c[nc++].name = pn[i];
	}
	qsort(c, nc, sizeof(*c), cmp_sched);
	for (size_t i = 0; i < nc; i++) {
		bool gone = false;
		for (size_t k = 0; k < gc->nm && !gone; k++)
			if ((r = ship_member_at(gc, &gc->m[k], c[i].ids[k], anchor, c[i].name,
						&gone)) < 0)
				goto out;
		if (gone) { /* pruned on the primary meanwhile: the next one's delta covers it */
			ims_log_debug("scheduled snapshot '%s' of group '%s/%s' pruned before it "
				      "was shipped",
				      c[i].name, gc->pool, gc->group);
			continue;
		}
		if (gc->o->may_seal && gc->o->may_seal(gc->o->progress_ctx) != 0) {
			r = ims_error_set(-ECANCELED,
					  "group '%s/%s': this daemon's lock on the pair was lost",
					  gc->pool, gc->group);
			goto out;
		}
		if ((r = secondary_group(gc->dst, gc->pool, gc->group, gc->gi)) < 0 ||
		    ((r = ims_group_snap_create(gc->dst, gc->pool, gc->group, c[i].name)) < 0 &&
		     r != -EEXIST)) {
			r = ims_error_set(r,
					  "cannot create the scheduled snapshot '%s' of group "
					  "'%s/%s' on site '%s': %s",
					  c[i].name, gc->pool, gc->group, ims_site_name(gc->dst),
					  ims_error_last());
			goto out;
		}
		ims_error_clear();
		ims_log_info("shipped the scheduled snapshot '%s' of group '%s/%s' to site '%s'",
			     c[i].name, gc->pool, gc->group, ims_site_name(gc->dst));
	}
	r = 0;
out:
	for (size_t i = 0; c && i < nc; i++)
		free(c[i].ids);
	if (c && nc < np)
		free(c[nc].ids); /* one left half-made by an allocation failure */
	free(c);
	for (size_t k = 0; snaps && k < gc->nm; k++)
		snaps_free(&snaps[k]);
	free(snaps);
	free(cut_ids);
	free(upto_ids);
	names_free(pn, np);
	names_free(sn, nsn);
	if (dgio)
		ims_site_ioctx_close(dgio);
	return r;
}

/* The secondary group's scheduled snapshots that the primary's retention removed go too (never
 * a cut; a member snapshot that a clone depends on refuses its removal, and is kept). */
static void retain_scheduled_group(group_cycle *gc)
{
	char **pn = NULL, **sn = NULL;
	size_t np = 0, nsn = 0;
	rados_ioctx_t dgio = NULL;
	if (ims_site_ioctx(&dgio, gc->dst, gc->pool) < 0 ||
	    sched_names(&pn, &np, gc->gio, gc->group) < 0 ||
	    sched_names(&sn, &nsn, dgio, gc->group) < 0)
		goto out;
	for (size_t i = 0; i < nsn; i++) {
		if (names_have(pn, np, sn[i]))
			continue;
		int r = rbd_group_snap_remove(dgio, gc->group, sn[i]);
		if (r < 0 && r != -ENOENT)
			ims_log_debug(
				"retention: cannot remove the scheduled snapshot '%s' of group "
				"'%s/%s' on site '%s': %s",
				sn[i], gc->pool, gc->group, ims_site_name(gc->dst),
				ims_strerror(r));
		else if (r == 0)
			ims_log_info(
				"snapshot schedule of group '%s/%s' on site '%s': removed '%s' "
				"(gone from the primary)",
				gc->pool, gc->group, ims_site_name(gc->dst), sn[i]);
	}
out:
	ims_error_clear();
	names_free(pn, np);
	names_free(sn, nsn);
	if (dgio)
		ims_site_ioctx_close(dgio);
}

int ims_repl_group_sync(ims_repl_result *out, ims_site *src, ims_site *dst, const char *pool,
			const char *group, const ims_repl_opts *o)
{
	group_cycle gc = {.src = src, .dst = dst, .pool = pool, .group = group, .o = o};
	char cut[NAME_MAX_];
	double t0 = ims_clock_mono_s();
	int r;

	if ((r = IMS_OPTS_CHECK(o, IMS_REPL_OPTS_VERSION, "replication")) < 0)
		return r;
	if ((r = group_open(&gc)) < 0 || (r = find_cuts(&gc)) < 0)
		goto out;
	/* the secondary's members, held against other writers between cycles, are let go: the
	 * group snapshots made and removed there below need their locks (its own members too: an
	 * image taken out of the group on the primary stays in the target's group) */
	for (size_t k = 0; k < gc.nm; k++)
		ims_site_guard_drop(dst, gc.m[k].pool, gc.m[k].image);
	ims_group_info *tgi = NULL;
	if (ims_group_info_get(&tgi, dst, pool, group) == 0)
		for (size_t k = 0; k < tgi->nmembers; k++)
			ims_site_guard_drop(dst, tgi->members[k].pool, tgi->members[k].image);
	ims_group_info_free(tgi);
	ims_error_clear();
	/* the group's snapshot schedule follows it to the secondary's site (snapsched.h) */
	if (o->records_pool)
		ims_snapsched_mirror(src, dst, o->records_pool, IMS_REPL_GROUP, pool, group);
	retain_scheduled_group(&gc);
	/* scheduled group snapshots taken since the cut sealed on all go first, oldest first:
	 * those before the new cut (the secondary's heads are at the cut sealed on all), or all of
	 * them when nothing changed; none when a cut cycle resumes (its heads are past it) */
	if (gc.pending >= 0) {
		gc.res.resumed = true;
	} else if (group_unchanged(&gc)) {
		if ((r = ship_scheduled_group(&gc, -1)) < 0)
			goto out;
		goto done;
	} else if ((r = take_cut(&gc)) < 0 || (r = ship_scheduled_group(&gc, gc.pending)) < 0) {
		goto out;
	}
	cut_name(cut, sizeof(cut), gc.pending);
	if (gc.all >= 0)
		cut_name(gc.res.base, sizeof(gc.res.base), gc.all);
	snprintf(gc.res.sealed, sizeof(gc.res.sealed), "%s", cut);
	gc.res.sealed_unix_ms = gc.pending;
	if ((r = ship_members(&gc, cut)) < 0)
		goto out;
	seal_secondary_group(dst, pool, group, gc.gi, cut);
	retention(src, dst, gc.gio, pool, group, gc.m, gc.nm, o->retention ? o->retention : 3,
		  gc.pending);
	ims_log_debug("replicated group '%s/%s' to site '%s': %s -> %s, %" PRIu64 " bytes copied",
		      pool, group, ims_site_name(dst), gc.res.base[0] ? gc.res.base : "(full)", cut,
		      gc.res.bytes_copied);
done:
	/* ... and held again till the next (as an image's secondary is), unless the cycle lost
	 * its pair (another daemon runs it, or a failover took it over) */
	for (size_t k = 0; k < gc.nm; k++)
		if (!o->may_seal || o->may_seal(o->progress_ctx) == 0)
			ims_repl__hold_secondary(dst, gc.m[k].pool, gc.m[k].image);
	gc.res.seconds = ims_clock_mono_s() - t0;
	if (out)
		*out = gc.res;
	r = 0;
out:
	if (r < 0 && out) {
		memset(out, 0, sizeof(*out));
		out->refused = gc.res.refused;
	}
	for (size_t k = 0; k < gc.nm; k++)
		member_close(&gc.m[k]);
	free(gc.m);
	free(gc.cuts.v);
	if (gc.gio)
		ims_site_ioctx_close(gc.gio);
	ims_group_info_free(gc.gi);
	return r;
}

int ims_repl_group_last_sealed(char *name, size_t len, int64_t *unix_ms, ims_site *site,
			       const char *pool, const char *group)
{
	ims_group_info *gi = NULL;
	times common = {0};
	int r = ims_group_info_get(&gi, site, pool, group);
	if (r < 0)
		return r;
	for (size_t k = 0; k < gi->nmembers && r == 0; k++) {
		rados_ioctx_t io;
		rbd_image_t img;
		ims_repl__snaps ss = {0};
		times mine = {0};
		if ((r = ims_site_ioctx(&io, site, gi->members[k].pool)) < 0)
			break;
		if ((r = rbd_open_read_only(io, gi->members[k].image, &img, NULL)) == 0) {
			r = ims_repl__list_snaps(&ss, img);
			rbd_close(img);
		}
		ims_site_ioctx_close(io);
		for (size_t i = 0; r == 0 && i < ss.n; i++)
			r = times_add(&mine, ims_repl_snap_time(ss.names[i]));
		free(ss.names);
		if (r == 0 && k == 0) {
			common = mine;
			continue;
		}
		size_t kept = 0;
		for (size_t i = 0; i < common.n; i++)
			if (times_has(&mine, common.v[i]))
				common.v[kept++] = common.v[i];
		common.n = kept;
		free(mine.v);
	}
	if (r == 0) {
		int64_t best = -1;
		for (size_t i = 0; i < common.n; i++)
			if (common.v[i] > best)
				best = common.v[i];
		if (best < 0) {
			r = ims_error_set(
				-ENOENT,
				"group '%s/%s' on site '%s' has no cut sealed on all its images",
				pool, group, ims_site_name(site));
		} else {
			cut_name(name, len, best);
			if (unix_ms)
				*unix_ms = best;
		}
	} else {
		ims_error_set(r, "cannot read group '%s/%s' on site '%s': %s", pool, group,
			      ims_site_name(site), ims_strerror(r));
	}
	free(common.v);
	ims_group_info_free(gi);
	return r;
}

void ims_repl_group_forget(ims_site *src, const char *pool, const char *group)
{
	ims_group_info *gi = NULL;
	rados_ioctx_t gio = NULL;
	times cuts = {0};
	char name[NAME_MAX_];
	if (ims_group_info_get(&gi, src, pool, group) < 0 || ims_site_ioctx(&gio, src, pool) < 0)
		goto out;
	if (list_cuts(gio, pool, group, &cuts) == 0)
		for (size_t i = 0; i < cuts.n; i++) {
			cut_name(name, sizeof(name), cuts.v[i]);
			rbd_group_snap_remove(gio, group, name);
		}
	for (size_t k = 0; k < gi->nmembers; k++) {
		rados_ioctx_t io;
		rbd_image_t img;
		snap_list s = {0};
		if (ims_site_ioctx(&io, src, gi->members[k].pool) < 0)
			continue;
		if (rbd_open(io, gi->members[k].image, &img, NULL) == 0) {
			if (snaps_read(img, &s) == 0)
				for (size_t i = 0; i < s.n; i++)
					if (anchor_time(s.v[i].name) >= 0)
						rbd_snap_remove(img, s.v[i].name);
			snaps_free(&s);
			rbd_close(img);
		}
		ims_site_ioctx_close(io);
	}
out:
	free(cuts.v);
	if (gio)
		ims_site_ioctx_close(gio);
	ims_group_info_free(gi);
	ims_error_clear();
}

/* ---- failover of a group as one unit ---- */

/* Every member of @p site's copy of the group, open read-write. */
typedef struct {
	ims_group_info *gi;
	member *m;
	size_t n;
} members;

static void members_close(members *ms)
{
	for (size_t k = 0; k < ms->n; k++)
		member_close(&ms->m[k]);
	free(ms->m);
	ims_group_info_free(ms->gi);
	memset(ms, 0, sizeof(*ms));
}

static int members_open(members *ms, ims_site *site, const char *pool, const char *group)
{
	int r;
	memset(ms, 0, sizeof(*ms));
	if ((r = ims_group_info_get(&ms->gi, site, pool, group)) < 0)
		return r;
	if (ms->gi->nmembers == 0)
		return ims_error_set(-EINVAL, "group '%s/%s' on site '%s' has no images", pool,
				     group, ims_site_name(site));
	if (!(ms->m = calloc(ms->gi->nmembers, sizeof(*ms->m))))
		return -ENOMEM;
	for (; ms->n < ms->gi->nmembers; ms->n++) {
		member *m = &ms->m[ms->n];
		m->pool = ms->gi->members[ms->n].pool;
		m->image = ms->gi->members[ms->n].image;
		if ((r = ims_site_ioctx(&m->io, site, m->pool)) < 0)
			return r;
		if ((r = rbd_open(m->io, m->image, &m->img, NULL)) < 0) {
			ims_error_set(
				r, "cannot open member '%s/%s' of group '%s/%s' on site '%s': %s",
				m->pool, m->image, pool, group, ims_site_name(site),
				ims_strerror(r));
			ms->n++;
			return r;
		}
	}
	return 0;
}

/* Remove the member's anchors, and its replication snapshots other than @p keep (NULL: all). */
static void drop_snaps(member *m, bool anchors, const char *keep)
{
	snap_list s = {0};
	if (snaps_read(m->img, &s) < 0)
		return;
	for (size_t i = 0; i < s.n; i++) {
		bool drop = anchors && anchor_time(s.v[i].name) >= 0;
		drop |= ims_repl_snap_time(s.v[i].name) >= 0 &&
			(!keep || strcmp(s.v[i].name, keep) != 0);
		if (drop) {
			int r = rbd_snap_remove(m->img, s.v[i].name);
			if (r < 0 && r != -ENOENT)
				ims_log_warning("cannot remove '%s/%s@%s': %s", m->pool, m->image,
						s.v[i].name, ims_strerror(r));
		}
	}
	snaps_free(&s);
}

/* A user snapshot @p name of the member at its head, unless it has one. */
static int snap_if_missing(member *m, const char *name, ims_site *site)
{
	uint64_t id;
	int r = rbd_snap_get_id(m->img, name, &id);
	if (r == 0)
		return 0;
	if ((r = snap_create_patient(m->img, name)) < 0)
		return ims_error_set(r, "cannot snapshot '%s/%s' on site '%s' as '%s': %s", m->pool,
				     m->image, ims_site_name(site), name, ims_strerror(r));
	return 0;
}

int ims_repl_group_demote(ims_site *site, const char *pool, const char *group, const char *cut,
			  const char *primary_site, uint64_t generation)
{
	members ms;
	int r = members_open(&ms, site, pool, group);
	for (size_t k = 0; r == 0 && k < ms.n; k++)
		r = snap_if_missing(&ms.m[k], cut, site);
	if (r == 0)
		for (size_t k = 0; k < ms.n; k++)
			drop_snaps(&ms.m[k], true, cut);
	for (size_t k = 0; r == 0 && k < ms.n; k++) {
		rbd_close(ms.m[k].img);
		ms.m[k].img = NULL;
		r = ims_repl_demote(site, ms.m[k].pool, ms.m[k].image, primary_site, generation);
	}
	members_close(&ms);
	return r;
}

/* Remove the group snapshots named like cuts newer than @p cut_ms (cuts never sealed on all). */
static void drop_newer_cuts(ims_site *site, const char *pool, const char *group, int64_t cut_ms)
{
	rados_ioctx_t gio;
	times cuts = {0};
	char name[NAME_MAX_];
	if (ims_site_ioctx(&gio, site, pool) < 0)
		return;
	if (list_cuts(gio, pool, group, &cuts) == 0)
		for (size_t i = 0; i < cuts.n; i++)
			if (cuts.v[i] > cut_ms) {
				cut_name(name, sizeof(name), cuts.v[i]);
				rbd_group_snap_remove(gio, group, name);
			}
	free(cuts.v);
	ims_site_ioctx_close(gio);
	ims_error_clear();
}

int ims_repl_group_promote(unsigned *rolled_back, ims_site *site, const char *pool,
			   const char *group, const char *cut, uint64_t generation)
{
	members ms;
	char what[600], anchor[NAME_MAX_];
	unsigned rolled_n = 0;
	int64_t ms_cut = ims_repl_snap_time(cut);
	if (ms_cut < 0)
		return ims_error_set(-EINVAL, "'%s' is not a replication cut", cut);
	anchor_name(anchor, sizeof(anchor), ms_cut);
	int r = members_open(&ms, site, pool, group);
	/* every member holds the cut, or nothing changes */
	for (size_t k = 0; r == 0 && k < ms.n; k++) {
		uint64_t id;
		if ((r = rbd_snap_get_id(ms.m[k].img, cut, &id)) < 0)
			ims_error_set(r,
				      "member '%s/%s' of group '%s/%s' on site '%s' has no sealed "
				      "snapshot '%s'; "
				      "nothing changed",
				      ms.m[k].pool, ms.m[k].image, pool, group, ims_site_name(site),
				      cut);
	}
	/* a member this promotion already made the primary (its daemon killed half-way) keeps what
	 * has been written to it since: it is neither rolled back nor promoted again */
	for (size_t k = 0; r == 0 && k < ms.n; k++) {
		ims_repl_side side;
		if ((r = ims_repl_side_get(&side, site, ms.m[k].pool, ms.m[k].image)) == 0) {
			ms.m[k].promoted = !side.secondary && side.generation >= generation;
			ms.m[k].secondary = side.secondary;
		}
	}
	/* the secondaries are held against other writers by the daemon that replicates into them:
	 * this one lets go, another one's guard is fenced (as ims_repl_promote() does), so that
	 * the rollback and the snapshots below get their locks */
	for (size_t k = 0; r == 0 && k < ms.n; k++) {
		if (!ms.m[k].secondary)
			continue;
		ims_site_guard_drop(site, ms.m[k].pool, ms.m[k].image);
		r = ims_repl_fence(NULL, site, ms.m[k].pool, ms.m[k].image);
	}
	for (size_t k = 0; r == 0 && k < ms.n; k++) {
		bool rolled = false;
		if (ms.m[k].promoted)
			continue;
		snprintf(what, sizeof(what), "'%s/%s' on site '%s'", ms.m[k].pool, ms.m[k].image,
			 ims_site_name(site));
		if ((r = ims_repl__rollback_if_changed(&rolled, ms.m[k].img, cut, what)) < 0)
			break;
		rolled_n += rolled;
		drop_snaps(&ms.m[k], false, cut);
		/* the base of replication back: this state, as the new primary's anchor of the cut
		 */
		r = snap_if_missing(&ms.m[k], anchor, site);
	}
	for (size_t k = 0; r == 0 && k < ms.n; k++) {
		rbd_close(ms.m[k].img);
		ms.m[k].img = NULL;
		if (!ms.m[k].promoted)
			r = ims_repl_promote(NULL, 0, site, ms.m[k].pool, ms.m[k].image, generation,
					     false);
	}
	members_close(&ms);
	if (r == 0)
		drop_newer_cuts(site, pool, group, ms_cut);
	if (rolled_back)
		*rolled_back = rolled_n;
	return r;
}

/* The newest cut sealed on every member of @p cur (user snapshots) that @p old's group holds as a
 * complete group snapshot; -1 if none. */
static int64_t common_cut(ims_site *cur, ims_site *old, const char *pool, const char *group)
{
	char name[NAME_MAX_];
	int64_t best = -1, t;
	rados_ioctx_t gio;
	times cuts = {0};
	if (ims_repl_group_last_sealed(name, sizeof(name), &t, cur, pool, group) < 0)
		return -1;
	if (ims_site_ioctx(&gio, old, pool) < 0)
		return -1;
	if (list_cuts(gio, pool, group, &cuts) == 0 && times_has(&cuts, t))
		best = t;
	free(cuts.v);
	ims_site_ioctx_close(gio);
	ims_error_clear();
	return best;
}

int ims_repl_group_diverged(bool *diverged, ims_site *cur, ims_site *old, const char *pool,
			    const char *group)
{
	members ms;
	char anchor[NAME_MAX_];
	int64_t c = common_cut(cur, old, pool, group);
	*diverged = true;
	if (c < 0) /* nothing in common to compare with: what it holds is all its own */
		return 0;
	anchor_name(anchor, sizeof(anchor), c);
	int r = members_open(&ms, old, pool, group);
	if (r == 0) {
		*diverged = false;
		for (size_t k = 0; k < ms.n && !*diverged; k++) {
			bool changed = true;
			if (ims_repl__changed_since(&changed, ms.m[k].img, anchor) < 0)
				changed = true; /* unknown: as if written */
			*diverged = changed;
		}
		ims_error_clear();
	}
	members_close(&ms);
	return r;
}

int ims_repl_group_rejoin(char *plan, size_t len, ims_site *cur, ims_site *old, const char *pool,
			  const char *group, uint64_t generation)
{
	members ms;
	char cut[NAME_MAX_] = "", anchor[NAME_MAX_], recovery[64] = "", source[512];
	size_t kept = 0;
	int64_t c = common_cut(cur, old, pool, group);
	int r;
	if (c >= 0) {
		cut_name(cut, sizeof(cut), c);
		anchor_name(anchor, sizeof(anchor), c);
	}
	/* nobody writes to the old copies while they are rolled back and demoted (a split-brain's
	 * stale copies were held against their writers by this daemon: let go, the rollback and
	 * demote below work through this connection) */
	if ((r = members_open(&ms, old, pool, group)) < 0)
		goto out;
	for (size_t k = 0; k < ms.n; k++)
		ims_site_guard_drop(old, ms.m[k].pool, ms.m[k].image);
	for (size_t k = 0; k < ms.n; k++)
		if ((r = ims_repl_fence(NULL, old, ms.m[k].pool, ms.m[k].image)) < 0)
			goto out;
	/* what each wrote after the common cut is kept; the anchor is older than the cut, so a
	 * member changed since its anchor may only hold the cut's own writes: kept too */
	snprintf(recovery, sizeof(recovery), IMS_REPL_RECOVERY_PREFIX "%" PRId64,
		 ims_clock_unix_ms());
	for (size_t k = 0; k < ms.n; k++) {
		bool changed = true;
		if (c >= 0 && ims_repl__changed_since(&changed, ms.m[k].img, anchor) < 0)
			changed = true;
		if (!changed)
			continue;
		if ((r = snap_create_patient(ms.m[k].img, recovery)) < 0) {
			ims_error_set(r, "cannot keep the head of '%s/%s' on site '%s' as '%s': %s",
				      ms.m[k].pool, ms.m[k].image, ims_site_name(old), recovery,
				      ims_strerror(r));
			goto out;
		}
		kept++;
	}
	if (c >= 0 && kept) {
		/* every member back to the cut at once: the group snapshot is the consistent point
		 */
		rados_ioctx_t gio;
		if ((r = ims_site_ioctx(&gio, old, pool)) < 0)
			goto out;
		r = rbd_group_snap_rollback(gio, group, cut);
		ims_site_ioctx_close(gio);
		if (r < 0) {
			ims_error_set(r, "cannot roll group '%s/%s' on site '%s' back to '%s': %s",
				      pool, group, ims_site_name(old), cut, ims_strerror(r));
			goto out;
		}
	}
	for (size_t k = 0; c >= 0 && k < ms.n; k++)
		if ((r = snap_if_missing(&ms.m[k], cut, old)) < 0)
			goto out;
	for (size_t k = 0; k < ms.n; k++)
		drop_snaps(&ms.m[k], true, c >= 0 ? cut : NULL);
	for (size_t k = 0; k < ms.n; k++) {
		rbd_close(ms.m[k].img);
		ms.m[k].img = NULL;
		if ((r = ims_repl_demote(old, ms.m[k].pool, ms.m[k].image, ims_site_name(cur),
					 generation)) < 0)
			goto out;
	}
	snprintf(source, sizeof(source), "%zu of %zu image(s)", kept, ms.n);
	if (c < 0)
		snprintf(plan, len,
			 "no cut in common: site '%s' kept the head of %s as snapshot '%s'; site "
			 "'%s' copies the group in "
			 "full",
			 ims_site_name(old), source, recovery, ims_site_name(cur));
	else if (kept)
		snprintf(plan, len,
			 "site '%s' kept the head of %s as snapshot '%s' and rolled the group back "
			 "to '%s'; site '%s' "
			 "ships the delta since",
			 ims_site_name(old), source, recovery, cut, ims_site_name(cur));
	else
		snprintf(
			plan, len,
			"site '%s' is a secondary again from '%s'; site '%s' ships the delta since",
			ims_site_name(old), cut, ims_site_name(cur));
	ims_log_info("rejoined group '%s/%s' on site '%s' as a secondary of site '%s': %s", pool,
		     group, ims_site_name(old), ims_site_name(cur), plan);
out:
	members_close(&ms);
	return r;
}

/* ---- verify ---- */

int ims_repl_group_verify(ims_repl_group_verify_result *out, ims_site *src, ims_site *dst,
			  const char *pool, const char *group, const ims_repl_verify_opts *opts)
{
	members ms;
	char cut[NAME_MAX_];
	int r;
	memset(out, 0, sizeof(*out));
	if ((r = IMS_OPTS_CHECK(opts, IMS_REPL_VERIFY_OPTS_VERSION, "verify")) < 0)
		return r;
	/* the newest cut sealed on every member of the secondary, as the primary's group lists them
	 */
	if ((r = members_open(&ms, src, pool, group)) < 0)
		goto out;
	if ((r = ims_repl_group_last_sealed(cut, sizeof(cut), NULL, dst, pool, group)) < 0)
		goto out;
	snprintf(out->cut, sizeof(out->cut), "%s", cut);
	if (!(out->members = calloc(ms.n, sizeof(*out->members))) ||
	    !(out->images = calloc(ms.n, sizeof(char *)))) {
		r = -ENOMEM;
		goto out;
	}
	out->equal = true;
	for (size_t k = 0; k < ms.n; k++) {
		uint64_t id = 0;
		r = cut_id(ms.m[k].img, group, cut, &id);
		/* a promoted primary holds the cut it was promoted at as a user snapshot */
		if (r == -ENOENT && rbd_snap_get_id(ms.m[k].img, cut, &id) == 0)
			r = 0;
		if (r < 0) {
			ims_error_set(r, "member '%s/%s' on site '%s' no longer holds the cut '%s'",
				      ms.m[k].pool, ms.m[k].image, ims_site_name(src), cut);
			goto out;
		}
		ims_repl_verify_opts o = *opts;
		o.snap = cut;
		o.src_snap_id = id;
		if ((r = ims_repl_verify(&out->members[k], src, dst, ms.m[k].pool, ms.m[k].image,
					 &o)) < 0)
			goto out;
		out->n++;
		size_t len = strlen(ms.m[k].pool) + strlen(ms.m[k].image) + 2;
		if (!(out->images[k] = malloc(len))) {
			r = -ENOMEM;
			goto out;
		}
		snprintf(out->images[k], len, "%s/%s", ms.m[k].pool, ms.m[k].image);
		out->equal &= out->members[k]->equal;
	}
out:
	members_close(&ms);
	if (r < 0)
		ims_repl_group_verify_result_free(out);
	return r;
}

void ims_repl_group_verify_result_free(ims_repl_group_verify_result *res)
{
	if (!res)
		return;
	for (size_t k = 0; k < res->n; k++) {
		ims_repl_verify_result_free(res->members[k]);
		if (res->images)
			free(res->images[k]);
	}
	free(res->members);
	free(res->images);
	res->members = NULL;
	res->images = NULL;
	res->n = 0;
}
