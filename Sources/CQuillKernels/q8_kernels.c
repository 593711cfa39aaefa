#include "q8_kernels.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

void q8_quantize(const float *x, int n, int group, int8_t *q, float *scales) {
    for (int g = 0; g < n / group; ++g) {
        const float *xg = x + (size_t)g * group;
        float largest = 0;
        int finite = 1;
        for (int i = 0; i < group; ++i) {
            largest = fmaxf(largest, fabsf(xg[i]));
            finite &= isfinite(xg[i]) != 0;
        }
        // A NaN or infinite activation has no int8 form: a NaN scale carries it into every
        // product of the group, so the logits show it (fmaxf alone would skip a NaN, and the
        // group would quietly read as zeros).
        const float scale = finite ? largest / 127.0f : NAN;
        const float inverse = finite && scale > 0 ? 1.0f / scale : 0.0f;
        scales[g] = scale;
        for (int i = 0; i < group; ++i) q[(size_t)g * group + i] = (int8_t)lrintf(xg[i] * inverse);
    }
}

// Portable: exact int32 sums per group, then scaled.
static float dot_portable(const int8_t *w, const float *ws, const int8_t *x, const float *xs, int cols, int group) {
    float sum = 0;
    for (int g = 0; g < cols / group; ++g) {
        int32_t acc = 0;
        for (int i = 0; i < group; ++i) acc += (int32_t)w[g * group + i] * (int32_t)x[g * group + i];
        sum += (float)acc * ws[g] * xs[g];
    }
    return sum;
}

#if defined(__x86_64__)
__attribute__((target("avx2")))
static inline float horizontal_sum256(__m256 v) {
    __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    half = _mm_add_ps(half, _mm_movehl_ps(half, half));
    half = _mm_add_ss(half, _mm_movehdup_ps(half));
    return _mm_cvtss_f32(half);
}

// AVX2: maddubs needs unsigned × signed, so multiply |w| by x carrying w's sign.
__attribute__((target("avx2,fma")))
static inline __m256i dot32_avx2(__m256i w, __m256i x) {
    const __m256i aw = _mm256_sign_epi8(w, w);
    const __m256i sx = _mm256_sign_epi8(x, w);
    const __m256i pairs = _mm256_maddubs_epi16(aw, sx);  // 16 × int16 (|w|·x ≤ 127·127 twice: fits)
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));  // 8 × int32
}

__attribute__((target("avx2,fma")))
static float dot_avx2(const int8_t *w, const float *ws, const int8_t *x, const float *xs, int cols, int group) {
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < cols / group; ++g) {
        __m256i sum = _mm256_setzero_si256();
        for (int i = 0; i < group; i += 32) {
            if ((i & 63) == 0) _mm_prefetch((const char *)(w + 4 * cols + g * group + i), _MM_HINT_T0);
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + g * group + i));
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + g * group + i));
            sum = _mm256_add_epi32(sum, dot32_avx2(wv, xv));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(ws[g] * xs[g]), acc);
    }
    return horizontal_sum256(acc);
}

// AVX-512 VNNI: vpdpbusd does 64 unsigned × signed byte products per instruction.
// One group's exact int32 sums (64 products per instruction; |w| as unsigned bytes and x with w's
// sign folded in, w = 0 giving 0 either way).
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline))
static inline __m512i group_sum_vnni(const int8_t *w, const int8_t *x, int group, int cols) {
    __m512i sum = _mm512_setzero_si512();
    for (int i = 0; i < group; i += 64) {
        // Fetch a few rows ahead: rows are read once, so keep several lines in flight.
        _mm_prefetch((const char *)(w + 4 * cols + i), _MM_HINT_T0);
        const __m512i wv = _mm512_loadu_si512((const void *)(w + i));
        const __m512i xv = _mm512_loadu_si512((const void *)(x + i));
        const __mmask64 negative = _mm512_movepi8_mask(wv);
        sum = _mm512_dpbusd_epi32(sum, _mm512_abs_epi8(wv), _mm512_mask_sub_epi8(xv, negative, _mm512_setzero_si512(), xv));
    }
    return sum;
}

