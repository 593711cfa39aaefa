"""`quill quantize IN OUT --type T` writes GGUF, checked against llama.cpp's own Python package
(PyPI `gguf`): its GGUFReader must read every key, tensor name, type and shape Quill wrote, and
the tensor bytes must equal `gguf.quants.quantize` of the float weights (ggml's reference
quantizers) byte for byte; Quill's logits on the file must equal a numpy forward over the weights
`gguf.quants.dequantize` decodes from the same bytes; the vocabulary must tokenize as the
SentencePiece model it came from. Also: GGUF inputs (requantized, or copied when already of the
type), refusals, and `quill bench --type` on a small shape.
"""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gguf
import sentencepiece

import gguf_reference
from llama_reference import read_llama2c

REPO = Path(__file__).resolve().parents[2]
QUILL = os.environ.get("QUILL_BIN", str(REPO / ".build" / "debug" / "quill"))
TOKENIZER = REPO / "models" / "tinystories.model"  # vocabulary 2048, always in the repository
SHARED = REPO.parent / "shared" / "models"
IDS = "1,403,407,261,378,281,1984,385,47,1021"
TEXT = "Once upon a time, Tom & Mia saw 3 big ducks.\nThe end."
ENCODED_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q5_0"]
HEADER = "<Ii7iB"


def quill(*arguments, check=True):
    run = subprocess.run([QUILL, *map(str, arguments)], capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    if check:
        assert run.returncode == 0, run.stderr.decode()
    return run


def make_checkpoint(path, dim, hidden, layers, heads, kv_heads, vocab=2048, seq_len=64, untied=False, seed=0):
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_random_checkpoint.py"), "--dim", str(dim),
                    "--hidden-dim", str(hidden), "--layers", str(layers), "--heads", str(heads), "--kv-heads",
                    str(kv_heads), "--vocab", str(vocab), "--seq-len", str(seq_len), "--seed", str(seed), "-o", str(path)]
                   + (["--untied"] if untied else []), check=True, capture_output=True)
    return path


def write_checkpoint(path, c, w):
    """A version 1 checkpoint of header `c` and weights `w` (read_llama2c's names)."""
    names = ["rms_att", "rms_ffn", "rms_final", "token_embedding", "wq", "wk", "wv", "wo", "w1", "w2", "w3"]
    names += [] if c["shared_classifier"] else ["wcls"]
    with open(path, "wb") as f:
        f.write(struct.pack(HEADER, 0x616B3432, 1, c["dim"], c["hidden_dim"], c["n_layers"], c["n_heads"],
                            c["n_kv_heads"], c["vocab_size"], c["seq_len"], c["shared_classifier"]).ljust(256, b"\0"))
        for name in names:
            f.write(np.ascontiguousarray(w[name], dtype="<f4").tobytes())


# llama2.c name → (GGUF stem, per layer); the classifier is `output`.
GGUF_NAMES = {"rms_att": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
              "rms_ffn": "ffn_norm", "w1": "ffn_gate", "w2": "ffn_down", "w3": "ffn_up"}


def gguf_tensors(c, w):
    """{GGUF name: float32 array} of a llama2.c model, as llama.cpp names them."""
    out = {"token_embd.weight": w["token_embedding"], "output_norm.weight": w["rms_final"]}
    if not c["shared_classifier"]:
        out["output.weight"] = w["wcls"]
    for l in range(c["n_layers"]):
        for short, stem in GGUF_NAMES.items():
            out[f"blk.{l}.{stem}.weight"] = w[short][l]
    return out


def expected_type(name, array, requested):
    """The storage type of a tensor: norms F32; matrices `requested`, or F16 when their rows are not
    whole blocks (llama.cpp's fallback for the 32-value block types)."""
    if array.ndim == 1:
        return "F32"
    block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[requested]][0]
    return requested if array.shape[-1] % block == 0 else "F16"


def reference_bytes(array, type_name):
    """The bytes llama.cpp's reference quantizer gives (gguf-py mirrors it bit for bit)."""
    qtype = gguf.GGMLQuantizationType[type_name]
    return np.ascontiguousarray(gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype)).tobytes()


def field(reader, key):
    f = reader.fields[key]
    return f.contents(), [gguf.GGUFValueType(t).name for t in f.types]


def sentencepiece_vocabulary(path):
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    n = sp.get_piece_size()
    kinds = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i) else 6 if sp.is_byte(i) else 1
             for i in range(n)]
    return sp, [sp.id_to_piece(i) for i in range(n)], [sp.get_score(i) for i in range(n)], kinds


