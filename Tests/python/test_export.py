"""Tests for scripts/export.py (Hugging Face Llama -> llama2.c version 1).

Tiny random Hugging Face directories are written with the independent `safetensors` package
(bfloat16 by a small hand-written writer, since numpy has no bfloat16), converted by running
export.py as a subprocess, and checked two ways:
- a numpy forward in the llama2.c layout over the exported file must equal a numpy forward in the
  Hugging Face layout over the original tensors (always runs);
- Quill's own `quill logits` must match the Hugging Face-layout forward (skips when QUILL_BIN,
  default .build/release/quill, has not been built).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from llama_reference import expected_file_size, hf_forward, llama2c_forward, read_llama2c

REPO = Path(__file__).resolve().parents[2]
EXPORT = REPO / "scripts" / "export.py"
TOKENIZER = REPO.parent / "shared" / "models" / "tok512.model"
QUILL_BIN = REPO / os.environ.get("QUILL_BIN", ".build/release/quill")  # absolute env paths win

# Token ids fed to the model: several positions so RoPE (identity at position 0) matters.
TOKENS = [1, 5, 9, 300, 42, 511, 7, 128, 3, 260]

# Both numpy forwards run in float64 on the same values, so any layout mistake shows as O(1).
NUMPY_TOL = 1e-9
# Quill computes in float32 (logits up to ~9). How far a float32 forward of these models lands from
# float64 depends on the summation order: 2.6e-6 to 1.0e-5 for numpy's float32 BLAS (the maximum
# differs between CPUs), up to 8.9e-6 for a forward summing every product in order, and up to 2.3e-5
# for that one on the same weights before 16-bit rounding. A worst-case rounding bound (every error
# aligned) is no guide: it passes 1e-3 in the first layer's attention. So 1e-4 is set from the
# reproducible in-order forward with 4x room for other orders, as
# test_float32_math_error_is_within_quill_tolerance checks. Export upcasts 16-bit values exactly,
# so 16-bit inputs need no looser tolerance.
QUILL_TOL = {"f32": 1e-4, "f16": 1e-4, "bf16": 1e-4}


# ---------------------------------------------------------------------------------------------
# Writing tiny Hugging Face models


def base_config(n_kv_heads=2, tied=False):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": n_kv_heads,
        # 512 = tok512.model's size, so Quill may load the copied tokenizer alongside.
        "vocab_size": 512,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
    }


def random_weights(cfg, seed):
    """HF-named float32 tensors scaled so attention is far from uniform and logits are O(1-10)."""
    rng = np.random.default_rng(seed)
    dim, hidden = cfg["hidden_size"], cfg["intermediate_size"]
    kv_dim = dim * cfg["num_key_value_heads"] // cfg["num_attention_heads"]
    mat = lambda rows, cols: rng.normal(0, 1 / np.sqrt(cols), (rows, cols)).astype(np.float32)
    norm = lambda: (1 + 0.2 * rng.standard_normal(dim)).astype(np.float32)  # distinct per slot
    w = {"model.embed_tokens.weight": rng.normal(0, 0.25, (cfg["vocab_size"], dim)).astype(np.float32)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = norm()
        w[p + "self_attn.q_proj.weight"] = 2 * mat(dim, dim)  # x2: sharper attention
        w[p + "self_attn.k_proj.weight"] = 2 * mat(kv_dim, dim)
        w[p + "self_attn.v_proj.weight"] = mat(kv_dim, dim)
        w[p + "self_attn.o_proj.weight"] = mat(dim, dim)
        w[p + "post_attention_layernorm.weight"] = norm()
        w[p + "mlp.gate_proj.weight"] = mat(hidden, dim)
        w[p + "mlp.up_proj.weight"] = mat(hidden, dim)
        w[p + "mlp.down_proj.weight"] = mat(dim, hidden)
    w["model.norm.weight"] = norm()
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = mat(cfg["vocab_size"], dim)
    return w


def to_bf16_values(a):
    """Round float32 toward zero to a bfloat16-representable float32 (low 16 bits cleared)."""
    return (a.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)


def write_safetensors_by_hand(path, tensors, dtype):
    """Minimal safetensors writer for dtypes numpy lacks ("BF16" from bf16-representable float32,
    or "F32" to check this writer against the safetensors package)."""
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        if dtype == "BF16":
            blob = (a.view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            blob = a.astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def write_hf_dir(path, cfg, weights, dtype="f32", shards=1):
    """Write config.json, weights (as `dtype`, optionally sharded with an index) and a tokenizer.
    Returns the tensors as the reader of that file sees them (16-bit values, upcast)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    if dtype == "f16":
        stored = {k: v.astype(np.float16) for k, v in weights.items()}
        seen = {k: v.astype(np.float32) for k, v in stored.items()}
    elif dtype == "bf16":
        stored = seen = {k: to_bf16_values(v) for k, v in weights.items()}
    else:
        stored = seen = dict(weights)

    names = list(stored)
    groups = [names[i::shards] for i in range(shards)]  # interleaved, so layers span shards
    files = ["model.safetensors"] if shards == 1 else [
        f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    for fname, group in zip(files, groups):
        part = {k: stored[k] for k in group}
        if dtype == "bf16":
            write_safetensors_by_hand(path / fname, part, "BF16")
        else:
            safetensors.numpy.save_file(part, str(path / fname), metadata={"format": "pt"})
    if shards > 1:
        index = {"metadata": {"total_size": sum(v.nbytes for v in stored.values())},
                 "weight_map": {k: fname for fname, group in zip(files, groups) for k in group}}
        (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))

    # The conversion only copies the tokenizer; a real one is needed only if Quill loads it.
    if TOKENIZER.exists():
        shutil.copyfile(TOKENIZER, path / "tokenizer.model")
    else:
        (path / "tokenizer.model").write_bytes(b"placeholder: ../shared/models/tok512.model absent")
    return seen


