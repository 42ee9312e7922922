/*
 * daemon/groups.c: GroupService. Names are checked by store/; a group's pool defaults to the
 * site's. AddImages and RemoveImages take all the images or none. A replicated group cannot
 * be removed, and an image replicated on its own cannot join a replicated group: a group
 * replicates its images as one unit (the scheduler refuses the converse).
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/spec.h"
#include "daemon/daemon.h"
#include "daemon/kit.h"
#include "daemon/failover.h"
#include "imgstore/v1/group.pb-c.h"
#include "imgstore/v1/replication.pb-c.h"
#include "replicator/digest.h"
#include "replicator/group.h"
#include "store/group.h"
#include "store/snap.h"

typedef struct {
	char pool[IMS_NAME_MAX + 1];
	char name[IMS_NAME_MAX + 1];
	char snap[IMS_NAME_MAX + 1];
} group_spec;

/* The group of a request; the pool defaults to the site's. Sets the audit target. */
static int get_group(ims_daemon *d, ims_rpc_call *call, const Imgstore__V1__GroupSpec *in,
		     group_spec *out, bool snap_required)
{
	char text[3 * IMS_NAME_MAX + 4];
	int r;
	if (!in || !in->group || !in->group[0])
		return ims_error_set(-EINVAL, "the request names no group");
	const char *pool = in->pool && in->pool[0] ? in->pool : d->pool;
	const char *snap = in->snapshot ? in->snapshot : "";
	snprintf(text, sizeof(text), "%s/%s%s%s", pool, in->group, snap[0] ? "@" : "", snap);
	ims_rpc_call_set_target(call, text);
	if (strlen(pool) > IMS_NAME_MAX || strlen(in->group) > IMS_NAME_MAX ||
	    strlen(snap) > IMS_NAME_MAX)
		return ims_error_set(-EINVAL, "a name in '%s' is too long", text);
	if ((r = ims_name_check(IMS_NAME_POOL, pool)) < 0 ||
	    (r = ims_name_check(IMS_NAME_IMAGE, in->group)) < 0)
		return r;
	if (snap_required && !snap[0])
		return ims_error_set(
			-EINVAL, "'%s' names no group snapshot: expected POOL/GROUP@SNAP", text);
	if (snap[0] && (r = ims_name_check(IMS_NAME_SNAP, snap)) < 0)
		return r;
	snprintf(out->pool, sizeof(out->pool), "%s", pool);
	snprintf(out->name, sizeof(out->name), "%s", in->group);
	snprintf(out->snap, sizeof(out->snap), "%s", snap);
	return 0;
}

static void *member_item(ims_rpc_call *call, const void *members, size_t i)
{
	const ims_group_member *g = &((const ims_group_member *)members)[i];
	Imgstore__V1__ImageSpec *s = ALLOC(call, Imgstore__V1__ImageSpec);
	if (!s)
		return NULL;
	imgstore__v1__image_spec__init(s);
	s->pool = DUP(call, g->pool);
	s->image = DUP(call, g->image);
	return s;
}

static void *group_snap_item(ims_rpc_call *call, const void *snaps, size_t i)
{
	const ims_group_snap *g = &((const ims_group_snap *)snaps)[i];
	Imgstore__V1__GroupSnapshot *s = ALLOC(call, Imgstore__V1__GroupSnapshot);
	if (!s)
		return NULL;
	imgstore__v1__group_snapshot__init(s);
	s->name = DUP(call, g->name);
	s->complete = g->complete;
	return s;
}

static int build_group(ims_daemon *d, ims_rpc_call *call, const ims_group_info *g,
		       Imgstore__V1__Group **out)
{
	ims_repl_status *st = NULL;
	size_t nst = 0;
	Imgstore__V1__Group *m = ALLOC(call, Imgstore__V1__Group);
	if (!m)
		return -ENOMEM;
	imgstore__v1__group__init(m);
	m->pool = DUP(call, g->pool);
	m->name = DUP(call, g->name);
	if (IMS_KIT_REPEATED(call, m, images, g->nmembers, member_item, g->members) < 0 ||
	    IMS_KIT_REPEATED(call, m, snapshots, g->nsnaps, group_snap_item, g->snaps) < 0)
		return -ENOMEM;
	int r = 0;
	if (ims_repl_group_status(&st, &nst, d->repl, g->pool, g->name) == 0)
		r = IMS_KIT_REPEATED(call, m, replication, nst, ims_daemon_status_item, st);
	free(st);
	*out = m;
	return r;
}

