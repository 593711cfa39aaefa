"""RoPE scaling in GGUF files written directly by llama.cpp's own writer (the PyPI `gguf`
package): the shipped TinyStories model with linear scaling (`llama.rope.scaling.type` and
`.factor`, a factor alone, the old `llama.rope.scale_linear`), Llama 3-style per-pair factors
(`rope_freqs.weight`) and both at once. `quill logits` must match a numpy forward of the same
weights whose RoPE follows llama.cpp's definition (ggml_rope_ext: pair i turns by
position · freq_scale · base^(-2i/d) / freq_factors[i], freq_scale = 1/factor), written here and
not taken from Quill. Every value Quill cannot honour is refused in one line naming it.
"""

import json

import numpy as np
import pytest

from llama_reference import llama2c_forward
from test_gguf_model import IDS, MODEL, TOKENIZER, dequantized_weights, quill, write_variant

import llama2c_to_gguf

HEAD_SIZE = 32  # tinystories.bin: dim 128, 4 heads
THETA = 10000.0  # write_variant writes no rope.freq_base: llama.cpp's default
TOL = 1e-4  # test_export.py's QUILL_TOL: a float32 forward against a float64 one, logits of order 10

# Divisors of the pairs' frequencies, as convert_hf_to_gguf.py makes them for Llama 3 (1 for the
# fastest pairs, up to the factor for the slowest), but with values of our own choosing.
FREQ_FACTORS = np.array([1, 1, 1, 1.25, 1.5, 2, 3, 4, 6, 8, 8, 8, 8, 8, 8, 8], dtype=np.float32)


