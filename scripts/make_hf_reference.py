#!/usr/bin/env python3
"""Writes Hugging Face's own logits for the small models of scripts/hf_reference_models.py into
Tests/python/fixtures/hf_reference/ (reference.json: each model's config.json as save_pretrained
writes it, the tensors of its model.safetensors, the token ids and the versions used;
reference.npz: per model, computed in float64, NAME.logsumexp [positions] of all logits and
NAME.logprobs [positions, vocab / SUBSET_STRIDE] of every SUBSET_STRIDE-th token).

Needs PyTorch (the tests do not): `make check-llamacpp` builds a venv that has it, or
  python3 -m venv /tmp/v && /tmp/v/bin/pip install torch transformers==5.23.0 numpy safetensors
  /tmp/v/bin/python scripts/make_hf_reference.py
Before writing, it checks that the folder the tests rebuild from the recorded names (without
PyTorch) holds exactly the tensors that save_pretrained wrote.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import safetensors.numpy
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_reference_models as models  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def build(name):
    """The model with its deterministic weights, and the folder save_pretrained wrote for it."""
    config_class, settings = models.MODELS[name]
    config = getattr(transformers, config_class)(**settings)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        # named_parameters lists a tied classifier once, under the embedding's name.
        for parameter_name, parameter in model.named_parameters():
            parameter.copy_(torch.from_numpy(models.weight(parameter_name, tuple(parameter.shape))))
    folder = Path(tempfile.mkdtemp()) / name
    model.save_pretrained(folder)
    return model.eval(), folder


def logsumexp(x):
    top = x.max(axis=-1)
    return top + np.log(np.exp(x - top[:, None]).sum(axis=-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "Tests" / "python" / "fixtures" / "hf_reference"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__},
              "ids": models.IDS, "subset_stride": models.SUBSET_STRIDE, "models": {}}
    logprobs = {}
    for name in models.MODELS:
        model, folder = build(name)
        saved = safetensors.numpy.load_file(str(folder / "model.safetensors"))
        tensors = sorted((key, list(value.shape)) for key, value in saved.items())
        for key, shape in tensors:
            rebuilt = models.weight(key, tuple(shape))
            if not np.array_equal(rebuilt, saved[key]):
                sys.exit(f"{name}: tensor {key} rebuilt from its name differs from the saved one")
        with torch.no_grad():
            logits = model.double()(torch.tensor([models.IDS])).logits[0].numpy()
        normaliser = logsumexp(logits)
        logprobs[f"{name}.logsumexp"] = normaliser
        logprobs[f"{name}.logprobs"] = (logits - normaliser[:, None])[:, ::models.SUBSET_STRIDE]
        record["models"][name] = {"config": json.loads((folder / "config.json").read_text()), "tensors": tensors}
        print(f"{name}: {len(tensors)} tensors, logits range {np.ptp(logits):.2f}")
    (out / "reference.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    np.savez(out / "reference.npz", **logprobs)


if __name__ == "__main__":
    main()
