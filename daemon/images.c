/*
 * daemon/images.c: ImageService: images, clones, tags, import and export (as Operations),
 * and the uploads and downloads of their bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
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
#include "store/crypt.h"
#include "store/image.h"
#include "store/transfer.h"
#include "tier/tier.h"
#include "daemon/daemon.h"
#include "daemon/kit.h"
#include "daemon/health.h"

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
	m->encryption = DUP(call, info->encrypted ? "luks2" : "");
	if (IMS_KIT_REPEATED(call, m, snapshots, info->nsnaps, ims_kit_snap_item, info->snaps) < 0)
		return -ENOMEM;
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
		return ims_error_set(
			-EINVAL,
			"unknown format '%s': expected auto, raw, qcow2, vmdk, vdi, vhdx "
			"or vpc",
			s);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* ImageService */

static int h_create_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp)
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
	o.encryption = q->encryption;
	if ((r = ims_image_create(d->site, s.pool, s.image, &o)) < 0)
		return r;
	return reply_image(d, call, s.pool, s.image, resp);
}

static int h_get_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
		       ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__GetImageRequest *q = (const void *)req;
	ims_spec s;
	int r = ims_kit_spec(&s, d, call, q->image, false, false);
	return r < 0 ? r : reply_image(d, call, s.pool, s.image, resp);
}

static void *summary_item(ims_rpc_call *call, const void *list, size_t i)
{
	const ims_image_list_entry *l = &((const ims_image_list_entry *)list)[i];
	Imgstore__V1__ImageSummary *e = ALLOC(call, Imgstore__V1__ImageSummary);
	if (!e)
		return NULL;
	imgstore__v1__image_summary__init(e);
	e->name = DUP(call, l->name);
	e->in_catalog = l->in_catalog;
	if (l->in_catalog) {
		e->size = l->entry.size;
		e->source = DUP(call, l->entry.source);
		e->created_unix = l->entry.created;
		e->parent = DUP(call, l->entry.parent);
		e->tags = build_tags(call, &l->entry, &e->n_tags);
		e->cold_target = DUP(call, l->entry.cold_target);
	}
	return e;
}

static int h_list_images(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			 ProtobufCMessage **resp)
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
	if ((r = IMS_KIT_REPEATED(call, m, images, n, summary_item, list)) < 0)
		goto out;
	*resp = &m->base;
out:
	ims_image_list_free(list, n);
	return r;
}

static int h_resize_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp)
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

static int h_rename_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp)
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

/*
 * Crypto-shredding reaches every replica: the wrapped key of the copy on each peer site whose
 * source is this image. With @p check, every peer is only asked first (it answers, the image
 * there is our replica or absent): a peer that cannot be reached refuses the shred before any
 * key anywhere is destroyed.
 */
static int shred_replicas(ims_daemon *d, const char *pool, const char *image, bool check)
{
	char source[3 * IMS_NAME_MAX + 3];
	int r = ims_image_exists(d->site, pool, image);
	if (r <= 0)
		return r < 0 ? r
			     : ims_error_set(-ENOENT, "no image '%s/%s' on site '%s'", pool, image,
					     ims_site_name(d->site));
	snprintf(source, sizeof(source), "%s/%s/%s", ims_site_name(d->site), pool, image);
	for (size_t i = 0; i < d->cfg->npeers; i++) {
		const char *peer = d->cfg->peers[i].name;
		ims_site *site = NULL;
		if ((r = ims_daemon_peer(d, peer, &site)) == 0)
			r = check ? ims_image_shred_replica_check(site, pool, image, source)
				  : ims_image_shred_replica(site, pool, image, source);
		if (r == -EEXIST) /* another image of that name there: not ours to touch */
			r = 0;
		if (r < 0)
			return ims_error_wrap(r, "cannot shred the replica on site '%s'", peer);
	}
	return 0;
}

/*
 * Crypto-shredding reaches the tier too: the wrapped key in every manifest of the image (and of
 * its snapshots) on every configured target is destroyed, so the chunks are unreadable. A
 * target that cannot be reached fails the call (run it again). With @p check, only whether
 * every target answers: asked before any key is destroyed, so that a target that is down
 * refuses the shred with nothing changed anywhere.
 */
static int shred_tiered(ims_daemon *d, const char *pool, const char *image, bool check,
			uint32_t *count)
{
	*count = 0;
	for (size_t i = 0; i < d->cfg->ns3; i++) {
		ims_tier_target *t = NULL;
		size_t n = 0;
		int r = ims_tier_target_open(&t, &d->cfg->s3[i]);
		if (r == 0)
			r = check ? ims_tier_shred_check(t, pool, image)
				  : ims_tier_shred(&n, t, pool, image);
		ims_tier_target_free(t);
		*count += (uint32_t)n;
		if (r < 0)
			return ims_error_wrap(r, "cannot shred the cold copies on target '%s'",
					      d->cfg->s3[i].name);
	}
	return 0;
}

/* image rm --shred of a cold image (tiered, no RBD image here): its cold copies, then its
 * catalog entry. */
static int shred_cold(ims_daemon *d, const char *pool, const char *image, uint32_t *count)
{
	char target[IMS_NAME_MAX + 1];
	int r = ims_tier_cold_target(target, sizeof(target), d->site, pool, image);
	if (r <= 0)
		return r < 0 ? r
			     : ims_error_set(-ENOENT, "no image '%s/%s' on site '%s'", pool, image,
					     ims_site_name(d->site));
	if ((r = shred_tiered(d, pool, image, false, count)) < 0)
		return r;
	if (*count == 0)
		return ims_error_set(-EINVAL,
				     "cold image '%s/%s' is not encrypted: it has no key to shred "
				     "(use tier forget)",
				     pool, image);
	return ims_tier_cold_drop(d->site, pool, image);
}

