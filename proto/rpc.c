/*
 * proto/rpc.c: the frozen tables shared by the server and the client: Connect codes, their
 * HTTP statuses, the errno map, and the roles.
 */
#include "proto/rpc.h"

#include <errno.h>
#include <string.h>

/* Indexed by ims_rpc_code. FROZEN, like the enum. */
static const struct {
	const char *name;
	int http_status;
	int err; /* what a client returns for the code */
} codes[] = {
	[IMS_RPC_OK] = {"ok", 200, 0},
	[IMS_RPC_CANCELED] = {"canceled", 499, ECANCELED},
	[IMS_RPC_UNKNOWN] = {"unknown", 500, EIO},
	[IMS_RPC_INVALID_ARGUMENT] = {"invalid_argument", 400, EINVAL},
	[IMS_RPC_DEADLINE_EXCEEDED] = {"deadline_exceeded", 408, ETIMEDOUT},
	[IMS_RPC_NOT_FOUND] = {"not_found", 404, ENOENT},
	[IMS_RPC_ALREADY_EXISTS] = {"already_exists", 409, EEXIST},
	[IMS_RPC_PERMISSION_DENIED] = {"permission_denied", 403, EPERM},
	[IMS_RPC_RESOURCE_EXHAUSTED] = {"resource_exhausted", 429, ENOSPC},
	[IMS_RPC_FAILED_PRECONDITION] = {"failed_precondition", 400, EBUSY},
	[IMS_RPC_ABORTED] = {"aborted", 409, EAGAIN},
	[IMS_RPC_OUT_OF_RANGE] = {"out_of_range", 400, ERANGE},
	[IMS_RPC_UNIMPLEMENTED] = {"unimplemented", 501, ENOSYS},
	[IMS_RPC_INTERNAL] = {"internal", 500, EIO},
	[IMS_RPC_UNAVAILABLE] = {"unavailable", 503, EAGAIN},
	[IMS_RPC_DATA_LOSS] = {"data_loss", 500, EIO},
	[IMS_RPC_UNAUTHENTICATED] = {"unauthenticated", 401, EACCES},
};

#define NCODES (sizeof(codes) / sizeof(codes[0]))

static int valid_code(ims_rpc_code code)
{
	return (unsigned)code < NCODES;
}

const char *ims_rpc_code_name(ims_rpc_code code)
{
	return valid_code(code) ? codes[code].name : "unknown";
}

int ims_rpc_code_parse(ims_rpc_code *out, const char *name)
{
	if (!out || !name)
		return -EINVAL;
	/* "ok" is no error code: Connect never sends it in an error body. */
	for (size_t i = 1; i < NCODES; i++) {
		if (strcmp(codes[i].name, name) == 0) {
			*out = (ims_rpc_code)i;
			return 0;
		}
	}
	return -EINVAL;
}

int ims_rpc_code_http_status(ims_rpc_code code)
{
	return valid_code(code) ? codes[code].http_status : 500;
}

ims_rpc_code ims_rpc_code_from_errno(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0: return IMS_RPC_OK;
	case ENOENT: return IMS_RPC_NOT_FOUND;
	case EEXIST: return IMS_RPC_ALREADY_EXISTS;
	case EINVAL:
	case ENOTSUP: /* == EOPNOTSUPP on Linux */
	case ENAMETOOLONG: return IMS_RPC_INVALID_ARGUMENT;
	case EACCES:
	case EPERM: return IMS_RPC_PERMISSION_DENIED;
	case EBUSY:
	case ENOTEMPTY:
	case ESTALE: /* a stale lease or copy after a failover */
	case EROFS:  /* a secondary copy */
	case EUCLEAN: /* split-brain */ return IMS_RPC_FAILED_PRECONDITION;
	case ECANCELED: return IMS_RPC_CANCELED;
	case ETIMEDOUT:
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ESHUTDOWN: return IMS_RPC_UNAVAILABLE;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
	case EMSGSIZE:
	case EAGAIN: return IMS_RPC_RESOURCE_EXHAUSTED;
	case ERANGE: return IMS_RPC_OUT_OF_RANGE;
	case ENOSYS: return IMS_RPC_UNIMPLEMENTED;
	default: return IMS_RPC_INTERNAL;
	}
}

int ims_rpc_errno_from_code(ims_rpc_code code)
{
	if (code == IMS_RPC_OK)
		return 0;
	return -(valid_code(code) ? codes[code].err : EIO);
}

const char *ims_rpc_reason_from_errno(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case ESTALE: return IMS_RPC_REASON_STALE_LEASE;
	case EROFS: return IMS_RPC_REASON_NOT_PRIMARY;
	case EUCLEAN: return IMS_RPC_REASON_SPLIT_BRAIN;
	default: return NULL;
	}
}

static const char *const roles[] = {
	[IMS_ROLE_NONE] = "none",
	[IMS_ROLE_READER] = "reader",
	[IMS_ROLE_HOST] = "host",
	[IMS_ROLE_ADMIN] = "admin",
};

const char *ims_role_name(ims_role role)
{
	if ((unsigned)role >= sizeof(roles) / sizeof(roles[0]))
		return "none";
	return roles[role];
}

int ims_role_parse(ims_role *out, const char *name)
{
	if (!out || !name)
		return -EINVAL;
	for (size_t i = IMS_ROLE_READER; i < sizeof(roles) / sizeof(roles[0]); i++) {
		if (strcmp(roles[i], name) == 0) {
			*out = (ims_role)i;
			return 0;
		}
	}
	return -EINVAL;
}
