#include "ggml_dot.h"

#include "ggml_quants.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// A quantized input row of k values (nb = k / 32 blocks), ggml_activation_row_bytes(k) bytes:
//   q    int8  (k)       the values, block after block
//   d    float (nb)      the block scales
//   s    float (nb)      d · Σq of each block: the block's sum, for the mins of Q4_K and Q5_K
//   sums int32 (nb)      Σq of each block: times 8 or 16, the offset of Q4_0 or Q5_0 weights
//   neg  int32 (nb, 8)   per block, lane l holds −Σq of values 4l ..< 4l + 4, the 4 values a
//                        dpbusd lane multiplies: a dot product started from it, shifted left by
//                        3, 4, 5 or 7, subtracts the −8, −16, −32 or −128 offset of Q4_0, Q5_0,
//                        Q6_K or biased Q8_0 weights exactly, in integers, lane by lane. Each
//                        lane is then the exact product of its 4 values: the 512-bit kernels
//                        convert lanes to float32 before summing them, and a lane still carrying
//                        the offset (it was once taken off in lanes 0 and 4 only) lost the
//                        precision of the offset's size when the float32 lanes were added
typedef struct {
    const int8_t *q;
    const float *d;
    const float *s;
    const int32_t *sums;
    const int32_t *neg;
} act_row;

static inline act_row act_view(const void *base, int k) {
    const uint8_t *p = (const uint8_t *)base;
    const int nb = k / 32;
    act_row a;
    a.q = (const int8_t *)p;
    a.d = (const float *)(p + k);
    a.s = a.d + nb;
    a.sums = (const int32_t *)(a.s + nb);
    a.neg = a.sums + nb;
    return a;
}

size_t ggml_activation_row_bytes(int k) {
    const size_t nb = (size_t)k / 32;
    return (nb * (32 + 4 + 4 + 4 + 32) + 63) / 64 * 64;
}

// The scale of a block whose largest |x| is `largest` (finite): largest / 127, rounded up when it
// is subnormal and fell below largest / 127 (else a value could round to ±128 and wrap).
static inline float activation_scale(float largest) {
    const float scale = largest / 127.0f;
    return scale < FLT_MIN && (double)scale * 127.0 < (double)largest ? nextafterf(scale, INFINITY) : scale;
}

static void quantize_activations_portable(const float *x, int k, void *out) {
    uint8_t *p = (uint8_t *)out;
    const int nb = k / 32;
    int8_t *q = (int8_t *)p;
    float *d = (float *)(p + k), *s = d + nb;
    int32_t *block_sums = (int32_t *)(s + nb), *neg = block_sums + nb;
    for (int j = 0; j < nb; ++j) {
        const float *xb = x + 32 * j;
        float largest = 0;
        int finite = 1;
        for (int i = 0; i < 32; ++i) {
            largest = fmaxf(largest, fabsf(xb[i]));
            finite &= isfinite(xb[i]) != 0;
        }
        // A NaN or infinite activation has no int8 form: a NaN scale carries it into every
        // product that reads the block (fmaxf alone would skip a NaN, and the block would
        // quietly read as zeros).
        const float scale = finite ? activation_scale(largest) : NAN;
        const float inverse = finite && scale > 0 ? 1.0f / scale : 0.0f;
        // 1 / scale overflows for blocks below about 1e-36: those divide.
        const int divide = isinf(inverse);
        int sums[2] = {0, 0};
        int32_t *lanes = neg + 8 * j;
        for (int l = 0; l < 8; ++l) lanes[l] = 0;
        for (int i = 0; i < 32; ++i) {
            const int8_t v = finite ? (int8_t)lrintf(divide ? xb[i] / scale : xb[i] * inverse) : 0;
            q[32 * j + i] = v;
            sums[i / 16] += v;
            lanes[i / 4] -= v;
        }
        d[j] = scale;
        s[j] = scale * (float)(sums[0] + sums[1]);
        block_sums[j] = sums[0] + sums[1];
    }
}

