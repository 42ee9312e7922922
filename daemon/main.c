/*
 * imgstored: the imgstore daemon of one site.
 *
 *   imgstored --config FILE [--log-level LEVEL] [--syslog]
 *   imgstored --config FILE --check-config
 *   imgstored --help-config
 *
 * Runs in the foreground (for systemd). SIGTERM or SIGINT: stop accepting calls, stop the
 * operations in progress (their records say so) and exit 0. SIGHUP: read the configuration
 * again (its [host] sections and log_level apply; other changes wait for a restart), reload
 * the tokens and reopen the audit log.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/chain.h"
#include "common/config.h"
#include "common/error.h"
#include "common/log.h"
#include "common/units.h"
#include "daemon/daemon.h"
#include "daemon/health.h"
#include "daemon/notify.h"
#include "daemon/kit.h"
#include "daemon/tier.h"
#include "tier/scan.h"
#include "replicator/failover.h"
#include "replicator/digest.h"
#include "replicator/snapsched.h"
#include "store/crypt.h"
#include "store/transfer.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: imgstored --config FILE [--log-level error|warning|info|debug] [--syslog]\n"
		"       imgstored --config FILE --check-config\n"
		"       imgstored --help-config\n"
		"       imgstored --list-methods\n"
		"\n"
		"The imgstore daemon of one site: serves the RPC API (docs/RPC.md) over TLS and a "
		"Unix\n"
		"socket, runs imports, exports and other long operations. The configuration keys "
		"are\n"
		"listed by --help-config (docs/CONFIG.md).\n");
}

static void print_error(void *ctx, const char *line)
{
	(void)ctx;
	fprintf(stderr, "imgstored: %s\n", line);
}

void ims_daemon_clean_spool(ims_daemon *d)
{
	DIR *dir = opendir(d->cfg->server.spool_dir);
	struct dirent *e;
	time_t now = time(NULL);
	if (!dir)
		return;
	while ((e = readdir(dir))) {
		char path[2048];
		struct stat st;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", d->cfg->server.spool_dir, e->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && now - st.st_mtime > 86400) {
			if (unlink(path) == 0)
				ims_log_info("removed '%s' from the spool (older than a day)",
					     path);
		}
	}
	closedir(dir);
}

static void audit_line(void *app, const char *line)
{
	ims_daemon *d = app;
	if (!d->cfg->server.audit_log) {
		ims_log_info("%s", line);
		return;
	}
	char when[32], *text = NULL;
	ims_format_utc(when, sizeof(when), (int64_t)time(NULL));
	int n = asprintf(&text, "%s %s", when, line);
	if (n < 0) {
		ims_log_error("audit line lost (out of memory): %s", line);
		return;
	}
	/* hash-chained: each line carries the hash of the one before it (common/chain.h) */
	pthread_mutex_lock(&d->lock);
	ims_chain_next(d->audit_prev, d->audit_prev, text, (size_t)n);
	fprintf(d->audit, "%s" IMS_CHAIN_TAG "%s\n", text, d->audit_prev);
	fflush(d->audit);
	pthread_mutex_unlock(&d->lock);
	free(text);
}

/* The chain hash of the last line of the audit log @p f (open for appending), so that a restart
 * continues its chain; 64 zeros for a new or empty file, or one whose last line has none. */
static void audit_chain_resume(char prev[65], FILE *f)
{
	char buf[8192], hash[IMS_SHA256_HEX_LEN];
	snprintf(prev, 65, "%s", IMS_CHAIN_ZERO);
	int fd = fileno(f);
	off_t end = lseek(fd, 0, SEEK_END);
	if (end <= 0)
		return;
	off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	ssize_t got = pread(fd, buf, (size_t)(end - from), from);
	if (got <= 0)
		return;
	size_t len = (size_t)got;
	if (buf[len - 1] == '\n')
		len--;
	size_t start = len;
	while (start > 0 && buf[start - 1] != '\n')
		start--;
	size_t tl;
	if (ims_chain_split(hash, &tl, buf + start, len - start) == 0)
		snprintf(prev, 65, "%s", hash);
}

