/*
 * store/format.c: sources, format detection and the reader dispatch.
 */
#include "store/format.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "store/format_internal.h"

/* ---------------------------------------------------------------------------------------- */
/* sources */

static ssize_t fd_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	int fd = *(int *)ctx;
	size_t done = 0;

	if (off > (uint64_t)INT64_MAX)
		return 0;
	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			int err = errno;
			if (err == EINTR)
				continue;
			return ims_error_set(-err,
					     "read of %zu bytes at offset %" PRIu64 " failed: %s",
					     len - done, off + done, ims_strerror(err));
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

void ims_source_fd(ims_source *out, int *fd, uint64_t size)
{
	assert(out && fd);
	out->pread = fd_pread;
	out->size = size;
	out->ctx = fd;
	out->zeros = NULL;
}

static ssize_t mem_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	const ims_source_mem_ctx *m = ctx;

	if (off >= m->len)
		return 0;
	if (len > m->len - off)
		len = (size_t)(m->len - off);
	memcpy(buf, m->data + off, len);
	return (ssize_t)len;
}

void ims_source_mem(ims_source *out, ims_source_mem_ctx *ctx, const void *data, size_t len)
{
	assert(out && ctx && (data || !len));
	ctx->data = data;
	ctx->len = len;
	out->pread = mem_pread;
	out->size = len;
	out->ctx = ctx;
	out->zeros = NULL;
}

#define SENT_RANGES 64 /* an outbound stream's ranges sent past the first gap */

struct ims_source_growing {
	int fd;
	uint64_t size;
	unsigned stall_s;
	int (*stop)(void *ctx);
	void *stop_ctx;
	pthread_mutex_t lock;
	pthread_cond_t cond;  /* CLOCK_MONOTONIC: arrived, abandoned, base or hi changed */
	uint64_t arrived;     /* [0, arrived) is in the file (or the ring) */
	struct timespec last; /* when bytes last arrived (or the source was made) */
	bool abandoned;
	char why[200];
	unsigned refs; /* the owner's, and each ims_source_growing_hold() */
	/* the ring (ims_source_growing_buffer()): file bytes [base, base + cap) at ring[off % cap];
	 * below base they are in the file, written there when they left the ring */
	uint8_t *ring;
	size_t cap;
	int wfd;	     /* the file, for what leaves the ring */
	uint64_t base;	     /* a multiple of RING_ALIGN */
	uint64_t hi;	     /* the furthest end a reader asked for (outbound: sent) */
	uint64_t spilled;    /* [base, spilled) is in the file too (a multiple of RING_ALIGN) */
	pthread_t spiller;   /* writes what lies RING_BEHIND behind the reader to the file */
	bool spilling, quit; /* the spiller runs; told to end */
	pthread_cond_t spill_cond; /* the spiller's own: hi, arrived, room wanted, quit */
	struct timespec moved;	   /* when base or hi last moved (a put waiting for room) */
	/* an outbound stream (ring without a file, wfd < 0): what the reader passed leaves the
	 * ring RING_BEHIND behind it, and is gone; the size may be known only at the end.
	 * hi is then the first byte not yet sent; ranges sent past it (answers out of order)
	 * wait in sent[] until the ones before them were sent too */
	bool outbound;
	bool end_told;	       /* an answer said eof (ims_source_growing_told_end()) */
	struct timespec ended; /* when ims_source_growing_end() said the size (0: not yet) */
	struct {
		uint64_t from, to;
	} sent[SENT_RANGES]; /* sorted, apart from each other and from hi */
	unsigned nsent;
};

#define RING_ALIGN  4096u      /* O_DIRECT: offsets, lengths and the ring's memory */
#define RING_BEHIND (4u << 20) /* kept in memory behind the furthest read */
#define SPILL_MAX   (4u << 20) /* the spiller writes at most this much at once */

static double mono_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* Wait until [0, end) has arrived. Called with g->lock held. */
static int growing_wait_locked(ims_source_growing *g, uint64_t end)
{
	while (g->arrived < end) {
		if (g->abandoned)
			return ims_error_set(-ECANCELED, "%s", g->why);
		double idle = mono_since(&g->last);
		if (idle >= (double)g->stall_s)
			return ims_error_set(-ETIMEDOUT,
					     "the upload stalled for %u s: %" PRIu64 " of %" PRIu64
					     " bytes arrived, none since",
					     g->stall_s, g->arrived, g->size);
		if (g->stop) {
			pthread_mutex_unlock(&g->lock);
			int stop = g->stop(g->stop_ctx);
			pthread_mutex_lock(&g->lock);
			if (stop)
				return ims_error_set_default(
					-ECANCELED,
					"cancelled while waiting for the upload's bytes");
			if (g->arrived >= end)
				break;
		}
		/* wake at least once a second: the stop test, the stall deadline */
		double wait = (double)g->stall_s - idle;
		if (wait > 1.0)
			wait = 1.0;
		struct timespec at;
		clock_gettime(CLOCK_MONOTONIC, &at);
		long ns = at.tv_nsec + (long)(wait * 1e9) + 1000000;
		at.tv_sec += ns / 1000000000L;
		at.tv_nsec = ns % 1000000000L;
		pthread_cond_timedwait(&g->cond, &g->lock, &at);
	}
	return 0;
}

