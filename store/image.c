#include "store/image.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/opts.h"
#include "common/spec.h"
#include "common/units.h"
#include "store/crypt.h"
#include "store/store_internal.h"

int ims_store__check_names(const char *pool, const char *image, const char *snap)
{
	int r;
	if ((r = ims_name_check(IMS_NAME_POOL, pool)) < 0)
		return r;
	if (image && (r = ims_name_check(IMS_NAME_IMAGE, image)) < 0)
		return r;
	if (snap && (r = ims_name_check(IMS_NAME_SNAP, snap)) < 0)
		return r;
	return 0;
}

int ims_store__open_image(rados_ioctx_t *io, rbd_image_t *image, ims_site *site, const char *pool,
			  const char *name, const char *snap, bool read_only)
{
	int r = ims_site_ioctx(io, site, pool);
	if (r < 0)
		return r;
	r = read_only ? rbd_open_read_only(*io, name, image, snap)
		      : rbd_open(*io, name, image, snap);
	if (r < 0) {
		ims_site_ioctx_close(*io);
		if (r == -ENOENT && snap)
			return ims_error_set(
				r, "no image '%s/%s' or no snapshot '%s' of it on site '%s'", pool,
				name, snap, ims_site_name(site));
		if (r == -ENOENT)
			return ims_error_set(r, "no image '%s/%s' on site '%s'", pool, name,
					     ims_site_name(site));
		return ims_error_set(r, "cannot open image '%s/%s': %s", pool, name,
				     ims_strerror(r));
	}
	return 0;
}

void ims_store__close_image(rados_ioctx_t io, rbd_image_t image)
{
	if (image)
		rbd_close(image);
	if (io)
		ims_site_ioctx_close(io);
}

int ims_store__catalog_add(rados_ioctx_t io, const char *name, uint64_t size, const char *source,
			   const char *parent, const char *sha256)
{
	ims_catalog_entry e = {
		.name = (char *)name,
		.created = (int64_t)time(NULL),
		.size = size,
		.source = (char *)source,
		.parent = (char *)parent,
		.content_sha256 = (char *)sha256,
	};
	return ims_catalog_put(io, &e);
}

void ims_store__features_str(char *buf, size_t len, uint64_t f)
{
	static const struct {
		uint64_t bit;
		const char *name;
	} names[] = {
		{RBD_FEATURE_LAYERING, "layering"},
		{RBD_FEATURE_STRIPINGV2, "striping"},
		{RBD_FEATURE_EXCLUSIVE_LOCK, "exclusive-lock"},
		{RBD_FEATURE_OBJECT_MAP, "object-map"},
		{RBD_FEATURE_FAST_DIFF, "fast-diff"},
		{RBD_FEATURE_DEEP_FLATTEN, "deep-flatten"},
		{RBD_FEATURE_JOURNALING, "journaling"},
		{RBD_FEATURE_DATA_POOL, "data-pool"},
		{RBD_FEATURE_OPERATIONS, "operations"},
		{RBD_FEATURE_MIGRATING, "migrating"},
		{RBD_FEATURE_NON_PRIMARY, "non-primary"},
	};
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(f & names[i].bit))
			continue;
		int n = snprintf(buf + used, len - used, "%s%s", used ? "," : "", names[i].name);
		if (n < 0 || (size_t)n >= len - used)
			return;
		used += (size_t)n;
	}
}

static int set_create_opts(rbd_image_options_t o, const ims_image_create_opts *opts)
{
	uint64_t features = opts->features ? opts->features : IMS_IMAGE_DEFAULT_FEATURES;
	int r = rbd_image_options_set_uint64(o, RBD_IMAGE_OPTION_FEATURES, features);
	if (r == 0 && opts->order)
		r = rbd_image_options_set_uint64(o, RBD_IMAGE_OPTION_ORDER, opts->order);
	if (r == 0 && opts->data_pool)
		r = rbd_image_options_set_string(o, RBD_IMAGE_OPTION_DATA_POOL, opts->data_pool);
	return r;
}

static int check_create_opts(const ims_image_create_opts *opts, bool need_size)
{
	int r = IMS_OPTS_CHECK(opts, IMS_IMAGE_CREATE_OPTS_VERSION, "image");
	if (r < 0)
		return r;
	if (need_size && opts->size == 0)
		return ims_error_set(-EINVAL, "an image needs a size above 0");
	if (opts->order && (opts->order < 12 || opts->order > 25))
		return ims_error_set(-EINVAL, "object size 2^%u is outside 4 KiB to 32 MiB",
				     opts->order);
	if (opts->data_pool && ims_name_check(IMS_NAME_POOL, opts->data_pool) < 0)
		return -EINVAL;
	if (opts->encryption && opts->encryption[0] && strcmp(opts->encryption, "luks2") != 0)
		return ims_error_set(-EINVAL, "unknown encryption '%s' (luks2 is known)",
				     opts->encryption);
	return 0;
}

/* LUKS2-format the new image @p name with a data key of its own (store/crypt.h). */
static int encrypt_new(ims_site *site, rados_ioctx_t io, const char *pool, const char *name)
{
	rbd_image_t image = NULL;
	char what[256];
	snprintf(what, sizeof(what), "%s/%s", pool, name);
	int r = rbd_open(io, name, &image, NULL);
	if (r < 0)
		return ims_error_set(r, "cannot open new image '%s': %s", what, ims_strerror(r));
	r = ims_crypt_format(image, ims_site_kek(site), what);
	rbd_close(image);
	return r;
}

