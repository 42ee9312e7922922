/*
 * replicator/sched_internal.h: what the files of the scheduler share (not public; the
 * module's face is replicator/scheduler.h). scheduler.c runs the queue, the workers and the
 * cycles; sched_policy.c keeps the policy and status records in RADOS and the pairs read from
 * them; sched_metrics.c reports: statuses, events, Prometheus lines.
 */
#ifndef IMS_REPLICATOR_SCHED_INTERNAL_H
#define IMS_REPLICATOR_SCHED_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <rados/librados.h>

#include "common/ratelimit.h"
#include "common/threads.h"
#include "common/spec.h"
#include "replicator/scheduler.h"

typedef struct pair {
	char pool[IMS_NAME_MAX + 1];
	char image[IMS_NAME_MAX + 1]; /* the group's name for a group */
	char target[64];
	ims_repl_mode mode;
	uint32_t rpo;
	ims_repl_unit unit; /* a consistency group replicates as one unit (replicator/group.h) */
	bool present;	    /* in the policies */
	uint64_t seen;	    /* the last refresh that read its record */
	bool disabled;	    /* disabled here: a refresh racing the removal must not bring it back */
	bool queued, running;
	int64_t sealed_ms; /* primary-side time of the newest sealed snapshot; -1: none yet */
	char last_sealed[64];
	int64_t next_attempt_ms;
	unsigned backoff;
	uint64_t last_bytes, bytes_total;
	double last_secs, secs_total;
	char error[512];
	bool violated;
	bool waited_target;  /* a cycle waited for its target: runs once it answers, due or not */
	bool split_brain;    /* the target is an old primary that wrote after the common snapshot */
	bool elsewhere;	     /* another imgstored of this site holds it (its status is shared) */
	int64_t disabled_ms; /* when disabled or handed over here */
	uint64_t syncs, failures;
	uint32_t verify_every; /* verify after every N cycles that sealed a snapshot; 0: never */
	uint32_t since_verify; /* such cycles since the last verify */
	char last_verified[64];
	char last_verify[16];	/* "", "equal", "mismatch" */
	char verify_error[512]; /* a mismatch, until a later verify finds the copy equal */
	uint64_t verifies, verify_failures;
	ims_repl_mark mark; /* its last unchanged check, for the next (only the cycle touches it) */
	uint32_t reverse_rpo; /* the RPO last recorded on the target for the way back; 0: none */
	/* an image pair's home among the site's daemons (ims_repl_sched__assign()): 0, this
	 * daemon's; k, members[k - 1]'s, which runs its cycles while it seals it */
	unsigned home;
	uint64_t key_hash;	 /* ims_repl_sched__hash() of its key; 0: not computed yet */
	bool orphaned;		 /* its home left the site's daemons: this one runs it now */
	int64_t orphaned_ms;	 /* when: retried every second for a while only */
	bool moved;		 /* its home became another daemon: let go of it at once */
	int64_t overdue_said_ms; /* when it last said its home sealed nothing in time */
	int64_t deferred_ms;	 /* never sealed: when this daemon first left it to its home */
	struct pair *next;
} pair;

/* An image or group whose pairs start no cycle: a failover of it to target @c own runs. */
typedef struct paused {
	ims_repl_unit unit;
	char pool[IMS_NAME_MAX + 1];
	char image[IMS_NAME_MAX + 1];
	char own[IMS_NAME_MAX + 1]; /* the failover's own target ("": none) */
	unsigned count;
	struct paused *next;
} paused;

/* The site's daemons that replicate from it: the set (store/record.h) of shared lock
 * IMS_REPL_MEMBER_LOCK of object IMS_REPL_MEMBERS in the records' pool, one cookie a daemon. */
#define IMS_REPL_MEMBERS     "imgstore.repl.members"
#define IMS_REPL_MEMBER_LOCK "imgstore.repl.member"
#define IMS_REPL_MEMBERS_MAX 32
#define IMS_REPL_OWNER_LEN   128

/* The bandwidth of one site pair, shared by every cycle to that target. */
typedef struct limit {
	char target[64];
	ims_ratelimit rl;
	struct limit *next;
} limit;

