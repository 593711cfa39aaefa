"""Tests for scripts/export.py --format gguf (the default): Hugging Face Llama/Mistral -> GGUF.

Each accepted variant (RoPE base 10000, 500000 and 1e6 in both config spellings, linear and
llama3 RoPE scaling in both spellings, norm epsilon 1e-6, tied, GQA and MHA, f16/bf16/sharded
sources, f16 output, and configs written by transformers 5's own `save_pretrained`) is converted
and checked three ways:
- the file has llama.cpp's metadata keys and tensor names (read back with the `gguf` package),
  linear scaling as `llama.rope.scaling.type`/`.factor`, llama3 scaling as `rope_freqs.weight`;
- a numpy forward in llama.cpp's layout over the tensors and RoPE settings in the file equals a
  numpy forward in the Hugging Face layout over the original tensors, so the q/k permutation and
  the RoPE scaling are right;
- `quill logits` on the file matches the Hugging Face-layout forward within QUILL_TOL, as logits
  and as log-probabilities.
The reference forwards get the RoPE base, its scaling and epsilon from the test, never from
config.json; `hf_inv_freq` computes the scaled frequencies as transformers does, independently of
export.py (which follows llama.cpp's converter).

Each refusal (RoPE scaling types other than linear and llama3, incomplete or contradictory
scaling parameters, a sliding window shorter than the context, another architecture, biases; in
the llama2.c format any scaling) must exit 1 with one line `export.py: error: ...` naming the key,
and leave no output file.
"""

import json
import subprocess

import numpy as np
import pytest

import gguf

from llama_reference import hf_forward, llama2c_forward
from test_export import (NUMPY_TOL, QUILL_BIN, QUILL_TOL, TOKENIZER, TOKENS, base_config,
                         random_weights, run_export, write_hf_dir)

transformers = pytest.importorskip("transformers")


def transformers_config(kind, **kwargs):
    """config.json as transformers 5 writes it, for the tiny shapes random_weights makes."""
    cls = {"llama": transformers.LlamaConfig, "mistral": transformers.MistralConfig}[kind]
    arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}[kind]
    shape = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, max_position_embeddings=64, rms_norm_eps=1e-5,
                 architectures=[arch])
    return cls(**dict(shape, **kwargs))


def saved_config(tmp_path, config):
    """Round-trip through save_pretrained, returning the config.json dict it wrote."""
    config.save_pretrained(str(tmp_path / "saved"))
    return json.loads((tmp_path / "saved" / "config.json").read_text())


def old_theta(theta):
    return {"rope_theta": theta}


def new_theta(theta):
    return {"rope_theta": None, "rope_scaling": None,
            "rope_parameters": {"rope_theta": theta, "rope_type": "default"}}


def old_scaled(theta, scaling):
    """The older spelling: top-level rope_theta and rope_scaling (with "type", as Llama 2 wrote it)."""
    return {"rope_theta": theta, "rope_scaling": scaling}


def new_scaled(theta, scaling):
    return {"rope_theta": None, "rope_scaling": None, "rope_parameters": dict(scaling, rope_theta=theta)}


LINEAR2 = {"type": "linear", "factor": 2.0}
LINEAR4 = {"rope_type": "linear", "factor": 4.0}
# With head size 16 and base 500000 the pairs' wavelengths are 6.3, 32, 167, ... positions: one
# below high_freq_wavelen (64/4), one between, the rest above low_freq_wavelen (64/1), so the
# three branches of the llama3 rule are all used.
LLAMA3_500K = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}
# Base 10000: wavelengths 6.3, 20, 63, ...; 32/4 = 8 and 32/1 = 32 again put one pair in each branch.
LLAMA3_10K = {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 32}


