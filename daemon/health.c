#include "daemon/health.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "common/prom.h"
#include "common/threads.h"
#include "daemon/daemon.h"

typedef struct {
	struct ims_health *h;
	const char *name; /* borrowed from the config */
	const char *pool;
	bool own;
	/* under h->lock */
	ims_site *site;	   /* NULL until a peer is connected */
	int connect_error; /* the last connect's, while site is NULL */
	bool tried;	   /* a probe (or connect) has ended */
} probe;

struct ims_health {
	struct ims_daemon *d;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* stopping */
	bool stopping;
	unsigned interval_s;
	size_t n;
	probe *probes;
	ims_threads threads; /* a prober a probe */
};

static void *prober(void *arg)
{
	probe *p = arg;
	ims_health *h = p->h;
	int was = 0; /* up */
	for (;;) {
		pthread_mutex_lock(&h->lock);
		bool stop = h->stopping;
		ims_site *site = p->site;
		pthread_mutex_unlock(&h->lock);
		if (stop)
			break;
		int r = 0;
		if (!site)
			r = ims_daemon_peer(h->d, p->name, &site);
		if (r == 0)
			r = ims_site_probe(site, p->pool);
		/* log the changes, not every probe */
		ims_site_health sh = {.up = r == 0};
		if (r == 0)
			ims_site_health_get(&sh, site);
		int now = r < 0 ? 2 : sh.partly ? 1 : 0; /* down, partly, up */
		if (now != was) {
			if (now == 0)
				ims_log_info("site '%s' answers again%s", p->name,
					     was == 1 ? " in every PG" : "");
			else if (now == 1)
				ims_log_warning(
					"site '%s' answers partly: %u of %u PGs of pool '%s' "
					"did not answer a read in %.1f s (%s): %s",
					p->name, sh.pgs_silent, sh.pgs, p->pool,
					IMS_SITE_PROBE_WAIT_MS / 1000.0, sh.silent,
					ims_strerror(sh.error));
			else
				ims_log_warning("site '%s' does not answer: %s", p->name,
						ims_error_last());
			was = now;
		}
		ims_error_clear();

		struct timespec until;
		ims_clock_after_ms(&until, (uint64_t)h->interval_s * 1000u);
		pthread_mutex_lock(&h->lock);
		if (!p->site && site)
			p->site = site;
		p->connect_error = p->site ? 0 : r;
		p->tried = true;
		while (!h->stopping &&
		       pthread_cond_timedwait(&h->cond, &h->lock, &until) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&h->lock);
	}
	return NULL;
}

int ims_health_start(ims_health **out, struct ims_daemon *d)
{
	ims_health *h = calloc(1, sizeof(*h));
	if (!h || !(h->probes = calloc(d->cfg->npeers + 1, sizeof(*h->probes)))) {
		free(h);
		return -ENOMEM;
	}
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	h->d = d;
	h->interval_s =
		d->cfg->defaults.probe_interval ? (unsigned)d->cfg->defaults.probe_interval : 5;
	h->n = d->cfg->npeers + 1;
	h->probes[0] = (probe){
		.h = h, .name = d->cfg->site.name, .pool = d->pool, .own = true, .site = d->site};
	for (size_t i = 0; i < d->cfg->npeers; i++) {
		const ims_config_cluster *c = &d->cfg->peers[i];
		h->probes[i + 1] =
			(probe){.h = h, .name = c->name, .pool = c->pool ? c->pool : d->pool};
	}
	for (size_t i = 0; i < h->n; i++) {
		int r = ims_threads_start(&h->threads, 1, prober, &h->probes[i], "the site probes");
		if (r < 0) {
			ims_health_stop(h);
			return r;
		}
	}
	*out = h;
	return 0;
}

void ims_health_stop(ims_health *h)
{
	if (!h)
		return;
	ims_threads_stop(&h->threads, &h->lock, &h->cond, &h->stopping);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h->probes);
	free(h);
}

typedef struct {
	bool known; /* connected, or a connect has failed */
	bool up;
	bool partly;
	uint32_t pgs, silent;
	char silent_list[IMS_SITE_PG_LIST_MAX];
	int error;
	uint64_t reconnects;
	int64_t since_ok_ms;
	int64_t probing_ms;
} view;

