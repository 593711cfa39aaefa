#include "ggml_matmul.h"

#include "ggml_quants.h"
#include "q8_kernels.h"

// Rows dequantized per step of the streaming product: 4 rows of a 2048-wide matrix are 32 KB,
// which stay in L1 while every input row passes over them (measured on a 2048 × 2048 matrix:
// 2 and 4 rows are within noise of each other, 8 rows is slower for F16 and BF16).
enum { SCRATCH_ROWS = 4 };

static inline void prefetch(const char *p, size_t bytes) {
    for (size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset, 0, 3);
}

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
    const size_t row_bytes = ggml_row_bytes(type, k);
    if (row_bytes == 0 && k != 0) return -1;
    const char *base = (const char *)blocks;
    for (int r0 = row_begin; r0 < row_end; r0 += SCRATCH_ROWS) {
        const int count = row_end - r0 < SCRATCH_ROWS ? row_end - r0 : SCRATCH_ROWS;
        ggml_dequantize_rows(type, blocks, k, r0, r0 + count, scratch);
        // The next rows' blocks are fetched while these are multiplied, so that memory keeps
        // streaming (the float32 kernel's own prefetches point into the scratch).
        const int next = row_end - (r0 + count) < SCRATCH_ROWS ? row_end - (r0 + count) : SCRATCH_ROWS;
        prefetch(base + (size_t)(r0 + count) * row_bytes, (size_t)next * row_bytes);
        // The scratch is a (count, k) matrix whose row j is W's row r0 + j; its outputs go to
        // Y[:, r0 + j], so Y's row stride `ldy` is passed as the matrix's row count.
        f32_matmul_small(scratch, x, batch, ldy, k, 0, count, y + r0);
    }
    return 0;
}
