#include "store/catalog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "common/error.h"

static char *dup_str(json_object *o, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return strdup(json_object_get_string(v));
}

static int64_t get_int(json_object *o, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_int64(v);
}

/* Decode one catalog value. A damaged value yields an entry with its name only, so one bad
 * record never hides the others. */
static int decode(ims_catalog_entry *e, const char *name, const char *val, size_t len)
{
	memset(e, 0, sizeof(*e));
	if (!(e->name = strdup(name)))
		return -ENOMEM;
	char *text = strndup(val, len);
	if (!text)
		return -ENOMEM;
	json_object *o = json_tokener_parse(text), *tags;
	free(text);
	if (!o)
		return 0;
	e->created = get_int(o, "created");
	e->size = (uint64_t)get_int(o, "size");
	e->source = dup_str(o, "source");
	e->parent = dup_str(o, "parent");
	e->content_sha256 = dup_str(o, "content_sha256");
	if (json_object_object_get_ex(o, "tags", &tags) && json_object_is_type(tags, json_type_object)) {
		size_t n = (size_t)json_object_object_length(tags), i = 0;
		e->tags = calloc(n ? n : 1, sizeof(*e->tags));
		if (!e->tags) {
			json_object_put(o);
			return -ENOMEM;
		}
		json_object_object_foreach(tags, k, v)
		{
			if (i >= n)
				break;
			e->tags[i].key = strdup(k);
			e->tags[i].value = strdup(json_object_get_string(v));
			if (!e->tags[i].key || !e->tags[i].value) {
				e->ntags = i + 1;
				json_object_put(o);
				return -ENOMEM;
			}
			i++;
		}
		e->ntags = i;
	}
	json_object_put(o);
	return 0;
}

int ims_catalog_put(rados_ioctx_t io, const ims_catalog_entry *e)
{
	json_object *o = json_object_new_object(), *tags = json_object_new_object();
	int r;

	if (!o || !tags) {
		json_object_put(o);
		json_object_put(tags);
		return -ENOMEM;
	}
	json_object_object_add(o, "created", json_object_new_int64(e->created));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)e->size));
	if (e->source)
		json_object_object_add(o, "source", json_object_new_string(e->source));
	if (e->parent)
		json_object_object_add(o, "parent", json_object_new_string(e->parent));
	if (e->content_sha256)
		json_object_object_add(o, "content_sha256", json_object_new_string(e->content_sha256));
	for (size_t i = 0; i < e->ntags; i++)
		json_object_object_add(tags, e->tags[i].key, json_object_new_string(e->tags[i].value));
	json_object_object_add(o, "tags", tags);

	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	const char *keys[] = { e->name };
	const char *vals[] = { text };
	size_t lens[] = { strlen(text) };
	rados_write_op_t op = rados_create_write_op();
	if (!op) {
		json_object_put(o);
		return -ENOMEM;
	}
	rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
	rados_write_op_omap_set(op, keys, vals, lens, 1);
	r = rados_write_op_operate(op, io, IMS_CATALOG_OBJECT, NULL, 0);
	rados_release_write_op(op);
	json_object_put(o);
	if (r < 0)
		return ims_error_set(r, "cannot record '%s' in the catalog: %s", e->name, ims_strerror(r));
	return 0;
}

int ims_catalog_get(rados_ioctx_t io, const char *name, ims_catalog_entry **out)
{
	rados_read_op_t op = rados_create_read_op();
	rados_omap_iter_t it = NULL;
	int rval = 0, r;
	const char *keys[] = { name };
	size_t key_lens[] = { strlen(name) };

	if (!op)
		return -ENOMEM;
	rados_read_op_omap_get_vals_by_keys2(op, keys, 1, key_lens, &it, &rval);
	r = rados_read_op_operate(op, io, IMS_CATALOG_OBJECT, 0);
	if (r == -ENOENT) {
		r = ims_error_set(-ENOENT, "'%s' is not in the catalog", name);
		goto out;
	}
	if (r < 0 || rval < 0) {
		r = ims_error_set(r < 0 ? r : rval, "cannot read the catalog: %s", ims_strerror(r < 0 ? r : rval));
		goto out;
	}
	char *k = NULL, *v = NULL;
	size_t klen = 0, vlen = 0;
	r = rados_omap_get_next2(it, &k, &v, &klen, &vlen);
	if (r < 0 || !k) {
		r = ims_error_set(-ENOENT, "'%s' is not in the catalog", name);
		goto out;
	}
	ims_catalog_entry *e = malloc(sizeof(*e));
	if (!e) {
		r = -ENOMEM;
		goto out;
	}
	r = decode(e, name, v, vlen);
	if (r < 0) {
		ims_catalog_entry_free(e);
		goto out;
	}
	*out = e;
out:
	if (it)
		rados_omap_get_end(it);
	rados_release_read_op(op);
	return r;
}

