#include "tier/s3.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/error.h"
#include "common/opts.h"
#include "common/hash.h"
#include "common/log.h"

#define POOL_MAX       64
#define BACKOFF_CAP_MS 20000u
#define LIST_PAGE_MAX  (16u << 20) /* a listing page larger than this is refused */
#define ERROR_BODY_MAX 8192

struct ims_s3 {
	char *name;
	char *base; /* "http://host:port/bucket" or "http://bucket.host:port" */
	char *bucket;
	char *sigv4; /* "aws:amz:REGION:s3" */
	char *userpwd;
	char *ca_file;
	uint64_t timeout;
	unsigned retries;
	unsigned backoff_ms;

	pthread_mutex_t lock;
	CURL *pool[POOL_MAX];
	size_t npool;
	ims_s3_stats stats;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ------------------------------------------------------------------------------------------ */
/* setup */

int ims_s3_new(ims_s3 **out, const ims_s3_opts *o)
{
	ims_s3 *s = NULL;
	int r = -ENOMEM;

	int bad = IMS_OPTS_CHECK(o, IMS_S3_OPTS_VERSION, "S3");
	if (bad < 0)
		return bad;
	if (!o->endpoint || !o->bucket || !o->bucket[0] || !o->access_key || !o->secret_key)
		return ims_error_set(-EINVAL,
				     "an S3 target needs an endpoint, a bucket and credentials");
	const char *scheme_end = strstr(o->endpoint, "://");
	if (!scheme_end ||
	    (strncmp(o->endpoint, "http://", 7) != 0 && strncmp(o->endpoint, "https://", 8) != 0))
		return ims_error_set(-EINVAL, "S3 endpoint '%s' is not an http:// or https:// URL",
				     o->endpoint);
	for (const char *p = o->bucket; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '.'))
			return ims_error_set(-EINVAL,
					     "bucket name '%s' is not a valid S3 bucket name",
					     o->bucket);
	pthread_once(&curl_once, curl_init_once);

	if (!(s = calloc(1, sizeof(*s))))
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->timeout = o->timeout ? o->timeout : 60;
	s->retries = o->retries;
	s->backoff_ms = o->backoff_ms ? o->backoff_ms : 200;
	if (!(s->name = strdup(o->name ? o->name : o->bucket)) || !(s->bucket = strdup(o->bucket)))
		goto out;
	if (o->ca_file && !(s->ca_file = strdup(o->ca_file)))
		goto out;
	size_t elen = strlen(o->endpoint);
	while (elen && o->endpoint[elen - 1] == '/')
		elen--;
	size_t blen = elen + strlen(o->bucket) + 4;
	if (!(s->base = malloc(blen)))
		goto out;
	if (o->virtual_host) {
		size_t slen = (size_t)(scheme_end + 3 - o->endpoint);
		snprintf(s->base, blen, "%.*s%s.%.*s", (int)slen, o->endpoint, o->bucket,
			 (int)(elen - slen), o->endpoint + slen);
	} else {
		snprintf(s->base, blen, "%.*s/%s", (int)elen, o->endpoint, o->bucket);
	}
	if (asprintf(&s->sigv4, "aws:amz:%s:s3",
		     o->region && o->region[0] ? o->region : "us-east-1") < 0) {
		s->sigv4 = NULL;
		goto out;
	}
	if (asprintf(&s->userpwd, "%s:%s", o->access_key, o->secret_key) < 0) {
		s->userpwd = NULL;
		goto out;
	}
	r = 0;
	*out = s;
	s = NULL;
out:
	ims_s3_free(s);
	return r;
}

