#include "replicator/failover.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <json-c/json.h>
#include <rbd/librbd.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "replicator/replicator.h"
#include "replicator/replicator_internal.h"
#include "store/record.h"

typedef struct {
	rados_ioctx_t io;
	rbd_image_t img;
} opened;

static int open_mode(ims_site *site, const char *pool, const char *image, opened *o, bool read_only)
{
	memset(o, 0, sizeof(*o));
	int r = ims_site_ioctx(&o->io, site, pool);
	if (r < 0)
		return r;
	r = read_only ? rbd_open_read_only(o->io, image, &o->img, NULL)
		      : rbd_open(o->io, image, &o->img, NULL);
	if (r < 0) {
		ims_site_ioctx_close(o->io);
		o->io = NULL;
		return r == -ENOENT ? ims_error_set(r, "no image '%s/%s' on site '%s'", pool, image,
						    ims_site_name(site))
				    : ims_error_set(r, "cannot open '%s/%s' on site '%s': %s", pool,
						    image, ims_site_name(site), ims_strerror(r));
	}
	return 0;
}

static int open_copy(ims_site *site, const char *pool, const char *image, opened *o)
{
	return open_mode(site, pool, image, o, false);
}

static void close_copy(opened *o)
{
	if (o->img)
		rbd_close(o->img);
	if (o->io)
		ims_site_ioctx_close(o->io);
	memset(o, 0, sizeof(*o));
}

static void meta_get(rbd_image_t img, const char *key, char *buf, size_t len)
{
	size_t n = len;
	if (rbd_metadata_get(img, key, buf, &n) < 0)
		buf[0] = '\0';
}

static int read_side(rbd_image_t img, ims_repl_side *out)
{
	char buf[64];
	memset(out, 0, sizeof(*out));
	meta_get(img, IMS_REPL_META_ROLE, buf, sizeof(buf));
	out->secondary = strcmp(buf, "secondary") == 0;
	meta_get(img, IMS_REPL_META_SOURCE, out->source, sizeof(out->source));
	meta_get(img, IMS_REPL_META_STATE, out->state, sizeof(out->state));
	meta_get(img, IMS_REPL_META_GENERATION, buf, sizeof(buf));
	out->generation = strtoull(buf, NULL, 10);
	int r = rbd_get_size(img, &out->size);
	if (r < 0)
		return r;
	ims_repl__snaps s;
	if ((r = ims_repl__list_snaps(&s, img)) < 0)
		return r;
	if (s.n)
		snprintf(out->last_sealed, sizeof(out->last_sealed), "%s", s.names[s.n - 1]);
	free(s.names);
	return 0;
}

int ims_repl_side_get(ims_repl_side *out, ims_site *site, const char *pool, const char *image)
{
	opened o;
	int r = open_mode(site, pool, image, &o, true);
	if (r < 0)
		return r;
	r = read_side(o.img, out);
	if (r < 0)
		ims_error_set(r, "cannot read '%s/%s' on site '%s': %s", pool, image,
			      ims_site_name(site), ims_strerror(r));
	close_copy(&o);
	return r;
}

int ims_repl_set_state(ims_site *site, const char *pool, const char *image, const char *state)
{
	opened o;
	int r = open_copy(site, pool, image, &o);
	if (r < 0)
		return r;
	r = state ? rbd_metadata_set(o.img, IMS_REPL_META_STATE, state)
		  : rbd_metadata_remove(o.img, IMS_REPL_META_STATE);
	if (r == -ENOENT && !state)
		r = 0;
	if (r < 0)
		ims_error_set(r, "cannot mark '%s/%s' on site '%s': %s", pool, image,
			      ims_site_name(site), ims_strerror(r));
	close_copy(&o);
	return r;
}

