#include "ggml_quants.h"

#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Every result here is specified to the bit (see the header): no contraction of a · b + c into
// a fused multiply-add, whatever the compiler or target.
#pragma STDC FP_CONTRACT OFF

#define QK 32    // values per block of Q8_0, Q4_0, Q5_0
#define QK_K 256 // values per block of Q4_K, Q5_K, Q6_K

enum {
    Q8_0_BYTES = 2 + QK,                             // d, q[32]
    Q4_0_BYTES = 2 + QK / 2,                         // d, qs[16]
    Q5_0_BYTES = 2 + 4 + QK / 2,                     // d, qh[4], qs[16]
    K_SCALE_BYTES = 12,                              // eight 6-bit scales and eight 6-bit mins
    Q4_K_BYTES = 2 + 2 + K_SCALE_BYTES + QK_K / 2,   // d, dmin, scales[12], qs[128]
    Q5_K_BYTES = 2 + 2 + K_SCALE_BYTES + QK_K / 8 + QK_K / 2, // ... qh[32], qs[128]
    Q6_K_BYTES = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2, // ql[128], qh[64], scales[16], d
};

// ---------------------------------------------------------------------------------------------
// Tables

int64_t ggml_block_size(int type) {
    switch (type) {
    case GGML_QUANT_F32: case GGML_QUANT_F16: case GGML_QUANT_BF16: return 1;
    case GGML_QUANT_Q8_0: case GGML_QUANT_Q4_0: case GGML_QUANT_Q5_0: return QK;
    case GGML_QUANT_Q4_K: case GGML_QUANT_Q5_K: case GGML_QUANT_Q6_K: return QK_K;
    default: return 0;
    }
}

size_t ggml_block_bytes(int type) {
    switch (type) {
    case GGML_QUANT_F32: return 4;
    case GGML_QUANT_F16: case GGML_QUANT_BF16: return 2;
    case GGML_QUANT_Q8_0: return Q8_0_BYTES;
    case GGML_QUANT_Q4_0: return Q4_0_BYTES;
    case GGML_QUANT_Q5_0: return Q5_0_BYTES;
    case GGML_QUANT_Q4_K: return Q4_K_BYTES;
    case GGML_QUANT_Q5_K: return Q5_K_BYTES;
    case GGML_QUANT_Q6_K: return Q6_K_BYTES;
    default: return 0;
    }
}

size_t ggml_row_bytes(int type, int64_t n) {
    const int64_t block = ggml_block_size(type);
    if (block == 0 || n < 0 || n % block != 0) return 0;
    return (size_t)(n / block) * ggml_block_bytes(type);
}

// ---------------------------------------------------------------------------------------------
// Half and bfloat16 to float32

// Exact by construction: a normal half's exponent is rebiased (15 → 127) and its 10 mantissa bits
// move to the top of float32's 23; a subnormal half (m · 2⁻²⁴, m < 2¹⁰) is normal in float32 and
// is normalised by shifting m up to its leading bit; infinity keeps its sign; a NaN keeps sign
// and payload and gets the quiet bit, which is what F16C's vcvtph2ps does, so the paths agree.
static inline float f16_portable(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13) | (mantissa ? 0x00400000u : 0);
    } else if (exponent != 0) {
        bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        // Shift the leading 1 up to bit 10 (the implicit bit); each shift lowers the exponent.
        const int shift = __builtin_clz(mantissa) - 21;
        mantissa = (mantissa << shift) & 0x3ffu;
        bits = sign | ((uint32_t)(127 - 14 - shift) << 23) | (mantissa << 13);
    }
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static inline uint16_t load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

// The f16 scales of the quantised blocks, from two (possibly unaligned) bytes.
static inline float load_f16(const uint8_t *p) { return f16_portable(load_u16(p)); }

static void f16_row_portable(const uint8_t *in, float *out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = f16_portable(load_u16(in + 2 * i));
}

#if defined(__x86_64__)
__attribute__((target("f16c")))
static float f16_one_f16c(uint16_t h) { return _cvtsh_ss(h); }

__attribute__((target("avx,f16c")))
static void f16_row_f16c(const uint8_t *in, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128((const __m128i *)(in + 2 * i));
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; ++i) out[i] = _cvtsh_ss(load_u16(in + 2 * i));
}
#endif

// 0 = not chosen yet, 1 = portable, 2 = f16c. Racing first calls compute the same answer.
static _Atomic int f16_path = 0;

static int f16_choose(void) {
    int path = atomic_load_explicit(&f16_path, memory_order_relaxed);
    if (path != 0) return path;
    path = 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx")) path = 2;
#endif
    atomic_store_explicit(&f16_path, path, memory_order_relaxed);
    return path;
}

