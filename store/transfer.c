#include "store/transfer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rbd/librbd.h>

#include "common/error.h"
#include "common/opts.h"
#include "common/extents.h"
#include "common/log.h"
#include "common/spec.h"
#include "store/crypt.h"
#include "store/store_internal.h"

#define BLOCK	   IMS_CONTENT_BLOCK
#define ZERO_GRAIN (64u << 10) /* runs of zeros this long and aligned are not written */

static bool is_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/*
 * The next run of data in @p buf from @p *pos on: grains of ZERO_GRAIN bytes that are not all
 * zeros, from @p *start to the new @p *pos. The zero grains skipped before it are added to
 * @p zeros (may be NULL). Returns false when only zeros are left.
 */
static bool next_data_run(const uint8_t *buf, size_t len, size_t *pos, size_t *start,
			  uint64_t *zeros)
{
	while (*pos < len) {
		size_t n = len - *pos < ZERO_GRAIN ? len - *pos : ZERO_GRAIN;
		if (!is_zero(buf + *pos, n))
			break;
		if (zeros)
			*zeros += n;
		*pos += n;
	}
	if (*pos >= len)
		return false;
	*start = *pos;
	while (*pos < len) {
		size_t n = len - *pos < ZERO_GRAIN ? len - *pos : ZERO_GRAIN;
		if (is_zero(buf + *pos, n))
			break;
		*pos += n;
	}
	return true;
}

static int check_opts(const ims_transfer_opts *o)
{
	return IMS_OPTS_CHECK(o, IMS_TRANSFER_OPTS_VERSION, "transfer");
}

static unsigned opt_concurrency(const ims_transfer_opts *o)
{
	unsigned c = o->concurrency ? o->concurrency : 8;
	return c > 64 ? 64 : c;
}

static size_t opt_buffers(const ims_transfer_opts *o, unsigned concurrency)
{
	uint64_t bytes = o->inflight_bytes ? o->inflight_bytes : (64u << 20);
	size_t n = (size_t)(bytes / BLOCK);
	if (n < 2)
		n = 2;
	if (n > 1024)
		n = 1024;
	(void)concurrency;
	return n;
}

/* ------------------------------------------------------------------------------------------ */
/* import */

typedef struct {
	uint64_t index;
	uint64_t off;
	size_t len;
	uint8_t *buf;
} job;

typedef struct {
	uint8_t hash[IMS_SHA256_LEN];
	bool ready;
} slot;

typedef struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	rbd_image_t image;
	const char *target; /* for messages */

	uint8_t **free_bufs;
	size_t nfree;
	job *queue; /* ring of at most nbufs jobs */
	size_t qhead, qlen, qcap;
	bool reading_done;

	slot *ring; /* block hashes waiting to be fed, in order, into the content hash */
	size_t nring;
	uint64_t feed_next;
	uint64_t fed_bytes;
	ims_sha256 *content;

	uint64_t bytes_data, bytes_zero;
	/* Into an encrypted image, through librbd's LUKS of Ceph 16: a hole before data in an
	 * object reads as decrypted zeros, that is noise. So a block with data is written whole
	 * (blocks and objects both 4 MiB: no hole before data), and with objects larger than a
	 * block every block is written (zeros too). */
	enum { WRITE_RUNS, WRITE_BLOCKS, WRITE_ALL } write_mode;
	int err;
	char err_msg[IMS_ERROR_MSG_MAX];
} pipeline;

/* Record the first error with its message; the thread that hit it may not be the caller's. */
static void fail_locked(pipeline *p, int r)
{
	if (p->err)
		return;
	p->err = r;
	snprintf(p->err_msg, sizeof(p->err_msg), "%s", ims_error_last());
	pthread_cond_broadcast(&p->cond);
}

static void complete_block_locked(pipeline *p, uint64_t index, const uint8_t hash[IMS_SHA256_LEN],
				  size_t len)
{
	slot *s = &p->ring[index % p->nring];
	memcpy(s->hash, hash, IMS_SHA256_LEN);
	s->ready = true;
	(void)len;
	while (p->ring[p->feed_next % p->nring].ready) {
		slot *f = &p->ring[p->feed_next % p->nring];
		ims_sha256_update(p->content, f->hash, IMS_SHA256_LEN);
		f->ready = false;
		p->feed_next++;
		p->fed_bytes += BLOCK;
	}
	pthread_cond_broadcast(&p->cond);
}

/*
 * A block's runs are written into a plain image through rbd_aio_write(): librbd then takes
 * the buffer without a copy of its own (store/site.c sets rbd_disable_zero_copy_writes =
 * false; the synchronous rbd_write() copies every block into fresh memory, which doubled the
 * memory of the blocks in flight and cost the import's threads a tenth of their CPU in page
 * faults). All the runs of a block are sent at once and the block's SHA-256 computed while
 * they are written (librbd only reads the buffer); then they are waited for. Into an
 * encrypted image, rbd_write(): librbd encrypts what it is given, and the buffer is hashed
 * after.
 */
#define RUNS_IN_FLIGHT 32 /* a block's writes sent before the first is waited for */

typedef struct {
	rbd_completion_t c[RUNS_IN_FLIGHT];
	uint64_t off[RUNS_IN_FLIGHT];
	unsigned n;
} run_writes;

/* Wait for every write of @p w; @returns 0 or the first failure (its message set when
 * @p report: an earlier error's stays). */