#if defined(__x86_64__)
// The same formula 32 values at a time (the portable loop was 2–3 % of a decoded token, on one
// thread while the others wait): the same float32 operations in the same order per value
// (|x|, the maximum, max / 127, 1 / scale, x · inverse rounded to nearest even under the
// default rounding mode), so the bytes are identical.
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))
static void quantize_activations_avx512(const float *x, int k, void *out) {
    uint8_t *p = (uint8_t *)out;
    const int nb = k / 32;
    int8_t *q = (int8_t *)p;
    float *d = (float *)(p + k), *s = d + nb;
    int32_t *block_sums = (int32_t *)(s + nb), *neg = block_sums + nb;
    const __m512 infinity = _mm512_set1_ps(INFINITY);
    for (int j = 0; j < nb; ++j) {
        const __m512 x0 = _mm512_loadu_ps(x + 32 * j), x1 = _mm512_loadu_ps(x + 32 * j + 16);
        const __m512 a0 = _mm512_abs_ps(x0), a1 = _mm512_abs_ps(x1);
        // Finite: |x| < ∞, false for NaN and for infinities.
        const int finite = (_mm512_cmp_ps_mask(a0, infinity, _CMP_LT_OQ) & _mm512_cmp_ps_mask(a1, infinity, _CMP_LT_OQ)) == 0xFFFF;
        const float largest = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        const float scale = finite ? activation_scale(largest) : NAN;
        const float inverse = finite && scale > 0 ? 1.0f / scale : 0.0f;
        __m512i q0 = _mm512_setzero_si512(), q1 = _mm512_setzero_si512();  // a non-finite block: zeros
        if (finite && isinf(inverse)) {
            q0 = _mm512_cvtps_epi32(_mm512_div_ps(x0, _mm512_set1_ps(scale)));
            q1 = _mm512_cvtps_epi32(_mm512_div_ps(x1, _mm512_set1_ps(scale)));
        } else if (finite) {
            q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, _mm512_set1_ps(inverse)));
            q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, _mm512_set1_ps(inverse)));
        }
        const __m256i bytes = _mm256_set_m128i(_mm512_cvtepi32_epi8(q1), _mm512_cvtepi32_epi8(q0));
        _mm256_storeu_si256((__m256i *)(q + 32 * j), bytes);
        const int sum0 = _mm512_reduce_add_epi32(q0), sum1 = _mm512_reduce_add_epi32(q1);
        d[j] = scale;
        s[j] = scale * (float)(sum0 + sum1);
        block_sums[j] = sum0 + sum1;
        // Sums of 4: pairs (1 · q) as int16, then pairs of pairs as int32; negated.
        const __m256i fours = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), bytes), _mm256_set1_epi16(1));
        _mm256_storeu_si256((__m256i *)(neg + 8 * j), _mm256_sub_epi32(_mm256_setzero_si256(), fours));
    }
}
#endif

void ggml_activation_values(const void *row, int k, int8_t *q, float *scales) {
    const act_row a = act_view(row, k);
    memcpy(q, a.q, (size_t)k);
    memcpy(scales, a.d, (size_t)(k / 32) * sizeof(float));
}

int ggml_fast_activation_kind(int type) {
    switch (type) {
    case GGML_QUANT_Q8_0: case GGML_QUANT_Q4_0: case GGML_QUANT_Q5_0:
    case GGML_QUANT_Q4_K: case GGML_QUANT_Q5_K: case GGML_QUANT_Q6_K: return 1;
    case GGML_QUANT_F16: case GGML_QUANT_BF16: return 0;
    default: return -1;
    }
}

// ---------------------------------------------------------------------------------------------
// Portable: exact int32 sums per block (per sub-block for the K types), scaled in float32.

static inline float half_at(const uint8_t *p) { return ggml_fp16_to_fp32((uint16_t)(p[0] | (p[1] << 8))); }

