// The 256-bit kernels of ggml_dot.c, written once and compiled once per instruction set: the
// including file defines SUFFIX (appended to every function name), TARGET (the target attribute),
// DPBUSD(acc, u, s) (acc + the sums of 4 products of unsigned bytes u by signed bytes s per
// int32 lane) and MASK_BYTES (1 when AVX-512 BW/VL's byte masks are available).
//
// Every (weight row, input row) pair is computed by the same sequence of vector operations
// whatever the other rows of the call, so a row's result does not depend on the batch.

#define FN_GLUE2(a, b) a##_##b
#define FN_GLUE(a, b) FN_GLUE2(a, b)
#define FN(name) FN_GLUE(name, SUFFIX)
#define INLINE __attribute__((target(TARGET), always_inline)) static inline
#define KERNEL __attribute__((target(TARGET))) static

INLINE float FN(hsum)(__m256 v) {
    __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    half = _mm_add_ps(half, _mm_movehl_ps(half, half));
    half = _mm_add_ss(half, _mm_movehdup_ps(half));
    return _mm_cvtss_f32(half);
}

// An f16 scale at any byte address.
INLINE float FN(half)(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

INLINE __m256i FN(load)(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

// Lane j of the result is the sum of the 8 lanes of d[j]: sums of 8 vectors in one.
INLINE __m256i FN(reduce8)(const __m256i d[8]) {
    const __m256i u0 = _mm256_hadd_epi32(_mm256_hadd_epi32(d[0], d[1]), _mm256_hadd_epi32(d[2], d[3]));
    const __m256i u1 = _mm256_hadd_epi32(_mm256_hadd_epi32(d[4], d[5]), _mm256_hadd_epi32(d[6], d[7]));
    // u0 holds d0..d3's low-half sums in its low 128 bits and their high-half sums above.
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

// Bit i of `bits` (i < 32) as 0x10 in byte i: the 5th bit of Q5_0's values.
INLINE __m256i FN(bits_to_16)(uint32_t bits) {
#if MASK_BYTES
    return _mm256_and_si256(_mm256_movm_epi8(bits), _mm256_set1_epi8(0x10));
#else
    // Byte i gets byte i / 8 of `bits`, then all bits of it but bit i mod 8 are set: all ones
    // exactly when that bit was set.
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
        _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
    const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1));
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
#endif
}

// ---------------------------------------------------------------------------------------------
// Blocks of 32 (Q8_0, Q4_0, Q5_0): one weight row against B input rows, 8 blocks at a time.
// Per block, the weights' values as bytes meet each input's block in an exact int32 dot
// product; the 8 products are summed into one vector (lane i = block i), the −8 or −16 offset
// is taken off in integers (the input blocks' sums, shifted), and one multiply-add by the
// weight scales × the input scales adds the 8 blocks to the row's accumulator.

// The values of block `b` as bytes: unsigned for Q4_0 and Q5_0 (offset not yet removed), signed
// for Q8_0.
INLINE __m256i FN(unpack32)(const int type, const uint8_t *b) {
    if (type == GGML_QUANT_Q8_0) return FN(load)(b + 2);
    const __m128i packed = _mm_loadu_si128((const __m128i *)(b + (type == GGML_QUANT_Q5_0 ? 6 : 2)));
    __m256i values = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(0x0F));
    if (type == GGML_QUANT_Q5_0) {
        uint32_t high;
        memcpy(&high, b + 2, sizeof high);
        values = _mm256_or_si256(values, FN(bits_to_16)(high));
    }
    return values;
}

