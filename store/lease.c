#include "store/lease.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <rados/librados.h>

#include "common/error.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/units.h"
#include "store/record.h"

#define LEASES_OBJECT "imgstore.leases"
#define HOSTS_OBJECT  "imgstore.hosts"
#define LEASES_LOCK   "imgstore.leases.lock"
#define FENCED_OBJECT "imgstore.leases.fenced" /* leases a failover broke, by id */

static int64_t now(void)
{
	return (int64_t)time(NULL);
}

bool ims_host_name_valid(const char *h)
{
	size_t n = h ? strlen(h) : 0;
	if (n == 0 || n > IMS_HOST_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z') ||
		      (h[i] >= '0' && h[i] <= '9') || h[i] == '-' || h[i] == '_' || h[i] == '.'))
			return false;
	return true;
}

unsigned ims_lease_ttl(uint32_t asked)
{
	if (!asked)
		return IMS_LEASE_TTL_DEFAULT;
	return asked > IMS_LEASE_TTL_MAX ? IMS_LEASE_TTL_MAX : asked;
}

/* ---------------------------------------------------------------------------------------- */
/* records */

#define F(member, type) IMS_RECORD_FIELD(ims_lease, member, IMS_RECORD_##type)
static const ims_record_field fields[] = {
	F(id, STR),	  F(pool, STR),	   F(image, STR),      F(host, STR),
	F(acquired, I64), F(expires, I64), F(generation, U64),
};
#undef F
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static json_object *lease_json(const ims_lease *l)
{
	return ims_record_encode(l, fields, NFIELDS);
}

/* 0 and the lease of record @p o; 1 (left out) when it is not one. */
static int lease_parse(void *elem, const char *key, json_object *o)
{
	ims_lease *l = elem;
	(void)key;
	if (!o)
		return 1;
	memset(l, 0, sizeof(*l));
	ims_record_decode(l, o, fields, NFIELDS);
	return l->id[0] != '\0' ? 0 : 1;
}

static int record_set(rados_ioctx_t io, const char *obj, const char *key, json_object *val)
{
	int r = val ? ims_record_put(&IMS_RECORDS_IO(io, obj), key, val) : -ENOMEM;
	json_object_put(val);
	return r < 0 ? ims_error_set(r, "cannot write %s: %s", obj, ims_strerror(r)) : 0;
}

static int record_rm(rados_ioctx_t io, const char *obj, const char *key)
{
	int r = ims_record_del(&IMS_RECORDS_IO(io, obj), key);
	return r < 0 ? ims_error_set(r, "cannot write %s: %s", obj, ims_strerror(r)) : 0;
}

static int leases_read(rados_ioctx_t io, ims_lease **out, size_t *count)
{
	void *list = NULL;
	int r = ims_record_list(&list, count, &IMS_RECORDS_IO(io, LEASES_OBJECT), sizeof(ims_lease),
				lease_parse, NULL);
	if (r < 0)
		return ims_error_set(r, "cannot read the leases: %s", ims_strerror(r));
	*out = list;
	return 0;
}

/* A lease a failover broke, kept by its id (FENCED_OBJECT) so that its host's renewal is told
 * it is fenced; those expired for longer than IMS_LEASE_FENCED_KEEP are dropped meanwhile.
 * Best effort: without the record a renewal says "no lease", as before. */
static void fenced_remember(rados_ioctx_t io, const ims_lease *l)
{
	void *list = NULL;
	size_t n = 0;
	if (ims_record_list(&list, &n, &IMS_RECORDS_IO(io, FENCED_OBJECT), sizeof(ims_lease),
			    lease_parse, NULL) == 0) {
		const ims_lease *old = list;
		for (size_t i = 0; i < n; i++)
			if (old[i].expires + IMS_LEASE_FENCED_KEEP < now())
				record_rm(io, FENCED_OBJECT, old[i].id);
	}
	free(list);
	if (record_set(io, FENCED_OBJECT, l->id, lease_json(l)) < 0)
		ims_log_warning("cannot keep the broken lease '%s' of host '%s': %s", l->id,
				l->host, ims_error_last());
}

/* -EKEYREVOKED and the lease in *out if a failover broke lease @p id (recently): after @p check
 * of its host as for a release (the caller may act for that host), else what check said;
 * -ENOENT if none did. */
static int fenced_lease(ims_lease *out, rados_ioctx_t io, const char *id, ims_lease_check_fn check,
			void *ctx)
{
	json_object *o = NULL;
	ims_lease l;
	int r;
	if (ims_record_get(&o, &IMS_RECORDS_IO(io, FENCED_OBJECT), id) < 0)
		return -ENOENT;
	r = lease_parse(&l, id, o);
	json_object_put(o);
	if (r != 0 || strcmp(l.id, id) != 0 || l.expires + IMS_LEASE_FENCED_KEEP < now())
		return -ENOENT;
	if (check && (r = check(ctx, &l, false)) < 0)
		return r;
	*out = l;
	return ims_error_set(-EKEYREVOKED,
			     "lease '%s' is stale: a failover of '%s/%s' broke it and fenced host "
			     "'%s'; stop writing and take a new lease on its primary",
			     l.id, l.pool, l.image, l.host);
}