// The 32 values of a Q8_0, Q4_0 or Q5_0 block, offset removed.
static inline void values32(int type, const uint8_t *b, int v[32]) {
    if (type == GGML_QUANT_Q8_0) {
        for (int i = 0; i < 32; ++i) v[i] = (int8_t)b[2 + i];
        return;
    }
    const int q5 = type == GGML_QUANT_Q5_0;
    const uint8_t *qs = b + (q5 ? 6 : 2);
    const uint32_t qh = q5 ? (uint32_t)b[2] | ((uint32_t)b[3] << 8) | ((uint32_t)b[4] << 16) | ((uint32_t)b[5] << 24) : 0;
    for (int i = 0; i < 16; ++i) {
        v[i] = (qs[i] & 15) | (int)(((qh >> i) & 1u) << 4);
        v[i + 16] = (qs[i] >> 4) | (int)(((qh >> (i + 16)) & 1u) << 4);
    }
    for (int i = 0; i < 32; ++i) v[i] -= q5 ? 16 : 8;
}

static float dot32_portable(int type, const uint8_t *row, int nb, const act_row *a) {
    const size_t bytes = ggml_block_bytes(type);
    float sum = 0;
    for (int j = 0; j < nb; ++j) {
        int v[32];
        values32(type, row + j * bytes, v);
        int32_t dot = 0;
        for (int i = 0; i < 32; ++i) dot += v[i] * a->q[32 * j + i];
        sum += (half_at(row + j * bytes) * a->d[j]) * (float)dot;
    }
    return sum;
}

