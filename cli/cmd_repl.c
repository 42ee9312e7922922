/*
 * cli/cmd_repl.c: the nouns whose services are declared before they are implemented:
 * repl (ReplicationService) and site (SiteService); tier is in cmd_tier.c, group in
 * cmd_group.c. Their verbs check their arguments and call the RPC, so a server that answers
 * `unimplemented` gives a clear "not available on this server yet" and exit 1; they work
 * unchanged once the server implements them.
 */
#include "cli/cli.h"
#include "common/units.h"

#include <stdio.h>
#include <string.h>

#include "imgstore/v1/replication.pb-c.h"
#include "imgstore/v1/site.pb-c.h"

#define REPL_SVC     "imgstore.v1.ReplicationService/"
#define REPL_SERVICE (&imgstore__v1__replication_service__descriptor)
#define SITE_SERVICE (&imgstore__v1__site_service__descriptor)

static const char *const modes[] = {"async", "sync", NULL};

/* ---- repl ---- */

static const ims_cli_opt enable_opts[] = {
	{"to", "SITE", "the site that keeps the copy (required)"},
	{"mode", "async|sync", "async: snapshots every RPO (default); sync: RPO 0 at repl sync"},
	{"rpo", "DURATION", "most writes the copy may lag behind (async; default: the daemon's)"},
	{"verify-every", "N",
	 "verify the copy after every N cycles that seal a snapshot (0: never)"},
	{NULL, NULL, NULL},
};

static int repl_enable(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__EnableReplicationRequest req = IMGSTORE__V1__ENABLE_REPLICATION_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	const char *every = ims_cli_opt_value(cli, a, "verify-every");
	ims_spec spec;
	uint64_t n;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)) ||
	    (r = ims_cli_opt_word(cli, &req.target_site, a, "to", true)))
		return r;
	if ((r = ims_cli_opt_choice(cli, &req.mode, a, "mode", modes, "async")))
		return r;
	if ((r = ims_cli_opt_seconds(cli, &req.rpo_seconds, a, "rpo",
				     " (for RPO 0 use --mode sync)")))
		return r;
	if (req.rpo_seconds && !strcmp(req.mode, "sync"))
		return ims_cli_usage(cli, "--rpo applies to --mode async only");
	if (every) {
		if ((r = ims_cli_arg_uint(cli, &n, "verify-every", every, 1000000)))
			return r;
		req.verify_every = (uint32_t)n;
	}
	req.image = &ms;
	return ims_cli_call_show(cli, REPL_SVC "EnableReplication", &req,
				 &imgstore__v1__replication_status__descriptor);
}

static const ims_cli_opt image_to_opts[] = {
	{"to", "SITE",
	 "the peer site (default: the only site the image replicates to; name one if it has "
	 "several)"},
	{NULL, NULL, NULL},
};
static const ims_cli_opt op_to_opts[] = {
	{"to", "SITE",
	 "the peer site (default: the only site the image replicates to; name one if it has "
	 "several)"},
	IMS_CLI_OPT_NO_WAIT,
	IMS_CLI_OPT_END,
};
static const ims_cli_opt failover_opts[] = {
	{"to", "SITE", "the site to promote (required)"},
	{"force", NULL, "unplanned: promote at the last sealed snapshot without the primary"},
	{"wait", "DURATION",
	 "planned: how long hosts get to release their leases before they are fenced (default "
	 "30s)"},
	{"from", "SITE", "instead of an image: every image whose primary is SITE"},
	{"pool", "POOL", "with --from: the pool (default: the daemon's)"},
	IMS_CLI_OPT_NO_WAIT,
	IMS_CLI_OPT_END,
};

/*
 * disable (prints the status) and the operations: sync, failover, failback, resync. Each RPC
 * has its own request, all with the same fields: REPL_FILL fills those of @p req (its image
 * borrows from @p ms and @p spec).
 */
static int repl_fill(ims_cli *cli, const ims_cli_args *a, bool to_required, ims_spec *spec,
		     Imgstore__V1__ImageSpec *ms, Imgstore__V1__ImageSpec **image,
		     char **target_site, protobuf_c_boolean *force, uint32_t *wait_seconds)
{
	int r;

	if ((r = ims_cli_arg_image(cli, spec, ms, a->pos[0], false, false)) ||
	    (r = ims_cli_opt_word(cli, target_site, a, "to", to_required)))
		return r;
	*image = ms;
	if (cli->verb->opts == failover_opts) {
		*force = ims_cli_opt_flag(cli, a, "force");
		if ((r = ims_cli_opt_fence_wait(cli, wait_seconds, a)))
			return r;
	}
	return 0;
}
#define REPL_FILL(cli, a, to_required, spec, ms, req)                                              \
	repl_fill((cli), (a), (to_required), (spec), (ms), &(req).image, &(req).target_site,       \
		  &(req).force, &(req).wait_seconds)

