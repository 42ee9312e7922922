/*
 * tier/s3.h: a small S3 client on libcurl, enough for cold tiering: PUT (with Content-MD5),
 * GET, HEAD, DELETE, an in-place copy that refreshes an object's modification time, and
 * ListObjectsV2. Requests are signed by curl itself (CURLOPT_AWS_SIGV4, "aws:amz:REGION:s3");
 * the payload's SHA-256 goes in x-amz-content-sha256, which radosgw requires.
 *
 * Failed requests (5xx, 429 throttling, a dropped or refused connection, a timeout) are
 * retried with exponential backoff and full jitter, up to the configured number of retries.
 * An ims_s3 is safe to use from several threads at once: each call borrows one of a pool of
 * curl handles, so connections are reused.
 */
#ifndef IMS_TIER_S3_H
#define IMS_TIER_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

typedef struct ims_s3 ims_s3;

#define IMS_S3_OPTS_VERSION 1
typedef struct {
	unsigned version;
	const char *name;	/* the target's name, for messages ("rgw") */
	const char *endpoint;	/* "http://host:port" or "https://host" (required) */
	const char *region;	/* NULL: "us-east-1" */
	const char *bucket;	/* required */
	const char *access_key; /* required */
	const char *secret_key; /* required */
	const char *ca_file;	/* NULL: the system's CA bundle */
	bool virtual_host;	/* bucket in the host name instead of the path */
	uint64_t timeout;	/* seconds per request; 0: 60 */
	unsigned retries;	/* retries after the first try */
	unsigned backoff_ms;	/* first backoff; doubles each retry, capped at 20 s; 0: 200 */
} ims_s3_opts;
#define IMS_S3_OPTS_INIT                                                                           \
	{                                                                                          \
		.version = IMS_S3_OPTS_VERSION                                                     \
	}

/**
 * A client for one bucket. Copies what it needs from @p opts.
 *
 * @param[out] out free with ims_s3_free().
 * @returns -EINVAL for a bad endpoint or missing field, -ENOMEM.
 */
int ims_s3_new(ims_s3 **out, const ims_s3_opts *opts);

/**
 * A client for an [s3 NAME] section of the daemon's configuration: reads the credentials file
 * ("ACCESS_KEY SECRET_KEY"), which must be a regular file that neither group nor others may
 * read.
 *
 * @returns -ENOENT if the credentials file does not exist, -EPERM if others may read it,
 *          -EINVAL if it does not hold two words.
 */
int ims_s3_from_config(ims_s3 **out, const ims_config_s3 *cfg);

void ims_s3_free(ims_s3 *s3);

/** The target's name. Borrowed. */
const char *ims_s3_name(const ims_s3 *s3);

/** Counters since creation, for tests and metrics. */
typedef struct {
	uint64_t requests; /* HTTP requests sent, retries included */
	uint64_t retries;
	uint64_t bytes_up;
	uint64_t bytes_down;
} ims_s3_stats;

/** The counters of @p s3 into @p out. */
void ims_s3_get_stats(ims_s3_stats *out, ims_s3 *s3);

/**
 * Store @p len bytes under @p key, with Content-MD5 and the payload's SHA-256 signed.
 *
 * @returns -EACCES if the target refused the credentials, -ENOENT if the bucket does not
 *          exist, -EIO if the target kept failing, -ETIMEDOUT.
 */
int ims_s3_put(ims_s3 *s3, const char *key, const void *data, size_t len);

/**
 * Read the object @p key whole.
 *
 * @param[out] out malloc'ed bytes (free()).
 * @param[out] len their count.
 * @param max refuse objects larger than this (-EFBIG).
 * @returns -ENOENT if there is no such object, -EFBIG, -EACCES, -EIO, -ETIMEDOUT.
 */
int ims_s3_get(uint8_t **out, size_t *len, ims_s3 *s3, const char *key, size_t max);

/**
 * Whether @p key exists, with its size and modification time (either may be NULL).
 *
 * @returns -ENOENT if it does not.
 */
int ims_s3_head(uint64_t *size, int64_t *mtime, ims_s3 *s3, const char *key);

/** Remove @p key; no error if it does not exist. */
int ims_s3_delete(ims_s3 *s3, const char *key);

/**
 * Copy @p key onto itself, which refreshes its modification time without moving its bytes
 * (what keeps a chunk that a push is about to reference safe from garbage collection).
 *
 * @returns -ENOENT if it does not exist.
 */
int ims_s3_touch(ims_s3 *s3, const char *key);

/** Called for each object of a listing; a non-zero return stops it and is returned. */
typedef int (*ims_s3_list_fn)(void *ctx, const char *key, uint64_t size, int64_t mtime);

/** Every object whose key starts with @p prefix, in key order (ListObjectsV2, paged). */
int ims_s3_list(ims_s3 *s3, const char *prefix, ims_s3_list_fn fn, void *ctx);

/** Create the bucket (tests, the sandbox); no error if this user already owns it. */
int ims_s3_create_bucket(ims_s3 *s3);

#endif
