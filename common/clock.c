#include "common/clock.h"

void ims_clock_after_ms(struct timespec *out, uint64_t ms)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	uint64_t ns = (uint64_t)t.tv_nsec + (ms % 1000u) * 1000000u;
	t.tv_sec += (time_t)(ms / 1000u + ns / 1000000000u);
	t.tv_nsec = (long)(ns % 1000000000u);
	*out = t;
}

bool ims_clock_passed(const struct timespec *deadline)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return t.tv_sec > deadline->tv_sec ||
	       (t.tv_sec == deadline->tv_sec && t.tv_nsec >= deadline->tv_nsec);
}

double ims_clock_mono_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int64_t ims_clock_unix_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}
