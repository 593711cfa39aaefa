#include "gemm_int8.h"

#include "gemm_kernels.h"
#include "ggml_quants.h"

#include <float.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Sizes. QB: values per block of the input's int8 form (and per vpdpbusd group of 8 steps of 4).
// PANEL: input rows per packed panel; the kernel keeps PANEL × 2 int32 sums and PANEL × 2 float32
// accumulators (24 of the 32 vector registers), plus two weight vectors and one broadcast.
// STRIPE: weight rows decoded together (two vectors of 16 lanes).
enum { QB = 32, PANEL = 6, STRIPE = 32, STEPS = QB / 4 };

// A decoded stripe is one record per block of 32 columns:
//   values   int8 [STEPS][STRIPE][4]: step s holds columns 4s..4s+3 of each of the 32 rows, so one
//            64-byte load is 16 rows × 4 columns, as vpdpbusd takes them
//   per weight sub-block (1, or 2 of 16 columns for Q6_K):
//     corr   int32 [STRIPE]: −128 · Σ q over the sub-block (the input is stored as qx + 128)
//     scale  float [STRIPE]: dw
//   mins     float [STRIPE] (Q4_K, Q5_K only): dmin · min
enum { VALUE_BYTES = STEPS * STRIPE * 4, SCALE_OFFSET = STRIPE * 4, GROUP_BYTES = 2 * STRIPE * 4,
       MIN_BYTES = STRIPE * 4, MAX_RECORD = VALUE_BYTES + 2 * GROUP_BYTES };

// A packed input panel is one record per block of 32 columns:
//   values  uint8 [STEPS][PANEL][4]: qx + 128 (vpdpbusd's unsigned operand), step-major so one
//           dword is the 4 columns one step broadcasts
//   scales  float [PANEL]: dx
//   sums    float [PANEL]: dx · Σ qx (for the mins)
enum { PANEL_VALUE_BYTES = STEPS * PANEL * 4, PANEL_RECORD = PANEL_VALUE_BYTES + 2 * PANEL * 4 };

int gemm_int8_panel_rows(void) { return PANEL; }

size_t gemm_int8_packed_input_bytes(int n, int k) {
    return (size_t)((n + PANEL - 1) / PANEL) * (size_t)((k + QB - 1) / QB) * PANEL_RECORD;
}

size_t gemm_int8_stripe_bytes(int k) { return (size_t)((k + QB - 1) / QB) * MAX_RECORD; }

int gemm_int8_decodes(int type) {
    switch (type) {
    case GGML_QUANT_Q8_0: case GGML_QUANT_Q4_0: case GGML_QUANT_Q5_0:
    case GGML_QUANT_Q4_K: case GGML_QUANT_Q5_K: case GGML_QUANT_Q6_K: return 1;
    default: return 0;
    }
}

// Sub-blocks per block of 32 columns, and whether the type has mins.
static int type_groups(int type) { return type == GGML_QUANT_Q6_K ? 2 : 1; }
static int type_mins(int type) { return type == GGML_QUANT_Q4_K || type == GGML_QUANT_Q5_K; }
static size_t record_bytes(int type) {
    return VALUE_BYTES + (size_t)type_groups(type) * GROUP_BYTES + (type_mins(type) ? MIN_BYTES : 0);
}

// Bytes per GGUF block (ggml_quants.h), here so that they fold into each type's copy of the loops.
static inline size_t type_block_bytes(int type) {
    switch (type) {
    case GGML_QUANT_Q8_0: return 34;
    case GGML_QUANT_Q4_0: return 18;
    case GGML_QUANT_Q5_0: return 22;
    case GGML_QUANT_Q4_K: return 144;
    case GGML_QUANT_Q5_K: return 176;
    default: return 210; // Q6_K
    }
}

