#include "tier/manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zstd.h>

#include "common/error.h"
#include "common/gcm.h"
#include "common/keyfile.h"
#include "common/spec.h"

static const uint8_t magic[4] = {'I', 'M', 'S', '1'};

/* ------------------------------------------------------------------------------------------ */
/* keys */

_Static_assert(IMS_SEAL_KEY_LEN == IMS_KEYFILE_LEN, "a target's key is a key file's");

int ims_seal_key_load(ims_seal_key *out, const char *path)
{
	return ims_keyfile_read(out->key, path, "key file");
}

/* ------------------------------------------------------------------------------------------ */
/* sealing */

int ims_seal(uint8_t **out, size_t *out_len, const ims_seal_key *key, const char *aad,
	     const void *data, size_t len, int level)
{
	uint8_t *z = NULL, *o = NULL;
	const uint8_t *plain = data;
	size_t plen = len;
	uint8_t flags = 0;
	int r;

	size_t bound = ZSTD_compressBound(len);
	if (len && (z = malloc(bound))) {
		size_t zl = ZSTD_compress(z, bound, data, len, level ? level : 3);
		if (!ZSTD_isError(zl) && zl < len) {
			plain = z;
			plen = zl;
			flags |= IMS_SEAL_ZSTD;
		}
	} else if (len) {
		return -ENOMEM;
	}
	if (!(o = malloc(plen + IMS_SEAL_OVERHEAD))) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(o, magic, 4);
	o[4] = flags;
	o[5] = o[6] = o[7] = 0;
	if (RAND_bytes(o + 8, 12) != 1) {
		r = ims_error_set(-EIO, "no randomness for a nonce");
		goto out;
	}
	r = ims_gcm(true, key->key, o + 8, o, IMS_SEAL_HEADER_LEN, aad, aad ? strlen(aad) : 0,
		    plain, plen, o + IMS_SEAL_HEADER_LEN, o + IMS_SEAL_HEADER_LEN + plen);
	if (r < 0) {
		r = ims_error_set(-EIO, "encryption failed");
		goto out;
	}
	*out = o;
	*out_len = plen + IMS_SEAL_OVERHEAD;
	o = NULL;
out:
	free(z);
	free(o);
	return r;
}

