/*
 * daemon/replication.c: ReplicationService: enable, disable, status, sync, failover, failback,
 * resync and verify of an image's replication (replicator/, daemon/failover.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "common/clock.h"
#include "common/error.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/spec.h"
#include "common/units.h"
#include "imgstore/v1/group.pb-c.h"
#include "imgstore/v1/host.pb-c.h"
#include "imgstore/v1/image.pb-c.h"
#include "imgstore/v1/operation.pb-c.h"
#include "imgstore/v1/replication.pb-c.h"
#include "imgstore/v1/site.pb-c.h"
#include "imgstore/v1/snapshot.pb-c.h"
#include "imgstore/v1/tier.pb-c.h"
#include "store/image.h"
#include "store/transfer.h"
#include "daemon/daemon.h"
#include "daemon/kit.h"
#include "daemon/failover.h"
#include "daemon/health.h"

/* ---------------------------------------------------------------------------------------- */
/* ReplicationService */

Imgstore__V1__ReplicationStatus *ims_daemon_status_msg(ims_rpc_call *call,
						       const ims_repl_status *st)
{
	Imgstore__V1__ReplicationStatus *m = ALLOC(call, Imgstore__V1__ReplicationStatus);
	if (!m)
		return NULL;
	imgstore__v1__replication_status__init(m);
	m->image = DUP(call, st->image);
	m->target = DUP(call, st->target);
	m->role = DUP(call, st->role);
	m->state = DUP(call, st->state);
	m->rpo_seconds = st->rpo_seconds;
	m->lag_seconds = st->lag_seconds;
	m->last_sealed_snapshot = DUP(call, st->last_sealed);
	m->last_sync_bytes = st->last_sync_bytes;
	m->last_sync_seconds = st->last_sync_seconds;
	m->error = DUP(call, st->error);
	m->verify_every = st->verify_every;
	m->last_verified = DUP(call, st->last_verified);
	m->last_verify = DUP(call, st->last_verify);
	m->verify_failures = st->verify_failures;
	m->group = st->unit == IMS_REPL_GROUP;
	m->replicated_by = DUP(call, st->replicated_by);
	return m;
}

static int h_enable_replication(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__EnableReplicationRequest *q = (const void *)req;
	ims_spec s;
	ims_repl_status st;
	ims_repl_mode mode;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = ims_repl_mode_parse(&mode, q->mode)) < 0)
		return r;
	uint32_t rpo = q->rpo_seconds ? q->rpo_seconds : (uint32_t)d->cfg->defaults.rpo;
	if ((r = ims_repl_enable(&st, d->repl, s.pool, s.image, q->target_site, mode, rpo)) < 0 ||
	    (r = ims_repl_set_verify_every(d->repl, s.pool, s.image, q->target_site,
					   q->verify_every)) < 0)
		return r;
	st.verify_every = q->verify_every;
	return ims_daemon_status_one(call, &st, resp);
}

static int h_disable_replication(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				 ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__DisableReplicationRequest *q = (const void *)req;
	ims_spec s;
	ims_repl_status st;
	char target[IMS_NAME_MAX + 1];
	int r;
	/* without a target: the only site the image replicates to (several: name one) */
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = ims_daemon_pair_target(target, sizeof(target), d, s.pool, s.image, IMS_REPL_IMAGE,
					q->target_site)) < 0 ||
	    (r = ims_repl_disable(&st, d->repl, s.pool, s.image, target)) < 0)
		return r;
	snprintf(st.state, sizeof(st.state), "disabled");
	return ims_daemon_status_one(call, &st, resp);
}

/* The statuses @p list of @p unit pool/name, with a failover this daemon began and did not
 * finish (it was killed half-way) shown as state failing-over, its step and the command that
 * finishes it. */
