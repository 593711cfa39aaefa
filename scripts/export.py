#!/usr/bin/env python3
"""Convert a Hugging Face Llama-family model into a llama2.c version 1 checkpoint for Quill.

Usage: python3 scripts/export.py HF_DIR OUT.bin

HF_DIR holds config.json, the weights as *.safetensors (one file, or shards listed in
model.safetensors.index.json) and tokenizer.model. The output is float32 with the 256-byte
version 1 header (see ../shared/docs/formats.md); tokenizer.model is copied beside it with the
same stem (OUT.bin -> OUT.model).

Only numpy is needed: safetensors files are parsed here and memory-mapped, and the output is
written one tensor (one layer) at a time, so a 7B model does not need twice its size in RAM.

Anything the llama2.c format cannot express, and Quill would therefore run wrongly, is refused
with a one-line error naming the config field or tensor, before any output is written.
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

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
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


def read_config(hf_dir):
    """Return the llama2.c header fields, refusing what the format or Quill cannot represent."""
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)

    archs = cfg.get("architectures") or []
    if len(archs) != 1 or archs[0] not in SUPPORTED_ARCHITECTURES:
        raise ExportError(f"architectures is {archs}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    for field in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "vocab_size", "max_position_embeddings"):
        if not isinstance(cfg.get(field), int) or cfg[field] <= 0:
            raise ExportError(f"{field} must be a positive integer, got {cfg.get(field)!r}")

    if cfg.get("rope_scaling") is not None:
        raise ExportError(f"rope_scaling is {json.dumps(cfg['rope_scaling'])}; Quill has no RoPE "
                          "scaling (it must be null or absent)")
    theta = cfg.get("rope_theta", ROPE_THETA)
    if theta != ROPE_THETA:
        raise ExportError(f"rope_theta is {theta}; the llama2.c format has no field for it and "
                          f"Quill uses {ROPE_THETA:g}")
    # Hugging Face's LlamaConfig/MistralConfig default is 1e-6, so a missing value is refused too.
    eps = cfg.get("rms_norm_eps", 1e-6)
    if abs(eps - RMS_NORM_EPS) > EPS_TOLERANCE:
        shown = f"{eps:g}" if "rms_norm_eps" in cfg else f"absent (Hugging Face default {eps:g})"
        raise ExportError(f"rms_norm_eps is {shown}; Quill uses {RMS_NORM_EPS:g} (Llama 2 and "
                          "TinyLlama use 1e-5; OpenLLaMA's 1e-6 is refused on purpose, since "
                          "its outputs would be subtly wrong)")
    for field in ("attention_bias", "mlp_bias"):
        if cfg.get(field):
            raise ExportError(f"{field} is true; the llama2.c format has no bias tensors")
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise ExportError(f"hidden_act is {act!r}; Quill's feed-forward uses SwiGLU with silu")

    dim, n_heads = cfg["hidden_size"], cfg["num_attention_heads"]
    n_kv_heads = cfg.get("num_key_value_heads") or n_heads
    if dim % n_heads:
        raise ExportError(f"hidden_size {dim} is not a multiple of num_attention_heads {n_heads}")
    head_size = dim // n_heads
    if head_size % 2:
        raise ExportError(f"head size hidden_size/num_attention_heads = {head_size} is odd; RoPE needs pairs")
    if cfg.get("head_dim") is not None and cfg["head_dim"] != head_size:
        raise ExportError(f"head_dim is {cfg['head_dim']} but hidden_size/num_attention_heads is "
                          f"{head_size}; llama2.c derives the head size from dim")
    if n_heads % n_kv_heads:
        raise ExportError(f"num_attention_heads {n_heads} is not a multiple of "
                          f"num_key_value_heads {n_kv_heads}")

    if archs[0] == "MistralForCausalLM" and cfg.get("sliding_window") is not None:
        print(f"{PROG}: note: sliding_window={cfg['sliding_window']} is ignored; Quill attends over "
              "the full context (identical while the context is no longer than the window)",
              file=sys.stderr)

    return {
        "dim": dim,
        "hidden_dim": cfg["intermediate_size"],
        "n_layers": cfg["num_hidden_layers"],
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads,
        "vocab_size": cfg["vocab_size"],
        "seq_len": cfg["max_position_embeddings"],
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "architecture": archs[0],
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
            raise ExportError(f"tensor {name} is present; the llama2.c format has no bias tensors")
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


def export(hf_dir, out_path):
    if not os.path.isfile(os.path.join(hf_dir, "config.json")):
        raise ExportError(f"{hf_dir} has no config.json")
    tokenizer_src = os.path.join(hf_dir, "tokenizer.model")
    if not os.path.isfile(tokenizer_src):
        raise ExportError(f"{hf_dir} has no tokenizer.model (Quill needs the SentencePiece model; "
                          "tokenizer.json alone is not supported)")
    stem, _ = os.path.splitext(out_path)
    tokenizer_dst = stem + ".model"
    if os.path.abspath(tokenizer_dst) == os.path.abspath(out_path):
        raise ExportError(f"output {out_path} would be overwritten by the tokenizer copy; use a .bin name")

    c = read_config(hf_dir)
    tensors = find_tensors(hf_dir)
    groups, shared = plan_tensors(c, tensors)
    dtypes = sorted({tensors[name].dtype for group in groups for name, _, _ in group})
    print(f"{PROG}: {c['architecture']} dim={c['dim']} hidden_dim={c['hidden_dim']} "
          f"n_layers={c['n_layers']} n_heads={c['n_heads']} n_kv_heads={c['n_kv_heads']} "
          f"vocab_size={c['vocab_size']} seq_len={c['seq_len']} "
          f"shared_classifier={int(shared)} source dtype={'+'.join(dtypes)}", file=sys.stderr)

    size = write_checkpoint(out_path, c, groups, shared, tensors)
    shutil.copyfile(tokenizer_src, tokenizer_dst)
    print(f"{PROG}: wrote {out_path} ({size:,} bytes, float32 version {VERSION}) and {tokenizer_dst}",
          file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("hf_dir", metavar="HF_DIR", help="Hugging Face model directory")
    parser.add_argument("out", metavar="OUT.bin", help="output llama2.c checkpoint")
    args = parser.parse_args(argv)
    try:
        export(args.hf_dir, args.out)
    except (ExportError, OSError, KeyError, ValueError) as e:
        # KeyError/ValueError come from malformed JSON files; say which key or value.
        msg = f"malformed file, missing key {e}" if isinstance(e, KeyError) else str(e)
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