int ims_unseal(uint8_t **out, size_t *out_len, const ims_seal_key *key, const char *aad,
	       const void *sealed, size_t len, size_t max)
{
	const uint8_t *s = sealed;
	uint8_t *p = NULL, *d = NULL;
	int r;

	if (len < IMS_SEAL_OVERHEAD || memcmp(s, magic, 4) != 0 || s[5] || s[6] || s[7] ||
	    (s[4] & ~IMS_SEAL_ZSTD))
		return ims_error_set(-EBADMSG, "'%s' is not a sealed imgstore object", aad);
	size_t clen = len - IMS_SEAL_OVERHEAD;
	if (clen > max + (max >> 4) + 65536 && !(s[4] & IMS_SEAL_ZSTD))
		return ims_error_set(-EBADMSG, "'%s' is larger than allowed", aad);
	if (!(p = malloc(clen ? clen : 1)))
		return -ENOMEM;
	uint8_t tag[IMS_SEAL_TAG_LEN];
	memcpy(tag, s + len - IMS_SEAL_TAG_LEN, IMS_SEAL_TAG_LEN);
	r = ims_gcm(false, key->key, s + 8, s, IMS_SEAL_HEADER_LEN, aad, aad ? strlen(aad) : 0,
		    s + IMS_SEAL_HEADER_LEN, clen, p, tag);
	if (r < 0) {
		r = ims_error_set(-EBADMSG,
				  "'%s' fails authentication: corrupt, sealed with another key, or "
				  "stored under another name",
				  aad);
		goto out;
	}
	if (!(s[4] & IMS_SEAL_ZSTD)) {
		if (clen > max) {
			r = ims_error_set(-EBADMSG,
					  "'%s' holds %zu bytes, more than the %zu allowed", aad,
					  clen, max);
			goto out;
		}
		*out = p;
		*out_len = clen;
		p = NULL;
		goto out;
	}
	unsigned long long fs = ZSTD_getFrameContentSize(p, clen);
	if (fs == ZSTD_CONTENTSIZE_ERROR || fs == ZSTD_CONTENTSIZE_UNKNOWN || fs > max) {
		r = ims_error_set(-EBADMSG, "'%s' does not decompress to at most %zu bytes", aad,
				  max);
		goto out;
	}
	if (!(d = malloc(fs ? (size_t)fs : 1))) {
		r = -ENOMEM;
		goto out;
	}
	size_t dl = ZSTD_decompress(d, (size_t)fs, p, clen);
	if (ZSTD_isError(dl) || dl != fs) {
		r = ims_error_set(-EBADMSG, "'%s' does not decompress: %s", aad,
				  ZSTD_isError(dl) ? ZSTD_getErrorName(dl) : "short frame");
		goto out;
	}
	*out = d;
	*out_len = dl;
	d = NULL;
	r = 0;
out:
	free(p);
	free(d);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* manifest */

void ims_manifest_chunk_key(char *buf, size_t len, const uint8_t sha256[IMS_SHA256_LEN])
{
	char hex[IMS_SHA256_HEX_LEN];
	ims_sha256_hex(hex, sha256);
	snprintf(buf, len, "chunks/%s", hex);
}

int ims_manifest_key(char *buf, size_t len, const char *name)
{
	if (snprintf(buf, len, "manifests/%s", name) >= (int)len)
		return ims_error_set(-ENAMETOOLONG, "cold image name '%s' is too long", name);
	return 0;
}

void ims_manifest_free(ims_manifest *m)
{
	if (!m)
		return;
	free(m->name);
	free(m->pool);
	free(m->image);
	free(m->snap);
	free(m->source);
	free(m->content_sha256);
	free(m->wrapped_key);
	free(m->chunks);
	free(m->zeros);
	for (size_t i = 0; i < m->ntags; i++) {
		free(m->tags[i].key);
		free(m->tags[i].value);
	}
	free(m->tags);
	free(m);
}

int ims_manifest_fill_zeros(ims_manifest *m)
{
	size_t cap = m->nchunks + 1, n = 0;
	ims_manifest_range *z = calloc(cap, sizeof(*z));
	uint64_t pos = 0;
	if (!z)
		return -ENOMEM;
	for (size_t i = 0; i < m->nchunks; i++) {
		if (m->chunks[i].off > pos)
			z[n++] = (ims_manifest_range){pos, m->chunks[i].off - pos};
		pos = m->chunks[i].off + m->chunks[i].len;
	}
	if (m->size > pos)
		z[n++] = (ims_manifest_range){pos, m->size - pos};
	free(m->zeros);
	m->zeros = z;
	m->nzeros = n;
	return 0;
}

static json_object *jstr(const char *s)
{
	return json_object_new_string(s ? s : "");
}

int ims_manifest_encode(char **out, size_t *len, const ims_manifest *m)
{
	json_object *o = json_object_new_object(), *chunks = NULL, *zeros = NULL, *tags = NULL;
	char hex[IMS_SHA256_HEX_LEN];
	int r = -ENOMEM;
	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "version", json_object_new_int(IMS_MANIFEST_VERSION));
	json_object_object_add(o, "name", jstr(m->name));
	json_object_object_add(o, "pool", jstr(m->pool));
	json_object_object_add(o, "image", jstr(m->image));
	json_object_object_add(o, "snap", jstr(m->snap));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)m->size));
	json_object_object_add(o, "features", json_object_new_int64((int64_t)m->features));
	json_object_object_add(o, "order", json_object_new_int((int)m->order));
	json_object_object_add(o, "chunk_size", json_object_new_int64((int64_t)m->chunk_size));
	json_object_object_add(o, "pushed", json_object_new_int64(m->pushed));
	json_object_object_add(o, "source", jstr(m->source));
	json_object_object_add(o, "content_sha256", jstr(m->content_sha256));
	json_object_object_add(o, "stored_bytes", json_object_new_int64((int64_t)m->stored_bytes));
	/* only for an encrypted image: a plain image's manifest reads as before */
	if (m->wrapped_key && m->wrapped_key[0])
		json_object_object_add(o, "wrapped_key", jstr(m->wrapped_key));
	if (!(chunks = json_object_new_array_ext((int)m->nchunks)) ||
	    !(zeros = json_object_new_array()) || !(tags = json_object_new_object()))
		goto out;
	for (size_t i = 0; i < m->nchunks; i++) {
		json_object *c = json_object_new_array_ext(3);
		if (!c)
			goto out;
		ims_sha256_hex(hex, m->chunks[i].sha256);
		json_object_array_add(c, json_object_new_int64((int64_t)m->chunks[i].off));
		json_object_array_add(c, json_object_new_int64(m->chunks[i].len));
		json_object_array_add(c, json_object_new_string(hex));
		json_object_array_add(chunks, c);
	}
	for (size_t i = 0; i < m->nzeros; i++) {
		json_object *z = json_object_new_array_ext(2);
		if (!z)
			goto out;
		json_object_array_add(z, json_object_new_int64((int64_t)m->zeros[i].off));
		json_object_array_add(z, json_object_new_int64((int64_t)m->zeros[i].len));
		json_object_array_add(zeros, z);
	}
	for (size_t i = 0; i < m->ntags; i++)
		json_object_object_add(tags, m->tags[i].key, jstr(m->tags[i].value));
	json_object_object_add(o, "chunks", chunks);
	json_object_object_add(o, "zeros", zeros);
	json_object_object_add(o, "tags", tags);
	chunks = zeros = tags = NULL;
	size_t n = 0;
	const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
	if (!text || !(*out = strndup(text, n)))
		goto out;
	*len = n;
	r = 0;
