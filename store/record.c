#include "store/record.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "common/error.h"
#include "common/json.h"
#include "store/omap.h"

/* The set's I/O context: its own, or one opened for this call (closed by io_close()). */
static int io_open(const ims_records *rs, rados_ioctx_t *io)
{
	if (rs->io) {
		*io = rs->io;
		return 0;
	}
	return ims_site_ioctx(io, rs->site, rs->pool);
}

static void io_close(const ims_records *rs, rados_ioctx_t io)
{
	if (!rs->io)
		ims_site_ioctx_close(io);
}

/* A quiet set's calls give the thread's message back as it was before them. */
typedef struct {
	bool on;
	int code;
	char msg[IMS_ERROR_MSG_MAX];
} hush;

static void hush_begin(hush *h, const ims_records *rs)
{
	h->on = rs->quiet;
	h->code = h->on ? ims_error_last_code() : 0;
	if (h->code)
		snprintf(h->msg, sizeof(h->msg), "%s", ims_error_last());
}

static int hush_end(const hush *h, int r)
{
	if (h->on && r < 0) {
		if (h->code)
			ims_error_set(h->code, "%s", h->msg);
		else
			ims_error_clear();
	}
	return r;
}

/* @p val as a JSON object, or NULL when it is not one. */
static json_object *parse(const char *val, size_t len)
{
	json_tokener *tok = json_tokener_new();
	if (!tok)
		return NULL;
	json_object *o = json_tokener_parse_ex(tok, val, (int)len);
	json_tokener_free(tok);
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

/* Record @p key written; with @p existing only if it is there (ims_omap_replace()). */
static int do_put(const ims_records *rs, const char *key, json_object *val, bool existing)
{
	rados_ioctx_t io;
	const char *text = json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN);
	if (!text)
		return -ENOMEM;
	int r = io_open(rs, &io);
	if (r < 0)
		return r;
	r = existing ? ims_omap_replace(io, rs->object, key, text, strlen(text))
		     : ims_omap_set(io, rs->object, key, text, strlen(text));
	io_close(rs, io);
	if (r == -ENOENT && existing)
		return ims_error_set(r, "no record '%s' in %s", key, rs->object);
	if (r < 0)
		return ims_error_set(r, "cannot write record '%s' of %s: %s", key, rs->object,
				     ims_strerror(r));
	return 0;
}

static int do_get(json_object **out, const ims_records *rs, const char *key)
{
	rados_ioctx_t io;
	char *val = NULL;
	size_t len = 0;
	int r = io_open(rs, &io);
	if (r < 0)
		return r;
	r = ims_omap_get(&val, &len, io, rs->object, key);
	io_close(rs, io);
	if (r == -ENOENT)
		return ims_error_set(r, "no record '%s' in %s", key, rs->object);
	if (r < 0)
		return ims_error_set(r, "cannot read record '%s' of %s: %s", key, rs->object,
				     ims_strerror(r));
	json_object *o = parse(val, len);
	free(val);
	if (!o)
		return ims_error_set(-EBADMSG, "record '%s' of %s is not a JSON object", key,
				     rs->object);
	*out = o;
	return 0;
}

static int do_del_many(const ims_records *rs, const char *const *keys, size_t n)
{
	rados_ioctx_t io;
	int r = io_open(rs, &io);
	if (r < 0)
		return r;
	r = ims_omap_rm_many(io, rs->object, keys, n);
	io_close(rs, io);
	if (r < 0)
		return ims_error_set(r, "cannot remove records of %s: %s", rs->object,
				     ims_strerror(r));
	return 0;
}

int ims_record_del(const ims_records *rs, const char *key)
{
	return ims_record_del_many(rs, &key, 1);
}

typedef struct {
	ims_record_fn fn;
	void *ctx;
	bool stopped; /* by fn: its error, with its message */
} walk;

static int walk_one(void *ctx, const char *key, size_t klen, const char *val, size_t vlen)
{
	walk *w = ctx;
	char *k = strndup(key, klen);
	if (!k)
		return -ENOMEM;
	json_object *o = parse(val, vlen);
	int r = w->fn(w->ctx, k, o);
	w->stopped = r != 0;
	json_object_put(o);
	free(k);
	return r;
}

