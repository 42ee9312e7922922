/* daemon/failover.c: the failover protocol (replicator/handover.h) run as an Operation. */
#include "daemon/failover.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/error.h"
#include "daemon/health.h"
#include "daemon/hosts.h"
#include "daemon/kit.h"

typedef struct {
	ims_daemon *d;
	ims_op *op;
} run_ctx;

static int hook_peer(void *ctx, const char *name, ims_site **out)
{
	return ims_daemon_peer(((run_ctx *)ctx)->d, name, out);
}

static const char *hook_peer_pool(void *ctx, const char *site)
{
	ims_daemon *d = ((run_ctx *)ctx)->d;
	const ims_config_cluster *c = ims_config_peer(d->cfg, site);
	return c && c->pool ? c->pool : d->pool;
}

/* Whether a failover may ask site @p name: it answers in full or partly (daemon/health.h) */
static bool hook_site_up(void *ctx, const char *name)
{
	return ims_health_site_answers(((run_ctx *)ctx)->d->health, name);
}

static bool hook_site_partly(void *ctx, const char *name)
{
	return ims_health_site_partly(((run_ctx *)ctx)->d->health, name);
}

static int hook_copy_silent(void *ctx, const char *name, const char *pool, const char *copy,
			    bool group, char *why, size_t len)
{
	return ims_health_copy_silent(why, len, ((run_ctx *)ctx)->d->health, name, pool, copy,
				      group);
}

static int hook_leased(void *ctx, const char *pool, const char *image, char *host, size_t len)
{
	return ims_hosts_image_leased(host, len, ((run_ctx *)ctx)->d, pool, image);
}

static int hook_break(void *ctx, const char *pool, const char *image, unsigned *broken)
{
	return ims_hosts_break_leases(broken, ((run_ctx *)ctx)->d, pool, image);
}

static int hook_progress(void *ctx, uint64_t done, uint64_t total)
{
	return ims_op_progress(((run_ctx *)ctx)->op, done, total);
}

static void hook_detail(void *ctx, const char *line)
{
	ims_op_add_detail(((run_ctx *)ctx)->op, "%s", line);
}

static void hook_decided(void *ctx, const char *line)
{
	ims_op_set_decided(((run_ctx *)ctx)->op, "%s", line);
}

static const ims_handover_hooks hooks = {
	.peer = hook_peer,
	.peer_pool = hook_peer_pool,
	.site_up = hook_site_up,
	.site_partly = hook_site_partly,
	.copy_silent = hook_copy_silent,
	.leased = hook_leased,
	.break_leases = hook_break,
	.progress = hook_progress,
	.detail = hook_detail,
	.decided = hook_decided,
};

typedef int (*handover_fn)(char *said, size_t len, const ims_handover_env *e,
			   const ims_handover_req *q);

static int run(ims_op *op, ims_failover_work *w, handover_fn fn)
{
	run_ctx ctx = {.d = w->d, .op = op};
	ims_handover_env e = {
		.site = w->d->site,
		.repl = w->d->repl,
		.rpo = (uint32_t)w->d->cfg->defaults.rpo,
		.hooks = &hooks,
		.ctx = &ctx,
	};
	char said[2048];
	int r = fn(said, sizeof(said), &e, &w->q);
	if (r == 0 && said[0])
		ims_op_set_result(op, "%s", said);
	return r;
}

int ims_failover_run(ims_op *op, void *arg)
{
	return run(op, arg, ims_handover_failover);
}

int ims_failover_all_run(ims_op *op, void *arg)
{
	return run(op, arg, ims_handover_site);
}

int ims_resync_run(ims_op *op, void *arg)
{
	return run(op, arg, ims_handover_resync);
}

void ims_failover_site_target(char *buf, size_t len, const char *pool, const char *from)
{
	snprintf(buf, len, "%s/* of site %s", pool, from);
}

/* -EBUSY, naming it, if a failover that a new one of @p pool/@p name (@p name "": of a site's
 * images in @p pool) would race still runs here (ims_failover_work_new()). */
static int refuse_busy(ims_daemon *d, const char *pool, const char *name)
{
	char target[2 * IMS_NAME_MAX + 16];
	ims_op_record op;
	ims_failover_site_target(target, sizeof(target), pool, "");
	if (ims_ops_running(&op, d->ops, "failover", target, false))
		return ims_error_set(
			-EBUSY,
			"a failover of site '%s''s images in pool '%s' still runs here "
			"(operation %s)%s; `imgstore op wait %s` waits for its end",
			op.target + strlen(target), pool, op.id,
			op.decided ? ": its old copies are still being made secondaries" : "",
			op.id);
	snprintf(target, sizeof(target), "%s/%s", pool, name);
	static const char *const kinds[] = {"failover", "failback", "resync"};
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
		if (ims_ops_running(&op, d->ops, kinds[k], target, name[0] != '\0'))
			return ims_error_set(
				-EBUSY,
				"a %s of '%s' still runs here (operation %s)%s; `imgstore op wait "
				"%s` waits for its end",
				kinds[k], op.target, op.id,
				op.decided ? ": its old copy is still being made a secondary" : "",
				op.id);
	return 0;
}

/* One look-then-submit at a time: two calls at once would both find nothing running. */
static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;

int ims_failover_submit(ims_daemon *d, ims_rpc_call *call, const char *kind, const char *what,
			ims_op_fn fn, ims_failover_work *w, ProtobufCMessage **resp)
{
	pthread_mutex_lock(&submit_lock);
	int r = refuse_busy(d, w->q.pool, w->q.name);
	if (r == 0)
		r = ims_kit_submit(d, call, kind, what, fn, w, free, resp);
	else
		free(w);
	pthread_mutex_unlock(&submit_lock);
	return r;
}

int ims_failover_work_new(ims_failover_work **out, ims_daemon *d, ims_repl_unit unit,
			  const char *pool, const char *name, bool force, unsigned wait_s,
			  bool new_primary, const char *to)
{
	int r;
	*out = NULL;
	if ((r = refuse_busy(d, pool, name)) < 0) /* said early; again in ims_failover_submit() */
		return r;
	if (new_primary && !(to && to[0]))
		return ims_error_set(
			-EINVAL, "a failover needs --to SITE: the site that becomes the primary");
	ims_failover_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->d = d;
	w->q.unit = unit;
	w->q.mode = force ? IMS_HANDOVER_FORCED : IMS_HANDOVER_PLANNED;
	snprintf(w->q.pool, sizeof(w->q.pool), "%s", pool);
	snprintf(w->q.name, sizeof(w->q.name), "%s", name);
	w->q.wait_s = wait_s;
	if (new_primary)
		snprintf(w->q.target, sizeof(w->q.target), "%s", to);
	else if ((r = ims_daemon_pair_target(w->q.target, sizeof(w->q.target), d, pool, name, unit,
					     to)) < 0) {
		free(w);
		return r;
	}
	*out = w;
	return 0;
}
