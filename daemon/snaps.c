/* daemon/snaps.c: SnapshotService: snapshots of an image, sealed on sync-mode targets. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
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
#include "store/group.h"
#include "store/image.h"
#include "store/snap.h"
#include "store/transfer.h"
#include "replicator/digest.h"
#include "replicator/snapsched.h"
#include "daemon/daemon.h"
#include "daemon/kit.h"

/* ---------------------------------------------------------------------------------------- */
/* SnapshotService */

typedef struct {
	ims_daemon *d;
	ims_spec spec;
} rollback_work;

static int run_rollback(ims_op *op, void *arg)
{
	rollback_work *w = arg;
	return ims_snap_rollback(w->d->site, w->spec.pool, w->spec.image, w->spec.snap,
				 ims_kit_op_progress, op);
}

/* A host snapshots the copy it writes: not a secondary, which replication alone changes (a
 * snapshot there would be taken for one the primary sealed). Admins are not held to it. */
static int host_writable(ims_daemon *d, ims_rpc_call *call, const ims_spec *s)
{
	ims_repl_side side;
	int r;
	if (ims_rpc_call_role(call) >= IMS_ROLE_ADMIN)
		return 0;
	if ((r = ims_repl_side_get(&side, d->site, s->pool, s->image)) < 0)
		return r;
	if (side.secondary)
		return ims_error_set(-EROFS,
				     "'%s/%s' on site '%s' is a secondary (its primary: %s); hosts "
				     "snapshot it on the "
				     "primary's site, and replication brings the snapshot here",
				     s->pool, s->image, ims_site_name(d->site),
				     side.source[0] ? side.source : "unknown");
	return 0;
}

static int h_create_snapshot(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			     ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__CreateSnapshotRequest *q = (const void *)req;
	ims_spec s;
	ims_snap_info *snaps = NULL;
	size_t n = 0;
	int r;
	char sealed_on[256];
	if ((r = ims_kit_spec(&s, d, call, q->snapshot, true, true)) < 0 ||
	    (r = ims_snap_check_user_name(s.snap, "create")) < 0 ||
	    (r = host_writable(d, call, &s)) < 0 ||
	    (r = ims_snap_create(d->site, s.pool, s.image, s.snap)) < 0)
		return r;
	/* sync mode: the snapshot is sealed on the targets before this call succeeds */
	if ((r = ims_repl_seal_snapshot(sealed_on, sizeof(sealed_on), d->repl, s.pool, s.image,
					s.snap)) < 0)
		return ims_error_wrap(r,
				      "snapshot '%s' was taken on site '%s' but is not sealed on "
				      "its sync-mode targets",
				      s.snap, ims_site_name(d->site));
	if (sealed_on[0])
		ims_log_info("snapshot '%s/%s@%s' sealed on site(s) %s (sync mode)", s.pool,
			     s.image, s.snap, sealed_on);
	ims_digest_queue_push(d->digests, s.pool, s.image, s.snap, "manual");
	/* and its copies on the sync-mode targets, in their own logs (replicator/digest.h) */
	for (char *save = NULL, *t = strtok_r(sealed_on, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		ims_site *peer = NULL;
		if (ims_daemon_peer(d, t, &peer) == 0)
			ims_digest_queue_push_on(d->digests, peer, s.pool, s.image, s.snap,
						 "replica");
	}
	if ((r = ims_snap_list(&snaps, &n, d->site, s.pool, s.image)) < 0)
		return r;
	r = ims_error_set(-ENOENT, "snapshot '%s' vanished after its creation", s.snap);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(snaps[i].name, s.snap) != 0)
			continue;
		Imgstore__V1__SnapshotInfo *m = ALLOC(call, Imgstore__V1__SnapshotInfo);
		if (!m) {
			r = -ENOMEM;
			break;
		}
		imgstore__v1__snapshot_info__init(m);
		m->name = DUP(call, snaps[i].name);
		m->id = snaps[i].id;
		m->size = snaps[i].size;
		m->protected_ = snaps[i].is_protected;
		m->created_unix = snaps[i].timestamp;
		*resp = &m->base;
		r = 0;
	}
	ims_snap_list_free(snaps, n);
	return r;
}

static int h_list_snapshots(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			    ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ListSnapshotsRequest *q = (const void *)req;
	ims_spec s;
	ims_snap_info *snaps = NULL;
	size_t n = 0;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = ims_snap_list(&snaps, &n, d->site, s.pool, s.image)) < 0)
		return r;
	Imgstore__V1__ListSnapshotsResponse *m = ALLOC(call, Imgstore__V1__ListSnapshotsResponse);
	r = -ENOMEM;
	if (!m)
		goto out;
	imgstore__v1__list_snapshots_response__init(m);
	if (IMS_KIT_REPEATED(call, m, snapshots, n, ims_kit_snap_item, snaps) < 0)
		goto out;
	*resp = &m->base;
	r = 0;
