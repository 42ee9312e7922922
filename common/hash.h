/*
 * common/hash.h: SHA-256 (OpenSSL libcrypto underneath) and the content hash of a disk.
 */
#ifndef IMS_COMMON_HASH_H
#define IMS_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

#define IMS_SHA256_LEN	   32
#define IMS_SHA256_HEX_LEN 65 /* 64 digits and a NUL */

/* The block size of a content hash: fixed forever, or hashes stop matching. */
#define IMS_CONTENT_BLOCK (4u << 20)

typedef struct ims_sha256 ims_sha256;

/** @returns -ENOMEM. */
int ims_sha256_new(ims_sha256 **out);
void ims_sha256_update(ims_sha256 *h, const void *data, size_t len);
/** Write the digest and reset @p h for reuse. */
void ims_sha256_final(uint8_t out[IMS_SHA256_LEN], ims_sha256 *h);
void ims_sha256_free(ims_sha256 *h);

/** One-shot SHA-256 of @p len bytes. */
void ims_sha256_buf(uint8_t out[IMS_SHA256_LEN], const void *data, size_t len);

/** Lower-case hex of a digest into @p hex. */
void ims_sha256_hex(char hex[IMS_SHA256_HEX_LEN], const uint8_t digest[IMS_SHA256_LEN]);

/**
 * The digest of @p len zero bytes (len <= IMS_CONTENT_BLOCK), computed once per length and
 * cached for the full block: the content hash of a sparse disk costs only its data.
 *
 * @returns -ENOMEM.
 */
int ims_sha256_zeros(uint8_t out[IMS_SHA256_LEN], size_t len);

/**
 * Fill @p out with @p len - 1 random lower-case hex digits and a NUL (ids of operations,
 * uploads, leases, temporary images), from the system's CSPRNG.
 *
 * @returns -EIO if no randomness could be had.
 */
int ims_random_hex(char *out, size_t len);

/*
 * The content hash of a disk of size S: SHA-256 over the concatenated SHA-256 digests of its
 * consecutive IMS_CONTENT_BLOCK-byte blocks (the last one possibly shorter). The same disk
 * has the same content hash whatever format it was imported from.
 */

#endif
