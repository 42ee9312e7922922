#include "store/pg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Bob Jenkins' 1996 mix of three 32-bit words, as Ceph's rjenkins object hash uses it. */
#define MIX(a, b, c)                                                                               \
	do {                                                                                       \
		a -= b;                                                                            \
		a -= c;                                                                            \
		a ^= c >> 13;                                                                      \
		b -= c;                                                                            \
		b -= a;                                                                            \
		b ^= a << 8;                                                                       \
		c -= a;                                                                            \
		c -= b;                                                                            \
		c ^= b >> 13;                                                                      \
		a -= b;                                                                            \
		a -= c;                                                                            \
		a ^= c >> 12;                                                                      \
		b -= c;                                                                            \
		b -= a;                                                                            \
		b ^= a << 16;                                                                      \
		c -= a;                                                                            \
		c -= b;                                                                            \
		c ^= b >> 5;                                                                       \
		a -= b;                                                                            \
		a -= c;                                                                            \
		a ^= c >> 3;                                                                       \
		b -= c;                                                                            \
		b -= a;                                                                            \
		b ^= a << 10;                                                                      \
		c -= a;                                                                            \
		c -= b;                                                                            \
		c ^= b >> 15;                                                                      \
	} while (0)

static uint32_t le32(const unsigned char *k)
{
	return (uint32_t)k[0] | (uint32_t)k[1] << 8 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 24;
}

uint32_t ims_pg_hash(const char *name, size_t len)
{
	const unsigned char *k = (const unsigned char *)name;
	uint32_t a = 0x9e3779b9u, b = a, c = 0;
	size_t left = len;
	for (; left >= 12; k += 12, left -= 12) {
		a += le32(k);
		b += le32(k + 4);
		c += le32(k + 8);
		MIX(a, b, c);
	}
	c += (uint32_t)len;
	/* the tail, the lowest byte of c being the length's */
	switch (left) {
	case 11:
		c += (uint32_t)k[10] << 24;
		/* fall through */
	case 10:
		c += (uint32_t)k[9] << 16;
		/* fall through */
	case 9:
		c += (uint32_t)k[8] << 8;
		/* fall through */
	case 8:
		b += (uint32_t)k[7] << 24;
		/* fall through */
	case 7:
		b += (uint32_t)k[6] << 16;
		/* fall through */
	case 6:
		b += (uint32_t)k[5] << 8;
		/* fall through */
	case 5:
		b += k[4];
		/* fall through */
	case 4:
		a += (uint32_t)k[3] << 24;
		/* fall through */
	case 3:
		a += (uint32_t)k[2] << 16;
		/* fall through */
	case 2:
		a += (uint32_t)k[1] << 8;
		/* fall through */
	case 1:
		a += k[0];
		/* fall through */
	default: break;
	}
	MIX(a, b, c);
	return c;
}

uint32_t ims_pg_of(uint32_t hash, uint32_t pg_num)
{
	/* the smallest 2^n - 1 that covers pg_num - 1: a PG of a pool being split keeps its
	 * objects until pg_num reaches the next power of two */
	uint32_t mask = 0;
	while (mask < pg_num - 1)
		mask = mask << 1 | 1;
	return (hash & mask) < pg_num ? hash & mask : hash & (mask >> 1);
}

int ims_pg_names(char (*out)[IMS_PG_NAME_MAX], uint32_t pg_num)
{
	if (pg_num == 0)
		return -EINVAL;
	for (uint32_t i = 0; i < pg_num; i++)
		out[i][0] = '\0';
	uint32_t left = pg_num;
	/* about pg_num * ln(pg_num) names are needed; 64 per PG is far beyond */
	uint64_t limit = (uint64_t)pg_num * 64;
	char name[IMS_PG_NAME_MAX];
	for (uint64_t n = 0; left && n < limit; n++) {
		int len = snprintf(name, sizeof(name), "imgstore.probe.pg.%llu",
				   (unsigned long long)n);
		uint32_t pg = ims_pg_of(ims_pg_hash(name, (size_t)len), pg_num);
		if (out[pg][0])
			continue;
		memcpy(out[pg], name, (size_t)len + 1);
		left--;
	}
	return left ? -ERANGE : 0;
}

size_t ims_pg_round(uint32_t *out, size_t max, const ims_pg_state *state, const bool *busy,
		    uint32_t pg_num, uint32_t *cursor)
{
	size_t n = 0;
	if (pg_num == 0 || max == 0)
		return 0;
	if (pg_num <= max) {
		for (uint32_t i = 0; i < pg_num; i++)
			if (!busy[i])
				out[n++] = i;
		return n;
	}
	/* the silent ones first: at most half the round, so that the others are still asked */
	for (uint32_t i = 0; i < pg_num && n < max / 2; i++)
		if (state[i] == IMS_PG_SILENT && !busy[i])
			out[n++] = i;
	size_t chosen = n;
	uint32_t c = *cursor % pg_num;
	for (uint32_t step = 0; step < pg_num && n < max; step++, c = (c + 1) % pg_num) {
		if (busy[c])
			continue;
		bool dup = false;
		for (size_t j = 0; j < chosen && !dup; j++)
			dup = out[j] == c;
		if (!dup)
			out[n++] = c;
	}
	*cursor = c;
	return n;
}

ims_pg_health ims_pg_summary(uint32_t *silent, const ims_pg_state *state, uint32_t pg_num,
			     size_t asked_now, size_t answered_now)
{
	uint32_t s = 0;
	for (uint32_t i = 0; i < pg_num; i++)
		s += state[i] == IMS_PG_SILENT;
	if (silent)
		*silent = s;
	if ((asked_now > 0 && answered_now == 0) || (pg_num > 0 && s == pg_num))
		return IMS_PG_DOWN;
	return s ? IMS_PG_PARTLY : IMS_PG_UP;
}

void ims_pg_list_silent(char *buf, size_t len, const ims_pg_state *state, uint32_t pg_num,
			int64_t pool_id)
{
	size_t used = 0;
	uint32_t listed = 0, total = 0;
	bool full = false;
	/* room kept for " and 4294967295 more" */
	const size_t tail = 24;
	if (len == 0)
		return;
	buf[0] = '\0';
	for (uint32_t i = 0; i < pg_num; i++) {
		if (state[i] != IMS_PG_SILENT)
			continue;
		total++;
		char one[40];
		int n = snprintf(one, sizeof(one), "%s%lld.%x", listed ? ", " : "",
				 (long long)pool_id, i);
		if (full || used + (size_t)n + tail >= len) {
			full = true;
			continue;
		}
		memcpy(buf + used, one, (size_t)n + 1);
		used += (size_t)n;
		listed++;
	}
	if (total > listed && len > used + tail)
		snprintf(buf + used, len - used, "%sand %u more", listed ? " " : "",
			 total - listed);
}
