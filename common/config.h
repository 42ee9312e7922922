/*
 * common/config.h: imgstored's configuration file, parsed and validated by one declarative
 * table (ims_config_keys) that also drives `imgstored --help-config` and docs/CONFIG.md.
 *
 * The file is INI-like:
 *
 *     # comment
 *     [site]                  this site: the Ceph cluster this daemon serves
 *     name = a
 *     ceph_conf = /etc/ceph/ceph.conf
 *     [peer b]                another site, one section each
 *     ceph_conf = /etc/ceph/site-b.conf
 *     [server]                RPC listeners, TLS, tokens
 *     [s3 cold]               an S3 target for tiering, one section each
 *     [defaults]              replication and transfer defaults
 *     [host hv1]              a hypervisor host's cephx user and libvirt secret
 *
 * A '#' or ';' that begins a line, follows a section header, begins a value or follows a blank
 * in a value starts a comment ("rpo = 30s  # half a minute" is 30s); one with no blank before
 * it is part of the value; a value in "double quotes" keeps what is between them.
 *
 * Every bad line is reported as "FILE:LINE: message"; loading fails if there is any.
 */
#ifndef IMS_COMMON_CONFIG_H
#define IMS_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/** A Ceph cluster: this site ([site]) or a peer ([peer NAME]). */
typedef struct {
	char *name;
	char *ceph_conf;
	char *client_id;
	char *keyring;
	char *pool;
	uint64_t mon_timeout;
	uint64_t osd_timeout;
	uint64_t bandwidth_limit; /* [peer] only; 0: [defaults] */
	unsigned line;		  /* where the section starts, for messages */
} ims_config_cluster;

/** [server]: how the RPC API is served. */
typedef struct {
	char *listen;
	char *unix_socket;
	char *tls_cert;
	char *tls_key;
	char *tls_client_ca;
	char *tls_priorities;
	char *token_file;
	char *kek_file;		 /* the key-encryption key of encrypted images; NULL: none */
	char *kek_previous_file; /* a rotation's previous KEK, still unwraps; NULL: none */
	bool allow_plain_http;
	uint64_t max_request_bytes;
	uint64_t read_timeout;
	uint64_t threads;
	uint64_t slow_calls;
	char *audit_log;
	char *instance; /* NULL: the host name */
	char *spool_dir;
	uint64_t upload_stall_timeout; /* seconds */
	uint64_t stream_exports;       /* exports streamed at once; more go through the spool */
	char *import_dirs;	       /* "DIR,DIR": see ims_config_path_in(); NULL: none */
	char *export_dirs;
	unsigned line;
} ims_config_server;

/** [s3 NAME]: an S3-compatible tiering target. */
typedef struct {
	char *name;
	char *endpoint;
	char *region;
	char *bucket;
	char *credentials_file;
	char *key_file;
	char *ca_file;
	char *addressing; /* "path" or "virtual" */
	uint64_t timeout;
	uint64_t retries;
	unsigned line;
} ims_config_s3;

/** [defaults]: what applies where a request or policy says nothing. */
typedef struct {
	uint64_t rpo;
	uint64_t concurrency;
	uint64_t inflight_bytes;
	uint64_t bandwidth_limit;
	uint64_t retention;
	uint64_t op_workers;
	uint64_t replication_workers;
	uint64_t lock_expiry; /* seconds */
	uint64_t tier_scan_interval;
	uint64_t probe_interval;
	uint64_t snapshot_schedule_hour;
	uint64_t digest_log_compact_after;
	char *log_level;
	char *alert_webhook;
	unsigned line;
} ims_config_defaults;

/** [host NAME]: a hypervisor host's identity toward Ceph, for attach-info. */
typedef struct {
	char *name;	      /* as in the host's token line (or its certificate's CN) */
	char *cephx_user;     /* without 'client.' */
	char *libvirt_secret; /* UUID of the libvirt secret holding cephx_user's key */
	unsigned line;
} ims_config_host;

typedef struct ims_config {
	char *path;
	ims_config_cluster site;
	ims_config_cluster *peers;
	size_t npeers;
	ims_config_server server;
	ims_config_s3 *s3;
	size_t ns3;
	ims_config_defaults defaults;
	ims_config_host *hosts;
	size_t nhosts;
} ims_config;

/** Called once for every problem found, with "FILE:LINE: message". */
typedef void (*ims_config_error_fn)(void *ctx, const char *line);

/**
 * Read and validate the configuration file at @p path.
 *
 * @param[out] out the configuration; free with ims_config_free(). Written only on success.
 * @param on_error called for each problem (may be NULL); ims_error_last() holds the first.
 * @returns -ENOENT or -EACCES if the file cannot be read,
 *          -EINVAL if any line is bad or a required key is missing.
 */
int ims_config_load(ims_config **out, const char *path, ims_config_error_fn on_error, void *ctx);

/** As ims_config_load(), from text in memory; @p name stands for the file name in messages. */
int ims_config_parse(ims_config **out, const char *name, const char *text, size_t len,
		     ims_config_error_fn on_error, void *ctx);

void ims_config_free(ims_config *cfg);

/** The peer named @p name, or NULL. Borrowed from @p cfg. */
const ims_config_cluster *ims_config_peer(const ims_config *cfg, const char *name);

/** The [host NAME] section of host @p name, or NULL. Borrowed from @p cfg. */
const ims_config_host *ims_config_host_entry(const ims_config *cfg, const char *name);

/**
 * Called by ims_config_diff() once for each key whose value differs ("[server]", "listen"), or
 * with key "*" for a section present on one side only; @p reloads: whether SIGHUP applies the
 * change (the key, or every key of the section, is marked so in the table).
 */
typedef void (*ims_config_diff_fn)(void *ctx, const char *section, const char *key, bool reloads);

/**
 * Compare two configurations key by key (every key of the table, every section; a section
 * present in one only is reported with key "*").
 * @returns the number of differences reported.
 */
size_t ims_config_diff(const ims_config *a, const ims_config *b, ims_config_diff_fn fn, void *ctx);

/** The S3 target named @p name, or NULL. Borrowed from @p cfg. */
const ims_config_s3 *ims_config_s3_target(const ims_config *cfg, const char *name);

/**
 * Whether @p path lies in one of @p dirs (a comma-separated list of absolute directories, as
 * [server] import_dirs and export_dirs hold), every symbolic link, "." and ".." resolved in
 * both first. A file to create (@p exists false) is checked through its directory, which must
 * exist, and must not exist itself. @p key names the list in messages ("import_dirs").
 *
 * @param[out] resolved the path resolved: the one to open, @p len bytes (PATH_MAX is enough).
 * @returns 0; -EPERM if it lies in none of them (or @p dirs is NULL: nothing is allowed), or
 *          cannot be resolved outside of them; -ENOENT if it (its directory, for a new file)
 *          does not exist in one of them; -EEXIST if a file to create exists; -EINVAL if it is
 *          not absolute or names no file.
 */
int ims_config_path_in(char *resolved, size_t len, const char *dirs, const char *key,
		       const char *path, bool exists);

/** Write the reference of every key (Markdown) to @p f: the source of docs/CONFIG.md. */
void ims_config_write_reference(FILE *f);

/** Write the same reference as the manual page imgstored.conf(5) (roff, man macros). */
void ims_config_write_man(FILE *f, const char *version);

#endif
