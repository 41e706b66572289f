/* quant/quant.c against the NumPy reference (tests/fixtures/make_quant_refs.py):
 * codes, scales, zero-points and Q(w) bit for bit for every scheme, granularity,
 * clip and width; plus config parsing, fp16/fp32 widths, activations, errors. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "tests/helpers.h"

#define REFS_DIR BA_FIXTURES "/quant_refs"

typedef struct {
    json_t *man;
    uint8_t *blob;
    size_t size;
} refs_t;

static refs_t load_refs(void) {
    refs_t r = {0};
    json_error_t jerr;
    r.man = json_load_file(REFS_DIR "/manifest.json", 0, &jerr);
    cr_assert_not_null(r.man, "manifest.json: %s", jerr.text);
    ba_error err;
    cr_assert_eq(ba_file_read(REFS_DIR "/refs.bin", &r.blob, &r.size, &err), BA_OK, "%s", err.msg);
    return r;
}

static void free_refs(refs_t *r) {
    json_decref(r->man);
    free(r->blob);
}

static const void *at(const refs_t *r, json_t *off, size_t nbytes) {
    size_t o = (size_t)json_integer_value(off);
    cr_assert_leq(o + nbytes, r->size, "refs.bin too short");
    return r->blob + o;
}

/* The manifest's tensor NAME as a float32 tensor (a copy) and its channel axis. */
static ba_tensor_t *ref_tensor(const refs_t *r, const char *name, int *ch_axis) {
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(r->man, "tensors"), i, t) {
        if (strcmp(json_string_value(json_object_get(t, "name")), name) != 0) continue;
        int64_t shape[BA_MAX_DIMS];
        json_t *sh = json_object_get(t, "shape");
        int nd = (int)json_array_size(sh);
        for (int d = 0; d < nd; d++) shape[d] = json_integer_value(json_array_get(sh, d));
        ba_error err;
        ba_tensor_t *w = ba_tensor_new(BA_DT_F32, nd, shape, &err);
        cr_assert_not_null(w);
        memcpy(w->data, at(r, json_object_get(t, "data"), ba_tensor_nbytes(w)), ba_tensor_nbytes(w));
        *ch_axis = (int)json_integer_value(json_object_get(t, "ch_axis"));
        return w;
    }
    cr_assert_fail("no tensor %s in the manifest", name);
    return NULL;
}

static ba_quant_cfg_t cfg_of(const char *scheme, const char *gran, const char *clip) {
    ba_quant_cfg_t c = ba_quant_cfg_default();
    ba_error err;
    cr_assert_eq(ba_quant_cfg_parse_scheme(scheme, &c, &err), BA_OK);
    cr_assert_eq(ba_quant_cfg_parse_granularity(gran, &c, &err), BA_OK);
    cr_assert_eq(ba_quant_cfg_parse_clip(clip, &c, &err), BA_OK);
    return c;
}

/* First differing element of two byte ranges viewed as elements of esize bytes (-1: equal). */
static long first_diff(const void *a, const void *b, size_t n, size_t esize) {
    for (size_t i = 0; i < n; i++)
        if (memcmp((const uint8_t *)a + i * esize, (const uint8_t *)b + i * esize, esize) != 0)
            return (long)i;
    return -1;
}