int ims_s3_from_config(ims_s3 **out, const ims_config_s3 *c)
{
	char buf[1024], ak[256], sk[256];
	struct stat st;
	int fd, r;

	fd = open(c->credentials_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ims_error_set(-errno,
				     "cannot open the credentials file '%s' of S3 target '%s': %s",
				     c->credentials_file, c->name, ims_strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return ims_error_set(
			-EINVAL, "credentials file '%s' of S3 target '%s' is not a regular file",
			c->credentials_file, c->name);
	}
	if (st.st_mode & 077) {
		close(fd);
		return ims_error_set(
			-EPERM,
			"credentials file '%s' of S3 target '%s' may be read by others "
			"(mode %03o); chmod 600 it",
			c->credentials_file, c->name, (unsigned)(st.st_mode & 0777));
	}
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return ims_error_set(-EIO, "cannot read '%s'", c->credentials_file);
	buf[n] = '\0';
	if (sscanf(buf, "%255s %255s", ak, sk) != 2)
		return ims_error_set(
			-EINVAL,
			"credentials file '%s' of S3 target '%s' must hold 'ACCESS_KEY SECRET_KEY'",
			c->credentials_file, c->name);
	ims_s3_opts o = IMS_S3_OPTS_INIT;
	o.name = c->name;
	o.endpoint = c->endpoint;
	o.region = c->region;
	o.bucket = c->bucket;
	o.access_key = ak;
	o.secret_key = sk;
	o.ca_file = c->ca_file;
	o.virtual_host = c->addressing && strcmp(c->addressing, "virtual") == 0;
	o.timeout = c->timeout;
	o.retries = (unsigned)c->retries;
	r = ims_s3_new(out, &o);
	OPENSSL_cleanse(sk, sizeof(sk));
	OPENSSL_cleanse(buf, sizeof(buf));
	return r;
}

void ims_s3_free(ims_s3 *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->npool; i++)
		curl_easy_cleanup(s->pool[i]);
	if (s->userpwd) {
		OPENSSL_cleanse(s->userpwd, strlen(s->userpwd));
		free(s->userpwd);
	}
	free(s->name);
	free(s->base);
	free(s->bucket);
	free(s->sigv4);
	free(s->ca_file);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

const char *ims_s3_name(const ims_s3 *s)
{
	return s->name;
}

void ims_s3_get_stats(ims_s3_stats *out, ims_s3 *s)
{
	pthread_mutex_lock(&s->lock);
	*out = s->stats;
	pthread_mutex_unlock(&s->lock);
}

static CURL *take_handle(ims_s3 *s)
{
	CURL *c = NULL;
	pthread_mutex_lock(&s->lock);
	if (s->npool)
		c = s->pool[--s->npool];
	pthread_mutex_unlock(&s->lock);
	if (!c)
		c = curl_easy_init();
	return c;
}

static void give_handle(ims_s3 *s, CURL *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&s->lock);
	if (s->npool < POOL_MAX) {
		s->pool[s->npool++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	if (c)
		curl_easy_cleanup(c);
}

/* ------------------------------------------------------------------------------------------ */
/* one request */

typedef struct membuf {
	uint8_t *data;
	size_t len, cap, max;
	bool too_big;
	CURL *c;	    /* to tell an error answer from data */
	struct membuf *err; /* where an error answer's body goes */
} membuf;

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
	membuf *b = arg;
	size_t len = size * n;
	long status = 0;
	if (b->err && b->c &&
	    curl_easy_getinfo(b->c, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status >= 300) {
		b = b->err;
		if (b->len + len > b->max)
			return len; /* an error body is only read for its code: the rest is dropped
				     */
	}
	if (b->len + len > b->max) {
		b->too_big = true;
		return 0;
	}
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + len + 1)
			cap *= 2;
		if (cap > b->max + 1)
			cap = b->max + 1;
		uint8_t *d = realloc(b->data, cap);
		if (!d)
			return 0;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	return len;
}

typedef struct {
	const uint8_t *data;
	size_t len, pos;
} reader;

static size_t on_read(char *p, size_t size, size_t n, void *arg)
{
	reader *r = arg;
	size_t len = size * n;
	if (len > r->len - r->pos)
		len = r->len - r->pos;
	memcpy(p, r->data + r->pos, len);
	r->pos += len;
	return len;
}

static int on_seek(void *arg, curl_off_t off, int origin)
{
	reader *r = arg;
	if (origin != SEEK_SET || off < 0 || (size_t)off > r->len)
		return CURL_SEEKFUNC_FAIL;
	r->pos = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

typedef enum { M_GET, M_PUT, M_HEAD, M_DELETE, M_COPY } method;

typedef struct {
	method m;
	const char *key;   /* object key, unencoded; NULL: the bucket */
	const char *query; /* already encoded, parameters in sorted order; may be NULL */
	const uint8_t *body;
	size_t body_len;
	membuf *resp; /* GET: the body goes here */
	long status;
	int64_t mtime;
	uint64_t length;
} request;

/* S3's URI encoding: unreserved characters stay, '/' stays in keys, the rest is %XX. */
static int url_encode(char *dst, size_t dlen, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			     (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
			     c == '~' || (keep_slash && c == '/');
		if (o + 4 > dlen)
			return -ENAMETOOLONG;
		if (plain) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '%';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	dst[o] = '\0';
	return 0;
}

static const char *method_name(method m)
{
	switch (m) {
	case M_GET: return "GET";
	case M_PUT: return "PUT";
	case M_HEAD: return "HEAD";
	case M_DELETE: return "DELETE";
	case M_COPY: return "PUT";
	}
	return "?";
}

/* The S3 error code of an error body ("NoSuchKey"), into @p buf. */
static void error_code(const membuf *b, char *buf, size_t len)
{
	buf[0] = '\0';
	if (!b->data)
		return;
	const char *s = strstr((const char *)b->data, "<Code>");
	if (!s)
		return;
	s += 6;
	const char *e = strstr(s, "</Code>");
	if (!e)
		return;
	snprintf(buf, len, "%.*s", (int)(e - s), s);
}

static bool retryable_curl(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR: return true;
	default: return false;
	}
}

static void backoff(const ims_s3 *s, unsigned attempt)
{
	uint64_t cap = (uint64_t)s->backoff_ms << (attempt < 16 ? attempt : 16);
	if (cap > BACKOFF_CAP_MS)
		cap = BACKOFF_CAP_MS;
	uint32_t rnd = 0;
	if (RAND_bytes((unsigned char *)&rnd, sizeof(rnd)) != 1)
		rnd = (uint32_t)time(NULL);
	uint64_t ms =
		cap / 2 + rnd % (cap / 2 + 1); /* "equal jitter": never less than half the cap */
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The headers of a request: the payload's SHA-256, Content-MD5 of a PUT, a copy's source. */
static int request_headers(struct curl_slist **out, const ims_s3 *s, const request *q,
			   const char *ekey)
{
	char sha_hex[IMS_SHA256_HEX_LEN], hdr_sha[128], hdr_md5[64], hdr_copy[3 * 1024 + 64];
	uint8_t digest[IMS_SHA256_LEN];
	struct curl_slist *hdrs = NULL;

	ims_sha256_buf(digest, q->body, q->body ? q->body_len : 0);
	ims_sha256_hex(sha_hex, digest);
	snprintf(hdr_sha, sizeof(hdr_sha), "x-amz-content-sha256: %s", sha_hex);
	/* No "Expect:" to drop 100-continue: curl would sign the empty header it does not send. */
	if (!(hdrs = curl_slist_append(hdrs, hdr_sha)))
		return -ENOMEM;
	*out = hdrs;
	if (q->m == M_PUT) {
		unsigned char md5[16];
		unsigned int mlen = 0;
		unsigned char b64[32];
		EVP_Digest(q->body, q->body_len, md5, &mlen, EVP_md5(), NULL);
		EVP_EncodeBlock(b64, md5, 16);
		snprintf(hdr_md5, sizeof(hdr_md5), "Content-MD5: %s", b64);
		if (!(hdrs = curl_slist_append(hdrs, hdr_md5)))
			return -ENOMEM;
	}
	if (q->m == M_COPY) {
		snprintf(hdr_copy, sizeof(hdr_copy), "x-amz-copy-source: /%s/%s", s->bucket, ekey);
		if (!(hdrs = curl_slist_append(hdrs, hdr_copy)) ||
		    !(hdrs = curl_slist_append(hdrs, "x-amz-metadata-directive: REPLACE")))
			return -ENOMEM;
	}
	return 0;
}

static void setup_handle(CURL *c, const ims_s3 *s, const request *q, const char *url,
			 struct curl_slist *hdrs, char *errbuf, membuf *body, reader *rd)
{
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s->sigv4);
	curl_easy_setopt(c, CURLOPT_USERPWD, s->userpwd);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)s->timeout);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)(s->timeout < 10 ? s->timeout : 10));
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_FILETIME, 1L);
	curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 200L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	if (s->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, s->ca_file);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
	switch (q->m) {
	case M_GET: break;
	case M_HEAD: curl_easy_setopt(c, CURLOPT_NOBODY, 1L); break;
	case M_DELETE: curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE"); break;
	case M_PUT:
	case M_COPY:
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, rd);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, rd);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rd->len);
		break;
	}
}

