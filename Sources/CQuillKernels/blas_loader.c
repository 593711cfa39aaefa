#define _GNU_SOURCE
#include "blas_loader.h"

#include <cblas.h>
#include <dlfcn.h>
#include <pthread.h>
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

static void load(void) {
    const char *core = core_for_this_cpu();
    if (core != NULL && getenv("OPENBLAS_CORETYPE") == NULL) setenv("OPENBLAS_CORETYPE", core, 0);
    void *handle = dlopen("libblas.so.3", RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        snprintf(load_error, sizeof load_error, "cannot load the BLAS library libblas.so.3 (%s); install libopenblas0-pthread", dlerror());
        load_status = 1;
        return;
    }
    p_sgemv = (__typeof__(cblas_sgemv) *)dlsym(handle, "cblas_sgemv");
    p_sgemm = (__typeof__(cblas_sgemm) *)dlsym(handle, "cblas_sgemm");
    p_set_threads = (void (*)(int))dlsym(handle, "openblas_set_num_threads");
    p_corename = (char *(*)(void))dlsym(handle, "openblas_get_corename");
    if (p_sgemv == NULL || p_sgemm == NULL) {
        snprintf(load_error, sizeof load_error, "libblas.so.3 has no CBLAS interface (cblas_sgemv, cblas_sgemm)");
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

// Products load BLAS on first use, so kernels work without an explicit quill_blas_load();
// a missing library is then a programmer error (callers that can report it load first).
static void require_blas(void) {
    if (__builtin_expect(load_status != 0, 0) && quill_blas_load() != 0) {
        fprintf(stderr, "quill: error: %s\n", load_error);
        abort();
    }
}

void quill_sgemv(int m, int n, float alpha, const float *a, int lda, const float *x, float beta, float *y) {
    require_blas();
    p_sgemv(CblasRowMajor, CblasNoTrans, m, n, alpha, a, lda, x, 1, beta, y, 1);
}

void quill_sgemm(int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc) {
    require_blas();
    p_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb,
            beta, c, ldc);
}

void quill_blas_set_threads(int threads) {
    if (quill_blas_load() == 0 && p_set_threads != NULL) p_set_threads(threads);
}
