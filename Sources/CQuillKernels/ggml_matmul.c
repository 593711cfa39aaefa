#include "ggml_matmul.h"

#include "ggml_quants.h"
#include "q8_kernels.h"

// Rows dequantized per step of the streaming product: 8 rows of a 2048-wide matrix are 64 KB,
// which stay in L2 while every input row passes over them.
enum { SCRATCH_ROWS = 8 };

int ggml_matmul_scratch_rows(void) { return SCRATCH_ROWS; }

int ggml_dequantize_rows(int type, const void *blocks, int k, int row_begin, int row_end, float *out) {
    const size_t row_bytes = ggml_row_bytes(type, k);
    if (row_bytes == 0 && k != 0) return -1;
    const unsigned char *base = (const unsigned char *)blocks;
    for (int r = row_begin; r < row_end; ++r)
        if (ggml_dequantize_row(type, base + (size_t)r * row_bytes, out + (size_t)(r - row_begin) * k, k) != 0) return -1;
    return 0;
}

int ggml_matmul_small(int type, const void *blocks, int k, const float *x, int batch, int row_begin,
                      int row_end, float *y, int ldy, float *scratch) {
    if (ggml_row_bytes(type, k) == 0 && k != 0) return -1;
    for (int r0 = row_begin; r0 < row_end; r0 += SCRATCH_ROWS) {
        const int count = row_end - r0 < SCRATCH_ROWS ? row_end - r0 : SCRATCH_ROWS;
        ggml_dequantize_rows(type, blocks, k, r0, r0 + count, scratch);
        // The scratch is a (count, k) matrix whose row j is W's row r0 + j; its outputs go to
        // Y[:, r0 + j], so Y's row stride `ldy` is passed as the matrix's row count.
        f32_matmul_small(scratch, x, batch, ldy, k, 0, count, y + r0);
    }
    return 0;
}
