/*
 * cli/cmd_tier.c: the tier noun (TierService): push, restore, ls, scrub, gc and policy.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "imgstore/v1/tier.pb-c.h"

#define TIER_SVC "imgstore.v1.TierService/"

static const ims_cli_opt no_opts[] = {{NULL, NULL, NULL}};

/* A verb the schema has no RPC for yet: check the arguments, then say so. */
static int not_in_schema(ims_cli *cli)
{
	return ims_cli_fail(cli, "%s %s is not available in this version of imgstore yet",
			    cli->verb->noun, cli->verb->verb);
}

/* ---- tier ---- */

static const ims_cli_opt push_opts[] = {
	{"to", "TARGET", "the object storage target (required)"},
	{"after", "trash|purge|keep", "what happens to the image once pushed (default: trash)"},
	{"no-wait", NULL, "print the operation id and return without waiting"},
	{NULL, NULL, NULL},
};

static int tier_push(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__PushRequest req = IMGSTORE__V1__PUSH_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__Operation *op = NULL;
	ims_cli_wait_opts w = {.no_wait = ims_cli_opt_flag(cli, a, "no-wait")};
	const char *to = ims_cli_opt_value(cli, a, "to");
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_spec(cli, &spec, a->pos[0], true, false)))
		return r;
	if (!to)
		return ims_cli_usage(cli, "--to is required");
	if ((r = ims_cli_arg_word(cli, "--to", to)))
		return r;
	const char *after = ims_cli_opt_value(cli, a, "after");
	static const char *const afters[] = {"trash", "purge", "keep", NULL};
	if (after && (r = ims_cli_arg_choice(cli, "--after", after, afters)))
		return r;
	ims_cli_spec_to_msg(&ms, &spec);
	req.image = &ms;
	req.target = (char *)to;
	req.after = after ? (char *)after : (char *)"";
	if ((r = ims_cli_call(cli, TIER_SVC "Push", &req, &imgstore__v1__operation__descriptor,
			      &op)))
		return r;
	return ims_cli_finish_op(cli, op, &w);
}

static const ims_cli_opt restore_opts[] = {
	{"to", "POOL/IMAGE", "where to restore (default: where it was pushed from)"},
	{"target", "TARGET", "the object storage target (default: the one the catalog names)"},
	{"no-wait", NULL, "print the operation id and return without waiting"},
	{NULL, NULL, NULL},
};

static int tier_restore(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__RestoreRequest req = IMGSTORE__V1__RESTORE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__Operation *op = NULL;
	ims_cli_wait_opts w = {.no_wait = ims_cli_opt_flag(cli, a, "no-wait")};
	const char *to = ims_cli_opt_value(cli, a, "to");
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_word(cli, "cold image name", a->pos[0])))
		return r;
	memset(&spec, 0, sizeof(spec));
	if (to && (r = ims_cli_arg_spec(cli, &spec, to, false, false)))
		return r;
	ims_cli_spec_to_msg(&ms, &spec);
	const char *target = ims_cli_opt_value(cli, a, "target");
	if (target && (r = ims_cli_arg_word(cli, "--target", target)))
		return r;
	req.name = (char *)a->pos[0];
	req.to = &ms;
	req.target = target ? (char *)target : (char *)"";
	if ((r = ims_cli_call(cli, TIER_SVC "Restore", &req, &imgstore__v1__operation__descriptor,
			      &op)))
		return r;
	return ims_cli_finish_op(cli, op, &w);
}

static const ims_cli_opt target_opts[] = {
	{"target", "TARGET", "only this object storage target"},
	{NULL, NULL, NULL},
};

static const ims_cli_column cold_columns[] = {
	{"NAME", "name", NULL},		 {"TARGET", "target", NULL}, {"SIZE", "size", NULL},
	{"PUSHED", "pushed_unix", NULL}, {"CHUNKS", "chunks", NULL}, {NULL, NULL, NULL},
};

