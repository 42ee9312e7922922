/*
 * ims-tier IMGSTORED_CONF TARGET push POOL/IMAGE
 * ims-tier IMGSTORED_CONF TARGET restore POOL/IMAGE [POOL/NEWNAME]
 *
 * One push (the image is kept) or restore with the tier library, against the site and the
 * [s3 TARGET] section of an imgstored configuration (what an imgstored Operation runs),
 * printed as one JSON line.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/config.h"
#include "common/error.h"
#include "common/spec.h"
#include "tier/tier.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	ims_config *cfg = NULL;
	ims_site *site = NULL;
	ims_tier_target *t = NULL;
	ims_spec spec, to;
	int r;

	if (argc < 5 || argc > 6 || (strcmp(argv[3], "push") && strcmp(argv[3], "restore")) ||
	    ims_spec_parse(&spec, argv[4], NULL, false, false) < 0 ||
	    (argc == 6 && ims_spec_parse(&to, argv[5], NULL, false, false) < 0)) {
		fprintf(stderr, "usage: ims-tier IMGSTORED_CONF TARGET push|restore POOL/IMAGE "
				"[POOL/NEWNAME]\n");
		return 2;
	}
	mallopt(M_MMAP_THRESHOLD, 128 * 1024); /* as imgstored does (daemon/main.c) */
	if ((r = ims_config_load(&cfg, argv[1], NULL, NULL)) < 0)
		goto fail;
	const ims_config_s3 *c = ims_config_s3_target(cfg, argv[2]);
	if (!c) {
		r = ims_error_set(-ENOENT, "no [s3 %s] in %s", argv[2], argv[1]);
		goto fail;
	}
	ims_site_opts so = IMS_SITE_OPTS_INIT;
	so.name = cfg->site.name;
	so.ceph_conf = cfg->site.ceph_conf;
	so.client_id = cfg->site.client_id;
	so.keyring = cfg->site.keyring;
	if ((r = ims_site_connect(&site, &so)) < 0 || (r = ims_tier_target_open(&t, c)) < 0)
		goto fail;
	ims_tier_opts o = IMS_TIER_OPTS_INIT;
	o.concurrency = (unsigned)cfg->defaults.concurrency;
	o.after = IMS_TIER_KEEP;
	ims_tier_result res;
	double t0 = now();
	if (!strcmp(argv[3], "push"))
		r = ims_tier_push(&res, t, site, spec.pool, spec.image, NULL, &o);
	else
		r = ims_tier_restore(&res, t, site, argv[4], argc == 6 ? to.pool : NULL,
				     argc == 6 ? to.image : NULL, &o);
	if (r < 0)
		goto fail;
	printf("{\"seconds\": %.3f, \"chunks\": %llu, \"chunks_new\": %llu, \"bytes_data\": %llu, "
	       "\"bytes_sealed\": %llu, \"bytes_zero\": %llu}\n",
	       now() - t0, (unsigned long long)res.chunks, (unsigned long long)res.chunks_new,
	       (unsigned long long)res.bytes_data, (unsigned long long)res.bytes_sealed,
	       (unsigned long long)res.bytes_zero);
	ims_tier_target_free(t);
	ims_site_close(site);
	ims_config_free(cfg);
	return 0;
fail:
	fprintf(stderr, "ims-tier: %s\n", ims_error_last());
	ims_tier_target_free(t);
	ims_site_close(site);
	ims_config_free(cfg);
	return 1;
}