def hf_inv_freq(theta, head_size, scaling=None):
    """Pair frequencies [hs/2] as transformers' modeling_rope_utils computes them (default,
    _compute_linear_scaling_rope_parameters, _compute_llama3_parameters), in float64."""
    inv_freq = 1.0 / theta ** (np.arange(0, head_size, 2, dtype=np.float64) / head_size)
    kind = None if scaling is None else scaling.get("rope_type", scaling.get("type"))
    if kind is None:
        return inv_freq
    if kind == "linear":
        return inv_freq / scaling["factor"]
    assert kind == "llama3", kind
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_context / low, old_context / high
    wavelen = 2 * np.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return np.where(medium, smoothed, scaled)


# (id, config changes or a transformers config factory, dtype, shards, --type, theta, eps, scaling)
ACCEPTED = [
    ("theta10000-untied-gqa", {}, "f32", 1, "f32", 10000.0, 1e-5, None),
    ("theta500000-old-spelling", old_theta(500000.0), "f32", 1, "f32", 500000.0, 1e-5, None),
    ("theta500000-rope_parameters", new_theta(500000.0), "f32", 1, "f32", 500000.0, 1e-5, None),
    ("mistral-theta1e6-old-spelling", dict(old_theta(1e6), architectures=["MistralForCausalLM"],
                                           model_type="mistral", sliding_window=4096),
     "f32", 1, "f32", 1e6, 1e-5, None),
    ("mistral-theta1e6-rope_parameters", dict(new_theta(1e6), architectures=["MistralForCausalLM"],
                                              model_type="mistral", sliding_window=64),
     "f32", 1, "f32", 1e6, 1e-5, None),
    ("eps1e-6", {"rms_norm_eps": 1e-6}, "f32", 1, "f32", 10000.0, 1e-6, None),
    ("eps-absent-hf-default", {"rms_norm_eps": None}, "f32", 1, "f32", 10000.0, 1e-6, None),
    ("tied-mha", {"tie_word_embeddings": True, "num_key_value_heads": 4}, "f32", 1, "f32", 10000.0, 1e-5, None),
    ("f16-source-theta500000", new_theta(500000.0), "f16", 1, "f32", 500000.0, 1e-5, None),
    ("bf16-source-tied", {"tie_word_embeddings": True}, "bf16", 1, "f32", 10000.0, 1e-5, None),
    ("sharded-bf16-theta1e6", new_theta(1e6), "bf16", 3, "f32", 1e6, 1e-5, None),
    ("f16-output-theta500000", new_theta(500000.0), "f32", 1, "f16", 500000.0, 1e-5, None),
    ("f16-output-tied", {"tie_word_embeddings": True}, "f32", 2, "f16", 10000.0, 1e-5, None),
    ("transformers5-llama-theta500000",
     lambda: transformers_config("llama", rope_theta=500000.0), "f32", 1, "f32", 500000.0, 1e-5, None),
    ("transformers5-llama-tied-mha-eps1e-6",
     lambda: transformers_config("llama", num_key_value_heads=4, tie_word_embeddings=True,
                                 rms_norm_eps=1e-6), "bf16", 2, "f32", 10000.0, 1e-6, None),
    ("transformers5-mistral-theta1e6",  # MistralConfig's default sliding_window 4096 > context 64
     lambda: transformers_config("mistral", rope_theta=1e6), "f16", 1, "f32", 1e6, 1e-5, None),
    ("linear-old-spelling-theta20000", old_scaled(20000.0, LINEAR2), "f32", 1, "f32", 20000.0, 1e-5, LINEAR2),
    ("linear-rope_parameters", new_scaled(10000.0, LINEAR4), "bf16", 1, "f32", 10000.0, 1e-5, LINEAR4),
    ("llama3-rope_parameters-theta500000", new_scaled(500000.0, LLAMA3_500K), "f32", 1, "f32", 500000.0, 1e-5,
     LLAMA3_500K),
    ("llama3-old-spelling-tied", dict(old_scaled(10000.0, LLAMA3_10K), tie_word_embeddings=True), "f32", 1, "f32",
     10000.0, 1e-5, LLAMA3_10K),
    ("llama3-f16-output", new_scaled(500000.0, LLAMA3_500K), "f32", 2, "f16", 500000.0, 1e-5, LLAMA3_500K),
    ("transformers5-llama-linear",
     lambda: transformers_config("llama", rope_parameters=dict(LINEAR4, rope_theta=10000.0)),
     "f32", 1, "f32", 10000.0, 1e-5, LINEAR4),
    ("transformers5-llama-llama3",
     lambda: transformers_config("llama", rope_parameters=dict(LLAMA3_500K, rope_theta=500000.0)),
     "f32", 1, "f32", 500000.0, 1e-5, LLAMA3_500K),
    ("transformers5-llama-old-kwargs-linear",  # saved as rope_parameters with both "type" and "rope_type"
     lambda: transformers_config("llama", rope_theta=20000.0, rope_scaling=dict(LINEAR2)),  # it edits the dict
     "f32", 1, "f32", 20000.0, 1e-5, LINEAR2),
]


