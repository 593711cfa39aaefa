#define _GNU_SOURCE
#include "blas_loader.h"

#include <cblas.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

static __typeof__(cblas_sgemv) *p_sgemv;
static __typeof__(cblas_sgemm) *p_sgemm;
static void (*p_set_threads)(int);
static char *(*p_corename)(void);
static char load_error[512];
static int load_status = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;

// The best OpenBLAS kernel family this CPU runs (SkylakeX needs AVX-512 F/CD/BW/DQ/VL).
static const char *core_for_this_cpu(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl")) return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

void quill_blas_prepare_environment(void) {
    const char *core = core_for_this_cpu();
    if (core != NULL && getenv("OPENBLAS_CORETYPE") == NULL) setenv("OPENBLAS_CORETYPE", core, 0);
    // BLAS runs single-threaded inside Quill's own workers. Said before loading, OpenBLAS starts
    // no thread pool of its own, so neither loading nor exiting waits for one.
    if (getenv("OPENBLAS_NUM_THREADS") == NULL) setenv("OPENBLAS_NUM_THREADS", "1", 0);
}

static void load(void) {
    // A no-op when quill_blas_prepare_environment already ran (both variables are then set), so
    // a load on another thread never calls setenv.
    quill_blas_prepare_environment();
    // $QUILL_BLAS_LIBRARY names another CBLAS library (a path or a soname).
    const char *library = getenv("QUILL_BLAS_LIBRARY");
    if (library == NULL || library[0] == 0) library = "libblas.so.3";
    void *handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *reason = dlerror();
        snprintf(load_error, sizeof load_error, "cannot load the BLAS library %s (%s); install libopenblas0-pthread",
                 library, reason != NULL ? reason : "unknown reason");
        load_status = 1;
        return;
    }
    p_sgemv = (__typeof__(cblas_sgemv) *)dlsym(handle, "cblas_sgemv");
    p_sgemm = (__typeof__(cblas_sgemm) *)dlsym(handle, "cblas_sgemm");
    p_set_threads = (void (*)(int))dlsym(handle, "openblas_set_num_threads");
    p_corename = (char *(*)(void))dlsym(handle, "openblas_get_corename");
    if (p_sgemv == NULL || p_sgemm == NULL) {
        snprintf(load_error, sizeof load_error, "%s has no CBLAS interface (cblas_sgemv, cblas_sgemm)", library);
        load_status = 1;
        return;
    }
    load_status = 0;
}

int quill_blas_load(void) {
    pthread_once(&once, load);
    return load_status;
}

const char *quill_blas_error(void) { return load_error; }

const char *quill_blas_core(void) {
    return quill_blas_load() == 0 && p_corename != NULL ? p_corename() : "";
}

// Products load BLAS on first use. Every caller that can report a missing library loads it
// first (Transformer's initialiser throws the reason); anyone else gets these plain loops, so
// no input can end in a crash here. They compute the same products, only slowly.
static int have_blas(void) { return quill_blas_load() == 0; }

static void plain_sgemv(int m, int n, float alpha, const float *a, int lda, const float *x, float beta, float *y) {
    for (int i = 0; i < m; i++) {
        float sum = 0;
        for (int j = 0; j < n; j++) sum += a[(size_t)i * lda + j] * x[j];
        y[i] = alpha * sum + (beta == 0 ? 0 : beta * y[i]);
    }
}

// C (m, n) = alpha · A (m, k) · op(B) + beta · C, op(B) = Bᵀ (B is n × k) or B (k × n).
static void plain_sgemm(int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            float sum = 0;
            for (int p = 0; p < k; p++) {
                sum += a[(size_t)i * lda + p] * (trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j]);
            }
            float *out = &c[(size_t)i * ldc + j];
            *out = alpha * sum + (beta == 0 ? 0 : beta * *out);
        }
    }
}

void quill_sgemv(int m, int n, float alpha, const float *a, int lda, const float *x, float beta, float *y) {
    if (!have_blas()) {
        plain_sgemv(m, n, alpha, a, lda, x, beta, y);
        return;
    }
    p_sgemv(CblasRowMajor, CblasNoTrans, m, n, alpha, a, lda, x, 1, beta, y, 1);
}

void quill_sgemm(int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc) {
    if (!have_blas()) {
        plain_sgemm(trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    p_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb,
            beta, c, ldc);
}

void quill_blas_set_threads(int threads) {
    if (quill_blas_load() == 0 && p_set_threads != NULL) p_set_threads(threads);
}