Test(quant, matches_numpy_reference_bit_for_bit) {
    refs_t r = load_refs();
    json_t *cases = json_object_get(r.man, "cases");
    cr_assert_gt(json_array_size(cases), 700);
    size_t i;
    json_t *c;
    int checked = 0;
    json_array_foreach(cases, i, c) {
        const char *tname = json_string_value(json_object_get(c, "tensor"));
        const char *scheme = json_string_value(json_object_get(c, "scheme"));
        const char *gran = json_string_value(json_object_get(c, "granularity"));
        const char *clip = json_string_value(json_object_get(c, "clip"));
        int bits = (int)json_integer_value(json_object_get(c, "bits"));
        int ax;
        ba_tensor_t *w = ref_tensor(&r, tname, &ax);
        ba_quant_cfg_t cfg = cfg_of(scheme, gran, clip);
        ba_qweight_t q;
        ba_error err;
        cr_assert_eq(ba_quant_weight(w, ax, bits, &cfg, &q, &err), BA_OK, "%s", err.msg);
        char what[160];
        snprintf(what, sizeof what, "%s %s %s clip=%s %d bits", tname, scheme, gran, clip, bits);

        size_t n = (size_t)w->numel;
        long d = first_diff(q.codes->data, at(&r, json_object_get(c, "codes"), n), n, 1);
        cr_assert_eq(d, -1, "%s: code %ld differs", what, d);
        d = first_diff(q.fq->data, at(&r, json_object_get(c, "fq"), n * 4), n, 4);
        cr_assert_eq(d, -1, "%s: Q(w)[%ld] = %g, reference %g", what, d,
                     d >= 0 ? ((float *)q.fq->data)[d] : 0.f,
                     d >= 0 ? ((const float *)at(&r, json_object_get(c, "fq"), n * 4))[d] : 0.f);

        json_t *ss = json_object_get(c, "scales_shape");
        cr_assert_eq(q.scales->ndim, (int)json_array_size(ss), "%s: scales rank", what);
        for (int k = 0; k < q.scales->ndim; k++)
            cr_assert_eq(q.scales->shape[k], json_integer_value(json_array_get(ss, k)), "%s: scales shape",
                         what);
        size_t ns = (size_t)q.scales->numel;
        cr_assert_eq(ns, (size_t)ba_quant_num_scales(w->ndim, w->shape, ax, &cfg), "%s: num_scales", what);
        d = first_diff(q.scales->data, at(&r, json_object_get(c, "scales"), ns * 4), ns, 4);
        cr_assert_eq(d, -1, "%s: scale %ld differs (mse clip picked another ratio?)", what, d);
        json_t *zp = json_object_get(c, "zero_points");
        if (json_is_null(zp)) {
            cr_assert_null(q.zero_points, "%s", what);
            cr_assert_eq(q.codes->dtype, BA_DT_I8);
        } else {
            cr_assert_eq(q.codes->dtype, BA_DT_U8);
            d = first_diff(q.zero_points->data, at(&r, zp, ns), ns, 1);
            cr_assert_eq(d, -1, "%s: zero-point %ld differs", what, d);
        }
        ba_qweight_free(&q);
        ba_tensor_unref(w);
        checked++;
    }
    cr_assert_eq(checked, (int)json_array_size(cases));
    free_refs(&r);
}

Test(quant, round_half_to_even_on_ties) {
    /* Channel 5 of "conv" holds k+0.5 multiples of its exact 4-bit scale 2^-4. */
    refs_t r = load_refs();
    int ax;
    ba_tensor_t *w = ref_tensor(&r, "conv", &ax);
    ba_qweight_t q;
    ba_error err;
    cr_assert_eq(ba_quant_weight(w, ax, 4, NULL, &q, &err), BA_OK);
    const int8_t *codes = (const int8_t *)q.codes->data + 5 * 27;
    const int8_t expect[9] = {7, 0, 2, 2, 4, 4, 6, 6, 0}; /* 7, .5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, -.5 */
    for (int i = 0; i < 9; i++) cr_assert_eq(codes[i], expect[i], "tie %d", i);
    cr_assert_eq(((float *)q.scales->data)[5], 0.0625f);
    cr_assert_eq(((float *)q.scales->data)[2], 1.0f, "all-zero channel has scale 1");
    /* -0.0 * scale quantizes to +0. */
    cr_assert_eq(signbit(((float *)q.fq->data)[5 * 27 + 15]), 0);
    ba_qweight_free(&q);
    ba_tensor_unref(w);
    free_refs(&r);
}

Test(quant, fp16_and_fp32_widths) {
    refs_t r = load_refs();
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(r.man, "fp16"), i, c) {
        int ax;
        ba_tensor_t *w = ref_tensor(&r, json_string_value(json_object_get(c, "tensor")), &ax);
        ba_qweight_t q;
        ba_error err;
        cr_assert_eq(ba_quant_weight(w, ax, 16, NULL, &q, &err), BA_OK);
        size_t n = (size_t)w->numel;
        cr_assert_eq(first_diff(q.fq->data, at(&r, json_object_get(c, "fq"), n * 4), n, 4), -1);
        cr_assert_null(q.codes);
        cr_assert_null(q.scales);
        ba_qweight_free(&q);
        cr_assert_eq(ba_quant_weight(w, ax, 32, NULL, &q, &err), BA_OK);
        cr_assert_neq(q.fq->data, w->data, "32 bits is a copy, not an alias");
        cr_assert_eq(memcmp(q.fq->data, w->data, n * 4), 0);
        ba_qweight_free(&q);
        ba_tensor_unref(w);
    }
    free_refs(&r);
}