/* Copy [off, off + len) of the ring (all of it within [base, base + cap)) to or from @p buf. */
static void ring_copy(ims_source_growing *g, uint8_t *buf, size_t len, uint64_t off, bool in)
{
	while (len) {
		size_t at = (size_t)(off % g->cap);
		size_t n = g->cap - at < len ? g->cap - at : len;
		if (in)
			memcpy(g->ring + at, buf, n);
		else
			memcpy(buf, g->ring + at, n);
		buf += n;
		off += n;
		len -= n;
	}
}

static ssize_t growing_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	ims_source_growing *g = ctx;
	uint64_t end = off >= g->size ? g->size : len > g->size - off ? g->size : off + len;

	pthread_mutex_lock(&g->lock);
	if (g->ring && end > g->hi) {
		g->hi = end; /* the spiller may now write what is behind to the file */
		clock_gettime(CLOCK_MONOTONIC, &g->moved);
		pthread_cond_signal(&g->spill_cond);
	}
	int r = growing_wait_locked(g, end);
	if (r == 0 && g->outbound && off < g->base && off < end)
		r = ims_error_set(-ERANGE,
				  "offset %" PRIu64 " was sent already: the stream keeps %u MiB "
				  "behind the furthest read",
				  off, RING_BEHIND >> 20);
	if (r < 0 || !g->ring || end <= off) {
		pthread_mutex_unlock(&g->lock);
		return r < 0 ? r : fd_pread(&g->fd, buf, len, off);
	}
	/* what left the ring is read from the file: base only grows once it is written there */
	uint64_t from = off < g->base ? (end < g->base ? end : g->base) : off;
	if (from < end)
		ring_copy(g, (uint8_t *)buf + (from - off), (size_t)(end - from), from, false);
	pthread_mutex_unlock(&g->lock);
	if (from > off) {
		ssize_t n = fd_pread(&g->fd, buf, (size_t)(from - off), off);
		if (n < 0)
			return n;
		if ((uint64_t)n < from - off)
			return ims_error_set(-EIO,
					     "the upload's file holds %zd of %" PRIu64
					     " bytes at offset %" PRIu64,
					     n, from - off, off);
	}
	return (ssize_t)(end - off);
}

/* Write [from, to) of the ring to the file (lock not held: nobody writes that part). */
static int ring_spill(ims_source_growing *g, uint64_t from, uint64_t to)
{
	while (from < to) {
		size_t at = (size_t)(from % g->cap);
		size_t n = g->cap - at < to - from ? g->cap - at : (size_t)(to - from);
		ssize_t w = pwrite(g->wfd, g->ring + at, n, (off_t)from);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return ims_error_set(w < 0 && errno == ENOSPC ? -ENOSPC : -EIO,
					     "cannot write the upload's file: %s",
					     ims_strerror(w < 0 ? errno : EIO));
		from += (uint64_t)w;
	}
	return 0;
}

/* What the spiller may write: arrived (no hole) and RING_BEHIND behind the furthest read. */
static uint64_t spill_limit_locked(const ims_source_growing *g)
{
	uint64_t low = g->hi > RING_BEHIND ? g->hi - RING_BEHIND : 0;
	if (low > g->arrived)
		low = g->arrived;
	return low - low % RING_ALIGN;
}

/*
 * The spiller: copies to the file, in the background, what the reader left behind, so that a
 * chunk needing room in the ring finds it written already and only moves base (no write on
 * the upload's way, no page cache with O_DIRECT).
 */
