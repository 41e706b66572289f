/* Weight width -> the ggml type llama-quantize is asked for (ggml.h). */
#include "quant/ggml.h"

#include <stddef.h>

static const struct {
    int bits;
    const char *type; /* lowercase, as written for llama-quantize (it reads type names case-insensitively) */
} WIDTHS[] = {{2, "q2_k"}, {3, "q3_k"}, {4, "q4_k"}, {5, "q5_k"}, {6, "q6_k"},
              {7, "q8_0"}, {8, "q8_0"}, {16, "f16"}, {32, "f32"}};

const char *ba_ggml_type_name_for_bits(int bits) {
    for (size_t i = 0; i < sizeof WIDTHS / sizeof WIDTHS[0]; i++)
        if (WIDTHS[i].bits == bits) return WIDTHS[i].type;
    return NULL;
}

const ba_ggml_type_t *ba_ggml_type_for_bits(int bits) {
    const char *name = ba_ggml_type_name_for_bits(bits);
    return name ? ba_ggml_type_by_name(name) : NULL;
}

double ba_ggml_bpw_of_bits(int bits) {
    const ba_ggml_type_t *t = ba_ggml_type_for_bits(bits);
    return t ? ba_ggml_type_bpw(t) : 0.0;
}
