/*
 * proto/tokens.c: the token file of the RPC server, "ROLE TOKEN [NAME]" a line.
 *
 * Only the SHA-256 of each token is kept in memory, and a presented token is compared by
 * digest, over every entry, so that neither its content nor its length shows in the time a
 * lookup takes. No message ever quotes a field of the file: a field may be a token.
 */
#include "proto/server_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

#define TOKEN_FILE_MAX (1u << 20)

static bool valid_token(const char *s, size_t n)
{
	if (n < IMS_RPC__TOKEN_MIN || n > IMS_RPC__TOKEN_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* Names appear bare in audit lines: keep them to a safe alphabet. */
static bool valid_name(const char *s, size_t n)
{
	if (n == 0 || n > IMS_RPC__NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.' || c == '@' || c == ':'))
			return false;
	}
	return true;
}

int ims_rpc__read_secret(char **out, size_t *out_len, int fd, size_t size, const char *what,
			 const char *path)
{
	char *buf = malloc(size + 1);
	size_t len = 0;
	int r;

	if (!buf)
		return ims_error_set(-ENOMEM, "out of memory reading %s '%s'", what, path);
	while (len < size) {
		ssize_t n = read(fd, buf + len, size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			ims_error_set(r, "cannot read %s '%s': %s", what, path, ims_strerror(r));
			explicit_bzero(buf, size + 1);
			free(buf);
			return r;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	if (out_len)
		*out_len = len;
	return 0;
}

int ims_rpc__open_secret(const char *what, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int r;

	if (fd >= 0)
		return fd;
	r = -errno;
	if (r == -ENOENT)
		return ims_error_set(r, "%s '%s' does not exist", what, path);
	return ims_error_set(r, "cannot open %s '%s': %s", what, path, ims_strerror(r));
}

static int read_file(const char *path, char **out, size_t *out_len)
{
	struct stat st;
	int r = 0;
	int fd = ims_rpc__open_secret("token file", path);

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		ims_error_set(r, "cannot stat token file '%s': %s", path, ims_strerror(r));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = ims_error_set(-EACCES, "token file '%s' is not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077) {
		r = ims_error_set(-EACCES,
				  "token file '%s' has mode %04o: group and others must have no "
				  "access to it (chmod 600 '%s')",
				  path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if ((uint64_t)st.st_size > TOKEN_FILE_MAX) {
		r = ims_error_set(-EINVAL, "token file '%s' is larger than %u bytes", path,
				  TOKEN_FILE_MAX);
		goto out;
	}
	r = ims_rpc__read_secret(out, out_len, fd, (size_t)st.st_size, "token file", path);
out:
	close(fd);
	return r;
}

/* Split @p line (NUL-terminated, no newline) into at most @p max fields. @returns the count,
 * max + 1 when there are more. */
static size_t split(char *line, char **fields, size_t max)
{
	size_t n = 0;
	char *p = line;

	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			return n;
		if (n == max)
			return max + 1;
		fields[n++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (*p)
			*p++ = '\0';
	}
}

int ims_rpc__tokens_load(ims_rpc__tokens **out, const char *path)
{
	ims_rpc__tokens *t = NULL;
	char *text = NULL;
	size_t len = 0, cap = 0;
	unsigned lineno = 0;
	int r;

	r = read_file(path, &text, &len);
	if (r < 0)
		return r;
	t = calloc(1, sizeof(*t));
	if (!t) {
		r = ims_error_set(-ENOMEM, "out of memory reading token file '%s'", path);
		goto out;
	}

	for (char *line = text, *next; line; line = next) {
		char *fields[3];
		size_t nf;
		ims_role role;

		lineno++;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		size_t ll = strlen(line);
		if (ll && line[ll - 1] == '\r')
			line[ll - 1] = '\0';
		char *p = line + strspn(line, " \t");
		if (*p == '\0' || *p == '#')
			continue;

		nf = split(p, fields, 3);
		if (nf < 2 || nf > 3) {
			r = ims_error_set(-EINVAL, "%s:%u: expected 'ROLE TOKEN [NAME]'", path,
					  lineno);
			goto out;
		}
		if (ims_role_parse(&role, fields[0]) < 0) {
			r = ims_error_set(-EINVAL,
					  "%s:%u: the role must be reader, host or admin "
					  "(a line is 'ROLE TOKEN [NAME]')",
					  path, lineno);
			goto out;
		}
		if (!valid_token(fields[1], strlen(fields[1]))) {
			r = ims_error_set(-EINVAL,
					  "%s:%u: a token is %d to %d printable characters without "
					  "spaces",
					  path, lineno, IMS_RPC__TOKEN_MIN, IMS_RPC__TOKEN_MAX);
			goto out;
		}
		if (nf == 3 && !valid_name(fields[2], strlen(fields[2]))) {
			r = ims_error_set(-EINVAL,
					  "%s:%u: a name is 1 to %d letters, digits or '-_.@:'",
					  path, lineno, IMS_RPC__NAME_MAX);
			goto out;
		}

		if (t->n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			ims_rpc__token *v = realloc(t->v, ncap * sizeof(*v));
			if (!v) {
				r = ims_error_set(-ENOMEM, "out of memory reading token file '%s'",
						  path);
				goto out;
			}
			t->v = v;
			cap = ncap;
		}
		ims_rpc__token *e = &t->v[t->n];
		memset(e, 0, sizeof(*e));
		ims_sha256_buf(e->digest, fields[1], strlen(fields[1]));
		e->role = role;
		if (nf == 3)
			snprintf(e->name, sizeof(e->name), "%s", fields[2]);
		else
			snprintf(e->name, sizeof(e->name), "token-%u", lineno);
		for (size_t i = 0; i < t->n; i++) {
			if (memcmp(t->v[i].digest, e->digest, IMS_SHA256_LEN) == 0) {
				r = ims_error_set(
					-EINVAL, "%s:%u: the same token as '%s' on an earlier line",
					path, lineno, t->v[i].name);
				goto out;
			}
		}
		t->n++;
	}

	*out = t;
	t = NULL;
	r = 0;
out:
	explicit_bzero(text, len);
	free(text);
	ims_rpc__tokens_free(t);
	return r;
}

void ims_rpc__tokens_free(ims_rpc__tokens *t)
{
	if (!t)
		return;
	if (t->v)
		explicit_bzero(t->v, t->n * sizeof(*t->v));
	free(t->v);
	free(t);
}

const ims_rpc__token *ims_rpc__tokens_find(const ims_rpc__tokens *t, const char *token, size_t len)
{
	uint8_t digest[IMS_SHA256_LEN];
	size_t found = SIZE_MAX;

	if (!t || !token)
		return NULL;
	ims_sha256_buf(digest, token, len);
	/* Every entry, every byte: no early exit. */
	for (size_t i = 0; i < t->n; i++) {
		unsigned diff = 0;
		for (size_t j = 0; j < IMS_SHA256_LEN; j++)
			diff |= (unsigned)(t->v[i].digest[j] ^ digest[j]);
		/* mask is all ones when diff == 0 */
		size_t mask = (size_t)0 - (size_t)((diff - 1u) >> (sizeof(unsigned) * 8 - 1));
		found = (found & ~mask) | (i & mask);
	}
	explicit_bzero(digest, sizeof(digest));
	return found == SIZE_MAX ? NULL : &t->v[found];
}
