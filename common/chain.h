/*
 * common/chain.h: hash chains of text lines, the tamper evidence of the audit log.
 *
 * A chained line is "TEXT chain=HASH", HASH the lower-case hex SHA-256 of the previous line's
 * HASH (64 zeros before the first line), a newline and TEXT. Editing, removing or inserting a
 * line breaks the chain at that line: every later HASH depends on it. The chain proves nothing
 * against someone who rewrites every line from the edit on; anchor its head elsewhere (a copy
 * shipped off the host) for that (docs/SECURITY.md).
 */
#ifndef IMS_COMMON_CHAIN_H
#define IMS_COMMON_CHAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "common/hash.h"

#define IMS_CHAIN_ZERO "0000000000000000000000000000000000000000000000000000000000000000"
#define IMS_CHAIN_TAG  " chain="

/** The HASH of a line of @p text (@p len bytes) after the line whose HASH is @p prev. */
void ims_chain_next(char out[IMS_SHA256_HEX_LEN], const char *prev, const char *text, size_t len);

/**
 * Split a chained line (without its newline): @p out the HASH it carries, *@p text_len the length
 * of its TEXT.
 *
 * @returns -ENOENT for a line with no well-formed " chain=HASH" at its end.
 */
int ims_chain_split(char out[IMS_SHA256_HEX_LEN], size_t *text_len, const char *line, size_t len);

/** Where a check of chained lines is: the HASH of the last line checked. */
typedef struct {
	char prev[IMS_SHA256_HEX_LEN];
	unsigned long lines;  /* lines checked so far */
	bool started;	      /* a line was checked */
	bool first_unchecked; /* the first line chained from an earlier file, not checked */
} ims_chain_state;

#define IMS_CHAIN_STATE_INIT                                                                       \
	{                                                                                          \
		IMS_CHAIN_ZERO, 0, false, false                                                    \
	}

/**
 * Check the next line of a chain (without its newline). A first line of a file (@p file_start)
 * may also start a chain again (chained from 64 zeros: a daemon started on a new file) or, the
 * very first of all, continue one from an earlier file that is not given (taken as it is, and
 * said in first_unchecked).
 *
 * @returns 0, or -EBADMSG if the line breaks the chain, -ENOENT if it carries no chain.
 */
int ims_chain_check(ims_chain_state *st, const char *line, size_t len, bool file_start);

#endif
