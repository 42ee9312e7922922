/*
 * tier/manifest.h: what cold tiering stores, as bytes: sealed objects (chunks and manifests)
 * and the manifest of a cold image.
 *
 * Pure logic (no Ceph, no network): the unit tests and the fuzzer link it alone (library
 * ims_tier_codec).
 *
 * A sealed object is
 *
 *     "IMS1" | flags (1 byte) | 3 zero bytes | nonce (12 bytes) | ciphertext | GCM tag (16 bytes)
 *
 * where the plaintext is the data, zstd-compressed when flags has IMS_SEAL_ZSTD, encrypted with
 * AES-256-GCM under the target's key and a random 96-bit nonce drawn for every object (never
 * derived from the content, so never reused under one key). The first 20 bytes and the
 * object's key in the bucket are the additional authenticated data: an object copied to
 * another key, or a header altered, fails authentication.
 *
 * Chunks are named by the SHA-256 of their plaintext ("chunks/<64 hex>"), which is what makes
 * identical chunks of every image one object; the reader checks that hash after decrypting
 * and decompressing.
 */
#ifndef IMS_TIER_MANIFEST_H
#define IMS_TIER_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/hash.h"

#define IMS_SEAL_KEY_LEN    32
#define IMS_SEAL_HEADER_LEN 20
#define IMS_SEAL_TAG_LEN    16
#define IMS_SEAL_OVERHEAD   (IMS_SEAL_HEADER_LEN + IMS_SEAL_TAG_LEN)
#define IMS_SEAL_ZSTD	    0x01

#define IMS_MANIFEST_VERSION	 1
#define IMS_MANIFEST_MAX_BYTES	 (256u << 20) /* a manifest larger than this is refused */
#define IMS_CHUNK_SIZE_MIN	 (64u << 10)
#define IMS_CHUNK_SIZE_MAX	 (64u << 20)
#define IMS_CHUNK_SIZE_DEFAULT	 (4u << 20)
#define IMS_MANIFEST_SIZE_MAX	 (1ull << 50) /* 1 PiB */
#define IMS_MANIFEST_TAGS_MAX	 1024	      /* a manifest with more tags is refused */
#define IMS_MANIFEST_WRAPPED_MAX 160	      /* IMS_CRYPT_WRAPPED_MAX (store/crypt.h) */

/** The 32-byte key of a target. */
typedef struct {
	uint8_t key[IMS_SEAL_KEY_LEN];
} ims_seal_key;

/**
 * Read a key file: 64 hex digits (surrounding white space allowed). The file must be a regular
 * file that neither group nor others may read.
 *
 * @returns -ENOENT, -EPERM if others may read it, -EINVAL if it holds no 64-digit hex key.
 */
int ims_seal_key_load(ims_seal_key *out, const char *path);

/**
 * Seal @p len bytes: compress with zstd (kept only if it saves space), encrypt, authenticate
 * with @p aad (the object's key).
 *
 * @param[out] out malloc'ed sealed bytes; *out_len their count.
 * @param level zstd level; 0: 3.
 * @returns -ENOMEM, -EIO if no random nonce could be had.
 */
int ims_seal(uint8_t **out, size_t *out_len, const ims_seal_key *key, const char *aad,
	     const void *data, size_t len, int level);

/**
 * Open a sealed object: authenticate, decrypt, decompress.
 *
 * @param max the largest plaintext accepted.
 * @returns -EBADMSG if the bytes are not a sealed object, fail authentication (corrupt, under
 *          another key, or stored under another name) or do not decompress to at most @p max
 *          bytes; -ENOMEM. The message says which.
 */
int ims_unseal(uint8_t **out, size_t *out_len, const ims_seal_key *key, const char *aad,
	       const void *sealed, size_t len, size_t max);

/** A chunk of image data: [off, off + len) whose SHA-256 is @p sha256. */
typedef struct {
	uint64_t off;
	uint32_t len;
	uint8_t sha256[IMS_SHA256_LEN];
} ims_manifest_chunk;

/** A range of the image that reads as zeros. */
typedef struct {
	uint64_t off;
	uint64_t len;
} ims_manifest_range;

typedef struct {
	char *key;
	char *value;
} ims_manifest_tag;

/**
 * The manifest of a cold image. Chunks are sorted by offset and do not overlap; the zero
 * ranges are exactly the gaps between them.
 */
typedef struct {
	char *name; /* the cold image's name: "POOL/IMAGE" or "POOL/IMAGE@SNAP" */
	char *pool;
	char *image;
	char *snap; /* "" for the head */
	uint64_t size;
	uint64_t features; /* RBD feature bits */
	unsigned order;	   /* RBD object size 2^order */
	uint64_t chunk_size;
	int64_t pushed;	      /* unix seconds */
	char *source;	      /* the catalog's source of the image ("raw", "new", ...), may be "" */
	char *content_sha256; /* the catalog's content hash, may be "" */
	uint64_t stored_bytes; /* sealed bytes this push uploaded (new chunks only) */
	/* an encrypted image (store/crypt.h): its data key as wrapped by the site's KEK, or
	 * "shredded" once destroyed; "" for a plain image. The chunks hold its ciphertext. Never
	 * longer than IMS_MANIFEST_WRAPPED_MAX - 1 bytes of [0-9a-z:]. */
	char *wrapped_key;
	ims_manifest_chunk *chunks;
	size_t nchunks;
	ims_manifest_range *zeros;
	size_t nzeros;
	ims_manifest_tag *tags;
	size_t ntags;
} ims_manifest;

/**
 * Encode as JSON.
 *
 * @param[out] out malloc'ed, NUL-terminated; *len without the NUL.
 */
int ims_manifest_encode(char **out, size_t *len, const ims_manifest *m);

/**
 * Parse and check a manifest from untrusted bytes: every field of the right type and range,
 * names valid, chunks sorted, non-overlapping, inside the image and at most chunk_size long,
 * zero ranges exactly the gaps between them.
 *
 * @param[out] out free with ims_manifest_free().
 * @returns -EBADMSG with a message naming the first problem, -ENOMEM.
 */
int ims_manifest_parse(ims_manifest **out, const char *text, size_t len);

/** Fill m->zeros with the gaps between m->chunks (which must be sorted). */
int ims_manifest_fill_zeros(ims_manifest *m);

void ims_manifest_free(ims_manifest *m);

/** The key of a chunk in the bucket: "chunks/<64 hex>" into @p buf (at least 72 bytes). */
void ims_manifest_chunk_key(char *buf, size_t len, const uint8_t sha256[IMS_SHA256_LEN]);

/** The key of a manifest: "manifests/<name>". @returns -ENAMETOOLONG. */
int ims_manifest_key(char *buf, size_t len, const char *name);

#endif
