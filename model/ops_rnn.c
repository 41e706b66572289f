/* The recurrent family, forward and backward side by side: LSTM (gates
 * i, o, f, c) and GRU (gates z, r, h; linear_before_reset 0 and 1) as in the
 * ONNX operator docs, with direction forward/reverse/bidirectional,
 * sequence_lens, initial_h/initial_c, the optional outputs Y, Y_h, Y_c and
 * layout 0/1. Only the default activations (Sigmoid, Tanh, Tanh) are run;
 * clip, input_forget and non-zero peepholes P are refused naming the node.
 *
 * One pass of a direction: X·Wᵀ for every step in one sgemm, then per step
 * H·Rᵀ (one sgemm) and the gate nonlinearities. A batch entry b is active at
 * time t when t < sequence_lens[b]: inactive steps output 0 in Y and carry
 * the state through unchanged (so a reverse pass starts at t = len−1).
 * The backward re-runs the forward keeping a tape (gates, states before
 * each step) and walks the steps back: per step one sgemm for dH_prev and
 * one for dR, then dX and dW for all steps in one sgemm each. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model/grad_internal.h"
#include "model/kern_conv.h"
#include "model/ops.h"

enum { IN_X, IN_W, IN_R, IN_B, IN_LENS, IN_H0, IN_C0, IN_P };

typedef struct rnn {
    const ba_node_t *node;
    int gru;        /* 0: LSTM, 1: GRU */
    int G;          /* gates: 4 (LSTM), 3 (GRU) */
    int dirs;       /* 1 or 2 */
    int reverse;    /* one direction, "reverse" */
    int layout;     /* 0: X (T, B, I); 1: X (B, T, I) */
    int lbr;        /* GRU linear_before_reset */
    int64_t T, B, I, H;
    /* layout-0 views (owned copies when layout = 1 or absent) */
    float *x;       /* (T, B, I) */
    const float *w, *r, *bias; /* (dirs, GH, I), (dirs, GH, H), (dirs, 2GH) or NULL */
    float *h0, *c0; /* (dirs, B, H), zeros when absent */
    int64_t *len;   /* (B) */
    int own_x;
} rnn_t;

/* Per direction d, time t, batch b (t in time order, not step order). */
typedef struct tape {
    float *gates; /* (dirs, T, B, GH): post-activation gates (0 where inactive) */
    float *hprev; /* (dirs, T, B, H): H before step t */
    float *cprev; /* LSTM (dirs, T, B, H): C before step t */
    float *cnew;  /* LSTM (dirs, T, B, H): C after step t */
    float *q;     /* GRU lbr: (dirs, T, B, H): H_prev·R_hᵀ + Rb_h */
    float *y;     /* (dirs, T, B, H): output (0 where inactive) */
    float *hfin, *cfin; /* (dirs, B, H) */
} tape_t;

static float sigm(float a) { return 1.0f / (1.0f + expf(-a)); }

static void rnn_free(rnn_t *r) {
    if (r->own_x) free(r->x);
    free(r->h0);
    free(r->c0);
    free(r->len);
}

static void tape_free(tape_t *t) {
    free(t->gates);
    free(t->hprev);
    free(t->cprev);
    free(t->cnew);
    free(t->q);
    free(t->y);
    free(t->hfin);
    free(t->cfin);
}

static ba_status bad(const ba_node_t *n, const char *what, ba_error *err) {
    return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): %s", n->name, n->op_type, what);
}

static ba_status unsupported(const ba_node_t *n, const char *attr, const char *why, ba_error *err) {
    return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s (%s): attribute %s: %s", n->name, n->op_type, attr, why);
}

/* Copies a (A, Bd, rest) array into (Bd, A, rest): swaps the two leading axes. */
static void swap01(const float *src, float *dst, int64_t A, int64_t Bd, int64_t rest) {
    for (int64_t a = 0; a < A; a++)
        for (int64_t b = 0; b < Bd; b++) memcpy(dst + (b * A + a) * rest, src + (a * Bd + b) * rest, sizeof(float) * (size_t)rest);
}