int ims_daemon_status_journal(ims_repl_status **list, size_t *n, ims_daemon *d, const char *pool,
			      const char *name, ims_repl_unit unit)
{
	ims_repl_journal j;
	const char *kind = unit == IMS_REPL_GROUP ? "group " : "";
	if (ims_repl_journal_get(&j, d->site, pool, name, unit) == 0) {
		/* a failover this daemon began and did not finish (it was killed half-way) */
		size_t k = 0;
		while (k < *n && strcmp((*list)[k].target, j.target) != 0)
			k++;
		if (k == *n) { /* its pair was handed over already */
			ims_repl_status *nl = realloc(*list, (*n + 1) * sizeof(*nl));
			if (!nl)
				return -ENOMEM;
			*list = nl;
			memset(&nl[*n], 0, sizeof(nl[*n]));
			snprintf(nl[*n].image, sizeof(nl[*n].image), "%s/%s", pool, name);
			snprintf(nl[*n].target, sizeof(nl[*n].target), "%s", j.target);
			snprintf(nl[*n].role, sizeof(nl[*n].role), "%s", "primary");
			nl[*n].lag_seconds = -1;
			nl[*n].unit = unit;
			(*n)++;
		}
		snprintf((*list)[k].state, sizeof((*list)[k].state), "%s", "failing-over");
		char why[1024];
		int len =
			j.forced ? snprintf(why, sizeof(why),
					    "a forced failover from site '%s' is at step '%s' "
					    "(generation %llu); if it "
					    "is not running any more, run `imgstore %srepl "
					    "failover %s/%s --to %s --force` "
					    "again to finish it",
					    j.target, ims_repl_step_name(j.step),
					    (unsigned long long)j.generation, kind, pool, name,
					    ims_site_name(d->site))
				 : snprintf(why, sizeof(why),
					    "a failover to site '%s' is at step '%s' (generation "
					    "%llu); if it is not "
					    "running any more, run `imgstore %srepl failover %s/%s "
					    "--to %s` again to "
					    "finish it",
					    j.target, ims_repl_step_name(j.step),
					    (unsigned long long)j.generation, kind, pool, name,
					    j.target);
		size_t cut = len < 0 ? 0
			     : (size_t)len < sizeof((*list)[k].error)
				     ? (size_t)len
				     : sizeof((*list)[k].error) - 1;
		memcpy((*list)[k].error, why, cut);
		(*list)[k].error[cut] = '\0';
	}
	return 0;
}

int ims_daemon_status_one(ims_rpc_call *call, const ims_repl_status *st, ProtobufCMessage **resp)
{
	Imgstore__V1__ReplicationStatus *m = ims_daemon_status_msg(call, st);
	if (!m)
		return -ENOMEM;
	*resp = &m->base;
	return 0;
}

void *ims_daemon_status_item(ims_rpc_call *call, const void *list, size_t i)
{
	return ims_daemon_status_msg(call, &((const ims_repl_status *)list)[i]);
}

static void *extent_item(ims_rpc_call *call, const void *extents, size_t i)
{
	const ims_repl_extent *x = &((const ims_repl_extent *)extents)[i];
	Imgstore__V1__ImageExtent *e = ALLOC(call, Imgstore__V1__ImageExtent);
	if (!e)
		return NULL;
	imgstore__v1__image_extent__init(e);
	e->offset = x->offset;
	e->length = x->length;
	return e;
}

int ims_daemon_status_reply(ims_rpc_call *call, ims_repl_status *list, size_t n, ims_repl_unit unit,
			    ProtobufCMessage **resp)
{
	int r = -ENOMEM;
	if (unit == IMS_REPL_GROUP) {
		Imgstore__V1__GetGroupReplicationStatusResponse *m =
			ALLOC(call, Imgstore__V1__GetGroupReplicationStatusResponse);
		if (!m)
			goto out;
		imgstore__v1__get_group_replication_status_response__init(m);
		if (IMS_KIT_REPEATED(call, m, statuses, n, ims_daemon_status_item, list) < 0)
			goto out;
		*resp = &m->base;
	} else {
		Imgstore__V1__GetReplicationStatusResponse *m =
			ALLOC(call, Imgstore__V1__GetReplicationStatusResponse);
		if (!m)
			goto out;
		imgstore__v1__get_replication_status_response__init(m);
		if (IMS_KIT_REPEATED(call, m, statuses, n, ims_daemon_status_item, list) < 0)
			goto out;
		*resp = &m->base;
	}
	r = 0;
out:
	free(list);
	return r;
}

