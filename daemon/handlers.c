/*
 * The RPC handlers of imgstored: ImageService, SnapshotService, OperationService,
 * HostService; ReplicationService, SiteService and TierService answer unimplemented until
 * their issues land.
 */
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
#include "daemon/daemon.h"
#include "daemon/kit.h"
#include "daemon/failover.h"
#include "daemon/groups.h"
#include "daemon/health.h"
#include "daemon/hosts.h"
#include "daemon/tier.h"
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


/* ---------------------------------------------------------------------------------------- */
/* helpers */

int ims_daemon_pick_target(const ims_repl_status *list, size_t n, const char *asked, const char *what, char *target,
			   size_t len)
{
	bool any = !asked || !asked[0];
	for (size_t i = 0; i < n; i++) {
		if (!any && strcmp(list[i].target, asked) != 0)
			continue;
		if (any && n > 1)
			return ims_error_set(-EINVAL, "%s replicates to %zu sites: name one", what, n);
		snprintf(target, len, "%s", list[i].target);
		return 0;
	}
	return ims_error_set(-ENOENT, "%s is not replicated%s%s; enable it first", what, any ? "" : " to site ",
			     any ? "" : asked);
}

int ims_daemon_require_image(ims_daemon *d, const char *pool, const char *image)
{
	int r = ims_image_exists(d->site, pool, image);
	if (r < 0)
		return r;
	if (r == 0)
		return ims_error_set(-ENOENT, "no image '%s/%s' on site '%s'", pool, image, ims_site_name(d->site));
	return 0;
}

static const char *spec_text(const ims_spec *s, char *buf, size_t len)
{
	return ims_spec_format(buf, len, s);
}

static Imgstore__V1__Tag **build_tags(ims_rpc_call *call, const ims_catalog_entry *e, size_t *n)
{
	*n = 0;
	if (!e || !e->ntags)
		return NULL;
	Imgstore__V1__Tag **tags = ims_rpc_call_alloc(call, e->ntags * sizeof(*tags));
	if (!tags)
		return NULL;
	for (size_t i = 0; i < e->ntags; i++) {
		Imgstore__V1__Tag *t = ALLOC(call, Imgstore__V1__Tag);
		if (!t)
			return NULL;
		imgstore__v1__tag__init(t);
		t->key = DUP(call, e->tags[i].key);
		t->value = DUP(call, e->tags[i].value);
		tags[(*n)++] = t;
	}
	return tags;
}

static int build_image(ims_rpc_call *call, const ims_image_info *info, ProtobufCMessage **resp)
{
	Imgstore__V1__Image *m = ALLOC(call, Imgstore__V1__Image);
	if (!m)
		return -ENOMEM;
	imgstore__v1__image__init(m);
	m->pool = DUP(call, info->pool);
	m->name = DUP(call, info->name);
	m->id = DUP(call, info->id);
	m->size = info->size;
	m->used_bytes = info->used_bytes;
	m->object_size = info->object_size;
	m->features = info->features;
	m->features_text = DUP(call, info->features_str);
	m->data_pool = DUP(call, info->data_pool);
	m->parent = DUP(call, info->parent);
	if (info->nsnaps) {
		m->snapshots = ims_rpc_call_alloc(call, info->nsnaps * sizeof(*m->snapshots));
		if (!m->snapshots)
			return -ENOMEM;
		for (size_t i = 0; i < info->nsnaps; i++) {
			Imgstore__V1__SnapshotInfo *s = ALLOC(call, Imgstore__V1__SnapshotInfo);
			if (!s)
				return -ENOMEM;
			imgstore__v1__snapshot_info__init(s);
			s->name = DUP(call, info->snaps[i].name);
			s->id = info->snaps[i].id;
			s->size = info->snaps[i].size;
			s->protected_ = info->snaps[i].is_protected;
			s->created_unix = info->snaps[i].timestamp;
			m->snapshots[m->n_snapshots++] = s;
		}
	}
	if (info->catalog) {
		m->in_catalog = 1;
		m->source = DUP(call, info->catalog->source);
		m->content_sha256 = DUP(call, info->catalog->content_sha256);
		m->created_unix = info->catalog->created;
		m->tags = build_tags(call, info->catalog, &m->n_tags);
	}
	*resp = &m->base;
	return 0;
}

/* Answer with the image's current state. */
static int reply_image(ims_daemon *d, ims_rpc_call *call, const char *pool, const char *name,
		       ProtobufCMessage **resp)
{
	ims_image_info *info = NULL;
	int r = ims_image_info_get(&info, d->site, pool, name);
	if (r < 0)
		return r;
	r = build_image(call, info, resp);
	ims_image_info_free(info);
	return r;
}

static int parse_format(const char *s, ims_format_kind def, ims_format_kind *out)
{
	if (!s || !s[0]) {
		*out = def;
		return 0;
	}
	if (ims_format_parse(out, s) < 0)
		return ims_error_set(-EINVAL, "unknown format '%s': expected auto, raw, qcow2 or vmdk", s);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* ImageService */

static int h_create_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__CreateImageRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0)
		return r;
	ims_image_create_opts o = IMS_IMAGE_CREATE_OPTS_INIT;
	o.size = q->size;
	o.features = q->features;
	o.data_pool = q->data_pool && q->data_pool[0] ? q->data_pool : NULL;
	o.order = q->order;
	if ((r = ims_image_create(d->site, s.pool, s.image, &o)) < 0)
		return r;
	return reply_image(d, call, s.pool, s.image, resp);
}

static int h_get_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__GetImageRequest *q = (const void *)req;
	ims_spec s;
	int r = ims_kit_spec(&s, d, call, q->image, false, false);
	return r < 0 ? r : reply_image(d, call, s.pool, s.image, resp);
}

static int h_list_images(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ListImagesRequest *q = (const void *)req;
	const char *pool = q->pool && q->pool[0] ? q->pool : d->pool;
	ims_image_list_entry *list = NULL;
	size_t n = 0;
	int r = ims_image_list(&list, &n, d->site, pool);
	if (r < 0)
		return r;
	Imgstore__V1__ListImagesResponse *m = ALLOC(call, Imgstore__V1__ListImagesResponse);
	if (!m) {
		r = -ENOMEM;
		goto out;
	}
	imgstore__v1__list_images_response__init(m);
	m->pool = DUP(call, pool);
	if (n) {
		m->images = ims_rpc_call_alloc(call, n * sizeof(*m->images));
		if (!m->images) {
			r = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		Imgstore__V1__ImageSummary *e = ALLOC(call, Imgstore__V1__ImageSummary);
		if (!e) {
			r = -ENOMEM;
			goto out;
		}
		imgstore__v1__image_summary__init(e);
		e->name = DUP(call, list[i].name);
		e->in_catalog = list[i].in_catalog;
		if (list[i].in_catalog) {
			e->size = list[i].entry.size;
			e->source = DUP(call, list[i].entry.source);
			e->created_unix = list[i].entry.created;
			e->parent = DUP(call, list[i].entry.parent);
			e->tags = build_tags(call, &list[i].entry, &e->n_tags);
			e->cold_target = DUP(call, list[i].entry.cold_target);
		}
		m->images[m->n_images++] = e;
	}
	*resp = &m->base;
out:
	ims_image_list_free(list, n);
	return r;
}

static int h_resize_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ResizeImageRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = ims_image_resize(d->site, s.pool, s.image, q->size, q->allow_shrink)) < 0)
		return r;
	return reply_image(d, call, s.pool, s.image, resp);
}

