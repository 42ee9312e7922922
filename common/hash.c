#include "common/hash.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

struct ims_sha256 {
	EVP_MD_CTX *ctx;
};

int ims_sha256_new(ims_sha256 **out)
{
	ims_sha256 *h = calloc(1, sizeof(*h));
	if (!h || !(h->ctx = EVP_MD_CTX_new()) ||
	    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		ims_sha256_free(h);
		return -ENOMEM;
	}
	*out = h;
	return 0;
}

void ims_sha256_update(ims_sha256 *h, const void *data, size_t len)
{
	EVP_DigestUpdate(h->ctx, data, len);
}

void ims_sha256_final(uint8_t out[IMS_SHA256_LEN], ims_sha256 *h)
{
	unsigned n = 0;
	EVP_DigestFinal_ex(h->ctx, out, &n);
	EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void ims_sha256_free(ims_sha256 *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void ims_sha256_buf(uint8_t out[IMS_SHA256_LEN], const void *data, size_t len)
{
	unsigned n = 0;
	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

void ims_sha256_hex(char hex[IMS_SHA256_HEX_LEN], const uint8_t d[IMS_SHA256_LEN])
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < IMS_SHA256_LEN; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[64] = '\0';
}

static pthread_mutex_t zeros_lock = PTHREAD_MUTEX_INITIALIZER;
static int zeros_ready;
static uint8_t zeros_full[IMS_SHA256_LEN];

static int hash_zeros(size_t len, uint8_t out[IMS_SHA256_LEN])
{
	static const uint8_t chunk[65536];
	ims_sha256 *h = NULL;
	int r = ims_sha256_new(&h);
	if (r < 0)
		return r;
	for (size_t done = 0; done < len;) {
		size_t k = len - done < sizeof(chunk) ? len - done : sizeof(chunk);
		ims_sha256_update(h, chunk, k);
		done += k;
	}
	ims_sha256_final(out, h);
	ims_sha256_free(h);
	return 0;
}

int ims_sha256_zeros(uint8_t out[IMS_SHA256_LEN], size_t len)
{
	int r = 0;
	if (len != IMS_CONTENT_BLOCK)
		return hash_zeros(len, out);
	pthread_mutex_lock(&zeros_lock);
	if (!zeros_ready && (r = hash_zeros(len, zeros_full)) == 0)
		zeros_ready = 1;
	if (r == 0)
		memcpy(out, zeros_full, IMS_SHA256_LEN);
	pthread_mutex_unlock(&zeros_lock);
	return r;
}

int ims_random_hex(char *out, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	uint8_t b[64];
	size_t n = len ? len - 1 : 0;
	if (n > 2 * sizeof(b))
		n = 2 * sizeof(b);
	if (RAND_bytes(b, (int)((n + 1) / 2)) != 1)
		return -EIO;
	for (size_t i = 0; i < n; i++)
		out[i] = digits[(b[i / 2] >> ((i & 1) ? 0 : 4)) & 15];
	if (len)
		out[n] = '\0';
	return 0;
}