static int h_delete_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__DeleteImageRequest *q = (const void *)req;
	ims_spec s;
	uint32_t cold = 0;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0)
		return r;
	ims_image_remove_opts o = IMS_IMAGE_REMOVE_OPTS_INIT;
	o.purge = q->purge;
	o.trash_delay = q->trash_delay_seconds;
	o.shred = q->shred;
	if (o.shred && (r = ims_image_exists(d->site, s.pool, s.image)) == 0) {
		if ((r = shred_cold(d, s.pool, s.image, &cold)) < 0)
			return r;
		goto reply;
	}
	if (o.shred && ((r = shred_tiered(d, s.pool, s.image, true, &cold)) < 0 ||
			(r = shred_replicas(d, s.pool, s.image, true)) < 0 ||
			(r = shred_replicas(d, s.pool, s.image, false)) < 0 ||
			(r = shred_tiered(d, s.pool, s.image, false, &cold)) < 0))
		return r;
	if ((r = ims_image_remove(d->site, s.pool, s.image, &o)) < 0)
		return r;
reply:;
	Imgstore__V1__DeleteImageResponse *m = ims_rpc_call_alloc(call, sizeof(*m));
	if (!m)
		return -ENOMEM;
	imgstore__v1__delete_image_response__init(m);
	m->cold_copies_shredded = cold;
	*resp = &m->base;
	return 0;
}

/* KEK rotation: the images of this site, then the cold copies on every target. */
static int h_rewrap_keys(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			 ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	ims_crypt_rewrap_result img = {0}, cold = {0};
	char target[64];
	int r;
	(void)req;
	if (!d->kek)
		return ims_error_set(-EPERM, "cannot rewrap keys: this daemon has no key ([server] "
					     "kek_file is unset)");
	snprintf(target, sizeof(target), "kek:%s", ims_crypt_kek_id(d->kek));
	ims_rpc_call_set_target(call, target);
	if ((r = ims_crypt_rewrap_site(&img, d->site, d->kek)) < 0)
		return r;
	for (size_t i = 0; i < d->cfg->ns3; i++) {
		ims_tier_target *t = NULL;
		ims_crypt_rewrap_result one = {0};
		if ((r = ims_tier_target_open(&t, &d->cfg->s3[i])) == 0)
			r = ims_tier_rewrap(&one, t, d->kek);
		ims_tier_target_free(t);
		if (r < 0)
			return ims_error_wrap(r, "cannot rewrap the cold copies on target '%s'",
					      d->cfg->s3[i].name);
		cold.rewrapped += one.rewrapped;
		cold.current += one.current;
		if (one.failed)
			ims_crypt_rewrap_failed(&cold, "%s", one.report);
		cold.failed += one.failed - (one.failed ? 1 : 0);
	}
	ims_log_info("key rewrap to KEK %s: images %" PRIu64 " rewrapped, %" PRIu64
		     " current, %" PRIu64 " failed; cold copies %" PRIu64 " rewrapped, %" PRIu64
		     " current, %" PRIu64 " failed",
		     ims_crypt_kek_id(d->kek), img.rewrapped, img.current, img.failed,
		     cold.rewrapped, cold.current, cold.failed);
	if (img.failed || cold.failed)
		return ims_error_set(
			-EPERM,
			"%" PRIu64 " data key%s could not be rewrapped (%" PRIu64 " were, %" PRIu64
			" were current): %s%s%s",
			img.failed + cold.failed, img.failed + cold.failed == 1 ? "" : "s",
			img.rewrapped + cold.rewrapped, img.current + cold.current, img.report,
			img.failed && cold.failed ? "; " : "", cold.report);
	Imgstore__V1__RewrapKeysResponse *m = ALLOC(call, Imgstore__V1__RewrapKeysResponse);
	if (!m)
		return -ENOMEM;
	imgstore__v1__rewrap_keys_response__init(m);
	m->kek_id = ims_rpc_call_strdup(call, ims_crypt_kek_id(d->kek));
	const char *prev = ims_crypt_kek_previous_id(d->kek);
	m->previous_kek_id = ims_rpc_call_strdup(call, prev ? prev : "");
	m->images_rewrapped = img.rewrapped;
	m->images_current = img.current;
	m->images_failed = img.failed;
	m->cold_rewrapped = cold.rewrapped;
	m->cold_current = cold.current;
	m->cold_failed = cold.failed;
	*resp = &m->base;
	return 0;
}

static int h_set_tag(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
		     ProtobufCMessage **resp)
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

static int h_remove_tag(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			ProtobufCMessage **resp)
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

static int h_clone_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			 ProtobufCMessage **resp)
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

#define STREAM_INFLIGHT (16u << 20) /* a streamed export's blocks in flight from the OSDs */
/* a streamed import's blocks in flight to the OSDs: 32 MiB took 16 % less time than 16 MiB
 * and no more than 64 MiB (docs/BENCHMARKS.md); 48 MiB since the chunks go straight into the
 * ring (no request buffers): the import waited less for its writes, and the daemon's peak RSS
 * is 114 MiB, within its memory bound (32 MiB: 98 MiB) */
#define STREAM_IMPORT_INFLIGHT (48u << 20)

/* Work of the long operations. */
typedef struct {
	ims_daemon *d;
	ims_spec spec;
	ims_format_kind format;
	uint64_t features;
	char data_pool[IMS_NAME_MAX + 1];
	bool encrypt;	     /* import: LUKS2 (store/crypt.h) */
	uint8_t *passphrase; /* import: of a LUKS-encrypted qcow2; wiped at free, never logged */
	size_t passphrase_len;
	char path[1024];
	char upload_id[40]; /* import from an upload: removed after */
	/* an import while the upload arrives: the spool file read through a blocking source */
	ims_source_growing *grow;
	int fd;
	ims_op *op;
	uint64_t done, total; /* the import's last progress, repeated while it waits for bytes */
	uint64_t stream_seq;  /* an export streamed to the client through grow: its table entry */
} work;

static ims_upload *find_upload_locked(ims_daemon *d, const char *id)
{
	for (int i = 0; i < IMS_MAX_UPLOADS; i++)
		if (d->uploads[i].id[0] && strcmp(d->uploads[i].id, id) == 0)
			return &d->uploads[i];
	return NULL;
}

/* Take the streamed export @p seq out of the table (its hold dropped). */
static void stream_forget(ims_daemon *d, uint64_t seq)
{
	ims_source_growing *g = NULL;
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < IMS_MAX_UPLOADS; i++)
		if (d->streams[i].seq == seq) {
			g = d->streams[i].src;
			memset(&d->streams[i], 0, sizeof(d->streams[i]));
		}
	pthread_mutex_unlock(&d->lock);
	ims_source_growing_free(g);
}