int ims_image_create(ims_site *site, const char *pool, const char *name,
		     const ims_image_create_opts *opts)
{
	rados_ioctx_t io = NULL;
	rbd_image_options_t o = NULL;
	int r;

	if ((r = ims_store__check_names(pool, name, NULL)) < 0 ||
	    (r = check_create_opts(opts, true)) < 0)
		return r;
	bool encrypt = opts->encryption && opts->encryption[0];
	if (encrypt && !ims_site_kek(site))
		return ims_error_set(-EPERM,
				     "cannot encrypt image '%s/%s': site '%s' has no key ([server] "
				     "kek_file is unset)",
				     pool, name, ims_site_name(site));
	if (encrypt && opts->size > UINT64_MAX - IMS_CRYPT_LUKS2_HEADER)
		return ims_error_set(-EINVAL, "size %" PRIu64 " is too large", opts->size);
	if ((r = ims_site_ioctx(&io, site, pool)) < 0)
		return r;
	rbd_image_options_create(&o);
	if ((r = set_create_opts(o, opts)) < 0) {
		ims_error_set(r, "bad options for image '%s/%s'", pool, name);
		goto out;
	}
	r = rbd_create4(io, name, opts->size + (encrypt ? IMS_CRYPT_LUKS2_HEADER : 0), o);
	if (r == -EEXIST) {
		ims_error_set(r, "image '%s/%s' already exists on site '%s'", pool, name,
			      ims_site_name(site));
		goto out;
	}
	if (r == -ENOENT && opts->data_pool) {
		ims_error_set(r, "no data pool '%s' on site '%s'", opts->data_pool,
			      ims_site_name(site));
		goto out;
	}
	if (r < 0) {
		ims_error_set(r, "cannot create image '%s/%s': %s", pool, name, ims_strerror(r));
		goto out;
	}
	if (encrypt && (r = encrypt_new(site, io, pool, name)) < 0) {
		rbd_remove(io, name);
		goto out;
	}
	r = ims_store__catalog_add(io, name, opts->size, "new", NULL, NULL);
	if (r < 0) /* no image without its record: undo */
		rbd_remove(io, name);
out:
	if (o)
		rbd_image_options_destroy(o);
	if (io)
		ims_site_ioctx_close(io);
	return r;
}

int ims_image_exists(ims_site *site, const char *pool, const char *name)
{
	rados_ioctx_t io = NULL;
	rbd_image_t image = NULL;
	int r;
	if ((r = ims_store__check_names(pool, name, NULL)) < 0)
		return r;
	if ((r = ims_site_ioctx(&io, site, pool)) < 0)
		return r;
	r = rbd_open_read_only(io, name, &image, NULL);
	if (r == 0) {
		rbd_close(image);
		r = 1;
	} else if (r == -ENOENT) {
		r = 0;
	} else {
		ims_error_set(r, "cannot open image '%s/%s': %s", pool, name, ims_strerror(r));
	}
	ims_site_ioctx_close(io);
	return r;
}

static int count_used(uint64_t off, size_t len, int exists, void *arg)
{
	(void)off;
	if (exists)
		*(uint64_t *)arg += len;
	return 0;
}

int ims_image_info_get(ims_image_info **out, ims_site *site, const char *pool, const char *name)
{
	rados_ioctx_t io = NULL;
	rbd_image_t image = NULL;
	ims_image_info *info = NULL;
	rbd_image_info_t ri;
	char buf[512];
	int r;

	if ((r = ims_store__check_names(pool, name, NULL)) < 0)
		return r;
	if ((r = ims_store__open_image(&io, &image, site, pool, name, NULL, true)) < 0)
		return r;
	info = calloc(1, sizeof(*info));
	if (!info || !(info->pool = strdup(pool)) || !(info->name = strdup(name))) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = rbd_stat(image, &ri, sizeof(ri))) < 0) {
		ims_error_set(r, "cannot stat '%s/%s': %s", pool, name, ims_strerror(r));
		goto out;
	}
	info->size = ri.size;
	info->object_size = ri.obj_size;
	if ((r = rbd_get_features(image, &info->features)) < 0)
		goto out;
	ims_store__features_str(buf, sizeof(buf), info->features);
	if (!(info->features_str = strdup(buf))) {
		r = -ENOMEM;
		goto out;
	}
	if (rbd_get_id(image, buf, sizeof(buf)) == 0 && !(info->id = strdup(buf))) {
		r = -ENOMEM;
		goto out;
	}
	if (info->features & RBD_FEATURE_DATA_POOL) {
		int64_t dp = rbd_get_data_pool_id(image);
		if (dp >= 0 && ims_site_pool_name(buf, sizeof(buf), site, dp) == 0)
			info->data_pool = strdup(buf);
	}
	rbd_linked_image_spec_t parent;
	rbd_snap_spec_t psnap;
	if (rbd_get_parent(image, &parent, &psnap) == 0) {
		snprintf(buf, sizeof(buf), "%s/%s@%s", parent.pool_name, parent.image_name,
			 psnap.name);
		info->parent = strdup(buf);
		rbd_linked_image_spec_cleanup(&parent);
		rbd_snap_spec_cleanup(&psnap);
	}
	if ((r = ims_snap_list_image(&info->snaps, &info->nsnaps, image)) < 0)
		goto out;
	/* With fast-diff this reads the object map only; without it, it asks every object. */
	r = rbd_diff_iterate2(image, NULL, 0, info->size, 0, 1, count_used, &info->used_bytes);
	if (r < 0) {
		ims_error_set(r, "cannot count the used bytes of '%s/%s': %s", pool, name,
			      ims_strerror(r));
		goto out;
	}
	if ((r = ims_crypt_is_encrypted(image)) < 0) {
		ims_error_set(r, "cannot read the metadata of '%s/%s': %s", pool, name,
			      ims_strerror(r));
		goto out;
	}
	info->encrypted = r == 1;
	if (info->encrypted && info->size >= IMS_CRYPT_LUKS2_HEADER)
		info->size -= IMS_CRYPT_LUKS2_HEADER;
	r = ims_catalog_get(&info->catalog, io, name);
	if (r == -ENOENT) {
		info->catalog = NULL;
		r = 0;
	}
	if (r < 0)
		goto out;
	*out = info;
	info = NULL;