static int fence_open(ims_site *site, rbd_image_t img, const char *what, unsigned *fenced)
{
	rbd_lock_mode_t mode;
	char *owners[16];
	size_t max = 16;
	unsigned n = 0;
	int r = rbd_lock_get_owners(img, &mode, owners, &max);
	if (r == -ENOENT) /* nobody holds it */
		r = 0, max = 0;
	else if (r < 0)
		return ims_error_set(r, "cannot read who holds the lock of %s: %s", what,
				     ims_strerror(r));
	for (size_t i = 0; i < max; i++) {
		if (ims_site_is_me(site, owners[i])) {
			/* our own cycle (another target's snapshot): it lets go on request, and a
			 * fence would blocklist this daemon */
			ims_log_debug("not fencing %s's holder '%s': it is this daemon", what,
				      owners[i]);
			continue;
		}
		int b = rbd_lock_break(img, mode, owners[i]);
		if (b < 0 && b != -ENOENT) {
			r = ims_error_set(b, "cannot fence '%s', the writer of %s: %s", owners[i],
					  what, ims_strerror(b));
			break;
		}
		ims_log_info("fenced %s: broke the lock of '%s' and blocklisted it", what,
			     owners[i]);
		n++;
	}
	if (max)
		rbd_lock_get_owners_cleanup(owners, max);
	if (fenced)
		*fenced = n;
	return r;
}

int ims_repl_fence(unsigned *fenced, ims_site *site, const char *pool, const char *image)
{
	opened o;
	char what[600];
	int r = open_copy(site, pool, image, &o);
	if (r < 0)
		return r;
	snprintf(what, sizeof(what), "'%s/%s' on site '%s'", pool, image, ims_site_name(site));
	r = fence_open(site, o.img, what, fenced);
	close_copy(&o);
	return r;
}

static int demote_once(rbd_image_t img, const char *source, const char *gen)
{
	int r;
	if ((r = rbd_metadata_set(img, IMS_REPL_META_SOURCE, source)) < 0 ||
	    (r = rbd_metadata_set(img, IMS_REPL_META_GENERATION, gen)) < 0 ||
	    (r = rbd_metadata_set(img, IMS_REPL_META_ROLE, "secondary")) < 0)
		return r;
	r = rbd_metadata_remove(img, IMS_REPL_META_STATE);
	return r == -ENOENT ? 0 : r;
}

/*
 * The metadata writes need the image's exclusive lock. Its holder (a guard of the site's
 * daemon, a client whose cluster was just frozen and thawed) may refuse to hand it over for a
 * moment (-EBUSY): try again for up to about 10 s before giving up.
 */
static int demote_open(rbd_image_t img, const char *source, uint64_t generation)
{
	char gen[32];
	snprintf(gen, sizeof(gen), "%" PRIu64, generation);
	int r = demote_once(img, source, gen);
	for (int i = 0; r == -EBUSY && i < 20; i++) {
		usleep(500000);
		r = demote_once(img, source, gen);
	}
	return r;
}

int ims_repl_demote(ims_site *site, const char *pool, const char *image, const char *primary_site,
		    uint64_t generation)
{
	opened o;
	char source[512];
	int r = open_copy(site, pool, image, &o);
	if (r < 0)
		return r;
	snprintf(source, sizeof(source), "%s/%s/%s", primary_site, pool, image);
	if ((r = demote_open(o.img, source, generation)) < 0)
		ims_error_set(r, "cannot demote '%s/%s' on site '%s': %s", pool, image,
			      ims_site_name(site), ims_strerror(r));
	else
		ims_log_info(
			"demoted '%s/%s' on site '%s': secondary of site '%s', generation %" PRIu64,
			pool, image, ims_site_name(site), primary_site, generation);
	close_copy(&o);
	return r;
}

int ims_repl__rollback_if_changed(bool *rolled, rbd_image_t img, const char *snap, const char *what)
{
	bool changed = false;
	int r = ims_repl__changed_since(&changed, img, snap);
	*rolled = false;
	if (r < 0)
		return ims_error_set(r, "cannot compare %s with '%s': %s", what, snap,
				     ims_strerror(r));
	if (!changed)
		return 0;
	if ((r = rbd_snap_rollback_with_progress(img, snap, ims_repl__no_progress, NULL)) < 0)
		return ims_error_set(r, "cannot roll %s back to '%s': %s", what, snap,
				     ims_strerror(r));
	*rolled = true;
	return 0;
}