// Even groups add into one accumulator and odd groups into another, summed at the end: two
// chains of scaled multiply-adds instead of one, so a row is not held up by the add latency
// (weights in L2: 48 → 81 GB/s; streaming at 2 threads 37 → 44 GB/s, fbench). q8_batch_rows
// does the same per input row.
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline))
static inline float dot_vnni_groups(const int8_t *w, const float *ws, const int8_t *x, const float *xs, int cols,
                                    const int group) {
    const int groups = cols / group;
    __m512 even = _mm512_setzero_ps(), odd = _mm512_setzero_ps();
    int g = 0;
    for (; g + 1 < groups; g += 2) {
        const __m512i s0 = group_sum_vnni(w + g * group, x + g * group, group, cols);
        const __m512i s1 = group_sum_vnni(w + (g + 1) * group, x + (g + 1) * group, group, cols);
        even = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_set1_ps(ws[g] * xs[g]), even);
        odd = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_set1_ps(ws[g + 1] * xs[g + 1]), odd);
    }
    if (g < groups) {
        const __m512i s0 = group_sum_vnni(w + g * group, x + g * group, group, cols);
        even = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_set1_ps(ws[g] * xs[g]), even);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(even, odd));
}

// Groups of 64 (one vector each, the common case) get their own copy with the group size a
// constant, so the two groups' loads and products interleave (weights in L2: 45 → 80 GB/s).
__attribute__((target("avx512f,avx512bw,avx512vnni")))
static float dot_avx512vnni(const int8_t *w, const float *ws, const int8_t *x, const float *xs, int cols, int group) {
    return group == 64 ? dot_vnni_groups(w, ws, x, xs, cols, 64) : dot_vnni_groups(w, ws, x, xs, cols, group);
}

// 256-bit VNNI (AVX-512 VL) for groups of 32, e.g. 288- or 1376-wide rows that 64 does not divide.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
static float dot_vnni256(const int8_t *w, const float *ws, const int8_t *x, const float *xs, int cols, int group) {
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < cols / group; ++g) {
        __m256i sum = _mm256_setzero_si256();
        for (int i = 0; i < group; i += 32) {
            if ((i & 63) == 0) _mm_prefetch((const char *)(w + 4 * cols + g * group + i), _MM_HINT_T0);
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + g * group + i));
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + g * group + i));
            sum = _mm256_dpbusd_epi32(sum, _mm256_abs_epi8(wv), _mm256_sign_epi8(xv, wv));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(ws[g] * xs[g]), acc);
    }
    return horizontal_sum256(acc);
}
#endif

typedef float (*dot_fn)(const int8_t *, const float *, const int8_t *, const float *, int, int);

// The CPU check runs once per group size class; racing threads compute the same answer.
static dot_fn by64 = 0, by32 = 0;

static dot_fn choose(int group, const char **name) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (group % 64 == 0 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) {
        *name = "avx512vnni";
        return dot_avx512vnni;
    }
    if (group % 32 == 0 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw")) {
        *name = "vnni256";
        return dot_vnni256;
    }
    if (group % 32 == 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *name = "avx2";
        return dot_avx2;
    }
#endif
    *name = "portable";
    return dot_portable;
}

const char *q8_kernel_name(void) {
    const char *name;
    const dot_fn chosen = by64 ? by64 : choose(64, &name);
    if (chosen == dot_portable) return "portable";
#if defined(__x86_64__)
    if (chosen == dot_avx2) return "avx2";
    if (chosen == dot_avx512vnni) return "avx512vnni";
    if (chosen == dot_vnni256) return "vnni256";
#endif
    return "portable";
}