out:
	ims_image_info_free(info);
	ims_store__close_image(io, image);
	return r;
}

void ims_image_info_free(ims_image_info *info)
{
	if (!info)
		return;
	free(info->pool);
	free(info->name);
	free(info->id);
	free(info->features_str);
	free(info->data_pool);
	free(info->parent);
	ims_snap_list_free(info->snaps, info->nsnaps);
	ims_catalog_entry_free(info->catalog);
	free(info);
}

static int cmp_list_entry(const void *a, const void *b)
{
	return strcmp(((const ims_image_list_entry *)a)->name,
		      ((const ims_image_list_entry *)b)->name);
}

int ims_store__catalog_join(ims_image_list_entry *list, size_t n, ims_catalog_entry *cat,
			    size_t ncat)
{
	for (size_t i = 0; i < n; i++) {
		size_t lo = 0, hi = ncat;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			int c = strcmp(cat[mid].name, list[i].name);
			if (c == 0) {
				/* the entry moves to the list; its name stays, so that @p cat stays
				 * sorted for the searches that follow */
				char *keep = strdup(cat[mid].name);
				if (!keep)
					return -ENOMEM;
				list[i].in_catalog = true;
				list[i].entry = cat[mid];
				memset(&cat[mid], 0, sizeof(cat[mid]));
				cat[mid].name = keep;
				break;
			}
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
	}
	return 0;
}

int ims_image_list(ims_image_list_entry **out, size_t *count, ims_site *site, const char *pool)
{
	rados_ioctx_t io = NULL;
	rbd_image_spec_t *specs = NULL;
	size_t nspecs = 64, ncat = 0, n = 0;
	ims_catalog_entry *cat = NULL;
	ims_image_list_entry *list = NULL;
	int r;

	if ((r = ims_name_check(IMS_NAME_POOL, pool)) < 0)
		return r;
	if ((r = ims_site_ioctx(&io, site, pool)) < 0)
		return r;
	for (;;) {
		specs = calloc(nspecs, sizeof(*specs));
		if (!specs) {
			r = -ENOMEM;
			goto out;
		}
		r = rbd_list2(io, specs, &nspecs);
		if (r != -ERANGE)
			break;
		free(specs);
		specs = NULL;
	}
	if (r < 0) {
		ims_error_set(r, "cannot list pool '%s': %s", pool, ims_strerror(r));
		nspecs = 0;
		goto out;
	}
	if ((r = ims_catalog_list(&cat, &ncat, io)) < 0)
		goto out;
	list = calloc(nspecs + 1, sizeof(*list));
	if (!list) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nspecs; i++) {
		if (strncmp(specs[i].name, ".", 1) == 0)
			continue; /* imgstore's own temporary images */
		if (!(list[n].name = strdup(specs[i].name))) {
			r = -ENOMEM;
			goto out;
		}
		n++;
	}
	if ((r = ims_store__catalog_join(list, n, cat, ncat)) < 0)
		goto out;
	/* cold images (tier/) have no RBD image, only their catalog entry */
	for (size_t i = 0; i < ncat; i++) {
		if (!cat[i].cold_target)
			continue; /* taken by an RBD image above, or not cold */
		ims_image_list_entry *nl = realloc(list, (n + 1) * sizeof(*nl));
		if (!nl) {
			r = -ENOMEM;
			goto out;
		}
		list = nl;
		memset(&list[n], 0, sizeof(list[n]));
		if (!(list[n].name = strdup(cat[i].name))) {
			r = -ENOMEM;
			goto out;
		}
		list[n].in_catalog = true;
		list[n].entry = cat[i];
		memset(&cat[i], 0, sizeof(cat[i]));
		n++;
	}
	qsort(list, n, sizeof(*list), cmp_list_entry);
	*out = list;
	*count = n;
	list = NULL;
	n = 0;
out:
	ims_image_list_free(list, n);
	ims_catalog_list_free(cat, ncat);
	if (specs) {
		rbd_image_spec_list_cleanup(specs, nspecs);
		free(specs);
	}
	ims_site_ioctx_close(io);
	return r;
}

