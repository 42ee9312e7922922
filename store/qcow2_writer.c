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
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "store/format_internal.h"

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
	int fd;
	uint64_t vsize;
	uint64_t l1_entries;
	uint64_t *l1;	   /* host offsets of the L2 tables written, 0 for none */
	uint8_t *l2;	   /* the current L2 table, big-endian as in the file */
	uint64_t l2_index; /* the L1 entry it belongs to, NONE */
	bool l2_used;
	uint8_t *cluster;	/* the guest cluster being assembled, or a scratch cluster */
	uint64_t cluster_index; /* NONE */
	uint64_t pos;		/* writes start at or after this guest offset */
	uint64_t next;		/* the next free host cluster */
	int failed;		/* the error that stopped the writer, 0 */
	bool finished;
};

static int pwrite_full(ims_qcow2_writer *w, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n =
			pwrite(w->fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : EIO;
			w->failed = ims_error_set(
				-err,
				"qcow2 writer: write of %zu bytes at offset %" PRIu64 " failed: %s",
				len - done, off + done, ims_strerror(err));
			return w->failed;
		}
		done += (size_t)n;
	}
	return 0;
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

/* Write guest cluster @p index from @p data (CS bytes) if it holds a non-zero byte. */
static int store_cluster(ims_qcow2_writer *w, uint64_t index, const uint8_t *data)
{
	uint64_t l1i = index / L2_ENTRIES;
	int r;

	if (ims_format__all_zero(data, CS))
		return 0;
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

static int flush_cluster(ims_qcow2_writer *w)
{
	uint64_t index = w->cluster_index;

	if (index == NONE)
		return 0;
	w->cluster_index = NONE;
	return store_cluster(w, index, w->cluster);
}

int ims_qcow2_writer_open(ims_qcow2_writer **out, int fd, uint64_t virtual_size)
{
	ims_qcow2_writer *w = NULL;
	int r = 0;

	if (!out || fd < 0)
		return ims_error_set(-EINVAL, "qcow2 writer: no file to write to");
	if (!virtual_size || virtual_size % 512)
		return ims_error_set(-EINVAL,
				     "qcow2 writer: virtual size %" PRIu64 " is not a "
				     "positive multiple of 512",
				     virtual_size);
	if (virtual_size > MAX_L1_ENTRIES * L2_RANGE)
		return ims_error_set(-EINVAL,
				     "qcow2 writer: virtual size %" PRIu64 " is beyond the "
				     "%" PRIu64 " bytes an image of 64 KiB clusters addresses",
				     virtual_size, MAX_L1_ENTRIES * L2_RANGE);
	w = calloc(1, sizeof(*w));
	if (!w)
		return ims_error_set(-ENOMEM, "qcow2 writer: out of memory");
	w->fd = fd;
	w->vsize = virtual_size;
	w->l1_entries = (virtual_size + L2_RANGE - 1) / L2_RANGE;
	w->l1 = calloc((size_t)w->l1_entries, sizeof(*w->l1));
	w->l2 = malloc(CS);
	w->cluster = malloc(CS);
	if (!w->l1 || !w->l2 || !w->cluster) {
		r = ims_error_set(-ENOMEM,
				  "qcow2 writer: out of memory for the tables of %" PRIu64 " bytes",
				  virtual_size);
		goto out;
	}
	w->l2_index = NONE;
	w->cluster_index = NONE;
	w->next = 1; /* cluster 0 is the header's */
	*out = w;
	w = NULL;
out:
	ims_qcow2_writer_free(w);
	return r;
}

static int check_usable(const ims_qcow2_writer *w)
{
	if (w->failed)
		return ims_error_set(w->failed, "qcow2 writer: an earlier write failed");
	if (w->finished)
		return ims_error_set(-EINVAL, "qcow2 writer: the image is already finished");
	return 0;
}

int ims_qcow2_writer_write(ims_qcow2_writer *w, uint64_t offset, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int r;

	if (!w || (!buf && len))
		return ims_error_set(-EINVAL, "qcow2 writer: no writer or no data");
	r = check_usable(w);
	if (r < 0)
		return r;
	if (offset < w->pos)
		return ims_error_set(-EINVAL,
				     "qcow2 writer: write at offset %" PRIu64 " comes before "
				     "offset %" PRIu64 ", where the last one ended",
				     offset, w->pos);
	if (offset > w->vsize || len > w->vsize - offset)
		return ims_error_set(-EINVAL,
				     "qcow2 writer: write of %zu bytes at offset %" PRIu64
				     " passes the virtual size %" PRIu64,
				     len, offset, w->vsize);
	while (len) {
		uint64_t index = offset / CS;
		size_t in = (size_t)(offset % CS), n = len < CS - in ? len : (size_t)(CS - in);

		if (index != w->cluster_index) {
			r = flush_cluster(w);
			if (r < 0)
				return r;
		}
		if (n == CS) {
			/* a whole cluster: straight from the caller's buffer */
			r = store_cluster(w, index, p);
			if (r < 0)
				return r;
		} else {
			if (index != w->cluster_index) {
				memset(w->cluster, 0, CS);
				w->cluster_index = index;
			}
			memcpy(w->cluster + in, p, n);
		}
		offset += n;
		p += n;
		len -= n;
		w->pos = offset;
	}
	return 0;
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

		memset(w->cluster, 0, CS);
		for (j = 0; j < n; j++)
			if (w->l1[i + j])
				ims_format__put_be64(w->cluster + j * 8,
						     w->l1[i + j] | OFLAG_COPIED);
		r = pwrite_full(w, w->cluster, CS, w->next * CS);
		if (r < 0)
			return r;
		w->next++;
	}
	return 0;
}

