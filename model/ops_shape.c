/* Kernels of the shape family (see model/ops.h). */
#include "model/ops.h"

const ba_op_def_t ba_ops_shape[] = {
    {NULL, NULL},
};
