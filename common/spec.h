/*
 * common/spec.h: image specs as written on the command line (POOL/IMAGE@SNAP) and the rules
 * for pool, image and snapshot names, checked before anything touches a cluster.
 */
#ifndef IMS_COMMON_SPEC_H
#define IMS_COMMON_SPEC_H

#include <stdbool.h>

#define IMS_NAME_MAX 255

typedef struct {
	char pool[IMS_NAME_MAX + 1];
	char image[IMS_NAME_MAX + 1];
	char snap[IMS_NAME_MAX + 1]; /* "" for the image head */
} ims_spec;

typedef enum {
	IMS_NAME_POOL,
	IMS_NAME_IMAGE,
	IMS_NAME_SNAP,
} ims_name_kind;

/**
 * Check a name: 1 to 255 bytes, printable (UTF-8 allowed, no control characters or spaces
 * at either end), no '/' or '@', not "." or "..", and for images not starting with '.'
 * (imgstore keeps its temporary images under that prefix).
 *
 * @returns -EINVAL with a one-line message naming the problem.
 */
int ims_name_check(ims_name_kind kind, const char *name);

/**
 * Parse "POOL/IMAGE", "POOL/IMAGE@SNAP" or, when @p default_pool is not NULL, "IMAGE[@SNAP]".
 *
 * @param snap_allowed whether "@SNAP" may be given; @p snap_required whether it must be.
 * @returns -EINVAL with a one-line message if the spec or a name in it is bad.
 */
int ims_spec_parse(ims_spec *out, const char *s, const char *default_pool, bool snap_allowed,
		   bool snap_required);

/** Write "POOL/IMAGE[@SNAP]" into @p buf; returns @p buf. */
/** Whether @p s is a UUID written as 8-4-4-4-12 hexadecimal digits (a libvirt secret's). */
bool ims_uuid_valid(const char *s);

char *ims_spec_format(char *buf, unsigned long len, const ims_spec *spec);

#endif
