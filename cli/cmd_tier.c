/*
 * cli/cmd_tier.c: the tier noun (TierService): push, restore, ls, scrub, gc and the policies.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/units.h"
#include "imgstore/v1/tier.pb-c.h"

#define TIER_SVC     "imgstore.v1.TierService/"
#define TIER_SERVICE (&imgstore__v1__tier_service__descriptor)

static const char *const afters[] = {"trash", "purge", "keep", NULL};

/* ---- tier ---- */

static const ims_cli_opt push_opts[] = {
	{"to", "TARGET", "the object storage target (required)"},
	{"after", "trash|purge|keep", "what happens to the image once pushed (default: trash)"},
	IMS_CLI_OPT_NO_WAIT,
	IMS_CLI_OPT_END,
};

static int tier_push(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__PushRequest req = IMGSTORE__V1__PUSH_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], true, false)) ||
	    (r = ims_cli_opt_word(cli, &req.target, a, "to", true)) ||
	    (r = ims_cli_opt_choice(cli, &req.after, a, "after", afters, "")))
		return r;
	req.image = &ms;
	return ims_cli_call_op(cli, a, TIER_SVC "Push", &req);
}

static const ims_cli_opt restore_opts[] = {
	{"to", "POOL/IMAGE", "where to restore (default: where it was pushed from)"},
	{"target", "TARGET", "the object storage target (default: the one the catalog names)"},
	IMS_CLI_OPT_NO_WAIT,
	IMS_CLI_OPT_END,
};

static int tier_restore(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__RestoreRequest req = IMGSTORE__V1__RESTORE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	const char *to = ims_cli_opt_value(cli, a, "to");
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_word(cli, "cold image name", a->pos[0])) ||
	    (r = ims_cli_arg_image(cli, &spec, &ms, to, false, false)) ||
	    (r = ims_cli_opt_word(cli, &req.target, a, "target", false)))
		return r;
	req.name = (char *)a->pos[0];
	req.to = &ms;
	return ims_cli_call_op(cli, a, TIER_SVC "Restore", &req);
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
	int r;

	if ((r = ims_cli_opt_word(cli, &req.target, a, "target", false)))
		return r;
	return ims_cli_call_list(cli, TIER_SVC "ListCold", &req,
				 &imgstore__v1__list_cold_response__descriptor, "images",
				 cold_columns);
}

static const ims_cli_opt scrub_opts[] = {
	{"target", "TARGET", "only this object storage target"},
	{"deep", NULL, "read and check every chunk, not only that it exists"},
	IMS_CLI_OPT_NO_WAIT,
	IMS_CLI_OPT_END,
};

static int tier_scrub(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ScrubRequest req = IMGSTORE__V1__SCRUB_REQUEST__INIT;
	int r;

	if ((r = ims_cli_opt_word(cli, &req.target, a, "target", false)))
		return r;
	req.deep = ims_cli_opt_flag(cli, a, "deep");
	return ims_cli_call_op(cli, a, TIER_SVC "Scrub", &req);
}

static const ims_cli_opt gc_opts[] = {
	{"target", "TARGET", "only this object storage target"},
	{"grace", "DURATION", "keep unreferenced chunks younger than this (default: 1d)"},
	IMS_CLI_OPT_NO_WAIT,
	IMS_CLI_OPT_END,
};

static int tier_gc(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ScrubRequest req = IMGSTORE__V1__SCRUB_REQUEST__INIT;
	const char *grace = ims_cli_opt_value(cli, a, "grace");
	uint64_t secs = 0;
	int r;

	if ((r = ims_cli_opt_word(cli, &req.target, a, "target", false)))
		return r;
	if (grace && (r = ims_cli_arg_duration(cli, &secs, "grace", grace, 365ull * 86400)))
		return r;
	req.collect_garbage = 1;
	req.grace_seconds = secs;
	return ims_cli_call_op(cli, a, TIER_SVC "Scrub", &req);
}