static int h_replication_status(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__GetReplicationStatusRequest *q = (const void *)req;
	ims_spec s;
	bool one = q->image && q->image->image && q->image->image[0];
	ims_repl_status *list = NULL;
	size_t n = 0;
	int r;
	if (one && (r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0)
		return r;
	if ((r = ims_repl_sched_status(&list, &n, d->repl, one ? s.pool : NULL,
				       one ? s.image : NULL)) < 0)
		return r;
	if (one &&
	    (r = ims_daemon_status_journal(&list, &n, d, s.pool, s.image, IMS_REPL_IMAGE)) < 0) {
		free(list);
		return r;
	}
	return ims_daemon_status_reply(call, list, n, IMS_REPL_IMAGE, resp);
}

typedef struct {
	ims_daemon *d;
	char pool[IMS_NAME_MAX + 1], name[IMS_NAME_MAX + 1];
	ims_repl_unit unit;
	char target[64];
} sync_work;

static int run_sync(ims_op *op, void *arg)
{
	sync_work *w = arg;
	ims_repl_result res;
	int r = w->unit == IMS_REPL_GROUP
			? ims_repl_group_sync_now(&res, w->d->repl, w->pool, w->name, w->target,
						  ims_kit_op_progress, op)
			: ims_repl_sync_now(&res, w->d->repl, w->pool, w->name, w->target,
					    ims_kit_op_progress, op);
	if (r == 0 && res.unchanged)
		ims_op_set_result(
			op, "'%s' on site '%s' already holds this state%s (unchanged since)",
			res.sealed, w->target, w->unit == IMS_REPL_GROUP ? " of every image" : "");
	else if (r == 0)
		ims_op_set_result(op, "sealed '%s' on site '%s'%s (%" PRIu64 " bytes shipped)",
				  res.sealed, w->target,
				  w->unit == IMS_REPL_GROUP ? " for every image" : "",
				  res.bytes_copied);
	return r;
}

int ims_daemon_submit_sync(ims_daemon *d, ims_rpc_call *call, const char *pool, const char *name,
			   ims_repl_unit unit, const char *asked, ProtobufCMessage **resp)
{
	char target[64], text[2 * IMS_NAME_MAX + 2];
	int r = ims_daemon_pair_target(target, sizeof(target), d, pool, name, unit, asked);
	if (r < 0)
		return r;
	sync_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->d = d;
	snprintf(w->pool, sizeof(w->pool), "%s", pool);
	snprintf(w->name, sizeof(w->name), "%s", name);
	w->unit = unit;
	snprintf(w->target, sizeof(w->target), "%s", target);
	snprintf(text, sizeof(text), "%s/%s", pool, name);
	return ims_kit_submit(d, call, "sync", text, run_sync, w, free, resp);
}

static int h_sync_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__SyncImageRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0)
		return r;
	return ims_daemon_submit_sync(d, call, s.pool, s.image, IMS_REPL_IMAGE, q->target_site,
				      resp);
}

/* The fields of FailoverRequest, FailbackRequest and ResyncRequest (the same in each). */
typedef struct {
	const Imgstore__V1__ImageSpec *image;
	const char *target_site;
	bool force;
	uint32_t wait_seconds;
	const char *from_site;
} failover_args;
#define FAILOVER_ARGS(q)                                                                           \
	((failover_args){(q)->image, (q)->target_site, (q)->force, (q)->wait_seconds,              \
			 (q)->from_site})

