/*
 * store/qcow2_writer.c: writes a qcow2 version 3 image front to back.
 *
 * Layout, in the order the writer lays it down:
 *
 *   cluster 0          the header, written last
 *   data and L2        each data cluster as it comes, each L2 table after the data it maps
 *   L1 table           at finish
 *   refcount blocks    at finish: every cluster up to the end is used exactly once, so the
 *   refcount table     counts are all 1 and need no bookkeeping while writing
 *
 * Memory: the L1 table (8 bytes per 512 MiB of guest), one L2 table and two clusters.
 *
 * A stream (ims_qcow2_writer_open_fn()) is written in ascending offsets, never back, so the
 * clusters that may hold data are planned first (ims_qcow2_writer_plan(), from the image's
 * allocation map) and the layout follows from them:
 *
 *   cluster 0          the header
 *   L1 table           every L2 table's place known from the plan
 *   refcount blocks    all 1 up to the end, then the refcount table
 *   L2 and data        per L1 entry with a planned cluster: its L2 table, then its planned
 *                      clusters in guest order (those that turn out all zeros are left as
 *                      zeros in the stream: allocated, reading as zeros)
 *
 * Memory then: the planned runs besides (16 bytes per run of clusters).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "store/format_internal.h"
#include "store/writer_internal.h"

#define CLUSTER_BITS   16u
#define CS	       (UINT64_C(1) << CLUSTER_BITS)
#define L2_ENTRIES     (CS / 8)
#define L2_RANGE       (CS * L2_ENTRIES)
#define MAX_L1_ENTRIES ((uint64_t)IMS_FORMAT__MAX_TABLE_BYTES / 8)
#define REFS_PER_BLOCK (CS / 2) /* refcount_order 4: 16-bit counts */
#define RT_ENTRIES     (CS / 8)
#define OFLAG_COPIED   (UINT64_C(1) << 63)
#define HEADER_BYTES   112u
#define NONE	       UINT64_MAX

struct ims_qcow2_writer {
	ims_format__writer b; /* first: its unit is the guest cluster being assembled, or a
				 scratch cluster */
	uint64_t l1_entries;
	uint64_t *l1;	   /* host offsets of the L2 tables written, 0 for none */
	uint8_t *l2;	   /* the current L2 table, big-endian as in the file */
	uint64_t l2_index; /* the L1 entry it belongs to, NONE */
	bool l2_used;
	uint64_t next;	/* the next free host cluster */
	uint64_t *runs; /* planned guest clusters, [runs[2i], runs[2i + 1]) ascending */
	size_t nruns, runs_cap;
	bool begun;	   /* the header, L1 and refcounts are out: no more planning */
	uint64_t total;	   /* clusters in the file */
	size_t cur_run;	   /* the cursor: the next planned cluster not passed yet */
	uint64_t cur;	   /* its guest cluster (within runs[cur_run]), NONE at the end */
	uint64_t cur_host; /* its host cluster */
	uint64_t l2_out;   /* the L1 entries before this one had their L2 table put out */
	size_t l2_run;	   /* the first run that may hold clusters of l2_out */
};

/* The version 3 header, in w->b.unit: the L1 table at @p l1_off, @p rt_clusters clusters of
 * refcount table at @p rt_off. */
static uint8_t *header(ims_qcow2_writer *w, uint64_t l1_off, uint64_t rt_off, uint64_t rt_clusters)
{
	uint8_t *h = w->b.unit;
	memset(h, 0, CS);
	ims_format__put_be32(h, 0x514649fbu);
	ims_format__put_be32(h + 4, 3);
	ims_format__put_be32(h + 20, CLUSTER_BITS);
	ims_format__put_be64(h + 24, w->b.vsize);
	ims_format__put_be32(h + 36, (uint32_t)w->l1_entries);
	ims_format__put_be64(h + 40, l1_off);
	ims_format__put_be64(h + 48, rt_off);
	ims_format__put_be32(h + 56, (uint32_t)rt_clusters);
	ims_format__put_be32(h + 96, 4);
	ims_format__put_be32(h + 100, HEADER_BYTES);
	return h;
}

