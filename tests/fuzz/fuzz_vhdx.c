/*
 * libFuzzer target: the vhdx reader on untrusted bytes (see fuzz_format.h).
 *
 * A VHDX's regions lie at 1 MiB and after, so an image is megabytes of zeros around a few
 * tables: too large to fuzz well as it is. The input is the image squeezed
 * (compact-vhdx.py --squeeze): its first 320 KiB (the identifier, the headers and the region
 * tables) at 0, the next 64 KiB at 1 MiB (where the seeds' BAT is), the next 128 KiB at 2 MiB
 * (their metadata) and the rest at 3 MiB (their data), zeros between.
 */
#include "tests/fuzz/fuzz_format.h"

#define KiB (1u << 10)
#define MiB (1u << 20)

static const struct {
	size_t in, len, at;
} segs[] = {
	{0, 320 * KiB, 0},
	{320 * KiB, 64 * KiB, 1 * MiB},
	{384 * KiB, 128 * KiB, 2 * MiB},
	{512 * KiB, 1 * MiB, 3 * MiB}, /* the fuzzer's max_len is 1 MiB: the rest fits */
};

static uint8_t file[4 * MiB];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t end = 0;

	memset(file, 0, sizeof(file));
	for (size_t i = 0; i < sizeof(segs) / sizeof(segs[0]) && size > segs[i].in; i++) {
		size_t n = size - segs[i].in < segs[i].len ? size - segs[i].in : segs[i].len;
		memcpy(file + segs[i].at, data + segs[i].in, n);
		end = segs[i].at + n;
	}
	return fuzz_format(file, end, IMS_FORMAT_VHDX);
}
