/* cli/cmd_snap.c: imgstore snap VERB: create, ls, rollback, rm, each one call; the schedules
 * (schedule add, ls, rm). */
#include "cli/cli.h"

#include <string.h>

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

/* ---- schedules ---- */

static const ims_cli_opt sched_add_opts[] = {
	{"every", "DURATION", "how often a snapshot is taken (required; 30s, 15m, 1h, 1d...)"},
	{"keep", "RULE",
	 "which snapshots stay (required): hourly=N,daily=N,weekly=N, any of the three; the "
	 "newest of each of the last N hours, days, weeks"},
	{"group", NULL, "POOL/NAME is a consistency group (default: an image, else a group)"},
	IMS_CLI_OPT_END,
};

static const ims_cli_opt sched_rm_opts[] = {
	{"group", NULL, "POOL/NAME is a consistency group"},
	IMS_CLI_OPT_END,
};

static const char *every_col(char *buf, size_t len, const ProtobufCMessage *row)
{
	const Imgstore__V1__SnapshotSchedule *s = (const void *)row;
	snprintf(buf, len, "%llus", (unsigned long long)s->every_seconds);
	return buf;
}

static const char *last_col(char *buf, size_t len, const ProtobufCMessage *row)
{
	const Imgstore__V1__SnapshotSchedule *s = (const void *)row;
	return ims_cli_format_time(buf, len, s->last_unix_ms / 1000);
}

static const char *kind_col(char *buf, size_t len, const ProtobufCMessage *row)
{
	const Imgstore__V1__SnapshotSchedule *s = (const void *)row;
	snprintf(buf, len, "%s", s->group ? "group" : "image");
	return buf;
}

static const ims_cli_column sched_columns[] = {
	{"POOL", "pool", NULL},	       {"NAME", "name", NULL}, {"KIND", NULL, kind_col},
	{"EVERY", NULL, every_col},    {"KEEP", "keep", NULL}, {"LAST", NULL, last_col},
	{"ERROR", "last_error", NULL}, {NULL, NULL, NULL},
};

static int sched_add(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__AddSnapshotScheduleRequest req =
		IMGSTORE__V1__ADD_SNAPSHOT_SCHEDULE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	uint32_t every = 0;
	int r;
	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)) ||
	    (r = ims_cli_opt_seconds(cli, &every, a, "every", "")))
		return r;
	if (!every)
		return ims_cli_usage(cli, "--every is required");
	const char *keep = ims_cli_opt_value(cli, a, "keep");
	if (!keep || !*keep)
		return ims_cli_usage(cli, "--keep is required (hourly=N,daily=N,weekly=N)");
	req.image = &ms;
	req.every_seconds = every;
	req.keep = (char *)keep;
	req.group = ims_cli_opt_flag(cli, a, "group");
	return ims_cli_call_show(cli, "imgstore.v1.SnapshotService/AddSnapshotSchedule", &req,
				 &imgstore__v1__snapshot_schedule__descriptor);
}

static int sched_rm(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__RemoveSnapshotScheduleRequest req =
		IMGSTORE__V1__REMOVE_SNAPSHOT_SCHEDULE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r;
	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)))
		return r;
	req.image = &ms;
	req.group = ims_cli_opt_flag(cli, a, "group");
	return ims_cli_call_empty(cli, "imgstore.v1.SnapshotService/RemoveSnapshotSchedule", &req,
				  &imgstore__v1__remove_snapshot_schedule_response__descriptor);
}

/* ---- verify ---- */

/* Exit 0 when the snapshot is what its digest says and the log's chain holds, 1 otherwise
 * (after the report: the objects that changed), or when no digest of it is recorded. */
static int snap_verify(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__VerifySnapshotRequest req = IMGSTORE__V1__VERIFY_SNAPSHOT_REQUEST__INIT;
	Imgstore__V1__VerifySnapshotResponse *v = NULL;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r;
	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], true, true)))
		return r;
	req.snapshot = &ms;
	if ((r = ims_cli_call(cli, "imgstore.v1.SnapshotService/VerifySnapshot", &req,
			      &imgstore__v1__verify_snapshot_response__descriptor, &v)))
		return r;
	if (cli->format == IMS_CLI_FORMAT_JSON) {
		ims_cli_print_message(cli, &v->base);
	} else {
		char line[1024];
		if (!v->recorded)
			snprintf(line, sizeof(line), "%s: no digest recorded", a->pos[0]);
		else
			snprintf(line, sizeof(line),
				 "%s: %s (digest %llu, taken for %s, %llu objects recorded, %llu "
				 "now%s)",
				 a->pos[0], v->intact ? "intact" : "CHANGED",
				 (unsigned long long)v->digest_seq, v->digested_for,
				 (unsigned long long)v->objects_recorded,
				 (unsigned long long)v->objects_now,
				 v->snapshot_id_now != v->snapshot_id_recorded
					 ? "; the snapshot was re-created: its id differs"
					 : "");
		ims_cli_print_line(cli, line);
		for (size_t i = 0; i < v->n_changes; i++) {
			snprintf(line, sizeof(line), "  %s %s (object %llu)", v->changes[i]->change,
				 v->changes[i]->object,
				 (unsigned long long)v->changes[i]->object_number);
			ims_cli_print_line(cli, line);
		}
		if (!v->chain_intact) {
			snprintf(line, sizeof(line), "digest log BROKEN: %s", v->chain_error);
			ims_cli_print_line(cli, line);
		}
	}
	r = v->recorded && v->intact && v->chain_intact ? 0 : 1;
	protobuf_c_message_free_unpacked(&v->base, NULL);
	return r;
}

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
	{"snap", "verify", "POOL/IMAGE@SNAP",
	 "Check a snapshot against its recorded digest; exit 1 naming the objects that changed.",
	 ims_cli__no_opts, 1, 1, snap_verify, NULL},
	{"snap", "rm", "POOL/IMAGE@SNAP", "Remove a snapshot (refused while clones depend on it).",
	 ims_cli__no_opts, 1, 1, NULL,
	 &(const ims_cli_call_spec){SNAP_SVC, "DeleteSnapshot", IMS_CLI_POS_SNAP, "snapshot", NULL,
				    IMS_CLI_REPLY_EMPTY, NULL, NULL, NULL}},
	{"snap", "schedule add", "POOL/IMAGE|POOL/GROUP --every DURATION --keep RULE [--group]",
	 "Snapshot an image or a group on a schedule, pruned by a retention rule.", sched_add_opts,
	 1, 1, sched_add, NULL},
	{"snap", "schedule ls", "", "List the snapshot schedules of the site.", ims_cli__no_opts, 0,
	 0, NULL,
	 &(const ims_cli_call_spec){SNAP_SVC, "ListSnapshotSchedules", IMS_CLI_POS_NONE, NULL, NULL,
				    IMS_CLI_REPLY_LIST, "schedules", sched_columns, NULL}},
	{"snap", "schedule rm", "POOL/IMAGE|POOL/GROUP [--group]",
	 "Remove a snapshot schedule (its snapshots stay).", sched_rm_opts, 1, 1, sched_rm, NULL},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
