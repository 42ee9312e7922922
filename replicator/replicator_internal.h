/*
 * replicator/replicator_internal.h: helpers shared by the files of replicator/ (not public).
 */
#ifndef IMS_REPLICATOR_INTERNAL_H
#define IMS_REPLICATOR_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <rbd/librbd.h>

#include "replicator/failover.h"

#define IMS_REPL__SNAP_NAME_MAX 64

/* omap object in the primary's pool: "image@site" -> the base that pair last sealed */
#define IMS_REPL__BASES "imgstore.repl.bases"

/** The replication snapshots ("imgstore-repl-<ms>") of an open image, oldest first. */
typedef struct {
	char (*names)[IMS_REPL__SNAP_NAME_MAX];
	size_t n;
} ims_repl__snaps;

/** List them; free out->names. */
int ims_repl__list_snaps(rbd_image_t image, ims_repl__snaps *out);

/** A progress function that asks nothing: librbd calls one unconditionally. */
int ims_repl__no_progress(uint64_t done, uint64_t total, void *arg);

bool ims_repl__has_snap(const ims_repl__snaps *s, const char *name);

/** Whether the head of @p image differs from its snapshot @p snap (size, or any extent, by
 *  fast-diff when the object map is valid). */
int ims_repl__changed_since(rbd_image_t image, const char *snap, bool *changed);

/** Roll @p image back to its snapshot @p snap if its head differs from it; @p what names the
 *  copy in errors. */
int ims_repl__rollback_if_changed(rbd_image_t image, const char *snap, const char *what,
				  bool *rolled);

/* The failover journal's record (replicator/failover.h) as JSON, and back: a record's group
 * flag is in its key too, which ims_repl_journal_get() trusts. */
json_object *ims_repl__journal_encode(const ims_repl_journal *j);
void ims_repl__journal_decode(ims_repl_journal *out, json_object *o);

#endif
