/*
 * daemon/tier.h: TierService. Push, restore and scrub run as Operations (daemon/ops.h) on the
 * S3 targets of the configuration ([s3 NAME] sections, tier/tier.h); ListCold reads the
 * targets' manifests. Policies per pool (tier/policy.h) are set and judged through it; the
 * scan that applies them is tier/scan.h's, with the daemon's holds and Operations.
 */
#ifndef IMS_DAEMON_TIER_H
#define IMS_DAEMON_TIER_H

struct ims_daemon;
struct ims_tier_scan;

/**
 * Start the scan of the tiering policies (tier/scan.h) with [defaults] tier_scan_interval
 * (0: none, *out NULL): its pushes run as "tier-push" Operations; leases and replication hold
 * an image. Stop it with ims_tier_scan_stop() before the operations stop.
 */
int ims_daemon_tier_scan_start(struct ims_tier_scan **out, struct ims_daemon *d);

#endif
