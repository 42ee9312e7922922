/*
 * proto/rpc.h: what the server and the client of imgstore's RPC share: the Connect error
 * codes, the one frozen map between errnos and codes, and the roles.
 *
 * Transport: the unary subset of the Connect protocol over HTTP/1.1:
 *   POST /imgstore.v1.ImageService/CreateImage
 *   Content-Type: application/proto        (the request message, protobuf-encoded)
 *   Authorization: Bearer TOKEN
 * A success is 200 with the response message (application/proto). An error is a JSON body
 * {"code": "not_found", "message": "no image 'rbd/vm1' on site 'a'"} with the matching HTTP
 * status (Content-Type: application/json).
 */
#ifndef IMS_PROTO_RPC_H
#define IMS_PROTO_RPC_H

/* Connect codes. FROZEN: values and names never change; a retired code keeps its slot. */
typedef enum {
	IMS_RPC_OK = 0,
	IMS_RPC_CANCELED = 1,
	IMS_RPC_UNKNOWN = 2,
	IMS_RPC_INVALID_ARGUMENT = 3,
	IMS_RPC_DEADLINE_EXCEEDED = 4,
	IMS_RPC_NOT_FOUND = 5,
	IMS_RPC_ALREADY_EXISTS = 6,
	IMS_RPC_PERMISSION_DENIED = 7,
	IMS_RPC_RESOURCE_EXHAUSTED = 8,
	IMS_RPC_FAILED_PRECONDITION = 9,
	IMS_RPC_ABORTED = 10,
	IMS_RPC_OUT_OF_RANGE = 11,
	IMS_RPC_UNIMPLEMENTED = 12,
	IMS_RPC_INTERNAL = 13,
	IMS_RPC_UNAVAILABLE = 14,
	IMS_RPC_DATA_LOSS = 15,
	IMS_RPC_UNAUTHENTICATED = 16,
} ims_rpc_code;

/** "not_found", ... as Connect writes them. */
const char *ims_rpc_code_name(ims_rpc_code code);

/** @returns -EINVAL if @p name is no Connect code. */
int ims_rpc_code_parse(ims_rpc_code *out, const char *name);

/** The HTTP status Connect pairs with @p code (404 for not_found, ...). */
int ims_rpc_code_http_status(ims_rpc_code code);

/**
 * The one map from a negative errno to a code (docs/RPC.md lists it):
 * ENOENT not_found, EEXIST already_exists, EINVAL/ENOTSUP/ENAMETOOLONG invalid_argument,
 * EACCES/EPERM permission_denied, EBUSY/ENOTEMPTY failed_precondition, ECANCELED canceled,
 * ETIMEDOUT/ECONNREFUSED/EHOSTUNREACH/ESHUTDOWN unavailable, ENOSPC/EDQUOT/EFBIG/EMSGSIZE/EAGAIN
 * resource_exhausted, ERANGE out_of_range, ENOSYS unimplemented, EIO/ENOMEM/others internal.
 */
ims_rpc_code ims_rpc_code_from_errno(int err);

/**
 * The (negative) errno a client returns for a code (ENOENT for not_found, ...; EIO for
 * unknown): canceled ECANCELED, unknown/internal/data_loss EIO, invalid_argument EINVAL,
 * deadline_exceeded ETIMEDOUT, not_found ENOENT, already_exists EEXIST, permission_denied
 * EPERM, resource_exhausted ENOSPC, failed_precondition EBUSY, aborted and unavailable EAGAIN
 * (try again later), out_of_range ERANGE, unimplemented ENOSYS, unauthenticated EACCES; 0 for
 * ok. Not the inverse of ims_rpc_code_from_errno(): several errnos share a code.
 */
int ims_rpc_errno_from_code(ims_rpc_code code);

/*
 * Typed error details: a failure whose cause a client may act on carries an
 * imgstore.v1.ErrorInfo with a reason in its Connect error's "details". FROZEN like the codes:
 * reasons are never renamed or reused.
 */
#define IMS_RPC_ERROR_INFO_TYPE "imgstore.v1.ErrorInfo"
#define IMS_RPC_ERROR_DOMAIN	"imgstore"
#define IMS_RPC_REASON_MAX	64 /* with the NUL */

#define IMS_RPC_REASON_STALE_LEASE "STALE_LEASE" /* the image failed over since the lease */
#define IMS_RPC_REASON_NOT_PRIMARY "NOT_PRIMARY" /* a secondary copy: write on the primary */
#define IMS_RPC_REASON_SPLIT_BRAIN "SPLIT_BRAIN" /* both copies written: resync needed */
#define IMS_RPC_REASON_FENCED	   "FENCED"	 /* the caller's access was revoked */

/**
 * The reason a handler's errno carries when the handler set none: ESTALE STALE_LEASE, EROFS
 * NOT_PRIMARY, EUCLEAN SPLIT_BRAIN; NULL for the others.
 */
const char *ims_rpc_reason_from_errno(int err);

/* Roles, ordered: a role may call every method that needs it or a lower one. */
typedef enum {
	IMS_ROLE_NONE = 0,
	IMS_ROLE_READER = 1,
	IMS_ROLE_HOST = 2,
	IMS_ROLE_ADMIN = 3,
} ims_role;

const char *ims_role_name(ims_role role);

/** "reader", "host", "admin". @returns -EINVAL otherwise. */
int ims_role_parse(ims_role *out, const char *name);

#endif