float ggml_fp16_to_fp32(uint16_t h) {
#if defined(__x86_64__)
    if (f16_choose() == 2) return f16_one_f16c(h);
#endif
    return f16_portable(h);
}

int ggml_f16_force_path(const char *name) {
    if (strcmp(name, "auto") == 0) {
        atomic_store_explicit(&f16_path, 0, memory_order_relaxed);
        return 1;
    }
    if (strcmp(name, "portable") == 0) {
        atomic_store_explicit(&f16_path, 1, memory_order_relaxed);
        return 1;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (strcmp(name, "f16c") == 0 && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx")) {
        atomic_store_explicit(&f16_path, 2, memory_order_relaxed);
        return 1;
    }
#endif
    return 0;
}

const char *ggml_f16_path_name(void) { return f16_choose() == 2 ? "f16c" : "portable"; }

static void f16_row(const uint8_t *in, float *out, int64_t n) {
#if defined(__x86_64__)
    if (f16_choose() == 2) { f16_row_f16c(in, out, n); return; }
#endif
    f16_row_portable(in, out, n);
}

// bfloat16 is the top half of a float32: exact, NaN payloads included.
static void bf16_row(const uint8_t *in, float *out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const uint32_t bits = (uint32_t)load_u16(in + 2 * i) << 16;
        memcpy(out + i, &bits, sizeof bits);
    }
}

// ---------------------------------------------------------------------------------------------
// One block of each quantised type to float32. Each element is computed in the order of ggml's
// dequantize_row_* (and gguf-py's numpy), so the results are the same bits.

// Q8_0: x[i] = d · q[i].
static inline void block_q8_0(const uint8_t *b, float *y) {
    const float d = load_f16(b);
    const int8_t *q = (const int8_t *)(b + 2);
    for (int i = 0; i < QK; ++i) y[i] = (float)q[i] * d;
}

// Q4_0: low nibbles are the first 16 values, high nibbles the last 16, offset by 8.
static inline void block_q4_0(const uint8_t *b, float *y) {
    const float d = load_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < QK / 2; ++j) {
        y[j] = (float)((qs[j] & 0x0f) - 8) * d;
        y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
    }
}

// Q5_0: as Q4_0, with the 5th bit of value j in bit j of the little-endian u32 qh, offset by 16.
static inline void block_q5_0(const uint8_t *b, float *y) {
    const float d = load_f16(b);
    const uint32_t qh = (uint32_t)b[2] | ((uint32_t)b[3] << 8) | ((uint32_t)b[4] << 16) | ((uint32_t)b[5] << 24);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < QK / 2; ++j) {
        const int high0 = (int)((qh >> j) & 1u) << 4;
        const int high1 = (int)((qh >> (j + QK / 2)) & 1u) << 4;
        y[j] = (float)(((qs[j] & 0x0f) | high0) - 16) * d;
        y[j + QK / 2] = (float)(((qs[j] >> 4) | high1) - 16) * d;
    }
}