int q8_force_kernel(const char *name) {
    if (strcmp(name, "portable") == 0) { by64 = by32 = dot_portable; return 1; }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        by64 = by32 = dot_avx2;
        return 1;
    }
    if (strcmp(name, "vnni256") == 0 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw")) {
        by64 = by32 = dot_vnni256;
        return 1;
    }
    if (strcmp(name, "avx512vnni") == 0 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) {
        by64 = dot_avx512vnni;
        by32 = dot_avx2;
        return 1;
    }
#endif
    if (strcmp(name, "auto") == 0) { by64 = by32 = 0; return 1; }
    return 0;
}

#if defined(__x86_64__)
// Several input rows against each weight row (decoding sequences together): the weight group's
// absolute values and sign mask are computed once and used for every input row, and each row
// has its own accumulator, so the rows' dependency chains run side by side. Inlined with a
// constant `batch` (see the switch below) so the accumulators stay in registers.
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline))
static inline void q8_batch_rows(const int8_t *w, const float *ws, const int8_t *x, const float *xs, const int batch,
                                 int rows, int cols, const int group, int row_begin, int row_end, float *y) {
    const int groups = cols / group;
    for (int r = row_begin; r < row_end; ++r) {
        const int8_t *wr = w + (size_t)r * cols;
        const float *wsr = ws + (size_t)r * groups;
        // even[b] sums the even groups of input row b and odd[b] the odd ones, as dot_avx512vnni
        // does for one row.
        __m512 even[8], odd[8];
        for (int b = 0; b < batch; ++b) even[b] = odd[b] = _mm512_setzero_ps();
        for (int g = 0; g < groups; ++g) {
            __m512i sum[8];
            for (int b = 0; b < batch; ++b) sum[b] = _mm512_setzero_si512();
            for (int i = 0; i < group; i += 64) {
                _mm_prefetch((const char *)(wr + 4 * cols + g * group + i), _MM_HINT_T0);
                const __m512i wv = _mm512_loadu_si512((const void *)(wr + g * group + i));
                const __m512i aw = _mm512_abs_epi8(wv);
                const __mmask64 negative = _mm512_movepi8_mask(wv);
                for (int b = 0; b < batch; ++b) {
                    const __m512i xv = _mm512_loadu_si512((const void *)(x + (size_t)b * cols + g * group + i));
                    sum[b] = _mm512_dpbusd_epi32(sum[b], aw, _mm512_mask_sub_epi8(xv, negative, _mm512_setzero_si512(), xv));
                }
            }
            if (g & 1) {
                for (int b = 0; b < batch; ++b)
                    odd[b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[b]), _mm512_set1_ps(wsr[g] * xs[(size_t)b * groups + g]), odd[b]);
            } else {
                for (int b = 0; b < batch; ++b)
                    even[b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[b]), _mm512_set1_ps(wsr[g] * xs[(size_t)b * groups + g]), even[b]);
            }
        }
        for (int b = 0; b < batch; ++b) y[(size_t)b * rows + r] = _mm512_reduce_add_ps(_mm512_add_ps(even[b], odd[b]));
    }
}