/* SIGHUP: the audit log opened again under its name (logrotate moved the old file away);
 * if it cannot be, the old stream stays. */
static void reopen_audit(ims_daemon *d)
{
	if (!d->cfg->server.audit_log)
		return;
	FILE *f = fopen(d->cfg->server.audit_log, "a");
	if (!f) {
		ims_log_error("cannot open audit log '%s' again, still writing to the old file: %s",
			      d->cfg->server.audit_log, strerror(errno));
		return;
	}
	pthread_mutex_lock(&d->lock);
	FILE *old = d->audit;
	d->audit = f;
	pthread_mutex_unlock(&d->lock);
	if (old)
		fclose(old);
	ims_log_info("audit log '%s' opened again", d->cfg->server.audit_log);
}

static void print_reload_error(void *ctx, const char *line)
{
	(void)ctx;
	ims_log_error("configuration not reloaded: %s", line);
}

/* What a reload applies is marked in the configuration table (ims_config_diff() says so):
 * the [host] sections and the log level; anything else is logged as needing a restart (the
 * threads that use it hold it). */
static void note_change(void *ctx, const char *section, const char *key, bool reloads)
{
	bool *log_level = ctx;
	bool whole = !strcmp(key, "*");
	if (!reloads && whole)
		ims_log_warning(
			"configuration: %s added or removed: takes effect at the next restart",
			section);
	else if (!reloads)
		ims_log_warning("configuration: %s %s changed: takes effect at the next restart",
				section, key);
	else if (!strcmp(section, "[defaults]") && !strcmp(key, "log_level"))
		*log_level = true;
	else
		ims_log_info("configuration: %s %s: applied", section,
			     whole ? "added or removed" : key);
}

/*
 * SIGHUP: read the configuration file again. A file with a bad line changes nothing (each bad
 * line is logged); otherwise the [host] sections and log_level (unless --log-level was given)
 * apply at once, and every other change is named as waiting for a restart.
 * @returns 0, or -EINVAL if the file was refused.
 */
static int reload_config(ims_daemon *d, const char *path, bool level_fixed)
{
	ims_config *fresh = NULL;
	if (ims_config_load(&fresh, path, print_reload_error, NULL) < 0) {
		if (ims_error_last_code() != -EINVAL)
			ims_log_error("configuration not reloaded, the old one stays: %s",
				      ims_error_last());
		else
			ims_log_error("configuration '%s' not reloaded: it has bad lines (above); "
				      "the old one stays",
				      path);
		return -EINVAL;
	}
	bool log_level = false;
	pthread_mutex_lock(&d->lock);
	ims_config *old = d->live;
	size_t n = ims_config_diff(old ? old : d->cfg, fresh, note_change, &log_level);
	d->live = fresh;
	pthread_mutex_unlock(&d->lock);
	ims_config_free(old);
	ims_log_level lvl;
	if (log_level && !level_fixed &&
	    ims_log_parse_level(&lvl, fresh->defaults.log_level) == 0) {
		ims_log_set_level(lvl);
		ims_log_info("configuration: log_level is now %s", fresh->defaults.log_level);
	}
	ims_log_info("configuration '%s' reloaded (%zu change%s)", path, n, n == 1 ? "" : "s");
	return 0;
}

/* How to connect to the cluster of a [site] or [peer] section. */
static ims_site_opts site_opts(const ims_config_cluster *c)
{
	ims_site_opts o = IMS_SITE_OPTS_INIT;
	o.name = c->name;
	o.ceph_conf = c->ceph_conf;
	o.client_id = c->client_id;
	o.keyring = c->keyring;
	o.mon_timeout = c->mon_timeout;
	o.osd_timeout = c->osd_timeout;
	return o;
}

