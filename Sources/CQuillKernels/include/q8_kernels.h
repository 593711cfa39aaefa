// Int8 (Q8_0) matrix products for QuillKernels: weights and activations in groups of
// `group` int8 values, each group with one float32 scale. Vectorised with AVX-512 VNNI or
// 256-bit VNNI or AVX2 when the CPU has them (checked at run time), with a portable loop otherwise.
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
void q8_matmul(const int8_t *w, const float *w_scales, const int8_t *x, const float *x_scales,
               int batch, int rows, int cols, int group, int row_begin, int row_end, float *y);

/// Weight rows [row_begin, row_end) of a Q8_0 matrix (cols values per row, cols / group scales
/// per row) as float32, written one after another to `out`.
void q8_dequantize_rows(const int8_t *w, const float *scales, int cols, int group, int row_begin,
                        int row_end, float *out);

/// Float32 products for a few input rows (1 < batch ≤ 16), memory-bound like sgemv: each weight
/// vector is loaded once and multiplied into every input row while the rows stay in L1.
/// Y[b][r] = Σ_i W[r][i] · X[b][i] for r in [row_begin, row_end); W (rows, cols), X (batch, cols),
/// Y (batch, rows). Returns 0 when this CPU has no AVX-512 (the caller then uses sgemv per row).
int f32_matmul_small(const float *w, const float *x, int batch, int rows, int cols,
                     int row_begin, int row_end, float *y);

/// Selects a path by name ("portable", "avx2", "vnni256", "avx512vnni", or "auto" to choose again);
/// returns 0 when this CPU cannot run it. For tests and benchmarks.
int q8_force_kernel(const char *name);

/// Which vector path q8_matmul uses for groups of 64: "avx512vnni", "vnni256", "avx2" or "portable".
const char *q8_kernel_name(void);

#ifdef __cplusplus
}
#endif

#endif