void ims_image_list_free(ims_image_list_entry *list, size_t count)
{
	for (size_t i = 0; list && i < count; i++) {
		free(list[i].name);
		ims_catalog_entry_clear(&list[i].entry);
	}
	free(list);
}

static int update_catalog_size(rados_ioctx_t io, const char *name, uint64_t size)
{
	ims_catalog_entry *e = NULL;
	int r = ims_catalog_get(&e, io, name);
	if (r == -ENOENT)
		return 0; /* not ours to record */
	if (r < 0)
		return r;
	e->size = size;
	r = ims_catalog_put(io, e);
	ims_catalog_entry_free(e);
	return r;
}

static int no_progress(uint64_t done, uint64_t total, void *arg)
{
	(void)done;
	(void)total;
	(void)arg;
	return 0;
}

int ims_image_resize(ims_site *site, const char *pool, const char *name, uint64_t size,
		     bool allow_shrink)
{
	rados_ioctx_t io = NULL;
	rbd_image_t image = NULL;
	uint64_t cur;
	char a[32], b[32];
	int r;

	if ((r = ims_store__check_names(pool, name, NULL)) < 0)
		return r;
	if (size == 0)
		return ims_error_set(-EINVAL, "an image needs a size above 0");
	if ((r = ims_store__open_image(&io, &image, site, pool, name, NULL, false)) < 0)
		return r;
	if ((r = rbd_get_size(image, &cur)) < 0 || (r = ims_crypt_is_encrypted(image)) < 0)
		goto out;
	/* an encrypted image is its LUKS2 header larger than the plaintext it holds */
	uint64_t header = r == 1 ? IMS_CRYPT_LUKS2_HEADER : 0;
	if (header && (cur < header || size > UINT64_MAX - header)) {
		r = ims_error_set(-EINVAL, "cannot resize encrypted '%s/%s' to %" PRIu64, pool,
				  name, size);
		goto out;
	}
	cur -= header;
	if (size < cur && !allow_shrink) {
		r = ims_error_set(
			-EINVAL,
			"shrinking '%s/%s' from %s to %s discards data; allow it explicitly", pool,
			name, ims_format_size(a, sizeof(a), cur),
			ims_format_size(b, sizeof(b), size));
		goto out;
	}
	if (size != cur) {
		/* librbd calls the progress function unconditionally: it must not be NULL */
		r = rbd_resize2(image, size + header, allow_shrink, no_progress, NULL);
		if (r < 0) {
			ims_error_set(r, "cannot resize '%s/%s': %s", pool, name, ims_strerror(r));
			goto out;
		}
	}
	r = update_catalog_size(io, name, size);
out:
	ims_store__close_image(io, image);
	return r;
}

int ims_image_rename(ims_site *site, const char *pool, const char *from, const char *to)
{
	rados_ioctx_t io = NULL;
	ims_catalog_entry *e = NULL;
	int r;

	if ((r = ims_store__check_names(pool, from, NULL)) < 0 ||
	    (r = ims_name_check(IMS_NAME_IMAGE, to)) < 0)
		return r;
	if ((r = ims_site_ioctx(&io, site, pool)) < 0)
		return r;
	r = rbd_rename(io, from, to);
	if (r == -ENOENT)
		ims_error_set(r, "no image '%s/%s' on site '%s'", pool, from, ims_site_name(site));
	else if (r == -EEXIST)
		ims_error_set(r, "image '%s/%s' already exists on site '%s'", pool, to,
			      ims_site_name(site));
	else if (r < 0)
		ims_error_set(r, "cannot rename '%s/%s' to '%s': %s", pool, from, to,
			      ims_strerror(r));
	if (r < 0)
		goto out;
	r = ims_catalog_get(&e, io, from);
	if (r == -ENOENT) {
		r = 0;
		goto out;
	}
	if (r < 0)
		goto out;
	free(e->name);
	if (!(e->name = strdup(to))) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = ims_catalog_put(io, e)) == 0)
		r = ims_catalog_remove(io, from);
out:
	ims_catalog_entry_free(e);
	ims_site_ioctx_close(io);
	return r;
}

/* The clones of a snapshot as "pool/image, ..." into buf; returns how many. */
static int list_children(rbd_image_t image, uint64_t snap_id, char *buf, size_t len)
{
	rbd_linked_image_spec_t *kids = NULL;
	size_t n = 16;
	int r;

	if ((r = rbd_snap_set_by_id(image, snap_id)) < 0)
		return r;
	for (;;) {
		kids = calloc(n, sizeof(*kids));
		if (!kids) {
			r = -ENOMEM;
			goto out;
		}
		r = rbd_list_children3(image, kids, &n);
		if (r != -ERANGE)
			break;
		free(kids);
		kids = NULL;
	}
	if (r < 0) {
		n = 0;
		goto out;
	}
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(buf + used, len - used, "%s%s/%s", used ? ", " : "",
				 kids[i].pool_name, kids[i].image_name);
		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
	r = (int)n;
out:
	if (kids) {
		rbd_linked_image_spec_list_cleanup(kids, n);
		free(kids);
	}
	rbd_snap_set(image, NULL);
	return r;
}

