#include "common/error.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_msg[IMS_ERROR_MSG_MAX];
static _Thread_local int last_code;
static _Thread_local bool have_msg;
static _Thread_local char strerror_buf[128];

int ims_error_setv(int err, const char *fmt, va_list ap)
{
	char msg[IMS_ERROR_MSG_MAX];
	if (err > 0)
		err = -err;
	/* Formatted apart first: an argument may be ims_error_last(), this very buffer. */
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* The message is one line: a newline would split a log record in two. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	memcpy(last_msg, msg, sizeof(last_msg));
	last_code = err;
	have_msg = true;
	return err;
}

int ims_error_set(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err = ims_error_setv(err, fmt, ap);
	va_end(ap);
	return err;
}

int ims_error_set_default(int err, const char *fmt, ...)
{
	va_list ap;

	if (err > 0)
		err = -err;
	if (have_msg)
		return err;
	va_start(ap, fmt);
	err = ims_error_setv(err, fmt, ap);
	va_end(ap);
	return err;
}

int ims_error_wrap(int err, const char *fmt, ...)
{
	char what[IMS_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return ims_error_set(err, "%s: %s", what, ims_error_last());
}

void ims_error_save(ims_error_saved *s)
{
	memcpy(s->msg, last_msg, sizeof(s->msg));
	s->code = last_code;
	s->have = have_msg;
}

void ims_error_restore(const ims_error_saved *s)
{
	memcpy(last_msg, s->msg, sizeof(last_msg));
	last_code = s->code;
	have_msg = s->have;
}

const char *ims_error_last(void)
{
	if (have_msg)
		return last_msg;
	if (last_code)
		return ims_strerror(last_code);
	return "unknown error";
}

int ims_error_last_code(void)
{
	return last_code;
}

void ims_error_clear(void)
{
	have_msg = false;
	last_code = 0;
	last_msg[0] = '\0';
}

const char *ims_strerror(int err)
{
	if (err < 0)
		err = -err;
	/* librados and librbd say so (Ceph's EBLOCKLISTED is ESHUTDOWN); the libc's words name
	 * no cause an operator would look for */
	if (err == ESHUTDOWN)
		return "this client was blocklisted by the cluster (imgstored connects a new one "
		       "at "
		       "its next probe of the site)";
	/* GNU strerror_r may return a static string instead of filling the buffer. */
	const char *s = strerror_r(err, strerror_buf, sizeof(strerror_buf));
	return s ? s : "unknown error";
}
