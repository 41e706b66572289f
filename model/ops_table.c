/* Looks an ONNX op_type up across the family tables of ops.h. */
#include "model/ops.h"

#include <string.h>

static const ba_op_def_t *const families[] = {
    ba_ops_conv, ba_ops_matmul, ba_ops_pool, ba_ops_norm, ba_ops_quant,
    ba_ops_elementwise, ba_ops_shape, ba_ops_reduce, ba_ops_control,
    ba_ops_rnn,
};

const ba_op_def_t *ba_op_lookup(const char *op_type, const char *domain) {
    if (domain && domain[0] && strcmp(domain, "ai.onnx") != 0) return NULL;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const ba_op_def_t *d = families[f]; d->name; d++)
            if (strcmp(d->name, op_type) == 0) return d;
    return NULL;
}
