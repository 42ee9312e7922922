#include "store/group.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rbd/librbd.h>

#include "common/error.h"
#include "common/spec.h"
#include "store/store_internal.h"

/* Group names follow the rules of image names. */
static int check_group(const char *pool, const char *name, const char *snap)
{
	int r;
	if ((r = ims_name_check(IMS_NAME_POOL, pool)) < 0 ||
	    (r = ims_name_check(IMS_NAME_IMAGE, name)) < 0)
		return r;
	if (snap && (r = ims_name_check(IMS_NAME_SNAP, snap)) < 0)
		return r;
	return 0;
}

/* rbd_group_list() into a buffer of the size it needs (free()): the bytes used, names each
 * ending with a NUL, or a negative errno. */
static int list_names(char **out, rados_ioctx_t io)
{
	size_t len = 1024;
	char *buf;
	int r;
	for (;;) {
		if (!(buf = calloc(1, len)))
			return -ENOMEM;
		size_t got = len;
		r = rbd_group_list(io, buf, &got);
		if (r != -ERANGE)
			break;
		free(buf);
		len = got > len ? got : 2 * len;
	}
	if (r < 0)
		free(buf);
	else
		*out = buf;
	return r;
}

/* Whether the pool has the group (librbd lists the images of an unknown group as none). */
static int find_group(rados_ioctx_t io, const char *name)
{
	char *buf = NULL;
	int r = list_names(&buf, io);
	if (r >= 0) {
		bool found = false;
		for (size_t i = 0; i < (size_t)r && !found; i += strlen(buf + i) + 1)
			found = strcmp(buf + i, name) == 0;
		r = found ? 0 : -ENOENT;
	}
	free(buf);
	return r;
}

/* The members of a group, as librbd gives them; -ENOENT (with a message) if unknown. */
static int list_members(rados_ioctx_t io, ims_site *site, const char *pool, const char *name,
			rbd_group_image_info_t **out, size_t *n)
{
	size_t cap = 16, got = 0;
	rbd_group_image_info_t *v = NULL;
	int r = find_group(io, name);
	if (r == -ENOENT)
		return ims_error_set(r, "no group '%s/%s' on site '%s'", pool, name,
				     ims_site_name(site));
	if (r < 0)
		return ims_error_set(r, "cannot list the groups of pool '%s': %s", pool,
				     ims_strerror(r));
	for (;;) {
		v = calloc(cap, sizeof(*v));
		if (!v)
			return -ENOMEM;
		got = cap;
		r = rbd_group_image_list(io, name, v, sizeof(*v), &got);
		if (r != -ERANGE)
			break;
		free(v);
		cap = got > cap ? got : 2 * cap;
	}
	if (r < 0) {
		free(v);
		if (r == -ENOENT)
			return ims_error_set(r, "no group '%s/%s' on site '%s'", pool, name,
					     ims_site_name(site));
		return ims_error_set(r, "cannot list the images of group '%s/%s': %s", pool, name,
				     ims_strerror(r));
	}
	*out = v;
	*n = got;
	return 0;
}

static void free_members(rbd_group_image_info_t *v, size_t n)
{
	if (!v)
		return;
	rbd_group_image_list_cleanup(v, sizeof(*v), n);
	free(v);
}

static int group_exists(rados_ioctx_t io, ims_site *site, const char *pool, const char *name)
{
	rbd_group_image_info_t *v = NULL;
	size_t n = 0;
	int r = list_members(io, site, pool, name, &v, &n);
	free_members(v, n);
	return r;
}

/* Check the names, open @p pool and list the images of group @p name in it; on an error
 * nothing stays open. */
static int open_group(rados_ioctx_t *io, rbd_group_image_info_t **v, size_t *n, ims_site *site,
		      const char *pool, const char *name, const char *snap)
{
	int r;
	if ((r = check_group(pool, name, snap)) < 0 || (r = ims_site_ioctx(io, site, pool)) < 0)
		return r;
	if ((r = list_members(*io, site, pool, name, v, n)) < 0) {
		ims_site_ioctx_close(*io);
		*io = NULL;
	}
	return r;
}

