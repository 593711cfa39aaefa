// GGUF tensor storage types (ggml's block formats): tables by ggml type id, row decoding to
// float32, and row dot products with float32 activations.
//
// These are the plain, exact kernels: every dequantised element is the same float32 that ggml's
// reference dequantize_row_* (and gguf-py's numpy code) produces, and the dot products are a
// straightforward loop over the dequantised row. The fast paths (int8 activations, packing for
// the blocked products) are to be checked against these.
//
// Block layouts (little-endian; "f16" is an IEEE half; blocks are packed, with no alignment, so
// a block may start at any byte address):
//   Q8_0 (32 values, 34 bytes):  f16 d, int8 q[32];                   x[i] = d · q[i]
//   Q4_0 (32 values, 18 bytes):  f16 d, u8 qs[16];                    x[j] = d · ((qs[j] & 15) − 8),
//                                                                     x[j+16] = d · ((qs[j] >> 4) − 8)
//   Q5_0 (32 values, 22 bytes):  f16 d, u8 qh[4] (a u32 of high bits), u8 qs[16]; as Q4_0 with
//                                bit j (for x[j]) or bit j+16 (for x[j+16]) of qh as the 5th bit, − 16
//   Q4_K (256 values, 144 bytes): f16 d, f16 dmin, u8 scales[12] (eight 6-bit scales and mins),
//                                u8 qs[128]; 8 sub-blocks of 32: x = (d · sc) · q − (dmin · m)
//   Q5_K (256 values, 176 bytes): f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]; as Q4_K
//                                with a 5th bit from qh
//   Q6_K (256 values, 210 bytes): u8 ql[128], u8 qh[64], int8 scales[16], f16 d;
//                                16 sub-blocks of 16: x = (d · scale) · (q − 32), q 6 bits
//   F16, BF16 (1 value, 2 bytes); F32 (1 value, 4 bytes).
#ifndef GGML_QUANTS_H
#define GGML_QUANTS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// ggml type ids (as in GGUF tensor infos and gguf-py's GGMLQuantizationType) of the types
/// Quill decodes.
enum {
    GGML_QUANT_F32 = 0,
    GGML_QUANT_F16 = 1,
    GGML_QUANT_Q4_0 = 2,
    GGML_QUANT_Q5_0 = 6,
    GGML_QUANT_Q8_0 = 8,
    GGML_QUANT_Q4_K = 12,
    GGML_QUANT_Q5_K = 13,
    GGML_QUANT_Q6_K = 14,
    GGML_QUANT_BF16 = 30,
};

/// Values per block of a type (1 for F32, F16, BF16; 32 for Q8_0, Q4_0, Q5_0; 256 for the K
/// types), or 0 for a type id Quill does not decode.
int64_t ggml_block_size(int type);

/// Bytes per block of a type, or 0 for a type id Quill does not decode.
size_t ggml_block_bytes(int type);

/// Bytes of n values of a type; 0 when the type is not decoded here, n is negative, or n is not
/// a multiple of the block size.
size_t ggml_row_bytes(int type, int64_t n);

/// One IEEE half (as its bits) to float32, exactly: every finite value (subnormals included) and
/// infinity keep their value and sign; a NaN stays NaN with its sign and payload, quieted (the
/// quiet bit set, as the F16C instruction does), so both paths give the same bits.
float ggml_fp16_to_fp32(uint16_t h);

/// Row decoders: n values (a multiple of the type's block size) from the packed blocks at
/// `blocks` (any alignment) to `out`.
void ggml_dequantize_row_f32(const void *blocks, float *out, int64_t n);
void ggml_dequantize_row_f16(const void *blocks, float *out, int64_t n);
void ggml_dequantize_row_bf16(const void *blocks, float *out, int64_t n);
void ggml_dequantize_row_q8_0(const void *blocks, float *out, int64_t n);
void ggml_dequantize_row_q4_0(const void *blocks, float *out, int64_t n);
void ggml_dequantize_row_q5_0(const void *blocks, float *out, int64_t n);
void ggml_dequantize_row_q4_K(const void *blocks, float *out, int64_t n);
void ggml_dequantize_row_q5_K(const void *blocks, float *out, int64_t n);
void ggml_dequantize_row_q6_K(const void *blocks, float *out, int64_t n);

/// Row dot products Σ_i w[i] · x[i], w the row of n values dequantised exactly as above, x n
/// float32 activations. Summation order (the same for every type, with no fused multiply-add):
/// p[i] = w[i] · x[i] rounded to float32 and added in index order into one of 8 float32
/// accumulators, lane i mod 8; the lanes are then summed as ((a0 + a4) + (a2 + a6)) +
/// ((a1 + a5) + (a3 + a7)) (the order of an 8-wide vector's horizontal sum). The error is
/// therefore at most about (n/8 + 4) · 2⁻²⁴ · Σ|w[i] · x[i]|.
float ggml_dot_row_f32(const void *blocks, const float *x, int64_t n);
float ggml_dot_row_f16(const void *blocks, const float *x, int64_t n);
float ggml_dot_row_bf16(const void *blocks, const float *x, int64_t n);
float ggml_dot_row_q8_0(const void *blocks, const float *x, int64_t n);
float ggml_dot_row_q4_0(const void *blocks, const float *x, int64_t n);
float ggml_dot_row_q5_0(const void *blocks, const float *x, int64_t n);
float ggml_dot_row_q4_K(const void *blocks, const float *x, int64_t n);
float ggml_dot_row_q5_K(const void *blocks, const float *x, int64_t n);
float ggml_dot_row_q6_K(const void *blocks, const float *x, int64_t n);

/// ggml_dequantize_row_* chosen by type id; returns 0, or -1 (writing nothing) when the type is
/// not decoded here or n is not a multiple of its block size.
int ggml_dequantize_row(int type, const void *blocks, float *out, int64_t n);

/// ggml_dot_row_* chosen by type id, into *result; returns 0, or -1 (leaving *result alone) when
/// the type is not decoded here or n is not a multiple of its block size.
int ggml_dot_row(int type, const void *blocks, const float *x, int64_t n, float *result);

/// Selects the path of ggml_dequantize_row_f16 and ggml_fp16_to_fp32 by name ("portable",
/// "f16c", or "auto" to choose again); returns 0 when this CPU cannot run it. For tests.
int ggml_f16_force_path(const char *name);

/// Which path the F16 conversion uses: "f16c" or "portable".
const char *ggml_f16_path_name(void);

#ifdef __cplusplus
}
#endif

#endif
