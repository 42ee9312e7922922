/*
 * store/writer_internal.h: what the qcow2 and vmdk writers share (ims_format only).
 *
 * Both turn guest bytes arriving in ascending offsets into a sparse image of fixed units
 * (qcow2's clusters, vmdk's grains), written to a file descriptor or given to a function (a
 * stream). A writer is a struct that starts with an ims_format__writer; the base checks every
 * write, assembles the units that arrive in pieces and hands whole units to the format's
 * store(), which leaves out those of zeros.
 */
#ifndef IMS_STORE_WRITER_INTERNAL_H
#define IMS_STORE_WRITER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ims_format__writer ims_format__writer;

/* Where a stream's bytes go (a writer's _open_fn()). */
typedef int (*ims_format__writer_fn)(void *ctx, const void *buf, size_t len, uint64_t off);

typedef struct {
	const char *what; /* "qcow2 writer": how every message starts */
	/* Before the first unit is assembled or stored, at each write and at finish; NULL. */
	int (*begin)(ims_format__writer *w);
	/* Store guest units from @p index on, from @p data: @p whole (>= 1) whole units are there.
	 * @returns how many it took (1 to @p whole), or a negative errno. */
	int (*store)(ims_format__writer *w, uint64_t index, const uint8_t *data, uint64_t whole);
} ims_format__writer_ops;

struct ims_format__writer {
	const ims_format__writer_ops *ops;
	int fd;
	ims_format__writer_fn out_fn; /* a stream: where the bytes go, NULL */
	void *out_ctx;
	uint64_t vsize;
	uint64_t unit_bytes;
	uint8_t *unit;	     /* the guest unit being assembled, or a scratch unit */
	uint64_t unit_index; /* UINT64_MAX */
	uint64_t pos;	     /* writes start at or after this guest offset */
	int failed;	     /* the error that stopped the writer, 0 */
	bool finished;
};

/* The checks of an open before the format's own: somewhere to write, a size of whole sectors. */
int ims_format__writer_check_open(const void *out, int fd, ims_format__writer_fn fn,
				  uint64_t virtual_size, const char *what);

/* A new writer of @p size bytes (the format's struct) with its unit buffer, in *@p out. */
int ims_format__writer_new(ims_format__writer **out, size_t size, const ims_format__writer_ops *ops,
			   int fd, ims_format__writer_fn fn, void *fn_ctx, uint64_t virtual_size,
			   uint64_t unit_bytes);

/* Free the base's buffers and @p w itself (after the format freed its own). Accepts NULL. */
void ims_format__writer_free(ims_format__writer *w);

/* @p len bytes at @p off of the file (or to the stream); a failure stops the writer. */
int ims_format__writer_put(ims_format__writer *w, const void *buf, size_t len, uint64_t off);

/* 0, or why the writer takes no more: an earlier failure, or finished. */
int ims_format__writer_usable(const ims_format__writer *w);

/* A writer's _write(): guest bytes at @p offset, at or after where the last write ended. */
int ims_format__writer_write(ims_format__writer *w, uint64_t offset, const void *buf, size_t len);

/* The start of a writer's _finish(): usable, begun, the unit being assembled stored. */
int ims_format__writer_end(ims_format__writer *w);

#endif
