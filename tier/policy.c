/*
 * tier/policy.c: tiering policies per pool, and which images they would push.
 */
#include "tier/policy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <json-c/json.h>
#include <rbd/librbd.h>

#include "common/error.h"
#include "common/json.h"
#include "common/units.h"
#include "store/image.h"
#include "store/record.h"

static const char *after_name(ims_tier_after a)
{
	return a == IMS_TIER_KEEP ? "keep" : a == IMS_TIER_PURGE ? "purge" : "trash";
}

static int policy_set(rados_ioctx_t io, const ims_tier_policy *p)
{
	int r;
	if (!p)
		return ims_error_set(-EINVAL, "no policy");
	if ((r = ims_name_check(IMS_NAME_POOL, p->pool)) < 0)
		return r;
	if (p->target[0] && (r = ims_name_check(IMS_NAME_POOL, p->target)) < 0)
		return ims_error_set(-EINVAL, "'%s' is not a target name", p->target);
	if (p->cold_after == 0)
		return ims_error_set(-EINVAL,
				     "the idle time of a tiering policy must be at least 1 s");
	json_object *o = json_object_new_object();
	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "pool", json_object_new_string(p->pool));
	json_object_object_add(o, "cold_after", json_object_new_int64((int64_t)p->cold_after));
	json_object_object_add(o, "target", json_object_new_string(p->target));
	json_object_object_add(o, "after", json_object_new_string(after_name(p->after)));
	json_object_object_add(o, "updated", json_object_new_int64((int64_t)time(NULL)));
	r = ims_record_put(&IMS_RECORDS_IO(io, IMS_TIER_POLICIES), p->pool, o);
	json_object_put(o);
	if (r < 0)
		return ims_error_set(r, "cannot record the tiering policy of pool '%s': %s",
				     p->pool, ims_strerror(r));
	return 0;
}

/* A policy record (@p o NULL when it is not JSON), of pool @p key. */
static int parse(ims_tier_policy *out, const char *key, json_object *o)
{
	if (!o)
		return ims_error_set(-EBADMSG,
				     "the tiering policy of pool '%s' is not a JSON object", key);
	memset(out, 0, sizeof(*out));
	snprintf(out->pool, sizeof(out->pool), "%s", key);
	int64_t ca = ims_json_i64(o, "cold_after");
	out->cold_after = ca > 0 ? (uint64_t)ca : 0;
	ims_json_str(out->target, sizeof(out->target), o, "target");
	char after[16];
	ims_json_str(after, sizeof(after), o, "after");
	if (ims_tier_after_parse(&out->after, after) < 0)
		out->after = IMS_TIER_TRASH;
	out->updated = ims_json_i64(o, "updated");
	ims_error_clear();
	return 0;
}

static int policy_get(ims_tier_policy *out, rados_ioctx_t io, const char *pool)
{
	json_object *o = NULL;
	int r = ims_name_check(IMS_NAME_POOL, pool);
	if (r < 0)
		return r;
	r = ims_record_get(&o, &IMS_RECORDS_IO(io, IMS_TIER_POLICIES), pool);
	if (r == -ENOENT)
		return ims_error_set(-ENOENT, "pool '%s' has no tiering policy", pool);
	if (r < 0 && r != -EBADMSG)
		return ims_error_set(r, "cannot read the tiering policy of pool '%s': %s", pool,
				     ims_strerror(r));
	ims_tier_policy p;
	r = parse(&p, pool, o);
	json_object_put(o);
	if (r == 0)
		*out = p;
	return r;
}

static int policy_rm(rados_ioctx_t io, const char *pool)
{
	ims_tier_policy p;
	int r = policy_get(&p, io, pool);
	if (r < 0)
		return r;
	r = ims_record_del(&IMS_RECORDS_IO(io, IMS_TIER_POLICIES), pool);
	if (r < 0)
		return ims_error_set(r, "cannot remove the tiering policy of pool '%s': %s", pool,
				     ims_strerror(r));
	return 0;
}

static int decode(void *elem, const char *key, json_object *o)
{
	if (strlen(key) > IMS_NAME_MAX)
		return 1;
	int r = parse(elem, key, o);
	ims_error_clear(); /* one damaged record does not stop the listing */
	return r < 0 ? 1 : 0;
}