int ims_daemon_peer(void *app, const char *name, ims_site **out)
{
	ims_daemon *d = app;
	int r = 0;
	for (size_t i = 0; i < d->cfg->npeers; i++) {
		const ims_config_cluster *c = &d->cfg->peers[i];
		if (strcmp(c->name, name) != 0)
			continue;
		pthread_mutex_lock(&d->peers_lock);
		ims_site *have = d->peers[i];
		pthread_mutex_unlock(&d->peers_lock);
		if (have) {
			*out = have;
			return 0;
		}
		/* connected without the lock: a peer that does not answer holds up only its callers
		 */
		ims_site_opts o = site_opts(c);
		ims_site *site = NULL;
		if ((r = ims_site_connect(&site, &o)) < 0)
			return r;
		ims_site_set_kek(site, d->kek); /* one KEK for every site (docs/SECURITY.md) */
		pthread_mutex_lock(&d->peers_lock);
		if (d->peers[i]) { /* another caller was quicker */
			have = site;
			site = d->peers[i];
		} else {
			d->peers[i] = site;
		}
		pthread_mutex_unlock(&d->peers_lock);
		ims_site_close(have);
		*out = site;
		return 0;
	}
	return ims_error_set(-ENOENT, "no peer site '%s' in %s", name, d->cfg->path);
}

/* The bandwidth replication may use towards peer @p name: its own, else [defaults]. */
static uint64_t peer_bandwidth(void *app, const char *name)
{
	ims_daemon *d = app;
	const ims_config_cluster *c = ims_config_peer(d->cfg, name);
	return c && c->bandwidth_limit ? c->bandwidth_limit : d->cfg->defaults.bandwidth_limit;
}

static bool site_up(void *app, const char *name)
{
	ims_daemon *d = app;
	return ims_health_site_up(d->health, name);
}

static int ready(void *app, char *why, size_t len)
{
	ims_daemon *d = app;
	return ims_health_ready(why, len, d->health);
}

static void metrics(void *app, FILE *out)
{
	ims_daemon *d = app;
	ims_health_metrics(d->health, out);
	if (d->repl)
		ims_repl_sched_metrics(d->repl, out);
	uint64_t counts[6];
	ims_ops_counts(counts, d->ops);
	fprintf(out,
		"# HELP imgstore_operations Operations of this daemon by state (kept in memory).\n"
		"# TYPE imgstore_operations gauge\n");
	for (int s = IMS_OP_QUEUED; s <= IMS_OP_CANCELLED; s++)
		fprintf(out, "imgstore_operations{state=\"%s\"} %llu\n",
			ims_op_state_name((ims_op_state)s), (unsigned long long)counts[s]);
	int failovers = atomic_load(&d->failovers);
	if (failovers >= 0)
		fprintf(out,
			"# HELP imgstore_failovers_in_progress Failovers recorded on this site and "
			"not finished: "
			"running, or interrupted (repl status POOL/IMAGE says failing-over).\n"
			"# TYPE imgstore_failovers_in_progress gauge\n"
			"imgstore_failovers_in_progress{site=\"%s\"} %d\n",
			d->cfg->site.name, failovers);
	pthread_mutex_lock(&d->lock);
	unsigned waits = d->download_waits;
	unsigned long long nowaits = (unsigned long long)d->download_nowaits;
	pthread_mutex_unlock(&d->lock);
	fprintf(out,
		"# HELP imgstore_download_waits DownloadChunk calls waiting (each on a thread of "
		"its own) for bytes a streamed export has not made yet.\n"
		"# TYPE imgstore_download_waits gauge\nimgstore_download_waits %u\n"
		"# HELP imgstore_download_waits_limit The most that may wait at once (half of "
		"[server] slow_calls).\n"
		"# TYPE imgstore_download_waits_limit gauge\nimgstore_download_waits_limit %u\n"
		"# HELP imgstore_download_nowaits_total DownloadChunk calls answered at once with "
		"no "
		"bytes because that many were waiting already (the client asks again).\n"
		"# TYPE imgstore_download_nowaits_total counter\n"
		"imgstore_download_nowaits_total %llu\n",
		waits, (unsigned)IMS_DOWNLOAD_WAITERS(d->cfg->server.slow_calls), nowaits);
	fprintf(out,
		"# HELP imgstore_uptime_seconds Seconds since the daemon started.\n"
		"# TYPE imgstore_uptime_seconds gauge\nimgstore_uptime_seconds %lld\n",
		(long long)(time(NULL) - d->started));
}