/* Failover, Failback, Resync: Operations (daemon/failover.c). */
static int submit_failover(ims_daemon *d, ims_rpc_call *call, const failover_args *q,
			   const char *kind, ims_op_fn fn, bool failback, ProtobufCMessage **resp)
{
	ims_spec s;
	int r;
	bool all = fn == ims_failover_run && !failback && q->from_site && q->from_site[0] &&
		   !(q->image && q->image->image && q->image->image[0]);
	if (all) {
		memset(&s, 0, sizeof(s));
		snprintf(s.pool, sizeof(s.pool), "%s",
			 q->image && q->image->pool && q->image->pool[0] ? q->image->pool
									 : d->pool);
		if ((r = ims_name_check(IMS_NAME_POOL, s.pool)) < 0)
			return r;
		if (strcmp(q->from_site, ims_site_name(d->site)) != 0 &&
		    !ims_config_peer(d->cfg, q->from_site))
			return ims_error_set(
				-ENOENT, "no site '%s': this is site '%s' and its peers are in %s",
				q->from_site, ims_site_name(d->site), d->cfg->path);
		fn = ims_failover_all_run;
	} else if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0) {
		return r;
	}
	if (failback && q->force)
		return ims_error_set(-EINVAL, "a failback is always planned: use `repl failover "
					      "--force` on the site to promote");
	/* failback and resync act on the pair this primary replicates */
	ims_failover_work *w;
	if ((r = ims_failover_work_new(
		     &w, d, IMS_REPL_IMAGE, s.pool, s.image, q->force, q->wait_seconds,
		     (fn == ims_failover_run || all) && !failback, q->target_site)) < 0)
		return r;
	if (all)
		snprintf(w->q.from, sizeof(w->q.from), "%s", q->from_site);
	char text[3 * IMS_NAME_MAX + 4];
	if (all)
		ims_failover_site_target(text, sizeof(text), s.pool, w->q.from);
	return ims_failover_submit(
		d, call, kind, all ? text : ims_spec_format(text, sizeof(text), &s), fn, w, resp);
}

static int h_failover(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
		      ProtobufCMessage **resp)
{
	const Imgstore__V1__FailoverRequest *q = (const void *)req;
	failover_args a = FAILOVER_ARGS(q);
	return submit_failover(APP(app), call, &a, "failover", ims_failover_run, false, resp);
}

static int h_failback(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
		      ProtobufCMessage **resp)
{
	const Imgstore__V1__FailbackRequest *q = (const void *)req;
	failover_args a = FAILOVER_ARGS(q);
	return submit_failover(APP(app), call, &a, "failback", ims_failover_run, true, resp);
}

static int h_resync(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
		    ProtobufCMessage **resp)
{
	const Imgstore__V1__ResyncRequest *q = (const void *)req;
	failover_args a = FAILOVER_ARGS(q);
	return submit_failover(APP(app), call, &a, "resync", ims_resync_run, false, resp);
}

int ims_daemon_verify_deadline(void *ctx, uint64_t done, uint64_t total)
{
	(void)done;
	(void)total;
	return ims_clock_mono_s() > *(const double *)ctx;
}