static int write_refcounts(ims_qcow2_writer *w, uint64_t *rt_off, uint64_t *rt_clusters)
{
	uint64_t blocks, tables, first_block, total, b, i;
	int r;

	ims_format__qcow2_refcount_layout(w->next, &blocks, &tables);
	first_block = w->next;
	total = w->next + blocks + tables;
	for (b = 0; b < blocks; b++) {
		uint64_t n = total - b * REFS_PER_BLOCK;

		if (n > REFS_PER_BLOCK)
			n = REFS_PER_BLOCK;
		memset(w->cluster, 0, CS);
		for (i = 0; i < n; i++)
			ims_format__put_be16(w->cluster + i * 2, 1);
		r = pwrite_full(w, w->cluster, CS, w->next * CS);
		if (r < 0)
			return r;
		w->next++;
	}
	*rt_off = w->next * CS;
	*rt_clusters = tables;
	for (b = 0; b < blocks; b += RT_ENTRIES) {
		memset(w->cluster, 0, CS);
		for (i = 0; i < RT_ENTRIES && b + i < blocks; i++)
			ims_format__put_be64(w->cluster + i * 8, (first_block + b + i) * CS);
		r = pwrite_full(w, w->cluster, CS, w->next * CS);
		if (r < 0)
			return r;
		w->next++;
	}
	return 0;
}

int ims_qcow2_writer_finish(ims_qcow2_writer *w)
{
	uint64_t l1_off, rt_off, rt_clusters;
	uint8_t *h;
	struct stat st;
	int r;

	if (!w)
		return ims_error_set(-EINVAL, "qcow2 writer: no writer");
	r = check_usable(w);
	if (r < 0)
		return r;
	r = flush_cluster(w);
	if (r < 0)
		return r;
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
	h = w->cluster;
	memset(h, 0, CS);
	ims_format__put_be32(h, 0x514649fbu);
	ims_format__put_be32(h + 4, 3);
	ims_format__put_be32(h + 20, CLUSTER_BITS);
	ims_format__put_be64(h + 24, w->vsize);
	ims_format__put_be32(h + 36, (uint32_t)w->l1_entries);
	ims_format__put_be64(h + 40, l1_off);
	ims_format__put_be64(h + 48, rt_off);
	ims_format__put_be32(h + 56, (uint32_t)rt_clusters);
	ims_format__put_be32(h + 96, 4);
	ims_format__put_be32(h + 100, HEADER_BYTES);
	/* byte 104: compression type 0 (deflate); the extensions end at once after it */
	r = pwrite_full(w, h, CS, 0);
	if (r < 0)
		return r;
	/* a file that held more before ends where the image does */
	if (fstat(w->fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > w->next * CS &&
	    ftruncate(w->fd, (off_t)(w->next * CS)) < 0) {
		int err = errno;
		w->failed = ims_error_set(
			-err, "qcow2 writer: cannot truncate the file to %" PRIu64 " bytes: %s",
			w->next * CS, ims_strerror(err));
		return w->failed;
	}
	w->finished = true;
	return 0;
}

void ims_qcow2_writer_free(ims_qcow2_writer *w)
{
	if (!w)
		return;
	free(w->l1);
	free(w->l2);
	free(w->cluster);
	free(w);
}
