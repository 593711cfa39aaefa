// Int8 blocked products for prompt blocks on GGUF block weights (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K,
// Q6_K), with AVX-512 VNNI: Y (n, rows) = X (n, k) · Wᵀ, W stored (rows, k) as GGUF blocks.
//
// Why: the float32 blocked products (gemm_kernels.h) dequantize each weight stripe to float32 and
// are bound by float32 multiply-adds. Here the input block is quantized once per call to int8 in
// blocks of 32 (one float32 scale per block) and each 32-row weight stripe is decoded once into
// int8 values with a float32 scale per sub-block (and a min for Q4_K/Q5_K), laid out so that
// `vpdpbusd` (64 unsigned × signed byte products into 16 int32 lanes) reads it directly; the
// decoded stripe then serves every input row. Each block's integer sum is exact; only its scaling
// (and the sum over blocks) is float32.
//
// What is computed, for input row b and weight row r, over the k/32 blocks j of 32 columns:
//   y[b][r] = Σ_j dx[b][j] · Σ_s dw[r][s] · (Σ_{i ∈ s} q[r][i] · qx[b][i])  −  Σ_j m[r][j] · dx[b][j] · Σ_{i ∈ j} qx[b][i]
// with qx = x · (1 / dx) rounded half to even, dx = max|x| / 127 over the block (the input's int8
// form; below float32's normal range dx is rounded up so that |qx| ≤ 127, and x / dx is used
// where 1 / dx overflows), q the weight's
// integer values (centred: Q8_0 q, Q4_0 q − 8, Q5_0 q − 16, Q6_K q − 32, Q4_K/Q5_K q), s the
// weight's sub-blocks inside block j (one of 32 values, or two of 16 for Q6_K), dw its float32
// scale exactly as the reference decoder computes it (d, or d · scale), m the K types' min
// (dmin · min; 0 for the others). A block of input with a NaN or an infinity gets a NaN scale,
// so the NaN reaches every output of its row.
//
// The arithmetic of y[b][r] does not depend on n, on which rows share a panel, or on the row range
// a call covers: a row's result is the same bits alone or in any batch or chunk.
#ifndef GEMM_INT8_H
#define GEMM_INT8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when this CPU runs the int8 products (AVX-512 with VNNI) and they are not switched off
/// by `gemm_int8_force`.
int gemm_int8_available(void);

/// Switches the int8 products off (0) or back on (1, if the CPU can): for tests and benchmarks
/// that compare them with the float32 blocked products. Returns the previous setting.
int gemm_int8_force(int enabled);

/// 1 for the ggml type ids the int8 products decode (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K).
int gemm_int8_decodes(int type);

/// Input rows are packed in panels of this many rows; it divides gemm_panel_rows().
int gemm_int8_panel_rows(void);

/// Bytes the packed int8 input of an (n, k) block needs (k a multiple of 32).
size_t gemm_int8_packed_input_bytes(int n, int k);

/// Bytes (64-byte aligned) one thread's decoded weight stripe needs for rows of k values.
size_t gemm_int8_stripe_bytes(int k);

/// Quantizes and packs input rows [row_begin, row_end) of X (n, k) row-major (k a multiple of
/// 32) into `packed` (the whole block's buffer; row_begin a multiple of gemm_int8_panel_rows(),
/// row_end a multiple of it or n, so threads may pack disjoint ranges). Rows past n in the last
/// panel are packed as zeros.
void gemm_int8_pack_input(const float *x, int n, int k, int row_begin, int row_end, void *packed);

/// Y[:, row_begin..<row_end] = X · W[row_begin..<row_end]ᵀ (see above) from the packed X, for W
/// (rows, k) stored as GGUF blocks of type `type` at `blocks` (any alignment). Y is (n, ldy)
/// row-major; `stripe` is this thread's buffer of gemm_int8_stripe_bytes(k) bytes, 64-byte
/// aligned. Returns 0, or -1 (writing nothing) for a type not decoded here or a k that is not
/// a multiple of its block size.
int gemm_int8_ggml(const void *packed, int n, int k, int type, const void *blocks, int row_begin, int row_end,
                   float *y, int ldy, void *stripe);

/// The int8 form of one input row of k values (k a multiple of 32) exactly as the packing makes
/// it: qx (k values) and dx (k / 32 scales). For tests.
void gemm_int8_quantize_row(const float *x, int k, int8_t *q, float *scales);

#ifdef __cplusplus
}
#endif

#endif
