#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "common/log.h"
#include "common/spec.h"
#include "common/units.h"

typedef enum {
	T_STRING,
	T_PATH,
	T_NAME,
	T_BOOL,
	T_UINT,
	T_SIZE,
	T_DURATION,
	T_ENUM,
	T_ADDRESS,
	T_URL,
	T_PATHS, /* absolute paths separated by commas */
	T_UUID,
} key_type;

/* The kinds of section. [site] and [peer NAME] share the cluster keys. */
typedef enum {
	S_CLUSTER,
	S_SERVER,
	S_S3,
	S_DEFAULTS,
	S_HOST,
} section_kind;

typedef struct {
	section_kind section;
	const char *name;
	key_type type;
	size_t offset;
	const char *def; /* default, written as in the file; NULL for none */
	uint64_t min, max;
	const char *choices; /* T_ENUM: "a|b|c" */
	unsigned flags;
	const char *help;
} config_key;

#define F_REQUIRED  1u
#define F_SITE_ONLY 2u /* [site] but not [peer] */
#define F_PEER_ONLY 4u /* [peer] but not [site] */
#define F_RELOAD                                                                                   \
	8u /* applied on SIGHUP (ims_config_diff tells daemon/main.c); the reference says so */

#define CL(f) offsetof(ims_config_cluster, f)
#define SV(f) offsetof(ims_config_server, f)
#define S3(f) offsetof(ims_config_s3, f)
#define DF(f) offsetof(ims_config_defaults, f)
#define HO(f) offsetof(ims_config_host, f)
#define DAY   (86400ull)
#define GIB   (1ull << 30)

