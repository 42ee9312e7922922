/*
 * common/gcm.h: AES-256-GCM through OpenSSL, the one sealing primitive of the project (the
 * wrapped data keys of store/crypt.h, the sealed manifests of tier/manifest.h).
 */
#ifndef IMS_COMMON_GCM_H
#define IMS_COMMON_GCM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMS_GCM_KEY_LEN	  32
#define IMS_GCM_NONCE_LEN 12
#define IMS_GCM_TAG_LEN	  16

/**
 * Encrypt (@p enc) or decrypt @p len bytes of @p in into @p out, authenticating them with
 * @p aad1 and @p aad2 (either may be NULL or of length 0): encryption writes the tag into
 * @p tag, decryption checks it against @p tag.
 *
 * @returns 0, -ENOMEM, or -EBADMSG when the tag does not match (or OpenSSL fails).
 */
int ims_gcm(bool enc, const uint8_t key[IMS_GCM_KEY_LEN], const uint8_t nonce[IMS_GCM_NONCE_LEN],
	    const void *aad1, size_t aad1_len, const void *aad2, size_t aad2_len, const uint8_t *in,
	    size_t len, uint8_t *out, uint8_t tag[IMS_GCM_TAG_LEN]);

#endif
