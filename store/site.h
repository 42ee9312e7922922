/*
 * store/site.h: a connection to one site's Ceph cluster.
 *
 * One ims_site holds one librados client, shared by every call and thread that works on the
 * site. Monitor and OSD operation timeouts are always set, so a dead cluster yields
 * -ETIMEDOUT after a bounded wait instead of a hang.
 *
 * A client the cluster has blocklisted (a fence, a lock broken after a network blip) gets
 * -ESHUTDOWN for every operation for as long as the entry lasts (an hour by default).
 * ims_site_probe() notices it and connects again as a new client; the old client stays alive
 * until the last ioctx opened on it is closed with ims_site_ioctx_close(), so threads that
 * share the site never see a handle go away under them.
 */
#ifndef IMS_STORE_SITE_H
#define IMS_STORE_SITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

typedef struct ims_site ims_site;

#define IMS_SITE_OPTS_VERSION 1

typedef struct {
	unsigned version;
	const char *name;      /* the site's name, for messages ("a") */
	const char *ceph_conf; /* required */
	const char *client_id; /* cephx user without "client."; NULL: "admin" */
	const char *keyring;   /* NULL: the one ceph_conf names */
	uint64_t mon_timeout;  /* seconds; 0: 10 */
	uint64_t osd_timeout;  /* seconds; 0: 30 */
} ims_site_opts;

#define IMS_SITE_OPTS_INIT                                                                         \
	{                                                                                          \
		.version = IMS_SITE_OPTS_VERSION                                                   \
	}

/**
 * Connect to a cluster.
 *
 * @param[out] out the site; close with ims_site_close().
 * @returns -ENOENT if ceph_conf or the keyring does not exist,
 *          -ETIMEDOUT if the monitors did not answer within mon_timeout,
 *          -EACCES or -EPERM if cephx refused the user,
 *          -EINVAL if the options are bad.
 */
int ims_site_connect(ims_site **out, const ims_site_opts *opts);

/** Disconnect. Accepts NULL. Every ioctx and image of the site must be closed first. */
void ims_site_close(ims_site *site);

/** The site's name. Borrowed. */
const char *ims_site_name(const ims_site *site);

struct ims_crypt_kek;

/**
 * Give the site the key-encryption key of its encrypted images (store/crypt.h), borrowed:
 * it must outlive the site. NULL: none (encrypted images cannot be made or opened).
 */
void ims_site_set_kek(ims_site *site, const struct ims_crypt_kek *kek);

/** The site's key-encryption key, or NULL. Borrowed. */
const struct ims_crypt_kek *ims_site_kek(const ims_site *site);

/**
 * Open an I/O context on @p pool, on the current client. Close it with
 * ims_site_ioctx_close() (rados_ioctx_destroy() would keep a replaced client alive).
 *
 * @param[out] out the I/O context.
 * @returns -ENOENT if the pool does not exist (message names pool and site).
 */
int ims_site_ioctx(rados_ioctx_t *out, ims_site *site, const char *pool);

/** Close an ioctx of ims_site_ioctx(). Accepts NULL, and destroys other ioctxs as they are. */
void ims_site_ioctx_close(rados_ioctx_t io);

/** The name of pool @p id into @p buf (@p len bytes). @returns 0, -ENOENT or -ERANGE. */
int ims_site_pool_name(char *buf, size_t len, ims_site *site, int64_t id);

/**
 * rados_pool_list() on the current client into @p buf (@p len bytes): the length needed, or a
 * negative errno.
 */
int ims_site_pool_list(char *buf, size_t len, ims_site *site);

/* A PG whose probe has not answered in this long (ms) counts as silent. */
#define IMS_SITE_PROBE_WAIT_MS 2500
/* The room for the list of silent PGs in ims_site_health. */
#define IMS_SITE_PG_LIST_MAX 200

/**
 * Ask the site a question that needs its OSDs, in every placement group of @p pool: a stat of
 * one object per PG (store/pg.h; the objects need not exist), all at once for a pool of up to
 * 128 PGs, else 128 a round in turn (the silent ones asked again every round). The pool's
 * pg_num is asked of the monitors at the first probe and every minute (until they answer, the
 * one object imgstore.probe is asked). A PG that has not answered within
 * IMS_SITE_PROBE_WAIT_MS is silent; its stat is not sent again before it ends (at the OSD
 * timeout), and a late answer counts at the next probe. The answers are remembered for
 * ims_site_health_get(): up (every PG answered), partly (some did not: how many, which),
 * down (none did).
 *
 * A blocklisted client is replaced by a new one (logged once, counted) and the question asked
 * again; after four rounds in a row with PGs that did not answer in time, a PG is asked through
 * a new client, which replaces the main one if it is answered (a client that gets no answers
 * after an OSD restarted). Blocks about IMS_SITE_PROBE_WAIT_MS when PGs do not answer (up to
 * the monitors' timeout once a minute when they do not answer): call it from a thread of its
 * own.
 *
 * @returns 0 if the site answered, in full or partly; else the error (-ETIMEDOUT,
 *          -ESHUTDOWN...).
 */
