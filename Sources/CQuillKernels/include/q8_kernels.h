// Streaming matrix products for QuillKernels (a few input rows; weights read once):
// - int8 (Q8_0): weights and activations in groups of `group` int8 values, each group with one
//   float32 scale. Vectorised with AVX-512 VNNI or 256-bit VNNI or AVX2 when the CPU has them
//   (checked at run time), with a portable loop otherwise;
// - float32: AVX-512, AVX2 + FMA or a portable loop.
#ifndef Q8_KERNELS_H
#define Q8_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Quantizes n floats (n a multiple of group): q = round(x / s), s = max|x| / 127 per group.
void q8_quantize(const float *x, int n, int group, int8_t *q, float *scales);

/// Y[b][r] = Σ_g scale_w[r][g] · scale_x[b][g] · Σ_i W[r][g·group + i] · X[b][g·group + i]
/// for rows r in [row_begin, row_end) and batch rows b in [0, batch): W (rows, cols) with
/// cols / group scales per row; X (batch, cols) with cols / group scales per row; Y (batch, rows).
/// On each path, a row's result is the same bits whatever `batch`, `row_begin` and `row_end` are.
void q8_matmul(const int8_t *w, const float *w_scales, const int8_t *x, const float *x_scales,
               int batch, int rows, int cols, int group, int row_begin, int row_end, float *y);

/// Weight rows [row_begin, row_end) of a Q8_0 matrix (cols values per row, cols / group scales
/// per row) as float32, written one after another to `out`.
void q8_dequantize_rows(const int8_t *w, const float *scales, int cols, int group, int row_begin,
                        int row_end, float *out);

/// Float32 products for a few input rows, memory-bound like sgemv: each weight vector is loaded
/// once and multiplied into every input row while the rows stay in L1 (up to 16 rows at a time;
/// more are taken 16 at a time). Y[b][r] = Σ_i W[r][i] · X[b][i] for r in [row_begin, row_end);
/// W (rows, cols), X (batch, cols), Y (batch, rows). Each element's arithmetic is the same
/// whatever `batch`, `row_begin` and `row_end` are, so a row's result is the same alone or in a
/// batch. Runs with AVX-512, AVX2 + FMA or a portable loop, chosen at run time.
void f32_matmul_small(const float *w, const float *x, int batch, int rows, int cols,
                      int row_begin, int row_end, float *y);

/// Which path f32_matmul_small uses: "avx512", "avx2" or "portable".
const char *f32_kernel_name(void);

/// 1 when f32_matmul_small uses a vector path (not the portable loop).
int f32_kernel_vectorised(void);

/// Selects f32_matmul_small's path by name ("portable", "avx2", "avx512", or "auto" to choose
/// again); returns 0 when this CPU cannot run it. For tests and benchmarks.
int f32_force_kernel(const char *name);

/// Selects a path by name ("portable", "avx2", "vnni256", "avx512vnni", or "auto" to choose again);
/// returns 0 when this CPU cannot run it. For tests and benchmarks.
int q8_force_kernel(const char *name);

/// Which vector path q8_matmul uses for groups of 64: "avx512vnni", "vnni256", "avx2" or "portable".
const char *q8_kernel_name(void);

#ifdef __cplusplus
}
#endif

#endif
