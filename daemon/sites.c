/* daemon/sites.c: SiteService: each site as the probes (daemon/health.h) and the scheduler see it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "common/error.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/spec.h"
#include "common/units.h"
#include "imgstore/v1/group.pb-c.h"
#include "imgstore/v1/host.pb-c.h"
#include "imgstore/v1/image.pb-c.h"
#include "imgstore/v1/operation.pb-c.h"
#include "imgstore/v1/replication.pb-c.h"
#include "imgstore/v1/site.pb-c.h"
#include "imgstore/v1/snapshot.pb-c.h"
#include "imgstore/v1/tier.pb-c.h"
#include "store/image.h"
#include "store/transfer.h"
#include "daemon/daemon.h"
#include "daemon/kit.h"
#include "daemon/health.h"

/* ---------------------------------------------------------------------------------------- */
/* SiteService: what the probes (daemon/health.h) and the scheduler know of each site */

static Imgstore__V1__Site *site_msg(ims_rpc_call *call, const ims_health_site *h,
				    const ims_repl_status *pairs, size_t npairs)
{
	Imgstore__V1__Site *m = ALLOC(call, Imgstore__V1__Site);
	if (!m)
		return NULL;
	imgstore__v1__site__init(m);
	m->name = DUP(call, h->name);
	m->local = h->local;
	m->ceph_conf = DUP(call, h->ceph_conf);
	m->fsid = DUP(call, h->fsid);
	m->health = DUP(call, !h->known ? "unknown" : h->up ? "up" : h->partly ? "partly" : "down");
	m->error = DUP(call, h->up ? "" : h->error);
	m->last_answer_seconds = h->since_ok_ms < 0 ? -1.0 : (double)h->since_ok_ms / 1000.0;
	m->reconnects = h->reconnects;
	m->pgs = h->pgs;
	m->pgs_unanswered = h->pgs_silent;
	m->unanswered_pgs = DUP(call, h->partly ? h->silent : "");
	m->max_lag_seconds = -1;
	for (size_t i = 0; i < npairs; i++) {
		if (!h->local && strcmp(pairs[i].target, h->name) != 0)
			continue;
		m->pairs++;
		m->pairs_over_rpo += pairs[i].rpo_violated;
		if (pairs[i].lag_seconds > m->max_lag_seconds)
			m->max_lag_seconds = pairs[i].lag_seconds;
	}
	if (!m->name || !m->ceph_conf || !m->fsid || !m->health || !m->error || !m->unanswered_pgs)
		return NULL;
	return m;
}

/* The sites and the daemon's pairs; @p name: that site only (-ENOENT if unknown). */
static int sites_get(ims_daemon *d, const char *name, ims_health_site **sites, size_t *n,
		     ims_repl_status **pairs, size_t *npairs)
{
	int r = ims_health_sites(sites, n, d->health);
	if (r < 0)
		return r;
	if (name) {
		size_t k = 0;
		while (k < *n && strcmp((*sites)[k].name, name) != 0)
			k++;
		if (k == *n) {
			char known[512] = "";
			size_t used = 0;
			for (size_t i = 0; i < *n && used < sizeof(known); i++)
				used += (size_t)snprintf(known + used, sizeof(known) - used,
							 "%s'%s'", i ? ", " : "", (*sites)[i].name);
			free(*sites);
			*sites = NULL;
			return ims_error_set(-ENOENT, "no site '%s': this daemon knows %s", name,
					     known);
		}
		if (k)
			(*sites)[0] = (*sites)[k];
		*n = 1;
	}
	if ((r = ims_repl_sched_status(pairs, npairs, d->repl, NULL, NULL)) < 0) {
		free(*sites);
		*sites = NULL;
	}
	return r;
}

/* The sites of a ListSites answer, and the pairs whose status each shows. */
typedef struct {
	const ims_health_site *sites;
	const ims_repl_status *pairs;
	size_t npairs;
} site_list;

static void *site_item(ims_rpc_call *call, const void *ctx, size_t i)
{
	const site_list *l = ctx;
	return site_msg(call, &l->sites[i], l->pairs, l->npairs);
}

static int h_list_sites(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	ims_health_site *sites = NULL;
	ims_repl_status *pairs = NULL;
	size_t n = 0, npairs = 0;
	(void)req;
	int r = sites_get(d, NULL, &sites, &n, &pairs, &npairs);
	if (r < 0)
		return r;
	Imgstore__V1__ListSitesResponse *m = ALLOC(call, Imgstore__V1__ListSitesResponse);
	r = -ENOMEM;
	if (!m)
		goto out;
	imgstore__v1__list_sites_response__init(m);
	site_list l = {sites, pairs, npairs};
	if (IMS_KIT_REPEATED(call, m, sites, n, site_item, &l) < 0)
		goto out;
	*resp = &m->base;
	r = 0;
out:
	free(sites);
	free(pairs);
	return r;
}

static int h_get_site_status(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			     ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__GetSiteStatusRequest *q = (const void *)req;
	ims_health_site *sites = NULL;
	ims_repl_status *pairs = NULL;
	size_t n = 0, npairs = 0;
	if (!q->name || !q->name[0])
		return ims_error_set(-EINVAL, "name a site");
	int r = sites_get(d, q->name, &sites, &n, &pairs, &npairs);
	if (r < 0)
		return r;
	Imgstore__V1__Site *m = site_msg(call, &sites[0], pairs, npairs);
	free(sites);
	free(pairs);
	if (!m)
		return -ENOMEM;
	*resp = &m->base;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */

static const ims_rpc_method methods[] = {
	M("SiteService", "ListSites", list_sites_request, list_sites_response, READER, false,
	  h_list_sites),
	M("SiteService", "GetSiteStatus", get_site_status_request, site, READER, false,
	  h_get_site_status),
};

IMS_DAEMON_SERVICE(ims_site_service, methods);
