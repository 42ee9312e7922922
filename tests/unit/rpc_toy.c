/* tests/unit/rpc_toy.c: the toy service of rpc_toy.h. */
#include "rpc_toy.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/error.h"

static void count(toy_app *app)
{
	pthread_mutex_lock(&app->lock);
	app->calls++;
	pthread_mutex_unlock(&app->lock);
}

static int answer_image(ims_rpc_call *call, const Imgstore__V1__ImageSpec *spec, uint64_t size,
			ProtobufCMessage **resp)
{
	Imgstore__V1__Image *img = ims_rpc_call_alloc(call, sizeof(*img));
	if (!img)
		return ims_error_set(-ENOMEM, "out of memory");
	imgstore__v1__image__init(img);
	img->pool = ims_rpc_call_strdup(call, spec->pool);
	img->name = ims_rpc_call_strdup(call, spec->image);
	img->id = ims_rpc_call_strdup(call, "1234abcd");
	if (!img->pool || !img->name || !img->id)
		return ims_error_set(-ENOMEM, "out of memory");
	img->size = size;
	img->features_text = "layering,exclusive-lock";
	img->in_catalog = 1;
	*resp = &img->base;
	return 0;
}

static int get_image_now(toy_app *app, ims_rpc_call *call, const ProtobufCMessage *m,
			 ProtobufCMessage **resp)
{
	const Imgstore__V1__GetImageRequest *q = (const Imgstore__V1__GetImageRequest *)m;

	count(app);
	if (!q->image || !q->image->image[0])
		return ims_error_set(-EINVAL, "no image given");
	if (strcmp(q->image->image, "missing") == 0)
		return ims_error_set(-ENOENT, "no image '%s/%s' on site 'a'", q->image->pool,
				     q->image->image);
	if (strcmp(q->image->image, "nomsg") == 0)
		return -EIO;			   /* no message set: strerror */
	if (strcmp(q->image->image, "stale") == 0) /* a typed error, its reason from the errno */
		return ims_error_set(-ESTALE, "lease 'x' is stale");
	if (strcmp(q->image->image, "fenced") == 0) { /* a reason the handler sets */
		ims_rpc_call_set_reason(call, IMS_RPC_REASON_FENCED);
		return ims_error_set(-EBUSY, "host 'h' is fenced");
	}
	if (strcmp(q->image->image, "budget") == 0) { /* the caller's budget as the size */
		int64_t left = ims_rpc_call_remaining_ms(call);
		return answer_image(call, q->image, left < 0 ? UINT64_MAX : (uint64_t)left, resp);
	}
	if (strcmp(q->image->image, "slow") == 0 && app->sleep_ms) {
		struct timespec ts = {app->sleep_ms / 1000, (long)(app->sleep_ms % 1000) * 1000000};
		nanosleep(&ts, NULL);
	}
	return answer_image(call, q->image, 10ull << 30, resp);
}

static int wait_image(void *a, ims_rpc_call *call, const ProtobufCMessage *m,
		      ProtobufCMessage **resp);

static int get_image(void *a, ims_rpc_call *call, const ProtobufCMessage *m,
		     ProtobufCMessage **resp)
{
	toy_app *app = a;
	const Imgstore__V1__GetImageRequest *q = (const Imgstore__V1__GetImageRequest *)m;

	/* a quick call that must wait after all: called again on a thread of its own, where it
	 * waits as WaitImage does; size 0 when it could not (slow_calls all taken) */
	if (q->image && strcmp(q->image->image, "defer") == 0) {
		if (!ims_rpc_call_may_wait(call) && ims_rpc_call_defer(call))
			return IMS_RPC_DEFERRED;
		if (!ims_rpc_call_may_wait(call))
			return answer_image(call, q->image, 0, resp);
		return wait_image(a, call, m, resp);
	}
	return get_image_now(app, call, m, resp);
}

