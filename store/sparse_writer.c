/*
 * store/sparse_writer.c: the base of the qcow2 and vmdk writers (store/writer_internal.h):
 * the checks of every call, the output (a file or a stream) and the units assembled from the
 * pieces that writes bring.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "store/writer_internal.h"

#define NONE UINT64_MAX

int ims_format__writer_check_open(const void *out, int fd, ims_format__writer_fn fn,
				  uint64_t virtual_size, const char *what)
{
	if (!out || (fd < 0 && !fn))
		return ims_error_set(-EINVAL, "%s: no file to write to", what);
	if (!virtual_size || virtual_size % 512)
		return ims_error_set(-EINVAL,
				     "%s: virtual size %" PRIu64 " is not a "
				     "positive multiple of 512",
				     what, virtual_size);
	return 0;
}

int ims_format__writer_new(ims_format__writer **out, size_t size, const ims_format__writer_ops *ops,
			   int fd, ims_format__writer_fn fn, void *fn_ctx, uint64_t virtual_size,
			   uint64_t unit_bytes)
{
	ims_format__writer *w = calloc(1, size);

	*out = NULL;
	if (!w)
		return ims_error_set(-ENOMEM, "%s: out of memory", ops->what);
	*w = (ims_format__writer){.ops = ops,
				  .fd = fd,
				  .out_fn = fn,
				  .out_ctx = fn_ctx,
				  .vsize = virtual_size,
				  .unit_bytes = unit_bytes,
				  .unit = malloc((size_t)unit_bytes),
				  .unit_index = NONE};
	if (!w->unit) {
		free(w);
		return ims_error_set(-ENOMEM,
				     "%s: out of memory for the tables of %" PRIu64 " bytes",
				     ops->what, virtual_size);
	}
	*out = w;
	return 0;
}

void ims_format__writer_free(ims_format__writer *w)
{
	if (!w)
		return;
	free(w->unit);
	free(w);
}

int ims_format__writer_put(ims_format__writer *w, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	if (w->out_fn) {
		int r = w->out_fn(w->out_ctx, buf, len, off);
		if (r < 0)
			w->failed = r;
		return r;
	}
	while (done < len) {
		ssize_t n =
			pwrite(w->fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : EIO;
			w->failed = ims_error_set(
				-err, "%s: write of %zu bytes at offset %" PRIu64 " failed: %s",
				w->ops->what, len - done, off + done, ims_strerror(err));
			return w->failed;
		}
		done += (size_t)n;
	}
	return 0;
}

int ims_format__writer_usable(const ims_format__writer *w)
{
	if (w->failed)
		return ims_error_set(w->failed, "%s: an earlier write failed", w->ops->what);
	if (w->finished)
		return ims_error_set(-EINVAL, "%s: the image is already finished", w->ops->what);
	return 0;
}

/* Store the unit being assembled, if any. */
static int flush_unit(ims_format__writer *w)
{
	uint64_t index = w->unit_index;

	if (index == NONE)
		return 0;
	w->unit_index = NONE;
	int r = w->ops->store(w, index, w->unit, 1);
	return r < 0 ? r : 0;
}

int ims_format__writer_write(ims_format__writer *w, uint64_t offset, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	const char *what = w->ops->what;
	uint64_t us = w->unit_bytes;
	int r;

	if (!buf && len)
		return ims_error_set(-EINVAL, "%s: no writer or no data", what);
	if ((r = ims_format__writer_usable(w)) < 0)
		return r;
	if (offset < w->pos)
		return ims_error_set(-EINVAL,
				     "%s: write at offset %" PRIu64 " comes before "
				     "offset %" PRIu64 ", where the last one ended",
				     what, offset, w->pos);
	if (offset > w->vsize || len > w->vsize - offset)
		return ims_error_set(-EINVAL,
				     "%s: write of %zu bytes at offset %" PRIu64
				     " passes the virtual size %" PRIu64,
				     what, len, offset, w->vsize);
	/* the format's head first (w->unit may be its scratch: before any unit is assembled) */
	if (w->ops->begin && (r = w->ops->begin(w)) < 0)
		return r;
	while (len) {
		uint64_t index = offset / us;
		size_t in = (size_t)(offset % us), n = len < us - in ? len : (size_t)(us - in);

		if (index != w->unit_index && (r = flush_unit(w)) < 0)
			return r;
		if (n == us) {
			/* whole units: straight from the caller's buffer */
			if ((r = w->ops->store(w, index, p, len / us)) < 0)
				return r;
			n = (size_t)((uint64_t)r * us);
		} else {
			if (index != w->unit_index) {
				memset(w->unit, 0, (size_t)us);
				w->unit_index = index;
			}
			memcpy(w->unit + in, p, n);
		}
		offset += n;
		p += n;
		len -= n;
		w->pos = offset;
	}
	return 0;
}

int ims_format__writer_end(ims_format__writer *w)
{
	int r;

	if ((r = ims_format__writer_usable(w)) < 0)
		return r;
	if (w->ops->begin && (r = w->ops->begin(w)) < 0)
		return r;
	return flush_unit(w);
}
