/*
 * replicator/digest.h: tamper evidence for snapshots. The digest of a snapshot is one
 * fingerprint per data object (SHA-256 of the object's length and of the OSD's xxhash64 of each
 * 64 KiB of it, as `repl verify` asks the OSDs: no data leaves the cluster), recorded in an
 * append-only, hash-chained log in RADOS: the omap of IMS_DIGEST_LOG in the site's records pool,
 * one key per entry ("%020llu" of its sequence number) and "head" for the last one. Each entry
 * carries the SHA-256 of the previous entry and its own (over its fields); its object list is
 * the RADOS object "imgstore.digest.<seq>", whose SHA-256 the entry carries. Entries are
 * appended under the RADOS lock IMS_DIGEST_LOCK of the log object.
 *
 * The log is compacted (ims_digest_compact()) by removing the entries of snapshots that no
 * longer exist and of digests a newer one of the same snapshot replaces, and appending a
 * checkpoint entry (why "checkpoint") whose list object holds, for each run of consecutive
 * entries removed, "FIRST LAST HASH": the seqs of the run and the hash its last entry had. The
 * chain then still holds from the first entry to the head: each entry kept follows the one
 * before it or the run before it, and the checkpoint, an entry of the chain itself, carries
 * the SHA-256 of its runs. A log whose chain is broken is never compacted (the break stays).
 *
 * ims_digest_verify() recomputes a snapshot's digest and names the objects that changed since
 * it was recorded, and checks the chain on the way.
 *
 * A digest queue (ims_digest_queue_*) digests snapshots on a thread of its own: the seal of a
 * replication cycle and a scheduled snapshot only hand it their names and never wait for it.
 */
#ifndef IMS_REPLICATOR_DIGEST_H
#define IMS_REPLICATOR_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/hash.h"
#include "common/spec.h"
#include "store/site.h"

#define IMS_DIGEST_LOG	      "imgstore.digests"
#define IMS_DIGEST_LOCK	      "imgstore.digests.append"
#define IMS_DIGEST_CHUNK      (64u << 10)
#define IMS_DIGEST_CHECKPOINT "checkpoint" /* the why of a compaction's checkpoint entry */
/* A member's snapshot of a group snapshot is digested under the name "GROUP@SNAP" (a user
 * snapshot's name never holds '@'); ims_digest_verify() of a member's "SNAP" that is no user
 * snapshot of it looks for its group's. */
#define IMS_DIGEST_GROUP_SEP '@'

/**
 * The digest name of @p pool/@p image's snapshot of its group's snapshot
 * @p snap ("GROUP@SNAP") into @p buf. @returns -ENOENT if the image is in no group.
 */
int ims_digest_member_name(char *buf, size_t len, ims_site *site, const char *pool,
			   const char *image, const char *snap);

/** One entry of the log. */
typedef struct {
	uint64_t seq;
	char pool[IMS_NAME_MAX + 1];
	char image[IMS_NAME_MAX + 1];
	char snap[IMS_NAME_MAX + 1];
	uint64_t snap_id, size, obj_size, nobjects;
	int64_t at_ms;
	char why[32]; /* "replication", "schedule", "manual"; a copy on a secondary's site:
			 "replica", "replica-schedule" */
	char list_sha[IMS_SHA256_HEX_LEN]; /* SHA-256 of the object list */
	char prev[IMS_SHA256_HEX_LEN];	   /* the previous entry's hash; zeros for the first */
	char hash[IMS_SHA256_HEX_LEN];	   /* SHA-256 of this entry's fields and prev */
} ims_digest_entry;

/**
 * Digest @p pool/@p image@@p snap on @p site and append it to the log of @p records_pool.
 *
 * @param[out] out the entry appended; may be NULL.
 * @returns -ENOENT for an unknown image or snapshot, an error of RADOS.
 */
int ims_digest_record(ims_digest_entry *out, ims_site *site, const char *records_pool,
		      const char *pool, const char *image, const char *snap, const char *why);

/** What changed in one object. */
typedef struct {
	uint64_t objno;
	char object[160]; /* its RADOS name now ("rbd_data.<id>.<objno>") */
	const char *what; /* "changed", "added", "removed" */
} ims_digest_change;