static int wait_image(void *a, ims_rpc_call *call, const ProtobufCMessage *m,
		      ProtobufCMessage **resp)
{
	toy_app *app = a;
	const Imgstore__V1__GetImageRequest *q = (const Imgstore__V1__GetImageRequest *)m;
	struct timespec until;
	int e = 0;

	count(app);
	if (!q->image)
		return ims_error_set(-EINVAL, "no image given");
	/* as WaitOperation: no longer than the caller's budget (Connect-Timeout-Ms) */
	int64_t budget = ims_rpc_call_remaining_ms(call);
	int64_t ms = budget >= 0 && budget < 60000 ? budget : 60000;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&app->lock);
	app->slow_waiting++;
	while (!app->slow_release && e != ETIMEDOUT)
		e = pthread_cond_timedwait(&app->slow_cond, &app->lock, &until);
	app->slow_waiting--;
	pthread_mutex_unlock(&app->lock);
	if (e == ETIMEDOUT && ms == 60000)
		return ims_error_set(-ETIMEDOUT, "not released within 60 s");
	return answer_image(call, q->image, 1ull << 30, resp);
}

static int list_images(void *a, ims_rpc_call *call, const ProtobufCMessage *m,
		       ProtobufCMessage **resp)
{
	const Imgstore__V1__ListImagesRequest *q = (const Imgstore__V1__ListImagesRequest *)m;
	Imgstore__V1__ListImagesResponse *r = ims_rpc_call_alloc(call, sizeof(*r));

	count(a);
	if (!r)
		return ims_error_set(-ENOMEM, "out of memory");
	imgstore__v1__list_images_response__init(r);
	r->pool = ims_rpc_call_strdup(call, q->pool[0] ? q->pool : "rbd");
	*resp = &r->base;
	return r->pool ? 0 : ims_error_set(-ENOMEM, "out of memory");
}

static void set_target(ims_rpc_call *call, const Imgstore__V1__ImageSpec *spec)
{
	char t[300];
	if (!spec)
		return;
	snprintf(t, sizeof(t), "%s/%s", spec->pool, spec->image);
	ims_rpc_call_set_target(call, t);
}

static int resize_image(void *a, ims_rpc_call *call, const ProtobufCMessage *m,
			ProtobufCMessage **resp)
{
	const Imgstore__V1__ResizeImageRequest *q = (const Imgstore__V1__ResizeImageRequest *)m;

	count(a);
	if (!q->image)
		return ims_error_set(-EINVAL, "no image given");
	set_target(call, q->image);
	return answer_image(call, q->image, q->size, resp);
}

static int create_image(void *a, ims_rpc_call *call, const ProtobufCMessage *m,
			ProtobufCMessage **resp)
{
	const Imgstore__V1__CreateImageRequest *q = (const Imgstore__V1__CreateImageRequest *)m;

	count(a);
	if (!q->image)
		return ims_error_set(-EINVAL, "no image given");
	set_target(call, q->image);
	if (strcmp(q->image->image, "exists") == 0)
		return ims_error_set(-EEXIST, "image '%s/%s' already exists", q->image->pool,
				     q->image->image);
	if (strcmp(q->image->image, "quote") == 0)
		return ims_error_set(-EINVAL, "bad name \"x\"\\y\tz\x01 \xc3\xa9 \xff end");
	return answer_image(call, q->image, q->size, resp);
}

static int rename_image(void *a, ims_rpc_call *call, const ProtobufCMessage *m,
			ProtobufCMessage **resp)
{
	static Imgstore__V1__DeleteImageResponse wrong = IMGSTORE__V1__DELETE_IMAGE_RESPONSE__INIT;

	count(a);
	*resp = &wrong.base; /* a bug: not an Image */
	return 0;
}

static int upload_chunk(void *a, ims_rpc_call *call, const ProtobufCMessage *m,
			ProtobufCMessage **resp)
{
	const Imgstore__V1__UploadChunkRequest *q = (const Imgstore__V1__UploadChunkRequest *)m;
	Imgstore__V1__UploadChunkResponse *r = ims_rpc_call_alloc(call, sizeof(*r));

	count(a);
	if (!r)
		return ims_error_set(-ENOMEM, "out of memory");
	ims_rpc_call_set_target(call, q->upload_id);
	imgstore__v1__upload_chunk_response__init(r);
	r->received_bytes = q->data.len;
	if (q->upload_id &&
	    strcmp(q->upload_id, "sum") == 0) /* the bytes as the handler saw them */
		for (size_t i = 0; i < q->data.len; i++)
			r->received_bytes += q->data.data[i];
	*resp = &r->base;
	return 0;
}

