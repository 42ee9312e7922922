/*
 * common/json.h: reading fields of the small JSON records imgstore keeps in RADOS (json-c).
 * A missing field, or one of another type, reads as empty or 0: one damaged record never
 * stops a listing.
 */
#ifndef IMS_COMMON_JSON_H
#define IMS_COMMON_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

/** Copy string field @p key of @p o into @p dst (truncated to @p len); "" if absent. */
void ims_json_str(char *dst, size_t len, json_object *o, const char *key);

/** A malloc'ed copy of string field @p key, or NULL if absent (or out of memory). */
char *ims_json_strdup(json_object *o, const char *key);

/** Integer field @p key, or 0 if absent. */
int64_t ims_json_i64(json_object *o, const char *key);

#endif
