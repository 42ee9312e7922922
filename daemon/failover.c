#include "daemon/failover.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "daemon/hosts.h"
#include "replicator/failover.h"
#include "store/image.h"

static int progress(void *ctx, uint64_t done, uint64_t total)
{
	return ims_op_progress(ctx, done, total);
}

static const char *peer_pool(ims_daemon *d, const char *site)
{
	const ims_config_cluster *c = ims_config_peer(d->cfg, site);
	return c && c->pool ? c->pool : d->pool;
}

/* The mode and RPO this site replicates the image to @p target with. */
static int pair_of(ims_daemon *d, const ims_spec *s, const char *target, ims_repl_status *out)
{
	ims_repl_status *list = NULL;
	size_t n = 0;
	int r = ims_repl_sched_status(d->repl, s->pool, s->image, &list, &n);
	if (r < 0)
		return r;
	r = ims_error_set(-ENOENT, "'%s/%s' is not replicated from site '%s' to site '%s'; enable replication first",
			  s->pool, s->image, ims_site_name(d->site), target);
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].target, target) == 0) {
			*out = list[i];
			ims_error_clear();
			r = 0;
		}
	free(list);
	return r;
}

/* The site name in a copy's source ("SITE/POOL/IMAGE"). */
static void source_site(const char *source, char *out, size_t len)
{
	const char *slash = strchr(source, '/');
	size_t n = slash ? (size_t)(slash - source) : strlen(source);
	snprintf(out, len, "%.*s", (int)n, source);
}

static int planned(ims_op *op, ims_failover_work *w)
{
	ims_daemon *d = w->d;
	const char *pool = w->spec.pool, *image = w->spec.image, *here = ims_site_name(d->site);
	ims_site *peer = NULL;
	ims_repl_side me, them;
	ims_repl_status pair;
	ims_repl_result res;
	char host[128], at[64];
	unsigned fenced = 0, broken = 0;
	int r;

	if ((r = ims_repl_side_get(d->site, pool, image, &me)) < 0)
		return r;
	if (me.secondary) {
		char from[64];
		source_site(me.source, from, sizeof(from));
		return ims_error_set(-EROFS,
				     "'%s/%s' is a secondary on site '%s': run the planned failover on its primary's "
				     "site '%s', or add --force if site '%s' is lost",
				     pool, image, here, from, from);
	}
	if ((r = pair_of(d, &w->spec, w->target, &pair)) < 0)
		return r;
	if ((r = ims_daemon_peer(d, w->target, &peer)) < 0)
		return r;
	if ((r = ims_repl_side_get(peer, pool, image, &them)) < 0)
		return r;
	if (!them.secondary)
		return ims_error_set(-EEXIST, "'%s/%s' on site '%s' is not a secondary of this site; nothing changed", pool,
				     image, w->target);

	/* 1. catch up while hosts still write: the final delta is then small */
	if ((r = ims_repl_sync_now(d->repl, pool, image, w->target, progress, op, &res)) < 0)
		return ims_error_set(r, "sync before the failover failed: %s; nothing changed", ims_error_last());

	/* 2. no new leases; the hosts release theirs, or they are broken and the writers fenced */
	if ((r = ims_repl_set_state(d->site, pool, image, "failing-over")) < 0)
		return r;
	unsigned wait_s = w->wait_s ? w->wait_s : 30;
	for (unsigned i = 0; i < wait_s * 4 && ims_hosts_image_leased(d, pool, image, host, sizeof(host)) == 1; i++) {
		if (ims_op_progress(op, 0, 0) != 0) {
			ims_repl_set_state(d->site, pool, image, NULL);
			return ims_error_set(-ECANCELED, "failover of '%s/%s' cancelled; nothing changed", pool, image);
		}
		usleep(250000);
	}
	if ((r = ims_hosts_break_leases(d, pool, image, &broken)) < 0 ||
	    (r = ims_repl_fence(d->site, pool, image, &fenced)) < 0) {
		ims_repl_set_state(d->site, pool, image, NULL);
		return ims_error_set(r, "cannot fence the writers of '%s/%s': %s; it stays the primary here", pool,
				     image, ims_error_last());
	}

	/* 3. the final sync: everything written before the fence */
	if ((r = ims_repl_sync_now(d->repl, pool, image, w->target, progress, op, &res)) < 0) {
		char why[IMS_ERROR_MSG_MAX];
		snprintf(why, sizeof(why), "%s", ims_error_last());
		ims_repl_set_state(d->site, pool, image, NULL);
		return ims_error_set(r, "final sync to site '%s' failed: %s; site '%s' stays the primary (its writers were "
				     "fenced: hosts take new leases)", w->target, why, here);
	}

	/* 4. swap the roles at a new generation, then hand replication to the new primary */
	uint64_t gen = (me.generation > them.generation ? me.generation : them.generation) + 1;
	if ((r = ims_repl_demote(d->site, pool, image, w->target, gen)) < 0) {
		ims_repl_set_state(d->site, pool, image, NULL);
		return r;
	}
	if ((r = ims_repl_promote(peer, pool, image, gen, true, at, sizeof(at))) < 0) {
		char why[IMS_ERROR_MSG_MAX];
		snprintf(why, sizeof(why), "%s", ims_error_last());
		ims_repl_promote(d->site, pool, image, me.generation, false, NULL, 0);
		return ims_error_set(r, "cannot promote '%s/%s' on site '%s': %s; site '%s' stays the primary", pool, image,
				     w->target, why, here);
	}
	ims_repl_sched_hand_over(d->repl, pool, image, w->target, NULL);
	if ((r = ims_repl_policy_put(peer, peer_pool(d, w->target), pool, image, here, pair.mode, pair.rpo_seconds)) < 0)
		ims_log_error("failover of '%s/%s': site '%s' is the primary but replication back to site '%s' is not "
			      "set: %s; run `imgstore repl enable` there",
			      pool, image, w->target, here, ims_error_last());
	ims_op_set_result(op,
			  "site '%s' is the primary of '%s/%s' at '%s', generation %" PRIu64
			  "; site '%s' is its secondary (%u lease(s) broken, %u writer(s) fenced)",
			  w->target, pool, image, at[0] ? at : res.sealed, gen, here, broken, fenced);
	ims_log_info("failed over '%s/%s' to site '%s' at '%s' (generation %" PRIu64 ")", pool, image, w->target,
		     at[0] ? at : res.sealed, gen);
	return 0;
}