Test(quant, float64_weight_is_quantized_as_float32) {
    refs_t r = load_refs();
    int ax;
    ba_tensor_t *w = ref_tensor(&r, "gemm", &ax);
    ba_error err;
    ba_tensor_t *w64 = ba_tensor_cast(w, BA_DT_F64, &err);
    ba_quant_cfg_t cfg = cfg_of("asymmetric", "group:8", "mse");
    ba_qweight_t a, b;
    cr_assert_eq(ba_quant_weight(w, ax, 3, &cfg, &a, &err), BA_OK);
    cr_assert_eq(ba_quant_weight(w64, ax, 3, &cfg, &b, &err), BA_OK);
    cr_assert_eq(memcmp(a.fq->data, b.fq->data, ba_tensor_nbytes(a.fq)), 0);
    cr_assert_eq(memcmp(a.scales->data, b.scales->data, ba_tensor_nbytes(a.scales)), 0);
    ba_qweight_free(&a);
    ba_qweight_free(&b);
    ba_tensor_unref(w64);
    ba_tensor_unref(w);
    free_refs(&r);
}

Test(quant, group_larger_than_channel_equals_per_channel) {
    refs_t r = load_refs();
    int ax;
    ba_tensor_t *w = ref_tensor(&r, "convT", &ax);
    ba_quant_cfg_t pc = cfg_of("symmetric", "per-channel", "mse"),
                   gr = cfg_of("symmetric", "group:1000", "mse");
    ba_qweight_t a, b;
    ba_error err;
    cr_assert_eq(ba_quant_weight(w, ax, 5, &pc, &a, &err), BA_OK);
    cr_assert_eq(ba_quant_weight(w, ax, 5, &gr, &b, &err), BA_OK);
    cr_assert_eq(memcmp(a.fq->data, b.fq->data, ba_tensor_nbytes(a.fq)), 0);
    cr_assert_eq(b.scales->numel, a.scales->numel);
    ba_qweight_free(&a);
    ba_qweight_free(&b);
    ba_tensor_unref(w);
    free_refs(&r);
}

Test(quant, mse_clip_never_worse_than_max) {
    ba_error err;
    int64_t shape[2] = {16, 64};
    ba_tensor_t *w = ba_tensor_new(BA_DT_F32, 2, shape, &err);
    ba_rng_t rng;
    ba_rng_seed(&rng, 7);
    float *d = w->data;
    for (int64_t i = 0; i < w->numel; i++) d[i] = (float)(ba_rng_normal(&rng) * (i % 17 == 0 ? 5.0 : 1.0));
    for (int scheme = 0; scheme < 2; scheme++) {
        for (int bits = 2; bits <= 8; bits++) {
            ba_quant_cfg_t mx = ba_quant_cfg_default(), ms = ba_quant_cfg_default();
            mx.scheme = ms.scheme = (ba_scheme_t)scheme;
            ms.clip = BA_CLIP_MSE;
            ba_qweight_t a, b;
            cr_assert_eq(ba_quant_weight(w, 0, bits, &mx, &a, &err), BA_OK);
            cr_assert_eq(ba_quant_weight(w, 0, bits, &ms, &b, &err), BA_OK);
            for (int c = 0; c < 16; c++) {
                double ea = 0, eb = 0;
                for (int i = 0; i < 64; i++) {
                    double x = d[c * 64 + i];
                    ea += pow(((float *)a.fq->data)[c * 64 + i] - x, 2);
                    eb += pow(((float *)b.fq->data)[c * 64 + i] - x, 2);
                }
                cr_assert_leq(eb, ea * (1 + 1e-12), "scheme %d bits %d channel %d", scheme, bits, c);
            }
            ba_qweight_free(&a);
            ba_qweight_free(&b);
        }
    }
    ba_tensor_unref(w);
}

