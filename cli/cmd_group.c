/*
 * cli/cmd_group.c: consistency groups (no service in the schema yet: the verbs check their
 * arguments and say so).
 */
#include "cli/cli.h"

#include <stdio.h>

static const ims_cli_opt no_opts[] = {{NULL, NULL, NULL}};

/* A verb the schema has no RPC for yet: check the arguments, then say so. */
static int not_in_schema(ims_cli *cli)
{
	return ims_cli_fail(cli, "%s %s is not available in this version of imgstore yet",
			    cli->verb->noun, cli->verb->verb);
}

/* ---- group: no service in the schema yet ---- */

static int group_create(ims_cli *cli, const ims_cli_args *a)
{
	int r;
	ims_spec spec;

	if ((r = ims_cli_arg_spec(cli, &spec, a->pos[0], false, false)))
		return r;
	return not_in_schema(cli);
}

static int group_add(ims_cli *cli, const ims_cli_args *a)
{
	int r;
	ims_spec spec;

	for (unsigned i = 0; i < a->npos; i++)
		if ((r = ims_cli_arg_spec(cli, &spec, a->pos[i], false, false)))
			return r;
	return not_in_schema(cli);
}

static int group_snap(ims_cli *cli, const ims_cli_args *a)
{
	int r;
	ims_spec spec;

	if ((r = ims_cli_arg_spec(cli, &spec, a->pos[0], true, true)))
		return r;
	return not_in_schema(cli);
}

const ims_cli_verb ims_cli__group_verbs[] = {
	{"group", "create", "POOL/GROUP", "Create a consistency group (not available yet).",
	 no_opts, 1, 1, group_create},
	{"group", "add", "POOL/GROUP POOL/IMAGE...",
	 "Add images to a consistency group (not available yet).", no_opts, 2, IMS_CLI_MAX_POS,
	 group_add},
	{"group", "snap", "POOL/GROUP@SNAP",
	 "Snapshot every image of a group at one point (not available yet).", no_opts, 1, 1,
	 group_snap},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL},
};
