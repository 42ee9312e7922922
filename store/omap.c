#include "store/omap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ims_omap_set(rados_ioctx_t io, const char *obj, const char *key, const char *val, size_t vlen)
{
	const char *keys[] = {key};
	const char *vals[] = {val};
	size_t lens[] = {vlen};
	rados_write_op_t op = rados_create_write_op();
	if (!op)
		return -ENOMEM;
	rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
	rados_write_op_omap_set(op, keys, vals, lens, 1);
	int r = rados_write_op_operate(op, io, obj, NULL, 0);
	rados_release_write_op(op);
	return r;
}

int ims_omap_replace(rados_ioctx_t io, const char *obj, const char *key, const char *val,
		     size_t vlen)
{
	const char *keys[] = {key};
	const char *vals[] = {val};
	size_t lens[] = {vlen};
	int prval = 0;
	rados_write_op_t op = rados_create_write_op();
	if (!op)
		return -ENOMEM;
	/* a key that is missing compares as empty, and no value there is "" (ours never are) */
	rados_write_op_omap_cmp(op, key, LIBRADOS_CMPXATTR_OP_GT, "", 0, &prval);
	rados_write_op_omap_set(op, keys, vals, lens, 1);
	int r = rados_write_op_operate(op, io, obj, NULL, 0);
	rados_release_write_op(op);
	return r == -ECANCELED ? -ENOENT : r;
}

int ims_omap_get(char **out, size_t *len, rados_ioctx_t io, const char *obj, const char *key)
{
	rados_read_op_t op = rados_create_read_op();
	rados_omap_iter_t it = NULL;
	const char *keys[] = {key};
	size_t klens[] = {strlen(key)};
	int rval = 0, r;
	if (!op)
		return -ENOMEM;
	rados_read_op_omap_get_vals_by_keys2(op, keys, 1, klens, &it, &rval);
	r = rados_read_op_operate(op, io, obj, 0);
	if (r == 0)
		r = rval;
	if (r == 0) {
		char *k = NULL, *v = NULL;
		size_t kl = 0, vl = 0;
		r = -ENOENT;
		if (rados_omap_get_next2(it, &k, &v, &kl, &vl) == 0 && k) {
			*out = malloc(vl + 1);
			if (!*out) {
				r = -ENOMEM;
			} else {
				memcpy(*out, v, vl);
				(*out)[vl] = '\0';
				*len = vl;
				r = 0;
			}
		}
	}
	if (it)
		rados_omap_get_end(it);
	rados_release_read_op(op);
	return r;
}

int ims_omap_rm_many(rados_ioctx_t io, const char *obj, const char *const *keys, size_t n)
{
	if (n == 0)
		return 0;
	size_t *lens = calloc(n, sizeof(*lens));
	rados_write_op_t op = rados_create_write_op();
	int r = -ENOMEM;
	if (lens && op) {
		for (size_t i = 0; i < n; i++)
			lens[i] = strlen(keys[i]);
		rados_write_op_omap_rm_keys2(op, (const char **)keys, lens, n);
		r = rados_write_op_operate(op, io, obj, NULL, 0);
	}
	if (op)
		rados_release_write_op(op);
	free(lens);
	return r == -ENOENT ? 0 : r;
}

int ims_omap_rm(rados_ioctx_t io, const char *obj, const char *key)
{
	return ims_omap_rm_many(io, obj, &key, 1);
}

int ims_omap_foreach(rados_ioctx_t io, const char *obj, ims_omap_fn fn, void *ctx)
{
	char *after = NULL;
	int r = 0;
	for (;;) {
		rados_read_op_t op = rados_create_read_op();
		rados_omap_iter_t it = NULL;
		unsigned char more = 0;
		int rval = 0;
		if (!op) {
			r = -ENOMEM;
			break;
		}
		rados_read_op_omap_get_vals2(op, after ? after : "", "", 500, &it, &more, &rval);
		r = rados_read_op_operate(op, io, obj, 0);
		if (r == 0)
			r = rval;
		if (r < 0) {
			rados_release_read_op(op);
			if (r == -ENOENT)
				r = 0;
			break;
		}
		char *k, *v;
		size_t kl, vl;
		while (r == 0 && rados_omap_get_next2(it, &k, &v, &kl, &vl) == 0 && k) {
			r = fn(ctx, k, kl, v, vl);
			free(after);
			if (!(after = strndup(k, kl)))
				r = r ? r : -ENOMEM;
		}
		rados_omap_get_end(it);
		rados_release_read_op(op);
		if (r != 0 || !more)
			break;
	}
	free(after);
	return r;
}