int ims_repl_promote(char *at, size_t len, ims_site *site, const char *pool, const char *image,
		     uint64_t generation, bool rollback)
{
	opened o;
	ims_repl_side side;
	char what[600], gen[32];
	bool rolled = false;
	unsigned fenced = 0;
	/* the secondary is held against writers (store/site.h): by this daemon, let go of it; a
	 * guard of another daemon (or any other holder) is fenced, so that nothing it still had
	 * in flight lands on the new primary */
	ims_site_guard_drop(site, pool, image);
	int r = open_copy(site, pool, image, &o);
	if (r < 0)
		return r;
	snprintf(what, sizeof(what), "'%s/%s' on site '%s'", pool, image, ims_site_name(site));
	if ((r = read_side(o.img, &side)) < 0) {
		ims_error_set(r, "cannot read %s: %s", what, ims_strerror(r));
		goto out;
	}
	if (side.secondary && (r = fence_open(site, o.img, what, &fenced)) < 0)
		goto out;
	if (at)
		snprintf(at, len, "%s", side.last_sealed);
	if (rollback && side.last_sealed[0] &&
	    (r = ims_repl__rollback_if_changed(&rolled, o.img, side.last_sealed, what)) < 0)
		goto out;
	snprintf(gen, sizeof(gen), "%" PRIu64, generation);
	if ((r = rbd_metadata_set(o.img, IMS_REPL_META_GENERATION, gen)) < 0 ||
	    (r = rbd_metadata_set(o.img, IMS_REPL_META_ROLE, "primary")) < 0) {
		ims_error_set(r, "cannot promote %s: %s", what, ims_strerror(r));
		goto out;
	}
	rbd_metadata_remove(o.img, IMS_REPL_META_SOURCE);
	rbd_metadata_remove(o.img, IMS_REPL_META_STATE);
	ims_log_info("promoted %s at '%s'%s, generation %" PRIu64
		     " (%u holder(s) of its lock fenced)",
		     what, side.last_sealed[0] ? side.last_sealed : "its head",
		     rolled ? " (rolled back a half-applied delta)" : "", generation, fenced);
out:
	close_copy(&o);
	return r;
}

static int divergence_open(rbd_image_t cur, rbd_image_t old, const char *what, ims_site *cur_site,
			   ims_site *old_site, ims_repl_divergence *out)
{
	ims_repl__snaps cs, os;
	int r;
	memset(out, 0, sizeof(*out));
	if ((r = ims_repl__list_snaps(&cs, cur)) < 0)
		return ims_error_set(r, "cannot list the snapshots of %s on site '%s'", what,
				     ims_site_name(cur_site));
	if ((r = ims_repl__list_snaps(&os, old)) < 0) {
		free(cs.names);
		return ims_error_set(r, "cannot list the snapshots of %s on site '%s'", what,
				     ims_site_name(old_site));
	}
	for (size_t i = os.n; i-- > 0;) {
		if (ims_repl__has_snap(&cs, os.names[i])) {
			snprintf(out->common, sizeof(out->common), "%s", os.names[i]);
			break;
		}
	}
	free(cs.names);
	free(os.names);
	if (!out->common[0]) {
		out->old_wrote = out->new_wrote = out->split_brain = true;
		snprintf(out->plan, sizeof(out->plan),
			 "no common snapshot: site '%s' keeps its copy as "
			 "snapshot " IMS_REPL_RECOVERY_PREFIX
			 "<time>, then site '%s' copies the image in full",
			 ims_site_name(old_site), ims_site_name(cur_site));
		return 0;
	}
	if ((r = ims_repl__changed_since(&out->old_wrote, old, out->common)) < 0 ||
	    (r = ims_repl__changed_since(&out->new_wrote, cur, out->common)) < 0)
		return ims_error_set(r, "cannot compare %s with '%s': %s", what, out->common,
				     ims_strerror(r));
	out->split_brain = out->old_wrote;
	if (out->old_wrote)
		snprintf(out->plan, sizeof(out->plan),
			 "site '%s' wrote after '%s'%s: resync keeps its head as "
			 "snapshot " IMS_REPL_RECOVERY_PREFIX
			 "<time>, rolls it back to '%s' and ships only the delta since from site "
			 "'%s'",
			 ims_site_name(old_site), out->common,
			 out->new_wrote ? " and so did the current primary" : "", out->common,
			 ims_site_name(cur_site));
	else
		snprintf(out->plan, sizeof(out->plan),
			 "site '%s' did not write after '%s': it becomes a secondary and receives "
			 "the delta since",
			 ims_site_name(old_site), out->common);
	return 0;
}

