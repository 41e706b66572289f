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
 * one for dR, then dX and dW for all steps in one sgemm each.
 *
 * The exact HVP's rules (grad_internal.h, ba_grad_rule_t) are the same two
 * passes in forward mode: every tape quantity carries its tangent along the
 * inputs' tangents (each sgemm A·B gains tA·B + A·tB), which gives J·t of
 * the outputs, and the backward run on that dual tape gives the derivative
 * of the gradients along t, the second-order term. */
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
    int gru;     /* 0: LSTM, 1: GRU */
    int G;       /* gates: 4 (LSTM), 3 (GRU) */
    int dirs;    /* 1 or 2 */
    int reverse; /* one direction, "reverse" */
    int layout;  /* 0: X (T, B, I); 1: X (B, T, I) */
    int lbr;     /* GRU linear_before_reset */
    int64_t T, B, I, H;
    /* layout-0 views (owned copies when layout = 1 or absent) */
    float *x;                  /* (T, B, I) */
    const float *w, *r, *bias; /* (dirs, GH, I), (dirs, GH, H), (dirs, 2GH) or NULL */
    float *h0, *c0;            /* (dirs, B, H), zeros when absent */
    int64_t *len;              /* (B) */
    int own_x;
} rnn_t;

/* Per direction d, time t, batch b (t in time order, not step order). The
 * t-prefixed arrays are the tangents (forward mode) of the same quantities,
 * present only when the run carries tangents. */
typedef struct tape {
    float *gates;       /* (dirs, T, B, GH): post-activation gates (0 where inactive) */
    float *hprev;       /* (dirs, T, B, H): H before step t */
    float *cprev;       /* LSTM (dirs, T, B, H): C before step t */
    float *cnew;        /* LSTM (dirs, T, B, H): C after step t */
    float *q;           /* GRU lbr: (dirs, T, B, H): H_prev·R_hᵀ + Rb_h */
    float *y;           /* (dirs, T, B, H): output (0 where inactive) */
    float *hfin, *cfin; /* (dirs, B, H) */
    float *tgates, *thprev, *tcprev, *tcnew, *tq, *ty, *thfin, *tcfin;
} tape_t;

/* Tangents of the inputs in layout 0 (zeros where an input has none). */
typedef struct rnn_tan {
    float *x, *w, *r, *bias, *h0, *c0;
} rnn_tan_t;

static float sigm(float a) {
    return 1.0f / (1.0f + expf(-a));
}

static void rnn_free(rnn_t *r) {
    if (r->own_x) free(r->x);
    free(r->h0);
    free(r->c0);
    free(r->len);
}

static void tape_free(tape_t *t) {
    float *all[] = {t->gates,  t->hprev,  t->cprev,  t->cnew,  t->q,  t->y,  t->hfin,  t->cfin,
                    t->tgates, t->thprev, t->tcprev, t->tcnew, t->tq, t->ty, t->thfin, t->tcfin};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

static void tan_free(rnn_tan_t *t) {
    free(t->x), free(t->w), free(t->r), free(t->bias), free(t->h0), free(t->c0);
}
static ba_status bad(const ba_node_t *n, const char *what, ba_error *err) {
    return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): %s", n->name, n->op_type, what);
}

static ba_status unsupported(const ba_node_t *n, const char *attr, const char *why, ba_error *err) {
    return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s (%s): attribute %s: %s", n->name, n->op_type, attr,
                        why);
}

/* Copies a (A, Bd, rest) array into (Bd, A, rest): swaps the two leading axes. */
static void swap01(const float *src, float *dst, int64_t A, int64_t Bd, int64_t rest) {
    for (int64_t a = 0; a < A; a++)
        for (int64_t b = 0; b < Bd; b++)
            memcpy(dst + (b * A + a) * rest, src + (a * Bd + b) * rest, sizeof(float) * (size_t)rest);
}

