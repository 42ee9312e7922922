/*
 * cli/cmd_group.c: consistency groups (GroupService). A group holds the disks of one VM; a
 * group snapshot takes all of them at one point, and a replicated group is replicated and
 * synced and failed over as one unit: `group repl
 * enable|disable|sync|status|verify|failover|resync`.
 *
 * `group rm POOL/GROUP IMAGE...` takes images out of the group; `group rm POOL/GROUP` alone
 * removes the group (refused while it has images, unless --force: they stay, outside any
 * group).
 */
#include "cli/cli.h"
#include "common/units.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "imgstore/v1/group.pb-c.h"
#include "imgstore/v1/replication.pb-c.h"

#define GROUP_SVC     "imgstore.v1.GroupService/"
#define GROUP_SERVICE (&imgstore__v1__group_service__descriptor)

static const char *const modes[] = {"async", "sync", NULL};

static const char *members_col(char *buf, size_t len, const ProtobufCMessage *row)
{
	const Imgstore__V1__Group *g = (const Imgstore__V1__Group *)row;
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < g->n_images && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s/%s", i ? "," : "", g->images[i]->pool,
				      g->images[i]->image);
	return g->n_images ? buf : "-";
}

static const char *snaps_col(char *buf, size_t len, const ProtobufCMessage *row)
{
	snprintf(buf, len, "%zu", ((const Imgstore__V1__Group *)row)->n_snapshots);
	return buf;
}

static const char *repl_col(char *buf, size_t len, const ProtobufCMessage *row)
{
	const Imgstore__V1__Group *g = (const Imgstore__V1__Group *)row;
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < g->n_replication && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "",
				      g->replication[i]->target);
	return g->n_replication ? buf : "-";
}

static const ims_cli_column group_columns[] = {
	{"POOL", "pool", NULL},
	{"NAME", "name", NULL},
	{"IMAGES", NULL, members_col},
	{"SNAPSHOTS", NULL, snaps_col},
	{"REPLICATED_TO", NULL, repl_col},
	{NULL, NULL, NULL},
};

/* A Group for humans: its images, snapshots and replication, one per line. */
static void print_group(ims_cli *cli, const ProtobufCMessage *m)
{
	const Imgstore__V1__Group *g = (const Imgstore__V1__Group *)m;

	if (cli->format == IMS_CLI_FORMAT_JSON) {
		ims_cli_print_message(cli, m);
		return;
	}
	fprintf(cli->out, "group:     %s/%s\n", g->pool, g->name);
	fprintf(cli->out, "images:    %zu\n", g->n_images);
	for (size_t i = 0; i < g->n_images; i++)
		fprintf(cli->out, "  %s/%s\n", g->images[i]->pool, g->images[i]->image);
	fprintf(cli->out, "snapshots: %zu\n", g->n_snapshots);
	for (size_t i = 0; i < g->n_snapshots; i++)
		fprintf(cli->out, "  %s%s\n", g->snapshots[i]->name,
			g->snapshots[i]->complete ? "" : " (incomplete)");
	for (size_t i = 0; i < g->n_replication; i++) {
		Imgstore__V1__ReplicationStatus *s = g->replication[i];
		fprintf(cli->out, "replicated to %s: %s, RPO %us, lag %.1fs, last sealed %s%s%s\n",
			s->target, s->state, s->rpo_seconds, s->lag_seconds,
			s->last_sealed_snapshot[0] ? s->last_sealed_snapshot : "-",
			s->error[0] ? ", error: " : "", s->error);
	}
}

/* add and rm IMAGE...: the images after the group, all or none (AddImagesRequest and
 * RemoveImagesRequest have the same fields: @p remove says which is sent). */