static int mkdir_p(const char *path, mode_t mode)
{
	char tmp[1024];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Connect to this site, retrying while it is down, until connected or told to stop. */
static int connect_site(ims_daemon *d, sigset_t *sigs)
{
	ims_site_opts o = site_opts(&d->cfg->site);
	for (unsigned attempt = 1;; attempt++) {
		int r = ims_site_connect(&d->site, &o);
		if (r == 0)
			return 0;
		if (r != -ETIMEDOUT)
			return r; /* a wrong conf, keyring or user: retrying will not help */
		ims_log_warning("%s; retrying in 5 s (attempt %u)", ims_error_last(), attempt);
		char line[600];
		snprintf(line, sizeof(line), "not ready: %s; retrying (attempt %u)",
			 ims_error_last(), attempt);
		ims_notify_status(line);
		ims_notify_watchdog();
		struct timespec ts = {5, 0};
		int sig = sigtimedwait(sigs, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT)
			return -EINTR;
	}
}

/* What the command line asked for. */
typedef struct {
	const char *config, *level;
	bool check, use_syslog;
} args;

/* @returns -1 to go on, else the exit code (the options that answer and exit, or a usage error). */
static int parse_args(args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'k'},
		{"help-config", no_argument, NULL, 'H'},
		{"log-level", required_argument, NULL, 'l'},
		{"syslog", no_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"list-methods", no_argument, NULL, 'M'},
		{NULL, 0, NULL, 0},
	};
	int c;
	memset(a, 0, sizeof(*a));
	while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c': a->config = optarg; break;
		case 'k': a->check = true; break;
		case 'H': ims_config_write_reference(stdout); return 0;
		case 'l': a->level = optarg; break;
		case 's': a->use_syslog = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("imgstored %s\n", IMS_VERSION); return 0;
		case 'M': {
			size_t n;
			const ims_rpc_method *m = ims_daemon_methods(&n);
			for (size_t i = 0; i < n; i++)
				printf("%s %s%s\n", m[i].path, ims_role_name(m[i].role),
				       m[i].fn ? "" : " unimplemented");
			return 0;
		}
		default: usage(stderr); return 2;
		}
	}
	if (!a->config || optind != argc) {
		usage(stderr);
		return 2;
	}
	return -1;
}

/* The log level and sink: --log-level over the config's; syslog, the journal or stderr. */
static int setup_log(const args *a, const ims_config *cfg)
{
	ims_log_level lvl;
	ims_log_parse_level(&lvl, a->level ? a->level : cfg->defaults.log_level);
	if (a->level && ims_log_parse_level(&lvl, a->level) < 0) {
		fprintf(stderr, "imgstored: unknown log level '%s'\n", a->level);
		return -EINVAL;
	}
	ims_log_set_level(lvl);
	if (a->use_syslog)
		ims_log_set_sink(IMS_LOG_SYSLOG, "imgstored");
	else if (ims_log_stderr_is_journal())
		ims_log_set_sink(IMS_LOG_JOURNAL,
				 NULL); /* journalctl -p warning shows warnings and errors */
	return 0;
}

/* The audit log and the spool directory, cleaned of what a previous run left. */
static int open_files(ims_daemon *d)
{
	int r;
	if (d->cfg->server.kek_file &&
	    (r = ims_crypt_kek_load(&d->kek, d->cfg->server.kek_file)) < 0) {
		ims_log_error("%s", ims_error_last());
		return r;
	}
	if (d->cfg->server.kek_previous_file) {
		/* a rotation: keys the previous KEK wrapped open until `key rewrap` moved them */
		ims_crypt_kek *prev = NULL;
		if (!d->kek) {
			ims_log_error("kek_previous_file is set but kek_file is not");
			return -EINVAL;
		}
		if ((r = ims_crypt_kek_load(&prev, d->cfg->server.kek_previous_file)) < 0) {
			ims_log_error("%s", ims_error_last());
			return r;
		}
		ims_crypt_kek_set_previous(d->kek, prev);
		ims_log_info("KEK %s, and the previous KEK %s until `imgstore key rewrap`",
			     ims_crypt_kek_id(d->kek), ims_crypt_kek_previous_id(d->kek));
	}
	if (d->cfg->server.audit_log) {
		d->audit = fopen(d->cfg->server.audit_log, "a+");
		if (!d->audit) {
			ims_log_error("cannot open audit log '%s': %s", d->cfg->server.audit_log,
				      strerror(errno));
			return -errno;
		}
		audit_chain_resume(d->audit_prev, d->audit);
	}
	if ((r = mkdir_p(d->cfg->server.spool_dir, 0700)) < 0) {
		ims_log_error("cannot create spool '%s': %s", d->cfg->server.spool_dir,
			      ims_strerror(r));
		return r;
	}
	ims_daemon_clean_spool(d);
	return 0;
}