static int runs_wait(pipeline *p, run_writes *w, bool report)
{
	int r = 0;
	for (unsigned i = 0; i < w->n; i++) {
		rbd_aio_wait_for_complete(w->c[i]);
		ssize_t v = rbd_aio_get_return_value(w->c[i]);
		rbd_aio_release(w->c[i]);
		if (v < 0 && r == 0 && !report)
			r = (int)v;
		else if (v < 0 && r == 0)
			r = ims_error_set((int)v, "write to '%s' at offset %" PRIu64 " failed: %s",
					  p->target, w->off[i], ims_strerror((int)v));
	}
	w->n = 0;
	return r;
}

static int run_send(pipeline *p, run_writes *w, uint64_t off, size_t len, const uint8_t *buf)
{
	int r = 0;
	if (w->n == RUNS_IN_FLIGHT && (r = runs_wait(p, w, true)) < 0)
		return r;
	rbd_completion_t c;
	if ((r = rbd_aio_create_completion(NULL, NULL, &c)) == 0 &&
	    (r = rbd_aio_write(p->image, off, len, (const char *)buf, c)) < 0)
		rbd_aio_release(c);
	if (r < 0)
		return ims_error_set(r, "write to '%s' at offset %" PRIu64 " failed: %s", p->target,
				     off, ims_strerror(r));
	w->c[w->n] = c;
	w->off[w->n++] = off;
	return 0;
}

/* The digest of a block: of its bytes when some were written, else of zeros. */
static int block_hash(uint8_t hash[IMS_SHA256_LEN], const job *j, uint64_t written)
{
	if (written) {
		ims_sha256_buf(hash, j->buf, j->len);
		return 0;
	}
	return ims_sha256_zeros(hash, j->len);
}

/* Write the non-zero runs of one block and hash it; returns 0 or a negative errno (message
 * set). */
static int write_block(pipeline *p, const job *j, uint64_t *written, uint8_t hash[IMS_SHA256_LEN])
{
	size_t pos = 0, start = 0;
	*written = 0;
	if (p->write_mode != WRITE_RUNS) {
		if (p->write_mode == WRITE_ALL ||
		    next_data_run(j->buf, j->len, &pos, &start, NULL)) {
			ssize_t w = rbd_write(p->image, j->off, j->len, (const char *)j->buf);
			if (w < 0)
				return ims_error_set(
					(int)w, "write to '%s' at offset %" PRIu64 " failed: %s",
					p->target, j->off, ims_strerror((int)w));
			*written = j->len;
		}
		return block_hash(hash, j, *written);
	}
	run_writes w = {.n = 0};
	int r = 0;
	while (r == 0 && next_data_run(j->buf, j->len, &pos, &start, NULL)) {
		r = run_send(p, &w, j->off + start, pos - start, j->buf + start);
		if (r == 0)
			*written += pos - start;
	}
	if (r == 0)
		r = block_hash(hash, j, *written); /* while the writes run */
	int rw = runs_wait(p, &w, r == 0);
	return r < 0 ? r : rw;
}

static void *import_worker(void *arg)
{
	pipeline *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->qlen == 0 && !p->reading_done && !p->err)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->qlen == 0 || p->err)
			break;
		job j = p->queue[p->qhead];
		p->qhead = (p->qhead + 1) % p->qcap;
		p->qlen--;
		pthread_mutex_unlock(&p->lock);

		uint8_t hash[IMS_SHA256_LEN];
		uint64_t written = 0;
		int r = write_block(p, &j, &written, hash);

		pthread_mutex_lock(&p->lock);
		p->free_bufs[p->nfree++] = j.buf;
		if (r < 0) {
			fail_locked(p, r);
			break;
		}
		p->bytes_data += written;
		p->bytes_zero += j.len - written;
		complete_block_locked(p, j.index, hash, j.len);
	}
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Whether [off, off+len) is all zero extents, walking the map with a one-extent cache. */
static int block_is_zero(ims_format_reader *rd, ims_extent *cache, uint64_t off, size_t len,
			 bool *zero)
{
	uint64_t pos = off, end = off + len;
	while (pos < end) {
		if (!(cache->length && pos >= cache->offset &&
		      pos < cache->offset + cache->length)) {
			int r = ims_format_map(cache, rd, pos);
			if (r < 0)
				return r;
			if (cache->length == 0 || cache->offset > pos)
				return ims_error_set(
					-EIO, "the image map made no progress at offset %" PRIu64,
					pos);
		}
		if (cache->type == IMS_EXTENT_DATA) {
			*zero = false;
			return 0;
		}
		pos = cache->offset + cache->length;
	}
	*zero = true;
	return 0;
}

