/*
 * cli/cmd_host.c: imgstore host VERB: register, and the leases hosts hold on images
 * (lease acquire, renew, release, ls).
 */
#include "cli/cli.h"

#include <string.h>

#include "imgstore/v1/host.pb-c.h"

#define HOST_SVC     "imgstore.v1.HostService/"
#define HOST_SERVICE (&imgstore__v1__host_service__descriptor)

static const ims_cli_opt register_opts[] = {
	{"address", "ADDR", "how the host is reached (an IP address or a DNS name)"},
	{NULL, NULL, NULL},
};

static int host_register(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__RegisterHostRequest req = IMGSTORE__V1__REGISTER_HOST_REQUEST__INIT;
	int r;

	if ((r = ims_cli_arg_word(cli, "host name", a->pos[0])) ||
	    (r = ims_cli_opt_word(cli, &req.address, a, "address", false)))
		return r;
	req.name = (char *)a->pos[0];
	return ims_cli_call_show(cli, HOST_SVC "RegisterHost", &req,
				 &imgstore__v1__host__descriptor);
}

static const ims_cli_opt acquire_opts[] = {
	{"host", "NAME", "the host that takes the lease (required)"},
	{"ttl", "DURATION", "how long the lease lasts unless renewed (default 60s)"},
	{NULL, NULL, NULL},
};

static int lease_acquire(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__AcquireLeaseRequest req = IMGSTORE__V1__ACQUIRE_LEASE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)) ||
	    (r = ims_cli_opt_word(cli, &req.host, a, "host", true)) ||
	    (r = ims_cli_opt_seconds(cli, &req.ttl_seconds, a, "ttl", "")))
		return r;
	req.image = &ms;
	return ims_cli_call_show(cli, HOST_SVC "AcquireLease", &req,
				 &imgstore__v1__lease__descriptor);
}

static const ims_cli_opt renew_opts[] = {
	{"ttl", "DURATION", "how long the lease lasts from now (default 60s)"},
	{NULL, NULL, NULL},
};

static int lease_renew(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__RenewLeaseRequest req = IMGSTORE__V1__RENEW_LEASE_REQUEST__INIT;
	int r;

	if ((r = ims_cli_arg_word(cli, "lease id", a->pos[0])) ||
	    (r = ims_cli_opt_seconds(cli, &req.ttl_seconds, a, "ttl", "")))
		return r;
	req.lease_id = (char *)a->pos[0];
	return ims_cli_call_show(cli, HOST_SVC "RenewLease", &req,
				 &imgstore__v1__lease__descriptor);
}

static const ims_cli_column lease_columns[] = {
	{"ID", "id", NULL},
	{"IMAGE", "image", NULL},
	{"HOST", "host", NULL},
	{"ACQUIRED", "acquired_unix", NULL},
	{"EXPIRES", "expires_unix", NULL},
	{"GENERATION", "generation", NULL},
	{NULL, NULL, NULL},
};

static int lease_ls(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ListLeasesRequest req = IMGSTORE__V1__LIST_LEASES_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r;

	memset(&spec, 0, sizeof(spec));
	if (a->npos == 1) {
		/* POOL/IMAGE, or a POOL alone for every lease in it */
		if (strchr(a->pos[0], '/')) {
			if ((r = ims_cli_arg_spec(cli, &spec, a->pos[0], false, false)))
				return r;
		} else {
			if ((r = ims_cli_arg_name(cli, IMS_NAME_POOL, "POOL", a->pos[0])))
				return r;
			snprintf(spec.pool, sizeof(spec.pool), "%s", a->pos[0]);
		}
	}
	ims_cli_spec_to_msg(&ms, &spec);
	req.image = &ms;
	return ims_cli_call_list(cli, HOST_SVC "ListLeases", &req,
				 &imgstore__v1__list_leases_response__descriptor, "leases",
				 lease_columns);
}

const ims_cli_verb ims_cli__host_verbs[] = {
	{"host", "register", "NAME [--address ADDR]", "Register a hypervisor host (or update it).",
	 register_opts, 1, 1, host_register, NULL},
	{"host", "lease acquire", "POOL/IMAGE --host NAME [--ttl DURATION]",
	 "Take the lease that lets a host use an image.", acquire_opts, 1, 1, lease_acquire, NULL},
	{"host", "lease renew", "LEASE_ID [--ttl DURATION]", "Extend a lease before it expires.",
	 renew_opts, 1, 1, lease_renew, NULL},
	{"host", "lease release", "LEASE_ID", "Give a lease up.", ims_cli__no_opts, 1, 1, NULL,
	 &(const ims_cli_call_spec){HOST_SERVICE, "ReleaseLease", IMS_CLI_POS_WORD, "lease_id",
				    "lease id", IMS_CLI_REPLY_EMPTY, NULL, NULL, NULL}},
	{"host", "lease ls", "[POOL/IMAGE|POOL]", "List the leases on an image, or in a pool.",
	 ims_cli__no_opts, 0, 1, lease_ls, NULL},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
