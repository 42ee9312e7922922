#include "common/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static ims_log_level log_level = IMS_LOG_INFO;
static ims_log_sink log_sink = IMS_LOG_STDERR;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

void ims_log_set_level(ims_log_level level)
{
	log_level = level;
}

ims_log_level ims_log_get_level(void)
{
	return log_level;
}

void ims_log_set_sink(ims_log_sink sink, const char *ident)
{
	if (log_sink == IMS_LOG_SYSLOG && sink != IMS_LOG_SYSLOG)
		closelog();
	if (sink == IMS_LOG_SYSLOG)
		openlog(ident ? ident : "imgstore", LOG_PID, LOG_DAEMON);
	log_sink = sink;
}

bool ims_log_stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	uintmax_t dev, ino;
	struct stat st;
	if (!e || sscanf(e, "%" SCNuMAX ":%" SCNuMAX, &dev, &ino) != 2 ||
	    fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
}

int ims_log_parse_level(ims_log_level *out, const char *s)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (ims_log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warn") == 0) {
		*out = IMS_LOG_WARNING;
		return 0;
	}
	return -EINVAL;
}

const char *ims_log_level_name(ims_log_level level)
{
	if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
		return "?";
	return level_names[level];
}

bool ims_log_enabled(ims_log_level level)
{
	return level <= log_level;
}

void ims_log(ims_log_level level, const char *fmt, ...)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char msg[2048];
	va_list ap;

	if (!ims_log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';

	if (log_sink == IMS_LOG_SYSLOG) {
		syslog(prio[level], "%s", msg);
		return;
	}
	if (log_sink == IMS_LOG_JOURNAL) {
		fprintf(stderr, "<%d>%-7s %s\n", prio[level], level_names[level], msg);
		return;
	}

	struct timespec ts;
	struct tm tm;
	char when[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One fprintf per record: stdio locks the stream, so lines from threads do not mix. */
	fprintf(stderr, "%s.%03ldZ %-7s %s\n", when, ts.tv_nsec / 1000000L, level_names[level],
		msg);
}
