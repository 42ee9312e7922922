/*
 * daemon/kit.h: what every RPC handler of daemon/ shares.
 *
 * A handler answers from the call's arena (ALLOC, DUP: freed once the response is sent),
 * reads the image a request names with the site's default pool and records it as the call's
 * audit target (ims_kit_spec), and runs a long job as an Operation (daemon/ops.h), answering
 * at once with the Operation's record (ims_kit_submit).
 */
#ifndef IMS_DAEMON_KIT_H
#define IMS_DAEMON_KIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/spec.h"
#include "daemon/ops.h"
#include "imgstore/v1/common.pb-c.h"
#include "imgstore/v1/operation.pb-c.h"
#include "proto/server.h"

struct ims_daemon;

#define APP(app)       ((struct ims_daemon *)(app))
#define ALLOC(call, T) ((T *)ims_rpc_call_alloc((call), sizeof(T)))
#define DUP(call, s)   ims_kit_dup((call), (s))

/** @p s (NULL: "") copied into the call's arena. */
static inline char *ims_kit_dup(ims_rpc_call *call, const char *s)
{
	return ims_rpc_call_strdup(call, s ? s : "");
}

/**
 * The image (and snapshot) @p in names, its pool defaulting to the site's; the call's audit
 * target becomes "POOL/IMAGE[@SNAP]".
 * @returns -EINVAL for no image, a bad name, a snapshot where none is allowed or none where one
 *          is required.
 */
int ims_kit_spec(ims_spec *out, struct ims_daemon *d, ims_rpc_call *call,
		 const Imgstore__V1__ImageSpec *in, bool snap_allowed, bool snap_required);

/** An ims_progress_fn that reports to the Operation @p op (an ims_op *). */
int ims_kit_op_progress(void *op, uint64_t done, uint64_t total);

/** The Operation message of @p rec, in the call's arena; NULL if out of memory. */
Imgstore__V1__Operation *ims_kit_op_msg(ims_rpc_call *call, const ims_op_record *rec);

/** Builds element @p i of a repeated message field from @p ctx (an array, a struct of arrays);
 *  NULL if out of memory. */
typedef void *(*ims_kit_item_fn)(ims_rpc_call *call, const void *ctx, size_t i);

/**
 * Fill the repeated message field @p field (a `T **`) and its count @p count with @p n
 * elements @p item(call, ctx, i), in the call's arena. Use IMS_KIT_REPEATED.
 * @returns 0, or -ENOMEM (the elements built so far are counted).
 */
int ims_kit_repeated(void *field, size_t *count, ims_rpc_call *call, size_t n, ims_kit_item_fn item,
		     const void *ctx);

/** ims_kit_repeated() of field @p field of message @p m (and its n_@p field). */
#define IMS_KIT_REPEATED(call, m, field, n, item, ctx)                                             \
	ims_kit_repeated(&(m)->field, &(m)->n_##field, (call), (n), (item), (ctx))

/** An ims_kit_item_fn: the SnapshotInfo of element @p i of an ims_snap_info array. */
void *ims_kit_snap_item(ims_rpc_call *call, const void *snaps, size_t i);

/** An ims_kit_item_fn: the Operation message of element @p i of an ims_op_record array. */
void *ims_kit_op_item(ims_rpc_call *call, const void *records, size_t i);

/* The answers below end in the handler's @p resp, as an ims_rpc_handler does: a handler ends
 * with `return ims_kit_reply_op(call, &rec, resp);`. */

/** Answer with an empty message of type @p desc (a DeleteImageResponse...). */
int ims_kit_reply_empty(ims_rpc_call *call, const ProtobufCMessageDescriptor *desc,
			ProtobufCMessage **resp);

/** Answer with the Operation message of @p rec. */
int ims_kit_reply_op(ims_rpc_call *call, const ims_op_record *rec, ProtobufCMessage **resp);

/**
 * Run @p fn(@p arg) as an Operation of @p kind on @p what, and answer with its record.
 * @p free_arg frees @p arg once the Operation ends, or now if it could not be submitted.
 */
int ims_kit_submit(struct ims_daemon *d, ims_rpc_call *call, const char *kind, const char *what,
		   ims_op_fn fn, void *arg, void (*free_arg)(void *), ProtobufCMessage **resp);

/* ---------------------------------------------------------------------------------------- */
/* services: each file of daemon/ declares the methods it serves in a table of its own */

/* A method: M("ImageService", "CreateImage", create_image_request, image, ADMIN, true, fn);
 * a last argument SLOW marks a handler that may block for long: it runs off the request
 * threads (ims_rpc_method.slow). */
#define M(svc, name, in, out, role_, mut_, fn_, ...)                                               \
	{                                                                                          \
		.path = "/imgstore.v1." svc "/" name, .input = &imgstore__v1__##in##__descriptor,  \
		.output = &imgstore__v1__##out##__descriptor, .role = IMS_ROLE_##role_,            \
		.mutating = mut_, .fn = fn_, __VA_ARGS__                                           \
	}
#define SLOW .slow = true

/** The methods one service serves. */
typedef struct {
	const ims_rpc_method *methods;
	size_t n;
} ims_daemon_service;

#define IMS_DAEMON_SERVICE(name, table)                                                            \
	const ims_daemon_service name = {table, sizeof(table) / sizeof(table[0])}

extern const ims_daemon_service ims_image_service;	 /* daemon/images.c */
extern const ims_daemon_service ims_snapshot_service;	 /* daemon/snaps.c */
extern const ims_daemon_service ims_operation_service;	 /* daemon/operations.c */
extern const ims_daemon_service ims_host_service;	 /* daemon/hosts.c */
extern const ims_daemon_service ims_replication_service; /* daemon/replication.c */
extern const ims_daemon_service ims_site_service;	 /* daemon/sites.c */
extern const ims_daemon_service ims_tier_service;	 /* daemon/tier.c */
extern const ims_daemon_service ims_group_service;	 /* daemon/groups.c */

/** Every method of every service above, in one table for the RPC server (built once). */
const ims_rpc_method *ims_daemon_methods(size_t *count);

#endif
