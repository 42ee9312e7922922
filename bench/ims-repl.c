/*
 * ims-repl CEPH_CONF_A CEPH_CONF_B POOL/IMAGE [CONCURRENCY [INFLIGHT_MIB]]: one replication cycle
 * of the image from site a to site b with the replicator library (what imgstored's scheduler runs),
 * printed as one JSON line.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/error.h"
#include "common/log.h"
#include "common/spec.h"
#include "replicator/replicator.h"

static ims_site *connect_site(const char *name, const char *conf)
{
	ims_site_opts o = IMS_SITE_OPTS_INIT;
	ims_site *s = NULL;
	o.name = name;
	o.ceph_conf = conf;
	if (ims_site_connect(&s, &o) < 0) {
		fprintf(stderr, "ims-repl: %s\n", ims_error_last());
		exit(1);
	}
	return s;
}

int main(int argc, char **argv)
{
	ims_spec spec;
	if (argc < 4 || argc > 6 || ims_spec_parse(&spec, argv[3], NULL, false, false) < 0) {
		fprintf(stderr, "usage: ims-repl CEPH_CONF_A CEPH_CONF_B POOL/IMAGE [CONCURRENCY "
				"[INFLIGHT_MIB]]\n");
		return 2;
	}
	mallopt(M_MMAP_THRESHOLD, 128 * 1024); /* as imgstored does (daemon/main.c) */
	if (getenv("IMS_DEBUG"))
		ims_log_set_level(IMS_LOG_DEBUG); /* the cycle's timings, phase by phase */
	ims_site *a = connect_site("a", argv[1]), *b = connect_site("b", argv[2]);
	ims_repl_opts o = IMS_REPL_OPTS_INIT;
	if (argc >= 5)
		o.concurrency = (unsigned)atoi(argv[4]);
	if (argc == 6)
		o.inflight_bytes = strtoull(argv[5], NULL, 10) << 20;
	ims_repl_result res;
	int r = ims_repl_sync(&res, a, b, spec.pool, spec.image, &o);
	ims_site_close(a);
	ims_site_close(b);
	if (r < 0) {
		fprintf(stderr, "ims-repl: %s\n", ims_error_last());
		return 1;
	}
	printf("{\"seconds\": %.3f, \"full\": %s, \"bytes_copied\": %llu, \"bytes_zeroed\": %llu, "
	       "\"sealed\": \"%s\"}\n",
	       res.seconds, res.full ? "true" : "false", (unsigned long long)res.bytes_copied,
	       (unsigned long long)res.bytes_discarded, res.sealed);
	return 0;
}
