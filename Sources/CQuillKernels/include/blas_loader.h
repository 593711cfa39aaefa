// OpenBLAS (as libblas.so.3) loaded at run time. Linking it would run its start-up code before
// any of ours, and OpenBLAS 0.3.21 does not recognise recent Xeons: it falls back to its SSE3
// "Prescott" kernels (sgemm 4x, decode 2x slower here). Loading it ourselves lets us name the
// right kernels first, through OPENBLAS_CORETYPE, unless the environment already does.
#ifndef BLAS_LOADER_H
#define BLAS_LOADER_H

#ifdef __cplusplus
extern "C" {
#endif

/// Loads the BLAS library once (later calls return the first result). 0 on success; otherwise
/// `quill_blas_error()` says why.
int quill_blas_load(void);

/// Sets the environment OpenBLAS reads when it loads (its kernel family and one thread), unless
/// the user set it. setenv is not thread-safe: call this on the main thread before any thread
/// calls quill_blas_load.
void quill_blas_prepare_environment(void);
const char *quill_blas_error(void);

/// The OpenBLAS core in use ("SkylakeX", "Haswell", ...), or "" for another BLAS.
const char *quill_blas_core(void);

/// Row-major products, as cblas_sgemv / cblas_sgemm with CblasRowMajor:
/// y = alpha · A x + beta · y with A (m, n), lda; no transpose.
void quill_sgemv(int m, int n, float alpha, const float *a, int lda, const float *x, float beta, float *y);
/// C (m, n) = alpha · A (m, k) · op(B) + beta · C, op(B) = Bᵀ when trans_b (B stored (n, k)) else B (k, n).
void quill_sgemm(int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);

/// A spin-wait hint to the CPU (x86 PAUSE): lets a spinning thread yield pipeline resources.
static inline void quill_cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

/// Threads BLAS may use inside one call (no effect without OpenBLAS).
void quill_blas_set_threads(int threads);

#ifdef __cplusplus
}
#endif

#endif
