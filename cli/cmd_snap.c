/* cli/cmd_snap.c: imgstore snap VERB: create, ls, rollback, rm. */
#include "cli/cli.h"

#include "imgstore/v1/snapshot.pb-c.h"

#define SNAP_SVC "imgstore.v1.SnapshotService/"

static const ims_cli_opt no_opts[] = {{NULL, NULL, NULL}};
static const ims_cli_opt wait_opts[] = {
	{"no-wait", NULL, "print the operation id and return without waiting"},
	{NULL, NULL, NULL},
};

static int snap_create(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__CreateSnapshotRequest req = IMGSTORE__V1__CREATE_SNAPSHOT_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__SnapshotInfo *info = NULL;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_spec(cli, &spec, a->pos[0], true, true)))
		return r;
	ims_cli_spec_to_msg(&ms, &spec);
	req.snapshot = &ms;
	if ((r = ims_cli_call(cli, SNAP_SVC "CreateSnapshot", &req,
			      &imgstore__v1__snapshot_info__descriptor, &info)))
		return r;
	ims_cli_print_message(cli, &info->base);
	protobuf_c_message_free_unpacked(&info->base, NULL);
	return 0;
}

static const ims_cli_column snap_columns[] = {
	{"NAME", "name", NULL},
	{"ID", "id", NULL},
	{"SIZE", "size", NULL},
	{"PROTECTED", "protected", NULL},
	{"CREATED", "created_unix", NULL},
	{NULL, NULL, NULL},
};

static int snap_ls(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ListSnapshotsRequest req = IMGSTORE__V1__LIST_SNAPSHOTS_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__ListSnapshotsResponse *resp = NULL;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_spec(cli, &spec, a->pos[0], false, false)))
		return r;
	ims_cli_spec_to_msg(&ms, &spec);
	req.image = &ms;
	if ((r = ims_cli_call(cli, SNAP_SVC "ListSnapshots", &req,
			      &imgstore__v1__list_snapshots_response__descriptor, &resp)))
		return r;
	ims_cli_print_list(cli, (ProtobufCMessage *const *)resp->snapshots, resp->n_snapshots,
			   snap_columns);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

static int snap_rollback(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__RollbackSnapshotRequest req = IMGSTORE__V1__ROLLBACK_SNAPSHOT_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__Operation *op = NULL;
	ims_cli_wait_opts w = {.no_wait = ims_cli_opt_flag(cli, a, "no-wait")};
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_spec(cli, &spec, a->pos[0], true, true)))
		return r;
	ims_cli_spec_to_msg(&ms, &spec);
	req.snapshot = &ms;
	if ((r = ims_cli_call(cli, SNAP_SVC "RollbackSnapshot", &req,
			      &imgstore__v1__operation__descriptor, &op)))
		return r;
	return ims_cli_finish_op(cli, op, &w);
}

static int snap_rm(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__DeleteSnapshotRequest req = IMGSTORE__V1__DELETE_SNAPSHOT_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__DeleteSnapshotResponse *resp = NULL;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_spec(cli, &spec, a->pos[0], true, true)))
		return r;
	ims_cli_spec_to_msg(&ms, &spec);
	req.snapshot = &ms;
	if ((r = ims_cli_call(cli, SNAP_SVC "DeleteSnapshot", &req,
			      &imgstore__v1__delete_snapshot_response__descriptor, &resp)))
		return r;
	if (cli->format == IMS_CLI_FORMAT_JSON)
		ims_cli_print_message(cli, &resp->base);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

const ims_cli_verb ims_cli__snap_verbs[] = {
	{"snap", "create", "POOL/IMAGE@SNAP", "Take a snapshot of an image.", no_opts, 1, 1,
	 snap_create},
	{"snap", "ls", "POOL/IMAGE", "List the snapshots of an image.", no_opts, 1, 1, snap_ls},
	{"snap", "rollback", "POOL/IMAGE@SNAP [--no-wait]",
	 "Roll an image back to a snapshot (its writes since are lost).", wait_opts, 1, 1,
	 snap_rollback},
	{"snap", "rm", "POOL/IMAGE@SNAP", "Remove a snapshot (refused while clones depend on it).",
	 no_opts, 1, 1, snap_rm},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL},
};
