/*
 * common/clock.h: deadlines for pthread_cond_timedwait().
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

#endif
