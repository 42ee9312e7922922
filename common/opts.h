/*
 * common/opts.h: the one rule for the options structs of imgstore's API (libgit2's rule).
 *
 * Each options struct has `unsigned version` as its first member, set by its FOO_OPTS_INIT to
 * the FOO_OPTS_VERSION of the headers the caller was built with. A function takes every version
 * from 1 up to the one it was built with (a newer library runs an older caller), and refuses 0
 * (a struct nobody initialised) and newer ones in one line:
 *
 *	if ((r = IMS_OPTS_CHECK(opts, IMS_TIER_OPTS_VERSION, "tier")) < 0)
 *		return r;
 */
#ifndef IMS_COMMON_OPTS_H
#define IMS_COMMON_OPTS_H

/** 0 if @p opts is set and of a version from 1 to @p current; else -EINVAL naming @p what. */
#define IMS_OPTS_CHECK(opts, current, what)                                                        \
	ims_opts_check((opts) != NULL, (opts) ? (opts)->version : 0u, (current), (what))

int ims_opts_check(int present, unsigned version, unsigned current, const char *what);

#endif
