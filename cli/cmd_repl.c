/*
 * cli/cmd_repl.c: the nouns whose services are declared before they are implemented:
 * repl (ReplicationService) and site (SiteService); tier is in cmd_tier.c, group in
 * cmd_group.c. Their verbs check their arguments and call the RPC, so a server that answers
 * `unimplemented` gives a clear "not available on this server yet" and exit 1; they work
 * unchanged once the server implements them.
 */
#include "cli/cli.h"
#include "common/units.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "imgstore/v1/replication.pb-c.h"
#include "imgstore/v1/site.pb-c.h"

#define REPL_SVC "imgstore.v1.ReplicationService/"
#define SITE_SVC "imgstore.v1.SiteService/"

static const char *const modes[] = {"async", "sync", NULL};

static const ims_cli_opt no_opts[] = {{NULL, NULL, NULL}};

static int print_reply(ims_cli *cli, int r, ProtobufCMessage *m)
{
	if (r)
		return r;
	ims_cli_print_message(cli, m);
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}

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
	Imgstore__V1__ReplicationStatus *st = NULL;
	const char *to = ims_cli_opt_value(cli, a, "to"), *mode = ims_cli_opt_value(cli, a, "mode");
	const char *rpo = ims_cli_opt_value(cli, a, "rpo");
	const char *every = ims_cli_opt_value(cli, a, "verify-every");
	ims_spec spec;
	uint64_t secs, n;
	int r;

	if ((r = ims_cli_arg_spec(cli, &spec, a->pos[0], false, false)))
		return r;
	if (!to)
		return ims_cli_usage(cli, "--to is required");
	if ((r = ims_cli_arg_word(cli, "--to", to)))
		return r;
	if (mode && (r = ims_cli_arg_choice(cli, "mode", mode, modes)))
		return r;
	if (rpo) {
		if ((r = ims_cli_arg_duration(cli, &secs, "rpo", rpo, UINT32_MAX)))
			return r;
		if (secs == 0)
			return ims_cli_usage(
				cli, "--rpo: must be at least 1s (for RPO 0 use --mode sync)");
		if (mode && !strcmp(mode, "sync"))
			return ims_cli_usage(cli, "--rpo applies to --mode async only");
		req.rpo_seconds = (uint32_t)secs;
	}
	if (every) {
		if ((r = ims_cli_arg_uint(cli, &n, "verify-every", every, 1000000)))
			return r;
		req.verify_every = (uint32_t)n;
	}
	ims_cli_spec_to_msg(&ms, &spec);
	req.image = &ms;
	req.target_site = (char *)to;
	req.mode = mode ? (char *)mode : (char *)"async";
	r = ims_cli_call(cli, REPL_SVC "EnableReplication", &req,
			 &imgstore__v1__replication_status__descriptor, &st);
	return print_reply(cli, r, st ? &st->base : NULL);
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
	{"no-wait", NULL, "print the operation id and return without waiting"},
	{NULL, NULL, NULL},
};
static const ims_cli_opt failover_opts[] = {
	{"to", "SITE", "the site to promote (required)"},
	{"force", NULL, "unplanned: promote at the last sealed snapshot without the primary"},
	{"wait", "DURATION",
	 "planned: how long hosts get to release their leases before they are fenced (default "
	 "30s)"},
	{"from", "SITE", "instead of an image: every image whose primary is SITE"},
	{"pool", "POOL", "with --from: the pool (default: the daemon's)"},
	{"no-wait", NULL, "print the operation id and return without waiting"},
	{NULL, NULL, NULL},
};

/* The request of disable, sync, failover, failback and resync. */
static int image_request(ims_cli *cli, const ims_cli_args *a, bool to_required, ims_spec *spec,
			 Imgstore__V1__ImageSpec *ms, Imgstore__V1__ReplicationImageRequest *req)
{
	const char *to = ims_cli_opt_value(cli, a, "to");
	int r;

	imgstore__v1__replication_image_request__init(req);
	if ((r = ims_cli_arg_spec(cli, spec, a->pos[0], false, false)))
		return r;
	if (!to && to_required)
		return ims_cli_usage(cli, "--to is required");
	if (to && (r = ims_cli_arg_word(cli, "--to", to)))
		return r;
	ims_cli_spec_to_msg(ms, spec);
	req->image = ms;
	req->target_site = to ? (char *)to : (char *)"";
	return 0;
}

static int repl_disable(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ReplicationImageRequest req;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__ReplicationStatus *st = NULL;
	ims_spec spec;
	int r;

	if ((r = image_request(cli, a, false, &spec, &ms, &req)))
		return r;
	r = ims_cli_call(cli, REPL_SVC "DisableReplication", &req,
			 &imgstore__v1__replication_status__descriptor, &st);
	return print_reply(cli, r, st ? &st->base : NULL);
}

