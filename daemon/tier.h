/*
 * daemon/tier.h: TierService. Push, restore and scrub run as Operations (daemon/ops.h) on the
 * S3 targets of the configuration ([s3 NAME] sections, tier/tier.h); ListCold reads the
 * targets' manifests. Policies per pool (tier/policy.h) are kept and judged here, and a scan
 * thread applies them.
 */
#ifndef IMS_DAEMON_TIER_H
#define IMS_DAEMON_TIER_H

#include "proto/server.h"

int ims_h_tier_push(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_tier_restore(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_tier_list_cold(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_tier_scrub(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_tier_set_policy(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_tier_get_policy(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_tier_list_policies(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_tier_remove_policy(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_tier_cold_candidates(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			       ProtobufCMessage **resp);

struct ims_daemon;
typedef struct ims_tier_scan ims_tier_scan;

/**
 * Start the scan of the tiering policies (tier/policy.h): every [defaults] tier_scan_interval
 * (the first after at most 30 s; 0: never, *out is then NULL), the idle images of every
 * policy are pushed, one at a time, each as a "tier-push" Operation under its push lock.
 */
int ims_tier_scan_start(ims_tier_scan **out, struct ims_daemon *d);

/** Stop the scan; call before the operations stop. NULL ok. */
void ims_tier_scan_stop(ims_tier_scan *s);

#endif
