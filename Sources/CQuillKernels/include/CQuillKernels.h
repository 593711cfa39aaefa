// Umbrella header of the C part of the kernels.
#include "q8_kernels.h"
#include "ggml_quants.h"
#include "ggml_matmul.h"
#include "gemm_kernels.h"
#include "gemm_int8.h"
#include "activations.h"
#include "blas_loader.h"
