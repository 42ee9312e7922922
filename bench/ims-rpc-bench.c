/*
 * ims-rpc-bench SERVER TOKEN_FILE CA_FILE POOL/IMAGE CLIENTS SECONDS
 * ims-rpc-bench --direct CEPH_CONF POOL/IMAGE CLIENTS SECONDS
 *
 * CLIENTS threads call ImageService/GetImage in a loop for SECONDS, each with its own
 * connection (keep-alive), and print one JSON line: calls per second and latency
 * percentiles. --direct makes the same lookup in-process through the store library
 * (ims_image_info_get), the floor under any transport.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/spec.h"
#include "imgstore/v1/image.pb-c.h"
#include "proto/client.h"
#include "store/image.h"
#include "store/site.h"

typedef struct {
	const char *server, *token, *ca;
	ims_spec spec;
	ims_site *site; /* --direct */
	double seconds;
	double *lat;
	size_t n, cap;
	unsigned errors;
} worker;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void record(worker *w, double dt)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 4096;
		w->lat = realloc(w->lat, w->cap * sizeof(*w->lat));
		if (!w->lat)
			exit(1);
	}
	w->lat[w->n++] = dt;
}

static void *run(void *arg)
{
	worker *w = arg;
	ims_client *c = NULL;
	if (!w->site) {
		ims_client_opts o = IMS_CLIENT_OPTS_INIT;
		o.server = w->server;
		o.token = w->token;
		o.ca_file = w->ca;
		if (ims_client_open(&c, &o) < 0) {
			fprintf(stderr, "ims-rpc-bench: %s\n", ims_error_last());
			exit(1);
		}
	}
	Imgstore__V1__ImageSpec s = IMGSTORE__V1__IMAGE_SPEC__INIT;
	s.pool = w->spec.pool;
	s.image = w->spec.image;
	Imgstore__V1__GetImageRequest req = IMGSTORE__V1__GET_IMAGE_REQUEST__INIT;
	req.image = &s;
	double end = now() + w->seconds;
	while (now() < end) {
		double t0 = now();
		int r;
		if (c) {
			Imgstore__V1__Image *img = NULL;
			r = ims_client_call(c, "imgstore.v1.ImageService/GetImage", &req.base,
					    &imgstore__v1__image__descriptor,
					    (ProtobufCMessage **)&img);
			if (img)
				protobuf_c_message_free_unpacked(&img->base, NULL);
		} else {
			ims_image_info *info = NULL;
			r = ims_image_info_get(&info, w->site, w->spec.pool, w->spec.image);
			ims_image_info_free(info);
		}
		if (r < 0)
			w->errors++;
		else
			record(w, now() - t0);
	}
	ims_client_close(c);
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static char *read_token(const char *path)
{
	static char buf[256];
	FILE *f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof(buf), f)) {
		fprintf(stderr, "ims-rpc-bench: cannot read '%s'\n", path);
		exit(2);
	}
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf;
}

int main(int argc, char **argv)
{
	worker base;
	memset(&base, 0, sizeof(base));
	int nclients;
	const char *spec;
	if (argc == 6 && strcmp(argv[1], "--direct") == 0) {
		ims_site_opts so = IMS_SITE_OPTS_INIT;
		so.name = "bench";
		so.ceph_conf = argv[2];
		if (ims_site_connect(&base.site, &so) < 0) {
			fprintf(stderr, "ims-rpc-bench: %s\n", ims_error_last());
			return 1;
		}
		spec = argv[3];
		nclients = atoi(argv[4]);
		base.seconds = atof(argv[5]);
	} else if (argc == 7) {
		base.server = argv[1];
		base.token = read_token(argv[2]);
		base.ca = argv[3][0] ? argv[3] : NULL;
		spec = argv[4];
		nclients = atoi(argv[5]);
		base.seconds = atof(argv[6]);
	} else {
		fprintf(stderr,
			"usage: ims-rpc-bench SERVER TOKEN_FILE CA_FILE POOL/IMAGE CLIENTS "
			"SECONDS\n"
			"       ims-rpc-bench --direct CEPH_CONF POOL/IMAGE CLIENTS SECONDS\n");
		return 2;
	}
	if (ims_spec_parse(&base.spec, spec, NULL, false, false) < 0 || nclients < 1 ||
	    base.seconds <= 0) {
		fprintf(stderr, "ims-rpc-bench: bad arguments\n");
		return 2;
	}
	worker *w = calloc((size_t)nclients, sizeof(*w));
	pthread_t *t = calloc((size_t)nclients, sizeof(*t));
	double t0 = now();
	for (int i = 0; i < nclients; i++) {
		w[i] = base;
		pthread_create(&t[i], NULL, run, &w[i]);
	}
	size_t total = 0;
	unsigned errors = 0;
	for (int i = 0; i < nclients; i++) {
		pthread_join(t[i], NULL);
		total += w[i].n;
		errors += w[i].errors;
	}
	double elapsed = now() - t0;
	double *all = malloc((total ? total : 1) * sizeof(*all));
	size_t k = 0;
	for (int i = 0; i < nclients; i++) {
		memcpy(all + k, w[i].lat, w[i].n * sizeof(*all));
		k += w[i].n;
		free(w[i].lat);
	}
	qsort(all, total, sizeof(*all), cmp);
#define PCT(p) (total ? all[(size_t)((double)(total - 1) * (p))] * 1000.0 : 0.0)
	printf("{\"clients\": %d, \"calls\": %zu, \"errors\": %u, \"calls_per_second\": %.0f, "
	       "\"p50_ms\": %.2f, \"p90_ms\": %.2f, \"p99_ms\": %.2f}\n",
	       nclients, total, errors, (double)total / elapsed, PCT(0.50), PCT(0.90), PCT(0.99));
	free(all);
	free(w);
	free(t);
	ims_site_close(base.site);
	return errors ? 1 : 0;
}
