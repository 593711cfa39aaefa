#!/usr/bin/env python3
"""Convert a Hugging Face decoder-only model into a GGUF file (or a llama2.c checkpoint) for Quill.

Usage: python3 scripts/export.py HF_DIR OUT.gguf [--type f32|f16]
       python3 scripts/export.py HF_DIR OUT.bin --format llama2c

HF_DIR holds config.json, the weights as *.safetensors (one file, or shards listed in
model.safetensors.index.json) and tokenizer.model.

--format gguf (the default) writes llama.cpp's architecture for the Hugging Face class through
llama.cpp's own writer (the PyPI `gguf` package) with llama.cpp's tensor names and metadata keys,
RoPE base and norm epsilon included, and the SentencePiece vocabulary inside the file, so the
result also runs in llama.cpp: LlamaForCausalLM and MistralForCausalLM as `llama` (Mistral's
sliding window as llama.attention.sliding_window, which llama.cpp's llama graph does not read),
Qwen2ForCausalLM as `qwen2` (Q/K/V biases), Phi3ForCausalLM as `phi3` (fused QKV and gate/up),
GemmaForCausalLM as `gemma` and Gemma2ForCausalLM as `gemma2` (norm gains stored as 1 + w, as
llama.cpp's converter stores them; Gemma 2's query_pre_attn_scalar folded into attn_q, since
llama.cpp derives the query scale from the head size), GPT2LMHeadModel as `gpt2` (Conv1D
matrices transposed).
RoPE scaling is written as llama.cpp's converter writes it: rope_type "linear" as
`llama.rope.scaling.type` and `.factor`, rope_type "llama3" (Llama 3.1 and later) as the
per-pair frequency divisors `rope_freqs.weight`.
Weight matrices are float32, or float16 with --type f16; norms stay float32. Needs numpy, gguf
and sentencepiece.

--format llama2c writes float32 with the 256-byte version 1 header (see ../shared/docs/formats.md)
and copies tokenizer.model beside it with the same stem (OUT.bin -> OUT.model). That format has no
field for the RoPE base, its scaling or the norm epsilon, so it takes only 10000, no scaling and
1e-5. Needs numpy only.

Safetensors files are parsed here and memory-mapped, and the output is written one tensor at a
time, so a 7B model does not need twice its size in RAM.

Anything the output format cannot express, or Quill's forward pass would not honour (RoPE scaling
other than linear and llama3 (yarn, dynamic, longrope, ...), a sliding window llama.cpp would
drop, biases the architecture does not have, another architecture), is refused with a one-line error naming the config key or
tensor, before any output is written.
"""

import argparse
import json
import math
import os
import shutil
import struct
import sys

import numpy as np

PROG = "export.py"
MAGIC = 0x616B3432  # "ak42"
VERSION = 1
HEADER_BYTES = 256

# Hugging Face class -> llama.cpp architecture it is written as. The llama2.c format holds the
# first two only.
GGUF_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Phi3ForCausalLM": "phi3",
    "GemmaForCausalLM": "gemma",
    "Gemma2ForCausalLM": "gemma2",
    "GPT2LMHeadModel": "gpt2",
}
LLAMA2C_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
# The tanh approximation of GELU, under the names transformers gives it (the feed-forward of
# Gemma and GPT-2 as llama.cpp computes it).
GELU_TANH = ("gelu_pytorch_tanh", "gelu_new")
ROPE_THETA = 10000.0  # the only RoPE base llama2.c checkpoints can describe
RMS_NORM_EPS = 1e-5  # the epsilon Quill's RMSNorm uses
EPS_TOLERANCE = 1e-12

# Safetensors dtype -> little-endian numpy dtype of the stored values.
STORED_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}


class ExportError(Exception):
    """A reason to refuse the conversion; printed as one line `export.py: error: ...`."""


# ---------------------------------------------------------------------------------------------
# Safetensors reading (format: u64 LE header length N, N bytes of JSON, then the raw data buffer;
# each JSON entry gives dtype, shape and [begin, end) byte offsets into the data buffer).


class TensorRef:
    """Where one tensor lives on disk; `load()` memory-maps it and upcasts to float32."""

    def __init__(self, name, path, dtype, shape, offset):
        self.name, self.path, self.dtype, self.shape, self.offset = name, path, dtype, shape, offset

    def load(self):
        stored = np.memmap(self.path, dtype=STORED_DTYPES[self.dtype], mode="r",
                           offset=self.offset, shape=self.shape)
        if self.dtype == "BF16":
            # bfloat16 is the top half of a float32: shifting the bits up is an exact upcast.
            return (stored.astype(np.uint32) << 16).view(np.float32)
        return stored.astype(np.float32, copy=False)  # F32 stays a view of the mapped file