/* The one table. Order is the order of the reference in docs/CONFIG.md. */
static const config_key keys[] = {
	{S_CLUSTER, "name", T_NAME, CL(name), NULL, 0, 0, NULL, F_REQUIRED | F_SITE_ONLY,
	 "This site's name, as peers and the CLI name it (letters, digits, '-', '_')."},
	{S_CLUSTER, "ceph_conf", T_PATH, CL(ceph_conf), NULL, 0, 0, NULL, F_REQUIRED,
	 "The cluster's ceph.conf."},
	{S_CLUSTER, "client_id", T_STRING, CL(client_id), "admin", 0, 0, NULL, 0,
	 "The cephx user, without 'client.'."},
	{S_CLUSTER, "keyring", T_PATH, CL(keyring), NULL, 0, 0, NULL, 0,
	 "The keyring of client_id; when unset, the one ceph_conf names."},
	{S_CLUSTER, "pool", T_STRING, CL(pool), "rbd", 0, 0, NULL, 0,
	 "The pool used where a request names none."},
	{S_CLUSTER, "mon_timeout", T_DURATION, CL(mon_timeout), "10s", 1, DAY, NULL, 0,
	 "How long a call waits for the monitors before it fails with a timeout."},
	{S_CLUSTER, "osd_timeout", T_DURATION, CL(osd_timeout), "30s", 1, DAY, NULL, 0,
	 "How long a call waits for an OSD before it fails with a timeout."},
	{S_CLUSTER, "bandwidth_limit", T_SIZE, CL(bandwidth_limit), "0", 0, UINT64_MAX, NULL,
	 F_PEER_ONLY,
	 "[peer] only: bytes per second replication may send to this site; 0: [defaults] "
	 "bandwidth_limit."},

	{S_SERVER, "listen", T_ADDRESS, SV(listen), NULL, 0, 0, NULL, 0,
	 "TCP address of the RPC API, HOST:PORT; TLS unless allow_plain_http."},
	{S_SERVER, "unix_socket", T_PATH, SV(unix_socket), NULL, 0, 0, NULL, 0,
	 "Unix socket of the RPC API, for local clients."},
	{S_SERVER, "tls_cert", T_PATH, SV(tls_cert), NULL, 0, 0, NULL, 0,
	 "PEM certificate (chain) of the TCP listener."},
	{S_SERVER, "tls_key", T_PATH, SV(tls_key), NULL, 0, 0, NULL, 0,
	 "PEM private key of tls_cert."},
	{S_SERVER, "tls_client_ca", T_PATH, SV(tls_client_ca), NULL, 0, 0, NULL, 0,
	 "When set, clients must present a certificate signed by this CA."},
	{S_SERVER, "tls_priorities", T_STRING, SV(tls_priorities),
	 "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", 0, 0, NULL, 0,
	 "GnuTLS priority string of the TCP listener: protocol versions and ciphers. It may enable "
	 "TLS 1.2 "
	 "and 1.3 only; the daemon refuses to start on one that enables an older version."},
	{S_SERVER, "token_file", T_PATH, SV(token_file), NULL, 0, 0, NULL, 0,
	 "Bearer tokens and their roles, one 'ROLE TOKEN [NAME]' a line; must not be readable by "
	 "others."},
	{S_SERVER, "kek_file", T_PATH, SV(kek_file), NULL, 0, 0, NULL, 0,
	 "File with the site's key-encryption key (64 hex digits, a 256-bit key) that wraps the "
	 "data key of every encrypted image; the daemon refuses to start if group or others may "
	 "read it. When unset, encrypted images can be neither made nor opened. Every site of a "
	 "replication must hold the same key (docs/SECURITY.md)."},
	{S_SERVER, "kek_previous_file", T_PATH, SV(kek_previous_file), NULL, 0, 0, NULL, 0,
	 "During a KEK rotation: the file of the previous key-encryption key (checked as "
	 "kek_file). "
	 "Data keys it wrapped still open; `imgstore key rewrap` wraps them all with kek_file's "
	 "key, after which this option and the file can go (docs/SECURITY.md). Needs kek_file."},
	{S_SERVER, "allow_plain_http", T_BOOL, SV(allow_plain_http), "false", 0, 0, NULL, 0,
	 "Serve the TCP listener without TLS (loopback test setups only)."},
	{S_SERVER, "max_request_bytes", T_SIZE, SV(max_request_bytes), "4M", 1024, GIB, NULL, 0,
	 "Largest request body accepted; larger ones are refused before decoding."},
	{S_SERVER, "read_timeout", T_DURATION, SV(read_timeout), "30s", 1, 3600, NULL, 0,
	 "A connection idle for this long is closed."},
	{S_SERVER, "threads", T_UINT, SV(threads), "8", 1, 256, NULL, 0,
	 "Threads serving requests (quick calls; slow ones run beside them, see slow_calls)."},
	{S_SERVER, "slow_calls", T_UINT, SV(slow_calls), "64", 1, 4096, NULL, 0,
	 "Calls that may block for long (WaitOperation, VerifyImage, VerifyGroup, CreateSnapshot) "
	 "served at once, each on a thread of its own beside the request threads; one more is "
	 "refused with resource_exhausted."},
	{S_SERVER, "audit_log", T_PATH, SV(audit_log), NULL, 0, 0, NULL, 0,
	 "File for the audit log; when unset, audit lines go to the daemon's log."},
	{S_SERVER, "instance", T_NAME, SV(instance), NULL, 0, 0, NULL, 0,
	 "This daemon's name among the imgstored of its site; when unset, the host name. The "
	 "replication locks and operations it holds carry it, and it takes back at start-up what "
	 "an earlier run under the same name left: two daemons of one site on one host need "
	 "different names, and a restarted daemon must keep its own."},
	{S_SERVER, "spool_dir", T_PATH, SV(spool_dir), "/var/lib/imgstore/spool", 0, 0, NULL, 0,
	 "Where uploads for import and exports for download wait; files older than a day are "
	 "removed."},
	{S_SERVER, "stream_exports", T_UINT, SV(stream_exports), "8", 0, 64, NULL, 0,
	 "Exports streamed to their clients at once (image export over TLS or by a client that "
	 "cannot name a file the daemon may write), each holding about 40 to 55 MiB of memory "
	 "while it runs (its ring, and the chunks in flight to a client that fetches four at "
	 "once); more go through the spool (written there whole, then downloaded) and 0 streams "
	 "none."},
	{S_SERVER, "upload_stall_timeout", T_DURATION, SV(upload_stall_timeout), "60s", 1, 3600,
	 NULL, 0,
	 "An import that runs while its upload arrives fails when no bytes arrive for this long "
	 "(the client died or hangs): its temporary image and the upload are removed. An export "
	 "streamed to its client fails when the client reads nothing for this long."},
	{S_SERVER, "import_dirs", T_PATHS, SV(import_dirs), NULL, 0, 0, NULL, 0,
	 "Directories whose files an import may read by path on the daemon's host (symbolic links "
	 "resolved first), separated by commas; when unset, imports by path are refused and "
	 "clients upload. "
	 "A file the daemon sees otherwise than the client (its unit's PrivateTmp or ProtectHome) "
	 "is "
	 "refused too, and the client uploads."},
	{S_SERVER, "export_dirs", T_PATHS, SV(export_dirs), NULL, 0, 0, NULL, 0,
	 "Directories an export may write files into by path on the daemon's host (symbolic links "
	 "resolved first), separated by commas; when unset, exports by path are refused and "
	 "clients download. "
	 "A directory the daemon sees otherwise than the client is refused too, and the client "
	 "downloads."},

	{S_S3, "endpoint", T_URL, S3(endpoint), NULL, 0, 0, NULL, F_REQUIRED,
	 "Base URL of the S3 service, http:// or https://."},
	{S_S3, "bucket", T_STRING, S3(bucket), NULL, 0, 0, NULL, F_REQUIRED,
	 "Bucket holding chunks and manifests."},
	{S_S3, "region", T_STRING, S3(region), "us-east-1", 0, 0, NULL, 0,
	 "Region used in request signatures."},
	{S_S3, "credentials_file", T_PATH, S3(credentials_file), NULL, 0, 0, NULL, F_REQUIRED,
	 "File with 'ACCESS_KEY SECRET_KEY'; must not be readable by others."},
	{S_S3, "key_file", T_PATH, S3(key_file), NULL, 0, 0, NULL, F_REQUIRED,
	 "File with the 32-byte AES-256-GCM key (64 hex digits); must not be readable by others."},
	{S_S3, "ca_file", T_PATH, S3(ca_file), NULL, 0, 0, NULL, 0,
	 "CA bundle for an https endpoint; when unset, the system's."},
	{S_S3, "addressing", T_ENUM, S3(addressing), "path", 0, 0, "path|virtual", 0,
	 "Bucket in the path (path) or in the host name (virtual)."},
	{S_S3, "timeout", T_DURATION, S3(timeout), "60s", 1, 3600, NULL, 0,
	 "Time allowed for one request."},
	{S_S3, "retries", T_UINT, S3(retries), "5", 0, 100, NULL, 0,
	 "Retries of a failed request (5xx, throttling, dropped connection), with backoff."},

	{S_DEFAULTS, "rpo", T_DURATION, DF(rpo), "60s", 1, 30 * DAY, NULL, 0,
	 "Recovery point objective of an image whose replication names none."},
	{S_DEFAULTS, "concurrency", T_UINT, DF(concurrency), "16", 1, 256, NULL, 0,
	 "Parallel I/Os of one copy (import, sync, tiering). A replication cycle keeps this many "
	 "blocks' worth of pieces in flight, four times as many pieces of under 1 MiB; a tier push "
	 "or restore no more than fit its memory budget (docs/TIERING.md)."},
	{S_DEFAULTS, "inflight_bytes", T_SIZE, DF(inflight_bytes), "64M", 1 << 20, 16 * GIB, NULL,
	 0, "Bytes one copy may hold in memory at once."},
	{S_DEFAULTS, "bandwidth_limit", T_SIZE, DF(bandwidth_limit), "0", 0, UINT64_MAX, NULL, 0,
	 "Bytes per second replication may send to each peer site (a [peer] may set its own); 0 is "
	 "no limit."},
	{S_DEFAULTS, "retention", T_UINT, DF(retention), "3", 1, 1000, NULL, 0,
	 "Sealed replication snapshots kept on each side."},
	{S_DEFAULTS, "op_workers", T_UINT, DF(op_workers), "4", 1, 256, NULL, 0,
	 "Long-running operations (imports, exports, syncs) run at once."},
	{S_DEFAULTS, "replication_workers", T_UINT, DF(replication_workers), "4", 1, 256, NULL, 0,
	 "Replication cycles this daemon runs at once (over all its pairs); as many again run a "
	 "takeover (the pairs of another imgstored of the site that left, REPLICATION.md)."},
	{S_DEFAULTS, "lock_expiry", T_DURATION, DF(lock_expiry), "60s", 3, 3600, NULL, 0,
	 "How long the lock of a pair's replication cycle outlives a daemon that stopped renewing "
	 "it (renewed every third of it): when an imgstored of a site dies, another one of the "
	 "site takes its pairs over within about twice this. Give every daemon of a site the "
	 "same value."},
	{S_DEFAULTS, "tier_scan_interval", T_DURATION, DF(tier_scan_interval), "1h", 0, 30 * DAY,
	 NULL, 0,
	 "How often the tiering policies are applied (idle images pushed to S3); 0: never."},
	{S_DEFAULTS, "probe_interval", T_DURATION, DF(probe_interval), "5s", 1, 3600, NULL, 0,
	 "How often each site is asked a question (a stat in every PG of its pool): /readyz, "
	 "imgstore_site_up (up, partly or down), and a new client when the cluster blocklisted "
	 "this one."},
	{S_DEFAULTS, "snapshot_schedule_hour", T_DURATION, DF(snapshot_schedule_hour), "1h", 1,
	 3600, NULL, 0,
	 "The hour of the snapshot schedules' retention rule (`--keep hourly=N`); a day is 24 of "
	 "them, a week 168. Shortened by tests only (`2s`: an hourly rule over seconds)."},
	{S_DEFAULTS, "digest_log_compact_after", T_UINT, DF(digest_log_compact_after), "10000", 0,
	 100000000, NULL, 0,
	 "Compact a site's snapshot digest log after every this many digests a daemon appended "
	 "to it (its own site's, and each peer's it digests replicated copies into): the "
	 "entries of snapshots that no longer exist are replaced by a checkpoint that keeps the "
	 "chain verifiable (SECURITY.md). 0: never."},
	{S_DEFAULTS, "log_level", T_ENUM, DF(log_level), "info", 0, 0, "error|warning|info|debug",
	 F_RELOAD, "Most verbose log level written."},
	{S_DEFAULTS, "alert_webhook", T_URL, DF(alert_webhook), NULL, 0, 0, NULL, 0,
	 "URL that receives a JSON POST when an image's lag exceeds its RPO."},

	{S_HOST, "cephx_user", T_STRING, HO(cephx_user), NULL, 0, 0, NULL, F_REQUIRED | F_RELOAD,
	 "The host's own cephx user, without 'client.' (profile rbd on the pools its VMs use); "
	 "attach-info names it in the libvirt disk XML."},
	{S_HOST, "libvirt_secret", T_UUID, HO(libvirt_secret), NULL, 0, 0, NULL,
	 F_REQUIRED | F_RELOAD,
	 "UUID of the libvirt secret on the host that holds cephx_user's key "
	 "(virsh secret-define, secret-set-value)."},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(NKEYS <= 64, "a section_ref keeps the keys given in a 64-bit mask");

static const char *section_title(section_kind s)
{
	switch (s) {
	case S_CLUSTER: return "site";
	case S_SERVER: return "server";
	case S_S3: return "s3";
	case S_DEFAULTS: return "defaults";
	case S_HOST: return "host";
	}
	return "?";
}

/* ---------------------------------------------------------------------------------------- */
/* parse state */

typedef struct {
	section_kind kind;
	int peer;     /* S_CLUSTER: -1 for [site], else the index in cfg->peers */
	size_t index; /* S_S3, S_HOST: the index in cfg->s3, cfg->hosts */
	unsigned line;
	uint64_t set; /* bit i: keys[i] was given */
} section_ref;

typedef struct {
	ims_config *cfg;
	const char *file;
	ims_config_error_fn on_error;
	void *ctx;
	int nerrors;
	section_ref *sections;
	size_t nsections;
	bool have_site, have_server, have_defaults;
} parser;

static void report(parser *p, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report(parser *p, unsigned line, const char *fmt, ...)
{
	char msg[IMS_ERROR_MSG_MAX], full[IMS_ERROR_MSG_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line)
		snprintf(full, sizeof(full), "%s:%u: %s", p->file, line, msg);
	else
		snprintf(full, sizeof(full), "%s: %s", p->file, msg);
	if (p->nerrors++ == 0)
		ims_error_set(-EINVAL, "%s", full);
	if (p->on_error)
		p->on_error(p->ctx, full);
}

static void *section_base(parser *p, const section_ref *s)
{
	switch (s->kind) {
	case S_CLUSTER: return s->peer < 0 ? &p->cfg->site : &p->cfg->peers[s->peer];
	case S_SERVER: return &p->cfg->server;
	case S_S3: return &p->cfg->s3[s->index];
	case S_DEFAULTS: return &p->cfg->defaults;
	case S_HOST: return &p->cfg->hosts[s->index];
	}
	return NULL;
}

static const char *section_label(parser *p, const section_ref *s, char *buf, size_t len)
{
	if (s->kind == S_CLUSTER && s->peer >= 0)
		snprintf(buf, len, "[peer %s]", p->cfg->peers[s->peer].name);
	else if (s->kind == S_S3)
		snprintf(buf, len, "[s3 %s]", p->cfg->s3[s->index].name);
	else if (s->kind == S_HOST)
		snprintf(buf, len, "[host %s]", p->cfg->hosts[s->index].name);
	else
		snprintf(buf, len, "[%s]", section_title(s->kind));
	return buf;
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 32 || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

static bool valid_address(const char *s)
{
	const char *colon;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || end == s + 1 || end[1] != ':')
			return false;
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || colon == s)
			return false;
	}
	char *endp;
	errno = 0;
	long port = strtol(colon + 1, &endp, 10);
	return colon[1] && !*endp && errno == 0 && port >= 1 && port <= 65535;
}