/* The default activations of the op, per direction. */
static ba_status check_attrs(const ba_node_t *n, int gru, int dirs, ba_error *err) {
    const ba_attr_t *a = ba_node_attr(n, "activations");
    if (a) {
        static const char *const lstm_def[] = {"Sigmoid", "Tanh", "Tanh"}, *const gru_def[] = {"Sigmoid",
                                                                                               "Tanh"};
        const char *const *def = gru ? gru_def : lstm_def;
        int per = gru ? 2 : 3;
        if (a->type != BA_ATTR_STRINGS || a->n != per * dirs)
            return unsupported(n, "activations",
                               "only the default activations, one set per direction, are supported", err);
        for (int i = 0; i < a->n; i++)
            if (strcasecmp(a->strings[i], def[i % per]) != 0)
                return unsupported(n, "activations",
                                   gru ? "only the default activations (Sigmoid, Tanh) are supported"
                                       : "only the default activations (Sigmoid, Tanh, Tanh) are supported",
                                   err);
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
    if (!strcmp(dir, "forward"))
        r->dirs = 1;
    else if (!strcmp(dir, "reverse"))
        r->dirs = 1, r->reverse = 1;
    else if (!strcmp(dir, "bidirectional"))
        r->dirs = 2;
    else
        return unsupported(n, "direction", "not forward, reverse or bidirectional", err);
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
    if (R->shape[0] != r->dirs || R->shape[1] != GH)
        return bad(n, "R is not (num_directions, gates*hidden_size, hidden_size)", err);
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
                return ba_error_set(err, BA_ERR_UNSUPPORTED,
                                    "node %s (LSTM): input P: peephole connections are not supported",
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
        if (st[k]->dtype != BA_DT_F32 || st[k]->ndim != 3 || st[k]->shape[0] != want[0] ||
            st[k]->shape[1] != want[1] || st[k]->shape[2] != want[2]) {
            rnn_free(r);
            return bad(n,
                       k ? "initial_c does not have the shape of the state"
                         : "initial_h does not have the shape of the state",
                       err);
        }
        if (r->layout)
            swap01(st[k]->data, dst[k], B, r->dirs, H);
        else
            memcpy(dst[k], st[k]->data, sizeof(float) * (size_t)(r->dirs * B * H));
    }
    return BA_OK;
}

static float *alloc_f(int64_t n, int zero) {
    size_t c = (size_t)(n > 0 ? n : 1);
    return zero ? calloc(c, sizeof(float)) : malloc(c * sizeof(float));
}

/* C (M, N) = beta·C + op(A)·op(B) and, when tC, its tangent
 * tC = beta·tC + op(tA)·op(B) + op(A)·op(tB) (tA / tB NULL: zero). */
static void gemm2(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, const float *tA,
                  int64_t lda, const float *Bm, const float *tB, int64_t ldb, float beta, float *C, float *tC,
                  int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                if (C) C[i * ldc + j] *= beta;
                if (tC) tC[i * ldc + j] *= beta;
            }
        return;
    }
    if (C) ba_kern_sgemm(ta, tb, M, N, K, 1.0f, A, lda, Bm, ldb, beta, C, ldc);
    if (!tC) return;
    float b2 = beta;
    if (tA) {
        ba_kern_sgemm(ta, tb, M, N, K, 1.0f, tA, lda, Bm, ldb, b2, tC, ldc);
        b2 = 1.0f;
    }
    if (tB) {
        ba_kern_sgemm(ta, tb, M, N, K, 1.0f, A, lda, tB, ldb, b2, tC, ldc);
        b2 = 1.0f;
    }
    if (b2 != 1.0f)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) tC[i * ldc + j] *= b2;
}

/* Allocates one set of the tape's arrays (the values, or their tangents):
 * cprev/cnew for an LSTM, q for a GRU with linear_before_reset. 0 when out
 * of memory (what was allocated stays in the pointers, for tape_free). */
static int tape_alloc(const rnn_t *r, float **gates, float **hprev, float **y, float **hfin, float **cfin,
                      float **cprev, float **cnew, float **q) {
    const int64_t T = r->T, B = r->B, H = r->H, D = r->dirs;
    int ok = 1;
#define RNN_ALLOC(dst, n, z)                                                                                 \
    do {                                                                                                     \
        (dst) = alloc_f((n), (z));                                                                           \
        ok = ok && (dst);                                                                                    \
    } while (0)
    RNN_ALLOC(*gates, D * T * B * r->G * H, 1);
    RNN_ALLOC(*hprev, D * T * B * H, 0);
    RNN_ALLOC(*y, D * T * B * H, 1);
    RNN_ALLOC(*hfin, D * B * H, 0);
    RNN_ALLOC(*cfin, D * B * H, 0);
    if (!r->gru) {
        RNN_ALLOC(*cprev, D * T * B * H, 0);
        RNN_ALLOC(*cnew, D * T * B * H, 1);
    }
    if (r->lbr) RNN_ALLOC(*q, D * T * B * H, 1);
#undef RNN_ALLOC
    return ok;
}

/* Runs every direction, filling the tape; with tn, also the tangents of
 * everything the tape holds (forward mode, same steps). */