// The scale dx of a block whose largest |x| is `largest`: largest / 127 as q8_quantize computes
// it, NaN for a block with a NaN or an infinity. Below the normal range that quotient may round
// down (or to 0) by a large fraction of itself, and then |x| / dx would pass 127: there it is
// rounded up to the next float instead, so that every block keeps |q| ≤ 127 and |q·dx − x| ≤ dx/2.
static inline float block_scale(float largest, int finite) {
    if (!finite) return NAN;
    float d = largest / 127.0f;
    if (d < FLT_MIN && (double)d * 127 < (double)largest) d = nextafterf(d, INFINITY);
    return d;
}

// The reference rounding of the int8 form: q = round-half-even(x · (1 / dx)); a block with a NaN
// or an infinity gets q = 0. When 1 / dx overflows (max|x| under about 3.7e-37), x / dx instead.
static void quantize_block_portable(const float *x, int8_t *q, float *scale, int32_t *sum) {
    float largest = 0;
    int finite = 1;
    for (int i = 0; i < QB; ++i) {
        largest = fmaxf(largest, fabsf(x[i]));
        finite &= isfinite(x[i]) != 0;
    }
    const float d = block_scale(largest, finite);
    const float inverse = finite && d > 0 ? 1.0f / d : 0.0f;
    int32_t total = 0;
    for (int i = 0; i < QB; ++i) {
        q[i] = (int8_t)nearbyintf(isinf(inverse) ? x[i] / d : x[i] * inverse);
        total += q[i];
    }
    *scale = d;
    *sum = total;
}

#if defined(__x86_64__)

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c")))

static int cpu_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("f16c");
}

static int enabled = -1;

int gemm_int8_available(void) {
    if (enabled < 0) enabled = cpu_supported();
    return enabled && gemm_available();
}

int gemm_int8_force(int on) {
    const int previous = gemm_int8_available();
    enabled = on ? cpu_supported() : 0;
    return previous;
}

// ---------------------------------------------------------------------------------------------
// The input's int8 form

// One block of 32 values: the same q, dx and Σq as quantize_block_portable (max and Σ are exact
// in any order; x · inverse is one rounding either way; the conversion rounds half to even).
TARGET static inline void quantize_block(const float *x, __m256i *q, float *scale, int32_t *sum) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const float largest = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    // x − x is 0 exactly for finite x, NaN for an infinity or a NaN.
    const __mmask16 finite0 = _mm512_cmp_ps_mask(_mm512_sub_ps(x0, x0), _mm512_setzero_ps(), _CMP_EQ_OQ);
    const __mmask16 finite1 = _mm512_cmp_ps_mask(_mm512_sub_ps(x1, x1), _mm512_setzero_ps(), _CMP_EQ_OQ);
    const int finite = finite0 == 0xFFFF && finite1 == 0xFFFF;
    const float d = block_scale(largest, finite);
    const float inverse = finite && d > 0 ? 1.0f / d : 0.0f;
    __m512 y0, y1;
    if (isinf(inverse)) {
        y0 = _mm512_div_ps(x0, _mm512_set1_ps(d));
        y1 = _mm512_div_ps(x1, _mm512_set1_ps(d));
    } else {
        y0 = _mm512_mul_ps(x0, _mm512_set1_ps(inverse));
        y1 = _mm512_mul_ps(x1, _mm512_set1_ps(inverse));
    }
    const __m512i q0 = _mm512_cvt_roundps_epi32(y0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i q1 = _mm512_cvt_roundps_epi32(y1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // |q| ≤ 127: x · (1 / dx) is at most 127 plus three roundings, well below 127.5.
    *q = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm512_cvtepi32_epi8(q0)), _mm512_cvtepi32_epi8(q1), 1);
    *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    *scale = d;
}

