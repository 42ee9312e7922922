/*
 * daemon/tier.c: the TierService handlers. Every call opens its target from the configuration
 * (credentials and key files are read then, so a rotated key file needs no restart). The
 * tiering policies' scan runs on a thread of its own and pushes through the same Operations.
 */
#include "daemon/tier.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/log.h"
#include "common/units.h"
#include "common/spec.h"
#include "daemon/daemon.h"
#include "daemon/kit.h"
#include "imgstore/v1/common.pb-c.h"
#include "imgstore/v1/tier.pb-c.h"
#include "store/lease.h"
#include "tier/policy.h"
#include "tier/scan.h"
#include "tier/tier.h"

typedef struct {
	ims_daemon *d;
	char target[IMS_NAME_MAX + 1];
	char pool[IMS_NAME_MAX + 1];
	char image[IMS_NAME_MAX + 1];
	char snap[IMS_NAME_MAX + 1];
	char name[3 * IMS_NAME_MAX + 4];
	ims_tier_after after;
	uint64_t chunk_size;
	bool deep, gc;
	uint64_t grace;
} tier_work;

/* The [s3] section named @p name; with none named, the only one. */
static int pick_target(ims_daemon *d, const char *name, const ims_config_s3 **out)
{
	if (name && name[0]) {
		const ims_config_s3 *c = ims_config_s3_target(d->cfg, name);
		if (!c)
			return ims_error_set(-ENOENT, "no S3 target '%s' in %s", name,
					     d->cfg->path);
		*out = c;
		return 0;
	}
	if (d->cfg->ns3 == 1) {
		*out = &d->cfg->s3[0];
		return 0;
	}
	if (d->cfg->ns3 == 0)
		return ims_error_set(-ENOENT, "no S3 target is configured ([s3 NAME] in %s)",
				     d->cfg->path);
	return ims_error_set(-EINVAL, "%zu S3 targets are configured: name one", d->cfg->ns3);
}

/* A push that removes the image honours host leases (the tier module reads no daemon records). */
static int image_leased(void *ctx, const char *pool, const char *image, char *why, size_t len)
{
	ims_daemon *d = ctx;
	char host[IMS_HOST_NAME_MAX + 1] = "";
	int r = ims_lease_held(host, sizeof(host), d->site, d->pool, pool, image);
	if (r > 0)
		snprintf(why, len, "leased by host '%s'", host);
	return r;
}

static ims_tier_opts work_opts(tier_work *w, ims_op *op)
{
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	o.concurrency = (unsigned)w->d->cfg->defaults.concurrency;
	o.after = w->after;
	o.chunk_size = w->chunk_size;
	o.grace = w->grace;
	o.progress = ims_kit_op_progress;
	o.progress_ctx = op;
	o.leased = image_leased;
	o.leased_ctx = w->d;
	return o;
}

static int open_target(tier_work *w, ims_tier_target **t)
{
	const ims_config_s3 *c = NULL;
	int r = pick_target(w->d, w->target, &c);
	return r < 0 ? r : ims_tier_target_open(t, c);
}

static int run_push(ims_op *op, void *arg)
{
	tier_work *w = arg;
	ims_tier_target *t = NULL;
	ims_tier_result res;
	int r = open_target(w, &t);
	if (r < 0)
		return r;
	ims_tier_opts o = work_opts(w, op);
	r = ims_tier_push(&res, t, w->d->site, w->pool, w->image, w->snap[0] ? w->snap : NULL, &o);
	if (r == 0)
		ims_log_info("pushed '%s' to '%s': %" PRIu64 " chunks, %" PRIu64 " new, %" PRIu64
			     " bytes uploaded, %" PRIu64 " bytes of zeros",
			     res.name, w->target, res.chunks, res.chunks_new, res.bytes_sealed,
			     res.bytes_zero);
	ims_tier_target_free(t);
	return r;
}

static int run_restore(ims_op *op, void *arg)
{
	tier_work *w = arg;
	ims_tier_target *t = NULL;
	int r = open_target(w, &t);
	if (r < 0)
		return r;
	ims_tier_opts o = work_opts(w, op);
	r = ims_tier_restore(NULL, t, w->d->site, w->name, w->pool[0] ? w->pool : NULL,
			     w->image[0] ? w->image : NULL, &o);
	ims_tier_target_free(t);
	return r;
}

