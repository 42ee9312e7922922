#include "common/ratelimit.h"

#include <time.h>

void ims_ratelimit_init(ims_ratelimit *rl, uint64_t rate, uint64_t burst)
{
	pthread_mutex_init(&rl->lock, NULL);
	rl->rate = rate;
	rl->burst = burst ? burst : rate;
	rl->tokens = (double)rl->burst;
	rl->last_ns = -1;
}

void ims_ratelimit_destroy(ims_ratelimit *rl)
{
	pthread_mutex_destroy(&rl->lock);
}

int64_t ims_ratelimit_reserve(ims_ratelimit *rl, uint64_t bytes, int64_t now_ns)
{
	if (rl->rate == 0)
		return 0;
	pthread_mutex_lock(&rl->lock);
	if (rl->last_ns >= 0 && now_ns > rl->last_ns) {
		rl->tokens += (double)(now_ns - rl->last_ns) * (double)rl->rate / 1e9;
		if (rl->tokens > (double)rl->burst)
			rl->tokens = (double)rl->burst;
	}
	if (rl->last_ns < 0 || now_ns > rl->last_ns)
		rl->last_ns = now_ns;
	rl->tokens -= (double)bytes;
	double deficit = rl->tokens < 0 ? -rl->tokens : 0;
	pthread_mutex_unlock(&rl->lock);
	return (int64_t)(deficit * 1e9 / (double)rl->rate);
}

void ims_ratelimit_take(ims_ratelimit *rl, uint64_t bytes)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t wait =
		ims_ratelimit_reserve(rl, bytes, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
	if (wait <= 0)
		return;
	ts.tv_sec = wait / 1000000000;
	ts.tv_nsec = wait % 1000000000;
	while (nanosleep(&ts, &ts) != 0)
		;
}