/* "/a, /b/c": every element absolute, none empty. */
static bool valid_paths(const char *s)
{
	for (;;) {
		s += strspn(s, " \t");
		if (*s != '/')
			return false;
		s += strcspn(s, ",");
		if (!*s)
			return true;
		s++;
	}
}

/* A host's name, as the token file and lease records write it. */
static bool valid_host_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 127 || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

static bool enum_has(const char *choices, const char *v)
{
	size_t n = strlen(v);
	for (const char *c = choices; *c;) {
		const char *bar = strchr(c, '|');
		size_t len = bar ? (size_t)(bar - c) : strlen(c);
		if (len == n && strncmp(c, v, n) == 0)
			return true;
		if (!bar)
			break;
		c = bar + 1;
	}
	return false;
}

/* Store @p value into the field of @p k in @p base. Returns 0 or -EINVAL/-ENOMEM with *why set. */
static int set_value(void *base, const config_key *k, const char *value, const char **why)
{
	char *field = (char *)base + k->offset;
	uint64_t v = 0;
	int r;

	switch (k->type) {
	case T_STRING:
	case T_PATH:
	case T_NAME:
	case T_ENUM:
	case T_ADDRESS:
	case T_URL:
	case T_PATHS:
	case T_UUID:
		if (!*value) {
			*why = "a value, not an empty one";
			return -EINVAL;
		}
		for (const char *c = value; *c; c++) {
			if (iscntrl((unsigned char)*c)) {
				*why = "no control characters";
				return -EINVAL;
			}
		}
		if (k->type == T_NAME && !valid_name(value)) {
			*why = "a name: 1 to 32 letters, digits, '-' or '_', starting with a "
			       "letter or digit";
			return -EINVAL;
		}
		if (k->type == T_PATH && value[0] != '/') {
			*why = "an absolute path";
			return -EINVAL;
		}
		if (k->type == T_PATHS && !valid_paths(value)) {
			*why = "absolute paths separated by commas";
			return -EINVAL;
		}
		if (k->type == T_ENUM && !enum_has(k->choices, value)) {
			*why = k->choices;
			return -EINVAL;
		}
		if (k->type == T_ADDRESS && !valid_address(value)) {
			*why = "HOST:PORT with a port from 1 to 65535";
			return -EINVAL;
		}
		if (k->type == T_UUID && !ims_uuid_valid(value)) {
			*why = "a UUID like 2a5f4c1e-8d3b-4c6a-9f0e-1b2c3d4e5f60";
			return -EINVAL;
		}
		if (k->type == T_URL && strncmp(value, "http://", 7) != 0 &&
		    strncmp(value, "https://", 8) != 0) {
			*why = "an http:// or https:// URL";
			return -EINVAL;
		}
		char *copy = strdup(value);
		if (!copy)
			return -ENOMEM;
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	case T_BOOL:
		if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on") ||
		    !strcmp(value, "1"))
			*(bool *)field = true;
		else if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "off") ||
			 !strcmp(value, "0"))
			*(bool *)field = false;
		else {
			*why = "true or false";
			return -EINVAL;
		}
		return 0;
	case T_UINT: {
		char *end;
		if (!isdigit((unsigned char)value[0])) {
			*why = "a whole number";
			return -EINVAL;
		}
		errno = 0;
		unsigned long long n = strtoull(value, &end, 10);
		if (*end || errno) {
			*why = "a whole number";
			return -EINVAL;
		}
		v = n;
		break;
	}
	case T_SIZE:
		r = ims_parse_size(&v, value);
		if (r < 0) {
			*why = "a size like 4096, 64K, 10G";
			return -EINVAL;
		}
		break;
	case T_DURATION:
		r = ims_parse_duration(&v, value);
		if (r < 0) {
			*why = "a duration like 30s, 5m, 1h30m, 2d";
			return -EINVAL;
		}
		break;
	}
	if ((k->min || k->max) && (v < k->min || v > k->max)) {
		*why = "range";
		return -ERANGE;
	}
	*(uint64_t *)field = v;
	return 0;
}