/* The default activations of the op, per direction. */
static ba_status check_attrs(const ba_node_t *n, int gru, int dirs, ba_error *err) {
    const ba_attr_t *a = ba_node_attr(n, "activations");
    if (a) {
        static const char *const lstm_def[] = {"Sigmoid", "Tanh", "Tanh"}, *const gru_def[] = {"Sigmoid", "Tanh"};
        const char *const *def = gru ? gru_def : lstm_def;
        int per = gru ? 2 : 3;
        if (a->type != BA_ATTR_STRINGS || a->n != per * dirs)
            return unsupported(n, "activations", "only the default activations are supported", err);
        for (int i = 0; i < a->n; i++)
            if (strcasecmp(a->strings[i], def[i % per]) != 0)
                return unsupported(n, "activations", "only the default activations (Sigmoid, Tanh, Tanh) are supported", err);
    }
    if (ba_node_attr(n, "clip")) return unsupported(n, "clip", "cell clipping is not supported", err);
    if (!gru && ba_node_attr_int(n, "input_forget", 0) != 0)
        return unsupported(n, "input_forget", "coupled input-forget gates are not supported", err);
    return BA_OK;
}

static ba_status rnn_setup(const ba_node_t *n, ba_tensor_t *const *in, int nin, rnn_t *r, ba_error *err) {
    memset(r, 0, sizeof *r);
    r->node = n;
    r->gru = !strcmp(n->op_type, "GRU");
    r->G = r->gru ? 3 : 4;
    const ba_tensor_t *X = nin > IN_X ? in[IN_X] : NULL, *W = nin > IN_W ? in[IN_W] : NULL;
    const ba_tensor_t *R = nin > IN_R ? in[IN_R] : NULL;
    BA_TRY(ba_kern_need_f32(n, X, "input X", err));
    BA_TRY(ba_kern_need_f32(n, W, "input W", err));
    BA_TRY(ba_kern_need_f32(n, R, "input R", err));
    const char *dir = ba_node_attr_string(n, "direction", "forward");
    if (!strcmp(dir, "forward")) r->dirs = 1;
    else if (!strcmp(dir, "reverse")) r->dirs = 1, r->reverse = 1;
    else if (!strcmp(dir, "bidirectional")) r->dirs = 2;
    else return unsupported(n, "direction", "not forward, reverse or bidirectional", err);
    BA_TRY(check_attrs(n, r->gru, r->dirs, err));
    r->layout = (int)ba_node_attr_int(n, "layout", 0);
    if (r->layout != 0 && r->layout != 1) return unsupported(n, "layout", "not 0 or 1", err);
    r->lbr = r->gru && ba_node_attr_int(n, "linear_before_reset", 0) != 0;
    if (X->ndim != 3 || W->ndim != 3 || R->ndim != 3) return bad(n, "X, W and R must be 3-D", err);
    r->T = X->shape[r->layout ? 1 : 0];
    r->B = X->shape[r->layout ? 0 : 1];
    r->I = X->shape[2];
    r->H = R->shape[2];
    const int64_t GH = r->G * r->H, T = r->T, B = r->B, H = r->H;
    int64_t hs = ba_node_attr_int(n, "hidden_size", H);
    if (hs != H) return bad(n, "hidden_size does not match R", err);
    if (W->shape[0] != r->dirs || W->shape[1] != GH || W->shape[2] != r->I)
        return bad(n, "W is not (num_directions, gates*hidden_size, input_size)", err);
    if (R->shape[0] != r->dirs || R->shape[1] != GH) return bad(n, "R is not (num_directions, gates*hidden_size, hidden_size)", err);
    r->w = W->data;
    r->r = R->data;
    const ba_tensor_t *Bt = nin > IN_B ? in[IN_B] : NULL;
    if (Bt) {
        BA_TRY(ba_kern_need_f32(n, Bt, "input B", err));
        if (Bt->ndim != 2 || Bt->shape[0] != r->dirs || Bt->shape[1] != 2 * GH)
            return bad(n, "B is not (num_directions, 2*gates*hidden_size)", err);
        r->bias = Bt->data;
    }
    const ba_tensor_t *P = !r->gru && nin > IN_P ? in[IN_P] : NULL;
    if (P) {
        if (P->dtype != BA_DT_F32) return bad(n, "P is not float32", err);
        for (int64_t i = 0; i < P->numel; i++)
            if (((const float *)P->data)[i] != 0.0f)
                return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s (LSTM): input P: peephole connections are not supported",
                                    n->name);
    }
    /* X as (T, B, I) */
    if (r->layout) {
        r->x = malloc(sizeof(float) * (size_t)(X->numel ? X->numel : 1));
        if (!r->x) return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
        r->own_x = 1;
        swap01(X->data, r->x, B, T, r->I);
    } else {
        r->x = X->data;
    }
    r->len = malloc(sizeof(int64_t) * (size_t)(B ? B : 1));
    const int64_t ns = r->dirs * B * H;
    r->h0 = calloc((size_t)(ns > 0 ? ns : 1), sizeof(float));
    r->c0 = calloc((size_t)(ns > 0 ? ns : 1), sizeof(float));
    if (!r->len || !r->h0 || !r->c0) {
        rnn_free(r);
        return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    }
    const ba_tensor_t *L = nin > IN_LENS ? in[IN_LENS] : NULL;
    for (int64_t b = 0; b < B; b++) r->len[b] = T;
    if (L) {
        if ((L->dtype != BA_DT_I32 && L->dtype != BA_DT_I64) || L->numel != B) {
            rnn_free(r);
            return bad(n, "sequence_lens is not an int32 tensor of batch_size elements", err);
        }
        for (int64_t b = 0; b < B; b++) {
            int64_t v = L->dtype == BA_DT_I32 ? ((const int32_t *)L->data)[b] : ((const int64_t *)L->data)[b];
            r->len[b] = v < 0 ? 0 : v > T ? T : v;
        }
    }
    const ba_tensor_t *st[2] = {nin > IN_H0 ? in[IN_H0] : NULL, !r->gru && nin > IN_C0 ? in[IN_C0] : NULL};
    float *dst[2] = {r->h0, r->c0};
    for (int k = 0; k < 2; k++) {
        if (!st[k]) continue;
        const int64_t want[3] = {r->layout ? B : r->dirs, r->layout ? r->dirs : B, H};
        if (st[k]->dtype != BA_DT_F32 || st[k]->ndim != 3 || st[k]->shape[0] != want[0] || st[k]->shape[1] != want[1] ||
            st[k]->shape[2] != want[2]) {
            rnn_free(r);
            return bad(n, k ? "initial_c does not have the shape of the state" : "initial_h does not have the shape of the state",
                       err);
        }
        if (r->layout) swap01(st[k]->data, dst[k], B, r->dirs, H);
        else memcpy(dst[k], st[k]->data, sizeof(float) * (size_t)(r->dirs * B * H));
    }
    return BA_OK;
}