static int policy_list(ims_tier_policy **out, size_t *count, rados_ioctx_t io)
{
	void *list = NULL;
	int r = ims_record_list(&list, count, &IMS_RECORDS_IO(io, IMS_TIER_POLICIES),
				sizeof(ims_tier_policy), decode, NULL);
	if (r < 0)
		return ims_error_set(r, "cannot list the tiering policies: %s", ims_strerror(r));
	*out = list;
	return 0;
}

int ims_tier_policy_set(ims_site *site, const char *records_pool, const ims_tier_policy *p)
{
	rados_ioctx_t io;
	int r = ims_site_ioctx(&io, site, records_pool);
	if (r < 0)
		return r;
	r = policy_set(io, p);
	ims_site_ioctx_close(io);
	return r;
}

int ims_tier_policy_get(ims_tier_policy *out, ims_site *site, const char *records_pool,
			const char *pool)
{
	rados_ioctx_t io;
	int r = ims_site_ioctx(&io, site, records_pool);
	if (r < 0)
		return r;
	r = policy_get(out, io, pool);
	ims_site_ioctx_close(io);
	return r;
}

int ims_tier_policy_rm(ims_site *site, const char *records_pool, const char *pool)
{
	rados_ioctx_t io;
	int r = ims_site_ioctx(&io, site, records_pool);
	if (r < 0)
		return r;
	r = policy_rm(io, pool);
	ims_site_ioctx_close(io);
	return r;
}

int ims_tier_policy_list(ims_tier_policy **out, size_t *count, ims_site *site,
			 const char *records_pool)
{
	rados_ioctx_t io;
	int r = ims_site_ioctx(&io, site, records_pool);
	if (r < 0)
		return r;
	r = policy_list(out, count, io);
	ims_site_ioctx_close(io);
	return r;
}

static int check_open(ims_tier_candidate *c, rados_ioctx_t io, const ims_tier_policy *p,
		      const char *image, int64_t now, ims_tier_hold_fn hold, void *ctx)
{
	rbd_image_t img = NULL;
	int r = rbd_open_read_only(io, image, &img, NULL);
	if (r == -ENOENT)
		return ims_error_set(-ENOENT, "no image '%s/%s'", p->pool, image);
	if (r < 0)
		return ims_error_set(r, "cannot open '%s/%s': %s", p->pool, image, ims_strerror(r));

	struct timespec at = {0, 0}, mt = {0, 0};
	if ((r = rbd_get_access_timestamp(img, &at)) < 0 ||
	    (r = rbd_get_modify_timestamp(img, &mt)) < 0) {
		ims_error_set(r, "cannot read the timestamps of '%s/%s': %s", p->pool, image,
			      ims_strerror(r));
		goto out;
	}
	c->last_access = at.tv_sec > mt.tv_sec ? (int64_t)at.tv_sec : (int64_t)mt.tv_sec;

	char role[64];
	size_t rlen = sizeof(role);
	if (rbd_metadata_get(img, "imgstore.repl.role", role, &rlen) == 0) {
		snprintf(c->reason, sizeof(c->reason),
			 "replicated (%s): tier the primary's site only once "
			 "replication is disabled",
			 role);
		goto out;
	}

	rbd_linked_image_spec_t kids[8];
	size_t nkids = sizeof(kids) / sizeof(kids[0]);
	r = rbd_list_descendants(img, kids, &nkids);
	if (r == -ERANGE || (r == 0 && nkids > 0)) {
		if (r == 0)
			rbd_linked_image_spec_list_cleanup(kids, nkids);
		snprintf(c->reason, sizeof(c->reason), "has clones");
		r = 0;
		goto out;
	}
	if (r < 0) {
		ims_error_set(r, "cannot list the clones of '%s/%s': %s", p->pool, image,
			      ims_strerror(r));
		goto out;
	}

	if (hold) {
		char why[sizeof(c->reason)] = "";
		r = hold(ctx, p->pool, image, now, &c->last_access, why, sizeof(why));
		if (r < 0)
			goto out;
		if (r > 0) {
			snprintf(c->reason, sizeof(c->reason), "%s", why);
			r = 0;
			goto out;
		}
	}

	size_t users = 0;
	if ((r = ims_image_watchers(&users, img, io)) < 0) {
		ims_error_set(r, "cannot list the clients of '%s/%s': %s", p->pool, image,
			      ims_strerror(r));
		goto out;
	}
	if (users) {
		snprintf(c->reason, sizeof(c->reason), "open by %zu client%s", users,
			 users == 1 ? "" : "s");
		goto out;
	}

	char idle[32], limit[32];
	uint64_t secs = now > c->last_access ? (uint64_t)(now - c->last_access) : 0;
	ims_format_duration(idle, sizeof(idle), secs);
	ims_format_duration(limit, sizeof(limit), p->cold_after);
	if (secs < p->cold_after) {
		snprintf(c->reason, sizeof(c->reason), "used %s ago (cold after %s)", idle, limit);
		goto out;
	}
	c->push = true;
	snprintf(c->reason, sizeof(c->reason), "idle for %s (cold after %s)", idle, limit);
out:
	rbd_close(img);
	return r;
}

