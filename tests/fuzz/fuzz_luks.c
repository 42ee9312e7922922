/*
 * libFuzzer target: LUKS-encrypted qcow2 (store/format_luks.c) with the passphrase the seeds
 * were made with. An input that starts with the qcow2 magic is an image, read as
 * fuzz_format.h reads the others; any other input is the LUKS header's area (the header and
 * its key material), opened with the passphrase, and then sectors encrypted and decrypted
 * back with the key it found. The PBKDF2 ceiling is low here (a slot of qemu-img's with
 * iter-time 1 passes), so that an execution stays short.
 */
#include "store/format_internal.h"
#include "tests/fuzz/fuzz_format.h"

#define FUZZ_PASS     "imgstore fuzz"
#define FUZZ_MAX_ITER 16384u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const ims_format_secret secret = {FUZZ_PASS, sizeof(FUZZ_PASS) - 1, FUZZ_MAX_ITER};
	static uint8_t buf[4096], copy[4096];
	ims_format__luks *l = NULL;
	ims_source_mem_ctx ctx;
	ims_source src;
	size_t n = size < sizeof(buf) ? size : sizeof(buf);

	if (size >= 4 && memcmp(data, "QFI\xfb", 4) == 0)
		return fuzz_format_secret(data, size, IMS_FORMAT_QCOW2, &secret);
	ims_source_mem(&src, &ctx, data, size);
	ims_error_clear();
	if (ims_format__luks_open(&l, &src, 0, size, FUZZ_PASS, sizeof(FUZZ_PASS) - 1,
				  FUZZ_MAX_ITER) < 0) {
		/* every failure says why, on one line */
		fuzz_check(ims_error_last_code() < 0 && strchr(ims_error_last(), '\n') == NULL);
		return 0;
	}
	memset(buf, 0x5a, sizeof(buf));
	memcpy(buf, data, n);
	memcpy(copy, buf, sizeof(buf));
	fuzz_check(ims_format__luks_encrypt(l, 12345, buf, sizeof(buf)) == 0);
	fuzz_check(ims_format__luks_decrypt(l, 12345, buf, sizeof(buf)) == 0);
	fuzz_check(memcmp(buf, copy, sizeof(buf)) == 0);
	ims_format__luks_free(l);
	return 0;
}