static void free_work(void *arg)
{
	work *w = arg;
	/* a chunk waiting for room in the source's memory gives up, and so does a download */
	if (w->grow)
		ims_source_growing_abandon(w->grow,
					   w->stream_seq ? "the export ended" : "the import ended");
	if (w->stream_seq)
		stream_forget(w->d, w->stream_seq);
	if (w->upload_id[0]) {
		/* gone from the table before the source is freed: a chunk that arrives now finds
		 * no upload (one being copied into the source holds it) */
		pthread_mutex_lock(&w->d->lock);
		ims_upload *u = find_upload_locked(w->d, w->upload_id);
		if (u) {
			unlink(u->path);
			memset(u, 0, sizeof(*u));
		}
		pthread_mutex_unlock(&w->d->lock);
	}
	if (w->fd >= 0)
		close(w->fd);
	ims_source_growing_free(w->grow);
	if (w->passphrase) {
		explicit_bzero(w->passphrase, w->passphrase_len);
		free(w->passphrase);
	}
	free(w);
}

static int import_progress(void *arg, uint64_t done, uint64_t total)
{
	work *w = arg;
	w->done = done;
	w->total = total;
	return ims_kit_op_progress(w->op, done, total);
}

/* While a streamed import waits for bytes: the operation's cancel, the daemon's stop. */
static int import_stopped(void *arg)
{
	work *w = arg;
	return ims_kit_op_progress(w->op, w->done, w->total);
}

