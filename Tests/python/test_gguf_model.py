"""A real small model through GGUF: the shipped TinyStories model converted by
scripts/llama2c_to_gguf.py with llama.cpp's own writer (the PyPI `gguf` package) must give Quill
the same logits and the same greedy story as the llama2.c file, with the tokenizer from -z or from
the file; files holding what Quill's forward
pass would not honour (YaRN RoPE scaling, a bias the architecture does not use, another architecture) are refused in one line
(test_gguf_rope.py covers the RoPE scalings Quill runs).
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
from gguf_reference import Int8InputProducts, dequantized_weights  # noqa: E402,F401 (test_gguf_rope imports these from here)

QUILL = os.environ.get("QUILL_BIN", str(REPO / ".build" / "debug" / "quill"))
MODEL = REPO / "models" / "tinystories.bin"
TOKENIZER = REPO / "models" / "tinystories.model"
IDS = "1,403,407,261,378,281,1984,385,47,1021"


def quill(*arguments, check=True):
    run = subprocess.run([QUILL, *arguments], capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    if check:
        assert run.returncode == 0, run.stderr.decode()
    return run


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf") / "tinystories.gguf"
    subprocess.run([sys.executable, str(REPO / "scripts" / "llama2c_to_gguf.py"), str(MODEL), str(TOKENIZER), str(out)],
                   check=True, capture_output=True)
    return out


def test_gguf_gives_the_same_logits_and_story_as_the_llama2c_file(converted):
    # The same float32 weights through the same kernels: the logits must be equal to the bit.
    original = json.loads(quill("logits", "-m", str(MODEL), "--ids", IDS).stdout)
    from_gguf = json.loads(quill("logits", "-m", str(converted), "--ids", IDS).stdout)
    assert np.array_equal(np.array(original["logits"]), np.array(from_gguf["logits"]))
    story = quill("-m", str(MODEL), "--temp", "0", "-n", "80", "Once upon a time").stdout
    assert quill("-m", str(converted), "-z", str(TOKENIZER), "--temp", "0", "-n", "80", "Once upon a time").stdout == story
    # Without -z the vocabulary comes from the file, rebuilt as a SentencePiece model.
    assert quill("-m", str(converted), "--temp", "0", "-n", "80", "Once upon a time").stdout == story
    text = "Once upon a time, Tom & Mia saw 3 big ducks.\nThe end."
    assert quill("tokenize", "-m", str(converted), text).stdout == quill("tokenize", "-z", str(TOKENIZER), text).stdout
    info = json.loads(quill("info", "-m", str(converted), "--json").stdout)
    assert (info["format"], info["version"], info["quantization"]) == ("GGUF", 3, "F32")


def write_variant(path, architecture="llama", extra_kv=(), extra_tensors=()):
    """A copy of the converted model with metadata or tensors added, written by the gguf package."""
    config, tensors, shared = llama2c_to_gguf.read_llama2c(str(MODEL))
    writer = gguf.GGUFWriter(str(path), architecture)
    a = architecture
    writer.add_uint32(f"{a}.context_length", config["seq_len"])
    writer.add_uint32(f"{a}.embedding_length", config["dim"])
    writer.add_uint32(f"{a}.block_count", config["layers"])
    writer.add_uint32(f"{a}.feed_forward_length", config["hidden"])
    writer.add_uint32(f"{a}.attention.head_count", config["heads"])
    writer.add_uint32(f"{a}.attention.head_count_kv", config["kv_heads"])
    writer.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
    for key, kind, value in extra_kv:
        getattr(writer, f"add_{kind}")(key, value)
    writer.add_tensor("token_embd.weight", np.ascontiguousarray(tensors["embedding"]))
    for layer in range(config["layers"]):
        for name, key in [("attn_norm", "rms_att"), ("attn_q", "wq"), ("attn_k", "wk"), ("attn_v", "wv"),
                          ("attn_output", "wo"), ("ffn_norm", "rms_ffn"), ("ffn_gate", "w1"), ("ffn_down", "w2"),
                          ("ffn_up", "w3")]:
            writer.add_tensor(f"blk.{layer}.{name}.weight", np.ascontiguousarray(tensors[key][layer]))
    writer.add_tensor("output_norm.weight", np.ascontiguousarray(tensors["rms_final"]))
    for name, array in extra_tensors:
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("label, variant, fragment", [
    ("plain", {}, None),
    ("yarn rope scaling", {"extra_kv": [("llama.rope.scaling.type", "string", "yarn")]}, "rope.scaling.type"),
    ("negative sliding window", {"extra_kv": [("llama.attention.sliding_window", "int32", -1)]}, "sliding_window"),
    ("experts", {"extra_kv": [("llama.expert_count", "uint32", 8)]}, "expert_count"),
    ("partial rotary", {"extra_kv": [("llama.rope.dimension_count", "uint32", 16)]}, "rope.dimension_count"),
    ("another architecture", {"architecture": "gptneox"}, "architecture 'gptneox'"),
    ("a norm bias of an RMSNorm model", {"extra_tensors": [("blk.0.attn_norm.bias", np.zeros(288, dtype=np.float32))]},
     "blk.0.attn_norm.bias"),
    ("llama 3 rope factors of the wrong length", {"extra_tensors": [("rope_freqs.weight", np.ones(8, dtype=np.float32))]},
     "rope_freqs"),
])
def test_what_quill_would_not_honour_is_refused(tmp_path, label, variant, fragment):
    path = tmp_path / "variant.gguf"
    write_variant(path, **variant)
    run = quill("-m", str(path), "-z", str(TOKENIZER), "--temp", "0", "-n", "4", "Once", check=False)
    if fragment is None:
        assert run.returncode == 0, run.stderr.decode()
        return
    lines = run.stderr.decode().splitlines()
    assert run.returncode == 1 and len(lines) == 1 and lines[0].startswith("quill: error: "), (label, lines)
    assert fragment in lines[0], (label, lines[0])


@pytest.mark.parametrize("storage", ["F16", "BF16", "Q8_0", "Q4_0", "Q5_0"])
def test_quantized_gguf_logits_match_a_numpy_forward_of_the_same_bytes(tmp_path, storage):
    from llama_reference import llama2c_forward
    path = tmp_path / f"tinystories-{storage}.gguf"
    subprocess.run([sys.executable, str(REPO / "scripts" / "llama2c_to_gguf.py"), str(MODEL), str(TOKENIZER), str(path),
                    "--type", storage], check=True, capture_output=True)
    config, _, shared = llama2c_to_gguf.read_llama2c(str(MODEL))
    c = {"dim": config["dim"], "n_layers": config["layers"], "n_heads": config["heads"], "n_kv_heads": config["kv_heads"],
         "shared_classifier": shared}
    ids = [int(i) for i in IDS.split(",")]
    int8_input = storage not in ("F16", "BF16")
    products = Int8InputProducts() if int8_input else None
    expected = llama2c_forward(c, dequantized_weights(path), ids, project=products)
    got = np.array(json.loads(quill("logits", "-m", str(path), "--ids", IDS).stdout)["logits"])
    # Quill decodes the blocks exactly and computes in float32: the same bound as for float32 files
    # (test_export.py's QUILL_TOL). F16 and BF16 products keep float32 inputs; quantized types
    # round each product's input to int8 blocks, as the reference does (measured: 3e-6 apart).
    if not int8_input:
        assert np.abs(got - expected).max() < 1e-4, storage
        return
    # Quill's float32 activations are those of the float64 reference to ~1.5e-7 relative (the
    # logits agree to 3e-6 of ~20), so an input v with |v · (1 / scale)| ≤ 127 is at most ~2e-5 of
    # a step away there. Where an input came within 2e-5 of a half step, it may round to the other
    # neighbour in Quill (one step in one input: on this 64-wide model that moves later logits by
    # up to ~0.08), so the positions from there on are only held to the size of the int8 rounding
    # itself: within twice what it moves the logits from the float-input forward, which is how
    # far llama.cpp's q8_0 activations take it from a float reference too.
    per_position = len(products.closest_tie) // len(ids)
    near = [p for p in range(len(ids)) if min(products.closest_tie[p * per_position:(p + 1) * per_position]) < 2e-5]
    exact_until = near[0] if near else len(ids)
    assert exact_until >= 1 and np.abs(got[:exact_until] - expected[:exact_until]).max() < 1e-4, (storage, exact_until)
    float_inputs = llama2c_forward(c, dequantized_weights(path), ids)
    rounding = np.abs(expected - float_inputs).max()
    assert rounding > 1e-2, "the int8 rounding of the inputs is visible"
    assert np.abs(got - expected).max() < 2 * rounding, storage
    # info's storage table and metadata agree with the gguf package's reader.
    info = json.loads(quill("info", "-m", str(path), "--json").stdout)
    reader = gguf.GGUFReader(str(path))
    counts = {}
    for t in reader.tensors:
        entry = counts.setdefault(t.tensor_type.name, {"tensors": 0, "bytes": 0})
        entry["tensors"] += 1
        entry["bytes"] += int(t.n_bytes)
    assert info["storage"] == counts
    assert info["metadata"]["llama.block_count"] == reader.fields["llama.block_count"].contents()
    assert info["metadata"]["tokenizer.ggml.tokens"] == {"type": "array of string", "count": 2048}
    original = np.array(json.loads(quill("logits", "-m", str(MODEL), "--ids", IDS).stdout)["logits"])
    if storage not in ("F16", "BF16"):
        assert np.abs(original - expected).max() > 1e-3, "the quantized model differs from float32"


def test_info_says_a_bpe_vocabulary_runs_on_token_ids(tmp_path):
    """Qwen2's and GPT-2's byte-level BPE vocabularies are not read; info says how the model runs."""
    path = tmp_path / "bpe.gguf"
    write_variant(path, extra_kv=[("tokenizer.ggml.model", "string", "gpt2")])
    info = json.loads(quill("info", "-m", str(path), "--json").stdout)
    assert "(gpt2) is not one Quill reads" in info["tokenizer"] and "--ids" in info["tokenizer"], info["tokenizer"]


@pytest.mark.parametrize("storage", ["F16", "Q8_0", "Q4_0", "Q5_0"])
def test_gguf_batch_text_is_the_same_at_every_parallel_width(tmp_path, storage):
    """A request decodes to the same text whatever batch shares its steps (as
    Tests/QuillCLITests/BatchConsistencyTests.swift checks for llama2.c files): each sequence's
    input is quantized on its own, and its products do not depend on the others."""
    path = tmp_path / f"tinystories-{storage}.gguf"
    subprocess.run([sys.executable, str(REPO / "scripts" / "llama2c_to_gguf.py"), str(MODEL), str(TOKENIZER), str(path),
                    "--type", storage], check=True, capture_output=True)
    openings = ["Once upon a time", "The dog", "Lily and Tom", "One day", "The sun was", "A little bird"]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(openings[i % 6] + " and" * (i // 6) for i in range(20)))
    texts = {}
    for parallel in [1, 3, 17]:
        run = quill("-m", str(path), "-z", str(TOKENIZER), "--batch", str(prompts), "--temp", "0", "-n", "16",
                    "--ignore-eos", "--parallel", str(parallel))
        texts[parallel] = [json.loads(line)["text"] for line in run.stdout.decode().splitlines()]
        assert len(texts[parallel]) == 20
    assert texts[3] == texts[1] and texts[17] == texts[1], storage
