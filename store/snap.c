/* store/snap.c: the snapshots of an image (store/snap.h). */
#include "store/snap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "store/store_internal.h"

int ims_snap_check_user_name(const char *snap, const char *what)
{
	if (snap && strncmp(snap, IMS_SNAP_RESERVED_PREFIX, strlen(IMS_SNAP_RESERVED_PREFIX)) == 0)
		return ims_error_set(
			-EINVAL,
			"cannot %s snapshot '%s': names starting with '" IMS_SNAP_RESERVED_PREFIX
			"' are imgstore's own (replication, group cuts, recovery)",
			what, snap);
	return 0;
}

int ims_snap_create(ims_site *site, const char *pool, const char *image_name, const char *snap)
{
	rados_ioctx_t io = NULL;
	rbd_image_t image = NULL;
	int r;

	if ((r = ims_store__check_names(pool, image_name, snap)) < 0)
		return r;
	if ((r = ims_store__open_image(&io, &image, site, pool, image_name, NULL, false)) < 0)
		return r;
	r = rbd_snap_create(image, snap);
	if (r == -EEXIST)
		ims_error_set(r, "snapshot '%s/%s@%s' already exists", pool, image_name, snap);
	else if (r < 0)
		ims_error_set(r, "cannot create snapshot '%s/%s@%s': %s", pool, image_name, snap,
			      ims_strerror(r));
	ims_store__close_image(io, image);
	return r;
}

int ims_snap_list(ims_snap_info **out, size_t *count, ims_site *site, const char *pool,
		  const char *image_name)
{
	rados_ioctx_t io = NULL;
	rbd_image_t image = NULL;
	int r;

	if ((r = ims_store__check_names(pool, image_name, NULL)) < 0)
		return r;
	if ((r = ims_store__open_image(&io, &image, site, pool, image_name, NULL, true)) < 0)
		return r;
	r = ims_snap_list_image(out, count, image);
	ims_store__close_image(io, image);
	return r;
}

int ims_snap_list_image(ims_snap_info **out, size_t *count, rbd_image_t image)
{
	rbd_snap_info_t *snaps = NULL;
	ims_snap_info *list = NULL;
	int max = 16, n, r;

	for (;;) {
		snaps = calloc((size_t)max, sizeof(*snaps));
		if (!snaps)
			return -ENOMEM;
		n = rbd_snap_list(image, snaps, &max);
		if (n != -ERANGE)
			break;
		free(snaps);
	}
	if (n < 0) {
		free(snaps);
		return ims_error_set(n, "cannot list snapshots: %s", ims_strerror(n));
	}
	list = calloc((size_t)n + 1, sizeof(*list));
	if (!list) {
		r = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		int prot = 0;
		struct timespec ts = {0};
		list[i].name = strdup(snaps[i].name);
		if (!list[i].name) {
			ims_snap_list_free(list, (size_t)i);
			list = NULL;
			r = -ENOMEM;
			goto out;
		}
		list[i].id = snaps[i].id;
		list[i].size = snaps[i].size;
		if (rbd_snap_is_protected(image, snaps[i].name, &prot) == 0)
			list[i].is_protected = prot != 0;
		if (rbd_snap_get_timestamp(image, snaps[i].id, &ts) == 0)
			list[i].timestamp = ts.tv_sec;
	}
	*out = list;
	*count = (size_t)n;
	r = 0;
out:
	rbd_snap_list_end(snaps);
	free(snaps);
	return r;
}

void ims_snap_list_free(ims_snap_info *list, size_t count)
{
	for (size_t i = 0; list && i < count; i++)
		free(list[i].name);
	free(list);
}

int ims_snap_rollback(ims_site *site, const char *pool, const char *image_name, const char *snap,
		      ims_progress_fn progress, void *ctx)
{
	rados_ioctx_t io = NULL;
	rbd_image_t image = NULL;
	ims_store__progress_bridge b = {progress, ctx};
	int r;

	if ((r = ims_store__check_names(pool, image_name, snap)) < 0)
		return r;
	if ((r = ims_store__open_image(&io, &image, site, pool, image_name, NULL, false)) < 0)
		return r;
	r = rbd_snap_rollback_with_progress(image, snap, ims_store__bridge_progress, &b);
	if (r == -ENOENT)
		ims_error_set(r, "no snapshot '%s/%s@%s'", pool, image_name, snap);
	else if (r == -EBUSY || r == -EROFS)
		ims_error_set(-EBUSY,
			      "'%s/%s' is in use by another client; stop it before a rollback",
			      pool, image_name);
	else if (r < 0)
		ims_error_set(r, "cannot roll '%s/%s' back to '%s': %s", pool, image_name, snap,
			      ims_strerror(r));
	if (r == -EROFS)
		r = -EBUSY;
	ims_store__close_image(io, image);
	return r;
}

int ims_snap_remove(ims_site *site, const char *pool, const char *image_name, const char *snap)
{
	rados_ioctx_t io = NULL;
	rbd_image_t image = NULL;
	ims_snap_info *snaps = NULL;
	size_t n = 0;
	int r;

	if ((r = ims_store__check_names(pool, image_name, snap)) < 0)
		return r;
	if ((r = ims_store__open_image(&io, &image, site, pool, image_name, NULL, false)) < 0)
		return r;
	if ((r = ims_snap_list_image(&snaps, &n, image)) < 0)
		goto out;
	size_t i;
	for (i = 0; i < n && strcmp(snaps[i].name, snap) != 0; i++)
		;
	if (i == n) {
		r = ims_error_set(-ENOENT, "no snapshot '%s/%s@%s'", pool, image_name, snap);
		goto out;
	}
	r = ims_store__remove_snap_open(image, pool, image_name, snap, snaps[i].id,
					snaps[i].is_protected);
out:
	ims_snap_list_free(snaps, n);
	ims_store__close_image(io, image);
	return r;
}
