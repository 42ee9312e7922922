/*
 * proto/metrics.c: request counters and latency histograms of the RPC server, written in the
 * Prometheus text format.
 */
#include "proto/server_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static const double bounds[IMS_RPC__NBUCKETS - 1] = {.001, .005, .01, .05, .1, .5, 1, 5, 10};
static const char *const bound_text[IMS_RPC__NBUCKETS] = {"0.001", "0.005", "0.01", "0.05", "0.1",
							  "0.5",   "1",	    "5",    "10",   "+Inf"};

int ims_rpc__metrics_init(ims_rpc__metrics *mx, size_t nmethods)
{
	memset(mx, 0, sizeof(*mx));
	mx->m = calloc(nmethods + 1, sizeof(*mx->m));
	if (!mx->m)
		return ims_error_set(-ENOMEM, "out of memory for the RPC metrics");
	mx->nmethods = nmethods;
	pthread_mutex_init(&mx->lock, NULL);
	return 0;
}

void ims_rpc__metrics_destroy(ims_rpc__metrics *mx)
{
	if (!mx->m)
		return;
	pthread_mutex_destroy(&mx->lock);
	free(mx->m);
	mx->m = NULL;
}

void ims_rpc__metrics_in_flight(ims_rpc__metrics *mx, int delta)
{
	pthread_mutex_lock(&mx->lock);
	mx->in_flight += delta;
	pthread_mutex_unlock(&mx->lock);
}

int64_t ims_rpc__metrics_get_in_flight(ims_rpc__metrics *mx)
{
	pthread_mutex_lock(&mx->lock);
	int64_t n = mx->in_flight;
	pthread_mutex_unlock(&mx->lock);
	return n;
}

void ims_rpc__metrics_record(ims_rpc__metrics *mx, size_t slot, ims_rpc_code code, double seconds)
{
	size_t b = 0;

	if (slot > mx->nmethods || (unsigned)code > IMS_RPC_UNAUTHENTICATED)
		return;
	while (b < IMS_RPC__NBUCKETS - 1 && seconds > bounds[b])
		b++;
	pthread_mutex_lock(&mx->lock);
	ims_rpc__method_metrics *m = &mx->m[slot];
	m->requests[code]++;
	m->buckets[b]++;
	m->sum += seconds;
	m->count++;
	pthread_mutex_unlock(&mx->lock);
}

void ims_rpc__metrics_write(ims_rpc__metrics *mx, const char *const *names, FILE *out)
{
	size_t n = mx->nmethods + 1;
	ims_rpc__method_metrics *snap = malloc(n * sizeof(*snap));
	int64_t in_flight;

	if (!snap)
		return;
	/* Copy under the lock, format without it. */
	pthread_mutex_lock(&mx->lock);
	memcpy(snap, mx->m, n * sizeof(*snap));
	in_flight = mx->in_flight;
	pthread_mutex_unlock(&mx->lock);

	fputs("# HELP imgstore_rpc_requests_total RPC requests by method and result code.\n"
	      "# TYPE imgstore_rpc_requests_total counter\n",
	      out);
	for (size_t i = 0; i < n; i++)
		for (unsigned c = 0; c <= IMS_RPC_UNAUTHENTICATED; c++)
			if (snap[i].requests[c])
				fprintf(out,
					"imgstore_rpc_requests_total{method=\"%s\",code=\"%s\"} "
					"%" PRIu64 "\n",
					names[i], ims_rpc_code_name((ims_rpc_code)c),
					snap[i].requests[c]);

	fputs("# HELP imgstore_rpc_request_duration_seconds Time from the request's headers to "
	      "its response, by method.\n"
	      "# TYPE imgstore_rpc_request_duration_seconds histogram\n",
	      out);
	for (size_t i = 0; i < n; i++) {
		uint64_t cum = 0;
		if (!snap[i].count)
			continue;
		for (size_t b = 0; b < IMS_RPC__NBUCKETS; b++) {
			cum += snap[i].buckets[b];
			fprintf(out,
				"imgstore_rpc_request_duration_seconds_bucket{method=\"%s\",le=\"%"
				"s\"} "
				"%" PRIu64 "\n",
				names[i], bound_text[b], cum);
		}
		fprintf(out, "imgstore_rpc_request_duration_seconds_sum{method=\"%s\"} %.6f\n",
			names[i], snap[i].sum);
		fprintf(out,
			"imgstore_rpc_request_duration_seconds_count{method=\"%s\"} %" PRIu64 "\n",
			names[i], snap[i].count);
	}

	fprintf(out,
		"# HELP imgstore_rpc_in_flight RPC calls being served.\n"
		"# TYPE imgstore_rpc_in_flight gauge\n"
		"imgstore_rpc_in_flight %" PRId64 "\n",
		in_flight);
	free(snap);
}