def make_config(tmp_path, changes):
    if callable(changes):
        return saved_config(tmp_path, changes())
    cfg = dict(base_config(), **changes)
    return {k: v for k, v in cfg.items() if v is not None}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    cache = {}

    def get(case):
        name, changes, dtype, shards, out_type, _, _, _ = case
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            cfg = make_config(root, changes)
            weights = random_weights(cfg, seed=ACCEPTED.index(case))
            seen = write_hf_dir(root / "hf", cfg, weights, dtype, shards)
            if out_type == "f16":  # matrices are rounded to float16 in the file; norms are not
                seen = {k: (v.astype(np.float16).astype(np.float32) if v.ndim == 2 else v)
                        for k, v in seen.items()}
            out = root / "model.gguf"
            extra = ["--type", out_type] if out_type != "f32" else []
            result = run_export(root / "hf", out, None, *extra)  # None: the default format
            assert result.returncode == 0, result.stderr
            cache[name] = (cfg, seen, out)
        return cache[name]

    return get


def read_gguf(path):
    """(metadata {key: value}, {tensor name: float64 array in numpy [rows, cols] order})."""
    reader = gguf.GGUFReader(str(path))
    meta = {}
    for field in reader.fields.values():
        if field.types and field.types[0] == gguf.GGUFValueType.ARRAY:
            meta[field.name] = len(field.data)
        elif field.types and field.types[0] == gguf.GGUFValueType.STRING:
            meta[field.name] = bytes(field.parts[field.data[0]]).decode()
        elif field.types:
            meta[field.name] = field.parts[field.data[0]][0].item()
    tensors = {t.name: (t.tensor_type.name, np.asarray(t.data, dtype=np.float64)) for t in reader.tensors}
    return meta, tensors