TARGET static void pack_input(const float *x, int n, int k, int row_begin, int row_end, uint8_t *packed) {
    const int blocks = k / QB;
    for (int p = row_begin / PANEL; p * PANEL < row_end; ++p) {
        uint8_t *panel = packed + (size_t)p * blocks * PANEL_RECORD;
        for (int i = 0; i < PANEL; ++i) {
            const int row = p * PANEL + i;
            for (int j = 0; j < blocks; ++j) {
                uint8_t *record = panel + (size_t)j * PANEL_RECORD;
                float *scales = (float *)(record + PANEL_VALUE_BYTES);
                __m256i q = _mm256_setzero_si256();
                float d = 0;
                int32_t sum = 0;
                if (row < n) quantize_block(x + (size_t)row * k + (size_t)j * QB, &q, &d, &sum);
                // qx + 128 as unsigned bytes: flipping the sign bit adds 128 modulo 256.
                const __m256i u = _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80));
                uint32_t dwords[STEPS];
                _mm256_storeu_si256((__m256i *)dwords, u);
                for (int s = 0; s < STEPS; ++s) memcpy(record + (size_t)(s * PANEL + i) * 4, &dwords[s], 4);
                scales[i] = d;
                scales[PANEL + i] = d * (float)sum;
            }
        }
    }
}

void gemm_int8_pack_input(const float *x, int n, int k, int row_begin, int row_end, void *packed) {
    if (gemm_int8_available() && k % QB == 0) pack_input(x, n, k, row_begin, row_end, (uint8_t *)packed);
}

TARGET static void quantize_row(const float *x, int k, int8_t *q, float *scales) {
    for (int j = 0; j < k / QB; ++j) {
        __m256i values;
        int32_t sum;
        quantize_block(x + j * QB, &values, &scales[j], &sum);
        _mm256_storeu_si256((__m256i *)(q + j * QB), values);
    }
}

void gemm_int8_quantize_row(const float *x, int k, int8_t *q, float *scales) {
    if (cpu_supported()) {
        quantize_row(x, k, q, scales);
        return;
    }
    for (int j = 0; j < k / QB; ++j) {
        int32_t sum;
        quantize_block_portable(x + j * QB, q + j * QB, &scales[j], &sum);
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding a weight stripe

TARGET static inline __m256i low_nibbles(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0f)); }
TARGET static inline __m256i high_nibbles(__m256i v) {
    return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0f));
}

// 32 values of one block of 32 (Q8_0, Q4_0, Q5_0) as centred int8.
TARGET __attribute__((always_inline)) static inline __m256i decode32(int type, const uint8_t *b) {
    switch (type) {
    case GGML_QUANT_Q8_0:
        return _mm256_loadu_si256((const __m256i *)(b + 2));
    case GGML_QUANT_Q4_0: {
        const __m128i qs = _mm_loadu_si128((const __m128i *)(b + 2));
        const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(qs), qs, 1);
        // Low nibbles are values 0-15, high nibbles 16-31.
        const __m256i q = _mm256_blend_epi32(low_nibbles(both), high_nibbles(both), 0xF0);
        return _mm256_sub_epi8(q, _mm256_set1_epi8(8));
    }
    default: { // Q5_0: bit j of the u32 qh is value j's fifth bit.
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        const __m128i qs = _mm_loadu_si128((const __m128i *)(b + 6));
        const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(qs), qs, 1);
        const __m256i q = _mm256_blend_epi32(low_nibbles(both), high_nibbles(both), 0xF0);
        const __m256i high = _mm256_maskz_mov_epi8((__mmask32)qh, _mm256_set1_epi8(16));
        return _mm256_sub_epi8(_mm256_or_si256(q, high), _mm256_set1_epi8(16));
    }
    }
}

