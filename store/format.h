/*
 * store/format.h: disk image formats (raw, qcow2, vmdk, vdi, vhdx, vpc) read from untrusted
 * bytes, and the qcow2 and vmdk writers used by export.
 *
 * Pure logic: no Ceph here, so unit tests and fuzzers link it alone (library ims_format).
 * A reader sees the file only through an ims_source, never trusts a size or offset in it, and
 * bounds its memory whatever the file says. The format is detected from the bytes, never from
 * a file name.
 */
#ifndef IMS_STORE_FORMAT_H
#define IMS_STORE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/** Where a reader's bytes come from. */
typedef struct ims_source {
	/**
	 * Read up to @p len bytes at @p off into @p buf. Returns the bytes read (short only at
	 * the end of the source) or a negative errno.
	 */
	ssize_t (*pread)(void *ctx, void *buf, size_t len, uint64_t off);
	uint64_t size; /* bytes in the source */
	void *ctx;
	/**
	 * May be NULL. A source that knows where its zeros are (a cold image's manifest) says
	 * how many bytes from @p off are all zeros (*zero true) or may hold data (*zero false),
	 * at least 1 and at most to the end; a raw reader then maps them as zero extents, so an
	 * import neither reads nor scans them.
	 */
	int (*zeros)(void *ctx, uint64_t off, uint64_t *len, int *zero);
} ims_source;

/** An ims_source over a file descriptor (pread(2)); @p size from fstat. */
void ims_source_fd(ims_source *out, int *fd, uint64_t size); /* ctx = fd, which must outlive it */

/** An ims_source over memory (fuzzers, tests). @p mem must outlive the source. */
typedef struct {
	const uint8_t *data;
	size_t len;
} ims_source_mem_ctx;
void ims_source_mem(ims_source *out, ims_source_mem_ctx *ctx, const void *data, size_t len);

/**
 * An ims_source over a file that is still being written, front to back or nearly (an upload
 * that the daemon imports while its bytes arrive). A read waits until every byte it asks for
 * has arrived: a reader that needs the end of the file first simply waits for it.
 */
typedef struct ims_source_growing ims_source_growing;

/**
 * @param fd the file, read with pread(2); borrowed: it must outlive the source.
 * @param size the bytes the file will hold when complete (the source's size).
 * @param stall_s a read that waits fails with -ETIMEDOUT ("the upload stalled for N s") once
 *        no bytes arrived for this many seconds (at least 1).
 * @param stop may be NULL; called about once a second while a read waits: non-zero makes the
 *        read fail with -ECANCELED (an operation cancelled, a daemon stopping).
 * @returns -ENOMEM.
 */
int ims_source_growing_new(ims_source_growing **out, int fd, uint64_t size, unsigned stall_s,
			   int (*stop)(void *ctx), void *stop_ctx);

/** Fill @p out with the blocking source; its ctx is @p g, which must outlive it. */
void ims_source_growing_source(ims_source *out, ims_source_growing *g);

/**
 * The bytes [0, @p upto) are in the file: wake the readers they unblock. Smaller values than
 * before are ignored. Safe from any thread.
 */
void ims_source_growing_arrived(ims_source_growing *g, uint64_t upto);

/**
 * No more bytes will arrive (the writer gave up): reads that would wait fail with -ECANCELED
 * and the message "@p why". Safe from any thread.
 */
void ims_source_growing_abandon(ims_source_growing *g, const char *why);

/**
 * Keep the upload's bytes in memory as they arrive (ims_source_growing_put()), so that the
 * reader reads them from there, not from the file: a ring of @p bytes (plus 4 MiB kept behind
 * the furthest read, at most the source's size). What leaves the ring is written to the file
 * with @p wfd first (opened O_DIRECT where the filesystem allows it: no page cache), and a read
 * behind the ring (a table read again) reads the file. The ring must hold at least the
 * writer's window past what arrived: a put then always finds room once the reader catches up.
 * Call it before any byte arrives (the file must hold none). Takes @p wfd (closed at free,
 * also on error).
 *
 * With @p wfd -1 the ring is an outbound stream (an export a client downloads while it runs,
 * made with fd -1): no file behind it; the writer puts, the client reads with
 * ims_source_growing_read_some() and says what it took with ims_source_growing_sent(), and
 * what lies 4 MiB behind the first byte not sent leaves the ring for good. A put waits while the
 * ring is full (the client is slow) and fails with -ETIMEDOUT when the client read nothing for the
 * stall time, -ECANCELED when @p stop says so.
 * @returns -ENOMEM.
 */