Test(quant, rows_kernel_matches_weight_api) {
    refs_t r = load_refs();
    int ax;
    ba_tensor_t *w = ref_tensor(&r, "conv", &ax);
    ba_quant_cfg_t cfg = cfg_of("asymmetric", "group:8", "max");
    ba_qweight_t q;
    ba_error err;
    cr_assert_eq(ba_quant_weight(w, 0, 6, &cfg, &q, &err), BA_OK);
    float fq[216], scales[8 * 4];
    uint8_t codes[216], zps[8 * 4];
    cr_assert_eq(ba_quant_rows_f32(w->data, 8, 27, 8, 6, &cfg, fq, codes, scales, zps, &err), BA_OK);
    cr_assert_eq(memcmp(fq, q.fq->data, sizeof fq), 0);
    cr_assert_eq(memcmp(codes, q.codes->data, sizeof codes), 0);
    cr_assert_eq(memcmp(scales, q.scales->data, sizeof scales), 0);
    cr_assert_eq(memcmp(zps, q.zero_points->data, sizeof zps), 0);
    ba_qweight_free(&q);
    ba_tensor_unref(w);
    free_refs(&r);
}

Test(quant, bad_widths_axes_and_values_are_errors) {
    ba_error err;
    int64_t shape[2] = {2, 3};
    ba_tensor_t *w = ba_tensor_new(BA_DT_F32, 2, shape, &err);
    ba_qweight_t q;
    const int bad_bits[] = {0, 1, 9, 12, 64, -4};
    for (size_t i = 0; i < sizeof bad_bits / sizeof *bad_bits; i++) {
        cr_assert_eq(ba_quant_weight(w, 0, bad_bits[i], NULL, &q, &err), BA_ERR_INPUT);
        cr_assert_null(q.fq);
    }
    cr_assert_eq(ba_quant_weight(w, 2, 4, NULL, &q, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "axis 2"), "%s", err.msg);
    ((float *)w->data)[4] = NAN;
    cr_assert_eq(ba_quant_weight(w, 0, 4, NULL, &q, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "channel 1"), "%s", err.msg);
    cr_assert_eq(ba_quant_weight(w, 1, 4, NULL, &q, &err), BA_ERR_INPUT, "gathered channels check too");
    cr_assert(strstr(err.msg, "channel 1"), "%s", err.msg);
    ((float *)w->data)[4] = INFINITY;
    cr_assert_eq(ba_quant_weight(w, 0, 4, NULL, &q, &err), BA_ERR_INPUT);
    ba_tensor_unref(w);
    ba_tensor_t *iw = ba_tensor_new(BA_DT_I64, 2, shape, &err);
    cr_assert_eq(ba_quant_weight(iw, 0, 4, NULL, &q, &err), BA_ERR_INPUT);
    ba_tensor_unref(iw);
}