static int group_images(ims_cli *cli, const ims_cli_args *a, bool remove)
{
	Imgstore__V1__AddImagesRequest add = IMGSTORE__V1__ADD_IMAGES_REQUEST__INIT;
	Imgstore__V1__RemoveImagesRequest rm = IMGSTORE__V1__REMOVE_IMAGES_REQUEST__INIT;
	Imgstore__V1__GroupSpec gs;
	Imgstore__V1__ImageSpec ms[IMS_CLI_MAX_POS], *mp[IMS_CLI_MAX_POS];
	static ims_spec specs[IMS_CLI_MAX_POS];
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_group(cli, &spec, &gs, a->pos[0], false)))
		return r;
	for (unsigned i = 1; i < a->npos; i++) {
		if ((r = ims_cli_arg_image(cli, &specs[i], &ms[i], a->pos[i], false, false)))
			return r;
		mp[i - 1] = &ms[i];
	}
	if (remove) {
		rm.group = &gs;
		rm.images = mp;
		rm.n_images = a->npos - 1;
		return ims_cli_call_print(cli, GROUP_SVC "RemoveImages", &rm,
					  &imgstore__v1__group__descriptor, print_group);
	}
	add.group = &gs;
	add.images = mp;
	add.n_images = a->npos - 1;
	return ims_cli_call_print(cli, GROUP_SVC "AddImages", &add,
				  &imgstore__v1__group__descriptor, print_group);
}

static int group_add(ims_cli *cli, const ims_cli_args *a)
{
	return group_images(cli, a, false);
}

static const ims_cli_opt rm_opts[] = {
	{"force", NULL, "remove a group that still has images (they stay, outside any group)"},
	{NULL, NULL, NULL},
};

/* What `group rm` and `group snap --rm` removed: {"removed": NAME} built by json-c (a name may
 * hold quotes or backslashes), or a line for humans. */
static void print_removed(ims_cli *cli, const char *what, const char *name)
{
	if (cli->format == IMS_CLI_FORMAT_JSON) {
		json_object *o = json_object_new_object();
		if (o && json_object_object_add(o, "removed", json_object_new_string(name)) == 0)
			ims_cli_print_json(cli, o);
		else
			json_object_put(o);
		return;
	}
	char line[1024];
	snprintf(line, sizeof(line), "removed %s %s", what, name);
	ims_cli_print_line(cli, line);
}

/* Call @p method, whose reply (@p resp_desc) is empty, and say that @p what @p spec is
 * removed. */
static int call_removed(ims_cli *cli, const char *method, const void *req,
			const ProtobufCMessageDescriptor *resp_desc, const char *what,
			const ims_spec *spec)
{
	ProtobufCMessage *resp = NULL;
	char name[800];
	int r;

	if ((r = ims_cli_call(cli, method, req, resp_desc, &resp)))
		return r;
	print_removed(cli, what, ims_spec_format(name, sizeof(name), spec));
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}

static int group_rm(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__DeleteGroupRequest req = IMGSTORE__V1__DELETE_GROUP_REQUEST__INIT;
	Imgstore__V1__GroupSpec gs;
	ims_spec spec;
	int r;

	if (a->npos > 1) {
		if (ims_cli_opt_flag(cli, a, "force"))
			return ims_cli_usage(
				cli, "--force applies to removing the group, not its images");
		return group_images(cli, a, true);
	}
	if ((r = ims_cli_arg_group(cli, &spec, &gs, a->pos[0], false)))
		return r;
	req.group = &gs;
	req.force = ims_cli_opt_flag(cli, a, "force");
	return call_removed(cli, GROUP_SVC "DeleteGroup", &req,
			    &imgstore__v1__delete_group_response__descriptor, "group", &spec);
}

static const ims_cli_opt snap_opts[] = {
	{"rm", NULL, "remove the group snapshot instead"},
	{NULL, NULL, NULL},
};