static int run_scrub(ims_op *op, void *arg)
{
	tier_work *w = arg;
	ims_tier_target *t = NULL;
	ims_tier_scrub_result res;
	int r = open_target(w, &t);
	if (r < 0)
		return r;
	ims_tier_opts o = work_opts(w, op);
	r = ims_tier_scrub(&res, t, w->deep, w->gc, &o);
	ims_tier_target_free(t);
	if (r < 0)
		return r;
	ims_log_info("%s scrub of '%s': %" PRIu64 " manifests (%" PRIu64 " bad), %" PRIu64
		     " chunks (%" PRIu64 " bad)%s",
		     w->deep ? "deep" : "shallow", w->target, res.manifests, res.manifests_bad,
		     res.chunks, res.chunks_bad, w->gc ? "" : "");
	if (w->gc)
		ims_log_info("garbage collection on '%s': %" PRIu64 " unreferenced chunks, %" PRIu64
			     " kept for the grace period, %" PRIu64 " deleted",
			     w->target, res.garbage, res.garbage_young, res.deleted);
	if (res.chunks_bad || res.manifests_bad)
		return ims_error_set(-EBADMSG,
				     "scrub of '%s' found %" PRIu64 " bad chunk%s and %" PRIu64
				     " bad manifest%s: %s",
				     w->target, res.chunks_bad, res.chunks_bad == 1 ? "" : "s",
				     res.manifests_bad, res.manifests_bad == 1 ? "" : "s",
				     res.report);
	return 0;
}

static int submit(ims_daemon *d, ims_rpc_call *call, const char *kind, const char *what,
		  ims_op_fn fn, tier_work *w, ProtobufCMessage **resp)
{
	return ims_kit_submit(d, call, kind, what, fn, w, free, resp);
}

static int ims_h_tier_push(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			   ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__PushRequest *q = (const void *)req;
	const ims_config_s3 *c = NULL;
	ims_spec s;
	char text[3 * IMS_NAME_MAX + 4];
	int r;

	if (!q->image || !q->image->image || !q->image->image[0])
		return ims_error_set(-EINVAL, "the request names no image");
	snprintf(text, sizeof(text), "%s/%s%s%s",
		 q->image->pool && q->image->pool[0] ? q->image->pool : d->pool, q->image->image,
		 q->image->snapshot && q->image->snapshot[0] ? "@" : "",
		 q->image->snapshot ? q->image->snapshot : "");
	ims_rpc_call_set_target(call, text);
	if ((r = ims_spec_parse(&s, text, NULL, true, false)) < 0)
		return r;
	if ((r = pick_target(d, q->target, &c)) < 0)
		return r;
	tier_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->d = d;
	if ((r = ims_tier_after_parse(&w->after, q->after)) < 0 ||
	    (r = ims_daemon_require_image(d, s.pool, s.image)) < 0) {
		free(w);
		return r;
	}
	snprintf(w->target, sizeof(w->target), "%s", c->name);
	snprintf(w->pool, sizeof(w->pool), "%s", s.pool);
	snprintf(w->image, sizeof(w->image), "%s", s.image);
	snprintf(w->snap, sizeof(w->snap), "%s", s.snap);
	w->chunk_size = q->chunk_size;
	return submit(d, call, "tier-push", text, run_push, w, resp);
}