static int repl_disable(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__DisableReplicationRequest req =
		IMGSTORE__V1__DISABLE_REPLICATION_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r = REPL_FILL(cli, a, false, &spec, &ms, req);
	if (r)
		return r;
	return ims_cli_call_show(cli, REPL_SVC "DisableReplication", &req,
				 &imgstore__v1__replication_status__descriptor);
}

static int repl_sync(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__SyncImageRequest req = IMGSTORE__V1__SYNC_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r = REPL_FILL(cli, a, false, &spec, &ms, req);
	return r ? r : ims_cli_call_op(cli, a, REPL_SVC "SyncImage", &req);
}

/* --from SITE instead of an image (given: repl_failover checked that). */
static int repl_failover_all(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__FailoverRequest req;
	Imgstore__V1__ImageSpec ms;
	int r;

	imgstore__v1__failover_request__init(&req);
	imgstore__v1__image_spec__init(&ms);
	if ((r = ims_cli_opt_word(cli, &req.target_site, a, "to", true)) ||
	    (r = ims_cli_opt_word(cli, &req.from_site, a, "from", true)) ||
	    (r = ims_cli_opt_word(cli, &ms.pool, a, "pool", false)) ||
	    (r = ims_cli_opt_fence_wait(cli, &req.wait_seconds, a)))
		return r;
	req.image = &ms;
	req.force = ims_cli_opt_flag(cli, a, "force");
	return ims_cli_call_op(cli, a, REPL_SVC "Failover", &req);
}

static int repl_failover(ims_cli *cli, const ims_cli_args *a)
{
	const char *from = ims_cli_opt_value(cli, a, "from");
	if (from && a->npos)
		return ims_cli_usage(cli, "name an image or --from SITE, not both");
	if (from)
		return repl_failover_all(cli, a);
	if (!a->npos)
		return ims_cli_usage(
			cli, "name an image, or --from SITE for every image whose primary is SITE");
	Imgstore__V1__FailoverRequest req = IMGSTORE__V1__FAILOVER_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r = REPL_FILL(cli, a, true, &spec, &ms, req);
	return r ? r : ims_cli_call_op(cli, a, REPL_SVC "Failover", &req);
}

static int repl_failback(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__FailbackRequest req = IMGSTORE__V1__FAILBACK_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r = REPL_FILL(cli, a, false, &spec, &ms, req);
	return r ? r : ims_cli_call_op(cli, a, REPL_SVC "Failback", &req);
}

static int repl_resync(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ResyncRequest req = IMGSTORE__V1__RESYNC_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r = REPL_FILL(cli, a, false, &spec, &ms, req);
	return r ? r : ims_cli_call_op(cli, a, REPL_SVC "Resync", &req);
}

static const ims_cli_opt verify_opts[] = {
	{"to", "SITE", "the peer site (default: the only site the image replicates to)"},
	{"snap", "NAME", "the snapshot to compare (default: the newest sealed on both sites)"},
	{"chunk", "SIZE", "checksum granularity, a power of two from 4K (default: 64K)"},
	{NULL, NULL, NULL},
};

/* Exit 0 when the copy is equal, 1 when it differs (after the report) or on error. */
static int repl_verify(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__VerifyImageRequest req = IMGSTORE__V1__VERIFY_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__VerifyImageResponse *v = NULL;
	const char *snap = ims_cli_opt_value(cli, a, "snap");
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)) ||
	    (r = ims_cli_opt_word(cli, &req.target_site, a, "to", false)))
		return r;
	if (snap && (r = ims_cli_arg_name(cli, IMS_NAME_SNAP, "--snap", snap)))
		return r;
	if ((r = ims_cli_opt_chunk(cli, &req.chunk_size, a)))
		return r;
	req.image = &ms;
	req.snapshot = snap ? (char *)snap : (char *)"";
	if ((r = ims_cli_call(cli, REPL_SVC "VerifyImage", &req,
			      &imgstore__v1__verify_image_response__descriptor, &v)))
		return r;
	ims_cli_print_message(cli, &v->base);
	if (cli->format != IMS_CLI_FORMAT_JSON)
		ims_cli_print_mismatches(cli, "  ", v);
	r = v->equal ? 0 : 1;
	protobuf_c_message_free_unpacked(&v->base, NULL);
	return r;
}