static int h_rename_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__RenameImageRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = ims_image_rename(d->site, s.pool, s.image, q->new_name)) < 0)
		return r;
	return reply_image(d, call, s.pool, q->new_name, resp);
}

static int h_delete_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__DeleteImageRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0)
		return r;
	ims_image_remove_opts o = IMS_IMAGE_REMOVE_OPTS_INIT;
	o.purge = q->purge;
	o.trash_delay = q->trash_delay_seconds;
	if ((r = ims_image_remove(d->site, s.pool, s.image, &o)) < 0)
		return r;
	Imgstore__V1__DeleteImageResponse *m = ALLOC(call, Imgstore__V1__DeleteImageResponse);
	if (!m)
		return -ENOMEM;
	imgstore__v1__delete_image_response__init(m);
	*resp = &m->base;
	return 0;
}

static int h_set_tag(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__SetImageTagRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = ims_image_tag_set(d->site, s.pool, s.image, q->key, q->value)) < 0)
		return r;
	return reply_image(d, call, s.pool, s.image, resp);
}

static int h_remove_tag(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__RemoveImageTagRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = ims_image_tag_remove(d->site, s.pool, s.image, q->key)) < 0)
		return r;
	return reply_image(d, call, s.pool, s.image, resp);
}

static int h_clone_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__CloneImageRequest *q = (const void *)req;
	ims_spec p, c;
	int r;
	if ((r = ims_kit_spec(&c, d, call, q->clone, false, false)) < 0 ||
	    (r = ims_kit_spec(&p, d, call, q->parent, true, true)) < 0)
		return r;
	ims_image_create_opts o = IMS_IMAGE_CREATE_OPTS_INIT;
	o.features = q->features;
	o.data_pool = q->data_pool && q->data_pool[0] ? q->data_pool : NULL;
	if ((r = ims_image_clone(d->site, p.pool, p.image, p.snap, c.pool, c.image, &o)) < 0)
		return r;
	return reply_image(d, call, c.pool, c.image, resp);
}

/* Work of the long operations. */
typedef struct {
	ims_daemon *d;
	ims_spec spec;
	ims_format_kind format;
	uint64_t features;
	char data_pool[IMS_NAME_MAX + 1];
	char path[1024];
	char upload_id[40]; /* import from an upload: removed after */
} work;

static void free_work(void *arg)
{
	work *w = arg;
	if (w->upload_id[0]) {
		pthread_mutex_lock(&w->d->lock);
		for (int i = 0; i < IMS_MAX_UPLOADS; i++) {
			if (strcmp(w->d->uploads[i].id, w->upload_id) == 0) {
				unlink(w->d->uploads[i].path);
				memset(&w->d->uploads[i], 0, sizeof(w->d->uploads[i]));
			}
		}
		pthread_mutex_unlock(&w->d->lock);
	}
	free(w);
}


static int run_import(ims_op *op, void *arg)
{
	work *w = arg;
	ims_transfer_opts o = IMS_TRANSFER_OPTS_INIT;
	o.format = w->format;
	o.create.features = w->features;
	o.create.data_pool = w->data_pool[0] ? w->data_pool : NULL;
	o.concurrency = (unsigned)w->d->cfg->defaults.concurrency;
	o.inflight_bytes = w->d->cfg->defaults.inflight_bytes;
	o.progress = ims_kit_op_progress;
	o.progress_ctx = op;
	o.source_name = w->upload_id[0] ? "the upload" : w->path;
	o.no_follow = true; /* w->path was resolved and checked against import_dirs */
	return ims_image_import_file(NULL, w->d->site, w->spec.pool, w->spec.image, w->path, &o);
}

static int run_export(ims_op *op, void *arg)
{
	work *w = arg;
	ims_transfer_opts o = IMS_TRANSFER_OPTS_INIT;
	o.format = w->format;
	o.concurrency = (unsigned)w->d->cfg->defaults.concurrency;
	o.inflight_bytes = w->d->cfg->defaults.inflight_bytes;
	o.progress = ims_kit_op_progress;
	o.progress_ctx = op;
	if (!w->path[0]) { /* to the spool, for download */
		snprintf(w->path, sizeof(w->path), "%s/%s.%s", w->d->cfg->server.spool_dir, ims_op_id(op),
			 ims_format_name(w->format));
		ims_op_set_result_path(op, w->path);
	}
	return ims_image_export_file(NULL, w->d->site, w->spec.pool, w->spec.image,
				     w->spec.snap[0] ? w->spec.snap : NULL, w->path, &o);
}

static int run_flatten(ims_op *op, void *arg)
{
	work *w = arg;
	return ims_image_flatten(w->d->site, w->spec.pool, w->spec.image, ims_kit_op_progress, op);
}

static int run_rollback(ims_op *op, void *arg)
{
	work *w = arg;
	return ims_snap_rollback(w->d->site, w->spec.pool, w->spec.image, w->spec.snap, ims_kit_op_progress, op);
}

static int submit(ims_daemon *d, ims_rpc_call *call, const char *kind, ims_op_fn fn, work *w,
		  ProtobufCMessage **resp)
{
	char target[3 * IMS_NAME_MAX + 4];
	return ims_kit_submit(d, call, kind, spec_text(&w->spec, target, sizeof(target)), fn, w, free_work, resp);
}

static work *new_work(ims_daemon *d, const ims_spec *s)
{
	work *w = calloc(1, sizeof(*w));
	if (w) {
		w->d = d;
		w->spec = *s;
	}
	return w;
}

/*
 * Whether @p resolved (what the daemon resolved @p asked to) is the file the client sees, by
 * the client's st_dev and st_ino (0: not given, not checked). A daemon in another mount
 * namespace (systemd's PrivateTmp, ProtectHome) may see another file under the same name, or
 * none: -EPERM then, saying what the client does @p instead (uploads, downloads). @p r is the result of
 * resolving the path: a path the daemon cannot see (-ENOENT) is -EPERM too when the client
 * sees it.
 */
