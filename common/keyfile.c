/* common/keyfile.c: a 256-bit key from a file only its owner may read (common/keyfile.h). */
#include "common/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/error.h"

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int ims_keyfile_unhex(uint8_t *out, const char *hex, size_t n)
{
	/* a short string ends in its NUL, which is no hex digit: the loop stops there */
	for (size_t i = 0; i < n; i++) {
		int hi = hexval((unsigned char)hex[2 * i]);
		int lo = hi < 0 ? -1 : hexval((unsigned char)hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static const char *skip_space(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

int ims_keyfile_read(uint8_t out[IMS_KEYFILE_LEN], const char *path, const char *what)
{
	char buf[256];
	uint8_t key[IMS_KEYFILE_LEN];
	struct stat st;
	int r = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ims_error_set(-errno, "cannot open %s '%s': %s", what, path,
				     ims_strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return ims_error_set(-EINVAL, "%s '%s' is not a regular file", what, path);
	}
	if (st.st_mode & 077) {
		close(fd);
		return ims_error_set(-EPERM,
				     "%s '%s' may be read by group or others (mode %03o); chmod "
				     "600 it",
				     what, path, (unsigned)(st.st_mode & 0777));
	}
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return ims_error_set(-EIO, "cannot read %s '%s'", what, path);
	buf[n] = '\0';
	const char *p = skip_space(buf);
	r = ims_keyfile_unhex(key, p, IMS_KEYFILE_LEN);
	if (r == 0 && *skip_space(p + 2 * IMS_KEYFILE_LEN))
		r = -EINVAL;
	if (r < 0)
		ims_error_set(r, "%s '%s' must hold a 256-bit key as 64 hex digits", what, path);
	else
		memcpy(out, key, sizeof(key));
	OPENSSL_cleanse(buf, sizeof(buf));
	OPENSSL_cleanse(key, sizeof(key));
	return r;
}
