/* daemon/daemon.h: the state of one imgstored, shared by its files (not a public header). */
#ifndef IMS_DAEMON_DAEMON_H
#define IMS_DAEMON_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "common/config.h"
#include "daemon/alert.h"
#include "daemon/ops.h"
#include "replicator/scheduler.h"
#include "proto/server.h"
#include "store/site.h"

#define IMS_MAX_UPLOADS 64
#define IMS_CHUNK_MAX	(2u << 20) /* upload and download chunks: under the 4 MiB body limit */

/* chunks end at most this far past `received`; a streamed import keeps this much of the upload
 * in memory (plus 4 MiB behind its reader): 16 MiB is 8 chunks, 2 per connection of the CLI */
#define IMS_UPLOAD_WINDOW (16u << 20)
#define IMS_UPLOAD_AHEAD  32 /* chunks being written or ahead of `received` */

/* Of @p slow_calls ([server] slow_calls), how many a streamed export's DownloadChunk calls may
 * take waiting for bytes not made yet: half, so that WaitOperation and the rest find theirs */
#define IMS_DOWNLOAD_WAITERS(slow_calls) ((slow_calls) / 2)

typedef struct {
	char id[40];
	char path[1024];
	uint64_t size;
	uint64_t received; /* [0, received) is in the file */
	time_t last;
	bool claimed; /* an import took it */
	/* the import reading it while it arrives (a streamed import), NULL otherwise */
	struct ims_source_growing *src;
	bool ring; /* src keeps the bytes in memory: chunks go there, not to the file */
	struct {
		uint64_t off, len;
		bool written; /* false: a handler is writing it now */
	} ahead[IMS_UPLOAD_AHEAD];
	unsigned nahead;
} ims_upload;

/* an export streamed to its client while it runs (ExportImageRequest.stream) */
typedef struct {
	char op_id[40];			/* "" until the operation is submitted */
	uint64_t seq;			/* 0: a free slot */
	struct ims_source_growing *src; /* one hold of the table's own */
} ims_export_stream;

typedef struct ims_daemon {
	ims_config *cfg; /* as read at start: what needs a restart to change */
	ims_config
		*live; /* the newest read by SIGHUP (NULL: cfg): its [host] sections; under lock */
	ims_site *site;
	ims_ops *ops;
	ims_rpc_server *server;
	const char *pool; /* the site's default pool */
	char owner_host[100];
	time_t started;
	pthread_mutex_t lock; /* uploads, audit */
	ims_upload uploads[IMS_MAX_UPLOADS];
	ims_export_stream streams[IMS_MAX_UPLOADS]; /* under lock */
	uint64_t stream_seq;			    /* under lock */
	/* DownloadChunk calls waiting (on threads of their own) for bytes a streamed export has not
	 * made yet (under lock): at most IMS_DOWNLOAD_WAITERS(slow_calls), others answer at once */
	unsigned download_waits;
	uint64_t download_nowaits; /* answered at once for want of a waiting slot (under lock) */
	FILE *audit;
	char audit_prev[65]; /* the chain hash of the last audit line (common/chain.h); under lock
			      */
	ims_site **peers;    /* connected lazily, one per [peer] of the config */
	pthread_mutex_t peers_lock;
	ims_repl_sched *repl;
	/* the snapshot schedules (replicator/snapsched.h) and the snapshot digests (digest.h) */
	struct ims_snapsched_runner *snapsched;
	struct ims_digest_queue *digests;
	ims_alert *alert;		 /* NULL without [defaults] alert_webhook */
	struct ims_tier_scan *tier_scan; /* NULL with [defaults] tier_scan_interval = 0 */
	struct ims_health *health;	 /* the site probes (daemon/health.h) */
	/* failovers recorded on this site and not finished (the main loop counts them every 10 s
	 * while the site answers): imgstore_failovers_in_progress; -1 before the first count */
	atomic_int failovers;
	struct ims_crypt_kek *kek; /* [server] kek_file's key; NULL when unset */
} ims_daemon;

/**
 * Host @p host's cephx user and libvirt secret, from the [host NAME] section of the newest
 * configuration read (copied: SIGHUP may replace it meanwhile).
 * @returns 0, or -ENOENT if the configuration has no [host @p host].
 */
int ims_daemon_host_identity(char *user, size_t user_len, char *secret, size_t secret_len,
			     ims_daemon *d, const char *host);

/** The peer site @p name, connecting on first use (ims_repl_peer_fn). */
int ims_daemon_peer(void *d, const char *name, ims_site **out);

/** 0 if @p pool/@p image exists on this site; -ENOENT naming it, or the cluster's error. */
int ims_daemon_require_image(ims_daemon *d, const char *pool, const char *image);

/* A verify answers synchronously; past this it stops, so that a client's default 60 s
 * timeout sees the answer. The scheduler's verify (--verify-every) has no bound. */
#define IMS_DAEMON_VERIFY_BOUND_S 50

/** A verify's progress function: stops it once CLOCK_MONOTONIC passes *(double *)ctx. */
int ims_daemon_verify_deadline(void *ctx, uint64_t done, uint64_t total);

/** The ReplicationStatus message of a pair (image or group), allocated in @p call; NULL if out
 *  of memory. */
struct Imgstore__V1__ReplicationStatus *ims_daemon_status_msg(ims_rpc_call *call,
							      const ims_repl_status *st);

/** Answer with the ReplicationStatus message of @p st. */
int ims_daemon_status_one(ims_rpc_call *call, const ims_repl_status *st, ProtobufCMessage **resp);

/** An ims_kit_item_fn: the ReplicationStatus of element @p i of an ims_repl_status array. */
void *ims_daemon_status_item(ims_rpc_call *call, const void *list, size_t i);

/** SyncImage and SyncGroup: one cycle of the pair of @p unit @p pool/@p name to @p asked
 *  (empty: its only target) now, as an Operation, answered with its record. */
int ims_daemon_submit_sync(ims_daemon *d, ims_rpc_call *call, const char *pool, const char *name,
			   ims_repl_unit unit, const char *asked, ProtobufCMessage **resp);

/**
 * Answer with the @p n pairs of @p list, and free @p list: a GetReplicationStatusResponse
 * (@p unit IMS_REPL_IMAGE) or a GetGroupReplicationStatusResponse (IMS_REPL_GROUP).
 */
int ims_daemon_status_reply(ims_rpc_call *call, ims_repl_status *list, size_t n, ims_repl_unit unit,
			    ProtobufCMessage **resp);

/** The VerifyImageResponse of one image's verify, allocated in @p call; NULL if out of memory. */
struct Imgstore__V1__VerifyImageResponse *ims_daemon_verify_msg(ims_rpc_call *call,
								const char *image,
								const char *target,
								const ims_repl_verify_result *v);

/** Add to the statuses of @p unit @p pool/@p name a failover this daemon began and did not
 *  finish (state failing-over, its step, the command that finishes it). */
int ims_daemon_status_journal(ims_repl_status **list, size_t *n, ims_daemon *d, const char *pool,
			      const char *name, ims_repl_unit unit);

/**
 * The target of a replicated pair of @p unit @p pool/@p name: @p asked when one of its pairs
 * goes there, or the only one when @p asked is empty.
 *
 * @returns -ENOENT if no pair matches, -EINVAL if several do and none was asked for.
 */
int ims_daemon_pair_target(char *target, size_t len, ims_daemon *d, const char *pool,
			   const char *name, ims_repl_unit unit, const char *asked);

/** Spool housekeeping: remove files older than a day. */
void ims_daemon_clean_spool(ims_daemon *d);

#endif