/* Run the copy from the reader into the open image. Returns 0 or the first error. */
static int run_import(pipeline *p, ims_format_reader *rd, uint64_t vsize,
		      const ims_transfer_opts *o)
{
	unsigned nworkers = opt_concurrency(o);
	size_t nbufs = opt_buffers(o, nworkers);
	pthread_t *threads = NULL;
	unsigned started = 0;
	ims_extent cache = {0};
	int r = 0;

	p->qcap = nbufs;
	p->nring = 2 * nbufs + 64;
	p->free_bufs = calloc(nbufs, sizeof(*p->free_bufs));
	p->queue = calloc(nbufs, sizeof(*p->queue));
	p->ring = calloc(p->nring, sizeof(*p->ring));
	threads = calloc(nworkers, sizeof(*threads));
	if (!p->free_bufs || !p->queue || !p->ring || !threads) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nbufs; i++) {
		if (posix_memalign((void **)&p->free_bufs[i], 4096, BLOCK) != 0) {
			r = -ENOMEM;
			goto out;
		}
		p->nfree++;
	}
	for (; started < nworkers; started++) {
		if (pthread_create(&threads[started], NULL, import_worker, p) != 0) {
			r = ims_error_set(-EAGAIN, "cannot start import threads");
			goto out;
		}
	}

	uint64_t nblocks = (vsize + BLOCK - 1) / BLOCK;
	for (uint64_t idx = 0; idx < nblocks; idx++) {
		uint64_t off = idx * BLOCK;
		size_t len = (size_t)(vsize - off < BLOCK ? vsize - off : BLOCK);
		bool zero = false;

		pthread_mutex_lock(&p->lock);
		while (!p->err && idx >= p->feed_next + p->nring)
			pthread_cond_wait(&p->cond, &p->lock);
		uint64_t fed = p->fed_bytes;
		int err = p->err;
		pthread_mutex_unlock(&p->lock);
		if (err)
			break;
		if (o->progress &&
		    o->progress(o->progress_ctx, fed < vsize ? fed : vsize, vsize) != 0) {
			r = ims_error_set(-ECANCELED, "import into '%s' cancelled", p->target);
			break;
		}

		if ((r = block_is_zero(rd, &cache, off, len, &zero)) < 0)
			break;
		if (zero && p->write_mode != WRITE_ALL) {
			uint8_t hash[IMS_SHA256_LEN];
			if ((r = ims_sha256_zeros(hash, len)) < 0)
				break;
			pthread_mutex_lock(&p->lock);
			p->bytes_zero += len;
			complete_block_locked(p, idx, hash, len);
			pthread_mutex_unlock(&p->lock);
			continue;
		}

		pthread_mutex_lock(&p->lock);
		while (!p->err && p->nfree == 0)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->err) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		uint8_t *buf = p->free_bufs[--p->nfree];
		pthread_mutex_unlock(&p->lock);

		r = ims_format_read(rd, off, buf, len);
		pthread_mutex_lock(&p->lock);
		if (r < 0) {
			p->free_bufs[p->nfree++] = buf;
			pthread_mutex_unlock(&p->lock);
			break;
		}
		p->queue[(p->qhead + p->qlen) % p->qcap] = (job){idx, off, len, buf};
		p->qlen++;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}

out:
	pthread_mutex_lock(&p->lock);
	if (r < 0)
		fail_locked(p, r);
	p->reading_done = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	/* workers stop at the first error: their unfinished jobs' buffers are freed here */
	for (size_t i = 0; i < p->qlen; i++)
		p->free_bufs[p->nfree++] = p->queue[(p->qhead + i) % p->qcap].buf;
	for (size_t i = 0; p->free_bufs && i < p->nfree; i++)
		free(p->free_bufs[i]);
	free(p->free_bufs);
	free(p->queue);
	free(p->ring);
	free(threads);
	if (p->err) {
		ims_error_set(p->err, "%s", p->err_msg);
		return p->err;
	}
	if (o->progress)
		o->progress(o->progress_ctx, vsize, vsize);
	return 0;
}

/* One import: into a temporary image, renamed to its name when complete. */
typedef struct {
	ims_site *site;
	const char *pool, *name;
	const ims_transfer_opts *o;
	char tmp[64], target[2 * IMS_NAME_MAX + 2];
	rados_ioctx_t io;
	rbd_image_t image;
	ims_format_reader *rd;
	ims_store__tmp_owner owner;
	bool created; /* the temporary image exists */
	uint64_t vsize;
} importer;

/* Refuse early what cannot succeed: a taken name, a bad file. */
static int import_open_source(importer *im, const ims_source *src)
{
	const ims_transfer_opts *o = im->o;
	int r;
	if ((r = ims_site_ioctx(&im->io, im->site, im->pool)) < 0)
		return r;
	if (rbd_open_read_only(im->io, im->name, &im->image, NULL) == 0) {
		rbd_close(im->image);
		im->image = NULL;
		return ims_error_set(-EEXIST, "image '%s' already exists on site '%s'", im->target,
				     ims_site_name(im->site));
	}
	ims_format_secret secret = {o->passphrase, o->passphrase_len, 0};
	r = o->raw_as_declared && o->format == IMS_FORMAT_RAW
		    ? ims_format_open_raw(&im->rd, src)
		    : ims_format_open_secret(&im->rd, src, o->format,
					     o->passphrase ? &secret : NULL);
	if (r < 0)
		return r;
	im->vsize = ims_format_virtual_size(im->rd);
	if (im->vsize == 0)
		return ims_error_set(-EINVAL, "'%s' holds an empty disk: nothing to import",
				     o->source_name ? o->source_name : "source");
	return 0;
}

/* LUKS2-format the open temporary image, then open it again through the encryption: the
 * import writes plaintext, the cluster keeps ciphertext. */
static int import_encrypt_tmp(importer *im)
{
	const ims_crypt_kek *kek = ims_site_kek(im->site);
	int r = ims_crypt_format(im->image, kek, im->target);
	if (r < 0)
		return r;
	rbd_close(im->image);
	im->image = NULL;
	if ((r = rbd_open(im->io, im->tmp, &im->image, NULL)) < 0)
		return ims_error_set(r, "cannot open the temporary image for '%s': %s", im->target,
				     ims_strerror(r));
	return ims_crypt_load(NULL, im->image, kek, im->target);
}

