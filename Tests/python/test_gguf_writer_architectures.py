"""`quill quantize` writes every architecture Quill reads (llama, qwen2, phi3, gemma, gemma2, gpt2)
as llama.cpp describes it. The models are the Hugging Face fixtures of test_hf_reference.py,
converted by scripts/export.py (whose files llama.cpp runs as Hugging Face does: `make
check-llamacpp`). Checked with the PyPI `gguf` package:
- as F32, Quill's file has export.py's architecture, keys and values, tensor names, shapes, types
  and bytes, and Quill's logits on it are export.py's file's logits exactly;
- every key and tensor name is one gguf-py lists for that architecture;
- as Q8_0, each matrix is `gguf.quants.quantize` of the same floats byte for byte, and vectors and
  GPT-2's learned positions stay F32 (llama.cpp never quantizes them).
"""

import json
import os
import subprocess

import numpy as np
import pytest

import gguf
from gguf.quants import quantize

import test_hf_reference as hf

QUILL = os.environ.get("QUILL_BIN", hf.QUILL)
MODELS = sorted(hf.CONVERTED)
# Keys that describe the file, not the model: quantize writes its own.
OWN_KEYS = ("general.", "GGUF.")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """name -> {type: path}: export.py's file ("export") and quantize's copies, made once."""
    cache = {}

    def get(name):
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            source = root / "export.gguf"
            run = hf.export(hf.write_folder(root / name, name), source)
            assert run.returncode == 0, run.stderr
            cache[name] = {"export": source}
            for type_name in ["F32", "Q8_0"]:
                out = root / f"{type_name}.gguf"
                run = subprocess.run([QUILL, "quantize", str(source), str(out), type_name], capture_output=True,
                                     text=True, timeout=120)
                assert run.returncode == 0, run.stderr
                cache[name][type_name] = out
        return cache[name]
    return get


def model_keys(reader):
    return {key: field.contents() for key, field in reader.fields.items() if not key.startswith(OWN_KEYS)}


def logits(path):
    run = subprocess.run([QUILL, "logits", "-m", str(path), "--ids", ",".join(map(str, hf.models.IDS))],
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    return np.array(json.loads(run.stdout)["logits"], dtype=np.float32)


@pytest.mark.parametrize("name", MODELS)
def test_f32_copy_is_export_py_file(files, name):
    source, copy = (gguf.GGUFReader(files(name)[t]) for t in ["export", "F32"])
    assert copy.fields["general.architecture"].contents() == source.fields["general.architecture"].contents()
    assert model_keys(copy) == model_keys(source)
    expected = {t.name: t for t in source.tensors}
    assert sorted(t.name for t in copy.tensors) == sorted(expected)
    for t in copy.tensors:
        e = expected[t.name]
        assert (list(t.shape), t.tensor_type) == (list(e.shape), e.tensor_type), t.name
        assert bytes(t.data) == bytes(e.data), t.name
    assert np.array_equal(logits(files(name)["F32"]), logits(files(name)["export"])), name


def known_names(arch, blocks):
    """gguf-py's tensor names of `arch` ("blk.3.attn_q") and its metadata keys for it."""
    model_arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch)
    tensors = set()
    for tensor in gguf.MODEL_TENSORS[model_arch]:
        template = gguf.TENSOR_NAMES[tensor]
        tensors |= {template.format(bid=b) for b in range(blocks)} if "{bid}" in template else {template}
    keys = set()
    for group in [gguf.Keys.LLM, gguf.Keys.Attention, gguf.Keys.Rope, gguf.Keys.General]:
        templates = [v for k, v in vars(group).items() if not k.startswith("_") and isinstance(v, str)]
        # Only templates with no placeholder other than the architecture.
        keys |= {v.replace("{arch}", arch) for v in templates if "{" not in v.replace("{arch}", "")}
    return tensors, keys


@pytest.mark.parametrize("name", MODELS)
def test_keys_and_tensor_names_are_llama_cpp_s(files, name):
    reader = gguf.GGUFReader(files(name)["Q8_0"])
    arch = reader.fields["general.architecture"].contents()
    blocks = reader.fields[f"{arch}.block_count"].contents()
    tensors, keys = known_names(arch, blocks)
    for t in reader.tensors:
        stem, suffix = t.name.rsplit(".", 1)
        assert stem in tensors and suffix in ("weight", "bias"), t.name
    for key in reader.fields:
        assert key.startswith(("tokenizer.", "GGUF.")) or key in keys, key


@pytest.mark.parametrize("name", MODELS)
def test_q8_0_copy_quantizes_matrices_as_ggml_and_keeps_vectors(files, name):
    source = {t.name: t for t in gguf.GGUFReader(files(name)["export"]).tensors}
    copy = gguf.GGUFReader(files(name)["Q8_0"])
    assert sorted(t.name for t in copy.tensors) == sorted(source)
    for t in copy.tensors:
        floats = np.asarray(source[t.name].data, dtype=np.float32)
        if len(t.shape) == 1 or t.name == "position_embd.weight":
            assert t.tensor_type == gguf.GGMLQuantizationType.F32, t.name
            assert bytes(t.data) == floats.tobytes(), t.name
        else:
            assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0, t.name
            assert bytes(t.data) == quantize(floats, gguf.GGMLQuantizationType.Q8_0).tobytes(), t.name
    # The same description as export.py's file (the F32 test shows it is the model), and it runs.
    assert model_keys(copy) == model_keys(gguf.GGUFReader(files(name)["export"]))
    assert np.isfinite(logits(files(name)["Q8_0"])).all()


def test_gemma2_without_soft_cap_keys_reads_llama_cpps_defaults(files, tmp_path):
    """llama.cpp's gemma2 always caps (attention 50, final logits 30) and reads the two keys only
    to change those values, so a file without them means the defaults (gemma2.cpp, llama-hparams.h).
    gguf-py's own metadata tool (gguf_new_metadata) drops the keys; the copy must read as 50/30 and
    give the logits of the file that states 50/30."""
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata
    source = gguf.GGUFReader(files("gemma2")["export"])
    keys = ["gemma2.attn_logit_softcapping", "gemma2.final_logit_softcapping"]

    def copy(path, new, remove):
        writer = gguf.GGUFWriter(str(path), arch="gemma2")
        copy_with_new_metadata(source, writer, new, remove)
        return path

    stated = copy(tmp_path / "stated.gguf", {keys[0]: MetadataDetails(gguf.GGUFValueType.FLOAT32, 50.0),
                                             keys[1]: MetadataDetails(gguf.GGUFValueType.FLOAT32, 30.0)}, [])
    absent = copy(tmp_path / "absent.gguf", {}, keys)
    assert not any(k in gguf.GGUFReader(absent).fields for k in keys)
    info = json.loads(subprocess.run([QUILL, "info", "-m", str(absent), "--json"], capture_output=True,
                                     timeout=60).stdout)
    assert (info["attention_softcap"], info["final_logit_softcap"]) == (50.0, 30.0)
    assert np.array_equal(logits(absent), logits(stated))