// The same for groups of exactly 32 (rows that 64 does not divide, e.g. 288 or 1376 wide): each
// 64-byte step holds two groups, so the scales form a vector of two halves; a final half step is
// masked.
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline))
static inline void q8_batch_rows32(const int8_t *w, const float *ws, const int8_t *x, const float *xs, const int batch,
                                   int rows, int cols, int row_begin, int row_end, float *y) {
    const int groups = cols / 32;
    for (int r = row_begin; r < row_end; ++r) {
        const int8_t *wr = w + (size_t)r * cols;
        const float *wsr = ws + (size_t)r * groups;
        __m512 acc[16];
        for (int b = 0; b < batch; ++b) acc[b] = _mm512_setzero_ps();
        for (int c = 0; c < cols; c += 64) {
            const int whole = cols - c >= 64;
            const __mmask64 bytes = whole ? ~(__mmask64)0 : ((__mmask64)1 << (cols - c)) - 1;
            _mm_prefetch((const char *)(wr + 4 * cols + c), _MM_HINT_T0);
            const __m512i wv = _mm512_maskz_loadu_epi8(bytes, wr + c);
            const __m512i aw = _mm512_abs_epi8(wv);
            const __mmask64 negative = _mm512_movepi8_mask(wv);
            const int g = c / 32;
            for (int b = 0; b < batch; ++b) {
                const __m512i xv = _mm512_maskz_loadu_epi8(bytes, x + (size_t)b * cols + c);
                const __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), aw,
                                                        _mm512_mask_sub_epi8(xv, negative, _mm512_setzero_si512(), xv));
                const float *xsb = xs + (size_t)b * groups;
                const __m512 scale = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(wsr[g] * xsb[g]),
                                                          _mm512_set1_ps(whole ? wsr[g + 1] * xsb[g + 1] : 0.0f));
                acc[b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[b]);
            }
        }
        for (int b = 0; b < batch; ++b) y[(size_t)b * rows + r] = _mm512_reduce_add_ps(acc[b]);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void q8_batch_vnni32(const int8_t *w, const float *ws, const int8_t *x, const float *xs, int batch,
                            int rows, int cols, int row_begin, int row_end, float *y) {
    switch (batch) {
#define CASE(B) case B: q8_batch_rows32(w, ws, x, xs, B, rows, cols, row_begin, row_end, y); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9)
        CASE(10) CASE(11) CASE(12) CASE(13) CASE(14) CASE(15) CASE(16)
#undef CASE
        default:  // more rows than the kernels unroll for: groups of 16, each row's sums unchanged
            for (int b = 0; b < batch; b += 16)
                q8_batch_vnni32(w, ws, x + (size_t)b * cols, xs + (size_t)b * (cols / 32), batch - b < 16 ? batch - b : 16,
                                rows, cols, row_begin, row_end, y + (size_t)b * rows);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void q8_batch_avx512vnni(const int8_t *w, const float *ws, const int8_t *x, const float *xs, int batch,
                                int rows, int cols, int group, int row_begin, int row_end, float *y) {
    switch (batch) {
#define CASE(B) case B: if (group == 64) q8_batch_rows(w, ws, x, xs, B, rows, cols, 64, row_begin, row_end, y); \
                      else q8_batch_rows(w, ws, x, xs, B, rows, cols, group, row_begin, row_end, y); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
        default:  // more rows than fit the registers (two accumulators and a sum per input row): groups
                  // of 8, each row's sums unchanged; the weight rows are then re-read from cache
            for (int b = 0; b < batch; b += 8)
                q8_batch_avx512vnni(w, ws, x + (size_t)b * cols, xs + (size_t)b * (cols / group), batch - b < 8 ? batch - b : 8,
                                    rows, cols, group, row_begin, row_end, y + (size_t)b * rows);
    }
}
#endif

void q8_matmul(const int8_t *w, const float *w_scales, const int8_t *x, const float *x_scales,
               int batch, int rows, int cols, int group, int row_begin, int row_end, float *y) {
    const char *name;
    dot_fn dot;
    if (group % 64 == 0) {
        if (!by64) by64 = choose(group, &name);
        dot = by64;
    } else if (group % 32 == 0) {
        if (!by32) by32 = choose(group, &name);
        dot = by32;
    } else {
        dot = dot_portable;
    }
    const int groups = cols / group;
#if defined(__x86_64__)
    // The batch kernels give each row exactly the sums the one-row path gives it (the same vector
    // steps, scale products, accumulation order and final reduction), so a row's result does not
    // depend on how many rows share the call. dot_avx512vnni already is the one-row form of
    // q8_batch_rows; dot_vnni256 is not the one-row form of q8_batch_rows32 (it sums 256-bit
    // halves), so groups of 32 take the batch kernel for one row too.
    if (batch > 1 && dot == dot_avx512vnni) {
        q8_batch_avx512vnni(w, w_scales, x, x_scales, batch, rows, cols, group, row_begin, row_end, y);
        return;
    }
    if (dot == dot_vnni256 && group == 32) {
        q8_batch_vnni32(w, w_scales, x, x_scales, batch, rows, cols, row_begin, row_end, y);
        return;
    }
#endif
    // Each weight row is read from memory once and reused for every batch row while in cache.
    for (int r = row_begin; r < row_end; ++r) {
        const int8_t *wr = w + (size_t)r * cols;
        const float *wsr = w_scales + (size_t)r * groups;
        for (int b = 0; b < batch; ++b) {
            y[(size_t)b * rows + r] = dot(wr, wsr, x + (size_t)b * cols, x_scales + (size_t)b * groups, cols, group);
        }
    }
}

// Float32 products for a few rows. Every output element Y[b][r] is one accumulator vector per
// (b, r) fed in column order (16 or 8 columns per step, a masked tail), then one fixed
// horizontal sum; how many rows share a call or a pass only changes which elements are computed
// side by side, never the arithmetic of one element. So a row gets the same bits alone or in a
// batch of any size, and whatever weight rows a thread's chunk holds.
#if defined(__x86_64__)
// Always inlined with a constant `batch` (see the switch below), so the accumulators live in
// registers instead of a stack array.
__attribute__((target("avx512f"), always_inline))
static inline void f32_small_rows(const float *w, const float *x, const int batch, int rows, int cols,
                                  int row_begin, int row_end, float *y) {
    const int vector_cols = cols & ~15;
    const __mmask16 tail = (__mmask16)((1u << (cols - vector_cols)) - 1);
    int r = row_begin;
    // Up to 8 inputs: two weight rows per pass, so each input vector loaded feeds two FMAs
    // (16 accumulators + 2 weights + 1 input fit the 32 vector registers).
    if (batch <= 8) {
        for (; r + 1 < row_end; r += 2) {
            const float *w0 = w + (size_t)r * cols, *w1 = w0 + cols;
            __m512 a0[8], a1[8];
            for (int b = 0; b < batch; ++b) a0[b] = a1[b] = _mm512_setzero_ps();
            for (int i = 0; i < vector_cols; i += 16) {
                // One input streams faster without software prefetch (the hardware prefetcher
                // alone: 39 against 35 GB/s, 1 thread, Zen 5); several need it to overlap
                // their FMAs with the loads. `batch` is a constant here, so the test is free.
                if (batch > 1) {
                    _mm_prefetch((const char *)(w0 + 8 * cols + i), _MM_HINT_T0);
                    _mm_prefetch((const char *)(w1 + 8 * cols + i), _MM_HINT_T0);
                }
                const __m512 v0 = _mm512_loadu_ps(w0 + i), v1 = _mm512_loadu_ps(w1 + i);
                for (int b = 0; b < batch; ++b) {
                    const __m512 xv = _mm512_loadu_ps(x + (size_t)b * cols + i);
                    a0[b] = _mm512_fmadd_ps(v0, xv, a0[b]);
                    a1[b] = _mm512_fmadd_ps(v1, xv, a1[b]);
                }
            }
            if (tail) {
                const __m512 v0 = _mm512_maskz_loadu_ps(tail, w0 + vector_cols);
                const __m512 v1 = _mm512_maskz_loadu_ps(tail, w1 + vector_cols);
                for (int b = 0; b < batch; ++b) {
                    const __m512 xv = _mm512_maskz_loadu_ps(tail, x + (size_t)b * cols + vector_cols);
                    a0[b] = _mm512_fmadd_ps(v0, xv, a0[b]);
                    a1[b] = _mm512_fmadd_ps(v1, xv, a1[b]);
                }
            }
            for (int b = 0; b < batch; ++b) {
                y[(size_t)b * rows + r] = _mm512_reduce_add_ps(a0[b]);
                y[(size_t)b * rows + r + 1] = _mm512_reduce_add_ps(a1[b]);
            }
        }
    }
    for (; r < row_end; ++r) {
        const float *wr = w + (size_t)r * cols;
        __m512 acc[16];
        for (int b = 0; b < batch; ++b) acc[b] = _mm512_setzero_ps();
        for (int i = 0; i < vector_cols; i += 16) {
            if (batch > 1) _mm_prefetch((const char *)(wr + 4 * cols + i), _MM_HINT_T0);
            const __m512 wv = _mm512_loadu_ps(wr + i);
            for (int b = 0; b < batch; ++b)
                acc[b] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + (size_t)b * cols + i), acc[b]);
        }
        if (tail) {
            const __m512 wv = _mm512_maskz_loadu_ps(tail, wr + vector_cols);
            for (int b = 0; b < batch; ++b)
                acc[b] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(tail, x + (size_t)b * cols + vector_cols), acc[b]);
        }
        for (int b = 0; b < batch; ++b) y[(size_t)b * rows + r] = _mm512_reduce_add_ps(acc[b]);
    }
}

