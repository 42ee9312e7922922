/* store/crypt.c: LUKS2 encryption of images and their wrapped data keys (store/crypt.h). */
#include "store/crypt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libcryptsetup.h>
#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/error.h"
#include "common/gcm.h"
#include "common/keyfile.h"
#include "common/log.h"
#include "store/store_internal.h" /* ims_crypt__wrapped() */

#define NONCE_LEN 12
#define TAG_LEN	  16
#define BLOB_LEN  (NONCE_LEN + IMS_CRYPT_KEY_LEN + TAG_LEN)
/* Binds a wrapped key to its use: the same bytes mean nothing elsewhere. */
#define IMS_CRYPT_AAD "imgstore.crypt.v1 data key"

struct ims_crypt_kek {
	uint8_t key[IMS_CRYPT_KEY_LEN];
	char id[IMS_CRYPT_KEKID_LEN + 1];
	struct ims_crypt_kek *prev; /* a rotation's previous KEK: unwraps, never wraps */
};

static void tohex(char *out, const uint8_t *in, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int kek_id(ims_crypt_kek *k)
{
	static const char label[] = "imgstore-kek";
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
		 EVP_DigestUpdate(c, label, sizeof(label) - 1) == 1 &&
		 EVP_DigestUpdate(c, k->key, sizeof(k->key)) == 1 &&
		 EVP_DigestFinal_ex(c, md, &mdlen) == 1;
	EVP_MD_CTX_free(c);
	if (!ok)
		return -ENOMEM;
	tohex(k->id, md, IMS_CRYPT_KEKID_LEN / 2);
	return 0;
}

int ims_crypt_kek_load(ims_crypt_kek **out, const char *path)
{
	ims_crypt_kek *k = calloc(1, sizeof(*k));
	int r;
	if (!k)
		return -ENOMEM;
	if ((r = ims_keyfile_read(k->key, path, "kek_file")) < 0 || (r = kek_id(k)) < 0) {
		ims_crypt_kek_free(k);
		return r;
	}
	*out = k;
	return 0;
}

void ims_crypt_kek_free(ims_crypt_kek *kek)
{
	if (!kek)
		return;
	ims_crypt_kek_free(kek->prev);
	OPENSSL_cleanse(kek, sizeof(*kek));
	free(kek);
}

const char *ims_crypt_kek_id(const ims_crypt_kek *kek)
{
	return kek->id;
}

void ims_crypt_kek_set_previous(ims_crypt_kek *kek, ims_crypt_kek *prev)
{
	ims_crypt_kek_free(kek->prev);
	kek->prev = prev;
	if (prev) { /* no chains: a previous KEK's own previous one is not kept */
		ims_crypt_kek_free(prev->prev);
		prev->prev = NULL;
	}
}

const char *ims_crypt_kek_previous_id(const ims_crypt_kek *kek)
{
	return kek->prev ? kek->prev->id : NULL;
}

int ims_crypt_wrap(char *out, const ims_crypt_kek *kek, const uint8_t *key)
{
	uint8_t blob[BLOB_LEN];
	int r;
	if (RAND_bytes(blob, NONCE_LEN) != 1)
		return ims_error_set(-EIO, "no randomness for a nonce");
	r = ims_gcm(true, kek->key, blob, IMS_CRYPT_AAD, strlen(IMS_CRYPT_AAD), NULL, 0, key,
		    IMS_CRYPT_KEY_LEN, blob + NONCE_LEN, blob + NONCE_LEN + IMS_CRYPT_KEY_LEN);
	if (r < 0)
		return ims_error_set(-EIO, "cannot wrap a data key");
	memcpy(out, "v1:", 3);
	memcpy(out + 3, kek->id, IMS_CRYPT_KEKID_LEN);
	out[3 + IMS_CRYPT_KEKID_LEN] = ':';
	tohex(out + 4 + IMS_CRYPT_KEKID_LEN, blob, BLOB_LEN);
	return 0;
}

int ims_crypt_unwrap(uint8_t *key, const ims_crypt_kek *kek, const char *wrapped)
{
	uint8_t blob[BLOB_LEN], plain[IMS_CRYPT_KEY_LEN + 16];
	size_t len = strlen(wrapped);
	if (len != 4 + IMS_CRYPT_KEKID_LEN + 2 * BLOB_LEN || strncmp(wrapped, "v1:", 3) != 0 ||
	    wrapped[3 + IMS_CRYPT_KEKID_LEN] != ':' ||
	    ims_keyfile_unhex(blob, wrapped + 4 + IMS_CRYPT_KEKID_LEN, BLOB_LEN) < 0)
		return ims_error_set(-EINVAL,
				     "the wrapped data key is damaged (not 'v1:KEKID:HEX')");
	const ims_crypt_kek *by = kek;
	if (memcmp(wrapped + 3, kek->id, IMS_CRYPT_KEKID_LEN) != 0) {
		by = kek->prev;
		if (!by || memcmp(wrapped + 3, by->id, IMS_CRYPT_KEKID_LEN) != 0) {
			if (kek->prev)
				return ims_error_set(
					-EPERM,
					"the data key is wrapped by KEK %.16s, and this "
					"daemon holds KEK %s (kek_file) and KEK %s "
					"(kek_previous_file)",
					wrapped + 3, kek->id, kek->prev->id);
			return ims_error_set(
				-EPERM,
				"the data key is wrapped by KEK %.16s, and this daemon's "
				"kek_file holds KEK %s",
				wrapped + 3, kek->id);
		}
	}
	int r = ims_gcm(false, by->key, blob, IMS_CRYPT_AAD, strlen(IMS_CRYPT_AAD), NULL, 0,
			blob + NONCE_LEN, IMS_CRYPT_KEY_LEN, plain,
			blob + NONCE_LEN + IMS_CRYPT_KEY_LEN);
	if (r < 0) {
		OPENSSL_cleanse(plain, sizeof(plain));
		return ims_error_set(
			-EPERM, "the wrapped data key fails authentication with KEK %s", by->id);
	}
	memcpy(key, plain, IMS_CRYPT_KEY_LEN);
	OPENSSL_cleanse(plain, sizeof(plain));
	return 0;
}

int ims_crypt_check_wrapped(const char *wrapped, const ims_crypt_kek *kek, const char *what)
{
	uint8_t key[IMS_CRYPT_KEY_LEN];
	if (strcmp(wrapped, IMS_CRYPT_SHREDDED) == 0)
		return ims_error_set(-EPERM,
				     "%s was crypto-shredded: its key is destroyed and its data "
				     "cannot be read",
				     what);
	if (!kek)
		return ims_error_set(
			-EPERM,
			"%s is encrypted and this daemon has no key ([server] kek_file "
			"is unset)",
			what);
	int r = ims_crypt_unwrap(key, kek, wrapped);
	OPENSSL_cleanse(key, sizeof(key));
	return r < 0 ? ims_error_wrap(r, "cannot open %s", what) : 0;
}

int ims_crypt_rewrap(char *out, const ims_crypt_kek *kek, const char *wrapped)
{
	uint8_t key[IMS_CRYPT_KEY_LEN];
	int r = ims_crypt_unwrap(key, kek, wrapped);
	if (r < 0)
		return r;
	if (strncmp(wrapped + 3, kek->id, IMS_CRYPT_KEKID_LEN) == 0) {
		snprintf(out, IMS_CRYPT_WRAPPED_MAX, "%s", wrapped);
		r = 0;
	} else if ((r = ims_crypt_wrap(out, kek, key)) == 0) {
		r = 1;
	}
	OPENSSL_cleanse(key, sizeof(key));
	return r;
}

int ims_crypt__wrapped(char *buf, rbd_image_t image)
{
	size_t n = IMS_CRYPT_WRAPPED_MAX;
	int r = rbd_metadata_get(image, IMS_CRYPT_META_KEY, buf, &n);
	if (r == -ENOENT)
		return 0;
	if (r == -ERANGE) /* too long to be ours: damaged, let unwrap say so */
		return snprintf(buf, IMS_CRYPT_WRAPPED_MAX, "?"), 1;
	return r < 0 ? r : 1;
}

int ims_crypt_is_encrypted(rbd_image_t image)
{
	char buf[IMS_CRYPT_WRAPPED_MAX];
	return ims_crypt__wrapped(buf, image);
}

/* The data key of @p image into @p key: 1, 0 if it is not encrypted, or an error (set). */
static int data_key(uint8_t *key, rbd_image_t image, const ims_crypt_kek *kek, const char *what)
{
	char buf[IMS_CRYPT_WRAPPED_MAX];
	int r = ims_crypt__wrapped(buf, image);
	if (r < 0)
		return ims_error_set(r, "cannot read the key of image '%s': %s", what,
				     ims_strerror(r));
	if (r == 0)
		return 0;
	if (strcmp(buf, IMS_CRYPT_SHREDDED) == 0)
		return ims_error_set(-EPERM,
				     "image '%s' was crypto-shredded: its key is destroyed and its "
				     "data cannot be read",
				     what);
	if (!kek)
		return ims_error_set(-EPERM,
				     "image '%s' is encrypted and this daemon has no key "
				     "([server] kek_file is unset)",
				     what);
	if ((r = ims_crypt_unwrap(key, kek, buf)) < 0)
		return ims_error_wrap(r, "cannot open encrypted image '%s'", what);
	return 1;
}

/*
 * The LUKS2 header of an image, made here rather than by rbd_encryption_format(), for one
 * reason: librbd leaves libcryptsetup's default key derivation, Argon2id benchmarked to 2 s
 * with up to 1 GiB of memory, and that price is paid again by every open of the image
 * (imgstored's imports, exports and restores, each hypervisor's QEMU at each VM start). It
 * protects a low-entropy passphrase; ours is a random 256-bit data key, which no derivation
 * makes harder to guess. So the key slot uses PBKDF2-SHA256 at libcryptsetup's minimum
 * iterations. The rest is what librbd's own format writes, byte for byte the same layout:
 * LUKS2, aes-xts-plain64 with a 512-bit key, 4096-byte sectors, the data aligned to the
 * image's object size; the header made by libcryptsetup on an anonymous file, then written
 * to the start of the image (rbd_encryption_load() reads it from there).
 */
#define LUKS_PBKDF2_ITERATIONS 1000
#define LUKS_COPY_CHUNK	       (1u << 20)

/* libcryptsetup promises no thread safety (its backend is set up lazily, unlocked): one header
 * at a time in this process. Making one takes milliseconds. */
static pthread_mutex_t luks_lock = PTHREAD_MUTEX_INITIALIZER;

/* libcryptsetup's messages: its last error kept for ours (it would print them on stderr and
 * the rest on stdout), everything at debug level in our log. */
struct luks_log {
	char last_error[256];
};

static void luks_log_cb(int level, const char *msg, void *usrptr)
{
	struct luks_log *l = usrptr;
	int n = (int)strcspn(msg, "\n");
	if (level == CRYPT_LOG_ERROR)
		snprintf(l->last_error, sizeof(l->last_error), "%.*s", n, msg);
	ims_log(IMS_LOG_DEBUG, "libcryptsetup: %.*s", n, msg);
}

/* Whether librbd can encrypt this image at all, as its own format would have said. */
static int luks2_refuses(rbd_image_t image, const rbd_image_info_t *info, const char *what)
{
	uint64_t features = 0, stripes = 1;
	int r;
	if ((r = rbd_get_features(image, &features)) < 0)
		return ims_error_set(r, "cannot read the features of image '%s': %s", what,
				     ims_strerror(r));
	if (features & RBD_FEATURE_JOURNALING)
		return ims_error_set(-ENOTSUP,
				     "cannot encrypt image '%s': librbd cannot use encryption with "
				     "journaling (make it without the journaling feature)",
				     what);
	if ((r = rbd_get_stripe_count(image, &stripes)) < 0)
		return ims_error_set(r, "cannot read the striping of image '%s': %s", what,
				     ims_strerror(r));
	if (stripes > 1)
		return ims_error_set(
			-ENOTSUP,
			"cannot encrypt image '%s': it is striped (stripe count %" PRIu64
			"); encrypted images need the default striping",
			what, stripes);
	if (info->obj_size == 0 || IMS_CRYPT_LUKS2_HEADER % info->obj_size != 0)
		return ims_error_set(-ENOTSUP,
				     "cannot encrypt image '%s': its objects of %" PRIu64
				     " bytes do not divide the 16 MiB LUKS2 header (objects of 16 "
				     "MiB at most)",
				     what, info->obj_size);
	return 0;
}

static int luks2_write_header_locked(rbd_image_t image, const char *pass, size_t pass_len,
				     const char *what);

static int luks2_write_header(rbd_image_t image, const char *pass, size_t pass_len,
			      const char *what)
{
	pthread_mutex_lock(&luks_lock);
	int r = luks2_write_header_locked(image, pass, pass_len, what);
	pthread_mutex_unlock(&luks_lock);
	return r;
}

static int luks2_write_header_locked(rbd_image_t image, const char *pass, size_t pass_len,
				     const char *what)
{
	struct crypt_device *cd = NULL;
	struct luks_log lg = {.last_error = ""};
	char path[64], *buf = NULL;
	rbd_image_info_t info;
	int r, fd;

	if ((r = rbd_stat(image, &info, sizeof(info))) < 0)
		return ims_error_set(r, "cannot read the size of image '%s': %s", what,
				     ims_strerror(r));
	if ((r = luks2_refuses(image, &info, what)) < 0)
		return r;
	if ((fd = memfd_create("imgstore-luks2", MFD_CLOEXEC)) < 0)
		return ims_error_set(-errno, "cannot make the LUKS2 header of '%s': %s", what,
				     ims_strerror(-errno));
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	/* libcryptsetup wants a device of some size to format */
	if (ftruncate(fd, 4096) < 0) {
		r = ims_error_set(-errno, "cannot make the LUKS2 header of '%s': %s", what,
				  ims_strerror(-errno));
		goto out;
	}
	if ((r = crypt_init(&cd, path)) < 0)
		goto fail;
	crypt_set_log_callback(cd, luks_log_cb, &lg);
	struct crypt_pbkdf_type pbkdf = {
		.type = CRYPT_KDF_PBKDF2,
		.hash = "sha256",
		.iterations = LUKS_PBKDF2_ITERATIONS,
		.flags = CRYPT_PBKDF_NO_BENCHMARK,
	};
	if ((r = crypt_set_pbkdf_type(cd, &pbkdf)) < 0)
		goto fail;
	struct crypt_params_luks2 params = {
		.data_alignment = info.obj_size / 512,
		.sector_size = 4096,
	};
	if ((r = crypt_format(cd, CRYPT_LUKS2, "aes", "xts-plain64", NULL, NULL, 64, &params)) < 0)
		goto fail;
	uint64_t data_off = (uint64_t)crypt_get_data_offset(cd) << 9;
	if (data_off != IMS_CRYPT_LUKS2_HEADER) { /* the usable size counts on it */
		r = ims_error_set(-ENOTSUP,
				  "cannot encrypt image '%s': its LUKS2 header would take %" PRIu64
				  " bytes, not 16 MiB",
				  what, data_off);
		goto out;
	}
	if (data_off >= info.size) {
		r = ims_error_set(
			-ENOSPC,
			"image '%s' is too small to encrypt: its LUKS2 header takes %" PRIu64
			" bytes",
			what, data_off);
		goto out;
	}
	if ((r = crypt_keyslot_add_by_volume_key(cd, CRYPT_ANY_SLOT, NULL, 0, pass, pass_len)) < 0)
		goto fail;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		r = ims_error_set(-errno, "cannot read the LUKS2 header of '%s': %s", what,
				  ims_strerror(-errno));
		goto out;
	}
	if (!(buf = malloc(LUKS_COPY_CHUNK))) {
		r = ims_error_set(-ENOMEM, "no memory for the LUKS2 header of '%s'", what);
		goto out;
	}
	for (uint64_t off = 0; off < (uint64_t)st.st_size;) {
		size_t want = (uint64_t)st.st_size - off < LUKS_COPY_CHUNK
				      ? (size_t)((uint64_t)st.st_size - off)
				      : LUKS_COPY_CHUNK;
		ssize_t got = pread(fd, buf, want, (off_t)off);
		if (got <= 0) {
			r = ims_error_set(got < 0 ? -errno : -EIO,
					  "cannot read the LUKS2 header of '%s': %s", what,
					  ims_strerror(got < 0 ? -errno : -EIO));
			goto out;
		}
		ssize_t put = rbd_write(image, off, (size_t)got, buf);
		if (put != got) {
			r = put < 0 ? (int)put : -EIO;
			ims_error_set(r, "cannot write the LUKS2 header of '%s': %s", what,
				      ims_strerror(r));
			goto out;
		}
		off += (uint64_t)got;
	}
	if ((r = rbd_flush(image)) < 0)
		ims_error_set(r, "cannot write the LUKS2 header of '%s': %s", what,
			      ims_strerror(r));
	goto out;
fail:
	ims_error_set(r, "cannot make the LUKS2 header of '%s': %s (libcryptsetup%s%s)", what,
		      ims_strerror(r), lg.last_error[0] ? ": " : "", lg.last_error);
out:
	if (cd)
		crypt_free(cd);
	free(buf);
	close(fd);
	return r < 0 ? r : 0;
}