out:
	json_object_put(chunks);
	json_object_put(zeros);
	json_object_put(tags);
	json_object_put(o);
	return r;
}

/* Strict readers: a field of another type, or out of range, is an error. */
static int get_str(json_object *o, const char *key, char **dst, bool allow_empty)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return ims_error_set(-EBADMSG, "manifest: '%s' is missing or not a string", key);
	const char *s = json_object_get_string(v);
	size_t n = (size_t)json_object_get_string_len(v);
	if (strlen(s) != n || n > 4096 || (!allow_empty && n == 0))
		return ims_error_set(-EBADMSG, "manifest: '%s' is empty, too long or holds a NUL",
				     key);
	if (!(*dst = strdup(s)))
		return -ENOMEM;
	return 0;
}

static int get_u64(json_object *o, const char *key, uint64_t min, uint64_t max, uint64_t *dst)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return ims_error_set(-EBADMSG, "manifest: '%s' is missing or not an integer", key);
	int64_t x = json_object_get_int64(v);
	if (x < 0 || (uint64_t)x < min || (uint64_t)x > max)
		return ims_error_set(-EBADMSG, "manifest: '%s' is out of range", key);
	*dst = (uint64_t)x;
	return 0;
}

static int elem_u64(json_object *a, size_t i, uint64_t max, uint64_t *dst)
{
	json_object *v = json_object_array_get_idx(a, i);
	if (!v || !json_object_is_type(v, json_type_int))
		return -EBADMSG;
	int64_t x = json_object_get_int64(v);
	if (x < 0 || (uint64_t)x > max)
		return -EBADMSG;
	*dst = (uint64_t)x;
	return 0;
}