static int forced(ims_op *op, ims_failover_work *w)
{
	ims_daemon *d = w->d;
	const char *pool = w->spec.pool, *image = w->spec.image, *here = ims_site_name(d->site);
	ims_site *peer = NULL;
	ims_repl_side me, them;
	char old[64], at[64];
	int r;

	if ((r = ims_repl_side_get(d->site, pool, image, &me)) < 0)
		return r;
	if (!me.secondary)
		return ims_error_set(-EEXIST, "'%s/%s' is already the primary on site '%s'; nothing changed", pool, image,
				     here);
	source_site(me.source, old, sizeof(old));
	if (!old[0])
		return ims_error_set(-EINVAL, "'%s/%s' on site '%s' does not say which site its primary is", pool, image,
				     here);
	ims_op_progress(op, 0, 0);

	/* the old primary, if it answers: its generation counts, and its writers are fenced */
	bool reachable = ims_daemon_peer(d, old, &peer) == 0 && ims_repl_side_get(peer, pool, image, &them) == 0;
	uint64_t gen = me.generation + 1;
	if (reachable && them.generation >= gen)
		gen = them.generation + 1;
	unsigned fenced = 0;
	if (reachable && ims_repl_fence(peer, pool, image, &fenced) < 0) {
		ims_log_warning("forced failover of '%s/%s': cannot fence its writers on site '%s': %s", pool, image, old,
				ims_error_last());
		reachable = false;
	}
	ims_error_clear();

	if ((r = ims_repl_promote(d->site, pool, image, gen, true, at, sizeof(at))) < 0)
		return r;

	char rejoin[1024] = "";
	if (reachable) {
		ims_repl_divergence dv;
		if (ims_repl_rejoin(d->site, peer, pool, image, gen, &dv) == 0) {
			ims_repl_policy_remove(peer, peer_pool(d, old), pool, image, here);
			snprintf(rejoin, sizeof(rejoin), "site '%s' answered: %u writer(s) fenced; %s", old, fenced, dv.plan);
		} else {
			snprintf(rejoin, sizeof(rejoin), "site '%s' answered but could not be made a secondary: %s", old,
				 ims_error_last());
		}
	} else {
		snprintf(rejoin, sizeof(rejoin),
			 "site '%s' did not answer: its writers are not fenced; when it returns it is stale (generation "
			 "%" PRIu64 ") and `imgstore repl status` shows what resync will do",
			 old, gen - 1);
	}
	ims_error_clear();
	if ((r = ims_repl_enable(d->repl, pool, image, old, "async", (uint32_t)d->cfg->defaults.rpo, NULL)) < 0)
		ims_log_error("forced failover of '%s/%s': replication back to site '%s' is not set: %s", pool, image, old,
			      ims_error_last());
	ims_op_set_result(op, "site '%s' is the primary of '%s/%s' at '%s', generation %" PRIu64 "; %s", here, pool, image,
			  at[0] ? at : "its head", gen, rejoin);
	ims_log_warning("forced failover of '%s/%s' to site '%s' at '%s' (generation %" PRIu64 "): %s", pool, image,
			here, at, gen, rejoin);
	return 0;
}

