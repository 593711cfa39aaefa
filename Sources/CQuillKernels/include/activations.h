// Elementwise activations and single-row attention of the forward pass, vectorised with
// AVX-512 when the CPU has it (exp by range reduction and a degree-6 polynomial, relative error
// under 4e-7 as tested), with expf and plain loops otherwise. Before this, prompt blocks spent
// more time in these exponentials than in anything but the matrix products.
#ifndef ACTIVATIONS_H
#define ACTIVATIONS_H

#ifdef __cplusplus
extern "C" {
#endif

/// Index of the first NaN or infinity in x[0 ..< n], or -1. Run on every row of logits, so
/// the all-finite case is a vector loop over 64-element blocks (6 µs for 32,000 logits, where a
/// Swift SIMD loop took 50 µs: 6% of a 15M-model token).
long quill_first_non_finite(const float *x, long n);

/// Softmax in place over x[0 ..< n] (n ≥ 1), subtracting the maximum first.
void quill_softmax(float *x, int n);

/// One query head against a cache: scores[t] = scale · q · k_t for t < length (k_t at
/// k + t · stride), softmax over them, then out = Σ_t scores[t] · v_t (v_t at v + t · stride).
/// `scores` holds at least `length` floats; q, k_t, v_t and out have `head_size` floats.
void quill_attend(const float *q, const float *k, const float *v, int stride, int length, int head_size,
                  float scale, float *scores, float *out);

/// SwiGLU in place: gate[i] = gate[i] / (1 + e^-gate[i]) · up[i] for i in 0 ..< n.
void quill_swiglu(float *gate, const float *up, int n);

/// Switches the AVX-512 versions off (0) or back on (1, if the CPU can), so tests can check the
/// portable loops too. Returns the previous setting.
int activations_force_vector(int on);

#ifdef __cplusplus
}
#endif

#endif
