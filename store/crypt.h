/*
 * store/crypt.h: encryption at rest of images with librbd's LUKS2 (AES-256), and the keys.
 *
 * Each site's daemon reads a key-encryption key (KEK) from a file nobody else may read
 * ([server] kek_file). An encrypted image has a random 256-bit data key of its own; the data
 * key, wrapped by the KEK with AES-256-GCM, lives in the image's metadata under
 * IMS_CRYPT_META_KEY, so it travels with the image (replication copies it) and dies with it.
 * The LUKS2 passphrase librbd gets is the data key as 64 hex digits: whoever can unwrap the
 * data key can open the image, nobody else. Destroying the wrapped key (ims_crypt_shred())
 * leaves every copy of the ciphertext unreadable.
 *
 * Wrapped-key format (text, in the metadata): "v1:KEKID:HEX" where KEKID is the first 16 hex
 * digits of SHA-256("imgstore-kek" || KEK), which names the KEK without revealing it, and HEX
 * is nonce (12 bytes) || ciphertext (32) || GCM tag (16), authenticated with
 * IMS_CRYPT_AAD.
 */
#ifndef IMS_STORE_CRYPT_H
#define IMS_STORE_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rbd/librbd.h>

#include "store/site.h"

#define IMS_CRYPT_META_KEY    "imgstore.crypt.key"
#define IMS_CRYPT_SHREDDED    "shredded" /* the key's value once destroyed */
#define IMS_CRYPT_KEY_LEN     32
#define IMS_CRYPT_KEKID_LEN   16 /* hex digits */
#define IMS_CRYPT_PASS_LEN    (2 * IMS_CRYPT_KEY_LEN)
#define IMS_CRYPT_WRAPPED_MAX 160 /* bytes of the metadata value, with its NUL */
/* What librbd's LUKS2 header takes at the start of an image (Ceph 16): the image is that
 * much larger than the plaintext it holds. */
#define IMS_CRYPT_LUKS2_HEADER (16ull << 20)

/** A key-encryption key. Opaque. */
typedef struct ims_crypt_kek ims_crypt_kek;

/**
 * Read a KEK file: 64 hex digits (a 256-bit key), surrounding white space allowed. The file
 * must be a regular file that neither group nor others may read.
 *
 * @param[out] out free with ims_crypt_kek_free().
 * @returns -ENOENT, -EPERM if group or others may read it, -EINVAL if it holds no 64-digit
 *          hex key.
 */
int ims_crypt_kek_load(ims_crypt_kek **out, const char *path);

/** Wipe and free. Accepts NULL. */
void ims_crypt_kek_free(ims_crypt_kek *kek);

/** The KEK's id (IMS_CRYPT_KEKID_LEN hex digits). Borrowed. */
const char *ims_crypt_kek_id(const ims_crypt_kek *kek);

/**
 * Give @p kek the previous KEK of a rotation ([server] kek_previous_file): data keys wrapped by
 * @p prev still unwrap, while ims_crypt_wrap() always wraps with @p kek. @p kek takes @p prev
 * over (frees it), replacing a previous one it had.
 */
void ims_crypt_kek_set_previous(ims_crypt_kek *kek, ims_crypt_kek *prev);

/** The previous KEK's id, or NULL if @p kek has none. Borrowed. */
const char *ims_crypt_kek_previous_id(const ims_crypt_kek *kek);

/**
 * Wrap @p key (IMS_CRYPT_KEY_LEN bytes) with @p kek into @p out (IMS_CRYPT_WRAPPED_MAX bytes).
 *
 * @returns -EIO if no randomness could be had.
 */
int ims_crypt_wrap(char *out, const ims_crypt_kek *kek, const uint8_t *key);

/**
 * Unwrap @p wrapped into @p key (IMS_CRYPT_KEY_LEN bytes): it must have been wrapped by @p kek or
 * its previous KEK (ims_crypt_kek_set_previous()).
 *
 * @returns -EINVAL if @p wrapped is not a wrapped key, -EPERM if it was wrapped by another KEK
 *          or fails authentication (the message says which).
 */
int ims_crypt_unwrap(uint8_t *key, const ims_crypt_kek *kek, const char *wrapped);

/**
 * Check a wrapped data key kept away from its image (a tier manifest's): @p what names its
 * owner in messages ("cold image 'rbd/vm1'").
 *
 * @returns 0 if it unwraps with @p kek (or its previous KEK), -EPERM if it was shredded
 *          (IMS_CRYPT_SHREDDED), @p kek is NULL or another KEK wrapped it, -EINVAL if damaged.
 */
int ims_crypt_check_wrapped(const char *wrapped, const ims_crypt_kek *kek, const char *what);

/**
 * Rewrap @p wrapped with @p kek's current key into @p out (IMS_CRYPT_WRAPPED_MAX bytes), unless
 * it is wrapped by it already.
 *
 * @returns 1 if rewrapped (from the previous KEK), 0 if @p wrapped is current (@p out is a copy),
 *          -EPERM/-EINVAL as ims_crypt_unwrap(), -EIO.
 */
