/*
 * store/lease.h: the leases hypervisor hosts take on the images they run, and the records of
 * the hosts themselves.
 *
 * One host at a time holds an image, for a TTL it renews; a lease carries the image's
 * generation when it was granted, so that a host whose image failed over since (fenced) is
 * refused. Records live in RADOS, in the omap of two objects of a pool (the site's default
 * pool): "imgstore.leases" (one JSON value per leased image, key "POOL/IMAGE") and
 * "imgstore.hosts" (one per host). Every change of the leases takes a RADOS exclusive lock on
 * their object, so that several daemons of a site agree.
 *
 * Who may act for which host, and whether an image's generation moved on, are the caller's
 * rules: they come in as a callback (ims_lease_check_fn).
 */
#ifndef IMS_STORE_LEASE_H
#define IMS_STORE_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/spec.h"
#include "store/site.h"

#define IMS_LEASE_TTL_DEFAULT 60
#define IMS_LEASE_TTL_MAX     86400
#define IMS_HOST_NAME_MAX     127

typedef struct {
	char id[48]; /* "lease-" and 24 hex digits */
	char pool[IMS_NAME_MAX + 1];
	char image[IMS_NAME_MAX + 1];
	char host[IMS_HOST_NAME_MAX + 1];
	int64_t acquired; /* Unix seconds */
	int64_t expires;
	uint64_t generation; /* of the image when the lease was granted */
} ims_lease;

/** Whether @p name is a host name: 1 to 127 letters, digits, '.', '-' or '_'. */
bool ims_host_name_valid(const char *name);

/** The TTL a request for @p asked seconds gets: the default for 0, at most a day. */
unsigned ims_lease_ttl(uint32_t asked);

/**
 * Every lease of the site, expired ones included (a lease past its expiry stays renewable while
 * nobody took the image). @p records_pool holds the records.
 * @param[out] out malloc'ed array; free() it.
 */
int ims_lease_list(ims_lease **out, size_t *n, ims_site *site, const char *records_pool);

/**
 * The lease of @p pool/@p image, live or expired.
 * @returns 1 and *out; 0 if there is none; < 0 on error.
 */
int ims_lease_get(ims_lease *out, ims_site *site, const char *records_pool, const char *pool,
		  const char *image);

/**
 * A lease on @p pool/@p image for @p host, for @p ttl seconds, at the image's @p generation.
 * A live lease of the same host is replaced; one of another host refuses the call.
 * @returns 0 and *out; -EBUSY naming the holder and the expiry.
 */
int ims_lease_acquire(ims_lease *out, ims_site *site, const char *records_pool, const char *pool,
		      const char *image, const char *host, unsigned ttl, uint64_t generation);

/**
 * Called under the lock with the lease a renewal or release names, before anything changes:
 * a negative errno (with ims_error_set()) refuses. -ESTALE on a renewal means the lease is
 * fenced: its record is removed and the call fails with that error. For a renewal of a lease
 * a failover broke, it is called with that lease and @p renew false (may this caller act for
 * its host?) before the call fails with -EKEYREVOKED.
 */
typedef int (*ims_lease_check_fn)(void *ctx, const ims_lease *lease, bool renew);

/**
 * Renew (@p ttl > 0, from now) or release (@p ttl 0) the lease @p id.
 * @returns 0 and the lease (as renewed, or as it was) in *out; -ENOENT if no lease has that id;
 *          -EKEYREVOKED (and the broken lease in *out) for a renewal of a lease that a
 *          failover broke (ims_lease_break) within the last IMS_LEASE_FENCED_KEEP seconds
 *          after its expiry: its host is fenced; what @p check refused with.
 */
int ims_lease_change(ims_lease *out, ims_site *site, const char *records_pool, const char *id,
		     unsigned ttl, ims_lease_check_fn check, void *ctx);

/**
 * 1 (and the host's name) if a live lease is held on @p pool/@p image, else 0.
 */
int ims_lease_held(char *host, size_t len, ims_site *site, const char *records_pool,
		   const char *pool, const char *image);

/**
 * Remove the lease of @p pool/@p image, live or not (a failover breaks it); *broken: 0 or 1.
 * The broken lease is remembered (until IMS_LEASE_FENCED_KEEP seconds after its expiry) so
 * that its host's renewal is told it is fenced, not that the lease does not exist.
 */
#define IMS_LEASE_FENCED_KEEP 86400
int ims_lease_break(unsigned *broken, ims_site *site, const char *records_pool, const char *pool,
		    const char *image);

/** Record host @p name at @p address, registered by @p caller, now. */
int ims_host_register(ims_site *site, const char *records_pool, const char *name,
		      const char *address, const char *caller);

#endif
