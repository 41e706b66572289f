/* The ggml tensor type llama-quantize gets for each bitalloc weight width, and
 * so the real bits per weight that width costs there (Q4_K 4.5, not 4). The
 * types themselves (block sizes, bytes) are core/ggml_types.h's one table. */
#ifndef BA_QUANT_GGML_H
#define BA_QUANT_GGML_H

#include "core/ggml_types.h"

/* The type for a weight width: 2 q2_K, 3 q3_K, 4 q4_K, 5 q5_K, 6 q6_K, 7 and
 * 8 q8_0 (7 has no ggml type: the next wider one, never fewer bits), 16 f16,
 * 32 f32. NULL for any other width. */
const ba_ggml_type_t *ba_ggml_type_for_bits(int bits);
/* Its name in lowercase ("q4_k"), as the llama export writes it; NULL likewise. */
const char *ba_ggml_type_name_for_bits(int bits);

/* Real bits per weight of a width (Q2_K 2.625, Q3_K 3.4375, Q4_K 4.5, Q5_K 5.5,
 * Q6_K 6.5625, Q8_0 8.5, F16 16, F32 32), or 0 when it has no type. */
double ba_ggml_bpw_of_bits(int bits);

#endif