/* A digest appended to the log: an audit line, so that the log's entries are anchored outside
 * it too (a log rewritten from an entry on disagrees with the audit trail). */
static void digest_recorded(void *ctx, const char *peer, const ims_digest_entry *e)
{
	char line[1200];
	if (strcmp(e->why, IMS_DIGEST_CHECKPOINT) == 0) /* a compaction (digest.h) */
		snprintf(line, sizeof(line),
			 "digest seq=%" PRIu64 " checkpoint replaces=%" PRIu64 " runs=%" PRIu64
			 " hash=%s%s%s",
			 e->seq, e->nobjects, e->size, e->hash, peer ? " site=" : "",
			 peer ? peer : "");
	else
		snprintf(line, sizeof(line),
			 "digest seq=%" PRIu64 " snapshot='%s/%s@%s' for=%s objects=%" PRIu64
			 " hash=%s%s%s",
			 e->seq, e->pool, e->image, e->snap, e->why, e->nobjects, e->hash,
			 peer ? " site=" : "", peer ? peer : "");
	audit_line(ctx, line);
}

/* A sealed replication snapshot or a scheduled one: its digest queued, never waited for. */
static void queue_digest(void *ctx, const char *pool, const char *image, const char *snap,
			 const char *why)
{
	ims_daemon *d = ctx;
	ims_digest_queue_push(d->digests, pool, image, snap, why);
}

/* A cycle sealed a snapshot, or shipped scheduled ones: the digests of the primary's and of
 * the copies on the target's site, recorded in that site's log (a failover there keeps its
 * snapshots verifiable). A target not connected is left without them (warned). */
static void sealed_digest(void *ctx, const char *target, const char *pool, const char *image,
			  const ims_repl_result *res)
{
	ims_daemon *d = ctx;
	ims_site *peer = NULL;
	if (!res->unchanged && res->sealed[0])
		queue_digest(ctx, pool, image, res->sealed, "replication");
	if (ims_daemon_peer(d, target, &peer) < 0) {
		ims_log_warning("no digests of the copies of '%s/%s' on site '%s': %s", pool, image,
				target, ims_error_last());
		return;
	}
	for (unsigned i = 0; i < res->nshipped && i < IMS_REPL_SHIPPED_MAX; i++)
		ims_digest_queue_push_on(d->digests, peer, pool, image, res->shipped[i],
					 "replica-schedule");
	if (res->nshipped > IMS_REPL_SHIPPED_MAX)
		ims_log_warning("digests of %u scheduled snapshots of '%s/%s' shipped to site '%s' "
				"in one cycle: only the first %d queued",
				res->nshipped, pool, image, target, IMS_REPL_SHIPPED_MAX);
	if (!res->unchanged && res->sealed[0])
		ims_digest_queue_push_on(d->digests, peer, pool, image, res->sealed, "replica");
}

static void sealed_group_digest(void *ctx, const char *target, const char *pool, const char *group,
				const char *snap)
{
	ims_daemon *d = ctx;
	ims_site *peer = NULL;
	ims_digest_queue_push_group(d->digests, d->site, pool, group, snap, "replication");
	if (ims_daemon_peer(d, target, &peer) < 0)
		ims_log_warning("no digests of the copy of '%s/%s@%s' on site '%s': %s", pool,
				group, snap, target, ims_error_last());
	else
		ims_digest_queue_push_group(d->digests, peer, pool, group, snap, "replica");
}

