/* cli/cmd_op.c: imgstore op VERB: ls, get, wait, cancel. */
#include "cli/cli.h"

#include <stdio.h>

#include "imgstore/v1/operation.pb-c.h"

#define OP_SVC	   "imgstore.v1.OperationService/"
#define OP_SERVICE (&imgstore__v1__operation_service__descriptor)

static const ims_cli_opt ls_opts[] = {
	{"all", NULL, "also the finished operations (the most recent first)"},
	{"limit", "N", "show at most N operations (default 100)"},
	{NULL, NULL, NULL},
};

static const char *op_progress(char *buf, size_t len, const ProtobufCMessage *m)
{
	const Imgstore__V1__Operation *op = (const Imgstore__V1__Operation *)m;

	if (!op->bytes_total)
		return "-";
	snprintf(buf, len, "%u%%",
		 (unsigned)((long double)(op->bytes_done > op->bytes_total ? op->bytes_total
									   : op->bytes_done) *
			    100 / op->bytes_total));
	return buf;
}

static const ims_cli_column op_columns[] = {
	{"ID", "id", NULL},
	{"KIND", "kind", NULL},
	{"TARGET", "target", NULL},
	{"STATE", "state", NULL},
	{"PROGRESS", NULL, op_progress},
	{"CREATED", "created_unix", NULL},
	{"ERROR", "error", NULL},
	{NULL, NULL, NULL},
};

static int op_ls(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ListOperationsRequest req = IMGSTORE__V1__LIST_OPERATIONS_REQUEST__INIT;
	const char *limit = ims_cli_opt_value(cli, a, "limit");
	uint64_t n;
	int r;

	req.active_only = !ims_cli_opt_flag(cli, a, "all");
	if (limit) {
		if ((r = ims_cli_arg_uint(cli, &n, "limit", limit, UINT32_MAX)))
			return r;
		if (n == 0)
			return ims_cli_usage(cli, "--limit: must be at least 1");
		req.limit = (uint32_t)n;
	}
	return ims_cli_call_list(cli, OP_SVC "ListOperations", &req,
				 &imgstore__v1__list_operations_response__descriptor, "operations",
				 op_columns);
}

static const ims_cli_opt wait_opts[] = {
	{"timeout", "DURATION", "give up (exit 1, the operation goes on) after this long"},
	{NULL, NULL, NULL},
};

static int op_wait(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__Operation *op = NULL;
	ims_cli_wait_opts w = {.no_wait = false};
	const char *timeout = ims_cli_opt_value(cli, a, "timeout");
	int r;

	if ((r = ims_cli_arg_word(cli, "operation id", a->pos[0])))
		return r;
	if (timeout) {
		if ((r = ims_cli_arg_duration(cli, &w.timeout_s, "timeout", timeout,
					      86400ull * 365)))
			return r;
		if (w.timeout_s == 0)
			return ims_cli_usage(cli, "--timeout: must be at least 1s");
	}
	Imgstore__V1__GetOperationRequest req = IMGSTORE__V1__GET_OPERATION_REQUEST__INIT;
	req.id = (char *)a->pos[0];
	if ((r = ims_cli_call(cli, OP_SVC "GetOperation", &req,
			      &imgstore__v1__operation__descriptor, &op)))
		return r;
	return ims_cli_finish_op(cli, op, &w);
}

const ims_cli_verb ims_cli__op_verbs[] = {
	{"op", "ls", "[--all] [--limit N]",
	 "List the operations in progress (--all: recent ones too).", ls_opts, 0, 0, op_ls, NULL},
	{"op", "get", "ID", "Show an operation.", ims_cli__no_opts, 1, 1, NULL,
	 &(const ims_cli_call_spec){OP_SERVICE, "GetOperation", IMS_CLI_POS_WORD, "id",
				    "operation id", IMS_CLI_REPLY_SHOW, NULL, NULL, NULL}},
	{"op", "wait", "ID [--timeout DURATION]",
	 "Wait for an operation to finish; exit 0 only if it succeeded.", wait_opts, 1, 1, op_wait,
	 NULL},
	{"op", "cancel", "ID", "Ask for an operation to stop; it ends as cancelled.",
	 ims_cli__no_opts, 1, 1, NULL,
	 &(const ims_cli_call_spec){OP_SERVICE, "CancelOperation", IMS_CLI_POS_WORD, "id",
				    "operation id", IMS_CLI_REPLY_SHOW, NULL, NULL, NULL}},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
