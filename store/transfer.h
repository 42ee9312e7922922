/*
 * store/transfer.h: import of disk image files into RBD images, and export of images or
 * snapshots to raw, qcow2 or vmdk (streamOptimized) files.
 *
 * Import reads with bounded memory (a fixed pool of 4 MiB buffers), writes with parallel
 * I/O, never writes runs of zeros, and writes into a temporary image that is renamed into
 * place only when complete: a failed, cancelled or killed import leaves nothing under the
 * requested name. ims_store_cleanup_tmp() removes the temporaries of killed imports.
 * A temporary is owned (store_internal.h) from before it is created until it is gone.
 */
#ifndef IMS_STORE_TRANSFER_H
#define IMS_STORE_TRANSFER_H

#include <stdint.h>

#include "common/hash.h"
#include "store/format.h"
#include "store/image.h"
#include "store/site.h"

#define IMS_TRANSFER_OPTS_VERSION 1
typedef struct {
	unsigned version;
	ims_format_kind format;	      /* import: as declared (AUTO detects); export: RAW or QCOW2 */
	ims_image_create_opts create; /* import: features, data pool, order (size is the image's) */
	unsigned concurrency;	      /* parallel I/Os; 0: 8 */
	uint64_t inflight_bytes;      /* memory for data in flight; 0: 64 MiB */
	ims_progress_fn progress;     /* may be NULL; non-zero return cancels */
	void *progress_ctx;
	const char *source_name; /* import: the file's name, for messages */
	bool raw_as_declared;	 /* import with format RAW: a raw disk whatever its first
				    bytes look like (ims_format_open_raw()); for bytes the
				    caller made itself, e.g. a restore */
	bool no_follow;		 /* ims_image_import_file(): refuse a path whose last part
				    is a symbolic link (-ELOOP): the caller checked the
				    resolved path, and a link swapped in since must not
				    lead elsewhere (the daemon's import_dirs) */
	const void *passphrase;	 /* import: of a LUKS-encrypted qcow2 (borrowed, never
				    logged); NULL: none, and an encrypted image is refused */
	size_t passphrase_len;
	/* import: NULL or "", else the bytes are the ciphertext of an encrypted image (a tiered
	 * one's restore, imported raw) and this its wrapped data key (store/crypt.h), given to
	 * the copy before it takes its name */
	const char *wrapped_key;
} ims_transfer_opts;
#define IMS_TRANSFER_OPTS_INIT                                                                     \
	{                                                                                          \
		.version = IMS_TRANSFER_OPTS_VERSION, .create = IMS_IMAGE_CREATE_OPTS_INIT         \
	}

typedef struct {
	ims_format_kind format;
	uint64_t virtual_size;
	uint64_t bytes_data; /* bytes written (import) or read (export) as data */
	uint64_t bytes_zero; /* bytes skipped as zeros */
	char content_sha256[IMS_SHA256_HEX_LEN]; /* import: see common/hash.h */
} ims_transfer_result;

/**
 * Import the image in @p src into a new image @p pool/@p name.
 *
 * @param[out] out what was imported (may be NULL).
 * @returns -EEXIST if the name is taken (checked first, and again at the rename),
 *          -EINVAL or -ENOTSUP if the source is not a valid or supported image (see
 *          ims_format_open), -ECANCELED if progress asked to stop, an error of the cluster.
 *          On any error no image carries @p name and the temporary is removed.
 */
int ims_image_import(ims_transfer_result *out, ims_site *site, const char *pool, const char *name,
		     const ims_source *src, const ims_transfer_opts *opts);

/** ims_image_import() from a file. @returns -ENOENT or -EACCES if it cannot be opened, -ELOOP
 *  if it is a symbolic link and opts->no_follow is set. */
int ims_image_import_file(ims_transfer_result *out, ims_site *site, const char *pool,
			  const char *name, const char *path, const ims_transfer_opts *opts);

/**
 * Export @p pool/@p name (at @p snap, or the head when NULL) to @p path as a raw sparse file
 * or a qcow2 image. The data goes to "PATH.partial" first, renamed to PATH when complete.
 *
 * @returns -EEXIST if @p path exists, -ENOENT for an unknown image or snapshot,
 *          -EINVAL for a format other than raw, qcow2 or vmdk, -ECANCELED, -EIO or -ENOSPC.
 */
int ims_image_export_file(ims_transfer_result *out, ims_site *site, const char *pool,
			  const char *name, const char *snap, const char *path,
			  const ims_transfer_opts *opts);

/**
 * Export as ims_image_export_file(), raw, vmdk or qcow2, into @p stream (an outbound stream made
 * with ims_source_growing_new(fd -1, size UINT64_MAX) and ims_source_growing_buffer(wfd -1)):
 * every byte in order (a raw export's zeros too), waiting while the stream's memory is full;
 * at the end ims_source_growing_end(). Does not wait for the client to read the rest.
 *
 * A qcow2 is laid out from the image's allocation map first (ims_qcow2_writer_plan()): its
 * header and tables come before the data, and allocated clusters that hold zeros stay zeros
 * (holes at a client that makes runs of zeros holes).
 *
 * @returns as ims_image_export_file(); -ETIMEDOUT when the client read none for the stream's
 *          stall time.
 */
int ims_image_export_stream(ims_transfer_result *out, ims_site *site, const char *pool,
			    const char *name, const char *snap, ims_source_growing *stream,
			    const ims_transfer_opts *o);

/**
 * Remove the temporary images of imports and restores that were interrupted (a killed
 * daemon's), in @p pool, or when @p pool is NULL in every pool with the rbd application or
 * none (not rgw's, cephfs' or the manager's).
 * A temporary is left alone while a live operation of any process owns it (its owner object
 * is watched, see store_internal.h) or a client has it open, this process included.
 *
 * @param[out] removed how many were removed (may be NULL; written only on success).
 * @returns -ENOENT for an unknown @p pool; a cluster error (with every pool still tried).
 */
int ims_store_cleanup_tmp(unsigned *removed, ims_site *site, const char *pool);

#endif
