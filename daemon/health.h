/*
 * daemon/health.h: what this daemon knows of the sites it works with, from probes.
 *
 * One thread per site (this daemon's own and every [peer]) asks its site a question that
 * needs the OSDs every [defaults] probe_interval (ims_site_probe(): a client the cluster has
 * blocklisted is replaced by a new one there, logged and counted). Nothing here ever waits
 * for a cluster: a probe unanswered for IMS_HEALTH_STALL_MS counts as a site down while it
 * still waits for its timeout, so /readyz and a failover learn of a dead site at once.
 *
 * The question is a stat in every PG of the site's pool (store/site.h): a site is up (every PG
 * answered), partly (some did not) or down (none did).
 *
 * /readyz is ready while this daemon's own site answers, in full or partly; a peer that is down
 * does not make a daemon unready (it is what a failover to this site is for). /metrics gets
 * per site imgstore_site_up (every PG answered), imgstore_site_pgs,
 * imgstore_site_pgs_unanswered, imgstore_site_reconnects_total and
 * imgstore_site_last_answer_seconds.
 */
#ifndef IMS_DAEMON_HEALTH_H
#define IMS_DAEMON_HEALTH_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>

#include "store/site.h"

struct ims_daemon;
typedef struct ims_health ims_health;

/* A probe that has waited this long makes its site count as down. */
#define IMS_HEALTH_STALL_MS 3000

/**
 * Start probing the site of @p d and its peers (the peers are connected on the way).
 *
 * @returns -ENOMEM, -EAGAIN if a thread cannot start.
 */
int ims_health_start(ims_health **out, struct ims_daemon *d);

/** Stop the probes (waits for probes in flight, at most the OSD timeout). NULL is fine. */
void ims_health_stop(ims_health *h);

/**
 * 0 if this daemon's own site answers, in full or partly (what the answering PGs hold can be
 * served: then @p why says which PGs did not answer, else it is ""); else nonzero with the
 * reason in @p why.
 */
int ims_health_ready(char *why, size_t len, ims_health *h);

/**
 * Whether site @p name answered its last probe in time, in every PG. A site that answers
 * partly (some PGs did not) is not up: a replication cycle to it would wait on the silent PGs
 * until the OSD timeout (an image's objects are spread over every PG). A site no probe has
 * reached yet (just started, or @p h NULL) counts as up: callers then find out by asking it.
 * Unknown names are down.
 */
bool ims_health_site_up(ims_health *h, const char *name);

/**
 * Whether site @p name answered its last probe at all: up, or partly. A forced failover asks
 * such an old primary's site to fence and demote its copies: those whose objects are in the
 * PGs that answer could still be written by its hosts (a split brain otherwise); an image whose
 * pool's rbd_info, rbd_id or header lies in a PG the probes found silent is passed by
 * (ims_health_copy_silent()), any other silent object costs the peer's osd_timeout. A site that
 * answers in no PG is passed by.
 */
bool ims_health_site_answers(ims_health *h, const char *name);

/** Whether site @p name answered its last probe partly: some PGs, not all (what a forced
 *  failover's lines say of the copies it could not reach there). */
bool ims_health_site_partly(ims_health *h, const char *name);

/** 1 if image (with @p group: group) @p pool/@p copy of site @p name lies (its pool's rbd_info,
 *  the object its id is in, or its header) in a PG the site's last two probes found silent, the
 *  last one at most two probe intervals ago (store/site.h, ims_site_copy_silent()), saying which
 *  into @p why; else 0. */
int ims_health_copy_silent(char *why, size_t len, ims_health *h, const char *name, const char *pool,
			   const char *copy, bool group);

/** What this daemon knows of one site, for SiteService. */
typedef struct {
	char name[64];
	bool local;			   /* the daemon's own site */
	bool known;			   /* reached, or a connect has failed */
	bool up;			   /* answered its last probe in time, every PG */
	bool partly;			   /* some PGs answered, some did not */
	uint32_t pgs;			   /* the PGs of its pool the probe asks; 0: not known */
	uint32_t pgs_silent;		   /* how many did not answer (when not up) */
	char silent[IMS_SITE_PG_LIST_MAX]; /* which, when partly: "2.1, 2.5 and 3 more" */
	char error[256];		   /* why not, when down, partly or not reached */
	int64_t since_ok_ms;		   /* since it last answered; -1: never */
	uint64_t reconnects;		   /* clients replaced because they were blocklisted */
	char ceph_conf[512];
	char fsid[40]; /* "" until connected */
} ims_health_site;

/**
 * Every site, the daemon's own first, then the peers in the config's order; never waits for a
 * cluster.
 *
 * @param[out] out free() it.
 * @returns -ENOMEM.
 */
int ims_health_sites(ims_health_site **out, size_t *n, ims_health *h);

/** The per-site metrics, in Prometheus text. */
void ims_health_metrics(ims_health *h, FILE *out);

#endif