// Values 64c ..< 64c + 64 of a row (c counts chunks of 64 from the row's start) as centred
// int8; for the 32-value types a chunk past the row's end reads as zeros.
TARGET __attribute__((always_inline)) static inline __m512i decode64(int type, const uint8_t *row, int c, int blocks32) {
    switch (type) {
    case GGML_QUANT_Q8_0: case GGML_QUANT_Q4_0: case GGML_QUANT_Q5_0: {
        const size_t bytes = type_block_bytes(type);
        const __m256i lo = decode32(type, row + (size_t)(2 * c) * bytes);
        const __m256i hi = 2 * c + 1 < blocks32 ? decode32(type, row + (size_t)(2 * c + 1) * bytes) : _mm256_setzero_si256();
        return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    case GGML_QUANT_Q4_K: {
        // Chunk g of a block: the 32 bytes qs[32g ..< 32g + 32], low nibbles then high nibbles.
        const uint8_t *b = row + (size_t)(c / 4) * type_block_bytes(type);
        const __m256i qs = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * (c % 4)));
        return _mm512_inserti64x4(_mm512_castsi256_si512(low_nibbles(qs)), high_nibbles(qs), 1);
    }
    case GGML_QUANT_Q5_K: {
        // As Q4_K; value l of sub-block s has its fifth bit in bit s of qh[l].
        const uint8_t *b = row + (size_t)(c / 4) * type_block_bytes(type);
        const int g = c % 4;
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 16));
        const __m256i qs = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * g));
        const __m256i sixteen = _mm256_set1_epi8(16);
        const __m256i lo = _mm256_or_si256(low_nibbles(qs),
                                           _mm256_maskz_mov_epi8(_mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << (2 * g)))), sixteen));
        const __m256i hi = _mm256_or_si256(high_nibbles(qs),
                                           _mm256_maskz_mov_epi8(_mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << (2 * g + 1)))), sixteen));
        return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    default: {
        // Q6_K: chunk g of a block is half g / 2, values 64 (g mod 2) ..< 64 (g mod 2) + 64 of it:
        // value l + 32k of a half (l < 32) has low bits from ql[l + 32 (k mod 2)] (low nibble for
        // k < 2, high for k ≥ 2) and top bits 2k, 2k + 1 of qh[l]; so chunk parity p takes the
        // low (p = 0) or high (p = 1) nibbles of ql[0 ..< 64] and qh's bits 4p.. and 4p + 2...
        const uint8_t *b = row + (size_t)(c / 4) * type_block_bytes(type);
        const int g = c % 4, half_index = g / 2, p = g % 2;
        const __m512i ql = _mm512_loadu_si512((const void *)(b + 64 * half_index));
        const __m512i nibbles = _mm512_and_si512(p ? _mm512_srli_epi16(ql, 4) : ql, _mm512_set1_epi8(0x0f));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * half_index));
        const __m256i three = _mm256_set1_epi8(3);
        const __m256i top0 = _mm256_and_si256(_mm256_srli_epi16(qh, 4 * p), three);
        const __m256i top1 = _mm256_and_si256(_mm256_srli_epi16(qh, 4 * p + 2), three);
        const __m512i top = _mm512_inserti64x4(_mm512_castsi256_si512(top0), top1, 1);
        const __m512i q = _mm512_or_si512(nibbles, _mm512_slli_epi16(top, 4));
        // (top << 4) stays inside each byte: top ≤ 3, so the 16-bit shift moves no bit across.
        return _mm512_sub_epi8(q, _mm512_set1_epi8(32));
    }
    }
}

// Transposes the 16 × 16 matrix of dwords held in r[0..15] (r[i] = row i) in place.
TARGET static inline void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    // Each 128-bit lane L of r[4q + s] now holds rows 4q..4q+3 at column 4L + s.
    for (int q = 0; q < 4; q += 2)
        for (int s = 0; s < 4; ++s) {
            t[4 * q + s] = _mm512_shuffle_i32x4(r[4 * q + s], r[4 * (q + 1) + s], 0x88);
            t[4 * q + 4 + s] = _mm512_shuffle_i32x4(r[4 * q + s], r[4 * (q + 1) + s], 0xDD);
        }
    for (int s = 0; s < 4; ++s) {
        r[s] = _mm512_shuffle_i32x4(t[s], t[8 + s], 0x88);
        r[8 + s] = _mm512_shuffle_i32x4(t[s], t[8 + s], 0xDD);
        r[4 + s] = _mm512_shuffle_i32x4(t[4 + s], t[12 + s], 0x88);
        r[12 + s] = _mm512_shuffle_i32x4(t[4 + s], t[12 + s], 0xDD);
    }
}