Test(quant, parses_config_strings) {
    ba_quant_cfg_t c = ba_quant_cfg_default();
    ba_error err;
    cr_assert_eq(c.scheme, BA_SCHEME_SYMMETRIC);
    cr_assert_eq(c.granularity, BA_GRAN_PER_CHANNEL);
    cr_assert_eq(c.clip, BA_CLIP_MAX);
    cr_assert_eq(c.act_bits, 0);
    cr_assert_eq(ba_quant_cfg_parse_granularity("group:128", &c, &err), BA_OK);
    cr_assert_eq(c.granularity, BA_GRAN_GROUP);
    cr_assert_eq(c.group, 128);
    char buf[32];
    cr_assert_str_eq(ba_quant_granularity_str(&c, buf, sizeof buf), "group:128");
    const char *bad[] = {"group:", "group:0", "group:-3", "group:12x", "group:99999999999", "channel", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(ba_quant_cfg_parse_granularity(bad[i], &c, &err), BA_ERR_INPUT, "%s", bad[i]);
        cr_assert(strstr(err.msg, "--granularity"), "%s", err.msg);
    }
    cr_assert_eq(ba_quant_cfg_parse_scheme("asymmetric", &c, &err), BA_OK);
    cr_assert_str_eq(ba_quant_scheme_name(c.scheme), "asymmetric");
    cr_assert_eq(ba_quant_cfg_parse_scheme("affine", &c, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "--scheme") && strstr(err.msg, "affine"), "%s", err.msg);
    cr_assert_eq(ba_quant_cfg_parse_clip("mse", &c, &err), BA_OK);
    cr_assert_str_eq(ba_quant_clip_name(c.clip), "mse");
    cr_assert_eq(ba_quant_cfg_parse_clip("percentile", &c, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_quant_cfg_parse_granularity("per-tensor", &c, &err), BA_OK);
    cr_assert_str_eq(ba_quant_granularity_str(&c, buf, sizeof buf), "per-tensor");
}

Test(quant, num_scales_per_granularity) {
    int64_t shape[4] = {8, 3, 3, 3};
    ba_quant_cfg_t c = ba_quant_cfg_default();
    cr_assert_eq(ba_quant_num_scales(4, shape, 0, &c), 8);
    cr_assert_eq(ba_quant_num_scales(4, shape, 1, &c), 3);
    c.granularity = BA_GRAN_PER_TENSOR;
    cr_assert_eq(ba_quant_num_scales(4, shape, 0, &c), 1);
    c.granularity = BA_GRAN_GROUP;
    c.group = 8;
    cr_assert_eq(ba_quant_num_scales(4, shape, 0, &c), 8 * 4); /* 27 = 8+8+8+3 */
    cr_assert_eq(ba_quant_num_scales(4, shape, 1, &c), 3 * 9); /* 72 per channel */
}

Test(quant, activation_range_and_fake_quant_match_reference) {
    refs_t r = load_refs();
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(r.man, "act"), i, a) {
        json_t *sh = json_object_get(a, "shape");
        int64_t shape[2] = {json_integer_value(json_array_get(sh, 0)),
                            json_integer_value(json_array_get(sh, 1))};
        ba_error err;
        ba_tensor_t *t = ba_tensor_new(BA_DT_F32, 2, shape, &err);
        size_t nb = ba_tensor_nbytes(t);
        ba_act_range_t rg;
        ba_quant_act_range_init(&rg);
        memcpy(t->data, at(&r, json_object_get(a, "batch1"), nb), nb);
        ((float *)t->data)[0] = -INFINITY; /* masks and NaNs do not widen the range */
        ((float *)t->data)[1] = NAN;
        cr_assert_eq(ba_quant_act_range_update(&rg, t, &err), BA_OK);
        memcpy(t->data, at(&r, json_object_get(a, "batch1"), nb), nb);
        cr_assert_eq(ba_quant_act_range_update(&rg, t, &err), BA_OK);
        memcpy(t->data, at(&r, json_object_get(a, "batch2"), nb), nb);
        cr_assert_eq(ba_quant_act_range_update(&rg, t, &err), BA_OK);
        cr_assert_eq(rg.min, (float)json_real_value(json_object_get(a, "min")));
        cr_assert_eq(rg.max, (float)json_real_value(json_object_get(a, "max")));
        cr_assert_eq(rg.count, 3 * t->numel - 2);
        for (int bits = 2; bits <= 8; bits++) {
            memcpy(t->data, at(&r, json_object_get(a, "x"), nb), nb);
            cr_assert_eq(ba_quant_act_apply(t, &rg, bits, &err), BA_OK);
            char key[4];
            snprintf(key, sizeof key, "%d", bits);
            const void *ref = at(&r, json_object_get(json_object_get(a, "bits"), key), nb);
            cr_assert_eq(first_diff(t->data, ref, (size_t)t->numel, 4), -1, "%s %d bits",
                         json_string_value(json_object_get(a, "label")), bits);
        }
        cr_assert_eq(ba_quant_act_apply(t, &rg, 9, &err), BA_ERR_INPUT);
        ba_tensor_unref(t);
    }
    free_refs(&r);
}

Test(quant, activation_apply_needs_a_range) {
    ba_error err;
    int64_t shape[1] = {4};
    ba_tensor_t *t = ba_tensor_new(BA_DT_F32, 1, shape, &err);
    ba_act_range_t rg;
    ba_quant_act_range_init(&rg);
    cr_assert_eq(ba_quant_act_apply(t, &rg, 8, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_quant_act_apply(t, &rg, 32, &err), BA_OK, "32 bits needs no range");
    ((float *)t->data)[0] = 1.0009765625f;  /* 1 + 2^-10: exact in fp16 */
    ((float *)t->data)[1] = 1.00048828125f; /* 1 + 2^-11: tie, rounds to 1 */
    cr_assert_eq(ba_quant_act_apply(t, &rg, 16, &err), BA_OK);
    cr_assert_eq(((float *)t->data)[0], 1.0009765625f);
    cr_assert_eq(((float *)t->data)[1], 1.0f);
    ba_tensor_unref(t);
}
