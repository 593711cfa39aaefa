// Prints llama.cpp's logits for a list of token ids as JSON {"logits": [[...], ...]}, one row per
// position: Tests/python/test_llamacpp_converter.py builds it against a llama.cpp build to measure
// how far llama.cpp's own results are from a float64 reference.
// usage: llama_logits MODEL.gguf id,id,id [threads]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *data) { (void)level; (void)text; (void)data; }

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s MODEL ids [threads]\n", argv[0]); return 2; }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    int ids[4096], n = 0;
    for (char *p = strtok(argv[2], ","); p && n < 4096; p = strtok(NULL, ",")) ids[n++] = atoi(p);
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "load failed\n"); return 1; }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n < 64 ? 64 : n; cp.n_batch = cp.n_ctx; cp.n_ubatch = cp.n_ctx;
    cp.n_threads = cp.n_threads_batch = argc > 3 ? atoi(argv[3]) : 1;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    struct llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; ++i) {
        batch.token[i] = ids[i]; batch.pos[i] = i; batch.n_seq_id[i] = 1; batch.seq_id[i][0] = 0; batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
    printf("{\"logits\": [");
    for (int i = 0; i < n; ++i) {
        const float *row = llama_get_logits_ith(ctx, i);
        printf(i ? ",[" : "[");
        for (int j = 0; j < vocab; ++j) printf(j ? ",%.9g" : "%.9g", row[j]);
        printf("]");
    }
    printf("]}\n");
    return 0;
}