// Byte `b` (0..3) of each dword, zero- or sign-extended.
TARGET static inline __m512i byte_of(__m512i v, int b) { return _mm512_and_si512(_mm512_srli_epi32(v, 8 * b), _mm512_set1_epi32(0xFF)); }
TARGET static inline __m512i signed_byte_of(__m512i v, int b) { return _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * b), 24); }
// The f16 in the low (high = 0) or high (high = 1) half of each dword, as float32.
TARGET static inline __m512 half_of(__m512i v, int high) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(high ? _mm512_srli_epi32(v, 16) : v));
}

// The float scales (and mins) of 16 rows for the blocks of 32 columns [j_begin, j_end) (for the K
// types, inside one block of 256) into their records at lane offset `h` · 16: rows are gathered
// 4 bytes at a time (`base` is row 16h's first byte, rows `row_bytes` apart; lanes outside
// `valid` read nothing and get 0), and every scale is computed as the reference decoder does,
// d · scale or d (exact float32 products, the same in any lane).
TARGET __attribute__((always_inline)) static inline void
decode_scales(int type, const uint8_t *base, size_t row_bytes, __mmask16 valid, int j_begin, int j_end, int h,
              uint8_t *stripe, size_t record) {
    const size_t bytes = type_block_bytes(type);
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)row_bytes));
    const __m512i zero = _mm512_setzero_si512();
#define GATHER(offset) _mm512_mask_i32gather_epi32(zero, valid, _mm512_add_epi32(rows, _mm512_set1_epi32((int)(offset))), base, 1)
    uint8_t *first = stripe + (size_t)j_begin * record + VALUE_BYTES + h * 64;
    switch (type) {
    case GGML_QUANT_Q8_0: case GGML_QUANT_Q4_0: case GGML_QUANT_Q5_0:
        // d is the block's first 2 bytes (every block is longer than 4).
        for (int j = j_begin; j < j_end; ++j, first += record)
            _mm512_store_ps((float *)(first + SCALE_OFFSET), half_of(GATHER((size_t)j * bytes), 0));
        break;
    case GGML_QUANT_Q4_K: case GGML_QUANT_Q5_K: {
        // Bytes 0-15: d, dmin, then the 12 scale bytes s[0..11] (ggml_quants.h): sub-block j < 4
        // has scale s[j] & 63 and min s[j + 4] & 63; sub-block j ≥ 4 has the nibbles of s[j + 4]
        // (scale low, min high) with top bits s[j − 4] >> 6 (scale) and s[j] >> 6 (min).
        const size_t offset = (size_t)(j_begin / 8) * bytes;
        const __m512i dd = GATHER(offset), s0 = GATHER(offset + 4), s4 = GATHER(offset + 8), s8 = GATHER(offset + 12);
        const __m512 d = half_of(dd, 0), dmin = half_of(dd, 1);
        const __m512i low6 = _mm512_set1_epi32(63), low4 = _mm512_set1_epi32(15), top2 = _mm512_set1_epi32(3);
        for (int j = j_begin; j < j_end; ++j, first += record) {
            const int b = j % 4;
            __m512i scale, min;
            if (j % 8 < 4) {
                scale = _mm512_and_si512(byte_of(s0, b), low6);
                min = _mm512_and_si512(byte_of(s4, b), low6);
            } else {
                scale = _mm512_or_si512(_mm512_and_si512(byte_of(s8, b), low4),
                                        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(byte_of(s0, b), 6), top2), 4));
                min = _mm512_or_si512(_mm512_srli_epi32(byte_of(s8, b), 4),
                                      _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(byte_of(s4, b), 6), top2), 4));
            }
            _mm512_store_ps((float *)(first + SCALE_OFFSET), _mm512_mul_ps(d, _mm512_cvtepi32_ps(scale)));
            _mm512_store_ps((float *)(first + GROUP_BYTES), _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(min)));
        }
        break;
    }
    default: { // Q6_K: int8 scales sc[16] at byte 192, d at 208; sub-blocks of 16, two per block of 32.
        const size_t offset = (size_t)(j_begin / 8) * bytes;
        const __m512i sc[4] = {GATHER(offset + 192), GATHER(offset + 196), GATHER(offset + 200), GATHER(offset + 204)};
        const __m512 d = half_of(GATHER(offset + 206), 1);
        for (int j = j_begin; j < j_end; ++j, first += record) {
            const int index = 2 * (j % 8);
            _mm512_store_ps((float *)(first + SCALE_OFFSET),
                            _mm512_mul_ps(d, _mm512_cvtepi32_ps(signed_byte_of(sc[index / 4], index % 4))));
            _mm512_store_ps((float *)(first + GROUP_BYTES + SCALE_OFFSET),
                            _mm512_mul_ps(d, _mm512_cvtepi32_ps(signed_byte_of(sc[index / 4], index % 4 + 1))));
        }
        break;
    }
    }