// Blocks j ..< j + count (count ≤ 8) of the row at `row`; lanes past `count` hold zeros.
INLINE void FN(group32)(const int type, const int B, const uint8_t *row, const size_t bytes, int j, const int count,
                        const act_row *a, __m256 *acc) {
    uint16_t halves[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // the weight scales (f16 bits)
    __m256i dots[4][8];
    for (int i = 0; i < 8; ++i) {
        for (int b = 0; b < B; ++b) dots[b][i] = _mm256_setzero_si256();
        if (i >= count) continue;
        const uint8_t *block = row + (size_t)(j + i) * bytes;
        memcpy(&halves[i], block, sizeof halves[i]);
        const __m256i w = FN(unpack32)(type, block);
        const __m256i magnitude = type == GGML_QUANT_Q8_0 ? _mm256_sign_epi8(w, w) : w;
        for (int b = 0; b < B; ++b) {
            const __m256i x = FN(load)(a[b].q + 32 * (j + i));
            dots[b][i] = DPBUSD(dots[b][i], magnitude, type == GGML_QUANT_Q8_0 ? _mm256_sign_epi8(x, w) : x);
        }
    }
    const __m256 scales = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)halves));
    const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int b = 0; b < B; ++b) {
        __m256i sums = FN(reduce8)(dots[b]);
        if (type != GGML_QUANT_Q8_0) {
            const __m256i offsets = _mm256_maskload_epi32(a[b].sums + j, lanes);
            sums = _mm256_sub_epi32(sums, _mm256_slli_epi32(offsets, type == GGML_QUANT_Q5_0 ? 4 : 3));
        }
        const __m256 input_scales = _mm256_maskload_ps(a[b].d + j, lanes);
        acc[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(scales, input_scales), acc[b]);
    }
}

INLINE void FN(row32)(const int type, const int B, const uint8_t *row, int nb, const act_row *a, float *y, int ldy) {
    const size_t bytes = type == GGML_QUANT_Q8_0 ? 34 : type == GGML_QUANT_Q5_0 ? 22 : 18;
    __m256 acc[4];
    for (int b = 0; b < B; ++b) acc[b] = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= nb; j += 8) {
        for (int p = 0; p < 3; ++p) _mm_prefetch((const char *)row + j * bytes + GGML_PREFETCH_AHEAD + 64 * p, _MM_HINT_T0);
        FN(group32)(type, B, row, bytes, j, 8, a, acc);
    }
    switch (nb - j) {  // constant counts, so that the unused lanes cost nothing
    case 1: FN(group32)(type, B, row, bytes, j, 1, a, acc); break;
    case 2: FN(group32)(type, B, row, bytes, j, 2, a, acc); break;
    case 3: FN(group32)(type, B, row, bytes, j, 3, a, acc); break;
    case 4: FN(group32)(type, B, row, bytes, j, 4, a, acc); break;
    case 5: FN(group32)(type, B, row, bytes, j, 5, a, acc); break;
    case 6: FN(group32)(type, B, row, bytes, j, 6, a, acc); break;
    case 7: FN(group32)(type, B, row, bytes, j, 7, a, acc); break;
    default: break;
    }
    for (int b = 0; b < B; ++b) y[(size_t)b * ldy] = FN(hsum)(acc[b]);
}

// ---------------------------------------------------------------------------------------------
// Q4_K and Q5_K: per block of 256, eight sub-blocks of 32 with a 6-bit scale and min each. The
// eight exact int32 dot products (one per sub-block, which is one input block) are summed into
// one vector, lane j = sub-block j, then multiplied by d · scale_j · input scale_j; the mins
// meet the input blocks' sums (dmin · min_j · input scale_j · Σq_j) in a second accumulator.

// d · scale_j and dmin · min_j for j = 0..7, from the 12 packed bytes (see ggml_quants.c).
INLINE void FN(k_scales)(const uint8_t *block, __m256 *scales, __m256 *mins) {
    uint32_t u[3];
    memcpy(u, block + 4, sizeof u);
    const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, top2 = 0x03030303u;
    const uint32_t sc[2] = {u[0] & low6, (u[2] & low4) | (((u[0] >> 6) & top2) << 4)};
    const uint32_t mn[2] = {u[1] & low6, ((u[2] >> 4) & low4) | (((u[1] >> 6) & top2) << 4)};
    const __m128i s = _mm_loadl_epi64((const __m128i *)sc), m = _mm_loadl_epi64((const __m128i *)mn);
    *scales = _mm256_mul_ps(_mm256_set1_ps(FN(half)(block)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(s)));
    *mins = _mm256_mul_ps(_mm256_set1_ps(FN(half)(block + 2)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(m)));
}

