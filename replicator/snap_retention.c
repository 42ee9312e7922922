/* replicator/snap_retention.c: the retention rule of snapshot schedules, pure logic. */
#include "replicator/snapsched.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#define KEEP_MAX 10000u

ims_snapsched_buckets ims_snapsched_buckets_of(int64_t hour)
{
	if (hour <= 0)
		hour = 3600;
	return (ims_snapsched_buckets){.hour = hour, .day = 24 * hour, .week = 168 * hour};
}

int ims_snapsched_keep_parse(ims_snapsched_keep *out, const char *s)
{
	ims_snapsched_keep k = {0, 0, 0};
	bool seen[3] = {false, false, false};
	if (!s || !*s)
		return ims_error_set(-EINVAL, "--keep: expected hourly=N,daily=N,weekly=N");
	const char *p = s;
	while (*p) {
		static const char *const names[] = {"hourly", "daily", "weekly"};
		unsigned *dst[] = {&k.hourly, &k.daily, &k.weekly};
		size_t i, nl = strcspn(p, "=,");
		for (i = 0; i < 3; i++)
			if (strlen(names[i]) == nl && strncmp(p, names[i], nl) == 0)
				break;
		if (i == 3 || p[nl] != '=')
			return ims_error_set(-EINVAL,
					     "--keep '%.64s': '%.*s' is not hourly=N, daily=N or "
					     "weekly=N",
					     s, (int)(nl > 32 ? 32 : nl), p);
		if (seen[i])
			return ims_error_set(-EINVAL, "--keep '%.64s': %s given twice", s,
					     names[i]);
		seen[i] = true;
		p += nl + 1;
		char *end;
		if (*p < '0' || *p > '9')
			return ims_error_set(-EINVAL, "--keep '%.64s': %s needs a count", s,
					     names[i]);
		unsigned long v = strtoul(p, &end, 10);
		if (v > KEEP_MAX)
			return ims_error_set(-EINVAL, "--keep '%.64s': %s=%lu is over %u", s,
					     names[i], v, KEEP_MAX);
		if (*end != ',' && *end != '\0')
			return ims_error_set(-EINVAL, "--keep '%.64s': %s=%s is not a count", s,
					     names[i], p);
		*dst[i] = (unsigned)v;
		p = *end == ',' ? end + 1 : end;
		if (*end == ',' && !*p)
			return ims_error_set(-EINVAL, "--keep '%.64s': ends with ','", s);
	}
	if (k.hourly + k.daily + k.weekly == 0)
		return ims_error_set(-EINVAL, "--keep '%.64s' keeps no snapshot", s);
	*out = k;
	return 0;
}

char *ims_snapsched_keep_format(char *buf, size_t len, const ims_snapsched_keep *k)
{
	snprintf(buf, len, "hourly=%u,daily=%u,weekly=%u", k->hourly, k->daily, k->weekly);
	return buf;
}

int64_t ims_snapsched_snap_time(const char *name)
{
	size_t pl = strlen(IMS_SNAPSCHED_PREFIX);
	if (strncmp(name, IMS_SNAPSCHED_PREFIX, pl) != 0 || name[pl] < '0' || name[pl] > '9')
		return -1;
	char *end;
	long long v = strtoll(name + pl, &end, 10);
	if (*end || v < 0)
		return -1;
	return (int64_t)v;
}

/* floor(t / len), for times before 1970 too */
static int64_t bucket(int64_t unix_ms, int64_t len_s)
{
	int64_t len = len_s * 1000;
	return unix_ms >= 0 ? unix_ms / len : -((-unix_ms + len - 1) / len);
}

static int newest_first(const void *a, const void *b, void *ctx)
{
	const ims_snapsched_snap *s = ctx;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	if (s[i].unix_ms != s[j].unix_ms)
		return s[i].unix_ms > s[j].unix_ms ? -1 : 1;
	return strcmp(s[j].name, s[i].name); /* the same time: a stable order */
}

int ims_snapsched_retain(bool *keep, const ims_snapsched_snap *snaps, size_t n,
			 const ims_snapsched_keep *k, const ims_snapsched_buckets *b)
{
	if (b->hour < 1 || b->day < 1 || b->week < 1)
		return ims_error_set(-EINVAL, "retention buckets must be at least 1 s long");
	if (n == 0)
		return 0;
	size_t *order = malloc(n * sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		order[i] = i;
		keep[i] = snaps[i].pinned;
	}
	qsort_r(order, n, sizeof(*order), newest_first, (void *)snaps);
	keep[order[0]] = true;
	const struct {
		unsigned count;
		int64_t len;
	} rules[] = {{k->hourly, b->hour}, {k->daily, b->day}, {k->weekly, b->week}};
	for (size_t r = 0; r < sizeof(rules) / sizeof(rules[0]); r++) {
		unsigned left = rules[r].count;
		bool have_last = false;
		int64_t last = 0;
		for (size_t i = 0; i < n && left > 0; i++) {
			int64_t bk = bucket(snaps[order[i]].unix_ms, rules[r].len);
			if (have_last && bk == last)
				continue;
			have_last = true;
			last = bk;
			keep[order[i]] = true;
			left--;
		}
	}
	free(order);
	return 0;
}