/* -EBUSY naming the clones if snapshot @p snap has any; @p tail ends the message. */
static int check_no_clones(rbd_image_t image, const char *pool, const char *name, const char *snap,
			   uint64_t snap_id, const char *tail)
{
	char kids[1024];
	int r = list_children(image, snap_id, kids, sizeof(kids));
	if (r < 0)
		return ims_error_set(r, "cannot list the clones of '%s/%s@%s': %s", pool, name,
				     snap, ims_strerror(r));
	if (r > 0)
		return ims_error_set(
			-EBUSY,
			"snapshot '%s/%s@%s' has %d clone%s (%s): flatten or remove them first%s",
			pool, name, snap, r, r == 1 ? "" : "s", kids, tail);
	return 0;
}

int ims_store__remove_snap_open(rbd_image_t image, const char *pool, const char *name,
				const char *snap, uint64_t snap_id, bool is_protected)
{
	int r = check_no_clones(image, pool, name, snap, snap_id, "");
	if (r < 0)
		return r;
	if (is_protected && (r = rbd_snap_unprotect(image, snap)) < 0)
		return ims_error_set(r, "cannot unprotect '%s/%s@%s': %s", pool, name, snap,
				     ims_strerror(r));
	r = rbd_snap_remove(image, snap);
	if (r < 0)
		return ims_error_set(r, "cannot remove snapshot '%s/%s@%s': %s", pool, name, snap,
				     ims_strerror(r));
	return 0;
}

int ims_image_watchers(size_t *out, rbd_image_t image, rados_ioctx_t mine)
{
	rbd_image_watcher_t *w = NULL;
	size_t n = 8;
	int r;

	for (;;) {
		w = calloc(n, sizeof(*w));
		if (!w)
			return -ENOMEM;
		r = rbd_watchers_list(image, w, &n);
		if (r != -ERANGE)
			break;
		free(w);
	}
	if (r >= 0) {
		uint64_t me = mine ? rados_get_instance_id(rados_ioctx_get_cluster(mine)) : 0;
		size_t others = 0;
		for (size_t i = 0; i < n; i++)
			if (!mine || (uint64_t)w[i].id != me)
				others++;
		rbd_watchers_list_cleanup(w, n);
		*out = others;
		r = 0;
	}
	free(w);
	return r;
}

int ims_store__count_watchers(size_t *out, rbd_image_t image)
{
	return ims_image_watchers(out, image, NULL);
}

/* -EBUSY if snapshot @p id is a member's part of a group snapshot (only the group removes it). */
static int check_not_group_snap(rbd_image_t image, const char *pool, const char *name, uint64_t id)
{
	rbd_snap_namespace_type_t type = RBD_SNAP_NAMESPACE_TYPE_USER;
	rbd_snap_group_namespace_t g = {0};
	int r = rbd_snap_get_namespace_type(image, id, &type);

	if (r < 0)
		return ims_error_set(r, "cannot read the snapshots of '%s/%s': %s", pool, name,
				     ims_strerror(r));
	if (type == RBD_SNAP_NAMESPACE_TYPE_USER || type == RBD_SNAP_NAMESPACE_TYPE_TRASH)
		return 0; /* removed here; a trashed one by rbd_remove() once it has no clones */
	if (type == RBD_SNAP_NAMESPACE_TYPE_GROUP &&
	    rbd_snap_get_group_namespace(image, id, &g, sizeof(g)) == 0) {
		r = ims_error_set(
			-EBUSY,
			"image '%s/%s' has a snapshot of group '%s' ('%s'): remove the group "
			"snapshot first; nothing removed",
			pool, name, g.group_name, g.group_snap_name);
		rbd_snap_group_namespace_cleanup(&g, sizeof(g));
		return r;
	}
	return ims_error_set(
		-EBUSY,
		"image '%s/%s' has a %s snapshot that imgstore does not remove; nothing removed",
		pool, name, type == RBD_SNAP_NAMESPACE_TYPE_GROUP ? "group" : "mirror");
}

/*
 * Whether a purge can remove the image, checked on a read-only handle (which does not watch
 * the image) before anything is removed: rbd_remove() refuses an image that a client has open
 * or that is in a group, and a snapshot with clones or of a group cannot go.
 */
static int check_purge(rbd_image_t image, const char *pool, const char *name,
		       const ims_snap_info *snaps, size_t nsnaps)
{
	rbd_group_info_t group = {0};
	size_t watchers = 0;
	int r = ims_store__count_watchers(&watchers, image);
	if (r < 0)
		return ims_error_set(r, "cannot list the clients of '%s/%s': %s", pool, name,
				     ims_strerror(r));
	if (watchers > 0)
		return ims_error_set(-EBUSY,
				     "image '%s/%s' is open by %zu client%s; nothing removed", pool,
				     name, watchers, watchers == 1 ? "" : "s");
	if ((r = rbd_get_group(image, &group, sizeof(group))) < 0)
		return ims_error_set(r, "cannot read the group of '%s/%s': %s", pool, name,
				     ims_strerror(r));
	if (group.name && group.name[0])
		r = ims_error_set(-EBUSY,
				  "image '%s/%s' is in group '%s': remove it from the group first; "
				  "nothing removed",
				  pool, name, group.name);
	rbd_group_info_cleanup(&group, sizeof(group));
	if (r < 0)
		return r;
	for (size_t i = 0; i < nsnaps; i++)
		if ((r = check_not_group_snap(image, pool, name, snaps[i].id)) < 0 ||
		    (r = check_no_clones(image, pool, name, snaps[i].name, snaps[i].id,
					 "; nothing removed")) < 0)
			return r;
	return 0;
}