#undef GATHER
}

// Decodes weight rows [row0, row0 + rows) (rows ≤ STRIPE) into the stripe's records; lanes past
// `rows` get zero values, scales and mins. It goes 256 columns at a time (8 records, about 12 KB),
// so that the scattered scale stores land in L1. `type` is a constant at each call (see
// decode_stripe), so each type gets its own copy without switches in the loops.
TARGET __attribute__((always_inline)) static inline void
decode_stripe_type(int type, const uint8_t *blocks, size_t row_bytes, int k, int row0, int rows, uint8_t *stripe) {
    const int blocks32 = k / QB, groups = type_groups(type), chunks = (k + 63) / 64;
    const size_t record = record_bytes(type);
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    for (int c0 = 0; c0 < chunks; c0 += 4) {
        for (int h = 0; h < 2; ++h) {
            for (int c = c0; c < c0 + 4 && c < chunks; ++c) {
                __m512i v[16];
                for (int i = 0; i < 16; ++i) {
                    const int lane = 16 * h + i;
                    v[i] = lane < rows ? decode64(type, blocks + (size_t)(row0 + lane) * row_bytes, c, blocks32)
                                       : _mm512_setzero_si512();
                }
                transpose16(v);
                // v[s] is now column dword s of the chunk (step s mod 8 of block 2c + s / 8) for 16 rows.
                for (int half_block = 0; half_block < 2 && 2 * c + half_block < blocks32; ++half_block) {
                    uint8_t *r = stripe + (size_t)(2 * c + half_block) * record;
                    for (int s = 0; s < STEPS; ++s)
                        _mm512_store_si512((void *)(r + s * STRIPE * 4 + h * 64), v[8 * half_block + s]);
                    // corr = −128 · Σ q per sub-block, by the same vpdpbusd the kernel uses.
                    for (int g = 0; g < groups; ++g) {
                        __m512i sum = _mm512_setzero_si512();
                        for (int s = g * STEPS / groups; s < (g + 1) * STEPS / groups; ++s)
                            sum = _mm512_dpbusd_epi32(sum, bias, v[8 * half_block + s]);
                        _mm512_store_si512((void *)(r + VALUE_BYTES + g * GROUP_BYTES + h * 64),
                                           _mm512_sub_epi32(_mm512_setzero_si512(), sum));
                    }
                }
            }
        }
        const int j_begin = 2 * c0, j_end = 2 * c0 + 8 < blocks32 ? 2 * c0 + 8 : blocks32;
        for (int h = 0; h < 2; ++h) {
            // Lanes without a row read nothing and get zero scales (their values are zeros).
            const int valid = rows - 16 * h;
            const __mmask16 mask = valid >= 16 ? 0xFFFF : valid > 0 ? (__mmask16)((1u << valid) - 1) : 0;
            decode_scales(type, blocks + (size_t)(row0 + (valid > 0 ? 16 * h : 0)) * row_bytes, row_bytes, mask,
                          j_begin, j_end, h, stripe, record);
        }
    }
}

