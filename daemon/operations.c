/* daemon/operations.c: OperationService: the long operations of daemon/ops.h, as RPCs. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "common/error.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/spec.h"
#include "common/units.h"
#include "imgstore/v1/group.pb-c.h"
#include "imgstore/v1/host.pb-c.h"
#include "imgstore/v1/image.pb-c.h"
#include "imgstore/v1/operation.pb-c.h"
#include "imgstore/v1/replication.pb-c.h"
#include "imgstore/v1/site.pb-c.h"
#include "imgstore/v1/snapshot.pb-c.h"
#include "imgstore/v1/tier.pb-c.h"
#include "store/image.h"
#include "store/transfer.h"
#include "daemon/daemon.h"
#include "daemon/kit.h"

/* ---------------------------------------------------------------------------------------- */
/* OperationService */

/* The Operation of @p rec with its detail lines, when this daemon keeps them. */
static int reply_op_details(ims_daemon *d, ims_rpc_call *call, const ims_op_record *rec,
			    ProtobufCMessage **resp)
{
	char *text = NULL;
	int r = ims_kit_reply_op(call, rec, resp);
	if (r < 0 || ims_ops_details(&text, d->ops, rec->id) < 0 || !text)
		return r;
	Imgstore__V1__Operation *o = (Imgstore__V1__Operation *)*resp;
	size_t n = 0;
	for (const char *p = text; *p; p++)
		n += *p == '\n';
	o->details = ims_rpc_call_alloc(call, (n + 1) * sizeof(*o->details));
	if (!o->details) {
		free(text);
		return -ENOMEM;
	}
	for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
		*nl = '\0';
		if (!(o->details[o->n_details++] = DUP(call, line))) {
			free(text);
			return -ENOMEM;
		}
	}
	free(text);
	return 0;
}

static int h_get_operation(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			   ProtobufCMessage **resp)
{
	const Imgstore__V1__GetOperationRequest *q = (const void *)req;
	ims_op_record rec;
	int r = ims_ops_get(&rec, APP(app)->ops, q->id);
	return r < 0 ? r : reply_op_details(APP(app), call, &rec, resp);
}

static int h_wait_operation(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			    ProtobufCMessage **resp)
{
	const Imgstore__V1__WaitOperationRequest *q = (const void *)req;
	ims_op_record rec;
	unsigned t = q->timeout_ms ? q->timeout_ms : 30000;
	if (t > 120000) /* under any sane read timeout of a client or proxy */
		t = 120000;
	/* no longer than the caller's Connect-Timeout-Ms: the server answers deadline_exceeded */
	int64_t budget = ims_rpc_call_remaining_ms(call);
	if (budget >= 0 && budget < (int64_t)t)
		t = (unsigned)budget;
	int r = ims_ops_wait(&rec, APP(app)->ops, q->id, t);
	return r < 0 ? r : reply_op_details(APP(app), call, &rec, resp);
}

static int h_cancel_operation(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			      ProtobufCMessage **resp)
{
	const Imgstore__V1__CancelOperationRequest *q = (const void *)req;
	ims_op_record rec;
	ims_rpc_call_set_target(call, q->id);
	int r = ims_ops_cancel(&rec, APP(app)->ops, q->id);
	return r < 0 ? r : ims_kit_reply_op(call, &rec, resp);
}

static int h_list_operations(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			     ProtobufCMessage **resp)
{
	const Imgstore__V1__ListOperationsRequest *q = (const void *)req;
	ims_op_record *list = NULL;
	size_t n = 0;
	int r = ims_ops_list(&list, &n, APP(app)->ops, q->limit, q->active_only);
	if (r < 0)
		return r;
	Imgstore__V1__ListOperationsResponse *m = ALLOC(call, Imgstore__V1__ListOperationsResponse);
	r = -ENOMEM;
	if (!m)
		goto out;
	imgstore__v1__list_operations_response__init(m);
	if (IMS_KIT_REPEATED(call, m, operations, n, ims_kit_op_item, list) < 0)
		goto out;
	*resp = &m->base;
	r = 0;
out:
	free(list);
	return r;
}

/* ---------------------------------------------------------------------------------------- */

static const ims_rpc_method methods[] = {
	M("OperationService", "GetOperation", get_operation_request, operation, READER, false,
	  h_get_operation),
	M("OperationService", "ListOperations", list_operations_request, list_operations_response,
	  READER, false, h_list_operations),
	M("OperationService", "WaitOperation", wait_operation_request, operation, READER, false,
	  h_wait_operation, SLOW),
	M("OperationService", "CancelOperation", cancel_operation_request, operation, ADMIN, true,
	  h_cancel_operation),
};

IMS_DAEMON_SERVICE(ims_operation_service, methods);