static int import_create_tmp(importer *im)
{
	const ims_transfer_opts *o = im->o;
	rbd_image_options_t copts = NULL;
	char rand[17];
	int r;
	if ((r = ims_random_hex(rand, sizeof(rand))) < 0)
		return ims_error_set(r, "no randomness for a temporary image name");
	snprintf(im->tmp, sizeof(im->tmp), IMS_TMP_IMAGE_PREFIX "%s", rand);
	/* owned before it exists: no cleanup may take it for an abandoned one at any moment */
	if ((r = ims_store__tmp_own(&im->owner, im->io, im->tmp, im->target)) < 0)
		return r;
	rbd_image_options_create(&copts);
	uint64_t features = o->create.features ? o->create.features : IMS_IMAGE_DEFAULT_FEATURES;
	rbd_image_options_set_uint64(copts, RBD_IMAGE_OPTION_FEATURES, features);
	if (o->create.order)
		rbd_image_options_set_uint64(copts, RBD_IMAGE_OPTION_ORDER, o->create.order);
	if (o->create.data_pool)
		rbd_image_options_set_string(copts, RBD_IMAGE_OPTION_DATA_POOL,
					     o->create.data_pool);
	bool encrypt = o->create.encryption && o->create.encryption[0];
	r = rbd_create4(im->io, im->tmp, im->vsize + (encrypt ? IMS_CRYPT_LUKS2_HEADER : 0), copts);
	if (copts)
		rbd_image_options_destroy(copts);
	if (r < 0)
		return ims_error_set(r, "cannot create the temporary image for '%s': %s",
				     im->target, ims_strerror(r));
	im->created = true;
	if ((r = rbd_open(im->io, im->tmp, &im->image, NULL)) < 0)
		return ims_error_set(r, "cannot open the temporary image for '%s': %s", im->target,
				     ims_strerror(r));
	if (encrypt && (r = import_encrypt_tmp(im)) < 0)
		return r;
	if (o->wrapped_key && o->wrapped_key[0] &&
	    (r = ims_crypt_key_set(im->image, o->wrapped_key, im->target)) < 0)
		return r;
	/* Who this temporary is for, for an operator who finds it after a crash. */
	rbd_metadata_set(im->image, "imgstore.import.target", im->target);
	return 0;
}

/* The copy is complete: flush it, give it its name, record it in the catalog. */
static int import_publish(importer *im, const pipeline *p, const uint8_t digest[IMS_SHA256_LEN],
			  ims_transfer_result *out)
{
	rbd_metadata_remove(im->image, "imgstore.import.target");
	int r = rbd_close(im->image);
	im->image = NULL;
	if (r < 0)
		return ims_error_set(r, "cannot flush '%s': %s", im->target, ims_strerror(r));
	r = rbd_rename(im->io, im->tmp, im->name);
	if (r == -EEXIST)
		return ims_error_set(r,
				     "image '%s' was created by someone else during the import; "
				     "the import is dropped",
				     im->target);
	if (r < 0)
		return ims_error_set(r, "cannot rename the import into '%s': %s", im->target,
				     ims_strerror(r));
	im->created = false;

	ims_transfer_result res = {.format = ims_format_kind_of(im->rd),
				   .virtual_size = im->vsize,
				   .bytes_data = p->bytes_data,
				   .bytes_zero = p->bytes_zero};
	ims_sha256_hex(res.content_sha256, digest);
	r = ims_store__catalog_add(im->io, im->name, im->vsize, ims_format_name(res.format), NULL,
				   res.content_sha256);
	if (r < 0) {
		/* no image without its record */
		rbd_remove(im->io, im->name);
		return r;
	}
	if (out)
		*out = res;
	return 0;
}

static void import_close(importer *im)
{
	if (im->image)
		rbd_close(im->image);
	if (im->created) {
		int rr = rbd_remove(im->io, im->tmp);
		if (rr < 0)
			ims_log_warning(
				"cannot remove the temporary image '%s/%s' of a failed import: %s; "
				"the next cleanup will",
				im->pool, im->tmp, ims_strerror(rr));
	}
	ims_store__tmp_disown(&im->owner);
	if (im->io)
		ims_site_ioctx_close(im->io);
	ims_format_close(im->rd);
}

int ims_image_import(ims_transfer_result *out, ims_site *site, const char *pool, const char *name,
		     const ims_source *src, const ims_transfer_opts *o)
{
	importer im = {.site = site, .pool = pool, .name = name, .o = o, .owner = {.oid = ""}};
	pipeline p;
	uint8_t digest[IMS_SHA256_LEN];
	int r;

	memset(&p, 0, sizeof(p));
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.cond, NULL);
	if ((r = check_opts(o)) < 0 || (r = ims_store__check_names(pool, name, NULL)) < 0)
		goto out;
	snprintf(im.target, sizeof(im.target), "%s/%s", pool, name);
	p.target = im.target;
	if ((r = import_open_source(&im, src)) < 0 || (r = import_create_tmp(&im)) < 0)
		goto out;
	p.image = im.image;
	if (o->create.encryption && o->create.encryption[0])
		p.write_mode = o->create.order > 22 ? WRITE_ALL : WRITE_BLOCKS;
	if ((r = ims_sha256_new(&p.content)) < 0)
		goto out;
	ims_log_debug("importing %s (%s, %" PRIu64 " bytes) into '%s' via '%s'",
		      o->source_name ? o->source_name : "source",
		      ims_format_name(ims_format_kind_of(im.rd)), im.vsize, im.target, im.tmp);
	if ((r = run_import(&p, im.rd, im.vsize, o)) < 0)
		goto out;
	ims_sha256_final(digest, p.content);
	r = import_publish(&im, &p, digest, out);
out:
	import_close(&im);
	ims_sha256_free(p.content);
	pthread_mutex_destroy(&p.lock);
	pthread_cond_destroy(&p.cond);
	return r;
}