int ims_group_create(ims_site *site, const char *pool, const char *name)
{
	rados_ioctx_t io = NULL;
	int r;
	if ((r = check_group(pool, name, NULL)) < 0 || (r = ims_site_ioctx(&io, site, pool)) < 0)
		return r;
	r = rbd_group_create(io, name);
	if (r == -EEXIST)
		ims_error_set(r, "group '%s/%s' already exists", pool, name);
	else if (r < 0)
		ims_error_set(r, "cannot create group '%s/%s': %s", pool, name, ims_strerror(r));
	ims_site_ioctx_close(io);
	return r;
}

int ims_group_remove(ims_site *site, const char *pool, const char *name, bool force)
{
	rados_ioctx_t io = NULL;
	rbd_group_image_info_t *v = NULL;
	size_t n = 0;
	int r;
	if ((r = open_group(&io, &v, &n, site, pool, name, NULL)) < 0)
		return r;
	if (n && !force) {
		r = ims_error_set(-ENOTEMPTY,
				  "group '%s/%s' has %zu images: remove them first, or remove the "
				  "group with force "
				  "(its images stay)",
				  pool, name, n);
		goto out;
	}
	r = rbd_group_remove(io, name);
	if (r < 0)
		ims_error_set(r, "cannot remove group '%s/%s': %s", pool, name, ims_strerror(r));
out:
	free_members(v, n);
	ims_site_ioctx_close(io);
	return r;
}

/* The pool name of a pool id, into @p buf. */
static int pool_name(ims_site *site, int64_t id, char *buf, size_t len)
{
	return ims_site_pool_name(buf, len, site, id);
}

int ims_group_of_image(char *buf, size_t len, ims_site *site, const char *pool, const char *image)
{
	rados_ioctx_t io = NULL;
	rbd_image_t img = NULL;
	rbd_group_info_t gi;
	char gpool[IMS_NAME_MAX + 1];
	int r;
	if ((r = ims_store__check_names(pool, image, NULL)) < 0)
		return r;
	if ((r = ims_store__open_image(&io, &img, site, pool, image, NULL, true)) < 0)
		return r;
	memset(&gi, 0, sizeof(gi));
	r = rbd_get_group(img, &gi, sizeof(gi));
	if (r < 0) {
		ims_error_set(r, "cannot read the group of '%s/%s': %s", pool, image,
			      ims_strerror(r));
		goto out;
	}
	if (!gi.name || !gi.name[0] || gi.pool < 0) {
		snprintf(buf, len, "%s", "");
	} else if ((r = pool_name(site, gi.pool, gpool, sizeof(gpool))) < 0) {
		ims_error_set(r, "cannot find the pool of the group of '%s/%s': %s", pool, image,
			      ims_strerror(r));
	} else {
		snprintf(buf, len, "%s/%s", gpool, gi.name);
	}
	rbd_group_info_cleanup(&gi, sizeof(gi));
out:
	ims_store__close_image(io, img);
	return r;
}

typedef enum { MEMBER_ADD, MEMBER_REMOVE } member_change;

/* Add @p image_pool/@p image to group @p pool/@p name, or remove it: the same checks, and
 * librbd's EEXIST/ENOENT said with the group that holds the image. */
