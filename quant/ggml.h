/* The ggml tensor types llama.cpp stores weights in: name, block size and
 * bytes per block (ggml_blck_size / ggml_type_size of libggml), so the real
 * bits per weight a type costs (Q4_K 4.5, not 4). The one table of them. */
#ifndef BA_QUANT_GGML_H
#define BA_QUANT_GGML_H

typedef struct ba_ggml_type {
    const char *name; /* lowercase, as llama-quantize's --tensor-type takes it */
    int bits;         /* the bitalloc weight width it stands for */
    int block;        /* weights per block */
    int bytes;        /* bytes per block (scales and mins included) */
} ba_ggml_type_t;

/* The type llama-quantize gets for a weight width: 2 q2_k, 3 q3_k, 4 q4_k,
 * 5 q5_k, 6 q6_k, 7 and 8 q8_0 (7 has no ggml type: the next wider one,
 * never fewer bits), 16 f16, 32 f32. NULL for any other width. */
const ba_ggml_type_t *ba_ggml_type_for_bits(int bits);

/* Real bits per weight: 8 * bytes / block (Q2_K 2.625, Q3_K 3.4375, Q4_K 4.5,
 * Q5_K 5.5, Q6_K 6.5625, Q8_0 8.5, F16 16, F32 32). */
double ba_ggml_bpw(const ba_ggml_type_t *t);

/* Real bits per weight of a width (ba_ggml_type_for_bits), or 0 when none. */
double ba_ggml_bpw_of_bits(int bits);

#endif