int ims_image_import_file(ims_transfer_result *out, ims_site *site, const char *pool,
			  const char *name, const char *path, const ims_transfer_opts *o)
{
	struct stat st;
	ims_source src;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | (o && o->no_follow ? O_NOFOLLOW : 0));
	if (fd < 0 && errno == ELOOP && o && o->no_follow)
		return ims_error_set(
			-ELOOP,
			"'%s' became a symbolic link after its path was checked; nothing imported",
			path);
	if (fd < 0)
		return ims_error_set(-errno, "cannot open '%s': %s", path, ims_strerror(errno));
	if (fstat(fd, &st) < 0) {
		r = ims_error_set(-errno, "cannot stat '%s': %s", path, ims_strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		r = ims_error_set(-EINVAL, "'%s' is not a regular file or block device", path);
		goto out;
	}
	uint64_t size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);
		size = end > 0 ? (uint64_t)end : 0;
	}
	ims_source_fd(&src, &fd, size);
	ims_transfer_opts local = *o;
	if (!local.source_name)
		local.source_name = path;
	r = ims_image_import(out, site, pool, name, &src, &local);
out:
	close(fd);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* export */

typedef struct {
	rbd_completion_t c;
	uint8_t *buf;
	uint64_t off;
	size_t len;
	bool busy;
} read_slot;

typedef struct {
	int fd;
	ims_format_kind format;
	ims_qcow2_writer *qw;
	ims_vmdk_writer *vw;
	const char *path;
	uint64_t bytes_data, bytes_zero;
	ims_source_growing *stream; /* an outbound stream instead of the file, NULL */
	uint64_t spos;		    /* the stream: [0, spos) was put */
} sink;

#define STREAM_PUT (1u << 20) /* a put into the stream's ring: well below its size */

/* Put @p len bytes at @p off into the stream, zeros first from where it ended. */
static int stream_write(void *ctx, const void *buf, size_t len, uint64_t off)
{
	static const uint8_t zeros[64 << 10];
	sink *s = ctx;
	int r;

	if (off < s->spos)
		return ims_error_set(-EINVAL, "the stream went back from %" PRIu64 " to %" PRIu64,
				     s->spos, off);
	while (s->spos < off) {
		size_t n = off - s->spos < sizeof(zeros) ? (size_t)(off - s->spos) : sizeof(zeros);
		if ((r = ims_source_growing_put(s->stream, zeros, n, s->spos)) < 0)
			return r;
		s->spos += n;
		ims_source_growing_arrived(s->stream, s->spos);
	}
	for (const uint8_t *p = buf; len;) {
		size_t n = len < STREAM_PUT ? len : STREAM_PUT;
		if ((r = ims_source_growing_put(s->stream, p, n, s->spos)) < 0)
			return r;
		s->spos += n;
		ims_source_growing_arrived(s->stream, s->spos);
		p += n;
		len -= n;
	}
	return 0;
}

