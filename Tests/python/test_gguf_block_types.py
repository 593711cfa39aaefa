"""Every GGUF storage type Quill reads, at the model level: small random Llama models whose rows are
a multiple of 256 (so the K types apply), written by llama.cpp's own writer (the PyPI `gguf` package)
from random blocks of each type, one type per file and all types mixed in one file (as llama.cpp's
Q4_K_M mix does). Quill's logits must match a numpy forward pass of the weights that the `gguf`
package dequantizes from the same bytes, with the inputs of products on quantized types rounded to
int8 blocks as Quill and llama.cpp round them.

The `gguf` package quantizes only the legacy types, so the blocks are drawn directly: random bytes
for the quants and sub-block scales, and chosen half-precision super-block scales that keep the
weights at a realistic size (|w| below about 0.3).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gguf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import llama2c_to_gguf  # noqa: E402

import gguf_reference

QUILL = os.environ.get("QUILL_BIN", str(REPO / ".build" / "debug" / "quill"))
Q = gguf.GGMLQuantizationType

SHAPE = {"dim": 256, "hidden": 512, "layers": 2, "heads": 4, "kv_heads": 2, "vocab": 2048, "context": 64}
IDS = [1, 17, 299, 42, 5, 1280, 2047, 7]
LAYER_TENSORS = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"]

# Offsets and values of the half-precision scales inside one block of each type: the rest of the
# block (quants, 6-bit sub-block scales and mins, Q6_K's int8 scales) is uniform random bytes.
HALF_SCALES = {
    Q.Q8_0: [(0, 0.002)],
    Q.Q4_0: [(0, 0.01)],
    Q.Q5_0: [(0, 0.005)],
    Q.Q4_K: [(0, 0.0003), (2, 0.002)],
    Q.Q5_K: [(0, 0.00015), (2, 0.002)],
    Q.Q6_K: [(208, 0.00002)],
}


def random_tensor(rng, rows, cols, qtype):
    """A (rows, cols) weight as the array the gguf writer takes for `qtype`, and its raw dtype."""
    if qtype == Q.F32:
        return rng.normal(0, 0.05, (rows, cols)).astype(np.float32), None
    if qtype == Q.F16:
        return rng.normal(0, 0.05, (rows, cols)).astype(np.float16), None
    if qtype == Q.BF16:
        # bfloat16 is the top half of a float32; the gguf package takes its bits as uint16 raw data.
        bits = rng.normal(0, 0.05, (rows, cols)).astype(np.float32).view(np.uint32) >> 16
        return bits.astype(np.uint16).view(np.uint8).reshape(rows, cols * 2), Q.BF16
    block_size, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, (rows, cols // block_size, block_bytes), dtype=np.uint8)
    for offset, scale in HALF_SCALES[qtype]:
        halves = (scale * rng.uniform(0.5, 1.5, blocks.shape[:2])).astype(np.float16)
        blocks[:, :, offset:offset + 2] = halves.view(np.uint8).reshape(*blocks.shape[:2], 2)
    return blocks.reshape(rows, -1), qtype


def write_model(path, types, seed):
    """A random model with tensor i (in writing order) stored as types[i % len(types)]."""
    rng = np.random.default_rng(seed)
    s = SHAPE
    writer = gguf.GGUFWriter(str(path), "llama")
    llama2c_to_gguf.write_hyperparameters(writer, dim=s["dim"], hidden=s["hidden"], layers=s["layers"],
                                          heads=s["heads"], kv_heads=s["kv_heads"], context=s["context"],
                                          vocab=s["vocab"], rope_theta=10000.0, norm_eps=1e-5)
    # The shipped model's vocabulary, so that llama.cpp loads these files too.
    llama2c_to_gguf.write_tokenizer(writer, str(REPO / "models" / "tinystories.model"), s["vocab"])
    head = s["dim"] // s["heads"]
    shapes = {"attn_q": (s["dim"], s["dim"]), "attn_k": (s["kv_heads"] * head, s["dim"]),
              "attn_v": (s["kv_heads"] * head, s["dim"]), "attn_output": (s["dim"], s["dim"]),
              "ffn_gate": (s["hidden"], s["dim"]), "ffn_down": (s["dim"], s["hidden"]), "ffn_up": (s["hidden"], s["dim"])}
    matrices = [("token_embd.weight", (s["vocab"], s["dim"]))]
    for layer in range(s["layers"]):
        matrices += [(f"blk.{layer}.{name}.weight", shapes[name]) for name in LAYER_TENSORS]
    matrices.append(("output.weight", (s["vocab"], s["dim"])))
    for index, (name, (rows, cols)) in enumerate(matrices):
        array, raw = random_tensor(rng, rows, cols, types[index % len(types)])
        writer.add_tensor(name, array, raw_dtype=raw)
    for name in [f"blk.{layer}.{n}.weight" for layer in range(s["layers"]) for n in ("attn_norm", "ffn_norm")] + ["output_norm.weight"]:
        writer.add_tensor(name, rng.uniform(0.5, 1.5, s["dim"]).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


CONFIG = {"dim": SHAPE["dim"], "n_layers": SHAPE["layers"], "n_heads": SHAPE["heads"], "n_kv_heads": SHAPE["kv_heads"],
          "shared_classifier": False}


ALL_TYPES = [Q.Q4_K, Q.Q6_K, Q.Q5_K, Q.Q8_0, Q.Q4_0, Q.Q5_0, Q.F16, Q.BF16, Q.F32]


@pytest.mark.parametrize("label, types", [
    ("Q4_K", [Q.Q4_K]), ("Q5_K", [Q.Q5_K]), ("Q6_K", [Q.Q6_K]),
    ("Q8_0", [Q.Q8_0]), ("Q4_0", [Q.Q4_0]), ("Q5_0", [Q.Q5_0]),
    ("F16", [Q.F16]), ("BF16", [Q.BF16]), ("mixed", ALL_TYPES),
])
def test_block_type_logits_match_a_numpy_forward_of_the_same_bytes(tmp_path, label, types):
    path = tmp_path / f"random-{label}.gguf"
    write_model(path, types, seed=len(label) * 7 + types[0].value)
    run = subprocess.run([QUILL, "logits", "-m", str(path), "--ids", ",".join(map(str, IDS))],
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    got = np.array(json.loads(run.stdout)["logits"], dtype=np.float64)
    # Exact decoding, float32 arithmetic, and the inputs of products on quantized types rounded
    # to int8 blocks as Quill (and llama.cpp) round them: gguf_reference.assert_matches.
    gguf_reference.assert_matches(got, path, CONFIG, IDS, label)
    # The storage table names each type the file holds.
    info = json.loads(subprocess.run([QUILL, "info", "-m", str(path), "--json"], capture_output=True,
                                     timeout=60).stdout)
    assert set(info["storage"]) == {t.name for t in types} | {"F32"}