static int ims_h_tier_restore(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			      ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__RestoreRequest *q = (const void *)req;
	const ims_config_s3 *c = NULL;
	ims_spec from, to;
	char target[IMS_NAME_MAX + 1] = "", what[4 * IMS_NAME_MAX];
	int r;

	if (!q->name || !q->name[0])
		return ims_error_set(-EINVAL, "the request names no cold image");
	ims_rpc_call_set_target(call, q->name);
	if ((r = ims_spec_parse(&from, q->name, NULL, true, false)) < 0)
		return ims_error_set(r, "cold image names are POOL/IMAGE[@SNAP]: %s",
				     ims_error_last());
	memset(&to, 0, sizeof(to));
	if (q->to && q->to->image && q->to->image[0]) {
		snprintf(what, sizeof(what), "%s/%s",
			 q->to->pool && q->to->pool[0] ? q->to->pool : d->pool, q->to->image);
		if ((r = ims_spec_parse(&to, what, NULL, false, false)) < 0)
			return r;
	}
	/* which target: as asked, else the one the catalog's cold entry names, else the only one */
	if (!(q->target && q->target[0]) && !from.snap[0]) {
		ims_tier_cold_target(target, sizeof(target), d->site, from.pool, from.image);
		ims_error_clear();
	}
	if ((r = pick_target(d, q->target && q->target[0] ? q->target : target, &c)) < 0)
		return r;
	tier_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->d = d;
	snprintf(w->target, sizeof(w->target), "%s", c->name);
	snprintf(w->name, sizeof(w->name), "%s", q->name);
	snprintf(w->pool, sizeof(w->pool), "%s", to.pool);
	snprintf(w->image, sizeof(w->image), "%s", to.image);
	snprintf(what, sizeof(what), "%s%s%s%s%s", q->name, to.image[0] ? " to " : "", to.pool,
		 to.image[0] ? "/" : "", to.image);
	return submit(d, call, "tier-restore", what, run_restore, w, resp);
}

static int ims_h_tier_list_cold(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ListColdRequest *q = (const void *)req;
	Imgstore__V1__ListColdResponse *m = ims_rpc_call_alloc(call, sizeof(*m));
	int r = 0;

	if (!m)
		return -ENOMEM;
	imgstore__v1__list_cold_response__init(m);
	if (q->target && q->target[0] && !ims_config_s3_target(d->cfg, q->target))
		return ims_error_set(-ENOENT, "no S3 target '%s' in %s", q->target, d->cfg->path);
	for (size_t k = 0; k < d->cfg->ns3; k++) {
		const ims_config_s3 *c = &d->cfg->s3[k];
		ims_tier_target *t = NULL;
		ims_tier_cold *list = NULL;
		size_t n = 0;
		if (q->target && q->target[0] && strcmp(q->target, c->name) != 0)
			continue;
		if ((r = ims_tier_target_open(&t, c)) < 0)
			return r;
		r = ims_tier_list(&list, &n, t);
		ims_tier_target_free(t);
		if (r < 0)
			return r;
		Imgstore__V1__ColdImage **all =
			ims_rpc_call_alloc(call, (m->n_images + n + 1) * sizeof(*all));
		if (!all) {
			ims_tier_cold_list_free(list, n);
			return -ENOMEM;
		}
		if (m->n_images)
			memcpy(all, m->images, m->n_images * sizeof(*all));
		m->images = all;
		for (size_t i = 0; i < n; i++) {
			Imgstore__V1__ColdImage *ci = ims_rpc_call_alloc(call, sizeof(*ci));
			if (!ci) {
				ims_tier_cold_list_free(list, n);
				return -ENOMEM;
			}
			imgstore__v1__cold_image__init(ci);
			ci->name = ims_rpc_call_strdup(call, list[i].name);
			ci->target = ims_rpc_call_strdup(call, c->name);
			ci->size = list[i].size;
			ci->pushed_unix = list[i].pushed;
			ci->chunks = list[i].chunks;
			ci->unreadable = list[i].bad;
			m->images[m->n_images++] = ci;
		}
		ims_tier_cold_list_free(list, n);
	}
	*resp = &m->base;
	return 0;
}

static int ims_h_tier_scrub(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			    ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ScrubRequest *q = (const void *)req;
	const ims_config_s3 *c = NULL;
	int r;

	if ((r = pick_target(d, q->target, &c)) < 0)
		return r;
	ims_rpc_call_set_target(call, c->name);
	tier_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->d = d;
	snprintf(w->target, sizeof(w->target), "%s", c->name);
	w->deep = q->deep;
	w->gc = q->collect_garbage;
	w->grace = q->grace_seconds;
	return submit(d, call, q->collect_garbage ? "tier-gc" : "tier-scrub", c->name, run_scrub, w,
		      resp);
}

/* ---------------------------------------------------------------------------------------- */
/* policies */

/*
 * What the daemon knows beyond RBD: a host lease (live: the image is in use; expired: when it
 * was last used at the latest) and a replication policy (keys "POOL/IMAGE@TARGET").
 */