// Bit `bit` (constant) of each byte of `h`, moved to bit 4.
INLINE __m256i FN(bit_to_16)(__m256i h, const int bit) {
    const __m256i t = _mm256_and_si256(h, _mm256_set1_epi8((char)(1 << bit)));
    return bit <= 4 ? _mm256_slli_epi16(t, 4 - bit) : _mm256_srli_epi16(t, bit - 4);
}

INLINE void FN(row_k45)(const int type, const int B, const uint8_t *row, int nsb, const act_row *a, float *y, int ldy) {
    const size_t bytes = type == GGML_QUANT_Q4_K ? 144 : 176;
    const int qs_at = type == GGML_QUANT_Q4_K ? 16 : 48;
    __m256 acc[4], macc[4];
    for (int b = 0; b < B; ++b) acc[b] = macc[b] = _mm256_setzero_ps();
    for (int sb = 0; sb < nsb; ++sb) {
        const uint8_t *block = row + sb * bytes;
        _mm_prefetch((const char *)block + GGML_PREFETCH_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)block + GGML_PREFETCH_AHEAD + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)block + GGML_PREFETCH_AHEAD + 128, _MM_HINT_T0);
        __m256 scales, mins;
        FN(k_scales)(block, &scales, &mins);
        const __m256i high = type == GGML_QUANT_Q5_K ? FN(load)(block + 16) : _mm256_setzero_si256();
        __m256i dots[4][8];
        for (int c = 0; c < 4; ++c) {
            const __m256i q = FN(load)(block + qs_at + 32 * c);
            __m256i lo = _mm256_and_si256(q, _mm256_set1_epi8(0x0F));
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(0x0F));
            if (type == GGML_QUANT_Q5_K) {
                lo = _mm256_or_si256(lo, FN(bit_to_16)(high, 2 * c));
                hi = _mm256_or_si256(hi, FN(bit_to_16)(high, 2 * c + 1));
            }
            for (int b = 0; b < B; ++b) {
                const int8_t *x = a[b].q + 256 * sb + 64 * c;
                dots[b][2 * c] = DPBUSD(_mm256_setzero_si256(), lo, FN(load)(x));
                dots[b][2 * c + 1] = DPBUSD(_mm256_setzero_si256(), hi, FN(load)(x + 32));
            }
        }
        for (int b = 0; b < B; ++b) {
            const __m256 sums = _mm256_cvtepi32_ps(FN(reduce8)(dots[b]));
            acc[b] = _mm256_fmadd_ps(sums, _mm256_mul_ps(scales, _mm256_loadu_ps(a[b].d + 8 * sb)), acc[b]);
            macc[b] = _mm256_fmadd_ps(mins, _mm256_loadu_ps(a[b].s + 8 * sb), macc[b]);
        }
    }
    for (int b = 0; b < B; ++b) y[(size_t)b * ldy] = FN(hsum)(_mm256_sub_ps(acc[b], macc[b]));
}

// ---------------------------------------------------------------------------------------------
// Q6_K: per block of 256, sixteen sub-blocks of 16 with an int8 scale each, values q − 32 with q
// 6 bits. Each 32 values (one input block) give one int32 dot product (the −32 offset enters as
// the input's sums per 16, shifted, in the start) whose low 4 lanes are sub-block 2j and high 4
// lanes sub-block 2j + 1; reduced, lanes hold the sub-blocks in the order below, scaled there.