int ims_source_growing_buffer(ims_source_growing *g, int wfd, size_t bytes);

/** An outbound stream made with size UINT64_MAX (not known yet) ends at @p size: the writer
 *  put every byte before it. Safe from any thread. */
void ims_source_growing_end(ims_source_growing *g, uint64_t size);

/**
 * Read from an outbound stream what has arrived at @p off, at most @p len bytes, waiting at
 * most @p wait_ms for the first one.
 * @param[out] got the bytes copied to @p buf (0 when none arrived in time).
 * @param[out] eof the stream ends at @p off + *got.
 * @returns -ERANGE (@p off past the end, or already out of the ring), -ECANCELED (abandoned:
 *          the writer's message), -EINVAL (no outbound stream).
 */
int ims_source_growing_read_some(size_t *got, bool *eof, ims_source_growing *g, void *buf,
				 size_t len, uint64_t off, unsigned wait_ms);

/**
 * The client was sent [@p from, @p to) of an outbound stream (what
 * ims_source_growing_read_some() gave and the client was sent), in any order: several chunks
 * may be in flight. Once every byte below a point was sent, the writer may go on past it and
 * what lies 4 MiB behind it leaves the ring; a range past a gap waits for the gap (at most 64
 * such ranges are kept). A read alone moves nothing (a reader may look further than it sends),
 * nor does an empty range; bytes not arrived yet are not counted; a range sent again is no
 * harm.
 */
void ims_source_growing_sent(ims_source_growing *g, uint64_t from, uint64_t to);

/**
 * The client was told where an outbound stream ends (an answer that said eof). Until then a
 * client that was sent the last byte before the end was known still asks where it ends:
 * ims_source_growing_drained() waits for that.
 */
void ims_source_growing_told_end(ims_source_growing *g);

/** The source's size: UINT64_MAX while an outbound stream's end is not known. */
uint64_t ims_source_growing_size(ims_source_growing *g);

/**
 * Wait until the client was sent an outbound stream to its end (ims_source_growing_end(),
 * ims_source_growing_sent()) and was told it ends there (ims_source_growing_told_end()), or
 * for the told end IMS_STREAM_END_GRACE_S more at most once every byte was sent (a client
 * that knows the size may never ask).
 * @returns -ETIMEDOUT when it read nothing for the stall time, -ECANCELED (abandoned, stop).
 */
int ims_source_growing_drained(ims_source_growing *g);

#define IMS_STREAM_END_GRACE_S 15 /* ims_source_growing_drained() waits for the told end */

/**
 * Copy @p len bytes at @p off into the ring (ims_source_growing_buffer()); then say they
 * arrived with ims_source_growing_arrived(). @p off must be at or past what arrived, and no
 * two puts may overlap. Waits while the ring is full until the reader moves on.
 * @returns -EINVAL (past the end, before what arrived, no ring); -ECANCELED (abandoned);
 *          -ETIMEDOUT (the reader read nothing for the stall time); -EIO, -ENOSPC (the file).
 */
int ims_source_growing_put(ims_source_growing *g, const void *data, size_t len, uint64_t off);

/** One more owner: each ims_source_growing_free() drops one; the last frees it. */
void ims_source_growing_hold(ims_source_growing *g);

/** Drop an owner; the last one frees the source (no read may be running). Accepts NULL. */
void ims_source_growing_free(ims_source_growing *g);

typedef enum {
	IMS_FORMAT_AUTO = 0, /* as declared: detect from the bytes */
	IMS_FORMAT_RAW = 1,
	IMS_FORMAT_QCOW2 = 2,
	IMS_FORMAT_VMDK = 3,
	IMS_FORMAT_VDI = 4,  /* VirtualBox, dynamic and static */
	IMS_FORMAT_VHDX = 5, /* Hyper-V, dynamic and fixed */
	IMS_FORMAT_VPC = 6,  /* Virtual PC / Azure VHD, dynamic and fixed */
} ims_format_kind;

/** "auto", "raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc". */
const char *ims_format_name(ims_format_kind kind);

/** @returns -EINVAL if @p s names no format. */
int ims_format_parse(ims_format_kind *out, const char *s);

/**
 * The format of the bytes: qcow2, vmdk, vdi, vhdx or vpc by their magic (a fixed VHD by
 * the footer in its last 512 bytes); raw only when they match no format
 * QEMU knows.
 *
 * @returns -ENOTSUP if the bytes are an image of a format imgstore cannot read (qed, parallels,
 * dmg, bochs, cloop, luks): the one-line message names it; a negative errno if the source cannot be
 * read.
 */
