#include "daemon/notify.h"

#include <stdint.h>
#include <stdio.h>

#include <systemd/sd-daemon.h>

#include "common/error.h"
#include "common/log.h"

static void send_state(const char *state)
{
	int r = sd_notify(0, state);
	if (r < 0)
		ims_log_debug("sd_notify(%s): %s", state, ims_strerror(r));
}

void ims_notify_ready(const char *status)
{
	char msg[600];
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status ? status : "");
	send_state(msg);
}

void ims_notify_status(const char *status)
{
	char msg[600];
	snprintf(msg, sizeof(msg), "STATUS=%s", status ? status : "");
	send_state(msg);
}

void ims_notify_reloading(void)
{
	send_state("RELOADING=1\nSTATUS=reloading the tokens and opening the audit log again");
}

void ims_notify_stopping(void)
{
	send_state("STOPPING=1\nSTATUS=stopping: ending the operations in progress");
}

unsigned ims_notify_watchdog_ms(void)
{
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	return usec / 1000 > 0 ? (unsigned)(usec / 1000) : 1;
}

void ims_notify_watchdog(void)
{
	send_state("WATCHDOG=1");
}
