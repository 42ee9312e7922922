/*
 * store/vmdk_writer.c: writes a streamOptimized VMDK (what VMware's OVF import takes) front to
 * back, from VMware's "Virtual Disk Format 5.0" specification.
 *
 * Layout, in the order the writer lays it down, every piece in whole sectors:
 *
 *   sector 0           the header: version 3, compressed grains behind markers, the grain
 *                      directory at the end (its offset "GD_AT_END")
 *   sectors 1-20       the descriptor (createType "streamOptimized", one SPARSE extent)
 *   from 64 KiB        each grain of 64 KiB that holds a non-zero byte, deflated (zlib)
 *                      behind a grain marker (its guest sector and compressed size); after
 *                      the grains of a grain table's range, that grain table behind its
 *                      marker (ranges without a grain get an empty one, as VMware's and
 *                      QEMU's writers have it)
 *   at finish          the grain directory behind its marker, the footer (a footer marker
 *                      and the header again, now with the directory's offset) and the
 *                      end-of-stream marker
 *
 * Nothing is written twice and nothing before the current position: the file could be a
 * pipe. Memory: the grain directory (4 bytes per 32 MiB of guest), one grain table (2 KiB),
 * a grain and its compressed form; once a write brings several whole grains, a batch of up to
 * BATCH_GRAINS compressed grains (about 4 MiB), deflated on up to DEFLATE_THREADS threads at
 * once and written in guest order.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "common/error.h"
#include "store/format_internal.h"
#include "store/writer_internal.h"

#define SECTOR	      UINT64_C(512)
#define GRAIN_SECTORS UINT64_C(128)
#define GRAIN	      (GRAIN_SECTORS * SECTOR) /* 64 KiB */
#define GTES	      512u
#define GT_BYTES      (GTES * 4u)
#define GT_RANGE      (GRAIN * GTES) /* 32 MiB */
#define DESC_SECTOR   1u
#define DESC_SECTORS  20u
#define OVERHEAD      GRAIN_SECTORS /* the first grain starts at 64 KiB */
#define GD_AT_END     UINT64_MAX
#define FLAGS	      (1u << 0 | 1u << 16 | 1u << 17) /* newline test, compressed, markers */
#define MARKER_EOS    0u
#define MARKER_GT     1u
#define MARKER_GD     2u
#define MARKER_FOOTER 3u
#define NONE	      UINT64_MAX
/* a grain table entry is a 32-bit sector: the file stays below 2 TiB */
#define MAX_SECTOR	UINT64_C(0xffffffff)
#define BATCH_GRAINS	64u /* whole grains of one write deflated together: 4 MiB of guest */
#define DEFLATE_THREADS 4u  /* at most, the writer's own included; at most the CPUs online */
/* the reader's bound on a grain directory (32 MiB: 256 TiB of guest) */
#define MAX_GD_ENTRIES ((uint64_t)IMS_FORMAT__MAX_TABLE_BYTES / 4)

struct ims_vmdk_writer {
	ims_format__writer b; /* first: its unit is the guest grain being assembled */
	uint64_t gd_entries;
	uint32_t *gd;	      /* sectors of the grain tables written, 0 for none */
	uint8_t gt[GT_BYTES]; /* the current grain table, little-endian as in the file */
	uint64_t gt_index;    /* the grain directory entry it belongs to, NONE */
	uint64_t gt_next;     /* the first directory entry whose table is not written yet */
	uint8_t *out;	      /* a marker and a compressed grain, in whole sectors */
	size_t out_bytes;
	uint8_t *batch;	  /* BATCH_GRAINS of out_bytes each (made at the first batch), NULL */
	unsigned threads; /* deflating a batch, the writer's own thread included */
	struct deflate_pool *pool; /* the helper threads (started at the first batch), NULL */
	uint64_t next;		   /* the next free sector */
	char name[256];		   /* the file name the descriptor gives its extent */
};

static int pwrite_full(ims_vmdk_writer *w, const void *buf, size_t len, uint64_t off)
{
	return ims_format__writer_put(&w->b, buf, len, off);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16),
	p[3] = (uint8_t)(v >> 24);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* Room for @p sectors more sectors, the file staying addressable by 32-bit sectors. */