static int parse_sha(const char *s, size_t n, uint8_t out[IMS_SHA256_LEN])
{
	if (n != 64)
		return -EBADMSG;
	for (size_t i = 0; i < IMS_SHA256_LEN; i++) {
		int hi = s[2 * i] >= 'a'
				 ? (s[2 * i] <= 'f' ? s[2 * i] - 'a' + 10 : -1)
				 : (s[2 * i] >= '0' && s[2 * i] <= '9' ? s[2 * i] - '0' : -1);
		int lo = s[2 * i + 1] >= 'a'
				 ? (s[2 * i + 1] <= 'f' ? s[2 * i + 1] - 'a' + 10 : -1)
				 : (s[2 * i + 1] >= '0' && s[2 * i + 1] <= '9' ? s[2 * i + 1] - '0'
									       : -1);
		if (hi < 0 || lo < 0)
			return -EBADMSG;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* "wrapped_key": absent (a plain image, or a manifest older than encrypted tiering) or a
 * short string of [0-9a-z:] (store/crypt.h's "v1:KEKID:HEX", or "shredded"). */
static int parse_wrapped_key(ims_manifest *m, json_object *o)
{
	json_object *v;
	if (!json_object_object_get_ex(o, "wrapped_key", &v))
		return (m->wrapped_key = strdup("")) ? 0 : -ENOMEM;
	int r = get_str(o, "wrapped_key", &m->wrapped_key, true);
	if (r < 0)
		return r;
	size_t n = strlen(m->wrapped_key);
	if (n >= IMS_MANIFEST_WRAPPED_MAX ||
	    strspn(m->wrapped_key, "0123456789abcdefghijklmnopqrstuvwxyz:") != n)
		return ims_error_set(-EBADMSG, "manifest: 'wrapped_key' is no wrapped key");
	return 0;
}

/* The fields of the header: names, sizes, times. */
static int parse_header(ims_manifest *m, json_object *o)
{
	uint64_t x;
	int r;
	if ((r = get_u64(o, "version", IMS_MANIFEST_VERSION, IMS_MANIFEST_VERSION, &x)) < 0)
		return r;
	if ((r = get_str(o, "name", &m->name, false)) < 0 ||
	    (r = get_str(o, "pool", &m->pool, false)) < 0 ||
	    (r = get_str(o, "image", &m->image, false)) < 0 ||
	    (r = get_str(o, "snap", &m->snap, true)) < 0 ||
	    (r = get_str(o, "source", &m->source, true)) < 0 ||
	    (r = get_str(o, "content_sha256", &m->content_sha256, true)) < 0)
		return r;
	if (ims_name_check(IMS_NAME_POOL, m->pool) < 0 ||
	    ims_name_check(IMS_NAME_IMAGE, m->image) < 0 ||
	    (m->snap[0] && ims_name_check(IMS_NAME_SNAP, m->snap) < 0))
		return ims_error_set(-EBADMSG, "manifest: bad pool, image or snapshot name");
	char expect[3 * IMS_NAME_MAX + 4];
	snprintf(expect, sizeof(expect), "%s/%s%s%s", m->pool, m->image, m->snap[0] ? "@" : "",
		 m->snap);
	if (strcmp(expect, m->name) != 0)
		return ims_error_set(-EBADMSG, "manifest: name '%.300s' is not its pool/image@snap",
				     m->name);
	if ((r = get_u64(o, "size", 1, IMS_MANIFEST_SIZE_MAX, &m->size)) < 0 ||
	    (r = get_u64(o, "features", 0, UINT64_C(1) << 40, &m->features)) < 0 ||
	    (r = get_u64(o, "order", 12, 26, &x)) < 0)
		return r;
	m->order = (unsigned)x;
	if ((r = get_u64(o, "chunk_size", IMS_CHUNK_SIZE_MIN, IMS_CHUNK_SIZE_MAX, &m->chunk_size)) <
	    0)
		return r;
	if ((r = get_u64(o, "pushed", 0, INT64_MAX, &x)) < 0)
		return r;
	m->pushed = (int64_t)x;
	if ((r = get_u64(o, "stored_bytes", 0, INT64_MAX, &m->stored_bytes)) < 0)
		return r;
	return parse_wrapped_key(m, o);
}

/* "chunks": [offset, length, sha256] in ascending order, inside the image. */
static int parse_chunks(ims_manifest *m, json_object *o)
{
	json_object *a;
	if (!json_object_object_get_ex(o, "chunks", &a) || !json_object_is_type(a, json_type_array))
		return ims_error_set(-EBADMSG, "manifest: 'chunks' is missing or not an array");
	size_t n = json_object_array_length(a);
	if (n > m->size / IMS_CHUNK_SIZE_MIN + 1)
		return ims_error_set(-EBADMSG, "manifest: more chunks than the image can hold");
	if (n && !(m->chunks = calloc(n, sizeof(*m->chunks))))
		return -ENOMEM;
	uint64_t end = 0;
	for (size_t i = 0; i < n; i++) {
		json_object *c = json_object_array_get_idx(a, i), *h;
		uint64_t off, clen;
		if (!c || !json_object_is_type(c, json_type_array) ||
		    json_object_array_length(c) != 3 || elem_u64(c, 0, m->size, &off) < 0 ||
		    elem_u64(c, 1, m->chunk_size, &clen) < 0 || clen == 0 ||
		    !(h = json_object_array_get_idx(c, 2)) ||
		    !json_object_is_type(h, json_type_string) ||
		    parse_sha(json_object_get_string(h), (size_t)json_object_get_string_len(h),
			      m->chunks[i].sha256) < 0)
			return ims_error_set(
				-EBADMSG, "manifest: chunk %zu is not [offset, length, sha256]", i);
		if (off < end || clen > m->size - off)
			return ims_error_set(-EBADMSG,
					     "manifest: chunk %zu at offset %" PRIu64
					     " overlaps another or "
					     "passes the end of the image",
					     i, off);
		m->chunks[i].off = off;
		m->chunks[i].len = (uint32_t)clen;
		end = off + clen;
		m->nchunks++;
	}
	return 0;
}

/* "zeros": exactly the gaps between the chunks. */
static int parse_zeros(ims_manifest *m, json_object *o)
{
	json_object *a;
	int r;
	if (!json_object_object_get_ex(o, "zeros", &a) || !json_object_is_type(a, json_type_array))
		return ims_error_set(-EBADMSG, "manifest: 'zeros' is missing or not an array");
	if ((r = ims_manifest_fill_zeros(m)) < 0)
		return r;
	size_t n = json_object_array_length(a);
	if (n != m->nzeros)
		return ims_error_set(
			-EBADMSG, "manifest: the zero ranges are not the gaps between the chunks");
	for (size_t i = 0; i < n; i++) {
		json_object *z = json_object_array_get_idx(a, i);
		uint64_t off, zlen;
		if (!z || !json_object_is_type(z, json_type_array) ||
		    json_object_array_length(z) != 2 || elem_u64(z, 0, m->size, &off) < 0 ||
		    elem_u64(z, 1, m->size, &zlen) < 0 || off != m->zeros[i].off ||
		    zlen != m->zeros[i].len)
			return ims_error_set(
				-EBADMSG,
				"manifest: the zero ranges are not the gaps between the chunks");
	}
	return 0;
}

/* "tags", optional: an object of strings. */
static int parse_tags(ims_manifest *m, json_object *o)
{
	json_object *a;
	if (!json_object_object_get_ex(o, "tags", &a))
		return 0;
	if (!json_object_is_type(a, json_type_object) ||
	    json_object_object_length(a) > IMS_MANIFEST_TAGS_MAX)
		return ims_error_set(-EBADMSG, "manifest: 'tags' is not an object of strings");
	size_t nt = (size_t)json_object_object_length(a);
	if (nt && !(m->tags = calloc(nt, sizeof(*m->tags))))
		return -ENOMEM;
	json_object_object_foreach(a, k, tv)
	{
		if (m->ntags >= nt || !json_object_is_type(tv, json_type_string))
			return ims_error_set(-EBADMSG,
					     "manifest: 'tags' is not an object of strings");
		m->tags[m->ntags].key = strdup(k);
		m->tags[m->ntags].value = strdup(json_object_get_string(tv));
		m->ntags++;
		if (!m->tags[m->ntags - 1].key || !m->tags[m->ntags - 1].value)
			return -ENOMEM;
	}
	return 0;
}

int ims_manifest_parse(ims_manifest **out, const char *text, size_t len)
{
	json_tokener *tok = NULL;
	json_object *o = NULL;
	ims_manifest *m = NULL;
	int r;

	if (len > IMS_MANIFEST_MAX_BYTES)
		return ims_error_set(-EBADMSG, "manifest of %zu bytes is too large", len);
	if (!(tok = json_tokener_new_ex(6)))
		return -ENOMEM;
	o = json_tokener_parse_ex(tok, text, (int)len);
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len || !json_object_is_type(o, json_type_object)) {
		r = ims_error_set(-EBADMSG, "manifest is not a JSON object");
		goto out;
	}
	if (!(m = calloc(1, sizeof(*m)))) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = parse_header(m, o)) < 0 || (r = parse_chunks(m, o)) < 0 ||
	    (r = parse_zeros(m, o)) < 0 || (r = parse_tags(m, o)) < 0)
		goto out;
	*out = m;
	m = NULL;
out:
	ims_manifest_free(m);
	json_object_put(o);
	json_tokener_free(tok);
	return r;
}
