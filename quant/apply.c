/* Plan application: activation targets and their fake-quant hook, and the
 * quantized ONNX files. The writers get, per layer, the very tensors
 * ba_quant_weight makes for the evaluation (Q_b(W), codes, scales, zero
 * points), so a written model computes what `eval --plan` measured. */
#include "quant/apply.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/ops.h"
#include "quant/onnx_write.h"

#define APPLY_FP32_BITS 32
#define APPLY_FP16_BITS 16
#define APPLY_MAX_INT_BITS 8

/* The data inputs of the layers' uses take the activation quantizer: what a
 * Conv/ConvTranspose/Gemm/MatMul weight multiplies, an LSTM/GRU's X (their
 * hidden state stays float inside the op); an embedding's Gather indices do not. */
int ba_quant_act_targets(const ba_model_t *m, unsigned char *mark) {
    memset(mark, 0, (size_t)m->nvalues);
    int count = 0;
    for (int l = 0; l < m->nlayers; l++)
        for (int k = 0; k < m->layers[l].nuses; k++) {
            const ba_layer_use_t *u = &m->layers[l].uses[k];
            int d = u->data;
            if (d < 0 || m->nodes[u->node].op == BA_OP_GATHER || m->values[d].constant) continue;
            ba_dtype dt = m->values[d].dtype;
            if (dt != BA_DT_UNDEFINED && !ba_dtype_is_float(dt)) continue;
            if (!mark[d]) count++;
            mark[d] = 1;
        }
    return count;
}

/* A value the executor hands over may share memory with another (views,
 * Identity, the data): fake-quantize a private copy then. */
static ba_status make_private(ba_tensor_t **t, ba_error *err) {
    ba_tensor_t *x = *t;
    if (x->refs == 1 && !x->base && x->owns && x->dtype == BA_DT_F32) return BA_OK;
    ba_tensor_t *c = x->dtype == BA_DT_F32 ? ba_tensor_clone(x, err) : ba_tensor_cast(x, BA_DT_F32, err);
    if (!c) return err->code;
    ba_tensor_unref(x);
    *t = c;
    return BA_OK;
}

int ba_quant_acts_on(const ba_quant_acts_t *a) {
    return a && a->act_bits > 0 && a->act_bits != 32 && a->act_ranges;
}

ba_status ba_quant_act_hook(void *ctx, const ba_model_t *m, int v, ba_tensor_t **t, ba_error *err) {
    (void)m;
    const ba_quant_acts_t *a = ctx;
    if (!ba_bits_valid(a->act_bits))
        return ba_error_set(err, BA_ERR_INPUT, "--act-bits: %d is not a width (" BA_BITS_WIDTHS ")",
                            a->act_bits);
    if (a->act_ranges[v].count <= 0 || !ba_dtype_is_float((*t)->dtype)) return BA_OK;
    BA_TRY(make_private(t, err));
    return ba_quant_act_apply(*t, &a->act_ranges[v], a->act_bits, err);
}

void ba_quant_acts_mark(const ba_model_t *m, const ba_quant_acts_t *a, unsigned char *mark) {
    for (int v = 0; v < m->nvalues; v++) mark[v] = a->act_ranges && a->act_ranges[v].count > 0;
}

void ba_quant_act_qparams(const ba_act_range_t *r, int bits, float *scale, int32_t *zero_point) {
    /* Same arithmetic as quant.c's asymmetric grid (quant.h), r = 1; the
     * QDQ-vs-in-memory tests hold the two together bit for bit. */
    const int L = (1 << bits) - 1;
    double lo = (double)(r->min < 0.0f ? r->min : 0.0f);
    double hi = (double)(r->max > 0.0f ? r->max : 0.0f);
    float s = (float)((hi - lo) / (double)L);
    if (!(s > 0.0f)) s = 1.0f;
    double zp = nearbyint(-lo / (double)s);
    zp = zp < 0.0 ? 0.0 : zp > (double)L ? (double)L : zp;
    *scale = s;
    *zero_point = (int32_t)zp;
}

/* The single axis other than ch_axis with more than one element, -1 when
 * there is none, -2 when there are several. */