static int reserve(ims_vmdk_writer *w, uint64_t sectors, uint64_t *at)
{
	if (w->next + sectors > MAX_SECTOR)
		return w->b.failed =
			       ims_error_set(-EFBIG, "vmdk writer: the image would pass 2 TiB, "
						     "which a VMDK's grain tables cannot address");
	*at = w->next;
	w->next += sectors;
	return 0;
}

/* A metadata marker (grain table, directory, footer, end of stream) of @p sectors sectors. */
static int write_marker(ims_vmdk_writer *w, uint64_t sectors, uint32_t type)
{
	uint8_t m[SECTOR];
	uint64_t at = 0;
	int r;

	memset(m, 0, sizeof(m));
	put64(m, sectors);
	put32(m + 12, type);
	if ((r = reserve(w, 1, &at)) < 0)
		return r;
	return pwrite_full(w, m, sizeof(m), at * SECTOR);
}

static void header(const ims_vmdk_writer *w, uint8_t h[SECTOR], uint64_t gd_sector)
{
	memset(h, 0, SECTOR);
	memcpy(h, "KDMV", 4);
	put32(h + 4, 3);
	put32(h + 8, FLAGS);
	put64(h + 12, w->b.vsize / SECTOR);
	put64(h + 20, GRAIN_SECTORS);
	put64(h + 28, DESC_SECTOR);
	put64(h + 36, DESC_SECTORS);
	put32(h + 44, GTES);
	put64(h + 48, 0); /* no redundant grain directory */
	put64(h + 56, gd_sector);
	put64(h + 64, OVERHEAD);
	memcpy(h + 73, "\n \r\n", 4);
	h[77] = 1; /* deflate */
}

static int write_head(ims_vmdk_writer *w)
{
	uint8_t *b = calloc(1, (DESC_SECTOR + DESC_SECTORS) * SECTOR);
	uint64_t sectors = w->b.vsize / SECTOR, cyl = sectors / (16 * 63);
	/* a content id: any 32 bits that differ between disks */
	uint32_t cid = (uint32_t)(sectors * 2654435761u) ^ (uint32_t)getpid();
	int r;

	if (!b)
		return ims_error_set(-ENOMEM, "vmdk writer: out of memory");
	if (cyl > 16383)
		cyl = 16383;
	header(w, b, GD_AT_END);
	snprintf((char *)b + DESC_SECTOR * SECTOR, DESC_SECTORS * SECTOR,
		 "# Disk DescriptorFile\n"
		 "version=1\n"
		 "CID=%08" PRIx32 "\n"
		 "parentCID=ffffffff\n"
		 "createType=\"streamOptimized\"\n"
		 "\n"
		 "# Extent description\n"
		 "RW %" PRIu64 " SPARSE \"%s\"\n"
		 "\n"
		 "# The Disk Data Base\n"
		 "#DDB\n"
		 "\n"
		 "ddb.virtualHWVersion = \"4\"\n"
		 "ddb.geometry.cylinders = \"%" PRIu64 "\"\n"
		 "ddb.geometry.heads = \"16\"\n"
		 "ddb.geometry.sectors = \"63\"\n"
		 "ddb.adapterType = \"ide\"\n",
		 cid, sectors, w->name, cyl);
	r = pwrite_full(w, b, (DESC_SECTOR + DESC_SECTORS) * SECTOR, 0);
	free(b);
	w->next = OVERHEAD;
	return r;
}

/* Grain table @p table behind its marker, for grain directory entry @p i. */
static int emit_gt(ims_vmdk_writer *w, uint64_t i, const uint8_t *table)
{
	uint64_t at = 0;
	int r;

	if ((r = write_marker(w, GT_BYTES / SECTOR, MARKER_GT)) < 0 ||
	    (r = reserve(w, GT_BYTES / SECTOR, &at)) < 0 ||
	    (r = pwrite_full(w, table, GT_BYTES, at * SECTOR)) < 0)
		return r;
	w->gd[i] = (uint32_t)at;
	w->gt_next = i + 1;
	return 0;
}

/*
 * Empty grain tables for the directory entries before @p upto that have none yet: every
 * entry points at a table, as VMware's and QEMU's stream writers have it (2.5 KiB per 32 MiB
 * of guest), so that no reader meets a directory entry of 0.
 */
