#include "daemon/kit.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "daemon/daemon.h"
#include "imgstore/v1/snapshot.pb-c.h"
#include "store/image.h"
#include "store/snap.h"

int ims_kit_spec(ims_spec *out, ims_daemon *d, ims_rpc_call *call,
		 const Imgstore__V1__ImageSpec *in, bool snap_allowed, bool snap_required)
{
	char text[3 * IMS_NAME_MAX + 4];
	if (!in || !in->image || !in->image[0])
		return ims_error_set(-EINVAL, "the request names no image");
	snprintf(text, sizeof(text), "%s/%s%s%s", in->pool && in->pool[0] ? in->pool : d->pool,
		 in->image, in->snapshot && in->snapshot[0] ? "@" : "",
		 in->snapshot ? in->snapshot : "");
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
	o->decided = r->decided != 0;
	return o;
}

int ims_kit_reply_empty(ims_rpc_call *call, const ProtobufCMessageDescriptor *desc,
			ProtobufCMessage **resp)
{
	ProtobufCMessage *m = ims_rpc_call_alloc(call, desc->sizeof_message);
	if (!m)
		return -ENOMEM;
	protobuf_c_message_init(desc, m);
	*resp = m;
	return 0;
}

int ims_kit_reply_op(ims_rpc_call *call, const ims_op_record *rec, ProtobufCMessage **resp)
{
	Imgstore__V1__Operation *o = ims_kit_op_msg(call, rec);
	if (!o)
		return -ENOMEM;
	*resp = &o->base;
	return 0;
}

int ims_kit_submit(ims_daemon *d, ims_rpc_call *call, const char *kind, const char *what,
		   ims_op_fn fn, void *arg, void (*free_arg)(void *), ProtobufCMessage **resp)
{
	ims_op_record rec;
	int r = ims_ops_submit(&rec, d->ops, kind, what, fn, arg, free_arg);
	if (r < 0)
		return r;
	return ims_kit_reply_op(call, &rec, resp);
}

static int pick_target(const ims_repl_status *list, size_t n, const char *asked, const char *what,
		       char *target, size_t len)
{
	bool any = !asked || !asked[0];
	for (size_t i = 0; i < n; i++) {
		if (!any && strcmp(list[i].target, asked) != 0)
			continue;
		if (any && n > 1)
			return ims_error_set(-EINVAL, "%s replicates to %zu sites: name one", what,
					     n);
		snprintf(target, len, "%s", list[i].target);
		return 0;
	}
	return ims_error_set(-ENOENT, "%s is not replicated%s%s; enable it first", what,
			     any ? "" : " to site ", any ? "" : asked);
}

int ims_daemon_pair_target(char *target, size_t len, ims_daemon *d, const char *pool,
			   const char *name, ims_repl_unit unit, const char *asked)
{
	ims_repl_status *list = NULL;
	size_t n = 0;
	char what[3 * IMS_NAME_MAX];
	int r = unit == IMS_REPL_GROUP ? ims_repl_group_status(&list, &n, d->repl, pool, name)
				       : ims_repl_sched_status(&list, &n, d->repl, pool, name);
	if (r < 0)
		return r;
	snprintf(what, sizeof(what), "%s'%s/%s'", unit == IMS_REPL_GROUP ? "group " : "", pool,
		 name);
	r = pick_target(list, n, asked, what, target, len);
	free(list);
	return r;
}

int ims_daemon_require_image(ims_daemon *d, const char *pool, const char *image)
{
	int r = ims_image_exists(d->site, pool, image);
	if (r < 0)
		return r;
	if (r == 0)
		return ims_error_set(-ENOENT, "no image '%s/%s' on site '%s'", pool, image,
				     ims_site_name(d->site));
	return 0;
}

static const ims_daemon_service *const services[] = {
	&ims_image_service,	  &ims_snapshot_service, &ims_operation_service, &ims_host_service,
	&ims_replication_service, &ims_site_service,	 &ims_tier_service,	 &ims_group_service,
};
static ims_rpc_method *all_methods;
static size_t nall_methods;
static pthread_once_t methods_once = PTHREAD_ONCE_INIT;

static void gather_methods(void)
{
	size_t n = 0;
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		n += services[i]->n;
	all_methods = calloc(n, sizeof(*all_methods));
	if (!all_methods)
		return;
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		for (size_t k = 0; k < services[i]->n; k++)
			all_methods[nall_methods++] = services[i]->methods[k];
}

const ims_rpc_method *ims_daemon_methods(size_t *count)
{
	pthread_once(&methods_once, gather_methods);
	*count = nall_methods;
	return all_methods;
}

int ims_kit_repeated(void *field, size_t *count, ims_rpc_call *call, size_t n, ims_kit_item_fn item,
		     const void *ctx)
{
	void **v = NULL;
	*count = 0;
	if (n && !(v = ims_rpc_call_alloc(call, n * sizeof(*v))))
		return -ENOMEM;
	/* protobuf-c's repeated fields are arrays of pointers to messages, as its own code reads
	 * them through void ** */
	memcpy(field, &v, sizeof(v));
	for (size_t i = 0; i < n; i++) {
		if (!(v[i] = item(call, ctx, i)))
			return -ENOMEM;
		(*count)++;
	}
	return 0;
}

void *ims_kit_snap_item(ims_rpc_call *call, const void *snaps, size_t i)
{
	const ims_snap_info *sn = &((const ims_snap_info *)snaps)[i];
	Imgstore__V1__SnapshotInfo *s = ALLOC(call, Imgstore__V1__SnapshotInfo);
	if (!s)
		return NULL;
	imgstore__v1__snapshot_info__init(s);
	s->name = DUP(call, sn->name);
	s->id = sn->id;
	s->size = sn->size;
	s->protected_ = sn->is_protected;
	s->created_unix = sn->timestamp;
	return s;
}

void *ims_kit_op_item(ims_rpc_call *call, const void *records, size_t i)
{
	return ims_kit_op_msg(call, &((const ims_op_record *)records)[i]);
}