static float *alloc_f(int64_t n, int zero) {
    size_t c = (size_t)(n > 0 ? n : 1);
    return zero ? calloc(c, sizeof(float)) : malloc(c * sizeof(float));
}

/* Runs every direction, filling the tape. */
static ba_status rnn_run(const rnn_t *r, tape_t *tp, ba_error *err) {
    memset(tp, 0, sizeof *tp);
    const int64_t T = r->T, B = r->B, I = r->I, H = r->H, GH = r->G * H, D = r->dirs;
    tp->gates = alloc_f(D * T * B * GH, 1);
    tp->hprev = alloc_f(D * T * B * H, 0);
    tp->y = alloc_f(D * T * B * H, 1);
    tp->hfin = alloc_f(D * B * H, 0);
    tp->cfin = alloc_f(D * B * H, 0);
    float *hr = alloc_f(B * GH, 0), *h = alloc_f(B * H, 0), *c = alloc_f(B * H, 0), *rh = alloc_f(B * H, 0);
    int ok = tp->gates && tp->hprev && tp->y && tp->hfin && tp->cfin && hr && h && c && rh;
    if (!r->gru) {
        tp->cprev = alloc_f(D * T * B * H, 0);
        tp->cnew = alloc_f(D * T * B * H, 0);
        ok = ok && tp->cprev && tp->cnew;
    }
    if (r->lbr) ok = ok && (tp->q = alloc_f(D * T * B * H, 1));
    if (!ok) {
        free(hr), free(h), free(c), free(rh);
        tape_free(tp);
        return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    }
    for (int64_t d = 0; d < D; d++) {
        const int rev = r->reverse || d == 1;
        const float *w = r->w + d * GH * I, *R = r->r + d * GH * H;
        const float *wb = r->bias ? r->bias + d * 2 * GH : NULL, *rb = wb ? wb + GH : NULL;
        float *gates = tp->gates + d * T * B * GH;
        /* pre-activations from X for all steps: X (T·B, I) · Wᵀ + biases */
        for (int64_t e = 0; e < T * B; e++)
            for (int64_t j = 0; j < GH; j++) {
                float v = 0.0f;
                if (wb) v = wb[j] + (r->lbr && j >= 2 * H ? 0.0f : rb[j]);
                gates[e * GH + j] = v;
            }
        if (T * B > 0 && GH > 0 && I > 0) ba_kern_sgemm(0, 1, T * B, GH, I, 1.0f, r->x, I, w, I, 1.0f, gates, GH);
        memcpy(h, r->h0 + d * B * H, sizeof(float) * (size_t)(B * H));
        memcpy(c, r->c0 + d * B * H, sizeof(float) * (size_t)(B * H));
        /* GRU lbr = 0: the h gate's recurrent product comes after r */
        const int64_t GR = r->gru && !r->lbr ? 2 * H : GH;
        for (int64_t s = 0; s < T; s++) {
            const int64_t t = rev ? T - 1 - s : s;
            float *g = gates + t * B * GH, *hp = tp->hprev + (d * T + t) * B * H, *y = tp->y + (d * T + t) * B * H;
            memcpy(hp, h, sizeof(float) * (size_t)(B * H));
            if (!r->gru) memcpy(tp->cprev + (d * T + t) * B * H, c, sizeof(float) * (size_t)(B * H));
            if (B > 0 && H > 0) ba_kern_sgemm(0, 1, B, GR, H, 1.0f, h, H, R, H, 0.0f, hr, GH);
            for (int64_t b = 0; b < B; b++) {
                float *gb = g + b * GH, *hb = h + b * H, *cb = c + b * H, *hrb = hr + b * GH;
                if (t >= r->len[b]) {
                    memset(gb, 0, sizeof(float) * (size_t)GH);
                    continue;
                }
                if (!r->gru) {
                    for (int64_t k = 0; k < H; k++) {
                        float gi = sigm(gb[k] + hrb[k]), go = sigm(gb[H + k] + hrb[H + k]);
                        float gf = sigm(gb[2 * H + k] + hrb[2 * H + k]), gc = tanhf(gb[3 * H + k] + hrb[3 * H + k]);
                        gb[k] = gi, gb[H + k] = go, gb[2 * H + k] = gf, gb[3 * H + k] = gc;
                        cb[k] = gf * cb[k] + gi * gc;
                        hb[k] = go * tanhf(cb[k]);
                    }
                } else {
                    for (int64_t k = 0; k < 2 * H; k++) gb[k] = sigm(gb[k] + hrb[k]);
                    if (r->lbr) {
                        float *qb = tp->q + ((d * T + t) * B + b) * H;
                        for (int64_t k = 0; k < H; k++) {
                            qb[k] = hrb[2 * H + k] + (rb ? rb[2 * H + k] : 0.0f);
                            gb[2 * H + k] = tanhf(gb[2 * H + k] + gb[H + k] * qb[k]);
                        }
                    }
                }
            }
            if (r->gru && !r->lbr) { /* (r ⊙ H_prev) · R_hᵀ for the h gate */
                for (int64_t b = 0; b < B; b++)
                    for (int64_t k = 0; k < H; k++) rh[b * H + k] = g[b * GH + H + k] * h[b * H + k];
                if (B > 0 && H > 0) ba_kern_sgemm(0, 1, B, H, H, 1.0f, rh, H, R + 2 * H * H, H, 0.0f, hr + 2 * H, GH);
                for (int64_t b = 0; b < B; b++) {
                    if (t >= r->len[b]) continue;
                    for (int64_t k = 0; k < H; k++) g[b * GH + 2 * H + k] = tanhf(g[b * GH + 2 * H + k] + hr[b * GH + 2 * H + k]);
                }
            }
            for (int64_t b = 0; b < B; b++) {
                if (t >= r->len[b]) continue;
                if (r->gru) {
                    const float *gb = g + b * GH;
                    for (int64_t k = 0; k < H; k++) h[b * H + k] = (1.0f - gb[k]) * gb[2 * H + k] + gb[k] * h[b * H + k];
                }
                memcpy(y + b * H, h + b * H, sizeof(float) * (size_t)H);
                if (!r->gru) memcpy(tp->cnew + ((d * T + t) * B + b) * H, c + b * H, sizeof(float) * (size_t)H);
            }
        }
        memcpy(tp->hfin + d * B * H, h, sizeof(float) * (size_t)(B * H));
        memcpy(tp->cfin + d * B * H, c, sizeof(float) * (size_t)(B * H));
    }
    free(hr), free(h), free(c), free(rh);
    return BA_OK;
}

