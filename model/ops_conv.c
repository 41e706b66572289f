/* Kernels of the conv family (see model/ops.h). */
#include "model/ops.h"

const ba_op_def_t ba_ops_conv[] = {
    {NULL, NULL},
};