static int reply_group(ims_daemon *d, ims_rpc_call *call, const char *pool, const char *name,
		       ProtobufCMessage **resp)
{
	ims_group_info *g = NULL;
	Imgstore__V1__Group *m = NULL;
	int r = ims_group_info_get(&g, d->site, pool, name);
	if (r == 0 && (r = build_group(d, call, g, &m)) == 0)
		*resp = &m->base;
	ims_group_info_free(g);
	return r;
}

/* CreateGroup and GetGroup: the group @p in names, made first by @p make (NULL: taken as it
 * is), answered with its Group message. */
static int answer_group(ims_daemon *d, ims_rpc_call *call, const Imgstore__V1__GroupSpec *in,
			int (*make)(ims_site *site, const char *pool, const char *name),
			ProtobufCMessage **resp)
{
	group_spec g;
	int r;
	if ((r = get_group(d, call, in, &g, false)) < 0 ||
	    (make && (r = make(d->site, g.pool, g.name)) < 0))
		return r;
	return reply_group(d, call, g.pool, g.name, resp);
}

static int ims_h_create_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			      ProtobufCMessage **resp)
{
	const Imgstore__V1__CreateGroupRequest *q = (const void *)req;
	return answer_group(APP(app), call, q->group, ims_group_create, resp);
}

static int ims_h_delete_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			      ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__DeleteGroupRequest *q = (const void *)req;
	group_spec g;
	int r;
	if ((r = get_group(d, call, q->group, &g, false)) < 0)
		return r;
	if (ims_repl_sched_has(d->repl, g.pool, g.name, IMS_REPL_GROUP))
		return ims_error_set(-EBUSY,
				     "group '%s/%s' is replicated; disable its replication first",
				     g.pool, g.name);
	if ((r = ims_group_remove(d->site, g.pool, g.name, q->force)) < 0)
		return r;
	return ims_kit_reply_empty(call, &imgstore__v1__delete_group_response__descriptor, resp);
}

/* The images of AddImagesRequest and RemoveImagesRequest (the same fields). */
typedef struct {
	size_t n_images;
	Imgstore__V1__ImageSpec *const *images;
} images_args;
#define IMAGES_ARGS(q) ((images_args){(q)->n_images, (q)->images})

/* The images of a request, checked; their pool defaults to the site's. */
static int get_images(ims_daemon *d, const images_args *q, ims_spec **out)
{
	char text[3 * IMS_NAME_MAX + 4];
	int r;
	if (q->n_images == 0)
		return ims_error_set(-EINVAL, "the request names no image");
	ims_spec *v = calloc(q->n_images, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < q->n_images; i++) {
		const Imgstore__V1__ImageSpec *in = q->images[i];
		if (!in || !in->image || !in->image[0]) {
			free(v);
			return ims_error_set(-EINVAL, "the request names an empty image");
		}
		snprintf(text, sizeof(text), "%s/%s", in->pool && in->pool[0] ? in->pool : d->pool,
			 in->image);
		if ((r = ims_spec_parse(&v[i], text, NULL, false, false)) < 0) {
			free(v);
			return r;
		}
	}
	*out = v;
	return 0;
}

typedef struct {
	ims_daemon *d;
	const group_spec *g;
	bool replicated;
} add_check;

/* An image replicated on its own cannot join a replicated group: the group is one unit. */
static int may_join(void *ctx, const ims_spec *image)
{
	add_check *c = ctx;
	if (c->replicated &&
	    ims_repl_sched_has(c->d->repl, image->pool, image->image, IMS_REPL_IMAGE))
		return ims_error_set(-EBUSY,
				     "image '%s/%s' is replicated on its own and group '%s/%s' as "
				     "one unit: disable "
				     "the image's replication first",
				     image->pool, image->image, c->g->pool, c->g->name);
	return 0;
}

static int ims_h_group_add_images(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				  ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__AddImagesRequest *q = (const void *)req;
	images_args ia = IMAGES_ARGS(q);
	ims_spec *v = NULL;
	group_spec g;
	int r;
	if ((r = get_group(d, call, q->group, &g, false)) < 0 || (r = get_images(d, &ia, &v)) < 0)
		return r;
	add_check c = {d, &g, ims_repl_sched_has(d->repl, g.pool, g.name, IMS_REPL_GROUP)};
	if ((r = ims_group_images_add(d->site, g.pool, g.name, v, q->n_images, may_join, &c)) == 0)
		r = reply_group(d, call, g.pool, g.name, resp);
	free(v);
	return r;
}

