/* cli/cmd_snap.c: imgstore snap VERB: create, ls, rollback, rm, each one call. */
#include "cli/cli.h"

#include "imgstore/v1/snapshot.pb-c.h"

#define SNAP_SVC (&imgstore__v1__snapshot_service__descriptor)

static const ims_cli_column snap_columns[] = {
	{"NAME", "name", NULL},
	{"ID", "id", NULL},
	{"SIZE", "size", NULL},
	{"PROTECTED", "protected", NULL},
	{"CREATED", "created_unix", NULL},
	{NULL, NULL, NULL},
};

const ims_cli_verb ims_cli__snap_verbs[] = {
	{"snap", "create", "POOL/IMAGE@SNAP", "Take a snapshot of an image.", ims_cli__no_opts, 1,
	 1, NULL,
	 &(const ims_cli_call_spec){SNAP_SVC, "CreateSnapshot", IMS_CLI_POS_SNAP, "snapshot", NULL,
				    IMS_CLI_REPLY_SHOW, NULL, NULL, NULL}},
	{"snap", "ls", "POOL/IMAGE", "List the snapshots of an image.", ims_cli__no_opts, 1, 1,
	 NULL,
	 &(const ims_cli_call_spec){SNAP_SVC, "ListSnapshots", IMS_CLI_POS_IMAGE, "image", NULL,
				    IMS_CLI_REPLY_LIST, "snapshots", snap_columns, NULL}},
	{"snap", "rollback", "POOL/IMAGE@SNAP [--no-wait]",
	 "Roll an image back to a snapshot (its writes since are lost).", ims_cli__wait_opts, 1, 1,
	 NULL,
	 &(const ims_cli_call_spec){SNAP_SVC, "RollbackSnapshot", IMS_CLI_POS_SNAP, "snapshot",
				    NULL, IMS_CLI_REPLY_OP, NULL, NULL, NULL}},
	{"snap", "rm", "POOL/IMAGE@SNAP", "Remove a snapshot (refused while clones depend on it).",
	 ims_cli__no_opts, 1, 1, NULL,
	 &(const ims_cli_call_spec){SNAP_SVC, "DeleteSnapshot", IMS_CLI_POS_SNAP, "snapshot", NULL,
				    IMS_CLI_REPLY_EMPTY, NULL, NULL, NULL}},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