int ims_format_detect(ims_format_kind *out, const ims_source *src);

typedef struct ims_format_reader ims_format_reader;

/**
 * Open a reader on @p src. With @p declared other than IMS_FORMAT_AUTO, the detected format
 * must match it.
 *
 * @returns -EINVAL if the bytes are not a valid image of the format, or the format declared
 *          disagrees with the bytes (message names both);
 *          -ENOTSUP if the image is of a format imgstore cannot read (see
 *          ims_format_detect(); also when declared raw, but for luks: declared raw, a whole
 *          disk encrypted inside its guest opens as raw) or uses a feature imgstore refuses
 *          (backing file, external data file, encryption, unknown incompatible features, an
 *          unsupported vmdk variant);
 *          -ENOMEM.
 *
 * The reader keeps a copy of @p src, whose ctx must outlive it. A reader caches tables and
 * the last decompressed cluster: use it from one thread at a time. Its memory is bounded
 * whatever the file says (tables loaded whole are at most 32 MiB and never larger than the
 * file; a few L2 or grain tables are cached). Free it with ims_format_close().
 */
int ims_format_open(ims_format_reader **out, const ims_source *src, ims_format_kind declared);

/**
 * The most PBKDF2 iterations a LUKS key slot or master key digest may ask; all the active
 * slots together may ask 4 times that in rounds (iterations times the key's blocks of the
 * hash's size: 2 slots of a 64-byte key with sha256). A file that asks more is refused before
 * any runs: about a minute of one core at worst (docs/SECURITY.md).
 */
#define IMS_FORMAT_LUKS_MAX_ITERATIONS 10000000u

/** The secret of an encrypted image: the passphrase of a LUKS-encrypted qcow2. */
typedef struct {
	const void *passphrase; /* borrowed; may hold any bytes */
	size_t passphrase_len;
	uint32_t max_iterations; /* 0: IMS_FORMAT_LUKS_MAX_ITERATIONS */
} ims_format_secret;

/**
 * ims_format_open() with a secret (NULL: none). A LUKS-encrypted qcow2 (crypt_method 2)
 * opens with its passphrase and reads decrypted; the key is kept only in the reader.
 *
 * @returns as ims_format_open(), and -EINVAL for an encrypted image without a passphrase,
 *          a passphrase that opens no key slot, a passphrase given for an image that is not
 *          encrypted, or a corrupt encryption header; -ENOTSUP for a cipher, hash or
 *          iteration count imgstore refuses (messages name them).
 */
int ims_format_open_secret(ims_format_reader **out, const ims_source *src, ims_format_kind declared,
			   const ims_format_secret *secret);

/**
 * Open @p src as a raw disk whatever its first bytes look like: for a caller that knows the
 * bytes are a raw disk (a restore of what was pushed as one), which may well begin like a
 * qcow2 or vmdk file (a disk that holds one). Never use it on bytes from outside.
 */
int ims_format_open_raw(ims_format_reader **out, const ims_source *src);

ims_format_kind ims_format_kind_of(const ims_format_reader *r);

/** The size of the disk the image holds (the guest's view), in bytes. */
uint64_t ims_format_virtual_size(const ims_format_reader *r);

typedef enum {
	IMS_EXTENT_DATA = 0, /* bytes to read (they may still be zeros) */
	IMS_EXTENT_ZERO = 1, /* reads as zeros: nothing to write on a fresh image */
} ims_extent_type;

typedef struct {
	uint64_t offset;
	uint64_t length;
	ims_extent_type type;
} ims_extent;

/**
 * Describe the guest range that starts at @p offset: its type and how far it extends with
 * that type (at least 1 byte, at most to the virtual size; a reader may cut it shorter).
 * Walking offset += length from 0 to the virtual size visits the whole disk.
 *
 * @param[out] out the extent.
 * @returns -EINVAL if @p offset >= virtual size or the image is found corrupt on the way.
 */
int ims_format_map(ims_extent *out, ims_format_reader *r, uint64_t offset);

/**
 * Read the guest bytes [@p offset, @p offset + @p len) into @p buf, decompressing as needed;
 * zero areas read as zeros.
 *
 * @returns -EINVAL if the range passes the virtual size or the image is found corrupt (the
 *          message says where), -EIO if the source fails.
 */