Imgstore__V1__VerifyImageResponse *ims_daemon_verify_msg(ims_rpc_call *call, const char *img,
							 const char *target,
							 const ims_repl_verify_result *v)
{
	char verdict[512];
	Imgstore__V1__VerifyImageResponse *m = ALLOC(call, Imgstore__V1__VerifyImageResponse);
	if (!m)
		return NULL;
	imgstore__v1__verify_image_response__init(m);
	if (v->equal)
		snprintf(verdict, sizeof(verdict),
			 "equal: %" PRIu64 " objects compared, %" PRIu64 " of them by reading",
			 v->objects, v->objects_fallback);
	else
		snprintf(verdict, sizeof(verdict),
			 "DIFFERENT: %zu extents differ, the first %" PRIu64
			 " bytes at offset %" PRIu64,
			 v->nmismatches, v->nmismatches ? v->mismatches[0].length : 0,
			 v->nmismatches ? v->mismatches[0].offset : 0);
	m->image = DUP(call, img);
	m->target = DUP(call, target);
	m->snapshot = DUP(call, v->snapshot);
	m->equal = v->equal;
	m->verdict = DUP(call, verdict);
	m->size_primary = v->size_primary;
	m->size_secondary = v->size_secondary;
	m->objects = v->objects;
	m->objects_fallback = v->objects_fallback;
	m->bytes_covered = v->bytes_covered;
	m->bytes_read = v->bytes_read;
	m->chunk_size = v->chunk_size;
	m->seconds = v->seconds;
	m->mismatch_count = v->nmismatches;
	size_t n = v->nmismatches < 1000 ? v->nmismatches : 1000;
	if (IMS_KIT_REPEATED(call, m, mismatches, n, extent_item, v->mismatches) < 0)
		return NULL;
	return m;
}

static int h_verify_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__VerifyImageRequest *q = (const void *)req;
	ims_repl_verify_opts o = IMS_REPL_VERIFY_OPTS_INIT;
	ims_repl_verify_result *v = NULL;
	ims_spec s;
	char target[64];
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = ims_daemon_pair_target(target, sizeof(target), d, s.pool, s.image, IMS_REPL_IMAGE,
					q->target_site)) < 0)
		return r;
	double until = ims_clock_mono_s() + IMS_DAEMON_VERIFY_BOUND_S;
	o.snap = q->snapshot;
	o.chunk_size = q->chunk_size;
	o.progress = ims_daemon_verify_deadline;
	o.progress_ctx = &until;
	r = ims_repl_sched_verify(&v, d->repl, s.pool, s.image, target, &o);
	if (r == -ECANCELED && ims_clock_mono_s() > until)
		return ims_error_set(
			-ETIMEDOUT,
			"verify of '%s/%s' did not finish within %d s (%s); let the "
			"daemon verify it in the background (repl enable --verify-every "
			"N) and read the verdict in repl status",
			s.pool, s.image, IMS_DAEMON_VERIFY_BOUND_S, ims_error_last());
	if (r < 0)
		return r;
	char img[2 * IMS_NAME_MAX + 2];
	snprintf(img, sizeof(img), "%s/%s", s.pool, s.image);
	Imgstore__V1__VerifyImageResponse *m = ims_daemon_verify_msg(call, img, target, v);
	r = -ENOMEM;
	if (!m)
		goto out;
	*resp = &m->base;
	r = 0;
out:
	ims_repl_verify_result_free(v);
	return r;
}

/* ---------------------------------------------------------------------------------------- */

static const ims_rpc_method methods[] = {
	M("ReplicationService", "EnableReplication", enable_replication_request, replication_status,
	  ADMIN, true, h_enable_replication),
	M("ReplicationService", "DisableReplication", disable_replication_request,
	  replication_status, ADMIN, true, h_disable_replication),
	M("ReplicationService", "GetReplicationStatus", get_replication_status_request,
	  get_replication_status_response, READER, false, h_replication_status),
	M("ReplicationService", "SyncImage", sync_image_request, operation, ADMIN, true,
	  h_sync_image),
	M("ReplicationService", "Failover", failover_request, operation, ADMIN, true, h_failover),
	M("ReplicationService", "Failback", failback_request, operation, ADMIN, true, h_failback),
	M("ReplicationService", "Resync", resync_request, operation, ADMIN, true, h_resync),
	M("ReplicationService", "VerifyImage", verify_image_request, verify_image_response, ADMIN,
	  true, h_verify_image, SLOW),
};

IMS_DAEMON_SERVICE(ims_replication_service, methods);
