// 512-bit kernels of ggml_dot.c for the block types decode reads most (Q8_0, Q4_0, Q4_K),
// included once by ggml_dot.c after the 256-bit kernels, whose helpers they use. On CPUs that
// execute 512-bit integer operations at full width (AMD Zen 5, Intel server cores) a zmm dot
// product does twice the work of a ymm one at the same instruction rate (measured here: 8.1
// against 8.2 per ns), and decode at one thread is bound by the rate of operations, not by
// memory: with the weights in L2 the 256-bit kernels reached 52 GB/s on Q8_0 and 28 GB/s on
// Q4_K, against 41 GB/s that one core streams from memory. These reach 75 and 40 GB/s. Zen 4
// splits each zmm operation in two and loses nothing.
//
// Shape: one weight row against B ≤ 4 input rows. Each 64-byte step is one exact int32 dot
// product per lane (lanes 0–7 one block or sub-block, 8–15 the next), converted to float32 and
// multiplied into an accumulator by the matching scales, spread over the lanes by one permute;
// the accumulators are summed once per row. Every (weight row, input row) pair sees the same
// operations whatever B is.

#define ZMM_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"
#define ZINLINE __attribute__((target(ZMM_TARGET), always_inline)) static inline
#define ZKERNEL __attribute__((target(ZMM_TARGET))) static

// Lanes 0–7 take element `first` of an 8-float vector, lanes 8–15 element `first + 1`.
ZINLINE __m512i zmm_pair_index(int first) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(first)), _mm256_set1_epi32(first + 1), 1);
}

// Two 32-byte pieces as one zmm: `low` in lanes 0–7, `high` in lanes 8–15.
ZINLINE __m512i zmm_two(const void *low, const void *high) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)low)),
                              _mm256_loadu_si256((const __m256i *)high), 1);
}

// ---------------------------------------------------------------------------------------------
// Q8_0 and Q4_0: two blocks per zmm. The weights enter dpbusd as unsigned bytes: Q8_0's signed
// values with 128 added (w ^ 0x80), Q4_0's nibbles as stored (offset 8). The offset times the
// input's values is taken off exactly, lane by lane, by starting the product from the input's
// −Σq of each lane's 4 values (act_row.neg), shifted left by 7 (×128) or 3 (×8): every lane is
// the exact product of its 4 true weights before it is converted to float32.

// The 64 values of the pair at `pair` as unsigned bytes (block 1 in bytes 0–31, block 2 in 32–63).
ZINLINE __m512i zmm_pair_values(const int type, const uint8_t *pair) {
    if (type == GGML_QUANT_Q8_0) {
        return _mm512_xor_si512(zmm_two(pair + 2, pair + 36), _mm512_set1_epi8((char)0x80));
    }
    // Q4_0: 16 bytes per block; low nibbles are values 0–15, high nibbles 16–31.
    const __m256i packed = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(pair + 20)), _mm_loadu_si128((const __m128i *)(pair + 2)));
    const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(packed), _mm256_srli_epi16(packed, 4), 1);
    // both: [lo 1, lo 2, hi 1, hi 2] by 16 bytes; in order: [lo 1, hi 1, lo 2, hi 2].
    const __m512i ordered = _mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(3, 1, 2, 0));
    return _mm512_and_si512(ordered, _mm512_set1_epi8(0x0F));
}

// The f16 scales of the 8 blocks at `group` (`bytes` apart) as float32. Assembled in general
// registers: inserting words into a vector one by one competes with the products for the
// vector shuffle unit and measured 2× slower.
ZINLINE __m256 zmm_group_scales(const uint8_t *group, const size_t bytes) {
    uint64_t packed[2];
    for (int h = 0; h < 2; ++h) {
        uint64_t v = 0;
        for (int i = 0; i < 4; ++i) {
            uint16_t half;
            memcpy(&half, group + (size_t)(4 * h + i) * bytes, sizeof half);
            v |= (uint64_t)half << (16 * i);
        }
        packed[h] = v;
    }
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)packed[1], (long long)packed[0]));
}

