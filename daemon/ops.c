#include "daemon/ops.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <rados/librados.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/threads.h"
#include "store/record.h"

#define KEEP_IN_MEMORY	      256 /* ended operations kept for Wait/Get */
#define PERSIST_EVERY_SECONDS 2	  /* progress writes to RADOS at most this often */
#define HEARTBEAT_SECONDS     15
#define PRUNE_AFTER_SECONDS   (7 * 86400)

struct ims_op {
	ims_op_record rec;
	ims_op_fn fn;
	void *arg;
	void (*free_arg)(void *);
	bool cancel;
	bool ended;
	int64_t last_persist;
	ims_ops *ops;
	ims_op *next_queued;
	char *details; /* lines, under the ops' lock */
	size_t details_len;
};

struct ims_ops {
	ims_site *site;
	char pool[128]; /* of the records; an ioctx per use (the site's client may be replaced) */
	ims_records records; /* IMS_OPS_OBJECT in pool */
	char owner[128];
	char owner_host[100];
	pthread_mutex_t lock;
	pthread_cond_t work;  /* a job queued, or stopping */
	pthread_cond_t ended; /* an operation ended */
	ims_op *queue_head, *queue_tail;
	ims_op **known; /* every op of this daemon still in memory, oldest first */
	size_t nknown;
	ims_threads threads; /* the workers and the keeper */
	bool stopping;
};

const char *ims_op_state_name(ims_op_state s)
{
	switch (s) {
	case IMS_OP_QUEUED: return "queued";
	case IMS_OP_RUNNING: return "running";
	case IMS_OP_SUCCEEDED: return "succeeded";
	case IMS_OP_FAILED: return "failed";
	case IMS_OP_CANCELLED: return "cancelled";
	}
	return "unknown";
}

static int64_t now(void)
{
	return (int64_t)time(NULL);
}

static bool active(ims_op_state s)
{
	return s == IMS_OP_QUEUED || s == IMS_OP_RUNNING;
}

/* ---------------------------------------------------------------------------------------- */
/* records */

_Static_assert(sizeof(ims_op_state) == sizeof(int), "a state is kept as an IMS_RECORD_INT");
#define F(member, type) IMS_RECORD_FIELD(ims_op_record, member, IMS_RECORD_##type)
static const ims_record_field fields[] = {
	F(id, STR),	   F(kind, STR),	F(target, STR),	     F(site, STR),
	F(state, INT),	   F(bytes_done, U64),	F(bytes_total, U64), F(error, STR),
	F(created, I64),   F(started, I64),	F(finished, I64),    F(owner, STR),
	F(heartbeat, I64), F(result_path, STR), F(result, STR),	     F(decided, INT),
};
#undef F
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static json_object *encode(const ims_op_record *r)
{
	return ims_record_encode(r, fields, NFIELDS);
}

/* 0 and the operation of record @p o; 1 (left out) when it is not one. */
static int decode(void *elem, const char *key, json_object *o)
{
	ims_op_record *r = elem;
	(void)key;
	if (!o)
		return 1;
	memset(r, 0, sizeof(*r));
	ims_record_decode(r, o, fields, NFIELDS);
	return r->id[0] != '\0' ? 0 : 1;
}

static int persist(ims_ops *o, const ims_op_record *r)
{
	json_object *val = encode(r);
	if (!val)
		return -ENOMEM;
	int ret = ims_record_put(&o->records, r->id, val);
	json_object_put(val);
	if (ret < 0)
		return ims_error_set(ret, "cannot record operation %s: %s", r->id,
				     ims_strerror(ret));
	return 0;
}

static int read_one(ims_ops *o, const char *id, ims_op_record *out)
{
	json_object *val = NULL;
	int r = ims_record_get(&val, &o->records, id);
	if (r == -EBADMSG || (r == 0 && decode(out, id, val) != 0))
		r = -ENOENT;
	json_object_put(val);
	if (r == -ENOENT)
		return ims_error_set(-ENOENT, "no operation '%s'", id);
	if (r < 0)
		return ims_error_set(r, "cannot read operation '%s': %s", id, ims_strerror(r));
	return 0;
}

