/* ggml weight types (see ggml.h). Block sizes and bytes are ggml's
 * (ggml_blck_size, ggml_type_size), checked against libggml-base. */
#include "quant/ggml.h"

#include <stddef.h>

static const ba_ggml_type_t TYPES[] = {
    {"q2_k", 2, 256, 84},  {"q3_k", 3, 256, 110}, {"q4_k", 4, 256, 144},
    {"q5_k", 5, 256, 176}, {"q6_k", 6, 256, 210}, {"q8_0", 7, 32, 34},
    {"q8_0", 8, 32, 34},   {"f16", 16, 1, 2},     {"f32", 32, 1, 4},
};

const ba_ggml_type_t *ba_ggml_type_for_bits(int bits) {
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (TYPES[i].bits == bits) return &TYPES[i];
    return NULL;
}

double ba_ggml_bpw(const ba_ggml_type_t *t) {
    return 8.0 * t->bytes / t->block;
}

double ba_ggml_bpw_of_bits(int bits) {
    const ba_ggml_type_t *t = ba_ggml_type_for_bits(bits);
    return t ? ba_ggml_bpw(t) : 0.0;
}
