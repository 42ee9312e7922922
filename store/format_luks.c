/*
 * store/format_luks.c: the LUKS1 header that QEMU keeps inside an encrypted qcow2 image
 * (crypt_method 2, header extension 0x0537be77), opened with a passphrase, and the
 * decryption of the image's data sectors. Written from the LUKS1 on-disk format
 * specification (cryptsetup's docs/on-disk-format.pdf, version 1.2) and QEMU's qcow2
 * specification; the ciphers, hashes and PBKDF2 are OpenSSL's.
 *
 * Every field of the header is untrusted: the key material of a slot must lie inside the
 * header's area, the key size, stripes and iteration counts are bounded, and only what
 * qemu-img makes is accepted (AES in XTS or CBC mode with plain, plain64 or essiv IVs;
 * SHA-1 or SHA-2 hashes). A slot or digest that asks more PBKDF2 iterations than the ceiling
 * is refused before any is run, so that a hostile file cannot keep the daemon busy for hours.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/error.h"
#include "store/format_internal.h"

#define LUKS_MAGIC	   "LUKS\xba\xbe"
#define LUKS_MAGIC_LEN	   6
#define LUKS_NAME_LEN	   32
#define LUKS_DIGEST_LEN	   20
#define LUKS_SALT_LEN	   32
#define LUKS_SLOTS	   8
#define LUKS_SLOT_ACTIVE   0x00ac71f3u
#define LUKS_SLOT_INACTIVE 0x0000deadu
#define LUKS_MAX_STRIPES   4000u
#define LUKS_MAX_KEY_BYTES 64u
#define LUKS_SECTOR	   512u

/* Offsets in the header (big-endian fields). */
#define OFF_VERSION	6
#define OFF_CIPHER_NAME 8
#define OFF_CIPHER_MODE 40
#define OFF_HASH_SPEC	72
#define OFF_KEY_BYTES	108
#define OFF_MK_DIGEST	112
#define OFF_MK_SALT	132
#define OFF_MK_ITER	164
#define OFF_SLOTS	208
#define SLOT_BYTES	48

typedef enum {
	IV_PLAIN,   /* the sector number, low 32 bits, little-endian */
	IV_PLAIN64, /* the sector number, little-endian */
	IV_ESSIV,   /* the sector number encrypted with the hash of the key */
} iv_kind;

struct ims_format__luks {
	const EVP_CIPHER *cipher;     /* the data cipher, keyed with the master key */
	const EVP_CIPHER *essiv_ciph; /* IV_ESSIV: AES-ECB with the hashed key */
	iv_kind iv;
	uint8_t key[LUKS_MAX_KEY_BYTES];
	uint8_t essiv_key[EVP_MAX_MD_SIZE];
	size_t key_bytes;
	EVP_CIPHER_CTX *ctx, *essiv_ctx;
};

/* A name field of the header as a C string; refused unless printable and terminated. */
static int name_field(char out[LUKS_NAME_LEN], const uint8_t *p, const char *what)
{
	size_t n = 0;

	while (n < LUKS_NAME_LEN && p[n])
		n++;
	if (n == LUKS_NAME_LEN || n == 0)
		return ims_error_set(-EINVAL, "LUKS: the %s field is %s", what,
				     n ? "not terminated" : "empty");
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] >= 0x7f || p[i] == '\'')
			return ims_error_set(-EINVAL, "LUKS: the %s field is not printable", what);
	memcpy(out, p, n + 1);
	return 0;
}

static const EVP_MD *hash_of(const char *name)
{
	if (!strcmp(name, "sha1"))
		return EVP_sha1();
	if (!strcmp(name, "sha224"))
		return EVP_sha224();
	if (!strcmp(name, "sha256"))
		return EVP_sha256();
	if (!strcmp(name, "sha384"))
		return EVP_sha384();
	if (!strcmp(name, "sha512"))
		return EVP_sha512();
	return NULL;
}