static int change_member(member_change how, ims_site *site, const char *pool, const char *name,
			 const char *image_pool, const char *image)
{
	rados_ioctx_t io = NULL, iio = NULL;
	char other[2 * IMS_NAME_MAX + 2], self[2 * IMS_NAME_MAX + 2];
	bool add = how == MEMBER_ADD;
	int r;
	if ((r = check_group(pool, name, NULL)) < 0 ||
	    (r = ims_store__check_names(image_pool, image, NULL)) < 0)
		return r;
	if ((r = ims_site_ioctx(&io, site, pool)) < 0)
		return r;
	if ((r = group_exists(io, site, pool, name)) < 0)
		goto out;
	if ((r = ims_group_of_image(other, sizeof(other), site, image_pool, image)) < 0)
		goto out;
	snprintf(self, sizeof(self), "%s/%s", pool, name);
	if (add && other[0]) {
		r = strcmp(other, self) == 0
			    ? ims_error_set(-EEXIST, "image '%s/%s' is in group '%s' already",
					    image_pool, image, other)
			    : ims_error_set(-EEXIST,
					    "image '%s/%s' is in another group, '%s'; remove it "
					    "from there first",
					    image_pool, image, other);
		goto out;
	}
	if (!add && strcmp(other, self) != 0) {
		r = ims_error_set(-ENOENT, "image '%s/%s' is not in group '%s'", image_pool, image,
				  self);
		goto out;
	}
	if ((r = ims_site_ioctx(&iio, site, image_pool)) < 0)
		goto out;
	r = add ? rbd_group_image_add(io, name, iio, image)
		: rbd_group_image_remove(io, name, iio, image);
	if (r < 0)
		ims_error_set(r, "cannot %s image '%s/%s' %s group '%s': %s",
			      add ? "add" : "remove", image_pool, image, add ? "to" : "from", self,
			      ims_strerror(r));
out:
	if (iio)
		ims_site_ioctx_close(iio);
	ims_site_ioctx_close(io);
	return r;
}

int ims_group_image_add(ims_site *site, const char *pool, const char *name, const char *image_pool,
			const char *image)
{
	return change_member(MEMBER_ADD, site, pool, name, image_pool, image);
}

int ims_group_image_remove(ims_site *site, const char *pool, const char *name,
			   const char *image_pool, const char *image)
{
	return change_member(MEMBER_REMOVE, site, pool, name, image_pool, image);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ims_group_list(char ***out, size_t *count, ims_site *site, const char *pool)
{
	rados_ioctx_t io = NULL;
	char *buf = NULL, **names = NULL;
	size_t n = 0;
	int r;
	if ((r = ims_name_check(IMS_NAME_POOL, pool)) < 0 ||
	    (r = ims_site_ioctx(&io, site, pool)) < 0)
		return r;
	if ((r = list_names(&buf, io)) < 0) {
		ims_error_set(r, "cannot list the groups of pool '%s': %s", pool, ims_strerror(r));
		goto out;
	}
	/* r is the bytes used: names, each ending with a NUL */
	for (size_t i = 0; i < (size_t)r; i += strlen(buf + i) + 1)
		if (buf[i])
			n++;
	names = calloc(n + 1, sizeof(*names));
	if (!names) {
		r = -ENOMEM;
		goto out;
	}
	size_t k = 0;
	for (size_t i = 0; i < (size_t)r && k < n; i += strlen(buf + i) + 1) {
		if (!buf[i])
			continue;
		if (!(names[k] = strdup(buf + i))) {
			ims_group_list_free(names, k);
			names = NULL;
			r = -ENOMEM;
			goto out;
		}
		k++;
	}
	qsort(names, n, sizeof(*names), cmp_str);
	*out = names;
	*count = n;
	r = 0;
out:
	free(buf);
	ims_site_ioctx_close(io);
	return r;
}

void ims_group_list_free(char **names, size_t count)
{
	if (!names)
		return;
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
}

static int cmp_member(const void *a, const void *b)
{
	const ims_group_member *x = a, *y = b;
	int c = strcmp(x->pool, y->pool);
	return c ? c : strcmp(x->image, y->image);
}

static int cmp_snap(const void *a, const void *b)
{
	return strcmp(((const ims_group_snap *)a)->name, ((const ims_group_snap *)b)->name);
}

int ims_group_info_get(ims_group_info **out, ims_site *site, const char *pool, const char *name)
{
	rados_ioctx_t io = NULL;
	rbd_group_image_info_t *v = NULL;
	rbd_group_snap_info_t *sv = NULL;
	size_t n = 0, ns = 0, cap = 16;
	ims_group_info *g = NULL;
	int r;
	if ((r = open_group(&io, &v, &n, site, pool, name, NULL)) < 0)
		return r;
	for (;;) {
		sv = calloc(cap, sizeof(*sv));
		if (!sv) {
			r = -ENOMEM;
			goto out;
		}
		ns = cap;
		r = rbd_group_snap_list(io, name, sv, sizeof(*sv), &ns);
		if (r != -ERANGE)
			break;
		free(sv);
		sv = NULL;
		cap = ns > cap ? ns : 2 * cap;
	}
	if (r < 0) {
		ns = 0;
		ims_error_set(r, "cannot list the snapshots of group '%s/%s': %s", pool, name,
			      ims_strerror(r));
		goto out;
	}
	r = -ENOMEM;
	if (!(g = calloc(1, sizeof(*g))) || !(g->pool = strdup(pool)) ||
	    !(g->name = strdup(name)) || !(g->members = calloc(n + 1, sizeof(*g->members))) ||
	    !(g->snaps = calloc(ns + 1, sizeof(*g->snaps))))
		goto out;
	for (size_t i = 0; i < n; i++) {
		char pn[IMS_NAME_MAX + 1];
		if (pool_name(site, v[i].pool, pn, sizeof(pn)) < 0)
			snprintf(pn, sizeof(pn), "%lld", (long long)v[i].pool);
		ims_group_member *m = &g->members[g->nmembers];
		if (!(m->pool = strdup(pn)) || !(m->image = strdup(v[i].name))) {
			free(m->pool);
			free(m->image);
			goto out;
		}
		g->nmembers++;
	}
	qsort(g->members, g->nmembers, sizeof(*g->members), cmp_member);
	for (size_t i = 0; i < ns; i++) {
		if (!(g->snaps[i].name = strdup(sv[i].name)))
			goto out;
		g->snaps[i].complete = sv[i].state == RBD_GROUP_SNAP_STATE_COMPLETE;
		g->nsnaps++;
	}
	qsort(g->snaps, g->nsnaps, sizeof(*g->snaps), cmp_snap);
	*out = g;
	g = NULL;
	r = 0;
out:
	ims_group_info_free(g);
	if (sv) {
		if (ns)
			rbd_group_snap_list_cleanup(sv, sizeof(*sv), ns);
		free(sv);
	}
	free_members(v, n);
	ims_site_ioctx_close(io);
	return r;
}

void ims_group_info_free(ims_group_info *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->nmembers; i++) {
		free(g->members[i].pool);
		free(g->members[i].image);
	}
	for (size_t i = 0; i < g->nsnaps; i++)
		free(g->snaps[i].name);
	free(g->members);
	free(g->snaps);
	free(g->pool);
	free(g->name);
	free(g);
}