int ims_catalog_remove(rados_ioctx_t io, const char *name)
{
	rados_write_op_t op = rados_create_write_op();
	const char *keys[] = { name };
	size_t lens[] = { strlen(name) };
	int r;

	if (!op)
		return -ENOMEM;
	rados_write_op_omap_rm_keys2(op, keys, lens, 1);
	r = rados_write_op_operate(op, io, IMS_CATALOG_OBJECT, NULL, 0);
	rados_release_write_op(op);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return ims_error_set(r, "cannot remove '%s' from the catalog: %s", name, ims_strerror(r));
	return 0;
}

int ims_catalog_list(rados_ioctx_t io, ims_catalog_entry **out, size_t *count)
{
	ims_catalog_entry *list = NULL;
	size_t n = 0, cap = 0;
	char *after = NULL;
	int r = 0;

	for (;;) {
		rados_read_op_t op = rados_create_read_op();
		rados_omap_iter_t it = NULL;
		unsigned char more = 0;
		int rval = 0;
		if (!op) {
			r = -ENOMEM;
			goto out;
		}
		rados_read_op_omap_get_vals2(op, after ? after : "", "", 1000, &it, &more, &rval);
		r = rados_read_op_operate(op, io, IMS_CATALOG_OBJECT, 0);
		if (r == -ENOENT) {
			rados_release_read_op(op);
			r = 0;
			break;
		}
		if (r < 0 || rval < 0) {
			r = r < 0 ? r : rval;
			ims_error_set(r, "cannot read the catalog: %s", ims_strerror(r));
			rados_release_read_op(op);
			goto out;
		}
		for (;;) {
			char *k = NULL, *v = NULL;
			size_t klen = 0, vlen = 0;
			if (rados_omap_get_next2(it, &k, &v, &klen, &vlen) < 0 || !k)
				break;
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				ims_catalog_entry *nl = realloc(list, ncap * sizeof(*nl));
				if (!nl) {
					r = -ENOMEM;
					break;
				}
				list = nl;
				cap = ncap;
			}
			char *name = strndup(k, klen);
			if (!name) {
				r = -ENOMEM;
				break;
			}
			r = decode(&list[n], name, v, vlen);
			free(name);
			n++;
			if (r < 0)
				break;
			free(after);
			if (!(after = strndup(k, klen))) {
				r = -ENOMEM;
				break;
			}
		}
		rados_omap_get_end(it);
		rados_release_read_op(op);
		if (r < 0)
			goto out;
		if (!more)
			break;
	}
	*out = list;
	*count = n;
	list = NULL;
	n = 0;
out:
	ims_catalog_list_free(list, n);
	free(after);
	return r;
}

const char *ims_catalog_tag(const ims_catalog_entry *e, const char *key)
{
	for (size_t i = 0; i < e->ntags; i++)
		if (strcmp(e->tags[i].key, key) == 0)
			return e->tags[i].value;
	return NULL;
}

void ims_catalog_entry_clear(ims_catalog_entry *e)
{
	if (!e)
		return;
	free(e->name);
	free(e->source);
	free(e->parent);
	free(e->content_sha256);
	for (size_t i = 0; i < e->ntags; i++) {
		free(e->tags[i].key);
		free(e->tags[i].value);
	}
	free(e->tags);
	memset(e, 0, sizeof(*e));
}

void ims_catalog_entry_free(ims_catalog_entry *e)
{
	ims_catalog_entry_clear(e);
	free(e);
}

void ims_catalog_list_free(ims_catalog_entry *list, size_t count)
{
	for (size_t i = 0; list && i < count; i++)
		ims_catalog_entry_clear(&list[i]);
	free(list);
}