struct ims_repl_sched {
	ims_repl_sched_opts o;
	limit *limits;
	paused *paused;
	char owner[IMS_REPL_OWNER_LEN];
	pthread_mutex_t lock;
	pthread_cond_t cond; /* work queued, a cycle ended, stopping */
	pair *pairs;
	pair **queue;
	size_t nqueue, capqueue;
	ims_threads threads; /* the workers, the renewer and the loop */
	bool stopping;
	int64_t last_refresh_ms;
	uint64_t refresh_gen;
	pthread_mutex_t refresh_lock; /* one refresh at a time: the sweep trusts its own marks */
	/* the watch on the policy records: a daemon that writes one notifies, and this one reads
	 * them again before it answers, so a pair is known here when its writer's call returns */
	rados_ioctx_t watch_io;
	uint64_t watch_cookie;
	bool watch_broken; /* under lock: its client was replaced, or the watch lapsed */
	int64_t watch_tried_ms;
	/* the locks of running cycles, renewed by a thread of their own every third of their
	 * expiry: long phases without progress (zeroing, a diff) do not outlive them */
	pthread_mutex_t held_lock;
	struct cycle_ctx *held;
	/* the site's daemons (IMS_REPL_MEMBERS), under lock, looked at by the loop every third of
	 * the lock expiry; fewer than two, or this one not among them: every pair is this one's */
	char members[IMS_REPL_MEMBERS_MAX][IMS_REPL_OWNER_LEN];
	uint64_t member_hash[IMS_REPL_MEMBERS_MAX];
	size_t nmembers;
	int self; /* this daemon's index in members; -1: not among them */
	int64_t members_ms;
	int64_t members_ok_ms; /* the last look that read the set */
	bool members_failing;  /* said that the set cannot be read */
	bool joined;	       /* this daemon holds its place in the set (to leave at stop) */
	/* what the pairs' homes were last computed from (assign_locked()): the set's changes
	 * (bumped by each change of members) and a digest of the present image pairs' keys */
	unsigned members_gen, homes_members_gen;
	uint64_t homes_keys;
	size_t homes_n;
};

/* ---- records and pairs (sched_policy.c) ---- */

/** Ask the site's other imgstored to let go of the secondary of the pair @p key (a notify on the
 *  records; each answers once it did): a cycle asked of this daemon, which holds the pair's lock,
 *  found it held. @returns whether every daemon answered. */
bool ims_repl_sched__ask_let_go(ims_repl_sched *s, const char *key);

/** A pair's key in the records, and the name of its lock. */
/*
 * The lag, in ms, at which a pair whose last copying cycle took @p last_secs is due again: half
 * the RPO, or earlier when a cycle takes long (the lag must stay under the RPO while the next one
 * runs), but never under a tenth of the RPO: a cycle that finds nothing changed costs a check,
 * and a pair whose cycles take longer than its RPO would otherwise be checked without pause.
 */
int64_t ims_repl_sched__due_ms(unsigned rpo, double last_secs, unsigned tick_ms);

/*
 * Which of the @p n queued pairs a free worker runs next: of the pairs sealed before, the one
 * whose RPO runs out first (newest seal plus RPO, earliest); the pairs never sealed (their first
 * copy) after every such pair, in the order they were queued. A first copy of many images at
 * once then does not hold back pairs that come due while it runs. The orphaned pairs (their home
 * left the site's daemons) are the takeover workers': with @p orphans, the same among them only,
 * and @p n when none is queued; without, a worker takes them only when no other pair is queued.
 */
size_t ims_repl_sched__next(pair *const *queue, size_t n, bool orphans);

/** A 64-bit hash of @p text (FNV-1a, then mixed), never 0. */
uint64_t ims_repl_sched__hash(const char *text);

/*
 * Which of @p m daemons (the hashes of their names, @p members) is the home of each of @p n
 * pairs (the hashes of their keys, @p keys), into @p home (indexes into @p members): rendezvous
 * hashing with bounded loads. The pairs are taken in the order of their hashes, and each goes to
 * the daemon of highest score (a hash of both) that has fewer than ceil(n / m) pairs yet. Every
 * daemon that knows the same pairs and members finds the same homes; no daemon gets more than
 * ceil(n / m); a daemon that leaves moves its own pairs and few others.
 * @returns 0, or -ENOMEM.
 */