def run_export(hf_dir, out, fmt="llama2c", *extra):
    """Run export.py; this file tests --format llama2c, test_export_gguf.py the default gguf."""
    fmt_args = [] if fmt is None else ["--format", fmt]
    return subprocess.run([sys.executable, str(EXPORT), str(hf_dir), str(out), *fmt_args, *extra],
                          capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------------------------------------
# Conversion cases, each converted once per session and shared by the numpy and Quill tests.

CASES = [
    # (id, dtype, tied, n_kv_heads, shards)
    ("f32-untied-gqa", "f32", False, 2, 1),
    ("f32-tied-gqa", "f32", True, 2, 1),
    ("f32-untied-mha", "f32", False, 4, 1),
    ("f32-tied-mha", "f32", True, 4, 1),
    ("f16-untied-gqa", "f16", False, 2, 1),
    ("f16-tied-mha", "f16", True, 4, 1),
    ("bf16-untied-mha", "bf16", False, 4, 1),
    ("bf16-tied-gqa", "bf16", True, 2, 1),
    ("f32-untied-gqa-sharded", "f32", False, 2, 3),
    ("bf16-tied-gqa-sharded", "bf16", True, 2, 2),
]


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    cache = {}

    def get(case):
        name, dtype, tied, n_kv, shards = case
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            cfg = base_config(n_kv_heads=n_kv, tied=tied)
            weights = random_weights(cfg, seed=CASES.index(case))  # same weights whatever runs first
            seen = write_hf_dir(root / "hf", cfg, weights, dtype, shards)
            out = root / "model.bin"
            result = run_export(root / "hf", out)
            assert result.returncode == 0, result.stderr
            cache[name] = (cfg, seen, out, result.stderr)
        return cache[name]

    return get


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_export_matches_hf_forward(case, converted):
    cfg, weights, out, _ = converted(case)
    header, exported = read_llama2c(out)  # also checks magic, padding and exact file size
    assert header == {"dim": 64, "hidden_dim": 96, "n_layers": 2, "n_heads": 4,
                      "n_kv_heads": cfg["num_key_value_heads"], "vocab_size": 512, "seq_len": 64,
                      "shared_classifier": int(cfg["tie_word_embeddings"])}
    # Tensors without RoPE permutation are copied value for value (16-bit upcasts are exact).
    assert np.array_equal(exported["w2"][1], weights["model.layers.1.mlp.down_proj.weight"])
    assert np.array_equal(exported["rms_ffn"][0], weights["model.layers.0.post_attention_layernorm.weight"])

    expected = hf_forward(cfg, weights, TOKENS)
    actual = llama2c_forward(header, exported, TOKENS)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=NUMPY_TOL)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_quill_logits_match_hf_forward(case, converted):
    """Quill's interface: `quill logits -m OUT.bin --ids 1,5,9` prints one JSON object
    {"tokens": [...], "logits": [[vocab floats] per input position]} on stdout."""
    if not QUILL_BIN.exists():
        pytest.skip(f"Quill binary not built: {QUILL_BIN} (set QUILL_BIN or run `make` first)")
    if not TOKENIZER.exists():
        pytest.skip(f"{TOKENIZER} absent: the exported model has only a placeholder tokenizer")
    cfg, weights, out, _ = converted(case)
    ids = ",".join(map(str, TOKENS))
    result = subprocess.run([str(QUILL_BIN), "logits", "-m", str(out), "--ids", ids],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"quill exited {result.returncode}: {result.stderr}"
    answer = json.loads(result.stdout)
    assert answer["tokens"] == TOKENS
    logits = np.array(answer["logits"], dtype=np.float64)
    assert logits.shape == (len(TOKENS), cfg["vocab_size"])
    expected = hf_forward(cfg, weights, TOKENS)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=QUILL_TOL[case[1]])


