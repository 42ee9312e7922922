/*
 * store/pg.h: which placement group of a pool an object lands in, and the plan of a probe that
 * asks every placement group of a pool (store/site.h, ims_site_probe()). Pure logic, no cluster.
 *
 * Ceph places an object by its name alone: the pool's object hash of the name (rjenkins, the
 * only one a pool gets nowadays: `object_hash 2` in `ceph osd pool ls detail -f json`), then a
 * "stable mod" by the pool's pg_num. So one object name per PG can be computed once per pg_num
 * (and checked against `ceph osd map POOL NAME`): a stat of that object, which need not exist,
 * is answered only by an OSD that serves that PG.
 */
#ifndef IMS_STORE_PG_H
#define IMS_STORE_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The room a probe object's name needs ("imgstore.probe.pg." and a number). */
#define IMS_PG_NAME_MAX 32

/** Ceph's rjenkins hash of @p len bytes of @p name (ceph_str_hash_rjenkins). */
uint32_t ims_pg_hash(const char *name, size_t len);

/**
 * The placement group, by its number in the pool (the "ps" of POOL.PS, in hex there), of an
 * object whose name hashes to @p hash in a pool of @p pg_num PGs (Ceph's ceph_stable_mod).
 * @pre pg_num > 0.
 */
uint32_t ims_pg_of(uint32_t hash, uint32_t pg_num);

/**
 * One object name for each PG of a pool of @p pg_num PGs: out[i] lands in PG i. The names are
 * "imgstore.probe.pg.N", the first N that covers each PG.
 *
 * @param[out] out pg_num names.
 * @returns -EINVAL if pg_num is 0, -ERANGE if some PG got no name (it does not happen below a
 *          million PGs).
 */
int ims_pg_names(char (*out)[IMS_PG_NAME_MAX], uint32_t pg_num);

/* What a probe knows of one PG. */
typedef enum {
	IMS_PG_UNKNOWN = 0, /* not asked yet (since the pool's pg_num was learnt) */
	IMS_PG_ANSWERED,    /* its last probe was answered */
	IMS_PG_SILENT,	    /* its last probe got no answer in time (or an error) */
} ims_pg_state;

/**
 * The PGs to ask in one probe round, into @p out (at most @p max of them): every PG when the
 * pool has no more than @p max; else first those whose last probe got no answer (so that one
 * that comes back is seen at the next round), then the next ones from @p *cursor on, wrapping
 * around, so that every PG is asked within pg_num / max rounds or so. PGs with @p busy set (a
 * probe of them still in flight) are left out. @p *cursor moves past the PGs taken in turn.
 *
 * @returns how many PGs are in @p out.
 */
size_t ims_pg_round(uint32_t *out, size_t max, const ims_pg_state *state, const bool *busy,
		    uint32_t pg_num, uint32_t *cursor);

/* How a site answers its probe. */
typedef enum {
	IMS_PG_UP = 0, /* every PG asked answered */
	IMS_PG_PARTLY, /* some answered, some did not */
	IMS_PG_DOWN,   /* none answered this round */
} ims_pg_health;

/**
 * The site's state from what its PGs answered: down when the round just ended got no answer at
 * all (@p answered_now 0 of @p asked_now > 0: the earlier answers of the other PGs are stale),
 * or every PG is silent; else partly when any PG is silent; else up.
 *
 * @param[out] silent how many PGs are silent (may be NULL).
 */
ims_pg_health ims_pg_summary(uint32_t *silent, const ims_pg_state *state, uint32_t pg_num,
			     size_t asked_now, size_t answered_now);

/**
 * The silent PGs as a list for a message, "2.1, 2.5, 2.1f", into @p buf; when they do not fit,
 * the list ends with "and N more". @p pool_id is the pool's number (the part before the dot).
 */
void ims_pg_list_silent(char *buf, size_t len, const ims_pg_state *state, uint32_t pg_num,
			int64_t pool_id);

#endif