@pytest.mark.parametrize("case", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_gguf_layout_and_numpy_forward(case, converted):
    _, _, _, _, out_type, theta, eps, scaling = case
    cfg, weights, out = converted(case)
    meta, tensors = read_gguf(out)
    tied = cfg.get("tie_word_embeddings", False)
    n_kv = cfg["num_key_value_heads"]
    assert meta["general.architecture"] == "llama"
    expected_meta = {
        "llama.context_length": 64, "llama.embedding_length": 64, "llama.block_count": 2,
        "llama.feed_forward_length": 96, "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": n_kv, "llama.rope.dimension_count": 16, "llama.vocab_size": 512,
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": 512, "tokenizer.ggml.scores": 512,
        "tokenizer.ggml.token_type": 512, "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.add_bos_token": True,
    }
    for key, value in expected_meta.items():
        assert meta[key] == value, key
    assert meta["llama.rope.freq_base"] == pytest.approx(theta, rel=1e-7)  # stored as float32
    assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(eps, rel=1e-7)
    assert not any("sliding_window" in k for k in meta)
    kind = None if scaling is None else scaling.get("rope_type", scaling.get("type"))
    # llama.cpp's converter: linear as type + factor; llama3 as rope_freqs.weight and no type.
    if kind == "linear":
        assert meta["llama.rope.scaling.type"] == "linear"
        assert meta["llama.rope.scaling.factor"] == pytest.approx(scaling["factor"], rel=1e-7)
    else:
        assert not any("rope.scaling" in k for k in meta)

    names = ["token_embd.weight", "output_norm.weight"] + (["output.weight"] if not tied else [])
    names += ["rope_freqs.weight"] if kind == "llama3" else []
    names += [f"blk.{l}.{n}.weight" for l in range(2) for n in
              ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
               "ffn_down", "ffn_up")]
    assert sorted(tensors) == sorted(names)
    matrix_type = {"f32": "F32", "f16": "F16"}[out_type]
    assert tensors["blk.1.ffn_down.weight"][0] == matrix_type
    assert tensors["blk.1.ffn_norm.weight"][0] == "F32"
    t = {name: data for name, (_, data) in tensors.items()}
    assert np.array_equal(t["blk.1.ffn_down.weight"], weights["model.layers.1.mlp.down_proj.weight"])

    # llama.cpp's layout is llama2.c's (adjacent RoPE pairs), so llama2c_forward runs the file.
    stack = lambda n: np.stack([t[f"blk.{l}.{n}.weight"] for l in range(2)])
    header = {"dim": 64, "hidden_dim": 96, "n_layers": 2, "n_heads": 4, "n_kv_heads": n_kv,
              "vocab_size": 512, "seq_len": 64, "shared_classifier": int(tied)}
    as_llama2c = {"token_embedding": t["token_embd.weight"], "rms_final": t["output_norm.weight"],
                  "rms_att": stack("attn_norm"), "rms_ffn": stack("ffn_norm"), "wq": stack("attn_q"),
                  "wk": stack("attn_k"), "wv": stack("attn_v"), "wo": stack("attn_output"),
                  "w1": stack("ffn_gate"), "w2": stack("ffn_down"), "w3": stack("ffn_up")}
    if not tied:
        as_llama2c["wcls"] = t["output.weight"]
    # The file's RoPE read as llama.cpp reads it: base^(-2i/hs) · freq_scale / rope_freqs[i].
    file_freqs = theta ** (-np.arange(0, 16, 2, dtype=np.float64) / 16)
    if "llama.rope.scaling.factor" in meta:
        file_freqs = file_freqs / meta["llama.rope.scaling.factor"]
    tolerance = NUMPY_TOL
    if "rope_freqs.weight" in t:
        assert tensors["rope_freqs.weight"][0] == "F32"
        file_freqs = file_freqs / t["rope_freqs.weight"]
        # The factors are float32 (relative error 6e-8), so angles up to 9 radians move by up
        # to 5e-7; the logits, of order 10, by a few times that.
        tolerance = 1e-5
    inv_freq = hf_inv_freq(theta, 16, scaling)
    expected = hf_forward(cfg, weights, TOKENS, rope_theta=theta, eps=eps, inv_freq=inv_freq)
    actual = llama2c_forward(header, as_llama2c, TOKENS, rope_theta=theta, eps=eps, pair_frequencies=file_freqs)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("case", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_quill_logits_match_hf_forward(case, converted, record_property):
    if not QUILL_BIN.exists():
        pytest.skip(f"Quill binary not built: {QUILL_BIN} (set QUILL_BIN or run `make` first)")
    if not TOKENIZER.exists():
        pytest.skip(f"{TOKENIZER} absent; the GGUF vocabulary is built from it")
    _, _, _, _, _, theta, eps, scaling = case
    cfg, weights, out = converted(case)
    ids = ",".join(map(str, TOKENS))
    result = subprocess.run([str(QUILL_BIN), "logits", "-m", str(out), "--ids", ids],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"quill exited {result.returncode}: {result.stderr}"
    logits = np.array(json.loads(result.stdout)["logits"], dtype=np.float64)
    expected = hf_forward(cfg, weights, TOKENS, rope_theta=theta, eps=eps, inv_freq=hf_inv_freq(theta, 16, scaling))
    assert logits.shape == expected.shape
    error = np.abs(logits - expected).max()
    logprob_error = np.abs(log_softmax(logits) - log_softmax(expected)).max()
    record_property("max_abs_error", float(error))
    record_property("max_abs_logprob_error", float(logprob_error))
    print(f"{case[0]}: max |quill - reference| = {error:.2e} (logits), {logprob_error:.2e} (log-probabilities)")
    assert error < QUILL_TOL["f32"], error
    assert logprob_error < QUILL_TOL["f32"], logprob_error


def log_softmax(x):
    top = x.max(axis=-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True))


def test_reference_tells_the_rope_bases_apart(converted):
    """Guard against a test that cannot fail: the 500000 model run with base 10000 is far off."""
    case = next(c for c in ACCEPTED if c[0] == "theta500000-rope_parameters")
    cfg, weights, _ = converted(case)
    right = hf_forward(cfg, weights, TOKENS, rope_theta=500000.0)
    wrong = hf_forward(cfg, weights, TOKENS, rope_theta=10000.0)
    assert np.abs(right - wrong)[1:].max() > 0.1


@pytest.mark.parametrize("name, others", [
    ("linear-rope_parameters", [None]),
    ("llama3-rope_parameters-theta500000", [None, {"rope_type": "linear", "factor": 8.0}]),
])
def test_reference_tells_the_scalings_apart(converted, name, others):
    """The scaled reference is far from the unscaled one, and llama3 from linear by the same factor."""
    case = next(c for c in ACCEPTED if c[0] == name)
    cfg, weights, _ = converted(case)
    theta, scaling = case[5], case[7]
    right = hf_forward(cfg, weights, TOKENS, rope_theta=theta, inv_freq=hf_inv_freq(theta, 16, scaling))
    for other in others:
        wrong = hf_forward(cfg, weights, TOKENS, rope_theta=theta, inv_freq=hf_inv_freq(theta, 16, other))
        assert np.abs(right - wrong)[1:].max() > 0.01, other


# ---------------------------------------------------------------------------------------------
# Refusals

LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}