static int do_foreach(const ims_records *rs, ims_record_fn fn, void *ctx)
{
	rados_ioctx_t io;
	walk w = {fn, ctx, false};
	int r = io_open(rs, &io);
	if (r < 0)
		return r;
	r = ims_omap_foreach(io, rs->object, walk_one, &w);
	io_close(rs, io);
	if (r < 0 && !w.stopped)
		ims_error_set(r, "cannot read the records of %s: %s", rs->object, ims_strerror(r));
	return r;
}

typedef struct {
	char *list;
	size_t n, cap, size;
	ims_record_decode_fn decode;
} collected;

static int collect(void *ctx, const char *key, json_object *val)
{
	collected *c = ctx;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 32;
		char *nl = realloc(c->list, cap * c->size);
		if (!nl)
			return -ENOMEM;
		c->list = nl;
		c->cap = cap;
	}
	void *elem = c->list + c->n * c->size;
	memset(elem, 0, c->size);
	int r = c->decode(elem, key, val);
	if (r <= 0)
		c->n++; /* a half-decoded element is cleared with the others */
	return r < 0 ? r : 0;
}

int ims_record_list(void **out, size_t *count, const ims_records *rs, size_t size,
		    ims_record_decode_fn decode, void (*clear)(void *elem))
{
	collected c = {.size = size, .decode = decode};
	hush h;
	hush_begin(&h, rs);
	int r = do_foreach(rs, collect, &c);
	if (r < 0) {
		for (size_t i = 0; clear && i < c.n; i++)
			clear(c.list + i * size);
		free(c.list);
		return hush_end(&h, r);
	}
	*out = c.list;
	*count = c.n;
	return 0;
}

int ims_record_put(const ims_records *rs, const char *key, json_object *val)
{
	hush h;
	hush_begin(&h, rs);
	return hush_end(&h, do_put(rs, key, val, false));
}

int ims_record_replace(const ims_records *rs, const char *key, json_object *val)
{
	hush h;
	hush_begin(&h, rs);
	return hush_end(&h, do_put(rs, key, val, true));
}

int ims_record_get(json_object **out, const ims_records *rs, const char *key)
{
	hush h;
	hush_begin(&h, rs);
	return hush_end(&h, do_get(out, rs, key));
}

int ims_record_del_many(const ims_records *rs, const char *const *keys, size_t n)
{
	hush h;
	hush_begin(&h, rs);
	return hush_end(&h, do_del_many(rs, keys, n));
}

int ims_record_foreach(const ims_records *rs, ims_record_fn fn, void *ctx)
{
	hush h;
	hush_begin(&h, rs);
	return hush_end(&h, do_foreach(rs, fn, ctx));
}

json_object *ims_record_encode(const void *rec, const ims_record_field *fields, size_t n)
{
	json_object *o = json_object_new_object();
	for (size_t i = 0; o && i < n; i++) {
		const char *at = (const char *)rec + fields[i].offset;
		json_object *v = NULL;
		switch (fields[i].type) {
		case IMS_RECORD_STR: v = json_object_new_string(at); break;
		case IMS_RECORD_INT: v = json_object_new_int(*(const int *)at); break;
		case IMS_RECORD_I64: v = json_object_new_int64(*(const int64_t *)at); break;
		case IMS_RECORD_U64:
			v = json_object_new_int64((int64_t) * (const uint64_t *)at);
			break;
		}
		json_object_object_add(o, fields[i].name, v);
	}
	return o;
}

void ims_record_decode(void *rec, json_object *o, const ims_record_field *fields, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *at = (char *)rec + fields[i].offset;
		switch (fields[i].type) {
		case IMS_RECORD_STR: ims_json_str(at, fields[i].size, o, fields[i].name); break;
		case IMS_RECORD_INT: *(int *)at = (int)ims_json_i64(o, fields[i].name); break;
		case IMS_RECORD_I64: *(int64_t *)at = ims_json_i64(o, fields[i].name); break;
		case IMS_RECORD_U64:
			*(uint64_t *)at = (uint64_t)ims_json_i64(o, fields[i].name);
			break;
		}
	}
}