/* The current primary's copy @p c on @p cur and the old one's @p o on @p old: both or none. */
static int open_both(opened *c, opened *o, ims_site *cur, ims_site *old, const char *pool,
		     const char *image)
{
	int r = open_copy(cur, pool, image, c);
	if (r < 0)
		return r;
	if ((r = open_copy(old, pool, image, o)) < 0)
		close_copy(c);
	return r;
}

int ims_repl_divergence_check(ims_repl_divergence *out, ims_site *cur, ims_site *old,
			      const char *pool, const char *image)
{
	opened c, o;
	char what[600];
	int r = open_both(&c, &o, cur, old, pool, image);
	if (r < 0)
		return r;
	snprintf(what, sizeof(what), "'%s/%s'", pool, image);
	r = divergence_open(c.img, o.img, what, cur, old, out);
	close_copy(&o);
	close_copy(&c);
	return r;
}

int ims_repl_rejoin(ims_repl_divergence *out, ims_site *cur, ims_site *old, const char *pool,
		    const char *image, uint64_t generation)
{
	opened c, o;
	ims_repl_divergence d;
	char what[600], recovery[64] = "", source[512];
	/* a split-brain's stale copy was held against its writers by this daemon: let go, the
	 * rollback and demote below work through this connection */
	ims_site_guard_drop(old, pool, image);
	int r = open_both(&c, &o, cur, old, pool, image);
	if (r < 0)
		return r;
	snprintf(what, sizeof(what), "'%s/%s' on site '%s'", pool, image, ims_site_name(old));
	if ((r = divergence_open(c.img, o.img, what, cur, old, &d)) < 0)
		goto out;
	/* nobody writes to the old copy while it is rolled back and demoted */
	if ((r = fence_open(old, o.img, what, NULL)) < 0)
		goto out;
	if (d.old_wrote) {
		snprintf(recovery, sizeof(recovery), IMS_REPL_RECOVERY_PREFIX "%" PRId64,
			 ims_clock_unix_ms());
		if ((r = rbd_snap_create(o.img, recovery)) < 0) {
			ims_error_set(r, "cannot keep the diverged head of %s as '%s': %s", what,
				      recovery, ims_strerror(r));
			goto out;
		}
		ims_log_warning("kept the diverged head of %s as snapshot '%s'", what, recovery);
	}
	if (d.common[0]) {
		bool rolled;
		if ((r = ims_repl__rollback_if_changed(&rolled, o.img, d.common, what)) < 0)
			goto out;
		/* replication snapshots newer than the common one are not on the primary */
		ims_repl__snaps os;
		if (ims_repl__list_snaps(&os, o.img) == 0) {
			for (size_t i = os.n; i-- > 0 && strcmp(os.names[i], d.common) != 0;)
				rbd_snap_remove(o.img, os.names[i]);
			free(os.names);
		}
	}
	snprintf(source, sizeof(source), "%s/%s/%s", ims_site_name(cur), pool, image);
	if ((r = demote_open(o.img, source, generation)) < 0) {
		ims_error_set(r, "cannot demote %s: %s", what, ims_strerror(r));
		goto out;
	}
	if (recovery[0])
		snprintf(d.plan, sizeof(d.plan),
			 "kept site '%s''s diverged head as snapshot '%s', rolled it back to '%s'; "
			 "site '%s' ships the delta since",
			 ims_site_name(old), recovery,
			 d.common[0] ? d.common : "(nothing: a full copy follows)",
			 ims_site_name(cur));
	else
		snprintf(
			d.plan, sizeof(d.plan),
			"site '%s' is a secondary again from '%s'; site '%s' ships the delta since",
			ims_site_name(old), d.common, ims_site_name(cur));
	ims_log_info("rejoined %s as a secondary of site '%s': %s", what, ims_site_name(cur),
		     d.plan);
	if (out)
		*out = d;
out:
	close_copy(&o);
	close_copy(&c);
	return r;
}

