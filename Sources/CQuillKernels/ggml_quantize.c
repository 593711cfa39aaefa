#include "ggml_quantize.h"
#include "ggml_quants.h"

#include <math.h>
#include <string.h>

// Every result is specified to the bit (see the header): no contraction of a · b + c into a
// fused multiply-add, whatever the compiler or target.
#pragma STDC FP_CONTRACT OFF

#define QK 32  // values per block of Q8_0, Q4_0, Q5_0

static inline uint32_t bits_of(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}

static inline void put_u16(uint8_t *out, uint16_t value) {
    out[0] = (uint8_t)(value & 0xff);
    out[1] = (uint8_t)(value >> 8);
}

// ---------------------------------------------------------------------------------------------
// float32 to half and bfloat16

uint16_t ggml_fp32_to_fp16(float x) {
    const uint32_t bits = bits_of(x);
    const uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    const uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) {
        // NaN: keep the top payload bits and set the quiet bit, so it stays a NaN.
        return (uint16_t)(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
    }
    const uint32_t exponent = magnitude >> 23;  // biased by 127
    if (exponent >= 127 + 16) return (uint16_t)(sign | 0x7c00u);  // 2^16 and up (and infinity)
    // The value as an integer mantissa m (with its implicit bit) times 2^(exponent − 150).
    const uint32_t mantissa = (magnitude & 0x7fffffu) | (exponent ? 0x800000u : 0);
    // Bits of the float32 mantissa that a half drops: 13 for a normal half (exponent ≥ −14),
    // more for a subnormal half, whose unit is 2^−24.
    uint32_t shift = exponent >= 127 - 14 ? 13 : (126 - exponent);
    if (exponent == 0) shift = 126;  // float32 subnormals are far below half's range
    if (shift > 24) return sign;     // below 2^−25: rounds to zero (2^−25 itself is a tie to 0)
    uint32_t kept = mantissa >> shift;
    const uint32_t dropped = mantissa & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (dropped > half || (dropped == half && (kept & 1))) kept += 1;
    if (exponent >= 127 - 14) {
        // Normal: kept holds the implicit bit at bit 10; rebias the exponent (127 → 15). A
        // carry out of the mantissa moves into the exponent, up to infinity (0x7c00) at 65520.
        return (uint16_t)(sign | (((exponent - (127 - 15)) << 10) + (kept - 0x400u)));
    }
    // Subnormal half: kept is the count of 2^−24 units (0x400 is the smallest normal, which
    // the same bits encode).
    return (uint16_t)(sign | kept);
}

uint16_t ggml_fp32_to_bf16(float x) {
    uint32_t bits = bits_of(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 64);  // quiet NaN
    bits += 0x7fffu + ((bits >> 16) & 1);  // round to nearest, ties to even
    return (uint16_t)(bits >> 16);
}

// ---------------------------------------------------------------------------------------------
// Rows

void ggml_quantize_row_f32(const float *x, void *out, int64_t n) {
    memcpy(out, x, (size_t)n * sizeof(float));  // float32 is stored little-endian, as on x86-64
}

void ggml_quantize_row_f16(const float *x, void *out, int64_t n) {
    uint8_t *y = out;
    for (int64_t i = 0; i < n; i++) put_u16(y + 2 * i, ggml_fp32_to_fp16(x[i]));
}

void ggml_quantize_row_bf16(const float *x, void *out, int64_t n) {
    uint8_t *y = out;
    for (int64_t i = 0; i < n; i++) put_u16(y + 2 * i, ggml_fp32_to_bf16(x[i]));
}

void ggml_quantize_row_q8_0(const float *x, void *out, int64_t n) {
    uint8_t *y = out;
    for (int64_t b = 0; b < n / QK; b++, x += QK, y += 2 + QK) {
        float largest = 0.0f;
        for (int j = 0; j < QK; j++) largest = fmaxf(largest, fabsf(x[j]));
        const float d = largest / 127.0f;
        const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
        put_u16(y, ggml_fp32_to_fp16(d));
        for (int j = 0; j < QK; j++) {
            const float scaled = x[j] * inverse;
            y[2 + j] = (uint8_t)(int8_t)roundf(scaled);
        }
    }
}

