/* common/gcm.c: AES-256-GCM through OpenSSL (common/gcm.h). */
#include "common/gcm.h"

#include <errno.h>
#include <limits.h>

#include <openssl/evp.h>

static int aad(EVP_CIPHER_CTX *c, const void *p, size_t len)
{
	int n = 0;
	return !p || !len || (len <= INT_MAX && EVP_CipherUpdate(c, NULL, &n, p, (int)len) == 1);
}

int ims_gcm(bool enc, const uint8_t key[IMS_GCM_KEY_LEN], const uint8_t nonce[IMS_GCM_NONCE_LEN],
	    const void *aad1, size_t aad1_len, const void *aad2, size_t aad2_len, const uint8_t *in,
	    size_t len, uint8_t *out, uint8_t tag[IMS_GCM_TAG_LEN])
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, ok = 0;
	if (!c)
		return -ENOMEM;
	if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, IMS_GCM_NONCE_LEN, NULL) != 1 ||
	    EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) != 1 || !aad(c, aad1, aad1_len) ||
	    !aad(c, aad2, aad2_len))
		goto out;
	/* in pieces: EVP takes an int length */
	for (size_t done = 0; done < len;) {
		size_t step = len - done > (1u << 30) ? (1u << 30) : len - done;
		if (EVP_CipherUpdate(c, out + done, &n, in + done, (int)step) != 1)
			goto out;
		done += step;
	}
	if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, IMS_GCM_TAG_LEN, tag) != 1)
		goto out;
	if (EVP_CipherFinal_ex(c, out + len, &n) != 1)
		goto out;
	if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, IMS_GCM_TAG_LEN, tag) != 1)
		goto out;
	ok = 1;
out:
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -EBADMSG;
}