out:
	ims_snap_list_free(snaps, n);
	return r;
}

static int h_rollback_snapshot(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			       ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__RollbackSnapshotRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->snapshot, true, true)) < 0 ||
	    (r = ims_snap_check_user_name(s.snap, "roll back to")) < 0)
		return r;
	if ((r = ims_daemon_require_image(d, s.pool, s.image)) < 0)
		return r;
	rollback_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->d = d;
	w->spec = s;
	char what[3 * IMS_NAME_MAX + 4];
	return ims_kit_submit(d, call, "rollback", ims_spec_format(what, sizeof(what), &s),
			      run_rollback, w, free, resp);
}

static int h_delete_snapshot(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			     ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__DeleteSnapshotRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->snapshot, true, true)) < 0 ||
	    (r = ims_snap_check_user_name(s.snap, "remove")) < 0 ||
	    (r = ims_snap_remove(d->site, s.pool, s.image, s.snap)) < 0)
		return r;
	return ims_kit_reply_empty(call, &imgstore__v1__delete_snapshot_response__descriptor, resp);
}

/* ---------------------------------------------------------------------------------------- */
/* snapshot schedules (replicator/snapsched.h) */

static Imgstore__V1__SnapshotSchedule *schedule_msg(ims_rpc_call *call, const ims_snapsched *s)
{
	Imgstore__V1__SnapshotSchedule *m = ALLOC(call, Imgstore__V1__SnapshotSchedule);
	char keep[96];
	if (!m)
		return NULL;
	imgstore__v1__snapshot_schedule__init(m);
	m->pool = DUP(call, s->pool);
	m->name = DUP(call, s->name);
	m->group = s->unit == IMS_REPL_GROUP;
	m->every_seconds = s->every_s;
	m->keep = DUP(call, ims_snapsched_keep_format(keep, sizeof(keep), &s->keep));
	m->last_unix_ms = s->last_ms;
	m->last_error = DUP(call, s->last_error);
	if (!m->pool || !m->name || !m->keep || !m->last_error)
		return NULL;
	return m;
}

static void *schedule_item(ims_rpc_call *call, const void *list, size_t i)
{
	return schedule_msg(call, &((const ims_snapsched *)list)[i]);
}

static int h_add_schedule(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__AddSnapshotScheduleRequest *q = (const void *)req;
	ims_spec s;
	ims_snapsched in, out;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0)
		return r;
	memset(&in, 0, sizeof(in));
	if ((r = ims_snapsched_keep_parse(&in.keep, q->keep)) < 0)
		return r;
	snprintf(in.pool, sizeof(in.pool), "%s", s.pool);
	snprintf(in.name, sizeof(in.name), "%s", s.image);
	in.unit = q->group ? IMS_REPL_GROUP : IMS_SNAPSCHED_UNIT_ANY;
	in.every_s = q->every_seconds;
	if ((r = ims_snapsched_add(&out, d->site, d->pool, &in)) < 0)
		return r;
	Imgstore__V1__SnapshotSchedule *m = schedule_msg(call, &out);
	if (!m)
		return -ENOMEM;
	*resp = &m->base;
	return 0;
}

static int h_list_schedules(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			    ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	ims_snapsched *list = NULL;
	size_t n = 0;
	int r;
	(void)req;
	if ((r = ims_snapsched_list(&list, &n, d->site, d->pool)) < 0)
		return r;
	Imgstore__V1__ListSnapshotSchedulesResponse *m =
		ALLOC(call, Imgstore__V1__ListSnapshotSchedulesResponse);
	r = -ENOMEM;
	if (!m)
		goto out;
	imgstore__v1__list_snapshot_schedules_response__init(m);
	if (IMS_KIT_REPEATED(call, m, schedules, n, schedule_item, list) < 0)
		goto out;
	*resp = &m->base;
	r = 0;
out:
	free(list);
	return r;
}

static int h_remove_schedule(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			     ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__RemoveSnapshotScheduleRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = ims_snapsched_remove(d->site, d->pool,
				      q->group ? IMS_REPL_GROUP : IMS_SNAPSCHED_UNIT_ANY, s.pool,
				      s.image)) < 0)
		return r;
	return ims_kit_reply_empty(
		call, &imgstore__v1__remove_snapshot_schedule_response__descriptor, resp);
}

/* ---------------------------------------------------------------------------------------- */
/* tamper evidence (replicator/digest.h) */

