/* libFuzzer: store/crypt.h's unwrapping of a data key on untrusted bytes (an image's metadata
 * value, as RADOS returns it). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/crypt.h"

static ims_crypt_kek *kek(void)
{
	static ims_crypt_kek *k;
	if (!k) {
		char path[] = "/tmp/fuzz-kek-XXXXXX";
		int fd = mkstemp(path);
		if (fd < 0)
			abort();
		static const char hex[] =
			"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
		if (write(fd, hex, strlen(hex)) != (ssize_t)strlen(hex))
			abort();
		close(fd);
		if (ims_crypt_kek_load(&k, path) != 0)
			abort();
		unlink(path);
	}
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[IMS_CRYPT_WRAPPED_MAX + 64];
	uint8_t key[IMS_CRYPT_KEY_LEN];
	if (size >= sizeof(text))
		size = sizeof(text) - 1;
	memcpy(text, data, size);
	text[size] = '\0';
	if (ims_crypt_unwrap(key, kek(), text) == 0) {
		/* only what wrap made under this KEK may unwrap: wrapping it again must work */
		char again[IMS_CRYPT_WRAPPED_MAX];
		if (ims_crypt_wrap(again, kek(), key) != 0 ||
		    ims_crypt_unwrap(key, kek(), again) != 0)
			abort();
	}
	return 0;
}
