#include "common/units.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <strings.h>

static int suffix_shift(const char *s, unsigned *shift)
{
	static const struct {
		const char *name;
		unsigned shift;
	} suffixes[] = {
		{"", 0},    {"b", 0},	 {"k", 10}, {"kb", 10}, {"kib", 10}, {"m", 20},
		{"mb", 20}, {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30}, {"t", 40},
		{"tb", 40}, {"tib", 40}, {"p", 50}, {"pb", 50}, {"pib", 50},
	};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		if (strcasecmp(s, suffixes[i].name) == 0) {
			*shift = suffixes[i].shift;
			return 0;
		}
	}
	return -EINVAL;
}

int ims_parse_size(uint64_t *out, const char *s)
{
	uint64_t whole = 0, frac_num = 0, frac_den = 1;
	unsigned shift;
	const char *p = s;

	if (!s)
		return -EINVAL;
	while (isspace((unsigned char)*p))
		p++;
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (whole > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			if (frac_den < 1000000000ULL) {
				frac_num = frac_num * 10 + (uint64_t)(*p - '0');
				frac_den *= 10;
			}
		}
	}
	while (*p == ' ')
		p++;
	char suffix[8];
	size_t n = strlen(p);
	while (n > 0 && isspace((unsigned char)p[n - 1]))
		n--;
	if (n >= sizeof(suffix))
		return -EINVAL;
	memcpy(suffix, p, n);
	suffix[n] = '\0';
	if (suffix_shift(suffix, &shift) < 0)
		return -EINVAL;
	if (frac_den > 1 && shift == 0)
		return -EINVAL; /* "1.5" bytes means nothing */
	if (shift && whole > (UINT64_MAX >> shift))
		return -ERANGE;
	uint64_t v = whole << shift;
	if (frac_num) {
		uint64_t f = (frac_num << shift) / frac_den;
		if (v > UINT64_MAX - f)
			return -ERANGE;
		v += f;
	}
	*out = v;
	return 0;
}

int ims_parse_duration(uint64_t *out, const char *s)
{
	uint64_t total = 0;
	const char *p = s;
	int pairs = 0;

	if (!s)
		return -EINVAL;
	while (isspace((unsigned char)*p))
		p++;
	while (*p && !isspace((unsigned char)*p)) {
		uint64_t n = 0, mult;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			if (n > (UINT64_MAX - 9) / 10)
				return -ERANGE;
			n = n * 10 + (uint64_t)(*p - '0');
		}
		switch (*p) {
		case 's':
			mult = 1;
			p++;
			break;
		case 'm':
			mult = 60;
			p++;
			break;
		case 'h':
			mult = 3600;
			p++;
			break;
		case 'd':
			mult = 86400;
			p++;
			break;
		case 'w':
			mult = 604800;
			p++;
			break;
		case '\0':
			if (pairs > 0)
				return -EINVAL; /* "1h30": the unit of 30 is a guess */
			mult = 1;
			break;
		default: return -EINVAL;
		}
		if (n > UINT64_MAX / mult || total > UINT64_MAX - n * mult)
			return -ERANGE;
		total += n * mult;
		pairs++;
	}
	while (isspace((unsigned char)*p))
		p++;
	if (*p || pairs == 0)
		return -EINVAL;
	*out = total;
	return 0;
}

char *ims_format_size(char *buf, size_t len, uint64_t bytes)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	unsigned u = 0;
	double v = (double)bytes;

	while (v >= 1024.0 && u < 6) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else if (v == (double)(uint64_t)v)
		snprintf(buf, len, "%.0f %s", v, units[u]);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

char *ims_format_duration(char *buf, size_t len, uint64_t s)
{
	uint64_t d = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60, sec = s % 60;

	if (d)
		snprintf(buf, len, h ? "%llud%lluh" : "%llud", (unsigned long long)d,
			 (unsigned long long)h);
	else if (h)
		snprintf(buf, len, m ? "%lluh%llum" : "%lluh", (unsigned long long)h,
			 (unsigned long long)m);
	else if (m)
		snprintf(buf, len, sec ? "%llum%llus" : "%llum", (unsigned long long)m,
			 (unsigned long long)sec);
	else
		snprintf(buf, len, "%llus", (unsigned long long)sec);
	return buf;
}

char *ims_format_utc(char *buf, size_t len, int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (t == 0 || !gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "-");
	return buf;
}