static int run_import(ims_op *op, void *arg)
{
	work *w = arg;
	ims_transfer_opts o = IMS_TRANSFER_OPTS_INIT;
	o.format = w->format;
	o.create.features = w->features;
	o.create.data_pool = w->data_pool[0] ? w->data_pool : NULL;
	o.create.encryption = w->encrypt ? "luks2" : NULL;
	o.concurrency = (unsigned)w->d->cfg->defaults.concurrency;
	o.inflight_bytes = w->d->cfg->defaults.inflight_bytes;
	o.progress = import_progress;
	o.progress_ctx = w;
	o.source_name = w->upload_id[0] ? "the upload" : w->path;
	o.no_follow = true; /* w->path was resolved and checked against import_dirs */
	o.passphrase = w->passphrase;
	o.passphrase_len = w->passphrase_len;
	w->op = op;
	if (w->grow) {
		/* the network feeds it: 48 MiB to the OSDs (12 blocks of 4 MiB), and the daemon
		 * stays within its memory bound with the upload's ring beside them */
		if (o.inflight_bytes > STREAM_IMPORT_INFLIGHT)
			o.inflight_bytes = STREAM_IMPORT_INFLIGHT;
		ims_source src;
		ims_source_growing_source(&src, w->grow);
		return ims_image_import(NULL, w->d->site, w->spec.pool, w->spec.image, &src, &o);
	}
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
	w->op = op;
	if (w->grow) { /* streamed: done once the client read the last byte */
		char size[32];
		o.progress = import_progress;
		o.progress_ctx = w;
		if (o.inflight_bytes > STREAM_INFLIGHT)
			o.inflight_bytes = STREAM_INFLIGHT;
		ims_transfer_result res = {0};
		int r = ims_image_export_stream(&res, w->d->site, w->spec.pool, w->spec.image,
						w->spec.snap[0] ? w->spec.snap : NULL, w->grow, &o);
		if (r == 0)
			r = ims_source_growing_drained(w->grow);
		if (r < 0) /* the client's next chunk says why */
			ims_source_growing_abandon(w->grow, ims_error_last());
		else
			ims_op_set_result(op, "streamed to the client: a disk of %s as %s",
					  ims_format_size(size, sizeof(size), res.virtual_size),
					  ims_format_name(w->format));
		return r;
	}
	if (!w->path[0]) { /* to the spool, for download */
		snprintf(w->path, sizeof(w->path), "%s/%s.%s", w->d->cfg->server.spool_dir,
			 ims_op_id(op), ims_format_name(w->format));
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

static int submit(ims_daemon *d, ims_rpc_call *call, const char *kind, ims_op_fn fn, work *w,
		  ProtobufCMessage **resp)
{
	char target[3 * IMS_NAME_MAX + 4];
	return ims_kit_submit(d, call, kind, ims_spec_format(target, sizeof(target), &w->spec), fn,
			      w, free_work, resp);
}

static work *new_work(ims_daemon *d, const ims_spec *s)
{
	work *w = calloc(1, sizeof(*w));
	if (w) {
		w->d = d;
		w->spec = *s;
		w->fd = -1;
	}
	return w;
}

/*
 * Whether @p resolved (what the daemon resolved @p asked to) is the file the client sees, by
 * the client's st_dev and st_ino (0: not given, not checked). A daemon in another mount
 * namespace (systemd's PrivateTmp, ProtectHome) may see another file under the same name, or
 * none: -EPERM then, saying what the client does @p instead (uploads, downloads). @p r is the
 * result of resolving the path: a path the daemon cannot see (-ENOENT) is -EPERM too when the
 * client sees it.
 */
static int same_file_as_client(const char *asked, const char *resolved, uint64_t dev, uint64_t ino,
			       int r, const char *instead)
{
	if (!dev && !ino)
		return r;
	if (r == -ENOENT)
		return ims_error_set(-EPERM,
				     "'%s' is not there as imgstored sees the filesystem (its "
				     "unit's PrivateTmp or "
				     "ProtectHome, or another mount namespace): %s",
				     asked, instead);
	if (r < 0)
		return r;
	struct stat st;
	if (stat(resolved, &st) < 0)
		return ims_error_set(-EPERM,
				     "'%s' is not there as imgstored sees the filesystem (%s): %s",
				     asked, strerror(errno), instead);
	if ((uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino)
		return ims_error_set(-EPERM,
				     "'%s' is another file as imgstored sees the filesystem (its "
				     "unit's PrivateTmp or "
				     "ProtectHome, or another mount namespace): %s",
				     asked, instead);
	return 0;
}

/*
 * Give upload @p id to the import @p w: a complete one, or with @p streamed one still
 * arriving, read through a source that waits for its bytes.
 */
static int claim_upload(ims_daemon *d, work *w, const char *id, bool streamed)
{
	int r = 0;
	pthread_mutex_lock(&d->lock);
	ims_upload *u = find_upload_locked(d, id);
	if (!u)
		r = ims_error_set(-ENOENT, "no upload '%s'", id);
	else if (u->claimed)
		r = ims_error_set(-EBUSY, "upload '%s' is already being imported", id);
	else if (!streamed && u->received != u->size)
		r = ims_error_set(-EINVAL, "upload '%s' holds %" PRIu64 " of %" PRIu64 " bytes", id,
				  u->received, u->size);
	if (r < 0)
		goto out;
	if (streamed) {
		w->fd = open(u->path, O_RDONLY | O_CLOEXEC);
		if (w->fd < 0) {
			r = ims_error_set(-EIO, "cannot read upload '%s': %s", id,
					  ims_strerror(errno));
			goto out;
		}
		if ((r = ims_source_growing_new(&w->grow, w->fd, u->size,
						(unsigned)d->cfg->server.upload_stall_timeout,
						import_stopped, w)) < 0)
			goto out;
		ims_source_growing_arrived(w->grow, u->received);
		u->src = w->grow;
		/* nothing sent yet (the CLI claims first): the bytes go to memory, the reader reads
		 * them there; only what leaves the ring is written to the file, without the page
		 * cache where the filesystem allows it */
		if (u->received == 0 && u->nahead == 0) {
			int wfd = open(u->path, O_WRONLY | O_CLOEXEC | O_DIRECT);
			if (wfd < 0 && errno == EINVAL)
				wfd = open(u->path, O_WRONLY | O_CLOEXEC);
			if (wfd < 0) {
				r = ims_error_set(-EIO, "cannot write upload '%s': %s", id,
						  ims_strerror(errno));
				u->src = NULL;
				goto out;
			}
			if ((r = ims_source_growing_buffer(
				     w->grow, wfd, IMS_UPLOAD_WINDOW + IMS_CHUNK_MAX)) < 0) {
				u->src = NULL;
				goto out;
			}
			u->ring = true;
		}
	}
	u->claimed = true;
	snprintf(w->path, sizeof(w->path), "%s", u->path);
	snprintf(w->upload_id, sizeof(w->upload_id), "%s", u->id);
out:
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* An import asked to encrypt: refused at once when it could not (the operation would). */
static int import_check_encryption(ims_daemon *d, const char *encryption)
{
	if (!encryption || !encryption[0])
		return 0;
	if (strcmp(encryption, "luks2") != 0)
		return ims_error_set(-EINVAL, "unknown encryption '%s' (luks2 is known)",
				     encryption);
	if (!ims_site_kek(d->site))
		return ims_error_set(-EPERM,
				     "cannot encrypt: site '%s' has no key ([server] kek_file is "
				     "unset)",
				     ims_site_name(d->site));
	return 0;
}

static int h_import_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp)
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
	if ((r = import_check_encryption(d, q->encryption)) < 0)
		return r;
	/* fail fast on what the operation would find at once */
	if ((r = ims_image_exists(d->site, s.pool, s.image)) < 0)
		return r;
	if (r == 1)
		return ims_error_set(-EEXIST, "image '%s/%s' already exists on site '%s'", s.pool,
				     s.image, ims_site_name(d->site));
	work *w = new_work(d, &s);
	if (!w)
		return -ENOMEM;
	w->format = fmt;
	w->features = q->features;
	w->encrypt = q->encryption && q->encryption[0];
	snprintf(w->data_pool, sizeof(w->data_pool), "%s", q->data_pool ? q->data_pool : "");
	if (q->passphrase.len) {
		w->passphrase = malloc(q->passphrase.len);
		if (!w->passphrase) {
			free(w);
			return -ENOMEM;
		}
		memcpy(w->passphrase, q->passphrase.data, q->passphrase.len);
		w->passphrase_len = q->passphrase.len;
	}
	if (from_path) {
		/* only files under [server] import_dirs: not the keyring, the tier key, the tokens
		 */
		if ((r = ims_config_path_in(w->path, sizeof(w->path), d->cfg->server.import_dirs,
					    "import_dirs", q->source_path, true)) < 0 ||
		    (r = same_file_as_client(q->source_path, w->path, q->source_dev, q->source_ino,
					     r, "the client uploads the file instead")) < 0) {
			free_work(w);
			return r;
		}
	} else if ((r = claim_upload(d, w, q->upload_id, q->while_uploading)) < 0) {
		free_work(w);
		return r;
	}
	return submit(d, call, "import", run_import, w, resp);
}

/* Submit the export @p w streamed to the client: its ring in the table, found by DownloadChunk. */
static int submit_stream(ims_daemon *d, ims_rpc_call *call, work *w, ProtobufCMessage **resp)
{
	ims_source_growing *g = NULL;
	int r, slot = -1;
	unsigned streaming = 0;
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < IMS_MAX_UPLOADS; i++)
		streaming += d->streams[i].seq != 0;
	pthread_mutex_unlock(&d->lock);
	if (streaming >= d->cfg->server.stream_exports) {
		/* as many as memory was given for: the client downloads this one from the spool
		 * once it is written (a client that asked to stream takes either) */
		ims_log_info("%u exports are streaming ([server] stream_exports): the export of "
			     "'%s/%s' goes through the spool",
			     streaming, w->spec.pool, w->spec.image);
		return submit(d, call, "export", run_export, w, resp);
	}
	if ((r = ims_source_growing_new(&g, -1, UINT64_MAX,
					(unsigned)d->cfg->server.upload_stall_timeout,
					import_stopped, w)) < 0 ||
	    (r = ims_source_growing_buffer(g, -1, IMS_UPLOAD_WINDOW)) < 0) {
		ims_source_growing_free(g);
		free(w);
		return r;
	}
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < IMS_MAX_UPLOADS && slot < 0; i++)
		if (!d->streams[i].seq)
			slot = i;
	if (slot >= 0) {
		w->stream_seq = ++d->stream_seq;
		d->streams[slot].seq = w->stream_seq;
		d->streams[slot].src = g;
		ims_source_growing_hold(g); /* the table's */
	}
	pthread_mutex_unlock(&d->lock);
	if (slot < 0) {
		ims_source_growing_free(g);
		free(w);
		return ims_error_set(-EAGAIN, "%d exports are streaming; try again later",
				     IMS_MAX_UPLOADS);
	}
	w->grow = g;
	uint64_t seq = w->stream_seq;
	if ((r = submit(d, call, "export", run_export, w, resp)) < 0)
		return r; /* free_work took it out of the table */
	Imgstore__V1__Operation *op = (Imgstore__V1__Operation *)*resp;
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < IMS_MAX_UPLOADS; i++)
		if (d->streams[i].seq == seq)
			snprintf(d->streams[i].op_id, sizeof(d->streams[i].op_id), "%s", op->id);
	pthread_mutex_unlock(&d->lock);
	op->streamed = true;
	return 0;
}