/* The data cipher and IV of a cipher name, mode and key size qemu-img makes. */
static int pick_cipher(ims_format__luks_info *info, const char *name, const char *mode,
		       size_t key_bytes)
{
	const char *iv = strchr(mode, '-');
	size_t mlen = iv ? (size_t)(iv - mode) : strlen(mode);
	bool xts = mlen == 3 && !strncmp(mode, "xts", 3);
	bool cbc = mlen == 3 && !strncmp(mode, "cbc", 3);
	size_t aes_bytes = xts ? key_bytes / 2 : key_bytes;

	if (strcmp(name, "aes") != 0)
		return ims_error_set(-ENOTSUP,
				     "LUKS: cipher '%s' is not supported (aes in xts or cbc mode "
				     "is, as qemu-img makes)",
				     name);
	if ((!xts && !cbc) || !iv)
		return ims_error_set(-ENOTSUP,
				     "LUKS: cipher mode '%s' is not supported (xts-plain64, "
				     "xts-plain, cbc-plain64, cbc-plain, cbc-essiv:sha256 are)",
				     mode);
	if ((xts && key_bytes % 2) ||
	    (aes_bytes != 16 && aes_bytes != 32 && (xts || aes_bytes != 24)))
		return ims_error_set(-ENOTSUP, "LUKS: a %zu-byte key does not fit aes in %s mode",
				     key_bytes, xts ? "xts" : "cbc");
	iv++;
	if (!strcmp(iv, "plain64")) {
		info->iv = IMS_FORMAT__LUKS_IV_PLAIN64;
	} else if (!strcmp(iv, "plain")) {
		info->iv = IMS_FORMAT__LUKS_IV_PLAIN;
	} else if (cbc && !strncmp(iv, "essiv:", 6) && hash_of(iv + 6) &&
		   EVP_MD_get_size(hash_of(iv + 6)) == 32) {
		/* the hash of the key keys AES for the IVs: only a 32-byte one fits */
		info->iv = IMS_FORMAT__LUKS_IV_ESSIV;
		info->essiv_hash = hash_of(iv + 6);
	} else {
		return ims_error_set(-ENOTSUP,
				     "LUKS: cipher mode '%s' is not supported (xts-plain64, "
				     "xts-plain, cbc-plain64, cbc-plain, cbc-essiv:sha256 are)",
				     mode);
	}
	if (xts)
		info->cipher = aes_bytes == 16 ? EVP_aes_128_xts() : EVP_aes_256_xts();
	else
		info->cipher = aes_bytes == 16	 ? EVP_aes_128_cbc()
			       : aes_bytes == 24 ? EVP_aes_192_cbc()
						 : EVP_aes_256_cbc();
	return 0;
}

