#!/usr/bin/env python3
"""Writes the GGUF fixtures of the Swift container-reader tests with llama.cpp's own writer
(PyPI `gguf`), and what llama.cpp's own reader (`gguf.GGUFReader`) reads back from each, as
JSON. The Swift tests compare Quill's reader against that JSON, so the truth comes from an
independent implementation. Deterministic: the same package version writes the same bytes.

    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf numpy
    /tmp/gguf-venv/bin/python scripts/make_gguf_fixtures.py            # the committed fixtures
    /tmp/gguf-venv/bin/python scripts/make_gguf_fixtures.py --out DIR  # elsewhere (for comparison)

The default run also copies the .gguf files into Tests/Fuzz/corpus/gguf as fuzz seeds.
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf import GGUFReader, GGUFValueType as V, GGUFWriter
from gguf.quants import quantize

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "Tests" / "QuillTests" / "Fixtures" / "gguf"
SEEDS = ROOT / "Tests" / "Fuzz" / "corpus" / "gguf"


def write(path, alignment=None, metadata=(), tensors=()):
    """metadata: (key, value, type, element type or None); tensors: (name, array, raw ggml type or None)."""
    writer = GGUFWriter(str(path), "llama")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    for key, value, vtype, sub_type in metadata:
        writer.add_key_value(key, value, vtype, sub_type=sub_type)
    for name, array, raw in tensors:
        writer.add_tensor(name, array, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def every_value_type(path, rng):
    """Scalars of all twelve value types, arrays of each, nested arrays, and F32/F16/Q8_0/Q4_0
    tensors of one to four dimensions (default alignment, 32)."""
    metadata = [
        ("test.uint8", 200, V.UINT8, None),
        ("test.int8", -100, V.INT8, None),
        ("test.uint16", 60000, V.UINT16, None),
        ("test.int16", -30000, V.INT16, None),
        ("test.uint32", 4_000_000_000, V.UINT32, None),
        ("test.int32", -2_000_000_000, V.INT32, None),
        ("test.float32", 0.15625, V.FLOAT32, None),
        ("test.float32_third", 1 / 3, V.FLOAT32, None),
        ("test.uint64", 2**64 - 1, V.UINT64, None),
        ("test.int64", -(2**63), V.INT64, None),
        ("test.float64", 0.1, V.FLOAT64, None),
        ("test.bool_true", True, V.BOOL, None),
        ("test.bool_false", False, V.BOOL, None),
        ("test.string", "héllo ▁wörld 🙂", V.STRING, None),
        ("test.string_empty", "", V.STRING, None),
        ("test.array.uint8", [0, 1, 255], V.ARRAY, V.UINT8),
        ("test.array.int8", [-128, 0, 127], V.ARRAY, V.INT8),
        ("test.array.uint16", [0, 65535], V.ARRAY, V.UINT16),
        ("test.array.int16", [-32768, 32767], V.ARRAY, V.INT16),
        ("test.array.uint32", [0, 4_294_967_295], V.ARRAY, V.UINT32),
        ("test.array.int32", [-2_147_483_648, 0, 2_147_483_647], V.ARRAY, V.INT32),
        ("test.array.float32", [0.5, -1.25, 3.0e-5], V.ARRAY, V.FLOAT32),
        ("test.array.uint64", [0, 2**64 - 1], V.ARRAY, V.UINT64),
        ("test.array.int64", [-(2**63), 2**63 - 1], V.ARRAY, V.INT64),
        ("test.array.float64", [0.1, -2.5e300], V.ARRAY, V.FLOAT64),
        ("test.array.bool", [True, False, True], V.ARRAY, V.BOOL),
        ("test.array.string", ["a", "", "▁b", "<0x0A>", "日本"], V.ARRAY, V.STRING),
        ("test.array.nested_int32", [[1, 2, 3], [4], [5, 6]], V.ARRAY, V.ARRAY),
        ("test.array.nested_string", [["x", "y"], ["z"]], V.ARRAY, V.ARRAY),
        ("test.array.nested3", [[[1.5], [2.5, 3.5]], [[4.5]]], V.ARRAY, V.ARRAY),
        ("llama.rope.freq_base", 10000.0, V.FLOAT32, None),
        ("tokenizer.ggml.model", "llama", V.STRING, None),
        ("tokenizer.ggml.tokens", ["<unk>", "<s>", "</s>", "▁a"], V.ARRAY, V.STRING),
        ("tokenizer.ggml.scores", [0.0, 0.0, 0.0, -1.5], V.ARRAY, V.FLOAT32),
        ("tokenizer.ggml.token_type", [2, 3, 3, 1], V.ARRAY, V.INT32),
    ]
    tensors = [
        ("token_embd.weight", rng.standard_normal((5, 8)).astype(np.float32), None),  # ne [8, 5]
        ("blk.0.attn_norm.weight", rng.standard_normal(8).astype(np.float16), None),
        ("blk.0.attn_q.weight", quantize(rng.standard_normal((3, 64)).astype(np.float32), T.Q8_0), T.Q8_0),
        ("blk.0.ffn_up.weight", quantize(rng.standard_normal((2, 32)).astype(np.float32), T.Q4_0), T.Q4_0),
        ("test.3d", rng.standard_normal((2, 3, 4)).astype(np.float32), None),
        ("test.4d", rng.standard_normal((1, 2, 1, 3)).astype(np.float32), None),
    ]
    write(path, metadata=metadata, tensors=tensors)


def aligned64(path, rng):
    """general.alignment = 64, tensors whose sizes (12, 10, 34 bytes) all need padding."""
    tensors = [
        ("a", rng.standard_normal(3).astype(np.float32), None),
        ("b", rng.standard_normal(5).astype(np.float16), None),
        ("c", quantize(rng.standard_normal((1, 32)).astype(np.float32), T.Q8_0), T.Q8_0),
    ]
    write(path, alignment=64, metadata=[("test.note", "aligned to 64", V.STRING, None)], tensors=tensors)


def metadata_only(path, rng):
    """No tensors at all (as a vocabulary-only file)."""
    write(path, metadata=[("tokenizer.ggml.tokens", ["a", "b"], V.ARRAY, V.STRING)])


def version2(path, rng):
    """GGUF version 2 has the layout of version 3 for little-endian files (3 only added
    big-endian files), and the writer only writes 3: this is a version-3 file whose version
    field is patched to 2."""
    write(path, metadata=[("test.uint32", 7, V.UINT32, None)],
          tensors=[("w", rng.standard_normal((2, 4)).astype(np.float32), None)])
    data = bytearray(path.read_bytes())
    assert data[4:8] == (3).to_bytes(4, "little")
    data[4:8] = (2).to_bytes(4, "little")
    path.write_bytes(bytes(data))


FIXTURE_WRITERS = {
    "every-value-type.gguf": every_value_type,
    "aligned-64.gguf": aligned64,
    "metadata-only.gguf": metadata_only,
    "version-2.gguf": version2,
}


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def decode(parts, index, vtype):
    """One value from the reader's parts, from `index`: (type name, value, next index), the type
    named as Quill names it ("uint32", "array of string", "array of array of int32"). The
    reader's own `contents()` flattens nested arrays, so the parts it read are walked here."""
    vtype = V(vtype)
    if vtype == V.STRING:
        return "string", parts[index + 1].tobytes().decode("utf-8"), index + 2
    if vtype == V.ARRAY:
        element_type, count = int(parts[index][0]), int(parts[index + 1][0])
        index += 2
        values, element_name = [], None
        for _ in range(count):
            name, value, index = decode(parts, index, element_type)
            element_name = element_name or name
            values.append(value)
        return "array of " + (element_name or V(element_type).name.lower()), values, index
    value = parts[index].tolist()[0]
    if vtype in (V.UINT64, V.INT64):
        value = str(value)  # exact even for JSON readers that hold numbers as doubles
    return vtype.name.lower(), value, index + 1


