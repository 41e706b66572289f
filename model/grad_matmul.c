/* Backward of the matmul family: Gemm and MatMul (numpy batch broadcasting,
 * 1-D operands). Each gradient is one or two OpenBLAS sgemm calls with
 * beta = 1, so the kernels accumulate into din as the executor expects. */
#include <cblas.h>
#include <string.h>

#include "model/grad_internal.h"

/* Y (M, N) = alpha · op(A) · op(B) + beta · C; dY (M, N). */
ba_status ba_gemm_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                           int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                           ba_error *err) {
    (void)out;
    (void)nout;
    const ba_tensor_t *A = in[0], *B = in[1], *dY = dout[0];
    const float alpha = ba_node_attr_float(n, "alpha", 1.0f), beta = ba_node_attr_float(n, "beta", 1.0f);
    const int ta = ba_node_attr_int(n, "transA", 0) != 0, tb = ba_node_attr_int(n, "transB", 0) != 0;
    const int M = (int)dY->shape[0], N = (int)dY->shape[1], K = (int)(ta ? A->shape[0] : A->shape[1]);
    const int lda = (int)A->shape[1], ldb = (int)B->shape[1];
    const float *dy = dY->data;
    if (M == 0 || N == 0 || K == 0) return BA_OK;
    if (need[0]) {
        float *dA = ba_grad_slot(din, 0, A, err);
        if (!dA) return err->code;
        if (!ta) /* dA (M, K) += alpha · dY (M, N) · op(B)^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasNoTrans : CblasTrans, M, K, N, alpha, dy, N,
                        B->data, ldb, 1.0f, dA, K);
        else /* dA (K, M) += alpha · op(B) (K, N) · dY^T */
            cblas_sgemm(CblasRowMajor, tb ? CblasTrans : CblasNoTrans, CblasTrans, K, M, N, alpha, B->data,
                        ldb, dy, N, 1.0f, dA, M);
    }
    if (need[1]) {
        float *dB = ba_grad_slot(din, 1, B, err);
        if (!dB) return err->code;
        if (!tb) /* dB (K, N) += alpha · op(A)^T (K, M) · dY */
            cblas_sgemm(CblasRowMajor, ta ? CblasNoTrans : CblasTrans, CblasNoTrans, K, N, M, alpha, A->data,
                        lda, dy, N, 1.0f, dB, N);
        else /* dB (N, K) += alpha · dY^T (N, M) · op(A) (M, K) */
            cblas_sgemm(CblasRowMajor, CblasTrans, ta ? CblasTrans : CblasNoTrans, N, K, M, alpha, dy, N,
                        A->data, lda, 1.0f, dB, K);
    }
    if (nin > 2 && in[2] && need[2] && beta != 0.0f) {
        float *dC = ba_grad_slot(din, 2, in[2], err);
        if (!dC) return err->code;
        ba_grad_reduce_add(dy, 2, dY->shape, dC, in[2]->ndim, in[2]->shape, beta);
    }
    return BA_OK;
}

/* A (..., M, K) · B (..., K, N) -> Y (..., M, N); dY as Y. */
ba_status ba_matmul_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                             int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                             ba_error *err) {
    (void)n;
    (void)nin;
    (void)out;
    (void)nout;
    const ba_tensor_t *A = in[0], *B = in[1];
    const int a1 = A->ndim == 1, b1 = B->ndim == 1;
    const int64_t M = a1 ? 1 : A->shape[A->ndim - 2], K = A->shape[A->ndim - 1],
                  N = b1 ? 1 : B->shape[B->ndim - 1];
    const int ra = a1 ? 0 : A->ndim - 2, rb = b1 ? 0 : B->ndim - 2, ro = ra > rb ? ra : rb;
    int64_t oshape[BA_MAX_DIMS], astr[BA_MAX_DIMS], bstr[BA_MAX_DIMS], as = 1, bs = 1;
    for (int i = ro - 1; i >= 0; i--) {
        int ia = i - (ro - ra), ib = i - (ro - rb);
        int64_t da = ia >= 0 ? A->shape[ia] : 1, db = ib >= 0 ? B->shape[ib] : 1;
        oshape[i] = da == 1 ? db : da;
        astr[i] = da == 1 ? 0 : as;
        bstr[i] = db == 1 ? 0 : bs;
        as *= da;
        bs *= db;
    }
    const int64_t nbatch = ba_shape_numel(ro, oshape);
    float *dA = NULL, *dB = NULL;
    if (need[0] && !(dA = ba_grad_slot(din, 0, A, err))) return err->code;
    if (need[1] && !(dB = ba_grad_slot(din, 1, B, err))) return err->code;
    if (M == 0 || N == 0 || K == 0 || nbatch == 0) return BA_OK;
    const float *a = A->data, *b = B->data, *dy = dout[0]->data;
    if (bs == 1 && as == nbatch) {
        /* B is one matrix (a Linear layer): fold A's batch into rows. */
        const int R = (int)(nbatch * M);
        if (dA) /* dA (R, K) += dY (R, N) · B^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, (int)K, (int)N, 1.0f, dy, (int)N, b,
                        (int)N, 1.0f, dA, (int)K);
        if (dB) /* dB (K, N) += A^T (K, R) · dY (R, N) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, R, 1.0f, a, (int)K, dy,
                        (int)N, 1.0f, dB, (int)N);
        return BA_OK;
    }
    int64_t idx[BA_MAX_DIMS] = {0}, ao = 0, bo = 0;
    for (int64_t e = 0; e < nbatch; e++) {
        const float *dye = dy + e * M * N;
        if (dA)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)K, (int)N, 1.0f, dye, (int)N,
                        b + bo * K * N, (int)N, 1.0f, dA + ao * M * K, (int)K);
        if (dB)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, (int)M, 1.0f, a + ao * M * K,
                        (int)K, dye, (int)N, 1.0f, dB + bo * K * N, (int)N);
        for (int i = ro - 1; i >= 0; i--) {
            idx[i]++;
            ao += astr[i];
            bo += bstr[i];
            if (idx[i] < oshape[i]) break;
            ao -= astr[i] * idx[i];
            bo -= bstr[i] * idx[i];
            idx[i] = 0;
        }
    }
    return BA_OK;
}