const ims_rpc_method toy_methods[] = {
	{TOY_GET, &imgstore__v1__get_image_request__descriptor, &imgstore__v1__image__descriptor,
	 IMS_ROLE_READER, false, get_image, false, NULL},
	{TOY_LIST, &imgstore__v1__list_images_request__descriptor,
	 &imgstore__v1__list_images_response__descriptor, IMS_ROLE_NONE, false, list_images, false,
	 NULL},
	{TOY_RESIZE, &imgstore__v1__resize_image_request__descriptor,
	 &imgstore__v1__image__descriptor, IMS_ROLE_HOST, true, resize_image, false, NULL},
	{TOY_CREATE, &imgstore__v1__create_image_request__descriptor,
	 &imgstore__v1__image__descriptor, IMS_ROLE_ADMIN, true, create_image, false, NULL},
	{TOY_DELETE, &imgstore__v1__delete_image_request__descriptor,
	 &imgstore__v1__delete_image_response__descriptor, IMS_ROLE_ADMIN, true, NULL, false, NULL},
	{TOY_RENAME, &imgstore__v1__rename_image_request__descriptor,
	 &imgstore__v1__image__descriptor, IMS_ROLE_READER, false, rename_image, false, NULL},
	{TOY_UPLOAD, &imgstore__v1__upload_chunk_request__descriptor,
	 &imgstore__v1__upload_chunk_response__descriptor, IMS_ROLE_HOST, true, upload_chunk, false,
	 NULL},
	{TOY_WAIT, &imgstore__v1__get_image_request__descriptor, &imgstore__v1__image__descriptor,
	 IMS_ROLE_READER, false, wait_image, true, NULL},
};
const size_t toy_nmethods = sizeof(toy_methods) / sizeof(toy_methods[0]);

static const char *toy_health(void *a)
{
	toy_app *app = a;
	return app->health ? app->health : "ok";
}

static int toy_ready(void *a, char *why, size_t len)
{
	toy_app *app = a;
	if (!app->not_ready)
		return 0;
	snprintf(why, len, "%s", app->not_ready);
	return 1;
}

static void toy_metrics(void *a, FILE *out)
{
	fputs("# TYPE imgstore_toy_images gauge\nimgstore_toy_images 42\n", out);
}

static void toy_audit(void *a, const char *line)
{
	toy_app *app = a;
	pthread_mutex_lock(&app->lock);
	snprintf(app->audit[app->naudit % TOY_MAX_AUDIT], sizeof(app->audit[0]), "%s", line);
	app->naudit++;
	pthread_mutex_unlock(&app->lock);
}

void toy_init(toy_app *app)
{
	memset(app, 0, sizeof(*app));
	pthread_mutex_init(&app->lock, NULL);
	pthread_cond_init(&app->slow_cond, NULL);
}

void toy_opts(ims_rpc_server_opts *o, toy_app *app)
{
	o->methods = toy_methods;
	o->nmethods = toy_nmethods;
	o->app = app;
	o->health = toy_health;
	o->ready = toy_ready;
	o->metrics = toy_metrics;
	o->audit = toy_audit;
}

unsigned toy_calls(toy_app *app)
{
	pthread_mutex_lock(&app->lock);
	unsigned n = app->calls;
	pthread_mutex_unlock(&app->lock);
	return n;
}

unsigned toy_last_audit(toy_app *app, char *buf, size_t cap)
{
	pthread_mutex_lock(&app->lock);
	unsigned n = app->naudit;
	snprintf(buf, cap, "%s", n ? app->audit[(n - 1) % TOY_MAX_AUDIT] : "");
	pthread_mutex_unlock(&app->lock);
	return n;
}

unsigned toy_slow_waiting(toy_app *app)
{
	pthread_mutex_lock(&app->lock);
	unsigned n = app->slow_waiting;
	pthread_mutex_unlock(&app->lock);
	return n;
}

void toy_slow_release(toy_app *app, bool release)
{
	pthread_mutex_lock(&app->lock);
	app->slow_release = release;
	pthread_cond_broadcast(&app->slow_cond);
	pthread_mutex_unlock(&app->lock);
}