def describe(path):
    reader = GGUFReader(str(path))
    metadata = []
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):  # the reader's own entries for the header
            continue
        vtype, value, end = decode(field.parts, 3, field.types[0])
        assert end == len(field.parts)
        metadata.append({"key": field.name, "type": vtype, "value": value})
    tensors = []
    raw = path.read_bytes()
    for t in reader.tensors:
        start = int(t.data_offset)
        tensors.append({
            "name": t.name,
            "dimensions": [int(d) for d in t.shape],  # ggml order: the row length first
            "type": T(t.tensor_type).name,
            "type_id": int(t.tensor_type),
            "offset": start - int(reader.data_offset),
            "data_offset": start,
            "byte_count": int(t.n_bytes),
            "element_count": int(t.n_elements),
            "fnv1a64": str(fnv1a64(raw[start:start + int(t.n_bytes)])),
            "values": t.data.astype(np.float64).ravel().tolist() if t.tensor_type in (T.F32, T.F16) else None,
        })
    return {
        "version": int(reader.fields["GGUF.version"].parts[0][0]),
        "alignment": int(reader.alignment),
        "data_offset": int(reader.data_offset),
        "byte_count": len(raw),
        "metadata": metadata,
        "tensors": tensors,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=FIXTURES)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    expected = {}
    for index, (name, make) in enumerate(FIXTURE_WRITERS.items()):
        make(args.out / name, np.random.default_rng(index + 1))
        expected[name] = describe(args.out / name)
    # Every ggml type the package knows: id, values per block, bytes per block.
    expected["ggml_types"] = {t.name: [int(t), b, n] for t, (b, n) in GGML_QUANT_SIZES.items()}
    (args.out / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    if args.out.resolve() == FIXTURES.resolve():
        SEEDS.mkdir(parents=True, exist_ok=True)
        for name in FIXTURE_WRITERS:
            shutil.copyfile(args.out / name, SEEDS / name)


if __name__ == "__main__":
    main()