static int single_inner_axis(const ba_layer_t *L) {
    int a = -1;
    for (int d = 0; d < L->ndim; d++) {
        if (d == L->ch_axis || L->shape[d] == 1) continue;
        if (a >= 0) return -2;
        a = d;
    }
    return a;
}

/* Rows × cols byte/float matrix transposed into dst. */
static void transpose(const void *src, void *dst, int64_t rows, int64_t cols, size_t esz) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            memcpy((char *)dst + (size_t)(c * rows + r) * esz,
                   (const char *)src + (size_t)(r * cols + c) * esz, esz);
}

/* Fills w (QDQ fields) from q for layer L: the DequantizeLinear layout. */
static ba_status qdq_layout(const ba_model_t *m, const ba_layer_t *L, ba_qweight_t *q, ba_onnx_qweight_t *w,
                            void **scratch, ba_error *err) {
    w->codes = q->codes;
    w->scales = q->scales->data;
    w->zero_points = q->zero_points ? q->zero_points->data : NULL;
    w->nscales = q->scales->numel;
    w->axis = -1;
    w->block_size = 0;
    if (q->cfg.granularity == BA_GRAN_PER_TENSOR || L->ndim == 0) return BA_OK;
    w->axis = L->ch_axis;
    if (q->cfg.granularity == BA_GRAN_PER_CHANNEL) return BA_OK;
    int64_t C = q->scales->shape[0], ng = q->scales->ndim == 2 ? q->scales->shape[1] : 1;
    if (ng == 1) return BA_OK; /* one group per channel: per-axis */
    int a = single_inner_axis(L);
    char sb[160];
    if (a < 0)
        return ba_error_set(
            err, BA_ERR_UNSUPPORTED,
            "%s: layer '%s': group:%d scales run along the flattened axes of a %s weight; blocked "
            "DequantizeLinear takes blocks along one axis (use per-channel, or the fakequant format)",
            m->path, L->name, q->cfg.group, ba_shape_str(L->ndim, L->shape, sb, sizeof sb));
    w->axis = a;
    w->block_size = (int)q->group_len;
    if (a > L->ch_axis) return BA_OK; /* scales [C, ng] already in the weight's axis order */
    /* Block axis before the channel axis: the scale tensor is [ng, C]. */
    size_t nb = (size_t)(C * ng);
    char *buf = ba_malloc(nb * sizeof(float) + nb, err);
    if (!buf) return BA_ERR_NOMEM;
    transpose(q->scales->data, buf, C, ng, sizeof(float));
    w->scales = (const float *)buf;
    if (q->zero_points) {
        transpose(q->zero_points->data, buf + nb * sizeof(float), C, ng, 1);
        w->zero_points = (const uint8_t *)(buf + nb * sizeof(float));
    }
    *scratch = buf;
    return BA_OK;
}

ba_status ba_quant_write_onnx(const ba_model_t *m, const int *w_bits, const ba_quant_cfg_t *cfg,
                              const ba_act_range_t *act_ranges, int qdq, const char *out_path,
                              ba_error *err) {
    return ba_quant_write_onnx_profile(m, w_bits, cfg, act_ranges, qdq, BA_QDQ_ORT, out_path, err);
}

/* What TensorRT's explicit quantization cannot run (zero point 0, int8 only). */
static ba_status trt_check(const ba_model_t *m, const ba_quant_cfg_t *cfg, int acts, ba_error *err) {
    if (cfg->scheme != BA_SCHEME_SYMMETRIC)
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "%s: --qdq-profile tensorrt: the study's weights are asymmetric; TensorRT takes "
                            "only zero point 0 (use a symmetric study, or --qdq-profile ort)",
                            m->path);
    if (cfg->granularity == BA_GRAN_GROUP)
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "%s: --qdq-profile tensorrt: group:%d scales need blocked int4 DequantizeLinear, "
                            "which TensorRT runs only for weight-only GEMMs; use per-channel or per-tensor",
                            m->path, cfg->group);
    if (acts && cfg->act_bits >= 2 && cfg->act_bits < 8)
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "%s: --qdq-profile tensorrt: %d-bit activations; TensorRT quantizes activations "
                            "to INT8 only",
                            m->path, cfg->act_bits);
    return BA_OK;
}

