/*
 * replicator/copy.c: the copy of a cycle's extents from the primary's snapshot to the secondary,
 * with asynchronous librbd I/O.
 *
 * One thread (the cycle's) drives up to `depth` pieces at once: a data piece (up to one block,
 * aligned to blocks) is read with rbd_aio_read(); when the read completes, its runs of zeros
 * and of data are written with rbd_aio_write_zeroes() and rbd_aio_write() (the secondary's
 * connection writes without copying our buffer: store/site.c); a piece without data (discarded
 * on the primary) is one rbd_aio_write_zeroes(). librbd's completion callbacks only count and
 * signal; the driving thread does the rest, so the state of the pieces needs no lock but the
 * counters the callbacks touch.
 *
 * The caller's watch (progress, cancel, checkpoints) runs in the driving thread after pieces
 * end, and every 200 ms.
 *
 * Memory: a data piece of LEN holds 2 x LEN of the budget while it is read (our buffer, and
 * librbd's buffer of the read before it is copied into ours), then LEN while it is written. The
 * low-water mark is the lowest offset of a piece that is in flight or failed, or the cursor: below
 * it everything is written, and the caller's checkpoint never passes a piece that failed.
 */
#include "replicator/replicator_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/error.h"

#define BLOCK	   (4u << 20)
#define ZERO_GRAIN (64u << 10)
#define ZERO_MAX   (1u << 30) /* one write_zeroes at most */

typedef enum { IDLE = 0, READING, WRITING, FAILED } piece_state;

typedef enum { OP_READ, OP_WRITE, OP_ZERO } op_kind;

typedef struct copy_run copy_run;

typedef struct {
	copy_run *run;
	piece_state state;
	uint64_t off;
	size_t len;
	bool data;
	uint8_t *buf;
	uint64_t cost;
	uint64_t copied, zeroed;
	/* touched by completion callbacks, under run->lock */
	unsigned pending; /* librbd operations not completed */
	bool ready;	  /* every operation of its stage completed */
	ssize_t got;	  /* bytes the read returned */
	int err;
	op_kind err_kind;
	uint64_t err_off;
} piece;

typedef struct {
	piece *p;
	op_kind kind;
	uint64_t off;
} op;

struct copy_run {
	const ims_repl__copy_job *job;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned nready; /* pieces whose stage completed, not yet looked at */
	piece *pieces;
	unsigned depth;
	size_t next_ext; /* cursor: extent index and offset inside it */
	uint64_t next_off;
	uint64_t held;	 /* budget held by pieces in flight */
	uint8_t **spare; /* whole-block buffers given back, reused (a fresh one faults in) */
	unsigned nspare, maxspare;
	uint64_t fail_from; /* IMGSTORE_FAIL_COPY_FROM, UINT64_MAX if unset */
	int err;
	bool progressed; /* a piece ended since the last report */
	ims_repl__copy_result res;
};

/* librbd's thread: count the operation, and signal the driver when a stage is over */
static void on_complete(rbd_completion_t comp, void *arg)
{
	op *o = arg;
	piece *p = o->p;
	copy_run *c = p->run;
	ssize_t r = rbd_aio_get_return_value(comp);
	rbd_aio_release(comp);
	pthread_mutex_lock(&c->lock);
	if (o->kind == OP_READ && r >= 0)
		p->got = r;
	if (r < 0 && !p->err) {
		p->err = (int)r;
		p->err_kind = o->kind;
		p->err_off = o->off;
	}
	if (--p->pending == 0) {
		p->ready = true;
		c->nready++;
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->lock);
	free(o);
}

/* Start one operation of @p p; on a failure to start it, the piece records the error. Called
 * with a guard in p->pending, so that the stage cannot end while operations are issued. */