static int pwrite_full(ims_qcow2_writer *w, const void *buf, size_t len, uint64_t off)
{
	return ims_format__writer_put(&w->b, buf, len, off);
}

/* Give the current L2 table its place in the file, if it maps anything. */
static int flush_l2(ims_qcow2_writer *w)
{
	int r;

	if (w->l2_index == NONE)
		return 0;
	if (w->l2_used) {
		r = pwrite_full(w, w->l2, CS, w->next * CS);
		if (r < 0)
			return r;
		w->l1[w->l2_index] = w->next * CS;
		w->next++;
	}
	w->l2_index = NONE;
	w->l2_used = false;
	return 0;
}

static int write_l1(ims_qcow2_writer *w, uint64_t *l1_off);
static int put_refcounts(ims_qcow2_writer *w, uint64_t total, uint64_t blocks, uint64_t tables,
			 uint64_t *rt_off);

/*
 * The planned clusters of L1 entry @p k, from run @p i on (the first that may hold some):
 * @returns how many; with @p l2, their L2 table too, the data clusters following the table at
 * host cluster @p host.
 */
static uint64_t plan_range(const ims_qcow2_writer *w, size_t i, uint64_t k, uint64_t host,
			   uint8_t *l2)
{
	uint64_t lo = k * L2_ENTRIES, hi = lo + L2_ENTRIES, n = 0;

	for (; i < w->nruns && w->runs[2 * i] < hi; i++) {
		uint64_t a = w->runs[2 * i] > lo ? w->runs[2 * i] : lo;
		uint64_t b = w->runs[2 * i + 1] < hi ? w->runs[2 * i + 1] : hi;
		for (uint64_t g = a; g < b; g++, n++)
			if (l2)
				ims_format__put_be64(l2 + (g - lo) * 8,
						     (host + 1 + n) * CS | OFLAG_COPIED);
	}
	return n;
}

/* The first run from run @p i on that may hold clusters of L1 entry @p k. */
static size_t run_of_range(const ims_qcow2_writer *w, size_t i, uint64_t k)
{
	while (i < w->nruns && w->runs[2 * i + 1] <= k * L2_ENTRIES)
		i++;
	return i;
}

/* A stream: the header, the L1 table and the refcounts, all known from the plan. */
static int stream_begin(ims_qcow2_writer *w)
{
	uint64_t l1c = (w->l1_entries * 8 + CS - 1) / CS, body = 0, blocks, tables, host, l1_off;
	size_t i = 0;
	int r;

	w->begun = true;
	for (uint64_t k = 0; k < w->l1_entries; k++) { /* each range: its L2 table and data */
		uint64_t n = plan_range(w, i = run_of_range(w, i, k), k, 0, NULL);
		body += n ? n + 1 : 0;
	}
	ims_format__qcow2_refcount_layout(1 + l1c + body, &blocks, &tables);
	w->total = 1 + l1c + blocks + tables + body;
	host = 1 + l1c + blocks + tables;
	i = 0;
	for (uint64_t k = 0; k < w->l1_entries; k++) {
		uint64_t n = plan_range(w, i = run_of_range(w, i, k), k, 0, NULL);
		w->l1[k] = n ? host * CS : 0;
		host += n ? n + 1 : 0;
	}
	uint8_t *h = header(w, CS, (1 + l1c + blocks) * CS, tables);
	if ((r = pwrite_full(w, h, CS, 0)) < 0)
		return r;
	w->next = 1;
	if ((r = write_l1(w, &l1_off)) < 0 ||
	    (r = put_refcounts(w, w->total, blocks, tables, &l1_off)) < 0)
		return r;
	w->cur_run = 0;
	w->cur = w->nruns ? w->runs[0] : NONE;
	w->cur_host = w->cur == NONE ? 0 : w->l1[w->cur / L2_ENTRIES] / CS + 1;
	w->l2_out = 0;
	w->l2_run = 0;
	return 0;
}