int ims_crypt_format(rbd_image_t image, const ims_crypt_kek *kek, const char *what)
{
	uint8_t key[IMS_CRYPT_KEY_LEN];
	char wrapped[IMS_CRYPT_WRAPPED_MAX], pass[IMS_CRYPT_PASS_LEN + 1];
	int r;
	if (!kek)
		return ims_error_set(-EPERM,
				     "cannot encrypt image '%s': this daemon has no key ([server] "
				     "kek_file is unset)",
				     what);
	if (RAND_bytes(key, sizeof(key)) != 1) {
		r = ims_error_set(-EIO, "no randomness for the data key of '%s'", what);
		goto out;
	}
	if ((r = ims_crypt_wrap(wrapped, kek, key)) < 0)
		goto out;
	/* the wrapped key first: a formatted image whose key was never kept is lost */
	if ((r = rbd_metadata_set(image, IMS_CRYPT_META_KEY, wrapped)) < 0) {
		ims_error_set(r, "cannot store the key of image '%s': %s", what, ims_strerror(r));
		goto out;
	}
	tohex(pass, key, sizeof(key));
	if ((r = luks2_write_header(image, pass, IMS_CRYPT_PASS_LEN, what)) < 0)
		rbd_metadata_remove(image, IMS_CRYPT_META_KEY);
out:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(pass, sizeof(pass));
	return r;
}

