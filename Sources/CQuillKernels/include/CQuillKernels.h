// Umbrella header of the C part of the kernels.
#include "q8_kernels.h"
#include "ggml_quants.h"
#include "ggml_quantize.h"
#include "ggml_matmul.h"
#include "ggml_dot.h"
#include "gemm_kernels.h"
#include "activations.h"
#include "blas_loader.h"
