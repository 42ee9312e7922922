/*
 * common/prom.h: the Prometheus text exposition format, for /metrics.
 *
 * A label value is a quoted string in which backslash, double quote and line feed are
 * escaped (\\, \", \n); anything else is written as it is. A value built from a name that a
 * client chose (an image named a"b) must go through ims_prom_escape(), or one name breaks the
 * whole scrape.
 */
#ifndef IMS_COMMON_PROM_H
#define IMS_COMMON_PROM_H

#include <stddef.h>

/* Room for any value of @p n bytes, escaped, with its NUL. */
#define IMS_PROM_ESCAPED_MAX(n) (2 * (n) + 1)

/**
 * Write @p value escaped as a label value (without the quotes) into @p buf of @p len bytes.
 * A value too long for @p buf is cut before an escape, never inside one.
 *
 * @returns @p buf ("" if @p value is NULL).
 */
char *ims_prom_escape(char *buf, size_t len, const char *value);

#endif