static void start_op(piece *p, op_kind kind, uint64_t off, size_t len, const uint8_t *buf)
{
	copy_run *c = p->run;
	rbd_image_t img = kind == OP_READ ? c->job->src : c->job->dst;
	rbd_completion_t comp = NULL;
	op *o = malloc(sizeof(*o));
	int r = o ? rbd_aio_create_completion(o, on_complete, &comp) : -ENOMEM;
	if (r == 0) {
		*o = (op){p, kind, off};
		pthread_mutex_lock(&c->lock);
		p->pending++;
		pthread_mutex_unlock(&c->lock);
		r = kind == OP_READ    ? rbd_aio_read(img, off, len, (char *)buf, comp)
		    : kind == OP_WRITE ? rbd_aio_write(img, off, len, (const char *)buf, comp)
				       : rbd_aio_write_zeroes(img, off, len, comp, 0, 0);
		if (r >= 0)
			return;
		rbd_aio_release(comp);
		pthread_mutex_lock(&c->lock);
		p->pending--;
		pthread_mutex_unlock(&c->lock);
	}
	free(o);
	pthread_mutex_lock(&c->lock);
	if (!p->err) {
		p->err = r;
		p->err_kind = kind;
		p->err_off = off;
	}
	pthread_mutex_unlock(&c->lock);
}

/* Issue a stage: take the guard, call @p issue, drop the guard (the stage may be over now). */
static void begin_stage(piece *p)
{
	pthread_mutex_lock(&p->run->lock);
	p->ready = false;
	p->pending = 1;
	pthread_mutex_unlock(&p->run->lock);
}

static void end_stage(piece *p)
{
	copy_run *c = p->run;
	pthread_mutex_lock(&c->lock);
	if (--p->pending == 0) {
		p->ready = true;
		c->nready++;
	}
	pthread_mutex_unlock(&c->lock);
}

static bool is_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* The read is in: write its runs of data, and of zeros unless the secondary is new. */
static void start_writes(piece *p)
{
	const ims_repl__copy_job *j = p->run->job;
	size_t len = p->len;
	if ((size_t)p->got < len)
		memset(p->buf + p->got, 0, len - (size_t)p->got);
	p->state = WRITING;
	begin_stage(p);
	for (size_t pos = 0; pos < len && !p->err;) {
		size_t n = len - pos < ZERO_GRAIN ? len - pos : ZERO_GRAIN;
		bool z = is_zero(p->buf + pos, n);
		size_t start = pos;
		while (pos < len) {
			n = len - pos < ZERO_GRAIN ? len - pos : ZERO_GRAIN;
			if (is_zero(p->buf + pos, n) != z)
				break;
			pos += n;
		}
		if (z) {
			if (!j->fresh)
				start_op(p, OP_ZERO, p->off + start, pos - start, NULL);
			p->zeroed += pos - start;
		} else {
			start_op(p, OP_WRITE, p->off + start, pos - start, p->buf + start);
			p->copied += pos - start;
		}
	}
	end_stage(p);
}

/* The next piece from the cursor: data, up to one block aligned to blocks; no data, up to
 * ZERO_MAX. false when the extents are all handed out. */
static bool next_piece(copy_run *c, uint64_t *off, size_t *len, bool *data)
{
	const ims_extents *ext = c->job->ext;
	/* an empty extent (or one the cursor passed) is no piece: a buffer of 0 bytes may be NULL
	 */
	while (c->next_ext < ext->n &&
	       c->next_off >= ext->v[c->next_ext].off + ext->v[c->next_ext].len)
		if (++c->next_ext < ext->n)
			c->next_off = ext->v[c->next_ext].off;
	if (c->next_ext >= ext->n)
		return false;
	const ims_extents_item *e = &ext->v[c->next_ext];
	uint64_t end = e->off + e->len;
	uint64_t stop_at = e->data ? ((c->next_off / BLOCK) + 1) * BLOCK : c->next_off + ZERO_MAX;
	if (stop_at > end)
		stop_at = end;
	*off = c->next_off;
	*len = (size_t)(stop_at - c->next_off);
	*data = e->data;
	return true;
}

