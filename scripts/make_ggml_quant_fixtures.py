#!/usr/bin/env python3
"""Writes the fixtures of Tests/QuillKernelsTests/GGMLQuantTests.swift: rows of each GGUF storage
type Quill decodes, as packed blocks, with the float32 values the PyPI `gguf` package (gguf-py,
the numpy code of llama.cpp's authors) dequantises them to. Those values are the independent
truth that Quill's C decoders must reproduce bit for bit.

    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf numpy
    /tmp/gguf-venv/bin/python scripts/make_ggml_quant_fixtures.py

For each type NAME it writes, under Tests/QuillKernelsTests/Fixtures/ggml/:
  NAME.bin  the rows' packed blocks, one row after another
  NAME.f32  the package's dequantisation of those bytes, float32 little-endian, row after row
and manifest.json records, per type, the ggml type id, the rows (values and bytes per row, and
how each row was made) and the package versions. Deterministic (fixed seed).

Rows of types the package can quantise (F16, BF16, Q8_0, Q4_0, Q5_0) come from floats: normal
rows at a few scales, all zeros, huge and tiny magnitudes (tiny ones give subnormal f16 scales),
one outlier; plus one row of random bytes (with finite f16 scales) that reaches block contents
quantisation never writes. The package only dequantises Q4_K, Q5_K and Q6_K, so their rows are
random valid blocks: random bytes with finite f16 scales (normal and subnormal), and an all-zero
block and an all-0xFF-but-the-scales block.
"""
import json
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from importlib.metadata import version

OUT = Path(__file__).resolve().parent.parent / "Tests/QuillKernelsTests/Fixtures/ggml"
SEED = 20261124
N = 128  # values per row of F16, BF16 and the 32-value block types (4 blocks of 32)
K_ROW_BLOCKS = 1  # K-type rows: 1 block of 256 values (the test also decodes all rows as one)

rng = np.random.default_rng(SEED)


def float_rows():
    """(description, float32 row of N values) for the types quantised from floats."""
    rows = [
        ("normal(0, 1)", rng.standard_normal(N)),
        ("normal(0, 0.02), like weights", 0.02 * rng.standard_normal(N)),
        ("uniform(-1, 1)", rng.uniform(-1, 1, N)),
        ("all zeros", np.zeros(N)),
        ("huge: normal · 1e4", 1e4 * rng.standard_normal(N)),
        ("tiny: normal · 1e-3 (Q8_0 gets subnormal f16 scales)", 1e-3 * rng.standard_normal(N)),
    ]
    outlier = 0.05 * rng.standard_normal(N)
    outlier[77] = 40.0
    rows.append(("normal · 0.05 with one outlier 40 at index 77", outlier))
    return [(d, r.astype(np.float32)) for d, r in rows]


def random_half(count, subnormal=False):
    """Bits of `count` finite f16 values: normal ones of magnitude in [2^-12, 2^2), or subnormal."""
    if subnormal:
        bits = rng.integers(1, 0x400, count)
    else:
        bits = rng.integers((15 - 12) << 10, (15 + 2) << 10, count)
    bits = bits | (rng.integers(0, 2, count) << 15)
    return bits.astype("<u2")


def random_blocks(qtype, blocks, scale_offsets, subnormal=False, fill=None):
    """Random bytes for `blocks` blocks of qtype, with finite f16 values at `scale_offsets`."""
    _, size = GGML_QUANT_SIZES[qtype]
    if fill is None:
        data = rng.integers(0, 256, (blocks, size), dtype=np.uint8)
    else:
        data = np.full((blocks, size), fill, dtype=np.uint8)
    for offset in scale_offsets:
        half = random_half(blocks, subnormal).view(np.uint8).reshape(blocks, 2)
        data[:, offset:offset + 2] = half
    return data