static const config_key *find_key(section_kind kind, bool is_peer, const char *name, size_t *idx)
{
	for (size_t i = 0; i < NKEYS; i++) {
		if (keys[i].section != kind || strcmp(keys[i].name, name) != 0)
			continue;
		if (is_peer && (keys[i].flags & F_SITE_ONLY))
			return NULL;
		if (!is_peer && (keys[i].flags & F_PEER_ONLY))
			return NULL;
		*idx = i;
		return &keys[i];
	}
	return NULL;
}

static void describe_range(const config_key *k, char *buf, size_t len)
{
	char a[32], b[32];
	switch (k->type) {
	case T_SIZE:
		snprintf(buf, len, "from %s to %s", ims_format_size(a, sizeof(a), k->min),
			 ims_format_size(b, sizeof(b), k->max));
		break;
	case T_DURATION:
		snprintf(buf, len, "from %s to %s", ims_format_duration(a, sizeof(a), k->min),
			 ims_format_duration(b, sizeof(b), k->max));
		break;
	default:
		snprintf(buf, len, "from %llu to %llu", (unsigned long long)k->min,
			 (unsigned long long)k->max);
	}
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Comments (the same rule for every type of value; docs/CONFIG.md states it): a '#' or ';'
 * starts a comment that runs to the end of the line when it begins the line, follows a section
 * header, begins a value, or follows a blank (space or tab) in a value: "rpo = 30s  # half a
 * minute" is "30s". One with no blank before it is part of the value ("https://host/x#frag").
 * A value in double quotes keeps what is between them ("/srv/a #1"); only blanks and a comment
 * may follow the closing quote. */
static bool starts_comment(char c)
{
	return c == '#' || c == ';';
}

/* Whether @p s holds nothing but blanks and, maybe, a comment. */
static bool blank_or_comment(const char *s)
{
	s += strspn(s, " \t");
	return !*s || starts_comment(*s);
}

/* The value of a "key = value" line from the text after its '=', comment removed and quotes
 * taken off (in place). NULL, with *why set, when its quotes are wrong. */
static char *take_value(char *v, const char **why)
{
	v = trim(v);
	if (*v == '"') {
		char *close = strchr(v + 1, '"');
		if (!close) {
			*why = "a closing '\"'";
			return NULL;
		}
		if (!blank_or_comment(close + 1)) {
			*why = "nothing but a comment after the closing '\"'";
			return NULL;
		}
		*close = '\0';
		return v + 1;
	}
	for (char *c = v; *c; c++) {
		if (starts_comment(*c) && (c == v || c[-1] == ' ' || c[-1] == '\t')) {
			*c = '\0';
			break;
		}
	}
	return trim(v);
}

static section_ref *add_section(parser *p, section_kind kind, unsigned line)
{
	section_ref *n = realloc(p->sections, (p->nsections + 1) * sizeof(*n));
	if (!n)
		return NULL;
	p->sections = n;
	section_ref *s = &p->sections[p->nsections++];
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	s->peer = -1;
	s->line = line;
	return s;
}

/* [host NAME]: a hypervisor host, NAME as in its token line. */
static section_ref *open_host(parser *p, const char *name, unsigned line, int *oom)
{
	ims_config *cfg = p->cfg;
	section_ref *s;

	if (!name || !*name) {
		report(p, line,
		       "[host] needs a name: [host NAME], NAME as in the host's token "
		       "line");
		return NULL;
	}
	if (!valid_host_name(name)) {
		report(p, line, "bad host name '%s': 1 to 127 letters, digits, '.', '-' or '_'",
		       name);
		return NULL;
	}
	if (ims_config_host_entry(cfg, name)) {
		report(p, line, "[host %s] appears twice", name);
		return NULL;
	}
	char *copy = strdup(name);
	ims_config_host *n = copy ? realloc(cfg->hosts, (cfg->nhosts + 1) * sizeof(*n)) : NULL;
	if (!n) {
		free(copy);
		goto nomem;
	}
	cfg->hosts = n;
	memset(&n[cfg->nhosts], 0, sizeof(*n));
	n[cfg->nhosts].name = copy;
	n[cfg->nhosts].line = line;
	if (!(s = add_section(p, S_HOST, line)))
		goto nomem;
	s->index = cfg->nhosts++;
	return s;
nomem:
	*oom = 1;
	return NULL;
}

/* [peer NAME] (another site's cluster) or [s3 NAME] (an object storage target). */
static section_ref *open_peer_or_s3(parser *p, const char *kind, const char *name, unsigned line,
				    int *oom)
{
	ims_config *cfg = p->cfg;
	bool peer = kind[0] == 'p';
	section_ref *s;

	if (!name || !*name) {
		report(p, line, "[%s] needs a name: [%s NAME]", kind, kind);
		return NULL;
	}
	if (!valid_name(name)) {
		report(p, line, "bad %s name '%s': 1 to 32 letters, digits, '-' or '_'", kind,
		       name);
		return NULL;
	}
	if (peer ? ims_config_peer(cfg, name) != NULL : ims_config_s3_target(cfg, name) != NULL) {
		report(p, line, "[%s %s] appears twice", kind, name);
		return NULL;
	}
	char *copy = strdup(name);
	if (!copy)
		goto nomem;
	if (peer) {
		ims_config_cluster *n = realloc(cfg->peers, (cfg->npeers + 1) * sizeof(*n));
		if (!n) {
			free(copy);
			goto nomem;
		}
		cfg->peers = n;
		memset(&n[cfg->npeers], 0, sizeof(*n));
		n[cfg->npeers].name = copy;
		n[cfg->npeers].line = line;
		if (!(s = add_section(p, S_CLUSTER, line)))
			goto nomem;
		s->peer = (int)cfg->npeers++;
	} else {
		ims_config_s3 *n = realloc(cfg->s3, (cfg->ns3 + 1) * sizeof(*n));
		if (!n) {
			free(copy);
			goto nomem;
		}
		cfg->s3 = n;
		memset(&n[cfg->ns3], 0, sizeof(*n));
		n[cfg->ns3].name = copy;
		n[cfg->ns3].line = line;
		if (!(s = add_section(p, S_S3, line)))
			goto nomem;
		s->index = cfg->ns3++;
	}
	return s;
nomem:
	*oom = 1;
	return NULL;
}

/* [site], [server] or [defaults]: no name, once each. */
static section_ref *open_single(parser *p, const char *kind, const char *name, unsigned line,
				int *oom)
{
	ims_config *cfg = p->cfg;
	section_ref *s;
	section_kind k;
	bool *seen;
	unsigned *where;

	if (!strcmp(kind, "site")) {
		k = S_CLUSTER, seen = &p->have_site, where = &cfg->site.line;
	} else if (!strcmp(kind, "server")) {
		k = S_SERVER, seen = &p->have_server, where = &cfg->server.line;
	} else if (!strcmp(kind, "defaults")) {
		k = S_DEFAULTS, seen = &p->have_defaults, where = &cfg->defaults.line;
	} else {
		report(p, line,
		       "unknown section [%s]: expected [site], [peer NAME], [server], [s3 NAME], "
		       "[defaults] or [host NAME]",
		       kind);
		return NULL;
	}
	if (name) {
		report(p, line, "[%s] takes no name", kind);
		return NULL;
	}
	if (*seen) {
		report(p, line, "[%s] appears twice (first at line %u)", kind, *where);
		return NULL;
	}
	*seen = true;
	*where = line;
	if (!(s = add_section(p, k, line)))
		*oom = 1;
	return s;
}

/* Open a section from the text between the brackets. Returns the section or NULL (reported). */
static section_ref *open_section(parser *p, char *head, unsigned line, int *oom)
{
	char *kind = trim(head), *name = NULL;
	char *sp = kind;
	while (*sp && !isspace((unsigned char)*sp))
		sp++;
	if (*sp) {
		*sp = '\0';
		name = trim(sp + 1);
	}
	if (!strcmp(kind, "host"))
		return open_host(p, name, line, oom);
	if (!strcmp(kind, "peer") || !strcmp(kind, "s3"))
		return open_peer_or_s3(p, kind, name, line, oom);
	return open_single(p, kind, name, line, oom);
}

static int parse_lines(parser *p, char *text)
{
	section_ref *cur = NULL;
	bool skipping = false; /* inside a section that was refused: its keys are not checked */
	unsigned lineno = 0;
	char label[96];
	int oom = 0;

	for (char *line = text, *next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		char *s = trim(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']');
			if (!end || !blank_or_comment(end + 1)) {
				report(p, lineno,
				       "bad section header '%s': "
				       "expected [NAME] alone on the line or before a comment",
				       s);
				cur = NULL;
				skipping = true;
				continue;
			}
			*end = '\0';
			cur = open_section(p, s + 1, lineno, &oom);
			if (oom)
				return -ENOMEM;
			skipping = cur == NULL;
			continue;
		}
		char *eq = strchr(s, '=');
		if (!eq) {
			report(p, lineno, "expected 'key = value', got '%s'", s);
			continue;
		}
		*eq = '\0';
		char *key = trim(s), *raw = trim(eq + 1);
		if (skipping)
			continue;
		if (!cur) {
			report(p, lineno,
			       "'%s' is outside any section: put it under [site], [server], ...",
			       key);
			continue;
		}
		size_t idx;
		const config_key *k =
			find_key(cur->kind, cur->kind == S_CLUSTER && cur->peer >= 0, key, &idx);
		section_label(p, cur, label, sizeof(label));
		if (!k) {
			report(p, lineno, "unknown key '%s' in %s", key, label);
			continue;
		}
		if (cur->set & (1ull << idx)) {
			report(p, lineno, "'%s' is set twice in %s", key, label);
			continue;
		}
		const char *why = "";
		char *value = take_value(raw, &why);
		if (!value) {
			report(p, lineno, "bad value '%s' for '%s': expected %s", raw, key, why);
			cur->set |= 1ull << idx;
			continue;
		}
		int r = set_value(section_base(p, cur), k, value, &why);
		if (r == -ENOMEM)
			return r;
		if (r == -ERANGE) {
			char range[96];
			describe_range(k, range, sizeof(range));
			report(p, lineno, "'%s' = '%s' is out of range: %s", key, value, range);
		} else if (r < 0) {
			report(p, lineno, "bad value '%s' for '%s': expected %s", value, key, why);
		}
		cur->set |= 1ull << idx;
	}
	return 0;
}