static view look(ims_health *h, probe *p)
{
	view v = {0};
	pthread_mutex_lock(&h->lock);
	ims_site *site = p->site;
	int cerr = p->connect_error;
	bool tried = p->tried;
	pthread_mutex_unlock(&h->lock);
	if (!site) {
		v.known = tried;
		v.up = !tried; /* not reached yet: callers find out by asking */
		v.error = cerr;
		v.since_ok_ms = -1;
		return v;
	}
	ims_site_health sh;
	ims_site_health_get(&sh, site);
	v.known = true;
	bool stalled = sh.probing_ms >= IMS_HEALTH_STALL_MS;
	v.up = sh.up && !stalled;
	v.partly = sh.partly && !stalled;
	v.error = (sh.up || sh.partly) && stalled ? -ETIMEDOUT : sh.error;
	v.pgs = sh.pgs;
	v.silent = sh.pgs_silent;
	memcpy(v.silent_list, sh.silent, sizeof(v.silent_list));
	v.reconnects = sh.reconnects;
	v.since_ok_ms = sh.since_ok_ms;
	v.probing_ms = sh.probing_ms;
	return v;
}

static probe *find(ims_health *h, const char *name)
{
	for (size_t i = 0; h && i < h->n; i++)
		if (strcmp(h->probes[i].name, name) == 0)
			return &h->probes[i];
	return NULL;
}

/* "N of M PGs of pool 'P' did not answer a read in 2.5 s (2.1, 2.5)" into @p buf */
static void partly_why(char *buf, size_t len, const probe *p, const view *v)
{
	snprintf(buf, len, "%u of %u PGs of pool '%s' did not answer a read in %.1f s (%s)",
		 v->silent, v->pgs, p->pool, IMS_SITE_PROBE_WAIT_MS / 1000.0, v->silent_list);
}

int ims_health_ready(char *why, size_t len, ims_health *h)
{
	if (!h) {
		snprintf(why, len, "starting");
		return 1;
	}
	probe *own = &h->probes[0];
	view v = look(h, own);
	why[0] = '\0';
	if (v.up)
		return 0;
	if (v.partly) { /* what its PGs serve can be served */
		char list[IMS_SITE_PG_LIST_MAX + 128];
		partly_why(list, sizeof(list), own, &v);
		snprintf(why, len, "ok, but site '%s' answers partly: %s", own->name, list);
		return 0;
	}
	if (v.probing_ms)
		snprintf(why, len, "site '%s' has not answered a read in pool '%s' for %lld s",
			 own->name, own->pool, (long long)(v.probing_ms / 1000));
	else
		snprintf(why, len, "site '%s' did not answer a read in pool '%s': %s", own->name,
			 own->pool, ims_strerror(v.error));
	return 1;
}

bool ims_health_site_up(ims_health *h, const char *name)
{
	if (!h)
		return true; /* not started yet: callers find out by asking */
	probe *p = find(h, name);
	return p ? look(h, p).up : false;
}

bool ims_health_site_answers(ims_health *h, const char *name)
{
	if (!h)
		return true;
	probe *p = find(h, name);
	if (!p)
		return false;
	view v = look(h, p);
	return v.up || v.partly;
}

bool ims_health_site_partly(ims_health *h, const char *name)
{
	probe *p = h ? find(h, name) : NULL;
	if (!p)
		return false;
	view v = look(h, p);
	return !v.up && v.partly;
}

int ims_health_copy_silent(char *why, size_t len, ims_health *h, const char *name, const char *pool,
			   const char *copy, bool group)
{
	probe *p = h ? find(h, name) : NULL;
	if (!p)
		return 0;
	pthread_mutex_lock(&h->lock);
	ims_site *site = p->site;
	pthread_mutex_unlock(&h->lock);
	/* the probes' word, while it is no older than two of their rounds */
	return site ? ims_site_copy_silent(why, len, site, pool, copy, group,
					   2 * (int64_t)h->interval_s * 1000 +
						   IMS_SITE_PROBE_WAIT_MS)
		    : 0;
}