static int same_file_as_client(const char *asked, const char *resolved, uint64_t dev, uint64_t ino, int r,
			       const char *instead)
{
	if (!dev && !ino)
		return r;
	if (r == -ENOENT)
		return ims_error_set(-EPERM,
				     "'%s' is not there as imgstored sees the filesystem (its unit's PrivateTmp or "
				     "ProtectHome, or another mount namespace): %s",
				     asked, instead);
	if (r < 0)
		return r;
	struct stat st;
	if (stat(resolved, &st) < 0)
		return ims_error_set(-EPERM, "'%s' is not there as imgstored sees the filesystem (%s): %s", asked,
				     strerror(errno), instead);
	if ((uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino)
		return ims_error_set(-EPERM,
				     "'%s' is another file as imgstored sees the filesystem (its unit's PrivateTmp or "
				     "ProtectHome, or another mount namespace): %s",
				     asked, instead);
	return 0;
}

static int h_import_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ImportImageRequest *q = (const void *)req;
	ims_spec s;
	ims_format_kind fmt;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = parse_format(q->format, IMS_FORMAT_AUTO, &fmt)) < 0)
		return r;
	bool from_path = q->source_path && q->source_path[0];
	bool from_upload = q->upload_id && q->upload_id[0];
	if (from_path == from_upload)
		return ims_error_set(-EINVAL, "an import needs either source_path or upload_id");
	/* fail fast on what the operation would find at once */
	if ((r = ims_image_exists(d->site, s.pool, s.image)) < 0)
		return r;
	if (r == 1)
		return ims_error_set(-EEXIST, "image '%s/%s' already exists on site '%s'", s.pool, s.image,
				     ims_site_name(d->site));
	work *w = new_work(d, &s);
	if (!w)
		return -ENOMEM;
	w->format = fmt;
	w->features = q->features;
	snprintf(w->data_pool, sizeof(w->data_pool), "%s", q->data_pool ? q->data_pool : "");
	if (from_path) {
		/* only files under [server] import_dirs: not the keyring, the tier key, the tokens */
		if ((r = ims_config_path_in(d->cfg->server.import_dirs, "import_dirs", q->source_path, true, w->path,
					    sizeof(w->path))) < 0 ||
		    (r = same_file_as_client(q->source_path, w->path, q->source_dev, q->source_ino, r,
						"the client uploads the file instead")) < 0) {
			free(w);
			return r;
		}
	} else {
		pthread_mutex_lock(&d->lock);
		ims_upload *u = NULL;
		for (int i = 0; i < IMS_MAX_UPLOADS; i++)
			if (d->uploads[i].id[0] && strcmp(d->uploads[i].id, q->upload_id) == 0)
				u = &d->uploads[i];
		if (!u || u->claimed || u->received != u->size) {
			if (!u)
				r = ims_error_set(-ENOENT, "no upload '%s'", q->upload_id);
			else if (u->claimed)
				r = ims_error_set(-EBUSY, "upload '%s' is already being imported", q->upload_id);
			else
				r = ims_error_set(-EINVAL, "upload '%s' holds %" PRIu64 " of %" PRIu64 " bytes",
						  q->upload_id, u->received, u->size);
			pthread_mutex_unlock(&d->lock);
			free(w);
			return r;
		}
		u->claimed = true;
		snprintf(w->path, sizeof(w->path), "%s", u->path);
		snprintf(w->upload_id, sizeof(w->upload_id), "%s", u->id);
		pthread_mutex_unlock(&d->lock);
	}
	return submit(d, call, "import", run_import, w, resp);
}

static int h_export_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ExportImageRequest *q = (const void *)req;
	ims_spec s;
	ims_format_kind fmt;
	char dest[sizeof(((work *)0)->path)] = "";
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, true, false)) < 0 ||
	    (r = parse_format(q->format, IMS_FORMAT_RAW, &fmt)) < 0)
		return r;
	if (fmt != IMS_FORMAT_RAW && fmt != IMS_FORMAT_QCOW2)
		return ims_error_set(-EINVAL, "export writes raw or qcow2, not %s", ims_format_name(fmt));
	/* only into [server] export_dirs: the daemon may write where no client should */
	if (q->dest_path && q->dest_path[0]) {
		r = ims_config_path_in(d->cfg->server.export_dirs, "export_dirs", q->dest_path, false, dest,
				       sizeof(dest));
		char dir[sizeof(dest)];
		snprintf(dir, sizeof(dir), "%s", dest);
		char *slash = strrchr(dir, '/');
		if (slash)
			slash[slash == dir ? 1 : 0] = '\0';
		if ((r = same_file_as_client(q->dest_path, dir, q->dest_dir_dev, q->dest_dir_ino, r,
					      "the client downloads the export instead")) < 0)
			return r;
	}
	if ((r = ims_daemon_require_image(d, s.pool, s.image)) < 0)
		return r;
	work *w = new_work(d, &s);
	if (!w)
		return -ENOMEM;
	w->format = fmt;
	snprintf(w->path, sizeof(w->path), "%s", dest);
	return submit(d, call, "export", run_export, w, resp);
}

static int h_flatten_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__FlattenImageRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0)
		return r;
	if ((r = ims_daemon_require_image(d, s.pool, s.image)) < 0)
		return r;
	work *w = new_work(d, &s);
	return w ? submit(d, call, "flatten", run_flatten, w, resp) : -ENOMEM;
}