/* Defaults for keys not given, and a report for required keys missing. */
static int finish_section(parser *p, section_ref *s)
{
	char label[96];
	section_label(p, s, label, sizeof(label));
	for (size_t i = 0; i < NKEYS; i++) {
		const config_key *k = &keys[i];
		if (k->section != s->kind || (s->set & (1ull << i)))
			continue;
		if (s->kind == S_CLUSTER && s->peer >= 0 && (k->flags & F_SITE_ONLY))
			continue;
		if (s->kind == S_CLUSTER && s->peer < 0 && (k->flags & F_PEER_ONLY))
			continue;
		if (k->flags & F_REQUIRED) {
			report(p, s->line, "%s is missing '%s' (%s)", label, k->name, k->help);
			continue;
		}
		if (k->def) {
			const char *why;
			int r = set_value(section_base(p, s), k, k->def, &why);
			if (r == -ENOMEM)
				return r;
			if (r < 0) /* a bad default in the table is a programming error */
				return ims_error_set(-EINVAL, "bad built-in default for '%s'",
						     k->name);
		}
	}
	return 0;
}

static void check_whole(parser *p)
{
	ims_config *cfg = p->cfg;
	ims_config_server *sv = &cfg->server;

	if (!p->have_site)
		report(p, 0, "missing [site] section: name this site and its ceph_conf");
	for (size_t i = 0; i < cfg->npeers; i++) {
		if (cfg->site.name && strcmp(cfg->peers[i].name, cfg->site.name) == 0)
			report(p, cfg->peers[i].line, "[peer %s] has this site's own name",
			       cfg->peers[i].name);
	}
	if (!sv->listen && !sv->unix_socket)
		report(p, sv->line,
		       "[server] needs 'listen' or 'unix_socket': the daemon would serve nothing");
	if (!!sv->tls_cert != !!sv->tls_key)
		report(p, sv->line, "[server] needs both 'tls_cert' and 'tls_key', or neither");
	if (sv->listen && !sv->tls_cert && !sv->allow_plain_http)
		report(p, sv->line,
		       "[server] 'listen' needs 'tls_cert' and 'tls_key' (or 'allow_plain_http = "
		       "true' on a trusted loopback)");
	if (sv->tls_client_ca && !sv->tls_cert)
		report(p, sv->line,
		       "[server] 'tls_client_ca' needs TLS: set 'tls_cert' and 'tls_key'");
}