INLINE void FN(row_q6k)(const int B, const uint8_t *row, int nsb, const act_row *a, float *y, int ldy) {
    // Sub-block order after reduce4: [0, 2, 4, 6, 1, 3, 5, 7] (then 8.. the same way).
    const __m128i order = _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
    __m256 acc[4];
    for (int b = 0; b < B; ++b) acc[b] = _mm256_setzero_ps();
    for (int sb = 0; sb < nsb; ++sb) {
        const uint8_t *block = row + sb * 210;
        for (int p = 0; p < 4; ++p) _mm_prefetch((const char *)block + GGML_PREFETCH_AHEAD + 64 * p, _MM_HINT_T0);
        const __m256 d = _mm256_set1_ps(FN(half)(block + 208));
        const __m128i sc = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 192)), order);
        const __m256 scales0 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)));
        const __m256 scales1 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))));
        __m256i dots[4][8];
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = FN(load)(block + 64 * h), ql1 = FN(load)(block + 64 * h + 32);
            const __m256i qh = FN(load)(block + 128 + 32 * h);
            const __m256i m4 = _mm256_set1_epi8(0x0F);
            __m256i v[4];
            v[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x03)), 4));
            v[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x0C)), 2));
            v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, _mm256_set1_epi8(0x30)));
            v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8((char)0xC0)), 2));
            for (int i = 0; i < 4; ++i) {
                const int j = 8 * sb + 4 * h + i;  // the input block
                for (int b = 0; b < B; ++b) {
                    const __m256i start = _mm256_slli_epi32(FN(load)(a[b].neg + 8 * j), 5);
                    dots[b][4 * h + i] = DPBUSD(start, v[i], FN(load)(a[b].q + 32 * j));
                }
            }
        }
        for (int b = 0; b < B; ++b) {
            // Lanes: sub-blocks [0, 2, 4, 6, 1, 3, 5, 7] of dots 0..3, whose input blocks are
            // [0, 1, 2, 3, 0, 1, 2, 3]: the input scales are 4 floats repeated.
            const __m256i u0 = _mm256_hadd_epi32(_mm256_hadd_epi32(dots[b][0], dots[b][1]), _mm256_hadd_epi32(dots[b][2], dots[b][3]));
            const __m256i u1 = _mm256_hadd_epi32(_mm256_hadd_epi32(dots[b][4], dots[b][5]), _mm256_hadd_epi32(dots[b][6], dots[b][7]));
            const __m256 x0 = _mm256_broadcast_ps((const __m128 *)(a[b].d + 8 * sb));
            const __m256 x1 = _mm256_broadcast_ps((const __m128 *)(a[b].d + 8 * sb + 4));
            acc[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(u0), _mm256_mul_ps(scales0, x0), acc[b]);
            acc[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(u1), _mm256_mul_ps(scales1, x1), acc[b]);
        }
    }
    for (int b = 0; b < B; ++b) y[(size_t)b * ldy] = FN(hsum)(acc[b]);
}

// ---------------------------------------------------------------------------------------------
// F16 and BF16: float32 inputs, 8 weights widened per step; every output has two accumulators
// (alternate steps of 8), added at the end.

INLINE __m256 FN(widen)(const int type, const uint8_t *p) {
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (type == GGML_QUANT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INLINE void FN(rows_half)(const int type, const int B, const uint8_t *row, int k, const float *x, float *y, int ldy) {
    __m256 acc[4][2];
    for (int b = 0; b < B; ++b) acc[b][0] = acc[b][1] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= k; i += 16) {
        _mm_prefetch((const char *)row + 2 * i + GGML_PREFETCH_AHEAD, _MM_HINT_T0);
        for (int half = 0; half < 2; ++half) {
            const __m256 w = FN(widen)(type, row + 2 * (i + 8 * half));
            for (int b = 0; b < B; ++b)
                acc[b][half] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + (size_t)b * k + i + 8 * half), acc[b][half]);
        }
    }
    for (; i < k; i += 8) {  // k is a multiple of 32 for every caller; a last 8 … 24 here
        const __m256 w = FN(widen)(type, row + 2 * i);
        for (int b = 0; b < B; ++b) acc[b][0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + (size_t)b * k + i), acc[b][0]);
    }
    for (int b = 0; b < B; ++b) y[(size_t)b * ldy] = FN(hsum)(_mm256_add_ps(acc[b][0], acc[b][1]));
}