static int h_begin_upload(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__BeginUploadRequest *q = (const void *)req;
	struct statvfs vfs;
	char a[32], b[32];
	int r;
	if (q->size == 0 || q->size > (64ull << 40))
		return ims_error_set(-EINVAL, "an upload holds 1 byte to 64 TiB");
	if (statvfs(d->cfg->server.spool_dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < q->size)
		return ims_error_set(-ENOSPC, "the spool '%s' has %s free; the upload needs %s",
				     d->cfg->server.spool_dir,
				     ims_format_size(a, sizeof(a), (uint64_t)vfs.f_bavail * vfs.f_frsize),
				     ims_format_size(b, sizeof(b), q->size));
	pthread_mutex_lock(&d->lock);
	ims_upload *u = NULL;
	time_t now = time(NULL);
	for (int i = 0; i < IMS_MAX_UPLOADS; i++) {
		/* an upload idle for an hour and not claimed is abandoned */
		if (d->uploads[i].id[0] && !d->uploads[i].claimed && now - d->uploads[i].last > 3600) {
			unlink(d->uploads[i].path);
			memset(&d->uploads[i], 0, sizeof(d->uploads[i]));
		}
		if (!u && !d->uploads[i].id[0])
			u = &d->uploads[i];
	}
	if (!u) {
		pthread_mutex_unlock(&d->lock);
		return ims_error_set(-EAGAIN, "too many uploads in progress (%d); try again later", IMS_MAX_UPLOADS);
	}
	memset(u, 0, sizeof(*u));
	char hex[33];
	if ((r = ims_random_hex(hex, sizeof(hex))) < 0) {
		pthread_mutex_unlock(&d->lock);
		return ims_error_set(r, "no randomness for an upload id");
	}
	snprintf(u->id, sizeof(u->id), "up-%s", hex);
	snprintf(u->path, sizeof(u->path), "%s/%s", d->cfg->server.spool_dir, u->id);
	int fd = open(u->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = ims_error_set(-errno, "cannot create '%s': %s", u->path, ims_strerror(errno));
		memset(u, 0, sizeof(*u));
		pthread_mutex_unlock(&d->lock);
		return r;
	}
	close(fd);
	u->size = q->size;
	u->last = now;
	Imgstore__V1__BeginUploadResponse *m = ALLOC(call, Imgstore__V1__BeginUploadResponse);
	if (!m) {
		pthread_mutex_unlock(&d->lock);
		return -ENOMEM;
	}
	imgstore__v1__begin_upload_response__init(m);
	m->upload_id = DUP(call, u->id);
	m->max_chunk_bytes = IMS_CHUNK_MAX;
	ims_rpc_call_set_target(call, u->id);
	pthread_mutex_unlock(&d->lock);
	*resp = &m->base;
	return 0;
}

static int h_upload_chunk(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__UploadChunkRequest *q = (const void *)req;
	int r = 0;
	ims_rpc_call_set_target(call, q->upload_id);
	pthread_mutex_lock(&d->lock);
	ims_upload *u = NULL;
	for (int i = 0; i < IMS_MAX_UPLOADS; i++)
		if (d->uploads[i].id[0] && strcmp(d->uploads[i].id, q->upload_id) == 0)
			u = &d->uploads[i];
	if (!u) {
		r = ims_error_set(-ENOENT, "no upload '%s'", q->upload_id);
	} else if (u->claimed) {
		r = ims_error_set(-EBUSY, "upload '%s' is complete and being imported", q->upload_id);
	} else if (q->offset != u->received) {
		r = ims_error_set(-EINVAL, "upload '%s' expects offset %" PRIu64 ", not %" PRIu64, q->upload_id,
				  u->received, q->offset);
	} else if (q->data.len > IMS_CHUNK_MAX || u->received + q->data.len > u->size) {
		r = ims_error_set(-EINVAL, "chunk of %zu bytes at %" PRIu64 " passes the upload's size %" PRIu64
				  " or the chunk limit", q->data.len, q->offset, u->size);
	} else {
		int fd = open(u->path, O_WRONLY | O_CLOEXEC);
		size_t done = 0;
		while (fd >= 0 && done < q->data.len) {
			ssize_t w = pwrite(fd, q->data.data + done, q->data.len - done, (off_t)(q->offset + done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			done += (size_t)w;
		}
		if (fd < 0 || done < q->data.len)
			r = ims_error_set(errno == ENOSPC ? -ENOSPC : -EIO, "cannot write upload '%s': %s",
					  q->upload_id, ims_strerror(errno ? errno : EIO));
		if (fd >= 0)
			close(fd);
		if (r == 0) {
			u->received += q->data.len;
			u->last = time(NULL);
		}
	}
	uint64_t received = u ? u->received : 0;
	pthread_mutex_unlock(&d->lock);
	if (r < 0)
		return r;
	Imgstore__V1__UploadChunkResponse *m = ALLOC(call, Imgstore__V1__UploadChunkResponse);
	if (!m)
		return -ENOMEM;
	imgstore__v1__upload_chunk_response__init(m);
	m->received_bytes = received;
	*resp = &m->base;
	return 0;
}

static int h_download_chunk(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__DownloadChunkRequest *q = (const void *)req;
	ims_op_record rec;
	struct stat st;
	int r, fd;
	if ((r = ims_ops_get(d->ops, q->operation_id, &rec)) < 0)
		return r;
	if (strcmp(rec.kind, "export") != 0 || !rec.result_path[0])
		return ims_error_set(-EINVAL, "operation %s is no export to the spool", rec.id);
	if (rec.state != IMS_OP_SUCCEEDED)
		return ims_error_set(-EBUSY, "export %s is %s, not succeeded", rec.id, ims_op_state_name(rec.state));
	fd = open(rec.result_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = ims_error_set(errno == ENOENT ? -ENOENT : -EIO, "the export of %s is no longer in the spool", rec.id);
		if (fd >= 0)
			close(fd);
		return r;
	}
	uint64_t size = (uint64_t)st.st_size, len = q->length ? q->length : IMS_CHUNK_MAX;
	if (len > IMS_CHUNK_MAX)
		len = IMS_CHUNK_MAX;
	if (q->offset > size) {
		close(fd);
		return ims_error_set(-ERANGE, "offset %" PRIu64 " is past the end (%" PRIu64 ")", q->offset, size);
	}
	if (q->offset + len > size)
		len = size - q->offset;
	Imgstore__V1__DownloadChunkResponse *m = ALLOC(call, Imgstore__V1__DownloadChunkResponse);
	uint8_t *buf = len ? ims_rpc_call_alloc(call, len) : NULL;
	if (!m || (len && !buf)) {
		close(fd);
		return -ENOMEM;
	}
	imgstore__v1__download_chunk_response__init(m);
	ssize_t got = len ? pread(fd, buf, len, (off_t)q->offset) : 0;
	close(fd);
	if (got < 0 || (uint64_t)got != len)
		return ims_error_set(-EIO, "cannot read the export of %s", rec.id);
	m->data.data = buf;
	m->data.len = len;
	m->total_bytes = size;
	m->eof = q->offset + len >= size;
	*resp = &m->base;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* SnapshotService */

/* A host snapshots the copy it writes: not a secondary, which replication alone changes (a
 * snapshot there would be taken for one the primary sealed). Admins are not held to it. */
static int host_writable(ims_daemon *d, ims_rpc_call *call, const ims_spec *s)
{
	ims_repl_side side;
	int r;
	if (ims_rpc_call_role(call) >= IMS_ROLE_ADMIN)
		return 0;
	if ((r = ims_repl_side_get(d->site, s->pool, s->image, &side)) < 0)
		return r;
	if (side.secondary)
		return ims_error_set(-EROFS,
				     "'%s/%s' on site '%s' is a secondary (its primary: %s); hosts snapshot it on the "
				     "primary's site, and replication brings the snapshot here",
				     s->pool, s->image, ims_site_name(d->site), side.source[0] ? side.source : "unknown");
	return 0;
}

static int h_create_snapshot(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__CreateSnapshotRequest *q = (const void *)req;
	ims_spec s;
	ims_snap_info *snaps = NULL;
	size_t n = 0;
	int r;
	char sealed_on[256];
	if ((r = ims_kit_spec(&s, d, call, q->snapshot, true, true)) < 0 ||
	    (r = ims_snap_check_user_name(s.snap, "create")) < 0 || (r = host_writable(d, call, &s)) < 0 ||
	    (r = ims_snap_create(d->site, s.pool, s.image, s.snap)) < 0)
		return r;
	/* sync mode: the snapshot is sealed on the targets before this call succeeds */
	if ((r = ims_repl_seal_snapshot(d->repl, s.pool, s.image, s.snap, sealed_on, sizeof(sealed_on))) < 0) {
		char why[IMS_ERROR_MSG_MAX];
		snprintf(why, sizeof(why), "%s", ims_error_last());
		return ims_error_set(r, "snapshot '%s' was taken on site '%s' but is not sealed on its sync-mode targets: %s",
				     s.snap, ims_site_name(d->site), why);
	}
	if (sealed_on[0])
		ims_log_info("snapshot '%s/%s@%s' sealed on site(s) %s (sync mode)", s.pool, s.image, s.snap, sealed_on);
	if ((r = ims_snap_list(&snaps, &n, d->site, s.pool, s.image)) < 0)
		return r;
	r = ims_error_set(-ENOENT, "snapshot '%s' vanished after its creation", s.snap);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(snaps[i].name, s.snap) != 0)
			continue;
		Imgstore__V1__SnapshotInfo *m = ALLOC(call, Imgstore__V1__SnapshotInfo);
		if (!m) {
			r = -ENOMEM;
			break;
		}
		imgstore__v1__snapshot_info__init(m);
		m->name = DUP(call, snaps[i].name);
		m->id = snaps[i].id;
		m->size = snaps[i].size;
		m->protected_ = snaps[i].is_protected;
		m->created_unix = snaps[i].timestamp;
		*resp = &m->base;
		r = 0;
	}
	ims_snap_list_free(snaps, n);
	return r;
}

static int h_list_snapshots(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ListSnapshotsRequest *q = (const void *)req;
	ims_spec s;
	ims_snap_info *snaps = NULL;
	size_t n = 0;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = ims_snap_list(&snaps, &n, d->site, s.pool, s.image)) < 0)
		return r;
	Imgstore__V1__ListSnapshotsResponse *m = ALLOC(call, Imgstore__V1__ListSnapshotsResponse);
	r = -ENOMEM;
	if (!m)
		goto out;
	imgstore__v1__list_snapshots_response__init(m);
	if (n && !(m->snapshots = ims_rpc_call_alloc(call, n * sizeof(*m->snapshots))))
		goto out;
	for (size_t i = 0; i < n; i++) {
		Imgstore__V1__SnapshotInfo *e = ALLOC(call, Imgstore__V1__SnapshotInfo);
		if (!e)
			goto out;
		imgstore__v1__snapshot_info__init(e);
		e->name = DUP(call, snaps[i].name);
		e->id = snaps[i].id;
		e->size = snaps[i].size;
		e->protected_ = snaps[i].is_protected;
		e->created_unix = snaps[i].timestamp;
		m->snapshots[m->n_snapshots++] = e;
	}
	*resp = &m->base;
	r = 0;
out:
	ims_snap_list_free(snaps, n);
	return r;
}