static int emit_empty_gts(ims_vmdk_writer *w, uint64_t upto)
{
	static const uint8_t empty[GT_BYTES];
	int r;

	while (w->gt_next < upto)
		if ((r = emit_gt(w, w->gt_next, empty)) < 0)
			return r;
	return 0;
}

/* Give the current grain table its place in the file, after the empty ones before it. */
static int flush_gt(ims_vmdk_writer *w)
{
	int r;

	if (w->gt_index == NONE)
		return 0;
	if ((r = emit_empty_gts(w, w->gt_index)) < 0 || (r = emit_gt(w, w->gt_index, w->gt)) < 0)
		return r;
	w->gt_index = NONE;
	return 0;
}

/*
 * Deflate @p data (GRAIN bytes) into @p out (out_bytes: its marker's 12 bytes first, left for
 * emit_grain()). Touches nothing of the writer: safe on any thread.
 * @returns the compressed length, 0 for a grain of zeros (nothing to write), -EIO.
 */
static long deflate_grain(const uint8_t *data, uint8_t *out, size_t out_bytes)
{
	uLongf clen = (uLongf)(out_bytes - 12);

	if (ims_format__all_zero(data, GRAIN))
		return 0;
	if (compress2(out + 12, &clen, data, GRAIN, Z_BEST_SPEED) != Z_OK)
		return -EIO;
	return (long)clen;
}

/* Write guest grain @p index, deflated into @p out (@p clen bytes after the marker's 12). */
static int emit_grain(ims_vmdk_writer *w, uint64_t index, uint8_t *out, uLongf clen)
{
	uint64_t gdi = index / GTES, at = 0, sectors;
	int r;

	if (w->gt_index != gdi) {
		if ((r = flush_gt(w)) < 0)
			return r;
		memset(w->gt, 0, sizeof(w->gt));
		w->gt_index = gdi;
	}
	put64(out, index * GRAIN_SECTORS);
	put32(out + 8, (uint32_t)clen);
	sectors = (12 + clen + SECTOR - 1) / SECTOR;
	memset(out + 12 + clen, 0, (size_t)(sectors * SECTOR - 12 - clen));
	if ((r = reserve(w, sectors, &at)) < 0 ||
	    (r = pwrite_full(w, out, (size_t)(sectors * SECTOR), at * SECTOR)) < 0)
		return r;
	put32(w->gt + (index % GTES) * 4, (uint32_t)at);
	return 0;
}

/* Write guest grain @p index from @p data (GRAIN bytes) if it holds a non-zero byte. */
static int store_grain(ims_vmdk_writer *w, uint64_t index, const uint8_t *data)
{
	long clen = deflate_grain(data, w->out, w->out_bytes);

	if (clen < 0)
		return w->b.failed = ims_error_set(-EIO, "vmdk writer: deflate failed");
	return clen ? emit_grain(w, index, w->out, (uLongf)clen) : 0;
}

/* A batch of whole grains being deflated: each thread takes the next grain not taken. */
typedef struct {
	const uint8_t *data; /* n grains, one after the other */
	uint8_t *out;	     /* n slots of out_bytes */
	size_t out_bytes;
	long clen[BATCH_GRAINS]; /* as deflate_grain() returns */
	unsigned n;
	atomic_uint next;
} deflate_batch;

static void deflate_run(deflate_batch *b)
{
	for (unsigned i; (i = atomic_fetch_add(&b->next, 1)) < b->n;)
		b->clen[i] = deflate_grain(b->data + (size_t)i * GRAIN,
					   b->out + (size_t)i * b->out_bytes, b->out_bytes);
}

/*
 * The writer's helper threads. A helper joins the open batch when it wakes (under the lock,
 * counted in active); the writer deflates too, closes the batch once no grain is left to take
 * and waits only for the helpers that joined: a helper that the scheduler has not run yet
 * costs nothing (on a busy host, joining a thread per batch cost more than it gave).
 */
struct deflate_pool {
	pthread_mutex_t lock;
	pthread_cond_t work, idle;
	deflate_batch *batch; /* the open batch, NULL */
	unsigned gen;	      /* batches opened so far */
	unsigned active;      /* helpers working on the open batch */
	bool quit;
	unsigned n;
	pthread_t t[DEFLATE_THREADS];
};