__attribute__((target("avx512f")))
static void f32_small_avx512(const float *w, const float *x, int batch, int rows, int cols,
                             int row_begin, int row_end, float *y) {
    switch (batch) {
#define CASE(B) case B: f32_small_rows(w, x, B, rows, cols, row_begin, row_end, y); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
        CASE(9) CASE(10) CASE(11) CASE(12) CASE(13) CASE(14) CASE(15) CASE(16)
#undef CASE
    }
}

// The same with 256-bit vectors (AVX2 and FMA), 16 registers: two weight rows per pass up to 6
// inputs.
__attribute__((target("avx2,fma"), always_inline))
static inline void f32_small_rows_avx2(const float *w, const float *x, const int batch, int rows, int cols,
                                       int row_begin, int row_end, float *y) {
    const int vector_cols = cols & ~7;
    const int left = cols - vector_cols;
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    int r = row_begin;
    if (batch <= 6) {
        for (; r + 1 < row_end; r += 2) {
            const float *w0 = w + (size_t)r * cols, *w1 = w0 + cols;
            __m256 a0[6], a1[6];
            for (int b = 0; b < batch; ++b) a0[b] = a1[b] = _mm256_setzero_ps();
            for (int i = 0; i < vector_cols; i += 8) {
                if ((i & 15) == 0) {
                    _mm_prefetch((const char *)(w0 + 8 * cols + i), _MM_HINT_T0);
                    _mm_prefetch((const char *)(w1 + 8 * cols + i), _MM_HINT_T0);
                }
                const __m256 v0 = _mm256_loadu_ps(w0 + i), v1 = _mm256_loadu_ps(w1 + i);
                for (int b = 0; b < batch; ++b) {
                    const __m256 xv = _mm256_loadu_ps(x + (size_t)b * cols + i);
                    a0[b] = _mm256_fmadd_ps(v0, xv, a0[b]);
                    a1[b] = _mm256_fmadd_ps(v1, xv, a1[b]);
                }
            }
            if (left) {
                const __m256 v0 = _mm256_maskload_ps(w0 + vector_cols, tail);
                const __m256 v1 = _mm256_maskload_ps(w1 + vector_cols, tail);
                for (int b = 0; b < batch; ++b) {
                    const __m256 xv = _mm256_maskload_ps(x + (size_t)b * cols + vector_cols, tail);
                    a0[b] = _mm256_fmadd_ps(v0, xv, a0[b]);
                    a1[b] = _mm256_fmadd_ps(v1, xv, a1[b]);
                }
            }
            for (int b = 0; b < batch; ++b) {
                y[(size_t)b * rows + r] = horizontal_sum256(a0[b]);
                y[(size_t)b * rows + r + 1] = horizontal_sum256(a1[b]);
            }
        }
    }
    for (; r < row_end; ++r) {
        const float *wr = w + (size_t)r * cols;
        __m256 acc[16];
        for (int b = 0; b < batch; ++b) acc[b] = _mm256_setzero_ps();
        for (int i = 0; i < vector_cols; i += 8) {
            if ((i & 15) == 0) _mm_prefetch((const char *)(wr + 4 * cols + i), _MM_HINT_T0);
            const __m256 wv = _mm256_loadu_ps(wr + i);
            for (int b = 0; b < batch; ++b)
                acc[b] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (size_t)b * cols + i), acc[b]);
        }
        if (left) {
            const __m256 wv = _mm256_maskload_ps(wr + vector_cols, tail);
            for (int b = 0; b < batch; ++b)
                acc[b] = _mm256_fmadd_ps(wv, _mm256_maskload_ps(x + (size_t)b * cols + vector_cols, tail), acc[b]);
        }
        for (int b = 0; b < batch; ++b) y[(size_t)b * rows + r] = horizontal_sum256(acc[b]);
    }
}