/* ---------------------------------------------------------------------------------------- */
/* the journal of planned failovers */

static const char *const step_names[] = {"", "sync", "demote", "promote", "reverse"};

const char *ims_repl_step_name(ims_repl_step step)
{
	return step >= IMS_REPL_STEP_SYNC && step <= IMS_REPL_STEP_REVERSE ? step_names[step] : "?";
}

const char *ims_repl_unit_name(ims_repl_unit u)
{
	return u == IMS_REPL_GROUP ? "group" : "image";
}

/* The journal's records in @p pool of @p site (close @p io with ims_site_ioctx_close()), and
 * the key of @p unit @p pool/@p name in them: a group's apart from an image's of the same
 * name. */
static int journal_open(rados_ioctx_t *io, ims_records *rs, char *key, size_t len, ims_site *site,
			const char *pool, const char *name, ims_repl_unit unit)
{
	int r = ims_site_ioctx(io, site, pool);
	if (r < 0)
		return r;
	snprintf(key, len, "%s%s/%s", unit == IMS_REPL_GROUP ? "group:" : "", pool, name);
	*rs = IMS_RECORDS_IO(*io, IMS_REPL_FAILOVERS);
	return 0;
}

/* The fields of a record that the table says; "step", "forced" and "group" are added by hand
 * (a name, and JSON booleans). */
static const ims_record_field journal_fields[] = {
	IMS_RECORD_FIELD(ims_repl_journal, target, IMS_RECORD_STR),
	IMS_RECORD_FIELD(ims_repl_journal, generation, IMS_RECORD_U64),
	IMS_RECORD_FIELD(ims_repl_journal, old_generation, IMS_RECORD_U64),
	IMS_RECORD_FIELD(ims_repl_journal, started_ms, IMS_RECORD_I64),
	IMS_RECORD_FIELD(ims_repl_journal, cut, IMS_RECORD_STR),
};
#define NJOURNAL_FIELDS (sizeof(journal_fields) / sizeof(journal_fields[0]))

json_object *ims_repl__journal_encode(const ims_repl_journal *j)
{
	json_object *o = ims_record_encode(j, journal_fields, NJOURNAL_FIELDS);
	if (!o)
		return NULL;
	json_object_object_add(o, "step", json_object_new_string(ims_repl_step_name(j->step)));
	json_object_object_add(o, "forced", json_object_new_boolean(j->forced));
	json_object_object_add(o, "group", json_object_new_boolean(j->unit == IMS_REPL_GROUP));
	return o;
}

void ims_repl__journal_decode(ims_repl_journal *out, json_object *o)
{
	json_object *v;
	memset(out, 0, sizeof(*out));
	ims_record_decode(out, o, journal_fields, NJOURNAL_FIELDS);
	const char *step =
		json_object_object_get_ex(o, "step", &v) ? json_object_get_string(v) : NULL;
	for (int s = IMS_REPL_STEP_SYNC; step && s <= IMS_REPL_STEP_REVERSE; s++)
		if (strcmp(step, step_names[s]) == 0)
			out->step = (ims_repl_step)s;
	if (json_object_object_get_ex(o, "forced", &v))
		out->forced = json_object_get_boolean(v);
	if (json_object_object_get_ex(o, "group", &v))
		out->unit = json_object_get_boolean(v) ? IMS_REPL_GROUP : IMS_REPL_IMAGE;
}

int ims_repl_journal_put(ims_site *site, const char *pool, const char *name,
			 const ims_repl_journal *j)
{
	rados_ioctx_t io;
	ims_records rs;
	char key[600];
	int r = journal_open(&io, &rs, key, sizeof(key), site, pool, name, j->unit);
	if (r < 0)
		return r;
	json_object *o = ims_repl__journal_encode(j);
	if (!o) {
		ims_site_ioctx_close(io);
		return -ENOMEM;
	}
	r = ims_record_put(&rs, key, o);
	json_object_put(o);
	ims_site_ioctx_close(io);
	return r < 0 ? ims_error_set(
			       r,
			       "cannot record the failover of '%s' at step '%s' on site '%s': %s",
			       key, ims_repl_step_name(j->step), ims_site_name(site),
			       ims_strerror(r))
		     : 0;
}