REFUSALS = [
    # (id, config changes or transformers factory, added tensors, text the message must contain)
    ("rope_scaling-yarn", {"rope_scaling": YARN}, None, "rope_scaling has rope_type 'yarn'"),
    ("rope_scaling-dynamic", {"rope_scaling": {"type": "dynamic", "factor": 2.0}}, None,
     "rope_scaling has rope_type 'dynamic'"),
    ("rope_scaling-longrope", {"rope_scaling": {"rope_type": "longrope", "factor": 2.0}}, None,
     "rope_scaling has rope_type 'longrope'"),
    ("rope_parameters-yarn", {"rope_parameters": dict(YARN, rope_theta=1e6)}, None,
     "rope_parameters has rope_type 'yarn'"),
    ("rope_parameters-default-with-factor", {"rope_parameters": {"rope_type": "default", "factor": 2.0}},
     None, "rope_parameters has factor"),
    ("linear-without-factor", {"rope_scaling": {"type": "linear"}}, None, "rope_scaling.factor is missing"),
    ("linear-factor-zero", {"rope_scaling": {"type": "linear", "factor": 0}}, None,
     "rope_scaling.factor is 0; expected a positive number"),
    ("linear-factor-string", {"rope_scaling": {"type": "linear", "factor": "2"}}, None,
     "rope_scaling.factor is '2'; expected a positive number"),
    ("linear-unknown-key", {"rope_scaling": {"type": "linear", "factor": 2.0, "beta_fast": 32}}, None,
     "rope_scaling has beta_fast"),
    ("type-and-rope_type-differ", {"rope_scaling": {"type": "linear", "rope_type": "llama3", "factor": 2.0}},
     None, "rope_scaling has type 'linear' but rope_type 'llama3'"),
    ("llama3-missing-low_freq_factor", {"rope_scaling": {k: v for k, v in LLAMA3.items() if k != "low_freq_factor"}},
     None, "rope_scaling.low_freq_factor is missing"),
    ("llama3-low-not-below-high", {"rope_scaling": dict(LLAMA3, low_freq_factor=4.0)}, None,
     "rope_scaling.low_freq_factor 4.0 must be below high_freq_factor 4.0"),
    ("llama3-original-context-float", {"rope_scaling": dict(LLAMA3, original_max_position_embeddings=16.5)}, None,
     "rope_scaling.original_max_position_embeddings is 16.5; expected a positive integer"),
    ("scaling-given-twice", {"rope_scaling": {"type": "linear", "factor": 2.0},
                             "rope_parameters": {"rope_type": "linear", "factor": 4.0}}, None,
     "RoPE scaling is given twice with different values"),
    ("partial_rotary_factor", {"partial_rotary_factor": 0.5}, None, "partial_rotary_factor"),
    ("partial_rotary_factor-in-rope_parameters",
     {"rope_parameters": dict(LINEAR4, partial_rotary_factor=0.5)}, None, "rope_parameters.partial_rotary_factor is 0.5"),
    ("theta-given-twice", {"rope_theta": 10000.0, "rope_parameters": {"rope_theta": 1e6}}, None,
     "rope_parameters.rope_theta 1000000.0, rope_theta 10000.0"),
    ("layer_types", {"layer_types": ["full_attention", "sliding_attention"]}, None, "layer_types"),
    ("architecture", {"architectures": ["GPTNeoXForCausalLM"]}, None, "architectures"),
    ("attention_bias", {"attention_bias": True}, None, "attention_bias"),
    ("mlp_bias", {"mlp_bias": True}, None, "mlp_bias"),
    ("bias_tensor", {}, {"model.layers.0.self_attn.k_proj.bias": np.zeros(32, np.float32)},
     "model.layers.0.self_attn.k_proj.bias"),
    ("transformers5-yarn", lambda: transformers_config(
        "llama", rope_parameters=dict(YARN, rope_theta=10000.0)), None,
     "rope_parameters has rope_type 'yarn'"),
    ("transformers5-attention_bias", lambda: transformers_config("llama", attention_bias=True), None,
     "attention_bias"),
]