static const char *fmt_cold_after(char *buf, size_t len, const ProtobufCMessage *row)
{
	return ims_format_duration(buf, len,
				   ((const Imgstore__V1__TierPolicy *)row)->cold_after_seconds);
}

static const char *fmt_policy_target(char *buf, size_t len, const ProtobufCMessage *row)
{
	const char *t = ((const Imgstore__V1__TierPolicy *)row)->target;
	snprintf(buf, len, "%s", t && t[0] ? t : "(the only one)");
	return buf;
}

static const ims_cli_column policy_columns[] = {
	{"POOL", "pool", NULL},
	{"COLD AFTER", NULL, fmt_cold_after},
	{"TARGET", NULL, fmt_policy_target},
	{"AFTER", "after", NULL},
	{"UPDATED", "updated_unix", NULL},
	{NULL, NULL, NULL},
};

static const char *fmt_action(char *buf, size_t len, const ProtobufCMessage *row)
{
	snprintf(buf, len, "%s",
		 ((const Imgstore__V1__ColdCandidate *)row)->push ? "push" : "skip");
	return buf;
}

static const char *fmt_last_access(char *buf, size_t len, const ProtobufCMessage *row)
{
	return ims_cli_format_time(buf, len,
				   ((const Imgstore__V1__ColdCandidate *)row)->last_access_unix);
}

static const ims_cli_column candidate_columns[] = {
	{"IMAGE", "image", NULL},
	{"ACTION", NULL, fmt_action},
	{"LAST ACCESS", NULL, fmt_last_access},
	{"REASON", "reason", NULL},
	{NULL, NULL, NULL},
};

static int call_candidates(ims_cli *cli, const Imgstore__V1__ColdCandidatesRequest *req)
{
	return ims_cli_call_list(cli, TIER_SVC "ColdCandidates", req,
				 &imgstore__v1__cold_candidates_response__descriptor, "images",
				 candidate_columns);
}

static const ims_cli_opt policy_set_opts[] = {
	{"cold-after", "DURATION", "push images idle for longer than this (required)"},
	{"to", "TARGET", "the object storage target (default: the only one configured)"},
	{"after", "trash|purge|keep", "what happens to a pushed image (default: trash)"},
	{"dry-run", NULL, "list what the policy would push now, and do not save it"},
	{NULL, NULL, NULL},
};

static int tier_policy_set(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__TierPolicy pol = IMGSTORE__V1__TIER_POLICY__INIT;
	const char *cold = ims_cli_opt_value(cli, a, "cold-after");
	uint64_t secs = 0;
	int r;

	if ((r = ims_cli_arg_name(cli, IMS_NAME_POOL, "POOL", a->pos[0])))
		return r;
	if (!cold)
		return ims_cli_usage(cli, "--cold-after is required");
	if ((r = ims_cli_arg_duration(cli, &secs, "cold-after", cold, 10ull * 365 * 86400)))
		return r;
	if (secs == 0)
		return ims_cli_usage(cli, "--cold-after must be at least 1s");
	if ((r = ims_cli_opt_word(cli, &pol.target, a, "to", false)) ||
	    (r = ims_cli_opt_choice(cli, &pol.after, a, "after", afters, "")))
		return r;
	pol.pool = (char *)a->pos[0];
	pol.cold_after_seconds = secs;
	if (ims_cli_opt_flag(cli, a, "dry-run")) {
		Imgstore__V1__ColdCandidatesRequest req =
			IMGSTORE__V1__COLD_CANDIDATES_REQUEST__INIT;
		req.pool = (char *)a->pos[0];
		req.policy = &pol;
		return call_candidates(cli, &req);
	}
	Imgstore__V1__SetPolicyRequest req = IMGSTORE__V1__SET_POLICY_REQUEST__INIT;
	req.policy = &pol;
	return ims_cli_call_list(cli, TIER_SVC "SetPolicy", &req,
				 &imgstore__v1__tier_policy__descriptor, NULL, policy_columns);
}