static ba_status rnn_run(const rnn_t *r, const rnn_tan_t *tn, tape_t *tp, ba_error *err) {
    memset(tp, 0, sizeof *tp);
    const int64_t T = r->T, B = r->B, I = r->I, H = r->H, GH = r->G * H, D = r->dirs;
    const int lstm = !r->gru, tg = tn != NULL;
    float *bufs[16] = {0};
    int nb = 0, ok = 1;
    ok = tape_alloc(r, &tp->gates, &tp->hprev, &tp->y, &tp->hfin, &tp->cfin, &tp->cprev, &tp->cnew, &tp->q);
    if (tg && ok)
        ok = tape_alloc(r, &tp->tgates, &tp->thprev, &tp->ty, &tp->thfin, &tp->tcfin, &tp->tcprev, &tp->tcnew,
                        &tp->tq);
    /* scratch: hr, h, c, rh and their tangents */
    for (nb = 0; nb < (tg ? 8 : 4); nb++) {
        bufs[nb] = alloc_f(nb % 4 == 0 ? B * GH : B * H, 1);
        ok = ok && bufs[nb];
    }
    float *hr = bufs[0], *h = bufs[1], *c = bufs[2], *rh = bufs[3];
    float *thr = bufs[4], *th = bufs[5], *tc = bufs[6], *trh = bufs[7];
    if (!ok) {
        for (int i = 0; i < nb; i++) free(bufs[i]);
        tape_free(tp);
        return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    }
    const size_t bh = sizeof(float) * (size_t)(B * H);
    for (int64_t d = 0; d < D; d++) {
        const int rev = r->reverse || d == 1;
        const float *w = r->w + d * GH * I, *R = r->r + d * GH * H;
        const float *wb = r->bias ? r->bias + d * 2 * GH : NULL, *rb = wb ? wb + GH : NULL;
        const float *tw = tg ? tn->w + d * GH * I : NULL, *tR = tg ? tn->r + d * GH * H : NULL;
        const float *twb = tg ? tn->bias + d * 2 * GH : NULL, *trb = tg ? twb + GH : NULL;
        float *gates = tp->gates + d * T * B * GH, *tgates = tg ? tp->tgates + d * T * B * GH : NULL;
        /* pre-activations from X for all steps: X (T·B, I) · Wᵀ + biases (Rb_h apart with lbr) */
        for (int64_t e = 0; e < T * B; e++)
            for (int64_t j = 0; j < GH; j++) {
                const int rin = !(r->lbr && j >= 2 * H);
                gates[e * GH + j] = wb ? wb[j] + (rin ? rb[j] : 0.0f) : 0.0f;
                if (tg) tgates[e * GH + j] = twb[j] + (rin ? trb[j] : 0.0f);
            }
        gemm2(0, 1, T * B, GH, I, r->x, tg ? tn->x : NULL, I, w, tw, I, 1.0f, gates, tgates, GH);
        memcpy(h, r->h0 + d * B * H, bh);
        memcpy(c, r->c0 + d * B * H, bh);
        if (tg) {
            memcpy(th, tn->h0 + d * B * H, bh);
            memcpy(tc, tn->c0 + d * B * H, bh);
        }
        /* GRU lbr = 0: the h gate's recurrent product comes after r */
        const int64_t GR = r->gru && !r->lbr ? 2 * H : GH;
        for (int64_t s = 0; s < T; s++) {
            const int64_t t = rev ? T - 1 - s : s, o = (d * T + t) * B * H;
            float *g = gates + t * B * GH, *tgt = tg ? tgates + t * B * GH : NULL;
            memcpy(tp->hprev + o, h, bh);
            if (lstm) memcpy(tp->cprev + o, c, bh);
            if (tg) {
                memcpy(tp->thprev + o, th, bh);
                if (lstm) memcpy(tp->tcprev + o, tc, bh);
            }
            gemm2(0, 1, B, GR, H, h, th, H, R, tR, H, 0.0f, hr, tg ? thr : NULL, GH);
            for (int64_t b = 0; b < B; b++) {
                float *gb = g + b * GH, *hb = h + b * H, *cb = c + b * H, *hrb = hr + b * GH;
                float *tgb = tg ? tgt + b * GH : NULL, *thb = tg ? th + b * H : NULL,
                      *tcb = tg ? tc + b * H : NULL;
                const float *thrb = tg ? thr + b * GH : NULL;
                if (t >= r->len[b]) {
                    memset(gb, 0, sizeof(float) * (size_t)GH);
                    if (tg) memset(tgb, 0, sizeof(float) * (size_t)GH);
                    continue;
                }
                if (lstm) {
                    for (int64_t k = 0; k < H; k++) {
                        float gi = sigm(gb[k] + hrb[k]), go = sigm(gb[H + k] + hrb[H + k]);
                        float gf = sigm(gb[2 * H + k] + hrb[2 * H + k]),
                              gc = tanhf(gb[3 * H + k] + hrb[3 * H + k]);
                        float cn = gf * cb[k] + gi * gc, tcn = tanhf(cn);
                        if (tg) {
                            float ti = gi * (1.0f - gi) * (tgb[k] + thrb[k]);
                            float to = go * (1.0f - go) * (tgb[H + k] + thrb[H + k]);
                            float tf = gf * (1.0f - gf) * (tgb[2 * H + k] + thrb[2 * H + k]);
                            float tcc = (1.0f - gc * gc) * (tgb[3 * H + k] + thrb[3 * H + k]);
                            float tC = tf * cb[k] + gf * tcb[k] + ti * gc + gi * tcc;
                            tgb[k] = ti, tgb[H + k] = to, tgb[2 * H + k] = tf, tgb[3 * H + k] = tcc;
                            tcb[k] = tC;
                            thb[k] = to * tcn + go * (1.0f - tcn * tcn) * tC;
                        }
                        gb[k] = gi, gb[H + k] = go, gb[2 * H + k] = gf, gb[3 * H + k] = gc;
                        cb[k] = cn;
                        hb[k] = go * tcn;
                    }
                    continue;
                }
                for (int64_t k = 0; k < 2 * H; k++) {
                    gb[k] = sigm(gb[k] + hrb[k]);
                    if (tg) tgb[k] = gb[k] * (1.0f - gb[k]) * (tgb[k] + thrb[k]);
                }
                if (r->lbr) {
                    float *qb = tp->q + o + b * H, *tqb = tg ? tp->tq + o + b * H : NULL;
                    for (int64_t k = 0; k < H; k++) {
                        qb[k] = hrb[2 * H + k] + (rb ? rb[2 * H + k] : 0.0f);
                        float gr = gb[H + k], gh = tanhf(gb[2 * H + k] + gr * qb[k]);
                        if (tg) {
                            tqb[k] = thrb[2 * H + k] + trb[2 * H + k];
                            tgb[2 * H + k] =
                                (1.0f - gh * gh) * (tgb[2 * H + k] + tgb[H + k] * qb[k] + gr * tqb[k]);
                        }
                        gb[2 * H + k] = gh;
                    }
                }
            }
            if (r->gru && !r->lbr) { /* (r ⊙ H_prev) · R_hᵀ for the h gate */
                for (int64_t b = 0; b < B; b++)
                    for (int64_t k = 0; k < H; k++) {
                        rh[b * H + k] = g[b * GH + H + k] * h[b * H + k];
                        if (tg)
                            trh[b * H + k] =
                                tgt[b * GH + H + k] * h[b * H + k] + g[b * GH + H + k] * th[b * H + k];
                    }
                gemm2(0, 1, B, H, H, rh, tg ? trh : NULL, H, R + 2 * H * H, tg ? tR + 2 * H * H : NULL, H,
                      0.0f, hr + 2 * H, tg ? thr + 2 * H : NULL, GH);
                for (int64_t b = 0; b < B; b++) {
                    if (t >= r->len[b]) continue;
                    for (int64_t k = 0; k < H; k++) {
                        const int64_t e = b * GH + 2 * H + k;
                        float gh = tanhf(g[e] + hr[e]);
                        if (tg) tgt[e] = (1.0f - gh * gh) * (tgt[e] + thr[e]);
                        g[e] = gh;
                    }
                }
            }
            for (int64_t b = 0; b < B; b++) {
                if (t >= r->len[b]) continue;
                if (r->gru) {
                    const float *gb = g + b * GH, *tgb = tg ? tgt + b * GH : NULL;
                    for (int64_t k = 0; k < H; k++) {
                        float z = gb[k], gh = gb[2 * H + k], hp = h[b * H + k];
                        if (tg) {
                            float tz = tgb[k];
                            th[b * H + k] = tz * (hp - gh) + (1.0f - z) * tgb[2 * H + k] + z * th[b * H + k];
                        }
                        h[b * H + k] = (1.0f - z) * gh + z * hp;
                    }
                }
                memcpy(tp->y + o + b * H, h + b * H, sizeof(float) * (size_t)H);
                if (lstm) memcpy(tp->cnew + o + b * H, c + b * H, sizeof(float) * (size_t)H);
                if (tg) {
                    memcpy(tp->ty + o + b * H, th + b * H, sizeof(float) * (size_t)H);
                    if (lstm) memcpy(tp->tcnew + o + b * H, tc + b * H, sizeof(float) * (size_t)H);
                }
            }
        }
        memcpy(tp->hfin + d * B * H, h, bh);
        memcpy(tp->cfin + d * B * H, c, bh);
        if (tg) {
            memcpy(tp->thfin + d * B * H, th, bh);
            memcpy(tp->tcfin + d * B * H, tc, bh);
        }
    }
    for (int i = 0; i < nb; i++) free(bufs[i]);
    return BA_OK;
}