static void count_request(ims_s3 *s, const request *q, CURLcode cc, long status, const membuf *body)
{
	pthread_mutex_lock(&s->lock);
	s->stats.requests++;
	if (cc == CURLE_OK && status < 300) {
		if (q->m == M_PUT)
			s->stats.bytes_up += q->body_len;
		if (q->m == M_GET)
			s->stats.bytes_down += body->len;
	}
	pthread_mutex_unlock(&s->lock);
}

/* Whether to try again after @p attempt: a transient transport error or a server error. */
static bool retry(ims_s3 *s, const request *q, CURLcode cc, long status, unsigned attempt,
		  const char *errbuf)
{
	bool again = cc != CURLE_OK ? retryable_curl(cc) : status >= 500 || status == 429;
	if (!again || attempt >= s->retries)
		return false;
	ims_log_debug("S3 %s '%s' on '%s': %s; retry %u of %u", method_name(q->m),
		      q->key ? q->key : "", s->name,
		      cc != CURLE_OK ? (errbuf[0] ? errbuf : curl_easy_strerror(cc))
				     : "server error",
		      attempt + 1, s->retries);
	pthread_mutex_lock(&s->lock);
	s->stats.retries++;
	pthread_mutex_unlock(&s->lock);
	backoff(s, attempt);
	return true;
}

