/*
 * libFuzzer: the small text parsers of tamper evidence and snapshot schedules on untrusted
 * bytes: a schedule's --keep (from an RPC request, replicator/snap_retention.c), a chained
 * audit log line (common/chain.h, a file anyone may have edited) and a scheduled snapshot's
 * name (from a cluster).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/chain.h"
#include "replicator/snapsched.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	ims_snapsched_keep k = {0, 0, 0};
	if (ims_snapsched_keep_parse(&k, s) == 0) {
		char buf[96];
		ims_snapsched_keep again;
		ims_snapsched_keep_format(buf, sizeof(buf), &k);
		if (ims_snapsched_keep_parse(&again, buf) != 0 || again.hourly != k.hourly ||
		    again.daily != k.daily || again.weekly != k.weekly)
			abort(); /* what we write we must read back the same */
	}
	(void)ims_snapsched_snap_time(s);
	ims_chain_state st = IMS_CHAIN_STATE_INIT;
	size_t start = 0;
	for (size_t i = 0; i <= size; i++) {
		if (i == size || data[i] == '\n') {
			(void)ims_chain_check(&st, (const char *)data + start, i - start,
					      start == 0);
			start = i + 1;
		}
	}
	free(s);
	return 0;
}
