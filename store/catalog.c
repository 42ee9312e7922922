#include "store/catalog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "common/error.h"
#include "common/json.h"
#include "store/record.h"

/* Decode one catalog record (@p o NULL when it is not JSON). A damaged value yields an entry
 * with its name only, so one bad record never hides the others. */
static int decode(void *elem, const char *name, json_object *o)
{
	ims_catalog_entry *e = elem;
	json_object *tags;
	memset(e, 0, sizeof(*e));
	if (!(e->name = strdup(name)))
		return -ENOMEM;
	if (!o)
		return 0;
	e->created = ims_json_i64(o, "created");
	e->size = (uint64_t)ims_json_i64(o, "size");
	e->source = ims_json_strdup(o, "source");
	e->parent = ims_json_strdup(o, "parent");
	e->content_sha256 = ims_json_strdup(o, "content_sha256");
	e->cold_target = ims_json_strdup(o, "cold_target");
	e->cold_name = ims_json_strdup(o, "cold_name");
	e->cold_since = ims_json_i64(o, "cold_since");
	if (json_object_object_get_ex(o, "tags", &tags) &&
	    json_object_is_type(tags, json_type_object)) {
		size_t n = (size_t)json_object_object_length(tags), i = 0;
		e->tags = calloc(n ? n : 1, sizeof(*e->tags));
		if (!e->tags)
			return -ENOMEM;
		json_object_object_foreach(tags, k, v)
		{
			if (i >= n)
				break;
			e->tags[i].key = strdup(k);
			e->tags[i].value = strdup(json_object_get_string(v));
			if (!e->tags[i].key || !e->tags[i].value) {
				e->ntags = i + 1;
				return -ENOMEM;
			}
			i++;
		}
		e->ntags = i;
	}
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
		json_object_object_add(o, "content_sha256",
				       json_object_new_string(e->content_sha256));
	if (e->cold_target) {
		json_object_object_add(o, "cold_target", json_object_new_string(e->cold_target));
		json_object_object_add(o, "cold_name",
				       json_object_new_string(e->cold_name ? e->cold_name : ""));
		json_object_object_add(o, "cold_since", json_object_new_int64(e->cold_since));
	}
	for (size_t i = 0; i < e->ntags; i++)
		json_object_object_add(tags, e->tags[i].key,
				       json_object_new_string(e->tags[i].value));
	json_object_object_add(o, "tags", tags);

	r = ims_record_put(&IMS_RECORDS_IO(io, IMS_CATALOG_OBJECT), e->name, o);
	json_object_put(o);
	if (r < 0)
		return ims_error_set(r, "cannot record '%s' in the catalog: %s", e->name,
				     ims_strerror(r));
	return 0;
}

int ims_catalog_get(ims_catalog_entry **out, rados_ioctx_t io, const char *name)
{
	json_object *o = NULL;
	ims_records rs = IMS_RECORDS_IO(io, IMS_CATALOG_OBJECT);
	rs.quiet = true; /* the messages are the catalog's, and a damaged entry is no error */
	int r = ims_record_get(&o, &rs, name);
	if (r == -ENOENT)
		return ims_error_set(-ENOENT, "'%s' is not in the catalog", name);
	if (r < 0 && r != -EBADMSG) /* a damaged entry reads as its name alone */
		return ims_error_set(r, "cannot read the catalog: %s", ims_strerror(r));
	ims_catalog_entry *e = malloc(sizeof(*e));
	if (!e) {
		json_object_put(o);
		return -ENOMEM;
	}
	r = decode(e, name, o);
	json_object_put(o);
	if (r < 0) {
		ims_catalog_entry_free(e);
		return r;
	}
	*out = e;
	return 0;
}

int ims_catalog_remove(rados_ioctx_t io, const char *name)
{
	int r = ims_record_del(&IMS_RECORDS_IO(io, IMS_CATALOG_OBJECT), name);
	if (r < 0)
		return ims_error_set(r, "cannot remove '%s' from the catalog: %s", name,
				     ims_strerror(r));
	return 0;
}

static void clear(void *elem)
{
	ims_catalog_entry_clear(elem);
}

int ims_catalog_list(ims_catalog_entry **out, size_t *count, rados_ioctx_t io)
{
	void *list = NULL;
	int r = ims_record_list(&list, count, &IMS_RECORDS_IO(io, IMS_CATALOG_OBJECT),
				sizeof(ims_catalog_entry), decode, clear);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return ims_error_set(r, "cannot read the catalog: %s", ims_strerror(r));
	*out = list;
	return 0;
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
	free(e->cold_target);
	free(e->cold_name);
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
