/* Weight width -> the ggml type llama-quantize is asked for (ggml.h). */
#include "quant/ggml.h"

#include <stddef.h>

static const struct {
    int bits;
    const char *type; /* ggml_type_name */
} WIDTHS[] = {{2, "q2_K"}, {3, "q3_K"}, {4, "q4_K"}, {5, "q5_K"},  {6, "q6_K"},
              {7, "q8_0"}, {8, "q8_0"}, {16, "f16"}, {32, "f32"}};

const ba_ggml_type_t *ba_ggml_type_for_bits(int bits) {
    for (size_t i = 0; i < sizeof WIDTHS / sizeof WIDTHS[0]; i++)
        if (WIDTHS[i].bits == bits) return ba_ggml_type_by_name(WIDTHS[i].type);
    return NULL;
}

double ba_ggml_bpw_of_bits(int bits) {
    const ba_ggml_type_t *t = ba_ggml_type_for_bits(bits);
    return t ? ba_ggml_type_bpw(t) : 0.0;
}