static int group_snap(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__CreateGroupSnapshotRequest req =
		IMGSTORE__V1__CREATE_GROUP_SNAPSHOT_REQUEST__INIT;
	Imgstore__V1__GroupSpec gs;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_group(cli, &spec, &gs, a->pos[0], true)))
		return r;
	req.group = &gs;
	if (ims_cli_opt_flag(cli, a, "rm")) {
		Imgstore__V1__DeleteGroupSnapshotRequest del =
			IMGSTORE__V1__DELETE_GROUP_SNAPSHOT_REQUEST__INIT;
		del.group = &gs;
		return call_removed(cli, GROUP_SVC "DeleteGroupSnapshot", &del,
				    &imgstore__v1__delete_group_snapshot_response__descriptor,
				    "group snapshot", &spec);
	}
	Imgstore__V1__GroupSnapshot *s = NULL;
	if ((r = ims_cli_call(cli, GROUP_SVC "CreateGroupSnapshot", &req,
			      &imgstore__v1__group_snapshot__descriptor, &s)))
		return r;
	if (cli->format == IMS_CLI_FORMAT_JSON)
		ims_cli_print_message(cli, &s->base);
	else
		fprintf(cli->out, "%s/%s@%s\n", spec.pool, spec.image, s->name);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	return 0;
}

/* ---- replication of a group as one unit ---- */

static const ims_cli_opt enable_opts[] = {
	{"to", "SITE", "the site that keeps the copy (required)"},
	{"mode", "async|sync", "async: a cut every RPO (default); sync: RPO 0 at group repl sync"},
	{"rpo", "DURATION", "most writes the copy may lag behind (default: the daemon's)"},
	{NULL, NULL, NULL},
};

static int group_repl_enable(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__EnableGroupReplicationRequest req =
		IMGSTORE__V1__ENABLE_GROUP_REPLICATION_REQUEST__INIT;
	Imgstore__V1__GroupSpec gs;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_group(cli, &spec, &gs, a->pos[0], false)) ||
	    (r = ims_cli_opt_word(cli, &req.target_site, a, "to", true)))
		return r;
	if ((r = ims_cli_opt_choice(cli, &req.mode, a, "mode", modes, "async")))
		return r;
	if ((r = ims_cli_opt_seconds(cli, &req.rpo_seconds, a, "rpo", "")))
		return r;
	req.group = &gs;
	return ims_cli_call_show(cli, GROUP_SVC "EnableGroupReplication", &req,
				 &imgstore__v1__replication_status__descriptor);
}

static const ims_cli_opt to_opts[] = {
	{"to", "SITE", "the peer site (default: the only site the group replicates to)"},
	{NULL, NULL, NULL},
};
static const ims_cli_opt sync_opts[] = {
	{"to", "SITE", "the peer site (default: the only site the group replicates to)"},
	IMS_CLI_OPT_NO_WAIT,
	IMS_CLI_OPT_END,
};

static const ims_cli_opt failover_opts[] = {
	{"to", "SITE", "the site to promote (required)"},
	{"force", NULL,
	 "unplanned: promote every image at the newest cut sealed on all, without the primary"},
	{"wait", "DURATION",
	 "planned: how long hosts get to release their leases before they are fenced (default "
	 "30s)"},
	IMS_CLI_OPT_NO_WAIT,
	IMS_CLI_OPT_END,
};

/*
 * disable (prints the status) and the operations: sync, failover, resync. Each RPC has its
 * own request, all with the same fields: GROUP_REPL_FILL fills those of @p req (its group
 * borrows from @p gs and @p spec).
 */
static int group_repl_fill(ims_cli *cli, const ims_cli_args *a, ims_spec *spec,
			   Imgstore__V1__GroupSpec *gs, Imgstore__V1__GroupSpec **group,
			   char **target_site, protobuf_c_boolean *force, uint32_t *wait_seconds)
{
	int r;

	if ((r = ims_cli_arg_group(cli, spec, gs, a->pos[0], false)) ||
	    (r = ims_cli_opt_word(cli, target_site, a, "to", false)))
		return r;
	*group = gs;
	if (cli->verb->opts == failover_opts) {
		if (!(*target_site)[0])
			return ims_cli_usage(cli, "--to is required");
		if ((r = ims_cli_opt_fence_wait(cli, wait_seconds, a)))
			return r;
		*force = ims_cli_opt_flag(cli, a, "force");
	}
	return 0;
}
#define GROUP_REPL_FILL(cli, a, spec, gs, req)                                                     \
	group_repl_fill((cli), (a), (spec), (gs), &(req).group, &(req).target_site, &(req).force,  \
			&(req).wait_seconds)