def read_safetensors_header(path):
    """Return {name: TensorRef} for one .safetensors file, checking offsets against its size."""
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw_len = f.read(8)
        if len(raw_len) != 8:
            raise ExportError(f"{path}: too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > file_size - 8:
            raise ExportError(f"{path}: header length {header_len} exceeds the file size")
        try:
            header = json.loads(f.read(header_len))
        except ValueError as e:
            raise ExportError(f"{path}: bad safetensors header: {e}") from None
    data_start = 8 + header_len
    refs = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = info["dtype"], tuple(info["shape"])
        if dtype not in STORED_DTYPES:
            raise ExportError(f"tensor {name} has dtype {dtype}; only F32, F16 and BF16 are supported")
        begin, end = info["data_offsets"]
        expected = math.prod(shape) * np.dtype(STORED_DTYPES[dtype]).itemsize
        if end - begin != expected or data_start + end > file_size:
            raise ExportError(f"{path}: tensor {name} data_offsets {begin}..{end} do not fit "
                              f"shape {list(shape)} {dtype} in a {file_size}-byte file")
        refs[name] = TensorRef(name, path, dtype, shape, data_start + begin)
    return refs


def find_tensors(hf_dir):
    """Index every tensor of the model, from the shard index when there is one."""
    index_path = os.path.join(hf_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = sorted(n for n in os.listdir(hf_dir) if n.endswith(".safetensors"))
    if not files:
        raise ExportError(f"no *.safetensors files in {hf_dir}")
    tensors = {}
    for name in files:
        for tname, ref in read_safetensors_header(os.path.join(hf_dir, name)).items():
            if tname in tensors:
                raise ExportError(f"tensor {tname} appears in both {tensors[tname].path} and {ref.path}")
            tensors[tname] = ref
    return tensors


# ---------------------------------------------------------------------------------------------
# Config validation.


# The parameters each RoPE type Quill runs takes, besides rope_type/type, rope_theta and a
# partial_rotary_factor of 1 (transformers' names; all are required, none is guessed).
ROPE_TYPES = {
    "default": (),
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}


def read_rope_scaling(cfg):
    """Return (config key, {"rope_type": ..., parameters}) for a linear or llama3 scaling, or
    (None, None) for none, reading both spellings: transformers 5 writes `rope_parameters`
    ({"rope_theta": ..., "rope_type": "default", ...}); older versions top-level `rope_theta` and
    `rope_scaling` ({"type": "linear", "factor": 2.0}). Other types (yarn, dynamic, longrope, ...),
    missing or extra parameters and two spellings that disagree are refused."""
    found = {}  # config key -> (rope type, parameters), for dicts that name a type
    for key in ("rope_parameters", "rope_scaling"):
        value = cfg.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ExportError(f"{key} is {json.dumps(value)}; expected an object")
        if "type" in value and "rope_type" in value and value["type"] != value["rope_type"]:
            raise ExportError(f"{key} has type {value['type']!r} but rope_type {value['rope_type']!r}")
        kind = value.get("rope_type", value.get("type", "default"))
        if kind not in ROPE_TYPES:
            raise ExportError(f"{key} has rope_type {kind!r} ({json.dumps(value)}); Quill runs rope_type "
                              "\"default\", \"linear\" and \"llama3\" only")
        if value.get("partial_rotary_factor", 1.0) != 1.0:
            raise ExportError(f"{key}.partial_rotary_factor is {value['partial_rotary_factor']}; "
                              "Quill rotates the whole head")
        names = ROPE_TYPES[kind]
        unknown = sorted(set(value) - {"rope_type", "type", "rope_theta", "partial_rotary_factor"} - set(names))
        if unknown:
            understood = ", ".join(("rope_theta",) + names)
            raise ExportError(f"{key} has {', '.join(unknown)} ({json.dumps(value)}); with rope_type {kind!r} "
                              f"Quill understands only {understood}")
        params = {}
        for name in names:
            if name not in value:
                raise ExportError(f"{key}.{name} is missing; rope_type {kind!r} needs it")
            v = value[name]
            if name == "original_max_position_embeddings":
                if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                    raise ExportError(f"{key}.{name} is {v!r}; expected a positive integer")
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ExportError(f"{key}.{name} is {v!r}; expected a positive number")
            params[name] = v
        if kind == "llama3" and not params["low_freq_factor"] < params["high_freq_factor"]:
            # The rule interpolates between the two wavelengths; equal ones leave no band.
            raise ExportError(f"{key}.low_freq_factor {params['low_freq_factor']} must be below "
                              f"high_freq_factor {params['high_freq_factor']}")
        if "type" in value or "rope_type" in value:
            found[key] = (kind, params)
    if len({json.dumps(v, sort_keys=True) for v in found.values()}) > 1:
        raise ExportError("the RoPE scaling is given twice with different values: "
                          + ", ".join(f"{k} {json.dumps(cfg[k])}" for k in found))
    for key, (kind, params) in found.items():
        if kind != "default":
            return key, dict(params, rope_type=kind)
    return None, None


def read_rope_theta(cfg):
    """Return (config key, RoPE base) from either spelling (see read_rope_scaling)."""
    if cfg.get("partial_rotary_factor", 1.0) != 1.0:
        raise ExportError(f"partial_rotary_factor is {cfg['partial_rotary_factor']}; Quill rotates the whole head")
    given = {}  # spelling -> value
    for key in ("rope_parameters", "rope_scaling"):
        if isinstance(cfg.get(key), dict) and "rope_theta" in cfg[key]:
            given[f"{key}.rope_theta"] = cfg[key]["rope_theta"]
    if cfg.get("rope_theta") is not None:
        given["rope_theta"] = cfg["rope_theta"]
    if len(set(given.values())) > 1:
        raise ExportError("the RoPE base is given twice with different values: "
                          + ", ".join(f"{k} {v}" for k, v in given.items()))
    theta = next(iter(given.values()), ROPE_THETA)  # Llama's and Mistral's Hugging Face default
    name = next(iter(given), "rope_theta")
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not theta > 0:
        raise ExportError(f"{name} is {theta!r}; expected a positive number")
    return name, float(theta)


def llama3_rope_factors(theta, head_size, scaling):
    """The divisors of the pairs' frequencies [head_size/2] that llama.cpp's converter stores as
    rope_freqs.weight for rope_type llama3: 1 for pairs whose wavelength is below
    original_max_position_embeddings / high_freq_factor, `factor` above
    original_max_position_embeddings / low_freq_factor, and between them the reciprocal of a
    blend of 1/factor and 1 that moves with the wavelength (transformers' _compute_llama3_parameters
    divides the frequencies by the same numbers)."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    freqs = theta ** (-np.arange(0, head_size, 2, dtype=np.float64) / head_size)  # [head_size/2]
    wavelen = 2 * math.pi / freqs
    smooth = (old_context / wavelen - low) / (high - low)
    blended = 1 / ((1 - smooth) / factor + smooth)
    factors = np.where(wavelen < old_context / high, 1.0, np.where(wavelen > old_context / low, factor, blended))
    return factors.astype(np.float32)


def read_config(hf_dir, fmt):
    """Return the model's hyperparameters, refusing what `fmt` or Quill cannot represent."""
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)

    archs = cfg.get("architectures") or []
    supported = LLAMA2C_ARCHITECTURES if fmt == "llama2c" else tuple(GGUF_ARCHITECTURES)
    if len(archs) != 1 or archs[0] not in supported:
        raise ExportError(f"architectures is {archs}; supported{' by --format llama2c' if fmt == 'llama2c' else ''}: "
                          f"{', '.join(supported)}")
    arch = GGUF_ARCHITECTURES[archs[0]]
    if arch == "gpt2":
        return read_gpt2_config(cfg)
    for field in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "vocab_size", "max_position_embeddings"):
        if not isinstance(cfg.get(field), int) or cfg[field] <= 0:
            raise ExportError(f"{field} must be a positive integer, got {cfg.get(field)!r}")
    context = cfg["max_position_embeddings"]

    scaling_key, scaling = read_rope_scaling(cfg)
    theta_key, theta = read_rope_theta(cfg)
    # Hugging Face's LlamaConfig/MistralConfig default is 1e-6 when the key is absent.
    eps = cfg.get("rms_norm_eps", 1e-6)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ExportError(f"rms_norm_eps is {eps!r}; expected a positive number")
    if fmt == "llama2c":
        if scaling is not None:
            raise ExportError(f"{scaling_key} has rope_type {scaling['rope_type']!r}; the llama2.c format has no "
                              "field for RoPE scaling (use --format gguf, which carries it)")
        if theta != ROPE_THETA:
            raise ExportError(f"{theta_key} is {theta:g}; the llama2.c format has no field for it and "
                              f"Quill uses {ROPE_THETA:g} (use --format gguf, which carries it)")
        if abs(eps - RMS_NORM_EPS) > EPS_TOLERANCE:
            shown = f"{eps:g}" if "rms_norm_eps" in cfg else f"absent (Hugging Face default {eps:g})"
            raise ExportError(f"rms_norm_eps is {shown}; the llama2.c format has no field for it and "
                              f"Quill uses {RMS_NORM_EPS:g} (use --format gguf, which carries it)")

    window = read_window(cfg, arch, fmt, context)
    for field in ("attention_bias", "mlp_bias"):
        if cfg.get(field):
            raise ExportError(f"{field} is true; Quill reads biases only where the architecture always has them "
                              "(Qwen2's q, k, v; GPT-2's)")
    if arch.startswith("gemma"):
        # transformers' Gemma reads hidden_activation (default the tanh GELU), not hidden_act.
        act = cfg.get("hidden_activation") or "gelu_pytorch_tanh"
        if act not in GELU_TANH:
            raise ExportError(f"hidden_activation is {act!r}; Gemma runs as GeGLU with the tanh GELU "
                              "(gelu_pytorch_tanh)")
    else:
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise ExportError(f"hidden_act is {act!r}; Quill's feed-forward uses SwiGLU with silu")

    dim, n_heads = cfg["hidden_size"], cfg["num_attention_heads"]
    n_kv_heads = cfg.get("num_key_value_heads") or n_heads
    if dim % n_heads:
        raise ExportError(f"hidden_size {dim} is not a multiple of num_attention_heads {n_heads}")
    head_size = dim // n_heads
    if arch.startswith("gemma"):
        # Gemma's heads need not tile dim: head_dim is written as attention.key_length.
        head_size = cfg.get("head_dim") or head_size
        if isinstance(head_size, bool) or not isinstance(head_size, int) or head_size <= 0:
            raise ExportError(f"head_dim is {head_size!r}; expected a positive integer")
    if head_size % 2:
        raise ExportError(f"head size hidden_size/num_attention_heads = {head_size} is odd; RoPE needs pairs")
    if cfg.get("head_dim") is not None and cfg["head_dim"] != head_size:
        raise ExportError(f"head_dim is {cfg['head_dim']} but hidden_size/num_attention_heads is "
                          f"{head_size}; Quill derives the head size from dim")
    if n_heads % n_kv_heads:
        raise ExportError(f"num_attention_heads {n_heads} is not a multiple of "
                          f"num_key_value_heads {n_kv_heads}")

    extra = read_gemma2_options(cfg, dim, n_heads, head_size) if arch == "gemma2" else {}
    default_tie = arch.startswith("gemma")  # Gemma's configs tie the classifier unless told otherwise
    return dict(extra, **{
        "gguf_architecture": arch,
        "head_size": head_size,
        "sliding_window": window,
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", default_tie)),
        "dim": dim,
        "hidden_dim": cfg["intermediate_size"],
        "n_layers": cfg["num_hidden_layers"],
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads,
        "vocab_size": cfg["vocab_size"],
        "seq_len": context,
        "rope_theta": theta,
        "rope_scaling": scaling,
        "rms_norm_eps": float(eps),
        "architecture": archs[0],
    })


