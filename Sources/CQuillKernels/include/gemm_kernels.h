// Blocked matrix products for prompt blocks: Y (n, rows) = X (n, k) · Wᵀ with W stored
// (rows, k) row-major, as float32, as Q8_0 int8 groups, or as GGUF blocks. AVX-512 only; on other CPUs
// `gemm_available()` is 0 and the caller uses BLAS.
//
// Why not sgemm: sgemm repacks both operands on every call. Here the input block is packed
// once (`gemm_pack_input`) and shared by every weight matrix that reads it and by every
// thread; each thread then packs only its own 32-row stripes of weights, dequantizing Q8_0
// values on the way, so int8 weights need no float copy of the matrix.
#ifndef GEMM_KERNELS_H
#define GEMM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when this CPU runs the AVX-512 products (and they are not switched off by `gemm_force`).
int gemm_available(void);

/// Switches the blocked products off (0) or back on (1, if the CPU can): for tests and
/// benchmarks that compare them with BLAS. Returns the previous setting.
int gemm_force(int enabled);

/// Input rows are packed in panels of this many rows.
int gemm_panel_rows(void);

/// Floats the packed input of an (n, k) block needs.
size_t gemm_packed_input_floats(int n, int k);

/// Floats (64-byte aligned) one thread's weight-stripe buffer needs.
size_t gemm_weight_buffer_floats(void);

/// Packs panels [panel_begin, panel_end) of X (n, k) row-major into `packed` (the whole
/// block's buffer; each panel lands at its own place, so threads may pack disjoint ranges).
void gemm_pack_input(const float *x, int n, int k, int panel_begin, int panel_end, float *packed);

/// Y[:, row_begin..<row_end] = X · W[row_begin..<row_end]ᵀ from the packed X, for float32
/// W (rows, k). Y is (n, ldy) row-major; `buffer` is this thread's weight buffer.
void gemm_f32(const float *packed, int n, int k, const float *w, int row_begin, int row_end,
              float *y, int ldy, float *buffer);

/// The same for Q8_0 W: int8 values (rows, k) with one scale per `group` values of a row.
void gemm_q8(const float *packed, int n, int k, const int8_t *w, const float *scales, int group,
             int row_begin, int row_end, float *y, int ldy, float *buffer);

/// The same for W stored as GGUF blocks of ggml type `type` (see ggml_matmul.h): F32, F16 and
/// BF16 values are converted while packing; for the block types each stripe of 32 rows is
/// dequantized into `rows_buffer` (32 × k floats) and packed from there. Either way the result
/// is gemm_f32's on the dequantized matrix. Returns 0, or -1 for a type Quill does not decode or
/// a k that is not a multiple of its block size.
int gemm_ggml(const float *packed, int n, int k, int type, const void *blocks, int row_begin, int row_end,
              float *y, int ldy, float *buffer, float *rows_buffer);

#ifdef __cplusplus
}
#endif

#endif