static int repl_op(ims_cli *cli, const ims_cli_args *a, const char *method, bool to_required)
{
	Imgstore__V1__ReplicationImageRequest req;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__Operation *op = NULL;
	ims_cli_wait_opts w = {.no_wait = ims_cli_opt_flag(cli, a, "no-wait")};
	ims_spec spec;
	int r;

	if ((r = image_request(cli, a, to_required, &spec, &ms, &req)))
		return r;
	if (cli->verb->opts == failover_opts) {
		const char *wait = ims_cli_opt_value(cli, a, "wait");
		uint64_t secs = 0;
		req.force = ims_cli_opt_flag(cli, a, "force");
		if (wait && (ims_parse_duration(&secs, wait) < 0 || secs == 0 || secs > 86400))
			return ims_cli_usage(cli, "--wait takes a duration from 1s to 1d, not '%s'",
					     wait);
		req.wait_seconds = (uint32_t)secs;
	}
	if ((r = ims_cli_call(cli, method, &req, &imgstore__v1__operation__descriptor, &op)))
		return r;
	return ims_cli_finish_op(cli, op, &w);
}

static int repl_sync(ims_cli *cli, const ims_cli_args *a)
{
	return repl_op(cli, a, REPL_SVC "SyncImage", false);
}

static int repl_failover_all(ims_cli *cli, const ims_cli_args *a, const char *from)
{
	Imgstore__V1__ReplicationImageRequest req;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__Operation *op = NULL;
	ims_cli_wait_opts w = {.no_wait = ims_cli_opt_flag(cli, a, "no-wait")};
	const char *to = ims_cli_opt_value(cli, a, "to"), *pool = ims_cli_opt_value(cli, a, "pool");
	const char *wait = ims_cli_opt_value(cli, a, "wait");
	uint64_t secs = 0;
	int r;

	if (!to)
		return ims_cli_usage(cli, "--to is required");
	if ((r = ims_cli_arg_word(cli, "--to", to)) ||
	    (r = ims_cli_arg_word(cli, "--from", from)) ||
	    (pool && (r = ims_cli_arg_word(cli, "--pool", pool))))
		return r;
	if (wait && (ims_parse_duration(&secs, wait) < 0 || secs == 0 || secs > 86400))
		return ims_cli_usage(cli, "--wait takes a duration from 1s to 1d, not '%s'", wait);
	imgstore__v1__replication_image_request__init(&req);
	imgstore__v1__image_spec__init(&ms);
	ms.pool = pool ? (char *)pool : (char *)"";
	req.image = &ms;
	req.target_site = (char *)to;
	req.from_site = (char *)from;
	req.force = ims_cli_opt_flag(cli, a, "force");
	req.wait_seconds = (uint32_t)secs;
	if ((r = ims_cli_call(cli, REPL_SVC "Failover", &req, &imgstore__v1__operation__descriptor,
			      &op)))
		return r;
	return ims_cli_finish_op(cli, op, &w);
}

static int repl_failover(ims_cli *cli, const ims_cli_args *a)
{
	const char *from = ims_cli_opt_value(cli, a, "from");
	if (from && a->npos)
		return ims_cli_usage(cli, "name an image or --from SITE, not both");
	if (from)
		return repl_failover_all(cli, a, from);
	if (!a->npos)
		return ims_cli_usage(
			cli, "name an image, or --from SITE for every image whose primary is SITE");
	return repl_op(cli, a, REPL_SVC "Failover", true);
}

static int repl_failback(ims_cli *cli, const ims_cli_args *a)
{
	return repl_op(cli, a, REPL_SVC "Failback", false);
}

static int repl_resync(ims_cli *cli, const ims_cli_args *a)
{
	return repl_op(cli, a, REPL_SVC "Resync", false);
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
	Imgstore__V1__VerifyResponse *v = NULL;
	const char *to = ims_cli_opt_value(cli, a, "to"), *snap = ims_cli_opt_value(cli, a, "snap");
	const char *chunk = ims_cli_opt_value(cli, a, "chunk");
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_spec(cli, &spec, a->pos[0], false, false)))
		return r;
	if (to && (r = ims_cli_arg_word(cli, "--to", to)))
		return r;
	if (snap && (r = ims_cli_arg_name(cli, IMS_NAME_SNAP, "--snap", snap)))
		return r;
	if (chunk && (r = ims_cli_arg_chunk(cli, &req.chunk_size, chunk)))
		return r;
	ims_cli_spec_to_msg(&ms, &spec);
	req.image = &ms;
	req.target_site = to ? (char *)to : (char *)"";
	req.snapshot = snap ? (char *)snap : (char *)"";
	if ((r = ims_cli_call(cli, REPL_SVC "VerifyImage", &req,
			      &imgstore__v1__verify_response__descriptor, &v)))
		return r;
	ims_cli_print_message(cli, &v->base);
	if (cli->format != IMS_CLI_FORMAT_JSON)
		for (size_t i = 0; i < v->n_mismatches; i++)
			fprintf(cli->out, "  differs at offset %" PRIu64 ", %" PRIu64 " bytes\n",
				v->mismatches[i]->offset, v->mismatches[i]->length);
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
	{"ERROR", "error", NULL},
	{NULL, NULL, NULL},
};