/* A stream: the cursor to the next planned cluster. */
static void cursor_next(ims_qcow2_writer *w)
{
	uint64_t k = w->cur / L2_ENTRIES;

	if (++w->cur >= w->runs[2 * w->cur_run + 1]) {
		w->cur_run++;
		w->cur = w->cur_run < w->nruns ? w->runs[2 * w->cur_run] : NONE;
	}
	if (w->cur == NONE)
		return;
	if (w->cur / L2_ENTRIES != k) /* a new range: its data after its L2 table */
		w->cur_host = w->l1[w->cur / L2_ENTRIES] / CS + 1;
	else
		w->cur_host++;
}

/* A stream: the L2 tables of L1 entries up to @p k (NONE: all) not put out yet. */
static int emit_l2_upto(ims_qcow2_writer *w, uint64_t k)
{
	int r;

	for (; w->l2_out < w->l1_entries && (k == NONE || w->l2_out <= k); w->l2_out++) {
		if (!w->l1[w->l2_out])
			continue;
		w->l2_run = run_of_range(w, w->l2_run, w->l2_out);
		memset(w->l2, 0, CS);
		plan_range(w, w->l2_run, w->l2_out, w->l1[w->l2_out] / CS, w->l2);
		if ((r = pwrite_full(w, w->l2, CS, w->l1[w->l2_out])) < 0)
			return r;
	}
	return 0;
}

/* A stream: guest cluster @p index (not all zeros) at its planned place. */
static int stream_cluster(ims_qcow2_writer *w, uint64_t index, const uint8_t *data)
{
	int r;

	while (w->cur != NONE && w->cur < index)
		cursor_next(w);
	if (w->cur != index)
		return w->b.failed = ims_error_set(-EINVAL,
						   "qcow2 writer: data at offset %" PRIu64
						   " where the allocation map had none",
						   index * CS);
	if ((r = emit_l2_upto(w, index / L2_ENTRIES)) < 0 ||
	    (r = pwrite_full(w, data, CS, w->cur_host * CS)) < 0)
		return r;
	cursor_next(w);
	return 0;
}

/* Write guest cluster @p index from @p data (CS bytes) if it holds a non-zero byte. */
static int store_cluster(ims_qcow2_writer *w, uint64_t index, const uint8_t *data)
{
	uint64_t l1i = index / L2_ENTRIES;
	int r;

	if (ims_format__all_zero(data, CS))
		return 0;
	if (w->b.out_fn)
		return stream_cluster(w, index, data);
	if (w->l2_index != l1i) {
		r = flush_l2(w);
		if (r < 0)
			return r;
		memset(w->l2, 0, CS);
		w->l2_index = l1i;
	}
	r = pwrite_full(w, data, CS, w->next * CS);
	if (r < 0)
		return r;
	ims_format__put_be64(w->l2 + (index % L2_ENTRIES) * 8, w->next * CS | OFLAG_COPIED);
	w->l2_used = true;
	w->next++;
	return 0;
}

/* The base's begin(): a stream's head, before its first cluster. */
static int begin(ims_format__writer *b)
{
	ims_qcow2_writer *w = (ims_qcow2_writer *)b;

	return w->b.out_fn && !w->begun ? stream_begin(w) : 0;
}

/* The base's store(): one whole cluster. */
static int store(ims_format__writer *b, uint64_t index, const uint8_t *data, uint64_t whole)
{
	int r = store_cluster((ims_qcow2_writer *)b, index, data);

	(void)whole;
	return r < 0 ? r : 1;
}

static const ims_format__writer_ops qcow2_ops = {
	.what = "qcow2 writer",
	.begin = begin,
	.store = store,
};

