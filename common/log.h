/*
 * common/log.h: leveled logging to stderr or syslog.
 *
 * Library modules log at debug only; the daemon and the CLI log once where an error is
 * handled, with names in single quotes. The level and the sink are the only globals.
 */
#ifndef IMS_COMMON_LOG_H
#define IMS_COMMON_LOG_H

#include <stdbool.h>

typedef enum {
	IMS_LOG_ERROR = 0,
	IMS_LOG_WARNING = 1,
	IMS_LOG_INFO = 2,
	IMS_LOG_DEBUG = 3,
} ims_log_level;

typedef enum {
	IMS_LOG_STDERR = 0,
	IMS_LOG_SYSLOG = 1,
	IMS_LOG_JOURNAL = 2, /* stderr read by journald: "<N>" priority prefixes, no time */
} ims_log_sink;

/** Set the most verbose level written; the default is IMS_LOG_INFO. */
void ims_log_set_level(ims_log_level level);
ims_log_level ims_log_get_level(void);

/**
 * Send records to stderr (the default, one line each with time and level), to stderr for
 * journald (each line prefixed with its syslog priority, "<3>" for an error, which journald
 * strips and records as the entry's PRIORITY) or to syslog under @p ident.
 */
void ims_log_set_sink(ims_log_sink sink, const char *ident);

/**
 * Whether stderr is a stream to journald (systemd says so in $JOURNAL_STREAM, the device and
 * inode of that stream): then IMS_LOG_JOURNAL makes each line keep its priority.
 */
bool ims_log_stderr_is_journal(void);

/**
 * Parse "error", "warning", "info" or "debug".
 *
 * @returns -EINVAL if @p s names no level.
 */
int ims_log_parse_level(ims_log_level *out, const char *s);

const char *ims_log_level_name(ims_log_level level);

/** True when records at @p level are written: use it to skip costly formatting. */
bool ims_log_enabled(ims_log_level level);

void ims_log(ims_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ims_log_error(...)   ims_log(IMS_LOG_ERROR, __VA_ARGS__)
#define ims_log_warning(...) ims_log(IMS_LOG_WARNING, __VA_ARGS__)
#define ims_log_info(...)    ims_log(IMS_LOG_INFO, __VA_ARGS__)
#define ims_log_debug(...)                                                                         \
	do {                                                                                       \
		if (ims_log_enabled(IMS_LOG_DEBUG))                                                \
			ims_log(IMS_LOG_DEBUG, __VA_ARGS__);                                       \
	} while (0)

#endif