static void *change_item(ims_rpc_call *call, const void *list, size_t i)
{
	const ims_digest_change *c = &((const ims_digest_change *)list)[i];
	Imgstore__V1__SnapshotObjectChange *m = ALLOC(call, Imgstore__V1__SnapshotObjectChange);
	if (!m)
		return NULL;
	imgstore__v1__snapshot_object_change__init(m);
	m->object_number = c->objno;
	m->object = DUP(call, c->object);
	m->change = DUP(call, c->what);
	return m->object && m->change ? m : NULL;
}

static int h_verify_snapshot(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			     ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__VerifySnapshotRequest *q = (const void *)req;
	ims_digest_verify_result *v = NULL;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->snapshot, true, true)) < 0)
		return r;
	/* a digest still queued (a snapshot just taken) is waited for, 30 s at most */
	for (int i = 0; i < 300 && ims_digest_queue_pending(d->digests) > 0; i++)
		usleep(100 * 1000);
	/* POOL/GROUP@SNAP: each member's digest of the group snapshot */
	ims_group_info *gi = NULL;
	bool group = ims_image_exists(d->site, s.pool, s.image) == 0 &&
		     ims_group_info_get(&gi, d->site, s.pool, s.image) == 0;
	ims_group_info_free(gi);
	ims_error_clear();
	if (group)
		r = ims_digest_verify_group(&v, d->site, d->pool, s.pool, s.image, s.snap);
	else
		r = ims_digest_verify(&v, d->site, d->pool, s.pool, s.image, s.snap);
	if (r < 0)
		return r;
	Imgstore__V1__VerifySnapshotResponse *m = ALLOC(call, Imgstore__V1__VerifySnapshotResponse);
	r = -ENOMEM;
	if (!m)
		goto out;
	imgstore__v1__verify_snapshot_response__init(m);
	m->recorded = v->recorded;
	m->intact = v->intact;
	m->digest_seq = v->entry.seq;
	m->digest_hash = DUP(call, v->entry.hash);
	m->digested_unix_ms = v->entry.at_ms;
	m->digested_for = DUP(call, v->entry.why);
	m->snapshot_id_recorded = v->entry.snap_id;
	m->snapshot_id_now = v->snap_id_now;
	m->objects_recorded = v->entry.nobjects;
	m->objects_now = v->objects_now;
	m->chain_intact = v->chain_ok;
	m->chain_error = DUP(call, v->chain_error);
	if (!m->digest_hash || !m->digested_for || !m->chain_error ||
	    IMS_KIT_REPEATED(call, m, changes, v->nchanges, change_item, v->changes) < 0)
		goto out;
	if (!v->recorded)
		ims_log_info("snap verify '%s/%s@%s': no digest recorded", s.pool, s.image, s.snap);
	else if (!v->intact || !v->chain_ok)
		ims_log_warning("snap verify '%s/%s@%s': %zu object(s) differ from digest %" PRIu64
				"%s%s",
				s.pool, s.image, s.snap, v->nchanges, v->entry.seq,
				v->chain_ok ? "" : "; digest log: ", v->chain_error);
	*resp = &m->base;
	r = 0;
out:
	ims_digest_verify_result_free(v);
	return r;
}

/* ---------------------------------------------------------------------------------------- */

static const ims_rpc_method methods[] = {
	M("SnapshotService", "CreateSnapshot", create_snapshot_request, snapshot_info, HOST, true,
	  h_create_snapshot, SLOW),
	M("SnapshotService", "ListSnapshots", list_snapshots_request, list_snapshots_response,
	  READER, false, h_list_snapshots),
	M("SnapshotService", "RollbackSnapshot", rollback_snapshot_request, operation, ADMIN, true,
	  h_rollback_snapshot),
	M("SnapshotService", "DeleteSnapshot", delete_snapshot_request, delete_snapshot_response,
	  ADMIN, true, h_delete_snapshot),
	M("SnapshotService", "AddSnapshotSchedule", add_snapshot_schedule_request,
	  snapshot_schedule, ADMIN, true, h_add_schedule),
	M("SnapshotService", "ListSnapshotSchedules", list_snapshot_schedules_request,
	  list_snapshot_schedules_response, READER, false, h_list_schedules),
	M("SnapshotService", "RemoveSnapshotSchedule", remove_snapshot_schedule_request,
	  remove_snapshot_schedule_response, ADMIN, true, h_remove_schedule),
	M("SnapshotService", "VerifySnapshot", verify_snapshot_request, verify_snapshot_response,
	  ADMIN, false, h_verify_snapshot, SLOW),
};

IMS_DAEMON_SERVICE(ims_snapshot_service, methods);