TARGET static void decode_stripe(int type, const uint8_t *blocks, size_t row_bytes, int k, int row0, int rows,
                                 uint8_t *stripe) {
    switch (type) {
    case GGML_QUANT_Q8_0: decode_stripe_type(GGML_QUANT_Q8_0, blocks, row_bytes, k, row0, rows, stripe); break;
    case GGML_QUANT_Q4_0: decode_stripe_type(GGML_QUANT_Q4_0, blocks, row_bytes, k, row0, rows, stripe); break;
    case GGML_QUANT_Q5_0: decode_stripe_type(GGML_QUANT_Q5_0, blocks, row_bytes, k, row0, rows, stripe); break;
    case GGML_QUANT_Q4_K: decode_stripe_type(GGML_QUANT_Q4_K, blocks, row_bytes, k, row0, rows, stripe); break;
    case GGML_QUANT_Q5_K: decode_stripe_type(GGML_QUANT_Q5_K, blocks, row_bytes, k, row0, rows, stripe); break;
    default: decode_stripe_type(GGML_QUANT_Q6_K, blocks, row_bytes, k, row0, rows, stripe); break;
    }
}

// ---------------------------------------------------------------------------------------------
// The micro-kernel

// Y tile (rows ≤ PANEL input rows × the stripe's columns under the masks) = packed panel · stripe
// over `blocks` blocks of 32. `groups` and `mins` are constants at each call, so each type gets
// its own unrolled copy.
TARGET __attribute__((always_inline)) static inline void
tile_kernel(const uint8_t *panel, const uint8_t *stripe, int blocks, int groups, int mins, size_t record,
            float *y, size_t ldy, int rows, __mmask16 mask0, __mmask16 mask1) {
    __m512 acc[PANEL][2];
    for (int i = 0; i < PANEL; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int j = 0; j < blocks; ++j) {
        const uint8_t *a = panel + (size_t)j * PANEL_RECORD;
        const uint8_t *w = stripe + (size_t)j * record;
        const float *dx = (const float *)(a + PANEL_VALUE_BYTES);
        for (int g = 0; g < groups; ++g) {
            const uint8_t *group = w + VALUE_BYTES + g * GROUP_BYTES;
            const __m512i corr0 = _mm512_load_si512((const void *)group);
            const __m512i corr1 = _mm512_load_si512((const void *)(group + 64));
            __m512i sum[PANEL][2];
            for (int i = 0; i < PANEL; ++i) {
                sum[i][0] = corr0;
                sum[i][1] = corr1;
            }
#pragma clang loop unroll(full)
            for (int s = g * STEPS / groups; s < (g + 1) * STEPS / groups; ++s) {
                const __m512i w0 = _mm512_load_si512((const void *)(w + s * STRIPE * 4));
                const __m512i w1 = _mm512_load_si512((const void *)(w + s * STRIPE * 4 + 64));
#pragma clang loop unroll(full)
                for (int i = 0; i < PANEL; ++i) {
                    int32_t dword;
                    memcpy(&dword, a + (s * PANEL + i) * 4, 4);
                    const __m512i x = _mm512_set1_epi32(dword);
                    sum[i][0] = _mm512_dpbusd_epi32(sum[i][0], x, w0);
                    sum[i][1] = _mm512_dpbusd_epi32(sum[i][1], x, w1);
                }
            }
            const __m512 scale0 = _mm512_load_ps((const float *)(group + SCALE_OFFSET));
            const __m512 scale1 = _mm512_load_ps((const float *)(group + SCALE_OFFSET + 64));
#pragma clang loop unroll(full)
            for (int i = 0; i < PANEL; ++i) {
                const __m512 d = _mm512_set1_ps(dx[i]);
                acc[i][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[i][0]), _mm512_mul_ps(scale0, d), acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[i][1]), _mm512_mul_ps(scale1, d), acc[i][1]);
            }
        }
        if (mins) {
            const float *m = (const float *)(w + VALUE_BYTES + groups * GROUP_BYTES);
            const __m512 m0 = _mm512_load_ps(m), m1 = _mm512_load_ps(m + 16);
#pragma clang loop unroll(full)
            for (int i = 0; i < PANEL; ++i) {
                const __m512 s = _mm512_set1_ps(dx[PANEL + i]);
                acc[i][0] = _mm512_fnmadd_ps(m0, s, acc[i][0]);
                acc[i][1] = _mm512_fnmadd_ps(m1, s, acc[i][1]);
            }
        }
    }
    for (int i = 0; i < rows; ++i) {
        _mm512_mask_storeu_ps(y + (size_t)i * ldy, mask0, acc[i][0]);
        _mm512_mask_storeu_ps(y + (size_t)i * ldy + 16, mask1, acc[i][1]);
    }
}