static int open_writer(ims_qcow2_writer **out, int fd, ims_format__writer_fn fn, void *fn_ctx,
		       uint64_t virtual_size)
{
	ims_format__writer *b = NULL;
	ims_qcow2_writer *w = NULL;
	int r;

	if ((r = ims_format__writer_check_open(out, fd, fn, virtual_size, qcow2_ops.what)) < 0)
		return r;
	if (virtual_size > MAX_L1_ENTRIES * L2_RANGE)
		return ims_error_set(-EINVAL,
				     "qcow2 writer: virtual size %" PRIu64 " is beyond the "
				     "%" PRIu64 " bytes an image of 64 KiB clusters addresses",
				     virtual_size, MAX_L1_ENTRIES * L2_RANGE);
	if ((r = ims_format__writer_new(&b, sizeof(*w), &qcow2_ops, fd, fn, fn_ctx, virtual_size,
					CS)) < 0)
		return r;
	w = (ims_qcow2_writer *)b;
	w->l1_entries = (virtual_size + L2_RANGE - 1) / L2_RANGE;
	w->l1 = calloc((size_t)w->l1_entries, sizeof(*w->l1));
	w->l2 = malloc(CS);
	if (!w->l1 || !w->l2) {
		r = ims_error_set(-ENOMEM,
				  "qcow2 writer: out of memory for the tables of %" PRIu64 " bytes",
				  virtual_size);
		goto out;
	}
	w->l2_index = NONE;
	w->next = 1; /* cluster 0 is the header's */
	*out = w;
	w = NULL;
out:
	ims_qcow2_writer_free(w);
	return r;
}

int ims_qcow2_writer_open(ims_qcow2_writer **out, int fd, uint64_t virtual_size)
{
	return open_writer(out, fd, NULL, NULL, virtual_size);
}

int ims_qcow2_writer_open_fn(ims_qcow2_writer **out,
			     int (*fn)(void *ctx, const void *buf, size_t len, uint64_t off),
			     void *ctx, uint64_t virtual_size)
{
	return open_writer(out, -1, fn, ctx, virtual_size);
}

int ims_qcow2_writer_plan(ims_qcow2_writer *w, uint64_t offset, uint64_t len)
{
	if (!w || !w->b.out_fn || w->begun)
		return ims_error_set(-EINVAL, "qcow2 writer: only a stream is planned, before "
					      "its first write");
	if (offset > w->b.vsize || len > w->b.vsize - offset)
		return ims_error_set(-EINVAL,
				     "qcow2 writer: %" PRIu64 " bytes at offset %" PRIu64
				     " pass the virtual size %" PRIu64,
				     len, offset, w->b.vsize);
	if (!len)
		return 0;
	uint64_t a = offset / CS, b = (offset + len + CS - 1) / CS;
	if (w->nruns) {
		uint64_t *last = &w->runs[2 * (w->nruns - 1)];
		if (a < last[0])
			return ims_error_set(-EINVAL,
					     "qcow2 writer: the plan goes back to offset "
					     "%" PRIu64,
					     offset);
		if (a <= last[1]) { /* overlapping or adjacent: one run */
			if (b > last[1])
				last[1] = b;
			return 0;
		}
	}
	if (w->nruns == w->runs_cap) {
		size_t cap = w->runs_cap ? 2 * w->runs_cap : 64;
		uint64_t *v = realloc(w->runs, cap * 2 * sizeof(*v));
		if (!v)
			return ims_error_set(-ENOMEM, "qcow2 writer: out of memory for the plan");
		w->runs = v;
		w->runs_cap = cap;
	}
	w->runs[2 * w->nruns] = a;
	w->runs[2 * w->nruns + 1] = b;
	w->nruns++;
	return 0;
}

int ims_qcow2_writer_write(ims_qcow2_writer *w, uint64_t offset, const void *buf, size_t len)
{
	if (!w)
		return ims_error_set(-EINVAL, "qcow2 writer: no writer or no data");
	return ims_format__writer_write(&w->b, offset, buf, len);
}

void ims_format__qcow2_refcount_layout(uint64_t data_clusters, uint64_t *blocks,
				       uint64_t *table_clusters)
{
	uint64_t b = 0, t = 0;

	/* the refcount structures count themselves: grow them until they cover it all */
	for (;;) {
		uint64_t total = data_clusters + b + t;
		uint64_t nb = (total + REFS_PER_BLOCK - 1) / REFS_PER_BLOCK;
		uint64_t nt = (nb + RT_ENTRIES - 1) / RT_ENTRIES;
		if (nb == b && nt == t)
			break;
		b = nb;
		t = nt;
	}
	*blocks = b;
	*table_clusters = t;
}

