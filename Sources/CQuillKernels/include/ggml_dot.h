// Streaming matrix products (a few input rows, weights read once) that work on GGUF blocks as they
// lie in the file, without a float32 copy of the weights.
//
// Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K: each input row is quantized once per call to int8 blocks of
// 32 with one float32 scale per block (llama.cpp's q8_0 activations, with an f32 scale), and each
// weight block meets its 32 activations in an exact integer dot product, scaled per block (per
// sub-block for the K types). One activation format serves every type, so a fused call over
// matrices of different types quantizes its input once. Finer scales than llama.cpp's Q8_K (one
// per 256) make the K types at least as accurate as there.
//
// F16, BF16: the activations stay float32 (both are exact types, and int8 would lose accuracy);
// the weights are widened to float32 on the fly and fused into multiply-adds.
//
// Every output element is computed by the same sequence of operations whatever the batch size
// and the range of rows asked, so a row's result is the same bits alone or in a batch.
#ifndef GGML_DOT_H
#define GGML_DOT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when ggml_matmul_fast multiplies weights of this type by quantized activations (Q8_0, Q4_0,
/// Q5_0, Q4_K, Q5_K, Q6_K), 0 when it takes float32 activations (F16, BF16), -1 when it has no
/// kernel for the type (F32 and unknown ids: use ggml_matmul_small).
int ggml_fast_activation_kind(int type);

/// Bytes one quantized input row of k values (k a multiple of 32) takes; a multiple of 64.
size_t ggml_activation_row_bytes(int k);

/// Quantizes the input row x (k values, k a multiple of 32) into `out` (ggml_activation_row_bytes(k)
/// bytes, 64-byte aligned): per block of 32, scale s = max|x| / 127 and q = round-to-nearest-even
/// of x · (1 / s) (0 when s is 0). A block with a NaN or an infinity gets a NaN scale, so every
/// product that reads it is NaN instead of reading the block as zeros.
void ggml_quantize_activations(const float *x, int k, void *out);

/// The int8 values (k) and block scales (k / 32) of a row quantized by ggml_quantize_activations,
/// for tests that compute a reference from the same activations.
void ggml_activation_values(const void *row, int k, int8_t *q, float *scales);

/// Y[b][r] = Σ_i W[r][i] · X[b][i] for r in [row_begin, row_end) and b in [0, batch): W (rows, k)
/// in GGUF blocks of `type` (rows back to back, any byte alignment), Y (batch, ldy).
/// For quantized types X is `activations`: batch rows quantized by ggml_quantize_activations,
/// `activation_stride` bytes apart; for F16 and BF16 it is `x` (batch, k) float32.
/// Returns 0, or -1 (writing nothing) when ggml_fast_activation_kind(type) < 0 or k is not a
/// multiple of the type's block size.
int ggml_matmul_fast(int type, const void *blocks, int k, const float *x, const void *activations,
                     size_t activation_stride, int batch, int row_begin, int row_end, float *y, int ldy);

/// Selects the path of ggml_matmul_fast by name: "portable", "avx2" (AVX2 maddubs), "avxvnni"
/// (256-bit VNNI without AVX-512), "avx512vnni" (256-bit VNNI of AVX-512 VL), "avx512" (512-bit
/// products for Q8_0, Q4_0, Q4_K and Q6_K, the others as "avx512vnni"), or "auto" to choose
/// again. Returns 0 when this CPU cannot run it. For tests and benchmarks.
int ggml_fast_force_kernel(const char *name);

/// Which path ggml_matmul_fast uses: one of the names above.
const char *ggml_fast_kernel_name(void);

#ifdef __cplusplus
}
#endif

#endif
