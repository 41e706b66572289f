/* Kernels of the matmul family (see model/ops.h): Gemm (alpha, beta, transA,
 * transB, C broadcast to (M, N)) on OpenBLAS sgemm, and MatMul with numpy
 * semantics (1-D operands, broadcast batch dims) on ba_kern_conv_gemm (the
 * register-tiled AVX-512 product; OpenBLAS without AVX-512), float32. */
#include <string.h>

#include "model/kern_conv.h"
#include "model/ops.h"

static ba_status bad_shapes(const ba_node_t *node, const ba_tensor_t *A, const ba_tensor_t *B,
                            ba_error *err) {
    char b1[128], b2[128];
    return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): shapes %s and %s do not fit", node->name,
                        node->op_type, ba_shape_str(A->ndim, A->shape, b1, sizeof b1),
                        ba_shape_str(B->ndim, B->shape, b2, sizeof b2));
}

/* Y (M, N) = alpha · op(A) · op(B) + beta · C, op = transpose when trans*. */
ba_status ba_gemm_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                          ba_error *err) {
    (void)nout;
    const ba_tensor_t *A = nin > 0 ? in[0] : NULL, *B = nin > 1 ? in[1] : NULL, *C = nin > 2 ? in[2] : NULL;
    BA_TRY(ba_kern_need_f32(node, A, "input A", err));
    BA_TRY(ba_kern_need_f32(node, B, "input B", err));
    if (C) BA_TRY(ba_kern_need_f32(node, C, "input C", err));
    const float alpha = ba_node_attr_float(node, "alpha", 1.0f),
                beta = ba_node_attr_float(node, "beta", 1.0f);
    const int ta = ba_node_attr_int(node, "transA", 0) != 0, tb = ba_node_attr_int(node, "transB", 0) != 0;
    if (A->ndim != 2 || B->ndim != 2) return bad_shapes(node, A, B, err);
    const int64_t M = ta ? A->shape[1] : A->shape[0], K = ta ? A->shape[0] : A->shape[1];
    const int64_t Kb = tb ? B->shape[1] : B->shape[0], N = tb ? B->shape[0] : B->shape[1];
    if (K != Kb) return bad_shapes(node, A, B, err);
    int64_t yshape[2] = {M, N};
    ba_tensor_t *Y = ba_tensor_new(BA_DT_F32, 2, yshape, err);
    if (!Y) return err ? err->code : BA_ERR_NOMEM;
    float *y = Y->data;
    float b = 0.0f;
    if (C && beta != 0.0f) {
        ba_status st = ba_kern_broadcast_to(node, C, 2, yshape, y, "input C", err);
        if (st != BA_OK) {
            ba_tensor_unref(Y);
            return st;
        }
        b = beta;
    }
    if (M > 0 && N > 0) {
        if (K > 0)
            ba_kern_sgemm(ta, tb, M, N, K, alpha, A->data, A->shape[1], B->data, B->shape[1], b, y, N);
        else if (b != 1.0f)
            for (int64_t i = 0; i < M * N; i++) y[i] *= b;
    }
    out[0] = Y;
    return BA_OK;
}

/* Product e of a broadcast batched matmul: y[e] = a[ao] · b[bo], the
 * matrix offsets found from e's index digits over oshape[0..ro). */
static void batch_product(const float *a, const float *b, float *y, int64_t e, int ro, const int64_t *oshape,
                          const int64_t *astr, const int64_t *bstr, int64_t M, int64_t N, int64_t K) {
    int64_t ao = 0, bo = 0, rem = e;
    for (int i = ro - 1; i >= 0; i--) {
        int64_t d = rem % oshape[i];
        rem /= oshape[i];
        ao += d * astr[i];
        bo += d * bstr[i];
    }
    ba_kern_conv_gemm(M, N, K, a + ao * M * K, K, b + bo * K * N, N, NULL, y + e * M * N, N);
}

/* numpy matmul: A (..., M, K) · B (..., K, N) -> (..., M, N); a 1-D A is a
 * row (M dim dropped from the result), a 1-D B a column (N dim dropped). */
ba_status ba_matmul_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                            int nout, ba_error *err) {
    (void)nout;
    const ba_tensor_t *A = nin > 0 ? in[0] : NULL, *B = nin > 1 ? in[1] : NULL;
    BA_TRY(ba_kern_need_f32(node, A, "input A", err));
    BA_TRY(ba_kern_need_f32(node, B, "input B", err));
    if (A->ndim < 1 || B->ndim < 1) return bad_shapes(node, A, B, err);
    const int a1 = A->ndim == 1, b1 = B->ndim == 1;
    const int64_t M = a1 ? 1 : A->shape[A->ndim - 2], K = A->shape[A->ndim - 1];
    const int64_t Kb = b1 ? B->shape[0] : B->shape[B->ndim - 2], N = b1 ? 1 : B->shape[B->ndim - 1];
    if (K != Kb) return bad_shapes(node, A, B, err);
    /* broadcast batch dims */
    const int ra = a1 ? 0 : A->ndim - 2, rb = b1 ? 0 : B->ndim - 2, ro = ra > rb ? ra : rb;
    int64_t oshape[BA_MAX_DIMS], astr[BA_MAX_DIMS],
        bstr[BA_MAX_DIMS]; /* batch strides in matrices, 0 = broadcast */
    int64_t as = 1, bs = 1;
    for (int i = ro - 1; i >= 0; i--) {
        int ia = i - (ro - ra), ib = i - (ro - rb);
        int64_t da = ia >= 0 ? A->shape[ia] : 1, db = ib >= 0 ? B->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) return bad_shapes(node, A, B, err);
        oshape[i] = da == 1 ? db : da;
        astr[i] = da == 1 ? 0 : as;
        bstr[i] = db == 1 ? 0 : bs;
        as *= da;
        bs *= db;
    }
    int ondim = ro;
    if (!a1) oshape[ondim++] = M;
    if (!b1) oshape[ondim++] = N;
    if (ondim > BA_MAX_DIMS) return bad_shapes(node, A, B, err);
    ba_tensor_t *Y = ba_tensor_new(BA_DT_F32, ondim, oshape, err);
    if (!Y) return err ? err->code : BA_ERR_NOMEM;
    const float *a = A->data, *b = B->data;
    float *y = Y->data;
    const int64_t nbatch = ba_shape_numel(ro, oshape);
    if (M == 0 || N == 0 || K == 0 || nbatch == 0) {
        out[0] = Y;
        return BA_OK;
    }
    if (bs == 1 && as == nbatch) {
        /* B is one matrix: fold A's batch into its rows, one sgemm. */
        ba_kern_conv_gemm(nbatch * M, N, K, a, K, b, N, NULL, y, N);
        out[0] = Y;
        return BA_OK;
    }
    /* Many products (attention heads): one per thread at a time, each
     * single-threaded; otherwise in turn, each split by ba_kern_sgemm. */
    const int nt = nbatch < 2 ? 1 : ba_kern_threads(nbatch * M * N * K);
    if (nt > 1) {
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t e = 0; e < nbatch; e++) batch_product(a, b, y, e, ro, oshape, astr, bstr, M, N, K);
    } else {
        for (int64_t e = 0; e < nbatch; e++) batch_product(a, b, y, e, ro, oshape, astr, bstr, M, N, K);
    }
    out[0] = Y;
    return BA_OK;
}