# Windows the GGUF file carries (llama.attention.sliding_window) but a llama2.c header cannot.
LLAMA2C_WINDOW_REFUSALS = [
    ("sliding_window", {"architectures": ["MistralForCausalLM"], "model_type": "mistral",
                        "sliding_window": 16}, "sliding_window is 16"),
    ("transformers5-mistral-window", lambda: transformers_config("mistral", sliding_window=32), "sliding_window is 32"),
]


@pytest.mark.parametrize("changes, needle", [r[1:] for r in LLAMA2C_WINDOW_REFUSALS],
                         ids=[r[0] for r in LLAMA2C_WINDOW_REFUSALS])
def test_llama2c_refuses_a_window_gguf_carries(tmp_path, changes, needle):
    cfg = make_config(tmp_path, changes)
    write_hf_dir(tmp_path / "hf", cfg, random_weights(cfg, seed=3))
    result = run_export(tmp_path / "hf", tmp_path / "out.bin", "llama2c")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and needle in lines[0], result.stderr
    assert "the llama2.c format has no field for it" in lines[0], lines[0]
    assert run_export(tmp_path / "hf", tmp_path / "out.gguf", None).returncode == 0
    meta, _ = read_gguf(tmp_path / "out.gguf")
    assert meta["llama.attention.sliding_window"] == int(needle.split()[-1])