def edge_values(count, seed):
    """Values that exercise every rounding path: ties of F16 and BF16, F16 subnormals and
    underflow, blocks of zeros, a lone value, a negative extreme, equal magnitudes of both signs,
    and magnitudes from 1e-9 to 1e3."""
    rng = np.random.default_rng(seed)
    special = [1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 2.0 ** -25, 3 * 2.0 ** -25, 2.0 ** -24, 5.96e-8, 6.1e-5, 65504.0,
               1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, -(1 + 2.0 ** -11), 1e-9, 3e-6, -1000.0, 0.0, -0.0]
    values = np.sign(rng.standard_normal(count)) * 10.0 ** rng.uniform(-9, 3, count)
    values[:len(special)] = special
    values[32:64] = 0                        # a block of zeros
    values[64:96] = 0
    values[70] = 1e-3                        # a lone value
    values[96:128] = rng.uniform(-1, 1, 32)
    values[100] = -5                         # the extreme is negative
    values[128:160] = rng.uniform(-1, 1, 32)
    values[130], values[140] = 4, -4         # equal magnitudes: the first one sets the sign
    values[160:192] = rng.uniform(-1, 1, 32) * 3e-6   # a scale that is subnormal in F16
    values[192:224] = rng.uniform(-1, 1, 32) * 1e-9   # a scale that underflows F16
    return values.astype(np.float32)


@pytest.fixture(scope="module")
def untied_model(tmp_path_factory):
    """A random model with GQA, a separate classifier and a hidden width of 172 (not a multiple of 32,
    as stories260K's), with edge values in layer 0's wq."""
    folder = tmp_path_factory.mktemp("untied")
    path = make_checkpoint(folder / "random.bin", dim=64, hidden=172, layers=2, heads=8, kv_heads=4, untied=True, seed=3)
    c, w = read_llama2c(path)
    w = {k: np.array(v) for k, v in w.items()}
    w["wq"][0] = edge_values(64 * 64, seed=5).reshape(64, 64)
    write_checkpoint(path, c, w)
    return path


@pytest.fixture(scope="module")
def tied_model(tmp_path_factory):
    """A random model whose every row is whole 32-value blocks, with the classifier shared."""
    folder = tmp_path_factory.mktemp("tied")
    return make_checkpoint(folder / "tied.bin", dim=96, hidden=256, layers=2, heads=4, kv_heads=4, seed=4)