/* Y: layout 0 (T, dirs, B, H), layout 1 (B, T, dirs, H), from (dirs, T, B, H). */
static int64_t y_index(const rnn_t *r, int64_t d, int64_t t, int64_t b) {
    return r->layout ? ((b * r->T + t) * r->dirs + d) * r->H : ((t * r->dirs + d) * r->B + b) * r->H;
}

/* Y_h / Y_c: layout 0 (dirs, B, H), layout 1 (B, dirs, H). */
static int64_t s_index(const rnn_t *r, int64_t d, int64_t b) {
    return r->layout ? (b * r->dirs + d) * r->H : (d * r->B + b) * r->H;
}

/* The node's outputs (those it requests) from the tape's y / hfin / cfin. */
static ba_status write_outputs(const ba_node_t *n, const rnn_t *r, const float *y, const float *hfin,
                               const float *cfin, ba_tensor_t **out, int nout, ba_error *err) {
    const int64_t T = r->T, B = r->B, H = r->H, D = r->dirs;
    int64_t ys[4] = {T, D, B, H}, ss[3] = {D, B, H};
    if (r->layout) ys[0] = B, ys[1] = T, ys[2] = D, ss[0] = B, ss[1] = D;
    const int nouts = r->gru ? 2 : 3;
    for (int k = 0; k < nout && k < nouts; k++) {
        if (n->outputs[k] < 0) continue;
        out[k] = k == 0 ? ba_tensor_new_uninit(BA_DT_F32, 4, ys, err)
                        : ba_tensor_new_uninit(BA_DT_F32, 3, ss, err);
        if (!out[k]) {
            for (int j = 0; j < k; j++) {
                ba_tensor_unref(out[j]);
                out[j] = NULL;
            }
            return err->code;
        }
        float *o = out[k]->data;
        for (int64_t d = 0; d < D; d++)
            for (int64_t b = 0; b < B; b++) {
                if (k == 0)
                    for (int64_t t = 0; t < T; t++)
                        memcpy(o + y_index(r, d, t, b), y + ((d * T + t) * B + b) * H,
                               sizeof(float) * (size_t)H);
                else
                    memcpy(o + s_index(r, d, b), (k == 1 ? hfin : cfin) + (d * B + b) * H,
                           sizeof(float) * (size_t)H);
            }
    }
    return BA_OK;
}

ba_status ba_rnn_forward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                         ba_error *err) {
    rnn_t r;
    BA_TRY(rnn_setup(n, in, nin, &r, err));
    tape_t tp;
    ba_status st = rnn_run(&r, NULL, &tp, err);
    if (st == BA_OK) {
        st = write_outputs(n, &r, tp.y, tp.hfin, tp.cfin, out, nout, err);
        tape_free(&tp);
    }
    rnn_free(&r);
    return st;
}

