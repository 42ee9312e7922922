/*
 * ims-import CEPH_CONF POOL/IMAGE FILE [CONCURRENCY]: import FILE with imgstore's store
 * library and print one JSON line with the time taken. The benchmark driver until the CLI
 * and daemon exist; it runs the same ims_image_import_file() the daemon runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/error.h"
#include "common/spec.h"
#include "store/site.h"
#include "store/transfer.h"

int main(int argc, char **argv)
{
	ims_site *site = NULL;
	ims_spec spec;
	struct timespec t0, t1;
	ims_transfer_result res;

	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: ims-import CEPH_CONF POOL/IMAGE FILE [CONCURRENCY]\n");
		return 2;
	}
	if (ims_spec_parse(&spec, argv[2], NULL, false, false) < 0) {
		fprintf(stderr, "ims-import: %s\n", ims_error_last());
		return 2;
	}
	ims_site_opts so = IMS_SITE_OPTS_INIT;
	so.name = "bench";
	so.ceph_conf = argv[1];
	if (ims_site_connect(&site, &so) < 0) {
		fprintf(stderr, "ims-import: %s\n", ims_error_last());
		return 1;
	}
	ims_transfer_opts o = IMS_TRANSFER_OPTS_INIT;
	if (argc == 5)
		o.concurrency = (unsigned)atoi(argv[4]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = ims_image_import_file(&res, site, spec.pool, spec.image, argv[3], &o);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ims_site_close(site);
	if (r < 0) {
		fprintf(stderr, "ims-import: %s\n", ims_error_last());
		return 1;
	}
	printf("{\"seconds\": %.3f, \"virtual_size\": %llu, \"bytes_data\": %llu, \"bytes_zero\": "
	       "%llu}\n",
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
	       (unsigned long long)res.virtual_size, (unsigned long long)res.bytes_data,
	       (unsigned long long)res.bytes_zero);
	return 0;
}
