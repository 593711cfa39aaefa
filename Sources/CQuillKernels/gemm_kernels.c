#include "gemm_kernels.h"

#include "ggml_matmul.h"
#include "ggml_quants.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Tile sizes. The inner kernel keeps a PANEL × STRIPE tile of Y in 24 of the 32 vector
// registers: per step of k it loads two vectors of packed weights and broadcasts PANEL input
// values, 24 FMAs against 14 loads. DEPTH bounds a packed stripe (STRIPE × DEPTH floats =
// 48 KB) so it stays in L1/L2 while every input panel passes over it.
enum { PANEL = 12, STRIPE = 32, DEPTH = 384 };

int gemm_panel_rows(void) { return PANEL; }

size_t gemm_packed_input_floats(int n, int k) {
    return (size_t)((n + PANEL - 1) / PANEL) * PANEL * (size_t)k;
}

size_t gemm_weight_buffer_floats(void) { return (size_t)STRIPE * DEPTH; }

// Where the weights come from: float32 rows, int8 rows with a scale per group, or GGUF F32, F16
// or BF16 rows (`raw`, any alignment, of ggml type `raw_type`), converted while packing.
typedef struct {
    const float *f32;
    const int8_t *q8;
    const float *scales;
    int group;
    int k;
    const uint8_t *raw;
    int raw_type;
} weight_source;

// Bytes per value of a `raw` source.
static inline int raw_bytes(const weight_source *w) { return w->raw_type == GGML_QUANT_F32 ? 4 : 2; }

static inline float weight_at(const weight_source *w, int row, int col) {
    const size_t index = (size_t)row * w->k + col;
    if (w->f32) return w->f32[index];
    if (w->raw) {
        // The exact conversions of ggml_quants.h (a half's NaN quieted as F16C does).
        const uint8_t *p = w->raw + index * raw_bytes(w);
        if (w->raw_type == GGML_QUANT_F16) return ggml_fp16_to_fp32((uint16_t)(p[0] | (p[1] << 8)));
        uint32_t bits = w->raw_type == GGML_QUANT_BF16 ? (uint32_t)(p[0] | (p[1] << 8)) << 16
                                                       : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        float value;
        memcpy(&value, &bits, sizeof value);
        return value;
    }
    return (float)w->q8[index] * w->scales[index / w->group];
}

#if defined(__x86_64__)

static int cpu_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

static int enabled = -1;

int gemm_available(void) {
    if (enabled < 0) enabled = cpu_supported();
    return enabled;
}

int gemm_force(int on) {
    const int previous = gemm_available();
    enabled = on ? cpu_supported() : 0;
    return previous;
}

// Transposes the 16 × 16 block held in r[0..15] (r[i] = row i) in place.
__attribute__((target("avx512f")))
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    // Each 128-bit lane L of r[4q + s] now holds rows 4q..4q+3 at column 4L + s.
    for (int q = 0; q < 4; q += 2)
        for (int s = 0; s < 4; ++s) {
            t[4 * q + s] = _mm512_shuffle_f32x4(r[4 * q + s], r[4 * (q + 1) + s], 0x88);
            t[4 * q + 4 + s] = _mm512_shuffle_f32x4(r[4 * q + s], r[4 * (q + 1) + s], 0xDD);
        }
    for (int s = 0; s < 4; ++s) {
        r[s] = _mm512_shuffle_f32x4(t[s], t[8 + s], 0x88);
        r[8 + s] = _mm512_shuffle_f32x4(t[s], t[8 + s], 0xDD);
        r[4 + s] = _mm512_shuffle_f32x4(t[4 + s], t[12 + s], 0x88);
        r[12 + s] = _mm512_shuffle_f32x4(t[4 + s], t[12 + s], 0xDD);
    }
}

// Sixteen consecutive weights of one row as floats.
__attribute__((target("avx512f")))
static inline __m512 load_weights16(const weight_source *w, int row, int col) {
    const size_t index = (size_t)row * w->k + col;
    if (w->f32) return _mm512_loadu_ps(w->f32 + index);
    if (w->raw) {
        const uint8_t *p = w->raw + index * raw_bytes(w);
        if (w->raw_type == GGML_QUANT_F32) return _mm512_loadu_ps((const float *)p);
        const __m256i halves = _mm256_loadu_si256((const __m256i *)p);
        if (w->raw_type == GGML_QUANT_F16) return _mm512_cvtph_ps(halves);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));  // BF16
    }
    const __m512 values = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(w->q8 + index))));
    return _mm512_mul_ps(values, _mm512_set1_ps(w->scales[index / w->group]));
}