int ims_site_probe(ims_site *site, const char *pool);

typedef struct {
	bool up;	     /* every PG answered the last probe */
	bool partly;	     /* some answered, some did not */
	int error;	     /* 0 if up; else the site's error, or the first silent PG's */
	uint64_t reconnects; /* clients replaced because they were blocklisted */
	int64_t since_ok_ms; /* since a probe (or the connect) last got every answer; -1: never */
	int64_t probing_ms;  /* how long the probe in flight has waited; 0: none in flight */
	uint32_t pgs;	     /* the PGs of the probed pool; 0: not known (one object asked) */
	uint32_t pgs_silent; /* how many did not answer the last probe (all of them when down) */
	char silent[IMS_SITE_PG_LIST_MAX]; /* when partly, which: "2.1, 2.5 and 3 more" */
} ims_site_health;

/** What the probes of @p site found, into @p out; never waits for the cluster. */
void ims_site_health_get(ims_site_health *out, ims_site *site);

/**
 * Whether image (or, with @p group, group) @p pool/@p name of @p site cannot be opened now, by
 * what the probes of @p pool found: the site answered partly and the PG of the pool's rbd_info
 * (every open reads it), for a group the pool's rbd_directory (listing its images reads it), of
 * the object its id is read from (an image's rbd_id.NAME, the pool's rbd_group_directory) or of
 * its header (rbd_header.ID, rbd_group_header.ID) was silent in the
 * last two probes, the last one at most @p max_age_ms ago (an open would wait for the OSD
 * timeout, then fail). Reads the id (in a PG that answered) for the header's name; if that read
 * times out, the copy is silent too. Says which object and PG into @p why. A group's images are
 * each asked apart.
 *
 * @returns 1 (silent), or 0: the probes found no such silent PG, probe another pool, are older,
 *          or the id could not be read (asking the image or group says more).
 */
int ims_site_copy_silent(char *why, size_t len, ims_site *site, const char *pool, const char *name,
			 bool group, int64_t max_age_ms);

/**
 * The address of the current main client as the cluster sees it (what `ceph osd blocklist ls`
 * lists, e.g. "127.0.0.1:0/1874625615") into @p buf.
 *
 * @returns 0, -ERANGE if @p len is too short, or an error of librados.
 */
int ims_site_client_addr(char *buf, size_t len, ims_site *site);

/** The cluster's fsid into @p buf (37 bytes at least). */
int ims_site_fsid(char *buf, unsigned len, ims_site *site);

/**
 * The monitors' addresses as clients reach them ("127.0.0.1:3300,..."), for attach info.
 *
 * @returns -ENOMEM, or an error of the monitor command.
 */
int ims_site_mon_addrs(char *buf, unsigned len, ims_site *site);

/**
 * Whether @p owner, a lock owner as librbd names it ("127.0.0.1:0/1874625615"), is this
 * connection or its guard connection: a fence must never break its own lock.
 */
bool ims_site_is_me(ims_site *site, const char *owner);

/*
 * Writer guards. A secondary copy is held open by the daemon that replicates into it, with its
 * exclusive lock acquired explicitly: librbd does not hand such a lock over on request, so
 * every other client's write fails with -EROFS (a hypervisor started on the wrong site, a
 * script with `rbd bench`), and a quiesce watch refuses their snapshots (librbd would run a
 * snapshot request on the lock holder's behalf). imgstore writes through the guard's own handle
 * and creates its snapshots with RBD_SNAP_CREATE_SKIP_QUIESCE.
 * One guard per image on a site connection, shared by the threads that use it; the lock goes
 * with ims_site_guard_drop() (a promotion), with a put that asks to drop it, with the
 * connection, or with the process (its watch lapses).
 */

/**
 * The guarded handle of @p pool/@p image, opened and locked on first use. Borrowed until
 * ims_site_guard_put(); do not close it.
 *
 * @param[out] out the handle.
 * @returns -ENOENT if the image does not exist, -EBUSY if another client holds its lock
 *          explicitly (another imgstored's guard: the message names its address).
 */
int ims_site_guard_get(rbd_image_t *out, ims_site *site, const char *pool, const char *image);

/** Done with a handle of ims_site_guard_get(); with @p drop (an error, the handle may be
 *  dead) the guard is closed at its last user and the next get opens it again. */
void ims_site_guard_put(ims_site *site, const char *pool, const char *image, bool drop);

/** Release the guard of @p pool/@p image now (after its users are done): for a promotion, or
 *  when replication into it stops. Returns whether there was one. */
bool ims_site_guard_drop(ims_site *site, const char *pool, const char *image);

/** Release the guard of @p pool/@p image once its users are done, without waiting for them
 *  (now if it has none): when another daemon is to replicate into it. Returns whether there
 *  was one. */
bool ims_site_guard_let_go(ims_site *site, const char *pool, const char *image);

#endif