static int sink_write(sink *s, uint64_t off, const uint8_t *buf, size_t len)
{
	if (s->stream && s->format == IMS_FORMAT_RAW) { /* every byte: the client gets them all */
		s->bytes_data += len;
		return stream_write(s, buf, len, off);
	}
	if (s->format == IMS_FORMAT_QCOW2) {
		s->bytes_data += len;
		return ims_qcow2_writer_write(s->qw, off, buf, len);
	}
	if (s->format == IMS_FORMAT_VMDK) {
		s->bytes_data += len;
		return ims_vmdk_writer_write(s->vw, off, buf, len);
	}
	size_t pos = 0, start = 0;
	while (next_data_run(buf, len, &pos, &start, &s->bytes_zero)) {
		for (size_t done = start; done < pos;) {
			ssize_t w = pwrite(s->fd, buf + done, pos - done, (off_t)(off + done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return ims_error_set(w < 0 ? -errno : -EIO, "cannot write '%s': %s",
						     s->path, ims_strerror(w < 0 ? errno : EIO));
			done += (size_t)w;
		}
		s->bytes_data += pos - start;
	}
	return 0;
}

static int finish_slot(read_slot *sl, sink *s, const char *what)
{
	rbd_aio_wait_for_complete(sl->c);
	ssize_t r = rbd_aio_get_return_value(sl->c);
	rbd_aio_release(sl->c);
	sl->busy = false;
	if (r < 0)
		return ims_error_set((int)r, "cannot read '%s' at offset %" PRIu64 ": %s", what,
				     sl->off, ims_strerror((int)r));
	if ((size_t)r < sl->len) /* a short read past the end of an object is zeros */
		memset(sl->buf + r, 0, sl->len - (size_t)r);
	return sink_write(s, sl->off, sl->buf, sl->len);
}

/* Create the partial file, ready for @p size bytes of its format; a stream's qcow2 planned from
 * the extents @p ext (its tables come before the data). */
static int export_open_sink(sink *s, const char *partial, uint64_t size, const ims_extents *ext)
{
	int r;

	if (s->stream && s->format == IMS_FORMAT_QCOW2) {
		if ((r = ims_qcow2_writer_open_fn(&s->qw, stream_write, s, size)) < 0)
			return r;
		for (size_t e = 0; e < ext->n; e++)
			if ((r = ims_qcow2_writer_plan(s->qw, ext->v[e].off, ext->v[e].len)) < 0)
				return r;
		return 0;
	}
	if (s->stream)
		return s->format == IMS_FORMAT_VMDK
			       ? ims_vmdk_writer_open_fn(&s->vw, stream_write, s, size, s->path)
			       : 0;
	s->fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (s->fd < 0)
		return ims_error_set(-errno, "cannot create '%s': %s", partial,
				     ims_strerror(errno));
	if (s->format == IMS_FORMAT_QCOW2)
		return ims_qcow2_writer_open(&s->qw, s->fd, size);
	if (s->format == IMS_FORMAT_VMDK)
		return ims_vmdk_writer_open(&s->vw, s->fd, size, s->path);
	if (ftruncate(s->fd, (off_t)size) < 0)
		return ims_error_set(-errno, "cannot size '%s': %s", partial, ims_strerror(errno));
	return 0;
}

static void slots_free(read_slot *slots, size_t nslots)
{
	for (size_t i = 0; slots && i < nslots; i++)
		free(slots[i].buf);
	free(slots);
}

/*
 * Copy the extents into the sink through a ring of asynchronous reads, consumed in order
 * (qcow2 is written front to back). @p total is the bytes of the extents.
 */
static int export_copy(rbd_image_t image, const ims_extents *ext, uint64_t total, sink *s,
		       const char *what, const ims_transfer_opts *o)
{
	size_t nslots = opt_buffers(o, opt_concurrency(o)), head = 0;
	uint64_t done = 0;
	int r = 0;
	if (nslots > 2 * opt_concurrency(o))
		nslots = 2 * opt_concurrency(o);
	read_slot *slots = calloc(nslots, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < nslots; i++) {
		if (posix_memalign((void **)&slots[i].buf, 4096, BLOCK) != 0) {
			slots_free(slots, nslots);
			return -ENOMEM;
		}
	}
	for (size_t e = 0; e < ext->n && r == 0; e++) {
		uint64_t end = ext->v[e].off + ext->v[e].len;
		for (uint64_t pos = ext->v[e].off; pos < end;) {
			uint64_t next = (pos / BLOCK + 1) * BLOCK;
			size_t len = (size_t)((next < end ? next : end) - pos);
			read_slot *sl = &slots[head];
			if (sl->busy) {
				if ((r = finish_slot(sl, s, what)) < 0)
					break;
				done += sl->len;
				if (o->progress && o->progress(o->progress_ctx, done, total) != 0) {
					r = ims_error_set(-ECANCELED, "export of '%s' cancelled",
							  what);
					break;
				}
			}
			sl->off = pos;
			sl->len = len;
			if ((r = rbd_aio_create_completion(NULL, NULL, &sl->c)) < 0)
				break;
			r = rbd_aio_read(image, pos, len, (char *)sl->buf, sl->c);
			if (r < 0) {
				rbd_aio_release(sl->c);
				ims_error_set(r, "cannot read '%s': %s", what, ims_strerror(r));
				break;
			}
			sl->busy = true;
			head = (head + 1) % nslots;
			pos += len;
		}
	}
	/* drain in order, even after an error: the buffers belong to librbd until then */
	for (size_t k = 0; k < nslots; k++) {
		read_slot *sl = &slots[(head + k) % nslots];
		if (!sl->busy)
			continue;
		if (r < 0) {
			rbd_aio_wait_for_complete(sl->c);
			rbd_aio_release(sl->c);
			sl->busy = false;
			continue;
		}
		if ((r = finish_slot(sl, s, what)) == 0)
			done += sl->len;
	}
	slots_free(slots, nslots);
	return r;
}

/* Sync and close the partial file, then give it its name. */
static int export_finish(sink *s, const char *partial, const char *path, uint64_t size)
{
	int r;
	if (s->qw && (r = ims_qcow2_writer_finish(s->qw)) < 0)
		return r;
	if (s->vw && (r = ims_vmdk_writer_finish(s->vw)) < 0)
		return r;
	if (s->stream) { /* raw: the zeros after the last data; then the stream ends */
		if (s->format == IMS_FORMAT_RAW && s->spos < size &&
		    (r = stream_write(s, NULL, 0, size)) < 0)
			return r;
		ims_source_growing_end(s->stream, s->spos);
		return 0;
	}
	if (fdatasync(s->fd) < 0 || close(s->fd) < 0) {
		s->fd = -1;
		return ims_error_set(-errno, "cannot write '%s': %s", partial, ims_strerror(errno));
	}
	s->fd = -1;
	if (link(partial, path) < 0) /* link, not rename: never replace a file made meanwhile */
		return ims_error_set(-errno, "cannot create '%s': %s", path, ims_strerror(errno));
	unlink(partial);
	return 0;
}

/* Export to the file @p path (through "PATH.partial") or, with s->stream, into the stream. */
static int export_image(ims_transfer_result *out, ims_site *site, const char *pool,
			const char *name, const char *snap, sink *s, const char *path,
			const ims_transfer_opts *o)
{
	rados_ioctx_t io = NULL;
	rbd_image_t image = NULL;
	ims_extents ext = {0};
	char partial[4096] = "", what[3 * IMS_NAME_MAX + 4];
	struct stat st;
	uint64_t size = 0, total = 0;
	int r;

	if ((r = check_opts(o)) < 0 || (r = ims_store__check_names(pool, name, snap)) < 0)
		return r;
	s->format = o->format == IMS_FORMAT_AUTO ? IMS_FORMAT_RAW : o->format;
	if (s->format != IMS_FORMAT_RAW && s->format != IMS_FORMAT_QCOW2 &&
	    s->format != IMS_FORMAT_VMDK)
		return ims_error_set(-EINVAL, "export writes raw, qcow2 or vmdk, not %s",
				     ims_format_name(s->format));
	if (!s->stream) {
		if (stat(path, &st) == 0)
			return ims_error_set(-EEXIST,
					     "'%s' exists; export does not overwrite files", path);
		if (snprintf(partial, sizeof(partial), "%s.partial", path) >= (int)sizeof(partial))
			return ims_error_set(-ENAMETOOLONG, "path '%s' is too long", path);
	}
	snprintf(what, sizeof(what), snap ? "%s/%s@%s" : "%s/%s", pool, name, snap);

	if ((r = ims_store__open_image(&io, &image, site, pool, name, snap, true)) < 0)
		return r;
	bool decrypted = false;
	if ((r = ims_crypt_load(&decrypted, image, ims_site_kek(site), what)) < 0 ||
	    (r = rbd_get_size(image, &size)) < 0)
		goto out;
	/* Through the encryption, an allocation map in plaintext offsets is not to be had from
	 * Ceph 16: read it all (export_copy still writes only the runs that are not zero). */
	r = decrypted ? ims_extents_add(&ext, 0, size, true)
		      : rbd_diff_iterate2(image, NULL, 0, size, 1, 1, ims_extents_diff_data, &ext);
	if (r < 0) {
		ims_error_set(r, "cannot map the allocated extents of '%s': %s", what,
			      ims_strerror(r));
		goto out;
	}
	total = ims_extents_bytes(&ext);
	if ((r = export_open_sink(s, partial, size, &ext)) < 0 ||
	    (r = export_copy(image, &ext, total, s, what, o)) < 0 ||
	    (r = export_finish(s, partial, path, size)) < 0)
		goto out;
	if (o->progress)
		o->progress(o->progress_ctx, total, total);
	if (out) {
		memset(out, 0, sizeof(*out));
		out->format = s->format;
		out->virtual_size = size;
		out->bytes_data = s->bytes_data;
		out->bytes_zero = size - s->bytes_data;
	}
out:
	if (r < 0 && s->fd >= 0)
		unlink(partial);
	if (s->fd >= 0)
		close(s->fd);
	ims_qcow2_writer_free(s->qw);
	ims_vmdk_writer_free(s->vw);
	ims_extents_free(&ext);
	ims_store__close_image(io, image);
	return r;
}

int ims_image_export_file(ims_transfer_result *out, ims_site *site, const char *pool,
			  const char *name, const char *snap, const char *path,
			  const ims_transfer_opts *o)
{
	sink s = {.fd = -1, .path = path};
	return export_image(out, site, pool, name, snap, &s, path, o);
}

int ims_image_export_stream(ims_transfer_result *out, ims_site *site, const char *pool,
			    const char *name, const char *snap, ims_source_growing *stream,
			    const ims_transfer_opts *o)
{
	char label[IMS_NAME_MAX + 8];
	snprintf(label, sizeof(label), "%s.vmdk", name ? name : "disk");
	sink s = {.fd = -1, .path = label, .stream = stream};
	return export_image(out, site, pool, name, snap, &s, NULL, o);
}

/* ------------------------------------------------------------------------------------------ */
/* cleanup */

static void owner_oid(char *buf, size_t len, const char *tmp)
{
	snprintf(buf, len, IMS_TMP_OWNER_PREFIX "%s", tmp + strlen(IMS_TMP_IMAGE_PREFIX));
}

/* The owner's watch answers every notify: that is how a cleanup sees it alive. */
static void owner_notified(void *arg, uint64_t notify_id, uint64_t cookie, uint64_t notifier,
			   void *data, size_t len)
{
	ims_store__tmp_owner *o = arg;
	(void)notifier, (void)data, (void)len;
	rados_notify_ack(o->io, o->oid, notify_id, cookie, NULL, 0);
}

static void owner_watch_error(void *arg, uint64_t cookie, int err)
{
	ims_store__tmp_owner *o = arg;
	(void)cookie;
	/* the temporary's own watch (librbd re-registers it) still keeps the cleanup away */
	ims_log_debug("lost the watch on '%s': %s", o->oid, ims_strerror(err));
}

int ims_store__tmp_own(ims_store__tmp_owner *o, rados_ioctx_t io, const char *tmp,
		       const char *target)
{
	int r;

	memset(o, 0, sizeof(*o));
	o->io = io;
	owner_oid(o->oid, sizeof(o->oid), tmp);
	r = rados_write_full(io, o->oid, target, strlen(target));
	if (r == 0 &&
	    (r = rados_watch2(io, o->oid, &o->cookie, owner_notified, owner_watch_error, o)) < 0)
		rados_remove(io, o->oid);
	if (r < 0) {
		o->oid[0] = '\0';
		return ims_error_set(r,
				     "cannot record the owner of the temporary image for '%s': %s",
				     target, ims_strerror(r));
	}
	o->watching = true;
	return 0;
}

void ims_store__tmp_disown(ims_store__tmp_owner *o)
{
	if (!o->oid[0])
		return;
	if (o->watching) {
		rados_unwatch2(o->io, o->cookie);
		rados_watch_flush(
			rados_ioctx_get_cluster(o->io)); /* no callback runs on o after this */
		o->watching = false;
	}
	rados_remove(o->io, o->oid);
	o->oid[0] = '\0';
}

/*
 * Whether a live operation owns temporary image @p tmp: 1 if its owner object is watched
 * (a watcher answers a notify, or does not answer yet: a dead client's watch lapses only
 * after a while), 0 if the object has no watcher, -ENOENT if there is no owner object (a
 * temporary made before owners were recorded), another errno if the cluster fails.
 */
static int tmp_owned(rados_ioctx_t io, const char *tmp)
{
	char oid[96], *reply = NULL;
	size_t len = 0;
	int r;

	owner_oid(oid, sizeof(oid), tmp);
	/* short: the daemon's main thread waits on it, and an owner too slow to answer counts as
	 * alive anyway */
	r = rados_notify2(io, oid, "", 0, 3000, &reply, &len);
	if (r == -ETIMEDOUT) {
		r = 1;
	} else if (r == 0) {
		/* the reply starts with the number of acks, a little-endian u32 */
		const uint8_t *b = (const uint8_t *)reply;
		uint32_t acks = len >= 4 ? (uint32_t)b[0] | (uint32_t)b[1] << 8 |
						   (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24
					 : 0;
		r = acks > 0;
	}
	if (reply)
		rados_buffer_free(reply);
	return r;
}

/* Whether a temporary image can go: no live owner, and no client has it open (this process
 * included: the cleanup's own handle is read-only and does not watch). */
static bool tmp_abandoned(rados_ioctx_t io, const char *pool, const char *tmp, bool *has_owner)
{
	rbd_image_t image = NULL;
	size_t watchers = 1;
	int r = tmp_owned(io, tmp);

	*has_owner = r != -ENOENT;
	if (r != 0 && r != -ENOENT) {
		if (r < 0)
			ims_log_debug("cannot tell who owns '%s/%s': %s", pool, tmp,
				      ims_strerror(r));
		return false;
	}
	if (rbd_open_read_only(io, tmp, &image, NULL) < 0)
		return false;
	r = ims_store__count_watchers(&watchers, image);
	rbd_close(image);
	return r == 0 && watchers == 0;
}

static int cleanup_pool(ims_site *site, const char *pool, unsigned *count)
{
	rados_ioctx_t io = NULL;
	rbd_image_spec_t *specs = NULL;
	size_t n = 64;
	int r;

	if ((r = ims_site_ioctx(&io, site, pool)) < 0)
		return r;
	for (;;) {
		specs = calloc(n, sizeof(*specs));
		if (!specs) {
			r = -ENOMEM;
			goto out;
		}
		r = rbd_list2(io, specs, &n);
		if (r != -ERANGE)
			break;
		free(specs);
		specs = NULL;
	}
	if (r < 0) {
		n = 0;
		ims_error_set(r, "cannot list pool '%s': %s", pool, ims_strerror(r));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const char *tmp = specs[i].name;
		bool has_owner = false;
		if (strncmp(tmp, IMS_TMP_IMAGE_PREFIX, strlen(IMS_TMP_IMAGE_PREFIX)) != 0 ||
		    !tmp_abandoned(io, pool, tmp, &has_owner))
			continue;
		int rr = rbd_remove(io, tmp);
		if (rr == 0) {
			ims_log_info("removed '%s/%s', the temporary image of an interrupted "
				     "import or restore",
				     pool, tmp);
			(*count)++;
		} else if (rr != -EBUSY && rr != -ENOENT) {
			ims_log_warning("cannot remove '%s/%s': %s", pool, tmp, ims_strerror(rr));
		}
		if ((rr == 0 || rr == -ENOENT) && has_owner) {
			char oid[96];
			owner_oid(oid, sizeof(oid), tmp);
			rados_remove(io, oid);
		}
	}
	r = 0;
out:
	if (specs) {
		rbd_image_spec_list_cleanup(specs, n);
		free(specs);
	}
	ims_site_ioctx_close(io);
	return r;
}

/* Whether @p pool may hold RBD images: the rbd application enabled, or no application at all
 * (a pool used with `rbd create` but never `rbd pool init`); not rgw's, cephfs' or the mgr's. */
bool ims_store__is_rbd_pool(ims_site *site, const char *pool)
{
	rados_ioctx_t io = NULL;
	char apps[256];
	size_t len = sizeof(apps);
	bool rbd = false;

	if (ims_site_ioctx(&io, site, pool) < 0)
		return false;
	if (rados_application_list(io, apps, &len) == 0) {
		rbd = len == 0 || apps[0] == '\0';
		for (size_t i = 0; i < len && apps[i]; i += strlen(apps + i) + 1)
			if (strcmp(apps + i, "rbd") == 0)
				rbd = true;
	}
	ims_site_ioctx_close(io);
	return rbd;
}

int ims_store__pool_names(char **out, ims_site *site)
{
	size_t len = 1024;
	char *pools = NULL;
	for (;;) {
		char *nb = realloc(pools, len);
		if (!nb) {
			free(pools);
			return -ENOMEM;
		}
		pools = nb;
		int r = ims_site_pool_list(pools, len, site);
		if (r < 0) {
			free(pools);
			return ims_error_set(r, "cannot list the pools of site '%s': %s",
					     ims_site_name(site), ims_strerror(r));
		}
		if ((size_t)r <= len)
			break;
		len = (size_t)r;
	}
	*out = pools;
	return 0;
}

int ims_store_cleanup_tmp(unsigned *removed, ims_site *site, const char *pool)
{
	char *pools = NULL;
	unsigned count = 0;
	char first_msg[512] = "";
	int r, first = 0;

	if (pool) {
		r = cleanup_pool(site, pool, &count);
		goto out;
	}
	if ((r = ims_store__pool_names(&pools, site)) < 0)
		goto out;
	/* every pool imgstore may have written an image to; one failing does not stop the others */
	for (const char *p = pools; *p; p += strlen(p) + 1) {
		if (!ims_store__is_rbd_pool(site, p))
			continue;
		if ((r = cleanup_pool(site, p, &count)) < 0 && first == 0) {
			first = r;
			snprintf(first_msg, sizeof(first_msg), "%s", ims_error_last());
		} else if (r < 0) {
			ims_log_debug("cleanup of pool '%s': %s", p, ims_error_last());
		}
	}
	r = first;
	if (r < 0)
		ims_error_set(r, "%s", first_msg);
out:
	if (r == 0 && removed)
		*removed = count;
	free(pools);
	return r;
}
