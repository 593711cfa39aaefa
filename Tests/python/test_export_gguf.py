"""Tests for scripts/export.py --format gguf (the default): Hugging Face Llama/Mistral -> GGUF.

Each accepted variant (RoPE base 10000, 500000 and 1e6 in both config spellings, norm epsilon
1e-6, tied, GQA and MHA, f16/bf16/sharded sources, f16 output, and configs written by
transformers 5's own `save_pretrained`) is converted and checked three ways:
- the file has llama.cpp's metadata keys and tensor names (read back with the `gguf` package);
- a numpy forward in llama.cpp's layout over the tensors in the file equals a numpy forward in the
  Hugging Face layout over the original tensors (NUMPY_TOL), so the q/k permutation is right;
- `quill logits` on the file matches the Hugging Face-layout forward within QUILL_TOL.
The reference forwards get the RoPE base and epsilon from the test, never from config.json.

Each refusal (RoPE scaling of every kind in both spellings, a sliding window shorter than the
context, another architecture, biases) must exit 1 with one line `export.py: error: ...` naming
the key, and leave no output file.
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


# (id, config changes or a transformers config factory, dtype, shards, --type, theta, eps)
ACCEPTED = [
    ("theta10000-untied-gqa", {}, "f32", 1, "f32", 10000.0, 1e-5),
    ("theta500000-old-spelling", old_theta(500000.0), "f32", 1, "f32", 500000.0, 1e-5),
    ("theta500000-rope_parameters", new_theta(500000.0), "f32", 1, "f32", 500000.0, 1e-5),
    ("mistral-theta1e6-old-spelling", dict(old_theta(1e6), architectures=["MistralForCausalLM"],
                                           model_type="mistral", sliding_window=4096),
     "f32", 1, "f32", 1e6, 1e-5),
    ("mistral-theta1e6-rope_parameters", dict(new_theta(1e6), architectures=["MistralForCausalLM"],
                                              model_type="mistral", sliding_window=64),
     "f32", 1, "f32", 1e6, 1e-5),
    ("eps1e-6", {"rms_norm_eps": 1e-6}, "f32", 1, "f32", 10000.0, 1e-6),
    ("eps-absent-hf-default", {"rms_norm_eps": None}, "f32", 1, "f32", 10000.0, 1e-6),
    ("tied-mha", {"tie_word_embeddings": True, "num_key_value_heads": 4}, "f32", 1, "f32", 10000.0, 1e-5),
    ("f16-source-theta500000", new_theta(500000.0), "f16", 1, "f32", 500000.0, 1e-5),
    ("bf16-source-tied", {"tie_word_embeddings": True}, "bf16", 1, "f32", 10000.0, 1e-5),
    ("sharded-bf16-theta1e6", new_theta(1e6), "bf16", 3, "f32", 1e6, 1e-5),
    ("f16-output-theta500000", new_theta(500000.0), "f32", 1, "f16", 500000.0, 1e-5),
    ("f16-output-tied", {"tie_word_embeddings": True}, "f32", 2, "f16", 10000.0, 1e-5),
    ("transformers5-llama-theta500000",
     lambda: transformers_config("llama", rope_theta=500000.0), "f32", 1, "f32", 500000.0, 1e-5),
    ("transformers5-llama-tied-mha-eps1e-6",
     lambda: transformers_config("llama", num_key_value_heads=4, tie_word_embeddings=True,
                                 rms_norm_eps=1e-6), "bf16", 2, "f32", 10000.0, 1e-6),
    ("transformers5-mistral-theta1e6",  # MistralConfig's default sliding_window 4096 > context 64
     lambda: transformers_config("mistral", rope_theta=1e6), "f16", 1, "f32", 1e6, 1e-5),
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
        name, changes, dtype, shards, out_type, _, _ = case
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
    _, _, _, _, out_type, theta, eps = case
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
    assert not any("rope.scaling" in k or "sliding_window" in k for k in meta)

    names = ["token_embd.weight", "output_norm.weight"] + (["output.weight"] if not tied else [])
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
    expected = hf_forward(cfg, weights, TOKENS, rope_theta=theta, eps=eps)
    actual = llama2c_forward(header, as_llama2c, TOKENS, rope_theta=theta, eps=eps)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=NUMPY_TOL)


@pytest.mark.parametrize("case", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_quill_logits_match_hf_forward(case, converted, record_property):
    if not QUILL_BIN.exists():
        pytest.skip(f"Quill binary not built: {QUILL_BIN} (set QUILL_BIN or run `make` first)")
    if not TOKENIZER.exists():
        pytest.skip(f"{TOKENIZER} absent; the GGUF vocabulary is built from it")
    _, _, _, _, _, theta, eps = case
    cfg, weights, out = converted(case)
    ids = ",".join(map(str, TOKENS))
    result = subprocess.run([str(QUILL_BIN), "logits", "-m", str(out), "--ids", ids],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"quill exited {result.returncode}: {result.stderr}"
    logits = np.array(json.loads(result.stdout)["logits"], dtype=np.float64)
    expected = hf_forward(cfg, weights, TOKENS, rope_theta=theta, eps=eps)
    error = np.abs(logits - expected).max()
    record_property("max_abs_error", float(error))
    print(f"{case[0]}: max |quill - reference| = {error:.2e}")
    assert logits.shape == expected.shape
    assert error < QUILL_TOL["f32"], error


def test_reference_tells_the_rope_bases_apart(converted):
    """Guard against a test that cannot fail: the 500000 model run with base 10000 is far off."""
    case = next(c for c in ACCEPTED if c[0] == "theta500000-rope_parameters")
    cfg, weights, _ = converted(case)
    right = hf_forward(cfg, weights, TOKENS, rope_theta=500000.0)
    wrong = hf_forward(cfg, weights, TOKENS, rope_theta=10000.0)
    assert np.abs(right - wrong)[1:].max() > 0.1


# ---------------------------------------------------------------------------------------------
# Refusals

LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}

REFUSALS = [
    # (id, config changes or transformers factory, added tensors, text the message must contain)
    ("rope_scaling-linear", {"rope_scaling": {"type": "linear", "factor": 2.0}}, None,
     "rope_scaling has rope_type 'linear'"),
    ("rope_scaling-llama3", {"rope_scaling": LLAMA3}, None, "rope_scaling has rope_type 'llama3'"),
    ("rope_scaling-yarn", {"rope_scaling": YARN}, None, "rope_scaling has rope_type 'yarn'"),
    ("rope_scaling-dynamic", {"rope_scaling": {"type": "dynamic", "factor": 2.0}}, None,
     "rope_scaling has rope_type 'dynamic'"),
    ("rope_parameters-linear", {"rope_parameters": {"rope_type": "linear", "factor": 2.0,
                                                    "rope_theta": 10000.0}}, None,
     "rope_parameters has rope_type 'linear'"),
    ("rope_parameters-llama3", {"rope_parameters": dict(LLAMA3, rope_theta=500000.0)}, None,
     "rope_parameters has rope_type 'llama3'"),
    ("rope_parameters-yarn", {"rope_parameters": dict(YARN, rope_theta=1e6)}, None,
     "rope_parameters has rope_type 'yarn'"),
    ("rope_parameters-default-with-factor", {"rope_parameters": {"rope_type": "default", "factor": 2.0}},
     None, "rope_parameters has factor"),
    ("partial_rotary_factor", {"partial_rotary_factor": 0.5}, None, "partial_rotary_factor"),
    ("theta-given-twice", {"rope_theta": 10000.0, "rope_parameters": {"rope_theta": 1e6}}, None,
     "rope_parameters.rope_theta 1000000.0, rope_theta 10000.0"),
    ("sliding_window", {"architectures": ["MistralForCausalLM"], "model_type": "mistral",
                        "sliding_window": 16}, None, "sliding_window is 16"),
    ("layer_types", {"layer_types": ["full_attention", "sliding_attention"]}, None, "layer_types"),
    ("architecture", {"architectures": ["Qwen2ForCausalLM"]}, None, "architectures"),
    ("attention_bias", {"attention_bias": True}, None, "attention_bias"),
    ("mlp_bias", {"mlp_bias": True}, None, "mlp_bias"),
    ("bias_tensor", {}, {"model.layers.0.self_attn.k_proj.bias": np.zeros(32, np.float32)},
     "model.layers.0.self_attn.k_proj.bias"),
    ("transformers5-linear", lambda: transformers_config(
        "llama", rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}),
     None, "rope_parameters has rope_type 'linear'"),
    ("transformers5-llama3", lambda: transformers_config(
        "llama", rope_parameters=dict(LLAMA3, rope_theta=500000.0)), None,
     "rope_parameters has rope_type 'llama3'"),
    ("transformers5-yarn", lambda: transformers_config(
        "llama", rope_parameters=dict(YARN, rope_theta=10000.0)), None,
     "rope_parameters has rope_type 'yarn'"),
    ("transformers5-mistral-window", lambda: transformers_config("mistral", sliding_window=32), None,
     "sliding_window is 32"),
    ("transformers5-attention_bias", lambda: transformers_config("llama", attention_bias=True), None,
     "attention_bias"),
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