# Scalings the GGUF file carries but a llama2.c header cannot.
LLAMA2C_REFUSALS = [
    ("rope_scaling-linear", {"rope_scaling": LINEAR2}, None, "rope_scaling has rope_type 'linear'"),
    ("rope_scaling-llama3", {"rope_scaling": LLAMA3}, None, "rope_scaling has rope_type 'llama3'"),
    ("rope_parameters-linear", {"rope_parameters": dict(LINEAR2, rope_theta=10000.0)}, None,
     "rope_parameters has rope_type 'linear'"),
    ("transformers5-llama3", lambda: transformers_config(
        "llama", rope_parameters=dict(LLAMA3, rope_theta=10000.0)), None,
     "rope_parameters has rope_type 'llama3'"),
]


@pytest.mark.parametrize("changes, add, needle", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
@pytest.mark.parametrize("fmt", [None, "llama2c"], ids=["gguf", "llama2c"])
def test_refusal(tmp_path, fmt, changes, add, needle):
    cfg = make_config(tmp_path, changes)
    weights = random_weights(cfg, seed=3)
    weights.update(add or {})
    write_hf_dir(tmp_path / "hf", cfg, weights)
    out = tmp_path / ("out.gguf" if fmt is None else "out.bin")
    result = run_export(tmp_path / "hf", out, fmt)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("export.py: error: "), result.stderr
    if fmt is None or "theta" not in needle:  # llama2c may stop first at the base it cannot carry
        assert needle in lines[0]
    assert not out.exists() and not (tmp_path / (out.name + ".tmp")).exists()
    assert not out.with_suffix(".model").exists()


@pytest.mark.parametrize("changes, add, needle", [r[1:] for r in LLAMA2C_REFUSALS],
                         ids=[r[0] for r in LLAMA2C_REFUSALS])
def test_llama2c_refuses_scaling(tmp_path, changes, add, needle):
    """The llama2.c header has no field for RoPE scaling; the same folder converts to GGUF."""
    cfg = make_config(tmp_path, changes)
    write_hf_dir(tmp_path / "hf", cfg, random_weights(cfg, seed=3))
    out = tmp_path / "out.bin"
    result = run_export(tmp_path / "hf", out, "llama2c")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("export.py: error: "), result.stderr
    assert needle in lines[0] and "the llama2.c format has no field for RoPE scaling" in lines[0], lines[0]
    assert "--format gguf" in lines[0]
    assert not out.exists() and not out.with_suffix(".model").exists()
    assert run_export(tmp_path / "hf", tmp_path / "out.gguf", None).returncode == 0


def test_llama2c_refuses_what_gguf_carries(tmp_path):
    """The base and epsilon the GGUF file stores are refused by the llama2.c format, by key."""
    for changes, needle in [(new_theta(500000.0), "rope_parameters.rope_theta is 500000"),
                            ({"rms_norm_eps": 1e-6}, "rms_norm_eps is 1e-06")]:
        cfg = make_config(tmp_path, changes)
        write_hf_dir(tmp_path / "hf", cfg, random_weights(cfg, seed=4))
        result = run_export(tmp_path / "hf", tmp_path / "out.bin", "llama2c")
        assert result.returncode == 1 and needle in result.stderr, result.stderr
        assert "--format gguf" in result.stderr
        assert run_export(tmp_path / "hf", tmp_path / "out.gguf", None).returncode == 0


def test_f16_type_needs_gguf(tmp_path):
    cfg = base_config()
    write_hf_dir(tmp_path / "hf", cfg, random_weights(cfg, seed=5))
    result = run_export(tmp_path / "hf", tmp_path / "out.bin", "llama2c", "--type", "f16")
    assert result.returncode == 1 and "--type f16 needs --format gguf" in result.stderr