int ims_crypt_load(bool *loaded, rbd_image_t image, const ims_crypt_kek *kek, const char *what)
{
	uint8_t key[IMS_CRYPT_KEY_LEN];
	char pass[IMS_CRYPT_PASS_LEN + 1];
	int r = data_key(key, image, kek, what);
	if (loaded)
		*loaded = false;
	if (r <= 0)
		goto out;
	tohex(pass, key, sizeof(key));
	rbd_encryption_luks2_format_options_t o = {
		.alg = RBD_ENCRYPTION_ALGORITHM_AES256,
		.passphrase = pass,
		.passphrase_size = IMS_CRYPT_PASS_LEN,
	};
	r = rbd_encryption_load(image, RBD_ENCRYPTION_FORMAT_LUKS2, &o, sizeof(o));
	OPENSSL_cleanse(pass, sizeof(pass));
	if (r < 0) {
		ims_error_set(r == -EPERM ? -EPERM : r,
			      "cannot load the encryption of image '%s' (LUKS2 header damaged or "
			      "key replaced?): %s",
			      what, ims_strerror(r));
		goto out;
	}
	if (loaded)
		*loaded = true;
	r = 0;
out:
	OPENSSL_cleanse(key, sizeof(key));
	return r;
}

int ims_crypt_passphrase(char *out, rbd_image_t image, const ims_crypt_kek *kek, const char *what)
{
	uint8_t key[IMS_CRYPT_KEY_LEN];
	int r = data_key(key, image, kek, what);
	if (r == 0)
		r = ims_error_set(-ENODATA, "image '%s' is not encrypted", what);
	if (r > 0) {
		tohex(out, key, sizeof(key));
		r = 0;
	}
	OPENSSL_cleanse(key, sizeof(key));
	return r;
}

