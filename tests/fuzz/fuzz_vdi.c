/* libFuzzer target: the vdi reader on untrusted bytes (see fuzz_format.h). */
#include "tests/fuzz/fuzz_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_format(data, size, IMS_FORMAT_VDI);
}
