/*
 * gemm.cu — the simple prefill path and get_rows: dequantize weight rows
 * (any type of mrc_type_supported) to F32 or F16, and y = x @ W^T for a
 * prompt by dequantizing W to F16 in the context's scratch and calling
 * cuBLAS (F16 inputs, F32 accumulation and output). Bandwidth-wise this
 * reads W once and writes/reads 2 bytes per weight more than a fused
 * quantized GEMM would; for prompts of >= 32 tokens the GEMM dominates.
 */
#include <cublas_v2.h>

#include "cuda/cuda_common.cuh"
#include "cuda/mmvq.cuh"

/* One thread per output element; row i of the output is weight row ids[i] (or r0 + i). */
template <bool F16>
__global__ void k_dequant_rows(uint32_t type, const uint8_t *__restrict__ W, size_t row_bytes, int64_t r0,
                               const int32_t *__restrict__ ids, int64_t n, int64_t k, void *__restrict__ out) {
    const int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= n * k) return;
    const int64_t i = id / k, e = id % k;
    const int64_t r = ids ? ids[i] : r0 + i;
    const float v = mrc_dq_elem(type, W + (size_t)r * row_bytes, e);
    if (F16) ((__half *)out)[id] = __float2half(v);
    else ((float *)out)[id] = v;
}

int mrc_dequant_rows(mrc_ctx *c, const mrc_weight *W, int64_t mat, int64_t r0, const int32_t *ids, int64_t n,
                     void *out, bool out_f16) {
    if (mat < 0 || mat >= W->n_mat || (!ids && (r0 < 0 || r0 + n > W->m))) {
        mr_seterr("cuda: dequant_rows: matrix %lld of %lld, rows [%lld, %lld) of %lld", (long long)mat,
                  (long long)W->n_mat, (long long)r0, (long long)(r0 + n), (long long)W->m);
        return -1;
    }
    if (n <= 0) return 0;
    const uint8_t *base = (const uint8_t *)W->data + (size_t)mat * W->mat_bytes;
    const unsigned g = mrc_cdiv(n * W->k, 256);
    if (out_f16) k_dequant_rows<true><<<g, 256, 0, c->stream>>>(W->type, base, W->row_bytes, r0, ids, n, W->k, out);
    else k_dequant_rows<false><<<g, 256, 0, c->stream>>>(W->type, base, W->row_bytes, r0, ids, n, W->k, out);
    MRC_LAUNCHED(c, "dequant_rows", "%s, rows %lld of %lld, k %lld, %s", mr_type_name(W->type), (long long)n,
                 (long long)W->m, (long long)W->k, out_f16 ? "f16" : "f32");
    return 0;
}

__global__ void k_f32_to_f16(const float *x, __half *y, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __float2half(x[i]);
}

int mrc_gemm(mrc_ctx *c, const mrc_weight *W, int64_t mat, const float *x, int64_t T, float *y) {
    if (T <= 0) return 0;
    const int64_t m = W->m, k = W->k;
    /* F16 weights are read in place; others are dequantized to F16 in the scratch first */
    const bool f16 = W->type == MR_TYPE_F16;
    const size_t wbytes = f16 ? 0 : (size_t)(m * k) * 2, xbytes = (size_t)(T * k) * 2;
    uint8_t *s = (uint8_t *)mrc_scratch(c, (wbytes + 255) / 256 * 256 + xbytes);
    if (!s) return -1;
    const __half *w16 = f16 ? (const __half *)((const uint8_t *)W->data + (size_t)mat * W->mat_bytes) : (__half *)s;
    __half *x16 = (__half *)(s + (wbytes + 255) / 256 * 256);
    if (!f16 && mrc_dequant_rows(c, W, mat, 0, NULL, m, (void *)w16, true)) return -1;
    k_f32_to_f16<<<mrc_cdiv(T * k, 256), 256, 0, c->stream>>>(x, x16, T * k);
    MRC_LAUNCHED(c, "f32_to_f16", "n %lld", (long long)(T * k));
    /* column-major view: C (m x T, ld m) = W^T(k x m col-major = W row-major)^T * X (k x T, ld k) */
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t st = cublasGemmEx((cublasHandle_t)c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)T, (int)k, &alpha,
                                     w16, CUDA_R_16F, (int)k, x16, CUDA_R_16F, (int)k, &beta, y, CUDA_R_32F, (int)m,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) {
        mr_seterr("cuda: gemm (cublasGemmEx %s, m %lld, k %lld, T %lld): status %d", mr_type_name(W->type), (long long)m,
                  (long long)k, (long long)T, (int)st);
        return -1;
    }
    return 0;
}