def read_window(cfg, arch, fmt, context):
    """The sliding window of every windowed layer, or None when every layer sees the whole prefix.
    A window at least as long as the context never takes effect. Mistral's window covers every
    layer; Gemma 2's every other layer, starting with layer 0, as layer_types must then say; Qwen2
    and Phi-3 run in llama.cpp with full attention, so a window shorter than the context is refused."""
    window = cfg.get("sliding_window")
    if arch == "qwen2" and not cfg.get("use_sliding_window", False):
        window = None  # transformers' Qwen2 ignores sliding_window unless use_sliding_window is set
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window <= 0):
        raise ExportError(f"sliding_window is {window!r}; expected a positive integer or null")
    layer_types = cfg.get("layer_types") or []
    if arch == "gemma2":
        expected = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(cfg["num_hidden_layers"])]
        if layer_types and layer_types != expected:
            raise ExportError(f"layer_types is {layer_types}; llama.cpp's gemma2 slides on even layers only ({expected})")
        if window is None:
            raise ExportError("sliding_window is missing; Gemma 2 needs it")
        return window
    if any(t != "full_attention" for t in layer_types):
        raise ExportError(f"layer_types has {sorted(set(layer_types) - {'full_attention'})}; Quill runs a window "
                          "on every layer (Mistral) or on alternate layers (Gemma 2) only")
    if window is None or window >= context:
        return None
    if fmt == "llama2c" or arch != "llama":
        where = "the llama2.c format has no field for it" if fmt == "llama2c" else \
            f"llama.cpp runs {arch} with full attention"
        raise ExportError(f"sliding_window is {window!r}, shorter than max_position_embeddings {context}; "
                          f"{where}, which would be wrong past the window")
    return window


