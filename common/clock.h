/*
 * common/clock.h: deadlines for pthread_cond_timedwait(), and the two clocks imgstore reads.
 *
 * imgstore's condition variables keep the default clock (no pthread_condattr_setclock()), so a
 * deadline is a CLOCK_REALTIME time:
 *
 *	struct timespec until;
 *	ims_clock_after_ms(&until, interval_ms);
 *	while (!stopping && pthread_cond_timedwait(&cond, &lock, &until) != ETIMEDOUT)
 *		;
 */
#ifndef IMS_COMMON_CLOCK_H
#define IMS_COMMON_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/** Set @p out to the CLOCK_REALTIME time @p ms milliseconds from now. */
void ims_clock_after_ms(struct timespec *out, uint64_t ms);

/** Whether the CLOCK_REALTIME time @p deadline has come. */
bool ims_clock_passed(const struct timespec *deadline);

/** CLOCK_MONOTONIC in seconds: for durations and deadlines that setting the time does not
 *  move (t0 = ims_clock_mono_s(); ... ims_clock_mono_s() - t0). */
double ims_clock_mono_s(void);

/** The time now in milliseconds since the epoch (CLOCK_REALTIME): for the times that names,
 *  records and lags carry. */
int64_t ims_clock_unix_ms(void);

#endif
