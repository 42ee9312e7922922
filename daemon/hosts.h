/*
 * daemon/hosts.h: HostService. Hypervisor hosts register; they take leases on the images they
 * run (one host at a time per image, with a TTL, carrying the image's generation for fencing)
 * and ask for attach information. The records and their lock are store/lease.h's; this module
 * decides who may act for which host, and fences a lease whose image failed over.
 */
#ifndef IMS_DAEMON_HOSTS_H
#define IMS_DAEMON_HOSTS_H

#include <stddef.h>

#include "proto/server.h"

typedef struct ims_daemon ims_daemon;

/** 1 (and the host's name) if a live lease is held on @p pool/@p image, else 0. */
int ims_hosts_image_leased(char *host, size_t len, ims_daemon *d, const char *pool,
			   const char *image);

/** Remove the lease of @p pool/@p image, live or not (a failover breaks it). */
int ims_hosts_break_leases(unsigned *broken, ims_daemon *d, const char *pool, const char *image);

/**
 * The libvirt <disk> element for an RBD volume; names are XML-escaped. With @p luks_uuid (not
 * NULL or empty), the volume is LUKS2-encrypted, opened by librbd with the passphrase in that
 * libvirt secret. Returns malloc'ed text.
 */
char *ims_libvirt_disk_xml(const char *pool, const char *image, const char *client_id,
			   const char *secret_uuid, const char *const *monitors, size_t nmonitors,
			   const char *luks_uuid);

#endif
