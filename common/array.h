/*
 * common/array.h: room in a growable array, the one way to grow one.
 *
 *	typedef struct { int64_t *v; size_t n, cap; } times;
 *	if ((r = ims_array_grow(t->v, t->cap, t->n + 1, 16)) < 0)
 *		return r;
 *	t->v[t->n++] = x;
 *
 * The array keeps its own element pointer, count and capacity (libgit2's git_array keeps them
 * together; here the caller's struct does, so that typed fields stay typed).
 */
#ifndef IMS_COMMON_ARRAY_H
#define IMS_COMMON_ARRAY_H

#include <stddef.h>

/**
 * Make room for @p need elements in the array @p v of capacity @p cap (both lvalues): the
 * capacity doubles, from @p min, until it is enough. Nothing changes when it already is.
 *
 * @returns 0, -ENOMEM (the array as it was) if the memory cannot be had or its size
 *          overflows.
 */
#define ims_array_grow(v, cap, need, min)                                                          \
	ims_array__grow((void *)&(v), &(cap), (need), sizeof(*(v)), (min))

int ims_array__grow(void *vp, size_t *cap, size_t need, size_t elem, size_t min);

#endif
