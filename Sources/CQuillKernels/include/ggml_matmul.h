// Matrix products on weights stored as GGUF blocks (ggml types, see ggml_quants.h): W (rows, k)
// with row r at `blocks + r · ggml_row_bytes(type, k)`, rows back to back.
//
// These dequantize weight rows exactly (ggml_dequantize_row) into a caller's scratch and
// multiply the float32 rows with the float32 kernels, so every result is the float32 product of
// the dequantized matrix: the streaming product is the same bits as f32_matmul_small on it.
#ifndef GGML_MATMUL_H
#define GGML_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Weight rows ggml_matmul_small dequantizes at a time: its scratch holds this many rows of k floats.
int ggml_matmul_scratch_rows(void);

/// Y[b][r] = Σ_i W[r][i] · X[b][i] for r in [row_begin, row_end) and b in [0, batch):
/// X (batch, k), Y (batch, ldy). Each element is the same bits as f32_matmul_small gives for the
/// dequantized row, so it does not depend on `batch`, `row_begin` or `row_end`. `scratch` holds
/// ggml_matmul_scratch_rows() × k floats. Returns 0, or -1 (writing nothing) for a type Quill
/// does not decode or a k that is not a multiple of its block size.
int ggml_matmul_small(int type, const void *blocks, int k, const float *x, int batch, int row_begin,
                      int row_end, float *y, int ldy, float *scratch);

/// Weight rows [row_begin, row_end) as float32, written one after another (k floats each) to
/// `out`. Returns 0, or -1 (writing nothing) as ggml_matmul_small.
int ggml_dequantize_rows(int type, const void *blocks, int k, int row_begin, int row_end, float *out);

#ifdef __cplusplus
}
#endif

#endif