/* Y: layout 0 (T, dirs, B, H), layout 1 (B, T, dirs, H), from (dirs, T, B, H). */
static void y_index(const rnn_t *r, int64_t d, int64_t t, int64_t b, int64_t *off) {
    *off = r->layout ? ((b * r->T + t) * r->dirs + d) * r->H : ((t * r->dirs + d) * r->B + b) * r->H;
}

/* Y_h / Y_c: layout 0 (dirs, B, H), layout 1 (B, dirs, H). */
static int64_t s_index(const rnn_t *r, int64_t d, int64_t b) {
    return r->layout ? (b * r->dirs + d) * r->H : (d * r->B + b) * r->H;
}

static ba_status rnn_forward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                             ba_error *err) {
    rnn_t r;
    BA_TRY(rnn_setup(n, in, nin, &r, err));
    tape_t tp;
    ba_status st = rnn_run(&r, &tp, err);
    if (st != BA_OK) {
        rnn_free(&r);
        return st;
    }
    const int64_t T = r.T, B = r.B, H = r.H, D = r.dirs;
    int64_t ys[4] = {T, D, B, H}, ss[3] = {D, B, H};
    if (r.layout) ys[0] = B, ys[1] = T, ys[2] = D, ss[0] = B, ss[1] = D;
    int nouts = r.gru ? 2 : 3;
    for (int k = 0; k < nout && k < nouts && st == BA_OK; k++) {
        if (n->outputs[k] < 0) continue;
        out[k] = k == 0 ? ba_tensor_new_uninit(BA_DT_F32, 4, ys, err) : ba_tensor_new_uninit(BA_DT_F32, 3, ss, err);
        if (!out[k]) {
            st = err->code;
            break;
        }
        float *o = out[k]->data;
        for (int64_t d = 0; d < D; d++)
            for (int64_t b = 0; b < B; b++) {
                if (k == 0) {
                    for (int64_t t = 0; t < T; t++) {
                        int64_t off;
                        y_index(&r, d, t, b, &off);
                        memcpy(o + off, tp.y + ((d * T + t) * B + b) * H, sizeof(float) * (size_t)H);
                    }
                } else {
                    const float *src = (k == 1 ? tp.hfin : tp.cfin) + (d * B + b) * H;
                    memcpy(o + s_index(&r, d, b), src, sizeof(float) * (size_t)H);
                }
            }
    }
    if (st != BA_OK)
        for (int k = 0; k < nout; k++) {
            ba_tensor_unref(out[k]);
            out[k] = NULL;
        }
    tape_free(&tp);
    rnn_free(&r);
    return st;
}