int ims_record_lock(char *broken, size_t len, rados_ioctx_t io, const char *obj, const char *name,
		    const char *owner, const char *desc, unsigned seconds, bool renew)
{
	struct timeval tv = {(time_t)seconds, 0};
	if (broken && len)
		broken[0] = '\0';
	int r = rados_lock_exclusive(io, obj, name, owner, desc, &tv,
				     renew ? LIBRADOS_LOCK_FLAG_RENEW : 0);
	if ((r == -EBUSY || r == -EEXIST) && !renew) {
		int exclusive = 0;
		char tag[64], clients[256], cookies[256], addrs[512];
		size_t tl = sizeof(tag), cl = sizeof(clients), kl = sizeof(cookies),
		       al = sizeof(addrs);
		ssize_t n = rados_list_lockers(io, obj, name, &exclusive, tag, &tl, clients, &cl,
					       cookies, &kl, addrs, &al);
		if (n == 1 && strcmp(cookies, owner) == 0 &&
		    rados_break_lock(io, obj, name, clients, cookies) == 0) {
			if (broken && len)
				snprintf(broken, len, "%s", clients);
			r = rados_lock_exclusive(io, obj, name, owner, desc, &tv, 0);
		}
	}
	return r;
}

/* ---- sets of daemons: holders of a shared lock ---- */

#define IMS_RECORD_MEMBERS_TAG "imgstore"

int ims_record_join(rados_ioctx_t io, const char *obj, const char *name, const char *owner,
		    const char *desc, unsigned seconds)
{
	struct timeval tv = {(time_t)seconds, 0};
	return rados_lock_shared(io, obj, name, owner, IMS_RECORD_MEMBERS_TAG, desc, &tv,
				 LIBRADOS_LOCK_FLAG_RENEW);
}

void ims_record_leave(rados_ioctx_t io, const char *obj, const char *name, const char *owner)
{
	(void)rados_unlock(io, obj, name, owner);
}

ssize_t ims_record_members(char *out, size_t width, size_t max, rados_ioctx_t io, const char *obj,
			   const char *name)
{
	size_t cap = 4096;
	char *buf = NULL;
	ssize_t n = -ERANGE;
	for (int round = 0; round < 3 && n == -ERANGE; round++) {
		free(buf);
		if (!(buf = malloc(4 * cap)))
			return -ENOMEM;
		int exclusive = 0;
		char *tag = buf, *clients = buf + cap, *cookies = buf + 2 * cap,
		     *addrs = buf + 3 * cap;
		size_t tl = cap, cl = cap, kl = cap, al = cap;
		n = rados_list_lockers(io, obj, name, &exclusive, tag, &tl, clients, &cl, cookies,
				       &kl, addrs, &al);
		if (n == -ERANGE) { /* the lengths say what they need */
			size_t need = tl > cl ? tl : cl;
			need = need > kl ? need : kl;
			need = need > al ? need : al;
			cap = need > cap ? need + 256 : 2 * cap;
			continue;
		}
		if (n == -ENOENT)
			n = 0;
		if (n < 0)
			break;
		size_t count = 0;
		const char *c = cookies;
		for (ssize_t i = 0; i < n; i++, c += strlen(c) + 1) {
			bool seen = false;
			for (size_t k = 0; k < count && !seen; k++)
				seen = strncmp(out + k * width, c, width - 1) == 0;
			if (seen || count == max)
				continue;
			snprintf(out + count * width, width, "%s", c);
			count++;
		}
		/* insertion sort: a handful of members */
		for (size_t i = 1; i < count; i++)
			for (size_t k = i;
			     k > 0 && strcmp(out + (k - 1) * width, out + k * width) > 0; k--)
				for (size_t b = 0; b < width; b++) {
					char t = out[k * width + b];
					out[k * width + b] = out[(k - 1) * width + b];
					out[(k - 1) * width + b] = t;
				}
		n = (ssize_t)count;
	}
	free(buf);
	return n;
}
