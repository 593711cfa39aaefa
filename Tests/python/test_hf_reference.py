"""Hugging Face's own logits, without PyTorch: the small models of scripts/hf_reference_models.py
are rebuilt here (config.json as save_pretrained wrote it, weights from the deterministic hash),
converted by scripts/export.py, and Quill's logits compared with what transformers computed in
float64 when scripts/make_hf_reference.py wrote the fixture (versions recorded in it).

Every architecture must match within 1e-4 at every position, with the prompt fed as one block,
in blocks of 5 (block attention starting mid-sequence, across the window's edge) and token by
token (the decode path). Variants export.py cannot represent must be refused in one line naming
what is missing, never converted into a model that runs wrongly.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import hf_reference_models as models  # noqa: E402

QUILL = os.environ.get("QUILL_BIN", str(REPO / ".build" / "debug" / "quill"))
FIXTURE = REPO / "Tests" / "python" / "fixtures" / "hf_reference"
RECORD = json.loads((FIXTURE / "reference.json").read_text())
REFERENCE = np.load(FIXTURE / "reference.npz")

CONVERTED = {"llama", "llama-rope-linear", "llama-rope-llama3", "mistral-window", "qwen2", "phi3", "gemma", "gemma2",
             "gpt2"}
# Variants of the fixture's models that llama.cpp's architectures cannot express:
# id -> (model, config changes, text the one-line error must contain).
REFUSED = {
    "qwen2-window": ("qwen2", {"use_sliding_window": True, "sliding_window": 8}, "sliding_window is 8"),
    "phi3-window": ("phi3", {"sliding_window": 8}, "sliding_window is 8"),
    "gemma2-layer-pattern": ("gemma2", {"layer_types": ["full_attention", "sliding_attention", "full_attention"]},
                             "layer_types"),
    "gemma-activation": ("gemma", {"hidden_activation": "gelu"}, "hidden_activation"),
    "gpt2-activation": ("gpt2", {"activation_function": "relu"}, "activation_function"),
    "gpt2-layer-scale": ("gpt2", {"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    "llama-bias": ("llama", {"attention_bias": True}, "attention_bias"),
    "unknown": ("llama", {"architectures": ["GPTNeoXForCausalLM"]}, "GPTNeoXForCausalLM"),
}
BLOCK_SIZES = [64, 5, 1]


def test_fixture_covers_every_model_and_the_recipe_is_unchanged():
    assert set(RECORD["models"]) == set(models.MODELS) == CONVERTED
    assert RECORD["ids"] == models.IDS and RECORD["subset_stride"] == models.SUBSET_STRIDE


def write_folder(path, name, changes=None):
    """The folder save_pretrained wrote for model `name`, rebuilt from the fixture's record, with
    `changes` applied to its config (a variant)."""
    entry = RECORD["models"][name]
    path.mkdir()
    (path / "config.json").write_text(json.dumps(dict(entry["config"], **(changes or {})), indent=2))
    tensors = {key: models.weight(key, tuple(shape)) for key, shape in entry["tensors"]}
    safetensors_numpy.save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(REPO / "models" / "tinystories.model", path / "tokenizer.model")
    return path


def export(folder, out):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "export.py"), str(folder), str(out)],
                          capture_output=True, text=True, timeout=300)


def quill_normaliser_and_logprobs(gguf_path, block_size):
    """Quill's log-normaliser of every position and the fixture's subset of log-probabilities."""
    run = subprocess.run([QUILL, "logits", "-m", str(gguf_path), "-b", str(block_size),
                          "--ids", ",".join(map(str, models.IDS))], capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    logits = np.array(json.loads(run.stdout)["logits"], dtype=np.float64)
    top = logits.max(axis=-1)
    normaliser = top + np.log(np.exp(logits - top[:, None]).sum(axis=-1))
    return normaliser, (logits - normaliser[:, None])[:, ::models.SUBSET_STRIDE]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """name -> the GGUF file export.py wrote for it (each converted once for all block sizes)."""
    cache = {}

    def get(name):
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            out = root / f"{name}.gguf"
            run = export(write_folder(root / name, name), out)
            assert run.returncode == 0, run.stderr
            cache[name] = out
        return cache[name]
    return get


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_converted_models_match_hugging_face(converted, name, block_size):
    normaliser, logprobs = quill_normaliser_and_logprobs(converted(name), block_size)
    assert np.abs(normaliser - REFERENCE[f"{name}.logsumexp"]).max() < 1e-4, name
    assert np.abs(logprobs - REFERENCE[f"{name}.logprobs"]).max() < 1e-4, name


@pytest.mark.parametrize("name", ["mistral-window", "gemma2"])
def test_the_window_is_what_the_fixture_checks(tmp_path, name):
    """Without its window the model must miss the reference past the window (8 positions), or
    the test above could not tell a banded mask from a full one."""
    out = tmp_path / f"{name}.gguf"
    # 64 is the context: a window that never takes effect.
    assert export(write_folder(tmp_path / name, name, {"sliding_window": 64}), out).returncode == 0
    _, logprobs = quill_normaliser_and_logprobs(out, 64)
    error = np.abs(logprobs - REFERENCE[f"{name}.logprobs"]).max(axis=-1)
    assert error[:8].max() < 1e-4 and error[8:].max() > 1e-3, error


@pytest.mark.parametrize("variant", sorted(REFUSED))
def test_what_export_cannot_represent_is_refused_in_one_line(tmp_path, variant):
    name, changes, needle = REFUSED[variant]
    folder = write_folder(tmp_path / name, name, changes)
    out = tmp_path / f"{name}.gguf"
    run = export(folder, out)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1, (variant, run.returncode, run.stderr)
    assert needle in lines[0], (variant, lines[0])
    assert not out.exists()


# What `quill info --json` names for each converted architecture (the choices llama.cpp's
# architecture fixes and the file sets).
INFO = {
    "llama": dict(norm="RMSNorm", norm_placement="before each sublayer", feed_forward="SwiGLU", positions="RoPE",
                  biases=[], fused_matrices=[], attention_softcap=None, final_logit_softcap=None, embedding_scale=None,
                  attention_windows="full attention in every layer", rope_pairing="adjacent"),
    "mistral-window": dict(attention_windows=[8, 8, 8]),
    "qwen2": dict(biases=["q", "k", "v"], rope_pairing="halves"),
    "phi3": dict(fused_matrices=["QKV", "gate/up"], rope_pairing="halves"),
    "gemma": dict(feed_forward="GeGLU (tanh GELU)", embedding_scale=8.0, head_size=32),
    "gemma2": dict(norm_placement="before and after each sublayer", attention_softcap=50.0, final_logit_softcap=30.0,
                   attention_windows=[8, None, 8], attention_scale=32 ** -0.5),
    "gpt2": dict(norm="LayerNorm (with bias)", feed_forward="GELU (tanh)", positions="learned absolute",
                 biases=["q", "k", "v", "o", "up", "down"], fused_matrices=["QKV"], attention_scale=0.25),
}


@pytest.mark.parametrize("name", sorted(INFO))
def test_info_names_every_choice(converted, name):
    run = subprocess.run([QUILL, "info", "-m", str(converted(name)), "--json"], capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()
    info = json.loads(run.stdout)
    for key, value in INFO[name].items():
        # Floats are printed as the shortest decimal of the float32.
        same = np.float32(info[key]) == np.float32(value) if isinstance(value, float) else info[key] == value
        assert same, (name, key, info[key])
    text = subprocess.run([QUILL, "info", "-m", str(converted(name))], capture_output=True, timeout=60).stdout.decode()
    for key in INFO["llama"]:
        assert sum(line.startswith(key + " ") for line in text.splitlines()) == 1, (name, key)
