/*
 * replicator/sched_metrics.c: what the scheduler reports: the statuses of its pairs, the
 * events of its owner (RPO violations, verify mismatches) and its Prometheus lines.
 */
#include "replicator/sched_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/prom.h"

void ims_repl_sched__event_locked(ims_repl_sched *s, const pair *p, ims_repl_event_kind kind,
				  double lag, const char *detail)
{
	if (!s->o.event)
		return;
	ims_repl_event ev = {.kind = kind,
			     .pool = p->pool,
			     .image = p->image,
			     .target = p->target,
			     .rpo_seconds = p->rpo,
			     .lag_seconds = lag,
			     .unix_ms = ims_clock_unix_ms(),
			     .detail = detail};
	s->o.event(s->o.event_ctx, &ev);
}

/* The verdict of a verify of @p p, under the lock. */
void ims_repl_sched__record_verify_locked(ims_repl_sched *s, pair *p,
					  const ims_repl_verify_result *v)
{
	snprintf(p->last_verified, sizeof(p->last_verified), "%s", v->snapshot);
	p->since_verify = 0;
	p->verifies++;
	if (v->equal) {
		snprintf(p->last_verify, sizeof(p->last_verify), "equal");
		p->verify_error[0] = '\0';
		return;
	}
	snprintf(p->last_verify, sizeof(p->last_verify), "mismatch");
	p->verify_failures++;
	snprintf(p->verify_error, sizeof(p->verify_error),
		 "verify: the copy on site '%s' differs from the primary at '%s' in %zu extents, "
		 "the first %" PRIu64 " bytes at offset %" PRIu64,
		 p->target, v->snapshot, v->nmismatches,
		 v->nmismatches ? v->mismatches[0].length : 0,
		 v->nmismatches ? v->mismatches[0].offset : 0);
	ims_log_warning("replication of '%s/%s': %s", p->pool, p->image, p->verify_error);
	ims_repl_sched__event_locked(s, p, IMS_REPL_EVENT_VERIFY_MISMATCH, -1.0, p->verify_error);
}

const char *ims_repl_sched__home_locked(const ims_repl_sched *s, const pair *p)
{
	return p->home > 0 && p->home <= s->nmembers ? s->members[p->home - 1] : NULL;
}

const char *ims_repl_sched__runner_locked(const ims_repl_sched *s, const pair *p)
{
	const char *home = ims_repl_sched__home_locked(s, p);
	return home ? home : p->elsewhere ? "" : s->owner;
}

void ims_repl_sched__fill_status(ims_repl_status *st, const ims_repl_sched *s, const pair *p,
				 int64_t t)
{
	memset(st, 0, sizeof(*st));
	snprintf(st->image, sizeof(st->image), "%s/%s", p->pool, p->image);
	st->unit = p->unit;
	snprintf(st->target, sizeof(st->target), "%s", p->target);
	snprintf(st->role, sizeof(st->role), "primary");
	st->mode = p->mode;
	snprintf(st->state, sizeof(st->state), "%s",
		 p->split_brain			     ? "split-brain"
		 : p->running			     ? "syncing"
		 : p->error[0] || p->verify_error[0] ? "error"
						     : "idle");
	st->rpo_seconds = p->rpo;
	st->lag_seconds = p->sealed_ms < 0 ? -1.0 : (double)(t - p->sealed_ms) / 1000.0;
	snprintf(st->last_sealed, sizeof(st->last_sealed), "%s", p->last_sealed);
	st->last_sync_bytes = p->last_bytes;
	st->last_sync_seconds = p->last_secs;
	snprintf(st->error, sizeof(st->error), "%s", p->error[0] ? p->error : p->verify_error);
	st->verify_every = p->verify_every;
	snprintf(st->last_verified, sizeof(st->last_verified), "%s", p->last_verified);
	snprintf(st->last_verify, sizeof(st->last_verify), "%s", p->last_verify);
	st->verify_failures = p->verify_failures;
	st->rpo_violated = p->violated;
	st->syncs = p->syncs;
	st->failures = p->failures;
	snprintf(st->replicated_by, sizeof(st->replicated_by), "%s",
		 ims_repl_sched__runner_locked(s, p));
}