int ims_crypt_rewrap(char *out, const ims_crypt_kek *kek, const char *wrapped);

/**
 * Whether the open image @p image is encrypted by imgstore (has a wrapped data key).
 *
 * @returns 1 or 0, or an error of the cluster.
 */
int ims_crypt_is_encrypted(rbd_image_t image);

/**
 * Encrypt an empty image: a new data key, wrapped into the image's metadata, then LUKS2
 * (AES-256) formatted with it. The image must be open read-write, have no snapshot and be no
 * clone. @p what names the image in messages ("pool/image").
 *
 * @returns -EPERM if @p kek is NULL (no kek_file), an error of librbd.
 */
int ims_crypt_format(rbd_image_t image, const ims_crypt_kek *kek, const char *what);

/**
 * If @p image is encrypted, unwrap its data key and load its LUKS encryption so that reads
 * and writes see plaintext; else do nothing.
 *
 * @param[out] loaded true when the encryption was loaded (may be NULL).
 * @returns 0, -EPERM if the image is encrypted and @p kek is NULL or another KEK's, or the
 *          wrapped key or the LUKS header is damaged (the message says which).
 */
int ims_crypt_load(bool *loaded, rbd_image_t image, const ims_crypt_kek *kek, const char *what);

/**
 * The LUKS passphrase of the encrypted @p image (a host needs it to open the image) into
 * @p out (IMS_CRYPT_PASS_LEN + 1 bytes).
 *
 * @returns -ENODATA if the image is not encrypted, -EPERM as ims_crypt_load().
 */
int ims_crypt_passphrase(char *out, rbd_image_t image, const ims_crypt_kek *kek, const char *what);

/**
 * What a hypervisor needs to open the encrypted @p image: its LUKS passphrase into @p pass
 * (IMS_CRYPT_PASS_LEN + 1 bytes) and the UUID of the libvirt secret to keep it in into
 * @p uuid (37 bytes). The UUID comes from the wrapped key, so every replica of the image
 * names the same secret, and a new key (a new image) a new one.
 *
 * @returns -ENODATA if the image is not encrypted, -EPERM as ims_crypt_load().
 */
int ims_crypt_host_secret(char *pass, char *uuid, rbd_image_t image, const ims_crypt_kek *kek,
			  const char *what);

/**
 * Give the copy @p dst the wrapped data key of @p src, if it has one (replication: the copy is
 * the same ciphertext and opens with the same key, under the same KEK).
 *
 * @returns 0, an error of librbd (no message set).
 */
int ims_crypt_copy_key(rbd_image_t dst, rbd_image_t src);

/**
 * The wrapped data key of @p image into @p out (IMS_CRYPT_WRAPPED_MAX bytes), checked to unwrap
 * with @p kek: what a copy of the image's ciphertext kept elsewhere (a tier push) must carry.
 *
 * @returns 1, 0 if the image is not encrypted, -EPERM as ims_crypt_load().
 */
int ims_crypt_key_get(char *out, rbd_image_t image, const ims_crypt_kek *kek, const char *what);

/**
 * Give the open @p image the wrapped data key @p wrapped (its bytes are the ciphertext that
 * key opens: the restore of a tiered encrypted image).
 *
 * @returns 0, an error of librbd (message set).
 */
int ims_crypt_key_set(rbd_image_t image, const char *wrapped, const char *what);

/** What a rewrap did (ims_crypt_rewrap_site(), and the tier's manifests: tier/tier.h). */
typedef struct {
	uint64_t rewrapped; /* data keys the previous KEK wrapped, now wrapped by the current one */
	uint64_t current;   /* wrapped by the current KEK already */
	uint64_t failed;    /* wrapped by neither KEK, or unreadable: named in report */
	char report[1024];  /* the first failures, one "WHAT: why" each, "; " between */
} ims_crypt_rewrap_result;

/** Count a failure in @p res and name it in its report (as far as it has room). */
void ims_crypt_rewrap_failed(ims_crypt_rewrap_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/**
 * Rewrap with @p kek's current key the data key of every encrypted image of @p site that the
 * previous KEK (ims_crypt_kek_set_previous()) wrapped: the images of every RBD pool, those in
 * the trash and replicas included (each site rewraps its own copies). Idempotent: a key wrapped
 * by the current KEK is left alone, so a run cut short (killed) is finished by the next. Each
 * key is swapped atomically only if unchanged since read (a RADOS compare-and-set on the
 * image's header): a key shredded meanwhile stays shredded.
 *
 * @returns 0 (failures counted and named in @p out), -EPERM if @p kek is NULL, an error
 *          listing the pools.
 */
int ims_crypt_rewrap_site(ims_crypt_rewrap_result *out, ims_site *site, const ims_crypt_kek *kek);

/**
 * Destroy the wrapped data key of @p image: its value becomes IMS_CRYPT_SHREDDED, so that
 * opening the image says it was shredded. The image's data, and that of every copy made of it
 * whose key is gone too, can no longer be read by anyone.
 *
 * @returns 0 (also when the image was not encrypted), an error of librbd.
 */
int ims_crypt_shred(rbd_image_t image, const char *what);

#endif
