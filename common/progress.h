/* common/progress.h: how long work reports its progress, and how it is cancelled. */
#ifndef IMS_COMMON_PROGRESS_H
#define IMS_COMMON_PROGRESS_H

#include <stdint.h>

/** Progress of long work; return non-zero to cancel it (the work then fails -ECANCELED). */
typedef int (*ims_progress_fn)(void *ctx, uint64_t done, uint64_t total);

#endif