static void advance(copy_run *c, uint64_t stop_at)
{
	const ims_extents *ext = c->job->ext;
	c->next_off = stop_at;
	if (stop_at >= ext->v[c->next_ext].off + ext->v[c->next_ext].len && ++c->next_ext < ext->n)
		c->next_off = ext->v[c->next_ext].off;
}

static uint8_t *take_buffer(copy_run *c, size_t len)
{
	uint8_t *buf = NULL;
	if (len == BLOCK && c->nspare)
		return c->spare[--c->nspare];
	return posix_memalign((void **)&buf, 4096, len) == 0 ? buf : NULL;
}

static void give_buffer(copy_run *c, uint8_t *buf, size_t len)
{
	if (buf && len == BLOCK && c->nspare < c->maxspare)
		c->spare[c->nspare++] = buf;
	else
		free(buf);
}

/* Start pieces from the cursor while a slot and the budget allow; false if none could start
 * because the memory budget is held (the driver waits for a piece to end). */
static void launch(copy_run *c)
{
	const ims_repl__copy_job *j = c->job;
	for (unsigned i = 0; i < c->depth && !c->err; i++) {
		piece *p = &c->pieces[i];
		uint64_t off;
		size_t len;
		bool data;
		if (p->state != IDLE)
			continue;
		if (!next_piece(c, &off, &len, &data))
			return;
		uint64_t cost = data ? 2 * (uint64_t)len : 0;
		if (c->held && c->held + cost > j->budget)
			return;
		uint8_t *buf = data ? take_buffer(c, len) : NULL;
		if (data && !buf) {
			c->err = ims_error_set(-ENOMEM, "out of memory copying %s", j->what);
			return;
		}
		advance(c, off + len);
		*p = (piece){
			.run = c, .off = off, .len = len, .data = data, .buf = buf, .cost = cost};
		c->held += cost;
		p->state = data ? READING : WRITING;
		begin_stage(p);
		if (off >= c->fail_from) { /* for the fault tests: a write error on the secondary */
			p->err = -EIO;
			p->err_kind = OP_WRITE;
			p->err_off = off;
		} else if (data) {
			if (j->bandwidth)
				ims_ratelimit_take(j->bandwidth, len);
			start_op(p, OP_READ, off, len, buf);
		} else {
			start_op(p, OP_ZERO, off, len, NULL);
			p->zeroed = len;
		}
		end_stage(p);
	}
}

static int piece_error(copy_run *c, const piece *p)
{
	const char *what = c->job->what;
	if (p->off >= c->fail_from)
		return ims_error_set(-EIO,
				     "cannot write %s at %" PRIu64 " on the secondary: "
				     "IMGSTORE_FAIL_COPY_FROM",
				     what, p->off);
	switch (p->err_kind) {
	case OP_READ:
		return ims_error_set(p->err, "cannot read %s at %" PRIu64 " on the primary: %s",
				     what, p->err_off, ims_strerror(p->err));
	case OP_ZERO:
		return ims_error_set(p->err, "cannot zero %s at %" PRIu64 " on the secondary: %s",
				     what, p->err_off, ims_strerror(p->err));
	default:
		return ims_error_set(p->err, "cannot write %s at %" PRIu64 " on the secondary: %s",
				     what, p->err_off, ims_strerror(p->err));
	}
}

/* A piece's stage is over: on to its writes, or done, or failed (it stays in flight for the
 * low-water mark: the checkpoint must not pass it). */
static void advance_piece(copy_run *c, piece *p)
{
	if (p->err) {
		if (!c->err)
			c->err = piece_error(c, p);
		p->state = FAILED;
		give_buffer(c, p->buf, p->len);
		p->buf = NULL;
		c->held -= p->cost;
		return;
	}
	if (p->state == READING) {
		/* librbd's buffer of the read is gone (copied into ours), and the writes take ours
		 * as it is: from now on the piece holds LEN */
		c->held -= p->len;
		p->cost -= p->len;
		start_writes(p);
		return;
	}
	c->res.copied += p->copied;
	c->res.zeroed += p->zeroed;
	c->res.done += p->len;
	c->progressed = true;
	give_buffer(c, p->buf, p->len);
	c->held -= p->cost;
	p->state = IDLE;
}

