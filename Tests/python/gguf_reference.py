"""A numpy forward pass of a GGUF file's weights as the `gguf` package decodes them, with the input
of every product on a quantized type rounded as Quill and llama.cpp round it, and the rule by which
Quill's logits are held to it. For the tests only.

Quill (like llama.cpp with q8_0 activations) rounds the input of a product on Q8_0, Q4_0, Q5_0,
Q4_K, Q5_K or Q6_K blocks to int8 blocks of 32: scale = max|v| / 127, values
round-to-even(v · (1 / scale)); F32, F16 and BF16 products keep float32 inputs.
"""

import gguf
import numpy as np

from llama_reference import llama2c_forward

FLOAT_INPUT_TYPES = {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.BF16}
LLAMA2C_NAMES = {"attn_norm": "rms_att", "attn_q": "wq", "attn_k": "wk", "attn_v": "wv", "attn_output": "wo",
                 "ffn_norm": "rms_ffn", "ffn_gate": "w1", "ffn_down": "w2", "ffn_up": "w3"}


def dequantized_weights(path):
    """The weights of a llama GGUF file as float64 in llama2.c's names (the classifier as "wcls"
    when the file has one), decoded by the gguf package from the bytes Quill reads."""
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).reshape(
        [int(d) for d in reversed(t.shape)]) for t in reader.tensors}
    layers = max(int(name.split(".")[1]) for name in tensors if name.startswith("blk.")) + 1
    w = {"token_embedding": tensors["token_embd.weight"], "rms_final": tensors["output_norm.weight"]}
    if "output.weight" in tensors:
        w["wcls"] = tensors["output.weight"]
    for short, long in LLAMA2C_NAMES.items():
        w[long] = np.stack([tensors[f"blk.{l}.{short}.weight"] for l in range(layers)])
    return w


class Int8InputProducts:
    """m @ v with v rounded as Quill's products on quantized GGUF blocks round their input,
    computed here in numpy float32 from the same formula.

    Quill's activations are float32 and these float64, so an input lying within float rounding
    of a half step may round to the other int8 neighbour there. `closest_tie` records, per call,
    how close the nearest input came to a half step (in steps)."""

    def __init__(self):
        self.closest_tie = []

    def __call__(self, m, v):
        v32 = v.astype(np.float32).reshape(-1, 32)
        scale = np.abs(v32).max(axis=1, keepdims=True) / np.float32(127)
        inverse = np.where(scale > 0, np.float32(1) / np.where(scale > 0, scale, np.float32(1)), np.float32(0)).astype(np.float32)
        steps = v32 * inverse
        self.closest_tie.append(float(np.abs(np.abs(steps - np.floor(steps)) - 0.5).min()))
        return m @ (np.rint(steps).astype(np.float64) * scale.astype(np.float64)).reshape(-1)


def reference_logits(path, config, ids, int8_inputs=True, **forward_options):
    """(logits [T, vocab], rounding) of llama2c_forward over the file's weights; with
    `int8_inputs`, each product on a quantized tensor rounds its input (rounding is then the
    Int8InputProducts that did it, else None). `config` is llama2c_forward's dictionary."""
    w = dequantized_weights(path)
    if not int8_inputs:
        return llama2c_forward(config, w, ids, **forward_options), None
    # The forward passes views of w's arrays: the quantized ones are known by their address.
    quantized = set()
    for t in gguf.GGUFReader(str(path)).tensors:
        if t.tensor_type in FLOAT_INPUT_TYPES or t.name.endswith("norm.weight"):
            continue
        if t.name == "token_embd.weight":
            # A lookup, except as a shared classifier.
            if "wcls" not in w:
                quantized.add(w["token_embedding"].__array_interface__["data"][0])
        elif t.name == "output.weight":
            quantized.add(w["wcls"].__array_interface__["data"][0])
        else:
            _, layer, short, _ = t.name.split(".")
            quantized.add(w[LLAMA2C_NAMES[short]][int(layer)].__array_interface__["data"][0])
    rounding = Int8InputProducts()

    def project(m, v):
        return rounding(m, v) if m.__array_interface__["data"][0] in quantized else m @ v
    return llama2c_forward(config, w, ids, project=project, **forward_options), rounding


def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    top = x.max(axis=-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True))


def assert_matches(got, path, config, ids, label, **forward_options):
    """Quill's logits `got` against the reference of the same file, in log-probabilities.

    Float32 arithmetic against float64 stays well under 1e-4. With quantized tensors, an input
    that came within 2e-5 of a half step of its int8 grid may round the other way in Quill
    (Quill's float32 activations are the reference's to ~1.5e-7 relative, ~2e-5 of a step at
    most), which moves later logits; so the positions from the first such input on are held
    only to twice the effect of the int8 rounding itself (reference with and without it), which
    is how far llama.cpp's own results are from a float reference."""
    reader = gguf.GGUFReader(str(path))
    int8 = any(t.tensor_type not in FLOAT_INPUT_TYPES for t in reader.tensors)
    expected, rounding = reference_logits(path, config, ids, int8_inputs=int8, **forward_options)
    got, expected = log_softmax(got), log_softmax(expected)
    assert got.shape == expected.shape, label
    if rounding is None:
        assert np.abs(got - expected).max() < 1e-4, (label, np.abs(got - expected).max())
        return
    per_position = len(rounding.closest_tie) // len(ids)
    near = [p for p in range(len(ids)) if min(rounding.closest_tie[p * per_position:(p + 1) * per_position]) < 2e-5]
    exact_until = near[0] if near else len(ids)
    if exact_until > 0:
        assert np.abs(got[:exact_until] - expected[:exact_until]).max() < 1e-4, (label, exact_until)
    float_inputs = log_softmax(reference_logits(path, config, ids, int8_inputs=False, **forward_options)[0])
    effect = np.abs(expected - float_inputs).max()
    assert effect > 1e-4, (label, "the int8 rounding of the inputs is visible", effect)
    assert np.abs(got - expected).max() < 2 * effect, (label, np.abs(got - expected).max(), effect)