# Where each type keeps its f16 scales inside a block.
SCALE_OFFSETS = {
    T.Q8_0: [0], T.Q4_0: [0], T.Q5_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def special_f16_row():
    values = [np.inf, -np.inf, np.nan, -np.nan, 65504, -65504, 70000, 6e-8, -6e-8, 3e-5, 6.1e-5,
              -0.0, 0.0, 1.0, -2.5, 1e-9]
    row = np.zeros(N, dtype=np.float32)
    row[:len(values)] = values
    row[len(values):] = rng.standard_normal(N - len(values))
    return row


def rows_for(qtype):
    """[(description, packed bytes of one row)]."""
    rows = []
    if qtype in (T.F16, T.BF16):
        source = float_rows() + [("specials: ±inf, NaN, f16 max, overflow, subnormals, ±0", special_f16_row())]
        for description, values in source:
            if qtype == T.F16:
                packed = gguf.quants.quantize(values, T.F16).view(np.uint8)
            else:
                packed = gguf.quants.quantize(values.reshape(1, N), T.BF16).reshape(-1)
            rows.append(("quantised " + description, packed))
        random_bits = rng.integers(0, 1 << 16, N, dtype=np.uint16).astype("<u2").view(np.uint8)
        rows.append(("random bits (every class of value, signalling NaNs possible)", random_bits))
        return rows
    if qtype in (T.Q8_0, T.Q4_0, T.Q5_0):
        for description, values in float_rows():
            packed = gguf.quants.quantize(values.reshape(1, N), qtype).reshape(-1)
            rows.append(("quantised " + description, packed))
        blocks = N // 32
        rows.append(("random bytes, normal f16 scale", random_blocks(qtype, blocks, SCALE_OFFSETS[qtype]).reshape(-1)))
        rows.append(("random bytes, subnormal f16 scale",
                     random_blocks(qtype, blocks, SCALE_OFFSETS[qtype], subnormal=True).reshape(-1)))
        return rows
    offsets = SCALE_OFFSETS[qtype]
    for i in range(3):
        rows.append((f"random bytes {i}, normal f16 scales", random_blocks(qtype, K_ROW_BLOCKS, offsets).reshape(-1)))
    rows.append(("random bytes, subnormal f16 scales",
                 random_blocks(qtype, K_ROW_BLOCKS, offsets, subnormal=True).reshape(-1)))
    rows.append(("all zero bytes", np.zeros(K_ROW_BLOCKS * GGML_QUANT_SIZES[qtype][1], dtype=np.uint8)))
    rows.append(("all 0xFF but the scales", random_blocks(qtype, K_ROW_BLOCKS, offsets, fill=0xFF).reshape(-1)))
    return rows


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {
        "generator": "scripts/make_ggml_quant_fixtures.py",
        "seed": SEED,
        "gguf_version": version("gguf"),
        "numpy_version": version("numpy"),
        "types": {},
    }
    for qtype in [T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q5_0, T.Q4_K, T.Q5_K, T.Q6_K]:
        block_size, block_bytes = GGML_QUANT_SIZES[qtype]
        packed_rows, decoded_rows, descriptions = [], [], []
        for description, packed in rows_for(qtype):
            packed = np.ascontiguousarray(packed, dtype=np.uint8)
            assert packed.size % block_bytes == 0
            decoded = gguf.quants.dequantize(packed, qtype).astype(np.float32, copy=False).reshape(-1)
            assert decoded.size == packed.size // block_bytes * block_size
            packed_rows.append(packed)
            decoded_rows.append(decoded)
            descriptions.append(description)
        values = decoded_rows[0].size
        assert all(r.size == values for r in decoded_rows)
        (OUT / f"{qtype.name}.bin").write_bytes(b"".join(r.tobytes() for r in packed_rows))
        (OUT / f"{qtype.name}.f32").write_bytes(b"".join(r.astype("<f4").tobytes() for r in decoded_rows))
        manifest["types"][qtype.name] = {
            "id": int(qtype),
            "values_per_row": values,
            "bytes_per_row": packed_rows[0].size,
            "rows": descriptions,
        }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
