/*
 * store/crypt_rewrap.c: a KEK rotation's rewrap of every data key of a site (store/crypt.h),
 * apart from store/crypt.c so that the fuzzer of the key's parser links crypt.c alone.
 */
#include "store/crypt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <rados/librados.h>

#include "common/error.h"
#include "store/store_internal.h"

/* Replace the key of @p image in its header's omap ("metadata_" + the key, as librbd keeps
 * metadata) by @p now only if it still is @p was: -ECANCELED if it changed. */
static int key_swap(rados_ioctx_t io, rbd_image_t image, const char *was, const char *now)
{
	char id[64], oid[96];
	int prval = 0, r = rbd_get_id(image, id, sizeof(id));
	if (r < 0)
		return r;
	snprintf(oid, sizeof(oid), "rbd_header.%s", id);
	rados_write_op_t op = rados_create_write_op();
	if (!op)
		return -ENOMEM;
	const char *key = "metadata_" IMS_CRYPT_META_KEY;
	size_t vlen = strlen(now);
	rados_write_op_omap_cmp(op, key, LIBRADOS_CMPXATTR_OP_EQ, was, strlen(was), &prval);
	rados_write_op_omap_set(op, &key, &now, &vlen, 1);
	r = rados_write_op_operate(op, io, oid, NULL, 0);
	rados_release_write_op(op);
	return r < 0 ? r : prval;
}

/* One image: 1 rewrapped, 0 nothing to do, < 0 failed (message set). */
static int rewrap_image(rados_ioctx_t io, rbd_image_t image, const ims_crypt_kek *kek,
			const char *what)
{
	char buf[IMS_CRYPT_WRAPPED_MAX], out[IMS_CRYPT_WRAPPED_MAX];
	int r = ims_crypt__wrapped(buf, image);
	if (r < 0)
		return ims_error_set(r, "cannot read the key: %s", ims_strerror(r));
	if (r == 0 || strcmp(buf, IMS_CRYPT_SHREDDED) == 0)
		return 0;
	if ((r = ims_crypt_rewrap(out, kek, buf)) <= 0)
		return r;
	r = key_swap(io, image, buf, out);
	OPENSSL_cleanse(out, sizeof(out));
	if (r == -ECANCELED)
		return ims_error_set(-EAGAIN, "its key changed during the rewrap (shredded?): run "
					      "the rewrap again");
	if (r < 0)
		return ims_error_set(r, "cannot store the rewrapped key: %s", ims_strerror(r));
	(void)what;
	return 1;
}

static void rewrap_one(ims_crypt_rewrap_result *res, rados_ioctx_t io, rbd_image_t image,
		       const ims_crypt_kek *kek, const char *what)
{
	int r = rewrap_image(io, image, kek, what);
	if (r < 0)
		ims_crypt_rewrap_failed(res, "image '%s': %s", what, ims_error_last());
	else if (r == 1)
		res->rewrapped++;
	else if (ims_crypt_is_encrypted(image) == 1)
		res->current++; /* (shredded ones counted too: nothing left to rewrap) */
}

static void rewrap_pool(ims_crypt_rewrap_result *res, ims_site *site, const char *pool,
			const ims_crypt_kek *kek)
{
	rados_ioctx_t io = NULL;
	rbd_image_spec_t *specs = NULL;
	rbd_trash_image_info_t *trash = NULL;
	size_t nspecs = 0, ntrash = 0;
	char what[600];
	int r;
	if ((r = ims_site_ioctx(&io, site, pool)) < 0) {
		ims_crypt_rewrap_failed(res, "pool '%s': %s", pool, ims_error_last());
		return;
	}
	for (size_t cap = 64;; cap *= 2) {
		free(specs);
		nspecs = cap;
		if (!(specs = calloc(cap, sizeof(*specs)))) {
			r = -ENOMEM;
			break;
		}
		if ((r = rbd_list2(io, specs, &nspecs)) != -ERANGE)
			break;
	}
	if (r == -ENOENT) {
		r = 0;
		nspecs = 0;
	}
	if (r < 0)
		ims_crypt_rewrap_failed(res, "pool '%s': cannot list its images: %s", pool,
					ims_strerror(r));
	for (size_t i = 0; r >= 0 && i < nspecs; i++) {
		rbd_image_t image;
		snprintf(what, sizeof(what), "%s/%s", pool, specs[i].name);
		if ((r = rbd_open(io, specs[i].name, &image, NULL)) < 0) {
			if (r != -ENOENT) /* removed since the listing */
				ims_crypt_rewrap_failed(res, "image '%s': cannot open it: %s", what,
							ims_strerror(r));
			r = 0;
			continue;
		}
		rewrap_one(res, io, image, kek, what);
		rbd_close(image);
	}
	if (specs && r >= 0)
		rbd_image_spec_list_cleanup(specs, nspecs);
	free(specs);
	/* the trash: an image restored from it must open after the previous KEK is gone */
	for (size_t cap = 64;; cap *= 2) {
		free(trash);
		ntrash = cap;
		if (!(trash = calloc(cap, sizeof(*trash)))) {
			r = -ENOMEM;
			break;
		}
		if ((r = rbd_trash_list(io, trash, &ntrash)) != -ERANGE)
			break;
	}
	if (r == -ENOENT) {
		r = 0;
		ntrash = 0;
	}
	if (r < 0)
		ims_crypt_rewrap_failed(res, "pool '%s': cannot list its trash: %s", pool,
					ims_strerror(r));
	for (size_t i = 0; r >= 0 && i < ntrash; i++) {
		rbd_image_t image;
		snprintf(what, sizeof(what), "%s/%s (in the trash, id %s)", pool, trash[i].name,
			 trash[i].id);
		if (rbd_open_by_id(io, trash[i].id, &image, NULL) < 0)
			continue; /* purged since the listing */
		rewrap_one(res, io, image, kek, what);
		rbd_close(image);
	}
	if (trash && r >= 0)
		rbd_trash_list_cleanup(trash, ntrash);
	free(trash);
	ims_site_ioctx_close(io);
}

int ims_crypt_rewrap_site(ims_crypt_rewrap_result *out, ims_site *site, const ims_crypt_kek *kek)
{
	ims_crypt_rewrap_result res = {0};
	char *pools = NULL;
	int r;
	if (!kek)
		return ims_error_set(-EPERM, "cannot rewrap keys: this daemon has no key ([server] "
					     "kek_file is unset)");
	if ((r = ims_store__pool_names(&pools, site)) < 0)
		return r;
	for (const char *p = pools; *p; p += strlen(p) + 1)
		if (ims_store__is_rbd_pool(site, p))
			rewrap_pool(&res, site, p, kek);
	free(pools);
	ims_error_clear();
	*out = res;
	return 0;
}