static int transport_error(const ims_s3 *s, const request *q, CURLcode cc, unsigned attempt,
			   const char *errbuf)
{
	int e = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
		: cc == CURLE_COULDNT_CONNECT  ? -ECONNREFUSED
		: cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE ? -EACCES
											 : -EIO;
	return ims_error_set(e, "S3 %s '%s' on target '%s' failed after %u tries: %s",
			     method_name(q->m), q->key ? q->key : "", s->name, attempt + 1,
			     errbuf[0] ? errbuf : curl_easy_strerror(cc));
}

/* The error of an HTTP answer outside 2xx, from its status and the S3 code of its body. */
static int status_error(const ims_s3 *s, const request *q, long status, const membuf *err_body)
{
	char code[64];
	error_code(err_body, code, sizeof(code));
	if (status == 404) {
		if (!strcmp(code, "NoSuchBucket"))
			return ims_error_set(-ENOENT,
					     "bucket '%s' of S3 target '%s' does not exist",
					     s->bucket, s->name);
		return ims_error_set(-ENOENT, "no object '%s' on S3 target '%s'",
				     q->key ? q->key : "", s->name);
	}
	if (status == 403 || status == 401)
		return ims_error_set(
			-EACCES, "S3 target '%s' refused %s '%s': %s (check the credentials file)",
			s->name, method_name(q->m), q->key ? q->key : "",
			code[0] ? code : "access denied");
	if (status == 409 && !strcmp(code, "BucketAlreadyOwnedByYou"))
		return -EEXIST;
	return ims_error_set(status >= 500 || status == 429 ? -EIO : -EINVAL,
			     "S3 %s '%s' on target '%s' answered HTTP %ld %s%s", method_name(q->m),
			     q->key ? q->key : "", s->name, status, code,
			     status >= 500 || status == 429 ? " after retries" : "");
}

