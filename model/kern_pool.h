/* Fast paths of the pool kernels (ops_pool.c). */
#ifndef BA_MODEL_KERN_POOL_H
#define BA_MODEL_KERN_POOL_H

#include "model/kern_conv.h"

/* MaxPool over `planes` planes of x into y for a 1-D/2-D geometry g with
 * dilation 1, values only (no Indices): the output columns whose taps all lie
 * inside the row are taken a row of taps at a time (vector loops), the
 * border ones tap by tap. Each output compares its taps in the generic
 * kernel's order and keeps the first of equal values, so the floats are the
 * same. Returns 0 (nothing written) when g is not such a geometry. */
int ba_kern_maxpool2d(const ba_kern_geom_t *g, const float *x, float *y, int64_t planes);

#endif