static int h_rollback_snapshot(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__RollbackSnapshotRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->snapshot, true, true)) < 0 ||
	    (r = ims_snap_check_user_name(s.snap, "roll back to")) < 0)
		return r;
	if ((r = ims_daemon_require_image(d, s.pool, s.image)) < 0)
		return r;
	work *w = new_work(d, &s);
	return w ? submit(d, call, "rollback", run_rollback, w, resp) : -ENOMEM;
}

static int h_delete_snapshot(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__DeleteSnapshotRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->snapshot, true, true)) < 0 ||
	    (r = ims_snap_check_user_name(s.snap, "remove")) < 0 ||
	    (r = ims_snap_remove(d->site, s.pool, s.image, s.snap)) < 0)
		return r;
	Imgstore__V1__DeleteSnapshotResponse *m = ALLOC(call, Imgstore__V1__DeleteSnapshotResponse);
	if (!m)
		return -ENOMEM;
	imgstore__v1__delete_snapshot_response__init(m);
	*resp = &m->base;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* OperationService */

/* The Operation of @p rec with its detail lines, when this daemon keeps them. */
static int reply_op_details(ims_daemon *d, ims_rpc_call *call, const ims_op_record *rec, ProtobufCMessage **resp)
{
	char *text = NULL;
	int r = ims_kit_reply_op(call, rec, resp);
	if (r < 0 || ims_ops_details(d->ops, rec->id, &text) < 0 || !text)
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

static int h_get_operation(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	const Imgstore__V1__GetOperationRequest *q = (const void *)req;
	ims_op_record rec;
	int r = ims_ops_get(APP(app)->ops, q->id, &rec);
	return r < 0 ? r : reply_op_details(APP(app), call, &rec, resp);
}

static int h_wait_operation(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	const Imgstore__V1__WaitOperationRequest *q = (const void *)req;
	ims_op_record rec;
	unsigned t = q->timeout_ms ? q->timeout_ms : 30000;
	if (t > 120000) /* under any sane read timeout of a client or proxy */
		t = 120000;
	int r = ims_ops_wait(APP(app)->ops, q->id, t, &rec);
	return r < 0 ? r : reply_op_details(APP(app), call, &rec, resp);
}

static int h_cancel_operation(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	const Imgstore__V1__CancelOperationRequest *q = (const void *)req;
	ims_op_record rec;
	ims_rpc_call_set_target(call, q->id);
	int r = ims_ops_cancel(APP(app)->ops, q->id, &rec);
	return r < 0 ? r : ims_kit_reply_op(call, &rec, resp);
}

static int h_list_operations(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	const Imgstore__V1__ListOperationsRequest *q = (const void *)req;
	ims_op_record *list = NULL;
	size_t n = 0;
	int r = ims_ops_list(APP(app)->ops, q->limit, q->active_only, &list, &n);
	if (r < 0)
		return r;
	Imgstore__V1__ListOperationsResponse *m = ALLOC(call, Imgstore__V1__ListOperationsResponse);
	r = -ENOMEM;
	if (!m)
		goto out;
	imgstore__v1__list_operations_response__init(m);
	if (n && !(m->operations = ims_rpc_call_alloc(call, n * sizeof(*m->operations))))
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (!(m->operations[i] = ims_kit_op_msg(call, &list[i])))
			goto out;
		m->n_operations++;
	}
	*resp = &m->base;
	r = 0;
out:
	free(list);
	return r;
}

/* ---------------------------------------------------------------------------------------- */
/* ReplicationService */

Imgstore__V1__ReplicationStatus *ims_daemon_status_msg(ims_rpc_call *call, const ims_repl_status *st)
{
	Imgstore__V1__ReplicationStatus *m = ALLOC(call, Imgstore__V1__ReplicationStatus);
	if (!m)
		return NULL;
	imgstore__v1__replication_status__init(m);
	m->image = DUP(call, st->image);
	m->target = DUP(call, st->target);
	m->role = DUP(call, st->role);
	m->state = DUP(call, st->state);
	m->rpo_seconds = st->rpo_seconds;
	m->lag_seconds = st->lag_seconds;
	m->last_sealed_snapshot = DUP(call, st->last_sealed);
	m->last_sync_bytes = st->last_sync_bytes;
	m->last_sync_seconds = st->last_sync_seconds;
	m->error = DUP(call, st->error);
	m->verify_every = st->verify_every;
	m->last_verified = DUP(call, st->last_verified);
	m->last_verify = DUP(call, st->last_verify);
	m->verify_failures = st->verify_failures;
	m->group = st->group;
	return m;
}

static int h_enable_replication(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__EnableReplicationRequest *q = (const void *)req;
	ims_spec s;
	ims_repl_status st;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0)
		return r;
	uint32_t rpo = q->rpo_seconds ? q->rpo_seconds : (uint32_t)d->cfg->defaults.rpo;
	if ((r = ims_repl_enable(d->repl, s.pool, s.image, q->target_site, q->mode, rpo, &st)) < 0 ||
	    (r = ims_repl_set_verify_every(d->repl, s.pool, s.image, q->target_site, q->verify_every)) < 0)
		return r;
	st.verify_every = q->verify_every;
	Imgstore__V1__ReplicationStatus *m = ims_daemon_status_msg(call, &st);
	if (!m)
		return -ENOMEM;
	*resp = &m->base;
	return 0;
}

static int repl_target(ims_daemon *d, const ims_spec *s, const char *asked, char *target, size_t len);

static int h_disable_replication(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ReplicationImageRequest *q = (const void *)req;
	ims_spec s;
	ims_repl_status st;
	char target[IMS_NAME_MAX + 1];
	int r;
	/* without a target: the only site the image replicates to (several: name one) */
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = repl_target(d, &s, q->target_site, target, sizeof(target))) < 0 ||
	    (r = ims_repl_disable(d->repl, s.pool, s.image, target, &st)) < 0)
		return r;
	snprintf(st.state, sizeof(st.state), "disabled");
	Imgstore__V1__ReplicationStatus *m = ims_daemon_status_msg(call, &st);
	if (!m)
		return -ENOMEM;
	*resp = &m->base;
	return 0;
}

/* The statuses @p list of image (@p group: group) pool/name, with a failover this daemon began
 * and did not finish (it was killed half-way) shown as state failing-over, its step and the
 * command that finishes it. */
int ims_daemon_status_journal(ims_daemon *d, const char *pool, const char *name, bool group, ims_repl_status **list,
			      size_t *n)
{
	ims_repl_journal j;
	if (ims_repl_journal_get(d->site, pool, name, group, &j) == 0) {
		/* a failover this daemon began and did not finish (it was killed half-way) */
		size_t k = 0;
		while (k < *n && strcmp((*list)[k].target, j.target) != 0)
			k++;
		if (k == *n) { /* its pair was handed over already */
			ims_repl_status *nl = realloc(*list, (*n + 1) * sizeof(*nl));
			if (!nl)
				return -ENOMEM;
			*list = nl;
			memset(&nl[*n], 0, sizeof(nl[*n]));
			snprintf(nl[*n].image, sizeof(nl[*n].image), "%s/%s", pool, name);
			snprintf(nl[*n].target, sizeof(nl[*n].target), "%s", j.target);
			snprintf(nl[*n].role, sizeof(nl[*n].role), "%s", "primary");
			nl[*n].lag_seconds = -1;
			nl[*n].group = group;
			(*n)++;
		}
		snprintf((*list)[k].state, sizeof((*list)[k].state), "%s", "failing-over");
		char why[1024];
		int len = j.forced ? snprintf(why, sizeof(why),
					      "a forced failover from site '%s' is at step '%s' (generation %llu); if it "
					      "is not running any more, run `imgstore %srepl failover %s/%s --to %s --force` "
					      "again to finish it",
					      j.target, ims_repl_step_name(j.step), (unsigned long long)j.generation,
					      group ? "group " : "", pool, name, ims_site_name(d->site))
				   : snprintf(why, sizeof(why),
					      "a failover to site '%s' is at step '%s' (generation %llu); if it is not "
					      "running any more, run `imgstore %srepl failover %s/%s --to %s` again to "
					      "finish it",
					      j.target, ims_repl_step_name(j.step), (unsigned long long)j.generation,
					      group ? "group " : "", pool, name, j.target);
		size_t cut = len < 0 ? 0 : (size_t)len < sizeof((*list)[k].error) ? (size_t)len : sizeof((*list)[k].error) - 1;
		memcpy((*list)[k].error, why, cut);
		(*list)[k].error[cut] = '\0';
	}
	return 0;
}