static void scheduled_digest(void *ctx, const char *pool, const char *image, const char *snap)
{
	queue_digest(ctx, pool, image, snap, "schedule");
}

/* The operations' workers, the site probes, the alert webhook and the replication scheduler. */
static int start_workers(ims_daemon *d)
{
	int r;
	if ((r = ims_ops_start(&d->ops, d->site, d->pool, (unsigned)d->cfg->defaults.op_workers,
			       d->owner_host)) < 0) {
		ims_log_error("cannot start operations: %s", ims_error_last());
		return r;
	}
	d->peers = calloc(d->cfg->npeers + 1, sizeof(*d->peers));
	if (!d->peers)
		return -ENOMEM;
	if ((r = ims_health_start(&d->health, d)) < 0) {
		ims_log_error("cannot start the site probes: %s", ims_error_last());
		return r;
	}
	ims_repl_sched_opts ro = IMS_REPL_SCHED_OPTS_INIT;
	ro.local = d->site;
	ro.pool = d->pool;
	ro.peer = ims_daemon_peer;
	ro.peer_ctx = d;
	ro.owner = d->owner_host;
	ro.workers = (unsigned)d->cfg->defaults.replication_workers;
	ro.lock_seconds = (unsigned)d->cfg->defaults.lock_expiry;
	ro.copy.concurrency = (unsigned)d->cfg->defaults.concurrency;
	ro.copy.inflight_bytes = d->cfg->defaults.inflight_bytes;
	ro.copy.retention = (unsigned)d->cfg->defaults.retention;
	ro.copy.records_pool = d->pool;
	if (d->cfg->defaults.alert_webhook) {
		if ((r = ims_alert_start(&d->alert, d->cfg->defaults.alert_webhook,
					 d->cfg->site.name)) < 0) {
			ims_log_error("cannot start the alert webhook: %s", ims_error_last());
			return r;
		}
		ro.event = ims_alert_event;
		ro.event_ctx = d->alert;
	}
	ro.bandwidth = peer_bandwidth;
	ro.site_up = site_up;
	if ((r = ims_digest_queue_start(&d->digests, d->site, d->pool, digest_recorded, d)) < 0) {
		ims_log_error("cannot start the snapshot digests: %s", ims_error_last());
		return r;
	}
	ims_digest_queue_compact_after(d->digests, d->cfg->defaults.digest_log_compact_after);
	ro.sealed = sealed_digest;
	ro.sealed_group = sealed_group_digest;
	ro.sealed_ctx = d;
	if ((r = ims_repl_sched_start(&d->repl, &ro)) < 0) {
		ims_log_error("cannot start replication: %s", ims_error_last());
		return r;
	}
	ims_snapsched_opts so = IMS_SNAPSCHED_OPTS_INIT;
	so.site = d->site;
	so.records_pool = d->pool;
	so.owner = d->owner_host;
	so.hour_s = (int64_t)d->cfg->defaults.snapshot_schedule_hour;
	so.taken = scheduled_digest;
	so.taken_ctx = d;
	if ((r = ims_snapsched_start(&d->snapsched, &so)) < 0) {
		ims_log_error("cannot start the snapshot schedules: %s", ims_error_last());
		return r;
	}
	return 0;
}