static int repl_status(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ReplicationStatusRequest req = IMGSTORE__V1__REPLICATION_STATUS_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__ReplicationStatusResponse *resp = NULL;
	ims_spec spec;
	int r;

	memset(&spec, 0, sizeof(spec));
	if (a->npos == 1 && (r = ims_cli_arg_spec(cli, &spec, a->pos[0], false, false)))
		return r;
	ims_cli_spec_to_msg(&ms, &spec);
	req.image = &ms;
	if ((r = ims_cli_call(cli, REPL_SVC "GetReplicationStatus", &req,
			      &imgstore__v1__replication_status_response__descriptor, &resp)))
		return r;
	ims_cli_print_list(cli, (ProtobufCMessage *const *)resp->statuses, resp->n_statuses,
			   repl_columns);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

const ims_cli_verb ims_cli__repl_verbs[] = {
	{"repl", "enable",
	 "POOL/IMAGE --to SITE [--mode async|sync] [--rpo DURATION] [--verify-every N]",
	 "Replicate an image to another site.", enable_opts, 1, 1, repl_enable},
	{"repl", "disable", "POOL/IMAGE [--to SITE]", "Stop replicating an image.", image_to_opts,
	 1, 1, repl_disable},
	{"repl", "status", "[POOL/IMAGE]", "Show the replication of an image, or of every image.",
	 no_opts, 0, 1, repl_status},
	{"repl", "sync", "POOL/IMAGE [--to SITE] [--no-wait]",
	 "Seal the image's state now on the site it replicates to (--to: which one, if several).",
	 op_to_opts, 1, 1, repl_sync},
	{"repl", "verify", "POOL/IMAGE [--to SITE] [--snap NAME] [--chunk SIZE]",
	 "Compare the copy with the primary by checksums; exit 1 if they differ.", verify_opts, 1,
	 1, repl_verify},
	{"repl", "failover",
	 "POOL/IMAGE|--from SITE [--pool POOL] --to SITE [--force] [--wait DURATION] [--no-wait]",
	 "Make the copy on SITE the primary. Planned: ask the primary's site; hosts are fenced, "
	 "nothing is lost. --force: ask SITE when the primary's site is lost. --from: every image "
	 "whose primary is that site.",
	 failover_opts, 0, 1, repl_failover},
	{"repl", "failback", "POOL/IMAGE [--to SITE] [--no-wait]",
	 "Planned failover back to the site this primary replicates to; only the delta ships.",
	 op_to_opts, 1, 1, repl_failback},
	{"repl", "resync", "POOL/IMAGE [--to SITE] [--no-wait]",
	 "Make an old primary that came back a secondary again: its writes since the newest common "
	 "snapshot are kept as a recovery snapshot, then only the delta ships.",
	 op_to_opts, 1, 1, repl_resync},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL},
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

static int site_ls(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ListSitesRequest req = IMGSTORE__V1__LIST_SITES_REQUEST__INIT;
	Imgstore__V1__ListSitesResponse *resp = NULL;
	int r;

	(void)a;
	if ((r = ims_cli_call(cli, SITE_SVC "ListSites", &req,
			      &imgstore__v1__list_sites_response__descriptor, &resp)))
		return r;
	ims_cli_print_list(cli, (ProtobufCMessage *const *)resp->sites, resp->n_sites,
			   site_columns);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

static int site_status(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__GetSiteStatusRequest req = IMGSTORE__V1__GET_SITE_STATUS_REQUEST__INIT;
	Imgstore__V1__Site *site = NULL;
	int r;

	if ((r = ims_cli_arg_word(cli, "site name", a->pos[0])))
		return r;
	req.name = (char *)a->pos[0];
	r = ims_cli_call(cli, SITE_SVC "GetSiteStatus", &req, &imgstore__v1__site__descriptor,
			 &site);
	return print_reply(cli, r, site ? &site->base : NULL);
}

const ims_cli_verb ims_cli__site_verbs[] = {
	{"site", "ls", "",
	 "List the sites: this one and its peers, whether they answer, and the lag of the "
	 "replication to them.",
	 no_opts, 0, 0, site_ls},
	{"site", "status", "NAME",
	 "Show one site: health, last answer, fsid, replication pairs and lag.", no_opts, 1, 1,
	 site_status},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL},
};
