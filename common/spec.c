#include "common/spec.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"

static const char *kind_name(ims_name_kind kind)
{
	switch (kind) {
	case IMS_NAME_POOL: return "pool";
	case IMS_NAME_IMAGE: return "image";
	case IMS_NAME_SNAP: return "snapshot";
	}
	return "name";
}

int ims_name_check(ims_name_kind kind, const char *name)
{
	const char *what = kind_name(kind);
	size_t n;

	if (!name || !*name)
		return ims_error_set(-EINVAL, "empty %s name", what);
	n = strlen(name);
	if (n > IMS_NAME_MAX)
		return ims_error_set(-EINVAL, "%s name is %zu bytes long; the limit is %d", what, n,
				     IMS_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x20 || c == 0x7f)
			return ims_error_set(-EINVAL, "%s name has a control character (byte %zu)",
					     what, i);
		if (c == '/' || c == '@')
			return ims_error_set(-EINVAL, "%s name '%s' contains '%c'", what, name, c);
	}
	if (name[0] == ' ' || name[n - 1] == ' ')
		return ims_error_set(-EINVAL, "%s name '%s' starts or ends with a space", what,
				     name);
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return ims_error_set(-EINVAL, "'%s' is not a %s name", name, what);
	if (kind == IMS_NAME_IMAGE && name[0] == '.')
		return ims_error_set(
			-EINVAL,
			"image name '%s' starts with '.', which imgstore keeps for its own images",
			name);
	return 0;
}

static int copy_part(char *dst, const char *src, size_t len, ims_name_kind kind)
{
	if (len > IMS_NAME_MAX)
		return ims_error_set(-EINVAL, "%s name is %zu bytes long; the limit is %d",
				     kind_name(kind), len, IMS_NAME_MAX);
	memcpy(dst, src, len);
	dst[len] = '\0';
	return ims_name_check(kind, dst);
}

int ims_spec_parse(ims_spec *out, const char *s, const char *default_pool, bool snap_allowed,
		   bool snap_required)
{
	ims_spec spec;
	const char *slash, *at, *img;
	int r;

	if (!s || !*s)
		return ims_error_set(-EINVAL, "empty image spec: expected POOL/IMAGE%s",
				     snap_required ? "@SNAP" : "");
	memset(&spec, 0, sizeof(spec));
	slash = strchr(s, '/');
	if (slash) {
		if (strchr(slash + 1, '/'))
			return ims_error_set(-EINVAL, "bad image spec '%s': expected POOL/IMAGE%s",
					     s, snap_allowed ? "[@SNAP]" : "");
		if ((r = copy_part(spec.pool, s, (size_t)(slash - s), IMS_NAME_POOL)) < 0)
			return r;
		img = slash + 1;
	} else {
		if (!default_pool)
			return ims_error_set(-EINVAL, "bad image spec '%s': expected POOL/IMAGE%s",
					     s, snap_allowed ? "[@SNAP]" : "");
		snprintf(spec.pool, sizeof(spec.pool), "%s", default_pool);
		img = s;
	}
	at = strchr(img, '@');
	if (at) {
		if (!snap_allowed)
			return ims_error_set(
				-EINVAL, "'%s' names a snapshot; this takes an image: POOL/IMAGE",
				s);
		if ((r = copy_part(spec.image, img, (size_t)(at - img), IMS_NAME_IMAGE)) < 0)
			return r;
		if ((r = copy_part(spec.snap, at + 1, strlen(at + 1), IMS_NAME_SNAP)) < 0)
			return r;
	} else {
		if (snap_required)
			return ims_error_set(-EINVAL,
					     "'%s' names no snapshot: expected POOL/IMAGE@SNAP", s);
		if ((r = copy_part(spec.image, img, strlen(img), IMS_NAME_IMAGE)) < 0)
			return r;
	}
	*out = spec;
	return 0;
}

char *ims_spec_format(char *buf, unsigned long len, const ims_spec *spec)
{
	if (spec->snap[0])
		snprintf(buf, len, "%s/%s@%s", spec->pool, spec->image, spec->snap);
	else
		snprintf(buf, len, "%s/%s", spec->pool, spec->image);
	return buf;
}

bool ims_uuid_valid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}