/* ---- backward ---- */

static ba_status rnn_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out, int nout,
                              ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din, ba_error *err) {
    (void)out;
    if (nin > IN_P && in[IN_P] && need[IN_P])
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s (LSTM): no gradient for the peephole input P", n->name);
    rnn_t r;
    BA_TRY(rnn_setup(n, in, nin, &r, err));
    tape_t tp;
    ba_status st = rnn_run(&r, &tp, err);
    if (st != BA_OK) {
        rnn_free(&r);
        return st;
    }
    const int64_t T = r.T, B = r.B, I = r.I, H = r.H, G = r.G, GH = G * H, D = r.dirs;
    const ba_tensor_t *dY = nout > 0 ? dout[0] : NULL, *dYh = nout > 1 ? dout[1] : NULL;
    const ba_tensor_t *dYc = !r.gru && nout > 2 ? dout[2] : NULL;
    float *dax = alloc_f(T * B * GH, 0), *dar = alloc_f(B * GH, 0), *dh = alloc_f(B * H, 0), *dc = alloc_f(B * H, 0);
    float *dhp = alloc_f(B * H, 0), *rh = alloc_f(B * H, 0), *drh = alloc_f(B * H, 0);
    float *dx = need[IN_X] ? alloc_f(T * B * I, 1) : NULL;
    float *dh0 = nin > IN_H0 && in[IN_H0] && need[IN_H0] ? alloc_f(D * B * H, 0) : NULL;
    float *dc0 = !r.gru && nin > IN_C0 && in[IN_C0] && need[IN_C0] ? alloc_f(D * B * H, 0) : NULL;
    float *dW = NULL, *dR = NULL, *dBias = NULL;
    st = BA_OK;
    if (!dax || !dar || !dh || !dc || !dhp || !rh || !drh || (need[IN_X] && !dx) ||
        (nin > IN_H0 && in[IN_H0] && need[IN_H0] && !dh0) || (!r.gru && nin > IN_C0 && in[IN_C0] && need[IN_C0] && !dc0))
        st = ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    if (st == BA_OK && need[IN_W] && !(dW = ba_grad_slot(din, IN_W, in[IN_W], err))) st = err->code;
    if (st == BA_OK && need[IN_R] && !(dR = ba_grad_slot(din, IN_R, in[IN_R], err))) st = err->code;
    if (st == BA_OK && nin > IN_B && in[IN_B] && need[IN_B] && !(dBias = ba_grad_slot(din, IN_B, in[IN_B], err)))
        st = err->code;
    const int64_t GR = r.gru && !r.lbr ? 2 * H : GH; /* gates whose recurrent product is with H_prev */
    for (int64_t d = 0; d < D && st == BA_OK; d++) {
        const int rev = r.reverse || d == 1;
        const float *R = r.r + d * GH * H;
        memset(dh, 0, sizeof(float) * (size_t)(B * H));
        memset(dc, 0, sizeof(float) * (size_t)(B * H));
        for (int64_t b = 0; b < B; b++) {
            if (dYh) memcpy(dh + b * H, (const float *)dYh->data + s_index(&r, d, b), sizeof(float) * (size_t)H);
            if (dYc) memcpy(dc + b * H, (const float *)dYc->data + s_index(&r, d, b), sizeof(float) * (size_t)H);
        }
        for (int64_t s = T - 1; s >= 0; s--) {
            const int64_t t = rev ? T - 1 - s : s;
            const float *g = tp.gates + (d * T + t) * B * GH, *hp = tp.hprev + (d * T + t) * B * H;
            float *da = dax + t * B * GH;
            memset(dar, 0, sizeof(float) * (size_t)(B * GH));
            for (int64_t b = 0; b < B; b++) {
                float *dab = da + b * GH, *darb = dar + b * GH, *dhb = dh + b * H, *dcb = dc + b * H;
                const float *gb = g + b * GH, *hpb = hp + b * H;
                if (t >= r.len[b]) {
                    memset(dab, 0, sizeof(float) * (size_t)GH);
                    continue;
                }
                if (dY) {
                    int64_t off;
                    y_index(&r, d, t, b, &off);
                    const float *dyb = (const float *)dY->data + off;
                    for (int64_t k = 0; k < H; k++) dhb[k] += dyb[k];
                }
                if (!r.gru) {
                    const float *cpb = tp.cprev + ((d * T + t) * B + b) * H, *cnb = tp.cnew + ((d * T + t) * B + b) * H;
                    for (int64_t k = 0; k < H; k++) {
                        float gi = gb[k], go = gb[H + k], gf = gb[2 * H + k], gc = gb[3 * H + k];
                        float tc = tanhf(cnb[k]);
                        float dC = dcb[k] + dhb[k] * go * (1.0f - tc * tc);
                        dab[k] = dC * gc * gi * (1.0f - gi);
                        dab[H + k] = dhb[k] * tc * go * (1.0f - go);
                        dab[2 * H + k] = dC * cpb[k] * gf * (1.0f - gf);
                        dab[3 * H + k] = dC * gi * (1.0f - gc * gc);
                        dcb[k] = dC * gf; /* dC_prev */
                    }
                    memcpy(darb, dab, sizeof(float) * (size_t)GH);
                } else {
                    for (int64_t k = 0; k < H; k++) {
                        float gz = gb[k], gh = gb[2 * H + k];
                        dab[k] = dhb[k] * (hpb[k] - gh) * gz * (1.0f - gz);
                        dab[2 * H + k] = dhb[k] * (1.0f - gz) * (1.0f - gh * gh); /* d a_h */
                    }
                    if (r.lbr) {
                        const float *qb = tp.q + ((d * T + t) * B + b) * H;
                        for (int64_t k = 0; k < H; k++) {
                            float gr = gb[H + k], dah = dab[2 * H + k];
                            dab[H + k] = dah * qb[k] * gr * (1.0f - gr);
                            darb[k] = dab[k];
                            darb[H + k] = dab[H + k];
                            darb[2 * H + k] = dah * gr; /* dq */
                        }
                    } else {
                        for (int64_t k = 0; k < H; k++) darb[2 * H + k] = dab[2 * H + k];
                    }
                }
            }
            if (r.gru && !r.lbr) {
                /* a_h = … + (r ⊙ H_prev)·R_hᵀ: d(rH) = da_h · R_h */
                if (B > 0 && H > 0)
                    ba_kern_sgemm(0, 0, B, H, H, 1.0f, dar + 2 * H, GH, R + 2 * H * H, H, 0.0f, drh, H);
                for (int64_t b = 0; b < B; b++) {
                    if (t >= r.len[b]) continue;
                    const float *gb = g + b * GH, *hpb = hp + b * H;
                    for (int64_t k = 0; k < H; k++) {
                        float gr = gb[H + k];
                        da[b * GH + H + k] = drh[b * H + k] * hpb[k] * gr * (1.0f - gr);
                        dar[b * GH + k] = da[b * GH + k];
                        dar[b * GH + H + k] = da[b * GH + H + k];
                        rh[b * H + k] = gr * hpb[k];
                    }
                }
                if (dR && B > 0 && H > 0) /* dR_h += da_hᵀ (r ⊙ H_prev) */
                    ba_kern_sgemm(1, 0, H, H, B, 1.0f, dar + 2 * H, GH, rh, H, 1.0f, dR + d * GH * H + 2 * H * H, H);
            }
            /* dH_prev = dA_r · R over the gates multiplying H_prev; dR += dA_rᵀ H_prev */
            if (B > 0 && H > 0) ba_kern_sgemm(0, 0, B, H, GR, 1.0f, dar, GH, R, H, 0.0f, dhp, H);
            if (dR && B > 0 && H > 0) ba_kern_sgemm(1, 0, GR, H, B, 1.0f, dar, GH, hp, H, 1.0f, dR + d * GH * H, H);
            if (dBias)
                for (int64_t b = 0; b < B; b++)
                    for (int64_t j = 0; j < GH; j++) dBias[d * 2 * GH + GH + j] += dar[b * GH + j];
            for (int64_t b = 0; b < B; b++) {
                if (t >= r.len[b]) continue;
                float *dhb = dh + b * H;
                const float *gb = g + b * GH;
                if (!r.gru) {
                    for (int64_t k = 0; k < H; k++) dhb[k] = dhp[b * H + k];
                } else {
                    for (int64_t k = 0; k < H; k++) {
                        float v = dhp[b * H + k] + dhb[k] * gb[k];
                        if (!r.lbr) v += drh[b * H + k] * gb[H + k];
                        dhb[k] = v;
                    }
                }
            }
        }
        if (dh0)
            for (int64_t b = 0; b < B; b++) memcpy(dh0 + (d * B + b) * H, dh + b * H, sizeof(float) * (size_t)H);
        if (dc0)
            for (int64_t b = 0; b < B; b++) memcpy(dc0 + (d * B + b) * H, dc + b * H, sizeof(float) * (size_t)H);
        /* the input side, all steps at once */
        if (dx && T * B > 0 && I > 0 && GH > 0)
            ba_kern_sgemm(0, 0, T * B, I, GH, 1.0f, dax, GH, r.w + d * GH * I, I, 1.0f, dx, I);
        if (dW && T * B > 0 && I > 0 && GH > 0)
            ba_kern_sgemm(1, 0, GH, I, T * B, 1.0f, dax, GH, r.x, I, 1.0f, dW + d * GH * I, I);
        if (dBias)
            for (int64_t e = 0; e < T * B; e++)
                for (int64_t j = 0; j < GH; j++) dBias[d * 2 * GH + j] += dax[e * GH + j];
    }
    /* back to the node's layout, accumulated into din */
    if (st == BA_OK && dx) {
        float *s = ba_grad_slot(din, IN_X, in[IN_X], err);
        if (!s) st = err->code;
        else
            for (int64_t t = 0; t < T; t++)
                for (int64_t b = 0; b < B; b++) {
                    float *o = s + (r.layout ? b * T + t : t * B + b) * I;
                    const float *v = dx + (t * B + b) * I;
                    for (int64_t k = 0; k < I; k++) o[k] += v[k];
                }
    }
    float *dst[2] = {dh0, dc0};
    for (int k = 0; k < 2 && st == BA_OK; k++) {
        if (!dst[k]) continue;
        float *s = ba_grad_slot(din, k ? IN_C0 : IN_H0, in[k ? IN_C0 : IN_H0], err);
        if (!s) {
            st = err->code;
            break;
        }
        for (int64_t d = 0; d < D; d++)
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < H; j++) s[s_index(&r, d, b) + j] += dst[k][(d * B + b) * H + j];
    }
    free(dax), free(dar), free(dh), free(dc), free(dhp), free(rh), free(drh), free(dx), free(dh0), free(dc0);
    tape_free(&tp);
    rnn_free(&r);
    return st;
}

const ba_op_def_t ba_ops_rnn[] = {
    {"LSTM", rnn_forward},
    {"GRU", rnn_forward},
    {NULL, NULL},
};

const ba_grad_def_t ba_grads_rnn[] = {
    {"LSTM", rnn_backward},
    {"GRU", rnn_backward},
    {NULL, NULL},
};