// Q4_0 and Q5_0: the scale is signed so that the value of largest magnitude maps to the
// lowest code (−8 or −16 before the offset), which uses the asymmetric range fully.
static float signed_extreme(const float *x) {
    float largest = 0.0f, extreme = 0.0f;
    for (int j = 0; j < QK; j++) {
        if (largest < fabsf(x[j])) {
            largest = fabsf(x[j]);
            extreme = x[j];
        }
    }
    return extreme;
}

void ggml_quantize_row_q4_0(const float *x, void *out, int64_t n) {
    uint8_t *y = out;
    for (int64_t b = 0; b < n / QK; b++, x += QK, y += 2 + QK / 2) {
        const float d = signed_extreme(x) / -8.0f;
        const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
        put_u16(y, ggml_fp32_to_fp16(d));
        for (int j = 0; j < QK / 2; j++) {
            const float low = x[j] * inverse;
            const float high = x[j + QK / 2] * inverse;
            const float low_offset = low + 8.5f;
            const float high_offset = high + 8.5f;
            const int q0 = (int)(int8_t)low_offset, q1 = (int)(int8_t)high_offset;
            y[2 + j] = (uint8_t)((q0 < 15 ? q0 : 15) | (q1 < 15 ? q1 : 15) << 4);
        }
    }
}

void ggml_quantize_row_q5_0(const float *x, void *out, int64_t n) {
    uint8_t *y = out;
    for (int64_t b = 0; b < n / QK; b++, x += QK, y += 2 + 4 + QK / 2) {
        const float d = signed_extreme(x) / -16.0f;
        const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
        put_u16(y, ggml_fp32_to_fp16(d));
        uint32_t high_bits = 0;  // bit j: the 5th bit of value j
        for (int j = 0; j < QK / 2; j++) {
            const float low = x[j] * inverse;
            const float high = x[j + QK / 2] * inverse;
            const float low_offset = low + 16.5f;
            const float high_offset = high + 16.5f;
            int q0 = (int)(int8_t)low_offset, q1 = (int)(int8_t)high_offset;
            q0 = q0 < 31 ? q0 : 31;
            q1 = q1 < 31 ? q1 : 31;
            y[6 + j] = (uint8_t)((q0 & 0x0f) | (q1 & 0x0f) << 4);
            high_bits |= (uint32_t)((q0 >> 4) & 1) << j;
            high_bits |= (uint32_t)((q1 >> 4) & 1) << (j + QK / 2);
        }
        for (int k = 0; k < 4; k++) y[2 + k] = (uint8_t)(high_bits >> (8 * k));
    }
}

int ggml_can_quantize(int type) {
    switch (type) {
    case GGML_QUANT_F32: case GGML_QUANT_F16: case GGML_QUANT_BF16:
    case GGML_QUANT_Q8_0: case GGML_QUANT_Q4_0: case GGML_QUANT_Q5_0: return 1;
    default: return 0;
    }
}

int ggml_quantize_row(int type, const float *x, void *out, int64_t n) {
    if (!ggml_can_quantize(type) || n < 0 || n % ggml_block_size(type) != 0) return -1;
    switch (type) {
    case GGML_QUANT_F32: ggml_quantize_row_f32(x, out, n); break;
    case GGML_QUANT_F16: ggml_quantize_row_f16(x, out, n); break;
    case GGML_QUANT_BF16: ggml_quantize_row_bf16(x, out, n); break;
    case GGML_QUANT_Q8_0: ggml_quantize_row_q8_0(x, out, n); break;
    case GGML_QUANT_Q4_0: ggml_quantize_row_q4_0(x, out, n); break;
    case GGML_QUANT_Q5_0: ggml_quantize_row_q5_0(x, out, n); break;
    }
    return 0;
}