static int tier_policy_show(ims_cli *cli, const ims_cli_args *a)
{
	int r;

	if (a->npos == 1) {
		Imgstore__V1__GetPolicyRequest req = IMGSTORE__V1__GET_POLICY_REQUEST__INIT;
		if ((r = ims_cli_arg_name(cli, IMS_NAME_POOL, "POOL", a->pos[0])))
			return r;
		req.pool = (char *)a->pos[0];
		return ims_cli_call_list(cli, TIER_SVC "GetPolicy", &req,
					 &imgstore__v1__tier_policy__descriptor, NULL,
					 policy_columns);
	}
	Imgstore__V1__ListPoliciesRequest req = IMGSTORE__V1__LIST_POLICIES_REQUEST__INIT;
	return ims_cli_call_list(cli, TIER_SVC "ListPolicies", &req,
				 &imgstore__v1__list_policies_response__descriptor, "policies",
				 policy_columns);
}

static const ims_cli_opt policy_run_opts[] = {
	{"dry-run", NULL, "list what the pool's policy would push now (required)"},
	{NULL, NULL, NULL},
};

static int tier_policy_run(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ColdCandidatesRequest req = IMGSTORE__V1__COLD_CANDIDATES_REQUEST__INIT;
	int r;

	if ((r = ims_cli_arg_name(cli, IMS_NAME_POOL, "POOL", a->pos[0])))
		return r;
	if (!ims_cli_opt_flag(cli, a, "dry-run"))
		return ims_cli_usage(cli,
				     "only --dry-run is supported: imgstored applies the policies "
				     "every [defaults] tier_scan_interval");
	req.pool = (char *)a->pos[0];
	return call_candidates(cli, &req);
}

const ims_cli_verb ims_cli__tier_verbs[] = {
	{"tier", "push", "POOL/IMAGE[@SNAP] --to TARGET [--after trash|purge|keep] [--no-wait]",
	 "Move an image (or a snapshot) out to object storage.", push_opts, 1, 1, tier_push, NULL},
	{"tier", "restore", "NAME [--to POOL/IMAGE] [--target TARGET] [--no-wait]",
	 "Bring a cold image back from object storage.", restore_opts, 1, 1, tier_restore, NULL},
	{"tier", "ls", "[--target TARGET]", "List the cold images.", target_opts, 0, 0, tier_ls,
	 NULL},
	{"tier", "scrub", "[--target TARGET] [--deep] [--no-wait]",
	 "Check the cold images' chunks on object storage.", scrub_opts, 0, 0, tier_scrub, NULL},
	{"tier", "gc", "[--target TARGET] [--grace DURATION] [--no-wait]",
	 "Delete the chunks no cold image references any more.", gc_opts, 0, 0, tier_gc, NULL},
	{"tier", "policy set",
	 "POOL --cold-after DURATION [--to TARGET] [--after trash|purge|keep] [--dry-run]",
	 "Push a pool's images once idle for a while (--dry-run: list which).", policy_set_opts, 1,
	 1, tier_policy_set, NULL},
	{"tier", "policy show", "[POOL]", "Show the tiering policies.", ims_cli__no_opts, 0, 1,
	 tier_policy_show, NULL},
	{"tier", "policy rm", "POOL", "Remove a pool's tiering policy.", ims_cli__no_opts, 1, 1,
	 NULL,
	 &(const ims_cli_call_spec){TIER_SERVICE, "RemovePolicy", IMS_CLI_POS_POOL, "pool", "POOL",
				    IMS_CLI_REPLY_NONE, NULL, NULL, NULL}},
	{"tier", "policy run", "POOL --dry-run",
	 "List the images the pool's policy would push now, and why the others stay.",
	 policy_run_opts, 1, 1, tier_policy_run, NULL},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