/* The lock that serialises lease changes between the daemons of a site. */
static int leases_lock(rados_ioctx_t io, char *cookie, size_t len)
{
	struct timeval tv = {10, 0};
	snprintf(cookie, len, "%d.%lu", (int)getpid(), (unsigned long)pthread_self());
	for (int i = 0; i < 100; i++) {
		int r = rados_lock_exclusive(io, LEASES_OBJECT, LEASES_LOCK, cookie, "lease change",
					     &tv, 0);
		if (r == 0)
			return 0;
		if (r != -EBUSY && r != -EEXIST)
			return ims_error_set(r, "cannot lock the leases: %s", ims_strerror(r));
		usleep(50000);
	}
	return ims_error_set(-ETIMEDOUT, "the leases stayed locked by another daemon for 5 s");
}

static void leases_unlock(rados_ioctx_t io, const char *cookie)
{
	rados_unlock(io, LEASES_OBJECT, LEASES_LOCK, cookie);
}

/* The records' I/O context and, when @p locked, the leases' lock. */
static int open_records(ims_site *site, const char *records_pool, bool locked, rados_ioctx_t *io,
			char *cookie, size_t clen)
{
	int r = ims_site_ioctx(io, site, records_pool);
	if (r < 0)
		return r;
	if (locked && (r = leases_lock(*io, cookie, clen)) < 0) {
		ims_site_ioctx_close(*io);
		return r;
	}
	return 0;
}

static void close_records(rados_ioctx_t io, bool locked, const char *cookie)
{
	if (locked)
		leases_unlock(io, cookie);
	ims_site_ioctx_close(io);
}

static void key_of(char *key, size_t len, const char *pool, const char *image)
{
	snprintf(key, len, "%s/%s", pool, image);
}

/* ---------------------------------------------------------------------------------------- */

int ims_lease_list(ims_lease **out, size_t *n, ims_site *site, const char *records_pool)
{
	rados_ioctx_t io;
	int r = open_records(site, records_pool, false, &io, NULL, 0);
	if (r < 0)
		return r;
	r = leases_read(io, out, n);
	close_records(io, false, NULL);
	return r;
}

int ims_lease_get(ims_lease *out, ims_site *site, const char *records_pool, const char *pool,
		  const char *image)
{
	rados_ioctx_t io;
	char key[2 * IMS_NAME_MAX + 2];
	json_object *o = NULL;
	int r = open_records(site, records_pool, false, &io, NULL, 0);
	if (r < 0)
		return r;
	key_of(key, sizeof(key), pool, image);
	ims_records rs = IMS_RECORDS_IO(io, LEASES_OBJECT);
	rs.quiet = true; /* no lease, or a damaged one, is no error */
	r = ims_record_get(&o, &rs, key);
	close_records(io, false, NULL);
	if (r == -ENOENT || r == -EBADMSG)
		return 0;
	if (r < 0)
		return ims_error_set(r, "cannot read the lease of '%s': %s", key, ims_strerror(r));
	r = lease_parse(out, key, o) == 0 ? 1 : 0;
	json_object_put(o);
	return r;
}

int ims_lease_held(char *host, size_t len, ims_site *site, const char *records_pool,
		   const char *pool, const char *image)
{
	ims_lease l;
	int r = ims_lease_get(&l, site, records_pool, pool, image);
	if (r <= 0)
		return r;
	if (l.expires <= now())
		return 0;
	snprintf(host, len, "%s", l.host);
	return 1;
}