static int ims_h_group_remove_images(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				     ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__RemoveImagesRequest *q = (const void *)req;
	images_args ia = IMAGES_ARGS(q);
	ims_spec *v = NULL;
	group_spec g;
	int r;
	if ((r = get_group(d, call, q->group, &g, false)) < 0 || (r = get_images(d, &ia, &v)) < 0)
		return r;
	if ((r = ims_group_images_remove(d->site, g.pool, g.name, v, q->n_images)) == 0)
		r = reply_group(d, call, g.pool, g.name, resp);
	free(v);
	return r;
}

static int ims_h_list_groups(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			     ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ListGroupsRequest *q = (const void *)req;
	const char *pool = q->pool && q->pool[0] ? q->pool : d->pool;
	char **names = NULL;
	size_t n = 0;
	int r;
	ims_rpc_call_set_target(call, pool);
	if ((r = ims_group_list(&names, &n, d->site, pool)) < 0)
		return r;
	Imgstore__V1__ListGroupsResponse *m = ALLOC(call, Imgstore__V1__ListGroupsResponse);
	r = -ENOMEM;
	if (!m)
		goto out;
	imgstore__v1__list_groups_response__init(m);
	if (n && !(m->groups = ims_rpc_call_alloc(call, n * sizeof(*m->groups))))
		goto out;
	for (size_t i = 0; i < n; i++) {
		ims_group_info *g = NULL;
		if (ims_group_info_get(&g, d->site, pool, names[i]) < 0)
			continue; /* removed meanwhile */
		r = build_group(d, call, g, &m->groups[m->n_groups]);
		ims_group_info_free(g);
		if (r < 0)
			goto out;
		m->n_groups++;
	}
	ims_error_clear();
	*resp = &m->base;
	r = 0;
out:
	ims_group_list_free(names, n);
	return r;
}

static int ims_h_get_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			   ProtobufCMessage **resp)
{
	const Imgstore__V1__GetGroupRequest *q = (const void *)req;
	return answer_group(APP(app), call, q->group, NULL, resp);
}

static int ims_h_create_group_snapshot(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				       ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__CreateGroupSnapshotRequest *q = (const void *)req;
	group_spec g;
	int r;
	if ((r = get_group(d, call, q->group, &g, true)) < 0)
		return r;
	if ((r = ims_snap_check_user_name(g.snap, "create")) < 0 ||
	    (r = ims_group_snap_create(d->site, g.pool, g.name, g.snap)) < 0)
		return r;
	/* a digest per member (replicator/digest.h), queued */
	ims_digest_queue_push_group(d->digests, d->site, g.pool, g.name, g.snap, "manual");
	Imgstore__V1__GroupSnapshot *m = ALLOC(call, Imgstore__V1__GroupSnapshot);
	if (!m)
		return -ENOMEM;
	imgstore__v1__group_snapshot__init(m);
	m->name = DUP(call, g.snap);
	m->complete = true;
	*resp = &m->base;
	return 0;
}

static int ims_h_list_group_snapshots(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				      ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ListGroupSnapshotsRequest *q = (const void *)req;
	ims_group_info *gi = NULL;
	Imgstore__V1__Group *grp = NULL;
	group_spec g;
	int r;
	if ((r = get_group(d, call, q->group, &g, false)) < 0 ||
	    (r = ims_group_info_get(&gi, d->site, g.pool, g.name)) < 0)
		return r;
	r = build_group(d, call, gi, &grp);
	ims_group_info_free(gi);
	if (r < 0)
		return r;
	Imgstore__V1__ListGroupSnapshotsResponse *m =
		ALLOC(call, Imgstore__V1__ListGroupSnapshotsResponse);
	if (!m)
		return -ENOMEM;
	imgstore__v1__list_group_snapshots_response__init(m);
	m->snapshots = grp->snapshots;
	m->n_snapshots = grp->n_snapshots;
	*resp = &m->base;
	return 0;
}

static int ims_h_delete_group_snapshot(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				       ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__DeleteGroupSnapshotRequest *q = (const void *)req;
	group_spec g;
	int r;
	if ((r = get_group(d, call, q->group, &g, true)) < 0 ||
	    (r = ims_snap_check_user_name(g.snap, "remove")) < 0 ||
	    (r = ims_group_snap_remove(d->site, g.pool, g.name, g.snap)) < 0)
		return r;
	return ims_kit_reply_empty(call, &imgstore__v1__delete_group_snapshot_response__descriptor,
				   resp);
}

/* ---- replication ---- */