// Scale and min of sub-block j (0..7) of Q4_K and Q5_K, 6 bits each, from the 12 scale bytes:
// sub-blocks 0-3 have theirs in the low 6 bits of bytes j (scale) and j + 4 (min); sub-blocks 4-7
// have their low 4 bits in the nibbles of byte j + 4 and their top 2 bits in the spare top bits
// of bytes j - 4 (scale) and j (min).
static inline void k_scale_min(int j, const uint8_t *s, int *scale, int *min) {
    if (j < 4) {
        *scale = s[j] & 63;
        *min = s[j + 4] & 63;
    } else {
        *scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q4_K: 4 groups of 64 values; in group g, the low nibbles of qs[32g ..< 32g + 32] are sub-block
// 2g and the high nibbles sub-block 2g + 1; x = (d · scale) · q − (dmin · min).
static inline void block_q4_K(const uint8_t *b, float *y) {
    const float d = load_f16(b);
    const float dmin = load_f16(b + 2);
    const uint8_t *scales = b + 4;
    const uint8_t *qs = b + 4 + K_SCALE_BYTES;
    for (int g = 0; g < QK_K / 64; ++g) {
        int scale, min;
        k_scale_min(2 * g, scales, &scale, &min);
        const float d1 = d * (float)scale, m1 = dmin * (float)min;
        k_scale_min(2 * g + 1, scales, &scale, &min);
        const float d2 = d * (float)scale, m2 = dmin * (float)min;
        const uint8_t *q = qs + 32 * g;
        float *out = y + 64 * g;
        for (int l = 0; l < 32; ++l) out[l] = d1 * (float)(q[l] & 0x0f) - m1;
        for (int l = 0; l < 32; ++l) out[l + 32] = d2 * (float)(q[l] >> 4) - m2;
    }
}

// Q5_K: as Q4_K, with the 5th bit of value l of sub-block s in bit s of qh[l].
static inline void block_q5_K(const uint8_t *b, float *y) {
    const float d = load_f16(b);
    const float dmin = load_f16(b + 2);
    const uint8_t *scales = b + 4;
    const uint8_t *qh = b + 4 + K_SCALE_BYTES;
    const uint8_t *qs = qh + QK_K / 8;
    for (int g = 0; g < QK_K / 64; ++g) {
        int scale, min;
        k_scale_min(2 * g, scales, &scale, &min);
        const float d1 = d * (float)scale, m1 = dmin * (float)min;
        k_scale_min(2 * g + 1, scales, &scale, &min);
        const float d2 = d * (float)scale, m2 = dmin * (float)min;
        const uint8_t *q = qs + 32 * g;
        float *out = y + 64 * g;
        for (int l = 0; l < 32; ++l) {
            const int high = ((qh[l] >> (2 * g)) & 1) << 4;
            out[l] = d1 * (float)((q[l] & 0x0f) | high) - m1;
        }
        for (int l = 0; l < 32; ++l) {
            const int high = ((qh[l] >> (2 * g + 1)) & 1) << 4;
            out[l + 32] = d2 * (float)((q[l] >> 4) | high) - m2;
        }
    }
}

// Q6_K: 2 halves of 128 values, each from ql[64] (low 4 bits), qh[32] (top 2 bits) and 8 int8
// scales (one per 16 values). In a half, value l + 32k (k = 0..3, l < 32) takes its low bits from
// the low (k even) or high (k odd) nibble of ql[l + 32 (k mod 2)] and its top bits from bits 2k,
// 2k + 1 of qh[l]; x = (d · scale) · (q − 32).
static inline void block_q6_K(const uint8_t *b, float *y) {
    const uint8_t *ql = b;
    const uint8_t *qh = b + QK_K / 2;
    const int8_t *sc = (const int8_t *)(b + QK_K / 2 + QK_K / 4);
    const float d = load_f16(b + QK_K / 2 + QK_K / 4 + QK_K / 16);
    for (int half = 0; half < 2; ++half) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

// ---------------------------------------------------------------------------------------------
// Rows

#define DEQUANTIZE_ROW(name, block, values, bytes)                                   \
    void ggml_dequantize_row_##name(const void *blocks, float *out, int64_t n) {     \
        const uint8_t *b = (const uint8_t *)blocks;                                  \
        for (int64_t i = 0; i < n / (values); ++i) block(b + i * (bytes), out + i * (values)); \
    }

DEQUANTIZE_ROW(q8_0, block_q8_0, QK, Q8_0_BYTES)
DEQUANTIZE_ROW(q4_0, block_q4_0, QK, Q4_0_BYTES)
DEQUANTIZE_ROW(q5_0, block_q5_0, QK, Q5_0_BYTES)
DEQUANTIZE_ROW(q4_K, block_q4_K, QK_K, Q4_K_BYTES)
DEQUANTIZE_ROW(q5_K, block_q5_K, QK_K, Q5_K_BYTES)
DEQUANTIZE_ROW(q6_K, block_q6_K, QK_K, Q6_K_BYTES)

void ggml_dequantize_row_f32(const void *blocks, float *out, int64_t n) {
    memcpy(out, blocks, (size_t)n * sizeof(float));
}

void ggml_dequantize_row_f16(const void *blocks, float *out, int64_t n) {
    f16_row((const uint8_t *)blocks, out, n);
}

void ggml_dequantize_row_bf16(const void *blocks, float *out, int64_t n) {
    bf16_row((const uint8_t *)blocks, out, n);
}

// Dot products: the row is dequantised one chunk (a block, or 256 values of F32/F16/BF16) at a
// time into a stack buffer and multiplied into 8 lane accumulators (see the header for the order).
enum { LANES = 8, CHUNK = 256 };

// acc[i mod 8] += w[i] · x[i] for i < count; count is a multiple of 8 except at a row's end.
static inline void accumulate(float acc[LANES], const float *w, const float *x, int64_t count) {
    int64_t i = 0;
    for (; i + LANES <= count; i += LANES) {
        for (int lane = 0; lane < LANES; ++lane) acc[lane] += w[i + lane] * x[i + lane];
    }
    for (int lane = 0; i < count; ++i, ++lane) acc[lane] += w[i] * x[i];
}

static inline float lanes_sum(const float acc[LANES]) {
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

#define DOT_ROW(name, block, values, bytes)                                            \
    float ggml_dot_row_##name(const void *blocks, const float *x, int64_t n) {         \
        const uint8_t *b = (const uint8_t *)blocks;                                    \
        float acc[LANES] = {0};                                                         \
        float w[values];                                                               \
        for (int64_t i = 0; i < n / (values); ++i) {                                   \
            block(b + i * (bytes), w);                                                 \
            accumulate(acc, w, x + i * (values), (values));                            \
        }                                                                              \
        return lanes_sum(acc);                                                         \
    }

DOT_ROW(q8_0, block_q8_0, QK, Q8_0_BYTES)
DOT_ROW(q4_0, block_q4_0, QK, Q4_0_BYTES)
DOT_ROW(q5_0, block_q5_0, QK, Q5_0_BYTES)
DOT_ROW(q4_K, block_q4_K, QK_K, Q4_K_BYTES)
DOT_ROW(q5_K, block_q5_K, QK_K, Q5_K_BYTES)
DOT_ROW(q6_K, block_q6_K, QK_K, Q6_K_BYTES)

// F32, F16 and BF16 rows of any length: chunks of 256 values (the lanes carry on across chunks
// because every chunk but the last is a multiple of 8 long).
#define DOT_ROW_SCALAR(name, decode, bytes)                                            \
    float ggml_dot_row_##name(const void *blocks, const float *x, int64_t n) {         \
        const uint8_t *b = (const uint8_t *)blocks;                                    \
        float acc[LANES] = {0};                                                         \
        float w[CHUNK];                                                                \
        for (int64_t start = 0; start < n; start += CHUNK) {                           \
            const int64_t count = n - start < CHUNK ? n - start : CHUNK;               \
            decode(b + start * (bytes), w, count);                                     \
            accumulate(acc, w, x + start, count);                                      \
        }                                                                              \
        return lanes_sum(acc);                                                         \
    }

static void f32_chunk(const uint8_t *in, float *out, int64_t n) { memcpy(out, in, (size_t)n * sizeof(float)); }

DOT_ROW_SCALAR(f32, f32_chunk, 4)
DOT_ROW_SCALAR(f16, f16_row, 2)
DOT_ROW_SCALAR(bf16, bf16_row, 2)

// ---------------------------------------------------------------------------------------------
// Dispatch by type id

typedef void (*dequantize_fn)(const void *, float *, int64_t);
typedef float (*dot_fn)(const void *, const float *, int64_t);

static int kernels(int type, dequantize_fn *dequantize, dot_fn *dot) {
    switch (type) {
    case GGML_QUANT_F32: *dequantize = ggml_dequantize_row_f32; *dot = ggml_dot_row_f32; return 1;
    case GGML_QUANT_F16: *dequantize = ggml_dequantize_row_f16; *dot = ggml_dot_row_f16; return 1;
    case GGML_QUANT_BF16: *dequantize = ggml_dequantize_row_bf16; *dot = ggml_dot_row_bf16; return 1;
    case GGML_QUANT_Q8_0: *dequantize = ggml_dequantize_row_q8_0; *dot = ggml_dot_row_q8_0; return 1;
    case GGML_QUANT_Q4_0: *dequantize = ggml_dequantize_row_q4_0; *dot = ggml_dot_row_q4_0; return 1;
    case GGML_QUANT_Q5_0: *dequantize = ggml_dequantize_row_q5_0; *dot = ggml_dot_row_q5_0; return 1;
    case GGML_QUANT_Q4_K: *dequantize = ggml_dequantize_row_q4_K; *dot = ggml_dot_row_q4_K; return 1;
    case GGML_QUANT_Q5_K: *dequantize = ggml_dequantize_row_q5_K; *dot = ggml_dot_row_q5_K; return 1;
    case GGML_QUANT_Q6_K: *dequantize = ggml_dequantize_row_q6_K; *dot = ggml_dot_row_q6_K; return 1;
    default: return 0;
    }
}

int ggml_dequantize_row(int type, const void *blocks, float *out, int64_t n) {
    dequantize_fn dequantize;
    dot_fn dot;
    if (!kernels(type, &dequantize, &dot) || n < 0 || n % ggml_block_size(type) != 0) return -1;
    dequantize(blocks, out, n);
    return 0;
}

int ggml_dot_row(int type, const void *blocks, const float *x, int64_t n, float *result) {
    dequantize_fn dequantize;
    dot_fn dot;
    if (!kernels(type, &dequantize, &dot) || n < 0 || n % ggml_block_size(type) != 0) return -1;
    *result = dot(blocks, x, n);
    return 0;
}