static int perform(ims_s3 *s, request *q)
{
	char ekey[3 * 1024 + 1], url[4096 + 3 * 1024], errbuf[CURL_ERROR_SIZE];
	membuf scratch = {.max = ERROR_BODY_MAX};
	CURL *c = NULL;
	struct curl_slist *hdrs = NULL;
	int r = 0;

	if (q->key && url_encode(ekey, sizeof(ekey), q->key, true) < 0)
		return ims_error_set(-ENAMETOOLONG, "S3 key '%.64s...' is too long", q->key);
	snprintf(url, sizeof(url), "%s/%s%s%s", s->base, q->key ? ekey : "", q->query ? "?" : "",
		 q->query ? q->query : "");
	if ((r = request_headers(&hdrs, s, q, ekey)) < 0)
		goto out;
	if (!(c = take_handle(s))) {
		r = -ENOMEM;
		goto out;
	}
	for (unsigned attempt = 0;; attempt++) {
		reader rd = {q->body, q->body ? q->body_len : 0, 0};
		membuf *body = q->resp ? q->resp : &scratch;
		body->len = 0;
		body->too_big = false;
		scratch.len = 0;
		if (scratch.data)
			scratch.data[0] = '\0';
		if (q->resp) {
			q->resp->c = c;
			q->resp->err = &scratch;
		}
		setup_handle(c, s, q, url, hdrs, errbuf, body, &rd);
		errbuf[0] = '\0';
		CURLcode cc = curl_easy_perform(c);
		long status = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		count_request(s, q, cc, status, body);

		if (cc == CURLE_WRITE_ERROR && body->too_big) {
			r = ims_error_set(-EFBIG,
					  "S3 object '%s' on target '%s' is larger than %zu bytes",
					  q->key, s->name, body->max);
			goto out;
		}
		if (retry(s, q, cc, status, attempt, errbuf))
			continue;
		if (cc != CURLE_OK) {
			r = transport_error(s, q, cc, attempt, errbuf);
			goto out;
		}
		q->status = status;
		curl_off_t ft = -1, cl = -1;
		curl_easy_getinfo(c, CURLINFO_FILETIME_T, &ft);
		curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
		q->mtime = ft;
		q->length = cl > 0 ? (uint64_t)cl : 0;
		if (status < 200 || status >= 300)
			r = status_error(s, q, status, &scratch);
		break;
	}
out:
	if (c && r < 0 && r != -ENOENT && r != -EEXIST) {
		/* a connection in an unknown state is not reused */
		curl_easy_cleanup(c);
		c = NULL;
	}
	give_handle(s, c);
	curl_slist_free_all(hdrs);
	free(scratch.data);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* the calls */

int ims_s3_put(ims_s3 *s, const char *key, const void *data, size_t len)
{
	request q = {.m = M_PUT, .key = key, .body = data, .body_len = len};
	return perform(s, &q);
}

int ims_s3_get(uint8_t **out, size_t *len, ims_s3 *s, const char *key, size_t max)
{
	membuf b = {.max = max};
	request q = {.m = M_GET, .key = key, .resp = &b};
	int r = perform(s, &q);
	if (r < 0) {
		free(b.data);
		return r;
	}
	if (!b.data && !(b.data = malloc(1)))
		return -ENOMEM;
	*out = b.data;
	*len = b.len;
	return 0;
}

int ims_s3_head(uint64_t *size, int64_t *mtime, ims_s3 *s, const char *key)
{
	request q = {.m = M_HEAD, .key = key};
	int r = perform(s, &q);
	if (r < 0)
		return r;
	if (size)
		*size = q.length;
	if (mtime)
		*mtime = q.mtime;
	return 0;
}

int ims_s3_delete(ims_s3 *s, const char *key)
{
	request q = {.m = M_DELETE, .key = key};
	int r = perform(s, &q);
	return r == -ENOENT ? 0 : r;
}

int ims_s3_touch(ims_s3 *s, const char *key)
{
	request q = {.m = M_COPY, .key = key};
	return perform(s, &q);
}

int ims_s3_create_bucket(ims_s3 *s)
{
	request q = {.m = M_PUT, .key = NULL};
	int r = perform(s, &q);
	return r == -EEXIST ? 0 : r;
}

/* The text of the first <tag>...</tag> in [p, end), XML entities decoded, into @p dst. */
static const char *xml_field(const char *p, const char *end, const char *tag, char *dst,
			     size_t dlen)
{
	char open[64], close[64];
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	const char *s = memmem(p, (size_t)(end - p), open, strlen(open));
	if (!s)
		return NULL;
	s += strlen(open);
	const char *e = memmem(s, (size_t)(end - s), close, strlen(close));
	if (!e)
		return NULL;
	size_t o = 0;
	for (const char *q = s; q < e && o + 1 < dlen;) {
		static const struct {
			const char *ent;
			char c;
		} ents[] = {
			{"&amp;", '&'},	 {"&lt;", '<'},	   {"&gt;", '>'},
			{"&quot;", '"'}, {"&apos;", '\''},
		};
		bool done = false;
		for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]) && *q == '&'; i++) {
			size_t n = strlen(ents[i].ent);
			if ((size_t)(e - q) >= n && memcmp(q, ents[i].ent, n) == 0) {
				dst[o++] = ents[i].c;
				q += n;
				done = true;
				break;
			}
		}
		if (!done)
			dst[o++] = *q++;
	}
	dst[o] = '\0';
	return e + strlen(close);
}