/* The statuses of every present pair (@p pool NULL), or of @p unit pool/name. */
static int status_kind(ims_repl_sched *s, const char *pool, const char *name, ims_repl_unit unit,
		       ims_repl_status **out, size_t *count)
{
	size_t n = 0, k = 0;
	int64_t t = ims_clock_unix_ms();
	pthread_mutex_lock(&s->lock);
	for (pair *p = s->pairs; p; p = p->next)
		n++;
	ims_repl_status *list = calloc(n + 1, sizeof(*list));
	if (!list) {
		pthread_mutex_unlock(&s->lock);
		return -ENOMEM;
	}
	for (pair *p = s->pairs; p; p = p->next) {
		if (!p->present)
			continue;
		if (pool && name &&
		    (p->unit != unit || strcmp(p->pool, pool) || strcmp(p->image, name)))
			continue;
		ims_repl_sched__fill_status(&list[k++], s, p, t);
	}
	pthread_mutex_unlock(&s->lock);
	*out = list;
	*count = k;
	return 0;
}

int ims_repl_sched_status(ims_repl_status **out, size_t *count, ims_repl_sched *s, const char *pool,
			  const char *image)
{
	return status_kind(s, pool, image, IMS_REPL_IMAGE, out, count);
}

int ims_repl_group_status(ims_repl_status **out, size_t *count, ims_repl_sched *s, const char *pool,
			  const char *group)
{
	return status_kind(s, pool, group, IMS_REPL_GROUP, out, count);
}

