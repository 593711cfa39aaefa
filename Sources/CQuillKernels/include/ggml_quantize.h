// Float32 rows into GGUF tensor storage (ggml's block formats), the inverse of ggml_quants.h's
// decoders, for writing GGUF files.
//
// Each quantizer gives the same bytes as ggml's reference quantizer (quantize_row_*_ref in
// ggml-quants.c, and its copy in numpy, gguf-py's gguf.quants.quantize) for every finite input:
//   Q8_0: d = max|x| / 127; q[i] = roundf(x[i] / d) (ties away from zero), computed as x · (1/d)
//   Q4_0: m = the x of largest |x| (the first one on a tie); d = m / −8;
//         q = min(15, trunc(x · (1/d) + 8.5))
//   Q5_0: as Q4_0 with d = m / −16, q = min(31, trunc(x · (1/d) + 16.5)), the 5th bits in qh
//   F16:  round to nearest, ties to even (IEEE; what F16C and numpy's astype(float16) do)
//   BF16: round to nearest, ties to even on the top 16 bits (NaN quieted)
// with every product and sum rounded to float32 on its own (no fused multiply-add). A block's
// scale d is stored as F16, so a block whose d overflows F16 (max|x| above about 8.3 million for
// Q8_0) stores an infinite scale: callers check the range first.
#ifndef GGML_QUANTIZE_H
#define GGML_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// float32 → IEEE half bits, rounded to nearest (ties to even); beyond 65504 (from 65520 up)
/// gives infinity; NaN stays NaN (quiet, sign and top payload bits kept).
uint16_t ggml_fp32_to_fp16(float x);

/// float32 → bfloat16 bits, rounded to nearest (ties to even); NaN becomes a quiet NaN.
uint16_t ggml_fp32_to_bf16(float x);

/// Row encoders: n float32 values (a multiple of the type's block size) from `x` into packed
/// blocks at `out` (any alignment; ggml_row_bytes(type, n) bytes).
void ggml_quantize_row_f32(const float *x, void *out, int64_t n);
void ggml_quantize_row_f16(const float *x, void *out, int64_t n);
void ggml_quantize_row_bf16(const float *x, void *out, int64_t n);
void ggml_quantize_row_q8_0(const float *x, void *out, int64_t n);
void ggml_quantize_row_q4_0(const float *x, void *out, int64_t n);
void ggml_quantize_row_q5_0(const float *x, void *out, int64_t n);

/// Whether Quill can encode a type id (F32, F16, BF16, Q8_0, Q4_0, Q5_0): 1 or 0.
int ggml_can_quantize(int type);

/// ggml_quantize_row_* chosen by type id; returns 0, or -1 (writing nothing) when the type is
/// not encoded here or n is negative or not a multiple of its block size.
int ggml_quantize_row(int type, const float *x, void *out, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