static void *pool_main(void *arg)
{
	struct deflate_pool *p = arg;
	unsigned seen = 0;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->quit && (!p->batch || p->gen == seen))
			pthread_cond_wait(&p->work, &p->lock);
		if (p->quit)
			break;
		seen = p->gen;
		deflate_batch *b = p->batch;
		p->active++;
		pthread_mutex_unlock(&p->lock);
		deflate_run(b);
		pthread_mutex_lock(&p->lock);
		if (--p->active == 0)
			pthread_cond_signal(&p->idle);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void pool_free(struct deflate_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->quit = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n; i++)
		pthread_join(p->t[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->idle);
	free(p);
}

/* @p helpers threads; NULL when none could be started (the writer then deflates alone). */
static struct deflate_pool *pool_new(unsigned helpers)
{
	struct deflate_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->idle, NULL);
	for (unsigned i = 0; i < helpers && i < DEFLATE_THREADS; i++) {
		if (pthread_create(&p->t[p->n], NULL, pool_main, p) != 0)
			break;
		p->n++;
	}
	if (!p->n) {
		pool_free(p);
		return NULL;
	}
	return p;
}

/*
 * Write the @p n whole grains from guest grain @p index at @p data (2 to BATCH_GRAINS),
 * deflated on the writer's threads at once, in guest order.
 */
static int store_batch(ims_vmdk_writer *w, uint64_t index, const uint8_t *data, unsigned n)
{
	deflate_batch b = {.data = data, .out = w->batch, .out_bytes = w->out_bytes, .n = n};
	struct deflate_pool *p = w->pool;
	int r;

	atomic_init(&b.next, 0);
	if (p) {
		pthread_mutex_lock(&p->lock);
		p->batch = &b;
		p->gen++;
		pthread_cond_broadcast(&p->work);
		pthread_mutex_unlock(&p->lock);
	}
	deflate_run(&b);
	if (p) { /* every grain is taken: no helper joins now; wait for those that did */
		pthread_mutex_lock(&p->lock);
		p->batch = NULL;
		while (p->active)
			pthread_cond_wait(&p->idle, &p->lock);
		pthread_mutex_unlock(&p->lock);
	}
	for (unsigned i = 0; i < n; i++) {
		if (b.clen[i] < 0)
			return w->b.failed = ims_error_set(-EIO, "vmdk writer: deflate failed");
		if (b.clen[i] && (r = emit_grain(w, index + i, b.out + (size_t)i * b.out_bytes,
						 (uLongf)b.clen[i])) < 0)
			return r;
	}
	return 0;
}

/* The base's store(): whole grains, several at once on the writer's threads. */
static int store(ims_format__writer *b, uint64_t index, const uint8_t *data, uint64_t whole)
{
	ims_vmdk_writer *w = (ims_vmdk_writer *)b;
	unsigned n = whole < BATCH_GRAINS ? (unsigned)whole : BATCH_GRAINS;
	int r;

	if (n >= 2 && w->threads > 1) {
		if (!w->batch && !(w->batch = malloc((size_t)BATCH_GRAINS * w->out_bytes)))
			return w->b.failed = ims_error_set(
				       -ENOMEM, "vmdk writer: out of memory for a batch");
		if (!w->pool) /* none started: this thread deflates alone */
			w->pool = pool_new(w->threads - 1);
		if ((r = store_batch(w, index, data, n)) < 0)
			return r;
		return (int)n;
	}
	if ((r = store_grain(w, index, data)) < 0)
		return r;
	return 1;
}

static const ims_format__writer_ops vmdk_ops = {
	.what = "vmdk writer",
	.store = store,
};