void ims_repl_sched_metrics(ims_repl_sched *s, FILE *f)
{
	int64_t t = ims_clock_unix_ms();
	fprintf(f,
		"# HELP imgstore_replication_lag_seconds Now minus the primary-side time of the "
		"newest sealed snapshot.\n"
		"# TYPE imgstore_replication_lag_seconds gauge\n"
		"# HELP imgstore_replication_rpo_seconds The RPO of the pair.\n"
		"# TYPE imgstore_replication_rpo_seconds gauge\n"
		"# HELP imgstore_rpo_violation 1 while the lag exceeds the RPO.\n"
		"# TYPE imgstore_rpo_violation gauge\n"
		"# HELP imgstore_replication_bytes_total Bytes copied by replication cycles.\n"
		"# TYPE imgstore_replication_bytes_total counter\n"
		"# HELP imgstore_replication_sync_seconds_total Time spent in replication cycles.\n"
		"# TYPE imgstore_replication_sync_seconds_total counter\n"
		"# HELP imgstore_replication_syncs_total Replication cycles that sealed a "
		"snapshot.\n"
		"# TYPE imgstore_replication_syncs_total counter\n"
		"# HELP imgstore_replication_failures_total Replication cycles that failed.\n"
		"# TYPE imgstore_replication_failures_total counter\n"
		"# HELP imgstore_replication_verifies_total Verifies of the copy that ran to a "
		"verdict.\n"
		"# TYPE imgstore_replication_verifies_total counter\n"
		"# HELP imgstore_replication_verify_failures_total Verifies that found the copy "
		"different.\n"
		"# TYPE imgstore_replication_verify_failures_total counter\n"
		"# HELP imgstore_replication_runs_here 1 when this daemon runs the pair's cycles "
		"(its home among the site's daemons), 0 when another imgstored of the site does.\n"
		"# TYPE imgstore_replication_runs_here gauge\n"
		"# HELP imgstore_replication_daemons The site's imgstored that share its "
		"replication pairs, as this daemon last saw them (0: not known).\n"
		"# TYPE imgstore_replication_daemons gauge\n");
	pthread_mutex_lock(&s->lock);
	fprintf(f, "imgstore_replication_daemons %zu\n", s->self >= 0 ? s->nmembers : 0);
	for (pair *p = s->pairs; p; p = p->next) {
		if (!p->present)
			continue;
		/* names come from clients: a quote or a backslash in one must not break the scrape
		 */
		char name[2 * IMS_NAME_MAX + 2], image[IMS_PROM_ESCAPED_MAX(sizeof(name))],
			target[IMS_PROM_ESCAPED_MAX(sizeof(p->target))],
			labels[sizeof(image) + sizeof(target) + 32];
		snprintf(name, sizeof(name), "%s/%s", p->pool, p->image);
		snprintf(labels, sizeof(labels), "image=\"%s\",target=\"%s\"",
			 ims_prom_escape(image, sizeof(image), name),
			 ims_prom_escape(target, sizeof(target), p->target));
		if (p->sealed_ms >= 0)
			fprintf(f, "imgstore_replication_lag_seconds{%s} %.3f\n", labels,
				(double)(t - p->sealed_ms) / 1000.0);
		fprintf(f, "imgstore_replication_rpo_seconds{%s} %u\n", labels, p->rpo);
		fprintf(f, "imgstore_rpo_violation{%s} %d\n", labels, p->violated ? 1 : 0);
		fprintf(f, "imgstore_replication_bytes_total{%s} %" PRIu64 "\n", labels,
			p->bytes_total);
		fprintf(f, "imgstore_replication_sync_seconds_total{%s} %.3f\n", labels,
			p->secs_total);
		fprintf(f, "imgstore_replication_syncs_total{%s} %" PRIu64 "\n", labels, p->syncs);
		fprintf(f, "imgstore_replication_failures_total{%s} %" PRIu64 "\n", labels,
			p->failures);
		fprintf(f, "imgstore_replication_verifies_total{%s} %" PRIu64 "\n", labels,
			p->verifies);
		fprintf(f, "imgstore_replication_verify_failures_total{%s} %" PRIu64 "\n", labels,
			p->verify_failures);
		fprintf(f, "imgstore_replication_runs_here{%s} %d\n", labels,
			strcmp(ims_repl_sched__runner_locked(s, p), s->owner) == 0);
	}
	pthread_mutex_unlock(&s->lock);
}

void ims_repl_sched__check_rpo_locked(ims_repl_sched *s, int64_t t)
{
	for (pair *p = s->pairs; p; p = p->next) {
		if (!p->present || p->sealed_ms < 0)
			continue;
		/* a pair whose home is another daemon of the site: that one says whether it is over
		 * its RPO. This daemon knows its seals only as of its last look at the pair (every
		 * due lag plus a grace; later when the look fails, as when this daemon's client was
		 * blocklisted): an alarm from that view would be about its own stale view. */
		const char *home = ims_repl_sched__home_locked(s, p);
		if (home) {
			if (p->violated)
				ims_log_info("replication of '%s/%s' to site '%s': its RPO is "
					     "watched by its home imgstored '%s' now",
					     p->pool, p->image, p->target, home);
			p->violated = false;
			continue;
		}
		double lag = (double)(t - p->sealed_ms) / 1000.0;
		if (!p->violated && lag > p->rpo) {
			p->violated = true;
			ims_log_warning("replication of '%s/%s' to site '%s' is %.0fs "
					"behind, over its RPO of %us",
					p->pool, p->image, p->target, lag, p->rpo);
			ims_repl_sched__event_locked(s, p, IMS_REPL_EVENT_RPO_VIOLATION, lag,
						     "lag over the RPO");
		} else if (p->violated && lag <= p->rpo) {
			p->violated = false;
			ims_log_info("replication of '%s/%s' to site '%s' is back within "
				     "its RPO",
				     p->pool, p->image, p->target);
			ims_repl_sched__event_locked(s, p, IMS_REPL_EVENT_RPO_RECOVERED, lag,
						     "lag back within the RPO");
		}
	}
}