static int daemon_hold(void *ctx, const char *pool, const char *image, int64_t now, int64_t *last,
		       char *why, size_t len)
{
	ims_daemon *d = ctx;
	ims_lease l;
	int r;

	if ((r = ims_lease_get(&l, d->site, d->pool, pool, image)) < 0)
		return r;
	if (r == 1 && l.expires > now) {
		char when[32];
		ims_format_utc(when, sizeof(when), l.expires);
		snprintf(why, len, "leased by host '%s' until %s", l.host, when);
		return 1;
	}
	if (r == 1 && l.expires > *last)
		*last = l.expires;
	char target[IMS_NAME_MAX + 1];
	if ((r = ims_repl_policy_find(target, sizeof(target), d->site, d->pool, pool, image)) == 1)
		snprintf(why, len, "replicated to site '%s'", target);
	return r;
}

static void policy_to_msg(ims_rpc_call *call, Imgstore__V1__TierPolicy *m, const ims_tier_policy *p)
{
	imgstore__v1__tier_policy__init(m);
	m->pool = ims_rpc_call_strdup(call, p->pool);
	m->cold_after_seconds = p->cold_after;
	m->target = ims_rpc_call_strdup(call, p->target);
	m->after = ims_rpc_call_strdup(call, p->after == IMS_TIER_KEEP	  ? "keep"
					     : p->after == IMS_TIER_PURGE ? "purge"
									  : "trash");
	m->updated_unix = p->updated;
}

/* A policy from a request: pool and idle time given, target configured, "after" known. */
static int policy_from_msg(ims_daemon *d, const Imgstore__V1__TierPolicy *m, const char *pool,
			   ims_tier_policy *out)
{
	const ims_config_s3 *c = NULL;
	int r;
	memset(out, 0, sizeof(*out));
	if (!m)
		return ims_error_set(-EINVAL, "the request carries no policy");
	snprintf(out->pool, sizeof(out->pool), "%s",
		 pool && pool[0]	 ? pool
		 : m->pool && m->pool[0] ? m->pool
					 : d->pool);
	if ((r = ims_name_check(IMS_NAME_POOL, out->pool)) < 0)
		return r;
	if (m->cold_after_seconds == 0)
		return ims_error_set(-EINVAL,
				     "a tiering policy needs an idle time (cold_after_seconds)");
	out->cold_after = m->cold_after_seconds;
	if ((r = pick_target(d, m->target, &c)) < 0)
		return r;
	/* kept as given: with none named, whichever single target exists at push time */
	snprintf(out->target, sizeof(out->target), "%s", m->target ? m->target : "");
	return ims_tier_after_parse(&out->after, m->after);
}

static int reply_policy(ims_rpc_call *call, const ims_tier_policy *p, ProtobufCMessage **resp)
{
	Imgstore__V1__TierPolicy *m = ims_rpc_call_alloc(call, sizeof(*m));
	if (!m)
		return -ENOMEM;
	policy_to_msg(call, m, p);
	*resp = &m->base;
	return 0;
}

static void *policy_item(ims_rpc_call *call, const void *list, size_t i)
{
	Imgstore__V1__TierPolicy *m = ims_rpc_call_alloc(call, sizeof(*m));
	if (m)
		policy_to_msg(call, m, &((const ims_tier_policy *)list)[i]);
	return m;
}

static int ims_h_tier_set_policy(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				 ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__SetPolicyRequest *q = (const void *)req;
	ims_tier_policy p;
	int r;

	if (q->policy && q->policy->pool)
		ims_rpc_call_set_target(call, q->policy->pool);
	if ((r = policy_from_msg(d, q->policy, NULL, &p)) < 0 ||
	    (r = ims_tier_policy_set(d->site, d->pool, &p)) < 0 ||
	    (r = ims_tier_policy_get(&p, d->site, d->pool, p.pool)) < 0)
		return r;
	return reply_policy(call, &p, resp);
}

static int ims_h_tier_get_policy(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				 ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__GetPolicyRequest *q = (const void *)req;
	const char *pool = q->pool && q->pool[0] ? q->pool : d->pool;
	ims_tier_policy p;
	int r;

	if ((r = ims_tier_policy_get(&p, d->site, d->pool, pool)) < 0)
		return r;
	return reply_policy(call, &p, resp);
}