static const ims_cli_column repl_columns[] = {
	{"IMAGE", "image", NULL},
	{"TARGET", "target", NULL},
	{"ROLE", "role", NULL},
	{"STATE", "state", NULL},
	{"RPO", "rpo_seconds", NULL},
	{"LAG", "lag_seconds", NULL},
	{"LAST_SEALED", "last_sealed_snapshot", NULL},
	{"BY", "replicated_by", NULL},
	{"ERROR", "error", NULL},
	{NULL, NULL, NULL},
};

const ims_cli_verb ims_cli__repl_verbs[] = {
	{"repl", "enable",
	 "POOL/IMAGE --to SITE [--mode async|sync] [--rpo DURATION] [--verify-every N]",
	 "Replicate an image to another site.", enable_opts, 1, 1, repl_enable, NULL},
	{"repl", "disable", "POOL/IMAGE [--to SITE]", "Stop replicating an image.", image_to_opts,
	 1, 1, repl_disable, NULL},
	{"repl", "status", "[POOL/IMAGE]", "Show the replication of an image, or of every image.",
	 ims_cli__no_opts, 0, 1, NULL,
	 &(const ims_cli_call_spec){REPL_SERVICE, "GetReplicationStatus", IMS_CLI_POS_IMAGE,
				    "image", NULL, IMS_CLI_REPLY_LIST, "statuses", repl_columns,
				    NULL}},
	{"repl", "sync", "POOL/IMAGE [--to SITE] [--no-wait]",
	 "Seal the image's state now on the site it replicates to (--to: which one, if several).",
	 op_to_opts, 1, 1, repl_sync, NULL},
	{"repl", "verify", "POOL/IMAGE [--to SITE] [--snap NAME] [--chunk SIZE]",
	 "Compare the copy with the primary by checksums; exit 1 if they differ.", verify_opts, 1,
	 1, repl_verify, NULL},
	{"repl", "failover",
	 "POOL/IMAGE|--from SITE [--pool POOL] --to SITE [--force] [--wait DURATION] [--no-wait]",
	 "Make the copy on SITE the primary. Planned: ask the primary's site; hosts are fenced, "
	 "nothing is lost. --force: ask SITE when the primary's site is lost (back once the copy "
	 "is the primary when that site answers partly; `op wait` follows the rest). --from: "
	 "every image whose primary is that site (forced: back once every image is the primary).",
	 failover_opts, 0, 1, repl_failover, NULL},
	{"repl", "failback", "POOL/IMAGE [--to SITE] [--no-wait]",
	 "Planned failover back to the site this primary replicates to; only the delta ships.",
	 op_to_opts, 1, 1, repl_failback, NULL},
	{"repl", "resync", "POOL/IMAGE [--to SITE] [--no-wait]",
	 "Make an old primary that came back a secondary again: its writes since the newest common "
	 "snapshot are kept as a recovery snapshot, then only the delta ships.",
	 op_to_opts, 1, 1, repl_resync, NULL},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};

/* ---- site ---- */

static const ims_cli_column site_columns[] = {
	{"NAME", "name", NULL},
	{"LOCAL", "local", NULL},
	{"HEALTH", "health", NULL},
	{"LAST_ANSWER", "last_answer_seconds", NULL},
	{"PAIRS", "pairs", NULL},
	{"OVER_RPO", "pairs_over_rpo", NULL},
	{"MAX_LAG", "max_lag_seconds", NULL},
	{"ERROR", "error", NULL},
	{NULL, NULL, NULL},
};

const ims_cli_verb ims_cli__site_verbs[] = {
	{"site", "ls", "",
	 "List the sites: this one and its peers, whether they answer, and the lag of the "
	 "replication to them.",
	 ims_cli__no_opts, 0, 0, NULL,
	 &(const ims_cli_call_spec){SITE_SERVICE, "ListSites", IMS_CLI_POS_NONE, NULL, NULL,
				    IMS_CLI_REPLY_LIST, "sites", site_columns, NULL}},
	{"site", "status", "NAME",
	 "Show one site: health, last answer, fsid, replication pairs and lag.", ims_cli__no_opts,
	 1, 1, NULL,
	 &(const ims_cli_call_spec){SITE_SERVICE, "GetSiteStatus", IMS_CLI_POS_WORD, "name",
				    "site name", IMS_CLI_REPLY_SHOW, NULL, NULL, NULL}},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