static int h_replication_status(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ReplicationStatusRequest *q = (const void *)req;
	ims_spec s;
	bool one = q->image && q->image->image && q->image->image[0];
	ims_repl_status *list = NULL;
	size_t n = 0;
	int r;
	if (one && (r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0)
		return r;
	if ((r = ims_repl_sched_status(d->repl, one ? s.pool : NULL, one ? s.image : NULL, &list, &n)) < 0)
		return r;
	if (one && (r = ims_daemon_status_journal(d, s.pool, s.image, false, &list, &n)) < 0) {
		free(list);
		return r;
	}
	Imgstore__V1__ReplicationStatusResponse *m = ALLOC(call, Imgstore__V1__ReplicationStatusResponse);
	r = -ENOMEM;
	if (!m)
		goto out;
	imgstore__v1__replication_status_response__init(m);
	if (n && !(m->statuses = ims_rpc_call_alloc(call, n * sizeof(*m->statuses))))
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (!(m->statuses[i] = ims_daemon_status_msg(call, &list[i])))
			goto out;
		m->n_statuses++;
	}
	*resp = &m->base;
	r = 0;
out:
	free(list);
	return r;
}

typedef struct {
	ims_daemon *d;
	ims_spec spec;
	char target[64];
} sync_work;

static int run_sync(ims_op *op, void *arg)
{
	sync_work *w = arg;
	ims_repl_result res;
	int r = ims_repl_sync_now(w->d->repl, w->spec.pool, w->spec.image, w->target, ims_kit_op_progress, op, &res);
	if (r == 0 && res.unchanged)
		ims_op_set_result(op, "'%s' on site '%s' already holds this state (unchanged since)", res.sealed, w->target);
	else if (r == 0)
		ims_op_set_result(op, "sealed '%s' on site '%s' (%" PRIu64 " bytes shipped)", res.sealed, w->target,
				  res.bytes_copied);
	return r;
}


static int h_sync_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ReplicationImageRequest *q = (const void *)req;
	ims_spec s;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0)
		return r;
	sync_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	if ((r = repl_target(d, &s, q->target_site, w->target, sizeof(w->target))) < 0) {
		free(w);
		return r;
	}
	w->d = d;
	w->spec = s;
	char text[3 * IMS_NAME_MAX + 4];
	return ims_kit_submit(d, call, "sync", spec_text(&s, text, sizeof(text)), run_sync, w, free, resp);
}

/* The pair's target: as asked, or the only site the image replicates to. */
static int repl_target(ims_daemon *d, const ims_spec *s, const char *asked, char *target, size_t len)
{
	ims_repl_status *list = NULL;
	size_t n = 0;
	char what[3 * IMS_NAME_MAX];
	int r = ims_repl_sched_status(d->repl, s->pool, s->image, &list, &n);
	if (r < 0)
		return r;
	snprintf(what, sizeof(what), "'%s/%s'", s->pool, s->image);
	r = ims_daemon_pick_target(list, n, asked, what, target, len);
	free(list);
	return r;
}

/* Failover, Failback, Resync: Operations (daemon/failover.c). */
static int submit_failover(ims_daemon *d, ims_rpc_call *call, const Imgstore__V1__ReplicationImageRequest *q,
			   const char *kind, ims_op_fn fn, bool failback, ProtobufCMessage **resp)
{
	ims_spec s;
	int r;
	bool all = fn == ims_failover_run && !failback && q->from_site && q->from_site[0] &&
		   !(q->image && q->image->image && q->image->image[0]);
	if (all) {
		memset(&s, 0, sizeof(s));
		snprintf(s.pool, sizeof(s.pool), "%s", q->image && q->image->pool && q->image->pool[0] ? q->image->pool : d->pool);
		if ((r = ims_name_check(IMS_NAME_POOL, s.pool)) < 0)
			return r;
		if (strcmp(q->from_site, ims_site_name(d->site)) != 0 && !ims_config_peer(d->cfg, q->from_site))
			return ims_error_set(-ENOENT, "no site '%s': this is site '%s' and its peers are in %s", q->from_site,
					     ims_site_name(d->site), d->cfg->path);
		fn = ims_failover_all_run;
	} else if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0) {
		return r;
	}
	ims_failover_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->d = d;
	w->spec = s;
	w->force = q->force;
	w->wait_s = q->wait_seconds;
	if (all)
		snprintf(w->from, sizeof(w->from), "%s", q->from_site);
	if ((fn == ims_failover_run || all) && !failback) {
		if (!q->target_site || !q->target_site[0]) {
			free(w);
			return ims_error_set(-EINVAL, "a failover needs --to SITE: the site that becomes the primary");
		}
		snprintf(w->target, sizeof(w->target), "%s", q->target_site);
	} else if ((r = repl_target(d, &s, q->target_site, w->target, sizeof(w->target))) < 0) {
		/* failback and resync act on the pair this primary replicates */
		free(w);
		return r;
	}
	if (failback && q->force) {
		free(w);
		return ims_error_set(-EINVAL, "a failback is always planned: use `repl failover --force` on the site to promote");
	}
	char text[3 * IMS_NAME_MAX + 4];
	if (all)
		snprintf(text, sizeof(text), "%s/* of site %s", s.pool, w->from);
	return ims_kit_submit(d, call, kind, all ? text : spec_text(&s, text, sizeof(text)), fn, w, free, resp);
}

static int h_failover(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	return submit_failover(APP(app), call, (const void *)req, "failover", ims_failover_run, false, resp);
}

static int h_failback(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	return submit_failover(APP(app), call, (const void *)req, "failback", ims_failover_run, true, resp);
}

