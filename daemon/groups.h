/*
 * daemon/groups.h: GroupService. Consistency groups (store/group.h) and their replication as
 * one unit (replicator/group.h through the scheduler); SyncGroup runs as an Operation.
 */
#ifndef IMS_DAEMON_GROUPS_H
#define IMS_DAEMON_GROUPS_H

#include "proto/server.h"

int ims_h_create_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_delete_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_group_add_images(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_group_remove_images(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			      ProtobufCMessage **resp);
int ims_h_list_groups(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_get_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_create_group_snapshot(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				ProtobufCMessage **resp);
int ims_h_list_group_snapshots(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			       ProtobufCMessage **resp);
int ims_h_delete_group_snapshot(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				ProtobufCMessage **resp);
int ims_h_enable_group_replication(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				   ProtobufCMessage **resp);
int ims_h_disable_group_replication(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				    ProtobufCMessage **resp);
int ims_h_sync_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_group_replication_status(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				   ProtobufCMessage **resp);

int ims_h_failover_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);
int ims_h_resync_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);

int ims_h_verify_group(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp);

#endif
