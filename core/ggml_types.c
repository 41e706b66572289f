#include "core/ggml_types.h"

#include <math.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

/* id, name, block, bytes, quant_target, needs_imatrix: ggml/include/ggml.h and ggml/src/ggml.c
 * (type_traits) of the pinned llama.cpp; ids 4, 5, 31-33, 36-38 were removed upstream;
 * GGML_TYPE_COUNT is 43. */
static const ba_ggml_type_t TYPES[] = {
    {0, "f32", 1, 4, 1, 0},         {1, "f16", 1, 2, 1, 0},         {2, "q4_0", 32, 18, 1, 0},
    {3, "q4_1", 32, 20, 1, 0},      {6, "q5_0", 32, 22, 1, 0},      {7, "q5_1", 32, 24, 1, 0},
    {8, "q8_0", 32, 34, 1, 0},      {9, "q8_1", 32, 36, 0, 0},      {10, "q2_K", 256, 84, 1, 0},
    {11, "q3_K", 256, 110, 1, 0},   {12, "q4_K", 256, 144, 1, 0},   {13, "q5_K", 256, 176, 1, 0},
    {14, "q6_K", 256, 210, 1, 0},   {15, "q8_K", 256, 292, 0, 0},   {16, "iq2_xxs", 256, 66, 1, 1},
    {17, "iq2_xs", 256, 74, 1, 1},  {18, "iq3_xxs", 256, 98, 1, 1}, {19, "iq1_s", 256, 50, 1, 1},
    {20, "iq4_nl", 32, 18, 1, 0},   {21, "iq3_s", 256, 110, 1, 0},  {22, "iq2_s", 256, 82, 1, 1},
    {23, "iq4_xs", 256, 136, 1, 0}, {24, "i8", 1, 1, 0, 0},         {25, "i16", 1, 2, 0, 0},
    {26, "i32", 1, 4, 0, 0},        {27, "i64", 1, 8, 0, 0},        {28, "f64", 1, 8, 0, 0},
    {29, "iq1_m", 256, 56, 1, 1},   {30, "bf16", 1, 2, 1, 0},       {34, "tq1_0", 256, 54, 1, 0},
    {35, "tq2_0", 256, 66, 1, 0},   {39, "mxfp4", 32, 17, 1, 0},    {40, "nvfp4", 64, 36, 1, 0},
    {41, "q1_0", 128, 18, 1, 0},    {42, "q2_0", 64, 18, 1, 0},
};
#define N_TYPES ((int)(sizeof TYPES / sizeof TYPES[0]))

int ba_ggml_type_count(void) {
    return N_TYPES;
}

const ba_ggml_type_t *ba_ggml_type_at(int i) {
    return i >= 0 && i < N_TYPES ? &TYPES[i] : NULL;
}

const ba_ggml_type_t *ba_ggml_type_by_id(int id) {
    for (int i = 0; i < N_TYPES; i++)
        if (TYPES[i].id == id) return &TYPES[i];
    return NULL;
}

const ba_ggml_type_t *ba_ggml_type_by_name(const char *name) {
    if (!name) return NULL;
    for (int i = 0; i < N_TYPES; i++)
        if (strcasecmp(TYPES[i].name, name) == 0) return &TYPES[i];
    return NULL;
}

double ba_ggml_type_bpw(const ba_ggml_type_t *t) {
    return 8.0 * t->bytes / t->block;
}