static int h_resync(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	return submit_failover(APP(app), call, (const void *)req, "resync", ims_resync_run, false, resp);
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int ims_daemon_verify_deadline(void *ctx, uint64_t done, uint64_t total)
{
	(void)done;
	(void)total;
	return mono_s() > *(const double *)ctx;
}

Imgstore__V1__VerifyResponse *ims_daemon_verify_msg(ims_rpc_call *call, const char *img, const char *target,
						   const ims_repl_verify_result *v)
{
	char verdict[512];
	Imgstore__V1__VerifyResponse *m = ALLOC(call, Imgstore__V1__VerifyResponse);
	if (!m)
		return NULL;
	imgstore__v1__verify_response__init(m);
	if (v->equal)
		snprintf(verdict, sizeof(verdict), "equal: %" PRIu64 " objects compared, %" PRIu64 " of them by reading",
			 v->objects, v->objects_fallback);
	else
		snprintf(verdict, sizeof(verdict), "DIFFERENT: %zu extents differ, the first %" PRIu64 " bytes at offset %" PRIu64,
			 v->nmismatches, v->nmismatches ? v->mismatches[0].length : 0,
			 v->nmismatches ? v->mismatches[0].offset : 0);
	m->image = DUP(call, img);
	m->target = DUP(call, target);
	m->snapshot = DUP(call, v->snapshot);
	m->equal = v->equal;
	m->verdict = DUP(call, verdict);
	m->size_primary = v->size_primary;
	m->size_secondary = v->size_secondary;
	m->objects = v->objects;
	m->objects_fallback = v->objects_fallback;
	m->bytes_covered = v->bytes_covered;
	m->bytes_read = v->bytes_read;
	m->chunk_size = v->chunk_size;
	m->seconds = v->seconds;
	m->mismatch_count = v->nmismatches;
	size_t n = v->nmismatches < 1000 ? v->nmismatches : 1000;
	if (n && !(m->mismatches = ims_rpc_call_alloc(call, n * sizeof(*m->mismatches))))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		Imgstore__V1__ImageExtent *e = ALLOC(call, Imgstore__V1__ImageExtent);
		if (!e)
			return NULL;
		imgstore__v1__image_extent__init(e);
		e->offset = v->mismatches[i].offset;
		e->length = v->mismatches[i].length;
		m->mismatches[m->n_mismatches++] = e;
	}
	return m;
}

static int h_verify_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__VerifyImageRequest *q = (const void *)req;
	ims_repl_verify_opts o = IMS_REPL_VERIFY_OPTS_INIT;
	ims_repl_verify_result *v = NULL;
	ims_spec s;
	char target[64];
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = repl_target(d, &s, q->target_site, target, sizeof(target))) < 0)
		return r;
	double until = mono_s() + IMS_DAEMON_VERIFY_BOUND_S;
	o.snap = q->snapshot;
	o.chunk_size = q->chunk_size;
	o.progress = ims_daemon_verify_deadline;
	o.progress_ctx = &until;
	r = ims_repl_sched_verify(d->repl, s.pool, s.image, target, &o, &v);
	if (r == -ECANCELED)
		return ims_error_set(-ETIMEDOUT,
				     "verify of '%s/%s' did not finish within %d s; let the daemon verify it in the "
				     "background (repl enable --verify-every N) and read the verdict in repl status",
				     s.pool, s.image, IMS_DAEMON_VERIFY_BOUND_S);
	if (r < 0)
		return r;
	char img[2 * IMS_NAME_MAX + 2];
	snprintf(img, sizeof(img), "%s/%s", s.pool, s.image);
	Imgstore__V1__VerifyResponse *m = ims_daemon_verify_msg(call, img, target, v);
	r = -ENOMEM;
	if (!m)
		goto out;
	*resp = &m->base;
	r = 0;
out:
	ims_repl_verify_result_free(v);
	return r;
}

/* ---------------------------------------------------------------------------------------- */
/* SiteService: what the probes (daemon/health.h) and the scheduler know of each site */

static Imgstore__V1__Site *site_msg(ims_rpc_call *call, const ims_health_site *h, const ims_repl_status *pairs,
				    size_t npairs)
{
	Imgstore__V1__Site *m = ALLOC(call, Imgstore__V1__Site);
	if (!m)
		return NULL;
	imgstore__v1__site__init(m);
	m->name = DUP(call, h->name);
	m->local = h->local;
	m->ceph_conf = DUP(call, h->ceph_conf);
	m->fsid = DUP(call, h->fsid);
	m->health = DUP(call, !h->known ? "unknown" : h->up ? "up" : "down");
	m->error = DUP(call, h->up ? "" : h->error);
	m->last_answer_seconds = h->since_ok_ms < 0 ? -1.0 : (double)h->since_ok_ms / 1000.0;
	m->reconnects = h->reconnects;
	m->max_lag_seconds = -1;
	for (size_t i = 0; i < npairs; i++) {
		if (!h->local && strcmp(pairs[i].target, h->name) != 0)
			continue;
		m->pairs++;
		m->pairs_over_rpo += pairs[i].rpo_violated;
		if (pairs[i].lag_seconds > m->max_lag_seconds)
			m->max_lag_seconds = pairs[i].lag_seconds;
	}
	if (!m->name || !m->ceph_conf || !m->fsid || !m->health || !m->error)
		return NULL;
	return m;
}

/* The sites and the daemon's pairs; @p name: that site only (-ENOENT if unknown). */
static int sites_get(ims_daemon *d, const char *name, ims_health_site **sites, size_t *n, ims_repl_status **pairs,
		     size_t *npairs)
{
	int r = ims_health_sites(d->health, sites, n);
	if (r < 0)
		return r;
	if (name) {
		size_t k = 0;
		while (k < *n && strcmp((*sites)[k].name, name) != 0)
			k++;
		if (k == *n) {
			char known[512] = "";
			size_t used = 0;
			for (size_t i = 0; i < *n && used < sizeof(known); i++)
				used += (size_t)snprintf(known + used, sizeof(known) - used, "%s'%s'", i ? ", " : "",
							 (*sites)[i].name);
			free(*sites);
			*sites = NULL;
			return ims_error_set(-ENOENT, "no site '%s': this daemon knows %s", name, known);
		}
		if (k)
			(*sites)[0] = (*sites)[k];
		*n = 1;
	}
	if ((r = ims_repl_sched_status(d->repl, NULL, NULL, pairs, npairs)) < 0) {
		free(*sites);
		*sites = NULL;
	}
	return r;
}

static int h_list_sites(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	ims_health_site *sites = NULL;
	ims_repl_status *pairs = NULL;
	size_t n = 0, npairs = 0;
	(void)req;
	int r = sites_get(d, NULL, &sites, &n, &pairs, &npairs);
	if (r < 0)
		return r;
	Imgstore__V1__ListSitesResponse *m = ALLOC(call, Imgstore__V1__ListSitesResponse);
	r = -ENOMEM;
	if (!m)
		goto out;
	imgstore__v1__list_sites_response__init(m);
	if (n && !(m->sites = ims_rpc_call_alloc(call, n * sizeof(*m->sites))))
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (!(m->sites[i] = site_msg(call, &sites[i], pairs, npairs)))
			goto out;
		m->n_sites++;
	}
	*resp = &m->base;
	r = 0;
out:
	free(sites);
	free(pairs);
	return r;
}