typedef struct {
	bool recorded;		/* a digest of the snapshot is in the log */
	ims_digest_entry entry; /* the newest such digest */
	uint64_t snap_id_now;
	uint64_t objects_now;
	bool intact; /* the same snapshot (its id), its objects what the digest says */
	bool chain_ok;
	char chain_error[256]; /* the first broken entry, or "" */
	ims_digest_change *changes;
	size_t nchanges;
} ims_digest_verify_result;

/**
 * Recompute the digest of @p pool/@p image@@p snap and compare it with the newest recorded;
 * check the log's chain on the way.
 *
 * @param[out] out free with ims_digest_verify_result_free().
 * @returns -ENOENT for an unknown image or snapshot (the snapshot gone: nothing to compare).
 */
int ims_digest_verify(ims_digest_verify_result **out, ims_site *site, const char *records_pool,
		      const char *pool, const char *image, const char *snap);
void ims_digest_verify_result_free(ims_digest_verify_result *res);

/**
 * ims_digest_verify() of each member of group @p pool/@p group at its group snapshot @p snap
 * (digested as "GROUP@SNAP"), in one result: recorded and intact when every member's is, the
 * changes of all (their object names tell the member), entry the newest member digest with
 * nobjects summed, snap_id_now 1 when a member's snapshot was re-created.
 *
 * @returns -ENOENT for an unknown group or group snapshot.
 */
int ims_digest_verify_group(ims_digest_verify_result **out, ims_site *site,
			    const char *records_pool, const char *pool, const char *group,
			    const char *snap);

typedef struct {
	size_t entries;		     /* in the log before */
	size_t removed, kept;	     /* entries removed (old checkpoints included), kept */
	bool compacted;		     /* false: nothing to remove (or another daemon just did) */
	ims_digest_entry checkpoint; /* appended: size is its number of runs, nobjects the
					number of entries the runs cover */
} ims_digest_compact_result;

/**
 * Compact the log of @p records_pool on @p site (above): the snapshots named by the log are
 * looked up without the log's lock, the entries removed and the checkpoint appended under it,
 * in one write.
 *
 * @returns -EBADMSG when the chain is broken (nothing changed), an error of RADOS.
 */
int ims_digest_compact(ims_digest_compact_result *out, ims_site *site, const char *records_pool);

/* ---- the queue ---- */

typedef struct ims_digest_queue ims_digest_queue;

/** Called on the queue's thread after each digest was appended (the daemon's audit line):
 *  @p peer is the name of the site whose log it went to when that is not the queue's own
 *  (ims_digest_queue_push_on()), else NULL. */
typedef void (*ims_digest_recorded_fn)(void *ctx, const char *peer, const ims_digest_entry *e);

/** Start the queue's thread: digests of @p site, recorded in @p records_pool. */
int ims_digest_queue_start(ims_digest_queue **out, ims_site *site, const char *records_pool,
			   ims_digest_recorded_fn recorded, void *ctx);

/**
 * Queue a digest of @p pool/@p image@@p snap. Never waits: when 256 are queued already the
 * request is dropped with a warning (the snapshot is then left without a digest).
 */
void ims_digest_queue_push(ims_digest_queue *q, const char *pool, const char *image,
			   const char *snap, const char *why);

/**
 * ims_digest_queue_push() of a snapshot on @p site, recorded in that site's log (in the
 * queue's records pool, whose name is the same on every site): a replica's snapshot on a peer
 * site, so that `snap verify` there covers it after a failover. @p site must outlive the queue.
 */
void ims_digest_queue_push_on(ims_digest_queue *q, ims_site *site, const char *pool,
			      const char *image, const char *snap, const char *why);

/** Compact the log (ims_digest_compact()) after every @p n digests the queue appended; 0: never.
 *  A compaction's checkpoint goes to the queue's recorded callback like a digest. */
void ims_digest_queue_compact_after(ims_digest_queue *q, uint64_t n);

/** Queue a digest of each member of group @p pool/@p group on @p site (the queue's own or a
 *  peer's, as ims_digest_queue_push_on()) at its group snapshot @p snap. */
void ims_digest_queue_push_group(ims_digest_queue *q, ims_site *site, const char *pool,
				 const char *group, const char *snap, const char *why);

/** Digests still queued or running (tests wait for 0). */
unsigned ims_digest_queue_pending(ims_digest_queue *q);

/** Stop the thread (the queued digests are dropped). Accepts NULL. */
void ims_digest_queue_stop(ims_digest_queue *q);

#endif