static int tier_ls(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ListColdRequest req = IMGSTORE__V1__LIST_COLD_REQUEST__INIT;
	Imgstore__V1__ListColdResponse *resp = NULL;
	const char *target = ims_cli_opt_value(cli, a, "target");
	int r;

	if (target && (r = ims_cli_arg_word(cli, "--target", target)))
		return r;
	req.target = target ? (char *)target : (char *)"";
	if ((r = ims_cli_call(cli, TIER_SVC "ListCold", &req,
			      &imgstore__v1__list_cold_response__descriptor, &resp)))
		return r;
	ims_cli_print_list(cli, (ProtobufCMessage *const *)resp->images, resp->n_images,
			   cold_columns);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

static const ims_cli_opt scrub_opts[] = {
	{"target", "TARGET", "only this object storage target"},
	{"deep", NULL, "read and check every chunk, not only that it exists"},
	{"no-wait", NULL, "print the operation id and return without waiting"},
	{NULL, NULL, NULL},
};

static int tier_scrub(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ScrubRequest req = IMGSTORE__V1__SCRUB_REQUEST__INIT;
	Imgstore__V1__Operation *op = NULL;
	ims_cli_wait_opts w = {.no_wait = ims_cli_opt_flag(cli, a, "no-wait")};
	const char *target = ims_cli_opt_value(cli, a, "target");
	int r;

	if (target && (r = ims_cli_arg_word(cli, "--target", target)))
		return r;
	req.target = target ? (char *)target : (char *)"";
	req.deep = ims_cli_opt_flag(cli, a, "deep");
	if ((r = ims_cli_call(cli, TIER_SVC "Scrub", &req, &imgstore__v1__operation__descriptor,
			      &op)))
		return r;
	return ims_cli_finish_op(cli, op, &w);
}

static const ims_cli_opt gc_opts[] = {
	{"target", "TARGET", "only this object storage target"},
	{"grace", "DURATION", "keep unreferenced chunks younger than this (default: 1d)"},
	{"no-wait", NULL, "print the operation id and return without waiting"},
	{NULL, NULL, NULL},
};

static int tier_gc(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ScrubRequest req = IMGSTORE__V1__SCRUB_REQUEST__INIT;
	Imgstore__V1__Operation *op = NULL;
	ims_cli_wait_opts w = {.no_wait = ims_cli_opt_flag(cli, a, "no-wait")};
	const char *target = ims_cli_opt_value(cli, a, "target");
	const char *grace = ims_cli_opt_value(cli, a, "grace");
	uint64_t secs = 0;
	int r;

	if (target && (r = ims_cli_arg_word(cli, "--target", target)))
		return r;
	if (grace && (r = ims_cli_arg_duration(cli, &secs, "--grace", grace, 365ull * 86400)))
		return r;
	req.target = target ? (char *)target : (char *)"";
	req.collect_garbage = 1;
	req.grace_seconds = secs;
	if ((r = ims_cli_call(cli, TIER_SVC "Scrub", &req, &imgstore__v1__operation__descriptor,
			      &op)))
		return r;
	return ims_cli_finish_op(cli, op, &w);
}

static int tier_policy(ims_cli *cli, const ims_cli_args *a)
{
	int r;

	if (a->npos == 1 && (r = ims_cli_arg_name(cli, IMS_NAME_POOL, "POOL", a->pos[0])))
		return r;
	return not_in_schema(cli);
}

const ims_cli_verb ims_cli__tier_verbs[] = {
	{"tier", "push", "POOL/IMAGE[@SNAP] --to TARGET [--after trash|purge|keep] [--no-wait]",
	 "Move an image (or a snapshot) out to object storage.", push_opts, 1, 1, tier_push},
	{"tier", "restore", "NAME [--to POOL/IMAGE] [--target TARGET] [--no-wait]",
	 "Bring a cold image back from object storage.", restore_opts, 1, 1, tier_restore},
	{"tier", "ls", "[--target TARGET]", "List the cold images.", target_opts, 0, 0, tier_ls},
	{"tier", "scrub", "[--target TARGET] [--deep] [--no-wait]",
	 "Check the cold images' chunks on object storage.", scrub_opts, 0, 0, tier_scrub},
	{"tier", "gc", "[--target TARGET] [--grace DURATION] [--no-wait]",
	 "Delete the chunks no cold image references any more.", gc_opts, 0, 0, tier_gc},
	{"tier", "policy", "[POOL]", "Show when images go cold (not available yet).", no_opts, 0, 1,
	 tier_policy},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL},
};