static int h_get_site_status(void *app, ims_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__GetSiteStatusRequest *q = (const void *)req;
	ims_health_site *sites = NULL;
	ims_repl_status *pairs = NULL;
	size_t n = 0, npairs = 0;
	if (!q->name || !q->name[0])
		return ims_error_set(-EINVAL, "name a site");
	int r = sites_get(d, q->name, &sites, &n, &pairs, &npairs);
	if (r < 0)
		return r;
	Imgstore__V1__Site *m = site_msg(call, &sites[0], pairs, npairs);
	free(sites);
	free(pairs);
	if (!m)
		return -ENOMEM;
	*resp = &m->base;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* the method table */

/* A last argument SLOW marks a handler that may block for long: it runs off the request
 * threads (ims_rpc_method.slow). */
#define M(svc, name, in, out, role_, mut_, fn_, ...)                                             \
	{ .path = "/imgstore.v1." svc "/" name, .input = &imgstore__v1__##in##__descriptor,       \
	  .output = &imgstore__v1__##out##__descriptor, .role = IMS_ROLE_##role_,                 \
	  .mutating = mut_, .fn = fn_, __VA_ARGS__ }
#define SLOW .slow = true

static const ims_rpc_method methods[] = {
	M("ImageService", "CreateImage", create_image_request, image, ADMIN, true, h_create_image),
	M("ImageService", "GetImage", get_image_request, image, READER, false, h_get_image),
	M("ImageService", "ListImages", list_images_request, list_images_response, READER, false, h_list_images),
	M("ImageService", "ResizeImage", resize_image_request, image, ADMIN, true, h_resize_image),
	M("ImageService", "RenameImage", rename_image_request, image, ADMIN, true, h_rename_image),
	M("ImageService", "DeleteImage", delete_image_request, delete_image_response, ADMIN, true, h_delete_image),
	M("ImageService", "SetImageTag", set_image_tag_request, image, ADMIN, true, h_set_tag),
	M("ImageService", "RemoveImageTag", remove_image_tag_request, image, ADMIN, true, h_remove_tag),
	M("ImageService", "CloneImage", clone_image_request, image, ADMIN, true, h_clone_image),
	M("ImageService", "FlattenImage", flatten_image_request, operation, ADMIN, true, h_flatten_image),
	M("ImageService", "ImportImage", import_image_request, operation, ADMIN, true, h_import_image),
	M("ImageService", "ExportImage", export_image_request, operation, ADMIN, true, h_export_image),
	M("ImageService", "BeginUpload", begin_upload_request, begin_upload_response, ADMIN, true, h_begin_upload),
	M("ImageService", "UploadChunk", upload_chunk_request, upload_chunk_response, ADMIN, false, h_upload_chunk),
	M("ImageService", "DownloadChunk", download_chunk_request, download_chunk_response, ADMIN, false,
	  h_download_chunk),
	M("SnapshotService", "CreateSnapshot", create_snapshot_request, snapshot_info, HOST, true, h_create_snapshot,
	  SLOW),
	M("SnapshotService", "ListSnapshots", list_snapshots_request, list_snapshots_response, READER, false,
	  h_list_snapshots),
	M("SnapshotService", "RollbackSnapshot", rollback_snapshot_request, operation, ADMIN, true, h_rollback_snapshot),
	M("SnapshotService", "DeleteSnapshot", delete_snapshot_request, delete_snapshot_response, ADMIN, true,
	  h_delete_snapshot),
	M("OperationService", "GetOperation", get_operation_request, operation, READER, false, h_get_operation),
	M("OperationService", "ListOperations", list_operations_request, list_operations_response, READER, false,
	  h_list_operations),
	M("OperationService", "WaitOperation", wait_operation_request, operation, READER, false, h_wait_operation, SLOW),
	M("OperationService", "CancelOperation", cancel_operation_request, operation, ADMIN, true, h_cancel_operation),
	M("HostService", "RegisterHost", register_host_request, host, HOST, true, ims_h_register_host),
	M("HostService", "AcquireLease", acquire_lease_request, lease, HOST, true, ims_h_acquire_lease),
	M("HostService", "RenewLease", renew_lease_request, lease, HOST, false, ims_h_renew_lease),
	M("HostService", "ReleaseLease", release_lease_request, release_lease_response, HOST, true,
	  ims_h_release_lease),
	M("HostService", "ListLeases", list_leases_request, list_leases_response, READER, false, ims_h_list_leases),
	M("HostService", "GetAttachInfo", get_attach_info_request, attach_info, HOST, false, ims_h_get_attach_info),
	/* declared; their issues implement them */
	M("ReplicationService", "EnableReplication", enable_replication_request, replication_status, ADMIN, true,
	  h_enable_replication),
	M("ReplicationService", "DisableReplication", replication_image_request, replication_status, ADMIN, true,
	  h_disable_replication),
	M("ReplicationService", "GetReplicationStatus", replication_status_request, replication_status_response,
	  READER, false, h_replication_status),
	M("ReplicationService", "SyncImage", replication_image_request, operation, ADMIN, true, h_sync_image),
	M("ReplicationService", "Failover", replication_image_request, operation, ADMIN, true, h_failover),
	M("ReplicationService", "Failback", replication_image_request, operation, ADMIN, true, h_failback),
	M("ReplicationService", "Resync", replication_image_request, operation, ADMIN, true, h_resync),
	M("ReplicationService", "VerifyImage", verify_image_request, verify_response, ADMIN, true, h_verify_image, SLOW),
	M("SiteService", "ListSites", list_sites_request, list_sites_response, READER, false, h_list_sites),
	M("SiteService", "GetSiteStatus", get_site_status_request, site, READER, false, h_get_site_status),
	M("TierService", "Push", push_request, operation, ADMIN, true, ims_h_tier_push),
	M("TierService", "Restore", restore_request, operation, ADMIN, true, ims_h_tier_restore),
	M("TierService", "ListCold", list_cold_request, list_cold_response, READER, false,
	  ims_h_tier_list_cold),
	M("TierService", "Scrub", scrub_request, operation, ADMIN, true, ims_h_tier_scrub),
	M("TierService", "SetPolicy", set_tier_policy_request, tier_policy, ADMIN, true, ims_h_tier_set_policy),
	M("TierService", "GetPolicy", get_tier_policy_request, tier_policy, READER, false, ims_h_tier_get_policy),
	M("TierService", "ListPolicies", list_tier_policies_request, list_tier_policies_response, READER, false,
	  ims_h_tier_list_policies),
	M("TierService", "RemovePolicy", remove_tier_policy_request, remove_tier_policy_response, ADMIN, true,
	  ims_h_tier_remove_policy),
	M("TierService", "ColdCandidates", cold_candidates_request, cold_candidates_response, READER, false,
	  ims_h_tier_cold_candidates),
	M("GroupService", "CreateGroup", create_group_request, group, ADMIN, true, ims_h_create_group),
	M("GroupService", "DeleteGroup", delete_group_request, delete_group_response, ADMIN, true, ims_h_delete_group),
	M("GroupService", "AddImages", group_images_request, group, ADMIN, true, ims_h_group_add_images),
	M("GroupService", "RemoveImages", group_images_request, group, ADMIN, true, ims_h_group_remove_images),
	M("GroupService", "ListGroups", list_groups_request, list_groups_response, READER, false, ims_h_list_groups),
	M("GroupService", "GetGroup", get_group_request, group, READER, false, ims_h_get_group),
	M("GroupService", "CreateGroupSnapshot", group_snapshot_request, group_snapshot, ADMIN, true,
	  ims_h_create_group_snapshot),
	M("GroupService", "ListGroupSnapshots", get_group_request, list_group_snapshots_response, READER, false,
	  ims_h_list_group_snapshots),
	M("GroupService", "DeleteGroupSnapshot", group_snapshot_request, delete_group_response, ADMIN, true,
	  ims_h_delete_group_snapshot),
	M("GroupService", "EnableGroupReplication", enable_group_replication_request, replication_status, ADMIN, true,
	  ims_h_enable_group_replication),
	M("GroupService", "DisableGroupReplication", group_replication_request, replication_status, ADMIN, true,
	  ims_h_disable_group_replication),
	M("GroupService", "SyncGroup", group_replication_request, operation, ADMIN, true, ims_h_sync_group),
	M("GroupService", "GetGroupReplicationStatus", get_group_request, replication_status_response, READER, false,
	  ims_h_group_replication_status),
	M("GroupService", "FailoverGroup", group_replication_request, operation, ADMIN, true, ims_h_failover_group),
	M("GroupService", "ResyncGroup", group_replication_request, operation, ADMIN, true, ims_h_resync_group),
	M("GroupService", "VerifyGroup", verify_group_request, verify_group_response, ADMIN, true, ims_h_verify_group, SLOW),
};

const ims_rpc_method *ims_daemon_methods(size_t *count)
{
	*count = sizeof(methods) / sizeof(methods[0]);
	return methods;
}