#define SNAP_LOCKS 64
static pthread_mutex_t snap_locks[SNAP_LOCKS] = {[0 ... SNAP_LOCKS - 1] =
							 PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t *snap_lock_of(const char *pool, const char *name)
{
	uint32_t h = 2166136261u; /* FNV-1a of "pool/name" */
	for (const char *p = pool; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ '/') * 16777619u;
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return &snap_locks[h % SNAP_LOCKS];
}

void ims_group_snap_lock(const char *pool, const char *name)
{
	pthread_mutex_lock(snap_lock_of(pool, name));
}

void ims_group_snap_unlock(const char *pool, const char *name)
{
	pthread_mutex_unlock(snap_lock_of(pool, name));
}

int ims_group_snap_create(ims_site *site, const char *pool, const char *name, const char *snap)
{
	rados_ioctx_t io = NULL;
	rbd_group_image_info_t *v = NULL;
	size_t n = 0;
	int r;
	if ((r = open_group(&io, &v, &n, site, pool, name, snap)) < 0)
		return r;
	if (n == 0) {
		r = ims_error_set(-EINVAL, "group '%s/%s' has no images to snapshot", pool, name);
		goto out;
	}
	ims_group_snap_lock(pool, name);
	r = rbd_group_snap_create(io, name, snap);
	ims_group_snap_unlock(pool, name);
	if (r == -EEXIST)
		ims_error_set(r, "group snapshot '%s/%s@%s' already exists", pool, name, snap);
	else if (r < 0)
		ims_error_set(r, "cannot snapshot group '%s/%s': %s", pool, name, ims_strerror(r));
out:
	free_members(v, n);
	ims_site_ioctx_close(io);
	return r;
}

int ims_group_snap_remove(ims_site *site, const char *pool, const char *name, const char *snap)
{
	rados_ioctx_t io = NULL;
	int r;
	if ((r = check_group(pool, name, snap)) < 0 || (r = ims_site_ioctx(&io, site, pool)) < 0)
		return r;
	if ((r = group_exists(io, site, pool, name)) < 0)
		goto out;
	ims_group_snap_lock(pool, name);
	r = rbd_group_snap_remove(io, name, snap);
	ims_group_snap_unlock(pool, name);
	if (r == -ENOENT)
		ims_error_set(r, "no group snapshot '%s/%s@%s' on site '%s'", pool, name, snap,
			      ims_site_name(site));
	else if (r < 0)
		ims_error_set(r, "cannot remove group snapshot '%s/%s@%s': %s", pool, name, snap,
			      ims_strerror(r));
out:
	ims_site_ioctx_close(io);
	return r;
}

/* Change every image of @p v, all or none: on an error the ones changed are changed back. */
static int change_members(member_change how, ims_site *site, const char *pool, const char *name,
			  const ims_spec *v, size_t n)
{
	member_change undo = how == MEMBER_ADD ? MEMBER_REMOVE : MEMBER_ADD;
	size_t done = 0;
	int r = 0;
	for (; done < n; done++)
		if ((r = change_member(how, site, pool, name, v[done].pool, v[done].image)) < 0)
			break;
	if (r < 0) {
		char msg[IMS_ERROR_MSG_MAX];
		snprintf(msg, sizeof(msg), "%s", ims_error_last());
		for (size_t k = 0; k < done; k++)
			change_member(undo, site, pool, name, v[k].pool, v[k].image);
		return ims_error_set(r, "%s (nothing %s)", msg,
				     how == MEMBER_ADD ? "added" : "removed");
	}
	return 0;
}

int ims_group_images_add(ims_site *site, const char *pool, const char *name, const ims_spec *v,
			 size_t n, ims_group_image_check_fn check, void *ctx)
{
	ims_group_info *gi = NULL;
	char in[2 * IMS_NAME_MAX + 2];
	int r;

	if ((r = ims_group_info_get(&gi, site, pool, name)) < 0)
		return r;
	ims_group_info_free(gi);
	/* all or none: check every image before the first is added */
	for (size_t i = 0; i < n; i++) {
		if ((r = ims_group_of_image(in, sizeof(in), site, v[i].pool, v[i].image)) < 0)
			return r;
		if (in[0])
			return ims_error_set(-EEXIST, "image '%s/%s' is in group '%s' already%s",
					     v[i].pool, v[i].image, in,
					     strcmp(in + strlen(pool) + 1, name) == 0
						     ? ""
						     : "; remove it from there first");
		if (check && (r = check(ctx, &v[i])) < 0)
			return r;
		for (size_t k = 0; k < i; k++)
			if (!strcmp(v[k].pool, v[i].pool) && !strcmp(v[k].image, v[i].image))
				return ims_error_set(-EINVAL, "image '%s/%s' is named twice",
						     v[i].pool, v[i].image);
	}
	return change_members(MEMBER_ADD, site, pool, name, v, n);
}

int ims_group_images_remove(ims_site *site, const char *pool, const char *name, const ims_spec *v,
			    size_t n)
{
	ims_group_info *gi = NULL;
	char in[2 * IMS_NAME_MAX + 2], self[2 * IMS_NAME_MAX + 2];
	int r;

	if ((r = ims_group_info_get(&gi, site, pool, name)) < 0)
		return r;
	ims_group_info_free(gi);
	snprintf(self, sizeof(self), "%s/%s", pool, name);
	for (size_t i = 0; i < n; i++) {
		if ((r = ims_group_of_image(in, sizeof(in), site, v[i].pool, v[i].image)) < 0)
			return r;
		if (strcmp(in, self) != 0)
			return ims_error_set(-ENOENT, "image '%s/%s' is not in group '%s'",
					     v[i].pool, v[i].image, self);
	}
	return change_members(MEMBER_REMOVE, site, pool, name, v, n);
}