def llama_cpp_frequencies(freq_scale=1.0, freq_factors=None):
    """Angle per position of each pair, as ggml_rope_cache_init computes it (in float64)."""
    i = np.arange(HEAD_SIZE // 2, dtype=np.float64)
    theta = THETA ** (-2 * i / HEAD_SIZE)
    ff = np.ones(HEAD_SIZE // 2) if freq_factors is None else np.asarray(freq_factors, dtype=np.float64)
    return freq_scale * theta / ff


def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    top = x.max(axis=-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True))


ACCEPTED = [
    # (id, write_variant arguments, pair frequencies)
    ("linear-type-and-factor", {"extra_kv": [("llama.rope.scaling.type", "string", "linear"),
                                             ("llama.rope.scaling.factor", "float32", 4.0)]},
     llama_cpp_frequencies(freq_scale=1 / 4)),
    ("factor-without-type", {"extra_kv": [("llama.rope.scaling.factor", "float32", 2.0)]},
     llama_cpp_frequencies(freq_scale=1 / 2)),
    ("old-scale_linear", {"extra_kv": [("llama.rope.scale_linear", "float32", 3.0)]},
     llama_cpp_frequencies(freq_scale=1 / 3)),
    ("rope_freqs", {"extra_tensors": [("rope_freqs.weight", FREQ_FACTORS)]},
     llama_cpp_frequencies(freq_factors=FREQ_FACTORS)),
    ("rope_freqs-and-linear", {"extra_kv": [("llama.rope.scaling.type", "string", "linear"),
                                            ("llama.rope.scaling.factor", "float32", 2.0)],
                               "extra_tensors": [("rope_freqs.weight", FREQ_FACTORS)]},
     llama_cpp_frequencies(freq_scale=1 / 2, freq_factors=FREQ_FACTORS)),
    ("type-none", {"extra_kv": [("llama.rope.scaling.type", "string", "none")]}, llama_cpp_frequencies()),
]


def reference(path, frequencies):
    config, _, shared = llama2c_to_gguf.read_llama2c(str(MODEL))
    c = {"dim": config["dim"], "n_layers": config["layers"], "n_heads": config["heads"],
         "n_kv_heads": config["kv_heads"], "shared_classifier": shared}
    ids = [int(i) for i in IDS.split(",")]
    return llama2c_forward(c, dequantized_weights(path), ids, pair_frequencies=frequencies)


@pytest.mark.parametrize("variant, frequencies", [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_scaled_rope_matches_llama_cpps_definition(tmp_path, variant, frequencies, record_property):
    path = tmp_path / "variant.gguf"
    write_variant(path, **variant)
    got = np.array(json.loads(quill("logits", "-m", str(path), "--ids", IDS).stdout)["logits"])
    expected = reference(path, frequencies)
    error = np.abs(log_softmax(got) - log_softmax(expected)).max()
    record_property("max_abs_logprob_error", float(error))
    print(f"max |quill - reference| logprob = {error:.2e}")
    assert error < TOL
    if not np.array_equal(frequencies, llama_cpp_frequencies()):
        # The scaling changes the model far beyond the tolerance, so ignoring it would fail.
        plain = reference(path, llama_cpp_frequencies())
        assert np.abs(log_softmax(plain) - log_softmax(expected)).max() > 100 * TOL


def test_info_shows_the_rope_settings(tmp_path):
    path = tmp_path / "variant.gguf"
    write_variant(path, **ACCEPTED[4][1])
    info = json.loads(quill("info", "-m", str(path), "--json").stdout)
    assert info["rope_theta"] == THETA
    assert info["rope_scaling"] == "linear" and info["rope_scaling_factor"] == 2.0
    assert info["rope_pairing"] == "adjacent"
    assert info["rope_frequency_factors"] == FREQ_FACTORS.tolist()
    text = quill("info", "-m", str(path)).stdout.decode()
    assert "rope_scaling " in text and "linear" in text and "rope_frequency_factors" in text
    plain = json.loads(quill("info", "-m", str(MODEL), "--json").stdout)
    assert (plain["rope_scaling"], plain["rope_scaling_factor"], plain["rope_frequency_factors"]) == ("none", 1.0, None)


def kv(key, kind, value):
    return {"extra_kv": [(key, kind, value)]}


def freqs(array):
    return {"extra_tensors": [("rope_freqs.weight", array)]}


REFUSALS = [
    ("yarn", kv("llama.rope.scaling.type", "string", "yarn"), "'llama.rope.scaling.type' is 'yarn'"),
    ("longrope", kv("llama.rope.scaling.type", "string", "longrope"), "'llama.rope.scaling.type' is 'longrope'"),
    ("unknown type", kv("llama.rope.scaling.type", "string", "ntk"), "'llama.rope.scaling.type' is 'ntk'"),
    ("negative factor", kv("llama.rope.scaling.factor", "float32", -2.0), "'llama.rope.scaling.factor' is -2"),
    ("nan factor", kv("llama.rope.scaling.factor", "float32", float("nan")), "'llama.rope.scaling.factor' is nan"),
    ("infinite scale_linear", kv("llama.rope.scale_linear", "float32", float("inf")), "'llama.rope.scale_linear' is inf"),
    ("factor with type none", {"extra_kv": [("llama.rope.scaling.type", "string", "none"),
                                            ("llama.rope.scaling.factor", "float32", 4.0)]},
     "'llama.rope.scaling.factor' is 4.0 but 'llama.rope.scaling.type' is 'none'"),
    ("two different factors", {"extra_kv": [("llama.rope.scaling.factor", "float32", 4.0),
                                            ("llama.rope.scale_linear", "float32", 2.0)]},
     "'llama.rope.scale_linear' is 2.0"),
    ("attention factor", kv("llama.rope.scaling.attn_factor", "float32", 0.5), "'llama.rope.scaling.attn_factor' is 0.5"),
    ("partial rotary", kv("llama.rope.dimension_count", "uint32", 16), "'llama.rope.dimension_count' is 16"),
    ("rope_freqs F16", freqs(FREQ_FACTORS.astype(np.float16)), "'rope_freqs.weight' is F16"),
    ("rope_freqs too short", freqs(FREQ_FACTORS[:8]), "'rope_freqs.weight' has dimensions [8]"),
    ("rope_freqs 2-D", freqs(np.ones((2, 16), dtype=np.float32)), "'rope_freqs.weight' has dimensions [16, 2]"),
    ("rope_freqs zero", freqs(np.where(np.arange(16) == 5, 0, FREQ_FACTORS).astype(np.float32)),
     "'rope_freqs.weight' value 5 is 0.0"),
    ("rope_freqs negative", freqs(-FREQ_FACTORS), "'rope_freqs.weight' value 0 is -1.0"),
    ("rope_freqs nan", freqs(np.where(np.arange(16) == 15, np.nan, FREQ_FACTORS).astype(np.float32)),
     "'rope_freqs.weight' value 15 is nan"),
]


@pytest.mark.parametrize("variant, fragment", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_what_quill_cannot_honour_is_refused(tmp_path, variant, fragment):
    path = tmp_path / "variant.gguf"
    write_variant(path, **variant)
    run = quill("-m", str(path), "-z", str(TOKENIZER), "--temp", "0", "-n", "4", "Once", check=False)
    lines = run.stderr.decode().splitlines()
    assert run.returncode == 1 and len(lines) == 1 and lines[0].startswith("quill: error: "), lines
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("index", [0, 3, 4], ids=[ACCEPTED[i][0] for i in (0, 3, 4)])
def test_quantize_carries_the_rope_settings(tmp_path, index):
    # `quill quantize` writes GGUF from any model it reads: a scaled RoPE must reach the output,
    # so that the copy in F32 gives the same logits to the bit and the same settings in `info`.
    source, copy = tmp_path / "scaled.gguf", tmp_path / "copy.gguf"
    write_variant(source, **ACCEPTED[index][1])
    quill("quantize", "-z", str(TOKENIZER), str(source), str(copy), "F32")
    original = json.loads(quill("logits", "-m", str(source), "--ids", IDS).stdout)["logits"]
    assert json.loads(quill("logits", "-m", str(copy), "--ids", IDS).stdout)["logits"] == original
    keys = ("rope_theta", "rope_scaling", "rope_scaling_factor", "rope_frequency_factors", "rope_pairing")
    before = json.loads(quill("info", "-m", str(source), "--json").stdout)
    after = json.loads(quill("info", "-m", str(copy), "--json").stdout)
    assert [after[k] for k in keys] == [before[k] for k in keys]