int ims_format__luks_parse(ims_format__luks_info *out, const uint8_t *h, size_t len,
			   uint64_t area_bytes, uint32_t max_iterations)
{
	ims_format__luks_info info;
	char name[LUKS_NAME_LEN], mode[LUKS_NAME_LEN], hash[LUKS_NAME_LEN];
	uint64_t total_iter = 0;
	unsigned active = 0;
	int r;

	memset(&info, 0, sizeof(info));
	if (len < IMS_FORMAT__LUKS_HEADER_BYTES || area_bytes < IMS_FORMAT__LUKS_HEADER_BYTES)
		return ims_error_set(-EINVAL, "LUKS: truncated header (%" PRIu64 " bytes, need %u)",
				     area_bytes < len ? area_bytes : (uint64_t)len,
				     IMS_FORMAT__LUKS_HEADER_BYTES);
	if (memcmp(h, LUKS_MAGIC, LUKS_MAGIC_LEN) != 0)
		return ims_error_set(-EINVAL, "LUKS: bad magic (the encryption header is corrupt)");
	if (ims_format__be16(h + OFF_VERSION) != 1)
		return ims_error_set(-ENOTSUP, "LUKS: version %u is not supported (1 is)",
				     ims_format__be16(h + OFF_VERSION));
	if ((r = name_field(name, h + OFF_CIPHER_NAME, "cipher name")) < 0 ||
	    (r = name_field(mode, h + OFF_CIPHER_MODE, "cipher mode")) < 0 ||
	    (r = name_field(hash, h + OFF_HASH_SPEC, "hash")) < 0)
		return r;
	info.hash = hash_of(hash);
	if (!info.hash)
		return ims_error_set(-ENOTSUP,
				     "LUKS: hash '%s' is not supported (sha1, sha224, sha256, "
				     "sha384, sha512 are)",
				     hash);
	info.key_bytes = ims_format__be32(h + OFF_KEY_BYTES);
	if (info.key_bytes == 0 || info.key_bytes > LUKS_MAX_KEY_BYTES)
		return ims_error_set(-EINVAL, "LUKS: key size %zu bytes is outside 1..%u",
				     info.key_bytes, LUKS_MAX_KEY_BYTES);
	if ((r = pick_cipher(&info, name, mode, info.key_bytes)) < 0)
		return r;
	memcpy(info.mk_digest, h + OFF_MK_DIGEST, LUKS_DIGEST_LEN);
	memcpy(info.mk_salt, h + OFF_MK_SALT, LUKS_SALT_LEN);
	info.mk_iterations = ims_format__be32(h + OFF_MK_ITER);
	if (info.mk_iterations == 0 || info.mk_iterations > max_iterations)
		return ims_error_set(info.mk_iterations ? -ENOTSUP : -EINVAL,
				     "LUKS: the master key digest asks %" PRIu32
				     " PBKDF2 iterations (1..%" PRIu32 " are accepted)",
				     info.mk_iterations, max_iterations);
	for (unsigned i = 0; i < LUKS_SLOTS; i++) {
		const uint8_t *s = h + OFF_SLOTS + i * SLOT_BYTES;
		ims_format__luks_slot *slot = &info.slots[i];
		uint32_t state = ims_format__be32(s);
		uint64_t km_off, km_len;

		if (state == LUKS_SLOT_INACTIVE)
			continue;
		if (state != LUKS_SLOT_ACTIVE)
			return ims_error_set(-EINVAL,
					     "LUKS: key slot %u has state 0x%08" PRIx32
					     ", neither active nor inactive",
					     i, state);
		slot->active = true;
		slot->iterations = ims_format__be32(s + 4);
		memcpy(slot->salt, s + 8, LUKS_SALT_LEN);
		km_off = (uint64_t)ims_format__be32(s + 40) * LUKS_SECTOR;
		slot->stripes = ims_format__be32(s + 44);
		if (slot->iterations == 0 || slot->iterations > max_iterations)
			return ims_error_set(slot->iterations ? -ENOTSUP : -EINVAL,
					     "LUKS: key slot %u asks %" PRIu32
					     " PBKDF2 iterations (1..%" PRIu32 " are accepted)",
					     i, slot->iterations, max_iterations);
		if (slot->stripes == 0 || slot->stripes > LUKS_MAX_STRIPES)
			return ims_error_set(-EINVAL,
					     "LUKS: key slot %u has %" PRIu32
					     " stripes (1..%u are accepted)",
					     i, slot->stripes, LUKS_MAX_STRIPES);
		km_len = (uint64_t)info.key_bytes * slot->stripes;
		km_len = (km_len + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
		if (km_off < IMS_FORMAT__LUKS_HEADER_BYTES ||
		    !ims_format__in_file(km_off, km_len, area_bytes))
			return ims_error_set(-EINVAL,
					     "LUKS: the key material of slot %u (offset %" PRIu64
					     ", %" PRIu64 " bytes) lies outside the encryption "
					     "header's %" PRIu64 " bytes",
					     i, km_off, km_len, area_bytes);
		slot->km_off = km_off;
		slot->km_len = km_len;
		/* PBKDF2 computes the hash's output size of key per iteration */
		total_iter += (uint64_t)slot->iterations *
			      ((info.key_bytes + (size_t)EVP_MD_get_size(info.hash) - 1) /
			       (size_t)EVP_MD_get_size(info.hash));
		active++;
	}
	if (!active)
		return ims_error_set(-EINVAL, "LUKS: no key slot is active");
	/* all the slots together: what a wrong passphrase costs, in hash blocks */
	if (total_iter > (uint64_t)4 * max_iterations)
		return ims_error_set(-ENOTSUP,
				     "LUKS: the key slots ask %" PRIu64
				     " PBKDF2 rounds together (iterations times key blocks; at "
				     "most %" PRIu64 " are accepted)",
				     total_iter, (uint64_t)4 * max_iterations);
	*out = info;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* sectors */

static void iv_of(const ims_format__luks *l, uint64_t sector, uint8_t iv[16])
{
	memset(iv, 0, 16);
	if (l->iv == IV_PLAIN)
		sector &= 0xffffffffu;
	for (unsigned i = 0; i < 8; i++)
		iv[i] = (uint8_t)(sector >> (8 * i));
}

/* Decrypt (@p enc 0) or encrypt (1) whole sectors in place with @p key. */
static int crypt_sectors(const ims_format__luks *l, const uint8_t *key, uint64_t sector,
			 uint8_t *buf, size_t len, int enc)
{
	uint8_t iv[16], tmp[16];
	int outl;

	if (!EVP_CipherInit_ex(l->ctx, l->cipher, NULL, key, NULL, enc) ||
	    !EVP_CIPHER_CTX_set_padding(l->ctx, 0))
		return ims_error_set(-EIO, "LUKS: the cipher failed");
	for (size_t done = 0; done < len; done += LUKS_SECTOR, sector++) {
		iv_of(l, sector, iv);
		if (l->iv == IV_ESSIV) {
			if (!EVP_EncryptUpdate(l->essiv_ctx, tmp, &outl, iv, 16) || outl != 16)
				return ims_error_set(-EIO, "LUKS: essiv failed");
			memcpy(iv, tmp, 16);
		}
		if (!EVP_CipherInit_ex(l->ctx, NULL, NULL, NULL, iv, enc) ||
		    !EVP_CipherUpdate(l->ctx, buf + done, &outl, buf + done, LUKS_SECTOR) ||
		    outl != (int)LUKS_SECTOR)
			return ims_error_set(-EIO, "LUKS: the cipher failed");
	}
	OPENSSL_cleanse(iv, sizeof(iv));
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return 0;
}

/* Set the ESSIV context up for @p key (the master key or a slot's derived key). */
static int essiv_setup(ims_format__luks *l, const EVP_MD *hash, const uint8_t *key)
{
	unsigned hlen = 0;

	if (l->iv != IV_ESSIV)
		return 0;
	if (!EVP_Digest(key, l->key_bytes, l->essiv_key, &hlen, hash, NULL))
		return ims_error_set(-EIO, "LUKS: essiv hash failed");
	l->essiv_ciph = hlen == 16   ? EVP_aes_128_ecb()
			: hlen == 24 ? EVP_aes_192_ecb()
				     : EVP_aes_256_ecb();
	if (!EVP_EncryptInit_ex(l->essiv_ctx, l->essiv_ciph, NULL, l->essiv_key, NULL) ||
	    !EVP_CIPHER_CTX_set_padding(l->essiv_ctx, 0))
		return ims_error_set(-EIO, "LUKS: essiv setup failed");
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* the anti-forensic merge */

/* H1 diffusion: each digest-sized block of @p buf becomes H(be32(i) || block). */
static int diffuse(const EVP_MD *hash, uint8_t *buf, size_t len)
{
	size_t ds = (size_t)EVP_MD_get_size(hash);
	uint8_t d[EVP_MAX_MD_SIZE], ib[4];
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int r = 0;

	if (!c)
		return ims_error_set(-ENOMEM, "LUKS: out of memory for a hash");
	for (size_t i = 0, off = 0; off < len; i++, off += ds) {
		size_t n = len - off < ds ? len - off : ds;
		ims_format__put_be32(ib, (uint32_t)i);
		if (!EVP_DigestInit_ex(c, hash, NULL) || !EVP_DigestUpdate(c, ib, 4) ||
		    !EVP_DigestUpdate(c, buf + off, n) || !EVP_DigestFinal_ex(c, d, NULL)) {
			r = ims_error_set(-EIO, "LUKS: hash failed");
			break;
		}
		memcpy(buf + off, d, n);
	}
	OPENSSL_cleanse(d, sizeof(d));
	EVP_MD_CTX_free(c);
	return r;
}

/* The key of @p stripes split blocks of @p n bytes each, into @p out. */
static int af_merge(const EVP_MD *hash, const uint8_t *split, size_t n, uint32_t stripes,
		    uint8_t *out)
{
	uint8_t d[LUKS_MAX_KEY_BYTES] = {0};
	int r = 0;

	for (uint32_t i = 0; i + 1 < stripes; i++) {
		for (size_t j = 0; j < n; j++)
			d[j] ^= split[i * n + j];
		if ((r = diffuse(hash, d, n)) < 0)
			goto out;
	}
	for (size_t j = 0; j < n; j++)
		out[j] = d[j] ^ split[(size_t)(stripes - 1) * n + j];
out:
	OPENSSL_cleanse(d, sizeof(d));
	return r;
}

/* ---------------------------------------------------------------------------------------- */
/* open */

static int pbkdf2(const void *pass, size_t pass_len, const uint8_t *salt, uint32_t iter,
		  const EVP_MD *hash, uint8_t *out, size_t out_len)
{
	if (!PKCS5_PBKDF2_HMAC(pass_len ? pass : "", (int)pass_len, salt, LUKS_SALT_LEN, (int)iter,
			       hash, (int)out_len, out))
		return ims_error_set(-EIO, "LUKS: PBKDF2 failed");
	return 0;
}

/* Try slot @p s: 1 if it opens with the passphrase (l->key then holds the master key). */
static int try_slot(ims_format__luks *l, const ims_format__luks_info *info,
		    const ims_format__luks_slot *s, const uint8_t *km, const void *pass,
		    size_t pass_len)
{
	uint8_t derived[LUKS_MAX_KEY_BYTES], master[LUKS_MAX_KEY_BYTES], digest[LUKS_DIGEST_LEN];
	uint8_t *split = malloc((size_t)s->km_len);
	int r;

	if (!split)
		return ims_error_set(-ENOMEM, "LUKS: out of memory for key material");
	memcpy(split, km, (size_t)s->km_len);
	if ((r = pbkdf2(pass, pass_len, s->salt, s->iterations, info->hash, derived,
			l->key_bytes)) < 0 ||
	    (r = essiv_setup(l, info->essiv_hash, derived)) < 0 ||
	    (r = crypt_sectors(l, derived, 0, split, (size_t)s->km_len, 0)) < 0 ||
	    (r = af_merge(info->hash, split, l->key_bytes, s->stripes, master)) < 0 ||
	    (r = pbkdf2(master, l->key_bytes, info->mk_salt, info->mk_iterations, info->hash,
			digest, LUKS_DIGEST_LEN)) < 0)
		goto out;
	r = CRYPTO_memcmp(digest, info->mk_digest, LUKS_DIGEST_LEN) == 0;
	if (r) {
		memcpy(l->key, master, l->key_bytes);
		r = essiv_setup(l, info->essiv_hash, l->key) < 0 ? -EIO : 1;
	}
out:
	OPENSSL_cleanse(split, (size_t)s->km_len);
	free(split);
	OPENSSL_cleanse(derived, sizeof(derived));
	OPENSSL_cleanse(master, sizeof(master));
	return r;
}

int ims_format__luks_open(ims_format__luks **out, const ims_source *src, uint64_t area_off,
			  uint64_t area_len, const void *pass, size_t pass_len,
			  uint32_t max_iterations)
{
	uint8_t h[IMS_FORMAT__LUKS_HEADER_BYTES], *km = NULL;
	ims_format__luks_info info;
	ims_format__luks *l = NULL;
	int r;

	if (!ims_format__in_file(area_off, area_len, src->size))
		return ims_error_set(-EINVAL,
				     "LUKS: the encryption header (offset 0x%" PRIx64 ", %" PRIu64
				     " bytes) passes the end of the file",
				     area_off, area_len);
	if (area_len < sizeof(h))
		return ims_error_set(-EINVAL,
				     "LUKS: the encryption header area of %" PRIu64
				     " bytes is shorter than a header",
				     area_len);
	if ((r = ims_format__pread_exact(src, h, sizeof(h), area_off, "LUKS: header")) < 0 ||
	    (r = ims_format__luks_parse(&info, h, sizeof(h), area_len, max_iterations)) < 0)
		return r;
	l = calloc(1, sizeof(*l));
	if (!l || !(l->ctx = EVP_CIPHER_CTX_new()) || !(l->essiv_ctx = EVP_CIPHER_CTX_new())) {
		r = ims_error_set(-ENOMEM, "LUKS: out of memory");
		goto out;
	}
	l->cipher = info.cipher;
	l->key_bytes = info.key_bytes;
	l->iv = info.iv == IMS_FORMAT__LUKS_IV_PLAIN   ? IV_PLAIN
		: info.iv == IMS_FORMAT__LUKS_IV_ESSIV ? IV_ESSIV
						       : IV_PLAIN64;
	r = 0;
	for (unsigned i = 0; i < 8 && r == 0; i++) {
		const ims_format__luks_slot *s = &info.slots[i];
		if (!s->active)
			continue;
		km = malloc((size_t)s->km_len);
		if (!km) {
			r = ims_error_set(-ENOMEM, "LUKS: out of memory for key material");
			goto out;
		}
		if ((r = ims_format__pread_exact(src, km, (size_t)s->km_len, area_off + s->km_off,
						 "LUKS: key material")) < 0)
			goto out;
		r = try_slot(l, &info, s, km, pass, pass_len);
		free(km);
		km = NULL;
	}
	if (r < 0)
		goto out;
	if (r == 0) {
		r = ims_error_set(-EINVAL, "no key slot opens with this passphrase");
		goto out;
	}
	*out = l;
	l = NULL;
	r = 0;
out:
	free(km);
	ims_format__luks_free(l);
	return r;
}

int ims_format__luks_decrypt(ims_format__luks *l, uint64_t sector, uint8_t *buf, size_t len)
{
	assert(len % LUKS_SECTOR == 0);
	return crypt_sectors(l, l->key, sector, buf, len, 0);
}

int ims_format__luks_encrypt(ims_format__luks *l, uint64_t sector, uint8_t *buf, size_t len)
{
	assert(len % LUKS_SECTOR == 0);
	return crypt_sectors(l, l->key, sector, buf, len, 1);
}

void ims_format__luks_free(ims_format__luks *l)
{
	if (!l)
		return;
	EVP_CIPHER_CTX_free(l->ctx);
	EVP_CIPHER_CTX_free(l->essiv_ctx);
	OPENSSL_cleanse(l, sizeof(*l));
	free(l);
}