@pytest.mark.parametrize("type_name", ENCODED_TYPES)
def test_written_gguf_reads_back_in_the_gguf_package_with_the_reference_bytes(untied_model, tmp_path, type_name):
    out = tmp_path / f"model-{type_name}.gguf"
    run = quill("quantize", untied_model, out, "--type", type_name, "-z", TOKENIZER)
    c, w = read_llama2c(untied_model)
    reader = gguf.GGUFReader(str(out))
    assert reader.fields["GGUF.version"].contents() == 3
    file_types = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "Q5_0": 8, "BF16": 32}  # llama.cpp's LLAMA_FTYPE
    expected = {
        "general.architecture": ("llama", ["STRING"]),
        "general.name": ("random", ["STRING"]),
        "general.file_type": (file_types[type_name], ["UINT32"]),
        "general.quantization_version": (2, ["UINT32"]),
        "general.alignment": (32, ["UINT32"]),
        "llama.context_length": (c["seq_len"], ["UINT32"]),
        "llama.embedding_length": (c["dim"], ["UINT32"]),
        "llama.block_count": (c["n_layers"], ["UINT32"]),
        "llama.feed_forward_length": (c["hidden_dim"], ["UINT32"]),
        "llama.attention.head_count": (c["n_heads"], ["UINT32"]),
        "llama.attention.head_count_kv": (c["n_kv_heads"], ["UINT32"]),
        "llama.rope.freq_base": (10000.0, ["FLOAT32"]),
        "llama.attention.layer_norm_rms_epsilon": (np.float32(1e-5).item(), ["FLOAT32"]),
        "llama.rope.dimension_count": (c["dim"] // c["n_heads"], ["UINT32"]),
        "llama.vocab_size": (c["vocab_size"], ["UINT32"]),
        "tokenizer.ggml.model": ("llama", ["STRING"]),
        "tokenizer.ggml.bos_token_id": (1, ["UINT32"]),
        "tokenizer.ggml.eos_token_id": (2, ["UINT32"]),
        "tokenizer.ggml.unknown_token_id": (0, ["UINT32"]),
        "tokenizer.ggml.add_bos_token": (True, ["BOOL"]),
        "tokenizer.ggml.add_eos_token": (False, ["BOOL"]),
        "tokenizer.ggml.add_space_prefix": (True, ["BOOL"]),
    }
    for key, value in expected.items():
        assert field(reader, key) == value, key
    _, pieces, scores, kinds = sentencepiece_vocabulary(TOKENIZER)
    assert field(reader, "tokenizer.ggml.tokens") == (pieces, ["ARRAY", "STRING"])
    assert field(reader, "tokenizer.ggml.scores") == ([np.float32(s).item() for s in scores], ["ARRAY", "FLOAT32"])
    assert field(reader, "tokenizer.ggml.token_type") == (kinds, ["ARRAY", "INT32"])
    keys = set(reader.fields) - {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
    assert keys == set(expected) | {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"}

    arrays = gguf_tensors(c, w)
    assert [t.name for t in reader.tensors][0] == "token_embd.weight"
    assert {t.name for t in reader.tensors} == set(arrays)
    for t in reader.tensors:
        array = arrays[t.name]
        stored = expected_type(t.name, array, type_name)
        assert t.tensor_type.name == stored, t.name
        assert [int(d) for d in t.shape] == list(reversed(array.shape)), t.name
        assert t.data_offset % 32 == 0
        assert bytes(np.ascontiguousarray(t.data).view(np.uint8)) == reference_bytes(array, stored), t.name
    # The fallback is said once, naming the tensors, the row length and the type chosen.
    stderr = run.stderr.decode()
    if type_name in ("Q8_0", "Q4_0", "Q5_0"):
        assert f"rows of 172 values are not a multiple of {type_name}'s 32; stored as F16" in stderr
        assert "blk.0.ffn_down.weight" in stderr
    else:
        assert "not a multiple" not in stderr


@pytest.mark.parametrize("type_name", ENCODED_TYPES)
def test_logits_on_the_written_gguf_match_numpy_on_the_same_bytes(untied_model, tied_model, tmp_path, type_name):
    for model in (untied_model, tied_model):
        out = tmp_path / f"{model.stem}-{type_name}.gguf"
        quill("quantize", model, out, type_name, "-z", TOKENIZER)  # the type as llama-quantize takes it
        c, _ = read_llama2c(model)
        ids = [int(i) for i in IDS.split(",")]
        got = np.array(json.loads(quill("logits", "-m", out, "--ids", IDS).stdout)["logits"])
        # Exact decoding and float32 arithmetic, with quantized products' inputs rounded to int8
        # blocks as Quill rounds them (gguf_reference.assert_matches gives the bound).
        gguf_reference.assert_matches(got, out, c, ids, (model.name, type_name))


def test_vocabulary_is_carried_from_the_tokenizer_model(tied_model, tmp_path):
    out = tmp_path / "tied-q8.gguf"
    quill("quantize", tied_model, out, "--type", "q8_0", "-z", TOKENIZER)
    for text in [TEXT, "  two  spaces, a tab\there and ünïcödé ☃ 🙂", " leading and trailing "]:
        from_gguf = quill("tokenize", "-m", out, text).stdout
        assert from_gguf == quill("tokenize", "-m", tied_model, "-z", TOKENIZER, text).stdout, text
        sp = sentencepiece.SentencePieceProcessor(model_file=str(TOKENIZER))
        assert from_gguf.decode().split() == [str(i) for i in [1] + sp.encode(text)]


def test_a_tokenizer_beside_the_checkpoint_is_used_without_z(tied_model, tmp_path):
    folder = tmp_path / "beside"
    folder.mkdir()
    (folder / "model.bin").symlink_to(tied_model)
    (folder / "model.model").symlink_to(TOKENIZER)
    quill("quantize", folder / "model.bin", tmp_path / "out.gguf", "--type", "F16")
    assert quill("tokenize", "-m", tmp_path / "out.gguf", TEXT).stdout == quill("tokenize", "-z", TOKENIZER, TEXT).stdout


@pytest.fixture(scope="module")
def gguf_input(tied_model, tmp_path_factory):
    """The tied model converted to Q4_0 by llama.cpp's own writer and quantizer."""
    out = tmp_path_factory.mktemp("gguf-input") / "tied-q4_0.gguf"
    subprocess.run([sys.executable, str(REPO / "scripts" / "llama2c_to_gguf.py"), str(tied_model), str(TOKENIZER), str(out),
                    "--type", "Q4_0"], check=True, capture_output=True)
    return out


def test_requantizing_a_gguf_decodes_its_blocks_exactly_first(gguf_input, tmp_path):
    out = tmp_path / "requantized.gguf"
    run = quill("quantize", gguf_input, out, "--type", "Q8_0")
    assert "requantizing Q4_0 → Q8_0" in run.stderr.decode()
    source, written = gguf.GGUFReader(str(gguf_input)), gguf.GGUFReader(str(out))
    by_name = {t.name: t for t in source.tensors}
    assert {t.name for t in written.tensors} == set(by_name)
    for t in written.tensors:
        original = by_name[t.name]
        decoded = gguf.quants.dequantize(original.data, original.tensor_type)
        stored = "F32" if original.tensor_type.name == "F32" else "Q8_0"
        assert t.tensor_type.name == stored
        assert bytes(np.ascontiguousarray(t.data).view(np.uint8)) == reference_bytes(decoded, stored), t.name
    # The vocabulary is copied key for key (no -z: the file's own).
    for key, f in source.fields.items():
        if key.startswith("tokenizer."):
            assert field(written, key) == field(source, key), key
    assert quill("tokenize", "-m", out, TEXT).stdout == quill("tokenize", "-z", TOKENIZER, TEXT).stdout


def test_blocks_already_of_the_type_asked_for_are_copied(gguf_input, tmp_path):
    out = tmp_path / "same.gguf"
    run = quill("quantize", gguf_input, out, "--type", "Q4_0")
    assert "Q4_0 tensors are already of the type asked for and are copied unchanged" in run.stderr.decode()
    assert "requantizing" not in run.stderr.decode()
    source = {t.name: bytes(np.ascontiguousarray(t.data).view(np.uint8)) for t in gguf.GGUFReader(str(gguf_input)).tensors}
    for t in gguf.GGUFReader(str(out)).tensors:
        assert bytes(np.ascontiguousarray(t.data).view(np.uint8)) == source[t.name], t.name
    original = json.loads(quill("logits", "-m", gguf_input, "--ids", IDS).stdout)["logits"]
    assert json.loads(quill("logits", "-m", out, "--ids", IDS).stdout)["logits"] == original


def test_quantizing_the_int8_llama2c_format_says_it_requantizes(tied_model, tmp_path):
    int8 = tmp_path / "int8.bin"
    quill("quantize", tied_model, int8)  # no type: llama2.c version 2, as before
    out = tmp_path / "from-int8.gguf"
    run = quill("quantize", int8, out, "--type", "Q8_0", "-z", TOKENIZER)
    assert "requantizing int8 groups of 32 (llama2.c version 2) → Q8_0" in run.stderr.decode()
    # The int8 weights decode exactly (q · scale in float32) before quantizing again.
    data = open(int8, "rb").read()
    c, w = read_llama2c(tied_model)
    gs = struct.unpack_from("<i", data, 37)[0]
    reader = gguf.GGUFReader(str(out))
    values = np.frombuffer(data, dtype=np.int8, count=c["vocab_size"] * c["dim"],
                           offset=256 + 4 * (2 * c["n_layers"] + 1) * c["dim"])
    scale_offset = len(data) - 4 * (sum(a.size for k, a in w.items() if not k.startswith("rms")) // gs)
    scales = np.frombuffer(data, dtype="<f4", count=values.size // gs, offset=scale_offset)
    embedding = (values.reshape(-1, gs).astype(np.float32) * scales[:, None]).reshape(c["vocab_size"], c["dim"])
    t = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert bytes(np.ascontiguousarray(t.data).view(np.uint8)) == reference_bytes(embedding, "Q8_0")


def test_stories260k_quantizes_with_its_tokenizer(tmp_path):
    model, tokenizer = SHARED / "stories260K.bin", SHARED / "tok512.model"
    if not model.exists() or not tokenizer.exists():
        pytest.skip(f"{model} or {tokenizer} is absent (../shared/models); not testing stories260K")
    # stories260K is a version 0 file: the converter script reads that layout.
    sys.path.insert(0, str(REPO / "scripts"))
    import llama2c_to_gguf
    config, t, shared = llama2c_to_gguf.read_llama2c(str(model))
    c = {"dim": config["dim"], "hidden_dim": config["hidden"], "n_layers": config["layers"], "n_heads": config["heads"],
         "n_kv_heads": config["kv_heads"], "vocab_size": config["vocab"], "shared_classifier": shared}
    w = {"token_embedding": t["embedding"], **{k: v for k, v in t.items() if k != "embedding"}}
    arrays = gguf_tensors(c, w)
    for type_name in ("Q8_0", "Q4_0"):
        out = tmp_path / f"stories260K-{type_name}.gguf"
        run = quill("quantize", model, out, "--type", type_name, "-z", tokenizer)
        stderr = run.stderr.decode()
        # hidden_dim 172: ffn_down's rows are not whole blocks; llama-quantize stores them as F16.
        assert f"5 tensors (blk.0.ffn_down.weight, …): rows of 172 values are not a multiple of {type_name}'s 32; " \
               "stored as F16" in stderr
        # tok512 removes extra whitespace, which GGUF cannot say: a warning, as llama.cpp's converter drops it.
        assert "removes extra whitespace" in stderr
        reader = gguf.GGUFReader(str(out))
        for t in reader.tensors:
            stored = expected_type(t.name, arrays[t.name], type_name)
            assert t.tensor_type.name == stored
            assert bytes(np.ascontiguousarray(t.data).view(np.uint8)) == reference_bytes(arrays[t.name], stored), t.name
        ids = [int(i) for i in "1,403,407,261,378,281,47,102".split(",")]
        got = np.array(json.loads(quill("logits", "-m", out, "--ids", ",".join(map(str, ids))).stdout)["logits"])
        gguf_reference.assert_matches(got, out, c, ids, ("stories260K", type_name))
        assert quill("tokenize", "-m", out, TEXT).stdout == quill("tokenize", "-z", tokenizer, TEXT).stdout


def one_line_error(run, status):
    lines = run.stderr.decode().splitlines()
    assert run.returncode == status, run.stderr.decode()
    assert lines[0].startswith("quill: "), lines
    assert len(lines) == (2 if status == 2 else 1), lines  # usage errors add "try 'quill --help'"
    return lines[0]


def test_a_checkpoint_without_a_tokenizer_is_refused(tmp_path):
    model = make_checkpoint(tmp_path / "alone.bin", dim=64, hidden=128, layers=1, heads=4, kv_heads=4)
    out = tmp_path / "out.gguf"
    line = one_line_error(quill("quantize", model, out, "--type", "Q8_0", check=False), 1)
    assert "-z" in line and "alone.bin" in line
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["alone.bin"]


@pytest.mark.parametrize("arguments, fragment", [
    (["--type", "Q3_K"], "unknown type 'Q3_K'"),
    (["--type", "Q4_K"], "has no quantizer"),
    (["Q8_0", "--type", "Q4_0"], "two types given"),
    (["--type", "Q8_0", "--group-size", "32"], "--group-size is for llama2.c output"),
])
def test_bad_types_are_usage_errors(tied_model, tmp_path, arguments, fragment):
    line = one_line_error(quill("quantize", tied_model, tmp_path / "out.gguf", *arguments, check=False), 2)
    assert fragment in line


def test_a_gguf_output_needs_a_type(tied_model, tmp_path):
    assert "give the GGUF type" in one_line_error(quill("quantize", tied_model, tmp_path / "x.gguf", check=False), 2)


@pytest.mark.parametrize("value, type_name, fragment", [
    (np.nan, "Q8_0", "non-finite value (nan)"),
    (np.inf, "F32", "non-finite value (inf)"),
    (1e5, "F16", "beyond what F16 stores"),
])
def test_weights_that_the_type_cannot_hold_are_refused(tied_model, tmp_path, value, type_name, fragment):
    c, w = read_llama2c(tied_model)
    w = {k: np.array(v) for k, v in w.items()}
    w["w2"][1, 3, 5] = value
    bad = tmp_path / "bad.bin"
    write_checkpoint(bad, c, w)
    out = tmp_path / "out.gguf"
    line = one_line_error(quill("quantize", bad, out, "--type", type_name, "-z", TOKENIZER, check=False), 1)
    assert fragment in line and "blk.1.ffn_down.weight" in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.bin"]
    if type_name == "F16":  # BF16 has float32's range
        quill("quantize", bad, out, "--type", "BF16", "-z", TOKENIZER)


def test_an_existing_output_is_replaced_only_when_complete(tied_model, tmp_path):
    out = tmp_path / "out.gguf"
    out.write_bytes(b"old")
    quill("quantize", tied_model, out, "--type", "Q4_0", "-z", TOKENIZER)
    assert out.read_bytes()[:4] == b"GGUF"
    line = one_line_error(quill("quantize", out, out, "--type", "Q8_0", check=False), 1)
    assert "same file as the input" in line


def q4_k_m_types(dim, hidden, layers, tied):
    """llama.cpp's Q4_K_M mix (llama_tensor_get_type) with its fallbacks for rows that are not whole
    256-value blocks: {tensor: type}."""
    more_bits = lambda l: l < layers // 8 or l >= 7 * layers // 8 or (l - layers // 8) % 3 == 2
    fallback = {"Q4_K": "Q5_0", "Q6_K": "Q8_0"}
    def fit(type_name, cols):
        return type_name if cols % 256 == 0 else fallback[type_name]
    output = "Q6_K" if dim % 256 == 0 else "Q8_0"
    types = {"token_embd.weight": output if tied else fit("Q4_K", dim)}
    if not tied:
        types["output.weight"] = output
    for l in range(layers):
        for stem in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
            types[f"blk.{l}.{stem}.weight"] = fit("Q4_K", dim)
        types[f"blk.{l}.attn_v.weight"] = fit("Q6_K" if more_bits(l) else "Q4_K", dim)
        types[f"blk.{l}.ffn_down.weight"] = fit("Q6_K" if more_bits(l) else "Q4_K", hidden)
    return types


@pytest.mark.parametrize("type_name", ["Q4_K_M", "Q8_0"])
def test_bench_writes_a_random_gguf_of_the_type_and_reports_bandwidth(type_name):
    run = quill("bench", "--shape", "15m", "--type", type_name, "-p", "4", "-n", "2", "-r", "1", "-t", "1",
                "--parallel", "0", "--json")
    result = json.loads(run.stdout)
    assert [t["test"] for t in result["tests"]] == ["pp4", "tg2"]
    dim, hidden, layers, vocab, kv_dim = 288, 768, 6, 32000, 288
    if type_name == "Q4_K_M":
        types = q4_k_m_types(dim, hidden, layers, tied=True)
        assert "not a multiple of Q4_K's 256; stored as Q5_0" in run.stderr.decode()
    else:
        types = {name: "Q8_0" for name in q4_k_m_types(dim, hidden, layers, tied=True)}
    assert set(result["format"].split("+")) == set(types.values())
    # Bytes per generated token: every matrix once (the tied embedding read as the classifier),
    # the norms, and the keys and values of the positions so far (position 1 of tg2).
    def size(name):
        rows = {"attn_q": dim, "attn_k": kv_dim, "attn_v": kv_dim, "attn_output": dim, "ffn_gate": hidden,
                "ffn_up": hidden, "ffn_down": dim}[name.split(".")[2]]
        cols = hidden if "ffn_down" in name else dim
        block, nbytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[types[name]]]
        return rows * cols // block * nbytes
    matrices = sum(size(n) for n in types if n.startswith("blk."))
    block, nbytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[types["token_embd.weight"]]]
    classifier = vocab * dim // block * nbytes
    expected = classifier + matrices + 4 * dim * (2 * layers + 1) + layers * 2 * 2 * kv_dim * 4
    tg = result["tests"][1]
    assert tg["bytes_per_token"] == expected
    assert tg["bandwidth_share"] > 0 and result["peak_rss_bytes"] > 0 and tg["tokens_per_second_median"] > 0
    assert result["tests"][0]["tokens_per_second_median"] > 0


def test_bench_text_table_for_a_gguf_type():
    run = quill("bench", "--shape", "15m", "--type", "Q4_0", "-p", "4", "-n", "2", "-r", "1", "-t", "1", "--parallel", "0")
    out = run.stdout.decode()
    assert "model random 15m Q4_0" in out and "peak RSS" in out
    assert "| pp4 |" in out and "| tg2 |" in out and "%" in out.split("| tg2 |")[1]


@pytest.mark.parametrize("arguments, fragment", [
    (["--type", "Q2_K"], "--type must be one of"),
    (["--shape", "7b"], "--shape must be one of"),
    (["--type", "Q8_0", "--q8"], "not both"),
    (["--type", "Q8_0", "-m", "x.bin"], "--type writes random weights for --shape"),
])
def test_bench_usage_errors(arguments, fragment):
    assert fragment in one_line_error(quill("bench", *arguments, check=False), 2)