int ims_config_parse(ims_config **out, const char *name, const char *text, size_t len,
		     ims_config_error_fn on_error, void *ctx)
{
	parser p = {.file = name, .on_error = on_error, .ctx = ctx};
	char *copy = NULL;
	int r;

	if (!out || !name || (!text && len))
		return -EINVAL;
	if (memchr(text, '\0', len))
		return ims_error_set(-EINVAL, "%s: contains a NUL byte: not a configuration file",
				     name);
	p.cfg = calloc(1, sizeof(*p.cfg));
	copy = malloc(len + 1);
	if (!p.cfg || !copy) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	if (!(p.cfg->path = strdup(name))) {
		r = -ENOMEM;
		goto out;
	}
	p.cfg->site.line = 0;
	p.cfg->server.line = 0;

	r = parse_lines(&p, copy);
	if (r < 0)
		goto out;
	/* [server] and [defaults] may be absent: their keys take the defaults. */
	if (!p.have_server && !add_section(&p, S_SERVER, 0)) {
		r = -ENOMEM;
		goto out;
	}
	if (!p.have_defaults && !add_section(&p, S_DEFAULTS, 0)) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < p.nsections; i++) {
		if (p.sections[i].kind == S_CLUSTER && p.sections[i].peer < 0 && !p.have_site)
			continue;
		r = finish_section(&p, &p.sections[i]);
		if (r < 0)
			goto out;
	}
	check_whole(&p);
	if (p.nerrors) {
		r = -EINVAL;
		goto out;
	}
	*out = p.cfg;
	p.cfg = NULL;
	r = 0;
out:
	if (r == -ENOMEM)
		ims_error_set(r, "%s: out of memory while parsing", name);
	ims_config_free(p.cfg);
	free(p.sections);
	free(copy);
	return r;
}

int ims_config_load(ims_config **out, const char *path, ims_config_error_fn on_error, void *ctx)
{
	FILE *f;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int r;

	if (!out || !path)
		return -EINVAL;
	f = fopen(path, "r");
	if (!f)
		return ims_error_set(-errno, "cannot read configuration file '%s': %s", path,
				     ims_strerror(errno));
	for (;;) {
		if (len == cap) {
			if (cap >= (16u << 20)) {
				r = ims_error_set(
					-EFBIG, "%s: larger than 16 MiB: not a configuration file",
					path);
				goto out;
			}
			cap = cap ? cap * 2 : 8192;
			char *n = realloc(buf, cap);
			if (!n) {
				r = -ENOMEM;
				goto out;
			}
			buf = n;
		}
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		r = ims_error_set(-EIO, "error reading configuration file '%s'", path);
		goto out;
	}
	r = ims_config_parse(out, path, buf ? buf : "", len, on_error, ctx);
out:
	fclose(f);
	free(buf);
	return r;
}

static void free_cluster(ims_config_cluster *c)
{
	free(c->name);
	free(c->ceph_conf);
	free(c->client_id);
	free(c->keyring);
	free(c->pool);
}

void ims_config_free(ims_config *cfg)
{
	if (!cfg)
		return;
	free_cluster(&cfg->site);
	for (size_t i = 0; i < cfg->npeers; i++)
		free_cluster(&cfg->peers[i]);
	free(cfg->peers);
	ims_config_server *sv = &cfg->server;
	free(sv->listen);
	free(sv->unix_socket);
	free(sv->tls_cert);
	free(sv->tls_key);
	free(sv->tls_client_ca);
	free(sv->tls_priorities);
	free(sv->token_file);
	free(sv->kek_file);
	free(sv->kek_previous_file);
	free(sv->audit_log);
	free(sv->instance);
	free(sv->spool_dir);
	free(sv->import_dirs);
	free(sv->export_dirs);
	for (size_t i = 0; i < cfg->ns3; i++) {
		ims_config_s3 *s = &cfg->s3[i];
		free(s->name);
		free(s->endpoint);
		free(s->region);
		free(s->bucket);
		free(s->credentials_file);
		free(s->key_file);
		free(s->ca_file);
		free(s->addressing);
	}
	free(cfg->s3);
	for (size_t i = 0; i < cfg->nhosts; i++) {
		free(cfg->hosts[i].name);
		free(cfg->hosts[i].cephx_user);
		free(cfg->hosts[i].libvirt_secret);
	}
	free(cfg->hosts);
	free(cfg->defaults.log_level);
	free(cfg->defaults.alert_webhook);
	free(cfg->path);
	free(cfg);
}

const ims_config_cluster *ims_config_peer(const ims_config *cfg, const char *name)
{
	for (size_t i = 0; cfg && i < cfg->npeers; i++)
		if (strcmp(cfg->peers[i].name, name) == 0)
			return &cfg->peers[i];
	return NULL;
}

const ims_config_host *ims_config_host_entry(const ims_config *cfg, const char *name)
{
	for (size_t i = 0; cfg && name && i < cfg->nhosts; i++)
		if (strcmp(cfg->hosts[i].name, name) == 0)
			return &cfg->hosts[i];
	return NULL;
}

/* Whether the field of @p k differs between two sections of the same kind. */
static bool key_differs(const config_key *k, const void *a, const void *b)
{
	const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
	switch (k->type) {
	case T_BOOL: return *(const bool *)fa != *(const bool *)fb;
	case T_UINT:
	case T_SIZE:
	case T_DURATION: return *(const uint64_t *)fa != *(const uint64_t *)fb;
	default: {
		const char *x = *(char *const *)fa, *y = *(char *const *)fb;
		return (!x != !y) || (x && strcmp(x, y) != 0);
	}
	}
}

static size_t diff_section(section_kind kind, const char *label, const void *a, const void *b,
			   ims_config_diff_fn fn, void *ctx)
{
	size_t n = 0;
	if (!a || !b) {
		bool all = true;
		for (size_t i = 0; i < NKEYS; i++)
			if (keys[i].section == kind && !(keys[i].flags & F_RELOAD))
				all = false;
		fn(ctx, label, "*", all);
		return 1;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		if (keys[i].section == kind && key_differs(&keys[i], a, b)) {
			fn(ctx, label, keys[i].name, (keys[i].flags & F_RELOAD) != 0);
			n++;
		}
	}
	return n;
}