/* The RPC server on the configured listeners, then the tiering scan. */
static int start_server(ims_daemon *d, char *status, size_t len)
{
	const ims_config *cfg = d->cfg;
	int r;
	ims_rpc_server_opts so = IMS_RPC_SERVER_OPTS_INIT;
	so.listen = cfg->server.listen;
	so.unix_socket = cfg->server.unix_socket;
	so.tls_cert = cfg->server.tls_cert;
	so.tls_key = cfg->server.tls_key;
	so.tls_client_ca = cfg->server.tls_client_ca;
	so.tls_priorities = cfg->server.tls_priorities;
	so.allow_plain_http = cfg->server.allow_plain_http;
	so.token_file = cfg->server.token_file;
	so.max_request_bytes = cfg->server.max_request_bytes;
	so.read_timeout = (unsigned)cfg->server.read_timeout;
	so.threads = (unsigned)cfg->server.threads;
	so.slow_calls = (unsigned)cfg->server.slow_calls;
	so.methods = ims_daemon_methods(&so.nmethods);
	so.app = d;
	so.metrics = metrics;
	so.ready = ready;
	so.audit = audit_line;
	if ((r = ims_rpc_server_start(&d->server, &so)) < 0) {
		ims_log_error("cannot serve: %s", ims_error_last());
		return r;
	}
	if ((r = ims_daemon_tier_scan_start(&d->tier_scan, d)) < 0)
		ims_log_warning("tiering policies will not be applied: %s", ims_error_last());
	ims_log_info("imgstored %s serving site '%s' (%s)%s%s%s%s", IMS_VERSION, cfg->site.name,
		     cfg->site.ceph_conf, so.listen ? " on " : "", so.listen ? so.listen : "",
		     so.unix_socket ? " and " : "", so.unix_socket ? so.unix_socket : "");
	snprintf(status, len, "serving site '%s'%s%s%s%s", cfg->site.name, so.listen ? " on " : "",
		 so.listen ? so.listen : "", so.unix_socket ? " and " : "",
		 so.unix_socket ? so.unix_socket : "");
	return 0;
}

/* When the main loop last did each of its chores. */
typedef struct {
	time_t spool, cleanup, failovers;
} chores;

/* Every 30 s, remove the temporary images of interrupted imports and restores in every RBD
 * pool (a dead importer's watch lapses only after a while); every 10 s, count the failovers in
 * progress; hourly, old spool files. Not while the site does not answer: the main thread would
 * wait on it, and the watchdog with it. */
static void do_chores(ims_daemon *d, chores *t, bool site_ok)
{
	unsigned n;
	if (site_ok && time(NULL) - t->cleanup >= 30) {
		if (ims_store_cleanup_tmp(&n, d->site, NULL) < 0)
			ims_log_warning("cleanup of interrupted imports: %s", ims_error_last());
		t->cleanup = time(NULL);
	}
	if (site_ok && time(NULL) - t->failovers >= 10) {
		if (ims_repl_journal_count(&n, d->site) == 0)
			atomic_store(&d->failovers, (int)n);
		else
			ims_log_debug("failovers in progress not counted: %s", ims_error_last());
		t->failovers = time(NULL);
	}
	if (time(NULL) - t->spool > 3600) {
		ims_daemon_clean_spool(d);
		t->spool = time(NULL);
	}
}

/* The main thread waits for signals and does the chores. Under systemd it says READY=1 once
 * its own site answers (the listeners are up by now), and feeds the watchdog. SIGHUP reloads;
 * SIGTERM and SIGINT return. */
static void serve(ims_daemon *d, sigset_t *sigs, const args *a, const char *status)
{
	chores t = {.spool = time(NULL), .cleanup = time(NULL), .failovers = 0};
	unsigned wd_ms = ims_notify_watchdog_ms();
	unsigned tick_ms = wd_ms && wd_ms / 2 < 5000 ? wd_ms / 2 : 5000;
	bool notified = false;
	char waiting[512] = "";
	for (;;) {
		char why[512] = "";
		bool site_ok = ims_health_ready(why, sizeof(why), d->health) == 0;
		if (site_ok) {
			if (!notified)
				ims_notify_ready(status);
			notified = true;
		} else if (!notified && strcmp(why, waiting) != 0) {
			char line[600];
			snprintf(waiting, sizeof(waiting), "%s", why);
			snprintf(line, sizeof(line), "not ready: %s", why);
			ims_notify_status(line);
		}
		if (wd_ms)
			ims_notify_watchdog();
		struct timespec tick = {(time_t)(tick_ms / 1000),
					(long)(tick_ms % 1000) * 1000000L};
		int sig = sigtimedwait(sigs, NULL, &tick);
		if (sig < 0) {
			/* not while some PGs of the site do not answer: a chore could wait on one
			 */
			do_chores(d, &t,
				  site_ok && ims_health_site_up(d->health, d->cfg->site.name));
			continue;
		}
		if (sig == SIGHUP) {
			ims_notify_reloading();
			reload_config(d, a->config, a->level != NULL);
			reopen_audit(d);
			if (ims_rpc_server_reload_tokens(d->server) == 0)
				ims_log_info("tokens reloaded");
			else
				ims_log_error("tokens not reloaded, the old ones stay: %s",
					      ims_error_last());
			ims_notify_ready(status);
			continue;
		}
		ims_notify_stopping();
		ims_log_info("signal %d: stopping", sig);
		return;
	}
}