static int open_writer(ims_vmdk_writer **out, int fd, ims_format__writer_fn fn, void *fn_ctx,
		       uint64_t virtual_size, const char *name)
{
	ims_format__writer *b = NULL;
	ims_vmdk_writer *w = NULL;
	const char *base;
	int r;

	if ((r = ims_format__writer_check_open(out, fd, fn, virtual_size, vmdk_ops.what)) < 0)
		return r;
	if ((virtual_size + GT_RANGE - 1) / GT_RANGE > MAX_GD_ENTRIES)
		return ims_error_set(-EINVAL,
				     "vmdk writer: virtual size %" PRIu64 " needs a grain "
				     "directory larger than 32 MiB",
				     virtual_size);
	if ((r = ims_format__writer_new(&b, sizeof(*w), &vmdk_ops, fd, fn, fn_ctx, virtual_size,
					GRAIN)) < 0)
		return r;
	w = (ims_vmdk_writer *)b;
	w->gd_entries = (virtual_size + GT_RANGE - 1) / GT_RANGE;
	w->gd = calloc((size_t)w->gd_entries, sizeof(*w->gd));
	w->out_bytes = (size_t)((12 + compressBound(GRAIN) + SECTOR - 1) / SECTOR * SECTOR);
	w->out = malloc(w->out_bytes);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	w->threads = cpus < 1 ? 1 : cpus > DEFLATE_THREADS ? DEFLATE_THREADS : (unsigned)cpus;
	if (!w->gd || !w->out) {
		r = ims_error_set(-ENOMEM,
				  "vmdk writer: out of memory for the tables of %" PRIu64 " bytes",
				  virtual_size);
		goto out;
	}
	w->gt_index = NONE;
	/* the extent's file name: printable, no quotes */
	base = name ? strrchr(name, '/') : NULL;
	base = base ? base + 1 : name ? name : "disk.vmdk";
	for (size_t i = 0; base[i] && i + 1 < sizeof(w->name); i++)
		w->name[i] = base[i] >= 0x20 && base[i] < 0x7f && base[i] != '"' ? base[i] : '_';
	if ((r = write_head(w)) < 0)
		goto out;
	*out = w;
	w = NULL;
out:
	ims_vmdk_writer_free(w);
	return r;
}

int ims_vmdk_writer_open(ims_vmdk_writer **out, int fd, uint64_t virtual_size, const char *name)
{
	return open_writer(out, fd, NULL, NULL, virtual_size, name);
}

int ims_vmdk_writer_open_fn(ims_vmdk_writer **out,
			    int (*fn)(void *ctx, const void *buf, size_t len, uint64_t off),
			    void *ctx, uint64_t virtual_size, const char *name)
{
	return open_writer(out, -1, fn, ctx, virtual_size, name);
}

int ims_vmdk_writer_write(ims_vmdk_writer *w, uint64_t offset, const void *buf, size_t len)
{
	if (!w)
		return ims_error_set(-EINVAL, "vmdk writer: no writer or no data");
	return ims_format__writer_write(&w->b, offset, buf, len);
}

int ims_vmdk_writer_finish(ims_vmdk_writer *w)
{
	uint64_t gd_sectors, at = 0;
	uint8_t *gd, h[SECTOR];
	int r;

	if (!w)
		return ims_error_set(-EINVAL, "vmdk writer: no writer");
	if ((r = ims_format__writer_end(&w->b)) < 0 || (r = flush_gt(w)) < 0 ||
	    (r = emit_empty_gts(w, w->gd_entries)) < 0)
		return r;
	gd_sectors = (w->gd_entries * 4 + SECTOR - 1) / SECTOR;
	gd = calloc(1, (size_t)(gd_sectors * SECTOR));
	if (!gd)
		return ims_error_set(-ENOMEM, "vmdk writer: out of memory for the grain directory");
	for (uint64_t i = 0; i < w->gd_entries; i++)
		put32(gd + i * 4, w->gd[i]);
	if ((r = write_marker(w, gd_sectors, MARKER_GD)) == 0 &&
	    (r = reserve(w, gd_sectors, &at)) == 0)
		r = pwrite_full(w, gd, (size_t)(gd_sectors * SECTOR), at * SECTOR);
	free(gd);
	if (r < 0)
		return r;
	header(w, h, at);
	if ((r = write_marker(w, 1, MARKER_FOOTER)) < 0 || (r = reserve(w, 1, &at)) < 0 ||
	    (r = pwrite_full(w, h, sizeof(h), at * SECTOR)) < 0 ||
	    (r = write_marker(w, 0, MARKER_EOS)) < 0)
		return r;
	w->b.finished = true;
	return 0;
}

void ims_vmdk_writer_free(ims_vmdk_writer *w)
{
	if (!w)
		return;
	free(w->gd);
	free(w->out);
	pool_free(w->pool);
	free(w->batch);
	ims_format__writer_free(&w->b);
}
