/* common/chain.c: hash chains of text lines (the audit log's). */
#include "common/chain.h"

#include <errno.h>
#include <string.h>

void ims_chain_next(char out[IMS_SHA256_HEX_LEN], const char *prev, const char *text, size_t len)
{
	ims_sha256 *h = NULL;
	uint8_t d[IMS_SHA256_LEN];
	if (ims_sha256_new(&h) < 0) {
		/* no memory for a context: the one-shot digest of the same bytes */
		size_t pl = strlen(prev);
		char buf[IMS_SHA256_HEX_LEN + 1 + 4096];
		size_t n = len < 4096 ? len : 4096;
		memcpy(buf, prev, pl);
		buf[pl] = '\n';
		memcpy(buf + pl + 1, text, n);
		ims_sha256_buf(d, buf, pl + 1 + n);
		ims_sha256_hex(out, d);
		return;
	}
	ims_sha256_update(h, prev, strlen(prev));
	ims_sha256_update(h, "\n", 1);
	ims_sha256_update(h, text, len);
	ims_sha256_final(d, h);
	ims_sha256_free(h);
	ims_sha256_hex(out, d);
}

int ims_chain_split(char out[IMS_SHA256_HEX_LEN], size_t *text_len, const char *line, size_t len)
{
	size_t tl = strlen(IMS_CHAIN_TAG), hl = IMS_SHA256_HEX_LEN - 1;
	if (len < tl + hl || memcmp(line + len - hl - tl, IMS_CHAIN_TAG, tl) != 0)
		return -ENOENT;
	for (size_t i = len - hl; i < len; i++)
		if (!((line[i] >= '0' && line[i] <= '9') || (line[i] >= 'a' && line[i] <= 'f')))
			return -ENOENT;
	memcpy(out, line + len - hl, hl);
	out[hl] = '\0';
	*text_len = len - hl - tl;
	return 0;
}

int ims_chain_check(ims_chain_state *st, const char *line, size_t len, bool file_start)
{
	char have[IMS_SHA256_HEX_LEN], want[IMS_SHA256_HEX_LEN];
	size_t tl;
	if (ims_chain_split(have, &tl, line, len) < 0)
		return -ENOENT;
	ims_chain_next(want, st->prev, line, tl);
	if (strcmp(want, have) != 0 && file_start) {
		ims_chain_next(want, IMS_CHAIN_ZERO, line, tl);
		if (strcmp(want, have) != 0 && !st->started) {
			st->first_unchecked = true;
			memcpy(want, have, sizeof(want));
		}
	}
	if (strcmp(want, have) != 0)
		return -EBADMSG;
	memcpy(st->prev, have, sizeof(st->prev));
	st->lines++;
	st->started = true;
	return 0;
}