static int h_export_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp)
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
	if (fmt != IMS_FORMAT_RAW && fmt != IMS_FORMAT_QCOW2 && fmt != IMS_FORMAT_VMDK)
		return ims_error_set(-EINVAL, "export writes raw, qcow2 or vmdk, not %s",
				     ims_format_name(fmt));
	/* only into [server] export_dirs: the daemon may write where no client should */
	if (q->dest_path && q->dest_path[0]) {
		r = ims_config_path_in(dest, sizeof(dest), d->cfg->server.export_dirs,
				       "export_dirs", q->dest_path, false);
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
	/* streamed to the client, qcow2 too (its tables planned from the allocation map) */
	if (!dest[0] && q->stream)
		return submit_stream(d, call, w, resp);
	return submit(d, call, "export", run_export, w, resp);
}

static int h_flatten_image(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			   ProtobufCMessage **resp)
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

static int h_begin_upload(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__BeginUploadRequest *q = (const void *)req;
	struct statvfs vfs;
	char a[32], b[32];
	int r;
	if (q->size == 0 || q->size > (64ull << 40))
		return ims_error_set(-EINVAL, "an upload holds 1 byte to 64 TiB");
	if (statvfs(d->cfg->server.spool_dir, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < q->size)
		return ims_error_set(
			-ENOSPC, "the spool '%s' has %s free; the upload needs %s",
			d->cfg->server.spool_dir,
			ims_format_size(a, sizeof(a), (uint64_t)vfs.f_bavail * vfs.f_frsize),
			ims_format_size(b, sizeof(b), q->size));
	pthread_mutex_lock(&d->lock);
	ims_upload *u = NULL;
	time_t now = time(NULL);
	for (int i = 0; i < IMS_MAX_UPLOADS; i++) {
		/* an upload idle for an hour and not claimed is abandoned */
		if (d->uploads[i].id[0] && !d->uploads[i].claimed &&
		    now - d->uploads[i].last > 3600) {
			unlink(d->uploads[i].path);
			memset(&d->uploads[i], 0, sizeof(d->uploads[i]));
		}
		if (!u && !d->uploads[i].id[0])
			u = &d->uploads[i];
	}
	if (!u) {
		pthread_mutex_unlock(&d->lock);
		return ims_error_set(-EAGAIN, "too many uploads in progress (%d); try again later",
				     IMS_MAX_UPLOADS);
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
	m->import_while_uploading = 1;
	m->window_bytes = IMS_UPLOAD_WINDOW;
	ims_rpc_call_set_target(call, u->id);
	pthread_mutex_unlock(&d->lock);
	*resp = &m->base;
	return 0;
}

/*
 * Reserve [@p off, @p off + @p len) of upload @p u for a handler to write: at or past what
 * arrived, within the window, overlapping no chunk received or being written.
 */
static int chunk_reserve_locked(ims_upload *u, const char *id, uint64_t off, size_t len)
{
	if (u->claimed && !u->src)
		return ims_error_set(-EBUSY, "upload '%s' is complete and being imported", id);
	if (off < u->received)
		return ims_error_set(-EINVAL,
				     "upload '%s' expects offset %" PRIu64 ", not %" PRIu64, id,
				     u->received, off);
	if (len == 0 || len > IMS_CHUNK_MAX || off + len > u->size)
		return ims_error_set(-EINVAL,
				     "chunk of %zu bytes at %" PRIu64
				     " passes the upload's size %" PRIu64 " or the chunk limit",
				     len, off, u->size);
	if (off + len > u->received + IMS_UPLOAD_WINDOW)
		return ims_error_set(
			-EINVAL,
			"upload '%s' expects offset %" PRIu64
			" first: a chunk may end at most %u bytes past it, not at %" PRIu64,
			id, u->received, IMS_UPLOAD_WINDOW, off + len);
	for (unsigned i = 0; i < u->nahead; i++)
		if (off < u->ahead[i].off + u->ahead[i].len && u->ahead[i].off < off + len)
			return ims_error_set(-EINVAL,
					     "upload '%s': the chunk at %" PRIu64
					     " overlaps one already sent",
					     id, off);
	if (u->nahead == IMS_UPLOAD_AHEAD)
		return ims_error_set(-EAGAIN, "upload '%s' has %d chunks ahead of offset %" PRIu64,
				     id, IMS_UPLOAD_AHEAD, u->received);
	u->ahead[u->nahead].off = off;
	u->ahead[u->nahead].len = len;
	u->ahead[u->nahead].written = false;
	u->nahead++;
	return 0;
}

/* The chunk at @p off is written (@p ok) or dropped: move `received` over what is contiguous. */
static void chunk_done_locked(ims_upload *u, uint64_t off, bool ok)
{
	uint64_t before = u->received;
	for (unsigned i = 0; i < u->nahead; i++) {
		if (u->ahead[i].off != off)
			continue;
		if (ok)
			u->ahead[i].written = true;
		else
			u->ahead[i] = u->ahead[--u->nahead];
		break;
	}
	for (unsigned i = 0; i < u->nahead;) {
		if (u->ahead[i].written && u->ahead[i].off == u->received) {
			u->received += u->ahead[i].len;
			u->ahead[i] = u->ahead[--u->nahead];
			i = 0;
		} else {
			i++;
		}
	}
	if (u->received != before) {
		u->last = time(NULL);
		if (u->src)
			ims_source_growing_arrived(u->src, u->received);
	}
}

static int write_chunk(const char *path, const ProtobufCBinaryData *data, uint64_t off,
		       const char *id)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t done = 0;
	errno = 0;
	while (fd >= 0 && done < data->len) {
		ssize_t w = pwrite(fd, data->data + done, data->len - done, (off_t)(off + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		done += (size_t)w;
	}
	int r = 0;
	if (fd < 0 || done < data->len)
		r = ims_error_set(errno == ENOSPC ? -ENOSPC : -EIO, "cannot write upload '%s': %s",
				  id, ims_strerror(errno ? errno : EIO));
	if (fd >= 0)
		close(fd);
	return r;
}

/*
 * A chunk of a streamed upload put into its ring as its bytes arrive, not read into a request
 * buffer first (ims_rpc_chunk_sink): taken when the upload streams into a ring and the chunk
 * may be reserved; any other is left to h_upload_chunk, which refuses it or writes it.
 */
typedef struct {
	ims_source_growing *ring; /* held */
	char id[40];
	uint64_t off;
	char msg[IMS_ERROR_MSG_MAX]; /* a put's failure */
} chunk_sink;

static int sink_begin(void *app, const char *id, uint64_t off, size_t len, void **ctx)
{
	ims_daemon *d = APP(app);
	chunk_sink *c = calloc(1, sizeof(*c));
	if (!c || strlen(id) >= sizeof(c->id)) {
		free(c);
		return 1;
	}
	pthread_mutex_lock(&d->lock);
	ims_upload *u = find_upload_locked(d, id);
	int r = u && u->ring && u->src ? chunk_reserve_locked(u, id, off, len) : 1;
	if (r == 0) {
		c->ring = u->src;
		ims_source_growing_hold(c->ring); /* the import may end while the chunk comes */
	}
	pthread_mutex_unlock(&d->lock);
	if (r != 0) {
		free(c);
		return 1;
	}
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->off = off;
	*ctx = c;
	return 0;
}

static int sink_put(void *ctx, const uint8_t *data, size_t n, size_t pos)
{
	chunk_sink *c = ctx;
	int r = ims_source_growing_put(c->ring, data, n, c->off + pos);
	if (r < 0)
		snprintf(c->msg, sizeof(c->msg), "%s", ims_error_last());
	return r;
}

/* The chunk at @p off was written (@p r 0) or not: counted or dropped, and the answer. */
static int chunk_end(ims_daemon *d, const char *id, uint64_t off, int r, uint64_t *received)
{
	pthread_mutex_lock(&d->lock);
	/* the import may have ended meanwhile and taken the upload with it */
	ims_upload *u = find_upload_locked(d, id);
	if (u) {
		chunk_done_locked(u, off, r == 0);
		if (r < 0 && r != -ECONNRESET && u->src)
			ims_source_growing_abandon(u->src, ims_error_last());
		*received = u->received;
	} else if (r != -ECONNRESET) {
		/* its file may be gone too: that is no write error */
		r = ims_error_set(-ENOENT, "upload '%s' ended while its chunk was written", id);
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

static int chunk_answer(ims_rpc_call *call, uint64_t received, ProtobufCMessage **resp)
{
	Imgstore__V1__UploadChunkResponse *m = ALLOC(call, Imgstore__V1__UploadChunkResponse);
	if (!m)
		return -ENOMEM;
	imgstore__v1__upload_chunk_response__init(m);
	m->received_bytes = received;
	*resp = &m->base;
	return 0;
}

static int sink_end(void *app, ims_rpc_call *call, void *ctx, int r, ProtobufCMessage **resp)
{
	chunk_sink *c = ctx;
	uint64_t received = 0;
	ims_source_growing_free(c->ring);
	ims_rpc_call_set_target(call, c->id);
	if (r < 0 && r != -ECONNRESET && c->msg[0])
		ims_error_set(r, "%s", c->msg);
	else if (r < 0 && r != -ECONNRESET && !ims_error_last_code())
		ims_error_set(r, "the chunk of upload '%s' at offset %" PRIu64 " was not received",
			      c->id, c->off);
	r = chunk_end(APP(app), c->id, c->off, r, &received);
	free(c);
	if (r < 0 || !resp)
		return r;
	return chunk_answer(call, received, resp);
}

static const ims_rpc_chunk_sink upload_sink = {
	.begin = sink_begin, .put = sink_put, .end = sink_end};

/*
 * Chunks of one upload may come on several connections at once: each is reserved under the
 * lock, written outside it, and counted in `received` once all before it are written.
 */
static int h_upload_chunk(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__UploadChunkRequest *q = (const void *)req;
	char path[sizeof(((ims_upload *)0)->path)];
	uint64_t received = 0;
	int r = 0;
	ims_rpc_call_set_target(call, q->upload_id);
	pthread_mutex_lock(&d->lock);
	ims_upload *u = find_upload_locked(d, q->upload_id);
	if (!u)
		r = ims_error_set(-ENOENT,
				  "no upload '%s' (never begun, abandoned, or its import "
				  "ended)",
				  q->upload_id);
	else if (q->data.len == 0 && q->offset == u->received && !(u->claimed && !u->src))
		received = u->received; /* nothing to write */
	else if ((r = chunk_reserve_locked(u, q->upload_id, q->offset, q->data.len)) == 0)
		snprintf(path, sizeof(path), "%s", u->path);
	bool write = u && r == 0 && q->data.len;
	ims_source_growing *ring = write && u->ring ? u->src : NULL;
	if (ring)
		ims_source_growing_hold(ring); /* the import may end while the chunk is copied */
	pthread_mutex_unlock(&d->lock);
	if (write) {
		if (ring) {
			r = ims_source_growing_put(ring, q->data.data, q->data.len, q->offset);
			ims_source_growing_free(ring);
		} else {
			r = write_chunk(path, &q->data, q->offset, q->upload_id);
		}
		r = chunk_end(d, q->upload_id, q->offset, r, &received);
	}
	if (r < 0)
		return r;
	return chunk_answer(call, received, resp);
}

#define STREAM_WAIT_MS	 5000u /* a chunk of a streamed export waits this long for its bytes */
#define STREAM_ZERO_RUN	 (64u << 10) /* runs of zeros sent as a count (skip_zeros): in these */
#define STREAM_ZEROS_MAX (1u << 30)  /* and at most this much in one answer */

static bool all_zero(const uint8_t *p, size_t n)
{
	static const uint8_t zeros[4096];
	for (size_t i = 0; i < n; i += sizeof(zeros))
		if (memcmp(p + i, zeros, n - i < sizeof(zeros) ? n - i : sizeof(zeros)) != 0)
			return false;
	return true;
}

/*
 * A DownloadChunk that finds no bytes made yet waits for them, but never on one of the request
 * threads (their connections would wait behind it, a hypervisor's lease renewal among them): it
 * is called again on a thread of its own (ims_rpc_call_defer), counted against slow_calls, and
 * at most IMS_DOWNLOAD_WAITERS(slow_calls) wait at once. Past that, or with no slow call free,
 * it answers at once with no bytes and the client asks again after a pause.
 */
static bool download_wait_begin(ims_daemon *d, bool take)
{
	pthread_mutex_lock(&d->lock);
	bool ok = d->download_waits < IMS_DOWNLOAD_WAITERS(d->cfg->server.slow_calls);
	if (ok && take)
		d->download_waits++;
	else if (!ok)
		d->download_nowaits++;
	pthread_mutex_unlock(&d->lock);
	return ok;
}

static void download_nowait(ims_daemon *d)
{
	pthread_mutex_lock(&d->lock);
	d->download_nowaits++;
	pthread_mutex_unlock(&d->lock);
}

static void download_wait_end(ims_daemon *d)
{
	pthread_mutex_lock(&d->lock);
	d->download_waits--;
	pthread_mutex_unlock(&d->lock);
}

/*
 * The buffer of a streamed export's chunk, one per request thread, kept between calls: the
 * answer is packed on the thread that built it, right after the handler returns, before that
 * thread serves another call (proto/dispatch.c), so the next call may reuse it. A fresh one
 * per chunk (ims_rpc_call_alloc()) is mapped and unmapped each time under the daemon's fixed
 * mmap threshold: page faults and zeroing of every byte sent (docs/BENCHMARKS.md).
 */
static pthread_key_t chunk_buf_key;
static pthread_once_t chunk_buf_once = PTHREAD_ONCE_INIT;
static bool chunk_buf_ok;

static void chunk_buf_init(void)
{
	chunk_buf_ok = pthread_key_create(&chunk_buf_key, free) == 0;
}

/* IMS_CHUNK_MAX bytes for this thread's answer; NULL: out of memory. */
static uint8_t *chunk_buf(ims_rpc_call *call)
{
	pthread_once(&chunk_buf_once, chunk_buf_init);
	if (!chunk_buf_ok || ims_rpc_call_may_wait(call))
		return ims_rpc_call_alloc(call, IMS_CHUNK_MAX); /* a thread of its own: ends */
	uint8_t *b = pthread_getspecific(chunk_buf_key);
	if (!b && (b = malloc(IMS_CHUNK_MAX)) && pthread_setspecific(chunk_buf_key, b) != 0) {
		free(b);
		return ims_rpc_call_alloc(call, IMS_CHUNK_MAX);
	}
	return b;
}

/* A chunk of a streamed export: @returns 1 when @p q names none. */
static int download_stream(ims_daemon *d, ims_rpc_call *call,
			   const Imgstore__V1__DownloadChunkRequest *q, ProtobufCMessage **resp)
{
	ims_source_growing *g = NULL;
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < IMS_MAX_UPLOADS && !g; i++)
		if (d->streams[i].seq && strcmp(d->streams[i].op_id, q->operation_id) == 0) {
			g = d->streams[i].src;
			ims_source_growing_hold(g); /* the export may end while this reads */
		}
	pthread_mutex_unlock(&d->lock);
	if (!g)
		return 1;
	uint64_t len = q->length ? q->length : IMS_CHUNK_MAX;
	if (len > IMS_CHUNK_MAX)
		len = IMS_CHUNK_MAX;
	int64_t left = ims_rpc_call_remaining_ms(call);
	unsigned wait = left >= 0 && left < 2 * (int64_t)STREAM_WAIT_MS ? (unsigned)left / 2
									: STREAM_WAIT_MS;
	Imgstore__V1__DownloadChunkResponse *m = ALLOC(call, Imgstore__V1__DownloadChunkResponse);
	uint8_t *buf = chunk_buf(call);
	size_t got = 0;
	bool eof = false;
	int r = !m || !buf ? -ENOMEM
			   : ims_source_growing_read_some(&got, &eof, g, buf, (size_t)len,
							  q->offset, 0);
	if (r == 0 && !got && !eof && wait) { /* nothing made yet */
		if (!ims_rpc_call_may_wait(call)) {
			if (download_wait_begin(d, false)) {
				if (ims_rpc_call_defer(call)) {
					ims_source_growing_free(g);
					return IMS_RPC_DEFERRED; /* again, on a thread of its own */
				}
				download_nowait(d); /* no slow call free */
			}
		} else if (download_wait_begin(d, true)) {
			r = ims_source_growing_read_some(&got, &eof, g, buf, (size_t)len, q->offset,
							 wait);
			download_wait_end(d);
		}
	}
	if (r == -ERANGE && q->within_length && m && q->offset > ims_source_growing_size(g)) {
		/* a client fetching ahead asked past the end, which it learns so */
		imgstore__v1__download_chunk_response__init(m);
		m->eof = true;
		m->total_bytes = ims_source_growing_size(g);
		m->in_any_order = true;
		ims_source_growing_told_end(g);
		ims_source_growing_free(g);
		*resp = &m->base;
		return 0;
	}
	if (r < 0)
		ims_source_growing_free(g);
	if (r == -ECANCELED) {
		char why[300];
		snprintf(why, sizeof(why), "%s", ims_error_last());
		return ims_error_set(-ECANCELED, "export %s failed: %s", q->operation_id, why);
	}
	if (r < 0)
		return r;
	imgstore__v1__download_chunk_response__init(m);
	size_t keep = got;
	if (q->skip_zeros && got) { /* zeros as a count: no TLS, no copy for them */
		size_t z = 0;
		while (z < got) {
			size_t n = got - z < STREAM_ZERO_RUN ? got - z : STREAM_ZERO_RUN;
			if ((n < STREAM_ZERO_RUN && !eof) || !all_zero(buf + z, n))
				break;
			z += n;
		}
		/* a chunk all zeros: the run goes on through what the ring holds already (within
		 * the length asked, for a client with several chunks in flight) */
		uint64_t span = q->within_length ? len : got + STREAM_ZEROS_MAX;
		for (uint64_t at = q->offset + got; z == got && !eof && at - q->offset < span;) {
			size_t more = 0, zz = 0;
			size_t ask = span - (at - q->offset) < len
					     ? (size_t)(span - (at - q->offset))
					     : (size_t)len;
			if (ims_source_growing_read_some(&more, &eof, g, buf, ask, at, 0) < 0 ||
			    !more)
				break;
			while (zz < more) {
				size_t n =
					more - zz < STREAM_ZERO_RUN ? more - zz : STREAM_ZERO_RUN;
				if ((n < STREAM_ZERO_RUN && !eof) || !all_zero(buf + zz, n))
					break;
				zz += n;
			}
			m->zero_bytes += zz;
			at += zz;
			if (zz < more) {
				eof = false;
				break;
			}
		}
		if (z) {
			m->zero_bytes += z;
			keep = 0;
			eof = eof && z == got;
		} else { /* the data up to the next run of zeros */
			for (keep = STREAM_ZERO_RUN; keep + STREAM_ZERO_RUN <= got;
			     keep += STREAM_ZERO_RUN)
				if (all_zero(buf + keep, STREAM_ZERO_RUN))
					break;
			if (keep + STREAM_ZERO_RUN > got)
				keep = got; /* no run of zeros in it: all of it */
			else
				eof = false;
		}
	}
	m->data.data = buf;
	m->data.len = keep;
	m->eof = eof;
	m->total_bytes = eof ? q->offset + keep + m->zero_bytes : 0;
	m->in_any_order = true;
	/* what this answer holds, not what was looked at: the export ends when every byte was
	 * sent, in whatever order; an answer with nothing moves nothing (its offset may lie ahead
	 * of what was made) */
	if (keep || m->zero_bytes)
		ims_source_growing_sent(g, q->offset, q->offset + keep + m->zero_bytes);
	if (eof) /* the export may end now: the client knows where */
		ims_source_growing_told_end(g);
	ims_source_growing_free(g);
	*resp = &m->base;
	return 0;
}

static int h_download_chunk(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			    ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__DownloadChunkRequest *q = (const void *)req;
	ims_op_record rec;
	struct stat st;
	int r, fd;
	if (q->operation_id && q->operation_id[0] && (r = download_stream(d, call, q, resp)) != 1)
		return r;
	if ((r = ims_ops_get(&rec, d->ops, q->operation_id)) < 0)
		return r;
	if (strcmp(rec.kind, "export") == 0 && !rec.result_path[0] && rec.state == IMS_OP_FAILED)
		return ims_error_set(-ECANCELED, "export %s failed: %s", rec.id, rec.error);
	if (strcmp(rec.kind, "export") == 0 && !rec.result_path[0] && rec.state != IMS_OP_RUNNING &&
	    rec.state != IMS_OP_QUEUED)
		return ims_error_set(-ENOENT,
				     "export %s has ended (%s) with no file in the spool: nothing "
				     "is left to download",
				     rec.id, ims_op_state_name(rec.state));
	if (strcmp(rec.kind, "export") != 0 || !rec.result_path[0])
		return ims_error_set(-EINVAL, "operation %s is no export to the spool", rec.id);
	if (rec.state != IMS_OP_SUCCEEDED)
		return ims_error_set(-EBUSY, "export %s is %s, not succeeded", rec.id,
				     ims_op_state_name(rec.state));
	fd = open(rec.result_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = ims_error_set(errno == ENOENT ? -ENOENT : -EIO,
				  "the export of %s is no longer in the spool", rec.id);
		if (fd >= 0)
			close(fd);
		return r;
	}
	uint64_t size = (uint64_t)st.st_size, len = q->length ? q->length : IMS_CHUNK_MAX;
	if (len > IMS_CHUNK_MAX)
		len = IMS_CHUNK_MAX;
	if (q->offset > size) {
		close(fd);
		return ims_error_set(-ERANGE, "offset %" PRIu64 " is past the end (%" PRIu64 ")",
				     q->offset, size);
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

static const ims_rpc_method methods[] = {
	M("ImageService", "CreateImage", create_image_request, image, ADMIN, true, h_create_image),
	M("ImageService", "GetImage", get_image_request, image, READER, false, h_get_image),
	M("ImageService", "ListImages", list_images_request, list_images_response, READER, false,
	  h_list_images),
	M("ImageService", "ResizeImage", resize_image_request, image, ADMIN, true, h_resize_image),
	M("ImageService", "RenameImage", rename_image_request, image, ADMIN, true, h_rename_image),
	M("ImageService", "DeleteImage", delete_image_request, delete_image_response, ADMIN, true,
	  h_delete_image),
	M("ImageService", "SetImageTag", set_image_tag_request, image, ADMIN, true, h_set_tag),
	M("ImageService", "RemoveImageTag", remove_image_tag_request, image, ADMIN, true,
	  h_remove_tag),
	M("ImageService", "CloneImage", clone_image_request, image, ADMIN, true, h_clone_image),
	M("ImageService", "FlattenImage", flatten_image_request, operation, ADMIN, true,
	  h_flatten_image),
	M("ImageService", "ImportImage", import_image_request, operation, ADMIN, true,
	  h_import_image),
	M("ImageService", "ExportImage", export_image_request, operation, ADMIN, true,
	  h_export_image),
	M("ImageService", "BeginUpload", begin_upload_request, begin_upload_response, ADMIN, true,
	  h_begin_upload),
	M("ImageService", "UploadChunk", upload_chunk_request, upload_chunk_response, ADMIN, false,
	  h_upload_chunk, .sink = &upload_sink),
	M("ImageService", "RewrapKeys", rewrap_keys_request, rewrap_keys_response, ADMIN, true,
	  h_rewrap_keys),
	M("ImageService", "DownloadChunk", download_chunk_request, download_chunk_response, ADMIN,
	  false, h_download_chunk),
};

IMS_DAEMON_SERVICE(ims_image_service, methods);