// Every panel of the input against one decoded stripe. Meanwhile the `next_bytes` bytes at `next`
// (the next stripe's blocks) are fetched into L2, a share after each panel, so that decoding them
// reads cache instead of waiting on memory.
TARGET static void run_stripe(const uint8_t *packed, int n, int blocks, int type, const uint8_t *stripe,
                              float *y, size_t ldy, int rows, const uint8_t *next, size_t next_bytes) {
    const __mmask16 mask0 = rows >= 16 ? 0xFFFF : (__mmask16)((1u << rows) - 1);
    const __mmask16 mask1 = rows >= 32 ? 0xFFFF : rows > 16 ? (__mmask16)((1u << (rows - 16)) - 1) : 0;
    const size_t record = record_bytes(type);
    const int groups = type_groups(type), mins = type_mins(type), panels = (n + PANEL - 1) / PANEL;
    const size_t lines = (next_bytes + 63) / 64;
    for (int p = 0; p < panels; ++p) {
        for (size_t line = lines * p / panels; line < lines * (p + 1) / panels; ++line)
            _mm_prefetch((const char *)next + line * 64, _MM_HINT_T1);
        const uint8_t *panel = packed + (size_t)p * blocks * PANEL_RECORD;
        const int panel_rows = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
        float *yp = y + (size_t)p * PANEL * ldy;
        if (groups == 2) tile_kernel(panel, stripe, blocks, 2, 0, record, yp, ldy, panel_rows, mask0, mask1);
        else if (mins) tile_kernel(panel, stripe, blocks, 1, 1, record, yp, ldy, panel_rows, mask0, mask1);
        else tile_kernel(panel, stripe, blocks, 1, 0, record, yp, ldy, panel_rows, mask0, mask1);
    }
}

int gemm_int8_ggml(const void *packed, int n, int k, int type, const void *blocks, int row_begin, int row_end,
                   float *y, int ldy, void *stripe) {
    if (!gemm_int8_decodes(type) || k <= 0 || k % ggml_block_size(type) != 0) return -1;
    if (!gemm_int8_available()) return 0;
    const size_t row_bytes = ggml_row_bytes(type, k);
    const uint8_t *w = (const uint8_t *)blocks;
    for (int row0 = row_begin; row0 < row_end; row0 += STRIPE) {
        const int rows = row_end - row0 < STRIPE ? row_end - row0 : STRIPE;
        const int next_rows = row_end - (row0 + rows) < STRIPE ? row_end - (row0 + rows) : STRIPE;
        decode_stripe(type, w, row_bytes, k, row0, rows, (uint8_t *)stripe);
        run_stripe((const uint8_t *)packed, n, k / QB, type, (const uint8_t *)stripe, y + row0, (size_t)ldy, rows,
                   w + (size_t)(row0 + rows) * row_bytes, (size_t)next_rows * row_bytes);
    }
    return 0;
}

#else

int gemm_int8_available(void) { return 0; }
int gemm_int8_force(int on) { (void)on; return 0; }
void gemm_int8_pack_input(const float *x, int n, int k, int row_begin, int row_end, void *packed) {}
int gemm_int8_ggml(const void *packed, int n, int k, int type, const void *blocks, int row_begin, int row_end,
                   float *y, int ldy, void *stripe) {
    return gemm_int8_decodes(type) && k > 0 && k % ggml_block_size(type) == 0 ? 0 : -1;
}
void gemm_int8_quantize_row(const float *x, int k, int8_t *q, float *scales) {
    for (int j = 0; j < k / QB; ++j) {
        int32_t sum;
        quantize_block_portable(x + j * QB, q + j * QB, &scales[j], &sum);
    }
}

#endif