static int group_repl_disable(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__DisableGroupReplicationRequest req =
		IMGSTORE__V1__DISABLE_GROUP_REPLICATION_REQUEST__INIT;
	Imgstore__V1__GroupSpec gs;
	ims_spec spec;
	int r = GROUP_REPL_FILL(cli, a, &spec, &gs, req);
	if (r)
		return r;
	return ims_cli_call_show(cli, GROUP_SVC "DisableGroupReplication", &req,
				 &imgstore__v1__replication_status__descriptor);
}

static int group_repl_sync(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__SyncGroupRequest req = IMGSTORE__V1__SYNC_GROUP_REQUEST__INIT;
	Imgstore__V1__GroupSpec gs;
	ims_spec spec;
	int r = GROUP_REPL_FILL(cli, a, &spec, &gs, req);
	return r ? r : ims_cli_call_op(cli, a, GROUP_SVC "SyncGroup", &req);
}

static int group_repl_failover(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__FailoverGroupRequest req = IMGSTORE__V1__FAILOVER_GROUP_REQUEST__INIT;
	Imgstore__V1__GroupSpec gs;
	ims_spec spec;
	int r = GROUP_REPL_FILL(cli, a, &spec, &gs, req);
	return r ? r : ims_cli_call_op(cli, a, GROUP_SVC "FailoverGroup", &req);
}

static int group_repl_resync(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ResyncGroupRequest req = IMGSTORE__V1__RESYNC_GROUP_REQUEST__INIT;
	Imgstore__V1__GroupSpec gs;
	ims_spec spec;
	int r = GROUP_REPL_FILL(cli, a, &spec, &gs, req);
	return r ? r : ims_cli_call_op(cli, a, GROUP_SVC "ResyncGroup", &req);
}

static const ims_cli_opt verify_opts[] = {
	{"to", "SITE", "the peer site (default: the only site the group replicates to)"},
	{"chunk", "SIZE", "checksum granularity, a power of two from 4K (default: 64K)"},
	{NULL, NULL, NULL},
};

/* Exit 0 when every image is equal at the cut, 1 when one differs (after the report) or on error.
 */
static int group_repl_verify(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__VerifyGroupRequest req = IMGSTORE__V1__VERIFY_GROUP_REQUEST__INIT;
	Imgstore__V1__GroupSpec gs;
	Imgstore__V1__VerifyGroupResponse *v = NULL;
	ims_spec spec;
	int r;
	if ((r = ims_cli_arg_group(cli, &spec, &gs, a->pos[0], false)) ||
	    (r = ims_cli_opt_word(cli, &req.target_site, a, "to", false)) ||
	    (r = ims_cli_opt_chunk(cli, &req.chunk_size, a)))
		return r;
	req.group = &gs;
	if ((r = ims_cli_call(cli, GROUP_SVC "VerifyGroup", &req,
			      &imgstore__v1__verify_group_response__descriptor, &v)))
		return r;
	if (cli->format == IMS_CLI_FORMAT_JSON) {
		ims_cli_print_message(cli, &v->base);
	} else {
		fprintf(cli->out, "group %s at '%s' on site '%s': %s\n", v->group, v->cut,
			v->target, v->equal ? "equal" : "DIFFERENT");
		for (size_t i = 0; i < v->n_images; i++) {
			const Imgstore__V1__VerifyImageResponse *m = v->images[i];
			fprintf(cli->out, "  %s: %s\n", m->image, m->verdict);
			ims_cli_print_mismatches(cli, "    ", m);
		}
	}
	r = v->equal ? 0 : 1;
	protobuf_c_message_free_unpacked(&v->base, NULL);
	return r;
}

