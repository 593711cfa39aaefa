"""Small Hugging Face models of each architecture with weights that every machine computes to the
same bits, shared by scripts/make_hf_reference.py (which runs them in PyTorch once and commits the
logits) and the tests (which rebuild the same folders without PyTorch, convert them with
scripts/export.py and compare Quill's logits with the committed ones).

The weights come from an integer hash (splitmix64) of the tensor's name and the element's index,
mapped to multiples of 2^-24 and scaled by a power of two, so they are exact float32 values that
need neither numpy's random streams (which may change between versions) nor any floating-point
function. Every configuration is what `save_pretrained` of transformers 5 writes for the class,
recorded in the fixture, so the tests write the same config.json without importing the model code.
"""

import zlib

import numpy as np

MASK = (1 << 64) - 1

# Token ids fed to every model: longer than the sliding windows below, so the band is exercised.
IDS = [1, 7, 990, 3, 420, 64, 5, 1200, 8, 33, 77, 2, 1919, 101, 560, 9, 88, 14, 2047, 63, 110, 4, 711, 36]

# The vocabulary is the shipped model's (models/tinystories.model, 2048 pieces), which export.py
# needs beside the weights. The fixture keeps, per position, the log-normaliser of all 2048 logits
# and the log-probabilities of every SUBSET_STRIDE-th token, which is enough to catch any wrong
# logit (it moves the normaliser) at a fraction of the size.
SUBSET_STRIDE = 16

# Architecture name -> (transformers config class, the settings that differ from its defaults).
# Shapes are small but keep what matters: several heads, grouped KV heads, more positions than the
# window, a head size that is not dim / heads where the architecture allows it.
COMMON = dict(vocab_size=2048, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
MODELS = {
    "llama": ("LlamaConfig", dict(COMMON, rms_norm_eps=1e-5, tie_word_embeddings=False)),
    "llama-rope-linear": ("LlamaConfig", dict(COMMON, rms_norm_eps=1e-5, tie_word_embeddings=False,
                                              rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0})),
    "llama-rope-llama3": ("LlamaConfig", dict(COMMON, rms_norm_eps=1e-5, tie_word_embeddings=False,
                                              rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                               "high_freq_factor": 4.0,
                                                               "original_max_position_embeddings": 16,
                                                               "rope_theta": 500000.0})),
    "mistral-window": ("MistralConfig", dict(COMMON, rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=8)),
    "qwen2": ("Qwen2Config", dict(COMMON, rms_norm_eps=1e-6, tie_word_embeddings=True)),
    "phi3": ("Phi3Config", dict(COMMON, rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=0)),
    "gemma": ("GemmaConfig", dict(COMMON, head_dim=32, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh")),
    "gemma2": ("Gemma2Config", dict(COMMON, head_dim=32, rms_norm_eps=1e-6, sliding_window=8, query_pre_attn_scalar=24,
                                    attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                                    layer_types=["sliding_attention", "full_attention", "sliding_attention"])),
    "gpt2": ("GPT2Config", dict(vocab_size=2048, n_embd=64, n_layer=3, n_head=4, n_positions=64, n_inner=None,
                                layer_norm_epsilon=1e-5, bos_token_id=1, eos_token_id=2)),
}


def _splitmix64(x):
    """splitmix64 on a uint64 array (wrapping arithmetic)."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(MASK)
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(MASK)
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(MASK)
    return x ^ (x >> np.uint64(31))


def uniform(name, shape):
    """Exact float32 values k / 2^24 - 1/2 in [-1/2, 1/2), a hash of `name` and the element's index."""
    count = int(np.prod(shape)) if shape else 1
    seed = np.uint64(zlib.crc32(name.encode()) << 32)
    with np.errstate(over="ignore"):
        bits = _splitmix64(np.arange(count, dtype=np.uint64) + seed)
    k = (bits >> np.uint64(40)).astype(np.int64)  # 24 bits
    return ((k - (1 << 23)).astype(np.float32) * np.float32(2.0 ** -24)).reshape(shape)


def weight(name, shape):
    """The value of parameter `name`: norm gains near 1 (or near 0 where the model adds 1, as
    Gemma does; `name` decides), biases small, matrices scaled by a power of two near 1/sqrt(fan-in)."""
    values = uniform(name, shape)
    if len(shape) == 1:
        if "norm" in name or name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            return (values * np.float32(0.5) + np.float32(1.0)).astype(np.float32)
        return (values * np.float32(0.25)).astype(np.float32)  # biases
    fan_in = shape[-1]
    scale = 2.0 ** -int(np.round(np.log2(np.sqrt(fan_in)) - 1))
    return (values * np.float32(scale)).astype(np.float32)