int ims_crypt_host_secret(char *pass, char *uuid, rbd_image_t image, const ims_crypt_kek *kek,
			  const char *what)
{
	char wrapped[IMS_CRYPT_WRAPPED_MAX];
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	int r = ims_crypt_passphrase(pass, image, kek, what);
	if (r < 0)
		return r;
	if ((r = ims_crypt__wrapped(wrapped, image)) <= 0) {
		OPENSSL_cleanse(pass, IMS_CRYPT_PASS_LEN + 1);
		return r < 0 ? r : ims_error_set(-ENODATA, "image '%s' is not encrypted", what);
	}
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
		 EVP_DigestUpdate(c, "imgstore-luks-secret", 20) == 1 &&
		 EVP_DigestUpdate(c, wrapped, strlen(wrapped)) == 1 &&
		 EVP_DigestFinal_ex(c, md, &mdlen) == 1;
	EVP_MD_CTX_free(c);
	if (!ok) {
		OPENSSL_cleanse(pass, IMS_CRYPT_PASS_LEN + 1);
		return -ENOMEM;
	}
	md[6] = (uint8_t)((md[6] & 0x0f) | 0x80); /* version 8: custom (RFC 9562) */
	md[8] = (uint8_t)((md[8] & 0x3f) | 0x80); /* variant 10 */
	char hex[33];
	tohex(hex, md, 16);
	snprintf(uuid, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
	return 0;
}

int ims_crypt_copy_key(rbd_image_t dst, rbd_image_t src)
{
	char buf[IMS_CRYPT_WRAPPED_MAX];
	size_t n = sizeof(buf);
	int r = rbd_metadata_get(src, IMS_CRYPT_META_KEY, buf, &n);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	return rbd_metadata_set(dst, IMS_CRYPT_META_KEY, buf);
}

int ims_crypt_key_get(char *out, rbd_image_t image, const ims_crypt_kek *kek, const char *what)
{
	uint8_t key[IMS_CRYPT_KEY_LEN];
	int r = data_key(key, image, kek, what);
	OPENSSL_cleanse(key, sizeof(key));
	if (r <= 0)
		return r;
	if ((r = ims_crypt__wrapped(out, image)) < 0)
		return ims_error_set(r, "cannot read the key of image '%s': %s", what,
				     ims_strerror(r));
	return 1;
}

int ims_crypt_key_set(rbd_image_t image, const char *wrapped, const char *what)
{
	int r = rbd_metadata_set(image, IMS_CRYPT_META_KEY, wrapped);
	if (r < 0)
		ims_error_set(r, "cannot store the key of image '%s': %s", what, ims_strerror(r));
	return r;
}

void ims_crypt_rewrap_failed(ims_crypt_rewrap_result *res, const char *fmt, ...)
{
	size_t used = strlen(res->report), len = sizeof(res->report);
	res->failed++;
	if (used + 8 >= len)
		return;
	if (used)
		used += (size_t)snprintf(res->report + used, len - used, "; ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->report + used, len - used, fmt, ap);
	va_end(ap);
}

int ims_crypt_shred(rbd_image_t image, const char *what)
{
	char buf[IMS_CRYPT_WRAPPED_MAX];
	int r = ims_crypt__wrapped(buf, image);
	if (r <= 0)
		return r < 0 ? ims_error_set(r, "cannot read the key of image '%s': %s", what,
					     ims_strerror(r))
			     : 0;
	/* the value is replaced by a tombstone, not removed: whoever opens a copy later learns
	 * why it cannot be read instead of taking its ciphertext for plain data */
	r = rbd_metadata_set(image, IMS_CRYPT_META_KEY, IMS_CRYPT_SHREDDED);
	if (r < 0)
		ims_error_set(r, "cannot destroy the key of image '%s': %s", what, ims_strerror(r));
	return r;
}
