"""Hugging Face's own logits, without PyTorch: the small models of scripts/hf_reference_models.py
are rebuilt here (config.json as save_pretrained wrote it, weights from the deterministic hash),
converted by scripts/export.py, and Quill's logits compared with what transformers computed in
float64 when scripts/make_hf_reference.py wrote the fixture (versions recorded in it).

Architectures export.py converts must match within 1e-4 at every position; the others must be
refused in one line naming what is missing, never converted into a model that runs wrongly.
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

# What export.py converts today; the rest is refused (architectures of issue #11, and what needs
# attention Quill does not have yet).
CONVERTED = {"llama", "llama-rope-linear", "llama-rope-llama3"}
REFUSED = {
    "mistral-window": "sliding_window",
    "qwen2": "Qwen2ForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "gemma": "GemmaForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}


def test_fixture_covers_every_model_and_the_recipe_is_unchanged():
    assert set(RECORD["models"]) == set(models.MODELS) == CONVERTED | set(REFUSED)
    assert RECORD["ids"] == models.IDS and RECORD["subset_stride"] == models.SUBSET_STRIDE


def write_folder(path, name):
    """The folder save_pretrained wrote for model `name`, rebuilt from the fixture's record."""
    entry = RECORD["models"][name]
    path.mkdir()
    (path / "config.json").write_text(json.dumps(entry["config"], indent=2))
    tensors = {key: models.weight(key, tuple(shape)) for key, shape in entry["tensors"]}
    safetensors_numpy.save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(REPO / "models" / "tinystories.model", path / "tokenizer.model")
    return path


def export(folder, out):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "export.py"), str(folder), str(out)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_converted_models_match_hugging_face(tmp_path, name):
    folder = write_folder(tmp_path / name, name)
    out = tmp_path / f"{name}.gguf"
    run = export(folder, out)
    assert run.returncode == 0, run.stderr
    run = subprocess.run([QUILL, "logits", "-m", str(out), "--ids", ",".join(map(str, models.IDS))],
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    logits = np.array(json.loads(run.stdout)["logits"], dtype=np.float64)
    top = logits.max(axis=-1)
    normaliser = top + np.log(np.exp(logits - top[:, None]).sum(axis=-1))
    logprobs = (logits - normaliser[:, None])[:, ::models.SUBSET_STRIDE]
    assert np.abs(normaliser - REFERENCE[f"{name}.logsumexp"]).max() < 1e-4, name
    assert np.abs(logprobs - REFERENCE[f"{name}.logprobs"]).max() < 1e-4, name


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_export_cannot_represent_is_refused_in_one_line(tmp_path, name):
    folder = write_folder(tmp_path / name, name)
    out = tmp_path / f"{name}.gguf"
    run = export(folder, out)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1, (name, run.returncode, run.stderr)
    assert REFUSED[name] in lines[0], (name, lines[0])
    assert not out.exists()
