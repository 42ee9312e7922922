/* cli/cmd_snap.c: imgstore snap VERB: create, ls, rollback, rm. */
#include "cli/cli.h"

#include "imgstore/v1/snapshot.pb-c.h"

#define SNAP_SVC "imgstore.v1.SnapshotService/"

static int snap_create(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__CreateSnapshotRequest req = IMGSTORE__V1__CREATE_SNAPSHOT_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], true, true)))
		return r;
	req.snapshot = &ms;
	return ims_cli_call_show(cli, SNAP_SVC "CreateSnapshot", &req,
				 &imgstore__v1__snapshot_info__descriptor);
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
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)))
		return r;
	req.image = &ms;
	return ims_cli_call_list(cli, SNAP_SVC "ListSnapshots", &req,
				 &imgstore__v1__list_snapshots_response__descriptor, "snapshots",
				 snap_columns);
}

static int snap_rollback(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__RollbackSnapshotRequest req = IMGSTORE__V1__ROLLBACK_SNAPSHOT_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], true, true)))
		return r;
	req.snapshot = &ms;
	return ims_cli_call_op(cli, a, SNAP_SVC "RollbackSnapshot", &req);
}

static int snap_rm(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__DeleteSnapshotRequest req = IMGSTORE__V1__DELETE_SNAPSHOT_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], true, true)))
		return r;
	req.snapshot = &ms;
	return ims_cli_call_empty(cli, SNAP_SVC "DeleteSnapshot", &req,
				  &imgstore__v1__delete_snapshot_response__descriptor);
}

const ims_cli_verb ims_cli__snap_verbs[] = {
	{"snap", "create", "POOL/IMAGE@SNAP", "Take a snapshot of an image.", ims_cli__no_opts, 1,
	 1, snap_create},
	{"snap", "ls", "POOL/IMAGE", "List the snapshots of an image.", ims_cli__no_opts, 1, 1,
	 snap_ls},
	{"snap", "rollback", "POOL/IMAGE@SNAP [--no-wait]",
	 "Roll an image back to a snapshot (its writes since are lost).", ims_cli__wait_opts, 1, 1,
	 snap_rollback},
	{"snap", "rm", "POOL/IMAGE@SNAP", "Remove a snapshot (refused while clones depend on it).",
	 ims_cli__no_opts, 1, 1, snap_rm},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL},
};
