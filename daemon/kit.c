#include "daemon/kit.h"

#include <errno.h>
#include <stdio.h>

#include "common/error.h"
#include "daemon/daemon.h"

int ims_kit_spec(ims_spec *out, ims_daemon *d, ims_rpc_call *call, const Imgstore__V1__ImageSpec *in,
		 bool snap_allowed, bool snap_required)
{
	char text[3 * IMS_NAME_MAX + 4];
	if (!in || !in->image || !in->image[0])
		return ims_error_set(-EINVAL, "the request names no image");
	snprintf(text, sizeof(text), "%s/%s%s%s", in->pool && in->pool[0] ? in->pool : d->pool, in->image,
		 in->snapshot && in->snapshot[0] ? "@" : "", in->snapshot ? in->snapshot : "");
	ims_rpc_call_set_target(call, text);
	return ims_spec_parse(out, text, NULL, snap_allowed, snap_required);
}

int ims_kit_op_progress(void *op, uint64_t done, uint64_t total)
{
	return ims_op_progress(op, done, total);
}

Imgstore__V1__Operation *ims_kit_op_msg(ims_rpc_call *call, const ims_op_record *r)
{
	Imgstore__V1__Operation *o = ALLOC(call, Imgstore__V1__Operation);
	if (!o)
		return NULL;
	imgstore__v1__operation__init(o);
	o->id = DUP(call, r->id);
	o->kind = DUP(call, r->kind);
	o->target = DUP(call, r->target);
	o->state = (Imgstore__V1__OperationState)r->state;
	o->bytes_done = r->bytes_done;
	o->bytes_total = r->bytes_total;
	o->error = DUP(call, r->error);
	o->created_unix = r->created;
	o->started_unix = r->started;
	o->finished_unix = r->finished;
	o->site = DUP(call, r->site);
	o->result = DUP(call, r->result);
	return o;
}

int ims_kit_reply_op(ims_rpc_call *call, const ims_op_record *rec, ProtobufCMessage **resp)
{
	Imgstore__V1__Operation *o = ims_kit_op_msg(call, rec);
	if (!o)
		return -ENOMEM;
	*resp = &o->base;
	return 0;
}

int ims_kit_submit(ims_daemon *d, ims_rpc_call *call, const char *kind, const char *what, ims_op_fn fn, void *arg,
		   void (*free_arg)(void *), ProtobufCMessage **resp)
{
	ims_op_record rec;
	int r = ims_ops_submit(d->ops, kind, what, fn, arg, free_arg, &rec);
	if (r < 0)
		return r;
	return ims_kit_reply_op(call, &rec, resp);
}