int ims_repl_sched__assign(unsigned *home, const uint64_t *keys, size_t n, const uint64_t *members,
			   size_t m);

void ims_repl_sched__pair_key(char *key, size_t len, const pair *p);

/** The records' pool on the site's current client (an ioctx per use): close with
 *  ims_site_ioctx_close(). */
int ims_repl_sched__io(rados_ioctx_t *io, ims_repl_sched *s);

/** Write @p p's policy and tell the site's daemons. */
int ims_repl_sched__save_policy(ims_repl_sched *s, const pair *p);

/** Write @p p's last status (best effort). */
void ims_repl_sched__save_status(ims_repl_sched *s, const pair *p);
/* What the shared status record of @p p's pair says (last seal, sizes, errors), into @p p;
 * nothing changes if there is none. RADOS I/O: not under s->lock. */
void ims_repl_sched__load_status(ims_repl_sched *s, pair *p);

/** Record on @p peer (@p p's target, in the records' pool of the same name) the RPO and mode of
 *  @p p, for a forced failover there to give the pair back (ims_repl_sched_reverse_rpo()). */
int ims_repl_sched__put_reverse(ims_repl_sched *s, ims_site *peer, const pair *p);

/** Remove that record (best effort). */
void ims_repl_sched__drop_reverse(ims_repl_sched *s, ims_site *peer, const pair *p);

/** Remove pair @p key's policy; @p quiet: leave the thread's message alone. */
int ims_repl_sched__drop_policy(rados_ioctx_t io, const char *key, bool quiet);

/** Remove pair @p key's status (best effort: it is only the last cycle's). */
void ims_repl_sched__drop_status(rados_ioctx_t io, const char *key);

/** Tell every daemon that watches @p io's policy records to read them again. */
void ims_repl_sched__notify(rados_ioctx_t io);

/** The pair of @p unit @p pool/@p image to @p target, under s->lock. */
pair *ims_repl_sched__find_locked(ims_repl_sched *s, const char *pool, const char *image,
				  const char *target, ims_repl_unit unit);

/** Read the policy records again: new pairs appear, removed ones are no longer present. */
void ims_repl_sched__refresh(ims_repl_sched *s);

/** (Re)establish the watch on the policy records; by the scheduler's thread. */
void ims_repl_sched__watch(ims_repl_sched *s);

/** Whether the watch needs to be made again. */
bool ims_repl_sched__watch_needed(ims_repl_sched *s, int64_t t);

void ims_repl_sched__unwatch(ims_repl_sched *s);

/* ---- reports (sched_metrics.c) ---- */

/** Tell the owner about @p p (opts.event), under s->lock. */
void ims_repl_sched__event_locked(ims_repl_sched *s, const pair *p, ims_repl_event_kind kind,
				  double lag, const char *detail);

/** Record the verdict of a verify of @p p, under s->lock. */
void ims_repl_sched__record_verify_locked(ims_repl_sched *s, pair *p,
					  const ims_repl_verify_result *v);

void ims_repl_sched__fill_status(ims_repl_status *st, const ims_repl_sched *s, const pair *p,
				 int64_t t);

/** Under s->lock: the daemon that runs @p p's cycles (ims_repl_status.replicated_by): this one
 *  (s->owner), its home among the site's daemons, or "" (another, name unknown). */
const char *ims_repl_sched__runner_locked(const ims_repl_sched *s, const pair *p);

/** Under s->lock: the name of @p p's home when it is another of the site's daemons, else NULL. */
const char *ims_repl_sched__home_locked(const ims_repl_sched *s, const pair *p);

/** Log and tell each pair's passing over its RPO, or back under it, at @p t; under s->lock. The
 *  pairs whose home is another daemon of the site are that one's to tell. */
void ims_repl_sched__check_rpo_locked(ims_repl_sched *s, int64_t t);

#endif