ba_status ba_quant_write_onnx_profile(const ba_model_t *m, const int *w_bits, const ba_quant_cfg_t *cfg,
                                      const ba_act_range_t *act_ranges, int qdq, ba_qdq_profile_t profile,
                                      const char *out_path, ba_error *err) {
    ba_quant_cfg_t dflt = ba_quant_cfg_default();
    if (!cfg) cfg = &dflt;
    int trt = qdq && profile == BA_QDQ_TENSORRT;
    if (trt) BA_TRY(trt_check(m, cfg, act_ranges != NULL, err));
    int nl = m->nlayers;
    ba_qweight_t *q = ba_calloc((size_t)nl + 1, sizeof *q, err);
    ba_onnx_qweight_t *w = ba_calloc((size_t)nl + 1, sizeof *w, err);
    void **scratch = ba_calloc((size_t)nl + 1, sizeof *scratch, err);
    ba_onnx_qact_t *acts = NULL;
    int nw = 0, nacts = 0;
    ba_status st = q && w && scratch ? BA_OK : BA_ERR_NOMEM;
    for (int l = 0; st == BA_OK && l < nl; l++) {
        const ba_layer_t *L = &m->layers[l];
        int bits = w_bits[l];
        if (!ba_bits_valid(bits)) {
            st = ba_error_set(err, BA_ERR_INPUT, "layer '%s': %d bits is not a width (" BA_BITS_WIDTHS ")",
                              L->name, bits);
            break;
        }
        if (bits == APPLY_FP32_BITS) continue;
        const ba_tensor_t *c = m->values[L->value].constant;
        if (!c) {
            st = ba_error_set(err, BA_ERR_RUNTIME, "layer '%s': weight has no constant data", L->name);
            break;
        }
        st = ba_quant_weight(c, L->ch_axis, bits, cfg, &q[l], err);
        if (st != BA_OK) {
            ba_error_prefix(err, "layer '%s'", L->name);
            break;
        }
        ba_onnx_qweight_t *x = &w[nw++];
        x->name = L->name;
        x->bits = bits;
        x->fq = q[l].fq;
        x->axis = -1;
        if (qdq && bits <= APPLY_MAX_INT_BITS) st = qdq_layout(m, L, &q[l], x, &scratch[l], err);
    }
    if (st == BA_OK && qdq && act_ranges && cfg->act_bits > 0 && cfg->act_bits != APPLY_FP32_BITS) {
        acts = ba_calloc((size_t)m->nvalues + 1, sizeof *acts, err);
        if (!acts) st = BA_ERR_NOMEM;
        for (int v = 0; st == BA_OK && v < m->nvalues; v++) {
            if (act_ranges[v].count <= 0) continue;
            ba_onnx_qact_t *a = &acts[nacts++];
            a->name = m->values[v].name;
            a->bits = cfg->act_bits;
            if (cfg->act_bits <= APPLY_MAX_INT_BITS && trt) { /* int8, zero point 0 */
                float amax = fmaxf(fabsf(act_ranges[v].min), fabsf(act_ranges[v].max));
                a->scale = amax > 0 ? amax / 127.0f : 1.0f;
                a->zero_point = 0;
                a->symmetric = 1;
            } else if (cfg->act_bits <= APPLY_MAX_INT_BITS) {
                ba_quant_act_qparams(&act_ranges[v], cfg->act_bits, &a->scale, &a->zero_point);
            }
        }
    }
    if (st == BA_OK)
        st = qdq ? ba_onnx_write_qdq_profile(m->path, out_path, w, nw, acts, nacts, trt, err)
                 : ba_onnx_write_fakequant(m->path, out_path, w, nw, err);
    for (int l = 0; q && l < nl; l++) ba_qweight_free(&q[l]);
    for (int l = 0; scratch && l < nl; l++) free(scratch[l]);
    free(q);
    free(w);
    free(scratch);
    free(acts);
    return st;
}
