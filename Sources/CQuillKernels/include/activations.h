// Elementwise activations of the forward pass, vectorised with AVX-512 when the CPU has it
// (exp by range reduction and a degree-6 polynomial, within 2 ulp of expf), with expf
// otherwise. Prompt blocks spend more time in these exponentials than in anything but the
// matrix products.
#ifndef ACTIVATIONS_H
#define ACTIVATIONS_H

#ifdef __cplusplus
extern "C" {
#endif

/// Softmax in place over x[0 ..< n] (n ≥ 1), subtracting the maximum first.
void quill_softmax(float *x, int n);

/// SwiGLU in place: gate[i] = gate[i] / (1 + e^-gate[i]) · up[i] for i in 0 ..< n.
void quill_swiglu(float *gate, const float *up, int n);

#ifdef __cplusplus
}
#endif

#endif