static int ims_h_enable_group_replication(void *app, ims_rpc_call *call,
					  const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__EnableGroupReplicationRequest *q = (const void *)req;
	ims_repl_status st;
	ims_repl_mode mode;
	group_spec g;
	int r;
	if ((r = get_group(d, call, q->group, &g, false)) < 0 ||
	    (r = ims_repl_mode_parse(&mode, q->mode)) < 0)
		return r;
	uint32_t rpo = q->rpo_seconds ? q->rpo_seconds : (uint32_t)d->cfg->defaults.rpo;
	if ((r = ims_repl_group_enable(&st, d->repl, g.pool, g.name, q->target_site, mode, rpo)) <
	    0)
		return r;
	return ims_daemon_status_one(call, &st, resp);
}

static int ims_h_disable_group_replication(void *app, ims_rpc_call *call,
					   const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__DisableGroupReplicationRequest *q = (const void *)req;
	ims_repl_status st;
	group_spec g;
	char target[64];
	int r;
	if ((r = get_group(d, call, q->group, &g, false)) < 0 ||
	    (r = ims_daemon_pair_target(target, sizeof(target), d, g.pool, g.name, IMS_REPL_GROUP,
					q->target_site)) < 0 ||
	    (r = ims_repl_group_disable(&st, d->repl, g.pool, g.name, target)) < 0)
		return r;
	snprintf(st.state, sizeof(st.state), "disabled");
	return ims_daemon_status_one(call, &st, resp);
}

static int ims_h_sync_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			    ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__SyncGroupRequest *q = (const void *)req;
	group_spec g;
	int r;
	if ((r = get_group(d, call, q->group, &g, false)) < 0)
		return r;
	return ims_daemon_submit_sync(d, call, g.pool, g.name, IMS_REPL_GROUP, q->target_site,
				      resp);
}

/* The fields of FailoverGroupRequest and ResyncGroupRequest (the same in each). */
typedef struct {
	const Imgstore__V1__GroupSpec *group;
	const char *target_site;
	bool force;
	uint32_t wait_seconds;
} group_failover_args;
#define GROUP_FAILOVER_ARGS(q)                                                                     \
	((group_failover_args){(q)->group, (q)->target_site, (q)->force, (q)->wait_seconds})

/* FailoverGroup and ResyncGroup: Operations (daemon/failover.c). */
static int submit_group_failover(ims_daemon *d, ims_rpc_call *call, const group_failover_args *q,
				 const char *kind, ims_op_fn fn, ProtobufCMessage **resp)
{
	group_spec g;
	char text[2 * IMS_NAME_MAX + 2];
	int r;
	if ((r = get_group(d, call, q->group, &g, false)) < 0)
		return r;
	ims_failover_work *w;
	if ((r = ims_failover_work_new(&w, d, IMS_REPL_GROUP, g.pool, g.name, q->force,
				       q->wait_seconds, fn == ims_failover_run, q->target_site)) <
	    0)
		return r;
	snprintf(text, sizeof(text), "%s/%s", g.pool, g.name);
	return ims_failover_submit(d, call, kind, text, fn, w, resp);
}

static int ims_h_failover_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				ProtobufCMessage **resp)
{
	const Imgstore__V1__FailoverGroupRequest *q = (const void *)req;
	group_failover_args a = GROUP_FAILOVER_ARGS(q);
	return submit_group_failover(APP(app), call, &a, "failover", ims_failover_run, resp);
}

static int ims_h_resync_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			      ProtobufCMessage **resp)
{
	const Imgstore__V1__ResyncGroupRequest *q = (const void *)req;
	group_failover_args a = GROUP_FAILOVER_ARGS(q);
	return submit_group_failover(APP(app), call, &a, "resync", ims_resync_run, resp);
}

static int ims_h_group_replication_status(void *app, ims_rpc_call *call,
					  const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__GetGroupReplicationStatusRequest *q = (const void *)req;
	ims_repl_status *list = NULL;
	group_spec g;
	size_t n = 0;
	int r;
	if ((r = get_group(d, call, q->group, &g, false)) < 0 ||
	    (r = ims_repl_group_status(&list, &n, d->repl, g.pool, g.name)) < 0)
		return r;
	if ((r = ims_daemon_status_journal(&list, &n, d, g.pool, g.name, IMS_REPL_GROUP)) < 0) {
		free(list);
		return r;
	}
	return ims_daemon_status_reply(call, list, n, IMS_REPL_GROUP, resp);
}