def read_gemma2_options(cfg, dim, n_heads, head_size):
    """Gemma 2's soft caps and the factor that folds query_pre_attn_scalar into attn_q: llama.cpp
    writes no key for the query scale and derives it as 1/sqrt(head_dim), or 1/sqrt(dim / heads)
    for the 27B model (46 layers), so q is multiplied by sqrt(derived / query_pre_attn_scalar)."""
    options = {}
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        value = cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not (math.isfinite(value) and value > 0)):
            raise ExportError(f"{key} is {value!r}; expected a positive number or null")
        options[key] = value
    scalar = cfg.get("query_pre_attn_scalar", head_size)
    if isinstance(scalar, bool) or not isinstance(scalar, (int, float)) or not scalar > 0:
        raise ExportError(f"query_pre_attn_scalar is {scalar!r}; expected a positive number")
    derived = dim // n_heads if cfg["num_hidden_layers"] == 46 else head_size
    options["query_factor"] = math.sqrt(derived / scalar)
    return options


def read_gpt2_config(cfg):
    """GPT-2's hyperparameters under transformers' GPT2Config names."""
    for field in ("n_embd", "n_layer", "n_head", "vocab_size", "n_positions"):
        if isinstance(cfg.get(field), bool) or not isinstance(cfg.get(field), int) or cfg[field] <= 0:
            raise ExportError(f"{field} must be a positive integer, got {cfg.get(field)!r}")
    dim, n_heads = cfg["n_embd"], cfg["n_head"]
    if dim % n_heads or (dim // n_heads) % 2:
        raise ExportError(f"n_embd {dim} / n_head {n_heads} is not an even head size")
    act = cfg.get("activation_function", "gelu_new")
    if act not in GELU_TANH:
        raise ExportError(f"activation_function is {act!r}; Quill runs GPT-2's feed-forward with the tanh GELU (gelu_new)")
    if cfg.get("scale_attn_by_inverse_layer_idx"):
        raise ExportError("scale_attn_by_inverse_layer_idx is true; Quill scales every layer's attention by 1/sqrt(head)")
    if cfg.get("scale_attn_weights", True) is not True:
        raise ExportError("scale_attn_weights is false; Quill scales attention by 1/sqrt(head)")
    if cfg.get("add_cross_attention"):
        raise ExportError("add_cross_attention is true; Quill runs decoder-only models")
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ExportError(f"layer_norm_epsilon is {eps!r}; expected a positive number")
    hidden = cfg.get("n_inner") or 4 * dim
    return {
        "gguf_architecture": "gpt2", "architecture": "GPT2LMHeadModel",
        "dim": dim, "hidden_dim": hidden, "n_layers": cfg["n_layer"], "n_heads": n_heads, "n_kv_heads": n_heads,
        "head_size": dim // n_heads, "vocab_size": cfg["vocab_size"], "seq_len": cfg["n_positions"],
        "rope_theta": None, "rope_scaling": None, "rms_norm_eps": float(eps), "sliding_window": None,
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", True)),
    }


# ---------------------------------------------------------------------------------------------
# Tensor plan: which HF tensor fills each llama2.c slot, with its expected shape.


def layer_name(i, suffix):
    return f"model.layers.{i}.{suffix}.weight"


def plan_tensors(c, tensors):
    """Check names and shapes; return (groups, shared) where groups are the llama2.c arrays in
    file order, each a list of (hf_name, expected_shape, rope_heads or None)."""
    dim, hidden, L = c["dim"], c["hidden_dim"], c["n_layers"]
    kv_dim = dim * c["n_kv_heads"] // c["n_heads"]
    per_layer = lambda suffix, shape, rope=None: [(layer_name(i, suffix), shape, rope) for i in range(L)]

    shared = c["tie_word_embeddings"] or "lm_head.weight" not in tensors
    if shared and not c["tie_word_embeddings"]:
        print(f"{PROG}: note: no lm_head.weight; the classifier is shared with the token embedding",
              file=sys.stderr)
    groups = [
        per_layer("input_layernorm", (dim,)),                                   # rms_att
        per_layer("post_attention_layernorm", (dim,)),                          # rms_ffn
        [("model.norm.weight", (dim,), None)],                                  # rms_final
        [("model.embed_tokens.weight", (c["vocab_size"], dim), None)],          # token_embedding
        per_layer("self_attn.q_proj", (dim, dim), c["n_heads"]),                # wq
        per_layer("self_attn.k_proj", (kv_dim, dim), c["n_kv_heads"]),          # wk
        per_layer("self_attn.v_proj", (kv_dim, dim)),                           # wv
        per_layer("self_attn.o_proj", (dim, dim)),                              # wo
        per_layer("mlp.gate_proj", (hidden, dim)),                              # w1
        per_layer("mlp.down_proj", (dim, hidden)),                              # w2
        per_layer("mlp.up_proj", (hidden, dim)),                                # w3
    ]
    if not shared:
        groups.append([("lm_head.weight", (c["vocab_size"], dim), None)])       # wcls

    for name in tensors:
        if name.endswith(".bias"):
            raise ExportError(f"tensor {name} is present; Quill has no bias tensors")
    expected = {name for group in groups for name, _, _ in group}
    # Older exports carry the RoPE frequency buffer (recomputed by Quill); a tied lm_head is a copy.
    ignorable = lambda n: n.endswith("rotary_emb.inv_freq") or (shared and n == "lm_head.weight")
    for name in sorted(tensors):
        if name not in expected and not ignorable(name):
            raise ExportError(f"unexpected tensor {name} (more layers than num_hidden_layers={L}, "
                              "or not a Llama tensor)")
    for group in groups:
        for name, shape, _ in group:
            if name not in tensors:
                raise ExportError(f"missing tensor {name}")
            if tensors[name].shape != shape:
                raise ExportError(f"tensor {name} has shape {list(tensors[name].shape)}, "
                                  f"expected {list(shape)} from config.json")
    return groups, shared


def rotate_half_to_adjacent(w, n_heads):
    """Reorder the rows of a q/k projection within each head for llama2.c's RoPE.

    Hugging Face rotates the pairs (x[i], x[i + hs/2]) of each head ("rotate half"); llama2.c
    rotates adjacent pairs (x[2i], x[2i+1]) with the same angle for the same i. So the new row 2i+t
    of a head must be the old row t*hs/2 + i (t = 0, 1): view each head's rows as [2, hs/2], swap
    those two axes, and flatten back.
    """
    rows, cols = w.shape
    head_size = rows // n_heads
    return w.reshape(n_heads, 2, head_size // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


# ---------------------------------------------------------------------------------------------


def write_checkpoint(out_path, c, groups, shared, tensors):
    """Write header and tensors to OUT.tmp, then rename, so a failure leaves no partial file."""
    header = struct.pack("<Ii7iB", MAGIC, VERSION, c["dim"], c["hidden_dim"], c["n_layers"],
                         c["n_heads"], c["n_kv_heads"], c["vocab_size"], c["seq_len"], int(shared))
    tmp_path = out_path + ".tmp"
    try:
        with open(tmp_path, "wb") as f:
            f.write(header.ljust(HEADER_BYTES, b"\0"))
            for group in groups:
                for name, _, rope_heads in group:
                    w = tensors[name].load()
                    if rope_heads is not None:
                        w = rotate_half_to_adjacent(w, rope_heads)
                    np.ascontiguousarray(w, dtype="<f4").tofile(f)
                    del w  # drop the mapping/copy before the next tensor
        os.replace(tmp_path, out_path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return os.path.getsize(out_path)


# llama.cpp's name for each per-layer Hugging Face tensor, in llama.cpp's converter's order.
GGUF_LAYER_NAMES = [
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.down_proj", "ffn_down"),
    ("mlp.up_proj", "ffn_up"),
]


def gguf_tensor_plan(c, shared):
    """[(gguf name, hf name, rope heads or None)] in llama.cpp's order; `output` only when untied.
    Names and shapes were checked by plan_tensors."""
    plan = [("token_embd.weight", "model.embed_tokens.weight", None)]
    rope_heads = {"self_attn.q_proj": c["n_heads"], "self_attn.k_proj": c["n_kv_heads"]}
    for i in range(c["n_layers"]):
        for hf, gg in GGUF_LAYER_NAMES:
            plan.append((f"blk.{i}.{gg}.weight", layer_name(i, hf), rope_heads.get(hf)))
    plan.append(("output_norm.weight", "model.norm.weight", None))
    if not shared:
        plan.append(("output.weight", "lm_head.weight", None))
    return plan


# The per-layer tensors of each architecture: (Hugging Face suffix under the layer's prefix, GGUF
# name under blk.N., transform). Transforms: "rope" (Llama's Q/K rows to adjacent pairs), "plus1"
# (Gemma's norm gains w stored as 1 + w, as llama.cpp's converter stores them), "T" (GPT-2's
# Conv1D keeps (in, out); GGUF wants (out, in)), "query" (Gemma 2's query scale folded in).
LAYER_TENSORS = {
    "qwen2": [
        ("input_layernorm.weight", "attn_norm.weight", None),
        ("self_attn.q_proj.weight", "attn_q.weight", None), ("self_attn.q_proj.bias", "attn_q.bias", None),
        ("self_attn.k_proj.weight", "attn_k.weight", None), ("self_attn.k_proj.bias", "attn_k.bias", None),
        ("self_attn.v_proj.weight", "attn_v.weight", None), ("self_attn.v_proj.bias", "attn_v.bias", None),
        ("self_attn.o_proj.weight", "attn_output.weight", None),
        ("post_attention_layernorm.weight", "ffn_norm.weight", None),
        ("mlp.gate_proj.weight", "ffn_gate.weight", None), ("mlp.down_proj.weight", "ffn_down.weight", None),
        ("mlp.up_proj.weight", "ffn_up.weight", None),
    ],
    "phi3": [
        ("input_layernorm.weight", "attn_norm.weight", None),
        ("self_attn.qkv_proj.weight", "attn_qkv.weight", None),
        ("self_attn.o_proj.weight", "attn_output.weight", None),
        ("post_attention_layernorm.weight", "ffn_norm.weight", None),
        ("mlp.gate_up_proj.weight", "ffn_up.weight", None),  # gate rows first, as llama.cpp splits it
        ("mlp.down_proj.weight", "ffn_down.weight", None),
    ],
    "gemma": [
        ("input_layernorm.weight", "attn_norm.weight", "plus1"),
        ("self_attn.q_proj.weight", "attn_q.weight", None), ("self_attn.k_proj.weight", "attn_k.weight", None),
        ("self_attn.v_proj.weight", "attn_v.weight", None), ("self_attn.o_proj.weight", "attn_output.weight", None),
        ("post_attention_layernorm.weight", "ffn_norm.weight", "plus1"),
        ("mlp.gate_proj.weight", "ffn_gate.weight", None), ("mlp.down_proj.weight", "ffn_down.weight", None),
        ("mlp.up_proj.weight", "ffn_up.weight", None),
    ],
    "gemma2": [
        ("input_layernorm.weight", "attn_norm.weight", "plus1"),
        ("self_attn.q_proj.weight", "attn_q.weight", "query"), ("self_attn.k_proj.weight", "attn_k.weight", None),
        ("self_attn.v_proj.weight", "attn_v.weight", None), ("self_attn.o_proj.weight", "attn_output.weight", None),
        ("post_attention_layernorm.weight", "post_attention_norm.weight", "plus1"),
        ("pre_feedforward_layernorm.weight", "ffn_norm.weight", "plus1"),
        ("mlp.gate_proj.weight", "ffn_gate.weight", None), ("mlp.down_proj.weight", "ffn_down.weight", None),
        ("mlp.up_proj.weight", "ffn_up.weight", None),
        ("post_feedforward_layernorm.weight", "post_ffw_norm.weight", "plus1"),
    ],
    "gpt2": [
        ("ln_1.weight", "attn_norm.weight", None), ("ln_1.bias", "attn_norm.bias", None),
        ("attn.c_attn.weight", "attn_qkv.weight", "T"), ("attn.c_attn.bias", "attn_qkv.bias", None),
        ("attn.c_proj.weight", "attn_output.weight", "T"), ("attn.c_proj.bias", "attn_output.bias", None),
        ("ln_2.weight", "ffn_norm.weight", None), ("ln_2.bias", "ffn_norm.bias", None),
        ("mlp.c_fc.weight", "ffn_up.weight", "T"), ("mlp.c_fc.bias", "ffn_up.bias", None),
        ("mlp.c_proj.weight", "ffn_down.weight", "T"), ("mlp.c_proj.bias", "ffn_down.bias", None),
    ],
}


def expected_gguf_shape(c, name):
    """The (rows, cols) or (length,) of GGUF tensor `name` (without blk.N.) from the configuration."""
    dim, hidden, hs = c["dim"], c["hidden_dim"], c["head_size"]
    q, kv = c["n_heads"] * hs, c["n_kv_heads"] * hs
    base, kind = name.rsplit(".", 1)
    widths = {"attn_q": q, "attn_k": kv, "attn_v": kv, "attn_qkv": q + 2 * kv, "attn_output": dim,
              "ffn_gate": hidden, "ffn_up": 2 * hidden if c["gguf_architecture"] == "phi3" else hidden,
              "ffn_down": dim}
    inputs = {"attn_output": q, "ffn_down": hidden}
    if base in widths:
        return (widths[base], inputs.get(base, dim)) if kind == "weight" else (widths[base],)
    return {"token_embd": (c["vocab_size"], dim), "output": (c["vocab_size"], dim),
            "position_embd": (c["seq_len"], dim)}.get(base, (dim,))  # norms


def plan_gguf_tensors(c, tensors):
    """[(gguf name, hf name, transform)] for the architectures beyond Llama, in llama.cpp's order,
    after checking that every tensor is there with its shape and that none is left over."""
    arch = c["gguf_architecture"]
    if arch == "gpt2":
        prefix, layer = "transformer.", "transformer.h.{}."
        top = [("token_embd.weight", "transformer.wte.weight", None),
               ("position_embd.weight", "transformer.wpe.weight", None)]
        tail = [("output_norm.weight", "transformer.ln_f.weight", None),
                ("output_norm.bias", "transformer.ln_f.bias", None)]
    else:
        prefix, layer = "model.", "model.layers.{}."
        plus = "plus1" if arch.startswith("gemma") else None
        top = [("token_embd.weight", "model.embed_tokens.weight", None)]
        tail = [("output_norm.weight", "model.norm.weight", plus)]
    shared = c["tie_word_embeddings"] or "lm_head.weight" not in tensors
    if not shared:
        tail.append(("output.weight", "lm_head.weight", None))
    plan = list(top)
    for i in range(c["n_layers"]):
        plan += [(f"blk.{i}.{gg}", layer.format(i) + hf, t) for hf, gg, t in LAYER_TENSORS[arch]]
    plan += tail
    for gg, hf, transform in plan:
        if hf not in tensors:
            raise ExportError(f"missing tensor {hf}")
        shape = tuple(tensors[hf].shape)
        if transform == "T":
            shape = shape[::-1]
        expected = expected_gguf_shape(c, gg.split(".", 2)[2] if gg.startswith("blk.") else gg)
        if shape != expected:
            shown = list(tensors[hf].shape)
            raise ExportError(f"tensor {hf} has shape {shown}, expected {list(expected[::-1] if transform == 'T' else expected)} "
                              "from config.json")
    used = {hf for _, hf, _ in plan}
    # Buffers some exports carry (the RoPE frequencies, GPT-2's causal mask) and a tied copy of the
    # embedding are not weights.
    ignorable = lambda n: (n.endswith(("rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias"))
                           or (shared and n == "lm_head.weight"))
    for name in sorted(tensors):
        if name not in used and not ignorable(name):
            raise ExportError(f"unexpected tensor {name} (more layers than the config's count, "
                              f"or not a {c['architecture']} tensor)")
    return plan, shared


def transform_tensor(w, transform, c):
    """Apply one plan transform to a float32 array (see LAYER_TENSORS)."""
    if transform == "plus1":
        return w + np.float32(1)
    if transform == "T":
        return np.ascontiguousarray(w.T)
    if transform == "query":
        return w * np.float32(c["query_factor"])
    return w


def write_architecture_keys(writer, c):
    """The ARCH.* keys llama.cpp reads for the architectures beyond Llama."""
    arch = c["gguf_architecture"]
    writer.add_context_length(c["seq_len"])
    writer.add_embedding_length(c["dim"])
    writer.add_block_count(c["n_layers"])
    writer.add_feed_forward_length(c["hidden_dim"])
    writer.add_head_count(c["n_heads"])
    writer.add_head_count_kv(c["n_kv_heads"])
    if arch == "gpt2":
        writer.add_layer_norm_eps(c["rms_norm_eps"])
        return
    writer.add_layer_norm_rms_eps(c["rms_norm_eps"])
    writer.add_rope_freq_base(c["rope_theta"])
    writer.add_rope_dimension_count(c["head_size"])
    if arch.startswith("gemma"):
        writer.add_key_length(c["head_size"])
        writer.add_value_length(c["head_size"])
    if arch == "gemma2":
        if c["attn_logit_softcapping"] is not None:
            writer.add_attn_logit_softcapping(float(c["attn_logit_softcapping"]))
        if c["final_logit_softcapping"] is not None:
            writer.add_final_logit_softcapping(float(c["final_logit_softcapping"]))
        writer.add_sliding_window(c["sliding_window"])


ROPE_FACTORS = "rope_freqs.weight"  # llama.cpp's name for the per-pair RoPE frequency divisors


def load_gguf_packages():
    try:
        import gguf
        import sentencepiece  # noqa: F401  (used by llama2c_to_gguf.write_tokenizer)
    except ImportError as e:
        raise ExportError(f"--format gguf needs the gguf and sentencepiece packages ({e}; "
                          "pip install gguf sentencepiece); --format llama2c needs numpy only") from None
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    # The llama.* keys and the vocabulary as llama.cpp's converter writes them.
    from llama2c_to_gguf import write_hyperparameters, write_tokenizer
    return gguf, write_hyperparameters, write_tokenizer


def write_gguf(out_path, c, shared, tensors, tokenizer_path, out_type, model_name, plan=None):
    """Write OUT.tmp with llama.cpp's writer, one tensor at a time, then rename. `plan`
    ([(gguf name, hf name, transform)]) is given for the architectures beyond Llama."""
    gguf, write_hyperparameters, write_tokenizer = load_gguf_packages()
    import sentencepiece
    pieces = sentencepiece.SentencePieceProcessor(model_file=tokenizer_path).get_piece_size()
    if pieces != c["vocab_size"]:
        raise ExportError(f"{tokenizer_path} has {pieces} pieces but vocab_size is {c['vocab_size']}; "
                          "the GGUF vocabulary must match the embedding rows")

    arch = c["gguf_architecture"]
    if plan is None:
        plan = [(name, hf, rope_heads and ("rope", rope_heads)) for name, hf, rope_heads in gguf_tensor_plan(c, shared)]
    stored = lambda hf: np.float16 if out_type == "f16" and len(tensors[hf].shape) == 2 else np.float32
    scaling = c["rope_scaling"]
    kind = scaling and scaling["rope_type"]
    # llama3 scaling as llama.cpp's converter writes it: F32 divisors, first, and no scaling type.
    rope_factors = None
    if kind == "llama3":
        rope_factors = llama3_rope_factors(c["rope_theta"], c["dim"] // c["n_heads"], scaling)
    tmp_path = out_path + ".tmp"
    writer = gguf.GGUFWriter(tmp_path, arch)
    try:
        writer.add_name(model_name)
        if arch == "llama":
            write_hyperparameters(writer, dim=c["dim"], hidden=c["hidden_dim"], layers=c["n_layers"], heads=c["n_heads"],
                                  kv_heads=c["n_kv_heads"], context=c["seq_len"], vocab=c["vocab_size"],
                                  rope_theta=c["rope_theta"], norm_eps=c["rms_norm_eps"])
            if c["sliding_window"] is not None:
                # Mistral's window on every layer. llama.cpp's `llama` graph does not read this key.
                writer.add_sliding_window(c["sliding_window"])
        else:
            write_architecture_keys(writer, c)
        if kind == "linear":  # llama.cpp turns pair i by position / factor · base^(-2i/head_size)
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(float(scaling["factor"]))
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if out_type == "f16" else gguf.LlamaFileType.ALL_F32)
        write_tokenizer(writer, tokenizer_path, c["vocab_size"])
        if rope_factors is not None:
            writer.add_tensor_info(ROPE_FACTORS, rope_factors.shape, rope_factors.dtype, rope_factors.nbytes)
        for name, hf, transform in plan:
            dtype = np.dtype(stored(hf))
            shape = tensors[hf].shape[::-1] if transform == "T" else tensors[hf].shape
            writer.add_tensor_info(name, shape, dtype, math.prod(shape) * dtype.itemsize)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        if rope_factors is not None:
            writer.write_tensor_data(rope_factors)
        for _, hf, transform in plan:
            w = tensors[hf].load()
            if isinstance(transform, tuple):
                # llama.cpp's `llama` architecture rotates adjacent pairs, like llama2.c.
                w = rotate_half_to_adjacent(w, transform[1])
            else:
                w = transform_tensor(w, transform, c)
            writer.write_tensor_data(np.ascontiguousarray(w, dtype=stored(hf)))
            del w  # drop the mapping/copy before the next tensor
        writer.close()
        os.replace(tmp_path, out_path)
    except BaseException:
        writer.close()
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return os.path.getsize(out_path)


def export(hf_dir, out_path, fmt="gguf", out_type="f32"):
    if not os.path.isfile(os.path.join(hf_dir, "config.json")):
        raise ExportError(f"{hf_dir} has no config.json")
    tokenizer_src = os.path.join(hf_dir, "tokenizer.model")
    if not os.path.isfile(tokenizer_src):
        raise ExportError(f"{hf_dir} has no tokenizer.model (Quill needs the SentencePiece model; "
                          "tokenizer.json alone is not supported)")
    if fmt == "llama2c" and out_type != "f32":
        raise ExportError(f"--type {out_type} needs --format gguf; the llama2.c output is float32")
    stem, _ = os.path.splitext(out_path)
    tokenizer_dst = stem + ".model"
    if fmt == "llama2c" and os.path.abspath(tokenizer_dst) == os.path.abspath(out_path):
        raise ExportError(f"output {out_path} would be overwritten by the tokenizer copy; use a .bin name")

    c = read_config(hf_dir, fmt)
    tensors = find_tensors(hf_dir)
    plan = None
    if c["gguf_architecture"] == "llama":
        groups, shared = plan_tensors(c, tensors)
        dtypes = sorted({tensors[name].dtype for group in groups for name, _, _ in group})
    else:
        plan, shared = plan_gguf_tensors(c, tensors)
        dtypes = sorted({tensors[hf].dtype for _, hf, _ in plan})
    theta = "none" if c["rope_theta"] is None else f"{c['rope_theta']:g}"
    print(f"{PROG}: {c['architecture']} dim={c['dim']} hidden_dim={c['hidden_dim']} "
          f"n_layers={c['n_layers']} n_heads={c['n_heads']} n_kv_heads={c['n_kv_heads']} "
          f"head_size={c['head_size']} sliding_window={c['sliding_window']} "
          f"vocab_size={c['vocab_size']} seq_len={c['seq_len']} rope_theta={theta} "
          f"rope_scaling={json.dumps(c['rope_scaling'], separators=(',', ':'))} "
          f"rms_norm_eps={c['rms_norm_eps']:g} shared_classifier={int(shared)} "
          f"source dtype={'+'.join(dtypes)}", file=sys.stderr)

    if fmt == "gguf":
        name = os.path.basename(os.path.normpath(hf_dir))
        size = write_gguf(out_path, c, shared, tensors, tokenizer_src, out_type, name, plan)
        print(f"{PROG}: wrote {out_path} ({size:,} bytes, GGUF {c['gguf_architecture']}, {out_type} matrices, "
              "tokenizer inside)", file=sys.stderr)
        return
    size = write_checkpoint(out_path, c, groups, shared, tensors)
    shutil.copyfile(tokenizer_src, tokenizer_dst)
    print(f"{PROG}: wrote {out_path} ({size:,} bytes, float32 version {VERSION}) and {tokenizer_dst}",
          file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("hf_dir", metavar="HF_DIR", help="Hugging Face model directory")
    parser.add_argument("out", metavar="OUT", help="output file (OUT.gguf, or OUT.bin for llama2c)")
    parser.add_argument("--format", choices=["gguf", "llama2c"], default="gguf",
                        help="gguf (default): llama.cpp's format with the tokenizer inside; "
                             "llama2c: version 1 float32, tokenizer copied to OUT.model")
    parser.add_argument("--type", choices=["f32", "f16"], default="f32",
                        help="storage of the GGUF weight matrices (norms stay f32)")
    args = parser.parse_args(argv)
    try:
        export(args.hf_dir, args.out, args.format, args.type)
    except (ExportError, OSError, KeyError, ValueError) as e:
        # KeyError/ValueError come from malformed JSON files; say which key or value.
        msg = f"malformed file, missing key {e}" if isinstance(e, KeyError) else str(e)
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
