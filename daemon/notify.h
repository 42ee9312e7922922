/*
 * systemd's service notification protocol (sd_notify(3)) for imgstored run as a Type=notify
 * unit: READY=1 once the listeners are up and the daemon's own site answers, STATUS= lines an
 * operator sees in `systemctl status`, RELOADING=1 / STOPPING=1 around a reload and a stop,
 * and the watchdog's keep-alive. Every call is a no-op when the daemon was not started by
 * systemd (no NOTIFY_SOCKET in its environment).
 */
#ifndef IMS_DAEMON_NOTIFY_H
#define IMS_DAEMON_NOTIFY_H

#include <stdbool.h>

/** Tell the service manager the daemon serves, with a status line. */
void ims_notify_ready(const char *status);

/** A status line only (while waiting for the site, say why). */
void ims_notify_status(const char *status);

/** A reload (SIGHUP) begins; ims_notify_ready() ends it. */
void ims_notify_reloading(void);

/** The daemon stops. */
void ims_notify_stopping(void);

/**
 * The watchdog's period (WatchdogSec= of the unit) in milliseconds, 0 if none: the daemon
 * calls ims_notify_watchdog() at least twice per period.
 */
unsigned ims_notify_watchdog_ms(void);

/** The watchdog's keep-alive. */
void ims_notify_watchdog(void);

#endif