/* Every record; *out is malloc'ed. */
static int read_all(ims_ops *o, ims_op_record **out, size_t *count)
{
	void *list = NULL;
	int r = ims_record_list(&list, count, &o->records, sizeof(ims_op_record), decode, NULL);
	if (r < 0)
		return ims_error_set(r, "cannot read the operation records: %s", ims_strerror(r));
	*out = list;
	return 0;
}

static void remove_records(ims_ops *o, const char **ids, size_t n)
{
	ims_records quiet = o->records; /* the prune is tried again at the next sweep */
	quiet.quiet = true;
	ims_record_del_many(&quiet, ids, n);
}

/* Records of a previous instance of this daemon, or with a dead heartbeat, end as failed;
 * ended records older than a week are removed. */
static int sweep(ims_ops *o, bool at_start)
{
	ims_op_record *list = NULL;
	size_t n = 0;
	char mine[110];
	int r = read_all(o, &list, &n);
	if (r < 0)
		return r;
	snprintf(mine, sizeof(mine), "%s#", o->owner_host);
	const char **old = calloc(n + 1, sizeof(*old));
	size_t nold = 0;
	int64_t t = now();
	for (size_t i = 0; i < n; i++) {
		ims_op_record *rec = &list[i];
		if (active(rec->state)) {
			bool ours_before = at_start &&
					   strncmp(rec->owner, mine, strlen(mine)) == 0 &&
					   strcmp(rec->owner, o->owner) != 0;
			bool stale = strcmp(rec->owner, o->owner) != 0 &&
				     t - rec->heartbeat > IMS_OPS_STALE_SECONDS;
			if (!ours_before && !stale)
				continue;
			rec->state = IMS_OP_FAILED;
			rec->finished = t;
			snprintf(rec->error, sizeof(rec->error),
				 "interrupted: the daemon running it (%s) stopped before it "
				 "finished",
				 rec->owner);
			if (persist(o, rec) == 0)
				ims_log_warning("operation %s (%s '%s') was interrupted by a stop "
						"of %s; marked failed",
						rec->id, rec->kind, rec->target, rec->owner);
		} else if (old && rec->finished && t - rec->finished > PRUNE_AFTER_SECONDS) {
			old[nold++] = rec->id;
		}
	}
	remove_records(o, old, nold);
	free(old);
	free(list);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* workers */

/* Drop the oldest ended operations beyond KEEP_IN_MEMORY. Called with the lock held. */
static void trim_known(ims_ops *o)
{
	while (o->nknown > KEEP_IN_MEMORY) {
		size_t i;
		for (i = 0; i < o->nknown && !o->known[i]->ended; i++)
			;
		if (i == o->nknown)
			return;
		free(o->known[i]->details);
		free(o->known[i]);
		memmove(&o->known[i], &o->known[i + 1], (o->nknown - i - 1) * sizeof(*o->known));
		o->nknown--;
	}
}

static void *worker(void *arg)
{
	ims_ops *o = arg;
	pthread_mutex_lock(&o->lock);
	for (;;) {
		while (!o->queue_head && !o->stopping)
			pthread_cond_wait(&o->work, &o->lock);
		if (o->stopping)
			break;
		ims_op *op = o->queue_head;
		o->queue_head = op->next_queued;
		if (!o->queue_head)
			o->queue_tail = NULL;
		bool cancelled = op->cancel;
		op->rec.state = cancelled ? IMS_OP_CANCELLED : IMS_OP_RUNNING;
		op->rec.started = now();
		op->rec.heartbeat = op->rec.started;
		ims_op_record snap = op->rec;
		pthread_mutex_unlock(&o->lock);

		int r = 0;
		persist(o, &snap);
		if (!cancelled) {
			ims_log_info("operation %s started: %s '%s'", snap.id, snap.kind,
				     snap.target);
			ims_error_clear();
			r = op->fn(op, op->arg);
		}

		pthread_mutex_lock(&o->lock);
		op->rec.finished = now();
		if (r < 0 && o->stopping) {
			op->rec.state = IMS_OP_FAILED;
			snprintf(op->rec.error, sizeof(op->rec.error),
				 "interrupted: the daemon stopped before it finished");
		} else if (cancelled || r == -ECANCELED || (r < 0 && op->cancel)) {
			op->rec.state = IMS_OP_CANCELLED;
			snprintf(op->rec.error, sizeof(op->rec.error), "cancelled");
		} else if (r < 0) {
			op->rec.state = IMS_OP_FAILED;
			snprintf(op->rec.error, sizeof(op->rec.error), "%s", ims_error_last());
		} else {
			op->rec.state = IMS_OP_SUCCEEDED;
			if (op->rec.bytes_total)
				op->rec.bytes_done = op->rec.bytes_total;
		}
		snap = op->rec;
		pthread_mutex_unlock(&o->lock);
		if (op->free_arg)
			op->free_arg(op->arg);
		persist(o, &snap);
		if (snap.state == IMS_OP_FAILED)
			ims_log_error("operation %s (%s '%s') failed: %s", snap.id, snap.kind,
				      snap.target, snap.error);
		else
			ims_log_info("operation %s (%s '%s') %s", snap.id, snap.kind, snap.target,
				     ims_op_state_name(snap.state));
		pthread_mutex_lock(&o->lock);
		op->ended = true;
		pthread_cond_broadcast(&o->ended);
		trim_known(o);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

/* Heartbeats of running work, and the sweep of other daemons' dead records. */
static void *keeper(void *arg)
{
	ims_ops *o = arg;
	int64_t last_sweep = now();
	pthread_mutex_lock(&o->lock);
	while (!o->stopping) {
		struct timespec until;
		ims_clock_after_ms(&until, HEARTBEAT_SECONDS * 1000u);
		pthread_cond_timedwait(&o->work, &o->lock, &until);
		if (o->stopping)
			break;
		size_t n = 0;
		ims_op_record *running = calloc(o->nknown + 1, sizeof(*running));
		for (size_t i = 0; running && i < o->nknown; i++) {
			if (o->known[i]->rec.state == IMS_OP_RUNNING) {
				o->known[i]->rec.heartbeat = now();
				running[n++] = o->known[i]->rec;
			}
		}
		pthread_mutex_unlock(&o->lock);
		for (size_t i = 0; i < n; i++)
			persist(o, &running[i]);
		free(running);
		if (now() - last_sweep > 2 * HEARTBEAT_SECONDS) {
			sweep(o, false);
			last_sweep = now();
		}
		pthread_mutex_lock(&o->lock);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

static void random_id(char *out, size_t len)
{
	char hex[17];
	if (ims_random_hex(hex, sizeof(hex)) < 0) /* no CSPRNG: an id still unique enough */
		snprintf(hex, sizeof(hex), "%08lx%08lx", (unsigned long)time(NULL),
			 (unsigned long)getpid());
	snprintf(out, len, "op-%s", hex);
}

int ims_ops_start(ims_ops **out, ims_site *site, const char *pool, unsigned workers,
		  const char *owner_host)
{
	ims_ops *o = calloc(1, sizeof(*o));
	char nonce[IMS_OP_ID_LEN];
	int r;
	if (!o)
		return -ENOMEM;
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->work, NULL);
	pthread_cond_init(&o->ended, NULL);
	o->site = site;
	snprintf(o->owner_host, sizeof(o->owner_host), "%s", owner_host);
	random_id(nonce, sizeof(nonce));
	snprintf(o->owner, sizeof(o->owner), "%s#%s", owner_host, nonce + 3);
	rados_ioctx_t io;
	if (strlen(pool) >= sizeof(o->pool)) {
		r = ims_error_set(-ENAMETOOLONG, "pool name '%s' is too long", pool);
		goto fail;
	}
	if ((r = ims_site_ioctx(&io, site, pool)) < 0) /* the pool of the records exists */
		goto fail;
	ims_site_ioctx_close(io);
	snprintf(o->pool, sizeof(o->pool), "%s", pool);
	o->records = IMS_RECORDS_SITE(site, o->pool, IMS_OPS_OBJECT);
	if ((r = sweep(o, true)) < 0)
		goto fail;
	if ((r = ims_threads_start(&o->threads, workers ? workers : 4, worker, o,
				   "operation workers")) < 0 ||
	    (r = ims_threads_start(&o->threads, 1, keeper, o, "the operation keeper")) < 0)
		goto fail;
	*out = o;
	return 0;
fail:
	ims_ops_stop(o);
	return r;
}

int ims_ops_submit(ims_op_record *out, ims_ops *o, const char *kind, const char *target,
		   ims_op_fn fn, void *arg, void (*free_arg)(void *))
{
	ims_op *op = calloc(1, sizeof(*op));
	int r;
	if (!op) {
		if (free_arg)
			free_arg(arg);
		return -ENOMEM;
	}
	random_id(op->rec.id, sizeof(op->rec.id));
	snprintf(op->rec.kind, sizeof(op->rec.kind), "%s", kind);
	snprintf(op->rec.target, sizeof(op->rec.target), "%s", target);
	snprintf(op->rec.site, sizeof(op->rec.site), "%s", ims_site_name(o->site));
	snprintf(op->rec.owner, sizeof(op->rec.owner), "%s", o->owner);
	op->rec.state = IMS_OP_QUEUED;
	op->rec.created = now();
	op->rec.heartbeat = op->rec.created;
	op->fn = fn;
	op->arg = arg;
	op->free_arg = free_arg;
	op->ops = o;
	if ((r = persist(o, &op->rec)) < 0) {
		if (free_arg)
			free_arg(arg);
		free(op);
		return r;
	}
	pthread_mutex_lock(&o->lock);
	if (o->stopping) {
		pthread_mutex_unlock(&o->lock);
		op->rec.state = IMS_OP_FAILED;
		snprintf(op->rec.error, sizeof(op->rec.error), "the daemon is stopping");
		persist(o, &op->rec);
		if (free_arg)
			free_arg(arg);
		free(op);
		return ims_error_set(-ESHUTDOWN, "the daemon is stopping; try again on another");
	}
	ims_op **nk = realloc(o->known, (o->nknown + 1) * sizeof(*nk));
	if (!nk) {
		pthread_mutex_unlock(&o->lock);
		if (free_arg)
			free_arg(arg);
		free(op);
		return -ENOMEM;
	}
	o->known = nk;
	o->known[o->nknown++] = op;
	if (o->queue_tail)
		o->queue_tail->next_queued = op;
	else
		o->queue_head = op;
	o->queue_tail = op;
	*out = op->rec;
	pthread_cond_broadcast(&o->work);
	pthread_mutex_unlock(&o->lock);
	return 0;
}

static ims_op *find_locked(ims_ops *o, const char *id)
{
	for (size_t i = 0; i < o->nknown; i++)
		if (strcmp(o->known[i]->rec.id, id) == 0)
			return o->known[i];
	return NULL;
}

int ims_ops_get(ims_op_record *out, ims_ops *o, const char *id)
{
	pthread_mutex_lock(&o->lock);
	ims_op *op = find_locked(o, id);
	if (op)
		*out = op->rec;
	pthread_mutex_unlock(&o->lock);
	return op ? 0 : read_one(o, id, out);
}

int ims_ops_wait(ims_op_record *out, ims_ops *o, const char *id, unsigned timeout_ms)
{
	struct timespec until;
	ims_clock_after_ms(&until, timeout_ms);
	pthread_mutex_lock(&o->lock);
	ims_op *op = find_locked(o, id);
	if (op) {
		/* until it ends, or until its outcome is known (when that was not known before) */
		int decided = op->rec.decided;
		while (!op->ended && !o->stopping && !(op->rec.decided && !decided) &&
		       pthread_cond_timedwait(&o->ended, &o->lock, &until) != ETIMEDOUT)
			;
		*out = op->rec;
		pthread_mutex_unlock(&o->lock);
		return 0;
	}
	pthread_mutex_unlock(&o->lock);
	/* another daemon's (or an old) operation: poll its record */
	for (int decided = -1;;) {
		int r = read_one(o, id, out);
		if (r < 0 || !active(out->state) || (decided == 0 && out->decided))
			return r;
		if (decided < 0)
			decided = out->decided;
		if (ims_clock_passed(&until))
			return 0;
		usleep(250000);
	}
}

int ims_ops_cancel(ims_op_record *out, ims_ops *o, const char *id)
{
	pthread_mutex_lock(&o->lock);
	ims_op *op = find_locked(o, id);
	if (op) {
		if (!op->ended)
			op->cancel = true;
		*out = op->rec;
		pthread_mutex_unlock(&o->lock);
		return 0;
	}
	pthread_mutex_unlock(&o->lock);
	int r = read_one(o, id, out);
	if (r < 0)
		return r;
	if (active(out->state))
		return ims_error_set(-EREMOTE,
				     "operation %s runs on another daemon (%s); cancel it there",
				     id, out->owner);
	return 0;
}

static int newest_first(const void *a, const void *b)
{
	const ims_op_record *x = a, *y = b;
	if (x->created != y->created)
		return x->created > y->created ? -1 : 1;
	return strcmp(y->id, x->id);
}

int ims_ops_list(ims_op_record **out, size_t *count, ims_ops *o, unsigned limit, bool active_only)
{
	ims_op_record *list = NULL;
	size_t n = 0;
	int r = read_all(o, &list, &n);
	if (r < 0)
		return r;
	/* this daemon's memory is fresher than the records for its own work */
	pthread_mutex_lock(&o->lock);
	for (size_t i = 0; i < n; i++) {
		ims_op *op = find_locked(o, list[i].id);
		if (op)
			list[i] = op->rec;
	}
	pthread_mutex_unlock(&o->lock);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!active_only || active(list[i].state))
			list[k++] = list[i];
	qsort(list, k, sizeof(*list), newest_first);
	if (!limit)
		limit = 100;
	*count = k < limit ? k : limit;
	*out = list;
	return 0;
}

int ims_ops_running(ims_op_record *out, ims_ops *o, const char *kind, const char *target,
		    bool whole)
{
	int found = 0;
	size_t plen = whole ? sizeof(o->known[0]->rec.target) : strlen(target);
	pthread_mutex_lock(&o->lock);
	for (size_t i = 0; i < o->nknown && !found; i++) {
		const ims_op *op = o->known[i];
		if (!op->ended && strcmp(op->rec.kind, kind) == 0 &&
		    strncmp(op->rec.target, target, plen) == 0) {
			*out = op->rec;
			found = 1;
		}
	}
	pthread_mutex_unlock(&o->lock);
	return found;
}

void ims_ops_counts(uint64_t counts[6], ims_ops *o)
{
	memset(counts, 0, 6 * sizeof(counts[0]));
	pthread_mutex_lock(&o->lock);
	for (size_t i = 0; i < o->nknown; i++)
		if ((unsigned)o->known[i]->rec.state < 6)
			counts[o->known[i]->rec.state]++;
	pthread_mutex_unlock(&o->lock);
}

void ims_ops_stop(ims_ops *o)
{
	if (!o)
		return;
	pthread_mutex_lock(&o->lock);
	o->stopping = true;
	for (size_t i = 0; i < o->nknown; i++)
		o->known[i]->cancel = true;
	/* queued work will never run: end it now */
	for (ims_op *op = o->queue_head; op; op = op->next_queued) {
		op->rec.state = IMS_OP_FAILED;
		op->rec.finished = now();
		snprintf(op->rec.error, sizeof(op->rec.error),
			 "interrupted: the daemon stopped before it started");
		op->ended = true;
		if (o->pool[0])
			persist(o, &op->rec);
		if (op->free_arg)
			op->free_arg(op->arg);
	}
	o->queue_head = o->queue_tail = NULL;
	pthread_cond_broadcast(&o->work);
	pthread_cond_broadcast(&o->ended);
	pthread_mutex_unlock(&o->lock);
	/* Running work sees the cancel at its next progress report; ims_op_progress tells it
	 * apart from a user's cancel, so its record says the daemon stopped. */
	ims_threads_join(&o->threads);
	for (size_t i = 0; i < o->nknown; i++) {
		free(o->known[i]->details);
		free(o->known[i]);
	}
	free(o->known);
	pthread_mutex_destroy(&o->lock);
	pthread_cond_destroy(&o->work);
	pthread_cond_destroy(&o->ended);
	free(o);
}

int ims_op_progress(ims_op *op, uint64_t done, uint64_t total)
{
	ims_ops *o = op->ops;
	bool write = false;
	ims_op_record snap;
	pthread_mutex_lock(&o->lock);
	op->rec.bytes_done = done;
	op->rec.bytes_total = total;
	int64_t t = now();
	if (t - op->last_persist >= PERSIST_EVERY_SECONDS) {
		op->last_persist = t;
		op->rec.heartbeat = t;
		snap = op->rec;
		write = true;
	}
	int stop = op->cancel;
	if (stop && o->stopping)
		ims_error_set(-ESHUTDOWN, "interrupted: the daemon stopped before it finished");
	pthread_mutex_unlock(&o->lock);
	if (write)
		persist(o, &snap);
	return stop;
}

void ims_op_set_result(ims_op *op, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&op->ops->lock);
	vsnprintf(op->rec.result, sizeof(op->rec.result), fmt, ap);
	pthread_mutex_unlock(&op->ops->lock);
	va_end(ap);
}

void ims_op_set_decided(ims_op *op, const char *fmt, ...)
{
	ims_ops *o = op->ops;
	ims_op_record snap;
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&o->lock);
	vsnprintf(op->rec.result, sizeof(op->rec.result), fmt, ap);
	op->rec.decided = 1;
	op->rec.heartbeat = now();
	op->last_persist = op->rec.heartbeat;
	snap = op->rec;
	pthread_cond_broadcast(&o->ended); /* its waiters return */
	pthread_mutex_unlock(&o->lock);
	va_end(ap);
	persist(o, &snap);
}

void ims_op_add_detail(ims_op *op, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t len = strlen(line);
	pthread_mutex_lock(&op->ops->lock);
	if (op->details_len + len + 2 <= IMS_OP_DETAILS_MAX) {
		char *nd = realloc(op->details, op->details_len + len + 2);
		if (nd) {
			memcpy(nd + op->details_len, line, len);
			nd[op->details_len + len] = '\n';
			nd[op->details_len + len + 1] = '\0';
			op->details = nd;
			op->details_len += len + 1;
		}
	}
	pthread_mutex_unlock(&op->ops->lock);
}

int ims_ops_details(char **out, ims_ops *o, const char *id)
{
	*out = NULL;
	pthread_mutex_lock(&o->lock);
	ims_op *op = find_locked(o, id);
	if (op && op->details && !(*out = strdup(op->details))) {
		pthread_mutex_unlock(&o->lock);
		return -ENOMEM;
	}
	pthread_mutex_unlock(&o->lock);
	return 0;
}

void ims_op_set_result_path(ims_op *op, const char *path)
{
	pthread_mutex_lock(&op->ops->lock);
	snprintf(op->rec.result_path, sizeof(op->rec.result_path), "%s", path);
	pthread_mutex_unlock(&op->ops->lock);
}

const char *ims_op_id(const ims_op *op)
{
	return op->rec.id;
}