int ims_tier_policy_check(ims_tier_candidate *out, ims_site *site, const ims_tier_policy *p,
			  const char *image, int64_t now, ims_tier_hold_fn hold, void *ctx)
{
	rados_ioctx_t io = NULL;
	ims_tier_candidate c;
	int r;

	if (!out || !site || !p || !image)
		return -EINVAL;
	if ((r = ims_name_check(IMS_NAME_IMAGE, image)) < 0)
		return r;
	memset(&c, 0, sizeof(c));
	snprintf(c.image, sizeof(c.image), "%s", image);
	if ((r = ims_site_ioctx(&io, site, p->pool)) < 0)
		return r;
	r = check_open(&c, io, p, image, now, hold, ctx);
	ims_site_ioctx_close(io);
	if (r == 0)
		*out = c;
	return r;
}

int ims_tier_policy_candidates(ims_tier_candidate **out, size_t *count, ims_site *site,
			       const ims_tier_policy *p, int64_t now, ims_tier_hold_fn hold,
			       void *ctx)
{
	ims_image_list_entry *list = NULL;
	ims_tier_candidate *all = NULL;
	size_t n = 0, k = 0;
	int r;

	if (!out || !count || !site || !p)
		return -EINVAL;
	if ((r = ims_image_list(&list, &n, site, p->pool)) < 0)
		return r;
	all = calloc(n + 1, sizeof(*all));
	if (!all) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (list[i].in_catalog && list[i].entry.cold_target)
			continue; /* cold already: no RBD image */
		r = ims_tier_policy_check(&all[k], site, p, list[i].name, now, hold, ctx);
		if (r == -ENOENT) { /* removed since the listing */
			ims_error_clear();
			continue;
		}
		if (r < 0)
			goto out;
		k++;
	}
	*out = all;
	*count = k;
	all = NULL;
	r = 0;
out:
	free(all);
	ims_image_list_free(list, n);
	return r;
}

int ims_tier_policy_lock(rados_ioctx_t io, const char *pool, const char *image, const char *owner,
			 unsigned seconds, bool renew)
{
	char name[2 * IMS_NAME_MAX + 2];
	snprintf(name, sizeof(name), "%s/%s", pool, image);
	/* one held under our own cookie by another client is this daemon's previous run's,
	 * killed during a push: broken rather than waited for */
	int r = ims_record_lock(NULL, 0, io, IMS_TIER_LOCK, name, owner, "tier push",
				seconds ? seconds : 60, renew);
	if (r == -EEXIST && !renew)
		r = -EBUSY;
	if (r == -EBUSY)
		return ims_error_set(-EBUSY, "another daemon pushes '%s'", name);
	if (r < 0)
		return ims_error_set(r, "cannot lock '%s' for a push: %s", name, ims_strerror(r));
	return 0;
}

void ims_tier_policy_unlock(rados_ioctx_t io, const char *pool, const char *image,
			    const char *owner)
{
	char name[2 * IMS_NAME_MAX + 2];
	snprintf(name, sizeof(name), "%s/%s", pool, image);
	rados_unlock(io, IMS_TIER_LOCK, name, owner);
}