// Scale and min of sub-block j (0..7) of Q4_K and Q5_K (as in ggml_quants.c).
static inline void k_scale_min(int j, const uint8_t *s, int *scale, int *min) {
    if (j < 4) {
        *scale = s[j] & 63;
        *min = s[j + 4] & 63;
    } else {
        *scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static float dot_k45_portable(int type, const uint8_t *row, int nsb, const act_row *a) {
    const int q5 = type == GGML_QUANT_Q5_K;
    const size_t bytes = q5 ? 176 : 144;
    float sum = 0;
    for (int sb = 0; sb < nsb; ++sb) {
        const uint8_t *b = row + sb * bytes;
        const float d = half_at(b), dmin = half_at(b + 2);
        const uint8_t *qh = b + 16, *qs = b + (q5 ? 48 : 16);
        for (int j = 0; j < 8; ++j) {
            const int c = j / 2, shift = 4 * (j % 2), block = 8 * sb + j;
            int32_t dot = 0;
            for (int l = 0; l < 32; ++l) {
                const int v = ((qs[32 * c + l] >> shift) & 15) | (q5 ? ((qh[l] >> j) & 1) << 4 : 0);
                dot += v * a->q[32 * block + l];
            }
            int scale, min;
            k_scale_min(j, b + 4, &scale, &min);
            sum += (d * (float)scale * a->d[block]) * (float)dot - (dmin * (float)min) * a->s[block];
        }
    }
    return sum;
}

static float dot_q6k_portable(const uint8_t *row, int nsb, const act_row *a) {
    float sum = 0;
    for (int sb = 0; sb < nsb; ++sb) {
        const uint8_t *b = row + sb * 210;
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = half_at(b + 208);
        for (int j = 0; j < 8; ++j) {  // input block j: values 32j ..< 32j + 32 of the block
            const int h = j / 4, part = j % 4;
            const uint8_t *ql = b + 64 * h + 32 * (part % 2), *qh = b + 128 + 32 * h;
            const int block = 8 * sb + j;
            int32_t dot = 0;
            for (int l = 0; l < 32; ++l) {
                const int v = ((ql[l] >> (4 * (part / 2))) & 15) | (((qh[l] >> (2 * part)) & 3) << 4);
                dot += sc[2 * j + l / 16] * (v - 32) * a->q[32 * block + l];
            }
            sum += (d * a->d[block]) * (float)dot;
        }
    }
    return sum;
}

static void quantized_portable(int type, const uint8_t *blocks, size_t row_bytes, int k, const uint8_t *activations,
                               size_t stride, int batch, int row_begin, int row_end, float *y, int ldy) {
    for (int r = row_begin; r < row_end; ++r) {
        const uint8_t *row = blocks + (size_t)r * row_bytes;
        for (int b = 0; b < batch; ++b) {
            const act_row a = act_view(activations + (size_t)b * stride, k);
            float v;
            if (type == GGML_QUANT_Q4_K || type == GGML_QUANT_Q5_K) v = dot_k45_portable(type, row, k / 256, &a);
            else if (type == GGML_QUANT_Q6_K) v = dot_q6k_portable(row, k / 256, &a);
            else v = dot32_portable(type, row, k / 32, &a);
            y[(size_t)b * ldy + r] = v;
        }
    }
}

// F16 and BF16: eight running sums per element, each fed every eighth column, added pairwise.
static void halves_portable(int type, const uint8_t *blocks, size_t row_bytes, int k, const float *x, int batch,
                            int row_begin, int row_end, float *y, int ldy) {
    for (int r = row_begin; r < row_end; ++r) {
        const uint8_t *row = blocks + (size_t)r * row_bytes;
        for (int b = 0; b < batch; ++b) {
            const float *xb = x + (size_t)b * k;
            float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int i = 0; i < k; ++i) {
                const uint16_t h = (uint16_t)(row[2 * i] | (row[2 * i + 1] << 8));
                float w;
                if (type == GGML_QUANT_F16) {
                    w = ggml_fp16_to_fp32(h);
                } else {
                    const uint32_t bits = (uint32_t)h << 16;
                    memcpy(&w, &bits, sizeof w);
                }
                lane[i & 7] += w * xb[i];
            }
            y[(size_t)b * ldy + r] = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// x86: the kernels of ggml_dot_x86.h for three ways of multiplying bytes, and the 512-bit ones of
// ggml_dot_zmm.h.

#if defined(__x86_64__)
// How far ahead of the block being multiplied the kernels ask for weights. Decode streams the
// weights once, at about a block per 2–4 ns: 1 KiB ahead (25 ns) arrived too late for memory's
// latency. One thread, a 1 GB matrix, 8 KiB against 1 KiB: Q8_0 36 against 26 GB/s, Q4_K 30
// against 24, Q6_K 33 against 26, F16 36 against 26 (kbench, 3 alternating runs each).
#define GGML_PREFETCH_AHEAD 8192

#define SUFFIX avx512vnni
#define TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
#define DPBUSD(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#define MASK_BYTES 1
#include "ggml_dot_x86.h"
#undef SUFFIX
#undef TARGET
#undef DPBUSD
#undef MASK_BYTES
#include "ggml_dot_zmm.h"

#define SUFFIX avxvnni
#define TARGET "avx2,fma,f16c,avxvnni"
#define DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32((acc), (u), (s))
#define MASK_BYTES 0
#include "ggml_dot_x86.h"
#undef SUFFIX
#undef TARGET
#undef DPBUSD
#undef MASK_BYTES

// maddubs adds pairs of products into int16 with saturation: the unsigned bytes are at most 128
// (|−128| of Q8_0) and the signed ones at most 127 in magnitude (quantized activations), so a
// pair is at most 32512 and never saturates.
#define SUFFIX avx2
#define TARGET "avx2,fma,f16c"
#define DPBUSD(acc, u, s) _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1)))
#define MASK_BYTES 0
#include "ggml_dot_x86.h"
#undef SUFFIX
#undef TARGET
#undef DPBUSD
#undef MASK_BYTES
#endif

typedef void (*quantized_fn)(int, const uint8_t *, size_t, int, const uint8_t *, size_t, int, int, int, float *, int);
typedef void (*halves_fn)(int, const uint8_t *, size_t, int, const float *, int, int, int, float *, int);
typedef void (*quantize_fn)(const float *, int, void *);

typedef struct {
    const char *name;
    quantized_fn quantized;
    halves_fn halves;
    quantize_fn quantize;  // the activations' quantizer: same bytes on every set
} kernel_set;

static const kernel_set portable_set = {"portable", quantized_portable, halves_portable, quantize_activations_portable};
#if defined(__x86_64__)
static const kernel_set avx512_set = {"avx512", quantized_avx512, halves_avx512vnni, quantize_activations_avx512};
static const kernel_set avx512vnni_set = {"avx512vnni", quantized_avx512vnni, halves_avx512vnni, quantize_activations_portable};
static const kernel_set avxvnni_set = {"avxvnni", quantized_avxvnni, halves_avxvnni, quantize_activations_portable};
static const kernel_set avx2_set = {"avx2", quantized_avx2, halves_avx2, quantize_activations_portable};
#endif

// Whether this CPU runs a set (by name).
static int supported(const char *name) {
    if (strcmp(name, "portable") == 0) return 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (strcmp(name, "avx2") == 0) return avx2;
    if (strcmp(name, "avxvnni") == 0) return avx2 && __builtin_cpu_supports("avxvnni");
    const int avx512vnni = avx2 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
                           __builtin_cpu_supports("avx512bw");
    if (strcmp(name, "avx512vnni") == 0) return avx512vnni;
    if (strcmp(name, "avx512") == 0)
        return avx512vnni && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#endif
    return 0;
}

static const kernel_set *by_name(const char *name) {
#if defined(__x86_64__)
    if (strcmp(name, "avx512") == 0) return &avx512_set;
    if (strcmp(name, "avx512vnni") == 0) return &avx512vnni_set;
    if (strcmp(name, "avxvnni") == 0) return &avxvnni_set;
    if (strcmp(name, "avx2") == 0) return &avx2_set;
#endif
    return &portable_set;
}

// Chosen once (racing first calls choose the same), or forced by ggml_fast_force_kernel.
static _Atomic(const kernel_set *) chosen = NULL;

static const kernel_set *choose(void) {
    const kernel_set *set = atomic_load_explicit(&chosen, memory_order_relaxed);
    if (set) return set;
    static const char *const preference[] = {"avx512", "avx512vnni", "avxvnni", "avx2", "portable"};
    for (size_t i = 0; i < sizeof preference / sizeof preference[0]; ++i)
        if (supported(preference[i])) {
            set = by_name(preference[i]);
            break;
        }
    atomic_store_explicit(&chosen, set, memory_order_relaxed);
    return set;
}

int ggml_fast_force_kernel(const char *name) {
    if (strcmp(name, "auto") == 0) {
        atomic_store_explicit(&chosen, NULL, memory_order_relaxed);
        return 1;
    }
    if (!supported(name) || (strcmp(by_name(name)->name, name) != 0)) return 0;
    atomic_store_explicit(&chosen, by_name(name), memory_order_relaxed);
    return 1;
}

const char *ggml_fast_kernel_name(void) { return choose()->name; }

// The set's quantizer: the vector one comes with the "avx512" set (whose CPU check covers its
// instructions), so forcing another set, as tests do, also runs the portable loop.
void ggml_quantize_activations(const float *x, int k, void *out) { choose()->quantize(x, k, out); }

int ggml_matmul_fast(int type, const void *blocks, int k, const float *x, const void *activations,
                     size_t activation_stride, int batch, int row_begin, int row_end, float *y, int ldy) {
    const int kind = ggml_fast_activation_kind(type);
    const size_t row_bytes = ggml_row_bytes(type, k);
    if (kind < 0 || k % 32 != 0 || (row_bytes == 0 && k != 0)) return -1;
    const kernel_set *set = choose();
    if (kind == 1)
        set->quantized(type, (const uint8_t *)blocks, row_bytes, k, (const uint8_t *)activations, activation_stride, batch,
                       row_begin, row_end, y, ldy);
    else
        set->halves(type, (const uint8_t *)blocks, row_bytes, k, x, batch, row_begin, row_end, y, ldy);
    return 0;
}