int ims_lease_acquire(ims_lease *out, ims_site *site, const char *records_pool, const char *pool,
		      const char *image, const char *host, unsigned ttl, uint64_t generation)
{
	rados_ioctx_t io;
	char cookie[64], key[2 * IMS_NAME_MAX + 2];
	ims_lease *list = NULL, l;
	size_t n = 0;
	int r;

	if (!ims_host_name_valid(host))
		return ims_error_set(
			-EINVAL, "bad host name '%s': 1 to 127 letters, digits, '.', '-' or '_'",
			host ? host : "");
	if ((r = open_records(site, records_pool, true, &io, cookie, sizeof(cookie))) < 0)
		return r;
	if ((r = leases_read(io, &list, &n)) < 0)
		goto out;
	int64_t t = now();
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i].pool, pool) || strcmp(list[i].image, image))
			continue;
		if (list[i].expires > t && strcmp(list[i].host, host) != 0) {
			char when[32];
			ims_format_utc(when, sizeof(when), list[i].expires);
			r = ims_error_set(-EBUSY, "image '%s/%s' is leased by host '%s' until %s",
					  pool, image, list[i].host, when);
			goto out;
		}
	}
	memset(&l, 0, sizeof(l));
	char hex[25];
	if ((r = ims_random_hex(hex, sizeof(hex))) < 0) {
		r = ims_error_set(r, "no randomness for a lease id");
		goto out;
	}
	snprintf(l.id, sizeof(l.id), "lease-%s", hex);
	snprintf(l.pool, sizeof(l.pool), "%s", pool);
	snprintf(l.image, sizeof(l.image), "%s", image);
	snprintf(l.host, sizeof(l.host), "%s", host);
	l.acquired = t;
	l.expires = t + ttl;
	l.generation = generation;
	key_of(key, sizeof(key), pool, image);
	r = record_set(io, LEASES_OBJECT, key, lease_json(&l));
	if (r == 0)
		*out = l;
out:
	free(list);
	close_records(io, true, cookie);
	return r;
}

int ims_lease_change(ims_lease *out, ims_site *site, const char *records_pool, const char *id,
		     unsigned ttl, ims_lease_check_fn check, void *ctx)
{
	rados_ioctx_t io;
	char cookie[64], key[2 * IMS_NAME_MAX + 2];
	ims_lease *list = NULL;
	size_t n = 0;
	bool found = false;
	int r;

	if (!id || !id[0])
		return ims_error_set(-EINVAL, "the request names no lease");
	if ((r = open_records(site, records_pool, true, &io, cookie, sizeof(cookie))) < 0)
		return r;
	if ((r = leases_read(io, &list, &n)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i].id, id) != 0)
			continue;
		found = true;
		key_of(key, sizeof(key), list[i].pool, list[i].image);
		if (check && (r = check(ctx, &list[i], ttl > 0)) < 0) {
			if (r == -ESTALE && ttl > 0) /* fenced: the image failed over since */
				record_rm(io, LEASES_OBJECT, key);
			break;
		}
		if (ttl == 0) {
			r = record_rm(io, LEASES_OBJECT, key);
		} else {
			/* a lease past its expiry is still renewable while nobody took the image */
			list[i].expires = now() + ttl;
			r = record_set(io, LEASES_OBJECT, key, lease_json(&list[i]));
		}
		*out = list[i];
		break;
	}
	/* a renewal of a lease a failover broke: its host is fenced */
	if (!found && (ttl == 0 || (r = fenced_lease(out, io, id, check, ctx)) == -ENOENT))
		r = ims_error_set(-ENOENT,
				  "no lease '%s' (released, or taken over by another host after it "
				  "expired)",
				  id);
out:
	free(list);
	close_records(io, true, cookie);
	return r;
}

int ims_lease_break(unsigned *broken, ims_site *site, const char *records_pool, const char *pool,
		    const char *image)
{
	rados_ioctx_t io;
	char cookie[64], key[2 * IMS_NAME_MAX + 2];
	ims_lease *list = NULL;
	size_t n = 0;
	int r;

	*broken = 0;
	if ((r = open_records(site, records_pool, true, &io, cookie, sizeof(cookie))) < 0)
		return r;
	key_of(key, sizeof(key), pool, image);
	if ((r = leases_read(io, &list, &n)) == 0) {
		for (size_t i = 0; i < n; i++)
			if (!strcmp(list[i].pool, pool) && !strcmp(list[i].image, image)) {
				ims_log_info("failover of '%s': broke the lease of host '%s'", key,
					     list[i].host);
				++*broken;
				fenced_remember(io, &list[i]);
			}
		if (*broken && (r = record_rm(io, LEASES_OBJECT, key)) == -ENOENT)
			r = 0;
	}
	free(list);
	close_records(io, true, cookie);
	return r;
}

int ims_host_register(ims_site *site, const char *records_pool, const char *name,
		      const char *address, const char *caller)
{
	rados_ioctx_t io;
	int r;
	if (!ims_host_name_valid(name))
		return ims_error_set(
			-EINVAL, "bad host name '%s': 1 to 127 letters, digits, '.', '-' or '_'",
			name ? name : "");
	if ((r = open_records(site, records_pool, false, &io, NULL, 0)) < 0)
		return r;
	json_object *o = json_object_new_object();
	if (o) {
		json_object_object_add(o, "address",
				       json_object_new_string(address ? address : ""));
		json_object_object_add(o, "registered", json_object_new_int64(now()));
		json_object_object_add(o, "caller", json_object_new_string(caller ? caller : ""));
	}
	r = record_set(io, HOSTS_OBJECT, name, o);
	close_records(io, false, NULL);
	return r;
}