ZINLINE void zmm_row32(const int type, const int B, const uint8_t *row, const int nb, const act_row *a, float *y,
                       const int ldy) {
    const size_t bytes = type == GGML_QUANT_Q8_0 ? 34 : 18;
    const int shift = type == GGML_QUANT_Q8_0 ? 7 : 3;
    __m512 acc[8];  // two per input row, alternate pairs (one chain of multiply-adds was too long)
    for (int b = 0; b < 2 * B; ++b) acc[b] = _mm512_setzero_ps();
    int j = 0;
    for (; j + 8 <= nb; j += 8) {
        const uint8_t *group = row + (size_t)j * bytes;
        for (int p = 0; p < (int)(8 * bytes + 63) / 64; ++p) _mm_prefetch((const char *)group + GGML_PREFETCH_AHEAD + 64 * p, _MM_HINT_T0);
        const __m256 weight_scales = zmm_group_scales(group, bytes);
        __m256 scales[4];
        for (int b = 0; b < B; ++b) scales[b] = _mm256_mul_ps(weight_scales, _mm256_loadu_ps(a[b].d + j));
        for (int p = 0; p < 4; ++p) {
            const __m512i w = zmm_pair_values(type, group + 2 * p * bytes);
            const __m512i index = zmm_pair_index(2 * p);
            for (int b = 0; b < B; ++b) {
                const __m512i start = _mm512_slli_epi32(_mm512_loadu_si512(a[b].neg + 8 * (j + 2 * p)), shift);
                const __m512i dot = _mm512_dpbusd_epi32(start, w, _mm512_loadu_si512(a[b].q + 32 * (j + 2 * p)));
                const __m512 s = _mm512_permutexvar_ps(index, _mm512_castps256_ps512(scales[b]));
                acc[2 * b + (p & 1)] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, acc[2 * b + (p & 1)]);
            }
        }
    }
    // The last nb mod 8 blocks (none when k is a multiple of 256, as in real models), one at a
    // time in the low lanes.
    for (; j < nb; ++j) {
        const uint8_t *block = row + (size_t)j * bytes;
        const float weight_scale = half_avx512vnni(block);
        __m512i w;
        if (type == GGML_QUANT_Q8_0) {
            w = _mm512_castsi256_si512(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(block + 2)), _mm256_set1_epi8((char)0x80)));
        } else {
            const __m128i packed = _mm_loadu_si128((const __m128i *)(block + 2));
            w = _mm512_castsi256_si512(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(0x0F)));
        }
        for (int b = 0; b < B; ++b) {
            const __m512i start = _mm512_slli_epi32(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a[b].neg + 8 * j))), shift);
            const __m512i x = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a[b].q + 32 * j)));
            const __m512i dot = _mm512_maskz_dpbusd_epi32(0x00FF, start, w, x);
            acc[2 * b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(weight_scale * a[b].d[j]), acc[2 * b]);
        }
    }
    for (int b = 0; b < B; ++b) y[(size_t)b * ldy] = _mm512_reduce_add_ps(_mm512_add_ps(acc[2 * b], acc[2 * b + 1]));
}

// ---------------------------------------------------------------------------------------------
// Q4_K: per block of 256, chunk c (32 bytes) holds sub-block 2c in its low nibbles and 2c + 1 in
// its high nibbles, and the input's blocks 2c and 2c + 1 are 64 contiguous bytes: the chunk is
// loaded into both halves of a zmm and shifted by 0 in the low half, 4 in the high half.

// d · scale_j in lanes 0–7 and dmin · min_j in lanes 8–15 (j = 0..7), from the 12 packed bytes
// after the two f16 factors (ggml's get_scale_min_k4: scale_j, min_j are the low 6 bits of bytes
// j and j + 4 for j < 4; for j ≥ 4 the low and high nibble of byte j + 4 with the top 2 bits of
// bytes j − 4 and j above them). Unpacked with two byte shuffles: the scalar unpacking cost as
// many operations as the block's products.
ZINLINE __m512 zmm_k_scales(const uint8_t *block) {
    // Bytes 4–19 of the block: the 12 packed bytes (s0..s11) and 4 bytes of values, unused.
    const __m128i s = _mm_loadu_si128((const __m128i *)(block + 4));
    // low:  s0..s3 (scales 0–3), s8..s11 (low nibbles: scales 4–7), s4..s7 (mins 0–3), s8..s11 (high nibbles: mins 4–7)
    // high: s0..s3 and s4..s7 in the lanes of scales 4–7 and mins 4–7 (their top 2 bits).
    const __m128i low = _mm_shuffle_epi8(s, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i high = _mm_shuffle_epi8(s, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m128i nibbles = _mm_mask_blend_epi8(0xF000, low, _mm_srli_epi16(low, 4));
    const __m128i keep = _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15);
    const __m128i top = _mm_and_si128(_mm_srli_epi16(high, 2), _mm_set1_epi8(0x30));
    const __m128i six_bits = _mm_or_si128(_mm_and_si128(nibbles, keep), top);
    uint32_t factors;  // d, dmin (f16)
    memcpy(&factors, block, sizeof factors);
    const __m512i spread = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(1), 1);
    const __m512 d = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128((int)factors))));
    return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(six_bits)));
}