// Packs rows [row0, row0 + rows) × columns [col0, col0 + depth) of W into `out` as
// out[kk · STRIPE + j], zero beyond `rows`, so the kernel reads one aligned stripe row per k.
__attribute__((target("avx512f")))
static void pack_stripe(const weight_source *w, int row0, int rows, int col0, int depth, float *out) {
    const int vector_groups = w->f32 || w->raw || w->group % 16 == 0;
    if (rows == STRIPE && depth % 16 == 0 && vector_groups) {
        for (int half = 0; half < 2; ++half)
            for (int k0 = 0; k0 < depth; k0 += 16) {
                __m512 r[16];
                for (int i = 0; i < 16; ++i) r[i] = load_weights16(w, row0 + half * 16 + i, col0 + k0);
                transpose16(r);
                for (int i = 0; i < 16; ++i) _mm512_store_ps(out + (k0 + i) * STRIPE + half * 16, r[i]);
            }
        return;
    }
    for (int kk = 0; kk < depth; ++kk)
        for (int j = 0; j < STRIPE; ++j)
            out[kk * STRIPE + j] = j < rows ? weight_at(w, row0 + j, col0 + kk) : 0.0f;
}

// Y tile (rows ≤ PANEL) · (columns under masks) += or = packed input panel · packed stripe over
// `depth` values of k.
__attribute__((target("avx512f")))
static void tile_kernel(const float *panel, const float *stripe, int depth, float *y, int ldy, int rows,
                        __mmask16 mask0, __mmask16 mask1, int accumulate) {
    __m512 acc[PANEL][2];
    for (int i = 0; i < PANEL; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int kk = 0; kk < depth; ++kk) {
        const __m512 w0 = _mm512_load_ps(stripe + kk * STRIPE);
        const __m512 w1 = _mm512_load_ps(stripe + kk * STRIPE + 16);
#pragma clang loop unroll(full)
        for (int i = 0; i < PANEL; ++i) {
            const __m512 x = _mm512_set1_ps(panel[kk * PANEL + i]);
            acc[i][0] = _mm512_fmadd_ps(w0, x, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(w1, x, acc[i][1]);
        }
    }
    for (int i = 0; i < rows; ++i) {
        float *yi = y + (size_t)i * ldy;
        if (accumulate) {
            acc[i][0] = _mm512_add_ps(acc[i][0], _mm512_maskz_loadu_ps(mask0, yi));
            acc[i][1] = _mm512_add_ps(acc[i][1], _mm512_maskz_loadu_ps(mask1, yi + 16));
        }
        _mm512_mask_storeu_ps(yi, mask0, acc[i][0]);
        _mm512_mask_storeu_ps(yi + 16, mask1, acc[i][1]);
    }
}

__attribute__((target("avx512f")))
static void pack_input(const float *x, int n, int k, int panel_begin, int panel_end, float *packed) {
    for (int p = panel_begin; p < panel_end; ++p) {
        const float *xp = x + (size_t)p * PANEL * k;
        float *out = packed + (size_t)p * PANEL * k;
        const int rows = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
        int k0 = 0;
        for (; k0 + 16 <= k; k0 += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_loadu_ps(xp + (size_t)i * k + k0) : _mm512_setzero_ps();
            transpose16(r);
            for (int i = 0; i < 16; ++i) _mm512_mask_storeu_ps(out + (k0 + i) * PANEL, (1u << PANEL) - 1, r[i]);
        }
        for (; k0 < k; ++k0)
            for (int i = 0; i < PANEL; ++i) out[k0 * PANEL + i] = i < rows ? xp[(size_t)i * k + k0] : 0.0f;
    }
}

void gemm_pack_input(const float *x, int n, int k, int panel_begin, int panel_end, float *packed) {
    if (gemm_available()) pack_input(x, n, k, panel_begin, panel_end, packed);
}

// Prefetches into L2 the part of the next stripe that corresponds to panel `panel` of
// `panels`, so packing it reads cache instead of waiting on memory.
__attribute__((target("avx512f")))
static inline void prefetch_next(const weight_source *w, int row0, int rows, int col0, int depth,
                                 int panel, int panels) {
    if (rows <= 0) return;
    const int element = w->f32 ? 4 : w->raw ? raw_bytes(w) : 1;
    const int lines_per_row = (depth * element + 63) / 64;
    const int total = rows * lines_per_row;
    const int from = (int)((long)total * panel / panels), to = (int)((long)total * (panel + 1) / panels);
    const char *base = w->f32 ? (const char *)w->f32 : w->raw ? (const char *)w->raw : (const char *)w->q8;
    for (int line = from; line < to; ++line) {
        const int r = line / lines_per_row, l = line % lines_per_row;
        _mm_prefetch(base + ((size_t)(row0 + r) * w->k + col0) * element + (size_t)l * 64, _MM_HINT_T1);
    }
}

__attribute__((target("avx512f")))
static void gemm_run(const float *packed, int n, int k, const weight_source *w, int row_begin, int row_end,
                     float *y, int ldy, float *buffer) {
    const int panels = (n + PANEL - 1) / PANEL;
    for (int row0 = row_begin; row0 < row_end; row0 += STRIPE) {
        const int rows = row_end - row0 < STRIPE ? row_end - row0 : STRIPE;
        const __mmask16 mask0 = rows >= 16 ? 0xFFFF : (__mmask16)((1u << rows) - 1);
        const __mmask16 mask1 = rows >= 32 ? 0xFFFF : rows > 16 ? (__mmask16)((1u << (rows - 16)) - 1) : 0;
        for (int col0 = 0; col0 < k; col0 += DEPTH) {
            const int depth = k - col0 < DEPTH ? k - col0 : DEPTH;
            pack_stripe(w, row0, rows, col0, depth, buffer);
            // The next stripe: the next columns of these rows, or the next rows from column 0.
            int next_row = row0, next_col = col0 + DEPTH;
            if (next_col >= k) { next_row = row0 + STRIPE; next_col = 0; }
            const int next_rows = next_row < row_end ? (row_end - next_row < STRIPE ? row_end - next_row : STRIPE) : 0;
            const int next_depth = k - next_col < DEPTH ? k - next_col : DEPTH;
            for (int p = 0; p < panels; ++p) {
                prefetch_next(w, next_row, next_rows, next_col, next_depth, p, panels);
                const int panel_rows = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
                tile_kernel(packed + (size_t)p * PANEL * k + (size_t)col0 * PANEL, buffer, depth,
                            y + (size_t)p * PANEL * ldy + row0, ldy, panel_rows, mask0, mask1, col0 > 0);
            }
        }
    }
}

void gemm_f32(const float *packed, int n, int k, const float *w, int row_begin, int row_end,
              float *y, int ldy, float *buffer) {
    if (!gemm_available()) return;
    const weight_source source = {w, NULL, NULL, 1, k, NULL, 0};
    gemm_run(packed, n, k, &source, row_begin, row_end, y, ldy, buffer);
}

void gemm_q8(const float *packed, int n, int k, const int8_t *w, const float *scales, int group,
             int row_begin, int row_end, float *y, int ldy, float *buffer) {
    if (!gemm_available()) return;
    const weight_source source = {NULL, w, scales, group, k, NULL, 0};
    gemm_run(packed, n, k, &source, row_begin, row_end, y, ldy, buffer);
}

int gemm_ggml(const float *packed, int n, int k, int type, const void *blocks, int row_begin, int row_end,
              float *y, int ldy, float *buffer, float *rows_buffer) {
    if (!gemm_available()) return 0;
    if (type == GGML_QUANT_F32 || type == GGML_QUANT_F16 || type == GGML_QUANT_BF16) {
        // One value per element: converted while packing, with no float32 copy of the rows.
        const weight_source source = {NULL, NULL, NULL, 1, k, (const uint8_t *)blocks, type};
        gemm_run(packed, n, k, &source, row_begin, row_end, y, ldy, buffer);
        return 0;
    }
    const weight_source source = {rows_buffer, NULL, NULL, 1, k, NULL, 0};
    for (int row0 = row_begin; row0 < row_end; row0 += STRIPE) {
        const int rows = row_end - row0 < STRIPE ? row_end - row0 : STRIPE;
        if (ggml_dequantize_rows(type, blocks, k, row0, row0 + rows, rows_buffer) != 0) return -1;
        // rows_buffer is W[row0 ..< row0 + rows] as float32: its row j goes to Y[:, row0 + j].
        gemm_run(packed, n, k, &source, 0, rows, y + row0, ldy, buffer);
    }
    return 0;
}

#else

int gemm_available(void) { return 0; }
int gemm_force(int on) { (void)on; return 0; }
void gemm_pack_input(const float *x, int n, int k, int panel_begin, int panel_end, float *packed) {}
void gemm_f32(const float *packed, int n, int k, const float *w, int row_begin, int row_end,
              float *y, int ldy, float *buffer) {}
void gemm_q8(const float *packed, int n, int k, const int8_t *w, const float *scales, int group,
             int row_begin, int row_end, float *y, int ldy, float *buffer) {}
int gemm_ggml(const float *packed, int n, int k, int type, const void *blocks, int row_begin, int row_end,
              float *y, int ldy, float *buffer, float *rows_buffer) { return 0; }

#endif
