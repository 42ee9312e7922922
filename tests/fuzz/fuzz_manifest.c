/* libFuzzer: tier/manifest.h's parser and unsealer on untrusted bytes (what a bucket returns). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tier/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const ims_seal_key key = {{1}};
	ims_manifest *m = NULL;
	uint8_t *plain = NULL;
	size_t plen = 0;
	if (ims_manifest_parse(&m, (const char *)data, size) == 0) {
		char *text = NULL;
		size_t len = 0;
		if (ims_manifest_encode(&text, &len, m) == 0) {
			ims_manifest *again = NULL;
			if (ims_manifest_parse(&again, text, len) != 0)
				abort(); /* what we write we must read */
			ims_manifest_free(again);
			free(text);
		}
		ims_manifest_free(m);
	}
	if (ims_unseal(&plain, &plen, &key, "manifests/x", data, size, 1 << 20) == 0)
		free(plain);
	return 0;
}