def test_reference_detects_unpermuted_rope(converted):
    """Guard against a test that cannot fail: writing q/k rows without the rotate-half permutation
    must change the logits at positions > 0 (position 0 is unrotated, so it must not)."""
    cfg, weights, _, _ = converted(CASES[0])
    L = cfg["num_hidden_layers"]
    stack = lambda fmt: np.stack([weights[fmt.format(l)] for l in range(L)])
    header = {"dim": 64, "hidden_dim": 96, "n_layers": L, "n_heads": 4, "n_kv_heads": 2,
              "vocab_size": 512, "seq_len": 64, "shared_classifier": 0}
    naive = {
        "rms_att": stack("model.layers.{}.input_layernorm.weight"),
        "rms_ffn": stack("model.layers.{}.post_attention_layernorm.weight"),
        "rms_final": weights["model.norm.weight"],
        "token_embedding": weights["model.embed_tokens.weight"],
        "wq": stack("model.layers.{}.self_attn.q_proj.weight"),
        "wk": stack("model.layers.{}.self_attn.k_proj.weight"),
        "wv": stack("model.layers.{}.self_attn.v_proj.weight"),
        "wo": stack("model.layers.{}.self_attn.o_proj.weight"),
        "w1": stack("model.layers.{}.mlp.gate_proj.weight"),
        "w2": stack("model.layers.{}.mlp.down_proj.weight"),
        "w3": stack("model.layers.{}.mlp.up_proj.weight"),
        "wcls": weights["lm_head.weight"],
    }
    expected = hf_forward(cfg, weights, TOKENS)
    diff = np.abs(llama2c_forward(header, naive, TOKENS) - expected).max(axis=1)
    assert diff[0] < NUMPY_TOL
    assert diff[1:].min() > 1e-2, diff


def test_float32_math_error_is_within_quill_tolerance(converted):
    """Justifies QUILL_TOL: a correct float32 evaluation of the same model passes it with room.

    The float32 forward sums every product in order with correctly rounded IEEE operations only
    (llama_reference), so its error is a property of float32 arithmetic, the same on every
    machine, and not of whichever BLAS numpy found (whose rounding differs between CPUs)."""
    for case in CASES:
        cfg, weights, _, _ = converted(case)
        exact = hf_forward(cfg, weights, TOKENS)
        single = hf_forward(cfg, weights, TOKENS, dtype=np.float32)
        assert single.dtype == np.float32  # no step silently widened to float64
        assert np.abs(single - exact).max() < QUILL_TOL[case[1]] / 4, case[0]  # room for other orders
        assert 2 < np.abs(exact).max() < 20  # logits are O(1-10), so 1e-4 is a tight tolerance


def test_tokenizer_copied_and_summary_printed(converted):
    _, _, out, stderr = converted(CASES[0])
    tokenizer = out.with_suffix(".model")
    source = out.parent / "hf" / "tokenizer.model"
    assert tokenizer.read_bytes() == source.read_bytes()
    assert "dim=64" in stderr and "n_kv_heads=2" in stderr and f"{out.stat().st_size:,} bytes" in stderr


def test_hand_written_safetensors_matches_package(tmp_path):
    """The bf16 files come from write_safetensors_by_hand; check its layout with the F32 dtype
    against the safetensors package's own reader."""
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(5, np.float32)}
    write_safetensors_by_hand(tmp_path / "x.safetensors", tensors, "F32")
    loaded = safetensors.numpy.load_file(str(tmp_path / "x.safetensors"))
    assert set(loaded) == {"a", "b"}
    for k in tensors:
        assert np.array_equal(loaded[k], tensors[k])


STORIES260K = REPO.parent / "shared" / "models" / "stories260K.bin"


