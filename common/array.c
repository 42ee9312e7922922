#include "common/array.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int ims_array__grow(void *vp, size_t *cap, size_t need, size_t elem, size_t min)
{
	void *v, *nv;
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : (min ? min : 1);
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return -ENOMEM;
		ncap *= 2;
	}
	if (elem && ncap > SIZE_MAX / elem)
		return -ENOMEM;
	/* the caller's pointer is typed: read and write it as bytes, not through a void ** */
	memcpy(&v, vp, sizeof(v));
	if (!(nv = realloc(v, ncap * elem)))
		return -ENOMEM;
	memcpy(vp, &nv, sizeof(nv));
	*cap = ncap;
	return 0;
}