// ---------------------------------------------------------------------------------------------
// Entry: rows [row_begin, row_end) against `batch` inputs, up to 4 inputs per pass over a row
// (a row's blocks stay in L1 for the later passes).

#define BATCHES(CALL) \
    switch (B) { case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break; default: CALL(4); break; }

KERNEL void FN(quantized)(int type, const uint8_t *blocks, size_t row_bytes, int k, const uint8_t *activations,
                          size_t stride, int batch, int row_begin, int row_end, float *y, int ldy) {
    for (int r = row_begin; r < row_end; ++r) {
        const uint8_t *row = blocks + (size_t)r * row_bytes;
        for (int b0 = 0; b0 < batch; b0 += 4) {
            const int B = batch - b0 < 4 ? batch - b0 : 4;
            act_row a[4];
            for (int b = 0; b < B; ++b) a[b] = act_view(activations + (size_t)(b0 + b) * stride, k);
            float *out = y + (size_t)b0 * ldy + r;
            switch (type) {
#define Q8(N) FN(row32)(GGML_QUANT_Q8_0, N, row, k / 32, a, out, ldy)
#define Q4(N) FN(row32)(GGML_QUANT_Q4_0, N, row, k / 32, a, out, ldy)
#define Q5(N) FN(row32)(GGML_QUANT_Q5_0, N, row, k / 32, a, out, ldy)
#define K4(N) FN(row_k45)(GGML_QUANT_Q4_K, N, row, k / 256, a, out, ldy)
#define K5(N) FN(row_k45)(GGML_QUANT_Q5_K, N, row, k / 256, a, out, ldy)
#define K6(N) FN(row_q6k)(N, row, k / 256, a, out, ldy)
            case GGML_QUANT_Q8_0: BATCHES(Q8) break;
            case GGML_QUANT_Q4_0: BATCHES(Q4) break;
            case GGML_QUANT_Q5_0: BATCHES(Q5) break;
            case GGML_QUANT_Q4_K: BATCHES(K4) break;
            case GGML_QUANT_Q5_K: BATCHES(K5) break;
            case GGML_QUANT_Q6_K: BATCHES(K6) break;
#undef Q8
#undef Q4
#undef Q5
#undef K4
#undef K5
#undef K6
            }
        }
    }
}

KERNEL void FN(halves)(int type, const uint8_t *blocks, size_t row_bytes, int k, const float *x, int batch,
                       int row_begin, int row_end, float *y, int ldy) {
    // Rows outer, one at a time (one sequential stream: two rows side by side measured 40 %
    // slower), so that each weight row is read from memory once and reused from L1 for every
    // group of 4 inputs.
    for (int r = row_begin; r < row_end; ++r) {
        const uint8_t *row = blocks + (size_t)r * row_bytes;
        for (int b0 = 0; b0 < batch; b0 += 4) {
            const int B = batch - b0 < 4 ? batch - b0 : 4;
            const float *xb = x + (size_t)b0 * k;
            float *yb = y + (size_t)b0 * ldy + r;
#define ONE(N) (type == GGML_QUANT_F16 ? FN(rows_half)(GGML_QUANT_F16, N, row, k, xb, yb, ldy) \
                                       : FN(rows_half)(GGML_QUANT_BF16, N, row, k, xb, yb, ldy))
            BATCHES(ONE)
#undef ONE
        }
    }
}

#undef BATCHES
#undef FN_GLUE2
#undef FN_GLUE
#undef FN
#undef INLINE
#undef KERNEL