static void *spiller_main(void *arg)
{
	ims_source_growing *g = arg;
	pthread_mutex_lock(&g->lock);
	while (!g->quit && !g->abandoned) {
		uint64_t from = g->spilled, to = spill_limit_locked(g);
		if (to <= from) {
			struct timespec at;
			clock_gettime(CLOCK_MONOTONIC, &at);
			at.tv_sec += 1;
			pthread_cond_timedwait(&g->spill_cond, &g->lock, &at);
			continue;
		}
		if (to - from > SPILL_MAX)
			to = from + SPILL_MAX;
		/* [from, to) stays in the ring while it is written: base never passes spilled */
		pthread_mutex_unlock(&g->lock);
		int r = ring_spill(g, from, to);
		pthread_mutex_lock(&g->lock);
		if (r < 0) {
			if (!g->abandoned) {
				g->abandoned = true;
				snprintf(g->why, sizeof(g->why), "%s", ims_error_last());
			}
		} else {
			g->spilled = to;
		}
		pthread_cond_broadcast(&g->cond);
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

/*
 * Make room in the ring for bytes up to @p end: drop what the spiller wrote to the file, or
 * wait for it (and for the reader). Called with g->lock held.
 */
static int ring_room_locked(ims_source_growing *g, uint64_t end)
{
	while (end > g->base + g->cap) {
		if (g->abandoned)
			return ims_error_set(-ECANCELED, "%s", g->why);
		/* no more than the room asked for: what stays may be read again */
		uint64_t need = (end - g->cap + RING_ALIGN - 1) / RING_ALIGN * RING_ALIGN;
		uint64_t done = g->outbound ? spill_limit_locked(g) : g->spilled;
		uint64_t low = done < need ? done : need;
		if (low > g->base) {
			g->base = low;
			clock_gettime(CLOCK_MONOTONIC, &g->moved);
			continue;
		}
		/* the spiller's own condition: a broadcast on g->cond would wake the other puts
		 * waiting here, which would wake this one again, round and round */
		pthread_cond_signal(&g->spill_cond);
		double idle = mono_since(&g->moved);
		if (idle >= (double)g->stall_s)
			return g->outbound ? ims_error_set(-ETIMEDOUT,
							   "the client read none of the export "
							   "for %u s: the export waits for room "
							   "in memory",
							   g->stall_s)
					   : ims_error_set(-ETIMEDOUT,
							   "the import read none of the upload "
							   "for %u s: the upload waits for room "
							   "in memory",
							   g->stall_s);
		if (g->outbound && g->stop) {
			pthread_mutex_unlock(&g->lock);
			int stop = g->stop(g->stop_ctx);
			pthread_mutex_lock(&g->lock);
			if (stop)
				return ims_error_set_default(
					-ECANCELED, "cancelled while the client downloads");
		}
		struct timespec at;
		clock_gettime(CLOCK_MONOTONIC, &at);
		at.tv_sec += 1;
		pthread_cond_timedwait(&g->cond, &g->lock, &at);
	}
	return 0;
}

int ims_source_growing_put(ims_source_growing *g, const void *data, size_t len, uint64_t off)
{
	if (!g->ring)
		return ims_error_set(-EINVAL, "the upload's source holds no memory");
	if (off > g->size || len > g->size - off)
		return ims_error_set(
			-EINVAL, "%zu bytes at offset %" PRIu64 " pass the upload's end", len, off);
	pthread_mutex_lock(&g->lock);
	int r = off < g->base
			? ims_error_set(-EINVAL, "offset %" PRIu64 " was already received", off)
			: ring_room_locked(g, off + len);
	pthread_mutex_unlock(&g->lock);
	if (r < 0)
		return r;
	/* [off, off + len) is this caller's until it says it arrived: no lock for the copy */
	ring_copy(g, (uint8_t *)data, len, off, true);
	return 0;
}

int ims_source_growing_buffer(ims_source_growing *g, int wfd, size_t bytes)
{
	bytes = (bytes + RING_BEHIND + 2 * RING_ALIGN - 1) / RING_ALIGN * RING_ALIGN;
	if (wfd < 0) { /* an outbound stream: memory only, no file behind the ring */
		void *ring = NULL;
		if (posix_memalign(&ring, RING_ALIGN, bytes) != 0)
			return ims_error_set(-ENOMEM, "out of memory for a stream's buffer");
		pthread_mutex_lock(&g->lock);
		g->ring = ring;
		g->cap = bytes;
		g->outbound = true;
		pthread_mutex_unlock(&g->lock);
		return 0;
	}
	if (bytes > g->size + RING_ALIGN)
		bytes = (size_t)((g->size + 2 * RING_ALIGN - 1) / RING_ALIGN * RING_ALIGN);
	void *ring = NULL;
	if (posix_memalign(&ring, RING_ALIGN, bytes) != 0) {
		close(wfd);
		return ims_error_set(-ENOMEM, "out of memory for an upload's buffer");
	}
	pthread_mutex_lock(&g->lock);
	g->ring = ring;
	g->cap = bytes;
	g->wfd = wfd;
	g->spilling = pthread_create(&g->spiller, NULL, spiller_main, g) == 0;
	pthread_mutex_unlock(&g->lock);
	if (!g->spilling)
		return ims_error_set(-EAGAIN, "cannot start an upload's writer thread");
	return 0;
}

void ims_source_growing_end(ims_source_growing *g, uint64_t size)
{
	pthread_mutex_lock(&g->lock);
	if (size >= g->arrived) {
		g->size = size;
		g->arrived = size;
		clock_gettime(CLOCK_MONOTONIC, &g->last);
		g->ended = g->last;
		pthread_cond_broadcast(&g->cond);
	}
	pthread_mutex_unlock(&g->lock);
}

int ims_source_growing_read_some(size_t *got, bool *eof, ims_source_growing *g, void *buf,
				 size_t len, uint64_t off, unsigned wait_ms)
{
	struct timespec until;
	int r = 0;

	*got = 0;
	*eof = false;
	if (!g->outbound)
		return ims_error_set(-EINVAL, "the source is no outbound stream");
	clock_gettime(CLOCK_MONOTONIC, &until);
	long ns = until.tv_nsec + (long)(wait_ms % 1000u) * 1000000L;
	until.tv_sec += (time_t)(wait_ms / 1000u) + ns / 1000000000L;
	until.tv_nsec = ns % 1000000000L;
	pthread_mutex_lock(&g->lock);
	for (;;) {
		if (off > g->size) {
			r = ims_error_set(-ERANGE,
					  "offset %" PRIu64 " is past the end (%" PRIu64 ")", off,
					  g->size);
			break;
		}
		if (off < g->base) {
			r = ims_error_set(-ERANGE,
					  "offset %" PRIu64 " was sent already: the stream keeps "
					  "%u MiB behind the first byte not sent",
					  off, RING_BEHIND >> 20);
			break;
		}
		if (g->arrived > off || off == g->size)
			break;
		if (g->abandoned) {
			r = ims_error_set(-ECANCELED, "%s", g->why);
			break;
		}
		if (pthread_cond_timedwait(&g->cond, &g->lock, &until) == ETIMEDOUT)
			break;
	}
	if (r == 0 && g->arrived > off) {
		uint64_t end = g->arrived - off < len ? g->arrived : off + len;
		ring_copy(g, buf, (size_t)(end - off), off, false);
		*got = (size_t)(end - off);
	}
	if (r == 0)
		*eof = off + *got >= g->size;
	pthread_mutex_unlock(&g->lock);
	return r;
}

/* Record [from, to) as sent (to <= arrived, from < to). Called with g->lock held. */
static void sent_add_locked(ims_source_growing *g, uint64_t from, uint64_t to)
{
	if (from <= g->hi) {
		/* it joins what was sent from 0: so may ranges sent out of order */
		uint64_t hi = to > g->hi ? to : g->hi;
		unsigned i = 0;
		for (; i < g->nsent && g->sent[i].from <= hi; i++)
			if (g->sent[i].to > hi)
				hi = g->sent[i].to;
		memmove(g->sent, g->sent + i, (g->nsent - i) * sizeof(g->sent[0]));
		g->nsent -= i;
		if (hi > g->hi) {
			g->hi = hi; /* what lies RING_BEHIND behind may leave the ring */
			clock_gettime(CLOCK_MONOTONIC, &g->moved);
			pthread_cond_broadcast(&g->cond);
		}
		return;
	}
	/* past a gap: merge with the ranges it touches, else insert it in order */
	unsigned i = 0;
	while (i < g->nsent && g->sent[i].to < from)
		i++;
	unsigned j = i;
	while (j < g->nsent && g->sent[j].from <= to) {
		if (g->sent[j].from < from)
			from = g->sent[j].from;
		if (g->sent[j].to > to)
			to = g->sent[j].to;
		j++;
	}
	if (j == i && g->nsent == SENT_RANGES)
		return; /* no room: the range is forgotten and the stream waits for it no
			   more than for a chunk never asked (a client of SENT_RANGES chunks
			   in flight at most) */
	if (j == i) {
		memmove(g->sent + i + 1, g->sent + i, (g->nsent - i) * sizeof(g->sent[0]));
		g->nsent++;
	} else if (j > i + 1) {
		memmove(g->sent + i + 1, g->sent + j, (g->nsent - j) * sizeof(g->sent[0]));
		g->nsent -= j - i - 1;
	}
	g->sent[i].from = from;
	g->sent[i].to = to;
}

void ims_source_growing_sent(ims_source_growing *g, uint64_t from, uint64_t to)
{
	pthread_mutex_lock(&g->lock);
	if (to > g->arrived)
		to = g->arrived; /* not made yet: not sent */
	if (from < to && to > g->hi)
		sent_add_locked(g, from, to);
	pthread_mutex_unlock(&g->lock);
}

void ims_source_growing_told_end(ims_source_growing *g)
{
	pthread_mutex_lock(&g->lock);
	g->end_told = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

uint64_t ims_source_growing_size(ims_source_growing *g)
{
	pthread_mutex_lock(&g->lock);
	uint64_t size = g->size;
	pthread_mutex_unlock(&g->lock);
	return size;
}

int ims_source_growing_drained(ims_source_growing *g)
{
	int r = 0;

	pthread_mutex_lock(&g->lock);
	for (;;) {
		bool sent = g->hi >= g->size && g->arrived >= g->size;
		/* every byte sent: the client may still ask where the stream ends (its last
		 * answer came before the end was known), and would find no stream */
		/* the grace runs from the last byte sent or the end known, whichever came later */
		if (sent && (g->end_told || (mono_since(&g->moved) >= IMS_STREAM_END_GRACE_S &&
					     mono_since(&g->ended) >= IMS_STREAM_END_GRACE_S)))
			break;
		if (g->abandoned) {
			r = ims_error_set(-ECANCELED, "%s", g->why);
			break;
		}
		if (!sent && mono_since(&g->moved) >= (double)g->stall_s) {
			r = ims_error_set(-ETIMEDOUT,
					  "the client read none of the export for %u s: %" PRIu64
					  " of %" PRIu64 " bytes sent",
					  g->stall_s, g->hi, g->size);
			break;
		}
		if (g->stop) {
			pthread_mutex_unlock(&g->lock);
			int stop = g->stop(g->stop_ctx);
			pthread_mutex_lock(&g->lock);
			if (stop) {
				r = ims_error_set_default(-ECANCELED,
							  "cancelled while the client downloads");
				break;
			}
		}
		struct timespec at;
		clock_gettime(CLOCK_MONOTONIC, &at);
		at.tv_sec += 1;
		pthread_cond_timedwait(&g->cond, &g->lock, &at);
	}
	pthread_mutex_unlock(&g->lock);
	return r;
}

void ims_source_growing_hold(ims_source_growing *g)
{
	pthread_mutex_lock(&g->lock);
	g->refs++;
	pthread_mutex_unlock(&g->lock);
}

int ims_source_growing_new(ims_source_growing **out, int fd, uint64_t size, unsigned stall_s,
			   int (*stop)(void *ctx), void *stop_ctx)
{
	pthread_condattr_t attr;
	ims_source_growing *g = calloc(1, sizeof(*g));

	if (!g)
		return ims_error_set(-ENOMEM, "out of memory for an upload's source");
	g->fd = fd;
	g->size = size;
	g->stall_s = stall_s ? stall_s : 1;
	g->stop = stop;
	g->stop_ctx = stop_ctx;
	g->refs = 1;
	g->wfd = -1;
	clock_gettime(CLOCK_MONOTONIC, &g->last);
	g->moved = g->last;
	pthread_mutex_init(&g->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&g->cond, &attr);
	pthread_cond_init(&g->spill_cond, &attr);
	pthread_condattr_destroy(&attr);
	*out = g;
	return 0;
}

void ims_source_growing_source(ims_source *out, ims_source_growing *g)
{
	assert(out && g);
	out->pread = growing_pread;
	out->size = g->size;
	out->ctx = g;
	out->zeros = NULL;
}

void ims_source_growing_arrived(ims_source_growing *g, uint64_t upto)
{
	pthread_mutex_lock(&g->lock);
	if (upto > g->arrived) {
		g->arrived = upto;
		clock_gettime(CLOCK_MONOTONIC, &g->last);
		pthread_cond_broadcast(&g->cond);
		pthread_cond_signal(&g->spill_cond);
	}
	pthread_mutex_unlock(&g->lock);
}

void ims_source_growing_abandon(ims_source_growing *g, const char *why)
{
	pthread_mutex_lock(&g->lock);
	if (!g->abandoned) {
		g->abandoned = true;
		snprintf(g->why, sizeof(g->why), "%s", why);
		pthread_cond_broadcast(&g->cond);
		pthread_cond_signal(&g->spill_cond);
	}
	pthread_mutex_unlock(&g->lock);
}

void ims_source_growing_free(ims_source_growing *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	unsigned refs = --g->refs;
	pthread_mutex_unlock(&g->lock);
	if (refs)
		return;
	if (g->spilling) {
		pthread_mutex_lock(&g->lock);
		g->quit = true;
		pthread_cond_signal(&g->spill_cond);
		pthread_mutex_unlock(&g->lock);
		pthread_join(g->spiller, NULL);
	}
	free(g->ring);
	if (g->wfd >= 0)
		close(g->wfd);
	pthread_mutex_destroy(&g->lock);
	pthread_cond_destroy(&g->cond);
	pthread_cond_destroy(&g->spill_cond);
	free(g);
}

int ims_format__pread(const ims_source *src, void *buf, size_t len, uint64_t off, size_t *got)
{
	size_t done = 0;

	/* Never ask past the size the source claims, whatever the file says. */
	if (off >= src->size)
		len = 0;
	else if (len > src->size - off)
		len = (size_t)(src->size - off);
	while (done < len) {
		ssize_t n = src->pread(src->ctx, (uint8_t *)buf + done, len - done, off + done);
		if (n < 0)
			return ims_error_set_default(
				(int)n, "read of %zu bytes at offset %" PRIu64 " failed: %s",
				len - done, off + done, ims_strerror((int)n));
		if (n == 0)
			break;
		if ((size_t)n > len - done)
			return ims_error_set(-EIO, "source returned %zd bytes for a read of %zu", n,
					     len - done);
		done += (size_t)n;
	}
	*got = done;
	return 0;
}

int ims_format__pread_exact(const ims_source *src, void *buf, size_t len, uint64_t off,
			    const char *what)
{
	size_t got;
	int r = ims_format__pread(src, buf, len, off, &got);

	if (r < 0)
		return r;
	if (got != len)
		return ims_error_set(-EINVAL,
				     "%s at offset %" PRIu64 " is truncated (%zu of %zu bytes)",
				     what, off, got, len);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* table offsets and the table cache */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

void ims_format__offsets_sort(ims_format__offsets *o)
{
	size_t i, n = 0;

	if (!o->n)
		return;
	qsort(o->v, o->n, sizeof(*o->v), cmp_u64);
	for (i = 0; i < o->n; i++)
		if (n == 0 || o->v[n - 1] != o->v[i])
			o->v[n++] = o->v[i];
	o->n = n;
}

bool ims_format__offsets_any_in(const ims_format__offsets *o, uint64_t lo, uint64_t hi)
{
	size_t a = 0, b = o->n;

	/* the first offset >= lo */
	while (a < b) {
		size_t m = a + (b - a) / 2;
		if (o->v[m] < lo)
			a = m + 1;
		else
			b = m;
	}
	return a < o->n && o->v[a] <= hi;
}

int ims_format__cache_init(ims_format__cache *c, size_t nslots, size_t table_bytes)
{
	assert(nslots > 0 && table_bytes > 0);
	memset(c, 0, sizeof(*c));
	c->slots = calloc(nslots, sizeof(*c->slots));
	if (!c->slots)
		return ims_error_set(-ENOMEM, "out of memory for a table cache");
	for (size_t i = 0; i < nslots; i++)
		c->slots[i].key = UINT64_MAX;
	c->nslots = nslots;
	c->table_bytes = table_bytes;
	return 0;
}

int ims_format__cache_get(ims_format__cache *c, const ims_source *src, uint64_t off,
			  const char *what, const uint8_t **out)
{
	ims_format__cache_slot *s = &c->slots[c->last];
	size_t i, victim = 0;
	int r;

	if (s->key == off) {
		*out = s->data;
		return 0;
	}
	for (i = 0; i < c->nslots; i++) {
		s = &c->slots[i];
		if (s->key == off) {
			s->used = ++c->clock;
			c->last = i;
			*out = s->data;
			return 0;
		}
		if (s->used < c->slots[victim].used)
			victim = i;
	}
	s = &c->slots[victim];
	if (!s->data) {
		s->data = malloc(c->table_bytes);
		if (!s->data)
			return ims_error_set(-ENOMEM, "out of memory for a %zu-byte table",
					     c->table_bytes);
	}
	s->key = UINT64_MAX;
	r = ims_format__pread_exact(src, s->data, c->table_bytes, off, what);
	if (r < 0)
		return r;
	s->key = off;
	s->used = ++c->clock;
	c->last = victim;
	*out = s->data;
	return 0;
}

void ims_format__cache_free(ims_format__cache *c)
{
	if (!c->slots)
		return;
	for (size_t i = 0; i < c->nslots; i++)
		free(c->slots[i].data);
	free(c->slots);
	c->slots = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* formats */

static const char *const names[] = {
	[IMS_FORMAT_AUTO] = "auto", [IMS_FORMAT_RAW] = "raw", [IMS_FORMAT_QCOW2] = "qcow2",
	[IMS_FORMAT_VMDK] = "vmdk", [IMS_FORMAT_VDI] = "vdi", [IMS_FORMAT_VHDX] = "vhdx",
	[IMS_FORMAT_VPC] = "vpc",
};

const char *ims_format_name(ims_format_kind kind)
{
	if ((unsigned)kind >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[kind];
}

int ims_format_parse(ims_format_kind *out, const char *s)
{
	if (!out || !s)
		return ims_error_set(-EINVAL, "no format given");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (ims_format_kind)i;
			return 0;
		}
	}
	return ims_error_set(
		-EINVAL, "unknown image format '%s' (auto, raw, qcow2, vmdk, vdi, vhdx or vpc)", s);
}

/*
 * The formats QEMU knows that imgstore cannot read: found by their magic so that their
 * container is never imported as a raw disk. Where QEMU's probes look (block/qed.c,
 * parallels.c, bochs.c, cloop.c, crypto.c); a dmg carries its mark in the last 512 bytes
 * instead.
 */
#define TAIL_AT_END UINT64_MAX
#define MAGIC(s)    s, sizeof(s) - 1
static const struct {
	const char *name; /* QEMU's name of the format */
	const char *what; /* for the message */
	uint64_t off;	  /* where the magic is in the head, or TAIL_AT_END: the last 512 bytes */
	const char *magic;
	size_t len;
	/* Declared raw, imported as the raw bytes: a LUKS header is also what a whole disk
	 * encrypted inside its guest starts with, and its guest reads it so. */
	bool raw_ok;
} unreadable[] = {
	{"qed", "QEMU enhanced disk", 0, MAGIC("QED\0"), false},
	{"parallels", "Parallels", 0, MAGIC("WithoutFreeSpace"), false},
	{"parallels", "Parallels", 0, MAGIC("WithouFreSpacExt"), false},
	{"dmg", "Apple disk image", TAIL_AT_END, MAGIC("koly\0\0\0\4\0\0\2\0"), false},
	{"bochs", "Bochs", 0, MAGIC("Bochs Virtual HD Image\0"), false},
	{"cloop", "compressed loop", 0,
	 MAGIC("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop "
	       "$1\n"),
	 false},
	{"luks", "LUKS encrypted", 0, MAGIC("LUKS\xba\xbe"), true},
};

#define HEAD_BYTES 128

/* The format of the bytes; *unread the index in unreadable[] of a format imgstore cannot
 * read (*out is then RAW), or -1. */
static int detect(ims_format_kind *out, int *unread, const ims_source *src)
{
	static const char desc[] = IMS_FORMAT__VMDK_DESCRIPTOR_MAGIC;
	uint8_t head[HEAD_BYTES], tail[16];
	size_t got, tail_got = 0;
	int r;

	*unread = -1;
	r = ims_format__pread(src, head, sizeof(head), 0, &got);
	if (r < 0)
		return r;
	if (got >= 4 && memcmp(head, "QFI\xfb", 4) == 0) {
		*out = IMS_FORMAT_QCOW2;
		return 0;
	}
	if (got >= 4 && (memcmp(head, "KDMV", 4) == 0 || memcmp(head, "COWD", 4) == 0)) {
		*out = IMS_FORMAT_VMDK;
		return 0;
	}
	if (got >= sizeof(desc) - 1 && memcmp(head, desc, sizeof(desc) - 1) == 0) {
		*out = IMS_FORMAT_VMDK; /* descriptor-only: open refuses it by its createType */
		return 0;
	}
	/* where QEMU's probes look (block/vdi.c, vhdx.c, vpc.c) */
	if (got >= 68 && memcmp(head + 64, "\x7f\x10\xda\xbe", 4) == 0) {
		*out = IMS_FORMAT_VDI;
		return 0;
	}
	if (got >= 8 && memcmp(head, "vhdxfile", 8) == 0) {
		*out = IMS_FORMAT_VHDX;
		return 0;
	}
	if (got >= 8 && memcmp(head, "conectix", 8) == 0) {
		*out = IMS_FORMAT_VPC;
		return 0;
	}
	if (src->size >= 1024 &&
	    (r = ims_format__pread(src, tail, sizeof(tail), src->size - 512, &tail_got)) < 0)
		return r;
	/* a fixed VHD: the disk, then its footer (QEMU's probe misses it, its open finds it) */
	if (tail_got >= 8 && memcmp(tail, "conectix", 8) == 0) {
		*out = IMS_FORMAT_VPC;
		return 0;
	}
	*out = IMS_FORMAT_RAW;
	for (size_t i = 0; i < sizeof(unreadable) / sizeof(unreadable[0]); i++) {
		const uint8_t *at =
			unreadable[i].off == TAIL_AT_END ? tail : head + unreadable[i].off;
		size_t have = unreadable[i].off == TAIL_AT_END ? tail_got
			      : got > unreadable[i].off	       ? got - (size_t)unreadable[i].off
							       : 0;
		assert(unreadable[i].len <= sizeof(tail) || unreadable[i].off != TAIL_AT_END);
		assert(unreadable[i].off == TAIL_AT_END ||
		       unreadable[i].off + unreadable[i].len <= sizeof(head));
		if (have >= unreadable[i].len &&
		    memcmp(at, unreadable[i].magic, unreadable[i].len) == 0) {
			*unread = (int)i;
			break;
		}
	}
	return 0;
}

static int refuse_unreadable(int i)
{
	return ims_error_set(-ENOTSUP,
			     "the image is in format '%s' (%s), which imgstore cannot read: "
			     "convert it first (qemu-img convert -O qcow2)%s",
			     unreadable[i].name, unreadable[i].what,
			     unreadable[i].raw_ok
				     ? ", or declare it raw if its guest encrypted the disk itself"
				     : "");
}

int ims_format_detect(ims_format_kind *out, const ims_source *src)
{
	ims_format_kind kind;
	int unread, r;

	if (!out || !src || !src->pread)
		return ims_error_set(-EINVAL, "no source to detect the format of");
	if ((r = detect(&kind, &unread, src)) < 0)
		return r;
	if (unread >= 0)
		return refuse_unreadable(unread);
	*out = kind;
	return 0;
}

int ims_format_open(ims_format_reader **out, const ims_source *src, ims_format_kind declared)
{
	return ims_format_open_secret(out, src, declared, NULL);
}

int ims_format_open_secret(ims_format_reader **out, const ims_source *src, ims_format_kind declared,
			   const ims_format_secret *secret)
{
	ims_format_kind kind;
	int unread, r;

	if (!out || !src || !src->pread)
		return ims_error_set(-EINVAL, "no source to open an image on");
	if ((unsigned)declared > IMS_FORMAT_VPC)
		return ims_error_set(-EINVAL, "unknown image format %d", (int)declared);
	if ((r = detect(&kind, &unread, src)) < 0)
		return r;
	if (unread >= 0 && !(declared == IMS_FORMAT_RAW && unreadable[unread].raw_ok))
		return refuse_unreadable(unread);
	if (declared != IMS_FORMAT_AUTO && declared != kind)
		return ims_error_set(-EINVAL, "image declared as %s but its bytes are %s",
				     ims_format_name(declared), ims_format_name(kind));
	/* a passphrase for a file that is not encrypted: refused, the user expected otherwise */
	if (secret && secret->passphrase && kind != IMS_FORMAT_QCOW2)
		return ims_error_set(-EINVAL,
				     "a passphrase was given but the image (%s) is not "
				     "encrypted",
				     ims_format_name(kind));
	switch (kind) {
	case IMS_FORMAT_QCOW2: return ims_format__qcow2_open(out, src, secret);
	case IMS_FORMAT_VMDK: return ims_format__vmdk_open(out, src);
	case IMS_FORMAT_VDI: return ims_format__vdi_open(out, src);
	case IMS_FORMAT_VHDX: return ims_format__vhdx_open(out, src);
	case IMS_FORMAT_VPC: return ims_format__vpc_open(out, src);
	default: return ims_format__raw_open(out, src);
	}
}

int ims_format_open_raw(ims_format_reader **out, const ims_source *src)
{
	if (!out || !src || !src->pread)
		return ims_error_set(-EINVAL, "no source to open an image on");
	return ims_format__raw_open(out, src);
}

ims_format_kind ims_format_kind_of(const ims_format_reader *r)
{
	assert(r);
	return r->kind;
}

uint64_t ims_format_virtual_size(const ims_format_reader *r)
{
	assert(r);
	return r->virtual_size;
}

int ims_format_map(ims_extent *out, ims_format_reader *r, uint64_t offset)
{
	ims_extent e;
	int err;

	if (!r || !out)
		return ims_error_set(-EINVAL, "no reader or extent to map into");
	if (offset >= r->virtual_size)
		return ims_error_set(-EINVAL,
				     "offset %" PRIu64 " is past the virtual size %" PRIu64, offset,
				     r->virtual_size);
	e.offset = offset;
	err = r->ops->map(r, offset, &e);
	if (err < 0)
		return err;
	assert(e.offset == offset && e.length > 0 && e.length <= r->virtual_size - offset);
	*out = e;
	return 0;
}

int ims_format_read(ims_format_reader *r, uint64_t offset, void *buf, size_t len)
{
	if (!r || (!buf && len))
		return ims_error_set(-EINVAL, "no reader or buffer to read into");
	if (offset > r->virtual_size || len > r->virtual_size - offset)
		return ims_error_set(-EINVAL,
				     "read of %zu bytes at offset %" PRIu64
				     " passes the virtual size %" PRIu64,
				     len, offset, r->virtual_size);
	if (!len)
		return 0;
	return r->ops->read(r, offset, buf, len);
}

void ims_format_close(ims_format_reader *r)
{
	if (r)
		r->ops->close(r);
}
