/* Kernels of the reduce family (see model/ops.h). */
#include "model/ops.h"

const ba_op_def_t ba_ops_reduce[] = {
    {NULL, NULL},
};