int ims_failover_run(ims_op *op, void *arg)
{
	ims_failover_work *w = arg;
	if (w->force) {
		if (strcmp(w->target, ims_site_name(w->d->site)) != 0)
			return ims_error_set(-EINVAL,
					     "a forced failover runs on the site that becomes the primary: ask site '%s''s "
					     "daemon (this is site '%s')",
					     w->target, ims_site_name(w->d->site));
		return forced(op, w);
	}
	ims_repl_side me;
	if (strcmp(w->target, ims_site_name(w->d->site)) == 0 &&
	    ims_repl_side_get(w->d->site, w->spec.pool, w->spec.image, &me) == 0 && me.secondary) {
		char from[64];
		source_site(me.source, from, sizeof(from));
		return ims_error_set(-EROFS,
				     "'%s/%s' is a secondary here on site '%s': run the planned failover on its "
				     "primary's site '%s', or add --force if site '%s' is lost",
				     w->spec.pool, w->spec.image, w->target, from, from);
	}
	if (strcmp(w->target, ims_site_name(w->d->site)) == 0)
		return ims_error_set(-EINVAL,
				     "a planned failover runs on the current primary's site, not on '%s'; add --force "
				     "if the primary's site is lost",
				     w->target);
	return planned(op, w);
}

int ims_failover_all_run(ims_op *op, void *arg)
{
	ims_failover_work *w = arg;
	ims_daemon *d = w->d;
	ims_image_list_entry *list = NULL;
	size_t n = 0, done = 0, failed = 0, todo = 0;
	char failures[1024] = "", done_names[1024] = "";
	const char *here = ims_site_name(d->site);
	int r;
	if (!w->force && strcmp(w->from, here) != 0)
		return ims_error_set(-EINVAL, "a planned failover of site '%s''s images runs on site '%s', not '%s'; add "
				     "--force if site '%s' is lost",
				     w->from, w->from, here, w->from);
	if (w->force && strcmp(w->target, here) != 0)
		return ims_error_set(-EINVAL, "a forced failover runs on the site that becomes the primary: ask site '%s''s "
				     "daemon (this is site '%s')",
				     w->target, here);
	if ((r = ims_image_list(&list, &n, d->site, w->spec.pool)) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		ims_repl_side side;
		ims_repl_status pair;
		ims_failover_work one = *w;
		snprintf(one.spec.image, sizeof(one.spec.image), "%s", list[i].name);
		one.spec.snap[0] = '\0';
		if (ims_repl_side_get(d->site, w->spec.pool, list[i].name, &side) < 0)
			continue;
		if (w->force) {
			char src[64];
			source_site(side.source, src, sizeof(src));
			if (!side.secondary || strcmp(src, w->from) != 0)
				continue;
		} else if (side.secondary || pair_of(d, &one.spec, w->target, &pair) < 0) {
			continue;
		}
		todo++;
		ims_error_clear();
		r = w->force ? forced(op, &one) : planned(op, &one);
		size_t used = strlen(r < 0 ? failures : done_names);
		char *buf = r < 0 ? failures : done_names;
		if (used < 900)
			snprintf(buf + used, 1024 - used, "%s%s/%s%s%s", used ? "; " : "", w->spec.pool, list[i].name,
				 r < 0 ? ": " : "", r < 0 ? ims_error_last() : "");
		if (r < 0)
			failed++;
		else
			done++;
	}
	ims_image_list_free(list, n);
	if (failed)
		return ims_error_set(-EIO, "%zu of %zu images of site '%s' in pool '%s' did not fail over: %s", failed, todo,
				     w->from, w->spec.pool, failures);
	ims_op_set_result(op, "%zu image(s) of site '%s' in pool '%s' failed over to site '%s'%s%s", done, w->from,
			  w->spec.pool, w->target, done ? ": " : "", done_names);
	return 0;
}

int ims_resync_run(ims_op *op, void *arg)
{
	ims_failover_work *w = arg;
	ims_daemon *d = w->d;
	ims_repl_divergence dv;
	ims_repl_result res;
	ims_site *peer = NULL;
	int r = ims_repl_resync(d->repl, w->spec.pool, w->spec.image, w->target, &dv);
	if (r < 0)
		return r;
	/* the old primary's daemons stop replicating their copy: it is a secondary now */
	if (ims_daemon_peer(d, w->target, &peer) == 0)
		ims_repl_policy_remove(peer, peer_pool(d, w->target), w->spec.pool, w->spec.image, ims_site_name(d->site));
	if ((r = ims_repl_sync_now(d->repl, w->spec.pool, w->spec.image, w->target, progress, op, &res)) < 0)
		return r;
	ims_op_set_result(op, "%s; sealed '%s' (%" PRIu64 " bytes shipped)", dv.plan, res.sealed, res.bytes_copied);
	return 0;
}