static bool is_user_snap(rbd_image_t image, uint64_t id)
{
	rbd_snap_namespace_type_t type = RBD_SNAP_NAMESPACE_TYPE_USER;
	return rbd_snap_get_namespace_type(image, id, &type) == 0 &&
	       type == RBD_SNAP_NAMESPACE_TYPE_USER;
}

/* Destroy the wrapped key of @p name before it is purged: -EINVAL if it has none. */
static int shred_key(rados_ioctx_t io, const char *pool, const char *name)
{
	rbd_image_t image = NULL;
	char what[2 * IMS_NAME_MAX + 2];
	snprintf(what, sizeof(what), "%s/%s", pool, name);
	int r = rbd_open(io, name, &image, NULL);
	if (r < 0)
		return ims_error_set(r, "cannot open image '%s': %s", what, ims_strerror(r));
	if ((r = ims_crypt_is_encrypted(image)) == 0)
		r = ims_error_set(
			-EINVAL,
			"image '%s' is not encrypted: it has no key to shred (use --purge)", what);
	else if (r == 1)
		r = ims_crypt_shred(image, what);
	else
		ims_error_set(r, "cannot read the metadata of '%s': %s", what, ims_strerror(r));
	rbd_close(image);
	return r;
}

/* The replica's key destroyed (@p shred) or only looked at: the site answers, the image there
 * is a replica of @p source or absent, its metadata reads. */
static int shred_replica(ims_site *site, const char *pool, const char *name, const char *source,
			 bool shred)
{
	rbd_image_t image = NULL;
	char what[2 * IMS_NAME_MAX + 2], src[512];
	size_t n = sizeof(src);
	int r;
	if ((r = ims_store__check_names(pool, name, NULL)) < 0)
		return r;
	snprintf(what, sizeof(what), "%s/%s", pool, name);
	r = ims_site_guard_get(&image, site, pool, name);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return ims_error_wrap(r, "cannot shred the key of '%s' on site '%s'", what,
				      ims_site_name(site));
	r = rbd_metadata_get(image, "imgstore.repl.source", src, &n);
	if (r == -ENOENT || (r == 0 && strcmp(src, source) != 0)) {
		r = ims_error_set(-EEXIST, "'%s' on site '%s' is no replica of '%s': not shredded",
				  what, ims_site_name(site), source);
	} else if (r < 0) {
		ims_error_set(r, "cannot read the metadata of '%s' on site '%s': %s", what,
			      ims_site_name(site), ims_strerror(r));
	} else if (shred) {
		r = ims_crypt_shred(image, what);
	}
	ims_site_guard_put(site, pool, name, true);
	ims_site_guard_drop(site, pool, name);
	return r;
}

int ims_image_shred_replica(ims_site *site, const char *pool, const char *name, const char *source)
{
	return shred_replica(site, pool, name, source, true);
}

int ims_image_shred_replica_check(ims_site *site, const char *pool, const char *name,
				  const char *source)
{
	return shred_replica(site, pool, name, source, false);
}

int ims_image_remove(ims_site *site, const char *pool, const char *name,
		     const ims_image_remove_opts *opts)
{
	rados_ioctx_t io = NULL;
	rbd_image_t image = NULL;
	ims_snap_info *snaps = NULL;
	size_t nsnaps = 0;
	int r;

	if ((r = ims_store__check_names(pool, name, NULL)) < 0)
		return r;
	if ((r = IMS_OPTS_CHECK(opts, IMS_IMAGE_REMOVE_OPTS_VERSION, "remove")) < 0)
		return r;
	if ((r = ims_store__open_image(&io, &image, site, pool, name, NULL, true)) < 0)
		return r;
	if (!opts->purge && !opts->shred) {
		rbd_close(image);
		image = NULL;
		uint64_t delay = opts->trash_delay ? opts->trash_delay : 86400;
		r = rbd_trash_move(io, name, delay);
		if (r < 0) {
			ims_error_set(r, "cannot move '%s/%s' to the trash: %s", pool, name,
				      ims_strerror(r));
			goto out;
		}
	} else {
		if ((r = ims_snap_list_image(&snaps, &nsnaps, image)) < 0 ||
		    (r = check_purge(image, pool, name, snaps, nsnaps)) < 0)
			goto out;
		rbd_close(image);
		image = NULL;
		if (opts->shred && (r = shred_key(io, pool, name)) < 0)
			goto out;
		if (nsnaps > 0) {
			if ((r = rbd_open(io, name, &image, NULL)) < 0) {
				ims_error_set(r, "cannot open image '%s/%s': %s", pool, name,
					      ims_strerror(r));
				goto out;
			}
			for (size_t i = 0; i < nsnaps; i++) {
				if (!is_user_snap(image, snaps[i].id))
					continue; /* trashed: rbd_remove() removes it */
				r = ims_store__remove_snap_open(image, pool, name, snaps[i].name,
								snaps[i].id, snaps[i].is_protected);
				if (r < 0)
					goto out;
			}
			rbd_close(image);
			image = NULL;
		}
		r = rbd_remove(io, name);
		if (r == -EBUSY || r == -ENOTEMPTY) {
			/* opened or cloned since the check: the snapshots are gone already */
			ims_error_set(
				-EBUSY,
				"image '%s/%s' was opened by a client or cloned during the purge; "
				"its snapshots are removed, the image is not",
				pool, name);
			r = -EBUSY;
		} else if (r < 0) {
			ims_error_set(r, "cannot remove '%s/%s': %s", pool, name, ims_strerror(r));
		}
		if (r < 0)
			goto out;
	}
	r = ims_catalog_remove(io, name);
out:
	ims_snap_list_free(snaps, nsnaps);
	ims_store__close_image(io, image);
	return r;
}