static int ims_h_tier_list_policies(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				    ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	ims_tier_policy *list = NULL;
	size_t n = 0;
	int r;
	(void)req;

	if ((r = ims_tier_policy_list(&list, &n, d->site, d->pool)) < 0)
		return r;
	Imgstore__V1__ListPoliciesResponse *m = ims_rpc_call_alloc(call, sizeof(*m));
	r = -ENOMEM;
	if (m) {
		imgstore__v1__list_policies_response__init(m);
		if ((r = IMS_KIT_REPEATED(call, m, policies, n, policy_item, list)) == 0)
			*resp = &m->base;
	}
	free(list);
	return r;
}

static int ims_h_tier_remove_policy(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				    ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__RemovePolicyRequest *q = (const void *)req;
	const char *pool = q->pool && q->pool[0] ? q->pool : d->pool;
	int r;

	ims_rpc_call_set_target(call, pool);
	if ((r = ims_tier_policy_rm(d->site, d->pool, pool)) < 0)
		return r;
	Imgstore__V1__RemovePolicyResponse *m = ims_rpc_call_alloc(call, sizeof(*m));
	if (!m)
		return -ENOMEM;
	imgstore__v1__remove_policy_response__init(m);
	*resp = &m->base;
	return 0;
}

static int ims_h_tier_cold_candidates(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				      ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ColdCandidatesRequest *q = (const void *)req;
	const char *pool = q->pool && q->pool[0]				? q->pool
			   : q->policy && q->policy->pool && q->policy->pool[0] ? q->policy->pool
										: d->pool;
	ims_tier_policy p;
	ims_tier_candidate *list = NULL;
	size_t n = 0;
	int r;

	if (q->policy) {
		if ((r = policy_from_msg(d, q->policy, pool, &p)) < 0)
			return r;
	} else if ((r = ims_tier_policy_get(&p, d->site, d->pool, pool)) < 0) {
		return r;
	}
	if ((r = ims_tier_policy_candidates(&list, &n, d->site, &p, (int64_t)time(NULL),
					    daemon_hold, d)) < 0)
		return r;
	Imgstore__V1__ColdCandidatesResponse *m = ims_rpc_call_alloc(call, sizeof(*m));
	Imgstore__V1__TierPolicy *pm = ims_rpc_call_alloc(call, sizeof(*pm));
	Imgstore__V1__ColdCandidate **all = ims_rpc_call_alloc(call, (n + 1) * sizeof(*all));
	Imgstore__V1__ColdCandidate *cs = ims_rpc_call_alloc(call, (n + 1) * sizeof(*cs));
	if (!m || !pm || !all || !cs) {
		free(list);
		return -ENOMEM;
	}
	imgstore__v1__cold_candidates_response__init(m);
	policy_to_msg(call, pm, &p);
	m->policy = pm;
	for (size_t i = 0; i < n; i++) {
		imgstore__v1__cold_candidate__init(&cs[i]);
		cs[i].image = ims_rpc_call_strdup(call, list[i].image);
		cs[i].last_access_unix = list[i].last_access;
		cs[i].push = list[i].push;
		cs[i].reason = ims_rpc_call_strdup(call, list[i].reason);
		all[i] = &cs[i];
	}
	m->images = all;
	m->n_images = n;
	free(list);
	*resp = &m->base;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* the scan (tier/scan.h): its pushes run as Operations */

typedef struct {
	tier_work w;
	ims_tier_push_job job;
	ims_op *op;
} scan_work;

/* The push of a policy: as run_push, renewing the image's push lock as it goes. */
static int scan_push_progress(void *ctx, uint64_t done, uint64_t total)
{
	scan_work *sw = ctx;
	if (ims_tier_push_job_renew(&sw->job) < 0)
		return 1; /* lost the lock: stop */
	return ims_op_progress(sw->op, done, total);
}

static int run_policy_push(ims_op *op, void *arg)
{
	scan_work *sw = arg;
	tier_work *w = &sw->w;
	ims_tier_target *t = NULL;
	ims_tier_result res;
	int r;

	sw->op = op;
	if ((r = open_target(w, &t)) < 0)
		return r;
	ims_tier_opts o = work_opts(w, op);
	o.progress = scan_push_progress;
	o.progress_ctx = sw;
	r = ims_tier_push(&res, t, w->d->site, w->pool, w->image, NULL, &o);
	if (r == 0)
		ims_log_info("tiering policy of pool '%s': pushed '%s' to '%s' (%" PRIu64
			     " chunks, %" PRIu64 " bytes uploaded)",
			     w->pool, res.name, w->target, res.chunks, res.bytes_sealed);
	ims_tier_target_free(t);
	return r;
}

static int scan_target(void *ctx, const char *asked, char *name, size_t len)
{
	const ims_config_s3 *c = NULL;
	int r = pick_target(ctx, asked, &c);
	if (r == 0)
		snprintf(name, len, "%s", c->name);
	return r;
}

/* Run a push the scan asks for as a "tier-push" Operation, and wait for it. */
static int scan_push(void *ctx, ims_tier_scan *scan, const ims_tier_push_job *job)
{
	ims_daemon *d = ctx;
	ims_op_record rec;
	char what[2 * IMS_NAME_MAX + 2];
	scan_work *sw = calloc(1, sizeof(*sw));
	if (!sw)
		return -ENOMEM;
	sw->job = *job;
	sw->w.d = d;
	sw->w.after = job->after;
	snprintf(sw->w.target, sizeof(sw->w.target), "%s", job->target);
	snprintf(sw->w.pool, sizeof(sw->w.pool), "%s", job->pool);
	snprintf(sw->w.image, sizeof(sw->w.image), "%s", job->image);
	snprintf(what, sizeof(what), "%s/%s", job->pool, job->image);
	int r = ims_ops_submit(&rec, d->ops, "tier-push", what, run_policy_push, sw, free);
	if (r < 0) {
		ims_log_warning("tiering policy: cannot push '%s': %s", what, ims_error_last());
		return r;
	}
	while (!ims_tier_scan_stopping(scan)) {
		if (ims_ops_wait(&rec, d->ops, rec.id, 1000) < 0)
			break;
		if (rec.state != IMS_OP_QUEUED && rec.state != IMS_OP_RUNNING)
			break;
	}
	if (rec.state == IMS_OP_FAILED)
		ims_log_warning("tiering policy: push of '%s' failed: %s", what, rec.error);
	return rec.state == IMS_OP_QUEUED || rec.state == IMS_OP_RUNNING ? 1 : 0;
}

int ims_daemon_tier_scan_start(ims_tier_scan **out, ims_daemon *d)
{
	ims_tier_scan_opts o = {
		.site = d->site,
		.records_pool = d->pool,
		.owner = d->owner_host,
		.interval = d->cfg->defaults.tier_scan_interval,
		.hold = daemon_hold,
		.target = scan_target,
		.push = scan_push,
		.ctx = d,
	};
	return ims_tier_scan_start(out, &o);
}

/* ---------------------------------------------------------------------------------------- */

static const ims_rpc_method methods[] = {
	M("TierService", "Push", push_request, operation, ADMIN, true, ims_h_tier_push),
	M("TierService", "Restore", restore_request, operation, ADMIN, true, ims_h_tier_restore),
	M("TierService", "ListCold", list_cold_request, list_cold_response, READER, false,
	  ims_h_tier_list_cold),
	M("TierService", "Scrub", scrub_request, operation, ADMIN, true, ims_h_tier_scrub),
	M("TierService", "SetPolicy", set_policy_request, tier_policy, ADMIN, true,
	  ims_h_tier_set_policy),
	M("TierService", "GetPolicy", get_policy_request, tier_policy, READER, false,
	  ims_h_tier_get_policy),
	M("TierService", "ListPolicies", list_policies_request, list_policies_response, READER,
	  false, ims_h_tier_list_policies),
	M("TierService", "RemovePolicy", remove_policy_request, remove_policy_response, ADMIN, true,
	  ims_h_tier_remove_policy),
	M("TierService", "ColdCandidates", cold_candidates_request, cold_candidates_response,
	  READER, false, ims_h_tier_cold_candidates),
};

IMS_DAEMON_SERVICE(ims_tier_service, methods);