size_t ims_config_diff(const ims_config *a, const ims_config *b, ims_config_diff_fn fn, void *ctx)
{
	char label[192];
	size_t n = 0;

	n += diff_section(S_CLUSTER, "[site]", &a->site, &b->site, fn, ctx);
	n += diff_section(S_SERVER, "[server]", &a->server, &b->server, fn, ctx);
	n += diff_section(S_DEFAULTS, "[defaults]", &a->defaults, &b->defaults, fn, ctx);
	/* named sections: each of either side, matched by name */
	for (int side = 0; side < 2; side++) {
		const ims_config *x = side ? b : a, *y = side ? a : b;
		for (size_t i = 0; i < x->npeers; i++) {
			const ims_config_cluster *o = ims_config_peer(y, x->peers[i].name);
			if (side && o)
				continue; /* compared from the first side */
			snprintf(label, sizeof(label), "[peer %s]", x->peers[i].name);
			n += diff_section(S_CLUSTER, label, &x->peers[i], o, fn, ctx);
		}
		for (size_t i = 0; i < x->ns3; i++) {
			const ims_config_s3 *o = ims_config_s3_target(y, x->s3[i].name);
			if (side && o)
				continue;
			snprintf(label, sizeof(label), "[s3 %s]", x->s3[i].name);
			n += diff_section(S_S3, label, &x->s3[i], o, fn, ctx);
		}
		for (size_t i = 0; i < x->nhosts; i++) {
			const ims_config_host *o = ims_config_host_entry(y, x->hosts[i].name);
			if (side && o)
				continue;
			snprintf(label, sizeof(label), "[host %s]", x->hosts[i].name);
			n += diff_section(S_HOST, label, &x->hosts[i], o, fn, ctx);
		}
	}
	return n;
}

const ims_config_s3 *ims_config_s3_target(const ims_config *cfg, const char *name)
{
	for (size_t i = 0; cfg && i < cfg->ns3; i++)
		if (strcmp(cfg->s3[i].name, name) == 0)
			return &cfg->s3[i];
	return NULL;
}

static const char *type_name(const config_key *k)
{
	switch (k->type) {
	case T_STRING: return "string";
	case T_PATH: return "path";
	case T_NAME: return "name";
	case T_BOOL: return "bool";
	case T_UINT: return "number";
	case T_SIZE: return "size";
	case T_DURATION: return "duration";
	case T_ENUM: return k->choices;
	case T_ADDRESS: return "HOST:PORT";
	case T_URL: return "URL";
	case T_PATHS: return "paths";
	case T_UUID: return "UUID";
	}
	return "?";
}

/* Write @p s as roff text: backslashes, hyphens and quotes escaped, a '.' that would begin a
 * line kept as text, Markdown's `code` spans in bold. */
static void roff_text(FILE *f, const char *s)
{
	bool code = false;

	if (*s == '.')
		fputs("\\&", f);
	for (; *s; s++) {
		switch (*s) {
		case '`':
			fputs(code ? "\\fR" : "\\fB", f);
			code = !code;
			break;
		case '\\': fputs("\\e", f); break;
		case '-': fputs("\\-", f); break;
		case '\'': fputs("\\(aq", f); break;
		case '"': fputs("\\(dq", f); break;
		case '\n': fputs(s[1] == '.' ? "\n\\&" : "\n", f); break;
		default: fputc(*s, f);
		}
	}
	if (code)
		fputs("\\fR", f);
}

/* A part of the reference: the keys of one kind of section. */
typedef struct {
	section_kind kind;
	const char *head;
	const char *what;
} ref_section;

/*
 * What SIGHUP changes, the same words in docs/CONFIG.md and imgstored.conf(5): a section whose
 * keys all apply on SIGHUP (F_RELOAD) is named as a whole, other such keys one by one.
 */
static void write_reload(FILE *f, bool roff, const ref_section *sections, size_t nsections)
{
	char items[16][160], what[sizeof(items) + 16 * 8] = "", text[sizeof(what) + 1024];
	size_t n = 0, off = 0;

	for (size_t s = 0; s < nsections; s++) {
		size_t all = 0, reload = 0;
		for (size_t i = 0; i < NKEYS; i++) {
			if (keys[i].section != sections[s].kind)
				continue;
			all++;
			reload += (keys[i].flags & F_RELOAD) != 0;
		}
		if (reload && reload == all && n < 16) {
			snprintf(items[n++], sizeof(items[0]),
				 "the %s sections (added, removed or changed)", sections[s].head);
			continue;
		}
		for (size_t i = 0; reload && i < NKEYS && n < 16; i++)
			if (keys[i].section == sections[s].kind && (keys[i].flags & F_RELOAD))
				snprintf(items[n++], sizeof(items[0]), "%s `%s`%s",
					 sections[s].head, keys[i].name,
					 !strcmp(keys[i].name, "log_level")
						 ? " (unless the daemon was started with "
						   "`--log-level`)"
						 : "");
	}
	for (size_t i = 0; i < n && off < sizeof(what); i++)
		off += (size_t)snprintf(what + off, sizeof(what) - off, "%s%s",
					i == 0	     ? ""
					: i + 1 == n ? " and "
						     : ", ",
					items[i]);
	snprintf(text, sizeof(text),
		 "`SIGHUP` (`systemctl reload imgstored`) makes the daemon open `audit_log` again "
		 "under "
		 "its name (logrotate moved the old file away), read `token_file` again (a token "
		 "file "
		 "it cannot use leaves the old tokens in place) and read this file again. A file "
		 "with a "
		 "bad line leaves the configuration as it was (each bad line is logged); otherwise "
		 "%s "
		 "%s, and every other change is logged as taking effect at the next restart.",
		 n ? what : "none of its changes",
		 n ? "apply at once" : "applies before a restart");
	if (roff) {
		fputs(".SH RELOADING\n", f);
		roff_text(f, text);
		fputc('\n', f);
	} else {
		fprintf(f, "\n## Reloading\n\n%s\n", text);
	}
}