__attribute__((target("avx2,fma")))
static void f32_small_avx2(const float *w, const float *x, int batch, int rows, int cols,
                           int row_begin, int row_end, float *y) {
    switch (batch) {
#define CASE(B) case B: f32_small_rows_avx2(w, x, B, rows, cols, row_begin, row_end, y); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
        CASE(9) CASE(10) CASE(11) CASE(12) CASE(13) CASE(14) CASE(15) CASE(16)
#undef CASE
    }
}
#endif

// Portable: eight running sums per element, each fed every eighth column, added pairwise at the end.
static void f32_small_portable(const float *w, const float *x, int batch, int rows, int cols,
                               int row_begin, int row_end, float *y) {
    for (int r = row_begin; r < row_end; ++r) {
        const float *wr = w + (size_t)r * cols;
        for (int b = 0; b < batch; ++b) {
            const float *xb = x + (size_t)b * cols;
            float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int i = 0; i < cols; ++i) lane[i & 7] += wr[i] * xb[i];
            y[(size_t)b * rows + r] = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
        }
    }
}

typedef void (*f32_fn)(const float *, const float *, int, int, int, int, int, float *);
static f32_fn f32_chosen = 0;  // racing threads choose the same

static f32_fn f32_choose(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return f32_small_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return f32_small_avx2;
#endif
    return f32_small_portable;
}

