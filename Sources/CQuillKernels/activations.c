#include "activations.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

static int cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

static int vector_enabled = -1;

static int has_avx512(void) {
    if (vector_enabled < 0) vector_enabled = cpu_has_avx512();
    return vector_enabled;
}

// e^x for 16 floats: x = n·ln2 + r with |r| ≤ ln2/2, e^r from the Cephes expf polynomial,
// then scaled by 2^n. Inputs are clamped to the range where expf is finite and normal. The
// clamp's operands are ordered so that a NaN passes through (max/min return their second
// operand when either is NaN): NaN weights must show up as NaN logits, never as numbers.
__attribute__((target("avx512f")))
static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.7f), _mm512_max_ps(_mm512_set1_ps(-87.3f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);   // ln2, high part (exact product)
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);       // ln2, low part
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

__attribute__((target("avx512f")))
static void softmax_avx512(float *x, int n) {
    __m512 largest = _mm512_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 16 <= n; i += 16) largest = _mm512_max_ps(largest, _mm512_loadu_ps(x + i));
    if (i < n) largest = _mm512_mask_max_ps(largest, (__mmask16)((1u << (n - i)) - 1), largest, _mm512_maskz_loadu_ps((__mmask16)((1u << (n - i)) - 1), x + i));
    const __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(largest));
    __m512 sum = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), top));
        _mm512_storeu_ps(x + i, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (i < n) {
        const __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), top));
        _mm512_mask_storeu_ps(x + i, tail, e);
        sum = _mm512_mask_add_ps(sum, tail, sum, e);
    }
    const __m512 inverse = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inverse));
    if (i < n) {
        const __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + i), inverse));
    }
}

// Decode attention: the dot products and the weighted sum of values in 16-float vectors, with
// masked tails for head sizes that are not a multiple of 16.
__attribute__((target("avx512f")))
static void attend_avx512(const float *q, const float *k, const float *v, int stride, int length, int head_size,
                          float scale, float *scores, float *out) {
    for (int t = 0; t < length; ++t) {
        const float *kt = k + (size_t)t * stride;
        __m512 acc = _mm512_setzero_ps();
        for (int i = 0; i < head_size; i += 16) {
            const __mmask16 m = head_size - i >= 16 ? 0xFFFF : (__mmask16)((1u << (head_size - i)) - 1);
            acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), _mm512_maskz_loadu_ps(m, kt + i), acc);
        }
        scores[t] = _mm512_reduce_add_ps(acc) * scale;
    }
    softmax_avx512(scores, length);
    // Four output vectors (64 floats) at a time, so each score feeds four independent FMAs.
    for (int i = 0; i < head_size; i += 64) {
        __mmask16 m[4];
        for (int j = 0; j < 4; ++j) {
            const int left = head_size - i - 16 * j;
            m[j] = left >= 16 ? 0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
        }
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (int t = 0; t < length; ++t) {
            const float *vt = v + (size_t)t * stride + i;
            const __m512 a = _mm512_set1_ps(scores[t]);
            acc0 = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m[0], vt), acc0);
            if (m[1]) acc1 = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m[1], vt + 16), acc1);
            if (m[2]) acc2 = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m[2], vt + 32), acc2);
            if (m[3]) acc3 = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m[3], vt + 48), acc3);
        }
        _mm512_mask_storeu_ps(out + i, m[0], acc0);
        if (m[1]) _mm512_mask_storeu_ps(out + i + 16, m[1], acc1);
        if (m[2]) _mm512_mask_storeu_ps(out + i + 32, m[2], acc2);
        if (m[3]) _mm512_mask_storeu_ps(out + i + 48, m[3], acc3);
    }
}

__attribute__((target("avx512f")))
static void swiglu_avx512(float *gate, const float *up, int n) {
    int i = 0;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        const __m512 g = _mm512_loadu_ps(gate + i);
        const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
        _mm512_storeu_ps(gate + i, _mm512_mul_ps(silu, _mm512_loadu_ps(up + i)));
    }
    for (; i < n; ++i) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}
#endif

int activations_force_vector(int on) {
#if defined(__x86_64__)
    const int previous = has_avx512();
    vector_enabled = on ? cpu_has_avx512() : 0;
    return previous;
#else
    (void)on;
    return 0;
#endif
}

void quill_softmax(float *x, int n) {
#if defined(__x86_64__)
    if (has_avx512()) {
        softmax_avx512(x, n);
        return;
    }
#endif
    float largest = x[0];
    for (int i = 1; i < n; ++i) largest = x[i] > largest ? x[i] : largest;
    float sum = 0;
    for (int i = 0; i < n; ++i) {
        x[i] = expf(x[i] - largest);
        sum += x[i];
    }
    const float inverse = 1.0f / sum;
    for (int i = 0; i < n; ++i) x[i] *= inverse;
}

void quill_swiglu(float *gate, const float *up, int n) {
#if defined(__x86_64__)
    if (has_avx512()) {
        swiglu_avx512(gate, up, n);
        return;
    }
#endif
    for (int i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

void quill_attend(const float *q, const float *k, const float *v, int stride, int length, int head_size,
                  float scale, float *scores, float *out) {
#if defined(__x86_64__)
    if (has_avx512()) {
        attend_avx512(q, k, v, stride, length, head_size, scale, scores, out);
        return;
    }
#endif
    for (int t = 0; t < length; ++t) {
        float dot = 0;
        for (int i = 0; i < head_size; ++i) dot += q[i] * k[(size_t)t * stride + i];
        scores[t] = dot * scale;
    }
    quill_softmax(scores, length);
    for (int i = 0; i < head_size; ++i) out[i] = 0;
    for (int t = 0; t < length; ++t)
        for (int i = 0; i < head_size; ++i) out[i] += scores[t] * v[(size_t)t * stride + i];
}

// A NaN or an infinity has every exponent bit set. Each block ORs its 64 tests (clang
// vectorises the inner loop), and only a block with a hit is searched element by element.
long quill_first_non_finite(const float *x, long n) {
    const uint32_t exponent = 0x7F800000u;
    long i = 0;
    for (; i + 64 <= n; i += 64) {
        uint32_t hit = 0;
        for (int j = 0; j < 64; ++j) {
            uint32_t bits;
            memcpy(&bits, x + i + j, sizeof bits);
            hit |= (bits & exponent) == exponent;
        }
        if (hit) break;
    }
    for (; i < n; ++i) {
        uint32_t bits;
        memcpy(&bits, x + i, sizeof bits);
        if ((bits & exponent) == exponent) return i;
    }
    return -1;
}