static int check_tag(const char *key, const char *value)
{
	size_t n = key ? strlen(key) : 0;
	if (n == 0 || n > 64)
		return ims_error_set(-EINVAL, "a tag key has 1 to 64 characters");
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)key[i]) && key[i] != '.' && key[i] != '_' &&
		    key[i] != '-')
			return ims_error_set(
				-EINVAL, "bad tag key '%s': letters, digits, '.', '_' and '-' only",
				key);
	if (value) {
		size_t vn = strlen(value);
		if (vn > 1024)
			return ims_error_set(
				-EINVAL, "the value of tag '%s' is longer than 1024 bytes", key);
		for (size_t i = 0; i < vn; i++)
			if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
				return ims_error_set(
					-EINVAL, "the value of tag '%s' has a control character",
					key);
	}
	return 0;
}

static int update_catalog_tag(rados_ioctx_t io, const char *name, uint64_t size, const char *key,
			      const char *value)
{
	ims_catalog_entry *e = NULL;
	int r = ims_catalog_get(&e, io, name);
	if (r == -ENOENT) {
		/* an image made outside imgstore joins the catalog when it is first tagged */
		if ((r = ims_store__catalog_add(io, name, size, "external", NULL, NULL)) < 0)
			return r;
		r = ims_catalog_get(&e, io, name);
	}
	if (r < 0)
		return r;
	size_t i;
	for (i = 0; i < e->ntags && strcmp(e->tags[i].key, key) != 0; i++)
		;
	if (i < e->ntags) {
		free(e->tags[i].value);
		if (value) {
			e->tags[i].value = strdup(value);
		} else {
			free(e->tags[i].key);
			e->tags[i] = e->tags[--e->ntags];
		}
	} else if (value) {
		ims_tag *nt = realloc(e->tags, (e->ntags + 1) * sizeof(*nt));
		if (!nt) {
			ims_catalog_entry_free(e);
			return -ENOMEM;
		}
		e->tags = nt;
		e->tags[e->ntags].key = strdup(key);
		e->tags[e->ntags].value = strdup(value);
		e->ntags++;
	}
	r = ims_catalog_put(io, e);
	ims_catalog_entry_free(e);
	return r;
}

static int tag_change(ims_site *site, const char *pool, const char *name, const char *key,
		      const char *value)
{
	rados_ioctx_t io = NULL;
	rbd_image_t image = NULL;
	char meta_key[128];
	uint64_t size = 0;
	int r;

	if ((r = ims_store__check_names(pool, name, NULL)) < 0 || (r = check_tag(key, value)) < 0)
		return r;
	if ((r = ims_store__open_image(&io, &image, site, pool, name, NULL, false)) < 0)
		return r;
	snprintf(meta_key, sizeof(meta_key), IMS_TAG_META_PREFIX "%s", key);
	if (value)
		r = rbd_metadata_set(image, meta_key, value);
	else
		r = rbd_metadata_remove(image, meta_key);
	if (r == -ENOENT && !value) {
		ims_error_set(r, "image '%s/%s' has no tag '%s'", pool, name, key);
		goto out;
	}
	if (r < 0) {
		ims_error_set(r, "cannot change tag '%s' of '%s/%s': %s", key, pool, name,
			      ims_strerror(r));
		goto out;
	}
	rbd_get_size(image, &size);
	r = update_catalog_tag(io, name, size, key, value);
out:
	ims_store__close_image(io, image);
	return r;
}

int ims_image_tag_set(ims_site *site, const char *pool, const char *name, const char *key,
		      const char *value)
{
	if (!value)
		return ims_error_set(-EINVAL, "tag '%s' needs a value", key ? key : "");
	return tag_change(site, pool, name, key, value);
}

int ims_image_tag_remove(ims_site *site, const char *pool, const char *name, const char *key)
{
	return tag_change(site, pool, name, key, NULL);
}

int ims_image_host_secret(char *pass, char *uuid, ims_site *site, const char *pool,
			  const char *name)
{
	rados_ioctx_t io = NULL;
	rbd_image_t image = NULL;
	char what[2 * IMS_NAME_MAX + 2];
	int r;
	pass[0] = uuid[0] = '\0';
	if ((r = ims_store__check_names(pool, name, NULL)) < 0 ||
	    (r = ims_store__open_image(&io, &image, site, pool, name, NULL, true)) < 0)
		return r;
	snprintf(what, sizeof(what), "%s/%s", pool, name);
	r = ims_crypt_host_secret(pass, uuid, image, ims_site_kek(site), what);
	if (r == -ENODATA) {
		pass[0] = uuid[0] = '\0';
		r = 0;
	}
	ims_store__close_image(io, image);
	return r;
}