/* A record that cannot be read: nothing is done on its account, and the operator is told how
 * to drop it once both sites' roles are checked. */
static int journal_bad(ims_site *site, const char *pool, const char *key, const char *what)
{
	return ims_error_set(
		-EBADMSG,
		"the failover record of '%s' on site '%s' %s: check the roles on both sites "
		"(`imgstore repl status`), then remove it with `rados -p %s rmomapkey %s '%s'` "
		"and run the failover again",
		key, ims_site_name(site), what, pool, IMS_REPL_FAILOVERS, key);
}

int ims_repl_journal_get(ims_repl_journal *out, ims_site *site, const char *pool, const char *name,
			 ims_repl_unit unit)
{
	rados_ioctx_t io;
	ims_records rs;
	char key[600];
	json_object *o = NULL;
	int r = journal_open(&io, &rs, key, sizeof(key), site, pool, name, unit);
	if (r < 0)
		return r;
	/* quiet: no record (-ENOENT) is the common answer, not an error to report */
	rs.quiet = true;
	r = ims_record_get(&o, &rs, key);
	ims_site_ioctx_close(io);
	if (r == -EBADMSG)
		return journal_bad(site, pool, key, "is not JSON");
	if (r < 0)
		return r;
	ims_repl__journal_decode(out, o);
	out->unit = unit;
	json_object_put(o);
	if (!out->target[0] || !out->step)
		return journal_bad(site, pool, key, "is incomplete");
	return 0;
}

int ims_repl_journal_clear(ims_site *site, const char *pool, const char *name, ims_repl_unit unit)
{
	rados_ioctx_t io;
	ims_records rs;
	char key[600];
	int r = journal_open(&io, &rs, key, sizeof(key), site, pool, name, unit);
	if (r < 0)
		return r;
	rs.quiet = true;
	r = ims_record_del(&rs, key);
	ims_site_ioctx_close(io);
	return r;
}

static int count_record(void *ctx, const char *key, json_object *val)
{
	(void)key, (void)val;
	(*(unsigned *)ctx)++;
	return 0;
}

int ims_repl_journal_count(unsigned *count, ims_site *site)
{
	size_t len = 1024;
	char *pools = NULL;
	unsigned n = 0;
	int r;
	for (;;) {
		char *nb = realloc(pools, len);
		if (!nb) {
			free(pools);
			return -ENOMEM;
		}
		pools = nb;
		r = ims_site_pool_list(pools, len, site);
		if (r < 0) {
			free(pools);
			return ims_error_set(r, "cannot list the pools of site '%s': %s",
					     ims_site_name(site), ims_strerror(r));
		}
		if ((size_t)r <= len)
			break;
		len = (size_t)r;
	}
	/* a record is in the pool of its image or group: every pool, as the tmp cleanup */
	for (const char *p = pools; *p && r >= 0; p += strlen(p) + 1) {
		rados_ioctx_t io;
		if ((r = ims_site_ioctx(&io, site, p)) < 0) {
			r = r == -ENOENT ? 0 : r; /* removed since the listing */
			continue;
		}
		ims_records rs = IMS_RECORDS_IO(io, IMS_REPL_FAILOVERS);
		rs.quiet = true;
		r = ims_record_foreach(&rs, count_record, &n);
		ims_site_ioctx_close(io);
		if (r == -EOPNOTSUPP) /* an erasure-coded pool keeps no omap, so no record */
			r = 0;
		if (r < 0)
			ims_error_set(
				r, "cannot read the failover records in pool '%s' of site '%s': %s",
				p, ims_site_name(site), ims_strerror(r));
	}
	free(pools);
	if (r < 0)
		return r;
	*count = n;
	return 0;
}