def read_llama2c_v0(path):
    """Read a legacy (version 0) checkpoint with a shared classifier into version 1 names."""
    data = np.fromfile(path, dtype="<i4", count=7)
    dim, hidden, L, n_heads, n_kv, vocab, seq_len = map(int, data)
    assert vocab > 0, "this reader handles the shared classifier only"
    kv_dim = dim * n_kv // n_heads
    floats = np.fromfile(path, dtype="<f4", offset=28)
    order = [("token_embedding", (vocab, dim)), ("rms_att", (L, dim)), ("wq", (L, dim, dim)),
             ("wk", (L, kv_dim, dim)), ("wv", (L, kv_dim, dim)), ("wo", (L, dim, dim)),
             ("rms_ffn", (L, dim)), ("w1", (L, hidden, dim)), ("w2", (L, dim, hidden)),
             ("w3", (L, hidden, dim)), ("rms_final", (dim,))]
    w, at = {}, 0
    for name, shape in order:
        w[name] = floats[at:at + int(np.prod(shape))].reshape(shape)
        at += int(np.prod(shape))
    assert len(floats) == at + 2 * seq_len * (dim // n_heads // 2)  # + freq_cis real and imag
    header = dict(dim=dim, hidden_dim=hidden, n_layers=L, n_heads=n_heads, n_kv_heads=n_kv,
                  vocab_size=vocab, seq_len=seq_len, shared_classifier=1)
    return header, w


def test_stories260k_round_trip(tmp_path):
    """A real trained model (GQA, 8 heads / 4 KV heads): rewrite llama2.c's stories260K.bin as a
    Hugging Face directory the way HF's own Llama conversion lays out q/k (rows 2i+t of each head
    move to t*hs/2+i), export it back, and get the original weights bit for bit."""
    if not STORIES260K.exists() or not TOKENIZER.exists():
        pytest.skip(f"{STORIES260K} or {TOKENIZER} absent")
    c, w = read_llama2c_v0(STORIES260K)
    hs = c["dim"] // c["n_heads"]

    def to_hf(m, heads):  # adjacent pairs -> rotate-half rows, per head
        return m.reshape(heads, hs // 2, 2, -1).transpose(0, 2, 1, 3).reshape(m.shape)

    hf = {"model.embed_tokens.weight": w["token_embedding"], "model.norm.weight": w["rms_final"]}
    for l in range(c["n_layers"]):
        p = f"model.layers.{l}."
        hf[p + "input_layernorm.weight"] = w["rms_att"][l]
        hf[p + "post_attention_layernorm.weight"] = w["rms_ffn"][l]
        hf[p + "self_attn.q_proj.weight"] = to_hf(w["wq"][l], c["n_heads"])
        hf[p + "self_attn.k_proj.weight"] = to_hf(w["wk"][l], c["n_kv_heads"])
        hf[p + "self_attn.v_proj.weight"] = w["wv"][l]
        hf[p + "self_attn.o_proj.weight"] = w["wo"][l]
        hf[p + "mlp.gate_proj.weight"] = w["w1"][l]
        hf[p + "mlp.down_proj.weight"] = w["w2"][l]
        hf[p + "mlp.up_proj.weight"] = w["w3"][l]
    cfg = dict(base_config(n_kv_heads=c["n_kv_heads"], tied=True), hidden_size=c["dim"],
               intermediate_size=c["hidden_dim"], num_hidden_layers=c["n_layers"],
               num_attention_heads=c["n_heads"], vocab_size=c["vocab_size"],
               max_position_embeddings=c["seq_len"])
    write_hf_dir(tmp_path / "hf", cfg, {k: np.ascontiguousarray(v) for k, v in hf.items()}, shards=2)
    result = run_export(tmp_path / "hf", tmp_path / "stories260K.bin")
    assert result.returncode == 0, result.stderr

    header, exported = read_llama2c(tmp_path / "stories260K.bin")
    assert header == c
    for name in w:
        assert np.array_equal(exported[name], w[name]), name
    # And the two independent forwards agree on a trained model too.
    tokens = [1, 403, 407, 261, 378]  # <s> "Once upon a time" in tok512
    np.testing.assert_allclose(llama2c_forward(c, w, tokens), hf_forward(cfg, hf, tokens),
                               rtol=0, atol=NUMPY_TOL)


# ---------------------------------------------------------------------------------------------
# Classifier sharing and accepted variants


def export_variant(tmp_path, cfg_changes=None, drop=(), add=None):
    """Write the f32 untied GQA model with config/tensor changes; return (result, out path)."""
    cfg = base_config()
    weights = random_weights(cfg, seed=7)
    cfg.update(cfg_changes or {})
    for name in drop:
        weights.pop(name)
    weights.update(add or {})
    write_hf_dir(tmp_path / "hf", cfg, weights)
    out = tmp_path / "out.bin"
    return run_export(tmp_path / "hf", out), out


def test_missing_lm_head_shares_classifier(tmp_path):
    result, out = export_variant(tmp_path, drop=["lm_head.weight"])
    assert result.returncode == 0, result.stderr
    header, _ = read_llama2c(out)
    assert header["shared_classifier"] == 1
    assert "no lm_head.weight" in result.stderr


def test_tied_config_ignores_lm_head_copy(tmp_path):
    result, out = export_variant(tmp_path, {"tie_word_embeddings": True})
    assert result.returncode == 0, result.stderr
    header, _ = read_llama2c(out)
    assert header["shared_classifier"] == 1
    assert out.stat().st_size == expected_file_size(header)


def test_accepted_edge_values(tmp_path):
    """Values equal to what Quill uses pass: eps within 1e-12, head_dim equal to dim/heads,
    explicit null rope_scaling, the inv_freq buffer older exports carry."""
    result, out = export_variant(
        tmp_path, {"rms_norm_eps": 1e-5 + 5e-13, "head_dim": 16, "rope_scaling": None},
        add={"model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(8, np.float32)})
    assert result.returncode == 0, result.stderr
    assert out.exists()


def test_mistral_accepted_with_window_not_shorter_than_context(tmp_path):
    """A window at least as long as max_position_embeddings (64 here) never takes effect."""
    result, out = export_variant(
        tmp_path, {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "sliding_window": 64})
    assert result.returncode == 0, result.stderr
    assert out.exists()


# ---------------------------------------------------------------------------------------------
# Refusals: exit 1, one line `export.py: error: ...` naming the field, no output written.

REFUSALS = [
    # (id, config changes, dropped tensors, added tensors, text the message must contain)
    ("architecture", {"architectures": ["GPTNeoXForCausalLM"]}, (), None, "architectures"),
    ("rope_scaling", {"rope_scaling": {"type": "linear", "factor": 2.0}}, (), None, "rope_scaling"),
    ("rope_theta", {"rope_theta": 500000.0}, (), None, "rope_theta"),
    ("rope_parameters_theta", {"rope_theta": None, "rope_scaling": None,
                               "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}},
     (), None, "rope_parameters.rope_theta is 1e+06"),
    ("sliding_window", {"architectures": ["MistralForCausalLM"], "sliding_window": 16}, (), None,
     "sliding_window is 16"),
    ("rms_norm_eps", {"rms_norm_eps": 1e-6}, (), None, "rms_norm_eps"),
    ("attention_bias", {"attention_bias": True}, (), None, "attention_bias"),
    ("mlp_bias", {"mlp_bias": True}, (), None, "mlp_bias"),
    ("head_dim", {"head_dim": 32}, (), None, "head_dim"),
    ("hidden_act", {"hidden_act": "gelu"}, (), None, "hidden_act"),
    ("bias_tensor", {}, (), {"model.layers.1.self_attn.q_proj.bias": np.zeros(64, np.float32)},
     "model.layers.1.self_attn.q_proj.bias"),
    ("missing_tensor", {}, ("model.layers.1.mlp.up_proj.weight",), None,
     "missing tensor model.layers.1.mlp.up_proj.weight"),
    ("shape_mismatch", {"num_key_value_heads": 4}, (), None,
     "model.layers.0.self_attn.k_proj.weight has shape [32, 64], expected [64, 64]"),
    ("extra_layer", {"num_hidden_layers": 1}, (), None, "unexpected tensor model.layers.1."),
]


@pytest.mark.parametrize("changes, drop, add, needle", [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refusal(tmp_path, changes, drop, add, needle):
    result, out = export_variant(tmp_path, changes, drop, add)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("export.py: error: "), result.stderr
    assert needle in lines[0]
    assert not out.exists() and not out.with_suffix(".bin.tmp").exists()


def test_refusal_missing_eps_uses_hf_default(tmp_path):
    cfg = base_config()
    weights = random_weights(cfg, seed=1)
    del cfg["rms_norm_eps"]
    write_hf_dir(tmp_path / "hf", cfg, weights)
    result = run_export(tmp_path / "hf", tmp_path / "out.bin")
    assert result.returncode == 1
    assert "rms_norm_eps is absent (Hugging Face default 1e-06)" in result.stderr