int ims_image_clone(ims_site *site, const char *pool, const char *image_name, const char *snap,
		    const char *dst_pool, const char *dst, const ims_image_create_opts *opts)
{
	rados_ioctx_t pio = NULL, cio = NULL;
	rbd_image_t parent = NULL;
	rbd_image_options_t o = NULL;
	char spec[3 * 260];
	uint64_t size = 0;
	int r;

	if ((r = ims_store__check_names(pool, image_name, snap)) < 0 ||
	    (r = ims_store__check_names(dst_pool, dst, NULL)) < 0 ||
	    (r = check_create_opts(opts, false)) < 0)
		return r;
	/* The parent snapshot must exist: open it read-only at the snapshot. */
	if ((r = ims_store__open_image(&pio, &parent, site, pool, image_name, snap, true)) < 0)
		return r;
	rbd_get_size(parent, &size);
	r = ims_crypt_is_encrypted(parent);
	rbd_close(parent);
	parent = NULL;
	if (r != 0) {
		/* Ceph 16 opens no clone of a LUKS parent: refuse rather than make an unreadable
		 * one */
		r = r < 0 ? r
			  : ims_error_set(-ENOTSUP,
					  "'%s/%s' is encrypted: clones of encrypted images are "
					  "not supported (Ceph 16); import an export instead",
					  pool, image_name);
		goto out;
	}
	if ((r = ims_site_ioctx(&cio, site, dst_pool)) < 0)
		goto out;
	rbd_image_options_create(&o);
	if ((r = set_create_opts(o, opts)) < 0)
		goto out;
	r = rbd_clone3(pio, image_name, snap, cio, dst, o);
	if (r == -EINVAL) {
		/* A cluster that still requires clone v1 wants the snapshot protected. */
		rbd_image_t img = NULL;
		int prot = 0;
		if (rbd_open(pio, image_name, &img, NULL) == 0) {
			if (rbd_snap_is_protected(img, snap, &prot) == 0 && !prot &&
			    rbd_snap_protect(img, snap) == 0)
				r = rbd_clone3(pio, image_name, snap, cio, dst, o);
			rbd_close(img);
		}
	}
	if (r == -EEXIST) {
		ims_error_set(r, "image '%s/%s' already exists on site '%s'", dst_pool, dst,
			      ims_site_name(site));
		goto out;
	}
	if (r < 0) {
		ims_error_set(r, "cannot clone '%s/%s@%s' to '%s/%s': %s", pool, image_name, snap,
			      dst_pool, dst, ims_strerror(r));
		goto out;
	}
	snprintf(spec, sizeof(spec), "%s/%s@%s", pool, image_name, snap);
	r = ims_store__catalog_add(cio, dst, size, "clone", spec, NULL);
	if (r < 0)
		rbd_remove(cio, dst);
out:
	if (o)
		rbd_image_options_destroy(o);
	if (cio)
		ims_site_ioctx_close(cio);
	if (pio)
		ims_site_ioctx_close(pio);
	return r;
}

int ims_store__bridge_progress(uint64_t done, uint64_t total, void *arg)
{
	ims_store__progress_bridge *b = arg;
	if (b->fn && b->fn(b->ctx, done, total) != 0)
		return -ECANCELED;
	return 0;
}

int ims_image_flatten(ims_site *site, const char *pool, const char *name, ims_progress_fn progress,
		      void *ctx)
{
	rados_ioctx_t io = NULL;
	rbd_image_t image = NULL;
	ims_store__progress_bridge b = {progress, ctx};
	rbd_linked_image_spec_t parent;
	rbd_snap_spec_t psnap;
	int r;

	if ((r = ims_store__check_names(pool, name, NULL)) < 0)
		return r;
	if ((r = ims_store__open_image(&io, &image, site, pool, name, NULL, false)) < 0)
		return r;
	r = rbd_get_parent(image, &parent, &psnap);
	if (r == -ENOENT) {
		r = ims_error_set(-EINVAL, "'%s/%s' is not a clone: nothing to flatten", pool,
				  name);
		goto out;
	}
	if (r == 0) {
		rbd_linked_image_spec_cleanup(&parent);
		rbd_snap_spec_cleanup(&psnap);
	}
	r = rbd_flatten_with_progress(image, ims_store__bridge_progress, &b);
	if (r == -ECANCELED || r == -ERESTART)
		r = ims_error_set(-ECANCELED, "flatten of '%s/%s' cancelled", pool, name);
	else if (r < 0)
		ims_error_set(r, "cannot flatten '%s/%s': %s", pool, name, ims_strerror(r));
	if (r == 0) {
		ims_catalog_entry *e = NULL;
		if (ims_catalog_get(&e, io, name) == 0) {
			free(e->parent);
			e->parent = NULL;
			r = ims_catalog_put(io, e);
			ims_catalog_entry_free(e);
		}
	}
out:
	ims_store__close_image(io, image);
	return r;
}