/* ---- tangents of the inputs ---- */

/* The tangents tin of the node's float inputs in layout 0, zeros where absent. */
static ba_status tan_setup(const rnn_t *r, ba_tensor_t *const *in, int nin, ba_tensor_t *const *tin,
                           rnn_tan_t *tn, ba_error *err) {
    memset(tn, 0, sizeof *tn);
    const int64_t T = r->T, B = r->B, I = r->I, H = r->H, GH = r->G * H, D = r->dirs;
    const int idx[6] = {IN_X, IN_W, IN_R, IN_B, IN_H0, IN_C0};
    const int64_t cnt[6] = {T * B * I, D * GH * I, D * GH * H, D * 2 * GH, D * B * H, D * B * H};
    float **dst[6] = {&tn->x, &tn->w, &tn->r, &tn->bias, &tn->h0, &tn->c0};
    for (int k = 0; k < 6; k++) {
        *dst[k] = alloc_f(cnt[k], 1);
        if (!*dst[k]) {
            tan_free(tn);
            return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
        }
        const int i = idx[k];
        const ba_tensor_t *t = i < nin && in[i] ? tin[i] : NULL;
        if (!t || (i == IN_C0 && r->gru)) continue;
        if (t->dtype != BA_DT_F32 || t->numel != cnt[k]) {
            tan_free(tn);
            return bad(r->node, "a tangent does not have its input's shape", err);
        }
        if (r->layout && i == IN_X)
            swap01(t->data, *dst[k], B, T, I);
        else if (r->layout && (i == IN_H0 || i == IN_C0))
            swap01(t->data, *dst[k], B, D, H);
        else
            memcpy(*dst[k], t->data, sizeof(float) * (size_t)cnt[k]);
    }
    return BA_OK;
}

/* Forward-mode rule: tout = J · tin for Y, Y_h, Y_c. */
ba_status ba_rnn_tangent(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                         int nout, ba_tensor_t *const *tin, ba_tensor_t **tout, ba_error *err) {
    (void)out;
    rnn_t r;
    BA_TRY(rnn_setup(n, in, nin, &r, err));
    rnn_tan_t tn;
    tape_t tp;
    ba_status st = tan_setup(&r, in, nin, tin, &tn, err);
    if (st == BA_OK) {
        st = rnn_run(&r, &tn, &tp, err);
        if (st == BA_OK) {
            st = write_outputs(n, &r, tp.ty, tp.thfin, tp.tcfin, tout, nout, err);
            tape_free(&tp);
        }
        tan_free(&tn);
    }
    rnn_free(&r);
    return st;
}

/* ---- backward ---- */

/* Where the backward core writes: gradients (value) and, with tangents, the
 * tangents of those gradients (the HVP's second-order term); any may be NULL.
 * All in layout 0; += into each. */
typedef struct grads {
    float *x, *w, *r, *bias, *h0, *c0;
} grads_t;

/* Reverse walk over the tape (and its tangents, tn != NULL) with the
 * cotangents dY, dYh, dYc (each may be NULL; they carry no tangent). */
