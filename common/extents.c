#include "common/extents.h"

#include <stdlib.h>

#include "common/array.h"

int ims_extents_add(ims_extents *l, uint64_t off, uint64_t len, bool data)
{
	ims_extents_item *last = l->n ? &l->v[l->n - 1] : NULL;
	if (last && last->data == data && last->off + last->len == off) {
		last->len += len;
		return 0;
	}
	int r = ims_array_grow(l->v, l->cap, l->n + 1, 256);
	if (r < 0)
		return r;
	l->v[l->n++] = (ims_extents_item){off, len, data};
	return 0;
}

int ims_extents_diff_all(uint64_t off, size_t len, int exists, void *l)
{
	return ims_extents_add(l, off, len, exists != 0);
}

int ims_extents_diff_data(uint64_t off, size_t len, int exists, void *l)
{
	return exists ? ims_extents_add(l, off, len, true) : 0;
}

uint64_t ims_extents_bytes(const ims_extents *l)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < l->n; i++)
		sum += l->v[i].len;
	return sum;
}

void ims_extents_free(ims_extents *l)
{
	if (!l)
		return;
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}
