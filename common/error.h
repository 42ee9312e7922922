/*
 * common/error.h: the error convention of imgstore.
 *
 * Functions return 0 or a negative errno. Where an error starts, the code that detects it
 * sets a one-line human message in thread-local storage with ims_error_set(); callers up the
 * stack return the errno unchanged and never overwrite the message. The daemon and the CLI
 * read it once, where the error is handled, with ims_error_last().
 */
#ifndef IMS_COMMON_ERROR_H
#define IMS_COMMON_ERROR_H

#include <stdarg.h>
#include <stdbool.h>

#define IMS_ERROR_MSG_MAX 512

/**
 * Set the thread's error message and return @p err, so that a site reads
 * `return ims_error_set(-ENOENT, "no image '%s'", name);`.
 *
 * @param err a negative errno; a positive value is negated.
 * @returns the negative errno.
 */
int ims_error_set(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** ims_error_set() with a va_list. */
int ims_error_setv(int err, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/**
 * Say where an error happened, in front of the message set deeper down:
 * `return ims_error_wrap(r, "cannot promote '%s/%s' on site '%s'", pool, image, site);`
 * gives "cannot promote 'rbd/vm1' on site 'b': <what the step said>". ims_error_set() may also
 * take ims_error_last() as an argument, for a cause in the middle of its sentence.
 *
 * @returns the negative errno.
 */
int ims_error_wrap(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** The thread's message, kept across a clean-up that may set its own (ims_error_save()). */
typedef struct {
	char msg[IMS_ERROR_MSG_MAX];
	int code;
	bool have;
} ims_error_saved;

/** Keep the thread's message before undoing a failed step, and put it back after with
 *  ims_error_restore(): the caller reports why the step failed, not how the undo went. */
void ims_error_save(ims_error_saved *s);
void ims_error_restore(const ims_error_saved *s);

/**
 * Set a message only when the thread has none since the last ims_error_clear(), so that
 * a generic fallback never replaces the precise message set deeper down.
 *
 * @returns the negative errno.
 */
int ims_error_set_default(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * The thread's last message. When none was set it falls back to strerror() of the last errno
 * passed to ims_error_set(), or to "unknown error".
 *
 * @returns a borrowed string, valid until the next ims_error_* call on this thread.
 */
const char *ims_error_last(void);

/** The errno that went with the last message, 0 when none. */
int ims_error_last_code(void);

/** Forget the thread's message, before an operation whose error will be reported. */
void ims_error_clear(void);

/**
 * A message for any negative errno, for callers that did not get one from ims_error_last():
 * strerror() of it, thread-safe; ESHUTDOWN (Ceph's EBLOCKLISTED) says the client was blocklisted.
 *
 * @returns a borrowed string in thread-local storage.
 */
const char *ims_strerror(int err);

#endif