ZINLINE void zmm_row_q4k(const int B, const uint8_t *row, const int nsb, const act_row *a, float *y, const int ldy) {
    const __m512i nibble_shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    __m512 acc[8];  // two per input row, alternate chunks (one chain of multiply-adds was too long)
    __m256 mins_acc[4];
    for (int b = 0; b < B; ++b) {
        acc[2 * b] = acc[2 * b + 1] = _mm512_setzero_ps();
        mins_acc[b] = _mm256_setzero_ps();
    }
    for (int sb = 0; sb < nsb; ++sb) {
        const uint8_t *block = row + (size_t)sb * 144;
        _mm_prefetch((const char *)block + GGML_PREFETCH_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)block + GGML_PREFETCH_AHEAD + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)block + GGML_PREFETCH_AHEAD + 128, _MM_HINT_T0);
        const __m512 factors = zmm_k_scales(block);
        const __m256 scales = _mm512_castps512_ps256(factors), mins = _mm512_extractf32x8_ps(factors, 1);
        __m256 sub_scales[4];
        for (int b = 0; b < B; ++b) {
            sub_scales[b] = _mm256_mul_ps(scales, _mm256_loadu_ps(a[b].d + 8 * sb));
            mins_acc[b] = _mm256_fmadd_ps(mins, _mm256_loadu_ps(a[b].s + 8 * sb), mins_acc[b]);
        }
        for (int c = 0; c < 4; ++c) {
            const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(block + 16 + 32 * c)));
            const __m512i w = _mm512_and_si512(_mm512_srlv_epi16(q, nibble_shift), low4);
            const __m512i index = zmm_pair_index(2 * c);
            for (int b = 0; b < B; ++b) {
                const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, _mm512_loadu_si512(a[b].q + 256 * sb + 64 * c));
                const __m512 s = _mm512_permutexvar_ps(index, _mm512_castps256_ps512(sub_scales[b]));
                acc[2 * b + (c & 1)] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, acc[2 * b + (c & 1)]);
            }
        }
    }
    for (int b = 0; b < B; ++b)
        y[(size_t)b * ldy] = _mm512_reduce_add_ps(_mm512_add_ps(acc[2 * b], acc[2 * b + 1])) - hsum_avx512vnni(mins_acc[b]);
}

// ---------------------------------------------------------------------------------------------
// Entry: as the 256-bit quantized kernel; the other types use it (a zmm Q6_K kernel measured
// 10 % slower than the 256-bit one, whose horizontal sums cost less than the zmm kernel's
// per-lane scales for 16 sub-blocks).

ZKERNEL void quantized_avx512(int type, const uint8_t *blocks, size_t row_bytes, int k, const uint8_t *activations,
                              size_t stride, int batch, int row_begin, int row_end, float *y, int ldy) {
    if (type != GGML_QUANT_Q8_0 && type != GGML_QUANT_Q4_0 && type != GGML_QUANT_Q4_K) {
        quantized_avx512vnni(type, blocks, row_bytes, k, activations, stride, batch, row_begin, row_end, y, ldy);
        return;
    }
    for (int r = row_begin; r < row_end; ++r) {
        const uint8_t *row = blocks + (size_t)r * row_bytes;
        for (int b0 = 0; b0 < batch; b0 += 4) {
            const int B = batch - b0 < 4 ? batch - b0 : 4;
            act_row a[4];
            for (int b = 0; b < B; ++b) a[b] = act_view(activations + (size_t)(b0 + b) * stride, k);
            float *out = y + (size_t)b0 * ldy + r;
#define ZBATCHES(CALL) \
    switch (B) { case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break; default: CALL(4); break; }
            switch (type) {
#define Q8(N) zmm_row32(GGML_QUANT_Q8_0, N, row, k / 32, a, out, ldy)
#define Q4(N) zmm_row32(GGML_QUANT_Q4_0, N, row, k / 32, a, out, ldy)
#define K4(N) zmm_row_q4k(N, row, k / 256, a, out, ldy)
            case GGML_QUANT_Q8_0: ZBATCHES(Q8) break;
            case GGML_QUANT_Q4_0: ZBATCHES(Q4) break;
            default: ZBATCHES(K4) break;
#undef Q8
#undef Q4
#undef K4
#undef ZBATCHES
            }
        }
    }
}

#undef ZMM_TARGET
#undef ZINLINE
#undef ZKERNEL
