/*
 * common/ratelimit.h: a token bucket shared by threads, to hold a stream of bytes (the copies
 * of one site pair) under a rate.
 *
 * The bucket fills at RATE bytes per second up to BURST bytes (one second of rate by default).
 * Taking N bytes takes them at once if the bucket holds them, else the caller waits for the
 * deficit to fill: callers are served in order of arrival because each one reserves its
 * tokens before sleeping (the bucket may go negative). A request larger than the burst is
 * allowed; it waits for the whole of it.
 */
#ifndef IMS_COMMON_RATELIMIT_H
#define IMS_COMMON_RATELIMIT_H

#include <pthread.h>
#include <stdint.h>

typedef struct {
	pthread_mutex_t lock;
	uint64_t rate; /* bytes per second; 0: no limit */
	uint64_t burst;
	double tokens;	 /* may be negative: reserved by callers that are waiting */
	int64_t last_ns; /* when tokens were last brought up to date */
} ims_ratelimit;

/** A bucket of @p rate bytes per second (0: unlimited), full at first; @p burst 0: @p rate. */
void ims_ratelimit_init(ims_ratelimit *rl, uint64_t rate, uint64_t burst);

void ims_ratelimit_destroy(ims_ratelimit *rl);

/**
 * Reserve @p bytes at time @p now_ns (any monotonic clock) and return how long the caller
 * must wait before using them, in nanoseconds (0: now). The pure part of ims_ratelimit_take(),
 * for tests.
 */
int64_t ims_ratelimit_reserve(ims_ratelimit *rl, uint64_t bytes, int64_t now_ns);

/** Reserve @p bytes and sleep until they may be used. */
void ims_ratelimit_take(ims_ratelimit *rl, uint64_t bytes);

#endif
