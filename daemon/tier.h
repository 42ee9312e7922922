/*
 * daemon/tier.h: TierService. Push, restore and scrub run as Operations (daemon/ops.h) on the
 * S3 targets of the configuration ([s3 NAME] sections, tier/tier.h); ListCold reads the
 * targets' manifests.
 */
#ifndef IMS_DAEMON_TIER_H
#define IMS_DAEMON_TIER_H

#include "proto/server.h"

int ims_h_tier_push(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_tier_restore(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_tier_list_cold(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_tier_scrub(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);

#endif