static int ims_h_verify_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			      ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__VerifyGroupRequest *q = (const void *)req;
	ims_repl_verify_opts o = IMS_REPL_VERIFY_OPTS_INIT;
	ims_repl_group_verify_result v;
	group_spec g;
	char target[64], text[2 * IMS_NAME_MAX + 2];
	int r;
	if ((r = get_group(d, call, q->group, &g, false)) < 0 ||
	    (r = ims_daemon_pair_target(target, sizeof(target), d, g.pool, g.name, IMS_REPL_GROUP,
					q->target_site)) < 0)
		return r;
	double until = ims_clock_mono_s() + IMS_DAEMON_VERIFY_BOUND_S;
	o.chunk_size = q->chunk_size;
	o.progress = ims_daemon_verify_deadline;
	o.progress_ctx = &until;
	r = ims_repl_group_verify_now(&v, d->repl, g.pool, g.name, target, &o);
	if (r == -ECANCELED && ims_clock_mono_s() > until)
		return ims_error_set(-ETIMEDOUT,
				     "verify of group '%s/%s' did not finish within %d s (%s)",
				     g.pool, g.name, IMS_DAEMON_VERIFY_BOUND_S, ims_error_last());
	if (r < 0)
		return r;
	Imgstore__V1__VerifyGroupResponse *m = ALLOC(call, Imgstore__V1__VerifyGroupResponse);
	r = -ENOMEM;
	if (!m)
		goto out;
	imgstore__v1__verify_group_response__init(m);
	if (v.n && !(m->images = ims_rpc_call_alloc(call, v.n * sizeof(*m->images))))
		goto out;
	snprintf(text, sizeof(text), "%s/%s", g.pool, g.name);
	m->group = ims_rpc_call_strdup(call, text);
	m->target = ims_rpc_call_strdup(call, target);
	m->cut = ims_rpc_call_strdup(call, v.cut);
	m->equal = v.equal;
	for (size_t k = 0; k < v.n; k++)
		if (!(m->images[m->n_images++] =
			      ims_daemon_verify_msg(call, v.images[k], target, v.members[k])))
			goto out;
	*resp = &m->base;
	r = 0;
out:
	ims_repl_group_verify_result_free(&v);
	return r;
}

/* ---------------------------------------------------------------------------------------- */

static const ims_rpc_method methods[] = {
	M("GroupService", "CreateGroup", create_group_request, group, ADMIN, true,
	  ims_h_create_group),
	M("GroupService", "DeleteGroup", delete_group_request, delete_group_response, ADMIN, true,
	  ims_h_delete_group),
	M("GroupService", "AddImages", add_images_request, group, ADMIN, true,
	  ims_h_group_add_images),
	M("GroupService", "RemoveImages", remove_images_request, group, ADMIN, true,
	  ims_h_group_remove_images),
	M("GroupService", "ListGroups", list_groups_request, list_groups_response, READER, false,
	  ims_h_list_groups),
	M("GroupService", "GetGroup", get_group_request, group, READER, false, ims_h_get_group),
	M("GroupService", "CreateGroupSnapshot", create_group_snapshot_request, group_snapshot,
	  ADMIN, true, ims_h_create_group_snapshot),
	M("GroupService", "ListGroupSnapshots", list_group_snapshots_request,
	  list_group_snapshots_response, READER, false, ims_h_list_group_snapshots),
	M("GroupService", "DeleteGroupSnapshot", delete_group_snapshot_request,
	  delete_group_snapshot_response, ADMIN, true, ims_h_delete_group_snapshot),
	M("GroupService", "EnableGroupReplication", enable_group_replication_request,
	  replication_status, ADMIN, true, ims_h_enable_group_replication),
	M("GroupService", "DisableGroupReplication", disable_group_replication_request,
	  replication_status, ADMIN, true, ims_h_disable_group_replication),
	M("GroupService", "SyncGroup", sync_group_request, operation, ADMIN, true,
	  ims_h_sync_group),
	M("GroupService", "GetGroupReplicationStatus", get_group_replication_status_request,
	  get_group_replication_status_response, READER, false, ims_h_group_replication_status),
	M("GroupService", "FailoverGroup", failover_group_request, operation, ADMIN, true,
	  ims_h_failover_group),
	M("GroupService", "ResyncGroup", resync_group_request, operation, ADMIN, true,
	  ims_h_resync_group),
	M("GroupService", "VerifyGroup", verify_group_request, verify_group_response, ADMIN, true,
	  ims_h_verify_group, SLOW),
};

IMS_DAEMON_SERVICE(ims_group_service, methods);