static const ims_cli_column status_columns[] = {
	{"GROUP", "image", NULL},     {"TARGET", "target", NULL},
	{"STATE", "state", NULL},     {"RPO", "rpo_seconds", NULL},
	{"LAG", "lag_seconds", NULL}, {"LAST_SEALED", "last_sealed_snapshot", NULL},
	{"ERROR", "error", NULL},     {NULL, NULL, NULL},
};

const ims_cli_verb ims_cli__group_verbs[] = {
	{"group", "create", "POOL/GROUP", "Create a consistency group (the disks of one VM).",
	 ims_cli__no_opts, 1, 1, NULL,
	 &(const ims_cli_call_spec){GROUP_SERVICE, "CreateGroup", IMS_CLI_POS_GROUP, "group", NULL,
				    IMS_CLI_REPLY_SHOW, NULL, NULL, print_group}},
	{"group", "add", "POOL/GROUP POOL/IMAGE...", "Add images to a group (all or none).",
	 ims_cli__no_opts, 2, IMS_CLI_MAX_POS, group_add, NULL},
	{"group", "rm", "POOL/GROUP [POOL/IMAGE...] [--force]",
	 "Take images out of a group; with no image, remove the group.", rm_opts, 1,
	 IMS_CLI_MAX_POS, group_rm, NULL},
	{"group", "snap", "POOL/GROUP@SNAP [--rm]", "Snapshot every image of a group at one point.",
	 snap_opts, 1, 1, group_snap, NULL},
	{"group", "ls", "[POOL]", "List the groups of a pool.", ims_cli__no_opts, 0, 1, NULL,
	 &(const ims_cli_call_spec){GROUP_SERVICE, "ListGroups", IMS_CLI_POS_POOL, "pool", "pool",
				    IMS_CLI_REPLY_LIST, "groups", group_columns, NULL}},
	{"group", "show", "POOL/GROUP", "Show a group: its images, snapshots and replication.",
	 ims_cli__no_opts, 1, 1, NULL,
	 &(const ims_cli_call_spec){GROUP_SERVICE, "GetGroup", IMS_CLI_POS_GROUP, "group", NULL,
				    IMS_CLI_REPLY_SHOW, NULL, NULL, print_group}},
	{"group", "repl enable", "POOL/GROUP --to SITE [--mode async|sync] [--rpo DURATION]",
	 "Replicate a group as one unit: one cut of every image per cycle.", enable_opts, 1, 1,
	 group_repl_enable, NULL},
	{"group", "repl disable", "POOL/GROUP [--to SITE]",
	 "Stop replicating a group; the copy stays.", to_opts, 1, 1, group_repl_disable, NULL},
	{"group", "repl sync", "POOL/GROUP [--to SITE] [--no-wait]",
	 "Cut the group now and seal the cut on its target; prints the cut.", sync_opts, 1, 1,
	 group_repl_sync, NULL},
	{"group", "repl status", "POOL/GROUP", "Show the replication of a group.", ims_cli__no_opts,
	 1, 1, NULL,
	 &(const ims_cli_call_spec){GROUP_SERVICE, "GetGroupReplicationStatus", IMS_CLI_POS_GROUP,
				    "group", NULL, IMS_CLI_REPLY_LIST, "statuses", status_columns,
				    NULL}},
	{"group", "repl failover", "POOL/GROUP --to SITE [--force] [--wait DURATION] [--no-wait]",
	 "Make SITE the primary of every image of the group at one cut (planned: ask the primary's "
	 "site; "
	 "--force: ask SITE).",
	 failover_opts, 1, 1, group_repl_failover, NULL},
	{"group", "repl verify", "POOL/GROUP [--to SITE] [--chunk SIZE]",
	 "Compare every image of the group at the newest cut sealed on the target, by checksums on "
	 "each "
	 "site; exit 1 if one differs.",
	 verify_opts, 1, 1, group_repl_verify, NULL},
	{"group", "repl resync", "POOL/GROUP [--to SITE] [--no-wait]",
	 "Make an old primary that came back a secondary again: its diverged heads are kept as "
	 "snapshots.",
	 sync_opts, 1, 1, group_repl_resync, NULL},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
