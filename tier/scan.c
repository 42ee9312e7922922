#include "tier/scan.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "common/threads.h"

struct ims_tier_scan {
	ims_tier_scan_opts o;
	char records_pool[IMS_NAME_MAX + 1];
	char owner[128];
	ims_threads thread; /* scan_main */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
};

bool ims_tier_scan_stopping(ims_tier_scan *s)
{
	pthread_mutex_lock(&s->lock);
	bool st = s->stopping;
	pthread_mutex_unlock(&s->lock);
	return st;
}

static int lock_job(ims_site *site, const char *records_pool, const char *pool, const char *image,
		    const char *owner, bool renew, bool release)
{
	rados_ioctx_t io;
	int r = ims_site_ioctx(&io, site, records_pool);
	if (r < 0)
		return r;
	if (release)
		ims_tier_policy_unlock(io, pool, image, owner);
	else
		r = ims_tier_policy_lock(io, pool, image, owner, IMS_TIER_PUSH_LOCK_SECONDS, renew);
	ims_site_ioctx_close(io);
	return r;
}

int ims_tier_push_job_renew(ims_tier_push_job *job)
{
	int64_t t = (int64_t)time(NULL);
	if (t - job->renewed < IMS_TIER_PUSH_LOCK_SECONDS / 3)
		return 0;
	int r = lock_job(job->site, job->records_pool, job->pool, job->image, job->owner, true,
			 false);
	if (r == 0)
		job->renewed = t;
	return r;
}

/* Push one candidate: lock, judge again, push and wait, unlock. */
static void push_one(ims_tier_scan *s, const ims_tier_policy *p, const char *target,
		     const char *image)
{
	ims_tier_candidate cand;
	int r;

	ims_error_clear();
	if ((r = lock_job(s->o.site, s->records_pool, p->pool, image, s->owner, false, false)) <
	    0) {
		ims_log_debug("tiering policy: %s", ims_error_last());
		return;
	}
	r = ims_tier_policy_check(&cand, s->o.site, p, image, (int64_t)time(NULL), s->o.hold,
				  s->o.ctx);
	if (r == 0 && cand.push) {
		ims_tier_push_job job;
		memset(&job, 0, sizeof(job));
		snprintf(job.pool, sizeof(job.pool), "%s", p->pool);
		snprintf(job.image, sizeof(job.image), "%s", image);
		snprintf(job.target, sizeof(job.target), "%s", target);
		snprintf(job.reason, sizeof(job.reason), "%s", cand.reason);
		snprintf(job.records_pool, sizeof(job.records_pool), "%s", s->records_pool);
		snprintf(job.owner, sizeof(job.owner), "%s", s->owner);
		job.after = p->after;
		job.site = s->o.site;
		job.renewed = (int64_t)time(NULL);
		ims_log_info("tiering policy of pool '%s': pushing '%s/%s' to '%s': %s", p->pool,
			     p->pool, image, target, cand.reason);
		if (s->o.push(s->o.ctx, s, &job) == 1)
			return; /* stopping while it runs: it keeps the lock until it ends */
	} else if (r < 0 && r != -ENOENT) {
		ims_log_warning("tiering policy: %s", ims_error_last());
	}
	lock_job(s->o.site, s->records_pool, p->pool, image, s->owner, false, true);
}

static void scan_once(ims_tier_scan *s)
{
	ims_tier_policy *ps = NULL;
	size_t np = 0;

	ims_error_clear();
	if (ims_tier_policy_list(&ps, &np, s->o.site, s->records_pool) < 0) {
		ims_log_warning("tiering policies not read: %s", ims_error_last());
		return;
	}
	for (size_t i = 0; i < np && !ims_tier_scan_stopping(s); i++) {
		char target[IMS_NAME_MAX + 1];
		ims_tier_candidate *list = NULL;
		size_t n = 0;
		ims_error_clear();
		if (s->o.target(s->o.ctx, ps[i].target, target, sizeof(target)) < 0 ||
		    ims_tier_policy_candidates(&list, &n, s->o.site, &ps[i], (int64_t)time(NULL),
					       s->o.hold, s->o.ctx) < 0) {
			ims_log_warning("tiering policy of pool '%s' not applied: %s", ps[i].pool,
					ims_error_last());
			continue;
		}
		for (size_t k = 0; k < n && !ims_tier_scan_stopping(s); k++)
			if (list[k].push)
				push_one(s, &ps[i], target, list[k].image);
		free(list);
	}
	free(ps);
}

static void *scan_main(void *arg)
{
	ims_tier_scan *s = arg;
	uint64_t wait = s->o.interval < 30 ? s->o.interval : 30;
	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		struct timespec until;
		ims_clock_after_ms(&until, wait * 1000u);
		while (!s->stopping && pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
			;
		if (s->stopping)
			break;
		pthread_mutex_unlock(&s->lock);
		scan_once(s);
		pthread_mutex_lock(&s->lock);
		wait = s->o.interval;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int ims_tier_scan_start(ims_tier_scan **out, const ims_tier_scan_opts *o)
{
	*out = NULL;
	if (o->interval == 0)
		return 0; /* off */
	if (!o->site || !o->records_pool || !o->owner || !o->target || !o->push)
		return ims_error_set(
			-EINVAL,
			"a tiering scan needs a site, a records pool, an owner and callbacks");
	ims_tier_scan *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->o = *o;
	snprintf(s->records_pool, sizeof(s->records_pool), "%s", o->records_pool);
	snprintf(s->owner, sizeof(s->owner), "%s", o->owner);
	s->o.records_pool = s->records_pool;
	s->o.owner = s->owner;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	int r = ims_threads_start(&s->thread, 1, scan_main, s, "the tiering scan");
	if (r < 0) {
		ims_threads_join(&s->thread);
		pthread_mutex_destroy(&s->lock);
		pthread_cond_destroy(&s->cond);
		free(s);
		return r;
	}
	*out = s;
	return 0;
}

void ims_tier_scan_stop(ims_tier_scan *s)
{
	if (!s)
		return;
	ims_threads_stop(&s->thread, &s->lock, &s->cond, &s->stopping);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}