/* The reference: Markdown (docs/CONFIG.md), or imgstored.conf(5) when @p version is set. */
static void write_reference(FILE *f, const char *version)
{
	static const ref_section sections[] = {
		{S_CLUSTER, "[site] and [peer NAME]",
		 "This site's Ceph cluster, and one [peer NAME] section for each other site. "
		 "`name` is given in [site] only; a peer's name is in its header."},
		{S_SERVER, "[server]", "How the RPC API is served."},
		{S_S3, "[s3 NAME]", "An S3-compatible target for cold tiering, one section each."},
		{S_DEFAULTS, "[defaults]", "What applies where a request or policy says nothing."},
		{S_HOST, "[host NAME]",
		 "A hypervisor host's identity toward Ceph, one section each, NAME as in the "
		 "host's "
		 "token line (or the CN of its client certificate). `imgstore image attach-info` "
		 "names this cephx user and libvirt secret in the libvirt disk XML; a host without "
		 "a "
		 "section gets a clear refusal instead of the daemon's own user. SIGHUP reloads "
		 "these sections, the tokens and `log_level` without a restart."},
	};
	static const char intro[] =
		"`imgstored --config FILE` reads an INI-like file: `[section]` headers and "
		"`key = value` lines. A `#` or `;` starts a comment that runs to the end of the "
		"line when it begins the line, follows a section header, begins a value, or "
		"follows a space or tab in a value, for every type of value: "
		"`rpo = 30s   # half a minute` sets `30s`. A `#` or `;` with no space or tab "
		"before it is part of the value (`https://hooks.example.net/x#frag`). A value "
		"in double quotes keeps everything between them (`\"/srv/a #1\"`), and only a "
		"comment may follow the closing quote. Every bad line is reported as "
		"`FILE:LINE: message` and the daemon does not start. Sizes are written like "
		"`64M` or `10G`, durations like `30s`, `5m`, `1h30m`.";
	const bool roff = version != NULL;
	char range[96];

	if (roff) {
		fprintf(f,
			".\\\" Generated by imgstore-config-ref --man from common/config.c; do not "
			"edit.\n"
			".TH IMGSTORED.CONF 5 \"\" \"imgstore %s\" \"imgstore Manual\"\n"
			".ad l\n.nh\n.nr HY 0\n"
			".SH NAME\nimgstored.conf \\- configuration of imgstored, the imgstore "
			"daemon\n"
			".SH SYNOPSIS\n.I /etc/imgstore/imgstored.conf\n.SH DESCRIPTION\n",
			version);
		roff_text(f, intro);
		fputs("\n.PP\nEach key below is given with its type, its default (or\n.BR required "
		      ")\n"
		      "and its range.\n",
		      f);
	} else {
		fprintf(f, "<!-- Generated by `imgstore-config-ref` from common/config.c; do not "
			   "edit. -->\n");
		fprintf(f, "# imgstored configuration reference\n\n%s\n", intro);
	}
	for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
		if (roff) {
			fprintf(f, "%s.SS \"%s\"\n", s ? "" : ".SH SECTIONS\n", sections[s].head);
			roff_text(f, sections[s].what);
			fputc('\n', f);
		} else {
			fprintf(f, "\n## %s\n\n%s\n\n", sections[s].head, sections[s].what);
			fprintf(f, "| key | type | default | range | meaning "
				   "|\n|---|---|---|---|---|\n");
		}
		for (size_t i = 0; i < NKEYS; i++) {
			const config_key *k = &keys[i];
			const char *def = (k->flags & F_REQUIRED) ? NULL
					  : k->def		  ? k->def
								  : "(unset)";
			if (k->section != sections[s].kind)
				continue;
			range[0] = '\0';
			if (k->min || k->max)
				describe_range(k, range, sizeof(range));
			if (!roff) {
				fprintf(f, "| `%s` | %s | %s | %s | %s |\n", k->name, type_name(k),
					def ? def : "**required**", range, k->help);
				continue;
			}
			fprintf(f, ".TP\n.B %s\n\\fI", k->name);
			roff_text(f, type_name(k));
			fputs("\\fR; ", f);
			if (def && !k->def) {
				fputs("unset by default", f);
			} else if (def) {
				fputs("default ", f);
				roff_text(f, def);
			} else {
				fputs("\\fBrequired\\fR", f);
			}
			if (range[0]) {
				fputs("; ", f);
				roff_text(f, range);
			}
			fputs("\n.br\n", f);
			roff_text(f, k->help);
			fputc('\n', f);
		}
	}
	write_reload(f, roff, sections, sizeof(sections) / sizeof(sections[0]));
	if (roff)
		fputs(".SH FILES\n.TP\n.I /etc/imgstore/imgstored.conf\n"
		      "The file the systemd unit of imgstored gives to \\fB\\-\\-config\\fR.\n"
		      ".SH SEE ALSO\n.BR imgstored (8),\n.BR imgstore (1)\n",
		      f);
}

void ims_config_write_reference(FILE *f)
{
	write_reference(f, NULL);
}

void ims_config_write_man(FILE *f, const char *version)
{
	write_reference(f, version);
}

/* Whether @p path (resolved) is @p dir or below it. */
static bool under(const char *dir, const char *path)
{
	size_t n = strlen(dir);
	if (n == 1) /* "/" */
		return true;
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Whether @p path is in one of @p dirs; @p resolve_dirs: compare with each directory resolved
 * (a directory that does not exist holds nothing), else as written. */
static bool in_dirs(const char *dirs, const char *path, bool resolve_dirs)
{
	char one[PATH_MAX], real[PATH_MAX];
	for (const char *p = dirs; p && *p;) {
		p += strspn(p, " \t");
		size_t n = strcspn(p, ",");
		size_t m = n;
		while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t'))
			m--;
		while (m > 1 && p[m - 1] == '/')
			m--;
		if (m > 0 && m < sizeof(one)) {
			memcpy(one, p, m);
			one[m] = '\0';
			if (!resolve_dirs ? under(one, path)
					  : realpath(one, real) && under(real, path))
				return true;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return false;
}

int ims_config_path_in(char *resolved, size_t len, const char *dirs, const char *key,
		       const char *path, bool exists)
{
	char real[PATH_MAX], dir[PATH_MAX];
	const char *base = NULL;
	struct stat st;

	if (!path || path[0] != '/')
		return ims_error_set(-EINVAL, "'%s' is not an absolute path", path ? path : "");
	if (!dirs || !*dirs)
		return ims_error_set(
			-EPERM,
			"'%s' is refused: the daemon reads and writes files by path only in the "
			"[server] %s of its configuration, and it names none",
			path, key);
	if (exists) {
		if (!realpath(path, real)) {
			int e = errno;
			/* say whether it exists only where the caller may look */
			if (e == ENOENT && in_dirs(dirs, path, false))
				return ims_error_set(
					-ENOENT, "'%s' does not exist on the daemon's host", path);
			return ims_error_set(-EPERM,
					     "'%s' is not in the [server] %s of the daemon (%s)",
					     path, key, dirs);
		}
	} else {
		size_t n = strlen(path);
		if (n >= sizeof(dir))
			return ims_error_set(-EINVAL, "'%s' is too long", path);
		memcpy(dir, path, n + 1);
		char *slash = strrchr(dir, '/');
		base = slash + 1;
		if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
			return ims_error_set(-EINVAL, "'%s' names no file", path);
		*slash = '\0';
		base = path + (base - dir);
		if (!realpath(dir[0] ? dir : "/", real)) {
			int e = errno;
			if (e == ENOENT && in_dirs(dirs, path, false))
				return ims_error_set(
					-ENOENT,
					"the directory of '%s' does not exist on the daemon's host",
					path);
			return ims_error_set(-EPERM,
					     "'%s' is not in the [server] %s of the daemon (%s)",
					     path, key, dirs);
		}
		size_t rl = strlen(real);
		if (rl + 1 + strlen(base) >= sizeof(real))
			return ims_error_set(-EINVAL, "'%s' is too long", path);
		snprintf(real + rl, sizeof(real) - rl, "%s%s", rl > 1 ? "/" : "", base);
	}
	if (!in_dirs(dirs, real, true)) {
		if (strcmp(real, path) != 0)
			return ims_error_set(
				-EPERM,
				"'%s' (really '%s') is not in the [server] %s of the daemon (%s)",
				path, real, key, dirs);
		return ims_error_set(-EPERM, "'%s' is not in the [server] %s of the daemon (%s)",
				     path, key, dirs);
	}
	if (!exists && lstat(real, &st) == 0)
		return ims_error_set(-EEXIST,
				     "'%s' exists on the daemon's host; export does not overwrite",
				     path);
	if (strlen(real) >= len)
		return ims_error_set(-EINVAL, "'%s' is too long", path);
	memcpy(resolved, real, strlen(real) + 1);
	return 0;
}
