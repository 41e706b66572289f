/* Losses of SPEC §5 on one model output, and their gradient dL/dz: cross-
 * entropy (labels or the FP argmax, resolved to labels by the caller), KL to
 * FP logits (or FP probabilities, ref_prob) and MSE to FP outputs. Rows = every axis but the last; sums in
 * double so the mean over thousands of rows keeps float32's precision. */
#include <math.h>
#include <string.h>

#include "model/grad.h"

/* log Σ exp(z[c]) of one row, shifted by the max for range safety. */
static double row_lse(const float *z, int64_t C) {
    double mx = -INFINITY, s = 0.0;
    for (int64_t c = 0; c < C; c++)
        if (z[c] > mx) mx = z[c];
    if (!isfinite(mx)) return mx;
    for (int64_t c = 0; c < C; c++) s += exp((double)z[c] - mx);
    return mx + log(s);
}

/* The model output z as R rows of C classes (its last axis); BA_ERR_INPUT
 * unless it is float32. */
static ba_status loss_rows(const ba_tensor_t *z, int64_t *C, int64_t *R, ba_error *err) {
    if (!z || z->dtype != BA_DT_F32)
        return ba_error_set(err, BA_ERR_INPUT, "loss: the model output is %s, not float32",
                            z ? ba_dtype_name(z->dtype) : "missing");
    *C = z->ndim ? z->shape[z->ndim - 1] : 1;
    *R = *C ? z->numel / *C : 0;
    return BA_OK;
}

ba_status ba_loss_eval(const ba_loss_spec_t *spec, const ba_tensor_t *z, int64_t row0, double scale,
                       double *loss, float *dz, ba_error *err) {
    char sb[128], rb[128];
    int64_t C, R;
    BA_TRY(loss_rows(z, &C, &R, err));
    const float *zv = z->data;
    double total = 0.0;
    *loss = 0.0;
    if (R == 0) return BA_OK;
    switch (spec->kind) {
    case BA_LOSS_CE:
    case BA_LOSS_CE_ARGMAX: {
        if (C < 2)
            return ba_error_set(err, BA_ERR_INPUT,
                                "loss: cross-entropy needs >= 2 class scores on the last axis, "
                                "the output has shape %s",
                                ba_shape_str(z->ndim, z->shape, sb, sizeof sb));
        if (!spec->labels || spec->nlabels < row0 + R)
            return ba_error_set(err, BA_ERR_INPUT,
                                "labels: %lld given, the output needs %lld (one per row of %s)",
                                (long long)spec->nlabels, (long long)(row0 + R),
                                ba_shape_str(z->ndim, z->shape, sb, sizeof sb));
        for (int64_t r = 0; r < R; r++) {
            int64_t y = spec->labels[row0 + r];
            if (y < 0 || y >= C)
                return ba_error_set(err, BA_ERR_INPUT,
                                    "labels: class id %lld at row %lld is outside [0, %lld)", (long long)y,
                                    (long long)(row0 + r), (long long)C);
            const float *zr = zv + r * C;
            double lse = row_lse(zr, C);
            total += lse - zr[y];
            if (dz) {
                float *g = dz + r * C;
                for (int64_t c = 0; c < C; c++) g[c] = (float)(scale * exp((double)zr[c] - lse) / (double)R);
                g[y] -= (float)(scale / (double)R);
            }
        }
        *loss = total / (double)R;
        return BA_OK;
    }
    case BA_LOSS_KL:
    case BA_LOSS_MSE: {
        const ba_tensor_t *ref = spec->ref;
        if (!ref || ref->dtype != BA_DT_F32 || (ref->ndim ? ref->shape[ref->ndim - 1] : 1) != C ||
            ref->numel < (row0 + R) * C)
            return ba_error_set(
                err, BA_ERR_INPUT,
                "loss: reference output %s does not cover rows [%lld, %lld) of an output %s (float32)",
                ref ? ba_shape_str(ref->ndim, ref->shape, rb, sizeof rb) : "(none)", (long long)row0,
                (long long)(row0 + R), ba_shape_str(z->ndim, z->shape, sb, sizeof sb));
        const float *pv = (const float *)ref->data + row0 * C;
        if (spec->kind == BA_LOSS_MSE) {
            const double n = (double)(R * C);
            for (int64_t i = 0; i < R * C; i++) {
                double d = (double)zv[i] - pv[i];
                total += d * d;
                if (dz) dz[i] = (float)(scale * 2.0 * d / n);
            }
            *loss = total / n;
            return BA_OK;
        }
        for (int64_t r = 0; r < R; r++) {
            const float *zr = zv + r * C, *fr = pv + r * C;
            double lz = row_lse(zr, C), lf = 0.0;
            if (spec->ref_prob) { /* probabilities: lp = log(f_c / Σ f) */
                for (int64_t c = 0; c < C; c++) lf += fr[c] > 0.0f ? (double)fr[c] : 0.0;
                lf = lf > 0.0 ? log(lf) : 0.0;
            } else {
                lf = row_lse(fr, C);
            }
            for (int64_t c = 0; c < C; c++) {
                double lp = spec->ref_prob ? (fr[c] > 0.0f ? log((double)fr[c]) - lf : -INFINITY)
                                           : (double)fr[c] - lf;
                double p = exp(lp), q = exp((double)zr[c] - lz);
                if (p > 0.0) total += p * (lp - ((double)zr[c] - lz));
                if (dz) dz[r * C + c] = (float)(scale * (q - p) / (double)R);
            }
        }
        *loss = total / (double)R;
        return BA_OK;
    }
    }
    return ba_error_set(err, BA_ERR_INPUT, "loss: unknown loss kind %d", (int)spec->kind);
}