static ba_status rnn_back(const rnn_t *r, const rnn_tan_t *tn, const tape_t *tp, const ba_tensor_t *dY,
                          const ba_tensor_t *dYh, const ba_tensor_t *dYc, const grads_t *gv,
                          const grads_t *gt, ba_error *err) {
    const int64_t T = r->T, B = r->B, I = r->I, H = r->H, GH = r->G * H, D = r->dirs;
    const int tg = tn != NULL, lstm = !r->gru;
    float *bufs[14] = {0};
    const int64_t sz[7] = {T * B * GH, B * GH, B * H, B * H, B * H, B * H, B * H};
    int nb = tg ? 14 : 7, ok = 1;
    for (int i = 0; i < nb; i++) ok = ok && (bufs[i] = alloc_f(sz[i % 7], 1));
    if (!ok) {
        for (int i = 0; i < nb; i++) free(bufs[i]);
        return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    }
    float *dax = bufs[0], *dar = bufs[1], *dh = bufs[2], *dc = bufs[3], *dhp = bufs[4], *rh = bufs[5],
          *drh = bufs[6];
    float *tdax = bufs[7], *tdar = bufs[8], *tdh = bufs[9], *tdc = bufs[10], *tdhp = bufs[11],
          *trh = bufs[12], *tdrh = bufs[13];
    const int64_t GR = r->gru && !r->lbr ? 2 * H : GH; /* gates whose recurrent product is with H_prev */
    const size_t bh = sizeof(float) * (size_t)(B * H);
    for (int64_t d = 0; d < D; d++) {
        const int rev = r->reverse || d == 1;
        const float *R = r->r + d * GH * H, *tR = tg ? tn->r + d * GH * H : NULL;
        memset(dh, 0, bh);
        memset(dc, 0, bh);
        if (tg) memset(tdh, 0, bh), memset(tdc, 0, bh);
        for (int64_t b = 0; b < B; b++) {
            if (dYh)
                memcpy(dh + b * H, (const float *)dYh->data + s_index(r, d, b), sizeof(float) * (size_t)H);
            if (dYc)
                memcpy(dc + b * H, (const float *)dYc->data + s_index(r, d, b), sizeof(float) * (size_t)H);
        }
        for (int64_t s = T - 1; s >= 0; s--) {
            const int64_t t = rev ? T - 1 - s : s, o = (d * T + t) * B * H;
            const float *g = tp->gates + (d * T + t) * B * GH, *hp = tp->hprev + o;
            const float *tgt = tg ? tp->tgates + (d * T + t) * B * GH : NULL,
                        *thp = tg ? tp->thprev + o : NULL;
            float *da = dax + t * B * GH, *tda = tg ? tdax + t * B * GH : NULL;
            memset(dar, 0, sizeof(float) * (size_t)(B * GH));
            if (tg) memset(tdar, 0, sizeof(float) * (size_t)(B * GH));
            for (int64_t b = 0; b < B; b++) {
                float *dab = da + b * GH, *darb = dar + b * GH, *dhb = dh + b * H, *dcb = dc + b * H;
                float *tdab = tg ? tda + b * GH : NULL, *tdarb = tg ? tdar + b * GH : NULL;
                float *tdhb = tg ? tdh + b * H : NULL, *tdcb = tg ? tdc + b * H : NULL;
                const float *gb = g + b * GH, *hpb = hp + b * H;
                const float *tgb = tg ? tgt + b * GH : NULL, *thpb = tg ? thp + b * H : NULL;
                if (t >= r->len[b]) {
                    memset(dab, 0, sizeof(float) * (size_t)GH);
                    if (tg) memset(tdab, 0, sizeof(float) * (size_t)GH);
                    continue;
                }
                if (dY) {
                    const float *dyb = (const float *)dY->data + y_index(r, d, t, b);
                    for (int64_t k = 0; k < H; k++) dhb[k] += dyb[k];
                }
                if (lstm) {
                    const float *cpb = tp->cprev + o + b * H, *cnb = tp->cnew + o + b * H;
                    const float *tcpb = tg ? tp->tcprev + o + b * H : NULL,
                                *tcnb = tg ? tp->tcnew + o + b * H : NULL;
                    for (int64_t k = 0; k < H; k++) {
                        const float gi = gb[k], go = gb[H + k], gf = gb[2 * H + k], gc = gb[3 * H + k];
                        const float tc = tanhf(cnb[k]), u = 1.0f - tc * tc;
                        const float wi = gi * (1.0f - gi), wo = go * (1.0f - go), wf = gf * (1.0f - gf),
                                    wc = 1.0f - gc * gc;
                        const float dC = dcb[k] + dhb[k] * go * u;
                        if (tg) {
                            const float ti = tgb[k], to = tgb[H + k], tf = tgb[2 * H + k],
                                        tcc = tgb[3 * H + k];
                            const float ttc = u * tcnb[k], tu = -2.0f * tc * ttc;
                            const float tdC = tdcb[k] + tdhb[k] * go * u + dhb[k] * to * u + dhb[k] * go * tu;
                            const float twi = ti * (1.0f - 2.0f * gi), two = to * (1.0f - 2.0f * go),
                                        twf = tf * (1.0f - 2.0f * gf), twc = -2.0f * gc * tcc;
                            tdab[k] = tdC * gc * wi + dC * tcc * wi + dC * gc * twi;
                            tdab[H + k] = tdhb[k] * tc * wo + dhb[k] * ttc * wo + dhb[k] * tc * two;
                            tdab[2 * H + k] = tdC * cpb[k] * wf + dC * tcpb[k] * wf + dC * cpb[k] * twf;
                            tdab[3 * H + k] = tdC * gi * wc + dC * ti * wc + dC * gi * twc;
                            tdcb[k] = tdC * gf + dC * tf;
                        }
                        dab[k] = dC * gc * wi;
                        dab[H + k] = dhb[k] * tc * wo;
                        dab[2 * H + k] = dC * cpb[k] * wf;
                        dab[3 * H + k] = dC * gi * wc;
                        dcb[k] = dC * gf; /* dC_prev */
                    }
                    memcpy(darb, dab, sizeof(float) * (size_t)GH);
                    if (tg) memcpy(tdarb, tdab, sizeof(float) * (size_t)GH);
                    continue;
                }
                for (int64_t k = 0; k < H; k++) {
                    const float gz = gb[k], gh = gb[2 * H + k], wz = gz * (1.0f - gz), wh = 1.0f - gh * gh;
                    if (tg) {
                        const float tz = tgb[k], th = tgb[2 * H + k];
                        tdab[k] = tdhb[k] * (hpb[k] - gh) * wz + dhb[k] * (thpb[k] - th) * wz +
                                  dhb[k] * (hpb[k] - gh) * tz * (1.0f - 2.0f * gz);
                        tdab[2 * H + k] = tdhb[k] * (1.0f - gz) * wh - dhb[k] * tz * wh +
                                          dhb[k] * (1.0f - gz) * (-2.0f * gh * th);
                    }
                    dab[k] = dhb[k] * (hpb[k] - gh) * wz;
                    dab[2 * H + k] = dhb[k] * (1.0f - gz) * wh; /* d a_h */
                }
                if (r->lbr) {
                    const float *qb = tp->q + o + b * H, *tqb = tg ? tp->tq + o + b * H : NULL;
                    for (int64_t k = 0; k < H; k++) {
                        const float gr = gb[H + k], dah = dab[2 * H + k], wr = gr * (1.0f - gr);
                        if (tg) {
                            const float tr = tgb[H + k], tdah = tdab[2 * H + k];
                            tdab[H + k] =
                                tdah * qb[k] * wr + dah * tqb[k] * wr + dah * qb[k] * tr * (1.0f - 2.0f * gr);
                            tdarb[k] = tdab[k];
                            tdarb[H + k] = tdab[H + k];
                            tdarb[2 * H + k] = tdah * gr + dah * tr;
                        }
                        dab[H + k] = dah * qb[k] * wr;
                        darb[k] = dab[k];
                        darb[H + k] = dab[H + k];
                        darb[2 * H + k] = dah * gr; /* dq */
                    }
                } else {
                    for (int64_t k = 0; k < H; k++) {
                        darb[2 * H + k] = dab[2 * H + k];
                        if (tg) tdarb[2 * H + k] = tdab[2 * H + k];
                    }
                }
            }
            if (r->gru && !r->lbr) {
                /* a_h = … + (r ⊙ H_prev)·R_hᵀ: d(rH) = da_h · R_h */
                gemm2(0, 0, B, H, H, dar + 2 * H, tg ? tdar + 2 * H : NULL, GH, R + 2 * H * H,
                      tg ? tR + 2 * H * H : NULL, H, 0.0f, drh, tg ? tdrh : NULL, H);
                for (int64_t b = 0; b < B; b++) {
                    if (t >= r->len[b]) continue;
                    const float *gb = g + b * GH, *hpb = hp + b * H;
                    for (int64_t k = 0; k < H; k++) {
                        const int64_t e = b * GH + H + k, f = b * H + k;
                        const float gr = gb[H + k], wr = gr * (1.0f - gr);
                        if (tg) {
                            const float tr = tgt[e], thpk = thp[f];
                            tda[e] = tdrh[f] * hpb[k] * wr + drh[f] * thpk * wr +
                                     drh[f] * hpb[k] * tr * (1.0f - 2.0f * gr);
                            tdar[b * GH + k] = tda[b * GH + k];
                            tdar[e] = tda[e];
                            trh[f] = tr * hpb[k] + gr * thpk;
                        }
                        da[e] = drh[f] * hpb[k] * wr;
                        dar[b * GH + k] = da[b * GH + k];
                        dar[e] = da[e];
                        rh[f] = gr * hpb[k];
                    }
                }
                /* dR_h += da_hᵀ (r ⊙ H_prev) */
                if (gv->r)
                    gemm2(1, 0, H, H, B, dar + 2 * H, NULL, GH, rh, NULL, H, 1.0f,
                          gv->r + d * GH * H + 2 * H * H, NULL, H);
                if (gt->r)
                    gemm2(1, 0, H, H, B, dar + 2 * H, tdar + 2 * H, GH, rh, trh, H, 1.0f, NULL,
                          gt->r + d * GH * H + 2 * H * H, H);
            }
            /* dH_prev = dA_r · R over the gates multiplying H_prev; dR += dA_rᵀ H_prev */
            gemm2(0, 0, B, H, GR, dar, tg ? tdar : NULL, GH, R, tR, H, 0.0f, dhp, tg ? tdhp : NULL, H);
            if (gv->r) gemm2(1, 0, GR, H, B, dar, NULL, GH, hp, NULL, H, 1.0f, gv->r + d * GH * H, NULL, H);
            if (gt->r) gemm2(1, 0, GR, H, B, dar, tdar, GH, hp, thp, H, 1.0f, NULL, gt->r + d * GH * H, H);
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < GH; j++) {
                    if (gv->bias) gv->bias[d * 2 * GH + GH + j] += dar[b * GH + j];
                    if (gt->bias) gt->bias[d * 2 * GH + GH + j] += tdar[b * GH + j];
                }
            for (int64_t b = 0; b < B; b++) {
                if (t >= r->len[b]) continue;
                const float *gb = g + b * GH, *tgb = tg ? tgt + b * GH : NULL;
                for (int64_t k = 0; k < H; k++) {
                    const int64_t f = b * H + k;
                    if (lstm) {
                        dh[f] = dhp[f];
                        if (tg) tdh[f] = tdhp[f];
                        continue;
                    }
                    float v = dhp[f] + dh[f] * gb[k];
                    if (tg) {
                        float tv = tdhp[f] + tdh[f] * gb[k] + dh[f] * tgb[k];
                        if (!r->lbr) tv += tdrh[f] * gb[H + k] + drh[f] * tgb[H + k];
                        tdh[f] = tv;
                    }
                    if (!r->lbr) v += drh[f] * gb[H + k];
                    dh[f] = v;
                }
            }
        }
        for (int64_t e = 0; e < B * H; e++) {
            if (gv->h0) gv->h0[d * B * H + e] += dh[e];
            if (gv->c0) gv->c0[d * B * H + e] += dc[e];
            if (gt->h0) gt->h0[d * B * H + e] += tdh[e];
            if (gt->c0) gt->c0[d * B * H + e] += tdc[e];
        }
        /* the input side, all steps at once */
        const float *W = r->w + d * GH * I, *tW = tg ? tn->w + d * GH * I : NULL;
        if (gv->x) gemm2(0, 0, T * B, I, GH, dax, NULL, GH, W, NULL, I, 1.0f, gv->x, NULL, I);
        if (gt->x) gemm2(0, 0, T * B, I, GH, dax, tdax, GH, W, tW, I, 1.0f, NULL, gt->x, I);
        if (gv->w) gemm2(1, 0, GH, I, T * B, dax, NULL, GH, r->x, NULL, I, 1.0f, gv->w + d * GH * I, NULL, I);
        if (gt->w)
            gemm2(1, 0, GH, I, T * B, dax, tdax, GH, r->x, tn->x, I, 1.0f, NULL, gt->w + d * GH * I, I);
        for (int64_t e = 0; e < T * B; e++)
            for (int64_t j = 0; j < GH; j++) {
                if (gv->bias) gv->bias[d * 2 * GH + j] += dax[e * GH + j];
                if (gt->bias) gt->bias[d * 2 * GH + j] += tdax[e * GH + j];
            }
    }
    for (int i = 0; i < nb; i++) free(bufs[i]);
    return BA_OK;
}