/* Everything started, stopped in the order that leaves nothing calling what is gone. */
static void stop_all(ims_daemon *d)
{
	ims_rpc_server_stop(d->server);
	ims_tier_scan_stop(d->tier_scan); /* before the operations it waits on */
	ims_snapsched_stop(d->snapsched);
	ims_ops_stop(d->ops); /* before the scheduler: a failover claims and pauses through it */
	ims_repl_sched_stop(d->repl);
	ims_digest_queue_stop(d->digests); /* after those that queue digests */
	ims_alert_stop(d->alert);	   /* after the scheduler: nothing calls it any more */
	ims_health_stop(d->health);	   /* after everything that asks it */
	for (size_t i = 0; d->peers && i < d->cfg->npeers; i++)
		ims_site_close(d->peers[i]);
	free(d->peers);
	ims_site_close(d->site);
	ims_crypt_kek_free(d->kek);
	if (d->audit)
		fclose(d->audit);
	ims_config_free(d->live);
	ims_config_free(d->cfg);
}

int main(int argc, char **argv)
{
	ims_daemon d;
	args a;
	int r, rc = 1;

	/* Copies hold blocks of up to 4 MiB from many threads. glibc's default raises its mmap
	 * threshold after the first such block is freed and then keeps every later one in the
	 * heaps of the threads' arenas; a fixed threshold gives them back (about 50 MiB less
	 * peak memory during a replication cycle, measured with bench/repl.sh). */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);

	if ((r = parse_args(&a, argc, argv)) >= 0)
		return r;
	memset(&d, 0, sizeof(d));
	pthread_mutex_init(&d.lock, NULL);
	pthread_mutex_init(&d.peers_lock, NULL);
	d.started = time(NULL);
	atomic_init(&d.failovers, -1);
	if (ims_config_load(&d.cfg, a.config, print_error, NULL) < 0) {
		if (ims_error_last_code() != -EINVAL) /* the lines were printed one by one */
			fprintf(stderr, "imgstored: %s\n", ims_error_last());
		return 2;
	}
	if (a.check) {
		printf("%s: ok\n", a.config);
		ims_config_free(d.cfg);
		return 0;
	}
	if (setup_log(&a, d.cfg) < 0) {
		ims_config_free(d.cfg);
		return 2;
	}
	d.pool = d.cfg->site.pool;
	char host[64] = "host";
	gethostname(host, sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(d.owner_host, sizeof(d.owner_host), "%s/%s",
		 d.cfg->server.instance ? d.cfg->server.instance : host, d.cfg->site.name);

	/* Signals go to the main thread only: block them before any thread exists. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (open_files(&d) < 0)
		goto out;
	if ((r = connect_site(&d, &sigs)) < 0) {
		if (r != -EINTR)
			ims_log_error("%s", ims_error_last());
		rc = r == -EINTR ? 0 : 1;
		goto out;
	}
	ims_site_set_kek(d.site, d.kek);
	unsigned removed = 0;
	if (ims_store_cleanup_tmp(&removed, d.site, NULL) < 0)
		ims_log_warning("cleanup of interrupted imports: %s", ims_error_last());
	char status[640];
	if (start_workers(&d) < 0 || start_server(&d, status, sizeof(status)) < 0)
		goto out;
	serve(&d, &sigs, &a, status);
	rc = 0;
out:
	stop_all(&d);
	if (rc == 0)
		ims_log_info("stopped");
	return rc;
}