int ims_health_sites(ims_health_site **out, size_t *n, ims_health *h)
{
	*out = NULL;
	*n = 0;
	if (!h)
		return 0;
	ims_health_site *list = calloc(h->n, sizeof(*list));
	if (!list)
		return -ENOMEM;
	for (size_t i = 0; i < h->n; i++) {
		probe *p = &h->probes[i];
		ims_health_site *o = &list[i];
		view v = look(h, p);
		snprintf(o->name, sizeof(o->name), "%s", p->name);
		o->local = p->own;
		o->known = v.known;
		o->up = v.known && v.up;
		o->partly = v.known && v.partly;
		o->pgs = v.pgs;
		o->pgs_silent = o->up ? 0 : v.silent;
		if (o->partly)
			snprintf(o->silent, sizeof(o->silent), "%s", v.silent_list);
		o->since_ok_ms = v.since_ok_ms;
		o->reconnects = v.reconnects;
		if (!v.known)
			snprintf(o->error, sizeof(o->error), "not reached yet");
		else if (o->partly)
			partly_why(o->error, sizeof(o->error), p, &v);
		else if (!o->up && v.probing_ms)
			snprintf(o->error, sizeof(o->error),
				 "has not answered a read in pool '%s' for %lld s", p->pool,
				 (long long)(v.probing_ms / 1000));
		else if (!o->up)
			snprintf(o->error, sizeof(o->error), "%s", ims_strerror(v.error));
		pthread_mutex_lock(&h->lock);
		ims_site *site = p->site;
		pthread_mutex_unlock(&h->lock);
		if (site && ims_site_fsid(o->fsid, sizeof(o->fsid), site) < 0)
			o->fsid[0] = '\0';
		ims_error_clear();
		const char *conf =
			p->own ? h->d->cfg->site.ceph_conf : h->d->cfg->peers[i - 1].ceph_conf;
		snprintf(o->ceph_conf, sizeof(o->ceph_conf), "%s", conf ? conf : "");
	}
	*out = list;
	*n = h->n;
	return 0;
}

void ims_health_metrics(ims_health *h, FILE *out)
{
	char name[IMS_PROM_ESCAPED_MAX(64)];
	if (!h)
		return;
	view *vs = calloc(h->n, sizeof(*vs));
	if (!vs)
		return;
	for (size_t i = 0; i < h->n; i++)
		vs[i] = look(h, &h->probes[i]);
	fprintf(out,
		"# HELP imgstore_site_up Whether every PG of the site's pool answered its last "
		"probe (an OSD read) in time.\n"
		"# TYPE imgstore_site_up gauge\n");
	for (size_t i = 0; i < h->n; i++)
		fprintf(out, "imgstore_site_up{site=\"%s\"} %d\n",
			ims_prom_escape(name, sizeof(name), h->probes[i].name),
			vs[i].known && vs[i].up);
	fprintf(out, "# HELP imgstore_site_partly Whether some PGs of the site's pool answered its "
		     "last probe and some did not.\n"
		     "# TYPE imgstore_site_partly gauge\n");
	for (size_t i = 0; i < h->n; i++)
		fprintf(out, "imgstore_site_partly{site=\"%s\"} %d\n",
			ims_prom_escape(name, sizeof(name), h->probes[i].name),
			vs[i].known && vs[i].partly);
	fprintf(out, "# HELP imgstore_site_pgs The PGs of the site's pool that its probe asks (0: "
		     "not known, one object asked).\n"
		     "# TYPE imgstore_site_pgs gauge\n");
	for (size_t i = 0; i < h->n; i++)
		fprintf(out, "imgstore_site_pgs{site=\"%s\"} %u\n",
			ims_prom_escape(name, sizeof(name), h->probes[i].name), vs[i].pgs);
	fprintf(out, "# HELP imgstore_site_pgs_unanswered How many of them did not answer the last "
		     "probe in time (all of them when the site is down).\n"
		     "# TYPE imgstore_site_pgs_unanswered gauge\n");
	for (size_t i = 0; i < h->n; i++)
		fprintf(out, "imgstore_site_pgs_unanswered{site=\"%s\"} %u\n",
			ims_prom_escape(name, sizeof(name), h->probes[i].name),
			!vs[i].known || vs[i].up ? 0u
			: vs[i].partly		 ? vs[i].silent
						 : (vs[i].pgs ? vs[i].pgs : 1u));
	fprintf(out, "# HELP imgstore_site_reconnects_total Clients replaced because the site "
		     "blocklisted them.\n"
		     "# TYPE imgstore_site_reconnects_total counter\n");
	for (size_t i = 0; i < h->n; i++)
		fprintf(out, "imgstore_site_reconnects_total{site=\"%s\"} %llu\n",
			ims_prom_escape(name, sizeof(name), h->probes[i].name),
			(unsigned long long)vs[i].reconnects);
	fprintf(out, "# HELP imgstore_site_last_answer_seconds Seconds since the site last "
		     "answered a probe "
		     "(-1: never).\n"
		     "# TYPE imgstore_site_last_answer_seconds gauge\n");
	for (size_t i = 0; i < h->n; i++)
		fprintf(out, "imgstore_site_last_answer_seconds{site=\"%s\"} %.1f\n",
			ims_prom_escape(name, sizeof(name), h->probes[i].name),
			vs[i].since_ok_ms < 0 ? -1.0 : (double)vs[i].since_ok_ms / 1000.0);
	free(vs);
}
