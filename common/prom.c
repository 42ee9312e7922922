#include "common/prom.h"

char *ims_prom_escape(char *buf, size_t len, const char *value)
{
	size_t o = 0;

	if (!len)
		return buf;
	for (const char *p = value ? value : ""; *p; p++) {
		const char *esc = *p == '\\'   ? "\\\\"
				  : *p == '"'  ? "\\\""
				  : *p == '\n' ? "\\n"
					       : NULL;
		size_t n = esc ? 2 : 1;
		if (o + n >= len)
			break;
		if (esc) {
			buf[o++] = esc[0];
			buf[o++] = esc[1];
		} else {
			buf[o++] = *p;
		}
	}
	buf[o] = '\0';
	return buf;
}