ba_status ba_ggml_type_nbytes(const ba_ggml_type_t *t, int n_dims, const int64_t *ne, uint64_t *out,
                              ba_error *err) {
    *out = 0;
    if (n_dims < 1 || n_dims > 4)
        return ba_error_set(err, BA_ERR_INPUT, "%d dimensions (1 to 4 allowed)", n_dims);
    for (int d = 0; d < n_dims; d++)
        if (ne[d] < 0)
            return ba_error_set(err, BA_ERR_INPUT, "negative size ne[%d] = %lld", d, (long long)ne[d]);
    if (ne[0] % t->block != 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s needs ne0 a multiple of %d, not %lld", t->name, t->block,
                            (long long)ne[0]);
    uint64_t n = (uint64_t)(ne[0] / t->block);
    if (__builtin_mul_overflow(n, (uint64_t)t->bytes, &n)) goto overflow;
    for (int d = 1; d < n_dims; d++)
        if (__builtin_mul_overflow(n, (uint64_t)ne[d], &n)) goto overflow;
    *out = n;
    return BA_OK;
overflow:
    return ba_error_set(err, BA_ERR_INPUT, "tensor size overflows 64 bits");
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

int ba_ggml_tensor_quantizable(const char *name, int n_dims) {
    static const char *const never[] = {"_norm.weight",
                                        "ffn_gate_inp.weight",
                                        "ssm_conv1d.weight",
                                        "shortconv.conv.weight",
                                        "time_mix_first.weight",
                                        "time_mix_w0.weight",
                                        "time_mix_w1.weight",
                                        "time_mix_w2.weight",
                                        "time_mix_v0.weight",
                                        "time_mix_v1.weight",
                                        "time_mix_v2.weight",
                                        "time_mix_a0.weight",
                                        "time_mix_a1.weight",
                                        "time_mix_a2.weight",
                                        "time_mix_g1.weight",
                                        "time_mix_g2.weight",
                                        "time_mix_decay_w1.weight",
                                        "time_mix_decay_w2.weight",
                                        "time_mix_lerp_fused.weight",
                                        "attn_rel_b.weight"};
    if (!name || n_dims < 2 || !ends_with(name, "weight")) return 0;
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (strstr(name, never[i])) return 0;
    return strcmp(name, "position_embd.weight") != 0 && strcmp(name, "token_types.weight") != 0;
}

int ba_ggml_candidates(const char *name, int64_t ne0, int have_imatrix, int *out, int cap) {
    int exempt = name && (strcmp(name, "token_embd.weight") == 0 || strcmp(name, "output.weight") == 0);
    int n = 0;
    for (int i = 0; i < N_TYPES; i++) {
        const ba_ggml_type_t *t = &TYPES[i];
        if (!t->quant_target || ne0 <= 0 || ne0 % t->block != 0) continue;
        if (t->needs_imatrix && !have_imatrix && !exempt) continue;
        if (n < cap) out[n] = t->id;
        n++;
    }
    return n;
}

const ba_ggml_type_t *ba_ggml_type_fallback(const ba_ggml_type_t *t, int64_t ne0) {
    /* target -> fallback, by name: llama-quant.cpp's tensor_type_fallback */
    static const char *const FALLBACK[][2] = {
        {"iq1_s", "iq4_nl"}, {"iq1_m", "iq4_nl"},   {"iq2_xxs", "iq4_nl"}, {"iq2_xs", "iq4_nl"},
        {"iq2_s", "iq4_nl"}, {"iq3_xxs", "iq4_nl"}, {"iq3_s", "iq4_nl"},   {"iq4_xs", "iq4_nl"},
        {"q2_0", "q4_0"},    {"q2_K", "q4_0"},      {"q3_K", "q4_0"},      {"tq1_0", "q4_0"},
        {"tq2_0", "q4_0"},   {"q4_K", "q5_0"},      {"q5_K", "q5_1"},      {"q6_K", "q8_0"}};
    if (!t || ne0 <= 0) return NULL;
    if (ne0 % t->block == 0) return t;
    for (size_t i = 0; i < sizeof FALLBACK / sizeof FALLBACK[0]; i++)
        if (strcmp(FALLBACK[i][0], t->name) == 0) {
            const ba_ggml_type_t *f = ba_ggml_type_by_name(FALLBACK[i][1]);
            return ne0 % f->block == 0 ? f : ba_ggml_type_by_name("f16");
        }
    return NULL;
}

/* Width -> the type llama-quantize is asked for (lowercase, as written for llama-quantize, which
 * reads type names case-insensitively). The first width of a type is the one its name stands for. */
static const struct {
    int bits;
    const char *type;
} WIDTHS[] = {{2, "q2_k"}, {3, "q3_k"}, {4, "q4_k"}, {5, "q5_k"}, {6, "q6_k"},
              {8, "q8_0"}, {7, "q8_0"}, {16, "f16"}, {32, "f32"}};
#define N_WIDTHS ((int)(sizeof WIDTHS / sizeof WIDTHS[0]))

const char *ba_ggml_type_name_for_bits(int bits) {
    for (int i = 0; i < N_WIDTHS; i++)
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

int ba_ggml_bits_of_type_name(const char *name) {
    if (!ba_ggml_type_by_name(name)) return -1;
    for (int i = 0; i < N_WIDTHS; i++)
        if (strcasecmp(WIDTHS[i].type, name) == 0) return WIDTHS[i].bits;
    return 0;
}

uint64_t ba_ggml_budget_bytes(uint64_t n_weights, double bpw) {
    if (!(bpw > 0)) return 0;
    double b = floor((double)n_weights * bpw / 8.0);
    return b >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)b;
}

double ba_ggml_bpw_of(uint64_t bytes, uint64_t n_weights) {
    return n_weights ? 8.0 * (double)bytes / (double)n_weights : 0.0;
}