ba_status ba_loss_hvp(const ba_loss_spec_t *spec, const ba_tensor_t *z, int64_t row0, const float *tz,
                      float *htz, double *quad, ba_error *err) {
    int64_t C, R;
    BA_TRY(loss_rows(z, &C, &R, err));
    const float *zv = z->data;
    double q = 0.0;
    if (spec->kind == BA_LOSS_MSE) { /* L = Σ (z − ref)² / n: H = 2/n · I */
        const double s = 2.0 / (double)(R * C);
        for (int64_t i = 0; i < R * C; i++) {
            q += s * (double)tz[i] * tz[i];
            if (htz) htz[i] = (float)(s * tz[i]);
        }
    } else { /* CE and KL: per row (diag(p) − p pᵀ)/R with p = softmax(z) */
        if (C < 1) return ba_error_set(err, BA_ERR_INPUT, "loss: output with an empty last axis");
        (void)row0; /* the Hessian of CE/KL in z does not depend on the labels / reference */
        for (int64_t r = 0; r < R; r++) {
            const float *zr = zv + r * C, *tr = tz + r * C;
            double lse = row_lse(zr, C), pt = 0.0, ptt = 0.0;
            for (int64_t c = 0; c < C; c++) {
                double p = exp((double)zr[c] - lse);
                pt += p * tr[c];
                ptt += p * tr[c] * tr[c];
            }
            q += (ptt - pt * pt) / (double)R;
            if (htz)
                for (int64_t c = 0; c < C; c++)
                    htz[r * C + c] = (float)(exp((double)zr[c] - lse) * ((double)tr[c] - pt) / (double)R);
        }
    }
    if (quad) *quad = q;
    return BA_OK;
}

int64_t ba_loss_hess_rank(ba_loss_kind kind, int64_t C) {
    return kind != BA_LOSS_MSE && C == 2 ? 1 : C;
}

void ba_loss_hess_factor(ba_loss_kind kind, const float *zrow, int64_t C, int64_t rows, const float *eps,
                         float *u) {
    if (kind == BA_LOSS_MSE) { /* 2/n · I, n = rows · C */
        const double s = sqrt(2.0 / (double)(rows * C));
        for (int64_t c = 0; c < C; c++) u[c] = (float)(s * eps[c]);
        return;
    }
    const double lse = row_lse(zrow, C), r = (double)rows;
    if (C == 2) { /* rank one: p0 p1 (1, −1)(1, −1)ᵀ */
        double p0 = exp((double)zrow[0] - lse), p1 = exp((double)zrow[1] - lse);
        double a = eps[0] * sqrt(p0 * p1 / r);
        u[0] = (float)a;
        u[1] = (float)-a;
        return;
    }
    /* diag p − p pᵀ = Σ_c p_c (e_c − p)(e_c − p)ᵀ: Σ_c eps_c sqrt(p_c)(e_c − p) */
    double s = 0.0;
    for (int64_t c = 0; c < C; c++) s += eps[c] * sqrt(exp((double)zrow[c] - lse));
    for (int64_t c = 0; c < C; c++) {
        double p = exp((double)zrow[c] - lse);
        u[c] = (float)((eps[c] * sqrt(p) - p * s) / sqrt(r));
    }
}