static int write_l1(ims_qcow2_writer *w, uint64_t *l1_off)
{
	uint64_t i, at = w->next;
	int r;

	*l1_off = at * CS;
	for (i = 0; i < w->l1_entries; i += L2_ENTRIES) {
		uint64_t j, n = w->l1_entries - i < L2_ENTRIES ? w->l1_entries - i : L2_ENTRIES;

		memset(w->b.unit, 0, CS);
		for (j = 0; j < n; j++)
			if (w->l1[i + j])
				ims_format__put_be64(w->b.unit + j * 8,
						     w->l1[i + j] | OFLAG_COPIED);
		r = pwrite_full(w, w->b.unit, CS, w->next * CS);
		if (r < 0)
			return r;
		w->next++;
	}
	return 0;
}

/* @p blocks refcount blocks at w->next counting 1 for each of @p total clusters, then the
 * refcount table of @p tables clusters (at *@p rt_off). */
static int put_refcounts(ims_qcow2_writer *w, uint64_t total, uint64_t blocks, uint64_t tables,
			 uint64_t *rt_off)
{
	uint64_t first_block = w->next, b, i;
	int r;

	(void)tables;
	for (b = 0; b < blocks; b++) {
		uint64_t n = total - b * REFS_PER_BLOCK;

		if (n > REFS_PER_BLOCK)
			n = REFS_PER_BLOCK;
		memset(w->b.unit, 0, CS);
		for (i = 0; i < n; i++)
			ims_format__put_be16(w->b.unit + i * 2, 1);
		r = pwrite_full(w, w->b.unit, CS, w->next * CS);
		if (r < 0)
			return r;
		w->next++;
	}
	*rt_off = w->next * CS;
	for (b = 0; b < blocks; b += RT_ENTRIES) {
		memset(w->b.unit, 0, CS);
		for (i = 0; i < RT_ENTRIES && b + i < blocks; i++)
			ims_format__put_be64(w->b.unit + i * 8, (first_block + b + i) * CS);
		r = pwrite_full(w, w->b.unit, CS, w->next * CS);
		if (r < 0)
			return r;
		w->next++;
	}
	return 0;
}

static int write_refcounts(ims_qcow2_writer *w, uint64_t *rt_off, uint64_t *rt_clusters)
{
	uint64_t blocks, tables;

	ims_format__qcow2_refcount_layout(w->next, &blocks, &tables);
	*rt_clusters = tables;
	return put_refcounts(w, w->next + blocks + tables, blocks, tables, rt_off);
}

int ims_qcow2_writer_finish(ims_qcow2_writer *w)
{
	uint64_t l1_off, rt_off, rt_clusters;
	uint8_t *h;
	struct stat st;
	int r;

	if (!w)
		return ims_error_set(-EINVAL, "qcow2 writer: no writer");
	r = ims_format__writer_end(&w->b);
	if (r < 0)
		return r;
	if (w->b.out_fn) { /* a stream: the L2 tables not out yet, zeros to the end */
		if ((r = emit_l2_upto(w, NONE)) < 0 ||
		    (r = pwrite_full(w, NULL, 0, w->total * CS)) < 0)
			return r;
		w->b.finished = true;
		return 0;
	}
	r = flush_l2(w);
	if (r < 0)
		return r;
	r = write_l1(w, &l1_off);
	if (r < 0)
		return r;
	r = write_refcounts(w, &rt_off, &rt_clusters);
	if (r < 0)
		return r;

	/* the header last: until it is there, the file is no image */
	h = header(w, l1_off, rt_off, rt_clusters);
	/* byte 104: compression type 0 (deflate); the extensions end at once after it */
	r = pwrite_full(w, h, CS, 0);
	if (r < 0)
		return r;
	/* a file that held more before ends where the image does */
	if (fstat(w->b.fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_size > w->next * CS && ftruncate(w->b.fd, (off_t)(w->next * CS)) < 0) {
		int err = errno;
		w->b.failed = ims_error_set(
			-err, "qcow2 writer: cannot truncate the file to %" PRIu64 " bytes: %s",
			w->next * CS, ims_strerror(err));
		return w->b.failed;
	}
	w->b.finished = true;
	return 0;
}

void ims_qcow2_writer_free(ims_qcow2_writer *w)
{
	if (!w)
		return;
	free(w->l1);
	free(w->l2);
	free(w->runs);
	ims_format__writer_free(&w->b);
}