static int64_t parse_iso8601(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
		   &tm.tm_min, &tm.tm_sec) != 6)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm);
}

int ims_s3_list(ims_s3 *s, const char *prefix, ims_s3_list_fn fn, void *ctx)
{
	char token[1024] = "", etoken[3 * 1024 + 1], eprefix[3 * 1024 + 1], query[8192];
	int r;

	if (url_encode(eprefix, sizeof(eprefix), prefix ? prefix : "", false) < 0)
		return ims_error_set(-ENAMETOOLONG, "S3 prefix too long");
	for (;;) {
		membuf b = {.max = LIST_PAGE_MAX};
		if (token[0]) {
			if (url_encode(etoken, sizeof(etoken), token, false) < 0)
				return ims_error_set(-EIO, "S3 continuation token too long");
			snprintf(query, sizeof(query),
				 "continuation-token=%s&list-type=2&max-keys=1000&prefix=%s",
				 etoken, eprefix);
		} else {
			snprintf(query, sizeof(query), "list-type=2&max-keys=1000&prefix=%s",
				 eprefix);
		}
		request q = {.m = M_GET, .query = query, .resp = &b};
		if ((r = perform(s, &q)) < 0) {
			free(b.data);
			return r;
		}
		const char *p = (const char *)b.data, *end = p ? p + b.len : NULL;
		char key[1100], size[32], mod[64], trunc[16] = "";
		r = 0;
		while (p && r == 0) {
			const char *cs = memmem(p, (size_t)(end - p), "<Contents>", 10);
			if (!cs)
				break;
			const char *ce = memmem(cs, (size_t)(end - cs), "</Contents>", 11);
			if (!ce)
				break;
			if (xml_field(cs, ce, "Key", key, sizeof(key))) {
				size[0] = mod[0] = '\0';
				xml_field(cs, ce, "Size", size, sizeof(size));
				xml_field(cs, ce, "LastModified", mod, sizeof(mod));
				r = fn(ctx, key, strtoull(size, NULL, 10), parse_iso8601(mod));
			}
			p = ce + 11;
		}
		token[0] = '\0';
		if (b.data) {
			end = (const char *)b.data + b.len;
			xml_field((const char *)b.data, end, "IsTruncated", trunc, sizeof(trunc));
			if (!strcmp(trunc, "true"))
				xml_field((const char *)b.data, end, "NextContinuationToken", token,
					  sizeof(token));
		}
		free(b.data);
		if (r != 0)
			return r;
		if (!token[0])
			return 0;
	}
}
