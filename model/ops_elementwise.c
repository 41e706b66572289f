/* Kernels of the elementwise family (see model/ops.h). */
#include "model/ops.h"

const ba_op_def_t ba_ops_elementwise[] = {
    {NULL, NULL},
};