void f32_matmul_small(const float *w, const float *x, int batch, int rows, int cols,
                      int row_begin, int row_end, float *y) {
    if (!f32_chosen) f32_chosen = f32_choose();
    for (int b = 0; b < batch; b += 16)  // the kernels unroll for up to 16 rows
        f32_chosen(w, x + (size_t)b * cols, batch - b < 16 ? batch - b : 16, rows, cols, row_begin, row_end,
                   y + (size_t)b * rows);
}

const char *f32_kernel_name(void) {
    if (!f32_chosen) f32_chosen = f32_choose();
#if defined(__x86_64__)
    if (f32_chosen == f32_small_avx512) return "avx512";
    if (f32_chosen == f32_small_avx2) return "avx2";
#endif
    return "portable";
}

int f32_kernel_vectorised(void) {
    if (!f32_chosen) f32_chosen = f32_choose();
    return f32_chosen != f32_small_portable;
}

int f32_force_kernel(const char *name) {
    if (strcmp(name, "auto") == 0) { f32_chosen = f32_choose(); return 1; }
    if (strcmp(name, "portable") == 0) { f32_chosen = f32_small_portable; return 1; }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (strcmp(name, "avx512") == 0 && __builtin_cpu_supports("avx512f")) { f32_chosen = f32_small_avx512; return 1; }
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        f32_chosen = f32_small_avx2;
        return 1;
    }
#endif
    return 0;
}

void q8_dequantize_rows(const int8_t *w, const float *scales, int cols, int group, int row_begin,
                        int row_end, float *out) {
    const int groups = cols / group;
    for (int r = row_begin; r < row_end; ++r) {
        const int8_t *wr = w + (size_t)r * cols;
        const float *sr = scales + (size_t)r * groups;
        float *o = out + (size_t)(r - row_begin) * cols;
        for (int g = 0; g < groups; ++g)
            for (int i = 0; i < group; ++i) o[g * group + i] = (float)wr[g * group + i] * sr[g];
    }
}