int ims_format_read(ims_format_reader *r, uint64_t offset, void *buf, size_t len);

void ims_format_close(ims_format_reader *r);

/*
 * The qcow2 writer: a version 3 image with 64 KiB clusters written front to back on a file
 * descriptor, from data given in ascending guest order. Only clusters that hold a non-zero
 * byte are allocated; the result passes `qemu-img check`.
 */
typedef struct ims_qcow2_writer ims_qcow2_writer;

/**
 * @returns -EINVAL if @p virtual_size is 0, not a multiple of 512 (QEMU would not see the
 *          tail) or beyond what qcow2 addresses with 64 KiB clusters (2 PiB).
 */
int ims_qcow2_writer_open(ims_qcow2_writer **out, int fd, uint64_t virtual_size);

/**
 * Write guest bytes at @p offset. Calls must come in ascending, non-overlapping order;
 * ranges not written read as zeros.
 *
 * @returns -EINVAL on an out-of-order or out-of-range call, -EIO (or the errno of the
 *          write, such as -ENOSPC) on a write error; after a write error every call fails.
 */
int ims_qcow2_writer_write(ims_qcow2_writer *w, uint64_t offset, const void *buf, size_t len);

/**
 * A qcow2 image given to @p fn instead of a file, in ascending offsets, never overlapping, gaps
 * between them zeros (a stream). The clusters that may hold data are planned first with
 * ims_qcow2_writer_plan(): the header and every table come before the data. A planned cluster
 * that stays all zeros is allocated and left as zeros (a hole where the stream makes one).
 * A negative return of @p fn fails the writer with it.
 */
int ims_qcow2_writer_open_fn(ims_qcow2_writer **out,
			     int (*fn)(void *ctx, const void *buf, size_t len, uint64_t off),
			     void *ctx, uint64_t virtual_size);

/**
 * The guest bytes [@p offset, @p offset + @p len) of a stream's image may hold data: their
 * clusters are allocated. Calls in ascending order, all before the first write.
 * @returns -EINVAL (not a stream, after a write, going back, past the virtual size), -ENOMEM.
 *          A write of non-zero data outside the plan fails with -EINVAL.
 */
int ims_qcow2_writer_plan(ims_qcow2_writer *w, uint64_t offset, uint64_t len);

/** Write the tables and the header; the file is a valid image only after this returns 0. */
int ims_qcow2_writer_finish(ims_qcow2_writer *w);

/** Free the writer (after finish, or to abandon the file). Does not close the fd. */
void ims_qcow2_writer_free(ims_qcow2_writer *w);

/*
 * The vmdk writer: a streamOptimized image (what VMware's OVF import takes) of 64 KiB grains,
 * each deflated behind its marker, written front to back on a file descriptor from data given
 * in ascending guest order; only grains that hold a non-zero byte are written. The result
 * passes `qemu-img check`.
 */
typedef struct ims_vmdk_writer ims_vmdk_writer;

/**
 * @param name the file name the descriptor gives the extent (its last component is kept).
 * @returns -EINVAL if @p virtual_size is 0, not a multiple of 512 or needs a grain directory
 *          over 32 MiB (256 TiB).
 */
int ims_vmdk_writer_open(ims_vmdk_writer **out, int fd, uint64_t virtual_size, const char *name);

/**
 * As ims_vmdk_writer_open(), the bytes given to @p fn instead of a file: in ascending order,
 * never overlapping, gaps between them zeros (a stream). A negative return of @p fn fails the
 * writer with it.
 */
int ims_vmdk_writer_open_fn(ims_vmdk_writer **out,
			    int (*fn)(void *ctx, const void *buf, size_t len, uint64_t off),
			    void *ctx, uint64_t virtual_size, const char *name);

/**
 * Write guest bytes at @p offset, as ims_qcow2_writer_write().
 *
 * @returns -EINVAL on an out-of-order or out-of-range call, -EFBIG once the file would pass
 *          2 TiB (what a grain table's 32-bit sectors address), -EIO (or the errno of the
 *          write) on a write error; after a write error every call fails.
 */
int ims_vmdk_writer_write(ims_vmdk_writer *w, uint64_t offset, const void *buf, size_t len);

/** Write the grain directory, the footer and the end-of-stream marker. */
int ims_vmdk_writer_finish(ims_vmdk_writer *w);

/** Free the writer. Does not close the fd. Accepts NULL. */
void ims_vmdk_writer_free(ims_vmdk_writer *w);

#endif