static uint64_t low_water(const copy_run *c)
{
	uint64_t lw = c->next_ext < c->job->ext->n ? c->next_off : UINT64_MAX;
	for (unsigned i = 0; i < c->depth; i++)
		if (c->pieces[i].state != IDLE && c->pieces[i].off < lw)
			lw = c->pieces[i].off;
	return lw;
}

static bool busy(const copy_run *c)
{
	for (unsigned i = 0; i < c->depth; i++)
		if (c->pieces[i].state == READING || c->pieces[i].state == WRITING)
			return true;
	return false;
}

/* Wait until a stage is over or @p until; then take every piece whose stage is over. */
static void wait_ready(copy_run *c, const struct timespec *until)
{
	pthread_mutex_lock(&c->lock);
	if (!c->nready)
		pthread_cond_timedwait(&c->cond, &c->lock, until);
	bool any = c->nready > 0;
	c->nready = 0;
	pthread_mutex_unlock(&c->lock);
	if (!any)
		return;
	for (unsigned i = 0; i < c->depth; i++) {
		piece *p = &c->pieces[i];
		pthread_mutex_lock(&c->lock);
		bool ready = p->ready && (p->state == READING || p->state == WRITING);
		p->ready = false;
		pthread_mutex_unlock(&c->lock);
		if (ready)
			advance_piece(c, p);
	}
}

static int drive(copy_run *c)
{
	const ims_repl__copy_job *j = c->job;
	struct timespec next_watch;
	ims_clock_after_ms(&next_watch, 200);
	for (;;) {
		if (!c->err)
			launch(c);
		if (!busy(c) && (c->err || c->next_ext >= j->ext->n))
			break;
		wait_ready(c, &next_watch);
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		bool due = now.tv_sec > next_watch.tv_sec ||
			   (now.tv_sec == next_watch.tv_sec && now.tv_nsec >= next_watch.tv_nsec);
		if (!c->err && j->watch && (due || c->progressed)) {
			int r = j->watch(j->ctx, c->res.done, low_water(c));
			if (r < 0)
				c->err = r;
			c->progressed = false;
			ims_clock_after_ms(&next_watch, 200);
		}
	}
	c->res.low_water = low_water(c);
	/* the last report sees all the work done, and may still fail the copy */
	if (!c->err && j->watch)
		c->err = j->watch(j->ctx, c->res.done, c->res.low_water);
	return c->err < 0 ? c->err : 0;
}

int ims_repl__copy(ims_repl__copy_result *out, const ims_repl__copy_job *j)
{
	copy_run c = {.job = j, .fail_from = UINT64_MAX};
	int r = -ENOMEM;
	const char *fail = getenv("IMGSTORE_FAIL_COPY_FROM");
	if (fail && *fail)
		c.fail_from = strtoull(fail, NULL, 10);
	c.depth = j->depth ? j->depth : 16;
	c.next_off = j->ext->n ? j->ext->v[0].off : 0;
	/* the budget lets at most this many whole blocks be in flight (while they are written) */
	c.maxspare = (unsigned)(j->budget / BLOCK) + 1;
	if (c.maxspare > c.depth)
		c.maxspare = c.depth;
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	c.pieces = calloc(c.depth, sizeof(*c.pieces));
	c.spare = calloc(c.maxspare, sizeof(*c.spare));
	if (c.pieces && c.spare)
		r = drive(&c);
	else
		c.res.low_water = c.next_off;
	for (unsigned i = 0; i < c.nspare; i++)
		free(c.spare[i]);
	free(c.spare);
	free(c.pieces);
	pthread_mutex_destroy(&c.lock);
	pthread_cond_destroy(&c.cond);
	*out = c.res;
	return r;
}