/* Runs the backward core and adds its results (value gradients, or with
 * tin their tangents) into din, in the node's layout. */
static ba_status rnn_back_into(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *tin,
                               ba_tensor_t *const *dout, int nout, const unsigned char *need,
                               ba_tensor_t **din, ba_error *err) {
    if (nin > IN_P && in[IN_P] && need[IN_P])
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s (LSTM): no gradient for the peephole input P",
                            n->name);
    rnn_t r;
    BA_TRY(rnn_setup(n, in, nin, &r, err));
    rnn_tan_t tn, *tnp = NULL;
    ba_status st = BA_OK;
    if (tin) {
        st = tan_setup(&r, in, nin, tin, &tn, err);
        if (st != BA_OK) {
            rnn_free(&r);
            return st;
        }
        tnp = &tn;
    }
    tape_t tp;
    st = rnn_run(&r, tnp, &tp, err);
    if (st != BA_OK) {
        if (tnp) tan_free(tnp);
        rnn_free(&r);
        return st;
    }
    const int64_t T = r.T, B = r.B, I = r.I, H = r.H, D = r.dirs;
    const int has[6] = {need[IN_X],
                        need[IN_W],
                        need[IN_R],
                        nin > IN_B && in[IN_B] && need[IN_B],
                        nin > IN_H0 && in[IN_H0] && need[IN_H0],
                        !r.gru && nin > IN_C0 && in[IN_C0] && need[IN_C0]};
    const int idx[6] = {IN_X, IN_W, IN_R, IN_B, IN_H0, IN_C0};
    /* X, h0, c0 in layout 0 scratch (then transposed in); W, R, B straight into din */
    float *scratch[6] = {0}, *slot[6] = {0};
    grads_t g = {0}, none = {0};
    float **gp[6] = {&g.x, &g.w, &g.r, &g.bias, &g.h0, &g.c0};
    const int64_t cnt[6] = {T * B * I, 0, 0, 0, D * B * H, D * B * H};
    for (int k = 0; k < 6 && st == BA_OK; k++) {
        if (!has[k]) continue;
        slot[k] = ba_grad_slot(din, idx[k], in[idx[k]], err);
        if (!slot[k]) {
            st = err->code;
            break;
        }
        if (cnt[k] && r.layout) {
            scratch[k] = alloc_f(cnt[k], 1);
            if (!scratch[k]) st = ba_error_set(err, BA_ERR_NOMEM, "out of memory");
            *gp[k] = scratch[k];
        } else {
            *gp[k] = slot[k];
        }
    }
    const ba_tensor_t *dY = nout > 0 ? dout[0] : NULL, *dYh = nout > 1 ? dout[1] : NULL;
    const ba_tensor_t *dYc = !r.gru && nout > 2 ? dout[2] : NULL;
    if (st == BA_OK)
        st = tin ? rnn_back(&r, tnp, &tp, dY, dYh, dYc, &none, &g, err)
                 : rnn_back(&r, NULL, &tp, dY, dYh, dYc, &g, &none, err);
    for (int k = 0; k < 6; k++) {
        if (!scratch[k]) continue;
        if (st == BA_OK) { /* (A, Bd, rest) layout 0 → layout 1 (Bd, A, rest), added */
            const int64_t A = k == 0 ? T : D, rest = k == 0 ? I : H;
            for (int64_t a = 0; a < A; a++)
                for (int64_t b = 0; b < B; b++)
                    for (int64_t j = 0; j < rest; j++)
                        slot[k][(b * A + a) * rest + j] += scratch[k][(a * B + b) * rest + j];
        }
        free(scratch[k]);
    }
    tape_free(&tp);
    if (tnp) tan_free(tnp);
    rnn_free(&r);
    return st;
}

ba_status ba_rnn_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                          int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                          ba_error *err) {
    (void)out;
    return rnn_back_into(n, in, nin, NULL, dout, nout, need, din, err);
}

/* The HVP's second-order term: din += (∂/∂in B(in)(g)) · tin with g the
 * base cotangents, the tangent of the backward along the inputs' tangents. */
ba_status ba_rnn_second(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                        int nout, ba_tensor_t *const *tin, ba_tensor_t *const *gout,
                        const unsigned char *need, ba_tensor_t **din, ba_error *err) {
    (void)out;
    return rnn_back_into(n, in, nin, tin, gout, nout, need, din, err);
}
