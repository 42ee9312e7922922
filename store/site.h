/*
 * store/site.h: a connection to one site's Ceph cluster.
 *
 * One ims_site holds one librados handle, shared by every call and thread that works on the
 * site. Monitor and OSD operation timeouts are always set, so a dead cluster yields
 * -ETIMEDOUT after a bounded wait instead of a hang.
 */
#ifndef IMS_STORE_SITE_H
#define IMS_STORE_SITE_H

#include <stdint.h>

#include <rados/librados.h>

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

#define IMS_SITE_OPTS_INIT { .version = IMS_SITE_OPTS_VERSION }

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

/** The librados handle, for modules of store/ and above. Borrowed. */
rados_t ims_site_rados(ims_site *site);

/**
 * Open an I/O context on @p pool. The caller destroys it with rados_ioctx_destroy().
 *
 * @returns -ENOENT if the pool does not exist (message names pool and site).
 */
int ims_site_ioctx(ims_site *site, const char *pool, rados_ioctx_t *out);

/** The cluster's fsid into @p buf (37 bytes at least). */
int ims_site_fsid(ims_site *site, char *buf, unsigned len);

/**
 * The monitors' addresses as clients reach them ("127.0.0.1:3300,..."), for attach info.
 *
 * @returns -ENOMEM, or an error of the monitor command.
 */
int ims_site_mon_addrs(ims_site *site, char *buf, unsigned len);

#endif
