/*
 * common/units.h: sizes and durations as people write them ("10G", "512MiB", "30s", "1h30m").
 */
#ifndef IMS_COMMON_UNITS_H
#define IMS_COMMON_UNITS_H

#include <stddef.h>
#include <stdint.h>

/**
 * Parse a size in bytes: a whole number with an optional binary suffix K, M, G, T, P (also
 * written KB/KiB...), case-insensitive: "4096", "64K", "10G", "1.5T" (a fraction is allowed
 * with a suffix and rounded down to a byte).
 *
 * @returns -EINVAL if @p s is not a size, -ERANGE if it does not fit in 64 bits.
 */
int ims_parse_size(uint64_t *out, const char *s);

/**
 * Parse a duration in seconds: a sequence of number-unit pairs with units s, m, h, d, w
 * ("30s", "5m", "1h30m", "2d"); a bare number is seconds.
 *
 * @returns -EINVAL if @p s is not a duration, -ERANGE if it overflows.
 */
int ims_parse_duration(uint64_t *out, const char *s);

/** Write @p bytes the short way ("512 B", "1.5 GiB") into @p buf; returns @p buf. */
char *ims_format_size(char *buf, size_t len, uint64_t bytes);

/** Unix time @p t as UTC in ISO 8601 ("2026-12-03T07:04:01Z"); "-" for 0. Returns @p buf. */
char *ims_format_utc(char *buf, size_t len, int64_t t);

/** Write @p seconds the short way ("45s", "5m", "1h30m", "2d3h") into @p buf; returns @p buf. */
char *ims_format_duration(char *buf, size_t len, uint64_t seconds);

#endif
